//! Convolution chains: a regular convolution whose only reader is a depthwise convolution
//! becomes one `conv2d_chain` node, and a pointwise convolution that alone reads the chain's
//! result joins it, so that the chain runs row by row and its intermediate tensors never leave
//! the cache (`ops::conv_chain` says when stages qualify and how they run). A mean over rows and
//! columns of a chain's result (a squeeze-and-excite block's squeeze) becomes the chain's second
//! output, taken row by row as the chain writes them.

use std::collections::HashSet;
use std::sync::Arc;

use super::PassError;
use crate::ir::{Definition, Graph, NodeId, TensorType, ValueId};
use crate::ops::conv::Conv2d;
use crate::ops::conv_chain::{ChannelMean, ConvChain};
use crate::ops::reduce::{Reduce, ReduceKind};
use crate::ops::Operator;

/// Two sweeps in program order. First, each convolution whose input is the single-use result of
/// a regular convolution takes that convolution in (if the pair qualifies); then each
/// convolution whose input is the single-use result of such a chain joins it. The merged node
/// stands where the reader stood, with the earlier node's inputs then its own filter and
/// epilogue operands, and the earlier node goes: every input was defined before one of the
/// two, so before the merged node.
pub fn chain_convolutions(graph: &mut Graph) -> Result<(), PassError> {
    merge_into_readers(graph, &|earlier, reader, types| {
        let producer = earlier.as_any().downcast_ref::<Conv2d>()?;
        ConvChain::new(producer, reader, types)
    });
    merge_into_readers(graph, &|earlier, reader, types| {
        let chain = earlier.as_any().downcast_ref::<ConvChain>()?;
        chain.with_pointwise(reader, types)
    });
    absorb_means(graph);
    Ok(())
}

/// Each mean over axes 1 and 2 of a chain's result becomes that chain's second output (one
/// mean per chain): the mean's value is redefined as the chain's output 1 and its node goes.
/// The chain stands before the mean, so before every reader of it.
fn absorb_means(graph: &mut Graph) {
    let mut rewrites: Vec<(NodeId, Arc<dyn Operator>, ValueId)> = Vec::new();
    let mut absorbed: HashSet<NodeId> = HashSet::new();
    for (id, node) in graph.nodes() {
        let Some(reduce) = node.op.as_any().downcast_ref::<Reduce>() else {
            continue;
        };
        if reduce.kind != ReduceKind::Mean || reduce.axes != [1, 2] || node.outputs.len() != 1 {
            continue;
        }
        let Some((chain_id, producer)) = node.inputs.first().and_then(|&x| graph.producer(x))
        else {
            continue;
        };
        let Some(chain) = producer.op.as_any().downcast_ref::<ConvChain>() else {
            continue;
        };
        if producer.outputs.len() != 1 || rewrites.iter().any(|r| r.0 == chain_id) {
            continue;
        }
        let mean = ChannelMean {
            keep_dims: reduce.keep_dims,
        };
        let Some(chain) = chain.with_mean(mean) else {
            continue;
        };
        // The chain must type as before, plus the mean as the reduction typed it.
        let expected: Option<Vec<TensorType>> = [producer.outputs[0], node.outputs[0]]
            .iter()
            .map(|&value| graph.value(value).ty.clone())
            .collect();
        let facts = graph.input_facts(&producer.inputs);
        let typed = facts.and_then(|facts| chain.infer(&facts).ok());
        if typed.is_none() || typed != expected {
            continue;
        }
        absorbed.insert(id);
        rewrites.push((chain_id, Arc::new(chain), node.outputs[0]));
    }
    for (chain_id, op, mean) in rewrites {
        if let Some(node) = graph.node_mut(chain_id) {
            node.op = op;
            node.outputs.push(mean);
        }
        graph.value_mut(mean).definition = Definition::Node {
            node: chain_id,
            output_index: 1,
        };
    }
    graph.retain_nodes(|id, _| !absorbed.contains(&id));
}

/// What a convolution and the node producing its input 0 merge into, given the merged node's
/// input types.
type Merge = dyn Fn(&dyn Operator, &Conv2d, &[&TensorType]) -> Option<ConvChain>;

/// One sweep: each convolution reading the single-use, non-output result of a node `merge`
/// accepts becomes the merged node.
fn merge_into_readers(graph: &mut Graph, merge: &Merge) {
    let uses = graph.use_counts();
    let mut rewrites: Vec<(NodeId, Arc<dyn Operator>, Vec<ValueId>)> = Vec::new();
    let mut merged: HashSet<NodeId> = HashSet::new();
    for (id, node) in graph.nodes() {
        let Some(reader) = node.op.as_any().downcast_ref::<Conv2d>() else {
            continue;
        };
        let Some(&middle) = node.inputs.first() else {
            continue;
        };
        if uses.get(&middle) != Some(&1) || graph.is_graph_output(middle) {
            continue;
        }
        let Some((earlier_id, earlier)) = graph.producer(middle) else {
            continue;
        };
        if merged.contains(&earlier_id) {
            continue;
        }
        let inputs: Vec<ValueId> = earlier
            .inputs
            .iter()
            .chain(&node.inputs[1..])
            .copied()
            .collect();
        let types: Option<Vec<&TensorType>> = inputs
            .iter()
            .map(|&value| graph.value(value).ty.as_ref())
            .collect();
        let Some(chain) = types.and_then(|types| merge(earlier.op.as_ref(), reader, &types)) else {
            continue;
        };
        // The merged node must type as the reader's result did.
        let facts = graph.input_facts(&inputs);
        let typed = facts.and_then(|facts| chain.infer(&facts).ok());
        let result = graph.value(node.outputs[0]).ty.as_ref();
        if typed.as_deref() != result.map(std::slice::from_ref) {
            continue;
        }
        merged.insert(earlier_id);
        rewrites.push((id, Arc::new(chain), inputs));
    }
    for (id, op, inputs) in rewrites {
        if let Some(node) = graph.node_mut(id) {
            node.op = op;
            node.inputs = inputs;
        }
    }
    graph.retain_nodes(|id, _| !merged.contains(&id));
}
