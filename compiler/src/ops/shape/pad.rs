//! Constant padding (Pad, PadV2).

use std::any::Any;
use std::sync::Arc;

use cranelift_codegen::ir::InstBuilder;

use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{ImportError, Importer};
use crate::ops::registry::Family;
use crate::ops::{strides_of, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

// ---- Pad ----

/// Constant padding; input 1 is the `[rank, 2]` paddings, optional input 2 the fill value.
#[derive(Clone, Debug, PartialEq)]
pub struct Pad;
simple_parse!(Pad, Pad);

impl Pad {
    fn pads(&self, rank: usize, paddings: Option<&Tensor>) -> OpResult<Vec<(usize, usize)>> {
        let values = paddings
            .ok_or_else(|| OpError::Unsupported("paddings must be a compile-time constant".into()))?
            .to_i64_vec();
        if values.len() != rank * 2 || values.iter().any(|&v| v < 0) {
            return Err(invalid!(
                "paddings {values:?} do not fit rank {rank} (negative padding is not supported)"
            ));
        }
        Ok(values
            .chunks(2)
            .map(|p| (p[0] as usize, p[1] as usize))
            .collect())
    }
}

impl Operator for Pad {
    fn name(&self) -> &'static str {
        "pad"
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        let input = inputs.ty(0)?;
        let pads = self.pads(input.rank(), inputs.constants.get(1).copied().flatten())?;
        if inputs.types.len() > 2 && inputs.constants.get(2).copied().flatten().is_none() {
            return Err(OpError::Unsupported(
                "the pad value must be a compile-time constant".into(),
            ));
        }
        Ok(vec![TensorType::new(
            input.dtype,
            input
                .shape
                .iter()
                .zip(&pads)
                .map(|(d, p)| d + p.0 + p.1)
                .collect(),
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let pads = self.pads(input.shape.len(), inputs.get(1).copied())?;
        let fill = inputs
            .get(2)
            .map(|t| t.to_f32_vec().first().copied().unwrap_or(0.0))
            .unwrap_or(0.0);
        let shape: Vec<usize> = input
            .shape
            .iter()
            .zip(&pads)
            .map(|(d, p)| d + p.0 + p.1)
            .collect();
        let out_strides = strides_of(&shape);
        let in_strides = strides_of(&input.shape);
        let mut out = Tensor::filled(input.dtype(), shape, fill as f64).to_f32_vec();
        let values = input.to_f32_vec();
        for (flat, &v) in values.iter().enumerate() {
            let o: usize = (0..input.shape.len())
                .map(|a| (flat / in_strides[a] % input.shape[a] + pads[a].0) * out_strides[a])
                .sum();
            out[o] = v;
        }
        let result = Tensor::from_f32(
            out_strides
                .iter()
                .zip(&input.shape)
                .zip(&pads)
                .map(|((_, d), p)| d + p.0 + p.1)
                .collect(),
            out,
        );
        Ok(vec![result.cast(input.dtype())])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let input_ty = kernel.inputs[0].ty.clone();
        let constant = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let pads = self
            .pads(input_ty.rank(), constant.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        if input_ty.dtype.size_of() != 4 {
            return Err(kernel.error("pad kernels handle 4-byte elements"));
        }
        let fill = kernel
            .inputs
            .get(2)
            .and_then(|i| i.constant.clone())
            .map(|t| t.to_f32_vec().first().copied().unwrap_or(0.0))
            .unwrap_or(0.0);
        let bits = if input_ty.dtype == DType::F32 {
            fill.to_bits()
        } else {
            fill as i32 as u32
        };
        let output_ty = kernel.outputs[0].ty.clone();
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let zero = kernel.iconst(0);
        kernel.fill_words(output, zero, output_ty.element_count(), bits)?;
        let rank = input_ty.rank();
        if rank == 0 || input_ty.element_count() == 0 {
            return Ok(());
        }
        // Copy each innermost row of the input to its place in the output.
        let in_strides = strides_of(&input_ty.shape);
        let out_strides = strides_of(&output_ty.shape);
        let row = input_ty.shape[rank - 1];
        let levels: Vec<(usize, usize, usize)> = (0..rank - 1)
            .map(|a| (input_ty.shape[a], in_strides[a], out_strides[a]))
            .collect();
        let start: usize = pads.iter().zip(&out_strides).map(|(p, s)| p.0 * s).sum();
        let start = kernel.iconst(start as i64);
        row_nest(
            kernel,
            &levels,
            zero,
            start,
            &mut |k, source, destination| {
                k.copy_elements(input, source, output, destination, row, 4)
            },
        )
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn row_nest(
    kernel: &mut Kernel,
    levels: &[(usize, usize, usize)],
    source: cranelift_codegen::ir::Value,
    destination: cranelift_codegen::ir::Value,
    body: &mut dyn FnMut(
        &mut Kernel,
        cranelift_codegen::ir::Value,
        cranelift_codegen::ir::Value,
    ) -> Result<(), CodegenError>,
) -> Result<(), CodegenError> {
    let Some((&(count, in_stride, out_stride), rest)) = levels.split_first() else {
        return body(kernel, source, destination);
    };
    kernel.for_count(count, &mut |k, i| {
        let a = k.builder.ins().imul_imm_s(i, in_stride as i64);
        let a = k.builder.ins().iadd(source, a);
        let b = k.builder.ins().imul_imm_s(i, out_stride as i64);
        let b = k.builder.ins().iadd(destination, b);
        row_nest(k, rest, a, b, body)
    })
}

pub fn import_pad(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let count = if node.op == "PadV2" { 3 } else { 2 };
    importer.expect_inputs(node, inputs, count)?;
    Ok(vec![importer.add(node, Pad, inputs[..count].to_vec())])
}

pub const FAMILY: Family = Family {
    ir: &[("pad", Pad::parse)],
    tensorflow: &[("Pad", import_pad), ("PadV2", import_pad)],
};
