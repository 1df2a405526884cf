//! Reads a TensorFlow tensor bundle (a checkpoint): `PREFIX.index`, a LevelDB-style sorted-string
//! table mapping tensor names to [`BundleEntryProto`]s, and `PREFIX.data-NNNNN-of-MMMMM` shards
//! holding the bytes. Only what freezing needs: list the keys, read one tensor by key.
//!
//! The index is parsed into memory (it is small); its blocks are checked against their trailers'
//! masked CRC-32C (as TensorFlow's `ReadBlock` does) and may be stored as they are or
//! snappy-compressed (raw snappy, LevelDB's block type 1; TensorFlow's bundle writer turns
//! compression off, its table builder does not). Data shards are opened on demand, inside the
//! bundle's folder only, and each tensor's bytes are checked against the entry's masked CRC-32C.
//! Every offset read from the file is bounds-checked and every decompressed size is checked
//! before allocating (at most `SNAPPY_MAX_EXPANSION` times the block, and the file, size), as are
//! the entries' bytes (at most as many times the file's size): a hostile index yields an error,
//! never a panic or a huge allocation.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;
use tfjsc_proto::tensorflow::{BundleEntryProto, BundleHeaderProto, DataType};
use tfjsc_runtime::shard_file::open_in_folder;

use super::error::ConvertError;
use super::slices::{assemble, slice_key, Region};
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
                    BundleHeaderProto::decode(value.as_slice())
                        .map_err(|error| corrupt(format!("header: {error}")))?,
                );
                continue;
            }
            let entry = BundleEntryProto::decode(value.as_slice()).map_err(|error| {
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
        let shape: Vec<i64> = entry
            .shape
            .as_ref()
            .map(|shape| shape.dim.iter().map(|dim| dim.size).collect())
            .unwrap_or_default();
        let mut parts = Vec::with_capacity(entry.slices.len().min(self.entries.len()));
        for slice in &entry.slices {
            let region = Region::of_slice(slice, &shape).map_err(corrupt)?;
            let part = self.read_key(&slice_key(key, slice))?.ok_or_else(|| {
                corrupt(format!(
                    "the entry of the slice at {:?} is missing",
                    region.starts
                ))
            })?;
            parts.push((region, part));
        }
        assemble(dtype, &shape, parts).map_err(corrupt)
    }
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

/// How many times its stored size a snappy-compressed block may claim to decompress to. The
/// densest thing snappy can write, a 3-byte copy of 64 bytes, expands 21.3 times, so a block
/// claiming more is corrupt or a decompression bomb, and is refused before anything is
/// allocated. The same factor of the whole file bounds the sum of a table's decompressed
/// blocks (an index whose handles all point at one block cannot multiply it).
const SNAPPY_MAX_EXPANSION: usize = 32;

/// The length of a block trailer: the compression type byte, then the masked CRC-32C of the
/// block's bytes and that type byte.
const BLOCK_TRAILER_LENGTH: usize = 5;

/// A block's bytes, read through its handle at `*at` in `bytes` (advanced past it): checked to
/// lie inside the file with its trailer, checked against the trailer's CRC (as TensorFlow's
/// `ReadBlock` does), and decompressed when the trailer says snappy (type 1), taking the
/// decompressed size from `budget`.
fn block<'a>(
    file: &'a [u8],
    bytes: &[u8],
    at: &mut usize,
    budget: &mut usize,
) -> Result<Cow<'a, [u8]>, String> {
    let offset = varint(bytes, at).ok_or("truncated block handle")? as usize;
    let size = varint(bytes, at).ok_or("truncated block handle")? as usize;
    let end = offset
        .checked_add(size)
        .filter(|&end| {
            end.checked_add(BLOCK_TRAILER_LENGTH)
                .is_some_and(|trailer| trailer <= file.len())
        })
        .ok_or_else(|| format!("block {offset}+{size} lies outside the file"))?;
    let stored = u32_at(file, end + 1).ok_or("truncated block trailer")?;
    if masked_crc32c(&file[offset..=end]) != stored {
        return Err(format!("block {offset}+{size}: checksum mismatch"));
    }
    let contents = &file[offset..end];
    match file[end] {
        0 => Ok(Cow::Borrowed(contents)),
        1 => decompress_snappy(contents, budget)
            .map(Cow::Owned)
            .map_err(|message| format!("snappy-compressed block {offset}+{size}: {message}")),
        other => Err(format!(
            "block {offset}+{size}: unknown compression type {other} (0 is none, 1 is snappy)"
        )),
    }
}

/// Decompresses one raw (unframed) snappy block, refusing a claimed size beyond
/// [`SNAPPY_MAX_EXPANSION`] times the block or beyond what is left of `budget`.
fn decompress_snappy(compressed: &[u8], budget: &mut usize) -> Result<Vec<u8>, String> {
    let length = snap::raw::decompress_len(compressed)
        .map_err(|error| format!("corrupt length header ({error})"))?;
    let most = compressed.len().saturating_mul(SNAPPY_MAX_EXPANSION);
    if length > most {
        return Err(format!(
            "claims {length} bytes decompressed, more than {SNAPPY_MAX_EXPANSION} times its {} \
             stored bytes (corrupt, or a decompression bomb)",
            compressed.len()
        ));
    }
    if length > *budget {
        return Err(format!(
            "claims {length} bytes decompressed, past {SNAPPY_MAX_EXPANSION} times the file's \
             size for all of its blocks together (corrupt, or a decompression bomb)"
        ));
    }
    *budget -= length;
    let mut output = vec![0u8; length];
    let written = snap::raw::Decoder::new()
        .decompress(compressed, &mut output)
        .map_err(|error| format!("corrupt compressed data ({error})"))?;
    if written != length {
        return Err(format!(
            "decompressed to {written} bytes, not the {length} its header says"
        ));
    }
    Ok(output)
}

/// One key and its value in a table.
pub(crate) type TableEntry = (Vec<u8>, Vec<u8>);

/// One key and its value in a block (the value borrowed from the block).
type BlockEntry<'a> = (Vec<u8>, &'a [u8]);

/// The key/value entries of one table block (prefix-compressed keys, restart array at the end).
///
/// Each entry's key and value bytes are taken from `budget`: prefix-compressed keys (each
/// repeating its predecessor's prefix) or handles that all point at one block would otherwise
/// multiply a small file in memory.
fn block_entries<'a>(block: &'a [u8], budget: &mut usize) -> Result<Vec<BlockEntry<'a>>, String> {
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
        *budget = budget
            .checked_sub(key.len() + value_length)
            .ok_or_else(|| {
                format!(
                    "its entries take more than {SNAPPY_MAX_EXPANSION} times the file's size \
                     (corrupt, or built to exhaust memory)"
                )
            })?;
        entries.push((key.clone(), &block[key_end..value_end]));
        at = value_end;
    }
    Ok(entries)
}

/// Every key/value of a table file, in file order (sorted by key). Blocks may be stored as they
/// are or snappy-compressed, as their trailers say.
pub(crate) fn read_table(file: &[u8]) -> Result<Vec<TableEntry>, String> {
    if file.len() < FOOTER_LENGTH {
        return Err(format!("{} bytes, shorter than a table footer", file.len()));
    }
    let footer = &file[file.len() - FOOTER_LENGTH..];
    let magic = u64::from(u32_at(footer, 40).unwrap_or(0))
        | (u64::from(u32_at(footer, 44).unwrap_or(0)) << 32);
    if magic != TABLE_MAGIC {
        return Err("no table magic at the end (truncated?)".into());
    }
    // Two budgets of SNAPPY_MAX_EXPANSION times the file: the blocks' decompressed bytes, and
    // the entries' bytes (keys with their shared prefixes), so that a compressed block's bytes
    // are not counted twice.
    let mut budget = file.len().saturating_mul(SNAPPY_MAX_EXPANSION);
    let mut entry_budget = budget;
    let mut at = 0;
    let _metaindex = block(file, footer, &mut at, &mut budget)?;
    let index = block(file, footer, &mut at, &mut budget)?;
    let mut entries = Vec::new();
    for (_, handle) in block_entries(&index, &mut entry_budget)? {
        let mut at = 0;
        let data = block(file, handle, &mut at, &mut budget)?;
        for (key, value) in block_entries(&data, &mut entry_budget)? {
            entries.push((key, value.to_vec()));
        }
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
    fn prefix_compressed_keys_cannot_multiply_a_block_in_memory() {
        // 10 000 entries, each key its predecessor's plus one byte: 40 kB of block, 50 MB of
        // keys. Refused once the budget is spent; a budget for the keys reads them.
        let mut block = Vec::new();
        for index in 0..10_000u64 {
            // shared = the whole previous key, 1 new byte, an empty value
            push_varint(&mut block, index);
            push_varint(&mut block, 1);
            push_varint(&mut block, 0);
            block.push(b'k');
        }
        block.extend_from_slice(&0u32.to_le_bytes());
        block.extend_from_slice(&1u32.to_le_bytes());
        let error = block_entries(&block, &mut (block.len() * SNAPPY_MAX_EXPANSION)).unwrap_err();
        assert!(error.contains("times the file's size"), "{error}");
        let entries = block_entries(&block, &mut (10_000 * 10_001 / 2)).unwrap();
        assert_eq!(entries.len(), 10_000);
        assert_eq!(entries[9_999].0.len(), 10_000);
    }

    #[test]
    fn block_entries_share_key_prefixes() {
        // Two entries: "ab" -> "1", then shared 1 + "c" -> "2"; one restart at 0.
        let mut block = vec![0, 2, 1, b'a', b'b', b'1', 1, 1, 1, b'c', b'2'];
        block.extend_from_slice(&0u32.to_le_bytes());
        block.extend_from_slice(&1u32.to_le_bytes());
        let entries = block_entries(&block, &mut 1000).unwrap();
        assert_eq!(entries[0], (b"ab".to_vec(), &b"1"[..]));
        assert_eq!(entries[1], (b"ac".to_vec(), &b"2"[..]));
    }

    fn push_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A block of `entries` (whole keys, one restart point).
    fn table_block(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        for (key, value) in entries {
            push_varint(&mut block, 0);
            push_varint(&mut block, key.len() as u64);
            push_varint(&mut block, value.len() as u64);
            block.extend_from_slice(key);
            block.extend_from_slice(value);
        }
        block.extend_from_slice(&0u32.to_le_bytes());
        block.extend_from_slice(&1u32.to_le_bytes());
        block
    }

    /// Appends `contents` as a block with compression `kind` and its trailer; returns its handle.
    fn put_block(file: &mut Vec<u8>, contents: &[u8], kind: u8) -> Vec<u8> {
        let mut handle = Vec::new();
        push_varint(&mut handle, file.len() as u64);
        push_varint(&mut handle, contents.len() as u64);
        let start = file.len();
        file.extend_from_slice(contents);
        file.push(kind);
        let crc = masked_crc32c(&file[start..]);
        file.extend_from_slice(&crc.to_le_bytes());
        handle
    }

    /// A table whose index has `handles` entries, all pointing at one snappy block holding one
    /// entry of `value_length` zeros.
    fn table_repeating_one_block(handles: usize, value_length: usize) -> Vec<u8> {
        let zeros = vec![0u8; value_length];
        let data = table_block(&[(b"key", &zeros)]);
        let compressed = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut file = Vec::new();
        let data_handle = put_block(&mut file, &compressed, 1);
        let keys: Vec<Vec<u8>> = (0..handles)
            .map(|i| format!("k{i:05}").into_bytes())
            .collect();
        let index_entries: Vec<(&[u8], &[u8])> = keys
            .iter()
            .map(|key| (key.as_slice(), data_handle.as_slice()))
            .collect();
        let mut footer = put_block(&mut file, &table_block(&[]), 0);
        footer.extend(put_block(&mut file, &table_block(&index_entries), 0));
        footer.resize(40, 0);
        footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }

    #[test]
    fn snappy_blocks_decompress_within_a_budget_tied_to_the_file() {
        // Read once, a block compressed about 20 times (near snappy's densest) is fine.
        let table = table_repeating_one_block(1, 4000);
        let entries = read_table(&table).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries
            .iter()
            .all(|(key, value)| key == b"key" && value.len() == 4000));
        // One 4000-byte block (about 200 bytes stored) behind 200 handles would decompress to
        // 800 kB from a file of a few kB: refused once the file's budget is spent.
        let table = table_repeating_one_block(200, 4000);
        assert!(table.len() * SNAPPY_MAX_EXPANSION < 200 * 4000);
        let error = read_table(&table).unwrap_err();
        assert!(
            error.contains("for all of its blocks together")
                && error.contains("decompression bomb"),
            "{error}"
        );
    }
}
