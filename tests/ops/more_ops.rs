//! SparseToDense, All/Any, LRN and Einsum: every kernel against the op's reference evaluation
//! (Einsum: against a sum over the contracted labels written here from the definition). Tensors
//! under test are graph inputs (run-time data), so nothing folds away.

use std::sync::Arc;

use std::collections::HashMap;

use tfjsc::ir::{DType, Graph, Tensor};
use tfjsc::ops::einsum::import_einsum;
use tfjsc::ops::importer::Importer;
use tfjsc::ops::lrn::Lrn;
use tfjsc::ops::reduce::{Reduce, ReduceKind};
use tfjsc::ops::sparse_to_dense::SparseToDense;
use tfjsc::ops::Operator;
use tfjsc_proto::tensorflow::{attr_value, AttrValue, NodeDef};

use crate::harness::*;

/// Compiles one node `op` over graph inputs `feeds`, runs it and returns what `run` did.
fn run_node(op: impl Operator, feeds: Vec<Tensor>) -> Result<Vec<tfjsc_runtime::Tensor>, String> {
    let mut graph = Graph::new();
    let inputs = feeds
        .iter()
        .enumerate()
        .map(|(i, t)| graph.add_input(&format!("input{i}"), Some(t.tensor_type())))
        .collect();
    let node = graph.add_node("picky_node", Arc::new(op), inputs, 1);
    let value = graph.node(node).expect("just added").outputs[0];
    graph.add_output("output0", value);
    execute(graph, &feeds)
}

/// `op` over `feeds` must make `run` fail with an error naming the node.
fn assert_run_fails(label: &str, op: impl Operator, feeds: Vec<Tensor>) {
    match run_node(op, feeds) {
        Ok(_) => panic!("{label}: run succeeded with an out-of-range index"),
        Err(message) => assert!(
            message.starts_with("run:") && message.contains("picky_node"),
            "{label}: {message}"
        ),
    }
}

/// Values of `dtype`: f32 in ±10, i32 in ±1000, bools.
fn typed(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    match dtype {
        DType::F32 => uniform(shape, seed, -10.0, 10.0),
        DType::I32 => ints(shape, seed, -1000, 1000),
        DType::Bool => bools(shape, seed),
        DType::I64 => panic!("no int64 test data"),
    }
}

// ---------------------------------------------------------------------------------------------
// SparseToDense
// ---------------------------------------------------------------------------------------------

/// Indices `[n, rank]` (or `[n]`, `[]` for 1-D outputs when `index_shape` says so) in range of
/// `shape`, with duplicates likely when n is large against the output.
fn sparse_indices(index_shape: &[usize], shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let depth = shape.len().max(1);
    let count = count_of(index_shape);
    let values = (0..count)
        .map(|position| {
            shape
                .get(position % depth)
                .map_or(0, |&d| rng.below(d as u64)) as i32
        })
        .collect();
    Tensor::from_i32(index_shape.to_vec(), values)
}

/// (index shape, output shape, scalar values).
const SPARSE: &[(&[usize], &[usize], bool)] = &[
    (&[], &[5], false),
    (&[], &[5], true),
    (&[3], &[7], false),
    (&[6], &[4], false),
    (&[6], &[4], true),
    (&[0], &[4], false),
    (&[4, 1], &[9], false),
    (&[5, 2], &[3, 4], false),
    (&[12, 2], &[3, 2], false),
    (&[5, 2], &[3, 4], true),
    (&[7, 3], &[2, 3, 5], false),
    (&[20, 4], &[2, 2, 3, 2], false),
    (&[3, 0], &[], false),
    (&[2, 2], &[0, 3], false),
    (&[0, 2], &[0, 3], true),
];

#[test]
fn more_ops_sparse_to_dense_kernels_match_reference() {
    let mut cases = Vec::new();
    for (s, &(index_shape, shape, scalar)) in SPARSE.iter().enumerate() {
        if shape.contains(&0) && index_shape.first() != Some(&0) {
            continue; // every index is out of range: see the failure test
        }
        for (d, dtype) in [DType::F32, DType::I32, DType::Bool]
            .into_iter()
            .enumerate()
        {
            let n = match index_shape {
                [] => 1,
                [n, ..] => *n,
            };
            let values_shape: Vec<usize> = if scalar { vec![] } else { vec![n] };
            let seed = (s * 10 + d) as u64;
            let indices = sparse_indices(index_shape, shape, seed);
            let values = typed(&values_shape, dtype, seed + 3);
            let default = typed(&[], dtype, seed + 7);
            cases.push(single(
                format!(
                    "sparse_to_dense {dtype:?} indices{index_shape:?} shape{shape:?} \
                     scalar={scalar}"
                ),
                SparseToDense {
                    shape: shape.to_vec(),
                },
                vec![indices, values, default],
                Tol::Exact,
            ));
        }
    }
    check_cases("sparse_to_dense", cases, 12);
}

#[test]
fn more_ops_sparse_to_dense_duplicates_keep_the_last_value() {
    let op = SparseToDense { shape: vec![2, 3] };
    let indices = Tensor::from_i32(vec![4, 2], vec![1, 2, 0, 0, 1, 2, 1, 2]);
    let values = Tensor::from_f32(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
    let default = f32_scalar(0.5);
    let outputs = run_node(op, vec![indices, values, default]).expect("run");
    assert_eq!(
        outputs[0].to_f32().unwrap(),
        vec![2.0, 0.5, 0.5, 0.5, 0.5, 4.0]
    );
}

#[test]
fn more_ops_sparse_to_dense_out_of_range_indices_fail_the_run() {
    let default = f32_scalar(0.0);
    // Each component is checked against its own dimension: (0, 4) flattens to 4, inside the
    // output, and still fails (as in TensorFlow).
    for (label, index_shape, index_values, shape) in [
        (
            "component too large",
            vec![2, 2],
            vec![0, 0, 0, 4],
            vec![3, 4],
        ),
        (
            "negative component",
            vec![2, 2],
            vec![-1, 0, 0, 1],
            vec![3, 4],
        ),
        ("vector index", vec![3], vec![0, 7, 1], vec![7]),
        ("scalar index", vec![], vec![-3], vec![7]),
        ("empty output", vec![1, 2], vec![0, 0], vec![0, 3]),
        ("huge", vec![1, 3], vec![1, i32::MAX, 0], vec![2, 2, 2]),
    ] {
        let n = index_shape.first().copied().unwrap_or(1);
        let indices = Tensor::from_i32(index_shape, index_values);
        let values = Tensor::from_f32(vec![n], vec![1.0; n]);
        assert_run_fails(
            label,
            SparseToDense { shape },
            vec![indices, values, default.clone()],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// All, Any
// ---------------------------------------------------------------------------------------------

/// Bools, mostly `value` (so that whole rows of it occur and both results show up).
fn biased_bools(shape: &[usize], seed: u64, value: bool) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::from_bool(
        shape.to_vec(),
        (0..count_of(shape))
            .map(|_| if rng.below(8) == 0 { !value } else { value })
            .collect(),
    )
}

#[test]
fn more_ops_all_any_kernels_match_reference_over_every_axis_set() {
    let shapes: &[&[usize]] = &[
        &[],
        &[1],
        &[5],
        &[37],
        &[3, 4],
        &[2, 17],
        &[4, 33],
        &[2, 3, 5],
        &[3, 2, 20],
        &[2, 3, 2, 4],
        &[2, 0, 3],
        // A block of eight 16-byte vectors, a shorter block and a tail (8·16 + 2·16 + 5).
        &[3, 165],
    ];
    let mut cases = Vec::new();
    for (s, shape) in shapes.iter().enumerate() {
        let rank = shape.len();
        for mask in 0..1usize << rank {
            let axes: Vec<usize> = (0..rank).filter(|a| mask >> a & 1 == 1).collect();
            for (k, kind) in [ReduceKind::All, ReduceKind::Any].into_iter().enumerate() {
                for keep_dims in [false, true] {
                    // Mostly true for All, mostly false for Any: rows of one value are likely.
                    let seed = (s * 1000 + mask * 4 + k * 2 + keep_dims as usize) as u64;
                    let input = biased_bools(shape, seed, kind == ReduceKind::All);
                    cases.push(single(
                        format!("{kind:?} {shape:?} axes={axes:?} keep_dims={keep_dims}"),
                        Reduce {
                            kind,
                            axes: axes.clone(),
                            keep_dims,
                        },
                        vec![input],
                        Tol::Exact,
                    ));
                }
            }
        }
    }
    check_cases("all_any", cases, 40);
}

#[test]
fn more_ops_all_any_take_only_bools() {
    for (kind, dtype) in [
        (ReduceKind::All, DType::F32),
        (ReduceKind::Any, DType::I32),
        (ReduceKind::Sum, DType::Bool),
    ] {
        let op = Reduce {
            kind,
            axes: vec![0],
            keep_dims: false,
        };
        let input = typed(&[3], dtype, 1);
        assert!(op.evaluate(&[&input]).is_err(), "{kind:?} {dtype:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// LRN
// ---------------------------------------------------------------------------------------------

/// LRN against its reference (`powf`): `AbsRel(2e-6)`, |got − expected| ≤ 2e-6 · (1 + |expected|).
/// The window sums are bitwise the reference's; the power is a square root and a division
/// (beta 0.5, 0.75, 1: within an ulp or two of `powf`) or exp(−beta · log) (relative error of a
/// few 1e-7 for the exponents here).
#[test]
fn more_ops_lrn_kernels_match_reference() {
    let shapes: &[&[usize]] = &[
        &[1, 1, 1, 1],
        &[1, 2, 2, 3],
        &[2, 3, 3, 8],
        &[1, 4, 5, 17],
        &[1, 2, 2, 64],
        &[1, 1, 3, 0],
    ];
    // (depth_radius, bias, alpha, beta): TensorFlow's defaults, AlexNet's, the special powers and
    // a window wider than the channels.
    let settings: &[(usize, f32, f32, f32)] = &[
        (5, 1.0, 1.0, 0.5),
        (2, 2.0, 1e-4, 0.75),
        (2, 1.0, 2e-5, 0.75),
        (1, 1.0, 0.1, 1.0),
        (0, 0.5, 0.3, 0.3),
        (3, 1.5, 0.01, 0.0),
        (40, 1.0, 0.001, 1.7),
        (4, 3.0, 0.05, -0.4),
    ];
    let mut cases = Vec::new();
    for (s, shape) in shapes.iter().enumerate() {
        for (t, &(depth_radius, bias, alpha, beta)) in settings.iter().enumerate() {
            let input = uniform(shape, (s * 100 + t) as u64, -10.0, 10.0);
            cases.push(single(
                format!("lrn {shape:?} r={depth_radius} bias={bias} alpha={alpha} beta={beta}"),
                Lrn {
                    depth_radius,
                    bias,
                    alpha,
                    beta,
                },
                vec![input],
                TRANSCENDENTAL,
            ));
        }
    }
    check_cases("lrn", cases, 16);
}

// ---------------------------------------------------------------------------------------------
// Einsum
// ---------------------------------------------------------------------------------------------

/// Einsum from the definition: every output element is the sum, over all values of the labels
/// the output lacks, of the product of the operands' elements.
fn einsum_reference(equation: &str, operands: &[&Tensor]) -> Tensor {
    let (inputs, output) = equation.split_once("->").expect("explicit output");
    let labels: Vec<Vec<char>> = inputs.split(',').map(|p| p.chars().collect()).collect();
    let output: Vec<char> = output.chars().collect();
    let mut sizes: HashMap<char, usize> = HashMap::new();
    for (operand, labels) in operands.iter().zip(&labels) {
        for (&label, &size) in labels.iter().zip(&operand.shape) {
            assert_eq!(*sizes.entry(label).or_insert(size), size, "label {label}");
        }
    }
    let mut summed: Vec<char> = sizes
        .keys()
        .copied()
        .filter(|c| !output.contains(c))
        .collect();
    summed.sort_unstable();
    let out_shape: Vec<usize> = output.iter().map(|c| sizes[c]).collect();
    let sum_shape: Vec<usize> = summed.iter().map(|c| sizes[c]).collect();
    let values: Vec<Vec<f32>> = operands.iter().map(|t| t.to_f32_vec()).collect();
    let mut result = Vec::with_capacity(count_of(&out_shape));
    for flat in 0..count_of(&out_shape) {
        let mut at: HashMap<char, usize> = output
            .iter()
            .copied()
            .zip(multi_index(flat, &out_shape))
            .collect();
        let mut total = 0.0f64;
        for inner in 0..count_of(&sum_shape) {
            at.extend(summed.iter().copied().zip(multi_index(inner, &sum_shape)));
            let mut product = 1.0f64;
            for ((operand, labels), data) in operands.iter().zip(&labels).zip(&values) {
                let mut position = 0;
                for (&label, &size) in labels.iter().zip(&operand.shape) {
                    position = position * size + at[&label];
                }
                product *= data[position] as f64;
            }
            total += product;
        }
        result.push(total as f32);
    }
    Tensor::from_f32(out_shape, result)
}

/// (equation, operand shapes).
const EINSUMS: &[(&str, &[&[usize]])] = &[
    ("ab,bc->ac", &[&[3, 5], &[5, 4]]),
    ("ab,bc->ac", &[&[1, 17], &[17, 9]]),
    ("abc,cd->abd", &[&[2, 3, 6], &[6, 5]]),
    ("abc,cd->abd", &[&[4, 1, 8], &[8, 3]]),
    ("abc,acd->abd", &[&[3, 4, 5], &[3, 5, 2]]),
    ("abcd,aecd->acbe", &[&[2, 3, 4, 5], &[2, 6, 4, 5]]),
    ("abcd,aecd->aceb", &[&[2, 3, 2, 8], &[2, 4, 2, 8]]),
    ("bhqd,bhkd->bhqk", &[&[2, 3, 5, 8], &[2, 3, 7, 8]]),
    ("bhqk,bhkd->bhqd", &[&[2, 3, 5, 7], &[2, 3, 7, 8]]),
    ("ij->ji", &[&[3, 7]]),
    ("abc->cab", &[&[2, 3, 4]]),
    ("ij->i", &[&[4, 6]]),
    ("ba,bc->ac", &[&[6, 3], &[6, 4]]),
    ("ab,cb->ac", &[&[3, 6], &[4, 6]]),
    ("abc,bcd->ad", &[&[2, 3, 4], &[3, 4, 5]]),
    ("bij,bjk->bki", &[&[2, 3, 4], &[2, 4, 5]]),
    ("a,b->ab", &[&[5], &[3]]),
    ("a,a->", &[&[9], &[9]]),
    ("ab,cd->abcd", &[&[2, 3], &[3, 2]]),
    ("abc,d->ad", &[&[2, 3, 4], &[5]]),
    ("btd,dhk->bthk", &[&[2, 5, 6], &[6, 3, 4]]),
    ("bthk,hkd->btd", &[&[2, 5, 3, 4], &[3, 4, 6]]),
];

/// Einsum through its importer (the composition of reductions, transposes, views and one
/// matrix product) against the definition: `Rel(1e-5)`, the tolerance of every sum of products.
#[test]
fn more_ops_einsum_matches_the_definition() {
    let mut cases = Vec::new();
    for (e, &(equation, shapes)) in EINSUMS.iter().enumerate() {
        let operands: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, shape)| uniform(shape, (e * 10 + i) as u64, -2.0, 2.0))
            .collect();
        cases.push(case(format!("einsum {equation} {shapes:?}"), move |b| {
            let inputs: Vec<_> = operands.iter().map(|t| b.input(t.clone())).collect();
            let node = NodeDef {
                name: b.fresh("einsum"),
                op: "Einsum".into(),
                attr: [(
                    "equation".to_string(),
                    AttrValue {
                        value: Some(attr_value::Value::S(equation.as_bytes().to_vec())),
                    },
                )]
                .into_iter()
                .collect(),
                ..NodeDef::default()
            };
            let mut importer = Importer::new(&mut b.graph);
            let result = import_einsum(&mut importer, &node, &inputs).expect("import")[0];
            let refs: Vec<&Tensor> = operands.iter().collect();
            b.reference
                .insert(result, einsum_reference(equation, &refs));
            b.output(result, SUMS);
        }));
    }
    check_cases("einsum", cases, 8);
}

/// int32 matrix products (a spatial transformer's index arithmetic in facemesh-attention):
/// plain loops, wrapping like TensorFlow's int32, transposed operands and broadcast batches,
/// compared exactly with the reference. Values up to ±70000 make the sums wrap.
#[test]
fn more_ops_int32_matmul_matches_reference() {
    use tfjsc::ops::matmul::MatMul;
    // (a shape, b shape, transpose a, transpose b)
    let shapes: &[(&[usize], &[usize], bool, bool)] = &[
        (&[1, 1], &[1, 256], false, false),
        (&[3, 5], &[5, 4], false, false),
        (&[5, 3], &[5, 4], true, false),
        (&[3, 5], &[4, 5], false, true),
        (&[2, 1, 3, 5], &[4, 5, 2], false, false),
        (&[7, 0], &[0, 3], false, false),
    ];
    let cases = shapes
        .iter()
        .enumerate()
        .map(|(i, &(a, b, transpose_a, transpose_b))| {
            let op = MatMul {
                transpose_a,
                transpose_b,
                epilogue: Default::default(),
            };
            let a = ints(a, 40 + i as u64, -70000, 70000);
            let b = ints(b, 50 + i as u64, -70000, 70000);
            let label = format!(
                "int32 matmul {:?} x {:?} {transpose_a} {transpose_b}",
                a.shape, b.shape
            );
            single(label, op, vec![a, b], Tol::Exact)
        })
        .collect();
    check_cases("int32 matmul", cases, 3);
}
