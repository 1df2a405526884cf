//! The other place packed weights could live: a file of the packed panels written beside the
//! library at compile time and memory-mapped at load (issue 11's design question). This measures
//! what loading such a file costs on this machine — map it, check its CRC-32 as the runtime
//! checks shards, and fault in every page as the first run would — and what it leaves resident,
//! to set beside `tfjsc bench`'s load time and peak RSS for packing at load.
//!
//!     cargo run --release -p tfjsc-runtime --example mapped_weights -- FILE

use std::time::Instant;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: mapped_weights FILE");
    let before = resident_kib();
    let start = Instant::now();
    let file = std::fs::File::open(&path).expect("open");
    // SAFETY: a read-only mapping of a file this process does not change.
    let mapping = unsafe { memmap2::Mmap::map(&file) }.expect("map");
    let mapped = start.elapsed();
    let crc = crc32fast::hash(&mapping);
    let checked = start.elapsed();
    // The first run reads every packed weight: one touch per page.
    let touched: u64 = mapping.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    let first_touch = start.elapsed();
    println!(
        "{} MB: map {:.2} ms, + CRC-32 {:.1} ms (crc {crc:08x}), + first touch {:.1} ms; resident +{} MB ({touched})",
        mapping.len() / 1_000_000,
        mapped.as_secs_f64() * 1e3,
        (checked - mapped).as_secs_f64() * 1e3,
        (first_touch - checked).as_secs_f64() * 1e3,
        (resident_kib() - before) / 1024,
    );
}
