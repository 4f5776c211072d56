//! Pipeline: the two halves every feature extractor is made of, and what identifies its features.
//!
//! A [`Prepare`] half runs on worker threads (bytes → [`Prepared`]); a [`Run`] half runs the
//! backbone on one thread (batch → [`Embedding`]s). Whole-image models
//! (`backbone`) and the face pipeline (`face`) each implement both; `extract`,
//! `bench`, `fit` and `predict` see only a [`Pipeline`]. This module depends on nothing above it.
use std::sync::Arc;

use image::RgbImage;
use serde::Serialize;

use crate::error::Result;
use crate::features::Embedding;
use crate::models::Model;
use crate::preprocess::ImageProblem;

/// An image made ready for a backbone by a worker thread.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A normalised input tensor (whole-image models).
    Tensor(Vec<f32>),
    /// A decoded image (face models detect, align and crop it themselves).
    Image(Arc<RgbImage>),
    /// One prepared input per part of a fused model, in the parts' order.
    Parts(Vec<Prepared>),
}

/// The worker-thread half of a feature extractor: bytes → [`Prepared`].
pub trait Prepare: Send + Sync {
    /// Decodes and prepares one image.
    fn prepare(&self, bytes: &[u8]) -> Result<Prepared, ImageProblem>;
    /// A fused model's parts' preparers (`None` for a single model).
    fn parts(&self) -> Option<&[Arc<dyn Prepare>]> {
        None
    }
}

/// The backbone half of a feature extractor, run on one thread.
pub trait Run {
    /// Embeds a batch: one list of embeddings per image (empty when a face model finds no face).
    fn run(&mut self, batch: Vec<Prepared>) -> Result<Vec<Vec<Embedding>>>;
    /// How many images went through the backbone so far.
    fn images_run(&self) -> u64;
    /// Runs `n` images already laid out as one input tensor, discarding the output: the backbone
    /// alone, as `bench` measures it. `None` when the runner takes no such input (face models).
    fn run_tensor(&mut self, _batch: &[f32], _n: usize) -> Option<Result<()>> {
        None
    }
    /// Another runner of the same backbone, with a session of its own on `threads` intra-op
    /// threads (opened on its first batch), counting its images into this runner's
    /// [`Run::images_run`]: `extract` runs one per core, each on its own images, which keeps every
    /// core busy with less waiting than one session split across cores. `None` when the runner
    /// cannot be replicated (face models, fused models as a whole, GPU sessions).
    fn replicate(&self, _threads: usize) -> Option<Box<dyn Run + Send>> {
        None
    }
    /// A fused model's parts' runners, each with the cache identity of its features (`None` for
    /// a single model), so that each part's features are cached on their own.
    fn parts_mut(&mut self) -> Option<Vec<(&CacheIdentity, &mut dyn Run)>> {
        None
    }
}

/// What identifies an extractor's features in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheIdentity {
    /// Model name.
    pub model: String,
    /// sha256 of the model file(s).
    pub sha256: String,
    /// Preprocessing id.
    pub preprocess_id: String,
}

/// A feature extractor: preparation (shared with worker threads) and a lazily opened backbone.
pub struct Pipeline {
    /// The model's manifest.
    pub model: Model,
    /// Cache identity of its features.
    pub identity: CacheIdentity,
    /// Worker-thread half.
    pub preparer: Arc<dyn Prepare>,
    /// Backbone half.
    pub runner: Box<dyn Run>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Prepares and embeds images in memory (no cache), in one batch.
    pub fn embed(&mut self, bytes: &[&[u8]]) -> Result<Vec<Result<Vec<Embedding>, ImageProblem>>> {
        let mut out: Vec<Option<Result<Vec<Embedding>, ImageProblem>>> =
            Vec::with_capacity(bytes.len());
        let mut batch = Vec::new();
        let mut slots = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            match self.preparer.prepare(b) {
                Ok(p) => {
                    batch.push(p);
                    slots.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        if !batch.is_empty() {
            for (slot, e) in slots.into_iter().zip(self.runner.run(batch)?) {
                out[slot] = Some(Ok(e));
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every slot filled"))
            .collect())
    }
}
