//! The verifier: invariants every pass must keep. Runs between passes in tests and with
//! `--verify-each`; a failure is a compiler bug, reported with the offending node.

use std::collections::HashSet;

use super::{Definition, Graph, ValueId};

/// What a verification failure says.
#[derive(Debug, thiserror::Error)]
#[error("IR verification failed: {0}")]
pub struct VerifyError(pub String);

/// Checks SSA and ordering invariants; with `typed`, also that every live value has a type and
/// that each node's op accepts its input types and yields its recorded output types.
pub fn verify(graph: &Graph, typed: bool) -> Result<(), VerifyError> {
    let mut defined: HashSet<ValueId> = HashSet::new();
    for (index, value) in graph.values.iter().enumerate() {
        if matches!(
            value.definition,
            Definition::Input(_) | Definition::Constant(_)
        ) {
            defined.insert(ValueId(index as u32));
        }
    }
    for (position, port) in graph.inputs.iter().enumerate() {
        if graph.value(port.value).definition != Definition::Input(position) {
            return Err(VerifyError(format!(
                "graph input {:?} is not defined as input {position}",
                port.name
            )));
        }
    }
    for (node_id, node) in graph.nodes() {
        for &input in &node.inputs {
            if input.0 as usize >= graph.values.len() {
                return Err(VerifyError(format!(
                    "node {:?} reads {input}, which does not exist",
                    node.name
                )));
            }
            if !defined.contains(&input) {
                return Err(VerifyError(format!(
                    "node {:?} reads {input} before it is defined",
                    node.name
                )));
            }
        }
        for (output_index, &output) in node.outputs.iter().enumerate() {
            let definition = &graph.value(output).definition;
            let is_constant = matches!(definition, Definition::Constant(_));
            if !is_constant
                && *definition
                    != (Definition::Node {
                        node: node_id,
                        output_index,
                    })
            {
                return Err(VerifyError(format!(
                    "output {output} of node {:?} is defined elsewhere",
                    node.name
                )));
            }
            if !defined.insert(output) && !is_constant {
                return Err(VerifyError(format!(
                    "{output} is defined twice (node {:?})",
                    node.name
                )));
            }
        }
        if typed {
            let Some(facts) = graph.input_facts(&node.inputs) else {
                return Err(VerifyError(format!(
                    "node {:?} has an untyped input",
                    node.name
                )));
            };
            let inferred = node
                .op
                .infer(&facts)
                .map_err(|e| VerifyError(format!("node {:?}: {e}", node.name)))?;
            for (&output, ty) in node.outputs.iter().zip(&inferred) {
                if graph.value(output).ty.as_ref() != Some(ty) {
                    return Err(VerifyError(format!(
                        "node {:?}: output {output} is typed {:?}, its op says {ty}",
                        node.name,
                        graph.value(output).ty
                    )));
                }
            }
        }
    }
    for port in &graph.outputs {
        if !defined.contains(&port.value) {
            return Err(VerifyError(format!(
                "graph output {:?} reads undefined {}",
                port.name, port.value
            )));
        }
    }
    Ok(())
}
