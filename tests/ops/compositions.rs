//! TensorFlow ops imported as compositions of IR ops (LogSoftmax, IsNan, IsInf, IsFinite), run
//! through the importer, the pipeline and the compiled code, against direct references written
//! from TensorFlow's definitions. Tolerance: exact for the classifications; for LogSoftmax
//! `AbsRel(4e-6)` (an exp, a sum and a log on top of the shift, as for softmax). Also the matrix
//! product's batch broadcasting (BatchMatMulV2), against the reference at `Rel(1e-5)`.

use tfjsc::ir::{Graph, Tensor};
use tfjsc::ops::importer::Importer;
use tfjsc::ops::registry;
use tfjsc_proto::tensorflow::NodeDef;

use crate::harness::*;

/// Imports one TensorFlow node over graph inputs `feeds`, compiles and runs it.
fn run_imported(op: &str, feeds: &[Tensor]) -> Result<Vec<tfjsc_runtime::Tensor>, String> {
    let mut graph = Graph::new();
    let inputs: Vec<_> = feeds
        .iter()
        .enumerate()
        .map(|(i, t)| graph.add_input(&format!("x{i}"), Some(t.tensor_type())))
        .collect();
    let node = NodeDef {
        name: "node".into(),
        op: op.into(),
        ..Default::default()
    };
    let import = registry::importer_for(op).ok_or(format!("{op} is not registered"))?;
    let outputs =
        import(&mut Importer::new(&mut graph), &node, &inputs).map_err(|e| e.to_string())?;
    graph.add_output("y", outputs[0]);
    execute(graph, feeds)
}

#[test]
fn log_softmax_matches_its_definition() {
    for (s, shape) in [&[1usize][..], &[7], &[3, 5], &[2, 3, 17], &[2, 2, 2, 33]]
        .iter()
        .enumerate()
    {
        let mut x = uniform(shape, 40 + s as u64, -30.0, 30.0).to_f32_vec();
        x[0] = 80.0; // e^80 alone would overflow a naive sum; the shift keeps it finite.
        let width = *shape.last().unwrap();
        let expected: Vec<f32> = x
            .chunks(width)
            .flat_map(|row| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
                row.iter()
                    .map(move |&v| ((v - max) as f64 - sum.ln()) as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        let feed = Tensor::from_f32(shape.to_vec(), x);
        let got = run_imported("LogSoftmax", &[feed]).unwrap();
        let expected = Tensor::from_f32(shape.to_vec(), expected);
        compare(&expected, &got[0], Tol::AbsRel(4e-6)).unwrap_or_else(|e| panic!("{shape:?}: {e}"));
    }
}

#[test]
fn float_classes_match_their_definitions() {
    let values = vec![
        0.0,
        -0.0,
        1.5,
        -3.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE / 4.0,
    ];
    let shape = vec![values.len()];
    type Classify = fn(f32) -> bool;
    let cases: [(&str, Classify); 3] = [
        ("IsNan", f32::is_nan),
        ("IsInf", f32::is_infinite),
        ("IsFinite", f32::is_finite),
    ];
    for (op, classify) in cases {
        let got = run_imported(op, &[Tensor::from_f32(shape.clone(), values.clone())]).unwrap();
        let expected =
            Tensor::from_bool(shape.clone(), values.iter().map(|&v| classify(v)).collect());
        compare(&expected, &got[0], Tol::Exact).unwrap_or_else(|e| panic!("{op}: {e}"));
    }
}

#[test]
fn batch_matmul_broadcasts_batch_dimensions() {
    use tfjsc::ops::epilogue::Epilogue;
    use tfjsc::ops::matmul::MatMul;
    // (A, B) shapes, with every broadcasting pattern BatchMatMulV2 allows.
    let pairs: [(&[usize], &[usize]); 7] = [
        (&[2, 1, 3, 4], &[3, 4, 2]),
        (&[2, 3, 4], &[1, 4, 5]),
        (&[2, 3, 4], &[4, 3]),
        (&[3, 4], &[2, 2, 4, 5]),
        (&[1, 3, 5, 4], &[2, 1, 4, 9]),
        (&[2, 3, 17, 8], &[8, 13]),
        (&[4, 1, 2, 3], &[1, 5, 3, 2]),
    ];
    let mut cases = Vec::new();
    for (p, &(a, b)) in pairs.iter().enumerate() {
        for (transpose_a, transpose_b) in [(false, false), (true, true)] {
            let transposed = |shape: &[usize], t: bool| {
                let mut shape = shape.to_vec();
                if t {
                    let r = shape.len();
                    shape.swap(r - 1, r - 2);
                }
                shape
            };
            let op = MatMul {
                transpose_a,
                transpose_b,
                epilogue: Epilogue::default(),
            };
            cases.push(single(
                format!("matmul {a:?} x {b:?} transposed={transpose_a}"),
                op,
                vec![
                    uniform(&transposed(a, transpose_a), 60 + p as u64, -1.0, 1.0),
                    uniform(&transposed(b, transpose_b), 70 + p as u64, -1.0, 1.0),
                ],
                Tol::Rel(1e-5),
            ));
        }
    }
    check_cases("batch matmul broadcasting", cases, 8);
}
