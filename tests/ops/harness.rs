//! The op-test harness: deterministic inputs, a graph builder that evaluates the reference
//! alongside, compilation and comparison with stated tolerances (see `main.rs`).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use tfjsc::compile::{compile_graph, write_outputs};
use tfjsc::ir::{DType, Graph, Tensor, TensorData, ValueId};
use tfjsc::ops::Operator;
use tfjsc_runtime::Model;

use crate::common;

// ---------------------------------------------------------------------------------------------
// Tolerances
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tol {
    Exact,
    /// Relative to max |expected| of the output.
    Rel(f64),
    /// Absolute plus relative, per element.
    AbsRel(f64),
    /// `Rel(r)` and `AbsRel(a)` allowances added.
    RelPlusAbsRel(f64, f64),
}

pub(crate) const SUMS: Tol = Tol::Rel(1e-5);
pub(crate) const TRANSCENDENTAL: Tol = Tol::AbsRel(2e-6);
pub(crate) const SUMS_THEN_TRANSCENDENTAL: Tol = Tol::RelPlusAbsRel(1e-5, 2e-6);

// ---------------------------------------------------------------------------------------------
// Deterministic values
// ---------------------------------------------------------------------------------------------

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    pub(crate) fn uniform(&mut self, low: f32, high: f32) -> f32 {
        let unit = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        low + (high - low) * unit
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) fn count_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Uniform f32 values in [low, high).
pub(crate) fn uniform(shape: &[usize], seed: u64, low: f32, high: f32) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::from_f32(
        shape.to_vec(),
        (0..count_of(shape))
            .map(|_| rng.uniform(low, high))
            .collect(),
    )
}

/// Values spanning a large range: half in ±100, half in ±8, with `specials` written at rotating
/// positions (so they land in vector bodies and scalar tails alike).
pub(crate) fn spread(shape: &[usize], seed: u64, specials: &[f32]) -> Tensor {
    let mut rng = Rng::new(seed);
    let count = count_of(shape);
    let mut values: Vec<f32> = (0..count)
        .map(|i| {
            if i % 2 == 0 {
                rng.uniform(-100.0, 100.0)
            } else {
                rng.uniform(-8.0, 8.0)
            }
        })
        .collect();
    if count > 0 {
        let rotation = (seed as usize) % specials.len().max(1);
        for (k, &special) in specials.iter().enumerate().take(count) {
            let position = (k * 7 + rotation) % count;
            values[position] = special;
        }
    }
    Tensor::from_f32(shape.to_vec(), values)
}

/// Values with magnitude in [low, high) and random sign.
pub(crate) fn signed_magnitudes(shape: &[usize], seed: u64, low: f32, high: f32) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::from_f32(
        shape.to_vec(),
        (0..count_of(shape))
            .map(|_| {
                if rng.next() & 1 == 0 {
                    rng.uniform(low, high)
                } else {
                    -rng.uniform(low, high)
                }
            })
            .collect(),
    )
}

pub(crate) fn ints(shape: &[usize], seed: u64, low: i32, high: i32) -> Tensor {
    let mut rng = Rng::new(seed);
    let span = (high - low) as u64 + 1;
    Tensor::from_i32(
        shape.to_vec(),
        (0..count_of(shape))
            .map(|_| low + rng.below(span) as i32)
            .collect(),
    )
}

pub(crate) fn bools(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::from_bool(
        shape.to_vec(),
        (0..count_of(shape)).map(|_| rng.next() & 1 == 1).collect(),
    )
}

pub(crate) fn i32_vector(values: &[i64]) -> Tensor {
    Tensor::from_i32(
        vec![values.len()],
        values.iter().map(|&v| v as i32).collect(),
    )
}

pub(crate) fn f32_scalar(value: f32) -> Tensor {
    Tensor::from_f32(vec![], vec![value])
}

// ---------------------------------------------------------------------------------------------
// Graph builder with reference evaluation
// ---------------------------------------------------------------------------------------------

pub(crate) struct Check {
    pub(crate) label: String,
    pub(crate) output: usize,
    pub(crate) expected: Tensor,
    pub(crate) tol: Tol,
}

pub(crate) struct Builder {
    pub(crate) graph: Graph,
    pub(crate) feeds: Vec<Tensor>,
    pub(crate) reference: HashMap<ValueId, Tensor>,
    pub(crate) checks: Vec<Check>,
    pub(crate) label: String,
    pub(crate) names: usize,
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder {
            graph: Graph::new(),
            feeds: Vec::new(),
            reference: HashMap::new(),
            checks: Vec::new(),
            label: String::new(),
            names: 0,
        }
    }

    pub(crate) fn fresh(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    /// A graph input fed with `tensor`.
    pub(crate) fn input(&mut self, tensor: Tensor) -> ValueId {
        let name = format!("input{}", self.feeds.len());
        let id = self.graph.add_input(&name, Some(tensor.tensor_type()));
        self.reference.insert(id, tensor.clone());
        self.feeds.push(tensor);
        id
    }

    /// A compiler-embedded constant.
    pub(crate) fn constant(&mut self, tensor: Tensor) -> ValueId {
        let name = self.fresh("constant");
        let id = self.graph.add_constant(&name, tensor.clone(), None);
        self.reference.insert(id, tensor);
        id
    }

    /// Adds a node and computes its reference value from its inputs' reference values.
    pub(crate) fn node(&mut self, op: impl Operator, inputs: &[ValueId]) -> ValueId {
        self.node_outputs(op, inputs, 1)[0]
    }

    /// Adds a node with `count` outputs (split, unpack, top-k) and their reference values.
    pub(crate) fn node_outputs(
        &mut self,
        op: impl Operator,
        inputs: &[ValueId],
        count: usize,
    ) -> Vec<ValueId> {
        let op: Arc<dyn Operator> = Arc::new(op);
        let values: Vec<&Tensor> = inputs.iter().map(|v| &self.reference[v]).collect();
        let results = op.evaluate(&values).unwrap_or_else(|e| {
            panic!(
                "{}: reference evaluation of {} {:?}: {e}",
                self.label,
                op.name(),
                op.attributes()
            )
        });
        assert_eq!(
            results.len(),
            count,
            "{}: {} outputs",
            self.label,
            op.name()
        );
        let name = self.fresh("node");
        let node = self.graph.add_node(&name, op, inputs.to_vec(), count);
        let outputs = self.graph.node(node).expect("just added").outputs.clone();
        for (&value, result) in outputs.iter().zip(results) {
            self.reference.insert(value, result);
        }
        outputs
    }

    pub(crate) fn output(&mut self, value: ValueId, tol: Tol) {
        let output = self.graph.outputs.len();
        self.graph.add_output(&format!("output{output}"), value);
        let expected = self.reference[&value].clone();
        self.checks.push(Check {
            label: self.label.clone(),
            output,
            expected,
            tol,
        });
    }
}

pub(crate) type Build = Box<dyn Fn(&mut Builder) + Send + Sync>;

pub(crate) struct Case {
    pub(crate) label: String,
    pub(crate) build: Build,
}

pub(crate) fn case(
    label: impl Into<String>,
    build: impl Fn(&mut Builder) + Send + Sync + 'static,
) -> Case {
    Case {
        label: label.into(),
        build: Box::new(build),
    }
}

/// One input through one op, compared with `tol`.
pub(crate) fn single(
    label: String,
    op: impl Operator + Clone,
    inputs: Vec<Tensor>,
    tol: Tol,
) -> Case {
    case(label, move |b| {
        let ids: Vec<ValueId> = inputs.iter().map(|t| b.input(t.clone())).collect();
        let y = b.node(op.clone(), &ids);
        b.output(y, tol);
    })
}

pub(crate) fn to_runtime(tensor: &Tensor) -> tfjsc_runtime::Tensor {
    match &tensor.data {
        TensorData::F32(v) => tfjsc_runtime::Tensor::from_f32(&tensor.shape, v),
        TensorData::I32(v) => tfjsc_runtime::Tensor::from_i32(&tensor.shape, v),
        TensorData::Bool(v) => tfjsc_runtime::Tensor::from_bool(&tensor.shape, v),
        TensorData::I64(_) => panic!("the runtime has no int64 inputs"),
    }
    .expect("runtime tensor")
}

pub(crate) fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else {
        "panic".into()
    }
}

/// Pipeline, compile, link, load, run. Errors (and panics) come back as text.
pub(crate) fn execute(
    graph: Graph,
    feeds: &[Tensor],
) -> Result<Vec<tfjsc_runtime::Tensor>, String> {
    let directory = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let result = catch_unwind(AssertUnwindSafe(
        || -> Result<Vec<tfjsc_runtime::Tensor>, String> {
            let mut graph = graph;
            tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {})
                .map_err(|e| format!("pipeline: {e}"))?;
            let compiled = compile_graph(graph, None, &common::options())
                .map_err(|e| format!("compile: {e}"))?;
            let library = directory.path().join("libgraph.so");
            write_outputs(&compiled, &library).map_err(|e| format!("link: {e}"))?;
            let model =
                Model::load(&library, Some(directory.path())).map_err(|e| format!("load: {e}"))?;
            let inputs: Vec<tfjsc_runtime::Tensor> = feeds.iter().map(to_runtime).collect();
            let run = |threads: usize| {
                let mut context = model.new_context().map_err(|e| format!("context: {e}"))?;
                context
                    .set_threads(threads)
                    .map_err(|e| format!("threads: {e}"))?;
                context
                    .run_tensors(&inputs)
                    .map_err(|e| format!("run: {e}"))
            };
            let outputs = run(1)?;
            // Threads split each kernel's work statically: the answer must not change by a bit.
            match run(3) {
                Ok(threaded) if threaded == outputs => Ok(outputs),
                Ok(_) => Err("outputs on 3 threads differ from 1 thread".to_string()),
                Err(e) => Err(format!("on 3 threads: {e}")),
            }
        },
    ));
    result.unwrap_or_else(|payload| Err(format!("panic: {}", panic_text(payload))))
}

pub(crate) fn perturbing() -> bool {
    std::env::var_os("TFJSC_OPS_PERTURB").is_some_and(|v| v != "0")
}

/// The expected tensor with element 0 moved beyond any tolerance used here.
pub(crate) fn perturbed(tensor: &Tensor) -> Tensor {
    let mut tensor = tensor.clone();
    match &mut tensor.data {
        TensorData::F32(v) => {
            if let Some(first) = v.first_mut() {
                let scale = 1.0 + first.abs();
                *first = if first.is_finite() {
                    *first + 1e-3 * scale
                } else {
                    0.0
                };
            }
        }
        TensorData::I32(v) => {
            if let Some(first) = v.first_mut() {
                *first = first.wrapping_add(1);
            }
        }
        TensorData::Bool(v) => {
            if let Some(first) = v.first_mut() {
                *first = !*first;
            }
        }
        TensorData::I64(v) => {
            if let Some(first) = v.first_mut() {
                *first += 1;
            }
        }
    }
    tensor
}

pub(crate) fn multi_index(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for axis in (0..shape.len()).rev() {
        if shape[axis] > 0 {
            index[axis] = flat % shape[axis];
            flat /= shape[axis];
        }
    }
    index
}

/// Compares one output; `Err` describes the first difference.
/// A tensor's elements as f64 (bools as 0 and 1), for comparisons.
pub(crate) fn values_of(tensor: &Tensor) -> Vec<f64> {
    match &tensor.data {
        TensorData::F32(v) => v.iter().map(|&v| v as f64).collect(),
        TensorData::I32(v) => v.iter().map(|&v| v as f64).collect(),
        TensorData::Bool(v) => v.iter().map(|&v| v as u8 as f64).collect(),
        TensorData::I64(v) => v.iter().map(|&v| v as f64).collect(),
    }
}

/// A runtime tensor's elements as f64 (bools as 0 and 1).
pub(crate) fn runtime_values(tensor: &tfjsc_runtime::Tensor) -> Vec<f64> {
    match tensor.dtype {
        tfjsc_runtime::DType::Float32 => {
            tensor.to_f32().unwrap().iter().map(|&v| v as f64).collect()
        }
        tfjsc_runtime::DType::Int32 => tensor.to_i32().unwrap().iter().map(|&v| v as f64).collect(),
        tfjsc_runtime::DType::Bool => tensor
            .to_bool()
            .unwrap()
            .iter()
            .map(|&v| v as u8 as f64)
            .collect(),
    }
}

pub(crate) fn compare(
    expected: &Tensor,
    actual: &tfjsc_runtime::Tensor,
    tol: Tol,
) -> Result<(), String> {
    let expected_dtype = match expected.dtype() {
        DType::F32 => tfjsc_runtime::DType::Float32,
        DType::I32 => tfjsc_runtime::DType::Int32,
        DType::Bool => tfjsc_runtime::DType::Bool,
        DType::I64 => return Err("int64 outputs are not comparable".into()),
    };
    if actual.dtype != expected_dtype || actual.shape != expected.shape {
        return Err(format!(
            "got {} {:?}, expected {} {:?}",
            actual.dtype, actual.shape, expected_dtype, expected.shape
        ));
    }
    let got = runtime_values(actual);
    let want = values_of(expected);
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f64, |m, v| m.max(v.abs()))
        .max(1e-30);
    let allowed = |e: f64| match tol {
        Tol::Exact => 0.0,
        Tol::Rel(r) => r * scale,
        Tol::AbsRel(a) => a * (1.0 + e.abs()),
        Tol::RelPlusAbsRel(r, a) => r * scale + a * (1.0 + e.abs()),
    };
    let mut bad = 0usize;
    let mut first: Option<(usize, f64, f64)> = None;
    let mut worst = 0f64;
    for (index, (&g, &e)) in got.iter().zip(&want).enumerate() {
        let ok = if e.is_nan() || g.is_nan() {
            e.is_nan() && g.is_nan()
        } else if e.is_infinite() || g.is_infinite() {
            g == e // (reported with "allowed inf": infinities must match exactly)
        } else {
            let difference = (g - e).abs();
            worst = worst.max(difference);
            difference <= allowed(e)
        };
        if !ok {
            bad += 1;
            if first.is_none() {
                first = Some((index, g, e));
            }
        }
    }
    match first {
        None => Ok(()),
        Some((index, g, e)) => Err(format!(
            "{bad} of {} elements differ; first at {:?} (flat {index}): got {g:e}, expected {e:e} (allowed {:.2e}); worst finite difference {worst:.3e}, max |expected| {scale:.3e}",
            want.len(),
            multi_index(index, &expected.shape),
            allowed(e),
        )),
    }
}

/// Builds `cases` into one graph and checks every output; on a build or run failure, bisects.
pub(crate) fn run_group(cases: &[Case], graphs: &mut usize) -> Vec<String> {
    let mut builder = Builder::new();
    for case in cases {
        builder.label = case.label.clone();
        (case.build)(&mut builder);
    }
    let Builder {
        graph,
        feeds,
        checks,
        ..
    } = builder;
    *graphs += 1;
    match execute(graph, &feeds) {
        Ok(outputs) => {
            let perturb = perturbing();
            checks
                .iter()
                .filter_map(|check| {
                    let expected = if perturb {
                        perturbed(&check.expected)
                    } else {
                        check.expected.clone()
                    };
                    compare(&expected, &outputs[check.output], check.tol)
                        .err()
                        .map(|message| format!("{} [{:?}]: {message}", check.label, check.tol))
                })
                .collect()
        }
        Err(message) if cases.len() == 1 => vec![format!("{}: {message}", cases[0].label)],
        Err(message) => {
            let (left, right) = cases.split_at(cases.len() / 2);
            let mut failures = run_group(left, graphs);
            failures.extend(run_group(right, graphs));
            if failures.is_empty() {
                failures.push(format!(
                    "cases {}..{} fail together but not apart: {message}",
                    cases[0].label,
                    cases[cases.len() - 1].label
                ));
            }
            failures
        }
    }
}

/// Runs `cases` in graphs of at most `per_graph` cases (two threads); returns the failures.
pub(crate) fn run_cases(name: &str, cases: Vec<Case>, per_graph: usize) -> Vec<String> {
    let started = Instant::now();
    let count = cases.len();
    let groups: Vec<&[Case]> = cases.chunks(per_graph.max(1)).collect();
    let (failures, graphs) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|worker| {
                let mine: Vec<&[Case]> = groups.iter().skip(worker).step_by(2).copied().collect();
                scope.spawn(move || {
                    let mut graphs = 0;
                    let failures: Vec<String> = mine
                        .iter()
                        .flat_map(|group| run_group(group, &mut graphs))
                        .collect();
                    (failures, graphs)
                })
            })
            .collect();
        handles
            .into_iter()
            .fold((Vec::new(), 0), |(mut all, total), handle| {
                let (failures, graphs) = handle.join().expect("worker");
                all.extend(failures);
                (all, total + graphs)
            })
    });
    eprintln!(
        "{name}: {count} cases in {graphs} graphs, {:.2} s, {} failing",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    failures
}

pub(crate) fn check_cases(name: &str, cases: Vec<Case>, per_graph: usize) {
    let failures = run_cases(name, cases, per_graph);
    assert!(
        failures.is_empty(),
        "{name}: {} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
