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
        let levels = output_levels(&input_ty.shape, &perm);
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let element = input_ty.dtype.size_of();
        match levels.iter().position(|&(_, step)| step == 1) {
            // The input's contiguous axis is not the output's: tiles, read and written a cache
            // line at a time.
            Some(contiguous) if contiguous + 1 < levels.len() => {
                copy_tiles(kernel, &levels, contiguous, input, output, element)
            }
            // Rows the input and the output both hold contiguously (or an empty tensor).
            _ => {
                let (row, outer) = match levels.split_last() {
                    Some((&(row, _), outer)) => (row, outer),
                    None => (1, &[][..]),
                };
                let dense = dense_levels(outer, row);
                copy_rows(kernel, &dense, 0, 0, row, input, output, element)
            }
        }
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The output's axes in order as `(count, input step)` loop levels: axes of one element dropped,
/// and neighbours the input also walks as one merged (a permutation of NCHW to NHWC becomes
/// `[(H·W, 1), (C, H·W)]`).
fn output_levels(shape: &[usize], perm: &[usize]) -> Vec<(usize, i64)> {
    let in_strides = strides_of(shape);
    let mut levels: Vec<(usize, i64)> = Vec::new();
    for &axis in perm.iter().filter(|&&axis| shape[axis] != 1) {
        let (count, step) = (shape[axis], in_strides[axis] as i64);
        match levels.last_mut() {
            Some(last) if last.1 == step * count as i64 => *last = (last.0 * count, step),
            _ => levels.push((count, step)),
        }
    }
    levels
}

/// `(count, input step, output step)` levels over a dense output whose innermost `inner`
/// elements lie inside each level's iteration.
fn dense_levels(levels: &[(usize, i64)], inner: usize) -> Vec<(usize, i64, i64)> {
    let mut size = inner as i64;
    let mut dense: Vec<(usize, i64, i64)> = levels
        .iter()
        .rev()
        .map(|&(count, step)| {
            let level = (count, step, size);
            size *= count as i64;
            level
        })
        .collect();
    dense.reverse();
    dense
}

/// Tile side of a blocked transpose: 8 of its rows read and written cover a 32-byte span of each
/// of 8 cache lines, and the unrolled tile is 64 moves.
const TILE: usize = 8;

/// A transpose whose input is contiguous along output level `contiguous` (not the innermost,
/// `levels.last()`, which the output is contiguous along) in `TILE` × `TILE` tiles: within a tile
/// the reads run along the input's rows and the writes fill `TILE` output lines, so each line
/// is fetched once instead of once per element. Edge tiles are narrower; the other levels loop
/// around the tiles, the outermost shared among the threads.
fn copy_tiles(
    kernel: &mut Kernel,
    levels: &[(usize, i64)],
    contiguous: usize,
    input: cranelift_codegen::ir::Value,
    output: cranelift_codegen::ir::Value,
    element: usize,
) -> Result<(), CodegenError> {
    let dense = dense_levels(levels, 1);
    let (rows, _, row_step) = dense[contiguous];
    let (columns, column_step, _) = dense[dense.len() - 1];
    let outer: Vec<(usize, i64, i64)> = dense[..dense.len() - 1]
        .iter()
        .enumerate()
        .filter(|&(level, _)| level != contiguous)
        .map(|(_, &level)| level)
        .collect();
    let ty = cranelift_codegen::ir::Type::int_with_byte_size(element as u16)
        .ok_or_else(|| kernel.error(format!("no integer type of {element} bytes")))?;
    // (first, count of tiles, tile size) along the rows and along the columns.
    let spans = |total: usize| {
        let full = total / TILE;
        [(0, full, TILE), (full * TILE, 1, total % TILE)]
            .into_iter()
            .filter(|&(_, count, size)| count > 0 && size > 0)
            .collect::<Vec<_>>()
    };
    for (first_row, row_tiles, tile_rows) in spans(rows) {
        for &(first_column, column_tiles, tile_columns) in &spans(columns) {
            let mut nest = outer.clone();
            nest.push((row_tiles, TILE as i64, TILE as i64 * row_step));
            nest.push((column_tiles, TILE as i64 * column_step, TILE as i64));
            let source = kernel.iconst(first_row as i64 + first_column as i64 * column_step);
            let destination = kernel.iconst(first_row as i64 * row_step + first_column as i64);
            kernel.for_nest_split(&nest, source, destination, &mut |k, source, destination| {
                let from = k.address(input, source, element);
                let to = k.address(output, destination, element);
                for column in 0..tile_columns {
                    for row in 0..tile_rows {
                        let read = (row as i64 + column as i64 * column_step) * element as i64;
                        let write = (row as i64 * row_step + column as i64) * element as i64;
                        let value = load_at(k, ty, from, read);
                        store_at(k, value, to, write);
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// A load `offset` bytes from `base` (an immediate offset when it fits one).
fn load_at(
    k: &mut Kernel,
    ty: cranelift_codegen::ir::Type,
    base: cranelift_codegen::ir::Value,
    offset: i64,
) -> cranelift_codegen::ir::Value {
    use crate::codegen::kernel::memory_flags;
    use cranelift_codegen::ir::InstBuilder;
    match i32::try_from(offset) {
        Ok(offset) => k.builder.ins().load(ty, memory_flags(), base, offset),
        Err(_) => {
            let address = k.builder.ins().iadd_imm_s(base, offset);
            k.builder.ins().load(ty, memory_flags(), address, 0)
        }
    }
}

/// A store `offset` bytes from `base` (an immediate offset when it fits one).
fn store_at(
    k: &mut Kernel,
    value: cranelift_codegen::ir::Value,
    base: cranelift_codegen::ir::Value,
    offset: i64,
) {
    use crate::codegen::kernel::memory_flags;
    use cranelift_codegen::ir::InstBuilder;
    match i32::try_from(offset) {
        Ok(offset) => {
            k.builder.ins().store(memory_flags(), value, base, offset);
        }
        Err(_) => {
            let address = k.builder.ins().iadd_imm_s(base, offset);
            k.builder.ins().store(memory_flags(), value, address, 0);
        }
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
