//! NumPy `.npy` files (format versions 1, 2 and 3) for float32, int32 and bool tensors.
//!
//! Model inputs and reference outputs travel as `.npy` files (`tfjsc run`, fixture tests). Only the
//! dtypes the ABI knows are read, little-endian and in C order; anything else is a clear error,
//! never a silent conversion. This module must never guess: a header it does not understand is
//! rejected.

use std::path::Path;

use crate::description::{byte_size_of, DType};
use crate::tensor::Tensor;

/// The first six bytes of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Why a `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("cannot access .npy file {path}: {source}")]
    Io {
        /// The file path.
        path: std::path::PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The bytes do not start with the `.npy` magic string.
    #[error("not a .npy file (bad magic bytes)")]
    BadMagic,
    /// A format version other than 1, 2 or 3.
    #[error("unsupported .npy format version {major}.{minor}")]
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The file ends inside the header or the data.
    #[error(".npy data is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Bytes after the data.
    #[error(".npy file has {extra} bytes after the {expected} data bytes")]
    TrailingData {
        /// Data bytes expected.
        expected: usize,
        /// Bytes beyond them.
        extra: usize,
    },
    /// The header dictionary could not be parsed.
    #[error("malformed .npy header: {0}")]
    BadHeader(String),
    /// A dtype other than little-endian float32, int32 or bool.
    #[error("unsupported .npy dtype '{0}': only '<f4' (float32), '<i4' (int32) and '|b1' (bool) are supported")]
    UnsupportedDType(String),
    /// Column-major data.
    #[error(
        ".npy file is in Fortran order; only C order is supported (use numpy.ascontiguousarray)"
    )]
    FortranOrder,
    /// A bool element other than 0 or 1.
    #[error(".npy bool data holds byte {0}, not 0 or 1")]
    BadBool(u8),
}

/// Reads a `.npy` file into a tensor.
pub fn read_npy(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_npy(&bytes)
}

/// Writes a tensor as a version 1.0 `.npy` file.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    std::fs::write(path, encode_npy(tensor)).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses the bytes of a `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<Tensor, NpyError> {
    let truncated = |expected: usize| NpyError::Truncated {
        expected,
        found: bytes.len(),
    };
    if bytes.len() < 8 {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(6)]) {
            truncated(10)
        } else {
            NpyError::BadMagic
        });
    }
    if &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (length_size, header_length) = match major {
        1 => {
            let field = bytes.get(8..10).ok_or_else(|| truncated(10))?;
            (2, usize::from(u16::from_le_bytes([field[0], field[1]])))
        }
        2 | 3 => {
            let field = bytes.get(8..12).ok_or_else(|| truncated(12))?;
            let length = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
            (4, length as usize)
        }
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    let header_start: usize = 8 + length_size;
    let data_start = header_start
        .checked_add(header_length)
        .ok_or_else(|| truncated(usize::MAX))?;
    let header = bytes
        .get(header_start..data_start)
        .ok_or_else(|| truncated(data_start))?;
    let header = std::str::from_utf8(header)
        .map_err(|_| NpyError::BadHeader("header is not UTF-8".to_string()))?;
    let (dtype, shape) = parse_header(header)?;

    let data = &bytes[data_start..];
    let expected = byte_size_of(dtype, &shape)
        .ok_or_else(|| NpyError::BadHeader(format!("shape {shape:?} is too large")))?;
    if data.len() < expected {
        return Err(NpyError::Truncated {
            expected: data_start + expected,
            found: bytes.len(),
        });
    }
    if data.len() > expected {
        return Err(NpyError::TrailingData {
            expected,
            extra: data.len() - expected,
        });
    }
    if dtype == DType::Bool {
        if let Some(&bad) = data.iter().find(|&&byte| byte > 1) {
            return Err(NpyError::BadBool(bad));
        }
    }
    let mut data = data.to_vec();
    if cfg!(target_endian = "big") && dtype.size_in_bytes() == 4 {
        data.chunks_exact_mut(4).for_each(|chunk| chunk.reverse());
    }
    Ok(Tensor { dtype, shape, data })
}

/// Encodes a tensor as the bytes of a version 1.0 `.npy` file.
pub fn encode_npy(tensor: &Tensor) -> Vec<u8> {
    let descr = match tensor.dtype {
        DType::Float32 => "<f4",
        DType::Int32 => "<i4",
        DType::Bool => "|b1",
    };
    let dimensions: Vec<String> = tensor.shape.iter().map(usize::to_string).collect();
    let shape = match dimensions.len() {
        1 => format!("({},)", dimensions[0]),
        _ => format!("({})", dimensions.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that the data starts at a multiple of 64, ending the header in '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');

    let mut bytes = Vec::with_capacity(10 + header.len() + tensor.data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    let start = bytes.len();
    bytes.extend_from_slice(&tensor.data);
    if cfg!(target_endian = "big") && tensor.dtype.size_in_bytes() == 4 {
        bytes[start..]
            .chunks_exact_mut(4)
            .for_each(|chunk| chunk.reverse());
    }
    bytes
}

/// A value in the header dictionary.
#[derive(Debug, PartialEq)]
enum HeaderValue {
    Text(String),
    Boolean(bool),
    Tuple(Vec<usize>),
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(header: &str) -> Result<(DType, Vec<usize>), NpyError> {
    let mut parser = HeaderParser {
        rest: header.trim(),
    };
    let entries = parser.dictionary()?;
    let find = |key: &str| {
        entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
            .ok_or_else(|| NpyError::BadHeader(format!("missing key '{key}'")))
    };
    let dtype = match find("descr")? {
        HeaderValue::Text(descr) => match descr.as_str() {
            "<f4" => DType::Float32,
            "<i4" => DType::Int32,
            "|b1" | "<b1" | "?" => DType::Bool,
            other => return Err(NpyError::UnsupportedDType(other.to_string())),
        },
        _ => return Err(NpyError::BadHeader("'descr' is not a string".to_string())),
    };
    match find("fortran_order")? {
        HeaderValue::Boolean(false) => {}
        HeaderValue::Boolean(true) => return Err(NpyError::FortranOrder),
        _ => {
            return Err(NpyError::BadHeader(
                "'fortran_order' is not a boolean".to_string(),
            ))
        }
    }
    let shape = match find("shape")? {
        HeaderValue::Tuple(shape) => shape.clone(),
        _ => return Err(NpyError::BadHeader("'shape' is not a tuple".to_string())),
    };
    Ok((dtype, shape))
}

/// A tiny recursive-descent parser for the Python literal subset `.npy` headers use.
struct HeaderParser<'text> {
    rest: &'text str,
}

impl HeaderParser<'_> {
    fn error(&self, expected: &str) -> NpyError {
        let near: String = self.rest.chars().take(20).collect();
        NpyError::BadHeader(format!("expected {expected} near `{near}`"))
    }

    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn dictionary(&mut self) -> Result<Vec<(String, HeaderValue)>, NpyError> {
        if !self.eat("{") {
            return Err(self.error("`{`"));
        }
        let mut entries = Vec::new();
        loop {
            if self.eat("}") {
                return Ok(entries);
            }
            let key = self.string()?;
            if !self.eat(":") {
                return Err(self.error("`:`"));
            }
            let value = self.value()?;
            entries.push((key, value));
            if !self.eat(",") {
                if self.eat("}") {
                    return Ok(entries);
                }
                return Err(self.error("`,` or `}`"));
            }
        }
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_spaces();
        let quote = match self.rest.chars().next() {
            Some(quote @ ('\'' | '"')) => quote,
            _ => return Err(self.error("a quoted string")),
        };
        let body = &self.rest[1..];
        let Some(end) = body.find(quote) else {
            return Err(self.error("a closing quote"));
        };
        let text = body[..end].to_string();
        self.rest = &body[end + 1..];
        Ok(text)
    }

    fn value(&mut self) -> Result<HeaderValue, NpyError> {
        if self.eat("True") {
            return Ok(HeaderValue::Boolean(true));
        }
        if self.eat("False") {
            return Ok(HeaderValue::Boolean(false));
        }
        if self.eat("(") {
            let mut dimensions = Vec::new();
            loop {
                if self.eat(")") {
                    return Ok(HeaderValue::Tuple(dimensions));
                }
                dimensions.push(self.integer()?);
                if !self.eat(",") {
                    if self.eat(")") {
                        return Ok(HeaderValue::Tuple(dimensions));
                    }
                    return Err(self.error("`,` or `)`"));
                }
            }
        }
        Ok(HeaderValue::Text(self.string()?))
    }

    fn integer(&mut self) -> Result<usize, NpyError> {
        self.skip_spaces();
        let digits = self.rest.len()
            - self
                .rest
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        let value = self.rest[..digits]
            .parse()
            .map_err(|_| self.error("a dimension"))?;
        self.rest = &self.rest[digits..];
        // Python 2 era files may write `3L`.
        self.eat("L");
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_dtype_and_rank() {
        let tensors = [
            Tensor::from_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap(),
            Tensor::from_i32(&[4], &[1, -2, 3, i32::MAX]).unwrap(),
            Tensor::from_bool(&[], &[true]).unwrap(),
            Tensor::from_bool(&[0, 5], &[]).unwrap(),
        ];
        for tensor in tensors {
            let bytes = encode_npy(&tensor);
            assert_eq!((bytes.len() - tensor.data.len()) % 64, 0);
            assert_eq!(parse_npy(&bytes).unwrap(), tensor);
        }
    }

    fn with_header(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[major, 0]);
        if major == 1 {
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn reads_version_2_and_python_2_headers() {
        let header = "{\"descr\":\"<i4\",\"shape\":(2L,),\"fortran_order\":False}\n";
        let tensor = parse_npy(&with_header(2, header, &[1, 0, 0, 0, 2, 0, 0, 0])).unwrap();
        assert_eq!(tensor.to_i32().unwrap(), vec![1, 2]);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let header = "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }";
        let error = parse_npy(&with_header(1, header, &[0; 4])).unwrap_err();
        assert!(matches!(error, NpyError::FortranOrder), "{error}");

        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
        let error = parse_npy(&with_header(1, header, &[0; 8])).unwrap_err();
        assert!(error.to_string().contains("'<f8'"), "{error}");

        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
        let error = parse_npy(&with_header(1, header, &[0; 11])).unwrap_err();
        assert!(matches!(error, NpyError::Truncated { .. }), "{error}");
        let error = parse_npy(&with_header(1, header, &[0; 13])).unwrap_err();
        assert!(
            matches!(error, NpyError::TrailingData { extra: 1, .. }),
            "{error}"
        );

        let error = parse_npy(&with_header(1, "{'descr': '<f4'", &[])).unwrap_err();
        assert!(matches!(error, NpyError::BadHeader(_)), "{error}");

        assert!(matches!(
            parse_npy(b"PK\x03\x04zipfile"),
            Err(NpyError::BadMagic)
        ));
        assert!(matches!(
            parse_npy(&MAGIC[..4]),
            Err(NpyError::Truncated { .. })
        ));
        let error = parse_npy(&with_header(9, "{}", &[])).unwrap_err();
        assert!(matches!(
            error,
            NpyError::UnsupportedVersion { major: 9, .. }
        ));
    }
}
