//! Hostile model folders and inputs, tried as an attacker would: a model folder comes from the
//! internet, so nothing it names may be opened outside it, nothing in it may hang the tool or
//! exhaust memory, and no input byte may make the compiled code disagree with itself.
//!
//! Every command here runs under a deadline ([`DEADLINE`]): a hang (a FIFO opened for reading, or
//! `/dev/zero` read to the end) fails the test instead of blocking the suite.

mod common;

use std::ffi::{CStr, OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tfjsc_runtime::{LoadOptions, Model, Tensor, WeightLoading};

/// Far more than any of these commands needs when it refuses at once (milliseconds), far less
/// than a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// What a `tfjsc` invocation did.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    command: String,
}

/// Runs `tfjsc` with `arguments`, killing it at the deadline; a hang, a signal or a panic fails.
fn tfjsc<S: AsRef<OsStr>>(arguments: &[S]) -> Outcome {
    let command: Vec<OsString> = arguments.iter().map(|a| a.as_ref().to_owned()).collect();
    let described = format!("tfjsc {}", command.join(OsStr::new(" ")).to_string_lossy());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tfjsc"))
        .args(&command)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`{described}` hung: killed after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let outcome = Outcome {
        code: status.code(),
        stderr,
        command: described,
    };
    assert!(
        outcome.code.is_some(),
        "killed by a signal: {}",
        outcome.describe()
    );
    assert!(
        !outcome.stderr.contains("panicked") && outcome.code != Some(101),
        "panicked: {}",
        outcome.describe()
    );
    outcome
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n{}",
            self.command, self.code, self.stderr
        )
    }

    /// Asserts a failure whose message mentions every one of `needles`.
    fn refused(&self, needles: &[&str]) {
        assert_ne!(
            self.code,
            Some(0),
            "expected a failure: {}",
            self.describe()
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr does not mention {needle:?}: {}",
                self.describe()
            );
        }
    }
}

/// A copy of the MLP fixture in `model/` of a new temporary directory: (the directory, the
/// model folder).
fn mlp_copy() -> (tempfile::TempDir, PathBuf) {
    let temporary = tempfile::tempdir().unwrap();
    let folder = temporary.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    for name in ["model.json", "group1-shard1of1.bin", "input_0.npy"] {
        std::fs::copy(common::fixtures().join("mlp").join(name), folder.join(name)).unwrap();
    }
    (temporary, folder)
}

fn edit_model_json(folder: &Path, edit: impl FnOnce(&mut Value)) {
    let path = folder.join("model.json");
    let mut model: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut model);
    std::fs::write(&path, serde_json::to_vec(&model).unwrap()).unwrap();
}

fn set_shard_path(folder: &Path, shard: &str) {
    edit_model_json(folder, |model| {
        model["weightsManifest"][0]["paths"][0] = Value::from(shard);
    });
}

fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn compile(model: &Path, output: &Path) -> Outcome {
    tfjsc(&[
        OsStr::new("compile"),
        model.as_os_str(),
        OsStr::new("-o"),
        output.as_os_str(),
    ])
}

fn inspect(model: &Path) -> Outcome {
    tfjsc(&[OsStr::new("inspect"), model.as_os_str()])
}

fn run(library: &Path, input: &Path, out: &Path) -> Outcome {
    let input = format!("input={}", input.display());
    tfjsc(&[
        OsStr::new("run"),
        library.as_os_str(),
        OsStr::new("--input"),
        OsStr::new(&input),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
}

/// The hostile shard names, each with what the refusal must say. `root` holds the model folder
/// `model/`, a FIFO `outside.fifo` beside it and a file `secret` beside it.
fn hostile_names(root: &Path) -> Vec<(String, &'static str)> {
    let outside_fifo = root.join("outside.fifo");
    vec![
        (outside_fifo.display().to_string(), "absolute"),
        ("../outside.fifo".to_string(), "outside the model's folder"),
        ("/dev/zero".to_string(), "absolute"),
        (
            "../../../../../../../../../../dev/zero".to_string(),
            "outside the model's folder",
        ),
        ("../secret".to_string(), "outside the model's folder"),
        ("link-to-secret".to_string(), "symbolic link"),
        ("link-to-zero".to_string(), "symbolic link"),
        ("inside.fifo".to_string(), "FIFO"),
        ("subfolder".to_string(), "directory"),
        ("".to_string(), "empty"),
    ]
}

fn prepare_hostile_root(root: &Path, folder: &Path) {
    make_fifo(&root.join("outside.fifo"));
    make_fifo(&folder.join("inside.fifo"));
    std::fs::write(root.join("secret"), vec![7u8; 131_368]).unwrap();
    std::os::unix::fs::symlink(root.join("secret"), folder.join("link-to-secret")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", folder.join("link-to-zero")).unwrap();
    std::fs::create_dir(folder.join("subfolder")).unwrap();
}

#[test]
fn compile_and_inspect_refuse_shard_names_outside_the_folder_at_once() {
    let (temporary, folder) = mlp_copy();
    let root = temporary.path();
    prepare_hostile_root(root, &folder);
    for (name, reason) in hostile_names(root) {
        set_shard_path(&folder, &name);
        let model = folder.join("model.json");
        let started = Instant::now();
        let outcome = compile(&model, &root.join("libmodel.so"));
        outcome.refused(&[&format!("weight shard {name:?}"), "refused", reason]);
        inspect(&model).refused(&[&format!("weight shard {name:?}"), "refused", reason]);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name:?}: refusing took {:?}",
            started.elapsed()
        );
    }
    assert!(!root.join("libmodel.so").exists());
}

#[test]
fn the_legacy_manifest_must_be_a_regular_file_inside_the_folder() {
    let (temporary, folder) = mlp_copy();
    let legacy = folder.join("legacy");
    std::fs::create_dir(&legacy).unwrap();
    std::fs::copy(
        common::fixtures().join("mlp/legacy/web_model.pb"),
        legacy.join("web_model.pb"),
    )
    .unwrap();
    make_fifo(&temporary.path().join("manifest.fifo"));
    std::os::unix::fs::symlink(
        temporary.path().join("manifest.fifo"),
        legacy.join("weights_manifest.json"),
    )
    .unwrap();
    let outcome = compile(
        &legacy.join("web_model.pb"),
        &temporary.path().join("libm.so"),
    );
    outcome.refused(&["weights_manifest.json", "symbolic link"]);
    std::fs::remove_file(legacy.join("weights_manifest.json")).unwrap();
    make_fifo(&legacy.join("weights_manifest.json"));
    let outcome = compile(
        &legacy.join("web_model.pb"),
        &temporary.path().join("libm.so"),
    );
    outcome.refused(&["weights_manifest.json", "FIFO"]);
}

#[test]
fn a_model_file_that_is_a_fifo_or_a_device_is_refused() {
    let temporary = tempfile::tempdir().unwrap();
    let fifo = temporary.path().join("model.json");
    make_fifo(&fifo);
    compile(&fifo, &temporary.path().join("libm.so")).refused(&["model.json", "FIFO"]);
    inspect(&fifo).refused(&["model.json", "FIFO"]);
    inspect(Path::new("/dev/zero")).refused(&["/dev/zero", "character device"]);
}

#[test]
fn a_shard_far_larger_than_the_manifest_says_is_refused_without_being_read() {
    let (temporary, folder) = mlp_copy();
    // A sparse file of 1 TiB: reading it would take minutes and all memory.
    let shard = std::fs::OpenOptions::new()
        .write(true)
        .open(folder.join("group1-shard1of1.bin"))
        .unwrap();
    shard.set_len(1 << 40).unwrap();
    let started = Instant::now();
    compile(
        &folder.join("model.json"),
        &temporary.path().join("libm.so"),
    )
    .refused(&["group1-shard1of1.bin", "131368", &(1u64 << 40).to_string()]);
    inspect(&folder.join("model.json")).refused(&["group1-shard1of1.bin", "131368"]);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Replaces every occurrence of `from` by `to` (same length) in a file's bytes.
fn patch_bytes(path: &Path, from: &str, to: &str) {
    assert_eq!(
        from.len(),
        to.len(),
        "patch {to:?} must keep the length of {from:?}"
    );
    let mut bytes = std::fs::read(path).unwrap();
    let mut count = 0;
    let mut position = 0;
    while let Some(offset) = bytes[position..]
        .windows(from.len())
        .position(|window| window == from.as_bytes())
    {
        let start = position + offset;
        bytes[start..start + from.len()].copy_from_slice(to.as_bytes());
        position = start + from.len();
        count += 1;
    }
    assert!(count > 0, "{from:?} not found in {}", path.display());
    std::fs::write(path, bytes).unwrap();
}

/// `name` lengthened to `length` bytes with `./` components, which do not change where it leads.
fn padded(name: &str, length: usize) -> String {
    let (root, rest) = match name.strip_prefix('/') {
        Some(rest) => ("/", rest),
        None => ("", name),
    };
    let padding = length - name.len();
    assert!(padding.is_multiple_of(2), "pad {name:?} by an even count");
    format!("{root}{}{rest}", "./".repeat(padding / 2))
}

/// A library of the MLP compiled against a shard renamed to `name`.
fn library_with_shard_named(folder: &Path, name: &str, library: &Path) {
    let current = folder.join("group1-shard1of1.bin");
    std::fs::rename(&current, folder.join(name)).unwrap();
    set_shard_path(folder, name);
    let outcome = compile(&folder.join("model.json"), library);
    assert_eq!(outcome.code, Some(0), "{}", outcome.describe());
    std::fs::rename(folder.join(name), &current).unwrap();
}

#[test]
fn run_refuses_shard_names_outside_the_weights_folder_at_once() {
    // The compiler never writes such a name, so the library's description is edited as an
    // attacker would: the model is compiled against a shard with a long name, then that name is
    // overwritten in the library with a hostile one of the same length (two libraries, so that
    // `./` padding fits names of either parity).
    let (temporary, folder) = mlp_copy();
    let root = temporary.path();
    prepare_hostile_root(root, &folder);
    let input = folder.join("input_0.npy");
    let out = root.join("out");
    let long_names = [200, 201].map(|length| format!("shard{}", "x".repeat(length - 5)));
    let libraries = [root.join("libeven.so"), root.join("libodd.so")];
    for (name, library) in long_names.iter().zip(&libraries) {
        library_with_shard_named(&folder, name, library);
        let weights = folder.clone();
        std::fs::rename(folder.join("group1-shard1of1.bin"), folder.join(name)).unwrap();
        let outcome = tfjsc(&[
            OsStr::new("run"),
            library.as_os_str(),
            OsStr::new("--input"),
            OsStr::new(&format!("input={}", input.display())),
            OsStr::new("--out"),
            out.as_os_str(),
            OsStr::new("--weights"),
            weights.as_os_str(),
        ]);
        assert_eq!(
            outcome.code,
            Some(0),
            "the unedited library runs: {}",
            outcome.describe()
        );
        std::fs::rename(folder.join(name), folder.join("group1-shard1of1.bin")).unwrap();
    }
    std::fs::remove_dir_all(&out).unwrap();
    for (name, reason) in hostile_names(root) {
        if name.is_empty() {
            continue;
        }
        let parity = (200 - name.len()) % 2;
        let edited = root.join("libedited.so");
        std::fs::copy(&libraries[parity], &edited).unwrap();
        patch_bytes(
            &edited,
            &long_names[parity],
            &padded(&name, long_names[parity].len()),
        );
        // The description reader refuses absolute names before the weights are looked at.
        let reason = if name.starts_with('/') {
            "must be relative"
        } else {
            reason
        };
        run(&edited, &input, &out).refused(&[reason]);
    }
    assert!(!out.exists(), "no outputs from a refused library");
}

#[test]
fn duplicate_and_empty_node_names_are_refused() {
    let (temporary, folder) = mlp_copy();
    let model = folder.join("model.json");
    let library = temporary.path().join("libm.so");
    let original = std::fs::read(&model).unwrap();
    // A second Placeholder named like the first: two library inputs both named "input".
    edit_model_json(&folder, |model| {
        let nodes = model["modelTopology"]["node"].as_array_mut().unwrap();
        let input = nodes.iter().find(|n| n["name"] == "input").unwrap().clone();
        nodes.push(input);
    });
    compile(&model, &library).refused(&["\"input\" names 2 nodes", "Placeholder"]);
    inspect(&model).refused(&["\"input\" names 2 nodes"]);
    // Nodes without names (the JSON mapping's default for a missing "name" is "").
    std::fs::write(&model, &original).unwrap();
    edit_model_json(&folder, |model| {
        let nodes = model["modelTopology"]["node"].as_array_mut().unwrap();
        for node in nodes
            .iter_mut()
            .filter(|n| n["op"] == "Tanh" || n["op"] == "Sigmoid")
        {
            node.as_object_mut().unwrap().remove("name");
        }
    });
    compile(&model, &library).refused(&["nodes without a name", "(Tanh)", "(Sigmoid)"]);
    assert!(!library.exists());
}

/// A library of `x AND y` and `select(x, 1.0, 0.0)` over bool inputs `x` and `y`.
fn logical_model(directory: &Path) -> Model {
    let graph = tfjsc::ir::text::parse(
        "graph {\n  input %0 \"x\" : bool[4]\n  input %1 \"y\" : bool[4]\n  \
         const %2 [1.0] : f32[]\n  const %3 [0.0] : f32[]\n  \
         %4 = binary(%0, %1) {kind=\"logical_and\"} : ? @\"and\"\n  \
         %5 = select(%0, %2, %3) : ? @\"select\"\n  output \"and\" %4\n  output \"select\" %5\n}\n",
    )
    .unwrap();
    common::load_graph(graph, directory)
}

#[test]
fn bool_inputs_other_than_0_and_1_are_refused_by_the_rust_and_c_apis() {
    let temporary = tempfile::tempdir().unwrap();
    let model = logical_model(temporary.path());
    let mut context = model.new_context().unwrap();
    let x = Tensor::from_bool(&[4], &[true, true, false, true]).unwrap();
    let y = Tensor::from_bool(&[4], &[true, false, false, true]).unwrap();
    let outputs = context.run_tensors(&[x.clone(), y.clone()]).unwrap();
    assert_eq!(outputs[0].data, vec![1, 0, 0, 1]);
    assert_eq!(outputs[1].to_f32().unwrap(), vec![1.0, 1.0, 0.0, 1.0]);

    // The byte 2: once "true" for select and "false" for a bitwise AND with 1.
    let mut bad = x.clone();
    bad.data[3] = 2;
    let error = context
        .run_tensors(&[bad.clone(), y.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("input `x`") && error.contains("byte 3 is 2"),
        "{error}"
    );
    let mut outputs = [vec![0u8; 4], vec![0u8; 16]];
    let [first, second] = &mut outputs;
    let error = context
        .run(
            &[&y.data, &bad.data],
            &mut [first.as_mut_slice(), second.as_mut_slice()],
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("input `y`") && error.contains("byte 3 is 2"),
        "{error}"
    );

    // The same through the C ABI.
    use tfjsc_runtime::capi::*;
    let library = std::ffi::CString::new(
        temporary
            .path()
            .join("libgraph.so")
            .to_str()
            .unwrap()
            .to_string(),
    )
    .unwrap();
    let directory = std::ffi::CString::new(temporary.path().to_str().unwrap()).unwrap();
    let mut message = [0 as std::ffi::c_char; 256];
    // SAFETY: valid NUL-terminated strings, a writable message buffer, buffers of the described
    // sizes; the context is freed before the model.
    unsafe {
        let handle = tfjsc_model_open(
            library.as_ptr(),
            directory.as_ptr(),
            message.as_mut_ptr(),
            message.len(),
        );
        assert!(!handle.is_null());
        let context = tfjsc_context_new(handle, message.as_mut_ptr(), message.len());
        assert!(!context.is_null());
        let inputs = [bad.data.as_ptr().cast(), y.data.as_ptr().cast()];
        let mut and = [0u8; 4];
        let mut select = [0f32; 4];
        let outputs = [and.as_mut_ptr().cast(), select.as_mut_ptr().cast()];
        let status = tfjsc_context_run(
            context,
            inputs.as_ptr(),
            outputs.as_ptr(),
            message.as_mut_ptr(),
            message.len(),
        );
        assert_eq!(status, TFJSC_ERROR);
        let text = CStr::from_ptr(message.as_ptr()).to_str().unwrap();
        assert!(
            text.contains("input `x`") && text.contains("bools must be 0 or 1"),
            "{text}"
        );
        let inputs = [x.data.as_ptr().cast(), y.data.as_ptr().cast()];
        let status = tfjsc_context_run(
            context,
            inputs.as_ptr(),
            outputs.as_ptr(),
            message.as_mut_ptr(),
            message.len(),
        );
        assert_eq!(status, 0);
        assert_eq!(and, [1, 0, 0, 1]);
        tfjsc_context_free(context);
        tfjsc_model_close(handle);
    }
}

/// Output of the MLP library for its fixture input.
fn mlp_output(model: &Model) -> Vec<f32> {
    let input = tfjsc_runtime::npy::read_npy(&common::fixtures().join("mlp/input_0.npy")).unwrap();
    let outputs = model.new_context().unwrap().run_tensors(&[input]).unwrap();
    outputs[0].to_f32().unwrap()
}

#[test]
fn copied_weights_are_immune_to_shard_changes_and_mapped_ones_are_documented_not_to_be() {
    let (temporary, folder) = mlp_copy();
    let library = temporary.path().join("libmlp.so");
    assert_eq!(compile(&folder.join("model.json"), &library).code, Some(0));
    let shard = folder.join("group1-shard1of1.bin");
    let original = std::fs::read(&shard).unwrap();
    let load = |weights| {
        let options = LoadOptions {
            weights,
            ..LoadOptions::default()
        };
        Model::load_with_options(&library, &options).unwrap()
    };
    let mapped = load(WeightLoading::Mapped);
    let copied = load(WeightLoading::Copied);
    let expected = mlp_output(&mapped);
    assert_eq!(mlp_output(&copied), expected);

    // Rewritten in place with the same size: the mapping sees it (the documented hazard), the
    // copy does not.
    let scrambled: Vec<u8> = original.iter().map(|byte| byte ^ 0x5A).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &scrambled))
        .unwrap();
    assert_ne!(
        mlp_output(&mapped),
        expected,
        "a mapped shard shares the file's pages"
    );
    assert_eq!(mlp_output(&copied), expected);
    drop(mapped);

    // Truncated (what `cp` does first): running the mapped model now would die of SIGBUS; the
    // copied model runs on.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(mlp_output(&copied), expected);

    // Replaced by renaming a new file over it: safe for a mapped model, which keeps the old file.
    std::fs::write(folder.join("new-shard"), &original).unwrap();
    std::fs::rename(folder.join("new-shard"), &shard).unwrap();
    let mapped = load(WeightLoading::Mapped);
    assert_eq!(mlp_output(&mapped), expected);
    std::fs::write(folder.join("new-shard"), &scrambled).unwrap();
    std::fs::rename(folder.join("new-shard"), &shard).unwrap();
    assert_eq!(mlp_output(&mapped), expected);
    assert_eq!(mlp_output(&copied), expected);
}
