//! ReverseV2: elements in reverse order along constant axes.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, ConstantData, InstBuilder};

use super::*;
use crate::codegen::kernel::{memory_flags, Kernel};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{Tensor, TensorType, ValueId};
use crate::ops::importer::{ImportError, Importer};
use crate::ops::registry::Family;
use crate::ops::{normalize_axis, strides_of, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

/// Reverses input 0 along the axes listed in input 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Reverse;
simple_parse!(Reverse, Reverse);

impl Reverse {
    /// Whether each axis is reversed.
    fn flags(&self, rank: usize, axes: Option<&Tensor>) -> OpResult<Vec<bool>> {
        let axes = axes
            .ok_or_else(|| {
                OpError::Unsupported("the ReverseV2 axes must be a compile-time constant".into())
            })?
            .to_i64_vec();
        let mut flags = vec![false; rank];
        for &axis in &axes {
            let a = normalize_axis(axis, rank)?;
            if rank == 0 || flags[a] {
                return Err(invalid!(
                    "ReverseV2 axes {axes:?}: axis {axis} is repeated or out of range"
                ));
            }
            flags[a] = true;
        }
        Ok(flags)
    }
}

impl Operator for Reverse {
    fn name(&self) -> &'static str {
        "reverse"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2)?;
        let input = inputs.ty(0)?;
        self.flags(input.rank(), Some(inputs.constant(1, "ReverseV2 axes")?))?;
        Ok(vec![input.clone()])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let shape = &input.shape;
        let flags = self.flags(shape.len(), inputs.get(1).copied())?;
        let strides = strides_of(shape);
        let indices: Vec<usize> = (0..input.element_count())
            .map(|flat| {
                (0..shape.len())
                    .map(|a| {
                        let i = flat / strides[a] % shape[a];
                        let i = if flags[a] { shape[a] - 1 - i } else { i };
                        i * strides[a]
                    })
                    .sum()
            })
            .collect();
        Ok(vec![Tensor {
            shape: shape.clone(),
            data: gather(&input.data, &indices),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let ty = kernel.inputs[0].ty.clone();
        let axes = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let flags = self
            .flags(ty.rank(), axes.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        if ty.element_count() == 0 {
            return Ok(());
        }
        let strides: Vec<i64> = strides_of(&ty.shape).iter().map(|&s| s as i64).collect();
        let element = ty.dtype.size_of();
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let rank = ty.rank();
        // Trailing axes that keep their order are copied as rows.
        let kept = flags.iter().rposition(|&f| f).map_or(0, |a| a + 1);
        let mut levels = Vec::new();
        let mut source = 0i64;
        let outer = if kept == rank && rank > 0 {
            rank - 1
        } else {
            kept
        };
        for a in 0..outer {
            let d = ty.shape[a];
            if flags[a] {
                source += (d as i64 - 1) * strides[a];
                levels.push((d, -strides[a], strides[a]));
            } else {
                levels.push((d, strides[a], strides[a]));
            }
        }
        if outer == kept {
            let row: usize = ty.shape[kept..].iter().product();
            return copy_rows(kernel, &levels, source, 0, row, input, output, element);
        }
        // The innermost axis is reversed: whole vectors with their lanes reversed by a shuffle,
        // then the few elements left one by one.
        let d = ty.shape[rank - 1];
        let lanes = 16 / element;
        let mask: Vec<u8> = (0..16)
            .map(|byte| (((lanes - 1 - byte / element) * element) + byte % element) as u8)
            .collect();
        let mask = kernel
            .builder
            .func
            .dfg
            .immediates
            .push(ConstantData::from(mask));
        let start = kernel.iconst(source);
        let zero = kernel.iconst(0);
        kernel.for_nest(&levels, start, zero, &mut |k, source, destination| {
            let from = k.address(input, source, element);
            let to = k.address(output, destination, element);
            k.for_count(d / lanes, &mut |k, chunk| {
                // Output elements chunk * lanes.. come from input elements ending at d - chunk * lanes.
                let out_offset = k.builder.ins().imul_imm_s(chunk, 16);
                let destination = k.builder.ins().iadd(to, out_offset);
                let in_offset = k.builder.ins().imul_imm_s(chunk, -16);
                let source = k.builder.ins().iadd(from, in_offset);
                let vector = k.builder.ins().load(
                    types::I8X16,
                    memory_flags(),
                    source,
                    ((d - lanes) * element) as i32,
                );
                let reversed = k.builder.ins().shuffle(vector, vector, mask);
                k.builder
                    .ins()
                    .store(memory_flags(), reversed, destination, 0);
                Ok(())
            })?;
            let scalar = match element {
                1 => types::I8,
                4 => types::I32,
                _ => types::I64,
            };
            for j in d / lanes * lanes..d {
                let value = k.builder.ins().load(
                    scalar,
                    memory_flags(),
                    from,
                    ((d - 1 - j) * element) as i32,
                );
                k.builder
                    .ins()
                    .store(memory_flags(), value, to, (j * element) as i32);
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

pub fn import_reverse(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    Ok(vec![importer.add(node, Reverse, inputs[..2].to_vec())])
}

pub const FAMILY: Family = Family {
    ir: &[("reverse", Reverse::parse)],
    tensorflow: &[("ReverseV2", import_reverse)],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_follows_tensorflow() {
        let x = Tensor::from_i32(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        let axes = Tensor::from_i32(vec![1], vec![-1]);
        let y = Reverse.evaluate(&[&x, &axes]).unwrap().remove(0);
        assert_eq!(y.to_i64_vec(), [3, 2, 1, 6, 5, 4]);
        let both = Tensor::from_i32(vec![2], vec![0, 1]);
        let y = Reverse.evaluate(&[&x, &both]).unwrap().remove(0);
        assert_eq!(y.to_i64_vec(), [6, 5, 4, 3, 2, 1]);
        let repeated = Tensor::from_i32(vec![2], vec![1, -1]);
        assert!(Reverse.evaluate(&[&x, &repeated]).is_err());
        let out_of_range = Tensor::from_i32(vec![1], vec![2]);
        assert!(Reverse.evaluate(&[&x, &out_of_range]).is_err());
    }
}
