//! The loop-nest driver for elementwise ops with NumPy broadcasting: one output, any number of
//! inputs. Dimensions that are contiguous for every operand are merged; the innermost dimension
//! runs as 4-lane vectors (with a scalar tail) when every operand is f32 and each input is either
//! contiguous or broadcast along it.

use cranelift_codegen::ir::{InstBuilder, Type, Value};

use super::kernel::{scalar_type, vector_type, Kernel, LANES};
use super::CodegenError;
use crate::ir::DType;
use crate::ops::strides_of;

/// Computes one output element (or vector of elements) from the loaded input elements.
pub type ElementBody<'b> = dyn Fn(&mut Kernel, &[Value], Type) -> Result<Value, CodegenError> + 'b;

/// Strides of an input of `input_shape` broadcast to `output_shape` (0 along broadcast dims).
pub fn broadcast_strides(input_shape: &[usize], output_shape: &[usize]) -> Vec<usize> {
    let strides = strides_of(input_shape);
    let offset = output_shape.len() - input_shape.len();
    (0..output_shape.len())
        .map(|axis| {
            if axis < offset || input_shape[axis - offset] == 1 {
                0
            } else {
                strides[axis - offset]
            }
        })
        .collect()
}

/// Emits the loop nest computing `kernel.outputs[0] = body(kernel.inputs...)`.
pub fn lower_elementwise(kernel: &mut Kernel, body: &ElementBody) -> Result<(), CodegenError> {
    let output_shape = kernel.outputs[0].ty.shape.clone();
    let output_dtype = kernel.outputs[0].ty.dtype;
    let mut shape = output_shape.clone();
    let mut strides: Vec<Vec<usize>> = vec![strides_of(&output_shape)];
    for input in &kernel.inputs {
        if input.ty.rank() > output_shape.len() {
            return Err(kernel.error("elementwise input has a higher rank than its output"));
        }
        strides.push(broadcast_strides(&input.ty.shape, &output_shape));
    }
    // Axes of one element are walked by no operand: dropped, they neither block the merging
    // below nor leave a one-iteration outer loop for the threads to share.
    let kept: Vec<usize> = (0..shape.len()).filter(|&axis| shape[axis] != 1).collect();
    if kept.len() < shape.len() {
        shape = kept.iter().map(|&axis| shape[axis]).collect();
        for s in strides.iter_mut() {
            *s = kept.iter().map(|&axis| s[axis]).collect();
        }
    }
    // Merge dimension `axis` into `axis + 1` while every operand walks them as one.
    let mut axis = shape.len().saturating_sub(1);
    while axis > 0 {
        let mergeable = strides.iter().all(|s| s[axis - 1] == s[axis] * shape[axis]);
        if mergeable {
            shape[axis] *= shape[axis - 1];
            shape.remove(axis - 1);
            for s in strides.iter_mut() {
                s.remove(axis - 1);
            }
        }
        axis -= 1;
    }
    if shape.is_empty() {
        shape.push(1);
        for s in strides.iter_mut() {
            s.push(0);
        }
    }
    let rank = shape.len();
    let all_f32 =
        output_dtype == DType::F32 && kernel.inputs.iter().all(|i| i.ty.dtype == DType::F32);
    let vectorizable =
        all_f32 && strides[1..].iter().all(|s| s[rank - 1] <= 1) && strides[0][rank - 1] == 1;
    let input_dtypes: Vec<DType> = kernel.inputs.iter().map(|i| i.ty.dtype).collect();
    // Threads share the outermost axis. Float bodies only: integer ones may fail (division by
    // zero), and only thread 0 runs kernels that can fail. One long contiguous axis is cut into
    // rows first, so that it has an outer axis to share.
    let split = all_f32;
    if split && shape.len() == 1 && shape[0] >= SPLIT_ROWS * SPLIT_MINIMUM {
        if let Some(rows) =
            (SPLIT_ROWS..=4 * SPLIT_ROWS).find(|rows| shape[0].is_multiple_of(rows * LANES))
        {
            let columns = shape[0] / rows;
            shape = vec![rows, columns];
            for s in strides.iter_mut() {
                *s = vec![s[0] * columns, s[0]];
            }
        }
    }
    let rank = shape.len();
    let inner = shape[rank - 1];
    emit_outer(
        kernel,
        &shape,
        &strides,
        0,
        &vec![None; strides.len()],
        &input_dtypes,
        output_dtype,
        inner,
        vectorizable,
        split,
        body,
    )
}

/// Rows a long contiguous elementwise kernel is cut into for the threads, at least, and the
/// fewest elements per row worth it.
const SPLIT_ROWS: usize = 16;
const SPLIT_MINIMUM: usize = 1024;

#[allow(clippy::too_many_arguments)]
fn emit_outer(
    kernel: &mut Kernel,
    shape: &[usize],
    strides: &[Vec<usize>],
    axis: usize,
    bases: &[Option<Value>],
    input_dtypes: &[DType],
    output_dtype: DType,
    inner: usize,
    vectorizable: bool,
    split: bool,
    body: &ElementBody,
) -> Result<(), CodegenError> {
    if axis + 1 == shape.len() {
        return emit_inner(
            kernel,
            strides,
            bases,
            input_dtypes,
            output_dtype,
            inner,
            vectorizable,
            body,
        );
    }
    let mut each = |k: &mut Kernel, index: Value| {
        let next: Vec<Option<Value>> = bases
            .iter()
            .zip(strides)
            .map(|(base, s)| {
                if s[axis] == 0 {
                    return *base;
                }
                let term = k.builder.ins().imul_imm_s(index, s[axis] as i64);
                Some(match base {
                    Some(b) => k.builder.ins().iadd(*b, term),
                    None => term,
                })
            })
            .collect();
        emit_outer(
            k,
            shape,
            strides,
            axis + 1,
            &next,
            input_dtypes,
            output_dtype,
            inner,
            vectorizable,
            false,
            body,
        )
    };
    if split && axis == 0 {
        kernel.for_split(shape[axis], &mut each)
    } else {
        kernel.for_count(shape[axis], &mut each)
    }
}

#[allow(clippy::too_many_arguments)]
fn emit_inner(
    kernel: &mut Kernel,
    strides: &[Vec<usize>],
    bases: &[Option<Value>],
    input_dtypes: &[DType],
    output_dtype: DType,
    inner: usize,
    vectorizable: bool,
    body: &ElementBody,
) -> Result<(), CodegenError> {
    let rank = strides[0].len();
    let bases: Vec<Value> = bases
        .iter()
        .map(|b| b.unwrap_or_else(|| kernel.iconst(0)))
        .collect();
    let pointers: Vec<Value> = std::iter::once(kernel.outputs[0].pointer)
        .chain(kernel.inputs.iter().map(|i| i.pointer))
        .collect();
    let element = |k: &mut Kernel, index: Value, lanes: usize| -> Result<(), CodegenError> {
        let mut args = Vec::with_capacity(input_dtypes.len());
        for (operand, dtype) in input_dtypes.iter().enumerate() {
            let stride = strides[operand + 1][rank - 1];
            let offset = if stride == 0 {
                bases[operand + 1]
            } else {
                let scaled = k.builder.ins().imul_imm_s(index, stride as i64);
                k.builder.ins().iadd(bases[operand + 1], scaled)
            };
            let value = if lanes > 1 && stride == 0 {
                let scalar = k.load(
                    scalar_type(*dtype),
                    pointers[operand + 1],
                    offset,
                    dtype.size_of(),
                );
                k.builder.ins().splat(vector_type(*dtype), scalar)
            } else {
                let ty = if lanes > 1 {
                    vector_type(*dtype)
                } else {
                    scalar_type(*dtype)
                };
                k.load(ty, pointers[operand + 1], offset, dtype.size_of())
            };
            args.push(value);
        }
        let result_type = if lanes > 1 {
            vector_type(output_dtype)
        } else {
            scalar_type(output_dtype)
        };
        let result = body(k, &args, result_type)?;
        let stride = strides[0][rank - 1];
        let scaled = k.builder.ins().imul_imm_s(index, stride as i64);
        let offset = k.builder.ins().iadd(bases[0], scaled);
        k.store(result, pointers[0], offset, output_dtype.size_of());
        Ok(())
    };
    let vector_count = if vectorizable { inner / LANES } else { 0 };
    kernel.for_steps(0, vector_count, LANES, &mut |k, index| {
        element(k, index, LANES)
    })?;
    let tail_start = vector_count * LANES;
    if inner - tail_start <= LANES {
        // A few elements (a vector's tail, or short rows such as an image's 3 channels): straight
        // code, without a loop's overhead on every row.
        for index in tail_start..inner {
            let index = kernel.iconst(index as i64);
            element(kernel, index, 1)?;
        }
        return Ok(());
    }
    kernel.for_steps(tail_start, inner - tail_start, 1, &mut |k, index| {
        element(k, index, 1)
    })
}
