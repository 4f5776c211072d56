//! Backbone manifests: everything needed to run a model and to prepare its input, as data.
//!
//! Each backbone is a TOML file in `models/` (see `models/mobilenetv2.toml`). Training and
//! prediction both read preprocessing from here (and the bundle keeps a copy), so the two can never
//! drift apart.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What kind of feature extractor a manifest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// One ONNX graph, one feature vector per image.
    #[default]
    Whole,
    /// Detect → align → embed: zero, one or several vectors per image, one per face.
    Face,
}

/// A backbone manifest (`models/<name>.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Short name used on the command line (`--model NAME`).
    pub name: String,
    /// Whole-image or face pipeline.
    #[serde(default)]
    pub kind: ModelKind,
    /// One line for `qcyn models`.
    #[serde(default)]
    pub description: String,
    /// ONNX file, relative to the manifest's folder (whole-image models).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// sha256 of the ONNX file (whole-image models).
    #[serde(default)]
    pub sha256: Option<String>,
    /// True when the weights are random (latency benchmarks only).
    #[serde(default)]
    pub random_weights: bool,
    /// Licence of the weights.
    #[serde(default)]
    pub licence: String,
    /// How to run a model that users online can export (free text).
    #[serde(default)]
    pub export: Option<String>,
    /// Input tensor description (whole-image models).
    #[serde(default)]
    pub input: Option<InputSpec>,
    /// Preprocessing (whole-image models).
    #[serde(default)]
    pub preprocess: Option<PreprocessSpec>,
    /// Output tensors (whole-image models).
    #[serde(default)]
    pub output: Option<OutputSpec>,
    /// Face detector (face models).
    #[serde(default)]
    pub detector: Option<toml::Table>,
    /// Face embedder (face models).
    #[serde(default)]
    pub embedder: Option<toml::Table>,
    /// Where the weights come from, so a script can rebuild the file.
    #[serde(default)]
    pub source: Option<toml::Table>,
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
}

/// A manifest together with where it was found.
#[derive(Debug, Clone)]
pub struct Model {
    /// The parsed manifest.
    pub manifest: ModelManifest,
    /// The manifest file.
    pub manifest_path: PathBuf,
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
        let model = Model {
            manifest,
            manifest_path: path.to_path_buf(),
        };
        model.validate()?;
        Ok(model)
    }

    fn validate(&self) -> Result<()> {
        let m = &self.manifest;
        let bad = |msg: String| Err(Error::bad_file(&self.manifest_path, msg, None));
        if m.kind == ModelKind::Whole {
            if m.file.is_none() || m.input.is_none() || m.preprocess.is_none() || m.output.is_none()
            {
                return bad(
                    "a whole-image model needs `file`, [input], [preprocess] and [output]".into(),
                );
            }
            let p = m.preprocess.as_ref().unwrap();
            let i = m.input.as_ref().unwrap();
            if i.height == 0 || i.width == 0 {
                return bad("input height and width must be positive".into());
            }
            if p.resize == ResizeRule::ShorterThenCenterCrop {
                match p.resize_to {
                    Some(r) if r >= i.height.min(i.width) => {}
                    _ => return bad("`resize_to` must be given and at least the input size for shorter_then_center_crop".into()),
                }
            }
            if p.scale <= 0.0 || p.std.iter().any(|s| *s <= 0.0) {
                return bad("`scale` and every `std` must be positive".into());
            }
        }
        Ok(())
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

    /// The ONNX file of a whole-image model.
    pub fn onnx_path(&self) -> Option<PathBuf> {
        self.manifest.file.as_deref().map(|f| self.resolve(f))
    }

    /// The preprocessing of a whole-image model (validated to exist).
    pub fn preprocess(&self) -> &PreprocessSpec {
        self.manifest
            .preprocess
            .as_ref()
            .expect("validated whole-image manifest")
    }

    /// The input spec of a whole-image model (validated to exist).
    pub fn input(&self) -> &InputSpec {
        self.manifest
            .input
            .as_ref()
            .expect("validated whole-image manifest")
    }

    /// The output spec of a whole-image model (validated to exist).
    pub fn output(&self) -> &OutputSpec {
        self.manifest
            .output
            .as_ref()
            .expect("validated whole-image manifest")
    }
}

/// All manifests in a models folder.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The folder searched.
    pub dir: PathBuf,
    /// Models sorted by name.
    pub models: Vec<Model>,
}

impl Registry {
    /// Reads every `*.toml` manifest in `dir`.
    pub fn load(dir: &Path) -> Result<Registry> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::io("cannot read models folder", dir, e))?;
        let mut models = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot read models folder", dir, e))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                models.push(Model::load(&path)?);
            }
        }
        models.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        Ok(Registry {
            dir: dir.to_path_buf(),
            models,
        })
    }

    /// Finds a model by name, or reads a manifest given as a path.
    pub fn get(&self, name: &str) -> Result<Model> {
        if name.ends_with(".toml") {
            return Model::load(Path::new(name));
        }
        self.models.iter().find(|m| m.manifest.name == name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.models.iter().map(|m| m.manifest.name.as_str()).collect();
            Error::config(
                format!("unknown model `{name}` (models folder {})", self.dir.display()),
                Some(format!("known models: {}; `qcyn models` lists them, or pass a manifest path ending in .toml", known.join(", "))),
            )
        })
    }
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
                "sha256 is {actual}, but the manifest {} says {expected}",
                manifest.display()
            ),
            Some(
                "the file was changed or only partly written; rebuild it with scripts/setup".into(),
            ),
        )),
        _ => Ok(actual),
    }
}

/// The default backbone: `xception71` (the tutorial's) when a manifest with pretrained weights and
/// its file are installed, else `mobilenetv2`.
pub fn default_model_name(registry: &Registry) -> &'static str {
    let xception_ready = registry.models.iter().any(|m| {
        m.manifest.name == "xception71"
            && !m.manifest.random_weights
            && m.onnx_path().is_some_and(|p| p.is_file())
    });
    if xception_ready {
        "xception71"
    } else {
        "mobilenetv2"
    }
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
