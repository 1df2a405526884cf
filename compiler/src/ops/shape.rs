//! Shape and data-movement ops: reshape-like views, Shape, StridedSlice, Pack, Concat, Pad,
//! Transpose, Fill, Range, Copy. Most of these only ever run at compile time: with static input
//! shapes, shape computations fold to constants.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::InstBuilder;

use super::{
    normalize_axis, strides_of, Attribute, Attributes, InputFacts, OpError, OpResult, Operator,
};
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::import::{node_error, ImportError, Importer, NodeAttributes};
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use tfjsc_proto::tensorflow::NodeDef;

/// Picks elements of `data` by index (the reference evaluator's gather).
fn gather(data: &TensorData, indices: &[usize]) -> TensorData {
    match data {
        TensorData::F32(v) => TensorData::F32(indices.iter().map(|&i| v[i]).collect()),
        TensorData::I32(v) => TensorData::I32(indices.iter().map(|&i| v[i]).collect()),
        TensorData::I64(v) => TensorData::I64(indices.iter().map(|&i| v[i]).collect()),
        TensorData::Bool(v) => TensorData::Bool(indices.iter().map(|&i| v[i]).collect()),
    }
}

fn concat_data(parts: &[&TensorData], dtype: DType) -> TensorData {
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

// ---- Reshape, Squeeze, ExpandDims: views ----

/// How a view computes its shape.
#[derive(Clone, Debug, PartialEq)]
pub enum ReshapeMode {
    /// TensorFlow Reshape: input 1 is the shape (one -1 allowed).
    FromOperand,
    /// Squeeze these axes (all size-1 axes when empty).
    Squeeze(Vec<i64>),
    /// ExpandDims: input 1 is the axis.
    ExpandDims,
}

/// Same elements, another shape. No data moves.
#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    pub mode: ReshapeMode,
}

impl Reshape {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let mode = match attributes.string("mode")? {
            "operand" => ReshapeMode::FromOperand,
            "squeeze" => ReshapeMode::Squeeze(attributes.ints("axes")?),
            "expand_dims" => ReshapeMode::ExpandDims,
            other => return Err(invalid!("unknown reshape mode `{other}`")),
        };
        Ok(Arc::new(Reshape { mode }))
    }

    fn output_shape(&self, input: &[usize], operand: Option<&Tensor>) -> OpResult<Vec<usize>> {
        let count: usize = input.iter().product();
        match &self.mode {
            ReshapeMode::FromOperand => {
                let wanted = operand
                    .ok_or_else(|| {
                        OpError::Unsupported(
                            "reshape target shape must be a compile-time constant".into(),
                        )
                    })?
                    .to_i64_vec();
                let known: i64 = wanted.iter().filter(|&&d| d >= 0).product();
                let unknown = wanted.iter().filter(|&&d| d < 0).count();
                let shape: Vec<usize> = wanted
                    .iter()
                    .map(|&d| {
                        if d >= 0 {
                            d as usize
                        } else if known > 0 {
                            count / known as usize
                        } else {
                            0
                        }
                    })
                    .collect();
                if unknown > 1 || shape.iter().product::<usize>() != count {
                    return Err(invalid!(
                        "cannot reshape {input:?} ({count} elements) to {wanted:?}"
                    ));
                }
                Ok(shape)
            }
            ReshapeMode::Squeeze(axes) => {
                let axes: Vec<usize> = axes
                    .iter()
                    .map(|&a| normalize_axis(a, input.len()))
                    .collect::<OpResult<_>>()?;
                for &a in &axes {
                    if input[a] != 1 {
                        return Err(invalid!(
                            "cannot squeeze axis {a} of {input:?}: its size is not 1"
                        ));
                    }
                }
                Ok(input
                    .iter()
                    .enumerate()
                    .filter(|(a, &d)| {
                        if axes.is_empty() {
                            d != 1
                        } else {
                            !axes.contains(a)
                        }
                    })
                    .map(|(_, &d)| d)
                    .collect())
            }
            ReshapeMode::ExpandDims => {
                let axis = operand
                    .ok_or_else(|| {
                        OpError::Unsupported(
                            "ExpandDims axis must be a compile-time constant".into(),
                        )
                    })?
                    .to_i64_vec();
                let axis = *axis
                    .first()
                    .ok_or_else(|| invalid!("ExpandDims axis is empty"))?;
                let position = normalize_axis(axis, input.len() + 1)?;
                let mut shape = input.to_vec();
                shape.insert(position, 1);
                Ok(shape)
            }
        }
    }
}

impl Operator for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn attributes(&self) -> Attributes {
        match &self.mode {
            ReshapeMode::FromOperand => {
                Attributes::default().with("mode", Attribute::Str("operand".into()))
            }
            ReshapeMode::Squeeze(axes) => Attributes::default()
                .with("mode", Attribute::Str("squeeze".into()))
                .with("axes", Attribute::Ints(axes.clone())),
            ReshapeMode::ExpandDims => {
                Attributes::default().with("mode", Attribute::Str("expand_dims".into()))
            }
        }
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let input = inputs.ty(0)?;
        let operand = inputs.constants.get(1).copied().flatten();
        Ok(vec![TensorType::new(
            input.dtype,
            self.output_shape(&input.shape, operand)?,
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let shape = self.output_shape(&inputs[0].shape, inputs.get(1).copied())?;
        Ok(vec![inputs[0].reshaped(shape)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("a view has no kernel (the memory plan aliases it)"))
    }

    fn view_of_input(&self) -> Option<usize> {
        Some(0)
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Copies its input (materialises a view as a graph output).
#[derive(Clone, Debug, PartialEq)]
pub struct Copy;
simple_parse!(Copy, Copy);

impl Operator for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        Ok(vec![inputs.ty(0)?.clone()])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        Ok(vec![inputs[0].clone()])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let ty = kernel.inputs[0].ty.clone();
        let zero = kernel.iconst(0);
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        kernel.copy_elements(
            input,
            zero,
            output,
            zero,
            ty.element_count(),
            ty.dtype.size_of(),
        )
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---- Shape ----

/// The shape of its input as an i32 vector; always folds (shapes are static).
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeOf;
simple_parse!(ShapeOf, ShapeOf);

impl Operator for ShapeOf {
    fn name(&self) -> &'static str {
        "shape_of"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        Ok(vec![TensorType::new(
            DType::I32,
            vec![inputs.ty(0)?.rank()],
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let shape = &inputs[0].shape;
        Ok(vec![Tensor::from_i32(
            vec![shape.len()],
            shape.iter().map(|&d| d as i32).collect(),
        )])
    }

    fn fold_from_types(&self, inputs: &InputFacts) -> Option<Vec<Tensor>> {
        let shape = &inputs.types.first()?.shape;
        Some(vec![Tensor::from_i32(
            vec![shape.len()],
            shape.iter().map(|&d| d as i32).collect(),
        )])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("Shape should have folded"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---- StridedSlice ----

/// TensorFlow StridedSlice with all five masks; begin, end and strides are inputs 1-3.
#[derive(Clone, Debug, PartialEq)]
pub struct StridedSlice {
    pub begin_mask: i64,
    pub end_mask: i64,
    pub ellipsis_mask: i64,
    pub new_axis_mask: i64,
    pub shrink_axis_mask: i64,
}

/// One output axis of a resolved slice: input axis (None for a new axis), start, stride, count.
struct SliceAxis {
    input_axis: Option<usize>,
    start: i64,
    stride: i64,
    count: usize,
    keep: bool,
}

impl StridedSlice {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(StridedSlice {
            begin_mask: a.int("begin_mask")?,
            end_mask: a.int("end_mask")?,
            ellipsis_mask: a.int("ellipsis_mask")?,
            new_axis_mask: a.int("new_axis_mask")?,
            shrink_axis_mask: a.int("shrink_axis_mask")?,
        }))
    }

    fn resolve(
        &self,
        shape: &[usize],
        begin: &[i64],
        end: &[i64],
        strides: &[i64],
    ) -> OpResult<Vec<SliceAxis>> {
        let n = begin.len();
        if end.len() != n || strides.len() != n {
            return Err(invalid!("begin, end and strides must have the same length"));
        }
        let bit = |mask: i64, i: usize| mask >> i & 1 == 1;
        let mut axes = Vec::new();
        let mut input_axis = 0usize;
        let specified = (0..n).filter(|&i| !bit(self.new_axis_mask, i)).count();
        for i in 0..n {
            if bit(self.ellipsis_mask, i) {
                let covered = shape.len().saturating_sub(specified - 1);
                for _ in 0..covered {
                    let count = *shape
                        .get(input_axis)
                        .ok_or_else(|| invalid!("slice has more axes than the input {shape:?}"))?;
                    axes.push(SliceAxis {
                        input_axis: Some(input_axis),
                        start: 0,
                        stride: 1,
                        count,
                        keep: true,
                    });
                    input_axis += 1;
                }
                continue;
            }
            if bit(self.new_axis_mask, i) {
                axes.push(SliceAxis {
                    input_axis: None,
                    start: 0,
                    stride: 1,
                    count: 1,
                    keep: true,
                });
                continue;
            }
            let dim = *shape
                .get(input_axis)
                .ok_or_else(|| invalid!("slice has more axes than the input {shape:?}"))?
                as i64;
            let stride = strides[i];
            if stride == 0 {
                return Err(invalid!("slice stride is 0"));
            }
            let clamp = |v: i64, low: i64, high: i64| v.max(low).min(high);
            let normalize = |v: i64| if v < 0 { v + dim } else { v };
            if bit(self.shrink_axis_mask, i) {
                let start = normalize(begin[i]);
                if start < 0 || start >= dim {
                    return Err(invalid!(
                        "slice index {} is out of range for size {dim}",
                        begin[i]
                    ));
                }
                axes.push(SliceAxis {
                    input_axis: Some(input_axis),
                    start,
                    stride: 1,
                    count: 1,
                    keep: false,
                });
            } else {
                let (low, high) = if stride > 0 { (0, dim) } else { (-1, dim - 1) };
                let start = if bit(self.begin_mask, i) {
                    if stride > 0 {
                        0
                    } else {
                        dim - 1
                    }
                } else {
                    clamp(normalize(begin[i]), low, high)
                };
                let stop = if bit(self.end_mask, i) {
                    if stride > 0 {
                        dim
                    } else {
                        -1
                    }
                } else {
                    clamp(normalize(end[i]), low, high)
                };
                let count = if stride > 0 {
                    ((stop - start).max(0) + stride - 1) / stride
                } else {
                    ((start - stop).max(0) + (-stride) - 1) / (-stride)
                };
                axes.push(SliceAxis {
                    input_axis: Some(input_axis),
                    start,
                    stride,
                    count: count as usize,
                    keep: true,
                });
            }
            input_axis += 1;
        }
        while input_axis < shape.len() {
            axes.push(SliceAxis {
                input_axis: Some(input_axis),
                start: 0,
                stride: 1,
                count: shape[input_axis],
                keep: true,
            });
            input_axis += 1;
        }
        Ok(axes)
    }

    fn operands(&self, constants: &[Option<&Tensor>]) -> OpResult<(Vec<i64>, Vec<i64>, Vec<i64>)> {
        let get = |i: usize| {
            constants
                .get(i)
                .copied()
                .flatten()
                .map(|t| t.to_i64_vec())
                .ok_or_else(|| {
                    OpError::Unsupported("slice bounds must be compile-time constants".into())
                })
        };
        Ok((get(1)?, get(2)?, get(3)?))
    }
}

impl Operator for StridedSlice {
    fn name(&self) -> &'static str {
        "strided_slice"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default()
            .with("begin_mask", Attribute::Int(self.begin_mask))
            .with("end_mask", Attribute::Int(self.end_mask))
            .with("ellipsis_mask", Attribute::Int(self.ellipsis_mask))
            .with("new_axis_mask", Attribute::Int(self.new_axis_mask))
            .with("shrink_axis_mask", Attribute::Int(self.shrink_axis_mask))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(4)?;
        let input = inputs.ty(0)?;
        let (b, e, s) = self.operands(&inputs.constants)?;
        let axes = self.resolve(&input.shape, &b, &e, &s)?;
        Ok(vec![TensorType::new(
            input.dtype,
            axes.iter().filter(|a| a.keep).map(|a| a.count).collect(),
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let constants: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
        let (b, e, s) = self.operands(&constants)?;
        let axes = self.resolve(&input.shape, &b, &e, &s)?;
        let strides = strides_of(&input.shape);
        let mut indices = vec![0usize];
        for axis in &axes {
            let Some(input_axis) = axis.input_axis else {
                continue;
            };
            let mut next = Vec::with_capacity(indices.len() * axis.count);
            for &base in &indices {
                for k in 0..axis.count {
                    next.push(
                        base + (axis.start + k as i64 * axis.stride) as usize * strides[input_axis],
                    );
                }
            }
            indices = next;
        }
        let shape = axes.iter().filter(|a| a.keep).map(|a| a.count).collect();
        Ok(vec![Tensor {
            shape,
            data: gather(&input.data, &indices),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let constants: Vec<Option<&Tensor>> = kernel
            .inputs
            .iter()
            .map(|i| i.constant.as_deref())
            .collect();
        let (b, e, s) = self
            .operands(&constants)
            .map_err(|err| kernel.error(err.to_string()))?;
        let shape = kernel.inputs[0].ty.shape.clone();
        let axes = self
            .resolve(&shape, &b, &e, &s)
            .map_err(|err| kernel.error(err.to_string()))?;
        let strides = strides_of(&shape);
        let element = kernel.inputs[0].ty.dtype.size_of();
        let levels: Vec<(usize, i64, i64)> = axes
            .iter()
            .filter_map(|a| {
                a.input_axis.map(|ia| {
                    (
                        a.count,
                        a.stride * strides[ia] as i64,
                        a.start * strides[ia] as i64,
                    )
                })
            })
            .collect();
        let offset: i64 = levels.iter().map(|l| l.2).sum();
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let start = kernel.iconst(offset);
        let zero = kernel.iconst(0);
        copy_nest(kernel, &levels, start, zero, input, output, element)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Element-by-element copy over nested loops (count, input step); output is dense.
fn copy_nest(
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
        kernel.for_count(outer, &mut |k, o| {
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

// ---- Pad ----

/// Constant padding; input 1 is the `[rank, 2]` paddings, optional input 2 the fill value.
#[derive(Clone, Debug, PartialEq)]
pub struct Pad;
simple_parse!(Pad, Pad);

impl Pad {
    fn pads(&self, rank: usize, paddings: Option<&Tensor>) -> OpResult<Vec<(usize, usize)>> {
        let values = paddings
            .ok_or_else(|| OpError::Unsupported("paddings must be a compile-time constant".into()))?
            .to_i64_vec();
        if values.len() != rank * 2 || values.iter().any(|&v| v < 0) {
            return Err(invalid!(
                "paddings {values:?} do not fit rank {rank} (negative padding is not supported)"
            ));
        }
        Ok(values
            .chunks(2)
            .map(|p| (p[0] as usize, p[1] as usize))
            .collect())
    }
}

impl Operator for Pad {
    fn name(&self) -> &'static str {
        "pad"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let input = inputs.ty(0)?;
        let pads = self.pads(input.rank(), inputs.constants.get(1).copied().flatten())?;
        if inputs.types.len() > 2 && inputs.constants.get(2).copied().flatten().is_none() {
            return Err(OpError::Unsupported(
                "the pad value must be a compile-time constant".into(),
            ));
        }
        Ok(vec![TensorType::new(
            input.dtype,
            input
                .shape
                .iter()
                .zip(&pads)
                .map(|(d, p)| d + p.0 + p.1)
                .collect(),
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let pads = self.pads(input.shape.len(), inputs.get(1).copied())?;
        let fill = inputs
            .get(2)
            .map(|t| t.to_f32_vec().first().copied().unwrap_or(0.0))
            .unwrap_or(0.0);
        let shape: Vec<usize> = input
            .shape
            .iter()
            .zip(&pads)
            .map(|(d, p)| d + p.0 + p.1)
            .collect();
        let out_strides = strides_of(&shape);
        let in_strides = strides_of(&input.shape);
        let mut out = Tensor::filled(input.dtype(), shape, fill as f64).to_f32_vec();
        let values = input.to_f32_vec();
        for (flat, &v) in values.iter().enumerate() {
            let o: usize = (0..input.shape.len())
                .map(|a| (flat / in_strides[a] % input.shape[a] + pads[a].0) * out_strides[a])
                .sum();
            out[o] = v;
        }
        let result = Tensor::from_f32(
            out_strides
                .iter()
                .zip(&input.shape)
                .zip(&pads)
                .map(|((_, d), p)| d + p.0 + p.1)
                .collect(),
            out,
        );
        Ok(vec![result.cast(input.dtype())])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input_ty = kernel.inputs[0].ty.clone();
        let constant = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let pads = self
            .pads(input_ty.rank(), constant.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        if input_ty.dtype.size_of() != 4 {
            return Err(kernel.error("pad kernels handle 4-byte elements"));
        }
        let fill = kernel
            .inputs
            .get(2)
            .and_then(|i| i.constant.clone())
            .map(|t| t.to_f32_vec().first().copied().unwrap_or(0.0))
            .unwrap_or(0.0);
        let bits = if input_ty.dtype == DType::F32 {
            fill.to_bits()
        } else {
            fill as i32 as u32
        };
        let output_ty = kernel.outputs[0].ty.clone();
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let zero = kernel.iconst(0);
        kernel.fill_words(output, zero, output_ty.element_count(), bits)?;
        let rank = input_ty.rank();
        if rank == 0 || input_ty.element_count() == 0 {
            return Ok(());
        }
        // Copy each innermost row of the input to its place in the output.
        let in_strides = strides_of(&input_ty.shape);
        let out_strides = strides_of(&output_ty.shape);
        let row = input_ty.shape[rank - 1];
        let levels: Vec<(usize, usize, usize)> = (0..rank - 1)
            .map(|a| (input_ty.shape[a], in_strides[a], out_strides[a]))
            .collect();
        let start: usize = pads.iter().zip(&out_strides).map(|(p, s)| p.0 * s).sum();
        let start = kernel.iconst(start as i64);
        row_nest(
            kernel,
            &levels,
            zero,
            start,
            &mut |k, source, destination| {
                k.copy_elements(input, source, output, destination, row, 4)
            },
        )
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn row_nest(
    kernel: &mut Kernel,
    levels: &[(usize, usize, usize)],
    source: cranelift_codegen::ir::Value,
    destination: cranelift_codegen::ir::Value,
    body: &mut dyn FnMut(
        &mut Kernel,
        cranelift_codegen::ir::Value,
        cranelift_codegen::ir::Value,
    ) -> Result<(), CodegenError>,
) -> Result<(), CodegenError> {
    let Some((&(count, in_stride, out_stride), rest)) = levels.split_first() else {
        return body(kernel, source, destination);
    };
    kernel.for_count(count, &mut |k, i| {
        let a = k.builder.ins().imul_imm_s(i, in_stride as i64);
        let a = k.builder.ins().iadd(source, a);
        let b = k.builder.ins().imul_imm_s(i, out_stride as i64);
        let b = k.builder.ins().iadd(destination, b);
        row_nest(k, rest, a, b, body)
    })
}

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

// ---- Fill and Range: compile-time only ----

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
        let value = inputs[1].to_f32_vec().first().copied().unwrap_or(0.0);
        Ok(vec![Tensor::filled(inputs[1].dtype(), dims, value as f64)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("Fill with a run-time value is not supported"))
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

// ---- import ----

pub fn import_reshape(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    Ok(vec![importer.add(
        node,
        Reshape {
            mode: ReshapeMode::FromOperand,
        },
        inputs[..2].to_vec(),
    )])
}

pub fn import_squeeze(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let axes = NodeAttributes::of(node)
        .ints_or("squeeze_dims", &[])
        .map_err(node_error(node))?;
    Ok(vec![importer.add(
        node,
        Reshape {
            mode: ReshapeMode::Squeeze(axes),
        },
        vec![inputs[0]],
    )])
}

pub fn import_expand_dims(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    Ok(vec![importer.add(
        node,
        Reshape {
            mode: ReshapeMode::ExpandDims,
        },
        inputs[..2].to_vec(),
    )])
}

pub fn import_shape(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    Ok(vec![importer.add(node, ShapeOf, vec![inputs[0]])])
}

pub fn import_strided_slice(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 4)?;
    let a = NodeAttributes::of(node);
    let fail = node_error(node);
    let op = StridedSlice {
        begin_mask: a.int_or("begin_mask", 0).map_err(&fail)?,
        end_mask: a.int_or("end_mask", 0).map_err(&fail)?,
        ellipsis_mask: a.int_or("ellipsis_mask", 0).map_err(&fail)?,
        new_axis_mask: a.int_or("new_axis_mask", 0).map_err(&fail)?,
        shrink_axis_mask: a.int_or("shrink_axis_mask", 0).map_err(&fail)?,
    };
    Ok(vec![importer.add(node, op, inputs[..4].to_vec())])
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

/// ConcatV2: the last input is the axis, which must be constant.
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
        .graph
        .constant(axis_value)
        .and_then(|c| c.tensor.to_i64_vec().first().copied())
        .ok_or_else(|| importer.error(node, "the concat axis must be a constant"))?;
    Ok(vec![importer.add(
        node,
        Concat { axis, pack: false },
        values.to_vec(),
    )])
}

pub fn import_pad(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let count = if node.op == "PadV2" { 3 } else { 2 };
    importer.expect_inputs(node, inputs, count)?;
    Ok(vec![importer.add(node, Pad, inputs[..count].to_vec())])
}

pub fn import_transpose(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    Ok(vec![importer.add(node, Transpose, inputs[..2].to_vec())])
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
