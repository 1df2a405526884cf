//! The C ABI of the runtime, declared in `include/tfjsc_runtime.h`.
//!
//! C and C++ programs open and run compiled models through these functions. Each one checks its
//! pointers for null, reports failures as a status plus a message in the caller's buffer, and
//! catches panics: nothing here may ever unwind into C or trust a pointer it has not checked.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use crate::checked::StepFn;
use crate::description::{DType, TensorSpec};
use crate::error::Error;
use crate::model::{detached_state, ExecutionState, LoadOptions, Model, RunFn};
use crate::weights::WeightLoading;

/// `tfjsc_dtype` code for float32.
pub const TFJSC_DTYPE_FLOAT32: i32 = 1;
/// `tfjsc_dtype` code for int32.
pub const TFJSC_DTYPE_INT32: i32 = 2;
/// `tfjsc_dtype` code for bool.
pub const TFJSC_DTYPE_BOOL: i32 = 3;
/// Status returned by `tfjsc_context_run` on any failure.
pub const TFJSC_ERROR: i32 = -1;
/// Load flag: read the weight shards into private memory instead of mapping them
/// ([`WeightLoading::Copied`]).
pub const TFJSC_LOAD_COPY_WEIGHTS: u32 = 1;
/// Every load flag this runtime knows.
const KNOWN_LOAD_FLAGS: u32 = TFJSC_LOAD_COPY_WEIGHTS;

/// An open model as seen from C (`tfjsc_model`): the model plus NUL-terminated names.
pub struct CModel {
    model: Model,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
}

/// An execution context as seen from C (`tfjsc_context`). Must not outlive its model.
pub struct CContext {
    model: *const CModel,
    state: ExecutionState,
}

/// Copies `message` (truncated on a character boundary) and a NUL into the caller's buffer.
fn write_error(error: *mut c_char, error_len: usize, message: &str) {
    if error.is_null() || error_len == 0 {
        return;
    }
    let mut length = message.len().min(error_len - 1);
    while !message.is_char_boundary(length) {
        length -= 1;
    }
    // SAFETY: the caller promises `error` is writable for `error_len` bytes; we write
    // `length + 1 <= error_len` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), error.cast::<u8>(), length);
        *error.add(length) = 0;
    }
}

/// Runs `body`, turning an error or a panic into `failure` plus a message in the buffer.
fn guarded<T>(
    error: *mut c_char,
    error_len: usize,
    failure: T,
    body: impl FnOnce() -> Result<T, Error>,
) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => {
            write_error(error, error_len, "");
            value
        }
        Ok(Err(problem)) => {
            write_error(error, error_len, &problem.to_string());
            failure
        }
        Err(_) => {
            write_error(
                error,
                error_len,
                "internal error: the tfjsc runtime panicked",
            );
            failure
        }
    }
}

/// Reads a required C string argument.
///
/// # Safety
/// `text` must be null or NUL-terminated.
unsafe fn string_argument<'text>(text: *const c_char, what: &str) -> Result<&'text CStr, Error> {
    if text.is_null() {
        return Err(Error::NullPointer {
            what: what.to_string(),
        });
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    Ok(unsafe { CStr::from_ptr(text) })
}

/// Turns an optional C string into a path.
///
/// # Safety
/// `text` must be null or NUL-terminated.
unsafe fn optional_path(text: *const c_char) -> Result<Option<PathBuf>, Error> {
    if text.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    let text = unsafe { string_argument(text, "path") }?;
    Ok(Some(path_from(text)?))
}

fn path_from(text: &CStr) -> Result<PathBuf, Error> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(text.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        text.to_str()
            .map(PathBuf::from)
            .map_err(|_| Error::NotUtf8 {
                what: "path".to_string(),
            })
    }
}

fn names_of(tensors: &[TensorSpec]) -> Result<Vec<CString>, Error> {
    tensors
        .iter()
        .map(|tensor| {
            CString::new(tensor.name.as_str()).map_err(|_| {
                Error::InvalidDescription(format!("tensor name {:?} contains NUL", tensor.name))
            })
        })
        .collect()
}

fn into_handle(model: Model) -> Result<*mut CModel, Error> {
    let input_names = names_of(&model.description().inputs)?;
    let output_names = names_of(&model.description().outputs)?;
    Ok(Box::into_raw(Box::new(CModel {
        model,
        input_names,
        output_names,
    })))
}

/// Opens a compiled model library with the default symbol prefix (`tfjsc_model`, as
/// [`crate::DEFAULT_SYMBOL_PREFIX`]). Returns NULL on failure.
///
/// # Safety
/// `library` must be NUL-terminated, `weights_dir` NULL or NUL-terminated, and `error` NULL or
/// writable for `error_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_model_open(
    library: *const c_char,
    weights_dir: *const c_char,
    error: *mut c_char,
    error_len: usize,
) -> *mut CModel {
    // SAFETY: the default prefix is a valid NUL-terminated string; the rest is forwarded.
    unsafe {
        tfjsc_model_open_with_prefix(
            library,
            c"tfjsc_model".as_ptr(),
            weights_dir,
            error,
            error_len,
        )
    }
}

/// Opens a compiled model library whose symbols start with `prefix`. Returns NULL on failure.
///
/// # Safety
/// As [`tfjsc_model_open`], and `prefix` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_model_open_with_prefix(
    library: *const c_char,
    prefix: *const c_char,
    weights_dir: *const c_char,
    error: *mut c_char,
    error_len: usize,
) -> *mut CModel {
    // SAFETY: forwarded contract; no flags.
    unsafe { tfjsc_model_open_ex(library, prefix, weights_dir, 0, error, error_len) }
}

/// Load options from C: the weights directory and the `TFJSC_LOAD_*` flags.
///
/// # Safety
/// `weights_dir` must be NULL or NUL-terminated.
unsafe fn load_options(weights_dir: *const c_char, flags: u32) -> Result<LoadOptions, Error> {
    if flags & !KNOWN_LOAD_FLAGS != 0 {
        return Err(Error::UnknownLoadFlags {
            flags: flags & !KNOWN_LOAD_FLAGS,
        });
    }
    Ok(LoadOptions {
        // SAFETY: forwarded contract.
        weights_dir: unsafe { optional_path(weights_dir)? },
        weights: if flags & TFJSC_LOAD_COPY_WEIGHTS != 0 {
            WeightLoading::Copied
        } else {
            WeightLoading::Mapped
        },
        ..LoadOptions::default()
    })
}

/// Opens a compiled model library with load flags (`TFJSC_LOAD_*`). `prefix` NULL means the
/// default prefix. Returns NULL on failure.
///
/// # Safety
/// As [`tfjsc_model_open`]; `prefix` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_model_open_ex(
    library: *const c_char,
    prefix: *const c_char,
    weights_dir: *const c_char,
    flags: u32,
    error: *mut c_char,
    error_len: usize,
) -> *mut CModel {
    guarded(error, error_len, std::ptr::null_mut(), || {
        // SAFETY: the strings are NULL or NUL-terminated by this function's contract.
        let (library, mut options) = unsafe {
            (
                string_argument(library, "library path")?,
                load_options(weights_dir, flags)?,
            )
        };
        if !prefix.is_null() {
            // SAFETY: non-null and NUL-terminated by this function's contract.
            let prefix = unsafe { CStr::from_ptr(prefix) };
            options.symbol_prefix = prefix
                .to_str()
                .map_err(|_| Error::NotUtf8 {
                    what: "symbol prefix".to_string(),
                })?
                .to_string();
        }
        let model = Model::load_with_options(&path_from(library)?, &options)?;
        into_handle(model)
    })
}

/// Wraps statically linked model code: `description` is the JSON its `PREFIX_description()`
/// returns, `run` its `PREFIX_run`. Returns NULL on failure.
///
/// # Safety
/// `description` must be NUL-terminated, `run` must implement ABI v1 for it, `weights_dir` NULL or
/// NUL-terminated, `error` NULL or writable for `error_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_model_open_static(
    description: *const c_char,
    run: Option<RunFn>,
    weights_dir: *const c_char,
    error: *mut c_char,
    error_len: usize,
) -> *mut CModel {
    // SAFETY: forwarded contract; no flags.
    unsafe { tfjsc_model_open_static_ex(description, run, weights_dir, 0, error, error_len) }
}

/// As [`tfjsc_model_open_static`], with load flags (`TFJSC_LOAD_*`).
///
/// # Safety
/// As [`tfjsc_model_open_static`].
#[no_mangle]
pub unsafe extern "C" fn tfjsc_model_open_static_ex(
    description: *const c_char,
    run: Option<RunFn>,
    weights_dir: *const c_char,
    flags: u32,
    error: *mut c_char,
    error_len: usize,
) -> *mut CModel {
    guarded(error, error_len, std::ptr::null_mut(), || {
        // SAFETY: forwarded contract.
        unsafe { open_static(description, run, None, weights_dir, flags) }
    })
}

/// Wraps statically linked model code compiled with `--checked`: as
/// [`tfjsc_model_open_static_ex`], plus its `PREFIX_step`. Runs then go kernel by kernel with red
/// zones verified (docs/abi.md, "Checked mode"). Returns NULL on failure.
///
/// # Safety
/// As [`tfjsc_model_open_static`], and `step` must implement the description's checked section.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_model_open_static_checked(
    description: *const c_char,
    run: Option<RunFn>,
    step: Option<StepFn>,
    weights_dir: *const c_char,
    flags: u32,
    error: *mut c_char,
    error_len: usize,
) -> *mut CModel {
    guarded(error, error_len, std::ptr::null_mut(), || {
        let step = step.ok_or_else(|| Error::NullPointer {
            what: "step function".to_string(),
        })?;
        // SAFETY: forwarded contract.
        unsafe { open_static(description, run, Some(step), weights_dir, flags) }
    })
}

/// The body of the `tfjsc_model_open_static*` functions: `step` is `Some` for checked code.
///
/// # Safety
/// As [`tfjsc_model_open_static_checked`].
unsafe fn open_static(
    description: *const c_char,
    run: Option<RunFn>,
    step: Option<StepFn>,
    weights_dir: *const c_char,
    flags: u32,
) -> Result<*mut CModel, Error> {
    let run = run.ok_or_else(|| Error::NullPointer {
        what: "run function".to_string(),
    })?;
    // SAFETY: `weights_dir` is NULL or NUL-terminated by the caller's contract.
    let options = unsafe { load_options(weights_dir, flags)? };
    // SAFETY: `description`, `run` and `step` satisfy `from_static`'s and
    // `from_static_checked`'s contracts by the caller's (a null description is an error).
    let model = unsafe {
        match step {
            Some(step) => Model::from_static_checked_with_options(description, run, step, &options),
            None => Model::from_static_with_options(description, run, &options),
        }
    }?;
    into_handle(model)
}

/// Closes a model opened by one of the `tfjsc_model_open*` functions. NULL is ignored.
///
/// # Safety
/// `model` must be NULL or a handle not yet closed, with no context still using it.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_model_close(model: *mut CModel) {
    if model.is_null() {
        return;
    }
    // SAFETY: the handle came from `Box::into_raw` in `into_handle` and is closed only once.
    let model = unsafe { Box::from_raw(model) };
    // Dropping unmaps the shards and unloads the library; never let a panic escape.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(model)));
}

/// Looks up tensor `index` of a model handle, or `None` for a null handle or bad index.
///
/// # Safety
/// `model` must be NULL or a live handle.
unsafe fn tensor<'model>(
    model: *const CModel,
    index: usize,
    is_input: bool,
) -> Option<(&'model TensorSpec, &'model CStr)> {
    // SAFETY: NULL or a live handle by the caller's contract.
    let model = unsafe { model.as_ref() }?;
    let description = model.model.description();
    if is_input {
        Some((
            description.inputs.get(index)?,
            model.input_names.get(index)?,
        ))
    } else {
        Some((
            description.outputs.get(index)?,
            model.output_names.get(index)?,
        ))
    }
}

fn dtype_code(dtype: DType) -> i32 {
    match dtype {
        DType::Float32 => TFJSC_DTYPE_FLOAT32,
        DType::Int32 => TFJSC_DTYPE_INT32,
        DType::Bool => TFJSC_DTYPE_BOOL,
    }
}

/// Defines the accessor functions for inputs or outputs.
macro_rules! tensor_accessors {
    ($is_input:expr, $count:ident, $name:ident, $dtype:ident, $rank:ident, $dims:ident, $bytes:ident) => {
        /// Number of tensors (0 for a NULL model).
        ///
        /// # Safety
        /// `model` must be NULL or a live handle.
        #[no_mangle]
        pub unsafe extern "C" fn $count(model: *const CModel) -> usize {
            // SAFETY: NULL or a live handle by this function's contract.
            let Some(model) = (unsafe { model.as_ref() }) else {
                return 0;
            };
            let description = model.model.description();
            if $is_input {
                description.inputs.len()
            } else {
                description.outputs.len()
            }
        }

        /// NUL-terminated name of tensor `index` (valid until the model is closed), or NULL.
        ///
        /// # Safety
        /// `model` must be NULL or a live handle.
        #[no_mangle]
        pub unsafe extern "C" fn $name(model: *const CModel, index: usize) -> *const c_char {
            // SAFETY: forwarded contract.
            unsafe { tensor(model, index, $is_input) }
                .map_or(std::ptr::null(), |(_, name)| name.as_ptr())
        }

        /// `TFJSC_DTYPE_*` code of tensor `index`, or 0 for a NULL model or bad index.
        ///
        /// # Safety
        /// `model` must be NULL or a live handle.
        #[no_mangle]
        pub unsafe extern "C" fn $dtype(model: *const CModel, index: usize) -> i32 {
            // SAFETY: forwarded contract.
            unsafe { tensor(model, index, $is_input) }.map_or(0, |(spec, _)| dtype_code(spec.dtype))
        }

        /// Rank of tensor `index`, or 0 for a NULL model or bad index.
        ///
        /// # Safety
        /// `model` must be NULL or a live handle.
        #[no_mangle]
        pub unsafe extern "C" fn $rank(model: *const CModel, index: usize) -> usize {
            // SAFETY: forwarded contract.
            unsafe { tensor(model, index, $is_input) }.map_or(0, |(spec, _)| spec.shape.len())
        }

        /// The `rank` dimensions of tensor `index` (valid until the model is closed), or NULL.
        ///
        /// # Safety
        /// `model` must be NULL or a live handle.
        #[no_mangle]
        pub unsafe extern "C" fn $dims(model: *const CModel, index: usize) -> *const usize {
            // SAFETY: forwarded contract.
            unsafe { tensor(model, index, $is_input) }
                .map_or(std::ptr::null(), |(spec, _)| spec.shape.as_ptr())
        }

        /// Dense byte size of tensor `index`, or 0 for a NULL model or bad index.
        ///
        /// # Safety
        /// `model` must be NULL or a live handle.
        #[no_mangle]
        pub unsafe extern "C" fn $bytes(model: *const CModel, index: usize) -> usize {
            // SAFETY: forwarded contract.
            unsafe { tensor(model, index, $is_input) }.map_or(0, |(spec, _)| spec.byte_size())
        }
    };
}

tensor_accessors!(
    true,
    tfjsc_model_input_count,
    tfjsc_model_input_name,
    tfjsc_model_input_dtype,
    tfjsc_model_input_rank,
    tfjsc_model_input_dims,
    tfjsc_model_input_byte_size
);
tensor_accessors!(
    false,
    tfjsc_model_output_count,
    tfjsc_model_output_name,
    tfjsc_model_output_dtype,
    tfjsc_model_output_rank,
    tfjsc_model_output_dims,
    tfjsc_model_output_byte_size
);

/// Creates an execution context (one arena) for `model`. Returns NULL on failure.
///
/// # Safety
/// `model` must be NULL or a live handle that outlives the context; `error` NULL or writable for
/// `error_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_context_new(
    model: *const CModel,
    error: *mut c_char,
    error_len: usize,
) -> *mut CContext {
    guarded(error, error_len, std::ptr::null_mut(), || {
        // SAFETY: NULL or a live handle by this function's contract.
        let handle = unsafe { model.as_ref() }.ok_or_else(|| Error::NullPointer {
            what: "model".to_string(),
        })?;
        let state = detached_state(&handle.model)?;
        Ok(Box::into_raw(Box::new(CContext { model, state })))
    })
}

/// Frees a context. NULL is ignored.
///
/// # Safety
/// `context` must be NULL or a context not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_context_free(context: *mut CContext) {
    if context.is_null() {
        return;
    }
    // SAFETY: the pointer came from `Box::into_raw` in `tfjsc_context_new`, freed only once.
    let context = unsafe { Box::from_raw(context) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(context)));
}

/// The context and its model.
///
/// # Safety
/// `context` must be NULL or a live context, not in use by another thread, whose model is still
/// open (it outlives its contexts by `tfjsc_context_new`'s contract).
unsafe fn context_and_model<'a>(
    context: *mut CContext,
) -> Result<(&'a mut CContext, &'a Model), Error> {
    // SAFETY: NULL or a live, exclusively used context (contract).
    let context = unsafe { context.as_mut() }.ok_or_else(|| Error::NullPointer {
        what: "context".to_string(),
    })?;
    // SAFETY: the context's model is open (contract).
    let model = unsafe { &(*context.model).model };
    Ok((context, model))
}

/// Runs the context's later runs on `threads` threads (the caller's and `threads - 1` workers
/// the context owns; 1 is the default). Results are bit-identical whatever the count. Returns 0,
/// or `TFJSC_ERROR` with a message (0 threads, or the workers could not start).
///
/// # Safety
/// `context` must be NULL or a live context whose model is still open, not in use by another
/// thread; `error` NULL or writable for `error_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_context_set_threads(
    context: *mut CContext,
    threads: usize,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    guarded(error, error_len, TFJSC_ERROR, || {
        // SAFETY: this function's contract is `context_and_model`'s.
        let (context, model) = unsafe { context_and_model(context) }?;
        context
            .state
            .set_threads(threads, model.description().checked.is_some())?;
        Ok(0)
    })
}

/// Runs the model once. `inputs[i]` / `outputs[i]`: one buffer per input / output in
/// description order, each of its tensor's byte size. Returns 0, or `TFJSC_ERROR` with a message.
///
/// # Safety
/// `context` must be NULL or a live context whose model is still open; `inputs` and `outputs`
/// NULL or arrays of the model's input and output counts whose buffers have the described byte
/// sizes, outputs not overlapping anything else; `error` NULL or writable for `error_len` bytes.
/// A context must not be used by two threads at once.
#[no_mangle]
pub unsafe extern "C" fn tfjsc_context_run(
    context: *mut CContext,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    error: *mut c_char,
    error_len: usize,
) -> i32 {
    guarded(error, error_len, TFJSC_ERROR, || {
        // SAFETY: this function's contract is `context_and_model`'s.
        let (context, model) = unsafe { context_and_model(context) }?;
        let description = model.description();
        // SAFETY: `inputs` is NULL or an array of the input count (contract).
        let input_pointers = unsafe { pointer_array(inputs, description.inputs.len(), "inputs") }?;
        // SAFETY: `outputs` is NULL or an array of the output count (contract).
        let output_pointers =
            unsafe { pointer_array(outputs.cast(), description.outputs.len(), "outputs") }?;
        let input_pointers: Vec<*const u8> = input_pointers
            .iter()
            .map(|&pointer| pointer.cast())
            .collect();
        let output_pointers: Vec<*mut u8> = output_pointers
            .iter()
            .map(|&pointer| pointer.cast_mut().cast())
            .collect();
        // SAFETY: each buffer has its described byte size and outputs overlap nothing (contract);
        // `run_raw` checks counts, nulls and alignment itself.
        unsafe { model.run_raw(&mut context.state, &input_pointers, &output_pointers) }?;
        Ok(0)
    })
}

/// Views a C array of `count` pointers; NULL is accepted only for `count == 0`.
///
/// # Safety
/// `array` must be NULL or readable for `count` pointers.
unsafe fn pointer_array<'array>(
    array: *const *const c_void,
    count: usize,
    what: &str,
) -> Result<&'array [*const c_void], Error> {
    if count == 0 {
        return Ok(&[]);
    }
    if array.is_null() {
        return Err(Error::NullPointer {
            what: format!("{what} array"),
        });
    }
    // SAFETY: non-null and readable for `count` pointers by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(array, count) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_truncated_on_character_boundaries() {
        let mut buffer = [1 as c_char; 5];
        write_error(buffer.as_mut_ptr(), buffer.len(), "abcé");
        // "abc" + 2-byte "é" would need 6 bytes with the NUL; only "abc" fits.
        // SAFETY: the buffer was NUL-terminated by `write_error`.
        let text = unsafe { CStr::from_ptr(buffer.as_ptr()) };
        assert_eq!(text.to_str().unwrap(), "abc");
    }

    #[test]
    fn null_arguments_are_errors_not_crashes() {
        let mut buffer = [0 as c_char; 128];
        // SAFETY: all pointers are NULL or valid.
        unsafe {
            let model = tfjsc_model_open(
                std::ptr::null(),
                std::ptr::null(),
                buffer.as_mut_ptr(),
                buffer.len(),
            );
            assert!(model.is_null());
            let text = CStr::from_ptr(buffer.as_ptr()).to_str().unwrap();
            assert!(text.contains("library path"), "{text}");
            assert_eq!(tfjsc_model_input_count(std::ptr::null()), 0);
            assert!(tfjsc_model_output_name(std::ptr::null(), 0).is_null());
            let status = tfjsc_context_run(
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
                buffer.as_mut_ptr(),
                buffer.len(),
            );
            assert_eq!(status, TFJSC_ERROR);
            tfjsc_model_close(std::ptr::null_mut());
            tfjsc_context_free(std::ptr::null_mut());
        }
    }
}
