//! Writes the converted graph as a TF.js web model: `model.json` (format "graph-model", the
//! GraphDef in protobuf's JSON mapping) or the legacy `web_model.pb` +
//! `weights_manifest.json` (the binary GraphDef and the manifest alone, as tensorflowjs 0.x's
//! converter wrote them for TF.js 0.x's `loadFrozenModel`), plus the weight shards. Constants
//! become weights named like their `Const` node, back to back in node order, optionally
//! quantized, split into shards of a fixed size.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use prost::Message;
use serde_json::{json, Map, Value as Json};
use tfjsc_proto::tensorflow::{
    attr_value, AttrValue, DataType, FunctionDef, GraphDef, NameAttrList, NodeDef, OpDef,
    TensorProto, TensorShapeProto, VersionDef,
};

use super::error::ConvertError;
use super::quantize::{quantize, Quantization};
use super::tensor::Tensor;
use super::Signature;

/// How the web model is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// model.json with the graph in JSON (TF.js converter 1.x and later).
    GraphModel,
    /// web_model.pb + weights_manifest.json (TF.js converter 0.x).
    Legacy,
}

/// The legacy format's graph file, as the first tensorflowjs converters named it and the
/// product's docs specify (later 0.x converters wrote `tensorflowjs_model.pb`, the name TF.js
/// 0.x's `loadTfHubModule` fetches; `loadFrozenModel` takes any URL, and `tfjsc compile` reads
/// both names).
pub const LEGACY_GRAPH_FILE: &str = "web_model.pb";

/// The legacy format's weights manifest.
pub const LEGACY_MANIFEST_FILE: &str = "weights_manifest.json";

/// What the writer needs besides the graph.
pub struct WriteOptions<'a> {
    pub format: OutputFormat,
    pub shard_size: usize,
    pub quantization: &'a Quantization,
    pub generated_by: String,
}

/// One weight: its manifest entry and stored bytes (borrowed when stored as they are).
struct StoredWeight<'a> {
    entry: Json,
    bytes: Cow<'a, [u8]>,
}

/// The stored dtype TF.js reads for `dtype`, if it has one.
pub fn stored_dtype(dtype: DataType) -> Option<(DataType, &'static str)> {
    use DataType::*;
    Some(match dtype {
        DtFloat | DtDouble | DtHalf | DtBfloat16 => (DtFloat, "float32"),
        DtInt32 | DtInt64 | DtInt16 | DtInt8 | DtUint8 | DtUint16 | DtUint32 => (DtInt32, "int32"),
        DtBool => (DtBool, "bool"),
        DtString => (DtString, "string"),
        DtComplex64 => (DtComplex64, "complex64"),
        _ => return None,
    })
}

/// Converts a tensor to the dtype TF.js stores (int64 → int32, float64 → float32, ...).
pub fn to_stored(tensor: &Tensor) -> Option<Cow<'_, Tensor>> {
    use DataType::*;
    let (stored, _) = stored_dtype(tensor.dtype)?;
    if stored == tensor.dtype {
        return Some(Cow::Borrowed(tensor));
    }
    let bytes = &tensor.bytes;
    let values: Vec<u8> = match tensor.dtype {
        DtDouble => bytes
            .chunks_exact(8)
            .flat_map(|c| (f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).to_le_bytes())
            .collect(),
        DtHalf => bytes
            .chunks_exact(2)
            .flat_map(|c| {
                half::f16::from_le_bytes([c[0], c[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect(),
        DtBfloat16 => bytes
            .chunks_exact(2)
            .flat_map(|c| {
                half::bf16::from_le_bytes([c[0], c[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect(),
        DtInt64 => bytes
            .chunks_exact(8)
            .flat_map(|c| {
                let v = i64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                (v.clamp(i32::MIN as i64, i32::MAX as i64) as i32).to_le_bytes()
            })
            .collect(),
        DtUint32 => bytes
            .chunks_exact(4)
            .flat_map(|c| {
                (u32::from_le_bytes([c[0], c[1], c[2], c[3]]).min(i32::MAX as u32) as i32)
                    .to_le_bytes()
            })
            .collect(),
        DtInt16 => bytes
            .chunks_exact(2)
            .flat_map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])).to_le_bytes())
            .collect(),
        DtUint16 => bytes
            .chunks_exact(2)
            .flat_map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])).to_le_bytes())
            .collect(),
        DtInt8 => bytes
            .iter()
            .flat_map(|&b| i32::from(b as i8).to_le_bytes())
            .collect(),
        DtUint8 => bytes
            .iter()
            .flat_map(|&b| i32::from(b).to_le_bytes())
            .collect(),
        _ => return None,
    };
    Tensor::from_bytes(stored, tensor.shape.clone(), values)
        .ok()
        .map(Cow::Owned)
}

fn weight<'a>(
    name: &str,
    tensor: Cow<'a, Tensor>,
    quantization: &Quantization,
) -> StoredWeight<'a> {
    let (_, dtype_name) = stored_dtype(tensor.dtype).unwrap_or((DataType::DtFloat, "float32"));
    let mut entry = json!({"name": name, "shape": tensor.shape, "dtype": dtype_name});
    if tensor.dtype == DataType::DtString {
        let mut bytes = Vec::new();
        for string in &tensor.strings {
            bytes.extend_from_slice(&(string.len() as u32).to_le_bytes());
            bytes.extend_from_slice(string);
        }
        return StoredWeight {
            entry,
            bytes: Cow::Owned(bytes),
        };
    }
    if tensor.dtype == DataType::DtFloat {
        if let Some((bytes, info)) = quantize(name, &tensor, quantization) {
            entry["quantization"] = info;
            return StoredWeight {
                entry,
                bytes: Cow::Owned(bytes),
            };
        }
    }
    let bytes = match tensor {
        Cow::Borrowed(tensor) => Cow::Borrowed(tensor.bytes.as_slice()),
        Cow::Owned(tensor) => Cow::Owned(tensor.bytes),
    };
    StoredWeight { entry, bytes }
}

/// Writes `weights` back to back as shards of `shard_size` bytes; returns the file names.
fn write_shards(
    output: &Path,
    weights: &[StoredWeight],
    shard_size: usize,
    suffix: &str,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<Json>, ConvertError> {
    let total: usize = weights.iter().map(|w| w.bytes.len()).sum();
    let shard_size = shard_size.max(1);
    let shard_count = total.div_ceil(shard_size).max(1);
    let mut names = Vec::new();
    let mut pieces = weights
        .iter()
        .map(|w| &w.bytes[..])
        .filter(|b| !b.is_empty());
    let mut pending: &[u8] = &[];
    for index in 0..shard_count {
        let name = format!("group1-shard{}of{}{suffix}", index + 1, shard_count);
        let path = output.join(&name);
        let file = std::fs::File::create(&path).map_err(|error| ConvertError::io(&path, error))?;
        let mut file = std::io::BufWriter::new(file);
        let mut room = shard_size;
        while room > 0 {
            if pending.is_empty() {
                match pieces.next() {
                    Some(piece) => pending = piece,
                    None => break,
                }
            }
            let take = room.min(pending.len());
            file.write_all(&pending[..take])
                .map_err(|error| ConvertError::io(&path, error))?;
            pending = &pending[take..];
            room -= take;
        }
        file.flush()
            .map_err(|error| ConvertError::io(&path, error))?;
        written.push(path);
        names.push(Json::String(name));
    }
    Ok(names)
}

/// The `Const` nodes of the library's functions (control-flow bodies), renamed
/// `FUNCTION/NODE` as the Python converter names them, so that TF.js, which looks every `Const`
/// up in the weights by node name, finds them there; references inside each function follow.
pub(crate) fn function_constants(
    output: &Path,
    graph: &mut GraphDef,
) -> Result<std::collections::HashMap<String, Tensor>, ConvertError> {
    let mut constants = std::collections::HashMap::new();
    if let Some(library) = &mut graph.library {
        for function in &mut library.function {
            let function_name = function
                .signature
                .as_ref()
                .map(|signature| signature.name.clone())
                .unwrap_or_default();
            let mut renamed = std::collections::HashMap::new();
            for node in &mut function.node_def {
                if node.op != "Const" {
                    continue;
                }
                let tensor = match node.attr.get("value").and_then(|a| a.value.as_ref()) {
                    Some(tfjsc_proto::tensorflow::attr_value::Value::Tensor(proto)) => {
                        Tensor::from_proto(proto).map_err(|message| ConvertError::Node {
                            path: output.to_path_buf(),
                            node: format!("{function_name}/{}", node.name),
                            message,
                        })?
                    }
                    _ => continue,
                };
                let name = format!("{function_name}/{}", node.name);
                renamed.insert(node.name.clone(), name.clone());
                node.name = name.clone();
                constants.insert(name, tensor);
            }
            let rename = |reference: &mut String| {
                let (control, rest) = match reference.strip_prefix('^') {
                    Some(rest) => ("^", rest),
                    None => ("", reference.as_str()),
                };
                let (node, tail) = match rest.find(':') {
                    Some(at) => rest.split_at(at),
                    None => (rest, ""),
                };
                if let Some(new_name) = renamed.get(node) {
                    *reference = format!("{control}{new_name}{tail}");
                }
            };
            for node in &mut function.node_def {
                node.input.iter_mut().for_each(rename);
            }
            function.ret.values_mut().for_each(rename);
            function.control_ret.values_mut().for_each(rename);
        }
    }
    Ok(constants)
}

/// Writes the web model into `output` (created if needed); returns the files written.
pub fn write_model(
    output: &Path,
    graph: &GraphDef,
    constants: &std::collections::HashMap<String, Tensor>,
    signature: Option<&Signature>,
    options: &WriteOptions,
) -> Result<Vec<PathBuf>, ConvertError> {
    std::fs::create_dir_all(output).map_err(|error| ConvertError::io(output, error))?;
    let mut weights = Vec::new();
    let mut graph = graph.clone();
    let function_constants = function_constants(output, &mut graph)?;
    let function_nodes = graph
        .library
        .iter_mut()
        .flat_map(|library| &mut library.function)
        .flat_map(|function| &mut function.node_def);
    for node in graph.node.iter_mut().chain(function_nodes) {
        if node.op != "Const" {
            continue;
        }
        let Some(tensor) = constants
            .get(&node.name)
            .or_else(|| function_constants.get(&node.name))
        else {
            continue;
        };
        let stored = to_stored(tensor).ok_or_else(|| ConvertError::Node {
            path: output.to_path_buf(),
            node: node.name.clone(),
            message: format!(
                "constant of dtype {} has no TF.js weight encoding",
                tensor.dtype.as_str_name()
            ),
        })?;
        if options.format == OutputFormat::Legacy && !legacy_weight_dtype(stored.dtype) {
            return Err(ConvertError::Node {
                path: output.to_path_buf(),
                node: node.name.clone(),
                message: format!(
                    "constant of dtype {}: TF.js 0.x, the runtime of the legacy format, reads \
                     only float32, int32 and bool weights",
                    tensor.dtype.as_str_name()
                ),
            });
        }
        node.attr.insert(
            "dtype".into(),
            super::freeze::type_attr(stored.dtype as i32),
        );
        node.attr.insert("value".into(), stored.attr(false));
        weights.push(weight(&node.name, stored, options.quantization));
    }
    let suffix = match options.format {
        OutputFormat::GraphModel => ".bin",
        OutputFormat::Legacy => "",
    };
    let mut written = Vec::new();
    let paths = write_shards(output, &weights, options.shard_size, suffix, &mut written)?;
    let manifest = json!([{
        "paths": paths,
        "weights": weights.into_iter().map(|w| w.entry).collect::<Vec<_>>(),
    }]);
    match options.format {
        OutputFormat::GraphModel => {
            let mut model = Map::new();
            model.insert("format".into(), json!("graph-model"));
            model.insert("generatedBy".into(), json!(options.generated_by));
            model.insert(
                "convertedBy".into(),
                json!(format!("tfjsc convert {}", env!("CARGO_PKG_VERSION"))),
            );
            if let Some(signature) = signature {
                model.insert("signature".into(), signature_json(signature));
            }
            model.insert("modelTopology".into(), graph_json(&graph));
            model.insert("weightsManifest".into(), manifest);
            let path = output.join("model.json");
            let text = serde_json::to_string(&Json::Object(model))
                .map_err(|error| ConvertError::Usage(error.to_string()))?;
            std::fs::write(&path, text).map_err(|error| ConvertError::io(&path, error))?;
            written.push(path);
        }
        OutputFormat::Legacy => {
            // TF.js 0.x reads `versions.producer` unconditionally.
            graph.versions.get_or_insert_with(VersionDef::default);
            let path = output.join(LEGACY_GRAPH_FILE);
            std::fs::write(&path, graph.encode_to_vec())
                .map_err(|error| ConvertError::io(&path, error))?;
            written.push(path);
            let path = output.join(LEGACY_MANIFEST_FILE);
            let text = serde_json::to_string(&manifest)
                .map_err(|error| ConvertError::Usage(error.to_string()))?;
            std::fs::write(&path, text).map_err(|error| ConvertError::io(&path, error))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Whether TF.js 0.x decodes weights of stored dtype `dtype` (its `decodeWeights` knows float32,
/// int32 and bool).
fn legacy_weight_dtype(dtype: DataType) -> bool {
    matches!(
        dtype,
        DataType::DtFloat | DataType::DtInt32 | DataType::DtBool
    )
}

fn signature_json(signature: &Signature) -> Json {
    let side = |tensors: &BTreeMap<String, super::SignatureTensor>| -> Json {
        let mut map = Map::new();
        for (key, tensor) in tensors {
            let mut info = Map::new();
            info.insert("name".into(), json!(tensor.name));
            if tensor.dtype != 0 {
                info.insert("dtype".into(), json!(dtype_name(tensor.dtype)));
            }
            if let Some(shape) = &tensor.shape {
                info.insert("tensorShape".into(), shape_json(shape));
            }
            map.insert(key.clone(), Json::Object(info));
        }
        Json::Object(map)
    };
    let mut map = Map::new();
    if !signature.inputs.is_empty() {
        map.insert("inputs".into(), side(&signature.inputs));
    }
    map.insert("outputs".into(), side(&signature.outputs));
    Json::Object(map)
}

fn dtype_name(dtype: i32) -> String {
    DataType::try_from(dtype)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| dtype.to_string())
}

/// A GraphDef in protobuf's JSON mapping.
pub fn graph_json(graph: &GraphDef) -> Json {
    let mut topology = Map::new();
    topology.insert(
        "node".into(),
        Json::Array(graph.node.iter().map(node_json).collect()),
    );
    let functions: Vec<Json> = graph
        .library
        .iter()
        .flat_map(|library| &library.function)
        .map(function_json)
        .collect();
    let mut library = Map::new();
    if !functions.is_empty() {
        library.insert("function".into(), Json::Array(functions));
    }
    topology.insert("library".into(), Json::Object(library));
    topology.insert(
        "versions".into(),
        versions_json(graph.versions.as_ref().unwrap_or(&VersionDef::default())),
    );
    Json::Object(topology)
}

fn versions_json(versions: &VersionDef) -> Json {
    let mut map = Map::new();
    if versions.producer != 0 {
        map.insert("producer".into(), json!(versions.producer));
    }
    if versions.min_consumer != 0 {
        map.insert("minConsumer".into(), json!(versions.min_consumer));
    }
    Json::Object(map)
}

fn node_json(node: &NodeDef) -> Json {
    let mut map = Map::new();
    map.insert("name".into(), json!(node.name));
    map.insert("op".into(), json!(node.op));
    if !node.input.is_empty() {
        map.insert("input".into(), json!(node.input));
    }
    if !node.device.is_empty() {
        map.insert("device".into(), json!(node.device));
    }
    if !node.attr.is_empty() {
        map.insert("attr".into(), attrs_json(&node.attr));
    }
    Json::Object(map)
}

fn attrs_json(attrs: &BTreeMap<String, AttrValue>) -> Json {
    Json::Object(
        attrs
            .iter()
            .map(|(name, value)| (name.clone(), attr_json(value)))
            .collect(),
    )
}

fn base64(bytes: &[u8]) -> Json {
    Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A float as protobuf's JSON mapping writes it: the shortest decimal of the f32, or a string
/// for non-finite values.
fn float_json(value: f32) -> Json {
    if value.is_finite() {
        let text = format!("{value}");
        text.parse::<f64>().map(|v| json!(v)).unwrap_or(json!(0.0))
    } else if value.is_nan() {
        json!("NaN")
    } else if value > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

fn attr_json(attr: &AttrValue) -> Json {
    use attr_value::Value::*;
    match &attr.value {
        None => json!({}),
        Some(S(bytes)) => json!({"s": base64(bytes)}),
        Some(I(value)) => json!({"i": value.to_string()}),
        Some(F(value)) => json!({"f": float_json(*value)}),
        Some(B(value)) => json!({"b": value}),
        Some(Type(dtype)) => json!({"type": dtype_name(*dtype)}),
        Some(Shape(shape)) => json!({"shape": shape_json(shape)}),
        Some(Tensor(tensor)) => json!({"tensor": tensor_json(tensor)}),
        Some(Func(function)) => json!({"func": func_json(function)}),
        Some(Placeholder(name)) => json!({"placeholder": name}),
        Some(List(list)) => {
            let mut map = Map::new();
            if !list.s.is_empty() {
                map.insert(
                    "s".into(),
                    Json::Array(list.s.iter().map(|s| base64(s)).collect()),
                );
            }
            if !list.i.is_empty() {
                map.insert(
                    "i".into(),
                    Json::Array(list.i.iter().map(|i| json!(i.to_string())).collect()),
                );
            }
            if !list.f.is_empty() {
                map.insert(
                    "f".into(),
                    Json::Array(list.f.iter().map(|f| float_json(*f)).collect()),
                );
            }
            if !list.b.is_empty() {
                map.insert("b".into(), json!(list.b));
            }
            if !list.r#type.is_empty() {
                map.insert(
                    "type".into(),
                    Json::Array(list.r#type.iter().map(|t| json!(dtype_name(*t))).collect()),
                );
            }
            if !list.shape.is_empty() {
                map.insert(
                    "shape".into(),
                    Json::Array(list.shape.iter().map(shape_json).collect()),
                );
            }
            if !list.tensor.is_empty() {
                map.insert(
                    "tensor".into(),
                    Json::Array(list.tensor.iter().map(tensor_json).collect()),
                );
            }
            if !list.func.is_empty() {
                map.insert(
                    "func".into(),
                    Json::Array(list.func.iter().map(func_json).collect()),
                );
            }
            json!({"list": Json::Object(map)})
        }
    }
}

fn func_json(function: &NameAttrList) -> Json {
    let mut map = Map::new();
    map.insert("name".into(), json!(function.name));
    if !function.attr.is_empty() {
        map.insert("attr".into(), attrs_json(&function.attr));
    }
    Json::Object(map)
}

fn shape_json(shape: &TensorShapeProto) -> Json {
    let mut map = Map::new();
    if !shape.dim.is_empty() {
        map.insert(
            "dim".into(),
            Json::Array(
                shape
                    .dim
                    .iter()
                    .map(|d| json!({"size": d.size.to_string()}))
                    .collect(),
            ),
        );
    }
    if shape.unknown_rank {
        map.insert("unknownRank".into(), json!(true));
    }
    Json::Object(map)
}

/// A TensorProto in JSON: dtype, shape and any inline values.
fn tensor_json(tensor: &TensorProto) -> Json {
    let mut map = Map::new();
    map.insert("dtype".into(), json!(dtype_name(tensor.dtype)));
    map.insert(
        "tensorShape".into(),
        shape_json(
            tensor
                .tensor_shape
                .as_ref()
                .unwrap_or(&TensorShapeProto::default()),
        ),
    );
    if !tensor.tensor_content.is_empty() {
        map.insert("tensorContent".into(), base64(&tensor.tensor_content));
    }
    if !tensor.float_val.is_empty() {
        map.insert(
            "floatVal".into(),
            Json::Array(tensor.float_val.iter().map(|f| float_json(*f)).collect()),
        );
    }
    if !tensor.int_val.is_empty() {
        map.insert("intVal".into(), json!(tensor.int_val));
    }
    if !tensor.string_val.is_empty() {
        map.insert(
            "stringVal".into(),
            Json::Array(tensor.string_val.iter().map(|s| base64(s)).collect()),
        );
    }
    if !tensor.bool_val.is_empty() {
        map.insert("boolVal".into(), json!(tensor.bool_val));
    }
    if !tensor.int64_val.is_empty() {
        map.insert(
            "int64Val".into(),
            Json::Array(
                tensor
                    .int64_val
                    .iter()
                    .map(|i| json!(i.to_string()))
                    .collect(),
            ),
        );
    }
    Json::Object(map)
}

fn arg_json(arg: &tfjsc_proto::tensorflow::op_def::ArgDef) -> Json {
    let mut map = Map::new();
    map.insert("name".into(), json!(arg.name));
    if arg.r#type != 0 {
        map.insert("type".into(), json!(dtype_name(arg.r#type)));
    }
    for (key, value) in [
        ("typeAttr", &arg.type_attr),
        ("numberAttr", &arg.number_attr),
        ("typeListAttr", &arg.type_list_attr),
    ] {
        if !value.is_empty() {
            map.insert(key.into(), json!(value));
        }
    }
    Json::Object(map)
}

fn op_def_json(op: &OpDef) -> Json {
    let mut map = Map::new();
    map.insert("name".into(), json!(op.name));
    map.insert(
        "inputArg".into(),
        Json::Array(op.input_arg.iter().map(arg_json).collect()),
    );
    map.insert(
        "outputArg".into(),
        Json::Array(op.output_arg.iter().map(arg_json).collect()),
    );
    if !op.attr.is_empty() {
        map.insert(
            "attr".into(),
            Json::Array(
                op.attr
                    .iter()
                    .map(|attr| {
                        let mut entry = Map::new();
                        entry.insert("name".into(), json!(attr.name));
                        entry.insert("type".into(), json!(attr.r#type));
                        if let Some(default) = &attr.default_value {
                            entry.insert("defaultValue".into(), attr_json(default));
                        }
                        Json::Object(entry)
                    })
                    .collect(),
            ),
        );
    }
    if op.is_stateful {
        map.insert("isStateful".into(), json!(true));
    }
    Json::Object(map)
}

fn function_json(function: &FunctionDef) -> Json {
    let mut map = Map::new();
    if let Some(signature) = &function.signature {
        map.insert("signature".into(), op_def_json(signature));
    }
    if !function.attr.is_empty() {
        map.insert("attr".into(), attrs_json(&function.attr));
    }
    map.insert(
        "nodeDef".into(),
        Json::Array(function.node_def.iter().map(node_json).collect()),
    );
    map.insert("ret".into(), json!(function.ret));
    Json::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::rewrite::constant_node;
    use std::collections::HashMap;

    fn write(
        format: OutputFormat,
        constant: Tensor,
        versions: Option<VersionDef>,
    ) -> (tempfile::TempDir, Result<Vec<PathBuf>, ConvertError>) {
        let graph = GraphDef {
            node: vec![constant_node("weight", &constant)],
            versions,
            ..GraphDef::default()
        };
        let constants = HashMap::from([("weight".to_string(), constant)]);
        let output = tempfile::tempdir().unwrap();
        let options = WriteOptions {
            format,
            shard_size: 1 << 20,
            quantization: &Quantization::default(),
            generated_by: "test".into(),
        };
        let result = write_model(output.path(), &graph, &constants, None, &options);
        (output, result)
    }

    #[test]
    fn legacy_files_are_named_as_tensorflowjs_0x_named_them_and_carry_versions() {
        let (output, result) = write(
            OutputFormat::Legacy,
            Tensor::float32(vec![2], &[1.0, 2.0]),
            None,
        );
        let names: Vec<String> = result
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["group1-shard1of1", "web_model.pb", "weights_manifest.json"]
        );
        // TF.js 0.x reads graph.versions.producer: the message is there even when the input had
        // none.
        let bytes = std::fs::read(output.path().join(LEGACY_GRAPH_FILE)).unwrap();
        let graph = GraphDef::decode(bytes.as_slice()).unwrap();
        assert!(graph.versions.is_some());
        // The Const keeps dtype and shape, not the values (they are in the shard).
        let Some(attr_value::Value::Tensor(tensor)) = graph.node[0].attr["value"].value.as_ref()
        else {
            panic!("no tensor value");
        };
        assert!(tensor.tensor_content.is_empty() && tensor.float_val.is_empty());
        assert_eq!(tensor.tensor_shape.as_ref().unwrap().dim[0].size, 2);
    }

    #[test]
    fn legacy_refuses_weights_tfjs_0x_cannot_decode() {
        let strings = Tensor::strings(vec![1], vec![b"vocabulary".to_vec()]);
        let (_, result) = write(OutputFormat::Legacy, strings.clone(), None);
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("weight") && message.contains("DT_STRING"),
            "{message}"
        );
        let (_, result) = write(OutputFormat::GraphModel, strings, None);
        assert!(result.is_ok());
    }
}
