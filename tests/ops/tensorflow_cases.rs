//! The op references (`Operator::evaluate`) and the compiled kernels against TensorFlow itself.
//!
//! `tests/fixtures/op_cases/<Op>.json` hold cases computed by TensorFlow 2.21 (`tf.raw_ops.<Op>`,
//! eager, CPU) and the NodeDef attributes TensorFlow writes for them; `tests/make_op_cases.py`
//! regenerates them. For every case whose op has an importer (`registry::importer_for`), the
//! NodeDef is imported with the non-constant inputs as graph inputs and the `const_inputs` as
//! graph constants, then checked twice against TensorFlow's outputs:
//! (a) the reference: the imported nodes evaluated in order with `Operator::evaluate`;
//! (b) the compiled code: every case of one op in one graph, through `harness::execute` (pass
//!     pipeline, compile, link, run); a graph that fails is bisected down to its cases.
//!
//! int64 outputs of TensorFlow (Shape, Size, ArgMax with int64) compare as int32: compiled code
//! narrows int64 to int32, and so does the reference here before comparing.
//!
//! Tolerances (`tolerance`), per op:
//! - `Exact` (up to the sign of zero; NaN matches NaN): data movement, comparisons and logic,
//!   integer results, max/min (and max pool, ClipByValue, relu-like activations), floor, ceil,
//!   round, sign, and the ops that are one correctly rounded IEEE operation per element in
//!   TensorFlow (Eigen) and here alike: add, sub, mul, div, div-no-nan, square, squared
//!   difference, sqrt, neg, abs, floor div, cast. Nearest-neighbour
//!   resizing is exact too (it only picks elements).
//! - `AbsRel(2e-6)` (|got - expected| ≤ 2e-6 × (1 + |expected|)): exp, expm1, log, log1p,
//!   sigmoid, tanh, elu, selu, softplus, sin, cos, tan, erf, atan2, pow, rsqrt, reciprocal,
//!   softmax, LRN, atan, asin, acos; `AbsRel(4e-6)` for sinh, cosh, asinh, acosh, atanh and
//!   log-softmax, compositions of two approximations.
//!   TensorFlow uses Eigen's vectorised approximations (exp, log, tanh, sigmoid, erf) or libm
//!   (sin, cos, tan, atan2, pow); tfjsc uses its own polynomials; each side is within a few ulps
//!   of the exact value. Rsqrt and Reciprocal: Eigen's packet versions are a hardware estimate
//!   refined by a Newton step, not one correctly rounded division (TensorFlow gives
//!   1 / 0.5 = 1.9999999), while tfjsc divides: about 1 ulp apart.
//! - `Rel(1e-6)` for FloorMod: the float remainder of the rounded quotient, exact with FMA and
//!   within an ulp of |y| without (the portable kernels); integer remainders are exact.
//! - `Rel(1e-5)` (|got - expected| ≤ 1e-5 × max |expected| over the output): sums and products
//!   (Sum, Mean, Prod, Cumsum, AddN), average pooling, convolutions, matrix products, batch
//!   normalisation and bilinear resizing: the kernels add in another order than TensorFlow's
//!   (Eigen's tree reductions, oneDNN/Eigen contraction blocking), fuse multiply-adds, or
//!   interpolate with another arrangement of the same products.
//!   What was measured is printed per op ("worst error") by `compiled_ops_match_tensorflow`.
//!
//! Outcomes per case: a value mismatch (reference or compiled) is a failure, and so is an op
//! without an importer. A case the importer refuses, or whose graph fails
//! to compile with an "unsupported"/"not supported"/"cannot lower" error, is listed as "not yet
//! lowered" — a failure unless its op is one of the [`KNOWN_GAPS`], each with its reason. Every failure is collected and reported at the
//! end with its op, case index and name, attributes and first differing elements.
//! `TFJSC_OPS_PERTURB=1` perturbs every expected output: every case that runs must then fail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tfjsc::ir::{DType, Graph, Tensor, TensorData, ValueId};
use tfjsc::ops::importer::Importer;
use tfjsc::ops::registry;
use tfjsc_proto::tensorflow::{
    attr_value, tensor_shape_proto, AttrValue, NodeDef, TensorShapeProto,
};

use crate::harness::{
    compare, execute, panic_text, perturbed, perturbing, runtime_values, to_runtime, values_of,
    Tol, SUMS, TRANSCENDENTAL,
};

/// The cases that may be listed as "not yet lowered" instead of failing: known gaps, each with
/// its reason. Any other case that does not import or lower is a failure.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// The tolerance for an op's outputs (see the module documentation).
fn tolerance(op: &str) -> Tol {
    match op {
        "Exp" | "Expm1" | "Log" | "Log1p" | "Sigmoid" | "Tanh" | "Elu" | "Selu" | "Softplus"
        | "Sin" | "Cos" | "Tan" | "Erf" | "Atan2" | "Pow" | "Rsqrt" | "Reciprocal" | "Softmax"
        | "LRN" | "Atan" | "Asin" | "Acos" => TRANSCENDENTAL,
        // Compositions of two approximations (exp and expm1, log1p and a quotient, ...).
        "Sinh" | "Cosh" | "Asinh" | "Acosh" | "Atanh" | "LogSoftmax" => Tol::AbsRel(4e-6),
        "Sum"
        | "Mean"
        | "Prod"
        | "Cumsum"
        | "AddN"
        | "AvgPool"
        | "Conv2D"
        | "DepthwiseConv2dNative"
        | "Conv2DBackpropInput"
        | "MatMul"
        | "BatchMatMulV2"
        | "FusedBatchNormV3"
        | "ResizeBilinear"
        | "Einsum" => SUMS,
        // Float remainders: x − floor(x / y)·y is exact with a fused multiply-add and within an
        // ulp of |y| without one (the portable kernels); integer cases are exact either way.
        "FloorMod" => Tol::Rel(1e-6),
        _ => Tol::Exact,
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/op_cases")
}

// ---------------------------------------------------------------------------------------------
// The case table
// ---------------------------------------------------------------------------------------------

struct TfCase {
    op: String,
    index: usize,
    name: String,
    attrs: Vec<(String, AttrValue)>,
    /// The attributes that are not dtypes, as text for messages.
    attrs_text: String,
    inputs: Vec<Tensor>,
    constant: Vec<bool>,
    /// TensorFlow's outputs, int64 narrowed to int32.
    outputs: Vec<Tensor>,
}

impl TfCase {
    /// Why a difference in this case is expected and only listed, if it is.
    fn informational(&self) -> Option<&'static str> {
        if self.name.starts_with("denormal") {
            Some("TensorFlow's CPU kernels flush denormals to zero; tfjsc does not")
        } else if self.name.contains("implementation-defined") {
            Some("implementation-defined in TensorFlow (C++ float to int conversion)")
        } else if self.name == "beyond the kernel range" {
            Some("sine and cosine reduce by π/4 in three parts (Cephes): accurate to |x| ≤ 8192")
        } else if self.name == "huge quotient" {
            Some("float floor_mod rounds x / y: exact remainders need |x / y| < 2^24")
        } else {
            None
        }
    }

    fn label(&self) -> String {
        format!(
            "{} #{} ({}) [{}]",
            self.op, self.index, self.name, self.attrs_text
        )
    }
}

fn float_of(value: &Json) -> Result<f32, String> {
    match value {
        Json::Number(n) => n
            .as_f64()
            .map(|v| v as f32)
            .ok_or_else(|| format!("bad number {n}")),
        Json::String(s) => match s.as_str() {
            "nan" => Ok(f32::NAN),
            "inf" => Ok(f32::INFINITY),
            "-inf" => Ok(f32::NEG_INFINITY),
            other => Err(format!("bad float {other:?}")),
        },
        other => Err(format!("bad float {other}")),
    }
}

fn int_of(value: &Json) -> Result<i64, String> {
    value.as_i64().ok_or_else(|| format!("bad integer {value}"))
}

fn array<'j>(value: &'j Json, what: &str) -> Result<&'j Vec<Json>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("`{what}` must be an array"))
}

/// A tensor from `{dtype, shape, values}`; checks the value count against the shape.
fn tensor_of(value: &Json, narrow_int64: bool) -> Result<Tensor, String> {
    let dtype = value["dtype"].as_str().ok_or("tensor without a dtype")?;
    let shape: Vec<usize> = array(&value["shape"], "shape")?
        .iter()
        .map(|d| int_of(d).map(|d| d as usize))
        .collect::<Result<_, _>>()?;
    let values = array(&value["values"], "values")?;
    let count: usize = shape.iter().product();
    if values.len() != count {
        return Err(format!(
            "{dtype} {shape:?} holds {} values, its shape says {count}",
            values.len()
        ));
    }
    Ok(match dtype {
        "float32" => Tensor::from_f32(
            shape,
            values.iter().map(float_of).collect::<Result<_, _>>()?,
        ),
        "int32" => Tensor::from_i32(
            shape,
            values
                .iter()
                .map(|v| int_of(v).map(|v| v as i32))
                .collect::<Result<_, _>>()?,
        ),
        "int64" if narrow_int64 => Tensor::from_i32(
            shape,
            values
                .iter()
                .map(|v| int_of(v).map(|v| v as i32))
                .collect::<Result<_, _>>()?,
        ),
        "int64" => Tensor::from_i64(shape, values.iter().map(int_of).collect::<Result<_, _>>()?),
        "bool" => Tensor::from_bool(
            shape,
            values
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| format!("bad bool {v}")))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("unknown dtype {other:?}")),
    })
}

fn attr(value: attr_value::Value) -> AttrValue {
    AttrValue { value: Some(value) }
}

fn list(list: attr_value::ListValue) -> AttrValue {
    attr(attr_value::Value::List(list))
}

/// An AttrValue from `{kind, value}`.
fn attr_of(value: &Json) -> Result<AttrValue, String> {
    let kind = value["kind"].as_str().ok_or("attribute without a kind")?;
    let v = &value["value"];
    let ints = || -> Result<Vec<i64>, String> { array(v, "value")?.iter().map(int_of).collect() };
    Ok(match kind {
        "int" => attr(attr_value::Value::I(int_of(v)?)),
        "float" => attr(attr_value::Value::F(float_of(v)?)),
        "bool" => attr(attr_value::Value::B(v.as_bool().ok_or("bad bool")?)),
        "string" => attr(attr_value::Value::S(
            v.as_str().ok_or("bad string")?.as_bytes().to_vec(),
        )),
        "type" => attr(attr_value::Value::Type(int_of(v)? as i32)),
        "shape" => attr(attr_value::Value::Shape(match v {
            Json::Null => TensorShapeProto {
                unknown_rank: true,
                ..Default::default()
            },
            _ => TensorShapeProto {
                dim: ints()?
                    .into_iter()
                    .map(|size| tensor_shape_proto::Dim {
                        size,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        })),
        "list_int" => list(attr_value::ListValue {
            i: ints()?,
            ..Default::default()
        }),
        "list_float" => list(attr_value::ListValue {
            f: array(v, "value")?
                .iter()
                .map(float_of)
                .collect::<Result<_, _>>()?,
            ..Default::default()
        }),
        "list_type" => list(attr_value::ListValue {
            r#type: ints()?.into_iter().map(|t| t as i32).collect(),
            ..Default::default()
        }),
        "list_bool" => list(attr_value::ListValue {
            b: array(v, "value")?
                .iter()
                .map(|b| b.as_bool().ok_or("bad bool"))
                .collect::<Result<_, _>>()?,
            ..Default::default()
        }),
        "list_string" => list(attr_value::ListValue {
            s: array(v, "value")?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or("bad string")
                })
                .collect::<Result<_, _>>()?,
            ..Default::default()
        }),
        other => return Err(format!("unknown attribute kind {other:?}")),
    })
}

fn case_of(op: &str, index: usize, value: &Json) -> Result<TfCase, String> {
    let case_op = value["op"].as_str().ok_or("case without an op")?;
    if case_op != op {
        return Err(format!("case of op {case_op} in the file of {op}"));
    }
    let mut attrs = Vec::new();
    let mut text = Vec::new();
    for (name, a) in value["attrs"]
        .as_object()
        .ok_or("`attrs` must be an object")?
    {
        attrs.push((
            name.clone(),
            attr_of(a).map_err(|e| format!("{name}: {e}"))?,
        ));
        if a["kind"] != "type" {
            text.push(format!("{name}={}", a["value"]));
        }
    }
    let inputs: Vec<Tensor> = array(&value["inputs"], "inputs")?
        .iter()
        .map(|t| tensor_of(t, false))
        .collect::<Result<_, _>>()?;
    let mut constant = vec![false; inputs.len()];
    for k in array(&value["const_inputs"], "const_inputs")? {
        let k = int_of(k)? as usize;
        *constant
            .get_mut(k)
            .ok_or_else(|| format!("const input {k} out of range"))? = true;
    }
    let mut outputs: Vec<Tensor> = array(&value["outputs"], "outputs")?
        .iter()
        .map(|t| tensor_of(t, true))
        .collect::<Result<_, _>>()?;
    if perturbing() {
        outputs = outputs.iter().map(perturbed).collect();
    }
    Ok(TfCase {
        op: op.to_string(),
        index,
        name: value["name"].as_str().unwrap_or("").to_string(),
        attrs,
        attrs_text: text.join(" "),
        inputs,
        constant,
        outputs,
    })
}

/// Every case of every fixture file, by op (sorted).
fn load_cases() -> Result<Vec<(String, Vec<TfCase>)>, Vec<String>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/op_cases")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut errors = Vec::new();
    let mut ops = Vec::new();
    for path in paths {
        let op = path.file_stem().unwrap().to_string_lossy().to_string();
        let parsed: Result<Vec<TfCase>, String> = (|| {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let json: Json = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if json["op"] != op.as_str() {
                return Err(format!("`op` is {}, not {op}", json["op"]));
            }
            let cases = array(&json["cases"], "cases")?;
            if cases.is_empty() {
                return Err("no cases".into());
            }
            cases
                .iter()
                .enumerate()
                .map(|(index, c)| case_of(&op, index, c).map_err(|e| format!("case {index}: {e}")))
                .collect()
        })();
        match parsed {
            Ok(cases) => ops.push((op, cases)),
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(ops)
    } else {
        Err(errors)
    }
}

#[test]
fn tensorflow_case_files_parse_and_match_their_shapes() {
    match load_cases() {
        Ok(ops) => {
            assert!(ops.len() >= 100, "only {} op files", ops.len());
            for (op, cases) in &ops {
                for case in cases {
                    assert!(!case.outputs.is_empty(), "{op} #{}: no outputs", case.index);
                }
            }
        }
        Err(errors) => panic!("broken case files:\n{}", errors.join("\n")),
    }
}

// ---------------------------------------------------------------------------------------------
// Import, reference evaluation
// ---------------------------------------------------------------------------------------------

/// One case imported into a graph: its output values and the reference's results for them.
struct Imported {
    outputs: Vec<ValueId>,
    reference: Result<Vec<Tensor>, String>,
}

/// Adds `case` to `graph` (graph inputs fed from `feeds`), imports its node and evaluates the
/// imported nodes with `Operator::evaluate`. `Err` is the importer's refusal.
fn import_case(
    graph: &mut Graph,
    feeds: &mut Vec<Tensor>,
    case: &TfCase,
) -> Result<Imported, String> {
    let import = registry::importer_for(&case.op).expect("checked by the caller");
    let mut values: HashMap<ValueId, Tensor> = HashMap::new();
    let mut ids = Vec::new();
    for (k, (tensor, &constant)) in case.inputs.iter().zip(&case.constant).enumerate() {
        let name = format!("c{}_in{k}", case.index);
        let id = if constant {
            graph.add_constant(&name, tensor.clone(), None)
        } else {
            feeds.push(tensor.clone());
            graph.add_input(&format!("input{}", feeds.len()), Some(tensor.tensor_type()))
        };
        values.insert(id, tensor.clone());
        ids.push(id);
    }
    let node = NodeDef {
        name: format!("{}_{}", case.op, case.index),
        op: case.op.clone(),
        attr: case.attrs.iter().cloned().collect(),
        ..Default::default()
    };
    let before: HashSet<_> = graph.node_ids().into_iter().collect();
    let outputs = import(&mut Importer::new(graph), &node, &ids).map_err(|e| e.to_string())?;
    let reference = (|| -> Result<Vec<Tensor>, String> {
        for (id, node) in graph.nodes().filter(|(id, _)| !before.contains(id)) {
            let inputs: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|v| {
                    values
                        .get(v)
                        .cloned()
                        .or_else(|| graph.constant(*v).map(|c| (*c.tensor).clone()))
                        .ok_or_else(|| format!("node {id:?} reads {v}, which has no value"))
                })
                .collect::<Result<_, _>>()?;
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let results = node
                .op
                .evaluate(&refs)
                .map_err(|e| format!("evaluate {} ({}): {e}", node.name, node.op.name()))?;
            for (&value, result) in node.outputs.iter().zip(results) {
                values.insert(value, result);
            }
        }
        outputs
            .iter()
            .map(|v| {
                values
                    .get(v)
                    .or_else(|| graph.constant(*v).map(|c| &*c.tensor))
                    .cloned()
                    .ok_or_else(|| format!("output {v} has no value"))
            })
            .collect()
    })();
    Ok(Imported { outputs, reference })
}

fn narrowed(tensor: &Tensor) -> Tensor {
    if tensor.dtype() == DType::I64 {
        tensor.cast(DType::I32)
    } else {
        tensor.clone()
    }
}

fn is_unsupported(message: &str) -> bool {
    let lower = message.to_lowercase();
    ["unsupported", "not supported", "cannot lower"]
        .iter()
        .any(|w| lower.contains(w))
}

/// The worst error of `got` against `expected` (f32 only): (max |d| / (1 + |e|), max |d| / max |e|).
fn errors(expected: &Tensor, got: &[f32]) -> (f64, f64) {
    let TensorData::F32(want) = &expected.data else {
        return (0.0, 0.0);
    };
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-30);
    let mut worst = (0f64, 0f64);
    for (&e, &g) in want.iter().zip(got) {
        if e.is_finite() && g.is_finite() {
            let d = (g as f64 - e as f64).abs();
            worst.0 = worst.0.max(d / (1.0 + (e as f64).abs()));
            worst.1 = worst.1.max(d / scale);
        }
    }
    worst
}

// ---------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    /// Differences in informational cases (listed, not failed).
    notes: Vec<String>,
    not_lowered: Vec<String>,
    /// Op → (cases checked, cases passing both, worst AbsRel, worst Rel) over reference and code.
    stats: BTreeMap<String, (usize, usize, f64, f64)>,
}

/// Records a value mismatch of `case`: a failure, or a note for informational cases. Returns
/// whether it counts against the case.
fn mismatch(report: &mut Report, case: &TfCase, line: String) -> bool {
    match case.informational() {
        Some(why) => {
            report.notes.push(format!("{line} ({why})"));
            false
        }
        None => {
            report.failures.push(line);
            true
        }
    }
}

/// Up to four differing elements (flat index: got, expected), and for elementwise cases (inputs
/// as large as the output) the inputs there.
fn differing(case: &TfCase, expected: &Tensor, got: &[f64], tol: Tol) -> String {
    let want = values_of(expected);
    if want.len() != got.len() {
        return String::new();
    }
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
    let elementwise = case
        .inputs
        .iter()
        .all(|t| t.element_count() == want.len() || t.element_count() == 1);
    let mut shown = Vec::new();
    for (index, (&g, &e)) in got.iter().zip(&want).enumerate() {
        let same = if e.is_nan() || g.is_nan() {
            e.is_nan() && g.is_nan()
        } else if e.is_infinite() || g.is_infinite() {
            g == e
        } else {
            (g - e).abs() <= allowed(e)
        };
        if !same {
            let at = if elementwise {
                let xs: Vec<String> = case
                    .inputs
                    .iter()
                    .map(|t| {
                        let i = if t.element_count() == 1 { 0 } else { index };
                        match &t.data {
                            TensorData::F32(v) => format!("{:e}", v[i]),
                            TensorData::I32(v) => v[i].to_string(),
                            TensorData::Bool(v) => v[i].to_string(),
                            TensorData::I64(v) => v[i].to_string(),
                        }
                    })
                    .collect();
                format!(" at inputs ({})", xs.join(", "))
            } else {
                String::new()
            };
            shown.push(format!("[{index}] got {g:e} expected {e:e}{at}"));
            if shown.len() == 4 {
                break;
            }
        }
    }
    format!("; differing: {}", shown.join("; "))
}

/// Checks the cases of one op: references per case, compiled code per graph (bisecting).
fn check_op(op: &str, cases: &[TfCase], report: &mut Report) {
    let tol = tolerance(op);
    let mut ok = vec![true; cases.len()];
    let mut checked = vec![false; cases.len()];
    let mut worst = (0f64, 0f64);
    let mut runnable = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let mut graph = Graph::new();
        let mut feeds = Vec::new();
        let attempt = catch_unwind(AssertUnwindSafe(|| {
            import_case(&mut graph, &mut feeds, case)
        }));
        let attempt = match attempt {
            Ok(attempt) => attempt,
            Err(payload) => {
                ok[k] = false;
                checked[k] = true;
                report.failures.push(format!(
                    "{}: import or reference panics: {}",
                    case.label(),
                    panic_text(payload)
                ));
                continue;
            }
        };
        match attempt {
            Err(message) => {
                ok[k] = false;
                report
                    .not_lowered
                    .push(format!("{}: importer refuses: {message}", case.label()));
            }
            Ok(imported) => {
                checked[k] = true;
                match imported.reference {
                    Err(message) => {
                        ok[k] = false;
                        report
                            .failures
                            .push(format!("{}: reference: {message}", case.label()));
                    }
                    Ok(results) => {
                        if results.len() != case.outputs.len() {
                            ok[k] = false;
                            report.failures.push(format!(
                                "{}: reference: {} outputs, TensorFlow has {}",
                                case.label(),
                                results.len(),
                                case.outputs.len()
                            ));
                        }
                        for (j, (expected, got)) in case.outputs.iter().zip(&results).enumerate() {
                            let got = narrowed(got);
                            if let TensorData::F32(v) = &got.data {
                                if got.shape == expected.shape && case.informational().is_none() {
                                    let e = errors(expected, v);
                                    worst = (worst.0.max(e.0), worst.1.max(e.1));
                                }
                            }
                            if let Err(message) = compare(expected, &to_runtime(&got), tol) {
                                let detail = differing(case, expected, &values_of(&got), tol);
                                let line = format!(
                                    "{}: reference output {j} [{tol:?}]: {message}{detail}",
                                    case.label()
                                );
                                if mismatch(report, case, line) {
                                    ok[k] = false;
                                }
                            }
                        }
                    }
                }
                runnable.push(k);
            }
        }
    }
    let mut graphs = 0;
    run_compiled(
        cases,
        &runnable,
        tol,
        &mut ok,
        &mut worst,
        report,
        &mut graphs,
    );
    let passing = (0..cases.len()).filter(|&k| ok[k] && checked[k]).count();
    report.stats.insert(
        op.to_string(),
        (
            checked.iter().filter(|&&c| c).count(),
            passing,
            worst.0,
            worst.1,
        ),
    );
}

#[allow(clippy::too_many_arguments)]
fn run_compiled(
    cases: &[TfCase],
    group: &[usize],
    tol: Tol,
    ok: &mut [bool],
    worst: &mut (f64, f64),
    report: &mut Report,
    graphs: &mut usize,
) {
    if group.is_empty() {
        return;
    }
    let mut graph = Graph::new();
    let mut feeds = Vec::new();
    let mut checks = Vec::new();
    for &k in group {
        let imported = import_case(&mut graph, &mut feeds, &cases[k]).expect("imported before");
        for (j, &value) in imported.outputs.iter().enumerate() {
            checks.push((k, j, graph.outputs.len()));
            graph.add_output(&format!("c{k}_out{j}"), value);
        }
    }
    *graphs += 1;
    match execute(graph, &feeds) {
        Ok(outputs) => {
            for (k, j, output) in checks {
                let case = &cases[k];
                let Some(expected) = case.outputs.get(j) else {
                    continue;
                };
                let got = &outputs[output];
                if got.dtype == tfjsc_runtime::DType::Float32
                    && got.shape == expected.shape
                    && case.informational().is_none()
                {
                    let e = errors(expected, &got.to_f32().unwrap());
                    *worst = (worst.0.max(e.0), worst.1.max(e.1));
                }
                if let Err(message) = compare(expected, got, tol) {
                    let detail = differing(case, expected, &runtime_values(got), tol);
                    let line = format!(
                        "{}: compiled output {j} [{tol:?}]: {message}{detail}",
                        case.label()
                    );
                    if mismatch(report, case, line) {
                        ok[k] = false;
                    }
                }
            }
        }
        Err(message) if group.len() == 1 => {
            let k = group[0];
            ok[k] = false;
            let line = format!("{}: {}", cases[k].label(), message.replace('\n', " "));
            if is_unsupported(&message) {
                report.not_lowered.push(line);
            } else {
                report.failures.push(line);
            }
        }
        Err(_) => {
            let (left, right) = group.split_at(group.len() / 2);
            run_compiled(cases, left, tol, ok, worst, report, graphs);
            run_compiled(cases, right, tol, ok, worst, report, graphs);
        }
    }
}

#[test]
fn compiled_ops_match_tensorflow() {
    let ops = load_cases().unwrap_or_else(|e| panic!("broken case files:\n{}", e.join("\n")));
    let (imported, missing): (Vec<_>, Vec<_>) = ops
        .iter()
        .partition(|(op, _)| registry::importer_for(op).is_some());
    // Two workers, ops dealt alternately.
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|worker| {
                let mine: Vec<&(String, Vec<TfCase>)> =
                    imported.iter().skip(worker).step_by(2).copied().collect();
                scope.spawn(move || {
                    let mut report = Report::default();
                    for (op, cases) in mine {
                        check_op(op, cases, &mut report);
                    }
                    report
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut report = Report::default();
    for r in reports {
        report.failures.extend(r.failures);
        report.not_lowered.extend(r.not_lowered);
        report.notes.extend(r.notes);
        report.stats.extend(r.stats);
    }

    let not_imported: Vec<String> = missing
        .iter()
        .map(|(op, cases)| format!("{op} ({})", cases.len()))
        .collect();
    println!(
        "not yet imported: {} ops, {} cases: {}",
        missing.len(),
        missing.iter().map(|(_, c)| c.len()).sum::<usize>(),
        not_imported.join(", ")
    );
    println!("not yet lowered: {} cases", report.not_lowered.len());
    for line in &report.not_lowered {
        println!("  {line}");
    }
    println!(
        "expected differences (listed, not failed): {}",
        report.notes.len()
    );
    for line in &report.notes {
        println!("  {line}");
    }
    println!("per op: cases checked, passing, worst error (AbsRel, Rel) over reference and code");
    for (op, (checked, passing, abs_rel, rel)) in &report.stats {
        println!(
            "  {op:<24} {checked:>3} {passing:>3}  {abs_rel:.2e} {rel:.2e}  [{:?}]",
            tolerance(op)
        );
    }
    let fully: Vec<&str> = report
        .stats
        .iter()
        .filter(|(op, (checked, passing, _, _))| {
            passing == checked && ops.iter().any(|(o, c)| o == *op && c.len() == *checked)
        })
        .map(|(op, _)| op.as_str())
        .collect();
    println!("ops passing every case: {fully:?}");

    let mut failures = report.failures;
    // Every op of the table is supported: one without an importer is a regression.
    failures.extend(not_imported.iter().map(|op| format!("not imported: {op}")));
    for line in &report.not_lowered {
        if !KNOWN_GAPS
            .iter()
            .any(|(op, _)| line.starts_with(&format!("{op} #")))
        {
            failures.push(format!("does not lower (not a known gap): {line}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s) against TensorFlow:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
