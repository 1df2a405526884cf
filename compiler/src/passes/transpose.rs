//! Transpose sinking: graphs converted from NCHW frameworks wrap every convolution in a pair of
//! transposes (`NCHW → NHWC`, conv, `NHWC → NCHW`), with activations and pads between one
//! convolution's closing transpose and the next one's opening transpose. Moved down past the
//! elementwise ops and pads between them, each closing transpose meets the next opening one,
//! and the two cancel: the activations and pads then run in NHWC, where later passes fold them
//! into the convolutions (`fold_padding`, `fuse_epilogues`).

use std::collections::{HashMap, HashSet};
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
///   result), so the transpose moves one node down, unless it would only come to rest at
///   another transpose (see [`Rest::Blocked`]);
/// - the reader is a concatenation of transposes by the same permutation, each read only
///   there: the inputs are concatenated along the permuted axis, and transposed once after.
///
/// A transpose with several readers is first copied for each reader that, through unary ops
/// and pads, reaches a transpose undoing it, when at most one other reader is left: the copies
/// cancel, so no more transposing is done than before.
///
/// Swapping keeps both nodes where they were in program order (the earlier one takes the op,
/// the later one the transpose), so every operand is still defined before its reader.
///
/// Each round indexes the readers once and then visits every transpose, so a round costs the
/// graph's size plus its rewrites, whatever the number of transposes (a model is untrusted: one
/// of thousands of transposes must not take minutes). What a rewrite changes waits for the
/// next round (see [`Readers`]).
pub fn sink_transposes(graph: &mut Graph) -> Result<(), PassError> {
    // Each round that changes anything removes a pair or moves a transpose down: bounded by
    // the graph size, and in practice a few rounds.
    for _ in 0..=graph.node_count() {
        if !sink_round(graph) {
            break;
        }
    }
    Ok(())
}

/// The readers of every value, in program order, as of the start of a round. A rewrite marks
/// the values whose readers or producer it changed as dirty; a dirty value reads as unknown,
/// so nothing is decided on stale facts in the same round.
struct Readers {
    readers: HashMap<ValueId, Vec<NodeId>>,
    uses: HashMap<ValueId, usize>,
    dirty: HashSet<ValueId>,
}

impl Readers {
    fn new(graph: &Graph) -> Readers {
        let mut readers: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        for (id, node) in graph.nodes() {
            for &input in &node.inputs {
                let list = readers.entry(input).or_default();
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
        }
        Readers {
            readers,
            uses: graph.use_counts(),
            dirty: HashSet::new(),
        }
    }

    /// Reads of `value` (graph outputs included), unless dirty.
    fn uses(&self, value: ValueId) -> Option<usize> {
        (!self.dirty.contains(&value)).then(|| self.uses.get(&value).copied().unwrap_or(0))
    }

    /// The nodes reading `value`, in program order, unless dirty.
    fn readers(&self, value: ValueId) -> Option<&[NodeId]> {
        if self.dirty.contains(&value) {
            return None;
        }
        Some(self.readers.get(&value).map_or(&[], Vec::as_slice))
    }

    /// The first node (in program order) reading `value`.
    fn first_reader(&self, value: ValueId) -> Option<NodeId> {
        self.readers(value)?.first().copied()
    }

    fn touch(&mut self, values: impl IntoIterator<Item = ValueId>) {
        self.dirty.extend(values);
    }
}

/// One round: every transpose visited once, sunk as far as swaps take it (a swap leaves the
/// readers as they were), other rewrites applied where their facts are clean. Removals and
/// renames are applied at the end of the round. Whether anything changed.
fn sink_round(graph: &mut Graph) -> bool {
    let mut readers = Readers::new(graph);
    let mut renamed: HashMap<ValueId, ValueId> = HashMap::new();
    let mut removed: HashSet<NodeId> = HashSet::new();
    let mut changed = false;
    for id in graph.node_ids() {
        let mut at = id;
        // Whether the transpose moves down, decided at its first step for all of them.
        let mut sinking = false;
        while !removed.contains(&at) {
            let Some((input, perm_value, perm)) = transpose_of(graph, at) else {
                break;
            };
            let Some(result) = graph.node(at).map(|node| node.outputs[0]) else {
                break;
            };
            let Some(uses) = readers.uses(result) else {
                break;
            };
            if uses > 1 {
                changed |= copy_for_readers(graph, &mut readers, at, &perm);
                break;
            }
            if uses != 1 || graph.is_graph_output(result) {
                break;
            }
            let Some(reader) = readers.first_reader(result) else {
                break;
            };
            if concatenate_first(graph, &mut readers, reader, &perm) {
                changed = true;
                break;
            }
            if let Some((_, _, undo)) = transpose_of(graph, reader) {
                let undone = graph.node(reader).map(|node| node.outputs[0]);
                if let (true, Some(undone)) = (undoes(&perm, &undo), undone) {
                    // The reader's readers read `input` (applied after the round).
                    renamed.insert(undone, input);
                    removed.extend([at, reader]);
                    readers.touch([input, result, undone]);
                    changed = true;
                }
                break;
            }
            if !sinking {
                let rest = rest_below(graph, &readers, reader, &perm);
                if !matches!(rest, Some(Rest::Cancelled | Rest::Elsewhere)) {
                    break;
                }
                sinking = true;
            }
            if !swap(graph, &mut readers, (at, input, perm_value, &perm), reader) {
                break;
            }
            changed = true;
            at = reader; // the transpose now sits at the reader's node
        }
    }
    if !renamed.is_empty() {
        // A pair may cancel into a value another pair's cancelling renames.
        let resolve = |mut value: ValueId| {
            while let Some(&next) = renamed.get(&value) {
                value = next;
            }
            value
        };
        graph.rename_uses(&resolve);
        graph.retain_nodes(|node, _| !removed.contains(&node));
    }
    changed
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

/// Whether a transpose by `undo` undoes one by `perm`: `transpose(transpose(x, perm), undo)`
/// reads x's axis `perm[undo[k]]` at axis k.
fn undoes(perm: &[usize], undo: &[usize]) -> bool {
    undo.len() == perm.len() && (0..perm.len()).all(|k| perm[undo[k]] == k)
}

/// Where a transpose moved down from `reader` through single-use unary ops and pads comes to
/// rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rest {
    /// At a transpose undoing it: the two cancel.
    Cancelled,
    /// At a transpose that does not undo it: moving there gains nothing (and a model of
    /// thousands of such transposes would have them all pass each other, step by step).
    Blocked,
    /// Anywhere else (the ops it passes may then join their producer's epilogue).
    Elsewhere,
}

/// Where a transpose by `perm` read by `reader` comes to rest; `None` where this round's
/// rewrites left a fact unknown.
fn rest_below(graph: &Graph, readers: &Readers, reader: NodeId, perm: &[usize]) -> Option<Rest> {
    let mut node = reader;
    for _ in 0..graph.node_count() {
        if let Some((_, _, undo)) = transpose_of(graph, node) {
            return Some(if undoes(perm, &undo) {
                Rest::Cancelled
            } else {
                Rest::Blocked
            });
        }
        let current = graph.node(node)?;
        let unary =
            current.op.as_any().downcast_ref::<Unary>().is_some() && current.inputs.len() == 1;
        let pad = current.op.as_any().downcast_ref::<Pad>().is_some();
        let result = current.outputs[0];
        if !(unary || pad) || graph.is_graph_output(result) || readers.uses(result)? != 1 {
            return Some(Rest::Elsewhere);
        }
        node = readers.first_reader(result)?;
    }
    Some(Rest::Elsewhere)
}

/// Gives each reader of transpose `id`'s result that would cancel it (see
/// [`rest_below`]) a copy of its own, when at most one other reader (a graph output counts
/// as one) is left.
fn copy_for_readers(graph: &mut Graph, readers: &mut Readers, id: NodeId, perm: &[usize]) -> bool {
    let Some(node) = graph.node(id) else {
        return false;
    };
    let (result, inputs, name) = (node.outputs[0], node.inputs.clone(), node.name.clone());
    let Some(result_readers) = readers.readers(result) else {
        return false;
    };
    let (cancelling, others): (Vec<NodeId>, Vec<NodeId>) = result_readers
        .iter()
        .partition(|&&reader| rest_below(graph, readers, reader, perm) == Some(Rest::Cancelled));
    let left = others.len() + usize::from(graph.is_graph_output(result));
    let Some(ty) = graph.value(result).ty.clone() else {
        return false;
    };
    if cancelling.is_empty() || left > 1 {
        return false;
    }
    readers.touch(inputs.iter().copied().chain([result]));
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
        readers.touch([copied]);
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
fn concatenate_first(
    graph: &mut Graph,
    readers: &mut Readers,
    reader: NodeId,
    perm: &[usize],
) -> bool {
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
            Some((source, value, other)) if other == perm && readers.uses(input) == Some(1) => {
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
    // The old inputs lose their reader, the sources and the permutation gain one.
    readers.touch(
        node.inputs
            .iter()
            .chain(&sources)
            .copied()
            .chain([perm_value]),
    );
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
    readers.touch([joined]);
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
    readers: &mut Readers,
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
    // The permutation and a pad's operands change nodes; the values between keep their readers.
    readers.touch(moved_inputs[1..].iter().copied().chain([perm_value]));
    if let Some(paddings) = paddings {
        moved_inputs[1] = graph.add_constant(&paddings_name, paddings, None);
        readers.touch([moved_inputs[1]]);
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
