//! Reductions over constant axes: mean, sum, max, min, product.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use super::{
    normalize_axis, strides_of, Attribute, Attributes, InputFacts, OpResult, Operator, Specialized,
};
use crate::codegen::kernel::{Kernel, LANES};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReduceKind {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
}

const KINDS: &[(ReduceKind, &str, &str)] = &[
    (ReduceKind::Mean, "mean", "Mean"),
    (ReduceKind::Sum, "sum", "Sum"),
    (ReduceKind::Max, "max", "Max"),
    (ReduceKind::Min, "min", "Min"),
    (ReduceKind::Prod, "prod", "Prod"),
];

#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub kind: ReduceKind,
    /// Sorted, distinct, non-negative.
    pub axes: Vec<usize>,
    pub keep_dims: bool,
}

impl Reduce {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let text = attributes.string("kind")?;
        let kind = KINDS
            .iter()
            .find(|k| k.1 == text)
            .map(|k| k.0)
            .ok_or_else(|| invalid!("unknown reduction `{text}`"))?;
        let axes = attributes
            .ints("axes")?
            .iter()
            .map(|&a| a.max(0) as usize)
            .collect();
        Ok(Arc::new(Reduce {
            kind,
            axes,
            keep_dims: attributes.boolean("keep_dims")?,
        }))
    }

    fn output_shape(&self, input: &[usize]) -> OpResult<Vec<usize>> {
        if let Some(&axis) = self.axes.iter().find(|&&a| a >= input.len().max(1)) {
            return Err(invalid!("axis {axis} is out of range for {input:?}"));
        }
        Ok(input
            .iter()
            .enumerate()
            .filter_map(
                |(axis, &dim)| match (self.axes.contains(&axis), self.keep_dims) {
                    (true, true) => Some(1),
                    (true, false) => None,
                    (false, _) => Some(dim),
                },
            )
            .collect())
    }

    fn initial(&self) -> f32 {
        match self.kind {
            ReduceKind::Mean | ReduceKind::Sum => 0.0,
            ReduceKind::Max => f32::NEG_INFINITY,
            ReduceKind::Min => f32::INFINITY,
            ReduceKind::Prod => 1.0,
        }
    }

    fn combine(&self, k: &mut Kernel, acc: Value, value: Value) -> Value {
        match self.kind {
            ReduceKind::Mean | ReduceKind::Sum => k.builder.ins().fadd(acc, value),
            ReduceKind::Max => k.builder.ins().fmax(acc, value),
            ReduceKind::Min => k.builder.ins().fmin(acc, value),
            ReduceKind::Prod => k.builder.ins().fmul(acc, value),
        }
    }
}

impl Operator for Reduce {
    fn name(&self) -> &'static str {
        "reduce"
    }

    fn attributes(&self) -> Attributes {
        let text = KINDS
            .iter()
            .find(|k| k.0 == self.kind)
            .map(|k| k.1)
            .unwrap_or("sum");
        Attributes::default()
            .with("kind", Attribute::Str(text.into()))
            .with(
                "axes",
                Attribute::Ints(self.axes.iter().map(|&a| a as i64).collect()),
            )
            .with("keep_dims", Attribute::Bool(self.keep_dims))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let input = inputs.ty(0)?;
        Ok(vec![TensorType::new(
            input.dtype,
            self.output_shape(&input.shape)?,
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let shape = self.output_shape(&input.shape)?;
        let values = input.to_f32_vec();
        let strides = strides_of(&input.shape);
        let kept: Vec<usize> = (0..input.shape.len())
            .filter(|a| !self.axes.contains(a))
            .collect();
        let kept_shape: Vec<usize> = kept.iter().map(|&a| input.shape[a]).collect();
        let kept_strides = strides_of(&kept_shape);
        let out_count: usize = kept_shape.iter().product();
        let mut out = vec![self.initial(); out_count];
        let mut count = 0usize;
        for (flat, &v) in values.iter().enumerate() {
            let mut o = 0;
            for (position, &axis) in kept.iter().enumerate() {
                o += (flat / strides[axis] % input.shape[axis]) * kept_strides[position];
            }
            out[o] = match self.kind {
                ReduceKind::Mean | ReduceKind::Sum => out[o] + v,
                ReduceKind::Max => out[o].max(v),
                ReduceKind::Min => out[o].min(v),
                ReduceKind::Prod => out[o] * v,
            };
            if o == 0 {
                count += 1;
            }
        }
        if self.kind == ReduceKind::Mean {
            out.iter_mut().for_each(|v| *v /= count.max(1) as f32);
        }
        let result = Tensor::from_f32(shape, out);
        Ok(vec![if input.dtype() == DType::F32 {
            result
        } else {
            result.cast(input.dtype())
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        if kernel.inputs[0].ty.dtype != DType::F32 {
            return Err(kernel.error("reduction kernels are f32 only"));
        }
        let shape = kernel.inputs[0].ty.shape.clone();
        let strides = strides_of(&shape);
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let rank = shape.len();
        let kept: Vec<usize> = (0..rank).filter(|a| !self.axes.contains(a)).collect();
        let reduced: Vec<usize> = (0..rank).filter(|a| self.axes.contains(a)).collect();
        let reduced_count: usize = reduced.iter().map(|&a| shape[a]).product();
        let kept_shape: Vec<usize> = kept.iter().map(|&a| shape[a]).collect();
        let kept_strides = strides_of(&kept_shape);
        let last_kept = rank > 0 && kept.last() == Some(&(rank - 1));
        // The vector axis: the last input axis when it is kept, else none (scalar accumulation).
        let (outer, inner) = if last_kept {
            (&kept[..kept.len() - 1], shape[rank - 1])
        } else {
            (&kept[..], 1)
        };
        let outer_loops: Vec<(usize, usize, usize)> = outer
            .iter()
            .enumerate()
            .map(|(p, &a)| (shape[a], strides[a], kept_strides[p]))
            .collect();
        let reduced_loops: Vec<(usize, usize)> =
            reduced.iter().map(|&a| (shape[a], strides[a])).collect();
        let scale = if self.kind == ReduceKind::Mean {
            Some(1.0 / reduced_count.max(1) as f32)
        } else {
            None
        };
        let zero = kernel.iconst(0);
        nest(
            kernel,
            &outer_loops,
            zero,
            zero,
            &mut |k, input_base, output_base| {
                let vector_end = inner / LANES * LANES;
                for (start, count, width) in [
                    (0, vector_end / LANES, LANES),
                    (vector_end, inner - vector_end, 1),
                ] {
                    let ty: Type = if width == LANES {
                        types::F32X4
                    } else {
                        types::F32
                    };
                    k.for_steps(start, count, width, &mut |k, channel| {
                        let var = k.builder.declare_var(ty);
                        let init = k.float_constant(ty, self.initial());
                        k.builder.def_var(var, init);
                        let base = k.builder.ins().iadd(input_base, channel);
                        let pairs: Vec<(usize, usize, usize)> =
                            reduced_loops.iter().map(|&(n, s)| (n, s, 0)).collect();
                        nest(k, &pairs, base, base, &mut |k, offset, _| {
                            let value = k.load(ty, input, offset, 4);
                            let acc = k.builder.use_var(var);
                            let acc = self.combine(k, acc, value);
                            k.builder.def_var(var, acc);
                            Ok(())
                        })?;
                        let mut result = k.builder.use_var(var);
                        if let Some(scale) = scale {
                            let factor = k.float_constant(ty, scale);
                            result = k.builder.ins().fmul(result, factor);
                        }
                        let index = k.builder.ins().iadd(output_base, channel);
                        k.store(result, output, index, 4);
                        Ok(())
                    })?;
                }
                Ok(())
            },
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Nested constant-count loops; each level is (count, input stride, output stride). The body gets
/// the accumulated input and output element offsets.
fn nest(
    kernel: &mut Kernel,
    levels: &[(usize, usize, usize)],
    input_base: Value,
    output_base: Value,
    body: &mut dyn FnMut(&mut Kernel, Value, Value) -> Result<(), CodegenError>,
) -> Result<(), CodegenError> {
    let Some((&(count, input_stride, output_stride), rest)) = levels.split_first() else {
        return body(kernel, input_base, output_base);
    };
    kernel.for_count(count, &mut |k, index| {
        let step_in = k.builder.ins().imul_imm_s(index, input_stride as i64);
        let input = k.builder.ins().iadd(input_base, step_in);
        let step_out = k.builder.ins().imul_imm_s(index, output_stride as i64);
        let output = k.builder.ins().iadd(output_base, step_out);
        nest(k, rest, input, output, body)
    })
}

/// Mean, Sum, Max, Min, Prod with a constant axes operand.
pub fn import_reduce(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let kind = KINDS
        .iter()
        .find(|k| k.2 == node.op)
        .map(|k| k.0)
        .ok_or_else(|| importer.error(node, "not a reduction"))?;
    let keep_dims = NodeAttributes::of(node)
        .boolean_or("keep_dims", false)
        .map_err(|e| importer.error(node, e))?;
    let rank = importer
        .graph
        .value(inputs[0])
        .ty
        .as_ref()
        .map(|t| t.rank());
    let axes_tensor = importer
        .graph
        .constant(inputs[1])
        .map(|c| c.tensor.to_i64_vec());
    let (Some(axes), Some(rank)) = (axes_tensor, rank) else {
        // Type unknown at import time: keep the axes operand, resolved by `ReduceAxes` below.
        return Ok(vec![importer.add(
            node,
            ReduceAxes { kind, keep_dims },
            inputs[..2].to_vec(),
        )]);
    };
    let mut normalized: Vec<usize> = axes
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<OpResult<_>>()
        .map_err(|e| importer.error(node, e))?;
    normalized.sort_unstable();
    normalized.dedup();
    Ok(vec![importer.add(
        node,
        Reduce {
            kind,
            axes: normalized,
            keep_dims,
        },
        vec![inputs[0]],
    )])
}

/// A reduction whose axes are still an operand (input 1); shape inference needs them constant.
/// The fold pass rewrites it to [`Reduce`] once they are.
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceAxes {
    pub kind: ReduceKind,
    pub keep_dims: bool,
}

impl ReduceAxes {
    pub fn resolve(&self, input: &TensorType, axes: &Tensor) -> OpResult<Reduce> {
        let mut normalized: Vec<usize> = axes
            .to_i64_vec()
            .iter()
            .map(|&a| normalize_axis(a, input.rank()))
            .collect::<OpResult<_>>()?;
        normalized.sort_unstable();
        normalized.dedup();
        Ok(Reduce {
            kind: self.kind,
            axes: normalized,
            keep_dims: self.keep_dims,
        })
    }

    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let text = attributes.string("kind")?;
        let kind = KINDS
            .iter()
            .find(|k| k.1 == text)
            .map(|k| k.0)
            .ok_or_else(|| invalid!("unknown reduction `{text}`"))?;
        Ok(Arc::new(ReduceAxes {
            kind,
            keep_dims: attributes.boolean("keep_dims")?,
        }))
    }
}

impl Operator for ReduceAxes {
    fn name(&self) -> &'static str {
        "reduce_axes"
    }

    fn attributes(&self) -> Attributes {
        let text = KINDS
            .iter()
            .find(|k| k.0 == self.kind)
            .map(|k| k.1)
            .unwrap_or("sum");
        Attributes::default()
            .with("kind", Attribute::Str(text.into()))
            .with("keep_dims", Attribute::Bool(self.keep_dims))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let reduce = self.resolve(inputs.ty(0)?, inputs.constant(1, "reduction axes")?)?;
        reduce.infer(&InputFacts {
            types: vec![inputs.ty(0)?],
            constants: vec![None],
        })
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        self.resolve(&inputs[0].tensor_type(), inputs[1])?
            .evaluate(&inputs[..1])
    }

    fn specialize(&self, inputs: &InputFacts) -> OpResult<Option<Specialized>> {
        let Some(axes) = inputs.constants.get(1).copied().flatten() else {
            return Ok(None);
        };
        Ok(Some(Specialized {
            op: Arc::new(self.resolve(inputs.ty(0)?, axes)?),
            inputs: vec![0],
        }))
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        Err(kernel.error("reduction axes must be known at compile time"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub const FAMILY: Family = Family {
    ir: &[
        ("reduce", Reduce::parse),
        ("reduce_axes", ReduceAxes::parse),
    ],
    tensorflow: &[
        ("Mean", import_reduce),
        ("Sum", import_reduce),
        ("Max", import_reduce),
        ("Min", import_reduce),
        ("Prod", import_reduce),
    ],
};
