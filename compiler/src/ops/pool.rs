//! Max and average pooling, NHWC. Windows are clipped to the input: max ignores padding, average
//! divides by the number of input elements inside the window (TensorFlow's rule).

use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Type};

use super::conv::{window_row_origin, Padding, Window};
use super::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use crate::codegen::kernel::{memory_flags, Kernel, LANES};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub max: bool,
    pub window: [usize; 2],
    pub strides: [usize; 2],
    pub padding: Padding,
    /// The padding's cells are zeros inside the window (a zero Pad folded in, see
    /// `with_input_padding`), where TensorFlow's own pool padding lies outside it.
    pub zero_padding: bool,
}

impl Pool {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let max = match attributes.string("kind")? {
            "max" => true,
            "average" => false,
            other => return Err(invalid!("unknown pool kind `{other}`")),
        };
        Ok(Arc::new(Pool {
            max,
            window: attributes.positive_pair("window")?,
            strides: attributes.positive_pair("strides")?,
            padding: Padding::parse(attributes)?,
            zero_padding: attributes.0.contains_key("zero_padding")
                && attributes.boolean("zero_padding")?,
        }))
    }

    fn geometry(&self, input: &TensorType) -> OpResult<Window> {
        Window::new(
            &input.shape,
            self.window,
            self.strides,
            [1, 1],
            &self.padding,
        )
    }
}

impl Operator for Pool {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn attributes(&self) -> Attributes {
        let attributes = Attributes::default()
            .with(
                "kind",
                Attribute::Str(if self.max { "max" } else { "average" }.into()),
            )
            .with(
                "window",
                Attribute::Ints(self.window.iter().map(|&v| v as i64).collect()),
            )
            .with(
                "strides",
                Attribute::Ints(self.strides.iter().map(|&v| v as i64).collect()),
            );
        let attributes = if self.zero_padding {
            attributes.with("zero_padding", Attribute::Bool(true))
        } else {
            attributes
        };
        self.padding.add_to(attributes)
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let input = inputs.ty(0)?;
        if input.dtype != DType::F32 {
            return Err(OpError::Unsupported(format!(
                "pooling of {input} (f32 only)"
            )));
        }
        let w = self.geometry(input)?;
        Ok(vec![TensorType::new(
            DType::F32,
            vec![w.batch, w.output[0], w.output[1], w.channels],
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let w = self.geometry(&inputs[0].tensor_type())?;
        let TensorData::F32(x) = &inputs[0].data else {
            return Err(invalid!("pooling needs f32"));
        };
        let ([ih, iw], [oh, ow], c) = (w.input, w.output, w.channels);
        let mut out = Vec::with_capacity(w.batch * oh * ow * c);
        for n in 0..w.batch {
            for y in 0..oh {
                for xo in 0..ow {
                    let (y0, y1) = clip(y * w.strides[0], w.pads[0], w.kernel[0], ih);
                    let (x0, x1) = clip(xo * w.strides[1], w.pads[2], w.kernel[1], iw);
                    let (start, count) = self.window_start_and_count(&w, (y1 - y0) * (x1 - x0));
                    for ch in 0..c {
                        let mut acc = start;
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let v = x[((n * ih + iy) * iw + ix) * c + ch];
                                // Max skips NaN (f32::max), as TensorFlow's kernel does.
                                acc = if self.max { acc.max(v) } else { acc + v };
                            }
                        }
                        out.push(if self.max { acc } else { acc / count as f32 });
                    }
                }
            }
        }
        Ok(vec![Tensor::from_f32(vec![w.batch, oh, ow, c], out)])
    }

    /// A zero Pad before a valid pooling (Keras' ZeroPadding2D before ResNet's max pool) folds
    /// in as explicit padding whose cells are zeros. A -inf Pad before a valid max pool (how
    /// ONNX exports spell a padded MaxPool) folds in as TensorFlow's own explicit padding, which
    /// lies outside the window: no maximum picks -inf over a real value, so the two agree
    /// wherever a window holds one, which every window does when each pad is narrower than the
    /// window.
    fn with_input_padding(&self, pads: &[(usize, usize)], fill: f32) -> Option<Arc<dyn Operator>> {
        let zero_padding = match fill {
            0.0 => true,
            f32::NEG_INFINITY if self.max => false,
            _ => return None,
        };
        // The folded cells must be of one kind with the pool's own explicit padding, if any.
        if matches!(self.padding, Padding::Explicit(_)) && self.zero_padding != zero_padding {
            return None;
        }
        let padding = self.padding.plus_pads(pads)?;
        if let Padding::Explicit([top, bottom, left, right]) = padding {
            let [height, width] = self.window;
            let narrower = top.max(bottom) < height && left.max(right) < width;
            if !zero_padding && !narrower {
                return None;
            }
        }
        Some(Arc::new(Pool {
            padding,
            zero_padding,
            ..self.clone()
        }))
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let w = self
            .geometry(&kernel.inputs[0].ty)
            .map_err(|e| kernel.error(e.to_string()))?;
        let spans = [w.tap_spans(0), w.tap_spans(1)];
        // Tap offsets are 32-bit displacements.
        let reach = w.kernel[0] * w.input[1] * w.channels * 4;
        if spans[0].len() * spans[1].len() <= MAX_SPAN_PAIRS
            && w.kernel[0] * w.kernel[1] <= MAX_TAPS
            && reach <= i32::MAX as usize
        {
            return self.lower_unrolled(kernel, &w, &spans);
        }
        self.lower_runtime_windows(kernel, &w)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Window taps ([`Pool::lower_unrolled`] unrolls them all) and (row span, column span) pairs
/// (each its own code) up to which a pooling's windows are unrolled.
const MAX_TAPS: usize = 64;
const MAX_SPAN_PAIRS: usize = 64;

impl Pool {
    /// For a window reading `inside` of its taps: the value its accumulation starts from and
    /// the count an average divides by. A clipped window's zero padding takes part (as a 0 in
    /// the maximum, and in the count) when `zero_padding`; an empty window averages to 0
    /// (TensorFlow's count of at least one).
    fn window_start_and_count(&self, w: &Window, inside: usize) -> (f32, usize) {
        let full = w.kernel[0] * w.kernel[1];
        let zeros_count = self.zero_padding && inside < full;
        let start = if self.max && !zeros_count {
            f32::NEG_INFINITY
        } else {
            0.0
        };
        let count = if self.zero_padding { full } else { inside };
        (start, count.max(1))
    }

    /// The taps of each window unrolled, their input offsets immediates: output rows in spans
    /// whose windows read the same rows of taps ([`Window::tap_spans`]), and within a row,
    /// columns in spans reading the same columns of taps, so a span's windows are clipped to
    /// the input at compile time (and an average's divisor is a constant). Per pixel, vectors
    /// of channels, then single channels.
    fn lower_unrolled(
        &self,
        kernel: &mut Kernel,
        w: &Window,
        [row_spans, column_spans]: &[Vec<(Range<usize>, Range<usize>)>; 2],
    ) -> Result<(), CodegenError> {
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let (iw, [oh, ow], c) = (w.input[1], w.output, w.channels);
        let max = self.max;
        let channel_runs = [(0, c / LANES, LANES), (c / LANES * LANES, c % LANES, 1)];
        let ends: Vec<usize> = row_spans.iter().map(|(rows, _)| rows.end).collect();
        kernel.for_split(w.batch * oh, &mut |k, row| {
            let n = k.builder.ins().udiv_imm_s(row, oh as i64);
            let y = k.builder.ins().urem_imm_s(row, oh as i64);
            k.switch_spans(y, &ends, &mut |k, span| {
                let rows = row_spans[span].1.clone();
                let row_base = window_row_origin(k, w, n, y);
                let output_row = k.builder.ins().imul_imm_s(row, ow as i64);
                for (positions, columns) in column_spans {
                    let taps: Vec<usize> = rows
                        .clone()
                        .flat_map(|ty| columns.clone().map(move |tx| ty * iw + tx))
                        .collect();
                    let (init, count) = self.window_start_and_count(w, taps.len());
                    let inverse = 1.0 / count as f32;
                    k.for_steps(positions.start, positions.len(), 1, &mut |k, x| {
                        let x_scaled = k.builder.ins().imul_imm_s(x, w.strides[1] as i64);
                        let pixel = k.builder.ins().iadd(row_base, x_scaled);
                        let first = k.builder.ins().imul_imm_s(pixel, c as i64);
                        let window = k.address(input, first, 4);
                        let out_pixel = k.builder.ins().iadd(output_row, x);
                        let out_first = k.builder.ins().imul_imm_s(out_pixel, c as i64);
                        let destination = k.address(output, out_first, 4);
                        for &(start, count, width) in &channel_runs {
                            let ty = if width == LANES {
                                types::F32X4
                            } else {
                                types::F32
                            };
                            k.for_steps(start, count, width, &mut |k, channel| {
                                let offset = k.builder.ins().imul_imm_s(channel, 4);
                                let at = k.builder.ins().iadd(window, offset);
                                let mut acc = k.float_constant(ty, init);
                                for &tap in &taps {
                                    let value = k.builder.ins().load(
                                        ty,
                                        memory_flags(),
                                        at,
                                        (tap * c * 4) as i32,
                                    );
                                    // Max skips NaN, as TensorFlow's kernel does (see below);
                                    // `acc < value` picks, a form x64 lowers to one maxps.
                                    acc = if max {
                                        k.select_float(FloatCC::LessThan, acc, value, value, acc)
                                    } else {
                                        k.builder.ins().fadd(acc, value)
                                    };
                                }
                                if !max {
                                    let factor = k.float_constant(ty, inverse);
                                    acc = k.builder.ins().fmul(acc, factor);
                                }
                                let to = k.builder.ins().iadd(destination, offset);
                                k.builder.ins().store(memory_flags(), acc, to, 0);
                                Ok(())
                            })?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })
        })
    }

    /// Windows bounded at run time, for the few poolings with too many taps or spans to unroll.
    fn lower_runtime_windows(&self, kernel: &mut Kernel, w: &Window) -> Result<(), CodegenError> {
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let ([ih, iw], [oh, ow], c) = (w.input, w.output, w.channels);
        let max = self.max;
        let vector_end = c / LANES * LANES;
        kernel.for_split(w.batch * oh * ow, &mut |k, pixel| {
            let n = k.builder.ins().udiv_imm_s(pixel, (oh * ow) as i64);
            let rest = k.builder.ins().urem_imm_s(pixel, (oh * ow) as i64);
            let y = k.builder.ins().udiv_imm_s(rest, ow as i64);
            let x = k.builder.ins().urem_imm_s(rest, ow as i64);
            let bounds = |k: &mut Kernel,
                          position,
                          stride: usize,
                          pad: usize,
                          size: usize,
                          extent: usize| {
                let start = k.builder.ins().imul_imm_s(position, stride as i64);
                let start = k.builder.ins().iadd_imm_s(start, -(pad as i64));
                let end = k.builder.ins().iadd_imm_s(start, size as i64);
                let zero = k.iconst(0);
                let limit = k.iconst(extent as i64);
                // A window wholly inside the padding is empty (end = start), never negative.
                let start = k.builder.ins().smax(start, zero);
                let end = k.builder.ins().smin(end, limit);
                (start, k.builder.ins().smax(end, start))
            };
            let (y0, y1) = bounds(k, y, w.strides[0], w.pads[0], w.kernel[0], ih);
            let (x0, x1) = bounds(k, x, w.strides[1], w.pads[2], w.kernel[1], iw);
            let image = k.builder.ins().imul_imm_s(n, ih as i64);
            let full = w.kernel[0] * w.kernel[1];
            let height = k.builder.ins().isub(y1, y0);
            let width = k.builder.ins().isub(x1, x0);
            let inside = k.builder.ins().imul(height, width);
            // Zero padding takes part: the maximum starts at 0 when the window is clipped.
            let starts_at_zero = self.zero_padding.then(|| {
                k.builder
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedLessThan, inside, full as i64)
            });
            let inverse_count = if max {
                None
            } else {
                let count = if self.zero_padding {
                    k.iconst(full as i64)
                } else {
                    inside
                };
                let at_least_one = k.iconst(1);
                let count = k.builder.ins().smax(count, at_least_one);
                let count = k.builder.ins().fcvt_from_sint(types::F32, count);
                let one = k.float_constant(types::F32, 1.0);
                Some(k.builder.ins().fdiv(one, count))
            };
            let out_base = k.builder.ins().imul_imm_s(pixel, c as i64);
            let runs = [
                (0usize, vector_end / LANES, LANES),
                (vector_end, c - vector_end, 1),
            ];
            for (start, count, width) in runs {
                let ty: Type = if width == LANES {
                    types::F32X4
                } else {
                    types::F32
                };
                k.for_steps(start, count, width, &mut |k, channel| {
                    let var = k.builder.declare_var(ty);
                    let mut init = k.float_constant(ty, if max { f32::NEG_INFINITY } else { 0.0 });
                    if let Some(starts_at_zero) = starts_at_zero {
                        let zero = k.float_constant(ty, 0.0);
                        init = k.builder.ins().select(starts_at_zero, zero, init);
                    }
                    k.builder.def_var(var, init);
                    k.for_range(y0, y1, 1, &mut |k, iy| {
                        let row = k.builder.ins().iadd(image, iy);
                        let row = k.builder.ins().imul_imm_s(row, iw as i64);
                        k.for_range(x0, x1, 1, &mut |k, ix| {
                            let p = k.builder.ins().iadd(row, ix);
                            let p = k.builder.ins().imul_imm_s(p, c as i64);
                            let index = k.builder.ins().iadd(p, channel);
                            let value = k.load(ty, input, index, 4);
                            let acc = k.builder.use_var(var);
                            // Max pooling skips NaN, as TensorFlow's kernel does (`acc < value`
                            // is false for NaN); the reference's f32::max does the same.
                            let acc = if max {
                                k.select_float(FloatCC::LessThan, acc, value, value, acc)
                            } else {
                                k.builder.ins().fadd(acc, value)
                            };
                            k.builder.def_var(var, acc);
                            Ok(())
                        })
                    })?;
                    let mut result = k.builder.use_var(var);
                    if let Some(inverse) = inverse_count {
                        let factor = if ty.is_vector() {
                            k.builder.ins().splat(ty, inverse)
                        } else {
                            inverse
                        };
                        result = k.builder.ins().fmul(result, factor);
                    }
                    let index = k.builder.ins().iadd(out_base, channel);
                    k.store(result, output, index, 4);
                    Ok(())
                })?;
            }
            Ok(())
        })
    }
}

/// The input range a window starting at `origin - pad` of `size` covers, clipped to `extent`.
fn clip(origin: usize, pad: usize, size: usize, extent: usize) -> (usize, usize) {
    let start = origin as isize - pad as isize;
    let end = (start + size as isize).min(extent as isize);
    (start.max(0) as usize, end.max(0) as usize)
}

/// MaxPool and AvgPool.
pub fn import_pool(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    let format = attributes.string_or("data_format", "NHWC").map_err(fail)?;
    if format != "NHWC" {
        return Err(fail(format!(
            "data_format {format} is not supported (NHWC only)"
        )));
    }
    let four = |name: &str| -> Result<[usize; 2], ImportError> {
        let v = attributes.ints(name).map_err(fail)?;
        if v.len() != 4 || v[0] != 1 || v[3] != 1 || v[1] <= 0 || v[2] <= 0 {
            return Err(fail(format!("{name} must be [1, h, w, 1], got {v:?}")));
        }
        Ok([v[1] as usize, v[2] as usize])
    };
    let pool = Pool {
        max: node.op == "MaxPool",
        window: four("ksize")?,
        strides: four("strides")?,
        padding: Padding::from_tf(&attributes).map_err(fail)?,
        zero_padding: false,
    };
    Ok(vec![importer.add(node, pool, vec![inputs[0]])])
}

pub const FAMILY: Family = Family {
    ir: &[("pool", Pool::parse)],
    tensorflow: &[("MaxPool", import_pool), ("AvgPool", import_pool)],
};
