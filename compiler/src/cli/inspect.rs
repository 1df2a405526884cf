//! `tfjsc inspect`: what a web model holds and what compiling it would take.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use tfjsc::codegen::CodegenError;
use tfjsc::compile::{compile_graph, lower_to_ir, CompileError, CompileOptions};
use tfjsc::import::{ImportError, InputShape};
use tfjsc::model::WebModel;
use tfjsc::passes::memory::plan_memory;

#[derive(Args)]
pub struct InspectArgs {
    /// model.json, legacy web_model.pb, a directory holding one, or a compiled library (.so).
    model: PathBuf,
    /// Pin an input's shape: NAME=d0,d1,... (repeatable).
    #[arg(long = "input-shape", value_parser = super::parse_input_shape)]
    input_shapes: Vec<InputShape>,
}

fn human_flops(flops: u64) -> String {
    match flops {
        f if f >= 1_000_000_000 => format!("{:.3} GFLOP", f as f64 / 1e9),
        f if f >= 1_000_000 => format!("{:.3} MFLOP", f as f64 / 1e6),
        f => format!("{:.3} kFLOP", f as f64 / 1e3),
    }
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub fn run(args: InspectArgs) -> Result<()> {
    let mut out = String::new();
    let result = report(&args, &mut out);
    super::print_output(&out);
    result
}

fn report(args: &InspectArgs, out: &mut String) -> Result<()> {
    use std::fmt::Write;
    if args
        .model
        .extension()
        .is_some_and(|e| e == "so" || e == "dylib")
    {
        let model = super::run::load_model(&args.model)?;
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(model.description())?
        );
        return Ok(());
    }
    let web = WebModel::open(&args.model)?;
    let _ = writeln!(out, "model: {} ({:?})", web.path.display(), web.format);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &web.graph.node {
        *counts.entry(node.op.as_str()).or_insert(0) += 1;
    }
    let mut by_count: Vec<_> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        out,
        "TensorFlow nodes: {} ({} op types)",
        web.graph.node.len(),
        by_count.len()
    );
    for (op, count) in &by_count {
        let _ = writeln!(out, "  {count:>5}  {op}");
    }
    let stored: u64 = web.weights.iter().filter_map(|w| w.byte_size).sum();
    let parameters: u64 = web
        .weights
        .iter()
        .map(|w| w.shape.iter().product::<usize>() as u64)
        .sum();
    let _ = writeln!(
        out,
        "weights: {} tensors, {parameters} values, {} stored in {} file(s)",
        web.weights.len(),
        human_bytes(stored),
        web.groups.iter().map(|g| g.paths.len()).sum::<usize>()
    );
    let options = CompileOptions {
        input_shapes: args.input_shapes.clone(),
        verify_each: false,
        ..CompileOptions::default()
    };
    match lower_to_ir(&args.model, &options) {
        Ok(tfjsc::compile::Lowered {
            graph,
            notes,
            model,
            ..
        }) => {
            for note in notes {
                let _ = writeln!(out, "note: {note}");
            }
            for port in &graph.inputs {
                let _ = writeln!(out, "input  {:?}: {}", port.name, graph.ty(port.value));
            }
            for port in &graph.outputs {
                let _ = writeln!(out, "output {:?}: {}", port.name, graph.ty(port.value));
            }
            let mut flops = 0u64;
            let mut ir_counts: BTreeMap<String, usize> = BTreeMap::new();
            for (_, node) in graph.nodes() {
                flops += graph.flops_of(node);
                *ir_counts.entry(node.op.name().to_string()).or_insert(0) += 1;
            }
            let _ = writeln!(
                out,
                "after the pipeline: {} nodes: {ir_counts:?}",
                graph.node_count()
            );
            let _ = writeln!(
                out,
                "compute: {} per run ({flops} FLOP)",
                human_flops(flops)
            );
            let plan = plan_memory(&graph, &options.target.isas());
            let _ = writeln!(
                out,
                "memory: arena {} (without reuse {}), {} weights read in place or decoded by the runtime, {} constants embedded",
                human_bytes(plan.arena_size as u64),
                human_bytes(plan.unshared_bytes as u64),
                plan.weights.len(),
                plan.embedded.len()
            );
            // Packed panels: what the runtime builds at load (bytes it owns beside the mapped
            // shards, and the time to write them) for the kernels' faster reads.
            let packed: Vec<u64> = plan
                .weights
                .iter()
                .filter_map(|(_, value)| graph.constant(*value)?.panels?.packed_len())
                .map(|elements| elements as u64 * 4)
                .collect();
            let _ = writeln!(
                out,
                "packed weights: {} of {} packed into GEMM panels at load, {} in all",
                packed.len(),
                plan.weights.len(),
                human_bytes(packed.iter().sum())
            );
            // The same question `compile` asks, answered the same way: lower every node.
            match compile_graph(graph, Some(model), &options) {
                Ok(_) => {
                    let _ = writeln!(out, "unsupported ops: none");
                }
                Err(CompileError::Codegen(error @ CodegenError::Unlowerable(_))) => {
                    let _ = writeln!(out, "unsupported ops: {error}");
                }
                Err(error) => return Err(error).context("generating code"),
            }
        }
        Err(tfjsc::compile::CompileError::Import {
            error: ImportError::UnsupportedOps(ops),
            ..
        }) => {
            let _ = writeln!(out, "unsupported ops:");
            for (op, count) in ops {
                let _ = writeln!(out, "  {count:>5}  {op}");
            }
        }
        Err(error) => return Err(error).context("lowering to IR"),
    }
    Ok(())
}
