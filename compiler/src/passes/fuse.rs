//! Epilogue fusion: an elementwise node that is the only reader of a convolution's or matrix
//! product's result becomes a step of that producer's epilogue (bias add, batch-norm scale and
//! shift, activation, residual add), so the result is finished in registers and stored once.

use std::collections::HashMap;
use std::sync::Arc;

use super::PassError;
use crate::ir::{Definition, Graph, NodeId, ValueId};
use crate::ops::conv::Conv2d;
use crate::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use crate::ops::epilogue::{operand_layout, Epilogue, EpilogueStep};
use crate::ops::matmul::MatMul;
use crate::ops::{downcast, Operator};

/// Binary kinds an epilogue applies as `result <kind> operand`.
const FUSABLE_BINARY: &[BinaryKind] = &[
    BinaryKind::Add,
    BinaryKind::Sub,
    BinaryKind::Mul,
    BinaryKind::Div,
    BinaryKind::DivNoNan,
    BinaryKind::Maximum,
    BinaryKind::Minimum,
    BinaryKind::Prelu,
];
/// Commutative kinds may take the producer's result on either side.
const COMMUTATIVE: &[BinaryKind] = &[
    BinaryKind::Add,
    BinaryKind::Mul,
    BinaryKind::Maximum,
    BinaryKind::Minimum,
];
const FUSABLE_UNARY: &[UnaryKind] = &[
    UnaryKind::Swish,
    UnaryKind::Relu,
    UnaryKind::Relu6,
    UnaryKind::LeakyRelu,
    UnaryKind::Sigmoid,
    UnaryKind::Tanh,
    UnaryKind::Elu,
];

/// The producer's op with one more epilogue step, if it takes epilogues.
fn with_step(op: &dyn Operator, step: EpilogueStep) -> Option<Arc<dyn Operator>> {
    let extend = |epilogue: &Epilogue| Epilogue {
        steps: epilogue
            .steps
            .iter()
            .cloned()
            .chain([step.clone()])
            .collect(),
    };
    if let Some(conv) = downcast::<Conv2d>(op) {
        return Some(Arc::new(Conv2d {
            epilogue: extend(&conv.epilogue),
            ..conv.clone()
        }));
    }
    if let Some(matmul) = downcast::<MatMul>(op) {
        return Some(Arc::new(MatMul {
            epilogue: extend(&matmul.epilogue),
            ..matmul.clone()
        }));
    }
    None
}

pub fn fuse_epilogues(graph: &mut Graph) -> Result<(), PassError> {
    loop {
        let Some((producer, consumer, step, operand)) = find_candidate(graph) else {
            return Ok(());
        };
        let (Some(producer_node), Some(consumer_node)) =
            (graph.node(producer), graph.node(consumer))
        else {
            return Ok(());
        };
        let Some(op) = with_step(producer_node.op.as_ref(), step) else {
            return Ok(());
        };
        let result = producer_node.outputs[0];
        let consumer_output = consumer_node.outputs[0];
        let consumer_name = consumer_node.name.clone();
        if let Some(node) = graph.node_mut(producer) {
            node.op = op;
            if let Some(operand) = operand {
                node.inputs.push(operand);
            }
            node.name = consumer_name;
        }
        graph.retain_nodes(|id, _| id != consumer);
        graph.replace_all_uses(consumer_output, result);
        // The fused result now carries the consumer's type (identical) and name.
        graph.value_mut(result).name = graph.value(consumer_output).name.clone();
    }
}

/// Finds (producer, consumer, step, extra operand) for the first fusable pair in order.
fn find_candidate(graph: &Graph) -> Option<(NodeId, NodeId, EpilogueStep, Option<ValueId>)> {
    let uses = graph.use_counts();
    let position: HashMap<NodeId, usize> = graph
        .nodes()
        .enumerate()
        .map(|(p, (id, _))| (id, p))
        .collect();
    let defined_before = |value: ValueId, limit: usize| match graph.value(value).definition {
        Definition::Node { node, .. } => position.get(&node).is_some_and(|&p| p < limit),
        _ => true,
    };
    for (consumer, node) in graph.nodes() {
        let op = node.op.as_ref();
        // (step, the producer's result, the extra operand), in the order to try them.
        let mut options: Vec<(EpilogueStep, ValueId, Option<ValueId>)> = Vec::new();
        if let Some(unary) = downcast::<Unary>(op) {
            if FUSABLE_UNARY.contains(&unary.kind) {
                options.push((EpilogueStep::Unary(unary.clone()), node.inputs[0], None));
            }
        } else if let Some(binary) = downcast::<Binary>(op) {
            if FUSABLE_BINARY.contains(&binary.kind) && node.inputs.len() == 2 {
                let step = EpilogueStep::Binary(binary.kind);
                options.push((step.clone(), node.inputs[0], Some(node.inputs[1])));
                if COMMUTATIVE.contains(&binary.kind) {
                    options.push((step, node.inputs[1], Some(node.inputs[0])));
                }
            }
        }
        for (step, result, operand) in options {
            if !is_epilogue_producer(graph, result)
                || uses.get(&result).copied() != Some(1)
                || graph.is_graph_output(result)
            {
                continue;
            }
            let Some((producer, producer_node)) = graph.producer(result) else {
                continue;
            };
            if with_step(producer_node.op.as_ref(), step.clone()).is_none() {
                continue;
            }
            if let Some(operand) = operand {
                let (Some(result_ty), Some(operand_ty)) = (
                    graph.value(result).ty.as_ref(),
                    graph.value(operand).ty.as_ref(),
                ) else {
                    continue;
                };
                let output_ty = graph.value(node.outputs[0]).ty.as_ref();
                if operand == result
                    || operand_layout(result_ty, operand_ty).is_none()
                    || output_ty != Some(result_ty)
                {
                    continue;
                }
                // The operand must exist when the producer runs.
                if !defined_before(operand, position[&producer]) {
                    continue;
                }
            }
            return Some((producer, consumer, step, operand));
        }
    }
    None
}

fn is_epilogue_producer(graph: &Graph, value: ValueId) -> bool {
    graph.producer(value).is_some_and(|(_, node)| {
        downcast::<Conv2d>(node.op.as_ref()).is_some()
            || downcast::<MatMul>(node.op.as_ref()).is_some()
    })
}

/// `x * sigmoid(x)` (how converted graphs spell swish / SiLU) becomes one `swish` node, which a
/// producing convolution can then finish in its epilogue. The sigmoid is left for dead-code
/// elimination when nothing else reads it.
pub fn form_activations(graph: &mut Graph) -> Result<(), PassError> {
    let mut rewrites = Vec::new();
    for (id, node) in graph.nodes() {
        let Some(binary) = downcast::<Binary>(node.op.as_ref()) else {
            continue;
        };
        if binary.kind != BinaryKind::Mul || node.inputs.len() != 2 {
            continue;
        }
        for (x, other) in [
            (node.inputs[0], node.inputs[1]),
            (node.inputs[1], node.inputs[0]),
        ] {
            let is_sigmoid_of_x = graph.producer(other).is_some_and(|(_, producer)| {
                producer.inputs.first() == Some(&x)
                    && downcast::<Unary>(producer.op.as_ref())
                        .is_some_and(|u| u.kind == UnaryKind::Sigmoid)
            });
            if is_sigmoid_of_x && graph.value(x).ty == graph.value(node.outputs[0]).ty {
                rewrites.push((id, x));
                break;
            }
        }
    }
    for (id, x) in rewrites {
        if let Some(node) = graph.node_mut(id) {
            node.op = Arc::new(Unary::new(UnaryKind::Swish));
            node.inputs = vec![x];
        }
    }
    Ok(())
}
