//! Element types, tensor types and tensor values: the vocabulary every other module speaks.

use std::fmt;

/// Element type of a value. Only what compiled code and constant folding handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I32,
    I64,
    Bool,
}

impl DType {
    /// Bytes per element in memory (compiled code and the runtime agree on these).
    pub fn size_of(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    /// Short name used by the IR text form.
    pub fn short_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    /// Name used in the compiled model's description and in .npy files.
    pub fn abi_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Bool => "bool",
        }
    }

    pub fn from_short_name(name: &str) -> Option<DType> {
        Some(match name {
            "f32" => DType::F32,
            "i32" => DType::I32,
            "i64" => DType::I64,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
}

/// Dtype and static shape of a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> TensorType {
        TensorType { dtype, shape }
    }

    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn byte_size(&self) -> usize {
        self.element_count() * self.dtype.size_of()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The byte size, or `None` when it does not fit in memory arithmetic (malformed shapes).
    pub fn checked_byte_size(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size_of(), |total, &dim| total.checked_mul(dim))
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype.short_name())?;
        for (index, dim) in self.shape.iter().enumerate() {
            if index > 0 {
                write!(f, ",")?;
            }
            write!(f, "{dim}")?;
        }
        write!(f, "]")
    }
}

/// Element storage of a tensor value.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// A dense row-major tensor value: constants, and the reference evaluator's inputs and outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn from_f32(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Tensor {
            shape,
            data: TensorData::F32(values),
        }
    }

    pub fn from_i32(shape: Vec<usize>, values: Vec<i32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Tensor {
            shape,
            data: TensorData::I32(values),
        }
    }

    pub fn from_i64(shape: Vec<usize>, values: Vec<i64>) -> Tensor {
        Tensor {
            shape,
            data: TensorData::I64(values),
        }
    }

    pub fn from_bool(shape: Vec<usize>, values: Vec<bool>) -> Tensor {
        Tensor {
            shape,
            data: TensorData::Bool(values),
        }
    }

    /// A tensor of `dtype` filled with `value` converted to that dtype.
    pub fn filled(dtype: DType, shape: Vec<usize>, value: f64) -> Tensor {
        let count = shape.iter().product();
        let data = match dtype {
            DType::F32 => TensorData::F32(vec![value as f32; count]),
            DType::I32 => TensorData::I32(vec![value as i32; count]),
            DType::I64 => TensorData::I64(vec![value as i64; count]),
            DType::Bool => TensorData::Bool(vec![value != 0.0; count]),
        };
        Tensor { shape, data }
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn tensor_type(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.clone())
    }

    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 (integers and booleans converted).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(values) => values.clone(),
            TensorData::I32(values) => values.iter().map(|&v| v as f32).collect(),
            TensorData::I64(values) => values.iter().map(|&v| v as f32).collect(),
            TensorData::Bool(values) => values.iter().map(|&v| v as u8 as f32).collect(),
        }
    }

    /// The values as i64 (floats truncated toward zero): shapes, axes, indices.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(values) => values.iter().map(|&v| v as i64).collect(),
            TensorData::I32(values) => values.iter().map(|&v| v as i64).collect(),
            TensorData::I64(values) => values.clone(),
            TensorData::Bool(values) => values.iter().map(|&v| v as i64).collect(),
        }
    }

    /// A copy converted to `dtype` (TensorFlow Cast semantics: float to int truncates; out of the
    /// int32 range it saturates and NaN becomes 0, as the compiled kernels do — TensorFlow leaves
    /// this to the C++ conversion, x86 gives INT_MIN, TF.js wraps).
    pub fn cast(&self, dtype: DType) -> Tensor {
        let shape = self.shape.clone();
        match dtype {
            DType::F32 => Tensor::from_f32(shape, self.to_f32_vec()),
            DType::I32 => match &self.data {
                TensorData::Bool(values) => {
                    Tensor::from_i32(shape, values.iter().map(|&v| v as i32).collect())
                }
                TensorData::F32(values) => {
                    Tensor::from_i32(shape, values.iter().map(|&v| v as i32).collect())
                }
                _ => Tensor::from_i32(shape, self.to_i64_vec().iter().map(|&v| v as i32).collect()),
            },
            DType::I64 => Tensor::from_i64(shape, self.to_i64_vec()),
            DType::Bool => {
                Tensor::from_bool(shape, self.to_f32_vec().iter().map(|&v| v != 0.0).collect())
            }
        }
    }

    /// Little-endian bytes, as compiled code reads them.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            TensorData::F32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::I32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::I64(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::Bool(values) => values.iter().map(|&v| v as u8).collect(),
        }
    }

    /// Same data, new shape (element counts must agree).
    pub fn reshaped(&self, shape: Vec<usize>) -> Tensor {
        Tensor {
            shape,
            data: self.data.clone(),
        }
    }
}
