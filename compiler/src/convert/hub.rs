//! TF Hub modules: a local directory, a `.tar.gz` archive, or an `http://` URL, each resolved to
//! a local SavedModel directory.
//!
//! Archives are unpacked into the cache directory (one folder per archive checksum), refusing
//! entries that are absolute, climb out with `..`, or are links or devices. URLs are fetched with
//! `?tf-hub-format=compressed` appended, as the Python converter and `tensorflow_hub` do, once: a
//! module already in the cache is used without the network, so conversions work offline after the
//! first. The client speaks plain HTTP/1.1 (with redirects and a timeout on connect and on each
//! read); `https://` needs TLS, which this build does not have, and says how to proceed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::error::ConvertError;
use super::ConvertOptions;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Largest archive accepted (and largest unpacked total), 8 GiB.
const MAX_BYTES: u64 = 8 << 30;

/// The local SavedModel directory of the module `input`.
pub fn resolve(
    input: &str,
    options: &ConvertOptions,
    notes: &mut Vec<String>,
) -> Result<PathBuf, ConvertError> {
    if input.starts_with("http://") || input.starts_with("https://") {
        let cache = cache_dir(options);
        let folder = cache.join(format!("url-{:08x}", crc32fast::hash(input.as_bytes())));
        if folder.join("saved_model.pb").is_file() {
            notes.push(format!("using the cached module in {}", folder.display()));
            return Ok(folder);
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

/// `folder` if it holds a SavedModel.
fn module_folder(folder: &Path) -> Result<PathBuf, ConvertError> {
    if !folder.join("saved_model.pb").is_file() {
        let message = if folder.join("tfhub_module.pb").is_file() {
            "a TF1 Hub module (tfhub_module.pb); only TF2 SavedModel modules are read"
        } else {
            "no saved_model.pb: not a TF2 TF Hub module"
        };
        return Err(ConvertError::File {
            path: folder.to_path_buf(),
            message: message.into(),
        });
    }
    Ok(folder.to_path_buf())
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

/// A parsed `http://host[:port]/path` URL.
struct Url {
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, ConvertError> {
    let usage = |message: &str| ConvertError::Usage(format!("{url}: {message}"));
    if url.starts_with("https://") {
        return Err(usage(
            "https is not supported by this build (no TLS); download the module with \
             ?tf-hub-format=compressed yourself and pass the .tar.gz",
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| usage("not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| usage("bad port"))?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(usage("no host"));
    }
    Ok(Url {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// GETs `url` into `destination`, following redirects.
fn download(
    url: &str,
    destination: &Path,
    timeout: Duration,
    cache: &Path,
) -> Result<(), ConvertError> {
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let parsed = parse_url(&current)?;
        let network = |message: String| ConvertError::File {
            path: PathBuf::from(&current),
            message: format!("{message} (no cached copy in {})", cache.display()),
        };
        let address = (parsed.host.as_str(), parsed.port)
            .to_socket_addrs()
            .map_err(|e| network(format!("cannot resolve {} (offline?): {e}", parsed.host)))?
            .next()
            .ok_or_else(|| network(format!("{} has no address", parsed.host)))?;
        let mut stream = TcpStream::connect_timeout(&address, timeout)
            .map_err(|e| network(format!("cannot connect to {address} (offline?): {e}")))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| network(e.to_string()))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tfjsc-convert\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            parsed.path, parsed.host
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| network(format!("sending the request: {e}")))?;
        let mut reader = BufReader::new(stream);
        let read_error = |e: std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                network(format!("timed out after {} s", timeout.as_secs_f64()))
            } else {
                network(e.to_string())
            }
        };
        let mut status_line = String::new();
        reader.read_line(&mut status_line).map_err(read_error)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| network(format!("not an HTTP response: {:?}", status_line.trim())))?;
        let mut location = None;
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(read_error)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "location" => location = Some(value.to_string()),
                    "content-length" => length = value.parse::<u64>().ok(),
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    _ => {}
                }
            }
        }
        if (300..400).contains(&status) {
            let target =
                location.ok_or_else(|| network(format!("HTTP {status} without Location")))?;
            current = if target.starts_with('/') {
                format!("http://{}:{}{target}", parsed.host, parsed.port)
            } else {
                target
            };
            continue;
        }
        if status != 200 {
            return Err(network(format!("HTTP status {status}")));
        }
        if length.is_some_and(|length| length > MAX_BYTES) {
            return Err(network("the module is larger than 8 GiB".into()));
        }
        let mut file =
            std::fs::File::create(destination).map_err(|e| ConvertError::io(destination, e))?;
        if chunked {
            loop {
                let mut size_line = String::new();
                reader.read_line(&mut size_line).map_err(read_error)?;
                let size =
                    u64::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                        .map_err(|_| network("bad chunk size".into()))?;
                if size == 0 {
                    break;
                }
                std::io::copy(&mut (&mut reader).take(size), &mut file).map_err(read_error)?;
                let mut end = String::new();
                reader.read_line(&mut end).map_err(read_error)?;
            }
        } else {
            let limit = length.unwrap_or(MAX_BYTES);
            let copied =
                std::io::copy(&mut (&mut reader).take(limit), &mut file).map_err(read_error)?;
            if length.is_some_and(|length| copied != length) {
                return Err(network(format!(
                    "the connection closed after {copied} of {} bytes",
                    length.unwrap_or(0)
                )));
            }
        }
        return Ok(());
    }
    Err(ConvertError::File {
        path: PathBuf::from(url),
        message: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_https_is_refused_with_advice() {
        let url = parse_url("http://127.0.0.1:8080/m/1?x=y").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 8080, "/m/1?x=y")
        );
        let error = parse_url("https://tfhub.dev/x").err().unwrap().to_string();
        assert!(
            error.contains("TLS") && error.contains(".tar.gz"),
            "{error}"
        );
    }
}
