//! StridedSlice with all five masks.

use std::any::Any;
use std::sync::Arc;

use super::*;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use crate::ops::{strides_of, Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

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
        Ok(vec![gather_axes(input, &axes)])
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
        lower_axes(kernel, &axes)
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The reference gather of a resolved slice.
fn gather_axes(input: &Tensor, axes: &[SliceAxis]) -> Tensor {
    let strides = strides_of(&input.shape);
    let mut indices = vec![0usize];
    for axis in axes {
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
    Tensor {
        shape,
        data: gather(&input.data, &indices),
    }
}

/// The kernel of a resolved slice: nested loops, the innermost unit-stride axis copied as rows.
fn lower_axes(kernel: &mut Kernel, axes: &[SliceAxis]) -> Result<(), CodegenError> {
    let ty = kernel.inputs[0].ty.clone();
    let strides = strides_of(&ty.shape);
    let element = ty.dtype.size_of();
    let mut levels: Vec<(usize, i64, i64)> = Vec::new();
    let mut start = 0i64;
    for axis in axes {
        if let Some(ia) = axis.input_axis {
            levels.push((axis.count, axis.stride * strides[ia] as i64, 0));
            start += axis.start * strides[ia] as i64;
        }
    }
    if levels.iter().any(|l| l.0 == 0) {
        return Ok(());
    }
    // Output steps: the output is dense in level order.
    let mut inner = 1i64;
    for level in levels.iter_mut().rev() {
        level.2 = inner;
        inner *= level.0 as i64;
    }
    let row = match levels.last() {
        Some(&(count, 1, _)) => {
            levels.pop();
            count
        }
        _ => 1,
    };
    let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
    copy_rows(kernel, &levels, start, 0, row, input, output, element)
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

// ---- Slice ----

/// TensorFlow Slice: input 1 is `begin`, input 2 is `size` (-1 takes the rest of the axis).
#[derive(Clone, Debug, PartialEq)]
pub struct Slice;
simple_parse!(Slice, Slice);

impl Slice {
    fn axes(
        &self,
        shape: &[usize],
        begin: Option<&Tensor>,
        size: Option<&Tensor>,
    ) -> OpResult<Vec<SliceAxis>> {
        let get = |t: Option<&Tensor>, what: &str| {
            t.map(|t| t.to_i64_vec()).ok_or_else(|| {
                OpError::Unsupported(format!("Slice {what} must be a compile-time constant"))
            })
        };
        let (begin, size) = (get(begin, "begin")?, get(size, "size")?);
        if begin.len() != shape.len() || size.len() != shape.len() {
            return Err(invalid!(
                "Slice begin {begin:?} and size {size:?} must have one entry per axis of {shape:?}"
            ));
        }
        (0..shape.len())
            .map(|a| {
                let dim = shape[a] as i64;
                let (b, s) = (begin[a], size[a]);
                if b < 0 || b > dim {
                    return Err(invalid!(
                        "Slice begin {b} is out of range [0, {dim}] on axis {a}"
                    ));
                }
                let count = if s == -1 { dim - b } else { s };
                if count < 0 || count > dim - b {
                    return Err(invalid!(
                        "Slice size {s} is out of range [0, {}] on axis {a}",
                        dim - b
                    ));
                }
                Ok(SliceAxis {
                    input_axis: Some(a),
                    start: b,
                    stride: 1,
                    count: count as usize,
                    keep: true,
                })
            })
            .collect()
    }
}

impl Operator for Slice {
    fn name(&self) -> &'static str {
        "slice"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(3)?;
        let input = inputs.ty(0)?;
        let axes = self.axes(
            &input.shape,
            Some(inputs.constant(1, "Slice begin")?),
            Some(inputs.constant(2, "Slice size")?),
        )?;
        Ok(vec![TensorType::new(
            input.dtype,
            axes.iter().map(|a| a.count).collect(),
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let axes = self.axes(
            &inputs[0].shape,
            inputs.get(1).copied(),
            inputs.get(2).copied(),
        )?;
        Ok(vec![gather_axes(inputs[0], &axes)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let begin = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let size = kernel.inputs.get(2).and_then(|i| i.constant.clone());
        let axes = self
            .axes(
                &kernel.inputs[0].ty.shape,
                begin.as_deref(),
                size.as_deref(),
            )
            .map_err(|err| kernel.error(err.to_string()))?;
        lower_axes(kernel, &axes)
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn import_slice(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    Ok(vec![importer.add(node, Slice, inputs[..3].to_vec())])
}

pub const FAMILY: Family = Family {
    ir: &[
        ("strided_slice", StridedSlice::parse),
        ("slice", Slice::parse),
    ],
    tensorflow: &[
        ("StridedSlice", import_strided_slice),
        ("Slice", import_slice),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, Graph};

    #[test]
    fn slice_imports_with_size_minus_one_and_checks_bounds() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", Some(TensorType::new(DType::I32, vec![3, 5])));
        let begin = graph.add_constant("b", Tensor::from_i32(vec![2], vec![1, 2]), None);
        let size = graph.add_constant("s", Tensor::from_i32(vec![2], vec![-1, 2]), None);
        let node = NodeDef {
            name: "slice".into(),
            op: "Slice".into(),
            ..NodeDef::default()
        };
        let mut importer = Importer::new(&mut graph);
        let y = import_slice(&mut importer, &node, &[x, begin, size]).unwrap()[0];
        crate::passes::PIPELINE[0].1(&mut graph).unwrap();
        assert_eq!(graph.ty(y).shape, [2, 2]);
        let input = Tensor::from_i32(vec![3, 5], (0..15).collect());
        let b = Tensor::from_i32(vec![2], vec![1, 2]);
        let s = Tensor::from_i32(vec![2], vec![-1, 2]);
        let out = Slice.evaluate(&[&input, &b, &s]).unwrap().remove(0);
        assert_eq!(out.to_i64_vec(), [7, 8, 12, 13]);
        for (begin, size) in [
            ([0, 4], [1, 2]),
            ([-1, 0], [1, 1]),
            ([0, 0], [1, -2]),
            ([4, 0], [-1, 1]),
        ] {
            let b = Tensor::from_i32(vec![2], begin.to_vec());
            let s = Tensor::from_i32(vec![2], size.to_vec());
            assert!(
                Slice.evaluate(&[&input, &b, &s]).is_err(),
                "{begin:?} {size:?}"
            );
        }
    }
}
