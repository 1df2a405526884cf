//! The loop-nest driver for elementwise ops with NumPy broadcasting: one output, any number of
//! inputs. Dimensions that are contiguous for every operand are merged; the innermost dimension
//! runs as 4-lane vectors (with a scalar tail) when every operand is f32 and each input is either
//! contiguous or broadcast along it. A short innermost axis that an operand repeats along the
//! outer one (an image's 3 channels scaled per channel) runs as vectors too: the two axes become
//! one, walked in blocks a whole number of repeats and vectors long.

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

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
    let all_f32 =
        output_dtype == DType::F32 && kernel.inputs.iter().all(|i| i.ty.dtype == DType::F32);
    let periodic = if all_f32 {
        periodic_inputs(&mut shape, &mut strides)
    } else {
        None
    };
    let rank = shape.len();
    let vectorizable = periodic.is_some()
        || all_f32 && strides[1..].iter().all(|s| s[rank - 1] <= 1) && strides[0][rank - 1] == 1;
    // Vector steps of the innermost axis: a periodic one's blocks.
    let step = periodic.as_ref().map_or(LANES, |p| p.block());
    let input_dtypes: Vec<DType> = kernel.inputs.iter().map(|i| i.ty.dtype).collect();
    // Threads share the outermost axis. Float bodies only: integer ones may fail (division by
    // zero), and only thread 0 runs kernels that can fail. One long contiguous axis is cut into
    // rows first, so that it has an outer axis to share.
    let split = all_f32;
    if split && shape.len() == 1 && shape[0] >= SPLIT_ROWS * SPLIT_MINIMUM {
        if let Some(rows) =
            (SPLIT_ROWS..=4 * SPLIT_ROWS).find(|rows| shape[0].is_multiple_of(rows * step))
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
        periodic.as_ref(),
        split,
        body,
    )
}

/// Inputs that repeat along a short innermost axis while the output runs on (`x[n, 3] * s[3]`):
/// which inputs, and the repeat's length.
struct Periodic {
    period: usize,
    /// Per input: walks the merged axis with period `period` (its stride there is left 0).
    inputs: Vec<bool>,
}

/// Longest repeat worth unrolling into vectors (its block is at most 4 · 15 elements).
const MAX_PERIOD: usize = 15;

impl Periodic {
    /// Elements of one block: whole repeats and whole vectors.
    fn block(&self) -> usize {
        let (mut a, mut b) = (self.period, LANES);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        self.period / a * LANES
    }
}

/// When the innermost axis is shorter than a vector's multiple and every input either runs
/// contiguously over the last two axes, repeats the innermost one (broadcast along the axis
/// before it), or is constant over both, merges the two axes into one and says which inputs
/// repeat. Only when the merged axis is a whole number of blocks.
fn periodic_inputs(shape: &mut Vec<usize>, strides: &mut [Vec<usize>]) -> Option<Periodic> {
    let rank = shape.len();
    if rank < 2 {
        return None;
    }
    let period = shape[rank - 1];
    if period.is_multiple_of(LANES) || period > MAX_PERIOD {
        return None;
    }
    let mut inputs = Vec::new();
    for s in &strides[1..] {
        match (s[rank - 2], s[rank - 1]) {
            (outer, 1) if outer == period => inputs.push(false),
            (0, 1) => inputs.push(true),
            (0, 0) => inputs.push(false),
            _ => return None,
        }
    }
    let periodic = Periodic { period, inputs };
    let length = shape[rank - 2] * period;
    if !periodic.inputs.contains(&true) || !length.is_multiple_of(periodic.block()) {
        return None;
    }
    shape[rank - 2] = length;
    shape.pop();
    for s in strides.iter_mut() {
        // Contiguous operands step by one element; repeating and constant ones by none.
        let contiguous = s[rank - 1] == 1 && s[rank - 2] == period;
        s.pop();
        s[rank - 2] = usize::from(contiguous);
    }
    Some(periodic)
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
    periodic: Option<&Periodic>,
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
            periodic,
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
            periodic,
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
    periodic: Option<&Periodic>,
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
    if let Some(periodic) = periodic {
        return emit_periodic(kernel, strides, &bases, &pointers, inner, periodic, body);
    }
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

/// The innermost axis (`length` elements, f32 operands) in blocks of whole repeats and whole
/// vectors: a repeating input's vectors of one block are the same in every block, so they are
/// assembled once, before the loop, as is a constant input's splat.
fn emit_periodic(
    kernel: &mut Kernel,
    strides: &[Vec<usize>],
    bases: &[Value],
    pointers: &[Value],
    length: usize,
    periodic: &Periodic,
    body: &ElementBody,
) -> Result<(), CodegenError> {
    let rank = strides[0].len();
    let block = periodic.block();
    let vectors = block / LANES;
    // Per input, its vectors of one block (none for a contiguous input).
    let mut patterns: Vec<Vec<Value>> = Vec::new();
    for (operand, &repeats) in periodic.inputs.iter().enumerate() {
        let (base, pointer) = (bases[operand + 1], pointers[operand + 1]);
        if !repeats {
            let constant = strides[operand + 1][rank - 1] == 0;
            patterns.push(if constant {
                let scalar = kernel.load(types::F32, pointer, base, 4);
                vec![kernel.builder.ins().splat(types::F32X4, scalar); vectors]
            } else {
                Vec::new()
            });
            continue;
        }
        let scalars: Vec<Value> = (0..periodic.period)
            .map(|element| {
                let index = kernel.builder.ins().iadd_imm_s(base, element as i64);
                kernel.load(types::F32, pointer, index, 4)
            })
            .collect();
        let pattern = (0..vectors)
            .map(|v| {
                let lane = |l: usize| scalars[(v * LANES + l) % periodic.period];
                let mut vector = kernel.builder.ins().splat(types::F32X4, lane(0));
                for l in 1..LANES {
                    vector = kernel.builder.ins().insertlane(vector, lane(l), l as u8);
                }
                vector
            })
            .collect();
        patterns.push(pattern);
    }
    kernel.for_steps(0, length / block, block, &mut |k, index| {
        for v in 0..vectors {
            let at = k.builder.ins().iadd_imm_s(index, (v * LANES) as i64);
            let mut args = Vec::with_capacity(patterns.len());
            for (operand, pattern) in patterns.iter().enumerate() {
                args.push(match pattern.get(v) {
                    Some(&vector) => vector,
                    None => {
                        let offset = k.builder.ins().iadd(bases[operand + 1], at);
                        k.load(types::F32X4, pointers[operand + 1], offset, 4)
                    }
                });
            }
            let result = body(k, &args, types::F32X4)?;
            let offset = k.builder.ins().iadd(bases[0], at);
            k.store(result, pointers[0], offset, 4);
        }
        Ok(())
    })
}
