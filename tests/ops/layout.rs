//! Transpose sinking (`sink_transposes`): a graph in NCHW, as converters from PyTorch write it,
//! wraps each convolution in transposes to NHWC and back, with activations, pads and
//! concatenations of branches between them. After the pipeline only the transposes at the
//! graph's edges are left (4 of 6 cancel), and the answer is the original graph's.

use crate::harness::{check_cases, uniform, Builder, SUMS};
use tfjsc::ir::{Tensor, ValueId};
use tfjsc::ops::conv::{Conv2d, Padding};
use tfjsc::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use tfjsc::ops::shape::{Concat, Pad, Transpose};

const TO_NHWC: [i32; 4] = [0, 2, 3, 1];
const TO_NCHW: [i32; 4] = [0, 3, 1, 2];

/// NCHW `x` padded by 1, to NHWC, a 3×3 (or 1×1, unpadded) convolution to `outputs` channels
/// with a bias, back to NCHW, leaky relu.
fn block(
    b: &mut Builder,
    x: ValueId,
    channels: usize,
    outputs: usize,
    kernel: usize,
    seed: u64,
) -> ValueId {
    let mut x = x;
    if kernel == 3 {
        let paddings = b.constant(Tensor::from_i32(vec![4, 2], vec![0, 0, 0, 0, 1, 1, 1, 1]));
        x = b.node(Pad, &[x, paddings]);
    }
    let to_nhwc = b.constant(Tensor::from_i32(vec![4], TO_NHWC.to_vec()));
    let x = b.node(Transpose, &[x, to_nhwc]);
    let filter = b.constant(uniform(
        &[kernel, kernel, channels, outputs],
        seed,
        -1.0,
        1.0,
    ));
    let conv = Conv2d {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Valid,
        depthwise: false,
        epilogue: Default::default(),
    };
    let y = b.node(conv, &[x, filter]);
    let bias = b.constant(uniform(&[outputs], seed + 1, -1.0, 1.0));
    let y = b.node(Binary::new(BinaryKind::Add), &[y, bias]);
    let to_nchw = b.constant(Tensor::from_i32(vec![4], TO_NCHW.to_vec()));
    let y = b.node(Transpose, &[y, to_nchw]);
    let mut leaky = Unary::new(UnaryKind::LeakyRelu);
    leaky.alpha = 0.1;
    b.node(leaky, &[y])
}

fn build(b: &mut Builder) {
    let x = b.input(uniform(&[1, 8, 12, 10], 1, -1.0, 1.0));
    let a = block(b, x, 8, 16, 3, 10);
    // Two readers of `a`: the next block and the concatenation (a CSP-style branch).
    let c = block(b, a, 16, 16, 3, 20);
    let joined = b.node(
        Concat {
            axis: 1,
            pack: false,
        },
        &[c, a],
    );
    let y = block(b, joined, 32, 8, 1, 30);
    b.output(y, SUMS);
}

#[test]
fn transposes_between_nchw_convolutions_cancel() {
    let mut builder = Builder::new();
    build(&mut builder);
    let mut graph = builder.graph;
    let count = |graph: &tfjsc::ir::Graph| {
        graph
            .nodes()
            .filter(|(_, node)| node.op.name() == "transpose")
            .count()
    };
    assert_eq!(count(&graph), 6);
    tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
    let ops: Vec<&str> = graph.nodes().map(|(_, node)| node.op.name()).collect();
    // The input's pad and transpose to NHWC (nothing is above them to cancel with), the
    // output's transpose back to NCHW; the other pads and the activations folded into the
    // convolutions.
    assert_eq!(
        ops,
        [
            "pad",
            "transpose",
            "conv2d",
            "conv2d",
            "concat",
            "conv2d",
            "transpose"
        ],
        "{graph:?}"
    );
    check_cases(
        "transpose sinking",
        vec![crate::harness::case("nchw blocks", build)],
        1,
    );
}
