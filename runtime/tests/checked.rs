//! Checked mode's runtime half with hand-written kernels: a kernel that writes one byte past
//! (or before) an output, an arena region or a weight fails the run with an error naming the
//! node, the buffer and the side; a well-behaved one passes; malformed checked sections are
//! errors (docs/abi.md, "Checked mode").

mod handwritten;

use handwritten::*;
use tfjsc_runtime::checked::{Side, StepFn};
use tfjsc_runtime::Error;

fn run(step: StepFn) -> Result<[f32; 4], Error> {
    let directory = tempfile::tempdir().unwrap();
    let model = load(
        &directory,
        &description(directory.path(), &["scale", "negate"]),
        Some(step),
    )?;
    let mut context = model.new_context()?;
    let x: Vec<u8> = [1f32, -1.0, 0.5, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut y = [0u8; 16];
    // Twice: zones are refilled and copies refreshed for every run.
    for _ in 0..2 {
        context.run(&[&x], &mut [&mut y])?;
    }
    Ok(std::array::from_fn(|i| {
        f32::from_le_bytes(y[i * 4..i * 4 + 4].try_into().unwrap())
    }))
}

fn damage(step: StepFn) -> (usize, String, String, Side, i64) {
    match run(step) {
        Err(Error::RedZoneDamaged {
            step,
            node,
            buffer,
            side,
            offset,
        }) => (step, node, buffer, side, offset),
        other => panic!("expected a damaged red zone, got {other:?}"),
    }
}

#[test]
fn well_behaved_kernels_pass() {
    assert_eq!(run(step_good).unwrap(), [-1.0, 2.0, -1.5, -8.0]);
}

#[test]
fn one_byte_past_an_output_names_the_node_and_the_output() {
    let found = damage(step_output_after);
    assert_eq!(
        found,
        (1, "negate".into(), "output `y`".into(), Side::After, 16)
    );
    let message = run(step_output_after).unwrap_err().to_string();
    assert!(
        message.contains("node `negate`") && message.contains("after output `y`"),
        "{message}"
    );
}

#[test]
fn one_byte_before_an_output_is_caught_too() {
    assert_eq!(
        damage(step_output_before),
        (1, "negate".into(), "output `y`".into(), Side::Before, -1)
    );
}

#[test]
fn one_byte_past_an_arena_region_names_the_region() {
    assert_eq!(
        damage(step_region_after),
        (0, "scale".into(), "region `a:0`".into(), Side::After, 16)
    );
}

#[test]
fn a_write_past_a_weight_names_the_weight() {
    assert_eq!(
        damage(step_weight_after),
        (1, "negate".into(), "weight `w`".into(), Side::After, 16)
    );
}

#[test]
fn a_read_past_an_input_poisons_the_output_with_nan() {
    // Element 4 of x is the red zone; it lands in a[0] and so in y[0].
    let y = run(step_input_read).unwrap();
    assert!(y[0].is_nan(), "{y:?}");
    assert_eq!(&y[1..], &[2.0, -1.5, -8.0]);
}

#[test]
fn a_step_count_other_than_the_code_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    for steps in [&["scale"][..], &["scale", "negate", "extra"][..]] {
        let model = load(
            &directory,
            &description(directory.path(), steps),
            Some(step_good),
        )
        .unwrap();
        let error = run_error(&model);
        assert!(error.to_string().contains("step"), "{steps:?}: {error}");
    }
}

#[test]
fn a_checked_description_without_a_step_function_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let error = load(
        &directory,
        &description(directory.path(), &["scale", "negate"]),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(error, Error::MissingStepFunction { .. }),
        "{error}"
    );
}

#[test]
fn malformed_checked_sections_are_errors() {
    let directory = tempfile::tempdir().unwrap();
    let cases: [(&str, serde_json::Value); 5] = [
        (
            "past the arena",
            serde_json::json!([{"name": "a", "offset": 128, "size": 16}]),
        ),
        (
            "no room",
            serde_json::json!([{"name": "a", "offset": 0, "size": 16}]),
        ),
        (
            "not aligned",
            serde_json::json!([{"name": "a", "offset": 65, "size": 16}]),
        ),
        (
            "overlap",
            serde_json::json!([{"name": "a", "offset": 64, "size": 16},
                               {"name": "b", "offset": 128, "size": 0}]),
        ),
        (
            "overflow",
            serde_json::json!([{"name": "a", "offset": 64, "size": usize::MAX}]),
        ),
    ];
    for (what, regions) in cases {
        let mut description = description(directory.path(), &["scale", "negate"]);
        description["checked"]["regions"] = regions;
        let error = load(&directory, &description, Some(step_good)).unwrap_err();
        assert!(
            matches!(error, Error::InvalidDescription(_)),
            "{what}: {error}"
        );
    }
    let mut description = description(directory.path(), &["scale", "negate"]);
    description["checked"]["red_zone_bytes"] = 0.into();
    let error = load(&directory, &description, Some(step_good)).unwrap_err();
    assert!(matches!(error, Error::InvalidDescription(_)), "{error}");
}

#[test]
fn writes_into_inputs_and_weights_name_the_buffer() {
    for (step, expected) in [
        (step_input_write as StepFn, (0, "scale", "input `x`", 11)),
        (step_weight_write, (1, "negate", "weight `w`", 6)),
    ] {
        match run(step) {
            Err(Error::ReadOnlyBufferWritten {
                step,
                node,
                buffer,
                offset,
            }) => assert_eq!((step, node.as_str(), buffer.as_str(), offset), expected),
            other => panic!("expected a write into a read-only buffer, got {other:?}"),
        }
    }
}

#[test]
fn elements_never_written_come_out_as_nan() {
    // An output element no kernel writes, and an arena element read before it is written.
    let output = run(step_output_unwritten).unwrap();
    assert_eq!(&output[..3], &[-1.0, 2.0, -1.5]);
    assert!(output[3].is_nan(), "{output:?}");
    let output = run(step_region_unwritten).unwrap();
    assert_eq!(&output[..3], &[-1.0, 2.0, -1.5]);
    assert!(output[3].is_nan(), "{output:?}");
}

#[test]
fn a_failing_kernel_is_reported_with_its_node() {
    match run(step_index_out_of_range) {
        Err(Error::KernelFailed { step, node, reason }) => {
            assert_eq!((step, node.as_str()), (1, "negate"));
            assert!(reason.contains("index"), "{reason}");
        }
        other => panic!("expected a kernel failure, got {other:?}"),
    }
}
