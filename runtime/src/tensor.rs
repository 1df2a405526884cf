//! Owned dense tensors for the convenient API (`Context::run_tensors`, `.npy` files).
//!
//! A tensor is a dtype, a shape and native-endian bytes in row-major order. It exists so callers
//! need not count bytes by hand; its constructors check that the data matches the shape, and it
//! must never reinterpret bytes as another dtype silently.

use crate::description::{byte_size_of, DType};
use crate::error::Error;

/// A dense row-major tensor with native-endian data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// `element_count × dtype.size_in_bytes()` bytes; bools are 0 or 1.
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor from raw bytes, checking their length against dtype and shape.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Tensor, Error> {
        let expected = checked_byte_size(dtype, &shape)?;
        if data.len() != expected {
            return Err(Error::TensorDataSize {
                dtype,
                shape,
                expected,
                found: data.len(),
            });
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// A tensor of zeros (false for bools).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor, Error> {
        let size = checked_byte_size(dtype, shape)?;
        Ok(Tensor {
            dtype,
            shape: shape.to_vec(),
            data: vec![0; size],
        })
    }

    /// A float32 tensor; `values.len()` must equal the element count of `shape`.
    pub fn from_f32(shape: &[usize], values: &[f32]) -> Result<Tensor, Error> {
        let data = values
            .iter()
            .flat_map(|value| value.to_ne_bytes())
            .collect();
        Tensor::new(DType::Float32, shape.to_vec(), data)
    }

    /// An int32 tensor; `values.len()` must equal the element count of `shape`.
    pub fn from_i32(shape: &[usize], values: &[i32]) -> Result<Tensor, Error> {
        let data = values
            .iter()
            .flat_map(|value| value.to_ne_bytes())
            .collect();
        Tensor::new(DType::Int32, shape.to_vec(), data)
    }

    /// A bool tensor; `values.len()` must equal the element count of `shape`.
    pub fn from_bool(shape: &[usize], values: &[bool]) -> Result<Tensor, Error> {
        let data = values.iter().map(|&value| u8::from(value)).collect();
        Tensor::new(DType::Bool, shape.to_vec(), data)
    }

    /// Number of elements.
    pub fn element_count(&self) -> usize {
        self.data.len() / self.dtype.size_in_bytes()
    }

    /// The values of a float32 tensor.
    pub fn to_f32(&self) -> Result<Vec<f32>, Error> {
        self.expect_dtype(DType::Float32)?;
        Ok(self
            .data
            .chunks_exact(4)
            .map(|chunk| f32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect())
    }

    /// The values of an int32 tensor.
    pub fn to_i32(&self) -> Result<Vec<i32>, Error> {
        self.expect_dtype(DType::Int32)?;
        Ok(self
            .data
            .chunks_exact(4)
            .map(|chunk| i32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect())
    }

    /// The values of a bool tensor.
    pub fn to_bool(&self) -> Result<Vec<bool>, Error> {
        self.expect_dtype(DType::Bool)?;
        Ok(self.data.iter().map(|&byte| byte != 0).collect())
    }

    fn expect_dtype(&self, expected: DType) -> Result<(), Error> {
        if self.dtype == expected {
            Ok(())
        } else {
            Err(Error::TensorDType {
                expected,
                found: self.dtype,
            })
        }
    }
}

fn checked_byte_size(dtype: DType, shape: &[usize]) -> Result<usize, Error> {
    byte_size_of(dtype, shape)
        .filter(|&size| size <= isize::MAX as usize)
        .ok_or_else(|| Error::ShapeTooLarge {
            shape: shape.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_check_sizes_and_accessors_check_dtypes() {
        let tensor = Tensor::from_f32(&[2], &[1.0, 2.0]).unwrap();
        assert_eq!(tensor.to_f32().unwrap(), vec![1.0, 2.0]);
        assert!(matches!(tensor.to_i32(), Err(Error::TensorDType { .. })));
        assert!(matches!(
            Tensor::from_i32(&[3], &[1]),
            Err(Error::TensorDataSize {
                expected: 12,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            Tensor::zeros(DType::Float32, &[usize::MAX, 2]),
            Err(Error::ShapeTooLarge { .. })
        ));
    }
}
