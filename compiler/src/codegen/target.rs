//! The target CPU: which ISA features generated code may use (`--cpu`).

use std::str::FromStr;

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};

use super::kernel::Features;
use super::microkernel::Isa;
use super::CodegenError;

/// CPU levels `--cpu` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuLevel {
    /// The machine compiling (its detected features).
    Native,
    /// SSE4.2 and POPCNT (x86-64-v2).
    X86_64V2,
    /// AVX2, FMA, BMI (x86-64-v3).
    X86_64V3,
    /// AVX-512 F/VL/DQ/BW (x86-64-v4).
    X86_64V4,
}

impl FromStr for CpuLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "native" => CpuLevel::Native,
            "x86-64-v2" => CpuLevel::X86_64V2,
            "x86-64-v3" => CpuLevel::X86_64V3,
            "x86-64-v4" => CpuLevel::X86_64V4,
            other => {
                return Err(format!(
                    "unknown --cpu {other:?} (native, x86-64-v2, x86-64-v3, x86-64-v4)"
                ))
            }
        })
    }
}

/// The compilation target.
#[derive(Clone, Debug)]
pub struct Target {
    pub cpu: CpuLevel,
}

impl Target {
    pub fn new(cpu: CpuLevel) -> Target {
        Target { cpu }
    }

    fn isa_flags(&self) -> &'static [&'static str] {
        match self.cpu {
            CpuLevel::Native => &[],
            CpuLevel::X86_64V2 => &[
                "has_sse3",
                "has_ssse3",
                "has_sse41",
                "has_sse42",
                "has_popcnt",
            ],
            CpuLevel::X86_64V3 => &[
                "has_sse3",
                "has_ssse3",
                "has_sse41",
                "has_sse42",
                "has_popcnt",
                "has_avx",
                "has_avx2",
                "has_fma",
                "has_bmi1",
                "has_bmi2",
                "has_lzcnt",
            ],
            CpuLevel::X86_64V4 => &[
                "has_sse3",
                "has_ssse3",
                "has_sse41",
                "has_sse42",
                "has_popcnt",
                "has_avx",
                "has_avx2",
                "has_fma",
                "has_bmi1",
                "has_bmi2",
                "has_lzcnt",
                "has_avx512f",
                "has_avx512vl",
                "has_avx512dq",
            ],
        }
    }

    /// Whether generated code may use FMA, and which micro-kernels.
    pub fn features(&self) -> Features {
        let avx512 = ["avx512f", "avx512vl", "avx512dq"];
        let (fma, isa) = match self.cpu {
            CpuLevel::Native if avx512.iter().all(|f| host_has(f)) && host_has("fma") => {
                (true, Isa::Avx512)
            }
            CpuLevel::Native if host_has("fma") && host_has("avx2") => (true, Isa::Avx2),
            CpuLevel::Native => (host_has("fma"), Isa::Portable),
            CpuLevel::X86_64V2 => (false, Isa::Portable),
            CpuLevel::X86_64V3 => (true, Isa::Avx2),
            CpuLevel::X86_64V4 => (true, Isa::Avx512),
        };
        Features { fma, isa }
    }

    /// CPU features the generated code may use, by the names the runtime checks.
    pub fn required_features(&self) -> Vec<&'static str> {
        let from_flags = |flags: &[&'static str]| -> Vec<&'static str> {
            flags
                .iter()
                .map(|flag| match flag.trim_start_matches("has_") {
                    "sse41" => "sse4.1",
                    "sse42" => "sse4.2",
                    other => other,
                })
                .collect()
        };
        match self.cpu {
            CpuLevel::Native => {
                let all = CpuLevel::X86_64V4;
                from_flags(Target::new(all).isa_flags())
                    .into_iter()
                    .filter(|f| host_has(f))
                    .collect()
            }
            _ => from_flags(self.isa_flags()),
        }
    }

    /// A short human description, recorded in the compiled model.
    pub fn describe(&self) -> String {
        format!(
            "{} {:?} (fma: {})",
            std::env::consts::ARCH,
            self.cpu,
            self.features().fma
        )
    }

    pub fn isa(&self) -> Result<OwnedTargetIsa, CodegenError> {
        let mut shared = settings::builder();
        let set = |b: &mut settings::Builder, name: &str, value: &str| {
            b.set(name, value)
                .map_err(|e| CodegenError::Backend(format!("setting {name}: {e}")))
        };
        set(&mut shared, "opt_level", "speed")?;
        set(&mut shared, "is_pic", "true")?;
        set(
            &mut shared,
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )?;
        let flags = settings::Flags::new(shared);
        let mut isa = match self.cpu {
            CpuLevel::Native => {
                cranelift_native::builder().map_err(|e| CodegenError::Backend(e.to_string()))?
            }
            _ => cranelift_codegen::isa::lookup(target_lexicon::Triple::host())
                .map_err(|e| CodegenError::Backend(e.to_string()))?,
        };
        for flag in self.isa_flags() {
            isa.enable(flag)
                .map_err(|e| CodegenError::Backend(format!("ISA flag {flag}: {e}")))?;
        }
        isa.finish(flags)
            .map_err(|e| CodegenError::Backend(e.to_string()))
    }
}

/// Whether the compiling machine has an x86 feature (names as the runtime checks them).
#[cfg(target_arch = "x86_64")]
fn host_has(feature: &str) -> bool {
    tfjsc_runtime::cpu::has_feature(feature)
}

#[cfg(not(target_arch = "x86_64"))]
fn host_has(feature: &str) -> bool {
    feature == "fma"
}
