//! The GEMM frame's tiling, through matrix products and convolutions whose sizes reach every
//! part of it: column tiles wider than one 16-column panel and their masked edges, row blocks
//! (A rows of more than 256 KiB), K longer than one kernel call's chunk (512), and the
//! balanced row tiles, and both loop orders (B larger than L2 walks column tiles outermost).
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
