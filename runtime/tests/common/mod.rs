//! A hand-made "compiled model" implementing ABI v1 in C, with shard files written by the test.
//!
//! The fake model computes, for x: float32[2,3] and k: int32[3],
//!   y[i][j] = x[i][j] * kernel[i][j] * scale[j] + bias[j] + aligned[j] + quarter[j]
//!   z[j]    = flag[j] ? k[j] + offset[j] : -k[j]
//! Its weights cover every path of the weight store: a float32 weight straddling two files, a
//! float16 bias, a uint8-affine int32 weight, a misaligned float32 weight, an in-place float32
//! weight, a bool weight and a uint16-affine float32 weight. The code returns 2 if a weight pointer
//! is misaligned, 3 if the arena is not aligned to 128, and 7 if x[0] is NaN.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// The kernel: float32 [2,3], stored from stream offset 0 of group 0, straddling files 0 and 1.
pub const KERNEL: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// The bias: stored as float16.
pub const BIAS: [f32; 3] = [0.5, -1.0, 2.0];
/// uint8 q values of `offset`, scale 2, min -3: decoded [-1, 1, 7].
pub const OFFSET_QUANTISED: [u8; 3] = [1, 2, 5];
/// The scale: float32 at the odd offset 33.
pub const SCALE: [f32; 3] = [1.0, 0.5, 2.0];
/// Float32 read in place from group 1.
pub const ALIGNED: [f32; 3] = [10.0, 20.0, 30.0];
/// Bool flags.
pub const FLAG: [u8; 3] = [1, 0, 1];
/// uint16 q values of `quarter`, scale 0.25, min -1: decoded [-1, 0, 1.5].
pub const QUARTER_QUANTISED: [u16; 3] = [0, 4, 10];

/// Shard file names, in `weight_files` order.
pub const SHARDS: [&str; 3] = ["group1-shard1of2", "group1-shard2of2", "group2-shard1of1"];

/// What the fake model should output for inputs x and k.
pub fn expected(x: &[f32; 6], k: &[i32; 3]) -> (Vec<f32>, Vec<i32>) {
    let offset: Vec<i32> = OFFSET_QUANTISED.iter().map(|&q| q as i32 * 2 - 3).collect();
    let quarter: Vec<f32> = QUARTER_QUANTISED
        .iter()
        .map(|&q| q as f32 * 0.25 - 1.0)
        .collect();
    let y = (0..6)
        .map(|index| {
            let column = index % 3;
            x[index] * KERNEL[index] * SCALE[column]
                + BIAS[column]
                + ALIGNED[column]
                + quarter[column]
        })
        .collect();
    let z = (0..3)
        .map(|column| {
            if FLAG[column] != 0 {
                k[column] + offset[column]
            } else {
                -k[column]
            }
        })
        .collect();
    (y, z)
}

/// The bytes of the three shard files.
pub fn shard_bytes() -> [Vec<u8>; 3] {
    let mut group0 = Vec::new();
    group0.extend(KERNEL.iter().flat_map(|value| value.to_le_bytes())); // 0..24
    group0.extend(
        BIAS.iter()
            .flat_map(|&value| half::f16::from_f32(value).to_le_bytes()),
    ); // 24..30
    group0.extend_from_slice(&OFFSET_QUANTISED); // 30..33
    group0.extend(SCALE.iter().flat_map(|value| value.to_le_bytes())); // 33..45
    let file1 = group0.split_off(16);
    let mut group1 = Vec::new();
    group1.extend(ALIGNED.iter().flat_map(|value| value.to_le_bytes())); // 0..12
    group1.extend_from_slice(&FLAG); // 12..15
    group1.push(0); // 15
    group1.extend(
        QUARTER_QUANTISED
            .iter()
            .flat_map(|value| value.to_le_bytes()),
    ); // 16..22
    [group0, file1, group1]
}

/// The description of the fake model for shards in `weights_dir`.
pub fn description(weights_dir: &Path) -> Value {
    let files: Vec<Value> = SHARDS
        .iter()
        .zip(shard_bytes())
        .map(|(name, bytes)| {
            json!({"path": name, "size": bytes.len(), "crc32": crc32fast::hash(&bytes)})
        })
        .collect();
    let weight = |name: &str,
                  dtype: &str,
                  shape: &[usize],
                  group: usize,
                  offset: usize,
                  byte_size: usize,
                  encoding: Value| {
        json!({"name": name, "dtype": dtype, "shape": shape, "group": group, "offset": offset,
               "byte_size": byte_size, "encoding": encoding})
    };
    json!({
        "abi_version": 2,
        "generator": "hand-written test fixture",
        "model": "fake/model.json",
        "weights_dir": weights_dir.to_str().unwrap(),
        "target": "any",
        "inputs": [
            {"name": "x", "dtype": "float32", "shape": [2, 3]},
            {"name": "k", "dtype": "int32", "shape": [3]}
        ],
        "outputs": [
            {"name": "y", "dtype": "float32", "shape": [2, 3]},
            {"name": "z", "dtype": "int32", "shape": [3]}
        ],
        "arena": {"size": 12, "alignment": 128},
        "weight_files": files,
        "weight_groups": [{"files": [0, 1]}, {"files": [2]}],
        "weights": [
            weight("kernel", "float32", &[2, 3], 0, 0, 24, json!({"kind": "float32"})),
            weight("bias", "float32", &[3], 0, 24, 6, json!({"kind": "float16"})),
            weight("offset", "int32", &[3], 0, 30, 3, json!({"kind": "uint8", "scale": 2.0, "min": -3.0})),
            weight("scale", "float32", &[3], 0, 33, 12, json!({"kind": "float32"})),
            weight("aligned", "float32", &[3], 1, 0, 12, json!({"kind": "float32"})),
            weight("flag", "bool", &[3], 1, 12, 3, json!({"kind": "bool"})),
            weight("quarter", "float32", &[3], 1, 16, 6, json!({"kind": "uint16", "scale": 0.25, "min": -1.0})),
        ]
    })
}

/// The C source of the fake model with the given symbol prefix and description.
pub fn c_source(prefix: &str, description: &Value) -> String {
    let json = description
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"#include <stdint.h>
#include <stddef.h>

const char *{prefix}_description(void) {{ return "{json}"; }}

static int misaligned(const void *pointer, size_t alignment) {{
    return ((uintptr_t)pointer % alignment) != 0;
}}

int32_t {prefix}_run(const void *const *weights, const void *const *inputs,
                     void *const *outputs, void *arena, const void *threads) {{
    const float *kernel = weights[0], *bias = weights[1], *scale = weights[3];
    const float *aligned = weights[4], *quarter = weights[6];
    const int32_t *offset = weights[2];
    const unsigned char *flag = weights[5];
    const float *x = inputs[0];
    const int32_t *k = inputs[1];
    float *y = outputs[0];
    int32_t *z = outputs[1];
    float *sum = arena;
    for (int index = 0; index < 7; index++)
        if (index != 5 && misaligned(weights[index], 4)) return 2;
    if (misaligned(arena, 128) || misaligned(x, 4) || misaligned(k, 4)
        || misaligned(y, 4) || misaligned(z, 4)) return 3;
    if (x[0] != x[0]) return 7;
    for (int column = 0; column < 3; column++)
        sum[column] = bias[column] + aligned[column] + quarter[column];
    for (int index = 0; index < 6; index++)
        y[index] = x[index] * kernel[index] * scale[index % 3] + sum[index % 3];
    for (int column = 0; column < 3; column++)
        z[column] = flag[column] ? k[column] + offset[column] : -k[column];
    return 0;
}}
"#
    )
}

/// A built fake model: a shared library plus its shard files, in a temporary directory.
pub struct FakeModel {
    /// Owns the directory; removed on drop.
    pub directory: tempfile::TempDir,
    /// The shared library.
    pub library: PathBuf,
    /// The directory holding the shards.
    pub weights_dir: PathBuf,
}

impl FakeModel {
    /// The standard fake model with prefix `tfjsc_model`.
    pub fn build() -> FakeModel {
        FakeModel::build_with("tfjsc_model", |_| {})
    }

    /// A fake model with another prefix and an edited description.
    pub fn build_with(prefix: &str, edit: impl FnOnce(&mut Value)) -> FakeModel {
        let directory = tempfile::tempdir().unwrap();
        let weights_dir = directory.path().join("weights");
        std::fs::create_dir(&weights_dir).unwrap();
        for (name, bytes) in SHARDS.iter().zip(shard_bytes()) {
            std::fs::write(weights_dir.join(name), bytes).unwrap();
        }
        let mut description = description(&weights_dir);
        edit(&mut description);
        let source = directory.path().join("model.c");
        std::fs::write(&source, c_source(prefix, &description)).unwrap();
        let library = directory.path().join("libmodel.so");
        compile(&[
            "-shared",
            "-fPIC",
            "-O1",
            source.to_str().unwrap(),
            "-o",
            library.to_str().unwrap(),
        ]);
        FakeModel {
            directory,
            library,
            weights_dir,
        }
    }

    /// Path of shard `index`.
    pub fn shard(&self, index: usize) -> PathBuf {
        self.weights_dir.join(SHARDS[index])
    }
}

/// Runs the system C compiler, panicking with its output on failure.
pub fn compile(arguments: &[&str]) {
    let output = Command::new("cc")
        .args(arguments)
        .output()
        .expect("a C compiler `cc` must be installed for these tests");
    assert!(
        output.status.success(),
        "cc {arguments:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The static library cargo built in the same invocation as the tests.
///
/// Cargo compiles the library with all its crate types (rlib, staticlib, cdylib) into
/// `<target>/<profile>/deps/`, the directory of the test executable, and only copies them up to
/// `<target>/<profile>/` (the executable's grandparent) when the library itself is a requested
/// target; so the `deps/` copy is the fresh one and the grandparent is the fallback.
pub fn static_library() -> PathBuf {
    let executable = std::env::current_exe().unwrap();
    let deps = executable
        .parent()
        .expect("the test executable has a directory");
    let candidates = [
        deps.join("libtfjsc_runtime.a"),
        deps.parent()
            .map_or_else(PathBuf::new, |profile| profile.join("libtfjsc_runtime.a")),
    ];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libtfjsc_runtime.a not found at {candidates:?}: run `cargo test -p tfjsc-runtime`"
            )
        })
}

/// The directory of `tfjsc_runtime.h`.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// Standard inputs used by most tests.
pub const X: [f32; 6] = [1.0, -2.0, 0.5, 3.0, 0.0, -1.5];
/// Standard int input.
pub const K: [i32; 3] = [5, -6, 100];

/// Native-endian bytes of float32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_ne_bytes())
        .collect()
}

/// Native-endian bytes of int32 values.
pub fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_ne_bytes())
        .collect()
}
