//! The `tfjsc` command line, driven as a user would: good input gives the documented files and
//! reports; bad input (a fixture copied into a temporary directory and damaged) gives a non-zero
//! exit status and a message on stderr naming the file / node / tensor at fault and what was
//! expected. Nothing may panic.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tfjsc_runtime::npy::{read_npy, write_npy};
use tfjsc_runtime::Tensor;

const TOLERANCE: f32 = 1e-4;

/// What a `tfjsc` invocation did.
#[derive(Clone)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    command: String,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `tfjsc` with `arguments`; never accepts a panic or a signal.
fn tfjsc<S: AsRef<OsStr>>(arguments: &[S]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_tfjsc"))
        .args(arguments)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let outcome = Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        command: std::iter::once("tfjsc".to_string())
            .chain(
                arguments
                    .iter()
                    .map(|a| a.as_ref().to_string_lossy().into_owned()),
            )
            .collect::<Vec<_>>()
            .join(" "),
    };
    assert!(
        !outcome.stderr.contains("panicked"),
        "tfjsc panicked: {}",
        outcome.describe()
    );
    assert!(
        outcome.code.is_some(),
        "tfjsc was killed by a signal: {}",
        outcome.describe()
    );
    assert_ne!(
        outcome.code,
        Some(101),
        "exit status 101 is a panic: {}",
        outcome.describe()
    );
    outcome
}

/// Runs `tfjsc`, which must succeed.
fn succeeds<S: AsRef<OsStr>>(arguments: &[S]) -> Outcome {
    let outcome = tfjsc(arguments);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    outcome
}

/// Runs `tfjsc`, which must fail with an `error: ...` message; returns the outcome.
fn fails<S: AsRef<OsStr>>(arguments: &[S]) -> Outcome {
    let outcome = tfjsc(arguments);
    assert_ne!(
        outcome.code,
        Some(0),
        "expected a failure: {}",
        outcome.describe()
    );
    assert!(
        outcome.stderr.contains("error:"),
        "no `error:` on stderr: {}",
        outcome.describe()
    );
    outcome
}

/// Asserts that stderr contains every one of `needles`.
fn assert_mentions(outcome: &Outcome, needles: &[&str]) {
    for needle in needles {
        assert!(
            outcome.stderr.contains(needle),
            "stderr does not mention {needle:?}: {}",
            outcome.describe()
        );
    }
}

/// Asserts that no error line repeats a clause chain (`a: b: a: b`), as happens when an error's
/// message embeds its source and the source is printed again. Tests collect their outcomes and
/// check this last, so that the more specific assertions run first.
fn assert_no_repeated_clauses(outcomes: &[Outcome]) {
    for outcome in outcomes {
        for line in outcome.stderr.lines() {
            let parts: Vec<&str> = line.split(": ").collect();
            for length in 1..=parts.len() / 2 {
                for start in 0..=parts.len() - 2 * length {
                    let first = &parts[start..start + length];
                    let second = &parts[start + length..start + 2 * length];
                    assert!(
                        first != second || first.concat().len() < 12,
                        "stderr repeats {:?}: {}",
                        first.join(": "),
                        outcome.describe()
                    );
                }
            }
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    common::fixtures().join(name)
}

/// A copy of a fixture directory (with its `legacy/` subdirectory) in a new temporary directory.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path().join(name);
    copy(&fixture(name), &directory);
    (temporary, directory)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
}

fn compile_ok(model: &Path, output: &Path) {
    succeeds(&[
        OsStr::new("compile"),
        model.as_os_str(),
        OsStr::new("-o"),
        output.as_os_str(),
    ]);
    assert!(output.is_file(), "{} was not written", output.display());
}

/// A fixture compiled to `file` (a library or an object) in a new temporary directory.
fn compiled_fixture(name: &str, file: &str) -> (tempfile::TempDir, PathBuf) {
    let temporary = tempfile::tempdir().unwrap();
    let output = temporary.path().join(file);
    compile_ok(&fixture(name).join("model.json"), &output);
    (temporary, output)
}

/// `tfjsc compile MODEL -o OUTPUT`, which must fail.
fn compile_fails(model: &Path, output: &Path) -> Outcome {
    fails(&[
        OsStr::new("compile"),
        model.as_os_str(),
        OsStr::new("-o"),
        output.as_os_str(),
    ])
}

fn check_against_expected(output: &Path, fixture_name: &str) {
    let actual = read_npy(output).unwrap_or_else(|e| panic!("{}: {e}", output.display()));
    let expected = read_npy(&fixture(fixture_name).join("expected_0.npy")).unwrap();
    assert_eq!(actual.shape, expected.shape, "{}", output.display());
    let error = common::relative_error(&common::as_f32(&actual), &common::as_f32(&expected));
    assert!(
        error <= TOLERANCE,
        "{}: differs from TensorFlow by {error:.3e}",
        output.display()
    );
}

const MLP_KERNEL: &str = "StatefulPartitionedCall/mlp_1/fc1_1/Cast/ReadVariableOp";
const MLP_LAST_BIAS: &str = "StatefulPartitionedCall/mlp_1/fc5_1/BiasAdd/ReadVariableOp";
const MLP_SHARD: &str = "group1-shard1of1.bin";
const MLP_SHARD_BYTES: u64 = 131_368;

// ------------------------------------------------------------------------------------------------
// Good input

#[test]
fn compile_then_run_writes_npy_outputs_and_listing() {
    for name in ["mlp", "mobilenet_v2_035_96"] {
        let temporary = tempfile::tempdir().unwrap();
        let library = temporary.path().join("libmodel.so");
        let compiled = succeeds(&[
            OsStr::new("compile"),
            fixture(name).join("model.json").as_os_str(),
            OsStr::new("-o"),
            library.as_os_str(),
        ]);
        assert!(
            compiled.stderr.contains("libmodel.h"),
            "{}",
            compiled.describe()
        );
        assert!(temporary.path().join("libmodel.h").is_file());

        // --out names a directory that does not exist yet.
        let out = temporary.path().join("results/nested");
        let input = format!("input={}", fixture(name).join("input_0.npy").display());
        succeeds(&[
            OsStr::new("run"),
            library.as_os_str(),
            OsStr::new("--input"),
            OsStr::new(&input),
            OsStr::new("--out"),
            out.as_os_str(),
        ]);

        let listing = read_json(&out.join("outputs.json"));
        let entries = listing
            .as_array()
            .unwrap_or_else(|| panic!("outputs.json is not a list: {listing}"));
        assert_eq!(entries.len(), 1, "{listing}");
        let entry = &entries[0];
        assert_eq!(
            entry["name"], "Identity",
            "the graph node name, without \":0\": {listing}"
        );
        assert_eq!(entry["dtype"], "float32", "{listing}");
        let expected = read_npy(&fixture(name).join("expected_0.npy")).unwrap();
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, expected.shape, "{listing}");
        let file = entry["file"].as_str().unwrap();
        assert!(file.ends_with(".npy") && !file.contains('/'), "{listing}");
        check_against_expected(&out.join(file), name);

        // One .npy per output, and nothing else but the listing.
        let mut written: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        let mut wanted = vec![file.to_string(), "outputs.json".to_string()];
        wanted.sort();
        assert_eq!(written, wanted);
    }
}

#[test]
fn run_accepts_unnamed_and_tensor_style_input_names() {
    let (temporary, library) = compiled_fixture("mlp", "libmlp.so");
    let input = fixture("mlp").join("input_0.npy");
    for (index, argument) in [
        input.display().to_string(),
        format!("input:0={}", input.display()),
    ]
    .iter()
    .enumerate()
    {
        let out = temporary.path().join(format!("out{index}"));
        succeeds(&[
            OsStr::new("run"),
            library.as_os_str(),
            OsStr::new("--input"),
            OsStr::new(argument),
            OsStr::new("--out"),
            out.as_os_str(),
        ]);
        check_against_expected(&out.join("Identity.npy"), "mlp");
    }
}

/// Reads `"ops"` (op → count) from a fixture's case.json.
fn fixture_op_counts(name: &str) -> Vec<(String, u64)> {
    let case = read_json(&fixture(name).join("case.json"));
    case["ops"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(op, count)| (op.clone(), count.as_u64().unwrap()))
        .collect()
}

/// The number printed before "FLOP" / "GFLOP" / ... on the line that mentions FLOPs.
fn flop_figure(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.contains("FLOP"))
        .unwrap_or_else(|| panic!("no FLOP count in:\n{stdout}"));
    line.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e'))
        .filter_map(|token| token.parse::<f64>().ok())
        .next()
        .unwrap_or_else(|| panic!("no number on {line:?}"))
}

#[test]
fn inspect_reports_ops_io_parameters_and_flops() {
    for name in ["mobilenet_v2_035_96", "mlp"] {
        let outcome = succeeds(&[
            OsStr::new("inspect"),
            fixture(name).join("model.json").as_os_str(),
        ]);
        let stdout = &outcome.stdout;

        // Ops by count: every op of the fixture with its count, the largest counts first.
        let counts = fixture_op_counts(name);
        let mut positions = Vec::new();
        for (op, count) in &counts {
            let position = stdout
                .lines()
                .position(|line| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    words == [count.to_string().as_str(), op.as_str()]
                })
                .unwrap_or_else(|| panic!("{name}: no line `{count}  {op}` in:\n{stdout}"));
            positions.push((position, *count));
        }
        positions.sort();
        assert!(
            positions.windows(2).all(|w| w[0].1 >= w[1].1),
            "{name}: ops not sorted by count:\n{stdout}"
        );

        // Inputs and outputs with their shapes.
        let expected = read_npy(&fixture(name).join("expected_0.npy")).unwrap();
        let input = read_npy(&fixture(name).join("input_0.npy")).unwrap();
        let dims = |shape: &[usize]| {
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(
            stdout.lines().any(|l| l.starts_with("input")
                && l.contains("\"input\"")
                && l.contains(&dims(&input.shape))),
            "{name}: no input line in:\n{stdout}"
        );
        assert!(
            stdout.lines().any(|l| l.starts_with("output")
                && l.contains("\"Identity\"")
                && l.contains(&dims(&expected.shape))),
            "{name}: no output line in:\n{stdout}"
        );

        // Parameters: the manifest's element count, and the bytes stored.
        let model = read_json(&fixture(name).join("model.json"));
        let values: u64 = model["weightsManifest"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|group| group["weights"].as_array().unwrap())
            .map(|weight| {
                weight["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .product::<u64>()
            })
            .sum();
        assert!(
            stdout.contains(&format!("{values} values")),
            "{name}: parameter count {values} missing:\n{stdout}"
        );
        assert!(
            stdout.contains("stored in"),
            "{name}: stored bytes missing:\n{stdout}"
        );

        assert!(
            stdout.lines().any(|l| l.trim() == "unsupported ops: none"),
            "{name}:\n{stdout}"
        );
        // FLOPs: a model doing arithmetic must not report zero (the MLP does about 65 kFLOP per run).
        let flops = flop_figure(stdout);
        assert!(
            flops > 0.0,
            "{name}: the FLOP count reads as zero: {:?}",
            stdout.lines().find(|l| l.contains("FLOP"))
        );
    }
}

/// A compiled library's description, as `tfjsc inspect LIBRARY` prints it.
fn description_of(library: &Path) -> Value {
    let outcome = succeeds(&[OsStr::new("inspect"), library.as_os_str()]);
    serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", outcome.describe()))
}

#[test]
fn inspect_of_a_compiled_library_prints_its_description() {
    let (_temporary, library) = compiled_fixture("mlp", "libmlp.so");
    let description = description_of(&library);
    assert_eq!(description["abi_version"], 2);
    assert_eq!(description["inputs"][0]["name"], "input");
    assert_eq!(description["outputs"][0]["name"], "Identity");
    assert_eq!(
        description["outputs"][0]["shape"],
        serde_json::json!([1, 10])
    );
    assert_eq!(description["weight_files"][0]["path"], MLP_SHARD);
    assert_eq!(description["weight_files"][0]["size"], MLP_SHARD_BYTES);
}

/// `bench --profile`, as JSON: one entry per step of the description, in its order, named and
/// typed as the description says; shares that add up to the whole; FLOPs and a rate for every
/// convolution and matrix product. As text: the `--top` slowest kernels, then every op. Nothing
/// here depends on how fast anything ran.
#[test]
fn bench_profile_reports_every_kernel_and_every_op() {
    let (_temporary, library) = compiled_fixture("small_cnn", "libsmall_cnn.so");
    let description = description_of(&library);
    let bench = |extra: &[&str]| {
        let mut arguments = vec![OsStr::new("bench"), library.as_os_str()];
        arguments.extend(["--runs", "2", "--warmup", "1", "--profile"].map(OsStr::new));
        arguments.extend(extra.iter().map(OsStr::new));
        succeeds(&arguments)
    };
    let outcome = bench(&["--json"]);
    let report: Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", outcome.describe()));
    let profile = &report["profile"];
    assert_eq!(profile["runs"], 2, "{}", outcome.describe());
    let steps = profile["steps"].as_array().unwrap();
    let nodes: Vec<&Value> = steps.iter().map(|step| &step["node"]).collect();
    let described: Vec<&Value> = description["steps"].as_array().unwrap().iter().collect();
    assert_eq!(nodes, described);
    let mut multiplies = 0;
    for (step, info) in steps
        .iter()
        .zip(description["step_info"].as_array().unwrap())
    {
        assert_eq!(step["op"], info["op"], "{step}");
        assert_eq!(step["flops"], info["flops"], "{step}");
        let op = step["op"].as_str().unwrap();
        let flops = step["flops"].as_u64().unwrap();
        if op.starts_with("conv2d") || op == "matmul" {
            multiplies += 1;
            assert!(flops > 0, "{step}");
            assert!(step["gflops"].as_f64().is_some_and(|g| g > 0.0), "{step}");
        }
        if flops == 0 {
            assert!(step["gflops"].is_null(), "{step}");
        }
        assert!(step["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{step}");
    }
    assert!(multiplies >= 5, "{}", outcome.describe());
    let share = |rows: &Value| -> f64 {
        let rows = rows.as_array().unwrap();
        rows.iter().map(|row| row["share"].as_f64().unwrap()).sum()
    };
    assert!((share(&profile["steps"]) - 100.0).abs() < 1e-6, "{profile}");
    assert!((share(&profile["ops"]) - 100.0).abs() < 1e-6, "{profile}");
    let ops = profile["ops"].as_array().unwrap();
    let counted: u64 = ops.iter().map(|op| op["count"].as_u64().unwrap()).sum();
    assert_eq!(counted as usize, steps.len());
    let milliseconds: Vec<f64> = ops.iter().map(|op| op["ms"].as_f64().unwrap()).collect();
    assert!(
        milliseconds.windows(2).all(|pair| pair[0] >= pair[1]),
        "{profile}"
    );

    let text = bench(&["--top", "3"]).stdout;
    let lines: Vec<&str> = text.lines().collect();
    let by_op = lines.iter().position(|line| *line == "by op:").unwrap();
    // The timing line, the profile line, the header, three kernels, the rest, `by op:`.
    assert_eq!(by_op, 7, "{text}");
    assert!(
        lines[6].contains(&format!("({} more kernels", steps.len() - 3)),
        "{text}"
    );
    for op in ops {
        let op = op["op"].as_str().unwrap();
        assert!(
            lines[by_op..]
                .iter()
                .any(|line| line.ends_with(&format!("  {op}"))),
            "{op}: {text}"
        );
    }
}

#[test]
fn dump_ir_prints_the_ir_after_a_pass() {
    let temporary = tempfile::tempdir().unwrap();
    let library = temporary.path().join("libmlp.so");
    let outcome = succeeds(&[
        OsStr::new("compile"),
        fixture("mlp").join("model.json").as_os_str(),
        OsStr::new("-o"),
        library.as_os_str(),
        OsStr::new("--dump-ir"),
        OsStr::new("fuse_epilogues"),
    ]);
    assert!(
        outcome.stdout.contains("IR after fuse_epilogues"),
        "{}",
        outcome.describe()
    );
    assert!(outcome.stdout.contains("graph {"), "{}", outcome.describe());
    assert!(
        outcome.stdout.contains("input %") && outcome.stdout.contains("\"input\""),
        "{}",
        outcome.describe()
    );
    assert!(
        outcome.stdout.contains("matmul(") && outcome.stdout.contains("output \"Identity\""),
        "{}",
        outcome.describe()
    );
    assert!(
        outcome.stdout.contains(MLP_KERNEL),
        "weights are named in the IR: {}",
        outcome.describe()
    );
    assert!(
        !outcome.stdout.contains("IR after import"),
        "only the requested pass: {}",
        outcome.describe()
    );
    assert!(library.is_file(), "--dump-ir still compiles");

    let all = succeeds(&[
        OsStr::new("compile"),
        fixture("mlp").join("model.json").as_os_str(),
        OsStr::new("-o"),
        library.as_os_str(),
        OsStr::new("--dump-ir"),
        OsStr::new("all"),
    ]);
    for pass in tfjsc::passes::dump_points() {
        assert!(
            all.stdout.contains(&format!("IR after {pass}\n")),
            "--dump-ir all lacks {pass}: {}",
            all.describe()
        );
    }
}

#[test]
fn dump_ir_of_an_unknown_pass_lists_the_passes() {
    let temporary = tempfile::tempdir().unwrap();
    let library = temporary.path().join("libmlp.so");
    let outcome = fails(&[
        OsStr::new("compile"),
        fixture("mlp").join("model.json").as_os_str(),
        OsStr::new("-o"),
        library.as_os_str(),
        OsStr::new("--dump-ir"),
        OsStr::new("nosuchpass"),
    ]);
    assert_mentions(&outcome, &["nosuchpass", "all"]);
    for pass in tfjsc::passes::dump_points() {
        assert_mentions(&outcome, &[pass]);
    }
    assert!(!library.exists(), "nothing is written on failure");
}

#[test]
fn legacy_form_compiles_and_runs() {
    let temporary = tempfile::tempdir().unwrap();
    for (index, model) in [
        fixture("mlp").join("legacy/web_model.pb"),
        fixture("mlp").join("legacy"),
    ]
    .iter()
    .enumerate()
    {
        let library = temporary.path().join(format!("liblegacy{index}.so"));
        compile_ok(model, &library);
        let out = temporary.path().join(format!("out{index}"));
        let input = format!("input={}", fixture("mlp").join("input_0.npy").display());
        succeeds(&[
            OsStr::new("run"),
            library.as_os_str(),
            OsStr::new("--input"),
            OsStr::new(&input),
            OsStr::new("--out"),
            out.as_os_str(),
        ]);
        check_against_expected(&out.join("Identity.npy"), "mlp");
    }
    let inspected = succeeds(&[
        OsStr::new("inspect"),
        fixture("mlp").join("legacy/web_model.pb").as_os_str(),
    ]);
    assert!(
        inspected.stdout.contains("unsupported ops: none"),
        "{}",
        inspected.describe()
    );
    assert!(
        inspected.stdout.contains("_FusedMatMul"),
        "{}",
        inspected.describe()
    );
}

// ------------------------------------------------------------------------------------------------
// Bad model files

#[test]
fn malformed_model_json_is_reported_with_its_position() {
    let mut later = Vec::new();
    let (_keep, directory) = copy_fixture("mlp");
    let model = directory.join("model.json");
    let text = std::fs::read(&model).unwrap();
    std::fs::write(&model, &text[..1000]).unwrap();
    let output = directory.join("libmodel.so");
    let outcome = compile_fails(&model, &output);
    assert_mentions(&outcome, &[&model.display().to_string(), "JSON", "1000"]);
    assert!(!output.exists());
    later.push(outcome.clone());

    // Valid JSON that is not a graph model: the missing field is named.
    write_json(&model, &serde_json::json!({"format": "graph-model"}));
    let outcome = compile_fails(&model, &output);
    assert_mentions(&outcome, &["model.json", "modelTopology"]);
    // And `inspect` says the same.
    let outcome = fails(&[OsStr::new("inspect"), model.as_os_str()]);
    assert_mentions(&outcome, &["model.json", "modelTopology"]);
    assert_no_repeated_clauses(&later);
}

#[test]
fn truncated_legacy_graph_is_reported() {
    let mut later = Vec::new();
    let (_keep, directory) = copy_fixture("mlp");
    let pb = directory.join("legacy/web_model.pb");
    let bytes = std::fs::read(&pb).unwrap();
    std::fs::write(&pb, &bytes[..bytes.len() / 3]).unwrap();
    let output = directory.join("liblegacy.so");
    let outcome = compile_fails(&pb, &output);
    assert_mentions(&outcome, &[&pb.display().to_string(), "GraphDef"]);
    assert!(!output.exists());
    later.push(outcome.clone());
    assert_no_repeated_clauses(&later);
}

#[test]
fn missing_shard_is_named() {
    let mut later = Vec::new();
    let (_keep, directory) = copy_fixture("mlp");
    std::fs::remove_file(directory.join(MLP_SHARD)).unwrap();
    let output = directory.join("libmodel.so");
    let outcome = compile_fails(&directory.join("model.json"), &output);
    assert_mentions(
        &outcome,
        &[&directory.join(MLP_SHARD).display().to_string(), "missing"],
    );
    assert!(!output.exists());
    later.push(outcome.clone());
    assert_no_repeated_clauses(&later);
}

#[test]
fn short_shard_names_the_weight_and_the_sizes() {
    let mut later = Vec::new();
    let (_keep, directory) = copy_fixture("mlp");
    let shard = directory.join(MLP_SHARD);
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..1000]).unwrap();
    let output = directory.join("libmodel.so");
    let outcome = compile_fails(&directory.join("model.json"), &output);
    // The first weight (64×128 float32 = 32768 bytes) no longer fits in 1000 bytes.
    assert_mentions(&outcome, &[MLP_SHARD, MLP_KERNEL, "32768", "1000"]);
    assert!(!output.exists());
    later.push(outcome.clone());
    assert_no_repeated_clauses(&later);
}

/// Sets the manifest shape of weight `index` of group 0.
fn set_manifest_shape(model: &Path, index: usize, shape: &[u64]) {
    let mut json = read_json(model);
    json["weightsManifest"][0]["weights"][index]["shape"] = serde_json::json!(shape);
    write_json(model, &json);
}

#[test]
fn manifest_shape_that_overruns_the_shard_names_the_weight() {
    let mut later = Vec::new();
    let (_keep, directory) = copy_fixture("mlp");
    let model = directory.join("model.json");
    // The last bias: [10] -> [12], 8 bytes more than the shard holds; its Const node still
    // declares [10], which names the culprit before any byte is read.
    set_manifest_shape(&model, 9, &[12]);
    let output = directory.join("libmodel.so");
    let outcome = compile_fails(&model, &output);
    assert_mentions(&outcome, &[MLP_LAST_BIAS, "[12]", "[10]", "model.json"]);
    assert!(!output.exists());
    later.push(outcome.clone());
    assert_no_repeated_clauses(&later);
}

#[test]
fn manifest_shape_that_disagrees_with_the_graph_names_the_weight() {
    let (_keep, directory) = copy_fixture("mlp");
    let model = directory.join("model.json");
    let output = directory.join("libmodel.so");
    // The first kernel: [64,128] -> [64,100]. The bytes no longer add up to the shard, and the
    // graph's Const node still declares [64,128]: the message must name that weight (not merely
    // the last weight of the group, whose shape is fine).
    set_manifest_shape(&model, 0, &[64, 100]);
    let outcome = compile_fails(&model, &output);
    assert_mentions(&outcome, &["model.json", MLP_KERNEL, "100", "128"]);
    assert!(!output.exists());

    // [64,128] -> [128,64]: same byte count, but not the node's declared shape.
    set_manifest_shape(&model, 0, &[128, 64]);
    let outcome = compile_fails(&model, &output);
    assert_mentions(&outcome, &["model.json", MLP_KERNEL]);
    assert!(!output.exists());
}

/// Whether `text` mentions `op` with `count` next to it (`FooOp ×2`, `FooOp: 2`, `2  FooOp`, ...).
fn mentions_with_count(text: &str, op: &str, count: usize) -> bool {
    let is_count =
        |token: &str| token.trim_matches(|c: char| !c.is_ascii_digit()) == count.to_string();
    text.match_indices(op).any(|(at, _)| {
        let after: String = text[at + op.len()..].chars().take(8).collect();
        let before: String = text[..at]
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let after_token = after.split([',', '\n', ';']).next().unwrap_or("");
        let before_token = before.rsplit([',', '\n', ';']).next().unwrap_or("");
        (!after_token.trim().is_empty() && is_count(after_token))
            || (!before_token.trim().is_empty() && is_count(before_token))
    })
}

#[test]
fn unsupported_ops_are_all_listed_with_counts() {
    let mut later = Vec::new();
    let (_keep, directory) = copy_fixture("mlp");
    let model = directory.join("model.json");
    let mut json = read_json(&model);
    for node in json["modelTopology"]["node"].as_array_mut().unwrap() {
        let name = node["name"].as_str().unwrap().to_string();
        if name.ends_with("fc2_1/Tanh") || name.ends_with("fc3_1/Sigmoid") {
            node["op"] = "FooOp".into();
        } else if name.ends_with("fc5_1/Softmax") {
            node["op"] = "BarOp".into();
        }
    }
    write_json(&model, &json);
    let output = directory.join("libmodel.so");
    let outcome = compile_fails(&model, &output);
    assert_mentions(&outcome, &["model.json", "unsupported", "FooOp", "BarOp"]);
    assert!(
        mentions_with_count(&outcome.stderr, "FooOp", 2),
        "FooOp's count (2) missing: {}",
        outcome.describe()
    );
    assert!(
        mentions_with_count(&outcome.stderr, "BarOp", 1),
        "BarOp's count (1) missing: {}",
        outcome.describe()
    );
    assert!(
        !outcome.stderr.contains("Tanh") && !outcome.stderr.contains("Softmax"),
        "only the unsupported ops: {}",
        outcome.describe()
    );
    assert!(!output.exists());
    assert!(!directory.join("libmodel.h").exists());
    later.push(outcome.clone());

    // `inspect` lists them too (it reports; it does not fail).
    let inspected = succeeds(&[OsStr::new("inspect"), model.as_os_str()]);
    assert!(
        inspected.stdout.contains("unsupported ops:")
            && !inspected.stdout.contains("unsupported ops: none"),
        "{}",
        inspected.describe()
    );
    assert!(
        inspected
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["2", "FooOp"]),
        "{}",
        inspected.describe()
    );
    assert!(
        inspected
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "BarOp"]),
        "{}",
        inspected.describe()
    );

    assert_eq!(
        outcome.stderr.matches("FooOp").count(),
        1,
        "each op listed once: {}",
        outcome.describe()
    );
    assert_no_repeated_clauses(&later);
}

#[test]
fn input_shape_for_a_non_input_is_refused() {
    let mut later = Vec::new();
    let temporary = tempfile::tempdir().unwrap();
    let output = temporary.path().join("libmodel.so");
    for name in [
        "nosuch",
        "Identity",
        "StatefulPartitionedCall/mlp_1/fc1_1/Relu",
    ] {
        let shape = format!("{name}=1,64");
        let outcome = fails(&[
            OsStr::new("compile"),
            fixture("mlp").join("model.json").as_os_str(),
            OsStr::new("-o"),
            output.as_os_str(),
            OsStr::new("--input-shape"),
            OsStr::new(&shape),
        ]);
        assert_mentions(&outcome, &[&format!("\"{name}\""), "not a graph input"]);
        assert!(!output.exists());
        later.push(outcome.clone());
    }

    // A shape that contradicts the placeholder's declared shape names the node and both shapes.
    let outcome = fails(&[
        OsStr::new("compile"),
        fixture("mlp").join("model.json").as_os_str(),
        OsStr::new("-o"),
        output.as_os_str(),
        OsStr::new("--input-shape"),
        OsStr::new("input=1,65"),
    ]);
    assert_mentions(&outcome, &["\"input\"", "[1, 65]", "[1, 64]"]);
    later.push(outcome.clone());

    // What would have been accepted: the graph's inputs (here the one named "input"), as
    // `tfjsc run --input` does ("inputs: input").
    for outcome in &later[..3] {
        assert!(
            outcome.stderr.contains("inputs: input")
                || outcome.stderr.contains("inputs: \"input\"")
                || outcome.stderr.contains("[\"input\"]"),
            "the message should list the graph inputs: {}",
            outcome.describe()
        );
    }
    assert_no_repeated_clauses(&later);
}

#[test]
fn output_path_with_an_unknown_extension_is_refused() {
    let temporary = tempfile::tempdir().unwrap();
    for file in ["model.txt", "model"] {
        let output = temporary.path().join(file);
        let outcome = compile_fails(&fixture("mlp").join("model.json"), &output);
        assert_mentions(&outcome, &[&output.display().to_string(), ".o", ".so"]);
        assert!(!output.exists());
    }
    assert_eq!(
        std::fs::read_dir(temporary.path()).unwrap().count(),
        0,
        "nothing written (no header either)"
    );
}

#[test]
fn inspect_and_compile_list_the_same_unlowerable_nodes_all_at_once() {
    // Imported is not lowerable: these ops import, but no kernel computes them on int32 yet.
    let placeholder = |name: &str, dtype: &str| {
        serde_json::json!({"name": name, "op": "Placeholder", "attr": {
            "dtype": {"type": dtype}, "shape": {"shape": {"dim": [{"size": "8"}]}}}})
    };
    let int = serde_json::json!({"T": {"type": "DT_INT32"}});
    let model = serde_json::json!({
        "format": "graph-model",
        "modelTopology": {"node": [
            placeholder("k", "DT_INT32"),
            {"name": "inverse1", "op": "Reciprocal", "input": ["k"], "attr": int},
            {"name": "inverse2", "op": "Reciprocal", "input": ["inverse1"], "attr": int},
            {"name": "power", "op": "Pow", "input": ["inverse2", "k"], "attr": int},
            {"name": "rounded", "op": "Round", "input": ["power"], "attr": int},
        ]},
        "weightsManifest": [],
    });
    let temporary = tempfile::tempdir().unwrap();
    let path = temporary.path().join("model.json");
    write_json(&path, &model);
    let library = temporary.path().join("libm.so");
    let compiled = compile_fails(&path, &library);
    let inspected = succeeds(&[OsStr::new("inspect"), path.as_os_str()]);
    let listing = |text: &str| -> Vec<String> {
        text.lines()
            .skip_while(|line| !line.contains("cannot lower"))
            .map(|line| {
                line.trim_start_matches("error: ")
                    .trim_start_matches("unsupported ops: ")
                    .to_string()
            })
            .collect()
    };
    let expected = [
        "cannot lower 3 node(s) on this target:",
        "  unary ×2: no I32 kernel for `reciprocal` (nodes \"inverse1\", \"inverse2\")",
        "  unary ×1: no I32 kernel for `round` (nodes \"rounded\")",
    ];
    assert_eq!(
        listing(&compiled.stderr),
        expected,
        "{}",
        compiled.describe()
    );
    assert_eq!(
        listing(&inspected.stdout),
        expected,
        "{}",
        inspected.describe()
    );
    assert!(!library.exists());
}

#[test]
fn nodes_whose_type_rule_refuses_them_are_listed_all_at_once() {
    // int32 convolutions import but their type rule refuses them (f32 only): both are named,
    // by inspect and compile alike, and the node reading both is not reported on its own.
    let int = |name: &str| {
        let dims: Vec<_> = (0..4).map(|_| serde_json::json!({"size": "1"})).collect();
        serde_json::json!({"name": name, "op": "Placeholder", "attr": {
            "dtype": {"type": "DT_INT32"}, "shape": {"shape": {"dim": dims}}}})
    };
    let conv = |name: &str, a: &str, b: &str| {
        serde_json::json!({"name": name, "op": "Conv2D", "input": [a, b], "attr": {
            "T": {"type": "DT_INT32"},
            "strides": {"list": {"i": ["1", "1", "1", "1"]}},
            "padding": {"s": "VkFMSUQ="}}})
    };
    let model = serde_json::json!({
        "format": "graph-model",
        "modelTopology": {"node": [
            int("a"),
            int("b"),
            conv("first", "a", "b"),
            conv("second", "b", "a"),
            {"name": "sum", "op": "AddV2", "input": ["first", "second"], "attr": {"T": {"type": "DT_INT32"}}},
        ]},
        "weightsManifest": [],
    });
    let temporary = tempfile::tempdir().unwrap();
    let path = temporary.path().join("model.json");
    write_json(&path, &model);
    let library = temporary.path().join("libm.so");
    let compiled = compile_fails(&path, &library);
    let inspected = fails(&[OsStr::new("inspect"), path.as_os_str()]);
    for run in [&compiled, &inspected] {
        let text = &run.stderr;
        assert!(
            text.contains("2 nodes are not supported")
                && text.contains("node \"first\" (conv2d)")
                && text.contains("node \"second\" (conv2d)")
                && !text.contains("\"sum\""),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn linking_a_library_leaves_the_users_other_files_alone() {
    // `-o x.so` once wrote its temporary object as `x.o` and deleted it.
    let temporary = tempfile::tempdir().unwrap();
    let own_object = temporary.path().join("model.o");
    std::fs::write(&own_object, b"the user's own object").unwrap();
    let library = temporary.path().join("model.so");
    compile_ok(&fixture("mlp").join("model.json"), &library);
    assert_eq!(
        std::fs::read(&own_object).unwrap(),
        b"the user's own object"
    );
    let mut names: Vec<String> = std::fs::read_dir(temporary.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["model.h", "model.o", "model.so"],
        "only the outputs are new"
    );
}

// ------------------------------------------------------------------------------------------------
// Bad run-time input

/// A copy of the MLP fixture and a library compiled against the copy's shards.
fn compiled_mlp_copy() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (keep, directory) = copy_fixture("mlp");
    let library = directory.join("libmlp.so");
    compile_ok(&directory.join("model.json"), &library);
    (keep, directory, library)
}

fn run_mlp(library: &Path, input: &Path, out: &Path) -> Outcome {
    run_mlp_with(library, input, out, &[])
}

/// `tfjsc run LIBRARY --input input=INPUT --out OUT`, then `extra` arguments.
fn run_mlp_with(library: &Path, input: &Path, out: &Path, extra: &[&OsStr]) -> Outcome {
    let argument = format!("input={}", input.display());
    let mut arguments = vec![
        OsStr::new("run"),
        library.as_os_str(),
        OsStr::new("--input"),
        OsStr::new(&argument),
        OsStr::new("--out"),
        out.as_os_str(),
    ];
    arguments.extend_from_slice(extra);
    tfjsc(&arguments)
}

#[test]
fn run_refuses_inputs_of_the_wrong_dtype_or_shape() {
    let mut later = Vec::new();
    let (_keep, directory, library) = compiled_mlp_copy();
    let out = directory.join("out");

    let int_input = directory.join("int.npy");
    write_npy(&int_input, &Tensor::from_i32(&[1, 64], &[1; 64]).unwrap()).unwrap();
    let outcome = run_mlp(&library, &int_input, &out);
    assert_ne!(outcome.code, Some(0), "{}", outcome.describe());
    assert_mentions(&outcome, &["\"input\"", "int.npy", "float32", "int32"]);
    later.push(outcome.clone());

    for (file, shape) in [
        ("short.npy", vec![1usize, 63]),
        ("flat.npy", vec![64]),
        ("batch.npy", vec![2, 64]),
    ] {
        let path = directory.join(file);
        let count: usize = shape.iter().product();
        write_npy(&path, &Tensor::from_f32(&shape, &vec![0.5; count]).unwrap()).unwrap();
        let outcome = run_mlp(&library, &path, &out);
        assert_ne!(outcome.code, Some(0), "{}", outcome.describe());
        assert_mentions(
            &outcome,
            &["\"input\"", file, "[1, 64]", &format!("{shape:?}")],
        );
        later.push(outcome.clone());
    }

    // Not a .npy file at all, and a missing one.
    let garbage = directory.join("garbage.npy");
    std::fs::write(&garbage, b"not numpy").unwrap();
    let outcome = run_mlp(&library, &garbage, &out);
    assert_ne!(outcome.code, Some(0));
    assert_mentions(&outcome, &["garbage.npy", ".npy"]);
    let outcome = run_mlp(&library, &directory.join("absent.npy"), &out);
    assert_ne!(outcome.code, Some(0));
    assert_mentions(&outcome, &["absent.npy"]);
    later.push(outcome.clone());

    // An input name the model does not have: the message lists the real ones.
    let argument = format!("image={}", fixture("mlp").join("input_0.npy").display());
    let outcome = fails(&[
        OsStr::new("run"),
        library.as_os_str(),
        OsStr::new("--input"),
        OsStr::new(&argument),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    assert_mentions(&outcome, &["\"image\"", "inputs: input"]);

    assert!(!out.exists(), "no outputs on failure");
    assert_no_repeated_clauses(&later);
}

#[test]
fn run_refuses_a_modified_shard() {
    let mut later = Vec::new();
    let (_keep, directory, library) = compiled_mlp_copy();
    let shard = directory.join(MLP_SHARD);
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[100] ^= 0x01; // same size, other contents
    std::fs::write(&shard, &bytes).unwrap();
    let out = directory.join("out");
    let outcome = run_mlp(&library, &fixture("mlp").join("input_0.npy"), &out);
    assert_ne!(outcome.code, Some(0), "{}", outcome.describe());
    assert_mentions(&outcome, &[&shard.display().to_string(), "CRC"]);
    later.push(outcome.clone());
    assert!(!out.exists());

    // A shard of another size.
    std::fs::write(&shard, &bytes[..100]).unwrap();
    let outcome = run_mlp(&library, &fixture("mlp").join("input_0.npy"), &out);
    assert_ne!(outcome.code, Some(0));
    assert_mentions(&outcome, &[MLP_SHARD, &MLP_SHARD_BYTES.to_string(), "100"]);
    assert_no_repeated_clauses(&later);
}

#[test]
fn run_refuses_a_deleted_shard() {
    let mut later = Vec::new();
    let (_keep, directory, library) = compiled_mlp_copy();
    let shard = directory.join(MLP_SHARD);
    std::fs::remove_file(&shard).unwrap();
    let out = directory.join("out");
    let outcome = run_mlp(&library, &fixture("mlp").join("input_0.npy"), &out);
    assert_ne!(outcome.code, Some(0), "{}", outcome.describe());
    assert_mentions(&outcome, &[&shard.display().to_string(), "libmlp.so"]);
    assert!(!out.exists());
    later.push(outcome.clone());

    // --weights pointing at the original shards makes it run again.
    let weights = fixture("mlp");
    let input = fixture("mlp").join("input_0.npy");
    let extra = [OsStr::new("--weights"), weights.as_os_str()];
    let outcome = run_mlp_with(&library, &input, &out, &extra);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    check_against_expected(&out.join("Identity.npy"), "mlp");
    assert_no_repeated_clauses(&later);
}

#[test]
fn run_with_a_missing_library_or_the_wrong_prefix() {
    let mut later = Vec::new();
    let temporary = tempfile::tempdir().unwrap();
    let missing = temporary.path().join("libnothing.so");
    let out = temporary.path().join("out");
    let outcome = run_mlp(&missing, &fixture("mlp").join("input_0.npy"), &out);
    assert_ne!(outcome.code, Some(0));
    assert_mentions(&outcome, &["libnothing.so"]);
    later.push(outcome.clone());

    let library = temporary.path().join("libprefixed.so");
    succeeds(&[
        OsStr::new("compile"),
        fixture("mlp").join("model.json").as_os_str(),
        OsStr::new("-o"),
        library.as_os_str(),
        OsStr::new("--symbol-prefix"),
        OsStr::new("mlp"),
    ]);
    let outcome = run_mlp(&library, &fixture("mlp").join("input_0.npy"), &out);
    assert_ne!(outcome.code, Some(0));
    assert_mentions(
        &outcome,
        &[
            "libprefixed.so",
            "tfjsc_model_description",
            "--symbol-prefix",
        ],
    );
    later.push(outcome.clone());
    let input = format!("input={}", fixture("mlp").join("input_0.npy").display());
    succeeds(&[
        OsStr::new("run"),
        library.as_os_str(),
        OsStr::new("--input"),
        OsStr::new(&input),
        OsStr::new("--out"),
        out.as_os_str(),
        OsStr::new("--symbol-prefix"),
        OsStr::new("mlp"),
    ]);
    check_against_expected(&out.join("Identity.npy"), "mlp");

    let outcome = fails(&[
        OsStr::new("compile"),
        fixture("mlp").join("model.json").as_os_str(),
        OsStr::new("-o"),
        library.as_os_str(),
        OsStr::new("--symbol-prefix"),
        OsStr::new("9bad-name"),
    ]);
    assert_mentions(&outcome, &["9bad-name", "C identifier"]);
    assert_no_repeated_clauses(&later);
}

/// A library from a compiler that exported `PREFIX_step` only in checked builds (made here by
/// stripping the symbol from a fresh object) still runs and benchmarks; only `--profile` is
/// refused, naming the symbol and the remedy.
#[test]
fn a_library_without_a_step_function_runs_but_is_not_profiled() {
    let (temporary, object) = compiled_fixture("mlp", "mlp.o");
    let stripped = temporary.path().join("old.o");
    let library = temporary.path().join("libold.so");
    for (program, arguments) in [
        (
            "objcopy",
            vec![
                OsStr::new("--strip-symbol=tfjsc_model_step"),
                object.as_os_str(),
                stripped.as_os_str(),
            ],
        ),
        (
            "cc",
            vec![
                OsStr::new("-shared"),
                OsStr::new("-o"),
                library.as_os_str(),
                stripped.as_os_str(),
            ],
        ),
    ] {
        let status = Command::new(program)
            .args(&arguments)
            .status()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(status.success(), "{program} {arguments:?}: {status}");
    }
    let bench = [OsStr::new("bench"), library.as_os_str()];
    let runs = ["--runs", "1", "--warmup", "0"].map(OsStr::new);
    succeeds(&[&bench[..], &runs[..]].concat());
    let outcome = fails(&[&bench[..], &runs[..], &[OsStr::new("--profile")]].concat());
    assert_mentions(&outcome, &["libold.so", "`tfjsc_model_step`", "recompile"]);
    assert!(outcome.stdout.is_empty(), "{}", outcome.describe());
    assert_no_repeated_clauses(&[outcome]);
}

/// `--kernel-set` picks a set by the name the library's description gives it: a name it does not
/// have is refused with the names it has; a library of one level has none to pick.
#[test]
fn run_with_an_unknown_kernel_set_lists_the_sets() {
    let (_directory, library) = compiled_fixture("mlp", "libmlp.so");
    let temporary = tempfile::tempdir().unwrap();
    let out = temporary.path().join("out");
    let input = fixture("mlp").join("input_0.npy");
    let run = |library: &Path, set: &str| {
        let extra = [OsStr::new("--kernel-set"), OsStr::new(set)];
        run_mlp_with(library, &input, &out, &extra)
    };
    let outcome = run(&library, "x86-64-v9");
    assert_ne!(outcome.code, Some(0));
    assert_mentions(&outcome, &["x86-64-v9", "x86-64-v3, x86-64-v4"]);
    // The default library needs x86-64-v3 at least (every test here runs it), so its AVX2 set
    // runs on any machine these tests run on.
    let outcome = run(&library, "x86-64-v3");
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    check_against_expected(&out.join("Identity.npy"), "mlp");
    let bench = succeeds(&[
        OsStr::new("bench"),
        library.as_os_str(),
        OsStr::new("--runs"),
        OsStr::new("2"),
        OsStr::new("--kernel-set"),
        OsStr::new("x86-64-v3"),
    ]);
    assert!(
        bench.stdout.contains("kernels x86-64-v3"),
        "{}",
        bench.stdout
    );

    let lean = temporary.path().join("liblean.so");
    succeeds(&[
        OsStr::new("compile"),
        fixture("mlp").join("model.json").as_os_str(),
        OsStr::new("-o"),
        lean.as_os_str(),
        OsStr::new("--cpu"),
        OsStr::new("x86-64-v3"),
    ]);
    let outcome = run(&lean, "x86-64-v3");
    assert_ne!(outcome.code, Some(0));
    assert_mentions(&outcome, &["x86-64-v3", "compiled for one CPU level"]);
}

/// Several libraries run in turn: every one is reported, each after the first with the median
/// and quartiles of its per-round ratio to the first (a library against a copy of itself: some
/// ratio near 1, not a fixed figure); libraries that take other inputs, and `--profile` with
/// more than one, are refused with the reason.
#[test]
fn bench_runs_several_libraries_in_turn() {
    let (_temporary, library) = compiled_fixture("small_cnn", "libsmall_cnn.so");
    let copy = library.with_file_name("libsmall_cnn_copy.so");
    std::fs::copy(&library, &copy).unwrap();
    let runs = ["--runs", "4", "--warmup", "1"].map(OsStr::new);
    let both = [OsStr::new("bench"), library.as_os_str(), copy.as_os_str()];
    let outcome = succeeds(&[&both[..], &runs[..], &[OsStr::new("--json")]].concat());
    let report: Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", outcome.describe()));
    assert_eq!(report["rounds"], 4, "{}", outcome.describe());
    let libraries = report["libraries"].as_array().unwrap();
    assert_eq!(libraries.len(), 2, "{}", outcome.describe());
    assert!(libraries[0]["ratio_to_first"].is_null());
    let ratio = &libraries[1]["ratio_to_first"];
    let quartiles = ["p25", "median", "p75"].map(|q| ratio[q].as_f64().unwrap());
    assert!(quartiles[0] > 0.0 && quartiles[0] <= quartiles[1] && quartiles[1] <= quartiles[2]);
    for (report, path) in libraries.iter().zip([&library, &copy]) {
        assert_eq!(report["library"], path.display().to_string());
        assert!(report["min_ms"].as_f64().unwrap() <= report["median_ms"].as_f64().unwrap());
    }
    let text = succeeds(&[&both[..], &runs[..]].concat());
    for needle in [
        "2 libraries in turn",
        "libsmall_cnn_copy.so",
        "ratio median",
    ] {
        assert!(
            text.stdout.contains(needle),
            "{needle}: {}",
            text.describe()
        );
    }

    let (_other, mlp) = compiled_fixture("mlp", "libmlp.so");
    let mixed = [OsStr::new("bench"), library.as_os_str(), mlp.as_os_str()];
    let outcome = fails(&[&mixed[..], &runs[..]].concat());
    assert_mentions(&outcome, &["libmlp.so", "libsmall_cnn.so", "same inputs"]);
    let outcome = fails(&[&both[..], &runs[..], &[OsStr::new("--profile")]].concat());
    assert_mentions(&outcome, &["--profile", "one library"]);
    assert_no_repeated_clauses(&[outcome]);
}
