//! Tensors saved in slices: a partitioned variable, or a large tensor a checkpoint writer split.
//! Both checkpoint formats (the V2 bundle and the V1 tensor-slice tables) store each slice under
//! the key TensorFlow's `EncodeTensorNameSlice` builds, and the freezer cuts the parts of a
//! partitioned variable back out of the whole.
//!
//! Everything here works on tensors already read (so already bounded by the files they came
//! from): the whole is allocated only once its slices are known to add up to exactly its
//! element count, and every element must then be covered by exactly one slice.

use tfjsc_proto::tensorflow::tensor_slice_proto::extent::HasLength;
use tfjsc_proto::tensorflow::{DataType, TensorSliceProto};

use super::tensor::{element_size, Tensor};

/// The part of a tensor a slice covers: per dimension, the first index and the length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub starts: Vec<usize>,
    pub lengths: Vec<usize>,
}

impl Region {
    /// The region `starts`/`lengths` of a tensor of `shape`, checked to lie inside it.
    pub fn new(shape: &[i64], starts: &[i64], lengths: &[i64]) -> Result<Region, String> {
        if starts.len() != shape.len() || lengths.len() != shape.len() {
            return Err(format!(
                "a slice of rank {} of a tensor of shape {shape:?}",
                starts.len().max(lengths.len())
            ));
        }
        let mut region = Region {
            starts: Vec::with_capacity(shape.len()),
            lengths: Vec::with_capacity(shape.len()),
        };
        for ((&start, &length), &dim) in starts.iter().zip(lengths).zip(shape) {
            let inside = start >= 0
                && length >= 0
                && start.checked_add(length).is_some_and(|end| end <= dim);
            let (Ok(start), Ok(length), true) =
                (usize::try_from(start), usize::try_from(length), inside)
            else {
                return Err(format!(
                    "the slice starting at {starts:?} with lengths {lengths:?} lies outside the \
                     shape {shape:?}"
                ));
            };
            region.starts.push(start);
            region.lengths.push(length);
        }
        Ok(region)
    }

    /// The region a `TensorSliceProto` covers in a tensor of `shape` (an extent without a length
    /// covers its whole dimension).
    pub fn of_slice(slice: &TensorSliceProto, shape: &[i64]) -> Result<Region, String> {
        let (starts, lengths): (Vec<i64>, Vec<i64>) = slice
            .extent
            .iter()
            .zip(shape.iter().chain(std::iter::repeat(&0)))
            .map(|(extent, &dim)| match extent.has_length {
                Some(HasLength::Length(length)) => (extent.start, length),
                None => (0, dim),
            })
            .unzip();
        Region::new(shape, &starts, &lengths)
    }

    /// Whether the region lies inside a tensor of `shape` (of the same rank).
    fn lies_inside(&self, shape: &[i64]) -> bool {
        self.starts.len() == shape.len()
            && self.lengths.len() == shape.len()
            && self
                .starts
                .iter()
                .zip(&self.lengths)
                .zip(shape)
                .all(|((&start, &length), &dim)| {
                    start
                        .checked_add(length)
                        .and_then(|end| i64::try_from(end).ok())
                        .is_some_and(|end| end <= dim)
                })
    }

    /// The region's shape.
    pub fn shape(&self) -> Vec<i64> {
        self.lengths.iter().map(|&length| length as i64).collect()
    }

    /// Per row of the region (its last dimension), the index of the row's first element in a
    /// row-major tensor of `shape`, and the row's length.
    fn rows<'a>(&'a self, shape: &'a [i64]) -> impl Iterator<Item = (usize, usize)> + 'a {
        let rank = shape.len();
        let row = self.lengths.last().copied().unwrap_or(1);
        let outer = &self.lengths[..rank.saturating_sub(1)];
        let count = if outer.contains(&0) || row == 0 {
            0
        } else {
            outer.iter().product()
        };
        let mut position = vec![0usize; outer.len()];
        (0..count).map(move |row_index| {
            if row_index > 0 {
                for axis in (0..position.len()).rev() {
                    position[axis] += 1;
                    if position[axis] < outer[axis] {
                        break;
                    }
                    position[axis] = 0;
                }
            }
            let index = shape.iter().zip(&self.starts).enumerate().fold(
                0usize,
                |index, (axis, (&dim, &start))| {
                    let within = position.get(axis).copied().unwrap_or(0);
                    index * dim as usize + start + within
                },
            );
            (index, row)
        })
    }
}

/// The key of one slice's entry, as TensorFlow's `EncodeTensorNameSlice` builds it in OrderedCode:
/// the number 0, the name, the rank, then per dimension the start and the length (-1 for an
/// extent without a length, the whole dimension).
pub fn slice_key(name: &str, slice: &TensorSliceProto) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 8 + 4 * slice.extent.len());
    write_number_increasing(&mut key, 0);
    for &byte in name.as_bytes() {
        match byte {
            0x00 => key.extend_from_slice(&[0x00, 0xff]),
            0xff => key.extend_from_slice(&[0xff, 0x00]),
            other => key.push(other),
        }
    }
    key.extend_from_slice(&[0x00, 0x01]);
    write_number_increasing(&mut key, slice.extent.len() as u64);
    for extent in &slice.extent {
        let length = match extent.has_length {
            Some(HasLength::Length(length)) => length,
            None => -1,
        };
        write_signed_increasing(&mut key, extent.start);
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

/// The number of elements of `shape`, or `None` for a negative or overflowing shape.
fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |count, &dim| {
        usize::try_from(dim)
            .ok()
            .and_then(|dim| count.checked_mul(dim))
    })
}

/// The tensor of `dtype` and `shape` whose slices are `parts`: each part's shape must be its
/// region's, the regions must add up to the element count, and no element may be covered twice.
pub fn assemble(
    dtype: DataType,
    shape: &[i64],
    parts: Vec<(Region, Tensor)>,
) -> Result<Tensor, String> {
    let count = element_count(shape).ok_or_else(|| format!("bad shape {shape:?}"))?;
    let mut covered_count = 0usize;
    for (region, part) in &parts {
        if !region.lies_inside(shape) {
            return Err(format!(
                "the slice at {:?} of lengths {:?} lies outside the shape {shape:?}",
                region.starts, region.lengths
            ));
        }
        if part.shape != region.shape() || part.dtype != dtype {
            return Err(format!(
                "the slice at {:?} holds {} of shape {:?}, not {} of shape {:?}",
                region.starts,
                part.dtype.as_str_name(),
                part.shape,
                dtype.as_str_name(),
                region.lengths
            ));
        }
        covered_count = covered_count.saturating_add(part.len());
    }
    if covered_count != count {
        return Err(format!(
            "its slices hold {covered_count} elements, the shape {shape:?} has {count}: some \
             part is missing or saved twice"
        ));
    }
    // Allocated only now: `count` is the number of elements the slices really hold.
    let mut covered = vec![false; count];
    let size = element_size(dtype);
    let mut bytes = vec![0u8; size.map_or(0, |size| count * size)];
    let mut strings = vec![Vec::new(); if size.is_none() { count } else { 0 }];
    for (region, part) in parts {
        let mut source = 0usize;
        for (target, row) in region.rows(shape) {
            if let Some(twice) = covered[target..target + row].iter().position(|&seen| seen) {
                return Err(format!(
                    "the slice at {:?} covers element {} again (slices overlap)",
                    region.starts,
                    target + twice
                ));
            }
            covered[target..target + row].fill(true);
            match size {
                Some(size) => bytes[target * size..(target + row) * size]
                    .copy_from_slice(&part.bytes[source * size..(source + row) * size]),
                None => strings[target..target + row]
                    .clone_from_slice(&part.strings[source..source + row]),
            }
            source += row;
        }
    }
    Ok(match size {
        Some(_) => Tensor::from_bytes(dtype, shape.to_vec(), bytes)?,
        None => Tensor::strings(shape.to_vec(), strings),
    })
}

/// The part `region` of `whole` (a partitioned variable's part, cut out of the saved whole).
pub fn extract(whole: &Tensor, region: &Region) -> Result<Tensor, String> {
    if !region.lies_inside(&whole.shape) {
        return Err(format!(
            "the part at {:?} of shape {:?} lies outside the whole's shape {:?}",
            region.starts, region.lengths, whole.shape
        ));
    }
    let shape = region.shape();
    let size = element_size(whole.dtype);
    let elements = if size.is_some() {
        whole.bytes.len() / size.unwrap_or(1)
    } else {
        whole.strings.len()
    };
    if element_count(&whole.shape) != Some(elements) {
        return Err(format!(
            "a tensor of shape {:?} without its values",
            whole.shape
        ));
    }
    let mut bytes = Vec::new();
    let mut strings = Vec::new();
    for (start, row) in region.rows(&whole.shape) {
        match size {
            Some(size) => bytes.extend_from_slice(&whole.bytes[start * size..(start + row) * size]),
            None => strings.extend_from_slice(&whole.strings[start..start + row]),
        }
    }
    Ok(match size {
        Some(_) => Tensor::from_bytes(whole.dtype, shape, bytes)?,
        None => Tensor::strings(shape, strings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfjsc_proto::tensorflow::tensor_slice_proto::Extent;

    fn slice(extents: &[Option<(i64, i64)>]) -> TensorSliceProto {
        TensorSliceProto {
            extent: extents
                .iter()
                .map(|extent| match extent {
                    Some((start, length)) => Extent {
                        start: *start,
                        has_length: Some(HasLength::Length(*length)),
                    },
                    None => Extent::default(),
                })
                .collect(),
        }
    }

    /// The (2, 5) tensor 0..10 cut into columns 0..2 and 2..5.
    fn columns() -> Vec<(Region, Tensor)> {
        let shape = [2, 5];
        let left = Region::of_slice(&slice(&[None, Some((0, 2))]), &shape).unwrap();
        let right = Region::of_slice(&slice(&[None, Some((2, 3))]), &shape).unwrap();
        vec![
            (left, Tensor::float32(vec![2, 2], &[0., 1., 5., 6.])),
            (
                right,
                Tensor::float32(vec![2, 3], &[2., 3., 4., 7., 8., 9.]),
            ),
        ]
    }

    #[test]
    fn column_slices_assemble_row_by_row() {
        let whole = assemble(DataType::DtFloat, &[2, 5], columns()).unwrap();
        let expected: Vec<f32> = (0..10).map(|v| v as f32).collect();
        assert_eq!(whole.as_f32().unwrap(), expected);
        let (region, part) = &columns()[1];
        assert_eq!(&extract(&whole, region).unwrap(), part);
    }

    #[test]
    fn missing_overlapping_and_misshapen_slices_are_errors() {
        let mut parts = columns();
        parts.pop();
        let error = assemble(DataType::DtFloat, &[2, 5], parts).unwrap_err();
        assert!(
            error.contains("hold 4 elements") && error.contains("has 10"),
            "{error}"
        );
        // Columns 0..2 and 1..4 (4 + 6 = 10 elements, but column 1 twice and column 4 never).
        let mut parts = columns();
        let shape = [2, 5];
        parts[1] = (
            Region::of_slice(&slice(&[None, Some((1, 3))]), &shape).unwrap(),
            Tensor::float32(vec![2, 3], &[0.; 6]),
        );
        let error = assemble(DataType::DtFloat, &shape, parts).unwrap_err();
        assert!(
            error.contains("overlap") && error.contains("element 1"),
            "{error}"
        );
        let mut parts = columns();
        parts[0].1 = Tensor::int32(vec![2, 2], &[0; 4]);
        let error = assemble(DataType::DtFloat, &shape, parts).unwrap_err();
        assert!(error.contains("DT_INT32"), "{error}");
        let error = Region::of_slice(&slice(&[None, Some((3, 3))]), &shape).unwrap_err();
        assert!(error.contains("outside the shape [2, 5]"), "{error}");
        let error = Region::of_slice(&slice(&[None]), &shape).unwrap_err();
        assert!(error.contains("rank 1"), "{error}");
        assert!(Region::new(&shape, &[0, i64::MAX], &[1, 2]).is_err());
    }

    #[test]
    fn slice_keys_are_ordered_code() {
        // EncodeTensorNameSlice("a", 2-D: 0,-1 ; 64,3): 0 → 0x00; "a", 0x00 0x01; rank 2 →
        // 0x01 0x02; signed 0 → 0x80, -1 → 0x7f, 64 → 0xc0 0x40, 3 → 0x83.
        let key = slice_key("a", &slice(&[None, Some((64, 3))]));
        assert_eq!(
            key,
            [0x00, b'a', 0x00, 0x01, 0x01, 0x02, 0x80, 0x7f, 0xc0, 0x40, 0x83]
        );
    }
}
