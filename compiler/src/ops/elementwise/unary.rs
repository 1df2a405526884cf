//! Unary math and activations.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};

use super::*;
use crate::codegen::elementwise::lower_elementwise;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType};
use crate::ops::epilogue::EpilogueStep;
use crate::ops::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};

/// `y = f(x)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Unary {
    pub kind: UnaryKind,
    /// Slope for `leaky_relu`.
    pub alpha: f32,
}

impl Unary {
    pub fn new(kind: UnaryKind) -> Unary {
        Unary { kind, alpha: 0.0 }
    }

    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let text = attributes.string("kind")?;
        let kind =
            UnaryKind::from_text(text).ok_or_else(|| invalid!("unknown unary kind `{text}`"))?;
        let alpha = if kind == UnaryKind::LeakyRelu {
            attributes.float("alpha")?
        } else {
            0.0
        };
        Ok(Arc::new(Unary { kind, alpha }))
    }

    /// Reference value of one f32 element.
    pub fn apply(&self, x: f32) -> f32 {
        match self.kind {
            UnaryKind::Relu => x.max(0.0),
            UnaryKind::Relu6 => x.clamp(0.0, 6.0),
            UnaryKind::LeakyRelu => {
                if x < 0.0 {
                    x * self.alpha
                } else {
                    x
                }
            }
            UnaryKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryKind::Tanh => x.tanh(),
            UnaryKind::Exp => x.exp(),
            UnaryKind::Neg => -x,
            UnaryKind::Abs => x.abs(),
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Rsqrt => 1.0 / x.sqrt(),
            UnaryKind::Square => x * x,
            UnaryKind::Floor => x.floor(),
            UnaryKind::Ceil => x.ceil(),
            UnaryKind::Round => x.round_ties_even(),
            UnaryKind::Reciprocal => 1.0 / x,
            UnaryKind::Elu => {
                if x < 0.0 {
                    x.exp() - 1.0
                } else {
                    x
                }
            }
            UnaryKind::Log => x.ln(),
            UnaryKind::Softplus => x.exp().ln_1p(),
            UnaryKind::Sin => x.sin(),
            UnaryKind::Cos => x.cos(),
            UnaryKind::LogicalNot => (x == 0.0) as u8 as f32,
            UnaryKind::Swish => x / (1.0 + (-x).exp()),
        }
    }

    /// Emits the element body for f32 scalars or vectors.
    pub fn emit(&self, kernel: &mut Kernel, x: Value, ty: Type) -> Result<Value, CodegenError> {
        Ok(match self.kind {
            // Compare-and-select rather than fmax/fmin: NaN passes through either way, and x86
            // needs one compare and one blend instead of fmax's IEEE sequence.
            UnaryKind::Relu => {
                let zero = kernel.float_constant(ty, 0.0);
                kernel.select_float(FloatCC::LessThan, x, zero, zero, x)
            }
            UnaryKind::Relu6 => {
                let zero = kernel.float_constant(ty, 0.0);
                let six = kernel.float_constant(ty, 6.0);
                let low = kernel.select_float(FloatCC::LessThan, x, zero, zero, x);
                kernel.select_float(FloatCC::GreaterThan, low, six, six, low)
            }
            UnaryKind::LeakyRelu => {
                let alpha = kernel.float_constant(ty, self.alpha);
                let zero = kernel.float_constant(ty, 0.0);
                let scaled = kernel.builder.ins().fmul(x, alpha);
                kernel.select_float(FloatCC::LessThan, x, zero, scaled, x)
            }
            UnaryKind::Sigmoid => {
                let negated = kernel.builder.ins().fneg(x);
                let e = kernel.exp(negated);
                let one = kernel.float_constant(ty, 1.0);
                let denominator = kernel.builder.ins().fadd(one, e);
                kernel.builder.ins().fdiv(one, denominator)
            }
            UnaryKind::Swish => {
                let negated = kernel.builder.ins().fneg(x);
                let e = kernel.exp(negated);
                let one = kernel.float_constant(ty, 1.0);
                let denominator = kernel.builder.ins().fadd(one, e);
                kernel.builder.ins().fdiv(x, denominator)
            }
            UnaryKind::Tanh => {
                // tanh(x) = 1 - 2 / (e^(2x) + 1): exact at both saturations, 1e-7 absolute near 0.
                let two = kernel.float_constant(ty, 2.0);
                let one = kernel.float_constant(ty, 1.0);
                let doubled = kernel.builder.ins().fmul(x, two);
                let e = kernel.exp(doubled);
                let denominator = kernel.builder.ins().fadd(e, one);
                let fraction = kernel.builder.ins().fdiv(two, denominator);
                kernel.builder.ins().fsub(one, fraction)
            }
            UnaryKind::Exp => kernel.exp(x),
            UnaryKind::Elu => {
                let e = kernel.exp(x);
                let one = kernel.float_constant(ty, 1.0);
                let zero = kernel.float_constant(ty, 0.0);
                let negative = kernel.builder.ins().fsub(e, one);
                kernel.select_float(FloatCC::LessThan, x, zero, negative, x)
            }
            UnaryKind::Neg => kernel.builder.ins().fneg(x),
            UnaryKind::Abs => kernel.builder.ins().fabs(x),
            UnaryKind::Sqrt => kernel.builder.ins().sqrt(x),
            UnaryKind::Rsqrt => {
                let root = kernel.builder.ins().sqrt(x);
                let one = kernel.float_constant(ty, 1.0);
                kernel.builder.ins().fdiv(one, root)
            }
            UnaryKind::Square => kernel.builder.ins().fmul(x, x),
            UnaryKind::Floor => kernel.builder.ins().floor(x),
            UnaryKind::Ceil => kernel.builder.ins().ceil(x),
            UnaryKind::Round => kernel.builder.ins().nearest(x),
            UnaryKind::Reciprocal => {
                let one = kernel.float_constant(ty, 1.0);
                kernel.builder.ins().fdiv(one, x)
            }
            UnaryKind::Log
            | UnaryKind::Softplus
            | UnaryKind::Sin
            | UnaryKind::Cos
            | UnaryKind::LogicalNot => {
                return Err(kernel.error(format!("no kernel for `{}` yet", self.kind.text())))
            }
        })
    }
}

impl Operator for Unary {
    fn name(&self) -> &'static str {
        "unary"
    }

    fn attributes(&self) -> Attributes {
        let attributes =
            Attributes::default().with("kind", Attribute::Str(self.kind.text().into()));
        if self.kind == UnaryKind::LeakyRelu {
            attributes.with("alpha", Attribute::Float(self.alpha))
        } else {
            attributes
        }
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let ty = inputs.ty(0)?.clone();
        if self.kind == UnaryKind::LogicalNot {
            return Ok(vec![TensorType::new(DType::Bool, ty.shape)]);
        }
        Ok(vec![ty])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let result = match (&input.data, self.kind) {
            (TensorData::Bool(values), UnaryKind::LogicalNot) => {
                Tensor::from_bool(input.shape.clone(), values.iter().map(|v| !v).collect())
            }
            (
                TensorData::I32(values),
                UnaryKind::Neg | UnaryKind::Abs | UnaryKind::Square | UnaryKind::Relu,
            ) => {
                let f = |v: i32| match self.kind {
                    UnaryKind::Neg => v.wrapping_neg(),
                    UnaryKind::Abs => v.wrapping_abs(),
                    UnaryKind::Square => v.wrapping_mul(v),
                    _ => v.max(0),
                };
                Tensor::from_i32(input.shape.clone(), values.iter().map(|&v| f(v)).collect())
            }
            (TensorData::F32(values), _) => Tensor::from_f32(
                input.shape.clone(),
                values.iter().map(|&v| self.apply(v)).collect(),
            ),
            _ => {
                return Err(OpError::Unsupported(format!(
                    "{} on {:?}",
                    self.kind.text(),
                    input.dtype()
                )))
            }
        };
        Ok(vec![result])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        if kernel.inputs[0].ty.dtype != DType::F32 {
            return Err(kernel.error(format!("{} kernel is for f32 only", self.kind.text())));
        }
        lower_elementwise(kernel, &|k, args, ty| self.emit(k, args[0], ty))
    }

    fn flops(&self, _inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        let per_element = match self.kind {
            UnaryKind::Sigmoid
            | UnaryKind::Tanh
            | UnaryKind::Exp
            | UnaryKind::Elu
            | UnaryKind::Swish => 20,
            _ => 1,
        };
        outputs[0].element_count() as u64 * per_element
    }

    fn as_epilogue_step(&self) -> Option<EpilogueStep> {
        let fusable = matches!(
            self.kind,
            UnaryKind::Swish
                | UnaryKind::Relu
                | UnaryKind::Relu6
                | UnaryKind::LeakyRelu
                | UnaryKind::Sigmoid
                | UnaryKind::Tanh
                | UnaryKind::Elu
        );
        fusable.then(|| EpilogueStep::Unary(self.clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
