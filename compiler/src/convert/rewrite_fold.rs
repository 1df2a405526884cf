//! Constant folding: nodes whose inputs are all constants are replaced by their value, as
//! Grappler's constant folding does for the Python converter (batch-norm and bias arithmetic,
//! shape computations, Keras' sequence lengths). The value is the compiler's own: the IR ops
//! `tfjsc compile` imports the node as, folded by its passes (`import::evaluate_node`), so an
//! op's semantics are defined once. Results are bounded in size there, so a hostile graph cannot
//! make the converter allocate without limit (each value, and all of them together).

use tfjsc_proto::tensorflow::{attr_value, DataType, NodeDef};

use super::error::ConvertError;
use super::rewrite::{constant_node, Graph};
use super::tensor::Tensor;
use super::ConvertOptions;

/// Largest value folding may make that is larger than its inputs together: Grappler's rule
/// (`kMaxConstantSize`), so a `Fill` or a broadcast is folded only when small.
const MAX_GROWN_BYTES: usize = 100 * 1024;

/// Bytes all folded values may take together beyond this multiple of the graph's constants
/// before folding (plus [`FOLD_BUDGET_SLACK`]): a hostile graph's chain of thousands of `Add`s
/// of one large constant would otherwise hold a copy per node.
const FOLD_BUDGET_MULTIPLE: usize = 4;
const FOLD_BUDGET_SLACK: usize = 64 << 20;

/// Replaces nodes whose inputs are all constants by their value.
pub fn fold_constants(graph: &mut Graph, _: &ConvertOptions) -> Result<(), ConvertError> {
    let outputs = graph.output_nodes();
    let constant_bytes: usize = graph.constants.values().map(|t| t.bytes.len()).sum();
    let mut budget = constant_bytes
        .saturating_mul(FOLD_BUDGET_MULTIPLE)
        .saturating_add(FOLD_BUDGET_SLACK);
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        if node.op == "Const" || outputs.contains(&node.name) || node.input.is_empty() {
            continue;
        }
        let inputs: Option<Vec<&Tensor>> = node.input.iter().map(|i| graph.constant(i)).collect();
        let Some(inputs) = inputs else { continue };
        let input_bytes: usize = inputs.iter().map(|t| t.bytes.len()).sum();
        let Some(value) = evaluate(node, &inputs) else {
            continue;
        };
        let bytes = value.bytes.len();
        if (bytes > input_bytes && bytes >= MAX_GROWN_BYTES) || bytes > budget {
            continue;
        }
        budget -= bytes;
        let name = node.name.clone();
        graph.nodes[index] = constant_node(&name, &value);
        graph.constants.insert(name, value);
    }
    Ok(())
}

/// Attributes that name an op's output dtype (`Cast`'s `DstT`, `Shape`'s `out_type`, ...).
/// `Range`'s `Tidx` is its output's type too; elsewhere `Tidx` types axes (`ConcatV2`, `Sum`).
fn declared_output_type(node: &NodeDef) -> Option<DataType> {
    let names: &[&str] = match node.op.as_str() {
        "Range" => &["Tidx"],
        _ => &["DstT", "out_type", "output_type"],
    };
    names
        .iter()
        .find_map(|name| match node.attr.get(*name)?.value.as_ref()? {
            attr_value::Value::Type(t) => DataType::try_from(*t).ok(),
            _ => None,
        })
}

/// The value of single-output `node` on constant `inputs`, where the compiler folds it and the
/// dtypes stay what TensorFlow declares.
fn evaluate(node: &NodeDef, inputs: &[&Tensor]) -> Option<Tensor> {
    let inputs = inputs
        .iter()
        .map(|t| t.to_ir())
        .collect::<Option<Vec<_>>>()?;
    let outputs = crate::import::evaluate_node(node, inputs)?;
    let [output] = outputs.as_slice() else {
        return None;
    };
    let value = Tensor::from_ir(output)?;
    declared_output_type(node)
        .is_none_or(|dtype| dtype == value.dtype)
        .then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, keep_dims: bool) -> NodeDef {
        let mut node = NodeDef {
            op: op.into(),
            ..NodeDef::default()
        };
        node.attr.insert(
            "keep_dims".into(),
            tfjsc_proto::tensorflow::AttrValue {
                value: Some(attr_value::Value::B(keep_dims)),
            },
        );
        node
    }

    #[test]
    fn ranges_fold_like_tensorflow() {
        let range = |start: i32, limit: i32, delta: i32| {
            let (a, b, c) = (
                Tensor::int32(vec![], &[start]),
                Tensor::int32(vec![], &[limit]),
                Tensor::int32(vec![], &[delta]),
            );
            evaluate(&node("Range", false), &[&a, &b, &c]).map(|t| t.as_i32().unwrap())
        };
        assert_eq!(range(0, 5, 2), Some(vec![0, 2, 4]));
        assert_eq!(range(0, -5, -2), Some(vec![0, -2, -4]));
        assert_eq!(range(0, 0, 1), Some(vec![]));
        // TensorFlow refuses a range that runs away from its limit at run time; TF.js, which
        // runs the converted model, and the compiler give it no values.
        assert_eq!(range(0, 3, -1), Some(vec![]));
        assert_eq!(range(0, 3, 0), None);
    }

    #[test]
    fn reductions_fold_over_the_given_axes() {
        let a = Tensor::float32(vec![2, 3], &[1.0, 5.0, 3.0, 4.0, 2.0, 6.0]);
        let axis = |axes: &[i32]| Tensor::int32(vec![axes.len() as i64], axes);
        let max_rows = evaluate(&node("Max", false), &[&a, &axis(&[1])]).unwrap();
        assert_eq!(
            (max_rows.shape.clone(), max_rows.as_f32().unwrap()),
            (vec![2], vec![5.0, 6.0])
        );
        let sum_columns = evaluate(&node("Sum", true), &[&a, &axis(&[-2])]).unwrap();
        assert_eq!(
            (sum_columns.shape.clone(), sum_columns.as_f32().unwrap()),
            (vec![1, 3], vec![5.0, 7.0, 9.0])
        );
        // A scalar reduced over no axes (Keras' sequence length) is itself.
        let scalar = Tensor::int32(vec![], &[5]);
        let none = Tensor::int32(vec![0], &[]);
        let max = evaluate(&node("Max", false), &[&scalar, &none]).unwrap();
        assert_eq!(
            (max.shape.clone(), max.as_i32().unwrap()),
            (vec![], vec![5])
        );
        assert!(evaluate(&node("Prod", false), &[&a, &axis(&[2])]).is_none());
    }

    #[test]
    fn broadcasting_folds_like_numpy() {
        let a = Tensor::float32(vec![2, 1], &[1.0, 2.0]);
        let b = Tensor::float32(vec![3], &[10.0, 20.0, 30.0]);
        let sum = evaluate(&node("AddV2", false), &[&a, &b]).unwrap();
        assert_eq!(sum.shape, vec![2, 3]);
        assert_eq!(
            sum.as_f32().unwrap(),
            vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]
        );
        let c = Tensor::float32(vec![2], &[1.0, 2.0]);
        assert!(evaluate(&node("AddV2", false), &[&b, &c]).is_none());
    }

    #[test]
    fn casts_fold_only_to_the_declared_dtype() {
        let cast = |to: DataType| {
            let mut node = node("Cast", false);
            node.attr.insert(
                "DstT".into(),
                tfjsc_proto::tensorflow::AttrValue {
                    value: Some(attr_value::Value::Type(to as i32)),
                },
            );
            let a = Tensor::float32(vec![3], &[-1.5, 0.5, 2.7]);
            evaluate(&node, &[&a])
        };
        assert_eq!(
            cast(DataType::DtInt32).unwrap().as_i32(),
            Some(vec![-1, 0, 2])
        );
        // TF.js has no int64: the compiler's int64 is not the value TensorFlow declares.
        assert_eq!(cast(DataType::DtInt64), None);
    }

    #[test]
    fn folding_grows_the_graph_only_by_small_values() {
        use super::super::rewrite::test_node;
        use std::collections::HashMap;
        // Fill(dims, 1.0): 8 × 8 floats fold; 256 × 256 (256 KB from 12 bytes) do not.
        let graph_of = |side: i32| {
            let (dims, one) = (
                Tensor::int32(vec![2], &[side, side]),
                Tensor::float32(vec![], &[1.0]),
            );
            let nodes = vec![
                constant_node("dims", &dims),
                constant_node("one", &one),
                test_node("fill", "Fill", &["dims", "one"]),
                test_node("out", "Relu", &["fill"]),
            ];
            let constants = HashMap::from([("dims".into(), dims), ("one".into(), one)]);
            let mut graph = Graph::new(nodes, constants, &["out".to_string()]);
            fold_constants(&mut graph, &ConvertOptions::default()).unwrap();
            graph.constants.get("fill").map(Tensor::len)
        };
        assert_eq!(graph_of(8), Some(64));
        assert_eq!(graph_of(256), None);
    }

    #[test]
    fn all_folded_values_together_stay_within_a_budget() {
        use super::super::rewrite::test_node;
        use std::collections::HashMap;
        // A chain of Adds of one 4 MB constant: each result is as large as its inputs, and
        // every one would be kept; the budget (4 × 4 MB + 64 MB) stops the chain at 20.
        let big = Tensor::float32(vec![1 << 20], &vec![1.0; 1 << 20]);
        let mut nodes = vec![constant_node("big", &big)];
        let mut previous = "big".to_string();
        for k in 0..40 {
            let name = format!("add{k}");
            nodes.push(test_node(&name, "AddV2", &[&previous, "big"]));
            previous = name;
        }
        nodes.push(test_node("out", "Relu", &[&previous]));
        let constants = HashMap::from([("big".into(), big)]);
        let mut graph = Graph::new(nodes, constants, &["out".to_string()]);
        fold_constants(&mut graph, &ConvertOptions::default()).unwrap();
        let folded = (0..40)
            .filter(|k| graph.constants.contains_key(&format!("add{k}")))
            .count();
        assert_eq!(folded, 20);
        assert_eq!(graph.constants["add19"].as_f32().unwrap()[0], 21.0);
    }

    #[test]
    fn an_axis_type_is_not_the_output_type() {
        // ConcatV2's and Sum's Tidx type their axis: int32 axes of float values still fold.
        let a = Tensor::float32(vec![2, 1], &[1.0, 2.0]);
        let b = Tensor::float32(vec![2, 2], &[3.0, 4.0, 5.0, 6.0]);
        let axis = Tensor::int32(vec![], &[1]);
        for op in ["ConcatV2", "Sum"] {
            let mut node = node(op, false);
            node.attr.insert(
                "Tidx".into(),
                tfjsc_proto::tensorflow::AttrValue {
                    value: Some(attr_value::Value::Type(DataType::DtInt32 as i32)),
                },
            );
            let inputs: Vec<&Tensor> = if op == "Sum" {
                vec![&b, &axis]
            } else {
                vec![&a, &b, &axis]
            };
            let value = evaluate(&node, &inputs).unwrap_or_else(|| panic!("{op} not folded"));
            let expected = if op == "Sum" {
                vec![7.0, 11.0]
            } else {
                vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]
            };
            assert_eq!(value.as_f32().unwrap(), expected, "{op}");
        }
    }
}
