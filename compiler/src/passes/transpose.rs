//! Transpose sinking: graphs converted from NCHW frameworks wrap every convolution in a pair of
//! transposes (`NCHW → NHWC`, conv, `NHWC → NCHW`), with activations and pads between one
//! convolution's closing transpose and the next one's opening transpose. Moved down past the
//! elementwise ops and pads between them, each closing transpose meets the next opening one,
//! and the two cancel: the activations and pads then run in NHWC, where later passes fold them
//! into the convolutions (`fold_padding`, `fuse_epilogues`).

use std::collections::HashMap;
use std::sync::Arc;

use super::PassError;
use crate::ir::{Graph, NodeId, Tensor, TensorData, TensorType, ValueId};
use crate::ops::elementwise::Unary;
use crate::ops::shape::{Concat, Pad, Transpose};
use crate::ops::Operator;

/// Repeats, until nothing changes, for each transpose whose result has one reader and is not a
/// graph output:
/// - the reader is a transpose undoing it: the reader's readers read the first one's input;
/// - the reader is a unary elementwise op or a constant pad: the two swap places (the op reads
///   the transpose's input, a pad with its paddings permuted; the transpose reads the op's
///   result), so the transpose moves one node down;
/// - the reader is a concatenation of transposes by the same permutation, each read only
///   there: the inputs are concatenated along the permuted axis, and transposed once after.
///
/// A transpose with several readers is first copied for each reader that, through unary ops
/// and pads, reaches a transpose undoing it, when at most one other reader is left: the copies
/// cancel, so no more transposing is done than before.
///
/// Swapping keeps both nodes where they were in program order (the earlier one takes the op,
/// the later one the transpose), so every operand is still defined before its reader.
pub fn sink_transposes(graph: &mut Graph) -> Result<(), PassError> {
    // Each round moves a transpose one node down or removes a pair: bounded by the graph size.
    for _ in 0..=graph.node_count() {
        if !sink_one(graph) {
            break;
        }
    }
    Ok(())
}

/// A transpose's input, permutation value and permutation.
fn transpose_of(graph: &Graph, id: NodeId) -> Option<(ValueId, ValueId, Vec<usize>)> {
    let node = graph.node(id)?;
    node.op.as_any().downcast_ref::<Transpose>()?;
    let (&input, &perm) = (node.inputs.first()?, node.inputs.get(1)?);
    let values = graph.constant(perm)?.tensor.to_i64_vec();
    let rank = graph.value(input).ty.as_ref()?.rank();
    let perm: Option<Vec<usize>> = values
        .iter()
        .map(|&axis| usize::try_from(axis).ok().filter(|&axis| axis < rank))
        .collect();
    let perm = perm?;
    let mut seen = vec![false; rank];
    for &axis in &perm {
        if std::mem::replace(&mut seen[axis], true) {
            return None;
        }
    }
    (perm.len() == rank).then_some((input, node.inputs[1], perm))
}

/// One rewrite, if any applies.
fn sink_one(graph: &mut Graph) -> bool {
    let uses = graph.use_counts();
    let ids = graph.node_ids();
    for id in ids {
        let Some((input, perm_value, perm)) = transpose_of(graph, id) else {
            continue;
        };
        let result = graph.node(id).map(|node| node.outputs[0]);
        let Some(result) = result else { continue };
        if uses.get(&result).is_some_and(|&n| n > 1) && copy_for_readers(graph, id, &perm) {
            return true;
        }
        if uses.get(&result) != Some(&1) || graph.is_graph_output(result) {
            continue;
        }
        let Some(reader) = reader_of(graph, result) else {
            continue;
        };
        if concatenate_first(graph, reader, &perm) {
            return true;
        }
        if let Some((_, _, undo)) = transpose_of(graph, reader) {
            if undoes(&perm, &undo) {
                let undone = graph.node(reader).map(|node| node.outputs[0]);
                if let Some(undone) = undone {
                    graph.rename_uses(&|value| if value == undone { input } else { value });
                    graph.retain_nodes(|node, _| node != id && node != reader);
                    return true;
                }
            }
            continue;
        }
        if swap(graph, (id, input, perm_value, &perm), reader) {
            return true;
        }
    }
    false
}

/// The first node (in program order) reading `value`.
fn reader_of(graph: &Graph, value: ValueId) -> Option<NodeId> {
    graph
        .nodes()
        .find(|(_, node)| node.inputs.contains(&value))
        .map(|(reader, _)| reader)
}

/// Whether a transpose by `undo` undoes one by `perm`: `transpose(transpose(x, perm), undo)`
/// reads x's axis `perm[undo[k]]` at axis k.
fn undoes(perm: &[usize], undo: &[usize]) -> bool {
    undo.len() == perm.len() && (0..perm.len()).all(|k| perm[undo[k]] == k)
}

/// Whether a transpose by `perm` read by `reader` would meet a transpose undoing it, through
/// single-use unary ops and pads only.
fn cancels_below(
    graph: &Graph,
    uses: &HashMap<ValueId, usize>,
    reader: NodeId,
    perm: &[usize],
) -> bool {
    let mut node = reader;
    for _ in 0..graph.node_count() {
        if let Some((_, _, undo)) = transpose_of(graph, node) {
            return undoes(perm, &undo);
        }
        let Some(current) = graph.node(node) else {
            return false;
        };
        let unary =
            current.op.as_any().downcast_ref::<Unary>().is_some() && current.inputs.len() == 1;
        let pad = current.op.as_any().downcast_ref::<Pad>().is_some();
        let result = current.outputs[0];
        if !(unary || pad) || uses.get(&result) != Some(&1) || graph.is_graph_output(result) {
            return false;
        }
        match reader_of(graph, result) {
            Some(next) => node = next,
            None => return false,
        }
    }
    false
}

/// Gives each reader of transpose `id`'s result that would cancel it (see
/// [`cancels_below`]) a copy of its own, when at most one other reader (a graph output counts
/// as one) is left.
fn copy_for_readers(graph: &mut Graph, id: NodeId, perm: &[usize]) -> bool {
    let uses = graph.use_counts();
    let Some(node) = graph.node(id) else {
        return false;
    };
    let (result, inputs, name) = (node.outputs[0], node.inputs.clone(), node.name.clone());
    let readers: Vec<NodeId> = graph
        .nodes()
        .filter(|(_, node)| node.inputs.contains(&result))
        .map(|(reader, _)| reader)
        .collect();
    let (cancelling, others): (Vec<NodeId>, Vec<NodeId>) = readers
        .into_iter()
        .partition(|&reader| cancels_below(graph, &uses, reader, perm));
    let left = others.len() + usize::from(graph.is_graph_output(result));
    let Some(ty) = graph.value(result).ty.clone() else {
        return false;
    };
    if cancelling.is_empty() || left > 1 {
        return false;
    }
    for (index, reader) in cancelling.into_iter().enumerate() {
        let copy = graph.insert_node_before(
            reader,
            &format!("{name}/copy{index}"),
            Arc::new(Transpose),
            inputs.clone(),
            vec![ty.clone()],
        );
        let Some(copied) = graph.node(copy).map(|node| node.outputs[0]) else {
            return false;
        };
        if let Some(node) = graph.node_mut(reader) {
            for input in node.inputs.iter_mut().filter(|input| **input == result) {
                *input = copied;
            }
        }
    }
    true
}

/// Concatenation `reader` of transposes by `perm`, each read only there, becomes the
/// concatenation of their inputs along the permuted axis (a new node just before it) and one
/// transpose of that (the reader's node).
fn concatenate_first(graph: &mut Graph, reader: NodeId, perm: &[usize]) -> bool {
    let uses = graph.use_counts();
    let Some(node) = graph.node(reader) else {
        return false;
    };
    let Some(concat) = node.op.as_any().downcast_ref::<Concat>() else {
        return false;
    };
    let Ok(axis) = crate::ops::normalize_axis(concat.axis, perm.len()) else {
        return false;
    };
    if concat.pack || node.inputs.is_empty() {
        return false;
    }
    let mut sources = Vec::new();
    let mut perm_value = None;
    for &input in &node.inputs {
        let producer = graph.producer(input).map(|(id, _)| id);
        let transpose = producer.and_then(|id| transpose_of(graph, id));
        match transpose {
            Some((source, value, other)) if other == perm && uses.get(&input) == Some(&1) => {
                sources.push(source);
                perm_value.get_or_insert(value);
            }
            _ => return false,
        }
    }
    let (Some(perm_value), name) = (perm_value, node.name.clone()) else {
        return false;
    };
    let joined = Arc::new(Concat {
        axis: perm[axis] as i64,
        pack: false,
    });
    let Some(joined_type) = graph
        .input_facts(&sources)
        .and_then(|facts| joined.infer(&facts).ok())
        .and_then(|types| types.into_iter().next())
    else {
        return false;
    };
    // Transposed, it must be what the reader computed.
    let result = graph.node(reader).map(|node| node.outputs[0]);
    let result_type = result.and_then(|value| graph.value(value).ty.as_ref());
    if result_type != Some(&transposed(&joined_type, perm)) {
        return false;
    }
    let concat = graph.insert_node_before(
        reader,
        &format!("{name}/before_transpose"),
        joined,
        sources,
        vec![joined_type],
    );
    let Some(joined) = graph.node(concat).map(|node| node.outputs[0]) else {
        return false;
    };
    if let Some(node) = graph.node_mut(reader) {
        node.op = Arc::new(Transpose);
        node.inputs = vec![joined, perm_value];
    }
    true
}

/// Swaps transpose `id` (of `input` by `perm`) with its only reader when that is a unary
/// elementwise op or a constant pad, if the swapped nodes type as the originals did. Nothing
/// changes in the graph until both are known to.
fn swap(
    graph: &mut Graph,
    (id, input, perm_value, perm): (NodeId, ValueId, ValueId, &[usize]),
    reader: NodeId,
) -> bool {
    let Some(node) = graph.node(reader) else {
        return false;
    };
    let (op, result) = (Arc::clone(&node.op), node.outputs[0]);
    let paddings_name = format!("{}/paddings_before_transpose", node.name);
    // The reader's inputs with the transpose's input first, and, for a pad, its paddings
    // permuted: along the transpose's input, axis perm[j] takes the padding of the result's
    // axis j.
    let mut moved_inputs: Vec<ValueId> = std::iter::once(input)
        .chain(node.inputs[1..].iter().copied())
        .collect();
    let paddings = if op.as_any().downcast_ref::<Unary>().is_some() && node.inputs.len() == 1 {
        None
    } else if op.as_any().downcast_ref::<Pad>().is_some() {
        let Some(paddings) = node.inputs.get(1).and_then(|&v| graph.constant(v)) else {
            return false;
        };
        let values = paddings.tensor.to_i64_vec();
        if values.len() != perm.len() * 2 {
            return false;
        }
        let mut permuted = vec![0i64; values.len()];
        for (j, &axis) in perm.iter().enumerate() {
            permuted[axis * 2] = values[j * 2];
            permuted[axis * 2 + 1] = values[j * 2 + 1];
        }
        let data = match &paddings.tensor.data {
            TensorData::I32(_) => TensorData::I32(permuted.iter().map(|&v| v as i32).collect()),
            TensorData::I64(_) => TensorData::I64(permuted),
            _ => return false,
        };
        let shape = paddings.tensor.shape.clone();
        Some(Tensor { shape, data })
    } else {
        return false;
    };
    // The op on the transpose's input, then the transpose of its result: the reader's type.
    let Some(moved_type) = graph.input_facts(&moved_inputs).and_then(|mut facts| {
        // (The permuted paddings have the original's type.)
        if let Some(paddings) = &paddings {
            facts.constants[1] = Some(paddings);
        }
        op.infer(&facts).ok()?.into_iter().next()
    }) else {
        return false;
    };
    if graph.value(result).ty.as_ref() != Some(&transposed(&moved_type, perm)) {
        return false;
    }
    let Some(transposed_value) = graph.node(id).map(|node| node.outputs[0]) else {
        return false;
    };
    if let Some(paddings) = paddings {
        moved_inputs[1] = graph.add_constant(&paddings_name, paddings, None);
    }
    graph.value_mut(transposed_value).ty = Some(moved_type);
    // The names go with the ops (profiles and errors name the op the node runs).
    let names = [id, reader].map(|node| graph.node(node).map(|n| n.name.clone()));
    if let Some(node) = graph.node_mut(id) {
        node.op = op;
        node.inputs = moved_inputs;
        node.name = names[1].clone().unwrap_or_default();
    }
    if let Some(node) = graph.node_mut(reader) {
        node.op = Arc::new(Transpose);
        node.inputs = vec![transposed_value, perm_value];
        node.name = names[0].clone().unwrap_or_default();
    }
    true
}

/// `ty` transposed by `perm`: axis k is `ty`'s axis `perm[k]`.
fn transposed(ty: &TensorType, perm: &[usize]) -> TensorType {
    TensorType::new(ty.dtype, perm.iter().map(|&axis| ty.shape[axis]).collect())
}
