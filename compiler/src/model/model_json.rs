//! The top level of a `model.json` (format "graph-model"): topology,
//! weights manifest and signature.
//!
//! This module exists to tell a graph model from other TF.js model files
//! (a Keras "layers-model" has the same file name) and to read the
//! signature, whose TensorInfo uses the same JSON mapping as the topology.
//! It delegates the GraphDef to `graph_json` and the manifest to `manifest`,
//! and never opens shard files.

use std::path::Path;

use serde_json::Value;
use tfjsc_proto::tensorflow::GraphDef;

use super::error::ModelError;
use super::graph_json;
use super::json::{data_type, data_type_name, field, object, At, JsonError, JsonResult};
use super::manifest::{self, Manifest};

/// One input or output of a model's signature.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureTensor {
    /// The key of the signature map, e.g. "input_1" or "output_0".
    pub key: String,
    /// The graph tensor, as written, e.g. "input_1:0".
    pub name: String,
    /// The element type as a DataType name, e.g. "DT_FLOAT".
    pub dtype: Option<String>,
    /// The shape, -1 for an unknown dimension; `None` when the rank is unknown.
    pub shape: Option<Vec<i64>>,
}

/// The inputs and outputs a model declares, in the order model.json lists them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSignature {
    /// The inputs.
    pub inputs: Vec<SignatureTensor>,
    /// The outputs.
    pub outputs: Vec<SignatureTensor>,
}

/// Everything model.json says, before any shard is read.
pub(crate) struct ModelJson {
    pub graph: GraphDef,
    pub signature: Option<ModelSignature>,
    pub manifest: Manifest,
}

/// Parses the bytes of a model.json read from `path`.
pub(crate) fn parse(path: &Path, text: &[u8]) -> Result<ModelJson, ModelError> {
    let document: Value =
        serde_json::from_slice(text).map_err(|error| ModelError::json(path, &error))?;
    let top = object(&document).map_err(|error| ModelError::Topology {
        path: path.to_path_buf(),
        location: error.location(),
        expected: format!("a model.json object ({})", error.expected),
    })?;
    let format = top.get("format").and_then(Value::as_str);
    let topology = top.get("modelTopology").filter(|value| !value.is_null());
    let looks_like_layers = topology.and_then(Value::as_object).is_some_and(|topology| {
        topology.contains_key("class_name") || topology.contains_key("model_config")
    });
    if format.is_some_and(|format| format != "graph-model") || looks_like_layers {
        return Err(ModelError::UnsupportedFormat {
            path: path.to_path_buf(),
            format: format.unwrap_or("layers-model").to_string(),
        });
    }
    let graph = match topology {
        Some(topology) => graph_json::graph_def(topology),
        None => Err(JsonError::new("a \"modelTopology\" GraphDef object")),
    }
    .map_err(|error| ModelError::Topology {
        path: path.to_path_buf(),
        location: error.location(),
        expected: error.expected,
    })?;
    let manifest = match top.get("weightsManifest").filter(|value| !value.is_null()) {
        Some(value) => manifest::manifest(value).map_err(|error| ModelError::Manifest {
            path: path.to_path_buf(),
            location: error.location(),
            expected: error.expected,
        })?,
        None => Manifest::default(),
    };
    let signature = match top.get("signature").filter(|value| !value.is_null()) {
        Some(value) => Some(signature(value).map_err(|error| ModelError::Signature {
            path: path.to_path_buf(),
            location: error.location(),
            expected: error.expected,
        })?),
        None => None,
    };
    Ok(ModelJson {
        graph,
        signature,
        manifest,
    })
}

fn signature(value: &Value) -> JsonResult<ModelSignature> {
    let fields = object(value)?;
    let tensors = |proto_name: &str| -> JsonResult<Vec<SignatureTensor>> {
        let Some(map) = field(fields, proto_name, proto_name) else {
            return Ok(Vec::new());
        };
        object(map)
            .and_then(|map| {
                map.iter()
                    .map(|(key, info)| tensor_info(key, info).at(|| format!("{key:?}")))
                    .collect()
            })
            .at(|| proto_name.to_string())
    };
    Ok(ModelSignature {
        inputs: tensors("inputs")?,
        outputs: tensors("outputs")?,
    })
}

fn tensor_info(key: &str, value: &Value) -> JsonResult<SignatureTensor> {
    let fields = object(value)?;
    let name = field(fields, "name", "name")
        .ok_or_else(|| JsonError::new("a \"name\" naming a graph tensor"))
        .and_then(super::json::string)
        .at(|| "name".to_string())?;
    let dtype = field(fields, "dtype", "dtype")
        .map(data_type)
        .transpose()
        .at(|| "dtype".to_string())?
        .map(data_type_name);
    let shape = match field(fields, "tensor_shape", "tensorShape") {
        None => None,
        Some(shape) => {
            let shape = graph_json::tensor_shape(shape).at(|| "tensorShape".to_string())?;
            (!shape.unknown_rank).then(|| shape.dim.iter().map(|dim| dim.size).collect())
        }
    };
    Ok(SignatureTensor {
        key: key.to_string(),
        name,
        dtype,
        shape,
    })
}
