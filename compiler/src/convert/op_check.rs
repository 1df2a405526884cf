//! The op check: every op the converted graph uses must be one TF.js can run (tfjs-converter's
//! op list, `tensorflowjs/op_list/*.json` of tensorflowjs 4.22 for model.json; of
//! tfjs-converter 0.8.4, the last TF.js with `loadFrozenModel`, for the legacy format) and one
//! tfjsc can compile (the op registry, asked read-only). Failures list every op with its node
//! count, both lists at once.

use std::collections::BTreeMap;

use tfjsc_proto::tensorflow::NodeDef;

use super::error::ConvertError;
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

/// Fails listing every op TF.js cannot run (TF.js 0.x for the legacy format) and every op tfjsc
/// cannot compile, with counts.
pub fn check(nodes: &[NodeDef], format: OutputFormat) -> Result<(), ConvertError> {
    let (supports, runtime): (fn(&str) -> bool, &str) = match format {
        OutputFormat::GraphModel => (tfjs_supports, "TF.js"),
        OutputFormat::Legacy => (
            tfjs_legacy_supports,
            "TF.js 0.x (the legacy format's runtime)",
        ),
    };
    let mut not_tfjs: BTreeMap<&str, usize> = BTreeMap::new();
    let mut not_tfjsc: BTreeMap<&str, usize> = BTreeMap::new();
    for node in nodes {
        if !supports(&node.op) {
            *not_tfjs.entry(node.op.as_str()).or_insert(0) += 1;
        }
        if !tfjsc_supports(&node.op) {
            *not_tfjsc.entry(node.op.as_str()).or_insert(0) += 1;
        }
    }
    if not_tfjs.is_empty() && not_tfjsc.is_empty() {
        return Ok(());
    }
    let list = |ops: &BTreeMap<&str, usize>| -> String {
        ops.iter()
            .map(|(op, count)| format!("{op} ×{count}"))
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
    Err(ConvertError::Ops(message))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(check(&nodes, OutputFormat::GraphModel).is_ok());
        let message = check(&nodes, OutputFormat::Legacy).unwrap_err().to_string();
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
        let message = check(&nodes, OutputFormat::GraphModel)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("ops TF.js cannot run: VarHandleOp ×2"),
            "{message}"
        );
        assert!(message.contains("ops tfjsc cannot compile:"), "{message}");
        assert!(message.contains("VarHandleOp ×2"), "{message}");
        assert!(check(&[node("Conv2D")], OutputFormat::GraphModel).is_ok());
    }
}
