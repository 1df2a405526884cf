/* tfjsc_runtime.h — C API of the tfjsc runtime (runs models compiled by `tfjsc compile`).
 *
 * Link against libtfjsc_runtime.a (with -lpthread -ldl -lm) or libtfjsc_runtime.so.
 *
 * Errors: functions taking `char *error, size_t error_len` write a NUL-terminated message there
 * (truncated to fit; an empty string on success). `error` may be NULL.
 *
 * Threads: a model may be shared by many threads; a context must be used by one thread at a time.
 * Create one context per thread. Close contexts before their model.
 */
#ifndef TFJSC_RUNTIME_H
#define TFJSC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An open compiled model: code, description and checked, mapped weights. */
typedef struct tfjsc_model tfjsc_model;
/* One execution context: an arena of its own. */
typedef struct tfjsc_context tfjsc_context;

/* Element types of inputs and outputs. 0 means "no such tensor". */
#define TFJSC_DTYPE_FLOAT32 1
#define TFJSC_DTYPE_INT32 2
#define TFJSC_DTYPE_BOOL 3 /* one byte, 0 or 1 */

/* Returned by tfjsc_context_run on failure. */
#define TFJSC_ERROR (-1)

/* Load flags (tfjsc_model_open_ex, tfjsc_model_open_static_ex).
 *
 * WEIGHT SHARDS ARE MEMORY-MAPPED BY DEFAULT. While a model is open, its shard files must not be
 * truncated or rewritten in place: a truncated shard (`truncate`, or `cp new old`, which
 * truncates before writing) kills the process with SIGBUS at the next run, and a shard
 * overwritten in place silently changes results (its CRC-32 is checked only when the model is
 * opened). Replacing a shard by renaming a new file over it is safe: the old file stays mapped.
 * A host that cannot promise this passes TFJSC_LOAD_COPY_WEIGHTS: the shards are read into
 * private memory and checked when the model is opened, and later changes to the files cannot
 * affect it (at the cost of the shards' size in memory per open model). */
#define TFJSC_LOAD_COPY_WEIGHTS 1u

/* The compiled model's entry point (ABI v1, see docs/abi.md). */
/* Each thread of a run gets its own (docs/abi.md, "Threads"). */
struct tfjsc_threads {
    int64_t thread;  /* this thread's index, 0 .. threads - 1 */
    int64_t threads; /* threads in the run */
    /* All threads meet; non-zero: the run was abandoned (another thread failed), return. */
    int32_t (*barrier)(const struct tfjsc_threads *self);
    const void *shared; /* the runtime's */
};

typedef int32_t (*tfjsc_run_fn)(const void *const *weights, const void *const *inputs,
                                void *const *outputs, void *arena,
                                const struct tfjsc_threads *threads);

/* Opens a compiled model library (symbols tfjsc_model_description / tfjsc_model_run).
 * weights_dir: directory of the shard files; NULL uses the one recorded at compile time.
 * Returns NULL on failure (missing file or symbol, bad ABI version, shard size or CRC mismatch). */
tfjsc_model *tfjsc_model_open(const char *library, const char *weights_dir, char *error,
                              size_t error_len);

/* As tfjsc_model_open, for a model compiled with --symbol-prefix PREFIX. */
tfjsc_model *tfjsc_model_open_with_prefix(const char *library, const char *prefix,
                                          const char *weights_dir, char *error, size_t error_len);

/* As tfjsc_model_open_with_prefix (prefix NULL: the default) with TFJSC_LOAD_* flags. */
tfjsc_model *tfjsc_model_open_ex(const char *library, const char *prefix, const char *weights_dir,
                                 uint32_t flags, char *error, size_t error_len);

/* Wraps model code linked into this program: pass PREFIX_description() and PREFIX_run. */
tfjsc_model *tfjsc_model_open_static(const char *description, tfjsc_run_fn run,
                                     const char *weights_dir, char *error, size_t error_len);

/* PREFIX_step: runs one kernel of PREFIX_run (docs/abi.md, "The step function"). Every library
 * exports it (from older compilers, only those compiled with --checked). */
typedef int32_t (*tfjsc_step_fn)(uint32_t index, const void *const *weights,
                                 const void *const *inputs, void *const *outputs, void *arena,
                                 const struct tfjsc_threads *threads);

/* As tfjsc_model_open_static, with TFJSC_LOAD_* flags. */
tfjsc_model *tfjsc_model_open_static_ex(const char *description, tfjsc_run_fn run,
                                        const char *weights_dir, uint32_t flags, char *error,
                                        size_t error_len);

/* Wraps statically linked code compiled with --checked (PREFIX_description(), PREFIX_run,
 * PREFIX_step): every run goes kernel by kernel with red zones verified. For testing kernels. */
tfjsc_model *tfjsc_model_open_static_checked(const char *description, tfjsc_run_fn run,
                                             tfjsc_step_fn step, const char *weights_dir,
                                             uint32_t flags, char *error, size_t error_len);

/* Closes a model (NULL is ignored). Free its contexts first. */
void tfjsc_model_close(tfjsc_model *model);

/* Inputs and outputs, in the order tfjsc_context_run expects them. Out-of-range indices give
 * NULL / 0. Returned strings and arrays stay valid until the model is closed. */
size_t tfjsc_model_input_count(const tfjsc_model *model);
const char *tfjsc_model_input_name(const tfjsc_model *model, size_t index);
int32_t tfjsc_model_input_dtype(const tfjsc_model *model, size_t index);
size_t tfjsc_model_input_rank(const tfjsc_model *model, size_t index);
const size_t *tfjsc_model_input_dims(const tfjsc_model *model, size_t index);
size_t tfjsc_model_input_byte_size(const tfjsc_model *model, size_t index);

size_t tfjsc_model_output_count(const tfjsc_model *model);
const char *tfjsc_model_output_name(const tfjsc_model *model, size_t index);
int32_t tfjsc_model_output_dtype(const tfjsc_model *model, size_t index);
size_t tfjsc_model_output_rank(const tfjsc_model *model, size_t index);
const size_t *tfjsc_model_output_dims(const tfjsc_model *model, size_t index);
size_t tfjsc_model_output_byte_size(const tfjsc_model *model, size_t index);

/* Creates an execution context for model (which must outlive it). NULL on failure. */
tfjsc_context *tfjsc_context_new(const tfjsc_model *model, char *error, size_t error_len);

/* Later runs of the context use `threads` threads: the caller's and threads - 1 workers the
 * context owns (default 1). Results are bit-identical whatever the count. Returns 0, or
 * TFJSC_ERROR with a message. */
int32_t tfjsc_context_set_threads(tfjsc_context *context, size_t threads, char *error,
                                  size_t error_len);

/* Frees a context (NULL is ignored). */
void tfjsc_context_free(tfjsc_context *context);

/* Runs the model once. inputs[i] / outputs[i]: dense row-major buffers of exactly
 * tfjsc_model_{input,output}_byte_size(model, i) bytes; outputs must not overlap anything.
 * Bool inputs must hold only bytes 0 and 1 (any other byte is an error naming the input).
 * Returns 0, or TFJSC_ERROR with a message in error. */
int32_t tfjsc_context_run(tfjsc_context *context, const void *const *inputs,
                          void *const *outputs, char *error, size_t error_len);

#ifdef __cplusplus
}
#endif

#endif /* TFJSC_RUNTIME_H */
