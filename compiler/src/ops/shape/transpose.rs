//! Transpose by a constant permutation.

use std::any::Any;
use std::sync::Arc;

use super::*;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{Tensor, TensorType, ValueId};
use crate::ops::importer::{ImportError, Importer};
use crate::ops::registry::Family;
use crate::ops::{normalize_axis, strides_of, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

// ---- Transpose ----

/// Permutes axes; input 1 is the permutation.
#[derive(Clone, Debug, PartialEq)]
pub struct Transpose;
simple_parse!(Transpose, Transpose);

impl Transpose {
    fn permutation(&self, rank: usize, perm: Option<&Tensor>) -> OpResult<Vec<usize>> {
        let perm = perm
            .ok_or_else(|| {
                OpError::Unsupported("the permutation must be a compile-time constant".into())
            })?
            .to_i64_vec();
        let perm: Vec<usize> = perm
            .iter()
            .map(|&p| normalize_axis(p, rank))
            .collect::<OpResult<_>>()?;
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        if sorted != (0..rank).collect::<Vec<_>>() {
            return Err(invalid!("{perm:?} is not a permutation of rank {rank}"));
        }
        Ok(perm)
    }
}

impl Operator for Transpose {
    fn name(&self) -> &'static str {
        "transpose"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let input = inputs.ty(0)?;
        let perm = self.permutation(input.rank(), inputs.constants.get(1).copied().flatten())?;
        Ok(vec![TensorType::new(
            input.dtype,
            perm.iter().map(|&p| input.shape[p]).collect(),
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let perm = self.permutation(input.shape.len(), inputs.get(1).copied())?;
        let shape: Vec<usize> = perm.iter().map(|&p| input.shape[p]).collect();
        let in_strides = strides_of(&input.shape);
        let out_strides = strides_of(&shape);
        let count = input.element_count();
        let indices: Vec<usize> = (0..count)
            .map(|flat| {
                (0..shape.len())
                    .map(|a| (flat / out_strides[a] % shape[a]) * in_strides[perm[a]])
                    .sum()
            })
            .collect();
        Ok(vec![Tensor {
            shape,
            data: gather(&input.data, &indices),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input_ty = kernel.inputs[0].ty.clone();
        let constant = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let perm = self
            .permutation(input_ty.rank(), constant.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        let in_strides = strides_of(&input_ty.shape);
        let levels: Vec<(usize, i64, i64)> = perm
            .iter()
            .map(|&p| (input_ty.shape[p], in_strides[p] as i64, 0))
            .collect();
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let zero = kernel.iconst(0);
        copy_nest(
            kernel,
            &levels,
            zero,
            zero,
            input,
            output,
            input_ty.dtype.size_of(),
        )
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn import_transpose(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    Ok(vec![importer.add(node, Transpose, inputs[..2].to_vec())])
}

pub const FAMILY: Family = Family {
    ir: &[("transpose", Transpose::parse)],
    tensorflow: &[("Transpose", import_transpose)],
};
