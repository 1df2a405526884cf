//! Freezing and inlining: from a GraphDef with variables and a function library to one flat graph
//! of plain ops whose variables are `Const` nodes.
//!
//! TF2 SavedModels reach their real graph through `StatefulPartitionedCall`/`PartitionedCall`
//! nodes calling functions of the library, and read variables with `ReadVariableOp` on resource
//! handles (`VarHandleOp`) passed in as captured arguments. The [`Freezer`] walks backwards from
//! the wanted outputs only (so it prunes as it goes), inlines every call it reaches (the callee's
//! nodes are renamed `CALL_NODE/NODE`, as TensorFlow's own inliner names them), turns each
//! variable read into one `Const` holding the checkpoint value, and drops control edges (after
//! freezing nothing stateful is left to order). It never evaluates ops; folding and fusion are
//! later rewrites ([`super::rewrite`]).
//!
//! Layout: `references` parses input references and finds callees; `variables` turns variable
//! reads into constants; `control_flow` freezes the variables `While`/`If` functions capture;
//! this module walks, inlines and emits.
//!
//! The walk is iterative (no recursion per node), and call nesting is bounded, so a hostile
//! graph gets an error, not a stack overflow.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use tfjsc_proto::tensorflow::{attr_value, AttrValue, FunctionDef, GraphDef, NodeDef, OpDef};

mod control_flow;
mod inline_bodies;
mod references;
mod variables;

use references::Reference;

use super::error::{near_names, ConvertError};
use super::tensor::{shape_proto, Tensor};

/// Calls nested deeper than this are refused (real models nest 2–4 deep).
const MAX_CALL_DEPTH: usize = 64;
/// Inlining that emits more nodes than this is refused (a function called twice per level,
/// nested, would otherwise grow exponentially).
const MAX_NODES: usize = 5_000_000;

/// Ops that only forward their input (removed by the rewrites; followed through for resources).
pub const FORWARDING_OPS: &[&str] = &["Identity", "IdentityN", "Snapshot", "StopGradient"];

/// Where variable values come from.
pub trait VariableSource {
    /// The key naming the variable whose handle node is `handle` (in the graph or a function):
    /// by default the handle node's own name (sources that hold no variables).
    fn key(&mut self, handle: &NodeDef, _prefix: &str) -> Result<String, ConvertError> {
        Ok(handle.name.clone())
    }
    /// The value stored under `key`; `reader` is the node that reads it (for error messages).
    fn value(&mut self, key: &str, reader: &str) -> Result<Tensor, ConvertError>;
}

/// What one tensor of the graph being built is.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Output `1` of the emitted node `0`.
    Tensor(String, u32),
    /// A resource handle to the variable with this key.
    Variable(String),
}

impl Value {
    /// The input string naming this tensor ("node" or "node:k").
    pub fn input(&self) -> Option<String> {
        match self {
            Value::Tensor(node, 0) => Some(node.clone()),
            Value::Tensor(node, index) => Some(format!("{node}:{index}")),
            Value::Variable(_) => None,
        }
    }
}

/// The flat graph: nodes in an order where inputs come first, and the value of every `Const`.
#[derive(Debug, Default)]
pub struct Frozen {
    pub nodes: Vec<NodeDef>,
    pub constants: HashMap<String, Tensor>,
    /// Functions still referenced by emitted nodes (control-flow bodies), with their callees.
    pub library: Vec<FunctionDef>,
}

/// One scope being inlined: the top-level graph or a function body.
struct Body<'a> {
    nodes: HashMap<&'a str, &'a NodeDef>,
    /// Function arguments by name (none for the top-level graph).
    args: HashMap<String, Value>,
    /// Whether references use the function form `node:output_arg:index`.
    function_style: bool,
    /// For errors: the graph file, or the function's name.
    place: String,
}

/// What a processed node of a body stands for.
enum Outputs {
    /// Emitted under this (prefixed) name: output k is `name:k`.
    Emitted(String),
    /// Known values per output index (calls, variables, forwarded resources).
    Values(HashMap<u32, Value>),
}

/// Builds the flat graph.
pub struct Freezer<'a> {
    path: PathBuf,
    functions: HashMap<&'a str, &'a FunctionDef>,
    op_defs: HashMap<&'a str, &'a OpDef>,
    variables: &'a mut dyn VariableSource,
    out: Frozen,
    names: HashSet<String>,
    variable_constants: HashMap<String, String>,
    kept_functions: BTreeSet<String>,
    /// Copies of control-flow functions whose captured variables were frozen.
    specialised: Vec<FunctionDef>,
    /// `function|argument:dtype,...` → the name of its specialised copy.
    specialised_names: HashMap<String, String>,
}

impl<'a> Freezer<'a> {
    /// A freezer over `graph`'s library; `op_defs` give output argument layouts (a SavedModel's
    /// stripped op list), `path` names the input file in errors.
    pub fn new(
        path: PathBuf,
        graph: &'a GraphDef,
        op_defs: &'a [OpDef],
        variables: &'a mut dyn VariableSource,
    ) -> Freezer<'a> {
        let functions = graph
            .library
            .iter()
            .flat_map(|library| &library.function)
            .filter_map(|function| Some((function.signature.as_ref()?.name.as_str(), function)))
            .collect();
        Freezer {
            path,
            functions,
            op_defs: op_defs.iter().map(|op| (op.name.as_str(), op)).collect(),
            variables,
            out: Frozen::default(),
            names: HashSet::new(),
            variable_constants: HashMap::new(),
            kept_functions: BTreeSet::new(),
            specialised: Vec::new(),
            specialised_names: HashMap::new(),
        }
    }

    fn node_error(&self, node: &str, message: impl Into<String>) -> ConvertError {
        ConvertError::Node {
            path: self.path.clone(),
            node: node.to_string(),
            message: message.into(),
        }
    }

    fn unique(&mut self, wanted: String) -> String {
        let mut name = wanted.clone();
        let mut counter = 1;
        while self.names.contains(&name) {
            name = format!("{wanted}_{counter}");
            counter += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Emits a Placeholder (an input of the converted model).
    pub fn placeholder(
        &mut self,
        name: &str,
        dtype: i32,
        shape: Option<&tfjsc_proto::tensorflow::TensorShapeProto>,
    ) -> Value {
        let name = self.unique(name.to_string());
        let mut node = NodeDef {
            name: name.clone(),
            op: "Placeholder".to_string(),
            ..NodeDef::default()
        };
        node.attr.insert("dtype".into(), type_attr(dtype));
        if let Some(shape) = shape {
            node.attr.insert(
                "shape".into(),
                AttrValue {
                    value: Some(attr_value::Value::Shape(shape.clone())),
                },
            );
        }
        self.out.nodes.push(node);
        Value::Tensor(name, 0)
    }

    /// The values of `outputs` (tensor names "node" or "node:k") of the top-level `graph`.
    pub fn graph_outputs(
        &mut self,
        graph: &'a GraphDef,
        outputs: &[String],
    ) -> Result<Vec<Value>, ConvertError> {
        let body = Body {
            nodes: graph
                .node
                .iter()
                .map(|node| (node.name.as_str(), node))
                .collect(),
            args: HashMap::new(),
            function_style: false,
            place: self.path.display().to_string(),
        };
        for output in outputs {
            let name = output.strip_prefix('^').unwrap_or(output);
            let name = name.split(':').next().unwrap_or(name);
            if !body.nodes.contains_key(name) {
                return Err(ConvertError::MissingNode {
                    path: self.path.clone(),
                    name: name.to_string(),
                    near: near_names(name, graph.node.iter().map(|node| node.name.as_str())),
                });
            }
        }
        self.inline(&body, "", outputs, 0)
    }

    /// Inlines the library function `name` at the top level (no name prefix) with `args`, and
    /// returns the values of its output arguments `outputs` (indices).
    pub fn call_root(
        &mut self,
        name: &str,
        args: Vec<Value>,
        outputs: &[usize],
    ) -> Result<Vec<Value>, ConvertError> {
        let function = *self
            .functions
            .get(name)
            .ok_or_else(|| self.node_error(name, "the function is not in the graph's library"))?;
        let values = self.call(function, "", name, args, 0)?;
        outputs
            .iter()
            .map(|&index| {
                values.get(index).cloned().flatten().ok_or_else(|| {
                    self.node_error(
                        name,
                        format!("has no output {index} (it has {})", values.len()),
                    )
                })
            })
            .collect()
    }

    /// Inlines `function` with `args` under `prefix`; all its outputs (None where unreachable).
    fn call(
        &mut self,
        function: &'a FunctionDef,
        prefix: &str,
        call_node: &str,
        args: Vec<Value>,
        depth: usize,
    ) -> Result<Vec<Option<Value>>, ConvertError> {
        if depth > MAX_CALL_DEPTH {
            return Err(self.node_error(call_node, "function calls nest too deep"));
        }
        let signature = function.signature.clone().unwrap_or_default();
        if signature.input_arg.len() != args.len() {
            return Err(self.node_error(
                call_node,
                format!(
                    "calls {} with {} inputs; it takes {}",
                    signature.name,
                    args.len(),
                    signature.input_arg.len()
                ),
            ));
        }
        let body = Body {
            nodes: function
                .node_def
                .iter()
                .map(|node| (node.name.as_str(), node))
                .collect(),
            args: signature
                .input_arg
                .iter()
                .map(|arg| arg.name.clone())
                .zip(args)
                .collect(),
            function_style: true,
            place: format!("function {}", signature.name),
        };
        let mut wanted = Vec::new();
        for arg in &signature.output_arg {
            let reference = function.ret.get(&arg.name).ok_or_else(|| {
                self.node_error(
                    call_node,
                    format!(
                        "function {} has no ret for output {}",
                        signature.name, arg.name
                    ),
                )
            })?;
            wanted.push(reference.clone());
        }
        let values = self.inline(&body, prefix, &wanted, depth)?;
        Ok(values.into_iter().map(Some).collect())
    }

    /// Processes the nodes of `body` that `wanted` needs, in dependency order; returns the
    /// values of `wanted`.
    fn inline(
        &mut self,
        body: &Body<'a>,
        prefix: &str,
        wanted: &[String],
        depth: usize,
    ) -> Result<Vec<Value>, ConvertError> {
        let order = self.dependency_order(body, wanted)?;
        let mut outputs: HashMap<&'a str, Outputs> = HashMap::new();
        for node in order {
            let mut inputs = Vec::new();
            for text in &node.input {
                match self.parse(body, text) {
                    Reference::Control => {}
                    Reference::Argument(name) => inputs.push(body.args[name].clone()),
                    Reference::Node(name, index) => {
                        inputs.push(lookup(&outputs, name, index).ok_or_else(|| {
                            self.node_error(
                                &format!("{prefix}{}", node.name),
                                format!("input {text:?} has no value in {}", body.place),
                            )
                        })?)
                    }
                }
            }
            let result = self.process(node, prefix, inputs, depth)?;
            outputs.insert(node.name.as_str(), result);
        }
        wanted
            .iter()
            .map(|text| match self.parse(body, text) {
                Reference::Argument(name) => Ok(body.args[name].clone()),
                Reference::Node(name, index) => lookup(&outputs, name, index).ok_or_else(|| {
                    self.node_error(
                        name,
                        format!("output {index} has no value in {}", body.place),
                    )
                }),
                Reference::Control => {
                    Err(self.node_error(text, "is a control dependency, not a tensor"))
                }
            })
            .collect()
    }

    /// The nodes `wanted` needs through data edges, inputs before consumers.
    fn dependency_order(
        &self,
        body: &Body<'a>,
        wanted: &[String],
    ) -> Result<Vec<&'a NodeDef>, ConvertError> {
        let mut order = Vec::new();
        let mut state: HashMap<&str, bool> = HashMap::new(); // false: open, true: done
        let mut stack: Vec<(&'a NodeDef, usize)> = Vec::new();
        let find = |name: &str| -> Result<&'a NodeDef, ConvertError> {
            body.nodes
                .get(name)
                .copied()
                .ok_or_else(|| ConvertError::MissingNode {
                    path: self.path.clone(),
                    name: format!("{name} (in {})", body.place),
                    near: near_names(name, body.nodes.keys().copied()),
                })
        };
        for text in wanted {
            if let Reference::Node(name, _) = self.parse(body, text) {
                let node = find(name)?;
                if state.contains_key(node.name.as_str()) {
                    continue;
                }
                state.insert(node.name.as_str(), false);
                stack.push((node, 0));
            }
            while let Some((node, next)) = stack.pop() {
                if next < node.input.len() {
                    stack.push((node, next + 1));
                    if let Reference::Node(name, _) = self.parse(body, &node.input[next]) {
                        let input = find(name)?;
                        match state.get(input.name.as_str()) {
                            Some(false) => {
                                return Err(self.node_error(&node.name, "is part of a cycle"))
                            }
                            Some(true) => {}
                            None => {
                                state.insert(input.name.as_str(), false);
                                stack.push((input, 0));
                            }
                        }
                    }
                } else {
                    state.insert(node.name.as_str(), true);
                    order.push(node);
                }
            }
        }
        Ok(order)
    }

    fn process(
        &mut self,
        node: &'a NodeDef,
        prefix: &str,
        mut inputs: Vec<Value>,
        depth: usize,
    ) -> Result<Outputs, ConvertError> {
        let full_name = format!("{prefix}{}", node.name);
        if self.out.nodes.len() > MAX_NODES {
            return Err(self.node_error(
                &full_name,
                format!("inlining the functions gives more than {MAX_NODES} nodes"),
            ));
        }
        let single = |value: Value| Outputs::Values(HashMap::from([(0u32, value)]));
        match node.op.as_str() {
            "VarHandleOp" => {
                let key = self.variables.key(node, prefix)?;
                return Ok(single(Value::Variable(key)));
            }
            "VariableV2" | "Variable" => {
                let key = self.variables.key(node, prefix)?;
                return Ok(single(self.variable_constant(&key, &full_name)?));
            }
            "ReadVariableOp" => {
                return match inputs.first() {
                    Some(Value::Variable(key)) => {
                        let key = key.clone();
                        Ok(single(self.variable_constant(&key, &full_name)?))
                    }
                    _ => Err(self.node_error(
                        &full_name,
                        "reads a resource that is not a variable of the checkpoint",
                    )),
                };
            }
            op if FORWARDING_OPS.contains(&op)
                && inputs.iter().any(|v| matches!(v, Value::Variable(_))) =>
            {
                return Ok(Outputs::Values(
                    inputs
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (i as u32, v))
                        .collect(),
                ));
            }
            "ResourceGather" => return self.resource_gather(node, &full_name, inputs),
            _ => {}
        }
        if let Some(function) = self.callee(node) {
            let values = self.call(
                function,
                &format!("{full_name}/"),
                &full_name,
                inputs,
                depth + 1,
            )?;
            return Ok(Outputs::Values(
                values
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((i as u32, v?)))
                    .collect(),
            ));
        }
        let mut emitted = node.clone();
        // SavedModels strip attributes equal to their defaults; TensorFlow restores them from
        // the op list when loading, and TF.js reads them, so put them back.
        if let Some(op_def) = self.op_defs.get(node.op.as_str()) {
            for attr in &op_def.attr {
                if let Some(default) = &attr.default_value {
                    if !attr.name.starts_with('_') {
                        emitted
                            .attr
                            .entry(attr.name.clone())
                            .or_insert_with(|| default.clone());
                    }
                }
            }
        }
        emitted.name = self.unique(full_name.clone());
        emitted.device.clear();
        emitted.experimental_debug_info = None;
        emitted.attr.retain(|name, _| !name.starts_with('_'));
        emitted.input.clear();
        if Self::is_control_flow(&node.op) {
            self.capture_variables(&mut emitted, &full_name, &mut inputs)?;
        }
        for value in &inputs {
            match value.input() {
                Some(text) => emitted.input.push(text),
                None => {
                    return Err(self.node_error(
                        &full_name,
                        format!(
                            "op {} takes a variable handle; only ReadVariableOp and ResourceGather reads can be frozen",
                            node.op
                        ),
                    ))
                }
            }
        }
        if node.op == "Const" {
            let tensor = match node.attr.get("value").and_then(|a| a.value.as_ref()) {
                Some(attr_value::Value::Tensor(proto)) => Tensor::from_proto(proto)
                    .map_err(|message| self.node_error(&full_name, message))?,
                _ => return Err(self.node_error(&full_name, "Const without a tensor value")),
            };
            let name = emitted.name.clone();
            self.emit_constant(&name, tensor);
            return Ok(Outputs::Emitted(name));
        }
        let called: Vec<String> = attribute_functions(&emitted).map(str::to_string).collect();
        for function in called {
            self.keep_function(&function);
        }
        let name = emitted.name.clone();
        self.out.nodes.push(emitted);
        Ok(Outputs::Emitted(name))
    }

    fn keep_function(&mut self, name: &str) {
        let mut pending = vec![name.to_string()];
        while let Some(name) = pending.pop() {
            if !self.kept_functions.insert(name.clone()) {
                continue;
            }
            if let Some(function) = self.functions.get(name.as_str()) {
                for node in &function.node_def {
                    pending.extend(
                        referred_functions(node)
                            .filter(|name| self.functions.contains_key(name))
                            .map(str::to_string),
                    );
                }
            }
        }
    }

    /// The flat graph, pruned to what `outputs` need.
    pub fn finish(mut self, outputs: &[Value]) -> Result<Frozen, ConvertError> {
        let mut wanted = Vec::new();
        for output in outputs {
            match output {
                Value::Tensor(name, _) => wanted.push(name.clone()),
                Value::Variable(key) => {
                    return Err(self.node_error(key, "an output is a variable handle, not a tensor"))
                }
            }
        }
        prune(&mut self.out.nodes, &wanted);
        let kept: HashSet<&str> = self.out.nodes.iter().map(|n| n.name.as_str()).collect();
        self.out
            .constants
            .retain(|name, _| kept.contains(name.as_str()));
        let functions: BTreeMap<&str, &FunctionDef> =
            self.functions.iter().map(|(k, v)| (*k, *v)).collect();
        self.out.library = self
            .kept_functions
            .iter()
            .filter_map(|name| functions.get(name.as_str()).map(|f| (*f).clone()))
            .collect();
        self.out.library.append(&mut self.specialised);
        inline_bodies::inline_calls_in_bodies(&self.out.nodes, &mut self.out.library).map_err(
            |message| ConvertError::File {
                path: self.path.clone(),
                message,
            },
        )?;
        Ok(self.out)
    }
}

fn lookup(outputs: &HashMap<&str, Outputs>, name: &str, index: u32) -> Option<Value> {
    match outputs.get(name)? {
        Outputs::Emitted(emitted) => Some(Value::Tensor(emitted.clone(), index)),
        Outputs::Values(values) => values.get(&index).cloned(),
    }
}

/// A `{type: DT_...}` attribute.
pub fn type_attr(dtype: i32) -> AttrValue {
    AttrValue {
        value: Some(attr_value::Value::Type(dtype)),
    }
}

/// A shape attribute of known dims.
pub fn shape_attr(dims: &[i64]) -> AttrValue {
    AttrValue {
        value: Some(attr_value::Value::Shape(shape_proto(dims))),
    }
}

/// Keeps only the nodes `outputs` reach through data inputs (order unchanged).
pub fn prune(nodes: &mut Vec<NodeDef>, outputs: &[String]) {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.name.as_str(), i))
        .collect();
    let mut live = vec![false; nodes.len()];
    let mut stack: Vec<usize> = outputs
        .iter()
        .filter_map(|name| index.get(name.as_str()).copied())
        .collect();
    while let Some(at) = stack.pop() {
        if std::mem::replace(&mut live[at], true) {
            continue;
        }
        for input in &nodes[at].input {
            if input.starts_with('^') {
                continue;
            }
            let name = input.split(':').next().unwrap_or(input);
            if let Some(&i) = index.get(name) {
                if !live[i] {
                    stack.push(i);
                }
            }
        }
    }
    let mut at = 0;
    nodes.retain(|_| {
        at += 1;
        live[at - 1]
    });
}

/// The library functions `node`'s attributes name: one (`While`'s `body`, `If`'s branches,
/// `PartitionedCall`'s `f`) or a list (`Case`'s `branches`), in attribute order.
pub(crate) fn attribute_functions(node: &NodeDef) -> impl Iterator<Item = &str> {
    node.attr.values().flat_map(|attr| {
        let names: Vec<&str> = match &attr.value {
            Some(attr_value::Value::Func(function)) => vec![function.name.as_str()],
            Some(attr_value::Value::List(list)) => list
                .func
                .iter()
                .map(|function| function.name.as_str())
                .collect(),
            _ => Vec::new(),
        };
        names
    })
}

/// The functions `node` may refer to: those its attributes name (single or lists), and its op,
/// which names a function when the library has one of that name (callers look it up).
pub(crate) fn referred_functions(node: &NodeDef) -> impl Iterator<Item = &str> {
    attribute_functions(node).chain(std::iter::once(node.op.as_str()))
}

/// The name a function's signature gives it.
fn signature_name(function: &FunctionDef) -> &str {
    function.signature.as_ref().map_or("", |s| s.name.as_str())
}
