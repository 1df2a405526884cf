//! Conv2DBackpropInput (Keras Conv2DTranspose), imported as spread + pad + convolution with the
//! flipped filter (or, with windows as large as the strides and no padding, as a pointwise
//! convolution whose channel groups are moved to their output pixels), against a direct evaluation of the transposed convolution written from its
//! definition: `dx[i] = Σ_{o, k : o·s + k − p = i} dy[o] · w[k]` per spatial axis. Tolerance
//! `Rel(1e-5)` (sums in another order, as for convolutions).

use std::collections::HashMap;

use tfjsc::ir::{Graph, Tensor, TensorData};
use tfjsc::ops::importer::Importer;
use tfjsc::ops::registry;
use tfjsc_proto::tensorflow::{attr_value, AttrValue, NodeDef};

use crate::harness::*;

fn attr(value: attr_value::Value) -> AttrValue {
    AttrValue { value: Some(value) }
}

fn ints(values: &[i64]) -> AttrValue {
    attr(attr_value::Value::List(attr_value::ListValue {
        i: values.to_vec(),
        ..Default::default()
    }))
}

fn node_def(padding: &str, stride: [usize; 2], explicit: Option<[usize; 4]>) -> NodeDef {
    let mut attributes = HashMap::new();
    attributes.insert(
        "strides".to_string(),
        ints(&[1, stride[0] as i64, stride[1] as i64, 1]),
    );
    attributes.insert(
        "padding".to_string(),
        attr(attr_value::Value::S(padding.as_bytes().to_vec())),
    );
    if let Some(p) = explicit {
        let p: Vec<i64> = p.iter().map(|&v| v as i64).collect();
        attributes.insert(
            "explicit_paddings".to_string(),
            ints(&[0, 0, p[0], p[1], p[2], p[3], 0, 0]),
        );
    }
    NodeDef {
        name: "deconv".into(),
        op: "Conv2DBackpropInput".into(),
        attr: attributes.into_iter().collect(),
        ..Default::default()
    }
}

/// Forward output size and padding before, as TensorFlow resolves them.
fn forward(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: &str,
    explicit: [usize; 2],
) -> (usize, usize) {
    match padding {
        "SAME" => {
            let output = input.div_ceil(stride);
            let total = ((output - 1) * stride + kernel).saturating_sub(input);
            (output, total / 2)
        }
        "VALID" => ((input - kernel) / stride + 1, 0),
        _ => (
            (input + explicit[0] + explicit[1] - kernel) / stride + 1,
            explicit[0],
        ),
    }
}

struct Config {
    batch: usize,
    input: [usize; 2],
    channels: usize,
    depth: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: &'static str,
    explicit: [usize; 4],
}

fn direct(
    config: &Config,
    dy: &Tensor,
    filter: &Tensor,
    output: [usize; 2],
    before: [usize; 2],
) -> Vec<f32> {
    let [h, w] = config.input;
    let [kh, kw] = config.kernel;
    let (c, m) = (config.channels, config.depth);
    let dy = dy.to_f32_vec();
    let filter = filter.to_f32_vec();
    let mut dx = vec![0f32; config.batch * h * w * c];
    for n in 0..config.batch {
        for oy in 0..output[0] {
            for ox in 0..output[1] {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * config.stride[0] + ky) as i64 - before[0] as i64;
                        let ix = (ox * config.stride[1] + kx) as i64 - before[1] as i64;
                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                            continue;
                        }
                        for ci in 0..c {
                            let mut sum = 0f32;
                            for mi in 0..m {
                                sum += dy[((n * output[0] + oy) * output[1] + ox) * m + mi]
                                    * filter[((ky * kw + kx) * c + ci) * m + mi];
                            }
                            dx[((n * h + iy as usize) * w + ix as usize) * c + ci] += sum;
                        }
                    }
                }
            }
        }
    }
    dx
}

fn run_config(config: &Config, seed: u64) -> Result<(), String> {
    let explicit = config.explicit;
    let (ho, top) = forward(
        config.input[0],
        config.kernel[0],
        config.stride[0],
        config.padding,
        [explicit[0], explicit[1]],
    );
    let (wo, left) = forward(
        config.input[1],
        config.kernel[1],
        config.stride[1],
        config.padding,
        [explicit[2], explicit[3]],
    );
    let dy = uniform(&[config.batch, ho, wo, config.depth], seed, -1.0, 1.0);
    let filter = uniform(
        &[
            config.kernel[0],
            config.kernel[1],
            config.channels,
            config.depth,
        ],
        seed + 1,
        -1.0,
        1.0,
    );
    let expected = direct(config, &dy, &filter, [ho, wo], [top, left]);

    let mut graph = Graph::new();
    let input = graph.add_input("dy", Some(dy.tensor_type()));
    let sizes = graph.add_constant(
        "input_sizes",
        Tensor::from_i32(
            vec![4],
            vec![
                config.batch as i32,
                config.input[0] as i32,
                config.input[1] as i32,
                config.channels as i32,
            ],
        ),
        None,
    );
    let weights = graph.add_constant("filter", filter, None);
    let explicit_pads = (config.padding == "EXPLICIT").then_some(explicit);
    let node = node_def(config.padding, config.stride, explicit_pads);
    let import = registry::importer_for("Conv2DBackpropInput").ok_or("not registered")?;
    let outputs = import(
        &mut Importer::new(&mut graph),
        &node,
        &[sizes, weights, input],
    )
    .map_err(|e| e.to_string())?;
    graph.add_output("dx", outputs[0]);
    let actual = execute(graph, &[dy])?;
    let expected = Tensor::from_f32(
        vec![
            config.batch,
            config.input[0],
            config.input[1],
            config.channels,
        ],
        expected,
    );
    compare(&expected, &actual[0], Tol::Rel(1e-5))
}

#[test]
fn conv2d_backprop_input_matches_the_transposed_convolution() {
    let mut failures = Vec::new();
    let mut seed = 1;
    for padding in ["SAME", "VALID", "EXPLICIT"] {
        for stride in [[1, 1], [2, 2], [3, 2], [1, 3]] {
            // Kernels equal to the strides on sizes they divide take the sub-pixel form.
            for kernel in [[1, 1], [2, 2], [3, 3], [4, 4], [5, 3], [3, 2]] {
                for input in [[1, 1], [4, 4], [5, 7], [8, 6], [9, 9], [6, 8]] {
                    let explicit = [1.min(kernel[0] - 1), (kernel[0] - 1) / 2, 0, kernel[1] - 1];
                    if padding == "VALID" && (input[0] < kernel[0] || input[1] < kernel[1]) {
                        continue;
                    }
                    if padding == "EXPLICIT"
                        && (input[0] + explicit[0] + explicit[1] < kernel[0]
                            || input[1] + explicit[2] + explicit[3] < kernel[1])
                    {
                        continue;
                    }
                    seed += 2;
                    let config = Config {
                        batch: 1 + (seed as usize % 2),
                        input,
                        channels: 1 + (seed as usize % 5),
                        depth: 1 + (seed as usize * 7 % 6),
                        kernel,
                        stride,
                        padding,
                        explicit,
                    };
                    if let Err(message) = run_config(&config, seed) {
                        failures.push(format!(
                            "{padding} stride {stride:?} kernel {kernel:?} input {input:?} channels {} depth {}: {message}",
                            config.channels, config.depth
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn conv2d_backprop_input_needs_constant_sizes_and_filter() {
    let mut graph = Graph::new();
    let dy = graph.add_input(
        "dy",
        Some(tfjsc::ir::TensorType::new(
            tfjsc::ir::DType::F32,
            vec![1, 2, 2, 1],
        )),
    );
    let sizes = graph.add_input(
        "sizes",
        Some(tfjsc::ir::TensorType::new(tfjsc::ir::DType::I32, vec![4])),
    );
    let filter = graph.add_constant(
        "filter",
        Tensor {
            shape: vec![1, 1, 1, 1],
            data: TensorData::F32(vec![1.0]),
        },
        None,
    );
    let import = registry::importer_for("Conv2DBackpropInput").expect("registered");
    let error = import(
        &mut Importer::new(&mut graph),
        &node_def("SAME", [2, 2], None),
        &[sizes, filter, dy],
    )
    .expect_err("non-constant input_sizes is refused");
    let message = error.to_string();
    assert!(
        message.contains("deconv") && message.contains("input_sizes"),
        "{message}"
    );
}

/// The graph Keras' Conv2DTranspose traces with a dynamic batch: `input_sizes` is
/// `Pack(StridedSlice(Shape(dy))[0], 6, 6, 1)`, computed, not a Const. With the batch pinned to 1
/// it folds during import, and the result equals the one with constant sizes.
#[test]
fn conv2d_backprop_input_sizes_computed_from_a_dynamic_batch_fold_at_import() {
    let int = |value: &[i32]| {
        serde_json::json!({"tensor": {"dtype": "DT_INT32",
            "tensorShape": if value.len() == 1 { serde_json::json!({}) } else { serde_json::json!({"dim": [{"size": value.len().to_string()}]}) },
            "intVal": value}})
    };
    let constant = |name: &str, value: &[i32]| serde_json::json!({"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_INT32"}, "value": int(value)}});
    let filter: Vec<f32> = uniform(&[3, 3, 1, 2], 5, -1.0, 1.0).to_f32_vec();
    let model = |computed: bool| {
        let mut nodes = vec![
            serde_json::json!({"name": "dy", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
                "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "3"}, {"size": "3"}, {"size": "2"}]}}}}),
            serde_json::json!({"name": "filter", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"},
                "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "3"}, {"size": "3"}, {"size": "1"}, {"size": "2"}]},
                "floatVal": filter}}}}),
            constant("h", &[6]),
            constant("w", &[6]),
            constant("c", &[1]),
        ];
        if computed {
            nodes.extend([
                serde_json::json!({"name": "shape", "op": "Shape", "input": ["dy"], "attr": {"out_type": {"type": "DT_INT32"}}}),
                constant("begin", &[0, 0][..1]),
                constant("end", &[1, 0][..1]),
                constant("step", &[1, 0][..1]),
                serde_json::json!({"name": "batch", "op": "StridedSlice", "input": ["shape", "begin", "end", "step"],
                    "attr": {"shrink_axis_mask": {"i": "1"}}}),
                serde_json::json!({"name": "sizes", "op": "Pack", "input": ["batch", "h", "w", "c"], "attr": {"N": {"i": "4"}}}),
            ]);
        } else {
            nodes.push(constant("sizes", &[1, 6, 6, 1]));
        }
        nodes.push(serde_json::json!({"name": "deconv", "op": "Conv2DBackpropInput", "input": ["sizes", "filter", "dy"],
            "attr": {"strides": {"list": {"i": ["1", "2", "2", "1"]}}, "padding": {"s": "U0FNRQ=="}}}));
        serde_json::json!({"format": "graph-model", "modelTopology": {"node": nodes}, "weightsManifest": []})
    };
    let directory = tempfile::tempdir().unwrap();
    let dy = uniform(&[1, 3, 3, 2], 6, -1.0, 1.0);
    let mut results = Vec::new();
    for computed in [false, true] {
        let path = directory.path().join(format!("model_{computed}.json"));
        std::fs::write(&path, serde_json::to_vec(&model(computed)).unwrap()).unwrap();
        let library =
            crate::common::compile_model(&path, directory.path(), &format!("lib{computed}.so"));
        let loaded = tfjsc_runtime::Model::load(&library, None).unwrap();
        let outputs = loaded
            .new_context()
            .unwrap()
            .run_tensors(&[to_runtime(&dy)])
            .unwrap();
        assert_eq!(outputs[0].shape, vec![1, 6, 6, 1]);
        results.push(crate::common::as_f32(&outputs[0]));
    }
    assert_eq!(results[0], results[1]);
}
