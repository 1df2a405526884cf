//! The GEMM micro-kernels' peak in isolation: each tile shape the frame can choose, called in a
//! loop on one core with A and packed B resident in cache, as GFLOP/s. This is the ceiling a
//! whole network's GEMM layers are measured against (benches/run.sh reports ResNet50's share of
//! it).
//!
//!     cargo run --release -p tfjsc --example kernel_peak [-- --json] [--runs N --run-gflop G]

use std::time::Instant;

use tfjsc::codegen::microkernel::{assemble_gemm, Isa, MachineEpilogue, TileShape, PANEL};

type GemmKernel = unsafe extern "C" fn(
    a: *const f32,
    lda: i64,
    b: *const f32,
    ldb: i64,
    c: *mut f32,
    ldc: i64,
    depth: i64,
    accumulate: i64,
    panel_stride: i64,
    prefetch: *const f32,
    prefetch_step: i64,
    segments: i64,
    segment_stride: i64,
);

/// Floats on a 64-byte boundary, as the runtime's arena and packed weights are (a B vector
/// straddling two cache lines would be a split load on every K step).
struct Aligned(Vec<f32>, usize);

impl Aligned {
    fn new(length: usize) -> Aligned {
        let storage = vec![0f32; length + PANEL];
        let skip = storage.as_ptr().align_offset(64);
        Aligned(storage, skip)
    }
}

impl std::ops::Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0[self.1..]
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0[self.1..]
    }
}

/// One tile shape's kernel with its operands: A and packed B small enough to stay in cache.
struct Loop {
    _code: memmap2::Mmap,
    kernel: GemmKernel,
    depth: usize,
    columns: usize,
    flops_per_call: f64,
    a: Aligned,
    b: Aligned,
    c: Aligned,
}

impl Loop {
    fn new(shape: TileShape, depth: usize) -> Loop {
        let bytes = assemble_gemm(shape).expect("assemble");
        let mut code = memmap2::MmapMut::map_anon(bytes.len()).expect("map");
        code.copy_from_slice(&bytes);
        let code = code.make_exec().expect("exec");
        // SAFETY: the bytes are a GEMM kernel with exactly this signature (microkernel.rs).
        let kernel: GemmKernel = unsafe { std::mem::transmute(code.as_ptr()) };
        let panels = shape.columns.div_ceil(PANEL);
        let mut a = Aligned::new(shape.rows * depth);
        a.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (i % 7) as f32 * 0.01);
        let mut b = Aligned::new(panels * PANEL * depth);
        b.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (i % 5) as f32 * 0.01);
        let c = Aligned::new(shape.rows * shape.columns);
        Loop {
            _code: code,
            kernel,
            depth,
            columns: shape.columns,
            flops_per_call: 2.0 * (shape.rows * shape.columns * depth) as f64,
            a,
            b,
            c,
        }
    }

    /// Seconds taken by `calls` kernel calls.
    fn time(&mut self, calls: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..calls {
            // SAFETY: A is rows × depth, B panels × depth × 16, C rows × columns, as passed.
            unsafe {
                (self.kernel)(
                    self.a.as_ptr(),
                    (self.depth * 4) as i64,
                    self.b.as_ptr(),
                    (PANEL * 4) as i64,
                    self.c.as_mut_ptr(),
                    (self.columns * 4) as i64,
                    self.depth as i64,
                    1,
                    (self.depth * PANEL * 4) as i64,
                    self.b.as_ptr(),
                    0,
                    1,
                    0,
                )
            };
        }
        std::hint::black_box(&self.c);
        start.elapsed().as_secs_f64()
    }

    /// Calls doing about `gflop` GFLOP.
    fn calls_for(&self, gflop: f64) -> usize {
        (gflop * 1e9 / self.flops_per_call).max(1.0) as usize
    }
}

/// Best GFLOP/s of `shape` over a few timed batches (0.4 GFLOP each), at `depth`.
fn measure(shape: TileShape, depth: usize) -> f64 {
    let mut kernel_loop = Loop::new(shape, depth);
    let calls = kernel_loop.calls_for(0.4);
    let best = (0..7)
        .map(|_| kernel_loop.time(calls))
        .fold(f64::INFINITY, f64::min);
    kernel_loop.flops_per_call * calls as f64 / best / 1e9
}

/// The micro-kernels' peak in isolation.
#[derive(clap::Parser)]
struct Args {
    /// Print JSON: {"tiles": [every shape and depth], "runs": [the runs below]}.
    #[arg(long)]
    json: bool,
    /// After the sweep, time each of the --best tiles this many times, in turn, each run doing
    /// --run-gflop GFLOP: series as long as a network's runs, whose median compares with the
    /// network's median (the sweep's best-of-7 batches is a best case).
    #[arg(long, default_value_t = 0)]
    runs: usize,
    /// GFLOP per run of --runs (ResNet50 at 224x224 is 7.7).
    #[arg(long, default_value_t = 1.0)]
    run_gflop: f64,
    /// How many of the sweep's fastest tiles --runs times (the sweep's order is noisy).
    #[arg(long, default_value_t = 3)]
    best: usize,
    /// Time these tiles with --runs instead of the sweep's fastest ("avx512:9x48:512": set,
    /// rows x columns, depth), as an earlier sweep chose them.
    #[arg(long, value_parser = parse_tile)]
    tile: Vec<(TileShape, usize)>,
    /// No sweep: only the --tile runs.
    #[arg(long, requires = "tile")]
    no_sweep: bool,
}

fn parse_tile(text: &str) -> Result<(TileShape, usize), String> {
    let usage = || format!("{text:?}: expected set:ROWSxCOLUMNS:DEPTH, like avx512:9x48:512");
    let mut fields = text.split(':');
    let (Some(set), Some(size), Some(depth), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(usage());
    };
    let isa = match set.to_ascii_lowercase().as_str() {
        "avx512" => Isa::Avx512,
        "avx2" => Isa::Avx2,
        _ => return Err(usage()),
    };
    let (rows, columns) = size.split_once('x').ok_or_else(usage)?;
    let number = |field: &str| field.parse::<usize>().map_err(|_| usage());
    let (rows, columns, depth) = (number(rows)?, number(columns)?, number(depth)?);
    let vectors = columns / isa.lanes();
    if columns % isa.lanes() != 0 || !(1..=isa.max_vectors()).contains(&vectors) {
        return Err(format!("{text:?}: no {set} tile is {columns} columns wide"));
    }
    if rows != isa.max_rows(vectors) || depth == 0 {
        return Err(format!(
            "{text:?}: the {set} tile {columns} wide has {} rows",
            isa.max_rows(vectors)
        ));
    }
    Ok((
        TileShape {
            isa,
            rows,
            columns,
            epilogue: MachineEpilogue::default(),
        },
        depth,
    ))
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let mut isas = Vec::new();
    if std::arch::is_x86_feature_detected!("avx512f") {
        isas.push(Isa::Avx512);
    }
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        isas.push(Isa::Avx2);
    }
    if let Some((shape, _)) = args
        .tile
        .iter()
        .find(|(shape, _)| !isas.contains(&shape.isa))
    {
        eprintln!("kernel_peak: this CPU cannot run {:?} tiles", shape.isa);
        std::process::exit(2);
    }
    let swept = if args.no_sweep { &[][..] } else { &isas[..] };
    let mut sweep = Vec::new();
    for &isa in swept {
        for vectors in 1..=isa.max_vectors() {
            let shape = TileShape {
                isa,
                rows: isa.max_rows(vectors),
                columns: vectors * isa.lanes(),
                epilogue: MachineEpilogue::default(),
            };
            for depth in [64, 128, 256, 512] {
                let gflops = measure(shape, depth);
                if !args.json {
                    println!("{} depth {depth}: {gflops:.1} GFLOP/s", name(shape));
                }
                sweep.push((shape, depth, gflops));
            }
        }
    }
    let tiles: Vec<_> = sweep
        .iter()
        .map(|&(shape, depth, gflops)| {
            serde_json::json!({
                "isa": format!("{:?}", shape.isa), "rows": shape.rows,
                "columns": shape.columns, "depth": depth, "gflops": gflops,
            })
        })
        .collect();
    sweep.sort_by(|x, y| y.2.total_cmp(&x.2));
    let chosen: Vec<(TileShape, usize)> = match (args.runs, args.tile.is_empty()) {
        (0, _) => Vec::new(),
        (_, true) => sweep
            .iter()
            .take(args.best)
            .map(|&(shape, depth, _)| (shape, depth))
            .collect(),
        (_, false) => args.tile.clone(),
    };
    let mut loops: Vec<_> = chosen
        .into_iter()
        .map(|(shape, depth)| {
            let kernel_loop = Loop::new(shape, depth);
            let calls = kernel_loop.calls_for(args.run_gflop);
            (shape, kernel_loop, calls, Vec::new())
        })
        .collect();
    for _ in 0..args.runs {
        for (_, kernel_loop, calls, ms) in &mut loops {
            ms.push(kernel_loop.time(*calls) * 1e3);
        }
    }
    let runs: Vec<_> = loops
        .iter()
        .map(|(shape, kernel_loop, calls, ms)| {
            let gflop = kernel_loop.flops_per_call * *calls as f64 / 1e9;
            let mut sorted = ms.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            if !args.json {
                println!(
                    "{} depth {}, {} runs of {gflop:.2} GFLOP: median {median:.2} ms \
                     ({:.1} GFLOP/s), min {:.2} ms ({:.1} GFLOP/s)",
                    name(*shape),
                    kernel_loop.depth,
                    ms.len(),
                    gflop / median * 1e3,
                    sorted[0],
                    gflop / sorted[0] * 1e3
                );
            }
            serde_json::json!({
                "isa": format!("{:?}", shape.isa), "rows": shape.rows, "columns": shape.columns,
                "depth": kernel_loop.depth, "gflop": gflop, "ms": ms,
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::json!({"tiles": tiles, "runs": runs}));
    }
}

fn name(shape: TileShape) -> String {
    format!("{:?} {}x{}", shape.isa, shape.rows, shape.columns)
}
