//! Weight shards: map (or copy) them, check them, and build the pointer table the compiled code
//! reads.
//!
//! Compiled models hold code only; their weights stay in the web model's shard files. This module
//! opens every shard through [`crate::shard_file`] (relative names inside the weights directory,
//! regular files only), maps it read-only or copies it into private memory
//! ([`WeightLoading`]), proves it is the file the model was compiled against (size and CRC-32 of
//! the bytes the code will read), and produces one pointer per weight: straight into the mapping
//! or copy when the stored bytes already are the decoded values at an aligned offset inside one
//! file, otherwise into an owned 64-byte-aligned buffer holding the decoded values. It must never
//! write to a mapping, and never hand the code a pointer that is misaligned or outlives the store.

use std::ffi::c_void;
use std::io::Read;
use std::path::Path;

use memmap2::Mmap;

use crate::aligned::AlignedBuffer;
use crate::description::{DType, Description, Encoding, WeightSpec, MINIMUM_ALIGNMENT};
use crate::error::Error;
use crate::panels::Panels;
use crate::shard_file::{open_in_folder, OpenedFile, ShardPathError};

/// How a loaded model holds its weight shards.
///
/// A mapping shares the page cache: loading is fast and many processes running one model share
/// one copy of the weights in memory. But the mapping *is* the file: a shard truncated while the
/// model is loaded (by `truncate`, or by `cp` onto it, which truncates then writes) makes the
/// next run die of SIGBUS inside the compiled code, and a shard rewritten in place changes the
/// results of later runs without any check noticing (the CRC-32 is checked once, at load).
/// Replacing a shard by renaming a new file over it is safe: the mapping keeps the old file.
/// Hosts that cannot promise their shard files stay unchanged use [`WeightLoading::Copied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLoading {
    /// Map every shard read-only (the default). Shards must not be truncated or written in
    /// place while the model is loaded.
    #[default]
    Mapped,
    /// Read every shard into private memory at load time and check the copy: later changes to
    /// the files cannot affect the loaded model. Costs the shards' size in resident memory per
    /// loaded model, and the time to read them.
    Copied,
}

/// The shards' bytes as the store holds them.
enum Storage {
    /// One read-only mapping per file (`None` for an empty file, which cannot be mapped).
    Mapped(Vec<Option<Mmap>>),
    /// One private buffer per group, holding the group's files back to back: its whole stream
    /// in one piece, so weights that straddle two shards are still read in place.
    Copied(Vec<AlignedBuffer>),
}

impl Storage {
    /// Each group's stream as the pieces it is stored in, in stream order.
    fn streams<'storage>(&'storage self, description: &Description) -> Vec<Vec<&'storage [u8]>> {
        match self {
            Storage::Mapped(files) => description
                .weight_groups
                .iter()
                .map(|group| {
                    group
                        .files
                        .iter()
                        .map(|&file| files[file].as_deref().unwrap_or(&[]))
                        .collect()
                })
                .collect(),
            Storage::Copied(groups) => groups
                .iter()
                .map(|buffer| vec![buffer.as_slice()])
                .collect(),
        }
    }
}

/// Where the decoded values of one weight live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSource {
    /// In panels the runtime packed at load time (see [`crate::panels`]), of this many bytes.
    Packed {
        /// Bytes of the owned buffer.
        bytes: usize,
    },
    /// In place: inside the mapped shard file, or inside the private copy of its group.
    InPlace,
    /// In a buffer the runtime decoded or copied at load time, of this many bytes.
    Decoded {
        /// Bytes of the owned buffer.
        bytes: usize,
    },
}

/// The shards (mapped or copied), all decoded weights, and the pointer table into them.
pub(crate) struct WeightStore {
    /// Kept alive for the pointers into it.
    _storage: Storage,
    /// Kept alive for the pointers into them.
    _decoded: Vec<AlignedBuffer>,
    /// One pointer per weight, in description order.
    pointers: Vec<*const c_void>,
    /// Where each weight came from, in description order.
    sources: Vec<WeightSource>,
}

// SAFETY: the pointers point into read-only mappings and buffers owned by this same store, which
// are never written after construction; sharing or sending them is as safe as sharing `&[u8]`.
unsafe impl Send for WeightStore {}
// SAFETY: as above; nothing in the store is mutated after `load` returns.
unsafe impl Sync for WeightStore {}

impl WeightStore {
    /// Opens, maps or copies, and checks every shard of `description` under `weights_dir`, then
    /// decodes the weights.
    pub(crate) fn load(
        description: &Description,
        weights_dir: &Path,
        loading: WeightLoading,
    ) -> Result<WeightStore, Error> {
        // Every file is opened and its size checked before any is mapped or read, so a refused
        // name or a huge file costs nothing.
        let mut files = Vec::with_capacity(description.weight_files.len());
        for weight_file in &description.weight_files {
            let opened = open_in_folder(weights_dir, &weight_file.path).map_err(|reason| {
                let path = weights_dir.join(&weight_file.path);
                match reason {
                    ShardPathError::NotFound => Error::WeightFileUnreadable {
                        path,
                        source: std::io::ErrorKind::NotFound.into(),
                    },
                    ShardPathError::Io(source) => Error::WeightFileUnreadable { path, source },
                    reason => Error::WeightFileRefused { path, reason },
                }
            })?;
            if opened.size != weight_file.size {
                return Err(Error::WeightFileSize {
                    path: opened.path,
                    expected: weight_file.size,
                    found: opened.size,
                });
            }
            files.push(opened);
        }
        let storage = match loading {
            WeightLoading::Mapped => map_files(description, &files)?,
            WeightLoading::Copied => copy_groups(description, &files)?,
        };

        let streams = storage.streams(description);
        let mut decoded = Vec::new();
        let mut pointers = Vec::with_capacity(description.weights.len());
        let mut sources = Vec::with_capacity(description.weights.len());
        for weight in &description.weights {
            let stored = locate(description, &streams[weight.group], weight)?;
            // A packed weight's mapped pages, released once it is packed.
            let mapped: Vec<(*const u8, usize)> = match loading {
                WeightLoading::Copied => Vec::new(),
                _ if weight.panels.is_none() => Vec::new(),
                _ => stored
                    .pieces()
                    .iter()
                    .map(|piece| (piece.as_ptr(), piece.len()))
                    .collect(),
            };
            if let Some(panels) = &weight.panels {
                let packed = if stored_as_decoded(weight) {
                    // float32 as stored: packed straight from the mapped (or copied) pieces.
                    // A decoded copy first would cost, for a weight split across shards, its
                    // size again at the peak, and leave the allocator holding it afterwards.
                    pack_stored(panels, &stored)?
                } else {
                    // float16 or quantized: decoded into a transient buffer first.
                    let mut values = decode(weight, &stored.bytes())?;
                    pack(panels, bytemuck_f32(values.as_mut_slice()))?
                };
                // The weight's mapped pages are not read again.
                for (start, length) in mapped {
                    release_pages(start, length);
                }
                pointers.push(packed.as_ptr().cast::<c_void>());
                sources.push(WeightSource::Packed {
                    bytes: packed.len(),
                });
                decoded.push(packed);
                continue;
            }
            let (pointer, source, buffer) = match in_place_pointer(weight, &stored) {
                Some(pointer) => (pointer, WeightSource::InPlace, None),
                None => {
                    let buffer = match stored {
                        // Pieces of a weight stored as decoded: concatenated straight into its
                        // buffer (no intermediate copy, which for a large weight doubled the
                        // peak memory).
                        StoredBytes::Pieces(pieces) if stored_as_decoded(weight) => {
                            concatenate(&pieces)?
                        }
                        stored => decode(weight, &stored.bytes())?,
                    };
                    let source = WeightSource::Decoded {
                        bytes: buffer.len(),
                    };
                    (buffer.as_ptr().cast::<c_void>(), source, Some(buffer))
                }
            };
            pointers.push(pointer);
            sources.push(source);
            decoded.extend(buffer);
        }
        drop(streams);
        Ok(WeightStore {
            _storage: storage,
            _decoded: decoded,
            pointers,
            sources,
        })
    }

    /// The pointer array passed to `PREFIX_run`.
    pub(crate) fn pointers(&self) -> *const *const c_void {
        self.pointers.as_ptr()
    }

    /// Where each weight's values live, in description order.
    pub(crate) fn sources(&self) -> &[WeightSource] {
        &self.sources
    }
}

/// Checks one file's bytes against the CRC-32 the model was compiled with.
fn check_checksum(file: &OpenedFile, expected: u32, bytes: &[u8]) -> Result<(), Error> {
    let found = crc32fast::hash(bytes);
    if found != expected {
        return Err(Error::WeightFileChecksum {
            path: file.path.clone(),
            expected,
            found,
        });
    }
    Ok(())
}

/// Maps every opened file read-only and checks its CRC-32 on the mapping.
fn map_files(description: &Description, files: &[OpenedFile]) -> Result<Storage, Error> {
    let mut mappings = Vec::with_capacity(files.len());
    for (file, spec) in files.iter().zip(&description.weight_files) {
        if file.size == 0 {
            check_checksum(file, spec.crc32, &[])?;
            mappings.push(None);
            continue;
        }
        // SAFETY: the mapping is read-only and private to this process. It stays valid only
        // while nobody truncates or rewrites the file: the documented contract of
        // `WeightLoading::Mapped` (README, docs/abi.md, the C header); `WeightLoading::Copied`
        // is the choice for hosts that cannot promise it.
        let mapping =
            unsafe { Mmap::map(&file.file) }.map_err(|source| Error::WeightFileUnreadable {
                path: file.path.clone(),
                source,
            })?;
        if mapping.len() as u64 != spec.size {
            return Err(Error::WeightFileSize {
                path: file.path.clone(),
                expected: spec.size,
                found: mapping.len() as u64,
            });
        }
        check_checksum(file, spec.crc32, &mapping)?;
        mappings.push(Some(mapping));
    }
    Ok(Storage::Mapped(mappings))
}

/// Reads each group's files, back to back, into one private buffer per group, and checks each
/// file's CRC-32 on the copy (so the code runs on exactly the bytes that were checked). Each file
/// is read up to the size it had when opened: a file that shrank meanwhile is an error.
fn copy_groups(description: &Description, files: &[OpenedFile]) -> Result<Storage, Error> {
    let mut groups = Vec::with_capacity(description.weight_groups.len());
    for (index, group) in description.weight_groups.iter().enumerate() {
        let size = usize::try_from(description.group_stream_size(index)).map_err(|_| {
            Error::Allocation {
                bytes: usize::MAX,
                alignment: MINIMUM_ALIGNMENT,
            }
        })?;
        let mut buffer = AlignedBuffer::zeroed(size, MINIMUM_ALIGNMENT)?;
        let mut start = 0usize;
        for &file_index in &group.files {
            let (file, spec) = (&files[file_index], &description.weight_files[file_index]);
            // Sizes were checked against the description, whose group size is their sum.
            let end = start + spec.size as usize;
            let target = &mut buffer.as_mut_slice()[start..end];
            (&file.file)
                .read_exact(target)
                .map_err(|source| Error::WeightFileUnreadable {
                    path: file.path.clone(),
                    source,
                })?;
            check_checksum(file, spec.crc32, target)?;
            start = end;
        }
        groups.push(buffer);
    }
    Ok(Storage::Copied(groups))
}

/// The stored bytes of one weight: one slice of one file, or several pieces across files.
enum StoredBytes<'files> {
    Contiguous(&'files [u8]),
    Pieces(Vec<&'files [u8]>),
}

impl<'files> StoredBytes<'files> {
    /// The pieces, in order (one for contiguous bytes).
    fn pieces(&self) -> &[&'files [u8]] {
        match self {
            StoredBytes::Contiguous(bytes) => std::slice::from_ref(bytes),
            StoredBytes::Pieces(pieces) => pieces,
        }
    }

    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            StoredBytes::Contiguous(bytes) => std::borrow::Cow::Borrowed(bytes),
            StoredBytes::Pieces(pieces) => std::borrow::Cow::Owned(pieces.concat()),
        }
    }
}

/// Finds a weight's stored bytes in its group's stream (given as the pieces it is stored in),
/// checking they lie inside it.
fn locate<'files>(
    description: &Description,
    stream: &[&'files [u8]],
    weight: &WeightSpec,
) -> Result<StoredBytes<'files>, Error> {
    let stream_size = description.group_stream_size(weight.group);
    let end = weight.offset.checked_add(weight.byte_size);
    if end.is_none_or(|end| end > stream_size) {
        return Err(Error::WeightOutOfRange {
            name: weight.name.clone(),
            group: weight.group,
            offset: weight.offset,
            byte_size: weight.byte_size,
            stream_size,
        });
    }
    let start = weight.offset;
    let end = start + weight.byte_size;
    let mut pieces = Vec::new();
    let mut piece_offset = 0u64;
    for bytes in stream {
        let piece_end = piece_offset + bytes.len() as u64;
        let from = start.max(piece_offset);
        let to = end.min(piece_end);
        if from < to {
            pieces.push(&bytes[(from - piece_offset) as usize..(to - piece_offset) as usize]);
        }
        piece_offset = piece_end;
    }
    Ok(match pieces.len() {
        0 => StoredBytes::Contiguous(&[]),
        1 => StoredBytes::Contiguous(pieces[0]),
        _ => StoredBytes::Pieces(pieces),
    })
}

/// Whether the stored bytes of `weight` are its values as the code reads them.
fn stored_as_decoded(weight: &WeightSpec) -> bool {
    cfg!(target_endian = "little")
        && weight.encoding.is_stored_as_decoded()
        && weight.dtype != DType::Bool
}

/// Lets the kernel drop the whole pages of a read-only file mapping inside `start..start +
/// length` from this process's resident memory: the bytes stay what the file holds (a later
/// read faults them in again), so other weights sharing an edge page are unaffected. Advice
/// only: a failure changes nothing.
fn release_pages(start: *const u8, length: usize) {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let first = (start as usize).next_multiple_of(page);
    let end = (start as usize + length) / page * page;
    if end > first {
        // SAFETY: `first..end` lies inside a read-only mapping of a file (the caller's
        // contiguous stored bytes of a mapped shard); MADV_DONTNEED on such a mapping only drops
        // pages that the kernel re-reads from the file on the next access.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
    }
}

/// `values` (as stored) packed into panels in a new 64-byte aligned buffer.
fn pack(panels: &Panels, values: &[f32]) -> Result<AlignedBuffer, Error> {
    let mut buffer = packed_buffer(panels)?;
    panels.pack(values, bytemuck_f32(buffer.as_mut_slice()));
    Ok(buffer)
}

/// A zeroed, 64-byte aligned buffer for the packed form.
fn packed_buffer(panels: &Panels) -> Result<AlignedBuffer, Error> {
    let count = panels.packed_len().unwrap_or(usize::MAX);
    AlignedBuffer::zeroed(count.saturating_mul(4), 64)
}

/// A float32 weight packed from its stored little-endian bytes, wherever the pieces split it.
fn pack_stored(panels: &Panels, stored: &StoredBytes<'_>) -> Result<AlignedBuffer, Error> {
    let mut buffer = packed_buffer(panels)?;
    panels.pack_le_bytes(stored.pieces(), bytemuck_f32(buffer.as_mut_slice()));
    Ok(buffer)
}

/// An aligned byte buffer as f32s.
fn bytemuck_f32(bytes: &mut [u8]) -> &mut [f32] {
    // SAFETY: the buffer is 64-byte aligned (so 4-byte aligned) and any bit pattern is an f32;
    // the length is rounded down to whole elements.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<f32>(), bytes.len() / 4) }
}

/// The pieces, back to back, in a new aligned buffer.
fn concatenate(pieces: &[&[u8]]) -> Result<AlignedBuffer, Error> {
    let length = pieces.iter().map(|piece| piece.len()).sum();
    let mut buffer = AlignedBuffer::zeroed(length, MINIMUM_ALIGNMENT)?;
    let mut start = 0;
    for piece in pieces {
        buffer.as_mut_slice()[start..start + piece.len()].copy_from_slice(piece);
        start += piece.len();
    }
    Ok(buffer)
}

/// A pointer into the mapping or copy, when the stored bytes can be used as they are.
fn in_place_pointer(weight: &WeightSpec, stored: &StoredBytes<'_>) -> Option<*const c_void> {
    if cfg!(target_endian = "big") || !weight.encoding.is_stored_as_decoded() {
        return None;
    }
    let StoredBytes::Contiguous(bytes) = stored else {
        return None;
    };
    if bytes.is_empty() || (bytes.as_ptr() as usize) & (weight.dtype.size_in_bytes() - 1) != 0 {
        return None;
    }
    if weight.dtype == DType::Bool && bytes.iter().any(|&byte| byte > 1) {
        // The code may rely on bools being 0 or 1; normalise a copy instead.
        return None;
    }
    Some(bytes.as_ptr().cast::<c_void>())
}

/// Decodes a weight's stored bytes into a new aligned buffer of its dtype.
fn decode(weight: &WeightSpec, stored: &[u8]) -> Result<AlignedBuffer, Error> {
    let element_count = stored.len() / weight.encoding.stored_element_size();
    let mut buffer = AlignedBuffer::zeroed(
        element_count * weight.dtype.size_in_bytes(),
        MINIMUM_ALIGNMENT,
    )?;
    let output = buffer.as_mut_slice();
    match (weight.encoding, weight.dtype) {
        (Encoding::Float32 | Encoding::Int32, _) => {
            for (target, source) in output.chunks_exact_mut(4).zip(stored.chunks_exact(4)) {
                let value = u32::from_le_bytes([source[0], source[1], source[2], source[3]]);
                target.copy_from_slice(&value.to_ne_bytes());
            }
        }
        (Encoding::Bool, _) => {
            for (target, &source) in output.iter_mut().zip(stored) {
                *target = u8::from(source != 0);
            }
        }
        (Encoding::Float16, _) => {
            for (target, source) in output.chunks_exact_mut(4).zip(stored.chunks_exact(2)) {
                let value = half::f16::from_le_bytes([source[0], source[1]]).to_f32();
                target.copy_from_slice(&value.to_ne_bytes());
            }
        }
        (Encoding::Uint8 { scale, min }, dtype) => {
            let quantised = stored.iter().map(|&byte| u32::from(byte));
            write_affine(output, quantised, scale, min, dtype);
        }
        (Encoding::Uint16 { scale, min }, dtype) => {
            let quantised = stored
                .chunks_exact(2)
                .map(|pair| u32::from(u16::from_le_bytes([pair[0], pair[1]])));
            write_affine(output, quantised, scale, min, dtype);
        }
    }
    Ok(buffer)
}

/// Writes `q * scale + min` for each quantised `q`, as float32 or as rounded int32.
fn write_affine(
    output: &mut [u8],
    quantised: impl Iterator<Item = u32>,
    scale: f64,
    min: f64,
    dtype: DType,
) {
    for (target, q) in output.chunks_exact_mut(4).zip(quantised) {
        // Double arithmetic on the manifest's numbers, then rounding, as TensorFlow.js's
        // converter reader does (and as the compiler decodes for constant folding).
        let value = q as f64 * scale + min;
        let bytes = match dtype {
            // JavaScript's Math.round: halves go up.
            DType::Int32 => ((value + 0.5).floor() as i32).to_ne_bytes(),
            DType::Float32 | DType::Bool => (value as f32).to_ne_bytes(),
        };
        target.copy_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(encoding: Encoding, dtype: DType, count: usize) -> WeightSpec {
        WeightSpec {
            name: "w".to_string(),
            dtype,
            shape: vec![count],
            group: 0,
            offset: 0,
            byte_size: (count * encoding.stored_element_size()) as u64,
            encoding,
            panels: None,
        }
    }

    fn floats(buffer: &AlignedBuffer) -> Vec<f32> {
        buffer
            .as_slice()
            .chunks_exact(4)
            .map(|chunk| f32::from_ne_bytes(chunk.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn packed_weights_read_their_pieces_wherever_files_split_them() {
        let values: Vec<f32> = (0..21).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for transposed in [false, true] {
            let (rows, columns) = if transposed { (7, 3) } else { (3, 7) };
            let panels = Panels {
                winograd: None,
                rows,
                columns,
                transposed,
            };
            let mut expected = vec![0f32; panels.packed_len().unwrap()];
            panels.pack(&values, &mut expected);
            let packed = |stored: StoredBytes<'_>| floats(&pack_stored(&panels, &stored).unwrap());
            assert_eq!(packed(StoredBytes::Contiguous(&bytes)), expected);
            // Split between rows, between floats inside a row, inside a float, and in three.
            for splits in [vec![28], vec![8], vec![13], vec![5, 40], vec![28, 56]] {
                let mut pieces = Vec::new();
                let mut start = 0;
                for &split in splits.iter().chain([&bytes.len()]) {
                    pieces.push(&bytes[start..split]);
                    start = split;
                }
                let stored = StoredBytes::Pieces(pieces);
                assert_eq!(packed(stored), expected, "{transposed} split at {splits:?}");
            }
        }
    }

    #[test]
    fn float16_decodes_to_float32() {
        let stored: Vec<u8> = [1.5f32, -2.0, 0.0]
            .iter()
            .flat_map(|&value| half::f16::from_f32(value).to_le_bytes())
            .collect();
        let buffer = decode(&weight(Encoding::Float16, DType::Float32, 3), &stored).unwrap();
        assert_eq!(floats(&buffer), vec![1.5, -2.0, 0.0]);
        assert_eq!(buffer.as_ptr() as usize % 64, 0);
    }

    #[test]
    fn uint16_affine_decodes_to_float32_and_int32() {
        let encoding = Encoding::Uint16 {
            scale: 0.5,
            min: -1.0,
        };
        let stored: Vec<u8> = [0u16, 3, 1000]
            .iter()
            .flat_map(|q| q.to_le_bytes())
            .collect();
        let buffer = decode(&weight(encoding, DType::Float32, 3), &stored).unwrap();
        assert_eq!(floats(&buffer), vec![-1.0, 0.5, 499.0]);
        let buffer = decode(&weight(encoding, DType::Int32, 3), &stored).unwrap();
        let integers: Vec<i32> = buffer
            .as_slice()
            .chunks_exact(4)
            .map(|chunk| i32::from_ne_bytes(chunk.try_into().unwrap()))
            .collect();
        assert_eq!(integers, vec![-1, 1, 499]);
    }

    #[test]
    fn bools_are_normalised() {
        let buffer = decode(&weight(Encoding::Bool, DType::Bool, 3), &[0, 7, 1]).unwrap();
        assert_eq!(buffer.as_slice(), &[0, 1, 1]);
    }
}
