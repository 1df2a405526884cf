//! Elementwise ops: unary math and activations, binary arithmetic and comparisons with NumPy
//! broadcasting, select, cast. Their per-element bodies (`Unary::emit`, `Binary::emit`) are also
//! what fused epilogues of convolutions and matrix products apply in registers.

use crate::ir::{Tensor, ValueId};
use crate::ops::importer::{ImportError, ImportFn, Importer, NodeAttributes};
use crate::ops::registry::Family;
use tfjsc_proto::tensorflow::NodeDef;

/// A kind enum with its IR text names and the TensorFlow ops that import as each kind; also
/// writes `$table`, the TensorFlow name → `$importer` lines of the family.
macro_rules! named_kinds {
    ($enum_name:ident, $table:ident => $importer:path {
        $($variant:ident => $text:literal [$($tf:literal),*]),* $(,)?
    }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $enum_name { $($variant),* }
        impl $enum_name {
            pub const ALL: &'static [$enum_name] = &[$($enum_name::$variant),*];
            const TENSORFLOW: &'static [(&'static str, $enum_name)] =
                &[$($(($tf, $enum_name::$variant),)*)*];
            pub fn text(self) -> &'static str { match self { $($enum_name::$variant => $text),* } }
            pub fn from_text(text: &str) -> Option<$enum_name> {
                Self::ALL.iter().copied().find(|kind| kind.text() == text)
            }
            /// The kind a TensorFlow op of this name imports as.
            pub fn from_tensorflow(op: &str) -> Option<$enum_name> {
                Self::TENSORFLOW.iter().find(|(name, _)| *name == op).map(|(_, kind)| *kind)
            }
        }
        const $table: &[(&str, ImportFn)] = &[$($(($tf, $importer as ImportFn),)*)*];
    };
}

named_kinds!(UnaryKind, TF_UNARY => import_unary {
    Relu => "relu" ["Relu"], Relu6 => "relu6" ["Relu6"], LeakyRelu => "leaky_relu" [],
    Sigmoid => "sigmoid" ["Sigmoid"], Tanh => "tanh" ["Tanh"], Exp => "exp" ["Exp"],
    Neg => "neg" ["Neg"], Abs => "abs" ["Abs"], Sqrt => "sqrt" ["Sqrt"], Rsqrt => "rsqrt" ["Rsqrt"],
    Square => "square" ["Square"], Floor => "floor" ["Floor"], Ceil => "ceil" ["Ceil"],
    Round => "round" ["Round"], Reciprocal => "reciprocal" ["Reciprocal"], Elu => "elu" ["Elu"],
    Log => "log" ["Log"], Softplus => "softplus" ["Softplus"], Sin => "sin" ["Sin"],
    Cos => "cos" ["Cos"], LogicalNot => "logical_not" ["LogicalNot"], Swish => "swish" [],
    Sign => "sign" ["Sign"], Log1p => "log1p" ["Log1p"], Expm1 => "expm1" ["Expm1"],
    Selu => "selu" ["Selu"], Erf => "erf" ["Erf"], Tan => "tan" ["Tan"], Atan => "atan" ["Atan"],
    Asin => "asin" ["Asin"], Acos => "acos" ["Acos"], Sinh => "sinh" ["Sinh"],
    Cosh => "cosh" ["Cosh"], Asinh => "asinh" ["Asinh"], Acosh => "acosh" ["Acosh"],
    Atanh => "atanh" ["Atanh"],
});

named_kinds!(BinaryKind, TF_BINARY => import_binary {
    Add => "add" ["Add", "AddV2", "BiasAdd"], Sub => "sub" ["Sub"], Mul => "mul" ["Mul"],
    Div => "div" ["RealDiv", "Div"], DivNoNan => "div_no_nan" ["DivNoNan"],
    Maximum => "maximum" ["Maximum"], Minimum => "minimum" ["Minimum"],
    SquaredDifference => "squared_difference" ["SquaredDifference"], Prelu => "prelu" ["Prelu"],
    FloorDiv => "floor_div" ["FloorDiv"], FloorMod => "floor_mod" ["FloorMod"], Pow => "pow" ["Pow"],
    Less => "less" ["Less"], LessEqual => "less_equal" ["LessEqual"], Greater => "greater" ["Greater"],
    GreaterEqual => "greater_equal" ["GreaterEqual"], Equal => "equal" ["Equal"],
    NotEqual => "not_equal" ["NotEqual"], LogicalAnd => "logical_and" ["LogicalAnd"],
    LogicalOr => "logical_or" ["LogicalOr"], Atan2 => "atan2" ["Atan2"],
});

impl BinaryKind {
    /// Whether `a op b == b op a`: a fused epilogue may then take the producer's result as either
    /// operand.
    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            BinaryKind::Add | BinaryKind::Mul | BinaryKind::Maximum | BinaryKind::Minimum
        )
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryKind::Less
                | BinaryKind::LessEqual
                | BinaryKind::Greater
                | BinaryKind::GreaterEqual
                | BinaryKind::Equal
                | BinaryKind::NotEqual
                | BinaryKind::LogicalAnd
                | BinaryKind::LogicalOr
        )
    }
}

mod binary;
mod cast;
mod unary;

pub use binary::{broadcast_indices, broadcast_shapes, Binary, Select, SelectV1};
pub use cast::Cast;
pub use unary::Unary;

// ---- import from TensorFlow ----

/// Unary math and activations.
pub const UNARY: Family = Family {
    ir: &[("unary", Unary::parse)],
    tensorflow: TF_UNARY,
};

/// Binary arithmetic and comparisons.
pub const BINARY: Family = Family {
    ir: &[("binary", Binary::parse)],
    tensorflow: TF_BINARY,
};

/// Select, cast, and TensorFlow ops that import as chains of unary and binary nodes.
pub const FAMILY: Family = Family {
    ir: &[
        ("select", Select::parse),
        ("select_v1", SelectV1::parse),
        ("cast", Cast::parse),
    ],
    tensorflow: &[
        ("AddN", import_add_n),
        ("LeakyRelu", import_leaky_relu),
        ("Select", import_select),
        ("SelectV2", import_select),
        ("Cast", import_cast),
        ("ClipByValue", import_clip),
        ("IsNan", import_float_class),
        ("IsInf", import_float_class),
        ("IsFinite", import_float_class),
    ],
};

pub fn import_unary(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let kind = UnaryKind::from_tensorflow(&node.op)
        .ok_or_else(|| importer.error(node, "not a unary op"))?;
    importer.expect_inputs(node, inputs, 1)?;
    Ok(vec![importer.add(
        node,
        Unary { kind, alpha: 0.0 },
        vec![inputs[0]],
    )])
}

pub fn import_leaky_relu(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let alpha = NodeAttributes::of(node)
        .float_or("alpha", 0.2)
        .map_err(|e| importer.error(node, e))?;
    Ok(vec![importer.add(
        node,
        Unary {
            kind: UnaryKind::LeakyRelu,
            alpha,
        },
        vec![inputs[0]],
    )])
}

pub fn import_binary(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let kind = BinaryKind::from_tensorflow(&node.op)
        .ok_or_else(|| importer.error(node, "not a binary op"))?;
    importer.expect_inputs(node, inputs, 2)?;
    if node.op == "BiasAdd" {
        let format = NodeAttributes::of(node)
            .string_or("data_format", "NHWC")
            .map_err(|e| importer.error(node, e))?;
        if format != "NHWC" {
            return Err(importer.error(
                node,
                format!("BiasAdd data_format {format} is not supported (NHWC only)"),
            ));
        }
    }
    Ok(vec![importer.add(node, Binary::new(kind), inputs.to_vec())])
}

/// AddN: a left-to-right chain of adds.
pub fn import_add_n(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let Some((&first, rest)) = inputs.split_first() else {
        return Err(importer.error(node, "AddN needs at least one input"));
    };
    let mut total = first;
    for (index, &next) in rest.iter().enumerate() {
        let name = if index + 1 == rest.len() {
            node.name.clone()
        } else {
            format!("{}/add{index}", node.name)
        };
        total = importer.add_named(&name, Binary::new(BinaryKind::Add), vec![total, next]);
    }
    Ok(vec![total])
}

pub fn import_select(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    if node.op == "Select" {
        return Ok(vec![importer.add(node, SelectV1, inputs.to_vec())]);
    }
    Ok(vec![importer.add(node, Select, inputs.to_vec())])
}

pub fn import_cast(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let to = NodeAttributes::of(node)
        .dtype("DstT")
        .map_err(|e| importer.error(node, e))?;
    Ok(vec![importer.add(node, Cast { to }, vec![inputs[0]])])
}

/// ClipByValue(x, low, high) = min(max(x, low), high).
pub fn import_clip(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
    let low = importer.add_named(
        &format!("{}/max", node.name),
        Binary::new(BinaryKind::Maximum),
        vec![inputs[0], inputs[1]],
    );
    Ok(vec![importer.add(
        node,
        Binary::new(BinaryKind::Minimum),
        vec![low, inputs[2]],
    )])
}

/// IsNan, IsInf, IsFinite as comparisons: `x ≠ x`, `|x| = inf`, `|x| < inf` (false for NaN).
pub fn import_float_class(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 1)?;
    let x = inputs[0];
    if node.op == "IsNan" {
        return Ok(vec![importer.add(
            node,
            Binary::new(BinaryKind::NotEqual),
            vec![x, x],
        )]);
    }
    let magnitude = importer.add_named(
        &format!("{}/abs", node.name),
        Unary::new(UnaryKind::Abs),
        vec![x],
    );
    let infinity = importer.constant(
        &format!("{}/infinity", node.name),
        Tensor::from_f32(vec![], vec![f32::INFINITY]),
    );
    let kind = if node.op == "IsInf" {
        BinaryKind::Equal
    } else {
        BinaryKind::Less
    };
    Ok(vec![importer.add(
        node,
        Binary::new(kind),
        vec![magnitude, infinity],
    )])
}
