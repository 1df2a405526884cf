//! Epilogue fusion: an elementwise node that is the only reader of a convolution's or matrix
//! product's result becomes a step of that producer's epilogue (bias add, batch-norm scale and
//! shift, activation, residual add), so the result is finished in registers and stored once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::PassError;
use crate::ir::{Definition, Graph, NodeId, ValueId};
use crate::ir::{Tensor, TensorType};
use crate::ops::elementwise::{BinaryKind, Unary, UnaryKind};
use crate::ops::epilogue::{operand_layout, EpilogueStep};

/// One pass in program order: each consumer that is an epilogue step (`Operator::as_epilogue_step`)
/// joins its producer's epilogue when the producer takes one (`Operator::with_epilogue_step`) and
/// the consumer is the only reader of the producer's result. A chain (conv → add → relu) folds
/// step by step, as the fused result stands for each consumer's output in turn. Linear in the
/// graph size: uses are counted once and renames applied once at the end.
pub fn fuse_epilogues(graph: &mut Graph) -> Result<(), PassError> {
    let mut uses = graph.use_counts();
    let mut graph_outputs: HashSet<ValueId> = graph.outputs.iter().map(|p| p.value).collect();
    let position: HashMap<NodeId, usize> = graph
        .nodes()
        .enumerate()
        .map(|(p, (id, _))| (id, p))
        .collect();
    // Consumer outputs now computed by their producer's fused node.
    let mut renamed: HashMap<ValueId, ValueId> = HashMap::new();
    let mut fused: HashSet<NodeId> = HashSet::new();
    let resolve = |renamed: &HashMap<ValueId, ValueId>, mut value: ValueId| {
        while let Some(&next) = renamed.get(&value) {
            value = next;
        }
        value
    };
    for consumer in graph.node_ids() {
        let Some(node) = graph.node(consumer) else {
            continue;
        };
        let Some(step) = node.op.as_epilogue_step() else {
            continue;
        };
        let inputs: Vec<ValueId> = node.inputs.iter().map(|&v| resolve(&renamed, v)).collect();
        let consumer_output = node.outputs[0];
        // (the producer's result, the extra operand), in the order to try them.
        let options: Vec<(ValueId, Option<ValueId>)> = match (&step, inputs.as_slice()) {
            (EpilogueStep::Unary(_), [x]) => vec![(*x, None)],
            (EpilogueStep::Binary(kind), [a, b]) if kind.is_commutative() => {
                vec![(*a, Some(*b)), (*b, Some(*a))]
            }
            (EpilogueStep::Binary(_), [a, b]) => vec![(*a, Some(*b))],
            _ => continue,
        };
        let Some((producer, result, operand, op)) =
            options.into_iter().find_map(|(result, operand)| {
                if uses.get(&result) != Some(&1) || graph_outputs.contains(&result) {
                    return None;
                }
                let (producer, producer_node) = graph.producer(result)?;
                let op = producer_node.op.with_epilogue_step(&step)?;
                let result_ty = graph.value(result).ty.as_ref()?;
                if graph.value(consumer_output).ty.as_ref() != Some(result_ty) {
                    return None;
                }
                if let Some(operand) = operand {
                    let operand_ty = graph.value(operand).ty.as_ref()?;
                    // The operand must line up with the result and exist when the producer runs.
                    let defined_before = match graph.value(operand).definition {
                        Definition::Node { node, .. } => position[&node] < position[&producer],
                        _ => true,
                    };
                    if operand == result
                        || operand_layout(result_ty, operand_ty).is_none()
                        || !defined_before
                    {
                        return None;
                    }
                }
                // The fused node must type as the result did: an op may refuse an operand it
                // cannot take, or a result its epilogue cannot finish (not f32).
                let fused_inputs: Vec<ValueId> = producer_node
                    .inputs
                    .iter()
                    .copied()
                    .chain(operand)
                    .collect();
                let facts = graph.input_facts(&fused_inputs)?;
                if op.infer(&facts).ok()?.as_slice() != std::slice::from_ref(result_ty) {
                    return None;
                }
                Some((producer, result, operand, op))
            })
        else {
            continue;
        };
        let consumer_name = node.name.clone();
        let output_name = graph.value(consumer_output).name.clone();
        if let Some(node) = graph.node_mut(producer) {
            node.op = op;
            node.inputs.extend(operand);
            node.name = consumer_name;
        }
        // The fused result now carries the consumer's type (identical), name and readers.
        graph.value_mut(result).name = output_name;
        uses.insert(result, uses.get(&consumer_output).copied().unwrap_or(0));
        if graph_outputs.contains(&consumer_output) {
            graph_outputs.insert(result);
        }
        renamed.insert(consumer_output, result);
        fused.insert(consumer);
    }
    graph.retain_nodes(|id, _| !fused.contains(&id));
    graph.rename_uses(&|value| resolve(&renamed, value));
    Ok(())
}

/// A zero Pad read by convolutions or valid poolings (Keras' ZeroPadding2D before a strided
/// convolution, or before ResNet's max pool), or a -inf Pad read by a valid max pool (ONNX
/// exports), folds into their explicit padding (`Operator::with_input_padding`): they read
/// around the border themselves, so the separate copy of the whole tensor goes. The Pad is left for dead-code elimination when nothing else
/// reads it.
pub fn fold_padding(graph: &mut Graph) -> Result<(), PassError> {
    let mut rewrites = Vec::new();
    for (id, node) in graph.nodes() {
        let Some(&padded) = node.inputs.first() else {
            continue;
        };
        let Some((_, pad)) = graph.producer(padded) else {
            continue;
        };
        let Some(facts) = graph.input_facts(&pad.inputs) else {
            continue;
        };
        let Some((pads, fill)) = pad.op.as_constant_padding(&facts) else {
            continue;
        };
        if let Some(op) = node.op.with_input_padding(&pads, fill) {
            rewrites.push((id, op, pad.inputs[0]));
        }
    }
    for (id, op, unpadded) in rewrites {
        if let Some(node) = graph.node_mut(id) {
            node.op = op;
            node.inputs[0] = unpadded;
        }
    }
    Ok(())
}

/// `x * sigmoid(x)` (how converted graphs spell swish / SiLU) becomes one `swish` node, and
/// `maximum(minimum(relu(x), 6), 0)` (Keras' `ReLU(max_value=6)`) one `relu6` node, which a
/// producing convolution can then finish in its epilogue with fewer steps and operands. The
/// nodes they replace are left for dead-code elimination when nothing else reads them.
pub fn form_activations(graph: &mut Graph) -> Result<(), PassError> {
    form_swish(graph);
    form_clipped_relu6(graph);
    Ok(())
}

/// `maximum(minimum(relu(x), 6), 0)`, either operand order, the inner results read only there:
/// `relu6(x)` (relu's result is never below 0, so the maximum changes nothing).
fn form_clipped_relu6(graph: &mut Graph) {
    let uses = graph.use_counts();
    let scalar = |value: ValueId, wanted: f32| {
        graph.constant(value).is_some_and(|constant| {
            constant.tensor.element_count() == 1
                && constant.tensor.dtype() == crate::ir::DType::F32
                && constant.tensor.to_f32_vec()[0] == wanted
        })
    };
    // The other operand of a binary `kind` node whose one operand is the scalar `wanted`.
    let beside = |node: &crate::ir::Node, kind: BinaryKind, wanted: f32| -> Option<ValueId> {
        if node.op.as_epilogue_step() != Some(EpilogueStep::Binary(kind)) {
            return None;
        }
        let [a, b] = <[ValueId; 2]>::try_from(node.inputs.as_slice()).ok()?;
        if scalar(b, wanted) {
            Some(a)
        } else if scalar(a, wanted) {
            Some(b)
        } else {
            None
        }
    };
    // The same for the single-use node producing `value`.
    let through = |value: ValueId, kind: BinaryKind, wanted: f32| -> Option<ValueId> {
        let (_, node) = graph.producer(value)?;
        let single = uses.get(&value) == Some(&1) && !graph.is_graph_output(value);
        single.then(|| beside(node, kind, wanted)).flatten()
    };
    let mut rewrites = Vec::new();
    for (id, node) in graph.nodes() {
        let Some(clipped) = beside(node, BinaryKind::Maximum, 0.0) else {
            continue;
        };
        let Some(relu) = through(clipped, BinaryKind::Minimum, 6.0) else {
            continue;
        };
        let Some((_, producer)) = graph.producer(relu) else {
            continue;
        };
        let is_relu = matches!(producer.op.as_epilogue_step(), Some(EpilogueStep::Unary(unary)) if unary.kind == UnaryKind::Relu);
        let single = uses.get(&relu) == Some(&1) && !graph.is_graph_output(relu);
        let x = producer.inputs[0];
        if is_relu && single && graph.value(x).ty == graph.value(node.outputs[0]).ty {
            rewrites.push((id, x));
        }
    }
    for (id, x) in rewrites {
        if let Some(node) = graph.node_mut(id) {
            node.op = Arc::new(Unary::new(UnaryKind::Relu6));
            node.inputs = vec![x];
        }
    }
}

/// `x * sigmoid(x)` becomes `swish(x)`.
fn form_swish(graph: &mut Graph) {
    let is_mul = |step: Option<EpilogueStep>| step == Some(EpilogueStep::Binary(BinaryKind::Mul));
    let is_sigmoid = |step: Option<EpilogueStep>| matches!(step, Some(EpilogueStep::Unary(unary)) if unary.kind == UnaryKind::Sigmoid);
    let mut rewrites = Vec::new();
    for (id, node) in graph.nodes() {
        if !is_mul(node.op.as_epilogue_step()) || node.inputs.len() != 2 {
            continue;
        }
        for (x, other) in [
            (node.inputs[0], node.inputs[1]),
            (node.inputs[1], node.inputs[0]),
        ] {
            let is_sigmoid_of_x = graph.producer(other).is_some_and(|(_, producer)| {
                producer.inputs.first() == Some(&x) && is_sigmoid(producer.op.as_epilogue_step())
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
}

/// A squeeze-and-excite multiply `x * s` (`s` one scale per channel of `x`) whose only reader is
/// a convolution or matrix product that is linear in those channels
/// (`Operator::channel_scale_operand`) is moved onto that reader's filter: `conv(x * s, W)` is
/// `conv(x, W * s)` with `W` scaled along its input channels. Done only where the filter is
/// smaller than `x` (early, large blocks of EfficientNet: 96×24 filter values to scale instead of
/// 56×56×96 activations); the multiply is left for dead-code elimination. Rounding differs from
/// the original order by an ulp or so per product.
pub fn fold_channel_scales(graph: &mut Graph) -> Result<(), PassError> {
    let uses = graph.use_counts();
    let mut rewrites = Vec::new();
    for (id, node) in graph.nodes() {
        let types = graph.input_types(node);
        let Some((operand, axis)) = types.and_then(|t| node.op.channel_scale_operand(&t)) else {
            continue;
        };
        let data = node.inputs[0];
        let Some((_, multiply)) = graph.producer(data) else {
            continue;
        };
        let is_mul = multiply.op.as_epilogue_step() == Some(EpilogueStep::Binary(BinaryKind::Mul));
        if !is_mul || multiply.inputs.len() != 2 || uses.get(&data) != Some(&1) {
            continue;
        }
        let (Some(scaled), Some(filter)) = (
            graph.value(data).ty.as_ref(),
            graph.value(node.inputs[operand]).ty.as_ref(),
        ) else {
            continue;
        };
        let [a, b] = [multiply.inputs[0], multiply.inputs[1]];
        for (x, scale) in [(a, b), (b, a)] {
            let (Some(x_type), Some(scale_type)) =
                (graph.value(x).ty.as_ref(), graph.value(scale).ty.as_ref())
            else {
                continue;
            };
            let channels = scaled.shape.last().copied().unwrap_or(0);
            let per_channel = scale_type.dtype == crate::ir::DType::F32
                && scale_type.shape.last() == Some(&channels)
                && scale_type.element_count() == channels
                && scale_type.rank() <= scaled.rank();
            if x_type == scaled
                && per_channel
                && filter.dtype == crate::ir::DType::F32
                && filter.shape.get(axis) == Some(&channels)
                && filter.element_count() < scaled.element_count()
            {
                // The scale as `[C, 1, ...]`, broadcasting along the filter's later axes.
                let mut shape = vec![channels];
                shape.resize(filter.rank() - axis, 1);
                rewrites.push((id, operand, x, scale, shape, filter.clone()));
                break;
            }
        }
    }
    for (id, operand, x, scale, shape, filter) in rewrites {
        let Some(node) = graph.node(id) else {
            continue;
        };
        let name = node.name.clone();
        let weights = node.inputs[operand];
        let target = Tensor::from_i64(vec![shape.len()], shape.iter().map(|&d| d as i64).collect())
            .cast(crate::ir::DType::I32);
        let target = graph.add_constant(&format!("{name}/channel_scale/shape"), target, None);
        let reshape = Arc::new(crate::ops::shape::view::Reshape {
            mode: crate::ops::shape::view::ReshapeMode::FromOperand,
        });
        let reshaped = graph.insert_node_before(
            id,
            &format!("{name}/channel_scale/reshape"),
            reshape,
            vec![scale, target],
            vec![TensorType::new(crate::ir::DType::F32, shape)],
        );
        let reshaped = graph.node(reshaped).map(|n| n.outputs[0]);
        let multiply = Arc::new(crate::ops::elementwise::Binary::new(BinaryKind::Mul));
        let Some(reshaped) = reshaped else { continue };
        let scaled = graph.insert_node_before(
            id,
            &format!("{name}/channel_scale"),
            multiply,
            vec![weights, reshaped],
            vec![filter],
        );
        let Some(scaled) = graph.node(scaled).map(|n| n.outputs[0]) else {
            continue;
        };
        if let Some(node) = graph.node_mut(id) {
            node.inputs[0] = x;
            node.inputs[operand] = scaled;
        }
    }
    Ok(())
}
