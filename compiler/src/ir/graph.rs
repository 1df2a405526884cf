//! The SSA graph: values and nodes in arenas, addressed by small copyable ids.
//!
//! Every value is defined exactly once: by a graph input, a constant, or one output of a node.
//! Nodes live in an arena indexed by their id (lookup is O(1)); the program order is a separate
//! list of ids (as Cranelift keeps its DFG and its Layout apart). The order is topological (every
//! node after the producers of its inputs); passes that insert nodes keep it, and the verifier
//! checks it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::tensor::{Tensor, TensorType};
use crate::ops::{InputFacts, Operator};

/// A value of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// A node of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Definition {
    /// The graph input with this index.
    Input(usize),
    /// A constant known at compile time.
    Constant(Constant),
    /// Output `output_index` of a node.
    Node { node: NodeId, output_index: usize },
}

/// A compile-time constant: a weight of the web model (its data lives in the shards, the runtime
/// hands it to the code) or a value the compiler computed (embedded in the object).
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub tensor: Arc<Tensor>,
    /// The manifest weight this constant is, if it is one.
    pub weight: Option<String>,
    /// Stored packed into panels for the GEMM kernels that read it (`passes::pack_weights`);
    /// the tensor itself stays in its logical layout.
    pub panels: Option<tfjsc_runtime::panels::Panels>,
}

/// One value: its definition, its type once inferred, and a name for messages.
#[derive(Clone, Debug)]
pub struct Value {
    pub definition: Definition,
    pub ty: Option<TensorType>,
    pub name: String,
}

/// One operation applied to values.
#[derive(Clone, Debug)]
pub struct Node {
    /// The TensorFlow node this came from (for messages and `inspect`).
    pub name: String,
    pub op: Arc<dyn Operator>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A named graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub name: String,
    pub value: ValueId,
}

/// The whole model as SSA.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub values: Vec<Value>,
    /// Nodes by id; a removed node leaves `None` (ids are never reused within one graph).
    nodes: Vec<Option<Node>>,
    /// The program order: live node ids, topologically sorted.
    order: Vec<NodeId>,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0 as usize]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.0 as usize]
    }

    /// The inferred type of `id`; panics if shape inference has not run (a compiler bug).
    pub fn ty(&self, id: ValueId) -> &TensorType {
        self.value(id)
            .ty
            .as_ref()
            .unwrap_or_else(|| panic!("value {id} has no type yet"))
    }

    /// Floating-point operations of one evaluation of `node`: its op's count for its operand
    /// types (`inspect` sums them, the description lists them per kernel for profiles).
    pub fn flops_of(&self, node: &Node) -> u64 {
        let inputs: Vec<&TensorType> = node.inputs.iter().map(|&v| self.ty(v)).collect();
        let outputs: Vec<TensorType> = node.outputs.iter().map(|&v| self.ty(v).clone()).collect();
        node.op.flops(&inputs, &outputs)
    }

    /// The constant behind `id`, if it is one.
    pub fn constant(&self, id: ValueId) -> Option<&Constant> {
        match &self.value(id).definition {
            Definition::Constant(constant) => Some(constant),
            _ => None,
        }
    }

    pub fn add_input(&mut self, name: &str, ty: Option<TensorType>) -> ValueId {
        let id = self.push_value(Definition::Input(self.inputs.len()), ty, name.to_string());
        self.inputs.push(Port {
            name: name.to_string(),
            value: id,
        });
        id
    }

    /// The constant behind `id`, if it is one, to change how it is stored.
    pub fn constant_mut(&mut self, id: ValueId) -> Option<&mut Constant> {
        match &mut self.value_mut(id).definition {
            Definition::Constant(constant) => Some(constant),
            _ => None,
        }
    }

    pub fn add_constant(&mut self, name: &str, tensor: Tensor, weight: Option<String>) -> ValueId {
        let ty = Some(tensor.tensor_type());
        let constant = Constant {
            tensor: Arc::new(tensor),
            weight,
            panels: None,
        };
        self.push_value(Definition::Constant(constant), ty, name.to_string())
    }

    /// Appends a node at the end of the order, with `output_count` fresh untyped outputs.
    pub fn add_node(
        &mut self,
        name: &str,
        op: Arc<dyn Operator>,
        inputs: Vec<ValueId>,
        output_count: usize,
    ) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        let outputs = (0..output_count)
            .map(|output_index| {
                let value_name = if output_index == 0 {
                    name.to_string()
                } else {
                    format!("{name}:{output_index}")
                };
                self.push_value(
                    Definition::Node {
                        node: id,
                        output_index,
                    },
                    None,
                    value_name,
                )
            })
            .collect();
        self.nodes.push(Some(Node {
            name: name.to_string(),
            op,
            inputs,
            outputs,
        }));
        self.order.push(id);
        id
    }

    /// As [`Graph::add_node`], but placed in the order just before node `before` (a rewrite
    /// that gives `before` a new operand computes it there), with its output types given.
    pub fn insert_node_before(
        &mut self,
        before: NodeId,
        name: &str,
        op: Arc<dyn Operator>,
        inputs: Vec<ValueId>,
        output_types: Vec<TensorType>,
    ) -> NodeId {
        let id = self.add_node(name, op, inputs, output_types.len());
        self.order.pop();
        let position = self
            .order
            .iter()
            .position(|&node| node == before)
            .unwrap_or(self.order.len());
        self.order.insert(position, id);
        let outputs = self.nodes[id.0 as usize]
            .as_ref()
            .map(|node| node.outputs.clone())
            .unwrap_or_default();
        for (value, ty) in outputs.into_iter().zip(output_types) {
            self.value_mut(value).ty = Some(ty);
        }
        id
    }

    fn push_value(
        &mut self,
        definition: Definition,
        ty: Option<TensorType>,
        name: String,
    ) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value {
            definition,
            ty,
            name,
        });
        id
    }

    pub fn add_output(&mut self, name: &str, value: ValueId) {
        self.outputs.push(Port {
            name: name.to_string(),
            value,
        });
    }

    /// Nodes in topological order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.order
            .iter()
            .filter_map(|&id| self.node(id).map(|node| (id, node)))
    }

    /// Live node ids in topological order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.order.clone()
    }

    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0 as usize)?.as_ref()
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(id.0 as usize)?.as_mut()
    }

    /// The node producing `value`, if a node does.
    pub fn producer(&self, value: ValueId) -> Option<(NodeId, &Node)> {
        match self.value(value).definition {
            Definition::Node { node, .. } => self.node(node).map(|n| (node, n)),
            _ => None,
        }
    }

    /// Keeps the nodes for which `keep` is true, in order; the others are removed.
    pub fn retain_nodes(&mut self, mut keep: impl FnMut(NodeId, &Node) -> bool) {
        let nodes = &mut self.nodes;
        self.order.retain(|&id| {
            let slot = &mut nodes[id.0 as usize];
            let kept = slot.as_ref().is_some_and(|node| keep(id, node));
            if !kept {
                *slot = None;
            }
            kept
        });
    }

    /// Turns `value` into a constant (constant folding). Its producer keeps its other outputs.
    pub fn make_constant(&mut self, value: ValueId, tensor: Tensor) {
        let entry = self.value_mut(value);
        entry.ty = Some(tensor.tensor_type());
        entry.definition = Definition::Constant(Constant {
            tensor: Arc::new(tensor),
            weight: None,
            panels: None,
        });
    }

    /// Rewrites every use (node inputs and graph outputs) of every value through `rename`, in
    /// one walk over the graph.
    pub fn rename_uses(&mut self, rename: &dyn Fn(ValueId) -> ValueId) {
        for node in self.nodes.iter_mut().flatten() {
            for input in node.inputs.iter_mut() {
                *input = rename(*input);
            }
        }
        for output in self.outputs.iter_mut() {
            output.value = rename(output.value);
        }
    }

    /// The types of `node`'s inputs, or `None` while any is unknown.
    pub fn input_types(&self, node: &Node) -> Option<Vec<&TensorType>> {
        node.inputs
            .iter()
            .map(|&value| self.value(value).ty.as_ref())
            .collect()
    }

    /// What an op's type rule sees of `inputs`: their types (`None` while any is unknown) and
    /// the values of those that are constants.
    pub fn input_facts(&self, inputs: &[ValueId]) -> Option<InputFacts<'_>> {
        Some(InputFacts {
            types: inputs
                .iter()
                .map(|&value| self.value(value).ty.as_ref())
                .collect::<Option<_>>()?,
            constants: inputs
                .iter()
                .map(|&value| self.constant(value).map(|c| c.tensor.as_ref()))
                .collect(),
        })
    }

    /// How many node inputs and graph outputs read each value.
    pub fn use_counts(&self) -> HashMap<ValueId, usize> {
        let mut counts = HashMap::new();
        for (_, node) in self.nodes() {
            for &input in &node.inputs {
                *counts.entry(input).or_insert(0) += 1;
            }
        }
        for output in &self.outputs {
            *counts.entry(output.value).or_insert(0) += 1;
        }
        counts
    }

    /// Whether `value` is read by the graph outputs.
    pub fn is_graph_output(&self, value: ValueId) -> bool {
        self.outputs.iter().any(|port| port.value == value)
    }
}
