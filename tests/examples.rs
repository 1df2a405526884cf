//! The examples in `tests/examples/` and `runtime/examples/`, run against real compiled fixture
//! models:
//!
//! - `run_model.c`: a compiled shared library opened through the C API (`tfjsc_model_open`);
//! - `static_model.c`: a compiled OBJECT file linked into the program with `libtfjsc_runtime.a`
//!   and opened with `tfjsc_model_open_static`;
//! - `runtime/examples/run_model.rs`: the safe Rust API on `.npy` files;
//! - a model compiled with `--symbol-prefix`, opened with `tfjsc_model_open_with_prefix`, and two
//!   prefixed models linked statically into one program.
//!
//! Every result is compared with TensorFlow's output within 1e-4 × max |expected| (see
//! `tests/models.rs` for why not exactly). Needs a C compiler `cc`.
//!
//! `libtfjsc_runtime.a` is found as `runtime/tests/c_api.rs` finds it: cargo builds the runtime's
//! crate types (rlib, staticlib, cdylib) into `<target>/<profile>/deps/`, next to this test
//! executable, and copies them up to `<target>/<profile>/` only when the runtime is itself a
//! requested target.

mod common;

#[allow(dead_code)]
#[path = "../runtime/examples/run_model.rs"]
mod run_model_example;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tfjsc_runtime::npy::read_npy;

const TOLERANCE: f32 = 1e-4;
const MLP: &str = "mlp";
const MOBILENET: &str = "mobilenet_v2_035_96";

fn fixture(name: &str) -> PathBuf {
    common::fixtures().join(name)
}

/// The static runtime library built in the same cargo invocation.
fn static_library() -> PathBuf {
    let executable = std::env::current_exe().unwrap();
    let deps = executable
        .parent()
        .expect("the test executable has a directory");
    let candidates = [
        deps.join("libtfjsc_runtime.a"),
        deps.parent()
            .map_or_else(PathBuf::new, |profile| profile.join("libtfjsc_runtime.a")),
    ];
    candidates.iter().find(|path| path.is_file()).cloned().unwrap_or_else(|| {
        panic!("libtfjsc_runtime.a not found at {candidates:?}: run `cargo test -p tfjsc-runtime` or `cargo build -p tfjsc-runtime`")
    })
}

fn include_dir() -> PathBuf {
    common::repository().join("runtime/include")
}

fn examples_dir() -> PathBuf {
    common::repository().join("tests/examples")
}

/// Compiles and links a C program: `sources` (C files and objects) + the static runtime.
fn link_c_program(sources: &[&Path], include_dirs: &[&Path], output: &Path) {
    let mut command = Command::new("cc");
    command.args(["-O1", "-Wall", "-Wextra", "-Werror"]);
    command.arg(format!("-I{}", include_dir().display()));
    for directory in include_dirs {
        command.arg(format!("-I{}", directory.display()));
    }
    command
        .args(sources)
        .arg(static_library())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(output);
    let result = command
        .output()
        .expect("a C compiler `cc` must be installed for these tests");
    assert!(
        result.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run_program(program: &Path, arguments: &[&Path]) -> Outcome {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let outcome = Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        output.status.code().is_some(),
        "{} was killed by a signal:\n{}",
        program.display(),
        outcome.stderr
    );
    assert!(
        !outcome.stderr.contains("panicked"),
        "{} panicked:\n{}",
        program.display(),
        outcome.stderr
    );
    outcome
}

/// Runs the `tfjsc` binary, which must succeed.
fn tfjsc(arguments: &[&OsStr]) {
    let output = Command::new(env!("CARGO_BIN_EXE_tfjsc"))
        .args(arguments)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tfjsc {arguments:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes the fixture's input 0 as raw little-endian bytes, returning the path.
fn raw_input(fixture_name: &str, directory: &Path) -> PathBuf {
    let tensor = read_npy(&fixture(fixture_name).join("input_0.npy")).unwrap();
    assert_eq!(
        tensor.dtype.name(),
        "float32",
        "{fixture_name}: input_0.npy"
    );
    let path = directory.join(format!("{fixture_name}_input.bin"));
    std::fs::write(&path, &tensor.data).unwrap();
    path
}

/// Compares raw little-endian float32 output bytes with the fixture's expected_0.npy.
fn check_raw_output(fixture_name: &str, output: &Path) {
    let bytes =
        std::fs::read(output).unwrap_or_else(|e| panic!("reading {}: {e}", output.display()));
    assert_eq!(
        bytes.len() % 4,
        0,
        "{}: {} bytes",
        output.display(),
        bytes.len()
    );
    let actual: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let expected =
        common::as_f32(&read_npy(&fixture(fixture_name).join("expected_0.npy")).unwrap());
    assert_eq!(
        actual.len(),
        expected.len(),
        "{fixture_name}: output element count"
    );
    let error = common::relative_error(&actual, &expected);
    eprintln!(
        "{fixture_name}: {}: relative error {error:.3e}",
        output.display()
    );
    assert!(
        error <= TOLERANCE,
        "{fixture_name}: {} differs from TensorFlow by {error:.3e} (tolerance {TOLERANCE:e})",
        output.display()
    );
}

// ------------------------------------------------------------------------------------------------
// (a) run_model.c on compiled shared libraries

#[test]
fn c_example_runs_compiled_libraries() {
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path();
    let program = directory.join("run_model");
    link_c_program(&[&examples_dir().join("run_model.c")], &[], &program);

    for name in [MLP, MOBILENET] {
        let library = common::compile_model(
            &fixture(name).join("model.json"),
            directory,
            &format!("lib{name}.so"),
        );
        assert!(
            directory.join(format!("lib{name}.h")).is_file(),
            "no header beside {}",
            library.display()
        );
        let input = raw_input(name, directory);
        let output = directory.join(format!("{name}_output.bin"));
        let outcome = run_program(&program, &[&library, &fixture(name), &input, &output]);
        assert!(
            outcome.success,
            "run_model on {name} failed:\n{}{}",
            outcome.stdout, outcome.stderr
        );
        assert!(
            outcome.stdout.contains("of output `Identity`"),
            "{}",
            outcome.stdout
        );
        check_raw_output(name, &output);

        // On three threads (tfjsc_context_set_threads): the same bytes.
        let threaded = directory.join(format!("{name}_threaded.bin"));
        let outcome = run_program(
            &program,
            &[
                Path::new("--threads"),
                Path::new("3"),
                &library,
                &fixture(name),
                &input,
                &threaded,
            ],
        );
        assert!(outcome.success, "{name} on 3 threads:\n{}", outcome.stderr);
        assert_eq!(
            std::fs::read(&threaded).unwrap(),
            std::fs::read(&output).unwrap(),
            "{name}: 3 threads differ from 1"
        );

        // "-": the weights directory recorded at compile time (the fixture directory).
        std::fs::remove_file(&output).unwrap();
        let outcome = run_program(&program, &[&library, Path::new("-"), &input, &output]);
        assert!(
            outcome.success,
            "run_model {name} with `-`:\n{}",
            outcome.stderr
        );
        check_raw_output(name, &output);
    }

    // An input of the wrong size is refused, naming the file and the size.
    let library = directory.join(format!("lib{MLP}.so"));
    let short = directory.join("short.bin");
    std::fs::write(&short, [0u8; 10]).unwrap();
    let outcome = run_program(
        &program,
        &[
            &library,
            &fixture(MLP),
            &short,
            &directory.join("never.bin"),
        ],
    );
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("short.bin") && outcome.stderr.contains("256 bytes"),
        "{}",
        outcome.stderr
    );
    assert!(!directory.join("never.bin").exists());

    // No threads at all: refused with the reason.
    let input = raw_input(MLP, directory);
    let outcome = run_program(
        &program,
        &[
            Path::new("--threads"),
            Path::new("0"),
            &library,
            &fixture(MLP),
            &input,
            &directory.join("never.bin"),
        ],
    );
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("at least one"),
        "{}",
        outcome.stderr
    );
    assert!(!directory.join("never.bin").exists());

    // Weights from a directory without the shards: the runtime names the missing shard.
    let empty = tempfile::tempdir().unwrap();
    let input = raw_input(MLP, directory);
    let outcome = run_program(
        &program,
        &[&library, empty.path(), &input, &directory.join("never.bin")],
    );
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("group1-shard1of1.bin"),
        "{}",
        outcome.stderr
    );
}

// ------------------------------------------------------------------------------------------------
// (b) static_model.c linked with the compiled object file

#[test]
fn static_example_links_model_objects() {
    let temporary = tempfile::tempdir().unwrap();
    for name in [MLP, MOBILENET] {
        let directory = temporary.path().join(name);
        std::fs::create_dir(&directory).unwrap();
        let object =
            common::compile_model(&fixture(name).join("model.json"), &directory, "model.o");
        assert!(
            directory.join("model.h").is_file(),
            "`compile -o model.o` must write model.h"
        );
        let program = directory.join("static_model");
        link_c_program(
            &[&examples_dir().join("static_model.c"), &object],
            &[&directory],
            &program,
        );

        let input = raw_input(name, &directory);
        let output = directory.join("output.bin");
        let outcome = run_program(&program, &[&fixture(name), &input, &output]);
        assert!(
            outcome.success,
            "static_model for {name} failed:\n{}{}",
            outcome.stdout, outcome.stderr
        );
        assert!(
            outcome.stdout.contains("of output `Identity`"),
            "{}",
            outcome.stdout
        );
        check_raw_output(name, &output);

        std::fs::remove_file(&output).unwrap();
        let outcome = run_program(&program, &[Path::new("-"), &input, &output]);
        assert!(
            outcome.success,
            "static_model {name} with `-`:\n{}",
            outcome.stderr
        );
        check_raw_output(name, &output);

        // The weights are still checked: a directory without shards is refused by name.
        let empty = tempfile::tempdir().unwrap();
        let never = directory.join("never.bin");
        let outcome = run_program(&program, &[empty.path(), &input, &never]);
        assert!(!outcome.success, "static_model ran without its shards");
        assert!(
            outcome.stderr.contains("group1-shard1of"),
            "{}",
            outcome.stderr
        );
        assert!(!never.exists());

        // Usage errors.
        let outcome = run_program(&program, &[&fixture(name)]);
        assert!(!outcome.success);
        assert!(
            outcome.stderr.contains("usage: static_model"),
            "{}",
            outcome.stderr
        );
    }
}

// ------------------------------------------------------------------------------------------------
// (c) the Rust example

#[test]
fn rust_example_runs_compiled_mlp_on_npy_files() {
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path();
    let library = common::compile_model(&fixture(MLP).join("model.json"), directory, "libmlp.so");
    let output = directory.join("output.npy");
    let arguments: Vec<String> = [&library, &fixture(MLP).join("input_0.npy"), &output]
        .iter()
        .map(|path| path.to_str().unwrap().to_string())
        .collect();
    let summary =
        run_model_example::run(&arguments).unwrap_or_else(|e| panic!("run_model.rs: {e}"));
    assert!(
        summary.ends_with("output `Identity`, float32 [1, 10]"),
        "{summary}"
    );

    let result = read_npy(&output).unwrap();
    let expected = read_npy(&fixture(MLP).join("expected_0.npy")).unwrap();
    assert_eq!(result.shape, expected.shape);
    let error = common::relative_error(&common::as_f32(&result), &common::as_f32(&expected));
    assert!(
        error <= TOLERANCE,
        "run_model.rs output differs from TensorFlow by {error:.3e}"
    );

    // Errors come back as values: too few arguments, a wrong input.
    let error = run_model_example::run(&arguments[..2]).unwrap_err();
    assert!(error.to_string().contains("usage: run_model"), "{error}");
    let error = run_model_example::run(&[
        arguments[0].clone(),
        arguments[2].clone() + ".missing",
        arguments[2].clone(),
    ])
    .unwrap_err();
    assert!(error.to_string().contains("output.npy.missing"), "{error}");
}

// ------------------------------------------------------------------------------------------------
// (d) --symbol-prefix

/// Opens LIBRARY with tfjsc_model_open_with_prefix(LIBRARY, PREFIX, WEIGHTS_DIR) and writes output
/// 0's raw bytes: `prefixed LIBRARY PREFIX WEIGHTS_DIR IN.bin OUT.bin`.
const PREFIXED_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include "tfjsc_runtime.h"

int main(int argc, char **argv) {
    char error[1024];
    if (argc != 6) { fprintf(stderr, "usage: prefixed LIBRARY PREFIX WEIGHTS_DIR IN.bin OUT.bin\n"); return 2; }
    tfjsc_model *model = tfjsc_model_open_with_prefix(argv[1], argv[2], argv[3], error, sizeof error);
    if (!model) { fprintf(stderr, "prefixed: %s\n", error); return 1; }
    if (tfjsc_model_input_count(model) != 1) { fprintf(stderr, "prefixed: one input expected\n"); return 1; }
    size_t in_size = tfjsc_model_input_byte_size(model, 0), out_size = tfjsc_model_output_byte_size(model, 0);
    void *input = malloc(in_size), *output = malloc(out_size);
    FILE *file = fopen(argv[4], "rb");
    if (!file || fread(input, 1, in_size, file) != in_size) { fprintf(stderr, "prefixed: cannot read %s\n", argv[4]); return 1; }
    fclose(file);
    tfjsc_context *context = tfjsc_context_new(model, error, sizeof error);
    const void *inputs[1] = {input};
    void *outputs[1] = {output};
    if (!context || tfjsc_context_run(context, inputs, outputs, error, sizeof error) != 0) {
        fprintf(stderr, "prefixed: %s\n", error);
        return 1;
    }
    file = fopen(argv[5], "wb");
    if (!file || fwrite(output, 1, out_size, file) != out_size || fclose(file) != 0) return 1;
    printf("output %s\n", tfjsc_model_output_name(model, 0));
    tfjsc_context_free(context);
    tfjsc_model_close(model);
    free(input);
    free(output);
    return 0;
}
"#;

#[test]
fn prefixed_library_opens_with_its_prefix() {
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path();
    let library = directory.join("libmymodel.so");
    let model = fixture(MLP).join("model.json");
    tfjsc(&[
        OsStr::new("compile"),
        model.as_os_str(),
        OsStr::new("-o"),
        library.as_os_str(),
        OsStr::new("--symbol-prefix"),
        OsStr::new("mymodel"),
    ]);
    let header = std::fs::read_to_string(directory.join("libmymodel.h")).unwrap();
    assert!(
        header.contains("mymodel_description(void)") && header.contains("mymodel_run("),
        "{header}"
    );
    assert!(!header.contains("tfjsc_model_run"), "{header}");

    let source = directory.join("prefixed.c");
    std::fs::write(&source, PREFIXED_C).unwrap();
    let program = directory.join("prefixed");
    link_c_program(&[&source], &[], &program);
    let input = raw_input(MLP, directory);
    let output = directory.join("output.bin");
    let mymodel = Path::new("mymodel");
    let outcome = run_program(
        &program,
        &[&library, mymodel, &fixture(MLP), &input, &output],
    );
    assert!(
        outcome.success,
        "tfjsc_model_open_with_prefix failed:\n{}",
        outcome.stderr
    );
    assert_eq!(outcome.stdout.trim(), "output Identity");
    check_raw_output(MLP, &output);

    // Another prefix: refused, naming the symbol it looked for.
    let outcome = run_program(
        &program,
        &[&library, Path::new("other"), &fixture(MLP), &input, &output],
    );
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("`other_description`"),
        "{}",
        outcome.stderr
    );

    // The unprefixed entry point (run_model.c) does not find the default symbols, and says why.
    let run_model = directory.join("run_model");
    link_c_program(&[&examples_dir().join("run_model.c")], &[], &run_model);
    let outcome = run_program(&run_model, &[&library, &fixture(MLP), &input, &output]);
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("`tfjsc_model_description`")
            && outcome.stderr.contains("--symbol-prefix"),
        "{}",
        outcome.stderr
    );

    // The safe Rust API with the same prefix.
    let model =
        tfjsc_runtime::Model::load_with_prefix(&library, "mymodel", Some(&fixture(MLP))).unwrap();
    let inputs = [read_npy(&fixture(MLP).join("input_0.npy")).unwrap()];
    let outputs = model.new_context().unwrap().run_tensors(&inputs).unwrap();
    let expected = read_npy(&fixture(MLP).join("expected_0.npy")).unwrap();
    assert!(
        common::relative_error(&common::as_f32(&outputs[0]), &common::as_f32(&expected))
            <= TOLERANCE
    );
}

/// Two prefixed model objects linked statically into one program.
const TWO_MODELS_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include "tfjsc_runtime.h"
#include "mlp.h"
#include "mobilenet.h"

static int run(const char *label, tfjsc_model *model, const char *in_path, const char *out_path) {
    char error[1024];
    size_t in_size = tfjsc_model_input_byte_size(model, 0), out_size = tfjsc_model_output_byte_size(model, 0);
    void *input = malloc(in_size), *output = malloc(out_size);
    FILE *file = fopen(in_path, "rb");
    if (!file || fread(input, 1, in_size, file) != in_size) { fprintf(stderr, "%s: cannot read %s\n", label, in_path); return 1; }
    fclose(file);
    tfjsc_context *context = tfjsc_context_new(model, error, sizeof error);
    const void *inputs[1] = {input};
    void *outputs[1] = {output};
    if (!context || tfjsc_context_run(context, inputs, outputs, error, sizeof error) != 0) {
        fprintf(stderr, "%s: %s\n", label, error);
        return 1;
    }
    file = fopen(out_path, "wb");
    if (!file || fwrite(output, 1, out_size, file) != out_size || fclose(file) != 0) return 1;
    tfjsc_context_free(context);
    free(input);
    free(output);
    return 0;
}

int main(int argc, char **argv) {
    char error[1024];
    if (argc != 7) { fprintf(stderr, "usage: two MLP_DIR MLP_IN MLP_OUT MOBILENET_DIR MOBILENET_IN MOBILENET_OUT\n"); return 2; }
    tfjsc_model *mlp = tfjsc_model_open_static(mlp_description(), mlp_run, argv[1], error, sizeof error);
    if (!mlp) { fprintf(stderr, "mlp: %s\n", error); return 1; }
    tfjsc_model *mobilenet = tfjsc_model_open_static(mobilenet_description(), mobilenet_run, argv[4], error, sizeof error);
    if (!mobilenet) { fprintf(stderr, "mobilenet: %s\n", error); return 1; }
    if (MLP_INPUT_COUNT != 1 || MOBILENET_INPUT_COUNT != 1) return 1;
    int status = run("mlp", mlp, argv[2], argv[3]) || run("mobilenet", mobilenet, argv[5], argv[6]);
    tfjsc_model_close(mlp);
    tfjsc_model_close(mobilenet);
    return status;
}
"#;

#[test]
fn two_prefixed_objects_link_into_one_program() {
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path();
    for (name, prefix) in [(MLP, "mlp"), (MOBILENET, "mobilenet")] {
        let object = directory.join(format!("{prefix}.o"));
        let model = fixture(name).join("model.json");
        tfjsc(&[
            OsStr::new("compile"),
            model.as_os_str(),
            OsStr::new("-o"),
            object.as_os_str(),
            OsStr::new("--symbol-prefix"),
            OsStr::new(prefix),
        ]);
    }
    let source = directory.join("two.c");
    std::fs::write(&source, TWO_MODELS_C).unwrap();
    let program = directory.join("two");
    link_c_program(
        &[
            &source,
            &directory.join("mlp.o"),
            &directory.join("mobilenet.o"),
        ],
        &[directory],
        &program,
    );
    let mlp_in = raw_input(MLP, directory);
    let mobilenet_in = raw_input(MOBILENET, directory);
    let mlp_out = directory.join("mlp_out.bin");
    let mobilenet_out = directory.join("mobilenet_out.bin");
    let outcome = run_program(
        &program,
        &[
            &fixture(MLP),
            &mlp_in,
            &mlp_out,
            &fixture(MOBILENET),
            &mobilenet_in,
            &mobilenet_out,
        ],
    );
    assert!(
        outcome.success,
        "two statically linked models:\n{}",
        outcome.stderr
    );
    check_raw_output(MLP, &mlp_out);
    check_raw_output(MOBILENET, &mobilenet_out);
}

/// A model object compiled with `--checked`, linked statically and opened with
/// `tfjsc_model_open_static_checked` and copied weights: runs kernel by kernel, red zones
/// verified, and gives TensorFlow's answer.
const CHECKED_STATIC_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include "tfjsc_runtime.h"
#include "mlp.h"

int main(int argc, char **argv) {
    char error[1024];
    if (argc != 4) { fprintf(stderr, "usage: checked MLP_DIR IN OUT\n"); return 2; }
    tfjsc_model *model = tfjsc_model_open_static_checked(mlp_description(), mlp_run, mlp_step,
                                                         argv[1], TFJSC_LOAD_COPY_WEIGHTS,
                                                         error, sizeof error);
    if (!model) { fprintf(stderr, "open: %s\n", error); return 1; }
    if (tfjsc_model_open_static(mlp_description(), mlp_run, argv[1], error, sizeof error)) {
        fprintf(stderr, "a checked model opened without its step function\n");
        return 1;
    }
    size_t in_size = tfjsc_model_input_byte_size(model, 0), out_size = tfjsc_model_output_byte_size(model, 0);
    void *input = malloc(in_size), *output = malloc(out_size);
    FILE *file = fopen(argv[2], "rb");
    if (!file || fread(input, 1, in_size, file) != in_size) return 1;
    fclose(file);
    tfjsc_context *context = tfjsc_context_new(model, error, sizeof error);
    const void *inputs[1] = {input};
    void *outputs[1] = {output};
    if (!context || tfjsc_context_run(context, inputs, outputs, error, sizeof error) != 0) {
        fprintf(stderr, "run: %s\n", error);
        return 1;
    }
    file = fopen(argv[3], "wb");
    if (!file || fwrite(output, 1, out_size, file) != out_size || fclose(file) != 0) return 1;
    tfjsc_context_free(context);
    tfjsc_model_close(model);
    free(input);
    free(output);
    return 0;
}
"#;

#[test]
fn checked_object_links_statically_with_copied_weights() {
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path();
    let object = directory.join("mlp.o");
    let model = fixture(MLP).join("model.json");
    tfjsc(&[
        OsStr::new("compile"),
        model.as_os_str(),
        OsStr::new("-o"),
        object.as_os_str(),
        OsStr::new("--symbol-prefix"),
        OsStr::new("mlp"),
        OsStr::new("--checked"),
    ]);
    let source = directory.join("checked.c");
    std::fs::write(&source, CHECKED_STATIC_C).unwrap();
    let program = directory.join("checked");
    link_c_program(&[&source, &object], &[directory], &program);
    let input = raw_input(MLP, directory);
    let output = directory.join("out.bin");
    let outcome = run_program(&program, &[&fixture(MLP), &input, &output]);
    assert!(outcome.success, "checked static model:\n{}", outcome.stderr);
    check_raw_output(MLP, &output);
}
