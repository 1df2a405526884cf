//! Cumsum along one constant axis, with TensorFlow's `exclusive` and `reverse`, for f32 and i32
//! (i32 sums wrap). Sums run in index order (from the end when reversed) in both the kernel and
//! the reference, so results agree bit for bit.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{InstBuilder, Type};

use super::gather::scalar_constant;
use super::{Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::{scalar_type, vector_type, Kernel, LANES};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

/// Cumsum of input 0 along `axis` (negative counts from the end).
#[derive(Clone, Debug, PartialEq)]
pub struct Cumsum {
    pub axis: i64,
    pub exclusive: bool,
    pub reverse: bool,
}

impl Cumsum {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Cumsum {
            axis: a.int("axis")?,
            exclusive: a.boolean("exclusive")?,
            reverse: a.boolean("reverse")?,
        }))
    }

    /// (outer, axis size, inner).
    fn layout(&self, shape: &[usize]) -> OpResult<(usize, usize, usize)> {
        let axis = super::axis_of(self.axis, shape.len())?;
        Ok((
            shape[..axis].iter().product(),
            shape[axis],
            shape[axis + 1..].iter().product(),
        ))
    }

    /// The positions along the axis in summing order.
    fn order(&self, n: usize) -> Vec<usize> {
        if self.reverse {
            (0..n).rev().collect()
        } else {
            (0..n).collect()
        }
    }
}

impl Operator for Cumsum {
    fn name(&self) -> &'static str {
        "cumsum"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default()
            .with("axis", Attribute::Int(self.axis))
            .with("exclusive", Attribute::Bool(self.exclusive))
            .with("reverse", Attribute::Bool(self.reverse))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let input = inputs.ty(0)?;
        if !matches!(input.dtype, DType::F32 | DType::I32) {
            return Err(invalid!(
                "cumsum needs f32 or i32 input, got {}",
                input.dtype.short_name()
            ));
        }
        self.layout(&input.shape)?;
        Ok(vec![input.clone()])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let (outer, n, inner) = self.layout(&input.shape)?;
        let at = |o: usize, j: usize, i: usize| (o * n + j) * inner + i;
        fn scan<T: Copy + Default>(
            x: &[T],
            op: &Cumsum,
            (outer, n, inner): (usize, usize, usize),
            at: impl Fn(usize, usize, usize) -> usize,
            add: impl Fn(T, T) -> T,
        ) -> Vec<T> {
            let mut out = vec![T::default(); x.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let mut sum = T::default();
                    for j in op.order(n) {
                        let value = x[at(o, j, i)];
                        if op.exclusive {
                            out[at(o, j, i)] = sum;
                            sum = add(sum, value);
                        } else {
                            sum = add(sum, value);
                            out[at(o, j, i)] = sum;
                        }
                    }
                }
            }
            out
        }
        let data = match &input.data {
            TensorData::F32(x) => {
                TensorData::F32(scan(x, self, (outer, n, inner), at, |a, b| a + b))
            }
            TensorData::I32(x) => TensorData::I32(scan(x, self, (outer, n, inner), at, |a, b| {
                a.wrapping_add(b)
            })),
            _ => return Err(invalid!("cumsum needs f32 or i32 input")),
        };
        Ok(vec![Tensor {
            shape: input.shape.clone(),
            data,
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input_ty = kernel.inputs[0].ty.clone();
        let dtype = input_ty.dtype;
        if !matches!(dtype, DType::F32 | DType::I32) {
            return Err(kernel.error("cumsum kernels take f32 or i32"));
        }
        let (outer, n, inner) = self
            .layout(&input_ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        // Vectorised across the inner dimension, scalar for the tail.
        let vector_end = inner / LANES * LANES;
        let runs = [
            (0usize, vector_end / LANES, LANES),
            (vector_end, inner - vector_end, 1),
        ];
        kernel.for_count(outer, &mut |k, o| {
            let row = k.builder.ins().imul_imm_s(o, (n * inner) as i64);
            for (start, steps, width) in runs {
                let ty: Type = if width == LANES {
                    vector_type(dtype)
                } else {
                    scalar_type(dtype)
                };
                k.for_steps(start, steps, width, &mut |k, i| {
                    let first = k.builder.ins().iadd(row, i);
                    let sum = k.builder.declare_var(ty);
                    let zero = if dtype == DType::F32 {
                        k.float_constant(ty, 0.0)
                    } else {
                        k.int_constant(ty, 0)
                    };
                    k.builder.def_var(sum, zero);
                    k.for_count(n, &mut |k, step| {
                        let j = if self.reverse {
                            let last = k.iconst(n as i64 - 1);
                            k.builder.ins().isub(last, step)
                        } else {
                            step
                        };
                        let offset = k.builder.ins().imul_imm_s(j, inner as i64);
                        let position = k.builder.ins().iadd(first, offset);
                        let value = k.load(ty, input, position, 4);
                        let before = k.builder.use_var(sum);
                        let after = if dtype == DType::F32 {
                            k.builder.ins().fadd(before, value)
                        } else {
                            k.builder.ins().iadd(before, value)
                        };
                        k.builder.def_var(sum, after);
                        let result = if self.exclusive { before } else { after };
                        k.store(result, output, position, 4);
                        Ok(())
                    })
                })?;
            }
            Ok(())
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Cumsum(x, axis) with a constant axis; attributes `exclusive` and `reverse` (default false).
pub fn import_cumsum(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    let exclusive = attributes.boolean_or("exclusive", false).map_err(fail)?;
    let reverse = attributes.boolean_or("reverse", false).map_err(fail)?;
    let axis = scalar_constant(importer, node, inputs[1], "the axis (input 1)")?;
    let op = Cumsum {
        axis,
        exclusive,
        reverse,
    };
    Ok(vec![importer.add(node, op, vec![inputs[0]])])
}

pub const FAMILY: Family = Family {
    ir: &[("cumsum", Cumsum::parse)],
    tensorflow: &[("Cumsum", import_cumsum)],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn cumsum_imports_axis_exclusive_and_reverse() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", None);
        let axis = graph.add_constant("axis", Tensor::from_i32(vec![], vec![-1]), None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def(
            "c",
            "Cumsum",
            &[
                ("exclusive", attr_value::Value::B(true)),
                ("reverse", attr_value::Value::B(true)),
            ],
        );
        import_cumsum(&mut importer, &node, &[x, axis]).unwrap();
        let op = only_op(&graph);
        assert_eq!(
            op.as_any().downcast_ref::<Cumsum>(),
            Some(&Cumsum {
                axis: -1,
                exclusive: true,
                reverse: true
            })
        );
        assert_eq!(
            Cumsum::parse(&op.attributes()).unwrap().attributes(),
            op.attributes()
        );
        let mut importer = Importer::new(&mut graph);
        let node = node_def("c", "Cumsum", &[("reverse", attr_value::Value::I(1))]);
        let error = import_cumsum(&mut importer, &node, &[x, axis])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"c\"") && error.contains("reverse"),
            "{error}"
        );
        let error = import_cumsum(&mut importer, &node_def("c", "Cumsum", &[]), &[x, x])
            .unwrap_err()
            .to_string();
        assert!(error.contains("compile-time constant"), "{error}");
    }

    #[test]
    fn cumsum_reference_variants() {
        let x = Tensor::from_i32(vec![4], vec![1, 2, 3, 4]);
        let run = |exclusive, reverse| {
            Cumsum {
                axis: 0,
                exclusive,
                reverse,
            }
            .evaluate(&[&x])
            .unwrap()[0]
                .to_i64_vec()
        };
        assert_eq!(run(false, false), vec![1, 3, 6, 10]);
        assert_eq!(run(true, false), vec![0, 1, 3, 6]);
        assert_eq!(run(false, true), vec![10, 9, 7, 4]);
        assert_eq!(run(true, true), vec![9, 7, 4, 0]);
    }
}
