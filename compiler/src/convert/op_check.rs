//! The op check: every op the converted graph uses must be one TF.js can run (tfjs-converter's
//! op list, `tensorflowjs/op_list/*.json` of tensorflowjs 4.22 for model.json; of
//! tfjs-converter 0.8.4, the last TF.js with `loadFrozenModel`, for the legacy format) and one
//! tfjsc can compile (the op registry, asked read-only). The nodes checked are the graph's and
//! those of every library function it reaches (control-flow bodies, called functions,
//! transitively), which TF.js runs as well. Failures list every op with its node count, and
//! where in a function body it was met, both lists at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use tfjsc_proto::tensorflow::{FunctionDef, NodeDef};

use super::error::ConvertError;
use super::freeze::attribute_functions;
use super::write::OutputFormat;

/// The TensorFlow op names TF.js 4.22 executes, sorted.
pub const TFJS_OPS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "AddN",
    "AddV2",
    "All",
    "Any",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atan2",
    "Atanh",
    "AvgPool",
    "AvgPool3D",
    "BatchMatMul",
    "BatchMatMulV2",
    "BatchToSpaceND",
    "BiasAdd",
    "Bincount",
    "BitwiseAnd",
    "BroadcastArgs",
    "BroadcastTo",
    "Cast",
    "Ceil",
    "ClipByValue",
    "Complex",
    "ComplexAbs",
    "Concat",
    "ConcatV2",
    "Const",
    "Conv1D",
    "Conv2D",
    "Conv2DBackpropInput",
    "Conv3D",
    "Cos",
    "Cosh",
    "CropAndResize",
    "Cumprod",
    "Cumsum",
    "DenseBincount",
    "DepthToSpace",
    "DepthwiseConv2d",
    "DepthwiseConv2dNative",
    "Dilation2D",
    "Div",
    "DivNoNan",
    "Einsum",
    "Elu",
    "EmptyTensorList",
    "EnsureShape",
    "Enter",
    "Equal",
    "Erf",
    "EuclideanNorm",
    "Exit",
    "Exp",
    "ExpandDims",
    "Expm1",
    "FFT",
    "FakeQuantWithMinMaxVars",
    "Fill",
    "Floor",
    "FloorDiv",
    "FloorMod",
    "FusedBatchNorm",
    "FusedBatchNormV2",
    "FusedBatchNormV3",
    "FusedDepthwiseConv2dNative",
    "Gather",
    "GatherNd",
    "GatherV2",
    "Greater",
    "GreaterEqual",
    "HashTable",
    "HashTableV2",
    "IFFT",
    "IRFFT",
    "Identity",
    "IdentityN",
    "If",
    "Imag",
    "ImageProjectiveTransformV3",
    "InitializeTable",
    "InitializeTableV2",
    "IsFinite",
    "IsInf",
    "IsNan",
    "LRN",
    "LeakyRelu",
    "Less",
    "LessEqual",
    "LinSpace",
    "ListDiff",
    "Log",
    "Log1p",
    "LogSoftmax",
    "LogicalAnd",
    "LogicalNot",
    "LogicalOr",
    "LookupTableFind",
    "LookupTableFindV2",
    "LookupTableImport",
    "LookupTableImportV2",
    "LookupTableSize",
    "LookupTableSizeV2",
    "LoopCond",
    "LowerBound",
    "MatMul",
    "MatrixBandPart",
    "Max",
    "MaxPool",
    "MaxPool3D",
    "MaxPoolWithArgmax",
    "Maximum",
    "Mean",
    "Merge",
    "Min",
    "Minimum",
    "MirrorPad",
    "Mod",
    "Mul",
    "Multinomial",
    "Neg",
    "NextIteration",
    "NoOp",
    "NonMaxSuppressionV2",
    "NonMaxSuppressionV3",
    "NonMaxSuppressionV4",
    "NonMaxSuppressionV5",
    "NotEqual",
    "OneHot",
    "Ones",
    "OnesLike",
    "Pack",
    "Pad",
    "PadV2",
    "Placeholder",
    "PlaceholderWithDefault",
    "Pow",
    "Prelu",
    "Print",
    "Prod",
    "RFFT",
    "RaggedGather",
    "RaggedRange",
    "RaggedTensorToTensor",
    "RandomStandardNormal",
    "RandomUniform",
    "RandomUniformInt",
    "Range",
    "Rank",
    "Real",
    "RealDiv",
    "Reciprocal",
    "Relu",
    "Relu6",
    "Reshape",
    "ResizeBilinear",
    "ResizeNearestNeighbor",
    "Reverse",
    "ReverseV2",
    "Round",
    "Rsqrt",
    "ScatterNd",
    "Select",
    "SelectV2",
    "Selu",
    "Shape",
    "ShapeN",
    "Sigmoid",
    "Sign",
    "SimpleMLCreateModelResource",
    "SimpleMLInferenceOpWithHandle",
    "SimpleMLLoadModelFromPathWithHandle",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Snapshot",
    "Softmax",
    "Softplus",
    "SpaceToBatchND",
    "SparseFillEmptyRows",
    "SparseReshape",
    "SparseSegmentMean",
    "SparseSegmentSum",
    "SparseToDense",
    "Split",
    "SplitV",
    "Sqrt",
    "Square",
    "SquaredDifference",
    "Squeeze",
    "StatelessIf",
    "StatelessWhile",
    "StaticRegexReplace",
    "StopGradient",
    "StridedSlice",
    "StringNGrams",
    "StringSplit",
    "StringToHashBucketFast",
    "Sub",
    "Sum",
    "Switch",
    "Tan",
    "Tanh",
    "TensorArrayCloseV3",
    "TensorArrayConcatV3",
    "TensorArrayGatherV3",
    "TensorArrayReadV3",
    "TensorArrayScatterV3",
    "TensorArraySizeV3",
    "TensorArraySplitV3",
    "TensorArrayV3",
    "TensorArrayWriteV3",
    "TensorListConcat",
    "TensorListConcatV2",
    "TensorListFromTensor",
    "TensorListGather",
    "TensorListGetItem",
    "TensorListLength",
    "TensorListPopBack",
    "TensorListPushBack",
    "TensorListReserve",
    "TensorListResize",
    "TensorListScatter",
    "TensorListScatterV2",
    "TensorListSetItem",
    "TensorListSplit",
    "TensorListStack",
    "TensorScatterUpdate",
    "Tile",
    "TopKV2",
    "Transpose",
    "TruncatedNormal",
    "Unique",
    "UniqueV2",
    "Unpack",
    "UpperBound",
    "Where",
    "While",
    "Zeros",
    "ZerosLike",
    "_FusedConv2D",
    "_FusedMatMul",
];

/// The TensorFlow op names TF.js 0.15 (tfjs-converter 0.8.4) executes, sorted: the op list the
/// legacy format is checked against, as tensorflowjs 0.8's converter checked it. It has no
/// fused ops, no `Prelu` and no `AddV2`; `truncatedNormal` is spelled as that list spells it.
pub const TFJS_LEGACY_OPS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "AddN",
    "All",
    "Any",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atan2",
    "Atanh",
    "AvgPool",
    "BatchMatMul",
    "BatchToSpaceND",
    "BiasAdd",
    "Cast",
    "Ceil",
    "ClipByValue",
    "Concat",
    "ConcatV2",
    "Const",
    "Conv1D",
    "Conv2D",
    "Conv2DBackpropInput",
    "Cos",
    "Cosh",
    "CropAndResize",
    "DepthToSpace",
    "DepthwiseConv2d",
    "DepthwiseConv2dNative",
    "Div",
    "Elu",
    "Enter",
    "Equal",
    "Erf",
    "Exit",
    "Exp",
    "ExpandDims",
    "Expm1",
    "FFT",
    "FakeQuantWithMinMaxVars",
    "Fill",
    "Floor",
    "FloorDiv",
    "FloorMod",
    "FusedBatchNorm",
    "FusedBatchNormV2",
    "Gather",
    "GatherNd",
    "GatherV2",
    "Greater",
    "GreaterEqual",
    "IFFT",
    "IRFFT",
    "Identity",
    "LRN",
    "LeakyRelu",
    "Less",
    "LessEqual",
    "LinSpace",
    "ListDiff",
    "Log",
    "Log1p",
    "LogSoftmax",
    "LogicalAnd",
    "LogicalNot",
    "LogicalOr",
    "LoopCond",
    "MatMul",
    "Max",
    "MaxPool",
    "Maximum",
    "Mean",
    "Merge",
    "Min",
    "Minimum",
    "Mod",
    "Mul",
    "Neg",
    "NextIteration",
    "NoOp",
    "NonMaxSuppressionV2",
    "NonMaxSuppressionV3",
    "NotEqual",
    "OneHot",
    "Ones",
    "OnesLike",
    "Pack",
    "Pad",
    "PadV2",
    "Placeholder",
    "PlaceholderWithDefault",
    "Pow",
    "Print",
    "Prod",
    "RFFT",
    "RandomUniform",
    "Range",
    "Rank",
    "RealDiv",
    "Reciprocal",
    "Relu",
    "Relu6",
    "Reshape",
    "ResizeBilinear",
    "ResizeNearestNeighbor",
    "Reverse",
    "ReverseV2",
    "Round",
    "Rsqrt",
    "ScatterNd",
    "Select",
    "Selu",
    "Shape",
    "ShapeN",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Snapshot",
    "Softmax",
    "Softplus",
    "SpaceToBatchND",
    "SparseToDense",
    "Split",
    "SplitV",
    "Sqrt",
    "Square",
    "SquaredDifference",
    "Squeeze",
    "StopGradient",
    "StridedSlice",
    "Sub",
    "Sum",
    "Switch",
    "Tan",
    "Tanh",
    "TensorArrayCloseV3",
    "TensorArrayConcatV3",
    "TensorArrayGatherV3",
    "TensorArrayReadV3",
    "TensorArrayScatterV3",
    "TensorArraySizeV3",
    "TensorArraySplitV3",
    "TensorArrayV3",
    "TensorArrayWriteV3",
    "Tile",
    "TopKV2",
    "Transpose",
    "Unpack",
    "Where",
    "Zeros",
    "ZerosLike",
    "truncatedNormal",
];

/// Whether TF.js can run `op`.
pub fn tfjs_supports(op: &str) -> bool {
    TFJS_OPS.binary_search(&op).is_ok()
}

/// Whether TF.js 0.x, the runtime of the legacy format, can run `op`.
pub fn tfjs_legacy_supports(op: &str) -> bool {
    TFJS_LEGACY_OPS.binary_search(&op).is_ok()
}

/// Whether tfjsc can compile `op`.
pub fn tfjsc_supports(op: &str) -> bool {
    crate::import::is_known(op)
}

/// Where an unsupported op occurs: how many nodes in all, and which nodes of function bodies.
#[derive(Default)]
struct Occurrences<'a> {
    count: usize,
    /// (function, node) of each occurrence in a function body, in the order met.
    in_functions: Vec<(&'a str, &'a str)>,
}

/// How many function-body locations a failure names per op before "and N more".
const LOCATIONS_SHOWN: usize = 3;

/// The library functions `node` refers to: its function attributes (`While`'s `cond`/`body`,
/// `If`'s branches, `PartitionedCall`'s `f`, `Case`'s `branches` list) and its op, when the op is
/// itself a function of the library (a direct call).
fn functions_called<'a>(
    node: &'a NodeDef,
    library: &HashMap<&str, &'a FunctionDef>,
) -> Vec<&'a str> {
    // Attributes are a BTreeMap: functions (and the places a failure names) come in the same
    // order on every run.
    let mut names: Vec<&str> = attribute_functions(node).collect();
    if library.contains_key(node.op.as_str()) {
        names.push(node.op.as_str());
    }
    names
}

/// A node the written model may run.
#[derive(Clone, Copy)]
struct Reached<'a> {
    /// The library function whose body holds the node; `None` for the graph's own nodes.
    function: Option<&'a str>,
    node: &'a NodeDef,
}

/// The graph's nodes, then the nodes of every library function the graph reaches through
/// function attributes and calls, transitively (breadth first, so functions come in the order
/// the graph meets them); and the functions referred to but missing from the library, each
/// with the first node that refers to it.
fn reachable_nodes<'a>(
    nodes: &'a [NodeDef],
    library: &'a [FunctionDef],
) -> (Vec<Reached<'a>>, BTreeMap<&'a str, Reached<'a>>) {
    let by_name: HashMap<&str, &FunctionDef> = library
        .iter()
        .filter_map(|function| Some((function.signature.as_ref()?.name.as_str(), function)))
        .collect();
    let mut reached: Vec<Reached> = nodes
        .iter()
        .map(|node| Reached {
            function: None,
            node,
        })
        .collect();
    let mut missing = BTreeMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut next = 0;
    while next < reached.len() {
        let caller = reached[next];
        next += 1;
        for name in functions_called(caller.node, &by_name) {
            if !seen.insert(name) {
                continue;
            }
            match by_name.get(name) {
                Some(function) => reached.extend(function.node_def.iter().map(|node| Reached {
                    function: Some(name),
                    node,
                })),
                None => {
                    missing.insert(name, caller);
                }
            }
        }
    }
    (reached, missing)
}

/// "node `NODE`", with " in function `FUNCTION`" for a node of a function body.
fn describe_node(function: Option<&str>, node: &str) -> String {
    match function {
        Some(function) => format!("node `{node}` in function `{function}`"),
        None => format!("node `{node}`"),
    }
}

/// Fails listing every op TF.js cannot run (TF.js 0.x for the legacy format) and every op tfjsc
/// cannot compile, with counts, among the graph's nodes and the nodes of every library function
/// the graph reaches (control-flow bodies and branches, called functions, transitively; TF.js
/// runs those too, and the Python converter checks them). An op met in a function body is
/// followed by where, e.g. `MyOp ×1 (node `while/foo` in function `while_body_12`)`. A function
/// the graph refers to that the library lacks fails the check too.
pub fn check(
    nodes: &[NodeDef],
    library: &[FunctionDef],
    format: OutputFormat,
) -> Result<(), ConvertError> {
    let (supports, runtime): (fn(&str) -> bool, &str) = match format {
        OutputFormat::GraphModel => (tfjs_supports, "TF.js"),
        OutputFormat::Legacy => (
            tfjs_legacy_supports,
            "TF.js 0.x (the legacy format's runtime)",
        ),
    };
    let (reachable, missing) = reachable_nodes(nodes, library);
    let mut not_tfjs: BTreeMap<&str, Occurrences> = BTreeMap::new();
    let mut not_tfjsc: BTreeMap<&str, Occurrences> = BTreeMap::new();
    for Reached { function, node } in reachable {
        for (supported, unsupported) in [
            (supports(&node.op), &mut not_tfjs),
            (tfjsc_supports(&node.op), &mut not_tfjsc),
        ] {
            if supported {
                continue;
            }
            let occurrences = unsupported.entry(node.op.as_str()).or_default();
            occurrences.count += 1;
            if let Some(function) = function {
                occurrences
                    .in_functions
                    .push((function, node.name.as_str()));
            }
        }
    }
    if not_tfjs.is_empty() && not_tfjsc.is_empty() && missing.is_empty() {
        return Ok(());
    }
    let list = |ops: &BTreeMap<&str, Occurrences>| -> String {
        ops.iter()
            .map(|(op, occurrences)| {
                let mut text = format!("{op} ×{}", occurrences.count);
                let locations = &occurrences.in_functions;
                if !locations.is_empty() {
                    let mut shown: Vec<String> = locations
                        .iter()
                        .take(LOCATIONS_SHOWN)
                        .map(|(function, node)| describe_node(Some(function), node))
                        .collect();
                    if locations.len() > LOCATIONS_SHOWN {
                        shown.push(format!(
                            "and {} more in functions",
                            locations.len() - LOCATIONS_SHOWN
                        ));
                    }
                    text.push_str(&format!(" ({})", shown.join(", ")));
                }
                text
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut message = String::from("op check failed (--skip_op_check converts anyway)");
    if !not_tfjs.is_empty() {
        message.push_str(&format!(
            "\n  ops {runtime} cannot run: {}",
            list(&not_tfjs)
        ));
    }
    if !not_tfjsc.is_empty() {
        message.push_str(&format!(
            "\n  ops tfjsc cannot compile: {}",
            list(&not_tfjsc)
        ));
    }
    if !missing.is_empty() {
        let functions: Vec<String> = missing
            .iter()
            .map(|(name, caller)| {
                format!(
                    "`{name}` (called by {})",
                    describe_node(caller.function, &caller.node.name)
                )
            })
            .collect();
        message.push_str(&format!(
            "\n  functions missing from the graph's library: {}",
            functions.join(", ")
        ));
    }
    Err(ConvertError::Ops(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfjsc_proto::tensorflow::{attr_value, AttrValue, NameAttrList, OpDef};

    #[test]
    fn the_lists_are_sorted_for_binary_search() {
        assert!(TFJS_OPS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(tfjs_supports("_FusedConv2D") && !tfjs_supports("VarHandleOp"));
        assert!(TFJS_LEGACY_OPS.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(TFJS_LEGACY_OPS.len(), 159);
        assert!(tfjs_legacy_supports("Add") && tfjs_legacy_supports("DepthwiseConv2dNative"));
        for newer in [
            "AddV2",
            "_FusedConv2D",
            "FusedDepthwiseConv2dNative",
            "_FusedMatMul",
            "Prelu",
        ] {
            assert!(!tfjs_legacy_supports(newer), "{newer}");
        }
    }

    #[test]
    fn the_legacy_format_is_checked_against_tfjs_0x() {
        let node = |op: &str| NodeDef {
            op: op.to_string(),
            ..NodeDef::default()
        };
        let nodes = [node("Conv2D"), node("AddV2"), node("_FusedConv2D")];
        assert!(check(&nodes, &[], OutputFormat::GraphModel).is_ok());
        let message = check(&nodes, &[], OutputFormat::Legacy)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "ops TF.js 0.x (the legacy format's runtime) cannot run: AddV2 ×1, _FusedConv2D ×1"
            ),
            "{message}"
        );
        assert!(!message.contains("tfjsc cannot compile"), "{message}");
    }

    #[test]
    fn failures_list_both_kinds_with_counts() {
        let node = |op: &str| NodeDef {
            op: op.to_string(),
            ..NodeDef::default()
        };
        let nodes = [
            node("Conv2D"),
            node("VarHandleOp"),
            node("VarHandleOp"),
            node("Unique"),
        ];
        let message = check(&nodes, &[], OutputFormat::GraphModel)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("ops TF.js cannot run: VarHandleOp ×2"),
            "{message}"
        );
        assert!(message.contains("ops tfjsc cannot compile:"), "{message}");
        assert!(message.contains("VarHandleOp ×2"), "{message}");
        assert!(check(&[node("Conv2D")], &[], OutputFormat::GraphModel).is_ok());
    }

    /// A node `name` running `op`, with function attributes `functions` (attribute → function).
    fn node_calling(name: &str, op: &str, functions: &[(&str, &str)]) -> NodeDef {
        let attr = functions
            .iter()
            .map(|(attr, function)| {
                let value = attr_value::Value::Func(NameAttrList {
                    name: function.to_string(),
                    ..NameAttrList::default()
                });
                (attr.to_string(), AttrValue { value: Some(value) })
            })
            .collect();
        NodeDef {
            name: name.to_string(),
            op: op.to_string(),
            attr,
            ..NodeDef::default()
        }
    }

    fn function(name: &str, nodes: Vec<NodeDef>) -> FunctionDef {
        FunctionDef {
            signature: Some(OpDef {
                name: name.to_string(),
                ..OpDef::default()
            }),
            node_def: nodes,
            ..FunctionDef::default()
        }
    }

    #[test]
    fn ops_in_reached_function_bodies_are_checked_and_located() {
        // While → body → If → then_branch (nested), and a body calling itself: every reached
        // body is checked once; a function nothing refers to is not.
        let graph = [
            node_calling("input", "Placeholder", &[]),
            node_calling("loop", "While", &[("cond", "cond_1"), ("body", "body_2")]),
        ];
        let library = [
            function("cond_1", vec![node_calling("cond/less", "Less", &[])]),
            function(
                "body_2",
                vec![
                    node_calling("body/tanh", "Tanh", &[]),
                    node_calling(
                        "body/branch",
                        "StatelessIf",
                        &[("then_branch", "then_3"), ("else_branch", "body_2")],
                    ),
                ],
            ),
            function(
                "then_3",
                vec![node_calling("then/made_up", "MadeUpOp", &[])],
            ),
            function(
                "unused_4",
                vec![node_calling("unused/other", "OtherMadeUpOp", &[])],
            ),
        ];
        let message = check(&graph, &library, OutputFormat::GraphModel)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "ops TF.js cannot run: MadeUpOp ×1 (node `then/made_up` in function `then_3`)"
            ),
            "{message}"
        );
        assert!(!message.contains("OtherMadeUpOp"), "{message}");
        // The graph's own ops are counted without a location, as before.
        assert!(
            message.contains("While ×1") && !message.contains("While ×1 ("),
            "{message}"
        );
        // Without the nested op the graph passes TF.js' check.
        let mut library = library;
        library[2].node_def[0].op = "Relu".into();
        let message = check(&graph, &library, OutputFormat::GraphModel)
            .unwrap_err()
            .to_string();
        assert!(!message.contains("cannot run"), "{message}");
    }

    #[test]
    fn calls_by_op_name_and_function_lists_are_followed() {
        // A node whose op is a library function (a direct call) and Case's `branches` list.
        let mut case = node_calling("case", "Case", &[]);
        case.attr.insert(
            "branches".into(),
            AttrValue {
                value: Some(attr_value::Value::List(attr_value::ListValue {
                    func: vec![
                        NameAttrList {
                            name: "branch_0".into(),
                            ..NameAttrList::default()
                        },
                        NameAttrList {
                            name: "branch_1".into(),
                            ..NameAttrList::default()
                        },
                    ],
                    ..attr_value::ListValue::default()
                })),
            },
        );
        let graph = [node_calling("call", "helper", &[]), case];
        let library = [
            function("helper", vec![node_calling("helper/a", "MadeUpA", &[])]),
            function("branch_0", vec![node_calling("b0/x", "Relu", &[])]),
            function("branch_1", vec![node_calling("b1/y", "MadeUpB", &[])]),
        ];
        let message = check(&graph, &library, OutputFormat::GraphModel)
            .unwrap_err()
            .to_string();
        for expected in [
            "MadeUpA ×1 (node `helper/a` in function `helper`)",
            "MadeUpB ×1 (node `b1/y` in function `branch_1`)",
            "helper ×1",
        ] {
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn many_locations_are_summarised_and_missing_functions_named() {
        let graph = [node_calling(
            "loop",
            "StatelessWhile",
            &[("cond", "cond"), ("body", "not_in_library")],
        )];
        let library = [function(
            "cond",
            (0..5)
                .map(|i| node_calling(&format!("cond/n{i}"), "MadeUpOp", &[]))
                .collect(),
        )];
        let message = check(&graph, &library, OutputFormat::GraphModel)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "MadeUpOp ×5 (node `cond/n0` in function `cond`, node `cond/n1` in function \
                 `cond`, node `cond/n2` in function `cond`, and 2 more in functions)"
            ),
            "{message}"
        );
        assert!(
            message.contains(
                "functions missing from the graph's library: `not_in_library` (called by node `loop`)"
            ),
            "{message}"
        );
    }
}
