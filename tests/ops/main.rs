//! Every lowered op kernel against the op's own reference evaluation (`Operator::evaluate`, plain
//! loops), over many shapes and attributes.
//!
//! How: each case adds graph inputs (the tensors under test, so nothing constant-folds away), the
//! op's node(s) and graph outputs to a [`Builder`], which evaluates the reference alongside. Many
//! cases share one graph (compiling and linking costs ~50-100 ms per graph); the graph runs
//! through the whole pass pipeline (verifier after every pass), is compiled, linked with `cc`,
//! loaded by the runtime and run with `run_tensors`. When a graph fails to build or run, its cases
//! are bisected so the report names the failing case. Values are deterministic pseudo-random
//! (seeded SplitMix64); the proptest properties use a fixed seed count and no failure file.
//!
//! Tolerances (`Tol`), per output:
//! - `Exact` (bitwise up to the sign of zero; NaN matches NaN) for data movement (concat, pack,
//!   pad, transpose, strided slice, views, cast), max/min (max pool, max/min reductions, maximum,
//!   minimum), relu-like activations and every elementwise op that is one correctly rounded IEEE
//!   operation per element in both the kernel and the reference (add, sub, mul, div, sqrt,
//!   reciprocal, rsqrt = 1 / sqrt, square, floor, ceil, round, squared difference, floor div,
//!   prelu, neg, abs, comparisons, select).
//! - `Rel(1e-5)`: |got - expected| ≤ 1e-5 × max |expected| over the output, for sums, products,
//!   means, average pooling, convolutions and matrix products: the kernels add in another order
//!   than the reference (vector lanes, tiles), fuse multiply-adds and multiply by a reciprocal
//!   instead of dividing, so results differ by a few ulps of the largest partial sums.
//! - `AbsRel(2e-6)`: |got - expected| ≤ 2e-6 × (1 + |expected|), for exp, sigmoid, tanh, elu and
//!   softmax: the kernels use a polynomial exp (relative error < 2e-7 per call) against libm's, and
//!   sigmoid/tanh/softmax add a division and a sum on top.
//! - Convolution and matrix-product epilogues ending in sigmoid/tanh/elu get both allowances added.
//!
//! `TFJSC_OPS_PERTURB=1` perturbs the first element of every expected output beyond its tolerance:
//! every test must then fail (how the tests were checked to be able to fail);
//! `harness_detects_a_one_ulp_difference` checks the comparison itself on every run.

#[path = "../common/mod.rs"]
mod common;
mod compositions;
mod conv_chain;
mod conv_transpose;
mod data_movement;
mod gemm_frame;
mod harness;
mod indexing;
mod layout;
mod math;
mod more_ops;
mod tensorflow_cases;
mod winograd;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tfjsc::ir::{DType, Tensor, TensorData, TensorType};
use tfjsc::ops::conv::{Conv2d, Padding};
use tfjsc::ops::elementwise::{Binary, BinaryKind, Cast, Select, Unary, UnaryKind};
use tfjsc::ops::epilogue::Epilogue;
use tfjsc::ops::matmul::MatMul;
use tfjsc::ops::pool::Pool;
use tfjsc::ops::reduce::{Reduce, ReduceAxes, ReduceKind};
use tfjsc::ops::shape::{Concat, Pad, Reshape, ReshapeMode, StridedSlice, Transpose};
use tfjsc::ops::softmax::Softmax;
use tfjsc::ops::{Attribute, Attributes, Operator};

use harness::*;
// Explicit, so that it wins over proptest's `Rng` trait from the prelude glob.
use harness::Rng;

// ---------------------------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------------------------

#[test]
fn harness_detects_a_one_ulp_difference() {
    let x = uniform(&[3, 5], 1, -2.0, 2.0);
    let mut builder = Builder::new();
    builder.label = "harness".into();
    let input = builder.input(x);
    let y = builder.node(Unary::new(UnaryKind::Neg), &[input]);
    builder.output(y, Tol::Exact);
    let Builder {
        graph,
        feeds,
        checks,
        ..
    } = builder;
    let outputs = execute(graph, &feeds).expect("a negation compiles");
    let expected = &checks[0].expected;
    assert_eq!(compare(expected, &outputs[0], Tol::Exact), Ok(()));
    let mut off = expected.clone();
    if let TensorData::F32(v) = &mut off.data {
        v[7] = f32::from_bits(v[7].to_bits() + 1);
    }
    let message = compare(&off, &outputs[0], Tol::Exact).expect_err("one ulp must be caught");
    assert!(message.contains("[1, 2]"), "{message}");
    assert!(compare(&perturbed(expected), &outputs[0], SUMS).is_err());
    assert!(compare(&perturbed(expected), &outputs[0], TRANSCENDENTAL).is_err());
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

/// Shapes for elementwise ops: scalar, size 1, odd sizes, multiples and non-multiples of 4.
const ELEMENTWISE_SHAPES: &[&[usize]] = &[
    &[],
    &[1],
    &[3],
    &[4],
    &[5],
    &[7],
    &[17],
    &[1, 13],
    &[2, 8],
    &[2, 3, 5],
    &[3, 1, 4, 3],
];

const UNARY_SPECIALS: &[f32] = &[
    0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 6.0, 6.5, -6.5, 1e-3, -1e-3, 3.0e-39, -100.0,
    100.0, 88.5, -88.5, 44.0, -44.0, 1e-8, -1e-8, 87.9, 16777215.0,
];

fn unary_tol(kind: UnaryKind) -> Tol {
    match kind {
        UnaryKind::Exp | UnaryKind::Sigmoid | UnaryKind::Tanh | UnaryKind::Elu => TRANSCENDENTAL,
        _ => Tol::Exact,
    }
}

const LOWERED_UNARY: &[UnaryKind] = &[
    UnaryKind::Relu,
    UnaryKind::Relu6,
    UnaryKind::LeakyRelu,
    UnaryKind::Sigmoid,
    UnaryKind::Tanh,
    UnaryKind::Exp,
    UnaryKind::Elu,
    UnaryKind::Neg,
    UnaryKind::Abs,
    UnaryKind::Sqrt,
    UnaryKind::Rsqrt,
    UnaryKind::Square,
    UnaryKind::Floor,
    UnaryKind::Ceil,
    UnaryKind::Round,
    UnaryKind::Reciprocal,
];

/// NaN and infinities through the compare-and-pick kernels: Relu and Relu6 keep NaN (as
/// TensorFlow's do), a max pool skips it unless the whole window is NaN, and -inf is an ordinary
/// value. Lengths take both the vector loop and the scalar tail.
#[test]
fn relu_and_max_pool_keep_tensorflow_nan_and_infinity_handling() {
    let inf = f32::INFINITY;
    let values = [
        f32::NAN,
        inf,
        -inf,
        -0.0,
        0.0,
        7.0,
        6.0,
        5.5,
        -3.0,
        f32::NAN,
        0.25,
        -inf,
        f32::NAN,
        6.5,
        -1e-8,
        inf,
        f32::NAN,
        f32::NAN,
        f32::NAN,
        f32::NAN,
        1.0,
        -2.0,
        3.0,
        -inf,
        f32::NAN,
    ];
    let mut cases = Vec::new();
    for kind in [UnaryKind::Relu, UnaryKind::Relu6] {
        let x = Tensor::from_f32(vec![values.len()], values.to_vec());
        let op = Unary { kind, alpha: 0.0 };
        cases.push(single(
            format!("{} specials", kind.text()),
            op,
            vec![x],
            Tol::Exact,
        ));
    }
    // [1, 5, 5, 1] and, channels in a vector with a tail, [1, 5, 1, 5].
    for shape in [vec![1, 5, 5, 1], vec![1, 5, 1, 5]] {
        let x = Tensor::from_f32(shape.clone(), values.to_vec());
        let pool = Pool {
            max: true,
            window: [2, 2],
            strides: [1, 1],
            padding: Padding::Same,
            zero_padding: false,
        };
        cases.push(single(
            format!("max pool specials {shape:?}"),
            pool,
            vec![x],
            Tol::Exact,
        ));
    }
    check_cases("nan and infinity", cases, 4);
}

#[test]
fn unary_kernels_match_reference() {
    let mut cases = Vec::new();
    for (k, &kind) in LOWERED_UNARY.iter().enumerate() {
        let alphas: &[f32] = if kind == UnaryKind::LeakyRelu {
            &[0.2, 0.01]
        } else {
            &[0.0]
        };
        for &alpha in alphas {
            for (s, shape) in ELEMENTWISE_SHAPES.iter().enumerate() {
                let x = spread(shape, (k * 100 + s) as u64, UNARY_SPECIALS);
                let op = Unary { kind, alpha };
                cases.push(single(
                    format!("unary {} alpha={alpha} x{shape:?}", kind.text()),
                    op,
                    vec![x],
                    unary_tol(kind),
                ));
            }
        }
    }
    // exp near and past f32 overflow (88.72): finite up to there, then +inf.
    let near_overflow =
        Tensor::from_f32(vec![7], vec![87.5, 88.0, 88.25, 88.5, 88.7, 88.75, 100.0]);
    cases.push(single(
        "unary exp near overflow x[7] = [87.5, 88, 88.25, 88.5, 88.7, 88.75, 100]".into(),
        Unary::new(UnaryKind::Exp),
        vec![near_overflow],
        TRANSCENDENTAL,
    ));
    // Two unary kernels in a row, and one reading the same input twice.
    cases.push(case("unary chain tanh(relu6(x)) [2, 9]", |b| {
        let x = b.input(spread(&[2, 9], 77, UNARY_SPECIALS));
        let y = b.node(Unary::new(UnaryKind::Relu6), &[x]);
        let z = b.node(Unary::new(UnaryKind::Tanh), &[y]);
        b.output(y, Tol::Exact);
        b.output(z, TRANSCENDENTAL);
    }));
    check_cases("unary", cases, 48);
}

/// (left shape, right shape) broadcasting patterns.
const BROADCASTS: &[(&[usize], &[usize])] = &[
    (&[2, 3, 5], &[2, 3, 5]),
    (&[7], &[7]),
    (&[2, 3, 5], &[]),
    (&[], &[2, 3, 5]),
    (&[1], &[6]),
    (&[2, 3, 5], &[5]),
    (&[4, 7], &[1, 7]),
    (&[4, 7], &[4, 1]),
    (&[4, 1], &[1, 7]),
    (&[2, 3, 4, 5], &[4, 5]),
    (&[3, 1, 5], &[1, 4, 1]),
    (&[1, 1, 13], &[2, 3, 1]),
    (&[2, 2, 2, 17], &[17]),
    (&[16], &[1, 16]),
    (&[2, 9, 8], &[2, 1, 8]),
    (&[5, 1], &[5]),
    (&[1], &[1]),
    (&[], &[]),
    (&[1, 4, 4, 3], &[1, 1, 1, 3]),
    // A short innermost axis one side repeats: vector blocks of whole repeats (period 3, 5, 6,
    // 7, 2; an outer axis the repeating side walks; the repeating side on the left), and shapes
    // that are not whole blocks (the scalar path).
    (&[2, 8, 5], &[5]),
    (&[3, 4, 6], &[3, 1, 6]),
    (&[3], &[2, 4, 3]),
    (&[1, 8, 7], &[1, 1, 7]),
    (&[4, 2], &[2]),
    (&[2, 6, 5], &[5]),
    (&[5, 3], &[3]),
    // Long enough to be cut into rows for the threads: rows of whole blocks.
    (&[1, 96, 64, 3], &[3]),
];

const BINARY_SPECIALS: &[f32] = &[0.0, -0.0, 1.0, -1.0, 0.5, -2.5, f32::NAN, 3.0, -3.0];

const F32_BINARY: &[BinaryKind] = &[
    BinaryKind::Add,
    BinaryKind::Sub,
    BinaryKind::Mul,
    BinaryKind::Div,
    BinaryKind::DivNoNan,
    BinaryKind::Maximum,
    BinaryKind::Minimum,
    BinaryKind::SquaredDifference,
    BinaryKind::Prelu,
    BinaryKind::FloorDiv,
];

fn binary_operands(
    kind: BinaryKind,
    left: &[usize],
    right: &[usize],
    seed: u64,
) -> (Tensor, Tensor) {
    let x = spread(left, seed, BINARY_SPECIALS);
    let y = match kind {
        // Divisors away from zero (zero itself is still among the specials of x / y elsewhere).
        BinaryKind::Div | BinaryKind::FloorDiv => signed_magnitudes(right, seed + 1, 0.25, 4.0),
        BinaryKind::Prelu => uniform(right, seed + 1, -0.5, 1.5),
        _ => spread(right, seed + 1, BINARY_SPECIALS),
    };
    (x, y)
}

#[test]
fn binary_kernels_match_reference() {
    let mut cases = Vec::new();
    for (k, &kind) in F32_BINARY.iter().enumerate() {
        for (p, &(left, right)) in BROADCASTS.iter().enumerate() {
            let (x, y) = binary_operands(kind, left, right, (k * 1000 + p * 10) as u64);
            cases.push(single(
                format!("binary {} {left:?} {right:?}", kind.text()),
                Binary::new(kind),
                vec![x, y],
                Tol::Exact,
            ));
        }
    }
    // Division by zero and zero by zero (inf, NaN) go through the same IEEE division.
    for kind in [BinaryKind::Div, BinaryKind::DivNoNan, BinaryKind::FloorDiv] {
        let x = Tensor::from_f32(vec![6], vec![1.0, -1.0, 0.0, 5.5, -7.25, 0.0]);
        let y = Tensor::from_f32(vec![6], vec![0.0, 0.0, 0.0, -0.0, 2.0, -3.0]);
        cases.push(single(
            format!("binary {} by zero [6]", kind.text()),
            Binary::new(kind),
            vec![x, y],
            Tol::Exact,
        ));
    }
    // int32 arithmetic.
    for (k, kind) in [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Maximum,
        BinaryKind::Minimum,
    ]
    .into_iter()
    .enumerate()
    {
        for (p, &(left, right)) in BROADCASTS.iter().enumerate().step_by(2) {
            let x = ints(left, (k * 31 + p) as u64, -1000, 1000);
            let y = ints(right, (k * 31 + p + 7) as u64, -1000, 1000);
            cases.push(single(
                format!("binary i32 {} {left:?} {right:?}", kind.text()),
                Binary::new(kind),
                vec![x, y],
                Tol::Exact,
            ));
        }
    }
    // Comparisons (bool results) on f32 and i32, logical ops on bool.
    let comparisons = [
        BinaryKind::Less,
        BinaryKind::LessEqual,
        BinaryKind::Greater,
        BinaryKind::GreaterEqual,
        BinaryKind::Equal,
        BinaryKind::NotEqual,
    ];
    for (k, kind) in comparisons.into_iter().enumerate() {
        for (p, &(left, right)) in BROADCASTS.iter().enumerate().skip(k % 3).step_by(3) {
            // Small integers make equal operands common.
            let mut rng = Rng::new((k * 17 + p) as u64);
            let x = Tensor::from_f32(
                left.to_vec(),
                (0..count_of(left))
                    .map(|_| rng.below(4) as f32 - 1.5)
                    .collect(),
            );
            let y = Tensor::from_f32(
                right.to_vec(),
                (0..count_of(right))
                    .map(|_| rng.below(4) as f32 - 1.5)
                    .collect(),
            );
            cases.push(single(
                format!("binary f32 {} {left:?} {right:?}", kind.text()),
                Binary::new(kind),
                vec![x, y],
                Tol::Exact,
            ));
            let x = ints(left, (k * 19 + p) as u64, -2, 2);
            let y = ints(right, (k * 23 + p) as u64, -2, 2);
            cases.push(single(
                format!("binary i32 {} {left:?} {right:?}", kind.text()),
                Binary::new(kind),
                vec![x, y],
                Tol::Exact,
            ));
        }
    }
    for kind in [BinaryKind::LogicalAnd, BinaryKind::LogicalOr] {
        for (p, &(left, right)) in BROADCASTS.iter().enumerate().step_by(3) {
            let x = bools(left, p as u64);
            let y = bools(right, p as u64 + 50);
            cases.push(single(
                format!("binary bool {} {left:?} {right:?}", kind.text()),
                Binary::new(kind),
                vec![x, y],
                Tol::Exact,
            ));
        }
    }
    // Select with broadcasting condition.
    for (p, (condition, x, y)) in [
        (&[2, 3, 5][..], &[2, 3, 5][..], &[2, 3, 5][..]),
        (&[5], &[2, 3, 5], &[]),
        (&[2, 1, 1], &[1, 4, 3], &[2, 4, 3]),
        (&[], &[7], &[7]),
        (&[9], &[9], &[1]),
    ]
    .into_iter()
    .enumerate()
    {
        let inputs = vec![
            bools(condition, p as u64),
            uniform(x, p as u64 + 1, -5.0, 5.0),
            uniform(y, p as u64 + 2, -5.0, 5.0),
        ];
        cases.push(single(
            format!("select {condition:?} {x:?} {y:?}"),
            Select,
            inputs,
            Tol::Exact,
        ));
    }
    check_cases("binary", cases, 60);
}

/// A shape of rank ≤ 4 with small dimensions.
fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(
        prop_oneof![
            Just(1usize),
            2usize..=6,
            Just(8usize),
            Just(13usize),
            Just(17usize)
        ],
        0..=4,
    )
}

/// Two shapes that broadcast: `full`, and a copy with some axes set to 1 and some leading axes
/// dropped, in either order.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (small_shape(), any::<u64>()).prop_map(|(full, bits)| {
        let drop = (bits % (full.len() as u64 + 1)) as usize;
        let other: Vec<usize> = full
            .iter()
            .enumerate()
            .skip(drop)
            .map(|(axis, &d)| if bits >> (8 + axis) & 1 == 1 { 1 } else { d })
            .collect();
        if bits >> 20 & 1 == 1 {
            (full, other)
        } else {
            (other, full)
        }
    })
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config(32))]

    /// Random broadcasting pairs, every f32 binary kind in one graph.
    #[test]
    fn binary_broadcasting_property((left, right) in broadcast_pair(), seed in any::<u64>()) {
        let cases: Vec<Case> = F32_BINARY
            .iter()
            .enumerate()
            .map(|(k, &kind)| {
                let (x, y) = binary_operands(kind, &left, &right, seed.wrapping_add(k as u64));
                single(format!("binary {} {left:?} {right:?} seed {seed}", kind.text()), Binary::new(kind), vec![x, y], Tol::Exact)
            })
            .collect();
        let failures = run_cases("binary property", cases, 64);
        prop_assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[test]
fn cast_kernels_match_reference() {
    let mut cases = Vec::new();
    let shapes: &[&[usize]] = &[&[], &[1], &[5], &[3, 7], &[2, 2, 4], &[17]];
    let float_specials = [
        0.0,
        -0.0,
        0.999_999,
        -0.999_999,
        -0.5,
        0.5,
        2_147_483_520.0,
        -2_147_483_648.0,
        1e-40,
        -7.0,
        16_777_217.0,
    ];
    let int_specials = [
        0,
        1,
        -1,
        16_777_217,
        -16_777_217,
        (1 << 30) + 1,
        i32::MIN,
        i32::MAX,
        7,
    ];
    for (s, &shape) in shapes.iter().enumerate() {
        let seed = s as u64 * 13;
        let mut floats = uniform(shape, seed, -1000.0, 1000.0);
        if let TensorData::F32(v) = &mut floats.data {
            for (position, value) in v.iter_mut().zip(float_specials.iter().cycle().skip(s)) {
                if position.abs() < 400.0 {
                    *position = *value;
                }
            }
        }
        let mut integers = ints(shape, seed + 1, -100_000, 100_000);
        if let TensorData::I32(v) = &mut integers.data {
            for (k, value) in v.iter_mut().enumerate().step_by(2) {
                *value = int_specials[(k + s) % int_specials.len()];
            }
        }
        let mut with_nan = floats.clone();
        if let TensorData::F32(v) = &mut with_nan.data {
            if let Some(last) = v.last_mut() {
                *last = f32::NAN;
            }
        }
        let flags = bools(shape, seed + 2);
        let small_ints = ints(shape, seed + 3, -2, 2);
        for (from, to, input) in [
            ("f32", DType::I32, &floats),
            ("i32", DType::F32, &integers),
            ("f32 with NaN", DType::Bool, &with_nan),
            ("i32", DType::Bool, &small_ints),
            ("bool", DType::F32, &flags),
            ("bool", DType::I32, &flags),
            ("f32", DType::F32, &floats),
            ("i32", DType::I32, &integers),
        ] {
            cases.push(single(
                format!("cast {from} -> {to:?} {shape:?}"),
                Cast { to },
                vec![input.clone()],
                Tol::Exact,
            ));
        }
    }
    check_cases("cast", cases, 64);
}

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// How an epilogue operand lines up with the output.
#[derive(Clone, Copy, Debug)]
enum Operand {
    /// `[C]`
    Channel,
    /// `[1, 1, 1, C]` (or `[1, C]` for matrix products)
    Channel4,
    /// `[]`
    Scalar,
    /// `[1]`
    Scalar1,
    /// The output's own shape (a residual).
    Full,
}

/// Epilogues: text and operand layouts, one per binary step.
const EPILOGUES: &[(&str, &[Operand])] = &[
    ("", &[]),
    ("add", &[Operand::Channel]),
    ("add;relu6", &[Operand::Channel]),
    ("add;relu", &[Operand::Channel4]),
    ("mul;add;relu6", &[Operand::Channel, Operand::Channel]),
    ("add;add;relu", &[Operand::Channel, Operand::Full]),
    ("add", &[Operand::Full]),
    ("mul", &[Operand::Scalar]),
    ("add;leaky_relu:0.2", &[Operand::Scalar1]),
    ("sub;sigmoid", &[Operand::Channel]),
    ("div;tanh", &[Operand::Channel]),
    ("maximum;minimum", &[Operand::Scalar, Operand::Channel]),
    ("prelu", &[Operand::Channel]),
    ("elu", &[]),
    ("relu6", &[]),
    (
        "add;relu;mul;add",
        &[Operand::Channel, Operand::Channel4, Operand::Full],
    ),
    // Machine-code epilogues (AVX-512) compute these in registers.
    ("add;swish", &[Operand::Channel]),
    ("mul;add;sigmoid", &[Operand::Channel, Operand::Channel]),
    ("swish;add", &[Operand::Full]),
    // ResNet's block end (bias, batch norm, residual, relu) and a longer chain: five and six
    // steps, four operands (machine code for products, in place after depthwise tiles).
    (
        "add;mul;add;add;relu",
        &[
            Operand::Channel,
            Operand::Channel,
            Operand::Channel,
            Operand::Full,
        ],
    ),
    (
        "mul;add;swish;mul;add;relu6",
        &[
            Operand::Channel,
            Operand::Channel,
            Operand::Channel4,
            Operand::Full,
        ],
    ),
];

fn epilogue(text: &str) -> Epilogue {
    Epilogue::parse(&Attributes::default().with("epilogue", Attribute::Str(text.into())))
        .expect("epilogue")
}

fn epilogue_tol(text: &str) -> Tol {
    if ["sigmoid", "tanh", "elu", "swish"]
        .iter()
        .any(|t| text.contains(t))
    {
        SUMS_THEN_TRANSCENDENTAL
    } else {
        SUMS
    }
}

/// Operand tensors for an epilogue over an output of `shape`.
fn epilogue_operands(
    text: &str,
    layouts: &[Operand],
    shape: &[usize],
    matrix: bool,
    seed: u64,
) -> Vec<Tensor> {
    let channels = *shape.last().unwrap_or(&1);
    let steps: Vec<&str> = text.split(';').filter(|s| !s.is_empty()).collect();
    let binary_steps: Vec<&str> = steps
        .iter()
        .copied()
        .filter(|s| BinaryKind::from_text(s).is_some())
        .collect();
    assert_eq!(
        binary_steps.len(),
        layouts.len(),
        "epilogue {text:?} needs {} operands",
        binary_steps.len()
    );
    binary_steps
        .iter()
        .zip(layouts)
        .enumerate()
        .map(|(k, (&step, &layout))| {
            let operand_shape = match layout {
                Operand::Channel => vec![channels],
                Operand::Channel4 if matrix => vec![1, channels],
                Operand::Channel4 => vec![1, 1, 1, channels],
                Operand::Scalar => vec![],
                Operand::Scalar1 => vec![1],
                Operand::Full => shape.to_vec(),
            };
            let seed = seed + 101 * (k as u64 + 1);
            match step {
                "div" => uniform(&operand_shape, seed, 0.5, 2.0),
                "prelu" => uniform(&operand_shape, seed, -0.5, 1.0),
                _ => uniform(&operand_shape, seed, -1.0, 1.0),
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
struct ConvConfig {
    batch: usize,
    size: [usize; 2],
    channels: usize,
    kernel: [usize; 2],
    /// Output channels (regular) or depth multiplier (depthwise).
    outputs: usize,
    strides: [usize; 2],
    dilations: [usize; 2],
    padding: Padding,
    depthwise: bool,
    epilogue: usize,
    filter_is_input: bool,
}

impl ConvConfig {
    fn op(&self) -> Conv2d {
        Conv2d {
            strides: self.strides,
            dilations: self.dilations,
            padding: self.padding.clone(),
            depthwise: self.depthwise,
            epilogue: epilogue(EPILOGUES[self.epilogue].0),
        }
    }

    fn input_type(&self) -> TensorType {
        TensorType::new(
            DType::F32,
            vec![self.batch, self.size[0], self.size[1], self.channels],
        )
    }

    fn filter_type(&self) -> TensorType {
        TensorType::new(
            DType::F32,
            vec![self.kernel[0], self.kernel[1], self.channels, self.outputs],
        )
    }

    /// The output shape, if the geometry is valid.
    fn output_shape(&self) -> Option<Vec<usize>> {
        let (window, channels) = self
            .op()
            .geometry(&self.input_type(), &self.filter_type())
            .ok()?;
        (window.output[0] > 0 && window.output[1] > 0)
            .then(|| vec![self.batch, window.output[0], window.output[1], channels])
    }

    fn label(&self) -> String {
        format!(
            "conv2d{} x[{}, {}, {}, {}] filter[{}, {}, {}, {}]{} strides {:?} dilations {:?} padding {:?} epilogue {:?}",
            if self.depthwise { " depthwise" } else { "" },
            self.batch,
            self.size[0],
            self.size[1],
            self.channels,
            self.kernel[0],
            self.kernel[1],
            self.channels,
            self.outputs,
            if self.filter_is_input { " (input)" } else { " (constant)" },
            self.strides,
            self.dilations,
            self.padding,
            EPILOGUES[self.epilogue].0,
        )
    }

    fn case(&self, seed: u64) -> Case {
        self.case_with_sums(seed, SUMS)
    }

    /// The case with `sums` as the sums' tolerance (the epilogue's transcendental allowance is
    /// added when it has one).
    fn case_with_sums(&self, seed: u64, sums: Tol) -> Case {
        let config = self.clone();
        let shape = config
            .output_shape()
            .unwrap_or_else(|| panic!("invalid geometry: {}", config.label()));
        let (text, layouts) = EPILOGUES[config.epilogue];
        let tolerance = match (epilogue_tol(text), sums) {
            (Tol::RelPlusAbsRel(_, transcendental), Tol::Rel(sums)) => {
                Tol::RelPlusAbsRel(sums, transcendental)
            }
            (_, sums) => sums,
        };
        let x = uniform(&config.input_type().shape, seed, -1.0, 1.0);
        let filter = uniform(&config.filter_type().shape, seed + 1, -1.0, 1.0);
        let operands = epilogue_operands(text, layouts, &shape, false, seed + 2);
        case(config.label(), move |b| {
            let input = b.input(x.clone());
            let filter = if config.filter_is_input {
                b.input(filter.clone())
            } else {
                b.constant(filter.clone())
            };
            let mut inputs = vec![input, filter];
            inputs.extend(operands.iter().map(|t| b.input(t.clone())));
            let y = b.node(config.op(), &inputs);
            b.output(y, tolerance);
        })
    }
}

const CHANNELS: &[usize] = &[1, 3, 4, 5, 8, 13, 16, 17];

/// Deterministic grid of convolution configurations, mixing every attribute.
fn conv_grid(depthwise: bool, count: usize) -> Vec<ConvConfig> {
    let kernels: &[[usize; 2]] = &[[3, 3], [1, 1], [2, 3], [3, 1], [5, 5], [1, 2], [2, 2]];
    let strides: &[[usize; 2]] = &[[1, 1], [2, 2], [3, 3], [1, 2], [2, 1], [3, 2]];
    let dilations: &[[usize; 2]] = &[[1, 1], [2, 2], [1, 1], [2, 1], [1, 2]];
    let paddings = [
        Padding::Same,
        Padding::Valid,
        Padding::Explicit([1, 0, 2, 1]),
        Padding::Same,
        Padding::Explicit([0, 2, 1, 1]),
        Padding::Valid,
        Padding::Explicit([1, 1, 1, 1]),
    ];
    let sizes: &[[usize; 2]] = &[
        [5, 7],
        [6, 6],
        [9, 4],
        [3, 11],
        [1, 1],
        [7, 5],
        [8, 9],
        [4, 13],
        [2, 3],
        [11, 10],
        [12, 12],
    ];
    let multipliers: &[usize] = &[1, 2, 1, 3, 2];
    let mut configs = Vec::new();
    let mut i = 0usize;
    while configs.len() < count {
        let channels = CHANNELS[i % CHANNELS.len()];
        let outputs = if depthwise {
            multipliers[i % multipliers.len()]
        } else {
            CHANNELS[(i * 3 + i / CHANNELS.len()) % CHANNELS.len()]
        };
        let config = ConvConfig {
            batch: 1 + (i / 5) % 2,
            size: sizes[i % sizes.len()],
            channels,
            kernel: kernels[i % kernels.len()],
            outputs,
            strides: strides[i % strides.len()],
            dilations: dilations[(i / 2) % dilations.len()],
            padding: paddings[i % paddings.len()].clone(),
            depthwise,
            epilogue: (i * 7) % EPILOGUES.len(),
            filter_is_input: i % 3 == 1,
        };
        i += 1;
        if config.output_shape().is_some() {
            configs.push(config);
        }
        assert!(i < count * 10, "too few valid configurations");
    }
    configs
}

#[test]
fn conv2d_kernels_match_reference() {
    let mut cases: Vec<Case> = conv_grid(false, 64)
        .iter()
        .enumerate()
        .map(|(k, c)| c.case(k as u64 * 1000))
        .collect();
    // Every epilogue on one geometry, with filters as constants and as inputs; every channel
    // count as input and output.
    for (e, _) in EPILOGUES.iter().enumerate() {
        for filter_is_input in [false, true] {
            let config = ConvConfig {
                batch: 1,
                size: [6, 7],
                channels: 3,
                kernel: [3, 3],
                outputs: 13,
                strides: [1, 1],
                dilations: [1, 1],
                padding: Padding::Same,
                depthwise: false,
                epilogue: e,
                filter_is_input,
            };
            cases.push(config.case(50_000 + e as u64 * 10 + filter_is_input as u64));
        }
    }
    for (a, &channels) in CHANNELS.iter().enumerate() {
        for (b, &outputs) in CHANNELS.iter().enumerate() {
            let config = ConvConfig {
                batch: 1,
                size: [4, 5],
                channels,
                kernel: [2, 2],
                outputs,
                strides: [1, 1],
                dilations: [1, 1],
                padding: Padding::Valid,
                depthwise: false,
                epilogue: (a + b) % 3,
                filter_is_input: (a + b) % 2 == 0,
            };
            cases.push(config.case(60_000 + (a * 10 + b) as u64));
        }
    }
    check_cases("conv2d", cases, 24);
}

#[test]
fn depthwise_conv2d_kernels_match_reference() {
    let mut cases: Vec<Case> = conv_grid(true, 56)
        .iter()
        .enumerate()
        .map(|(k, c)| c.case(70_000 + k as u64 * 1000))
        .collect();
    for (a, &channels) in CHANNELS.iter().enumerate() {
        for multiplier in [1, 2] {
            for (e, epilogue) in [(0, 0usize), (1, 2), (2, 5), (3, 11)] {
                let config = ConvConfig {
                    batch: 1,
                    size: [5, 6],
                    channels,
                    kernel: [3, 3],
                    outputs: multiplier,
                    strides: [1 + e % 2, 1 + e % 2],
                    dilations: [1, 1],
                    padding: if e % 2 == 0 {
                        Padding::Same
                    } else {
                        Padding::Valid
                    },
                    depthwise: true,
                    epilogue,
                    filter_is_input: e == 1,
                };
                cases.push(config.case(90_000 + (a * 100 + multiplier * 10 + e) as u64));
            }
        }
    }
    // Borders: rows and columns whose windows lie partly or wholly in the padding (empty
    // windows give the epilogue of zero), border pixels inside and at the ends of wide rows
    // (several tiles per row), and more spans of border rows than the in-place lowering takes
    // (a 9-tap column on 9 rows: it reads a padded copy instead).
    // (size, kernel, strides, dilations, padding)
    let borders = [
        (
            [4, 5],
            [2, 2],
            [1, 1],
            [1, 1],
            Padding::Explicit([3, 2, 2, 4]),
        ),
        ([7, 7], [5, 5], [1, 1], [1, 1], Padding::Same),
        ([3, 64], [3, 3], [1, 1], [1, 1], Padding::Same),
        (
            [6, 61],
            [3, 5],
            [2, 2],
            [1, 2],
            Padding::Explicit([2, 1, 5, 3]),
        ),
        ([9, 5], [9, 1], [1, 1], [1, 1], Padding::Same),
        ([12, 12], [3, 3], [1, 1], [6, 6], Padding::Same),
    ];
    for (k, (size, kernel, strides, dilations, padding)) in borders.into_iter().enumerate() {
        for (channels, epilogue) in [(16, 2), (21, 10), (5, 12)] {
            let config = ConvConfig {
                batch: 2,
                size,
                channels,
                kernel,
                outputs: 1,
                strides,
                dilations,
                padding: padding.clone(),
                depthwise: true,
                epilogue,
                filter_is_input: k % 2 == 1,
            };
            cases.push(config.case(95_000 + (k * 100 + channels) as u64));
        }
    }
    check_cases("depthwise conv2d", cases, 24);
}

/// A chain of elementwise operations (input scaling: `x * a + b` per channel, then an
/// activation and a residual add) fuses into one binary kernel with an epilogue
/// (`fuse_epilogues`), computed in one pass; its answer is the chain's, node by node (with 2·4·7
/// pixels the per-channel operands repeat in vector blocks of 4 pixels; with 2·5·7 they do not
/// fill whole blocks and take the scalar path). An int32 chain and a step whose operand
/// outranks the result (broadcasting it to a larger shape) stay separate nodes, and still
/// compute the chain's answer.
#[test]
fn elementwise_chains_fuse_into_one_kernel() {
    for pixels in [[2, 5, 7], [2, 4, 7]] {
        float_chain_fuses([pixels[0], pixels[1], pixels[2], 3]);
    }
    integer_and_outranking_chains_stay_apart([2, 5, 7, 3]);
}

type ChainStep<'t> = (std::sync::Arc<dyn Operator>, Option<&'t Tensor>);

fn chain_graph(x: &Tensor, steps: &[ChainStep]) -> tfjsc::ir::Graph {
    let mut graph = tfjsc::ir::Graph::new();
    let mut value = graph.add_input("x", Some(x.tensor_type()));
    for (index, (op, operand)) in steps.iter().enumerate() {
        let mut inputs = vec![value];
        if let Some(operand) = operand {
            inputs.push(graph.add_constant(&format!("c{index}"), (*operand).clone(), None));
        }
        let node = graph.add_node(&format!("n{index}"), op.clone(), inputs, 1);
        value = graph.node(node).unwrap().outputs[0];
    }
    graph.add_output("y", value);
    graph
}

fn chain_reference(x: &Tensor, steps: &[ChainStep]) -> Tensor {
    steps.iter().fold(x.clone(), |value, (op, operand)| {
        let mut inputs = vec![&value];
        inputs.extend(operand);
        op.evaluate(&inputs).unwrap().remove(0)
    })
}

fn nodes_after_pipeline(mut graph: tfjsc::ir::Graph) -> usize {
    tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
    graph.node_count()
}

fn float_chain_fuses(shape: [usize; 4]) {
    use std::sync::Arc;

    let x = uniform(&shape, 1, -2.0, 2.0);
    let scale = f32_scalar(0.5);
    let shift = uniform(&[3], 2, -1.0, 1.0);
    let divisor = uniform(&[1, 1, 1, 3], 3, 0.5, 2.0);
    let residual = uniform(&shape, 4, -1.0, 1.0);
    let steps: Vec<ChainStep> = vec![
        (Arc::new(Binary::new(BinaryKind::Mul)), Some(&scale)),
        (Arc::new(Binary::new(BinaryKind::Sub)), Some(&shift)),
        (Arc::new(Binary::new(BinaryKind::Div)), Some(&divisor)),
        (Arc::new(Unary::new(UnaryKind::Swish)), None),
        (Arc::new(Binary::new(BinaryKind::Add)), Some(&residual)),
    ];
    assert_eq!(
        nodes_after_pipeline(chain_graph(&x, &steps)),
        1,
        "the chain should fuse"
    );
    let got = harness::execute(chain_graph(&x, &steps), std::slice::from_ref(&x)).unwrap();
    harness::compare(
        &chain_reference(&x, &steps),
        &got[0],
        SUMS_THEN_TRANSCENDENTAL,
    )
    .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
}

fn integer_and_outranking_chains_stay_apart(shape: [usize; 4]) {
    use std::sync::Arc;

    // int32: no epilogue (its steps are f32 register operations).
    let xi = ints(&shape, 5, -50, 50);
    let (two, three) = (ints(&[1], 6, 2, 3), ints(&[3], 7, -5, 5));
    let integer: Vec<ChainStep> = vec![
        (Arc::new(Binary::new(BinaryKind::Mul)), Some(&two)),
        (Arc::new(Binary::new(BinaryKind::Add)), Some(&three)),
    ];
    assert_eq!(nodes_after_pipeline(chain_graph(&xi, &integer)), 2);
    let got = harness::execute(chain_graph(&xi, &integer), std::slice::from_ref(&xi)).unwrap();
    harness::compare(&chain_reference(&xi, &integer), &got[0], Tol::Exact).unwrap();

    // A rank-4 operand against a rank-2 result: the step's output is rank 4, not fused.
    let x2 = uniform(&[6, 3], 8, -1.0, 1.0);
    let scale = f32_scalar(0.5);
    let divisor = uniform(&[1, 1, 1, 3], 3, 0.5, 2.0);
    let wide: Vec<ChainStep> = vec![
        (Arc::new(Binary::new(BinaryKind::Mul)), Some(&scale)),
        (Arc::new(Binary::new(BinaryKind::Add)), Some(&divisor)),
    ];
    let wide_graph = chain_graph(&x2, &wide);
    let mut typed = wide_graph.clone();
    tfjsc::passes::run_pipeline(&mut typed, true, &mut |_, _| {}).unwrap();
    let ops: Vec<String> = typed
        .nodes()
        .map(|(_, n)| {
            n.op.attributes()
                .0
                .get("epilogue")
                .map(|e| format!("{e:?}"))
                .unwrap_or_default()
        })
        .collect();
    assert!(ops.iter().all(String::is_empty), "fused: {ops:?}");
    let got = harness::execute(wide_graph, std::slice::from_ref(&x2)).unwrap();
    harness::compare(&chain_reference(&x2, &wide), &got[0], SUMS).unwrap();
}

/// Convolution followed by separate bias / activation / residual nodes: the fusion pass folds
/// them into the epilogue (or must leave them alone when the result has another reader).
#[test]
fn fused_conv2d_graphs_match_reference() {
    let mut cases = Vec::new();
    for (k, &(channels, outputs, depthwise)) in [
        (3usize, 8usize, false),
        (5, 13, false),
        (8, 2, true),
        (13, 1, true),
    ]
    .iter()
    .enumerate()
    {
        let seed = k as u64 * 7;
        let op = Conv2d {
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Same,
            depthwise,
            epilogue: Epilogue::default(),
        };
        let out_channels = if depthwise {
            channels * outputs
        } else {
            outputs
        };
        let x = uniform(&[1, 5, 6, channels], seed, -1.0, 1.0);
        let filter = uniform(&[3, 3, channels, outputs], seed + 1, -1.0, 1.0);
        let bias = uniform(&[out_channels], seed + 2, -1.0, 1.0);
        let scale = uniform(&[1, 1, 1, out_channels], seed + 3, 0.5, 1.5);
        let residual = uniform(&[1, 5, 6, out_channels], seed + 4, -1.0, 1.0);
        {
            let (op, x, filter, bias, scale, residual) = (
                op.clone(),
                x.clone(),
                filter.clone(),
                bias.clone(),
                scale.clone(),
                residual.clone(),
            );
            cases.push(case(format!("conv → mul → add(bias) → add(residual, ·) → relu6, {channels}→{out_channels} depthwise={depthwise}"), move |b| {
                let input = b.input(x.clone());
                let filter = b.constant(filter.clone());
                let conv = b.node(op.clone(), &[input, filter]);
                let scale = b.constant(scale.clone());
                let scaled = b.node(Binary::new(BinaryKind::Mul), &[scale, conv]);
                let bias = b.constant(bias.clone());
                let biased = b.node(Binary::new(BinaryKind::Add), &[scaled, bias]);
                let residual = b.input(residual.clone());
                let summed = b.node(Binary::new(BinaryKind::Add), &[residual, biased]);
                let y = b.node(Unary::new(UnaryKind::Relu6), &[summed]);
                b.output(y, SUMS);
            }));
        }
        cases.push(case(
            format!(
                "conv read twice (not fusable): relu(conv) and conv, {channels}→{out_channels}"
            ),
            move |b| {
                let input = b.input(x.clone());
                let filter = b.input(filter.clone());
                let conv = b.node(op.clone(), &[input, filter]);
                let bias = b.input(bias.clone());
                let biased = b.node(Binary::new(BinaryKind::Sub), &[conv, bias]);
                let y = b.node(Unary::new(UnaryKind::Relu), &[biased]);
                b.output(y, SUMS);
                b.output(conv, SUMS);
            },
        ));
    }
    check_cases("fused conv2d", cases, 16);
}

fn conv_config_strategy() -> impl Strategy<Value = ConvConfig> {
    (
        (
            1usize..=2,
            1usize..=9,
            1usize..=9,
            proptest::sample::select(CHANNELS.to_vec()),
        ),
        (
            1usize..=3,
            1usize..=3,
            proptest::sample::select(CHANNELS.to_vec()),
            1usize..=2,
        ),
        (
            1usize..=3,
            1usize..=3,
            1usize..=2,
            1usize..=2,
            0usize..3,
            [0usize..3, 0usize..3, 0usize..3, 0usize..3],
        ),
        (any::<bool>(), 0..EPILOGUES.len(), any::<bool>()),
    )
        .prop_map(
            |(
                (batch, h, w, channels),
                (kh, kw, outputs, multiplier),
                (sh, sw, dh, dw, padding, pads),
                (depthwise, epilogue, filter_is_input),
            )| {
                let padding = match padding {
                    0 => Padding::Same,
                    1 => Padding::Valid,
                    _ => Padding::Explicit(pads),
                };
                let mut config = ConvConfig {
                    batch,
                    size: [h, w],
                    channels,
                    kernel: [kh, kw],
                    outputs: if depthwise { multiplier } else { outputs },
                    strides: [sh, sw],
                    dilations: [dh, dw],
                    padding,
                    depthwise,
                    epilogue,
                    filter_is_input,
                };
                if config.output_shape().is_none() {
                    config.padding = Padding::Same;
                }
                config
            },
        )
}

proptest! {
    #![proptest_config(proptest_config(48))]

    /// Random geometries, three per graph.
    #[test]
    fn conv2d_property(configs in proptest::collection::vec(conv_config_strategy(), 3), seed in 0u64..1_000_000) {
        let cases: Vec<Case> = configs.iter().enumerate().map(|(k, c)| c.case(seed + k as u64 * 10)).collect();
        let failures = run_cases("conv2d property", cases, 3);
        prop_assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix product
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct MatMulConfig {
    batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    transpose_a: bool,
    transpose_b: bool,
    epilogue: usize,
    b_is_constant: bool,
}

impl MatMulConfig {
    fn case(&self, seed: u64) -> Case {
        let config = self.clone();
        let (text, layouts) = EPILOGUES[config.epilogue];
        let mut a_shape = config.batch.clone();
        a_shape.extend(if config.transpose_a {
            [config.k, config.m]
        } else {
            [config.m, config.k]
        });
        let mut b_shape = config.batch.clone();
        b_shape.extend(if config.transpose_b {
            [config.n, config.k]
        } else {
            [config.k, config.n]
        });
        let mut out_shape = config.batch.clone();
        out_shape.extend([config.m, config.n]);
        let a = uniform(&a_shape, seed, -1.0, 1.0);
        let b_value = uniform(&b_shape, seed + 1, -1.0, 1.0);
        let operands = epilogue_operands(text, layouts, &out_shape, true, seed + 2);
        let label = format!(
            "matmul a{a_shape:?} b{b_shape:?} transpose_a={} transpose_b={} b {} epilogue {text:?}",
            config.transpose_a,
            config.transpose_b,
            if config.b_is_constant {
                "constant"
            } else {
                "input"
            }
        );
        case(label, move |b| {
            let a_id = b.input(a.clone());
            let b_id = if config.b_is_constant {
                b.constant(b_value.clone())
            } else {
                b.input(b_value.clone())
            };
            let mut inputs = vec![a_id, b_id];
            inputs.extend(operands.iter().map(|t| b.input(t.clone())));
            let op = MatMul {
                transpose_a: config.transpose_a,
                transpose_b: config.transpose_b,
                epilogue: epilogue(text),
            };
            let y = b.node(op, &inputs);
            b.output(y, epilogue_tol(text));
        })
    }
}

#[test]
fn matmul_kernels_match_reference() {
    let ms = [1usize, 3, 4, 5, 8, 13, 17, 2];
    let ks = [1usize, 2, 5, 8, 16, 17, 3];
    let ns = [1usize, 3, 4, 5, 8, 13, 16, 17, 29, 33, 64, 12];
    let batches: [&[usize]; 4] = [&[], &[2], &[], &[2, 3]];
    let mut cases = Vec::new();
    for i in 0..72usize {
        let config = MatMulConfig {
            batch: batches[i % batches.len()].to_vec(),
            m: ms[i % ms.len()],
            k: ks[i % ks.len()],
            n: ns[i % ns.len()],
            transpose_a: i / 2 % 2 == 1,
            transpose_b: i / 4 % 2 == 1,
            epilogue: (i * 5) % EPILOGUES.len(),
            b_is_constant: i % 3 == 0,
        };
        cases.push(config.case(i as u64 * 100));
    }
    check_cases("matmul", cases, 24);
}

proptest! {
    #![proptest_config(proptest_config(32))]

    #[test]
    fn matmul_property(
        batch in proptest::collection::vec(1usize..=3, 0..=2),
        m in 1usize..=20, k in 1usize..=20, n in 1usize..=40,
        transpose_a in any::<bool>(), transpose_b in any::<bool>(),
        epilogue in 0..EPILOGUES.len(), b_is_constant in any::<bool>(), seed in 0u64..1_000_000,
    ) {
        let config = MatMulConfig { batch, m, k, n, transpose_a, transpose_b, epilogue, b_is_constant };
        let failures = run_cases("matmul property", vec![config.case(seed)], 1);
        prop_assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling, reductions, softmax
// ---------------------------------------------------------------------------------------------

#[test]
fn pool_kernels_match_reference() {
    let windows: &[[usize; 2]] = &[[2, 2], [3, 3], [1, 1], [2, 3], [3, 1], [5, 5]];
    let strides: &[[usize; 2]] = &[[2, 2], [1, 1], [3, 3], [1, 2], [2, 1]];
    let paddings = [
        Padding::Same,
        Padding::Valid,
        Padding::Explicit([1, 0, 0, 1]),
        Padding::Explicit([1, 1, 2, 0]),
    ];
    let sizes: &[[usize; 2]] = &[[7, 7], [6, 5], [1, 1], [4, 9], [8, 8], [5, 3], [3, 10]];
    let mut cases = Vec::new();
    let mut i = 0usize;
    let mut made = 0usize;
    while made < 96 {
        let max = i.is_multiple_of(2);
        let pool = Pool {
            max,
            window: windows[i / 2 % windows.len()],
            strides: strides[i % strides.len()],
            padding: paddings[i / 3 % paddings.len()].clone(),
            zero_padding: false,
        };
        let shape = vec![
            1 + i / 7 % 2,
            sizes[i % sizes.len()][0],
            sizes[i % sizes.len()][1],
            CHANNELS[i % CHANNELS.len()],
        ];
        i += 1;
        if pool
            .infer(&tfjsc::ops::InputFacts {
                types: vec![&TensorType::new(DType::F32, shape.clone())],
                constants: vec![None],
            })
            .is_err()
        {
            continue;
        }
        // Explicit pads smaller than the window (no window entirely in padding: see below).
        if let Padding::Explicit(p) = pool.padding {
            if p[0].max(p[1]) >= pool.window[0] || p[2].max(p[3]) >= pool.window[1] {
                continue;
            }
        }
        made += 1;
        let x = uniform(&shape, i as u64, -10.0, 10.0);
        let label = format!(
            "pool {} x{shape:?} window {:?} strides {:?} padding {:?}",
            if max { "max" } else { "average" },
            pool.window,
            pool.strides,
            pool.padding
        );
        cases.push(single(
            label,
            pool,
            vec![x],
            if max { Tol::Exact } else { SUMS },
        ));
    }
    // Windows lying entirely in the explicit padding: the reference yields -inf (max) and 0
    // (average, an empty window counts as one element).
    for max in [true, false] {
        let pool = Pool {
            max,
            window: [1, 2],
            strides: [1, 1],
            padding: Padding::Explicit([2, 0, 0, 2]),
            zero_padding: false,
        };
        let x = uniform(&[1, 3, 4, 5], 7, -10.0, 10.0);
        let label = format!("pool {} x[1, 3, 4, 5] window [1, 2] strides [1, 1] padding Explicit([2, 0, 0, 2]) (windows entirely in padding)", if max { "max" } else { "average" });
        cases.push(single(
            label,
            pool,
            vec![x],
            if max { Tol::Exact } else { SUMS },
        ));
    }
    check_cases("pool", cases, 48);
}

/// A valid pooling, as a Pad before it leaves it.
fn valid_pool(max: bool, window: [usize; 2], strides: [usize; 2]) -> Pool {
    Pool {
        max,
        window,
        strides,
        padding: Padding::Valid,
        zero_padding: false,
    }
}

/// `pool(pad(x, operands...))` through the pipeline: its ops are `ops`, and its answer is the
/// pooling's of the padded input.
fn check_padded_pool(label: &str, x: &Tensor, operands: &[&Tensor], pool: &Pool, ops: &[&str]) {
    let mut compiled = pad_then_pool(x, operands, pool);
    tfjsc::passes::run_pipeline(&mut compiled, true, &mut |_, _| {}).unwrap();
    let names: Vec<&str> = compiled.nodes().map(|(_, node)| node.op.name()).collect();
    assert_eq!(names, ops, "{label}");

    let mut pad_inputs = vec![x];
    pad_inputs.extend(operands);
    let padded = Pad.evaluate(&pad_inputs).unwrap().remove(0);
    let expected = pool.evaluate(&[&padded]).unwrap().remove(0);
    let got = harness::execute(pad_then_pool(x, operands, pool), std::slice::from_ref(x)).unwrap();
    let tolerance = if pool.max { Tol::Exact } else { SUMS };
    harness::compare(&expected, &got[0], tolerance).unwrap_or_else(|e| panic!("{label}: {e}"));
}

/// `pool(pad(x, operands...))`, the Pad's operands (paddings, fill) constants.
fn pad_then_pool(x: &Tensor, operands: &[&Tensor], pool: &Pool) -> tfjsc::ir::Graph {
    use std::sync::Arc;
    let mut graph = tfjsc::ir::Graph::new();
    let mut inputs = vec![graph.add_input("x", Some(x.tensor_type()))];
    for (index, &operand) in operands.iter().enumerate() {
        inputs.push(graph.add_constant(&format!("pad{index}"), operand.clone(), None));
    }
    let pad = graph.add_node("pad", Arc::new(Pad), inputs, 1);
    let padded = graph.node(pad).unwrap().outputs[0];
    let node = graph.add_node("pool", Arc::new(pool.clone()), vec![padded], 1);
    let output = graph.node(node).unwrap().outputs[0];
    graph.add_output("y", output);
    graph
}

/// A zero Pad before a valid pooling (ResNet's ZeroPadding2D before its max pool) folds into
/// the pooling as zero padding (`fold_padding`): the Pad kernel is gone after the pipeline, and
/// the answer is the valid pooling's of the padded input, where the zeros take part (inputs
/// are mostly negative, so a maximum shows it). Windows unrolled and bounded at run time (9×9,
/// over the unrolled taps' limit), pads past the window (all-padding windows), max and average.
#[test]
fn zero_padding_folds_into_the_pooling_that_reads_it() {
    let geometries = [
        ([3, 3], [2, 2], [0, 1, 1, 1]),
        ([2, 3], [1, 2], [3, 0, 2, 4]),
        ([9, 9], [1, 1], [4, 4, 4, 4]),
    ];
    for (case, (window, strides, [top, bottom, left, right])) in geometries.into_iter().enumerate()
    {
        for max in [true, false] {
            let x = uniform(&[2, 7, 9, 6], case as u64, -10.0, 2.0);
            let paddings = Tensor::from_i32(vec![4, 2], vec![0, 0, top, bottom, left, right, 0, 0]);
            let pool = valid_pool(max, window, strides);
            let label = format!("case {case}, max {max}: the pad should be folded");
            check_padded_pool(&label, &x, &[&paddings], &pool, &["pool"]);
        }
    }
}

/// A -inf Pad before a valid max pool (how ONNX exports spell a padded MaxPool) folds into the
/// pool as its own padding, which no window's maximum picks (`fold_padding`): the answer is the
/// valid max pool's of the padded input, with -inf and NaN among the inputs. Windows unrolled and
/// bounded at run time (9×9). It does not fold into an average, nor where a pad is as wide as
/// the window (a window of padding alone would give -inf), nor for another fill.
#[test]
fn negative_infinity_padding_folds_into_the_max_pool_that_reads_it() {
    let cases = [
        (true, [3, 3], [2, 2], [0, 1, 1, 1], f32::NEG_INFINITY, true),
        (true, [2, 3], [1, 2], [1, 0, 2, 2], f32::NEG_INFINITY, true),
        (true, [9, 9], [1, 1], [4, 4, 8, 4], f32::NEG_INFINITY, true),
        (
            false,
            [3, 3],
            [2, 2],
            [1, 1, 1, 1],
            f32::NEG_INFINITY,
            false,
        ),
        (true, [2, 2], [1, 1], [2, 0, 0, 0], f32::NEG_INFINITY, false),
        (true, [3, 3], [2, 2], [1, 1, 1, 1], -1.0, false),
    ];
    for (case, (max, window, strides, [top, bottom, left, right], fill, folds)) in
        cases.into_iter().enumerate()
    {
        let mut x = uniform(&[2, 7, 9, 6], case as u64 + 40, -10.0, 2.0);
        if let tfjsc::ir::TensorData::F32(values) = &mut x.data {
            values[0] = f32::NEG_INFINITY;
            values[7] = f32::NAN;
            values[60] = f32::NAN;
        }
        let paddings = Tensor::from_i32(vec![4, 2], vec![0, 0, top, bottom, left, right, 0, 0]);
        let fill = Tensor::from_f32(vec![], vec![fill]);
        let pool = valid_pool(max, window, strides);
        let ops: &[&str] = if folds { &["pool"] } else { &["pad", "pool"] };
        check_padded_pool(&format!("case {case}"), &x, &[&paddings, &fill], &pool, ops);
    }
}

const REDUCE_KINDS: &[(ReduceKind, &str)] = &[
    (ReduceKind::Mean, "mean"),
    (ReduceKind::Sum, "sum"),
    (ReduceKind::Max, "max"),
    (ReduceKind::Min, "min"),
    (ReduceKind::Prod, "prod"),
];

fn reduce_cases(kind: ReduceKind, name: &str, seed: u64) -> Vec<Case> {
    let shapes: &[&[usize]] = &[
        &[7],
        &[3, 5],
        &[2, 3, 4],
        &[2, 3, 4, 5],
        &[1, 13, 1, 6],
        &[3, 17],
        &[],
        // Squeeze-and-excite means: channels in blocks of vectors, a shorter block and a
        // scalar tail, each block on one thread. Blocks are four vectors wide below 32 vectors
        // (75 = 4 × 16 + 8 + 3) and eight from there (139 = 4 × 32 + 8 + 3).
        &[2, 5, 75],
        &[2, 3, 139],
    ];
    let tol = if matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        Tol::Exact
    } else {
        SUMS
    };
    let mut cases = Vec::new();
    for (s, &shape) in shapes.iter().enumerate() {
        let rank = shape.len();
        // Products stay near 1; the rest spans both signs.
        let x = if kind == ReduceKind::Prod {
            uniform(shape, seed + s as u64, 0.8, 1.25)
        } else {
            uniform(shape, seed + s as u64, -10.0, 10.0)
        };
        for subset in 0..(1usize << rank) {
            let axes: Vec<usize> = (0..rank).filter(|a| subset >> a & 1 == 1).collect();
            for keep_dims in [false, true] {
                let op = Reduce {
                    kind,
                    axes: axes.clone(),
                    keep_dims,
                };
                cases.push(single(
                    format!("reduce {name} x{shape:?} axes {axes:?} keep_dims={keep_dims}"),
                    op,
                    vec![x.clone()],
                    tol,
                ));
            }
        }
    }
    // Negative and repeated axes through the axes operand (resolved by shape inference).
    let negative: &[(&[usize], &[i64])] = &[
        (&[2, 3, 4], &[-1]),
        (&[2, 3, 4], &[-2, -1]),
        (&[2, 3, 4, 5], &[0, -1]),
        (&[2, 3, 4, 5], &[1, -3]),
        (&[3, 17], &[-2]),
        (&[6], &[-1]),
    ];
    for (k, &(shape, axes)) in negative.iter().enumerate() {
        let x = if kind == ReduceKind::Prod {
            uniform(shape, seed + 50 + k as u64, 0.8, 1.25)
        } else {
            uniform(shape, seed + 50 + k as u64, -10.0, 10.0)
        };
        for keep_dims in [false, true] {
            let axes_tensor = i32_vector(axes);
            let x = x.clone();
            cases.push(case(
                format!("reduce {name} x{shape:?} axes operand {axes:?} keep_dims={keep_dims}"),
                move |b| {
                    let input = b.input(x.clone());
                    let axes = b.constant(axes_tensor.clone());
                    let y = b.node(ReduceAxes { kind, keep_dims }, &[input, axes]);
                    b.output(y, tol);
                },
            ));
        }
    }
    cases
}

#[test]
fn reduce_kernels_match_reference() {
    let cases: Vec<Case> = REDUCE_KINDS
        .iter()
        .enumerate()
        .flat_map(|(k, &(kind, name))| reduce_cases(kind, name, k as u64 * 1000))
        .collect();
    check_cases("reduce", cases, 80);
}

#[test]
fn softmax_kernels_match_reference() {
    let shapes: &[&[usize]] = &[
        &[1],
        &[3],
        &[4],
        &[5],
        &[2, 7],
        &[3, 8],
        &[2, 3, 13],
        &[1, 17],
        &[4, 33],
        &[2, 1],
        &[1, 1, 64],
    ];
    let mut cases = Vec::new();
    for (s, &shape) in shapes.iter().enumerate() {
        for (r, (low, high)) in [(-5.0f32, 5.0f32), (-80.0, 80.0), (1000.0, 1010.0)]
            .into_iter()
            .enumerate()
        {
            let x = uniform(shape, (s * 10 + r) as u64, low, high);
            cases.push(single(
                format!("softmax x{shape:?} values in [{low}, {high})"),
                Softmax,
                vec![x],
                TRANSCENDENTAL,
            ));
        }
    }
    check_cases("softmax", cases, 40);
}

// ---------------------------------------------------------------------------------------------
// Data movement
// ---------------------------------------------------------------------------------------------

fn typed(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    match dtype {
        DType::F32 => uniform(shape, seed, -10.0, 10.0),
        DType::I32 => ints(shape, seed, -1000, 1000),
        DType::Bool => bools(shape, seed),
        DType::I64 => panic!("no int64 inputs"),
    }
}

#[test]
fn concat_and_pack_kernels_match_reference() {
    let mut cases = Vec::new();
    let concats: &[(i64, &[&[usize]])] = &[
        (0, &[&[2, 3], &[4, 3], &[1, 3]]),
        (1, &[&[2, 3], &[2, 5]]),
        (-1, &[&[2, 3, 1], &[2, 3, 4], &[2, 3, 3]]),
        (1, &[&[1, 2, 3, 4], &[1, 5, 3, 4]]),
        (
            3,
            &[&[1, 2, 2, 3], &[1, 2, 2, 13], &[1, 2, 2, 1], &[1, 2, 2, 16]],
        ),
        (0, &[&[5]]),
        (0, &[&[3], &[1], &[4]]),
        (-2, &[&[3, 2, 5], &[3, 1, 5]]),
        (2, &[&[2, 2, 0], &[2, 2, 3]]),
    ];
    for (k, &(axis, shapes)) in concats.iter().enumerate() {
        for dtype in [DType::F32, DType::I32, DType::Bool] {
            if shapes.iter().any(|s| s.contains(&0)) && dtype != DType::F32 {
                continue;
            }
            let parts: Vec<Tensor> = shapes
                .iter()
                .enumerate()
                .map(|(p, s)| typed(s, dtype, (k * 10 + p) as u64))
                .collect();
            cases.push(single(
                format!("concat axis {axis} {dtype:?} {shapes:?}"),
                Concat { axis, pack: false },
                parts,
                Tol::Exact,
            ));
        }
    }
    let packs: &[(i64, &[usize], usize)] = &[
        (0, &[3, 4], 3),
        (1, &[3, 4], 2),
        (2, &[3, 4], 4),
        (-1, &[2, 5], 3),
        (0, &[], 3),
        (-3, &[2, 5], 2),
        (1, &[7], 5),
    ];
    for (k, &(axis, shape, count)) in packs.iter().enumerate() {
        for dtype in [DType::F32, DType::I32, DType::Bool] {
            let parts: Vec<Tensor> = (0..count)
                .map(|p| typed(shape, dtype, (k * 10 + p) as u64 + 500))
                .collect();
            cases.push(single(
                format!("pack axis {axis} {dtype:?} {count} × {shape:?}"),
                Concat { axis, pack: true },
                parts,
                Tol::Exact,
            ));
        }
    }
    // Kernel results as parts, and one input used twice.
    cases.push(case("concat axis 1 of relu(x), neg(y), x", |b| {
        let x = b.input(uniform(&[3, 5], 1, -1.0, 1.0));
        let y = b.input(uniform(&[3, 2], 2, -1.0, 1.0));
        let rx = b.node(Unary::new(UnaryKind::Relu), &[x]);
        let ny = b.node(Unary::new(UnaryKind::Neg), &[y]);
        let joined = b.node(
            Concat {
                axis: 1,
                pack: false,
            },
            &[rx, ny, x],
        );
        let z = b.node(Unary::new(UnaryKind::Abs), &[joined]);
        b.output(z, Tol::Exact);
        b.output(joined, Tol::Exact);
    }));
    check_cases("concat and pack", cases, 48);
}

#[test]
fn pad_kernels_match_reference() {
    let pads: &[(&[usize], &[i64])] = &[
        (&[5], &[2, 3]),
        (&[3, 4], &[1, 0, 0, 2]),
        (&[2, 3, 4], &[0, 0, 1, 1, 2, 0]),
        (&[1, 5, 5, 3], &[0, 0, 1, 2, 2, 1, 0, 0]),
        (&[2, 3], &[0, 0, 0, 0]),
        (&[1, 2, 2, 3], &[0, 0, 0, 0, 0, 0, 0, 5]),
        (&[1], &[0, 4]),
        (&[2, 1, 3, 1], &[1, 1, 1, 1, 1, 1, 1, 1]),
        (&[1, 7, 7, 13], &[0, 0, 3, 3, 3, 3, 0, 0]),
        // A scalar (nothing to pad), empty tensors, and shapes of ones.
        (&[], &[]),
        (&[0, 3], &[1, 1, 0, 2]),
        (&[1, 1, 1], &[0, 0, 0, 0, 0, 0]),
        (&[1, 1, 40], &[0, 0, 1, 0, 2, 3]),
    ];
    let mut cases = Vec::new();
    for (k, &(shape, paddings)) in pads.iter().enumerate() {
        let rank = shape.len();
        let paddings_tensor =
            Tensor::from_i32(vec![rank, 2], paddings.iter().map(|&p| p as i32).collect());
        for (dtype, fill) in [
            (DType::F32, None),
            (DType::F32, Some(-1.5f32)),
            (DType::I32, None),
            (DType::I32, Some(7.0)),
        ] {
            let x = typed(shape, dtype, k as u64 * 3);
            let paddings_tensor = paddings_tensor.clone();
            let label = format!("pad {dtype:?} x{shape:?} paddings {paddings:?} fill {fill:?}");
            cases.push(case(label, move |b| {
                let input = b.input(x.clone());
                let p = b.constant(paddings_tensor.clone());
                let mut inputs = vec![input, p];
                if let Some(fill) = fill {
                    let value = if dtype == DType::F32 {
                        f32_scalar(fill)
                    } else {
                        Tensor::from_i32(vec![], vec![fill as i32])
                    };
                    inputs.push(b.constant(value));
                }
                let y = b.node(Pad, &inputs);
                b.output(y, Tol::Exact);
            }));
        }
    }
    check_cases("pad", cases, 40);
}

#[test]
fn transpose_kernels_match_reference() {
    let mut perms: Vec<(Vec<usize>, Vec<i64>)> = vec![
        (vec![3, 5], vec![1, 0]),
        (vec![3, 5], vec![-1, 0]),
        (vec![1, 7, 1], vec![2, 0, 1]),
        (vec![6], vec![0]),
    ];
    for perm in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        perms.push((vec![2, 3, 4], perm.to_vec()));
    }
    for perm in [
        [0, 3, 1, 2],
        [0, 2, 3, 1],
        [3, 2, 1, 0],
        [1, 0, 2, 3],
        [0, 1, 3, 2],
    ] {
        perms.push((vec![2, 3, 4, 5], perm.to_vec()));
        perms.push((vec![1, 5, 4, 13], perm.to_vec()));
    }
    // Blocked transposes: whole and edge tiles of 8 along both axes, an outer level (the batch)
    // around them, axes that do not merge, and one large enough for three threads to share.
    perms.extend([
        (vec![2, 17, 9, 11], vec![0, 2, 3, 1]),
        (vec![2, 17, 9, 11], vec![0, 3, 1, 2]),
        (vec![3, 16, 8, 2], vec![2, 0, 3, 1]),
        (vec![1, 40, 24, 24], vec![0, 2, 3, 1]),
        (vec![64, 3], vec![1, 0]),
    ]);
    let mut cases = Vec::new();
    for (k, (shape, perm)) in perms.iter().enumerate() {
        for dtype in [DType::F32, DType::I32, DType::Bool] {
            let x = typed(shape, dtype, k as u64);
            let perm_tensor = i32_vector(perm);
            cases.push(case(
                format!("transpose {dtype:?} x{shape:?} perm {perm:?}"),
                move |b| {
                    let input = b.input(x.clone());
                    let p = b.constant(perm_tensor.clone());
                    let y = b.node(Transpose, &[input, p]);
                    b.output(y, Tol::Exact);
                },
            ));
        }
    }
    check_cases("transpose", cases, 48);
}

#[derive(Clone, Copy)]
struct SliceCase {
    shape: &'static [usize],
    begin: &'static [i64],
    end: &'static [i64],
    strides: &'static [i64],
    masks: [i64; 5],
}

#[test]
fn strided_slice_kernels_match_reference() {
    // masks: begin, end, ellipsis, new_axis, shrink_axis
    let slices = [
        SliceCase {
            shape: &[10],
            begin: &[2],
            end: &[8],
            strides: &[1],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[10],
            begin: &[1],
            end: &[10],
            strides: &[3],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[10],
            begin: &[-1],
            end: &[-11],
            strides: &[-1],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[10],
            begin: &[8],
            end: &[1],
            strides: &[-2],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[10],
            begin: &[0],
            end: &[0],
            strides: &[-1],
            masks: [1, 1, 0, 0, 0],
        },
        SliceCase {
            shape: &[4, 6],
            begin: &[1, 0],
            end: &[3, 6],
            strides: &[1, 2],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[4, 6],
            begin: &[2, 1],
            end: &[3, 4],
            strides: &[1, 1],
            masks: [1, 2, 0, 0, 0],
        },
        SliceCase {
            shape: &[3, 5, 7],
            begin: &[0, 2, 0],
            end: &[3, 3, 7],
            strides: &[1, 1, 1],
            masks: [0, 0, 0, 0, 2],
        },
        SliceCase {
            shape: &[3, 5, 7],
            begin: &[0, 1],
            end: &[0, 4],
            strides: &[1, 1],
            masks: [0, 0, 1, 0, 0],
        },
        SliceCase {
            shape: &[3, 5, 7],
            begin: &[0, 0],
            end: &[0, 2],
            strides: &[1, 1],
            masks: [0, 0, 0, 1, 0],
        },
        SliceCase {
            shape: &[2, 3, 4, 5],
            begin: &[0, 1, -3, 4],
            end: &[2, 3, -1, 0],
            strides: &[1, 1, 1, -1],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[5, 4],
            begin: &[1, 0],
            end: &[100, 4],
            strides: &[2, 1],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[6, 3],
            begin: &[-1, 0],
            end: &[0, 3],
            strides: &[1, 1],
            masks: [0, 0, 0, 0, 1],
        },
        SliceCase {
            shape: &[2, 5, 6, 3],
            begin: &[0, 1, 1, 0],
            end: &[0, 5, 6, 3],
            strides: &[1, 2, 2, 1],
            masks: [1, 1, 0, 0, 0],
        },
        SliceCase {
            shape: &[2, 5, 6, 3],
            begin: &[0, 2],
            end: &[0, 3],
            strides: &[1, 1],
            masks: [0, 0, 1, 0, 2],
        },
        SliceCase {
            shape: &[1, 9, 17],
            begin: &[0, 0, 3],
            end: &[1, 9, 16],
            strides: &[1, 3, 4],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[7, 5],
            begin: &[6, -1],
            end: &[-8, -6],
            strides: &[-3, -2],
            masks: [0; 5],
        },
        SliceCase {
            shape: &[4, 4],
            begin: &[0, 0, 1],
            end: &[0, 0, 3],
            strides: &[1, 1, 1],
            masks: [1, 1, 0, 2, 0],
        },
        SliceCase {
            shape: &[4, 4],
            begin: &[0, 0, 1],
            end: &[0, 0, 3],
            strides: &[1, 1, 1],
            masks: [0, 0, 0, 2, 0],
        },
        SliceCase {
            shape: &[3, 8],
            begin: &[1, 5],
            end: &[2, 2],
            strides: &[1, 1],
            masks: [0; 5],
        },
    ];
    let mut cases = Vec::new();
    for (k, slice) in slices.iter().copied().enumerate() {
        for dtype in [DType::F32, DType::I32, DType::Bool] {
            let x = typed(slice.shape, dtype, k as u64);
            let [begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask] =
                slice.masks;
            let op = StridedSlice {
                begin_mask,
                end_mask,
                ellipsis_mask,
                new_axis_mask,
                shrink_axis_mask,
            };
            let label = format!(
                "strided_slice {dtype:?} x{:?} begin {:?} end {:?} strides {:?} masks (begin, end, ellipsis, new_axis, shrink) {:?}",
                slice.shape, slice.begin, slice.end, slice.strides, slice.masks
            );
            cases.push(case(label, move |b| {
                let input = b.input(x.clone());
                let begin = b.constant(i32_vector(slice.begin));
                let end = b.constant(i32_vector(slice.end));
                let strides = b.constant(i32_vector(slice.strides));
                let y = b.node(op.clone(), &[input, begin, end, strides]);
                b.output(y, Tol::Exact);
            }));
        }
    }
    check_cases("strided slice", cases, 60);
}

/// Reshape, squeeze and expand-dims views between kernels, of graph inputs, and as outputs.
#[test]
fn reshape_views_between_kernels_match_reference() {
    let reshape = || Reshape {
        mode: ReshapeMode::FromOperand,
    };
    let mut cases = Vec::new();
    cases.push(case("relu → reshape [6, 4] → softmax", move |b| {
        let x = b.input(uniform(&[2, 3, 4], 1, -3.0, 3.0));
        let r = b.node(Unary::new(UnaryKind::Relu), &[x]);
        let shape = b.constant(i32_vector(&[6, 4]));
        let v = b.node(reshape(), &[r, shape]);
        let y = b.node(Softmax, &[v]);
        b.output(y, TRANSCENDENTAL);
    }));
    cases.push(case("neg → reshape [3, -1] → add [3, 4]", move |b| {
        let x = b.input(uniform(&[12], 2, -3.0, 3.0));
        let n = b.node(Unary::new(UnaryKind::Neg), &[x]);
        let shape = b.constant(i32_vector(&[3, -1]));
        let v = b.node(reshape(), &[n, shape]);
        let other = b.input(uniform(&[3, 4], 3, -3.0, 3.0));
        let y = b.node(Binary::new(BinaryKind::Add), &[v, other]);
        b.output(y, Tol::Exact);
    }));
    cases.push(case(
        "reshape of a graph input [2, 6] → [3, 4] → square",
        move |b| {
            let x = b.input(uniform(&[2, 6], 4, -3.0, 3.0));
            let shape = b.constant(i32_vector(&[3, 4]));
            let v = b.node(reshape(), &[x, shape]);
            let y = b.node(Unary::new(UnaryKind::Square), &[v]);
            b.output(y, Tol::Exact);
        },
    ));
    cases.push(case("relu → reshape [6] as a graph output", move |b| {
        let x = b.input(uniform(&[2, 3], 5, -3.0, 3.0));
        let r = b.node(Unary::new(UnaryKind::Relu), &[x]);
        let shape = b.constant(i32_vector(&[6]));
        let v = b.node(reshape(), &[r, shape]);
        b.output(v, Tol::Exact);
        b.output(r, Tol::Exact);
    }));
    cases.push(case(
        "graph input reshaped straight to an output",
        move |b| {
            let x = b.input(ints(&[4, 5], 6, -9, 9));
            let shape = b.constant(i32_vector(&[20]));
            let v = b.node(reshape(), &[x, shape]);
            b.output(v, Tol::Exact);
        },
    ));
    cases.push(case("abs → squeeze → mul [5]", move |b| {
        let x = b.input(uniform(&[1, 5, 1], 7, -3.0, 3.0));
        let a = b.node(Unary::new(UnaryKind::Abs), &[x]);
        let v = b.node(
            Reshape {
                mode: ReshapeMode::Squeeze(vec![]),
            },
            &[a],
        );
        let other = b.input(uniform(&[5], 8, -3.0, 3.0));
        let y = b.node(Binary::new(BinaryKind::Mul), &[v, other]);
        b.output(y, Tol::Exact);
    }));
    cases.push(case(
        "relu → squeeze [-1] → expand_dims 0 → add [1, 1, 3]",
        move |b| {
            let x = b.input(uniform(&[4, 5, 1], 9, -3.0, 3.0));
            let r = b.node(Unary::new(UnaryKind::Relu), &[x]);
            let s = b.node(
                Reshape {
                    mode: ReshapeMode::Squeeze(vec![-1]),
                },
                &[r],
            );
            let axis = b.constant(Tensor::from_i32(vec![], vec![-1]));
            let e = b.node(
                Reshape {
                    mode: ReshapeMode::ExpandDims,
                },
                &[s, axis],
            );
            let other = b.input(uniform(&[1, 1, 3], 10, -3.0, 3.0));
            let y = b.node(Binary::new(BinaryKind::Add), &[e, other]);
            b.output(y, Tol::Exact);
        },
    ));
    cases.push(case(
        "conv 1×1 → reshape [16, 8] → matmul [8, 5] → reshape [2, 40] → reduce sum axis 1",
        move |b| {
            let x = b.input(uniform(&[1, 4, 4, 3], 11, -1.0, 1.0));
            let filter = b.constant(uniform(&[1, 1, 3, 8], 12, -1.0, 1.0));
            let conv = b.node(
                Conv2d {
                    strides: [1, 1],
                    dilations: [1, 1],
                    padding: Padding::Valid,
                    depthwise: false,
                    epilogue: epilogue("relu"),
                },
                &[x, filter],
            );
            let shape = b.constant(i32_vector(&[16, 8]));
            let v = b.node(reshape(), &[conv, shape]);
            let w = b.input(uniform(&[8, 5], 13, -1.0, 1.0));
            let m = b.node(
                MatMul {
                    transpose_a: false,
                    transpose_b: false,
                    epilogue: Epilogue::default(),
                },
                &[v, w],
            );
            let shape = b.constant(i32_vector(&[2, 40]));
            let v2 = b.node(reshape(), &[m, shape]);
            let s = b.node(
                Reduce {
                    kind: ReduceKind::Sum,
                    axes: vec![1],
                    keep_dims: false,
                },
                &[v2],
            );
            b.output(m, SUMS);
            b.output(s, SUMS);
        },
    ));
    cases.push(case("two reshapes in a row between transposes", move |b| {
        let x = b.input(uniform(&[2, 3, 4], 14, -1.0, 1.0));
        let perm = b.constant(i32_vector(&[2, 0, 1]));
        let t = b.node(Transpose, &[x, perm]);
        let shape = b.constant(i32_vector(&[4, 6]));
        let v = b.node(reshape(), &[t, shape]);
        let shape = b.constant(i32_vector(&[8, 3]));
        let v2 = b.node(reshape(), &[v, shape]);
        let perm = b.constant(i32_vector(&[1, 0]));
        let y = b.node(Transpose, &[v2, perm]);
        b.output(y, Tol::Exact);
    }));
    cases.push(case(
        "a graph input as an output, and one kernel result as two outputs",
        move |b| {
            let x = b.input(uniform(&[3, 5], 15, -1.0, 1.0));
            let y = b.node(Unary::new(UnaryKind::Abs), &[x]);
            b.output(x, Tol::Exact);
            b.output(y, Tol::Exact);
            b.output(y, Tol::Exact);
        },
    ));
    check_cases("reshape views", cases, 16);
}

/// Kernels whose arena buffers must stay live across others (liveness through views, results
/// read again much later, scratch of padded convolutions).
#[test]
fn chains_of_kernels_match_reference() {
    let mut cases = Vec::new();
    cases.push(case(
        "neg → conv (scratch) → max pool → add(·, neg) → softmax → concat(·, neg) and conv",
        |b| {
            let x = b.input(uniform(&[1, 6, 6, 4], 1, -1.0, 1.0));
            let a = b.node(Unary::new(UnaryKind::Neg), &[x]);
            let filter = b.constant(uniform(&[3, 3, 4, 4], 2, -1.0, 1.0));
            let conv = b.node(
                Conv2d {
                    strides: [1, 1],
                    dilations: [1, 1],
                    padding: Padding::Same,
                    depthwise: false,
                    epilogue: Epilogue::default(),
                },
                &[a, filter],
            );
            let pooled = b.node(
                Pool {
                    max: true,
                    window: [3, 3],
                    strides: [1, 1],
                    padding: Padding::Same,
                    zero_padding: false,
                },
                &[conv],
            );
            let summed = b.node(Binary::new(BinaryKind::Add), &[pooled, a]);
            let soft = b.node(Softmax, &[summed]);
            let joined = b.node(
                Concat {
                    axis: -1,
                    pack: false,
                },
                &[soft, a],
            );
            b.output(joined, TRANSCENDENTAL);
            b.output(conv, SUMS);
        },
    ));
    cases.push(case(
        "relu → reshape view read after other kernels → add",
        |b| {
            let x = b.input(uniform(&[2, 6], 3, -1.0, 1.0));
            let a = b.node(Unary::new(UnaryKind::Relu), &[x]);
            let shape = b.constant(i32_vector(&[12]));
            let v = b.node(
                Reshape {
                    mode: ReshapeMode::FromOperand,
                },
                &[a, shape],
            );
            let y = b.input(uniform(&[12], 4, -1.0, 1.0));
            let mut chain = y;
            for kind in [
                UnaryKind::Exp,
                UnaryKind::Sigmoid,
                UnaryKind::Square,
                UnaryKind::Neg,
                UnaryKind::Abs,
            ] {
                chain = b.node(Unary::new(kind), &[chain]);
            }
            let z = b.node(Binary::new(BinaryKind::Add), &[chain, v]);
            b.output(z, TRANSCENDENTAL);
        },
    ));
    cases.push(case(
        "depthwise (scratch) → conv (scratch) → matmul-free reduce mean over H, W → matmul",
        |b| {
            let x = b.input(uniform(&[2, 7, 5, 3], 5, -1.0, 1.0));
            let depthwise = b.constant(uniform(&[3, 3, 3, 2], 6, -1.0, 1.0));
            let d = b.node(
                Conv2d {
                    strides: [2, 2],
                    dilations: [1, 1],
                    padding: Padding::Same,
                    depthwise: true,
                    epilogue: epilogue("relu6"),
                },
                &[x, depthwise],
            );
            let filter = b.input(uniform(&[3, 3, 6, 8], 7, -1.0, 1.0));
            let c = b.node(
                Conv2d {
                    strides: [1, 1],
                    dilations: [1, 1],
                    padding: Padding::Explicit([1, 1, 1, 1]),
                    depthwise: false,
                    epilogue: Epilogue::default(),
                },
                &[d, filter],
            );
            let mean = b.node(
                Reduce {
                    kind: ReduceKind::Mean,
                    axes: vec![1, 2],
                    keep_dims: false,
                },
                &[c],
            );
            let w = b.input(uniform(&[8, 5], 8, -1.0, 1.0));
            let bias = b.input(uniform(&[5], 9, -1.0, 1.0));
            let logits = b.node(
                MatMul {
                    transpose_a: false,
                    transpose_b: false,
                    epilogue: epilogue("add"),
                },
                &[mean, w, bias],
            );
            let y = b.node(Softmax, &[logits]);
            b.output(c, SUMS);
            b.output(y, TRANSCENDENTAL);
        },
    ));
    check_cases("chains", cases, 8);
}

/// TensorFlow's `DivNoNan`, imported from a model.json (the path a user's model takes): 0
/// wherever the divisor is ±0, whatever the dividend (even inf and NaN); plain division elsewhere.
/// Expected values written out, not taken from our reference.
#[test]
fn div_no_nan_is_zero_where_the_divisor_is_zero() {
    let placeholder = |name: &str| {
        serde_json::json!({"name": name, "op": "Placeholder", "attr": {
            "dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [{"size": "8"}]}}}})
    };
    let model = serde_json::json!({
        "format": "graph-model",
        "modelTopology": {"node": [
            placeholder("x"),
            placeholder("y"),
            {"name": "q", "op": "DivNoNan", "input": ["x", "y"], "attr": {"T": {"type": "DT_FLOAT"}}},
        ]},
        "weightsManifest": [],
    });
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("model.json");
    std::fs::write(&path, serde_json::to_vec(&model).unwrap()).unwrap();
    let library = common::compile_model(&path, directory.path(), "libdiv.so");
    let model = tfjsc_runtime::Model::load(&library, None).unwrap();
    let inf = f32::INFINITY;
    let x = [1.0, -1.0, 0.0, inf, f32::NAN, 6.0, -7.5, 1.0];
    let y = [0.0, -0.0, 0.0, 0.0, 0.0, 2.0, 2.5, f32::NAN];
    let outputs = model
        .new_context()
        .unwrap()
        .run_tensors(&[
            tfjsc_runtime::Tensor::from_f32(&[8], &x).unwrap(),
            tfjsc_runtime::Tensor::from_f32(&[8], &y).unwrap(),
        ])
        .unwrap();
    let got = outputs[0].to_f32().unwrap();
    let expected = [0.0, 0.0, 0.0, 0.0, 0.0, 3.0, -3.0, f32::NAN];
    for (index, (got, expected)) in got.iter().zip(expected).enumerate() {
        assert!(
            got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan()),
            "element {index}: {} / {} gave {got}, expected {expected}",
            x[index],
            y[index]
        );
    }
}
