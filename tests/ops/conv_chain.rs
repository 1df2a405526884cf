//! Convolution chains (`chain_convolutions`, `ops::conv_chain`): a regular convolution read only
//! by a depthwise one runs as one kernel, row by row through per-thread rings. Every case
//! checks that the pipeline chains the pair (or leaves it apart, where it must), and the answer
//! against the two convolutions' reference; the harness also runs each graph on 3 threads and
//! requires the same bits as on 1 (3 parts, whose boundary rows are computed twice).
//! Run on every kernel path by CI: the portable target runs a chain as two whole-tensor stages.

use crate::harness::{check_cases, uniform, Builder, SUMS};
use crate::{epilogue_operands, ConvConfig, Padding, EPILOGUES};

/// `(producer, consumer, chained)`: the consumer's size and channels follow from the producer.
fn pair(
    x: [usize; 3],
    producer: ([usize; 2], usize, [usize; 2], Padding, usize),
    consumer: ([usize; 2], [usize; 2], [usize; 2], Padding, usize),
) -> (ConvConfig, ConvConfig) {
    let (kernel, outputs, strides, padding, epilogue) = producer;
    let first = ConvConfig {
        batch: 1,
        size: [x[0], x[1]],
        channels: x[2],
        kernel,
        outputs,
        strides,
        dilations: [1, 1],
        padding,
        depthwise: false,
        epilogue,
        filter_is_input: false,
    };
    let middle = first.output_shape().expect("producer geometry");
    let (kernel, strides, dilations, padding, epilogue) = consumer;
    let second = ConvConfig {
        batch: 1,
        size: [middle[1], middle[2]],
        channels: middle[3],
        kernel,
        outputs: 1,
        strides,
        dilations,
        padding,
        depthwise: true,
        epilogue,
        filter_is_input: false,
    };
    (first, second)
}

/// Builds producer → consumer into `b`; returns nothing but the output check.
fn build(b: &mut Builder, first: &ConvConfig, second: &ConvConfig, seed: u64) {
    let x = uniform(&first.input_type().shape, seed, -1.0, 1.0);
    let input = b.input(x);
    let mut value = input;
    for (k, config) in [first, second].into_iter().enumerate() {
        let seed = seed + 10 * (k as u64 + 1);
        let filter = uniform(&config.filter_type().shape, seed, -1.0, 1.0);
        let filter = b.constant(filter);
        let shape = config.output_shape().expect("geometry");
        let (text, layouts) = EPILOGUES[config.epilogue];
        let mut inputs = vec![value, filter];
        for operand in epilogue_operands(text, layouts, &shape, false, seed + 1) {
            inputs.push(b.constant(operand));
        }
        value = b.node(config.op(), &inputs);
    }
    b.output(value, SUMS);
}

#[test]
fn chained_convolutions_match_the_pair() {
    use Padding::{Explicit, Same, Valid};
    // Epilogues (indices into EPILOGUES): 2 add;relu6 (per channel), 4 mul;add;relu6, 6 add of
    // a full tensor, 7 mul by a scalar, 14 relu6, 0 none.
    let cases = [
        // MobileNet's expand → depthwise, stride 1 and 2 (even size: no top padding).
        (
            pair(
                [64, 64, 16],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            true,
        ),
        (
            pair(
                [64, 64, 16],
                ([1, 1], 32, [1, 1], Valid, 4),
                ([3, 3], [2, 2], [1, 1], Same, 14),
            ),
            true,
        ),
        // The stem: a padded, strided 3×3 producer (its padded copy in scratch), and a consumer
        // finishing with a full-tensor operand.
        (
            pair(
                [130, 130, 3],
                ([3, 3], 32, [2, 2], Same, 2),
                ([3, 3], [1, 1], [1, 1], Same, 6),
            ),
            true,
        ),
        // Explicit producer padding; 5×5 stride-2 consumer on odd sizes.
        (
            pair(
                [89, 95, 4],
                ([3, 3], 72, [2, 2], Explicit([1, 2, 0, 1]), 7),
                ([5, 5], [2, 2], [1, 1], Same, 2),
            ),
            true,
        ),
        // Dilation 2 (each output row spans 5 intermediate rows), 40 channels (an 8-lane tail).
        (
            pair(
                [40, 40, 8],
                ([1, 1], 104, [1, 1], Valid, 0),
                ([3, 3], [1, 1], [2, 2], Same, 4),
            ),
            true,
        ),
        // No consumer padding; 17 channels (a masked tail).
        (
            pair(
                [90, 90, 16],
                ([1, 1], 17, [1, 1], Valid, 14),
                ([3, 3], [1, 1], [1, 1], Valid, 2),
            ),
            true,
        ),
        // K over one kernel call's chunk (520): the ring rows are accumulated.
        (
            pair(
                [32, 32, 520],
                ([1, 1], 128, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            true,
        ),
        // Narrow rows: the ring holds its most rows (32) and wraps many times.
        (
            pair(
                [300, 8, 8],
                ([1, 1], 64, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 14),
            ),
            true,
        ),
        // One output row: most threads' parts are empty.
        (
            pair(
                [3, 1500, 8],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Valid, 2),
            ),
            true,
        ),
        // Stays apart: the producer's epilogue reads a full tensor (rows go to a ring, not to
        // the tensor), and an intermediate that stays in cache anyway.
        (
            pair(
                [64, 64, 16],
                ([1, 1], 32, [1, 1], Valid, 6),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            false,
        ),
        (
            pair(
                [16, 16, 16],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            false,
        ),
    ];
    let mut checked = Vec::new();
    for (index, ((first, second), chained)) in cases.into_iter().enumerate() {
        let seed = 900 + 100 * index as u64;
        let mut builder = Builder::new();
        build(&mut builder, &first, &second, seed);
        let mut graph = builder.graph;
        tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
        let ops: Vec<&str> = graph.nodes().map(|(_, node)| node.op.name()).collect();
        let expected: &[&str] = if chained {
            &["conv2d_chain"]
        } else {
            &["conv2d", "conv2d"]
        };
        assert_eq!(ops, expected, "case {index}: {first:?} → {second:?}");
        let label = format!("chain {index}: {} → {}", first.label(), second.label());
        checked.push(crate::harness::case(label, move |b| {
            build(b, &first, &second, seed)
        }));
    }
    check_cases("convolution chains", checked, 1);
}
