//! The weights manifest: which weights a model has and where their bytes lie.
//!
//! Both web formats describe weights with the same JSON schema (the
//! `weightsManifest` of model.json, or the whole of a legacy
//! weights_manifest.json): groups of shard files, each group one byte stream
//! holding its weights back to back, in manifest order, with no padding. This
//! module turns that JSON into typed specs with stream offsets. It never
//! opens shard files: string weights, whose size is only known from their
//! bytes, are sized later by the weights reader.

use serde_json::Value;

use super::json::{array, each, field, int64, object, string, At, JsonError, JsonResult};

/// One group of the manifest: shard files that, concatenated in this order,
/// form one byte stream.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightGroupSpec {
    /// Shard file names, relative to the model's directory.
    pub paths: Vec<String>,
}

/// The element type of a weight once decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightDtype {
    /// 32-bit IEEE float.
    Float32,
    /// 32-bit signed integer.
    Int32,
    /// Boolean.
    Bool,
    /// Byte string.
    String,
    /// Complex number of two 32-bit floats (real, imaginary).
    Complex64,
}

/// How a weight's elements are stored in the shard stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightEncoding {
    /// Little-endian 32-bit floats.
    Float32,
    /// Little-endian 32-bit signed integers.
    Int32,
    /// One byte per element, non-zero is true.
    Bool,
    /// Per element: a little-endian u32 byte length, then the bytes.
    String,
    /// Little-endian pairs of 32-bit floats.
    Complex64,
    /// IEEE-754 half-precision floats, decoded to float32.
    Float16,
    /// Bytes q, decoded as `q * scale + min` computed in f64, then rounded to f32.
    ///
    /// `scale` and `min` are f64 as the manifest writes them: TF.js (and its
    /// Python `read_weights`) dequantise in double precision, and rounding
    /// them to f32 first changes the last bit of most decoded values.
    Uint8 {
        /// Step between quantized levels.
        scale: f64,
        /// Value of level 0.
        min: f64,
    },
    /// Little-endian u16 q, decoded as `q * scale + min` (as for `Uint8`).
    Uint16 {
        /// Step between quantized levels.
        scale: f64,
        /// Value of level 0.
        min: f64,
    },
}

impl WeightEncoding {
    /// Bytes per stored element; `None` for strings, whose elements vary in size.
    pub fn stored_element_size(self) -> Option<u64> {
        match self {
            WeightEncoding::Float32 | WeightEncoding::Int32 => Some(4),
            WeightEncoding::Bool | WeightEncoding::Uint8 { .. } => Some(1),
            WeightEncoding::Float16 | WeightEncoding::Uint16 { .. } => Some(2),
            WeightEncoding::Complex64 => Some(8),
            WeightEncoding::String => None,
        }
    }
}

/// One weight of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSpec {
    /// The weight's name: the name of the `Const` node it feeds.
    pub name: String,
    /// Its shape; empty for a scalar.
    pub shape: Vec<usize>,
    /// The element type after decoding.
    pub dtype: WeightDtype,
    /// How the elements are stored.
    pub encoding: WeightEncoding,
    /// Index of its group in [`super::WebModel::groups`].
    pub group: usize,
    /// Offset of its first byte in the group's stream.
    pub offset: u64,
    /// Bytes it occupies in the stream. `None` only for a string weight that is
    /// the last of its group (its size is learnt when the weights are read).
    pub byte_size: Option<u64>,
}

impl WeightSpec {
    /// Number of elements: the product of the shape (1 for a scalar).
    /// `None` on overflow, which the manifest reader already rejects.
    pub fn element_count(&self) -> Option<u64> {
        element_count(&self.shape)
    }
}

/// The product of a shape's dimensions, or `None` if it overflows a `u64`.
pub(crate) fn element_count(shape: &[usize]) -> Option<u64> {
    shape.iter().try_fold(1u64, |product, &dimension| {
        product.checked_mul(u64::try_from(dimension).ok()?)
    })
}

/// A parsed manifest. Weights after a string weight in the same group have
/// `offset` 0 and are laid out by the weights reader.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Manifest {
    pub groups: Vec<WeightGroupSpec>,
    pub weights: Vec<WeightSpec>,
}

/// Reads the manifest array (`[{paths, weights}]`).
pub(crate) fn manifest(value: &Value) -> JsonResult<Manifest> {
    let mut result = Manifest::default();
    for (group_index, group) in array(value)?.iter().enumerate() {
        read_group(group, group_index, &mut result).at(|| format!("group {group_index}"))?;
    }
    Ok(result)
}

fn read_group(value: &Value, group_index: usize, manifest: &mut Manifest) -> JsonResult<()> {
    let fields = object(value)?;
    let paths = field(fields, "paths", "paths")
        .ok_or_else(|| JsonError::new("a \"paths\" array of shard file names"))
        .and_then(|paths| each(paths, string))
        .at(|| "paths".to_string())?;
    manifest.groups.push(WeightGroupSpec { paths });
    let Some(weights) = field(fields, "weights", "weights") else {
        return Ok(());
    };
    // Offsets are exact until the first string weight, whose size is unknown here.
    let mut next_offset = Some(0u64);
    for (index, weight) in array(weights)
        .at(|| "weights".to_string())?
        .iter()
        .enumerate()
    {
        let name = weight.get("name").and_then(Value::as_str);
        let mut spec = weight_spec(weight, group_index).at(|| match name {
            Some(name) => format!("weight {name:?}"),
            None => format!("weights[{index}]"),
        })?;
        spec.offset = next_offset.unwrap_or(0);
        next_offset = match (next_offset, spec.byte_size) {
            (Some(offset), Some(size)) => Some(offset.checked_add(size).ok_or_else(|| {
                JsonError::new("a group whose total size fits in 64 bits")
                    .within(format!("weight {:?}", spec.name))
            })?),
            _ => None,
        };
        manifest.weights.push(spec);
    }
    Ok(())
}

fn weight_spec(value: &Value, group: usize) -> JsonResult<WeightSpec> {
    let fields = object(value)?;
    let name = field(fields, "name", "name")
        .ok_or_else(|| JsonError::new("a \"name\" string"))
        .and_then(string)
        .at(|| "name".to_string())?;
    let shape = field(fields, "shape", "shape")
        .ok_or_else(|| JsonError::new("a \"shape\" array"))
        .and_then(|shape| each(shape, dimension))
        .at(|| "shape".to_string())?;
    let dtype_name = field(fields, "dtype", "dtype")
        .ok_or_else(|| JsonError::new("a \"dtype\" string"))
        .and_then(string)
        .at(|| "dtype".to_string())?;
    let dtype = weight_dtype(&dtype_name).at(|| "dtype".to_string())?;
    let encoding = match field(fields, "quantization", "quantization") {
        None => plain_encoding(dtype),
        Some(quantization) => {
            quantized_encoding(quantization, dtype).at(|| "quantization".to_string())?
        }
    };
    let count = element_count(&shape)
        .ok_or_else(|| JsonError::new("a shape whose element count fits in 64 bits"))
        .at(|| "shape".to_string())?;
    let byte_size = match encoding.stored_element_size() {
        Some(element_size) => Some(count.checked_mul(element_size).ok_or_else(|| {
            JsonError::new("a shape whose byte size fits in 64 bits").within("shape")
        })?),
        None => None,
    };
    Ok(WeightSpec {
        name,
        shape,
        dtype,
        encoding,
        group,
        offset: 0,
        byte_size,
    })
}

fn dimension(value: &Value) -> JsonResult<usize> {
    let size = int64(value)?;
    usize::try_from(size)
        .map_err(|_| JsonError::new(format!("a non-negative dimension, found {size}")))
}

fn weight_dtype(name: &str) -> JsonResult<WeightDtype> {
    match name {
        "float32" => Ok(WeightDtype::Float32),
        "int32" => Ok(WeightDtype::Int32),
        "bool" => Ok(WeightDtype::Bool),
        "string" => Ok(WeightDtype::String),
        "complex64" => Ok(WeightDtype::Complex64),
        other => Err(JsonError::new(format!(
            "one of float32, int32, bool, string, complex64, found {other:?}"
        ))),
    }
}

fn plain_encoding(dtype: WeightDtype) -> WeightEncoding {
    match dtype {
        WeightDtype::Float32 => WeightEncoding::Float32,
        WeightDtype::Int32 => WeightEncoding::Int32,
        WeightDtype::Bool => WeightEncoding::Bool,
        WeightDtype::String => WeightEncoding::String,
        WeightDtype::Complex64 => WeightEncoding::Complex64,
    }
}

fn quantized_encoding(value: &Value, dtype: WeightDtype) -> JsonResult<WeightEncoding> {
    let fields = object(value)?;
    let stored = field(fields, "dtype", "dtype")
        .ok_or_else(|| JsonError::new("a \"dtype\" of uint8, uint16 or float16"))
        .and_then(string)
        .at(|| "dtype".to_string())?;
    if let Some(original) = field(fields, "original_dtype", "originalDtype") {
        let original = string(original).at(|| "original_dtype".to_string())?;
        let original_dtype = weight_dtype(&original).at(|| "original_dtype".to_string())?;
        if original_dtype != dtype {
            return Err(JsonError::new(format!(
                "original_dtype equal to the weight's dtype {dtype:?}, found {original:?}"
            )));
        }
    }
    let affine = |name: &str| -> JsonResult<f64> {
        field(fields, name, name)
            .ok_or_else(|| JsonError::new(format!("a numeric \"{name}\" for affine quantization")))
            .and_then(super::json::double)
            .at(|| name.to_string())
    };
    let encoding = match stored.as_str() {
        "uint8" => WeightEncoding::Uint8 {
            scale: affine("scale")?,
            min: affine("min")?,
        },
        "uint16" => WeightEncoding::Uint16 {
            scale: affine("scale")?,
            min: affine("min")?,
        },
        "float16" => WeightEncoding::Float16,
        other => {
            return Err(JsonError::new(format!(
                "a quantization dtype of uint8, uint16 or float16, found {other:?}"
            ))
            .within("dtype"))
        }
    };
    let supported = match encoding {
        WeightEncoding::Float16 => dtype == WeightDtype::Float32,
        _ => matches!(dtype, WeightDtype::Float32 | WeightDtype::Int32),
    };
    if !supported {
        return Err(JsonError::new(format!(
            "a weight dtype that {stored} quantization supports (float32{}), found {dtype:?}",
            if stored == "float16" { "" } else { " or int32" }
        )));
    }
    Ok(encoding)
}
