//! Convolution chains: a regular convolution whose only reader is a depthwise convolution
//! becomes one `conv2d_chain` node, computed row by row so that the intermediate tensor never
//! leaves the cache (`ops::conv_chain` says when a pair qualifies and how it runs).

use std::collections::HashSet;
use std::sync::Arc;

use super::PassError;
use crate::ir::{Graph, NodeId, TensorType, ValueId};
use crate::ops::conv::Conv2d;
use crate::ops::conv_chain::ConvChain;
use crate::ops::Operator;

/// Each depthwise convolution (in program order) whose input is the single-use result of a
/// regular convolution takes that convolution in: the chain node stands where the depthwise
/// one stood, with the producer's inputs then its own filter and epilogue operands, and the
/// producer goes. Every input was defined before the producer or before the depthwise node,
/// so before the chain.
pub fn chain_convolutions(graph: &mut Graph) -> Result<(), PassError> {
    let uses = graph.use_counts();
    let mut rewrites: Vec<(NodeId, Arc<dyn Operator>, Vec<ValueId>)> = Vec::new();
    let mut producers: HashSet<NodeId> = HashSet::new();
    for (id, node) in graph.nodes() {
        let Some(consumer) = node.op.as_any().downcast_ref::<Conv2d>() else {
            continue;
        };
        let Some(&middle) = node.inputs.first() else {
            continue;
        };
        if uses.get(&middle) != Some(&1) || graph.is_graph_output(middle) {
            continue;
        }
        let Some((producer_id, producer_node)) = graph.producer(middle) else {
            continue;
        };
        let Some(producer) = producer_node.op.as_any().downcast_ref::<Conv2d>() else {
            continue;
        };
        let inputs: Vec<ValueId> = producer_node
            .inputs
            .iter()
            .chain(&node.inputs[1..])
            .copied()
            .collect();
        let types: Option<Vec<&TensorType>> = inputs
            .iter()
            .map(|&value| graph.value(value).ty.as_ref())
            .collect();
        let Some(chain) = types.and_then(|types| ConvChain::new(producer, consumer, &types)) else {
            continue;
        };
        // The chain must type as the depthwise result did.
        let facts = graph.input_facts(&inputs);
        let typed = facts.and_then(|facts| chain.infer(&facts).ok());
        let result = graph.value(node.outputs[0]).ty.as_ref();
        if typed.as_deref() != result.map(std::slice::from_ref) {
            continue;
        }
        producers.insert(producer_id);
        rewrites.push((id, Arc::new(chain), inputs));
    }
    for (id, op, inputs) in rewrites {
        if let Some(node) = graph.node_mut(id) {
            node.op = op;
            node.inputs = inputs;
        }
    }
    graph.retain_nodes(|id, _| !producers.contains(&id));
    Ok(())
}
