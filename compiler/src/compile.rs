//! The compile driver: web model → IR → passes → memory plan → object → (linked library) + header.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::codegen::{self, CodegenError, CodegenOptions, Target};
use crate::import::{self, ImportError, InputShape};
use crate::ir::{text, Graph};
use crate::model::{ModelError, WebModel, WeightEncoding};
use crate::passes::memory::{
    plan_memory, plan_memory_checked, MemoryPlan, ARENA_ALIGNMENT, RED_ZONE_BYTES,
};
use crate::passes::{self, PassError};

/// Everything that can stop a compilation.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {error}")]
    Import { path: PathBuf, error: ImportError },
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },
}

/// How to compile.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub input_shapes: Vec<InputShape>,
    pub target: Target,
    pub symbol_prefix: String,
    /// Pass names after which to print the IR ("all" for every one).
    pub dump_ir: Vec<String>,
    pub verify_each: bool,
    /// Checked mode, for testing kernels: no buffer reuse, red zones around every arena buffer,
    /// and a `checked` description section so the runtime runs the model through `PREFIX_step`
    /// and verifies the zones after every kernel.
    pub checked: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            input_shapes: Vec::new(),
            target: Target::default(),
            symbol_prefix: "tfjsc_model".into(),
            dump_ir: Vec::new(),
            verify_each: cfg!(debug_assertions),
            checked: false,
        }
    }
}

/// A compiled model, in memory.
pub struct Compiled {
    /// The web model compiled, when compiling from one.
    pub model: Option<WebModel>,
    pub graph: Graph,
    pub plan: MemoryPlan,
    pub object: Vec<u8>,
    pub description: serde_json::Value,
    pub header: String,
    /// Decisions taken for the user (e.g. batch size 1), to print.
    pub notes: Vec<String>,
    /// IR dumps requested with `dump_ir`: (pass, text).
    pub dumps: Vec<(String, String)>,
}

/// A web model taken through import and the pass pipeline.
pub struct Lowered {
    pub model: WebModel,
    pub graph: Graph,
    /// Decisions taken for the user (e.g. batch size 1).
    pub notes: Vec<String>,
    /// IR dumps requested with `dump_ir`: (pass, text).
    pub dumps: Vec<(String, String)>,
}

/// Loads, imports and runs the pass pipeline (no code generation): what `inspect` needs too.
pub fn lower_to_ir(path: &Path, options: &CompileOptions) -> Result<Lowered, CompileError> {
    let model = WebModel::open(path)?;
    import::check_declared_shapes(&model).map_err(|error| CompileError::Import {
        path: model.path.clone(),
        error,
    })?;
    let weights = model.read_weights()?;
    let imported = import::import(&model, &weights, &options.input_shapes).map_err(|error| {
        CompileError::Import {
            path: model.path.clone(),
            error,
        }
    })?;
    let mut graph = imported.graph;
    let mut dumps = Vec::new();
    let wanted = |name: &str| options.dump_ir.iter().any(|d| d == name || d == "all");
    passes::run_pipeline(&mut graph, options.verify_each, &mut |name, graph| {
        if wanted(name) {
            dumps.push((name.to_string(), text::print(graph)));
        }
    })?;
    Ok(Lowered {
        model,
        graph,
        notes: imported.notes,
        dumps,
    })
}

/// Compiles the model at `path` into an object in memory.
pub fn compile(path: &Path, options: &CompileOptions) -> Result<Compiled, CompileError> {
    let lowered = lower_to_ir(path, options)?;
    let mut compiled = compile_graph(lowered.graph, Some(lowered.model), options)?;
    compiled.notes = lowered.notes;
    compiled.dumps = lowered.dumps;
    Ok(compiled)
}

/// Compiles a graph that has been through the pipeline. Without a web model, every constant is
/// embedded in the object (op tests build graphs this way).
pub fn compile_graph(
    graph: Graph,
    model: Option<WebModel>,
    options: &CompileOptions,
) -> Result<Compiled, CompileError> {
    let plan = if options.checked {
        plan_memory_checked(&graph, &options.target.isas())
    } else {
        plan_memory(&graph, &options.target.isas())
    };
    let mut description = describe(model.as_ref(), &graph, &plan, options)?;
    let level_descriptions = describe_kernel_sets(&mut description, options);
    let description_text = description.to_string();
    let object = codegen::generate(
        &graph,
        &plan,
        &CodegenOptions {
            target: &options.target,
            symbol_prefix: &options.symbol_prefix,
            description: &description_text,
            level_descriptions: &level_descriptions,
        },
    )?;
    let header = header(&description, &options.symbol_prefix);
    Ok(Compiled {
        model,
        graph,
        plan,
        object,
        description,
        header,
        notes: Vec::new(),
        dumps: Vec::new(),
    })
}

/// With several kernel sets, lists them in the library's description (`kernel_sets`, docs/abi.md)
/// and returns each set's own description: the same, with that set's target and CPU features,
/// so that loading one set by its prefix checks the features its code uses.
fn describe_kernel_sets(
    description: &mut serde_json::Value,
    options: &CompileOptions,
) -> Vec<String> {
    let target = &options.target;
    if !target.dispatches() {
        return Vec::new();
    }
    let prefix = |level: codegen::target::CpuLevel| {
        format!("{}_{}", options.symbol_prefix, level.symbol_infix())
    };
    let own = |level: codegen::target::CpuLevel| {
        let mut own = description.clone();
        own["target"] = json!(level.describe());
        own["required_cpu_features"] = json!(level.required_features());
        own.to_string()
    };
    let descriptions = target.levels().iter().map(|&level| own(level)).collect();
    description["kernel_sets"] = target
        .levels()
        .iter()
        .map(|&level| {
            json!({
                "name": level.name(),
                "symbol_prefix": prefix(level),
                "required_cpu_features": level.required_features(),
            })
        })
        .collect();
    descriptions
}

/// Output names as TF.js reports them: no trailing ":0".
pub fn display_name(name: &str) -> &str {
    name.strip_suffix(":0").unwrap_or(name)
}

/// Adds the kernel steps (each node's name in `steps`, its op and FLOP count in `step_info`, for
/// profiles), and the `checked` section (docs/abi.md, "Checked mode") when compiling checked.
fn describe(
    model: Option<&WebModel>,
    graph: &Graph,
    plan: &MemoryPlan,
    options: &CompileOptions,
) -> Result<serde_json::Value, CompileError> {
    let mut description = describe_unchecked(model, graph, plan, options)?;
    let (steps, step_info): (Vec<&str>, Vec<serde_json::Value>) = codegen::kernel_nodes(graph)
        .map(|(_, node)| {
            let info = json!({"op": node.op.detailed_name(), "flops": graph.flops_of(node)});
            (node.name.as_str(), info)
        })
        .unzip();
    description["steps"] = json!(steps);
    description["step_info"] = json!(step_info);
    if options.checked {
        let regions: Vec<serde_json::Value> = plan
            .regions
            .iter()
            .map(|r| json!({"name": r.name, "offset": r.offset, "size": r.size}))
            .collect();
        description["checked"] = json!({
            "red_zone_bytes": RED_ZONE_BYTES,
            "regions": regions,
        });
    }
    Ok(description)
}

fn describe_unchecked(
    model: Option<&WebModel>,
    graph: &Graph,
    plan: &MemoryPlan,
    options: &CompileOptions,
) -> Result<serde_json::Value, CompileError> {
    let tensor = |name: &str, value| {
        let ty = graph.ty(value);
        json!({"name": display_name(name), "dtype": ty.dtype.abi_name(), "shape": ty.shape})
    };
    let Some(model) = model else {
        if let Some((name, _)) = plan.weights.first() {
            return Err(CompileError::Output {
                path: PathBuf::new(),
                message: format!("weight {name:?} needs a web model"),
            });
        }
        return Ok(json!({
            "abi_version": tfjsc_runtime::ABI_VERSION,
            "generator": concat!("tfjsc ", env!("CARGO_PKG_VERSION")),
            "model": "",
            "weights_dir": "",
            "target": options.target.describe(),
            "required_cpu_features": options.target.required_features(),
            "inputs": graph.inputs.iter().map(|p| tensor(&p.name, p.value)).collect::<Vec<_>>(),
            "outputs": graph.outputs.iter().map(|p| tensor(&p.name, p.value)).collect::<Vec<_>>(),
            "arena": {"size": plan.arena_size, "alignment": ARENA_ALIGNMENT},
            "weight_files": [], "weight_groups": [], "weights": [],
        }));
    };
    let files = model.weight_files()?;
    let mut groups = Vec::new();
    let mut next_file = 0;
    for group in &model.groups {
        let indices: Vec<usize> = (next_file..next_file + group.paths.len()).collect();
        next_file += group.paths.len();
        groups.push(json!({"files": indices}));
    }
    let mut weights = Vec::new();
    for (name, value) in &plan.weights {
        let spec = model.weight(name).ok_or_else(|| CompileError::Output {
            path: model.path.clone(),
            message: format!("weight {name:?} is not in the manifest"),
        })?;
        let ty = graph.ty(*value);
        let encoding = match spec.encoding {
            WeightEncoding::Float32 => json!({"kind": "float32"}),
            WeightEncoding::Int32 => json!({"kind": "int32"}),
            WeightEncoding::Bool => json!({"kind": "bool"}),
            WeightEncoding::Float16 => json!({"kind": "float16"}),
            WeightEncoding::Uint8 { scale, min } => {
                json!({"kind": "uint8", "scale": scale, "min": min})
            }
            WeightEncoding::Uint16 { scale, min } => {
                json!({"kind": "uint16", "scale": scale, "min": min})
            }
            other => {
                return Err(CompileError::Output {
                    path: model.path.clone(),
                    message: format!(
                        "weight {name:?}: encoding {other:?} cannot feed compiled code"
                    ),
                })
            }
        };
        let mut weight = json!({
            "name": name,
            "dtype": ty.dtype.abi_name(),
            "shape": ty.shape,
            "group": spec.group,
            "offset": spec.offset,
            "byte_size": spec.byte_size.unwrap_or(0),
            "encoding": encoding,
        });
        if let Some(panels) = graph.constant(*value).and_then(|c| c.panels) {
            weight["panels"] = json!(panels);
        }
        weights.push(weight);
    }
    let weights_dir = std::fs::canonicalize(&model.dir).unwrap_or_else(|_| model.dir.clone());
    Ok(json!({
        "abi_version": tfjsc_runtime::ABI_VERSION,
        "generator": concat!("tfjsc ", env!("CARGO_PKG_VERSION")),
        "model": model.path.display().to_string(),
        "weights_dir": weights_dir.display().to_string(),
        "target": options.target.describe(),
        "required_cpu_features": options.target.required_features(),
        "inputs": graph.inputs.iter().map(|p| tensor(&p.name, p.value)).collect::<Vec<_>>(),
        "outputs": graph.outputs.iter().map(|p| tensor(&p.name, p.value)).collect::<Vec<_>>(),
        "arena": {"size": plan.arena_size, "alignment": ARENA_ALIGNMENT},
        "weight_files": files.iter().map(|f| json!({"path": f.path, "size": f.size, "crc32": f.crc32})).collect::<Vec<_>>(),
        "weight_groups": groups,
        "weights": weights,
    }))
}

/// A C identifier from a tensor name.
fn identifier(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The model's C header: the ABI entry points and typed names for inputs and outputs.
fn header(description: &serde_json::Value, prefix: &str) -> String {
    let upper = identifier(prefix);
    let mut text = format!(
        "/* Generated by tfjsc from {}. Do not edit. ABI version 2: see docs/abi.md. */\n\
         #ifndef {upper}_H\n#define {upper}_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n\
         #ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n\
         /* NUL-terminated JSON describing inputs, outputs, weights and the arena. */\n\
         const char *{prefix}_description(void);\n\n\
         /* Runs the model: one pointer per weight (description order), per input, per output;\n   \
         an arena of {upper}_ARENA_SIZE bytes aligned to {upper}_ARENA_ALIGNMENT. Returns 0, or\n   \
         (step << 8) | code when a kernel stops (code 1: an index out of range; docs/abi.md).\n   \
         Every thread of a run calls it with its own struct tfjsc_threads (docs/abi.md, Threads). */\n\
         struct tfjsc_threads;\n\
         int32_t {prefix}_run(const void *const *weights, const void *const *inputs,\n                 \
         void *const *outputs, void *arena, const struct tfjsc_threads *threads);\n\n\
         /* Runs only the index-th kernel of `run`, with the same arguments; returns its status (0 or\n   \
         a failure code), or -1 when index is out of range. Profiles time it; checked builds\n   \
         (--checked) verify red zones between steps (docs/abi.md). */\n\
         int32_t {prefix}_step(uint32_t index, const void *const *weights,\n                  \
         const void *const *inputs, void *const *outputs, void *arena,\n                  \
         const struct tfjsc_threads *threads);\n\n",
        description["model"].as_str().unwrap_or("?")
    );
    if let Some(sets) = description["kernel_sets"].as_array() {
        let names: Vec<&str> = sets.iter().filter_map(|s| s["name"].as_str()).collect();
        text += &format!(
            "/* This library holds {} kernel sets ({}): run and step call the best one this CPU\n   \
             supports, asked once (they return 4 if it supports none). Returns the index of that\n   \
             set in the list, or -1. Each set also has its own entries, PREFIX_<set>_run, ...\n   \
             (docs/abi.md, Kernel sets). */\n\
             int32_t {prefix}_kernel_set(void);\n\n",
            names.len(),
            names.join(", ")
        );
    }
    text += &format!(
        "#define {upper}_ARENA_SIZE ((size_t){})\n",
        description["arena"]["size"]
    );
    text += &format!(
        "#define {upper}_ARENA_ALIGNMENT ((size_t){})\n",
        description["arena"]["alignment"]
    );
    text += &format!(
        "#define {upper}_WEIGHT_COUNT {}\n\n",
        description["weights"].as_array().map_or(0, |w| w.len())
    );
    for (kind, key) in [("INPUT", "inputs"), ("OUTPUT", "outputs")] {
        let list = description[key].as_array().cloned().unwrap_or_default();
        text += &format!("#define {upper}_{kind}_COUNT {}\n", list.len());
        for (index, tensor) in list.iter().enumerate() {
            let name = tensor["name"].as_str().unwrap_or("");
            let shape: Vec<usize> = tensor["shape"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect()
                })
                .unwrap_or_default();
            let dtype = tensor["dtype"].as_str().unwrap_or("float32");
            let element = if dtype == "bool" { 1 } else { 4 };
            let id = identifier(name);
            text += &format!("/* {kind} {index} {name:?}: {dtype} {shape:?} */\n");
            text += &format!("#define {upper}_{kind}_{id} {index}\n");
            text += &format!(
                "#define {upper}_{kind}_{id}_ELEMENTS ((size_t){})\n",
                shape.iter().product::<usize>()
            );
            text += &format!(
                "#define {upper}_{kind}_{id}_BYTES ((size_t){})\n",
                shape.iter().product::<usize>() * element
            );
        }
        text += "\n";
    }
    text += &format!("#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {upper}_H */\n");
    text
}

/// Writes `compiled` to `output` (`.o`: the object; `.so`/`.dylib`: the object linked with the
/// system C compiler) and the header beside it (`x.h`). Returns the header path.
pub fn write_outputs(compiled: &Compiled, output: &Path) -> Result<PathBuf, CompileError> {
    let fail = |message: String| CompileError::Output {
        path: output.to_path_buf(),
        message,
    };
    let extension = output.extension().and_then(|e| e.to_str()).unwrap_or("");
    let header_path = output.with_extension("h");
    match extension {
        "o" => std::fs::write(output, &compiled.object).map_err(|e| fail(e.to_string()))?,
        "so" | "dylib" => {
            // The object goes to a temporary directory of its own: never beside the output,
            // where it would overwrite (and then delete) a file the user did not name.
            let temporary = tempfile::tempdir()
                .map_err(|e| fail(format!("creating a temporary directory: {e}")))?;
            let object_path = temporary.path().join("model.o");
            std::fs::write(&object_path, &compiled.object)
                .map_err(|e| fail(format!("writing {}: {e}", object_path.display())))?;
            let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
            let result = Command::new(&compiler)
                .arg("-shared")
                .arg("-o")
                .arg(output)
                .arg(&object_path)
                .output();
            drop(temporary);
            let result = result.map_err(|e| {
                fail(format!(
                    "could not run the C compiler `{compiler}` to link: {e}"
                ))
            })?;
            if !result.status.success() {
                return Err(fail(format!(
                    "`{compiler} -shared` failed: {}",
                    String::from_utf8_lossy(&result.stderr)
                )));
            }
        }
        other => {
            return Err(fail(format!(
                "unknown output kind {other:?}: use .o (object) or .so (shared library)"
            )))
        }
    }
    std::fs::write(&header_path, &compiled.header)
        .map_err(|e| fail(format!("writing {}: {e}", header_path.display())))?;
    Ok(header_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small real graph compiled `--checked`, linked and run by the runtime (which then runs it
    /// step by step with red zones verified): clean, and the description lists every region.
    #[test]
    fn checked_library_runs_clean_and_lists_its_regions() {
        let mut graph = text::parse(
            "graph {\n  input %0 \"x\" : f32[2, 33]\n  const %1 [66] : i32[1]\n\
             %2 = unary(%0) {kind=\"relu\"} : ? @\"a\"\n  %3 = unary(%2) {kind=\"neg\"} : ? @\"b\"\n\
             %4 = reshape(%3, %1) {mode=\"operand\"} : ? @\"view\"\n\
             %5 = unary(%4) {kind=\"exp\"} : ? @\"c\"\n  output \"y\" %5\n}\n",
        )
        .unwrap();
        passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
        let options = CompileOptions {
            checked: true,
            ..CompileOptions::default()
        };
        let compiled = compile_graph(graph, None, &options).unwrap();
        let checked = &compiled.description["checked"];
        assert_eq!(checked["red_zone_bytes"], RED_ZONE_BYTES);
        assert_eq!(compiled.description["steps"], json!(["a", "b", "c"]));
        assert_eq!(
            checked["regions"],
            json!([
                {"name": "a:0", "offset": 64, "size": 264},
                {"name": "b:0", "offset": 64 + 320 + 128, "size": 264},
            ])
        );
        assert!(compiled
            .header
            .contains("int32_t tfjsc_model_step(uint32_t index"));

        let directory = tempfile::tempdir().unwrap();
        let library = directory.path().join("libchecked.so");
        write_outputs(&compiled, &library).unwrap();
        let model = tfjsc_runtime::Model::load(&library, None).unwrap();
        assert!(model.description().checked.is_some());
        let x: Vec<f32> = (0..66).map(|i| i as f32 / 16.0 - 2.0).collect();
        let input = tfjsc_runtime::Tensor::from_f32(&[2, 33], &x).unwrap();
        let outputs = model.new_context().unwrap().run_tensors(&[input]).unwrap();
        let y = outputs[0].to_f32().unwrap();
        for (y, x) in y.iter().zip(&x) {
            let expected = (-x.max(0.0)).exp();
            assert!(
                (y - expected).abs() <= 1e-6 * expected.abs(),
                "{y} vs {expected}"
            );
        }
    }

    /// Every build exports `step` (profiles time it), so the header declares it; only checked
    /// builds have a checked section. Each step's op and FLOP count are listed for profiles.
    #[test]
    fn unchecked_descriptions_have_no_checked_section_but_a_step_function() {
        let mut graph = text::parse(
            "graph {\n  input %0 \"x\" : f32[4]\n  %1 = unary(%0) {kind=\"relu\"} : ? @\"a\"\n  \
             output \"y\" %1\n}\n",
        )
        .unwrap();
        passes::run_pipeline(&mut graph, true, &mut |_, _| {}).unwrap();
        let compiled = compile_graph(graph, None, &CompileOptions::default()).unwrap();
        assert!(compiled.description.get("checked").is_none());
        assert!(compiled
            .header
            .contains("int32_t tfjsc_model_step(uint32_t index"));
        assert_eq!(compiled.description["steps"], json!(["a"]));
        assert_eq!(
            compiled.description["step_info"],
            json!([{"op": "unary.relu", "flops": 4}])
        );
    }
}
