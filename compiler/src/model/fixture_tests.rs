//! Checks the readers on the real converted models under `tests/fixtures`
//! (or `$TFJSC_FIXTURES_DIR`), when there are any: every model (model.json
//! and legacy) opens and its weights read, and where the fixture carries
//! `weights_decoded.npz` (the weights as TF.js's own Python `read_weights`
//! decodes them) our decoded values are bit-identical.

use std::path::{Path, PathBuf};

use super::{WebModel, WeightValues};

fn fixture_root() -> PathBuf {
    std::env::var_os("TFJSC_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"))
}

/// One array of an `.npz` file: its raw little-endian bytes and numpy dtype.
struct NumpyArray {
    name: String,
    descriptor: String,
    data: Vec<u8>,
}

fn read_u16(bytes: &[u8], at: usize) -> usize {
    let pair = bytes.get(at..at + 2).expect("u16 in bounds");
    usize::from(u16::from_le_bytes([pair[0], pair[1]]))
}

/// Reads the arrays of an uncompressed `.npz` (as `numpy.savez` writes it):
/// zip local headers, each followed by a stored `.npy` file, back to back.
fn read_npz(path: &Path) -> Vec<NumpyArray> {
    let bytes = std::fs::read(path).expect("npz readable");
    let mut arrays = Vec::new();
    let mut position = 0;
    while bytes.get(position..position + 4) == Some(b"PK\x03\x04") {
        assert_eq!(
            read_u16(&bytes, position + 8),
            0,
            "npz entries must be stored"
        );
        let name_length = read_u16(&bytes, position + 26);
        let extra_length = read_u16(&bytes, position + 28);
        let name_start = position + 30;
        let name = String::from_utf8_lossy(&bytes[name_start..name_start + name_length]);
        let npy = name_start + name_length + extra_length;
        assert_eq!(&bytes[npy..npy + 6], b"\x93NUMPY");
        let header_length = read_u16(&bytes, npy + 8);
        let header = String::from_utf8_lossy(&bytes[npy + 10..npy + 10 + header_length]);
        let field = |key: &str| -> String {
            let start = header.find(key).expect("npy header field") + key.len();
            header[start..].to_string()
        };
        let descriptor: String = field("'descr': '")
            .chars()
            .take_while(|&c| c != '\'')
            .collect();
        let shape_text: String = field("'shape': (")
            .chars()
            .take_while(|&c| c != ')')
            .collect();
        let elements: usize = shape_text
            .split(',')
            .filter(|dimension| !dimension.trim().is_empty())
            .map(|dimension| dimension.trim().parse::<usize>().expect("dimension"))
            .product();
        let item_size: usize = descriptor[2..].parse().expect("item size");
        let data_start = npy + 10 + header_length;
        let data_end = data_start + elements * item_size;
        arrays.push(NumpyArray {
            name: name.trim_end_matches(".npy").to_string(),
            descriptor,
            data: bytes[data_start..data_end].to_vec(),
        });
        position = data_end;
    }
    arrays
}

fn raw_bytes(values: &WeightValues) -> Option<(&'static str, Vec<u8>)> {
    match values {
        WeightValues::Float32(values) => Some((
            "<f4",
            values
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect(),
        )),
        WeightValues::Int32(values) => Some((
            "<i4",
            values
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect(),
        )),
        _ => None,
    }
}

#[test]
fn fixture_models_open_and_decode_like_tfjs() {
    let Ok(entries) = std::fs::read_dir(fixture_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let fixture = entry.path();
        for directory in [fixture.clone(), fixture.join("legacy")] {
            let has_model =
                directory.join("model.json").is_file() || directory.join("web_model.pb").is_file();
            if !has_model {
                continue;
            }
            let shown = directory.display();
            let model = WebModel::open(&directory).unwrap_or_else(|error| panic!("{error}"));
            let values = model
                .read_weights()
                .unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(values.len(), model.weights.len(), "{shown}");
            assert!(!model.graph.node.is_empty(), "{shown}");
            for weight in &model.weights {
                let node = model
                    .graph
                    .node
                    .iter()
                    .find(|node| node.name == weight.name);
                assert!(node.is_some(), "{shown}: no node {}", weight.name);
            }
            model
                .weight_files()
                .unwrap_or_else(|error| panic!("{error}"));

            let decoded = fixture.join("weights_decoded.npz");
            if !decoded.is_file() {
                continue;
            }
            let arrays = read_npz(&decoded);
            for (weight, values) in model.weights.iter().zip(&values) {
                let array = arrays.iter().find(|array| array.name == weight.name);
                let array = array.unwrap_or_else(|| panic!("{shown}: {} not in npz", weight.name));
                let (descriptor, bytes) = raw_bytes(values).expect("numeric weight");
                assert_eq!(array.descriptor, descriptor, "{shown}: {}", weight.name);
                assert!(
                    array.data == bytes,
                    "{shown}: {} differs from TF.js",
                    weight.name
                );
            }
        }
    }
}
