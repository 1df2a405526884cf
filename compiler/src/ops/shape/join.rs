//! Concat and Pack: tensors joined along an axis.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::InstBuilder;

use super::*;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use crate::ops::{normalize_axis, Attribute, Attributes, InputFacts, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

// ---- Pack and Concat ----

/// Joins tensors along `axis`; `pack` stacks them along a new axis instead.
#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    pub axis: i64,
    pub pack: bool,
}

/// Alias for the text form's `pack`.
pub struct Pack;
impl Pack {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Concat {
            axis: attributes.int("axis")?,
            pack: true,
        }))
    }
}

impl Concat {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Concat {
            axis: attributes.int("axis")?,
            pack: false,
        }))
    }

    /// Output shape, normalised axis, and each input's chunk size (elements per outer index).
    fn layout(&self, inputs: &[&TensorType]) -> OpResult<(Vec<usize>, usize, Vec<usize>)> {
        let first = inputs.first().ok_or_else(|| invalid!("nothing to join"))?;
        let rank = first.rank() + self.pack as usize;
        let axis = normalize_axis(self.axis, rank)?;
        let mut shape = first.shape.clone();
        if self.pack {
            shape.insert(axis, 0);
        } else {
            shape[axis] = 0;
        }
        let mut chunks = Vec::new();
        for ty in inputs {
            let mut expanded = ty.shape.clone();
            if self.pack {
                expanded.insert(axis.min(expanded.len()), 1);
            }
            if expanded.len() != rank
                || ty.dtype != first.dtype
                || (0..rank).any(|a| a != axis && expanded[a] != shape[a])
            {
                return Err(invalid!("cannot join {ty} with {first} along axis {axis}"));
            }
            shape[axis] += expanded[axis];
            chunks.push(expanded[axis..].iter().product());
        }
        Ok((shape, axis, chunks))
    }
}

impl Operator for Concat {
    fn name(&self) -> &'static str {
        if self.pack {
            "pack"
        } else {
            "concat"
        }
    }

    fn attributes(&self) -> Attributes {
        Attributes::default().with("axis", Attribute::Int(self.axis))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let (shape, _, _) = self.layout(&inputs.types)?;
        Ok(vec![TensorType::new(inputs.ty(0)?.dtype, shape)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let types: Vec<TensorType> = inputs.iter().map(|t| t.tensor_type()).collect();
        let (shape, axis, chunks) = self.layout(&types.iter().collect::<Vec<_>>())?;
        let outer: usize = shape[..axis].iter().product();
        let mut parts: Vec<TensorData> = Vec::new();
        for o in 0..outer {
            for (input, &chunk) in inputs.iter().zip(&chunks) {
                let indices: Vec<usize> = (o * chunk..(o + 1) * chunk).collect();
                parts.push(gather(&input.data, &indices));
            }
        }
        let refs: Vec<&TensorData> = parts.iter().collect();
        Ok(vec![Tensor {
            shape,
            data: concat_data(&refs, types[0].dtype),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let types: Vec<&TensorType> = kernel.inputs.iter().map(|i| &i.ty).collect();
        let (shape, axis, chunks) = self
            .layout(&types)
            .map_err(|e| kernel.error(e.to_string()))?;
        let element = kernel.outputs[0].ty.dtype.size_of();
        let outer: usize = shape[..axis].iter().product();
        let row: usize = chunks.iter().sum();
        let output = kernel.outputs[0].pointer;
        let pointers: Vec<_> = kernel.inputs.iter().map(|i| i.pointer).collect();
        kernel.for_split(outer, &mut |k, o| {
            let mut offset = 0;
            for (&pointer, &chunk) in pointers.iter().zip(&chunks) {
                let source = k.builder.ins().imul_imm_s(o, chunk as i64);
                let destination = k.builder.ins().imul_imm_s(o, row as i64);
                let destination = k.builder.ins().iadd_imm_s(destination, offset as i64);
                k.copy_elements(pointer, source, output, destination, chunk, element)?;
                offset += chunk;
            }
            Ok(())
        })
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn import_pack(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let axis = NodeAttributes::of(node)
        .int_or("axis", 0)
        .map_err(node_error(node))?;
    Ok(vec![importer.add(
        node,
        Concat { axis, pack: true },
        inputs.to_vec(),
    )])
}

pub fn import_concat(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let (&axis_value, values) = inputs
        .split_last()
        .ok_or_else(|| importer.error(node, "no inputs"))?;
    let axis = importer
        .constant_value(axis_value)
        .and_then(|tensor| tensor.to_i64_vec().first().copied())
        .ok_or_else(|| importer.error(node, "the concat axis must be a constant"))?;
    Ok(vec![importer.add(
        node,
        Concat { axis, pack: false },
        values.to_vec(),
    )])
}

pub const FAMILY: Family = Family {
    ir: &[("pack", Pack::parse), ("concat", Concat::parse)],
    tensorflow: &[("Pack", import_pack), ("ConcatV2", import_concat)],
};
