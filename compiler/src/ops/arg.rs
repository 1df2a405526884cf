//! ArgMax and ArgMin over one constant axis.
//!
//! Semantics (TensorFlow's CPU kernels, an Eigen reduction taken in index order):
//! - ties go to the lowest index;
//! - NaN is never picked over a number: NaNs are skipped, and a slice of NaNs only gives 0.
//!   (TF.js's CPU kernel differs only when element 0 is NaN: it then returns 0.)
//!
//! The result is int32 whatever `output_type` asks: compiled code uses 32-bit integers, so an
//! int64 `output_type` (TensorFlow's default) is produced as int32.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};

use super::gather::scalar_constant;
use super::{Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::{vector_type, Kernel, LANES};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgKind {
    Max,
    Min,
}

/// ArgMax / ArgMin of input 0 along `axis` (negative counts from the end); int32 result.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub kind: ArgKind,
    pub axis: i64,
}

/// (outer, axis size, inner) of a resolved arg reduction, and the output shape.
struct ArgLayout {
    outer: usize,
    count: usize,
    inner: usize,
    shape: Vec<usize>,
}

impl Arg {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let kind = match a.string("kind")? {
            "max" => ArgKind::Max,
            "min" => ArgKind::Min,
            other => return Err(invalid!("unknown arg reduction `{other}` (max or min)")),
        };
        Ok(Arc::new(Arg {
            kind,
            axis: a.int("axis")?,
        }))
    }

    fn layout(&self, shape: &[usize]) -> OpResult<ArgLayout> {
        let axis = super::axis_of(self.axis, shape.len())?;
        if shape[axis] == 0 {
            return Err(invalid!("the reduction axis {axis} of {shape:?} is empty"));
        }
        let mut out = shape.to_vec();
        out.remove(axis);
        Ok(ArgLayout {
            outer: shape[..axis].iter().product(),
            count: shape[axis],
            inner: shape[axis + 1..].iter().product(),
            shape: out,
        })
    }

    /// Whether `value` replaces `best` (which came earlier): strictly better, or `best` is NaN
    /// and `value` is not.
    fn better_f32(&self, value: f32, best: f32) -> bool {
        let strictly = match self.kind {
            ArgKind::Max => value > best,
            ArgKind::Min => value < best,
        };
        strictly || (best.is_nan() && !value.is_nan())
    }

    /// The kernel's version of [`Arg::better_f32`] (and of `>`/`<` for integers): a lane mask.
    fn better(&self, k: &mut Kernel, dtype: DType, value: Value, best: Value) -> Value {
        match dtype {
            DType::F32 => {
                let cc = match self.kind {
                    ArgKind::Max => FloatCC::GreaterThan,
                    ArgKind::Min => FloatCC::LessThan,
                };
                let strictly = k.builder.ins().fcmp(cc, value, best);
                let best_nan = k.builder.ins().fcmp(FloatCC::Unordered, best, best);
                let value_number = k.builder.ins().fcmp(FloatCC::Ordered, value, value);
                let replaces_nan = k.builder.ins().band(best_nan, value_number);
                k.builder.ins().bor(strictly, replaces_nan)
            }
            _ => {
                let cc = match self.kind {
                    ArgKind::Max => IntCC::SignedGreaterThan,
                    ArgKind::Min => IntCC::SignedLessThan,
                };
                k.builder.ins().icmp(cc, value, best)
            }
        }
    }
}

impl Operator for Arg {
    fn name(&self) -> &'static str {
        "arg"
    }

    fn attributes(&self) -> Attributes {
        let kind = match self.kind {
            ArgKind::Max => "max",
            ArgKind::Min => "min",
        };
        Attributes::default()
            .with("kind", Attribute::Str(kind.into()))
            .with("axis", Attribute::Int(self.axis))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let input = inputs.ty(0)?;
        if !matches!(input.dtype, DType::F32 | DType::I32) {
            return Err(invalid!(
                "arg max/min needs f32 or i32 input, got {}",
                input.dtype.short_name()
            ));
        }
        Ok(vec![TensorType::new(
            DType::I32,
            self.layout(&input.shape)?.shape,
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let layout = self.layout(&input.shape)?;
        let at = |o: usize, j: usize, i: usize| (o * layout.count + j) * layout.inner + i;
        let mut out = Vec::with_capacity(layout.outer * layout.inner);
        for o in 0..layout.outer {
            for i in 0..layout.inner {
                let mut best_index = 0;
                match &input.data {
                    TensorData::F32(x) => {
                        let mut best = x[at(o, 0, i)];
                        for j in 1..layout.count {
                            let value = x[at(o, j, i)];
                            if self.better_f32(value, best) {
                                best = value;
                                best_index = j;
                            }
                        }
                    }
                    TensorData::I32(x) => {
                        let mut best = x[at(o, 0, i)];
                        for j in 1..layout.count {
                            let value = x[at(o, j, i)];
                            let better = match self.kind {
                                ArgKind::Max => value > best,
                                ArgKind::Min => value < best,
                            };
                            if better {
                                best = value;
                                best_index = j;
                            }
                        }
                    }
                    _ => return Err(invalid!("arg max/min needs f32 or i32 input")),
                }
                out.push(best_index as i32);
            }
        }
        Ok(vec![Tensor::from_i32(layout.shape, out)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input_ty = kernel.inputs[0].ty.clone();
        let dtype = input_ty.dtype;
        if !matches!(dtype, DType::F32 | DType::I32) {
            return Err(kernel.error("arg max/min kernels take f32 or i32"));
        }
        let ArgLayout {
            outer,
            count,
            inner,
            ..
        } = self
            .layout(&input_ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        // Vectorised across the inner dimension (one lane per output), scalar for the tail.
        let vector_end = if inner >= LANES {
            inner / LANES * LANES
        } else {
            0
        };
        let runs = [
            (0usize, vector_end / LANES, LANES),
            (vector_end, inner - vector_end, 1),
        ];
        kernel.for_count(outer, &mut |k, o| {
            let input_row = k.builder.ins().imul_imm_s(o, (count * inner) as i64);
            let output_row = k.builder.ins().imul_imm_s(o, inner as i64);
            for (start, steps, width) in runs {
                let (value_ty, index_ty): (Type, Type) = if width == LANES {
                    (vector_type(dtype), types::I32X4)
                } else {
                    (crate::codegen::kernel::scalar_type(dtype), types::I32)
                };
                k.for_steps(start, steps, width, &mut |k, i| {
                    let first = k.builder.ins().iadd(input_row, i);
                    let best = k.builder.declare_var(value_ty);
                    let best_index = k.builder.declare_var(index_ty);
                    let initial = k.load(value_ty, input, first, 4);
                    k.builder.def_var(best, initial);
                    let zero = k.int_constant(index_ty, 0);
                    k.builder.def_var(best_index, zero);
                    k.for_steps(1, count - 1, 1, &mut |k, j| {
                        let offset = k.builder.ins().imul_imm_s(j, inner as i64);
                        let position = k.builder.ins().iadd(first, offset);
                        let value = k.load(value_ty, input, position, 4);
                        let current = k.builder.use_var(best);
                        let mask = self.better(k, dtype, value, current);
                        let j32 = k.builder.ins().ireduce(types::I32, j);
                        let candidate = if width == LANES {
                            k.builder.ins().splat(types::I32X4, j32)
                        } else {
                            j32
                        };
                        let index = k.builder.use_var(best_index);
                        let (next, next_index) = if width == LANES {
                            let little = MemFlagsData::new().with_endianness(Endianness::Little);
                            let value_mask = if dtype == DType::F32 {
                                k.builder.ins().bitcast(types::F32X4, little, mask)
                            } else {
                                mask
                            };
                            (
                                k.builder.ins().bitselect(value_mask, value, current),
                                k.builder.ins().bitselect(mask, candidate, index),
                            )
                        } else {
                            (
                                k.builder.ins().select(mask, value, current),
                                k.builder.ins().select(mask, candidate, index),
                            )
                        };
                        k.builder.def_var(best, next);
                        k.builder.def_var(best_index, next_index);
                        Ok(())
                    })?;
                    let result = k.builder.use_var(best_index);
                    let destination = k.builder.ins().iadd(output_row, i);
                    k.store(result, output, destination, 4);
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// ArgMax / ArgMin(input, dimension) with a constant dimension; `output_type` int32 or int64
/// (both produce int32).
pub fn import_arg(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let kind = if node.op == "ArgMin" {
        ArgKind::Min
    } else {
        ArgKind::Max
    };
    let attributes = NodeAttributes::of(node);
    if attributes.has("output_type") {
        let output_type = attributes.dtype("output_type").map_err(node_error(node))?;
        if !matches!(output_type, DType::I32 | DType::I64) {
            return Err(importer.error(
                node,
                format!(
                    "output_type must be int32 or int64, got {}",
                    output_type.short_name()
                ),
            ));
        }
    }
    let axis = scalar_constant(importer, node, inputs[1], "the dimension (input 1)")?;
    Ok(vec![importer.add(
        node,
        Arg { kind, axis },
        vec![inputs[0]],
    )])
}

pub const FAMILY: Family = Family {
    ir: &[("arg", Arg::parse)],
    tensorflow: &[("ArgMax", import_arg), ("ArgMin", import_arg)],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::data_type;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn arg_imports_kind_axis_and_output_type() {
        for (op, kind, output_type) in [
            ("ArgMax", ArgKind::Max, Some(data_type::INT64)),
            ("ArgMin", ArgKind::Min, Some(data_type::INT32)),
            ("ArgMax", ArgKind::Max, None),
        ] {
            let mut graph = Graph::new();
            let x = graph.add_input("x", None);
            let axis = graph.add_constant("axis", Tensor::from_i32(vec![], vec![-2]), None);
            let attributes: Vec<(&str, attr_value::Value)> = output_type
                .map(|t| ("output_type", attr_value::Value::Type(t)))
                .into_iter()
                .collect();
            let mut importer = Importer::new(&mut graph);
            import_arg(&mut importer, &node_def("a", op, &attributes), &[x, axis]).unwrap();
            let op = only_op(&graph);
            assert_eq!(
                op.as_any().downcast_ref::<Arg>(),
                Some(&Arg { kind, axis: -2 })
            );
            assert_eq!(
                Arg::parse(&op.attributes()).unwrap().attributes(),
                op.attributes()
            );
        }
    }

    #[test]
    fn arg_import_errors_name_the_node() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", None);
        let axis = graph.add_input("axis", None);
        let constant_axis = graph.add_constant("c", Tensor::from_i32(vec![], vec![0]), None);
        let mut importer = Importer::new(&mut graph);
        let error = import_arg(&mut importer, &node_def("a", "ArgMax", &[]), &[x, axis])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"a\"") && error.contains("compile-time constant"),
            "{error}"
        );
        let node = node_def(
            "a",
            "ArgMax",
            &[("output_type", attr_value::Value::Type(data_type::FLOAT))],
        );
        let error = import_arg(&mut importer, &node, &[x, constant_axis])
            .unwrap_err()
            .to_string();
        assert!(error.contains("output_type"), "{error}");
    }

    #[test]
    fn arg_reference_ties_nan_and_type_rule() {
        let max = Arg {
            kind: ArgKind::Max,
            axis: -1,
        };
        let min = Arg {
            kind: ArgKind::Min,
            axis: 0,
        };
        let nan = f32::NAN;
        let x = Tensor::from_f32(
            vec![4, 3],
            vec![
                1.0, 3.0, 3.0, // tie: lowest index
                nan, 2.0, 1.0, // NaN first: skipped
                nan, nan, nan, // all NaN: 0
                -1.0, nan, -1.0,
            ],
        );
        assert_eq!(
            max.evaluate(&[&x]).unwrap()[0],
            Tensor::from_i32(vec![4], vec![1, 1, 0, 0])
        );
        assert_eq!(
            min.evaluate(&[&x]).unwrap()[0],
            Tensor::from_i32(vec![3], vec![3, 1, 3])
        );
        let ty = |shape: Vec<usize>| TensorType::new(DType::F32, shape);
        let infer = |op: &Arg, t: &TensorType| {
            op.infer(&InputFacts {
                types: vec![t],
                constants: vec![None],
            })
        };
        assert_eq!(
            infer(&max, &ty(vec![2, 5])).unwrap()[0],
            TensorType::new(DType::I32, vec![2])
        );
        assert!(infer(&max, &ty(vec![])).is_err());
        assert!(infer(&max, &ty(vec![3, 0])).is_err());
        assert!(infer(
            &Arg {
                kind: ArgKind::Max,
                axis: 2
            },
            &ty(vec![3, 2])
        )
        .is_err());
        assert!(infer(&max, &TensorType::new(DType::Bool, vec![3])).is_err());
    }
}
