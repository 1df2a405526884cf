//! Block rearrangements: DepthToSpace and SpaceToDepth (NHWC, TensorFlow's DCR order), and
//! SpaceToBatchND and BatchToSpaceND (constant block shape, paddings and crops). Each is a fixed
//! gather, lowered as nested copy loops whose bounds are all known at compile time.

use std::any::Any;
use std::sync::Arc;

use super::*;
use crate::codegen::kernel::Kernel;
use crate::codegen::CodegenError;
use crate::invalid;
use crate::ir::{Tensor, TensorType, ValueId};
use crate::ops::importer::{node_error, ImportError, Importer, NodeAttributes};
use crate::ops::registry::Family;
use crate::ops::{strides_of, Attribute, Attributes, InputFacts, OpError, OpResult, Operator};
use tfjsc_proto::tensorflow::NodeDef;

/// One nest of row copies: levels of (count, source step, destination step), start offsets.
struct Piece {
    levels: Vec<(usize, i64, i64)>,
    source: i64,
    destination: i64,
}

fn lower_pieces(
    kernel: &mut Kernel,
    pieces: &[Piece],
    row: usize,
    zero_first: bool,
) -> Result<(), CodegenError> {
    let element = kernel.inputs[0].ty.dtype.size_of();
    let (input, output) = (kernel.inputs[0].pointer, kernel.outputs[0].pointer);
    if zero_first {
        // Before any thread copies its rows in (the copies are shared among the threads).
        let bytes = kernel.outputs[0].ty.byte_size();
        kernel.on_thread_zero(&mut |k| zero_bytes(k, output, bytes))?;
        kernel.barrier();
    }
    if row == 0 {
        return Ok(());
    }
    for piece in pieces {
        if piece.levels.iter().any(|l| l.0 == 0) {
            continue;
        }
        copy_rows(
            kernel,
            &piece.levels,
            piece.source,
            piece.destination,
            row,
            input,
            output,
            element,
        )?;
    }
    Ok(())
}

// ---- DepthToSpace and SpaceToDepth ----

/// DepthToSpace (`to_space`) or SpaceToDepth with block size `block`, NHWC.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthSpace {
    pub block: usize,
    pub to_space: bool,
}

impl DepthSpace {
    fn parse_with(a: &Attributes, to_space: bool) -> OpResult<Arc<dyn Operator>> {
        let block = a.int("block_size")?;
        if block < 2 {
            return Err(invalid!("block_size must be at least 2, got {block}"));
        }
        Ok(Arc::new(DepthSpace {
            block: block as usize,
            to_space,
        }))
    }

    pub fn parse_depth_to_space(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Self::parse_with(a, true)
    }

    pub fn parse_space_to_depth(a: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Self::parse_with(a, false)
    }

    fn output_shape(&self, shape: &[usize]) -> OpResult<[usize; 4]> {
        let &[n, h, w, c] = shape else {
            return Err(invalid!(
                "{} needs a 4-D NHWC input, got {shape:?}",
                self.name()
            ));
        };
        let b = self.block;
        if b > 1 << 16 {
            return Err(invalid!("block_size {b} is too large"));
        }
        if self.to_space {
            if !c.is_multiple_of(b * b) {
                return Err(invalid!(
                    "DepthToSpace: depth {c} is not divisible by block_size² = {}",
                    b * b
                ));
            }
            Ok([n, h * b, w * b, c / (b * b)])
        } else {
            if !h.is_multiple_of(b) || !w.is_multiple_of(b) {
                return Err(invalid!(
                    "SpaceToDepth: height {h} and width {w} must be divisible by block_size {b}"
                ));
            }
            Ok([n, h / b, w / b, c * b * b])
        }
    }
}

impl Operator for DepthSpace {
    fn name(&self) -> &'static str {
        if self.to_space {
            "depth_to_space"
        } else {
            "space_to_depth"
        }
    }

    fn attributes(&self) -> Attributes {
        Attributes::default().with("block_size", Attribute::Int(self.block as i64))
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(1)?;
        let input = inputs.ty(0)?;
        Ok(vec![TensorType::new(
            input.dtype,
            self.output_shape(&input.shape)?.to_vec(),
        )])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let out = self.output_shape(&input.shape)?;
        let s = strides_of(&input.shape);
        let b = self.block;
        let mut indices = Vec::with_capacity(out.iter().product());
        for n in 0..out[0] {
            for y in 0..out[1] {
                for x in 0..out[2] {
                    for c in 0..out[3] {
                        let index = if self.to_space {
                            // out[n, y, x, c] = in[n, y / b, x / b, ((y % b) * b + x % b) * C' + c]
                            let depth = ((y % b) * b + x % b) * out[3] + c;
                            n * s[0] + (y / b) * s[1] + (x / b) * s[2] + depth
                        } else {
                            // out[n, y, x, (i * b + j) * C + ch] = in[n, y * b + i, x * b + j, ch]
                            let channels = input.shape[3];
                            let (block, ch) = (c / channels, c % channels);
                            let (i, j) = (block / b, block % b);
                            n * s[0] + (y * b + i) * s[1] + (x * b + j) * s[2] + ch
                        };
                        indices.push(index);
                    }
                }
            }
        }
        Ok(vec![Tensor {
            shape: out.to_vec(),
            data: gather(&input.data, &indices),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let shape = kernel.inputs[0].ty.shape.clone();
        let out = self
            .output_shape(&shape)
            .map_err(|e| kernel.error(e.to_string()))?;
        let b = self.block as i64;
        let (is, os) = (strides_of(&shape), strides_of(&out));
        let (is, os): (Vec<i64>, Vec<i64>) = (
            is.iter().map(|&v| v as i64).collect(),
            os.iter().map(|&v| v as i64).collect(),
        );
        let (levels, row) = if self.to_space {
            let c = out[3] as i64;
            // Output order n, h, i, w, (j, c) — the last two contiguous in both.
            (
                vec![
                    (shape[0], is[0], os[0]),
                    (shape[1], is[1], b * os[1]),
                    (self.block, b * c, os[1]),
                    (shape[2], is[2], b * os[2]),
                ],
                self.block * out[3],
            )
        } else {
            let c = shape[3] as i64;
            // Output order n, ho, wo, i, (j, c).
            (
                vec![
                    (out[0], is[0], os[0]),
                    (out[1], b * is[1], os[1]),
                    (out[2], b * is[2], os[2]),
                    (self.block, is[1], b * c),
                ],
                self.block * shape[3],
            )
        };
        let piece = Piece {
            levels,
            source: 0,
            destination: 0,
        };
        lower_pieces(kernel, &[piece], row, false)
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---- SpaceToBatchND and BatchToSpaceND ----

/// Kernels emit one loop nest per block offset; more offsets than this are refused.
const MAX_BLOCK_OFFSETS: usize = 4096;

/// SpaceToBatchND (`to_batch`; input 2 is the paddings) or BatchToSpaceND (input 2 is the
/// crops); input 1 is the block shape.
#[derive(Clone, Debug, PartialEq)]
pub struct SpaceBatch {
    pub to_batch: bool,
}

/// A resolved SpaceToBatchND / BatchToSpaceND.
struct BatchPlan {
    block: Vec<usize>,
    /// Padding (SpaceToBatch) or crop (BatchToSpace) before and after, per block dimension.
    edges: Vec<(usize, usize)>,
    output: Vec<usize>,
}

impl SpaceBatch {
    pub fn parse_space_to_batch(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(SpaceBatch { to_batch: true }))
    }

    pub fn parse_batch_to_space(_: &Attributes) -> OpResult<Arc<dyn Operator>> {
        Ok(Arc::new(SpaceBatch { to_batch: false }))
    }

    fn edge_name(&self) -> &'static str {
        if self.to_batch {
            "paddings"
        } else {
            "crops"
        }
    }

    fn plan(
        &self,
        shape: &[usize],
        block: Option<&Tensor>,
        edges: Option<&Tensor>,
    ) -> OpResult<BatchPlan> {
        let constant = |t: Option<&Tensor>, what: &str| {
            t.map(|t| t.to_i64_vec()).ok_or_else(|| {
                OpError::Unsupported(format!("{what} must be a compile-time constant"))
            })
        };
        let block = constant(block, "the block shape")?;
        let edges = constant(edges, self.edge_name())?;
        let m = block.len();
        if m == 0 || m >= shape.len() {
            return Err(invalid!(
                "block shape {block:?} needs 1 to {} entries for input {shape:?}",
                shape.len().saturating_sub(1)
            ));
        }
        if block.iter().any(|&b| b < 1) {
            return Err(invalid!("block shape {block:?} must be positive"));
        }
        if edges.len() != 2 * m || edges.iter().any(|&e| e < 0) {
            return Err(invalid!(
                "{} {edges:?} must be {m}×2 non-negative values",
                self.edge_name()
            ));
        }
        let block: Vec<usize> = block.iter().map(|&b| b as usize).collect();
        let edges: Vec<(usize, usize)> = edges
            .chunks(2)
            .map(|e| (e[0] as usize, e[1] as usize))
            .collect();
        let overflow = || invalid!("block shape {block:?} and {shape:?} overflow");
        let blocks = block
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(overflow)?;
        let mut output = shape.to_vec();
        if self.to_batch {
            output[0] = shape[0].checked_mul(blocks).ok_or_else(overflow)?;
            for k in 0..m {
                let padded = shape[k + 1]
                    .checked_add(edges[k].0)
                    .and_then(|v| v.checked_add(edges[k].1))
                    .ok_or_else(overflow)?;
                if !padded.is_multiple_of(block[k]) {
                    return Err(invalid!(
                        "padded size {padded} of dimension {} is not divisible by block {}",
                        k + 1,
                        block[k]
                    ));
                }
                output[k + 1] = padded / block[k];
            }
        } else {
            if !shape[0].is_multiple_of(blocks) {
                return Err(invalid!(
                    "batch {} is not divisible by the block size product {blocks}",
                    shape[0]
                ));
            }
            output[0] = shape[0] / blocks;
            for k in 0..m {
                let full = shape[k + 1].checked_mul(block[k]).ok_or_else(overflow)?;
                if edges[k].0.saturating_add(edges[k].1) > full {
                    return Err(invalid!(
                        "crops {:?} exceed dimension {} of size {full}",
                        edges[k],
                        k + 1
                    ));
                }
                output[k + 1] = full - edges[k].0 - edges[k].1;
            }
        }
        Ok(BatchPlan {
            block,
            edges,
            output,
        })
    }

    /// Every block offset (row-major), with its index.
    fn offsets(block: &[usize]) -> Vec<Vec<usize>> {
        let count: usize = block.iter().product();
        (0..count)
            .map(|mut flat| {
                let mut offset = vec![0; block.len()];
                for k in (0..block.len()).rev() {
                    offset[k] = flat % block[k];
                    flat /= block[k];
                }
                offset
            })
            .collect()
    }
}

impl Operator for SpaceBatch {
    fn name(&self) -> &'static str {
        if self.to_batch {
            "space_to_batch"
        } else {
            "batch_to_space"
        }
    }

    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>> {
        inputs.expect_count(3)?;
        let input = inputs.ty(0)?;
        let plan = self.plan(
            &input.shape,
            Some(inputs.constant(1, "the block shape")?),
            Some(inputs.constant(2, self.edge_name())?),
        )?;
        Ok(vec![TensorType::new(input.dtype, plan.output)])
    }

    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let input = inputs[0];
        let plan = self.plan(&input.shape, inputs.get(1).copied(), inputs.get(2).copied())?;
        let m = plan.block.len();
        let (in_strides, out_strides) = (strides_of(&input.shape), strides_of(&plan.output));
        let count: usize = plan.output.iter().product();
        // The space-side tensor's batch and the position of each element in it.
        let space_batch = if self.to_batch {
            input.shape[0]
        } else {
            plan.output[0]
        };
        // (Computed only for a non-empty output, whose batch bounds the number of offsets.)
        let offsets = if count > 0 && self.to_batch {
            Self::offsets(&plan.block)
        } else {
            Vec::new()
        };
        // Padding positions read a zero appended after the input's elements.
        let padding = input.element_count();
        let mut indices = Vec::with_capacity(count);
        for flat in 0..count {
            let index: Vec<usize> = (0..plan.output.len())
                .map(|a| flat / out_strides[a] % plan.output[a])
                .collect();
            let mut source = Vec::with_capacity(index.len());
            let mut inside = true;
            if self.to_batch {
                // out[b * N + n, o..., r] = padded[n, o * block + offset(b), r]
                let (b, n) = (index[0] / space_batch, index[0] % space_batch);
                let offset = &offsets[b];
                source.push(n as i64);
                for k in 0..m {
                    let p =
                        (index[k + 1] * plan.block[k] + offset[k]) as i64 - plan.edges[k].0 as i64;
                    inside &= p >= 0 && p < input.shape[k + 1] as i64;
                    source.push(p);
                }
            } else {
                // out[n, h..., r] = in[b * N + n, (h + crop) / block, r], b from (h + crop) % block
                let mut offset = Vec::with_capacity(m);
                let mut spatial = Vec::with_capacity(m);
                for k in 0..m {
                    let h = index[k + 1] + plan.edges[k].0;
                    offset.push(h % plan.block[k]);
                    spatial.push((h / plan.block[k]) as i64);
                }
                let b = offset
                    .iter()
                    .zip(&plan.block)
                    .fold(0, |acc, (&o, &bk)| acc * bk + o);
                source.push((b * space_batch + index[0]) as i64);
                source.extend(spatial);
            }
            source.extend(index[m + 1..].iter().map(|&r| r as i64));
            indices.push(if inside {
                source
                    .iter()
                    .zip(&in_strides)
                    .map(|(&i, &s)| i as usize * s)
                    .sum()
            } else {
                padding
            });
        }
        let zero = Tensor::filled(input.dtype(), vec![1], 0.0);
        let extended = concat_data(&[&input.data, &zero.data], input.dtype());
        Ok(vec![Tensor {
            shape: plan.output,
            data: gather(&extended, &indices),
        }])
    }

    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError> {
        let shape = kernel.inputs[0].ty.shape.clone();
        let block_operand = kernel.inputs.get(1).and_then(|i| i.constant.clone());
        let edge_operand = kernel.inputs.get(2).and_then(|i| i.constant.clone());
        let plan = self
            .plan(&shape, block_operand.as_deref(), edge_operand.as_deref())
            .map_err(|e| kernel.error(e.to_string()))?;
        let m = plan.block.len();
        let blocks: usize = plan.block.iter().product();
        if blocks > MAX_BLOCK_OFFSETS {
            return Err(kernel.error(format!(
                "block shape {:?} has {blocks} offsets; kernels unroll at most {MAX_BLOCK_OFFSETS}",
                plan.block
            )));
        }
        let row: usize = shape[m + 1..].iter().product();
        let is: Vec<i64> = strides_of(&shape).iter().map(|&v| v as i64).collect();
        let os: Vec<i64> = strides_of(&plan.output).iter().map(|&v| v as i64).collect();
        // The batch-side and space-side shapes and strides.
        let (batch_shape, space_shape, batch_strides, space_strides) = if self.to_batch {
            (&plan.output, &shape, &os, &is)
        } else {
            (&shape, &plan.output, &is, &os)
        };
        let space_batch = space_shape[0];
        let mut pieces = Vec::new();
        for (b, offset) in Self::offsets(&plan.block).iter().enumerate() {
            // Batch-side position o along dimension k is space-side position
            // o * block + offset - before; keep the o whose space position is in range.
            let mut levels = vec![(space_batch, batch_strides[0], space_strides[0])];
            let mut batch_start = (b * space_batch) as i64 * batch_strides[0];
            let mut space_start = 0i64;
            for k in 0..m {
                let (block, before) = (plan.block[k] as i64, plan.edges[k].0 as i64);
                let shift = offset[k] as i64 - before;
                let space = space_shape[k + 1] as i64;
                let batch = batch_shape[k + 1] as i64;
                // 0 <= o * block + shift < space, 0 <= o < batch
                let low = (-shift + block - 1).div_euclid(block).max(0);
                let high = (space - 1 - shift).div_euclid(block).min(batch - 1);
                let count = (high - low + 1).max(0) as usize;
                batch_start += low * batch_strides[k + 1];
                space_start += (low * block + shift) * space_strides[k + 1];
                levels.push((count, batch_strides[k + 1], block * space_strides[k + 1]));
            }
            let (source, destination, levels) = if self.to_batch {
                let levels = levels.iter().map(|&(c, bs, ss)| (c, ss, bs)).collect();
                (space_start, batch_start, levels)
            } else {
                (batch_start, space_start, levels)
            };
            pieces.push(Piece {
                levels,
                source,
                destination,
            });
        }
        let padded = self.to_batch && plan.edges.iter().any(|&(a, b)| a + b > 0);
        lower_pieces(kernel, &pieces, row, padded)
    }

    fn flops(&self, _inputs: &[&TensorType], _outputs: &[TensorType]) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn block_size(node: &NodeDef) -> Result<i64, ImportError> {
    let a = NodeAttributes::of(node);
    let fail = node_error(node);
    let format = a.string_or("data_format", "NHWC").map_err(fail)?;
    if format != "NHWC" {
        return Err(fail(format!(
            "data_format {format:?} is not supported (only NHWC)"
        )));
    }
    let block = a.int("block_size").map_err(fail)?;
    if block < 2 {
        return Err(fail(format!("block_size must be at least 2, got {block}")));
    }
    Ok(block)
}

pub fn import_depth_space(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let op = DepthSpace {
        block: block_size(node)? as usize,
        to_space: node.op == "DepthToSpace",
    };
    Ok(vec![importer.add(node, op, vec![inputs[0]])])
}

pub fn import_space_batch(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    let op = SpaceBatch {
        to_batch: node.op == "SpaceToBatchND",
    };
    Ok(vec![importer.add(node, op, inputs[..3].to_vec())])
}

pub const FAMILY: Family = Family {
    ir: &[
        ("depth_to_space", DepthSpace::parse_depth_to_space),
        ("space_to_depth", DepthSpace::parse_space_to_depth),
        ("space_to_batch", SpaceBatch::parse_space_to_batch),
        ("batch_to_space", SpaceBatch::parse_batch_to_space),
    ],
    tensorflow: &[
        ("DepthToSpace", import_depth_space),
        ("SpaceToDepth", import_depth_space),
        ("SpaceToBatchND", import_space_batch),
        ("BatchToSpaceND", import_space_batch),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, Graph};
    use tfjsc_proto::tensorflow::attr_value;

    fn node(op: &str, attrs: &[(&str, attr_value::Value)]) -> NodeDef {
        crate::ops::importer::testing::node_def("n", op, attrs)
    }

    fn iota(shape: &[usize]) -> Tensor {
        let count = shape.iter().product::<usize>();
        Tensor::from_i32(shape.to_vec(), (1..=count as i32).collect())
    }

    #[test]
    fn depth_to_space_is_tensorflow_dcr() {
        // The TensorFlow documentation's example: [1, 2, 2, 4] with block 2.
        let x = iota(&[1, 2, 2, 4]);
        let op = DepthSpace {
            block: 2,
            to_space: true,
        };
        let y = op.evaluate(&[&x]).unwrap().remove(0);
        assert_eq!(y.shape, [1, 4, 4, 1]);
        assert_eq!(
            y.to_i64_vec(),
            [1, 2, 5, 6, 3, 4, 7, 8, 9, 10, 13, 14, 11, 12, 15, 16]
        );
        let back = DepthSpace {
            block: 2,
            to_space: false,
        }
        .evaluate(&[&y])
        .unwrap()
        .remove(0);
        assert_eq!(back, x);
    }

    #[test]
    fn space_to_batch_follows_tensorflow() {
        // The documentation's example: [1, 2, 2, 1] with block [2, 2] gives [4, 1, 1, 1].
        let x = iota(&[1, 2, 2, 1]);
        let block = Tensor::from_i32(vec![2], vec![2, 2]);
        let zero = Tensor::from_i32(vec![2, 2], vec![0; 4]);
        let op = SpaceBatch { to_batch: true };
        let y = op.evaluate(&[&x, &block, &zero]).unwrap().remove(0);
        assert_eq!(y.shape, [4, 1, 1, 1]);
        assert_eq!(y.to_i64_vec(), [1, 2, 3, 4]);
        // [2, 2, 4, 1] with block [2, 2] and paddings [[0, 0], [2, 0]] gives [8, 1, 3, 1].
        let x = iota(&[2, 2, 4, 1]);
        let paddings = Tensor::from_i32(vec![2, 2], vec![0, 0, 2, 0]);
        let y = op.evaluate(&[&x, &block, &paddings]).unwrap().remove(0);
        assert_eq!(y.shape, [8, 1, 3, 1]);
        assert_eq!(
            y.to_i64_vec(),
            [0, 1, 3, 0, 9, 11, 0, 2, 4, 0, 10, 12, 0, 5, 7, 0, 13, 15, 0, 6, 8, 0, 14, 16]
        );
        // BatchToSpaceND with crops undoes it.
        let back = SpaceBatch { to_batch: false }
            .evaluate(&[&y, &block, &paddings])
            .unwrap()
            .remove(0);
        assert_eq!(back, x);
    }

    #[test]
    fn import_checks_block_size_and_data_format() {
        let mut graph = Graph::new();
        let x = graph.add_input("x", Some(TensorType::new(DType::F32, vec![1, 2, 2, 8])));
        let mut importer = Importer::new(&mut graph);
        let good = node("DepthToSpace", &[("block_size", attr_value::Value::I(2))]);
        let y = import_depth_space(&mut importer, &good, &[x]).unwrap()[0];
        let nchw = node(
            "SpaceToDepth",
            &[
                ("block_size", attr_value::Value::I(2)),
                ("data_format", attr_value::Value::S(b"NCHW".to_vec())),
            ],
        );
        let error = import_depth_space(&mut importer, &nchw, &[x]).unwrap_err();
        assert!(error.to_string().contains("NCHW"), "{error}");
        let one = node("DepthToSpace", &[("block_size", attr_value::Value::I(1))]);
        assert!(import_depth_space(&mut importer, &one, &[x]).is_err());
        assert!(import_depth_space(&mut importer, &node("DepthToSpace", &[]), &[x]).is_err());
        crate::passes::PIPELINE[0].1(&mut graph).unwrap();
        assert_eq!(graph.ty(y).shape, [1, 4, 4, 2]);
    }

    #[test]
    fn bad_blocks_are_errors() {
        let block = Tensor::from_i32(vec![2], vec![2, 2]);
        let odd = Tensor::from_i32(vec![2, 2], vec![0, 1, 0, 0]);
        let op = SpaceBatch { to_batch: true };
        assert!(op.plan(&[1, 4, 4, 1], Some(&block), Some(&odd)).is_err());
        assert!(op.plan(&[1, 4, 4, 1], Some(&block), None).is_err());
        let op = SpaceBatch { to_batch: false };
        assert!(op.plan(&[3, 4, 4, 1], Some(&block), Some(&odd)).is_err());
        let too_much = Tensor::from_i32(vec![2, 2], vec![5, 4, 0, 0]);
        assert!(op
            .plan(&[4, 4, 4, 1], Some(&block), Some(&too_much))
            .is_err());
    }
}
