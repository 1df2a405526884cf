//! Every committed fixture model, in graph-model and legacy form: compiled, linked, loaded by the
//! runtime with its shards memory-mapped, run on the fixture input, and compared with
//! TensorFlow's own output and, where the fixture has it (`expected_tfjs_*.npy`, written by
//! `tests/tfjs_reference.mjs`), with TF.js's (pure-JS CPU backend, the runtime users compare
//! against). All failures are reported at once.
//!
//! Tolerance: max |tfjsc - reference| ≤ 1e-4 × max |reference|. The kernels accumulate in f32
//! in another order than TensorFlow's (and fuse multiply-adds), so results differ by rounding:
//! measured 3e-8 (MLP) to 2.2e-5 (MobileNetV2, 52 layers deep).

mod common;

use std::path::Path;

use serde_json::Value;
use tfjsc_runtime::npy::read_npy;
use tfjsc_runtime::Model;

const TOLERANCE: f32 = 1e-4;

/// Compiles, runs and compares one fixture's `model_key` model ("model" or "legacy"); `None` when
/// the fixture has no such form, else the failures (empty when it matches).
fn check_case(directory: &Path, model_key: &str) -> Option<Vec<String>> {
    let case: Value =
        serde_json::from_slice(&std::fs::read(directory.join("case.json")).unwrap()).unwrap();
    let model = case[model_key].as_str()?;
    let name = format!("{} ({model_key})", directory.display());
    let temporary = tempfile::tempdir().unwrap();
    let compiled = std::panic::catch_unwind(|| {
        common::compile_model(&directory.join(model), temporary.path(), "libmodel.so")
    });
    let Ok(library) = compiled else {
        return Some(vec![format!(
            "{name}: does not compile (see the message above)"
        )]);
    };
    let loaded = match Model::load(&library, None) {
        Ok(loaded) => loaded,
        Err(e) => return Some(vec![format!("{name}: load: {e}")]),
    };
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
    let outputs = match loaded.new_context().unwrap().run_tensors(&inputs) {
        Ok(outputs) => outputs,
        Err(e) => return Some(vec![format!("{name}: run: {e}")]),
    };
    let mut failures = Vec::new();
    // A library of several kernel sets: the one chosen must be the best this CPU supports, and
    // each set the CPU can run, loaded alone by its own prefix, must match the references too.
    let mut runs = vec![(String::new(), outputs.clone())];
    let supported =
        |features: &[String]| features.iter().all(|f| tfjsc_runtime::cpu::has_feature(f));
    if let Some(best) = description
        .kernel_sets
        .iter()
        .rev()
        .find(|set| supported(&set.required_cpu_features))
    {
        if loaded.kernel_set() != best.name {
            failures.push(format!(
                "{name}: the library chose kernel set {}, this CPU's best is {}",
                loaded.kernel_set(),
                best.name
            ));
        }
    }
    for set in &description.kernel_sets {
        if !supported(&set.required_cpu_features) {
            eprintln!(
                "{name}: kernel set {} not run: this CPU lacks its features",
                set.name
            );
            continue;
        }
        let options = tfjsc_runtime::LoadOptions {
            kernel_set: Some(set.name.clone()),
            ..Default::default()
        };
        let alone = Model::load_with_options(&library, &options).and_then(|model| {
            assert_eq!(
                model.kernel_set(),
                set.name,
                "{name}: the set loaded by name"
            );
            model.new_context()?.run_tensors(&inputs)
        });
        match alone {
            Ok(outputs) => runs.push((format!(" [kernel set {}]", set.name), outputs)),
            Err(e) => failures.push(format!("{name}: kernel set {}: {e}", set.name)),
        }
    }
    for threads in [2, 3] {
        let mut context = loaded.new_context().unwrap();
        context.set_threads(threads).unwrap();
        match context.run_tensors(&inputs) {
            Ok(threaded) if threaded == outputs => {}
            Ok(_) => failures.push(format!("{name}: {threads} threads differ from 1 thread")),
            Err(e) => failures.push(format!("{name}: run on {threads} threads: {e}")),
        }
        // A profile runs every step on every thread too (each timed to the barrier).
        let input_bytes: Vec<&[u8]> = inputs.iter().map(|t| t.data.as_slice()).collect();
        let mut profiled: Vec<Vec<u8>> = outputs.iter().map(|t| vec![0; t.data.len()]).collect();
        let mut slices: Vec<&mut [u8]> = profiled.iter_mut().map(|v| v.as_mut_slice()).collect();
        match context.profile(&input_bytes, &mut slices, 1) {
            Ok(profile) if profile.steps.len() == description.steps.len() => {}
            Ok(_) => failures.push(format!("{name}: a profile without every step")),
            Err(e) => failures.push(format!("{name}: profile on {threads} threads: {e}")),
        }
        if profiled
            .iter()
            .zip(&outputs)
            .any(|(bytes, tensor)| *bytes != tensor.data)
        {
            failures.push(format!(
                "{name}: profile on {threads} threads differs from a run"
            ));
        }
    }
    for (set, outputs) in &runs {
        let name = format!("{name}{set}");
        for (spec, output) in description.outputs.iter().zip(outputs) {
            let entry = case["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == spec.name.as_str())
                .unwrap_or_else(|| panic!("no output {:?} in case.json", spec.name));
            let file = entry["file"].as_str().unwrap();
            // TensorFlow's output, and TF.js's (pure-JS CPU backend) where the fixture has it.
            let references = [
                ("TensorFlow", file.to_string()),
                ("TF.js", file.replace("expected_", "expected_tfjs_")),
            ];
            for (runtime, file) in references {
                let path = directory.join(&file);
                if runtime == "TF.js" && !path.exists() {
                    continue;
                }
                let expected = read_npy(&path).unwrap();
                if output.shape != expected.shape {
                    failures.push(format!(
                        "{name}: output {:?} has shape {:?}, {runtime} {:?}",
                        spec.name, output.shape, expected.shape
                    ));
                    continue;
                }
                let error =
                    common::relative_error(&common::as_f32(output), &common::as_f32(&expected));
                eprintln!(
                    "{name} {:?}: relative error {error:.3e} against {runtime}",
                    spec.name
                );
                if error.is_nan() || error > TOLERANCE {
                    failures.push(format!(
                    "{name}: output {:?} differs from {runtime} by {error:.3e} (tolerance {TOLERANCE:e})",
                    spec.name
                ));
                }
            }
        }
    }
    Some(failures)
}

/// Checks every fixture's `model_key` form and reports all failures at once.
fn check_all(model_key: &str, minimum: usize) {
    let results: Vec<Vec<String>> = cases()
        .iter()
        .filter_map(|d| check_case(d, model_key))
        .collect();
    assert!(
        results.len() >= minimum,
        "expected at least {minimum} {model_key} fixtures, found {}",
        results.len()
    );
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
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
fn graph_models_match_tensorflow_and_tfjs() {
    check_all("model", 11);
}

#[test]
fn legacy_models_match_tensorflow() {
    check_all("legacy", 3);
}
