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

use super::references::is_call_op;
use super::variables::gather_v2_attributes;
use super::{
    referred_functions, shape_attr, signature_name, type_attr, Freezer, Value, FORWARDING_OPS,
};
use crate::convert::error::ConvertError;
use crate::convert::rewrite::unique_name;
use crate::convert::tensor::Tensor;

/// Deepest nesting of functions that pass a captured variable on (a loop in a loop's body is
/// 2); a hostile library's chain or cycle of functions stops here.
const MAX_NESTING: usize = 32;

/// Argument position → (dtype, shape) of the variable value a function now takes there.
type FrozenArguments = [(usize, i32, Vec<i64>)];

/// How a node hands its inputs to functions as their arguments.
struct Call {
    /// The attributes naming the functions (`While`'s `cond` and `body`); none when the node's
    /// op is the function itself.
    function_attrs: &'static [&'static str],
    /// The attribute listing the arguments' types (empty for a function's own op).
    types_attr: &'static str,
    /// Inputs before the arguments (`If`'s condition).
    leading: usize,
    /// A loop: its results are its arguments' next values (typed by `types_attr`, shaped by
    /// `output_shapes`). Otherwise the results are the functions' own, typed by `Tout`.
    is_loop: bool,
}

impl Call {
    /// Control flow: the nodes whose captured variables the graph's freezing hands over.
    fn control_flow(op: &str) -> Option<Call> {
        let call = |function_attrs, types_attr, leading, is_loop| {
            Some(Call {
                function_attrs,
                types_attr,
                leading,
                is_loop,
            })
        };
        match op {
            "While" | "StatelessWhile" => call(&["cond", "body"], "T", 0, true),
            "If" | "StatelessIf" => call(&["then_branch", "else_branch"], "Tin", 1, false),
            _ => None,
        }
    }

    /// Control flow or a call of a library function, inside a function body (the graph's own
    /// calls are inlined).
    fn of(node: &NodeDef, functions: &HashMap<&str, &FunctionDef>) -> Option<Call> {
        let call = |function_attrs, types_attr| Call {
            function_attrs,
            types_attr,
            leading: 0,
            is_loop: false,
        };
        match node.op.as_str() {
            op if is_call_op(op) => Some(call(&["f"], "Tin")),
            op if functions.contains_key(op) => Some(call(&[], "")),
            op => Call::control_flow(op),
        }
    }
}

impl<'a> Freezer<'a> {
    /// Whether `op` is control flow whose captured variables [`Freezer::capture_variables`]
    /// freezes.
    pub(super) fn is_control_flow(op: &str) -> bool {
        Call::control_flow(op).is_some()
    }

    /// Replaces the variable-handle inputs of the control-flow node `emitted` (named
    /// `full_name`) by the variables' constants and points it at specialised functions.
    pub(super) fn capture_variables(
        &mut self,
        emitted: &mut NodeDef,
        full_name: &str,
        inputs: &mut [Value],
    ) -> Result<(), ConvertError> {
        let Some(call) = Call::control_flow(&emitted.op) else {
            return Ok(());
        };
        let mut frozen: Vec<(usize, i32, Vec<i64>)> = Vec::new();
        for (position, value) in inputs.iter_mut().enumerate() {
            let Value::Variable(key) = value else {
                continue;
            };
            if position < call.leading {
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
                position - call.leading,
                tensor.dtype as i32,
                tensor.shape.clone(),
            ));
            *value = constant;
        }
        if frozen.is_empty() {
            return Ok(());
        }
        self.retarget(emitted, &call, &frozen, full_name, 0)?;
        Ok(())
    }

    /// Points `node` (which hands its arguments to functions as `call` says) at copies of its
    /// functions specialised to take values at the arguments `frozen`, and types the arguments
    /// and results as those values. Returns the results that are now values, not handles
    /// (index, dtype): a loop's at the arguments `frozen`, a call's where its function passes
    /// the argument back.
    fn retarget(
        &mut self,
        node: &mut NodeDef,
        call: &Call,
        frozen: &FrozenArguments,
        at: &str,
        depth: usize,
    ) -> Result<Vec<(usize, i32)>, ConvertError> {
        let set_types = |node: &mut NodeDef, attr: &str, types: &[(usize, i32)]| {
            if let Some(attr_value::Value::List(list)) =
                node.attr.get_mut(attr).and_then(|a| a.value.as_mut())
            {
                for &(index, dtype) in types {
                    if let Some(slot) = list.r#type.get_mut(index) {
                        *slot = dtype;
                    }
                }
            }
        };
        // (original, specialised) names of the node's functions.
        let mut renamed: Vec<(String, String)> = Vec::new();
        if call.function_attrs.is_empty() {
            let original = node.op.clone();
            node.op = self.specialise(&original, frozen, at, depth)?;
            renamed.push((original, node.op.clone()));
        }
        for attr_name in call.function_attrs {
            let Some(attr_value::Value::Func(function)) = node
                .attr
                .get_mut(*attr_name)
                .and_then(|attr| attr.value.as_mut())
            else {
                return Err(self.node_error(at, format!("has no function {attr_name}")));
            };
            let original = function.name.clone();
            function.name = self.specialise(&original, frozen, at, depth)?;
            renamed.push((original, function.name.clone()));
        }
        let arguments: Vec<(usize, i32)> =
            frozen.iter().map(|(a, dtype, _)| (*a, *dtype)).collect();
        set_types(node, call.types_attr, &arguments);
        if call.is_loop {
            if let Some(attr_value::Value::List(list)) = node
                .attr
                .get_mut("output_shapes")
                .and_then(|attr| attr.value.as_mut())
            {
                for (argument, _, shape) in frozen {
                    if let (Some(slot), Some(attr_value::Value::Shape(proto))) =
                        (list.shape.get_mut(*argument), shape_attr(shape).value)
                    {
                        *slot = proto;
                    }
                }
            }
            return Ok(arguments);
        }
        // A call's results: those whose type the specialised function changed.
        let output_types = |function: Option<&FunctionDef>| -> Vec<i32> {
            function
                .and_then(|f| f.signature.as_ref())
                .map(|s| s.output_arg.iter().map(|a| a.r#type).collect())
                .unwrap_or_default()
        };
        let mut results = Vec::new();
        for (original, specialised) in &renamed {
            let before = output_types(self.functions.get(original.as_str()).copied());
            let after = output_types(
                self.specialised
                    .iter()
                    .find(|f| signature_name(f) == specialised),
            );
            for (index, (&old, &new)) in before.iter().zip(&after).enumerate() {
                if old != new && !results.contains(&(index, new)) {
                    results.push((index, new));
                }
            }
        }
        set_types(node, "Tout", &results);
        Ok(results)
    }

    /// A copy of function `name` whose arguments `frozen` take values, not handles; returns its
    /// name (one copy per function and set of arguments).
    fn specialise(
        &mut self,
        name: &str,
        frozen: &FrozenArguments,
        call_node: &str,
        depth: usize,
    ) -> Result<String, ConvertError> {
        if depth >= MAX_NESTING {
            return Err(self.node_error(
                call_node,
                format!("passes a captured variable through more than {MAX_NESTING} nested functions (at {name})"),
            ));
        }
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
        // Argument (or forwarding node) name → dtype and shape of the value it now holds.
        let mut values: HashMap<String, (i32, Vec<i64>)> = HashMap::new();
        // ReadVariableOp nodes turned into Identity.
        let mut reads: HashSet<String> = HashSet::new();
        // ResourceGather nodes turned into GatherV2 of the value, and their axis constants.
        let mut gathers: HashSet<String> = HashSet::new();
        let mut axes: Vec<NodeDef> = Vec::new();
        for (argument, dtype, shape) in frozen {
            let Some(arg) = signature.input_arg.get_mut(*argument) else {
                return Err(self.node_error(
                    call_node,
                    format!("passes argument {argument} to {name}, which has fewer"),
                ));
            };
            arg.r#type = *dtype;
            arg.type_attr.clear();
            values.insert(arg.name.clone(), (*dtype, shape.clone()));
        }
        // Names the axis constants of converted gathers must not take.
        let mut names: HashSet<String> = function.node_def.iter().map(|n| n.name.clone()).collect();
        // Nodes in a function may come in any order: forward through Identity chains until
        // nothing changes.
        loop {
            let mut changed = false;
            for node in &mut function.node_def {
                let Some((dtype, shape)) = node
                    .input
                    .first()
                    .and_then(|input| values.get(input.split(':').next().unwrap_or(input)))
                    .cloned()
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
                    values.insert(node.name.clone(), (dtype, shape));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Control flow and calls that take a captured value on: their functions are specialised
        // the same way, in turn. What they give back where they took the value is not a handle
        // any more: nothing may read it.
        let mut nested: HashSet<String> = HashSet::new();
        // `node:output:k` → dtype of the value a nested function passes back there.
        let mut passed_back: HashMap<String, i32> = HashMap::new();
        for node in &mut function.node_def {
            let Some(call) = Call::of(node, &self.functions) else {
                continue;
            };
            let inner: Vec<(usize, i32, Vec<i64>)> = node
                .input
                .iter()
                .filter(|input| !input.starts_with('^'))
                .enumerate()
                .filter_map(|(position, input)| {
                    let (dtype, shape) = values.get(input.split(':').next().unwrap_or(input))?;
                    Some((position.checked_sub(call.leading)?, *dtype, shape.clone()))
                })
                .collect();
            if inner.is_empty() {
                continue;
            }
            let at = format!("{call_node} (function {name}, node {})", node.name);
            let outputs = self.retarget(node, &call, &inner, &at, depth + 1)?;
            passed_back.extend(
                outputs
                    .into_iter()
                    .map(|(k, dtype)| (format!("{}:output:{k}", node.name), dtype)),
            );
            nested.insert(node.name.clone());
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
            for input in &node.input {
                if passed_back.contains_key(input) {
                    return Err(self.node_error(
                        call_node,
                        format!(
                            "function {name}: node {} ({}) reads {input}, a captured variable \
                             handle a nested function passes back",
                            node.name, node.op
                        ),
                    ));
                }
            }
            let forwards = FORWARDING_OPS.contains(&node.op.as_str()) && node.op != "IdentityN";
            if forwards || gathers.contains(&node.name) || nested.contains(&node.name) {
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
                let dtype = values.get(source).map(|(dtype, _)| dtype);
                if let Some(dtype) = dtype.or_else(|| passed_back.get(reference)) {
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
            .flat_map(referred_functions)
            .filter(|name| self.functions.contains_key(name))
            .map(str::to_string)
            .collect();
        for callee in callees {
            self.keep_function(&callee);
        }
        self.specialised.push(function);
        self.specialised_names.insert(cache_key, new_name.clone());
        Ok(new_name)
    }
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

    /// `loop_graph` whose body calls `inner` (arguments `a`, `h`) with the loop's own `h`,
    /// through `call` (a `StatefulPartitionedCall`, or `inner` itself as the op).
    fn nested_graph(
        call: &str,
        inner_nodes: Vec<NodeDef>,
        inner_results: &[(&str, &str)],
    ) -> GraphDef {
        let mut caller = node("c", call, &["a", "h"]);
        if call != "inner" {
            caller.attr.insert(
                "f".into(),
                AttrValue {
                    value: Some(attr_value::Value::Func(NameAttrList {
                        name: "inner".into(),
                        ..NameAttrList::default()
                    })),
                },
            );
            let types = |types: Vec<i32>| AttrValue {
                value: Some(attr_value::Value::List(ListValue {
                    r#type: types,
                    ..ListValue::default()
                })),
            };
            let (float, resource) = (DataType::DtFloat as i32, DataType::DtResource as i32);
            caller
                .attr
                .insert("Tin".into(), types(vec![float, resource]));
            let outputs = inner_results
                .iter()
                .map(|(name, _)| if name.ends_with('h') { resource } else { float })
                .collect();
            caller.attr.insert("Tout".into(), types(outputs));
        }
        // A call op lists its results as `output`; a function used as the op names them.
        let result = if call == "inner" {
            "c:y:0"
        } else {
            "c:output:0"
        };
        let mut graph = loop_graph(vec![caller], result);
        let library = graph.library.as_mut().unwrap();
        library
            .function
            .push(function("inner", inner_nodes, inner_results));
        graph
    }

    fn frozen_function(graph: &GraphDef, name: &str) -> Result<FunctionDef, String> {
        let mut source = TwoFloats;
        let mut freezer = Freezer::new(PathBuf::from("test"), graph, &[], &mut source);
        let outputs = freezer
            .graph_outputs(graph, &["loop".into()])
            .map_err(|e| e.to_string())?;
        let frozen = freezer.finish(&outputs).map_err(|e| e.to_string())?;
        frozen
            .library
            .into_iter()
            .find(|f| signature_name(f) == name)
            .ok_or_else(|| format!("no function {name}"))
    }

    #[test]
    fn a_captured_variable_passed_to_a_nested_call_is_frozen_there_too() {
        // The body calls `inner` with its handle; `inner` reads it. The call is specialised to
        // take the value, then inlined (TF.js has no call ops): the body reads its own
        // argument through Identity.
        for call in ["StatefulPartitionedCall", "inner"] {
            let graph = nested_graph(
                call,
                vec![
                    node("r", "ReadVariableOp", &["h"]),
                    node("s", "Mul", &["a", "r:value:0"]),
                ],
                &[("y", "s:z:0"), ("out_h", "h")],
            );
            let body = frozen_function(&graph, "body_frozen").unwrap();
            let find = |name: &str| body.node_def.iter().find(|n| n.name == name).unwrap();
            assert_eq!(
                (find("c/r").op.as_str(), find("c/r").input.clone()),
                ("Identity", vec!["h".to_string()])
            );
            assert_eq!(find("c/s").input, ["a", "c/r:output:0"]);
            assert_eq!(body.ret["out_a"], "c/s:z:0");
            let float = DataType::DtFloat as i32;
            assert_eq!(body.signature.as_ref().unwrap().input_arg[1].r#type, float);
            assert!(
                frozen_function(&graph, "inner").is_err(),
                "the handle form is not kept"
            );
            assert!(frozen_function(&graph, "inner_frozen").is_err(), "inlined");
        }
    }

    #[test]
    fn a_handle_a_nested_call_passes_back_must_not_be_read() {
        let mut graph = nested_graph(
            "StatefulPartitionedCall",
            vec![node("r", "ReadVariableOp", &["h"])],
            &[("y", "r:value:0"), ("out_h", "h")],
        );
        let body = &mut graph.library.as_mut().unwrap().function[0];
        body.node_def
            .push(node("again", "ReadVariableOp", &["c:output:1"]));
        let error = frozen_function(&graph, "body_frozen").unwrap_err();
        assert!(
            error.contains("node again (ReadVariableOp) reads c:output:1"),
            "{error}"
        );
    }

    #[test]
    fn functions_passing_a_handle_on_without_end_are_refused() {
        // `inner` calls itself with the handle: a cycle no real library has.
        let graph = nested_graph(
            "inner",
            vec![node("again", "inner", &["a", "h"])],
            &[("y", "again:output:0"), ("out_h", "h")],
        );
        let error = frozen_function(&graph, "body_frozen").unwrap_err();
        assert!(error.contains("more than 32 nested functions"), "{error}");
    }
}
