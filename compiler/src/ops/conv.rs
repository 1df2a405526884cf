//! 2-D convolution, NHWC, regular and depthwise, with a fused epilogue (per-channel scale and
//! bias, activations, residual add) applied in registers before the store. Also imports
//! `_FusedConv2D` / `FusedDepthwiseConv2dNative` (their fused ops become the epilogue) and
//! standalone batch normalisation (as a multiply-add whose factors constant folding computes).

use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use crate::codegen::gemm::{self, Gemm, GroupBases, Segment};
use crate::codegen::microkernel::{self, Isa, Microkernel, MAX_DEPTHWISE_PIXELS};
use crate::codegen::winograd;
use tfjsc_runtime::panels::Panels;
use tfjsc_runtime::winograd::Winograd;

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
        Ok(Arc::new(Conv2d::parse_fields(attributes)?))
    }

    /// The convolution its IR attributes describe.
    pub fn parse_fields(attributes: &Attributes) -> OpResult<Conv2d> {
        Ok(Conv2d {
            strides: attributes.positive_pair("strides")?,
            dilations: attributes.positive_pair("dilations")?,
            padding: Padding::parse(attributes)?,
            depthwise: attributes.boolean("depthwise")?,
            epilogue: Epilogue::parse(attributes)?,
        })
    }

    /// The Winograd variant a regular convolution of this geometry and `outputs` channels runs
    /// as (`codegen::winograd::choose`); it does, if its filter is a constant and so is packed
    /// as that variant's transform (`passes::pack_weights`, through `panel_operand`).
    /// Whether the depthwise lowering for `isa` runs on the machine-code kernels (multiplier 1).
    pub(crate) fn depthwise_on_microkernels(
        &self,
        window: &Window,
        outputs: usize,
        isa: Isa,
    ) -> bool {
        self.depthwise && isa != Isa::Portable && outputs == window.channels
    }

    pub(crate) fn winograd(&self, window: &Window, outputs: usize) -> Option<Winograd> {
        if self.depthwise {
            return None;
        }
        winograd::choose(window, outputs)
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

    /// A regular convolution's filter `[kh, kw, c, n]` is B `[kh·kw·c, n]`, or, for a 3×3
    /// convolution run by Winograd's algorithm, the t² matrices `[c, n]` of its transform.
    pub fn panel_operand(&self, inputs: &[&TensorType]) -> Option<(usize, Panels)> {
        let (input, filter) = (inputs.first()?, inputs.get(1)?);
        if self.depthwise || filter.rank() != 4 {
            return None;
        }
        if let Some(variant) = self
            .geometry(input, filter)
            .ok()
            .and_then(|(window, channels)| self.winograd(&window, channels))
        {
            let panels = Panels {
                rows: filter.shape[2],
                columns: filter.shape[3],
                transposed: false,
                winograd: Some(variant),
            };
            return Some((1, panels));
        }
        let rows = filter.shape[..3].iter().product();
        Some((
            1,
            Panels {
                rows,
                columns: filter.shape[3],
                transposed: false,
                winograd: None,
            },
        ))
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
        if self.depthwise_on_microkernels(&window, channels, kernel.features.isa) {
            if depthwise_in_place(&window) {
                let input = kernel.inputs[0].pointer;
                return lower_depthwise_microkernels(kernel, &self.epilogue, &window, input);
            }
            let source = pad_into_scratch(kernel, &window)?;
            let padded = Window {
                input: window.padded(),
                pads: [0; 4],
                ..window.clone()
            };
            return lower_depthwise_microkernels(kernel, &self.epilogue, &padded, source);
        }
        if let Some(variant) = kernel.inputs[1].winograd {
            // Scratch was sized for the variant this geometry chooses: a filter packed as any
            // other must not run.
            if self.winograd(&window, channels) != Some(variant) {
                return Err(kernel.error(format!(
                    "filter packed as Winograd {variant:?}, which this convolution does not choose"
                )));
            }
            return winograd::lower(kernel, &self.epilogue, &window, channels, variant);
        }
        let source = pad_into_scratch(kernel, &window)?;
        if self.depthwise {
            lower_depthwise(kernel, &self.epilogue, &window, channels, source)
        } else {
            lower_regular(kernel, &self.epilogue, &window, channels, source)
        }
    }

    fn scratch_bytes(
        &self,
        inputs: &[&TensorType],
        _outputs: &[TensorType],
        isas: &[Isa],
    ) -> usize {
        let Ok((window, channels)) = self.geometry(inputs[0], inputs[1]) else {
            return 0;
        };
        let in_place = depthwise_in_place(&window)
            && isas
                .iter()
                .all(|&isa| self.depthwise_on_microkernels(&window, channels, isa));
        let direct = if window.has_padding() && !in_place {
            window.padded_bytes()
        } else {
            0
        };
        // The filter is packed as a Winograd transform only if it is a constant; the scratch
        // covers either lowering.
        match self.winograd(&window, channels) {
            Some(variant) => direct.max(winograd::scratch_bytes(&window, channels, variant)),
            None => direct,
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

    fn panel_operands(&self, inputs: &[&TensorType]) -> Vec<(usize, Panels)> {
        self.panel_operand(inputs).into_iter().collect()
    }

    /// Input channel `c` meets the filter's slice `[.., .., c, ..]` only, for regular and
    /// depthwise convolutions alike (zero padding stays zero when scaled).
    fn channel_scale_operand(&self, inputs: &[&TensorType]) -> Option<(usize, usize)> {
        let (input, filter) = (inputs.first()?, inputs.get(1)?);
        (input.rank() == 4 && filter.rank() == 4 && self.epilogue.steps.is_empty())
            .then_some((1, 2))
    }

    /// Spatial zero padding folds into explicit padding (only around valid or explicit padding:
    /// `same` padding depends on the input's size).
    fn with_input_padding(&self, pads: &[(usize, usize)], fill: f32) -> Option<Arc<dyn Operator>> {
        if fill != 0.0 {
            return None;
        }
        Some(Arc::new(Conv2d {
            padding: self.padding.plus_pads(pads)?,
            ..self.clone()
        }))
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
    // Only the border is zeroed: the interior is overwritten by the copy. The threads share the
    // rows, then all meet before reading them.
    kernel.for_split(window.batch, &mut |k, n| {
        let image = k.builder.ins().imul_imm_s(n, (ph * pw * c) as i64);
        k.fill_words(scratch, image, top * pw * c, 0)?;
        let bottom_start = k
            .builder
            .ins()
            .iadd_imm_s(image, ((top + ih) * pw * c) as i64);
        k.fill_words(scratch, bottom_start, bottom * pw * c, 0)
    })?;
    kernel.for_split(window.batch * ih, &mut |k, item| {
        let n = k.builder.ins().udiv_imm_s(item, ih as i64);
        let y = k.builder.ins().urem_imm_s(item, ih as i64);
        let image = k.builder.ins().imul_imm_s(n, (ph * pw * c) as i64);
        let source_image = k.builder.ins().imul_imm_s(n, (ih * iw * c) as i64);
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
    })?;
    kernel.barrier();
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

/// The regular convolution on the GEMM frame: one product per output row (one for all pixels
/// when the convolution is pointwise), A's rows the output pixels read at the stride, K the
/// filter rows (a filter row's taps are contiguous in the input when the dilation is 1, so one
/// segment each; otherwise one segment per tap).
fn lower_regular(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    w: &Window,
    channels: usize,
    source: Value,
) -> Result<(), CodegenError> {
    let filter = kernel.inputs[1].pointer;
    let output = kernel.outputs[0].pointer;
    let [oh, ow] = w.output;
    let pointwise = w.kernel == [1, 1] && w.strides == [1, 1] && !w.has_padding();
    let (groups, rows) = if pointwise {
        (1, w.batch * oh * ow)
    } else {
        (w.batch * oh, ow)
    };
    let gemm = regular_gemm(w, channels, kernel.inputs[1].layout, epilogue, groups, rows);
    gemm.emit(kernel, output, &mut |k, group| {
        // Output row `group` = (n, y).
        let n = k.builder.ins().udiv_imm_s(group, oh as i64);
        let y = k.builder.ins().urem_imm_s(group, oh as i64);
        let c = k.builder.ins().imul_imm_s(group, (ow * channels) as i64);
        Ok(regular_row_bases(k, w, source, filter, n, y, c))
    })
}

/// The product of a regular convolution reading its (padded) input as `w` describes it: A's
/// rows the output pixels read at the stride, K the filter rows (a filter row's taps are
/// contiguous in the input when the dilation is 1, so one segment each; otherwise one segment
/// per tap); `groups` of `rows` output pixels.
pub(crate) fn regular_gemm<'e>(
    w: &Window,
    channels: usize,
    b_layout: gemm::BLayout,
    epilogue: &'e Epilogue,
    groups: usize,
    rows: usize,
) -> Gemm<'e> {
    let pw = w.padded()[1];
    let c = w.channels;
    let [kh, kw] = w.kernel;
    let segments = if w.dilations[1] == 1 {
        (0..kh)
            .map(|ky| Segment {
                a_offset: ky * w.dilations[0] * pw * c * 4,
                b_row: ky * kw * c,
                depth: kw * c,
            })
            .collect()
    } else {
        (0..kh * kw)
            .map(|tap| Segment {
                a_offset: ((tap / kw) * w.dilations[0] * pw + (tap % kw) * w.dilations[1]) * c * 4,
                b_row: tap * c,
                depth: c,
            })
            .collect()
    };
    Gemm {
        groups,
        rows,
        columns: channels,
        depth: kh * kw * c,
        lda: w.strides[1] * c * 4,
        segments,
        b_layout,
        b_per_group: false,
        epilogue,
    }
}

/// The operand starts of output row `y` of image `n` of a regular convolution reading `source`
/// (its padded input, or the input when there is no padding), the row's C at element `c`: it
/// reads input rows from n·ph + y·stride on.
pub(crate) fn regular_row_bases(
    k: &mut Kernel,
    w: &Window,
    source: Value,
    filter: Value,
    n: Value,
    y: Value,
    c: Value,
) -> GroupBases {
    let [ph, pw] = w.padded();
    let input_row = k.builder.ins().imul_imm_s(n, ph as i64);
    let y_scaled = k.builder.ins().imul_imm_s(y, w.strides[0] as i64);
    let input_row = k.builder.ins().iadd(input_row, y_scaled);
    let first = k
        .builder
        .ins()
        .imul_imm_s(input_row, (pw * w.channels) as i64);
    GroupBases {
        a: k.address(source, first, 4),
        b: filter,
        c,
    }
}

/// The input pixel index (row-major over images, rows and columns) where tap (0, 0) of output
/// row `y` of image `n`'s column 0 lies: input row n·ih + y·stride - top, column -left. In the
/// padding it is outside the input (negative, or in another row), and never read there: the
/// caller reads only taps inside.
pub(crate) fn window_row_origin(k: &mut Kernel, w: &Window, n: Value, y: Value) -> Value {
    let [top, _, left, _] = w.pads;
    let input_row = k.builder.ins().imul_imm_s(n, w.input[0] as i64);
    let y_scaled = k.builder.ins().imul_imm_s(y, w.strides[0] as i64);
    let input_row = k.builder.ins().iadd(input_row, y_scaled);
    let input_row = k.builder.ins().iadd_imm_s(input_row, -(top as i64));
    let pixel = k.builder.ins().imul_imm_s(input_row, w.input[1] as i64);
    k.builder.ins().iadd_imm_s(pixel, -(left as i64))
}

/// Spans of output rows with their own filter rows (see [`Window::tap_spans`]) beyond which the
/// depthwise convolution reads a padded copy instead: each span is its own code, and more than
/// a few arise only from large pads or dilations.
const MAX_ROW_SPANS: usize = 8;

/// Whether [`lower_depthwise_microkernels`] reads this depthwise convolution's input in place
/// (no padded copy in scratch).
pub(crate) fn depthwise_in_place(w: &Window) -> bool {
    w.tap_spans(0).len() <= MAX_ROW_SPANS && w.kernel.iter().all(|&k| k <= u16::MAX as usize)
}

/// Depthwise convolution (multiplier 1) on machine-code kernels specialised to the layer,
/// reading `input` as `w` describes it (the input itself with its padding implicit, or its
/// padded copy with no padding left): the threads share the output rows.
fn lower_depthwise_microkernels(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    w: &Window,
    input: Value,
) -> Result<(), CodegenError> {
    let rows = DepthwiseRows::new(kernel, epilogue, w);
    kernel.for_split(w.batch * w.output[0], &mut |k, row| {
        let n = k.builder.ins().udiv_imm_s(row, w.output[0] as i64);
        let y = k.builder.ins().urem_imm_s(row, w.output[0] as i64);
        rows.emit(k, input, row, y, &mut |k, _| window_row_origin(k, w, n, y))
    })
}

/// The output rows of a depthwise convolution (multiplier 1) on machine-code kernels, one row
/// at a time; within it, per vector of channels, tiles of up to 12 (AVX2) or 28 (AVX-512)
/// pixels, every tap unrolled with its input offset as an immediate. Pixels whose windows
/// reach into the padding read only their taps inside the input, so a border row or a tile
/// holding border pixels is a kernel of its own; interior tiles share one. The epilogue runs in
/// the kernels' registers when they know its steps, else in place after each tile.
pub(crate) struct DepthwiseRows<'e> {
    window: Window,
    epilogue: &'e Epilogue,
    filter: Value,
    output: Value,
    finish: gemm::Finish,
    channel_runs: Vec<(usize, usize, usize)>,
    /// Spans of output rows reading the same filter rows: `(rows, filter rows)`.
    row_spans: Vec<(Range<usize>, Range<usize>)>,
    /// A row's tiles as `(first column, count, pixels, column taps)`: consecutive tiles of one
    /// width reading the same taps run as one loop of `count`.
    tiles: Vec<(usize, usize, usize, [[u16; 2]; MAX_DEPTHWISE_PIXELS])>,
}

impl<'e> DepthwiseRows<'e> {
    /// The rows of `kernel`'s depthwise convolution of geometry `w` (filter input 1, epilogue
    /// operands inputs 2, 3, ..., output 0).
    pub(crate) fn new(kernel: &Kernel, epilogue: &'e Epilogue, w: &Window) -> DepthwiseRows<'e> {
        let isa = kernel.features.isa;
        // The kernels apply the epilogue in registers when they know its steps (three operands
        // at most); otherwise the Cranelift epilogue finishes each tile.
        let mut finish = gemm::Finish::new(kernel, epilogue, isa);
        finish.machine = finish.machine.filter(|m| m.operand_count() <= 3);
        // Each column's filter columns inside the input.
        let column_taps: Vec<[u16; 2]> = w
            .tap_spans(1)
            .into_iter()
            .flat_map(|(positions, taps)| {
                positions.map(move |_| [taps.start as u16, taps.end as u16])
            })
            .collect();
        let mut tiles: Vec<(usize, usize, usize, [[u16; 2]; MAX_DEPTHWISE_PIXELS])> = Vec::new();
        let ow = w.output[1];
        for (start, count, pixels) in gemm::balanced_runs(ow, isa.max_depthwise_pixels()) {
            for x in (start..start + count * pixels).step_by(pixels) {
                let mut taps = [[0; 2]; MAX_DEPTHWISE_PIXELS];
                taps[..pixels].copy_from_slice(&column_taps[x..x + pixels]);
                match tiles.last_mut() {
                    Some((_, count, width, last)) if *width == pixels && *last == taps => {
                        *count += 1
                    }
                    _ => tiles.push((x, 1, pixels, taps)),
                }
            }
        }
        DepthwiseRows {
            window: w.clone(),
            epilogue,
            filter: kernel.inputs[1].pointer,
            output: kernel.outputs[0].pointer,
            finish,
            channel_runs: gemm::tile_runs(w.channels, isa.lanes()),
            row_spans: w.tap_spans(0),
            tiles,
        }
    }

    /// Output row `row` (image-major: `n·oh + y`) at row `y` of its image. `origin(k, filter
    /// rows)` gives the pixel index in `input` where tap (0, 0) of the row's column 0 would
    /// lie; only the filter rows given are read from there, each a dilated input row further.
    pub(crate) fn emit(
        &self,
        k: &mut Kernel,
        input: Value,
        row: Value,
        y: Value,
        origin: &mut dyn FnMut(&mut Kernel, &Range<usize>) -> Value,
    ) -> Result<(), CodegenError> {
        let ends: Vec<usize> = self.row_spans.iter().map(|(rows, _)| rows.end).collect();
        k.switch_spans(y, &ends, &mut |k, span| {
            let taps = &self.row_spans[span].1;
            let input_row_base = origin(k, taps);
            self.emit_row(k, input, input_row_base, row, taps)
        })
    }

    fn emit_row(
        &self,
        k: &mut Kernel,
        input: Value,
        input_row_base: Value,
        row: Value,
        row_taps: &Range<usize>,
    ) -> Result<(), CodegenError> {
        let w = &self.window;
        let (c, iw, ow) = (w.channels, w.input[1], w.output[1]);
        let (filter, output, finish) = (self.filter, self.output, &self.finish);
        let isa = k.features.isa;
        let output_row = k.builder.ins().imul_imm_s(row, ow as i64);
        for &(channel_start, channel_count, lanes) in &self.channel_runs {
            k.for_steps(channel_start, channel_count, lanes, &mut |k, c0| {
                for &(first, count, pixels, column_taps) in &self.tiles {
                    let shape = Microkernel::Depthwise(microkernel::DepthwiseShape {
                        isa,
                        epilogue: finish.machine.unwrap_or_default(),
                        pixels,
                        lanes,
                        window: w.kernel,
                        row_taps: [row_taps.start as u16, row_taps.end as u16],
                        column_taps,
                        input_pixel_stride: w.strides[1] * c * 4,
                        input_row_stride: w.dilations[0] * iw * c * 4,
                        input_column_stride: w.dilations[1] * c * 4,
                        tap_stride: c * 4,
                        output_pixel_stride: c * 4,
                    });
                    let function = k.microkernel(shape)?;
                    k.for_steps(first, count, pixels, &mut |k, x| {
                        let x_scaled = k.builder.ins().imul_imm_s(x, w.strides[1] as i64);
                        let pixel = k.builder.ins().iadd(input_row_base, x_scaled);
                        let a_index = k.builder.ins().imul_imm_s(pixel, c as i64);
                        let a_index = k.builder.ins().iadd(a_index, c0);
                        let input_pointer = k.address(input, a_index, 4);
                        let filter_pointer = k.address(filter, c0, 4);
                        let out_pixel = k.builder.ins().iadd(output_row, x);
                        let first = k.builder.ins().imul_imm_s(out_pixel, c as i64);
                        let first = k.builder.ins().iadd(first, c0);
                        let output_pointer = k.address(output, first, 4);
                        let mut arguments = vec![input_pointer, filter_pointer, output_pointer];
                        if let Some(machine) = finish.machine {
                            arguments.extend(finish.operand_arguments(k, machine, c0, first));
                            k.builder.ins().call(function, &arguments);
                            return Ok(());
                        }
                        k.builder.ins().call(function, &arguments);
                        epilogue::emit_in_place(
                            k,
                            self.epilogue,
                            output,
                            first,
                            c0,
                            pixels,
                            lanes,
                            c,
                            2,
                        )
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
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
    kernel.for_split(w.batch * oh * ow, &mut |k, pixel| {
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

pub(crate) fn tf_pair(
    attributes: &NodeAttributes,
    name: &str,
    format: &str,
) -> Result<[usize; 2], String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A padded depthwise convolution reads its input in place on the machine-code kernel sets,
    /// so it asks for scratch only when a portable set is compiled too (which reads a padded
    /// copy), or when its rows have too many spans of border taps.
    #[test]
    fn depthwise_scratch_is_the_padded_copy_only_where_a_kernel_set_makes_one() {
        let conv = |kernel: usize| {
            let op = Conv2d {
                strides: [1, 1],
                dilations: [1, 1],
                padding: Padding::Same,
                depthwise: true,
                epilogue: Default::default(),
            };
            let input = TensorType::new(DType::F32, vec![1, 9, 9, 8]);
            let filter = TensorType::new(DType::F32, vec![kernel, kernel, 8, 1]);
            move |isas: &[Isa]| op.scratch_bytes(&[&input, &filter], &[], isas)
        };
        let padded = 4 * (9 + 2) * (9 + 2) * 8;
        assert_eq!(conv(3)(&[Isa::Avx2, Isa::Avx512]), 0);
        assert_eq!(conv(3)(&[Isa::Portable]), padded);
        // Nine taps on nine rows: every row its own span.
        assert_eq!(conv(9)(&[Isa::Avx512]), 4 * (9 + 8) * (9 + 8) * 8);
    }
}
