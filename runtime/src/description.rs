//! The ABI v1 description: the JSON a compiled model returns from `PREFIX_description`.
//!
//! This module exists so that the contract of `docs/abi.md` is written down once, as types. It
//! parses and validates the description so that everything after it (mapping weights, checking
//! tensors, calling the code) can rely on indices being in range and sizes not overflowing. It must
//! never touch files or call compiled code: it only reads text.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::panels::Panels;

/// The ABI version this runtime implements.
pub const ABI_VERSION: u32 = 2;

/// The smallest arena alignment the runtime hands out, whatever the description asks.
pub const MINIMUM_ALIGNMENT: usize = 64;

/// Element type of an input, output or decoded weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE single precision, 4 bytes.
    Float32,
    /// Two's complement 32-bit integer, 4 bytes.
    Int32,
    /// One byte holding 0 or 1.
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::Float32 | DType::Int32 => 4,
            DType::Bool => 1,
        }
    }

    /// The name used in descriptions (`float32`, `int32`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Int32 => "int32",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Number of elements of `shape`, or `None` when the product overflows.
pub fn element_count_of(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |count, &dimension| count.checked_mul(dimension))
}

/// Bytes of a dense tensor of `dtype` and `shape`, or `None` on overflow.
pub fn byte_size_of(dtype: DType, shape: &[usize]) -> Option<usize> {
    element_count_of(shape)?.checked_mul(dtype.size_in_bytes())
}

/// Name, element type and static shape of one input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The tensor's name in the original model (e.g. `input_1`, `Identity`).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Static shape, row-major.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Number of elements (validated not to overflow when the description was parsed).
    pub fn element_count(&self) -> usize {
        element_count_of(&self.shape).unwrap_or(usize::MAX)
    }

    /// Dense byte size (validated not to overflow when the description was parsed).
    pub fn byte_size(&self) -> usize {
        byte_size_of(self.dtype, &self.shape).unwrap_or(usize::MAX)
    }
}

/// Scratch memory the compiled code needs per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArenaSpec {
    /// Bytes; may be 0.
    pub size: usize,
    /// Required alignment; a power of two.
    pub alignment: usize,
}

/// One shard file the model was compiled against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightFile {
    /// Path relative to the weights directory.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the whole file.
    pub crc32: u32,
}

/// Files whose concatenation forms one byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightGroup {
    /// Indices into [`Description::weight_files`], in stream order.
    pub files: Vec<usize>,
}

/// How a weight's stored bytes turn into its decoded values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Encoding {
    /// Stored as little-endian float32.
    Float32,
    /// Stored as little-endian int32.
    Int32,
    /// Stored as one byte per value.
    Bool,
    /// IEEE half precision, decoded to float32.
    Float16,
    /// `value = q * scale + min` with one-byte `q`.
    Uint8 {
        /// Quantisation step.
        scale: f64,
        /// Value of `q = 0`.
        min: f64,
    },
    /// `value = q * scale + min` with two-byte little-endian `q`.
    Uint16 {
        /// Quantisation step.
        scale: f64,
        /// Value of `q = 0`.
        min: f64,
    },
}

impl Encoding {
    /// Bytes one element takes in the shard files.
    pub fn stored_element_size(self) -> usize {
        match self {
            Encoding::Float32 | Encoding::Int32 => 4,
            Encoding::Float16 | Encoding::Uint16 { .. } => 2,
            Encoding::Bool | Encoding::Uint8 { .. } => 1,
        }
    }

    /// Whether the stored bytes already are the decoded values (on a little-endian host).
    pub fn is_stored_as_decoded(self) -> bool {
        matches!(self, Encoding::Float32 | Encoding::Int32 | Encoding::Bool)
    }

    /// Whether this encoding can produce a weight of `dtype`.
    pub fn can_decode_to(self, dtype: DType) -> bool {
        match self {
            Encoding::Float32 | Encoding::Float16 => dtype == DType::Float32,
            Encoding::Int32 => dtype == DType::Int32,
            Encoding::Bool => dtype == DType::Bool,
            Encoding::Uint8 { .. } | Encoding::Uint16 { .. } => {
                matches!(dtype, DType::Float32 | DType::Int32)
            }
        }
    }

    /// The `kind` string of the description.
    pub fn kind(self) -> &'static str {
        match self {
            Encoding::Float32 => "float32",
            Encoding::Int32 => "int32",
            Encoding::Bool => "bool",
            Encoding::Float16 => "float16",
            Encoding::Uint8 { .. } => "uint8",
            Encoding::Uint16 { .. } => "uint16",
        }
    }
}

/// One weight the compiled code reads, in the order of the `weights` pointer array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightSpec {
    /// The weight's name in the web model.
    pub name: String,
    /// Decoded element type.
    pub dtype: DType,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Index into [`Description::weight_groups`].
    pub group: usize,
    /// Byte offset in the group's stream.
    pub offset: u64,
    /// Stored bytes.
    pub byte_size: u64,
    /// How stored bytes become values.
    pub encoding: Encoding,
    /// When present, the code reads this float32 weight packed into panels (see
    /// [`crate::panels`]); the runtime packs it at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panels: Option<Panels>,
}

impl WeightSpec {
    /// Bytes of the weight as the code reads it: decoded, and packed when it has panels.
    pub fn code_byte_size(&self) -> Option<usize> {
        match &self.panels {
            Some(panels) => panels.packed_len()?.checked_mul(4),
            None => byte_size_of(self.dtype, &self.shape),
        }
    }
}

/// What the kernel of one step computes, for profiles: `step_info[i]` describes `steps[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInfo {
    /// The kernel's op: the IR op name, refined by its kind (`conv2d`, `conv2d.depthwise`,
    /// `unary.relu`, `binary.add`, ...).
    pub op: String,
    /// Floating-point operations of one call (a multiply-add counts 2); 0 for data movement.
    pub flops: u64,
}

/// One arena region of a checked model: a buffer with red zones on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// What the buffer holds, for error messages (`NODE:0`, `scratch of NODE`).
    pub name: String,
    /// Byte offset of the buffer in the arena.
    pub offset: usize,
    /// Bytes of the buffer; its after zone starts at `offset + size`.
    pub size: usize,
}

/// The optional `checked` section: the model was compiled with `--checked`, and runs go through
/// `PREFIX_step` with red zones verified (docs/abi.md, "Checked mode").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedSection {
    /// Red zone bytes before every region; the after zone takes as many plus the padding up to
    /// the arena alignment (see [`CheckedSection::zones_of`]).
    pub red_zone_bytes: usize,
    /// Every arena region.
    pub regions: Vec<Region>,
}

impl CheckedSection {
    /// The red zones of `region` as `(before, after)` byte ranges of the arena, or `None` on
    /// overflow. The after zone runs from the buffer's end to `red_zone_bytes` past the buffer's
    /// end rounded up to `alignment`, so padding is checked too.
    pub fn zones_of(
        &self,
        region: &Region,
        alignment: usize,
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let start = region.offset.checked_sub(self.red_zone_bytes)?;
        let end = region.offset.checked_add(region.size)?;
        let padded = end.checked_next_multiple_of(alignment)?;
        let after_end = padded.checked_add(self.red_zone_bytes)?;
        Some((start..region.offset, end..after_end))
    }

    /// Checks the section against an arena of `arena_size` bytes aligned to `alignment`: every
    /// region and its zones inside the arena, buffers aligned, no two regions' extents (zones
    /// included) overlapping.
    fn validate(&self, arena_size: usize, alignment: usize) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::InvalidDescription(message));
        if self.red_zone_bytes == 0 {
            return invalid("checked: red_zone_bytes is 0".to_string());
        }
        let mut extents = Vec::with_capacity(self.regions.len());
        for region in &self.regions {
            let Some((before, after)) = self.zones_of(region, alignment) else {
                return invalid(format!(
                    "checked: region `{}` (offset {}, {} bytes) leaves no room for its red zones",
                    region.name, region.offset, region.size
                ));
            };
            if after.end > arena_size {
                return invalid(format!(
                    "checked: region `{}` (offset {}, {} bytes) and its red zones end at byte {}, past the arena of {arena_size} bytes",
                    region.name, region.offset, region.size, after.end
                ));
            }
            if region.offset % alignment != 0 {
                return invalid(format!(
                    "checked: region `{}` offset {} is not aligned to {alignment}",
                    region.name, region.offset
                ));
            }
            extents.push((before.start, after.end, region.name.as_str()));
        }
        extents.sort_unstable();
        for pair in extents.windows(2) {
            if let [(_, first_end, first), (second_start, _, second)] = pair {
                if second_start < first_end {
                    return invalid(format!(
                        "checked: regions `{first}` and `{second}` overlap (red zones included)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One kernel set of a library that holds several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelSet {
    /// The CPU level, as `--cpu` names it (`x86-64-v4`).
    pub name: String,
    /// The prefix of the set's own entries (`PREFIX_x86_64_v4_run`, `..._step`,
    /// `..._description`), which load this set alone.
    pub symbol_prefix: String,
    /// The features its code uses.
    pub required_cpu_features: Vec<String>,
}

/// The whole description of a compiled model (ABI v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// Always [`ABI_VERSION`] once parsed.
    pub abi_version: u32,
    /// The tool that wrote the model, e.g. `tfjsc 0.1.0`.
    #[serde(default)]
    pub generator: String,
    /// The model path given at compile time (informational).
    #[serde(default)]
    pub model: String,
    /// Directory of the shards at compile time; the default weights directory.
    pub weights_dir: String,
    /// The instruction set the code was compiled for (informational).
    #[serde(default)]
    pub target: String,
    /// CPU features the code uses (`avx2`, `fma`, ...): loading refuses a CPU that lacks one,
    /// rather than letting the code fault on an unknown instruction.
    #[serde(default)]
    pub required_cpu_features: Vec<String>,
    /// In a library of several kernel sets, each set (lowest level first); `PREFIX_run` runs
    /// the best one the CPU supports (docs/abi.md, "Kernel sets"). Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_sets: Vec<KernelSet>,
    /// Inputs, in the order of the `inputs` pointer array.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the order of the `outputs` pointer array.
    pub outputs: Vec<TensorSpec>,
    /// Scratch memory per run.
    pub arena: ArenaSpec,
    /// Shard files, checked by size and CRC-32 before use.
    pub weight_files: Vec<WeightFile>,
    /// Byte streams made of shard files.
    pub weight_groups: Vec<WeightGroup>,
    /// The weights the code reads, in pointer-array order.
    pub weights: Vec<WeightSpec>,
    /// The node each kernel call of `run` runs, in order (`PREFIX_step(i, ...)` runs
    /// `steps[i]`); a failing kernel's status names its step (docs/abi.md, "Run status").
    #[serde(default)]
    pub steps: Vec<String>,
    /// Op and FLOP count of each step, parallel to `steps`; empty in descriptions written before
    /// it was added (see [`Description::info_of_step`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_info: Vec<StepInfo>,
    /// Present when the model was compiled with `--checked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<CheckedSection>,
}

impl Description {
    /// Parses and validates description JSON; rejects any ABI version but 1 before anything else.
    pub fn parse(json: &str) -> Result<Description, Error> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        let version = value
            .get("abi_version")
            .ok_or_else(|| Error::InvalidDescription("missing field `abi_version`".to_string()))?;
        if version.as_u64() != Some(u64::from(ABI_VERSION)) {
            return Err(Error::UnsupportedAbiVersion {
                found: version.to_string(),
                supported: ABI_VERSION,
            });
        }
        let description: Description = serde_json::from_value(value)?;
        description.validate()?;
        Ok(description)
    }

    /// Checks the cross references and sizes the types alone cannot express.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::InvalidDescription(message));
        if self.abi_version != ABI_VERSION {
            return Err(Error::UnsupportedAbiVersion {
                found: self.abi_version.to_string(),
                supported: ABI_VERSION,
            });
        }
        if !self.arena.alignment.is_power_of_two() {
            return invalid(format!(
                "arena alignment {} is not a power of two",
                self.arena.alignment
            ));
        }
        for (kind, tensors) in [("input", &self.inputs), ("output", &self.outputs)] {
            for tensor in tensors {
                if byte_size_of(tensor.dtype, &tensor.shape)
                    .is_none_or(|size| size > isize::MAX as usize)
                {
                    return invalid(format!(
                        "{kind} `{}` shape {:?} is too large",
                        tensor.name, tensor.shape
                    ));
                }
            }
        }
        for (index, file) in self.weight_files.iter().enumerate() {
            let path = std::path::Path::new(&file.path);
            if file.path.is_empty() || path.is_absolute() {
                return invalid(format!(
                    "weight file {index} path `{}` must be relative to the weights directory",
                    file.path
                ));
            }
        }
        for (group_index, group) in self.weight_groups.iter().enumerate() {
            for &file_index in &group.files {
                if file_index >= self.weight_files.len() {
                    return invalid(format!(
                        "weight group {group_index} names file {file_index}, but there are {} weight files",
                        self.weight_files.len()
                    ));
                }
            }
        }
        for weight in &self.weights {
            if weight.group >= self.weight_groups.len() {
                return invalid(format!(
                    "weight `{}` is in group {}, but there are {} weight groups",
                    weight.name,
                    weight.group,
                    self.weight_groups.len()
                ));
            }
            if !weight.encoding.can_decode_to(weight.dtype) {
                return invalid(format!(
                    "weight `{}` has encoding {} which cannot decode to {}",
                    weight.name,
                    weight.encoding.kind(),
                    weight.dtype
                ));
            }
            let decoded = byte_size_of(weight.dtype, &weight.shape);
            let stored = element_count_of(&weight.shape)
                .and_then(|count| count.checked_mul(weight.encoding.stored_element_size()));
            let (Some(_), Some(stored)) = (decoded, stored) else {
                return invalid(format!(
                    "weight `{}` shape {:?} is too large",
                    weight.name, weight.shape
                ));
            };
            if let Some(panels) = &weight.panels {
                let count = element_count_of(&weight.shape);
                if weight.dtype != DType::Float32
                    || panels.stored_len() != count
                    || panels.packed_len().is_none()
                {
                    let (rows, columns) = (panels.rows, panels.columns);
                    let packing = match panels.winograd {
                        Some(winograd) => {
                            format!(
                                "the {winograd:?} transform of a 3 × 3 × {rows} × {columns} filter"
                            )
                        }
                        None => format!("{rows} × {columns} panels"),
                    };
                    return invalid(format!(
                        "weight `{}` ({} {:?}) cannot be packed as {packing}",
                        weight.name, weight.dtype, weight.shape
                    ));
                }
            }
            if stored as u64 != weight.byte_size {
                return Err(Error::WeightByteSize {
                    name: weight.name.clone(),
                    expected: stored as u64,
                    found: weight.byte_size,
                });
            }
        }
        if u32::try_from(self.steps.len()).is_err() {
            return invalid(format!(
                "{} steps do not fit the step function's 32-bit index",
                self.steps.len()
            ));
        }
        if !self.step_info.is_empty() && self.step_info.len() != self.steps.len() {
            return invalid(format!(
                "step_info describes {} steps, but steps lists {}",
                self.step_info.len(),
                self.steps.len()
            ));
        }
        if let Some(checked) = &self.checked {
            checked.validate(self.arena.size, self.arena.alignment)?;
        }
        Ok(())
    }

    /// The op and FLOP count of step `index`, or `None` when the description does not say
    /// (written before `step_info` existed) or there is no such step.
    pub fn info_of_step(&self, index: usize) -> Option<&StepInfo> {
        self.step_info.get(index)
    }

    /// Total length of a group's stream, from the file sizes in the description.
    pub fn group_stream_size(&self, group: usize) -> u64 {
        self.weight_groups.get(group).map_or(0, |group| {
            group
                .files
                .iter()
                .filter_map(|&file| self.weight_files.get(file))
                .fold(0u64, |total, file| total.saturating_add(file.size))
        })
    }
}
