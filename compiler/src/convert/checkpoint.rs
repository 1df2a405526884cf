//! Finds and opens a checkpoint by its prefix, whichever format its files say it is in: a V2
//! tensor bundle (`PREFIX.index` + `PREFIX.data-NNNNN-of-MMMMM`, [`bundle`]) when the index
//! exists, else a V1 checkpoint (`PREFIX`, or every one of `PREFIX-NNNNN-of-MMMMM`,
//! [`checkpoint_v1`]), as TensorFlow's `Saver` restores either. Also finds a session bundle's
//! MetaGraph and checkpoint in its folder.
//!
//! Names are only looked up in the model's folder; files are opened inside it
//! (`open_in_folder`), whatever a `checkpoint` state file or a link says.
//!
//! [`bundle`]: super::bundle
//! [`checkpoint_v1`]: super::checkpoint_v1

use std::io::Read;
use std::path::Path;

use tfjsc_runtime::shard_file::open_in_folder;

use super::bundle::Bundle;
use super::checkpoint_v1::CheckpointV1;
use super::error::ConvertError;
use super::tensor::Tensor;

/// An opened checkpoint of either format.
pub enum Checkpoint {
    V2(Bundle),
    V1(CheckpointV1),
}

impl Checkpoint {
    /// Opens the checkpoint `folder/PREFIX` (the prefix may name a subfolder, e.g.
    /// `variables/variables`): V2 when `PREFIX.index` exists, else V1.
    pub fn open(folder: &Path, prefix: &str) -> Result<Checkpoint, ConvertError> {
        let index = folder.join(format!("{prefix}.index"));
        if std::fs::symlink_metadata(&index).is_ok() {
            return Bundle::open(folder, prefix).map(Checkpoint::V2);
        }
        let names = v1_files(folder, prefix)?;
        CheckpointV1::open(folder, &names).map(Checkpoint::V1)
    }

    /// The file error messages name (the V2 index, or the first V1 table).
    pub fn path(&self) -> &Path {
        match self {
            Checkpoint::V2(bundle) => bundle.index_path(),
            Checkpoint::V1(checkpoint) => checkpoint.path(),
        }
    }

    /// Every tensor name, sorted.
    pub fn keys(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Checkpoint::V2(bundle) => Box::new(bundle.keys()),
            Checkpoint::V1(checkpoint) => Box::new(checkpoint.keys()),
        }
    }

    /// Whether the checkpoint holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        match self {
            Checkpoint::V2(bundle) => bundle.contains(key),
            Checkpoint::V1(checkpoint) => checkpoint.contains(key),
        }
    }

    /// Reads the tensor stored under `key`, or `None` when there is none.
    pub fn read(&mut self, key: &str) -> Result<Option<Tensor>, ConvertError> {
        match self {
            Checkpoint::V2(bundle) => bundle.read(key),
            Checkpoint::V1(checkpoint) => checkpoint.read(key),
        }
    }
}

/// The V1 table files of `prefix` (relative to `folder`): the file `PREFIX` itself, else every
/// shard `PREFIX-NNNNN-of-MMMMM`, in order, all of them present.
fn v1_files(folder: &Path, prefix: &str) -> Result<Vec<String>, ConvertError> {
    let (subfolder, base) = match prefix.rsplit_once('/') {
        Some((subfolder, base)) => (Some(subfolder), base),
        None => (None, prefix),
    };
    let listed_folder = subfolder.map_or_else(|| folder.to_path_buf(), |sub| folder.join(sub));
    let relative = |name: &str| match subfolder {
        Some(sub) => format!("{sub}/{name}"),
        None => name.to_string(),
    };
    let names = folder_names(&listed_folder);
    if names.iter().any(|name| name == base) {
        return Ok(vec![relative(base)]);
    }
    let mut shards: Vec<(u64, u64)> = names
        .iter()
        .filter_map(|name| shard_of(name.strip_prefix(base)?))
        .collect();
    let missing = |message: String| ConvertError::File {
        path: folder.join(prefix),
        message: format!(
            "{message}; the folder has: {}",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        ),
    };
    let Some(&(_, total)) = shards.first() else {
        return Err(missing(format!(
            "no checkpoint: expected {base}.index (V2) or {base}, or {base}-00000-of-NNNNN and \
             its other shards (V1)"
        )));
    };
    shards.sort_unstable();
    shards.dedup();
    let expected: Vec<(u64, u64)> = (0..total.min(65_536)).map(|i| (i, total)).collect();
    if total > 65_536 || shards != expected {
        let absent: Vec<String> = expected
            .iter()
            .filter(|shard| !shards.contains(shard))
            .take(8)
            .map(|&(index, total)| shard_name(base, index, total))
            .collect();
        return Err(missing(format!(
            "an incomplete V1 checkpoint of {total} shards (missing {}, or shards of several \
             checkpoints)",
            if absent.is_empty() {
                "none, but shards of other counts exist".to_string()
            } else {
                absent.join(", ")
            }
        )));
    }
    Ok(expected
        .iter()
        .map(|&(index, total)| relative(&shard_name(base, index, total)))
        .collect())
}

fn shard_name(base: &str, index: u64, total: u64) -> String {
    format!("{base}-{index:05}-of-{total:05}")
}

/// (index, total) of a shard suffix `-NNNNN-of-MMMMM` (at least five digits each, as
/// TensorFlow's `Saver` writes them).
fn shard_of(suffix: &str) -> Option<(u64, u64)> {
    let (index, total) = suffix.strip_prefix('-')?.split_once("-of-")?;
    let number = |digits: &str| {
        (digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    let (index, total) = (number(index)?, number(total)?);
    (index < total).then_some((index, total))
}

/// The names in `folder`, sorted (none when it cannot be listed).
fn folder_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort_unstable();
    names
}

/// Where a session bundle's parts lie in its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBundleFiles {
    /// The MetaGraphDef file, e.g. `export.meta`.
    pub meta_graph: String,
    /// The checkpoint prefix, e.g. `export`.
    pub prefix: String,
}

/// Finds a session bundle's MetaGraph and checkpoint in `folder`: the checkpoint a `checkpoint`
/// state file names (its `model_checkpoint_path`, looked up by its last component in `folder`,
/// as the Python converter of TF.js 0.x found it) when its `.meta` is there; else `export.meta`
/// and `export` (what TensorFlow's session-bundle exporter writes); else the only `*.meta` file
/// and the checkpoint named like it (`model.ckpt-1234.meta` and `model.ckpt-1234`).
pub fn session_bundle_files(folder: &Path) -> Result<SessionBundleFiles, ConvertError> {
    let names = folder_names(folder);
    let with_meta = |prefix: String| {
        let meta_graph = format!("{prefix}.meta");
        names
            .contains(&meta_graph)
            .then_some(SessionBundleFiles { meta_graph, prefix })
    };
    if let Some(prefix) = state_file_prefix(folder) {
        if let Some(files) = with_meta(prefix) {
            return Ok(files);
        }
    }
    if let Some(files) = with_meta("export".to_string()) {
        return Ok(files);
    }
    let metas: Vec<&String> = names
        .iter()
        .filter(|name| name.ends_with(".meta"))
        .collect();
    if let [only] = metas.as_slice() {
        let prefix = only.trim_end_matches(".meta").to_string();
        return Ok(SessionBundleFiles {
            meta_graph: only.to_string(),
            prefix,
        });
    }
    Err(ConvertError::File {
        path: folder.to_path_buf(),
        message: format!(
            "not a session bundle: expected export.meta, a `checkpoint` file naming a \
             checkpoint whose .meta is here, or a single *.meta file; {}",
            if names.is_empty() {
                "the folder is empty or cannot be read".to_string()
            } else {
                format!("the folder has: {}", names.join(", "))
            }
        ),
    })
}

/// The checkpoint prefix the `checkpoint` state file of `folder` names (the last component of
/// its `model_checkpoint_path`, without a V1 shard pattern such as `-?????-of-00002`).
fn state_file_prefix(folder: &Path) -> Option<String> {
    let opened = open_in_folder(folder, "checkpoint").ok()?;
    let mut text = String::new();
    opened.file.take(1 << 20).read_to_string(&mut text).ok()?;
    let line = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("model_checkpoint_path:"))?;
    let quoted = line.trim().strip_prefix('"')?.strip_suffix('"')?;
    let unescaped = unescape(quoted);
    let last = unescaped.rsplit(['/', '\\']).next()?;
    let prefix = match last.rsplit_once("-?????-of-") {
        Some((prefix, total)) if total.bytes().all(|b| b.is_ascii_digit()) => prefix,
        _ => last,
    };
    (!prefix.is_empty() && prefix != "." && prefix != "..").then(|| prefix.to_string())
}

/// Undoes the C escapes of a protobuf text-format string (`\"`, `\\`, `\n`, octal `\ooo`, ...).
fn unescape(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes().peekable();
    while let Some(byte) = input.next() {
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        match input.next() {
            Some(b'n') => bytes.push(b'\n'),
            Some(b't') => bytes.push(b'\t'),
            Some(b'r') => bytes.push(b'\r'),
            Some(digit @ b'0'..=b'7') => {
                let mut value = u32::from(digit - b'0');
                for _ in 0..2 {
                    match input.peek() {
                        Some(&next @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(next - b'0');
                            input.next();
                        }
                        _ => break,
                    }
                }
                bytes.push(value as u8);
            }
            Some(other) => bytes.push(other),
            None => bytes.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_suffixes_are_parsed_strictly() {
        assert_eq!(shard_of("-00001-of-00002"), Some((1, 2)));
        assert_eq!(shard_of("-00002-of-00002"), None);
        assert_eq!(shard_of("-1-of-2"), None);
        assert_eq!(shard_of(".index"), None);
        assert_eq!(shard_of("-0000x-of-00002"), None);
    }

    #[test]
    fn session_bundles_are_found_by_state_file_export_or_single_meta() {
        let folder = tempfile::tempdir().unwrap();
        let write =
            |name: &str, text: &str| std::fs::write(folder.path().join(name), text).unwrap();
        let error = session_bundle_files(folder.path()).unwrap_err().to_string();
        assert!(error.contains("not a session bundle"), "{error}");
        write("model.ckpt-7.meta", "");
        let found = session_bundle_files(folder.path()).unwrap();
        assert_eq!(
            (found.meta_graph.as_str(), found.prefix.as_str()),
            ("model.ckpt-7.meta", "model.ckpt-7")
        );
        write("export.meta", "");
        assert_eq!(
            session_bundle_files(folder.path()).unwrap().prefix,
            "export"
        );
        // The state file wins, read by its last component whatever folder it names.
        write("model.ckpt-9.meta", "");
        write(
            "checkpoint",
            "model_checkpoint_path: \"/elsewhere/model.ckpt-9-?????-of-00002\"\n\
             all_model_checkpoint_paths: \"/elsewhere/model.ckpt-7\"\n",
        );
        assert_eq!(
            session_bundle_files(folder.path()).unwrap().prefix,
            "model.ckpt-9"
        );
        write(
            "checkpoint",
            "model_checkpoint_path: \"../../etc/passwd\"\n",
        );
        assert_eq!(
            session_bundle_files(folder.path()).unwrap().prefix,
            "export"
        );
    }

    #[test]
    fn a_missing_checkpoint_or_shard_lists_what_exists() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("export.meta"), "").unwrap();
        let open_error = || match Checkpoint::open(folder.path(), "export") {
            Ok(_) => panic!("opened a checkpoint that is not there"),
            Err(error) => error.to_string(),
        };
        let error = open_error();
        assert!(
            error.contains("expected export.index (V2) or export") && error.contains("export.meta"),
            "{error}"
        );
        std::fs::write(folder.path().join("export-00001-of-00003"), "").unwrap();
        let error = open_error();
        assert!(
            error.contains("missing export-00000-of-00003, export-00002-of-00003")
                && error.contains("the folder has: export-00001-of-00003, export.meta"),
            "{error}"
        );
    }
}
