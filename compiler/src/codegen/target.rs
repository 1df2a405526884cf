//! The target CPUs: which kernel sets a library holds (`--cpu`), and for each, which ISA
//! features its code may use.
//!
//! A library holds one kernel set per listed CPU level. The default, `x86-64-v3,x86-64-v4`, runs
//! on any CPU with AVX2 and FMA and uses the AVX-512 kernels where the CPU has them: `PREFIX_run`
//! asks the CPU once (`cpuid`, see `dispatch`) and calls the best set it can run. `--cpu native`
//! or a single level builds one lean set.

use std::str::FromStr;

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};

use super::kernel::Features;
use super::microkernel::Isa;
use super::CodegenError;

/// One CPU level a kernel set is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    /// SSE4.2 and POPCNT (x86-64-v2): the portable Cranelift kernels.
    X86_64V2,
    /// AVX2, FMA, BMI (x86-64-v3): the AVX2 micro-kernels.
    X86_64V3,
    /// AVX-512 F/CD/BW/DQ/VL (x86-64-v4): the AVX-512 micro-kernels.
    X86_64V4,
    /// The machine compiling (its detected features); always alone in a target.
    Native,
}

/// Where `cpuid` reports a feature: leaf 1 ECX, leaf 7 (sub-leaf 0) EBX, or leaf 0x8000_0001
/// ECX. `dispatch` reads these three registers once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidWord {
    Leaf1Ecx,
    Leaf7Ebx,
    Extended1Ecx,
}

/// An ISA feature generated code may use: its name as the runtime checks it
/// (`tfjsc_runtime::cpu::has_feature`), the Cranelift flag that lets Cranelift use it (if any),
/// and its `cpuid` bit.
#[derive(Clone, Copy, Debug)]
pub struct CpuFeature {
    pub name: &'static str,
    cranelift_flag: Option<&'static str>,
    pub word: CpuidWord,
    pub bit: u32,
}

const fn feature(
    name: &'static str,
    cranelift_flag: Option<&'static str>,
    word: CpuidWord,
    bit: u32,
) -> CpuFeature {
    CpuFeature {
        name,
        cranelift_flag,
        word,
        bit,
    }
}

use CpuidWord::{Extended1Ecx, Leaf1Ecx, Leaf7Ebx};

/// The features each level adds to the one below (x86-64 psABI levels, restricted to what the
/// generated code uses), in level order.
const V2_FEATURES: &[CpuFeature] = &[
    feature("sse3", Some("has_sse3"), Leaf1Ecx, 0),
    feature("ssse3", Some("has_ssse3"), Leaf1Ecx, 9),
    feature("sse4.1", Some("has_sse41"), Leaf1Ecx, 19),
    feature("sse4.2", Some("has_sse42"), Leaf1Ecx, 20),
    feature("popcnt", Some("has_popcnt"), Leaf1Ecx, 23),
];
const V3_FEATURES: &[CpuFeature] = &[
    feature("avx", Some("has_avx"), Leaf1Ecx, 28),
    feature("avx2", Some("has_avx2"), Leaf7Ebx, 5),
    feature("fma", Some("has_fma"), Leaf1Ecx, 12),
    feature("bmi1", Some("has_bmi1"), Leaf7Ebx, 3),
    feature("bmi2", Some("has_bmi2"), Leaf7Ebx, 8),
    feature("lzcnt", Some("has_lzcnt"), Extended1Ecx, 5),
];
const V4_FEATURES: &[CpuFeature] = &[
    feature("avx512f", Some("has_avx512f"), Leaf7Ebx, 16),
    feature("avx512dq", Some("has_avx512dq"), Leaf7Ebx, 17),
    feature("avx512cd", None, Leaf7Ebx, 28),
    feature("avx512bw", None, Leaf7Ebx, 30),
    feature("avx512vl", Some("has_avx512vl"), Leaf7Ebx, 31),
];

/// The operating-system state a level needs saved on context switches (XCR0 bits): SSE and
/// AVX registers from x86-64-v3, the opmask and zmm registers from x86-64-v4.
pub const XCR0_AVX: u32 = 0b110;
pub const XCR0_AVX512: u32 = 0b1110_0110;

impl CpuLevel {
    /// The fixed levels, lowest first.
    pub const FIXED: [CpuLevel; 3] = [CpuLevel::X86_64V2, CpuLevel::X86_64V3, CpuLevel::X86_64V4];

    /// The name `--cpu` takes.
    pub fn name(self) -> &'static str {
        match self {
            CpuLevel::Native => "native",
            CpuLevel::X86_64V2 => "x86-64-v2",
            CpuLevel::X86_64V3 => "x86-64-v3",
            CpuLevel::X86_64V4 => "x86-64-v4",
        }
    }

    /// The level's number as `dispatch`'s CPU check returns it (x86-64 itself is 1).
    pub fn number(self) -> u32 {
        match self {
            CpuLevel::X86_64V2 => 2,
            CpuLevel::X86_64V3 => 3,
            CpuLevel::X86_64V4 => 4,
            CpuLevel::Native => 0,
        }
    }

    /// Every feature a fixed level needs (its own and those of the levels below).
    pub fn cpu_features(self) -> Vec<CpuFeature> {
        let tables = [V2_FEATURES, V3_FEATURES, V4_FEATURES];
        let count = (self.number() as usize).saturating_sub(1);
        tables[..count.min(3)].concat()
    }

    /// The XCR0 bits a fixed level needs the operating system to have enabled.
    pub fn xcr0(self) -> u32 {
        match self {
            CpuLevel::X86_64V4 => XCR0_AVX512,
            CpuLevel::X86_64V3 => XCR0_AVX,
            _ => 0,
        }
    }

    /// Whether the generated code may use FMA, and which micro-kernels.
    pub fn features(self) -> Features {
        let (fma, isa) = match self {
            CpuLevel::Native => {
                let v4 = CpuLevel::X86_64V4.cpu_features();
                let v3 = CpuLevel::X86_64V3.cpu_features();
                if v4.iter().all(|f| host_has(f.name)) {
                    (true, Isa::Avx512)
                } else if v3.iter().all(|f| host_has(f.name)) {
                    (true, Isa::Avx2)
                } else {
                    (host_has("fma"), Isa::Portable)
                }
            }
            CpuLevel::X86_64V2 => (false, Isa::Portable),
            CpuLevel::X86_64V3 => (true, Isa::Avx2),
            CpuLevel::X86_64V4 => (true, Isa::Avx512),
        };
        Features { fma, isa }
    }

    /// CPU features the generated code may use, by the names the runtime checks.
    pub fn required_features(self) -> Vec<&'static str> {
        match self {
            CpuLevel::Native => CpuLevel::X86_64V4
                .cpu_features()
                .into_iter()
                .map(|f| f.name)
                .filter(|name| host_has(name))
                .collect(),
            _ => self.cpu_features().into_iter().map(|f| f.name).collect(),
        }
    }

    /// A short human description, recorded in the compiled model.
    pub fn describe(self) -> String {
        format!(
            "{} {} (fma: {})",
            std::env::consts::ARCH,
            self.name(),
            self.features().fma
        )
    }

    /// The Cranelift ISA that compiles this level's kernels.
    pub fn isa(self) -> Result<OwnedTargetIsa, CodegenError> {
        let mut shared = settings::builder();
        let set = |b: &mut settings::Builder, name: &str, value: &str| {
            b.set(name, value)
                .map_err(|e| CodegenError::Backend(format!("setting {name}: {e}")))
        };
        set(&mut shared, "opt_level", "speed")?;
        set(&mut shared, "is_pic", "true")?;
        set(&mut shared, "enable_verifier", "true")?;
        let flags = settings::Flags::new(shared);
        let mut isa = match self {
            CpuLevel::Native => {
                cranelift_native::builder().map_err(|e| CodegenError::Backend(e.to_string()))?
            }
            _ => cranelift_codegen::isa::lookup(target_lexicon::Triple::host())
                .map_err(|e| CodegenError::Backend(e.to_string()))?,
        };
        for flag in self.cpu_features().iter().filter_map(|f| f.cranelift_flag) {
            isa.enable(flag)
                .map_err(|e| CodegenError::Backend(format!("ISA flag {flag}: {e}")))?;
        }
        isa.finish(flags)
            .map_err(|e| CodegenError::Backend(e.to_string()))
    }

    /// The infix of this level's own entry points in a library of several kernel sets:
    /// `PREFIX_x86_64_v4_run`.
    pub fn symbol_infix(self) -> String {
        self.name().replace('-', "_")
    }
}

/// The compilation target: the kernel sets of a library, lowest level first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    levels: Vec<CpuLevel>,
}

impl Target {
    /// One lean kernel set.
    pub fn new(level: CpuLevel) -> Target {
        Target {
            levels: vec![level],
        }
    }

    /// The kernel sets, lowest level first.
    pub fn levels(&self) -> &[CpuLevel] {
        &self.levels
    }

    /// The micro-kernel ISA of each kernel set, lowest level first.
    pub fn isas(&self) -> Vec<Isa> {
        self.levels
            .iter()
            .map(|level| level.features().isa)
            .collect()
    }

    /// Whether the library holds several kernel sets (and so a dispatching `PREFIX_run`).
    pub fn dispatches(&self) -> bool {
        self.levels.len() > 1
    }

    /// The features a CPU needs to run the library at all: those of its lowest kernel set.
    pub fn required_features(&self) -> Vec<&'static str> {
        self.levels[0].required_features()
    }

    /// A short human description, recorded in the compiled model.
    pub fn describe(&self) -> String {
        match self.levels.as_slice() {
            [level] => level.describe(),
            levels => format!(
                "{} {} (chosen at load)",
                std::env::consts::ARCH,
                levels
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The default: AVX2 kernels for any x86-64-v3 CPU, and AVX-512 ones used where present.
impl Default for Target {
    fn default() -> Self {
        Target {
            levels: vec![CpuLevel::X86_64V3, CpuLevel::X86_64V4],
        }
    }
}

impl FromStr for Target {
    type Err = String;
    /// `native`, one level, or levels separated by commas (`x86-64-v3,x86-64-v4`).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut levels = Vec::new();
        for name in text.split(',').map(str::trim) {
            let level = match name {
                "native" => CpuLevel::Native,
                "x86-64-v2" => CpuLevel::X86_64V2,
                "x86-64-v3" => CpuLevel::X86_64V3,
                "x86-64-v4" => CpuLevel::X86_64V4,
                other => {
                    return Err(format!(
                        "unknown --cpu {other:?} (native, x86-64-v2, x86-64-v3, x86-64-v4, or \
                         levels separated by commas)"
                    ))
                }
            };
            if levels.contains(&level) {
                return Err(format!("--cpu lists {name} twice"));
            }
            levels.push(level);
        }
        if levels.len() > 1 && levels.contains(&CpuLevel::Native) {
            return Err("--cpu native builds one kernel set: list it alone".into());
        }
        levels.sort();
        Ok(Target { levels })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_sorted_and_alone() {
        let target: Target = "x86-64-v4, x86-64-v3".parse().unwrap();
        assert_eq!(target, Target::default());
        assert!(target.dispatches());
        assert_eq!(
            target.required_features(),
            CpuLevel::X86_64V3.required_features()
        );
        assert!("native,x86-64-v3".parse::<Target>().is_err());
        assert!("x86-64-v3,x86-64-v3".parse::<Target>().is_err());
        assert!("x86-64-v5".parse::<Target>().is_err());
        assert!(!"native".parse::<Target>().unwrap().dispatches());
    }

    #[test]
    fn each_level_needs_the_features_of_those_below() {
        let names = |level: CpuLevel| level.required_features();
        assert!(names(CpuLevel::X86_64V4).starts_with(&names(CpuLevel::X86_64V3)));
        assert!(names(CpuLevel::X86_64V3).starts_with(&names(CpuLevel::X86_64V2)));
        assert!(names(CpuLevel::X86_64V4).contains(&"avx512bw"));
    }

    /// The runtime must know every feature name a library can require, or it would refuse the
    /// library on every CPU.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_runtime_knows_every_feature() {
        for feature in CpuLevel::X86_64V4.cpu_features() {
            let name = feature.name;
            assert!(
                tfjsc_runtime::cpu::is_known_feature(name),
                "runtime does not know {name}"
            );
        }
    }
}
