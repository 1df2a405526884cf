//! Checked mode: runs a model compiled with `tfjsc compile --checked` one kernel at a time and
//! verifies red zones around every buffer after each kernel (docs/abi.md, "Checked mode").
//!
//! In a normal run every kernel works inside one arena and the caller's buffers, so a kernel that
//! writes one element too many lands in a neighbour buffer and no tool (valgrind included) can
//! tell. Here every arena region has red zones (the compiler planned them and listed them in the
//! description), and every input, output and weight is handed to the code as a guarded heap copy
//! with red zones of its own. Zones are filled with a pattern before the first step and compared
//! after every step; the first damaged zone names the step's node, the buffer and the side.
//!
//! This module exists for testing kernels: it is slow (a zone sweep per kernel) and must never be
//! used on the normal path. It must never call the step function with a pointer that is not valid
//! for what the description promises, and it reads zones only inside buffers it owns.

use std::ffi::c_void;
use std::fmt;
use std::ops::Range;

use crate::aligned::AlignedBuffer;
use crate::description::{byte_size_of, CheckedSection, Description, MINIMUM_ALIGNMENT};
use crate::error::Error;

/// `int32_t PREFIX_step(uint32_t index, const void *const *weights, const void *const *inputs,
/// void *const *outputs, void *arena)`: runs the `index`-th kernel of `PREFIX_run` only; returns
/// 0, or 1 when `index` is out of range.
pub type StepFn = unsafe extern "C" fn(
    index: u32,
    weights: *const *const c_void,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut c_void,
) -> i32;

/// Which side of its buffer a damaged red zone lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Below the buffer's first byte.
    Before,
    /// From the buffer's end (including padding up to the alignment).
    After,
}

impl fmt::Display for Side {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Side::Before => "before",
            Side::After => "after",
        })
    }
}

/// The buffer a zone guards, resolved to a name only when a zone is damaged.
#[derive(Debug, Clone, Copy)]
enum Guarded {
    /// Index into the checked section's regions.
    Region(usize),
    Input(usize),
    Output(usize),
    Weight(usize),
}

/// One red zone: where it lives, what it guards, and its pattern.
struct Zone {
    /// Start of the buffer holding the zone (the arena or a guarded copy), 64-byte aligned.
    base: *mut u8,
    /// Bytes of the zone, relative to `base`.
    range: Range<usize>,
    /// Offset of the guarded buffer's first byte relative to `base`.
    buffer_start: usize,
    guarded: Guarded,
    side: Side,
    /// 32-bit pattern word (see [`pattern_word`]).
    word: u32,
}

/// The pattern of zone number `index`: a float32 NaN whose payload carries the index.
///
/// A NaN, so that a kernel that *reads* past a buffer and lets the value reach an output poisons
/// that output (NaN never compares equal, and tests compare against references); the payload
/// differs per zone (mod 2^16), so a copy kernel that reads one zone and writes another (an
/// overrun on both sides) still leaves bytes that do not belong to the zone it wrote. Words are
/// laid out by address modulo 4 (buffers are 64-byte aligned), so an aligned float32 read of any
/// zone sees a whole NaN. The exponent bits make it NaN for every index; as int32 it is a large
/// positive number, as bool bytes none is 0 or 1 except by chance of the index.
fn pattern_word(index: usize) -> u32 {
    0x7FA5_0000 | (index as u32 & 0xFFFF)
}

impl Zone {
    /// The expected byte at `offset` (relative to `base`).
    fn expected(&self, offset: usize) -> u8 {
        self.word.to_le_bytes()[offset % 4]
    }

    fn fill(&self) {
        for offset in self.range.clone() {
            // SAFETY: every zone lies inside its buffer (regions were validated against the arena
            // size, guarded copies are built with their zones), and no reference to the buffer
            // is alive while zones are filled.
            unsafe { self.base.add(offset).write(self.expected(offset)) };
        }
    }

    /// The damaged byte nearest the buffer, as an offset from the buffer's first byte (negative
    /// before it), or `None` when the zone is intact.
    fn damage(&self) -> Option<i64> {
        // SAFETY: as in `fill`; the code has returned, so nothing writes the buffer meanwhile.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.base.add(self.range.start), self.range.len())
        };
        let bad = |&(index, &byte): &(usize, &u8)| byte != self.expected(self.range.start + index);
        let found = match self.side {
            Side::Before => bytes.iter().enumerate().rev().find(bad),
            Side::After => bytes.iter().enumerate().find(bad),
        };
        found.map(|(index, _)| (self.range.start + index) as i64 - self.buffer_start as i64)
    }
}

/// A heap copy of one input, output or weight: zone | data | zone, data 64-byte aligned.
struct GuardedCopy {
    buffer: AlignedBuffer,
    /// Bytes before the data (the before zone).
    guard: usize,
    /// Bytes of data.
    size: usize,
}

impl GuardedCopy {
    fn new(size: usize, red_zone_bytes: usize) -> Result<GuardedCopy, Error> {
        let too_large = Error::Allocation {
            bytes: size,
            alignment: MINIMUM_ALIGNMENT,
        };
        let round = |bytes: usize| bytes.checked_next_multiple_of(MINIMUM_ALIGNMENT);
        let guard = round(red_zone_bytes).ok_or(Error::Allocation {
            bytes: red_zone_bytes,
            alignment: MINIMUM_ALIGNMENT,
        })?;
        let length = round(size)
            .and_then(|data| data.checked_add(2 * guard))
            .ok_or(too_large)?;
        Ok(GuardedCopy {
            buffer: AlignedBuffer::zeroed(length, MINIMUM_ALIGNMENT)?,
            guard,
            size,
        })
    }

    fn data(&mut self) -> *mut u8 {
        // SAFETY: `guard + size` is at most the buffer's length (built in `new`).
        unsafe { self.buffer.as_mut_ptr().add(self.guard) }
    }

    fn zones(&mut self, guarded: Guarded, next_index: &mut usize, zones: &mut Vec<Zone>) {
        let base = self.buffer.as_mut_ptr();
        let end = self.guard + self.size;
        for (range, side) in [
            (0..self.guard, Side::Before),
            (end..self.buffer.len(), Side::After),
        ] {
            zones.push(Zone {
                base,
                range,
                buffer_start: self.guard,
                guarded,
                side,
                word: pattern_word(*next_index),
            });
            *next_index += 1;
        }
    }
}

/// The guarded copies of one execution context, allocated at its first checked run and reused.
#[derive(Default)]
pub(crate) struct CheckedState {
    weights: Vec<GuardedCopy>,
    inputs: Vec<GuardedCopy>,
    outputs: Vec<GuardedCopy>,
    /// Whether the copies above have been allocated for the model (sizes never change).
    allocated: bool,
}

impl CheckedState {
    /// Runs every step with red zones checked after each; copies outputs out on success.
    ///
    /// # Safety
    /// `weights` must point to one pointer per description weight, each readable for the
    /// weight's decoded byte size; `inputs[i]` readable and `outputs[i]` writable for their
    /// tensors' byte sizes (`inputs`/`outputs` one per description tensor); `arena` at least
    /// `arena.size` bytes; `step` must implement the description's checked section.
    pub(crate) unsafe fn run(
        &mut self,
        description: &Description,
        step: StepFn,
        weights: *const *const c_void,
        inputs: &[*const c_void],
        outputs: &[*mut c_void],
        arena: &mut AlignedBuffer,
    ) -> Result<(), Error> {
        let Some(section) = &description.checked else {
            return Err(Error::InvalidDescription(
                "checked run without a checked section".to_string(),
            ));
        };
        if arena.len() < description.arena.size
            || inputs.len() != description.inputs.len()
            || outputs.len() != description.outputs.len()
        {
            return Err(Error::InvalidDescription(
                "checked run: buffers do not match the description".to_string(),
            ));
        }
        let red = section.red_zone_bytes;
        if !self.allocated {
            self.weights = description
                .weights
                .iter()
                .map(|weight| {
                    let size = byte_size_of(weight.dtype, &weight.shape).unwrap_or(usize::MAX);
                    GuardedCopy::new(size, red)
                })
                .collect::<Result<_, _>>()?;
            self.inputs = description
                .inputs
                .iter()
                .map(|tensor| GuardedCopy::new(tensor.byte_size(), red))
                .collect::<Result<_, _>>()?;
            self.outputs = description
                .outputs
                .iter()
                .map(|tensor| GuardedCopy::new(tensor.byte_size(), red))
                .collect::<Result<_, _>>()?;
            self.allocated = true;
        }
        // Fresh copies of weights and inputs every run: a kernel that wrote into one last run
        // must not change this one.
        let mut weight_pointers = Vec::with_capacity(self.weights.len());
        for (index, copy) in self.weights.iter_mut().enumerate() {
            // SAFETY: `weights` has one readable pointer per description weight (contract).
            let source = unsafe { *weights.add(index) };
            // SAFETY: the source holds the weight's decoded bytes (contract); the copy was sized
            // for exactly those bytes and is our own allocation.
            unsafe { std::ptr::copy_nonoverlapping(source.cast::<u8>(), copy.data(), copy.size) };
            weight_pointers.push(copy.data().cast_const().cast::<c_void>());
        }
        let mut input_pointers = Vec::with_capacity(inputs.len());
        for (copy, &source) in self.inputs.iter_mut().zip(inputs) {
            // SAFETY: `source` is readable for the input's byte size (contract), the copy is ours.
            unsafe { std::ptr::copy_nonoverlapping(source.cast::<u8>(), copy.data(), copy.size) };
            input_pointers.push(copy.data().cast_const().cast::<c_void>());
        }
        let output_pointers: Vec<*mut c_void> = self
            .outputs
            .iter_mut()
            .map(|copy| copy.data().cast::<c_void>())
            .collect();

        if weight_pointers.len() != description.weights.len()
            || input_pointers.len() != description.inputs.len()
            || output_pointers.len() != description.outputs.len()
        {
            return Err(Error::InvalidDescription(
                "checked run: guarded copies do not match the description".to_string(),
            ));
        }
        let zones = self.zones(section, description.arena.alignment, arena)?;
        for zone in &zones {
            zone.fill();
        }
        let arena_pointer = arena.as_mut_ptr().cast::<c_void>();
        let call = |index: u32| {
            // SAFETY: every pointer array has one entry per description tensor or weight, each
            // pointing at a guarded copy of the right byte size and 64-byte aligned; the arena
            // has `arena.size` bytes at the alignment the description asks (at least 64); `step`
            // implements the checked section (contract).
            unsafe {
                step(
                    index,
                    weight_pointers.as_ptr(),
                    input_pointers.as_ptr(),
                    output_pointers.as_ptr(),
                    arena_pointer,
                )
            }
        };
        let count = section.steps.len();
        for (index, node) in section.steps.iter().enumerate() {
            // The section was validated to have at most `u32::MAX` steps.
            let status = call(index as u32);
            match status {
                0 => {}
                1 => {
                    return Err(Error::InvalidDescription(format!(
                    "checked: the step function has {index} steps, the description lists {count}"
                )))
                }
                code => return Err(Error::RunFailed { code }),
            }
            if let Some(zone) = zones.iter().find(|zone| zone.damage().is_some()) {
                let offset = zone.damage().unwrap_or_default();
                return Err(Error::RedZoneDamaged {
                    step: index,
                    node: node.clone(),
                    buffer: self.name_of(zone.guarded, section, description),
                    side: zone.side,
                    offset,
                });
            }
        }
        // One index past the end must be refused: more kernels than described would otherwise
        // go unchecked. Every pointer is valid, so even a wrong step function does no harm.
        let status = call(count as u32);
        if status != 1 {
            return Err(Error::InvalidDescription(format!(
                "checked: step {count} returned {status}, but the description lists only {count} steps"
            )));
        }
        for (copy, &destination) in self.outputs.iter_mut().zip(outputs) {
            // SAFETY: `destination` is writable for the output's byte size (contract) and is not
            // our copy.
            unsafe { std::ptr::copy_nonoverlapping(copy.data(), destination.cast(), copy.size) };
        }
        Ok(())
    }

    /// Every red zone: arena regions first (description order), then inputs, outputs, weights.
    fn zones(
        &mut self,
        section: &CheckedSection,
        alignment: usize,
        arena: &mut AlignedBuffer,
    ) -> Result<Vec<Zone>, Error> {
        let mut zones = Vec::new();
        let mut next_index = 0;
        let base = arena.as_mut_ptr();
        for (index, region) in section.regions.iter().enumerate() {
            // Validated with the description: inside the arena, no overflow.
            let (before, after) = section.zones_of(region, alignment).ok_or_else(|| {
                Error::InvalidDescription(format!("checked: region `{}`", region.name))
            })?;
            if after.end > arena.len() {
                return Err(Error::InvalidDescription(format!(
                    "checked: region `{}` is outside the arena",
                    region.name
                )));
            }
            for (range, side) in [(before, Side::Before), (after, Side::After)] {
                zones.push(Zone {
                    base,
                    range,
                    buffer_start: region.offset,
                    guarded: Guarded::Region(index),
                    side,
                    word: pattern_word(next_index),
                });
                next_index += 1;
            }
        }
        for (index, copy) in self.inputs.iter_mut().enumerate() {
            copy.zones(Guarded::Input(index), &mut next_index, &mut zones);
        }
        for (index, copy) in self.outputs.iter_mut().enumerate() {
            copy.zones(Guarded::Output(index), &mut next_index, &mut zones);
        }
        for (index, copy) in self.weights.iter_mut().enumerate() {
            copy.zones(Guarded::Weight(index), &mut next_index, &mut zones);
        }
        Ok(zones)
    }

    fn name_of(
        &self,
        guarded: Guarded,
        section: &CheckedSection,
        description: &Description,
    ) -> String {
        let name = |list: Option<&String>| list.cloned().unwrap_or_default();
        match guarded {
            Guarded::Region(index) => {
                format!(
                    "region `{}`",
                    name(section.regions.get(index).map(|r| &r.name))
                )
            }
            Guarded::Input(index) => {
                format!(
                    "input `{}`",
                    name(description.inputs.get(index).map(|t| &t.name))
                )
            }
            Guarded::Output(index) => {
                format!(
                    "output `{}`",
                    name(description.outputs.get(index).map(|t| &t.name))
                )
            }
            Guarded::Weight(index) => {
                format!(
                    "weight `{}`",
                    name(description.weights.get(index).map(|w| &w.name))
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, RunFn};
    use std::ffi::CString;

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
                    let count = if fault == Fault::InputRead { 5 } else { 4 };
                    for i in 0..count {
                        *a.add(i % 4) = *x.add(i) * *w.add(i % 4);
                    }
                    if fault == Fault::RegionAfter {
                        *a.cast::<u8>().add(16) = 0;
                    }
                }
                1 => {
                    for i in 0..4 {
                        *y.add(i) = -*a.add(i);
                    }
                    match fault {
                        Fault::OutputAfter => *y.cast::<u8>().add(16) = 0,
                        Fault::OutputBefore => *y.cast::<u8>().sub(1) = 0,
                        Fault::WeightAfter => *w.cast::<u8>().cast_mut().add(16) = 0,
                        _ => {}
                    }
                }
                _ => return 1,
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
            ) -> i32 {
                // SAFETY: called by the runtime with the pointers of ABI v1.
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

    /// `run` is never called in checked mode.
    unsafe extern "C" fn run_unused(
        _weights: *const *const c_void,
        _inputs: *const *const c_void,
        _outputs: *const *mut c_void,
        _arena: *mut c_void,
    ) -> i32 {
        99
    }

    const W: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

    fn description(weights_dir: &std::path::Path, steps: &[&str]) -> serde_json::Value {
        let bytes: Vec<u8> = W.iter().flat_map(|v| v.to_le_bytes()).collect();
        serde_json::json!({
            "abi_version": 1,
            "weights_dir": weights_dir.display().to_string(),
            "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}],
            "arena": {"size": 192, "alignment": 64},
            "weight_files": [{"path": "w.bin", "size": 16, "crc32": crc32fast::hash(&bytes)}],
            "weight_groups": [{"files": [0]}],
            "weights": [{"name": "w", "dtype": "float32", "shape": [4], "group": 0, "offset": 0,
                         "byte_size": 16, "encoding": {"kind": "float32"}}],
            "checked": {"red_zone_bytes": 64, "steps": steps,
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
}
