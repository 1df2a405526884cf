//! OneHot: `on_value` where the index equals the position along the new axis, `off_value`
//! elsewhere. An index outside `[0, depth)` (negative ones included) gives a row of `off_value`,
//! as in TensorFlow. Indices are only compared, never used as addresses.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::InstBuilder;

use super::gather::{load_index, scalar_constant};
use super::{Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::{scalar_type, Kernel};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

/// OneHot(indices, on_value, off_value) with constant `depth`; the new axis of size `depth` goes
/// at `axis` of the output (-1: last).
#[derive(Clone, Debug, PartialEq)]
pub struct OneHot {
    pub depth: usize,
    pub axis: i64,
}

impl OneHot {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let depth = a.int("depth")?;
        if depth < 0 {
            return Err(invalid!("depth {depth} must not be negative"));
        }
        Ok(Arc::new(OneHot {
            depth: depth as usize,
            axis: a.int("axis")?,
        }))
    }

    /// (outer, inner, output shape) for indices of shape `indices`.
    fn layout(&self, indices: &[usize]) -> OpResult<(usize, usize, Vec<usize>)> {
        let rank = indices.len() as i64;
        let axis = match self.axis {
            -1 => rank,
            axis if (0..=rank).contains(&axis) => axis,
            axis => {
                return Err(invalid!(
                    "axis {axis} is out of range for indices of rank {rank} (-1 or 0..={rank})"
                ))
            }
        } as usize;
        let mut shape = indices.to_vec();
        shape.insert(axis, self.depth);
        Ok((
            indices[..axis].iter().product(),
            indices[axis..].iter().product(),
            shape,
        ))
    }
}

impl Operator for OneHot {
    fn name(&self) -> &'static str {
        "one_hot"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default()
            .with("depth", Attribute::Int(self.depth as i64))
            .with("axis", Attribute::Int(self.axis))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(3)?;
        let (indices, on, off) = (inputs.ty(0)?, inputs.ty(1)?, inputs.ty(2)?);
        if !matches!(indices.dtype, DType::I32 | DType::I64) {
            return Err(invalid!(
                "one-hot indices must be int32 or int64, got {}",
                indices.dtype.short_name()
            ));
        }
        if on.element_count() != 1 || off.element_count() != 1 || on.dtype != off.dtype {
            return Err(invalid!(
                "on_value and off_value must be scalars of one dtype, got {on} and {off}"
            ));
        }
        let (_, _, shape) = self.layout(&indices.shape)?;
        Ok(vec![TensorType::new(on.dtype, shape)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (indices, on, off) = (inputs[0], inputs[1], inputs[2]);
        let (outer, inner, shape) = self.layout(&indices.shape)?;
        let values = indices.to_i64_vec();
        // Positions of `on` and `off` in a two-element source, picked per output element.
        let mut picks = Vec::with_capacity(outer * self.depth * inner);
        for o in 0..outer {
            for d in 0..self.depth {
                for i in 0..inner {
                    picks.push(if values[o * inner + i] == d as i64 {
                        0
                    } else {
                        1
                    });
                }
            }
        }
        let both = super::shape::concat_data(&[&on.data, &off.data], on.dtype());
        Ok(vec![Tensor {
            shape,
            data: super::shape::gather(&both, &picks),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let indices_ty = kernel.inputs[0].ty.clone();
        let dtype = kernel.inputs[1].ty.dtype;
        let (outer, inner, _) = self
            .layout(&indices_ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        let size = dtype.size_of();
        let ty = scalar_type(dtype);
        let (indices, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let zero = kernel.iconst(0);
        let on = kernel.load(ty, kernel.inputs[1].pointer, zero, size);
        let off = kernel.load(ty, kernel.inputs[2].pointer, zero, size);
        let depth = self.depth;
        kernel.for_count(outer, &mut |k, o| {
            let index_row = k.builder.ins().imul_imm_s(o, inner as i64);
            let output_row = k.builder.ins().imul_imm_s(o, (depth * inner) as i64);
            k.for_count(inner, &mut |k, i| {
                let position = k.builder.ins().iadd(index_row, i);
                let index = load_index(k, indices, position, indices_ty.dtype);
                let first = k.builder.ins().iadd(output_row, i);
                k.for_count(depth, &mut |k, d| {
                    let hit = k.builder.ins().icmp(IntCC::Equal, index, d);
                    let value = k.builder.ins().select(hit, on, off);
                    let step = k.builder.ins().imul_imm_s(d, inner as i64);
                    let destination = k.builder.ins().iadd(first, step);
                    k.store(value, output, destination, size);
                    Ok(())
                })
            })
        })
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// OneHot(indices, depth, on_value, off_value) with a constant depth; attribute `axis`
/// (default -1).
pub fn import_one_hot(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 4)?;
    let axis = NodeAttributes::of(node)
        .int_or("axis", -1)
        .map_err(node_error(node))?;
    if axis < -1 {
        return Err(importer.error(node, format!("axis {axis} must be -1 or more")));
    }
    let depth = scalar_constant(importer, node, inputs[1], "the depth (input 1)")?;
    if depth < 0 {
        return Err(importer.error(node, format!("depth {depth} must not be negative")));
    }
    let op = OneHot {
        depth: depth as usize,
        axis,
    };
    Ok(vec![importer.add(
        node,
        op,
        vec![inputs[0], inputs[2], inputs[3]],
    )])
}

pub const FAMILY: Family = Family {
    ir: &[("one_hot", OneHot::parse)],
    tensorflow: &[("OneHot", import_one_hot)],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn one_hot_imports_depth_and_axis() {
        for (attributes, axis) in [(vec![], -1), (vec![("axis", attr_value::Value::I(1))], 1)] {
            let mut graph = Graph::new();
            let x = graph.add_input("x", None);
            let depth = graph.add_constant("depth", Tensor::from_i32(vec![], vec![5]), None);
            let on = graph.add_input("on", None);
            let off = graph.add_input("off", None);
            let mut importer = Importer::new(&mut graph);
            let node = node_def("h", "OneHot", &attributes);
            import_one_hot(&mut importer, &node, &[x, depth, on, off]).unwrap();
            let op = only_op(&graph);
            assert_eq!(
                op.as_any().downcast_ref::<OneHot>(),
                Some(&OneHot { depth: 5, axis })
            );
            assert_eq!(
                OneHot::parse(&op.attributes()).unwrap().attributes(),
                op.attributes()
            );
        }
    }

    #[test]
    fn one_hot_import_errors_name_the_node() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", None);
        let depth = graph.add_input("depth", None);
        let negative = graph.add_constant("n", Tensor::from_i32(vec![], vec![-2]), None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def("h", "OneHot", &[]);
        let error = import_one_hot(&mut importer, &node, &[x, depth, x, x])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"h\"") && error.contains("depth"),
            "{error}"
        );
        let error = import_one_hot(&mut importer, &node, &[x, negative, x, x])
            .unwrap_err()
            .to_string();
        assert!(error.contains("negative"), "{error}");
        let node = node_def("h", "OneHot", &[("axis", attr_value::Value::I(-3))]);
        let error = import_one_hot(&mut importer, &node, &[x, depth, x, x])
            .unwrap_err()
            .to_string();
        assert!(error.contains("axis -3"), "{error}");
    }

    #[test]
    fn one_hot_reference_and_type_rule() {
        let indices = Tensor::from_i32(vec![4], vec![0, 2, -1, 3]);
        let on = Tensor::from_f32(vec![], vec![5.0]);
        let off = Tensor::from_f32(vec![], vec![-1.0]);
        let op = OneHot { depth: 3, axis: -1 };
        assert_eq!(
            op.evaluate(&[&indices, &on, &off]).unwrap()[0],
            Tensor::from_f32(
                vec![4, 3],
                vec![5.0, -1.0, -1.0, -1.0, -1.0, 5.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]
            )
        );
        let op = OneHot { depth: 3, axis: 0 };
        let result = op.evaluate(&[&indices, &on, &off]).unwrap();
        assert_eq!(result[0].shape, vec![3, 4]);
        let infer = |op: &OneHot, shape: Vec<usize>| {
            let i = TensorType::new(DType::I32, shape);
            let v = TensorType::new(DType::Bool, vec![]);
            op.infer(&InputFacts {
                types: vec![&i, &v, &v],
                constants: vec![None; 3],
            })
        };
        assert_eq!(
            infer(&OneHot { depth: 6, axis: 1 }, vec![2, 3]).unwrap()[0],
            TensorType::new(DType::Bool, vec![2, 6, 3])
        );
        assert!(infer(&OneHot { depth: 6, axis: 3 }, vec![2, 3]).is_err());
        assert!(infer(&OneHot { depth: 6, axis: -2 }, vec![2, 3]).is_err());
    }
}
