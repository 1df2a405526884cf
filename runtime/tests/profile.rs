//! Profiles with the hand-written kernels: every step timed and named from the description, the
//! outputs those of a normal run; a failing kernel names its node; a model without a step
//! function runs but refuses to be profiled; `step_info` must match `steps`.

mod handwritten;

use handwritten::*;
use tfjsc_runtime::{Error, Model, Profile, StepFn};

/// An unchecked description of the hand-written kernels, listing `steps` with their ops.
fn unchecked(directory: &tempfile::TempDir, steps: &[&str]) -> serde_json::Value {
    let mut description = description(directory.path(), steps);
    description.as_object_mut().unwrap().remove("checked");
    description["step_info"] = steps
        .iter()
        .map(|step| match *step {
            "scale" => serde_json::json!({"op": "binary.mul", "flops": 4}),
            _ => serde_json::json!({"op": "unary.neg", "flops": 0}),
        })
        .collect();
    description
}

fn load_unchecked(directory: &tempfile::TempDir, steps: &[&str], step: StepFn) -> Model {
    load(directory, &unchecked(directory, steps), Some(step)).unwrap()
}

const X: [f32; 4] = [1.0, -1.0, 0.5, 2.0];

/// `runs` profiled runs on `X`: the profile and the output.
fn profile(model: &Model, runs: usize) -> Result<(Profile, [f32; 4]), Error> {
    let x: Vec<u8> = X.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut y = [0u8; 16];
    let profile = model.new_context()?.profile(&[&x], &mut [&mut y], runs)?;
    let y = std::array::from_fn(|i| f32::from_le_bytes(y[i * 4..i * 4 + 4].try_into().unwrap()));
    Ok((profile, y))
}

#[test]
fn every_step_is_timed_and_named_and_the_outputs_are_a_runs() {
    let directory = tempfile::tempdir().unwrap();
    let model = load_unchecked(&directory, &["scale", "negate"], step_good);
    model.can_profile().unwrap();
    let (profile, y) = profile(&model, 3).unwrap();
    assert_eq!(y, [-1.0, 2.0, -1.5, -8.0]);
    assert_eq!(profile.runs, 3);
    let steps: Vec<(&str, &str, u64)> = profile
        .steps
        .iter()
        .map(|step| (step.node.as_str(), step.op.as_str(), step.flops))
        .collect();
    assert_eq!(
        steps,
        [("scale", "binary.mul", 4), ("negate", "unary.neg", 0)]
    );
    assert_eq!(
        profile.total(),
        profile.steps.iter().map(|step| step.time).sum()
    );
    assert_eq!(profile.figures(profile.steps[1].time, 0).gflops, None);
}

#[test]
fn a_checked_model_profiles_too() {
    let directory = tempfile::tempdir().unwrap();
    let description = description(directory.path(), &["scale", "negate"]);
    let model = load(&directory, &description, Some(step_good)).unwrap();
    let (profile, y) = profile(&model, 1).unwrap();
    assert_eq!(y, [-1.0, 2.0, -1.5, -8.0]);
    // No step_info: no ops, no FLOPs.
    for step in &profile.steps {
        assert_eq!((step.op.as_str(), step.flops), ("", 0));
    }
}

#[test]
fn a_failing_step_names_its_node_and_a_step_count_mismatch_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let model = load_unchecked(&directory, &["scale", "negate"], step_index_out_of_range);
    let error = profile(&model, 1).unwrap_err();
    assert!(
        matches!(&error, Error::KernelFailed { step: 1, node, .. } if node == "negate"),
        "{error}"
    );
    for steps in [&["scale"][..], &["scale", "negate", "extra"][..]] {
        let model = load_unchecked(&directory, steps, step_good);
        let error = profile(&model, 1).unwrap_err();
        assert!(matches!(error, Error::InvalidDescription(_)), "{error}");
    }
}

/// Running goes to the run function (whose 99 says it was called), never asks for the step
/// function; only a profile does.
#[test]
fn a_model_without_a_step_function_runs_but_is_not_profiled() {
    let directory = tempfile::tempdir().unwrap();
    let model = load(
        &directory,
        &unchecked(&directory, &["scale", "negate"]),
        None,
    )
    .unwrap();
    let error = run_error(&model);
    assert!(
        matches!(&error, Error::KernelFailed { reason, .. } if reason.ends_with("99")),
        "{error}"
    );
    let error = profile(&model, 1).unwrap_err();
    assert!(matches!(error, Error::ProfileUnavailable { .. }), "{error}");
    assert!(error.to_string().contains("from_static_checked"), "{error}");
    assert!(model.can_profile().is_err());
}

#[test]
fn step_info_must_describe_every_step() {
    let directory = tempfile::tempdir().unwrap();
    let mut description = unchecked(&directory, &["scale", "negate"]);
    description["step_info"] = serde_json::json!([{"op": "binary.mul", "flops": 4}]);
    let error = load(&directory, &description, Some(step_good)).unwrap_err();
    assert!(
        matches!(&error, Error::InvalidDescription(message) if message.contains("step_info")),
        "{error}"
    );
}
