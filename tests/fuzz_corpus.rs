//! Replays the committed fuzz corpus and every crash reproducer on stable Rust.
//!
//! Each directory `fuzz/corpus/TARGET/` and `fuzz/artifacts/TARGET/` is fed, file by file,
//! through `tfjsc::fuzzing::TARGET`, the very function the nightly fuzz target calls; a file that
//! panics fails the test by name. So a crash found once by the fuzzer (and committed under
//! `fuzz/artifacts/`) stays fixed without anyone running nightly.
//!
//! `cargo test -p tfjsc --test fuzz_corpus -- --ignored write_seed_corpus` rewrites the seed files
//! (`fuzz/corpus/TARGET/seed-*`) from the fixtures; the fuzzer's own finds sit beside them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use prost::Message;
use tfjsc::fuzzing;
use tfjsc_proto::tensorflow::{
    attr_value, tensor_shape_proto, AttrValue, DataType, TensorProto, TensorShapeProto,
};

/// A fuzzing entry point: arbitrary bytes in, nothing out, never a panic.
type EntryPoint = fn(&[u8]);

/// Every fuzz target, by the directory name its corpus and artifacts use.
const TARGETS: &[(&str, EntryPoint)] = &[
    ("model_json", fuzzing::model_json),
    ("legacy_graph", fuzzing::legacy_graph),
    ("npy", fuzzing::npy),
    ("description", fuzzing::description),
    ("pipeline", fuzzing::pipeline),
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_in(directory: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_and_reproducers_replay_without_panics() {
    replay(&["corpus", "artifacts"]);
}

/// Replays every file under `fuzz/KIND/TARGET/` for each of `kinds`.
fn replay(kinds: &[&str]) {
    let fuzz = repository().join("fuzz");
    let mut panicked = Vec::new();
    let mut replayed = 0;
    for kind in kinds {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind)) else {
            continue;
        };
        for entry in entries {
            let directory = entry.expect("directory entry").path();
            if !directory.is_dir() {
                continue;
            }
            let name = directory.file_name().unwrap().to_string_lossy().to_string();
            let Some((_, target)) = TARGETS.iter().find(|(target, _)| *target == name) else {
                panic!(
                    "{}: no fuzz target of that name in TARGETS",
                    directory.display()
                );
            };
            for file in files_in(&directory) {
                let data = std::fs::read(&file).expect("read corpus file");
                replayed += 1;
                if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                    panicked.push(file.display().to_string());
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(fuzzing::scratch_root());
    eprintln!(
        "replayed {replayed} fuzz inputs from fuzz/{{{}}}",
        kinds.join(",")
    );
    assert!(
        replayed > 0,
        "no corpus files found under {}",
        fuzz.display()
    );
    assert!(
        panicked.is_empty(),
        "{} of {replayed} fuzz inputs panicked:\n{}",
        panicked.len(),
        panicked.join("\n")
    );
}

/// Writes `bytes` as the seed `fuzz/corpus/TARGET/seed-NAME`.
fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let directory = repository().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&directory).expect("create corpus directory");
    std::fs::write(directory.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn fixture(path: &str) -> PathBuf {
    repository().join("tests/fixtures").join(path)
}

/// A model.json input: the JSON, the separator, the shard.
fn model_json_input(json: &[u8], shard: &[u8]) -> Vec<u8> {
    let mut input = json.to_vec();
    input.push(fuzzing::MODEL_JSON_SEPARATOR);
    input.extend_from_slice(shard);
    input
}

fn model_json_seeds() {
    // Real converter output, with its whole shard (the small models only: seeds stay small).
    for name in ["mlp_uint8", "mlp_float16", "effnet_block"] {
        let json = std::fs::read(fixture(&format!("{name}/model.json"))).unwrap();
        let shard = std::fs::read(fixture(&format!("{name}/group1-shard1of1.bin"))).unwrap();
        write_seed("model_json", name, &model_json_input(&json, &shard));
    }
    // Every dtype and quantization in one tiny manifest, and a signature.
    let mut stream = Vec::new();
    stream.extend([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()));
    stream.extend([7i32, -9].iter().flat_map(|v| v.to_le_bytes()));
    stream.extend([1u8, 0, 2]);
    stream.extend([2u32.to_le_bytes().as_slice(), b"ab", &0u32.to_le_bytes()].concat());
    stream.extend([0.5f32, -0.25].iter().flat_map(|v| v.to_le_bytes()));
    stream.extend([0x3c00u16, 0xb800].iter().flat_map(|v| v.to_le_bytes()));
    stream.extend([0u8, 1, 255]);
    stream.extend([0u16, 1000].iter().flat_map(|v| v.to_le_bytes()));
    stream.extend([0u8, 3, 4]);
    stream.extend(42f32.to_le_bytes());
    let json = serde_json::json!({
        "format": "graph-model",
        "modelTopology": {"node": [
            {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
             "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "2"}]}}}},
            {"name": "f", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}},
            {"name": "h", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}},
            {"name": "y", "op": "Mul", "input": ["x", "f"]},
            {"name": "z", "op": "AddV2", "input": ["y", "h"]}
        ], "versions": {"producer": 1}},
        "signature": {
            "inputs": {"x": {"name": "x:0", "dtype": "DT_FLOAT"}},
            "outputs": {"z": {"name": "z:0", "dtype": "DT_FLOAT"}}
        },
        "weightsManifest": [{"paths": [fuzzing::MODEL_JSON_SHARD], "weights": [
            {"name": "f", "shape": [2], "dtype": "float32"},
            {"name": "i", "shape": [2], "dtype": "int32"},
            {"name": "b", "shape": [3], "dtype": "bool"},
            {"name": "s", "shape": [2], "dtype": "string"},
            {"name": "c", "shape": [1], "dtype": "complex64"},
            {"name": "h", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "float16", "original_dtype": "float32"}},
            {"name": "u8", "shape": [3], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
            {"name": "u16", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0}},
            {"name": "q_int", "shape": [3], "dtype": "int32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -2.0, "original_dtype": "int32"}},
            {"name": "scalar", "shape": [], "dtype": "float32"}
        ]}]
    });
    let json = serde_json::to_vec(&json).unwrap();
    write_seed(
        "model_json",
        "every_dtype",
        &model_json_input(&json, &stream),
    );
    // The fixtures of the newer ops (GatherNd, ArgMax, TopKV2, DepthToSpace, SplitV, ...), with
    // their whole (small) shards; seg_decoder and dilated_net are left to the op seeds below.
    for name in ["keypoint_head", "mesh_refine", "detector_head"] {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture(&format!("{name}/model.json"))).unwrap())
                .unwrap();
        let shard = std::fs::read(fixture(&format!("{name}/group1-shard1of1.bin"))).unwrap();
        let json = serde_json::to_vec(&json).unwrap();
        write_seed("model_json", name, &model_json_input(&json, &shard));
    }
    // One small graph per TensorFlow op case (`op_cases`): the op alone, its inputs placeholders
    // or constants as TensorFlow's case has them.
    for (name, json, shard) in op_case_models() {
        write_seed("model_json", &name, &model_json_input(&json, &shard));
    }
}

/// At most this many cases of each op in `tests/fixtures/op_cases` become seeds, spread over its
/// cases (which vary the attributes).
const CASES_PER_OP: usize = 3;

/// Einsum has no TensorFlow case file: equations the importer lowers, as cases of the same form.
fn einsum_cases() -> Vec<serde_json::Value> {
    let tensor = |shape: &[usize]| {
        let count: usize = shape.iter().product();
        serde_json::json!({"dtype": "float32", "shape": shape,
            "values": (0..count).map(|i| i as f32 * 0.5 - 1.0).collect::<Vec<_>>()})
    };
    [
        ("ij,jk->ik", vec![vec![2, 3], vec![3, 4]], vec![2, 4]),
        (
            "bij,bjk->bik",
            vec![vec![2, 2, 3], vec![2, 3, 2]],
            vec![2, 2, 2],
        ),
        (
            "abc,cd->abd",
            vec![vec![1, 2, 3], vec![3, 2]],
            vec![1, 2, 2],
        ),
        ("ij->ji", vec![vec![2, 3]], vec![3, 2]),
        ("ij->i", vec![vec![2, 3]], vec![2]),
        (
            "bhqd,bhkd->bhqk",
            vec![vec![1, 2, 3, 4], vec![1, 2, 5, 4]],
            vec![1, 2, 3, 5],
        ),
    ]
    .into_iter()
    .map(|(equation, inputs, output)| {
        serde_json::json!({"op": "Einsum", "name": equation,
            "attrs": {"equation": {"kind": "string", "value": equation},
                      "N": {"kind": "int", "value": inputs.len()},
                      "T": {"kind": "type", "value": 1}},
            "inputs": inputs.iter().map(|shape| tensor(shape)).collect::<Vec<_>>(),
            "const_inputs": if inputs.len() == 2 { vec![1] } else { vec![] },
            "outputs": [tensor(&output)]})
    })
    .collect()
}

/// `(seed name, model.json, shard)` for the chosen cases of every op in
/// `tests/fixtures/op_cases`, and [`einsum_cases`].
fn op_case_models() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    use serde_json::{json, Value};
    use tfjsc_proto::tensorflow::DataType;

    let type_name = |number: i64| {
        DataType::try_from(number as i32)
            .expect("a TensorFlow dtype")
            .as_str_name()
            .to_string()
    };
    let dtype_of = |name: &str| match name {
        "float32" => "DT_FLOAT",
        "int32" => "DT_INT32",
        "bool" => "DT_BOOL",
        other => panic!("op case dtype {other}"),
    };
    let shape_of = |tensor: &Value| {
        let dims: Vec<Value> = tensor["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|size| json!({"size": size.as_i64().unwrap().to_string()}))
            .collect();
        json!({ "dim": dims })
    };
    let mut files = files_in(&fixture("op_cases"));
    files.retain(|path| {
        path.extension()
            .is_some_and(|extension| extension == "json")
    });
    let mut ops: Vec<(String, Vec<Value>)> = files
        .iter()
        .map(|path| {
            let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            let op = file["op"].as_str().unwrap().to_string();
            (op, file["cases"].as_array().unwrap().clone())
        })
        .collect();
    ops.push(("Einsum".to_string(), einsum_cases()));

    let mut models = Vec::new();
    for (op, cases) in ops {
        let step = cases.len().div_ceil(CASES_PER_OP).max(1);
        for (index, case) in cases.iter().enumerate().step_by(step) {
            let mut nodes = Vec::new();
            let mut weights = Vec::new();
            let mut shard = Vec::new();
            let mut signature_inputs = serde_json::Map::new();
            let constant: Vec<u64> = case["const_inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap())
                .collect();
            let mut input_names = Vec::new();
            for (i, tensor) in case["inputs"].as_array().unwrap().iter().enumerate() {
                let name = format!("in{i}");
                let dtype = dtype_of(tensor["dtype"].as_str().unwrap());
                let shape = shape_of(tensor);
                if constant.contains(&(i as u64)) {
                    nodes.push(json!({"name": name, "op": "Const", "attr": {
                        "dtype": {"type": dtype},
                        "value": {"tensor": {"dtype": dtype, "tensorShape": shape}}}}));
                    let values = tensor["values"].as_array().unwrap();
                    for value in values {
                        match dtype {
                            "DT_FLOAT" => {
                                let v = match value {
                                    Value::String(s) => {
                                        s.parse::<f32>().unwrap_or(match s.as_str() {
                                            "-inf" => f32::NEG_INFINITY,
                                            "inf" => f32::INFINITY,
                                            _ => f32::NAN,
                                        })
                                    }
                                    _ => value.as_f64().unwrap() as f32,
                                };
                                shard.extend(v.to_le_bytes());
                            }
                            "DT_INT32" => {
                                shard.extend((value.as_i64().unwrap() as i32).to_le_bytes())
                            }
                            _ => shard
                                .push(value.as_bool().unwrap_or_else(|| value.as_i64() == Some(1))
                                    as u8),
                        }
                    }
                    let dtype_name = match dtype {
                        "DT_FLOAT" => "float32",
                        "DT_INT32" => "int32",
                        _ => "bool",
                    };
                    weights.push(json!({"name": name, "shape": tensor["shape"],
                        "dtype": dtype_name}));
                } else {
                    nodes.push(json!({"name": name, "op": "Placeholder", "attr": {
                        "dtype": {"type": dtype}, "shape": {"shape": shape}}}));
                    signature_inputs.insert(
                        name.clone(),
                        json!({"name": format!("{name}:0"), "dtype": dtype, "tensorShape": shape}),
                    );
                }
                input_names.push(name);
            }
            let mut attr = serde_json::Map::new();
            for (name, value) in case["attrs"].as_object().unwrap() {
                let v = &value["value"];
                let converted = match value["kind"].as_str().unwrap() {
                    "type" => json!({"type": type_name(v.as_i64().unwrap())}),
                    "int" => json!({"i": v.as_i64().unwrap().to_string()}),
                    "float" => json!({ "f": v }),
                    "bool" => json!({ "b": v }),
                    "string" => json!({"s": base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap())}),
                    "list_int" => json!({"list": {"i": v.as_array().unwrap().iter()
                        .map(|i| i.as_i64().unwrap().to_string()).collect::<Vec<_>>()}}),
                    other => panic!("{op}: attribute kind {other}"),
                };
                attr.insert(name.clone(), converted);
            }
            nodes.push(json!({"name": "op", "op": op, "input": input_names, "attr": attr}));
            let mut signature_outputs = serde_json::Map::new();
            for (k, output) in case["outputs"].as_array().unwrap().iter().enumerate() {
                let dtype = match output["dtype"].as_str().unwrap() {
                    "int64" => "DT_INT64",
                    other => dtype_of(other),
                };
                signature_outputs.insert(
                    format!("out{k}"),
                    json!({"name": format!("op:{k}"), "dtype": dtype}),
                );
            }
            let model = json!({
                "format": "graph-model",
                "modelTopology": {"node": nodes, "versions": {"producer": 1}},
                "signature": {"inputs": signature_inputs, "outputs": signature_outputs},
                "weightsManifest": [{"paths": [fuzzing::MODEL_JSON_SHARD], "weights": weights}]
            });
            models.push((
                format!("op-{op}-{index}"),
                serde_json::to_vec(&model).unwrap(),
                shard,
            ));
        }
    }
    models
}

/// The legacy fixtures' graphs with every weight's value put in its `Const`, so the graph
/// imports beside an empty manifest: small weights (shapes, paddings, axes) with their real
/// values, large ones as a single value that fills their shape, so seeds stay small.
fn legacy_graph_seeds() {
    for name in ["mlp", "small_cnn", "effnet_block", "mobilenet_v2_035_96"] {
        let path = fixture(&format!("{name}/legacy/web_model.pb"));
        let model = tfjsc::model::WebModel::open(&path).expect("legacy fixture opens");
        let values = model.read_weights().expect("legacy fixture weights read");
        let mut graph = model.graph.clone();
        for node in graph.node.iter_mut().filter(|node| node.op == "Const") {
            let Some(index) = model.weights.iter().position(|w| w.name == node.name) else {
                continue;
            };
            let weight = &model.weights[index];
            /// Weights up to this many elements keep their values.
            const EXACT_LIMIT: usize = 256;
            let exact = weight.shape.iter().product::<usize>() <= EXACT_LIMIT;
            let shape = TensorShapeProto {
                dim: weight
                    .shape
                    .iter()
                    .map(|&size| tensor_shape_proto::Dim {
                        size: size as i64,
                        name: String::new(),
                    })
                    .collect(),
                unknown_rank: false,
            };
            let mut tensor = TensorProto {
                tensor_shape: Some(shape),
                ..TensorProto::default()
            };
            use tfjsc::model::WeightValues;
            match &values[index] {
                WeightValues::Int32(values) => {
                    tensor.dtype = DataType::DtInt32 as i32;
                    tensor.int_val = if exact { values.clone() } else { vec![1] };
                }
                WeightValues::Bool(values) => {
                    tensor.dtype = DataType::DtBool as i32;
                    tensor.bool_val = if exact { values.clone() } else { vec![true] };
                }
                WeightValues::Float32(values) => {
                    tensor.dtype = DataType::DtFloat as i32;
                    tensor.float_val = if exact { values.clone() } else { vec![0.5] };
                }
                _ => panic!("{name}: weight {} is {:?}", weight.name, weight.dtype),
            }
            node.attr.insert(
                "value".to_string(),
                AttrValue {
                    value: Some(attr_value::Value::Tensor(tensor)),
                },
            );
        }
        write_seed("legacy_graph", name, &graph.encode_to_vec());
    }
    // As converted (values stripped): the reader alone, import stops at the first weight.
    let stripped = std::fs::read(fixture("mlp/legacy/web_model.pb")).unwrap();
    write_seed("legacy_graph", "mlp_stripped", &stripped);
}

fn npy_seeds() {
    for name in [
        "mlp/input_0.npy",
        "mlp/expected_0.npy",
        "small_cnn/input_0.npy",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        write_seed("npy", &name.replace('/', "_"), &bytes);
    }
    use tfjsc_runtime::{npy::encode_npy, DType, Tensor};
    let int32 = Tensor::new(
        DType::Int32,
        vec![2, 2],
        vec![1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0],
    );
    write_seed("npy", "int32", &encode_npy(&int32.unwrap()));
    let bools = Tensor::new(DType::Bool, vec![3], vec![1, 0, 1]);
    write_seed("npy", "bool", &encode_npy(&bools.unwrap()));
    let scalar = Tensor::new(DType::Float32, vec![], 1f32.to_le_bytes().to_vec());
    write_seed("npy", "scalar", &encode_npy(&scalar.unwrap()));
    // Version 2.0 (four-byte header length), and headers the reader must refuse.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }          \n";
    let mut version2 = b"\x93NUMPY\x02\x00".to_vec();
    version2.extend((header.len() as u32).to_le_bytes());
    version2.extend(header.as_bytes());
    version2.extend([0u8; 8]);
    write_seed("npy", "version2", &version2);
    for (name, descr, fortran) in [
        ("big_endian", ">f4", "False"),
        ("fortran", "<f4", "True"),
        ("float64", "<f8", "False"),
    ] {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': (1, 2), }}\n");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 16]);
        write_seed("npy", name, &bytes);
    }
}

fn description_seeds() {
    for name in [
        "mlp",
        "mlp_uint8",
        "mlp_float16",
        "small_cnn",
        "effnet_block",
    ] {
        let options = tfjsc::compile::CompileOptions {
            target: tfjsc::codegen::Target::new(tfjsc::codegen::target::CpuLevel::X86_64V2),
            ..Default::default()
        };
        let compiled = tfjsc::compile::compile(&fixture(&format!("{name}/model.json")), &options)
            .expect("fixture compiles");
        let mut description = compiled.description;
        // Relative paths: the seed must not depend on where the repository was checked out.
        description["model"] = "model.json".into();
        description["weights_dir"] = ".".into();
        let text = serde_json::to_string_pretty(&description).unwrap();
        write_seed("description", name, text.as_bytes());
    }
}

fn pipeline_seeds() {
    for path in files_in(&repository().join("tests/passes")) {
        if path.extension().is_some_and(|extension| extension == "ir") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            write_seed("pipeline", &name, &std::fs::read(&path).unwrap());
        }
    }
    let import_dump = tfjsc::compile::CompileOptions {
        dump_ir: vec!["import".to_string()],
        ..Default::default()
    };
    // The fixtures as imported (weights print elided): real op mixes at real sizes.
    for name in ["mlp", "small_cnn", "effnet_block", "mobilenet_v2_035_96"] {
        let options = tfjsc::compile::CompileOptions {
            dump_ir: vec!["import".to_string()],
            ..Default::default()
        };
        let lowered =
            tfjsc::compile::lower_to_ir(&fixture(&format!("{name}/model.json")), &options)
                .expect("fixture lowers");
        let (_, text) = &lowered.dumps[0];
        write_seed("pipeline", name, text.as_bytes());
    }
    for name in [
        "seg_decoder",
        "detector_head",
        "keypoint_head",
        "mesh_refine",
        "dilated_net",
    ] {
        let lowered =
            tfjsc::compile::lower_to_ir(&fixture(&format!("{name}/model.json")), &import_dump)
                .expect("fixture lowers");
        write_seed("pipeline", name, lowered.dumps[0].1.as_bytes());
    }
    // The newer ops on inline constants (which the passes fold and the kernels index with),
    // including out-of-range and negative indices, so mutations start close to the edges.
    let mut graph = tfjsc::ir::text::parse(NEW_OPS_INLINE).expect("the inline seed parses");
    tfjsc::passes::run_pipeline(&mut graph, true, &mut |_, _| {}).expect("and passes");
    write_seed(
        "pipeline",
        "new_ops_inline_constants",
        NEW_OPS_INLINE.as_bytes(),
    );
    // Every op case's graph as imported: one small graph per IR op the importers produce, with
    // the attributes TensorFlow's cases vary. Cases the importer refuses are skipped.
    let scratch = std::env::temp_dir().join(format!("tfjsc-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut written = 0;
    for (name, json, shard) in op_case_models() {
        std::fs::write(scratch.join("model.json"), &json).unwrap();
        std::fs::write(scratch.join(fuzzing::MODEL_JSON_SHARD), &shard).unwrap();
        if let Ok(lowered) = tfjsc::compile::lower_to_ir(&scratch.join("model.json"), &import_dump)
        {
            write_seed("pipeline", &name, lowered.dumps[0].1.as_bytes());
            written += 1;
        } else {
            eprintln!("{name}: does not import, no pipeline seed");
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    eprintln!("{written} pipeline seeds from op cases");
}

/// A pipeline seed: the newer ops fed by inline constants.
const NEW_OPS_INLINE: &str = r#"graph {
  input %0 "x" : f32[2,3,4]
  const %1 [0, 2, -1, 5] : i32[4]
  const %2 [1, 0, 0, 2, 1, 3] : i32[3,2]
  const %3 [2, 1, 1] : i32[3]
  const %4 [1, 2] : i32[2]
  const %5 [0, 1, 1, 2] : i32[4]
  const %6 [0, 0, 1, 2] : i32[2,2]
  const %7 [1.5] : f32[]
  const %8 [0] : f32[]
  const %9 [2, 3, 4] : i32[3]
  input %24 "image" : f32[1,2,2,5]
  %10 = gather(%0, %1) {axis=2, batch_dims=0} : ? @"gather"
  %11 = gather_nd(%0, %2) : ? @"gather_nd"
  %12 = tile(%0, %3) : ? @"tile"
  %13 = reverse(%0, %4) : ? @"reverse"
  %14 = one_hot(%5, %7, %8) {axis=-1, depth=5} : ? @"one_hot"
  %15 = sparse_to_dense(%6, %7, %8) {shape=[3, 4]} : ? @"sparse_to_dense"
  %16 = cumsum(%0) {axis=-1, exclusive=true, reverse=true} : ? @"cumsum"
  %17, %18 = top_k(%0) {k=3, sorted=true} : ?, ? @"top_k"
  %19 = arg(%0) {axis=1, kind="max"} : ? @"arg"
  %20, %21 = split(%0) {axis=2, count=2, sizes=[1, 3]} : ?, ? @"split"
  %22 = broadcast_to(%7, %9) : ? @"broadcast_to"
  %23 = lrn(%24) {depth_radius=2, bias=1.0, alpha=0.5, beta=0.75} : ? @"lrn"
  output "gather" %10
  output "gather_nd" %11
  output "tile" %12
  output "reverse" %13
  output "one_hot" %14
  output "sparse_to_dense" %15
  output "cumsum" %16
  output "top_k" %17
  output "top_k_indices" %18
  output "arg" %19
  output "split" %21
  output "broadcast_to" %22
  output "lrn" %23
}
"#;

/// Rewrites the seed corpus from the fixtures (ignored: run it by name after changing a format).
#[test]
#[ignore]
fn write_seed_corpus() {
    model_json_seeds();
    legacy_graph_seeds();
    npy_seeds();
    description_seeds();
    pipeline_seeds();
}
