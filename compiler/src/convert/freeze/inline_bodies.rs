//! Calls inside function bodies: a `While` body that calls a `tf.function` (a recurrent cell
//! written as one, say) holds a `StatefulPartitionedCall`, which TF.js cannot run. As Grappler's
//! function optimizer does for the Python converter, each call in a kept function body is
//! replaced by the callee's nodes, renamed `CALL/NODE` (the graph's own calls are inlined by the
//! walk in `mod.rs`); then the library keeps only the functions something still refers to.
//!
//! A call is left as it is (the op check then names it) when its callee is not in the library,
//! takes a different number of inputs, or is a template (an attribute placeholder). Inlining
//! repeats for calls the callees hold, up to [`MAX_CALL_DEPTH`] levels and [`MAX_NODES`] nodes
//! in all bodies together, so a hostile library gets an error, not unbounded growth.

use std::collections::{HashMap, HashSet};

use tfjsc_proto::tensorflow::{attr_value, FunctionDef, NodeDef};

use super::references::{callee_name, is_call_op};
use super::{referred_functions, signature_name, MAX_CALL_DEPTH};

/// Nodes all bodies may hold together after inlining (real models' loop bodies hold hundreds;
/// a hostile library whose functions call the next level twice would double at every level).
const MAX_NODES: usize = 250_000;
use crate::convert::rewrite::{node_name, unique_name};

/// Inlines the calls in every body of `library`, then drops the functions that neither
/// `graph` nor a kept function refers to. Errors name the function.
pub(super) fn inline_calls_in_bodies(
    graph: &[NodeDef],
    library: &mut Vec<FunctionDef>,
) -> Result<(), String> {
    let originals: HashMap<String, FunctionDef> = library
        .iter()
        .map(|f| (signature_name(f).to_string(), f.clone()))
        .collect();
    // Nodes of the bodies inlined so far: all of them together stay within MAX_NODES.
    let mut total = 0;
    for function in library.iter_mut() {
        for _ in 0..=MAX_CALL_DEPTH {
            if !inline_round(function, &originals, MAX_NODES - total)? {
                break;
            }
        }
        total += function.node_def.len().min(MAX_NODES - total);
        if function
            .node_def
            .iter()
            .any(|n| callee(n, &originals).is_some())
        {
            return Err(format!(
                "function {}: calls nest deeper than {MAX_CALL_DEPTH}",
                signature_name(function)
            ));
        }
    }
    // The functions still referred to, from the graph's nodes on.
    let mut wanted: Vec<String> = graph
        .iter()
        .flat_map(referred_functions)
        .map(str::to_string)
        .collect();
    let mut kept: HashSet<String> = HashSet::new();
    while let Some(name) = wanted.pop() {
        if kept.insert(name.clone()) {
            if let Some(function) = library.iter().find(|f| signature_name(f) == name) {
                wanted.extend(
                    function
                        .node_def
                        .iter()
                        .flat_map(referred_functions)
                        .map(str::to_string),
                );
            }
        }
    }
    library.retain(|f| kept.contains(signature_name(f)));
    Ok(())
}

/// Inlines the calls `function`'s body holds now; whether there were any.
fn inline_round(
    function: &mut FunctionDef,
    library: &HashMap<String, FunctionDef>,
    max_nodes: usize,
) -> Result<bool, String> {
    let calls: Vec<(usize, &FunctionDef)> = function
        .node_def
        .iter()
        .enumerate()
        .filter_map(|(index, node)| Some((index, callee(node, library)?)))
        .collect();
    if calls.is_empty() {
        return Ok(false);
    }
    let mut names: HashSet<String> = function.node_def.iter().map(|n| n.name.clone()).collect();
    // Reference to a call's output → the reference it becomes.
    let mut outputs: HashMap<String, String> = HashMap::new();
    let mut removed: HashSet<usize> = HashSet::new();
    let mut added: Vec<NodeDef> = Vec::new();
    for (index, callee) in calls {
        let call = &function.node_def[index];
        let (inlined, results) = inline_call(call, callee, &mut names);
        let signature = callee.signature.as_ref();
        for (position, arg) in signature.iter().flat_map(|s| &s.output_arg).enumerate() {
            let Some(result) = results.get(&arg.name) else {
                continue;
            };
            // A call op lists its results as `output:k`; a function used as the op names them.
            let reference = if is_call_op(&call.op) {
                format!("{}:output:{position}", call.name)
            } else {
                format!("{}:{}:0", call.name, arg.name)
            };
            outputs.insert(reference, result.clone());
        }
        // A NoOp of the call's name keeps `^CALL` control inputs meaningful: it waits for
        // every inlined node.
        added.push(NodeDef {
            name: call.name.clone(),
            op: "NoOp".into(),
            input: inlined.iter().map(|n| format!("^{}", n.name)).collect(),
            ..NodeDef::default()
        });
        added.extend(inlined);
        removed.insert(index);
    }
    let mut index = 0;
    function.node_def.retain(|_| {
        index += 1;
        !removed.contains(&(index - 1))
    });
    function.node_def.extend(added);
    if function.node_def.len() > max_nodes {
        return Err(format!(
            "function {}: inlining the calls of the library's bodies gives more than {MAX_NODES} nodes",
            signature_name(function)
        ));
    }
    let rename = |reference: &mut String| {
        if let Some(result) = outputs.get(reference.as_str()) {
            *reference = result.clone();
        }
    };
    for node in &mut function.node_def {
        node.input.iter_mut().for_each(rename);
    }
    function.ret.values_mut().for_each(rename);
    Ok(true)
}

/// The callee's nodes as they replace `call` (renamed `CALL/NODE`, arguments read from the
/// call's inputs, the call's control inputs on each), and its results by output name as
/// references in the caller.
fn inline_call(
    call: &NodeDef,
    callee: &FunctionDef,
    names: &mut HashSet<String>,
) -> (Vec<NodeDef>, HashMap<String, String>) {
    let (data, control): (Vec<&String>, Vec<&String>) =
        call.input.iter().partition(|i| !i.starts_with('^'));
    let arguments: HashMap<&str, &String> = callee
        .signature
        .iter()
        .flat_map(|s| &s.input_arg)
        .map(|arg| arg.name.as_str())
        .zip(data)
        .collect();
    let renamed: HashMap<&str, String> = callee
        .node_def
        .iter()
        .map(|n| {
            let name = unique_name(&format!("{}/{}", call.name, n.name), names);
            (n.name.as_str(), name)
        })
        .collect();
    let reference = |text: &str| -> String {
        if let Some(argument) = arguments.get(text) {
            return (*argument).clone();
        }
        let (control, rest) = match text.strip_prefix('^') {
            Some(rest) => ("^", rest),
            None => ("", text),
        };
        let node = node_name(rest);
        match renamed.get(node) {
            Some(name) => format!("{control}{name}{}", &rest[node.len()..]),
            None => text.to_string(),
        }
    };
    let nodes = callee
        .node_def
        .iter()
        .map(|n| {
            let mut node = n.clone();
            node.name = renamed[n.name.as_str()].clone();
            node.input = n.input.iter().map(|i| reference(i)).collect();
            node.input.extend(control.iter().map(|c| (*c).clone()));
            node
        })
        .collect();
    let results = callee
        .ret
        .iter()
        .map(|(output, text)| (output.clone(), reference(text)))
        .collect();
    (nodes, results)
}

/// The library function `node` calls, when it can be inlined: a call op's `f` or a function
/// used as the op, with as many data inputs as arguments and no attribute placeholders.
fn callee<'l>(
    node: &NodeDef,
    library: &'l HashMap<String, FunctionDef>,
) -> Option<&'l FunctionDef> {
    let function = library.get(callee_name(node)?)?;
    let arguments = function.signature.as_ref()?.input_arg.len();
    let inputs = node.input.iter().filter(|i| !i.starts_with('^')).count();
    let template = function.node_def.iter().any(|n| {
        n.attr
            .values()
            .any(|a| matches!(a.value, Some(attr_value::Value::Placeholder(_))))
    });
    (arguments == inputs && !template).then_some(function)
}

#[cfg(test)]
mod tests {
    use tfjsc_proto::tensorflow::{op_def::ArgDef, AttrValue, NameAttrList, OpDef};

    use super::*;
    use crate::convert::rewrite::test_node as node;

    /// A function of one argument `x` and one result `y` = `result`.
    fn function(name: &str, nodes: Vec<NodeDef>, result: &str) -> FunctionDef {
        let arg = |name: &str| ArgDef {
            name: name.into(),
            ..ArgDef::default()
        };
        FunctionDef {
            signature: Some(OpDef {
                name: name.into(),
                input_arg: vec![arg("x")],
                output_arg: vec![arg("y")],
                ..OpDef::default()
            }),
            node_def: nodes,
            ret: [("y".to_string(), result.to_string())].into(),
            ..FunctionDef::default()
        }
    }

    fn call(name: &str, callee: &str, inputs: &[&str]) -> NodeDef {
        let mut call = node(name, "StatefulPartitionedCall", inputs);
        call.attr.insert(
            "f".into(),
            AttrValue {
                value: Some(attr_value::Value::Func(NameAttrList {
                    name: callee.into(),
                    ..NameAttrList::default()
                })),
            },
        );
        call
    }

    #[test]
    fn a_call_in_a_body_becomes_the_callees_nodes() {
        let body = function(
            "body",
            vec![
                call("c", "cell", &["x", "^w"]),
                node("w", "NoOp", &[]),
                node("z", "Neg", &["c:output:0"]),
            ],
            "z:y:0",
        );
        let cell = function("cell", vec![node("t", "Tanh", &["x"])], "t:y:0");
        let graph = [node("loop", "While", &[])];
        let mut library = vec![body, cell];
        // The graph's loop refers to `body` (as its op here, for brevity).
        let graph = [NodeDef {
            op: "body".into(),
            ..graph[0].clone()
        }];
        inline_calls_in_bodies(&graph, &mut library).unwrap();
        assert_eq!(library.len(), 1, "the inlined callee is dropped");
        let body = &library[0];
        let find = |name: &str| body.node_def.iter().find(|n| n.name == name).unwrap();
        assert_eq!(find("c/t").input, ["x", "^w"]);
        assert_eq!(find("z").input, ["c/t:y:0"]);
        assert_eq!(
            (find("c").op.as_str(), find("c").input.clone()),
            ("NoOp", vec!["^c/t".to_string()])
        );
    }

    #[test]
    fn calls_without_end_are_refused() {
        let f = function("f", vec![call("again", "f", &["x"])], "again:output:0");
        let graph = [NodeDef {
            op: "f".into(),
            ..NodeDef::default()
        }];
        let error = inline_calls_in_bodies(&graph, &mut vec![f]).unwrap_err();
        assert!(error.contains("nest deeper than"), "{error}");
    }

    #[test]
    fn calls_that_double_at_every_level_stop_at_the_node_limit() {
        // Each level calls the next twice: 2^40 nodes at the bottom.
        let mut library: Vec<FunctionDef> = (0..40)
            .map(|level| {
                let next = format!("f{}", level + 1);
                function(
                    &format!("f{level}"),
                    vec![call("a", &next, &["x"]), call("b", &next, &["a:output:0"])],
                    "b:output:0",
                )
            })
            .collect();
        library.push(function("f40", vec![node("n", "Neg", &["x"])], "n:y:0"));
        let graph = [NodeDef {
            op: "f0".into(),
            ..NodeDef::default()
        }];
        let error = inline_calls_in_bodies(&graph, &mut library).unwrap_err();
        assert!(error.contains("more than 250000 nodes"), "{error}");
    }
}
