//! Input references inside the graph and function bodies being inlined: `node`, `node:k` (graph
//! form), `node:output_arg:k` (function form, whose flat output index depends on the op's output
//! arguments: the SavedModel's op list says how many tensors each argument holds), `arg` (a
//! function argument) and `^node` (control). Also which library function a node calls.

use tfjsc_proto::tensorflow::{attr_value, FunctionDef, NodeDef};

use super::{Body, Freezer};

/// A parsed input reference inside a body.
pub(super) enum Reference<'s> {
    Node(&'s str, u32),
    Argument(&'s str),
    Control,
}

impl<'a> Freezer<'a> {
    /// The flat output index of `output_arg:index` of `node` (function-style references).
    pub(super) fn flat_index(&self, node: &NodeDef, output_arg: &str, index: u32) -> u32 {
        if let Some(function) = self.callee(node) {
            let position = function
                .signature
                .iter()
                .flat_map(|signature| &signature.output_arg)
                .position(|arg| arg.name == output_arg);
            if let (Some(position), false) = (position, is_call_op(&node.op)) {
                return position as u32 + index;
            }
            return index;
        }
        let Some(op_def) = self.op_defs.get(node.op.as_str()).copied() else {
            return builtin_output_offset(&node.op, output_arg) + index;
        };
        let mut offset = 0u32;
        for arg in &op_def.output_arg {
            if arg.name == output_arg {
                return offset + index;
            }
            let count = if !arg.number_attr.is_empty() {
                match node
                    .attr
                    .get(&arg.number_attr)
                    .and_then(|a| a.value.as_ref())
                {
                    Some(attr_value::Value::I(count)) => *count as u32,
                    _ => 1,
                }
            } else if !arg.type_list_attr.is_empty() {
                match node
                    .attr
                    .get(&arg.type_list_attr)
                    .and_then(|a| a.value.as_ref())
                {
                    Some(attr_value::Value::List(list)) => list.r#type.len() as u32,
                    _ => 1,
                }
            } else {
                1
            };
            offset += count;
        }
        index
    }

    pub(super) fn callee(&self, node: &NodeDef) -> Option<&'a FunctionDef> {
        self.functions.get(callee_name(node)?).copied()
    }

    pub(super) fn parse<'s>(&self, body: &Body<'a>, text: &'s str) -> Reference<'s> {
        if text.starts_with('^') {
            return Reference::Control;
        }
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [name] if body.args.contains_key(*name) => Reference::Argument(name),
            [name] => Reference::Node(name, 0),
            [name, index] if !body.function_style || index.parse::<u32>().is_ok() => {
                Reference::Node(name, index.parse().unwrap_or(0))
            }
            [name, output_arg] => {
                let flat = body
                    .nodes
                    .get(name)
                    .map_or(0, |node| self.flat_index(node, output_arg, 0));
                Reference::Node(name, flat)
            }
            [name, output_arg, index, ..] => {
                let index = index.parse().unwrap_or(0);
                let flat = body
                    .nodes
                    .get(name)
                    .map_or(index, |node| self.flat_index(node, output_arg, index));
                Reference::Node(name, flat)
            }
            [] => Reference::Control,
        }
    }
}

/// The function `node` would call: a call op's `f`, or else its op (a library function used
/// as an op; whether the library has it is the caller's question).
pub(super) fn callee_name(node: &NodeDef) -> Option<&str> {
    if !is_call_op(&node.op) {
        return Some(node.op.as_str());
    }
    match node.attr.get("f").and_then(|a| a.value.as_ref()) {
        Some(attr_value::Value::Func(function)) => Some(function.name.as_str()),
        _ => None,
    }
}

pub(super) fn is_call_op(op: &str) -> bool {
    matches!(op, "PartitionedCall" | "StatefulPartitionedCall")
}

/// Output offsets of multi-output ops for graphs that carry no op list.
fn builtin_output_offset(op: &str, output_arg: &str) -> u32 {
    let names: &[&str] = match op {
        "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => &[
            "y",
            "batch_mean",
            "batch_variance",
            "reserve_space_1",
            "reserve_space_2",
            "reserve_space_3",
        ],
        "TopKV2" => &["values", "indices"],
        "Unique" => &["y", "idx"],
        "Switch" => &["output_false", "output_true"],
        "Merge" => &["output", "value_index"],
        "NonMaxSuppressionV5" => &["selected_indices", "selected_scores", "valid_outputs"],
        "NonMaxSuppressionV4" => &["selected_indices", "valid_outputs"],
        _ => &[],
    };
    names.iter().position(|n| *n == output_arg).unwrap_or(0) as u32
}
