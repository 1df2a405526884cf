//! Readers of protobuf's JSON mapping for scalars, with error locations.
//!
//! TF.js writes `model.json` with protobuf's JSON mapping: int64 as strings
//! (sometimes numbers), bytes as base64, enums as names or numbers, floats
//! possibly as "NaN"/"Infinity", and field names in lowerCamelCase (some
//! writers keep the original snake_case). These helpers accept every such
//! form once, so that the message readers stay declarative. Errors carry a
//! path through the document, built up as the error returns outward.
//! This module knows no TensorFlow message and never touches files.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};
use tfjsc_proto::tensorflow::DataType;

/// A value in a JSON document that does not have the expected form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonError {
    /// Path segments, innermost first (pushed while the error returns).
    segments: Vec<String>,
    /// What was expected at that place.
    pub expected: String,
}

/// Result of reading part of a JSON document.
pub(crate) type JsonResult<T> = Result<T, JsonError>;

impl JsonError {
    /// An error at the current place.
    pub fn new(expected: impl Into<String>) -> JsonError {
        JsonError {
            segments: Vec::new(),
            expected: expected.into(),
        }
    }

    /// The same error one level further in: `segment` names the enclosing part.
    pub fn within(mut self, segment: impl Into<String>) -> JsonError {
        self.segments.push(segment.into());
        self
    }

    /// The path from the document root, outermost first, e.g. `node "a" > attr "T"`.
    pub fn location(&self) -> String {
        if self.segments.is_empty() {
            return "top level".to_string();
        }
        let mut segments = self.segments.clone();
        segments.reverse();
        segments.join(" > ")
    }
}

/// Adds a path segment to the error of a result.
pub(crate) trait At<T> {
    /// Prefixes the error location with the segment `segment()` returns.
    fn at(self, segment: impl FnOnce() -> String) -> JsonResult<T>;
}

impl<T> At<T> for JsonResult<T> {
    fn at(self, segment: impl FnOnce() -> String) -> JsonResult<T> {
        self.map_err(|error| error.within(segment()))
    }
}

/// A short description of a JSON value's kind, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An error saying what was expected and what was found instead.
pub(crate) fn mismatch(expected: &str, found: &Value) -> JsonError {
    JsonError::new(format!("{expected}, found {}", kind(found)))
}

/// The value as an object.
pub(crate) fn object(value: &Value) -> JsonResult<&Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| mismatch("an object", value))
}

/// The value as an array.
pub(crate) fn array(value: &Value) -> JsonResult<&Vec<Value>> {
    value.as_array().ok_or_else(|| mismatch("an array", value))
}

/// A field by its proto name or its lowerCamelCase JSON name; `null` counts as absent.
pub(crate) fn field<'a>(
    object: &'a Map<String, Value>,
    proto_name: &str,
    json_name: &str,
) -> Option<&'a Value> {
    object
        .get(json_name)
        .or_else(|| object.get(proto_name))
        .filter(|value| !value.is_null())
}

/// Reads an optional field with `read`, prefixing errors with the field name.
pub(crate) fn optional<'a, T>(
    object: &'a Map<String, Value>,
    proto_name: &str,
    json_name: &str,
    read: impl FnOnce(&'a Value) -> JsonResult<T>,
) -> JsonResult<Option<T>> {
    field(object, proto_name, json_name)
        .map(read)
        .transpose()
        .at(|| json_name.to_string())
}

/// Reads a field with `read`, or the proto3 default when it is absent.
pub(crate) fn or_default<'a, T: Default>(
    object: &'a Map<String, Value>,
    proto_name: &str,
    json_name: &str,
    read: impl FnOnce(&'a Value) -> JsonResult<T>,
) -> JsonResult<T> {
    Ok(optional(object, proto_name, json_name, read)?.unwrap_or_default())
}

/// Reads every element of an array with `read`; errors name the element index.
pub(crate) fn each<T>(value: &Value, read: impl Fn(&Value) -> JsonResult<T>) -> JsonResult<Vec<T>> {
    array(value)?
        .iter()
        .enumerate()
        .map(|(index, element)| read(element).at(|| format!("[{index}]")))
        .collect()
}

/// A string.
pub(crate) fn string(value: &Value) -> JsonResult<String> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| mismatch("a string", value))
}

/// A boolean.
pub(crate) fn boolean(value: &Value) -> JsonResult<bool> {
    value.as_bool().ok_or_else(|| mismatch("a boolean", value))
}

/// An integer written as a JSON number (integral) or a decimal string.
pub(crate) fn int64(value: &Value) -> JsonResult<i64> {
    let parsed = match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0 && float.abs() < 9.2e18)
                .map(|float| float as i64)
        }),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| mismatch("a 64-bit integer (number or decimal string)", value))
}

/// An unsigned 64-bit integer written as a JSON number or a decimal string.
pub(crate) fn uint64(value: &Value) -> JsonResult<u64> {
    let parsed = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| mismatch("an unsigned 64-bit integer", value))
}

/// A 32-bit integer.
pub(crate) fn int32(value: &Value) -> JsonResult<i32> {
    i32::try_from(int64(value)?).map_err(|_| mismatch("a 32-bit integer", value))
}

/// An unsigned 32-bit integer.
pub(crate) fn uint32(value: &Value) -> JsonResult<u32> {
    u32::try_from(uint64(value)?).map_err(|_| mismatch("an unsigned 32-bit integer", value))
}

/// A floating-point number: a JSON number, "NaN", "Infinity", "-Infinity" or a numeric string.
pub(crate) fn double(value: &Value) -> JsonResult<f64> {
    let parsed = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => match text.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.trim().parse::<f64>().ok(),
        },
        _ => None,
    };
    parsed.ok_or_else(|| mismatch("a number", value))
}

/// A single-precision floating-point number.
pub(crate) fn float(value: &Value) -> JsonResult<f32> {
    Ok(double(value)? as f32)
}

const LENIENT_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_PADDING);
const URL_SAFE_BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_PADDING);

/// Bytes written as base64 (standard or URL-safe alphabet, padding optional).
pub(crate) fn bytes(value: &Value) -> JsonResult<Vec<u8>> {
    let text = value
        .as_str()
        .ok_or_else(|| mismatch("a base64 string", value))?;
    STANDARD_BASE64
        .decode(text)
        .or_else(|_| URL_SAFE_BASE64.decode(text))
        .map_err(|error| JsonError::new(format!("base64 bytes ({error}), found {text:?}")))
}

/// A `tensorflow.DataType` written as its name ("DT_FLOAT") or its number.
pub(crate) fn data_type(value: &Value) -> JsonResult<i32> {
    match value {
        Value::String(name) => DataType::from_str_name(name)
            .map(|data_type| data_type as i32)
            .ok_or_else(|| {
                JsonError::new(format!("a DataType name like \"DT_FLOAT\", found {name:?}"))
            }),
        Value::Number(_) => int32(value),
        _ => Err(mismatch("a DataType name or number", value)),
    }
}

/// The name of a `tensorflow.DataType` number, or the number itself when unknown.
pub(crate) fn data_type_name(number: i32) -> String {
    DataType::try_from(number)
        .map(|data_type| data_type.as_str_name().to_string())
        .unwrap_or_else(|_| number.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int64_accepts_strings_and_numbers() {
        assert_eq!(int64(&json!("-1")), Ok(-1));
        assert_eq!(int64(&json!(3)), Ok(3));
        assert_eq!(int64(&json!(3.0)), Ok(3));
        assert!(int64(&json!(3.5)).is_err());
        assert!(int64(&json!("x")).is_err());
        assert!(int32(&json!("4294967296")).is_err());
    }

    #[test]
    fn floats_accept_special_names() {
        assert!(double(&json!("NaN")).is_ok_and(f64::is_nan));
        assert_eq!(double(&json!("-Infinity")), Ok(f64::NEG_INFINITY));
        assert_eq!(float(&json!(0.5)), Ok(0.5));
    }

    #[test]
    fn bytes_accept_both_alphabets_with_or_without_padding() {
        assert_eq!(bytes(&json!("U0FNRQ==")), Ok(b"SAME".to_vec()));
        assert_eq!(bytes(&json!("U0FNRQ")), Ok(b"SAME".to_vec()));
        assert_eq!(bytes(&json!("-_8")), Ok(vec![0xfb, 0xff]));
        assert!(bytes(&json!("!!")).is_err());
    }

    #[test]
    fn data_types_accept_names_and_numbers() {
        assert_eq!(data_type(&json!("DT_FLOAT")), Ok(1));
        assert_eq!(data_type(&json!(19)), Ok(19));
        assert!(data_type(&json!("float32")).is_err());
        assert_eq!(data_type_name(3), "DT_INT32");
        assert_eq!(data_type_name(77), "77");
    }

    #[test]
    fn errors_carry_their_location() {
        let document = json!({"a": [1, "x"]});
        let result = object(&document)
            .and_then(|fields| optional(fields, "a", "a", |value| each(value, int64)));
        let error = result.expect_err("second element is not an integer");
        assert_eq!(error.location(), "a > [1]");
    }
}
