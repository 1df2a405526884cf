//! `tfjsc convert`: TensorFlow models (SavedModel, frozen GraphDef, session bundle, TF Hub
//! module) to TF.js web models, natively — the job of the Python `tensorflowjs_converter`.
//!
//! Data flows one way: read the input ([`saved_model`], [`checkpoint`]: a V2 [`bundle`] or
//! [`checkpoint_v1`]) → freeze variables and inline the function library ([`freeze`]) → rewrite the flat graph as TensorFlow's Grappler and
//! the TF.js converter would ([`rewrite`]: strip debug ops, fold constants, fold batch norms,
//! fuse ops) → check the ops ([`op_check`]) → write model.json or the legacy format
//! ([`write`], [`quantize`]). This module never compiles or runs a model, and it never opens a
//! file outside the input folder (names read from the input are resolved inside it).

pub mod bundle;
pub mod checkpoint;
pub mod checkpoint_v1;
pub mod error;
pub mod freeze;
pub mod hub;
pub mod op_check;
pub mod quantize;
pub mod rewrite;
mod rewrite_fold;
mod rewrite_fuse;
pub mod saved_model;
pub mod slices;
pub mod tensor;
pub mod write;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use prost::Message;
use tfjsc_proto::tensorflow::{FunctionDefLibrary, GraphDef, MetaGraphDef, TensorShapeProto};
use tfjsc_runtime::shard_file::open_in_folder;

pub use error::ConvertError;
pub use quantize::Quantization;
pub use write::OutputFormat;

/// The input formats `tensorflowjs_converter` accepts (Keras formats excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    SavedModel,
    FrozenModel,
    SessionBundle,
    Hub,
}

impl InputFormat {
    /// Parses the `--input_format` spelling.
    pub fn parse(text: &str) -> Result<InputFormat, String> {
        Ok(match text {
            "tf_saved_model" => InputFormat::SavedModel,
            "tf_frozen_model" => InputFormat::FrozenModel,
            "tf_session_bundle" => InputFormat::SessionBundle,
            "tf_hub" => InputFormat::Hub,
            other => {
                return Err(format!(
                    "unknown input format {other:?}; expected tf_saved_model, tf_frozen_model, tf_session_bundle or tf_hub"
                ))
            }
        })
    }
}

/// Everything a conversion is asked to do.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub input_format: InputFormat,
    pub output_format: OutputFormat,
    /// Tags selecting the MetaGraph; `None` for the format's default.
    pub saved_model_tags: Option<Vec<String>>,
    /// `None` for the format's default (`serving_default`, or `default` for TF Hub).
    pub signature_name: Option<String>,
    pub output_node_names: Vec<String>,
    pub strip_debug_ops: bool,
    pub skip_op_check: bool,
    pub weight_shard_size_bytes: usize,
    pub quantization: Quantization,
    /// Where TF Hub downloads are kept.
    pub cache_dir: Option<PathBuf>,
    /// Network timeout for TF Hub downloads.
    pub timeout: std::time::Duration,
    /// Fold batch normalisation into the preceding convolution or product (and fuse).
    pub fold_batch_norms: bool,
}

impl Default for ConvertOptions {
    fn default() -> ConvertOptions {
        ConvertOptions {
            input_format: InputFormat::SavedModel,
            output_format: OutputFormat::GraphModel,
            saved_model_tags: None,
            signature_name: None,
            output_node_names: Vec::new(),
            strip_debug_ops: true,
            skip_op_check: false,
            weight_shard_size_bytes: 4 * 1024 * 1024,
            quantization: Quantization::default(),
            cache_dir: None,
            timeout: std::time::Duration::from_secs(60),
            fold_batch_norms: true,
        }
    }
}

/// One tensor of a signature, as model.json describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureTensor {
    /// "node:index".
    pub name: String,
    pub dtype: i32,
    pub shape: Option<TensorShapeProto>,
}

/// The signature written to model.json.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    pub inputs: BTreeMap<String, SignatureTensor>,
    pub outputs: BTreeMap<String, SignatureTensor>,
}

/// What a conversion did.
#[derive(Debug, Clone, Default)]
pub struct ConvertReport {
    pub files: Vec<PathBuf>,
    pub nodes: usize,
    pub weights: usize,
    pub weight_bytes: usize,
    /// Things the user should know (deprecations, defaults taken).
    pub notes: Vec<String>,
}

/// Reads `name` inside `folder` (refusing names that leave it).
pub fn read_input_file(folder: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), ConvertError> {
    let path = folder.join(name);
    let opened = open_in_folder(folder, name).map_err(|error| ConvertError::File {
        path: path.clone(),
        message: format!("cannot open: {error}"),
    })?;
    let mut bytes = Vec::new();
    let mut file = opened.file;
    file.read_to_end(&mut bytes)
        .map_err(|error| ConvertError::io(&path, error))?;
    Ok((path, bytes))
}

/// Splits a path into (folder, file name) for [`read_input_file`].
fn folder_and_name(path: &Path) -> Result<(PathBuf, String), ConvertError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ConvertError::File {
            path: path.to_path_buf(),
            message: "not a file name".into(),
        })?
        .to_string();
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((folder, name))
}

/// Converts `input` to a web model in `output`.
pub fn convert(
    input: &str,
    output: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ConvertReport, ConvertError> {
    let mut notes = Vec::new();
    if options.output_format == OutputFormat::Legacy && options.quantization.float16.is_some() {
        return Err(ConvertError::Usage(
            "--quantize_float16 cannot be read by TF.js 0.x, the runtime of --output_format=legacy \
             (it dequantizes uint8 and uint16 only); use --quantize_uint16 or the default output format"
                .into(),
        ));
    }
    if options.input_format != InputFormat::SavedModel
        && options.input_format != InputFormat::Hub
        && options.output_node_names.is_empty()
    {
        return Err(ConvertError::Usage(
            "--output_node_names is required for tf_frozen_model and tf_session_bundle".into(),
        ));
    }
    progress("reading");
    let loaded = match options.input_format {
        InputFormat::SavedModel => {
            convert_saved_model(Path::new(input), options, SavedModelDefaults::SavedModel)?
        }
        InputFormat::Hub => {
            let module = hub::resolve(input, options, &mut notes)?;
            let defaults = match module.format {
                hub::ModuleFormat::SavedModel => SavedModelDefaults::Hub,
                hub::ModuleFormat::Tf1 => {
                    notes.push(format!(
                        "{} is a TF1 Hub module (tfhub_module.pb): graph variant [{}], signature {:?}",
                        module.folder.display(),
                        options.saved_model_tags.as_deref().unwrap_or_default().join(","),
                        options.signature_name.as_deref().unwrap_or("default"),
                    ));
                    SavedModelDefaults::Tf1Hub
                }
            };
            convert_saved_model(&module.folder, options, defaults)?
        }
        InputFormat::FrozenModel => {
            let (folder, name) = folder_and_name(Path::new(input))?;
            let (path, bytes) = read_input_file(&folder, &name)?;
            let graph =
                GraphDef::decode(bytes.as_slice()).map_err(|error| ConvertError::Corrupt {
                    path: path.clone(),
                    what: "frozen GraphDef protobuf",
                    message: format!("{error} (is the file truncated?)"),
                })?;
            let meta = MetaGraphDef {
                graph_def: Some(graph),
                ..MetaGraphDef::default()
            };
            let mut no_variables = NoVariables { path: path.clone() };
            saved_model::freeze(
                &path,
                &meta,
                None,
                &options.output_node_names,
                &mut no_variables,
            )?
        }
        InputFormat::SessionBundle => {
            notes.push(
                "tf_session_bundle is deprecated (TensorFlow 1 exports); prefer a SavedModel"
                    .into(),
            );
            let folder = PathBuf::from(input);
            let files = checkpoint::session_bundle_files(&folder)?;
            let (path, bytes) = read_input_file(&folder, &files.meta_graph)?;
            let meta =
                MetaGraphDef::decode(bytes.as_slice()).map_err(|error| ConvertError::Corrupt {
                    path: path.clone(),
                    what: "MetaGraphDef protobuf",
                    message: format!("{error} (is the file truncated?)"),
                })?;
            let checkpoint = checkpoint::Checkpoint::open(&folder, &files.prefix)?;
            let mut variables = saved_model::CheckpointVariables::new(checkpoint, &meta, &path)?;
            saved_model::freeze(
                &path,
                &meta,
                None,
                &options.output_node_names,
                &mut variables,
            )?
        }
    };
    progress("rewriting");
    let saved_model::Loaded {
        mut frozen,
        signature,
        outputs,
        tensorflow_version,
        versions,
    } = loaded;
    let output_names: Vec<String> = outputs.iter().filter_map(|v| v.input()).collect();
    let mut graph = rewrite::Graph::new(frozen.nodes, frozen.constants, &output_names);
    rewrite::run(&mut graph, options)?;
    if options.strip_debug_ops {
        rewrite::strip_debug_ops_in_functions(&mut frozen.library);
    }
    if !options.skip_op_check {
        progress("checking ops");
        op_check::check(&graph.nodes, &frozen.library, options.output_format)?;
    }
    progress("writing");
    let graph_def = GraphDef {
        node: graph.nodes,
        library: (!frozen.library.is_empty()).then(|| FunctionDefLibrary {
            function: frozen.library,
            ..Default::default()
        }),
        versions,
        ..Default::default()
    };
    let write_options = write::WriteOptions {
        format: options.output_format,
        shard_size: options.weight_shard_size_bytes,
        quantization: &options.quantization,
        generated_by: if tensorflow_version.is_empty() {
            "unknown".to_string()
        } else {
            tensorflow_version
        },
    };
    let files = write::write_model(
        output,
        &graph_def,
        &graph.constants,
        signature.as_ref(),
        &write_options,
    )?;
    // The constants of control-flow functions are weights too.
    let function_constants = write::function_constants(output, &mut graph_def.clone())?;
    let all_constants = graph.constants.values().chain(function_constants.values());
    Ok(ConvertReport {
        files,
        nodes: graph_def.node.len(),
        weights: graph.constants.len() + function_constants.len(),
        weight_bytes: all_constants.map(|t| t.bytes.len()).sum(),
        notes,
    })
}

/// Which MetaGraph and signature a SavedModel is read with when the options do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SavedModelDefaults {
    /// Tags `serve`, signature `serving_default`.
    SavedModel,
    /// A TF2 Hub module: the empty tag set (else `serve`), signature `default` (else
    /// `serving_default`).
    Hub,
    /// A TF1 Hub module: its default graph variant (the empty tag set), signature `default`, as
    /// `hub.Module` reads it.
    Tf1Hub,
}

fn convert_saved_model(
    input: &Path,
    options: &ConvertOptions,
    defaults: SavedModelDefaults,
) -> Result<saved_model::Loaded, ConvertError> {
    let hub = defaults != SavedModelDefaults::SavedModel;
    let folder = if input.is_file() {
        input.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        input.to_path_buf()
    };
    let (path, model) = saved_model::read_saved_model(&folder)?;
    let meta = match &options.saved_model_tags {
        Some(tags) => saved_model::choose_meta_graph(&path, &model.meta_graphs, tags)?,
        None if defaults == SavedModelDefaults::Tf1Hub => {
            saved_model::choose_meta_graph(&path, &model.meta_graphs, &[])?
        }
        None if hub => {
            saved_model::choose_meta_graph(&path, &model.meta_graphs, &[]).or_else(|_| {
                saved_model::choose_meta_graph(&path, &model.meta_graphs, &["serve".to_string()])
            })?
        }
        None => saved_model::choose_meta_graph(&path, &model.meta_graphs, &["serve".to_string()])?,
    };
    let signature_name = options
        .signature_name
        .clone()
        .unwrap_or_else(|| if hub { "default" } else { "serving_default" }.to_string());
    let signature = if options.output_node_names.is_empty() {
        let signature = match saved_model::choose_signature(&path, meta, &signature_name) {
            Err(error)
                if defaults == SavedModelDefaults::Hub && options.signature_name.is_none() =>
            {
                saved_model::choose_signature(&path, meta, "serving_default").map_err(|_| error)?
            }
            other => other?,
        };
        Some(signature)
    } else {
        None
    };
    // Opened relative to the SavedModel folder, so a `variables` link cannot lead outside it.
    let checkpoint = checkpoint::Checkpoint::open(&folder, "variables/variables");
    let mut variables: Box<dyn freeze::VariableSource> = match checkpoint {
        Ok(checkpoint) => Box::new(saved_model::CheckpointVariables::new(
            checkpoint, meta, &path,
        )?),
        Err(error) => Box::new(MissingBundle { error: Some(error) }),
    };
    saved_model::freeze(
        &path,
        meta,
        signature,
        &options.output_node_names,
        variables.as_mut(),
    )
}

/// A SavedModel without a readable variables bundle: fine until a variable is read.
struct MissingBundle {
    error: Option<ConvertError>,
}

impl freeze::VariableSource for MissingBundle {
    fn value(&mut self, _: &str, reader: &str) -> Result<tensor::Tensor, ConvertError> {
        Err(match self.error.take() {
            Some(ConvertError::File { path, message }) => ConvertError::File {
                path,
                message: format!("{message} (node {reader:?} reads a variable)"),
            },
            Some(other) => other,
            None => ConvertError::Usage("the variables bundle is missing".into()),
        })
    }
}

/// Frozen graphs have no variables.
struct NoVariables {
    path: PathBuf,
}

impl freeze::VariableSource for NoVariables {
    fn value(&mut self, key: &str, reader: &str) -> Result<tensor::Tensor, ConvertError> {
        Err(ConvertError::Node {
            path: self.path.clone(),
            node: reader.to_string(),
            message: format!("reads variable {key:?}, but a frozen graph has no variables (freeze it first, or convert the SavedModel)"),
        })
    }
}
