//! Shape inference and constant folding.
//!
//! `infer_shapes` types every value in order. Shapes may depend on values (Reshape's target,
//! a reduction's axes), and graphs compute those at run time from `Shape` (Shape → StridedSlice →
//! Pack → Reshape); so inference also folds every node whose result is known — from input types
//! alone (Shape) or from small constant inputs — and with static input shapes such chains
//! disappear. `fold_constants` then folds every remaining node whose inputs are all constant.

use std::sync::Arc;

use super::PassError;
use crate::ir::{Graph, NodeId, Tensor};
use crate::ops::{InputFacts, OpError, Specialized};

/// Largest result (in elements) inference folds on its own; bigger ones wait for `fold_constants`.
const SMALL_FOLD_LIMIT: usize = 4096;
/// Largest tensor a compiled model may hold (1 TiB: beyond it the shapes are malformed).
const MAX_TENSOR_BYTES: usize = 1 << 40;
/// Largest result `fold_constants` computes at compile time.
const FOLD_LIMIT: usize = 16 << 20;

fn node_error(graph: &Graph, node: NodeId, pass: &'static str, message: String) -> PassError {
    let (name, op) = graph
        .node(node)
        .map(|n| (n.name.clone(), n.op.name().to_string()))
        .unwrap_or_default();
    PassError::Node {
        pass,
        node: name,
        op,
        message,
    }
}

pub fn infer_shapes(graph: &mut Graph) -> Result<(), PassError> {
    walk(graph, "infer_shapes", SMALL_FOLD_LIMIT)
}

pub fn fold_constants(graph: &mut Graph) -> Result<(), PassError> {
    walk(graph, "fold_constants", FOLD_LIMIT)
}

fn walk(graph: &mut Graph, pass: &'static str, fold_limit: usize) -> Result<(), PassError> {
    let mut unsupported = Vec::new();
    for id in graph.node_ids() {
        let Some(node) = graph.node(id) else { continue };
        let inputs = node.inputs.clone();
        let outputs = node.outputs.clone();
        let mut op = node.op.clone();
        if outputs.iter().all(|&v| graph.constant(v).is_some()) {
            continue;
        }
        let mut types = Vec::with_capacity(inputs.len());
        for &input in &inputs {
            match graph.value(input).ty.clone() {
                Some(ty) => types.push(ty),
                // Downstream of a node already reported as unsupported: nothing more to say.
                None if !unsupported.is_empty() => break,
                None => {
                    return Err(node_error(
                        graph,
                        id,
                        pass,
                        format!("input {input} has no type"),
                    ))
                }
            }
        }
        if types.len() != inputs.len() {
            continue;
        }
        let constants: Vec<Option<Arc<Tensor>>> = inputs
            .iter()
            .map(|&v| graph.constant(v).map(|c| c.tensor.clone()))
            .collect();
        let facts = InputFacts {
            types: types.iter().collect(),
            constants: constants.iter().map(|c| c.as_deref()).collect(),
        };
        // Constant operands that become attributes (reduction axes).
        let mut kept_inputs = inputs.clone();
        let specialized = op
            .specialize(&facts)
            .map_err(|e| node_error(graph, id, pass, e.to_string()))?;
        let facts = match specialized {
            Some(Specialized {
                op: new_op,
                inputs: kept,
            }) => {
                if kept.iter().any(|&i| i >= inputs.len()) {
                    return Err(node_error(
                        graph,
                        id,
                        pass,
                        "specialised to an input it does not have".into(),
                    ));
                }
                op = new_op;
                kept_inputs = kept.iter().map(|&i| inputs[i]).collect();
                InputFacts {
                    types: kept.iter().map(|&i| facts.types[i]).collect(),
                    constants: kept.iter().map(|&i| facts.constants[i]).collect(),
                }
            }
            None => facts,
        };
        let inferred = match op.infer(&facts) {
            Ok(inferred) => inferred,
            // An op this compiler cannot handle for these inputs: every such node is listed.
            Err(error @ OpError::Unsupported(_)) => {
                unsupported.push(node_error(graph, id, pass, error.to_string()));
                continue;
            }
            Err(error) => return Err(node_error(graph, id, pass, error.to_string())),
        };
        if inferred.len() != outputs.len() {
            return Err(node_error(
                graph,
                id,
                pass,
                format!(
                    "op yields {} results, the node has {}",
                    inferred.len(),
                    outputs.len()
                ),
            ));
        }
        for (&output, ty) in outputs.iter().zip(&inferred) {
            if ty
                .checked_byte_size()
                .is_none_or(|bytes| bytes > MAX_TENSOR_BYTES)
            {
                return Err(node_error(
                    graph,
                    id,
                    pass,
                    format!("result {ty} is too large (over {MAX_TENSOR_BYTES} bytes)"),
                ));
            }
            graph.value_mut(output).ty = Some(ty.clone());
        }
        let folded = if let Some(values) = op.fold_from_types(&facts) {
            Some(values)
        } else if facts.constants.iter().all(|c| c.is_some())
            && op.view_of_input().is_none()
            && inferred.iter().all(|t| t.element_count() <= fold_limit)
        {
            let values: Vec<&Tensor> = facts
                .constants
                .iter()
                .map(|c| c.expect("checked above"))
                .collect();
            Some(
                op.evaluate(&values)
                    .map_err(|e| node_error(graph, id, pass, e.to_string()))?,
            )
        } else if facts.constants.first().copied().flatten().is_some()
            && op.view_of_input().is_some()
        {
            // A view of a constant is a constant of the new shape.
            let source = facts.constants[0].expect("checked above");
            Some(vec![source.reshaped(inferred[0].shape.clone())])
        } else {
            None
        };
        if let Some(node) = graph.node_mut(id) {
            node.op = op;
            node.inputs = kept_inputs;
        }
        if let Some(values) = folded {
            for (&output, value) in outputs.iter().zip(values) {
                graph.make_constant(output, value);
            }
        }
    }
    match unsupported.len() {
        0 => Ok(()),
        1 => Err(unsupported.remove(0)),
        _ => Err(PassError::Unsupported(unsupported)),
    }
}
