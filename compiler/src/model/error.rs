//! The one error type of the web-model readers.
//!
//! Every variant names the file it is about and, where relevant, the node or
//! weight and what was expected, so that a user can fix a broken model from
//! the message alone. Nothing here does I/O.

use std::path::PathBuf;

/// Why a web model could not be opened or its weights read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read (other than a missing weight shard).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },

    /// A directory was given that holds none of the known model files.
    #[error(
        "{directory} holds no model.json, web_model.pb, tensorflowjs_model.pb or optimized_model.pb"
    )]
    NoModelInDirectory {
        /// The directory searched.
        directory: PathBuf,
    },

    /// A JSON file is not valid JSON.
    #[error("{path}:{line}:{column}: malformed JSON: {message}")]
    MalformedJson {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// 1-based column of the problem (0 when unknown).
        column: usize,
        /// What the JSON parser reported.
        message: String,
    },

    /// A binary protobuf file does not decode.
    #[error("{path}: malformed protobuf (expected a binary {message}): {source}")]
    MalformedProtobuf {
        /// The file.
        path: PathBuf,
        /// The message type expected, e.g. "tensorflow.GraphDef".
        message: &'static str,
        /// What prost reported.
        source: prost::DecodeError,
    },

    /// The model file is valid JSON but not a TF.js graph model.
    #[error("{path}: unsupported model format {format:?} (expected \"graph-model\")")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The format found, e.g. "layers-model".
        format: String,
    },

    /// `modelTopology` does not follow the protobuf JSON mapping of a GraphDef.
    #[error("{path}: modelTopology, at {location}: expected {expected}")]
    Topology {
        /// The model.json file.
        path: PathBuf,
        /// Where in the graph, e.g. `node "conv1" > attr "strides" > list > i[2]`.
        location: String,
        /// What was expected there.
        expected: String,
    },

    /// The `signature` section is malformed.
    #[error("{path}: signature, at {location}: expected {expected}")]
    Signature {
        /// The model.json file.
        path: PathBuf,
        /// Where in the signature, e.g. `inputs "x" > tensorShape`.
        location: String,
        /// What was expected there.
        expected: String,
    },

    /// The weights manifest is malformed or describes an impossible weight.
    #[error("{path}: weights manifest, at {location}: expected {expected}")]
    Manifest {
        /// The file holding the manifest (model.json or weights_manifest.json).
        path: PathBuf,
        /// Where in the manifest, e.g. `group 0 > weight "conv/kernel" > shape`.
        location: String,
        /// What was expected there.
        expected: String,
    },

    /// A shard file listed in the manifest does not exist.
    #[error(
        "weight shard {path} (group {group} of {manifest}) is missing; it should hold the bytes of weight {weight:?}"
    )]
    MissingShard {
        /// The shard file.
        path: PathBuf,
        /// The file holding the manifest.
        manifest: PathBuf,
        /// Index of the weight group.
        group: usize,
        /// The first weight whose bytes would lie in that file.
        weight: String,
    },

    /// A shard file name was refused before anything was opened: absolute, leading outside the
    /// model's folder, or not naming a regular file.
    #[error("weight shard {name:?} (group {group} of {manifest}) refused: {reason}")]
    ShardRefused {
        /// The name as the manifest writes it.
        name: String,
        /// The file holding the manifest.
        manifest: PathBuf,
        /// Index of the weight group.
        group: usize,
        /// Why it was refused.
        reason: tfjsc_runtime::shard_file::ShardPathError,
    },

    /// A model file is not a regular file (a FIFO, a device, a directory).
    #[error("{path}: {reason}")]
    NotRegularFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: tfjsc_runtime::shard_file::ShardPathError,
    },

    /// A group's shard files hold fewer bytes than its weights need.
    #[error(
        "weight {weight:?} needs bytes {start}..{end} of group {group} of {manifest}, but its shard files hold only {available} bytes (last file: {path})"
    )]
    ShortShard {
        /// The last shard file of the group, the one that is short.
        path: PathBuf,
        /// The file holding the manifest.
        manifest: PathBuf,
        /// Index of the weight group.
        group: usize,
        /// The first weight that does not fit.
        weight: String,
        /// First byte of the weight in the group's stream.
        start: u64,
        /// One past the last byte of the weight in the group's stream.
        end: u64,
        /// Bytes the group's files hold.
        available: u64,
    },

    /// A group's shard files hold more bytes than its weights need.
    #[error(
        "group {group} of {manifest}: its weights end at byte {expected} (last weight {weight:?}), but its shard files hold {available} bytes (last file: {path})"
    )]
    LongShard {
        /// The last shard file of the group, the one that is too long.
        path: PathBuf,
        /// The file holding the manifest.
        manifest: PathBuf,
        /// Index of the weight group.
        group: usize,
        /// The last weight of the group (empty if the group has none).
        weight: String,
        /// Bytes the manifest implies.
        expected: u64,
        /// Bytes the group's files hold.
        available: u64,
    },
}

impl ModelError {
    /// A [`ModelError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ModelError {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`ModelError::MalformedJson`] for `path` from a serde_json error.
    pub(crate) fn json(path: impl Into<PathBuf>, error: &serde_json::Error) -> ModelError {
        ModelError::MalformedJson {
            path: path.into(),
            line: error.line(),
            column: error.column(),
            message: error.to_string(),
        }
    }
}
