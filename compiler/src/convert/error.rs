//! The one error type of `tfjsc convert`: every failure names the file or node it is about and,
//! where a name was not found, lists what exists.

use std::path::PathBuf;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be opened or read.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// A file's bytes are not what its format says (truncated or corrupt protobuf, bad table).
    #[error("{path}: not a valid {what}: {message}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    /// No MetaGraphDef carries the requested tags.
    #[error("{path}: no MetaGraph has the tags [{asked}]; the MetaGraphs have: {available}")]
    UnknownTags {
        path: PathBuf,
        asked: String,
        available: String,
    },
    /// The MetaGraph has no signature of that name.
    #[error("{path}: no signature {asked:?}; the signatures are: {available}")]
    UnknownSignature {
        path: PathBuf,
        asked: String,
        available: String,
    },
    /// A variable the graph reads has no value in the checkpoint.
    #[error("{path}: no value for variable {variable:?} (checkpoint key {key:?}); the bundle holds {count} tensors, e.g. {examples}")]
    MissingVariable {
        path: PathBuf,
        variable: String,
        key: String,
        count: usize,
        examples: String,
    },
    /// A requested output names no node of the graph.
    #[error("{path}: no node {name:?} in the graph{near}")]
    MissingNode {
        path: PathBuf,
        name: String,
        near: String,
    },
    /// The graph uses a construct the converter cannot freeze or rewrite.
    #[error("{path}: node {node:?}: {message}")]
    Node {
        path: PathBuf,
        node: String,
        message: String,
    },
    /// Ops TF.js cannot run and/or ops tfjsc cannot compile (see `--skip_op_check`).
    #[error("{0}")]
    Ops(String),
    /// Options that do not fit together or do not fit the input.
    #[error("{0}")]
    Usage(String),
}

impl ConvertError {
    /// A file error from an I/O error.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> ConvertError {
        ConvertError::File {
            path: path.into(),
            message: error.to_string(),
        }
    }
}

/// Names in `available` that resemble `name` (shared last path segment or substring), at most 8,
/// formatted as "; nodes with similar names: a, b" (or the first few names if none resemble it).
pub fn near_names<'a>(name: &str, available: impl Iterator<Item = &'a str>) -> String {
    let wanted = name.to_ascii_lowercase();
    let last = wanted.rsplit('/').next().unwrap_or(&wanted).to_string();
    let mut all = Vec::new();
    let mut near = Vec::new();
    for candidate in available {
        let lower = candidate.to_ascii_lowercase();
        let candidate_last = lower.rsplit('/').next().unwrap_or(&lower);
        if lower.contains(&wanted)
            || wanted.contains(&lower)
            || candidate_last == last
            || (last.len() >= 3 && lower.contains(&last))
        {
            near.push(candidate);
        }
        if all.len() < 8 {
            all.push(candidate);
        }
    }
    near.sort_unstable();
    near.dedup();
    if near.is_empty() {
        if all.is_empty() {
            return " (the graph is empty)".to_string();
        }
        return format!("; it has e.g. {}", all.join(", "));
    }
    near.truncate(8);
    format!("; nodes with similar names: {}", near.join(", "))
}
