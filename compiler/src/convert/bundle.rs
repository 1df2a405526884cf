//! Reads a TensorFlow tensor bundle (a checkpoint): `PREFIX.index`, a LevelDB-style sorted-string
//! table mapping tensor names to [`BundleEntryProto`]s, and `PREFIX.data-NNNNN-of-MMMMM` shards
//! holding the bytes. Only what freezing needs: list the keys, read one tensor by key.
//!
//! The index is parsed into memory (it is small); data shards are opened on demand, inside the
//! bundle's folder only, and each tensor's bytes are checked against the entry's masked CRC-32C.
//! Every offset read from the file is bounds-checked: a hostile index yields an error, never a
//! panic or a huge allocation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;
use tfjsc_proto::tensorflow::{BundleEntryProto, BundleHeaderProto, DataType};
use tfjsc_runtime::shard_file::open_in_folder;

use super::error::ConvertError;
use super::tensor::Tensor;

/// The footer magic of a LevelDB table, as TensorFlow's `table_builder` writes it.
const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const FOOTER_LENGTH: usize = 48;

/// An opened tensor bundle.
pub struct Bundle {
    folder: PathBuf,
    prefix: String,
    index_path: PathBuf,
    header: BundleHeaderProto,
    entries: BTreeMap<Vec<u8>, BundleEntryProto>,
    shards: Vec<Option<File>>,
}

impl Bundle {
    /// Opens `folder/PREFIX.index` (e.g. `variables/variables`).
    pub fn open(folder: &Path, prefix: &str) -> Result<Bundle, ConvertError> {
        let index_name = format!("{prefix}.index");
        let index_path = folder.join(&index_name);
        let opened = open_in_folder(folder, &index_name).map_err(|error| ConvertError::File {
            path: index_path.clone(),
            message: format!("cannot open the variables index: {error}"),
        })?;
        let mut bytes = Vec::new();
        let mut file = opened.file;
        file.read_to_end(&mut bytes)
            .map_err(|error| ConvertError::io(&index_path, error))?;
        let corrupt = |message: String| ConvertError::Corrupt {
            path: index_path.clone(),
            what: "tensor bundle index",
            message,
        };
        let table = read_table(&bytes).map_err(corrupt)?;
        let mut header = None;
        let mut entries = BTreeMap::new();
        for (key, value) in table {
            if key.is_empty() {
                header = Some(
                    BundleHeaderProto::decode(value)
                        .map_err(|error| corrupt(format!("header: {error}")))?,
                );
                continue;
            }
            let entry = BundleEntryProto::decode(value).map_err(|error| {
                corrupt(format!(
                    "entry {:?}: {error}",
                    String::from_utf8_lossy(&key)
                ))
            })?;
            entries.insert(key, entry);
        }
        let header = header.ok_or_else(|| corrupt("no header entry".to_string()))?;
        if header.endianness != 0 {
            return Err(corrupt("big-endian bundles are not supported".to_string()));
        }
        if !(1..=65_536).contains(&header.num_shards) {
            return Err(corrupt(format!(
                "{} data shards declared",
                header.num_shards
            )));
        }
        let shards = (0..header.num_shards).map(|_| None).collect();
        Ok(Bundle {
            folder: folder.to_path_buf(),
            prefix: prefix.to_string(),
            index_path,
            header,
            entries,
            shards,
        })
    }

    /// The index file's path (for error messages).
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// Every tensor name in the bundle, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries
            .keys()
            .filter_map(|key| std::str::from_utf8(key).ok())
            .filter(|key| !key.starts_with('\0'))
    }

    /// Whether the bundle holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key.as_bytes())
    }

    /// Reads the tensor stored under `key`, or `None` when there is none.
    pub fn read(&mut self, key: &str) -> Result<Option<Tensor>, ConvertError> {
        self.read_key(key.as_bytes())
    }

    fn read_key(&mut self, raw_key: &[u8]) -> Result<Option<Tensor>, ConvertError> {
        let key = String::from_utf8_lossy(raw_key).into_owned();
        let key = key.as_str();
        let Some(entry) = self.entries.get(raw_key).cloned() else {
            return Ok(None);
        };
        let shard_name = format!(
            "{}.data-{:05}-of-{:05}",
            self.prefix, entry.shard_id, self.header.num_shards
        );
        let shard_path = self.folder.join(&shard_name);
        let corrupt = |message: String| ConvertError::Corrupt {
            path: shard_path.clone(),
            what: "tensor bundle data shard",
            message: format!("tensor {key:?}: {message}"),
        };
        if !entry.slices.is_empty() {
            return self.read_sliced(key, &entry).map(Some);
        }
        let shard = usize::try_from(entry.shard_id)
            .ok()
            .filter(|&shard| shard < self.shards.len())
            .ok_or_else(|| corrupt(format!("shard {} does not exist", entry.shard_id)))?;
        if self.shards[shard].is_none() {
            let opened =
                open_in_folder(&self.folder, &shard_name).map_err(|error| ConvertError::File {
                    path: shard_path.clone(),
                    message: format!("cannot open the variables data shard: {error}"),
                })?;
            self.shards[shard] = Some(opened.file);
        }
        let Some(file) = self.shards[shard].as_mut() else {
            return Err(corrupt("shard not open".into()));
        };
        let length = file
            .metadata()
            .map_err(|error| ConvertError::io(&shard_path, error))?
            .len();
        let (offset, size) = (entry.offset as u64, entry.size as u64);
        if entry.offset < 0 || entry.size < 0 || offset.saturating_add(size) > length {
            return Err(corrupt(format!(
                "bytes {}..{} lie outside the {length}-byte file",
                entry.offset,
                entry.offset.saturating_add(entry.size)
            )));
        }
        let mut bytes = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|error| ConvertError::io(&shard_path, error))?;
        let dtype = DataType::try_from(entry.dtype).unwrap_or(DataType::DtInvalid);
        let shape: Vec<i64> = entry
            .shape
            .as_ref()
            .map(|shape| shape.dim.iter().map(|dim| dim.size).collect())
            .unwrap_or_default();
        let mismatch = || {
            corrupt(
                "checksum mismatch (the data shard is corrupt or does not belong to this index)"
                    .into(),
            )
        };
        let tensor = if dtype == DataType::DtString {
            // Strings: a varint64 length per element, the masked CRC-32C of those lengths, then
            // the bytes. The entry's CRC covers the lengths as integers, the stored length
            // checksum, and the bytes.
            let count = element_count(&shape).ok_or_else(|| corrupt("bad shape".into()))?;
            let (strings, checked) = parse_strings(&bytes, count).map_err(corrupt)?;
            if masked_crc32c(&checked) != entry.crc32c {
                return Err(mismatch());
            }
            Tensor::strings(shape, strings)
        } else {
            if masked_crc32c(&bytes) != entry.crc32c {
                return Err(mismatch());
            }
            Tensor::from_bytes(dtype, shape, bytes).map_err(corrupt)?
        };
        Ok(Some(tensor))
    }
}

impl Bundle {
    /// A tensor saved in slices (e.g. split across data shards by a shard-size policy): each
    /// slice is its own entry, under the key TensorFlow's `EncodeTensorNameSlice` builds.
    fn read_sliced(&mut self, key: &str, entry: &BundleEntryProto) -> Result<Tensor, ConvertError> {
        let index_path = self.index_path.clone();
        let corrupt = |message: String| ConvertError::Corrupt {
            path: index_path.clone(),
            what: "tensor bundle index",
            message: format!("sliced tensor {key:?}: {message}"),
        };
        let dtype = DataType::try_from(entry.dtype).unwrap_or(DataType::DtInvalid);
        let size = super::tensor::element_size(dtype)
            .ok_or_else(|| corrupt(format!("dtype {} cannot be sliced", dtype.as_str_name())))?;
        let shape: Vec<i64> = entry
            .shape
            .as_ref()
            .map(|shape| shape.dim.iter().map(|dim| dim.size).collect())
            .unwrap_or_default();
        let count = element_count(&shape).ok_or_else(|| corrupt("bad shape".into()))?;
        let mut bytes = vec![0u8; count * size];
        let mut covered = 0usize;
        for slice in &entry.slices {
            if slice.extent.len() != shape.len() {
                return Err(corrupt("slice rank differs from the tensor's".into()));
            }
            let mut starts = Vec::new();
            let mut lengths = Vec::new();
            for (extent, &dim) in slice.extent.iter().zip(&shape) {
                let length = match extent.has_length {
                    Some(
                        tfjsc_proto::tensorflow::tensor_slice_proto::extent::HasLength::Length(
                            length,
                        ),
                    ) => length,
                    None => -1,
                };
                let (start, full) = if length < 0 {
                    (0, dim)
                } else {
                    (extent.start, length)
                };
                if start < 0 || full < 0 || start.checked_add(full).is_none_or(|end| end > dim) {
                    return Err(corrupt("slice outside the tensor".into()));
                }
                starts.push((extent.start, length));
                lengths.push((start, full));
            }
            let slice_key = slice_key(key, &starts);
            let part = self
                .read_key(&slice_key)?
                .ok_or_else(|| corrupt("a slice's entry is missing".into()))?;
            let slice_shape: Vec<i64> = lengths.iter().map(|&(_, length)| length).collect();
            if part.shape != slice_shape || part.dtype != dtype {
                return Err(corrupt(format!(
                    "a slice of shape {:?} ({}) stands for extent {slice_shape:?} ({})",
                    part.shape,
                    part.dtype.as_str_name(),
                    dtype.as_str_name()
                )));
            }
            // Copy row by row along the last axis.
            let rank = shape.len();
            let row = if rank == 0 {
                1
            } else {
                lengths[rank - 1].1 as usize
            } * size;
            let rows = part.bytes.len().checked_div(row).unwrap_or(0);
            let mut position = vec![0i64; rank.saturating_sub(1)];
            for row_index in 0..rows {
                let mut offset = 0usize;
                for axis in 0..rank {
                    let coordinate = if axis + 1 == rank {
                        lengths[axis].0
                    } else {
                        lengths[axis].0 + position[axis]
                    };
                    offset = offset * shape[axis] as usize + coordinate as usize;
                }
                let target = offset * size;
                bytes[target..target + row]
                    .copy_from_slice(&part.bytes[row_index * row..(row_index + 1) * row]);
                for axis in (0..position.len()).rev() {
                    position[axis] += 1;
                    if position[axis] < lengths[axis].1 {
                        break;
                    }
                    position[axis] = 0;
                }
            }
            covered += part.bytes.len();
        }
        if covered != bytes.len() {
            return Err(corrupt("the slices do not cover the tensor exactly".into()));
        }
        Tensor::from_bytes(dtype, shape, bytes).map_err(corrupt)
    }
}

/// The bundle key of one slice (TensorFlow's `EncodeTensorNameSlice`, in OrderedCode): 0, the
/// name, the rank, then per dimension the start and length (-1 for the whole dimension).
fn slice_key(name: &str, extents: &[(i64, i64)]) -> Vec<u8> {
    let mut key = vec![0u8]; // WriteNumIncreasing(0)
    for &byte in name.as_bytes() {
        match byte {
            0x00 => key.extend_from_slice(&[0x00, 0xff]),
            0xff => key.extend_from_slice(&[0xff, 0x00]),
            other => key.push(other),
        }
    }
    key.extend_from_slice(&[0x00, 0x01]);
    write_number_increasing(&mut key, extents.len() as u64);
    for &(start, length) in extents {
        write_signed_increasing(&mut key, start);
        write_signed_increasing(&mut key, length);
    }
    key
}

fn write_number_increasing(key: &mut Vec<u8>, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    key.push((8 - skip) as u8);
    key.extend_from_slice(&bytes[skip..]);
}

fn write_signed_increasing(key: &mut Vec<u8>, value: i64) {
    const HEADER: [[u8; 2]; 11] = [
        [0, 0],
        [0x80, 0],
        [0xc0, 0],
        [0xe0, 0],
        [0xf0, 0],
        [0xf8, 0],
        [0xfc, 0],
        [0xfe, 0],
        [0xff, 0],
        [0xff, 0x80],
        [0xff, 0xc0],
    ];
    let magnitude = if value < 0 { !value } else { value } as u64;
    if magnitude < 64 {
        key.push(0x80 ^ (value as u8));
        return;
    }
    let bits = 64 - magnitude.leading_zeros() as usize;
    let length = bits / 7 + 1;
    let sign = if value < 0 { 0xff } else { 0x00 };
    let mut buffer = [sign; 10];
    buffer[2..].copy_from_slice(&value.to_be_bytes());
    let begin = 10 - length;
    buffer[begin] ^= HEADER[length][0];
    buffer[begin + 1] ^= HEADER[length][1];
    key.extend_from_slice(&buffer[begin..]);
}

fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |count, &dim| {
        usize::try_from(dim)
            .ok()
            .and_then(|dim| count.checked_mul(dim))
    })
}

/// The strings of a string entry, and the bytes its checksum covers.
fn parse_strings(bytes: &[u8], count: usize) -> Result<(Vec<Vec<u8>>, Vec<u8>), String> {
    let mut at = 0;
    let mut lengths = Vec::new();
    let mut checked = Vec::new();
    for _ in 0..count {
        let length = varint(bytes, &mut at).ok_or("truncated string lengths")?;
        // Checksummed as uint32 (uint64 only past 4 GiB), not as the varint.
        match u32::try_from(length) {
            Ok(short) => checked.extend_from_slice(&short.to_le_bytes()),
            Err(_) => checked.extend_from_slice(&length.to_le_bytes()),
        }
        lengths.push(length as usize);
    }
    let stored = bytes.get(at..at + 4).ok_or("truncated length checksum")?;
    checked.extend_from_slice(stored);
    at += 4;
    let mut strings = Vec::with_capacity(count.min(bytes.len()));
    for length in lengths {
        let end = at
            .checked_add(length)
            .filter(|&end| end <= bytes.len())
            .ok_or("string bytes past the end of the entry")?;
        strings.push(bytes[at..end].to_vec());
        checked.extend_from_slice(&bytes[at..end]);
        at = end;
    }
    Ok((strings, checked))
}

/// Reads a varint (at most 64 bits) at `*at`, advancing it.
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(slice.try_into().ok()?))
}

/// A block handle's bytes, checked to lie inside the file (with its 5-byte trailer).
fn block<'a>(file: &'a [u8], bytes: &[u8], at: &mut usize) -> Result<&'a [u8], String> {
    let offset = varint(bytes, at).ok_or("truncated block handle")? as usize;
    let size = varint(bytes, at).ok_or("truncated block handle")? as usize;
    let end = offset
        .checked_add(size)
        .filter(|&end| {
            end.checked_add(5)
                .is_some_and(|trailer| trailer <= file.len())
        })
        .ok_or_else(|| format!("block {offset}+{size} lies outside the file"))?;
    match file[end] {
        0 => Ok(&file[offset..end]),
        1 => Err("snappy-compressed blocks are not supported".to_string()),
        other => Err(format!("unknown block compression {other}")),
    }
}

/// One key and its value in a table.
pub(crate) type TableEntry<'a> = (Vec<u8>, &'a [u8]);

/// The key/value entries of one table block (prefix-compressed keys, restart array at the end).
fn block_entries(block: &[u8]) -> Result<Vec<TableEntry<'_>>, String> {
    let restarts = u32_at(block, block.len().checked_sub(4).ok_or("empty block")?)
        .ok_or("empty block")? as usize;
    let data_end = restarts
        .checked_mul(4)
        .and_then(|bytes| block.len().checked_sub(bytes + 4))
        .ok_or("restart array larger than the block")?;
    let mut entries = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut at = 0;
    while at < data_end {
        let shared = varint(block, &mut at).ok_or("truncated entry")? as usize;
        let unshared = varint(block, &mut at).ok_or("truncated entry")? as usize;
        let value_length = varint(block, &mut at).ok_or("truncated entry")? as usize;
        if shared > key.len() {
            return Err("entry shares more key bytes than the previous key has".into());
        }
        let key_end = at
            .checked_add(unshared)
            .filter(|&end| end <= data_end)
            .ok_or("entry key past the block")?;
        let value_end = key_end
            .checked_add(value_length)
            .filter(|&end| end <= data_end)
            .ok_or("entry value past the block")?;
        key.truncate(shared);
        key.extend_from_slice(&block[at..key_end]);
        entries.push((key.clone(), &block[key_end..value_end]));
        at = value_end;
    }
    Ok(entries)
}

/// Every key/value of a table file, in file order (sorted by key).
pub(crate) fn read_table(file: &[u8]) -> Result<Vec<TableEntry<'_>>, String> {
    if file.len() < FOOTER_LENGTH {
        return Err(format!("{} bytes, shorter than a table footer", file.len()));
    }
    let footer = &file[file.len() - FOOTER_LENGTH..];
    let magic = u64::from(u32_at(footer, 40).unwrap_or(0))
        | (u64::from(u32_at(footer, 44).unwrap_or(0)) << 32);
    if magic != TABLE_MAGIC {
        return Err("no table magic at the end (truncated?)".into());
    }
    let mut at = 0;
    let _metaindex = block(file, footer, &mut at)?;
    let index = block(file, footer, &mut at)?;
    let mut entries = Vec::new();
    for (_, handle) in block_entries(index)? {
        let mut at = 0;
        let data = block(file, handle, &mut at)?;
        entries.extend(block_entries(data)?);
    }
    Ok(entries)
}

/// CRC-32C (Castagnoli), as LevelDB and TensorFlow use it.
fn crc32c(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [[0u32; 256]; 8];
        for index in 0..256u32 {
            let mut crc = index;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
            table[0][index as usize] = crc;
        }
        for index in 0..256 {
            for slice in 1..8 {
                let previous = table[slice - 1][index];
                table[slice][index] = (previous >> 8) ^ table[0][(previous & 0xff) as usize];
            }
        }
        table
    });
    let mut crc = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let low = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ crc;
        let high = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        crc = table[7][(low & 0xff) as usize]
            ^ table[6][((low >> 8) & 0xff) as usize]
            ^ table[5][((low >> 16) & 0xff) as usize]
            ^ table[4][(low >> 24) as usize]
            ^ table[3][(high & 0xff) as usize]
            ^ table[2][((high >> 8) & 0xff) as usize]
            ^ table[1][((high >> 16) & 0xff) as usize]
            ^ table[0][(high >> 24) as usize];
    }
    for &byte in chunks.remainder() {
        crc = (crc >> 8) ^ table[0][((crc ^ u32::from(byte)) & 0xff) as usize];
    }
    !crc
}

/// LevelDB's masked CRC (stored CRCs are masked so CRCs of CRCs stay well distributed).
fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn hostile_tables_are_errors() {
        assert!(read_table(b"short").is_err());
        let mut file = vec![0u8; 100];
        assert!(read_table(&file).unwrap_err().contains("magic"));
        let footer_start = file.len() - FOOTER_LENGTH;
        file[footer_start..footer_start + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x0f]);
        file[92..96].copy_from_slice(&0x8b80_fb57u32.to_le_bytes());
        file[96..100].copy_from_slice(&0xdb47_7524u32.to_le_bytes());
        assert!(read_table(&file).is_err());
    }

    #[test]
    fn block_entries_share_key_prefixes() {
        // Two entries: "ab" -> "1", then shared 1 + "c" -> "2"; one restart at 0.
        let mut block = vec![0, 2, 1, b'a', b'b', b'1', 1, 1, 1, b'c', b'2'];
        block.extend_from_slice(&0u32.to_le_bytes());
        block.extend_from_slice(&1u32.to_le_bytes());
        let entries = block_entries(&block).unwrap();
        assert_eq!(entries[0], (b"ab".to_vec(), &b"1"[..]));
        assert_eq!(entries[1], (b"ac".to_vec(), &b"2"[..]));
    }
}
