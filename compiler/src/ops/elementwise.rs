//! Elementwise ops: unary math and activations, binary arithmetic and comparisons with NumPy
//! broadcasting, select, cast. Their per-element bodies (`Unary::emit`, `Binary::emit`) are also
//! what fused epilogues of convolutions and matrix products apply in registers.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use super::{Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use crate::codegen::elementwise::{broadcast_strides, lower_elementwise};
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::import::{ImportError, Importer, NodeAttributes};
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType, ValueId};
use tfjsc_proto::tensorflow::NodeDef;

macro_rules! named_kinds {
    ($enum_name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $enum_name { $($variant),* }
        impl $enum_name {
            pub const ALL: &'static [$enum_name] = &[$($enum_name::$variant),*];
            pub fn text(self) -> &'static str { match self { $($enum_name::$variant => $text),* } }
            pub fn from_text(text: &str) -> Option<$enum_name> {
                Self::ALL.iter().copied().find(|kind| kind.text() == text)
            }
        }
    };
}

named_kinds!(UnaryKind {
    Relu => "relu", Relu6 => "relu6", LeakyRelu => "leaky_relu", Sigmoid => "sigmoid", Tanh => "tanh",
    Exp => "exp", Neg => "neg", Abs => "abs", Sqrt => "sqrt", Rsqrt => "rsqrt", Square => "square",
    Floor => "floor", Ceil => "ceil", Round => "round", Reciprocal => "reciprocal", Elu => "elu",
    Log => "log", Softplus => "softplus", Sin => "sin", Cos => "cos", LogicalNot => "logical_not",
    Swish => "swish",
});

named_kinds!(BinaryKind {
    Add => "add", Sub => "sub", Mul => "mul", Div => "div", Maximum => "maximum", Minimum => "minimum",
    SquaredDifference => "squared_difference", Prelu => "prelu", FloorDiv => "floor_div",
    FloorMod => "floor_mod", Pow => "pow", Less => "less", LessEqual => "less_equal",
    Greater => "greater", GreaterEqual => "greater_equal", Equal => "equal", NotEqual => "not_equal",
    LogicalAnd => "logical_and", LogicalOr => "logical_or",
});

impl BinaryKind {
    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryKind::Less
                | BinaryKind::LessEqual
                | BinaryKind::Greater
                | BinaryKind::GreaterEqual
                | BinaryKind::Equal
                | BinaryKind::NotEqual
                | BinaryKind::LogicalAnd
                | BinaryKind::LogicalOr
        )
    }
}

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
            UnaryKind::Relu => {
                let zero = kernel.float_constant(ty, 0.0);
                kernel.builder.ins().fmax(x, zero)
            }
            UnaryKind::Relu6 => {
                let zero = kernel.float_constant(ty, 0.0);
                let six = kernel.float_constant(ty, 6.0);
                let low = kernel.builder.ins().fmax(x, zero);
                kernel.builder.ins().fmin(low, six)
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

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `z = f(x, y)` with NumPy broadcasting.
#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    pub kind: BinaryKind,
}

/// The broadcast shape of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut shape = vec![0; rank];
    for axis in 0..rank {
        let x = if axis + a.len() >= rank {
            a[axis + a.len() - rank]
        } else {
            1
        };
        let y = if axis + b.len() >= rank {
            b[axis + b.len() - rank]
        } else {
            1
        };
        shape[axis] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(invalid!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(shape)
}

/// For each output element, the index of the element of an input of `input_shape` it reads.
pub fn broadcast_indices(input_shape: &[usize], output_shape: &[usize]) -> Vec<usize> {
    let strides = broadcast_strides(input_shape, output_shape);
    let count: usize = output_shape.iter().product();
    let mut indices = Vec::with_capacity(count);
    let mut position = vec![0usize; output_shape.len()];
    for _ in 0..count {
        indices.push(position.iter().zip(&strides).map(|(p, s)| p * s).sum());
        for axis in (0..output_shape.len()).rev() {
            position[axis] += 1;
            if position[axis] < output_shape[axis] {
                break;
            }
            position[axis] = 0;
        }
    }
    indices
}

impl Binary {
    pub fn new(kind: BinaryKind) -> Binary {
        Binary { kind }
    }

    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let text = attributes.string("kind")?;
        let kind =
            BinaryKind::from_text(text).ok_or_else(|| invalid!("unknown binary kind `{text}`"))?;
        Ok(Arc::new(Binary { kind }))
    }

    pub fn apply_f32(&self, x: f32, y: f32) -> f32 {
        match self.kind {
            BinaryKind::Add => x + y,
            BinaryKind::Sub => x - y,
            BinaryKind::Mul => x * y,
            BinaryKind::Div => x / y,
            BinaryKind::Maximum => {
                if x.is_nan() || y.is_nan() {
                    f32::NAN
                } else {
                    x.max(y)
                }
            }
            BinaryKind::Minimum => {
                if x.is_nan() || y.is_nan() {
                    f32::NAN
                } else {
                    x.min(y)
                }
            }
            BinaryKind::SquaredDifference => (x - y) * (x - y),
            BinaryKind::Prelu => {
                if x < 0.0 {
                    x * y
                } else {
                    x
                }
            }
            BinaryKind::FloorDiv => (x / y).floor(),
            BinaryKind::FloorMod => x - (x / y).floor() * y,
            BinaryKind::Pow => x.powf(y),
            BinaryKind::Less => (x < y) as u8 as f32,
            BinaryKind::LessEqual => (x <= y) as u8 as f32,
            BinaryKind::Greater => (x > y) as u8 as f32,
            BinaryKind::GreaterEqual => (x >= y) as u8 as f32,
            BinaryKind::Equal => (x == y) as u8 as f32,
            BinaryKind::NotEqual => (x != y) as u8 as f32,
            BinaryKind::LogicalAnd => (x != 0.0 && y != 0.0) as u8 as f32,
            BinaryKind::LogicalOr => (x != 0.0 || y != 0.0) as u8 as f32,
        }
    }

    fn apply_i64(&self, x: i64, y: i64) -> OpResult<i64> {
        Ok(match self.kind {
            BinaryKind::Add => x.wrapping_add(y),
            BinaryKind::Sub => x.wrapping_sub(y),
            BinaryKind::Mul => x.wrapping_mul(y),
            BinaryKind::Div | BinaryKind::FloorDiv if y == 0 => {
                return Err(invalid!("integer division by zero"))
            }
            BinaryKind::FloorMod if y == 0 => return Err(invalid!("integer division by zero")),
            BinaryKind::Div => x.wrapping_div(y),
            BinaryKind::FloorDiv => {
                x.div_euclid(y) - if y < 0 && x.rem_euclid(y) != 0 { 1 } else { 0 }
            }
            BinaryKind::FloorMod => ((x % y) + y) % y,
            BinaryKind::Maximum => x.max(y),
            BinaryKind::Minimum => x.min(y),
            BinaryKind::SquaredDifference => (x - y).wrapping_mul(x - y),
            BinaryKind::Pow => x.wrapping_pow(y.clamp(0, u32::MAX as i64) as u32),
            BinaryKind::Prelu => {
                if x < 0 {
                    x * y
                } else {
                    x
                }
            }
            BinaryKind::Less => (x < y) as i64,
            BinaryKind::LessEqual => (x <= y) as i64,
            BinaryKind::Greater => (x > y) as i64,
            BinaryKind::GreaterEqual => (x >= y) as i64,
            BinaryKind::Equal => (x == y) as i64,
            BinaryKind::NotEqual => (x != y) as i64,
            BinaryKind::LogicalAnd => (x != 0 && y != 0) as i64,
            BinaryKind::LogicalOr => (x != 0 || y != 0) as i64,
        })
    }

    /// Emits the element body for f32 scalars or vectors (`x` and `y` of type `ty`).
    pub fn emit(
        &self,
        kernel: &mut Kernel,
        x: Value,
        y: Value,
        ty: Type,
    ) -> Result<Value, CodegenError> {
        Ok(match self.kind {
            BinaryKind::Add => kernel.builder.ins().fadd(x, y),
            BinaryKind::Sub => kernel.builder.ins().fsub(x, y),
            BinaryKind::Mul => kernel.builder.ins().fmul(x, y),
            BinaryKind::Div => kernel.builder.ins().fdiv(x, y),
            BinaryKind::Maximum => kernel.builder.ins().fmax(x, y),
            BinaryKind::Minimum => kernel.builder.ins().fmin(x, y),
            BinaryKind::SquaredDifference => {
                let difference = kernel.builder.ins().fsub(x, y);
                kernel.builder.ins().fmul(difference, difference)
            }
            BinaryKind::Prelu => {
                let zero = kernel.float_constant(ty, 0.0);
                let scaled = kernel.builder.ins().fmul(x, y);
                kernel.select_float(FloatCC::LessThan, x, zero, scaled, x)
            }
            BinaryKind::FloorDiv => {
                let quotient = kernel.builder.ins().fdiv(x, y);
                kernel.builder.ins().floor(quotient)
            }
            _ => return Err(kernel.error(format!("no f32 kernel for `{}`", self.kind.text()))),
        })
    }

    fn emit_scalar_mixed(
        &self,
        kernel: &mut Kernel,
        args: &[Value],
        input: DType,
    ) -> Result<Value, CodegenError> {
        let (x, y) = (args[0], args[1]);
        if self.kind.is_comparison() {
            let flag = match input {
                DType::F32 => {
                    let cc = match self.kind {
                        BinaryKind::Less => FloatCC::LessThan,
                        BinaryKind::LessEqual => FloatCC::LessThanOrEqual,
                        BinaryKind::Greater => FloatCC::GreaterThan,
                        BinaryKind::GreaterEqual => FloatCC::GreaterThanOrEqual,
                        BinaryKind::Equal => FloatCC::Equal,
                        BinaryKind::NotEqual => FloatCC::NotEqual,
                        _ => return Err(kernel.error("logical op on f32")),
                    };
                    kernel.builder.ins().fcmp(cc, x, y)
                }
                DType::I32 | DType::Bool => match self.kind {
                    BinaryKind::LogicalAnd => kernel.builder.ins().band(x, y),
                    BinaryKind::LogicalOr => kernel.builder.ins().bor(x, y),
                    kind => {
                        let cc = match kind {
                            BinaryKind::Less => IntCC::SignedLessThan,
                            BinaryKind::LessEqual => IntCC::SignedLessThanOrEqual,
                            BinaryKind::Greater => IntCC::SignedGreaterThan,
                            BinaryKind::GreaterEqual => IntCC::SignedGreaterThanOrEqual,
                            BinaryKind::Equal => IntCC::Equal,
                            _ => IntCC::NotEqual,
                        };
                        kernel.builder.ins().icmp(cc, x, y)
                    }
                },
                DType::I64 => return Err(kernel.error("i64 comparison kernel")),
            };
            return Ok(flag);
        }
        if input != DType::I32 {
            return Err(kernel.error(format!("no {input:?} kernel for `{}`", self.kind.text())));
        }
        Ok(match self.kind {
            BinaryKind::Add => kernel.builder.ins().iadd(x, y),
            BinaryKind::Sub => kernel.builder.ins().isub(x, y),
            BinaryKind::Mul => kernel.builder.ins().imul(x, y),
            BinaryKind::Maximum => kernel.builder.ins().smax(x, y),
            BinaryKind::Minimum => kernel.builder.ins().smin(x, y),
            _ => return Err(kernel.error(format!("no i32 kernel for `{}`", self.kind.text()))),
        })
    }
}

impl Operator for Binary {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default().with("kind", Attribute::Str(self.kind.text().into()))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2)?;
        let (a, b) = (inputs.ty(0)?, inputs.ty(1)?);
        if a.dtype != b.dtype {
            return Err(invalid!("operand dtypes differ: {a} and {b}"));
        }
        let shape = broadcast_shapes(&a.shape, &b.shape)?;
        let dtype = if self.kind.is_comparison() {
            DType::Bool
        } else {
            a.dtype
        };
        Ok(vec![TensorType::new(dtype, shape)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (a, b) = (inputs[0], inputs[1]);
        let shape = broadcast_shapes(&a.shape, &b.shape)?;
        let left = broadcast_indices(&a.shape, &shape);
        let right = broadcast_indices(&b.shape, &shape);
        let result = match (&a.data, &b.data) {
            (TensorData::F32(x), TensorData::F32(y)) => {
                let values: Vec<f32> = left
                    .iter()
                    .zip(&right)
                    .map(|(&i, &j)| self.apply_f32(x[i], y[j]))
                    .collect();
                if self.kind.is_comparison() {
                    Tensor::from_bool(shape, values.iter().map(|&v| v != 0.0).collect())
                } else {
                    Tensor::from_f32(shape, values)
                }
            }
            _ => {
                let (x, y) = (a.to_i64_vec(), b.to_i64_vec());
                let values: Vec<i64> = left
                    .iter()
                    .zip(&right)
                    .map(|(&i, &j)| self.apply_i64(x[i], y[j]))
                    .collect::<OpResult<_>>()?;
                if self.kind.is_comparison() {
                    Tensor::from_bool(shape, values.iter().map(|&v| v != 0).collect())
                } else {
                    Tensor::from_i64(shape, values).cast(a.dtype())
                }
            }
        };
        Ok(vec![result])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input = kernel.inputs[0].ty.dtype;
        if input == DType::F32 && !self.kind.is_comparison() {
            return lower_elementwise(kernel, &|k, args, ty| self.emit(k, args[0], args[1], ty));
        }
        lower_elementwise(kernel, &|k, args, ty| {
            let value = self.emit_scalar_mixed(k, args, input)?;
            Ok(
                if ty == types::I8 && k.builder.func.dfg.value_type(value) != types::I8 {
                    k.builder.ins().ireduce(types::I8, value)
                } else {
                    value
                },
            )
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `condition ? x : y` elementwise with broadcasting (TensorFlow SelectV2).
#[derive(Clone, Debug, PartialEq)]
pub struct Select;

impl Select {
    pub fn parse(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Select))
    }
}

impl Operator for Select {
    fn name(&self) -> &'static str {
        "select"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(3)?;
        let (condition, x, y) = (inputs.ty(0)?, inputs.ty(1)?, inputs.ty(2)?);
        let shape = broadcast_shapes(&broadcast_shapes(&condition.shape, &x.shape)?, &y.shape)?;
        Ok(vec![TensorType::new(x.dtype, shape)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (condition, x, y) = (inputs[0], inputs[1], inputs[2]);
        let shape = broadcast_shapes(&broadcast_shapes(&condition.shape, &x.shape)?, &y.shape)?;
        let flags = condition.to_i64_vec();
        let (ci, xi, yi) = (
            broadcast_indices(&condition.shape, &shape),
            broadcast_indices(&x.shape, &shape),
            broadcast_indices(&y.shape, &shape),
        );
        let pick = |k: usize| flags[ci[k]] != 0;
        let count = ci.len();
        Ok(vec![match (&x.data, &y.data) {
            (TensorData::F32(a), TensorData::F32(b)) => Tensor::from_f32(
                shape,
                (0..count)
                    .map(|k| if pick(k) { a[xi[k]] } else { b[yi[k]] })
                    .collect(),
            ),
            _ => {
                let (a, b) = (x.to_i64_vec(), y.to_i64_vec());
                Tensor::from_i64(
                    shape,
                    (0..count)
                        .map(|k| if pick(k) { a[xi[k]] } else { b[yi[k]] })
                        .collect(),
                )
                .cast(x.dtype())
            }
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        lower_elementwise(kernel, &|k, args, _| {
            Ok(k.builder.ins().select(args[0], args[1], args[2]))
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Dtype conversion (TensorFlow Cast: float to integer truncates toward zero).
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    pub to: DType,
}

impl Cast {
    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(Cast {
            to: attributes.dtype("to")?,
        }))
    }
}

impl Operator for Cast {
    fn name(&self) -> &'static str {
        "cast"
    }

    fn attributes(&self) -> Attributes {
        Attributes::default().with("to", Attribute::Type(self.to))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        Ok(vec![TensorType::new(self.to, inputs.ty(0)?.shape.clone())])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        Ok(vec![inputs[0].cast(self.to)])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let from = kernel.inputs[0].ty.dtype;
        let to = self.to;
        lower_elementwise(kernel, &|k, args, _| {
            let x = args[0];
            Ok(match (from, to) {
                (a, b) if a == b => x,
                (DType::F32, DType::I32) => k.builder.ins().fcvt_to_sint_sat(types::I32, x),
                (DType::I32, DType::F32) => k.builder.ins().fcvt_from_sint(types::F32, x),
                (DType::Bool, DType::F32) => k.builder.ins().fcvt_from_uint(types::F32, x),
                (DType::Bool, DType::I32) => k.builder.ins().uextend(types::I32, x),
                (DType::F32, DType::Bool) => {
                    let zero = k.float_constant(types::F32, 0.0);
                    k.builder.ins().fcmp(FloatCC::NotEqual, x, zero)
                }
                (DType::I32, DType::Bool) => k.builder.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
                _ => return Err(k.error(format!("no cast kernel from {from:?} to {to:?}"))),
            })
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---- import from TensorFlow ----

/// TensorFlow unary op names and their kinds.
pub const TF_UNARY: &[(&str, UnaryKind)] = &[
    ("Relu", UnaryKind::Relu),
    ("Relu6", UnaryKind::Relu6),
    ("Sigmoid", UnaryKind::Sigmoid),
    ("Tanh", UnaryKind::Tanh),
    ("Exp", UnaryKind::Exp),
    ("Neg", UnaryKind::Neg),
    ("Abs", UnaryKind::Abs),
    ("Sqrt", UnaryKind::Sqrt),
    ("Rsqrt", UnaryKind::Rsqrt),
    ("Square", UnaryKind::Square),
    ("Floor", UnaryKind::Floor),
    ("Ceil", UnaryKind::Ceil),
    ("Round", UnaryKind::Round),
    ("Reciprocal", UnaryKind::Reciprocal),
    ("Elu", UnaryKind::Elu),
    ("Log", UnaryKind::Log),
    ("Softplus", UnaryKind::Softplus),
    ("Sin", UnaryKind::Sin),
    ("Cos", UnaryKind::Cos),
    ("LogicalNot", UnaryKind::LogicalNot),
];

/// TensorFlow binary op names and their kinds.
pub const TF_BINARY: &[(&str, BinaryKind)] = &[
    ("Add", BinaryKind::Add),
    ("AddV2", BinaryKind::Add),
    ("BiasAdd", BinaryKind::Add),
    ("Sub", BinaryKind::Sub),
    ("Mul", BinaryKind::Mul),
    ("RealDiv", BinaryKind::Div),
    ("Div", BinaryKind::Div),
    ("DivNoNan", BinaryKind::Div),
    ("Maximum", BinaryKind::Maximum),
    ("Minimum", BinaryKind::Minimum),
    ("SquaredDifference", BinaryKind::SquaredDifference),
    ("Prelu", BinaryKind::Prelu),
    ("FloorDiv", BinaryKind::FloorDiv),
    ("FloorMod", BinaryKind::FloorMod),
    ("Pow", BinaryKind::Pow),
    ("Less", BinaryKind::Less),
    ("LessEqual", BinaryKind::LessEqual),
    ("Greater", BinaryKind::Greater),
    ("GreaterEqual", BinaryKind::GreaterEqual),
    ("Equal", BinaryKind::Equal),
    ("NotEqual", BinaryKind::NotEqual),
    ("LogicalAnd", BinaryKind::LogicalAnd),
    ("LogicalOr", BinaryKind::LogicalOr),
];

pub fn import_unary(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let kind = TF_UNARY
        .iter()
        .find(|(name, _)| *name == node.op)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| importer.error(node, "not a unary op"))?;
    importer.expect_inputs(node, inputs, 1)?;
    Ok(vec![importer.add(
        node,
        Unary { kind, alpha: 0.0 },
        vec![inputs[0]],
    )])
}

pub fn import_leaky_relu(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let alpha = NodeAttributes::of(node)
        .float_or("alpha", 0.2)
        .map_err(|e| importer.error(node, e))?;
    Ok(vec![importer.add(
        node,
        Unary {
            kind: UnaryKind::LeakyRelu,
            alpha,
        },
        vec![inputs[0]],
    )])
}

pub fn import_binary(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let kind = TF_BINARY
        .iter()
        .find(|(name, _)| *name == node.op)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| importer.error(node, "not a binary op"))?;
    importer.expect_inputs(node, inputs, 2)?;
    if node.op == "BiasAdd" {
        let format = NodeAttributes::of(node)
            .string_or("data_format", "NHWC")
            .map_err(|e| importer.error(node, e))?;
        if format != "NHWC" {
            return Err(importer.error(
                node,
                format!("BiasAdd data_format {format} is not supported (NHWC only)"),
            ));
        }
    }
    Ok(vec![importer.add(node, Binary { kind }, inputs.to_vec())])
}

/// AddN: a left-to-right chain of adds.
pub fn import_add_n(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let Some((&first, rest)) = inputs.split_first() else {
        return Err(importer.error(node, "AddN needs at least one input"));
    };
    let mut total = first;
    for (index, &next) in rest.iter().enumerate() {
        let name = if index + 1 == rest.len() {
            node.name.clone()
        } else {
            format!("{}/add{index}", node.name)
        };
        total = importer.add_named(
            &name,
            Binary {
                kind: BinaryKind::Add,
            },
            vec![total, next],
        );
    }
    Ok(vec![total])
}

pub fn import_select(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    Ok(vec![importer.add(node, Select, inputs.to_vec())])
}

pub fn import_cast(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let to = NodeAttributes::of(node)
        .dtype("DstT")
        .map_err(|e| importer.error(node, e))?;
    Ok(vec![importer.add(node, Cast { to }, vec![inputs[0]])])
}

/// ClipByValue(x, low, high) = min(max(x, low), high).
pub fn import_clip(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    let low = importer.add_named(
        &format!("{}/max", node.name),
        Binary {
            kind: BinaryKind::Maximum,
        },
        vec![inputs[0], inputs[1]],
    );
    Ok(vec![importer.add(
        node,
        Binary {
            kind: BinaryKind::Minimum,
        },
        vec![low, inputs[2]],
    )])
}
