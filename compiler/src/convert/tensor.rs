//! Constant tensor values: read from checkpoints and `Const` nodes, folded, and written as
//! weights. Values are kept as little-endian bytes (strings as a list of byte strings), the way
//! both TensorFlow's checkpoints and the TF.js weight shards store them.

use crate::ir;
use crate::ops::importer::MAX_INLINE_CONSTANT_BYTES;
use tfjsc_proto::tensorflow::{
    attr_value, tensor_shape_proto, AttrValue, DataType, TensorProto, TensorShapeProto,
};

/// A constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DataType,
    pub shape: Vec<i64>,
    /// Little-endian element bytes (numeric and bool dtypes).
    pub bytes: Vec<u8>,
    /// Elements of a string tensor.
    pub strings: Vec<Vec<u8>>,
}

/// Bytes per element of a numeric dtype, or `None` for strings and unsupported dtypes.
pub fn element_size(dtype: DataType) -> Option<usize> {
    use DataType::*;
    Some(match dtype {
        DtFloat | DtInt32 | DtUint32 => 4,
        DtDouble | DtInt64 | DtUint64 | DtComplex64 => 8,
        DtComplex128 => 16,
        DtHalf | DtBfloat16 | DtInt16 | DtUint16 => 2,
        DtBool | DtInt8 | DtUint8 => 1,
        _ => return None,
    })
}

impl Tensor {
    /// A numeric tensor from its raw bytes, checked against the shape.
    pub fn from_bytes(dtype: DataType, shape: Vec<i64>, bytes: Vec<u8>) -> Result<Tensor, String> {
        let size = element_size(dtype)
            .ok_or_else(|| format!("unsupported dtype {}", dtype.as_str_name()))?;
        let count = count_of(&shape)?;
        if count.checked_mul(size) != Some(bytes.len()) {
            return Err(format!(
                "{} bytes for shape {shape:?} of {}",
                bytes.len(),
                dtype.as_str_name()
            ));
        }
        Ok(Tensor {
            dtype,
            shape,
            bytes,
            strings: Vec::new(),
        })
    }

    /// A string tensor.
    pub fn strings(shape: Vec<i64>, strings: Vec<Vec<u8>>) -> Tensor {
        Tensor {
            dtype: DataType::DtString,
            shape,
            bytes: Vec::new(),
            strings,
        }
    }

    /// A float32 tensor.
    pub fn float32(shape: Vec<i64>, values: &[f32]) -> Tensor {
        Tensor {
            dtype: DataType::DtFloat,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            strings: Vec::new(),
        }
    }

    /// An int32 tensor.
    pub fn int32(shape: Vec<i64>, values: &[i32]) -> Tensor {
        Tensor {
            dtype: DataType::DtInt32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            strings: Vec::new(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        count_of(&self.shape).unwrap_or(0)
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of a float32 tensor.
    pub fn as_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == DataType::DtFloat).then(|| {
            self.bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// The values of an int32 tensor.
    pub fn as_i32(&self) -> Option<Vec<i32>> {
        (self.dtype == DataType::DtInt32).then(|| {
            self.bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// This value as the compiler's IR tensor, for the dtypes both hold exactly (float32, int32,
    /// bool; the IR widens or narrows the others).
    pub fn to_ir(&self) -> Option<ir::Tensor> {
        let shape: Vec<usize> = self
            .shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<_>>()?;
        Some(match self.dtype {
            DataType::DtFloat => ir::Tensor::from_f32(shape, self.as_f32()?),
            DataType::DtInt32 => ir::Tensor::from_i32(shape, self.as_i32()?),
            DataType::DtBool => {
                ir::Tensor::from_bool(shape, self.bytes.iter().map(|&b| b != 0).collect())
            }
            _ => return None,
        })
    }

    /// An IR tensor as a value of the same dtype (`None` for int64, which [`Tensor::to_ir`]
    /// never gives, so it would mean the IR changed a dtype TensorFlow keeps).
    pub fn from_ir(tensor: &ir::Tensor) -> Option<Tensor> {
        let shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
        match &tensor.data {
            ir::TensorData::F32(values) => Some(Tensor::float32(shape, values)),
            ir::TensorData::I32(values) => Some(Tensor::int32(shape, values)),
            ir::TensorData::Bool(values) => {
                let bytes = values.iter().map(|&b| u8::from(b)).collect();
                Tensor::from_bytes(DataType::DtBool, shape, bytes).ok()
            }
            ir::TensorData::I64(_) => None,
        }
    }

    /// Reads a `Const` node's TensorProto (`tensor_content`, or the typed value fields, where a
    /// short list repeats its last value as TensorFlow does).
    pub fn from_proto(proto: &TensorProto) -> Result<Tensor, String> {
        let dtype = DataType::try_from(proto.dtype).unwrap_or(DataType::DtInvalid);
        let shape = shape_of(proto.tensor_shape.as_ref())?;
        let count = count_of(&shape)?;
        // A short list repeats its last value, so a few bytes of protobuf could ask for any
        // size: expanded values are bounded as the compiler's inline constants are.
        let expands_beyond = |stored: usize, element: usize| {
            if stored < count && count.saturating_mul(element) > MAX_INLINE_CONSTANT_BYTES {
                return Err(format!(
                    "constant of shape {shape:?} would take more than {MAX_INLINE_CONSTANT_BYTES} bytes"
                ));
            }
            Ok(())
        };
        if dtype == DataType::DtString {
            expands_beyond(proto.string_val.len(), 1)?;
            let mut strings = proto.string_val.clone();
            if strings.len() < count {
                let last = strings.last().cloned().unwrap_or_default();
                strings.resize(count, last);
            }
            strings.truncate(count);
            return Ok(Tensor::strings(shape, strings));
        }
        let size = element_size(dtype)
            .ok_or_else(|| format!("unsupported dtype {}", dtype.as_str_name()))?;
        if !proto.tensor_content.is_empty() {
            return Tensor::from_bytes(dtype, shape, proto.tensor_content.clone());
        }
        let (values, found) = typed_values(dtype, size, proto)?;
        expands_beyond(found, size)?;
        if count > 0 && found == 0 {
            return Tensor::from_bytes(dtype, shape, vec![0; count * size]);
        }
        let mut bytes = values;
        bytes.truncate(count * size);
        while bytes.len() < count * size {
            let last = bytes.len() - size;
            bytes.extend_from_within(last..last + size);
        }
        Tensor::from_bytes(dtype, shape, bytes)
    }

    /// Reads the values of one slice of a V1 checkpoint: exactly one typed value per element of
    /// `shape` (the field of `dtype`: `float_val`, `int_val`, `half_val`, ...), as TensorFlow's
    /// `TensorSliceReader` requires, or `tensor_content` of exactly the tensor's size.
    pub fn from_saved_slice(
        dtype: DataType,
        shape: Vec<i64>,
        proto: &TensorProto,
    ) -> Result<Tensor, String> {
        let count = count_of(&shape)?;
        if proto.dtype != 0 && proto.dtype != dtype as i32 {
            let stored = DataType::try_from(proto.dtype).unwrap_or(DataType::DtInvalid);
            return Err(format!(
                "its values are {}, the checkpoint lists the tensor as {}",
                stored.as_str_name(),
                dtype.as_str_name()
            ));
        }
        if dtype == DataType::DtString {
            if proto.string_val.len() != count {
                return Err(format!(
                    "{} string_val values for the {count} elements of shape {shape:?}",
                    proto.string_val.len()
                ));
            }
            return Ok(Tensor::strings(shape, proto.string_val.clone()));
        }
        let size = element_size(dtype)
            .ok_or_else(|| format!("unsupported dtype {}", dtype.as_str_name()))?;
        if !proto.tensor_content.is_empty() {
            return Tensor::from_bytes(dtype, shape, proto.tensor_content.clone());
        }
        let (bytes, found) = typed_values(dtype, size, proto)?;
        if found != count {
            return Err(format!(
                "{found} values in the {} field for the {count} elements of shape {shape:?} \
                 ({}); the fields hold {}",
                value_field(dtype),
                dtype.as_str_name(),
                field_counts(proto)
            ));
        }
        Tensor::from_bytes(dtype, shape, bytes)
    }

    /// The TensorProto of this value, with the bytes inline (for folding into the graph, or for
    /// the legacy format's structure) or without them (`with_values == false`: model.json keeps
    /// values in the weight shards).
    pub fn to_proto(&self, with_values: bool) -> TensorProto {
        let mut proto = TensorProto {
            dtype: self.dtype as i32,
            tensor_shape: Some(shape_proto(&self.shape)),
            ..TensorProto::default()
        };
        if with_values {
            if self.dtype == DataType::DtString {
                proto.string_val = self.strings.clone();
            } else {
                proto.tensor_content = self.bytes.clone();
            }
        }
        proto
    }

    /// The `value` attribute of a Const node.
    pub fn attr(&self, with_values: bool) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::Tensor(self.to_proto(with_values))),
        }
    }
}

/// The little-endian bytes of the typed value field of `dtype` in `proto`, and how many values
/// it holds (complex values are pairs of floats).
fn typed_values(
    dtype: DataType,
    size: usize,
    proto: &TensorProto,
) -> Result<(Vec<u8>, usize), String> {
    use DataType::*;
    fn collect<T, const N: usize>(
        values: &[T],
        bytes: impl Fn(&T) -> [u8; N],
        size: usize,
    ) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(values.len().saturating_mul(size));
        for value in values {
            out.extend_from_slice(&bytes(value)[..size]);
        }
        (out, values.len())
    }
    Ok(match dtype {
        DtFloat => collect(&proto.float_val, |v| v.to_le_bytes(), size),
        DtDouble => collect(&proto.double_val, |v| v.to_le_bytes(), size),
        DtInt32 | DtInt16 | DtInt8 | DtUint8 | DtUint16 => {
            collect(&proto.int_val, |v| v.to_le_bytes(), size)
        }
        DtHalf | DtBfloat16 => collect(&proto.half_val, |v| v.to_le_bytes(), size),
        DtInt64 => collect(&proto.int64_val, |v| v.to_le_bytes(), size),
        DtUint32 => collect(&proto.uint32_val, |v| v.to_le_bytes(), size),
        DtUint64 => collect(&proto.uint64_val, |v| v.to_le_bytes(), size),
        DtBool => collect(&proto.bool_val, |&v| [u8::from(v)], size),
        DtComplex64 => {
            if !proto.scomplex_val.len().is_multiple_of(2) {
                return Err("an odd number of scomplex_val floats".into());
            }
            let (bytes, floats) = collect(&proto.scomplex_val, |v| v.to_le_bytes(), 4);
            (bytes, floats / 2)
        }
        _ => return Err(format!("unsupported dtype {}", dtype.as_str_name())),
    })
}

/// The TensorProto field holding values of `dtype`.
fn value_field(dtype: DataType) -> &'static str {
    use DataType::*;
    match dtype {
        DtFloat => "float_val",
        DtDouble => "double_val",
        DtHalf | DtBfloat16 => "half_val",
        DtInt64 => "int64_val",
        DtUint32 => "uint32_val",
        DtUint64 => "uint64_val",
        DtBool => "bool_val",
        DtComplex64 => "scomplex_val",
        DtString => "string_val",
        _ => "int_val",
    }
}

/// How many values each non-empty value field of `proto` holds, e.g. "int_val: 24".
fn field_counts(proto: &TensorProto) -> String {
    let fields = [
        ("float_val", proto.float_val.len()),
        ("double_val", proto.double_val.len()),
        ("int_val", proto.int_val.len()),
        ("half_val", proto.half_val.len()),
        ("int64_val", proto.int64_val.len()),
        ("uint32_val", proto.uint32_val.len()),
        ("uint64_val", proto.uint64_val.len()),
        ("bool_val", proto.bool_val.len()),
        ("scomplex_val", proto.scomplex_val.len()),
        ("string_val", proto.string_val.len()),
        ("tensor_content bytes", proto.tensor_content.len()),
    ];
    let listed: Vec<String> = fields
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{name}: {count}"))
        .collect();
    if listed.is_empty() {
        "no values".into()
    } else {
        listed.join(", ")
    }
}

/// The dims of a shape proto; an unknown rank or dimension is an error (constants are static).
pub fn shape_of(shape: Option<&TensorShapeProto>) -> Result<Vec<i64>, String> {
    let Some(shape) = shape else {
        return Ok(Vec::new());
    };
    if shape.unknown_rank {
        return Err("constant of unknown rank".into());
    }
    shape
        .dim
        .iter()
        .map(|dim| {
            if dim.size < 0 {
                Err("constant with an unknown dimension".into())
            } else {
                Ok(dim.size)
            }
        })
        .collect()
}

fn count_of(shape: &[i64]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |count, &dim| {
            usize::try_from(dim)
                .ok()
                .and_then(|dim| count.checked_mul(dim))
        })
        .filter(|&count| count <= (1usize << 40))
        .ok_or_else(|| format!("bad shape {shape:?}"))
}

/// A TensorShapeProto of known dims.
pub fn shape_proto(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .iter()
            .map(|&size| tensor_shape_proto::Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_list_may_not_expand_without_bound() {
        // One float for 2^30 elements (4 GiB), or no string for 2^30 strings: refused, not
        // allocated.
        let proto = |dtype: DataType, float_val: Vec<f32>| TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(shape_proto(&[1 << 30])),
            float_val,
            ..TensorProto::default()
        };
        for proto in [
            proto(DataType::DtFloat, vec![1.0]),
            proto(DataType::DtString, vec![]),
        ] {
            let error = Tensor::from_proto(&proto).unwrap_err();
            assert!(error.contains("would take more than"), "{error}");
        }
        // A small expansion is still TensorFlow's rule.
        let small = TensorProto {
            tensor_shape: Some(shape_proto(&[3])),
            ..proto(DataType::DtFloat, vec![2.0])
        };
        assert_eq!(
            Tensor::from_proto(&small).unwrap().as_f32(),
            Some(vec![2.0; 3])
        );
    }

    #[test]
    fn short_typed_values_repeat_the_last() {
        let proto = TensorProto {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(shape_proto(&[3])),
            float_val: vec![1.0, 2.0],
            ..TensorProto::default()
        };
        let tensor = Tensor::from_proto(&proto).unwrap();
        assert_eq!(tensor.as_f32().unwrap(), vec![1.0, 2.0, 2.0]);
        assert_eq!(Tensor::from_proto(&tensor.to_proto(true)).unwrap(), tensor);
    }

    #[test]
    fn saved_slices_need_exactly_one_typed_value_per_element() {
        // As TensorFlow's V1 writer leaves it: no dtype, the values in the dtype's field.
        let proto = TensorProto {
            half_val: vec![0x3c00, 0xc000],
            int64_val: vec![-1, 1 << 40],
            bool_val: vec![true, false],
            int_val: vec![-3, 200],
            ..TensorProto::default()
        };
        let read = |dtype| {
            Tensor::from_saved_slice(dtype, vec![2], &proto)
                .unwrap()
                .bytes
        };
        assert_eq!(read(DataType::DtHalf), [0x00, 0x3c, 0x00, 0xc0]);
        assert_eq!(read(DataType::DtBool), [1, 0]);
        assert_eq!(read(DataType::DtInt8), [0xfd, 200]);
        let int64: Vec<u8> = [-1i64, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(read(DataType::DtInt64), int64);
        // One value short: refused (a Const would repeat the last), naming the fields present.
        let error = Tensor::from_saved_slice(
            DataType::DtFloat,
            vec![3],
            &TensorProto {
                float_val: vec![1.0, 2.0],
                ..TensorProto::default()
            },
        )
        .unwrap_err();
        assert!(
            error.contains("2 values in the float_val field for the 3 elements"),
            "{error}"
        );
    }

    #[test]
    fn byte_count_must_match_the_shape() {
        assert!(Tensor::from_bytes(DataType::DtFloat, vec![2], vec![0; 4]).is_err());
        assert!(Tensor::from_bytes(DataType::DtFloat, vec![-1], vec![]).is_err());
    }
}
