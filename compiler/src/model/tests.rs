//! End-to-end tests of the web-model readers on small models written to a
//! temporary directory: every dtype and quantization, shard boundaries,
//! broken shards, malformed files, and the legacy format.

use std::path::Path;

use prost::Message;
use serde_json::{json, Value};
use tfjsc_proto::tensorflow::{GraphDef, NodeDef};

use super::*;

fn write(directory: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(directory.join(name), bytes).expect("write test file");
}

fn floats(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn strings(values: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for value in values {
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        bytes.extend_from_slice(value);
    }
    bytes
}

fn topology() -> Value {
    json!({
        "node": [
            {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
            {"name": "w", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}},
            {"name": "y", "op": "Mul", "input": ["x", "w"]}
        ],
        "versions": {"producer": 1}
    })
}

/// Writes a model.json with the test topology and `manifest`.
fn write_model(directory: &Path, manifest: Value, signature: Option<Value>) -> WebModel {
    let mut document = json!({
        "format": "graph-model",
        "generatedBy": "2.21.0",
        "convertedBy": "TensorFlow.js Converter v4.22.0",
        "modelTopology": topology(),
        "weightsManifest": manifest,
    });
    if let (Some(signature), Some(fields)) = (signature, document.as_object_mut()) {
        fields.insert("signature".to_string(), signature);
    }
    write(directory, "model.json", document.to_string().as_bytes());
    WebModel::open(&directory.join("model.json")).expect("model opens")
}

fn temporary_directory() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

#[test]
fn every_dtype_and_quantization_decodes() {
    let directory = temporary_directory();
    let mut stream = Vec::new();
    stream.extend(floats(&[1.5, -2.0]));
    stream.extend([7i32, -9].iter().flat_map(|v| v.to_le_bytes()));
    stream.extend([1u8, 0, 2]);
    stream.extend(strings(&[b"ab", b""]));
    stream.extend(floats(&[0.5, -0.25]));
    let halves = [half::f16::from_f32(1.0), half::f16::from_f32(-0.5)];
    stream.extend(halves.iter().flat_map(|h| h.to_bits().to_le_bytes()));
    stream.extend([0u8, 1, 255]);
    stream.extend([0u16, 1000].iter().flat_map(|v| v.to_le_bytes()));
    stream.extend([0u8, 3, 4]);
    stream.extend(floats(&[42.0]));
    write(directory.path(), "group1-shard1of1.bin", &stream);
    let model = write_model(
        directory.path(),
        json!([{"paths": ["group1-shard1of1.bin"], "weights": [
            {"name": "f", "shape": [2], "dtype": "float32"},
            {"name": "i", "shape": [2], "dtype": "int32"},
            {"name": "b", "shape": [3], "dtype": "bool"},
            {"name": "s", "shape": [2], "dtype": "string"},
            {"name": "c", "shape": [1], "dtype": "complex64"},
            {"name": "h", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "float16", "original_dtype": "float32"}},
            {"name": "u8", "shape": [3], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0, "original_dtype": "float32"}},
            {"name": "u16", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0}},
            {"name": "q_int", "shape": [3], "dtype": "int32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -2.0, "original_dtype": "int32"}},
            {"name": "scalar", "shape": [], "dtype": "float32"}
        ]}]),
        None,
    );
    assert_eq!(model.format, WebFormat::GraphModelJson);
    assert_eq!(model.signature, None);
    let string_weight = model.weight("s").expect("s");
    assert_eq!(
        (string_weight.offset, string_weight.byte_size),
        (19, Some(10))
    );
    let complex = model.weight("c").expect("c");
    assert_eq!((complex.offset, complex.byte_size), (29, Some(8)));
    let quantized = model.weight("u8").expect("u8");
    assert_eq!(
        quantized.encoding,
        WeightEncoding::Uint8 {
            scale: 0.5,
            min: -1.0
        }
    );
    assert_eq!(quantized.dtype, WeightDtype::Float32);
    assert_eq!(model.weight("scalar").expect("scalar").byte_size, Some(4));

    let values = model.read_weights().expect("weights read");
    assert_eq!(
        values,
        [
            WeightValues::Float32(vec![1.5, -2.0]),
            WeightValues::Int32(vec![7, -9]),
            WeightValues::Bool(vec![true, false, true]),
            WeightValues::String(vec![b"ab".to_vec(), Vec::new()]),
            WeightValues::Complex64(vec![0.5, -0.25]),
            WeightValues::Float32(vec![1.0, -0.5]),
            WeightValues::Float32(vec![-1.0, -0.5, 126.5]),
            WeightValues::Float32(vec![2.0, 3.0]),
            // -2.0, -0.5 and 0.0: Math.round(-0.5) is -0 in TF.js.
            WeightValues::Int32(vec![-2, 0, 0]),
            WeightValues::Float32(vec![42.0]),
        ]
    );
}

#[test]
fn quantized_int32_rounds_halves_up_like_tfjs() {
    let directory = temporary_directory();
    write(directory.path(), "shard", &[0, 1, 2, 3]);
    let model = write_model(
        directory.path(),
        json!([{"paths": ["shard"], "weights": [{"name": "q", "shape": [4], "dtype": "int32",
            "quantization": {"dtype": "uint8", "scale": 1.5, "min": -3.0}}]}]),
        None,
    );
    // -3, -1.5, 0, 1.5  →  -3, -1, 0, 2
    let values = model.read_weights().expect("weights read");
    assert_eq!(values, [WeightValues::Int32(vec![-3, -1, 0, 2])]);
}

#[test]
fn affine_parameters_keep_double_precision() {
    // Real manifest values: TF.js computes level * scale + min in f64.
    let (scale, min) = (0.0036510521290349027f64, -0.43447520335515344f64);
    let directory = temporary_directory();
    write(directory.path(), "shard", &[255, 7]);
    let model = write_model(
        directory.path(),
        json!([{"paths": ["shard"], "weights": [{"name": "q", "shape": [2], "dtype": "float32",
            "quantization": {"dtype": "uint8", "scale": scale, "min": min}}]}]),
        None,
    );
    let expected = [255.0, 7.0].map(|level: f64| (level * scale + min) as f32);
    let values = model.read_weights().expect("weights read");
    assert_eq!(values, [WeightValues::Float32(expected.to_vec())]);
}

#[test]
fn trailing_string_weight_is_sized_when_read() {
    let directory = temporary_directory();
    let mut stream = floats(&[1.0]);
    stream.extend(strings(&[b"hello"]));
    write(directory.path(), "shard", &stream);
    let model = write_model(
        directory.path(),
        json!([{"paths": ["shard"], "weights": [
            {"name": "f", "shape": [1], "dtype": "float32"},
            {"name": "s", "shape": [], "dtype": "string"}
        ]}]),
        None,
    );
    let string_weight = model.weight("s").expect("s");
    assert_eq!((string_weight.offset, string_weight.byte_size), (4, None));
    let values = model.read_weights().expect("weights read");
    assert_eq!(values[1], WeightValues::String(vec![b"hello".to_vec()]));
}

fn two_shard_model(directory: &Path) -> WebModel {
    let stream = floats(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    write(directory, "group1-shard1of2.bin", &stream[..6]);
    write(directory, "group1-shard2of2.bin", &stream[6..]);
    write(directory, "group2-shard1of1.bin", &floats(&[9.0]));
    write_model(
        directory,
        json!([
            {"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": [
                {"name": "a", "shape": [1], "dtype": "float32"},
                {"name": "straddling", "shape": [2, 2], "dtype": "float32"}
            ]},
            {"paths": ["group2-shard1of1.bin"], "weights": [
                {"name": "b", "shape": [1, 1], "dtype": "float32"}
            ]}
        ]),
        None,
    )
}

#[test]
fn weight_straddling_two_shards_decodes() {
    let directory = temporary_directory();
    let model = two_shard_model(directory.path());
    let straddling = model.weight("straddling").expect("weight");
    assert_eq!((straddling.group, straddling.offset), (0, 4));
    assert_eq!(model.weight("b").expect("b").group, 1);
    assert_eq!(model.groups.len(), 2);
    let values = model.read_weights().expect("weights read");
    assert_eq!(
        values,
        [
            WeightValues::Float32(vec![1.0]),
            WeightValues::Float32(vec![2.0, 3.0, 4.0, 5.0]),
            WeightValues::Float32(vec![9.0]),
        ]
    );
    let files = model.weight_files().expect("files listed");
    let names: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "group1-shard1of2.bin",
            "group1-shard2of2.bin",
            "group2-shard1of1.bin"
        ]
    );
    assert_eq!(files[0].size, 6);
    assert_eq!(files[1].size, 14);
    assert_eq!(files[2].crc32, crc32fast::hash(&floats(&[9.0])));
}

#[test]
fn missing_shard_names_the_file_and_weight() {
    let directory = temporary_directory();
    let model = two_shard_model(directory.path());
    std::fs::remove_file(directory.path().join("group1-shard2of2.bin")).expect("remove");
    let error = model.read_weights().expect_err("missing shard");
    match &error {
        ModelError::MissingShard {
            path,
            group,
            weight,
            ..
        } => {
            assert!(path.ends_with("group1-shard2of2.bin"));
            assert_eq!((*group, weight.as_str()), (0, "straddling"));
        }
        other => panic!("expected MissingShard, found {other:?}"),
    }
    assert!(
        error.to_string().contains("group1-shard2of2.bin"),
        "{error}"
    );
    assert!(matches!(
        model.weight_files(),
        Err(ModelError::MissingShard { .. })
    ));
}

#[test]
fn short_shard_names_the_file_and_weight() {
    let directory = temporary_directory();
    let model = two_shard_model(directory.path());
    write(directory.path(), "group1-shard2of2.bin", &[0; 13]);
    let error = model.read_weights().expect_err("short shard");
    match &error {
        ModelError::ShortShard {
            path,
            weight,
            start,
            end,
            available,
            ..
        } => {
            assert!(path.ends_with("group1-shard2of2.bin"));
            assert_eq!(weight, "straddling");
            assert_eq!((*start, *end, *available), (4, 20, 19));
        }
        other => panic!("expected ShortShard, found {other:?}"),
    }
    assert!(error.to_string().contains("\"straddling\""), "{error}");
}

#[test]
fn long_shard_names_the_file_and_last_weight() {
    let directory = temporary_directory();
    let model = two_shard_model(directory.path());
    write(directory.path(), "group2-shard1of1.bin", &[0; 5]);
    let error = model.read_weights().expect_err("long shard");
    match &error {
        ModelError::LongShard {
            path,
            group,
            weight,
            expected,
            available,
            ..
        } => {
            assert!(path.ends_with("group2-shard1of1.bin"));
            assert_eq!((*group, weight.as_str()), (1, "b"));
            assert_eq!((*expected, *available), (4, 5));
        }
        other => panic!("expected LongShard, found {other:?}"),
    }
}

#[test]
fn string_weight_running_past_the_stream_is_short() {
    let directory = temporary_directory();
    let mut stream = strings(&[b"abc"]);
    stream.truncate(5);
    write(directory.path(), "shard", &stream);
    let model = write_model(
        directory.path(),
        json!([{"paths": ["shard"], "weights": [{"name": "s", "shape": [1], "dtype": "string"}]}]),
        None,
    );
    let error = model.read_weights().expect_err("short string");
    assert!(
        matches!(&error, ModelError::ShortShard { weight, end: 7, .. } if weight == "s"),
        "{error:?}"
    );
}

#[test]
fn malformed_json_names_the_file_line_and_column() {
    let directory = temporary_directory();
    write(
        directory.path(),
        "model.json",
        b"{\n  \"format\": \"graph-model\",\n  oops\n}",
    );
    let error = WebModel::open(&directory.path().join("model.json")).expect_err("malformed");
    match &error {
        ModelError::MalformedJson {
            path, line, column, ..
        } => {
            assert!(path.ends_with("model.json"));
            assert_eq!((*line, *column), (3, 3));
        }
        other => panic!("expected MalformedJson, found {other:?}"),
    }
    assert!(error.to_string().contains("model.json:3:3"), "{error}");
}

#[test]
fn malformed_protobuf_names_the_file() {
    let directory = temporary_directory();
    write(
        directory.path(),
        "web_model.pb",
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01],
    );
    write(directory.path(), "weights_manifest.json", b"[]");
    let error = WebModel::open(directory.path()).expect_err("malformed");
    match &error {
        ModelError::MalformedProtobuf { path, .. } => assert!(path.ends_with("web_model.pb")),
        other => panic!("expected MalformedProtobuf, found {other:?}"),
    }
}

#[test]
fn legacy_format_round_trips() {
    let directory = temporary_directory();
    let graph = GraphDef {
        node: vec![
            NodeDef {
                name: "w".to_string(),
                op: "Const".to_string(),
                ..NodeDef::default()
            },
            NodeDef {
                name: "y".to_string(),
                op: "Relu".to_string(),
                input: vec!["w".to_string()],
                ..NodeDef::default()
            },
        ],
        ..GraphDef::default()
    };
    write(
        directory.path(),
        "tensorflowjs_model.pb",
        &graph.encode_to_vec(),
    );
    write(
        directory.path(),
        "weights_manifest.json",
        json!([{"paths": ["group1-shard1of1"], "weights": [
            {"name": "w", "shape": [2], "dtype": "float32"}
        ]}])
        .to_string()
        .as_bytes(),
    );
    write(directory.path(), "group1-shard1of1", &floats(&[3.0, -4.0]));
    let model = WebModel::open(directory.path()).expect("legacy model opens");
    assert_eq!(model.format, WebFormat::LegacyProtobuf);
    assert!(model.path.ends_with("tensorflowjs_model.pb"));
    assert_eq!(model.dir, directory.path());
    assert_eq!(model.graph, graph);
    assert_eq!(model.signature, None);
    assert!(model.manifest_path().ends_with("weights_manifest.json"));
    let values = model.read_weights().expect("weights read");
    assert_eq!(values, [WeightValues::Float32(vec![3.0, -4.0])]);

    std::fs::remove_file(directory.path().join("weights_manifest.json")).expect("remove");
    let error = WebModel::open(directory.path()).expect_err("no manifest");
    assert!(
        matches!(&error, ModelError::Io { path, .. } if path.ends_with("weights_manifest.json")),
        "{error:?}"
    );
}

#[test]
fn signature_is_read_in_file_order() {
    let directory = temporary_directory();
    let model = write_model(
        directory.path(),
        json!([]),
        Some(json!({
            "inputs": {
                "zeta": {"name": "zeta:0", "dtype": "DT_FLOAT",
                         "tensorShape": {"dim": [{"size": "-1"}, {"size": "3"}]}},
                "alpha": {"name": "alpha:0", "dtype": 3, "tensorShape": {"unknownRank": true}}
            },
            "outputs": {"y": {"name": "Identity:0"}}
        })),
    );
    let signature = model.signature.expect("signature");
    let keys: Vec<&str> = signature.inputs.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["zeta", "alpha"]);
    assert_eq!(
        signature.inputs[0],
        SignatureTensor {
            key: "zeta".to_string(),
            name: "zeta:0".to_string(),
            dtype: Some("DT_FLOAT".to_string()),
            shape: Some(vec![-1, 3]),
        }
    );
    assert_eq!(signature.inputs[1].dtype.as_deref(), Some("DT_INT32"));
    assert_eq!(signature.inputs[1].shape, None);
    assert_eq!(signature.outputs[0].name, "Identity:0");
    assert_eq!(
        (
            signature.outputs[0].dtype.clone(),
            signature.outputs[0].shape.clone()
        ),
        (None, None)
    );
    assert_eq!(model.graph.node.len(), 3);
    assert_eq!(model.graph.node[2].input, ["x", "w"]);
}

#[test]
fn directories_and_other_formats() {
    let directory = temporary_directory();
    let error = WebModel::open(directory.path()).expect_err("empty directory");
    assert!(
        matches!(error, ModelError::NoModelInDirectory { .. }),
        "{error:?}"
    );

    let missing = directory.path().join("nothing.json");
    assert!(matches!(
        WebModel::open(&missing),
        Err(ModelError::Io { .. })
    ));

    write(
        directory.path(),
        "model.json",
        br#"{"format": "layers-model", "modelTopology": {"class_name": "Sequential"}}"#,
    );
    let error = WebModel::open(directory.path()).expect_err("layers model");
    assert!(
        matches!(&error, ModelError::UnsupportedFormat { format, .. } if format == "layers-model"),
        "{error:?}"
    );

    write(
        directory.path(),
        "model.json",
        br#"{"format": "graph-model"}"#,
    );
    let error = WebModel::open(directory.path()).expect_err("no topology");
    assert!(matches!(error, ModelError::Topology { .. }), "{error:?}");

    write(
        directory.path(),
        "model.json",
        br#"{"modelTopology": {"node": []}}"#,
    );
    let model = WebModel::open(directory.path()).expect("minimal model");
    assert!(model.weights.is_empty() && model.groups.is_empty());
    assert_eq!(model.read_weights().expect("nothing to read"), []);
}

fn manifest_error(manifest: Value) -> (String, String) {
    let directory = temporary_directory();
    let document = json!({"modelTopology": topology(), "weightsManifest": manifest});
    write(
        directory.path(),
        "model.json",
        document.to_string().as_bytes(),
    );
    match WebModel::open(directory.path()) {
        Err(ModelError::Manifest {
            location, expected, ..
        }) => (location, expected),
        other => panic!("expected a manifest error, found {other:?}"),
    }
}

#[test]
fn manifest_errors_name_the_weight() {
    let group = |weight: Value| json!([{"paths": ["shard"], "weights": [weight]}]);
    let (location, expected) = manifest_error(group(
        json!({"name": "w", "shape": [2], "dtype": "float64"}),
    ));
    assert_eq!(location, "group 0 > weight \"w\" > dtype");
    assert!(expected.contains("float64"), "{expected}");

    let huge = json!({"name": "big", "shape": ["4294967296", "4294967296", "4294967296"], "dtype": "float32"});
    let (location, _) = manifest_error(group(huge));
    assert_eq!(location, "group 0 > weight \"big\" > shape");

    let too_many_bytes =
        json!({"name": "big", "shape": ["4611686018427387904", 2], "dtype": "float32"});
    let (location, _) = manifest_error(group(too_many_bytes));
    assert_eq!(location, "group 0 > weight \"big\" > shape");

    let (location, expected) = manifest_error(group(
        json!({"name": "n", "shape": [-1], "dtype": "float32"}),
    ));
    assert_eq!(location, "group 0 > weight \"n\" > shape > [0]");
    assert!(expected.contains("non-negative"), "{expected}");

    let bad_quantization = json!({"name": "q", "shape": [1], "dtype": "int32",
        "quantization": {"dtype": "float16"}});
    let (location, _) = manifest_error(group(bad_quantization));
    assert_eq!(location, "group 0 > weight \"q\" > quantization");

    let no_scale = json!({"name": "q", "shape": [1], "dtype": "float32",
        "quantization": {"dtype": "uint8", "min": 0}});
    let (location, _) = manifest_error(group(no_scale));
    assert_eq!(location, "group 0 > weight \"q\" > quantization > scale");

    let (location, _) = manifest_error(json!([{"weights": []}]));
    assert_eq!(location, "group 0 > paths");
    let (location, _) = manifest_error(json!({"paths": []}));
    assert_eq!(location, "top level");
}

#[test]
fn garbage_inputs_are_errors_not_panics() {
    let directory = temporary_directory();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for length in [0usize, 1, 7, 64, 1000] {
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        write(directory.path(), "model.json", &bytes);
        assert!(WebModel::open(&directory.path().join("model.json")).is_err());
        write(directory.path(), "optimized_model.pb", &bytes);
        write(directory.path(), "weights_manifest.json", &bytes);
        let _ = WebModel::open(&directory.path().join("optimized_model.pb"));
    }
    for document in [
        json!(null),
        json!([]),
        json!({"modelTopology": []}),
        json!({"modelTopology": {"node": [null]}}),
        json!({"modelTopology": {"node": []}, "weightsManifest": {}}),
        json!({"modelTopology": {"node": []}, "signature": {"inputs": []}}),
        json!({"modelTopology": {"node": []}, "signature": {"inputs": {"x": {}}}}),
    ] {
        write(
            directory.path(),
            "model.json",
            document.to_string().as_bytes(),
        );
        assert!(WebModel::open(directory.path()).is_err(), "{document}");
    }
}
