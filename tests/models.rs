//! Every committed fixture model, in graph-model and legacy form: compiled, linked, loaded by the
//! runtime with its shards memory-mapped, run on the fixture input, and compared with
//! TensorFlow's own output.
//!
//! Tolerance: max |tfjsc - TensorFlow| ≤ 1e-4 × max |TensorFlow|. The kernels accumulate in f32
//! in another order than TensorFlow's (and fuse multiply-adds), so results differ by rounding:
//! measured 3e-8 (MLP) to 2.2e-5 (MobileNetV2, 52 layers deep).

mod common;

use std::path::Path;

use serde_json::Value;
use tfjsc_runtime::npy::read_npy;
use tfjsc_runtime::Model;

const TOLERANCE: f32 = 1e-4;

fn check_case(directory: &Path, model_key: &str) -> usize {
    let case: Value =
        serde_json::from_slice(&std::fs::read(directory.join("case.json")).unwrap()).unwrap();
    let Some(model) = case[model_key].as_str() else {
        return 0;
    };
    let temporary = tempfile::tempdir().unwrap();
    let library = common::compile_model(&directory.join(model), temporary.path(), "libmodel.so");
    let loaded =
        Model::load(&library, None).unwrap_or_else(|e| panic!("{}: {e}", directory.display()));
    let description = loaded.description();
    let mut inputs = Vec::new();
    for spec in &description.inputs {
        let entry = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == spec.name.as_str())
            .unwrap_or_else(|| panic!("no input {:?} in case.json", spec.name));
        inputs.push(read_npy(&directory.join(entry["file"].as_str().unwrap())).unwrap());
    }
    let outputs = loaded.new_context().unwrap().run_tensors(&inputs).unwrap();
    for (spec, output) in description.outputs.iter().zip(&outputs) {
        let entry = case["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == spec.name.as_str())
            .unwrap_or_else(|| panic!("no output {:?} in case.json", spec.name));
        let expected = read_npy(&directory.join(entry["file"].as_str().unwrap())).unwrap();
        assert_eq!(
            output.shape,
            expected.shape,
            "{}: output {:?} shape",
            directory.display(),
            spec.name
        );
        let error = common::relative_error(&common::as_f32(output), &common::as_f32(&expected));
        eprintln!(
            "{} ({model_key}) {:?}: relative error {error:.3e}",
            directory.display(),
            spec.name
        );
        assert!(error <= TOLERANCE, "{} ({model_key}): output {:?} differs from TensorFlow by {error:.3e} (tolerance {TOLERANCE:e})", directory.display(), spec.name);
    }
    1
}

fn cases() -> Vec<std::path::PathBuf> {
    let mut directories: Vec<_> = std::fs::read_dir(common::fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    directories.sort();
    assert!(directories.len() >= 5, "fixtures are missing");
    directories
}

#[test]
fn graph_models_match_tensorflow() {
    let checked: usize = cases().iter().map(|d| check_case(d, "model")).sum();
    assert!(checked >= 5);
}

#[test]
fn legacy_models_match_tensorflow() {
    let checked: usize = cases().iter().map(|d| check_case(d, "legacy")).sum();
    assert!(
        checked >= 3,
        "expected at least three legacy fixtures, found {checked}"
    );
}
