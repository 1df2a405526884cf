//! A regular convolution whose only reader is a depthwise convolution (and, optionally, the
//! pointwise convolution that alone reads the depthwise one's result), computed as one kernel
//! row by row: MobileNet's expand → depthwise → project blocks, and the stem before the first
//! depthwise.
//!
//! Run one after the other, the stages write each intermediate tensor (4.8 MB after MobileNetV2's
//! block 1 expansion) to memory and read it back. Here each thread owns a contiguous part of the
//! depthwise output rows, a private ring of the first stage's rows and a private buffer of one
//! depthwise row, in scratch: before each depthwise output row it computes the first-stage rows
//! that row reads and no earlier row did, so every intermediate row is read from L2 right after
//! it was written, and no intermediate tensor exists whole. A part's first rows also compute the
//! first-stage rows its neighbour computes (1 or 2 rows at each boundary): parts never share a
//! buffer, and every value is computed by the same code whichever thread computes it, so
//! results are bit-identical for any thread count, and to the stages run apart.
//!
//! ```text
//! part of thread t:  depthwise output rows y0..y1 (of oh, in min(T, MAX_PARTS) parts)
//!   for y in y0..y1:
//!     for each first-stage row r that row y reads and that is not computed yet:
//!       stage 0, row r (a GEMM over its pixels) -> ring slot r mod N
//!       slot < span - 1: copy it to slot N + (r mod N), so a row's span is contiguous
//!     stage 1 (depthwise), row y, reading its span from the ring -> the output row, or
//!     the row buffer when stage 2 follows:
//!     stage 2 (pointwise), row y: a GEMM from the row buffer -> the output row
//! ```
//!
//! A chain may also give the mean of its result over rows and columns (a squeeze-and-excite
//! block's squeeze, which reads the depthwise result beside the projection): each result row's
//! channel means are taken as the row is written, while it is in L1, into a scratch table of
//! rows × channels; after a barrier the threads share the channels of the mean over that
//! table's rows. Every channel's sum runs in the same order whatever the thread count.
//!
//! Where the depthwise convolution does not run on the machine-code kernels (the portable
//! target), the stages run as whole-tensor kernels with the intermediates in scratch, and the
//! mean is taken from the whole result in the same two steps.

use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};

use super::conv::{self, Conv2d, DepthwiseRows, Window};
use super::epilogue::{operand_layout, OperandLayout};
use super::reduce::{Reduce, ReduceKind};
use super::registry::Family;
use super::{Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::gemm::BLayout;
use crate::codegen::kernel::{Kernel, Operand};
use crate::codegen::microkernel::Isa;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType};
use tfjsc_runtime::panels::Panels;

/// Parts the depthwise output rows are cut into at most (one per thread; more threads than
/// this leave the rest idle in this kernel). Each part has its own ring and row buffer.
const MAX_PARTS: usize = 8;

/// About how many bytes one part's ring holds: small enough to stay in L2 beside the streams,
/// large enough that few rows need a second copy (`span - 1` of every `N`).
const RING_BYTES: usize = 384 * 1024;

/// Most rows a ring holds.
const MAX_RING_ROWS: usize = 32;

/// Intermediate tensors smaller than this stay in cache between two kernels anyway.
const MIN_INTERMEDIATE_BYTES: usize = 512 * 1024;

/// The stages: a regular convolution, a depthwise one (multiplier 1) reading its result, and
/// optionally a pointwise one reading the depthwise result. Inputs: stage 0's input, filter and
/// epilogue operands, then each later stage's filter and epilogue operands.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvChain {
    pub stages: Vec<Conv2d>,
    /// A second output: the result's mean over rows and columns.
    pub mean: Option<ChannelMean>,
}

/// The shape of a chain's mean output: `[1, C]`, or `[1, 1, 1, C]` with `keep_dims`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelMean {
    pub keep_dims: bool,
}

/// Every stage's window and result, resolved.
struct Geometry {
    windows: Vec<Window>,
    results: Vec<TensorType>,
    /// First-stage rows one depthwise output row spans (the dilated filter height).
    span: usize,
}

impl Geometry {
    /// Bytes of one row of stage `stage`'s result.
    fn row_bytes(&self, stage: usize) -> usize {
        let shape = &self.results[stage].shape;
        shape[2] * shape[3] * 4
    }

    /// Slots of a part's ring (each a first-stage row), not counting the `span - 1` copies
    /// after them.
    fn ring_rows(&self) -> usize {
        (RING_BYTES / self.row_bytes(0).max(1)).clamp(self.span, MAX_RING_ROWS.max(self.span))
    }

    fn ring_bytes(&self) -> usize {
        ((self.ring_rows() + self.span - 1) * self.row_bytes(0)).next_multiple_of(64)
    }

    /// One part's scratch: its ring, then (with a pointwise stage) its depthwise row.
    fn part_bytes(&self) -> usize {
        let row = if self.results.len() == 3 {
            self.row_bytes(1).next_multiple_of(64)
        } else {
            0
        };
        self.ring_bytes() + row
    }

    /// The chain's result: the last stage's.
    fn result(&self) -> &TensorType {
        &self.results[self.results.len() - 1]
    }

    /// Bytes of the table of row means (the result's rows × channels) a chain with a mean keeps
    /// at the start of its scratch.
    fn row_means_bytes(&self) -> usize {
        let shape = &self.result().shape;
        (shape[1] * shape[3] * 4).next_multiple_of(64)
    }

    /// The whole-tensor lowering's scratch: each intermediate's offset, then where the stages'
    /// own scratch starts.
    fn intermediate_offsets(&self) -> (Vec<usize>, usize) {
        let mut end = 0;
        let offsets = self.results[..self.results.len() - 1]
            .iter()
            .map(|result| {
                let offset = end;
                end += (result.element_count() * 4).next_multiple_of(64);
                offset
            })
            .collect();
        (offsets, end)
    }

    /// Scratch before the parts: stage 0's padded input.
    fn padded_bytes(&self) -> usize {
        if self.windows[0].has_padding() {
            self.windows[0].padded_bytes().next_multiple_of(64)
        } else {
            0
        }
    }
}

impl ConvChain {
    /// The chain of `producer` into `consumer`, when the pair qualifies and is worth it (see
    /// [`ConvChain::qualifies`]); `types` are the chain's input types.
    pub fn new(producer: &Conv2d, consumer: &Conv2d, types: &[&TensorType]) -> Option<ConvChain> {
        let chain = ConvChain {
            stages: vec![producer.clone(), consumer.clone()],
            mean: None,
        };
        chain.qualifies(types).then_some(chain)
    }

    /// This two-stage chain followed by `pointwise`, read only by it, when that qualifies;
    /// `types` are the longer chain's input types.
    pub fn with_pointwise(&self, pointwise: &Conv2d, types: &[&TensorType]) -> Option<ConvChain> {
        if self.stages.len() != 2 || self.mean.is_some() {
            return None;
        }
        let mut stages = self.stages.clone();
        stages.push(pointwise.clone());
        let chain = ConvChain { stages, mean: None };
        chain.qualifies(types).then_some(chain)
    }

    /// This chain also giving its result's mean over rows and columns, shaped as `mean` says.
    pub fn with_mean(&self, mean: ChannelMean) -> Option<ConvChain> {
        self.mean.is_none().then(|| ConvChain {
            stages: self.stages.clone(),
            mean: Some(mean),
        })
    }

    /// Batch 1; a regular first stage not run by Winograd; a depthwise second stage of
    /// multiplier 1 reading its input in place on the machine-code kernels; a third stage, if
    /// any, pointwise (1×1, stride 1, no padding). A stage writing rows into a buffer (all but
    /// the last) takes no epilogue operand of the tensor's full shape. And worth it: each
    /// intermediate tensor too large to stay in cache between two kernels.
    fn qualifies(&self, types: &[&TensorType]) -> bool {
        let Ok(g) = self.geometry(types) else {
            return false;
        };
        let ranges = self.operand_ranges();
        let last = self.stages.len() - 1;
        let rows_only = (0..last).all(|stage| {
            types[self.filter_index(stage) + 1..ranges[stage].end]
                .iter()
                .all(|operand| {
                    operand_layout(&g.results[stage], operand)
                        .is_some_and(|layout| layout != OperandLayout::Full)
                })
        });
        let worth = g.results[..last]
            .iter()
            .all(|result| result.element_count() * 4 >= MIN_INTERMEDIATE_BYTES);
        let first = &self.stages[0];
        let pointwise = self.stages.get(2).is_none_or(|stage| {
            let w = &g.windows[2];
            !stage.depthwise && w.kernel == [1, 1] && w.strides == [1, 1] && !w.has_padding()
        });
        !first.depthwise
            && g.windows[0].batch == 1
            && first
                .winograd(&g.windows[0], g.results[0].shape[3])
                .is_none()
            && self.by_rows(&g, Isa::Avx2)
            && pointwise
            && rows_only
            && worth
    }

    fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let mut stages = Vec::new();
        loop {
            let prefix = format!("stage{}.", stages.len());
            let own: std::collections::BTreeMap<_, _> = attributes
                .0
                .iter()
                .filter_map(|(name, value)| {
                    let name = name.strip_prefix(&prefix)?;
                    Some((name.to_string(), value.clone()))
                })
                .collect();
            if own.is_empty() {
                break;
            }
            stages.push(Conv2d::parse_fields(&Attributes(own))?);
        }
        let mean = match attributes.0.get("mean_keep_dims") {
            None => None,
            Some(Attribute::Bool(keep_dims)) => Some(ChannelMean {
                keep_dims: *keep_dims,
            }),
            Some(other) => return Err(invalid!("mean_keep_dims must be a bool, got {other:?}")),
        };
        if !(2..=3).contains(&stages.len()) {
            return Err(invalid!(
                "a convolution chain has 2 or 3 stages, got {}",
                stages.len()
            ));
        }
        Ok(Arc::new(ConvChain { stages, mean }))
    }

    /// Each stage's own inputs in the chain's list: stage 0's input, filter and epilogue
    /// operands; a later stage's filter and epilogue operands.
    fn operand_ranges(&self) -> Vec<Range<usize>> {
        let mut start = 0;
        self.stages
            .iter()
            .enumerate()
            .map(|(stage, conv)| {
                let count = usize::from(stage == 0) + 1 + conv.epilogue.operand_count();
                start += count;
                start - count..start
            })
            .collect()
    }

    /// Where stage `stage`'s filter is in the chain's inputs (its epilogue operands follow it).
    fn filter_index(&self, stage: usize) -> usize {
        self.operand_ranges()[stage].start + usize::from(stage == 0)
    }

    /// Each stage's inputs: its own, after the previous stage's result (`results[stage - 1]`).
    fn stage_inputs<T: Clone>(&self, inputs: &[T], results: &[T]) -> Vec<Vec<T>> {
        self.operand_ranges()
            .into_iter()
            .enumerate()
            .map(|(stage, range)| {
                let previous = stage.checked_sub(1).map(|s| results[s].clone());
                previous.into_iter().chain(inputs[range].to_vec()).collect()
            })
            .collect()
    }

    fn geometry(&self, types: &[&TensorType]) -> OpResult<Geometry> {
        let count = self.operand_ranges().last().map_or(0, |range| range.end);
        if types.len() != count {
            return Err(invalid!("expected {count} inputs, got {}", types.len()));
        }
        let mut windows = Vec::new();
        let mut results: Vec<TensorType> = Vec::new();
        for (stage, conv) in self.stages.iter().enumerate() {
            let input = results.last().unwrap_or(types[0]);
            let (window, channels) = conv.geometry(input, types[self.filter_index(stage)])?;
            results.push(TensorType::new(
                DType::F32,
                vec![window.batch, window.output[0], window.output[1], channels],
            ));
            windows.push(window);
        }
        let depthwise = &windows[1];
        let span = (depthwise.kernel[0] - 1) * depthwise.dilations[0] + 1;
        Ok(Geometry {
            windows,
            results,
            span,
        })
    }

    /// Whether `isa`'s lowering runs row by row (else as whole-tensor kernels).
    fn by_rows(&self, g: &Geometry, isa: Isa) -> bool {
        self.stages[1].depthwise
            && self.stages[1].depthwise_on_microkernels(&g.windows[1], g.results[1].shape[3], isa)
            && conv::depthwise_in_place(&g.windows[1])
            && g.windows[0].batch == 1
    }

    /// Row by row, each thread its part (see the module's documentation). `stage_inputs` are
    /// the stages' operands, each stage's input 0 a placeholder; with `row_means`, each result
    /// row's channel means go to that row of the table there.
    fn lower_by_rows(
        &self,
        kernel: &mut Kernel,
        g: &Geometry,
        mut stage_inputs: Vec<Vec<Operand>>,
        intermediates: &[Operand],
        row_means: Option<Value>,
    ) -> Result<(), CodegenError> {
        let output = std::mem::take(&mut kernel.outputs);
        let last = self.stages.len() - 1;
        // Stage 0 reads the input, or its padded copy at the start of scratch.
        kernel.inputs = stage_inputs[0].clone();
        kernel.outputs = vec![intermediates[0].clone()];
        let source = conv::pad_into_scratch(kernel, &g.windows[0])?;
        let first_gemm = conv::regular_gemm(
            &g.windows[0],
            g.results[0].shape[3],
            stage_inputs[0][1].layout,
            &self.stages[0].epilogue,
            1,
            g.results[0].shape[2],
        );
        let pointwise_gemm = self.stages.get(2).map(|stage| {
            conv::regular_gemm(
                &g.windows[2],
                g.results[2].shape[3],
                stage_inputs[2][1].layout,
                &stage.epilogue,
                1,
                g.results[2].shape[2],
            )
        });

        // This thread's part: rows y0..y1 of oh, in min(threads, MAX_PARTS) parts.
        kernel.splits = true;
        let oh = g.results[1].shape[1] as i64;
        let parts = kernel.iconst(MAX_PARTS as i64);
        let parts = kernel.builder.ins().umin(kernel.threads, parts);
        let mine = kernel
            .builder
            .ins()
            .icmp(IntCC::UnsignedLessThan, kernel.thread, parts);
        let run = kernel.builder.create_block();
        let done = kernel.builder.create_block();
        kernel.builder.ins().brif(mine, run, &[], done, &[]);
        kernel.builder.switch_to_block(run);
        kernel.builder.seal_block(run);
        let bound = |k: &mut Kernel, part: Value| {
            let scaled = k.builder.ins().imul_imm_s(part, oh);
            k.builder.ins().udiv(scaled, parts)
        };
        let y0 = bound(kernel, kernel.thread);
        let next = kernel.builder.ins().iadd_imm_s(kernel.thread, 1);
        let y1 = bound(kernel, next);
        let part = kernel
            .builder
            .ins()
            .imul_imm_s(kernel.thread, g.part_bytes() as i64);
        let part = kernel
            .builder
            .ins()
            .iadd_imm_s(part, g.padded_bytes() as i64);
        let ring = kernel.builder.ins().iadd(kernel.scratch, part);
        let row_buffer = kernel.builder.ins().iadd_imm_s(ring, g.ring_bytes() as i64);

        // The depthwise rows go to the output, or to the row buffer when a pointwise stage
        // reads them (their row index is then 0).
        let depthwise_outputs = if last == 2 {
            let mut buffer = intermediates[1].clone();
            buffer.pointer = row_buffer;
            vec![buffer]
        } else {
            output.clone()
        };
        kernel.inputs = stage_inputs[1].clone();
        kernel.outputs = depthwise_outputs.clone();
        let depthwise_rows = DepthwiseRows::new(kernel, &self.stages[1].epilogue, &g.windows[1]);
        if let Some(inputs) = stage_inputs.get_mut(2) {
            inputs[0].pointer = row_buffer;
        }

        let w = &g.windows[1];
        let (stride, top) = (w.strides[0] as i64, w.pads[0] as i64);
        let (ih, span) = (w.input[0] as i64, g.span as i64);
        let (slots, row_elements) = (g.ring_rows() as i64, (g.row_bytes(0) / 4) as i64);
        let zero = kernel.iconst(0);
        // The first-stage rows output row y reads end before this one (clipped to the input).
        let rows_end = |k: &mut Kernel, y: Value| {
            let first = k.builder.ins().imul_imm_s(y, stride);
            let end = k.builder.ins().iadd_imm_s(first, span - top);
            let end = k.builder.ins().smax(end, zero);
            let limit = k.iconst(ih);
            k.builder.ins().smin(end, limit)
        };
        let first_stage_row = |k: &mut Kernel, r: Value| -> Result<(), CodegenError> {
            let slot = k.builder.ins().urem_imm_s(r, slots);
            let c = k.builder.ins().imul_imm_s(slot, row_elements);
            k.inputs = stage_inputs[0].clone();
            k.outputs = vec![intermediates[0].clone()];
            let filter = k.inputs[1].pointer;
            first_gemm.emit(k, ring, &mut |k, _| {
                Ok(conv::regular_row_bases(
                    k,
                    &g.windows[0],
                    source,
                    filter,
                    zero,
                    r,
                    c,
                ))
            })?;
            if span > 1 {
                // The first span - 1 slots again after the last, so that any span of rows
                // starting in the ring is contiguous.
                let copy = k.builder.create_block();
                let after = k.builder.create_block();
                let early = k
                    .builder
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedLessThan, slot, span - 1);
                k.builder.ins().brif(early, copy, &[], after, &[]);
                k.builder.switch_to_block(copy);
                k.builder.seal_block(copy);
                let again = k.builder.ins().iadd_imm_s(c, slots * row_elements);
                k.copy_elements(ring, c, ring, again, row_elements as usize, 4)?;
                k.builder.ins().jump(after, &[]);
                k.builder.switch_to_block(after);
                k.builder.seal_block(after);
            }
            Ok(())
        };
        // Where tap (0, 0) of row y's column 0 lies in the ring, for the filter rows `taps`:
        // tap row t0 reads first-stage row y·stride - top + t0·dilation, at its slot; the
        // kernel adds the t0 rows itself.
        let origin = |k: &mut Kernel, y: Value, taps: &Range<usize>| {
            let skipped = taps.start as i64 * w.dilations[0] as i64;
            let read = k.builder.ins().imul_imm_s(y, stride);
            let read = k.builder.ins().iadd_imm_s(read, skipped - top);
            let slot = k.builder.ins().urem_imm_s(read, slots);
            let row = k.builder.ins().iadd_imm_s(slot, -skipped);
            let pixel = k.builder.ins().imul_imm_s(row, w.input[1] as i64);
            k.builder.ins().iadd_imm_s(pixel, -(w.pads[2] as i64))
        };
        kernel.serially(&mut |k| {
            k.for_range(y0, y1, 1, &mut |k, y| {
                // New rows: from where row y's span starts (y0) or the previous row's ended.
                let first = k.builder.ins().imul_imm_s(y, stride);
                let first = k.builder.ins().iadd_imm_s(first, -top);
                let first = k.builder.ins().smax(first, zero);
                let previous = k.builder.ins().iadd_imm_s(y, -1);
                let previous_end = rows_end(k, previous);
                let is_first = k.builder.ins().icmp(IntCC::Equal, y, y0);
                let computed = k.builder.ins().select(is_first, zero, previous_end);
                let start = k.builder.ins().smax(first, computed);
                let end = rows_end(k, y);
                k.for_range(start, end, 1, &mut |k, r| first_stage_row(k, r))?;
                // Each stage's lowering reads its own operands from the kernel (epilogues
                // finished after the machine code read theirs there).
                k.inputs = stage_inputs[1].clone();
                k.outputs = depthwise_outputs.clone();
                let out_row = if last == 2 { zero } else { y };
                depthwise_rows.emit(k, ring, out_row, y, &mut |k, taps| origin(k, y, taps))?;
                if let Some(gemm) = &pointwise_gemm {
                    k.inputs = stage_inputs[2].clone();
                    k.outputs = output.clone();
                    let (filter, row) = (k.inputs[1].pointer, g.row_bytes(2) as i64 / 4);
                    let c = k.builder.ins().imul_imm_s(y, row);
                    let result = k.outputs[0].pointer;
                    gemm.emit(k, result, &mut |k, _| {
                        let w = &g.windows[2];
                        Ok(conv::regular_row_bases(
                            k, w, row_buffer, filter, zero, zero, c,
                        ))
                    })?;
                }
                match row_means {
                    Some(table) => row_mean(k, g, output[0].pointer, table, y),
                    None => Ok(()),
                }
            })
        })?;
        kernel.builder.ins().jump(done, &[]);
        kernel.builder.switch_to_block(done);
        kernel.builder.seal_block(done);
        kernel.outputs = output;
        Ok(())
    }
}

impl Operator for ConvChain {
    fn name(&self) -> &'static str {
        "conv2d_chain"
    }

    fn attributes(&self) -> Attributes {
        let mut attributes = Attributes::default();
        for (index, stage) in self.stages.iter().enumerate() {
            for (name, value) in stage.attributes().0 {
                attributes = attributes.with(&format!("stage{index}.{name}"), value);
            }
        }
        match self.mean {
            Some(mean) => attributes.with("mean_keep_dims", Attribute::Bool(mean.keep_dims)),
            None => attributes,
        }
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let g = self.geometry(&inputs.types)?;
        let results: Vec<&TensorType> = g.results.iter().collect();
        let types = self.stage_inputs(&inputs.types, &results);
        let constants = self.stage_inputs(&inputs.constants, &vec![None; results.len()]);
        for ((stage, (types, constants)), result) in self
            .stages
            .iter()
            .zip(types.into_iter().zip(constants))
            .zip(&g.results)
        {
            let facts = InputFacts { types, constants };
            if stage.infer(&facts)? != std::slice::from_ref(result) {
                return Err(invalid!("a stage's result is not {result}"));
            }
        }
        let result = g.result().clone();
        let mean = self.mean.map(|mean| {
            let channels = result.shape[3];
            let shape = if mean.keep_dims {
                vec![1, 1, 1, channels]
            } else {
                vec![1, channels]
            };
            TensorType::new(DType::F32, shape)
        });
        Ok(std::iter::once(result).chain(mean).collect())
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let mut result: Option<Tensor> = None;
        for (stage, range) in self.stages.iter().zip(self.operand_ranges()) {
            let operands: Vec<&Tensor> =
                result.iter().chain(inputs[range].iter().copied()).collect();
            result = Some(stage.evaluate(&operands)?.remove(0));
        }
        let Some(result) = result else {
            return Err(invalid!("a convolution chain has no stages"));
        };
        let mean = match self.mean {
            Some(mean) => Some(
                Reduce {
                    kind: ReduceKind::Mean,
                    axes: vec![1, 2],
                    keep_dims: mean.keep_dims,
                }
                .evaluate(&[&result])?
                .remove(0),
            ),
            None => None,
        };
        Ok(std::iter::once(result).chain(mean).collect())
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let types: Vec<&TensorType> = kernel.inputs.iter().map(|input| &input.ty).collect();
        let g = self
            .geometry(&types)
            .map_err(|e| kernel.error(e.to_string()))?;
        let (inputs, outputs, scratch) = (
            std::mem::take(&mut kernel.inputs),
            std::mem::take(&mut kernel.outputs),
            kernel.scratch,
        );
        // The stages write output 0; a mean's table of row means comes first in scratch, and
        // the stages' scratch after it.
        kernel.outputs = outputs[..1].to_vec();
        let row_means = self.mean.map(|_| scratch);
        let scratch = match row_means {
            Some(_) => kernel
                .builder
                .ins()
                .iadd_imm_s(scratch, g.row_means_bytes() as i64),
            None => scratch,
        };
        kernel.scratch = scratch;
        // The intermediates, placed at the start of scratch for the whole-tensor lowering (the
        // row-by-row one points stage 2's at its row buffer).
        let (offsets, stages_scratch) = g.intermediate_offsets();
        let intermediates: Vec<Operand> = offsets
            .iter()
            .zip(&g.results)
            .map(|(&offset, result)| {
                let pointer = kernel.builder.ins().iadd_imm_s(scratch, offset as i64);
                view(pointer, result.shape.clone())
            })
            .collect();
        let stage_inputs = self.stage_inputs(&inputs, &intermediates);
        let winograd = stage_inputs[0][1].winograd.is_some();
        let by_rows = self.by_rows(&g, kernel.features.isa) && !winograd;
        let result = kernel.outputs[0].clone();
        let lowered = if by_rows {
            self.lower_by_rows(kernel, &g, stage_inputs, &intermediates, row_means)
        } else {
            // Whole-tensor kernels, each stage's own scratch after the intermediates.
            kernel.scratch = kernel
                .builder
                .ins()
                .iadd_imm_s(scratch, stages_scratch as i64);
            let last = self.stages.len() - 1;
            self.stages
                .iter()
                .zip(stage_inputs)
                .enumerate()
                .try_for_each(|(index, (stage, inputs))| {
                    kernel.inputs = inputs;
                    kernel.outputs = match intermediates.get(index) {
                        Some(intermediate) => vec![intermediate.clone()],
                        None => vec![result.clone()],
                    };
                    stage.lower(kernel)?;
                    if index < last {
                        kernel.barrier();
                    }
                    Ok(())
                })
        };
        let averaged = match (row_means, outputs.get(1)) {
            (Some(table), Some(mean)) if lowered.is_ok() => {
                let shape = &g.result().shape;
                let (rows, channels) = (shape[1], shape[3]);
                kernel.barrier();
                if !by_rows {
                    let whole = view(result.pointer, vec![rows, shape[2], channels]);
                    lower_mean(kernel, 1, whole, view(table, vec![rows, channels]))?;
                    kernel.barrier();
                }
                let table = view(table, vec![rows, channels]);
                lower_mean(kernel, 0, table, view(mean.pointer, vec![channels]))
            }
            _ => Ok(()),
        };
        // The stages' operand lists were swapped in; the node's own go back.
        (kernel.inputs, kernel.outputs, kernel.scratch) =
            (inputs, outputs, row_means.unwrap_or(scratch));
        lowered.and(averaged)
    }

    fn scratch_bytes(&self, inputs: &[&TensorType], outputs: &[TensorType], isas: &[Isa]) -> usize {
        let Ok(g) = self.geometry(inputs) else {
            return 0;
        };
        let last = self.stages.len() - 1;
        let results: Vec<&TensorType> = g.results.iter().collect();
        let stage_inputs = self.stage_inputs(inputs, &results);
        let (_, intermediates) = g.intermediate_offsets();
        let row_means = if self.mean.is_some() {
            g.row_means_bytes()
        } else {
            0
        };
        let outputs = &outputs[..outputs.len().min(1)];
        let stages = isas.iter().map(|&isa| {
            if self.by_rows(&g, isa) {
                return g.padded_bytes() + MAX_PARTS * g.part_bytes();
            }
            let stages = self.stages.iter().zip(&stage_inputs).enumerate();
            let own = stages.map(|(index, (stage, inputs))| {
                let result = match g.results.get(index) {
                    Some(result) if index < last => std::slice::from_ref(result),
                    _ => outputs,
                };
                stage.scratch_bytes(inputs, result, &[isa])
            });
            intermediates + own.max().unwrap_or(0)
        });
        row_means + stages.max().unwrap_or(0)
    }

    fn flops(&self, inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        let Ok(g) = self.geometry(inputs) else {
            return 0;
        };
        let results: Vec<&TensorType> = g.results.iter().collect();
        let stage_inputs = self.stage_inputs(inputs, &results);
        let mean = match self.mean {
            Some(_) => g.result().element_count() as u64,
            None => 0,
        };
        self.stages
            .iter()
            .zip(&stage_inputs)
            .zip(&g.results)
            .map(|((stage, inputs), result)| stage.flops(inputs, std::slice::from_ref(result)))
            .sum::<u64>()
            + mean
    }

    /// The regular stages' filters, as each stage alone would be packed.
    fn panel_operands(&self, inputs: &[&TensorType]) -> Vec<(usize, Panels)> {
        let Ok(g) = self.geometry(inputs) else {
            return Vec::new();
        };
        let mut operands = Vec::new();
        for (stage, conv) in self.stages.iter().enumerate() {
            let filter = self.filter_index(stage);
            let input = stage.checked_sub(1).map_or(inputs[0], |s| &g.results[s]);
            if let Some((_, panels)) = conv.panel_operand(&[input, inputs[filter]]) {
                operands.push((filter, panels));
            }
        }
        operands
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A row-major f32 view of `shape` at `pointer` (scratch, or part of a tensor).
fn view(pointer: Value, shape: Vec<usize>) -> Operand {
    Operand {
        pointer,
        ty: TensorType::new(DType::F32, shape),
        constant: None,
        layout: BLayout::RowMajor,
        winograd: None,
    }
}

/// The reduce op's mean kernel over `axis` of `input`, into `output`: each output channel summed
/// alone, in order along the axis.
fn lower_mean(
    kernel: &mut Kernel,
    axis: usize,
    input: Operand,
    output: Operand,
) -> Result<(), CodegenError> {
    let inputs = std::mem::replace(&mut kernel.inputs, vec![input]);
    let outputs = std::mem::replace(&mut kernel.outputs, vec![output]);
    let mean = Reduce {
        kind: ReduceKind::Mean,
        axes: vec![axis],
        keep_dims: false,
    };
    let lowered = mean.lower(kernel);
    (kernel.inputs, kernel.outputs) = (inputs, outputs);
    lowered
}

/// The channel means of row `y` of the chain's result at `result` into row `y` of the table.
fn row_mean(
    kernel: &mut Kernel,
    g: &Geometry,
    result: Value,
    table: Value,
    y: Value,
) -> Result<(), CodegenError> {
    let shape = &g.result().shape;
    let (width, channels) = (shape[2], shape[3]);
    let row = kernel
        .builder
        .ins()
        .imul_imm_s(y, (width * channels * 4) as i64);
    let row = kernel.builder.ins().iadd(result, row);
    let entry = kernel.builder.ins().imul_imm_s(y, (channels * 4) as i64);
    let entry = kernel.builder.ins().iadd(table, entry);
    let means = view(entry, vec![channels]);
    lower_mean(kernel, 0, view(row, vec![width, channels]), means)
}

pub const FAMILY: Family = Family {
    ir: &[("conv2d_chain", ConvChain::parse)],
    tensorflow: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::Padding;
    use crate::ops::epilogue::Epilogue;

    /// The IR text form's attributes give the chain back.
    #[test]
    fn attributes_parse_back() {
        let epilogue = |text: &str| {
            let attributes =
                Attributes::default().with("epilogue", crate::ops::Attribute::Str(text.into()));
            Epilogue::parse(&attributes).unwrap()
        };
        let conv = |padding, depthwise, epilogue| Conv2d {
            strides: [2, 2],
            dilations: [1, 1],
            padding,
            depthwise,
            epilogue,
        };
        let chain = ConvChain {
            stages: vec![
                conv(
                    Padding::Explicit([1, 2, 0, 1]),
                    false,
                    epilogue("add;relu6"),
                ),
                conv(Padding::Same, true, Epilogue::default()),
                conv(Padding::Valid, false, epilogue("add;add")),
            ],
            mean: Some(ChannelMean { keep_dims: true }),
        };
        let parsed = ConvChain::parse(&chain.attributes()).unwrap();
        let parsed = parsed.as_any().downcast_ref::<ConvChain>().unwrap();
        assert_eq!(parsed, &chain);
    }
}
