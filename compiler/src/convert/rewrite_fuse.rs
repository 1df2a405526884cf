//! Batch-norm folding and op fusion, the rewrites that make the graph look like the TF.js
//! converter's output: `FusedBatchNorm*` in inference mode becomes a per-channel `Mul` + `AddV2`;
//! a per-channel `Mul` after a convolution or product with a constant filter is folded into the
//! filter; then a convolution or product, its bias (`BiasAdd`, or `Add`/`AddV2` of a per-channel
//! constant) and an activation become one `_FusedConv2D`, `FusedDepthwiseConv2dNative` or
//! `_FusedMatMul`, named after the last node of the chain (so consumers and outputs keep their
//! inputs).

use std::collections::{HashMap, HashSet};

use tfjsc_proto::tensorflow::{attr_value, NodeDef};

use super::error::ConvertError;
use super::rewrite::{
    attr, bool_attr, constant_node, float_attr, node_name, string_attr, unique_name, Graph,
};
use super::tensor::Tensor;
use super::ConvertOptions;

const CONVOLUTIONS: &[&str] = &["Conv2D", "DepthwiseConv2dNative", "MatMul"];
const ACTIVATIONS: &[&str] = &["Relu", "Relu6", "Elu", "LeakyRelu", "Prelu"];

fn names_of(graph: &Graph) -> HashSet<String> {
    graph.nodes.iter().map(|n| n.name.clone()).collect()
}

fn index_of(graph: &Graph) -> HashMap<String, usize> {
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect()
}

/// The number of output channels a per-channel constant of `shape` scales, if it is one
/// (`[C]` or `[1, ..., 1, C]`).
fn channels_of(shape: &[i64]) -> Option<i64> {
    let (&last, rest) = shape.split_last()?;
    rest.iter().all(|&d| d == 1).then_some(last)
}

fn is_nhwc(node: &NodeDef) -> bool {
    string_attr(node, "data_format").is_none_or(|f| f == "NHWC")
}

/// `FusedBatchNorm*` (inference) → Mul + AddV2; Mul after a convolution → scaled filter.
pub fn fold_batch_norms(graph: &mut Graph, _: &ConvertOptions) -> Result<(), ConvertError> {
    let mut names = names_of(graph);
    let mut index = 0;
    while index < graph.nodes.len() {
        let node = graph.nodes[index].clone();
        if node.op.starts_with("FusedBatchNorm")
            && !bool_attr(&node, "is_training").unwrap_or(true)
            && is_nhwc(&node)
            && node.input.len() >= 5
        {
            let consts: Option<Vec<Vec<f32>>> = node.input[1..5]
                .iter()
                .map(|i| graph.constant(i).and_then(Tensor::as_f32))
                .collect();
            let used_beyond_y = graph.nodes.iter().any(|n| {
                n.input
                    .iter()
                    .any(|i| node_name(i) == node.name && i.contains(':') && !i.ends_with(":0"))
            });
            if let (Some(c), false) = (consts, used_beyond_y) {
                let epsilon = float_attr(&node, "epsilon").unwrap_or(1e-3);
                let (scale, offset, mean, variance) = (&c[0], &c[1], &c[2], &c[3]);
                let channels = scale.len();
                if [offset, mean, variance].iter().all(|v| v.len() == channels) {
                    let multiplier: Vec<f32> = (0..channels)
                        .map(|k| scale[k] / (variance[k] + epsilon).sqrt())
                        .collect();
                    let shift: Vec<f32> = (0..channels)
                        .map(|k| offset[k] - mean[k] * multiplier[k])
                        .collect();
                    let dtype = node.attr.get("T").cloned();
                    let m = graph.add_constant(
                        &format!("{}/scale", node.name),
                        Tensor::float32(vec![channels as i64], &multiplier),
                        &mut names,
                    );
                    let s = graph.add_constant(
                        &format!("{}/offset", node.name),
                        Tensor::float32(vec![channels as i64], &shift),
                        &mut names,
                    );
                    let mul_name = graph.add_constant(
                        &format!("{}/mul", node.name),
                        Tensor::float32(vec![], &[0.0]),
                        &mut names,
                    );
                    graph.constants.remove(&mul_name);
                    let mut mul = NodeDef {
                        name: mul_name.clone(),
                        op: "Mul".into(),
                        input: vec![node.input[0].clone(), m.clone()],
                        ..NodeDef::default()
                    };
                    let mut add = NodeDef {
                        name: node.name.clone(),
                        op: "AddV2".into(),
                        input: vec![mul_name, s.clone()],
                        ..NodeDef::default()
                    };
                    if let Some(dtype) = dtype {
                        mul.attr.insert("T".into(), dtype.clone());
                        add.attr.insert("T".into(), dtype);
                    }
                    let m_node = constant_node(&m, &graph.constants[&m]);
                    let s_node = constant_node(&s, &graph.constants[&s]);
                    graph
                        .nodes
                        .splice(index..=index, [m_node, s_node, mul, add]);
                    index += 4;
                    continue;
                }
            }
        }
        index += 1;
    }
    fold_multiplies(graph, &mut names)
}

/// Mul(convolution, per-channel constant) → convolution with the scaled filter.
fn fold_multiplies(graph: &mut Graph, names: &mut HashSet<String>) -> Result<(), ConvertError> {
    let uses = graph.use_counts();
    let outputs = graph.output_nodes();
    let position = index_of(graph);
    let single_use = |name: &str| uses.get(name) == Some(&1) && !outputs.contains(name);
    // Node slots replaced by several nodes (applied at the end, so indices stay valid).
    let mut replacements: HashMap<usize, Vec<NodeDef>> = HashMap::new();
    for index in 0..graph.nodes.len() {
        let node = graph.nodes[index].clone();
        if node.op != "Mul" || node.input.len() != 2 {
            continue;
        }
        let (producer_input, scale) = match (
            graph.constant(&node.input[0]),
            graph.constant(&node.input[1]),
        ) {
            (None, Some(scale)) => (&node.input[0], scale.clone()),
            (Some(scale), None) => (&node.input[1], scale.clone()),
            _ => continue,
        };
        if producer_input.contains(':') && !producer_input.ends_with(":0") {
            continue;
        }
        let Some(&at) = position.get(node_name(producer_input)) else {
            continue;
        };
        let producer = graph.nodes[at].clone();
        if !single_use(&producer.name) || replacements.contains_key(&at) {
            continue;
        }
        if CONVOLUTIONS.contains(&producer.op.as_str()) {
            // Mul(conv(x, W), s) → conv(x, W·s).
            let Some(filter) = scaled_filter(graph, &producer, &scale) else {
                continue;
            };
            let filter_name =
                graph.add_constant(&format!("{}/merged_input", producer.name), filter, names);
            let filter_node = constant_node(&filter_name, &graph.constants[&filter_name]);
            let mut folded = producer.clone();
            folded.name = node.name.clone();
            folded.input[1] = filter_name;
            graph.nodes[at] = filter_node;
            graph.nodes[index] = folded;
            continue;
        }
        // Mul(BiasAdd(conv(x, W), b), s) → BiasAdd(conv(x, W·s), b·s).
        let Some((convolution_input, bias)) = bias_add_operands(graph, &producer) else {
            continue;
        };
        let Some(&convolution_at) = position.get(node_name(&convolution_input)) else {
            continue;
        };
        let convolution = graph.nodes[convolution_at].clone();
        if !CONVOLUTIONS.contains(&convolution.op.as_str())
            || !single_use(&convolution.name)
            || replacements.contains_key(&convolution_at)
        {
            continue;
        }
        let Some(filter) = scaled_filter(graph, &convolution, &scale) else {
            continue;
        };
        let (Some(bias_values), Some(factors)) = (bias.as_f32(), scale.as_f32()) else {
            continue;
        };
        if bias_values.len() != factors.len() {
            continue;
        }
        let scaled_bias: Vec<f32> = bias_values
            .iter()
            .zip(&factors)
            .map(|(b, f)| b * f)
            .collect();
        let channels = scaled_bias.len() as i64;
        let filter_name =
            graph.add_constant(&format!("{}/merged_input", convolution.name), filter, names);
        let bias_name = graph.add_constant(
            &format!("{}/merged_bias", node.name),
            Tensor::float32(vec![channels], &scaled_bias),
            names,
        );
        let mut folded = convolution.clone();
        folded.input[1] = filter_name.clone();
        let mut bias_add = NodeDef {
            name: node.name.clone(),
            op: "BiasAdd".into(),
            input: vec![convolution.name.clone(), bias_name.clone()],
            ..NodeDef::default()
        };
        if let Some(dtype) = node.attr.get("T") {
            bias_add.attr.insert("T".into(), dtype.clone());
        }
        bias_add.attr.insert(
            "data_format".into(),
            attr(attr_value::Value::S(b"NHWC".to_vec())),
        );
        replacements.insert(
            convolution_at,
            vec![
                constant_node(&filter_name, &graph.constants[&filter_name]),
                constant_node(&bias_name, &graph.constants[&bias_name]),
                folded,
            ],
        );
        replacements.insert(at, Vec::new());
        replacements.insert(index, vec![bias_add]);
    }
    apply_replacements(graph, replacements);
    merge_bias_adds(graph, names);
    Ok(())
}

/// Replaces node slots by lists of nodes.
fn apply_replacements(graph: &mut Graph, mut replacements: HashMap<usize, Vec<NodeDef>>) {
    if replacements.is_empty() {
        return;
    }
    let nodes = std::mem::take(&mut graph.nodes);
    for (index, node) in nodes.into_iter().enumerate() {
        match replacements.remove(&index) {
            Some(list) => graph.nodes.extend(list),
            None => graph.nodes.push(node),
        }
    }
    let kept: HashSet<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    graph
        .constants
        .retain(|name, _| kept.contains(name.as_str()));
}

/// For `BiasAdd(y, b)` or `Add`/`AddV2` of `y` and a per-channel float constant `b`: `y` and `b`
/// as a rank-1 tensor.
fn bias_add_operands(graph: &Graph, node: &NodeDef) -> Option<(String, Tensor)> {
    if node.input.len() != 2 {
        return None;
    }
    let (input, constant) = match node.op.as_str() {
        "BiasAdd" if is_nhwc(node) => (&node.input[0], graph.constant(&node.input[1])?),
        "Add" | "AddV2" => match (
            graph.constant(&node.input[0]),
            graph.constant(&node.input[1]),
        ) {
            (None, Some(constant)) => (&node.input[0], constant),
            (Some(constant), None) => (&node.input[1], constant),
            _ => return None,
        },
        _ => return None,
    };
    if input.contains(':') && !input.ends_with(":0") {
        return None;
    }
    let channels = channels_of(&constant.shape)?;
    let values = constant.as_f32()?;
    Some((input.clone(), Tensor::float32(vec![channels], &values)))
}

/// `Add(BiasAdd(y, b), c)` with per-channel constants → `BiasAdd(y, b + c)` (a bias then a
/// batch-norm offset, as Keras 2 graphs have after folding).
fn merge_bias_adds(graph: &mut Graph, names: &mut HashSet<String>) {
    let uses = graph.use_counts();
    let outputs = graph.output_nodes();
    let position = index_of(graph);
    let mut replacements: HashMap<usize, Vec<NodeDef>> = HashMap::new();
    for index in 0..graph.nodes.len() {
        let node = graph.nodes[index].clone();
        if !matches!(node.op.as_str(), "Add" | "AddV2") || replacements.contains_key(&index) {
            continue;
        }
        let Some((input, offset)) = bias_add_operands(graph, &node) else {
            continue;
        };
        let Some(&at) = position.get(node_name(&input)) else {
            continue;
        };
        let producer = graph.nodes[at].clone();
        if producer.op != "BiasAdd"
            || uses.get(&producer.name) != Some(&1)
            || outputs.contains(&producer.name)
            || replacements.contains_key(&at)
        {
            continue;
        }
        let Some((source, bias)) = bias_add_operands(graph, &producer) else {
            continue;
        };
        let (Some(b), Some(c)) = (bias.as_f32(), offset.as_f32()) else {
            continue;
        };
        if b.len() != c.len() {
            continue;
        }
        let sum: Vec<f32> = b.iter().zip(&c).map(|(x, y)| x + y).collect();
        let name = graph.add_constant(
            &format!("{}/merged_bias", node.name),
            Tensor::float32(vec![sum.len() as i64], &sum),
            names,
        );
        let mut merged = producer.clone();
        merged.name = node.name.clone();
        merged.input = vec![source, name.clone()];
        replacements.insert(at, vec![constant_node(&name, &graph.constants[&name])]);
        replacements.insert(index, vec![merged]);
    }
    apply_replacements(graph, replacements);
}

/// The filter of `producer` (a convolution or product with a constant filter) scaled per
/// output channel by the per-channel constant `scale`, if the shapes fit.
fn scaled_filter(graph: &Graph, producer: &NodeDef, scale: &Tensor) -> Option<Tensor> {
    if !is_nhwc(producer) || producer.input.len() != 2 {
        return None;
    }
    let filter = graph.constant(&producer.input[1])?;
    let (values, factors) = (filter.as_f32()?, scale.as_f32()?);
    let channels = channels_of(&scale.shape)?;
    let transpose_b =
        producer.op == "MatMul" && bool_attr(producer, "transpose_b").unwrap_or(false);
    if producer.op == "MatMul"
        && (scale.shape.len() > 2 || bool_attr(producer, "transpose_a").unwrap_or(false))
    {
        return None;
    }
    let out_channels = match (producer.op.as_str(), filter.shape.as_slice()) {
        ("Conv2D", [_, _, _, out]) => *out,
        ("DepthwiseConv2dNative", [_, _, input, multiplier]) => input * multiplier,
        ("MatMul", [rows, columns]) => {
            if transpose_b {
                *rows
            } else {
                *columns
            }
        }
        _ => return None,
    };
    if channels != out_channels || out_channels <= 0 {
        return None;
    }
    let out_channels = out_channels as usize;
    let scaled: Vec<f32> = if transpose_b {
        let k = (values.len() / out_channels).max(1);
        values
            .iter()
            .enumerate()
            .map(|(i, v)| v * factors[i / k])
            .collect()
    } else {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| v * factors[i % out_channels])
            .collect()
    };
    Some(Tensor::float32(filter.shape.clone(), &scaled))
}

/// Keras' PReLU, `Relu(y) + Mul(-alpha, Relu(Neg(y)))`, → `Prelu(y, alpha)` (as the TF.js
/// converter's `fuse_prelu` does), so that it can fuse into the convolution before it.
pub fn fuse_prelu(graph: &mut Graph, _: &ConvertOptions) -> Result<(), ConvertError> {
    let uses = graph.use_counts();
    let outputs = graph.output_nodes();
    let position = index_of(graph);
    let mut names = names_of(graph);
    let single_use = |name: &str| uses.get(name) == Some(&1) && !outputs.contains(name);
    let node_at = |input: &str| -> Option<&NodeDef> {
        if input.contains(':') && !input.ends_with(":0") {
            return None;
        }
        position.get(node_name(input)).map(|&at| &graph.nodes[at])
    };
    let mut replacements: HashMap<usize, Vec<NodeDef>> = HashMap::new();
    let mut new_constants = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        if !matches!(node.op.as_str(), "Add" | "AddV2") || node.input.len() != 2 {
            continue;
        }
        for (positive, negative) in [(0, 1), (1, 0)] {
            let (Some(relu), Some(mul)) = (
                node_at(&node.input[positive]),
                node_at(&node.input[negative]),
            ) else {
                continue;
            };
            if relu.op != "Relu" || mul.op != "Mul" || mul.input.len() != 2 || relu.input.len() != 1
            {
                continue;
            }
            let (constant, other) =
                match (graph.constant(&mul.input[0]), graph.constant(&mul.input[1])) {
                    (Some(c), None) => (c, &mul.input[1]),
                    (None, Some(c)) => (c, &mul.input[0]),
                    _ => continue,
                };
            let Some(negative_relu) = node_at(other) else {
                continue;
            };
            if negative_relu.op != "Relu" || negative_relu.input.len() != 1 {
                continue;
            }
            let Some(negation) = node_at(&negative_relu.input[0]) else {
                continue;
            };
            if negation.op != "Neg" || negation.input.first() != relu.input.first() {
                continue;
            }
            if ![&relu.name, &mul.name, &negative_relu.name, &negation.name]
                .iter()
                .all(|n| single_use(n))
            {
                continue;
            }
            let Some(values) = constant.as_f32() else {
                continue;
            };
            let alpha: Vec<f32> = values.iter().map(|v| -v).collect();
            let alpha_name_unique = unique_name(&format!("{}/alpha", node.name), &mut names);
            let alpha = Tensor::float32(constant.shape.clone(), &alpha);
            let mut prelu = NodeDef {
                name: node.name.clone(),
                op: "Prelu".into(),
                input: vec![relu.input[0].clone(), alpha_name_unique.clone()],
                ..NodeDef::default()
            };
            if let Some(dtype) = node.attr.get("T") {
                prelu.attr.insert("T".into(), dtype.clone());
            }
            replacements.insert(
                index,
                vec![constant_node(&alpha_name_unique, &alpha), prelu],
            );
            new_constants.push((alpha_name_unique, alpha));
            break;
        }
    }
    if replacements.is_empty() {
        return Ok(());
    }
    graph.constants.extend(new_constants);
    apply_replacements(graph, replacements);
    // The replaced branches are dead now; drop them so the convolution before has one reader.
    let outputs: Vec<String> = outputs.into_iter().collect();
    super::freeze::prune(&mut graph.nodes, &outputs);
    let kept: HashSet<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    graph
        .constants
        .retain(|name, _| kept.contains(name.as_str()));
    Ok(())
}

/// Convolution/product + bias + activation → one fused op.
pub fn fuse_ops(graph: &mut Graph, _: &ConvertOptions) -> Result<(), ConvertError> {
    let uses = graph.use_counts();
    let outputs = graph.output_nodes();
    let mut names = names_of(graph);
    let count = graph.nodes.len();
    // Consumers by producer name (single-consumer chains only).
    let mut consumer: HashMap<String, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in &node.input {
            consumer.insert(node_name(input).to_string(), i);
        }
    }
    let single_consumer = |name: &str| -> Option<usize> {
        (uses.get(name) == Some(&1) && !outputs.contains(name))
            .then(|| consumer.get(name).copied())
            .flatten()
    };
    for index in 0..count {
        let producer = graph.nodes[index].clone();
        if !CONVOLUTIONS.contains(&producer.op.as_str()) || !is_nhwc(&producer) {
            continue;
        }
        let Some(bias_at) = single_consumer(&producer.name) else {
            continue;
        };
        let bias_node = graph.nodes[bias_at].clone();
        let bias_input = match bias_node.op.as_str() {
            "BiasAdd"
                if is_nhwc(&bias_node)
                    && bias_node.input.first().map(|i| node_name(i))
                        == Some(producer.name.as_str()) =>
            {
                bias_node.input.get(1).cloned()
            }
            "Add" | "AddV2" if bias_node.input.len() == 2 => {
                let other = if node_name(&bias_node.input[0]) == producer.name {
                    &bias_node.input[1]
                } else {
                    &bias_node.input[0]
                };
                Some(other.clone())
            }
            _ => None,
        };
        let Some(bias_input) = bias_input else {
            continue;
        };
        if node_name(&bias_input) == producer.name {
            continue;
        }
        let Some(bias) = graph.constant(&bias_input).cloned() else {
            continue;
        };
        let out_channels = match (
            producer.op.as_str(),
            graph.constant(producer.input.get(1).map_or("", |s| s)),
        ) {
            ("Conv2D", Some(f)) if f.shape.len() == 4 => f.shape[3],
            ("DepthwiseConv2dNative", Some(f)) if f.shape.len() == 4 => f.shape[2] * f.shape[3],
            ("MatMul", Some(f)) if f.shape.len() == 2 => {
                if bool_attr(&producer, "transpose_b").unwrap_or(false) {
                    f.shape[0]
                } else {
                    f.shape[1]
                }
            }
            _ => continue,
        };
        if bias.dtype != tfjsc_proto::tensorflow::DataType::DtFloat
            || channels_of(&bias.shape) != Some(out_channels)
        {
            continue;
        }
        let producer_at = index;
        // The bias as a rank-1 constant, in the producer's slot (which the fusion frees).
        let mut producer_slot = None;
        let bias_constant = node_name(&bias_input).to_string();
        let bias_name = if bias.shape.len() == 1 {
            bias_constant
        } else if uses.get(&bias_constant) == Some(&1) {
            // Only this bias reads it: reshape it in place, keeping its name.
            let mut flat = bias.clone();
            flat.shape = vec![out_channels];
            if let Some(node) = graph.nodes.iter_mut().find(|n| n.name == bias_constant) {
                *node = constant_node(&bias_constant, &flat);
            }
            graph.constants.insert(bias_constant.clone(), flat);
            bias_constant
        } else {
            let mut flat = bias.clone();
            flat.shape = vec![out_channels];
            let name = graph.add_constant(&format!("{}/bias", bias_node.name), flat, &mut names);
            producer_slot = Some(constant_node(&name, &graph.constants[&name]));
            name
        };
        let mut fused_ops = vec![b"BiasAdd".to_vec()];
        let mut last_at = bias_at;
        let mut alpha = 0.2f32;
        let mut prelu_alpha = None;
        if let Some(activation_at) = single_consumer(&bias_node.name) {
            let activation = &graph.nodes[activation_at];
            if ACTIVATIONS.contains(&activation.op.as_str())
                && activation.input.first().map(|i| node_name(i)) == Some(bias_node.name.as_str())
            {
                if activation.op == "Prelu" {
                    match activation.input.get(1) {
                        Some(alpha) => prelu_alpha = Some(alpha.clone()),
                        None => continue,
                    }
                }
                fused_ops.push(activation.op.as_bytes().to_vec());
                if activation.op == "LeakyRelu" {
                    alpha = float_attr(activation, "alpha").unwrap_or(0.2);
                }
                last_at = activation_at;
            }
        }
        let mut fused = producer.clone();
        fused.name = graph.nodes[last_at].name.clone();
        fused.op = match producer.op.as_str() {
            "Conv2D" => "_FusedConv2D",
            "DepthwiseConv2dNative" => "FusedDepthwiseConv2dNative",
            _ => "_FusedMatMul",
        }
        .into();
        fused.input.truncate(2);
        fused.input.push(bias_name);
        let arguments = if let Some(prelu_alpha) = prelu_alpha {
            fused.input.push(prelu_alpha);
            2
        } else {
            1
        };
        let list = attr_value::ListValue {
            s: fused_ops,
            ..Default::default()
        };
        fused
            .attr
            .insert("fused_ops".into(), attr(attr_value::Value::List(list)));
        fused
            .attr
            .insert("num_args".into(), attr(attr_value::Value::I(arguments)));
        fused
            .attr
            .insert("epsilon".into(), attr(attr_value::Value::F(0.0)));
        fused
            .attr
            .insert("leakyrelu_alpha".into(), attr(attr_value::Value::F(alpha)));
        // MatMul's training-only attributes are not part of _FusedMatMul.
        fused.attr.remove("grad_a");
        fused.attr.remove("grad_b");
        if fused.op == "_FusedConv2D" {
            // As TensorFlow's remapper writes them: the extra arguments' types, filter layout.
            let dtype = match fused.attr.get("T").and_then(|t| t.value.as_ref()) {
                Some(attr_value::Value::Type(dtype)) => *dtype,
                _ => tfjsc_proto::tensorflow::DataType::DtFloat as i32,
            };
            let types = attr_value::ListValue {
                r#type: vec![dtype; arguments as usize],
                ..Default::default()
            };
            fused
                .attr
                .insert("TArgs".into(), attr(attr_value::Value::List(types)));
            fused.attr.insert(
                "filter_format".into(),
                attr(attr_value::Value::S(b"HWIO".to_vec())),
            );
            fused
                .attr
                .insert("num_host_args".into(), attr(attr_value::Value::I(0)));
        }
        // The chain's earlier nodes go (nothing else reads them); the fused node takes the
        // last one's slot and name.
        graph.nodes[last_at] = fused;
        for at in [producer_at, bias_at] {
            if at != last_at {
                graph.nodes[at] = NodeDef {
                    name: format!("{}/fused_away", graph.nodes[at].name),
                    op: "NoOp".into(),
                    ..NodeDef::default()
                };
            }
        }
        if let Some(constant) = producer_slot {
            graph.nodes[producer_at] = constant;
        }
    }
    graph
        .nodes
        .retain(|n| !(n.op == "NoOp" && n.name.ends_with("/fused_away")));
    Ok(())
}
