//! `modelTopology` (a GraphDef in protobuf's JSON mapping) to a prost [`GraphDef`].
//!
//! TF.js writes the topology with protobuf's JSON mapping rather than as binary
//! protobuf, and we have no reflection-based JSON codec: this module maps each
//! message field by hand, accepting both lowerCamelCase and original field
//! names, and proto3 defaults for absent fields. It keeps everything the graph
//! says (no op interpretation, no validation of attribute meaning): that is
//! the IR importer's job. Unknown fields are ignored, as TF.js ignores them.

use std::collections::BTreeMap;

use serde_json::Value;
use tfjsc_proto::tensorflow::{
    attr_value, function_def, node_def, op_def, tensor_shape_proto, AttrValue, FunctionDef,
    FunctionDefLibrary, GradientDef, GraphDef, NameAttrList, NodeDef, OpDef, OpDeprecation,
    RegisteredGradient, TensorProto, TensorShapeProto, VersionDef,
};

use super::json::{
    boolean, bytes, data_type, double, each, field, float, int32, int64, object, optional,
    or_default, string, uint32, uint64, At, JsonError, JsonResult,
};

/// Reads a GraphDef from its JSON mapping.
pub(crate) fn graph_def(value: &Value) -> JsonResult<GraphDef> {
    let fields = object(value)?;
    let node = match field(fields, "node", "node") {
        Some(nodes) => nodes_of(nodes).at(|| "node".to_string())?,
        None => Vec::new(),
    };
    #[allow(deprecated)]
    Ok(GraphDef {
        node,
        versions: optional(fields, "versions", "versions", version_def)?,
        version: or_default(fields, "version", "version", int32)?,
        library: optional(fields, "library", "library", function_library)?,
    })
}

/// Reads an array of NodeDefs; errors name the node by its name when it has one.
fn nodes_of(value: &Value) -> JsonResult<Vec<NodeDef>> {
    let elements = super::json::array(value)?;
    let mut nodes = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let name = element
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let node = node_def(element).at(|| match &name {
            Some(name) => format!("[{index}] {name:?}"),
            None => format!("[{index}]"),
        })?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Reads a NodeDef.
pub(crate) fn node_def(value: &Value) -> JsonResult<NodeDef> {
    let fields = object(value)?;
    Ok(NodeDef {
        name: or_default(fields, "name", "name", string)?,
        op: or_default(fields, "op", "op", string)?,
        input: or_default(fields, "input", "input", |value| each(value, string))?,
        device: or_default(fields, "device", "device", string)?,
        attr: or_default(fields, "attr", "attr", attribute_map)?,
        experimental_debug_info: optional(
            fields,
            "experimental_debug_info",
            "experimentalDebugInfo",
            debug_info,
        )?,
    })
}

fn debug_info(value: &Value) -> JsonResult<node_def::ExperimentalDebugInfo> {
    let fields = object(value)?;
    let strings = |value: &Value| each(value, string);
    Ok(node_def::ExperimentalDebugInfo {
        original_node_names: or_default(
            fields,
            "original_node_names",
            "originalNodeNames",
            strings,
        )?,
        original_func_names: or_default(
            fields,
            "original_func_names",
            "originalFuncNames",
            strings,
        )?,
    })
}

/// Reads a `map<string, AttrValue>`.
fn attribute_map(value: &Value) -> JsonResult<BTreeMap<String, AttrValue>> {
    object(value)?
        .iter()
        .map(|(name, attribute)| {
            attr_value(attribute)
                .at(|| format!("{name:?}"))
                .map(|attribute| (name.clone(), attribute))
        })
        .collect()
}

/// Reads an AttrValue; an object with no value field is an AttrValue with no value.
pub(crate) fn attr_value(value: &Value) -> JsonResult<AttrValue> {
    use attr_value::Value as Kind;
    let fields = object(value)?;
    const KINDS: [&str; 10] = [
        "s",
        "i",
        "f",
        "b",
        "type",
        "shape",
        "tensor",
        "list",
        "func",
        "placeholder",
    ];
    let present: Vec<&str> = KINDS
        .into_iter()
        .filter(|name| field(fields, name, name).is_some())
        .collect();
    let Some(&which) = present.first() else {
        return Ok(AttrValue { value: None });
    };
    if present.len() > 1 {
        return Err(JsonError::new(format!(
            "one value field, found {}",
            present.join(", ")
        )));
    }
    let Some(inner) = field(fields, which, which) else {
        return Ok(AttrValue { value: None });
    };
    let read = || -> JsonResult<Kind> {
        Ok(match which {
            "s" => Kind::S(bytes(inner)?),
            "i" => Kind::I(int64(inner)?),
            "f" => Kind::F(float(inner)?),
            "b" => Kind::B(boolean(inner)?),
            "type" => Kind::Type(data_type(inner)?),
            "shape" => Kind::Shape(tensor_shape(inner)?),
            "tensor" => Kind::Tensor(tensor(inner)?),
            "list" => Kind::List(list_value(inner)?),
            "func" => Kind::Func(name_attr_list(inner)?),
            _ => Kind::Placeholder(string(inner)?),
        })
    };
    Ok(AttrValue {
        value: Some(read().at(|| which.to_string())?),
    })
}

fn list_value(value: &Value) -> JsonResult<attr_value::ListValue> {
    let fields = object(value)?;
    Ok(attr_value::ListValue {
        s: or_default(fields, "s", "s", |value| each(value, bytes))?,
        i: or_default(fields, "i", "i", |value| each(value, int64))?,
        f: or_default(fields, "f", "f", |value| each(value, float))?,
        b: or_default(fields, "b", "b", |value| each(value, boolean))?,
        r#type: or_default(fields, "type", "type", |value| each(value, data_type))?,
        shape: or_default(fields, "shape", "shape", |value| each(value, tensor_shape))?,
        tensor: or_default(fields, "tensor", "tensor", |value| each(value, tensor))?,
        func: or_default(fields, "func", "func", |value| each(value, name_attr_list))?,
    })
}

fn name_attr_list(value: &Value) -> JsonResult<NameAttrList> {
    let fields = object(value)?;
    Ok(NameAttrList {
        name: or_default(fields, "name", "name", string)?,
        attr: or_default(fields, "attr", "attr", attribute_map)?,
    })
}

/// Reads a TensorShapeProto.
pub(crate) fn tensor_shape(value: &Value) -> JsonResult<TensorShapeProto> {
    let fields = object(value)?;
    let dimension = |value: &Value| -> JsonResult<tensor_shape_proto::Dim> {
        let fields = object(value)?;
        Ok(tensor_shape_proto::Dim {
            size: or_default(fields, "size", "size", int64)?,
            name: or_default(fields, "name", "name", string)?,
        })
    };
    Ok(TensorShapeProto {
        dim: or_default(fields, "dim", "dim", |value| each(value, dimension))?,
        unknown_rank: or_default(fields, "unknown_rank", "unknownRank", boolean)?,
    })
}

/// Reads a TensorProto with every value representation.
pub(crate) fn tensor(value: &Value) -> JsonResult<TensorProto> {
    let fields = object(value)?;
    Ok(TensorProto {
        dtype: or_default(fields, "dtype", "dtype", data_type)?,
        tensor_shape: optional(fields, "tensor_shape", "tensorShape", tensor_shape)?,
        version_number: or_default(fields, "version_number", "versionNumber", int32)?,
        tensor_content: or_default(fields, "tensor_content", "tensorContent", bytes)?,
        half_val: or_default(fields, "half_val", "halfVal", |value| each(value, int32))?,
        float_val: or_default(fields, "float_val", "floatVal", |value| each(value, float))?,
        double_val: or_default(fields, "double_val", "doubleVal", |value| {
            each(value, double)
        })?,
        int_val: or_default(fields, "int_val", "intVal", |value| each(value, int32))?,
        string_val: or_default(fields, "string_val", "stringVal", |value| {
            each(value, bytes)
        })?,
        scomplex_val: or_default(fields, "scomplex_val", "scomplexVal", |value| {
            each(value, float)
        })?,
        int64_val: or_default(fields, "int64_val", "int64Val", |value| each(value, int64))?,
        bool_val: or_default(fields, "bool_val", "boolVal", |value| each(value, boolean))?,
        dcomplex_val: or_default(fields, "dcomplex_val", "dcomplexVal", |value| {
            each(value, double)
        })?,
        uint32_val: or_default(fields, "uint32_val", "uint32Val", |value| {
            each(value, uint32)
        })?,
        uint64_val: or_default(fields, "uint64_val", "uint64Val", |value| {
            each(value, uint64)
        })?,
    })
}

fn version_def(value: &Value) -> JsonResult<VersionDef> {
    let fields = object(value)?;
    Ok(VersionDef {
        producer: or_default(fields, "producer", "producer", int32)?,
        min_consumer: or_default(fields, "min_consumer", "minConsumer", int32)?,
        bad_consumers: or_default(fields, "bad_consumers", "badConsumers", |value| {
            each(value, int32)
        })?,
    })
}

fn function_library(value: &Value) -> JsonResult<FunctionDefLibrary> {
    let fields = object(value)?;
    let gradient = |value: &Value| -> JsonResult<GradientDef> {
        let fields = object(value)?;
        Ok(GradientDef {
            function_name: or_default(fields, "function_name", "functionName", string)?,
            gradient_func: or_default(fields, "gradient_func", "gradientFunc", string)?,
        })
    };
    let registered = |value: &Value| -> JsonResult<RegisteredGradient> {
        let fields = object(value)?;
        Ok(RegisteredGradient {
            gradient_func: or_default(fields, "gradient_func", "gradientFunc", string)?,
            registered_op_type: or_default(
                fields,
                "registered_op_type",
                "registeredOpType",
                string,
            )?,
        })
    };
    Ok(FunctionDefLibrary {
        function: or_default(fields, "function", "function", |value| {
            each(value, function_def)
        })?,
        gradient: or_default(fields, "gradient", "gradient", |value| {
            each(value, gradient)
        })?,
        registered_gradients: or_default(
            fields,
            "registered_gradients",
            "registeredGradients",
            |value| each(value, registered),
        )?,
    })
}

/// Reads a `map<K, V>` whose JSON keys are strings.
fn keyed_map<K: Ord, V>(
    value: &Value,
    key: impl Fn(&str) -> Option<K>,
    read: impl Fn(&Value) -> JsonResult<V>,
) -> JsonResult<BTreeMap<K, V>> {
    let mut map = BTreeMap::new();
    for (name, element) in object(value)? {
        let parsed = key(name).ok_or_else(|| {
            JsonError::new(format!("a map key of the declared type, found {name:?}"))
        })?;
        map.insert(parsed, read(element).at(|| format!("{name:?}"))?);
    }
    Ok(map)
}

fn string_map(value: &Value) -> JsonResult<BTreeMap<String, String>> {
    keyed_map(value, |key| Some(key.to_string()), string)
}

fn function_def(value: &Value) -> JsonResult<FunctionDef> {
    let fields = object(value)?;
    let argument_attributes = |value: &Value| -> JsonResult<function_def::ArgAttrs> {
        let fields = object(value)?;
        Ok(function_def::ArgAttrs {
            attr: or_default(fields, "attr", "attr", attribute_map)?,
        })
    };
    let index = |key: &str| key.parse::<u32>().ok();
    let signature = optional(fields, "signature", "signature", op_def)?;
    let body = match field(fields, "node_def", "nodeDef") {
        Some(nodes) => nodes_of(nodes).at(|| "nodeDef".to_string())?,
        None => Vec::new(),
    };
    Ok(FunctionDef {
        signature,
        attr: or_default(fields, "attr", "attr", attribute_map)?,
        arg_attr: or_default(fields, "arg_attr", "argAttr", |value| {
            keyed_map(value, index, argument_attributes)
        })?,
        resource_arg_unique_id: or_default(
            fields,
            "resource_arg_unique_id",
            "resourceArgUniqueId",
            |value| keyed_map(value, index, uint32),
        )?,
        node_def: body,
        ret: or_default(fields, "ret", "ret", string_map)?,
        control_ret: or_default(fields, "control_ret", "controlRet", string_map)?,
    })
}

fn op_def(value: &Value) -> JsonResult<OpDef> {
    let fields = object(value)?;
    let argument = |value: &Value| -> JsonResult<op_def::ArgDef> {
        let fields = object(value)?;
        Ok(op_def::ArgDef {
            name: or_default(fields, "name", "name", string)?,
            description: or_default(fields, "description", "description", string)?,
            r#type: or_default(fields, "type", "type", data_type)?,
            type_attr: or_default(fields, "type_attr", "typeAttr", string)?,
            number_attr: or_default(fields, "number_attr", "numberAttr", string)?,
            type_list_attr: or_default(fields, "type_list_attr", "typeListAttr", string)?,
            is_ref: or_default(fields, "is_ref", "isRef", boolean)?,
        })
    };
    let attribute = |value: &Value| -> JsonResult<op_def::AttrDef> {
        let fields = object(value)?;
        Ok(op_def::AttrDef {
            name: or_default(fields, "name", "name", string)?,
            r#type: or_default(fields, "type", "type", string)?,
            default_value: optional(fields, "default_value", "defaultValue", attr_value)?,
            description: or_default(fields, "description", "description", string)?,
            has_minimum: or_default(fields, "has_minimum", "hasMinimum", boolean)?,
            minimum: or_default(fields, "minimum", "minimum", int64)?,
            allowed_values: optional(fields, "allowed_values", "allowedValues", attr_value)?,
        })
    };
    let deprecation = |value: &Value| -> JsonResult<OpDeprecation> {
        let fields = object(value)?;
        Ok(OpDeprecation {
            version: or_default(fields, "version", "version", int32)?,
            explanation: or_default(fields, "explanation", "explanation", string)?,
        })
    };
    let flag = |proto_name: &str, json_name: &str| -> JsonResult<bool> {
        or_default(fields, proto_name, json_name, boolean)
    };
    Ok(OpDef {
        name: or_default(fields, "name", "name", string)?,
        input_arg: or_default(fields, "input_arg", "inputArg", |value| {
            each(value, argument)
        })?,
        output_arg: or_default(fields, "output_arg", "outputArg", |value| {
            each(value, argument)
        })?,
        control_output: or_default(fields, "control_output", "controlOutput", |value| {
            each(value, string)
        })?,
        attr: or_default(fields, "attr", "attr", |value| each(value, attribute))?,
        deprecation: optional(fields, "deprecation", "deprecation", deprecation)?,
        summary: or_default(fields, "summary", "summary", string)?,
        description: or_default(fields, "description", "description", string)?,
        is_commutative: flag("is_commutative", "isCommutative")?,
        is_aggregate: flag("is_aggregate", "isAggregate")?,
        is_stateful: flag("is_stateful", "isStateful")?,
        allows_uninitialized_input: flag("allows_uninitialized_input", "allowsUninitializedInput")?,
        is_distributed_communication: flag(
            "is_distributed_communication",
            "isDistributedCommunication",
        )?,
    })
}
