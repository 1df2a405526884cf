//! Control flow that captures variables: a `While`/`StatelessWhile` or `If`/`StatelessIf` node
//! whose inputs include variable handles (a Keras LSTM's kernels, threaded through the loop) and
//! whose functions read them with `ReadVariableOp`.
//!
//! As the Python converter does with `--control_flow_v2` (TensorFlow's
//! `convert_variables_to_constants_v2`), the handle inputs become the variables' `Const`s (loop
//! invariants for a loop), and the functions become specialised copies (`NAME_frozen`) whose
//! argument takes the value instead of the handle: `ReadVariableOp(arg)` becomes
//! `Identity(arg)`, the argument's (and, for a loop body, the matching result's) type becomes the
//! variable's dtype, and the node's type list (`T`, `Tin`) and `output_shapes` say the same.
//! A `ResourceGather` of a captured handle becomes `GatherV2` of the value along its
//! `batch_dims` (an embedding lookup in a decoding loop), as TensorFlow does too. Functions are
//! not inlined or otherwise rewritten here; a handle used in a function by anything else but a
//! forwarding op is refused.

use std::collections::{HashMap, HashSet};

use tfjsc_proto::tensorflow::{attr_value, DataType, FunctionDef, NodeDef};

use super::variables::gather_v2_attributes;
use super::{shape_attr, type_attr, Freezer, Value, FORWARDING_OPS};
use crate::convert::error::ConvertError;
use crate::convert::rewrite::unique_name;
use crate::convert::tensor::Tensor;

/// Ops whose function attributes take the node's inputs as arguments, and how: the attributes
/// naming the functions, the type-list attribute, and how many leading inputs are not arguments.
fn control_flow(op: &str) -> Option<(&'static [&'static str], &'static str, usize)> {
    match op {
        "While" | "StatelessWhile" => Some((&["cond", "body"], "T", 0)),
        "If" | "StatelessIf" => Some((&["then_branch", "else_branch"], "Tin", 1)),
        _ => None,
    }
}

impl<'a> Freezer<'a> {
    /// Whether `op` is control flow whose captured variables [`Freezer::capture_variables`]
    /// freezes.
    pub(super) fn is_control_flow(op: &str) -> bool {
        control_flow(op).is_some()
    }

    /// Replaces the variable-handle inputs of the control-flow node `emitted` (named
    /// `full_name`) by the variables' constants and points it at specialised functions.
    pub(super) fn capture_variables(
        &mut self,
        emitted: &mut NodeDef,
        full_name: &str,
        inputs: &mut [Value],
    ) -> Result<(), ConvertError> {
        let Some((function_attrs, types_attr, leading)) = control_flow(&emitted.op) else {
            return Ok(());
        };
        // Argument position → (dtype, shape) of the variable now passed there.
        let mut frozen: Vec<(usize, i32, Vec<i64>)> = Vec::new();
        for (position, value) in inputs.iter_mut().enumerate() {
            let Value::Variable(key) = value else {
                continue;
            };
            if position < leading {
                return Err(self.node_error(full_name, "the condition is a variable handle"));
            }
            let key = key.clone();
            let constant =
                self.variable_constant(&key, &format!("{full_name}/captured_{position}"))?;
            let Value::Tensor(name, _) = &constant else {
                unreachable!("variable_constant returns a tensor");
            };
            let tensor = &self.out.constants[name];
            frozen.push((
                position - leading,
                tensor.dtype as i32,
                tensor.shape.clone(),
            ));
            *value = constant;
        }
        if frozen.is_empty() {
            return Ok(());
        }
        for attr_name in function_attrs {
            let Some(attr_value::Value::Func(function)) = emitted
                .attr
                .get_mut(*attr_name)
                .and_then(|attr| attr.value.as_mut())
            else {
                return Err(self.node_error(full_name, format!("has no function {attr_name}")));
            };
            function.name = self.specialise(&function.name.clone(), &frozen, full_name)?;
        }
        if let Some(attr_value::Value::List(list)) = emitted
            .attr
            .get_mut(types_attr)
            .and_then(|attr| attr.value.as_mut())
        {
            for (argument, dtype, _) in &frozen {
                if let Some(slot) = list.r#type.get_mut(*argument) {
                    *slot = *dtype;
                }
            }
        }
        if let Some(attr_value::Value::List(list)) = emitted
            .attr
            .get_mut("output_shapes")
            .and_then(|attr| attr.value.as_mut())
        {
            for (argument, _, shape) in &frozen {
                if let (Some(slot), Some(attr_value::Value::Shape(proto))) =
                    (list.shape.get_mut(*argument), shape_attr(shape).value)
                {
                    *slot = proto;
                }
            }
        }
        Ok(())
    }

    /// A copy of function `name` whose arguments `frozen` take values, not handles; returns its
    /// name (one copy per function and set of arguments).
    fn specialise(
        &mut self,
        name: &str,
        frozen: &[(usize, i32, Vec<i64>)],
        call_node: &str,
    ) -> Result<String, ConvertError> {
        let cache_key = format!(
            "{name}|{}",
            frozen
                .iter()
                .map(|(argument, dtype, _)| format!("{argument}:{dtype}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        if let Some(existing) = self.specialised_names.get(&cache_key) {
            return Ok(existing.clone());
        }
        let original = *self.functions.get(name).ok_or_else(|| {
            self.node_error(
                call_node,
                format!("calls {name}, which is not in the library"),
            )
        })?;
        let mut function = original.clone();
        let mut new_name = format!("{name}_frozen");
        let mut counter = 1;
        while self.functions.contains_key(new_name.as_str())
            || self
                .specialised
                .iter()
                .any(|f| signature_name(f) == new_name)
        {
            new_name = format!("{name}_frozen_{counter}");
            counter += 1;
        }
        let signature = function.signature.get_or_insert_with(Default::default);
        signature.name = new_name.clone();
        // Argument name → dtype of the value it now holds.
        let mut values: HashMap<String, i32> = HashMap::new();
        // ReadVariableOp nodes turned into Identity.
        let mut reads: HashSet<String> = HashSet::new();
        // ResourceGather nodes turned into GatherV2 of the value, and their axis constants.
        let mut gathers: HashSet<String> = HashSet::new();
        let mut axes: Vec<NodeDef> = Vec::new();
        for (argument, dtype, _) in frozen {
            let Some(arg) = signature.input_arg.get_mut(*argument) else {
                return Err(self.node_error(
                    call_node,
                    format!("passes argument {argument} to {name}, which has fewer"),
                ));
            };
            arg.r#type = *dtype;
            arg.type_attr.clear();
            values.insert(arg.name.clone(), *dtype);
        }
        // Names the axis constants of converted gathers must not take.
        let mut names: HashSet<String> = function.node_def.iter().map(|n| n.name.clone()).collect();
        // Nodes in a function may come in any order: forward through Identity chains until
        // nothing changes.
        loop {
            let mut changed = false;
            for node in &mut function.node_def {
                let Some(dtype) = node
                    .input
                    .first()
                    .and_then(|input| values.get(input.split(':').next().unwrap_or(input)))
                    .copied()
                else {
                    continue;
                };
                if values.contains_key(&node.name) || reads.contains(&node.name) {
                    continue;
                }
                if node.op == "ReadVariableOp" {
                    node.op = "Identity".into();
                    node.attr.clear();
                    node.attr.insert("T".into(), type_attr(dtype));
                    reads.insert(node.name.clone());
                } else if node.op == "ResourceGather" && !gathers.contains(&node.name) {
                    axes.push(
                        gather_from_value(node, dtype, &mut names).map_err(|message| {
                            self.node_error(call_node, format!("function {name}: {message}"))
                        })?,
                    );
                    gathers.insert(node.name.clone());
                } else if FORWARDING_OPS.contains(&node.op.as_str()) && node.op != "IdentityN" {
                    node.attr.insert("T".into(), type_attr(dtype));
                    values.insert(node.name.clone(), dtype);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Function-style references name the op's output argument: `value` of ReadVariableOp
        // is `output` of Identity.
        let renamed = |reference: &mut String| {
            let mut parts = reference.splitn(3, ':');
            if let (Some(node), Some("value"), Some(index)) =
                (parts.next(), parts.next(), parts.next())
            {
                if reads.contains(node) {
                    *reference = format!("{node}:output:{index}");
                }
            }
        };
        for node in &mut function.node_def {
            node.input.iter_mut().for_each(renamed);
        }
        function.ret.values_mut().for_each(renamed);
        function.node_def.extend(axes);
        for node in &function.node_def {
            let forwards = FORWARDING_OPS.contains(&node.op.as_str()) && node.op != "IdentityN";
            if forwards || gathers.contains(&node.name) {
                continue;
            }
            for input in &node.input {
                let source = input.split(':').next().unwrap_or(input);
                if !input.starts_with('^') && values.contains_key(source) {
                    return Err(self.node_error(
                        call_node,
                        format!(
                            "function {name}: node {} ({}) takes a captured variable handle; only \
                             ReadVariableOp and ResourceGather reads of captured variables can be \
                             frozen",
                            node.name, node.op
                        ),
                    ));
                }
            }
        }
        // Results that pass a captured argument through (a loop body's loop invariants) now
        // carry the value.
        let signature = function.signature.get_or_insert_with(Default::default);
        for output in &mut signature.output_arg {
            if let Some(reference) = function.ret.get(&output.name) {
                let source = reference.split(':').next().unwrap_or(reference);
                if let Some(dtype) = values.get(source) {
                    output.r#type = *dtype;
                    output.type_attr.clear();
                }
            }
        }
        // Argument attributes (`_handle_data` etc.) describe the handles.
        function.arg_attr.retain(|index, _| {
            !frozen
                .iter()
                .any(|(argument, _, _)| *argument as u32 == *index)
        });
        let callees: Vec<String> = function
            .node_def
            .iter()
            .flat_map(|node| {
                let calls = node.attr.values().filter_map(|attr| match &attr.value {
                    Some(attr_value::Value::Func(callee)) => Some(callee.name.clone()),
                    _ => None,
                });
                calls
                    .chain(
                        self.functions
                            .contains_key(node.op.as_str())
                            .then(|| node.op.clone()),
                    )
                    .collect::<Vec<_>>()
            })
            .collect();
        for callee in callees {
            self.keep_function(&callee);
        }
        self.specialised.push(function);
        self.specialised_names.insert(cache_key, new_name.clone());
        Ok(new_name)
    }
}

fn signature_name(function: &FunctionDef) -> &str {
    function
        .signature
        .as_ref()
        .map_or("", |signature| signature.name.as_str())
}

/// Turns `ResourceGather(handle, indices)` of a captured variable, whose handle argument now
/// holds the value (of `dtype`), into `GatherV2(value, indices, axis)` along its `batch_dims`, as
/// TensorFlow's `convert_variables_to_constants_v2` does (and as the graph's own gathers become,
/// [`gather_v2_attributes`]); returns the axis `Const` to add to the function, named apart from
/// `names`. The output keeps its name (`output`), so references stay as they are.
fn gather_from_value(
    node: &mut NodeDef,
    dtype: i32,
    names: &mut HashSet<String>,
) -> Result<NodeDef, String> {
    let data_inputs = node.input.iter().filter(|i| !i.starts_with('^')).count();
    if data_inputs != 2 {
        return Err(format!(
            "node {} (ResourceGather) has {data_inputs} data inputs, not 2",
            node.name
        ));
    }
    let (attr, axis) = gather_v2_attributes(node, type_attr(dtype))
        .map_err(|message| format!("node {}: {message}", node.name))?;
    let axis_name = unique_name(&format!("{}_axis", node.name), names);
    let mut axis_node = NodeDef {
        name: axis_name.clone(),
        op: "Const".into(),
        ..NodeDef::default()
    };
    axis_node
        .attr
        .insert("dtype".into(), type_attr(DataType::DtInt32 as i32));
    axis_node
        .attr
        .insert("value".into(), Tensor::int32(vec![], &[axis]).attr(true));
    node.op = "GatherV2".into();
    node.attr = attr;
    // After the two data inputs (control inputs follow them, but a malformed body may mix them).
    let after_data = node
        .input
        .iter()
        .enumerate()
        .filter(|(_, input)| !input.starts_with('^'))
        .nth(1)
        .map_or(node.input.len(), |(position, _)| position + 1);
    node.input
        .insert(after_data, format!("{axis_name}:output:0"));
    Ok(axis_node)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tfjsc_proto::tensorflow::{
        attr_value::ListValue, op_def::ArgDef, AttrValue, DataType, FunctionDefLibrary, GraphDef,
        NameAttrList, OpDef,
    };

    use super::*;
    use crate::convert::freeze::VariableSource;
    use crate::convert::rewrite::test_node as node;
    use crate::convert::tensor::Tensor;

    struct TwoFloats;

    impl VariableSource for TwoFloats {
        fn value(&mut self, _: &str, _: &str) -> Result<Tensor, ConvertError> {
            Ok(Tensor::float32(vec![2], &[1.0, 2.0]))
        }
    }

    fn argument(name: &str, dtype: DataType) -> ArgDef {
        ArgDef {
            name: name.into(),
            r#type: dtype as i32,
            ..ArgDef::default()
        }
    }

    fn function(name: &str, nodes: Vec<NodeDef>, results: &[(&str, &str)]) -> FunctionDef {
        let float_and_handle = vec![
            argument("a", DataType::DtFloat),
            argument("h", DataType::DtResource),
        ];
        FunctionDef {
            signature: Some(OpDef {
                name: name.into(),
                input_arg: float_and_handle,
                output_arg: results
                    .iter()
                    .map(|(name, _)| {
                        let dtype = if name.ends_with('h') {
                            DataType::DtResource
                        } else {
                            DataType::DtFloat
                        };
                        argument(name, dtype)
                    })
                    .collect(),
                ..OpDef::default()
            }),
            node_def: nodes,
            ret: results
                .iter()
                .map(|(name, reference)| (name.to_string(), reference.to_string()))
                .collect(),
            ..FunctionDef::default()
        }
    }

    /// `While(x, variable)` whose body is `body_nodes` with results `a` = `result`, `h` = h.
    fn loop_graph(body_nodes: Vec<NodeDef>, result: &str) -> GraphDef {
        let mut r#while = node("loop", "While", &["x", "v"]);
        let func = |name: &str| AttrValue {
            value: Some(attr_value::Value::Func(NameAttrList {
                name: name.into(),
                ..NameAttrList::default()
            })),
        };
        r#while.attr.insert("body".into(), func("body"));
        r#while.attr.insert("cond".into(), func("cond"));
        r#while.attr.insert(
            "T".into(),
            AttrValue {
                value: Some(attr_value::Value::List(ListValue {
                    r#type: vec![DataType::DtFloat as i32, DataType::DtResource as i32],
                    ..ListValue::default()
                })),
            },
        );
        GraphDef {
            node: vec![
                node("x", "Placeholder", &[]),
                node("v", "VarHandleOp", &[]),
                r#while,
            ],
            library: Some(FunctionDefLibrary {
                function: vec![
                    function("body", body_nodes, &[("out_a", result), ("out_h", "h")]),
                    function(
                        "cond",
                        vec![node("t", "Less", &["a", "a"])],
                        &[("c", "t:z:0")],
                    ),
                ],
                ..FunctionDefLibrary::default()
            }),
            ..GraphDef::default()
        }
    }

    /// The loop's body as frozen: `body_frozen` of the written library.
    fn frozen_body(graph: &GraphDef) -> FunctionDef {
        let mut source = TwoFloats;
        let mut freezer = Freezer::new(PathBuf::from("test"), graph, &[], &mut source);
        let outputs = freezer.graph_outputs(graph, &["loop".into()]).unwrap();
        let frozen = freezer.finish(&outputs).unwrap();
        frozen
            .library
            .into_iter()
            .find(|f| signature_name(f) == "body_frozen")
            .expect("the specialised body")
    }

    #[test]
    fn a_loop_body_reading_a_captured_variable_takes_its_value() {
        let graph = loop_graph(
            vec![
                node("r", "ReadVariableOp", &["h"]),
                node("s", "AddV2", &["a", "r:value:0"]),
            ],
            "s:z:0",
        );
        let mut source = TwoFloats;
        let mut freezer = Freezer::new(PathBuf::from("test"), &graph, &[], &mut source);
        let outputs = freezer.graph_outputs(&graph, &["loop".into()]).unwrap();
        let frozen = freezer.finish(&outputs).unwrap();
        let r#while = frozen.nodes.iter().find(|n| n.op == "While").unwrap();
        let captured = &r#while.input[1];
        assert_eq!(frozen.constants[captured].shape, vec![2]);
        let Some(attr_value::Value::List(types)) = &r#while.attr["T"].value else {
            panic!("no T");
        };
        assert_eq!(types.r#type, vec![DataType::DtFloat as i32; 2]);
        let body = frozen
            .library
            .iter()
            .find(|f| signature_name(f) == "body_frozen")
            .expect("the specialised body");
        let read = body.node_def.iter().find(|n| n.name == "r").unwrap();
        assert_eq!(
            (read.op.as_str(), read.input.clone()),
            ("Identity", vec!["h".to_string()])
        );
        let sum = body.node_def.iter().find(|n| n.name == "s").unwrap();
        assert_eq!(sum.input[1], "r:output:0");
        let signature = body.signature.as_ref().unwrap();
        assert_eq!(signature.input_arg[1].r#type, DataType::DtFloat as i32);
        assert_eq!(signature.output_arg[1].r#type, DataType::DtFloat as i32);
        assert!(frozen
            .library
            .iter()
            .any(|f| signature_name(f) == "cond_frozen"));
        assert!(!frozen.library.iter().any(|f| signature_name(f) == "body"));
    }

    #[test]
    fn a_handle_forwarded_through_identity_is_read_as_a_value() {
        let graph = loop_graph(
            vec![
                node("s", "AddV2", &["a", "r:value:0"]),
                node("r", "ReadVariableOp", &["f:output:0"]),
                // A longer chain, found a pass later: the converted read is no handle.
                node("f2", "Identity", &["f1:output:0"]),
                node("f1", "Identity", &["h"]),
                node("f", "Identity", &["h"]),
            ],
            "s:z:0",
        );
        let body = frozen_body(&graph);
        let ops: Vec<(&str, &str)> = body
            .node_def
            .iter()
            .map(|n| (n.name.as_str(), n.op.as_str()))
            .collect();
        assert_eq!(ops[..2], [("s", "AddV2"), ("r", "Identity")]);
        assert_eq!(body.node_def[0].input[1], "r:output:0");
    }

    #[test]
    fn a_captured_handle_used_otherwise_is_refused() {
        let graph = loop_graph(
            vec![
                node("i", "Const", &[]),
                node("u", "ResourceScatterAdd", &["h", "i:output:0", "a"]),
            ],
            "a",
        );
        let mut source = TwoFloats;
        let mut freezer = Freezer::new(PathBuf::from("test"), &graph, &[], &mut source);
        let error = freezer
            .graph_outputs(&graph, &["loop".into()])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("node u (ResourceScatterAdd) takes a captured variable handle"),
            "{error}"
        );
    }

    #[test]
    fn every_function_of_a_list_attribute_is_kept() {
        // Case's branches are a list of functions: all of them go to the written library
        // (before, only single function attributes were followed, so TF.js lacked the branches).
        let mut case = node("case", "Case", &["i", "x"]);
        let func = |name: &str| NameAttrList {
            name: name.into(),
            ..NameAttrList::default()
        };
        case.attr.insert(
            "branches".into(),
            AttrValue {
                value: Some(attr_value::Value::List(ListValue {
                    func: vec![func("zero"), func("one")],
                    ..ListValue::default()
                })),
            },
        );
        let graph = GraphDef {
            node: vec![
                node("x", "Placeholder", &[]),
                node("i", "Placeholder", &[]),
                case,
            ],
            library: Some(FunctionDefLibrary {
                function: vec![
                    function("zero", vec![node("n", "Neg", &["a"])], &[("y", "n:y:0")]),
                    function("one", vec![node("n", "Abs", &["a"])], &[("y", "n:y:0")]),
                    function("unused", vec![], &[]),
                ],
                ..FunctionDefLibrary::default()
            }),
            ..GraphDef::default()
        };
        let mut source = TwoFloats;
        let mut freezer = Freezer::new(PathBuf::from("test"), &graph, &[], &mut source);
        let outputs = freezer.graph_outputs(&graph, &["case".into()]).unwrap();
        let frozen = freezer.finish(&outputs).unwrap();
        let mut kept: Vec<&str> = frozen.library.iter().map(signature_name).collect();
        kept.sort();
        assert_eq!(kept, ["one", "zero"]);
    }

    #[test]
    fn a_gather_from_a_captured_variable_gathers_from_its_value() {
        // An embedding lookup in a decoding loop: ResourceGather(handle, indices) with
        // batch_dims 1 becomes GatherV2(value, indices, axis 1) with an axis constant.
        // (Its control input before the indices, and a node already named g_axis: the axis
        // still follows the indices, under a name of its own.)
        let mut gather = node("g", "ResourceGather", &["h", "^a", "i:output:0"]);
        gather.attr.insert(
            "batch_dims".into(),
            AttrValue {
                value: Some(attr_value::Value::I(1)),
            },
        );
        gather
            .attr
            .insert("Tindices".into(), type_attr(DataType::DtInt64 as i32));
        let graph = loop_graph(
            vec![node("i", "Const", &[]), node("g_axis", "NoOp", &[]), gather],
            "g:output:0",
        );
        let body = frozen_body(&graph);
        let gather = body.node_def.iter().find(|n| n.name == "g").unwrap();
        assert_eq!(gather.op, "GatherV2");
        assert_eq!(gather.input, ["h", "^a", "i:output:0", "g_axis_1:output:0"]);
        let attr = |name: &str| gather.attr[name].value.clone();
        assert_eq!(
            attr("Tparams"),
            Some(attr_value::Value::Type(DataType::DtFloat as i32))
        );
        assert_eq!(
            attr("Tindices"),
            Some(attr_value::Value::Type(DataType::DtInt64 as i32))
        );
        assert_eq!(attr("batch_dims"), Some(attr_value::Value::I(1)));
        let axis = body.node_def.iter().find(|n| n.name == "g_axis_1").unwrap();
        let Some(attr_value::Value::Tensor(proto)) = &axis.attr["value"].value else {
            panic!("no axis value");
        };
        let axis_value = Tensor::from_proto(proto).unwrap();
        assert_eq!(
            (axis.op.as_str(), axis_value.as_i32()),
            ("Const", Some(vec![1]))
        );
        assert!(axis_value.shape.is_empty());
    }
}
