//! Command-line arguments (clap derive). Doc comments are the help text.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// qcyn: teach a computer your own image categories from a few dozen photos each.
///
/// A pretrained ONNX backbone turns every image into a feature vector once; the vectors are
/// cached; a softmax head trains on them in seconds.
///
/// Exit codes: 0 success; 1 error; 2 bad command line; 3 done, but some images were skipped.
#[derive(Debug, Parser)]
#[command(name = "qcyn", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print one JSON document on stdout instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// Show no progress bars or notes on stderr (errors are still shown).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The ONNX Runtime shared library (default: $ORT_DYLIB_PATH, then the project's runtime/ folder).
    #[arg(long, global = true, value_name = "PATH")]
    pub ort_dylib: Option<PathBuf>,
    /// Folder of model manifests (default: the project's models/ folder).
    #[arg(long, global = true, value_name = "DIR", env = "QCYN_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute and cache the feature vector of every image in a dataset.
    Extract(ExtractArgs),
    /// List the known backbones.
    Models,
    /// Measure backbone latency and throughput, alone and from image files.
    Bench(BenchArgs),
}

/// Where the labelled images are.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Dataset folder: one sub-folder per class (root/<class>/<image>).
    #[arg(value_name = "DATA", required_unless_present = "lists")]
    pub data: Option<PathBuf>,
    /// Read the tutorial's PaddleHub list files (train_list.txt, validate_list.txt, test_list.txt,
    /// label_list.txt) from DIR instead of scanning a folder.
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub lists: Option<PathBuf>,
    /// Folder the paths in the list files are relative to (default: the --lists folder).
    #[arg(long, value_name = "DIR", requires = "lists")]
    pub base: Option<PathBuf>,
}

/// Which backbone and how to run it.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Backbone name (see `qcyn models`) or a manifest path ending in .toml.
    #[arg(long, short, default_value = "mobilenetv2", env = "QCYN_MODEL")]
    pub model: String,
    /// Threads for ONNX Runtime and for decoding (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

/// Feature cache location.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Feature cache folder (default: $QCYN_CACHE_DIR, else $XDG_CACHE_HOME/qcyn, else ~/.cache/qcyn).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Do not read or write the feature cache.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
}

/// Execution providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// ONNX Runtime's CUDA execution provider (not available yet).
    Cuda,
}

/// `qcyn extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Images per backbone run.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch: usize,
}

/// `qcyn bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch sizes to measure, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,32",
        value_name = "N,N,..."
    )]
    pub batch: Vec<usize>,
    /// Also measure the whole read → decode → preprocess → backbone path on the images in DIR.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Seconds to spend measuring each batch size (at least 5 runs are timed).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub seconds: f64,
    /// Untimed warm-up runs per batch size.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub warmup: usize,
}
