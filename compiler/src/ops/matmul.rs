//! Matrix products `[..., M, K] x [..., K, N]` (optionally transposed operands, equal batch
//! dimensions), with a fused epilogue.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::conv::import_fused;
use super::elementwise::broadcast_shapes;
use super::epilogue::{Epilogue, EpilogueStep};
use super::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use crate::codegen::gemm::{BLayout, Gemm, GroupBases, Segment};
use crate::codegen::kernel::Kernel;
use crate::codegen::microkernel::Isa;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;
use tfjsc_runtime::panels::Panels;

#[derive(Clone, Debug, PartialEq)]
pub struct MatMul {
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub epilogue: Epilogue,
}

/// Sizes of one product: batch count, M, K, N.
struct Dims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    /// The output's batch dimensions, and each operand's step (in matrices) along them: 0 where
    /// the operand broadcasts (BatchMatMulV2's NumPy rule, a missing or size-1 dimension).
    batch_shape: Vec<usize>,
    a_steps: Vec<usize>,
    b_steps: Vec<usize>,
}

impl Dims {
    /// The matrix index of each operand for output batch `batch` (reference evaluation).
    fn operand_batches(&self, batch: usize) -> (usize, usize) {
        let (mut a, mut b, mut rest) = (0, 0, batch);
        for axis in (0..self.batch_shape.len()).rev() {
            let index = rest % self.batch_shape[axis];
            rest /= self.batch_shape[axis];
            a += index * self.a_steps[axis];
            b += index * self.b_steps[axis];
        }
        (a, b)
    }

    /// The same, as code: element offsets of A's and B's matrices for output batch `batch`.
    fn emit_operand_offsets(&self, k: &mut Kernel, batch: Value) -> (Value, Value) {
        let contiguous = |steps: &[usize]| {
            steps
                .iter()
                .enumerate()
                .all(|(axis, &step)| step == self.batch_shape[axis + 1..].iter().product::<usize>())
        };
        let mut offsets = Vec::new();
        for (steps, size) in [
            (&self.a_steps, self.m * self.k),
            (&self.b_steps, self.k * self.n),
        ] {
            if contiguous(steps) {
                offsets.push(k.builder.ins().imul_imm_s(batch, size as i64));
                continue;
            }
            let mut offset = k.iconst(0);
            let mut rest = batch;
            for axis in (0..self.batch_shape.len()).rev() {
                let dim = self.batch_shape[axis] as i64;
                let index = k.builder.ins().urem_imm_s(rest, dim);
                rest = k.builder.ins().udiv_imm_s(rest, dim);
                let step = k
                    .builder
                    .ins()
                    .imul_imm_s(index, (steps[axis] * size) as i64);
                offset = k.builder.ins().iadd(offset, step);
            }
            offsets.push(offset);
        }
        (offsets[0], offsets[1])
    }
}

/// Per-axis steps (in matrices) of an operand with batch dims `own` against the output's
/// `batch_shape`: 0 along broadcast axes.
fn batch_steps(own: &[usize], batch_shape: &[usize]) -> Vec<usize> {
    let offset = batch_shape.len() - own.len();
    let mut steps = vec![0; batch_shape.len()];
    let mut step = 1;
    for axis in (0..own.len()).rev() {
        if own[axis] != 1 {
            steps[axis + offset] = step;
        }
        step *= own[axis];
    }
    steps
}

impl MatMul {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(MatMul {
            transpose_a: attributes.boolean("transpose_a")?,
            transpose_b: attributes.boolean("transpose_b")?,
            epilogue: Epilogue::parse(attributes)?,
        }))
    }

    fn dims(&self, a: &TensorType, b: &TensorType) -> OpResult<(Dims, Vec<usize>)> {
        if a.rank() < 2 || b.rank() < 2 {
            return Err(invalid!(
                "matrix product of {a} and {b}: operands need rank ≥ 2"
            ));
        }
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = if self.transpose_a {
            (a.shape[ra - 1], a.shape[ra - 2])
        } else {
            (a.shape[ra - 2], a.shape[ra - 1])
        };
        let (k2, n) = if self.transpose_b {
            (b.shape[rb - 1], b.shape[rb - 2])
        } else {
            (b.shape[rb - 2], b.shape[rb - 1])
        };
        if k != k2 {
            return Err(invalid!(
                "matrix product of {a} and {b}: inner dimensions {k} and {k2} differ"
            ));
        }
        let (a_batch, b_batch) = (&a.shape[..ra - 2], &b.shape[..rb - 2]);
        let batch_shape = broadcast_shapes(a_batch, b_batch).map_err(|_| {
            invalid!("matrix product of {a} and {b}: batch dimensions do not broadcast")
        })?;
        let mut shape = batch_shape.clone();
        shape.extend([m, n]);
        Ok((
            Dims {
                batch: batch_shape.iter().product(),
                m,
                k,
                n,
                a_steps: batch_steps(a_batch, &batch_shape),
                b_steps: batch_steps(b_batch, &batch_shape),
                batch_shape,
            },
            shape,
        ))
    }

    /// Element strides (row, column) of A as [M, K] and of B as [K, N].
    fn strides(&self, d: &Dims) -> ((usize, usize), (usize, usize)) {
        let a = if self.transpose_a { (1, d.m) } else { (d.k, 1) };
        let b = if self.transpose_b { (1, d.k) } else { (d.n, 1) };
        (a, b)
    }

    /// Copies each transposed operand row-major into scratch (A first, then B), so the frame
    /// reads both row-major; packed B was transposed when it was packed. Returns A and B.
    /// The reference products: each output element `step`s over K from `zero`, in K order.
    fn products<T: Copy>(
        &self,
        d: &Dims,
        a: &[T],
        b: &[T],
        zero: T,
        step: impl Fn(T, T, T) -> T,
    ) -> Vec<T> {
        let ((am, ak), (bk, bn)) = self.strides(d);
        let mut out = vec![zero; d.batch * d.m * d.n];
        for batch in 0..d.batch {
            let (a_matrix, b_matrix) = d.operand_batches(batch);
            let (a0, b0) = (a_matrix * d.m * d.k, b_matrix * d.k * d.n);
            for i in 0..d.m {
                for j in 0..d.n {
                    out[(batch * d.m + i) * d.n + j] = (0..d.k).fold(zero, |sum, p| {
                        step(sum, a[a0 + i * am + p * ak], b[b0 + p * bk + j * bn])
                    });
                }
            }
        }
        out
    }

    /// The int32 product: plain loops on thread 0 (such products are small index arithmetic),
    /// each sum accumulated in the output element with wrapping arithmetic.
    fn lower_integer(&self, k: &mut Kernel, d: &Dims) -> Result<(), CodegenError> {
        let (a, b, c) = (
            k.inputs[0].pointer,
            k.inputs[1].pointer,
            k.outputs[0].pointer,
        );
        let ((am, ak), (bk, bn)) = self.strides(d);
        let zero = k.int_constant(types::I32, 0);
        k.for_count(d.batch, &mut |k, batch| {
            let (a0, b0) = d.emit_operand_offsets(k, batch);
            let c0 = k.builder.ins().imul_imm_s(batch, (d.m * d.n) as i64);
            k.for_count(d.m, &mut |k, i| {
                let a_row = k.builder.ins().imul_imm_s(i, am as i64);
                let a_row = k.builder.ins().iadd(a0, a_row);
                let c_row = k.builder.ins().imul_imm_s(i, d.n as i64);
                let c_row = k.builder.ins().iadd(c0, c_row);
                k.for_count(d.n, &mut |k, j| {
                    let b_column = k.builder.ins().imul_imm_s(j, bn as i64);
                    let b_column = k.builder.ins().iadd(b0, b_column);
                    let out = k.builder.ins().iadd(c_row, j);
                    k.store(zero, c, out, 4);
                    k.for_count(d.k, &mut |k, p| {
                        let a_step = k.builder.ins().imul_imm_s(p, ak as i64);
                        let a_index = k.builder.ins().iadd(a_row, a_step);
                        let b_step = k.builder.ins().imul_imm_s(p, bk as i64);
                        let b_index = k.builder.ins().iadd(b_column, b_step);
                        let x = k.load(types::I32, a, a_index, 4);
                        let y = k.load(types::I32, b, b_index, 4);
                        let product = k.builder.ins().imul(x, y);
                        let sum = k.load(types::I32, c, out, 4);
                        let sum = k.builder.ins().iadd(sum, product);
                        k.store(sum, c, out, 4);
                        Ok(())
                    })
                })
            })
        })
    }

    fn untransposed_operands(
        &self,
        k: &mut Kernel,
        d: &Dims,
    ) -> Result<(Value, Value), CodegenError> {
        let (mut a, mut b) = (k.inputs[0].pointer, k.inputs[1].pointer);
        let mut scratch_offset = 0;
        let operands = [
            (self.transpose_a, 0, d.m, d.k),
            (
                self.transpose_b && k.inputs[1].layout == BLayout::RowMajor,
                1,
                d.k,
                d.n,
            ),
        ];
        for (transposed, input, rows, columns) in operands {
            if !transposed || rows * columns == 0 {
                continue;
            }
            let source = k.inputs[input].pointer;
            let matrices = k.inputs[input].ty.element_count() / (rows * columns);
            let offset = k.iconst(scratch_offset as i64);
            let target = k.address(k.scratch, offset, 4);
            // target[m][i][j] = source[m][j][i], by one thread (the others wait below).
            k.on_thread_zero(&mut |k| {
                k.for_count(matrices * rows, &mut |k, row| {
                    let matrix = k.builder.ins().udiv_imm_s(row, rows as i64);
                    let i = k.builder.ins().urem_imm_s(row, rows as i64);
                    let base = k.builder.ins().imul_imm_s(matrix, (rows * columns) as i64);
                    let from = k.builder.ins().iadd(base, i);
                    let to = k.builder.ins().imul_imm_s(row, columns as i64);
                    k.for_nest(
                        &[(columns, rows as i64, 1)],
                        from,
                        to,
                        &mut |k, from, to| {
                            let value = k.load(types::F32, source, from, 4);
                            k.store(value, target, to, 4);
                            Ok(())
                        },
                    )
                })
            })?;
            k.barrier();
            scratch_offset += k.inputs[input].ty.element_count();
            if input == 0 {
                a = target;
            } else {
                b = target;
            }
        }
        Ok((a, b))
    }
}

impl Operator for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn attributes(&self) -> Attributes {
        let attributes = Attributes::default()
            .with("transpose_a", Attribute::Bool(self.transpose_a))
            .with("transpose_b", Attribute::Bool(self.transpose_b));
        self.epilogue.add_to(attributes)
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2 + self.epilogue.operand_count())?;
        let (a, b) = (inputs.ty(0)?, inputs.ty(1)?);
        // int32 products (index arithmetic, as in spatial transformers) take no epilogue.
        let float = a.dtype == DType::F32 && b.dtype == DType::F32;
        let integer = a.dtype == DType::I32 && b.dtype == DType::I32 && self.epilogue.is_empty();
        if !(float || integer) {
            return Err(OpError::Unsupported(format!(
                "matrix product of {a} and {b} (f32, or int32 without a fused epilogue)"
            )));
        }
        let (_, shape) = self.dims(a, b)?;
        let output = TensorType::new(a.dtype, shape);
        self.epilogue.check_operands(&output, &inputs.types[2..])?;
        Ok(vec![output])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (d, shape) = self.dims(&inputs[0].tensor_type(), &inputs[1].tensor_type())?;
        match (&inputs[0].data, &inputs[1].data) {
            // Wrapping, as TensorFlow's int32 arithmetic.
            (TensorData::I32(a), TensorData::I32(b)) => {
                let out =
                    self.products(&d, a, b, 0, |sum, x, y| sum.wrapping_add(x.wrapping_mul(y)));
                Ok(vec![Tensor::from_i32(shape, out)])
            }
            // Summed from -0.0, as `Iterator::sum` does.
            (TensorData::F32(a), TensorData::F32(b)) => {
                let out = self.products(&d, a, b, -0.0, |sum, x, y| sum + x * y);
                Ok(vec![self
                    .epilogue
                    .evaluate(Tensor::from_f32(shape, out), &inputs[2..])?])
            }
            _ => Err(invalid!("matrix product needs f32 or int32 operands")),
        }
    }

    /// Every batch is a row group of the GEMM frame.
    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let (d, _) = self
            .dims(&kernel.inputs[0].ty, &kernel.inputs[1].ty)
            .map_err(|e| kernel.error(e.to_string()))?;
        if kernel.inputs[0].ty.dtype == DType::I32 {
            return self.lower_integer(kernel, &d);
        }
        let (a, b) = self.untransposed_operands(kernel, &d)?;
        let output = kernel.outputs[0].pointer;
        let gemm = Gemm {
            groups: d.batch,
            rows: d.m,
            columns: d.n,
            depth: d.k,
            lda: d.k * 4,
            segments: vec![Segment {
                a_offset: 0,
                b_row: 0,
                depth: d.k,
            }],
            b_layout: kernel.inputs[1].layout,
            b_per_group: false,
            epilogue: &self.epilogue,
        };
        gemm.emit(kernel, output, &mut |k, batch| {
            let (a_offset, b_offset) = d.emit_operand_offsets(k, batch);
            Ok(GroupBases {
                a: k.address(a, a_offset, 4),
                b: k.address(b, b_offset, 4),
                c: k.builder.ins().imul_imm_s(batch, (d.m * d.n) as i64),
            })
        })
    }

    /// A matrix B of rank 2 (the same for every batch) is packed, transposed or not.
    /// A's columns (its last axis, unless A is transposed) meet B's rows.
    fn channel_scale_operand(&self, inputs: &[&TensorType]) -> Option<(usize, usize)> {
        let (a, b) = (inputs.first()?, inputs.get(1)?);
        let plain = a.rank() == 2 && b.rank() == 2 && !self.transpose_a;
        (plain && self.epilogue.steps.is_empty()).then_some((1, usize::from(self.transpose_b)))
    }

    fn panel_operands(&self, inputs: &[&TensorType]) -> Vec<(usize, Panels)> {
        let Some(b) = inputs.get(1).filter(|b| b.rank() == 2) else {
            return Vec::new();
        };
        let (rows, columns) = if self.transpose_b {
            (b.shape[1], b.shape[0])
        } else {
            (b.shape[0], b.shape[1])
        };
        vec![(
            1,
            Panels {
                rows,
                columns,
                transposed: self.transpose_b,
                winograd: None,
            },
        )]
    }

    fn scratch_bytes(
        &self,
        inputs: &[&TensorType],
        _outputs: &[TensorType],
        _isas: &[Isa],
    ) -> usize {
        let transposed = [self.transpose_a, self.transpose_b];
        if inputs.first().is_some_and(|a| a.dtype == DType::I32) {
            return 0; // the integer loops read the operands where they are
        }
        inputs
            .iter()
            .zip(transposed)
            .filter(|(_, transposed)| *transposed)
            .map(|(ty, _)| ty.element_count() * 4)
            .sum()
    }

    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        match self.dims(inputs[0], inputs[1]) {
            Ok((d, _)) => {
                2 * (d.batch * d.m * d.n * d.k) as u64
                    + outputs[0].element_count() as u64 * self.epilogue.steps.len() as u64
            }
            Err(_) => 0,
        }
    }

    fn with_epilogue_step(&self, step: &EpilogueStep) -> Option<Arc<dyn Operator>> {
        Some(Arc::new(MatMul {
            epilogue: self.epilogue.with(step),
            ..self.clone()
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// MatMul, _FusedMatMul, BatchMatMul(V2).
pub fn import_matmul(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    let batched = node.op.starts_with("BatchMatMul");
    let (ta, tb) = if batched {
        ("adj_x", "adj_y")
    } else {
        ("transpose_a", "transpose_b")
    };
    let op = MatMul {
        transpose_a: attributes.boolean_or(ta, false).map_err(fail)?,
        transpose_b: attributes.boolean_or(tb, false).map_err(fail)?,
        epilogue: Epilogue::default(),
    };
    let fused = attributes.strings("fused_ops").map_err(fail)?;
    import_fused(
        importer,
        node,
        Arc::new(op),
        inputs[..2].to_vec(),
        &fused,
        &inputs[2..],
    )
}

pub const FAMILY: Family = Family {
    ir: &[("matmul", MatMul::parse)],
    tensorflow: &[
        ("MatMul", import_matmul),
        ("_FusedMatMul", import_matmul),
        ("BatchMatMul", import_matmul),
        ("BatchMatMulV2", import_matmul),
    ],
};
