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

/// Repeats, until nothing changes, for each transpose:
/// - the chain below it (see [`Chain`]: the unary elementwise ops, constant pads and
///   transposes each reading the one before it, read only there) is reduced at once, as
///   brackets pair: walking down, a transpose undoing the nearest unpaired one above it
///   cancels with it, and the ops between the two run in the layout above the pair (a pad
///   with its paddings permuted). The last unpaired transpose moves below the ops after it;
///   the others stay, as each would only come to rest against a transpose that does not undo
///   it (see [`reduce_chain`]);
/// - the transpose the chain ends with, when it has one reader, a concatenation of
///   transposes by the same permutation, each read only there: the inputs are concatenated
///   along the permuted axis, and transposed once after.
///
/// A transpose with several readers is first copied for each reader that, through unary ops
/// and pads, reaches a transpose undoing it, when at most one other reader is left: the copies
/// cancel, so no more transposing is done than before.
///
/// A chain's nodes keep their places in program order: the ops and transposes left take them
/// in their order (the moving transpose the last one), the cancelled pairs are removed, so
/// every operand is still defined before its reader.
///
/// Each round indexes the readers once and then visits every node once (a chain's with the
/// transpose at its top), so a round costs the graph's size plus its rewrites, whatever the
/// number of transposes and however they nest (a model is untrusted: one of thousands of
/// transposes must not take minutes). What a rewrite changes waits for the next round (see
/// [`Readers`]).
pub fn sink_transposes(graph: &mut Graph) -> Result<(), PassError> {
    // Each round that changes anything removes a pair, moves a transpose down, copies one or
    // concatenates before one: bounded by the graph size, and in practice a few rounds.
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

/// What a round removes, and the values whose readers read another instead, applied at its
/// end.
#[derive(Default)]
struct Edits {
    removed: HashSet<NodeId>,
    renamed: HashMap<ValueId, ValueId>,
}

/// One round: every chain reduced where its facts are clean, then the transpose it ends with
/// meets its readers. Removals and renames are applied at the end of the round. Whether
/// anything changed.
fn sink_round(graph: &mut Graph) -> bool {
    let mut readers = Readers::new(graph);
    let mut edits = Edits::default();
    // The nodes of the chains met so far (a chain is met from its top).
    let mut met: HashSet<NodeId> = HashSet::new();
    let mut changed = false;
    for id in graph.node_ids() {
        if met.contains(&id) {
            continue;
        }
        let Some((_, _, perm)) = transpose_of(graph, id) else {
            continue;
        };
        let chain = chain_below(graph, &readers, id, perm.len());
        met.extend(chain.nodes.iter().copied());
        changed |= reduce_chain(graph, &mut readers, &chain, &mut edits);
        let end = chain
            .nodes
            .iter()
            .rev()
            .find(|node| !edits.removed.contains(node));
        if let Some(&end) = end {
            changed |= meet_readers(graph, &mut readers, end);
        }
    }
    if !edits.removed.is_empty() {
        // A pair may cancel into a value another pair's cancelling renames.
        let resolve = |mut value: ValueId| {
            while let Some(&next) = edits.renamed.get(&value) {
                value = next;
            }
            value
        };
        graph.rename_uses(&resolve);
        graph.retain_nodes(|node, _| !edits.removed.contains(&node));
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

/// Transposing by `first`, then by `second`, is transposing by this: axis k reads axis
/// `first[second[k]]`.
fn compose(first: &[usize], second: &[usize]) -> Vec<usize> {
    second.iter().map(|&axis| first[axis]).collect()
}

/// The permutation undoing `perm`.
fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; perm.len()];
    for (k, &axis) in perm.iter().enumerate() {
        inverse[axis] = k;
    }
    inverse
}

/// A node and the nodes below it that a transpose there may pass or cancel against: each a
/// unary elementwise op, a pad with constant paddings or a transpose ([`passable`]) reading
/// the one before it, whose result is read only there and is not a graph output.
struct Chain {
    nodes: Vec<NodeId>,
    /// Whether the graph ends the chain, not a fact this round's rewrites left unknown.
    known_end: bool,
}

/// The chain below `top`, whose values are of rank `rank`.
fn chain_below(graph: &Graph, readers: &Readers, top: NodeId, rank: usize) -> Chain {
    let mut nodes = vec![top];
    let mut at = top;
    // (The bound only matters to a graph with a cycle, which the verifier refuses.)
    let known_end = loop {
        let Some(result) = graph.node(at).map(|node| node.outputs[0]) else {
            break false;
        };
        match readers.uses(result) {
            None => break false,
            Some(1) if !graph.is_graph_output(result) => {}
            Some(_) => break true,
        }
        let Some(reader) = readers.first_reader(result) else {
            break false;
        };
        if !passable(graph, reader, rank) {
            break true;
        }
        if nodes.len() > graph.node_count() {
            break false;
        }
        nodes.push(reader);
        at = reader;
    };
    Chain { nodes, known_end }
}

/// Whether a transpose of rank `rank` may pass `id` or cancel against it: a unary
/// elementwise op, a pad whose paddings it can permute, or a transpose.
fn passable(graph: &Graph, id: NodeId, rank: usize) -> bool {
    let Some(node) = graph.node(id) else {
        return false;
    };
    let op = node.op.as_any();
    if op.is::<Unary>() {
        return node.inputs.len() == 1;
    }
    if op.is::<Pad>() {
        let paddings = node.inputs.get(1).and_then(|&value| graph.constant(value));
        let identity: Vec<usize> = (0..rank).collect();
        return paddings
            .is_some_and(|paddings| permuted_paddings(&paddings.tensor, &identity).is_some());
    }
    transpose_of(graph, id).is_some()
}

/// The paddings of a pad whose input's axis k was axis `shift[k]` of what it reads now.
fn permuted_paddings(paddings: &Tensor, shift: &[usize]) -> Option<Tensor> {
    let values = paddings.to_i64_vec();
    if values.len() != shift.len() * 2 {
        return None;
    }
    let mut permuted = vec![0i64; values.len()];
    for (k, &axis) in shift.iter().enumerate() {
        permuted[axis * 2] = values[k * 2];
        permuted[axis * 2 + 1] = values[k * 2 + 1];
    }
    let data = match &paddings.data {
        TensorData::I32(_) => TensorData::I32(permuted.iter().map(|&v| v as i32).collect()),
        TensorData::I64(_) => TensorData::I64(permuted),
        _ => return None,
    };
    let shape = paddings.shape.clone();
    Some(Tensor { shape, data })
}

/// What one node of a reduced chain computes: `op` on the value before it and `operands`,
/// typed `ty`, named `name`.
struct Step {
    op: Arc<dyn Operator>,
    name: String,
    operands: Vec<ValueId>,
    ty: TensorType,
    /// For a pad the transposes no longer sit above as they did, its paddings permuted.
    paddings: Option<Tensor>,
}

/// Reduces `chain` (see [`sink_transposes`]) in one step, whatever the number of transposes
/// in it or their nesting. A transpose left unpaired, except the last, stays where it is:
/// moving down, it would only come to rest against the next unpaired one, which does not
/// undo it (and a model of thousands of such transposes would have them all pass each other).
/// The last moves below the chain's ops, once its end is known. Whether anything changed;
/// nothing changes in the graph until every node of the reduced chain is known to type as the
/// chain did.
fn reduce_chain(
    graph: &mut Graph,
    readers: &mut Readers,
    chain: &Chain,
    edits: &mut Edits,
) -> bool {
    let nodes = &chain.nodes;
    let perms: Vec<Option<Vec<usize>>> = nodes
        .iter()
        .map(|&node| transpose_of(graph, node).map(|(_, _, perm)| perm))
        .collect();
    let mut unpaired: Vec<usize> = Vec::new();
    let mut cancelled = vec![false; nodes.len()];
    for (index, perm) in perms.iter().enumerate() {
        let Some(perm) = perm else {
            continue;
        };
        let above = unpaired.last().and_then(|&above| perms[above].as_deref());
        if above.is_some_and(|above| undoes(above, perm)) {
            if let Some(above) = unpaired.pop() {
                cancelled[above] = true;
            }
            cancelled[index] = true;
        } else {
            unpaired.push(index);
        }
    }
    let moving = unpaired
        .last()
        .copied()
        .filter(|&last| chain.known_end && perms[last + 1..].iter().any(Option::is_none));
    // Above the first transpose that cancels or moves, nothing changes.
    let first_cancelled = cancelled.iter().position(|&cancelled| cancelled);
    let Some(first) = first_cancelled.into_iter().chain(moving).min() else {
        return false;
    };
    let (nodes, perms, cancelled) = (&nodes[first..], &perms[first..], &cancelled[first..]);
    let moving = moving.map(|index| index - first);
    let Some((input, steps)) = plan_chain(graph, nodes, perms, cancelled, moving) else {
        return false;
    };
    let end_cancelled = cancelled[nodes.len() - 1];
    let end_result = graph
        .node(nodes[nodes.len() - 1])
        .map(|node| node.outputs[0]);
    // Every value the chain reads or defines changes readers or producer, but the result it
    // ends with when that stays where it is.
    for node in nodes.iter().filter_map(|&node| graph.node(node)) {
        let values = node.inputs.iter().chain(&node.outputs).copied();
        readers.touch(values.filter(|&value| end_cancelled || Some(value) != end_result));
    }
    // The nodes left take the steps in order.
    let slots = nodes
        .iter()
        .zip(cancelled)
        .filter(|(_, &cancelled)| !cancelled);
    let mut flowing = input;
    for ((&slot, _), mut step) in slots.zip(steps) {
        if let Some(paddings) = step.paddings {
            let paddings_name = format!("{}/paddings_before_transpose", step.name);
            step.operands[0] = graph.add_constant(&paddings_name, paddings, None);
            readers.touch([step.operands[0]]);
        }
        let Some(node) = graph.node_mut(slot) else {
            continue;
        };
        node.op = step.op;
        node.name = step.name;
        node.inputs = std::iter::once(flowing).chain(step.operands).collect();
        flowing = node.outputs[0];
        graph.value_mut(flowing).ty = Some(step.ty);
    }
    if let (true, Some(end_result)) = (end_cancelled, end_result) {
        edits.renamed.insert(end_result, flowing);
    }
    let removed = nodes
        .iter()
        .zip(cancelled)
        .filter(|(_, &cancelled)| cancelled);
    edits.removed.extend(removed.map(|(&node, _)| node));
    true
}

/// The chain's input and the steps of `nodes` reduced: the `cancelled` transposes gone, the
/// `moving` one last, the ops typed for what they now read (the names go with the ops:
/// profiles and errors name the op a node runs); `None` unless the result the chain ends with
/// keeps its type and every op its type up to the transposes no longer above it.
fn plan_chain(
    graph: &Graph,
    nodes: &[NodeId],
    perms: &[Option<Vec<usize>>],
    cancelled: &[bool],
    moving: Option<usize>,
) -> Option<(ValueId, Vec<Step>)> {
    let input = *graph.node(nodes[0])?.inputs.first()?;
    let mut flowing = graph.value(input).ty.clone()?;
    // What the transposes above a node made of the chain's input, and what those left make of
    // it: axis k is the input's axis `net[k]`.
    let identity: Vec<usize> = (0..flowing.rank()).collect();
    let (mut net_before, mut net_after) = (identity.clone(), identity);
    let mut steps = Vec::with_capacity(nodes.len());
    let mut moved = None;
    for (index, (&id, perm)) in nodes.iter().zip(perms).enumerate() {
        let node = graph.node(id)?;
        let mut step = Step {
            op: Arc::clone(&node.op),
            name: node.name.clone(),
            operands: node.inputs[1..].to_vec(),
            ty: flowing.clone(),
            paddings: None,
        };
        if let Some(perm) = perm {
            net_before = compose(&net_before, perm);
            if moving == Some(index) {
                moved = Some(step);
            } else if !cancelled[index] {
                net_after = compose(&net_after, perm);
                flowing = transposed(&flowing, perm);
                step.ty = flowing.clone();
                steps.push(step);
            }
            continue;
        }
        // The op's input axis k was axis shift[k] of what it reads now.
        let shift = compose(&inverse(&net_after), &net_before);
        if shift.iter().enumerate().any(|(k, &axis)| k != axis) && node.op.as_any().is::<Pad>() {
            let paddings = graph.constant(*node.inputs.get(1)?)?;
            step.paddings = Some(permuted_paddings(&paddings.tensor, &shift)?);
        }
        let mut facts = graph.input_facts(&node.inputs)?;
        facts.types[0] = &flowing;
        if let Some(paddings) = &step.paddings {
            facts.constants[1] = Some(paddings);
        }
        let ty = node.op.infer(&facts).ok()?.into_iter().next()?;
        if graph.value(node.outputs[0]).ty.as_ref() != Some(&transposed(&ty, &shift)) {
            return None;
        }
        flowing = ty;
        step.ty = flowing.clone();
        steps.push(step);
    }
    if let (Some(mut step), Some(index)) = (moved, moving) {
        flowing = transposed(&flowing, perms[index].as_deref()?);
        step.ty = flowing.clone();
        steps.push(step);
    }
    let end = graph.node(*nodes.last()?)?.outputs[0];
    (graph.value(end).ty.as_ref() == Some(&flowing)).then_some((input, steps))
}

/// Transpose `id`, the end of its chain, meets its readers: copies for those it would cancel
/// against ([`copy_for_readers`]), or one concatenation of transposes like it
/// ([`concatenate_first`]). Whether anything changed.
fn meet_readers(graph: &mut Graph, readers: &mut Readers, id: NodeId) -> bool {
    let Some((_, _, perm)) = transpose_of(graph, id) else {
        return false;
    };
    let Some(result) = graph.node(id).map(|node| node.outputs[0]) else {
        return false;
    };
    match readers.uses(result) {
        Some(uses) if uses > 1 => copy_for_readers(graph, readers, id, &perm),
        Some(1) if !graph.is_graph_output(result) => readers
            .first_reader(result)
            .is_some_and(|reader| concatenate_first(graph, readers, reader, &perm)),
        _ => false,
    }
}

/// Whether a transpose by `perm` read by `reader` would cancel: the first transpose of the
/// chain starting at `reader` undoes it (`false` where this round's rewrites left a fact
/// unknown).
fn cancels_below(graph: &Graph, readers: &Readers, reader: NodeId, perm: &[usize]) -> bool {
    if !passable(graph, reader, perm.len()) {
        return false;
    }
    let chain = chain_below(graph, readers, reader, perm.len());
    let first = chain
        .nodes
        .iter()
        .find_map(|&node| transpose_of(graph, node));
    first.is_some_and(|(_, _, undo)| undoes(perm, &undo))
}

/// Gives each reader of transpose `id`'s result that would cancel it (see
/// [`cancels_below`]) a copy of its own, when at most one other reader (a graph output counts
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
        .partition(|&&reader| cancels_below(graph, readers, reader, perm));
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

/// `ty` transposed by `perm`: axis k is `ty`'s axis `perm[k]`.
fn transposed(ty: &TensorType, perm: &[usize]) -> TensorType {
    TensorType::new(ty.dtype, perm.iter().map(|&axis| ty.shape[axis]).collect())
}
