//! A hand-written "compiled model" in Rust for the runtime's step-by-step paths (checked runs,
//! profiles): two kernels behind a step function, each of which can be made to misbehave in one
//! way (a [`Fault`]), and the description and weight file that go with them.

#![allow(dead_code)]

use std::ffi::{c_void, CString};

use tfjsc_runtime::{Error, Model, RunFn, StepFn};

/// What the hand-written kernels below do wrong, if anything.
#[derive(Clone, Copy, PartialEq)]
pub enum Fault {
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

/// A step function's `weights`, `inputs`, `outputs` and `arena`.
pub type Arguments = (
    *const *const c_void,
    *const *const c_void,
    *const *mut c_void,
    *mut c_void,
);

/// Two kernels: step 0 `scale` (arena region `a:0` = x * w), step 1 `negate` (y = -a). The
/// arena holds region `a:0` (16 bytes) at 64 with its zones: 64 + 64 + 64 bytes.
///
/// # Safety
/// The pointers of ABI v2 for the description of [`description`].
pub unsafe fn step(fault: Fault, index: u32, arguments: Arguments) -> i32 {
    let (weights, inputs, outputs, arena) = arguments;
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
        pub unsafe extern "C" fn $name(
            index: u32,
            weights: *const *const c_void,
            inputs: *const *const c_void,
            outputs: *const *mut c_void,
            arena: *mut c_void,
            _threads: *const tfjsc_runtime::ThreadSync,
        ) -> i32 {
            // SAFETY: called by the runtime with the pointers of ABI v2.
            unsafe { step($fault, index, (weights, inputs, outputs, arena)) }
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

/// `run` is never called in checked mode; 99 says it was.
pub unsafe extern "C" fn run_unused(
    _weights: *const *const c_void,
    _inputs: *const *const c_void,
    _outputs: *const *mut c_void,
    _arena: *mut c_void,
    _threads: *const tfjsc_runtime::ThreadSync,
) -> i32 {
    99
}

/// The weight `w`.
pub const W: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

/// A checked description of the two kernels, listing `steps`.
pub fn description(weights_dir: &std::path::Path, steps: &[&str]) -> serde_json::Value {
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

/// One run of `model` on zeros, which must fail: its error.
pub fn run_error(model: &Model) -> Error {
    model
        .new_context()
        .unwrap()
        .run(&[&[0; 16]], &mut [&mut [0; 16]])
        .unwrap_err()
}

/// Writes the weight file into `directory` and wraps the kernels with `description`: with `step`
/// through `from_static_checked`, else through `from_static`. Their `run` returns 99.
pub fn load(
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
