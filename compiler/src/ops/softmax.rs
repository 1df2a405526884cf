//! Softmax over the last axis: max-shifted for stability, like TensorFlow.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder};

use super::{Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::{Kernel, LANES};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use crate::ops::importer::{ImportError, Importer};
use crate::ops::reduce::{ReduceAxes, ReduceKind};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

#[derive(Clone, Debug, PartialEq)]
pub struct Softmax;

impl Softmax {
    pub fn parse(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Softmax))
    }
}

impl Operator for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let ty = inputs.ty(0)?;
        if ty.dtype != DType::F32 || ty.rank() == 0 {
            return Err(invalid!(
                "softmax needs an f32 tensor of rank ≥ 1, got {ty}"
            ));
        }
        Ok(vec![ty.clone()])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let TensorData::F32(x) = &inputs[0].data else {
            return Err(invalid!("softmax needs f32"));
        };
        let row = *inputs[0].shape.last().unwrap_or(&1);
        let mut out = Vec::with_capacity(x.len());
        for chunk in x.chunks(row.max(1)) {
            let max = chunk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = chunk.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            out.extend(exps.iter().map(|e| e / sum));
        }
        Ok(vec![Tensor::from_f32(inputs[0].shape.clone(), out)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let shape = &kernel.inputs[0].ty.shape;
        let row = *shape.last().unwrap_or(&1);
        let rows = kernel.inputs[0].ty.element_count() / row.max(1);
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let vector_end = row / LANES * LANES;
        let runs = [
            (0usize, vector_end / LANES, LANES),
            (vector_end, row - vector_end, 1),
        ];
        kernel.for_count(rows, &mut |k, r| {
            let base = k.builder.ins().imul_imm_s(r, row as i64);
            // Pass 1: maximum.
            let vmax = k.builder.declare_var(types::F32X4);
            let smax = k.builder.declare_var(types::F32);
            let low = k.float_constant(types::F32X4, f32::NEG_INFINITY);
            k.builder.def_var(vmax, low);
            let low = k.float_constant(types::F32, f32::NEG_INFINITY);
            k.builder.def_var(smax, low);
            for (start, count, width) in runs {
                let (var, ty) = if width == LANES {
                    (vmax, types::F32X4)
                } else {
                    (smax, types::F32)
                };
                k.for_steps(start, count, width, &mut |k, j| {
                    let index = k.builder.ins().iadd(base, j);
                    let value = k.load(ty, input, index, 4);
                    let acc = k.builder.use_var(var);
                    let acc = k.builder.ins().fmax(acc, value);
                    k.builder.def_var(var, acc);
                    Ok(())
                })?;
            }
            let vector = k.builder.use_var(vmax);
            let from_vector = k.horizontal_max(vector);
            let scalar = k.builder.use_var(smax);
            let max = k.builder.ins().fmax(from_vector, scalar);
            let max_vector = k.builder.ins().splat(types::F32X4, max);
            // Pass 2: exponentials (stored) and their sum.
            let vsum = k.builder.declare_var(types::F32X4);
            let ssum = k.builder.declare_var(types::F32);
            let zero = k.float_constant(types::F32X4, 0.0);
            k.builder.def_var(vsum, zero);
            let zero = k.float_constant(types::F32, 0.0);
            k.builder.def_var(ssum, zero);
            for (start, count, width) in runs {
                let (var, ty, shift) = if width == LANES {
                    (vsum, types::F32X4, max_vector)
                } else {
                    (ssum, types::F32, max)
                };
                k.for_steps(start, count, width, &mut |k, j| {
                    let index = k.builder.ins().iadd(base, j);
                    let value = k.load(ty, input, index, 4);
                    let shifted = k.builder.ins().fsub(value, shift);
                    let e = k.exp(shifted);
                    k.store(e, output, index, 4);
                    let acc = k.builder.use_var(var);
                    let acc = k.builder.ins().fadd(acc, e);
                    k.builder.def_var(var, acc);
                    Ok(())
                })?;
            }
            let vector = k.builder.use_var(vsum);
            let from_vector = k.horizontal_sum(vector);
            let scalar = k.builder.use_var(ssum);
            let sum = k.builder.ins().fadd(from_vector, scalar);
            let one = k.float_constant(types::F32, 1.0);
            let inverse = k.builder.ins().fdiv(one, sum);
            let inverse_vector = k.builder.ins().splat(types::F32X4, inverse);
            // Pass 3: normalise in place.
            for (start, count, width) in runs {
                let (ty, factor) = if width == LANES {
                    (types::F32X4, inverse_vector)
                } else {
                    (types::F32, inverse)
                };
                k.for_steps(start, count, width, &mut |k, j| {
                    let index = k.builder.ins().iadd(base, j);
                    let value = k.load(ty, output, index, 4);
                    let value = k.builder.ins().fmul(value, factor);
                    k.store(value, output, index, 4);
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    fn flops(&self, _inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        outputs[0].element_count() as u64 * 25
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Softmax (last axis).
pub fn import_softmax(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    Ok(vec![importer.add(node, Softmax, vec![inputs[0]])])
}

/// LogSoftmax (last axis) as `(x − max) − log Σ e^(x − max)`, from reductions and elementwise
/// nodes: the shift by the maximum keeps e^· finite, as TensorFlow's kernel does.
pub fn import_log_softmax(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let name = &node.name;
    let last_axis = importer.constant(&format!("{name}/axis"), Tensor::from_i32(vec![1], vec![-1]));
    let reduce = |kind| ReduceAxes {
        kind,
        keep_dims: true,
    };
    let maximum = importer.add_named(
        &format!("{name}/max"),
        reduce(ReduceKind::Max),
        vec![inputs[0], last_axis],
    );
    let shifted = importer.add_named(
        &format!("{name}/shifted"),
        Binary::new(BinaryKind::Sub),
        vec![inputs[0], maximum],
    );
    let exponentials = importer.add_named(
        &format!("{name}/exp"),
        Unary::new(UnaryKind::Exp),
        vec![shifted],
    );
    let sum = importer.add_named(
        &format!("{name}/sum"),
        reduce(ReduceKind::Sum),
        vec![exponentials, last_axis],
    );
    let log = importer.add_named(
        &format!("{name}/log"),
        Unary::new(UnaryKind::Log),
        vec![sum],
    );
    Ok(vec![importer.add(
        node,
        Binary::new(BinaryKind::Sub),
        vec![shifted, log],
    )])
}

pub const FAMILY: Family = Family {
    ir: &[("softmax", Softmax::parse)],
    tensorflow: &[
        ("Softmax", import_softmax),
        ("LogSoftmax", import_log_softmax),
    ],
};
