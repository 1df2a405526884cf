//! CPU feature checks: a compiled model lists the features its code uses, and loading it on a
//! CPU without one is an error instead of an illegal instruction.

/// Whether this CPU has `feature` (names as in the description: `sse4.2`, `avx2`, `fma`, ...).
/// Unknown names count as missing.
pub fn has_feature(feature: &str) -> bool {
    detect(feature).unwrap_or(false)
}

/// Whether `feature` is a name this runtime can check.
pub fn is_known_feature(feature: &str) -> bool {
    detect(feature).is_some()
}

/// Some(whether this CPU, and the operating system, support `feature`); None for unknown names.
#[cfg(target_arch = "x86_64")]
fn detect(feature: &str) -> Option<bool> {
    use std::arch::is_x86_feature_detected as has;
    Some(match feature {
        "sse3" => has!("sse3"),
        "ssse3" => has!("ssse3"),
        "sse4.1" => has!("sse4.1"),
        "sse4.2" => has!("sse4.2"),
        "popcnt" => has!("popcnt"),
        "avx" => has!("avx"),
        "avx2" => has!("avx2"),
        "fma" => has!("fma"),
        "bmi1" => has!("bmi1"),
        "bmi2" => has!("bmi2"),
        "lzcnt" => has!("lzcnt"),
        "avx512f" => has!("avx512f"),
        "avx512cd" => has!("avx512cd"),
        "avx512bw" => has!("avx512bw"),
        "avx512vl" => has!("avx512vl"),
        "avx512dq" => has!("avx512dq"),
        "avx512bitalg" => has!("avx512bitalg"),
        "avx512vbmi" => has!("avx512vbmi"),
        _ => return None,
    })
}

/// Off x86-64 no feature names are defined yet.
#[cfg(not(target_arch = "x86_64"))]
fn detect(_feature: &str) -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_features_are_missing() {
        assert!(!super::has_feature("warp-drive"));
        assert!(!super::is_known_feature("warp-drive"));
    }
}
