//! Indexing ops (gather, gather_nd, arg max/min, one-hot, top-k, cumsum, sparse-to-dense): every
//! kernel against the op's reference evaluation, over shapes, dtypes and every attribute variant.
//! Index tensors are graph inputs (run-time data), so nothing folds away.

use std::sync::Arc;

use tfjsc::ir::{DType, Graph, Tensor};
use tfjsc::ops::arg::{Arg, ArgKind};
use tfjsc::ops::cumsum::Cumsum;
use tfjsc::ops::gather::{Gather, GatherNd};
use tfjsc::ops::one_hot::OneHot;
use tfjsc::ops::top_k::TopK;
use tfjsc::ops::Operator;

use crate::harness::*;

/// Values of `dtype`: f32 in ±10, i32 in ±1000, bools.
fn typed(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    match dtype {
        DType::F32 => uniform(shape, seed, -10.0, 10.0),
        DType::I32 => ints(shape, seed, -1000, 1000),
        DType::Bool => bools(shape, seed),
        DType::I64 => panic!("no int64 test data"),
    }
}

/// Indices in `[0, bound)` (bound > 0).
fn indices(shape: &[usize], bound: usize, seed: u64) -> Tensor {
    ints(shape, seed, 0, bound as i32 - 1)
}

/// Compiles one node `op` over graph inputs `feeds` (its `outputs` outputs are graph outputs),
/// runs it and returns what `run` did: the outputs, or the error text.
fn run_node(
    op: impl Operator,
    feeds: Vec<Tensor>,
    outputs: usize,
) -> Result<Vec<tfjsc_runtime::Tensor>, String> {
    let mut graph = Graph::new();
    let inputs = feeds
        .iter()
        .enumerate()
        .map(|(i, t)| graph.add_input(&format!("input{i}"), Some(t.tensor_type())))
        .collect();
    let node = graph.add_node("picky_node", Arc::new(op), inputs, outputs);
    let values = graph.node(node).expect("just added").outputs.clone();
    for (i, value) in values.into_iter().enumerate() {
        graph.add_output(&format!("output{i}"), value);
    }
    execute(graph, &feeds)
}

/// `op` over `feeds` must make `run` fail with an index error naming the node.
fn assert_index_error(label: &str, op: impl Operator, feeds: Vec<Tensor>, outputs: usize) {
    match run_node(op, feeds, outputs) {
        Ok(_) => panic!("{label}: run succeeded with an out-of-range index"),
        Err(message) => assert!(
            message.starts_with("run:") && message.contains("picky_node"),
            "{label}: {message}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Gather
// ---------------------------------------------------------------------------------------------

/// (params shape, indices shape, axis, batch_dims).
const GATHERS: &[(&[usize], &[usize], i64, i64)] = &[
    // Index ranks 0-3 along axis 0.
    (&[5], &[], 0, 0),
    (&[5], &[3], 0, 0),
    (&[7, 3], &[2, 2], 0, 0),
    (&[6, 2, 9], &[2, 3, 2], 0, 0),
    // Long inner slices (vector copies), short ones, one element.
    (&[10, 16], &[4], 0, 0),
    (&[10, 17], &[3, 2], 0, 0),
    (&[4, 3, 5], &[6], 1, 0),
    (&[4, 3, 5], &[2, 2], -1, 0),
    (&[4, 3, 5], &[], -2, 0),
    (&[2, 3, 4, 5], &[3], 2, 0),
    (&[8, 1], &[5], 0, 0),
    // Batch dimensions.
    (&[3, 5], &[3, 4], 1, 1),
    (&[3, 5, 4], &[3, 2], 1, 1),
    (&[3, 5, 4], &[3, 2], -1, 1),
    (&[3, 5, 4], &[3, 2], 2, -1),
    (&[2, 3, 6, 5], &[2, 3, 4], 2, 2),
    (&[2, 3, 6, 5], &[2, 3, 2, 2], -2, 2),
    (&[2, 3, 6, 5], &[2, 3], 3, 2),
    (&[2, 4, 3], &[2], 1, 1),
    (&[2, 4, 3], &[2, 7], 2, 1),
    // Empty index list.
    (&[4, 3], &[0], 0, 0),
];

/// Inputs for ops that select by comparing values (ArgMax, TopK): wide-ranging values, few
/// distinct values (ties everywhere), NaNs and infinities, and int32 ties.
fn selection_inputs(shape: &[usize], seed: u64) -> Vec<(&'static str, Tensor)> {
    let mut rng = Rng::new(seed);
    let few: Vec<f32> = (0..count_of(shape)).map(|_| rng.below(3) as f32).collect();
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.0,
        -0.0,
    ];
    vec![
        ("spread", uniform(shape, seed, -100.0, 100.0)),
        ("ties", Tensor::from_f32(shape.to_vec(), few)),
        ("specials", spread(shape, seed, &specials)),
        ("i32 ties", ints(shape, seed, -2, 2)),
    ]
}

#[test]
fn indexing_gather_kernels_match_reference() {
    let mut cases = Vec::new();
    for (g, &(params, index_shape, axis, batch_dims)) in GATHERS.iter().enumerate() {
        let rank = params.len() as i64;
        let axis_size = params[if axis < 0 { axis + rank } else { axis } as usize];
        for (d, dtype) in [DType::F32, DType::I32, DType::Bool]
            .into_iter()
            .enumerate()
        {
            if dtype != DType::F32 && g % 3 != d {
                continue;
            }
            let p = typed(params, dtype, (g * 10 + d) as u64);
            let i = indices(index_shape, axis_size, (g * 10 + d + 5) as u64);
            cases.push(single(
                format!(
                    "gather {dtype:?} params{params:?} indices{index_shape:?} axis={axis} \
                     batch_dims={batch_dims}"
                ),
                Gather { axis, batch_dims },
                vec![p, i],
                Tol::Exact,
            ));
        }
    }
    // Repeated indices, first and last rows.
    cases.push(single(
        "gather repeated first and last [5, 6] by [0, 4, 4, 0, 2]".into(),
        Gather {
            axis: 0,
            batch_dims: 0,
        },
        vec![
            typed(&[5, 6], DType::F32, 3),
            Tensor::from_i32(vec![5], vec![0, 4, 4, 0, 2]),
        ],
        Tol::Exact,
    ));
    check_cases("gather", cases, 24);
}

/// (params shape, indices shape); the last indices dimension is the index depth.
const GATHER_NDS: &[(&[usize], &[usize])] = &[
    (&[5], &[1]),
    (&[5], &[3, 1]),
    (&[4, 6], &[2]),
    (&[4, 6], &[3, 2]),
    (&[4, 6], &[3, 1]),
    (&[4, 6], &[2, 2, 1]),
    (&[3, 4, 5], &[2, 3]),
    (&[3, 4, 5], &[4, 2]),
    (&[3, 4, 5], &[2, 3, 1]),
    (&[3, 4, 5], &[2, 2, 2, 2]),
    (&[3, 4, 8], &[5, 2]),
    (&[3, 4], &[2, 0]),
    (&[2, 3, 4, 5], &[3, 3]),
    (&[4, 6], &[0, 2]),
];

#[test]
fn indexing_gather_nd_kernels_match_reference() {
    let mut cases = Vec::new();
    for (g, &(params, index_shape)) in GATHER_NDS.iter().enumerate() {
        let depth = *index_shape.last().unwrap();
        let (count, _) = index_shape.split_at(index_shape.len() - 1);
        let count: usize = count.iter().product();
        for (d, dtype) in [DType::F32, DType::I32, DType::Bool]
            .into_iter()
            .enumerate()
        {
            if dtype != DType::F32 && g % 3 != d {
                continue;
            }
            let p = typed(params, dtype, (g * 10 + d) as u64);
            let mut values = Vec::new();
            for m in 0..count {
                for (c, &dim) in params[..depth].iter().enumerate() {
                    values.push(((m * 7 + c * 3 + g) % dim) as i32);
                }
            }
            let i = Tensor::from_i32(index_shape.to_vec(), values);
            cases.push(single(
                format!("gather_nd {dtype:?} params{params:?} indices{index_shape:?}"),
                GatherNd,
                vec![p, i],
                Tol::Exact,
            ));
        }
    }
    check_cases("gather_nd", cases, 24);
}

#[test]
fn indexing_gather_out_of_range_indices_fail_the_run() {
    let params = typed(&[4, 3], DType::F32, 1);
    let axis0 = Gather {
        axis: 0,
        batch_dims: 0,
    };
    // Past the end, negative (TensorFlow does not wrap), far out, in the last position.
    for bad in [4, -1, i32::MIN, i32::MAX] {
        let i = Tensor::from_i32(vec![3], vec![0, 2, bad]);
        assert_index_error(
            &format!("gather index {bad}"),
            axis0.clone(),
            vec![params.clone(), i],
            1,
        );
    }
    // Along the last axis with batch dimensions.
    let i = Tensor::from_i32(vec![4, 2], vec![0, 1, 2, 0, 1, 3, 0, 0]);
    assert_index_error(
        "gather batch_dims=1 axis=1 index 3",
        Gather {
            axis: 1,
            batch_dims: 1,
        },
        vec![params.clone(), i],
        1,
    );
    // An empty axis: every index is out of range.
    let i = Tensor::from_i32(vec![1], vec![0]);
    assert_index_error(
        "gather from an empty axis",
        axis0.clone(),
        vec![typed(&[0, 3], DType::F32, 1), i],
        1,
    );
    // The same graph with good indices runs.
    let i = Tensor::from_i32(vec![3], vec![0, 2, 3]);
    run_node(axis0, vec![params.clone(), i], 1).expect("in-range indices run");
    // GatherNd: each coordinate is checked against its own dimension.
    for (label, values) in [
        ("gather_nd row 4", vec![0, 0, 4, 0]),
        ("gather_nd column 3", vec![0, 3, 1, 1]),
        ("gather_nd column -1", vec![1, -1, 0, 0]),
        (
            "gather_nd flat offset in range, column past the end",
            vec![0, 5, 0, 0],
        ),
    ] {
        let i = Tensor::from_i32(vec![2, 2], values);
        assert_index_error(label, GatherNd, vec![params.clone(), i], 1);
    }
    let i = Tensor::from_i32(vec![2, 2], vec![3, 2, 0, 0]);
    run_node(GatherNd, vec![params, i], 1).expect("in-range indices run");
}

// ---------------------------------------------------------------------------------------------
// ArgMax, ArgMin
// ---------------------------------------------------------------------------------------------

/// (shape, axis): last axes (scalar loops), inner axes with long and short inner extents (vector
/// lanes and scalar tails), size-1 axes, negative axes.
const ARGS: &[(&[usize], i64)] = &[
    (&[1], 0),
    (&[7], 0),
    (&[3, 5], -1),
    (&[3, 5], 0),
    (&[4, 9], -2),
    (&[2, 3, 4], 1),
    (&[2, 6, 11], -2),
    (&[5, 1, 3], 1),
    (&[2, 3, 8, 2], 0),
    (&[17, 4], 0),
    (&[2, 16, 3], 2),
];

#[test]
fn indexing_arg_kernels_match_reference() {
    let mut cases = Vec::new();
    for (s, &(shape, axis)) in ARGS.iter().enumerate() {
        for kind in [ArgKind::Max, ArgKind::Min] {
            let seed = (s * 10 + kind as usize) as u64;
            let mut inputs = selection_inputs(shape, seed);
            inputs.push(("i32", ints(shape, seed, -1_000_000_000, 1_000_000_000)));
            for (what, x) in inputs {
                cases.push(single(
                    format!("arg {kind:?} {what} x{shape:?} axis={axis}"),
                    Arg { kind, axis },
                    vec![x],
                    Tol::Exact,
                ));
            }
        }
    }
    // All NaN, NaN first, NaN between ties, along vector lanes and scalar loops.
    let nan = f32::NAN;
    let columns = Tensor::from_f32(
        vec![3, 5],
        vec![
            nan, nan, 1.0, 2.0, nan, //
            nan, 3.0, nan, 2.0, 1.0, //
            nan, 3.0, 1.0, nan, nan,
        ],
    );
    for kind in [ArgKind::Max, ArgKind::Min] {
        for axis in [0, 1] {
            cases.push(single(
                format!("arg {kind:?} NaN patterns axis={axis}"),
                Arg { kind, axis },
                vec![columns.clone()],
                Tol::Exact,
            ));
        }
    }
    check_cases("arg", cases, 40);
}

// ---------------------------------------------------------------------------------------------
// OneHot
// ---------------------------------------------------------------------------------------------

/// (indices shape, depth, axis).
const ONE_HOTS: &[(&[usize], usize, i64)] = &[
    (&[], 4, -1),
    (&[], 4, 0),
    (&[5], 3, -1),
    (&[5], 3, 0),
    (&[5], 1, 1),
    (&[2, 3], 6, -1),
    (&[2, 3], 6, 0),
    (&[2, 3], 6, 1),
    (&[2, 3], 6, 2),
    (&[2, 3, 4], 5, 1),
    (&[2, 3, 4], 9, -1),
    (&[3], 0, -1),
];

#[test]
fn indexing_one_hot_kernels_match_reference() {
    let mut cases = Vec::new();
    for (h, &(shape, depth, axis)) in ONE_HOTS.iter().enumerate() {
        for (d, dtype) in [DType::F32, DType::I32, DType::Bool]
            .into_iter()
            .enumerate()
        {
            // Indices from -2 to depth + 1: out-of-range ones give rows of off_value.
            let i = ints(shape, (h * 3 + d) as u64, -2, depth as i32 + 1);
            let (on, off) = match dtype {
                DType::F32 => (f32_scalar(2.5), f32_scalar(-0.5)),
                DType::I32 => (
                    Tensor::from_i32(vec![], vec![7]),
                    Tensor::from_i32(vec![], vec![-3]),
                ),
                _ => (
                    Tensor::from_bool(vec![], vec![true]),
                    Tensor::from_bool(vec![], vec![false]),
                ),
            };
            cases.push(single(
                format!("one_hot {dtype:?} indices{shape:?} depth={depth} axis={axis}"),
                OneHot { depth, axis },
                vec![i, on, off],
                Tol::Exact,
            ));
        }
    }
    // Extreme indices.
    cases.push(single(
        "one_hot extreme indices".into(),
        OneHot { depth: 3, axis: -1 },
        vec![
            Tensor::from_i32(vec![5], vec![i32::MIN, -1, 0, 2, i32::MAX]),
            f32_scalar(1.0),
            f32_scalar(0.0),
        ],
        Tol::Exact,
    ));
    check_cases("one_hot", cases, 40);
}

// ---------------------------------------------------------------------------------------------
// TopKV2
// ---------------------------------------------------------------------------------------------

/// Both outputs of one top-k node over input `x`.
fn top_k_case(label: String, op: TopK, x: Tensor) -> Case {
    case(label, move |b| {
        let input = b.input(x.clone());
        let outputs = b.node_outputs(op.clone(), &[input], 2);
        b.output(outputs[0], Tol::Exact);
        b.output(outputs[1], Tol::Exact);
    })
}

#[test]
fn indexing_top_k_kernels_match_reference() {
    let shapes: &[&[usize]] = &[&[1], &[6], &[3, 7], &[2, 3, 9], &[4, 16], &[2, 1, 33]];
    let mut cases = Vec::new();
    for (s, &shape) in shapes.iter().enumerate() {
        let n = *shape.last().unwrap();
        let mut ks = vec![0, 1, n / 2, n];
        ks.dedup();
        for (kk, &k) in ks.iter().enumerate() {
            let seed = (s * 10 + kk) as u64;
            let mut inputs = selection_inputs(shape, seed);
            // Beyond 2^24, where f32 images of i32 values collide.
            inputs.push(("i32 large", ints(shape, seed, 100_000_000, 100_000_003)));
            for (what, x) in inputs {
                for sorted in [true, false] {
                    if !sorted && what != "ties" {
                        continue;
                    }
                    cases.push(top_k_case(
                        format!("top_k {what} x{shape:?} k={k} sorted={sorted}"),
                        TopK { k, sorted },
                        x.clone(),
                    ));
                }
            }
        }
    }
    // Descending and ascending rows (every insertion at the end, every one at the front).
    let rising = Tensor::from_f32(vec![2, 9], (0..18).map(|v| v as f32).collect());
    let falling = Tensor::from_f32(vec![2, 9], (0..18).map(|v| -v as f32).collect());
    for (what, x) in [("rising", rising), ("falling", falling)] {
        for k in [1, 4, 9] {
            cases.push(top_k_case(
                format!("top_k {what} k={k}"),
                TopK { k, sorted: true },
                x.clone(),
            ));
        }
    }
    check_cases("top_k", cases, 40);
}

// ---------------------------------------------------------------------------------------------
// Cumsum
// ---------------------------------------------------------------------------------------------

#[test]
fn indexing_cumsum_kernels_match_reference() {
    // (shape, axis): last axes (scalar loops), inner axes with vector lanes and tails.
    let shapes: &[(&[usize], i64)] = &[
        (&[1], 0),
        (&[9], 0),
        (&[9], -1),
        (&[3, 7], 1),
        (&[3, 7], 0),
        (&[5, 8], -2),
        (&[2, 6, 5], 1),
        (&[2, 3, 4, 9], 2),
        (&[2, 3, 4], -3),
        (&[4, 0, 3], 1),
    ];
    let mut cases = Vec::new();
    for (s, &(shape, axis)) in shapes.iter().enumerate() {
        for exclusive in [false, true] {
            for reverse in [false, true] {
                let op = Cumsum {
                    axis,
                    exclusive,
                    reverse,
                };
                let seed = (s * 4 + exclusive as usize * 2 + reverse as usize) as u64;
                for x in [
                    uniform(shape, seed, -10.0, 10.0),
                    // i32 sums that wrap.
                    ints(shape, seed, -1_000_000_000, 1_000_000_000),
                ] {
                    cases.push(single(
                        format!(
                            "cumsum {:?} x{shape:?} axis={axis} exclusive={exclusive} \
                             reverse={reverse}",
                            x.dtype()
                        ),
                        op.clone(),
                        vec![x],
                        Tol::Exact,
                    ));
                }
            }
        }
    }
    check_cases("cumsum", cases, 40);
}
