//! 3×3 convolutions of stride 1 by Winograd's minimal filtering (`tfjsc_runtime::winograd`
//! has the algorithm and its constants): the input transform, t² products on the GEMM frame,
//! and the output transform with the convolution's epilogue, in one kernel.
//!
//! ```text
//! scratch: [padded input] [V: t² × tiles × C] [M: t² × tiles × N]
//! 1. V[ξν][tile] = (Bᵀ d B)[ξν]     for each tile d of the padded input, 4 channels at a time
//! 2. M[ξν] = V[ξν] · U[ξν]          the GEMM frame, one row group per ξν (U packed at load)
//! 3. Y = Aᵀ M[tile] A, epilogue      stored for the pixels of the output the tile covers
//! ```
//!
//! The padded copy is extended at the bottom and right to whole tiles, so step 1 reads no
//! bounds; step 3 stores only the pixels inside the output (the last row and column of tiles
//! may be partial, with sizes known at compile time).
//!
//! On the machine-code kernel sets the transforms are machine code too (`microkernel`'s
//! [`WinogradShape`]: one call per tile transforms all its channels, a vector at a time, and the
//! output transform applies the epilogue in registers); elsewhere, and for an epilogue machine
//! code does not know, they are Cranelift's 4-lane vectors. Measured on ResNet50 (Ice Lake,
//! 1 thread), the 4-lane transforms took half of an F(4×4) layer's time and a sixth of an
//! F(2×2) layer's.

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use super::gemm::{BLayout, Finish, Gemm, GroupBases, Segment};
use super::kernel::{Kernel, LANES};
use super::microkernel::{Isa, MachineEpilogue, Microkernel, WinogradShape, PANEL};
use super::CodegenError;
use crate::ops::conv::{pad_into_scratch, Window};
use crate::ops::epilogue::{self, Epilogue};
use tfjsc_runtime::winograd::Winograd;

/// Bytes each scratch region is aligned to.
const REGION_ALIGN: usize = 64;

/// Multiply-adds one element of a transform costs beside the products, relative to one of the
/// products' multiply-adds (the transforms, with their loads and stores, against the
/// micro-kernels' full tiles). Set when the transforms ran on 4-lane vectors on every kernel
/// set; the machine-code transforms cost less, which would only move more layers to Winograd,
/// and the choice is one for all kernel sets of a library (the portable set keeps 4 lanes).
const TRANSFORM_COST: usize = 8;

/// Multiply-adds one weight costs to stream from memory: a layer's weights are read once per
/// run, and a late layer's (megabytes) come from DRAM. A product of few rows (a late layer has
/// few tiles) reuses each streamed weight only that many times. Measured on ResNet50 (Zen 4,
/// 1 thread): its 7×7×512 layers ran no faster by F(2×2) than directly (2.2–2.5 ms either
/// way; 16 rows per product, 1.8× the weights), its 14×14×256 layers 1.4 ms against 2.0 ms.
/// This weight keeps the first direct and the second on F(2×2), whose filter is a quarter
/// of F(4×4)'s.
const WEIGHT_COST: usize = 32;

/// Input channels below which the direct convolution is kept: the products sum over the input
/// channels, and with a short sum their tiles store more than they multiply, which the count in
/// [`choose`] does not see. Measured (Zen 4, 1 thread, 3×3 on 128×128 to 64 channels, median
/// ms, Winograd as chosen against direct): 3 channels 2.67 / 0.63 (antispoof of the real-model
/// survey, whose first layer this is), 8 channels 2.67 / 1.44, 16 channels 3.43 / 2.75, 32
/// channels 4.84 / 5.37.
const MIN_CHANNELS: usize = 32;

/// Input channels above which F(4×4) is not used. Its error grows with the channels summed (the
/// transforms' coefficients 4, 5 and 8 cancel): simulated in f32 against an exact result, with
/// operands uniform in ±1, error / max |y| is 2.6–5.6e-6 for 16–64 channels, 4–10e-6 for 128
/// and 0.9–1.7e-5 for 256–512, where F(2×2) stays at 2–7e-7. Above 128 channels F(2×2) only.
const F4_MAX_CHANNELS: usize = 128;

/// The variant that computes this convolution fastest, by multiply-adds counted with the
/// transforms' and the weights' shares, or `None` when the direct convolution is cheaper (or
/// the layer is not a 3×3 stride-1 convolution).
pub fn choose(window: &Window, outputs: usize) -> Option<Winograd> {
    if window.kernel != [3, 3] || window.strides != [1, 1] || window.dilations != [1, 1] {
        return None;
    }
    let [oh, ow] = window.output;
    let channels = window.channels;
    if oh == 0 || ow == 0 || channels < MIN_CHANNELS || outputs == 0 {
        return None;
    }
    let pairs = channels * outputs;
    let direct = (window.batch * oh * ow + WEIGHT_COST) * 9 * pairs;
    [Winograd::F2, Winograd::F4]
        .into_iter()
        .filter(|&variant| variant == Winograd::F2 || channels <= F4_MAX_CHANNELS)
        .map(|variant| {
            let tiles = Geometry::new(window, variant).tiles;
            let per_tile = pairs + TRANSFORM_COST * (channels + outputs);
            let cost = variant.products() * (tiles * per_tile + WEIGHT_COST * pairs);
            (cost, variant)
        })
        .filter(|&(cost, _)| cost < direct)
        .min_by_key(|&(cost, _)| cost)
        .map(|(_, variant)| variant)
}

/// Tiles and scratch layout of one convolution.
struct Geometry {
    variant: Winograd,
    /// Tile rows and columns per image.
    tile_rows: usize,
    tile_columns: usize,
    /// Tiles of the whole batch (the products' rows).
    tiles: usize,
    /// The padded input, extended to whole tiles.
    padded: Window,
    /// Byte offsets of V and M in scratch (M last: its size depends on the outputs).
    v_offset: usize,
    m_offset: usize,
}

impl Geometry {
    fn new(window: &Window, variant: Winograd) -> Geometry {
        let (m, t) = (variant.output_tile(), variant.input_tile());
        let [oh, ow] = window.output;
        let (tile_rows, tile_columns) = (oh.div_ceil(m), ow.div_ceil(m));
        let tiles = window.batch * tile_rows * tile_columns;
        let [top, _, left, _] = window.pads;
        let [ih, iw] = window.input;
        // Padded height tile_rows·m + 2 ≥ oh + 2 = ih + top + bottom: the bottom pad grows.
        let padded = Window {
            pads: [
                top,
                tile_rows * m + 2 - ih - top,
                left,
                tile_columns * m + 2 - iw - left,
            ],
            ..window.clone()
        };
        let round = |bytes: usize| bytes.div_ceil(REGION_ALIGN) * REGION_ALIGN;
        let padded_bytes = if padded.has_padding() {
            round(padded.padded_bytes())
        } else {
            0
        };
        let v_bytes = round(t * t * tiles * window.channels * 4);
        Geometry {
            variant,
            tile_rows,
            tile_columns,
            tiles,
            padded,
            v_offset: padded_bytes,
            m_offset: padded_bytes + v_bytes,
        }
    }

    fn scratch_bytes(&self, outputs: usize) -> usize {
        let t = self.variant.input_tile();
        self.m_offset + t * t * self.tiles * outputs * 4
    }
}

/// Scratch bytes the Winograd lowering of `variant` needs.
pub fn scratch_bytes(window: &Window, outputs: usize, variant: Winograd) -> usize {
    Geometry::new(window, variant).scratch_bytes(outputs)
}

/// Lowers the convolution (input 0, filter 1 packed as `variant`'s transform, epilogue operands
/// 2, ...) into `kernel`.
pub fn lower(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    window: &Window,
    outputs: usize,
    variant: Winograd,
) -> Result<(), CodegenError> {
    let geometry = Geometry::new(window, variant);
    let (t, channels) = (variant.input_tile(), window.channels);
    let source = pad_into_scratch(kernel, &geometry.padded)?;
    let scratch = kernel.scratch;
    let v = kernel
        .builder
        .ins()
        .iadd_imm_s(scratch, geometry.v_offset as i64);
    let m = kernel
        .builder
        .ins()
        .iadd_imm_s(scratch, geometry.m_offset as i64);
    input_transform(kernel, &geometry, source, v)?;
    kernel.barrier();
    let filter = kernel.inputs[1].pointer;
    let matrix_bytes = channels * outputs.div_ceil(PANEL) * PANEL * 4;
    let identity = Epilogue::default();
    let gemm = Gemm {
        groups: t * t,
        rows: geometry.tiles,
        columns: outputs,
        depth: channels,
        lda: channels * 4,
        segments: vec![Segment {
            a_offset: 0,
            b_row: 0,
            depth: channels,
        }],
        b_layout: BLayout::Panels,
        b_per_group: true,
        epilogue: &identity,
    };
    gemm.emit(kernel, m, &mut |k, group| {
        let a = k
            .builder
            .ins()
            .imul_imm_s(group, (geometry.tiles * channels * 4) as i64);
        let b = k.builder.ins().imul_imm_s(group, matrix_bytes as i64);
        Ok(GroupBases {
            a: k.builder.ins().iadd(v, a),
            b: k.builder.ins().iadd(filter, b),
            c: k.builder
                .ins()
                .imul_imm_s(group, (geometry.tiles * outputs) as i64),
        })
    })?;
    kernel.barrier();
    output_transform(kernel, epilogue, window, &geometry, outputs, m)
}

/// The machine-code transform for `isa` (full vectors and, for `total % lanes` channels, the
/// masked tail), or `None` on the portable set or where an offset does not fit the kernels'
/// 32-bit displacements.
struct MachineTransform {
    full: WinogradShape,
    tail: Option<WinogradShape>,
    vectors: usize,
}

impl MachineTransform {
    fn new(shape: WinogradShape, total: usize) -> Option<MachineTransform> {
        let lanes = shape.isa.lanes();
        if shape.isa == Isa::Portable || !shape.displacements_fit() {
            return None;
        }
        Some(MachineTransform {
            full: WinogradShape { lanes, ..shape },
            tail: (!total.is_multiple_of(lanes)).then_some(WinogradShape {
                lanes: total % lanes,
                ..shape
            }),
            vectors: total / lanes,
        })
    }

    /// Calls the kernels for one tile: `source` and `target` at its channel 0, `operands(k,
    /// channel)` the epilogue's operand pointers at a channel.
    fn call(
        &self,
        k: &mut Kernel,
        source: Value,
        target: Value,
        operands: &mut dyn FnMut(&mut Kernel, Value) -> Vec<Value>,
    ) -> Result<(), CodegenError> {
        let lanes = self.full.isa.lanes();
        let runs = [(self.full, 0, self.vectors)]
            .into_iter()
            .chain(self.tail.map(|tail| (tail, self.vectors * lanes, 1)));
        for (shape, channel, count) in runs {
            if count == 0 {
                continue;
            }
            let function = k.microkernel(Microkernel::Winograd(shape))?;
            let source = k.builder.ins().iadd_imm_s(source, channel as i64 * 4);
            let target = k.builder.ins().iadd_imm_s(target, channel as i64 * 4);
            let count = k.iconst(count as i64);
            let channel = k.iconst(channel as i64);
            let mut arguments = vec![source, target, count];
            arguments.extend(operands(k, channel));
            k.builder.ins().call(function, &arguments);
        }
        Ok(())
    }
}

/// `(start, count, type)` runs of a row of `total` channels: 4-lane vectors, then scalars.
fn channel_runs(total: usize) -> [(usize, usize, Type); 2] {
    let vectors = total / LANES;
    [
        (0, vectors, types::F32X4),
        (vectors * LANES, total % LANES, types::F32),
    ]
}

/// `Σ coefficients[i] · values[i]`, skipping zeros, with ±1 as additions and subtractions.
fn combine(k: &mut Kernel, ty: Type, coefficients: &[f64], values: &[Value]) -> Value {
    let mut sum: Option<Value> = None;
    for (&coefficient, &value) in coefficients.iter().zip(values) {
        if coefficient == 0.0 {
            continue;
        }
        sum = Some(match (sum, coefficient) {
            (None, 1.0) => value,
            (None, -1.0) => k.builder.ins().fneg(value),
            (None, _) => {
                let factor = k.float_constant(ty, coefficient as f32);
                k.builder.ins().fmul(factor, value)
            }
            (Some(sum), 1.0) => k.builder.ins().fadd(sum, value),
            (Some(sum), -1.0) => k.builder.ins().fsub(sum, value),
            (Some(sum), _) => {
                let factor = k.float_constant(ty, coefficient as f32);
                k.multiply_add(factor, value, sum)
            }
        });
    }
    sum.unwrap_or_else(|| k.float_constant(ty, 0.0))
}

/// `left · tile · rightᵀ` for a tile of `values` (row-major, `columns` wide): the two-sided
/// transforms `Bᵀ d B` (left = right = Bᵀ) and `Aᵀ M A` (left = right = Aᵀ).
fn transform(
    k: &mut Kernel,
    ty: Type,
    matrix: &[&[f64]],
    values: &[Value],
    columns: usize,
) -> Vec<Value> {
    // (left · tile)[i][b] = Σ_a left[i][a] tile[a][b]
    let half: Vec<Value> = matrix
        .iter()
        .flat_map(|row| (0..columns).map(move |b| (row, b)))
        .map(|(row, b)| {
            let column: Vec<Value> = (0..row.len()).map(|a| values[a * columns + b]).collect();
            combine(k, ty, row, &column)
        })
        .collect();
    // (half · rightᵀ)[i][j] = Σ_b half[i][b] right[j][b]
    let mut out = Vec::with_capacity(matrix.len() * matrix.len());
    for i in 0..matrix.len() {
        for row in matrix {
            let line = &half[i * columns..(i + 1) * columns];
            out.push(combine(k, ty, row, line));
        }
    }
    out
}

/// Element index of channel 0 of pixel (image, y·m, x·m) in NHWC images of `[height, width]`
/// pixels and `channels` channels: the corner of tile (y, x), in the padded input (step 1) or
/// the output (step 3).
fn tile_corner(
    k: &mut Kernel,
    [image, y, x]: [Value; 3],
    m: usize,
    [height, width]: [usize; 2],
    channels: usize,
) -> Value {
    let row = k.builder.ins().imul_imm_s(image, height as i64);
    let y_pixels = k.builder.ins().imul_imm_s(y, m as i64);
    let row = k.builder.ins().iadd(row, y_pixels);
    let row_start = k.builder.ins().imul_imm_s(row, (width * channels) as i64);
    let x_offset = k.builder.ins().imul_imm_s(x, (m * channels) as i64);
    k.builder.ins().iadd(row_start, x_offset)
}

/// Step 1: every tile of the padded input, transformed into V. Threads share the tiles.
fn input_transform(
    kernel: &mut Kernel,
    geometry: &Geometry,
    source: Value,
    v: Value,
) -> Result<(), CodegenError> {
    let (m, t) = (
        geometry.variant.output_tile(),
        geometry.variant.input_tile(),
    );
    let b_transposed = geometry.variant.input_transform();
    let channels = geometry.padded.channels;
    let [ph, pw] = geometry.padded.padded();
    let tile_rows = geometry.tile_rows;
    let tile_columns = geometry.tile_columns;
    let product_stride = (geometry.tiles * channels) as i64;
    let machine = MachineTransform::new(
        WinogradShape {
            isa: kernel.features.isa,
            variant: geometry.variant,
            input: true,
            lanes: 0,
            source_strides: [pw * channels * 4, channels * 4],
            target_strides: [t * product_stride as usize * 4, product_stride as usize * 4],
            valid: [t, t],
            epilogue: MachineEpilogue::default(),
        },
        channels,
    );
    kernel.for_split(geometry.tiles, &mut |k, tile| {
        let tile_row = k.builder.ins().udiv_imm_s(tile, tile_columns as i64);
        let x = k.builder.ins().urem_imm_s(tile, tile_columns as i64);
        let image = k.builder.ins().udiv_imm_s(tile_row, tile_rows as i64);
        let y = k.builder.ins().urem_imm_s(tile_row, tile_rows as i64);
        let corner = tile_corner(k, [image, y, x], m, [ph, pw], channels);
        let tile_start = k.builder.ins().imul_imm_s(tile, channels as i64);
        if let Some(machine) = &machine {
            let source = k.address(source, corner, 4);
            let target = k.address(v, tile_start, 4);
            return machine.call(k, source, target, &mut |_, _| Vec::new());
        }
        for (start, count, ty) in channel_runs(channels) {
            let width = if ty.is_vector() { LANES } else { 1 };
            k.for_steps(start, count, width, &mut |k, c| {
                let origin = k.builder.ins().iadd(corner, c);
                let mut values = Vec::with_capacity(t * t);
                for a in 0..t {
                    for b in 0..t {
                        let index = k
                            .builder
                            .ins()
                            .iadd_imm_s(origin, ((a * pw + b) * channels) as i64);
                        values.push(k.load(ty, source, index, 4));
                    }
                }
                let transformed = transform(k, ty, &b_transposed, &values, t);
                let first = k.builder.ins().iadd(tile_start, c);
                for (product, value) in transformed.into_iter().enumerate() {
                    let index = k
                        .builder
                        .ins()
                        .iadd_imm_s(first, product as i64 * product_stride);
                    k.store(value, v, index, 4);
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// Step 3: every tile of M transformed back, finished by the epilogue and stored where it lies
/// inside the output. The last row and column of tiles may be partial.
fn output_transform(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    window: &Window,
    geometry: &Geometry,
    outputs: usize,
    m_base: Value,
) -> Result<(), CodegenError> {
    let (m, t) = (
        geometry.variant.output_tile(),
        geometry.variant.input_tile(),
    );
    let a_transposed = geometry.variant.output_transform();
    let [oh, ow] = window.output;
    let (tile_rows, tile_columns) = (geometry.tile_rows, geometry.tile_columns);
    let product_stride = (geometry.tiles * outputs) as i64;
    // Output rows (and columns) covered by full tiles, then by the partial last tile.
    let spans = |pixels: usize| {
        let full = pixels / m;
        [
            (0, full, m),
            (full, usize::from(!pixels.is_multiple_of(m)), pixels % m),
        ]
    };
    let output = kernel.outputs[0].pointer;
    let finish = Finish::new(kernel, epilogue, kernel.features.isa);
    // Four kinds of tile (full or partial rows, by full or partial columns), each with its
    // pixel counts known at compile time; threads share the tiles of each kind.
    for (first_row, row_count, valid_rows) in spans(oh) {
        for (first_column, column_count, valid_columns) in spans(ow) {
            let count = window.batch * row_count * column_count;
            let machine = finish.machine.and_then(|epilogue| {
                MachineTransform::new(
                    WinogradShape {
                        isa: kernel.features.isa,
                        variant: geometry.variant,
                        input: false,
                        lanes: 0,
                        source_strides: [
                            t * product_stride as usize * 4,
                            product_stride as usize * 4,
                        ],
                        target_strides: [ow * outputs * 4, outputs * 4],
                        valid: [valid_rows, valid_columns],
                        epilogue,
                    },
                    outputs,
                )
            });
            kernel.for_split(count, &mut |k, item| {
                let row = k.builder.ins().udiv_imm_s(item, column_count as i64);
                let x = k.builder.ins().urem_imm_s(item, column_count as i64);
                let x = k.builder.ins().iadd_imm_s(x, first_column as i64);
                let image = k.builder.ins().udiv_imm_s(row, row_count as i64);
                let y = k.builder.ins().urem_imm_s(row, row_count as i64);
                let y = k.builder.ins().iadd_imm_s(y, first_row as i64);
                let image_tiles = k.builder.ins().imul_imm_s(image, tile_rows as i64);
                let tile_row = k.builder.ins().iadd(image_tiles, y);
                let tile = k.builder.ins().imul_imm_s(tile_row, tile_columns as i64);
                let tile = k.builder.ins().iadd(tile, x);
                let tile_start = k.builder.ins().imul_imm_s(tile, outputs as i64);
                let corner = tile_corner(k, [image, y, x], m, [oh, ow], outputs);
                if let Some(transform) = &machine {
                    let source = k.address(m_base, tile_start, 4);
                    let target = k.address(output, corner, 4);
                    return transform.call(k, source, target, &mut |k, channel| {
                        let first = k.builder.ins().iadd(corner, channel);
                        finish.operand_arguments(k, transform.full.epilogue, channel, first)
                    });
                }
                for (start, count, ty) in channel_runs(outputs) {
                    let width = if ty.is_vector() { LANES } else { 1 };
                    k.for_steps(start, count, width, &mut |k, n| {
                        let first = k.builder.ins().iadd(tile_start, n);
                        let values: Vec<Value> = (0..t * t)
                            .map(|product| {
                                let index = k
                                    .builder
                                    .ins()
                                    .iadd_imm_s(first, product as i64 * product_stride);
                                k.load(ty, m_base, index, 4)
                            })
                            .collect();
                        let pixels = transform(k, ty, &a_transposed, &values, t);
                        let channel_corner = k.builder.ins().iadd(corner, n);
                        for i in 0..valid_rows {
                            for j in 0..valid_columns {
                                let index = k
                                    .builder
                                    .ins()
                                    .iadd_imm_s(channel_corner, ((i * ow + j) * outputs) as i64);
                                let value = epilogue::emit(
                                    k,
                                    epilogue,
                                    pixels[i * m + j],
                                    ty,
                                    index,
                                    n,
                                    2,
                                )?;
                                k.store(value, output, index, 4);
                            }
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}
