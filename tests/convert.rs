//! `tfjsc convert` end to end: every fixture of `tests/fixtures/convert/` (made by
//! `tests/make_convert_fixtures.py` with TensorFlow 2.21) is converted, compiled, run on its input
//! and compared with TensorFlow's answer; the SavedModel's conversion is compared with the Python
//! converter's output (signature, shared nodes' attributes, shared weights' bytes, and the result
//! of both compiled); every refused input gets an error naming what is missing. The `lstm`
//! fixture (a `While` loop, which tfjsc cannot compile) is compared with the Python converter's
//! output structurally instead.
//!
//! The scaffolding is two types: a [`Fixture`] (its case.json says what to convert, how, and
//! TensorFlow's answer) and a [`Converted`] output folder (its model.json, graph, ops, nodes, and
//! the model compiled and run). [`check_fixture`] does the usual round (convert the fixture with
//! its own options as the test adjusts them, compile, run, compare) and hands back the output,
//! so each test says only what differs and what else it looks at.
//!
//! Tolerance: max |tfjsc - TensorFlow| ≤ 1e-4 × max |TensorFlow|, as in tests/models.rs (the
//! kernels sum in another order; batch-norm folding scales filters before the sum rather than
//! after, which moves results by rounding only).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::Value;
use tfjsc::convert::slices::slice_key;
use tfjsc::convert::{convert, ConvertOptions, InputFormat, OutputFormat, Quantization};
use tfjsc_proto::tensorflow::{
    attr_value, AttrValue, DataType, FunctionDef, GraphDef, NodeDef, SavedModel, SavedTensorSlices,
    TensorSliceProto,
};
use tfjsc_runtime::npy::read_npy;
use tfjsc_runtime::Model;

const TOLERANCE: f32 = 1e-4;

/// A fixture of `tests/fixtures/convert/` and its case.json: the model to convert (`model`), how
/// (`input_format`, `output_node_names`), and TensorFlow's inputs and outputs by node name.
struct Fixture {
    name: String,
    directory: PathBuf,
    case: Value,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let directory = common::fixtures().join("convert").join(name);
        let case = serde_json::from_slice(&std::fs::read(directory.join("case.json")).unwrap())
            .unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        Fixture {
            name: name.to_string(),
            directory,
            case,
        }
    }

    /// A file or folder of the fixture.
    fn path(&self, name: &str) -> PathBuf {
        self.directory.join(name)
    }

    /// The model case.json names (a SavedModel folder, `frozen.pb`, ...).
    fn model(&self) -> PathBuf {
        self.path(self.case["model"].as_str().unwrap())
    }

    /// The options the fixture converts with: its input format and output node names.
    fn options(&self) -> ConvertOptions {
        let format = self.case["input_format"].as_str().unwrap();
        ConvertOptions {
            input_format: InputFormat::parse(format).unwrap(),
            output_node_names: self.case["output_node_names"]
                .as_array()
                .map(|names| {
                    names
                        .iter()
                        .map(|name| name.as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            ..ConvertOptions::default()
        }
    }

    /// (input node name, .npy file) pairs.
    fn inputs(&self) -> Vec<(String, PathBuf)> {
        self.case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    self.path(i["file"].as_str().unwrap()),
                )
            })
            .collect()
    }

    /// Compiles `converted`, runs it on the fixture's inputs and asserts every output within
    /// `tolerance` × max |TensorFlow| of TensorFlow's; returns the largest relative error.
    fn assert_matches(&self, converted: &Converted, tolerance: f32) -> f32 {
        let name = &self.name;
        let results = converted.run(&self.inputs());
        let mut worst = 0f32;
        for expected in self.case["outputs"].as_array().unwrap() {
            let expected_name = expected["name"].as_str().unwrap();
            let (_, actual) = results
                .iter()
                .find(|(name, _)| {
                    name == expected_name || name.trim_end_matches(":0") == expected_name
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{name}: no output {expected_name:?} among {:?}",
                        results.iter().map(|r| &r.0).collect::<Vec<_>>()
                    )
                });
            let reference = read_npy(&self.path(expected["file"].as_str().unwrap())).unwrap();
            let error = common::relative_error(actual, &common::as_f32(&reference));
            assert!(
                error <= tolerance,
                "{name}: relative error {error:e} (tolerance {tolerance:e})"
            );
            worst = worst.max(error);
        }
        worst
    }
}

/// The folder a conversion wrote.
struct Converted {
    directory: tempfile::TempDir,
    format: OutputFormat,
}

impl Converted {
    fn path(&self) -> &Path {
        self.directory.path()
    }

    /// The file `tfjsc compile` reads: model.json, or the legacy web_model.pb.
    fn model_file(&self) -> PathBuf {
        self.path().join(match self.format {
            OutputFormat::GraphModel => "model.json",
            OutputFormat::Legacy => "web_model.pb",
        })
    }

    /// model.json, parsed.
    fn model_json(&self) -> Value {
        model_json(&self.model_file())
    }

    /// The legacy format's binary GraphDef.
    fn graph(&self) -> GraphDef {
        let bytes = std::fs::read(self.model_file()).unwrap();
        GraphDef::decode(bytes.as_slice()).unwrap()
    }

    /// model.json's nodes by name.
    fn nodes(&self) -> BTreeMap<String, Value> {
        nodes(&self.model_json())
    }

    /// Every node's op, in node order (either format).
    fn ops(&self) -> Vec<String> {
        match self.format {
            OutputFormat::GraphModel => self.model_json()["modelTopology"]["node"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["op"].as_str().unwrap().to_string())
                .collect(),
            OutputFormat::Legacy => self.graph().node.into_iter().map(|n| n.op).collect(),
        }
    }

    /// The model compiled and run on `inputs`: (output name, values) pairs.
    fn run(&self, inputs: &[(String, PathBuf)]) -> Vec<(String, Vec<f32>)> {
        compile_and_run(&self.model_file(), inputs)
    }
}

fn run_convert(input: &Path, output: &Path, options: &ConvertOptions) -> Result<(), String> {
    convert(input.to_str().unwrap(), output, options, &mut |_| {})
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Converts `input` (a path, or a URL for TF Hub) into a fresh folder; panics on failure.
fn convert_ok(input: impl AsRef<Path>, options: &ConvertOptions) -> Converted {
    let input = input.as_ref();
    let directory = tempfile::tempdir().unwrap();
    run_convert(input, directory.path(), options)
        .unwrap_or_else(|e| panic!("converting {}: {e}", input.display()));
    Converted {
        directory,
        format: options.output_format,
    }
}

/// Converts fixture `name`'s model with the fixture's options as `adjust` changes them,
/// compiles, runs, and compares with TensorFlow; returns the output for further checks.
fn check_fixture(name: &str, adjust: impl FnOnce(&mut ConvertOptions)) -> Converted {
    let fixture = Fixture::new(name);
    let mut options = fixture.options();
    adjust(&mut options);
    let converted = convert_ok(fixture.model(), &options);
    fixture.assert_matches(&converted, TOLERANCE);
    converted
}

/// For [`check_fixture`]: the fixture's own options.
fn unchanged(_: &mut ConvertOptions) {}

/// For [`check_fixture`]: the legacy output format.
fn legacy(options: &mut ConvertOptions) {
    options.output_format = OutputFormat::Legacy;
}

/// Compiles the web model `model` (model.json or web_model.pb) and runs it on `inputs`.
fn compile_and_run(model: &Path, inputs: &[(String, PathBuf)]) -> Vec<(String, Vec<f32>)> {
    let scratch = tempfile::tempdir().unwrap();
    let library = common::compile_model(model, scratch.path(), "libmodel.so");
    let loaded = Model::load(&library, None).unwrap();
    let description = loaded.description();
    let tensors: Vec<_> = description
        .inputs
        .iter()
        .map(|spec| {
            let (_, file) = inputs
                .iter()
                .find(|(name, _)| *name == spec.name)
                .unwrap_or_else(|| panic!("no input {:?}", spec.name));
            read_npy(file).unwrap()
        })
        .collect();
    let outputs = loaded.new_context().unwrap().run_tensors(&tensors).unwrap();
    description
        .outputs
        .iter()
        .zip(outputs)
        .map(|(spec, tensor)| (spec.name.clone(), common::as_f32(&tensor)))
        .collect()
}

#[test]
fn saved_model_converts_compiles_and_matches_tensorflow() {
    check_fixture("saved_model", unchanged);
}

#[test]
fn saved_model_in_the_legacy_format_matches_tensorflow() {
    check_fixture("saved_model", legacy);
}

#[test]
fn legacy_output_uses_only_ops_tfjs_0x_runs() {
    // TF.js 0.x (tfjs-converter 0.8.4, the last with loadFrozenModel) has no _FusedConv2D,
    // FusedDepthwiseConv2dNative, _FusedMatMul, Prelu or AddV2: the legacy format keeps
    // convolution, bias and activation apart and writes Add (checked in TF.js 0.15 itself by
    // tests/tfjs_legacy_reference.mjs). Batch norms still fold into the filters.
    for name in ["saved_model", "keras2", "prelu"] {
        let converted = check_fixture(name, legacy);
        let ops = converted.ops();
        for op in &ops {
            assert!(
                tfjsc::convert::op_check::tfjs_legacy_supports(op),
                "{name}: {op} in {ops:?}"
            );
        }
        assert!(
            !ops.iter().any(|op| op.starts_with("FusedBatchNorm")),
            "{name}: batch norm not folded: {ops:?}"
        );
        assert!(
            converted.path().join("web_model.pb").exists()
                && !converted.path().join("tensorflowjs_model.pb").exists()
                && converted.graph().versions.is_some(),
            "{name}"
        );
    }
    // --no_fold_batch_norms leaves FusedBatchNormV3, which TF.js 0.x knows as FusedBatchNorm.
    let converted = check_fixture("keras2", |options| {
        legacy(options);
        options.fold_batch_norms = false;
    });
    let batch_norms: Vec<_> = converted
        .graph()
        .node
        .into_iter()
        .filter(|n| n.op.starts_with("FusedBatchNorm"))
        .collect();
    assert_eq!(batch_norms.len(), 2);
    assert!(batch_norms
        .iter()
        .all(|n| n.op == "FusedBatchNorm" && !n.attr.contains_key("U")));
}

#[test]
fn legacy_output_refuses_float16_weights() {
    // TF.js 0.x dequantizes uint8 and uint16 only.
    let fixture = Fixture::new("saved_model");
    let options = ConvertOptions {
        output_format: OutputFormat::Legacy,
        quantization: Quantization {
            float16: Some(vec!["*".into()]),
            ..Default::default()
        },
        ..fixture.options()
    };
    let error = error_of(&fixture.model(), &options);
    assert!(
        error.contains("--quantize_float16") && error.contains("TF.js 0.x"),
        "{error}"
    );
}

#[test]
fn variables_in_several_shards_and_slices_are_read() {
    let variables = Fixture::new("sharded").path("model/variables");
    let shards = std::fs::read_dir(&variables)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".data-")
        })
        .count();
    assert!(shards > 1, "the fixture has {shards} data shard(s)");
    check_fixture("sharded", unchanged);
}

#[test]
fn frozen_graph_converts_and_matches_tensorflow() {
    check_fixture("frozen", unchanged);
}

#[test]
fn session_bundle_converts_and_matches_tensorflow() {
    check_fixture("session_bundle", unchanged);
}

#[test]
fn v1_session_bundle_with_a_partitioned_variable_converts_and_matches_tensorflow() {
    // A V1 Saver's two shards (tensor slice tables, no .index), found through the `checkpoint`
    // state file; dense1/kernel is saved as three column slices, and the graph reads it as
    // three part variables joined by a concat.
    let fixture = Fixture::new("session_bundle_v1");
    let files: Vec<String> = folder_files(&fixture.model()).into_keys().collect();
    assert!(
        files.contains(&"export-00001-of-00002".to_string())
            && !files.iter().any(|name| name.ends_with(".index")),
        "{files:?}"
    );
    let converted = check_fixture("session_bundle_v1", unchanged);
    // Each part is cut out of the assembled whole, and the concat of the three constants is
    // folded into one [6, 10] weight, as Grappler folds it for the Python converter.
    let ours = converted.model_json();
    assert!(nodes(&ours).values().all(|n| n["op"] != "ConcatV2"));
    let shapes: Vec<String> = ours["weightsManifest"][0]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|weight| weight["shape"].to_string())
        .collect();
    for shape in ["[6,10]", "[10]", "[10,3]"] {
        assert!(
            shapes.iter().any(|s| s == shape),
            "no {shape} weight: {shapes:?}"
        );
    }
}

/// The V1 fixture copied to a scratch folder, with `file`'s table entries edited by `edit`
/// (keys must stay sorted); the conversion's error.
fn v1_error_with(file: &str, edit: impl FnOnce(&mut TableEntries)) -> String {
    let fixture = Fixture::new("session_bundle_v1");
    let scratch = scratch_copy(&fixture.model());
    let table = std::fs::read(scratch.path().join(file)).unwrap();
    let (mut entries, metaindex) = table_entries(&table);
    edit(&mut entries);
    entries.sort();
    let rebuilt = write_table(&entries, &metaindex, 1000, &mut uncompressed);
    std::fs::write(scratch.path().join(file), rebuilt).unwrap();
    error_of(scratch.path(), &fixture.options())
}

/// Decodes, edits and re-encodes the `SavedTensorSlices` of one table entry.
fn edit_slices(value: &mut Vec<u8>, edit: impl FnOnce(&mut SavedTensorSlices)) {
    let mut slices = SavedTensorSlices::decode(value.as_slice()).unwrap();
    edit(&mut slices);
    *value = slices.encode_to_vec();
}

/// Edits the extents of slice `index` of `tensor` in the metadata entry of `entries`.
fn edit_meta_slice(
    entries: &mut [(Vec<u8>, Vec<u8>)],
    tensor: &str,
    edit: impl FnOnce(&mut Vec<TensorSliceProto>),
) {
    let (_, meta) = entries.iter_mut().find(|(key, _)| key.is_empty()).unwrap();
    edit_slices(meta, |slices| {
        let saved = slices.meta.as_mut().unwrap();
        let saved = saved.tensor.iter_mut().find(|t| t.name == tensor).unwrap();
        edit(&mut saved.slice);
    });
}

/// A slice of a [6, N] tensor: rows 0..6 (as a partitioned variable's slice spec gives them,
/// with a length), `length` columns from `start`.
fn column_slice(start: i64, length: i64) -> TensorSliceProto {
    use tfjsc_proto::tensorflow::tensor_slice_proto::{extent::HasLength, Extent};
    let extent = |start, length| Extent {
        start,
        has_length: Some(HasLength::Length(length)),
    };
    TensorSliceProto {
        extent: vec![extent(0, 6), extent(start, length)],
    }
}

#[test]
fn corrupt_v1_checkpoints_are_named_errors() {
    // dense1/kernel ([6, 10], columns 0..4, 4..7, 7..10) lies in shard 0 (device cpu:0),
    // dense1/bias and dense2/kernel ([10, 3]) in shard 1.
    let shard0 = "export-00000-of-00002";
    let shard1 = "export-00001-of-00002";
    let names_the_kernel = |error: &str| error.contains(shard0) && error.contains("dense1/kernel");
    // A slice reaching past the shape.
    let error = v1_error_with(shard0, |entries| {
        edit_meta_slice(entries, "dense1/kernel", |slices| {
            slices[2] = column_slice(8, 3)
        });
    });
    assert!(
        names_the_kernel(&error) && error.contains("lies outside the shape [6, 10]"),
        "{error}"
    );
    // A slice missing from the metadata (its data still in the file).
    let error = v1_error_with(shard0, |entries| {
        edit_meta_slice(entries, "dense1/kernel", |slices| {
            slices.pop();
        });
    });
    assert!(
        names_the_kernel(&error) && error.contains("hold 42 elements, the shape [6, 10] has 60"),
        "{error}"
    );
    // Columns 4..7 saved as 3..6 instead (metadata, key and data agreeing): column 3 twice,
    // column 6 never.
    let error = v1_error_with(shard0, |entries| {
        edit_meta_slice(entries, "dense1/kernel", |slices| {
            slices[1] = column_slice(3, 3)
        });
        let old_key = slice_key("dense1/kernel", &column_slice(4, 3));
        let (key, value) = entries.iter_mut().find(|(key, _)| *key == old_key).unwrap();
        *key = slice_key("dense1/kernel", &column_slice(3, 3));
        edit_slices(value, |slices| {
            slices.data.as_mut().unwrap().slice = Some(column_slice(3, 3));
        });
    });
    assert!(
        names_the_kernel(&error) && error.contains("covers element 3 again (slices overlap)"),
        "{error}"
    );
    // The metadata lists a slice the file has no entry for.
    let error = v1_error_with(shard0, |entries| {
        let key = slice_key("dense1/kernel", &column_slice(7, 3));
        entries.retain(|(k, _)| *k != key);
    });
    assert!(
        names_the_kernel(&error) && error.contains("[0, 7]") && error.contains("no entry"),
        "{error}"
    );
    // Values of another dtype than the metadata's: stored as int_val, or declared int32.
    let to_int = |declare: bool| {
        move |entries: &mut TableEntries| {
            for (_, value) in entries.iter_mut().filter(|(key, _)| !key.is_empty()) {
                edit_slices(value, |slices| {
                    let data = slices.data.as_mut().unwrap();
                    if data.name != "dense2/kernel" {
                        return;
                    }
                    let tensor = data.data.as_mut().unwrap();
                    if declare {
                        tensor.dtype = DataType::DtInt32 as i32;
                    } else {
                        tensor.int_val = tensor.float_val.iter().map(|&v| v as i32).collect();
                        tensor.float_val.clear();
                    }
                });
            }
        }
    };
    let error = v1_error_with(shard1, to_int(false));
    assert!(
        error.contains(shard1)
            && error.contains("dense2/kernel")
            && error.contains("0 values in the float_val field for the 30 elements")
            && error.contains("int_val: 30"),
        "{error}"
    );
    let error = v1_error_with(shard1, to_int(true));
    assert!(
        error.contains("dense2/kernel")
            && error.contains("values are DT_INT32, the checkpoint lists the tensor as DT_FLOAT"),
        "{error}"
    );
    // A shard missing: named, with what the folder has.
    let fixture = Fixture::new("session_bundle_v1");
    let scratch = scratch_copy(&fixture.model());
    std::fs::remove_file(scratch.path().join(shard1)).unwrap();
    let error = error_of(scratch.path(), &fixture.options());
    assert!(
        error.contains("missing export-00001-of-00002")
            && error.contains(
                "the folder has: case.json, checkpoint, expected_0.npy, export-00000-of-00002"
            ),
        "{error}"
    );
}

#[test]
fn truncated_or_flipped_v1_checkpoints_never_panic() {
    // Each shard cut at many lengths: always an error naming the shard. Bytes flipped in many
    // places: an error (naming the shard) or, where a flip misses everything the reader
    // checks, a conversion.
    let fixture = Fixture::new("session_bundle_v1");
    let scratch = scratch_copy(&fixture.model());
    let mut refused = 0;
    for shard in ["export-00000-of-00002", "export-00001-of-00002"] {
        let path = scratch.path().join(shard);
        let original = std::fs::read(&path).unwrap();
        for (at, flip) in mutations(original.len(), 60) {
            std::fs::write(&path, &original[..at]).unwrap();
            let error = error_of(scratch.path(), &fixture.options());
            assert!(error.contains(shard), "cut at {at}: {error}");
            let mut bytes = original.clone();
            bytes[at] ^= flip;
            std::fs::write(&path, &bytes).unwrap();
            if let Err(error) = run_convert(
                scratch.path(),
                &scratch.path().join("out"),
                &fixture.options(),
            ) {
                assert!(error.contains(shard), "byte {at} ^ {flip:#x}: {error}");
                refused += 1;
            }
        }
        std::fs::write(&path, &original).unwrap();
    }
    assert!(refused > 100, "only {refused} of 120 flips were refused");
}

#[test]
fn hub_module_directory_converts_with_the_default_signature() {
    check_fixture("hub", unchanged);
}

/// A TF1 Hub module (tfhub_module.pb): the empty-tag graph variant, signature "default", one
/// reference variable (`VariableV2`) and two resource variables restored by name; as a folder
/// and as a .tar.gz archive.
#[test]
fn tf1_hub_module_converts_with_its_default_graph_variant_and_signature() {
    let fixture = Fixture::new("hub_tf1");
    let converted = convert_ok(fixture.model(), &fixture.options());
    let error = fixture.assert_matches(&converted, TOLERANCE);
    eprintln!("hub_tf1 (folder): max |err| / max |ref| = {error:e}");
    let signature = &converted.model_json()["signature"];
    assert_eq!(signature["inputs"]["x"]["name"], "x:0", "{signature}");
    assert_eq!(
        signature["outputs"]["default"]["name"], "probabilities:0",
        "{signature}"
    );
    let cache = tempfile::tempdir().unwrap();
    let options = ConvertOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..fixture.options()
    };
    let converted = convert_ok(fixture.path("hub_tf1.tar.gz"), &options);
    let error = fixture.assert_matches(&converted, TOLERANCE);
    eprintln!("hub_tf1 (.tar.gz): max |err| / max |ref| = {error:e}");
}

/// Another signature and graph variant of a TF1 Hub module are chosen by name and tags; unknown
/// ones list what the module has; a ModuleDef in another format is refused.
#[test]
fn tf1_hub_module_signatures_and_variants_are_chosen_by_name() {
    let fixture = Fixture::new("hub_tf1");
    let converted = convert_ok(
        fixture.model(),
        &ConvertOptions {
            signature_name: Some("logits".into()),
            ..fixture.options()
        },
    );
    let outputs = &converted.model_json()["signature"]["outputs"];
    assert_eq!(outputs["logits"]["name"], "logits:0", "{outputs}");
    let error = error_of(
        &fixture.model(),
        &ConvertOptions {
            signature_name: Some("serving_default".into()),
            ..fixture.options()
        },
    );
    assert!(
        error.contains("\"serving_default\"") && error.contains("default, logits"),
        "{error}"
    );
    let error = error_of(
        &fixture.model(),
        &ConvertOptions {
            saved_model_tags: Some(vec!["serve".into()]),
            ..fixture.options()
        },
    );
    assert!(
        error.contains("[serve]") && error.contains("[] [train]"),
        "{error}"
    );
    // The {"train"} variant is another graph: it has the dropout the default one lacks.
    let train = convert_ok(
        fixture.model(),
        &ConvertOptions {
            saved_model_tags: Some(vec!["train".into()]),
            skip_op_check: true,
            ..fixture.options()
        },
    );
    assert!(train.ops().iter().any(|op| op == "RandomUniform"));
    let default = convert_ok(fixture.model(), &fixture.options());
    assert!(!default.ops().iter().any(|op| op == "RandomUniform"));
    let module = scratch_copy(&fixture.model());
    std::fs::write(module.path().join("tfhub_module.pb"), [0x08, 0x01]).unwrap();
    let error = error_of(module.path(), &fixture.options());
    assert!(
        error.contains("tfhub_module.pb") && error.contains("FORMAT_V3"),
        "{error}"
    );
}

#[test]
fn quantized_weights_stay_within_their_precision() {
    let fixture = Fixture::new("saved_model");
    for (quantization, tolerance) in [
        (
            Quantization {
                float16: Some(vec!["*".into()]),
                ..Default::default()
            },
            1e-2,
        ),
        (
            Quantization {
                uint16: Some(vec!["*".into()]),
                ..Default::default()
            },
            1e-2,
        ),
        (
            Quantization {
                uint8: Some(vec!["*kernel*".into(), "*merged_input".into()]),
                ..Default::default()
            },
            0.1,
        ),
    ] {
        let options = ConvertOptions {
            quantization: quantization.clone(),
            ..fixture.options()
        };
        let converted = convert_ok(fixture.model(), &options);
        let model = converted.model_json();
        let weights = model["weightsManifest"][0]["weights"].as_array().unwrap();
        let quantized = weights
            .iter()
            .filter(|w| w.get("quantization").is_some())
            .count();
        assert!(quantized > 0, "{quantization:?}: no weight quantized");
        if quantization.uint8.is_some() {
            assert!(
                quantized < weights.len(),
                "the uint8 patterns select only some weights"
            );
        }
        fixture.assert_matches(&converted, tolerance);
    }
}

fn model_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Weight name → stored bytes of a graph model.
fn weight_bytes(directory: &Path, model: &Value) -> HashMap<String, Vec<u8>> {
    let mut result = HashMap::new();
    for group in model["weightsManifest"].as_array().unwrap() {
        let mut stream = Vec::new();
        for path in group["paths"].as_array().unwrap() {
            stream.extend(std::fs::read(directory.join(path.as_str().unwrap())).unwrap());
        }
        let mut at = 0;
        for weight in group["weights"].as_array().unwrap() {
            let count: u64 = weight["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product();
            let size = count as usize * if weight["dtype"] == "bool" { 1 } else { 4 };
            result.insert(
                weight["name"].as_str().unwrap().to_string(),
                stream[at..at + size].to_vec(),
            );
            at += size;
        }
    }
    result
}

fn nodes(model: &Value) -> BTreeMap<String, Value> {
    model["modelTopology"]["node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

/// Attributes that are not TensorFlow's own bookkeeping (`_input_shapes`, ...).
fn public_attributes(node: &Value) -> BTreeMap<String, Value> {
    node["attr"]
        .as_object()
        .map(|attrs| {
            attrs
                .iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn saved_model_matches_the_python_converter() {
    let fixture = Fixture::new("saved_model");
    let golden_directory = fixture.path("tfjs");
    let golden = model_json(&golden_directory.join("model.json"));
    let converted = convert_ok(fixture.model(), &fixture.options());
    let ours = converted.model_json();
    assert_eq!(ours["format"], "graph-model");
    assert_eq!(ours["generatedBy"], golden["generatedBy"]);
    assert_eq!(ours["signature"], golden["signature"], "signatures differ");
    // Nodes both graphs have under one name: same op and attributes. TF.js-specific fused ops
    // (our folding fuses more chains than Grappler does) are compared where both fused.
    let (golden_nodes, our_nodes) = (nodes(&golden), nodes(&ours));
    let mut shared = 0;
    for (name, node) in &golden_nodes {
        let Some(our) = our_nodes.get(name) else {
            continue;
        };
        if node["op"] != our["op"] {
            continue;
        }
        shared += 1;
        if node["op"] != "Const" {
            assert_eq!(
                public_attributes(node),
                public_attributes(our),
                "attributes of {name}"
            );
            assert_eq!(node["input"], our["input"], "inputs of {name}");
        }
    }
    assert!(
        shared * 2 >= golden_nodes.len(),
        "only {shared} of {} nodes shared",
        golden_nodes.len()
    );
    // Weights both have under one name: the same bytes (raw variables; folded ones may differ
    // by rounding and are checked through the results below).
    let (golden_weights, our_weights) = (
        weight_bytes(&golden_directory, &golden),
        weight_bytes(converted.path(), &ours),
    );
    let mut same = 0;
    for (name, bytes) in &golden_weights {
        if let Some(our) = our_weights.get(name) {
            if name.ends_with("ReadVariableOp") {
                assert_eq!(bytes, our, "weight {name}");
            }
            same += 1;
        }
    }
    assert!(
        same * 2 >= golden_weights.len(),
        "only {same} of {} weights shared",
        golden_weights.len()
    );
    // Both compiled give the same answer.
    let theirs = compile_and_run(&golden_directory.join("model.json"), &fixture.inputs());
    let mine = converted.run(&fixture.inputs());
    let error = common::relative_error(&mine[0].1, &theirs[0].1);
    assert!(error <= TOLERANCE, "tfjsc vs Python converter: {error:e}");
}

#[test]
fn output_node_names_prune_the_graph() {
    let fixture = Fixture::new("saved_model");
    let options = ConvertOptions {
        output_node_names: vec!["StatefulPartitionedCall".into()],
        ..fixture.options()
    };
    let converted = convert_ok(fixture.model(), &options);
    // As the Python converter writes it: the requested outputs only.
    assert_eq!(
        converted.model_json()["signature"],
        serde_json::json!({"outputs": {"StatefulPartitionedCall": {"name": "StatefulPartitionedCall"}}})
    );
    let count = converted.nodes().len();
    assert!(count > 5, "{count} nodes");
}

fn error_of(input: &Path, options: &ConvertOptions) -> String {
    let output = tempfile::tempdir().unwrap();
    run_convert(input, output.path(), options).expect_err("conversion should fail")
}

/// Copies a fixture folder into a scratch directory (to break it).
fn scratch_copy(from: &Path) -> tempfile::TempDir {
    let scratch = tempfile::tempdir().unwrap();
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(from, scratch.path());
    scratch
}

#[test]
fn a_truncated_saved_model_names_the_file() {
    let fixture = Fixture::new("saved_model");
    let scratch = scratch_copy(&fixture.model());
    let path = scratch.path().join("saved_model.pb");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = error_of(scratch.path(), &fixture.options());
    assert!(
        error.contains("saved_model.pb") && error.contains("truncated"),
        "{error}"
    );
}

#[test]
fn a_truncated_frozen_graph_names_the_file() {
    let fixture = Fixture::new("frozen");
    let scratch = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture.model()).unwrap();
    let path = scratch.path().join("frozen.pb");
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let error = error_of(&path, &fixture.options());
    assert!(
        error.contains("frozen.pb") && error.contains("not a valid frozen GraphDef"),
        "{error}"
    );
}

#[test]
fn missing_variables_are_named() {
    let fixture = Fixture::new("saved_model");
    let scratch = scratch_copy(&fixture.model());
    std::fs::remove_dir_all(scratch.path().join("variables")).unwrap();
    let error = error_of(scratch.path(), &fixture.options());
    assert!(
        error.contains("variables.index") && error.contains("ReadVariableOp"),
        "{error}"
    );
    // A data shard gone: the shard is named.
    let scratch = scratch_copy(&fixture.model());
    std::fs::remove_file(
        scratch
            .path()
            .join("variables/variables.data-00000-of-00001"),
    )
    .unwrap();
    let error = error_of(scratch.path(), &fixture.options());
    assert!(error.contains("variables.data-00000-of-00001"), "{error}");
    // A corrupt shard: the checksum says so.
    let scratch = scratch_copy(&fixture.model());
    let shard = scratch
        .path()
        .join("variables/variables.data-00000-of-00001");
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&shard, bytes).unwrap();
    let error = error_of(scratch.path(), &fixture.options());
    assert!(error.contains("checksum"), "{error}");
}

/// A varint at `*at` of `bytes`, advancing `*at`.
fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// LevelDB's masked CRC-32C, bit by bit (independent of the reader's table-driven one).
fn masked_crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    (!crc).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The (key, value) entries of an uncompressed table block.
fn table_block_entries(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let restarts = u32::from_le_bytes(block[block.len() - 4..].try_into().unwrap()) as usize;
    let end = block.len() - 4 - 4 * restarts;
    let (mut at, mut key, mut entries) = (0, Vec::new(), Vec::new());
    while at < end {
        let shared = read_varint(block, &mut at) as usize;
        let unshared = read_varint(block, &mut at) as usize;
        let length = read_varint(block, &mut at) as usize;
        key.truncate(shared);
        key.extend_from_slice(&block[at..at + unshared]);
        at += unshared;
        entries.push((key.clone(), block[at..at + length].to_vec()));
        at += length;
    }
    entries
}

/// A table block holding `entries`, each key whole (a restart point at every entry).
fn table_block(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let (mut block, mut restarts) = (Vec::new(), Vec::new());
    for (key, value) in entries {
        restarts.push(block.len() as u32);
        write_varint(&mut block, 0);
        write_varint(&mut block, key.len() as u64);
        write_varint(&mut block, value.len() as u64);
        block.extend_from_slice(key);
        block.extend_from_slice(value);
    }
    if restarts.is_empty() {
        restarts.push(0);
    }
    for restart in &restarts {
        block.extend_from_slice(&restart.to_le_bytes());
    }
    block.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
    block
}

/// A block stored: the trailer's compression type and the stored bytes.
type StoredBlock = (u8, Vec<u8>);

/// A tensor bundle index (a LevelDB table as TensorFlow writes it, uncompressed) rebuilt with
/// `per_block` entries per data block, every block (the data blocks in order, then the
/// metaindex, then the index) stored as `store` returns it: the trailer's compression type and
/// the stored bytes, which the trailer's masked CRC-32C then covers.
fn rebuild_table(
    table: &[u8],
    per_block: usize,
    store: &mut dyn FnMut(&[u8]) -> StoredBlock,
) -> Vec<u8> {
    let (entries, metaindex) = table_entries(table);
    write_table(&entries, &metaindex, per_block, store)
}

/// A table's (key, value) entries, in order.
type TableEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// The (key, value) entries of an uncompressed table, and its metaindex block.
fn table_entries(table: &[u8]) -> (TableEntries, Vec<u8>) {
    let footer = &table[table.len() - 48..];
    let mut at = 0;
    let handle = |at: &mut usize| {
        let offset = read_varint(footer, at) as usize;
        let size = read_varint(footer, at) as usize;
        assert_eq!(
            table[offset + size],
            0,
            "the fixture's blocks are uncompressed"
        );
        &table[offset..offset + size]
    };
    let metaindex = handle(&mut at);
    let index = handle(&mut at);
    let mut entries = Vec::new();
    for (_, data_handle) in table_block_entries(index) {
        let mut at = 0;
        let offset = read_varint(&data_handle, &mut at) as usize;
        let size = read_varint(&data_handle, &mut at) as usize;
        entries.extend(table_block_entries(&table[offset..offset + size]));
    }
    (entries, metaindex.to_vec())
}

/// A table of `entries` (sorted), `per_block` to a data block, each block stored as `store`
/// returns it (see [`rebuild_table`]).
fn write_table(
    entries: &[(Vec<u8>, Vec<u8>)],
    metaindex: &[u8],
    per_block: usize,
    store: &mut dyn FnMut(&[u8]) -> StoredBlock,
) -> Vec<u8> {
    let mut file = Vec::new();
    let mut put = |file: &mut Vec<u8>, contents: &[u8]| -> Vec<u8> {
        let (kind, stored) = store(contents);
        let mut handle = Vec::new();
        write_varint(&mut handle, file.len() as u64);
        write_varint(&mut handle, stored.len() as u64);
        file.extend_from_slice(&stored);
        file.push(kind);
        let crc = masked_crc32c(&file[file.len() - stored.len() - 1..]);
        file.extend_from_slice(&crc.to_le_bytes());
        handle
    };
    let mut index_entries = Vec::new();
    for chunk in entries.chunks(per_block) {
        let handle = put(&mut file, &table_block(chunk));
        // The last key of a block separates it from the next.
        index_entries.push((chunk.last().unwrap().0.clone(), handle));
    }
    let mut footer = put(&mut file, metaindex);
    footer.extend(put(&mut file, &table_block(&index_entries)));
    footer.resize(40, 0);
    footer.extend_from_slice(&0xdb47_7524_8b80_fb57u64.to_le_bytes());
    file.extend_from_slice(&footer);
    file
}

/// For [`rebuild_table`]: a block as it is.
fn uncompressed(contents: &[u8]) -> (u8, Vec<u8>) {
    (0, contents.to_vec())
}

/// For [`rebuild_table`]: a block snappy-compressed (raw snappy, as LevelDB stores it).
fn snappy(contents: &[u8]) -> (u8, Vec<u8>) {
    (1, snap::raw::Encoder::new().compress_vec(contents).unwrap())
}

/// Every file of a converted folder, by name.
fn folder_files(folder: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn snappy_compressed_bundle_indexes_convert_byte_identically() {
    // TensorFlow's table builder snappy-compresses a block when that saves an eighth (the
    // tensor bundle writer turns it off, but other writers of the format do not): the index
    // rebuilt with compressed blocks, several data blocks among them, converts to the same
    // bytes as the original. A SavedModel (variables/variables.index) and a session bundle
    // (export.index).
    for (name, index_name) in [
        ("saved_model", "variables/variables.index"),
        ("session_bundle", "export.index"),
    ] {
        let fixture = Fixture::new(name);
        let original = convert_ok(fixture.model(), &fixture.options());
        let index = std::fs::read(fixture.model().join(index_name)).unwrap();
        for (per_block, store) in [
            (1000, snappy as fn(&[u8]) -> (u8, Vec<u8>)),
            (2, snappy),
            (2, uncompressed),
        ] {
            let scratch = scratch_copy(&fixture.model());
            let rebuilt = rebuild_table(&index, per_block, &mut |b| store(b));
            std::fs::write(scratch.path().join(index_name), &rebuilt).unwrap();
            let converted = convert_ok(scratch.path(), &fixture.options());
            assert_eq!(
                folder_files(converted.path()),
                folder_files(original.path()),
                "{name}: {per_block} entries per block"
            );
        }
    }
}

#[test]
fn corrupt_snappy_blocks_in_a_bundle_index_are_named_errors() {
    let fixture = Fixture::new("saved_model");
    let index = std::fs::read(fixture.model().join("variables/variables.index")).unwrap();
    let scratch = scratch_copy(&fixture.model());
    let path = scratch.path().join("variables/variables.index");
    // The first data block stored as `first` makes it, the others compressed.
    let error_with = |first: &dyn Fn(&[u8]) -> StoredBlock| -> String {
        let mut blocks = 0;
        let rebuilt = rebuild_table(&index, 2, &mut |contents| {
            blocks += 1;
            if blocks == 1 {
                first(contents)
            } else {
                snappy(contents)
            }
        });
        std::fs::write(&path, rebuilt).unwrap();
        error_of(scratch.path(), &fixture.options())
    };
    // Compressed data cut short (its checksum right): the decoder's error, named.
    let error = error_with(&|contents| {
        let (kind, mut stored) = snappy(contents);
        stored.truncate(stored.len() - 3);
        (kind, stored)
    });
    assert!(
        error.contains("variables.index")
            && error.contains("not a valid tensor bundle index")
            && error.contains("snappy-compressed block 0+")
            && error.contains("corrupt"),
        "{error}"
    );
    // A header claiming 1 GiB from a few bytes: refused before allocating.
    let error = error_with(&|_| {
        let mut stored = Vec::new();
        write_varint(&mut stored, 1 << 30);
        stored.extend_from_slice(&[0, 0, 0]);
        (1, stored)
    });
    assert!(
        error.contains("variables.index")
            && error.contains("claims 1073741824 bytes")
            && error.contains("decompression bomb"),
        "{error}"
    );
    // An unknown compression type.
    let error = error_with(&|contents| (2, contents.to_vec()));
    assert!(
        error.contains("variables.index") && error.contains("unknown compression type 2"),
        "{error}"
    );
    // A byte changed after the checksum was taken.
    let mut rebuilt = rebuild_table(&index, 2, &mut snappy);
    rebuilt[1] ^= 0x40;
    std::fs::write(&path, rebuilt).unwrap();
    let error = error_of(scratch.path(), &fixture.options());
    assert!(
        error.contains("variables.index")
            && error.contains("block 0+")
            && error.contains("checksum mismatch"),
        "{error}"
    );
    // Any byte of a compressed block changed, checksum recomputed: an error or the same
    // conversion, never a panic.
    for (at, flip) in mutations(64, 60) {
        let mut blocks = 0;
        let rebuilt = rebuild_table(&index, 2, &mut |contents| {
            blocks += 1;
            let (kind, mut stored) = snappy(contents);
            if blocks == 1 {
                let at = at % stored.len();
                stored[at] ^= flip;
            }
            (kind, stored)
        });
        std::fs::write(&path, rebuilt).unwrap();
        let _ = run_convert(
            scratch.path(),
            &scratch.path().join("out"),
            &fixture.options(),
        );
    }
}

#[test]
fn unknown_tags_and_signatures_list_what_exists() {
    let fixture = Fixture::new("saved_model");
    let error = error_of(
        &fixture.model(),
        &ConvertOptions {
            saved_model_tags: Some(vec!["gpu".into()]),
            ..fixture.options()
        },
    );
    assert!(
        error.contains("[gpu]") && error.contains("[serve]"),
        "{error}"
    );
    let error = error_of(
        &fixture.model(),
        &ConvertOptions {
            signature_name: Some("predict".into()),
            ..fixture.options()
        },
    );
    assert!(
        error.contains("\"predict\"") && error.contains("serving_default"),
        "{error}"
    );
}

#[test]
fn an_absent_output_node_lists_near_names() {
    let fixture = Fixture::new("frozen");
    let options = ConvertOptions {
        output_node_names: vec!["Identityy".into()],
        ..fixture.options()
    };
    let error = error_of(&fixture.model(), &options);
    assert!(
        error.contains("Identityy") && error.contains("frozen.pb") && error.contains("Identity"),
        "{error}"
    );
    let error = error_of(
        &fixture.model(),
        &ConvertOptions {
            output_node_names: Vec::new(),
            ..options
        },
    );
    assert!(error.contains("--output_node_names"), "{error}");
}

#[test]
fn the_op_check_lists_unsupported_ops_with_counts() {
    // A frozen graph with an op neither TF.js nor tfjsc runs.
    let fixture = Fixture::new("frozen");
    let bytes = std::fs::read(fixture.model()).unwrap();
    let mut graph = GraphDef::decode(bytes.as_slice()).unwrap();
    for node in &mut graph.node {
        if node.op == "Softmax" {
            node.op = "MadeUpOp".into();
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("frozen.pb");
    std::fs::write(&path, graph.encode_to_vec()).unwrap();
    let mut options = fixture.options();
    let error = error_of(&path, &options);
    assert!(
        error.contains("ops TF.js cannot run: MadeUpOp ×1"),
        "{error}"
    );
    assert!(
        error.contains("ops tfjsc cannot compile: MadeUpOp ×1"),
        "{error}"
    );
    options.skip_op_check = true;
    convert_ok(&path, &options);
}

/// A scratch copy of the lstm fixture whose loop-body functions (`while_body` in the name) are
/// edited by `edit(name, function)`.
fn lstm_with_loop_bodies_edited(mut edit: impl FnMut(&str, &mut FunctionDef)) -> tempfile::TempDir {
    let scratch = scratch_copy(&Fixture::new("lstm").model());
    let path = scratch.path().join("saved_model.pb");
    let mut model = SavedModel::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    let library = model.meta_graphs[0]
        .graph_def
        .as_mut()
        .and_then(|graph| graph.library.as_mut())
        .unwrap();
    for function in &mut library.function {
        let name = function.signature.as_ref().unwrap().name.clone();
        if name.contains("while_body") {
            edit(&name, function);
        }
    }
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    scratch
}

#[test]
fn the_op_check_looks_inside_control_flow_bodies() {
    // The lstm fixture's While body with one op renamed to one nobody runs: TF.js would fail
    // on it inside the loop, so the check names it, its node and its (frozen) function, as the
    // Python converter's check (which reads every library function) refuses it too.
    let fixture = Fixture::new("lstm");
    // The SavedModel holds two traces of the loop (while_body_148 and _312); the first Tanh of
    // each is renamed, and the one the signature's graph reaches must be named.
    let mut renamed = Vec::new();
    let scratch = lstm_with_loop_bodies_edited(|name, function| {
        if let Some(node) = function.node_def.iter_mut().find(|n| n.op == "Tanh") {
            node.op = "MadeUpOp".into();
            renamed.push((name.to_string(), node.name.clone()));
        }
    });
    assert_eq!(renamed.len(), 2, "{renamed:?}");
    let error = error_of(scratch.path(), &fixture.options());
    // The body was specialised for its captured variables: the written function is NAME_frozen.
    let reached: Vec<String> = renamed
        .iter()
        .map(|(function, node)| {
            format!("MadeUpOp ×1 (node `{node}` in function `{function}_frozen`)")
        })
        .filter(|located| error.contains(&format!("ops TF.js cannot run: {located}")))
        .collect();
    assert_eq!(reached.len(), 1, "{error}");
    // In both lists: neither TF.js nor tfjsc runs it.
    assert_eq!(error.matches(reached[0].as_str()).count(), 2, "{error}");
    // The ops of the untouched body that tfjsc cannot compile are named with their function.
    let error = error_of(&fixture.model(), &fixture.options());
    assert!(!error.contains("TF.js cannot run"), "{error}");
    assert!(
        error.contains("TensorListGetItem ×1 (node `") && error.contains("while_body"),
        "{error}"
    );
    // --skip_op_check still writes it, body and all.
    let converted = convert_ok(
        scratch.path(),
        &ConvertOptions {
            skip_op_check: true,
            ..fixture.options()
        },
    );
    assert!(converted.model_json().to_string().contains("MadeUpOp"));
}

#[test]
fn debug_ops_in_control_flow_bodies_are_stripped() {
    // The lstm fixture's While bodies with a CheckNumerics between the first Tanh and its
    // readers, and an Assert on a control edge and among the control outputs. With
    // --strip_debug_ops (the default) the written model is the unmodified fixture's, as Grappler's
    // debug stripper makes it for the Python converter; without, both are written.
    let fixture = Fixture::new("lstm");
    let type_attr = |dtype: i32| AttrValue {
        value: Some(attr_value::Value::Type(dtype)),
    };
    let mut edited = 0;
    let scratch = lstm_with_loop_bodies_edited(|name, function| {
        let Some(tanh) = function.node_def.iter().find(|n| n.op == "Tanh") else {
            return;
        };
        let tanh_output = format!("{}:y:0", tanh.name);
        let mut readers = 0;
        for node in &mut function.node_def {
            let before = readers;
            for input in node.input.iter_mut().filter(|input| **input == tanh_output) {
                *input = "check_tanh:output:0".into();
                readers += 1;
            }
            if before == 0 && readers > 0 {
                // The first reader waits for the assert.
                node.input.push("^assert_tanh".into());
            }
        }
        assert!(readers > 0, "{name}: nothing reads {tanh_output}");
        function.node_def.push(NodeDef {
            name: "check_tanh".into(),
            op: "CheckNumerics".into(),
            input: vec![tanh_output.clone()],
            attr: [("T".to_string(), type_attr(1))].into_iter().collect(),
            ..NodeDef::default()
        });
        function.node_def.push(NodeDef {
            name: "assert_tanh".into(),
            op: "Assert".into(),
            input: vec![tanh_output.clone(), tanh_output],
            ..NodeDef::default()
        });
        function
            .control_ret
            .insert("assert_tanh".into(), "assert_tanh".into());
        let signature = function.signature.as_mut().unwrap();
        signature.control_output.push("assert_tanh".into());
        edited += 1;
    });
    assert_eq!(edited, 2, "the fixture holds two traces of the loop body");
    let options = ConvertOptions {
        skip_op_check: true,
        ..fixture.options()
    };
    let plain = convert_ok(fixture.model(), &options).model_json();
    assert_eq!(convert_ok(scratch.path(), &options).model_json(), plain);
    let kept = ConvertOptions {
        strip_debug_ops: false,
        ..options
    };
    let kept = convert_ok(scratch.path(), &kept).model_json().to_string();
    assert!(kept.contains("CheckNumerics") && kept.contains("assert_tanh"));
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    let fixture = Fixture::new("saved_model");
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("saved_model.pb");
    for bytes in [
        &b""[..],
        &[0xff; 64][..],
        &[0x12, 0x80, 0x80, 0x80, 0x80, 0x10][..],
    ] {
        std::fs::write(&path, bytes).unwrap();
        error_of(scratch.path(), &fixture.options());
    }
    // A variables index that is garbage.
    let model = scratch_copy(&fixture.model());
    std::fs::write(model.path().join("variables/variables.index"), [7u8; 100]).unwrap();
    let error = error_of(model.path(), &fixture.options());
    assert!(error.contains("variables.index"), "{error}");
}

#[test]
fn hub_module_archive_is_unpacked_into_the_cache() {
    let fixture = Fixture::new("hub");
    let cache = tempfile::tempdir().unwrap();
    let options = ConvertOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..fixture.options()
    };
    let converted = convert_ok(fixture.path("hub.tar.gz"), &options);
    fixture.assert_matches(&converted, TOLERANCE);
    let unpacked = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(unpacked, 1, "one unpacked module in the cache");
}

/// Serves `body` to every GET whose path asks for the compressed format (404 otherwise), on the
/// loopback address; `stall` accepts connections and never answers. Returns the base URL.
fn serve(body: Vec<u8>, stall: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if stall {
                held.push(stream);
                continue;
            }
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
            }
            if request.contains("tf-hub-format=compressed") {
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(header.as_bytes());
                let _ = stream.write_all(&body);
            } else {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    (format!("http://{address}/models/cnn/1"), requests)
}

#[test]
fn hub_module_url_is_downloaded_once_then_read_from_the_cache() {
    let fixture = Fixture::new("hub");
    let archive = std::fs::read(fixture.path("hub.tar.gz")).unwrap();
    let (url, requests) = serve(archive, false);
    let cache = tempfile::tempdir().unwrap();
    let options = ConvertOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        timeout: std::time::Duration::from_secs(10),
        ..fixture.options()
    };
    let converted = convert_ok(&url, &options);
    fixture.assert_matches(&converted, TOLERANCE);
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Again: from the cache, no request.
    convert_ok(&url, &options);
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn hub_downloads_fail_clearly_offline_and_on_timeout() {
    let cache = tempfile::tempdir().unwrap();
    let options = ConvertOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        timeout: std::time::Duration::from_millis(500),
        ..Fixture::new("hub").options()
    };
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = error_of(Path::new(&format!("http://127.0.0.1:{port}/m")), &options);
    assert!(
        error.contains("cannot connect")
            && error.contains("offline")
            && error.contains("no cached copy"),
        "{error}"
    );
    // HTTPS goes the same way (TLS after the connection).
    let error = error_of(Path::new(&format!("https://127.0.0.1:{port}/m")), &options);
    assert!(error.contains("cannot connect"), "{error}");
    let (url, _) = serve(Vec::new(), true);
    let error = error_of(Path::new(&url), &options);
    assert!(error.contains("timed out"), "{error}");
}

#[test]
fn weights_split_into_shards_of_the_requested_size() {
    let converted = check_fixture("saved_model", |options| {
        options.weight_shard_size_bytes = 1000;
    });
    let model = converted.model_json();
    let paths = model["weightsManifest"][0]["paths"].as_array().unwrap();
    let sizes: Vec<u64> = paths
        .iter()
        .map(|p| {
            std::fs::metadata(converted.path().join(p.as_str().unwrap()))
                .unwrap()
                .len()
        })
        .collect();
    assert!(sizes.len() > 2, "{sizes:?}");
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&s| s == 1000),
        "{sizes:?}"
    );
    assert_eq!(paths[0], format!("group1-shard1of{}.bin", sizes.len()));
}

/// Deterministic byte mutations (a tiny xorshift, so the test needs no seed file).
fn mutations(length: usize, count: usize) -> Vec<(usize, u8)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state as usize) % length.max(1), (state >> 40) as u8 | 1)
        })
        .collect()
}

#[test]
fn mutated_inputs_never_panic() {
    // Every file of the SavedModel and the frozen graph, each byte-flipped in many places and
    // truncated at many lengths: each conversion returns, successfully or with an error.
    let saved_model = Fixture::new("saved_model");
    // Converts `input` into `scratch/out`; whether it succeeded.
    let converts = |input: &Path, scratch: &Path, options: &ConvertOptions| {
        run_convert(input, &scratch.join("out"), options).is_ok()
    };
    let files = [
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    ];
    let mut errors = 0;
    for file in files {
        let original = std::fs::read(saved_model.model().join(file)).unwrap();
        let scratch = scratch_copy(&saved_model.model());
        let path = scratch.path().join(file);
        for (at, flip) in mutations(original.len(), 60) {
            let mut bytes = original.clone();
            bytes[at] ^= flip;
            std::fs::write(&path, &bytes).unwrap();
            errors += usize::from(!converts(
                scratch.path(),
                scratch.path(),
                &saved_model.options(),
            ));
            std::fs::write(&path, &original[..at]).unwrap();
            errors += usize::from(!converts(
                scratch.path(),
                scratch.path(),
                &saved_model.options(),
            ));
        }
    }
    assert!(errors > 100, "only {errors} mutations were refused");
    let frozen = Fixture::new("frozen");
    let original = std::fs::read(frozen.model()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("frozen.pb");
    for (at, flip) in mutations(original.len(), 100) {
        let mut bytes = original.clone();
        bytes[at] ^= flip;
        std::fs::write(&path, &bytes).unwrap();
        let _ = converts(&path, scratch.path(), &frozen.options());
    }
}

#[test]
fn keras2_batch_norms_fold_and_leaky_relu_fuses() {
    // tf_keras graphs carry FusedBatchNormV3 after a biased convolution: the batch norm folds
    // into filter and bias, and bias + LeakyReLU into _FusedConv2D (alpha kept).
    let converted = check_fixture("keras2", unchanged);
    let ops = converted.ops();
    for gone in [
        "FusedBatchNormV3",
        "Mul",
        "AddV2",
        "BiasAdd",
        "LeakyRelu",
        "Relu",
    ] {
        assert!(!ops.iter().any(|op| op == gone), "{gone} left in {ops:?}");
    }
    let convolution = converted
        .nodes()
        .into_values()
        .find(|n| n["op"] == "_FusedConv2D")
        .unwrap();
    assert_eq!(
        convolution["attr"]["fused_ops"]["list"]["s"],
        serde_json::json!(["Qmlhc0FkZA==", "TGVha3lSZWx1"])
    );
    assert!(
        (convolution["attr"]["leakyrelu_alpha"]["f"]
            .as_f64()
            .unwrap()
            - 0.1)
            .abs()
            < 1e-6
    );
}

#[test]
fn frozen_graph_signature_is_the_python_converters() {
    // Golden: tensorflowjs 4.22 writes {"outputs": {NAME: {"name": NAME}}} for frozen graphs.
    let fixture = Fixture::new("frozen");
    let options = fixture.options();
    let output_name = options.output_node_names[0].clone();
    let converted = convert_ok(fixture.model(), &options);
    assert_eq!(
        converted.model_json()["signature"],
        serde_json::json!({"outputs": {output_name.clone(): {"name": output_name}}})
    );
}

#[test]
fn the_command_line_takes_the_python_converters_flags() {
    let binary = env!("CARGO_BIN_EXE_tfjsc");
    let output = tempfile::tempdir().unwrap();
    let input = Fixture::new("saved_model").model();
    let status = std::process::Command::new(binary)
        .args([
            "convert",
            "--input_format=tf_saved_model",
            "--strip_debug_ops=False",
            "--weight_shard_size_bytes=2048",
            "--control_flow_v2=True",
            "--quiet",
        ])
        .arg(&input)
        .arg(output.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(output.path().join("model.json").is_file());
    let failed = std::process::Command::new(binary)
        .args(["convert", "--signature_name", "nope"])
        .arg(&input)
        .arg(output.path().join("again"))
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let message = String::from_utf8_lossy(&failed.stderr);
    assert!(
        message.contains("error:") && message.contains("serving_default"),
        "{message}"
    );
    // tfjsc writes only the control flow TF.js runs.
    let refused = std::process::Command::new(binary)
        .args(["convert", "--control_flow_v2=false"])
        .arg(&input)
        .arg(output.path().join("v1"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("--control_flow_v2=false"), "{message}");
}

/// Runs `tfjsc convert ARGUMENTS` with its stderr on a pseudo-terminal of 100 columns (stdout
/// piped); returns whether it succeeded and what it wrote to the terminal.
fn convert_on_a_terminal(arguments: &[&std::ffi::OsStr]) -> (bool, String) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut controller, mut terminal) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the integers given and reads `size`; the
    // name and termios pointers may be null.
    let status = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &size,
        )
    };
    assert_eq!(status, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nothing else.
    let (controller, terminal) = unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(controller)),
            OwnedFd::from_raw_fd(terminal),
        )
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tfjsc"))
        .arg("convert")
        .args(arguments)
        .stdout(std::process::Stdio::piped())
        .stderr(terminal)
        .spawn()
        .unwrap();
    // The command's copy of the terminal side is closed by now: reading ends (EIO on Linux)
    // once the child exits.
    let mut written = Vec::new();
    let _ = (&controller).read_to_end(&mut written);
    let status = child.wait().unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&written).into_owned(),
    )
}

#[test]
fn progress_is_a_bar_on_a_terminal_and_nothing_elsewhere() {
    let input = Fixture::new("saved_model").model();
    let output = tempfile::tempdir().unwrap();
    let out = |name: &str| output.path().join(name).into_os_string();
    // On a terminal: the bar, filled step by step with each step's name, then cleared before
    // the closing line.
    let (succeeded, shown) = convert_on_a_terminal(&[input.as_os_str(), &out("bar")]);
    assert!(succeeded, "{shown}");
    for drawn in [
        "[                        ]",
        "[######                  ]",
        "[##################      ]",
        " s  reading",
        " s  checking ops",
        " s  writing",
    ] {
        assert!(shown.contains(drawn), "{drawn:?} not in {shown:?}");
    }
    let after_last_clear = shown.rsplit("\x1b[2K").next().unwrap();
    assert!(
        after_last_clear.starts_with("wrote ") && !after_last_clear.contains('['),
        "{shown:?}"
    );
    // --quiet: nothing at all.
    let quiet = std::ffi::OsString::from("--quiet");
    let (succeeded, shown) = convert_on_a_terminal(&[&quiet, input.as_os_str(), &out("quiet")]);
    assert!(succeeded && shown.is_empty(), "{shown:?}");
    // A failure: the bar is cleared before the error.
    let (succeeded, shown) = convert_on_a_terminal(&[
        input.as_os_str(),
        "--signature_name=nope".as_ref(),
        &out("no"),
    ]);
    assert!(!succeeded && shown.contains(" s  reading"), "{shown:?}");
    let after_last_clear = shown.rsplit("\x1b[2K").next().unwrap();
    assert!(after_last_clear.starts_with("error: "), "{shown:?}");
    // Not a terminal (a pipe, a log): the closing line only.
    let piped = std::process::Command::new(env!("CARGO_BIN_EXE_tfjsc"))
        .arg("convert")
        .arg(&input)
        .arg(out("piped"))
        .output()
        .unwrap();
    let written = String::from_utf8_lossy(&piped.stderr);
    assert!(
        piped.status.success() && written.starts_with("wrote ") && written.lines().count() == 1,
        "{written:?}"
    );
}

#[test]
fn tf1_saved_model_converts_and_matches_tensorflow() {
    // No object graph and no functions: variables are found by name, the signature's tensors
    // are graph tensors.
    check_fixture("tf1_saved_model", unchanged);
}

#[test]
fn keras_prelu_becomes_a_fused_prelu() {
    // Relu(y) + Mul(-alpha, Relu(Neg(y))) → Prelu(y, alpha), then fused into the convolution
    // before it with num_args 2 (bias, alpha), as TF.js requires.
    let converted = check_fixture("prelu", unchanged);
    let fused: Vec<Value> = converted
        .nodes()
        .into_values()
        .filter(|n| n["op"] == "_FusedConv2D" || n["op"] == "FusedDepthwiseConv2dNative")
        .collect();
    assert_eq!(fused.len(), 2, "{fused:?}");
    for node in fused {
        assert_eq!(
            node["attr"]["fused_ops"]["list"]["s"],
            serde_json::json!(["Qmlhc0FkZA==", "UHJlbHU="])
        );
        assert_eq!(node["attr"]["num_args"]["i"], "2");
        assert_eq!(node["input"].as_array().unwrap().len(), 4);
    }
    let ops = converted.ops();
    assert!(
        !ops.iter()
            .any(|op| op == "Neg" || op == "Relu" || op == "Prelu"),
        "{ops:?}"
    );
}

/// The ops of model.json's graph (or of one library function's body) but `ignored`, counted.
fn op_counts(nodes: &Value, ignored: &[&str]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in nodes.as_array().unwrap() {
        let op = node["op"].as_str().unwrap();
        if !ignored.contains(&op) {
            *counts.entry(op.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// The library function of model.json named by attribute `attr` of `node`.
fn library_function<'m>(model: &'m Value, node: &Value, attr: &str) -> &'m Value {
    let name = node["attr"][attr]["func"]["name"].as_str().unwrap();
    model["modelTopology"]["library"]["function"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["signature"]["name"] == name)
        .unwrap_or_else(|| panic!("no library function {name}"))
}

/// Converts control-flow fixture `name` (the op check skipped: tfjsc cannot compile `While`,
/// TF.js runs it), checking that no resource type is left; the fixture, the conversion and its
/// model.json.
fn convert_control_flow(name: &str) -> (Fixture, Converted, Value) {
    let fixture = Fixture::new(name);
    let options = ConvertOptions {
        skip_op_check: true,
        ..fixture.options()
    };
    let converted = convert_ok(fixture.model(), &options);
    let ours = converted.model_json();
    assert!(
        !ours.to_string().contains("DT_RESOURCE"),
        "{name}: a resource type left"
    );
    (fixture, converted, ours)
}

#[test]
fn a_gather_from_a_captured_variable_in_a_loop_gathers_from_its_constant() {
    // An embedding lookup in a decoding loop (ResourceGather of a captured handle in the While
    // body) becomes GatherV2 of the loop-invariant constant along axis 0, as TensorFlow's
    // convert_variables_to_constants_v2 makes it. tfjsc cannot compile While, so the op check
    // is skipped; TF.js runs the output (tests/tfjs_reference.mjs: 6.0e-8 from TensorFlow).
    let (_, converted, ours) = convert_control_flow("gather_loop");
    let r#while = nodes(&ours)
        .into_values()
        .find(|n| n["op"] == "While")
        .expect("a While node");
    let body = library_function(&ours, &r#while, "body");
    let body_nodes = body["nodeDef"].as_array().unwrap();
    assert!(body_nodes.iter().all(|n| n["op"] != "ResourceGather"));
    let gather = body_nodes
        .iter()
        .find(|n| n["op"] == "GatherV2")
        .expect("the lookup as GatherV2");
    // It gathers from the argument the embedding (10 × 4 floats) is passed in as.
    let weights = weight_bytes(converted.path(), &ours);
    let arguments = body["signature"]["inputArg"].as_array().unwrap();
    let params = gather["input"][0].as_str().unwrap();
    let position = arguments
        .iter()
        .position(|arg| arg["name"] == params)
        .expect("GatherV2 reads a function argument");
    let loop_input = r#while["input"][position].as_str().unwrap();
    assert_eq!(weights[loop_input].len(), 10 * 4 * 4, "{loop_input}");
    assert_eq!(arguments[position]["type"], "DT_FLOAT");
    // Along axis 0: a Const in the body, written as a weight named FUNCTION/NODE (the body's
    // references renamed with it).
    let axis = gather["input"][2].as_str().unwrap();
    let axis_node = axis.split(':').next().unwrap();
    let function = body["signature"]["name"].as_str().unwrap();
    assert!(
        axis_node.starts_with(&format!("{function}/")),
        "{axis_node}"
    );
    assert_eq!(weights[axis_node].as_slice(), 0i32.to_le_bytes());
}

#[test]
fn a_variable_passed_on_through_a_nested_loop_and_a_call_is_frozen_and_the_call_inlined() {
    // The outer loop's body runs a second loop, whose body calls a tf.function (a cell) that
    // reads the captured variable: the handle is passed on twice. Each function on the way takes
    // the value instead, and the call is inlined (TF.js has no call ops), as the Python
    // converter's output with --control_flow_v2 (golden in nested_loop/tfjs) has it. TF.js runs
    // both within 2.3e-10 of TensorFlow (tests/tfjs_reference.mjs).
    let (fixture, converted, ours) = convert_control_flow("nested_loop");
    let golden = model_json(&fixture.path("tfjs").join("model.json"));
    let library_ops = |model: &Value| {
        let functions = model["modelTopology"]["library"]["function"]
            .as_array()
            .unwrap();
        let mut counts = BTreeMap::new();
        for function in functions {
            // Inlining leaves Identity and NoOp nodes Grappler removes; constants differ by
            // folding.
            let ops = op_counts(&function["nodeDef"], &["Identity", "NoOp", "Const"]);
            for (op, count) in ops {
                *counts.entry(op).or_insert(0) += count;
            }
        }
        (functions.len(), counts)
    };
    let (functions, ops) = library_ops(&ours);
    assert!(
        !ops.keys().any(|op| op.contains("PartitionedCall")),
        "{ops:?}"
    );
    assert_eq!((functions, ops), library_ops(&golden));
    // The cell's product reads the 4 × 4 variable, passed into both loops as a constant.
    let weights = weight_bytes(converted.path(), &ours);
    let outer = nodes(&ours)
        .into_values()
        .find(|n| n["op"] == "While")
        .expect("the outer loop");
    let captured: Vec<&str> = outer["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.as_str())
        .filter(|i| weights.get(*i).is_some_and(|w| w.len() == 4 * 4 * 4))
        .collect();
    assert_eq!(captured.len(), 1, "{:?}", outer["input"]);
}

#[test]
fn lstm_while_body_variables_become_loop_invariant_constants() {
    // A Keras LSTM's While loop gets its three variables as captured resource inputs, read by
    // ReadVariableOp in the body. Frozen as the Python converter does with --control_flow_v2
    // (golden output in lstm/tfjs): the handles become Consts passed into the loop, the body
    // reads its argument through Identity. tfjsc cannot compile While or TensorList ops, so the
    // op check is skipped and the output is compared with the Python converter's structurally;
    // TF.js runs both (tests/tfjs_reference.mjs, docs/convert.md).
    let fixture = Fixture::new("lstm");
    let options = ConvertOptions {
        skip_op_check: true,
        ..fixture.options()
    };
    let converted = convert_ok(fixture.model(), &options);
    let ours = converted.model_json();
    let golden_directory = fixture.path("tfjs");
    let golden = model_json(&golden_directory.join("model.json"));
    assert_eq!(ours["signature"], golden["signature"], "signatures differ");
    assert_eq!(
        op_counts(&ours["modelTopology"]["node"], &[]),
        op_counts(&golden["modelTopology"]["node"], &[]),
        "graph ops"
    );
    let functions = ours["modelTopology"]["library"]["function"]
        .as_array()
        .unwrap();
    let every_op: Vec<&Value> = ours["modelTopology"]["node"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            functions
                .iter()
                .flat_map(|f| f["nodeDef"].as_array().unwrap()),
        )
        .map(|node| &node["op"])
        .collect();
    for stateful in ["VarHandleOp", "ReadVariableOp", "ResourceGather"] {
        assert!(
            !every_op.contains(&&Value::from(stateful)),
            "{stateful} left"
        );
    }
    assert!(
        !ours.to_string().contains("DT_RESOURCE"),
        "a resource type left"
    );
    let find_while = |model: &Value| -> Value {
        nodes(model)
            .into_values()
            .find(|n| n["op"] == "While")
            .expect("a While node")
    };
    let (our_while, golden_while) = (find_while(&ours), find_while(&golden));
    for attr in ["T", "output_shapes", "parallel_iterations"] {
        assert_eq!(
            our_while["attr"][attr], golden_while["attr"][attr],
            "While {attr}"
        );
    }
    for attr in ["cond", "body"] {
        let (our_function, golden_function) = (
            library_function(&ours, &our_while, attr),
            library_function(&golden, &golden_while, attr),
        );
        // Grappler's function optimizer drops the cond's result Identity; we keep it.
        assert_eq!(
            op_counts(&our_function["nodeDef"], &["Identity"]),
            op_counts(&golden_function["nodeDef"], &["Identity"]),
            "ops of the {attr} function"
        );
        let types = |function: &Value, side: &str| -> Vec<Value> {
            function["signature"][side]
                .as_array()
                .unwrap()
                .iter()
                .map(|arg| arg["type"].clone())
                .collect()
        };
        for side in ["inputArg", "outputArg"] {
            assert_eq!(
                types(our_function, side),
                types(golden_function, side),
                "{attr} {side} types"
            );
        }
    }
    // Every loop input is the same tensor: weights (the captured kernels among them) with the
    // same bytes, or nodes of the same op.
    let (our_weights, golden_weights) = (
        weight_bytes(converted.path(), &ours),
        weight_bytes(&golden_directory, &golden),
    );
    let (our_nodes, golden_nodes) = (nodes(&ours), nodes(&golden));
    let inputs = |node: &Value| -> Vec<String> {
        node["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect()
    };
    let (our_inputs, golden_inputs) = (inputs(&our_while), inputs(&golden_while));
    assert_eq!(our_inputs.len(), 10);
    assert_eq!(our_inputs.len(), golden_inputs.len());
    let mut captured = 0;
    for (our, theirs) in our_inputs.iter().zip(&golden_inputs) {
        match (our_weights.get(our), golden_weights.get(theirs)) {
            (Some(a), Some(b)) => {
                assert_eq!(a, b, "loop input {our} (Python: {theirs})");
                captured += usize::from(a.len() > 16); // not the [1, 4] zero states
            }
            _ => assert_eq!(our_nodes[our]["op"], golden_nodes[theirs]["op"], "{our}"),
        }
    }
    assert_eq!(captured, 3, "the LSTM's kernel, recurrent kernel and bias");
    // Constants inside the functions are weights, named FUNCTION/NODE as TF.js looks them up.
    let function_weights = our_weights
        .keys()
        .filter(|name| name.contains("_frozen/"))
        .count();
    assert_eq!(
        function_weights,
        golden_weights
            .keys()
            .filter(|name| name.contains("_frozen_"))
            .count()
    );
}
