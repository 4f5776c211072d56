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
    /// Split a dataset into training and validation (and test) parts, stratified and seeded,
    /// keeping near-duplicate images on one side (this reads every image: see `qcyn dups`).
    Split(SplitArgs),
    /// Find near-duplicate images (copies, re-encodings, resizes, crops, flips) in a dataset;
    /// groups that span two classes are likely labelling errors.
    Dups(DupsArgs),
    /// Train the classifier head on cached features, pick its regularisation by cross-validation,
    /// score it on the validation images and write a bundle.
    Fit(FitArgs),
    /// Score a bundle on labelled images it was not trained on.
    Eval(EvalArgs),
    /// Compare backbones, heads and class weights over repeated random splits: mean accuracy and
    /// macro-F1 with a 95% interval per recipe, and the recommended recipe.
    ///
    /// With --lists, the images and labels come from the list files, and their split is not used:
    /// compare makes its own R splits. An image that cannot be decoded is listed and scored as a
    /// wrong prediction whenever it is validated on.
    Compare(CompareArgs),
    /// Label images (files, folders or globs) with a bundle, with every class's probability.
    Predict(PredictArgs),
    /// Write the aligned face crops and a contact sheet per class: what face mode sees.
    Faces(FacesArgs),
    /// Measure backbone latency and throughput, alone and from image files.
    Bench(BenchArgs),
    /// Write a bundle as one ONNX file, normalised image tensor in, class probabilities out, with
    /// the class names, mean, std and input size in its metadata (whole-image bundles).
    Export(ExportArgs),
    /// Answer predictions over HTTP: POST /v1/predict (an image's bytes in, `predict --json`'s
    /// entry out), GET /v1/model, GET /healthz, and a page at / to drop photos on. Prints
    /// `listening on http://ADDR` on stderr when ready; Ctrl-C or SIGTERM stops it.
    Serve(ServeArgs),
    /// Write a fit's report as one self-contained HTML page: confusion matrix, per-class precision
    /// and recall, the worst validation errors as thumbnails, the bias note, split and settings.
    Report(ReportArgs),
}

/// `qcyn serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The bundle written by `qcyn fit` (its folder or its .json file).
    #[arg(long, short, value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// Address to listen on; the default answers this machine only (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub addr: std::net::SocketAddr,
    /// Largest request body, in MiB (larger ones get 413).
    #[arg(long, default_value_t = 32, value_name = "MIB", value_parser = at_least_one)]
    pub max_body_mib: usize,
    /// Largest image, in megapixels (width × height from its header, checked before decoding;
    /// larger ones get 400).
    #[arg(long, default_value_t = 64.0, value_name = "MP", value_parser = positive)]
    pub max_megapixels: f64,
    /// Time a client has to send its whole request body (then 408), e.g. 30s, 500ms.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = duration)]
    pub read_timeout: std::time::Duration,
    /// Prediction requests answered at once (reading, decoding, waiting or running); more get 503
    /// with Retry-After.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = at_least_one)]
    pub queue: usize,
    /// Images per backbone run, at most: requests waiting together run as one batch.
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = batch)]
    pub batch: usize,
    /// Keep only the K most probable classes of each answer.
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub top_k: Option<usize>,
    /// Face models: cosine similarity below which a face is `unknown` (default: the bundle's
    /// calibrated threshold; -1 never answers unknown).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub unknown_threshold: Option<f32>,
    /// Threads for ONNX Runtime (default and most: the number of cores).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Images decoded at once [default: --threads].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub decoders: Option<usize>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

/// `qcyn report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The bundle folder written by `qcyn fit` (or its bundle.json): the report is made from the
    /// bundle and the report.json beside it.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// Folder to write report.html into.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
}

/// `qcyn export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundle (its folder or its bundle.json).
    #[arg(long, value_name = "PATH")]
    pub bundle: PathBuf,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// How to split (shared by `split` and `fit`).
#[derive(Debug, Args)]
pub struct SplitRuleArgs {
    /// Hold out N images of every class for validation (the tutorial used 20).
    #[arg(long, value_name = "N", conflicts_with_all = ["val_fraction", "lists"], value_parser = at_least_one)]
    pub val_per_class: Option<usize>,
    /// Hold out this fraction of every class for validation [default: 0.2 when no rule is given].
    #[arg(long, value_name = "F", conflicts_with = "lists", value_parser = fraction)]
    pub val_fraction: Option<f64>,
    /// Also hold out M images of every class for a final test.
    #[arg(long, value_name = "M", conflicts_with = "lists")]
    pub test_per_class: Option<usize>,
    /// Seed of the shuffle: the same seed gives the same split.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
}

/// Whether a split keeps near-duplicates together (shared by `split` and `fit`).
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Split image by image, without looking for near-duplicates: copies of one photo may then
    /// land in training and validation, which makes accuracy look better than it is. By default
    /// every group of near-duplicates (as `qcyn dups` finds them: same content, perceptual hash,
    /// and the model's cached features) stays on one side, which means reading every image and
    /// extracting its features through the cache (--model chooses the backbone).
    #[arg(long)]
    pub no_group: bool,
}

/// `qcyn split`.
///
/// By default the split keeps near-duplicates on one side, so it reads every image and extracts
/// its features through the cache with the default model (--model to choose; the next `extract`
/// or `fit` with that model then costs nothing). --no-group splits on paths alone, reading no
/// image.
#[derive(Debug, Args)]
pub struct SplitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub rule: SplitRuleArgs,
    #[command(flatten)]
    pub group: GroupArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Where to write the split manifest (JSON).
    #[arg(long, default_value = "split.json", value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the tutorial's list files (train_list.txt, validate_list.txt, test_list.txt,
    /// label_list.txt) into DIR; their paths are relative to the dataset folder.
    #[arg(long, value_name = "DIR")]
    pub write_lists: Option<PathBuf>,
}

/// Class weighting of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClassWeightArg {
    /// Every image counts once.
    None,
    /// Every class weighs the same in total, however many images it has.
    Balanced,
}

/// `qcyn fit --scaling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScalingArg {
    /// Try both by the cross-validation that chooses the L2 strength (lowest log loss).
    Auto,
    /// Each feature to unit variance (z-scores).
    Feature,
    /// One scale for each backbone's features, keeping their geometry.
    Part,
}

/// `qcyn fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub rule: SplitRuleArgs,
    /// Use the split recorded in a manifest written by `qcyn split` (or by an earlier fit).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["val_per_class", "val_fraction", "test_per_class", "lists"])]
    pub split: Option<PathBuf>,
    /// Where to write the bundle: a folder (bundle.json, report.json, report.txt, split.json) or
    /// a file ending in .json.
    #[arg(long, short, value_name = "BUNDLE")]
    pub out: PathBuf,
    /// Class weighting: `balanced` counters classes with many more images than others.
    #[arg(long, value_enum, default_value_t = ClassWeightArg::None)]
    pub class_weight: ClassWeightArg,
    /// L2 strengths to choose from by cross-validation (one value: no cross-validation).
    #[arg(long, value_delimiter = ',', value_name = "A,B,...", value_parser = strength)]
    pub l2: Option<Vec<f32>>,
    /// Cross-validation folds (reduced when a class has fewer training images).
    #[arg(long, default_value_t = 5, value_name = "K", value_parser = folds)]
    pub folds: usize,
    /// How the head scales features: each to unit variance, one scale per backbone, or whichever
    /// the cross-validation prefers (with one --l2 value there is none: `auto` is `feature`).
    #[arg(long, value_enum, default_value_t = ScalingArg::Auto)]
    pub scaling: ScalingArg,
    /// Face models: share of known faces the `unknown` threshold may reject.
    #[arg(long, default_value_t = 0.01, value_name = "RATE", value_parser = rate)]
    pub false_reject_rate: f32,
    /// Images per backbone run [default: on a CPU with several threads, one session per thread,
    /// each running 1 image at a time (measured fastest); otherwise 32].
    #[arg(long, value_name = "N", value_parser = batch)]
    pub batch: Option<usize>,
    #[command(flatten)]
    pub group: GroupArgs,
    #[command(flatten)]
    pub unfreeze: UnfreezeArgs,
}

/// The unfrozen path of `qcyn fit` (the tutorial's `RunConfig`: epochs, batch size, eval interval,
/// checkpoint dir = --out).
#[derive(Debug, Args)]
#[command(next_help_heading = "Fine-tuning (--unfreeze)")]
pub struct UnfreezeArgs {
    /// Fine-tune the backbone's last N block(s) with the head, on cached maps of the frozen part
    /// (0: the frozen backbone; `qcyn models` lists the models with cut points).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub unfreeze: usize,
    /// Passes over the training images at most (early stopping may end sooner).
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = at_least_one)]
    pub epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = batch)]
    pub batch_size: usize,
    /// Training steps between evaluations on the early-stopping part (default: once per epoch);
    /// the best weights so far are kept, and a checkpoint is written to --out.
    #[arg(long, value_name = "STEPS", value_parser = at_least_one)]
    pub eval_interval: Option<usize>,
    /// AdamW learning rate of the tail (the head's is 10 times it).
    #[arg(long, default_value_t = 1e-4, value_name = "RATE", value_parser = strength)]
    pub lr: f32,
    /// Pull of the tail's weights back toward the pretrained ones (L2-SP), per unit of learning rate.
    #[arg(long, default_value_t = 1.0, value_name = "A", value_parser = nonnegative)]
    pub l2_sp: f32,
    /// Evaluations without improvement before training stops.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = at_least_one)]
    pub patience: usize,
    /// Continue an interrupted `fit --unfreeze` from the checkpoint in --out (same images and
    /// options).
    #[arg(long)]
    pub resume: bool,
}

/// `qcyn dups`.
///
/// Two images are near-duplicates when their files are identical (sha256), when their perceptual
/// hashes (DCT, flip-aware) are within --max-hash-distance, or when their backbone features
/// (through the cache: no extra backbone run) reach the model's measured cosine.
#[derive(Debug, Args)]
pub struct DupsArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Largest perceptual-hash distance (of 63 bits) between near-duplicates [default: 10].
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(0..=63))]
    pub max_hash_distance: Option<u32>,
    /// Smallest feature cosine between near-duplicates [default: the model's measured value;
    /// features are not used for models without one].
    #[arg(long, value_name = "C", value_parser = cosine)]
    pub min_cosine: Option<f32>,
    /// Images per backbone run [default: on a CPU with several threads, one session per thread,
    /// each running 1 image at a time (measured fastest); otherwise 32].
    #[arg(long, value_name = "N", value_parser = batch)]
    pub batch: Option<usize>,
}

/// A head `compare` can fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadArg {
    /// The softmax head (L2 strength by cross-validation on the training part).
    Softmax,
    /// Nearest class centroid, cosine.
    Centroid,
    /// k-nearest neighbours, cosine (k by leave-one-out on the training part).
    Knn,
}

/// `qcyn compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Near-duplicates stay on one side of every split (found with the first whole-image model
    /// compared); --no-group splits image by image.
    #[command(flatten)]
    pub group: GroupArgs,
    /// Backbones to compare, comma-separated [default: every installed model with pretrained
    /// weights, except face models].
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    pub models: Option<Vec<String>>,
    /// Heads to compare, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "softmax,centroid,knn",
        value_name = "H,H,..."
    )]
    pub heads: Vec<HeadArg>,
    /// Number of repeated splits (seeds S, S+1, …); at least 2, for an interval.
    #[arg(long, default_value_t = 5, value_name = "R", value_parser = repeats)]
    pub repeats: usize,
    /// Hold out N images of every class for validation in each repeat.
    #[arg(long, value_name = "N", conflicts_with = "val_fraction", value_parser = at_least_one)]
    pub val_per_class: Option<usize>,
    /// Hold out this fraction of every class in each repeat [default: 0.2 when no rule is given].
    #[arg(long, value_name = "F", value_parser = fraction)]
    pub val_fraction: Option<f64>,
    /// Seed of the first repeat.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Threads for ONNX Runtime and for decoding (default and most: the number of cores).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Which graph of every backbone compared runs (each must have it).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Images per backbone run [default: on a CPU with several threads, one session per thread,
    /// each running 1 image at a time (measured fastest); otherwise 32].
    #[arg(long, value_name = "N", value_parser = batch)]
    pub batch: Option<usize>,
    /// Also compare each model with a cut point fine-tuned in its last N block(s), as
    /// `fit --unfreeze N` trains it (default settings), on every repeat's training part:
    /// recipes named `MODEL+unfreezeN`.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub unfreeze: usize,
}

/// How `eval` and `predict` run a bundle's backbone.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Threads for ONNX Runtime and for decoding (default and most: the number of cores).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// The backbone's graph [default: the precision the bundle was fit with]; another one is
    /// refused, as its features differ from those the head learnt.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Images per backbone run [default: on a CPU with several threads, one session per thread,
    /// each running 1 image at a time (measured fastest); otherwise 32].
    #[arg(long, value_name = "N", value_parser = batch)]
    pub batch: Option<usize>,
}

/// `qcyn eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The bundle written by `qcyn fit` (its folder or its .json file).
    #[arg(long, short, value_name = "BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `qcyn predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The bundle written by `qcyn fit` (its folder or its .json file).
    #[arg(long, short, value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// Images: files, folders (searched recursively) or glob patterns such as 'photos/*.jpg'.
    #[arg(value_name = "PATHS", required = true)]
    pub paths: Vec<String>,
    /// Write CSV (path, label, then one probability column per class) instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Show only the K most probable classes of each image.
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub top_k: Option<usize>,
    /// Face models: cosine similarity below which a face is `unknown` (default: the bundle's
    /// calibrated threshold; -1 never answers unknown).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub unknown_threshold: Option<f32>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `qcyn faces`.
#[derive(Debug, Args)]
pub struct FacesArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to write the crops and contact sheets.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Face model.
    #[arg(long, short, default_value = "face")]
    pub model: String,
    /// Threads for ONNX Runtime (default and most: the number of cores).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub quality: FaceQualityArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
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
    /// Backbone name (see `qcyn models`), a fusion `a+b`, or a manifest path ending in .toml
    /// [default: xception71 when its pretrained weights are installed, else the fusion
    /// xception+mobilenetv2; `qcyn models` marks it].
    #[arg(long, short, env = "QCYN_MODEL")]
    pub model: Option<String>,
    /// Threads for ONNX Runtime and for decoding (default and most: the number of cores).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Which graph of the backbone runs: the float one, or the int8 one that scripts/setup
    /// quantises (about twice as fast on a CPU; `qcyn models` lists the models that have one).
    /// Its features are cached apart, and a bundle predicts with the precision it was fit with.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Face models: what to do with an image in which no face is found: skip it (and list it), or
    /// embed the whole image instead.
    #[arg(long, value_enum, default_value_t = NoFaceArg::Skip, value_name = "WHAT")]
    pub no_face: NoFaceArg,
    #[command(flatten)]
    pub quality: FaceQualityArgs,
}

/// Face models: which detections are usable faces (the others are listed with the reason and
/// never embedded).
#[derive(Debug, Clone, Copy, Args)]
pub struct FaceQualityArgs {
    /// Face models: lowest detector score (0..1) of a face.
    #[arg(long, value_name = "S", value_parser = score, default_value_t = qcyn::face::FaceOptions::default().score_threshold)]
    pub min_face_score: f32,
    /// Face models: smallest face box side, in pixels of the photo.
    #[arg(long, value_name = "PX", value_parser = non_negative, default_value_t = qcyn::face::FaceOptions::default().min_face_px)]
    pub min_face_px: f32,
    /// Face models: lowest sharpness of the aligned face (variance of its Laplacian; 0 keeps
    /// blurred faces).
    #[arg(long, value_name = "V", value_parser = non_negative, default_value_t = qcyn::face::DEFAULT_MIN_SHARPNESS)]
    pub min_sharpness: f32,
    /// Face models: largest turn from frontal, in degrees, estimated from the landmarks (90 keeps
    /// profiles).
    #[arg(long, value_name = "DEG", value_parser = degrees, default_value_t = qcyn::face::DEFAULT_MAX_YAW)]
    pub max_yaw: f32,
}

/// What face models do with an image without a face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NoFaceArg {
    /// Leave it out and list it under `no_face`.
    Skip,
    /// Embed the whole image (its centre square) as if it were a face.
    Whole,
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
    /// ONNX Runtime's CUDA execution provider (needs an NVIDIA GPU and `scripts/setup --gpu`).
    Cuda,
}

/// Backbone precisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// The float32 graph.
    Fp32,
    /// The static int8 (QDQ, per-channel) graph built by scripts/setup.
    Int8,
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
    /// Images per backbone run [default: on a CPU with several threads, one session per thread,
    /// each running 1 image at a time (measured fastest); otherwise 32].
    #[arg(long, value_name = "N", value_parser = batch)]
    pub batch: Option<usize>,
}

/// `qcyn bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Measure the model as a bundle runs it (e.g. the frozen prefix then the trained tail of a
    /// bundle fitted with --unfreeze) instead of --model.
    #[arg(long, value_name = "BUNDLE", conflicts_with = "model")]
    pub bundle: Option<PathBuf>,
    /// Batch sizes to measure, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,32",
        value_name = "N,N,...",
        value_parser = batch
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

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))
}

/// A count of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match number::<usize>(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// A positive number.
fn positive(s: &str) -> Result<f64, String> {
    match number::<f64>(s)? {
        x if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err("must be a positive number".into()),
    }
}

/// A duration such as `30s`, `500ms` or `2m`; a bare number is seconds.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => std::time::Duration::from_secs_f64(x),
        Ok(_) => return Err("must not be negative".into()),
        Err(_) => {
            humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (e.g. 30s, 500ms)"))?
        }
    };
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

/// Images per backbone run: 1 to 1024 (a batch is held in memory until it has run).
fn batch(s: &str) -> Result<usize, String> {
    match number::<usize>(s)? {
        n @ 1..=1024 => Ok(n),
        _ => Err("must be between 1 and 1024 (32 is a good choice on a CPU)".into()),
    }
}

/// Repeats of `compare`: at least 2.
fn repeats(s: &str) -> Result<usize, String> {
    match number::<usize>(s)? {
        n @ 2.. => Ok(n),
        _ => Err("must be at least 2: an interval needs two repeats (5 is the default)".into()),
    }
}

/// Cross-validation folds: at least 2.
fn folds(s: &str) -> Result<usize, String> {
    match number::<usize>(s)? {
        n @ 2.. => Ok(n),
        _ => Err("must be at least 2 (pass one --l2 value to skip cross-validation)".into()),
    }
}

/// A fraction strictly between 0 and 1.
fn fraction(s: &str) -> Result<f64, String> {
    let f = number::<f64>(s)?;
    if f > 0.0 && f < 1.0 {
        Ok(f)
    } else {
        Err("must be between 0 and 1, e.g. 0.2 to hold out a fifth of every class".into())
    }
}

/// A rate in [0, 1).
fn rate(s: &str) -> Result<f32, String> {
    let r = number::<f32>(s)?;
    if (0.0..1.0).contains(&r) {
        Ok(r)
    } else {
        Err("must be at least 0 and below 1, e.g. 0.01 for 1%".into())
    }
}

/// A cosine similarity in (0, 1].
fn cosine(s: &str) -> Result<f32, String> {
    let c = number::<f32>(s)?;
    if c > 0.0 && c <= 1.0 {
        Ok(c)
    } else {
        Err("must be above 0 and at most 1, e.g. 0.95".into())
    }
}

/// A detector score in [0, 1].
fn score(s: &str) -> Result<f32, String> {
    let c = number::<f32>(s)?;
    if (0.0..=1.0).contains(&c) {
        Ok(c)
    } else {
        Err("must be between 0 and 1, e.g. 0.6".into())
    }
}

/// A finite number of at least 0.
fn non_negative(s: &str) -> Result<f32, String> {
    let v = number::<f32>(s)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err("must be 0 or more (0 turns the check off)".into())
    }
}

/// An angle in degrees, 0 to 90.
fn degrees(s: &str) -> Result<f32, String> {
    let v = number::<f32>(s)?;
    if (0.0..=90.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 90 degrees (90 keeps every face)".into())
    }
}

/// A finite number of at least 0.
fn nonnegative(s: &str) -> Result<f32, String> {
    let a = number::<f32>(s)?;
    if a.is_finite() && a >= 0.0 {
        Ok(a)
    } else {
        Err("must be a number of at least 0, e.g. 1".into())
    }
}

/// An L2 strength: finite and positive.
fn strength(s: &str) -> Result<f32, String> {
    let a = number::<f32>(s)?;
    if a.is_finite() && a > 0.0 {
        Ok(a)
    } else {
        Err("must be a positive number, e.g. 1 or 0.1".into())
    }
}
