//! Compiles `schemas/*.proto` to Rust with protox (a pure-Rust schema
//! compiler, so no `protoc` is needed) and prost-build.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema_directory = PathBuf::from("schemas");
    println!("cargo:rerun-if-changed={}", schema_directory.display());
    let mut schemas = Vec::new();
    for entry in std::fs::read_dir(&schema_directory)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "proto")
        {
            println!("cargo:rerun-if-changed={}", path.display());
            schemas.push(path);
        }
    }
    schemas.sort();
    let descriptors = protox::compile(&schemas, [&schema_directory])?;
    prost_build::Config::new()
        // Ordered maps: attribute and signature iteration is deterministic.
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
