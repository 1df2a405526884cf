//! Elementwise ops: unary math and activations, binary arithmetic and comparisons with NumPy
//! broadcasting, select, cast. Their per-element bodies (`Unary::emit`, `Binary::emit`) are also
//! what fused epilogues of convolutions and matrix products apply in registers.

use crate::import::{ImportError, Importer, NodeAttributes};
use crate::ir::ValueId;
use tfjsc_proto::tensorflow::NodeDef;

macro_rules! named_kinds {
    ($enum_name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $enum_name { $($variant),* }
        impl $enum_name {
            pub const ALL: &'static [$enum_name] = &[$($enum_name::$variant),*];
            pub fn text(self) -> &'static str { match self { $($enum_name::$variant => $text),* } }
            pub fn from_text(text: &str) -> Option<$enum_name> {
                Self::ALL.iter().copied().find(|kind| kind.text() == text)
            }
        }
    };
}

named_kinds!(UnaryKind {
    Relu => "relu", Relu6 => "relu6", LeakyRelu => "leaky_relu", Sigmoid => "sigmoid", Tanh => "tanh",
    Exp => "exp", Neg => "neg", Abs => "abs", Sqrt => "sqrt", Rsqrt => "rsqrt", Square => "square",
    Floor => "floor", Ceil => "ceil", Round => "round", Reciprocal => "reciprocal", Elu => "elu",
    Log => "log", Softplus => "softplus", Sin => "sin", Cos => "cos", LogicalNot => "logical_not",
    Swish => "swish",
});

named_kinds!(BinaryKind {
    Add => "add", Sub => "sub", Mul => "mul", Div => "div", DivNoNan => "div_no_nan",
    Maximum => "maximum", Minimum => "minimum",
    SquaredDifference => "squared_difference", Prelu => "prelu", FloorDiv => "floor_div",
    FloorMod => "floor_mod", Pow => "pow", Less => "less", LessEqual => "less_equal",
    Greater => "greater", GreaterEqual => "greater_equal", Equal => "equal", NotEqual => "not_equal",
    LogicalAnd => "logical_and", LogicalOr => "logical_or",
});

impl BinaryKind {
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

pub use binary::{broadcast_indices, broadcast_shapes, Binary, Select};
pub use cast::Cast;
pub use unary::Unary;

// ---- import from TensorFlow ----

/// TensorFlow unary op names and their kinds.
pub const TF_UNARY: &[(&str, UnaryKind)] = &[
    ("Relu", UnaryKind::Relu),
    ("Relu6", UnaryKind::Relu6),
    ("Sigmoid", UnaryKind::Sigmoid),
    ("Tanh", UnaryKind::Tanh),
    ("Exp", UnaryKind::Exp),
    ("Neg", UnaryKind::Neg),
    ("Abs", UnaryKind::Abs),
    ("Sqrt", UnaryKind::Sqrt),
    ("Rsqrt", UnaryKind::Rsqrt),
    ("Square", UnaryKind::Square),
    ("Floor", UnaryKind::Floor),
    ("Ceil", UnaryKind::Ceil),
    ("Round", UnaryKind::Round),
    ("Reciprocal", UnaryKind::Reciprocal),
    ("Elu", UnaryKind::Elu),
    ("Log", UnaryKind::Log),
    ("Softplus", UnaryKind::Softplus),
    ("Sin", UnaryKind::Sin),
    ("Cos", UnaryKind::Cos),
    ("LogicalNot", UnaryKind::LogicalNot),
];

/// TensorFlow binary op names and their kinds.
pub const TF_BINARY: &[(&str, BinaryKind)] = &[
    ("Add", BinaryKind::Add),
    ("AddV2", BinaryKind::Add),
    ("BiasAdd", BinaryKind::Add),
    ("Sub", BinaryKind::Sub),
    ("Mul", BinaryKind::Mul),
    ("RealDiv", BinaryKind::Div),
    ("Div", BinaryKind::Div),
    ("DivNoNan", BinaryKind::DivNoNan),
    ("Maximum", BinaryKind::Maximum),
    ("Minimum", BinaryKind::Minimum),
    ("SquaredDifference", BinaryKind::SquaredDifference),
    ("Prelu", BinaryKind::Prelu),
    ("FloorDiv", BinaryKind::FloorDiv),
    ("FloorMod", BinaryKind::FloorMod),
    ("Pow", BinaryKind::Pow),
    ("Less", BinaryKind::Less),
    ("LessEqual", BinaryKind::LessEqual),
    ("Greater", BinaryKind::Greater),
    ("GreaterEqual", BinaryKind::GreaterEqual),
    ("Equal", BinaryKind::Equal),
    ("NotEqual", BinaryKind::NotEqual),
    ("LogicalAnd", BinaryKind::LogicalAnd),
    ("LogicalOr", BinaryKind::LogicalOr),
];

pub fn import_unary(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    let kind = TF_UNARY
        .iter()
        .find(|(name, _)| *name == node.op)
        .map(|(_, kind)| *kind)
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
    let kind = TF_BINARY
        .iter()
        .find(|(name, _)| *name == node.op)
        .map(|(_, kind)| *kind)
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
    Ok(vec![importer.add(node, Binary { kind }, inputs.to_vec())])
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
        total = importer.add_named(
            &name,
            Binary {
                kind: BinaryKind::Add,
            },
            vec![total, next],
        );
    }
    Ok(vec![total])
}

pub fn import_select(
    importer: &mut Importer,
    node: &NodeDef,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, ImportError> {
    importer.expect_inputs(node, inputs, 3)?;
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
        Binary {
            kind: BinaryKind::Maximum,
        },
        vec![inputs[0], inputs[1]],
    );
    Ok(vec![importer.add(
        node,
        Binary {
            kind: BinaryKind::Minimum,
        },
        vec![low, inputs[2]],
    )])
}
