//! The GEMM frame's tiling, through matrix products and convolutions whose sizes reach every
//! part of it: column tiles wider than one 16-column panel and their masked edges, row blocks
//! (A rows of more than 256 KiB), K longer than one kernel call's chunk (512), and the
//! balanced row tiles, and both loop orders (column tiles outermost where that reads fewer bytes).
//! Run on every kernel path by CI (AVX-512 where present, AVX2, portable).

use crate::harness::check_cases;
use crate::{ConvConfig, MatMulConfig, Padding};

#[test]
fn products_reach_every_tile_edge_block_and_chunk() {
    let shapes = [
        (1, 1, 1),
        (7, 3, 65),
        (13, 600, 17),
        (6, 513, 64),
        (200, 600, 33),
        (49, 1100, 130),
        (25, 40, 200),
        (3, 16, 48),
        (12, 5, 49),
        (3, 0, 5),
        (5, 600, 300),
        (0, 4, 5),
        // Column tiles outermost with few tiles: row blocks cut into segments, a partial last
        // block among them.
        (50, 1100, 130),
    ];
    let mut cases = Vec::new();
    for (i, &(m, k, n)) in shapes.iter().enumerate() {
        for (j, transpose_b) in [false, true].into_iter().enumerate() {
            let config = MatMulConfig {
                batch: if i % 3 == 1 { vec![2] } else { vec![] },
                m,
                k,
                n,
                transpose_a: false,
                transpose_b,
                epilogue: (i + j) % crate::EPILOGUES.len(),
                b_is_constant: j == 0,
            };
            cases.push(config.case((i * 2 + j) as u64));
        }
    }
    check_cases("gemm frame products", cases, 6);
}

#[test]
fn convolutions_reach_every_segment_form() {
    // (height, width, channels in, channels out, kernel, stride, dilation, padding)
    let shapes = [
        (9, 7, 3, 70, 3, 1, 1, Padding::Same),
        (8, 8, 40, 16, 1, 1, 1, Padding::Valid),
        (11, 13, 16, 24, 3, 2, 1, Padding::Same),
        (10, 10, 8, 33, 3, 1, 2, Padding::Same),
        (7, 7, 520, 20, 1, 1, 1, Padding::Valid),
        (15, 15, 3, 32, 7, 2, 1, Padding::Same),
        // B of 720 KiB: column tiles outermost.
        (5, 5, 128, 160, 3, 1, 1, Padding::Same),
    ];
    let cases = shapes
        .iter()
        .enumerate()
        .map(
            |(i, &(h, w, c, n, kernel, stride, dilation, ref padding))| {
                ConvConfig {
                    batch: 1 + i % 2,
                    size: [h, w],
                    channels: c,
                    kernel: [kernel, kernel],
                    outputs: n,
                    strides: [stride, stride],
                    dilations: [dilation, dilation],
                    padding: padding.clone(),
                    depthwise: false,
                    epilogue: i % crate::EPILOGUES.len(),
                    filter_is_input: i == 1,
                }
                .case(i as u64 + 500)
            },
        )
        .collect();
    check_cases("gemm frame convolutions", cases, 6);
}

/// A zero Pad before a valid convolution (Keras' ZeroPadding2D before a strided convolution)
/// folds into the convolution's explicit padding (`fold_padding`): the Pad kernel is gone after
/// the pipeline, and the answer is the padded convolution's, for regular and depthwise filters,
/// with the convolution's own padding explicit or valid.
#[test]
fn zero_padding_folds_into_the_convolution_that_reads_it() {
    use std::sync::Arc;
    use tfjsc::ir::{Graph, Tensor};
    use tfjsc::ops::conv::Conv2d;
    use tfjsc::ops::shape::pad::Pad;
    use tfjsc::ops::Operator;

    for (case, (depthwise, own)) in [
        (false, Padding::Valid),
        (true, Padding::Valid),
        (false, Padding::Explicit([1, 0, 0, 2])),
    ]
    .into_iter()
    .enumerate()
    {
        let x = crate::harness::uniform(&[1, 9, 8, 16], case as u64, -1.0, 1.0);
        let filter_shape = [3, 3, 16, if depthwise { 1 } else { 24 }];
        let filter = crate::harness::uniform(&filter_shape, 10 + case as u64, -1.0, 1.0);
        let paddings = Tensor::from_i32(vec![4, 2], vec![0, 0, 0, 1, 2, 1, 0, 0]);
        let conv = Conv2d {
            strides: [2, 2],
            dilations: [1, 1],
            padding: own.clone(),
            depthwise,
            epilogue: Default::default(),
        };
        let build = || {
            let mut graph = Graph::new();
            let input = graph.add_input("x", Some(x.tensor_type()));
            let paddings = graph.add_constant("paddings", paddings.clone(), None);
            let filter = graph.add_constant("filter", filter.clone(), None);
            let pad = graph.add_node("pad", Arc::new(Pad), vec![input, paddings], 1);
            let padded = graph.node(pad).unwrap().outputs[0];
            let node = graph.add_node("conv", Arc::new(conv.clone()), vec![padded, filter], 1);
            let output = graph.node(node).unwrap().outputs[0];
            graph.add_output("y", output);
            graph
        };
        let mut folded = build();
        tfjsc::passes::run_pipeline(&mut folded, true, &mut |_, _| {}).unwrap();
        let ops: Vec<&str> = folded.nodes().map(|(_, node)| node.op.name()).collect();
        assert_eq!(ops, ["conv2d"], "case {case}: the pad should be folded");

        let padded = Pad.evaluate(&[&x, &paddings]).unwrap().remove(0);
        let expected = conv.evaluate(&[&padded, &filter]).unwrap().remove(0);
        let got = crate::harness::execute(build(), std::slice::from_ref(&x)).unwrap();
        crate::harness::compare(&expected, &got[0], crate::harness::Tol::Rel(1e-5))
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
    }
}

/// A squeeze-and-excite multiply `x * s` read only by a convolution (regular or depthwise) or a
/// matrix product moves onto the filter (`fold_channel_scales`) where the filter is the smaller:
/// the graph then multiplies the filter, never `x`, and the answer is the original order's. A
/// filter larger than `x` keeps the multiply on `x`.
#[test]
fn channel_scales_move_onto_the_smaller_filter() {
    use std::sync::Arc;
    use tfjsc::ir::{Graph, Tensor};
    use tfjsc::ops::conv::Conv2d;
    use tfjsc::ops::elementwise::{Binary, BinaryKind};
    use tfjsc::ops::matmul::MatMul;
    use tfjsc::ops::Operator;

    let conv = |depthwise| -> Arc<dyn Operator> {
        Arc::new(Conv2d {
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Same,
            depthwise,
            epilogue: Default::default(),
        })
    };
    let product = |transpose_b| -> Arc<dyn Operator> {
        Arc::new(MatMul {
            transpose_a: false,
            transpose_b,
            epilogue: Default::default(),
        })
    };
    // (x shape, scale shape, filter shape, op, whether the multiply should move)
    type Case = (Vec<usize>, Vec<usize>, Vec<usize>, Arc<dyn Operator>, bool);
    let cases: Vec<Case> = vec![
        (
            vec![1, 12, 10, 16],
            vec![1, 1, 1, 16],
            vec![1, 1, 16, 8],
            conv(false),
            true,
        ),
        (
            vec![1, 12, 10, 16],
            vec![16],
            vec![3, 3, 16, 8],
            conv(false),
            true,
        ),
        (
            vec![1, 12, 10, 16],
            vec![1, 1, 1, 16],
            vec![3, 3, 16, 1],
            conv(true),
            true,
        ),
        (
            vec![40, 24],
            vec![1, 24],
            vec![24, 12],
            product(false),
            true,
        ),
        (vec![40, 24], vec![24], vec![12, 24], product(true), true),
        (
            vec![1, 2, 2, 16],
            vec![1, 1, 1, 16],
            vec![1, 1, 16, 64],
            conv(false),
            false,
        ),
    ];
    let multiply = Binary::new(BinaryKind::Mul);
    for (case, (x_shape, scale_shape, filter_shape, op, moves)) in cases.into_iter().enumerate() {
        let seed = 40 + 3 * case as u64;
        let x = crate::harness::uniform(&x_shape, seed, -1.0, 1.0);
        let scale = crate::harness::uniform(&scale_shape, seed + 1, 0.0, 1.0);
        let filter: Tensor = crate::harness::uniform(&filter_shape, seed + 2, -1.0, 1.0);
        let build = || {
            let mut graph = Graph::new();
            let input = graph.add_input("x", Some(x.tensor_type()));
            let s = graph.add_input("s", Some(scale.tensor_type()));
            let w = graph.add_constant("w", filter.clone(), None);
            let mul = graph.add_node("excite", Arc::new(multiply.clone()), vec![input, s], 1);
            let scaled = graph.node(mul).unwrap().outputs[0];
            let node = graph.add_node("reader", Arc::clone(&op), vec![scaled, w], 1);
            let output = graph.node(node).unwrap().outputs[0];
            graph.add_output("y", output);
            graph
        };
        let mut folded = build();
        let input = folded.inputs[0].value;
        tfjsc::passes::run_pipeline(&mut folded, true, &mut |_, _| {}).unwrap();
        let x_is_multiplied = folded
            .nodes()
            .any(|(_, node)| node.op.name() == "binary" && node.inputs.contains(&input));
        assert_eq!(
            x_is_multiplied, !moves,
            "case {case}: where the multiply is"
        );

        let scaled = multiply.evaluate(&[&x, &scale]).unwrap().remove(0);
        let expected = op.evaluate(&[&scaled, &filter]).unwrap().remove(0);
        let got = crate::harness::execute(build(), &[x.clone(), scale.clone()]).unwrap();
        crate::harness::compare(&expected, &got[0], crate::harness::Tol::Rel(1e-5))
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
    }
}

/// `pack_weights` packs a constant only GEMM kernels read, as the panels they stream: a
/// convolution's filter as `[kh·kw·c, n]`, a transposed product's B as its transpose; a
/// constant something else also reads stays as it is. (Packed or not, every op case above
/// compares the answer with the reference.)
#[test]
fn constants_only_gemm_kernels_read_are_packed() {
    use std::sync::Arc;
    use tfjsc::ir::Graph;
    use tfjsc::ops::conv::Conv2d;
    use tfjsc::ops::elementwise::{Binary, BinaryKind};
    use tfjsc::ops::matmul::MatMul;
    use tfjsc_runtime::panels::Panels;

    let mut graph = Graph::new();
    let x = graph.add_input(
        "x",
        Some(crate::harness::uniform(&[1, 5, 5, 3], 1, -1.0, 1.0).tensor_type()),
    );
    let filter = graph.add_constant(
        "filter",
        crate::harness::uniform(&[3, 3, 3, 20], 2, -1.0, 1.0),
        None,
    );
    let conv = Conv2d {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Same,
        depthwise: false,
        epilogue: Default::default(),
    };
    let conv = graph.add_node("conv", Arc::new(conv), vec![x, filter], 1);
    let y = graph.node(conv).unwrap().outputs[0];
    graph.add_output("y", y);
    let a = graph.add_input(
        "a",
        Some(crate::harness::uniform(&[4, 6], 3, -1.0, 1.0).tensor_type()),
    );
    let d = graph.add_input(
        "d",
        Some(crate::harness::uniform(&[6, 7], 6, -1.0, 1.0).tensor_type()),
    );
    let transposed = graph.add_constant("b", crate::harness::uniform(&[7, 6], 4, -1.0, 1.0), None);
    let shared = graph.add_constant("c", crate::harness::uniform(&[6, 7], 5, -1.0, 1.0), None);
    let product = |transpose_b| MatMul {
        transpose_a: false,
        transpose_b,
        epilogue: Default::default(),
    };
    let first = graph.add_node("first", Arc::new(product(true)), vec![a, transposed], 1);
    let second = graph.add_node("second", Arc::new(product(false)), vec![a, shared], 1);
    let sum = graph.add_node(
        "sum",
        Arc::new(Binary::new(BinaryKind::Add)),
        vec![
            graph.node(first).unwrap().outputs[0],
            graph.node(second).unwrap().outputs[0],
        ],
        1,
    );
    let doubled = graph.add_node(
        "doubled",
        Arc::new(Binary::new(BinaryKind::Add)),
        vec![shared, d],
        1,
    );
    graph.add_output("z", x_of(&graph, sum));
    graph.add_output("w", x_of(&graph, doubled));
    tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
    let panels = |value| graph.constant(value).unwrap().panels;
    fn x_of(graph: &Graph, node: tfjsc::ir::NodeId) -> tfjsc::ir::ValueId {
        graph.node(node).unwrap().outputs[0]
    }
    assert_eq!(
        panels(filter),
        Some(Panels {
            rows: 27,
            columns: 20,
            transposed: false,
            winograd: None,
        })
    );
    assert_eq!(
        panels(transposed),
        Some(Panels {
            rows: 6,
            columns: 7,
            transposed: true,
            winograd: None,
        })
    );
    assert_eq!(panels(shared), None, "an add reads it too");
}
