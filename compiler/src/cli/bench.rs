//! `tfjsc bench`: load time, then warm-up and timed runs of a compiled library.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use tfjsc_runtime::{DType, Tensor};

#[derive(Args)]
pub struct BenchArgs {
    /// The compiled library.
    library: PathBuf,
    /// Timed runs after the warm-up.
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

pub fn run(args: BenchArgs) -> Result<()> {
    let start = Instant::now();
    let model = args.load.load(&args.library)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let inputs = if args.inputs.is_empty() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        model
            .description()
            .inputs
            .iter()
            .map(|s| random_tensor(s.dtype, &s.shape, &mut seed))
            .collect::<Result<Vec<_>>>()?
    } else {
        super::run::read_inputs(&model, &args.inputs)?
    };
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
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let p90 = times[((times.len() as f64 * 0.9) as usize).min(times.len() - 1)];
    let min = times[0];
    if args.json {
        println!(
            "{}",
            json!({"median_ms": median, "p90_ms": p90, "min_ms": min, "load_ms": load_ms, "threads": context.threads(), "runs": times.len()})
        );
    } else {
        println!("{}: median {median:.3} ms, p90 {p90:.3} ms, min {min:.3} ms over {} runs (load {load_ms:.2} ms, {} thread(s))", args.library.display(), times.len(), context.threads());
    }
    Ok(())
}
