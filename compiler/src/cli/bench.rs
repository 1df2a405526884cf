//! `tfjsc bench`: load time, then warm-up and timed runs of a compiled library; with `--profile`,
//! the time of every kernel too. Given several libraries (builds of one model to compare), it
//! runs them in turn, one run each per round, and compares each with the first round by round.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use tfjsc_runtime::{DType, Figures, Model, Profile, StepProfile, Tensor};

#[derive(Args)]
pub struct BenchArgs {
    /// The compiled library; several (builds of one model, taking the same inputs) run in
    /// turn, one run each per round in an order rotated every round, so that a slow spell of a
    /// shared machine slows them alike, and each is compared with the first round by round.
    #[arg(required = true)]
    libraries: Vec<PathBuf>,
    /// Timed runs after the warm-up (with several libraries: rounds, one run of each).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Warm-up runs (not timed).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Inputs as NAME=FILE.npy (default: random values in [-1, 1)).
    #[arg(long = "input")]
    inputs: Vec<String>,
    #[command(flatten)]
    load: super::run::LoadArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// After the timed runs, run as many more kernel by kernel and report each kernel (node,
    /// op, ms per run, share of the summed kernel time, GFLOP/s) slowest first, then the same
    /// per op. With --json: a `profile` object, every step in execution order.
    #[arg(long)]
    profile: bool,
    /// With --profile: print only the N slowest kernels (0: all). JSON always has all.
    #[arg(long, value_name = "N", default_value_t = 25, requires = "profile")]
    top: usize,
}

/// Deterministic pseudo-random values (xorshift), so runs are comparable.
fn random_tensor(dtype: DType, shape: &[usize], seed: &mut u64) -> Result<Tensor> {
    let count: usize = shape.iter().product();
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    Ok(match dtype {
        DType::Float32 => Tensor::from_f32(shape, &(0..count).map(|_| next()).collect::<Vec<_>>())?,
        DType::Int32 => Tensor::from_i32(
            shape,
            &(0..count)
                .map(|_| (next() * 8.0) as i32)
                .collect::<Vec<_>>(),
        )?,
        DType::Bool => {
            Tensor::from_bool(shape, &(0..count).map(|_| next() > 0.0).collect::<Vec<_>>())?
        }
    })
}

/// The inputs every run gets: `--input` files, else deterministic random values.
fn inputs_for(model: &Model, files: &[String]) -> Result<Vec<Tensor>> {
    if files.is_empty() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        model
            .description()
            .inputs
            .iter()
            .map(|s| random_tensor(s.dtype, &s.shape, &mut seed))
            .collect()
    } else {
        super::run::read_inputs(model, files)
    }
}

/// Loads `library`, with its load time in ms.
fn load(args: &BenchArgs, library: &std::path::Path) -> Result<(Model, f64)> {
    let start = Instant::now();
    let model = args.load.load(library)?;
    Ok((model, start.elapsed().as_secs_f64() * 1e3))
}

/// The `q` quantile (0 ≤ q ≤ 1) of ascending `sorted`: the value at ⌊q·n⌋, the last for 1.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// `(median, p90, min)` of run times in ms.
fn summary(times: &[f64]) -> (f64, f64, f64) {
    let times = sorted(times.to_vec());
    (quantile(&times, 0.5), quantile(&times, 0.9), times[0])
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.libraries.len() > 1 {
        if args.profile {
            bail!(
                "--profile profiles one library; {} were given",
                args.libraries.len()
            );
        }
        return run_in_turn(&args);
    }
    let library = &args.libraries[0];
    let (model, load_ms) = load(&args, library)?;
    if args.profile {
        // Before any run: a library that cannot be profiled says so at once.
        model.can_profile()?;
    }
    let inputs = inputs_for(&model, &args.inputs)?;
    let mut context = args.load.context(&model)?;
    for _ in 0..args.warmup {
        context.run_tensors(&inputs)?;
    }
    let mut times = Vec::with_capacity(args.runs.max(1));
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        context.run_tensors(&inputs)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let (median, p90, min) = summary(&times);
    let profile = if args.profile {
        Some(
            context
                .profile_tensors(&inputs, times.len())
                .context("profiling")?,
        )
    } else {
        None
    };
    if args.json {
        let mut report = json!({"median_ms": median, "p90_ms": p90, "min_ms": min, "load_ms": load_ms, "threads": context.threads(), "runs": times.len(), "kernel_set": model.kernel_set()});
        if let Some(profile) = &profile {
            report["profile"] = profile_json(profile);
        }
        println!("{report}");
    } else {
        let mut text = format!("{}: median {median:.3} ms, p90 {p90:.3} ms, min {min:.3} ms over {} runs (load {load_ms:.2} ms, {} thread(s), kernels {})\n", library.display(), times.len(), context.threads(), model.kernel_set());
        if let Some(profile) = &profile {
            text += &profile_text(profile, args.top);
        }
        super::print_output(&text);
    }
    Ok(())
}

/// Several libraries in turn: after each one's warm-up, round r runs library (k + r) mod n for
/// k = 0, 1, ..., so each runs once per round and none always first. Each library's run is
/// also divided by the first library's in the same round; the median of those ratios compares
/// two builds where the machine's speed moves between windows longer than a round.
fn run_in_turn(args: &BenchArgs) -> Result<()> {
    let loaded = (args.libraries.iter())
        .map(|library| load(args, library))
        .collect::<Result<Vec<_>>>()?;
    let first = &loaded[0].0.description().inputs;
    for (library, (model, _)) in args.libraries.iter().zip(&loaded).skip(1) {
        let inputs = &model.description().inputs;
        if inputs != first {
            let list = |specs: &[tfjsc_runtime::TensorSpec]| {
                (specs.iter())
                    .map(|s| format!("`{}` {}{:?}", s.name, s.dtype, s.shape))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            bail!(
                "{} takes inputs {}, but {} takes {}: libraries benchmarked together must take the same inputs",
                library.display(),
                list(inputs),
                args.libraries[0].display(),
                list(first)
            );
        }
    }
    let inputs = inputs_for(&loaded[0].0, &args.inputs)?;
    let mut contexts = (loaded.iter())
        .map(|(model, _)| args.load.context(model))
        .collect::<Result<Vec<_>>>()?;
    for context in &mut contexts {
        for _ in 0..args.warmup {
            context.run_tensors(&inputs)?;
        }
    }
    let (count, rounds) = (contexts.len(), args.runs.max(1));
    let mut times = vec![Vec::with_capacity(rounds); count];
    for round in 0..rounds {
        for k in 0..count {
            let i = (k + round) % count;
            let started = Instant::now();
            contexts[i].run_tensors(&inputs)?;
            times[i].push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let threads = contexts[0].threads();
    let mut reports = Vec::new();
    let mut text = format!(
        "{count} libraries in turn, {rounds} rounds of one run each ({threads} thread(s)); ratio: to {} in the same round\n",
        args.libraries[0].display()
    );
    for (i, library) in args.libraries.iter().enumerate() {
        let (model, load_ms) = &loaded[i];
        let (median, p90, min) = summary(&times[i]);
        let ratio = (i > 0).then(|| {
            let ratios = sorted((0..rounds).map(|r| times[i][r] / times[0][r]).collect());
            let at = |q| quantile(&ratios, q);
            (at(0.5), at(0.25), at(0.75))
        });
        text += &format!(
            "{}: median {median:.3} ms, p90 {p90:.3} ms, min {min:.3} ms (load {load_ms:.2} ms, kernels {})",
            library.display(),
            model.kernel_set()
        );
        if let Some((median, p25, p75)) = ratio {
            text += &format!("; ratio median {median:.3} (p25 {p25:.3}, p75 {p75:.3})");
        }
        text += "\n";
        reports.push(json!({
            "library": library.display().to_string(),
            "median_ms": median, "p90_ms": p90, "min_ms": min, "load_ms": load_ms,
            "kernel_set": model.kernel_set(),
            "ratio_to_first": ratio.map(|(median, p25, p75)| json!({"median": median, "p25": p25, "p75": p75})),
        }));
    }
    if args.json {
        println!(
            "{}",
            json!({"threads": threads, "rounds": rounds, "libraries": reports})
        );
    } else {
        super::print_output(&text);
    }
    Ok(())
}

/// `profile` of `bench --profile --json`: every step in execution order, then the ops slowest
/// first; `share` is in percent of the summed step time, `gflops` null without FLOPs.
fn profile_json(profile: &Profile) -> Value {
    // What names a row, then its figures.
    let row = |mut row: Value, time, flops| {
        let figures = profile.figures(time, flops);
        row["flops"] = json!(flops);
        row["ms"] = json!(figures.milliseconds);
        row["share"] = json!(figures.share);
        row["gflops"] = json!(figures.gflops);
        row
    };
    let steps: Vec<Value> = (profile.steps.iter())
        .map(|step| {
            row(
                json!({"node": step.node, "op": step.op}),
                step.time,
                step.flops,
            )
        })
        .collect();
    let ops: Vec<Value> = (profile.by_op().iter())
        .map(|op| row(json!({"op": op.op, "count": op.steps}), op.time, op.flops))
        .collect();
    let total_ms = profile.figures(profile.total(), 0).milliseconds;
    json!({"runs": profile.runs, "total_ms": total_ms, "steps": steps, "ops": ops})
}

/// The text of `bench --profile`: the `top` slowest steps (0: all), then every op.
fn profile_text(profile: &Profile, top: usize) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let line = |text: &mut String, figures: Figures, label: &str| {
        let gflops = figures
            .gflops
            .map_or_else(String::new, |gflops| format!("{gflops:.2}"));
        let _ = writeln!(
            text,
            "{:>9.3} {:>6.1}% {gflops:>8}  {label}",
            figures.milliseconds, figures.share
        );
    };
    let header = |text: &mut String, label: &str| {
        let _ = writeln!(
            text,
            "{:>9} {:>7} {:>8}  {label}",
            "ms/run", "share", "GFLOP/s"
        );
    };
    let total_ms = profile.figures(profile.total(), 0).milliseconds;
    let _ = writeln!(
        text,
        "profile: {} kernels, {total_ms:.3} ms per run timed one by one ({} runs)",
        profile.steps.len(),
        profile.runs
    );
    let mut steps: Vec<&StepProfile> = profile.steps.iter().collect();
    steps.sort_by_key(|step| std::cmp::Reverse(step.time));
    let shown = if top == 0 {
        steps.len()
    } else {
        top.min(steps.len())
    };
    header(&mut text, &format!("{:<18} node", "op"));
    for step in &steps[..shown] {
        let label = format!("{:<18} {}", or_unknown(&step.op), step.node);
        line(&mut text, profile.figures(step.time, step.flops), &label);
    }
    let rest = &steps[shown..];
    if !rest.is_empty() {
        let time = rest.iter().map(|step| step.time).sum();
        let label = format!("({} more kernels; --top 0 lists all)", rest.len());
        line(&mut text, profile.figures(time, 0), &label);
    }
    text += "by op:\n";
    header(&mut text, "count  op");
    for op in profile.by_op() {
        let label = format!("{:>5}  {}", op.steps, or_unknown(&op.op));
        line(&mut text, profile.figures(op.time, op.flops), &label);
    }
    text
}

/// An op name for text, `?` when the library does not say (compiled before `step_info`).
fn or_unknown(op: &str) -> &str {
    if op.is_empty() {
        "?"
    } else {
        op
    }
}
