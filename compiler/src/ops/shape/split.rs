//! Split, SplitV and Unpack: one tensor cut into parts along an axis (a multi-output op).

use std::any::Any;
use std::sync::Arc;

use super::*;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use crate::ops::{normalize_axis, Attribute, Attributes, InputFacts, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

/// The most outputs one split may have.
const MAX_PARTS: usize = 1 << 16;

/// Cuts input 0 into `count` parts along `axis`.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub axis: i64,
    pub count: usize,
    /// Part sizes along the axis, one of them may be -1 (the rest); empty: `count` equal parts.
    pub sizes: Vec<i64>,
    /// Unpack: parts of size 1 that lose the axis.
    pub squeeze: bool,
}

impl Split {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let count = a.int("count")?;
        if count < 1 {
            return Err(invalid!("split count must be positive, got {count}"));
        }
        Ok(Arc::new(Split {
            axis: a.int("axis")?,
            count: count as usize,
            sizes: a.ints("sizes")?,
            squeeze: false,
        }))
    }

    pub fn parse_unpack(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let count = a.int("count")?;
        if count < 1 {
            return Err(invalid!("unpack count must be positive, got {count}"));
        }
        Ok(Arc::new(Split {
            axis: a.int("axis")?,
            count: count as usize,
            sizes: Vec::new(),
            squeeze: true,
        }))
    }

    /// The normalised axis and each part's size along it.
    fn parts(&self, shape: &[usize]) -> OpResult<(usize, Vec<usize>)> {
        if shape.is_empty() {
            return Err(invalid!("cannot split a scalar"));
        }
        if self.count > MAX_PARTS {
            return Err(invalid!(
                "{} parts is more than the {MAX_PARTS} supported",
                self.count
            ));
        }
        let axis = normalize_axis(self.axis, shape.len())?;
        let dim = shape[axis];
        if self.squeeze {
            if dim != self.count {
                return Err(invalid!(
                    "cannot unpack {} parts from axis {axis} of size {dim}",
                    self.count
                ));
            }
            return Ok((axis, vec![1; dim]));
        }
        if self.sizes.is_empty() {
            if !dim.is_multiple_of(self.count) {
                return Err(invalid!(
                    "axis {axis} of size {dim} does not split into {} equal parts",
                    self.count
                ));
            }
            return Ok((axis, vec![dim / self.count; self.count]));
        }
        if self.sizes.len() != self.count {
            return Err(invalid!(
                "{} split sizes {:?} for {} parts",
                self.sizes.len(),
                self.sizes,
                self.count
            ));
        }
        let unknown = self.sizes.iter().filter(|&&s| s == -1).count();
        if unknown > 1 || self.sizes.iter().any(|&s| s < -1) {
            return Err(invalid!(
                "split sizes {:?}: sizes must be non-negative, with at most one -1",
                self.sizes
            ));
        }
        let known: i64 = self.sizes.iter().filter(|&&s| s >= 0).sum();
        let rest = dim as i64 - known;
        if (unknown == 0 && rest != 0) || rest < 0 {
            return Err(invalid!(
                "split sizes {:?} do not fit axis {axis} of size {dim}",
                self.sizes
            ));
        }
        Ok((
            axis,
            self.sizes
                .iter()
                .map(|&s| if s == -1 { rest as usize } else { s as usize })
                .collect(),
        ))
    }

    fn part_shape(&self, shape: &[usize], axis: usize, size: usize) -> Vec<usize> {
        let mut part = shape.to_vec();
        if self.squeeze {
            part.remove(axis);
        } else {
            part[axis] = size;
        }
        part
    }
}

impl Operator for Split {
    fn name(&self) -> &'static str {
        if self.squeeze {
            "unpack"
        } else {
            "split"
        }
    }

    fn attributes(&self) -> Attributes {
        let attributes = Attributes::default()
            .with("axis", Attribute::Int(self.axis))
            .with("count", Attribute::Int(self.count as i64));
        if self.squeeze {
            attributes
        } else {
            attributes.with("sizes", Attribute::Ints(self.sizes.clone()))
        }
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let input = inputs.ty(0)?;
        let (axis, sizes) = self.parts(&input.shape)?;
        Ok(sizes
            .iter()
            .map(|&size| TensorType::new(input.dtype, self.part_shape(&input.shape, axis, size)))
            .collect())
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let (axis, sizes) = self.parts(&input.shape)?;
        let outer: usize = input.shape[..axis].iter().product();
        let inner: usize = input.shape[axis + 1..].iter().product();
        let dim = input.shape[axis];
        let mut offset = 0;
        let mut parts = Vec::new();
        for &size in &sizes {
            let mut indices = Vec::new();
            for o in 0..outer {
                for a in offset..offset + size {
                    for i in 0..inner {
                        indices.push((o * dim + a) * inner + i);
                    }
                }
            }
            parts.push(Tensor {
                shape: self.part_shape(&input.shape, axis, size),
                data: gather(&input.data, &indices),
            });
            offset += size;
        }
        Ok(parts)
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let ty = kernel.inputs[0].ty.clone();
        let (axis, sizes) = self
            .parts(&ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        let outer: usize = ty.shape[..axis].iter().product();
        let inner: usize = ty.shape[axis + 1..].iter().product();
        let dim = ty.shape[axis];
        let element = ty.dtype.size_of();
        let input = kernel.inputs[0].pointer;
        let outputs: Vec<_> = kernel.outputs.iter().map(|o| o.pointer).collect();
        let mut offset = 0;
        for (&size, &output) in sizes.iter().zip(&outputs) {
            let row = size * inner;
            if row > 0 {
                copy_rows(
                    kernel,
                    &[(outer, (dim * inner) as i64, row as i64)],
                    (offset * inner) as i64,
                    0,
                    row,
                    input,
                    output,
                    element,
                )?;
            }
            offset += size;
        }
        Ok(())
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The integer values of a constant operand, read at import.
fn constant_ints(
    importer: &mut Importer,
    node: &NodeDef,
    value: ValueId,
    what: &str,
) -> Result<Vec<i64>, ImportError> {
    importer
        .constant_value(value)
        .map(|tensor| tensor.to_i64_vec())
        .ok_or_else(|| importer.error(node, format!("{what} must be a constant")))
}

fn positive_count(node: &NodeDef, name: &str) -> Result<usize, ImportError> {
    let count = NodeAttributes::of(node)
        .int(name)
        .map_err(node_error(node))?;
    if count < 1 || count > MAX_PARTS as i64 {
        return Err(node_error(node)(format!(
            "attribute `{name}` must be between 1 and {MAX_PARTS}, got {count}"
        )));
    }
    Ok(count as usize)
}

fn single_axis(
    importer: &mut Importer,
    node: &NodeDef,
    value: ValueId,
) -> Result<i64, ImportError> {
    match constant_ints(importer, node, value, "the split axis")?[..] {
        [axis] => Ok(axis),
        ref other => Err(importer.error(
            node,
            format!("the split axis must be one integer, got {other:?}"),
        )),
    }
}

/// Split(axis, value) {num_split}.
pub fn import_split(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let count = positive_count(node, "num_split")?;
    let axis = single_axis(importer, node, inputs[0])?;
    let op = Split {
        axis,
        count,
        sizes: Vec::new(),
        squeeze: false,
    };
    Ok(importer.add_multiple(node, op, vec![inputs[1]], count))
}

/// SplitV(value, size_splits, axis) {num_split}.
pub fn import_split_v(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    let sizes = constant_ints(importer, node, inputs[1], "size_splits")?;
    let axis = single_axis(importer, node, inputs[2])?;
    let count = if NodeAttributes::of(node).has("num_split") {
        positive_count(node, "num_split")?
    } else {
        sizes.len()
    };
    if sizes.len() != count || count == 0 || count > MAX_PARTS {
        return Err(importer.error(
            node,
            format!("size_splits {sizes:?} must have num_split = {count} entries"),
        ));
    }
    let op = Split {
        axis,
        count,
        sizes,
        squeeze: false,
    };
    Ok(importer.add_multiple(node, op, vec![inputs[0]], count))
}

/// Unpack(value) {num, axis}.
pub fn import_unpack(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let count = positive_count(node, "num")?;
    let axis = NodeAttributes::of(node)
        .int_or("axis", 0)
        .map_err(node_error(node))?;
    let op = Split {
        axis,
        count,
        sizes: Vec::new(),
        squeeze: true,
    };
    Ok(importer.add_multiple(node, op, vec![inputs[0]], count))
}

pub const FAMILY: Family = Family {
    ir: &[("split", Split::parse), ("unpack", Split::parse_unpack)],
    tensorflow: &[
        ("Split", import_split),
        ("SplitV", import_split_v),
        ("Unpack", import_unpack),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, Graph};
    use tfjsc_proto::tensorflow::attr_value;

    fn node(op: &str, attrs: &[(&str, attr_value::Value)]) -> NodeDef {
        crate::ops::importer::testing::node_def("n", op, attrs)
    }

    fn types(graph: &Graph, values: &[ValueId]) -> Vec<Vec<usize>> {
        values.iter().map(|&v| graph.ty(v).shape.clone()).collect()
    }

    #[test]
    fn split_split_v_and_unpack_import() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", Some(TensorType::new(DType::F32, vec![2, 6, 3])));
        let axis = graph.add_constant("axis", Tensor::from_i32(vec![], vec![1]), None);
        let last = graph.add_constant("last", Tensor::from_i32(vec![], vec![-1]), None);
        let sizes = graph.add_constant("sizes", Tensor::from_i32(vec![3], vec![1, -1, 2]), None);
        let mut importer = Importer::new(&mut graph);
        let split = node("Split", &[("num_split", attr_value::Value::I(3))]);
        let parts = import_split(&mut importer, &split, &[axis, x]).unwrap();
        let split_v = node("SplitV", &[("num_split", attr_value::Value::I(3))]);
        let parts_v = import_split_v(&mut importer, &split_v, &[x, sizes, axis]).unwrap();
        let unpack = node(
            "Unpack",
            &[
                ("num", attr_value::Value::I(3)),
                ("axis", attr_value::Value::I(-1)),
            ],
        );
        let rows = import_unpack(&mut importer, &unpack, &[x]).unwrap();
        // A non-constant axis and a missing num_split are errors naming the node.
        let error = import_split(&mut importer, &split, &[x, x]).unwrap_err();
        assert!(
            error.to_string().contains("axis must be a constant"),
            "{error}"
        );
        let error = import_split(&mut importer, &node("Split", &[]), &[axis, x]).unwrap_err();
        assert!(error.to_string().contains("num_split"), "{error}");
        let wrong = node("SplitV", &[("num_split", attr_value::Value::I(2))]);
        assert!(import_split_v(&mut importer, &wrong, &[x, sizes, last]).is_err());
        crate::passes::PIPELINE[0].1(&mut graph).unwrap();
        assert_eq!(types(&graph, &parts), vec![vec![2, 2, 3]; 3]);
        assert_eq!(
            types(&graph, &parts_v),
            vec![vec![2, 1, 3], vec![2, 3, 3], vec![2, 2, 3]]
        );
        assert_eq!(types(&graph, &rows), vec![vec![2, 6]; 3]);
    }

    #[test]
    fn bad_splits_are_errors() {
        let shape = [4, 6];
        let split = |count, sizes: &[i64], squeeze| Split {
            axis: 1,
            count,
            sizes: sizes.to_vec(),
            squeeze,
        };
        assert!(split(4, &[], false).parts(&shape).is_err());
        assert!(split(2, &[-1, -1], false).parts(&shape).is_err());
        assert!(split(2, &[2, 3], false).parts(&shape).is_err());
        assert!(split(2, &[7, -1], false).parts(&shape).is_err());
        assert!(split(5, &[], true).parts(&shape).is_err());
        assert_eq!(split(2, &[6, -1], false).parts(&shape).unwrap().1, [6, 0]);
    }
}
