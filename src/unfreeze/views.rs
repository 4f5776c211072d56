//! The two pipelines of the unfrozen path, built on a whole-image model's frozen prefix:
//! - [`mirrored`]: each image's prefix map and its mirror image's, one cached vector (the second
//!   view that training draws from, computed once);
//! - [`tail_pipeline`]: prefix → the trained tail graph in ONNX Runtime → features, as `predict`,
//!   `eval` and `bench` run a bundle fitted with `--unfreeze`.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};

use crate::backbone::{open_session, SessionOptions};
use crate::error::{Error, Result};
use crate::features::Embedding;
use crate::models::{Layout, Model, TailSpec};
use crate::pipeline::{CacheIdentity, Pipeline, Prepare, Prepared, Run};
use crate::preprocess::ImageProblem;

/// The prepared tensor of the mirror image (left and right swapped), in `layout`.
fn mirror(t: &[f32], layout: Layout, h: usize, w: usize) -> Vec<f32> {
    let mut out = t.to_vec();
    match layout {
        Layout::Nchw => {
            for row in out.chunks_exact_mut(w) {
                row.reverse();
            }
        }
        Layout::Nhwc => {
            for row in out.chunks_exact_mut(w * 3) {
                let src = row.to_vec();
                for x in 0..w {
                    row[x * 3..x * 3 + 3].copy_from_slice(&src[(w - 1 - x) * 3..(w - x) * 3]);
                }
            }
        }
    }
    debug_assert_eq!(out.len(), 3 * h * w);
    out
}

struct MirrorPreparer {
    inner: Arc<dyn Prepare>,
    layout: Layout,
    h: usize,
    w: usize,
}

impl Prepare for MirrorPreparer {
    fn prepare(&self, bytes: &[u8]) -> std::result::Result<Prepared, ImageProblem> {
        match self.inner.prepare(bytes)? {
            Prepared::Tensor(t) => {
                let m = mirror(&t, self.layout, self.h, self.w);
                Ok(Prepared::Parts(vec![
                    Prepared::Tensor(t),
                    Prepared::Tensor(m),
                ]))
            }
            other => Ok(other),
        }
    }
}

struct MirrorRunner {
    inner: Box<dyn Run>,
}

impl Run for MirrorRunner {
    fn run(&mut self, batch: Vec<Prepared>) -> Result<Vec<Vec<Embedding>>> {
        let n = batch.len();
        let flat: Vec<Prepared> = batch
            .into_iter()
            .flat_map(|p| match p {
                Prepared::Parts(v) => v,
                other => vec![other],
            })
            .collect();
        assert_eq!(flat.len(), 2 * n, "two views per image");
        let out = self.inner.run(flat)?;
        Ok(out
            .chunks_exact(2)
            .map(|pair| {
                let mut v = pair[0][0].vector.clone();
                v.extend_from_slice(&pair[1][0].vector);
                vec![Embedding {
                    vector: v,
                    face: None,
                }]
            })
            .collect())
    }

    fn images_run(&self) -> u64 {
        self.inner.images_run() / 2
    }
}

/// The prefix of `tail` as a pipeline whose vector per image is its map followed by its mirror
/// image's map (`2 · map_len` values).
pub fn mirrored(
    env: &Environment,
    model: &Model,
    tail: &TailSpec,
    opts: SessionOptions,
) -> Result<Pipeline> {
    let prefix = model.prefix_model(tail);
    let inner = crate::backbone::pipeline(env, &prefix, opts)?;
    let input = &prefix
        .manifest
        .whole()
        .expect("a prefix is a whole-image model")
        .input;
    let mut identity = inner.identity.clone();
    identity.model = format!("{}-views2", identity.model);
    Ok(Pipeline {
        model: prefix.clone(),
        identity,
        preparer: Arc::new(MirrorPreparer {
            inner: inner.preparer,
            layout: input.layout,
            h: input.height as usize,
            w: input.width as usize,
        }),
        runner: Box::new(MirrorRunner {
            inner: inner.runner,
        }),
    })
}

/// The trained tail a bundle holds: how many blocks, its file (relative to the bundle's folder)
/// and its sha256.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainedTail {
    /// `--unfreeze N`.
    pub blocks: usize,
    /// The tail ONNX file, relative to the bundle's folder.
    pub file: PathBuf,
    /// Its sha256.
    pub sha256: String,
}

/// What identifies the features of a prefix + trained tail: the prefix's sha256 and the tail's.
pub fn tail_identity(model: &Model, spec: &TailSpec, tail_sha256: &str) -> Result<CacheIdentity> {
    let w = model.manifest.whole().ok_or_else(|| {
        Error::config(
            format!("model `{}` is not a whole-image model", model.manifest.name),
            None,
        )
    })?;
    let sha = Sha256::digest(format!("{}:{}", spec.prefix_sha256, tail_sha256).as_bytes());
    Ok(CacheIdentity {
        model: format!("{}-tail{}", model.manifest.name, spec.blocks),
        sha256: hex::encode(sha),
        preprocess_id: crate::preprocess::preprocess_id(&w.preprocess, &w.input),
    })
}

/// Opens `file` as a trained tail after checking it is the one the bundle names.
pub fn verify_tail(path: &Path, sha256: &str) -> Result<()> {
    let hint = Some(
        "the bundle's trained tail is missing or was changed after `qcyn fit --unfreeze` wrote it; re-run that fit"
            .to_string(),
    );
    if !path.is_file() {
        return Err(Error::bad_file(path, "trained tail file not found", hint));
    }
    let actual = crate::models::sha256_file(path)?;
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(Error::bad_file(
            path,
            format!("trained tail file: sha256 is {actual}, the bundle says {sha256}"),
            hint,
        ));
    }
    Ok(())
}

/// Runs a tail graph on maps in ONNX Runtime.
pub struct TailSession {
    session: Session,
    map_len: usize,
    dim: usize,
    output: String,
}

impl std::fmt::Debug for TailSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailSession").finish_non_exhaustive()
    }
}

impl TailSession {
    /// Opens the tail graph at `path` (checked by the caller).
    pub fn open(
        env: &Environment,
        path: &Path,
        map_len: usize,
        dim: usize,
        output: &str,
        opts: SessionOptions,
    ) -> Result<TailSession> {
        Ok(TailSession {
            session: open_session(env, path, opts)?,
            map_len,
            dim,
            output: output.to_string(),
        })
    }

    /// Features `n × dim` (row-major) of `n` maps laid end to end.
    pub fn run(&mut self, maps: &[f32], n: usize) -> Result<Vec<f32>> {
        assert_eq!(maps.len(), n * self.map_len, "n maps");
        let tensor = TensorRef::from_array_view(([n, self.map_len], maps))?;
        let outputs = self.session.run(ort::inputs!["map" => tensor])?;
        let (shape, data) = outputs[self.output.as_str()].try_extract_tensor::<f32>()?;
        if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != self.dim {
            return Err(Error::config(
                format!(
                    "the tail's output has shape {:?}, expected [{n}, {}]",
                    &shape[..],
                    self.dim
                ),
                None,
            ));
        }
        Ok(data.to_vec())
    }
}

struct TailRunner {
    prefix: Box<dyn Run>,
    env: Environment,
    path: PathBuf,
    opts: SessionOptions,
    map_len: usize,
    dim: usize,
    output: String,
    session: Option<TailSession>,
}

impl Run for TailRunner {
    fn run(&mut self, batch: Vec<Prepared>) -> Result<Vec<Vec<Embedding>>> {
        let n = batch.len();
        let maps: Vec<f32> = self
            .prefix
            .run(batch)?
            .into_iter()
            .flat_map(|e| e.into_iter().next().map(|e| e.vector).unwrap_or_default())
            // The tail reads maps at float16 precision, as training read them from the cache, so
            // a photo gets the same features whether its map was cached or not.
            .map(|v| half::f16::from_f32(v).to_f32())
            .collect();
        if self.session.is_none() {
            self.session = Some(TailSession::open(
                &self.env,
                &self.path,
                self.map_len,
                self.dim,
                &self.output,
                self.opts,
            )?);
        }
        let feats = self.session.as_mut().expect("opened above").run(&maps, n)?;
        Ok(crate::features::whole_image_rows(&feats, self.dim))
    }

    fn images_run(&self) -> u64 {
        self.prefix.images_run()
    }
}

/// The pipeline of a bundle fitted with `--unfreeze`: the model's frozen prefix, then the trained
/// tail at `tail_path` (checked against `trained.sha256` now). Its `model` is the whole model, so
/// bundles check it as any other; its cache identity is [`tail_identity`].
pub fn tail_pipeline(
    env: &Environment,
    model: &Model,
    spec: &TailSpec,
    trained: &TrainedTail,
    tail_path: &Path,
    opts: SessionOptions,
) -> Result<Pipeline> {
    verify_tail(tail_path, &trained.sha256)?;
    let w = model
        .manifest
        .whole()
        .expect("a model with a tail is a whole-image model");
    let prefix = crate::backbone::pipeline(env, &model.prefix_model(spec), opts)?;
    Ok(Pipeline {
        model: model.clone(),
        identity: tail_identity(model, spec, &trained.sha256)?,
        preparer: prefix.preparer,
        runner: Box::new(TailRunner {
            prefix: prefix.runner,
            env: env.clone(),
            path: tail_path.to_path_buf(),
            opts,
            map_len: spec.map_len(),
            dim: w.output.dim,
            output: w.output.features.clone(),
            session: None,
        }),
    })
}
