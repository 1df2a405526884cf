//! Shape and data-movement ops: reshape-like views, Shape, Size, StridedSlice, Slice, Pack,
//! Concat, Split/SplitV/Unpack, Pad, MirrorPad, Transpose, ReverseV2, Tile, BroadcastTo,
//! DepthToSpace, SpaceToDepth, SpaceToBatchND, BatchToSpaceND, Fill, ZerosLike, OnesLike, Range,
//! Copy. Shape computations fold to constants (input shapes are static); the kernels that move
//! data are nests of row copies whose bounds and offsets are all compile-time constants, for
//! every dtype (elements are moved by size).

use cranelift_codegen::ir::InstBuilder;

use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::ir::{DType, TensorData};

/// Picks elements of `data` by index (the reference evaluators' gather).
pub fn gather_data(data: &TensorData, indices: &[usize]) -> TensorData {
    gather(data, indices)
}

/// Picks elements of `data` by index (the reference evaluator's gather).
pub(super) fn gather(data: &TensorData, indices: &[usize]) -> TensorData {
    match data {
        TensorData::F32(v) => TensorData::F32(indices.iter().map(|&i| v[i]).collect()),
        TensorData::I32(v) => TensorData::I32(indices.iter().map(|&i| v[i]).collect()),
        TensorData::I64(v) => TensorData::I64(indices.iter().map(|&i| v[i]).collect()),
        TensorData::Bool(v) => TensorData::Bool(indices.iter().map(|&i| v[i]).collect()),
    }
}

pub(super) fn concat_data(parts: &[&TensorData], dtype: DType) -> TensorData {
    fn join<T: Clone>(
        parts: &[&TensorData],
        pick: impl Fn(&TensorData) -> Option<&Vec<T>>,
    ) -> Vec<T> {
        parts
            .iter()
            .filter_map(|part| pick(part))
            .flatten()
            .cloned()
            .collect()
    }
    match dtype {
        DType::F32 => TensorData::F32(join(parts, |d| {
            if let TensorData::F32(v) = d {
                Some(v)
            } else {
                None
            }
        })),
        DType::I32 => TensorData::I32(join(parts, |d| {
            if let TensorData::I32(v) = d {
                Some(v)
            } else {
                None
            }
        })),
        DType::I64 => TensorData::I64(join(parts, |d| {
            if let TensorData::I64(v) = d {
                Some(v)
            } else {
                None
            }
        })),
        DType::Bool => TensorData::Bool(join(parts, |d| {
            if let TensorData::Bool(v) = d {
                Some(v)
            } else {
                None
            }
        })),
    }
}

macro_rules! simple_parse {
    ($ty:ident, $value:expr) => {
        impl $ty {
            pub fn parse(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
                Ok(Arc::new($value))
            }
        }
    };
}

/// Copies rows of `row` contiguous elements over nested loops: each level is (count, source
/// step, destination step) in elements; the first row starts at the given element offsets.
/// The threads share the outermost level: each row goes to its own place.
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_rows(
    kernel: &mut Kernel,
    levels: &[(usize, i64, i64)],
    source_start: i64,
    destination_start: i64,
    row: usize,
    input: cranelift_codegen::ir::Value,
    output: cranelift_codegen::ir::Value,
    element: usize,
) -> Result<(), CodegenError> {
    let source = kernel.iconst(source_start);
    let destination = kernel.iconst(destination_start);
    let bytes = row * element;
    kernel.for_nest_split(
        levels,
        source,
        destination,
        &mut |k, source, destination| {
            let from = k.address(input, source, element);
            let to = k.address(output, destination, element);
            copy_bytes(k, from, to, bytes)
        },
    )
}

/// Copies `bytes` bytes from address `from` to address `to`: 16-byte vectors (unrolled when
/// there are few), then one 8-, 4-, 2- and 1-byte move each as needed.
pub(crate) fn copy_bytes(
    kernel: &mut Kernel,
    from: cranelift_codegen::ir::Value,
    to: cranelift_codegen::ir::Value,
    bytes: usize,
) -> Result<(), CodegenError> {
    use crate::codegen::kernel::memory_flags;
    use cranelift_codegen::ir::types;
    let chunks = bytes / 16;
    let move_at = |k: &mut Kernel, ty, offset: usize| {
        let v = k
            .builder
            .ins()
            .load(ty, memory_flags(), from, offset as i32);
        k.builder.ins().store(memory_flags(), v, to, offset as i32);
    };
    if chunks <= 4 {
        for chunk in 0..chunks {
            move_at(kernel, types::I8X16, chunk * 16);
        }
    } else {
        kernel.for_count(chunks, &mut |k, chunk| {
            let offset = k.builder.ins().imul_imm_s(chunk, 16);
            let source = k.builder.ins().iadd(from, offset);
            let destination = k.builder.ins().iadd(to, offset);
            let v = k
                .builder
                .ins()
                .load(types::I8X16, memory_flags(), source, 0);
            k.builder.ins().store(memory_flags(), v, destination, 0);
            Ok(())
        })?;
    }
    let mut offset = chunks * 16;
    for (size, ty) in [
        (8, types::I64),
        (4, types::I32),
        (2, types::I16),
        (1, types::I8),
    ] {
        if bytes - offset >= size {
            move_at(kernel, ty, offset);
            offset += size;
        }
    }
    Ok(())
}

/// Sets `bytes` bytes at `base` to zero (any dtype: zero bits are zero in each).
pub(super) fn zero_bytes(
    kernel: &mut Kernel,
    base: cranelift_codegen::ir::Value,
    bytes: usize,
) -> Result<(), CodegenError> {
    use cranelift_codegen::ir::types;
    let zero = kernel.builder.ins().iconst(types::I8, 0);
    let vector = kernel.builder.ins().splat(types::I8X16, zero);
    kernel.for_count(bytes / 16, &mut |k, chunk| {
        let offset = k.builder.ins().imul_imm_s(chunk, 16);
        let to = k.builder.ins().iadd(base, offset);
        k.builder
            .ins()
            .store(crate::codegen::kernel::memory_flags(), vector, to, 0);
        Ok(())
    })?;
    for byte in bytes / 16 * 16..bytes {
        kernel.builder.ins().store(
            crate::codegen::kernel::memory_flags(),
            zero,
            base,
            byte as i32,
        );
    }
    Ok(())
}

pub mod blocks;
pub mod generate;
pub mod join;
pub mod pad;
pub mod reverse;
pub mod slice;
pub mod split;
pub mod tile;
pub mod transpose;
pub mod view;

pub use blocks::{DepthSpace, SpaceBatch};
pub use reverse::Reverse;
pub use split::Split;
pub use tile::Tile;

pub use generate::{import_fill, import_range, Fill, FillLike, Range};
pub use join::{import_concat, import_pack, Concat, Pack};
pub use pad::{import_pad, MirrorPad, Pad};
pub use slice::{import_slice, import_strided_slice, Slice, StridedSlice};
pub use transpose::{import_transpose, Transpose};
pub use view::{
    import_expand_dims, import_reshape, import_shape, import_squeeze, Copy, Reshape, ReshapeMode,
    ShapeOf, SizeOf,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Tensor, TensorType};
    use crate::ops::resize::Resize;
    use crate::ops::{InputFacts, Operator};

    /// Ops whose operands must be compile-time constants say so (and which), never panic;
    /// sizes that overflow are errors.
    #[test]
    fn missing_constants_and_overflows_are_errors() {
        let image = TensorType::new(DType::F32, vec![1, 4, 4, 2]);
        let operand = TensorType::new(DType::I32, vec![4]);
        let pairs = TensorType::new(DType::I32, vec![2, 2]);
        let ops: Vec<(Box<dyn Operator>, usize)> = vec![
            (Box::new(Slice), 3),
            (Box::new(Tile { broadcast: false }), 2),
            (Box::new(Tile { broadcast: true }), 2),
            (Box::new(SpaceBatch { to_batch: true }), 3),
            (Box::new(SpaceBatch { to_batch: false }), 3),
            (Box::new(Reverse), 2),
            (Box::new(MirrorPad { symmetric: true }), 2),
            (
                Box::new(Resize {
                    bilinear: true,
                    align_corners: false,
                    half_pixel_centers: false,
                }),
                2,
            ),
        ];
        for (op, count) in ops {
            let mut types = vec![&image];
            types.extend(std::iter::repeat_n(&operand, count - 1));
            let facts = InputFacts {
                types,
                constants: vec![None; count],
            };
            let error = op.infer(&facts).unwrap_err().to_string();
            assert!(
                error.contains("compile-time constant"),
                "{}: {error}",
                op.name()
            );
        }
        let x = TensorType::new(DType::F32, vec![3, 2]);
        let huge = Tensor::from_i64(vec![2], vec![1 << 62, 1 << 62]);
        let facts = InputFacts {
            types: vec![&x, &operand],
            constants: vec![None, Some(&huge)],
        };
        assert!(Tile { broadcast: false }.infer(&facts).is_err());
        let block = Tensor::from_i64(vec![2], vec![1 << 40, 1 << 40]);
        let zero = Tensor::from_i32(vec![2, 2], vec![0; 4]);
        let facts = InputFacts {
            types: vec![&image, &operand, &pairs],
            constants: vec![None, Some(&block), Some(&zero)],
        };
        assert!(SpaceBatch { to_batch: true }.infer(&facts).is_err());
        let input = Tensor::from_i32(vec![3], vec![1, 2, 3]);
        let begin = Tensor::from_i64(vec![1], vec![1]);
        let size = Tensor::from_i64(vec![1], vec![i64::MAX]);
        assert!(Slice.evaluate(&[&input, &begin, &size]).is_err());
    }
}
