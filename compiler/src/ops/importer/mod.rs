//! What an op's importer works with: the importer state ([`Importer`]), typed reads of NodeDef
//! attributes ([`NodeAttributes`]) and [`ImportError`]. A leaf: it knows the IR graph and the
//! [`Operator`] trait, nothing of the graph importer (`crate::import`) that calls the ops.

mod attributes;

use std::collections::BTreeMap;
use std::sync::Arc;

use tfjsc_proto::tensorflow::NodeDef;

pub use attributes::{
    data_type, dtype_from_tf, shape_dims, tensor_from_proto, NodeAttributes,
    MAX_INLINE_CONSTANT_BYTES,
};

use crate::ir::{Graph, Tensor, ValueId};
use crate::ops::Operator;

/// Why a graph could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("node {node:?} ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    #[error("unsupported ops ({}): {}", .0.values().sum::<usize>(), format_counts(.0))]
    UnsupportedOps(BTreeMap<String, usize>),
    #[error("{0}")]
    Graph(String),
}

fn format_counts(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(op, count)| format!("{op} ×{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Imports one TensorFlow node: its inputs already resolved to IR values.
pub type ImportFn = fn(&mut Importer, &NodeDef, &[ValueId]) -> Result<Vec<ValueId>, ImportError>;

/// The importer state handed to each op's import function.
pub struct Importer<'g> {
    pub graph: &'g mut Graph,
    /// Types and folds the graph built so far (the graph importer passes shape inference), so
    /// that [`Importer::constant_value`] can see operands that are constant only once shapes are
    /// known (a size computed from `Shape` of a dynamic-batch input, say).
    infer: Option<InferFn>,
}

/// Types and folds a partial graph; errors are left for the pipeline to report.
pub type InferFn = fn(&mut Graph);

impl<'g> Importer<'g> {
    pub fn new(graph: &'g mut Graph) -> Importer<'g> {
        Importer { graph, infer: None }
    }

    /// An importer that can fold operands computed from shapes (see [`Importer::constant_value`]).
    pub fn with_inference(graph: &'g mut Graph, infer: InferFn) -> Importer<'g> {
        Importer {
            graph,
            infer: Some(infer),
        }
    }
}

impl Importer<'_> {
    /// The value of `value` if it is a compile-time constant, directly or once the graph built
    /// so far is typed and folded (with static input shapes, `Shape` → `StridedSlice` → `Pack`
    /// chains fold). For operands an op's import needs to know, such as Conv2DBackpropInput's
    /// `input_sizes`.
    pub fn constant_value(&mut self, value: ValueId) -> Option<Arc<Tensor>> {
        if self.graph.constant(value).is_none() {
            if let Some(infer) = self.infer {
                infer(self.graph);
            }
        }
        self.graph.constant(value).map(|c| Arc::clone(&c.tensor))
    }

    pub fn error(&self, node: &NodeDef, message: impl std::fmt::Display) -> ImportError {
        node_error(node)(message.to_string())
    }

    pub fn expect_inputs(
        &self,
        node: &NodeDef,
        inputs: &[ValueId],
        count: usize,
    ) -> Result<(), ImportError> {
        if inputs.len() < count {
            return Err(self.error(
                node,
                format!("expected {count} inputs, found {}", inputs.len()),
            ));
        }
        Ok(())
    }

    /// Adds a single-output node named after the TensorFlow node.
    pub fn add(&mut self, node: &NodeDef, op: impl Operator, inputs: Vec<ValueId>) -> ValueId {
        self.add_named(&node.name, op, inputs)
    }

    pub fn add_named(&mut self, name: &str, op: impl Operator, inputs: Vec<ValueId>) -> ValueId {
        let id = self.graph.add_node(name, Arc::new(op), inputs, 1);
        self.graph
            .node(id)
            .map(|n| n.outputs[0])
            .unwrap_or(ValueId(0))
    }

    pub fn add_multiple(
        &mut self,
        node: &NodeDef,
        op: impl Operator,
        inputs: Vec<ValueId>,
        count: usize,
    ) -> Vec<ValueId> {
        let id = self.graph.add_node(&node.name, Arc::new(op), inputs, count);
        self.graph
            .node(id)
            .map(|n| n.outputs.clone())
            .unwrap_or_default()
    }

    pub fn constant(&mut self, name: &str, tensor: Tensor) -> ValueId {
        self.graph.add_constant(name, tensor, None)
    }
}

/// Turns a message about `node` into an [`ImportError`] naming it (for `map_err`).
pub fn node_error(node: &NodeDef) -> impl Fn(String) -> ImportError + Copy + '_ {
    move |message| ImportError::Node {
        node: node.name.clone(),
        op: node.op.clone(),
        message,
    }
}

/// Helpers for op modules' importer tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use tfjsc_proto::tensorflow::{attr_value, AttrValue, NodeDef};

    use crate::ir::Graph;
    use crate::ops::Operator;

    /// A NodeDef with these attributes.
    pub(crate) fn node_def(
        name: &str,
        op: &str,
        attributes: &[(&str, attr_value::Value)],
    ) -> NodeDef {
        NodeDef {
            name: name.to_string(),
            op: op.to_string(),
            attr: attributes
                .iter()
                .map(|(key, value)| {
                    (
                        key.to_string(),
                        AttrValue {
                            value: Some(value.clone()),
                        },
                    )
                })
                .collect(),
            ..NodeDef::default()
        }
    }

    /// The op of the graph's only node.
    pub(crate) fn only_op(graph: &Graph) -> Arc<dyn Operator> {
        let ops: Vec<_> = graph.nodes().map(|(_, n)| n.op.clone()).collect();
        assert_eq!(ops.len(), 1, "{ops:?}");
        ops[0].clone()
    }
}
