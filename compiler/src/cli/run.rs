//! `tfjsc run`: a compiled library on .npy inputs, one .npy per output plus `outputs.json`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use tfjsc_runtime::npy::{read_npy, write_npy};
use tfjsc_runtime::{LoadOptions, Model, Tensor, WeightLoading};

#[derive(Args)]
pub struct RunArgs {
    /// The compiled library (`tfjsc compile ... -o libmodel.so`).
    library: PathBuf,
    /// An input: NAME=FILE.npy (repeatable); a model with one input also takes FILE.npy alone.
    #[arg(long = "input", required = true)]
    inputs: Vec<String>,
    /// Directory for the outputs (created if missing).
    #[arg(long = "out")]
    out: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
}

/// How `run` and `bench` load a compiled library.
#[derive(Args)]
pub struct LoadArgs {
    /// Directory of the weight shards (default: where they were at compile time).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Prefix of the library's symbols.
    #[arg(long, default_value = "tfjsc_model")]
    symbol_prefix: String,
    /// In a library of several kernel sets, run this one (x86-64-v3, x86-64-v4) rather than the
    /// best the CPU supports; loading fails if the CPU lacks its features.
    #[arg(long, value_name = "LEVEL")]
    kernel_set: Option<String>,
    /// Read the weight shards into private memory instead of mapping them. Use it where the
    /// shard files may be truncated or rewritten in place while the model is loaded (a mapped
    /// shard must not be: replace shards by renaming a new file over them).
    #[arg(long)]
    copy_weights: bool,
    /// Threads per run: this one and N - 1 workers (results are bit-identical for any N).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl LoadArgs {
    /// Loads `library` as these arguments say, with context on failure.
    pub fn load(&self, library: &Path) -> Result<Model> {
        let options = LoadOptions {
            symbol_prefix: self.symbol_prefix.clone(),
            kernel_set: self.kernel_set.clone(),
            weights_dir: self.weights.clone(),
            weights: if self.copy_weights {
                WeightLoading::Copied
            } else {
                WeightLoading::Mapped
            },
        };
        Model::load_with_options(library, &options)
            .with_context(|| format!("loading {}", library.display()))
    }

    /// A context of `model` running on `--threads` threads.
    pub fn context<'m>(&self, model: &'m Model) -> Result<tfjsc_runtime::Context<'m>> {
        let mut context = model.new_context()?;
        context.set_threads(self.threads)?;
        Ok(context)
    }
}

/// Loads the library with the default prefix and mapped weights, with context on failure.
pub fn load_model(library: &Path) -> Result<Model> {
    Model::load(library, None).with_context(|| format!("loading {}", library.display()))
}

/// Reads the inputs given as NAME=FILE or FILE, in the model's input order.
pub fn read_inputs(model: &Model, given: &[String]) -> Result<Vec<Tensor>> {
    let specs = &model.description().inputs;
    let mut tensors: Vec<Option<Tensor>> = vec![None; specs.len()];
    for argument in given {
        let (name, file) = match argument.split_once('=') {
            Some((name, file)) => (Some(name.trim_end_matches(":0")), file),
            None => (None, argument.as_str()),
        };
        let index = match name {
            Some(name) => specs.iter().position(|s| s.name == name).with_context(|| {
                let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                format!(
                    "--input {argument:?}: the model has no input {name:?} (inputs: {})",
                    names.join(", ")
                )
            })?,
            None if specs.len() == 1 => 0,
            None => bail!(
                "--input {argument:?}: the model has {} inputs; name it as NAME=FILE.npy",
                specs.len()
            ),
        };
        let tensor = read_npy(Path::new(file))
            .with_context(|| format!("reading input {:?} from {file}", specs[index].name))?;
        let spec = &specs[index];
        if tensor.dtype != spec.dtype || tensor.shape != spec.shape {
            bail!(
                "input {:?} from {file}: expected {} {:?}, the file holds {} {:?}",
                spec.name,
                spec.dtype.name(),
                spec.shape,
                tensor.dtype.name(),
                tensor.shape
            );
        }
        tensors[index] = Some(tensor);
    }
    tensors
        .into_iter()
        .zip(specs)
        .map(|(tensor, spec)| {
            tensor.with_context(|| format!("no --input given for {:?}", spec.name))
        })
        .collect()
}

/// A file name from a tensor name.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + ".npy"
}

pub fn run(args: RunArgs) -> Result<()> {
    let model = args.load.load(&args.library)?;
    let inputs = read_inputs(&model, &args.inputs)?;
    let mut context = args.load.context(&model)?;
    let outputs = context.run_tensors(&inputs).context("running the model")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut listing = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (spec, tensor) in model.description().outputs.iter().zip(&outputs) {
        let mut file = file_name(&spec.name);
        let mut counter = 1;
        while !used.insert(file.clone()) {
            file = format!("{}_{counter}.npy", file.trim_end_matches(".npy"));
            counter += 1;
        }
        let path = args.out.join(&file);
        write_npy(&path, tensor).with_context(|| format!("writing {}", path.display()))?;
        listing.push(json!({"name": spec.name, "file": file, "dtype": spec.dtype.name(), "shape": spec.shape}));
    }
    let index = args.out.join("outputs.json");
    std::fs::write(&index, serde_json::to_string_pretty(&listing)? + "\n")
        .with_context(|| format!("writing {}", index.display()))?;
    eprintln!(
        "wrote {} output(s) to {}",
        listing.len(),
        args.out.display()
    );
    Ok(())
}
