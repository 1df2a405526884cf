//! The GEMM micro-kernels' peak in isolation: each tile shape the frame can choose, called in a
//! loop on one core with A and packed B resident in cache, as GFLOP/s. This is the ceiling a
//! whole network's GEMM layers are measured against (benches/run.sh reports ResNet50's share of
//! it).
//!
//!     cargo run --release -p tfjsc --example kernel_peak [-- --json]

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

/// Best GFLOP/s of `shape` over a few timed batches, at `depth`.
fn measure(shape: TileShape, depth: usize) -> f64 {
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
    let mut c = Aligned::new(shape.rows * shape.columns);
    let calls = (2e8 / (shape.rows * shape.columns * depth) as f64).max(1.0) as usize;
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..calls {
            // SAFETY: A is rows × depth, B panels × depth × 16, C rows × columns, as passed.
            unsafe {
                kernel(
                    a.as_ptr(),
                    (depth * 4) as i64,
                    b.as_ptr(),
                    (PANEL * 4) as i64,
                    c.as_mut_ptr(),
                    (shape.columns * 4) as i64,
                    depth as i64,
                    1,
                    (depth * PANEL * 4) as i64,
                    b.as_ptr(),
                    0,
                    1,
                    0,
                )
            };
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (shape.rows * shape.columns * depth * calls) as f64 / best / 1e9
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let mut isas = Vec::new();
    if std::arch::is_x86_feature_detected!("avx512f") {
        isas.push(Isa::Avx512);
    }
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        isas.push(Isa::Avx2);
    }
    let mut results = Vec::new();
    for isa in isas {
        for vectors in 1..=isa.max_vectors() {
            let rows = isa.max_rows(vectors);
            let shape = TileShape {
                isa,
                rows,
                columns: vectors * isa.lanes(),
                epilogue: MachineEpilogue::default(),
            };
            for depth in [64, 128, 256, 512] {
                let gflops = measure(shape, depth);
                if !json {
                    println!(
                        "{isa:?} {rows}x{} depth {depth}: {gflops:.1} GFLOP/s",
                        shape.columns
                    );
                }
                results.push(serde_json::json!({
                    "isa": format!("{isa:?}"), "rows": rows, "columns": shape.columns,
                    "depth": depth, "gflops": gflops,
                }));
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(results));
    }
}
