//! `Model` (a loaded compiled model) and `Context` (one execution context with its own arena).
//!
//! A model is immutable once loaded: code, description, and the weight pointer table. Many threads
//! may share one model, each running through its own context, because the ABI's run function keeps
//! no global state. This module checks every buffer the caller hands in against the description
//! before calling the compiled code (`run`, or `step` for checked runs and profiles); it must never
//! call that code with a count, size or alignment the ABI does not promise.

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};

use libloading::Library;

use crate::aligned::AlignedBuffer;
use crate::checked::CheckedState;
use crate::description::{DType, Description, TensorSpec, MINIMUM_ALIGNMENT};
use crate::error::Error;
use crate::pool::{Pool, ThreadSync};
use crate::profile::{self, Profile};
use crate::step::StepFn;
use crate::tensor::Tensor;
use crate::weights::{WeightLoading, WeightSource, WeightStore};

/// The symbol prefix `tfjsc compile` uses unless `--symbol-prefix` says otherwise.
pub const DEFAULT_SYMBOL_PREFIX: &str = "tfjsc_model";

/// `const char *PREFIX_description(void)`.
pub type DescriptionFn = unsafe extern "C" fn() -> *const c_char;

/// `int32_t PREFIX_run(const void *const *weights, const void *const *inputs,
/// void *const *outputs, void *arena, const struct tfjsc_threads *threads)`.
pub type RunFn = unsafe extern "C" fn(
    weights: *const *const c_void,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut c_void,
    threads: *const ThreadSync,
) -> i32;

/// How to load a compiled model: where its weights are and how to hold them.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The prefix of the library's symbols (`--symbol-prefix` at compile time).
    pub symbol_prefix: String,
    /// Where the shards are; `None` uses the description's `weights_dir`.
    pub weights_dir: Option<PathBuf>,
    /// Map the shards (default) or copy them into private memory; see [`WeightLoading`].
    pub weights: WeightLoading,
    /// In a library of several kernel sets, run the one of this name (as `--cpu` names it,
    /// `x86-64-v3`) instead of the best the CPU supports; `None` lets the library choose.
    pub kernel_set: Option<String>,
}

impl LoadOptions {
    /// The defaults with the shards in `weights_dir` (`None`: the description's).
    pub fn with_weights_dir(weights_dir: Option<&Path>) -> LoadOptions {
        LoadOptions {
            weights_dir: weights_dir.map(Path::to_path_buf),
            ..LoadOptions::default()
        }
    }
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            symbol_prefix: DEFAULT_SYMBOL_PREFIX.to_string(),
            weights_dir: None,
            weights: WeightLoading::Mapped,
            kernel_set: None,
        }
    }
}

/// A compiled model ready to run: its code, its description, and its checked weights.
///
/// `Model` is `Send + Sync`; run it from several threads with one [`Context`] each.
pub struct Model {
    description: Description,
    weights_dir: PathBuf,
    weights: WeightStore,
    run: RunFn,
    /// `PREFIX_step`: checked runs (crate::checked) go through it, and profiles. `Err` says why
    /// the model has none, for a profile's error; a checked description without it is refused.
    step: Result<StepFn, String>,
    /// In a library of several kernel sets, the name of the one that runs: the one
    /// `PREFIX_run` chose for this CPU (`PREFIX_kernel_set`), or the one loaded by name.
    kernel_set: Option<String>,
    /// Declared last so the code is unloaded after everything else is dropped.
    _library: Option<Library>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Model")
            .field("model", &self.description.model)
            .field("weights_dir", &self.weights_dir)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Opens a compiled model library with the default symbol prefix (`tfjsc_model`).
    ///
    /// `weights_dir`: where the shards are; `None` uses the description's `weights_dir`.
    /// The library must be one written by `tfjsc compile`: opening a library runs its code.
    /// The shards are mapped ([`WeightLoading::Mapped`]): they must not be truncated or
    /// rewritten in place while the model is loaded.
    pub fn load(library: &Path, weights_dir: Option<&Path>) -> Result<Model, Error> {
        Model::load_with_prefix(library, DEFAULT_SYMBOL_PREFIX, weights_dir)
    }

    /// Opens a compiled model library whose symbols start with `prefix`.
    pub fn load_with_prefix(
        library: &Path,
        prefix: &str,
        weights_dir: Option<&Path>,
    ) -> Result<Model, Error> {
        let options = LoadOptions {
            symbol_prefix: prefix.to_string(),
            ..LoadOptions::with_weights_dir(weights_dir)
        };
        Model::load_with_options(library, &options)
    }

    /// Opens a compiled model library as `options` say.
    pub fn load_with_options(library: &Path, options: &LoadOptions) -> Result<Model, Error> {
        let mut prefix = options.symbol_prefix.clone();
        // SAFETY: opening a library runs its initialisers; a tfjsc-compiled model has none of its
        // own, and the caller chose this file as a compiled model (documented above).
        let handle = unsafe { Library::new(loadable_path(library)) }.map_err(|source| {
            Error::OpenLibrary {
                path: library.to_path_buf(),
                source,
            }
        })?;
        let missing = |symbol: String| {
            move |source| Error::MissingSymbol {
                path: library.to_path_buf(),
                symbol,
                source,
            }
        };
        let description_function = |prefix: &str| {
            let symbol = format!("{prefix}_description");
            // SAFETY: ABI v1 declares `PREFIX_description` as `const char *(void)`.
            unsafe { handle.get::<DescriptionFn>(symbol.as_str()) }
                .map(|symbol| *symbol)
                .map_err(missing(symbol))
        };
        if let Some(name) = &options.kernel_set {
            // A set's own entries, as the dispatching description lists them.
            let describe = description_function(&prefix)?;
            // SAFETY: the library's own description function returns a NUL-terminated string
            // in static storage (or NULL, refused).
            let description = unsafe { parse_description(describe()) }?;
            let sets = &description.kernel_sets;
            let set = sets.iter().find(|set| &set.name == name);
            prefix = set.map(|set| set.symbol_prefix.clone()).ok_or_else(|| {
                Error::UnknownKernelSet {
                    name: name.clone(),
                    available: sets.iter().map(|set| set.name.clone()).collect(),
                }
            })?;
        }
        let run_symbol = format!("{prefix}_run");
        let describe = description_function(&prefix)?;
        // SAFETY: ABI v1 declares `PREFIX_run` with exactly the signature of `RunFn`.
        let run: RunFn = unsafe { handle.get::<RunFn>(run_symbol.as_str()) }
            .map(|symbol| *symbol)
            .map_err(missing(run_symbol))?;
        // SAFETY: `describe` is the ABI description function of a library kept open below; it
        // returns a NUL-terminated string in static storage.
        let description = unsafe { describe() };
        // Libraries compiled before every one exported `PREFIX_step` have it only when checked:
        // its absence is an error only for a checked description (or when profiling).
        let step_symbol = format!("{prefix}_step");
        // SAFETY: docs/abi.md declares `PREFIX_step` as `StepFn`.
        let step = || unsafe { handle.get::<StepFn>(step_symbol.as_str()) }.map(|s| *s);
        let step = || step().map_err(missing(step_symbol.clone()));
        // SAFETY: `description` comes from the library's own description function.
        let mut model = unsafe { Model::from_parts(description, run, &step, options) }?;
        if !model.description.kernel_sets.is_empty() {
            let symbol = format!("{prefix}_kernel_set");
            // SAFETY: docs/abi.md declares `PREFIX_kernel_set` as `int32_t (void)`.
            let chosen = unsafe { handle.get::<unsafe extern "C" fn() -> i32>(symbol.as_str()) }
                .map(|symbol| *symbol)
                .map_err(missing(symbol))?;
            // SAFETY: the library's own function, taking nothing; it only asks the CPU.
            let index = unsafe { chosen() };
            let sets = &model.description.kernel_sets;
            let set = usize::try_from(index)
                .ok()
                .and_then(|index| sets.get(index));
            model.kernel_set = set.map(|set| set.name.clone());
        } else {
            model.kernel_set = options.kernel_set.clone();
        }
        model._library = Some(handle);
        Ok(model)
    }

    /// Wraps model code linked statically into this program.
    ///
    /// # Safety
    /// `description` must be null or a NUL-terminated string (it is copied; it need not outlive
    /// the call), and `run` must implement ABI v1 for that description.
    pub unsafe fn from_static(
        description: *const c_char,
        run: RunFn,
        weights_dir: Option<&Path>,
    ) -> Result<Model, Error> {
        let options = LoadOptions::with_weights_dir(weights_dir);
        // SAFETY: forwarded from this function's contract.
        unsafe { Model::from_static_with_options(description, run, &options) }
    }

    /// Wraps model code linked statically into this program, loading its weights as `options`
    /// say (`symbol_prefix` is not used; `kernel_set` is refused: the caller links the set it
    /// wants, by its own symbols).
    ///
    /// # Safety
    /// As [`Model::from_static`].
    pub unsafe fn from_static_with_options(
        description: *const c_char,
        run: RunFn,
        options: &LoadOptions,
    ) -> Result<Model, Error> {
        if let Some(name) = &options.kernel_set {
            return Err(Error::UnknownKernelSet {
                name: name.clone(),
                available: Vec::new(),
            });
        }
        let step = || {
            Err(Error::MissingStepFunction {
                what: "use Model::from_static_checked".to_string(),
            })
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { Model::from_parts(description, run, &step, options) }
    }

    /// Wraps statically linked model code with its step function (`PREFIX_step`). A model
    /// compiled with `--checked` then runs step by step with red zones verified after every
    /// kernel (docs/abi.md, "Checked mode"); any other runs normally. Either can be profiled
    /// ([`Context::profile`]).
    ///
    /// # Safety
    /// As [`Model::from_static`], and `step` must be the step function of the same code.
    pub unsafe fn from_static_checked(
        description: *const c_char,
        run: RunFn,
        step: StepFn,
        weights_dir: Option<&Path>,
    ) -> Result<Model, Error> {
        let options = LoadOptions::with_weights_dir(weights_dir);
        // SAFETY: forwarded from this function's contract.
        unsafe { Model::from_static_checked_with_options(description, run, step, &options) }
    }

    /// As [`Model::from_static_checked`], loading the weights as `options` say.
    ///
    /// # Safety
    /// As [`Model::from_static_checked`].
    pub unsafe fn from_static_checked_with_options(
        description: *const c_char,
        run: RunFn,
        step: StepFn,
        options: &LoadOptions,
    ) -> Result<Model, Error> {
        // SAFETY: forwarded from this function's contract.
        unsafe { Model::from_parts(description, run, &|| Ok(step), options) }
    }

    /// # Safety
    /// As [`Model::from_static`].
    unsafe fn from_parts(
        description: *const c_char,
        run: RunFn,
        step: &dyn Fn() -> Result<StepFn, Error>,
        options: &LoadOptions,
    ) -> Result<Model, Error> {
        // SAFETY: forwarded from this function's contract.
        let description = unsafe { parse_description(description) }?;
        if let Some(feature) = description
            .required_cpu_features
            .iter()
            .find(|f| !crate::cpu::has_feature(f))
        {
            return Err(Error::UnsupportedCpu {
                feature: feature.clone(),
            });
        }
        let weights_dir = options
            .weights_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&description.weights_dir));
        let weights = WeightStore::load(&description, &weights_dir, options.weights)?;
        let step = match step() {
            Ok(step) => Ok(step),
            Err(error) if description.checked.is_some() => return Err(error),
            Err(error) => Err(reason_without_step(error)),
        };
        Ok(Model {
            description,
            weights_dir,
            weights,
            run,
            step,
            kernel_set: None,
            _library: None,
        })
    }

    /// What the model expects and produces.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The kernels the code runs: in a library of several kernel sets, the name of the one chosen
    /// for this CPU or loaded by name (`x86-64-v4`); else the target the code was compiled for.
    pub fn kernel_set(&self) -> &str {
        self.kernel_set
            .as_deref()
            .unwrap_or(&self.description.target)
    }

    /// The directory the shards were read from.
    pub fn weights_dir(&self) -> &Path {
        &self.weights_dir
    }

    /// For each weight (description order): read in place from the mapping, or decoded at load.
    pub fn weight_sources(&self) -> &[WeightSource] {
        self.weights.sources()
    }

    /// A new execution context with its own zeroed arena.
    ///
    /// Fails only when the arena cannot be allocated (the description asks for too much).
    pub fn new_context(&self) -> Result<Context<'_>, Error> {
        Ok(Context {
            model: self,
            state: ExecutionState::new(&self.description)?,
        })
    }

    /// Ok when [`Context::profile`] can run, else the error it would give: the model was loaded
    /// without its step function (a library compiled by an older tfjsc, or code wrapped with
    /// [`Model::from_static`]). Running never needs it.
    pub fn can_profile(&self) -> Result<(), Error> {
        self.step_function().map(|_| ())
    }

    fn step_function(&self) -> Result<StepFn, Error> {
        self.step
            .clone()
            .map_err(|reason| Error::ProfileUnavailable { reason })
    }

    /// Runs the code on raw buffers after checking counts, nulls and alignment.
    ///
    /// # Safety
    /// Every non-null `inputs[i]` must be readable, and every non-null `outputs[i]` writable, for
    /// the byte size of the matching tensor in the description; outputs must not overlap inputs
    /// or each other.
    pub(crate) unsafe fn run_raw(
        &self,
        state: &mut ExecutionState,
        inputs: &[*const u8],
        outputs: &[*mut u8],
    ) -> Result<(), Error> {
        let description = &self.description;
        let execute = |state: &mut ExecutionState| {
            let weights = self.weights.pointers();
            if description.checked.is_some() {
                // Checked mode (crate::checked): the same pointers, one kernel at a time, red
                // zones verified after each. A checked model always has its step function.
                let step = self.step_function()?;
                // SAFETY: the pointer arrays are what `run` would be given (see below), and
                // `step` implements the description's checked section.
                return unsafe {
                    state.checked.run(
                        description,
                        step,
                        weights,
                        &state.input_pointers,
                        &state.output_pointers,
                        &mut state.arena,
                    )
                };
            }
            // SAFETY: `with_code_arguments` filled the pointer arrays with one entry per
            // input/output of the description, each valid for its tensor's byte size and aligned
            // to its element size (staged otherwise); the weight table was built from the same
            // description and lives as long as `self`; the arena has `arena.size` bytes at
            // `arena.alignment` (at least 64) and is exclusively ours.
            // With a pool, every thread runs the code on the same pointers, each its share of
            // every kernel's work (docs/abi.md, "Threads").
            let status = unsafe {
                let (inputs, outputs, arena) = (
                    state.input_pointers.as_ptr(),
                    state.output_pointers.as_ptr(),
                    state.arena.as_mut_ptr().cast(),
                );
                match &state.pool {
                    Some(pool) => pool.run(self.run, weights, inputs, outputs, arena),
                    None => (self.run)(weights, inputs, outputs, arena, &ThreadSync::single()),
                }
            };
            match status {
                0 => Ok(()),
                status => Err(Error::from_run_status(status, &description.steps)),
            }
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { self.with_code_arguments(state, inputs, outputs, execute) }
    }

    /// Runs the code `runs` times step by step, timing every step (crate::profile).
    ///
    /// # Safety
    /// As [`Model::run_raw`].
    unsafe fn profile_raw(
        &self,
        state: &mut ExecutionState,
        inputs: &[*const u8],
        outputs: &[*mut u8],
        runs: usize,
    ) -> Result<Profile, Error> {
        let step = self.step_function()?;
        let execute = |state: &mut ExecutionState| {
            // SAFETY: as for `run` in `run_raw`: the pointers are those `run` would be given,
            // and `step` is the step function of the same code.
            unsafe {
                profile::time_steps(
                    &self.description,
                    step,
                    self.weights.pointers(),
                    state.input_pointers.as_ptr(),
                    state.output_pointers.as_ptr(),
                    state.arena.as_mut_ptr().cast(),
                    runs,
                    state.pool.as_ref(),
                )
            }
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { self.with_code_arguments(state, inputs, outputs, execute) }
    }

    /// Checks counts, nulls and alignment, fills the state's pointer arrays (staging a buffer
    /// that is not aligned to its element size, or a bool input after checking its bytes), calls
    /// `execute`, and copies staged outputs back whatever it returned: the one place that turns
    /// caller buffers into the code's arguments.
    ///
    /// # Safety
    /// As [`Model::run_raw`].
    unsafe fn with_code_arguments<T>(
        &self,
        state: &mut ExecutionState,
        inputs: &[*const u8],
        outputs: &[*mut u8],
        execute: impl FnOnce(&mut ExecutionState) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let description = &self.description;
        check_count(description.inputs.len(), inputs.len(), true)?;
        check_count(description.outputs.len(), outputs.len(), false)?;

        let mut staged_inputs = Vec::new();
        state.input_pointers.clear();
        for (spec, &source) in description.inputs.iter().zip(inputs) {
            let pointer = usable_pointer(spec, source.cast_mut(), "input")?;
            if spec.dtype == DType::Bool && spec.byte_size() > 0 {
                // SAFETY: `usable_pointer` refused a null `source` for a non-empty tensor, and
                // `source` is readable for the byte size by this function's contract.
                let bytes = unsafe { std::slice::from_raw_parts(source, spec.byte_size()) };
                check_bools(spec, bytes)?;
            }
            if pointer.is_null() {
                let mut buffer = AlignedBuffer::zeroed(spec.byte_size(), MINIMUM_ALIGNMENT)?;
                // SAFETY: `source` is readable for the byte size by this function's contract, and
                // the fresh buffer cannot overlap it.
                unsafe { std::ptr::copy_nonoverlapping(source, buffer.as_mut_ptr(), buffer.len()) };
                state.input_pointers.push(buffer.as_ptr().cast());
                staged_inputs.push(buffer);
            } else {
                state.input_pointers.push(pointer.cast_const().cast());
            }
        }
        let mut staged_outputs = Vec::new();
        state.output_pointers.clear();
        for (index, (spec, &pointer)) in description.outputs.iter().zip(outputs).enumerate() {
            let pointer = usable_pointer(spec, pointer, "output")?;
            if pointer.is_null() {
                let mut buffer = AlignedBuffer::zeroed(spec.byte_size(), MINIMUM_ALIGNMENT)?;
                state.output_pointers.push(buffer.as_mut_ptr().cast());
                staged_outputs.push((index, buffer));
            } else {
                state.output_pointers.push(pointer.cast());
            }
        }

        let result = execute(state);
        for (index, buffer) in staged_outputs {
            // SAFETY: `outputs[index]` is writable for the byte size (contract) and distinct
            // from the staging buffer.
            unsafe { std::ptr::copy_nonoverlapping(buffer.as_ptr(), outputs[index], buffer.len()) };
        }
        result
    }
}

/// Why a model has no step function, for the error a profile of it gives.
fn reason_without_step(error: Error) -> String {
    match error {
        Error::MissingSymbol { path, symbol, .. } => format!(
            "{} does not export `{symbol}` (a library compiled by a tfjsc that exported it only \
             with --checked): recompile it",
            path.display()
        ),
        Error::MissingStepFunction { .. } => "it was wrapped without its step function \
             (wrap it with Model::from_static_checked, which runs unchecked models normally)"
            .to_string(),
        other => other.to_string(),
    }
}

/// `library` as the loader should see it: a bare file name would make `dlopen` search the system
/// library path instead of the current directory, so it becomes `./name`.
fn loadable_path(library: &Path) -> PathBuf {
    let mut components = library.components();
    match (components.next(), components.next()) {
        (Some(std::path::Component::Normal(_)), None) => Path::new(".").join(library),
        _ => library.to_path_buf(),
    }
}

/// The compiled code relies on bools being 0 or 1 (logical ops work bitwise, selects test
/// non-zero): any other byte would give answers that depend on the op, so it is refused here, at
/// the boundary every run goes through.
fn check_bools(spec: &TensorSpec, bytes: &[u8]) -> Result<(), Error> {
    match bytes.iter().position(|&byte| byte > 1) {
        None => Ok(()),
        Some(index) => Err(Error::InvalidBool {
            name: spec.name.clone(),
            index,
            value: bytes[index],
        }),
    }
}

/// Checks a tensor count against the description.
fn check_count(expected: usize, found: usize, is_input: bool) -> Result<(), Error> {
    match (expected == found, is_input) {
        (true, _) => Ok(()),
        (false, true) => Err(Error::InputCount { expected, found }),
        (false, false) => Err(Error::OutputCount { expected, found }),
    }
}

/// The pointer to hand to the code, or null when the buffer must be staged for alignment.
fn usable_pointer(spec: &TensorSpec, pointer: *mut u8, kind: &str) -> Result<*mut u8, Error> {
    let byte_size = spec.byte_size();
    if pointer.is_null() {
        if byte_size == 0 {
            // Nothing will be read or written; any aligned pointer will do.
            return Ok(MINIMUM_ALIGNMENT as *mut u8);
        }
        return Err(Error::NullPointer {
            what: format!("{kind} `{}`", spec.name),
        });
    }
    if (pointer as usize) & (spec.dtype.size_in_bytes() - 1) != 0 {
        return Ok(std::ptr::null_mut());
    }
    Ok(pointer)
}

/// The per-context mutable state: the arena and scratch pointer arrays.
pub(crate) struct ExecutionState {
    arena: AlignedBuffer,
    input_pointers: Vec<*const c_void>,
    output_pointers: Vec<*mut c_void>,
    /// Checked mode's guarded copies (empty unless the model is checked).
    checked: CheckedState,
    /// The worker threads, when runs use more than one.
    pool: Option<Pool>,
}

// SAFETY: the pointer vectors are scratch space rebuilt at the start of every run and never
// dereferenced outside `run_raw`; the arena is an owned buffer.
unsafe impl Send for ExecutionState {}

impl ExecutionState {
    /// See [`Context::set_threads`]; `checked` models stay on one thread.
    pub(crate) fn set_threads(&mut self, threads: usize, checked: bool) -> Result<(), Error> {
        if threads == 0 {
            return Err(Error::Threads {
                threads,
                reason: "at least one is needed".to_string(),
            });
        }
        if self.threads() == threads {
            return Ok(());
        }
        self.pool = if threads == 1 || checked {
            None
        } else {
            Some(Pool::new(threads).map_err(|source| Error::Threads {
                threads,
                reason: source.to_string(),
            })?)
        };
        Ok(())
    }

    pub(crate) fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, Pool::threads)
    }

    pub(crate) fn new(description: &Description) -> Result<ExecutionState, Error> {
        let alignment = description.arena.alignment.max(MINIMUM_ALIGNMENT);
        Ok(ExecutionState {
            arena: AlignedBuffer::zeroed(description.arena.size, alignment)?,
            input_pointers: Vec::with_capacity(description.inputs.len()),
            output_pointers: Vec::with_capacity(description.outputs.len()),
            checked: CheckedState::default(),
            pool: None,
        })
    }
}

/// One execution context: an arena of its own, borrowed model. Runs are sequential per context;
/// use one context per thread.
pub struct Context<'model> {
    model: &'model Model,
    state: ExecutionState,
}

impl Context<'_> {
    /// Runs on `threads` threads from now on: this one and `threads - 1` workers the context
    /// owns (1, the default, runs on the calling thread alone). Results are identical bit for
    /// bit whatever the count: each kernel's work is split statically, every output element is
    /// computed by one thread in the same order. Checked models run on one thread.
    pub fn set_threads(&mut self, threads: usize) -> Result<(), Error> {
        self.state
            .set_threads(threads, self.model.description.checked.is_some())
    }

    /// Threads per run (see [`Context::set_threads`]).
    pub fn threads(&self) -> usize {
        self.state.threads()
    }

    /// The model this context runs.
    pub fn model(&self) -> &Model {
        self.model
    }

    /// Runs the model on raw native-endian buffers, one per input and output in description
    /// order, each exactly its tensor's byte size.
    pub fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), Error> {
        let (input_pointers, output_pointers) = self.pointers_of(inputs, outputs)?;
        // SAFETY: `pointers_of` checked that the slices have exactly the described sizes, and
        // Rust's borrow rules keep the mutable output slices disjoint from each other and from the
        // inputs.
        unsafe {
            self.model
                .run_raw(&mut self.state, &input_pointers, &output_pointers)
        }
    }

    /// Runs the model `runs` times kernel by kernel through its step function, as
    /// [`Context::run`] would run it (same buffers, same outputs), and returns the time of every
    /// step. Fails like `run`, and with [`Error::ProfileUnavailable`] when the model was loaded
    /// without its step function ([`Model::can_profile`]).
    pub fn profile(
        &mut self,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        runs: usize,
    ) -> Result<Profile, Error> {
        let (input_pointers, output_pointers) = self.pointers_of(inputs, outputs)?;
        // SAFETY: as in `run`.
        unsafe {
            self.model
                .profile_raw(&mut self.state, &input_pointers, &output_pointers, runs)
        }
    }

    /// The buffers' pointers, after checking their counts and byte sizes against the description.
    fn pointers_of(
        &self,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> Result<(Vec<*const u8>, Vec<*mut u8>), Error> {
        let description = &self.model.description;
        check_count(description.inputs.len(), inputs.len(), true)?;
        check_count(description.outputs.len(), outputs.len(), false)?;
        for (spec, input) in description.inputs.iter().zip(inputs) {
            if input.len() != spec.byte_size() {
                return Err(Error::InputByteSize {
                    name: spec.name.clone(),
                    expected: spec.byte_size(),
                    found: input.len(),
                });
            }
        }
        for (spec, output) in description.outputs.iter().zip(outputs.iter()) {
            if output.len() != spec.byte_size() {
                return Err(Error::OutputByteSize {
                    name: spec.name.clone(),
                    expected: spec.byte_size(),
                    found: output.len(),
                });
            }
        }
        let input_pointers = inputs.iter().map(|input| input.as_ptr()).collect();
        let output_pointers = outputs
            .iter_mut()
            .map(|output| output.as_mut_ptr())
            .collect();
        Ok((input_pointers, output_pointers))
    }

    /// Runs the model on tensors, checking dtype and shape of each input; returns the outputs.
    pub fn run_tensors(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        self.with_tensors(inputs, Context::run)
            .map(|(outputs, ())| outputs)
    }

    /// [`Context::profile`] on tensors, checking dtype and shape of each input.
    pub fn profile_tensors(&mut self, inputs: &[Tensor], runs: usize) -> Result<Profile, Error> {
        self.with_tensors(inputs, |context, inputs, outputs| {
            context.profile(inputs, outputs, runs)
        })
        .map(|(_, profile)| profile)
    }

    /// Checks dtype and shape of each input, makes the output tensors, and hands `execute` their
    /// bytes.
    fn with_tensors<T>(
        &mut self,
        inputs: &[Tensor],
        execute: impl FnOnce(&mut Self, &[&[u8]], &mut [&mut [u8]]) -> Result<T, Error>,
    ) -> Result<(Vec<Tensor>, T), Error> {
        let description = &self.model.description;
        check_count(description.inputs.len(), inputs.len(), true)?;
        for (spec, input) in description.inputs.iter().zip(inputs) {
            if input.dtype != spec.dtype {
                return Err(Error::InputDType {
                    name: spec.name.clone(),
                    expected: spec.dtype,
                    found: input.dtype,
                });
            }
            if input.shape != spec.shape {
                return Err(Error::InputShape {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    found: input.shape.clone(),
                });
            }
        }
        let mut outputs = description
            .outputs
            .iter()
            .map(|spec| Tensor::zeros(spec.dtype, &spec.shape))
            .collect::<Result<Vec<_>, _>>()?;
        let input_bytes: Vec<&[u8]> = inputs.iter().map(|input| input.data.as_slice()).collect();
        let mut output_bytes: Vec<&mut [u8]> = outputs
            .iter_mut()
            .map(|output| output.data.as_mut_slice())
            .collect();
        let result = execute(self, &input_bytes, &mut output_bytes)?;
        Ok((outputs, result))
    }
}

/// C API support: a context that does not borrow its model (the C caller keeps it alive).
pub(crate) fn detached_state(model: &Model) -> Result<ExecutionState, Error> {
    ExecutionState::new(&model.description)
}

/// The description a library's `PREFIX_description` returned, parsed.
///
/// # Safety
/// `description` is NULL (refused) or a NUL-terminated string.
unsafe fn parse_description(description: *const c_char) -> Result<Description, Error> {
    if description.is_null() {
        return Err(Error::NullDescription);
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let text = unsafe { CStr::from_ptr(description) };
    Description::parse(text.to_str().map_err(|_| Error::DescriptionNotUtf8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn bare_library_names_are_looked_up_in_the_current_directory() {
        assert_eq!(
            loadable_path(Path::new("libmodel.so")),
            Path::new("./libmodel.so")
        );
        assert_eq!(
            loadable_path(Path::new("out/libmodel.so")),
            Path::new("out/libmodel.so")
        );
        assert_eq!(
            loadable_path(Path::new("/lib/libmodel.so")),
            Path::new("/lib/libmodel.so")
        );
    }

    #[test]
    fn model_is_send_and_sync_and_context_is_send() {
        assert_send_sync::<Model>();
        assert_send::<Context<'_>>();
    }
}
