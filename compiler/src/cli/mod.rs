//! Command-line front end: argument parsing and reporting. Library errors get their context here
//! and end the process with a non-zero status.

mod bench;
mod compile;
mod convert;
mod inspect;
mod run;

use clap::{Parser, Subcommand};

use tfjsc::import::InputShape;

#[derive(Parser)]
#[command(
    name = "tfjsc",
    version,
    about = "Compile TensorFlow.js web models to native code, and run them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a TensorFlow model (SavedModel, frozen graph, session bundle, TF Hub module) to a TF.js web model.
    Convert(convert::ConvertArgs),
    /// Compile a web model (model.json or legacy web_model.pb) to an object (.o) or shared library (.so), plus a C header.
    Compile(compile::CompileArgs),
    /// Run a compiled library on .npy inputs and write .npy outputs.
    Run(run::RunArgs),
    /// Show a web model's inputs, outputs, ops, parameters and FLOPs (or a compiled library's description).
    Inspect(inspect::InspectArgs),
    /// Time a compiled library: warm-up, then median, p90 and min over many runs (--profile: per kernel and per op too; several libraries: in turn, each against the first).
    Bench(bench::BenchArgs),
}

/// Parses `NAME=d0,d1,...`.
pub fn parse_input_shape(text: &str) -> Result<InputShape, String> {
    let (name, dims) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("expected NAME=d0,d1,..., got {text:?}"))?;
    let shape = dims
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| format!("dimension {d:?} in {text:?} is not a non-negative integer"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InputShape {
        name: name.trim_end_matches(":0").to_string(),
        shape,
    })
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Run(args) => run::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {}", error_text(&error));
            1
        }
    }
}

/// The error and its causes joined by ": ", skipping a cause whose text the message already
/// holds (many errors quote their source).
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Writes command output to stdout; a closed pipe (`tfjsc inspect m | head`) ends it quietly.
pub fn print_output(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}
