//! Matrix products `[..., M, K] x [..., K, N]` (optionally transposed operands, equal batch
//! dimensions), with a fused epilogue.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::conv::import_fused;
use super::elementwise::broadcast_shapes;
use super::epilogue::{self, Epilogue, EpilogueStep};
use super::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use crate::codegen::kernel::{memory_flags, Kernel, LANES};
use crate::codegen::microkernel::{self, Microkernel, TileShape};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

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

    /// Row-major products as GEMM tiles on the machine-code micro-kernels, epilogue in place.
    fn lower_microkernels(&self, kernel: &mut Kernel, d: &Dims) -> Result<(), CodegenError> {
        let (a, b, c) = (
            kernel.inputs[0].pointer,
            kernel.inputs[1].pointer,
            kernel.outputs[0].pointer,
        );
        let row_runs = microkernel::tile_runs(d.m, microkernel::MAX_ROWS);
        let column_runs = microkernel::tile_runs(d.n, microkernel::MAX_COLUMNS);
        kernel.for_count(d.batch, &mut |k, batch| {
            let (a_batch, b_batch) = d.emit_operand_offsets(k, batch);
            let c_batch = k.builder.ins().imul_imm_s(batch, (d.m * d.n) as i64);
            for &(column_start, column_count, columns) in &column_runs {
                k.for_steps(column_start, column_count, columns, &mut |k, j| {
                    let b_index = k.builder.ins().iadd(b_batch, j);
                    let b_pointer = k.address(b, b_index, 4);
                    for &(row_start, row_count, rows) in &row_runs {
                        let function =
                            k.microkernel(Microkernel::Gemm(TileShape { rows, columns }))?;
                        k.for_steps(row_start, row_count, rows, &mut |k, i| {
                            let a_index = k.builder.ins().imul_imm_s(i, d.k as i64);
                            let a_index = k.builder.ins().iadd(a_batch, a_index);
                            let a_pointer = k.address(a, a_index, 4);
                            let first = k.builder.ins().imul_imm_s(i, d.n as i64);
                            let first = k.builder.ins().iadd(c_batch, first);
                            let first = k.builder.ins().iadd(first, j);
                            let c_pointer = k.address(c, first, 4);
                            let lda = k.iconst((d.k * 4) as i64);
                            let ldbc = k.iconst((d.n * 4) as i64);
                            let depth = k.iconst(d.k as i64);
                            let overwrite = k.iconst(0);
                            k.builder.ins().call(
                                function,
                                &[a_pointer, lda, b_pointer, ldbc, c_pointer, depth, overwrite],
                            );
                            epilogue::emit_in_place(
                                k,
                                &self.epilogue,
                                c,
                                first,
                                j,
                                rows,
                                columns,
                                d.n,
                                2,
                            )
                        })?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    /// Element strides (row, column) of A as [M, K] and of B as [K, N].
    fn strides(&self, d: &Dims) -> ((usize, usize), (usize, usize)) {
        let a = if self.transpose_a { (1, d.m) } else { (d.k, 1) };
        let b = if self.transpose_b { (1, d.k) } else { (d.n, 1) };
        (a, b)
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
        if a.dtype != DType::F32 || b.dtype != DType::F32 {
            return Err(OpError::Unsupported(format!(
                "matrix product of {a} and {b} (f32 only)"
            )));
        }
        let (_, shape) = self.dims(a, b)?;
        let output = TensorType::new(DType::F32, shape);
        self.epilogue.check_operands(&output, &inputs.types[2..])?;
        Ok(vec![output])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (d, shape) = self.dims(&inputs[0].tensor_type(), &inputs[1].tensor_type())?;
        let (TensorData::F32(a), TensorData::F32(b)) = (&inputs[0].data, &inputs[1].data) else {
            return Err(invalid!("matrix product needs f32 operands"));
        };
        let ((am, ak), (bk, bn)) = self.strides(&d);
        let mut out = vec![0f32; d.batch * d.m * d.n];
        for batch in 0..d.batch {
            let (a_matrix, b_matrix) = d.operand_batches(batch);
            let (a0, b0, c0) = (
                a_matrix * d.m * d.k,
                b_matrix * d.k * d.n,
                batch * d.m * d.n,
            );
            for i in 0..d.m {
                for j in 0..d.n {
                    out[c0 + i * d.n + j] = (0..d.k)
                        .map(|p| a[a0 + i * am + p * ak] * b[b0 + p * bk + j * bn])
                        .sum();
                }
            }
        }
        Ok(vec![self
            .epilogue
            .evaluate(Tensor::from_f32(shape, out), &inputs[2..])?])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let (d, _) = self
            .dims(&kernel.inputs[0].ty, &kernel.inputs[1].ty)
            .map_err(|e| kernel.error(e.to_string()))?;
        if kernel.features.avx2 && !self.transpose_a && !self.transpose_b {
            return self.lower_microkernels(kernel, &d);
        }
        let ((am, ak), (bk, bn)) = self.strides(&d);
        let (a, b, c) = (
            kernel.inputs[0].pointer,
            kernel.inputs[1].pointer,
            kernel.outputs[0].pointer,
        );
        // Columns in blocks of 16 / 8 / 4 lanes when B's rows are contiguous, then scalars.
        let widths: &[usize] = if bn == 1 {
            &[4 * LANES, 2 * LANES, LANES, 1]
        } else {
            &[1]
        };
        let mut runs = Vec::new();
        let mut start = 0;
        for &width in widths {
            let count = (d.n - start) / width;
            if count > 0 {
                runs.push((start, count, width));
                start += count * width;
            }
        }
        kernel.for_count(d.batch * d.m, &mut |k, row| {
            let batch = k.builder.ins().udiv_imm_s(row, d.m as i64);
            let i = k.builder.ins().urem_imm_s(row, d.m as i64);
            let (a_base, b_base) = d.emit_operand_offsets(k, batch);
            let a_row = k.builder.ins().imul_imm_s(i, am as i64);
            let a_base = k.builder.ins().iadd(a_base, a_row);
            let c_base = k.builder.ins().imul_imm_s(row, d.n as i64);
            for &(start, count, width) in &runs {
                let (vectors, ty) = if width >= LANES {
                    (width / LANES, types::F32X4)
                } else {
                    (1, types::F32)
                };
                k.for_steps(start, count, width, &mut |k, j| {
                    let accumulators: Vec<_> = (0..vectors)
                        .map(|_| {
                            let var = k.builder.declare_var(ty);
                            let zero = k.float_constant(ty, 0.0);
                            k.builder.def_var(var, zero);
                            var
                        })
                        .collect();
                    let column = k.builder.ins().imul_imm_s(j, bn as i64);
                    let b_column = k.builder.ins().iadd(b_base, column);
                    k.for_count(d.k, &mut |k, p| {
                        let a_offset = k.builder.ins().imul_imm_s(p, ak as i64);
                        let a_index = k.builder.ins().iadd(a_base, a_offset);
                        let scalar = k.load(types::F32, a, a_index, 4);
                        let broadcast = if vectors > 0 && ty.is_vector() {
                            k.builder.ins().splat(ty, scalar)
                        } else {
                            scalar
                        };
                        let b_offset = k.builder.ins().imul_imm_s(p, bk as i64);
                        let b_index = k.builder.ins().iadd(b_column, b_offset);
                        let b_address = k.address(b, b_index, 4);
                        for (v, var) in accumulators.iter().enumerate() {
                            let weight: Value = k.builder.ins().load(
                                ty,
                                memory_flags(),
                                b_address,
                                (v * LANES * 4) as i32,
                            );
                            let acc = k.builder.use_var(*var);
                            let acc = k.multiply_add(broadcast, weight, acc);
                            k.builder.def_var(*var, acc);
                        }
                        Ok(())
                    })?;
                    for (v, var) in accumulators.iter().enumerate() {
                        let channel = k.builder.ins().iadd_imm_s(j, (v * LANES) as i64);
                        let index = k.builder.ins().iadd(c_base, channel);
                        let value = k.builder.use_var(*var);
                        let value =
                            epilogue::emit(k, &self.epilogue, value, ty, index, channel, 2)?;
                        k.store(value, c, index, 4);
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
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
