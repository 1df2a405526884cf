//! Fill, Range, ZerosLike and OnesLike: values generated from constants or from static types,
//! folded at compile time; Fill with a value known only at run time has a kernel.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder};

use crate::codegen::kernel::{memory_flags, Kernel};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{ImportError, Importer};
use crate::ops::registry::Family;
use crate::ops::Attribute;
use crate::ops::{Attributes, InputFacts, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

// ---- Fill and Range ----

/// Fill(dims, value).
#[derive(Clone, Debug, PartialEq)]
pub struct Fill;
simple_parse!(Fill, Fill);

impl Operator for Fill {
    fn name(&self) -> &'static str {
        "fill"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let dims = inputs.constant(0, "Fill dims")?.to_i64_vec();
        if dims.iter().any(|&d| d < 0) {
            return Err(invalid!("Fill dims {dims:?} must be non-negative"));
        }
        if inputs.ty(1)?.element_count() != 1 {
            return Err(invalid!(
                "Fill value must be a scalar, got {}",
                inputs.ty(1)?
            ));
        }
        Ok(vec![TensorType::new(
            inputs.ty(1)?.dtype,
            dims.iter().map(|&d| d as usize).collect(),
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims: Vec<usize> = inputs[0]
            .to_i64_vec()
            .iter()
            .map(|&d| d.max(0) as usize)
            .collect();
        // f64 holds every f32 and i32 value exactly.
        let value = match inputs[1].dtype() {
            DType::F32 => inputs[1].to_f32_vec().first().map(|&v| v as f64),
            _ => inputs[1].to_i64_vec().first().map(|&v| v as f64),
        };
        Ok(vec![Tensor::filled(
            inputs[1].dtype(),
            dims,
            value.unwrap_or(0.0),
        )])
    }

    /// The value's bits, copied to every element: 16-byte stores, then the tail.
    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let dtype = kernel.outputs[0].ty.dtype;
        let count = kernel.outputs[0].ty.element_count();
        let (bits, vector) = match dtype {
            DType::F32 | DType::I32 => (types::I32, types::I32X4),
            DType::I64 => (types::I64, types::I64X2),
            DType::Bool => (types::I8, types::I8X16),
        };
        let size = bits.bytes() as usize;
        let lanes = 16 / size;
        let (source, output) = (kernel.inputs[1].pointer, kernel.outputs[0].pointer);
        let value = kernel.builder.ins().load(bits, memory_flags(), source, 0);
        let splat = kernel.builder.ins().splat(vector, value);
        kernel.for_count(count / lanes, &mut |k, chunk| {
            let offset = k.builder.ins().imul_imm_s(chunk, 16);
            let to = k.builder.ins().iadd(output, offset);
            k.builder.ins().store(memory_flags(), splat, to, 0);
            Ok(())
        })?;
        let head = count / lanes * lanes;
        let tail = kernel
            .builder
            .ins()
            .iadd_imm_s(output, (head * size) as i64);
        for item in 0..count - head {
            kernel
                .builder
                .ins()
                .store(memory_flags(), value, tail, (item * size) as i32);
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Range(start, limit, delta).
#[derive(Clone, Debug, PartialEq)]
pub struct Range;
simple_parse!(Range, Range);

impl Range {
    fn values(start: f64, limit: f64, delta: f64) -> OpResult<usize> {
        if delta == 0.0 {
            return Err(invalid!("Range delta is 0"));
        }
        let count = ((limit - start) / delta).ceil();
        if count > 1e8 {
            return Err(invalid!("Range would hold {count} values"));
        }
        Ok(count.max(0.0) as usize)
    }
}

impl Operator for Range {
    fn name(&self) -> &'static str {
        "range"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let get = |i| {
            inputs
                .constant(i, "Range bounds")
                .map(|t| t.to_f32_vec().first().copied().unwrap_or(0.0) as f64)
        };
        let count = Range::values(get(0)?, get(1)?, get(2)?)?;
        Ok(vec![TensorType::new(inputs.ty(0)?.dtype, vec![count])])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let get = |i: usize| inputs[i].to_f32_vec().first().copied().unwrap_or(0.0) as f64;
        let (start, limit, delta) = (get(0), get(1), get(2));
        let count = Range::values(start, limit, delta)?;
        let values: Vec<f32> = (0..count)
            .map(|k| (start + k as f64 * delta) as f32)
            .collect();
        Ok(vec![
            Tensor::from_f32(vec![count], values).cast(inputs[0].dtype())
        ])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("Range should have folded"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn import_fill(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    Ok(vec![importer.add(node, Fill, inputs[..2].to_vec())])
}

pub fn import_range(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    Ok(vec![importer.add(node, Range, inputs[..3].to_vec())])
}

/// ZerosLike / OnesLike: `value` in the input's static shape and dtype; always folds.
#[derive(Clone, Debug, PartialEq)]
pub struct FillLike {
    pub value: f32,
}

impl FillLike {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(FillLike {
            value: a.float("value")?,
        }))
    }

    fn value(&self, ty: &TensorType) -> Tensor {
        Tensor::filled(ty.dtype, ty.shape.clone(), self.value as f64)
    }
}

impl Operator for FillLike {
    fn name(&self) -> &'static str {
        "fill_like"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default().with("value", Attribute::Float(self.value))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        Ok(vec![inputs.ty(0)?.clone()])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        Ok(vec![self.value(&inputs[0].tensor_type())])
    }

    fn fold_from_types(&self, inputs: &InputFacts) -> Option<Vec<Tensor>> {
        Some(vec![self.value(inputs.types.first()?)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("ZerosLike/OnesLike should have folded"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn import_fill_like(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let value = if node.op == "OnesLike" { 1.0 } else { 0.0 };
    Ok(vec![importer.add(
        node,
        FillLike { value },
        vec![inputs[0]],
    )])
}

pub const FAMILY: Family = Family {
    ir: &[
        ("fill", Fill::parse),
        ("range", Range::parse),
        ("fill_like", FillLike::parse),
    ],
    tensorflow: &[
        ("Fill", import_fill),
        ("Range", import_range),
        ("ZerosLike", import_fill_like),
        ("OnesLike", import_fill_like),
    ],
};
