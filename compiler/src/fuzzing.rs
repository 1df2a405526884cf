//! Fuzzing entry points: one function per fuzz target, each taking arbitrary bytes.
//!
//! These exist so that the nightly-only fuzz targets (`fuzz/fuzz_targets/*.rs`, one line each)
//! and the stable replay test (`tests/fuzz_corpus.rs`) drive exactly the same code: a crash the
//! fuzzer finds is committed under `fuzz/artifacts/TARGET/` and `cargo test` replays it forever
//! after, without nightly.
//!
//! Every function must return normally on any input: errors are the expected outcome for almost
//! all inputs and are ignored; a panic, an abort, a hang or a runaway allocation is a bug in the
//! compiler or runtime, never in the harness. The functions never execute generated code.
//!
//! The web-model targets go through the file system on purpose (that is the path users take):
//! they write into one scratch directory per process and target, under `/dev/shm` when it exists
//! (no disk traffic at fuzzing rates), overwriting the same files on every call.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::codegen::{self, CodegenOptions, Target};
use crate::import;
use crate::ir::text;
use crate::model::WebModel;
use crate::passes::{self, memory::plan_memory};

/// Separates model.json from the shard bytes in a [`model_json`] input. JSON text can never
/// contain a raw NUL byte, so splitting at the first one loses no valid model.json.
pub const MODEL_JSON_SEPARATOR: u8 = 0;

/// The shard file name a [`model_json`] input's bytes after the separator are written to; the
/// committed seeds' manifests name it.
pub const MODEL_JSON_SHARD: &str = "group1-shard1of1.bin";

/// The prefix of scratch directory names; the process id follows.
const SCRATCH_PREFIX: &str = "tfjsc-fuzz-";

/// The root of this process's scratch directories (`/dev/shm/tfjsc-fuzz-PID`, or the same
/// under the system temporary directory). Tests may delete it when done.
///
/// libFuzzer exits without running destructors, and its fork mode starts a new process per job,
/// so the first call also removes the roots of processes that no longer exist (where `/proc`
/// tells): otherwise every fuzzing session would leave dozens behind in shared memory.
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let shared_memory = Path::new("/dev/shm");
        let base = if shared_memory.is_dir() {
            shared_memory.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_stale_roots(&base);
        base.join(format!("{SCRATCH_PREFIX}{}", std::process::id()))
    })
}

/// Removes `base/tfjsc-fuzz-PID` directories whose process is gone.
fn remove_stale_roots(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The scratch directory of one target, created on first use. Each target has its own, so that
/// a model.json left by one never shadows the legacy graph of another in `WebModel::open`.
fn scratch_directory(target: &str) -> Option<PathBuf> {
    let directory = scratch_root().join(target);
    std::fs::create_dir_all(&directory).ok()?;
    Some(directory)
}

/// Import and the pass pipeline (verifier after every pass), as `compile::lower_to_ir` runs
/// them, on a model already opened.
fn import_and_run_passes(model: &WebModel) {
    if import::check_declared_shapes(model).is_err() {
        return;
    }
    let Ok(weights) = model.read_weights() else {
        return;
    };
    let Ok(imported) = import::import(model, &weights, &[]) else {
        return;
    };
    let mut graph = imported.graph;
    let _ = passes::run_pipeline(&mut graph, true, &mut |_, _| {});
}

/// model.json + manifest + one shard: the bytes before the first NUL are `model.json`, the bytes
/// after it are the shard [`MODEL_JSON_SHARD`] (empty without a NUL). Opens the directory, lists
/// and reads the weights, then imports and runs the passes.
pub fn model_json(data: &[u8]) {
    let (json, shard) = match data.iter().position(|&b| b == MODEL_JSON_SEPARATOR) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Some(directory) = scratch_directory("model_json") else {
        return;
    };
    if std::fs::write(directory.join("model.json"), json).is_err()
        || std::fs::write(directory.join(MODEL_JSON_SHARD), shard).is_err()
    {
        return;
    }
    let Ok(model) = WebModel::open(&directory) else {
        return;
    };
    let _ = model.weight_files();
    import_and_run_passes(&model);
}

/// The legacy format: the bytes are `web_model.pb` (a binary GraphDef), beside an empty
/// `weights_manifest.json`, so every constant must carry its value in the graph. Opens the
/// directory, then imports and runs the passes.
pub fn legacy_graph(data: &[u8]) {
    let Some(directory) = scratch_directory("legacy_graph") else {
        return;
    };
    if std::fs::write(directory.join("web_model.pb"), data).is_err()
        || std::fs::write(directory.join("weights_manifest.json"), b"[]").is_err()
    {
        return;
    }
    let Ok(model) = WebModel::open(&directory) else {
        return;
    };
    let _ = model.weight_files();
    import_and_run_passes(&model);
}

/// The runtime's `.npy` reader (model inputs given on the command line).
pub fn npy(data: &[u8]) {
    let _ = tfjsc_runtime::npy::parse_npy(data);
}

/// The runtime's parser and validator of the description JSON a compiled library embeds (a
/// library is untrusted input to the runtime). Non-UTF-8 input is decoded lossily.
pub fn description(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(description) = tfjsc_runtime::Description::parse(&text) {
        let _ = description.validate();
        for group in 0..description.weight_groups.len() {
            let _ = description.group_stream_size(group);
        }
    }
}

/// The IR text form through everything after import: parse, the pass pipeline with the verifier
/// after every pass, a print/parse round trip, memory planning and code generation to an object
/// in memory (never run). IR text reaches the passes far more directly than GraphDef bytes,
/// whose import [`legacy_graph`] and [`model_json`] cover. Non-UTF-8 input is decoded lossily.
pub fn pipeline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(mut graph) = text::parse(&text) else {
        return;
    };
    if passes::run_pipeline(&mut graph, true, &mut |_, _| {}).is_err() {
        return;
    }
    let printed = text::print(&graph);
    if let Err(error) = text::parse(&printed) {
        panic!("the printed IR does not parse back ({error}):\n{printed}");
    }
    // The default kernel sets (AVX2 + FMA and AVX-512) rather than the host: the same input
    // takes the same code paths on every machine, and they are the paths with the machine-code
    // micro-kernels. On a non-x86 host the target is refused and code generation is skipped.
    let target = Target::default();
    let plan = plan_memory(&graph, &target.isas());
    let _ = codegen::generate(
        &graph,
        &plan,
        &CodegenOptions {
            target: &target,
            symbol_prefix: "fuzz",
            description: "{}",
            level_descriptions: &["{}".to_string(), "{}".to_string()],
        },
    );
}
