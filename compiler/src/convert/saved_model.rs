//! TF2 (and TF1) SavedModels: `saved_model.pb` plus the `variables/` tensor bundle.
//!
//! Chooses the MetaGraph by tags and the signature by name, finds which checkpoint key holds each
//! variable the signature's function captures (through the SavedObjectGraph's
//! `concrete_functions[f].bound_inputs` and the checkpoint's TrackableObjectGraph, as TensorFlow's
//! loader does; TF1 graphs fall back to the variable's name), and freezes the signature into a
//! flat graph. When the signature's outputs all come from one call node, that function is inlined
//! at the top level so node names match the Python converter's (`input`, `Identity`,
//! `StatefulPartitionedCall/...`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use prost::Message;
use tfjsc_proto::tensorflow::{
    attr_value, collection_def, tensor_info, MetaGraphDef, NodeDef, SavedModel, SignatureDef,
    TrackableObjectGraph, VariableDef,
};

use super::checkpoint::Checkpoint;
use super::error::ConvertError;
use super::freeze::{Freezer, Frozen, Value, VariableSource};
use super::slices::{extract, Region};
use super::tensor::Tensor;
use super::{read_input_file, Signature, SignatureTensor};

/// The checkpoint key of the serialized TrackableObjectGraph.
const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

/// A frozen signature and what model.json needs to describe it.
pub struct Loaded {
    pub frozen: Frozen,
    pub signature: Option<Signature>,
    pub outputs: Vec<Value>,
    pub tensorflow_version: String,
    /// The input graph's versions (producer), kept in the output as the Python converter does.
    pub versions: Option<tfjsc_proto::tensorflow::VersionDef>,
}

/// Reads and decodes `saved_model.pb` in `folder`.
pub fn read_saved_model(folder: &Path) -> Result<(PathBuf, SavedModel), ConvertError> {
    let (path, bytes) = read_input_file(folder, "saved_model.pb")?;
    let model = SavedModel::decode(bytes.as_slice()).map_err(|error| ConvertError::Corrupt {
        path: path.clone(),
        what: "SavedModel protobuf",
        message: format!("{error} (is the file truncated?)"),
    })?;
    Ok((path, model))
}

/// The MetaGraph whose tags are exactly `tags` (as a set).
pub fn choose_meta_graph<'m>(
    path: &Path,
    meta_graphs: &'m [MetaGraphDef],
    tags: &[String],
) -> Result<&'m MetaGraphDef, ConvertError> {
    let mut wanted: Vec<&str> = tags.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let tags_of = |meta: &MetaGraphDef| -> Vec<String> {
        let mut tags = meta
            .meta_info_def
            .as_ref()
            .map(|info| info.tags.clone())
            .unwrap_or_default();
        tags.sort_unstable();
        tags.dedup();
        tags
    };
    meta_graphs
        .iter()
        .find(|meta| tags_of(meta) == wanted)
        .ok_or_else(|| ConvertError::UnknownTags {
            path: path.to_path_buf(),
            asked: wanted.join(","),
            available: if meta_graphs.is_empty() {
                "none".to_string()
            } else {
                meta_graphs
                    .iter()
                    .map(|meta| format!("[{}]", tags_of(meta).join(",")))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        })
}

/// The named signature of a MetaGraph.
pub fn choose_signature<'m>(
    path: &Path,
    meta: &'m MetaGraphDef,
    name: &str,
) -> Result<&'m SignatureDef, ConvertError> {
    meta.signature_def
        .get(name)
        .ok_or_else(|| ConvertError::UnknownSignature {
            path: path.to_path_buf(),
            asked: name.to_string(),
            available: {
                let names: Vec<&str> = meta
                    .signature_def
                    .keys()
                    .map(String::as_str)
                    .filter(|name| !name.starts_with("__"))
                    .collect();
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            },
        })
}

/// The MetaGraph collections of TF1 variables (`tf.compat.v1.GraphKeys`), whose VariableDefs say
/// which variables are parts of a partitioned one.
const VARIABLE_COLLECTIONS: [&str; 4] = [
    "variables",
    "local_variables",
    "model_variables",
    "trainable_variables",
];

/// Variables read from a checkpoint (V2 bundle or V1 tables); keys found through the object
/// graph or by name; the parts of TF1 partitioned variables cut out of the whole saved under
/// their full name.
pub struct CheckpointVariables {
    checkpoint: Checkpoint,
    /// Top-level handle node name → checkpoint key (from the object graph).
    by_handle: HashMap<String, String>,
    /// Variable full names → checkpoint key (from the object graph).
    by_full_name: HashMap<String, String>,
    /// Variable node name → the part of a saved whole it is (TF1 partitioned variables).
    parts: HashMap<String, Part>,
    /// The whole a part was last cut from (a variable's parts are usually read together).
    last_whole: Option<(String, Tensor)>,
}

/// One part of a TF1 partitioned variable (a VariableDef's `save_slice_info_def`).
struct Part {
    full_name: String,
    full_shape: Vec<i64>,
    offset: Vec<i64>,
    shape: Vec<i64>,
}

/// The parts of partitioned variables the variable collections of `meta` describe.
fn partitioned_parts(
    path: &Path,
    meta: &MetaGraphDef,
) -> Result<HashMap<String, Part>, ConvertError> {
    let mut parts = HashMap::new();
    for collection in VARIABLE_COLLECTIONS {
        let Some(collection_def::Kind::BytesList(list)) = meta
            .collection_def
            .get(collection)
            .and_then(|collection| collection.kind.as_ref())
        else {
            continue;
        };
        for bytes in &list.value {
            let variable =
                VariableDef::decode(bytes.as_slice()).map_err(|error| ConvertError::Corrupt {
                    path: path.to_path_buf(),
                    what: "MetaGraphDef",
                    message: format!("a VariableDef of collection {collection:?}: {error}"),
                })?;
            let Some(info) = variable
                .save_slice_info_def
                .filter(|info| !info.full_name.is_empty())
            else {
                continue;
            };
            let name = variable.variable_name.split(':').next().unwrap_or_default();
            parts.insert(
                name.to_string(),
                Part {
                    full_name: info.full_name,
                    full_shape: info.full_shape,
                    offset: info.var_offset,
                    shape: info.var_shape,
                },
            );
        }
    }
    Ok(parts)
}

impl CheckpointVariables {
    /// Reads the object graph of `checkpoint`, the captures of `meta`'s functions, and the
    /// partitioned variables of its collections (`meta_path` names the MetaGraph's file).
    pub fn new(
        mut checkpoint: Checkpoint,
        meta: &MetaGraphDef,
        meta_path: &Path,
    ) -> Result<CheckpointVariables, ConvertError> {
        let parts = partitioned_parts(meta_path, meta)?;
        let mut by_handle = HashMap::new();
        let mut by_full_name = HashMap::new();
        let trackable = match checkpoint.read(OBJECT_GRAPH_KEY)? {
            Some(tensor) => {
                let bytes = tensor.strings.first().cloned().unwrap_or_default();
                Some(
                    TrackableObjectGraph::decode(bytes.as_slice()).map_err(|error| {
                        ConvertError::Corrupt {
                            path: checkpoint.path().to_path_buf(),
                            what: "checkpoint object graph",
                            message: error.to_string(),
                        }
                    })?,
                )
            }
            None => None,
        };
        if let Some(trackable) = &trackable {
            let key_of = |node_id: i32| -> Option<String> {
                let node = trackable.nodes.get(usize::try_from(node_id).ok()?)?;
                node.attributes
                    .iter()
                    .find(|attribute| attribute.name == "VARIABLE_VALUE")
                    .map(|attribute| attribute.checkpoint_key.clone())
            };
            for node in &trackable.nodes {
                for attribute in &node.attributes {
                    if attribute.name == "VARIABLE_VALUE" && !attribute.full_name.is_empty() {
                        by_full_name.insert(
                            attribute.full_name.clone(),
                            attribute.checkpoint_key.clone(),
                        );
                    }
                }
            }
            if let (Some(objects), Some(graph)) = (&meta.object_graph_def, &meta.graph_def) {
                // Each call of a saved concrete function passes its captures last, in
                // bound_inputs order.
                for node in &graph.node {
                    let Some(function) = called_function(node) else {
                        continue;
                    };
                    let Some(saved) = objects.concrete_functions.get(function) else {
                        continue;
                    };
                    let data_inputs: Vec<&String> =
                        node.input.iter().filter(|i| !i.starts_with('^')).collect();
                    let first = data_inputs.len().saturating_sub(saved.bound_inputs.len());
                    for (input, &object) in data_inputs[first..].iter().zip(&saved.bound_inputs) {
                        if let Some(key) = key_of(object) {
                            let handle = input.split(':').next().unwrap_or(input);
                            by_handle.insert(handle.to_string(), key);
                        }
                    }
                }
            }
        }
        Ok(CheckpointVariables {
            checkpoint,
            by_handle,
            by_full_name,
            parts,
            last_whole: None,
        })
    }

    /// The error for a key the checkpoint does not hold, with what it holds.
    fn missing(&self, key: &str, reader: &str) -> ConvertError {
        let keys: Vec<&str> = self
            .checkpoint
            .keys()
            .filter(|k| *k != OBJECT_GRAPH_KEY)
            .collect();
        ConvertError::MissingVariable {
            path: self.checkpoint.path().to_path_buf(),
            variable: reader.to_string(),
            key: key.to_string(),
            count: keys.len(),
            examples: keys.iter().take(5).copied().collect::<Vec<_>>().join(", "),
        }
    }

    /// Part `key` of a partitioned variable, cut out of the whole saved under its full name.
    fn part(&mut self, key: &str, reader: &str) -> Result<Option<Tensor>, ConvertError> {
        let Some(part) = self.parts.get(key) else {
            return Ok(None);
        };
        let full_name = part.full_name.clone();
        let whole = match self.last_whole.take() {
            Some((name, whole)) if name == full_name => whole,
            _ => match self.checkpoint.read(&full_name)? {
                Some(whole) => whole,
                None => return Err(self.missing(&full_name, reader)),
            },
        };
        let part = &self.parts[key];
        let corrupt = |message: String| ConvertError::Corrupt {
            path: self.checkpoint.path().to_path_buf(),
            what: "checkpoint",
            message: format!(
                "variable {key:?} is part of {full_name:?} at {:?} of shape {:?}: {message}",
                part.offset, part.shape
            ),
        };
        if part.full_shape != whole.shape {
            return Err(corrupt(format!(
                "the MetaGraph gives the whole the shape {:?}, the checkpoint {:?}",
                part.full_shape, whole.shape
            )));
        }
        let region = Region::new(&whole.shape, &part.offset, &part.shape).map_err(&corrupt)?;
        let value = extract(&whole, &region).map_err(&corrupt)?;
        self.last_whole = Some((full_name, whole));
        Ok(Some(value))
    }
}

fn called_function(node: &NodeDef) -> Option<&str> {
    if !matches!(
        node.op.as_str(),
        "PartitionedCall" | "StatefulPartitionedCall"
    ) {
        return None;
    }
    match node.attr.get("f")?.value.as_ref()? {
        attr_value::Value::Func(function) => Some(function.name.as_str()),
        _ => None,
    }
}

fn string_attr(node: &NodeDef, name: &str) -> Option<String> {
    match node.attr.get(name)?.value.as_ref()? {
        attr_value::Value::S(bytes) if !bytes.is_empty() => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        _ => None,
    }
}

impl VariableSource for CheckpointVariables {
    fn key(&mut self, handle: &NodeDef, prefix: &str) -> Result<String, ConvertError> {
        if prefix.is_empty() {
            if let Some(key) = self.by_handle.get(&handle.name) {
                return Ok(key.clone());
            }
            if self.parts.contains_key(&handle.name) && !self.checkpoint.contains(&handle.name) {
                return Ok(handle.name.clone());
            }
        }
        let shared = string_attr(handle, "shared_name").unwrap_or_else(|| handle.name.clone());
        for name in [&shared, &handle.name] {
            if let Some(key) = self.by_full_name.get(name) {
                return Ok(key.clone());
            }
            if self.checkpoint.contains(name) {
                return Ok(name.clone());
            }
        }
        // Not found: the read reports it with the bundle's contents.
        Ok(shared)
    }

    fn value(&mut self, key: &str, reader: &str) -> Result<Tensor, ConvertError> {
        if let Some(tensor) = self.checkpoint.read(key)? {
            return Ok(tensor);
        }
        match self.part(key, reader)? {
            Some(tensor) => Ok(tensor),
            None => Err(self.missing(key, reader)),
        }
    }
}

/// A TensorInfo's dense tensor name.
fn tensor_name(info: &tfjsc_proto::tensorflow::TensorInfo) -> Option<&str> {
    match info.encoding.as_ref()? {
        tensor_info::Encoding::Name(name) => Some(name.as_str()),
        _ => None,
    }
}

/// Freezes `signature` of `meta` (or `output_node_names` when given) with `variables`.
pub fn freeze(
    path: &Path,
    meta: &MetaGraphDef,
    signature: Option<&SignatureDef>,
    output_node_names: &[String],
    variables: &mut dyn VariableSource,
) -> Result<Loaded, ConvertError> {
    let empty = Default::default();
    let graph = meta.graph_def.as_ref().unwrap_or(&empty);
    let op_defs = meta
        .meta_info_def
        .as_ref()
        .and_then(|info| info.stripped_op_list.as_ref())
        .map(|list| list.op.as_slice())
        .unwrap_or(&[]);
    let tensorflow_version = meta
        .meta_info_def
        .as_ref()
        .map(|info| info.tensorflow_version.clone())
        .unwrap_or_default();
    let mut freezer = Freezer::new(path.to_path_buf(), graph, op_defs, variables);
    let Some(signature) = signature.filter(|_| output_node_names.is_empty()) else {
        let outputs = freezer.graph_outputs(graph, output_node_names)?;
        let frozen = freezer.finish(&outputs)?;
        // As the Python converter writes it for graphs without a signature: the requested
        // outputs only, keyed and named as given, without dtype or shape.
        let signature_outputs = output_node_names
            .iter()
            .map(|name| {
                let tensor = SignatureTensor {
                    name: name.clone(),
                    dtype: 0,
                    shape: None,
                };
                (name.clone(), tensor)
            })
            .collect();
        return Ok(Loaded {
            frozen,
            signature: Some(Signature {
                inputs: BTreeMap::new(),
                outputs: signature_outputs,
            }),
            outputs,
            tensorflow_version,
            versions: graph.versions.clone(),
        });
    };
    let mut output_keys: Vec<(&String, &str)> = Vec::new();
    for (key, info) in &signature.outputs {
        let name = tensor_name(info).ok_or_else(|| {
            ConvertError::Usage(format!(
                "{}: signature output {key:?} is not a dense tensor",
                path.display()
            ))
        })?;
        output_keys.push((key, name));
    }
    let by_name: HashMap<&str, &NodeDef> =
        graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
    let node_of = |tensor: &str| tensor.split(':').next().unwrap_or(tensor).to_string();
    let index_of = |tensor: &str| -> usize {
        tensor
            .split(':')
            .nth(1)
            .and_then(|i| i.parse().ok())
            .unwrap_or(0)
    };
    // Root inlining: one call node produces every output.
    let root = output_keys
        .first()
        .map(|(_, name)| node_of(name))
        .filter(|root| output_keys.iter().all(|(_, name)| node_of(name) == *root))
        .and_then(|root| by_name.get(root.as_str()).copied())
        .filter(|node| called_function(node).is_some());
    let mut inputs = BTreeMap::new();
    let outputs: Vec<Value>;
    if let Some(call) = root {
        let function_name = called_function(call).unwrap_or_default();
        let function = graph.library.iter().flat_map(|l| &l.function).find(|f| {
            f.signature
                .as_ref()
                .is_some_and(|s| s.name == function_name)
        });
        let arg_names: Vec<String> = function
            .and_then(|f| f.signature.as_ref())
            .map(|s| s.input_arg.iter().map(|a| a.name.clone()).collect())
            .unwrap_or_default();
        let mut args = Vec::new();
        for (position, input) in call
            .input
            .iter()
            .filter(|i| !i.starts_with('^'))
            .enumerate()
        {
            let input_node = node_of(input);
            let feed = signature
                .inputs
                .iter()
                .find(|(_, info)| tensor_name(info).map(node_of) == Some(input_node.clone()));
            if let Some((key, info)) = feed {
                let name = arg_names
                    .get(position)
                    .cloned()
                    .unwrap_or_else(|| key.clone());
                let value = freezer.placeholder(&name, info.dtype, info.tensor_shape.as_ref());
                inputs.insert(
                    key.clone(),
                    SignatureTensor {
                        name: format!("{}:0", value.input().unwrap_or_default()),
                        dtype: info.dtype,
                        shape: info.tensor_shape.clone(),
                    },
                );
                args.push(value);
            } else {
                let mut values = freezer.graph_outputs(graph, std::slice::from_ref(input))?;
                args.push(values.remove(0));
            }
        }
        let indices: Vec<usize> = output_keys.iter().map(|(_, name)| index_of(name)).collect();
        outputs = freezer.call_root(function_name, args, &indices)?;
    } else {
        for (key, info) in &signature.inputs {
            if let Some(name) = tensor_name(info) {
                inputs.insert(
                    key.clone(),
                    SignatureTensor {
                        name: name.to_string(),
                        dtype: info.dtype,
                        shape: info.tensor_shape.clone(),
                    },
                );
            }
        }
        let names: Vec<String> = output_keys
            .iter()
            .map(|(_, name)| name.to_string())
            .collect();
        outputs = freezer.graph_outputs(graph, &names)?;
    }
    let mut signature_outputs = BTreeMap::new();
    for ((key, _), value) in output_keys.iter().zip(&outputs) {
        let info = &signature.outputs[*key];
        let name = value.input().unwrap_or_default();
        let name = if name.contains(':') {
            name
        } else {
            format!("{name}:0")
        };
        signature_outputs.insert(
            (*key).clone(),
            SignatureTensor {
                name,
                dtype: info.dtype,
                shape: info.tensor_shape.clone(),
            },
        );
    }
    let frozen = freezer.finish(&outputs)?;
    Ok(Loaded {
        frozen,
        signature: Some(Signature {
            inputs,
            outputs: signature_outputs,
        }),
        outputs,
        tensorflow_version,
        versions: graph.versions.clone(),
    })
}
