//! Machine-code micro-kernels for x86-64 (AVX2 + FMA, and AVX-512), assembled per tile shape.
//!
//! Cranelift's x86-64 backend emits 128-bit vectors only, and its FMA ties the destination to a
//! multiplicand (an extra register copy per FMA). Compute-bound inner loops are therefore
//! assembled here as machine code and placed into the same object as the Cranelift code that
//! drives them (`define_function_bytes`), as design.md's "Making it fast" lays out. The GEMM
//! frame (`gemm.rs`) chooses which tiles to use; the portable Cranelift tile with the same
//! contract is the fallback (`--cpu x86-64-v2`, other architectures).
//!
//! A GEMM kernel computes a tile of `rows` × `columns` (rows ≤ 12; columns ≤ the ISA's widest
//! tile, the last vector masked when `columns` is not a multiple of the lanes), summing over
//! `segments` runs of `depth` A columns that meet consecutive rows of B (a convolution's filter
//! rows: C stays in registers from one to the next):
//!
//! ```text
//! C[p, j] = (accumulate ? C[p, j] : 0) + Σ_s Σ_q A[p, s, q] · B[s·depth + q, j]
//!                                             p < rows, j < columns, s < segments, q < depth
//! A[p, s, q] at a + p·lda + s·segment_stride + 4q
//! B[q, j] at b + q·ldb + (j / 16)·panel_stride + 4·(j % 16)
//! C[p, j] at c + p·ldc + 4j
//! ```
//! B is read as panels of 16 columns: packed weights (`ldb` = 64, `panel_stride` = depth × 64)
//! and row-major matrices (`ldb` = row bytes, `panel_stride` = 64) are both this form.
//! Signature (System V): `kernel(a, lda, b, ldb, c, ldc, depth, accumulate, panel_stride,
//! prefetch, prefetch_step, segments, segment_stride)`, all 64-bit, `depth` and `segments` ≥ 1.
//! At K step `q` (counted over all segments) the kernel also prefetches the cache line at
//! `prefetch + q·prefetch_step` into L2: the frame points it at what the next call will read
//! (the next row tile's A, the next chunk of B), so that the fetch from L3 or memory overlaps
//! this call's FMAs. A prefetch is a hint (it never faults and changes no
//! result); the frame keeps its addresses inside the operands all the same. The kernel saves
//! the callee-saved registers it uses and touches no memory outside those extents: masked lanes
//! are neither loaded nor stored.

use iced_x86::code_asm::*;
use iced_x86::Register;

use super::CodegenError;
use tfjsc_runtime::winograd::Winograd;

/// Columns of one panel of packed B (one AVX-512 vector, two AVX2 vectors).
pub const PANEL: usize = 16;

/// Arguments of a GEMM kernel before its epilogue's operands (see the module documentation).
pub const GEMM_PARAMETERS: usize = 13;

/// Rows of the tallest GEMM tile (four groups of three A rows, one base register each).
pub const MAX_ROWS: usize = 12;

/// The vector instruction set a machine-code kernel is assembled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Cranelift's own 128-bit vectors (f32x4): no machine code, any CPU Cranelift targets.
    Portable,
    /// 256-bit ymm registers (16), AVX2 + FMA.
    Avx2,
    /// 512-bit zmm registers (32) with opmask tails: AVX-512 F.
    Avx512,
}

impl Isa {
    /// f32 lanes per vector.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Portable => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Widest GEMM tile in vectors (AVX-512: 4 × 16 columns; AVX2: 2 × 8; portable: 4 × 4).
    pub fn max_vectors(self) -> usize {
        match self {
            Isa::Portable => 4,
            Isa::Avx2 => 2,
            Isa::Avx512 => 4,
        }
    }

    /// Tallest GEMM tile `vectors` wide: accumulators, one register per B vector, the
    /// broadcast of A and (AVX2) the tail mask must fit the register file.
    pub fn max_rows(self, vectors: usize) -> usize {
        let free = match self {
            // 16 xmm registers, and Cranelift's FMA lowering wants a spare one.
            Isa::Portable => 16 - 2,
            Isa::Avx2 => 16 - 2,
            Isa::Avx512 => 32 - 1,
        };
        ((free - vectors) / vectors).min(MAX_ROWS)
    }

    /// Largest depthwise tile, in output pixels (accumulators + filter + input + mask).
    pub fn max_depthwise_pixels(self) -> usize {
        match self {
            Isa::Portable => 0,
            Isa::Avx2 => 12,
            Isa::Avx512 => MAX_DEPTHWISE_PIXELS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Which tile a GEMM kernel computes, and the epilogue it applies in registers before the
/// store (empty: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileShape {
    pub isa: Isa,
    pub rows: usize,
    pub columns: usize,
    pub epilogue: MachineEpilogue,
}

/// Where a binary epilogue step's operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepOperand {
    /// One value per output channel: a vector at the tile's first channel.
    Channel,
    /// A tensor of the output's shape: rows at the output's row stride.
    Full,
}

/// An epilogue step machine code applies to the accumulators before they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MachineStep {
    Add(StepOperand),
    Mul(StepOperand),
    /// max(x, 0), NaN kept.
    Relu,
    /// min(max(x, 0), 6), NaN kept.
    Relu6,
    /// x / (1 + e^-x) (AVX-512 only).
    Swish,
    /// 1 / (1 + e^-x) (AVX-512 only).
    Sigmoid,
}

/// Most epilogue steps a machine-code kernel applies.
pub const MAX_MACHINE_STEPS: usize = 6;

/// The steps, in order; each binary step reads the next operand pointer argument (after the
/// kernel's own arguments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MachineEpilogue {
    steps: [Option<MachineStep>; MAX_MACHINE_STEPS],
}

impl MachineEpilogue {
    /// `None` when there are more steps than a kernel applies.
    pub fn new(steps: &[MachineStep]) -> Option<MachineEpilogue> {
        if steps.len() > MAX_MACHINE_STEPS {
            return None;
        }
        let mut epilogue = MachineEpilogue::default();
        for (slot, &step) in epilogue.steps.iter_mut().zip(steps) {
            *slot = Some(step);
        }
        Some(epilogue)
    }

    pub fn steps(&self) -> impl Iterator<Item = MachineStep> + '_ {
        self.steps.iter().flatten().copied()
    }

    /// Where each operand pointer argument the steps read points, in order.
    pub fn operands(&self) -> impl Iterator<Item = StepOperand> + '_ {
        self.steps().filter_map(|step| match step {
            MachineStep::Add(source) | MachineStep::Mul(source) => Some(source),
            _ => None,
        })
    }

    /// Operand pointer arguments the steps read.
    pub fn operand_count(&self) -> usize {
        self.operands().count()
    }

    fn tag(&self) -> String {
        self.steps()
            .map(|step| match step {
                MachineStep::Add(StepOperand::Channel) => "ac",
                MachineStep::Add(StepOperand::Full) => "af",
                MachineStep::Mul(StepOperand::Channel) => "mc",
                MachineStep::Mul(StepOperand::Full) => "mf",
                MachineStep::Relu => "r",
                MachineStep::Relu6 => "r6",
                MachineStep::Swish => "sw",
                MachineStep::Sigmoid => "sg",
            })
            .collect::<Vec<_>>()
            .join("")
    }
}

/// The most output pixels one depthwise kernel computes (AVX-512's; AVX2 takes fewer).
pub const MAX_DEPTHWISE_PIXELS: usize = 28;

/// A depthwise-convolution kernel, specialised to one layer's geometry: `pixels` output pixels
/// of one output row by `lanes` channels (≤ one vector; masked below it), over a
/// `window[0]` × `window[1]` filter of which it reads only the taps inside the input: filter rows
/// `row_taps` for every pixel and, for pixel `p`, filter columns `column_taps[p]` (a border
/// pixel's window reaches into the padding, which contributes nothing; an empty range gives the
/// epilogue of zero). Byte strides: between the input pixels of consecutive outputs, between
/// filter rows and columns in the input, between taps in the filter, and between output pixels.
/// Signature (System V): `kernel(input, filter, output)`, where `input` is where the first
/// pixel's tap (0, 0) would be read (before the input's start when that tap is in the padding;
/// only taps inside are read), `filter` points at tap (0, 0) and `output` at the first output,
/// all at the tile's first channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DepthwiseShape {
    pub isa: Isa,
    /// Applied before the store; its operand pointers are arguments 4, 5, 6 (at most three).
    pub epilogue: MachineEpilogue,
    pub pixels: usize,
    pub lanes: usize,
    pub window: [usize; 2],
    /// `[first, end)` of the filter rows read.
    pub row_taps: [u16; 2],
    /// Per pixel, `[first, end)` of the filter columns read; entries from `pixels` on are unused
    /// and zero, so tiles of the same geometry share one kernel.
    pub column_taps: [[u16; 2]; MAX_DEPTHWISE_PIXELS],
    pub input_pixel_stride: usize,
    pub input_row_stride: usize,
    pub input_column_stride: usize,
    pub tap_stride: usize,
    pub output_pixel_stride: usize,
}

impl DepthwiseShape {
    /// Whether the kernel reads tap (`ky`, `kx`) for pixel `p`.
    fn reads(&self, p: usize, ky: usize, kx: usize) -> bool {
        let [row_first, row_end] = self.row_taps.map(usize::from);
        let [first, end] = self.column_taps[p].map(usize::from);
        (row_first..row_end).contains(&ky) && (first..end).contains(&kx)
    }
}

/// One of a Winograd convolution's two transforms, `L · X · Lᵀ` on each of `count` vectors of
/// `lanes` channels (`winograd.rs` has the algorithm): the input transform (L = Bᵀ, X a t × t
/// tile of the padded input, the result the tile's t² products) or the output transform (L =
/// Aᵀ, X the t² products of a tile, the result its m × m output pixels, of which the first
/// `valid` rows and columns are computed, finished by `epilogue` and stored).
///
/// X[a][b] is read at `source + a·source_strides[0] + b·source_strides[1]`, result (i, j) is
/// written at `target + i·target_strides[0] + j·target_strides[1]` (a full epilogue operand
/// has the target's layout). Signature (System V): `kernel(source, target, count, operands…)`,
/// `count` ≥ 1; vector g is `g · lanes · 4` bytes after vector 0 in the source, the target
/// and every operand (the masked tail, `lanes` below the vector width, comes with count 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WinogradShape {
    pub isa: Isa,
    pub variant: Winograd,
    /// The input transform (else the output transform).
    pub input: bool,
    pub lanes: usize,
    pub source_strides: [usize; 2],
    pub target_strides: [usize; 2],
    pub valid: [usize; 2],
    /// Output transform only; its operand pointers are arguments 4, 5, 6 (at most three).
    pub epilogue: MachineEpilogue,
}

impl WinogradShape {
    /// Whether every byte offset the kernel reads at or writes to fits the 32-bit displacements
    /// it addresses them with (else [`assemble_winograd`] refuses the shape).
    pub fn displacements_fit(&self) -> bool {
        let t = self.variant.input_tile();
        let reach = |[rows, columns]: [usize; 2], strides: [usize; 2]| {
            rows.saturating_sub(1) * strides[0] + columns.saturating_sub(1) * strides[1]
        };
        let farthest =
            reach([t, t], self.source_strides).max(reach(self.valid, self.target_strides));
        farthest <= i32::MAX as usize
    }
}

/// Every machine-code kernel shape, as placed into the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Microkernel {
    Gemm(TileShape),
    Depthwise(DepthwiseShape),
    Winograd(WinogradShape),
}

impl Microkernel {
    /// A local symbol name, unique per shape.
    pub fn symbol(&self) -> String {
        match self {
            Microkernel::Gemm(t) => format!(
                "tfjsc_gemm_{}_{}x{}_{}",
                t.isa.name(),
                t.rows,
                t.columns,
                t.epilogue.tag()
            ),
            Microkernel::Depthwise(d) => {
                let mut name = format!(
                    "tfjsc_depthwise_{}_{}_{}x{}_{}x{}_{}_{}_{}_{}_{}",
                    d.isa.name(),
                    d.epilogue.tag(),
                    d.pixels,
                    d.lanes,
                    d.window[0],
                    d.window[1],
                    d.input_pixel_stride,
                    d.input_row_stride,
                    d.input_column_stride,
                    d.tap_stride,
                    d.output_pixel_stride
                );
                // The taps read, where not the whole filter.
                let full = [0, d.window[1] as u16];
                if d.row_taps != [0, d.window[0] as u16] {
                    name += &format!("_r{}t{}", d.row_taps[0], d.row_taps[1]);
                }
                for (p, taps) in d.column_taps[..d.pixels].iter().enumerate() {
                    if *taps != full {
                        name += &format!("_p{p}c{}t{}", taps[0], taps[1]);
                    }
                }
                name
            }
            Microkernel::Winograd(w) => format!(
                "tfjsc_winograd_{}_{}_{:?}_{}_{}x{}_{}x{}_{}x{}_{}",
                w.isa.name(),
                if w.input { "in" } else { "out" },
                w.variant,
                w.lanes,
                w.source_strides[0],
                w.source_strides[1],
                w.target_strides[0],
                w.target_strides[1],
                w.valid[0],
                w.valid[1],
                w.epilogue.tag()
            ),
        }
    }

    /// Number of 64-bit arguments.
    pub fn parameter_count(&self) -> usize {
        match self {
            Microkernel::Gemm(t) => GEMM_PARAMETERS + t.epilogue.operand_count(),
            Microkernel::Depthwise(d) => 3 + d.epilogue.operand_count(),
            Microkernel::Winograd(w) => 3 + w.epilogue.operand_count(),
        }
    }

    pub fn assemble(&self) -> Result<Vec<u8>, CodegenError> {
        match self {
            Microkernel::Gemm(shape) => assemble_gemm(*shape),
            Microkernel::Depthwise(shape) => assemble_depthwise(*shape),
            Microkernel::Winograd(shape) => assemble_winograd(*shape),
        }
    }
}

fn asm_error(error: IcedError) -> CodegenError {
    CodegenError::Backend(format!("assembling a micro-kernel: {error}"))
}

fn displacement(bytes: usize) -> Result<i32, CodegenError> {
    i32::try_from(bytes)
        .map_err(|_| CodegenError::Backend(format!("displacement {bytes} does not fit 32 bits")))
}

/// The vector operations both ISAs share, emitted for one of them. Vector registers are named by
/// index; on AVX2 the tail mask lives in ymm15, on AVX-512 in k1. Operations on the tail vector
/// (`masked`) cover only its lanes; on AVX-512 a tail of at most 8 lanes runs on the ymm half
/// of the register, as an FMA on ymm takes half the issue slots of one on zmm where the CPU
/// splits 512-bit operations in two (Zen 4) and the same elsewhere.
struct Vectors {
    a: CodeAssembler,
    /// zmm registers and opmasks (AVX-512), else ymm (AVX2).
    zmm: bool,
    /// Lanes of the tail vector (0 before [`Vectors::set_mask`]).
    tail_lanes: usize,
    /// The label of the exp constants ([`EXP_CONSTANTS`]), placed after the code when used.
    exp_table: Option<CodeLabel>,
    /// The mask table's label (AVX2), placed after the code when used.
    mask_table: Option<CodeLabel>,
}

const AVX2_MASK: usize = 15;

impl Vectors {
    fn new(isa: Isa) -> Result<Vectors, CodegenError> {
        let zmm = match isa {
            Isa::Avx2 => false,
            Isa::Avx512 => true,
            Isa::Portable => {
                return Err(CodegenError::Backend(
                    "portable kernels are Cranelift functions, not machine code".into(),
                ))
            }
        };
        Ok(Vectors {
            a: CodeAssembler::new(64).map_err(asm_error)?,
            zmm,
            tail_lanes: 0,
            exp_table: None,
            mask_table: None,
        })
    }

    fn ymm(index: usize) -> AsmRegisterYmm {
        registers::get_ymm(Register::YMM0 + index as u32).unwrap_or(ymm15)
    }

    fn zmm(index: usize) -> AsmRegisterZmm {
        registers::get_zmm(Register::ZMM0 + index as u32).unwrap_or(zmm31)
    }

    /// Whether the tail vector runs on ymm halves (AVX-512, at most 8 lanes).
    fn half_tail(&self) -> bool {
        self.zmm && self.tail_lanes <= 8
    }

    /// Readies the tail mask for vectors of `lanes` < the full width.
    fn set_mask(&mut self, lanes: usize) -> Result<(), CodegenError> {
        self.tail_lanes = lanes;
        match self.zmm {
            false => {
                // Eight lanes starting `8 - lanes` dwords into [-1 × 8, 0 × 8].
                let table = self.a.create_label();
                self.a.lea(rax, ptr(table)).map_err(asm_error)?;
                let offset = ((8 - lanes) * 4) as i32;
                self.a
                    .vmovdqu(Self::ymm(AVX2_MASK), ymmword_ptr(rax + offset))
                    .map_err(asm_error)?;
                self.mask_table = Some(table);
            }
            true => {
                self.a
                    .mov(eax, ((1u32 << lanes) - 1) as i32)
                    .map_err(asm_error)?;
                self.a.kmovw(k1, eax).map_err(asm_error)?;
            }
        }
        Ok(())
    }

    fn load(
        &mut self,
        register: usize,
        address: AsmMemoryOperand,
        masked: bool,
    ) -> Result<(), CodegenError> {
        let (half, exact) = (self.half_tail(), self.tail_lanes == 8);
        let a = &mut self.a;
        match (self.zmm, masked) {
            (false, false) => a.vmovups(Self::ymm(register), ymmword_ptr(address)),
            (false, true) => a.vmaskmovps(
                Self::ymm(register),
                Self::ymm(AVX2_MASK),
                ymmword_ptr(address),
            ),
            (true, false) => a.vmovups(Self::zmm(register), zmmword_ptr(address)),
            // A ymm write zeroes the register's upper half.
            (true, true) if exact => a.evex().vmovups(Self::ymm(register), ymmword_ptr(address)),
            // EVEX forced: the assembler otherwise picks VEX, which has no mask.
            (true, true) if half => a
                .evex()
                .vmovups(Self::ymm(register).k1().z(), ymmword_ptr(address)),
            (true, true) => a.vmovups(Self::zmm(register).k1().z(), zmmword_ptr(address)),
        }
        .map_err(asm_error)
    }

    fn store(
        &mut self,
        address: AsmMemoryOperand,
        register: usize,
        masked: bool,
    ) -> Result<(), CodegenError> {
        let (half, exact) = (self.half_tail(), self.tail_lanes == 8);
        let a = &mut self.a;
        match (self.zmm, masked) {
            (false, false) => a.vmovups(ymmword_ptr(address), Self::ymm(register)),
            (false, true) => a.vmaskmovps(
                ymmword_ptr(address),
                Self::ymm(AVX2_MASK),
                Self::ymm(register),
            ),
            (true, false) => a.vmovups(zmmword_ptr(address), Self::zmm(register)),
            (true, true) if exact => a.evex().vmovups(ymmword_ptr(address), Self::ymm(register)),
            (true, true) if half => a
                .evex()
                .vmovups(ymmword_ptr(address).k1(), Self::ymm(register)),
            (true, true) => a.vmovups(zmmword_ptr(address).k1(), Self::zmm(register)),
        }
        .map_err(asm_error)
    }

    fn zero(&mut self, register: usize) -> Result<(), CodegenError> {
        match self.zmm {
            false => {
                let r = Self::ymm(register);
                self.a.vxorps(r, r, r)
            }
            true => {
                let r = Self::zmm(register);
                self.a.vpxord(r, r, r)
            }
        }
        .map_err(asm_error)
    }

    fn broadcast(
        &mut self,
        register: usize,
        address: AsmMemoryOperand,
    ) -> Result<(), CodegenError> {
        match self.zmm {
            false => self.a.vbroadcastss(Self::ymm(register), dword_ptr(address)),
            true => self.a.vbroadcastss(Self::zmm(register), dword_ptr(address)),
        }
        .map_err(asm_error)
    }

    /// `accumulator += x · y` (over the tail's lanes when `masked`; lanes past them may take
    /// any value, as they are never stored).
    fn fma(
        &mut self,
        accumulator: usize,
        x: usize,
        y: usize,
        masked: bool,
    ) -> Result<(), CodegenError> {
        if self.zmm && masked && self.half_tail() {
            // EVEX, as the registers may be ymm16-31.
            return self
                .a
                .evex()
                .vfmadd231ps(Self::ymm(accumulator), Self::ymm(x), Self::ymm(y))
                .map_err(asm_error);
        }
        match self.zmm {
            false => self
                .a
                .vfmadd231ps(Self::ymm(accumulator), Self::ymm(x), Self::ymm(y)),
            true => self
                .a
                .vfmadd231ps(Self::zmm(accumulator), Self::zmm(x), Self::zmm(y)),
        }
        .map_err(asm_error)
    }

    /// `accumulator += x · memory` (a full vector at `address`).
    fn fma_memory(
        &mut self,
        accumulator: usize,
        x: usize,
        address: AsmMemoryOperand,
    ) -> Result<(), CodegenError> {
        match self.zmm {
            false => self
                .a
                .vfmadd231ps(Self::ymm(accumulator), Self::ymm(x), ymmword_ptr(address)),
            true => self
                .a
                .vfmadd231ps(Self::zmm(accumulator), Self::zmm(x), zmmword_ptr(address)),
        }
        .map_err(asm_error)
    }

    /// `target ± x · |coefficient|` (1 and -1 as an addition or subtraction; `constant` holds
    /// |coefficient| otherwise).
    fn add_multiple(
        &mut self,
        target: usize,
        x: usize,
        coefficient: f64,
        constant: usize,
    ) -> Result<(), CodegenError> {
        match coefficient {
            1.0 => self.arithmetic(Arithmetic::Add, target, target, x),
            -1.0 => self.arithmetic(Arithmetic::Sub, target, target, x),
            _ => {
                let a = &mut self.a;
                match (self.zmm, coefficient > 0.0) {
                    (false, true) => {
                        a.vfmadd231ps(Self::ymm(target), Self::ymm(x), Self::ymm(constant))
                    }
                    (false, false) => {
                        a.vfnmadd231ps(Self::ymm(target), Self::ymm(x), Self::ymm(constant))
                    }
                    (true, true) => {
                        a.vfmadd231ps(Self::zmm(target), Self::zmm(x), Self::zmm(constant))
                    }
                    (true, false) => {
                        a.vfnmadd231ps(Self::zmm(target), Self::zmm(x), Self::zmm(constant))
                    }
                }
                .map_err(asm_error)
            }
        }
    }

    /// Loads `value`'s f32 bits into every lane of `register` (through eax).
    fn splat(&mut self, register: usize, value: f32) -> Result<(), CodegenError> {
        self.a.mov(eax, value.to_bits() as i32).map_err(asm_error)?;
        match self.zmm {
            false => {
                self.a.vmovd(xmm_of(register), eax).map_err(asm_error)?;
                self.a.vbroadcastss(Self::ymm(register), xmm_of(register))
            }
            // zmm16-31 have no VEX encoding: broadcast straight from the GPR (EVEX).
            true => self.a.vpbroadcastd(Self::zmm(register), eax),
        }
        .map_err(asm_error)
    }

    /// `target = op(x, y)` for the epilogue's vector arithmetic.
    fn arithmetic(
        &mut self,
        op: Arithmetic,
        target: usize,
        x: usize,
        y: usize,
    ) -> Result<(), CodegenError> {
        let a = &mut self.a;
        match self.zmm {
            false => {
                let (t, x, y) = (Self::ymm(target), Self::ymm(x), Self::ymm(y));
                match op {
                    Arithmetic::Add => a.vaddps(t, x, y),
                    Arithmetic::Sub => a.vsubps(t, x, y),
                    Arithmetic::Mul => a.vmulps(t, x, y),
                    Arithmetic::Max => a.vmaxps(t, x, y),
                    Arithmetic::Min => a.vminps(t, x, y),
                }
            }
            true => {
                let (t, x, y) = (Self::zmm(target), Self::zmm(x), Self::zmm(y));
                match op {
                    Arithmetic::Add => a.vaddps(t, x, y),
                    Arithmetic::Sub => a.vsubps(t, x, y),
                    Arithmetic::Mul => a.vmulps(t, x, y),
                    Arithmetic::Max => a.vmaxps(t, x, y),
                    Arithmetic::Min => a.vminps(t, x, y),
                }
            }
        }
        .map_err(asm_error)
    }

    /// Applies `epilogue` to the accumulators `accumulator(row, vector)` of a tile of `rows` ×
    /// `vectors` (the last one masked when `masked`), with `free` two scratch registers.
    /// Operand `i` of the steps is at `operands[i]`: a channel operand's vector `v` at
    /// `operands[i] + 64v·lanes/16`, a full operand's row `p` at `full_row(operand, p)`.
    #[allow(clippy::too_many_arguments)]
    fn apply_epilogue(
        &mut self,
        epilogue: MachineEpilogue,
        rows: usize,
        vectors: usize,
        masked: &dyn Fn(usize) -> bool,
        accumulator: &dyn Fn(usize, usize) -> usize,
        free: &[usize],
        operand_row: &mut dyn FnMut(
            &mut CodeAssembler,
            usize,
            usize,
        ) -> Result<AsmMemoryOperand, CodegenError>,
    ) -> Result<(), CodegenError> {
        let lanes = if self.zmm { 16 } else { 8 };
        let mut operand = 0;
        for step in epilogue.steps() {
            match step {
                MachineStep::Swish | MachineStep::Sigmoid => {
                    for p in 0..rows {
                        for v in 0..vectors {
                            self.logistic(step, accumulator(p, v), free)?;
                        }
                    }
                }
                MachineStep::Relu | MachineStep::Relu6 => {
                    // vmaxps/vminps return their second source when either is NaN: the
                    // accumulator goes second, so NaN passes through as in TensorFlow.
                    self.zero(free[0])?;
                    if step == MachineStep::Relu6 {
                        self.splat(free[1], 6.0)?;
                    }
                    for p in 0..rows {
                        for v in 0..vectors {
                            let acc = accumulator(p, v);
                            self.arithmetic(Arithmetic::Max, acc, free[0], acc)?;
                            if step == MachineStep::Relu6 {
                                self.arithmetic(Arithmetic::Min, acc, free[1], acc)?;
                            }
                        }
                    }
                }
                MachineStep::Add(source) | MachineStep::Mul(source) => {
                    let op = if matches!(step, MachineStep::Add(_)) {
                        Arithmetic::Add
                    } else {
                        Arithmetic::Mul
                    };
                    for v in 0..vectors {
                        let offset = (v * lanes * 4) as i32;
                        if source == StepOperand::Channel {
                            let address = operand_row(&mut self.a, operand, 0)? + offset;
                            self.load(free[0], address, masked(v))?;
                        }
                        for p in 0..rows {
                            if source == StepOperand::Full {
                                let address = operand_row(&mut self.a, operand, p)? + offset;
                                self.load(free[0], address, masked(v))?;
                            }
                            let acc = accumulator(p, v);
                            self.arithmetic(op, acc, acc, free[0])?;
                        }
                    }
                    operand += 1;
                }
            }
        }
        Ok(())
    }

    /// Swish or sigmoid of zmm `x` in place (`free`: three scratch registers): e^-x by
    /// Cody-Waite reduction and a degree-5 polynomial, scaled with `vscalefps`, then one exact
    /// division.
    fn logistic(
        &mut self,
        step: MachineStep,
        x: usize,
        free: &[usize],
    ) -> Result<(), CodegenError> {
        let [y, n, r] = match free {
            [a, b, c, ..] => [*a, *b, *c].map(Self::zmm),
            _ => {
                return Err(CodegenError::Backend(
                    "no registers left for the exp of an epilogue".into(),
                ))
            }
        };
        let table = match self.exp_table {
            Some(table) => table,
            None => {
                let table = self.a.create_label();
                self.exp_table = Some(table);
                table
            }
        };
        let constant = |index: usize| dword_bcst(r10 + (index * 4) as i32);
        let x = Self::zmm(x);
        let a = &mut self.a;
        a.lea(r10, ptr(table)).map_err(asm_error)?;
        // y = clamp(-x, -104, 100), NaN kept (the register operand goes second).
        a.vpxord(y, x, constant(EXP_SIGN)).map_err(asm_error)?;
        a.vbroadcastss(n, dword_ptr(r10 + (EXP_LOW * 4) as i32))
            .map_err(asm_error)?;
        a.vmaxps(y, n, y).map_err(asm_error)?;
        a.vbroadcastss(n, dword_ptr(r10 + (EXP_HIGH * 4) as i32))
            .map_err(asm_error)?;
        a.vminps(y, n, y).map_err(asm_error)?;
        // n = round(y · log2 e); y -= n · ln 2 in two parts (the reduced argument, |y| ≤ ln 2 / 2).
        a.vmulps(n, y, constant(EXP_LOG2E)).map_err(asm_error)?;
        a.vrndscaleps(n, n, 0).map_err(asm_error)?;
        a.vfmadd231ps(y, n, constant(EXP_MINUS_LN2_HIGH))
            .map_err(asm_error)?;
        a.vfmadd231ps(y, n, constant(EXP_MINUS_LN2_LOW))
            .map_err(asm_error)?;
        // e^y by a degree-5 polynomial (relative error 1.5e-7), then scaled by 2^n.
        a.vbroadcastss(r, dword_ptr(r10 + (EXP_POLYNOMIAL * 4) as i32))
            .map_err(asm_error)?;
        for index in EXP_POLYNOMIAL + 1..=EXP_ONE {
            a.vfmadd213ps(r, y, constant(index)).map_err(asm_error)?;
        }
        a.vscalefps(y, r, n).map_err(asm_error)?;
        // 1 + e^-x, then x / it or 1 / it.
        a.vaddps(y, y, constant(EXP_ONE)).map_err(asm_error)?;
        if step == MachineStep::Sigmoid {
            a.vbroadcastss(n, dword_ptr(r10 + (EXP_ONE * 4) as i32))
                .map_err(asm_error)?;
            a.vdivps(x, n, y).map_err(asm_error)?;
        } else {
            a.vdivps(x, x, y).map_err(asm_error)?;
        }
        Ok(())
    }

    /// `vzeroupper; ret`, the mask table, and the bytes.
    fn finish(mut self) -> Result<Vec<u8>, CodegenError> {
        self.a.vzeroupper().map_err(asm_error)?;
        self.a.ret().map_err(asm_error)?;
        if let Some(mut table) = self.exp_table {
            self.a.set_label(&mut table).map_err(asm_error)?;
            let bytes: Vec<u8> = EXP_CONSTANTS.iter().flat_map(|c| c.to_le_bytes()).collect();
            self.a.db(&bytes).map_err(asm_error)?;
        }
        if let Some(mut table) = self.mask_table {
            self.a.set_label(&mut table).map_err(asm_error)?;
            let bytes: Vec<u8> = (0..16)
                .flat_map(|i| if i < 8 { [0xFF; 4] } else { [0; 4] })
                .collect();
            self.a.db(&bytes).map_err(asm_error)?;
        }
        self.a.assemble(0).map_err(asm_error)
    }
}

/// The exp constants of the logistic epilogues, by index. The polynomial is a degree-5 fit of
/// e^r on [-ln 2 / 2, ln 2 / 2] (XNNPACK's `p5` coefficients), two FMAs fewer than the degree-6
/// one `Kernel::exp` evaluates; both are within 2e-7 relative.
const EXP_CONSTANTS: [f32; 12] = [
    -0.0,   // sign bit
    -104.0, // lowest exponent argument
    100.0,  // highest (e^100 overflows to infinity, as it must)
    std::f32::consts::LOG2_E,
    -0.693_359_4,   // -ln 2, high part
    2.121_944_4e-4, // -ln 2, low part
    8.289_291e-3,   // polynomial, highest degree first
    4.189_782_2e-2,
    0.166_676_52,
    0.499_991_5,
    0.999_999_7,
    1.0,
];
const EXP_SIGN: usize = 0;
const EXP_LOW: usize = 1;
const EXP_HIGH: usize = 2;
const EXP_LOG2E: usize = 3;
const EXP_MINUS_LN2_HIGH: usize = 4;
const EXP_MINUS_LN2_LOW: usize = 5;
const EXP_POLYNOMIAL: usize = 6;
const EXP_ONE: usize = 11;

#[derive(Clone, Copy)]
enum Arithmetic {
    Add,
    Sub,
    Mul,
    Max,
    Min,
}

fn xmm_of(index: usize) -> AsmRegisterXmm {
    registers::get_xmm(Register::XMM0 + index as u32).unwrap_or(xmm15)
}

/// A GEMM tile's A row `p`: rows come in groups of three, each group with its own base register
/// (rows 3g, 3g + 1 and 3g + 2 at base, base + lda, base + 2·lda; lda in rsi).
const A_BASES: [AsmRegister64; 4] = [rdi, r10, r11, r12];

fn a_row(p: usize) -> AsmMemoryOperand {
    let base = A_BASES[p / 3];
    match p % 3 {
        0 => ptr(base),
        1 => ptr(base + rsi),
        _ => ptr(base + rsi * 2),
    }
}

/// B vector `v` of the current row: vector `v` covers columns `v·lanes..`, in panel
/// `v·lanes / 16` (panel bases: rdx, rdx + r13, rdx + 2·r13, rbx + 2·r13 with rbx = rdx + r13).
fn b_vector(isa: Isa, v: usize) -> AsmMemoryOperand {
    let columns = v * isa.lanes();
    let offset = ((columns % PANEL) * 4) as i32;
    match columns / PANEL {
        0 => ptr(rdx + offset),
        1 => ptr(rdx + r13 + offset),
        2 => ptr(rdx + r13 * 2 + offset),
        _ => ptr(rbx + r13 * 2 + offset),
    }
}

/// Assembles the GEMM kernel for `shape` (see the module documentation for the contract).
pub fn assemble_gemm(shape: TileShape) -> Result<Vec<u8>, CodegenError> {
    let TileShape {
        isa,
        rows,
        columns,
        epilogue,
    } = shape;
    let lanes = isa.lanes();
    let vectors = columns.div_ceil(lanes);
    if rows == 0 || columns == 0 || vectors > isa.max_vectors() || rows > isa.max_rows(vectors) {
        return Err(CodegenError::Backend(format!(
            "no {isa:?} micro-kernel for a {rows}x{columns} tile"
        )));
    }
    let tail = columns % lanes;
    let masked = |v: usize| tail != 0 && v + 1 == vectors;
    let accumulator = |p: usize, v: usize| p * vectors + v;
    let b_register = |v: usize| rows * vectors + v;
    let broadcast = rows * vectors + vectors;
    let groups = rows.div_ceil(3);
    let mut e = Vectors::new(isa)?;

    // Callee-saved registers this kernel uses; the stack arguments sit above them and the
    // return address.
    let saved: Vec<AsmRegister64> = [rbx, rbp, r12, r13, r14, r15].into_iter().collect();
    for &register in &saved {
        e.a.push(register).map_err(asm_error)?;
    }
    let argument = |i: usize| qword_ptr(rsp + ((saved.len() + 1 + i) * 8) as i32);
    e.a.mov(r13, argument(2)).map_err(asm_error)?; // panel stride
    e.a.mov(rbp, argument(5)).map_err(asm_error)?; // segments left
    e.a.mov(r15, argument(3)).map_err(asm_error)?; // prefetch
    e.a.lea(rbx, ptr(rdx + r13)).map_err(asm_error)?;
    for g in 1..groups {
        // A group g starts three rows after group g - 1.
        e.a.lea(A_BASES[g], ptr(A_BASES[g - 1] + rsi * 2))
            .map_err(asm_error)?;
        e.a.add(A_BASES[g], rsi).map_err(asm_error)?;
    }
    if tail != 0 {
        e.set_mask(tail)?;
    }

    let mut zero_start = e.a.create_label();
    let mut segment_start = e.a.create_label();
    let mut loop_body = e.a.create_label();
    let mut segments_done = e.a.create_label();
    e.a.mov(rax, argument(1)).map_err(asm_error)?; // accumulate
    e.a.test(rax, rax).map_err(asm_error)?;
    e.a.jz(zero_start).map_err(asm_error)?;
    // C rows through rax: row 3g at rax, then rax + ldc, rax + 2·ldc; ldc in r9.
    e.a.mov(rax, r8).map_err(asm_error)?;
    for p in 0..rows {
        let row = c_row(p);
        for v in 0..vectors {
            e.load(accumulator(p, v), row + (v * lanes * 4) as i32, masked(v))?;
        }
        if p % 3 == 2 {
            advance_c_group(&mut e.a)?;
        }
    }
    e.a.jmp(segment_start).map_err(asm_error)?;
    e.a.set_label(&mut zero_start).map_err(asm_error)?;
    for p in 0..rows {
        for v in 0..vectors {
            e.zero(accumulator(p, v))?;
        }
    }
    e.a.set_label(&mut segment_start).map_err(asm_error)?;
    e.a.mov(r14, argument(0)).map_err(asm_error)?; // depth
    e.a.set_label(&mut loop_body).map_err(asm_error)?;
    for v in 0..vectors {
        e.load(b_register(v), b_vector(isa, v), masked(v))?;
    }
    e.a.prefetcht1(ptr(r15)).map_err(asm_error)?;
    for p in 0..rows {
        e.broadcast(broadcast, a_row(p))?;
        for v in 0..vectors {
            e.fma(accumulator(p, v), b_register(v), broadcast, masked(v))?;
        }
    }
    for &base in &A_BASES[..groups] {
        e.a.add(base, 4).map_err(asm_error)?;
    }
    e.a.add(rdx, rcx).map_err(asm_error)?;
    e.a.add(rbx, rcx).map_err(asm_error)?;
    e.a.add(r15, argument(4)).map_err(asm_error)?; // prefetch step
    e.a.dec(r14).map_err(asm_error)?;
    e.a.jnz(loop_body).map_err(asm_error)?;
    // The next segment: every A row moves on by segment_stride - 4·depth (B runs on as it is).
    e.a.dec(rbp).map_err(asm_error)?;
    e.a.jz(segments_done).map_err(asm_error)?;
    e.a.mov(rax, argument(6)).map_err(asm_error)?;
    e.a.mov(r14, argument(0)).map_err(asm_error)?;
    e.a.shl(r14, 2).map_err(asm_error)?;
    e.a.sub(rax, r14).map_err(asm_error)?;
    for &base in &A_BASES[..groups] {
        e.a.add(base, rax).map_err(asm_error)?;
    }
    e.a.jmp(segment_start).map_err(asm_error)?;
    e.a.set_label(&mut segments_done).map_err(asm_error)?;

    // The epilogue, on the accumulators: operand i's pointer is the i-th stack argument after
    // the kernel's own (at the tile's first channel, or at C[0, 0]'s place in a full operand,
    // rows ldc apart).
    e.apply_epilogue(
        epilogue,
        rows,
        vectors,
        &masked,
        &accumulator,
        &(rows * vectors..if isa == Isa::Avx512 { 32 } else { 15 }).collect::<Vec<_>>(),
        &mut |a, operand, p| {
            if p == 0 {
                a.mov(r11, argument(GEMM_PARAMETERS - 6 + operand))
                    .map_err(asm_error)?;
            } else if p % 3 == 0 {
                a.lea(r11, ptr(r11 + r9 * 2)).map_err(asm_error)?;
                a.add(r11, r9).map_err(asm_error)?;
            }
            Ok(match p % 3 {
                0 => ptr(r11),
                1 => ptr(r11 + r9),
                _ => ptr(r11 + r9 * 2),
            })
        },
    )?;

    e.a.mov(rax, r8).map_err(asm_error)?;
    for p in 0..rows {
        let row = c_row(p);
        for v in 0..vectors {
            e.store(row + (v * lanes * 4) as i32, accumulator(p, v), masked(v))?;
        }
        if p % 3 == 2 {
            advance_c_group(&mut e.a)?;
        }
    }
    for &register in saved.iter().rev() {
        e.a.pop(register).map_err(asm_error)?;
    }
    e.finish()
}

/// Row `p` of C within its group of three (group base in rax, ldc in r9).
fn c_row(p: usize) -> AsmMemoryOperand {
    match p % 3 {
        0 => ptr(rax),
        1 => ptr(rax + r9),
        _ => ptr(rax + r9 * 2),
    }
}

/// rax += 3·ldc: the next group of C rows.
fn advance_c_group(a: &mut CodeAssembler) -> Result<(), CodegenError> {
    a.lea(rax, ptr(rax + r9 * 2)).map_err(asm_error)?;
    a.add(rax, r9).map_err(asm_error)
}

/// Assembles a depthwise kernel (see [`DepthwiseShape`]).
pub fn assemble_depthwise(shape: DepthwiseShape) -> Result<Vec<u8>, CodegenError> {
    let DepthwiseShape {
        isa,
        epilogue,
        pixels,
        lanes,
        window,
        ..
    } = shape;
    if pixels == 0
        || pixels > isa.max_depthwise_pixels()
        || lanes == 0
        || lanes > isa.lanes()
        || window.contains(&0)
        || usize::from(shape.row_taps[1]) > window[0]
        || shape.column_taps[..pixels]
            .iter()
            .any(|taps| usize::from(taps[1]) > window[1])
        || epilogue.operand_count() > 3
    {
        return Err(CodegenError::Backend(format!(
            "no depthwise micro-kernel for {shape:?}"
        )));
    }
    let masked = lanes < isa.lanes();
    let (filter_vector, input_vector) = (pixels, pixels + 1);
    let mut e = Vectors::new(isa)?;
    if masked {
        e.set_mask(lanes)?;
    }
    for p in 0..pixels {
        e.zero(p)?;
    }
    for ky in 0..window[0] {
        for kx in 0..window[1] {
            let readers: Vec<usize> = (0..pixels).filter(|&p| shape.reads(p, ky, kx)).collect();
            if readers.is_empty() {
                continue;
            }
            let tap = displacement((ky * window[1] + kx) * shape.tap_stride)?;
            e.load(filter_vector, ptr(rsi + tap), masked)?;
            for p in readers {
                let offset = displacement(
                    ky * shape.input_row_stride
                        + kx * shape.input_column_stride
                        + p * shape.input_pixel_stride,
                )?;
                if masked {
                    e.load(input_vector, ptr(rdi + offset), true)?;
                    e.fma(p, filter_vector, input_vector, true)?;
                } else {
                    e.fma_memory(p, filter_vector, ptr(rdi + offset))?;
                }
            }
        }
    }
    // Operand i's pointer is argument 4 + i (rcx, r8, r9): at the tile's first channel, or at
    // the first output's place in a full operand (pixels `output_pixel_stride` apart).
    let operand_registers = [rcx, r8, r9];
    e.apply_epilogue(
        epilogue,
        pixels,
        1,
        &|_| masked,
        &|p, _| p,
        &(pixels..if isa == Isa::Avx512 { 32 } else { 15 }).collect::<Vec<_>>(),
        &mut |_, operand, p| {
            Ok(ptr(
                operand_registers[operand] + displacement(p * shape.output_pixel_stride)?
            ))
        },
    )?;
    for p in 0..pixels {
        let destination = ptr(rdx + displacement(p * shape.output_pixel_stride)?);
        e.store(destination, p, masked)?;
    }
    e.finish()
}

/// Assembles a Winograd transform kernel (see [`WinogradShape`]).
pub fn assemble_winograd(shape: WinogradShape) -> Result<Vec<u8>, CodegenError> {
    let WinogradShape {
        isa,
        variant,
        input,
        lanes,
        epilogue,
        ..
    } = shape;
    let t = variant.input_tile();
    let matrix = if input {
        variant.input_transform()
    } else {
        variant.output_transform()
    };
    let out = matrix.len();
    if lanes == 0
        || lanes > isa.lanes()
        || shape.valid[0] > out
        || shape.valid[1] > out
        || (input && (shape.valid != [t, t] || epilogue != MachineEpilogue::default()))
        || epilogue.operand_count() > 3
        || !shape.displacements_fit()
    {
        return Err(CodegenError::Backend(format!(
            "no Winograd micro-kernel for {shape:?}"
        )));
    }
    let masked = lanes < isa.lanes();
    let mut e = Vectors::new(isa)?;
    if masked {
        e.set_mask(lanes)?;
    }
    // Registers: one per distinct |coefficient| other than 1, the t values of one row of
    // L · X, the result, a loaded X value, then three free for the epilogue (below the AVX2
    // tail mask, ymm15).
    let mut constants: Vec<f64> = Vec::new();
    for &c in matrix.iter().flat_map(|row| row.iter()) {
        if c != 0.0 && c.abs() != 1.0 && !constants.contains(&c.abs()) {
            constants.push(c.abs());
        }
    }
    let half = |b: usize| constants.len() + b;
    let result = constants.len() + t;
    let loaded = result + 1;
    let free: Vec<usize> = (loaded + 1..if isa == Isa::Avx512 { 32 } else { 15 }).collect();
    if free.len() < 3 {
        return Err(CodegenError::Backend(format!(
            "no registers for the Winograd micro-kernel {shape:?}"
        )));
    }
    for (register, &value) in constants.iter().enumerate() {
        e.splat(register, value as f32)?;
    }
    let constant = |c: f64| constants.iter().position(|&k| k == c.abs()).unwrap_or(0);
    let source = |a: usize, b: usize| {
        displacement(a * shape.source_strides[0] + b * shape.source_strides[1])
    };
    let target = |i: usize, j: usize| {
        displacement(i * shape.target_strides[0] + j * shape.target_strides[1])
    };
    // Operand i's pointer is argument 4 + i (rcx, r8, r9): at the tile's channel, or (a full
    // operand) at result (0, 0)'s place.
    let operand_registers = [rcx, r8, r9];
    let full: Vec<bool> = epilogue
        .operands()
        .map(|source| source == StepOperand::Full)
        .collect();
    let vector_bytes = (lanes * 4) as i32;

    let mut next = e.a.create_label();
    e.a.set_label(&mut next).map_err(asm_error)?;
    for (i, row) in matrix.iter().take(shape.valid[0]).enumerate() {
        // Row i of L · X: half[b] = Σ_a L[i][a] · X[a][b].
        for b in 0..t {
            e.zero(half(b))?;
            for (a, &c) in row.iter().enumerate() {
                if c != 0.0 {
                    e.load(loaded, ptr(rdi + source(a, b)?), masked)?;
                    e.add_multiple(half(b), loaded, c, constant(c))?;
                }
            }
        }
        // Result (i, j) = Σ_b half[b] · L[j][b], finished and stored.
        for (j, column) in matrix.iter().take(shape.valid[1]).enumerate() {
            e.zero(result)?;
            for (b, &c) in column.iter().enumerate() {
                if c != 0.0 {
                    e.add_multiple(result, half(b), c, constant(c))?;
                }
            }
            let at = target(i, j)?;
            e.apply_epilogue(
                epilogue,
                1,
                1,
                &|_| masked,
                &|_, _| result,
                &free,
                &mut |_, operand, _| {
                    let offset = if full[operand] { at } else { 0 };
                    Ok(ptr(operand_registers[operand] + offset))
                },
            )?;
            e.store(ptr(rsi + at), result, masked)?;
        }
    }
    e.a.add(rdi, vector_bytes).map_err(asm_error)?;
    e.a.add(rsi, vector_bytes).map_err(asm_error)?;
    for &register in &operand_registers[..epilogue.operand_count()] {
        e.a.add(register, vector_bytes).map_err(asm_error)?;
    }
    e.a.dec(rdx).map_err(asm_error)?;
    e.a.jnz(next).map_err(asm_error)?;
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tile_shape_assembles_and_larger_ones_are_refused() {
        for isa in [Isa::Avx2, Isa::Avx512] {
            for vectors in 1..=isa.max_vectors() {
                for rows in 1..=isa.max_rows(vectors) {
                    for columns in [(vectors - 1) * isa.lanes() + 1, vectors * isa.lanes()] {
                        let shape = TileShape {
                            isa,
                            rows,
                            columns,
                            epilogue: MachineEpilogue::default(),
                        };
                        let bytes = assemble_gemm(shape).unwrap();
                        assert!(bytes.len() > 16, "{shape:?}");
                    }
                }
                let too_tall = isa.max_rows(vectors) + 1;
                assert!(assemble_gemm(TileShape {
                    isa,
                    rows: too_tall,
                    columns: vectors * isa.lanes(),
                    epilogue: MachineEpilogue::default(),
                })
                .is_err());
            }
            assert!(assemble_gemm(TileShape {
                isa,
                rows: 1,
                columns: isa.max_vectors() * isa.lanes() + 1,
                epilogue: MachineEpilogue::default(),
            })
            .is_err());
        }
        // Every register a tile uses, with the longest epilogue: the scratch registers of the
        // epilogue reach zmm16-31 (EVEX-only) on the tallest AVX-512 tiles.
        let all = MachineEpilogue::new(&[
            MachineStep::Mul(StepOperand::Channel),
            MachineStep::Add(StepOperand::Channel),
            MachineStep::Add(StepOperand::Full),
            MachineStep::Relu6,
        ])
        .unwrap();
        let logistic = MachineEpilogue::new(&[
            MachineStep::Add(StepOperand::Channel),
            MachineStep::Swish,
            MachineStep::Sigmoid,
        ])
        .unwrap();
        for isa in [Isa::Avx2, Isa::Avx512] {
            for vectors in 1..=isa.max_vectors() {
                let columns = vectors * isa.lanes() - 1;
                let rows = isa.max_rows(vectors);
                let tile = TileShape {
                    isa,
                    rows,
                    columns,
                    epilogue: all,
                };
                assert!(assemble_gemm(tile).is_ok(), "{tile:?}");
                if isa == Isa::Avx512 {
                    let tile = TileShape {
                        epilogue: logistic,
                        ..tile
                    };
                    assert!(assemble_gemm(tile).is_ok(), "{tile:?}");
                }
            }
            let depthwise = DepthwiseShape {
                isa,
                epilogue: MachineEpilogue::new(&[
                    MachineStep::Add(StepOperand::Channel),
                    MachineStep::Relu6,
                ])
                .unwrap(),
                pixels: isa.max_depthwise_pixels(),
                lanes: isa.lanes() - 1,
                window: [3, 3],
                row_taps: [0, 3],
                column_taps: [[0, 3]; MAX_DEPTHWISE_PIXELS],
                input_pixel_stride: 64,
                input_row_stride: 4096,
                input_column_stride: 64,
                tap_stride: 64,
                output_pixel_stride: 64,
            };
            assert!(assemble_depthwise(depthwise).is_ok(), "{depthwise:?}");
            // Border tiles read part of the filter, or none of it (the epilogue of zero); taps
            // past the filter are refused.
            let mut border = DepthwiseShape {
                row_taps: [1, 1],
                ..depthwise
            };
            border.column_taps[0] = [1, 3];
            assert!(assemble_depthwise(border).is_ok(), "{border:?}");
            assert_ne!(
                Microkernel::Depthwise(border).symbol(),
                Microkernel::Depthwise(depthwise).symbol()
            );
            border.column_taps[1] = [0, 4];
            assert!(assemble_depthwise(border).is_err(), "{border:?}");
        }
        assert!(MachineEpilogue::new(&[MachineStep::Relu; MAX_MACHINE_STEPS + 1]).is_none());
        assert_eq!(Isa::Avx512.max_rows(4), 6);
        assert_eq!(Isa::Avx2.max_rows(2), 6);
    }

    #[test]
    fn winograd_transforms_assemble_and_bad_shapes_are_refused() {
        let epilogue = MachineEpilogue::new(&[
            MachineStep::Add(StepOperand::Channel),
            MachineStep::Add(StepOperand::Full),
            MachineStep::Mul(StepOperand::Channel),
            MachineStep::Relu,
        ])
        .unwrap();
        for isa in [Isa::Avx2, Isa::Avx512] {
            for variant in [Winograd::F2, Winograd::F4] {
                let (t, m) = (variant.input_tile(), variant.output_tile());
                let input = WinogradShape {
                    isa,
                    variant,
                    input: true,
                    lanes: isa.lanes(),
                    source_strides: [4096, 256],
                    target_strides: [t << 20, 1 << 20],
                    valid: [t, t],
                    epilogue: MachineEpilogue::default(),
                };
                let output = WinogradShape {
                    input: false,
                    valid: [m, m - 1],
                    epilogue,
                    ..input
                };
                for shape in [input, output] {
                    for lanes in [1, isa.lanes() / 2, isa.lanes() - 1, isa.lanes()] {
                        let shape = WinogradShape { lanes, ..shape };
                        assert!(assemble_winograd(shape).is_ok(), "{shape:?}");
                    }
                }
                // The input transform writes whole tiles and has no epilogue; results past the
                // tile, lanes past a vector and strides past 32 bits are refused.
                let refused = [
                    WinogradShape {
                        valid: [t - 1, t],
                        ..input
                    },
                    WinogradShape { epilogue, ..input },
                    WinogradShape {
                        epilogue: MachineEpilogue::new(&[MachineStep::Relu]).unwrap(),
                        ..input
                    },
                    WinogradShape {
                        valid: [m + 1, m],
                        ..output
                    },
                    WinogradShape {
                        lanes: isa.lanes() + 1,
                        ..output
                    },
                    WinogradShape {
                        target_strides: [1 << 31, 1],
                        ..output
                    },
                ];
                for shape in refused {
                    assert!(assemble_winograd(shape).is_err(), "{shape:?}");
                }
                assert_ne!(
                    Microkernel::Winograd(input).symbol(),
                    Microkernel::Winograd(output).symbol()
                );
            }
        }
    }
}
