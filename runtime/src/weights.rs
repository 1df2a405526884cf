//! Weight shards: map them, check them, and build the pointer table the compiled code reads.
//!
//! Compiled models hold code only; their weights stay in the web model's shard files. This module
//! maps every shard read-only, proves it is the file the model was compiled against (size and
//! CRC-32), and produces one pointer per weight: straight into the mapping when the stored bytes
//! already are the decoded values at an aligned offset inside one file, otherwise into an owned
//! 64-byte-aligned buffer holding the decoded values. It must never write to a mapping, and never
//! hand the code a pointer that is misaligned or outlives the store.

use std::ffi::c_void;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::aligned::AlignedBuffer;
use crate::description::{DType, Description, Encoding, WeightSpec, MINIMUM_ALIGNMENT};
use crate::error::Error;

/// The bytes of one shard file.
enum FileBytes {
    /// A read-only mapping of the whole file.
    Mapped(Mmap),
    /// An empty file (which cannot be mapped).
    Empty,
}

impl FileBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(mapping) => mapping,
            FileBytes::Empty => &[],
        }
    }
}

/// Where the decoded values of one weight live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSource {
    /// In place, inside the mapped shard file.
    Mapped,
    /// In a buffer the runtime decoded or copied at load time, of this many bytes.
    Decoded {
        /// Bytes of the owned buffer.
        bytes: usize,
    },
}

/// All mapped shards, all decoded weights, and the pointer table into them.
pub(crate) struct WeightStore {
    /// Kept alive for the pointers into them.
    _files: Vec<FileBytes>,
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
    /// Maps and checks every shard of `description` under `weights_dir`, then decodes the weights.
    pub(crate) fn load(
        description: &Description,
        weights_dir: &Path,
    ) -> Result<WeightStore, Error> {
        let mut files = Vec::with_capacity(description.weight_files.len());
        for weight_file in &description.weight_files {
            let path = weights_dir.join(&weight_file.path);
            let bytes = map_file(&path)?;
            let found_size = bytes.bytes().len() as u64;
            if found_size != weight_file.size {
                return Err(Error::WeightFileSize {
                    path,
                    expected: weight_file.size,
                    found: found_size,
                });
            }
            let found_checksum = crc32fast::hash(bytes.bytes());
            if found_checksum != weight_file.crc32 {
                return Err(Error::WeightFileChecksum {
                    path,
                    expected: weight_file.crc32,
                    found: found_checksum,
                });
            }
            files.push(bytes);
        }

        let mut decoded = Vec::new();
        let mut pointers = Vec::with_capacity(description.weights.len());
        let mut sources = Vec::with_capacity(description.weights.len());
        for weight in &description.weights {
            let stored = locate(description, &files, weight)?;
            if let Some(pointer) = in_place_pointer(weight, &stored) {
                pointers.push(pointer);
                sources.push(WeightSource::Mapped);
                continue;
            }
            let buffer = decode(weight, &stored.bytes())?;
            pointers.push(buffer.as_ptr().cast::<c_void>());
            sources.push(WeightSource::Decoded {
                bytes: buffer.len(),
            });
            decoded.push(buffer);
        }
        Ok(WeightStore {
            _files: files,
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

/// Maps one file read-only; an empty file gets no mapping.
fn map_file(path: &Path) -> Result<FileBytes, Error> {
    let unreadable = |source| Error::WeightFileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    let length = file.metadata().map_err(unreadable)?.len();
    if length == 0 {
        return Ok(FileBytes::Empty);
    }
    // SAFETY: the mapping is read-only and private to this process. Shards are treated as
    // immutable while a model is loaded (as the ABI requires); a file truncated by another process
    // behind our back is outside what any mmap-based reader can defend against.
    let mapping = unsafe { Mmap::map(&file) }.map_err(unreadable)?;
    Ok(FileBytes::Mapped(mapping))
}

/// The stored bytes of one weight: one slice of one file, or several pieces across files.
enum StoredBytes<'files> {
    Contiguous(&'files [u8]),
    Pieces(Vec<&'files [u8]>),
}

impl StoredBytes<'_> {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            StoredBytes::Contiguous(bytes) => std::borrow::Cow::Borrowed(bytes),
            StoredBytes::Pieces(pieces) => std::borrow::Cow::Owned(pieces.concat()),
        }
    }
}

/// Finds a weight's stored bytes in its group's stream, checking they lie inside it.
fn locate<'files>(
    description: &Description,
    files: &'files [FileBytes],
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
    let mut file_start = 0u64;
    // The group index was validated with the description; the file indices too.
    for &file_index in &description.weight_groups[weight.group].files {
        let bytes = files[file_index].bytes();
        let file_end = file_start + bytes.len() as u64;
        let piece_start = start.max(file_start);
        let piece_end = end.min(file_end);
        if piece_start < piece_end {
            let from = (piece_start - file_start) as usize;
            let to = (piece_end - file_start) as usize;
            pieces.push(&bytes[from..to]);
        }
        file_start = file_end;
    }
    Ok(match pieces.len() {
        0 => StoredBytes::Contiguous(&[]),
        1 => StoredBytes::Contiguous(pieces[0]),
        _ => StoredBytes::Pieces(pieces),
    })
}

/// A pointer into the mapping, when the stored bytes can be used as they are.
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
