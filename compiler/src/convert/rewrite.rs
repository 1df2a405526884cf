//! The graph rewrites the TF.js converter gets from TensorFlow's Grappler and its own passes,
//! done on the flat frozen graph: strip forwarding and debug ops, fold constant subgraphs, fold
//! batch normalisation into the preceding convolution or product, and fuse bias and activation
//! into `_FusedConv2D`, `FusedDepthwiseConv2dNative` and `_FusedMatMul`. Each rewrite is a
//! function over [`Graph`], run in the order of [`PASSES`] when its row applies to the
//! conversion; every rewrite keeps the graph's outputs by name. The legacy format is read by
//! TF.js 0.x, which predates the fused ops, `Prelu` and `AddV2`: it gets no fusion, and the
//! older spellings of the ops it has (`legacy_op_names`). Constant folding lives in
//! `rewrite_fold`, batch-norm folding and fusion in `rewrite_fuse`; this module holds the graph,
//! the pass table and the small rewrites.

use std::collections::{HashMap, HashSet};

use tfjsc_proto::tensorflow::{attr_value, AttrValue, FunctionDef, NodeDef};

use super::error::ConvertError;
use super::freeze::{prune, type_attr};
use super::tensor::Tensor;
use super::{ConvertOptions, OutputFormat};

/// A flat graph under rewriting.
pub struct Graph {
    /// Nodes, inputs before consumers.
    pub nodes: Vec<NodeDef>,
    /// The value of every `Const` node.
    pub constants: HashMap<String, Tensor>,
    /// Output tensors ("node" or "node:k"); their nodes keep their names.
    pub outputs: Vec<String>,
}

/// A rewrite: its name, which conversions run it, and the function.
pub struct Pass {
    pub name: &'static str,
    pub applies: fn(&ConvertOptions) -> bool,
    pub run: fn(&mut Graph, &ConvertOptions) -> Result<(), ConvertError>,
}

const fn pass(
    name: &'static str,
    applies: fn(&ConvertOptions) -> bool,
    run: fn(&mut Graph, &ConvertOptions) -> Result<(), ConvertError>,
) -> Pass {
    Pass { name, applies, run }
}

fn always(_: &ConvertOptions) -> bool {
    true
}

fn folding_batch_norms(options: &ConvertOptions) -> bool {
    options.fold_batch_norms
}

/// model.json, read by TF.js 1.x and later, which run the fused ops and `Prelu`.
fn for_graph_model(options: &ConvertOptions) -> bool {
    options.output_format == OutputFormat::GraphModel
}

/// The legacy format, read by TF.js 0.x (tfjs-converter 0.8.x and before).
fn for_legacy(options: &ConvertOptions) -> bool {
    options.output_format == OutputFormat::Legacy
}

/// The rewrites, in order.
pub const PASSES: &[Pass] = &[
    pass("strip_forwarding_ops", always, strip_forwarding_ops),
    pass(
        "fold_constants",
        always,
        super::rewrite_fold::fold_constants,
    ),
    pass(
        "remove_neutral_arithmetic",
        always,
        remove_neutral_arithmetic,
    ),
    pass(
        "fold_batch_norms",
        folding_batch_norms,
        super::rewrite_fuse::fold_batch_norms,
    ),
    pass(
        "fuse_prelu",
        for_graph_model,
        super::rewrite_fuse::fuse_prelu,
    ),
    pass("fuse_ops", for_graph_model, super::rewrite_fuse::fuse_ops),
    pass("legacy_op_names", for_legacy, legacy_op_names),
    pass("prune", always, prune_dead),
];

impl Graph {
    /// A graph of `nodes` with `constants`, producing `outputs`.
    pub fn new(
        nodes: Vec<NodeDef>,
        constants: HashMap<String, Tensor>,
        outputs: &[String],
    ) -> Graph {
        Graph {
            nodes,
            constants,
            outputs: outputs.to_vec(),
        }
    }

    /// Names of the output nodes.
    pub fn output_nodes(&self) -> HashSet<String> {
        self.outputs
            .iter()
            .map(|o| o.split(':').next().unwrap_or(o).to_string())
            .collect()
    }

    /// Consumers count per node name (data inputs only).
    pub fn use_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for node in &self.nodes {
            for input in &node.input {
                if !input.starts_with('^') {
                    *counts.entry(node_name(input).to_string()).or_insert(0) += 1;
                }
            }
        }
        for output in &self.outputs {
            *counts.entry(node_name(output).to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// The constant value of input text `input`, if it is output 0 of a Const.
    pub fn constant(&self, input: &str) -> Option<&Tensor> {
        if input.contains(':') && !input.ends_with(":0") {
            return None;
        }
        self.constants.get(node_name(input))
    }

    /// Adds a Const node named `name` (made unique) holding `tensor`; returns its name.
    pub fn add_constant(
        &mut self,
        name: &str,
        tensor: Tensor,
        names: &mut HashSet<String>,
    ) -> String {
        let unique = unique_name(name, names);
        self.constants.insert(unique.clone(), tensor.clone());
        unique
    }
}

/// `name`, or `name_1`, `name_2`, ... if `names` has it; the result joins `names`.
pub(crate) fn unique_name(name: &str, names: &mut HashSet<String>) -> String {
    let mut unique = name.to_string();
    let mut counter = 1;
    while names.contains(&unique) {
        unique = format!("{name}_{counter}");
        counter += 1;
    }
    names.insert(unique.clone());
    unique
}

/// The node part of an input reference.
pub fn node_name(input: &str) -> &str {
    let input = input.strip_prefix('^').unwrap_or(input);
    input.split(':').next().unwrap_or(input)
}

/// A Const NodeDef for `tensor` (values live in the constants map).
pub fn constant_node(name: &str, tensor: &Tensor) -> NodeDef {
    let mut node = NodeDef {
        name: name.to_string(),
        op: "Const".into(),
        ..NodeDef::default()
    };
    node.attr
        .insert("dtype".into(), type_attr(tensor.dtype as i32));
    node.attr.insert("value".into(), tensor.attr(false));
    node
}

/// Runs every rewrite of [`PASSES`] that applies to this conversion.
pub fn run(graph: &mut Graph, options: &ConvertOptions) -> Result<(), ConvertError> {
    for pass in PASSES {
        if (pass.applies)(options) {
            (pass.run)(graph, options)?;
        }
    }
    Ok(())
}

/// Ops removed by forwarding their inputs to their consumers.
fn forwards(op: &str, strip_debug_ops: bool) -> bool {
    matches!(
        op,
        "Identity" | "IdentityN" | "Snapshot" | "StopGradient" | "PreventGradient"
    ) || (strip_debug_ops && is_forwarding_debug_op(op))
}

/// Debug ops that pass their first input through (`--strip_debug_ops` forwards it).
fn is_forwarding_debug_op(op: &str) -> bool {
    matches!(
        op,
        "CheckNumerics" | "EnsureShape" | "DebugIdentity" | "Print"
    )
}

/// With `--strip_debug_ops`, the debug ops of library functions (loop bodies, branches) go as
/// the graph's own do (Grappler's debug stripper, which the Python converter runs, does both):
/// `CheckNumerics` and the other forwarding ones pass their input to their readers and to the
/// function's results, and `Assert`s go with the control edges and control outputs naming them.
/// Identity ops stay: inside a function they are its own business.
pub fn strip_debug_ops_in_functions(library: &mut [FunctionDef]) {
    for function in library {
        // Node → the data input it forwards ("x" or "node:output:0", a function's reference form).
        let forwarded: HashMap<String, String> = function
            .node_def
            .iter()
            .filter(|node| is_forwarding_debug_op(&node.op))
            .filter_map(|node| {
                let data = node.input.iter().find(|input| !input.starts_with('^'))?;
                Some((node.name.clone(), data.clone()))
            })
            .collect();
        let asserts: HashSet<String> = function
            .node_def
            .iter()
            .filter(|node| node.op == "Assert")
            .map(|node| node.name.clone())
            .collect();
        if forwarded.is_empty() && asserts.is_empty() {
            continue;
        }
        let removed = |name: &str| forwarded.contains_key(name) || asserts.contains(name);
        // A debug op reading another is followed to the first input that is neither, each
        // chain walked once (a malformed body may loop: the walk stops where it began).
        let mut source: HashMap<&str, String> = HashMap::new();
        for name in forwarded.keys() {
            let mut path: HashSet<&str> = HashSet::from([name.as_str()]);
            let mut input = &forwarded[name];
            let end = loop {
                if let Some(known) = source.get(node_name(input)) {
                    break known.clone();
                }
                match forwarded.get_key_value(node_name(input)) {
                    Some((next, next_input)) if path.insert(next.as_str()) => input = next_input,
                    _ => break input.clone(),
                }
            };
            for name in path {
                source.insert(name, end.clone());
            }
        }
        let resolve = |reference: &mut String| {
            if !reference.starts_with('^') {
                if let Some(end) = source.get(node_name(reference)) {
                    *reference = end.clone();
                }
            }
        };
        function.node_def.retain(|node| !removed(&node.name));
        for node in &mut function.node_def {
            node.input
                .retain(|input| !(input.starts_with('^') && removed(node_name(input))));
            node.input.iter_mut().for_each(resolve);
        }
        function.ret.values_mut().for_each(resolve);
        function.control_ret.retain(|_, node| !removed(node));
        let control_outputs: HashSet<String> = function.control_ret.keys().cloned().collect();
        if let Some(signature) = &mut function.signature {
            signature
                .control_output
                .retain(|name| control_outputs.contains(name));
        }
    }
}

/// Removes Identity and friends (and, with `--strip_debug_ops`, CheckNumerics and other debug
/// ops): consumers read the forwarded input instead. Output nodes stay.
fn strip_forwarding_ops(graph: &mut Graph, options: &ConvertOptions) -> Result<(), ConvertError> {
    let outputs = graph.output_nodes();
    let mut replacement: HashMap<String, String> = HashMap::new();
    let resolve = |replacement: &HashMap<String, String>, input: &str| -> String {
        let mut current = input.to_string();
        while let Some(next) = replacement.get(&current).or_else(|| {
            (!current.contains(':'))
                .then(|| replacement.get(&format!("{current}:0")))
                .flatten()
        }) {
            current = next.clone();
        }
        current
    };
    for node in &mut graph.nodes {
        for input in &mut node.input {
            *input = resolve(&replacement, input);
        }
        if forwards(&node.op, options.strip_debug_ops) && !outputs.contains(&node.name) {
            let data: Vec<&String> = node.input.iter().filter(|i| !i.starts_with('^')).collect();
            let forwarded = if node.op == "IdentityN" {
                data.len()
            } else {
                data.len().min(1)
            };
            for (index, input) in data.iter().take(forwarded).enumerate() {
                let target = (*input).clone();
                replacement.insert(format!("{}:{index}", node.name), target.clone());
                if index == 0 {
                    replacement.insert(node.name.clone(), target);
                }
            }
        }
        if matches!(node.op.as_str(), "Assert" | "NoOp") && options.strip_debug_ops {
            node.input.clear();
        }
    }
    for node in &mut graph.nodes {
        node.input.retain(|input| !input.starts_with('^'));
    }
    prune_dead(graph, options)
}

/// The scalar float value of a constant, if it is a rank-0 float32.
fn scalar(tensor: Option<&Tensor>) -> Option<f32> {
    let tensor = tensor?;
    if !tensor.shape.is_empty() {
        return None;
    }
    tensor.as_f32()?.first().copied()
}

/// Removes arithmetic with a neutral scalar constant (`x * 1`, `1 * x`, `x + 0`, `x - 0`,
/// `x / 1`), as Grappler's arithmetic optimizer does; Keras 3's swish multiplies by a constant
/// `beta` of 1. Only rank-0 constants, which cannot change the other operand's shape.
fn remove_neutral_arithmetic(
    graph: &mut Graph,
    options: &ConvertOptions,
) -> Result<(), ConvertError> {
    let outputs = graph.output_nodes();
    let mut replacement: HashMap<String, String> = HashMap::new();
    for index in 0..graph.nodes.len() {
        for input in &mut graph.nodes[index].input {
            if let Some(forwarded) = replacement.get(input.as_str()) {
                *input = forwarded.clone();
            }
        }
        let node = &graph.nodes[index];
        if outputs.contains(&node.name) || node.input.len() != 2 {
            continue;
        }
        let (a, b) = (
            scalar(graph.constant(&node.input[0])),
            scalar(graph.constant(&node.input[1])),
        );
        let forwarded = match node.op.as_str() {
            "Mul" if a == Some(1.0) && b.is_none() => Some(&node.input[1]),
            "Mul" | "RealDiv" if b == Some(1.0) && a.is_none() => Some(&node.input[0]),
            "Add" | "AddV2" if a == Some(0.0) && b.is_none() => Some(&node.input[1]),
            "Add" | "AddV2" | "Sub" if b == Some(0.0) && a.is_none() => Some(&node.input[0]),
            _ => None,
        };
        if let Some(forwarded) = forwarded {
            replacement.insert(node.name.clone(), forwarded.clone());
            replacement.insert(format!("{}:0", node.name), forwarded.clone());
        }
    }
    prune_dead(graph, options)
}

/// Renames ops TF.js 0.x knows only under an older name with the same meaning: `AddV2` → `Add`
/// (TensorFlow 1.14 added `AddV2`; tfjs-converter 0.8 maps `Add`), `FusedBatchNormV2`/`V3` →
/// `FusedBatchNorm` (same inputs and output 0; left only with `--no_fold_batch_norms`), whose
/// `U` attribute (the float type of the statistics) goes.
fn legacy_op_names(graph: &mut Graph, _: &ConvertOptions) -> Result<(), ConvertError> {
    for node in &mut graph.nodes {
        match node.op.as_str() {
            "AddV2" => node.op = "Add".into(),
            "FusedBatchNormV2" | "FusedBatchNormV3" => {
                node.op = "FusedBatchNorm".into();
                node.attr.remove("U");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes nodes the outputs do not need.
fn prune_dead(graph: &mut Graph, _: &ConvertOptions) -> Result<(), ConvertError> {
    let outputs: Vec<String> = graph.output_nodes().into_iter().collect();
    prune(&mut graph.nodes, &outputs);
    let kept: HashSet<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    graph
        .constants
        .retain(|name, _| kept.contains(name.as_str()));
    Ok(())
}

/// An integer attribute.
pub fn int_attr(node: &NodeDef, name: &str) -> Option<i64> {
    match node.attr.get(name)?.value.as_ref()? {
        attr_value::Value::I(value) => Some(*value),
        _ => None,
    }
}

/// A float attribute.
pub fn float_attr(node: &NodeDef, name: &str) -> Option<f32> {
    match node.attr.get(name)?.value.as_ref()? {
        attr_value::Value::F(value) => Some(*value),
        _ => None,
    }
}

/// A bytes attribute as text.
pub fn string_attr(node: &NodeDef, name: &str) -> Option<String> {
    match node.attr.get(name)?.value.as_ref()? {
        attr_value::Value::S(value) => Some(String::from_utf8_lossy(value).into_owned()),
        _ => None,
    }
}

/// A bool attribute.
pub fn bool_attr(node: &NodeDef, name: &str) -> Option<bool> {
    match node.attr.get(name)?.value.as_ref()? {
        attr_value::Value::B(value) => Some(*value),
        _ => None,
    }
}

/// An attribute value of one kind.
pub fn attr(value: attr_value::Value) -> AttrValue {
    AttrValue { value: Some(value) }
}

/// A node `name` of `op` reading `inputs` (the convert tests' graphs).
#[cfg(test)]
pub(crate) fn test_node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|i| i.to_string()).collect(),
        ..NodeDef::default()
    }
}

#[cfg(test)]
mod tests {
    use super::test_node as node;
    use super::*;

    #[test]
    fn debug_op_chains_in_functions_resolve_to_their_source() {
        // c0 → c1 → ... → c4999 (each reading the previous), read by a node and a result; the
        // last listed first, so that a walk without memory would be quadratic.
        let count = 5000;
        let mut nodes: Vec<NodeDef> = (0..count)
            .rev()
            .map(|i| {
                let input = if i == 0 {
                    "x".to_string()
                } else {
                    format!("c{}:output:0", i - 1)
                };
                node(&format!("c{i}"), "CheckNumerics", &[input.as_str()])
            })
            .collect();
        let last = format!("c{}:output:0", count - 1);
        nodes.push(node("r", "Relu", &[last.as_str(), "^c7"]));
        let mut function = FunctionDef {
            node_def: nodes,
            ..FunctionDef::default()
        };
        function.ret.insert("y".into(), last.clone());
        let mut library = [function];
        strip_debug_ops_in_functions(&mut library);
        let [function] = library;
        assert_eq!(function.node_def.len(), 1);
        assert_eq!(function.node_def[0].input, ["x"]);
        assert_eq!(function.ret["y"], "x");
    }

    #[test]
    fn neutral_scalars_are_removed_and_others_kept() {
        let one = Tensor::float32(vec![], &[1.0]);
        let two = Tensor::float32(vec![], &[2.0]);
        let ones = Tensor::float32(vec![2], &[1.0, 1.0]);
        let nodes = vec![
            node("x", "Placeholder", &[]),
            constant_node("one", &one),
            constant_node("two", &two),
            constant_node("ones", &ones),
            node("a", "Mul", &["one", "x"]),
            node("b", "Mul", &["a", "two"]),
            node("c", "Mul", &["b", "ones"]),
            node("out", "Relu", &["c"]),
        ];
        let constants = HashMap::from([
            ("one".into(), one),
            ("two".into(), two),
            ("ones".into(), ones),
        ]);
        let mut graph = Graph::new(nodes, constants, &["out".to_string()]);
        remove_neutral_arithmetic(&mut graph, &ConvertOptions::default()).unwrap();
        let names: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["x", "two", "ones", "b", "c", "out"]);
        assert_eq!(graph.nodes[3].input, ["x", "two"]);
        assert!(!graph.constants.contains_key("one"));
    }
}
