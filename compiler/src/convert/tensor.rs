//! Constant tensor values: read from checkpoints and `Const` nodes, folded, and written as
//! weights. Values are kept as little-endian bytes (strings as a list of byte strings), the way
//! both TensorFlow's checkpoints and the TF.js weight shards store them.

use crate::ir;
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
        if dtype == DataType::DtString {
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
        use DataType::*;
        let values: Vec<Vec<u8>> = match dtype {
            DtFloat => proto
                .float_val
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            DtDouble => proto
                .double_val
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            DtInt32 | DtInt16 | DtInt8 | DtUint8 | DtUint16 => proto
                .int_val
                .iter()
                .map(|v| v.to_le_bytes()[..size].to_vec())
                .collect(),
            DtHalf | DtBfloat16 => proto
                .half_val
                .iter()
                .map(|v| v.to_le_bytes()[..2].to_vec())
                .collect(),
            DtInt64 => proto
                .int64_val
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            DtUint32 => proto
                .uint32_val
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            DtUint64 => proto
                .uint64_val
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            DtBool => proto.bool_val.iter().map(|&v| vec![u8::from(v)]).collect(),
            DtComplex64 => proto
                .scomplex_val
                .chunks(2)
                .map(|pair| pair.iter().flat_map(|v| v.to_le_bytes()).collect())
                .collect(),
            _ => return Err(format!("unsupported dtype {}", dtype.as_str_name())),
        };
        if count > 0 && values.is_empty() {
            return Tensor::from_bytes(dtype, shape, vec![0; count * size]);
        }
        let mut bytes = Vec::with_capacity(count * size);
        for index in 0..count {
            let value = values.get(index).or(values.last()).map(Vec::as_slice);
            let value = value.unwrap_or(&[]);
            if value.len() != size {
                return Err("malformed typed values".into());
            }
            bytes.extend_from_slice(value);
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
    fn byte_count_must_match_the_shape() {
        assert!(Tensor::from_bytes(DataType::DtFloat, vec![2], vec![0; 4]).is_err());
        assert!(Tensor::from_bytes(DataType::DtFloat, vec![-1], vec![]).is_err());
    }
}
