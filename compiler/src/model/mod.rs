//! Readers of the TensorFlow.js web formats: the first stage of the compiler.
//!
//! A web model is a graph (model.json's `modelTopology`, or a legacy binary
//! `web_model.pb`), a weights manifest, and shard files holding the weights.
//! [`WebModel::open`] reads the graph and manifest into TensorFlow's own
//! message types and typed weight specs, without touching the shards (except
//! to size string weights that precede others); [`WebModel::read_weights`]
//! then checks and decodes the shards. This module only reads: it never
//! interprets ops (that is the IR importer's job) and never writes files.
//!
//! Layout: `model_json` and `legacy` read the two container formats,
//! `graph_json` maps the JSON form of a GraphDef, `json` holds protobuf's
//! JSON scalar rules, `manifest` the weights manifest, `weights` the shards.
//! Tests: `tests` (hand-written models), `graph_json_tests` (attribute forms),
//! `fixture_tests` (real converted models, bit-exact against TF.js's decoder).

mod error;
mod graph_json;
mod json;
mod legacy;
mod manifest;
mod model_json;
mod weights;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod graph_json_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use tfjsc_runtime::shard_file::{open_in_folder, open_regular, ShardPathError};

pub use error::ModelError;
pub use manifest::{WeightDtype, WeightEncoding, WeightGroupSpec, WeightSpec};
pub use model_json::{ModelSignature, SignatureTensor};
pub use weights::{WeightFile, WeightValues};

/// Which of the two web formats a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebFormat {
    /// `model.json` with format "graph-model" (TF.js converter 1.x and later).
    GraphModelJson,
    /// A binary GraphDef plus `weights_manifest.json` (TF.js converter 0.x).
    LegacyProtobuf,
}

/// A web model's graph and weight layout, as read from its files.
#[derive(Debug, Clone, PartialEq)]
pub struct WebModel {
    /// The model.json or legacy graph file actually read.
    pub path: PathBuf,
    /// The directory holding the shard files.
    pub dir: PathBuf,
    /// The format it was read from.
    pub format: WebFormat,
    /// The graph, as TensorFlow's message; `Const` nodes carry no values
    /// (those are the weights of the same name).
    pub graph: tfjsc_proto::tensorflow::GraphDef,
    /// The declared inputs and outputs, if model.json has a signature.
    pub signature: Option<ModelSignature>,
    /// The weight groups: shard files forming one stream each.
    pub groups: Vec<WeightGroupSpec>,
    /// Every weight, in manifest order across groups.
    pub weights: Vec<WeightSpec>,
}

/// The file a model path designates, and its format.
fn locate(path: &Path) -> Result<(PathBuf, WebFormat), ModelError> {
    if !path.is_dir() {
        let is_protobuf = path.extension().is_some_and(|extension| extension == "pb");
        let format = if is_protobuf {
            WebFormat::LegacyProtobuf
        } else {
            WebFormat::GraphModelJson
        };
        return Ok((path.to_path_buf(), format));
    }
    let json = path.join("model.json");
    if json.is_file() {
        return Ok((json, WebFormat::GraphModelJson));
    }
    legacy::GRAPH_FILE_NAMES
        .iter()
        .map(|name| path.join(name))
        .find(|candidate| candidate.is_file())
        .map(|graph| (graph, WebFormat::LegacyProtobuf))
        .ok_or_else(|| ModelError::NoModelInDirectory {
            directory: path.to_path_buf(),
        })
}

/// Reads a model file the user named (or that `locate` found in the folder the user named): a
/// regular file only, so a FIFO or a device cannot hang the reader or exhaust memory.
fn read_file(path: &Path) -> Result<Vec<u8>, ModelError> {
    let (file, size) = open_regular(path).map_err(|reason| opening_error(path, reason))?;
    read_opened(path, &file, size)
}

/// Reads the file `name` inside the model's folder, under the rules shard names obey.
fn read_file_in_folder(folder: &Path, name: &str) -> Result<Vec<u8>, ModelError> {
    let path = folder.join(name);
    let opened = open_in_folder(folder, name).map_err(|reason| opening_error(&path, reason))?;
    read_opened(&path, &opened.file, opened.size)
}

/// Reads an opened file, at most `size` bytes (its size when checked, even if it grew since).
fn read_opened(path: &Path, file: &std::fs::File, size: u64) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(size)
        .read_to_end(&mut bytes)
        .map_err(|source| ModelError::io(path, source))?;
    Ok(bytes)
}

fn opening_error(path: &Path, reason: ShardPathError) -> ModelError {
    match reason {
        ShardPathError::NotFound => ModelError::io(path, std::io::ErrorKind::NotFound.into()),
        ShardPathError::Io(source) => ModelError::io(path, source),
        reason => ModelError::NotRegularFile {
            path: path.to_path_buf(),
            reason,
        },
    }
}

impl WebModel {
    /// Opens a web model. `path` is a model.json, a legacy `web_model.pb` /
    /// `tensorflowjs_model.pb` / `optimized_model.pb` (any `.pb`; its manifest
    /// is `weights_manifest.json` beside it), or a directory holding one of
    /// them (model.json preferred).
    ///
    /// Reads the graph and manifest; shard files are read only to size a
    /// string weight that other weights of its group follow.
    pub fn open(path: &Path) -> Result<WebModel, ModelError> {
        let (path, format) = locate(path)?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let bytes = read_file(&path)?;
        let (graph, signature, manifest) = match format {
            WebFormat::GraphModelJson => {
                let model = model_json::parse(&path, &bytes)?;
                (model.graph, model.signature, model.manifest)
            }
            WebFormat::LegacyProtobuf => {
                let graph = legacy::parse_graph(&path, &bytes)?;
                let manifest_path = dir.join(legacy::MANIFEST_FILE_NAME);
                let manifest_bytes = read_file_in_folder(&dir, legacy::MANIFEST_FILE_NAME)?;
                let manifest = legacy::parse_manifest(&manifest_path, &manifest_bytes)?;
                (graph, None, manifest)
            }
        };
        let mut model = WebModel {
            path,
            dir,
            format,
            graph,
            signature,
            groups: manifest.groups,
            weights: manifest.weights,
        };
        model.lay_out_string_weights()?;
        Ok(model)
    }

    /// The weight named `name` (the name of the `Const` node it feeds).
    pub fn weight(&self, name: &str) -> Option<&WeightSpec> {
        self.weights.iter().find(|weight| weight.name == name)
    }

    /// Reads every group's files, checks that each exists and that each
    /// group's stream holds exactly the bytes the manifest implies, and
    /// decodes all weights: uint8/uint16 affine and float16 to float32, a
    /// quantized int32 weight to int32 (rounded as TF.js rounds). Returns the
    /// values in manifest order, one per entry of [`WebModel::weights`].
    ///
    /// Errors name the shard file and the weight that does not fit: a
    /// missing file, a short stream, or a long one.
    pub fn read_weights(&self) -> Result<Vec<WeightValues>, ModelError> {
        self.read_all_weights()
    }

    /// Size and CRC-32 of every shard file, in the order the groups and their
    /// `paths` list them (nothing deduplicated).
    pub fn weight_files(&self) -> Result<Vec<WeightFile>, ModelError> {
        self.list_weight_files()
    }

    /// The file holding the weights manifest: model.json itself, or the
    /// legacy `weights_manifest.json`.
    pub fn manifest_path(&self) -> PathBuf {
        match self.format {
            WebFormat::GraphModelJson => self.path.clone(),
            WebFormat::LegacyProtobuf => self.dir.join(legacy::MANIFEST_FILE_NAME),
        }
    }
}
