//! Reads a V1 checkpoint, the format of TensorFlow 0.x/1.x `Saver`s (`write_version=V1`, and
//! the session bundles of that time): one sorted-string table (`PREFIX`), or one per device
//! (`PREFIX-00000-of-00002`, ...). In each table the entry under the empty key is a
//! `SavedTensorSlices { meta }` listing the tensors the file holds (name, shape, dtype, slices);
//! every other entry, under the key `EncodeTensorNameSlice(name, slice)`, is a
//! `SavedTensorSlices { data }` whose TensorProto holds the slice's values in its typed fields.
//!
//! The tables are read with the bundle's table reader (block CRCs, snappy, memory budgets), so
//! a file's entries take at most a fixed multiple of its size. A tensor's values are decoded from
//! those entries (each value takes at least one byte on the wire) and assembled only once its
//! slices add up to its shape ([`slices::assemble`]): a claimed shape never sizes an allocation.
//! Files are opened inside the model's folder only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::bundle::read_table;
use super::error::ConvertError;
use super::read_input_file;
use super::slices::{assemble, slice_key, Region};
use super::tensor::Tensor;
use prost::Message;
use tfjsc_proto::tensorflow::{DataType, SavedTensorSlices, TensorSliceProto};

/// The newest checkpoint version this reader knows (TensorFlow's `TF_CHECKPOINT_VERSION`).
const CHECKPOINT_VERSION: i32 = 1;

/// What a corrupt file was meant to be, in errors.
const WHAT: &str = "V1 checkpoint (tensor slice table)";

/// One table file of the checkpoint, its entries by key.
struct TableFile {
    path: PathBuf,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What the metadata says of one tensor: its dtype and shape, and which file holds each slice.
struct SavedTensor {
    dtype: DataType,
    shape: Vec<i64>,
    slices: Vec<(usize, TensorSliceProto)>,
}

/// An opened V1 checkpoint.
pub struct CheckpointV1 {
    files: Vec<TableFile>,
    tensors: BTreeMap<String, SavedTensor>,
}

impl CheckpointV1 {
    /// Opens the table files `names` (relative to `folder`, in shard order) and reads their
    /// metadata.
    pub fn open(folder: &Path, names: &[String]) -> Result<CheckpointV1, ConvertError> {
        let mut checkpoint = CheckpointV1 {
            files: Vec::with_capacity(names.len()),
            tensors: BTreeMap::new(),
        };
        for name in names {
            checkpoint.open_file(folder, name)?;
        }
        Ok(checkpoint)
    }

    fn open_file(&mut self, folder: &Path, name: &str) -> Result<(), ConvertError> {
        let (path, bytes) = read_input_file(folder, name)?;
        let corrupt = |message: String| ConvertError::Corrupt {
            path: path.clone(),
            what: WHAT,
            message,
        };
        let entries: BTreeMap<Vec<u8>, Vec<u8>> =
            read_table(&bytes).map_err(corrupt)?.into_iter().collect();
        drop(bytes);
        let meta = entries
            .get(&Vec::new())
            .ok_or_else(|| corrupt("no metadata entry (the empty key)".into()))?;
        let meta = SavedTensorSlices::decode(meta.as_slice())
            .map_err(|error| corrupt(format!("metadata: {error}")))?
            .meta
            .ok_or_else(|| corrupt("the empty key holds no metadata".into()))?;
        if let Some(versions) = &meta.versions {
            if versions.min_consumer > CHECKPOINT_VERSION
                || versions.bad_consumers.contains(&CHECKPOINT_VERSION)
            {
                return Err(corrupt(format!(
                    "written for checkpoint readers of version {} or later (this one reads \
                     version {CHECKPOINT_VERSION})",
                    versions.min_consumer
                )));
            }
        }
        let file_index = self.files.len();
        for saved in meta.tensor {
            let dtype = DataType::try_from(saved.r#type).unwrap_or(DataType::DtInvalid);
            let shape = super::tensor::shape_of(saved.shape.as_ref())
                .map_err(|message| corrupt(format!("tensor {:?}: {message}", saved.name)))?;
            let tensor = self
                .tensors
                .entry(saved.name.clone())
                .or_insert_with(|| SavedTensor {
                    dtype,
                    shape: shape.clone(),
                    slices: Vec::new(),
                });
            if tensor.dtype != dtype || tensor.shape != shape {
                return Err(corrupt(format!(
                    "tensor {:?} is {} of shape {shape:?} here, {} of shape {:?} in another \
                     file of the checkpoint",
                    saved.name,
                    dtype.as_str_name(),
                    tensor.dtype.as_str_name(),
                    tensor.shape
                )));
            }
            for slice in saved.slice {
                tensor.slices.push((file_index, slice));
            }
        }
        self.files.push(TableFile { path, entries });
        Ok(())
    }

    /// The first table file's path (for error messages).
    pub fn path(&self) -> &Path {
        self.files
            .first()
            .map_or(Path::new(""), |file| file.path.as_path())
    }

    /// Every tensor name in the checkpoint, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Whether the checkpoint holds a tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Reads the tensor `name`, assembled from its slices, or `None` when there is none.
    pub fn read(&self, name: &str) -> Result<Option<Tensor>, ConvertError> {
        let Some(saved) = self.tensors.get(name) else {
            return Ok(None);
        };
        let mut parts = Vec::new();
        for (file_index, slice) in &saved.slices {
            let file = &self.files[*file_index];
            let corrupt = |message: String| ConvertError::Corrupt {
                path: file.path.clone(),
                what: WHAT,
                message: format!("tensor {name:?}: {message}"),
            };
            let region = Region::of_slice(slice, &saved.shape).map_err(corrupt)?;
            let key = slice_key(name, slice);
            let value = file.entries.get(&key).ok_or_else(|| {
                corrupt(format!(
                    "the metadata lists a slice at {:?} of lengths {:?}, but the file has no \
                     entry for it",
                    region.starts, region.lengths
                ))
            })?;
            let data = SavedTensorSlices::decode(value.as_slice())
                .map_err(|error| corrupt(format!("slice at {:?}: {error}", region.starts)))?
                .data
                .ok_or_else(|| {
                    corrupt(format!("the slice at {:?} holds no data", region.starts))
                })?;
            let stored = data
                .slice
                .as_ref()
                .and_then(|stored| Region::of_slice(stored, &saved.shape).ok());
            if data.name != name || stored.as_ref() != Some(&region) {
                return Err(corrupt(format!(
                    "the entry for the slice at {:?} holds tensor {:?}, slice at {:?}",
                    region.starts,
                    data.name,
                    stored.map(|region| region.starts)
                )));
            }
            let values = data.data.unwrap_or_default();
            let part = Tensor::from_saved_slice(saved.dtype, region.shape(), &values).map_err(
                |message| corrupt(format!("the slice at {:?}: {message}", region.starts)),
            )?;
            parts.push((region, part));
        }
        // Named after the file of the tensor's first slice (its slices may span shards).
        let first_file = saved.slices.first().map_or(0, |(file, _)| *file);
        let corrupt = |message: String| ConvertError::Corrupt {
            path: self.files[first_file].path.clone(),
            what: WHAT,
            message: format!("tensor {name:?}: {message}"),
        };
        if parts.is_empty() {
            return Err(corrupt("listed without any slice".into()));
        }
        assemble(saved.dtype, &saved.shape, parts)
            .map(Some)
            .map_err(corrupt)
    }
}
