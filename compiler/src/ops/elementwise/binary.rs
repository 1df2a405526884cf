//! Binary arithmetic, comparisons and select, with NumPy broadcasting.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use super::*;
use crate::codegen::elementwise::{broadcast_strides, lower_elementwise};
use crate::codegen::kernel::{Kernel, KernelFailure};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorData, TensorType};
use crate::ops::epilogue::{self, Epilogue, EpilogueStep};
use crate::ops::{Attribute, Attributes, InputFacts, OpResult, Operator};

/// `z = f(x, y)` with NumPy broadcasting, then an f32 epilogue: the elementwise steps that
/// followed it (`fuse_epilogues`: a chain such as input scaling `x * a - b` runs as one pass),
/// their operands inputs 2, 3, ...
#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    pub kind: BinaryKind,
    pub epilogue: Epilogue,
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
        Binary {
            kind,
            epilogue: Epilogue::default(),
        }
    }

    pub fn parse(attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let text = attributes.string("kind")?;
        let kind =
            BinaryKind::from_text(text).ok_or_else(|| invalid!("unknown binary kind `{text}`"))?;
        Ok(Arc::new(Binary {
            kind,
            epilogue: Epilogue::parse(attributes)?,
        }))
    }

    /// The operation alone, on its two operands (the epilogue's reference applies after).
    fn evaluate_operation(&self, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
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
        Ok(result)
    }

    pub fn apply_f32(&self, x: f32, y: f32) -> f32 {
        match self.kind {
            BinaryKind::Add => x + y,
            BinaryKind::Sub => x - y,
            BinaryKind::Mul => x * y,
            BinaryKind::Div => x / y,
            // TensorFlow's DivNoNan: 0 wherever the divisor is 0, whatever the dividend.
            BinaryKind::DivNoNan if y == 0.0 => 0.0,
            BinaryKind::DivNoNan => x / y,
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
            // TensorFlow: the C remainder, moved into the divisor's sign.
            BinaryKind::FloorMod => {
                let r = x % y;
                if r != 0.0 && (r < 0.0) != (y < 0.0) {
                    r + y
                } else {
                    r
                }
            }
            BinaryKind::Pow => x.powf(y),
            BinaryKind::Atan2 => x.atan2(y),
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
            BinaryKind::DivNoNan if y == 0 => 0,
            BinaryKind::DivNoNan => x.wrapping_div(y),
            BinaryKind::FloorDiv => {
                x.div_euclid(y) - if y < 0 && x.rem_euclid(y) != 0 { 1 } else { 0 }
            }
            BinaryKind::FloorMod => ((x % y) + y) % y,
            BinaryKind::Maximum => x.max(y),
            BinaryKind::Minimum => x.min(y),
            BinaryKind::SquaredDifference => (x - y).wrapping_mul(x - y),
            BinaryKind::Pow if y < 0 => {
                return Err(invalid!(
                    "integers to negative integer powers are not allowed"
                ))
            }
            // Wrapping in i64 and truncating to i32 is wrapping in i32: the same residues.
            BinaryKind::Pow => x.wrapping_pow(y.min(u32::MAX as i64) as u32),
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
            BinaryKind::Atan2 => return Err(invalid!("atan2 of integers")),
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
            BinaryKind::DivNoNan => {
                let zero = kernel.float_constant(ty, 0.0);
                let quotient = kernel.builder.ins().fdiv(x, y);
                kernel.select_float(FloatCC::Equal, y, zero, zero, quotient)
            }
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
            BinaryKind::FloorMod => {
                // x − floor(x / y)·y, then into the divisor's sign as TensorFlow's remainder is;
                // off from the exact remainder only when x / y rounds across an integer.
                let quotient = kernel.builder.ins().fdiv(x, y);
                let floor = kernel.builder.ins().floor(quotient);
                let negated = kernel.builder.ins().fneg(floor);
                let r = kernel.multiply_add(negated, y, x);
                let zero = kernel.float_constant(ty, 0.0);
                // r and y of opposite signs (r ≠ 0): add y.
                let product = kernel.builder.ins().fmul(r, y);
                let adjusted = kernel.builder.ins().fadd(r, y);
                let r = kernel.select_float(FloatCC::LessThan, product, zero, adjusted, r);
                // y = ±inf or 0, or x infinite: the formula's NaN and inf cases follow fmod.
                let ay = kernel.builder.ins().fabs(y);
                let infinity = kernel.float_constant(ty, f32::INFINITY);
                kernel.select_float(FloatCC::Equal, ay, infinity, x, r)
            }
            BinaryKind::Pow => emit_pow(kernel, x, y, ty),
            BinaryKind::Atan2 => kernel.atan2(x, y),
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
            BinaryKind::SquaredDifference => {
                let difference = kernel.builder.ins().isub(x, y);
                kernel.builder.ins().imul(difference, difference)
            }
            BinaryKind::Div | BinaryKind::FloorDiv | BinaryKind::FloorMod => {
                // TensorFlow refuses integer division by zero; so does the kernel (x86's idiv
                // would trap). INT_MIN / −1 also traps, so −1 divides as a negation.
                kernel.check_divisor(y);
                let ty = kernel.builder.func.dfg.value_type(x);
                let minus_one = kernel.int_constant(ty, -1);
                let one = kernel.int_constant(ty, 1);
                let is_minus_one = kernel.builder.ins().icmp(IntCC::Equal, y, minus_one);
                let divisor = kernel.builder.ins().select(is_minus_one, one, y);
                let quotient = kernel.builder.ins().sdiv(x, divisor);
                let negated = kernel.builder.ins().ineg(x);
                let quotient = kernel.builder.ins().select(is_minus_one, negated, quotient);
                let product = kernel.builder.ins().imul(quotient, y);
                let remainder = kernel.builder.ins().isub(x, product);
                // Floor semantics: a non-zero remainder of the divisor's opposite sign moves
                // the quotient down by one and the remainder up by the divisor.
                let signs = kernel.builder.ins().bxor(remainder, y);
                let opposite = kernel
                    .builder
                    .ins()
                    .icmp_imm_s(IntCC::SignedLessThan, signs, 0);
                let nonzero = kernel
                    .builder
                    .ins()
                    .icmp_imm_s(IntCC::NotEqual, remainder, 0);
                let adjust = kernel.builder.ins().band(opposite, nonzero);
                match self.kind {
                    BinaryKind::Div => quotient,
                    BinaryKind::FloorDiv => {
                        let lower = kernel.builder.ins().iadd_imm_s(quotient, -1);
                        kernel.builder.ins().select(adjust, lower, quotient)
                    }
                    _ => {
                        let raised = kernel.builder.ins().iadd(remainder, y);
                        kernel.builder.ins().select(adjust, raised, remainder)
                    }
                }
            }
            BinaryKind::Pow => {
                // Square and multiply over the exponent's 31 bits (wrapping, as TensorFlow's
                // int32 pow); a negative exponent is an error there and here.
                let ty = kernel.builder.func.dfg.value_type(x);
                let non_negative =
                    kernel
                        .builder
                        .ins()
                        .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, y, 0);
                kernel.check(non_negative, KernelFailure::NegativeIntegerPower);
                let mut result = kernel.int_constant(ty, 1);
                let mut base = x;
                for bit in 0..31 {
                    let masked = kernel.builder.ins().band_imm_s(y, 1 << bit);
                    let set = kernel.builder.ins().icmp_imm_s(IntCC::NotEqual, masked, 0);
                    let product = kernel.builder.ins().imul(result, base);
                    result = kernel.builder.ins().select(set, product, result);
                    base = kernel.builder.ins().imul(base, base);
                }
                result
            }
            _ => return Err(kernel.error(format!("no i32 kernel for `{}`", self.kind.text()))),
        })
    }
}

impl Operator for Binary {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn attributes(&self) -> Attributes {
        let attributes =
            Attributes::default().with("kind", Attribute::Str(self.kind.text().into()));
        self.epilogue.add_to(attributes)
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2 + self.epilogue.operand_count())?;
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
        let output = TensorType::new(dtype, shape);
        if !self.epilogue.is_empty() {
            let operands = &inputs.types[2..];
            // The kernel broadcasts operands as NumPy does, so none may outrank the output.
            if dtype != DType::F32
                || operands
                    .iter()
                    .any(|o| o.dtype != DType::F32 || o.rank() > output.rank())
            {
                return Err(invalid!(
                    "an epilogue needs f32 results and operands of at most the output's rank"
                ));
            }
            self.epilogue.check_operands(&output, operands)?;
        }
        Ok(vec![output])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let result = self.evaluate_operation(inputs[0], inputs[1])?;
        Ok(vec![self.epilogue.evaluate(result, &inputs[2..])?])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input = kernel.inputs[0].ty.dtype;
        if input == DType::F32 && !self.kind.is_comparison() {
            // Epilogue operands are kernel inputs 2.., broadcast like the operation's own.
            return lower_elementwise(kernel, &|k, args, ty| {
                let value = self.emit(k, args[0], args[1], ty)?;
                epilogue::apply(k, &self.epilogue, value, ty, &args[2..])
            });
        }
        if !self.epilogue.is_empty() {
            return Err(kernel.error("an epilogue on a non-f32 binary operation"));
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

    /// Further steps join the epilogue of an arithmetic operation (its result f32: the fusion
    /// pass checks the fused node's types).
    fn with_epilogue_step(&self, step: &EpilogueStep) -> Option<Arc<dyn Operator>> {
        (!self.kind.is_comparison()).then(|| {
            Arc::new(Binary {
                kind: self.kind,
                epilogue: self.epilogue.with(step),
            }) as Arc<dyn Operator>
        })
    }

    fn as_epilogue_step(&self) -> Option<EpilogueStep> {
        // Kinds an epilogue applies as `result <kind> operand` on f32 registers; an operation
        // that already carries an epilogue is no single step.
        let fusable = self.epilogue.is_empty()
            && matches!(
                self.kind,
                BinaryKind::Add
                    | BinaryKind::Sub
                    | BinaryKind::Mul
                    | BinaryKind::Div
                    | BinaryKind::DivNoNan
                    | BinaryKind::Maximum
                    | BinaryKind::Minimum
                    | BinaryKind::Prelu
            );
        fusable.then_some(EpilogueStep::Binary(self.kind))
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
        if condition.dtype != DType::Bool {
            return Err(invalid!(
                "the condition is {}, not bool",
                condition.dtype.short_name()
            ));
        }
        if x.dtype != y.dtype {
            return Err(invalid!(
                "the two choices are {} and {}",
                x.dtype.short_name(),
                y.dtype.short_name()
            ));
        }
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

/// TensorFlow's Select (v1): as [`Select`], except that a vector condition with a higher-rank
/// `t` picks whole rows (`condition[i]` chooses `t[i, ...]` or `e[i, ...]`), where SelectV2's
/// broadcasting would line the vector up with the last axis.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectV1;

impl SelectV1 {
    pub fn parse(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(SelectV1))
    }

    /// The condition's shape as [`Select`] should see it: `[n]` becomes `[n, 1, ..., 1]` against
    /// a `t` of rank > 1.
    fn condition_shape(condition: &[usize], t: &[usize]) -> OpResult<Vec<usize>> {
        if condition.len() != 1 || t.len() <= 1 {
            return Ok(condition.to_vec());
        }
        if condition[0] != t[0] {
            return Err(invalid!(
                "a vector condition of {} rows does not fit {t:?}",
                condition[0]
            ));
        }
        let mut shape = vec![1; t.len()];
        shape[0] = condition[0];
        Ok(shape)
    }
}

impl Operator for SelectV1 {
    fn name(&self) -> &'static str {
        "select_v1"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(3)?;
        let condition = inputs.ty(0)?;
        let shape = Self::condition_shape(&condition.shape, &inputs.ty(1)?.shape)?;
        let viewed = TensorType::new(condition.dtype, shape);
        Select.infer(&InputFacts {
            types: vec![&viewed, inputs.ty(1)?, inputs.ty(2)?],
            constants: vec![None, None, None],
        })
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let shape = Self::condition_shape(&inputs[0].shape, &inputs[1].shape)?;
        let condition = inputs[0].reshaped(shape);
        Select.evaluate(&[&condition, inputs[1], inputs[2]])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let shape = Self::condition_shape(&kernel.inputs[0].ty.shape, &kernel.inputs[1].ty.shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        // Same bytes, viewed with the row shape.
        kernel.inputs[0].ty.shape = shape;
        Select.lower(kernel)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `x^y` as `e^(y·log|x|)` with the sign and the special cases of C's `powf`: `x^0 = 1` and
/// `1^y = 1` (even for NaN), a negative base only with an integer exponent (odd: negative
/// result), `0^y` is 0 (y > 0) or inf (y < 0). The relative error grows with |y·log x| (about
/// 1e-6 for results within 1e±10).
fn emit_pow(kernel: &mut Kernel, x: Value, y: Value, ty: Type) -> Value {
    let zero = kernel.float_constant(ty, 0.0);
    let one = kernel.float_constant(ty, 1.0);
    let half = kernel.float_constant(ty, 0.5);
    let nan = kernel.float_constant(ty, f32::NAN);
    let ax = kernel.builder.ins().fabs(x);
    let log = kernel.log(ax);
    let product = kernel.builder.ins().fmul(y, log);
    let magnitude = kernel.exp(product);
    // y integer? odd?
    let y_floor = kernel.builder.ins().floor(y);
    let y_half = kernel.builder.ins().fmul(y, half);
    let y_half_floor = kernel.builder.ins().floor(y_half);
    let is_odd = {
        let twice = kernel.builder.ins().fadd(y_half_floor, y_half_floor);
        kernel.builder.ins().fsub(y, twice)
    };
    let negative = kernel.builder.ins().fneg(magnitude);
    let signed = kernel.select_float(FloatCC::Equal, is_odd, one, negative, magnitude);
    let for_negative = kernel.select_float(FloatCC::Equal, y_floor, y, signed, nan);
    let mut result = kernel.select_float(FloatCC::LessThan, x, zero, for_negative, magnitude);
    // 0^y: ±0 (odd y keeps the sign of x) for y > 0, inf for y < 0.
    let infinity = kernel.float_constant(ty, f32::INFINITY);
    let zero_power = {
        let signed_zero = kernel.select_float(FloatCC::Equal, is_odd, one, x, zero);
        let signed_infinity = kernel.copysign(infinity, signed_zero);
        let odd_infinity =
            kernel.select_float(FloatCC::Equal, is_odd, one, signed_infinity, infinity);
        kernel.select_float(FloatCC::LessThan, y, zero, odd_infinity, signed_zero)
    };
    result = kernel.select_float(FloatCC::Equal, x, zero, zero_power, result);
    result = kernel.select_float(FloatCC::Equal, x, one, one, result);
    kernel.select_float(FloatCC::Equal, y, zero, one, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::InputFacts;

    /// A condition that is not bool, or choices of two types, are refused when types are
    /// inferred: code generation must never see them (a float condition reached Cranelift's
    /// x64 lowering, which panicked where its verifier was off).
    #[test]
    fn select_refuses_non_bool_conditions_and_mixed_choices() {
        let of = |dtype| TensorType::new(dtype, vec![3, 4]);
        let (flags, floats, ints) = (of(DType::Bool), of(DType::F32), of(DType::I32));
        let infer = |types: Vec<&TensorType>| {
            Select.infer(&InputFacts {
                constants: vec![None; types.len()],
                types,
            })
        };
        assert!(infer(vec![&flags, &floats, &floats]).is_ok());
        assert!(infer(vec![&floats, &floats, &floats]).is_err());
        assert!(infer(vec![&flags, &floats, &ints]).is_err());
    }
}
