//! GatherV2 (and the older Gather) and GatherNd: slices of `params` picked by run-time indices.
//!
//! Indices are run-time data: every index the kernel loads is range-checked before it addresses
//! memory. An index out of range is an error in TensorFlow (CPU kernels and TF.js both raise);
//! the reference evaluation reports it, and the kernels check every index with
//! `Kernel::check_index`, so that `run` fails with an error naming the node.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::shape::gather as pick;
use super::{strides_of, Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::{memory_flags, scalar_type, Kernel};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

// ---- Shared kernel helpers (also used by sparse_to_dense) ----

/// The index at element `position` of an I32 or I64 index tensor, as an i64.
pub(crate) fn load_index(kernel: &mut Kernel, base: Value, position: Value, dtype: DType) -> Value {
    match dtype {
        DType::I64 => kernel.load(types::I64, base, position, 8),
        _ => {
            let narrow = kernel.load(types::I32, base, position, 4);
            kernel.builder.ins().sextend(types::I64, narrow)
        }
    }
}

/// `index` (an i64), checked to lie in `[0, bound)`: otherwise the kernel stops and `run` fails
/// with an error naming the node (TensorFlow raises for such an index).
pub(crate) fn checked_index(kernel: &mut Kernel, index: Value, bound: usize) -> Value {
    kernel.check_index(index, bound);
    index
}

/// Copies `count` elements of `dtype` from `source[source_index..]` to
/// `destination[destination_index..]`: vectorised when the run is long, element by element
/// otherwise.
pub(crate) fn copy_run(
    kernel: &mut Kernel,
    (source, source_index): (Value, Value),
    (destination, destination_index): (Value, Value),
    count: usize,
    dtype: DType,
) -> Result<(), CodegenError> {
    let size = dtype.size_of();
    if count * size >= 16 {
        return kernel.copy_elements(
            source,
            source_index,
            destination,
            destination_index,
            count,
            size,
        );
    }
    let from = kernel.address(source, source_index, size);
    let to = kernel.address(destination, destination_index, size);
    let ty = scalar_type(dtype);
    for element in 0..count {
        let offset = (element * size) as i32;
        let value = kernel.builder.ins().load(ty, memory_flags(), from, offset);
        kernel
            .builder
            .ins()
            .store(memory_flags(), value, to, offset);
    }
    Ok(())
}

fn check_index_dtype(ty: &TensorType, what: &str) -> OpResult<()> {
    match ty.dtype {
        DType::I32 | DType::I64 => Ok(()),
        other => Err(invalid!(
            "{what} must be int32 or int64, got {}",
            other.short_name()
        )),
    }
}

fn out_of_range(index: i64, bound: usize, position: usize) -> super::OpError {
    invalid!("index {index} (element {position} of the indices) is out of range [0, {bound})")
}

// ---- GatherV2 ----

/// TensorFlow GatherV2: `params` (input 0) sliced along `axis` by `indices` (input 1), with
/// `batch_dims` leading dimensions shared by params and indices. The output has shape
/// `params[..axis] ++ indices[batch_dims..] ++ params[axis + 1..]`. `axis` and `batch_dims` keep
/// their TensorFlow values (negative counts from the end: axis against params' rank, batch_dims
/// against indices' rank).
#[derive(Clone, Debug, PartialEq)]
pub struct Gather {
    pub axis: i64,
    pub batch_dims: i64,
}

/// A resolved gather: `batch × outer` groups, each picking `count` of `axis_size` slices of
/// `inner` elements.
#[derive(Debug, PartialEq)]
struct GatherLayout {
    batch: usize,
    outer: usize,
    axis_size: usize,
    inner: usize,
    /// Indices per batch.
    count: usize,
    shape: Vec<usize>,
}

impl Gather {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Gather {
            axis: a.int("axis")?,
            batch_dims: a.int("batch_dims")?,
        }))
    }

    fn layout(&self, params: &[usize], indices: &[usize]) -> OpResult<GatherLayout> {
        let batch_dims = if self.batch_dims < 0 {
            self.batch_dims + indices.len() as i64
        } else {
            self.batch_dims
        };
        if batch_dims < 0 || batch_dims as usize > indices.len() {
            return Err(invalid!(
                "batch_dims {} is out of range for indices of rank {}",
                self.batch_dims,
                indices.len()
            ));
        }
        let batch_dims = batch_dims as usize;
        let axis = if self.axis < 0 {
            self.axis + params.len() as i64
        } else {
            self.axis
        };
        if axis < 0 || axis as usize >= params.len() {
            return Err(invalid!(
                "axis {} is out of range for params of rank {}",
                self.axis,
                params.len()
            ));
        }
        let axis = axis as usize;
        if batch_dims > axis {
            return Err(invalid!(
                "batch_dims ({batch_dims}) must not exceed axis ({axis})"
            ));
        }
        if params[..batch_dims] != indices[..batch_dims] {
            return Err(invalid!(
                "the first {batch_dims} dimensions of params {params:?} and indices {indices:?} \
                 must be equal"
            ));
        }
        let mut shape = params[..axis].to_vec();
        shape.extend_from_slice(&indices[batch_dims..]);
        shape.extend_from_slice(&params[axis + 1..]);
        Ok(GatherLayout {
            batch: params[..batch_dims].iter().product(),
            outer: params[batch_dims..axis].iter().product(),
            axis_size: params[axis],
            inner: params[axis + 1..].iter().product(),
            count: indices[batch_dims..].iter().product(),
            shape,
        })
    }
}

impl Operator for Gather {
    fn name(&self) -> &'static str {
        "gather"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default()
            .with("axis", Attribute::Int(self.axis))
            .with("batch_dims", Attribute::Int(self.batch_dims))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2)?;
        let (params, indices) = (inputs.ty(0)?, inputs.ty(1)?);
        check_index_dtype(indices, "gather indices")?;
        let layout = self.layout(&params.shape, &indices.shape)?;
        Ok(vec![TensorType::new(params.dtype, layout.shape)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (params, indices) = (inputs[0], inputs[1]);
        let layout = self.layout(&params.shape, &indices.shape)?;
        let index_values = indices.to_i64_vec();
        let mut picked = Vec::with_capacity(layout.shape.iter().product());
        for b in 0..layout.batch {
            for o in 0..layout.outer {
                for j in 0..layout.count {
                    let position = b * layout.count + j;
                    let index = index_values[position];
                    if index < 0 || index as usize >= layout.axis_size {
                        return Err(out_of_range(index, layout.axis_size, position));
                    }
                    let row = (b * layout.outer + o) * layout.axis_size + index as usize;
                    picked.extend(row * layout.inner..(row + 1) * layout.inner);
                }
            }
        }
        Ok(vec![Tensor {
            shape: layout.shape,
            data: pick(&params.data, &picked),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let params_ty = kernel.inputs[0].ty.clone();
        let indices_ty = kernel.inputs[1].ty.clone();
        let layout = self
            .layout(&params_ty.shape, &indices_ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        if kernel.outputs[0].ty.element_count() == 0 {
            return Ok(());
        }
        let dtype = params_ty.dtype;
        let (params, indices, output) = (
            kernel.inputs[0].pointer,
            kernel.inputs[1].pointer,
            kernel.outputs[0].pointer,
        );
        let GatherLayout {
            batch,
            outer,
            axis_size,
            inner,
            count,
            ..
        } = layout;
        kernel.for_count(batch, &mut |k, b| {
            k.for_count(outer, &mut |k, o| {
                // Row of (b, o): b * outer + o.
                let group = k.builder.ins().imul_imm_s(b, outer as i64);
                let group = k.builder.ins().iadd(group, o);
                let source_group = k
                    .builder
                    .ins()
                    .imul_imm_s(group, (axis_size * inner) as i64);
                let destination_group = k.builder.ins().imul_imm_s(group, (count * inner) as i64);
                let index_base = k.builder.ins().imul_imm_s(b, count as i64);
                k.for_count(count, &mut |k, j| {
                    let position = k.builder.ins().iadd(index_base, j);
                    let index = load_index(k, indices, position, indices_ty.dtype);
                    let index = checked_index(k, index, axis_size);
                    let source = k.builder.ins().imul_imm_s(index, inner as i64);
                    let source = k.builder.ins().iadd(source_group, source);
                    let destination = k.builder.ins().imul_imm_s(j, inner as i64);
                    let destination = k.builder.ins().iadd(destination_group, destination);
                    copy_run(k, (params, source), (output, destination), inner, dtype)
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

/// GatherV2(params, indices, axis) with a constant axis and attribute `batch_dims`; the older
/// Gather(params, indices) gathers along axis 0.
pub fn import_gather(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let fail = node_error(node);
    let attributes = NodeAttributes::of(node);
    let batch_dims = attributes.int_or("batch_dims", 0).map_err(fail)?;
    let axis = if node.op == "Gather" {
        importer.expect_inputs(node, inputs, 2)?;
        0
    } else {
        importer.expect_inputs(node, inputs, 3)?;
        scalar_constant(importer, node, inputs[2], "the axis (input 2)")?
    };
    Ok(vec![importer.add(
        node,
        Gather { axis, batch_dims },
        inputs[..2].to_vec(),
    )])
}

/// The value of a constant scalar (or one-element) integer operand, or an error naming the node.
pub(crate) fn scalar_constant(
    importer: &mut Importer,
    node: &NodeDef,
    value: ValueId,
    what: &str,
) -> Result<i64, ImportError> {
    let tensor = importer
        .constant_value(value)
        .ok_or_else(|| importer.error(node, format!("{what} must be a compile-time constant")))?;
    match tensor.to_i64_vec()[..] {
        [single] if tensor.dtype() != DType::F32 => Ok(single),
        _ => Err(importer.error(
            node,
            format!(
                "{what} must be one integer, got {} {:?}",
                tensor.dtype().short_name(),
                tensor.shape
            ),
        )),
    }
}

// ---- GatherNd ----

/// TensorFlow GatherNd: the last dimension `q` of `indices` (input 1) indexes the first `q`
/// dimensions of `params` (input 0); the output has shape `indices[..-1] ++ params[q..]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GatherNd;

/// A resolved GatherNd: `count` index tuples of `depth` coordinates into `dims`, each picking a
/// slice of `inner` elements.
struct GatherNdLayout {
    count: usize,
    depth: usize,
    dims: Vec<usize>,
    /// Element strides of the indexed dimensions.
    strides: Vec<usize>,
    inner: usize,
    shape: Vec<usize>,
}

impl GatherNd {
    pub fn parse(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(GatherNd))
    }

    fn layout(params: &[usize], indices: &[usize]) -> OpResult<GatherNdLayout> {
        let Some((&depth, leading)) = indices.split_last() else {
            return Err(invalid!("GatherNd indices must have rank ≥ 1"));
        };
        if depth > params.len() {
            return Err(invalid!(
                "GatherNd index depth {depth} exceeds the rank of params {params:?}"
            ));
        }
        let strides = strides_of(params);
        let mut shape = leading.to_vec();
        shape.extend_from_slice(&params[depth..]);
        Ok(GatherNdLayout {
            count: leading.iter().product(),
            depth,
            dims: params[..depth].to_vec(),
            strides: strides[..depth].to_vec(),
            inner: params[depth..].iter().product(),
            shape,
        })
    }
}

impl Operator for GatherNd {
    fn name(&self) -> &'static str {
        "gather_nd"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2)?;
        let (params, indices) = (inputs.ty(0)?, inputs.ty(1)?);
        check_index_dtype(indices, "GatherNd indices")?;
        let layout = Self::layout(&params.shape, &indices.shape)?;
        Ok(vec![TensorType::new(params.dtype, layout.shape)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (params, indices) = (inputs[0], inputs[1]);
        let layout = Self::layout(&params.shape, &indices.shape)?;
        let index_values = indices.to_i64_vec();
        let mut picked = Vec::with_capacity(layout.shape.iter().product());
        for m in 0..layout.count {
            let mut start = 0;
            for c in 0..layout.depth {
                let position = m * layout.depth + c;
                let index = index_values[position];
                if index < 0 || index as usize >= layout.dims[c] {
                    return Err(out_of_range(index, layout.dims[c], position));
                }
                start += index as usize * layout.strides[c];
            }
            picked.extend(start..start + layout.inner);
        }
        Ok(vec![Tensor {
            shape: layout.shape,
            data: pick(&params.data, &picked),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let params_ty = kernel.inputs[0].ty.clone();
        let indices_ty = kernel.inputs[1].ty.clone();
        let layout = Self::layout(&params_ty.shape, &indices_ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        if kernel.outputs[0].ty.element_count() == 0 {
            return Ok(());
        }
        let (params, indices, output) = (
            kernel.inputs[0].pointer,
            kernel.inputs[1].pointer,
            kernel.outputs[0].pointer,
        );
        let GatherNdLayout {
            count,
            depth,
            dims,
            strides,
            inner,
            ..
        } = layout;
        kernel.for_count(count, &mut |k, m| {
            let first = k.builder.ins().imul_imm_s(m, depth as i64);
            let mut source = k.iconst(0);
            for c in 0..depth {
                let position = k.builder.ins().iadd_imm_s(first, c as i64);
                let index = load_index(k, indices, position, indices_ty.dtype);
                let index = checked_index(k, index, dims[c]);
                let step = k.builder.ins().imul_imm_s(index, strides[c] as i64);
                source = k.builder.ins().iadd(source, step);
            }
            let destination = k.builder.ins().imul_imm_s(m, inner as i64);
            copy_run(
                k,
                (params, source),
                (output, destination),
                inner,
                params_ty.dtype,
            )
        })
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// GatherNd(params, indices). (The raw op has no batch dimensions: `tf.gather_nd(batch_dims=…)`
/// builds other ops around it.)
pub fn import_gather_nd(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let batch_dims = NodeAttributes::of(node)
        .int_or("batch_dims", 0)
        .map_err(node_error(node))?;
    if batch_dims != 0 {
        return Err(importer.error(
            node,
            format!("GatherNd with batch_dims {batch_dims} is not supported (expected 0)"),
        ));
    }
    Ok(vec![importer.add(node, GatherNd, inputs[..2].to_vec())])
}

pub const FAMILY: Family = Family {
    ir: &[("gather", Gather::parse), ("gather_nd", GatherNd::parse)],
    tensorflow: &[
        ("GatherV2", import_gather),
        ("Gather", import_gather),
        ("GatherNd", import_gather_nd),
    ],
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn gather_v2_imports_axis_and_batch_dims() {
        let mut graph = Graph::new();
        let params = graph.add_input("params", None);
        let indices = graph.add_input("indices", None);
        let axis = graph.add_constant("axis", Tensor::from_i32(vec![], vec![-1]), None);
        let node = node_def("g", "GatherV2", &[("batch_dims", attr_value::Value::I(-1))]);
        let mut importer = Importer::new(&mut graph);
        import_gather(&mut importer, &node, &[params, indices, axis]).unwrap();
        let op = only_op(&graph);
        assert_eq!(
            op.as_any().downcast_ref::<Gather>(),
            Some(&Gather {
                axis: -1,
                batch_dims: -1
            })
        );
        // The attributes round-trip through the text parser.
        let parsed = Gather::parse(&op.attributes()).unwrap();
        assert_eq!(parsed.attributes(), op.attributes());
    }

    #[test]
    fn gather_v1_gathers_along_axis_zero() {
        let mut graph = Graph::new();
        let params = graph.add_input("params", None);
        let indices = graph.add_input("indices", None);
        let mut importer = Importer::new(&mut graph);
        import_gather(
            &mut importer,
            &node_def("g", "Gather", &[]),
            &[params, indices],
        )
        .unwrap();
        let op = only_op(&graph);
        assert_eq!(
            op.as_any().downcast_ref::<Gather>(),
            Some(&Gather {
                axis: 0,
                batch_dims: 0
            })
        );
    }

    #[test]
    fn gather_v2_needs_a_constant_integer_axis() {
        let mut graph = Graph::new();
        let params = graph.add_input("params", None);
        let indices = graph.add_input("indices", None);
        let axis = graph.add_input("axis", None);
        let float_axis = graph.add_constant("f", Tensor::from_f32(vec![], vec![1.0]), None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def("g", "GatherV2", &[]);
        let error = import_gather(&mut importer, &node, &[params, indices, axis])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"g\"") && error.contains("compile-time constant"),
            "{error}"
        );
        let error = import_gather(&mut importer, &node, &[params, indices, float_axis])
            .unwrap_err()
            .to_string();
        assert!(error.contains("must be one integer"), "{error}");
        let error = import_gather(&mut importer, &node, &[params, indices])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected 3 inputs"), "{error}");
        let node = node_def(
            "g",
            "GatherV2",
            &[("batch_dims", attr_value::Value::F(1.0))],
        );
        let error = import_gather(&mut importer, &node, &[params, indices, axis])
            .unwrap_err()
            .to_string();
        assert!(error.contains("batch_dims"), "{error}");
    }

    #[test]
    fn gather_nd_rejects_batch_dims() {
        let mut graph = Graph::new();
        let params = graph.add_input("params", None);
        let indices = graph.add_input("indices", None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def("nd", "GatherNd", &[("batch_dims", attr_value::Value::I(1))]);
        let error = import_gather_nd(&mut importer, &node, &[params, indices])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"nd\"") && error.contains("batch_dims 1"),
            "{error}"
        );
        let node = node_def("nd", "GatherNd", &[]);
        import_gather_nd(&mut importer, &node, &[params, indices]).unwrap();
    }

    #[test]
    fn gather_type_rules() {
        let params = TensorType::new(DType::F32, vec![2, 3, 4]);
        let indices = TensorType::new(DType::I32, vec![2, 5]);
        let infer = |op: &dyn Operator, a: &TensorType, b: &TensorType| {
            op.infer(&InputFacts {
                types: vec![a, b],
                constants: vec![None, None],
            })
        };
        let shape = |op: Gather| infer(&op, &params, &indices).unwrap()[0].shape.clone();
        assert_eq!(
            shape(Gather {
                axis: 1,
                batch_dims: 0
            }),
            vec![2, 2, 5, 4]
        );
        assert_eq!(
            shape(Gather {
                axis: -1,
                batch_dims: 1
            }),
            vec![2, 3, 5]
        );
        assert_eq!(
            shape(Gather {
                axis: 2,
                batch_dims: -1
            }),
            vec![2, 3, 5]
        );
        for bad in [
            Gather {
                axis: 3,
                batch_dims: 0,
            },
            Gather {
                axis: -4,
                batch_dims: 0,
            },
            Gather {
                axis: 0,
                batch_dims: 1,
            },
            Gather {
                axis: 2,
                batch_dims: 3,
            },
        ] {
            assert!(infer(&bad, &params, &indices).is_err(), "{bad:?}");
        }
        let mismatched = TensorType::new(DType::I32, vec![3, 5]);
        assert!(infer(
            &Gather {
                axis: 1,
                batch_dims: 1
            },
            &params,
            &mismatched
        )
        .is_err());
        let float_indices = TensorType::new(DType::F32, vec![2]);
        assert!(infer(
            &Gather {
                axis: 0,
                batch_dims: 0
            },
            &params,
            &float_indices
        )
        .is_err());
        let nd = |shape: Vec<usize>| {
            infer(&GatherNd, &params, &TensorType::new(DType::I32, shape))
                .map(|t| t[0].shape.clone())
        };
        assert_eq!(nd(vec![7, 2]).unwrap(), vec![7, 4]);
        assert_eq!(nd(vec![3]).unwrap(), Vec::<usize>::new());
        assert_eq!(nd(vec![5, 0]).unwrap(), vec![5, 2, 3, 4]);
        assert!(nd(vec![4]).is_err());
        assert!(nd(vec![]).is_err());
    }

    #[test]
    fn gather_reference_reports_out_of_range_indices() {
        let params = Tensor::from_f32(vec![3, 2], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let gather = Gather {
            axis: 0,
            batch_dims: 0,
        };
        let good = Tensor::from_i32(vec![2], vec![2, 0]);
        assert_eq!(
            gather.evaluate(&[&params, &good]).unwrap()[0],
            Tensor::from_f32(vec![2, 2], vec![4.0, 5.0, 0.0, 1.0])
        );
        for index in [3, -1] {
            let bad = Tensor::from_i32(vec![2], vec![0, index]);
            let error = gather.evaluate(&[&params, &bad]).unwrap_err().to_string();
            assert!(error.contains("out of range"), "{error}");
        }
        let nd_indices = Tensor::from_i32(vec![1, 2], vec![2, 2]);
        assert!(GatherNd.evaluate(&[&params, &nd_indices]).is_err());
        let nd_indices = Tensor::from_i32(vec![1, 2], vec![2, 1]);
        assert_eq!(
            GatherNd.evaluate(&[&params, &nd_indices]).unwrap()[0],
            Tensor::from_f32(vec![1], vec![5.0])
        );
    }
}
