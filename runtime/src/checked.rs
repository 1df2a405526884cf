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
use crate::description::{CheckedSection, Description, MINIMUM_ALIGNMENT};
use crate::error::Error;
use crate::step::walk_steps;

pub use crate::step::StepFn;

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

/// The byte every arena and output byte holds before a checked run (see `CheckedState::run`).
const POISON: u8 = 0xFF;

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

    /// The data bytes (not the zones).
    fn bytes(&self) -> &[u8] {
        &self.buffer.as_slice()[self.guard..self.guard + self.size]
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
                    let size = weight.code_byte_size().unwrap_or(usize::MAX);
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
        // Poison: every arena byte and every output byte starts as 0xFF (a float32 NaN, an int32
        // -1, a bool that is neither 0 nor 1), so an element that no kernel writes before it is
        // read, or that never gets written at all, shows in the outputs instead of passing as a
        // stale or zero value.
        arena.as_mut_slice().fill(POISON);
        for copy in &mut self.outputs {
            let (data, size) = (copy.data(), copy.size);
            // SAFETY: the copy's data is ours and `size` bytes long.
            unsafe { std::ptr::write_bytes(data, POISON, size) };
        }
        let zones = self.zones(section, description.arena.alignment, arena)?;
        for zone in &zones {
            zone.fill();
        }
        let arena_pointer = arena.as_mut_ptr().cast::<c_void>();
        // Checked runs are single-threaded: one kernel at a time, verified after each.
        let single = crate::ThreadSync::single();
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
                    &single,
                )
            }
        };
        walk_steps(&description.steps, call, |index, node| {
            // Inputs and weights are read-only to the code: compare each copy with its source.
            let read_only = self
                .inputs
                .iter()
                .zip(inputs)
                .enumerate()
                .map(|(index, (copy, &source))| (Guarded::Input(index), copy, source))
                .chain(self.weights.iter().enumerate().map(|(index, copy)| {
                    // SAFETY: one readable pointer per description weight (contract).
                    (Guarded::Weight(index), copy, unsafe { *weights.add(index) })
                }));
            for (guarded, copy, source) in read_only {
                // SAFETY: `source` is readable for the copy's size (contract).
                let original =
                    unsafe { std::slice::from_raw_parts(source.cast::<u8>(), copy.size) };
                if let Some(offset) = copy.bytes().iter().zip(original).position(|(a, b)| a != b) {
                    return Err(Error::ReadOnlyBufferWritten {
                        step: index,
                        node: node.to_string(),
                        buffer: self.name_of(guarded, section, description),
                        offset,
                    });
                }
            }
            if let Some(zone) = zones.iter().find(|zone| zone.damage().is_some()) {
                let offset = zone.damage().unwrap_or_default();
                return Err(Error::RedZoneDamaged {
                    step: index,
                    node: node.to_string(),
                    buffer: self.name_of(zone.guarded, section, description),
                    side: zone.side,
                    offset,
                });
            }
            Ok(())
        })?;
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
        let (kind, name) = match guarded {
            Guarded::Region(index) => ("region", section.regions.get(index).map(|r| &r.name)),
            Guarded::Input(index) => ("input", description.inputs.get(index).map(|t| &t.name)),
            Guarded::Output(index) => ("output", description.outputs.get(index).map(|t| &t.name)),
            Guarded::Weight(index) => ("weight", description.weights.get(index).map(|w| &w.name)),
        };
        format!("{kind} `{}`", name.map_or("", String::as_str))
    }
}
