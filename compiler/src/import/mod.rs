//! Import: a web model's GraphDef and weights become an IR graph.
//!
//! Import does the cleanup that needs TensorFlow's names: `name:k` outputs, `^control` inputs
//! (dropped: compiled code runs nodes in data order), Identity-like and NoOp nodes (removed),
//! placeholders specialised to static shapes. Every other TensorFlow op maps to IR ops through
//! the op registry (`ops::registry`); ops no family imports are reported, all at once, with counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tfjsc_proto::tensorflow::NodeDef;

pub use crate::ops::importer::{
    dtype_from_tf, node_error, tensor_from_proto, ImportError, ImportFn, Importer, NodeAttributes,
};

use crate::ir::{DType, Graph, Tensor, TensorType, ValueId};
use crate::model::{WebModel, WeightValues};
use crate::ops::importer::shape_dims;
use crate::ops::registry;

/// Ops that pass their first input through unchanged.
const IDENTITY_OPS: &[&str] = &[
    "Identity",
    "StopGradient",
    "Snapshot",
    "PreventGradient",
    "IdentityN",
];

/// How the user pins input shapes: `name=1,224,224,3`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputShape {
    pub name: String,
    pub shape: Vec<usize>,
}

/// Import result: the graph and what was decided on the user's behalf (e.g. batch size 1).
pub struct Imported {
    pub graph: Graph,
    pub notes: Vec<String>,
}

/// Splits a NodeDef input reference into (node name, output index); `None` for `^control`.
pub fn parse_input_reference(reference: &str) -> Option<(&str, usize)> {
    if reference.starts_with('^') {
        return None;
    }
    match reference.rsplit_once(':') {
        Some((name, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
            Some((name, index.parse().unwrap_or(0)))
        }
        _ => Some((reference, 0)),
    }
}

/// Checks every weight's manifest shape against the shape its Const node declares, so a damaged
/// manifest is reported by weight name (before the shard bytes are even read).
pub fn check_declared_shapes(model: &WebModel) -> Result<(), ImportError> {
    for node in model.graph.node.iter().filter(|n| n.op == "Const") {
        let Some(spec) = model.weight(&node.name) else {
            continue;
        };
        let declared = NodeAttributes::of(node)
            .tensor("value")
            .and_then(|t| t.tensor_shape.as_ref())
            .and_then(shape_dims);
        let Some(declared) = declared else { continue };
        let manifest: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
        if declared != manifest {
            return Err(ImportError::Node {
                node: node.name.clone(),
                op: node.op.clone(),
                message: format!("weight {:?} has shape {manifest:?} in the weights manifest, but the graph declares {declared:?}", spec.name),
            });
        }
    }
    Ok(())
}

/// Imports `model` with its decoded `weights` (manifest order), pinning input shapes.
pub fn import(
    model: &WebModel,
    weights: &[WeightValues],
    input_shapes: &[InputShape],
) -> Result<Imported, ImportError> {
    let nodes = &model.graph.node;
    check_node_names(nodes)?;
    let by_name: HashMap<&str, &NodeDef> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    // Unsupported ops first, all at once.
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    for node in nodes {
        if !is_known(&node.op) {
            *unsupported.entry(node.op.clone()).or_insert(0) += 1;
        }
    }
    if !unsupported.is_empty() {
        return Err(ImportError::UnsupportedOps(unsupported));
    }
    for shape in input_shapes {
        if !nodes
            .iter()
            .any(|n| n.name == shape.name && n.op == "Placeholder")
        {
            let inputs: Vec<&str> = nodes
                .iter()
                .filter(|n| n.op == "Placeholder")
                .map(|n| n.name.as_str())
                .collect();
            return Err(ImportError::Graph(format!(
                "--input-shape names {:?}, which is not a graph input (inputs: {})",
                shape.name,
                inputs.join(", ")
            )));
        }
    }
    let weight_index: HashMap<&str, usize> = model
        .weights
        .iter()
        .enumerate()
        .map(|(index, w)| (w.name.as_str(), index))
        .collect();
    let order = topological_order(nodes, &by_name)?;

    let mut graph = Graph::new();
    let mut notes = Vec::new();
    let mut values: HashMap<(String, usize), ValueId> = HashMap::new();
    for node in order {
        let mut inputs = Vec::new();
        for reference in &node.input {
            let Some((name, index)) = parse_input_reference(reference) else {
                continue;
            };
            let value = values
                .get(&(name.to_string(), index))
                .copied()
                .ok_or_else(|| ImportError::Node {
                    node: node.name.clone(),
                    op: node.op.clone(),
                    message: format!("input {reference:?} is not produced by any node"),
                })?;
            inputs.push(value);
        }
        let outputs: Vec<ValueId> = match node.op.as_str() {
            "NoOp" => Vec::new(),
            op if IDENTITY_OPS.contains(&op) => inputs.clone(),
            "Placeholder" | "PlaceholderWithDefault"
                if node.op == "Placeholder" || inputs.is_empty() =>
            {
                let ty = placeholder_type(node, input_shapes, &mut notes)?;
                vec![graph.add_input(&node.name, Some(ty))]
            }
            "PlaceholderWithDefault" => inputs.clone(),
            "Const" => vec![import_constant(
                &mut graph,
                node,
                model,
                weights,
                &weight_index,
            )?],
            op => {
                let import = registry::importer_for(op).ok_or_else(|| {
                    ImportError::UnsupportedOps(BTreeMap::from([(op.to_string(), 1)]))
                })?;
                let mut importer = Importer::with_inference(&mut graph, infer_so_far);
                import(&mut importer, node, &inputs)?
            }
        };
        for (index, value) in outputs.into_iter().enumerate() {
            values.insert((node.name.clone(), index), value);
        }
    }

    // Outputs: the signature's if present, else every sink.
    let output_names: Vec<String> = match &model.signature {
        Some(signature) if !signature.outputs.is_empty() => {
            signature.outputs.iter().map(|t| t.name.clone()).collect()
        }
        _ => sinks(nodes),
    };
    for reference in output_names {
        let (name, index) = parse_input_reference(&reference).unwrap_or((&reference, 0));
        let value = values
            .get(&(name.to_string(), index))
            .copied()
            .ok_or_else(|| {
                ImportError::Graph(format!("output {reference:?} is not produced by any node"))
            })?;
        let display = if index == 0 {
            name.to_string()
        } else {
            format!("{name}:{index}")
        };
        graph.add_output(&display, value);
    }
    if graph.outputs.is_empty() {
        return Err(ImportError::Graph("the graph has no outputs".into()));
    }
    Ok(Imported { graph, notes })
}

/// Whether the importer takes TensorFlow op `op` (itself, or through an op family), so that
/// `tfjsc compile` can compile it; `tfjsc convert`'s op check asks the same.
pub fn is_known(op: &str) -> bool {
    matches!(
        op,
        "NoOp" | "Placeholder" | "PlaceholderWithDefault" | "Const"
    ) || IDENTITY_OPS.contains(&op)
        || registry::importer_for(op).is_some()
}

/// The outputs of TensorFlow node `node` on constant `inputs` (in its data-input order), as
/// `tfjsc compile` folds them: the IR ops its importer makes, typed and folded by the pipeline's
/// own passes. `None` when no importer takes the op, the import fails, or an output does not
/// fold. `tfjsc convert`'s constant folding asks this, so that an op's semantics are defined
/// once, by its IR op.
pub fn evaluate_node(node: &NodeDef, inputs: Vec<Tensor>) -> Option<Vec<Arc<Tensor>>> {
    let import = registry::importer_for(&node.op)?;
    let mut graph = Graph::new();
    let values: Vec<ValueId> = inputs
        .into_iter()
        .enumerate()
        .map(|(index, tensor)| graph.add_constant(&format!("{}:{index}", node.name), tensor, None))
        .collect();
    let outputs = import(
        &mut Importer::with_inference(&mut graph, infer_so_far),
        node,
        &values,
    )
    .ok()?;
    crate::passes::infer_shapes(&mut graph).ok()?;
    crate::passes::fold_constants(&mut graph).ok()?;
    outputs
        .iter()
        .map(|&value| graph.constant(value).map(|c| Arc::clone(&c.tensor)))
        .collect()
}

fn placeholder_type(
    node: &NodeDef,
    input_shapes: &[InputShape],
    notes: &mut Vec<String>,
) -> Result<TensorType, ImportError> {
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    let dtype = attributes.dtype("dtype").map_err(fail)?;
    if let Some(given) = input_shapes.iter().find(|s| s.name == node.name) {
        if let Ok(Some(declared)) = attributes.shape("shape") {
            let compatible = declared.len() == given.shape.len()
                && declared
                    .iter()
                    .zip(&given.shape)
                    .all(|(&d, &g)| d < 0 || d as usize == g);
            if !compatible {
                return Err(fail(format!(
                    "--input-shape {:?} does not fit the declared shape {declared:?}",
                    given.shape
                )));
            }
        }
        let ty = TensorType::new(dtype, given.shape.clone());
        if ty.checked_byte_size().is_none_or(|bytes| bytes > 1 << 40) {
            return Err(fail(format!("--input-shape {:?} is too large", ty.shape)));
        }
        return Ok(ty);
    }
    let declared = attributes.shape("shape").map_err(fail)?.ok_or_else(|| {
        fail("input has unknown rank: give its shape with --input-shape NAME=d0,d1,...".to_string())
    })?;
    let mut shape = Vec::with_capacity(declared.len());
    for (axis, &dim) in declared.iter().enumerate() {
        if dim >= 0 {
            shape.push(dim as usize);
        } else if axis == 0 {
            notes.push(format!(
                "input {:?}: unknown batch dimension set to 1 (use --input-shape to choose)",
                node.name
            ));
            shape.push(1);
        } else {
            return Err(fail(format!(
                "dimension {axis} of input {:?} is unknown ({declared:?}): give it with --input-shape {}=...",
                node.name, node.name
            )));
        }
    }
    let ty = TensorType::new(dtype, shape);
    if ty.checked_byte_size().is_none_or(|bytes| bytes > 1 << 40) {
        return Err(fail(format!("input shape {:?} is too large", ty.shape)));
    }
    Ok(ty)
}

fn import_constant(
    graph: &mut Graph,
    node: &NodeDef,
    model: &WebModel,
    weights: &[WeightValues],
    weight_index: &HashMap<&str, usize>,
) -> Result<ValueId, ImportError> {
    let fail = node_error(node);
    if let Some(&index) = weight_index.get(node.name.as_str()) {
        let spec = &model.weights[index];
        let shape = spec.shape.clone();
        let tensor = match weights.get(index) {
            Some(WeightValues::Float32(values)) => Tensor::from_f32(shape, values.clone()),
            Some(WeightValues::Int32(values)) => Tensor::from_i32(shape, values.clone()),
            Some(WeightValues::Bool(values)) => Tensor::from_bool(shape, values.clone()),
            Some(_) => {
                return Err(fail(format!(
                    "weight {:?} has a dtype compiled code cannot use",
                    spec.name
                )))
            }
            None => return Err(fail(format!("weight {:?} was not read", spec.name))),
        };
        if tensor.element_count() != spec.shape.iter().product::<usize>() {
            return Err(fail(format!(
                "weight {:?} holds the wrong number of values",
                spec.name
            )));
        }
        // A weight whose node wants another dtype than the shards store is converted here and
        // embedded in the object: the runtime decodes shard bytes only to their own dtype.
        let expected = NodeAttributes::of(node).dtype("dtype").ok();
        return Ok(match expected {
            Some(dtype) if dtype != tensor.dtype() => {
                graph.add_constant(&node.name, tensor.cast(dtype), None)
            }
            _ => graph.add_constant(&node.name, tensor, Some(spec.name.clone())),
        });
    }
    let proto = NodeAttributes::of(node).tensor("value").ok_or_else(|| {
        fail("constant has no value and no weight of that name in the manifest".into())
    })?;
    let tensor = tensor_from_proto(proto).map_err(fail)?;
    if tensor.dtype() == DType::I64 {
        // Compiled code works in i32 for integers; shapes and indices fit.
        return Ok(graph.add_constant(&node.name, tensor.cast(DType::I32), None));
    }
    Ok(graph.add_constant(&node.name, tensor, None))
}

/// Shape inference over the graph imported so far, for operands an importer needs as constants;
/// an error here is reported by the pipeline later, with the whole graph.
fn infer_so_far(graph: &mut Graph) {
    let _ = crate::passes::infer_shapes(graph);
}

/// Nodes whose outputs nothing reads (excluding constants and NoOps).
fn sinks(nodes: &[NodeDef]) -> Vec<String> {
    let mut used = std::collections::HashSet::new();
    for node in nodes {
        for reference in &node.input {
            if let Some((name, _)) = parse_input_reference(reference) {
                used.insert(name.to_string());
            }
        }
    }
    nodes
        .iter()
        .filter(|n| {
            !used.contains(&n.name) && !matches!(n.op.as_str(), "Const" | "NoOp" | "Placeholder")
        })
        .map(|n| n.name.clone())
        .collect()
}

/// Every node must have a name of its own: inputs refer to nodes by name, so a duplicate or an
/// empty name would make references ambiguous (and give a library two inputs of one name).
/// Reports every offending name at once.
fn check_node_names(nodes: &[NodeDef]) -> Result<(), ImportError> {
    let mut positions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (position, node) in nodes.iter().enumerate() {
        positions
            .entry(node.name.as_str())
            .or_default()
            .push(position);
    }
    let describe = |positions: &[usize]| {
        positions
            .iter()
            .map(|&position| format!("#{position} ({})", nodes[position].op))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let problems: Vec<String> = positions
        .iter()
        .filter(|(name, positions)| name.is_empty() || positions.len() > 1)
        .map(|(name, positions)| {
            if name.is_empty() {
                format!("nodes without a name: {}", describe(positions))
            } else {
                format!(
                    "{name:?} names {} nodes: {}",
                    positions.len(),
                    describe(positions)
                )
            }
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(ImportError::Graph(format!(
        "every node needs a unique, non-empty name; {}",
        problems.join("; ")
    )))
}

/// Kahn's algorithm over data and control edges; GraphDef order is not guaranteed.
fn topological_order<'a>(
    nodes: &'a [NodeDef],
    by_name: &HashMap<&str, &'a NodeDef>,
) -> Result<Vec<&'a NodeDef>, ImportError> {
    let mut pending: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, Vec<&'a NodeDef>> = HashMap::new();
    for node in nodes {
        let mut count = 0;
        for reference in &node.input {
            let name = reference.trim_start_matches('^');
            let name = parse_input_reference(name).map(|(n, _)| n).unwrap_or(name);
            if !by_name.contains_key(name) {
                return Err(ImportError::Node {
                    node: node.name.clone(),
                    op: node.op.clone(),
                    message: format!("input {reference:?} names no node of the graph"),
                });
            }
            count += 1;
            readers.entry(name).or_default().push(node);
        }
        pending.insert(node.name.as_str(), count);
    }
    let mut ready: Vec<&NodeDef> = nodes
        .iter()
        .filter(|n| pending[n.name.as_str()] == 0)
        .collect();
    ready.reverse();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(node) = ready.pop() {
        order.push(node);
        if let Some(list) = readers.get(node.name.as_str()) {
            for reader in list {
                let count = pending
                    .get_mut(reader.name.as_str())
                    .expect("every node is counted");
                *count -= 1;
                if *count == 0 {
                    ready.push(reader);
                }
            }
        }
    }
    if order.len() != nodes.len() {
        return Err(ImportError::Graph(
            "the graph has a cycle (control flow is not supported)".into(),
        ));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_references() {
        assert_eq!(parse_input_reference("conv"), Some(("conv", 0)));
        assert_eq!(parse_input_reference("split:2"), Some(("split", 2)));
        assert_eq!(parse_input_reference("^init"), None);
        assert_eq!(parse_input_reference("odd:name"), Some(("odd:name", 0)));
    }

    fn node(name: &str, op: &str) -> NodeDef {
        NodeDef {
            name: name.to_string(),
            op: op.to_string(),
            ..NodeDef::default()
        }
    }

    #[test]
    fn duplicate_and_empty_node_names_are_rejected_all_at_once() {
        let nodes = [
            node("x", "Placeholder"),
            node("x", "Placeholder"),
            node("", "Relu"),
            node("y", "Relu"),
            node("", "Const"),
        ];
        let message = check_node_names(&nodes).unwrap_err().to_string();
        assert_eq!(
            message,
            "every node needs a unique, non-empty name; nodes without a name: #2 (Relu), \
             #4 (Const); \"x\" names 2 nodes: #0 (Placeholder), #1 (Placeholder)"
        );
        assert!(check_node_names(&[node("x", "Placeholder"), node("y", "Relu")]).is_ok());
    }

    #[test]
    fn unsupported_ops_are_listed_with_counts() {
        let mut counts = BTreeMap::new();
        counts.insert("FooOp".to_string(), 2);
        counts.insert("BarOp".to_string(), 1);
        let text = ImportError::UnsupportedOps(counts).to_string();
        assert_eq!(text, "unsupported ops (3): BarOp ×1, FooOp ×2");
    }
}
