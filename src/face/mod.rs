//! Face mode: detect (YuNet) → align (5-point similarity) → embed (SFace).
//!
//! The face pipeline is one more kind of backbone: [`pipeline`] builds an
//! [`crate::pipeline::Pipeline`] that turns an image into zero, one or several
//! [`Embedding`]s, one per face, each with its [`FaceBox`], most prominent first. `extract`, `fit`
//! and `predict` see nothing else.
//!
//! - [`detect`]: letterbox, YuNet, decoding, NMS (pure functions plus the session).
//! - [`align`]: similarity transform onto the template and the bilinear warp (pure).
//! - [`embed`]: SFace on the aligned crop, L2-normalised.
//! - [`identity`]: which faces of a class's training photos are its person (pure).
//! - [`quality`]: which detections are usable faces: sharpness, yaw (pure).
//! - [`openset`]: "unknown person" scoring and its calibration (pure).
//! - [`sheet`]: aligned crops and contact sheets on disk, to show what the model sees.
//!
//! **Prominence** orders the faces of one image: the area of the face box (clipped to the image)
//! times a centrality weight `1 − ½·d/d_max`, where `d` is the distance from the box centre to the
//! image centre and `d_max` half the image diagonal. A face in the middle counts fully, one in a
//! corner half, so the person a photo is *of* comes first even next to a slightly larger face at
//! the edge.
use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;
use ort::environment::Environment;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backbone::SessionOptions;
use crate::error::{Error, Result};
use crate::features::{Embedding, FaceBox};
use crate::models::Model;
use crate::pipeline::{CacheIdentity, Pipeline, Prepare, Prepared, Run};
use crate::preprocess::ImageProblem;

pub mod align;
pub mod detect;
pub mod embed;
pub mod identity;
pub mod openset;
pub mod quality;
pub mod sheet;

pub use crate::models::{DetectorSpec, EmbedderSpec};

/// Bumped whenever the face code changes what it produces for the same image and options, so cached
/// embeddings of older code are never reused.
pub const FACE_CODE_VERSION: u32 = 2;

/// [`choose_training_face`] calls an image ambiguous when another face's area is more than this
/// share of the most prominent face's area.
pub const AMBIGUOUS_AREA_RATIO: f32 = 0.7;

/// Options of the face pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceOptions {
    /// Detector score threshold in 0..1 (OpenCV's default for YuNet is 0.9; 0.6 keeps harder
    /// faces: side views, low light, greyscale).
    pub score_threshold: f32,
    /// Faces whose box is narrower or shorter than this many original pixels are ignored: too few
    /// pixels to tell people apart (SFace works on 112×112 crops).
    pub min_face_px: f32,
    /// Non-maximum suppression IoU threshold.
    pub nms_iou: f32,
    /// When no face is found, embed the whole image (its centre square, as if it were a face
    /// crop) instead of returning nothing. Such an embedding has no face box.
    #[serde(default)]
    pub whole_image_fallback: bool,
    /// Faces whose aligned crop is blurrier than this are ignored: the variance of the Laplacian
    /// of the crop's grey centre ([`quality::sharpness`]); 0 keeps every face.
    #[serde(default = "default_min_sharpness")]
    pub min_sharpness: f32,
    /// Faces turned further than this many degrees from frontal, as the five landmarks show
    /// ([`quality::yaw_degrees`]), are ignored; 90 keeps every face.
    #[serde(default = "default_max_yaw")]
    pub max_yaw: f32,
}

/// Default of [`FaceOptions::min_sharpness`]. Measured (`face_quality_measurements` in
/// tests/face.rs): sharp web-photo faces score 500–2,000, the same faces blurred with σ = 4 px
/// about 40, with σ = 8 px 5–10; the sharpest-to-blurriest of the 400 ORL faces (small, enlarged)
/// 2,000 to 21.
pub const DEFAULT_MIN_SHARPNESS: f32 = 15.0;
/// Default of [`FaceOptions::max_yaw`]. Measured: frontal photos 1–21°; the most turned of the
/// 400 ORL faces 62°.
pub const DEFAULT_MAX_YAW: f32 = 70.0;

fn default_min_sharpness() -> f32 {
    DEFAULT_MIN_SHARPNESS
}

fn default_max_yaw() -> f32 {
    DEFAULT_MAX_YAW
}

impl Default for FaceOptions {
    fn default() -> Self {
        FaceOptions {
            score_threshold: 0.6,
            min_face_px: 20.0,
            nms_iou: 0.3,
            whole_image_fallback: false,
            min_sharpness: DEFAULT_MIN_SHARPNESS,
            max_yaw: DEFAULT_MAX_YAW,
        }
    }
}

impl FaceOptions {
    /// Checks the values before anything runs.
    pub fn check(&self) -> Result<()> {
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        if !unit(self.score_threshold) {
            return Err(Error::config(
                format!(
                    "face score threshold must be in 0..1, got {}",
                    self.score_threshold
                ),
                None,
            ));
        }
        if !unit(self.nms_iou) {
            return Err(Error::config(
                format!(
                    "face NMS IoU threshold must be in 0..1, got {}",
                    self.nms_iou
                ),
                None,
            ));
        }
        if !(self.min_sharpness.is_finite() && self.min_sharpness >= 0.0) {
            return Err(Error::config(
                format!(
                    "minimum face sharpness must be 0 or more, got {}",
                    self.min_sharpness
                ),
                Some(format!(
                    "0 keeps every face; the default is {DEFAULT_MIN_SHARPNESS}"
                )),
            ));
        }
        if !(self.max_yaw.is_finite() && (0.0..=90.0).contains(&self.max_yaw)) {
            return Err(Error::config(
                format!(
                    "maximum face yaw must be 0 to 90 degrees, got {}",
                    self.max_yaw
                ),
                Some(format!(
                    "90 keeps every face; the default is {DEFAULT_MAX_YAW}"
                )),
            ));
        }
        if !(self.min_face_px.is_finite() && self.min_face_px >= 0.0) {
            return Err(Error::config(
                format!(
                    "minimum face size must be 0 or more pixels, got {}",
                    self.min_face_px
                ),
                None,
            ));
        }
        Ok(())
    }
}

/// The detector and embedder a `kind = "face"` manifest describes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceModel {
    /// Model name.
    pub name: String,
    /// The `[detector]` table.
    pub detector: DetectorSpec,
    /// The `[embedder]` table.
    pub embedder: EmbedderSpec,
    /// Detector file, resolved.
    pub detector_path: PathBuf,
    /// Embedder file, resolved.
    pub embedder_path: PathBuf,
    /// The manifest file.
    pub manifest_path: PathBuf,
}

impl FaceModel {
    /// The detector and embedder of a face manifest, with their files resolved.
    pub fn from_model(model: &Model) -> Result<FaceModel> {
        let spec = model.manifest.face().ok_or_else(|| {
            Error::config(
                format!(
                    "model `{}` is a whole-image model, not a face model",
                    model.manifest.name
                ),
                Some("use --model face".into()),
            )
        })?;
        Ok(FaceModel {
            name: model.manifest.name.clone(),
            detector_path: model.resolve(&spec.detector.file),
            embedder_path: model.resolve(&spec.embedder.file),
            detector: spec.detector.clone(),
            embedder: spec.embedder.clone(),
            manifest_path: model.manifest_path.clone(),
        })
    }

    /// sha256 identifying the pair: sha256 of `"<detector sha256>+<embedder sha256>"`.
    pub fn combined_sha256(&self) -> String {
        let text = format!("{}+{}", self.detector.sha256, self.embedder.sha256);
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// Identifies everything between the decoded image and the embedding: letterbox rule, options,
    /// alignment template, crop size and colour, and [`FACE_CODE_VERSION`].
    pub fn preprocess_id(&self, opts: &FaceOptions) -> String {
        let text = format!(
            "face-v{FACE_CODE_VERSION}|letterbox {} pad-to-32 upscale-to {} bilinear {:?}/{}|score>={} nms {} min {}px|align lsq-similarity bilinear {:?}|crop {} {:?}/{}|fallback {}|sharpness>={} yaw<={}",
            self.detector.size,
            detect::UPSCALE_TO,
            self.detector.colour,
            self.detector.scale,
            opts.score_threshold,
            opts.nms_iou,
            opts.min_face_px,
            self.embedder.align_landmarks,
            self.embedder.size,
            self.embedder.colour,
            self.embedder.scale,
            opts.whole_image_fallback,
            opts.min_sharpness,
            opts.max_yaw,
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// Prominence of a face in a `width`×`height` image: clipped box area × centrality (see the
/// module documentation).
pub fn prominence(face: &FaceBox, width: u32, height: u32) -> f32 {
    let Some(b) = clip_box(&face.bbox, width, height) else {
        return 0.0;
    };
    let (cx, cy) = (b[0] + b[2] / 2.0, b[1] + b[3] / 2.0);
    let (icx, icy) = (width as f32 / 2.0, height as f32 / 2.0);
    let d_max = icx.hypot(icy).max(f32::MIN_POSITIVE);
    let centrality = 1.0 - 0.5 * ((cx - icx).hypot(cy - icy) / d_max).min(1.0);
    b[2] * b[3] * centrality
}

/// `[x, y, w, h]` clipped to the image, or `None` when nothing of it is inside.
pub fn clip_box(b: &[f32; 4], width: u32, height: u32) -> Option<[f32; 4]> {
    let (x0, y0) = (b[0].max(0.0), b[1].max(0.0));
    let (x1, y1) = (
        (b[0] + b[2]).min(width as f32),
        (b[1] + b[3]).min(height as f32),
    );
    (x1 > x0 && y1 > y0).then_some([x0, y0, x1 - x0, y1 - y0])
}

/// A face found in an image and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectedFace {
    /// Box (clipped to the image), score and landmarks, in original pixels.
    pub face: FaceBox,
    /// See [`prominence`].
    pub prominence: f32,
}

/// A face the detector found but the pipeline ignored, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IgnoredFace {
    /// The face as detected (box not clipped).
    pub face: FaceBox,
    /// Why it was ignored, for people.
    pub reason: String,
}

/// What the detector found in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Kept faces, most prominent first.
    pub faces: Vec<DetectedFace>,
    /// Faces found but ignored (too small, or outside the image).
    pub ignored: Vec<IgnoredFace>,
}

/// A kept face, aligned and embedded.
#[derive(Debug, Clone)]
pub struct AnalysedFace {
    /// Box, score and landmarks in original pixels.
    pub face: FaceBox,
    /// See [`prominence`].
    pub prominence: f32,
    /// The aligned crop the embedder saw.
    pub crop: RgbImage,
    /// L2-normalised embedding.
    pub vector: Vec<f32>,
}

/// Every face of one image, aligned and embedded.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Kept faces, most prominent first.
    pub faces: Vec<AnalysedFace>,
    /// Faces found but ignored, and why.
    pub ignored: Vec<IgnoredFace>,
}

impl Analysis {
    /// The embeddings, most prominent face first.
    pub fn embeddings(&self) -> Vec<Embedding> {
        self.faces
            .iter()
            .map(|f| Embedding {
                vector: f.vector.clone(),
                face: Some(f.face),
            })
            .collect()
    }
}

/// Open detector and embedder sessions, with the options they run with.
#[derive(Debug)]
pub struct FaceEngine {
    model: FaceModel,
    opts: FaceOptions,
    detector: detect::Detector,
    embedder: embed::Embedder,
}

impl FaceEngine {
    /// Checks both files' sha256 against the manifest, then opens both sessions.
    pub fn open(
        env: &Environment,
        model: &Model,
        session: SessionOptions,
        opts: FaceOptions,
    ) -> Result<FaceEngine> {
        opts.check()?;
        let fm = FaceModel::from_model(model)?;
        crate::models::verify_file(
            &fm.detector_path,
            Some(&fm.detector.sha256),
            &fm.manifest_path,
            "face detector",
        )?;
        crate::models::verify_file(
            &fm.embedder_path,
            Some(&fm.embedder.sha256),
            &fm.manifest_path,
            "face embedder",
        )?;
        let detector = detect::Detector::open(env, &fm.detector, &fm.detector_path, session)?;
        let embedder = embed::Embedder::open(env, &fm.embedder, &fm.embedder_path, session)?;
        Ok(FaceEngine {
            model: fm,
            opts,
            detector,
            embedder,
        })
    }

    /// The face model.
    pub fn model(&self) -> &FaceModel {
        &self.model
    }

    /// The options.
    pub fn options(&self) -> &FaceOptions {
        &self.opts
    }

    /// Detects faces: boxes clipped to the image, faces smaller than `min_face_px` (unclipped box)
    /// or entirely outside the image ignored with a reason, the rest sorted by [`prominence`].
    pub fn detect(&mut self, img: &RgbImage) -> Result<Detections> {
        let (w, h) = img.dimensions();
        let raw = self
            .detector
            .detect(img, self.opts.score_threshold, self.opts.nms_iou)?;
        let (mut faces, mut ignored) = (Vec::new(), Vec::new());
        for f in raw {
            let side = f.bbox[2].min(f.bbox[3]);
            if side < self.opts.min_face_px {
                ignored.push(IgnoredFace {
                    face: f,
                    reason: format!(
                        "face too small: {side:.0} px, the minimum is {:.0} px (--min-face-px)",
                        self.opts.min_face_px
                    ),
                });
                continue;
            }
            let yaw = quality::yaw_degrees(&f.landmarks);
            if yaw > self.opts.max_yaw {
                ignored.push(IgnoredFace {
                    face: f,
                    reason: format!(
                        "face turned {yaw:.0}° from frontal, the maximum is {:.0}° (--max-yaw)",
                        self.opts.max_yaw
                    ),
                });
                continue;
            }
            let Some(clipped) = clip_box(&f.bbox, w, h) else {
                ignored.push(IgnoredFace {
                    face: f,
                    reason: "face box lies outside the image".into(),
                });
                continue;
            };
            let face = FaceBox { bbox: clipped, ..f };
            faces.push(DetectedFace {
                prominence: prominence(&face, w, h),
                face,
            });
        }
        faces.sort_by(|a, b| {
            b.prominence
                .total_cmp(&a.prominence)
                .then(b.face.score.total_cmp(&a.face.score))
        });
        Ok(Detections {
            width: w,
            height: h,
            faces,
            ignored,
        })
    }

    /// The aligned crop of one face (black where the face extends past the image).
    pub fn align(&self, img: &RgbImage, face: &FaceBox) -> Option<RgbImage> {
        align::align_crop(
            img,
            &face.landmarks,
            &self.model.embedder.align_landmarks,
            self.model.embedder.size,
        )
    }

    /// Detects, aligns and embeds every face.
    pub fn analyse(&mut self, img: &RgbImage) -> Result<Analysis> {
        Ok(self.analyse_many(&[img])?.remove(0))
    }

    /// Detects and aligns every face of every image, keeps those that pass the quality gate
    /// (sharpness; size, score and yaw are checked at detection), and embeds all of them in
    /// batches: one embedder run for the faces of many images.
    pub fn analyse_many(&mut self, imgs: &[&RgbImage]) -> Result<Vec<Analysis>> {
        // Per image: what was detected, the faces kept with their crops, the faces ignored.
        type Pending = (Detections, Vec<(DetectedFace, RgbImage)>, Vec<IgnoredFace>);
        let mut pending: Vec<Pending> = Vec::with_capacity(imgs.len());
        for img in imgs {
            let mut det = self.detect(img)?;
            let mut kept = Vec::with_capacity(det.faces.len());
            let mut ignored = std::mem::take(&mut det.ignored);
            for d in std::mem::take(&mut det.faces) {
                let Some(crop) = self.align(img, &d.face) else {
                    ignored.push(IgnoredFace {
                        face: d.face,
                        reason: "landmarks are degenerate; cannot align".into(),
                    });
                    continue;
                };
                let sharpness = quality::sharpness(&crop);
                if sharpness < self.opts.min_sharpness {
                    ignored.push(IgnoredFace {
                        face: d.face,
                        reason: format!(
                            "face too blurred: sharpness {sharpness:.0}, the minimum is {:.0} (--min-sharpness)",
                            self.opts.min_sharpness
                        ),
                    });
                    continue;
                }
                kept.push((d, crop));
            }
            pending.push((det, kept, ignored));
        }
        let crops: Vec<&RgbImage> = pending
            .iter()
            .flat_map(|(_, kept, _)| kept.iter().map(|(_, c)| c))
            .collect();
        let mut vectors = self.embedder.embed_batch(&crops)?.into_iter();
        let mut out = Vec::with_capacity(pending.len());
        for (det, kept, ignored) in pending {
            let faces = kept
                .into_iter()
                .map(|(d, crop)| AnalysedFace {
                    face: d.face,
                    prominence: d.prominence,
                    crop,
                    vector: vectors.next().expect("one vector per crop"),
                })
                .collect();
            out.push(Analysis {
                width: det.width,
                height: det.height,
                faces,
                ignored,
            });
        }
        Ok(out)
    }

    /// Every face's embedding, most prominent first (empty when there is no face, unless
    /// [`FaceOptions::whole_image_fallback`] asks for the whole image's embedding then).
    pub fn embed_image(&mut self, img: &RgbImage) -> Result<Vec<Embedding>> {
        Ok(self.embed_images(&[img])?.remove(0))
    }

    /// [`FaceEngine::embed_image`] for many images, their faces embedded in batches.
    pub fn embed_images(&mut self, imgs: &[&RgbImage]) -> Result<Vec<Vec<Embedding>>> {
        let analyses = self.analyse_many(imgs)?;
        let mut out = Vec::with_capacity(imgs.len());
        for (img, a) in imgs.iter().zip(analyses) {
            let faces = a.embeddings();
            if faces.is_empty() && self.opts.whole_image_fallback {
                out.push(vec![Embedding {
                    vector: self.embed_whole(img)?,
                    face: None,
                }]);
            } else {
                out.push(faces);
            }
        }
        Ok(out)
    }

    /// Embeds the image's centre square, resized to the embedder's input, as if it were an
    /// aligned face (the fallback for images without a detectable face).
    pub fn embed_whole(&mut self, img: &RgbImage) -> Result<Vec<f32>> {
        let (w, h) = img.dimensions();
        let side = w.min(h).max(1);
        let square = image::imageops::crop_imm(
            img,
            (w - side.min(w)) / 2,
            (h - side.min(h)) / 2,
            side,
            side,
        )
        .to_image();
        let n = self.model.embedder.size;
        let crop = image::imageops::resize(&square, n, n, image::imageops::FilterType::Triangle);
        self.embedder.embed(&crop)
    }
}

/// Which face of an image to train on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "choice")]
pub enum FaceChoice {
    /// This face (an index into the image's faces).
    Face(usize),
    /// The image has no face.
    NoFace,
    /// Two faces are about equally large: which person the image is *of* is unclear.
    Ambiguous {
        /// The most prominent face.
        first: usize,
        /// The largest other face.
        second: usize,
        /// Its area divided by the first's.
        area_ratio: f32,
    },
}

/// Picks the face to train on from an image's faces as the pipeline returns them (most prominent
/// first): the first one, unless another face's box area is more than [`AMBIGUOUS_AREA_RATIO`] of
/// its area, then [`FaceChoice::Ambiguous`].
///
/// Why area and 0.7: the image size is not stored with cached embeddings, so the centrality part of
/// prominence cannot be recomputed here; box area is what remains, and it is what makes a person
/// the subject of a photo. An area ratio of 0.7 means the other face is about 84% as wide: two
/// people side by side at the same distance (ratio 0.8–1.0) are ambiguous, while a subject in front
/// of bystanders (usually under half the area) is not. An ambiguous image is better reported to the
/// user than silently trained on the wrong person. Faces without a box (whole-image models) give
/// `Face(0)`.
pub fn choose_training_face(faces: &[Embedding]) -> FaceChoice {
    let Some(first) = faces.first() else {
        return FaceChoice::NoFace;
    };
    let Some(fb) = first.face else {
        return FaceChoice::Face(0);
    };
    let area = |b: &FaceBox| b.bbox[2].max(0.0) * b.bbox[3].max(0.0);
    let a0 = area(&fb);
    let runner_up = faces
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, e)| e.face.map(|b| (i, area(&b))))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match runner_up {
        Some((i, a)) if a0 <= 0.0 || a > AMBIGUOUS_AREA_RATIO * a0 => FaceChoice::Ambiguous {
            first: 0,
            second: i,
            area_ratio: if a0 > 0.0 { a / a0 } else { f32::INFINITY },
        },
        _ => FaceChoice::Face(0),
    }
}

struct FacePreparer;

impl Prepare for FacePreparer {
    fn prepare(&self, bytes: &[u8]) -> Result<Prepared, ImageProblem> {
        Ok(Prepared::Image(Arc::new(crate::preprocess::decode_rgb(
            bytes,
        )?)))
    }
}

struct FaceRunner {
    env: Environment,
    model: Model,
    session: SessionOptions,
    opts: FaceOptions,
    engine: Option<FaceEngine>,
    images_run: u64,
}

impl Run for FaceRunner {
    fn run(&mut self, batch: Vec<Prepared>) -> Result<Vec<Vec<Embedding>>> {
        if self.engine.is_none() {
            self.engine = Some(FaceEngine::open(
                &self.env,
                &self.model,
                self.session,
                self.opts,
            )?);
        }
        let engine = self.engine.as_mut().expect("opened above");
        let imgs: Vec<Arc<RgbImage>> = batch
            .into_iter()
            .map(|p| match p {
                Prepared::Image(img) => img,
                _ => unreachable!("the face preparer makes images"),
            })
            .collect();
        let refs: Vec<&RgbImage> = imgs.iter().map(|i| i.as_ref()).collect();
        let out = engine.embed_images(&refs)?;
        self.images_run += imgs.len() as u64;
        Ok(out)
    }

    fn images_run(&self) -> u64 {
        self.images_run
    }
}

/// The face pipeline a `kind = "face"` manifest describes, with default [`FaceOptions`].
pub fn pipeline(env: &Environment, model: &Model, opts: SessionOptions) -> Result<Pipeline> {
    pipeline_with(env, model, opts, FaceOptions::default())
}

/// The face pipeline with explicit [`FaceOptions`]. Reads only the manifest: both model files are
/// checked and opened on the first batch.
pub fn pipeline_with(
    env: &Environment,
    model: &Model,
    opts: SessionOptions,
    face_opts: FaceOptions,
) -> Result<Pipeline> {
    face_opts.check()?;
    let fm = FaceModel::from_model(model)?;
    Ok(Pipeline {
        identity: CacheIdentity {
            model: model.manifest.name.clone(),
            sha256: fm.combined_sha256(),
            preprocess_id: fm.preprocess_id(&face_opts),
        },
        preparer: Arc::new(FacePreparer),
        runner: Box::new(FaceRunner {
            env: env.clone(),
            model: model.clone(),
            session: opts,
            opts: face_opts,
            engine: None,
            images_run: 0,
        }),
        model: model.clone(),
    })
}
