//! `tfjsc compile`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use tfjsc::codegen::Target;
use tfjsc::compile::{compile, write_outputs, CompileOptions};
use tfjsc::import::InputShape;
use tfjsc::passes::dump_points;

#[derive(Args)]
pub struct CompileArgs {
    /// model.json, legacy web_model.pb, or a directory holding one.
    model: PathBuf,
    /// Output: `x.o` (object) or `x.so` (shared library, linked with `cc`); `x.h` is written beside it.
    #[arg(short, long)]
    output: PathBuf,
    /// Pin an input's shape: NAME=d0,d1,... (repeatable). An unknown batch dimension defaults to 1.
    #[arg(long = "input-shape", value_parser = super::parse_input_shape)]
    input_shapes: Vec<InputShape>,
    /// CPUs to generate kernels for: levels separated by commas (x86-64-v2, x86-64-v3,
    /// x86-64-v4), one kernel set each, the best the running CPU supports chosen at load; or one
    /// level, or native (the compiling machine), for a lean single-set library.
    #[arg(long, default_value = "x86-64-v3,x86-64-v4")]
    cpu: String,
    /// Prefix of the exported symbols (`PREFIX_run`, `PREFIX_description`).
    #[arg(long, default_value = "tfjsc_model")]
    symbol_prefix: String,
    /// Print the IR after this pass (repeatable; "import", a pass name, or "all").
    #[arg(long = "dump-ir")]
    dump_ir: Vec<String>,
    /// Run the IR verifier after every pass.
    #[arg(long)]
    verify_each: bool,
    /// Red zones around every buffer, checked after every kernel: for testing kernels; slow.
    #[arg(long)]
    checked: bool,
}

pub fn run(args: CompileArgs) -> Result<()> {
    let points = dump_points();
    for wanted in &args.dump_ir {
        if wanted != "all" && !points.contains(&wanted.as_str()) {
            bail!(
                "--dump-ir {wanted:?}: no such pass (choose from: all, {})",
                points.join(", ")
            );
        }
    }
    if !args
        .symbol_prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || args.symbol_prefix.starts_with(|c: char| c.is_ascii_digit())
    {
        bail!(
            "--symbol-prefix {:?} is not a C identifier",
            args.symbol_prefix
        );
    }
    let extension = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    if !matches!(extension, "o" | "so" | "dylib") {
        bail!(
            "{}: unknown output kind {extension:?}: use .o (object) or .so (shared library)",
            args.output.display()
        );
    }
    let target: Target = args.cpu.parse().map_err(anyhow::Error::msg)?;
    let options = CompileOptions {
        input_shapes: args.input_shapes,
        target,
        symbol_prefix: args.symbol_prefix,
        dump_ir: args.dump_ir,
        verify_each: args.verify_each,
        checked: args.checked,
    };
    let start = Instant::now();
    let compiled = compile(&args.model, &options)?;
    for (pass, text) in &compiled.dumps {
        super::print_output(&format!("// IR after {pass}\n{text}\n"));
    }
    for note in &compiled.notes {
        eprintln!("note: {note}");
    }
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the output directory {}", parent.display()))?;
    }
    let header = write_outputs(&compiled, &args.output)?;
    eprintln!(
        "compiled {} -> {} and {} in {:.0} ms ({} nodes, arena {} bytes, {} weights)",
        args.model.display(),
        args.output.display(),
        header.display(),
        start.elapsed().as_secs_f64() * 1e3,
        compiled.graph.node_count(),
        compiled.plan.arena_size,
        compiled.plan.weights.len()
    );
    Ok(())
}
