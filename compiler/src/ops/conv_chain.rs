//! A regular convolution whose only reader is a depthwise convolution, computed as one kernel
//! row by row: MobileNet's expand → depthwise pairs, and the stem before the first depthwise.
//!
//! Run one after the other, the pair writes the intermediate tensor (4.8 MB at MobileNetV2's
//! block 1) to memory and reads it back. Here each thread owns a contiguous part of the
//! depthwise output rows and a private ring of intermediate rows in scratch: before each
//! depthwise output row it computes the intermediate rows that row reads and no earlier row
//! did, so every intermediate row is read from L2 right after it was written, and the tensor
//! never exists whole. A part's first rows also compute the intermediate rows its neighbour
//! computes (1 or 2 rows at each boundary): parts never share a buffer, and every value is
//! computed by the same code whichever thread computes it, so results are bit-identical for
//! any thread count.
//!
//! ```text
//! part of thread t:  depthwise output rows y0..y1 (of oh, in min(T, MAX_PARTS) parts)
//!   for y in y0..y1:
//!     for each intermediate row r that row y reads and that is not computed yet:
//!       producer row r (a GEMM over its pixels) -> ring slot r mod N
//!       slot < span - 1: copy it to slot N + (r mod N), so a row's span is contiguous
//!     depthwise row y, reading its span from the ring
//! ```
//!
//! Where the depthwise convolution does not run on the machine-code kernels (the portable
//! target), the pair runs as two whole-tensor kernels with the intermediate in scratch.

use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};

use super::conv::{self, Conv2d, DepthwiseRows, Window};
use super::epilogue::{operand_layout, OperandLayout};
use super::registry::Family;
use super::{Attributes, InputFacts, OpResult, Operator};
use crate::codegen::gemm::BLayout;
use crate::codegen::kernel::{Kernel, Operand};
use crate::codegen::microkernel::Isa;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType};
use tfjsc_runtime::panels::Panels;

/// Parts the depthwise output rows are cut into at most (one per thread; more threads than
/// this leave the rest idle in this kernel). Each part has its own ring in scratch.
const MAX_PARTS: usize = 8;

/// About how many bytes one part's ring holds: small enough to stay in L2 beside the streams,
/// large enough that few rows need a second copy (`span - 1` of every `N`).
const RING_BYTES: usize = 384 * 1024;

/// Most rows a ring holds.
const MAX_RING_ROWS: usize = 32;

/// Intermediate tensors smaller than this stay in cache between two kernels anyway.
const MIN_INTERMEDIATE_BYTES: usize = 512 * 1024;

/// The two convolutions: `producer` (regular) feeds `consumer` (depthwise, multiplier 1).
/// Inputs: the producer's input, filter and epilogue operands, then the consumer's filter and
/// epilogue operands.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvChain {
    pub producer: Conv2d,
    pub consumer: Conv2d,
}

/// Both windows, resolved.
struct Geometry {
    producer: Window,
    /// The intermediate tensor.
    middle: TensorType,
    consumer: Window,
    /// Rows of the intermediate one depthwise output row spans (dilated filter height).
    span: usize,
}

impl Geometry {
    fn row_bytes(&self) -> usize {
        self.middle.shape[2] * self.middle.shape[3] * 4
    }

    /// Slots of a part's ring (each an intermediate row), not counting the `span - 1` copies
    /// after them.
    fn ring_rows(&self) -> usize {
        (RING_BYTES / self.row_bytes().max(1)).clamp(self.span, MAX_RING_ROWS.max(self.span))
    }

    fn ring_bytes(&self) -> usize {
        (self.ring_rows() + self.span - 1) * self.row_bytes()
    }

    /// Scratch before the rings: the producer's padded input.
    fn padded_bytes(&self) -> usize {
        if self.producer.has_padding() {
            self.producer.padded_bytes().next_multiple_of(64)
        } else {
            0
        }
    }
}

impl ConvChain {
    /// The chain of `producer` into `consumer`, when the pair qualifies and is worth it: batch
    /// 1, a regular producer not run by Winograd whose epilogue operands are per channel or
    /// scalar (its rows are written into a ring, not the tensor), a depthwise consumer of
    /// multiplier 1 reading its input in place, and an intermediate too large to stay in cache
    /// between two kernels. `types` are the chain's input types.
    pub fn new(producer: &Conv2d, consumer: &Conv2d, types: &[&TensorType]) -> Option<ConvChain> {
        let chain = ConvChain {
            producer: producer.clone(),
            consumer: consumer.clone(),
        };
        let g = chain.geometry(types).ok()?;
        let producer_operands = &types[2..2 + producer.epilogue.operand_count()];
        let rows_only = producer_operands.iter().all(|operand| {
            operand_layout(&g.middle, operand).is_some_and(|l| l != OperandLayout::Full)
        });
        let worth = g.middle.element_count() * 4 >= MIN_INTERMEDIATE_BYTES;
        let machine = consumer.depthwise_on_microkernels(&g.consumer, g.middle.shape[3], Isa::Avx2);
        (!producer.depthwise
            && consumer.depthwise
            && g.producer.batch == 1
            && producer.winograd(&g.producer, g.middle.shape[3]).is_none()
            && rows_only
            && machine
            && conv::depthwise_in_place(&g.consumer)
            && worth)
            .then_some(chain)
    }

    fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let stage = |prefix: &str| {
            let own = attributes
                .0
                .iter()
                .filter_map(|(name, value)| {
                    let name = name.strip_prefix(prefix)?;
                    Some((name.to_string(), value.clone()))
                })
                .collect();
            Conv2d::parse_fields(&Attributes(own))
        };
        Ok(Arc::new(ConvChain {
            producer: stage("producer.")?,
            consumer: stage("consumer.")?,
        }))
    }

    /// How many of the inputs are the producer's (input, filter, epilogue operands).
    fn producer_inputs(&self) -> usize {
        2 + self.producer.epilogue.operand_count()
    }

    fn geometry(&self, types: &[&TensorType]) -> OpResult<Geometry> {
        let count = self.producer_inputs() + 1 + self.consumer.epilogue.operand_count();
        if types.len() != count {
            return Err(invalid!("expected {count} inputs, got {}", types.len()));
        }
        let (producer, channels) = self.producer.geometry(types[0], types[1])?;
        let middle = TensorType::new(
            DType::F32,
            vec![
                producer.batch,
                producer.output[0],
                producer.output[1],
                channels,
            ],
        );
        let consumer_filter = types[self.producer_inputs()];
        let (consumer, _) = self.consumer.geometry(&middle, consumer_filter)?;
        let span = (consumer.kernel[0] - 1) * consumer.dilations[0] + 1;
        Ok(Geometry {
            producer,
            middle,
            consumer,
            span,
        })
    }

    /// Whether `isa`'s lowering runs row by row (else as two whole-tensor kernels).
    fn by_rows(&self, g: &Geometry, isa: Isa) -> bool {
        self.consumer
            .depthwise_on_microkernels(&g.consumer, g.middle.shape[3], isa)
            && conv::depthwise_in_place(&g.consumer)
            && g.producer.batch == 1
    }

    /// The producer's and the consumer's inputs, the intermediate as the consumer's input 0.
    fn stage_inputs<T: Clone>(&self, inputs: &[T], middle: T) -> (Vec<T>, Vec<T>) {
        let split = self.producer_inputs();
        let consumer = std::iter::once(middle)
            .chain(inputs[split..].iter().cloned())
            .collect();
        (inputs[..split].to_vec(), consumer)
    }

    /// Row by row, each thread its part (see the module's documentation).
    fn lower_by_rows(
        &self,
        kernel: &mut Kernel,
        g: &Geometry,
        producer_inputs: Vec<Operand>,
        consumer_inputs: Vec<Operand>,
        middle: Operand,
    ) -> Result<(), CodegenError> {
        let output = std::mem::replace(&mut kernel.outputs, vec![middle]);
        kernel.inputs = producer_inputs;
        let source = conv::pad_into_scratch(kernel, &g.producer)?;
        let producer_filter = kernel.inputs[1].pointer;
        let gemm = conv::regular_gemm(
            &g.producer,
            g.middle.shape[3],
            kernel.inputs[1].layout,
            &self.producer.epilogue,
            1,
            g.producer.output[1],
        );
        let producer_operands = std::mem::replace(&mut kernel.inputs, consumer_inputs);
        kernel.outputs = output;
        let rows = DepthwiseRows::new(kernel, &self.consumer.epilogue, &g.consumer);
        let consumer_operands = std::mem::take(&mut kernel.inputs);
        let producer_output = vec![Operand {
            pointer: kernel.scratch,
            ty: g.middle.clone(),
            constant: None,
            layout: BLayout::RowMajor,
            winograd: None,
        }];

        // This thread's part: rows y0..y1 of oh, in min(threads, MAX_PARTS) parts.
        kernel.splits = true;
        let oh = g.consumer.output[0] as i64;
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
        let ring_offset = g.padded_bytes() as i64;
        let ring = kernel
            .builder
            .ins()
            .imul_imm_s(kernel.thread, g.ring_bytes() as i64);
        let ring = kernel.builder.ins().iadd_imm_s(ring, ring_offset);
        let ring = kernel.builder.ins().iadd(kernel.scratch, ring);

        let (stride, top) = (g.consumer.strides[0] as i64, g.consumer.pads[0] as i64);
        let (ih, span) = (g.consumer.input[0] as i64, g.span as i64);
        let (slots, row_elements) = (g.ring_rows() as i64, (g.row_bytes() / 4) as i64);
        let zero = kernel.iconst(0);
        // Intermediate rows output row y reads end before this one (clipped to the input).
        let rows_end = |k: &mut Kernel, y: Value| {
            let first = k.builder.ins().imul_imm_s(y, stride);
            let end = k.builder.ins().iadd_imm_s(first, span - top);
            let end = k.builder.ins().smax(end, zero);
            let limit = k.iconst(ih);
            k.builder.ins().smin(end, limit)
        };
        let producer_row = |k: &mut Kernel, r: Value| -> Result<(), CodegenError> {
            let slot = k.builder.ins().urem_imm_s(r, slots);
            let c = k.builder.ins().imul_imm_s(slot, row_elements);
            k.inputs = producer_operands.clone();
            k.outputs = producer_output.clone();
            gemm.emit(k, ring, &mut |k, _| {
                Ok(conv::regular_row_bases(
                    k,
                    &g.producer,
                    source,
                    producer_filter,
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
                k.for_range(start, end, 1, &mut |k, r| producer_row(k, r))?;
                k.inputs = consumer_operands.clone();
                let origin = |k: &mut Kernel, taps: &Range<usize>| {
                    // Tap row t0 reads intermediate row y·stride - top + t0·dilation, at its
                    // slot; the kernel adds t0 rows itself.
                    let dilation = g.consumer.dilations[0] as i64;
                    let read = k.builder.ins().imul_imm_s(y, stride);
                    let read = k
                        .builder
                        .ins()
                        .iadd_imm_s(read, taps.start as i64 * dilation - top);
                    let slot = k.builder.ins().urem_imm_s(read, slots);
                    let row = k
                        .builder
                        .ins()
                        .iadd_imm_s(slot, -(taps.start as i64 * dilation));
                    let pixel = k.builder.ins().imul_imm_s(row, g.consumer.input[1] as i64);
                    k.builder
                        .ins()
                        .iadd_imm_s(pixel, -(g.consumer.pads[2] as i64))
                };
                rows.emit(k, ring, y, y, &mut |k, taps| origin(k, taps))
            })
        })?;
        kernel.builder.ins().jump(done, &[]);
        kernel.builder.switch_to_block(done);
        kernel.builder.seal_block(done);
        Ok(())
    }
}

impl Operator for ConvChain {
    fn name(&self) -> &'static str {
        "conv2d_chain"
    }

    fn attributes(&self) -> Attributes {
        let mut attributes = Attributes::default();
        for (prefix, stage) in [("producer.", &self.producer), ("consumer.", &self.consumer)] {
            for (name, value) in stage.attributes().0 {
                attributes = attributes.with(&format!("{prefix}{name}"), value);
            }
        }
        attributes
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let g = self.geometry(&inputs.types)?;
        let (producer, consumer) = self.stage_inputs(&inputs.types, &g.middle);
        let (producer_constants, consumer_constants) = self.stage_inputs(&inputs.constants, None);
        let middle = self.producer.infer(&InputFacts {
            types: producer,
            constants: producer_constants,
        })?;
        if middle != [g.middle.clone()] {
            return Err(invalid!("the producer's result is not {}", g.middle));
        }
        self.consumer.infer(&InputFacts {
            types: consumer,
            constants: consumer_constants,
        })
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let split = self.producer_inputs();
        let middle = self.producer.evaluate(&inputs[..split])?.remove(0);
        let consumer: Vec<&Tensor> = std::iter::once(&middle)
            .chain(inputs[split..].iter().copied())
            .collect();
        self.consumer.evaluate(&consumer)
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let types: Vec<&TensorType> = kernel.inputs.iter().map(|input| &input.ty).collect();
        let g = self
            .geometry(&types)
            .map_err(|e| kernel.error(e.to_string()))?;
        let middle = Operand {
            pointer: kernel.scratch,
            ty: g.middle.clone(),
            constant: None,
            layout: BLayout::RowMajor,
            winograd: None,
        };
        let (inputs, outputs, scratch) = (
            std::mem::take(&mut kernel.inputs),
            kernel.outputs.clone(),
            kernel.scratch,
        );
        let (producer_inputs, consumer_inputs) = self.stage_inputs(&inputs, middle.clone());
        let winograd = producer_inputs[1].winograd.is_some();
        let lowered = if self.by_rows(&g, kernel.features.isa) && !winograd {
            self.lower_by_rows(kernel, &g, producer_inputs, consumer_inputs, middle)
        } else {
            // Two whole-tensor kernels, the intermediate at the start of scratch and each
            // stage's own scratch after it.
            let stage_scratch = (g.middle.element_count() * 4).next_multiple_of(64) as i64;
            kernel.scratch = kernel.builder.ins().iadd_imm_s(scratch, stage_scratch);
            kernel.outputs = vec![middle];
            kernel.inputs = producer_inputs;
            self.producer.lower(kernel).and_then(|()| {
                kernel.barrier();
                kernel.inputs = consumer_inputs;
                kernel.outputs = outputs.clone();
                self.consumer.lower(kernel)
            })
        };
        // The stages' operand lists were swapped in; the node's own go back.
        (kernel.inputs, kernel.outputs, kernel.scratch) = (inputs, outputs, scratch);
        lowered
    }

    fn scratch_bytes(&self, inputs: &[&TensorType], outputs: &[TensorType], isas: &[Isa]) -> usize {
        let Ok(g) = self.geometry(inputs) else {
            return 0;
        };
        let (producer, consumer) = self.stage_inputs(inputs, &g.middle);
        let middle = std::slice::from_ref(&g.middle);
        isas.iter()
            .map(|&isa| {
                if self.by_rows(&g, isa) {
                    g.padded_bytes() + MAX_PARTS * g.ring_bytes()
                } else {
                    (g.middle.element_count() * 4).next_multiple_of(64)
                        + self
                            .producer
                            .scratch_bytes(&producer, middle, &[isa])
                            .max(self.consumer.scratch_bytes(&consumer, outputs, &[isa]))
                }
            })
            .max()
            .unwrap_or(0)
    }

    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        let Ok(g) = self.geometry(inputs) else {
            return 0;
        };
        let (producer, consumer) = self.stage_inputs(inputs, &g.middle);
        self.producer
            .flops(&producer, std::slice::from_ref(&g.middle))
            + self.consumer.flops(&consumer, outputs)
    }

    /// The producer's filter, as the producer alone would be packed.
    fn panel_operand(&self, inputs: &[&TensorType]) -> Option<(usize, Panels)> {
        self.producer.panel_operand(inputs.get(..2)?)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
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
        let chain = ConvChain {
            producer: Conv2d {
                strides: [2, 2],
                dilations: [1, 1],
                padding: Padding::Explicit([1, 2, 0, 1]),
                depthwise: false,
                epilogue: epilogue("add;relu6"),
            },
            consumer: Conv2d {
                strides: [1, 1],
                dilations: [2, 2],
                padding: Padding::Same,
                depthwise: true,
                epilogue: Epilogue::default(),
            },
        };
        let parsed = ConvChain::parse(&chain.attributes()).unwrap();
        let parsed = parsed.as_any().downcast_ref::<ConvChain>().unwrap();
        assert_eq!(parsed, &chain);
    }
}
