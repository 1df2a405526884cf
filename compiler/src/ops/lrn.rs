//! LRN, local response normalisation across channels (NHWC, f32), as TensorFlow defines it:
//!
//! ```text
//! sqr_sum[n, h, w, c] = Σ x[n, h, w, c']²  for c' in [c − r, c + r] ∩ [0, C)
//! out[n, h, w, c]     = x[n, h, w, c] · (bias + alpha · sqr_sum)^(−beta)
//! ```
//!
//! The kernel sums each channel's window directly (r is small in practice: 2 in AlexNet-style
//! models, 5 by default), in the reference's order and without fused multiply-adds, so the sum is
//! bitwise the reference's; a running sum that adds the entering square and subtracts the leaving
//! one would cost less for wide windows but loses small windows next to large values to
//! cancellation. The power is `1 / sqrt` for beta = 0.5, a division for beta = 1,
//! `1 / (sqrt · sqrt(sqrt))` for beta = 0.75 and `exp(−beta · log(·))` otherwise; the reference
//! uses `powf`, so results agree within a few ulps (the tests use `AbsRel(2e-6)`).

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::{Attribute, Attributes, InputFacts, OpResult, Operator};
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

/// LRN over the last axis of a 4-D f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Lrn {
    pub depth_radius: usize,
    pub bias: f32,
    pub alpha: f32,
    pub beta: f32,
}

impl Lrn {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let depth_radius = a.int("depth_radius")?;
        if depth_radius < 0 {
            return Err(invalid!("depth_radius {depth_radius} must not be negative"));
        }
        Ok(Arc::new(Lrn {
            depth_radius: depth_radius as usize,
            bias: a.float("bias")?,
            alpha: a.float("alpha")?,
            beta: a.float("beta")?,
        }))
    }

    /// The channel window of `c` among `channels`: `[start, end)`.
    fn window(&self, c: usize, channels: usize) -> (usize, usize) {
        (
            c.saturating_sub(self.depth_radius),
            (c + self.depth_radius + 1).min(channels),
        )
    }

    /// `x · base^(−beta)` in the kernel (scalars).
    fn scale(&self, k: &mut Kernel, x: Value, base: Value) -> Value {
        let beta = self.beta;
        if beta == 0.0 {
            return x;
        }
        if beta == 1.0 {
            return k.builder.ins().fdiv(x, base);
        }
        if beta == 0.5 || beta == 0.75 {
            let mut denominator = k.builder.ins().sqrt(base);
            if beta == 0.75 {
                let quarter = k.builder.ins().sqrt(denominator);
                denominator = k.builder.ins().fmul(denominator, quarter);
            }
            return k.builder.ins().fdiv(x, denominator);
        }
        let log = k.log(base);
        let factor = k.float_constant(types::F32, -beta);
        let exponent = k.builder.ins().fmul(log, factor);
        let multiplier = k.exp(exponent);
        k.builder.ins().fmul(x, multiplier)
    }
}

impl Operator for Lrn {
    fn name(&self) -> &'static str {
        "lrn"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default()
            .with("depth_radius", Attribute::Int(self.depth_radius as i64))
            .with("bias", Attribute::Float(self.bias))
            .with("alpha", Attribute::Float(self.alpha))
            .with("beta", Attribute::Float(self.beta))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let input = inputs.ty(0)?;
        if input.dtype != DType::F32 || input.rank() != 4 {
            return Err(invalid!("LRN takes a 4-D f32 tensor, got {input}"));
        }
        Ok(vec![input.clone()])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        if input.dtype() != DType::F32 || input.shape.len() != 4 {
            return Err(invalid!(
                "LRN takes a 4-D f32 tensor, got {}",
                input.tensor_type()
            ));
        }
        let values = input.to_f32_vec();
        let channels = input.shape[3];
        let mut out = vec![0.0f32; values.len()];
        for (row, chunk) in values.chunks(channels.max(1)).enumerate() {
            for c in 0..chunk.len() {
                let (start, end) = self.window(c, channels);
                let mut sum = 0.0f32;
                for &v in &chunk[start..end] {
                    sum += v * v;
                }
                let base = self.bias + self.alpha * sum;
                out[row * channels + c] = chunk[c] * base.powf(-self.beta);
            }
        }
        Ok(vec![Tensor::from_f32(input.shape.clone(), out)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let ty = kernel.inputs[0].ty.clone();
        if ty.dtype != DType::F32 || ty.rank() != 4 {
            return Err(kernel.error(format!("LRN takes a 4-D f32 tensor, got {ty}")));
        }
        let channels = ty.shape[3];
        if channels == 0 {
            return Ok(());
        }
        let rows = ty.element_count() / channels;
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let radius = self.depth_radius as i64;
        kernel.for_count(rows, &mut |k, row| {
            let first = k.builder.ins().imul_imm_s(row, channels as i64);
            k.for_count(channels, &mut |k, c| {
                // Window [max(0, c − r), min(C, c + r + 1)) with run-time bounds.
                let zero = k.iconst(0);
                let low = k.builder.ins().iadd_imm_s(c, -radius);
                let low = k.builder.ins().smax(low, zero);
                let limit = k.iconst(channels as i64);
                let high = k.builder.ins().iadd_imm_s(c, radius + 1);
                let high = k.builder.ins().smin(high, limit);
                let start = k.builder.ins().iadd(first, low);
                let end = k.builder.ins().iadd(first, high);
                let sum = k.builder.declare_var(types::F32);
                let initial = k.float_constant(types::F32, 0.0);
                k.builder.def_var(sum, initial);
                k.for_range(start, end, 1, &mut |k, position| {
                    let v = k.load(types::F32, input, position, 4);
                    let square = k.builder.ins().fmul(v, v);
                    let total = k.builder.use_var(sum);
                    let total = k.builder.ins().fadd(total, square);
                    k.builder.def_var(sum, total);
                    Ok(())
                })?;
                let total = k.builder.use_var(sum);
                let alpha = k.float_constant(types::F32, self.alpha);
                let bias = k.float_constant(types::F32, self.bias);
                let scaled = k.builder.ins().fmul(alpha, total);
                let base = k.builder.ins().fadd(bias, scaled);
                let position = k.builder.ins().iadd(first, c);
                let x = k.load(types::F32, input, position, 4);
                let result = self.scale(k, x, base);
                k.store(result, output, position, 4);
                Ok(())
            })
        })
    }

    fn flops(&self, inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        let elements = inputs.first().map_or(0, |t| t.element_count()) as u64;
        elements * (2 * (2 * self.depth_radius as u64 + 1) + 4)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// LRN(input) with attributes depth_radius (default 5), bias (1), alpha (1), beta (0.5).
pub fn import_lrn(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let fail = node_error(node);
    let attributes = NodeAttributes::of(node);
    let depth_radius = attributes.int_or("depth_radius", 5).map_err(fail)?;
    if depth_radius < 0 {
        return Err(importer.error(
            node,
            format!("depth_radius {depth_radius} must not be negative"),
        ));
    }
    let op = Lrn {
        depth_radius: depth_radius as usize,
        bias: attributes.float_or("bias", 1.0).map_err(fail)?,
        alpha: attributes.float_or("alpha", 1.0).map_err(fail)?,
        beta: attributes.float_or("beta", 0.5).map_err(fail)?,
    };
    Ok(vec![importer.add(node, op, vec![inputs[0]])])
}

pub const FAMILY: Family = Family {
    ir: &[("lrn", Lrn::parse)],
    tensorflow: &[("LRN", import_lrn)],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use crate::ops::importer::testing::{node_def, only_op};
    use tfjsc_proto::tensorflow::attr_value;

    #[test]
    fn lrn_imports_attributes_with_tensorflow_defaults() {
        for (attributes, expected) in [
            (
                vec![],
                Lrn {
                    depth_radius: 5,
                    bias: 1.0,
                    alpha: 1.0,
                    beta: 0.5,
                },
            ),
            (
                vec![
                    ("depth_radius", attr_value::Value::I(2)),
                    ("bias", attr_value::Value::F(2.0)),
                    ("alpha", attr_value::Value::F(1e-4)),
                    ("beta", attr_value::Value::F(0.75)),
                ],
                Lrn {
                    depth_radius: 2,
                    bias: 2.0,
                    alpha: 1e-4,
                    beta: 0.75,
                },
            ),
        ] {
            let mut graph = Graph::new();
            let x = graph.add_input("x", None);
            let mut importer = Importer::new(&mut graph);
            import_lrn(&mut importer, &node_def("n", "LRN", &attributes), &[x]).unwrap();
            let op = only_op(&graph);
            assert_eq!(op.as_any().downcast_ref::<Lrn>(), Some(&expected));
            assert_eq!(
                Lrn::parse(&op.attributes()).unwrap().attributes(),
                op.attributes()
            );
        }
        let mut graph = Graph::new();
        let x = graph.add_input("x", None);
        let mut importer = Importer::new(&mut graph);
        let node = node_def("n", "LRN", &[("depth_radius", attr_value::Value::I(-1))]);
        let error = import_lrn(&mut importer, &node, &[x])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"n\"") && error.contains("negative"),
            "{error}"
        );
    }

    #[test]
    fn lrn_reference_follows_the_definition() {
        let op = Lrn {
            depth_radius: 1,
            bias: 1.0,
            alpha: 0.5,
            beta: 1.0,
        };
        let x = Tensor::from_f32(vec![1, 1, 1, 3], vec![1.0, 2.0, 3.0]);
        // Sums of squares: 1 + 4, 1 + 4 + 9, 4 + 9.
        let expected = [1.0 / 3.5, 2.0 / 8.0, 3.0 / 7.5];
        let got = op.evaluate(&[&x]).unwrap()[0].to_f32_vec();
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{got:?}");
        }
        let wrong_rank = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]);
        assert!(op.evaluate(&[&wrong_rank]).is_err());
    }
}
