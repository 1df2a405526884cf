//! Opening the files a model folder names: weight shards (and the legacy manifest beside a graph).
//!
//! A model folder is untrusted input: it comes from the internet and is opened inside other
//! people's servers. The names it lists must not reach anything outside it. This module is the
//! one place that turns such a name into an open file, for the compiler's readers and for the
//! runtime alike, and it refuses, *before opening anything*:
//! - an empty or absolute name, or one that climbs above the folder with `..` (checked on the
//!   words of the name, before the file system is asked anything);
//! - a name that leaves the folder through a symbolic link (checked on the resolved path);
//! - anything that is not a regular file: a FIFO would block the reader forever, `/dev/zero` would
//!   be read until memory runs out, a directory cannot be a shard.
//!
//! The open itself is non-blocking and the opened file is checked again (`fstat`), so a file
//! swapped for a FIFO between the check and the open cannot hang the reader either.

use std::fs::{File, OpenOptions};
use std::path::{Component, Path, PathBuf};

/// Why a name listed by a model could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ShardPathError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is an absolute path.
    #[error("the name is an absolute path; it must be relative to the model's folder")]
    Absolute,
    /// The name climbs above the folder with `..`.
    #[error("the name leads outside the model's folder")]
    OutsideFolder,
    /// The name resolves, through a symbolic link, to a file outside the folder.
    #[error("the name leads, through a symbolic link, to {resolved}, outside the model's folder {folder}")]
    LinkOutsideFolder {
        /// Where the name resolves to.
        resolved: PathBuf,
        /// The folder, resolved.
        folder: PathBuf,
    },
    /// The file does not exist.
    #[error("no such file")]
    NotFound,
    /// The name designates something other than a regular file.
    #[error("it is a {kind}, not a regular file")]
    NotRegularFile {
        /// What it is: "directory", "FIFO", "character device", ...
        kind: &'static str,
    },
    /// The operating system refused (permissions, I/O error, ...).
    #[error("{0}")]
    Io(std::io::Error),
}

/// An opened file that a model folder named.
#[derive(Debug)]
pub struct OpenedFile {
    /// The folder joined with the name as written (what messages should show).
    pub path: PathBuf,
    /// The file, opened read-only.
    pub file: File,
    /// Its size in bytes when it was opened.
    pub size: u64,
}

/// Checks the words of `name` alone: relative, non-empty, never above its folder. Returns the
/// name with `.` components dropped and `dir/..` pairs folded.
pub fn normalise_relative_name(name: &str) -> Result<PathBuf, ShardPathError> {
    if name.is_empty() {
        return Err(ShardPathError::Empty);
    }
    let mut normalised = PathBuf::new();
    let mut depth = 0usize;
    for component in Path::new(name).components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err(ShardPathError::Absolute),
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1).ok_or(ShardPathError::OutsideFolder)?;
                normalised.pop();
            }
            Component::Normal(part) => {
                depth += 1;
                normalised.push(part);
            }
        }
    }
    if depth == 0 {
        // "." or "a/..": the folder itself, never a file.
        return Err(ShardPathError::NotRegularFile { kind: "directory" });
    }
    Ok(normalised)
}

/// Opens the file `name` (as a model lists it) inside `folder`, enforcing the rules of this
/// module. `folder` itself is trusted: the user chose it.
pub fn open_in_folder(folder: &Path, name: &str) -> Result<OpenedFile, ShardPathError> {
    let relative = normalise_relative_name(name)?;
    let path = folder.join(name);
    let folder_resolved = folder.canonicalize().map_err(io_error)?;
    let resolved = folder_resolved
        .join(&relative)
        .canonicalize()
        .map_err(io_error)?;
    if !resolved.starts_with(&folder_resolved) {
        return Err(ShardPathError::LinkOutsideFolder {
            resolved,
            folder: folder_resolved,
        });
    }
    let (file, size) = open_regular(&resolved)?;
    Ok(OpenedFile { path, file, size })
}

/// Opens `path` read-only if it is a regular file: checked before opening (so a FIFO is never
/// opened), opened without blocking, and checked again on the open file. For files the user
/// named directly as well as for names a model lists (after [`open_in_folder`]'s checks).
pub fn open_regular(path: &Path) -> Result<(File, u64), ShardPathError> {
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    check_regular(&metadata)?;
    let file = non_blocking_read_only().open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    check_regular(&metadata)?;
    Ok((file, metadata.len()))
}

fn non_blocking_read_only() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options
}

fn check_regular(metadata: &std::fs::Metadata) -> Result<(), ShardPathError> {
    if metadata.is_file() {
        return Ok(());
    }
    Err(ShardPathError::NotRegularFile {
        kind: file_kind(&metadata.file_type()),
    })
}

fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_socket() {
            return "socket";
        }
    }
    if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

fn io_error(error: std::io::Error) -> ShardPathError {
    if error.kind() == std::io::ErrorKind::NotFound {
        ShardPathError::NotFound
    } else {
        ShardPathError::Io(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_on_their_words() {
        assert_eq!(
            normalise_relative_name("group1-shard1of1").unwrap(),
            Path::new("group1-shard1of1")
        );
        assert_eq!(
            normalise_relative_name("./weights/../weights/a.bin").unwrap(),
            Path::new("weights/a.bin")
        );
        for (name, expected) in [
            ("", "the name is empty"),
            ("/dev/zero", "absolute"),
            ("../x", "outside"),
            ("a/../../x", "outside"),
            ("../../../../etc/hostname", "outside"),
            (".", "directory"),
            ("a/..", "directory"),
        ] {
            let error = normalise_relative_name(name).unwrap_err().to_string();
            assert!(error.contains(expected), "{name:?}: {error}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_fifos_devices_and_directories_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::write(folder.path().join("shard"), b"abc").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), folder.path().join("link"))
            .unwrap();
        std::os::unix::fs::symlink("shard", folder.path().join("inner-link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", folder.path().join("zero")).unwrap();
        std::fs::create_dir(folder.path().join("sub")).unwrap();
        let fifo = folder.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

        let opened = open_in_folder(folder.path(), "shard").unwrap();
        assert_eq!(opened.size, 3);
        assert_eq!(open_in_folder(folder.path(), "inner-link").unwrap().size, 3);
        let refused = |name: &str| open_in_folder(folder.path(), name).unwrap_err().to_string();
        assert!(
            refused("link").contains("symbolic link"),
            "{}",
            refused("link")
        );
        assert!(refused("zero").contains("symbolic link"));
        assert!(refused("fifo").contains("FIFO"));
        assert!(refused("sub").contains("directory"));
        assert!(refused("missing").contains("no such file"));
        assert!(matches!(
            open_regular(Path::new("/dev/zero")),
            Err(ShardPathError::NotRegularFile {
                kind: "character device"
            })
        ));
    }
}
