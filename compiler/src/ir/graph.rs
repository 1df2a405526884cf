//! The SSA graph: values and nodes in arenas, addressed by small copyable ids.
//!
//! Every value is defined exactly once: by a graph input, a constant, or one output of a node.
//! Nodes are kept in a topological order (every node after the producers of its inputs); passes
//! that insert nodes keep it, and the verifier checks it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::tensor::{Tensor, TensorType};
use crate::ops::Operator;

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
    /// Nodes in topological order. Removed nodes are dropped from this list; ids of removed nodes
    /// are never reused within one graph.
    nodes: Vec<(NodeId, Node)>,
    next_node: u32,
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

    pub fn add_constant(&mut self, name: &str, tensor: Tensor, weight: Option<String>) -> ValueId {
        let ty = Some(tensor.tensor_type());
        let constant = Constant {
            tensor: Arc::new(tensor),
            weight,
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
        let id = NodeId(self.next_node);
        self.next_node += 1;
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
        self.nodes.push((
            id,
            Node {
                name: name.to_string(),
                op,
                inputs,
                outputs,
            },
        ));
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
        self.nodes.iter().map(|(id, node)| (*id, node))
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|(id, _)| *id).collect()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|(node_id, _)| *node_id == id)
            .map(|(_, node)| node)
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|(node_id, _)| *node_id == id)
            .map(|(_, node)| node)
    }

    /// The node producing `value`, if a node does.
    pub fn producer(&self, value: ValueId) -> Option<(NodeId, &Node)> {
        match self.value(value).definition {
            Definition::Node { node, .. } => self.node(node).map(|n| (node, n)),
            _ => None,
        }
    }

    /// Keeps the nodes for which `keep` is true, in order.
    pub fn retain_nodes(&mut self, mut keep: impl FnMut(NodeId, &Node) -> bool) {
        self.nodes.retain(|(id, node)| keep(*id, node));
    }

    /// Turns `value` into a constant (constant folding). Its producer keeps its other outputs.
    pub fn make_constant(&mut self, value: ValueId, tensor: Tensor) {
        let entry = self.value_mut(value);
        entry.ty = Some(tensor.tensor_type());
        entry.definition = Definition::Constant(Constant {
            tensor: Arc::new(tensor),
            weight: None,
        });
    }

    /// Rewrites every use of `old` (node inputs and graph outputs) to `new`.
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        for (_, node) in self.nodes.iter_mut() {
            for input in node.inputs.iter_mut() {
                if *input == old {
                    *input = new;
                }
            }
        }
        for output in self.outputs.iter_mut() {
            if output.value == old {
                output.value = new;
            }
        }
    }

    /// How many node inputs and graph outputs read each value.
    pub fn use_counts(&self) -> HashMap<ValueId, usize> {
        let mut counts = HashMap::new();
        for (_, node) in &self.nodes {
            for &input in &node.inputs {
                *counts.entry(input).or_insert(0) += 1;
            }
        }
        for output in &self.outputs {
            *counts.entry(output.value).or_insert(0) += 1;
        }
        counts
    }

    /// Replaces the node list (passes that rebuild the order use this).
    pub fn set_nodes(&mut self, nodes: Vec<(NodeId, Node)>) {
        self.nodes = nodes;
    }

    pub fn take_nodes(&mut self) -> Vec<(NodeId, Node)> {
        std::mem::take(&mut self.nodes)
    }

    /// Allocates a node id without inserting the node (for passes that rebuild the list).
    pub fn fresh_node_id(&mut self) -> NodeId {
        let id = NodeId(self.next_node);
        self.next_node += 1;
        id
    }

    /// Creates an untyped value defined by output `output_index` of `node`.
    pub fn fresh_node_output(&mut self, node: NodeId, output_index: usize, name: &str) -> ValueId {
        self.push_value(
            Definition::Node { node, output_index },
            None,
            name.to_string(),
        )
    }

    /// Whether `value` is read by the graph outputs.
    pub fn is_graph_output(&self, value: ValueId) -> bool {
        self.outputs.iter().any(|port| port.value == value)
    }
}
