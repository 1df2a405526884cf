//! Checked mode's runtime half with hand-written kernels: a kernel that writes one byte past
//! (or before) an output, an arena region or a weight fails the run with an error naming the
//! node, the buffer and the side; a well-behaved one passes; malformed checked sections are
//! errors (docs/abi.md, "Checked mode").

use std::ffi::{c_void, CString};

use tfjsc_runtime::checked::{Side, StepFn};
use tfjsc_runtime::{Error, Model, RunFn};

/// What the hand-written kernels below do wrong, if anything.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Step 1 writes one byte past its output.
    OutputAfter,
    /// Step 1 writes one byte before its output.
    OutputBefore,
    /// Step 0 writes one byte past its arena region.
    RegionAfter,
    /// Step 1 writes one byte past the weight it reads.
    WeightAfter,
    /// Step 0 reads one element past its input (reads are not caught, but poison).
    InputRead,
    /// Step 0 writes into its input, step 1 into the weight: read-only buffers.
    InputWrite,
    WeightWrite,
    /// Step 1 leaves the last output element unwritten.
    OutputUnwritten,
    /// Step 1 reports an index out of range (status 1).
    IndexOutOfRange,
    /// Step 1 reads the region's last element before step 0 has written it.
    RegionUnwritten,
}

/// Two kernels: step 0 `scale` (arena region `a:0` = x * w), step 1 `negate` (y = -a). The
/// arena holds region `a:0` (16 bytes) at 64 with its zones: 64 + 64 + 64 bytes.
///
/// # Safety
/// The pointers of ABI v1 for the description of [`model`].
unsafe fn step(
    fault: Fault,
    index: u32,
    weights: *const *const c_void,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut c_void,
) -> i32 {
    // SAFETY: the description has one weight, one input and one output of 4 float32 each,
    // and an arena of 192 bytes with region `a:0` at 64; the faults write (or read) one byte
    // into a red zone, which the guarded copies and the arena have.
    unsafe {
        let w = (*weights).cast::<f32>();
        let x = (*inputs).cast::<f32>();
        let y = (*outputs).cast::<f32>();
        let a = arena.cast::<u8>().add(64).cast::<f32>();
        match index {
            0 => {
                let count = match fault {
                    Fault::InputRead => 5,
                    Fault::RegionUnwritten => 3,
                    _ => 4,
                };
                for i in 0..count {
                    *a.add(i % 4) = *x.add(i) * *w.add(i % 4);
                }
                if fault == Fault::InputWrite {
                    *x.cast_mut().add(2) = 0.0;
                }
                if fault == Fault::RegionAfter {
                    *a.cast::<u8>().add(16) = 0;
                }
            }
            1 if fault == Fault::IndexOutOfRange => return 1,
            1 => {
                let count = if fault == Fault::OutputUnwritten {
                    3
                } else {
                    4
                };
                for i in 0..count {
                    *y.add(i) = -*a.add(i);
                }
                match fault {
                    Fault::WeightWrite => *w.cast_mut().add(1) = 7.0,
                    Fault::OutputAfter => *y.cast::<u8>().add(16) = 0,
                    Fault::OutputBefore => *y.cast::<u8>().sub(1) = 0,
                    Fault::WeightAfter => *w.cast::<u8>().cast_mut().add(16) = 0,
                    _ => {}
                }
            }
            _ => return -1,
        }
        0
    }
}

macro_rules! step_fn {
    ($name:ident, $fault:expr) => {
        unsafe extern "C" fn $name(
            index: u32,
            weights: *const *const c_void,
            inputs: *const *const c_void,
            outputs: *const *mut c_void,
            arena: *mut c_void,
            _threads: *const tfjsc_runtime::ThreadSync,
        ) -> i32 {
            // SAFETY: called by the runtime with the pointers of ABI v2.
            unsafe { step($fault, index, weights, inputs, outputs, arena) }
        }
    };
}
step_fn!(step_good, Fault::None);
step_fn!(step_output_after, Fault::OutputAfter);
step_fn!(step_output_before, Fault::OutputBefore);
step_fn!(step_region_after, Fault::RegionAfter);
step_fn!(step_weight_after, Fault::WeightAfter);
step_fn!(step_input_read, Fault::InputRead);
step_fn!(step_input_write, Fault::InputWrite);
step_fn!(step_weight_write, Fault::WeightWrite);
step_fn!(step_output_unwritten, Fault::OutputUnwritten);
step_fn!(step_region_unwritten, Fault::RegionUnwritten);
step_fn!(step_index_out_of_range, Fault::IndexOutOfRange);

/// `run` is never called in checked mode.
unsafe extern "C" fn run_unused(
    _weights: *const *const c_void,
    _inputs: *const *const c_void,
    _outputs: *const *mut c_void,
    _arena: *mut c_void,
    _threads: *const tfjsc_runtime::ThreadSync,
) -> i32 {
    99
}

const W: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

fn description(weights_dir: &std::path::Path, steps: &[&str]) -> serde_json::Value {
    let bytes: Vec<u8> = W.iter().flat_map(|v| v.to_le_bytes()).collect();
    serde_json::json!({
        "abi_version": 2,
        "weights_dir": weights_dir.display().to_string(),
        "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}],
        "arena": {"size": 192, "alignment": 64},
        "weight_files": [{"path": "w.bin", "size": 16, "crc32": crc32fast::hash(&bytes)}],
        "weight_groups": [{"files": [0]}],
        "weights": [{"name": "w", "dtype": "float32", "shape": [4], "group": 0, "offset": 0,
                     "byte_size": 16, "encoding": {"kind": "float32"}}],
        "steps": steps,
        "checked": {"red_zone_bytes": 64,
                    "regions": [{"name": "a:0", "offset": 64, "size": 16}]},
    })
}

fn load(
    directory: &tempfile::TempDir,
    description: &serde_json::Value,
    step: Option<StepFn>,
) -> Result<Model, Error> {
    let bytes: Vec<u8> = W.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(directory.path().join("w.bin"), bytes).unwrap();
    let text = CString::new(description.to_string()).unwrap();
    let run: RunFn = run_unused;
    match step {
        // SAFETY: the description is NUL-terminated and the step functions implement it.
        Some(step) => unsafe { Model::from_static_checked(text.as_ptr(), run, step, None) },
        // SAFETY: as above.
        None => unsafe { Model::from_static(text.as_ptr(), run, None) },
    }
}

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
        let error = model
            .new_context()
            .unwrap()
            .run(&[&[0; 16]], &mut [&mut [0; 16]])
            .unwrap_err();
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
