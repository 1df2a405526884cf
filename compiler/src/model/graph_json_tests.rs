//! Tests of the GraphDef JSON mapping against the attribute forms TF.js writes.

use serde_json::json;
use tfjsc_proto::tensorflow::{attr_value::Value as Kind, AttrValue, DataType, GraphDef};

use super::graph_json::graph_def;

fn graph(value: serde_json::Value) -> GraphDef {
    graph_def(&value).expect("graph parses")
}

fn attribute(graph: &GraphDef, node: usize, name: &str) -> Option<Kind> {
    graph
        .node
        .get(node)
        .and_then(|node| node.attr.get(name))
        .and_then(|attribute| attribute.value.clone())
}

#[test]
fn scalar_attribute_forms() {
    let graph = graph(json!({"node": [{
        "name": "conv", "op": "Conv2D", "input": ["x", "w:0", "^init"], "device": "",
        "attr": {
            "T": {"type": "DT_FLOAT"},
            "N": {"i": "3"},
            "alpha": {"f": 0.5},
            "nan": {"f": "NaN"},
            "use_cudnn_on_gpu": {"b": true},
            "padding": {"s": "U0FNRQ=="},
            "data_format": {"s": "TkhXQw=="},
            "numeric_type": {"type": 3},
            "none": {}
        }
    }]}));
    let node = &graph.node[0];
    assert_eq!(node.input, ["x", "w:0", "^init"]);
    assert_eq!(
        attribute(&graph, 0, "T"),
        Some(Kind::Type(DataType::DtFloat as i32))
    );
    assert_eq!(attribute(&graph, 0, "N"), Some(Kind::I(3)));
    assert_eq!(attribute(&graph, 0, "alpha"), Some(Kind::F(0.5)));
    assert!(matches!(attribute(&graph, 0, "nan"), Some(Kind::F(value)) if value.is_nan()));
    assert_eq!(
        attribute(&graph, 0, "use_cudnn_on_gpu"),
        Some(Kind::B(true))
    );
    assert_eq!(
        attribute(&graph, 0, "padding"),
        Some(Kind::S(b"SAME".to_vec()))
    );
    assert_eq!(
        attribute(&graph, 0, "data_format"),
        Some(Kind::S(b"NHWC".to_vec()))
    );
    assert_eq!(attribute(&graph, 0, "numeric_type"), Some(Kind::Type(3)));
    assert_eq!(node.attr.get("none"), Some(&AttrValue { value: None }));
}

#[test]
fn list_attribute_forms() {
    let graph = graph(json!({"node": [{
        "name": "fused", "op": "_FusedConv2D",
        "attr": {
            "strides": {"list": {"i": ["1", "2", 2, "1"]}},
            "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}},
            "empty": {"list": {}},
            "types": {"list": {"type": ["DT_FLOAT", "DT_INT32"]}},
            "floats": {"list": {"f": [1.5, "Infinity"]}},
            "shapes": {"list": {"shape": [{"dim": [{"size": "2"}]}, {"unknownRank": true}]}}
        }
    }]}));
    let list = |name| match attribute(&graph, 0, name) {
        Some(Kind::List(list)) => list,
        other => panic!("{name}: expected a list, found {other:?}"),
    };
    assert_eq!(list("strides").i, [1, 2, 2, 1]);
    assert_eq!(list("fused_ops").s, [b"BiasAdd".to_vec(), b"Relu".to_vec()]);
    assert_eq!(list("empty"), Default::default());
    assert_eq!(list("types").r#type, [1, 3]);
    assert_eq!(list("floats").f, [1.5, f32::INFINITY]);
    let shapes = list("shapes").shape;
    assert_eq!(shapes[0].dim[0].size, 2);
    assert!(shapes[1].unknown_rank);
}

#[test]
fn shape_and_tensor_attributes() {
    let graph = graph(json!({"node": [
        {"name": "x", "op": "Placeholder", "attr": {
            "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "224"}]}},
            "unknown": {"shape": {"unknownRank": true}},
            "unknown_snake": {"shape": {"unknown_rank": true}}
        }},
        {"name": "w", "op": "Const", "attr": {
            "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "3"}]}}},
            "dtype": {"type": "DT_FLOAT"}
        }},
        {"name": "c", "op": "Const", "attr": {
            "value": {"tensor": {
                "dtype": "DT_INT32", "tensor_shape": {}, "intVal": [7],
                "tensorContent": "AQAAAA==", "halfVal": [15360], "int64Val": ["-5"],
                "stringVal": ["YQ=="], "boolVal": [true], "doubleVal": [0.25]
            }}
        }}
    ]}));
    match attribute(&graph, 0, "shape") {
        Some(Kind::Shape(shape)) => {
            assert_eq!(
                shape.dim.iter().map(|d| d.size).collect::<Vec<_>>(),
                [-1, 224]
            );
            assert!(!shape.unknown_rank);
        }
        other => panic!("expected a shape, found {other:?}"),
    }
    for name in ["unknown", "unknown_snake"] {
        assert!(matches!(attribute(&graph, 0, name), Some(Kind::Shape(s)) if s.unknown_rank));
    }
    match attribute(&graph, 1, "value") {
        Some(Kind::Tensor(tensor)) => {
            assert_eq!(tensor.dtype, DataType::DtFloat as i32);
            assert_eq!(tensor.tensor_shape.expect("shape").dim[0].size, 3);
            assert!(tensor.tensor_content.is_empty());
        }
        other => panic!("expected a tensor, found {other:?}"),
    }
    match attribute(&graph, 2, "value") {
        Some(Kind::Tensor(tensor)) => {
            assert_eq!(tensor.int_val, [7]);
            assert_eq!(tensor.tensor_content, [1, 0, 0, 0]);
            assert_eq!(tensor.half_val, [15360]);
            assert_eq!(tensor.int64_val, [-5]);
            assert_eq!(tensor.string_val, [b"a".to_vec()]);
            assert_eq!(tensor.bool_val, [true]);
            assert_eq!(tensor.double_val, [0.25]);
            assert!(tensor.tensor_shape.expect("shape").dim.is_empty());
        }
        other => panic!("expected a tensor, found {other:?}"),
    }
}

#[test]
fn library_versions_and_function_attributes() {
    let graph = graph(json!({
        "node": [{"name": "loop", "op": "StatelessWhile", "attr": {
            "body": {"func": {"name": "body_fn", "attr": {"T": {"type": "DT_FLOAT"}}}}
        }}],
        "library": {"function": [{
            "signature": {"name": "body_fn",
                "inputArg": [{"name": "x", "type": "DT_FLOAT"}],
                "outputArg": [{"name": "y", "typeAttr": "T"}],
                "isStateful": true},
            "nodeDef": [{"name": "add", "op": "AddV2", "input": ["x", "x"]}],
            "ret": {"y": "add:z:0"},
            "argAttr": {"0": {"attr": {"_user_specified_name": {"s": "eA=="}}}}
        }]},
        "versions": {"producer": 1234, "minConsumer": "12"}
    }));
    assert!(matches!(attribute(&graph, 0, "body"), Some(Kind::Func(f)) if f.name == "body_fn"));
    let library = graph.library.expect("library");
    let function = &library.function[0];
    let signature = function.signature.as_ref().expect("signature");
    assert_eq!(signature.name, "body_fn");
    assert_eq!(signature.input_arg[0].r#type, DataType::DtFloat as i32);
    assert_eq!(signature.output_arg[0].type_attr, "T");
    assert!(signature.is_stateful);
    assert_eq!(function.node_def[0].op, "AddV2");
    assert_eq!(function.ret.get("y").map(String::as_str), Some("add:z:0"));
    assert!(function.arg_attr.contains_key(&0));
    let versions = graph.versions.expect("versions");
    assert_eq!((versions.producer, versions.min_consumer), (1234, 12));
}

#[test]
fn errors_name_the_node_and_attribute() {
    let error = graph_def(&json!({"node": [
        {"name": "ok", "op": "Relu"},
        {"name": "conv1", "op": "Conv2D", "attr": {"strides": {"list": {"i": ["1", "x"]}}}}
    ]}))
    .expect_err("bad list element");
    assert_eq!(
        error.location(),
        "node > [1] \"conv1\" > attr > \"strides\" > list > i > [1]"
    );
    assert!(
        error.expected.contains("64-bit integer"),
        "{}",
        error.expected
    );

    let error = graph_def(&json!({"node": [{"name": "a", "attr": {"T": {"type": "float"}}}]}))
        .expect_err("bad type name");
    assert!(error.expected.contains("DT_FLOAT"), "{}", error.expected);

    let error = graph_def(&json!({"node": [{"name": "a", "attr": {"x": {"i": "1", "f": 2}}}]}))
        .expect_err("two values");
    assert!(
        error.expected.contains("one value field"),
        "{}",
        error.expected
    );

    assert!(graph_def(&json!({"node": {"name": "a"}})).is_err());
    assert!(graph_def(&json!([])).is_err());
}
