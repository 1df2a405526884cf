//! Shape and data-movement ops: reshape-like views, Shape, StridedSlice, Pack, Concat, Pad,
//! Transpose, Fill, Range, Copy. Most of these only ever run at compile time: with static input
//! shapes, shape computations fold to constants.

use cranelift_codegen::ir::InstBuilder;

use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::ir::{DType, TensorData};

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

/// Element-by-element copy over nested loops (count, input step); output is dense.
pub(super) fn copy_nest(
    kernel: &mut Kernel,
    levels: &[(usize, i64, i64)],
    input_index: cranelift_codegen::ir::Value,
    output_index: cranelift_codegen::ir::Value,
    input: cranelift_codegen::ir::Value,
    output: cranelift_codegen::ir::Value,
    element: usize,
) -> Result<(), CodegenError> {
    let Some((&(count, step, _), rest)) = levels.split_first() else {
        return kernel.copy_elements(input, input_index, output, output_index, 1, element);
    };
    let inner: usize = rest.iter().map(|l| l.0).product();
    kernel.for_count(count, &mut |k, i| {
        let a = k.builder.ins().imul_imm_s(i, step);
        let a = k.builder.ins().iadd(input_index, a);
        let b = k.builder.ins().imul_imm_s(i, inner as i64);
        let b = k.builder.ins().iadd(output_index, b);
        copy_nest(k, rest, a, b, input, output, element)
    })
}

pub mod generate;
pub mod join;
pub mod pad;
pub mod slice;
pub mod transpose;
pub mod view;

pub use generate::{import_fill, import_range, Fill, Range};
pub use join::{import_concat, import_pack, Concat, Pack};
pub use pad::{import_pad, Pad};
pub use slice::{import_strided_slice, StridedSlice};
pub use transpose::{import_transpose, Transpose};
pub use view::{
    import_expand_dims, import_reshape, import_shape, import_squeeze, Copy, Reshape, ReshapeMode,
    ShapeOf,
};
