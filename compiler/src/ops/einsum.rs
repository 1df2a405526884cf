//! Einsum, imported as a composition of existing ops: sums over labels only one operand has
//! (`Reduce`), transposes to `[batch…, free…, contracted…]` (`Transpose`, or a transposed operand
//! of the product when an operand already has the other order), views that merge each label group
//! into one dimension (`Reshape`), one batched `MatMul`, a view back to one dimension per label and
//! a final transpose to the output's label order.
//!
//! Supported: one or two operands, explicit output (`->`), each label at most once per operand
//! (no diagonals), every output label present in some operand, labels shared by both operands of
//! equal size (no broadcasting), f32. That covers the patterns models use (`ab,bc->ac`,
//! `abc,cd->abd`, `abc,acd->abd`, `bhqd,bhkd->bhqk`, `bhqk,bhkd->bhqd`, `abcd,aecd->acbe`,
//! `ij->ji`, outer products, sums). Anything else (ellipsis, implicit output, repeated labels) is
//! an import error naming the node and the equation.
//!
//! Operand shapes are usually unknown at import time, so the merged sizes come from
//! [`GroupedShape`], a node that folds to a constant from its inputs' types once shapes are
//! inferred (as Shape does) and feeds the views' shape operands.

use std::any::Any;
use std::sync::Arc;

use super::matmul::MatMul;
use super::reduce::{Reduce, ReduceKind};
use super::shape::{Reshape, ReshapeMode, Transpose};
use super::{Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

// ---- GroupedShape ----

/// An int32 vector with one element per group: the product of the listed `(input, axis)`
/// dimensions (1 for an empty group). Known from input types alone: it always folds.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupedShape {
    pub groups: Vec<Vec<(usize, usize)>>,
}

impl GroupedShape {
    /// Attribute `groups`: for each group its length, then its (input, axis) pairs.
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let flat = a.ints("groups")?;
        let mut groups = Vec::new();
        let mut rest = &flat[..];
        while let Some((&count, tail)) = rest.split_first() {
            let count = usize::try_from(count).map_err(|_| invalid!("bad group length"))?;
            if tail.len() < 2 * count || tail.iter().take(2 * count).any(|&v| v < 0) {
                return Err(invalid!("malformed groups {flat:?}"));
            }
            groups.push(
                tail[..2 * count]
                    .chunks(2)
                    .map(|p| (p[0] as usize, p[1] as usize))
                    .collect(),
            );
            rest = &tail[2 * count..];
        }
        Ok(Arc::new(GroupedShape { groups }))
    }

    fn sizes(&self, shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
        self.groups
            .iter()
            .map(|group| {
                group.iter().try_fold(1usize, |product, &(input, axis)| {
                    let dim = shapes
                        .get(input)
                        .and_then(|shape| shape.get(axis))
                        .ok_or_else(|| invalid!("no axis {axis} in input {input}"))?;
                    product
                        .checked_mul(*dim)
                        .ok_or_else(|| invalid!("grouped size overflows"))
                })
            })
            .collect()
    }

    fn tensor(&self, shapes: &[&[usize]]) -> OpResult<Tensor> {
        let sizes = self.sizes(shapes)?;
        let values = sizes
            .iter()
            .map(|&s| i32::try_from(s).map_err(|_| invalid!("grouped size {s} exceeds int32")))
            .collect::<OpResult<Vec<i32>>>()?;
        Ok(Tensor::from_i32(vec![values.len()], values))
    }
}

impl Operator for GroupedShape {
    fn name(&self) -> &'static str {
        "grouped_shape"
    }

    fn attributes(&self) -> Attributes {
        let mut flat = Vec::new();
        for group in &self.groups {
            flat.push(group.len() as i64);
            for &(input, axis) in group {
                flat.extend([input as i64, axis as i64]);
            }
        }
        Attributes::default().with("groups", Attribute::Ints(flat))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let shapes: Vec<&[usize]> = inputs.types.iter().map(|t| &t.shape[..]).collect();
        self.sizes(&shapes)?;
        Ok(vec![TensorType::new(DType::I32, vec![self.groups.len()])])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| &t.shape[..]).collect();
        Ok(vec![self.tensor(&shapes)?])
    }

    fn fold_from_types(&self, inputs: &InputFacts) -> Option<Vec<Tensor>> {
        let shapes: Vec<&[usize]> = inputs.types.iter().map(|t| &t.shape[..]).collect();
        self.tensor(&shapes).ok().map(|t| vec![t])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("grouped_shape should have folded"))
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---- The equation ----

/// A parsed equation: the labels of each operand and of the output.
#[derive(Debug, PartialEq)]
pub struct Equation {
    pub operands: Vec<Vec<char>>,
    pub output: Vec<char>,
}

impl Equation {
    pub fn parse(text: &str) -> Result<Equation, String> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if text.contains('.') {
            return Err("ellipsis (`...`) is not supported".into());
        }
        let Some((inputs, output)) = text.split_once("->") else {
            return Err("an implicit output (no `->`) is not supported".into());
        };
        let labels = |part: &str| -> Result<Vec<char>, String> {
            let labels: Vec<char> = part.chars().collect();
            if let Some(bad) = labels.iter().find(|c| !c.is_ascii_alphabetic()) {
                return Err(format!("`{bad}` is not a label (letters only)"));
            }
            for (i, c) in labels.iter().enumerate() {
                if labels[..i].contains(c) {
                    return Err(format!(
                        "label `{c}` repeats in `{part}` (diagonals and traces are not supported)"
                    ));
                }
            }
            Ok(labels)
        };
        let operands = inputs
            .split(',')
            .map(labels)
            .collect::<Result<Vec<_>, _>>()?;
        if operands.len() > 2 {
            return Err(format!(
                "{} operands (1 or 2 are supported)",
                operands.len()
            ));
        }
        let output = labels(output)?;
        if let Some(c) = output
            .iter()
            .find(|c| !operands.iter().any(|o| o.contains(c)))
        {
            return Err(format!("output label `{c}` is in no operand"));
        }
        Ok(Equation { operands, output })
    }
}

/// The positions of `labels` in `order`.
fn positions(order: &[char], labels: &[char]) -> Vec<usize> {
    labels
        .iter()
        .map(|c| order.iter().position(|o| o == c).expect("label present"))
        .collect()
}

/// Emits the composition into the graph.
struct Emitter<'a, 'g> {
    importer: &'a mut Importer<'g>,
    name: String,
    count: usize,
    last: Option<crate::ir::NodeId>,
}

impl Emitter<'_, '_> {
    fn node(&mut self, what: &str, op: Arc<dyn Operator>, inputs: Vec<ValueId>) -> ValueId {
        self.count += 1;
        let name = format!("{}/{what}{}", self.name, self.count);
        let id = self.importer.graph.add_node(&name, op, inputs, 1);
        self.last = Some(id);
        self.importer
            .graph
            .node(id)
            .map(|n| n.outputs[0])
            .unwrap_or(ValueId(0))
    }

    fn constant(&mut self, what: &str, values: &[usize]) -> ValueId {
        self.count += 1;
        let name = format!("{}/{what}{}", self.name, self.count);
        let tensor = Tensor::from_i32(
            vec![values.len()],
            values.iter().map(|&v| v as i32).collect(),
        );
        self.importer.constant(&name, tensor)
    }

    /// `value` (labels `labels`) with the labels `keep` does not list summed away.
    fn sum_out(&mut self, value: ValueId, labels: &mut Vec<char>, keep: &[char]) -> ValueId {
        let axes: Vec<usize> = (0..labels.len())
            .filter(|&a| !keep.contains(&labels[a]))
            .collect();
        if axes.is_empty() {
            return value;
        }
        labels.retain(|c| keep.contains(c));
        let op = Reduce {
            kind: ReduceKind::Sum,
            axes,
            keep_dims: false,
        };
        self.node("sum", Arc::new(op), vec![value])
    }

    /// `value` (labels `labels`) transposed to `order`.
    fn transpose(&mut self, value: ValueId, labels: &[char], order: &[char]) -> ValueId {
        if labels == order {
            return value;
        }
        let perm = self.constant("perm", &positions(labels, order));
        self.node("transpose", Arc::new(Transpose), vec![value, perm])
    }

    /// `value` viewed with the shape `GroupedShape(sources, groups)`.
    fn reshape(
        &mut self,
        value: ValueId,
        sources: Vec<ValueId>,
        groups: Vec<Vec<(usize, usize)>>,
    ) -> ValueId {
        let shape = self.node("shape", Arc::new(GroupedShape { groups }), sources);
        let op = Reshape {
            mode: ReshapeMode::FromOperand,
        };
        self.node("view", Arc::new(op), vec![value, shape])
    }
}

/// Einsum(inputs…) with attribute `equation`.
pub fn import_einsum(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let text = NodeAttributes::of(node)
        .string("equation")
        .map_err(node_error(node))?;
    let equation = Equation::parse(&text)
        .map_err(|message| importer.error(node, format!("equation `{text}`: {message}")))?;
    if inputs.len() != equation.operands.len() {
        return Err(importer.error(
            node,
            format!(
                "equation `{text}` has {} operands, the node {} inputs",
                equation.operands.len(),
                inputs.len()
            ),
        ));
    }
    let mut emitter = Emitter {
        importer,
        name: node.name.clone(),
        count: 0,
        last: None,
    };
    let output = &equation.output;
    let result = if let [labels] = &equation.operands[..] {
        let mut labels = labels.clone();
        let value = emitter.sum_out(inputs[0], &mut labels, output);
        emitter.transpose(value, &labels, output)
    } else {
        contract(&mut emitter, &equation, inputs[0], inputs[1])
    };
    // The last node takes the TensorFlow node's name (messages, `inspect`).
    if let Some(id) = emitter.last {
        if let Some(last) = emitter.importer.graph.node_mut(id) {
            last.name = node.name.clone();
        }
    }
    Ok(vec![result])
}

/// Two operands: the batched matrix product over the shared labels.
fn contract(emitter: &mut Emitter, equation: &Equation, a: ValueId, b: ValueId) -> ValueId {
    let output = &equation.output;
    let (mut la, mut lb) = (equation.operands[0].clone(), equation.operands[1].clone());
    // Labels of one operand only that the output lacks are summed first.
    let keep_a: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| output.contains(c) || lb.contains(c))
        .collect();
    let keep_b: Vec<char> = lb
        .iter()
        .copied()
        .filter(|c| output.contains(c) || la.contains(c))
        .collect();
    let a = emitter.sum_out(a, &mut la, &keep_a);
    let b = emitter.sum_out(b, &mut lb, &keep_b);
    let batch: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && output.contains(c))
        .collect();
    let contracted: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && !output.contains(c))
        .collect();
    let free_a: Vec<char> = la.iter().copied().filter(|c| !lb.contains(c)).collect();
    let free_b: Vec<char> = lb.iter().copied().filter(|c| !la.contains(c)).collect();
    let join = |parts: &[&[char]]| -> Vec<char> { parts.concat() };

    // A as [batch, free_a, contracted], or already [batch, contracted, free_a] (transpose_a).
    let normal_a = join(&[&batch, &free_a, &contracted]);
    let transpose_a = la != normal_a && la == join(&[&batch, &contracted, &free_a]);
    let order_a = if transpose_a { la.clone() } else { normal_a };
    let a = emitter.transpose(a, &la, &order_a);
    let normal_b = join(&[&batch, &contracted, &free_b]);
    let transpose_b = lb != normal_b && lb == join(&[&batch, &free_b, &contracted]);
    let order_b = if transpose_b { lb.clone() } else { normal_b };
    let b = emitter.transpose(b, &lb, &order_b);

    // Views with one dimension per group: [batch…, rows, depth] and [batch…, depth, columns].
    let nb = batch.len();
    let axis_groups = |order: &[char], first: &[char], second: &[char]| {
        let mut groups: Vec<Vec<(usize, usize)>> = (0..nb).map(|i| vec![(0, i)]).collect();
        for part in [first, second] {
            groups.push(positions(order, part).into_iter().map(|p| (0, p)).collect());
        }
        groups
    };
    let (a_first, a_second) = if transpose_a {
        (&contracted, &free_a)
    } else {
        (&free_a, &contracted)
    };
    let a_view = if a_first.len() == 1 && a_second.len() == 1 {
        a
    } else {
        emitter.reshape(a, vec![a], axis_groups(&order_a, a_first, a_second))
    };
    let (b_first, b_second) = if transpose_b {
        (&free_b, &contracted)
    } else {
        (&contracted, &free_b)
    };
    let b_view = if b_first.len() == 1 && b_second.len() == 1 {
        b
    } else {
        emitter.reshape(b, vec![b], axis_groups(&order_b, b_first, b_second))
    };
    let product = MatMul {
        transpose_a,
        transpose_b,
        epilogue: Default::default(),
    };
    let mut value = emitter.node("matmul", Arc::new(product), vec![a_view, b_view]);
    // Back to one dimension per label: [batch…, free_a…, free_b…].
    if free_a.len() != 1 || free_b.len() != 1 {
        let mut groups: Vec<Vec<(usize, usize)>> = (0..nb).map(|i| vec![(0, i)]).collect();
        groups.extend(
            positions(&order_a, &free_a)
                .into_iter()
                .map(|p| vec![(0, p)]),
        );
        groups.extend(
            positions(&order_b, &free_b)
                .into_iter()
                .map(|p| vec![(1, p)]),
        );
        value = emitter.reshape(value, vec![a, b], groups);
    }
    let labels = join(&[&batch, &free_a, &free_b]);
    emitter.transpose(value, &labels, output)
}

pub const FAMILY: Family = Family {
    ir: &[("grouped_shape", GroupedShape::parse)],
    tensorflow: &[("Einsum", import_einsum)],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::node_def;
    use tfjsc_proto::tensorflow::attr_value;

    fn import(equation: &str, count: usize) -> Result<Graph, String> {
        let mut graph = Graph::new();
        let inputs: Vec<ValueId> = (0..count)
            .map(|i| graph.add_input(&format!("x{i}"), None))
            .collect();
        let node = node_def(
            "e",
            "Einsum",
            &[(
                "equation",
                attr_value::Value::S(equation.as_bytes().to_vec()),
            )],
        );
        let mut importer = Importer::new(&mut graph);
        import_einsum(&mut importer, &node, &inputs).map_err(|e| e.to_string())?;
        Ok(graph)
    }

    fn op_names(graph: &Graph) -> Vec<&'static str> {
        graph.nodes().map(|(_, n)| n.op.name()).collect()
    }

    #[test]
    fn einsum_patterns_import_without_needless_nodes() {
        for (equation, expected) in [
            ("ab,bc->ac", vec!["matmul"]),
            ("abc,acd->abd", vec!["matmul"]),
            ("bhqd,bhkd->bhqk", vec!["matmul"]),
            ("bhqk,bhkd->bhqd", vec!["matmul"]),
            ("ba,bc->ac", vec!["matmul"]),
            ("ij->ji", vec!["transpose"]),
            ("ij->i", vec!["reduce"]),
            ("abcd,aecd->acbe", vec!["transpose", "transpose", "matmul"]),
        ] {
            let graph = import(equation, equation.split(',').count()).unwrap();
            assert_eq!(op_names(&graph), expected, "{equation}");
            let last = graph.nodes().last().unwrap().1;
            assert_eq!(last.name, "e", "{equation}");
        }
        // abc,cd->abd: views merge a and b.
        let graph = import("abc,cd->abd", 2).unwrap();
        assert_eq!(
            op_names(&graph),
            vec![
                "grouped_shape",
                "reshape",
                "matmul",
                "grouped_shape",
                "reshape"
            ]
        );
    }

    #[test]
    fn einsum_import_errors_name_the_node_and_the_equation() {
        for (equation, count, message) in [
            ("...ij,...jk->...ik", 2, "ellipsis"),
            ("ij,jk", 2, "implicit"),
            ("ii->i", 1, "repeats"),
            ("ij,jk->il", 2, "`l` is in no operand"),
            ("a,b,c->abc", 3, "3 operands"),
            ("ab,bc->ac", 1, "has 2 operands"),
            ("a1->a", 1, "not a label"),
        ] {
            let error = import(equation, count).unwrap_err();
            assert!(
                error.contains("\"e\"") && error.contains(equation) && error.contains(message),
                "{equation}: {error}"
            );
        }
    }

    #[test]
    fn grouped_shape_folds_and_round_trips() {
        let op = GroupedShape {
            groups: vec![vec![(0, 0)], vec![], vec![(0, 1), (1, 0)]],
        };
        let a = TensorType::new(DType::F32, vec![2, 3]);
        let b = TensorType::new(DType::F32, vec![5]);
        let facts = InputFacts {
            types: vec![&a, &b],
            constants: vec![None, None],
        };
        assert_eq!(
            op.fold_from_types(&facts).unwrap()[0],
            Tensor::from_i32(vec![3], vec![2, 1, 15])
        );
        let parsed = GroupedShape::parse(&op.attributes()).unwrap();
        assert_eq!(parsed.as_any().downcast_ref::<GroupedShape>(), Some(&op));
    }
}
