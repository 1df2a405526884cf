//! Weight quantization as the TF.js converter does it: float16, or affine uint8/uint16 per
//! tensor (value = q * scale + min, with min nudged so that 0.0 is exactly representable).
//! Each kind applies to all float32 weights or to the names matching its wildcard patterns.

use serde_json::{json, Value as Json};

use super::tensor::Tensor;

/// Which weights get which quantization.
#[derive(Debug, Clone, Default)]
pub struct Quantization {
    /// Patterns per kind; `None` when the kind is off, `Some(["*"])` for all weights.
    pub float16: Option<Vec<String>>,
    pub uint8: Option<Vec<String>>,
    pub uint16: Option<Vec<String>>,
}

impl Quantization {
    /// Whether no quantization is asked for.
    pub fn is_empty(&self) -> bool {
        self.float16.is_none() && self.uint8.is_none() && self.uint16.is_none()
    }
}

/// `*` matches any run of characters, `?` any one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '*' {
        p += 1;
    }
    p == pattern.len()
}

fn matches(patterns: &Option<Vec<String>>, name: &str) -> bool {
    patterns
        .as_ref()
        .is_some_and(|patterns| patterns.iter().any(|p| wildcard_match(p, name)))
}

/// The stored bytes and manifest `quantization` entry of a float32 weight, if a kind applies.
pub fn quantize(
    name: &str,
    tensor: &Tensor,
    quantization: &Quantization,
) -> Option<(Vec<u8>, Json)> {
    let values = tensor.as_f32()?;
    if matches(&quantization.float16, name) {
        let bytes = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        return Some((
            bytes,
            json!({"dtype": "float16", "original_dtype": "float32"}),
        ));
    }
    let bits = if matches(&quantization.uint8, name) {
        8
    } else if matches(&quantization.uint16, name) {
        16
    } else {
        return None;
    };
    let (scale, min, max) = affine_range(&values, bits);
    let top = ((1u32 << bits) - 1) as f32;
    let mut bytes = Vec::with_capacity(values.len() * bits / 8);
    for &value in &values {
        let q = if scale == 0.0 {
            0.0
        } else {
            ((value.clamp(min, max) - min) / scale)
                .round()
                .clamp(0.0, top)
        };
        if bits == 8 {
            bytes.push(q as u8);
        } else {
            bytes.extend_from_slice(&(q as u16).to_le_bytes());
        }
    }
    let dtype = if bits == 8 { "uint8" } else { "uint16" };
    Some((
        bytes,
        json!({"dtype": dtype, "scale": scale, "min": min, "original_dtype": "float32"}),
    ))
}

/// Scale and nudged range of affine quantization to `bits` bits.
fn affine_range(values: &[f32], bits: usize) -> (f32, f32, f32) {
    let top = ((1u32 << bits) - 1) as f32;
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let min = finite.clone().fold(f32::INFINITY, f32::min).min(0.0);
    let max = finite.fold(f32::NEG_INFINITY, f32::max).max(0.0);
    if !(min.is_finite() && max.is_finite()) || max == min {
        return (1.0, min.min(0.0), min.min(0.0) + top);
    }
    let scale = (max - min) / top;
    let zero_point = (-min / scale).round().clamp(0.0, top);
    let nudged_min = -zero_point * scale;
    let nudged_max = nudged_min + top * scale;
    (scale, nudged_min, nudged_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "a/b"));
        assert!(wildcard_match("conv*/kernel", "conv1/block/kernel"));
        assert!(!wildcard_match("conv*/kernel", "dense/kernel"));
        assert!(wildcard_match("a?c", "abc"));
    }

    #[test]
    fn uint8_round_trips_within_half_a_step_and_keeps_zero() {
        let values = [-1.0f32, -0.25, 0.0, 0.3, 2.0];
        let tensor = Tensor::float32(vec![5], &values);
        let all = Quantization {
            uint8: Some(vec!["*".into()]),
            ..Default::default()
        };
        let (bytes, info) = quantize("w", &tensor, &all).unwrap();
        let scale = info["scale"].as_f64().unwrap() as f32;
        let min = info["min"].as_f64().unwrap() as f32;
        for (q, v) in bytes.iter().zip(values) {
            let decoded = *q as f32 * scale + min;
            assert!(
                (decoded - v).abs() <= scale / 2.0 + 1e-6,
                "{decoded} vs {v}"
            );
        }
        assert_eq!(bytes[2] as f32 * scale + min, 0.0);
    }
}
