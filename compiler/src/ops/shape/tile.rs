//! Tile (constant multiples) and BroadcastTo (constant shape, NumPy broadcasting): the input
//! repeated along axes.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder};

use super::*;
use crate::codegen::kernel::{memory_flags, Kernel};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{Tensor, TensorType, ValueId};
use crate::ops::importer::{ImportError, Importer};
use crate::ops::registry::Family;
use crate::ops::{strides_of, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

/// Repeats input 0: input 1 is the multiples (Tile) or the target shape (BroadcastTo).
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub broadcast: bool,
}

impl Tile {
    pub fn parse(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Tile { broadcast: false }))
    }

    pub fn parse_broadcast(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Tile { broadcast: true }))
    }

    /// The input shape (with leading 1s up to the output rank) and the multiple of each axis.
    fn plan(
        &self,
        shape: &[usize],
        operand: Option<&Tensor>,
    ) -> OpResult<(Vec<usize>, Vec<usize>)> {
        let what = if self.broadcast {
            "the BroadcastTo shape"
        } else {
            "the Tile multiples"
        };
        let values = operand
            .ok_or_else(|| OpError::Unsupported(format!("{what} must be a compile-time constant")))?
            .to_i64_vec();
        if values.iter().any(|&v| v < 0) {
            return Err(invalid!("{what} {values:?} must be non-negative"));
        }
        if !self.broadcast {
            if values.len() != shape.len() {
                return Err(invalid!(
                    "Tile multiples {values:?} must have one entry per axis of {shape:?}"
                ));
            }
            return Ok((shape.to_vec(), values.iter().map(|&v| v as usize).collect()));
        }
        if values.len() < shape.len() {
            return Err(invalid!(
                "cannot broadcast {shape:?} to the lower-rank shape {values:?}"
            ));
        }
        let mut padded = vec![1; values.len() - shape.len()];
        padded.extend_from_slice(shape);
        let multiples = padded
            .iter()
            .zip(&values)
            .map(|(&d, &t)| {
                let t = t as usize;
                if d == t {
                    Ok(1)
                } else if d == 1 {
                    Ok(t)
                } else {
                    Err(invalid!("cannot broadcast {shape:?} to {values:?}"))
                }
            })
            .collect::<OpResult<Vec<usize>>>()?;
        Ok((padded, multiples))
    }
}

impl Operator for Tile {
    fn name(&self) -> &'static str {
        if self.broadcast {
            "broadcast_to"
        } else {
            "tile"
        }
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2)?;
        let input = inputs.ty(0)?;
        let what = if self.broadcast {
            "BroadcastTo shape"
        } else {
            "Tile multiples"
        };
        let (shape, multiples) = self.plan(&input.shape, Some(inputs.constant(1, what)?))?;
        let mut out_shape = Vec::with_capacity(shape.len());
        for (d, m) in shape.iter().zip(&multiples) {
            out_shape.push(
                d.checked_mul(*m)
                    .ok_or_else(|| invalid!("{what} {multiples:?} of {shape:?} overflow"))?,
            );
        }
        if out_shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none()
        {
            return Err(invalid!("{what} {multiples:?} of {shape:?} overflow"));
        }
        Ok(vec![TensorType::new(input.dtype, out_shape)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (shape, multiples) = self.plan(&inputs[0].shape, inputs.get(1).copied())?;
        let out_shape: Vec<usize> = shape.iter().zip(&multiples).map(|(d, m)| d * m).collect();
        let in_strides = strides_of(&shape);
        let out_strides = strides_of(&out_shape);
        let count: usize = out_shape.iter().product();
        let indices: Vec<usize> = (0..count)
            .map(|flat| {
                (0..shape.len())
                    .map(|a| (flat / out_strides[a] % out_shape[a]) % shape[a] * in_strides[a])
                    .sum()
            })
            .collect();
        Ok(vec![Tensor {
            shape: out_shape,
            data: gather(&inputs[0].data, &indices),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let ty = kernel.inputs[0].ty.clone();
        let operand = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let (shape, multiples) = self
            .plan(&ty.shape, operand.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        let out_shape: Vec<usize> = shape.iter().zip(&multiples).map(|(d, m)| d * m).collect();
        if out_shape.contains(&0) {
            return Ok(());
        }
        let element = ty.dtype.size_of();
        let in_strides = strides_of(&shape);
        let out_strides = strides_of(&out_shape);
        // Trailing axes that are not repeated are contiguous in both: one row.
        let tiled = multiples.iter().rposition(|&m| m != 1).map_or(0, |a| a + 1);
        let mut row: usize = shape[tiled..].iter().product();
        let mut levels: Vec<(usize, i64, i64)> = Vec::new();
        for a in 0..tiled {
            let (d, m) = (shape[a], multiples[a]);
            let (is, os) = (in_strides[a] as i64, out_strides[a] as i64);
            levels.push((m, 0, d as i64 * os));
            if a + 1 == tiled {
                row *= d;
            } else {
                levels.push((d, is, os));
            }
        }
        levels.retain(|l| l.0 != 1);
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        // One element repeated along the innermost axis: store it splatted.
        if row == 1 && tiled == shape.len() && levels.last().is_some_and(|l| l.1 == 0) {
            let (repeats, _, _) = levels.pop().expect("checked");
            let source = kernel.iconst(0);
            let destination = kernel.iconst(0);
            return kernel.for_nest(&levels, source, destination, &mut |k, s, d| {
                splat_run(k, input, s, output, d, repeats, element)
            });
        }
        copy_rows(kernel, &levels, 0, 0, row, input, output, element)
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Writes element `source` of `input` to `count` consecutive elements from `destination`.
fn splat_run(
    kernel: &mut Kernel,
    input: cranelift_codegen::ir::Value,
    source: cranelift_codegen::ir::Value,
    output: cranelift_codegen::ir::Value,
    destination: cranelift_codegen::ir::Value,
    count: usize,
    element: usize,
) -> Result<(), CodegenError> {
    let (scalar, vector) = match element {
        1 => (types::I8, types::I8X16),
        4 => (types::I32, types::I32X4),
        8 => (types::I64, types::I64X2),
        _ => return Err(kernel.error(format!("no {element}-byte element type"))),
    };
    let value = kernel.load(scalar, input, source, element);
    let splat = kernel.builder.ins().splat(vector, value);
    let start = kernel.address(output, destination, element);
    let lanes = 16 / element;
    kernel.for_count(count / lanes, &mut |k, chunk| {
        let offset = k.builder.ins().imul_imm_s(chunk, 16);
        let to = k.builder.ins().iadd(start, offset);
        k.builder.ins().store(memory_flags(), splat, to, 0);
        Ok(())
    })?;
    for item in count / lanes * lanes..count {
        kernel
            .builder
            .ins()
            .store(memory_flags(), value, start, (item * element) as i32);
    }
    Ok(())
}

pub fn import_tile(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let broadcast = node.op == "BroadcastTo";
    Ok(vec![importer.add(
        node,
        Tile { broadcast },
        inputs[..2].to_vec(),
    )])
}

pub const FAMILY: Family = Family {
    ir: &[
        ("tile", Tile::parse),
        ("broadcast_to", Tile::parse_broadcast),
    ],
    tensorflow: &[("Tile", import_tile), ("BroadcastTo", import_tile)],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_and_broadcast_to_follow_tensorflow() {
        let x = Tensor::from_i32(vec![2, 1], vec![1, 2]);
        let multiples = Tensor::from_i32(vec![2], vec![2, 3]);
        let y = Tile { broadcast: false }
            .evaluate(&[&x, &multiples])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape, [4, 3]);
        assert_eq!(y.to_i64_vec(), [1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]);
        let target = Tensor::from_i32(vec![3], vec![2, 2, 3]);
        let y = Tile { broadcast: true }
            .evaluate(&[&x, &target])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape, [2, 2, 3]);
        assert_eq!(y.to_i64_vec()[..6], [1, 1, 1, 2, 2, 2]);
        // Not broadcastable, lower rank, negative multiples.
        let bad = Tensor::from_i32(vec![2], vec![3, 3]);
        assert!(Tile { broadcast: true }.evaluate(&[&x, &bad]).is_err());
        let short = Tensor::from_i32(vec![1], vec![2]);
        assert!(Tile { broadcast: true }.evaluate(&[&x, &short]).is_err());
        let negative = Tensor::from_i32(vec![2], vec![1, -1]);
        assert!(Tile { broadcast: false }
            .evaluate(&[&x, &negative])
            .is_err());
    }
}
