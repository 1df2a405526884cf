//! Runs a tfjsc-compiled model once on `.npy` inputs, through the safe Rust API.
//!
//! ```text
//! run_model LIBRARY INPUT.npy [INPUT2.npy ...] OUTPUT.npy
//! ```
//!
//! One `.npy` file per model input, in the model's input order; output 0 is written to
//! OUTPUT.npy. The shards are read from the weights directory recorded at compile time, or from
//! `TFJSC_WEIGHTS_DIR` when set.

use std::error::Error;
use std::path::{Path, PathBuf};

use tfjsc_runtime::npy::{read_npy, write_npy};
use tfjsc_runtime::Model;

/// The example's work, separate from `main` so tests can call it directly.
pub fn run(arguments: &[String]) -> Result<String, Box<dyn Error>> {
    if arguments.len() < 3 {
        return Err("usage: run_model LIBRARY INPUT.npy [INPUT2.npy ...] OUTPUT.npy".into());
    }
    let library = Path::new(&arguments[0]);
    let weights_dir = std::env::var_os("TFJSC_WEIGHTS_DIR").map(PathBuf::from);
    let model = Model::load(library, weights_dir.as_deref())?;
    let input_paths = &arguments[1..arguments.len() - 1];
    let output_path = Path::new(&arguments[arguments.len() - 1]);
    let inputs = input_paths
        .iter()
        .map(|path| read_npy(Path::new(path)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut context = model.new_context()?;
    let outputs = context.run_tensors(&inputs)?;
    let first = outputs.first().ok_or("the model has no outputs")?;
    write_npy(output_path, first)?;
    let name = &model.description().outputs[0].name;
    Ok(format!(
        "{}: output `{name}`, {} {:?}",
        output_path.display(),
        first.dtype,
        first.shape
    ))
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match run(&arguments) {
        Ok(summary) => println!("{summary}"),
        Err(error) => {
            eprintln!("run_model: {error}");
            std::process::exit(1);
        }
    }
}
