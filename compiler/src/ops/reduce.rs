//! Reductions over constant axes: mean, sum, max, min, product over f32; all and any over bools
//! (bool in, bool out: TensorFlow's All and Any, which take only bools). An empty reduction
//! gives the kind's identity (all: true, any: false), as in TensorFlow.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use cranelift_frontend::Variable;

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
    All,
    Any,
}

const KINDS: &[(ReduceKind, &str, &str)] = &[
    (ReduceKind::Mean, "mean", "Mean"),
    (ReduceKind::Sum, "sum", "Sum"),
    (ReduceKind::Max, "max", "Max"),
    (ReduceKind::Min, "min", "Min"),
    (ReduceKind::Prod, "prod", "Prod"),
    (ReduceKind::All, "all", "All"),
    (ReduceKind::Any, "any", "Any"),
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
            ReduceKind::Prod | ReduceKind::All => 1.0,
            ReduceKind::Any => 0.0,
        }
    }

    /// All and Any: logical reductions over bools.
    fn is_logical(&self) -> bool {
        matches!(self.kind, ReduceKind::All | ReduceKind::Any)
    }

    /// The input dtype this kind accepts.
    fn check_dtype(&self, dtype: DType) -> OpResult<()> {
        if self.is_logical() != (dtype == DType::Bool) {
            return Err(invalid!(
                "{:?} reduction of a {} tensor: all and any take bools, the others numbers",
                self.kind,
                dtype.short_name()
            ));
        }
        Ok(())
    }

    /// The int32 identity of the reduction.
    fn initial_i32(&self) -> i32 {
        match self.kind {
            ReduceKind::Max => i32::MIN,
            ReduceKind::Min => i32::MAX,
            ReduceKind::Prod => 1,
            _ => 0,
        }
    }

    /// One int32 step, wrapping as TensorFlow's int32 arithmetic does.
    fn combine_i32(&self, acc: i32, value: i32) -> i32 {
        match self.kind {
            ReduceKind::Max => acc.max(value),
            ReduceKind::Min => acc.min(value),
            ReduceKind::Prod => acc.wrapping_mul(value),
            _ => acc.wrapping_add(value),
        }
    }

    fn combine(&self, k: &mut Kernel, acc: Value, value: Value) -> Value {
        let integer = k.builder.func.dfg.value_type(acc).lane_type() == types::I32;
        if integer {
            return match self.kind {
                ReduceKind::Max => k.builder.ins().smax(acc, value),
                ReduceKind::Min => k.builder.ins().smin(acc, value),
                ReduceKind::Prod => k.builder.ins().imul(acc, value),
                _ => k.builder.ins().iadd(acc, value),
            };
        }
        match self.kind {
            ReduceKind::Mean | ReduceKind::Sum => k.builder.ins().fadd(acc, value),
            ReduceKind::Max => k.builder.ins().fmax(acc, value),
            ReduceKind::Min => k.builder.ins().fmin(acc, value),
            ReduceKind::Prod => k.builder.ins().fmul(acc, value),
            ReduceKind::All => k.builder.ins().band(acc, value),
            ReduceKind::Any => k.builder.ins().bor(acc, value),
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
        self.check_dtype(input.dtype)?;
        Ok(vec![TensorType::new(
            input.dtype,
            self.output_shape(&input.shape)?,
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let shape = self.output_shape(&input.shape)?;
        self.check_dtype(input.dtype())?;
        if input.dtype() == DType::I32 {
            return Ok(vec![self.evaluate_i32(input, shape)]);
        }
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
                // NaN propagates, as in TensorFlow (f32::max and min would drop it).
                ReduceKind::Max | ReduceKind::Min if out[o].is_nan() || v.is_nan() => f32::NAN,
                ReduceKind::Max => out[o].max(v),
                ReduceKind::Min => out[o].min(v),
                ReduceKind::Prod => out[o] * v,
                ReduceKind::All => f32::from(out[o] != 0.0 && v != 0.0),
                ReduceKind::Any => f32::from(out[o] != 0.0 || v != 0.0),
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
        /// Vectors (or int32 elements) reduced side by side, each with its own accumulator.
        const BLOCK: usize = 8;
        let dtype = kernel.inputs[0].ty.dtype;
        let logical = self.is_logical();
        let accepted = if logical {
            dtype == DType::Bool
        } else {
            matches!(dtype, DType::F32 | DType::I32)
        };
        if !accepted {
            return Err(kernel.error(format!(
                "{:?} reduction kernels do not take {}",
                self.kind,
                dtype.short_name()
            )));
        }
        if dtype == DType::I32 && i32::try_from(kernel.inputs[0].ty.element_count()).is_err() {
            return Err(kernel.error("int32 reductions of more than 2^31 elements"));
        }
        // Bools are bytes (0 or 1): sixteen to a vector, combined with and/or. int32 runs one
        // element at a time (the int32 mean divides, which has no vector instruction).
        let (vector, scalar, lanes, size) = match dtype {
            DType::Bool => (types::I8X16, types::I8, 16, 1),
            DType::I32 => (types::I32, types::I32, 1, 4),
            _ => (types::F32X4, types::F32, LANES, 4),
        };
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
        let outer_loops: Vec<(usize, i64, i64)> = outer
            .iter()
            .enumerate()
            .map(|(p, &a)| (shape[a], strides[a] as i64, kept_strides[p] as i64))
            .collect();
        let reduced_loops: Vec<(usize, usize)> =
            reduced.iter().map(|&a| (shape[a], strides[a])).collect();
        let scale = if self.kind == ReduceKind::Mean {
            Some(1.0 / reduced_count.max(1) as f32)
        } else {
            None
        };
        let pairs: Vec<(usize, i64, i64)> = reduced_loops
            .iter()
            .map(|&(n, s)| (n, s as i64, 0))
            .collect();
        // Reduces `width` adjacent groups of `ty` (vectors, or single elements) starting at
        // channel `channel`, each in its own accumulator: independent chains, so the adds do not
        // wait on each other, and each step of the reduced axes reads `width` adjacent groups.
        let reduce_block = |k: &mut Kernel,
                            input_base: Value,
                            output_base: Value,
                            channel: Value,
                            ty: Type,
                            step: usize,
                            width: usize|
         -> Result<(), CodegenError> {
            let init = match dtype {
                DType::Bool => k.int_constant(ty, self.initial() as i64),
                DType::I32 => k.int_constant(ty, self.initial_i32() as i64),
                _ => k.float_constant(ty, self.initial()),
            };
            let accumulators: Vec<Variable> = (0..width)
                .map(|_| {
                    let var = k.builder.declare_var(ty);
                    k.builder.def_var(var, init);
                    var
                })
                .collect();
            let base = k.builder.ins().iadd(input_base, channel);
            k.for_nest(&pairs, base, base, &mut |k, offset, _| {
                for (group, &var) in accumulators.iter().enumerate() {
                    let at = k.builder.ins().iadd_imm_s(offset, (group * step) as i64);
                    let value = k.load(ty, input, at, size);
                    let acc = k.builder.use_var(var);
                    let acc = self.combine(k, acc, value);
                    k.builder.def_var(var, acc);
                }
                Ok(())
            })?;
            for (group, &var) in accumulators.iter().enumerate() {
                let mut result = k.builder.use_var(var);
                if dtype == DType::I32 && self.kind == ReduceKind::Mean {
                    // Truncating division by a positive constant: no trap possible.
                    let count = reduced_count.max(1) as i64;
                    result = k.builder.ins().sdiv_imm_s(result, count);
                } else if let Some(scale) = scale {
                    let factor = k.float_constant(ty, scale);
                    result = k.builder.ins().fmul(result, factor);
                }
                let index = k.builder.ins().iadd(output_base, channel);
                let index = k.builder.ins().iadd_imm_s(index, (group * step) as i64);
                k.store(result, output, index, size);
            }
            Ok(())
        };
        let zero = kernel.iconst(0);
        kernel.for_nest(
            &outer_loops,
            zero,
            zero,
            &mut |k, input_base, output_base| {
                // Blocks of up to BLOCK vectors, shared among the threads (every output element
                // is reduced by one thread, in the same order whatever their number), then the
                // channels left over one by one, by one thread.
                // Half-width blocks when full ones would be too few to share (a squeeze-and-
                // excite mean of 32 channels is one full block). Each channel is still summed
                // alone in the same order, so the width changes no result.
                let vectors = inner / lanes;
                let block = if vectors >= 4 * BLOCK {
                    BLOCK
                } else {
                    BLOCK / 2
                };
                let (full, rest) = (vectors / block, vectors % block);
                let groups = [
                    (0, full, block, vector, lanes),
                    (
                        full * block * lanes,
                        usize::from(rest > 0),
                        rest,
                        vector,
                        lanes,
                    ),
                    (
                        vectors * lanes,
                        usize::from(inner % lanes > 0),
                        inner % lanes,
                        scalar,
                        1,
                    ),
                ];
                for (first, blocks, width, ty, step) in groups {
                    if blocks == 0 || width == 0 {
                        continue;
                    }
                    k.for_split(blocks, &mut |k, block| {
                        let channel = k.builder.ins().imul_imm_s(block, (width * step) as i64);
                        let channel = k.builder.ins().iadd_imm_s(channel, first as i64);
                        reduce_block(k, input_base, output_base, channel, ty, step, width)
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

impl Reduce {
    /// int32 reductions in int32: sums and products wrap, the mean is the sum divided with
    /// truncation, as in TensorFlow.
    fn evaluate_i32(&self, input: &Tensor, shape: Vec<usize>) -> Tensor {
        let values = input.to_i64_vec();
        let strides = strides_of(&input.shape);
        let kept: Vec<usize> = (0..input.shape.len())
            .filter(|a| !self.axes.contains(a))
            .collect();
        let kept_shape: Vec<usize> = kept.iter().map(|&a| input.shape[a]).collect();
        let kept_strides = strides_of(&kept_shape);
        let mut out = vec![self.initial_i32(); kept_shape.iter().product()];
        for (flat, &v) in values.iter().enumerate() {
            let mut o = 0;
            for (position, &axis) in kept.iter().enumerate() {
                o += (flat / strides[axis] % input.shape[axis]) * kept_strides[position];
            }
            out[o] = self.combine_i32(out[o], v as i32);
        }
        if self.kind == ReduceKind::Mean {
            let count: usize = self.axes.iter().map(|&a| input.shape[a]).product();
            let count = count.max(1) as i32;
            out.iter_mut().for_each(|v| *v = v.wrapping_div(count));
        }
        Tensor::from_i32(shape, out)
    }
}

/// Mean, Sum, Max, Min, Prod, All, Any with a constant axes operand.
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
        ("All", import_reduce),
        ("Any", import_reduce),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn all_and_any_import_as_logical_reductions() {
        for (op_name, kind) in [("All", ReduceKind::All), ("Any", ReduceKind::Any)] {
            let mut graph = Graph::new();
            let x = graph.add_input("x", Some(TensorType::new(DType::Bool, vec![2, 3, 4])));
            let axes = graph.add_constant("axes", Tensor::from_i32(vec![2], vec![-1, 0]), None);
            let mut importer = Importer::new(&mut graph);
            let node = node_def("r", op_name, &[("keep_dims", attr_value::Value::B(true))]);
            import_reduce(&mut importer, &node, &[x, axes]).unwrap();
            let op = only_op(&graph);
            let expected = Reduce {
                kind,
                axes: vec![0, 2],
                keep_dims: true,
            };
            assert_eq!(op.as_any().downcast_ref::<Reduce>(), Some(&expected));
            assert_eq!(
                Reduce::parse(&op.attributes()).unwrap().attributes(),
                op.attributes()
            );
        }
    }

    #[test]
    fn logical_reductions_of_nothing_are_their_identities() {
        let empty = Tensor::from_bool(vec![2, 0], vec![]);
        for (kind, identity) in [(ReduceKind::All, true), (ReduceKind::Any, false)] {
            let op = Reduce {
                kind,
                axes: vec![1],
                keep_dims: false,
            };
            assert_eq!(
                op.evaluate(&[&empty]).unwrap()[0],
                Tensor::from_bool(vec![2], vec![identity; 2])
            );
        }
    }
}
