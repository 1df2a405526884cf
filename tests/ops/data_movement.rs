//! Data-movement ops (Slice, Split/SplitV/Unpack, Tile, BroadcastTo, DepthToSpace,
//! SpaceToDepth, SpaceToBatchND, BatchToSpaceND, ReverseV2, MirrorPad) and the ops that fold
//! from types (Size, ZerosLike, OnesLike): every kernel against its reference evaluation, exact,
//! for every dtype compiled code handles.

use tfjsc::ir::{DType, Tensor, ValueId};
use tfjsc::ops::shape::{
    DepthSpace, FillLike, MirrorPad, Reverse, SizeOf, Slice, SpaceBatch, Split, Tile,
};
use tfjsc::ops::Operator;

use crate::harness::*;

const DTYPES: [DType; 3] = [DType::F32, DType::I32, DType::Bool];

fn values(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    match dtype {
        DType::F32 => uniform(shape, seed, -10.0, 10.0),
        DType::I32 => ints(shape, seed, -1000, 1000),
        DType::Bool => bools(shape, seed),
        DType::I64 => panic!("no int64 inputs"),
    }
}

fn matrix(rows: usize, values: &[i64]) -> Tensor {
    Tensor::from_i32(
        vec![rows, values.len() / rows.max(1)],
        values.iter().map(|&v| v as i32).collect(),
    )
}

/// One input through `op` with constant operands after it, every dtype.
fn with_constants(
    cases: &mut Vec<Case>,
    label: String,
    op: impl Operator + Clone,
    shape: &[usize],
    constants: Vec<Tensor>,
    seed: u64,
) {
    for dtype in DTYPES {
        let x = values(shape, dtype, seed);
        let op = op.clone();
        let constants = constants.clone();
        cases.push(case(format!("{label} {dtype:?} x{shape:?}"), move |b| {
            let mut inputs: Vec<ValueId> = vec![b.input(x.clone())];
            for c in &constants {
                inputs.push(b.constant(c.clone()));
            }
            let y = b.node(op.clone(), &inputs);
            b.output(y, Tol::Exact);
        }));
    }
}

#[test]
fn data_movement_slice() {
    let slices: &[(&[usize], &[i64], &[i64])] = &[
        (&[10], &[2], &[5]),
        (&[10], &[0], &[-1]),
        (&[10], &[10], &[0]),
        (&[10], &[9], &[-1]),
        (&[4, 7], &[1, 2], &[2, 5]),
        (&[4, 7], &[0, 3], &[-1, -1]),
        (&[4, 7], &[3, 0], &[1, 7]),
        (&[2, 3, 5], &[1, 0, 1], &[1, 3, 3]),
        (&[2, 3, 5], &[0, 1, 0], &[-1, 1, -1]),
        (&[1, 5, 6, 3], &[0, 1, 2, 0], &[1, 3, 3, 3]),
        (&[1, 5, 6, 3], &[0, 0, 0, 1], &[-1, -1, -1, 1]),
        (&[2, 3, 4, 5, 3], &[1, 1, 0, 2, 1], &[1, 2, -1, 3, 2]),
        (&[3, 1, 17], &[0, 0, 4], &[3, 1, 13]),
        (&[2, 8], &[0, 0], &[0, 8]),
    ];
    let mut cases = Vec::new();
    for (k, &(shape, begin, size)) in slices.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("slice begin {begin:?} size {size:?}"),
            Slice,
            shape,
            vec![i32_vector(begin), i32_vector(size)],
            k as u64,
        );
    }
    check_cases("slice", cases, 60);
}

#[test]
fn data_movement_split() {
    // (shape, axis, count, sizes; empty = equal parts)
    let splits: &[(&[usize], i64, usize, &[i64])] = &[
        (&[12], 0, 3, &[]),
        (&[12], 0, 1, &[]),
        (&[4, 6], 1, 2, &[]),
        (&[4, 6], -1, 3, &[]),
        (&[4, 6], 0, 4, &[]),
        (&[2, 9, 5], 1, 3, &[]),
        (&[1, 4, 4, 8], 3, 2, &[]),
        (&[2, 3, 4, 5, 6], 4, 3, &[]),
        (&[10], 0, 3, &[2, -1, 3]),
        (&[3, 10], 1, 4, &[1, 0, 6, 3]),
        (&[3, 10], -1, 2, &[-1, 7]),
        (&[5, 2, 3], 0, 3, &[1, 3, 1]),
        (&[2, 7, 13], 2, 3, &[5, -1, 4]),
    ];
    let mut cases = Vec::new();
    for (k, &(shape, axis, count, sizes)) in splits.iter().enumerate() {
        for dtype in DTYPES {
            let x = values(shape, dtype, k as u64);
            let op = Split {
                axis,
                count,
                sizes: sizes.to_vec(),
                squeeze: false,
            };
            cases.push(case(
                format!("split axis {axis} count {count} sizes {sizes:?} {dtype:?} x{shape:?}"),
                move |b| {
                    let input = b.input(x.clone());
                    for y in b.node_outputs(op.clone(), &[input], count) {
                        b.output(y, Tol::Exact);
                    }
                },
            ));
        }
    }
    // Unpack: (shape, axis)
    let unpacks: &[(&[usize], i64)] = &[
        (&[3], 0),
        (&[4, 5], 0),
        (&[4, 5], 1),
        (&[4, 5], -1),
        (&[2, 3, 4], 1),
        (&[2, 3, 4], -3),
        (&[1, 3, 3, 2], 3),
        (&[2, 1, 3, 5, 2], 2),
    ];
    for (k, &(shape, axis)) in unpacks.iter().enumerate() {
        for dtype in DTYPES {
            let x = values(shape, dtype, 100 + k as u64);
            let rank = shape.len() as i64;
            let count = shape[if axis < 0 { axis + rank } else { axis } as usize];
            let op = Split {
                axis,
                count,
                sizes: Vec::new(),
                squeeze: true,
            };
            cases.push(case(
                format!("unpack axis {axis} {dtype:?} x{shape:?}"),
                move |b| {
                    let input = b.input(x.clone());
                    for y in b.node_outputs(op.clone(), &[input], count) {
                        b.output(y, Tol::Exact);
                    }
                },
            ));
        }
    }
    check_cases("split", cases, 40);
}

#[test]
fn data_movement_tile_and_broadcast_to() {
    let tiles: &[(&[usize], &[i64])] = &[
        (&[3], &[4]),
        (&[1], &[9]),
        (&[5], &[1]),
        (&[2, 3], &[2, 1]),
        (&[2, 3], &[1, 3]),
        (&[2, 3], &[3, 2]),
        (&[2, 1], &[1, 7]),
        (&[2, 3], &[0, 2]),
        (&[2, 3, 4], &[1, 2, 1]),
        (&[1, 2, 2, 3], &[2, 1, 3, 1]),
        (&[2, 1, 3, 1, 2], &[1, 3, 1, 5, 2]),
        (&[], &[]),
    ];
    let mut cases = Vec::new();
    for (k, &(shape, multiples)) in tiles.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("tile multiples {multiples:?}"),
            Tile { broadcast: false },
            shape,
            vec![i32_vector(multiples)],
            k as u64,
        );
    }
    let broadcasts: &[(&[usize], &[i64])] = &[
        (&[], &[5]),
        (&[1], &[7]),
        (&[3], &[4, 3]),
        (&[4, 1], &[4, 9]),
        (&[1, 5], &[3, 5]),
        (&[2, 3], &[2, 3]),
        (&[3, 1, 2], &[2, 3, 4, 2]),
        (&[1, 1, 1, 3], &[1, 4, 4, 3]),
        (&[2, 1, 1], &[2, 2, 6, 13]),
        (&[1, 3, 1, 1, 2], &[2, 3, 2, 3, 2]),
        (&[1], &[0]),
    ];
    for (k, &(shape, target)) in broadcasts.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("broadcast_to {target:?}"),
            Tile { broadcast: true },
            shape,
            vec![i32_vector(target)],
            50 + k as u64,
        );
    }
    check_cases("tile and broadcast_to", cases, 60);
}

#[test]
fn data_movement_depth_and_space() {
    let mut cases = Vec::new();
    // DepthToSpace: (shape, block)
    let to_space: &[(&[usize], usize)] = &[
        (&[1, 1, 1, 4], 2),
        (&[1, 2, 3, 4], 2),
        (&[2, 3, 2, 8], 2),
        (&[1, 2, 2, 12], 2),
        (&[1, 3, 2, 9], 3),
        (&[2, 2, 3, 18], 3),
        (&[1, 4, 4, 16], 4),
        (&[1, 2, 5, 20], 2),
    ];
    for (k, &(shape, block)) in to_space.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("depth_to_space block {block}"),
            DepthSpace {
                block,
                to_space: true,
            },
            shape,
            vec![],
            k as u64,
        );
    }
    let to_depth: &[(&[usize], usize)] = &[
        (&[1, 2, 2, 1], 2),
        (&[1, 4, 6, 3], 2),
        (&[2, 2, 4, 5], 2),
        (&[1, 6, 3, 2], 3),
        (&[2, 6, 9, 4], 3),
        (&[1, 8, 4, 1], 4),
        (&[1, 4, 2, 7], 2),
    ];
    for (k, &(shape, block)) in to_depth.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("space_to_depth block {block}"),
            DepthSpace {
                block,
                to_space: false,
            },
            shape,
            vec![],
            20 + k as u64,
        );
    }
    // Round trip through a graph: depth_to_space(space_to_depth(x)) == x.
    cases.push(case(
        "space_to_depth then depth_to_space [1, 6, 4, 3]",
        |b| {
            let x = b.input(values(&[1, 6, 4, 3], DType::F32, 9));
            let d = b.node(
                DepthSpace {
                    block: 2,
                    to_space: false,
                },
                &[x],
            );
            let y = b.node(
                DepthSpace {
                    block: 2,
                    to_space: true,
                },
                &[d],
            );
            b.output(y, Tol::Exact);
        },
    ));
    check_cases("depth and space", cases, 50);
}

#[test]
fn data_movement_space_and_batch() {
    let mut cases = Vec::new();
    // SpaceToBatchND: (shape, block shape, paddings)
    let to_batch: &[(&[usize], &[i64], &[i64])] = &[
        (&[1, 4, 4, 1], &[2, 2], &[0, 0, 0, 0]),
        (&[1, 4, 4, 3], &[2, 2], &[0, 0, 0, 0]),
        (&[2, 2, 4, 1], &[2, 2], &[0, 0, 0, 0]),
        (&[1, 5, 7, 2], &[2, 2], &[1, 0, 0, 1]),
        (&[2, 6, 5, 3], &[2, 3], &[2, 2, 1, 0]),
        (&[1, 3, 3, 5], &[3, 3], &[3, 3, 3, 3]),
        (&[1, 2, 2, 4], &[4, 4], &[1, 1, 1, 1]),
        (&[2, 6, 4], &[3], &[1, 2]),
        (&[1, 4, 2, 3, 2], &[2, 1], &[0, 0, 1, 0]),
        (&[3, 4, 5, 2, 3], &[2, 5, 2], &[1, 1, 0, 0, 1, 1]),
        (&[1, 7, 7, 4], &[2, 2], &[1, 0, 1, 0]),
    ];
    for (k, &(shape, block, paddings)) in to_batch.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("space_to_batch block {block:?} paddings {paddings:?}"),
            SpaceBatch { to_batch: true },
            shape,
            vec![i32_vector(block), matrix(block.len(), paddings)],
            k as u64,
        );
    }
    let to_space: &[(&[usize], &[i64], &[i64])] = &[
        (&[4, 2, 2, 1], &[2, 2], &[0, 0, 0, 0]),
        (&[4, 2, 2, 3], &[2, 2], &[0, 0, 0, 0]),
        (&[8, 1, 2, 1], &[2, 2], &[0, 0, 0, 0]),
        (&[4, 3, 4, 2], &[2, 2], &[1, 0, 0, 1]),
        (&[12, 5, 2, 3], &[2, 3], &[2, 2, 1, 0]),
        (&[9, 3, 3, 5], &[3, 3], &[2, 1, 0, 3]),
        (&[6, 3, 4], &[3], &[1, 2]),
        (&[2, 2, 2, 3, 2], &[2, 1], &[0, 1, 1, 0]),
        (&[20, 2, 2, 2, 3], &[2, 5, 2], &[1, 1, 0, 4, 1, 1]),
        (&[4, 4, 4, 4], &[2, 2], &[1, 0, 1, 0]),
    ];
    for (k, &(shape, block, crops)) in to_space.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("batch_to_space block {block:?} crops {crops:?}"),
            SpaceBatch { to_batch: false },
            shape,
            vec![i32_vector(block), matrix(block.len(), crops)],
            30 + k as u64,
        );
    }
    check_cases("space and batch", cases, 50);
}

#[test]
fn data_movement_reverse() {
    let reverses: &[(&[usize], &[i64])] = &[
        (&[7], &[0]),
        (&[8], &[-1]),
        (&[5], &[]),
        (&[3, 5], &[0]),
        (&[3, 5], &[1]),
        (&[3, 5], &[0, 1]),
        (&[2, 3, 4], &[1]),
        (&[2, 3, 4], &[0, 2]),
        (&[2, 3, 4], &[-3, -2, -1]),
        (&[1, 4, 5, 3], &[1, 2]),
        (&[1, 4, 5, 3], &[3]),
        (&[2, 3, 1, 2, 5], &[0, 3]),
        (&[2, 3, 1, 2, 5], &[4, 2, 1]),
        (&[3, 37], &[1]),
        (&[2, 33], &[0, 1]),
        (&[48], &[0]),
        (&[1], &[0]),
    ];
    let mut cases = Vec::new();
    for (k, &(shape, axes)) in reverses.iter().enumerate() {
        with_constants(
            &mut cases,
            format!("reverse axes {axes:?}"),
            Reverse,
            shape,
            vec![i32_vector(axes)],
            k as u64,
        );
    }
    check_cases("reverse", cases, 60);
}

#[test]
fn data_movement_mirror_pad() {
    let pads: &[(&[usize], &[i64])] = &[
        (&[5], &[2, 3]),
        (&[5], &[4, 4]),
        (&[1], &[0, 0]),
        (&[3, 4], &[1, 0, 0, 2]),
        (&[3, 4], &[2, 2, 3, 3]),
        (&[2, 3, 4], &[0, 1, 2, 0, 1, 1]),
        (&[1, 5, 5, 3], &[0, 0, 2, 2, 2, 2, 0, 0]),
        (&[1, 6, 7, 4], &[0, 0, 1, 2, 3, 1, 0, 0]),
        (&[2, 2, 3, 2, 3], &[1, 0, 0, 1, 2, 1, 1, 0, 0, 2]),
    ];
    let mut cases = Vec::new();
    for (k, &(shape, paddings)) in pads.iter().enumerate() {
        for symmetric in [false, true] {
            let fits = shape.iter().enumerate().all(|(a, &d)| {
                let limit = if symmetric { d } else { d - 1 } as i64;
                paddings[2 * a] <= limit && paddings[2 * a + 1] <= limit
            });
            if !fits {
                continue;
            }
            with_constants(
                &mut cases,
                format!(
                    "mirror_pad {} paddings {paddings:?}",
                    if symmetric { "SYMMETRIC" } else { "REFLECT" }
                ),
                MirrorPad { symmetric },
                shape,
                vec![matrix(shape.len(), paddings)],
                k as u64,
            );
        }
    }
    check_cases("mirror pad", cases, 60);
}

#[test]
fn data_movement_size_and_fill_like() {
    let mut cases = Vec::new();
    for (k, shape) in [&[][..], &[3], &[2, 5], &[1, 4, 4, 3], &[2, 0, 3]]
        .into_iter()
        .enumerate()
    {
        for dtype in DTYPES {
            let x = values(shape, dtype, k as u64);
            cases.push(case(
                format!("size, zeros_like, ones_like {dtype:?} x{shape:?}"),
                move |b| {
                    let input = b.input(x.clone());
                    for op in [FillLike { value: 0.0 }, FillLike { value: 1.0 }] {
                        let y = b.node(op, &[input]);
                        b.output(y, Tol::Exact);
                    }
                    let size = b.node(SizeOf { dtype: DType::I32 }, &[input]);
                    b.output(size, Tol::Exact);
                },
            ));
        }
    }
    check_cases("size and fill_like", cases, 30);
}

#[test]
fn data_movement_resize() {
    use tfjsc::ops::resize::Resize;
    // (input shape, output size)
    let resizes: &[(&[usize], [i64; 2])] = &[
        (&[1, 2, 2, 1], [3, 3]),
        (&[1, 2, 2, 1], [4, 4]),
        (&[1, 4, 4, 3], [8, 8]),
        (&[1, 4, 4, 3], [2, 2]),
        (&[2, 3, 5, 4], [7, 4]),
        (&[1, 5, 3, 5], [2, 9]),
        (&[1, 6, 6, 8], [3, 5]),
        (&[1, 1, 1, 2], [3, 2]),
        (&[1, 3, 4, 1], [1, 1]),
        (&[1, 7, 5, 9], [7, 5]),
        (&[2, 4, 3, 2], [13, 1]),
        (&[1, 3, 3, 16], [5, 6]),
    ];
    let modes = [(false, false), (true, false), (false, true)];
    let mut cases = Vec::new();
    for (k, &(shape, size)) in resizes.iter().enumerate() {
        for (align_corners, half_pixel_centers) in modes {
            for bilinear in [true, false] {
                let dtypes: &[DType] = if bilinear {
                    &[DType::F32, DType::I32]
                } else {
                    &DTYPES
                };
                let op = Resize {
                    bilinear,
                    align_corners,
                    half_pixel_centers,
                };
                for &dtype in dtypes {
                    let x = values(shape, dtype, k as u64);
                    let op = op.clone();
                    cases.push(case(
                        format!(
                            "{} align_corners={align_corners} half_pixel_centers={half_pixel_centers} {dtype:?} x{shape:?} to {size:?}",
                            op.name()
                        ),
                        move |b| {
                            let input = b.input(x.clone());
                            let s = b.constant(i32_vector(&size));
                            let y = b.node(op.clone(), &[input, s]);
                            b.output(y, Tol::Exact);
                        },
                    ));
                }
            }
        }
    }
    check_cases("resize", cases, 60);
}

/// TensorFlow nodes through the whole path: model.json, import (registry, attributes, constant
/// operands, `name:k` references to later outputs), pipeline, compiled code, against values
/// worked out from TensorFlow's documented semantics.
#[test]
fn data_movement_imported_graph_runs() {
    let int_constant = |name: &str, shape: &[usize], values: &[i32]| {
        let dims: Vec<String> = shape
            .iter()
            .map(|d| format!("{{\"size\": \"{d}\"}}"))
            .collect();
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        format!(
            r#"{{"name": "{name}", "op": "Const", "attr": {{"dtype": {{"type": "DT_INT32"}}, "value": {{"tensor": {{"dtype": "DT_INT32", "tensorShape": {{"dim": [{}]}}, "intVal": [{}]}}}}}}}}"#,
            dims.join(", "),
            values.join(", ")
        )
    };
    let nodes = [
        r#"{"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [{"size": "1"}, {"size": "2"}, {"size": "2"}, {"size": "4"}]}}}}"#.to_string(),
        int_constant("axis", &[], &[3]),
        int_constant("resize_size", &[2], &[4, 4]),
        int_constant("paddings", &[4, 2], &[0, 0, 1, 1, 1, 1, 0, 0]),
        r#"{"name": "split", "op": "Split", "input": ["axis", "x"], "attr": {"num_split": {"i": "2"}, "T": {"type": "DT_FLOAT"}}}"#.to_string(),
        r#"{"name": "unpack", "op": "Unpack", "input": ["split:1"], "attr": {"num": {"i": "2"}, "axis": {"i": "-2"}}}"#.to_string(),
        r#"{"name": "d2s", "op": "DepthToSpace", "input": ["x"], "attr": {"block_size": {"i": "2"}, "data_format": {"s": "TkhXQw=="}}}"#.to_string(),
        r#"{"name": "size", "op": "Size", "input": ["x"], "attr": {"out_type": {"type": "DT_INT32"}}}"#.to_string(),
        r#"{"name": "nearest", "op": "ResizeNearestNeighbor", "input": ["x", "resize_size"], "attr": {"align_corners": {"b": false}, "half_pixel_centers": {"b": true}}}"#.to_string(),
        r#"{"name": "mirror", "op": "MirrorPad", "input": ["x", "paddings"], "attr": {"mode": {"s": "UkVGTEVDVA=="}}}"#.to_string(),
    ];
    let json = format!(
        r#"{{"format": "graph-model", "modelTopology": {{"node": [{}]}}, "weightsManifest": []}}"#,
        nodes.join(", ")
    );
    let directory = tempfile::tempdir().expect("temporary directory");
    std::fs::write(directory.path().join("model.json"), json).expect("model.json");
    let model = tfjsc::model::WebModel::open(directory.path()).expect("model opens");
    let imported = tfjsc::import::import(&model, &[], &[]).expect("model imports");
    let names: Vec<String> = imported
        .graph
        .outputs
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let feed = Tensor::from_f32(vec![1, 2, 2, 4], x);
    let outputs = execute(imported.graph, &[feed]).expect("model runs");
    let output = |name: &str| {
        let index = names.iter().position(|n| n == name).unwrap_or_else(|| {
            panic!("no output {name} in {names:?}");
        });
        &outputs[index]
    };
    let floats = |name: &str| output(name).to_f32().expect("float output");
    // DepthToSpace, TensorFlow's documented example.
    assert_eq!(output("d2s").shape, [1, 4, 4, 1]);
    assert_eq!(
        floats("d2s"),
        [1., 2., 5., 6., 3., 4., 7., 8., 9., 10., 13., 14., 11., 12., 15., 16.]
    );
    // Split along channels, then Unpack of the second half along width (axis -2): w = 0.
    assert_eq!(output("unpack").shape, [1, 2, 2]);
    assert_eq!(floats("unpack"), [3., 4., 11., 12.]);
    assert_eq!(output("size").to_i32().expect("int32 size"), [16]);
    // Nearest, half-pixel centers, 2 -> 4: source index floor((o + 0.5) / 2) = 0, 0, 1, 1.
    let nearest = floats("nearest");
    assert_eq!(output("nearest").shape, [1, 4, 4, 4]);
    for (o, &value) in nearest.iter().enumerate() {
        let (y, x, c) = (o / 16, o / 4 % 4, o % 4);
        assert_eq!(value, ((y / 2 * 2 + x / 2) * 4 + c + 1) as f32, "at {o}");
    }
    // REFLECT by 1 around a 2×2 image: rows and columns 1, 0, 1, 0.
    let mirror = floats("mirror");
    let reflect = [1, 0, 1, 0];
    for (o, &value) in mirror.iter().enumerate() {
        let (y, x, c) = (o / 16, o / 4 % 4, o % 4);
        assert_eq!(
            value,
            ((reflect[y] * 2 + reflect[x]) * 4 + c + 1) as f32,
            "at {o}"
        );
    }
}

/// Random shapes and operands (deterministic seeds) for the ops with the most index arithmetic.
#[test]
fn data_movement_random_configurations() {
    let mut rng = Rng::new(2024);
    let mut cases = Vec::new();
    let dims = |rng: &mut Rng, rank: usize, max: u64| -> Vec<usize> {
        (0..rank).map(|_| 1 + rng.below(max) as usize).collect()
    };
    for k in 0..30u64 {
        let rank = 1 + rng.below(5) as usize;
        let shape = dims(&mut rng, rank, 6);
        let dtype = DTYPES[rng.below(3) as usize];
        // Slice: begin in [0, d], size -1 or in [0, d - begin].
        let begin: Vec<i64> = shape
            .iter()
            .map(|&d| rng.below(d as u64 + 1) as i64)
            .collect();
        let size: Vec<i64> = shape
            .iter()
            .zip(&begin)
            .map(|(&d, &b)| {
                if rng.below(4) == 0 {
                    -1
                } else {
                    rng.below((d as i64 - b) as u64 + 1) as i64
                }
            })
            .collect();
        let x = values(&shape, dtype, k);
        let operands = vec![i32_vector(&begin), i32_vector(&size)];
        cases.push(operand_case(
            format!("random slice begin {begin:?} size {size:?} {dtype:?} x{shape:?}"),
            Slice,
            x.clone(),
            operands,
        ));
        // Reverse: a random subset of axes.
        let axes: Vec<i64> = (0..rank as i64).filter(|_| rng.below(2) == 0).collect();
        cases.push(operand_case(
            format!("random reverse axes {axes:?} {dtype:?} x{shape:?}"),
            Reverse,
            x.clone(),
            vec![i32_vector(&axes)],
        ));
        // Tile: multiples 0..3.
        let multiples: Vec<i64> = (0..rank).map(|_| rng.below(4) as i64).collect();
        cases.push(operand_case(
            format!("random tile {multiples:?} {dtype:?} x{shape:?}"),
            Tile { broadcast: false },
            x.clone(),
            vec![i32_vector(&multiples)],
        ));
        // MirrorPad: pads up to the mode's limit.
        let symmetric = rng.below(2) == 0;
        let limit = |d: usize| if symmetric { d } else { d - 1 } as u64;
        let pads: Vec<i64> = shape
            .iter()
            .flat_map(|&d| [0, 0].map(|_: i32| rng.below(limit(d) + 1) as i64))
            .collect();
        cases.push(operand_case(
            format!("random mirror_pad symmetric={symmetric} {pads:?} {dtype:?} x{shape:?}"),
            MirrorPad { symmetric },
            x.clone(),
            vec![matrix(rank, &pads)],
        ));
        // SpaceToBatchND and back: 4-D with 1 or 2 block dimensions.
        let m = 1 + rng.below(2) as usize;
        let block: Vec<i64> = (0..m).map(|_| 1 + rng.below(3) as i64).collect();
        let mut space = vec![1 + rng.below(2) as usize];
        let mut paddings = Vec::new();
        for &b in &block {
            let before = rng.below(3) as i64;
            let d = 1 + rng.below(6) as i64;
            let after = (b - (d + before) % b) % b + b * rng.below(2) as i64;
            space.push(d as usize);
            paddings.extend([before, after]);
        }
        space.extend(dims(&mut rng, 3 - m, 4));
        cases.push(operand_case(
            format!("random space_to_batch {block:?} {paddings:?} {dtype:?} x{space:?}"),
            SpaceBatch { to_batch: true },
            values(&space, dtype, k + 100),
            vec![i32_vector(&block), matrix(m, &paddings)],
        ));
        let blocks: i64 = block.iter().product();
        let mut batched = space.clone();
        batched[0] *= blocks as usize;
        let crops: Vec<i64> = block
            .iter()
            .zip(&space[1..])
            .flat_map(|(&b, &d)| {
                let full = b * d as i64;
                let before = rng.below(full as u64 / 2 + 1) as i64;
                let after = rng.below((full - before) as u64 / 2 + 1) as i64;
                [before, after]
            })
            .collect();
        cases.push(operand_case(
            format!("random batch_to_space {block:?} {crops:?} {dtype:?} x{batched:?}"),
            SpaceBatch { to_batch: false },
            values(&batched, dtype, k + 200),
            vec![i32_vector(&block), matrix(m, &crops)],
        ));
    }
    check_cases("random data movement", cases, 60);
}

fn operand_case(
    label: String,
    op: impl Operator + Clone,
    x: Tensor,
    operands: Vec<Tensor>,
) -> Case {
    case(label, move |b| {
        let mut inputs = vec![b.input(x.clone())];
        for operand in &operands {
            inputs.push(b.constant(operand.clone()));
        }
        let y = b.node(op.clone(), &inputs);
        b.output(y, Tol::Exact);
    })
}

/// Multi-output nodes with unused outputs, views before and after, kernels in between.
#[test]
fn data_movement_chains() {
    use tfjsc::ops::shape::{Reshape, ReshapeMode};
    let mut cases = Vec::new();
    cases.push(case(
        "reshape → split (only part 1 used) → reverse → tile",
        |b| {
            let x = b.input(values(&[4, 6], DType::F32, 1));
            let shape = b.constant(i32_vector(&[2, 12]));
            let v = b.node(
                Reshape {
                    mode: ReshapeMode::FromOperand,
                },
                &[x, shape],
            );
            let parts = b.node_outputs(
                Split {
                    axis: 1,
                    count: 3,
                    sizes: vec![],
                    squeeze: false,
                },
                &[v],
                3,
            );
            let axes = b.constant(i32_vector(&[1]));
            let r = b.node(Reverse, &[parts[1], axes]);
            let multiples = b.constant(i32_vector(&[2, 3]));
            let t = b.node(Tile { broadcast: false }, &[r, multiples]);
            b.output(t, Tol::Exact);
        },
    ));
    cases.push(case(
        "unpack → pieces as outputs and through slices",
        |b| {
            let x = b.input(values(&[3, 5, 4], DType::I32, 2));
            let rows = b.node_outputs(
                Split {
                    axis: 0,
                    count: 3,
                    sizes: vec![],
                    squeeze: true,
                },
                &[x],
                3,
            );
            let begin = b.constant(i32_vector(&[1, 1]));
            let size = b.constant(i32_vector(&[-1, 2]));
            let s = b.node(Slice, &[rows[2], begin, size]);
            b.output(rows[0], Tol::Exact);
            b.output(s, Tol::Exact);
        },
    ));
    cases.push(case(
        "space_to_batch → depth_to_space → batch_to_space",
        |b| {
            let x = b.input(values(&[1, 4, 6, 8], DType::F32, 3));
            let block = b.constant(i32_vector(&[2, 2]));
            let zero = b.constant(matrix(2, &[0, 0, 0, 0]));
            let batched = b.node(SpaceBatch { to_batch: true }, &[x, block, zero]);
            let deep = b.node(
                DepthSpace {
                    block: 2,
                    to_space: true,
                },
                &[batched],
            );
            let back = b.node(SpaceBatch { to_batch: false }, &[deep, block, zero]);
            b.output(back, Tol::Exact);
            b.output(batched, Tol::Exact);
        },
    ));
    check_cases("data movement chains", cases, 10);
}

/// Hostile IR through the fuzzing entry point (parse, pipeline, print, codegen): every one is an
/// error somewhere along the way, never a panic, a huge allocation or endless code.
#[test]
fn data_movement_hostile_ir_is_refused() {
    let graphs = [
        // Far too many parts, and a count that does not match the outputs.
        "input %0 \"x\" : f32[0,3]\n  %1 = split(%0) {axis=0, count=99999999999, sizes=[]} : ? @\"s\"\n  output \"y\" %1",
        "input %0 \"x\" : f32[6]\n  %1 = split(%0) {axis=0, count=3, sizes=[]} : ? @\"s\"\n  output \"y\" %1",
        "input %0 \"x\" : f32[4,3]\n  %1 = unpack(%0) {axis=-1, count=4} : ? @\"u\"\n  output \"y\" %1",
        // 3^12 mirror-padding nests.
        "input %0 \"x\" : f32[1,1,1,1,1,1,1,1,1,1,1,1]\n  const %1 [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1] : i32[12,2]\n  %2 = mirror_pad(%0, %1) {mode=\"symmetric\"} : ? @\"m\"\n  output \"y\" %2",
        // Resizes to enormous images, and to nothing.
        "input %0 \"x\" : f32[1,2,2,3]\n  const %1 [1099511627776, 1099511627776] : i64[2]\n  %2 = resize_bilinear(%0, %1) {align_corners=false, half_pixel_centers=false} : ? @\"r\"\n  output \"y\" %2",
        "input %0 \"x\" : f32[1,2,2,3]\n  const %1 [0, 4] : i32[2]\n  %2 = resize_nearest(%0, %1) {align_corners=true, half_pixel_centers=false} : ? @\"r\"\n  output \"y\" %2",
        "input %0 \"x\" : f32[1,2,2,3]\n  const %1 [4, 4] : i32[2]\n  %2 = resize_nearest(%0, %1) {align_corners=true, half_pixel_centers=true} : ? @\"r\"\n  output \"y\" %2",
        // Overflowing tiles and blocks.
        "input %0 \"x\" : f32[3,2]\n  const %1 [4611686018427387904, 4611686018427387904] : i64[2]\n  %2 = tile(%0, %1) : ? @\"t\"\n  output \"y\" %2",
        "input %0 \"x\" : f32[0,2,2,1]\n  const %1 [1099511627776, 1099511627776] : i64[2]\n  const %2 [0, 0, 0, 0] : i32[2,2]\n  %3 = space_to_batch(%0, %1, %2) : ? @\"b\"\n  output \"y\" %3",
        "input %0 \"x\" : f32[1,2,2,4]\n  %1 = depth_to_space(%0) {block_size=4611686018427387904} : ? @\"d\"\n  output \"y\" %1",
        "input %0 \"x\" : f32[4]\n  const %1 [1] : i32[1]\n  const %2 [9223372036854775807] : i64[1]\n  %3 = slice(%0, %1, %2) : ? @\"s\"\n  output \"y\" %3",
        "input %0 \"x\" : f32[4,2]\n  const %1 [0, -2] : i32[2]\n  %2 = reverse(%0, %1) : ? @\"r\"\n  output \"y\" %2",
        "input %0 \"x\" : f32[4,2]\n  %1 = size_of(%0) {dtype=f32} : ? @\"n\"\n  output \"y\" %1",
        // A run-time operand where a constant is needed.
        "input %0 \"x\" : f32[4,2]\n  input %1 \"m\" : i32[2]\n  %2 = tile(%0, %1) : ? @\"t\"\n  output \"y\" %2",
    ];
    for body in graphs {
        let text = format!("graph {{\n  {body}\n}}\n");
        let outcome = std::panic::catch_unwind(|| tfjsc::fuzzing::pipeline(text.as_bytes()))
            .map_err(panic_text);
        assert!(outcome.is_ok(), "{text}\npanicked: {outcome:?}");
        let refused = match tfjsc::ir::text::parse(&text) {
            Err(error) => error.message,
            Ok(mut graph) => match tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}) {
                Err(error) => error.to_string(),
                // Only the mirror padding passes the pipeline: code generation refuses it.
                Ok(()) => match execute_graph(graph) {
                    Err(error) => error,
                    Ok(()) => panic!("{text}\ncompiled"),
                },
            },
        };
        eprintln!("refused: {refused}");
    }
}

fn execute_graph(graph: tfjsc::ir::Graph) -> Result<(), String> {
    let feeds: Vec<Tensor> = graph
        .inputs
        .iter()
        .map(|port| {
            let ty = graph.value(port.value).ty.clone().expect("typed input");
            Tensor::filled(ty.dtype, ty.shape, 0.0)
        })
        .collect();
    execute(graph, &feeds).map(|_| ())
}

#[test]
fn data_movement_fill_with_a_run_time_value() {
    use tfjsc::ops::shape::Fill;
    let mut cases = Vec::new();
    for (d, dims) in [&[][..], &[1], &[5], &[4, 4], &[3, 7, 3], &[2, 33]]
        .iter()
        .enumerate()
    {
        let dims_tensor = Tensor::from_i32(vec![dims.len()], dims.to_vec());
        for (v, value) in [
            Tensor::from_f32(vec![], vec![-2.5]),
            Tensor::from_i32(vec![], vec![i32::MIN + 7]),
            Tensor::from_bool(vec![], vec![true]),
        ]
        .into_iter()
        .enumerate()
        {
            let dims_tensor = dims_tensor.clone();
            cases.push(case(format!("fill {dims:?} case {d}.{v}"), move |b| {
                let shape = b.constant(dims_tensor.clone());
                let x = b.input(value.clone());
                let y = b.node(Fill, &[shape, x]);
                b.output(y, Tol::Exact);
            }));
        }
    }
    check_cases("fill", cases, 12);
}
