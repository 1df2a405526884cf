//! 2-D convolution, NHWC, regular and depthwise, with a fused epilogue (per-channel scale and
//! bias, activations, residual add) applied in registers before the store. Also imports
//! `_FusedConv2D` / `FusedDepthwiseConv2dNative` (their fused ops become the epilogue) and
//! standalone batch normalisation (as a multiply-add whose factors constant folding computes).

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use crate::codegen::microkernel::{self, Microkernel, TileShape};

use super::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use super::epilogue::{self, Epilogue, EpilogueStep};
pub use super::window::{Padding, Window};
use super::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use crate::codegen::kernel::{Kernel, LANES};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

/// Convolution (regular or depthwise) with an epilogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
    pub depthwise: bool,
    /// Applied to each output element; its operands are inputs 2, 3, ...
    pub epilogue: Epilogue,
}

impl Conv2d {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Conv2d {
            strides: attributes.positive_pair("strides")?,
            dilations: attributes.positive_pair("dilations")?,
            padding: Padding::parse(attributes)?,
            depthwise: attributes.boolean("depthwise")?,
            epilogue: Epilogue::parse(attributes)?,
        }))
    }

    /// The window geometry and the number of output channels.
    pub fn geometry(&self, input: &TensorType, filter: &TensorType) -> OpResult<(Window, usize)> {
        if filter.rank() != 4 {
            return Err(invalid!("filter must be rank 4, got {filter}"));
        }
        let window = Window::new(
            &input.shape,
            [filter.shape[0], filter.shape[1]],
            self.strides,
            self.dilations,
            &self.padding,
        )?;
        if filter.shape[2] != window.channels {
            return Err(invalid!(
                "filter {filter} expects {} input channels, the input {input} has {}",
                filter.shape[2],
                window.channels
            ));
        }
        let output_channels = if self.depthwise {
            filter.shape[2] * filter.shape[3]
        } else {
            filter.shape[3]
        };
        Ok((window, output_channels))
    }
}

impl Operator for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn attributes(&self) -> Attributes {
        let attributes = Attributes::default()
            .with(
                "strides",
                Attribute::Ints(self.strides.iter().map(|&v| v as i64).collect()),
            )
            .with(
                "dilations",
                Attribute::Ints(self.dilations.iter().map(|&v| v as i64).collect()),
            )
            .with("depthwise", Attribute::Bool(self.depthwise));
        self.epilogue.add_to(self.padding.add_to(attributes))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2 + self.epilogue.operand_count())?;
        let (input, filter) = (inputs.ty(0)?, inputs.ty(1)?);
        if input.dtype != DType::F32 || filter.dtype != DType::F32 {
            return Err(OpError::Unsupported(format!(
                "convolution of {input} by {filter} (f32 only)"
            )));
        }
        let (window, channels) = self.geometry(input, filter)?;
        let output = TensorType::new(
            DType::F32,
            vec![window.batch, window.output[0], window.output[1], channels],
        );
        self.epilogue.check_operands(&output, &inputs.types[2..])?;
        Ok(vec![output])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (input, filter) = (inputs[0], inputs[1]);
        let (w, channels) = self.geometry(&input.tensor_type(), &filter.tensor_type())?;
        let (TensorData::F32(x), TensorData::F32(f)) = (&input.data, &filter.data) else {
            return Err(invalid!("convolution needs f32 operands"));
        };
        let [ih, iw] = w.input;
        let [oh, ow] = w.output;
        let c = w.channels;
        let multiplier = if self.depthwise { filter.shape[3] } else { 1 };
        let mut out = vec![0f32; w.batch * oh * ow * channels];
        for n in 0..w.batch {
            for y in 0..oh {
                for x_out in 0..ow {
                    for oc in 0..channels {
                        let mut sum = 0f32;
                        for ky in 0..w.kernel[0] {
                            let iy = (y * w.strides[0] + ky * w.dilations[0]) as isize
                                - w.pads[0] as isize;
                            if iy < 0 || iy >= ih as isize {
                                continue;
                            }
                            for kx in 0..w.kernel[1] {
                                let ix = (x_out * w.strides[1] + kx * w.dilations[1]) as isize
                                    - w.pads[2] as isize;
                                if ix < 0 || ix >= iw as isize {
                                    continue;
                                }
                                let base = ((n * ih + iy as usize) * iw + ix as usize) * c;
                                if self.depthwise {
                                    let ci = oc / multiplier;
                                    sum += x[base + ci]
                                        * f[((ky * w.kernel[1] + kx) * c + ci) * multiplier
                                            + oc % multiplier];
                                } else {
                                    for ci in 0..c {
                                        sum += x[base + ci]
                                            * f[((ky * w.kernel[1] + kx) * c + ci) * channels + oc];
                                    }
                                }
                            }
                        }
                        out[((n * oh + y) * ow + x_out) * channels + oc] = sum;
                    }
                }
            }
        }
        let output = Tensor::from_f32(vec![w.batch, oh, ow, channels], out);
        Ok(vec![self.epilogue.evaluate(output, &inputs[2..])?])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let (window, channels) = self
            .geometry(&kernel.inputs[0].ty, &kernel.inputs[1].ty)
            .map_err(|e| kernel.error(e.to_string()))?;
        let source = pad_into_scratch(kernel, &window)?;
        if self.depthwise && kernel.features.avx2 && channels == window.channels {
            lower_depthwise_microkernels(kernel, &self.epilogue, &window, source)
        } else if self.depthwise {
            lower_depthwise(kernel, &self.epilogue, &window, channels, source)
        } else if kernel.features.avx2 {
            lower_regular_microkernels(kernel, &self.epilogue, &window, channels, source)
        } else {
            lower_regular(kernel, &self.epilogue, &window, channels, source)
        }
    }

    fn scratch_bytes(&self, inputs: &[&TensorType], _outputs: &[TensorType]) -> usize {
        match self.geometry(inputs[0], inputs[1]) {
            Ok((window, _)) if window.has_padding() => {
                let [ph, pw] = window.padded();
                window.batch * ph * pw * window.channels * 4
            }
            _ => 0,
        }
    }

    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        let filter = inputs[1];
        let per_output = if self.depthwise {
            filter.shape[0] * filter.shape[1]
        } else {
            filter.shape[0] * filter.shape[1] * filter.shape[2]
        };
        2 * (outputs[0].element_count() * per_output) as u64
    }

    fn with_epilogue_step(&self, step: &EpilogueStep) -> Option<Arc<dyn Operator>> {
        Some(Arc::new(Conv2d {
            epilogue: self.epilogue.with(step),
            ..self.clone()
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Copies the input into scratch with its zero padding, so the loops need no bounds tests.
/// Returns the pointer the convolution reads (the input itself when there is no padding).
pub fn pad_into_scratch(kernel: &mut Kernel, window: &Window) -> Result<Value, CodegenError> {
    let input = kernel.inputs[0].pointer;
    if !window.has_padding() {
        return Ok(input);
    }
    let scratch = kernel.scratch;
    let [ph, pw] = window.padded();
    let c = window.channels;
    let [ih, iw] = window.input;
    let [top, bottom, left, right] = window.pads;
    // Only the border is zeroed: the interior is overwritten by the copy.
    kernel.for_count(window.batch, &mut |k, n| {
        let image = k.builder.ins().imul_imm_s(n, (ph * pw * c) as i64);
        k.fill_words(scratch, image, top * pw * c, 0)?;
        let bottom_start = k
            .builder
            .ins()
            .iadd_imm_s(image, ((top + ih) * pw * c) as i64);
        k.fill_words(scratch, bottom_start, bottom * pw * c, 0)?;
        let source_image = k.builder.ins().imul_imm_s(n, (ih * iw * c) as i64);
        k.for_count(ih, &mut |k, y| {
            let row = k.builder.ins().iadd_imm_s(y, top as i64);
            let row_start = k.builder.ins().imul_imm_s(row, (pw * c) as i64);
            let row_start = k.builder.ins().iadd(image, row_start);
            k.fill_words(scratch, row_start, left * c, 0)?;
            let destination = k.builder.ins().iadd_imm_s(row_start, (left * c) as i64);
            let source = k.builder.ins().imul_imm_s(y, (iw * c) as i64);
            let source = k.builder.ins().iadd(source_image, source);
            k.copy_elements(input, source, scratch, destination, iw * c, 4)?;
            let right_start = k.builder.ins().iadd_imm_s(destination, (iw * c) as i64);
            k.fill_words(scratch, right_start, right * c, 0)
        })
    })?;
    Ok(scratch)
}

/// Splits `total` into runs of `width` (as many as fit) then narrower runs, for tiling.
fn partition(total: usize, widths: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut runs = Vec::new();
    let mut start = 0;
    for &width in widths {
        let count = (total - start) / width;
        if count > 0 {
            runs.push((start, count, width));
            start += count * width;
        }
    }
    runs
}

/// The regular convolution as GEMM tiles on AVX2 machine-code micro-kernels: for each output
/// row, blocks of up to 16 output channels by up to 6 output pixels; each tile sums over the
/// filter taps (one micro-kernel call per tap, accumulating), then the epilogue finishes the
/// tile in place while it is in L1.
fn lower_regular_microkernels(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    w: &Window,
    channels: usize,
    source: Value,
) -> Result<(), CodegenError> {
    let filter = kernel.inputs[1].pointer;
    let output = kernel.outputs[0].pointer;
    let [ph, pw] = w.padded();
    let c = w.channels;
    // A pointwise convolution (1x1, stride 1, no padding) reads input pixels at one stride
    // across rows and images: one GEMM over all of them, so only the last tile is partial.
    let pointwise = w.kernel == [1, 1] && w.strides == [1, 1] && !w.has_padding();
    let (batch, [oh, ow]) = if pointwise {
        (1, [1, w.batch * w.output[0] * w.output[1]])
    } else {
        (w.batch, w.output)
    };
    let lda = (w.strides[1] * c * 4) as i64;
    let ldbc = (channels * 4) as i64;
    let channel_runs = microkernel::tile_runs(channels, microkernel::MAX_COLUMNS);
    let pixel_runs = microkernel::tile_runs(ow, microkernel::MAX_ROWS);
    let depth_runs = microkernel::tile_runs(c, DEPTH_BLOCK);
    kernel.for_count(batch * oh, &mut |k, row| {
        let n = k.builder.ins().udiv_imm_s(row, oh as i64);
        let y = k.builder.ins().urem_imm_s(row, oh as i64);
        let input_row = k.builder.ins().imul_imm_s(n, ph as i64);
        let y_scaled = k.builder.ins().imul_imm_s(y, w.strides[0] as i64);
        let input_row = k.builder.ins().iadd(input_row, y_scaled);
        let output_row = k.builder.ins().imul_imm_s(row, ow as i64);
        for &(channel_start, channel_count, columns) in &channel_runs {
            k.for_steps(channel_start, channel_count, columns, &mut |k, co| {
                // Sum over taps and depth blocks; each block of B (≤ 256 × 16 floats) is reused
                // from L1 by every pixel tile of the row.
                k.for_count(w.kernel[0], &mut |k, ky| {
                    let dy = k.builder.ins().imul_imm_s(ky, w.dilations[0] as i64);
                    let iy = k.builder.ins().iadd(input_row, dy);
                    let input_row_base = k.builder.ins().imul_imm_s(iy, pw as i64);
                    k.for_count(w.kernel[1], &mut |k, kx| {
                        let dx = k.builder.ins().imul_imm_s(kx, w.dilations[1] as i64);
                        let tap = k.builder.ins().imul_imm_s(ky, w.kernel[1] as i64);
                        let tap = k.builder.ins().iadd(tap, kx);
                        let later_tap = k.builder.ins().icmp_imm_s(IntCC::NotEqual, tap, 0);
                        for &(depth_start, depth_count, depth) in &depth_runs {
                            k.for_steps(depth_start, depth_count, depth, &mut |k, k0| {
                                let later_block =
                                    k.builder.ins().icmp_imm_s(IntCC::NotEqual, k0, 0);
                                let accumulate = k.builder.ins().bor(later_tap, later_block);
                                let accumulate = k.builder.ins().uextend(types::I64, accumulate);
                                let b_index = k.builder.ins().imul_imm_s(tap, c as i64);
                                let b_index = k.builder.ins().iadd(b_index, k0);
                                let b_index = k.builder.ins().imul_imm_s(b_index, channels as i64);
                                let b_index = k.builder.ins().iadd(b_index, co);
                                let b_pointer = k.address(filter, b_index, 4);
                                for &(pixel_start, pixel_count, rows) in &pixel_runs {
                                    let function = k.microkernel(Microkernel::Gemm(TileShape {
                                        rows,
                                        columns,
                                    }))?;
                                    k.for_steps(pixel_start, pixel_count, rows, &mut |k, x0| {
                                        let x_scaled =
                                            k.builder.ins().imul_imm_s(x0, w.strides[1] as i64);
                                        let pixel = k.builder.ins().iadd(input_row_base, x_scaled);
                                        let pixel = k.builder.ins().iadd(pixel, dx);
                                        let a_index = k.builder.ins().imul_imm_s(pixel, c as i64);
                                        let a_index = k.builder.ins().iadd(a_index, k0);
                                        let a_pointer = k.address(source, a_index, 4);
                                        let out_pixel = k.builder.ins().iadd(output_row, x0);
                                        let first =
                                            k.builder.ins().imul_imm_s(out_pixel, channels as i64);
                                        let first = k.builder.ins().iadd(first, co);
                                        let c_pointer = k.address(output, first, 4);
                                        let lda = k.iconst(lda);
                                        let ldbc = k.iconst(ldbc);
                                        let depth = k.iconst(depth as i64);
                                        let arguments = [
                                            a_pointer, lda, b_pointer, ldbc, c_pointer, depth,
                                            accumulate,
                                        ];
                                        k.builder.ins().call(function, &arguments);
                                        Ok(())
                                    })?;
                                }
                                Ok(())
                            })?;
                        }
                        Ok(())
                    })
                })?;
                for &(pixel_start, pixel_count, rows) in &pixel_runs {
                    k.for_steps(pixel_start, pixel_count, rows, &mut |k, x0| {
                        let out_pixel = k.builder.ins().iadd(output_row, x0);
                        let first = k.builder.ins().imul_imm_s(out_pixel, channels as i64);
                        let first = k.builder.ins().iadd(first, co);
                        epilogue::emit_in_place(
                            k, epilogue, output, first, co, rows, columns, channels, 2,
                        )
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// Depthwise convolution (multiplier 1) on AVX2 machine-code kernels specialised to the layer:
/// tiles of up to 12 output pixels of a row by 8 channels, every tap unrolled with its input
/// offset as an immediate; the epilogue finishes each tile in place.
fn lower_depthwise_microkernels(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    w: &Window,
    source: Value,
) -> Result<(), CodegenError> {
    let filter = kernel.inputs[1].pointer;
    let output = kernel.outputs[0].pointer;
    let [ph, pw] = w.padded();
    let c = w.channels;
    let [oh, ow] = w.output;
    let channel_runs = microkernel::tile_runs(c, 8);
    let pixel_runs = microkernel::tile_runs(ow, microkernel::MAX_DEPTHWISE_PIXELS);
    kernel.for_count(w.batch * oh, &mut |k, row| {
        let n = k.builder.ins().udiv_imm_s(row, oh as i64);
        let y = k.builder.ins().urem_imm_s(row, oh as i64);
        let input_row = k.builder.ins().imul_imm_s(n, ph as i64);
        let y_scaled = k.builder.ins().imul_imm_s(y, w.strides[0] as i64);
        let input_row = k.builder.ins().iadd(input_row, y_scaled);
        let input_row_base = k.builder.ins().imul_imm_s(input_row, pw as i64);
        let output_row = k.builder.ins().imul_imm_s(row, ow as i64);
        for &(channel_start, channel_count, lanes) in &channel_runs {
            k.for_steps(channel_start, channel_count, lanes, &mut |k, c0| {
                let filter_pointer = k.address(filter, c0, 4);
                for &(pixel_start, pixel_count, pixels) in &pixel_runs {
                    let shape = Microkernel::Depthwise(microkernel::DepthwiseShape {
                        pixels,
                        lanes,
                        window: w.kernel,
                        input_pixel_stride: w.strides[1] * c * 4,
                        input_row_stride: w.dilations[0] * pw * c * 4,
                        input_column_stride: w.dilations[1] * c * 4,
                        tap_stride: c * 4,
                        output_pixel_stride: c * 4,
                    });
                    let function = k.microkernel(shape)?;
                    k.for_steps(pixel_start, pixel_count, pixels, &mut |k, x0| {
                        let x_scaled = k.builder.ins().imul_imm_s(x0, w.strides[1] as i64);
                        let pixel = k.builder.ins().iadd(input_row_base, x_scaled);
                        let a_index = k.builder.ins().imul_imm_s(pixel, c as i64);
                        let a_index = k.builder.ins().iadd(a_index, c0);
                        let input_pointer = k.address(source, a_index, 4);
                        let out_pixel = k.builder.ins().iadd(output_row, x0);
                        let first = k.builder.ins().imul_imm_s(out_pixel, c as i64);
                        let first = k.builder.ins().iadd(first, c0);
                        let output_pointer = k.address(output, first, 4);
                        k.builder
                            .ins()
                            .call(function, &[input_pointer, filter_pointer, output_pointer]);
                        epilogue::emit_in_place(k, epilogue, output, first, c0, pixels, lanes, c, 2)
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// Input channels summed per micro-kernel call: 256 rows of a 16-column B block are 16 KiB,
/// which stays in L1 while every pixel tile of an output row uses it.
const DEPTH_BLOCK: usize = 256;

/// Register tiles of the regular convolution: (output channels, output pixels). 16 channels by 3
/// pixels keeps 12 f32x4 accumulators, 4 weight vectors and a broadcast in the 16 xmm registers.
const TILES: &[(usize, usize)] = &[(4 * LANES, 3), (2 * LANES, 4), (LANES, 4), (1, 4)];

fn lower_regular(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    w: &Window,
    channels: usize,
    source: Value,
) -> Result<(), CodegenError> {
    let filter = kernel.inputs[1].pointer;
    let output = kernel.outputs[0].pointer;
    let [ph, pw] = w.padded();
    let c = w.channels;
    let [oh, ow] = w.output;
    let flags = crate::codegen::kernel::memory_flags();
    let mut channel_runs = Vec::new();
    let mut start = 0;
    for &(width, pixels) in TILES {
        let count = (channels - start) / width;
        if count > 0 {
            channel_runs.push((start, count, width, pixels));
            start += count * width;
        }
    }
    kernel.for_count(w.batch * oh, &mut |k, row| {
        let n = k.builder.ins().udiv_imm_s(row, oh as i64);
        let y = k.builder.ins().urem_imm_s(row, oh as i64);
        let input_row = k.builder.ins().imul_imm_s(n, ph as i64);
        let y_scaled = k.builder.ins().imul_imm_s(y, w.strides[0] as i64);
        let input_row = k.builder.ins().iadd(input_row, y_scaled);
        for &(channel_start, channel_count, channel_width, tile_pixels) in &channel_runs {
            let (vectors, ty) = if channel_width >= LANES {
                (channel_width / LANES, types::F32X4)
            } else {
                (1, types::F32)
            };
            let pixel_runs = partition(ow, &[tile_pixels, 1]);
            k.for_steps(channel_start, channel_count, channel_width, &mut |k, co| {
                for &(pixel_start, pixel_count, pixels) in &pixel_runs {
                    k.for_steps(pixel_start, pixel_count, pixels, &mut |k, x0| {
                        let accumulators: Vec<_> = (0..pixels * vectors)
                            .map(|_| {
                                let var = k.builder.declare_var(ty);
                                let zero = k.float_constant(ty, 0.0);
                                k.builder.def_var(var, zero);
                                var
                            })
                            .collect();
                        k.for_count(w.kernel[0], &mut |k, ky| {
                            let dy = k.builder.ins().imul_imm_s(ky, w.dilations[0] as i64);
                            let iy = k.builder.ins().iadd(input_row, dy);
                            k.for_count(w.kernel[1], &mut |k, kx| {
                                let dx = k.builder.ins().imul_imm_s(kx, w.dilations[1] as i64);
                                // Element index of input[n, iy, x0 * s + dx, 0] and of filter[ky, kx, 0, co].
                                let row_base = k.builder.ins().imul_imm_s(iy, pw as i64);
                                let x_scaled = k.builder.ins().imul_imm_s(x0, w.strides[1] as i64);
                                let column = k.builder.ins().iadd(x_scaled, dx);
                                let pixel = k.builder.ins().iadd(row_base, column);
                                let input_base = k.builder.ins().imul_imm_s(pixel, c as i64);
                                let input_start = k.address(source, input_base, 4);
                                let tap = k.builder.ins().imul_imm_s(ky, w.kernel[1] as i64);
                                let tap = k.builder.ins().iadd(tap, kx);
                                let filter_base =
                                    k.builder.ins().imul_imm_s(tap, (c * channels) as i64);
                                let filter_base = k.builder.ins().iadd(filter_base, co);
                                let filter_start = k.address(filter, filter_base, 4);
                                // Walk both pointers along the input channels (no multiply per step).
                                let input_pointer = k.builder.declare_var(types::I64);
                                let filter_pointer = k.builder.declare_var(types::I64);
                                k.builder.def_var(input_pointer, input_start);
                                k.builder.def_var(filter_pointer, filter_start);
                                k.for_count(c, &mut |k, _| {
                                    let input_at = k.builder.use_var(input_pointer);
                                    let weight_at = k.builder.use_var(filter_pointer);
                                    let weights: Vec<Value> = (0..vectors)
                                        .map(|v| {
                                            k.builder.ins().load(
                                                ty,
                                                flags,
                                                weight_at,
                                                (v * LANES * 4) as i32,
                                            )
                                        })
                                        .collect();
                                    for p in 0..pixels {
                                        let offset = (p * w.strides[1] * c * 4) as i32;
                                        let scalar = k.builder.ins().load(
                                            types::F32,
                                            flags,
                                            input_at,
                                            offset,
                                        );
                                        let broadcast = if ty.is_vector() {
                                            k.builder.ins().splat(ty, scalar)
                                        } else {
                                            scalar
                                        };
                                        for (v, weight) in weights.iter().enumerate() {
                                            let var = accumulators[p * vectors + v];
                                            let acc = k.builder.use_var(var);
                                            let acc = k.multiply_add(broadcast, *weight, acc);
                                            k.builder.def_var(var, acc);
                                        }
                                    }
                                    let next_input = k.builder.ins().iadd_imm_s(input_at, 4);
                                    k.builder.def_var(input_pointer, next_input);
                                    let next_weight = k
                                        .builder
                                        .ins()
                                        .iadd_imm_s(weight_at, (channels * 4) as i64);
                                    k.builder.def_var(filter_pointer, next_weight);
                                    Ok(())
                                })
                            })
                        })?;
                        for p in 0..pixels {
                            let pixel = k.builder.ins().iadd_imm_s(x0, p as i64);
                            let out_row = k.builder.ins().imul_imm_s(row, ow as i64);
                            let out_pixel = k.builder.ins().iadd(out_row, pixel);
                            let out_base = k.builder.ins().imul_imm_s(out_pixel, channels as i64);
                            for v in 0..vectors {
                                let channel = k.builder.ins().iadd_imm_s(co, (v * LANES) as i64);
                                let index = k.builder.ins().iadd(out_base, channel);
                                let value = k.builder.use_var(accumulators[p * vectors + v]);
                                let value =
                                    epilogue::emit(k, epilogue, value, ty, index, channel, 2)?;
                                k.store(value, output, index, 4);
                            }
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

fn lower_depthwise(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    w: &Window,
    channels: usize,
    source: Value,
) -> Result<(), CodegenError> {
    let filter = kernel.inputs[1].pointer;
    let output = kernel.outputs[0].pointer;
    let [ph, pw] = w.padded();
    let c = w.channels;
    let multiplier = channels / c;
    let [oh, ow] = w.output;
    let channel_runs = if multiplier == 1 {
        partition(channels, &[LANES, 1])
    } else {
        vec![(0, channels, 1)]
    };
    kernel.for_count(w.batch * oh * ow, &mut |k, pixel| {
        let n = k.builder.ins().udiv_imm_s(pixel, (oh * ow) as i64);
        let rest = k.builder.ins().urem_imm_s(pixel, (oh * ow) as i64);
        let y = k.builder.ins().udiv_imm_s(rest, ow as i64);
        let x = k.builder.ins().urem_imm_s(rest, ow as i64);
        let iy = k.builder.ins().imul_imm_s(y, w.strides[0] as i64);
        let row = k.builder.ins().imul_imm_s(n, ph as i64);
        let iy = k.builder.ins().iadd(row, iy);
        let ix = k.builder.ins().imul_imm_s(x, w.strides[1] as i64);
        let out_base = k.builder.ins().imul_imm_s(pixel, channels as i64);
        for &(start, count, width) in &channel_runs {
            let ty: Type = if width == LANES {
                types::F32X4
            } else {
                types::F32
            };
            k.for_steps(start, count, width, &mut |k, oc| {
                let ci = if multiplier == 1 {
                    oc
                } else {
                    k.builder.ins().udiv_imm_s(oc, multiplier as i64)
                };
                let var = k.builder.declare_var(ty);
                let zero = k.float_constant(ty, 0.0);
                k.builder.def_var(var, zero);
                for ky in 0..w.kernel[0] {
                    for kx in 0..w.kernel[1] {
                        let dy = (ky * w.dilations[0]) as i64;
                        let dx = (kx * w.dilations[1]) as i64;
                        let r = k.builder.ins().iadd_imm_s(iy, dy);
                        let r = k.builder.ins().imul_imm_s(r, pw as i64);
                        let col = k.builder.ins().iadd_imm_s(ix, dx);
                        let p = k.builder.ins().iadd(r, col);
                        let p = k.builder.ins().imul_imm_s(p, c as i64);
                        let input_index = k.builder.ins().iadd(p, ci);
                        let value = k.load(ty, source, input_index, 4);
                        let filter_index = k
                            .builder
                            .ins()
                            .iadd_imm_s(oc, ((ky * w.kernel[1] + kx) * channels) as i64);
                        let weight = k.load(ty, filter, filter_index, 4);
                        let acc = k.builder.use_var(var);
                        let acc = k.multiply_add(value, weight, acc);
                        k.builder.def_var(var, acc);
                    }
                }
                let index = k.builder.ins().iadd(out_base, oc);
                let value = k.builder.use_var(var);
                let value = epilogue::emit(k, epilogue, value, ty, index, oc, 2)?;
                k.store(value, output, index, 4);
                Ok(())
            })?;
        }
        Ok(())
    })
}

// ---- import ----

fn tf_pair(attributes: &NodeAttributes, name: &str, format: &str) -> Result<[usize; 2], String> {
    let values = attributes.ints_or(name, &[1, 1, 1, 1])?;
    if values.len() != 4 || values.iter().any(|&v| v <= 0) {
        return Err(format!(
            "{name} must hold 4 positive values, got {values:?}"
        ));
    }
    if format == "NHWC" {
        if values[0] != 1 || values[3] != 1 {
            return Err(format!(
                "{name} {values:?} along batch or channels is not supported"
            ));
        }
        Ok([values[1] as usize, values[2] as usize])
    } else {
        Err(format!("data_format {format} is not supported (NHWC only)"))
    }
}

/// Conv2D, DepthwiseConv2dNative and their fused forms.
pub fn import_conv2d(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    let format = attributes.string_or("data_format", "NHWC").map_err(fail)?;
    let conv = Conv2d {
        strides: tf_pair(&attributes, "strides", &format).map_err(fail)?,
        dilations: tf_pair(&attributes, "dilations", &format).map_err(fail)?,
        padding: Padding::from_tf(&attributes).map_err(fail)?,
        depthwise: node.op.contains("Depthwise"),
        epilogue: Epilogue::default(),
    };
    let fused = attributes.strings("fused_ops").map_err(fail)?;
    let extra = &inputs[2..];
    import_fused(
        importer,
        node,
        Arc::new(conv),
        inputs[..2].to_vec(),
        &fused,
        extra,
    )
}

/// Builds `core(inputs)` followed by TensorFlow's fused ops, as separate IR nodes the fusion pass
/// folds back into the epilogue (so `_FusedConv2D` and plain `Conv2D` + `BiasAdd` + `Relu` take
/// the same road).
pub fn import_fused(
    importer: &mut Importer,
    node: &NodeDef,
    core: Arc<dyn Operator>,
    inputs: Vec<ValueId>,
    fused: &[String],
    extra: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    let core_name = if fused.is_empty() {
        node.name.clone()
    } else {
        format!("{}/core", node.name)
    };
    let id = importer.graph.add_node(&core_name, core, inputs, 1);
    let mut value = importer
        .graph
        .node(id)
        .map(|n| n.outputs[0])
        .ok_or_else(|| fail("internal".into()))?;
    let mut next_extra = 0;
    let mut take = |count: usize| -> Result<Vec<ValueId>, ImportError> {
        let taken = extra.get(next_extra..next_extra + count).ok_or_else(|| {
            fail(format!(
                "fused_ops {fused:?} need more than the {} extra inputs given",
                extra.len()
            ))
        })?;
        next_extra += count;
        Ok(taken.to_vec())
    };
    for (position, op) in fused.iter().enumerate() {
        let name = if position + 1 == fused.len() {
            node.name.clone()
        } else {
            format!("{}/{}", node.name, op)
        };
        value = match op.as_str() {
            "BiasAdd" | "Add" | "AddV2" => {
                let bias = take(1)?;
                importer.add_named(&name, Binary::new(BinaryKind::Add), vec![value, bias[0]])
            }
            "FusedBatchNorm" | "FusedBatchNormV3" => {
                let epsilon = attributes.float_or("epsilon", 1e-3).map_err(fail)?;
                let args = take(4)?;
                batch_norm(importer, &name, value, &args, epsilon)
            }
            "Relu" | "Relu6" | "Elu" | "Sigmoid" | "Tanh" => {
                let kind = UnaryKind::from_text(&op.to_lowercase())
                    .ok_or_else(|| fail(format!("fused op {op}")))?;
                importer.add_named(&name, Unary::new(kind), vec![value])
            }
            "LeakyRelu" => {
                let alpha = attributes.float_or("leakyrelu_alpha", 0.2).map_err(fail)?;
                importer.add_named(
                    &name,
                    Unary {
                        kind: UnaryKind::LeakyRelu,
                        alpha,
                    },
                    vec![value],
                )
            }
            "Prelu" => {
                let alpha = take(1)?;
                importer.add_named(&name, Binary::new(BinaryKind::Prelu), vec![value, alpha[0]])
            }
            other => return Err(fail(format!("fused op {other:?} is not supported"))),
        };
    }
    Ok(vec![value])
}

/// `y = x * m + (offset - mean * m)` with `m = scale / sqrt(variance + epsilon)`, as IR nodes
/// over the (constant) statistics; constant folding reduces them to two vectors.
fn batch_norm(
    importer: &mut Importer,
    name: &str,
    x: ValueId,
    args: &[ValueId],
    epsilon: f32,
) -> ValueId {
    let (scale, offset, mean, variance) = (args[0], args[1], args[2], args[3]);
    let epsilon = importer.constant(
        &format!("{name}/epsilon"),
        Tensor::from_f32(vec![], vec![epsilon]),
    );
    let shifted = importer.add_named(
        &format!("{name}/variance_epsilon"),
        Binary::new(BinaryKind::Add),
        vec![variance, epsilon],
    );
    let inverse = importer.add_named(
        &format!("{name}/rsqrt"),
        Unary::new(UnaryKind::Rsqrt),
        vec![shifted],
    );
    let factor = importer.add_named(
        &format!("{name}/factor"),
        Binary::new(BinaryKind::Mul),
        vec![scale, inverse],
    );
    let mean_scaled = importer.add_named(
        &format!("{name}/mean_scaled"),
        Binary::new(BinaryKind::Mul),
        vec![mean, factor],
    );
    let shift = importer.add_named(
        &format!("{name}/shift"),
        Binary::new(BinaryKind::Sub),
        vec![offset, mean_scaled],
    );
    let scaled = importer.add_named(
        &format!("{name}/scaled"),
        Binary::new(BinaryKind::Mul),
        vec![x, factor],
    );
    importer.add_named(name, Binary::new(BinaryKind::Add), vec![scaled, shift])
}

/// FusedBatchNorm / FusedBatchNormV3 in inference mode (output 0 only).
pub fn import_batch_norm(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 5)?;
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    if attributes.boolean_or("is_training", false).map_err(fail)? {
        return Err(fail(
            "training-mode batch normalisation is not supported".into(),
        ));
    }
    let format = attributes.string_or("data_format", "NHWC").map_err(fail)?;
    if format != "NHWC" {
        return Err(fail(format!(
            "data_format {format} is not supported (NHWC only)"
        )));
    }
    let epsilon = attributes.float_or("epsilon", 1e-3).map_err(fail)?;
    Ok(vec![batch_norm(
        importer,
        &node.name,
        inputs[0],
        &inputs[1..5],
        epsilon,
    )])
}

pub const FAMILY: Family = Family {
    ir: &[("conv2d", Conv2d::parse)],
    tensorflow: &[
        ("Conv2D", import_conv2d),
        ("_FusedConv2D", import_conv2d),
        ("DepthwiseConv2dNative", import_conv2d),
        ("FusedDepthwiseConv2dNative", import_conv2d),
        ("FusedBatchNorm", import_batch_norm),
        ("FusedBatchNormV3", import_batch_norm),
    ],
};
