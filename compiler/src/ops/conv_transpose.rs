//! Conv2DBackpropInput, the transposed convolution Keras' Conv2DTranspose emits, imported as a
//! composition of existing ops so that it runs on the convolution kernels (micro-kernels and
//! epilogue fusion included):
//!
//! 1. `out_backprop` `[N, Ho, Wo, M]` is spread by the strides: reshaped to
//!    `[N, Ho, 1, Wo, 1, M]`, padded with `s - 1` zeros after each element and reshaped back to
//!    `[N, Ho·sh, Wo·sw, M]` (no data moves for the reshapes);
//! 2. where the spread input is longer than the convolution needs, the surplus trailing zeros are
//!    sliced off;
//! 3. a stride-1 convolution with explicit padding and the filter flipped in both spatial axes,
//!    its channel axes swapped (computed at import: the filter must be a constant), gives `dx`.
//!
//! Why this is exact: the forward convolution computes `y[o] = Σ_k x[o·s + k − p] w[k]` (per
//! axis, `p` its padding before), so `dx[i] = Σ_{o,k : o·s + k − p = i} dy[o] w[k]`. With `D` the
//! spread `dy` (`D[o·s] = dy[o]`, zero elsewhere) that is `Σ_k D[i + p − k] w[k]`, a correlation
//! of `D` padded by `kh − 1 − p` before with the flipped filter. The spread costs `sh·sw` times
//! the multiply-adds of a direct kernel (zeros are multiplied); see issue 11.

use tfjsc_proto::tensorflow::NodeDef;

use super::conv::{tf_pair, Conv2d};
use super::epilogue::Epilogue;
use super::importer::{node_error, ImportError, Importer, NodeAttributes};
use super::registry::Family;
use super::shape::{Pad, Reshape, ReshapeMode, StridedSlice, Transpose};
use super::window::Padding;
use crate::ir::{DType, Tensor, ValueId};

/// Conv2DBackpropInput(input_sizes, filter, out_backprop).
pub fn import_conv2d_backprop_input(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    let attributes = NodeAttributes::of(node);
    let fail = node_error(node);
    let format = attributes.string_or("data_format", "NHWC").map_err(fail)?;
    let strides = tf_pair(&attributes, "strides", &format).map_err(fail)?;
    let dilations = tf_pair(&attributes, "dilations", &format).map_err(fail)?;
    if dilations != [1, 1] {
        return Err(fail(format!(
            "dilations {dilations:?} are not supported (TF.js supports none either)"
        )));
    }
    let padding = Padding::from_tf(&attributes).map_err(fail)?;
    // input_sizes is often computed from the input's Shape (Keras with a dynamic batch): with
    // static input shapes it folds, so ask for it after inference of the graph so far.
    let mut constant = |value: ValueId, what: &str| {
        importer
            .constant_value(value)
            .ok_or_else(|| fail(format!("{what} must be a compile-time constant")))
    };
    let sizes = constant(inputs[0], "input_sizes")?.to_i64_vec();
    let filter = constant(inputs[1], "filter")?;
    let [batch, height, width, channels] = <[i64; 4]>::try_from(sizes.as_slice())
        .ok()
        .filter(|s| s.iter().all(|&d| d > 0))
        .map(|s| s.map(|d| d as usize))
        .ok_or_else(|| fail(format!("input_sizes {sizes:?} must be 4 positive sizes")))?;
    let [kh, kw, filter_channels, depth] = <[usize; 4]>::try_from(filter.shape.as_slice())
        .map_err(|_| fail(format!("filter must be rank 4, got {:?}", filter.shape)))?;
    if filter_channels != channels || filter.dtype() != DType::F32 {
        return Err(fail(format!(
            "filter {:?} ({:?}) does not produce {channels} float32 channels",
            filter.shape,
            filter.dtype()
        )));
    }
    if kh == 0 || kw == 0 || depth == 0 {
        return Err(fail(format!("filter {:?} is empty", filter.shape)));
    }

    // Per spatial axis: the forward convolution's output size and padding before, and from them
    // the padding of the stride-1 convolution over the spread input.
    let mut spread = [0usize; 2];
    let mut pads = [0usize; 4];
    let mut crop = [0usize; 2];
    let mut forward_output = [0usize; 2];
    for (axis, (input, kernel)) in [(height, kh), (width, kw)].into_iter().enumerate() {
        let (output, before, _) = padding
            .resolve(input, kernel, strides[axis], 1, axis)
            .map_err(|e| fail(e.to_string()))?;
        let before_spread = (kernel - 1).checked_sub(before).ok_or_else(|| {
            fail(format!(
                "padding {before} before axis {} exceeds the window {kernel}",
                axis + 1
            ))
        })?;
        let length = output * strides[axis];
        let needed = input + kernel - 1;
        // The spread input plus its padding must be exactly `needed` long.
        let available = before_spread + length;
        pads[axis * 2] = before_spread;
        if available <= needed {
            pads[axis * 2 + 1] = needed - available;
        } else {
            crop[axis] = available - needed;
        }
        spread[axis] = length - crop[axis];
        forward_output[axis] = output;
    }

    let name = &node.name;
    if strides == [kh, kw] && strides != [1, 1] && forward_output == [height / kh, width / kw] {
        // Windows as large as the strides, no padding: each input pixel makes its own
        // kh × kw patch of the output (see `import_sub_pixel`).
        let exact =
            [(height, kh), (width, kw)]
                .iter()
                .enumerate()
                .all(|(axis, &(size, kernel))| {
                    size.is_multiple_of(kernel)
                        && padding
                            .resolve(size, kernel, kernel, 1, axis)
                            .is_ok_and(|(_, before, _)| before == 0)
                });
        if exact {
            return Ok(vec![import_sub_pixel(
                importer,
                node,
                inputs[2],
                &filter,
                [batch, height / kh, width / kw],
            )]);
        }
    }
    let mut value = inputs[2];
    if strides != [1, 1] {
        let [ho, wo] = forward_output;
        let [sh, sw] = strides;
        let shape6 = importer.constant(
            &format!("{name}/spread_shape"),
            shape_tensor(&[batch, ho, 1, wo, 1, depth]),
        );
        value = importer.add_named(
            &format!("{name}/unspread"),
            Reshape {
                mode: ReshapeMode::FromOperand,
            },
            vec![value, shape6],
        );
        let paddings = importer.constant(
            &format!("{name}/spread_paddings"),
            Tensor::from_i32(
                vec![6, 2],
                vec![0, 0, 0, 0, 0, sh as i32 - 1, 0, 0, 0, sw as i32 - 1, 0, 0],
            ),
        );
        value = importer.add_named(&format!("{name}/zeros"), Pad, vec![value, paddings]);
        let shape4 = importer.constant(
            &format!("{name}/spread_shape4"),
            shape_tensor(&[batch, ho * sh, wo * sw, depth]),
        );
        value = importer.add_named(
            &format!("{name}/spread"),
            Reshape {
                mode: ReshapeMode::FromOperand,
            },
            vec![value, shape4],
        );
        if crop != [0, 0] {
            let begin = importer.constant(&format!("{name}/crop_begin"), shape_tensor(&[0; 4]));
            let end = importer.constant(
                &format!("{name}/crop_end"),
                shape_tensor(&[batch, spread[0], spread[1], depth]),
            );
            let step = importer.constant(&format!("{name}/crop_strides"), shape_tensor(&[1; 4]));
            value = importer.add_named(
                &format!("{name}/crop"),
                StridedSlice {
                    begin_mask: 0,
                    end_mask: 0,
                    ellipsis_mask: 0,
                    new_axis_mask: 0,
                    shrink_axis_mask: 0,
                },
                vec![value, begin, end, step],
            );
        }
    }
    let flipped = importer.constant(&format!("{name}/flipped_filter"), flip_filter(&filter));
    let conv = Conv2d {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Explicit(pads),
        depthwise: false,
        epilogue: Epilogue::default(),
    };
    Ok(vec![importer.add(node, conv, vec![value, flipped])])
}

/// The transposed convolution whose windows are as large as its strides, with no padding:
/// `dx[y·kh + a, x·kw + b, c] = Σ_m dy[y, x, m] · w[a, b, c, m]`, one pointwise convolution of
/// `dy` to `kh·kw·C` channels (ordered `a, b, c`) whose pixels' channel groups are then moved
/// to their places: reshaped to `[N, Ho, Wo, kh, kw, C]`, transposed to `[N, Ho, kh, Wo, kw,
/// C]` and reshaped to `dx`. No zeros are multiplied (the spread input would make `kh·kw` times
/// the multiply-adds). `[n, ho, wo]` is `dy`'s batch and spatial size.
fn import_sub_pixel(
    importer: &mut Importer,
    node: &NodeDef,
    dy: ValueId,
    filter: &Tensor,
    [n, ho, wo]: [usize; 3],
) -> ValueId {
    let name = &node.name;
    let [kh, kw, channels, depth] = filter_dims(filter);
    let values = filter.to_f32_vec();
    let patch = kh * kw * channels;
    let mut pointwise = vec![0.0; depth * patch];
    for (tap, group) in values.chunks(channels * depth).enumerate() {
        for c in 0..channels {
            for m in 0..depth {
                pointwise[m * patch + tap * channels + c] = group[c * depth + m];
            }
        }
    }
    let pointwise = importer.constant(
        &format!("{name}/patch_filter"),
        Tensor::from_f32(vec![1, 1, depth, patch], pointwise),
    );
    let conv = Conv2d {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Valid,
        depthwise: false,
        epilogue: Epilogue::default(),
    };
    let patches = importer.add_named(&format!("{name}/patches"), conv, vec![dy, pointwise]);
    let reshape = || Reshape {
        mode: ReshapeMode::FromOperand,
    };
    let split_shape = importer.constant(
        &format!("{name}/patch_shape"),
        shape_tensor(&[n, ho, wo, kh, kw, channels]),
    );
    let split = importer.add_named(
        &format!("{name}/patch_split"),
        reshape(),
        vec![patches, split_shape],
    );
    let perm = importer.constant(
        &format!("{name}/patch_perm"),
        Tensor::from_i32(vec![6], vec![0, 1, 3, 2, 4, 5]),
    );
    let placed = importer.add_named(&format!("{name}/patch_place"), Transpose, vec![split, perm]);
    let shape = importer.constant(
        &format!("{name}/output_shape"),
        shape_tensor(&[n, ho * kh, wo * kw, channels]),
    );
    importer.add(node, reshape(), vec![placed, shape])
}

/// A rank-4 filter's `[kh, kw, C, M]` (checked at import).
fn filter_dims(filter: &Tensor) -> [usize; 4] {
    [
        filter.shape[0],
        filter.shape[1],
        filter.shape[2],
        filter.shape[3],
    ]
}

fn shape_tensor(dims: &[usize]) -> Tensor {
    Tensor::from_i32(vec![dims.len()], dims.iter().map(|&d| d as i32).collect())
}

/// `[kh, kw, C, M]` → `[kh, kw, M, C]`, reversed in both spatial axes:
/// `flipped[y, x, m, c] = filter[kh − 1 − y, kw − 1 − x, c, m]`.
fn flip_filter(filter: &Tensor) -> Tensor {
    let [kh, kw, channels, depth] = filter_dims(filter);
    let values = filter.to_f32_vec();
    let mut flipped = vec![0.0; values.len()];
    for y in 0..kh {
        for x in 0..kw {
            for m in 0..depth {
                for c in 0..channels {
                    let source = (((kh - 1 - y) * kw + (kw - 1 - x)) * channels + c) * depth + m;
                    flipped[((y * kw + x) * depth + m) * channels + c] = values[source];
                }
            }
        }
    }
    Tensor::from_f32(vec![kh, kw, depth, channels], flipped)
}

pub const FAMILY: Family = Family {
    ir: &[],
    tensorflow: &[("Conv2DBackpropInput", import_conv2d_backprop_input)],
};
