//! `tfjsc convert`: the TF.js converter's command line, with `tensorflowjs_converter`'s flag
//! spellings.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use tfjsc::convert::{convert, ConvertOptions, InputFormat, OutputFormat, Quantization};

#[derive(Args)]
#[command(after_help = "Examples:
  tfjsc convert --input_format=tf_saved_model saved_model/ web_model/
  tfjsc convert --input_format=tf_frozen_model --output_node_names=Softmax frozen.pb web_model/
  tfjsc convert --input_format=tf_saved_model --quantize_float16='*' saved_model/ web_model/")]
pub struct ConvertArgs {
    /// Input format: tf_saved_model (a SavedModel directory), tf_frozen_model (a frozen GraphDef
    /// .pb), tf_session_bundle (a TF1 export directory: the MetaGraph and checkpoint its
    /// `checkpoint` file names, else export.meta and `export`, else its only *.meta file; V2
    /// checkpoints (PREFIX.index + data) or V1 (PREFIX, or PREFIX-NNNNN-of-MMMMM shards);
    /// deprecated), tf_hub (a TF Hub module, TF2 SavedModel or TF1 with tfhub_module.pb:
    /// directory, .tar.gz or http(s):// URL).
    #[arg(long = "input_format", default_value = "tf_saved_model", value_parser = InputFormat::parse)]
    input_format: InputFormat,
    /// Output format: tfjs_graph_model (model.json + group1-shardNofM.bin) or legacy
    /// (web_model.pb + weights_manifest.json + group1-shardNofM, for TF.js 0.x's
    /// loadFrozenModel; no fused ops).
    #[arg(long = "output_format", default_value = "tfjs_graph_model", value_parser = parse_output_format)]
    output_format: OutputFormat,
    /// Tags of the MetaGraph to convert, comma-separated (default "serve"; for tf_hub the
    /// empty tag set, a TF1 module's default graph variant).
    #[arg(long = "saved_model_tags")]
    saved_model_tags: Option<String>,
    /// Signature to convert (default serving_default; "default" for tf_hub).
    #[arg(long = "signature_name")]
    signature_name: Option<String>,
    /// Output nodes, comma-separated (required for tf_frozen_model and tf_session_bundle;
    /// replaces the signature's outputs otherwise).
    #[arg(long = "output_node_names", value_delimiter = ',')]
    output_node_names: Vec<String>,
    /// Remove debug ops (CheckNumerics, Assert, Print, EnsureShape): true or false.
    #[arg(long = "strip_debug_ops", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    strip_debug_ops: bool,
    /// Write the model even if TF.js or tfjsc cannot run some of its ops.
    #[arg(long = "skip_op_check")]
    skip_op_check: bool,
    /// Accepted for commands written for the Python converter: tfjsc always writes control
    /// flow as While/If with function bodies (the form this flag asks for; TF.js cannot run the
    /// other, dataflow loops). `--control_flow_v2=false` is refused.
    #[arg(long = "control_flow_v2", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    control_flow_v2: Option<bool>,
    /// Weight shard size in bytes.
    #[arg(long = "weight_shard_size_bytes", default_value_t = 4 * 1024 * 1024)]
    weight_shard_size_bytes: usize,
    /// Store float32 weights as float16; optionally only weights matching these names
    /// (comma-separated, `*` wildcards).
    #[arg(long = "quantize_float16", num_args = 0..=1, default_missing_value = "*")]
    quantize_float16: Option<String>,
    /// Store float32 weights as affine uint8 (optionally only matching names).
    #[arg(long = "quantize_uint8", num_args = 0..=1, default_missing_value = "*")]
    quantize_uint8: Option<String>,
    /// Store float32 weights as affine uint16 (optionally only matching names).
    #[arg(long = "quantize_uint16", num_args = 0..=1, default_missing_value = "*")]
    quantize_uint16: Option<String>,
    /// Where tf_hub modules are downloaded and unpacked (default $TFHUB_CACHE_DIR, else
    /// ~/.cache/tfjsc/tfhub).
    #[arg(long = "tfhub_cache_dir")]
    tfhub_cache_dir: Option<PathBuf>,
    /// Network timeout in seconds for tf_hub downloads.
    #[arg(long = "timeout", default_value_t = 60.0)]
    timeout: f64,
    /// Keep batch normalisation as separate ops instead of folding it into the convolution.
    #[arg(long = "no_fold_batch_norms")]
    no_fold_batch_norms: bool,
    /// No progress bar (drawn only when stderr is a terminal) and no closing summary line.
    #[arg(long)]
    quiet: bool,
    /// The model to convert.
    input_path: String,
    /// The directory to write the web model into.
    output_path: PathBuf,
}

/// `true`/`false` in Python's spellings too (`True`, `False`, `1`, `0`, `yes`, `no`).
fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {text:?}")),
    }
}

fn parse_output_format(text: &str) -> Result<OutputFormat, String> {
    match text {
        "tfjs_graph_model" | "graph_model" => Ok(OutputFormat::GraphModel),
        "legacy" | "tfjs_legacy" => Ok(OutputFormat::Legacy),
        other => Err(format!(
            "unknown output format {other:?}; expected tfjs_graph_model or legacy"
        )),
    }
}

fn patterns(text: &Option<String>) -> Option<Vec<String>> {
    text.as_ref().map(|text| {
        text.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    })
}

pub fn run(args: ConvertArgs) -> Result<()> {
    if args.control_flow_v2 == Some(false) {
        anyhow::bail!(
            "--control_flow_v2=false: tfjsc writes control flow only as While/If with function \
             bodies (TF.js cannot run the TF1 dataflow loops the Python converter writes then)"
        );
    }
    let options = ConvertOptions {
        input_format: args.input_format,
        output_format: args.output_format,
        saved_model_tags: args.saved_model_tags.as_ref().map(|tags| {
            tags.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        }),
        signature_name: args.signature_name.clone(),
        output_node_names: args.output_node_names.clone(),
        strip_debug_ops: args.strip_debug_ops,
        skip_op_check: args.skip_op_check,
        weight_shard_size_bytes: args.weight_shard_size_bytes,
        quantization: Quantization {
            float16: patterns(&args.quantize_float16),
            uint8: patterns(&args.quantize_uint8),
            uint16: patterns(&args.quantize_uint16),
        },
        fold_batch_norms: !args.no_fold_batch_norms,
        cache_dir: args.tfhub_cache_dir.clone(),
        timeout: std::time::Duration::from_secs_f64(args.timeout.clamp(0.001, 86_400.0)),
    };
    let quantized = [
        &options.quantization.float16,
        &options.quantization.uint8,
        &options.quantization.uint16,
    ]
    .iter()
    .filter(|q| q.is_some())
    .count();
    if quantized > 1
        && options
            .quantization
            .float16
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| p == "*"))
    {
        anyhow::bail!(
            "--quantize_float16 for all weights cannot be combined with another quantization"
        );
    }
    let started = Instant::now();
    let bar = progress_bar(args.quiet, std::io::stderr().is_terminal());
    let result = convert(&args.input_path, &args.output_path, &options, &mut |step| {
        show_step(&bar, step)
    });
    bar.finish_and_clear();
    let report = result.with_context(|| format!("converting {}", args.input_path))?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    if !args.quiet {
        eprintln!(
            "wrote {} ({} nodes, {} weights, {} bytes) in {:.2} s",
            args.output_path.display(),
            report.nodes,
            report.weights,
            report.weight_bytes,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The steps `convert` reports, in order ("checking ops" is skipped with --skip_op_check).
const STEPS: [&str; 4] = ["reading", "rewriting", "checking ops", "writing"];

/// The conversion's progress: a bar of [`STEPS`] on stderr, redrawn in place and cleared at the
/// end; hidden with --quiet or when stderr is not a `terminal` (a log gets no progress lines).
fn progress_bar(quiet: bool, terminal: bool) -> ProgressBar {
    if quiet || !terminal {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(STEPS.len() as u64), ProgressDrawTarget::stderr());
    // The template is fixed and valid; were it not, the bar would keep indicatif's default look.
    if let Ok(style) = ProgressStyle::with_template("[{bar:24}] {seconds:>6} s  {msg}") {
        let seconds = |state: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = write!(out, "{:.2}", state.elapsed().as_secs_f64());
        };
        bar.set_style(style.progress_chars("# ").with_key("seconds", seconds));
    }
    bar
}

/// Shows that `step` has begun: the bar filled for the steps before it, the step's name beside.
fn show_step(bar: &ProgressBar, step: &str) {
    bar.set_message(step.to_string());
    if let Some(done) = STEPS.iter().position(|s| *s == step) {
        bar.set_position(done as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_hidden_when_quiet_or_not_on_a_terminal() {
        assert!(progress_bar(true, true).is_hidden());
        assert!(progress_bar(false, false).is_hidden());
        assert!(progress_bar(true, false).is_hidden());
        let shown = progress_bar(false, true);
        assert_eq!(shown.length(), Some(STEPS.len() as u64));
        shown.finish_and_clear();
    }

    #[test]
    fn each_step_fills_the_bar_for_the_steps_before_it() {
        let bar = ProgressBar::hidden();
        bar.set_length(STEPS.len() as u64);
        show_step(&bar, "reading");
        assert_eq!((bar.position(), bar.message()), (0, "reading".into()));
        show_step(&bar, "rewriting");
        // --skip_op_check goes from rewriting to writing.
        show_step(&bar, "writing");
        assert_eq!((bar.position(), bar.message()), (3, "writing".into()));
        // A step convert may report some day and this list lacks: named, the bar unchanged.
        show_step(&bar, "quantizing");
        assert_eq!((bar.position(), bar.message()), (3, "quantizing".into()));
    }
}
