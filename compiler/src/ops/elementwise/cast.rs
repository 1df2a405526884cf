//! Dtype conversion.

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder};

use crate::codegen::elementwise::lower_elementwise;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::ir::{DType, Tensor, TensorType};
use crate::ops::{Attribute, Attributes, InputFacts, OpResult, Operator};

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
