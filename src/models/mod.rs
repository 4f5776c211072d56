//! Backbone manifests: everything needed to run a model and to prepare its input, as data.
//!
//! Each backbone is a TOML file in `models/` (see `models/mobilenetv2.toml`). Training and
//! prediction both read preprocessing from here (and the bundle keeps a copy), so the two can never
//! drift apart.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

mod registry;
mod tail;
pub use registry::int8_models;
pub use registry::{default_model, DefaultModel, ModelFile, ModelSummary, Registry};
pub use tail::TailSpec;

/// What kind of feature extractor a manifest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// One ONNX graph, one feature vector per image.
    #[default]
    Whole,
    /// Detect → align → embed: zero, one or several vectors per image, one per face.
    Face,
    /// Several whole-image models: each part's features scaled to unit length, then concatenated.
    Fusion,
}

/// A backbone manifest (`models/<name>.toml`), validated: a whole-image model always has its file,
/// input, preprocessing and output; a face model always has its detector and embedder.
///
/// On disk it is one flat TOML table with an optional `kind` (`whole` when absent); it is read
/// through [`RawManifest`] and checked into this form, so an invalid manifest cannot be
/// represented. It is written back (into bundles) in the same flat form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawManifest", into = "RawManifest")]
pub struct ModelManifest {
    /// Short name used on the command line (`--model NAME`).
    pub name: String,
    /// One line for `qcyn models`.
    pub description: String,
    /// True when the weights are random (latency benchmarks only).
    pub random_weights: bool,
    /// Licence of the weights.
    pub licence: String,
    /// How to run a model that users online can export (free text).
    pub export: Option<String>,
    /// Where the weights come from, so a script can rebuild the file. Read by the setup scripts,
    /// never by qcyn, so kept as the table it is.
    pub source: Option<toml::Table>,
    /// What runs, by kind.
    pub spec: ModelSpec,
}

/// What a manifest runs, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// One ONNX graph, one feature vector per image.
    Whole(WholeSpec),
    /// Detect → align → embed, one vector per face.
    Face(FaceSpec),
    /// Whole-image models fused: the names of its parts, resolved by the [`Registry`] into
    /// [`Model::parts`].
    Fusion(FusionSpec),
}

/// A fused model: the whole-image models it concatenates, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct FusionSpec {
    /// Names of the parts (models in the same models folder), at least two.
    pub parts: Vec<String>,
}

/// A whole-image model: one ONNX graph and how to feed it.
#[derive(Debug, Clone, PartialEq)]
pub struct WholeSpec {
    /// ONNX file, relative to the manifest's folder.
    pub file: PathBuf,
    /// sha256 of the ONNX file (when pinned).
    pub sha256: Option<String>,
    /// Input tensor.
    pub input: InputSpec,
    /// Preprocessing.
    pub preprocess: PreprocessSpec,
    /// Output tensors.
    pub output: OutputSpec,
    /// The int8 graph, when the setup builds one.
    pub int8: Option<Int8Spec>,
    /// The `[[tail]]` tables: where the graph is cut for `fit --unfreeze N`.
    pub tails: Vec<TailSpec>,
}

/// Numeric precision of a whole-image backbone's graph: the manifest's float graph, or the
/// statically quantised one of its `[int8]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The float32 graph (`file`).
    #[default]
    Fp32,
    /// The int8 QDQ graph (`[int8] file`), quantised by `scripts/build_models.py`.
    Int8,
}

impl Precision {
    /// `fp32` or `int8`, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[int8]` table of a whole-image manifest: a static QDQ int8 graph of the same model, with
/// the same input, preprocessing and outputs, built and checked against fp32 by
/// `scripts/build_models.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Int8Spec {
    /// ONNX file, relative to the manifest's folder.
    pub file: PathBuf,
    /// sha256 of the file.
    pub sha256: String,
    /// `onnxruntime.quantization` calibration method (`MinMax`, `Percentile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    /// The build refuses a graph whose features have a lower cosine with fp32's on its photos.
    pub min_cosine: f32,
}

/// A face model: the detector and embedder graphs.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceSpec {
    /// The `[detector]` table.
    pub detector: DetectorSpec,
    /// The `[embedder]` table.
    pub embedder: EmbedderSpec,
}

impl ModelManifest {
    /// Whole-image or face pipeline.
    pub fn kind(&self) -> ModelKind {
        match self.spec {
            ModelSpec::Whole(_) => ModelKind::Whole,
            ModelSpec::Face(_) => ModelKind::Face,
            ModelSpec::Fusion(_) => ModelKind::Fusion,
        }
    }

    /// The whole-image spec, when this is a whole-image model.
    pub fn whole(&self) -> Option<&WholeSpec> {
        match &self.spec {
            ModelSpec::Whole(w) => Some(w),
            _ => None,
        }
    }

    /// The face spec, when this is a face model.
    pub fn face(&self) -> Option<&FaceSpec> {
        match &self.spec {
            ModelSpec::Face(f) => Some(f),
            _ => None,
        }
    }

    /// The pinned sha256 of a whole-image model's file.
    pub fn sha256(&self) -> Option<&str> {
        self.whole().and_then(|w| w.sha256.as_deref())
    }
}

/// A manifest as written: one flat table. Only [`ModelManifest`]'s conversions use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    name: String,
    #[serde(default)]
    kind: ModelKind,
    #[serde(default)]
    description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default)]
    random_weights: bool,
    #[serde(default)]
    licence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    export: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<InputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preprocess: Option<PreprocessSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<OutputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    int8: Option<Int8Spec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tail: Vec<TailSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detector: Option<DetectorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    embedder: Option<EmbedderSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<toml::Table>,
}

impl TryFrom<RawManifest> for ModelManifest {
    type Error = String;

    fn try_from(r: RawManifest) -> std::result::Result<Self, String> {
        if r.kind != ModelKind::Fusion && r.parts.is_some() {
            return Err("only a fused model has `parts`; add `kind = \"fusion\"`".into());
        }
        let spec = match r.kind {
            ModelKind::Fusion => {
                if r.file.is_some()
                    || r.input.is_some()
                    || r.preprocess.is_some()
                    || r.output.is_some()
                    || r.int8.is_some()
                    || !r.tail.is_empty()
                    || r.detector.is_some()
                    || r.embedder.is_some()
                {
                    return Err("a fused model has only `parts` (the names of whole-image models): no `file`, [input], [preprocess], [output], [detector] or [embedder]".into());
                }
                let parts = r.parts.unwrap_or_default();
                if parts.len() < 2 {
                    return Err(format!(
                        "a fused model needs at least two `parts`, found {}",
                        parts.len()
                    ));
                }
                ModelSpec::Fusion(FusionSpec { parts })
            }
            ModelKind::Whole => {
                if r.detector.is_some() || r.embedder.is_some() {
                    return Err("a whole-image model has no [detector] or [embedder]; add `kind = \"face\"` for a face model".into());
                }
                let (Some(file), Some(input), Some(preprocess), Some(output)) =
                    (r.file, r.input, r.preprocess, r.output)
                else {
                    return Err(
                        "a whole-image model needs `file`, [input], [preprocess] and [output]"
                            .into(),
                    );
                };
                let spec = WholeSpec {
                    file,
                    sha256: r.sha256,
                    input,
                    preprocess,
                    output,
                    int8: r.int8,
                    tails: r.tail,
                };
                spec.check()?;
                ModelSpec::Whole(spec)
            }
            ModelKind::Face => {
                if r.file.is_some()
                    || r.input.is_some()
                    || r.preprocess.is_some()
                    || r.output.is_some()
                    || r.int8.is_some()
                    || !r.tail.is_empty()
                {
                    return Err("a face model has no `file`, [input], [preprocess], [output] or [int8]: its graphs are in [detector] and [embedder]".into());
                }
                let (Some(detector), Some(embedder)) = (r.detector, r.embedder) else {
                    return Err("a face model needs a [detector] and an [embedder] table".into());
                };
                let spec = FaceSpec { detector, embedder };
                spec.check()?;
                ModelSpec::Face(spec)
            }
        };
        Ok(ModelManifest {
            name: r.name,
            description: r.description,
            random_weights: r.random_weights,
            licence: r.licence,
            export: r.export,
            source: r.source,
            spec,
        })
    }
}

impl From<ModelManifest> for RawManifest {
    fn from(m: ModelManifest) -> RawManifest {
        let kind = m.kind();
        let mut r = RawManifest {
            name: m.name,
            kind,
            description: m.description,
            file: None,
            sha256: None,
            random_weights: m.random_weights,
            licence: m.licence,
            export: m.export,
            input: None,
            preprocess: None,
            output: None,
            int8: None,
            tail: Vec::new(),
            detector: None,
            embedder: None,
            parts: None,
            source: m.source,
        };
        match m.spec {
            ModelSpec::Whole(w) => {
                r.file = Some(w.file);
                r.sha256 = w.sha256;
                r.input = Some(w.input);
                r.preprocess = Some(w.preprocess);
                r.output = Some(w.output);
                r.int8 = w.int8;
                r.tail = w.tails;
            }
            ModelSpec::Face(f) => {
                r.detector = Some(f.detector);
                r.embedder = Some(f.embedder);
            }
            ModelSpec::Fusion(f) => r.parts = Some(f.parts),
        }
        r
    }
}

impl WholeSpec {
    fn check(&self) -> std::result::Result<(), String> {
        let (p, i) = (&self.preprocess, &self.input);
        if i.height == 0 || i.width == 0 {
            return Err("input height and width must be positive".into());
        }
        if p.resize == ResizeRule::ShorterThenCenterCrop {
            match p.resize_to {
                Some(r) if r >= i.height.min(i.width) => {}
                _ => return Err("`resize_to` must be given and at least the input size for shorter_then_center_crop".into()),
            }
        }
        if p.scale <= 0.0 || p.std.iter().any(|s| *s <= 0.0) {
            return Err("`scale` and every `std` must be positive".into());
        }
        if self.output.dim == 0 {
            return Err("[output] dim must be positive".into());
        }
        for t in &self.tails {
            t.check()?;
        }
        if let Some(q) = &self.int8 {
            if q.sha256.len() != 64 || !q.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("[int8] sha256 must be 64 hex digits".into());
            }
            if !(q.min_cosine > 0.0 && q.min_cosine <= 1.0) {
                return Err("[int8] min_cosine must be above 0 and at most 1".into());
            }
        }
        Ok(())
    }
}

impl FaceSpec {
    fn check(&self) -> std::result::Result<(), String> {
        let (detector, embedder) = (&self.detector, &self.embedder);
        if detector.size == 0
            || detector.strides.is_empty()
            || detector
                .strides
                .iter()
                .any(|&s| s == 0 || !detector.size.is_multiple_of(s))
        {
            return Err(format!(
                "[detector] size {} and strides {:?} do not fit together",
                detector.size, detector.strides
            ));
        }
        if embedder.align_landmarks.len() != 5 {
            return Err(format!(
                "[embedder] align_landmarks needs 5 points, found {}",
                embedder.align_landmarks.len()
            ));
        }
        if embedder.size == 0 || embedder.dim == 0 || detector.scale <= 0.0 || embedder.scale <= 0.0
        {
            return Err("[embedder] size and dim, and both `scale`s, must be positive".into());
        }
        Ok(())
    }
}

/// Description of a YuNet graph, from the `[detector]` table of a face manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSpec {
    /// ONNX file, relative to the manifest.
    pub file: PathBuf,
    /// sha256 of the file.
    pub sha256: String,
    /// Input tensor name.
    pub input: String,
    /// Square input size in pixels.
    pub size: u32,
    /// Channel order of the input.
    pub colour: ColourOrder,
    /// Pixel values 0..255 are divided by this.
    #[serde(default = "one")]
    pub scale: f32,
    /// Strides; outputs are named `cls_<s>`, `obj_<s>`, `bbox_<s>`, `kps_<s>`.
    pub strides: Vec<u32>,
    /// Output names, as documentation (the strides name them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Path of the original file inside the source package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// sha256 of the original file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
}

/// Description of an SFace graph, from the `[embedder]` table of a face manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedderSpec {
    /// ONNX file, relative to the manifest.
    pub file: PathBuf,
    /// sha256 of the file.
    pub sha256: String,
    /// Input tensor name.
    pub input: String,
    /// Output tensor name.
    pub output: String,
    /// Square crop size in pixels.
    pub size: u32,
    /// Embedding dimension.
    pub dim: usize,
    /// Channel order of the input.
    pub colour: ColourOrder,
    /// Pixel values 0..255 are divided by this.
    #[serde(default = "one")]
    pub scale: f32,
    /// Where the five landmarks go in the crop (right eye, left eye, nose, right and left mouth
    /// corners).
    pub align_landmarks: Vec<[f32; 2]>,
    /// Published same-person cosine threshold, if any.
    #[serde(default)]
    pub match_cosine_threshold: Option<f32>,
    /// Path of the original file inside the source package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// sha256 of the original file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
}

fn one() -> f32 {
    1.0
}

/// Input tensor of a whole-image model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tensor name.
    pub name: String,
    /// Memory layout.
    pub layout: Layout,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
}

/// Tensor layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Batch, channel, height, width.
    Nchw,
    /// Batch, height, width, channel.
    Nhwc,
}

/// How an image is resized to the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeRule {
    /// Shorter side to `resize_to`, then a centre crop of the input size (torchvision, timm).
    ShorterThenCenterCrop,
    /// Stretch to the input size, ignoring the aspect ratio (the tutorial's reader).
    Stretch,
    /// Fit inside the input size, keeping the aspect ratio, pad the rest with zeros.
    Letterbox,
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Bilinear, antialiased when shrinking (as PIL).
    Bilinear,
    /// Bicubic (Catmull-Rom), antialiased when shrinking.
    Bicubic,
    /// Lanczos3.
    Lanczos3,
}

/// Channel order fed to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV models).
    Bgr,
}

/// Preprocessing of a whole-image model: value = (pixel / scale − mean) / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    /// Resize rule.
    pub resize: ResizeRule,
    /// Shorter side before the crop (`shorter_then_center_crop` only).
    #[serde(default)]
    pub resize_to: Option<u32>,
    /// Resampling filter.
    pub filter: Filter,
    /// Channel order.
    pub colour: ColourOrder,
    /// Pixel values are divided by this first.
    pub scale: f32,
    /// Per-channel mean, subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, divided by last.
    pub std: [f32; 3],
}

/// Output tensors of a whole-image model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Name of the pooled feature output, shape `[N, dim]`.
    pub features: String,
    /// Feature dimension.
    pub dim: usize,
    /// Optional ImageNet logits output.
    #[serde(default)]
    pub logits: Option<String>,
    /// Feature cosine at or above which two images are near-duplicates (measured per model by
    /// `benches/dups.sh`); without it, `qcyn dups` and grouped splits do not use features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_duplicate_cosine: Option<f32>,
}

/// A manifest together with where it was found.
#[derive(Debug, Clone)]
pub struct Model {
    /// The parsed manifest.
    pub manifest: ModelManifest,
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// A fused model's parts, resolved (empty for other kinds).
    pub parts: Vec<Model>,
    /// Which graph runs: fp32, or the `[int8]` one (see [`Registry::with_precision`]).
    pub precision: Precision,
}

/// One ONNX graph a model runs: where it is, its pinned sha256 and how messages name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// The file, resolved.
    pub path: PathBuf,
    /// Its pinned sha256.
    pub sha256: Option<String>,
    /// How messages name it ("model file for `mobilenetv2`", "int8 graph of `mobilenetv2`").
    pub what: String,
}

impl Model {
    /// Reads and validates one manifest file.
    pub fn load(path: &Path) -> Result<Model> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read model manifest", path, e))?;
        let manifest: ModelManifest = toml::from_str(&text).map_err(|e| {
            Error::bad_file(
                path,
                format!("invalid model manifest: {e}"),
                Some("compare it with models/mobilenetv2.toml".into()),
            )
        })?;
        Ok(Model {
            manifest,
            manifest_path: path.to_path_buf(),
            parts: Vec::new(),
            precision: Precision::Fp32,
        })
    }

    /// The manifest's folder.
    pub fn dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }

    /// Resolves a file named in the manifest relative to the manifest's folder.
    pub fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.dir().join(file)
        }
    }

    /// The ONNX file of a whole-image model at its precision (`None` for face models).
    pub fn onnx_path(&self) -> Option<PathBuf> {
        self.graph().map(|g| g.path)
    }

    /// The graph a whole-image model runs at its [`Model::precision`] (`None` for other kinds,
    /// and for int8 when the manifest has no `[int8]` table).
    pub fn graph(&self) -> Option<Graph> {
        let w = self.manifest.whole()?;
        let name = &self.manifest.name;
        match self.precision {
            Precision::Fp32 => Some(Graph {
                path: self.resolve(&w.file),
                sha256: w.sha256.clone(),
                what: format!("model file for `{name}`"),
            }),
            Precision::Int8 => w.int8.as_ref().map(|q| Graph {
                path: self.resolve(&q.file),
                sha256: Some(q.sha256.clone()),
                what: format!("int8 graph of `{name}`"),
            }),
        }
    }

    /// Whether the model can run at `precision`: fp32 always; int8 when it is a whole-image
    /// model with an `[int8]` table, or a fusion of such models.
    pub fn has_precision(&self, precision: Precision) -> bool {
        match (&self.manifest.spec, precision) {
            (_, Precision::Fp32) => true,
            (ModelSpec::Whole(w), Precision::Int8) => w.int8.is_some(),
            (ModelSpec::Fusion(_), Precision::Int8) => {
                !self.parts.is_empty() && self.parts.iter().all(|p| p.has_precision(precision))
            }
            (ModelSpec::Face(_), Precision::Int8) => false,
        }
    }

    /// Every ONNX file the model runs, resolved, with its pinned sha256: one for a whole-image
    /// model, the detector and the embedder for a face model, every part's for a fused model.
    pub fn files(&self) -> Vec<(PathBuf, Option<String>)> {
        match &self.manifest.spec {
            ModelSpec::Fusion(_) => self.parts.iter().flat_map(|p| p.files()).collect(),
            ModelSpec::Whole(w) => match self.graph() {
                Some(g) => vec![(g.path, g.sha256)],
                None => vec![(self.resolve(&w.file), w.sha256.clone())],
            },
            ModelSpec::Face(f) => vec![
                (
                    self.resolve(&f.detector.file),
                    Some(f.detector.sha256.clone()),
                ),
                (
                    self.resolve(&f.embedder.file),
                    Some(f.embedder.sha256.clone()),
                ),
            ],
        }
    }
}

/// A name that fuses models: `xception+mobilenetv2`.
pub fn is_fused_name(name: &str) -> bool {
    name.contains('+')
}

/// Checks that a model file exists and, when `expected` is given, that its sha256 is the one its
/// manifest names. Returns the actual sha256. `what` names the file in messages ("model file for
/// `mobilenetv2`", "face detector", …).
pub fn verify_file(
    path: &Path,
    expected: Option<&str>,
    manifest: &Path,
    what: &str,
) -> Result<String> {
    if !path.is_file() {
        return Err(Error::bad_file(
            path,
            format!("{what} not found"),
            Some(format!(
                "run {} to build it",
                crate::runtime::project_dir()
                    .join("scripts/setup")
                    .display()
            )),
        ));
    }
    let actual = sha256_file(path)?;
    match expected {
        Some(expected) if expected != actual => Err(Error::bad_file(
            path,
            format!(
                "{what}: sha256 is {actual}, but the manifest {} says {expected}",
                manifest.display()
            ),
            Some(
                "the file was changed or only partly written; re-run scripts/setup, which rebuilds and checks it".into(),
            ),
        )),
        _ => Ok(actual),
    }
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(hex::encode(hasher.finalize()))
}
