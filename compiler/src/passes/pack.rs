//! Packed weight panels: a constant that GEMM kernels read as B (a regular convolution's filter,
//! a matrix product's rank-2 B) is stored packed into the 16-column panels the kernels stream
//! (`tfjsc_runtime::panels`), so each row of a tile is one contiguous line per panel instead of
//! a line at the matrix's row stride (one TLB page per few rows for wide layers).
//!
//! Decided here, at compile time; the runtime packs weights once at load (the description's
//! `panels`) and codegen packs embedded constants. A constant is packed only when every reader
//! wants the same panels and it is not a graph output; the tensor keeps its logical layout for
//! everything else (folding, reference evaluation).

use std::collections::{HashMap, HashSet};

use super::PassError;
use crate::ir::{DType, Graph, ValueId};
use tfjsc_runtime::panels::Panels;

pub fn pack_weights(graph: &mut Graph) -> Result<(), PassError> {
    let uses = graph.use_counts();
    let outputs: HashSet<ValueId> = graph.outputs.iter().map(|port| port.value).collect();
    // Per constant: the panels every reader so far asked for (None once two disagree), and
    // how many asked.
    let mut wanted: HashMap<ValueId, (Option<Panels>, usize)> = HashMap::new();
    for (_, node) in graph.nodes() {
        let Some(types) = graph.input_types(node) else {
            continue;
        };
        for (index, panels) in node.op.panel_operands(&types) {
            let Some(&value) = node.inputs.get(index) else {
                continue;
            };
            let is_float_constant = graph
                .constant(value)
                .is_some_and(|constant| constant.tensor.dtype() == DType::F32);
            if !is_float_constant {
                continue;
            }
            let entry = wanted.entry(value).or_insert((Some(panels), 0));
            if entry.0 != Some(panels) {
                entry.0 = None;
            }
            entry.1 += 1;
        }
    }
    for (value, (panels, requests)) in wanted {
        let only_gemm_readers = uses.get(&value) == Some(&requests) && !outputs.contains(&value);
        if let (Some(panels), true) = (panels, only_gemm_readers) {
            if let Some(constant) = graph.constant_mut(value) {
                constant.panels = Some(panels);
            }
        }
    }
    Ok(())
}
