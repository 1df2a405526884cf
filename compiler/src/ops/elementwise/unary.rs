//! Unary math and activations.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Type, Value};

use super::*;
use crate::codegen::elementwise::lower_elementwise;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType};
use crate::ops::epilogue::EpilogueStep;
use crate::ops::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};

/// Softplus is `x` above this and `e^x` below its negation, within float epsilon (TensorFlow's
/// `-(log(epsilon) + 2)`).
const SOFTPLUS_LINEAR_ABOVE: f32 = 13.942_385;
/// SELU's constants (Klambauer et al.), as TensorFlow writes them.
const SELU_SCALE: f32 = 1.050_701;
const SELU_ALPHA: f32 = 1.673_263_2;

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
            // NaN passes through, as in TensorFlow (f32::max would drop it).
            UnaryKind::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
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
            // TensorFlow's thresholds: beyond them softplus is x or e^x within an epsilon.
            UnaryKind::Softplus if x > SOFTPLUS_LINEAR_ABOVE => x,
            UnaryKind::Softplus if x < -SOFTPLUS_LINEAR_ABOVE => x.exp(),
            UnaryKind::Softplus => x.exp().ln_1p(),
            UnaryKind::Sin => x.sin(),
            UnaryKind::Cos => x.cos(),
            UnaryKind::LogicalNot => (x == 0.0) as u8 as f32,
            UnaryKind::Swish => x / (1.0 + (-x).exp()),
            UnaryKind::Sign if x.is_nan() => x,
            UnaryKind::Sign => ((x > 0.0) as i8 - (x < 0.0) as i8) as f32,
            UnaryKind::Log1p => x.ln_1p(),
            UnaryKind::Expm1 => x.exp_m1(),
            UnaryKind::Selu if x > 0.0 => SELU_SCALE * x,
            UnaryKind::Selu => SELU_SCALE * SELU_ALPHA * (x.exp() - 1.0),
            UnaryKind::Erf => libm::erff(x),
            UnaryKind::Tan => x.tan(),
            UnaryKind::Atan => x.atan(),
            UnaryKind::Asin => x.asin(),
            UnaryKind::Acos => x.acos(),
            UnaryKind::Sinh => x.sinh(),
            UnaryKind::Cosh => x.cosh(),
            UnaryKind::Asinh => x.asinh(),
            UnaryKind::Acosh => x.acosh(),
            UnaryKind::Atanh => x.atanh(),
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
                // Compare-and-pick forms that x64 lowers to one maxps and one minps (NaN kept).
                let low = kernel.select_float(FloatCC::LessThan, x, zero, zero, x);
                kernel.select_float(FloatCC::LessThan, six, low, six, low)
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
            UnaryKind::Log => kernel.log(x),
            UnaryKind::Log1p => kernel.log1p(x),
            UnaryKind::Expm1 => kernel.expm1(x),
            UnaryKind::Softplus => {
                let e = kernel.exp(x);
                let soft = kernel.log1p(e);
                let above = kernel.float_constant(ty, SOFTPLUS_LINEAR_ABOVE);
                let below = kernel.float_constant(ty, -SOFTPLUS_LINEAR_ABOVE);
                let small = kernel.select_float(FloatCC::LessThan, x, below, e, soft);
                kernel.select_float(FloatCC::GreaterThan, x, above, x, small)
            }
            UnaryKind::Sin => kernel.sin_or_cos(x, false),
            UnaryKind::Cos => kernel.sin_or_cos(x, true),
            UnaryKind::Tan => {
                let sine = kernel.sin_or_cos(x, false);
                let cosine = kernel.sin_or_cos(x, true);
                kernel.builder.ins().fdiv(sine, cosine)
            }
            UnaryKind::Atan => kernel.atan(x),
            UnaryKind::Asin | UnaryKind::Acos => {
                // asin x = atan2(x, √(1 − x²)), acos x = atan2(√(1 − x²), x); |x| > 1 gives NaN.
                let one = kernel.float_constant(ty, 1.0);
                let below = kernel.builder.ins().fsub(one, x);
                let above = kernel.builder.ins().fadd(one, x);
                let product = kernel.builder.ins().fmul(below, above);
                let root = kernel.builder.ins().sqrt(product);
                if self.kind == UnaryKind::Asin {
                    kernel.atan2(x, root)
                } else {
                    kernel.atan2(root, x)
                }
            }
            UnaryKind::Sinh | UnaryKind::Cosh => {
                // Near 0, sinh = (expm1(x) − expm1(−x)) / 2 (exact there); cosh = (e^x + e^−x) / 2.
                // Beyond |x| = 9, e^−|x| is below the precision: e^|x| / 2, computed as
                // (e^(|x|/2) / 2) · e^(|x|/2) so it stays finite up to the result's own overflow.
                let negated = kernel.builder.ins().fneg(x);
                let half = kernel.float_constant(ty, 0.5);
                let small = if self.kind == UnaryKind::Sinh {
                    let up = kernel.expm1(x);
                    let down = kernel.expm1(negated);
                    let difference = kernel.builder.ins().fsub(up, down);
                    kernel.builder.ins().fmul(difference, half)
                } else {
                    let up = kernel.exp(x);
                    let down = kernel.exp(negated);
                    let sum = kernel.builder.ins().fadd(up, down);
                    kernel.builder.ins().fmul(sum, half)
                };
                let ax = kernel.builder.ins().fabs(x);
                let half_ax = kernel.builder.ins().fmul(ax, half);
                let root = kernel.exp(half_ax);
                let halved = kernel.builder.ins().fmul(root, half);
                let mut large = kernel.builder.ins().fmul(halved, root);
                if self.kind == UnaryKind::Sinh {
                    large = kernel.copysign(large, x);
                }
                let limit = kernel.float_constant(ty, 9.0);
                kernel.select_float(FloatCC::GreaterThan, ax, limit, large, small)
            }
            UnaryKind::Asinh => {
                // sign(x) · log1p(|x| + x² / (1 + √(1 + x²))).
                let ax = kernel.builder.ins().fabs(x);
                let one = kernel.float_constant(ty, 1.0);
                let square = kernel.builder.ins().fmul(ax, ax);
                let radicand = kernel.builder.ins().fadd(one, square);
                let root = kernel.builder.ins().sqrt(radicand);
                let denominator = kernel.builder.ins().fadd(one, root);
                let fraction = kernel.builder.ins().fdiv(square, denominator);
                let argument = kernel.builder.ins().fadd(ax, fraction);
                let small = kernel.log1p(argument);
                // For |x| ≥ 2^12, x² / (…) is |x| − 1 to float precision: log(2|x|).
                let doubled = kernel.builder.ins().fadd(ax, ax);
                let large = kernel.log(doubled);
                let limit = kernel.float_constant(ty, 4096.0);
                let value = kernel.select_float(FloatCC::GreaterThan, ax, limit, large, small);
                kernel.copysign(value, x)
            }
            UnaryKind::Acosh => {
                // log(x + √(x² − 1)) = log1p((x − 1) + √((x − 1)(x + 1))); NaN below 1.
                let one = kernel.float_constant(ty, 1.0);
                let below = kernel.builder.ins().fsub(x, one);
                let above = kernel.builder.ins().fadd(x, one);
                let product = kernel.builder.ins().fmul(below, above);
                let root = kernel.builder.ins().sqrt(product);
                let argument = kernel.builder.ins().fadd(below, root);
                let small = kernel.log1p(argument);
                let doubled = kernel.builder.ins().fadd(x, x);
                let large = kernel.log(doubled);
                let limit = kernel.float_constant(ty, 4096.0);
                let value = kernel.select_float(FloatCC::GreaterThan, x, limit, large, small);
                // Below 1 (where (x − 1)(x + 1) may overflow to +inf for huge |x|): NaN.
                let nan = kernel.float_constant(ty, f32::NAN);
                kernel.select_float(FloatCC::LessThan, x, one, nan, value)
            }
            UnaryKind::Atanh => {
                // ½ · log1p(2x / (1 − x)).
                let one = kernel.float_constant(ty, 1.0);
                let doubled = kernel.builder.ins().fadd(x, x);
                let denominator = kernel.builder.ins().fsub(one, x);
                let fraction = kernel.builder.ins().fdiv(doubled, denominator);
                let log = kernel.log1p(fraction);
                let half = kernel.float_constant(ty, 0.5);
                kernel.builder.ins().fmul(log, half)
            }
            UnaryKind::Erf => kernel.erf(x),
            UnaryKind::Selu => {
                let e = kernel.exp(x);
                let one = kernel.float_constant(ty, 1.0);
                let zero = kernel.float_constant(ty, 0.0);
                let negative = kernel.builder.ins().fsub(e, one);
                let scale_alpha = kernel.float_constant(ty, SELU_SCALE * SELU_ALPHA);
                let scale = kernel.float_constant(ty, SELU_SCALE);
                let negative = kernel.builder.ins().fmul(negative, scale_alpha);
                let positive = kernel.builder.ins().fmul(x, scale);
                kernel.select_float(FloatCC::GreaterThan, x, zero, positive, negative)
            }
            UnaryKind::Sign => {
                let zero = kernel.float_constant(ty, 0.0);
                let one = kernel.float_constant(ty, 1.0);
                let minus_one = kernel.float_constant(ty, -1.0);
                let negative = kernel.select_float(FloatCC::LessThan, x, zero, minus_one, zero);
                let value = kernel.select_float(FloatCC::GreaterThan, x, zero, one, negative);
                kernel.select_float(FloatCC::Unordered, x, x, x, value)
            }
            UnaryKind::LogicalNot => {
                return Err(kernel.error("logical_not is lowered on bool, not in f32 bodies"))
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
                UnaryKind::Neg
                | UnaryKind::Abs
                | UnaryKind::Square
                | UnaryKind::Relu
                | UnaryKind::Sign,
            ) => {
                let f = |v: i32| match self.kind {
                    UnaryKind::Neg => v.wrapping_neg(),
                    UnaryKind::Abs => v.wrapping_abs(),
                    UnaryKind::Square => v.wrapping_mul(v),
                    UnaryKind::Sign => v.signum(),
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
        match (kernel.inputs[0].ty.dtype, self.kind) {
            (DType::F32, UnaryKind::LogicalNot) => Err(kernel.error("logical_not of f32")),
            (DType::F32, _) => lower_elementwise(kernel, &|k, args, ty| self.emit(k, args[0], ty)),
            // Bools are 0 or 1 (the runtime checks inputs): not is xor with 1.
            (DType::Bool, UnaryKind::LogicalNot) => lower_elementwise(kernel, &|k, args, _| {
                Ok(k.builder.ins().bxor_imm_s(args[0], 1))
            }),
            (
                DType::I32,
                UnaryKind::Neg
                | UnaryKind::Abs
                | UnaryKind::Square
                | UnaryKind::Relu
                | UnaryKind::Sign,
            ) => {
                lower_elementwise(kernel, &|k, args, ty| {
                    let x = args[0];
                    Ok(match self.kind {
                        UnaryKind::Neg => k.builder.ins().ineg(x),
                        UnaryKind::Abs => k.builder.ins().iabs(x),
                        UnaryKind::Square => k.builder.ins().imul(x, x),
                        UnaryKind::Relu => {
                            let zero = k.int_constant(ty, 0);
                            k.builder.ins().smax(x, zero)
                        }
                        _ => {
                            // (x > 0) − (x < 0)
                            let zero = k.int_constant(ty, 0);
                            let positive = k.builder.ins().icmp(IntCC::SignedGreaterThan, x, zero);
                            let negative = k.builder.ins().icmp(IntCC::SignedLessThan, x, zero);
                            let positive = k.builder.ins().uextend(ty, positive);
                            let negative = k.builder.ins().uextend(ty, negative);
                            k.builder.ins().isub(positive, negative)
                        }
                    })
                })
            }
            (dtype, kind) => {
                Err(kernel.error(format!("no {dtype:?} kernel for `{}`", kind.text())))
            }
        }
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
