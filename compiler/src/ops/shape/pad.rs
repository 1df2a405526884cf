//! Constant padding (Pad, PadV2) and mirror padding (MirrorPad: REFLECT, SYMMETRIC).

use std::any::Any;
use std::sync::Arc;

use super::*;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{DType, Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use crate::ops::{strides_of, Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

// ---- Pad ----

/// `input`'s type grown by `(before, after)` pads per axis.
fn padded(input: &TensorType, pads: &[(usize, usize)]) -> TensorType {
    let shape = input
        .shape
        .iter()
        .zip(pads)
        .map(|(d, p)| d + p.0 + p.1)
        .collect();
    TensorType::new(input.dtype, shape)
}

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
        Ok(vec![padded(input, &pads)])
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

    fn as_constant_padding(&self, inputs: &InputFacts) -> Option<(Vec<(usize, usize)>, f32)> {
        let input = inputs.types.first()?;
        let fill = match inputs.constants.get(2) {
            Some(&fill) => *fill?.to_f32_vec().first()?,
            None => 0.0,
        };
        let pads = self
            .pads(input.rank(), inputs.constants.get(1).copied().flatten())
            .ok()?;
        Some((pads, fill))
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
        if input_ty.rank() == 0 {
            // A scalar has nothing to pad: the output is the input.
            return copy_rows(kernel, &[], 0, 0, 1, input, output, 4);
        }
        // The threads share the fill by the output's outermost axis of more than one index,
        // then (after a barrier) the copy by the input's.
        let outer = output_ty.shape.iter().position(|&d| d != 1);
        let fills = outer.map_or(1, |axis| output_ty.shape[axis]);
        let per_fill = output_ty.element_count() / fills.max(1);
        kernel.for_split(fills, &mut |k, index| {
            let start = k.builder.ins().imul_imm_s(index, per_fill as i64);
            k.fill_words(output, start, per_fill, bits)
        })?;
        let rank = input_ty.rank();
        if input_ty.element_count() == 0 {
            return Ok(());
        }
        kernel.barrier();
        // Copy each innermost row of the input to its place in the output.
        let in_strides = strides_of(&input_ty.shape);
        let out_strides = strides_of(&output_ty.shape);
        let row = input_ty.shape[rank - 1];
        let levels: Vec<(usize, i64, i64)> = (0..rank - 1)
            .map(|a| {
                (
                    input_ty.shape[a],
                    in_strides[a] as i64,
                    out_strides[a] as i64,
                )
            })
            .collect();
        let start: usize = pads.iter().zip(&out_strides).map(|(p, s)| p.0 * s).sum();
        let start = kernel.iconst(start as i64);
        kernel.for_nest_split(&levels, zero, start, &mut |k, source, destination| {
            k.copy_elements(input, source, output, destination, row, 4)
        })
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
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

// ---- MirrorPad ----

/// The kernel emits one loop nest per combination of (before, inside, after) runs of each axis;
/// more than this are refused.
const MAX_NESTS: usize = 4096;

/// Mirror padding; input 1 is the `[rank, 2]` paddings. REFLECT leaves out the edge element
/// (pads up to size - 1), SYMMETRIC repeats it (pads up to size).
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorPad {
    pub symmetric: bool,
}

/// One run of an axis of the output: `count` positions from output index `output`, reading
/// input indices from `input` in steps of `step` (+1 or -1).
#[derive(Clone, Copy, Debug)]
struct Segment {
    output: usize,
    count: usize,
    input: i64,
    step: i64,
}

impl MirrorPad {
    pub fn parse(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        let symmetric = match a.string("mode")? {
            "reflect" => false,
            "symmetric" => true,
            other => return Err(invalid!("unknown mirror_pad mode `{other}`")),
        };
        Ok(Arc::new(MirrorPad { symmetric }))
    }

    fn pads(&self, shape: &[usize], paddings: Option<&Tensor>) -> OpResult<Vec<(usize, usize)>> {
        let pads = Pad.pads(shape.len(), paddings)?;
        let extra = if self.symmetric { 0 } else { 1 };
        for (a, (&d, &(before, after))) in shape.iter().zip(&pads).enumerate() {
            if before + extra > d || after + extra > d {
                return Err(invalid!(
                    "{} padding ({before}, {after}) is too large for axis {a} of size {d}",
                    if self.symmetric {
                        "SYMMETRIC"
                    } else {
                        "REFLECT"
                    }
                ));
            }
        }
        Ok(pads)
    }

    /// The input index read at output index `o` of an axis of size `d`.
    fn source(&self, o: usize, d: usize, before: usize) -> usize {
        let i = o as i64 - before as i64;
        let d = d as i64;
        let shift = if self.symmetric { 1 } else { 0 };
        let mapped = if i < 0 {
            -i - shift
        } else if i >= d {
            2 * d - 2 + shift - i
        } else {
            i
        };
        mapped as usize
    }

    fn segments(&self, d: usize, (before, after): (usize, usize)) -> Vec<Segment> {
        let shift = if self.symmetric { 1 } else { 0 };
        [
            Segment {
                output: 0,
                count: before,
                input: before as i64 - shift,
                step: -1,
            },
            Segment {
                output: before,
                count: d,
                input: 0,
                step: 1,
            },
            Segment {
                output: before + d,
                count: after,
                input: d as i64 - 2 + shift,
                step: -1,
            },
        ]
        .into_iter()
        .filter(|s| s.count > 0)
        .collect()
    }
}

impl Operator for MirrorPad {
    fn name(&self) -> &'static str {
        "mirror_pad"
    }

    fn attributes(&self) -> Attributes {
        let mode = if self.symmetric {
            "symmetric"
        } else {
            "reflect"
        };
        Attributes::default().with("mode", Attribute::Str(mode.into()))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(2)?;
        let input = inputs.ty(0)?;
        let pads = self.pads(
            &input.shape,
            Some(inputs.constant(1, "MirrorPad paddings")?),
        )?;
        Ok(vec![padded(input, &pads)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let pads = self.pads(&input.shape, inputs.get(1).copied())?;
        let shape: Vec<usize> = input
            .shape
            .iter()
            .zip(&pads)
            .map(|(d, p)| d + p.0 + p.1)
            .collect();
        let out_strides = strides_of(&shape);
        let in_strides = strides_of(&input.shape);
        let indices: Vec<usize> = (0..shape.iter().product())
            .map(|flat| {
                (0..shape.len())
                    .map(|a| {
                        let o = flat / out_strides[a] % shape[a];
                        self.source(o, input.shape[a], pads[a].0) * in_strides[a]
                    })
                    .sum()
            })
            .collect();
        Ok(vec![Tensor {
            shape,
            data: gather(&input.data, &indices),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let ty = kernel.inputs[0].ty.clone();
        let paddings = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let pads = self
            .pads(&ty.shape, paddings.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        let out_shape = kernel.outputs[0].ty.shape.clone();
        if ty.element_count() == 0 {
            return Ok(());
        }
        let element = ty.dtype.size_of();
        let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
        let rank = ty.rank();
        if rank == 0 {
            return copy_rows(kernel, &[], 0, 0, 1, input, output, element);
        }
        let in_strides: Vec<i64> = strides_of(&ty.shape).iter().map(|&s| s as i64).collect();
        let out_strides: Vec<i64> = strides_of(&out_shape).iter().map(|&s| s as i64).collect();
        let segments: Vec<Vec<Segment>> = (0..rank)
            .map(|a| self.segments(ty.shape[a], pads[a]))
            .collect();
        let nests = segments
            .iter()
            .try_fold(1usize, |n, s| n.checked_mul(s.len()))
            .filter(|&n| n <= MAX_NESTS);
        if nests.is_none() {
            return Err(kernel.error(format!(
                "mirror padding of rank {rank} needs more than {MAX_NESTS} copy loops"
            )));
        }
        // Every combination of one segment per axis is one nest of copies.
        let mut choice = vec![0usize; rank];
        loop {
            let mut levels = Vec::new();
            let (mut source, mut destination) = (0i64, 0i64);
            for a in 0..rank {
                let s = segments[a][choice[a]];
                source += s.input * in_strides[a];
                destination += s.output as i64 * out_strides[a];
                levels.push((s.count, s.step * in_strides[a], out_strides[a]));
            }
            let last = segments[rank - 1][choice[rank - 1]];
            let row = if last.step == 1 {
                levels.pop();
                last.count
            } else {
                1
            };
            copy_rows(
                kernel,
                &levels,
                source,
                destination,
                row,
                input,
                output,
                element,
            )?;
            // Next combination.
            let mut a = rank;
            loop {
                if a == 0 {
                    return Ok(());
                }
                a -= 1;
                choice[a] += 1;
                if choice[a] < segments[a].len() {
                    break;
                }
                choice[a] = 0;
            }
        }
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn import_mirror_pad(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 2)?;
    let fail = node_error(node);
    let mode = NodeAttributes::of(node).string("mode").map_err(fail)?;
    let symmetric = match mode.to_ascii_uppercase().as_str() {
        "REFLECT" => false,
        "SYMMETRIC" => true,
        _ => {
            return Err(fail(format!(
                "mode {mode:?} is not supported (REFLECT or SYMMETRIC)"
            )))
        }
    };
    Ok(vec![importer.add(
        node,
        MirrorPad { symmetric },
        inputs[..2].to_vec(),
    )])
}

pub const FAMILY: Family = Family {
    ir: &[("pad", Pad::parse), ("mirror_pad", MirrorPad::parse)],
    tensorflow: &[
        ("Pad", import_pad),
        ("PadV2", import_pad),
        ("MirrorPad", import_mirror_pad),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Graph;
    use tfjsc_proto::tensorflow::attr_value;

    fn node(op: &str, attrs: &[(&str, attr_value::Value)]) -> NodeDef {
        crate::ops::importer::testing::node_def("n", op, attrs)
    }

    #[test]
    fn mirror_pad_matches_the_tensorflow_examples() {
        // tf.pad([[1, 2, 3], [4, 5, 6]], [[1, 1], [2, 2]], mode)
        let x = Tensor::from_i32(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        let paddings = Tensor::from_i32(vec![2, 2], vec![1, 1, 2, 2]);
        let reflect = MirrorPad { symmetric: false }
            .evaluate(&[&x, &paddings])
            .unwrap()
            .remove(0);
        assert_eq!(reflect.shape, [4, 7]);
        assert_eq!(
            reflect.to_i64_vec(),
            [6, 5, 4, 5, 6, 5, 4, 3, 2, 1, 2, 3, 2, 1, 6, 5, 4, 5, 6, 5, 4, 3, 2, 1, 2, 3, 2, 1]
        );
        let symmetric = MirrorPad { symmetric: true }
            .evaluate(&[&x, &paddings])
            .unwrap()
            .remove(0);
        assert_eq!(
            symmetric.to_i64_vec(),
            [2, 1, 1, 2, 3, 3, 2, 2, 1, 1, 2, 3, 3, 2, 5, 4, 4, 5, 6, 6, 5, 5, 4, 4, 5, 6, 6, 5]
        );
        let too_wide = Tensor::from_i32(vec![2, 2], vec![2, 0, 0, 0]);
        assert!(MirrorPad { symmetric: false }
            .evaluate(&[&x, &too_wide])
            .is_err());
        assert!(MirrorPad { symmetric: true }
            .evaluate(&[&x, &too_wide])
            .is_ok());
    }

    #[test]
    fn mirror_pad_import_reads_the_mode() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", None);
        let p = graph.add_constant("p", Tensor::from_i32(vec![1, 2], vec![1, 1]), None);
        let mut importer = Importer::new(&mut graph);
        for (mode, symmetric) in [("REFLECT", false), ("SYMMETRIC", true)] {
            let n = node(
                "MirrorPad",
                &[("mode", attr_value::Value::S(mode.as_bytes().to_vec()))],
            );
            let y = import_mirror_pad(&mut importer, &n, &[x, p]).unwrap()[0];
            let (_, produced) = importer.graph.producer(y).unwrap();
            let op = produced.op.as_any().downcast_ref::<MirrorPad>().unwrap();
            assert_eq!(op.symmetric, symmetric);
        }
        let bad = node(
            "MirrorPad",
            &[("mode", attr_value::Value::S(b"EDGE".to_vec()))],
        );
        let error = import_mirror_pad(&mut importer, &bad, &[x, p]).unwrap_err();
        assert!(error.to_string().contains("EDGE"), "{error}");
        assert!(import_mirror_pad(&mut importer, &node("MirrorPad", &[]), &[x, p]).is_err());
    }
}
