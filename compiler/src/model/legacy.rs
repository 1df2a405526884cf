//! The legacy web format of TF.js converter 0.x (2018): a binary GraphDef
//! (`web_model.pb`, `tensorflowjs_model.pb` or `optimized_model.pb`) whose
//! `Const` nodes have had their values stripped, and a `weights_manifest.json`
//! beside it holding the manifest array alone.
//!
//! It exists so that old published models still compile. It only decodes the
//! two files; shards are read by the weights reader like any other model.

use std::path::Path;

use prost::Message;
use tfjsc_proto::tensorflow::GraphDef;

use super::error::ModelError;
use super::manifest::{self, Manifest};

/// The name of the manifest file that sits beside a legacy graph.
pub(crate) const MANIFEST_FILE_NAME: &str = "weights_manifest.json";

/// File names of legacy graphs, in the order a directory is searched.
pub(crate) const GRAPH_FILE_NAMES: [&str; 3] = [
    "web_model.pb",
    "tensorflowjs_model.pb",
    "optimized_model.pb",
];

/// Decodes a binary GraphDef read from `path`.
pub(crate) fn parse_graph(path: &Path, bytes: &[u8]) -> Result<GraphDef, ModelError> {
    GraphDef::decode(bytes).map_err(|source| ModelError::MalformedProtobuf {
        path: path.to_path_buf(),
        message: "tensorflow.GraphDef",
        source,
    })
}

/// Parses the bytes of a weights_manifest.json read from `path`.
pub(crate) fn parse_manifest(path: &Path, text: &[u8]) -> Result<Manifest, ModelError> {
    let document: serde_json::Value =
        serde_json::from_slice(text).map_err(|error| ModelError::json(path, &error))?;
    manifest::manifest(&document).map_err(|error| ModelError::Manifest {
        path: path.to_path_buf(),
        location: error.location(),
        expected: error.expected,
    })
}
