//! Graph outputs must be written by a kernel into the caller's buffer: an output that is a graph
//! input, a constant, a view, or the same value as an earlier output gets a `copy` node.

use std::collections::HashSet;
use std::sync::Arc;

use super::PassError;
use crate::ir::{Definition, Graph};
use crate::ops::shape::Copy;

pub fn materialize_outputs(graph: &mut Graph) -> Result<(), PassError> {
    let mut seen = HashSet::new();
    for index in 0..graph.outputs.len() {
        let value = graph.outputs[index].value;
        let is_kernel_result = match graph.value(value).definition {
            Definition::Node { node, .. } => graph
                .node(node)
                .is_some_and(|n| n.op.view_of_input().is_none()),
            _ => false,
        };
        if is_kernel_result && seen.insert(value) {
            continue;
        }
        let name = format!("{}/copy", graph.outputs[index].name);
        let ty = graph.value(value).ty.clone();
        let node = graph.add_node(&name, Arc::new(Copy), vec![value], 1);
        let copied = graph.node(node).map(|n| n.outputs[0]).unwrap_or(value);
        graph.value_mut(copied).ty = ty;
        graph.outputs[index].value = copied;
        seen.insert(copied);
    }
    Ok(())
}
