//! Memory planning: where every value lives when the compiled model runs.
//!
//! Graph inputs and outputs live in the caller's buffers, weights in the runtime's mapped
//! shards, computed constants in the object's read-only data, views where their source lives,
//! and everything else in one arena, reused by liveness: a buffer is free again after the last
//! node that reads it (directly or through a view). Kernels' scratch lives in the arena too, for
//! the duration of its node.
//!
//! In checked mode (`tfjsc compile --checked`) nothing is reused: every arena value and every
//! node's scratch gets a region of its own with a red zone of [`RED_ZONE_BYTES`] on each side, and
//! the plan lists the regions so the runtime can fill the zones and verify them after every kernel
//! (docs/abi.md, "Checked mode"). Reuse would make a zone of a dead buffer live data of another.

use std::collections::HashMap;

use crate::codegen::microkernel::Isa;
use crate::ir::{Definition, Graph, NodeId, ValueId};

/// Arena offsets are multiples of this (cache line, and the widest vector).
pub const ARENA_ALIGNMENT: usize = 64;

/// Checked mode: bytes of red zone before every region, and at least as many after it.
pub const RED_ZONE_BYTES: usize = 64;

/// One arena region of a checked plan: a value's buffer or a node's scratch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// `NODE:OUTPUT_INDEX` for a value, `scratch of NODE` for scratch.
    pub name: String,
    /// Byte offset of the buffer in the arena (a multiple of [`ARENA_ALIGNMENT`]).
    pub offset: usize,
    /// Bytes the kernels may touch; the after zone starts right here.
    pub size: usize,
}

/// Where a value lives at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    Input(usize),
    Output(usize),
    /// Index into the compiled model's weight list.
    Weight(usize),
    /// Index into the embedded constants.
    Embedded(usize),
    /// Byte offset in the arena.
    Arena(usize),
}

/// The plan for one graph.
#[derive(Debug, Default)]
pub struct MemoryPlan {
    pub locations: HashMap<ValueId, Location>,
    /// Arena offset of each node's scratch, for nodes that need scratch.
    pub scratch: HashMap<NodeId, (usize, usize)>,
    pub arena_size: usize,
    /// Weights read by the code, in pointer-table order: (manifest name, value).
    pub weights: Vec<(String, ValueId)>,
    /// Constants embedded in the object, in order.
    pub embedded: Vec<ValueId>,
    /// What the arena would take without reuse (for `inspect`).
    pub unshared_bytes: usize,
    /// Checked mode: every region in arena order, each with red zones (empty otherwise).
    pub regions: Vec<Region>,
}

fn round_up(value: usize) -> usize {
    value.div_ceil(ARENA_ALIGNMENT) * ARENA_ALIGNMENT
}

/// First-fit allocator over a growing arena; in checked mode a bump allocator with red zones.
#[derive(Default)]
struct Arena {
    /// Free (offset, size) ranges, sorted by offset.
    free: Vec<(usize, usize)>,
    end: usize,
    /// Never reuse, and put [`RED_ZONE_BYTES`] before and after every buffer.
    checked: bool,
}

impl Arena {
    fn allocate(&mut self, size: usize) -> usize {
        if self.checked {
            // Zone, buffer padded to the alignment, zone: the buffer stays 64-byte aligned
            // because the zone is a multiple of the alignment, and the padding belongs to the
            // after zone, so a one-byte overrun is caught too.
            let offset = self.end + RED_ZONE_BYTES;
            self.end = offset + round_up(size) + RED_ZONE_BYTES;
            return offset;
        }
        let size = round_up(size.max(1));
        if let Some(position) = self.free.iter().position(|&(_, s)| s >= size) {
            let (offset, available) = self.free[position];
            if available == size {
                self.free.remove(position);
            } else {
                self.free[position] = (offset + size, available - size);
            }
            return offset;
        }
        // Grow, reusing a free range that touches the end.
        if let Some(&(offset, available)) = self.free.last() {
            if offset + available == self.end {
                self.free.pop();
                self.end = offset + size;
                return offset;
            }
        }
        let offset = self.end;
        self.end += size;
        offset
    }

    fn release(&mut self, offset: usize, size: usize) {
        if self.checked {
            return;
        }
        let size = round_up(size.max(1));
        let position = self.free.partition_point(|&(o, _)| o < offset);
        self.free.insert(position, (offset, size));
        // Merge neighbours.
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.free.len());
        for &(o, s) in &self.free {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == o => last.1 += s,
                _ => merged.push((o, s)),
            }
        }
        self.free = merged;
    }
}

/// Plans memory for a typed, verified graph, reusing dead buffers, for kernels lowered for
/// `isas` (the library's kernel sets; their scratch needs differ).
pub fn plan_memory(graph: &Graph, isas: &[Isa]) -> MemoryPlan {
    plan(graph, isas, false)
}

/// Plans memory for checked mode: no reuse, red zones around every region, regions listed.
pub fn plan_memory_checked(graph: &Graph, isas: &[Isa]) -> MemoryPlan {
    plan(graph, isas, true)
}

fn plan(graph: &Graph, isas: &[Isa], checked: bool) -> MemoryPlan {
    let mut plan = MemoryPlan::default();
    let nodes: Vec<(NodeId, &crate::ir::Node)> = graph.nodes().collect();
    for (index, port) in graph.inputs.iter().enumerate() {
        plan.locations.insert(port.value, Location::Input(index));
    }
    for (index, port) in graph.outputs.iter().enumerate() {
        plan.locations
            .entry(port.value)
            .or_insert(Location::Output(index));
    }
    // The buffer a value really reads: views resolve to their source.
    let mut root: HashMap<ValueId, ValueId> = HashMap::new();
    let resolve = |root: &HashMap<ValueId, ValueId>, v: ValueId| *root.get(&v).unwrap_or(&v);
    for (_, node) in &nodes {
        if let Some(source) = node.op.view_of_input() {
            let source = resolve(&root, node.inputs[source]);
            root.insert(node.outputs[0], source);
        }
    }
    // Constants: weights (by manifest name) or embedded.
    let mut weight_index: HashMap<String, usize> = HashMap::new();
    for (_, node) in &nodes {
        for &input in &node.inputs {
            let input = resolve(&root, input);
            let Some(constant) = graph.constant(input) else {
                continue;
            };
            if plan.locations.contains_key(&input) {
                continue;
            }
            let location = match &constant.weight {
                Some(name) => {
                    let next = weight_index.len();
                    let index = *weight_index.entry(name.clone()).or_insert(next);
                    if index == next {
                        plan.weights.push((name.clone(), input));
                    }
                    Location::Weight(index)
                }
                None => {
                    plan.embedded.push(input);
                    Location::Embedded(plan.embedded.len() - 1)
                }
            };
            plan.locations.insert(input, location);
        }
    }
    // Liveness: last node position reading each root buffer.
    let mut last_use: HashMap<ValueId, usize> = HashMap::new();
    for (position, (_, node)) in nodes.iter().enumerate() {
        if node.op.view_of_input().is_some() {
            continue;
        }
        for &input in &node.inputs {
            last_use.insert(resolve(&root, input), position);
        }
    }
    let mut arena = Arena {
        checked,
        ..Arena::default()
    };
    let mut live: Vec<(ValueId, usize, usize)> = Vec::new(); // (value, offset, size)
    for (position, (id, node)) in nodes.iter().enumerate() {
        if node.op.view_of_input().is_some() {
            continue;
        }
        // Free buffers whose last reader came before this node.
        live.retain(|&(value, offset, size)| {
            let done = last_use.get(&value).is_none_or(|&last| last < position);
            if done {
                arena.release(offset, size);
            }
            !done
        });
        for (output_index, &output) in node.outputs.iter().enumerate() {
            if plan.locations.contains_key(&output)
                || matches!(graph.value(output).definition, Definition::Constant(_))
            {
                continue;
            }
            let size = graph
                .value(output)
                .ty
                .as_ref()
                .map(|t| t.byte_size())
                .unwrap_or(0);
            let offset = arena.allocate(size);
            plan.unshared_bytes += round_up(size.max(1));
            plan.locations.insert(output, Location::Arena(offset));
            if checked {
                plan.regions.push(Region {
                    name: format!("{}:{output_index}", node.name),
                    offset,
                    size,
                });
            }
            live.push((output, offset, size));
        }
        let input_types: Vec<_> = node
            .inputs
            .iter()
            .filter_map(|&v| graph.value(v).ty.as_ref())
            .collect();
        let output_types: Vec<_> = node
            .outputs
            .iter()
            .filter_map(|&v| graph.value(v).ty.clone())
            .collect();
        let scratch = node.op.scratch_bytes(&input_types, &output_types, isas);
        if scratch > 0 {
            let offset = arena.allocate(scratch);
            plan.unshared_bytes += round_up(scratch);
            plan.scratch.insert(*id, (offset, scratch));
            if checked {
                plan.regions.push(Region {
                    name: format!("scratch of {}", node.name),
                    offset,
                    size: scratch,
                });
            }
            arena.release(offset, scratch);
        }
    }
    // Views take their source's location.
    for (view, source) in &root {
        if let Some(&location) = plan.locations.get(source) {
            plan.locations.entry(*view).or_insert(location);
        }
    }
    plan.arena_size = arena.end;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::parse;

    /// x -> a -> b -> c -> view -> d, through the pipeline.
    fn chain() -> Graph {
        let mut graph = parse(
            "graph {\n  input %0 \"x\" : f32[256]\n  const %1 [16, 16] : i32[2]\n\
             %2 = unary(%0) {kind=\"relu\"} : ? @\"a\"\n  %3 = unary(%2) {kind=\"tanh\"} : ? @\"b\"\n\
             %4 = unary(%3) {kind=\"exp\"} : ? @\"c\"\n  %5 = reshape(%4, %1) {mode=\"operand\"} : ? @\"view\"\n\
             %6 = unary(%5) {kind=\"neg\"} : ? @\"d\"\n  output \"y\" %6\n}\n",
        )
        .unwrap();
        crate::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
        graph
    }

    #[test]
    fn arena_reuses_dead_buffers_and_views_share() {
        // a -> b -> c -> d: a dies after b, so c can take a's place.
        let graph = chain();
        let plan = plan_memory(&graph, &[Isa::Avx512]);
        let location = |name: &str| {
            let (_, node) = graph.nodes().find(|(_, n)| n.name == name).unwrap();
            plan.locations[&node.outputs[0]]
        };
        assert_eq!(location("a"), Location::Arena(0));
        assert_eq!(location("b"), Location::Arena(1024));
        assert_eq!(location("c"), Location::Arena(0), "c reuses a's buffer");
        assert_eq!(
            location("view"),
            location("c"),
            "a view lives where its source lives"
        );
        assert_eq!(location("d"), Location::Output(0));
        assert_eq!(plan.arena_size, 2048);
        assert_eq!(plan.unshared_bytes, 3072);
    }

    #[test]
    fn checked_plan_gives_every_buffer_its_own_region_between_red_zones() {
        // The chain of the test above: no reuse, so c no longer takes a's place.
        let graph = chain();
        let plan = plan_memory_checked(&graph, &[Isa::Avx512]);
        let names: Vec<_> = plan.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["a:0", "b:0", "c:0"],
            "no reuse: c gets its own region"
        );
        for (index, region) in plan.regions.iter().enumerate() {
            assert_eq!(region.size, 1024);
            assert_eq!(region.offset % ARENA_ALIGNMENT, 0);
            // zone | buffer | zone, back to back.
            assert_eq!(
                region.offset,
                RED_ZONE_BYTES + index * (1024 + 2 * RED_ZONE_BYTES)
            );
        }
        assert_eq!(plan.arena_size, 3 * (1024 + 2 * RED_ZONE_BYTES));
        let (_, view) = graph.nodes().find(|(_, n)| n.name == "view").unwrap();
        assert_eq!(
            plan.locations[&view.outputs[0]],
            Location::Arena(plan.regions[2].offset)
        );
    }

    #[test]
    fn checked_arena_pads_odd_sizes_into_the_after_zone() {
        let mut arena = Arena {
            checked: true,
            ..Arena::default()
        };
        assert_eq!(arena.allocate(5), RED_ZONE_BYTES);
        arena.release(RED_ZONE_BYTES, 5);
        assert_eq!(
            arena.allocate(0),
            64 + 64 + 64 + 64,
            "released space is not reused"
        );
        assert_eq!(arena.end, 64 + 64 + 64 + 64 + 64);
    }
}
