//! Helpers shared by the end-to-end tests: compiling models and graphs to libraries, loading
//! them with the runtime, comparing results.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tfjsc::compile::{compile, compile_graph, write_outputs, CompileOptions};
use tfjsc::ir::Graph;
use tfjsc_runtime::{Model, Tensor};

pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixtures() -> PathBuf {
    repository().join("tests/fixtures")
}

/// Options for tests: the verifier after every pass; the kernel sets from `TFJSC_TEST_CPU`
/// (`--cpu` syntax; default: the default target, AVX2 and AVX-512 sets with the best chosen at
/// load), so CI also runs the AVX2 and portable kernels with `TFJSC_TEST_CPU=x86-64-v3` and
/// `TFJSC_TEST_CPU=x86-64-v2`; checked mode
/// with `TFJSC_TEST_CHECKED=1`, so CI also runs every kernel between red zones (docs/abi.md).
pub fn options() -> CompileOptions {
    let target = match std::env::var("TFJSC_TEST_CPU") {
        Ok(cpu) => cpu.parse().expect("TFJSC_TEST_CPU"),
        Err(_) => tfjsc::codegen::Target::default(),
    };
    CompileOptions {
        verify_each: true,
        target,
        checked: std::env::var("TFJSC_TEST_CHECKED").is_ok_and(|value| value == "1"),
        ..CompileOptions::default()
    }
}

/// Compiles `model` into `directory/name` (`.so` or `.o`), returning the output path.
pub fn compile_model(model: &Path, directory: &Path, name: &str) -> PathBuf {
    let compiled =
        compile(model, &options()).unwrap_or_else(|e| panic!("compiling {}: {e}", model.display()));
    let output = directory.join(name);
    write_outputs(&compiled, &output)
        .unwrap_or_else(|e| panic!("writing {}: {e}", output.display()));
    output
}

/// Runs the pipeline on `graph`, compiles it, links it into `directory` and loads it.
pub fn load_graph(mut graph: Graph, directory: &Path) -> Model {
    tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).expect("pipeline");
    let compiled = compile_graph(graph, None, &options()).expect("compile");
    let library = directory.join("libgraph.so");
    write_outputs(&compiled, &library).expect("link");
    let model = Model::load(&library, Some(directory)).expect("load");
    assert_eq!(
        model.description().checked.is_some(),
        options().checked,
        "the library runs in checked mode exactly when TFJSC_TEST_CHECKED=1"
    );
    model
}

/// max |a - b| / max |b| (with max |b| at least 1e-30).
pub fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "element counts differ");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let worst = actual.iter().zip(expected).fold(0f32, |m, (a, b)| {
        if a.is_nan() != b.is_nan() {
            f32::INFINITY
        } else if a.is_nan() {
            m
        } else {
            m.max((a - b).abs())
        }
    });
    worst / scale
}

pub fn as_f32(tensor: &Tensor) -> Vec<f32> {
    tensor.to_f32().expect("f32 tensor")
}
