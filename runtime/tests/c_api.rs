//! The C API (`tfjsc_runtime.h` + `libtfjsc_runtime.a`) and the two `run_model` examples, driven
//! against the fake model.
//!
//! The static library is found next to the test executable: cargo puts tests in
//! `<target>/<profile>/deps/` and the library in `<target>/<profile>/`.

mod common;

#[allow(dead_code)]
#[path = "../examples/run_model.rs"]
mod run_model_example;

use std::path::Path;
use std::process::Command;

use common::{
    compile, expected, f32_bytes, i32_bytes, include_dir, static_library, FakeModel, K, X,
};
use tfjsc_runtime::npy::{read_npy, write_npy};
use tfjsc_runtime::Tensor;

/// Compiles C `sources` against the header and the static runtime into `output`.
fn link_c_program(sources: &[&Path], output: &Path) {
    let include = format!("-I{}", include_dir().display());
    let library = static_library();
    let mut arguments: Vec<&str> = vec!["-O1", "-Wall", "-Werror", &include];
    arguments.extend(sources.iter().map(|source| source.to_str().unwrap()));
    arguments.extend([
        library.to_str().unwrap(),
        "-lpthread",
        "-ldl",
        "-lm",
        "-o",
        output.to_str().unwrap(),
    ]);
    compile(&arguments);
}

fn run_program(program: &Path, arguments: &[&Path]) -> (bool, String, String) {
    let output = Command::new(program).args(arguments).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn formatted<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn c_program_opens_runs_and_reports_errors() {
    let fake = FakeModel::build();
    let directory = fake.directory.path();
    let linked_source = directory.join("linked_model.c");
    let description = common::description(&fake.weights_dir);
    std::fs::write(
        &linked_source,
        common::c_source("linked_model", &description),
    )
    .unwrap();
    let test_source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/capi_test.c");
    let program = directory.join("capi_test");
    link_c_program(&[&test_source, &linked_source], &program);

    let (success, stdout, stderr) = run_program(&program, &[&fake.library, &fake.weights_dir]);
    assert!(success, "capi_test failed:\n{stdout}\n{stderr}");
    let (y, z) = expected(&X, &K);
    // C's %g prints these exactly: every expected value is a short binary fraction.
    for label in ["shared", "static"] {
        let expected_lines = [
            format!("{label} input 0 x dtype=1 rank=2 dims=2,3 bytes=24"),
            format!("{label} input 1 k dtype=2 rank=1 dims=3 bytes=12"),
            format!("{label} output 0 y dtype=1 rank=2 bytes=24"),
            format!("{label} output 1 z dtype=2 rank=1 bytes=12"),
            format!("{label} y {}", formatted(&y)),
            format!("{label} z {}", formatted(&z)),
            format!(
                "{label} failing run: status=-1 error=the compiled model's run function returned 7"
            ),
            format!("{label} null input: status=-1 error=input `k` is a null pointer"),
        ];
        for line in expected_lines {
            assert!(
                stdout.lines().any(|printed| printed == line),
                "missing `{line}` in:\n{stdout}"
            );
        }
    }
    assert!(
        stdout.contains(
            "missing library: NULL cannot open compiled model library /nonexistent/libmodel.so"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("wrong prefix: NULL compiled model library")
            && stdout.contains("no symbol `nope_description`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("truncated error: NULL [cannot ]"),
        "{stdout}"
    );
}

#[test]
fn c_example_writes_output_zero() {
    let fake = FakeModel::build();
    let directory = fake.directory.path();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/examples/run_model.c");
    let program = directory.join("run_model");
    link_c_program(&[&source], &program);

    let x_path = directory.join("x.bin");
    let k_path = directory.join("k.bin");
    let y_path = directory.join("y.bin");
    std::fs::write(&x_path, f32_bytes(&X)).unwrap();
    std::fs::write(&k_path, i32_bytes(&K)).unwrap();
    let (success, stdout, stderr) = run_program(
        &program,
        &[&fake.library, &fake.weights_dir, &x_path, &k_path, &y_path],
    );
    assert!(success, "run_model failed:\n{stdout}\n{stderr}");
    assert_eq!(
        std::fs::read(&y_path).unwrap(),
        f32_bytes(&expected(&X, &K).0)
    );

    // "-": the weights directory recorded in the description.
    std::fs::remove_file(&y_path).unwrap();
    let dash = Path::new("-");
    let (success, _, stderr) =
        run_program(&program, &[&fake.library, dash, &x_path, &k_path, &y_path]);
    assert!(success, "{stderr}");
    assert_eq!(
        std::fs::read(&y_path).unwrap(),
        f32_bytes(&expected(&X, &K).0)
    );

    // A bare library name means the current directory, not the system library path.
    let output = Command::new(&program)
        .current_dir(directory)
        .args(["libmodel.so", "weights", "x.bin", "k.bin", "y2.bin"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(directory.join("y2.bin")).unwrap(),
        f32_bytes(&expected(&X, &K).0)
    );

    std::fs::write(&x_path, [0u8; 7]).unwrap();
    let (success, _, stderr) = run_program(
        &program,
        &[&fake.library, &fake.weights_dir, &x_path, &k_path, &y_path],
    );
    assert!(!success);
    assert!(stderr.contains("must hold exactly 24 bytes"), "{stderr}");
}

#[test]
fn rust_example_reads_and_writes_npy() {
    let fake = FakeModel::build();
    let directory = fake.directory.path();
    let x_path = directory.join("x.npy");
    let k_path = directory.join("k.npy");
    let y_path = directory.join("y.npy");
    write_npy(&x_path, &Tensor::from_f32(&[2, 3], &X).unwrap()).unwrap();
    write_npy(&k_path, &Tensor::from_i32(&[3], &K).unwrap()).unwrap();
    let arguments: Vec<String> = [&fake.library, &x_path, &k_path, &y_path]
        .iter()
        .map(|path| path.to_str().unwrap().to_string())
        .collect();
    let summary = run_model_example::run(&arguments).unwrap();
    assert!(summary.ends_with("output `y`, float32 [2, 3]"), "{summary}");
    let y = read_npy(&y_path).unwrap();
    assert_eq!(y.shape, vec![2, 3]);
    assert_eq!(y.to_f32().unwrap(), expected(&X, &K).0);

    let error = run_model_example::run(&arguments[..3]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the model has 2 inputs, 1 were given"),
        "{error}"
    );
}
