//! The safe Rust API against a fake compiled model: outputs, weight placement, every load and run
//! error, static linking, and concurrent contexts.

mod common;

use std::ffi::c_char;

use common::{expected, f32_bytes, i32_bytes, FakeModel, K, X};
use tfjsc_runtime::{DType, Error, LoadOptions, Model, RunFn, Tensor, WeightLoading, WeightSource};

fn run_bytes(model: &Model, x: &[f32; 6], k: &[i32; 3]) -> (Vec<f32>, Vec<i32>) {
    let mut context = model.new_context().unwrap();
    let mut y = vec![0u8; 24];
    let mut z = vec![0u8; 12];
    context
        .run(&[&f32_bytes(x), &i32_bytes(k)], &mut [&mut y, &mut z])
        .unwrap();
    let y = y
        .chunks_exact(4)
        .map(|chunk| f32::from_ne_bytes(chunk.try_into().unwrap()));
    let z = z
        .chunks_exact(4)
        .map(|chunk| i32::from_ne_bytes(chunk.try_into().unwrap()));
    (y.collect(), z.collect())
}

#[test]
fn runs_and_decodes_every_weight_kind() {
    let fake = FakeModel::build();
    let model = Model::load(&fake.library, None).unwrap();
    assert_eq!(model.weights_dir(), fake.weights_dir);
    assert_eq!(run_bytes(&model, &X, &K), expected(&X, &K));
}

#[test]
fn weights_are_mapped_in_place_only_when_aligned_inside_one_file() {
    let fake = FakeModel::build();
    let model = Model::load(&fake.library, Some(&fake.weights_dir)).unwrap();
    let sources = model.weight_sources();
    // kernel straddles two files, bias is float16, offset is uint8, scale is misaligned.
    assert_eq!(sources[0], WeightSource::Decoded { bytes: 24 });
    assert_eq!(sources[1], WeightSource::Decoded { bytes: 12 });
    assert_eq!(sources[2], WeightSource::Decoded { bytes: 12 });
    assert_eq!(sources[3], WeightSource::Decoded { bytes: 12 });
    assert_eq!(sources[4], WeightSource::InPlace);
    assert_eq!(sources[5], WeightSource::InPlace);
    assert_eq!(sources[6], WeightSource::Decoded { bytes: 12 });
}

#[test]
fn copied_weights_hold_each_group_in_one_piece() {
    let fake = FakeModel::build();
    let options = LoadOptions {
        weights: WeightLoading::Copied,
        ..LoadOptions::default()
    };
    let model = Model::load_with_options(&fake.library, &options).unwrap();
    assert_eq!(run_bytes(&model, &X, &K), expected(&X, &K));
    let sources = model.weight_sources();
    // The kernel straddles two files, but the copy holds its group's stream in one piece.
    assert_eq!(sources[0], WeightSource::InPlace);
    assert_eq!(
        &sources[1..],
        &Model::load(&fake.library, None).unwrap().weight_sources()[1..]
    );
}

#[test]
fn run_tensors_checks_and_allocates() {
    let fake = FakeModel::build();
    let model = Model::load(&fake.library, None).unwrap();
    let mut context = model.new_context().unwrap();
    let x = Tensor::from_f32(&[2, 3], &X).unwrap();
    let k = Tensor::from_i32(&[3], &K).unwrap();
    let outputs = context.run_tensors(&[x.clone(), k.clone()]).unwrap();
    let (y, z) = expected(&X, &K);
    assert_eq!(outputs[0].shape, vec![2, 3]);
    assert_eq!(outputs[0].to_f32().unwrap(), y);
    assert_eq!(outputs[1].dtype, DType::Int32);
    assert_eq!(outputs[1].to_i32().unwrap(), z);

    let wrong_shape = Tensor::from_f32(&[3, 2], &X).unwrap();
    let error = context.run_tensors(&[wrong_shape, k.clone()]).unwrap_err();
    assert!(
        matches!(error, Error::InputShape { ref name, .. } if name == "x"),
        "{error}"
    );
    let wrong_dtype = Tensor::from_f32(&[3], &[1.0, 2.0, 3.0]).unwrap();
    let error = context.run_tensors(&[x.clone(), wrong_dtype]).unwrap_err();
    assert!(
        error.to_string().contains("input `k` must be int32"),
        "{error}"
    );
    let error = context.run_tensors(&[x]).unwrap_err();
    assert!(
        matches!(
            error,
            Error::InputCount {
                expected: 2,
                found: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn misaligned_caller_buffers_are_staged() {
    let fake = FakeModel::build();
    let model = Model::load(&fake.library, None).unwrap();
    let mut context = model.new_context().unwrap();
    let mut x = [0u8; 25];
    x[1..].copy_from_slice(&f32_bytes(&X));
    let k = i32_bytes(&K);
    let mut y = [0u8; 25];
    let mut z = vec![0u8; 12];
    context
        .run(&[&x[1..], &k], &mut [&mut y[1..], &mut z])
        .unwrap();
    let y: Vec<f32> = y[1..]
        .chunks_exact(4)
        .map(|chunk| f32::from_ne_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(y, expected(&X, &K).0);
}

#[test]
fn wrong_buffer_sizes_name_the_tensor() {
    let fake = FakeModel::build();
    let model = Model::load(&fake.library, None).unwrap();
    let mut context = model.new_context().unwrap();
    let (mut y, mut z) = (vec![0u8; 24], vec![0u8; 12]);
    let error = context
        .run(&[&[0u8; 20], &[0u8; 12]], &mut [&mut y, &mut z])
        .unwrap_err();
    assert_eq!(error.to_string(), "input `x` needs 24 bytes, 20 were given");
    let mut short = vec![0u8; 8];
    let error = context
        .run(&[&[0u8; 24], &[0u8; 12]], &mut [&mut y, &mut short])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "output `z` needs 12 bytes, the buffer has 8"
    );
    let error = context
        .run(&[&[0u8; 24], &[0u8; 12]], &mut [&mut y])
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::OutputCount {
                expected: 2,
                found: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn a_failing_run_returns_its_status() {
    let fake = FakeModel::build();
    let model = Model::load(&fake.library, None).unwrap();
    let mut context = model.new_context().unwrap();
    let mut x = X;
    x[0] = f32::NAN;
    let (mut y, mut z) = (vec![0u8; 24], vec![0u8; 12]);
    let error = context
        .run(&[&f32_bytes(&x), &i32_bytes(&K)], &mut [&mut y, &mut z])
        .unwrap_err();
    assert!(matches!(error, Error::RunFailed { code: 7 }), "{error}");
}

#[test]
fn missing_shard_is_named() {
    let fake = FakeModel::build();
    std::fs::remove_file(fake.shard(1)).unwrap();
    let error = Model::load(&fake.library, None).unwrap_err();
    assert!(
        matches!(error, Error::WeightFileUnreadable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("group1-shard2of2"), "{error}");
}

#[test]
fn shard_of_wrong_size_is_named_with_both_sizes() {
    let fake = FakeModel::build();
    let mut bytes = std::fs::read(fake.shard(2)).unwrap();
    bytes.push(0);
    std::fs::write(fake.shard(2), bytes).unwrap();
    let error = Model::load(&fake.library, None).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            Error::WeightFileSize {
                expected: 22,
                found: 23,
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("group2-shard1of1") && message.contains("expected 22 bytes, found 23"),
        "{message}"
    );
}

#[test]
fn shard_with_wrong_checksum_is_named_with_both_checksums() {
    let fake = FakeModel::build();
    let mut bytes = std::fs::read(fake.shard(0)).unwrap();
    let expected = crc32fast::hash(&bytes);
    bytes[3] ^= 0xff;
    let found = crc32fast::hash(&bytes);
    std::fs::write(fake.shard(0), bytes).unwrap();
    let error = Model::load(&fake.library, None).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::WeightFileChecksum { .. }),
        "{message}"
    );
    assert!(message.contains("group1-shard1of2"), "{message}");
    assert!(
        message.contains(&format!("{expected:#010x}"))
            && message.contains(&format!("{found:#010x}")),
        "{message}"
    );
}

#[test]
fn weights_dir_argument_overrides_the_description() {
    let fake = FakeModel::build();
    let moved = fake.directory.path().join("moved");
    std::fs::rename(&fake.weights_dir, &moved).unwrap();
    assert!(Model::load(&fake.library, None).is_err());
    let model = Model::load(&fake.library, Some(&moved)).unwrap();
    assert_eq!(run_bytes(&model, &X, &K), expected(&X, &K));
}

#[test]
fn other_abi_versions_are_rejected() {
    let fake = FakeModel::build_with("tfjsc_model", |description| {
        description["abi_version"] = 1.into();
    });
    let error = Model::load(&fake.library, None).unwrap_err();
    assert!(
        matches!(error, Error::UnsupportedAbiVersion { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("ABI version 1, this runtime supports version 2"),
        "{error}"
    );
}

#[test]
fn missing_symbols_are_named() {
    let fake = FakeModel::build_with("other_model", |_| {});
    let error = Model::load(&fake.library, None).unwrap_err();
    assert!(
        matches!(error, Error::MissingSymbol { ref symbol, .. } if symbol == "tfjsc_model_description"),
        "{error}"
    );
    let model = Model::load_with_prefix(&fake.library, "other_model", None).unwrap();
    assert_eq!(run_bytes(&model, &X, &K), expected(&X, &K));
    let error = Model::load(&fake.directory.path().join("absent.so"), None).unwrap_err();
    assert!(matches!(error, Error::OpenLibrary { .. }), "{error}");
}

#[test]
fn inconsistent_weight_descriptions_are_rejected() {
    let fake = FakeModel::build_with("tfjsc_model", |description| {
        description["weights"][3]["offset"] = 40.into();
    });
    let error = Model::load(&fake.library, None).unwrap_err();
    assert!(
        matches!(error, Error::WeightOutOfRange { ref name, stream_size: 45, .. } if name == "scale"),
        "{error}"
    );

    let fake = FakeModel::build_with("tfjsc_model", |description| {
        description["weights"][1]["byte_size"] = 12.into();
    });
    let error = Model::load(&fake.library, None).unwrap_err();
    assert!(
        matches!(
            error,
            Error::WeightByteSize {
                expected: 6,
                found: 12,
                ..
            }
        ),
        "{error}"
    );

    let fake = FakeModel::build_with("tfjsc_model", |description| {
        description["weights"][0]["group"] = 5.into();
    });
    let error = Model::load(&fake.library, None).unwrap_err();
    assert!(matches!(error, Error::InvalidDescription(_)), "{error}");

    let fake = FakeModel::build_with("tfjsc_model", |description| {
        description["weights"][5]["encoding"] = serde_json::json!({"kind": "float16"});
    });
    let error = Model::load(&fake.library, None).unwrap_err();
    assert!(
        error.to_string().contains("cannot decode to bool"),
        "{error}"
    );
}

#[test]
fn statically_linked_code_runs_through_from_static() {
    let fake = FakeModel::build();
    // Stand in for static linking: take the two functions out of the library by hand.
    // SAFETY: the fake library exports both symbols with the ABI v1 signatures.
    let library = unsafe { libloading::Library::new(&fake.library) }.unwrap();
    // SAFETY: as above.
    let (describe, run) = unsafe {
        let describe = *library
            .get::<unsafe extern "C" fn() -> *const c_char>("tfjsc_model_description")
            .unwrap();
        let run = *library.get::<RunFn>("tfjsc_model_run").unwrap();
        (describe, run)
    };
    // SAFETY: the description is the library's own and `run` implements it; the library stays
    // loaded until the end of the test.
    let model = unsafe { Model::from_static(describe(), run, None) }.unwrap();
    assert_eq!(run_bytes(&model, &X, &K), expected(&X, &K));
    // SAFETY: a null description is reported, not dereferenced.
    let error = unsafe { Model::from_static(std::ptr::null(), run, None) }.unwrap_err();
    assert!(matches!(error, Error::NullDescription), "{error}");
}

#[test]
fn one_model_runs_on_two_threads_with_two_contexts() {
    let fake = FakeModel::build();
    let model = Model::load(&fake.library, None).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..2i32 {
            let model = &model;
            scope.spawn(move || {
                let mut context = model.new_context().unwrap();
                for iteration in 0..500 {
                    let base = (thread * 1000 + iteration) as f32;
                    let x = [base, 1.0, -base, 2.0, 0.25, base * 0.5];
                    let k = [iteration, -thread, 7];
                    let inputs = [
                        Tensor::from_f32(&[2, 3], &x).unwrap(),
                        Tensor::from_i32(&[3], &k).unwrap(),
                    ];
                    let outputs = context.run_tensors(&inputs).unwrap();
                    let (y, z) = expected(&x, &k);
                    assert_eq!(outputs[0].to_f32().unwrap(), y);
                    assert_eq!(outputs[1].to_i32().unwrap(), z);
                }
            });
        }
    });
}

/// A Winograd-packed weight must hold a whole 3 × 3 × rows × columns filter: a description
/// whose sizes disagree, or overflow, is refused before anything is packed.
#[test]
fn winograd_panels_that_do_not_fit_the_weight_are_rejected() {
    for (rows, columns) in [(2u64, 3u64), (1 << 62, 4)] {
        let fake = FakeModel::build_with("tfjsc_model", |description| {
            description["weights"][0]["panels"] = serde_json::json!(
                {"rows": rows, "columns": columns, "winograd": "F2x2_3x3"}
            );
        });
        let error = Model::load(&fake.library, None).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("kernel")
                && message.contains(&format!("F2 transform of a 3 × 3 × {rows} × {columns}")),
            "{message}"
        );
    }
    // The same weight as plain panels loads.
    let fake = FakeModel::build_with("tfjsc_model", |description| {
        description["weights"][0]["panels"] = serde_json::json!({"rows": 2, "columns": 3});
    });
    Model::load(&fake.library, None).unwrap();
}
