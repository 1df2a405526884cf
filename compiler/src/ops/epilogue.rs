//! Epilogues: elementwise steps a producing kernel (convolution, matrix product) applies to each
//! result while it is still in registers — bias, batch-norm scale, activation, residual add.
//!
//! Binary steps take their other operand from the op's extra inputs, in order. An operand is a
//! scalar, a per-output-channel vector (`[C]`, `[1, 1, 1, C]`, ...), or a tensor of the output's
//! own shape; anything else is not fused.

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use super::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use super::{Attribute, Attributes, OpResult, Operator};
use crate::codegen::kernel::Kernel;
use crate::codegen::microkernel::{Isa, MachineEpilogue, MachineStep, StepOperand};
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType};

/// One step of an epilogue.
#[derive(Clone, Debug, PartialEq)]
pub enum EpilogueStep {
    Unary(Unary),
    /// `result = result <kind> operand`.
    Binary(BinaryKind),
}

/// The steps, applied in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Epilogue {
    pub steps: Vec<EpilogueStep>,
}

/// How an epilogue operand lines up with the output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OperandLayout {
    Scalar,
    PerChannel,
    Full,
}

/// The layout of an operand of type `operand` against output `output`, if it is fusable.
pub fn operand_layout(output: &TensorType, operand: &TensorType) -> Option<OperandLayout> {
    if operand.dtype != DType::F32 || operand.rank() > output.rank() {
        return None;
    }
    if operand.element_count() == 1 {
        return Some(OperandLayout::Scalar);
    }
    if operand.shape == output.shape {
        return Some(OperandLayout::Full);
    }
    let channels = *output.shape.last()?;
    let trailing = *operand.shape.last()?;
    if trailing == channels && operand.element_count() == channels {
        return Some(OperandLayout::PerChannel);
    }
    None
}

impl Epilogue {
    /// The steps as machine-code kernels for `isa` apply them in registers (bias and scale per
    /// channel, a residual of the output's shape, relu, relu6; swish and sigmoid with AVX-512),
    /// given the output's and the operands' types; `None` when a step is not among those.
    pub fn machine_form(
        &self,
        isa: Isa,
        output: &TensorType,
        operands: &[&TensorType],
    ) -> Option<MachineEpilogue> {
        let mut operands = operands.iter();
        let steps: Option<Vec<MachineStep>> = self
            .steps
            .iter()
            .map(|step| match step {
                EpilogueStep::Unary(u) if u.kind == UnaryKind::Relu => Some(MachineStep::Relu),
                EpilogueStep::Unary(u) if u.kind == UnaryKind::Relu6 => Some(MachineStep::Relu6),
                EpilogueStep::Unary(u) if isa == Isa::Avx512 && u.kind == UnaryKind::Swish => {
                    Some(MachineStep::Swish)
                }
                EpilogueStep::Unary(u) if isa == Isa::Avx512 && u.kind == UnaryKind::Sigmoid => {
                    Some(MachineStep::Sigmoid)
                }
                EpilogueStep::Binary(kind @ (BinaryKind::Add | BinaryKind::Mul)) => {
                    let source = match operand_layout(output, operands.next()?)? {
                        OperandLayout::PerChannel => StepOperand::Channel,
                        OperandLayout::Full => StepOperand::Full,
                        OperandLayout::Scalar => return None,
                    };
                    Some(if *kind == BinaryKind::Add {
                        MachineStep::Add(source)
                    } else {
                        MachineStep::Mul(source)
                    })
                }
                _ => None,
            })
            .collect();
        MachineEpilogue::new(&steps?)
    }

    /// These steps followed by `step`.
    pub fn with(&self, step: &EpilogueStep) -> Epilogue {
        let mut steps = self.steps.clone();
        steps.push(step.clone());
        Epilogue { steps }
    }

    pub fn operand_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, EpilogueStep::Binary(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Text form: `"add;relu6;leaky_relu:0.2"`.
    pub fn text(&self) -> String {
        self.steps
            .iter()
            .map(|step| match step {
                EpilogueStep::Unary(u) if u.kind == UnaryKind::LeakyRelu => {
                    format!("leaky_relu:{:?}", u.alpha)
                }
                EpilogueStep::Unary(u) => u.kind.text().to_string(),
                EpilogueStep::Binary(kind) => kind.text().to_string(),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn parse(attributes: &Attributes) -> OpResult<Epilogue> {
        let text = match attributes.0.get("epilogue") {
            Some(Attribute::Str(text)) => text.clone(),
            None => String::new(),
            Some(other) => return Err(invalid!("epilogue must be a string, got {other:?}")),
        };
        let mut steps = Vec::new();
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let (name, argument) = part.split_once(':').unwrap_or((part, ""));
            if let Some(kind) = UnaryKind::from_text(name) {
                let alpha = if argument.is_empty() {
                    0.0
                } else {
                    argument
                        .parse()
                        .map_err(|_| invalid!("bad epilogue argument `{part}`"))?
                };
                steps.push(EpilogueStep::Unary(Unary { kind, alpha }));
            } else if let Some(kind) = BinaryKind::from_text(name) {
                steps.push(EpilogueStep::Binary(kind));
            } else {
                return Err(invalid!("unknown epilogue step `{part}`"));
            }
        }
        Ok(Epilogue { steps })
    }

    pub fn add_to(&self, attributes: Attributes) -> Attributes {
        if self.steps.is_empty() {
            attributes
        } else {
            attributes.with("epilogue", Attribute::Str(self.text()))
        }
    }

    /// Checks every operand is fusable against `output`.
    pub fn check_operands(&self, output: &TensorType, operands: &[&TensorType]) -> OpResult<()> {
        for operand in operands {
            if operand_layout(output, operand).is_none() {
                return Err(invalid!(
                    "epilogue operand {operand} does not line up with the output {output}"
                ));
            }
        }
        Ok(())
    }

    /// Reference evaluation of the steps on a computed result.
    pub fn evaluate(&self, mut value: Tensor, operands: &[&Tensor]) -> OpResult<Tensor> {
        let mut next = operands.iter();
        for step in &self.steps {
            value = match step {
                EpilogueStep::Unary(unary) => unary.evaluate(&[&value])?.remove(0),
                EpilogueStep::Binary(kind) => {
                    let operand = next
                        .next()
                        .ok_or_else(|| invalid!("epilogue is missing an operand"))?;
                    let shape = value.shape.clone();
                    let flattened;
                    // A per-channel operand of another rank broadcasts along the last axis.
                    let operand: &Tensor =
                        if operand.shape.len() != shape.len() && operand.element_count() > 1 {
                            flattened = operand.reshaped(vec![operand.element_count()]);
                            &flattened
                        } else {
                            operand
                        };
                    Binary::new(*kind).evaluate(&[&value, operand])?.remove(0)
                }
            };
        }
        Ok(value)
    }
}

/// Applies `epilogue` to `value` (type `ty`: f32 or f32x4) computed for output element `index`
/// (channel `channel`); operands are kernel inputs `first_operand`, `first_operand + 1`, ...
pub fn emit(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    value: Value,
    ty: Type,
    index: Value,
    channel: Value,
    first_operand: usize,
) -> Result<Value, CodegenError> {
    let mut operands = Vec::with_capacity(epilogue.operand_count());
    for operand in first_operand..first_operand + epilogue.operand_count() {
        let input = kernel
            .inputs
            .get(operand)
            .ok_or_else(|| kernel.error("epilogue operand missing"))?;
        let (pointer, layout) = (
            input.pointer,
            operand_layout(&kernel.outputs[0].ty, &input.ty),
        );
        operands.push(match layout {
            Some(OperandLayout::Scalar) => {
                let zero = kernel.iconst(0);
                let scalar = kernel.load(types::F32, pointer, zero, 4);
                if ty.is_vector() {
                    kernel.builder.ins().splat(ty, scalar)
                } else {
                    scalar
                }
            }
            Some(OperandLayout::PerChannel) => kernel.load(ty, pointer, channel, 4),
            Some(OperandLayout::Full) => kernel.load(ty, pointer, index, 4),
            None => return Err(kernel.error("epilogue operand does not line up with the output")),
        });
    }
    apply(kernel, epilogue, value, ty, &operands)
}

/// Applies `epilogue`'s steps to `value` (type `ty`), its binary steps taking `operands` in
/// order, already loaded (as `ty`).
pub fn apply(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    mut value: Value,
    ty: Type,
    operands: &[Value],
) -> Result<Value, CodegenError> {
    let mut next = operands.iter();
    for step in &epilogue.steps {
        value = match step {
            EpilogueStep::Unary(unary) => unary.emit(kernel, value, ty)?,
            EpilogueStep::Binary(kind) => {
                let &other = next
                    .next()
                    .ok_or_else(|| kernel.error("epilogue operand missing"))?;
                Binary::new(*kind).emit(kernel, value, other, ty)?
            }
        };
    }
    Ok(value)
}

/// Applies `epilogue` in place to a `rows` × `columns` block of the output starting at element
/// `first` (row stride `row_stride` elements, first channel `first_channel`): for kernels whose
/// inner loop is machine code that stores raw sums.
#[allow(clippy::too_many_arguments)]
pub fn emit_in_place(
    kernel: &mut Kernel,
    epilogue: &Epilogue,
    output: Value,
    first: Value,
    first_channel: Value,
    rows: usize,
    columns: usize,
    row_stride: usize,
    first_operand: usize,
) -> Result<(), CodegenError> {
    use crate::codegen::kernel::LANES;
    if epilogue.is_empty() {
        return Ok(());
    }
    let vector_end = columns / LANES * LANES;
    for row in 0..rows {
        let row_start = kernel
            .builder
            .ins()
            .iadd_imm_s(first, (row * row_stride) as i64);
        for (start, count, width) in [
            (0, vector_end / LANES, LANES),
            (vector_end, columns - vector_end, 1),
        ] {
            let ty = if width == LANES {
                types::F32X4
            } else {
                types::F32
            };
            kernel.for_steps(start, count, width, &mut |k, j| {
                let index = k.builder.ins().iadd(row_start, j);
                let channel = k.builder.ins().iadd(first_channel, j);
                let value = k.load(ty, output, index, 4);
                let value = emit(k, epilogue, value, ty, index, channel, first_operand)?;
                k.store(value, output, index, 4);
                Ok(())
            })?;
        }
    }
    Ok(())
}
