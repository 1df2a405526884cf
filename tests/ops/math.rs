//! The polynomial math kernels (log, log1p, expm1, softplus, sin, cos, tan, the inverse and
//! hyperbolic family, erf, selu, sign, atan2, pow, float floor_mod) against the reference, which
//! uses Rust's libm (`f32::ln`, `f32::sin`, `libm::erff`, ...), over each function's domain plus
//! its special values (±0, ±inf, NaN, subnormals, the edges of the domain).
//!
//! Tolerances (`AbsRel(a)`: |got − expected| ≤ a·(1 + |expected|) per element):
//! - 2e-6 for log, log1p, expm1, softplus, sin, cos, atan, asin, acos, erf, selu: Cephes-class
//!   polynomials (about 1e-7 relative on the reduced range) plus a reduction or a division;
//! - 4e-6 for tan (a quotient of two approximations), the hyperbolic functions and their inverses
//!   (compositions of two approximations), atan2;
//! - 1e-5 for pow: `e^(y·log|x|)` loses |y·log x|·2^-24 relative to the exact power;
//! - floor_mod: 1e-6 relative to the output's largest magnitude (the remainder of a rounded
//!   quotient, see `Binary::emit`);
//! - sign and the integer divisions: exact (the integer kernels also refuse a zero divisor).
//!
//! Sine and cosine are checked for |x| ≤ 1000: beyond about 8192 the three-part Cephes reduction
//! loses bits (documented in `codegen/math.rs`).

use tfjsc::ir::Tensor;
use tfjsc::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};

use crate::harness::*;

const SHAPES: &[&[usize]] = &[&[1], &[7], &[64], &[3, 17]];

/// Uniform values in [low, high) with `specials` placed at rotating positions.
fn domain(shape: &[usize], seed: u64, low: f32, high: f32, specials: &[f32]) -> Tensor {
    let mut values = uniform(shape, seed, low, high).to_f32_vec();
    let count = values.len();
    for (k, &special) in specials.iter().enumerate().take(count) {
        values[(k * 5 + seed as usize) % count] = special;
    }
    Tensor::from_f32(shape.to_vec(), values)
}

const COMMON: &[f32] = &[0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

#[test]
fn unary_math_kernels_match_reference() {
    let tiny = [1e-8, -1e-8, 3e-39, 1e-30, 1e-4];
    // (kind, low, high, extra specials, tolerance)
    let table: Vec<(UnaryKind, f32, f32, Vec<f32>, Tol)> = vec![
        (
            UnaryKind::Log,
            0.0,
            1000.0,
            [
                &tiny[..],
                &[
                    1.0,
                    -1.0,
                    f32::MIN_POSITIVE,
                    std::f32::consts::FRAC_1_SQRT_2,
                    std::f32::consts::SQRT_2,
                ][..],
            ]
            .concat(),
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Log1p,
            -1.0,
            100.0,
            [&tiny[..], &[-1.0, -0.999, -2.0, 1e-3][..]].concat(),
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Expm1,
            -30.0,
            30.0,
            [&tiny[..], &[88.0, 89.0, -100.0, 1e-3][..]].concat(),
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Softplus,
            -40.0,
            40.0,
            vec![13.9, 14.0, -13.9, -14.0, 100.0, -100.0, 1e-8],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Sin,
            -1000.0,
            1000.0,
            vec![
                std::f32::consts::PI,
                std::f32::consts::FRAC_PI_2,
                -std::f32::consts::PI,
                1e-8,
                0.785,
                2.356,
            ],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Cos,
            -1000.0,
            1000.0,
            vec![
                std::f32::consts::PI,
                std::f32::consts::FRAC_PI_2,
                -std::f32::consts::PI,
                1e-8,
                0.785,
                2.356,
            ],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Tan,
            -1.5,
            1.5,
            vec![1e-8, 0.785, -0.785, 1.0, -1.0],
            Tol::AbsRel(4e-6),
        ),
        (
            UnaryKind::Atan,
            -100.0,
            100.0,
            vec![0.4142, 0.4143, 2.4142, 2.4143, 1e-8, 1e30, -1e30],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Asin,
            -1.0,
            1.0,
            vec![1.0, -1.0, 1.5, -1.5, 0.99999, 1e-8],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Acos,
            -1.0,
            1.0,
            vec![1.0, -1.0, 1.5, -1.5, 0.99999, 1e-8],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Sinh,
            -20.0,
            20.0,
            vec![1e-8, -1e-8, 1e-3, 89.0, -89.0],
            Tol::AbsRel(4e-6),
        ),
        (
            UnaryKind::Cosh,
            -20.0,
            20.0,
            vec![1e-8, 89.0, -89.0],
            Tol::AbsRel(4e-6),
        ),
        (
            UnaryKind::Asinh,
            -1e5,
            1e5,
            vec![1e-8, -1e-8, 0.5, -0.5, 4096.0, 5000.0, 1e30],
            Tol::AbsRel(4e-6),
        ),
        (
            UnaryKind::Acosh,
            1.0,
            1e5,
            vec![1.0, 1.0001, 0.5, -1.0, 4096.0, 1e30, -1e30],
            Tol::AbsRel(4e-6),
        ),
        (
            UnaryKind::Atanh,
            -1.0,
            1.0,
            vec![1.0, -1.0, 0.99999, -0.99999, 1.5, 1e-8],
            Tol::AbsRel(4e-6),
        ),
        (
            UnaryKind::Erf,
            -5.0,
            5.0,
            vec![1e-8, 4.0, -4.0, 0.5, 3.9, 10.0],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Selu,
            -20.0,
            20.0,
            vec![1e-8, -1e-8, -100.0],
            Tol::AbsRel(2e-6),
        ),
        (
            UnaryKind::Sign,
            -10.0,
            10.0,
            vec![1e-40, -1e-40],
            Tol::Exact,
        ),
    ];
    let mut cases = Vec::new();
    for (k, (kind, low, high, specials, tol)) in table.into_iter().enumerate() {
        let specials: Vec<f32> = COMMON.iter().copied().chain(specials).collect();
        for (s, shape) in SHAPES.iter().enumerate() {
            let x = domain(shape, (k * 10 + s) as u64, low, high, &specials);
            cases.push(single(
                format!("{} x{shape:?}", kind.text()),
                Unary::new(kind),
                vec![x],
                tol,
            ));
        }
    }
    check_cases("unary math", cases, 32);
}

#[test]
fn binary_math_kernels_match_reference() {
    let zeros_and_infinities = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0,
        -1.0,
    ];
    let mut cases = Vec::new();
    for (s, shape) in SHAPES.iter().enumerate() {
        let seed = s as u64 * 31;
        // atan2 over every pair of the special values, and random pairs.
        let specials: Vec<(f32, f32)> = zeros_and_infinities
            .iter()
            .flat_map(|&y| zeros_and_infinities.iter().map(move |&x| (y, x)))
            .collect();
        let count: usize = shape.iter().product();
        let mut y = uniform(shape, seed, -10.0, 10.0).to_f32_vec();
        let mut x = uniform(shape, seed + 1, -10.0, 10.0).to_f32_vec();
        for (i, &(a, b)) in specials.iter().enumerate().take(count) {
            y[i] = a;
            x[i] = b;
        }
        cases.push(single(
            format!("atan2 {shape:?}"),
            Binary::new(BinaryKind::Atan2),
            vec![
                Tensor::from_f32(shape.to_vec(), y),
                Tensor::from_f32(shape.to_vec(), x),
            ],
            Tol::AbsRel(4e-6),
        ));
        // pow: positive bases, then negative bases with integer exponents, then zeros.
        let base = uniform(shape, seed + 2, 0.01, 10.0).to_f32_vec();
        let exponent = uniform(shape, seed + 3, -5.0, 5.0).to_f32_vec();
        let mut base = base;
        let mut exponent = exponent;
        let pow_specials = [
            (-2.0, 3.0),
            (-2.0, 2.0),
            (-2.0, 0.5),
            (0.0, 2.0),
            (-0.0, 3.0),
            (0.0, -1.0),
            (-0.0, -3.0),
            (1.0, f32::NAN),
            (f32::NAN, 0.0),
            (f32::INFINITY, 2.0),
            (4.0, 0.5),
            (2.0, -2.0),
            (-3.0, -1.0),
        ];
        for (i, &(a, b)) in pow_specials.iter().enumerate().take(count) {
            base[i] = a;
            exponent[i] = b;
        }
        cases.push(single(
            format!("pow {shape:?}"),
            Binary::new(BinaryKind::Pow),
            vec![
                Tensor::from_f32(shape.to_vec(), base),
                Tensor::from_f32(shape.to_vec(), exponent),
            ],
            Tol::AbsRel(1e-5),
        ));
        // floor_mod with every sign combination.
        let dividend = uniform(shape, seed + 4, -50.0, 50.0);
        let divisor = signed_magnitudes(shape, seed + 5, 0.5, 7.0);
        cases.push(single(
            format!("floor_mod {shape:?}"),
            Binary::new(BinaryKind::FloorMod),
            vec![dividend, divisor],
            Tol::Rel(1e-6),
        ));
    }
    check_cases("binary math", cases, 16);
}

#[test]
fn integer_division_kernels_match_reference() {
    let mut cases = Vec::new();
    for kind in [
        BinaryKind::Div,
        BinaryKind::FloorDiv,
        BinaryKind::FloorMod,
        BinaryKind::SquaredDifference,
        BinaryKind::Pow,
    ] {
        for (s, shape) in SHAPES.iter().enumerate() {
            let seed = 700 + s as u64 * 3;
            let x = ints(shape, seed, -50, 50);
            let mut divisor = ints(shape, seed + 1, -7, 8).to_i64_vec();
            for value in divisor.iter_mut().filter(|v| **v == 0) {
                *value = 3;
            }
            if kind == BinaryKind::Pow {
                // Non-negative exponents (negative ones are an error), wrapping results.
                divisor.iter_mut().for_each(|v| *v = v.abs() * 3);
            }
            let mut x = x.to_i64_vec();
            // The x86 trap case i32::MIN / −1 (for pow: i32::MIN squared wraps to 0).
            x[0] = i32::MIN as i64;
            divisor[0] = if kind == BinaryKind::Pow { 2 } else { -1 };
            let as_i32 =
                |v: &[i64]| Tensor::from_i32(shape.to_vec(), v.iter().map(|&x| x as i32).collect());
            cases.push(single(
                format!("{} i32 {shape:?}", kind.text()),
                Binary::new(kind),
                vec![as_i32(&x), as_i32(&divisor)],
                Tol::Exact,
            ));
        }
    }
    check_cases("integer division", cases, 16);
}

#[test]
fn integer_division_by_zero_fails_the_run_naming_the_node() {
    let x = Tensor::from_i32(vec![4], vec![7, -7, 3, 1]);
    let y = Tensor::from_i32(vec![4], vec![2, 2, 0, 1]);
    for (kind, reason) in [
        (BinaryKind::FloorDiv, "division by zero"),
        (BinaryKind::FloorMod, "division by zero"),
        (BinaryKind::Div, "division by zero"),
        (BinaryKind::Pow, "negative power"),
    ] {
        let y = if kind == BinaryKind::Pow {
            Tensor::from_i32(vec![4], vec![2, 1, -1, 0])
        } else {
            y.clone()
        };
        let mut graph = tfjsc::ir::Graph::new();
        let a = graph.add_input("x", Some(x.tensor_type()));
        let b = graph.add_input("y", Some(y.tensor_type()));
        let node = graph.add_node(
            "divide",
            std::sync::Arc::new(Binary::new(kind)),
            vec![a, b],
            1,
        );
        let output = graph.node(node).expect("added").outputs[0];
        graph.add_output("z", output);
        let message = execute(graph, &[x.clone(), y.clone()]).expect_err("the data is refused");
        assert!(
            message.contains("\"divide\"") && message.contains(reason),
            "{}: {message}",
            kind.text()
        );
    }
}

#[test]
fn bool_and_integer_unary_kernels_match_reference() {
    let mut cases = Vec::new();
    for (s, shape) in SHAPES.iter().enumerate() {
        cases.push(single(
            format!("logical_not {shape:?}"),
            Unary::new(UnaryKind::LogicalNot),
            vec![bools(shape, 900 + s as u64)],
            Tol::Exact,
        ));
        for kind in [
            UnaryKind::Neg,
            UnaryKind::Abs,
            UnaryKind::Square,
            UnaryKind::Relu,
            UnaryKind::Sign,
        ] {
            let mut values = ints(shape, 950 + s as u64, -40_000, 40_000).to_i64_vec();
            values[0] = i32::MIN as i64;
            let x = Tensor::from_i32(shape.to_vec(), values.iter().map(|&v| v as i32).collect());
            cases.push(single(
                format!("{} i32 {shape:?}", kind.text()),
                Unary::new(kind),
                vec![x],
                Tol::Exact,
            ));
        }
    }
    check_cases("bool and integer unary", cases, 24);
}

#[test]
fn integer_reduction_kernels_match_reference() {
    use tfjsc::ops::reduce::{Reduce, ReduceKind};
    let mut cases = Vec::new();
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[7], &[0]),
        (&[3, 5], &[1]),
        (&[3, 5], &[0]),
        (&[2, 3, 4], &[0, 2]),
        (&[4, 1, 6], &[0, 1, 2]),
        // 8-element blocks, one per thread, and a shorter one.
        (&[3, 4, 21], &[0, 1]),
    ];
    for kind in [
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
    ] {
        for (s, &(shape, axes)) in shapes.iter().enumerate() {
            for keep_dims in [false, true] {
                // Large magnitudes: sums and products wrap, the mean truncates toward zero.
                let (low, high) = if kind == ReduceKind::Prod {
                    (-9, 10)
                } else {
                    (-1_000_000_000, 1_000_000_000)
                };
                let x = ints(shape, 1300 + s as u64, low, high);
                cases.push(single(
                    format!("{kind:?} i32 {shape:?} axes {axes:?} keep_dims={keep_dims}"),
                    Reduce {
                        kind,
                        axes: axes.to_vec(),
                        keep_dims,
                    },
                    vec![x],
                    Tol::Exact,
                ));
            }
        }
    }
    check_cases("integer reductions", cases, 25);
}
