//! Machine-code GEMM micro-kernels for x86-64 AVX2 + FMA, assembled per tile shape.
//!
//! Cranelift's x86-64 backend emits 128-bit vectors only, and its FMA ties the destination to a
//! multiplicand (an extra register copy per FMA). Compute-bound inner loops are therefore
//! assembled here as machine code and placed into the same object as the Cranelift code that
//! drives them (`define_function_bytes`), as design.md's "Making it fast" lays out. The portable
//! Cranelift kernels stay the fallback (`--cpu x86-64-v2`, other architectures).
//!
//! One kernel computes a tile of `rows` × `columns` (rows ≤ 6, columns ≤ 16: two ymm vectors,
//! the last one masked when `columns` is not a multiple of 8):
//!
//! ```text
//! C[p, j] = (accumulate ? C[p, j] : 0) + Σ_k A[p, k] · B[k, j]    p < rows, j < columns
//! A[p, k] at a + p·lda + 4k,  B[k, j] at b + k·ldbc + 4j,  C[p, j] at c + p·ldbc + 4j
//! ```
//! Signature (System V): `kernel(a, lda, b, ldbc, c, k, accumulate)`, all 64-bit. B and C share a
//! row stride: in NHWC convolutions and row-major products both are `output channels × 4`. The
//! kernel uses only caller-saved registers, and touches no memory outside those extents: masked
//! lanes (`vmaskmovps`) are neither loaded nor stored.
//!
//! Registers: 12 accumulators (ymm0-11, row-major), B vectors ymm12-13, the broadcast of A in
//! ymm14, the tail mask in ymm15.

use iced_x86::code_asm::*;
use iced_x86::Register;

use super::CodegenError;

/// Rows of the largest tile.
pub const MAX_ROWS: usize = 6;
/// Columns of the widest tile (two ymm vectors of 8 lanes).
pub const MAX_COLUMNS: usize = 16;
const LANES: usize = 8;

/// Which tile a GEMM kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileShape {
    pub rows: usize,
    pub columns: usize,
}

/// A depthwise-convolution kernel, specialised to one layer's geometry: `pixels` output pixels
/// (≤ 12) of one output row by `lanes` channels (≤ 8, one ymm; masked below 8), over a
/// `window[0]` × `window[1]` filter. Byte strides: between the input pixels of consecutive
/// outputs, between filter rows and columns in the input, between taps in the filter, and between
/// output pixels. Signature (System V): `kernel(input, filter, output)`, where `input` points at
/// the first window's top-left element, `filter` at tap (0, 0) and `output` at the first output,
/// all at the tile's first channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DepthwiseShape {
    pub pixels: usize,
    pub lanes: usize,
    pub window: [usize; 2],
    pub input_pixel_stride: usize,
    pub input_row_stride: usize,
    pub input_column_stride: usize,
    pub tap_stride: usize,
    pub output_pixel_stride: usize,
}

/// Every machine-code kernel shape, as placed into the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Microkernel {
    Gemm(TileShape),
    Depthwise(DepthwiseShape),
}

impl Microkernel {
    /// A local symbol name, unique per shape.
    pub fn symbol(&self) -> String {
        match self {
            Microkernel::Gemm(t) => format!("tfjsc_gemm_avx2_{}x{}", t.rows, t.columns),
            Microkernel::Depthwise(d) => format!(
                "tfjsc_depthwise_avx2_{}x{}_{}x{}_{}_{}_{}_{}_{}",
                d.pixels,
                d.lanes,
                d.window[0],
                d.window[1],
                d.input_pixel_stride,
                d.input_row_stride,
                d.input_column_stride,
                d.tap_stride,
                d.output_pixel_stride
            ),
        }
    }

    /// Number of 64-bit arguments.
    pub fn parameter_count(&self) -> usize {
        match self {
            Microkernel::Gemm(_) => 7,
            Microkernel::Depthwise(_) => 3,
        }
    }

    pub fn assemble(&self) -> Result<Vec<u8>, CodegenError> {
        match self {
            Microkernel::Gemm(shape) => assemble(*shape),
            Microkernel::Depthwise(shape) => assemble_depthwise(*shape),
        }
    }
}

/// Largest depthwise tile, in output pixels (12 accumulators + filter, input and mask registers).
pub const MAX_DEPTHWISE_PIXELS: usize = 12;

fn displacement(bytes: usize) -> Result<i32, CodegenError> {
    i32::try_from(bytes)
        .map_err(|_| CodegenError::Backend(format!("displacement {bytes} does not fit 32 bits")))
}

/// Eight 32-bit lanes starting `8 - lanes` dwords into [-1 × 8, 0 × 8]: `lanes` ones, then zeros.
fn load_mask(
    a: &mut CodeAssembler,
    table: CodeLabel,
    lanes: usize,
    mask: AsmRegisterYmm,
) -> Result<(), CodegenError> {
    a.lea(rax, ptr(table)).map_err(asm_error)?;
    a.vmovdqu(mask, ymmword_ptr(rax + ((LANES - lanes) * 4) as i32))
        .map_err(asm_error)
}

fn emit_mask_table(a: &mut CodeAssembler, table: &mut CodeLabel) -> Result<(), CodegenError> {
    a.set_label(table).map_err(asm_error)?;
    let bytes: Vec<u8> = (0..2 * LANES)
        .flat_map(|i| if i < LANES { [0xFF; 4] } else { [0; 4] })
        .collect();
    a.db(&bytes).map_err(asm_error)
}

/// Assembles a depthwise kernel (see [`DepthwiseShape`]).
pub fn assemble_depthwise(shape: DepthwiseShape) -> Result<Vec<u8>, CodegenError> {
    let DepthwiseShape {
        pixels,
        lanes,
        window,
        ..
    } = shape;
    if pixels == 0
        || pixels > MAX_DEPTHWISE_PIXELS
        || lanes == 0
        || lanes > LANES
        || window.contains(&0)
    {
        return Err(CodegenError::Backend(format!(
            "no depthwise micro-kernel for {shape:?}"
        )));
    }
    let masked = lanes < LANES;
    let (filter_vector, input_vector, mask) = (ymm12, ymm13, ymm15);
    let mut a = CodeAssembler::new(64).map_err(asm_error)?;
    let mut mask_table = a.create_label();
    if masked {
        load_mask(&mut a, mask_table, lanes, mask)?;
    }
    for p in 0..pixels {
        a.vxorps(ymm(p), ymm(p), ymm(p)).map_err(asm_error)?;
    }
    for ky in 0..window[0] {
        for kx in 0..window[1] {
            let tap = displacement((ky * window[1] + kx) * shape.tap_stride)?;
            if masked {
                a.vmaskmovps(filter_vector, mask, ymmword_ptr(rsi + tap))
                    .map_err(asm_error)?;
            } else {
                a.vmovups(filter_vector, ymmword_ptr(rsi + tap))
                    .map_err(asm_error)?;
            }
            for p in 0..pixels {
                let offset = displacement(
                    ky * shape.input_row_stride
                        + kx * shape.input_column_stride
                        + p * shape.input_pixel_stride,
                )?;
                if masked {
                    a.vmaskmovps(input_vector, mask, ymmword_ptr(rdi + offset))
                        .map_err(asm_error)?;
                    a.vfmadd231ps(ymm(p), filter_vector, input_vector)
                        .map_err(asm_error)?;
                } else {
                    a.vfmadd231ps(ymm(p), filter_vector, ymmword_ptr(rdi + offset))
                        .map_err(asm_error)?;
                }
            }
        }
    }
    for p in 0..pixels {
        let destination = ymmword_ptr(rdx + displacement(p * shape.output_pixel_stride)?);
        if masked {
            a.vmaskmovps(destination, mask, ymm(p)).map_err(asm_error)?;
        } else {
            a.vmovups(destination, ymm(p)).map_err(asm_error)?;
        }
    }
    a.vzeroupper().map_err(asm_error)?;
    a.ret().map_err(asm_error)?;
    if masked {
        emit_mask_table(&mut a, &mut mask_table)?;
    }
    a.assemble(0).map_err(asm_error)
}

/// Splits `total` into `(start, count, width)` runs: as many tiles of `widest` as fit, then one
/// narrower tile for the rest.
pub fn tile_runs(total: usize, widest: usize) -> Vec<(usize, usize, usize)> {
    let mut runs = vec![(0, total / widest, widest)];
    if !total.is_multiple_of(widest) {
        runs.push((total / widest * widest, 1, total % widest));
    }
    runs.retain(|run| run.1 > 0);
    runs
}

fn ymm(index: usize) -> AsmRegisterYmm {
    // Indices stay below 16 by construction (rows ≤ 6, vectors ≤ 2).
    registers::get_ymm(Register::YMM0 + index as u32).unwrap_or(ymm15)
}

fn asm_error(error: IcedError) -> CodegenError {
    CodegenError::Backend(format!("assembling a micro-kernel: {error}"))
}

/// Row `p` of A (rdi = row 0, r10 = row 3, rsi = lda).
fn a_row(p: usize) -> AsmMemoryOperand {
    match p {
        0 => dword_ptr(rdi),
        1 => dword_ptr(rdi + rsi),
        2 => dword_ptr(rdi + rsi * 2),
        3 => dword_ptr(r10),
        4 => dword_ptr(rdi + rsi * 4),
        _ => dword_ptr(r10 + rsi * 2),
    }
}

/// Row `p` of C plus `offset` bytes (r8 = row 0, r11 = row 3, rcx = ldc).
fn c_row(p: usize, offset: i32) -> AsmMemoryOperand {
    match p {
        0 => ymmword_ptr(r8 + offset),
        1 => ymmword_ptr(r8 + rcx + offset),
        2 => ymmword_ptr(r8 + rcx * 2 + offset),
        3 => ymmword_ptr(r11 + offset),
        4 => ymmword_ptr(r8 + rcx * 4 + offset),
        _ => ymmword_ptr(r11 + rcx * 2 + offset),
    }
}

/// Assembles the kernel for `shape`.
pub fn assemble(shape: TileShape) -> Result<Vec<u8>, CodegenError> {
    let TileShape { rows, columns } = shape;
    if rows == 0 || rows > MAX_ROWS || columns == 0 || columns > MAX_COLUMNS {
        return Err(CodegenError::Backend(format!(
            "no micro-kernel for a {rows}x{columns} tile"
        )));
    }
    let vectors = columns.div_ceil(LANES);
    let tail = columns % LANES; // lanes of the last vector when it is partial
    let masked = |v: usize| tail != 0 && v + 1 == vectors;
    let accumulator = |p: usize, v: usize| ymm(p * vectors + v);
    let b_vector = |v: usize| ymm(12 + v);
    let (broadcast, mask) = (ymm14, ymm15);
    let mut a = CodeAssembler::new(64).map_err(asm_error)?;
    let mut zero_start = a.create_label();
    let mut loop_start = a.create_label();
    let mut loop_body = a.create_label();
    let mut store = a.create_label();
    let mut mask_table = a.create_label();

    // r10 = A row 3, r11 = C row 3.
    a.lea(r10, ptr(rdi + rsi * 2)).map_err(asm_error)?;
    a.add(r10, rsi).map_err(asm_error)?;
    a.lea(r11, ptr(r8 + rcx * 2)).map_err(asm_error)?;
    a.add(r11, rcx).map_err(asm_error)?;
    if tail != 0 {
        // Eight lanes starting `8 - tail` dwords into [-1 × 8, 0 × 8]: `tail` ones, then zeros.
        a.lea(rax, ptr(mask_table)).map_err(asm_error)?;
        a.vmovdqu(mask, ymmword_ptr(rax + ((LANES - tail) * 4) as i32))
            .map_err(asm_error)?;
    }
    // The 7th argument (accumulate) is on the stack above the return address.
    a.mov(rax, qword_ptr(rsp + 8)).map_err(asm_error)?;
    a.test(rax, rax).map_err(asm_error)?;
    a.jz(zero_start).map_err(asm_error)?;
    for p in 0..rows {
        for v in 0..vectors {
            let source = c_row(p, (v * 32) as i32);
            if masked(v) {
                a.vmaskmovps(accumulator(p, v), mask, source)
                    .map_err(asm_error)?;
            } else {
                a.vmovups(accumulator(p, v), source).map_err(asm_error)?;
            }
        }
    }
    a.jmp(loop_start).map_err(asm_error)?;
    a.set_label(&mut zero_start).map_err(asm_error)?;
    for p in 0..rows {
        for v in 0..vectors {
            a.vxorps(accumulator(p, v), accumulator(p, v), accumulator(p, v))
                .map_err(asm_error)?;
        }
    }
    a.set_label(&mut loop_start).map_err(asm_error)?;
    a.test(r9, r9).map_err(asm_error)?;
    a.jz(store).map_err(asm_error)?;
    a.set_label(&mut loop_body).map_err(asm_error)?;
    for v in 0..vectors {
        let source = ymmword_ptr(rdx + (v * 32) as i32);
        if masked(v) {
            a.vmaskmovps(b_vector(v), mask, source).map_err(asm_error)?;
        } else {
            a.vmovups(b_vector(v), source).map_err(asm_error)?;
        }
    }
    for p in 0..rows {
        a.vbroadcastss(broadcast, a_row(p)).map_err(asm_error)?;
        for v in 0..vectors {
            a.vfmadd231ps(accumulator(p, v), b_vector(v), broadcast)
                .map_err(asm_error)?;
        }
    }
    a.add(rdi, 4).map_err(asm_error)?;
    a.add(r10, 4).map_err(asm_error)?;
    a.add(rdx, rcx).map_err(asm_error)?;
    a.dec(r9).map_err(asm_error)?;
    a.jnz(loop_body).map_err(asm_error)?;
    a.set_label(&mut store).map_err(asm_error)?;
    for p in 0..rows {
        for v in 0..vectors {
            let destination = c_row(p, (v * 32) as i32);
            if masked(v) {
                a.vmaskmovps(destination, mask, accumulator(p, v))
                    .map_err(asm_error)?;
            } else {
                a.vmovups(destination, accumulator(p, v))
                    .map_err(asm_error)?;
            }
        }
    }
    a.vzeroupper().map_err(asm_error)?;
    a.ret().map_err(asm_error)?;
    if tail != 0 {
        a.set_label(&mut mask_table).map_err(asm_error)?;
        let table: Vec<u8> = (0..2 * LANES)
            .flat_map(|i| if i < LANES { [0xFF; 4] } else { [0; 4] })
            .collect();
        a.db(&table).map_err(asm_error)?;
    }
    a.assemble(0).map_err(asm_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tile_shape_assembles() {
        for rows in 1..=MAX_ROWS {
            for columns in 1..=MAX_COLUMNS {
                let bytes = assemble(TileShape { rows, columns }).unwrap();
                assert!(bytes.len() > 16, "{rows}x{columns}");
            }
        }
        assert!(assemble(TileShape {
            rows: 7,
            columns: 8
        })
        .is_err());
        assert!(assemble(TileShape {
            rows: 1,
            columns: 17
        })
        .is_err());
    }
}
