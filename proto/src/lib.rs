//! The subset of TensorFlow's protobuf wire format that tfjsc reads and writes.
//!
//! The schemas in `proto/schemas/` are our own text; their field numbers are
//! TensorFlow's wire facts, so bytes written by TensorFlow decode here and
//! bytes written here decode in TensorFlow. Maps are generated as `BTreeMap`
//! so that iterating attributes or signatures is deterministic.
//!
//! This crate only holds generated message types: no parsing policy, no I/O.

/// Messages of the `tensorflow` protobuf package (GraphDef, SavedModel, tensor bundles, ...).
#[allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::large_enum_variant
)]
pub mod tensorflow {
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));
}

#[cfg(test)]
mod tests {
    use super::tensorflow::{attr_value, AttrValue, DataType, GraphDef, NodeDef, VersionDef};
    use prost::Message;

    #[test]
    fn graph_def_round_trips_through_the_wire_format() {
        let mut node = NodeDef {
            name: "conv".to_string(),
            op: "Conv2D".to_string(),
            input: vec!["input".to_string(), "weights:0".to_string()],
            ..NodeDef::default()
        };
        node.attr.insert(
            "T".to_string(),
            AttrValue {
                value: Some(attr_value::Value::Type(DataType::DtFloat as i32)),
            },
        );
        node.attr.insert(
            "strides".to_string(),
            AttrValue {
                value: Some(attr_value::Value::List(attr_value::ListValue {
                    i: vec![1, 2, 2, 1],
                    ..Default::default()
                })),
            },
        );
        let graph = GraphDef {
            node: vec![node],
            versions: Some(VersionDef {
                producer: 1234,
                ..VersionDef::default()
            }),
            ..GraphDef::default()
        };
        let bytes = graph.encode_to_vec();
        let decoded = GraphDef::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded, graph);
    }

    #[test]
    fn wire_numbers_match_tensorflow() {
        // NodeDef.name = 1 (tag 0x0a), op = 2 (tag 0x12), as TensorFlow writes them.
        let bytes = [0x0a, 0x01, b'a', 0x12, 0x05, b'C', b'o', b'n', b's', b't'];
        let node = NodeDef::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(node.name, "a");
        assert_eq!(node.op, "Const");
        assert_eq!(DataType::from_str_name("DT_HALF"), Some(DataType::DtHalf));
        assert_eq!(DataType::DtHalf as i32, 19);
    }
}
