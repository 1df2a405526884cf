//! TopKV2: the `k` largest entries of each last-axis row, and their int32 positions.
//!
//! Order: largest first; equal values by lower index first (TensorFlow's order). NaN counts as
//! larger than every number (NaNs among themselves by lower index): TensorFlow's comparison
//! leaves NaN unordered, so its result with NaNs depends on the sort; this is the order XLA's
//! TopK gives. With `sorted = false` TensorFlow leaves the order unspecified: the result is the
//! same sorted one.

use std::any::Any;
use std::cmp::Ordering;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, BlockArg, InstBuilder, Value};

use super::gather::scalar_constant;
use super::{Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::{scalar_type, Kernel};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

/// TopKV2 over the last axis with a constant `k`; outputs values and int32 indices.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    pub k: usize,
    pub sorted: bool,
}

impl TopK {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let k = a.int("k")?;
        if k < 0 {
            return Err(invalid!("k {k} must not be negative"));
        }
        Ok(Arc::new(TopK {
            k: k as usize,
            sorted: a.boolean("sorted")?,
        }))
    }

    /// (rows, row length, output shape).
    fn layout(&self, shape: &[usize]) -> OpResult<(usize, usize, Vec<usize>)> {
        let Some((&n, leading)) = shape.split_last() else {
            return Err(invalid!("top-k needs an input of rank ≥ 1"));
        };
        if self.k > n {
            return Err(invalid!(
                "k {} exceeds the last dimension of {shape:?}",
                self.k
            ));
        }
        let mut out = leading.to_vec();
        out.push(self.k);
        Ok((leading.iter().product(), n, out))
    }
}

/// Whether `a` comes before `b` in top-k order (NaN above every number).
fn beats(a: f32, b: f32) -> bool {
    a > b || (a.is_nan() && !b.is_nan())
}

/// The kernel's [`beats`] (`>` for integers).
fn beats_value(k: &mut Kernel, dtype: DType, a: Value, b: Value) -> Value {
    if dtype == DType::F32 {
        let greater = k.builder.ins().fcmp(FloatCC::GreaterThan, a, b);
        let a_nan = k.builder.ins().fcmp(FloatCC::Unordered, a, a);
        let b_number = k.builder.ins().fcmp(FloatCC::Ordered, b, b);
        let nan_over_number = k.builder.ins().band(a_nan, b_number);
        k.builder.ins().bor(greater, nan_over_number)
    } else {
        k.builder.ins().icmp(IntCC::SignedGreaterThan, a, b)
    }
}

impl Operator for TopK {
    fn name(&self) -> &'static str {
        "top_k"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default()
            .with("k", Attribute::Int(self.k as i64))
            .with("sorted", Attribute::Bool(self.sorted))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let input = inputs.ty(0)?;
        if !matches!(input.dtype, DType::F32 | DType::I32) {
            return Err(invalid!(
                "top-k needs f32 or i32 input, got {}",
                input.dtype.short_name()
            ));
        }
        let (_, _, shape) = self.layout(&input.shape)?;
        Ok(vec![
            TensorType::new(input.dtype, shape.clone()),
            TensorType::new(DType::I32, shape),
        ])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let (rows, n, shape) = self.layout(&input.shape)?;
        let values = match &input.data {
            TensorData::F32(v) => v.clone(),
            // i32 values compare like their f32 images except beyond 2^24: order them exactly.
            TensorData::I32(_) => Vec::new(),
            _ => return Err(invalid!("top-k needs f32 or i32 input")),
        };
        let integers = input.to_i64_vec();
        let mut picked = Vec::with_capacity(rows * self.k);
        let mut indices = Vec::with_capacity(rows * self.k);
        for row in 0..rows {
            let mut order: Vec<usize> = (0..n).collect();
            // A stable sort keeps equal values in index order.
            order.sort_by(|&a, &b| {
                let (a, b) = (row * n + a, row * n + b);
                if values.is_empty() {
                    integers[b].cmp(&integers[a])
                } else if beats(values[a], values[b]) {
                    Ordering::Less
                } else if beats(values[b], values[a]) {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            });
            for &j in &order[..self.k] {
                picked.push(row * n + j);
                indices.push(j as i32);
            }
        }
        Ok(vec![
            Tensor {
                shape: shape.clone(),
                data: super::shape::gather(&input.data, &picked),
            },
            Tensor::from_i32(shape, indices),
        ])
    }

    /// Per row, an insertion into the (sorted) outputs: each element in index order moves past
    /// the entries it beats, the last entry dropping off when `k` are held.
    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input_ty = kernel.inputs[0].ty.clone();
        let dtype = input_ty.dtype;
        let (rows, n, _) = self
            .layout(&input_ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        let k = self.k;
        if k == 0 || rows == 0 {
            return Ok(());
        }
        let ty = scalar_type(dtype);
        let (input, values, indices) = (
            kernel.inputs[0].pointer,
            kernel.outputs[0].pointer,
            kernel.outputs[1].pointer,
        );
        kernel.for_count(rows, &mut |kr, row| {
            let input_row = kr.builder.ins().imul_imm_s(row, n as i64);
            let output_row = kr.builder.ins().imul_imm_s(row, k as i64);
            kr.for_count(n, &mut |kr, j| {
                let position = kr.builder.ins().iadd(input_row, j);
                let value = kr.load(ty, input, position, 4);
                let j32 = kr.builder.ins().ireduce(types::I32, j);
                // Entries held so far: min(j, k).
                let limit = kr.iconst(k as i64);
                let held = kr.builder.ins().smin(j, limit);

                let b = &mut kr.builder;
                let header = b.create_block();
                let check = b.create_block();
                let shift = b.create_block();
                let moving = b.create_block();
                let next = b.create_block();
                let done = b.create_block();
                let place = b.create_block();
                let end = b.create_block();
                b.append_block_param(header, types::I64);
                b.append_block_param(done, types::I64);
                b.ins().jump(header, &[BlockArg::Value(held)]);

                // header(p): p > 0 ? check : done(p)
                b.switch_to_block(header);
                let p = b.block_params(header)[0];
                let positive = b.ins().icmp_imm_s(IntCC::SignedGreaterThan, p, 0);
                b.ins()
                    .brif(positive, check, &[], done, &[BlockArg::Value(p)]);

                // check: value beats entry p - 1 ? shift : done(p)
                b.switch_to_block(check);
                b.seal_block(check);
                let slot = kr.builder.ins().iadd(output_row, p);
                let previous_slot = kr.builder.ins().iadd_imm_s(slot, -1);
                let previous = kr.load(ty, values, previous_slot, 4);
                let wins = beats_value(kr, dtype, value, previous);
                let b = &mut kr.builder;
                b.ins().brif(wins, shift, &[], done, &[BlockArg::Value(p)]);

                // shift: entry p - 1 moves to p unless p is past the end (it drops off).
                b.switch_to_block(shift);
                b.seal_block(shift);
                let inside = b.ins().icmp_imm_s(IntCC::SignedLessThan, p, k as i64);
                b.ins().brif(inside, moving, &[], next, &[]);

                b.switch_to_block(moving);
                b.seal_block(moving);
                let previous_index = kr.load(types::I32, indices, previous_slot, 4);
                kr.store(previous, values, slot, 4);
                kr.store(previous_index, indices, slot, 4);
                let b = &mut kr.builder;
                b.ins().jump(next, &[]);

                b.switch_to_block(next);
                b.seal_block(next);
                let lower = b.ins().iadd_imm_s(p, -1);
                b.ins().jump(header, &[BlockArg::Value(lower)]);
                b.seal_block(header);

                // done(p): the value goes to p when p < k.
                b.switch_to_block(done);
                b.seal_block(done);
                let p = b.block_params(done)[0];
                let inside = b.ins().icmp_imm_s(IntCC::SignedLessThan, p, k as i64);
                b.ins().brif(inside, place, &[], end, &[]);

                b.switch_to_block(place);
                b.seal_block(place);
                let slot = kr.builder.ins().iadd(output_row, p);
                kr.store(value, values, slot, 4);
                kr.store(j32, indices, slot, 4);
                kr.builder.ins().jump(end, &[]);

                kr.builder.switch_to_block(end);
                kr.builder.seal_block(end);
                Ok(())
            })
        })
    }

    fn flops(&self, inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        (inputs[0].element_count() * self.k.max(1)) as u64
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// TopKV2(input, k) with a constant k; attribute `sorted` (default true).
pub fn import_top_k(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let sorted = NodeAttributes::of(node)
        .boolean_or("sorted", true)
        .map_err(node_error(node))?;
    let k = scalar_constant(importer, node, inputs[1], "k (input 1)")?;
    if k < 0 {
        return Err(importer.error(node, format!("k {k} must not be negative")));
    }
    let op = TopK {
        k: k as usize,
        sorted,
    };
    Ok(importer.add_multiple(node, op, vec![inputs[0]], 2))
}

pub const FAMILY: Family = Family {
    ir: &[("top_k", TopK::parse)],
    tensorflow: &[("TopKV2", import_top_k)],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn top_k_imports_k_and_sorted() {
        for (attributes, sorted) in [
            (vec![], true),
            (vec![("sorted", attr_value::Value::B(false))], false),
        ] {
            let mut graph = Graph::new();
            let x = graph.add_input("x", None);
            let k = graph.add_constant("k", Tensor::from_i32(vec![], vec![3]), None);
            let mut importer = Importer::new(&mut graph);
            let outputs = import_top_k(
                &mut importer,
                &node_def("t", "TopKV2", &attributes),
                &[x, k],
            )
            .unwrap();
            assert_eq!(outputs.len(), 2);
            let op = only_op(&graph);
            assert_eq!(
                op.as_any().downcast_ref::<TopK>(),
                Some(&TopK { k: 3, sorted })
            );
            assert_eq!(
                TopK::parse(&op.attributes()).unwrap().attributes(),
                op.attributes()
            );
        }
    }

    #[test]
    fn top_k_import_errors_name_the_node() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", None);
        let k = graph.add_input("k", None);
        let negative = graph.add_constant("n", Tensor::from_i32(vec![], vec![-1]), None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def("t", "TopKV2", &[]);
        let error = import_top_k(&mut importer, &node, &[x, k])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"t\"") && error.contains("compile-time constant"),
            "{error}"
        );
        let error = import_top_k(&mut importer, &node, &[x, negative])
            .unwrap_err()
            .to_string();
        assert!(error.contains("negative"), "{error}");
    }

    #[test]
    fn top_k_reference_orders_ties_and_nan() {
        let nan = f32::NAN;
        let x = Tensor::from_f32(
            vec![2, 5],
            vec![1.0, 3.0, 1.0, 3.0, 2.0, nan, 0.0, nan, 5.0, -1.0],
        );
        let result = TopK { k: 3, sorted: true }.evaluate(&[&x]).unwrap();
        assert_eq!(
            result[1],
            Tensor::from_i32(vec![2, 3], vec![1, 3, 4, 0, 2, 3])
        );
        let ty = TensorType::new(DType::F32, vec![2, 5]);
        let infer = |k: usize| {
            TopK { k, sorted: true }.infer(&InputFacts {
                types: vec![&ty],
                constants: vec![None],
            })
        };
        assert_eq!(
            infer(5).unwrap()[1],
            TensorType::new(DType::I32, vec![2, 5])
        );
        assert!(infer(6).is_err());
    }
}
