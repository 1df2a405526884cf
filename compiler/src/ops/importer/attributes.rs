//! Typed reads of TensorFlow NodeDef attributes, and TensorProto decoding.

use tfjsc_proto::tensorflow::{attr_value, AttrValue, NodeDef, TensorProto, TensorShapeProto};

use crate::ir::{DType, Tensor};

/// TensorFlow DataType numbers (types.proto).
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const DOUBLE: i32 = 2;
    pub const INT32: i32 = 3;
    pub const UINT8: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT8: i32 = 6;
    pub const STRING: i32 = 7;
    pub const INT64: i32 = 9;
    pub const BOOL: i32 = 10;
    pub const HALF: i32 = 19;
}

/// The IR dtype for a TensorFlow DataType number.
pub fn dtype_from_tf(value: i32) -> Result<DType, String> {
    Ok(match value {
        data_type::FLOAT | data_type::DOUBLE | data_type::HALF => DType::F32,
        data_type::INT32 | data_type::UINT8 | data_type::INT16 | data_type::INT8 => DType::I32,
        data_type::INT64 => DType::I64,
        data_type::BOOL => DType::Bool,
        data_type::STRING => return Err("string tensors are not supported by compiled code".into()),
        other => return Err(format!("TensorFlow dtype {other} is not supported")),
    })
}

/// Dimensions of a shape proto: `None` for unknown rank, -1 for unknown dimensions.
pub fn shape_dims(shape: &TensorShapeProto) -> Option<Vec<i64>> {
    if shape.unknown_rank {
        None
    } else {
        Some(shape.dim.iter().map(|d| d.size).collect())
    }
}

/// Read access to one node's attributes with messages that say what was expected.
pub struct NodeAttributes<'n> {
    node: &'n NodeDef,
}

impl<'n> NodeAttributes<'n> {
    pub fn of(node: &'n NodeDef) -> NodeAttributes<'n> {
        NodeAttributes { node }
    }

    fn value(&self, name: &str) -> Option<&'n attr_value::Value> {
        self.node
            .attr
            .get(name)
            .and_then(|a: &AttrValue| a.value.as_ref())
    }

    fn missing(&self, name: &str, what: &str) -> String {
        format!("attribute `{name}` must be {what}")
    }

    pub fn has(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    pub fn int(&self, name: &str) -> Result<i64, String> {
        match self.value(name) {
            Some(attr_value::Value::I(v)) => Ok(*v),
            _ => Err(self.missing(name, "an integer")),
        }
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, String> {
        if self.has(name) {
            self.int(name)
        } else {
            Ok(default)
        }
    }

    pub fn float(&self, name: &str) -> Result<f32, String> {
        match self.value(name) {
            Some(attr_value::Value::F(v)) => Ok(*v),
            _ => Err(self.missing(name, "a float")),
        }
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, String> {
        if self.has(name) {
            self.float(name)
        } else {
            Ok(default)
        }
    }

    pub fn boolean_or(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.value(name) {
            None => Ok(default),
            Some(attr_value::Value::B(v)) => Ok(*v),
            _ => Err(self.missing(name, "true or false")),
        }
    }

    pub fn string(&self, name: &str) -> Result<String, String> {
        match self.value(name) {
            Some(attr_value::Value::S(bytes)) => {
                String::from_utf8(bytes.clone()).map_err(|_| self.missing(name, "UTF-8 text"))
            }
            _ => Err(self.missing(name, "a string")),
        }
    }

    pub fn string_or(&self, name: &str, default: &str) -> Result<String, String> {
        if self.has(name) {
            self.string(name)
        } else {
            Ok(default.to_string())
        }
    }

    pub fn ints(&self, name: &str) -> Result<Vec<i64>, String> {
        match self.value(name) {
            Some(attr_value::Value::List(list)) => Ok(list.i.clone()),
            _ => Err(self.missing(name, "a list of integers")),
        }
    }

    pub fn ints_or(&self, name: &str, default: &[i64]) -> Result<Vec<i64>, String> {
        if self.has(name) {
            self.ints(name)
        } else {
            Ok(default.to_vec())
        }
    }

    pub fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        match self.value(name) {
            Some(attr_value::Value::List(list)) => list
                .s
                .iter()
                .map(|s| {
                    String::from_utf8(s.clone()).map_err(|_| self.missing(name, "UTF-8 strings"))
                })
                .collect(),
            None => Ok(Vec::new()),
            _ => Err(self.missing(name, "a list of strings")),
        }
    }

    pub fn dtype(&self, name: &str) -> Result<DType, String> {
        match self.value(name) {
            Some(attr_value::Value::Type(v)) => dtype_from_tf(*v),
            _ => Err(self.missing(name, "a dtype")),
        }
    }

    pub fn shape(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.value(name) {
            Some(attr_value::Value::Shape(shape)) => Ok(shape_dims(shape)),
            None => Ok(None),
            _ => Err(self.missing(name, "a shape")),
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&'n TensorProto> {
        match self.value(name) {
            Some(attr_value::Value::Tensor(tensor)) => Some(tensor),
            _ => None,
        }
    }
}

/// The most bytes an inline constant (a TensorProto in the graph, not a weight) may decode to.
pub const MAX_INLINE_CONSTANT_BYTES: usize = 1 << 28;

/// Decodes the values stored inside a TensorProto (inline constants). A proto with fewer values
/// than elements repeats its last value (TensorFlow's rule); one with none is all zeros.
pub fn tensor_from_proto(proto: &TensorProto) -> Result<Tensor, String> {
    let dtype = dtype_from_tf(proto.dtype)?;
    let dims = proto
        .tensor_shape
        .as_ref()
        .and_then(shape_dims)
        .unwrap_or_default();
    if dims.iter().any(|&d| d < 0) {
        return Err(format!("constant has an unknown dimension: {dims:?}"));
    }
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("constant is too large")?;
    // Repeating a last value can turn a few bytes of protobuf into any size: bound what an
    // inline constant may expand to (real graphs keep large constants in the weight shards).
    if count.saturating_mul(8) > MAX_INLINE_CONSTANT_BYTES {
        return Err(format!(
            "inline constant of shape {shape:?} would take more than {MAX_INLINE_CONSTANT_BYTES} bytes"
        ));
    }
    fn expand<T: Copy + Default>(values: Vec<T>, count: usize) -> Result<Vec<T>, String> {
        match values.last().copied() {
            None => Ok(vec![T::default(); count]),
            Some(last) if values.len() < count => {
                let mut out = values;
                out.resize(count, last);
                Ok(out)
            }
            Some(_) if values.len() > count => Err(format!(
                "constant holds {} values, its shape has {count} elements",
                values.len()
            )),
            Some(_) => Ok(values),
        }
    }
    let content = &proto.tensor_content;
    let from_content = |size: usize| -> Result<Option<Vec<[u8; 8]>>, String> {
        if content.is_empty() {
            return Ok(None);
        }
        if content.len() != count * size {
            return Err(format!(
                "tensor_content has {} bytes, shape {shape:?} needs {}",
                content.len(),
                count * size
            ));
        }
        Ok(Some(
            content
                .chunks_exact(size)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..size].copy_from_slice(c);
                    b
                })
                .collect(),
        ))
    };
    let tensor = match proto.dtype {
        data_type::FLOAT => {
            let values = match from_content(4)? {
                Some(raw) => raw
                    .iter()
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                None => proto.float_val.clone(),
            };
            Tensor::from_f32(shape, expand(values, count)?)
        }
        data_type::DOUBLE => {
            let values = match from_content(8)? {
                Some(raw) => raw.iter().map(|b| f64::from_le_bytes(*b) as f32).collect(),
                None => proto.double_val.iter().map(|&v| v as f32).collect(),
            };
            Tensor::from_f32(shape, expand(values, count)?)
        }
        data_type::INT64 => {
            let values = match from_content(8)? {
                Some(raw) => raw.iter().map(|b| i64::from_le_bytes(*b)).collect(),
                None => proto.int64_val.clone(),
            };
            Tensor::from_i64(shape, expand(values, count)?)
        }
        data_type::BOOL => {
            let values = match from_content(1)? {
                Some(raw) => raw.iter().map(|b| b[0] != 0).collect(),
                None => proto.bool_val.clone(),
            };
            Tensor::from_bool(shape, expand(values, count)?)
        }
        _ if dtype == DType::I32 => {
            let size = match proto.dtype {
                data_type::UINT8 | data_type::INT8 => 1,
                data_type::INT16 => 2,
                _ => 4,
            };
            let values = match from_content(size)? {
                Some(raw) => raw
                    .iter()
                    .map(|b| match proto.dtype {
                        data_type::UINT8 => b[0] as i32,
                        data_type::INT8 => b[0] as i8 as i32,
                        data_type::INT16 => i16::from_le_bytes([b[0], b[1]]) as i32,
                        _ => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    })
                    .collect(),
                None => proto.int_val.clone(),
            };
            Tensor::from_i32(shape, expand(values, count)?)
        }
        other => {
            return Err(format!(
                "constant of TensorFlow dtype {other} is not supported"
            ))
        }
    };
    Ok(tensor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfjsc_proto::tensorflow::{tensor_shape_proto, DataType, TensorShapeProto};

    fn float_proto(dims: &[i64], values: &[f32]) -> TensorProto {
        TensorProto {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&size| tensor_shape_proto::Dim {
                        size,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            float_val: values.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn inline_constants_repeat_their_last_value_within_bounds() {
        let tensor = tensor_from_proto(&float_proto(&[3], &[1.0, 2.0])).unwrap();
        assert_eq!(tensor, Tensor::from_f32(vec![3], vec![1.0, 2.0, 2.0]));
        // More values than elements (found by fuzzing: a debug assertion, and an inconsistent
        // tensor in release builds).
        let error = tensor_from_proto(&float_proto(&[1], &[1.0, 2.0])).unwrap_err();
        assert!(error.contains("holds 2 values"), "{error}");
        // One value repeated into terabytes.
        let error = tensor_from_proto(&float_proto(&[1 << 20, 1 << 20], &[1.0])).unwrap_err();
        assert!(error.contains("would take more than"), "{error}");
    }
}
