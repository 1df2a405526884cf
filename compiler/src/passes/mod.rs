//! The pass pipeline: one table, in order. Every pass is `fn(&mut Graph) -> Result<(), PassError>`;
//! `--dump-ir NAME` prints the graph after the pass of that name, and tests run the verifier
//! between passes.

mod chain;
mod dead_code;
mod fold;
mod fuse;
pub mod memory;
mod outputs;
mod pack;
mod transpose;

use crate::ir::{verify::verify, Graph};

/// Why a pass failed: which pass, which node, what.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("{pass}: node {node:?} ({op}): {message}")]
    Node {
        pass: &'static str,
        node: String,
        op: String,
        message: String,
    },
    #[error("{0}")]
    Verify(#[from] crate::ir::verify::VerifyError),
    /// Several nodes the compiler cannot handle, every one of them.
    #[error("{} nodes are not supported:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Unsupported(Vec<PassError>),
}

pub type PassFn = fn(&mut Graph) -> Result<(), PassError>;

/// Shape inference alone (the pipeline's first pass), for the importer's partial graphs, and
/// with constant folding for `import::evaluate_node`.
pub use fold::{fold_constants, infer_shapes};

/// The pipeline, in order. Names are what `--dump-ir` takes.
pub const PIPELINE: &[(&str, PassFn)] = &[
    ("infer_shapes", fold::infer_shapes),
    ("fold_constants", fold::fold_constants),
    ("form_activations", fuse::form_activations),
    ("sink_transposes", transpose::sink_transposes),
    ("fold_padding", fuse::fold_padding),
    ("fold_channel_scales", fuse::fold_channel_scales),
    ("eliminate_dead_code", dead_code::eliminate_dead_code),
    ("fuse_epilogues", fuse::fuse_epilogues),
    ("chain_convolutions", chain::chain_convolutions),
    ("pack_weights", pack::pack_weights),
    ("materialize_outputs", outputs::materialize_outputs),
];

/// Names a `--dump-ir` may take: "import" (before any pass) and every pass.
pub fn dump_points() -> Vec<&'static str> {
    std::iter::once("import")
        .chain(PIPELINE.iter().map(|(name, _)| *name))
        .collect()
}

/// Runs the pipeline. `after_pass` sees the graph after each pass (dumps); with `verify_each`
/// the verifier runs after every pass.
pub fn run_pipeline(
    graph: &mut Graph,
    verify_each: bool,
    after_pass: &mut dyn FnMut(&str, &Graph),
) -> Result<(), PassError> {
    after_pass("import", graph);
    for (name, pass) in PIPELINE {
        pass(graph)?;
        if verify_each {
            verify(graph, *name != "import")?;
        }
        after_pass(name, graph);
    }
    verify(graph, true)?;
    Ok(())
}
