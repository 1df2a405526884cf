//! SparseToDense: a dense tensor of `default_value` with `sparse_values` written at
//! `sparse_indices`.
//!
//! Indices are run-time data: every component the kernel loads is range-checked against its
//! output dimension (`Kernel::check_index`) before it addresses memory, so an index out of range
//! makes `run` fail with an error naming the node. TensorFlow raises for such an index too
//! (`SparseTensor::ToDense` refuses out-of-bounds components whatever `validate_indices` says).
//!
//! Order and duplicates: with `validate_indices = true` TensorFlow also rejects indices that are
//! not in lexicographic order or that repeat. We do not check order: the values are written in
//! index order and the last write to a position wins. This is what TF.js does for every
//! `validate_indices` (its CPU kernel, `scatterImpl` with `sumDupeIndices = false`, overwrites in
//! order, and it checks only the flattened index), and what TensorFlow's own kernel produces for
//! repeated indices when `validate_indices = false`. Unlike TF.js, each index component is checked
//! against its own dimension (TensorFlow's rule), not only the flattened position.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::InstBuilder;

use super::gather::{checked_index, load_index};
use super::{strides_of, Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::{scalar_type, Kernel};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{ImportError, Importer};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

/// SparseToDense(indices, values, default_value) with the output shape as an attribute.
/// Indices: a scalar (one index into a 1-D output), a vector `[n]` (n indices into a 1-D output)
/// or a matrix `[n, rank]`. Values: a scalar (written at every index) or a vector `[n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseToDense {
    pub shape: Vec<usize>,
}

/// (index count n, components per index).
fn index_layout(indices: &[usize]) -> OpResult<(usize, usize)> {
    match *indices {
        [] => Ok((1, 1)),
        [n] => Ok((n, 1)),
        [n, depth] => Ok((n, depth)),
        _ => Err(invalid!(
            "sparse indices must have rank 0, 1 or 2, got shape {indices:?}"
        )),
    }
}

impl SparseToDense {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let shape = a.ints("shape")?;
        if let Some(bad) = shape.iter().find(|&&d| d < 0) {
            return Err(invalid!("output dimension {bad} must not be negative"));
        }
        Ok(Arc::new(SparseToDense {
            shape: shape.iter().map(|&d| d as usize).collect(),
        }))
    }

    /// Checks the operand types; returns (n, depth, whether values are one scalar).
    fn check(
        &self,
        indices: &TensorType,
        values: &TensorType,
        default: &TensorType,
    ) -> OpResult<(usize, usize, bool)> {
        if !matches!(indices.dtype, DType::I32 | DType::I64) {
            return Err(invalid!(
                "sparse indices must be int32 or int64, got {}",
                indices.dtype.short_name()
            ));
        }
        let (n, depth) = index_layout(&indices.shape)?;
        if depth != self.shape.len() {
            return Err(invalid!(
                "indices {:?} have {depth} components, the output shape {:?} has rank {}",
                indices.shape,
                self.shape,
                self.shape.len()
            ));
        }
        let scalar = match values.shape[..] {
            [] => true,
            [count] if count == n => false,
            _ => {
                return Err(invalid!(
                    "sparse values must be a scalar or a vector of {n} values, got shape {:?}",
                    values.shape
                ))
            }
        };
        if default.rank() != 0 || default.dtype != values.dtype {
            return Err(invalid!(
                "default value must be a scalar of the values' dtype, got {default} for {values}"
            ));
        }
        Ok((n, depth, scalar))
    }
}

impl Operator for SparseToDense {
    fn name(&self) -> &'static str {
        "sparse_to_dense"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default().with(
            "shape",
            Attribute::Ints(self.shape.iter().map(|&d| d as i64).collect()),
        )
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(3)?;
        let (indices, values, default) = (inputs.ty(0)?, inputs.ty(1)?, inputs.ty(2)?);
        self.check(indices, values, default)?;
        Ok(vec![TensorType::new(values.dtype, self.shape.clone())])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (indices, values, default) = (inputs[0], inputs[1], inputs[2]);
        let (n, depth, scalar) = self.check(
            &indices.tensor_type(),
            &values.tensor_type(),
            &default.tensor_type(),
        )?;
        let index_values = indices.to_i64_vec();
        let strides = strides_of(&self.shape);
        // Positions into [default, values...]: 0 everywhere, then each value's, in order.
        let mut picks = vec![0usize; self.shape.iter().product()];
        for i in 0..n {
            let mut flat = 0;
            for c in 0..depth {
                let index = index_values[i * depth + c];
                if index < 0 || index as usize >= self.shape[c] {
                    return Err(invalid!(
                        "sparse index {index} (component {c} of index {i}) is out of range \
                         [0, {})",
                        self.shape[c]
                    ));
                }
                flat += index as usize * strides[c];
            }
            picks[flat] = if scalar { 1 } else { 1 + i };
        }
        let both = super::shape::concat_data(&[&default.data, &values.data], values.dtype());
        Ok(vec![Tensor {
            shape: self.shape.clone(),
            data: super::shape::gather(&both, &picks),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let indices_ty = kernel.inputs[0].ty.clone();
        let values_ty = kernel.inputs[1].ty.clone();
        let (n, depth, scalar) = self
            .check(&indices_ty, &values_ty, &kernel.inputs[2].ty)
            .map_err(|e| kernel.error(e.to_string()))?;
        let dtype = values_ty.dtype;
        let size = dtype.size_of();
        let ty = scalar_type(dtype);
        let (indices, values, output) = (
            kernel.inputs[0].pointer,
            kernel.inputs[1].pointer,
            kernel.outputs[0].pointer,
        );
        let zero = kernel.iconst(0);
        let default = kernel.load(ty, kernel.inputs[2].pointer, zero, size);
        let count: usize = self.shape.iter().product();
        kernel.for_count(count, &mut |k, position| {
            k.store(default, output, position, size);
            Ok(())
        })?;
        let single = if scalar {
            Some(kernel.load(ty, values, zero, size))
        } else {
            None
        };
        let strides = strides_of(&self.shape);
        let dims = self.shape.clone();
        kernel.for_count(n, &mut |k, i| {
            let first = k.builder.ins().imul_imm_s(i, depth as i64);
            let mut destination = k.iconst(0);
            for c in 0..depth {
                let position = k.builder.ins().iadd_imm_s(first, c as i64);
                let index = load_index(k, indices, position, indices_ty.dtype);
                let index = checked_index(k, index, dims[c]);
                let step = k.builder.ins().imul_imm_s(index, strides[c] as i64);
                destination = k.builder.ins().iadd(destination, step);
            }
            let value = match single {
                Some(value) => value,
                None => k.load(ty, values, i, size),
            };
            k.store(value, output, destination, size);
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

/// SparseToDense(sparse_indices, output_shape, sparse_values, default_value) with a constant
/// output shape; attribute `validate_indices` is accepted and its order check not performed
/// (see the module documentation).
pub fn import_sparse_to_dense(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 4)?;
    let tensor = importer.constant_value(inputs[1]).ok_or_else(|| {
        importer.error(
            node,
            "the output shape (input 1) must be a compile-time constant",
        )
    })?;
    if tensor.dtype() == DType::F32 || tensor.shape.len() > 1 {
        return Err(importer.error(
            node,
            format!(
                "the output shape must be an integer scalar or vector, got {} {:?}",
                tensor.dtype().short_name(),
                tensor.shape
            ),
        ));
    }
    let dims = tensor.to_i64_vec();
    if let Some(bad) = dims.iter().find(|&&d| d < 0) {
        return Err(importer.error(
            node,
            format!("output dimension {bad} must not be negative (shape {dims:?})"),
        ));
    }
    let op = SparseToDense {
        shape: dims.iter().map(|&d| d as usize).collect(),
    };
    Ok(vec![importer.add(
        node,
        op,
        vec![inputs[0], inputs[2], inputs[3]],
    )])
}

pub const FAMILY: Family = Family {
    ir: &[("sparse_to_dense", SparseToDense::parse)],
    tensorflow: &[("SparseToDense", import_sparse_to_dense)],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn sparse_to_dense_imports_its_constant_shape() {
        let mut graph = Graph::new();
        let indices = graph.add_input("indices", None);
        let shape = graph.add_constant("shape", Tensor::from_i32(vec![2], vec![3, 4]), None);
        let values = graph.add_input("values", None);
        let default = graph.add_input("default", None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def(
            "s",
            "SparseToDense",
            &[("validate_indices", attr_value::Value::B(true))],
        );
        import_sparse_to_dense(&mut importer, &node, &[indices, shape, values, default]).unwrap();
        let op = only_op(&graph);
        assert_eq!(
            op.as_any().downcast_ref::<SparseToDense>(),
            Some(&SparseToDense { shape: vec![3, 4] })
        );
        assert_eq!(
            SparseToDense::parse(&op.attributes()).unwrap().attributes(),
            op.attributes()
        );
    }

    #[test]
    fn sparse_to_dense_import_errors_name_the_node() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", None);
        let negative = graph.add_constant("n", Tensor::from_i32(vec![2], vec![3, -1]), None);
        let float = graph.add_constant("f", Tensor::from_f32(vec![1], vec![3.0]), None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def("s", "SparseToDense", &[]);
        let error = import_sparse_to_dense(&mut importer, &node, &[x, x, x, x])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"s\"") && error.contains("compile-time constant"),
            "{error}"
        );
        let error = import_sparse_to_dense(&mut importer, &node, &[x, negative, x, x])
            .unwrap_err()
            .to_string();
        assert!(error.contains("negative"), "{error}");
        let error = import_sparse_to_dense(&mut importer, &node, &[x, float, x, x])
            .unwrap_err()
            .to_string();
        assert!(error.contains("integer"), "{error}");
        let error = import_sparse_to_dense(&mut importer, &node, &[x, x, x])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected 4 inputs"), "{error}");
    }

    #[test]
    fn sparse_to_dense_reference_and_type_rule() {
        let op = SparseToDense { shape: vec![2, 3] };
        let indices = Tensor::from_i32(vec![3, 2], vec![0, 1, 1, 2, 0, 1]);
        let values = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]);
        let default = Tensor::from_f32(vec![], vec![-1.0]);
        // The repeated index (0, 1) keeps its last value.
        assert_eq!(
            op.evaluate(&[&indices, &values, &default]).unwrap()[0],
            Tensor::from_f32(vec![2, 3], vec![-1.0, 3.0, -1.0, -1.0, -1.0, 2.0])
        );
        let scalar = Tensor::from_f32(vec![], vec![7.0]);
        assert_eq!(
            op.evaluate(&[&indices, &scalar, &default]).unwrap()[0],
            Tensor::from_f32(vec![2, 3], vec![-1.0, 7.0, -1.0, -1.0, -1.0, 7.0])
        );
        // Each component against its own dimension: (0, 3) is out of range even though its
        // flattened position (3) is inside the output.
        let bad = Tensor::from_i32(vec![1, 2], vec![0, 3]);
        let one = Tensor::from_f32(vec![1], vec![1.0]);
        let error = op
            .evaluate(&[&bad, &one, &default])
            .unwrap_err()
            .to_string();
        assert!(error.contains("out of range"), "{error}");
        let vector = SparseToDense { shape: vec![4] };
        let index = Tensor::from_i64(vec![], vec![2]);
        assert_eq!(
            vector.evaluate(&[&index, &scalar, &default]).unwrap()[0],
            Tensor::from_f32(vec![4], vec![-1.0, -1.0, 7.0, -1.0])
        );
        let infer = |op: &SparseToDense, i: Vec<usize>, v: Vec<usize>, d: DType| {
            let i = TensorType::new(DType::I32, i);
            let v = TensorType::new(DType::F32, v);
            let d = TensorType::new(d, vec![]);
            op.infer(&InputFacts {
                types: vec![&i, &v, &d],
                constants: vec![None; 3],
            })
        };
        assert_eq!(
            infer(&op, vec![5, 2], vec![5], DType::F32).unwrap()[0],
            TensorType::new(DType::F32, vec![2, 3])
        );
        assert!(infer(&op, vec![5, 3], vec![5], DType::F32).is_err());
        assert!(infer(&op, vec![5, 2], vec![4], DType::F32).is_err());
        assert!(infer(&op, vec![5, 2], vec![5], DType::I32).is_err());
        assert!(infer(&op, vec![5], vec![5], DType::F32).is_err());
        assert!(infer(&vector, vec![5], vec![], DType::F32).is_ok());
        assert!(infer(&vector, vec![5, 1, 1], vec![], DType::F32).is_err());
    }
}
