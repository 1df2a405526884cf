//! The one error type of the runtime.
//!
//! Every failure a user can cause (a wrong path, a damaged shard, a tensor of the wrong size) is a
//! variant here with the facts needed to fix it: which file or tensor, what was expected, what was
//! found. The runtime must never panic on bad input; it returns one of these instead.

use std::path::PathBuf;

use crate::description::DType;
use crate::npy::NpyError;

/// Everything that can go wrong while loading or running a compiled model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A kernel set was asked for by a name the library does not have.
    #[error(
        "the library has no kernel set `{name}`; it has: {}",
        list_or_none(available)
    )]
    UnknownKernelSet {
        /// The name asked for.
        name: String,
        /// The library's kernel sets.
        available: Vec<String>,
    },
    /// The library was compiled for a CPU feature this machine does not have.
    #[error("the compiled model needs the CPU feature `{feature}`, which this machine does not have (recompile with a lower --cpu)")]
    UnsupportedCpu {
        /// The missing feature, as the description names it.
        feature: String,
    },
    /// The thread count is 0, or the worker threads could not be started.
    #[error("cannot run on {threads} thread(s): {reason}")]
    Threads {
        /// The count asked for.
        threads: usize,
        /// Why not.
        reason: String,
    },
    /// The compiled model library could not be opened.
    #[error("cannot open compiled model library {path}: {source}")]
    OpenLibrary {
        /// The library path as given.
        path: PathBuf,
        /// The loader's reason.
        source: libloading::Error,
    },

    /// The library does not export a symbol the ABI requires.
    #[error(
        "compiled model library {path} has no symbol `{symbol}` (wrong --symbol-prefix?): {source}"
    )]
    MissingSymbol {
        /// The library path as given.
        path: PathBuf,
        /// The symbol looked for.
        symbol: String,
        /// The loader's reason.
        source: libloading::Error,
    },

    /// The description function returned a null pointer.
    #[error("the compiled model returned a null description")]
    NullDescription,

    /// The description is not valid UTF-8.
    #[error("the compiled model's description is not valid UTF-8")]
    DescriptionNotUtf8,

    /// The description is not the JSON the ABI specifies.
    #[error("the compiled model's description is not valid ABI JSON: {0}")]
    DescriptionJson(#[from] serde_json::Error),

    /// The description declares an ABI version this runtime does not implement.
    #[error("the compiled model uses ABI version {found}, this runtime supports version {supported} only (recompile the model or update the runtime)")]
    UnsupportedAbiVersion {
        /// The version in the description (or its raw JSON text when not an integer).
        found: String,
        /// The version this runtime implements.
        supported: u32,
    },

    /// The description parses but contradicts itself (bad index, bad alignment, ...).
    #[error("invalid model description: {0}")]
    InvalidDescription(String),

    /// A weight file could not be opened or read.
    #[error("cannot read weight file {path}: {source}")]
    WeightFileUnreadable {
        /// The full path of the file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// A weight file has another length than the model was compiled for.
    #[error("weight file {path} has the wrong size: expected {expected} bytes, found {found}")]
    WeightFileSize {
        /// The full path of the file.
        path: PathBuf,
        /// The size in the description.
        expected: u64,
        /// The size on disk.
        found: u64,
    },

    /// A weight file's CRC-32 differs from the one the model was compiled for.
    #[error("weight file {path} has the wrong CRC-32: expected {expected:#010x}, found {found:#010x} (the shards changed since compilation)")]
    WeightFileChecksum {
        /// The full path of the file.
        path: PathBuf,
        /// The checksum in the description.
        expected: u32,
        /// The checksum of the file on disk.
        found: u32,
    },

    /// A weight file name in the description was refused before anything was opened: absolute,
    /// leading outside the weights directory, or not a regular file.
    #[error("weight file {path} refused: {reason}")]
    WeightFileRefused {
        /// The weights directory joined with the name as the description lists it.
        path: PathBuf,
        /// Why it was refused.
        reason: crate::shard_file::ShardPathError,
    },

    /// Load flags this runtime does not know were passed (C API).
    #[error("unknown load flags {flags:#x}")]
    UnknownLoadFlags {
        /// The unknown bits.
        flags: u32,
    },

    /// A bool input holds a byte other than 0 and 1.
    #[error("input `{name}` is bool, but its byte {index} is {value} (bools must be 0 or 1)")]
    InvalidBool {
        /// The input's name.
        name: String,
        /// Index of the first offending element.
        index: usize,
        /// Its byte.
        value: u8,
    },

    /// A weight's stored bytes do not lie inside its group's byte stream.
    #[error("weight `{name}` (offset {offset}, {byte_size} bytes) does not fit in weight group {group} of {stream_size} bytes")]
    WeightOutOfRange {
        /// The weight's name.
        name: String,
        /// The weight's group index.
        group: usize,
        /// The weight's offset in the group stream.
        offset: u64,
        /// The weight's stored byte size.
        byte_size: u64,
        /// The total length of the group's files.
        stream_size: u64,
    },

    /// A weight's stored byte size does not match its shape and encoding.
    #[error(
        "weight `{name}` has byte_size {found}, but its shape and encoding need {expected} bytes"
    )]
    WeightByteSize {
        /// The weight's name.
        name: String,
        /// Element count times stored element size.
        expected: u64,
        /// The byte size in the description.
        found: u64,
    },

    /// The caller passed another number of input tensors than the model has.
    #[error("the model has {expected} inputs, {found} were given")]
    InputCount {
        /// The model's input count.
        expected: usize,
        /// The number passed.
        found: usize,
    },

    /// The caller passed another number of output buffers than the model has.
    #[error("the model has {expected} outputs, {found} buffers were given")]
    OutputCount {
        /// The model's output count.
        expected: usize,
        /// The number passed.
        found: usize,
    },

    /// An input buffer has the wrong length.
    #[error("input `{name}` needs {expected} bytes, {found} were given")]
    InputByteSize {
        /// The input's name.
        name: String,
        /// The byte size from the description.
        expected: usize,
        /// The length passed.
        found: usize,
    },

    /// An output buffer has the wrong length.
    #[error("output `{name}` needs {expected} bytes, the buffer has {found}")]
    OutputByteSize {
        /// The output's name.
        name: String,
        /// The byte size from the description.
        expected: usize,
        /// The length passed.
        found: usize,
    },

    /// An input tensor has the wrong element type.
    #[error("input `{name}` must be {expected}, a {found} tensor was given")]
    InputDType {
        /// The input's name.
        name: String,
        /// The dtype from the description.
        expected: DType,
        /// The dtype passed.
        found: DType,
    },

    /// An input tensor has the wrong shape.
    #[error("input `{name}` must have shape {expected:?}, shape {found:?} was given")]
    InputShape {
        /// The input's name.
        name: String,
        /// The shape from the description.
        expected: Vec<usize>,
        /// The shape passed.
        found: Vec<usize>,
    },

    /// A null pointer was passed where a buffer is required (C API).
    #[error("{what} is a null pointer")]
    NullPointer {
        /// Which argument.
        what: String,
    },

    /// A C string argument is not valid UTF-8 where text is required (C API).
    #[error("{what} is not valid UTF-8")]
    NotUtf8 {
        /// Which argument.
        what: String,
    },

    /// A tensor's data length does not match its dtype and shape.
    #[error(
        "a {dtype} tensor of shape {shape:?} needs {expected} bytes of data, {found} were given"
    )]
    TensorDataSize {
        /// The tensor's element type.
        dtype: DType,
        /// The tensor's shape.
        shape: Vec<usize>,
        /// Element count times element size.
        expected: usize,
        /// The data length.
        found: usize,
    },

    /// A tensor's element count overflows the address space.
    #[error("shape {shape:?} is too large")]
    ShapeTooLarge {
        /// The offending shape.
        shape: Vec<usize>,
    },

    /// A tensor was read as another element type than it holds.
    #[error("the tensor holds {found} values, not {expected}")]
    TensorDType {
        /// The type asked for.
        expected: DType,
        /// The type held.
        found: DType,
    },

    /// The compiled code reported failure.
    #[error("the compiled model's run function returned {code}")]
    RunFailed {
        /// The non-zero status returned.
        code: i32,
    },

    /// A kernel stopped because of its data, e.g. a gather index out of range.
    #[error("node {node:?} (step {step}): {reason}")]
    KernelFailed {
        /// The kernel's step (its position among `run`'s kernel calls).
        step: usize,
        /// The node the kernel computes.
        node: String,
        /// What went wrong.
        reason: String,
    },

    /// Memory for an arena or a decoded weight could not be allocated.
    #[error("cannot allocate {bytes} bytes aligned to {alignment}")]
    Allocation {
        /// Requested size.
        bytes: usize,
        /// Requested alignment.
        alignment: usize,
    },

    /// Reading or writing a NumPy file failed.
    #[error(transparent)]
    Npy(#[from] NpyError),

    /// Checked mode: a kernel wrote into a red zone (docs/abi.md, "Checked mode").
    #[error("checked run: step {step} (node `{node}`) damaged the red zone {side} {buffer}: first bad byte at offset {offset} from the buffer's start")]
    RedZoneDamaged {
        /// Index of the step (kernel) after which the damage was found.
        step: usize,
        /// The node that step runs.
        node: String,
        /// The buffer, e.g. "region `NODE:0`", "input `x`", "output `y`", "weight `w`".
        buffer: String,
        /// Which side of the buffer.
        side: crate::checked::Side,
        /// The damaged byte nearest the buffer, relative to its first byte (-1: the byte just
        /// before it; the buffer's size: the byte just after it).
        offset: i64,
    },

    /// Checked mode: a kernel wrote into an input or a weight, which the code may only read.
    #[error("checked run: step {step} (node `{node}`) wrote into {buffer}, which is read-only: first changed byte at offset {offset}")]
    ReadOnlyBufferWritten {
        /// Index of the step (kernel) after which the change was found.
        step: usize,
        /// The node that step runs.
        node: String,
        /// The buffer, "input `x`" or "weight `w`".
        buffer: String,
        /// The first changed byte, relative to the buffer's first byte.
        offset: usize,
    },

    /// The description has a `checked` section but no step function was given.
    #[error("the compiled model was built with --checked and needs its step function ({what})")]
    MissingStepFunction {
        /// How to provide it.
        what: String,
    },

    /// A profile was asked of a model loaded without its step function.
    #[error("cannot profile the model: {reason}")]
    ProfileUnavailable {
        /// Why the model has no step function, and what to do.
        reason: String,
    },
}

impl Error {
    /// The error for kernel failure `code` (docs/abi.md, "Run status") at `step`, node `node`.
    pub(crate) fn kernel_failed(step: usize, node: &str, code: i32) -> Error {
        let reason = match code {
            1 => "an index read from the data is out of range".to_string(),
            2 => "integer division by zero".to_string(),
            3 => "an integer raised to a negative power".to_string(),
            4 => "this CPU supports none of the library's kernel sets".to_string(),
            other => format!("failure code {other}"),
        };
        Error::KernelFailed {
            step,
            node: node.to_string(),
            reason,
        }
    }

    /// The error for a non-zero status of `run`: `(step << 8) | failure`, the step naming a node
    /// of `steps`; a status that does not decode is reported as it is.
    pub(crate) fn from_run_status(status: i32, steps: &[String]) -> Error {
        let step = (status >> 8) as usize;
        match steps.get(step) {
            Some(node) if status > 0 && status & 0xFF != 0 => {
                Error::kernel_failed(step, node, status & 0xFF)
            }
            _ => Error::RunFailed { code: status },
        }
    }
}

/// Kernel set names for a message: listed, or why there are none.
fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none (it was compiled for one CPU level)".to_string()
    } else {
        names.join(", ")
    }
}
