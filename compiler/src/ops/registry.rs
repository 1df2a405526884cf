//! The op registry: every op family, in one list. A family names, in its own module, the IR ops it
//! defines (with their text parsers) and the TensorFlow ops it imports (with their importers);
//! adding an op family adds its module and one line to [`FAMILIES`].
//!
//! Whether a node can be lowered on a target is asked of the op itself (`Operator::lower`):
//! `inspect` and `compile` both run code generation over every node and report every refusal.

use std::sync::Arc;

use super::importer::ImportFn;
use super::{
    arg, conv, conv_chain, conv_transpose, cumsum, einsum, elementwise, gather, lrn, matmul,
    one_hot, pool, reduce, resize, shape, softmax, sparse_to_dense, top_k,
};
use super::{Attributes, OpResult, Operator};
use crate::invalid;

/// Builds an op from its IR name's attributes (the text parser).
pub type ParseFn = fn(&Attributes) -> OpResult<Arc<dyn Operator>>;

/// What one op family contributes to the tables.
pub struct Family {
    /// IR op name → text parser.
    pub ir: &'static [(&'static str, ParseFn)],
    /// TensorFlow op name → importer.
    pub tensorflow: &'static [(&'static str, ImportFn)],
}

/// Every op family. One line per family.
pub const FAMILIES: &[&Family] = &[
    &elementwise::UNARY,
    &elementwise::BINARY,
    &elementwise::FAMILY,
    &conv::FAMILY,
    &conv_chain::FAMILY,
    &conv_transpose::FAMILY,
    &matmul::FAMILY,
    &pool::FAMILY,
    &reduce::FAMILY,
    &softmax::FAMILY,
    &shape::view::FAMILY,
    &shape::slice::FAMILY,
    &shape::join::FAMILY,
    &shape::pad::FAMILY,
    &shape::transpose::FAMILY,
    &shape::generate::FAMILY,
    &gather::FAMILY,
    &arg::FAMILY,
    &one_hot::FAMILY,
    &top_k::FAMILY,
    &cumsum::FAMILY,
    &shape::split::FAMILY,
    &shape::tile::FAMILY,
    &shape::blocks::FAMILY,
    &shape::reverse::FAMILY,
    &resize::FAMILY,
    &sparse_to_dense::FAMILY,
    &lrn::FAMILY,
    &einsum::FAMILY,
];

/// Builds an IR op from its name and attributes.
pub fn parse_operator(name: &str, attributes: &Attributes) -> OpResult<Arc<dyn Operator>> {
    let parse = FAMILIES
        .iter()
        .flat_map(|family| family.ir)
        .find(|(op_name, _)| *op_name == name)
        .map(|(_, parse)| parse)
        .ok_or_else(|| invalid!("unknown op `{name}`"))?;
    parse(attributes)
}

/// The importer of TensorFlow op `op`, if any family imports it.
pub fn importer_for(op: &str) -> Option<ImportFn> {
    FAMILIES
        .iter()
        .flat_map(|family| family.tensorflow)
        .find(|(name, _)| *name == op)
        .map(|(_, import)| *import)
}

/// Every TensorFlow op name some family imports, sorted.
pub fn tensorflow_ops() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FAMILIES
        .iter()
        .flat_map(|family| family.tensorflow)
        .map(|(name, _)| *name)
        .collect();
    names.sort_unstable();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_name_is_registered_once() {
        let mut ir = HashSet::new();
        let mut tensorflow = HashSet::new();
        for family in FAMILIES {
            for (name, _) in family.ir {
                assert!(ir.insert(*name), "IR op `{name}` is registered twice");
            }
            for (name, _) in family.tensorflow {
                assert!(
                    tensorflow.insert(*name),
                    "TensorFlow op `{name}` is registered twice"
                );
            }
        }
    }
}

#[cfg(test)]
mod documentation {
    use super::tensorflow_ops;

    /// The list of supported TensorFlow ops in docs/ops.md is the registry's, so it cannot drift:
    /// `TFJSC_UPDATE_GOLDEN=1 cargo test -p tfjsc --lib documentation` rewrites it.
    #[test]
    fn docs_list_every_registered_tensorflow_op() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ops.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let marker = "<!-- generated from ops::registry: do not edit below -->\n";
        let head = text.split(marker).next().unwrap_or_default().to_string();
        let list: String = tensorflow_ops()
            .iter()
            .map(|op| format!("- `{op}`\n"))
            .collect();
        let expected = format!("{head}{marker}{list}");
        if std::env::var_os("TFJSC_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &expected).unwrap();
            return;
        }
        assert!(
            text == expected,
            "docs/ops.md is out of date (TFJSC_UPDATE_GOLDEN=1 cargo test -p tfjsc --lib documentation)"
        );
    }
}
