//! Convolution chains (`chain_convolutions`, `ops::conv_chain`): a regular convolution read only
//! by a depthwise one (and a pointwise one reading only that) runs as one kernel, row by row
//! through per-thread rings. Every case
//! checks that the pipeline chains the pair (or leaves it apart, where it must), and the answer
//! against the two convolutions' reference; the harness also runs each graph on 3 threads and
//! requires the same bits as on 1 (3 parts, whose boundary rows are computed twice).
//! Run on every kernel path by CI: the portable target runs a chain as two whole-tensor stages.
//! A mean over rows and columns of a chain's result becomes the chain's second output, taken
//! row by row (`chain_means_match_the_reduction`).

use tfjsc::ir::ValueId;
use tfjsc::ops::reduce::{Reduce, ReduceKind};

use crate::epilogue_tol;
use crate::harness::{check_cases, uniform, Builder, Tol, SUMS};
use crate::{epilogue_operands, ConvConfig, Padding, EPILOGUES};

/// A regular convolution of `x` (height, width, channels) and a depthwise one reading it: the
/// consumer's size and channels follow from the producer.
fn pair(
    x: [usize; 3],
    producer: ([usize; 2], usize, [usize; 2], Padding, usize),
    consumer: ([usize; 2], [usize; 2], [usize; 2], Padding, usize),
) -> Vec<ConvConfig> {
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
    vec![first, second]
}

/// `stages` followed by a pointwise convolution to `outputs` channels.
fn then_pointwise(mut stages: Vec<ConvConfig>, outputs: usize, epilogue: usize) -> Vec<ConvConfig> {
    let last = stages.last().expect("stages");
    let shape = last.output_shape().expect("geometry");
    stages.push(ConvConfig {
        batch: 1,
        size: [shape[1], shape[2]],
        channels: shape[3],
        kernel: [1, 1],
        outputs,
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Valid,
        depthwise: false,
        epilogue,
        filter_is_input: false,
    });
    stages
}

/// Builds the stages, one after the other, into `b`, and checks the last one's result.
fn build(b: &mut Builder, stages: &[ConvConfig], seed: u64) {
    let (value, tol) = build_stages(b, stages, seed);
    b.output(value, tol);
}

/// Builds the stages into `b`: the last one's result, and the tolerance it is checked with.
fn build_stages(b: &mut Builder, stages: &[ConvConfig], seed: u64) -> (ValueId, Tol) {
    let x = uniform(&stages[0].input_type().shape, seed, -1.0, 1.0);
    let input = b.input(x);
    let mut value = input;
    for (k, config) in stages.iter().enumerate() {
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
    // The sums' tolerance, with the transcendental allowance if a stage has one.
    let tol = stages
        .iter()
        .map(|stage| epilogue_tol(EPILOGUES[stage.epilogue].0))
        .find(|&tol| tol != SUMS)
        .unwrap_or(SUMS);
    (value, tol)
}

#[test]
fn chained_convolutions_match_the_pair() {
    use Padding::{Explicit, Same, Valid};
    // Epilogues (indices into EPILOGUES): 2 add;relu6 (per channel), 4 mul;add;relu6, 6 add of
    // a full tensor, 7 mul by a scalar, 14 relu6, 0 none; finished after the machine code (on
    // AVX2 at least): 9 sub;sigmoid, 10 div;tanh, 11 maximum;minimum, 12 prelu. With the ops the
    // pipeline leaves.
    let chained: &[&str] = &["conv2d_chain"];
    let cases: Vec<(Vec<ConvConfig>, &[&str])> = vec![
        // MobileNet's expand → depthwise, stride 1 and 2 (even size: no top padding).
        (
            pair(
                [64, 64, 16],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            chained,
        ),
        (
            pair(
                [64, 64, 16],
                ([1, 1], 32, [1, 1], Valid, 4),
                ([3, 3], [2, 2], [1, 1], Same, 14),
            ),
            chained,
        ),
        // The stem: a padded, strided 3×3 producer (its padded copy in scratch), and a consumer
        // finishing with a full-tensor operand.
        (
            pair(
                [130, 130, 3],
                ([3, 3], 32, [2, 2], Same, 2),
                ([3, 3], [1, 1], [1, 1], Same, 6),
            ),
            chained,
        ),
        // Explicit producer padding; 5×5 stride-2 consumer on odd sizes.
        (
            pair(
                [89, 95, 4],
                ([3, 3], 72, [2, 2], Explicit([1, 2, 0, 1]), 7),
                ([5, 5], [2, 2], [1, 1], Same, 10),
            ),
            chained,
        ),
        // Dilation 2 (each output row spans 5 intermediate rows), 40 channels (an 8-lane tail).
        (
            pair(
                [40, 40, 8],
                ([1, 1], 104, [1, 1], Valid, 0),
                ([3, 3], [1, 1], [2, 2], Same, 4),
            ),
            chained,
        ),
        // No consumer padding; 17 channels (a masked tail).
        (
            pair(
                [90, 90, 16],
                ([1, 1], 17, [1, 1], Valid, 14),
                ([3, 3], [1, 1], [1, 1], Valid, 2),
            ),
            chained,
        ),
        // K over one kernel call's chunk (520): the ring rows are accumulated.
        (
            pair(
                [32, 32, 520],
                ([1, 1], 128, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            chained,
        ),
        // Narrow rows: the ring holds its most rows (32) and wraps many times.
        (
            pair(
                [300, 8, 8],
                ([1, 1], 64, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 11),
            ),
            chained,
        ),
        // One output row: most threads' parts are empty.
        (
            pair(
                [3, 1500, 8],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Valid, 2),
            ),
            chained,
        ),
        // Stays apart: the producer's epilogue reads a full tensor (rows go to a ring, not to
        // the tensor), and an intermediate that stays in cache anyway.
        (
            pair(
                [64, 64, 16],
                ([1, 1], 32, [1, 1], Valid, 6),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            &["conv2d", "conv2d"],
        ),
        (
            pair(
                [16, 16, 16],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            &["conv2d", "conv2d"],
        ),
        // Three stages: MobileNet's block with its residual (a full-tensor operand of the last
        // stage), a masked tail of 17 outputs, and a pointwise K over one chunk (520).
        (
            then_pointwise(
                pair(
                    [64, 64, 16],
                    ([1, 1], 96, [1, 1], Valid, 2),
                    ([3, 3], [1, 1], [1, 1], Same, 2),
                ),
                16,
                6,
            ),
            chained,
        ),
        (
            then_pointwise(
                pair(
                    [130, 130, 3],
                    ([3, 3], 32, [2, 2], Same, 14),
                    ([3, 3], [1, 1], [1, 1], Same, 9),
                ),
                17,
                2,
            ),
            chained,
        ),
        (
            then_pointwise(
                pair(
                    [32, 32, 16],
                    ([1, 1], 520, [1, 1], Valid, 2),
                    ([3, 3], [1, 1], [1, 1], Same, 11),
                ),
                24,
                12,
            ),
            chained,
        ),
        // The pointwise stage stays apart: the depthwise result is small (stride 2), or its
        // epilogue reads a full tensor (it would go to a row buffer).
        (
            then_pointwise(
                pair(
                    [64, 64, 16],
                    ([1, 1], 32, [1, 1], Valid, 2),
                    ([3, 3], [2, 2], [1, 1], Same, 2),
                ),
                16,
                2,
            ),
            &["conv2d_chain", "conv2d"],
        ),
        (
            then_pointwise(
                pair(
                    [64, 64, 16],
                    ([1, 1], 32, [1, 1], Valid, 2),
                    ([3, 3], [1, 1], [1, 1], Same, 6),
                ),
                16,
                2,
            ),
            &["conv2d_chain", "conv2d"],
        ),
    ];
    let mut checked = Vec::new();
    for (index, (stages, expected)) in cases.into_iter().enumerate() {
        let seed = 900 + 100 * index as u64;
        let mut builder = Builder::new();
        build(&mut builder, &stages, seed);
        let mut graph = builder.graph;
        tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
        let ops: Vec<&str> = graph.nodes().map(|(_, node)| node.op.name()).collect();
        assert_eq!(ops, expected, "case {index}: {stages:?}");
        let labels: Vec<String> = stages.iter().map(|stage| stage.label()).collect();
        let label = format!("chain {index}: {}", labels.join(" → "));
        checked.push(crate::harness::case(label, move |b| {
            build(b, &stages, seed)
        }));
    }
    check_cases("convolution chains", checked, 1);
}

/// Where a chain's result goes besides its mean over rows and columns.
#[derive(Clone, Copy, Debug)]
enum Beside {
    /// A pointwise convolution reads it too (squeeze-and-excite: the projection).
    Pointwise,
    /// It is a graph output too.
    Output,
    /// Nothing reads it but the mean.
    Nothing,
}

/// The stages, then a mean of the last result over `axes`, and what `beside` says.
fn build_mean(
    b: &mut Builder,
    stages: &[ConvConfig],
    axes: &[usize],
    keep_dims: bool,
    beside: Beside,
    seed: u64,
) {
    let (value, tol) = build_stages(b, stages, seed);
    let mean = Reduce {
        kind: ReduceKind::Mean,
        axes: axes.to_vec(),
        keep_dims,
    };
    let mean = b.node(mean, &[value]);
    // Every case's last stage ends in relu6, so the means are of non-negative values and
    // the reference's order of summation (every pixel in turn) differs from the chain's
    // (each row, then the rows) by rounding only: the sums' tolerance.
    b.output(mean, SUMS);
    match beside {
        Beside::Pointwise => {
            let projection = then_pointwise(stages.to_vec(), 8, 0);
            let projection = projection.last().expect("pointwise stage");
            let filter = uniform(&projection.filter_type().shape, seed + 7, -1.0, 1.0);
            let filter = b.constant(filter);
            let projected = b.node(projection.op(), &[value, filter]);
            b.output(projected, SUMS);
        }
        Beside::Output => b.output(value, tol),
        Beside::Nothing => {}
    }
}

/// The stages, the mean's axes and keep_dims, what else reads the result, and the ops the
/// pipeline leaves.
type MeanCase = (
    Vec<ConvConfig>,
    &'static [usize],
    bool,
    Beside,
    &'static [&'static str],
);

#[test]
fn chain_means_match_the_reduction() {
    use Padding::{Same, Valid};
    // Epilogues: 2 add;relu6 (per channel), 14 relu6.
    let cases: Vec<MeanCase> = vec![
        // EfficientNet's squeeze: expand → depthwise, its result read by the mean and the
        // projection; 17 channels (a scalar tail of the means).
        (
            pair(
                [96, 96, 16],
                ([1, 1], 17, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 14),
            ),
            &[1, 2],
            false,
            Beside::Pointwise,
            &["conv2d_chain", "conv2d"],
        ),
        // Stride 2, 40 channels (full and half blocks of the means), dims kept, the result an
        // output too.
        (
            pair(
                [96, 80, 8],
                ([1, 1], 40, [1, 1], Valid, 14),
                ([3, 3], [2, 2], [1, 1], Same, 2),
            ),
            &[1, 2],
            true,
            Beside::Output,
            &["conv2d_chain"],
        ),
        // 160 channels (blocks of eight vectors); nothing else reads the result.
        (
            pair(
                [40, 40, 8],
                ([1, 1], 160, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 14),
            ),
            &[1, 2],
            false,
            Beside::Nothing,
            &["conv2d_chain"],
        ),
        // Three stages: the mean of the pointwise result.
        (
            then_pointwise(
                pair(
                    [64, 64, 16],
                    ([1, 1], 96, [1, 1], Valid, 2),
                    ([3, 3], [1, 1], [1, 1], Same, 2),
                ),
                24,
                2,
            ),
            &[1, 2],
            true,
            Beside::Nothing,
            &["conv2d_chain"],
        ),
        // One output row: most threads have no rows, and meet at the mean.
        (
            pair(
                [3, 1500, 8],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Valid, 2),
            ),
            &[1, 2],
            false,
            Beside::Output,
            &["conv2d_chain"],
        ),
        // Stays apart: a mean over the rows only.
        (
            pair(
                [64, 64, 16],
                ([1, 1], 32, [1, 1], Valid, 2),
                ([3, 3], [1, 1], [1, 1], Same, 2),
            ),
            &[1],
            false,
            Beside::Output,
            &["conv2d_chain", "reduce"],
        ),
    ];
    let mut checked = Vec::new();
    for (index, (stages, axes, keep_dims, beside, expected)) in cases.into_iter().enumerate() {
        let seed = 5000 + 100 * index as u64;
        let mut builder = Builder::new();
        build_mean(&mut builder, &stages, axes, keep_dims, beside, seed);
        let mut graph = builder.graph;
        tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
        let ops: Vec<&str> = graph.nodes().map(|(_, node)| node.op.name()).collect();
        assert_eq!(ops, expected, "case {index}: {stages:?}");
        let labels: Vec<String> = stages.iter().map(|stage| stage.label()).collect();
        let label = format!("chain mean {index}: {} → mean {axes:?}", labels.join(" → "));
        checked.push(crate::harness::case(label, move |b| {
            build_mean(b, &stages, axes, keep_dims, beside, seed)
        }));
    }
    check_cases("convolution chains with means", checked, 1);
}
