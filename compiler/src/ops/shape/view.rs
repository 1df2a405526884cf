//! Views (Reshape, Squeeze, ExpandDims: same elements, another shape), the copy that
//! materialises a view as a graph output, and Shape.

use std::any::Any;
use std::sync::Arc;

use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use crate::ops::{normalize_axis, Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

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

/// ShapeN: one Shape per input (output k is input k's shape).
pub fn import_shape_n(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    Ok(inputs
        .iter()
        .enumerate()
        .map(|(k, &input)| importer.add_named(&format!("{}:{k}", node.name), ShapeOf, vec![input]))
        .collect())
}

/// Rank as the size of the shape: both fold from types.
pub fn import_rank(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let shape = importer.add_named(&format!("{}/shape", node.name), ShapeOf, vec![inputs[0]]);
    Ok(vec![importer.add(
        node,
        SizeOf { dtype: DType::I32 },
        vec![shape],
    )])
}

// ---- Size ----

/// The element count of its input as a scalar of `dtype` (I32 or I64); always folds.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeOf {
    pub dtype: DType,
}

impl SizeOf {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let dtype = a.dtype("dtype")?;
        if !matches!(dtype, DType::I32 | DType::I64) {
            return Err(invalid!("size_of yields i32 or i64, not {dtype:?}"));
        }
        Ok(Arc::new(SizeOf { dtype }))
    }

    fn value(&self, count: usize) -> Tensor {
        match self.dtype {
            DType::I64 => Tensor::from_i64(vec![], vec![count as i64]),
            _ => Tensor::from_i32(vec![], vec![count as i32]),
        }
    }
}

impl Operator for SizeOf {
    fn name(&self) -> &'static str {
        "size_of"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default().with("dtype", Attribute::Type(self.dtype))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let count = inputs.ty(0)?.element_count();
        if self.dtype == DType::I32 && count > i32::MAX as usize {
            return Err(invalid!("Size {count} does not fit int32"));
        }
        Ok(vec![TensorType::new(self.dtype, vec![])])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        Ok(vec![self.value(inputs[0].element_count())])
    }

    fn fold_from_types(&self, inputs: &InputFacts) -> Option<Vec<Tensor>> {
        Some(vec![self.value(inputs.types.first()?.element_count())])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("Size should have folded"))
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn import_size(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let a = NodeAttributes::of(node);
    let dtype = if a.has("out_type") {
        a.dtype("out_type").map_err(node_error(node))?
    } else {
        DType::I32
    };
    if !matches!(dtype, DType::I32 | DType::I64) {
        return Err(importer.error(node, format!("out_type {dtype:?} must be int32 or int64")));
    }
    // Compiled code works in int32 (as Shape does): an int64 size is produced as int32.
    Ok(vec![importer.add(
        node,
        SizeOf { dtype: DType::I32 },
        vec![inputs[0]],
    )])
}

pub const FAMILY: Family = Family {
    ir: &[
        ("reshape", Reshape::parse),
        ("shape_of", ShapeOf::parse),
        ("copy", Copy::parse),
        ("size_of", SizeOf::parse),
    ],
    tensorflow: &[
        ("Reshape", import_reshape),
        ("Squeeze", import_squeeze),
        ("ExpandDims", import_expand_dims),
        ("Shape", import_shape),
        ("ShapeN", import_shape_n),
        ("Rank", import_rank),
        ("Size", import_size),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use tfjsc_proto::tensorflow::{attr_value, AttrValue};

    #[test]
    fn size_and_fill_like_fold_from_types() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", Some(TensorType::new(DType::Bool, vec![2, 3, 4])));
        let mut size = NodeDef {
            name: "size".into(),
            op: "Size".into(),
            ..NodeDef::default()
        };
        let mut importer = Importer::new(&mut graph);
        let s32 = import_size(&mut importer, &size, &[x]).unwrap()[0];
        size.attr.insert(
            "out_type".into(),
            AttrValue {
                value: Some(attr_value::Value::Type(
                    crate::ops::importer::data_type::INT64,
                )),
            },
        );
        let s64 = import_size(&mut importer, &size, &[x]).unwrap()[0];
        size.attr.insert(
            "out_type".into(),
            AttrValue {
                value: Some(attr_value::Value::Type(
                    crate::ops::importer::data_type::FLOAT,
                )),
            },
        );
        assert!(import_size(&mut importer, &size, &[x]).is_err());
        let ones = NodeDef {
            name: "ones".into(),
            op: "OnesLike".into(),
            ..NodeDef::default()
        };
        let o =
            crate::ops::shape::generate::import_fill_like(&mut importer, &ones, &[x]).unwrap()[0];
        crate::passes::PIPELINE[0].1(&mut graph).unwrap();
        let constant = |v| graph.constant(v).unwrap().tensor.as_ref().clone();
        assert_eq!(constant(s32), Tensor::from_i32(vec![], vec![24]));
        // out_type int64 is produced as int32, as compiled code's integers are.
        assert_eq!(constant(s64), Tensor::from_i32(vec![], vec![24]));
        assert_eq!(
            constant(o),
            Tensor::from_bool(vec![2, 3, 4], vec![true; 24])
        );
    }
}
