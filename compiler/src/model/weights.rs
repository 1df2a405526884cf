//! Reading and decoding the weight shards of a web model.
//!
//! A group's shard files, concatenated in manifest order, form one byte
//! stream; its weights lie back to back in it. This module checks that each
//! stream holds exactly the bytes the manifest implies (so a truncated
//! download or a stale shard is reported, naming the file and the weight
//! that does not fit) and decodes every weight to plain values: quantized
//! floats (uint8, uint16 affine; float16) become float32, quantized int32
//! weights become rounded int32. It never panics on file contents: every
//! slice is taken with `get` and every size computed with checked arithmetic.

use std::path::PathBuf;

use tfjsc_runtime::shard_file::{open_in_folder, ShardPathError};

use super::error::ModelError;
use super::manifest::{WeightDtype, WeightEncoding, WeightSpec};
use super::WebModel;

/// The decoded values of one weight, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightValues {
    /// Float32 values (also the result of dequantising uint8, uint16 and float16).
    Float32(Vec<f32>),
    /// Int32 values (also the result of dequantising a quantized int32 weight).
    Int32(Vec<i32>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Byte strings.
    String(Vec<Vec<u8>>),
    /// Complex numbers as interleaved (real, imaginary) float32 pairs: twice the element count.
    Complex64(Vec<f32>),
}

/// One shard file, as the runtime will check it.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightFile {
    /// The file name as the manifest writes it, relative to the model's directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE, as `crc32fast` computes it) of the whole file.
    pub crc32: u32,
}

/// The concatenated bytes of one group's shard files.
struct GroupStream {
    bytes: Vec<u8>,
    /// The last file of the group, named when the stream is too short or too long.
    last_file: PathBuf,
}

impl WebModel {
    /// The weights of group `group`, in manifest order.
    fn weights_of_group(&self, group: usize) -> impl Iterator<Item = &WeightSpec> {
        self.weights
            .iter()
            .filter(move |weight| weight.group == group)
    }

    /// The first weight of `group` whose bytes reach past `position` in its stream.
    fn weight_at(&self, group: usize, position: u64) -> String {
        let reaches = |weight: &&WeightSpec| match weight.byte_size {
            Some(size) => weight.offset.saturating_add(size) > position,
            None => true,
        };
        self.weights_of_group(group)
            .find(reaches)
            .or_else(|| self.weights_of_group(group).last())
            .map(|weight| weight.name.clone())
            .unwrap_or_default()
    }

    /// Opens every file of `group` (each name checked by [`open_in_folder`]: relative, inside
    /// the model's folder, a regular file), checks that together they are not longer than the
    /// group's weights need, then reads each in order and hands its name, path and bytes to
    /// `visit`. Nothing is read before every file of the group has passed those checks.
    fn visit_group_files(
        &self,
        group: usize,
        mut visit: impl FnMut(&str, PathBuf, Vec<u8>),
    ) -> Result<(), ModelError> {
        let Some(spec) = self.groups.get(group) else {
            return Ok(());
        };
        let mut opened = Vec::with_capacity(spec.paths.len());
        let mut position = 0u64;
        for name in &spec.paths {
            let file = open_in_folder(&self.dir, name).map_err(|reason| match reason {
                ShardPathError::NotFound => ModelError::MissingShard {
                    path: self.dir.join(name),
                    manifest: self.manifest_path(),
                    group,
                    weight: self.weight_at(group, position),
                },
                reason => ModelError::ShardRefused {
                    name: name.clone(),
                    manifest: self.manifest_path(),
                    group,
                    reason,
                },
            })?;
            position = position.saturating_add(file.size);
            opened.push((name, file));
        }
        if let (Some(expected), Some((_, last))) = (self.stream_size(group), opened.last()) {
            if position > expected {
                return Err(ModelError::LongShard {
                    path: last.path.clone(),
                    manifest: self.manifest_path(),
                    group,
                    weight: self
                        .weights_of_group(group)
                        .last()
                        .map(|weight| weight.name.clone())
                        .unwrap_or_default(),
                    expected,
                    available: position,
                });
            }
        }
        for (name, file) in opened {
            // Never more than the size checked above, even if the file grows meanwhile.
            let bytes = super::read_opened(&file.path, &file.file, file.size)?;
            visit(name, file.path, bytes);
        }
        Ok(())
    }

    /// The length of `group`'s stream that its weights imply, when every weight's size is known.
    fn stream_size(&self, group: usize) -> Option<u64> {
        self.weights_of_group(group).try_fold(0u64, |end, weight| {
            let size = weight.byte_size?;
            Some(end.max(weight.offset.saturating_add(size)))
        })
    }

    fn read_group_stream(&self, group: usize) -> Result<GroupStream, ModelError> {
        let mut stream = GroupStream {
            bytes: Vec::new(),
            last_file: self.dir.clone(),
        };
        self.visit_group_files(group, |_, path, bytes| {
            stream.bytes.extend_from_slice(&bytes);
            stream.last_file = path;
        })?;
        Ok(stream)
    }

    fn short_shard(
        &self,
        stream: &GroupStream,
        weight: &WeightSpec,
        start: u64,
        end: u64,
    ) -> ModelError {
        ModelError::ShortShard {
            path: stream.last_file.clone(),
            manifest: self.manifest_path(),
            group: weight.group,
            weight: weight.name.clone(),
            start,
            end,
            available: stream.bytes.len() as u64,
        }
    }

    /// Learns the size of every string weight that another weight of its group
    /// follows, so that every offset is exact. Reads only groups that need it.
    pub(crate) fn lay_out_string_weights(&mut self) -> Result<(), ModelError> {
        for group in 0..self.groups.len() {
            let indices: Vec<usize> = (0..self.weights.len())
                .filter(|&index| self.weights.get(index).is_some_and(|w| w.group == group))
                .collect();
            let needs_stream = indices.iter().rev().skip(1).any(|&index| {
                self.weights
                    .get(index)
                    .is_some_and(|weight| weight.byte_size.is_none())
            });
            if !needs_stream {
                continue;
            }
            let stream = self.read_group_stream(group)?;
            let mut position = 0u64;
            for (order, &index) in indices.iter().enumerate() {
                let is_last = order + 1 == indices.len();
                let Some(weight) = self.weights.get(index) else {
                    continue;
                };
                let size = match weight.byte_size {
                    Some(size) => Some(size),
                    None if is_last => None,
                    None => {
                        let count = weight.element_count().unwrap_or(u64::MAX);
                        let (_, end) = decode_strings(&stream.bytes, position, count)
                            .map_err(|end| self.short_shard(&stream, weight, position, end))?;
                        Some(end.saturating_sub(position))
                    }
                };
                if let Some(weight) = self.weights.get_mut(index) {
                    weight.offset = position;
                    weight.byte_size = size;
                }
                position = position.saturating_add(size.unwrap_or(0));
            }
        }
        Ok(())
    }

    /// See [`WebModel::read_weights`].
    pub(crate) fn read_all_weights(&self) -> Result<Vec<WeightValues>, ModelError> {
        let mut values = Vec::with_capacity(self.weights.len());
        for group in 0..self.groups.len() {
            let stream = self.read_group_stream(group)?;
            let available = stream.bytes.len() as u64;
            let mut position = 0u64;
            let mut last_weight = None;
            for weight in self.weights_of_group(group) {
                let start = position;
                let (decoded, end) = match weight.byte_size {
                    None => {
                        let count = weight.element_count().unwrap_or(u64::MAX);
                        let (strings, end) = decode_strings(&stream.bytes, start, count)
                            .map_err(|end| self.short_shard(&stream, weight, start, end))?;
                        (WeightValues::String(strings), end)
                    }
                    Some(size) => {
                        let end = start.saturating_add(size);
                        let bytes = usize::try_from(start)
                            .ok()
                            .zip(usize::try_from(end).ok())
                            .and_then(|(start, end)| stream.bytes.get(start..end))
                            .ok_or_else(|| self.short_shard(&stream, weight, start, end))?;
                        let decoded = decode(bytes, weight)
                            .map_err(|end| self.short_shard(&stream, weight, start, end))?;
                        (decoded, end)
                    }
                };
                values.push(decoded);
                position = end;
                last_weight = Some(weight);
            }
            if position != available {
                return Err(ModelError::LongShard {
                    path: stream.last_file,
                    manifest: self.manifest_path(),
                    group,
                    weight: last_weight.map(|w| w.name.clone()).unwrap_or_default(),
                    expected: position,
                    available,
                });
            }
        }
        Ok(values)
    }

    /// See [`WebModel::weight_files`].
    pub(crate) fn list_weight_files(&self) -> Result<Vec<WeightFile>, ModelError> {
        let mut files = Vec::new();
        for group in 0..self.groups.len() {
            self.visit_group_files(group, |name, _, bytes| {
                files.push(WeightFile {
                    path: name.to_string(),
                    size: bytes.len() as u64,
                    crc32: crc32fast::hash(&bytes),
                });
            })?;
        }
        Ok(files)
    }
}

/// Decodes `count` strings starting at `start`: each a little-endian u32
/// length, then that many bytes. Returns the strings and the end position,
/// or the position the stream would have to reach.
fn decode_strings(stream: &[u8], start: u64, count: u64) -> Result<(Vec<Vec<u8>>, u64), u64> {
    let available = stream.len() as u64;
    // Each string needs at least its 4-byte length: bound the allocation by the stream.
    let capacity = count.min(available.saturating_sub(start) / 4);
    let mut strings = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut position = start;
    for _ in 0..count {
        let length_end = position.saturating_add(4);
        let length_bytes = slice(stream, position, length_end).ok_or(length_end)?;
        let mut length = [0u8; 4];
        length.copy_from_slice(length_bytes);
        let end = length_end.saturating_add(u64::from(u32::from_le_bytes(length)));
        strings.push(slice(stream, length_end, end).ok_or(end)?.to_vec());
        position = end;
    }
    Ok((strings, position))
}

fn slice(stream: &[u8], start: u64, end: u64) -> Option<&[u8]> {
    stream.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
}

/// Decodes a fixed-size weight from exactly its bytes. The error (never
/// expected: the caller sized the slice) is an end position for reporting.
fn decode(bytes: &[u8], weight: &WeightSpec) -> Result<WeightValues, u64> {
    fn words<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|chunk| {
            let mut word = [0u8; N];
            word.copy_from_slice(chunk);
            word
        })
    }
    Ok(match weight.encoding {
        WeightEncoding::Float32 => {
            WeightValues::Float32(words::<4>(bytes).map(f32::from_le_bytes).collect())
        }
        WeightEncoding::Int32 => {
            WeightValues::Int32(words::<4>(bytes).map(i32::from_le_bytes).collect())
        }
        WeightEncoding::Bool => WeightValues::Bool(bytes.iter().map(|&byte| byte != 0).collect()),
        WeightEncoding::Complex64 => {
            WeightValues::Complex64(words::<4>(bytes).map(f32::from_le_bytes).collect())
        }
        WeightEncoding::Float16 => WeightValues::Float32(
            words::<2>(bytes)
                .map(|word| half::f16::from_bits(u16::from_le_bytes(word)).to_f32())
                .collect(),
        ),
        WeightEncoding::Uint8 { scale, min } => dequantise(
            bytes.iter().map(|&level| f64::from(level)),
            scale,
            min,
            weight.dtype,
        ),
        WeightEncoding::Uint16 { scale, min } => dequantise(
            words::<2>(bytes).map(|word| f64::from(u16::from_le_bytes(word))),
            scale,
            min,
            weight.dtype,
        ),
        WeightEncoding::String => {
            let count = weight.element_count().unwrap_or(u64::MAX);
            let (strings, _) = decode_strings(bytes, 0, count)?;
            WeightValues::String(strings)
        }
    })
}

/// JavaScript's `Math.round`: the nearest integer, halves towards +infinity
/// (saturating at the i32 range, as the conversion to `Int32Array` does not,
/// but no manifest writes such values).
fn round_like_javascript(value: f64) -> i32 {
    let floor = value.floor();
    let rounded = if value - floor >= 0.5 {
        floor + 1.0
    } else {
        floor
    };
    rounded as i32
}

/// Affine dequantisation `level * scale + min`, to float32 or, for a
/// quantized int32 weight, to int32 rounded as TF.js's `Math.round` does
/// (halves towards +infinity).
fn dequantise(
    levels: impl Iterator<Item = f64>,
    scale: f64,
    min: f64,
    dtype: WeightDtype,
) -> WeightValues {
    let values = levels.map(|level| level * scale + min);
    match dtype {
        WeightDtype::Int32 => WeightValues::Int32(values.map(round_like_javascript).collect()),
        _ => WeightValues::Float32(values.map(|value| value as f32).collect()),
    }
}
