//! Dead-code elimination: drops nodes whose results nothing reads and nodes whose results all
//! became constants.

use std::collections::HashSet;

use super::PassError;
use crate::ir::{Definition, Graph, ValueId};

pub fn eliminate_dead_code(graph: &mut Graph) -> Result<(), PassError> {
    let mut live: HashSet<ValueId> = graph.outputs.iter().map(|p| p.value).collect();
    let mut keep = HashSet::new();
    let nodes: Vec<_> = graph
        .nodes()
        .map(|(id, node)| (id, node.inputs.clone(), node.outputs.clone()))
        .collect();
    for (id, inputs, outputs) in nodes.iter().rev() {
        let produces_live = outputs.iter().any(|v| {
            live.contains(v) && matches!(graph.value(*v).definition, Definition::Node { .. })
        });
        if produces_live {
            keep.insert(*id);
            live.extend(inputs.iter().copied());
        }
    }
    graph.retain_nodes(|id, _| keep.contains(&id));
    Ok(())
}
