//! TF Hub modules: a local directory, a `.tar.gz` archive, or an `http://` URL, each resolved to
//! a local module folder, which holds a SavedModel either way.
//!
//! Two formats: a TF2 module is a plain SavedModel; a TF1 module (the format of
//! `tensorflow_hub`'s `hub.Module`) adds `tfhub_module.pb`, a `ModuleDef` whose `format` must be
//! `FORMAT_V3` (3) with no `required_features`, and its SavedModel's MetaGraphDefs are the
//! module's graph variants (the empty tag set is the default one), with signatures by tensor
//! name and variables saved under their names in the module graph. Which one a folder is decides
//! the defaults it is read with ([`ModuleFormat`]); reading is the SavedModel path's.
//!
//! Archives are unpacked into the cache directory (one folder per archive checksum), refusing
//! entries that are absolute, climb out with `..`, or are links or devices. URLs are fetched with
//! `?tf-hub-format=compressed` appended, as the Python converter and `tensorflow_hub` do, once: a
//! module already in the cache is used without the network, so conversions work offline after the
//! first. Downloads go through `ureq` (HTTP and HTTPS, redirects, a timeout on connecting and on
//! each read).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use prost::Message;

use super::error::ConvertError;
use super::ConvertOptions;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Largest archive accepted (and largest unpacked total), 8 GiB.
const MAX_BYTES: u64 = 8 << 30;

/// `tensorflow_hub`'s `ModuleDef.Format.FORMAT_V3`, the only TF1 module format there is.
const FORMAT_V3: i32 = 3;

/// `tfhub_module.pb` (tensorflow_hub's `module_def.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct ModuleDef {
    #[prost(int32, tag = "1")]
    format: i32,
    #[prost(string, repeated, tag = "2")]
    required_features: Vec<String>,
}

/// What a module folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleFormat {
    /// A TF2 SavedModel (`hub.load`).
    SavedModel,
    /// A TF1 Hub module (`hub.Module`): `tfhub_module.pb` beside the SavedModel.
    Tf1,
}

/// A module resolved to a local folder.
#[derive(Debug, Clone)]
pub struct Module {
    pub folder: PathBuf,
    pub format: ModuleFormat,
}

/// The local folder of the module `input`, and its format.
pub fn resolve(
    input: &str,
    options: &ConvertOptions,
    notes: &mut Vec<String>,
) -> Result<Module, ConvertError> {
    if input.starts_with("http://") || input.starts_with("https://") {
        let cache = cache_dir(options);
        let folder = cache.join(format!("url-{:08x}", crc32fast::hash(input.as_bytes())));
        if folder.join("saved_model.pb").is_file() {
            notes.push(format!("using the cached module in {}", folder.display()));
            return module_folder(&folder);
        }
        let url = if input.contains('?') {
            format!("{input}&tf-hub-format=compressed")
        } else {
            format!("{input}?tf-hub-format=compressed")
        };
        std::fs::create_dir_all(&cache).map_err(|e| ConvertError::io(&cache, e))?;
        let archive = cache.join(format!(
            "download-{}-{:08x}.tar.gz",
            std::process::id(),
            crc32fast::hash(input.as_bytes())
        ));
        let result = download(&url, &archive, options.timeout, &cache);
        let unpacked = result.and_then(|_| unpack(&archive, &folder));
        let _ = std::fs::remove_file(&archive);
        unpacked?;
        notes.push(format!("downloaded {url} into {}", folder.display()));
        return module_folder(&folder);
    }
    let path = Path::new(input);
    if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| ConvertError::io(path, e))?;
        let folder = cache_dir(options).join(format!("archive-{:08x}", crc32fast::hash(&bytes)));
        if !folder.join("saved_model.pb").is_file() {
            unpack(path, &folder)?;
        }
        return module_folder(&folder);
    }
    module_folder(path)
}

/// `folder` if it holds a SavedModel, TF1 (with a readable `tfhub_module.pb`) or TF2.
fn module_folder(folder: &Path) -> Result<Module, ConvertError> {
    let tf1 = folder.join("tfhub_module.pb").is_file();
    if !folder.join("saved_model.pb").is_file() {
        let message = if tf1 {
            "tfhub_module.pb but no saved_model.pb: not a TF1 Hub module in FORMAT_V3"
        } else {
            "no saved_model.pb (nor tfhub_module.pb): not a TF Hub module"
        };
        return Err(ConvertError::File {
            path: folder.to_path_buf(),
            message: message.into(),
        });
    }
    if !tf1 {
        return Ok(Module {
            folder: folder.to_path_buf(),
            format: ModuleFormat::SavedModel,
        });
    }
    let (path, bytes) = super::read_input_file(folder, "tfhub_module.pb")?;
    let module = ModuleDef::decode(bytes.as_slice()).map_err(|error| ConvertError::Corrupt {
        path: path.clone(),
        what: "ModuleDef protobuf",
        message: error.to_string(),
    })?;
    if module.format != FORMAT_V3 {
        return Err(ConvertError::File {
            path,
            message: format!(
                "ModuleDef format {}; only FORMAT_V3 ({FORMAT_V3}) is read, as by tensorflow_hub",
                module.format
            ),
        });
    }
    if !module.required_features.is_empty() {
        return Err(ConvertError::File {
            path,
            message: format!(
                "the module requires features no reader supports: {}",
                module.required_features.join(", ")
            ),
        });
    }
    Ok(Module {
        folder: folder.to_path_buf(),
        format: ModuleFormat::Tf1,
    })
}

/// Where modules are cached: `--tfhub_cache_dir`, `$TFHUB_CACHE_DIR`, or
/// `$XDG_CACHE_HOME/tfjsc/tfhub` (`~/.cache/tfjsc/tfhub`).
pub fn cache_dir(options: &ConvertOptions) -> PathBuf {
    if let Some(dir) = &options.cache_dir {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os("TFHUB_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tfjsc").join("tfhub")
}

/// Unpacks a gzip-compressed tar archive into `folder` (written beside it, then renamed).
fn unpack(archive: &Path, folder: &Path) -> Result<(), ConvertError> {
    let corrupt = |message: String| ConvertError::Corrupt {
        path: archive.to_path_buf(),
        what: "TF Hub .tar.gz archive",
        message,
    };
    let file = std::fs::File::open(archive).map_err(|e| ConvertError::io(archive, e))?;
    let staging = folder.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| ConvertError::io(&staging, e))?;
    let mut reader = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut total = 0u64;
    let entries = reader.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .into_owned();
        let mut relative = PathBuf::new();
        for component in name.components() {
            match component {
                Component::Normal(part) => relative.push(part),
                Component::CurDir => {}
                _ => {
                    return Err(corrupt(format!(
                        "entry {} leaves the archive's folder",
                        name.display()
                    )))
                }
            }
        }
        let kind = entry.header().entry_type();
        let target = staging.join(&relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| ConvertError::io(&target, e))?;
            continue;
        }
        if !kind.is_file() {
            continue; // links, devices: never followed or created
        }
        total = total.saturating_add(entry.size());
        if total > MAX_BYTES {
            return Err(corrupt("unpacks to more than 8 GiB".into()));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ConvertError::io(parent, e))?;
        }
        let mut output =
            std::fs::File::create(&target).map_err(|e| ConvertError::io(&target, e))?;
        std::io::copy(&mut entry, &mut output).map_err(|e| corrupt(e.to_string()))?;
    }
    let _ = std::fs::remove_dir_all(folder);
    std::fs::rename(&staging, folder).map_err(|e| ConvertError::io(folder, e))?;
    Ok(())
}

/// GETs `url` into `destination`, following redirects.
fn download(
    url: &str,
    destination: &Path,
    timeout: Duration,
    cache: &Path,
) -> Result<(), ConvertError> {
    let network = |message: String| ConvertError::File {
        path: PathBuf::from(url),
        message: format!("{message} (no cached copy in {})", cache.display()),
    };
    let timed_out = || network(format!("timed out after {} s", timeout.as_secs_f64()));
    let is_timeout = |error: &std::io::Error| {
        matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_read(timeout)
        .timeout_write(timeout)
        .redirects(MAX_REDIRECTS as u32)
        .user_agent("tfjsc-convert")
        .build();
    let response = agent.get(url).call().map_err(|error| match error {
        ureq::Error::Status(status, _) => network(format!("HTTP status {status}")),
        ureq::Error::Transport(transport) => {
            let detail = transport.to_string();
            match transport.kind() {
                ureq::ErrorKind::Dns => {
                    network(format!("cannot resolve the host (offline?): {detail}"))
                }
                ureq::ErrorKind::ConnectionFailed => {
                    network(format!("cannot connect (offline?): {detail}"))
                }
                ureq::ErrorKind::TooManyRedirects => {
                    network(format!("more than {MAX_REDIRECTS} redirects"))
                }
                ureq::ErrorKind::Io
                    if detail.contains("timed out") || detail.contains("WouldBlock") =>
                {
                    timed_out()
                }
                _ => network(detail),
            }
        }
    })?;
    let length = response
        .header("Content-Length")
        .and_then(|value| value.parse::<u64>().ok());
    if length.is_some_and(|length| length > MAX_BYTES) {
        return Err(network("the module is larger than 8 GiB".into()));
    }
    let mut file =
        std::fs::File::create(destination).map_err(|e| ConvertError::io(destination, e))?;
    let copied = std::io::copy(&mut response.into_reader().take(MAX_BYTES + 1), &mut file)
        .map_err(|e| {
            if is_timeout(&e) {
                timed_out()
            } else {
                network(e.to_string())
            }
        })?;
    if copied > MAX_BYTES {
        return Err(network("the module is larger than 8 GiB".into()));
    }
    if length.is_some_and(|length| copied != length) {
        return Err(network(format!(
            "the connection closed after {copied} of {} bytes",
            length.unwrap_or(0)
        )));
    }
    Ok(())
}
