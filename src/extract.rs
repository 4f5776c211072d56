//! Extract: scan results → preprocess → backbone → cache, with decoding overlapped with inference.
//!
//! Worker threads read, hash and decode images while the calling thread runs the backbone on full
//! batches; every finished batch is written to the cache at once, so an interrupted run loses at
//! most the batch in flight. A cached image is never decoded, and when everything is cached the
//! model is not even loaded.
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use ort::environment::Environment;
use serde::Serialize;

use crate::backbone::SessionOptions;
use crate::cache::FeatureCache;
use crate::dataset::Skipped;
use crate::error::{Error, Result};
use crate::face::FaceOptions;
use crate::features::Embedding;
use crate::models::{Model, ModelKind};
use crate::pipeline::{Pipeline, Prepare, Prepared, Run};
use crate::progress::Reporter;

/// Opening a pipeline dispatches on the manifest's kind: here, above both kinds, so that neither
/// [`crate::pipeline`] nor the kinds depend on each other.
impl Pipeline {
    /// The extractor a manifest describes. No model file is read until the first batch runs.
    pub fn open(env: &Environment, model: &Model, opts: SessionOptions) -> Result<Pipeline> {
        Self::open_with(env, model, opts, FaceOptions::default())
    }

    /// Like [`Pipeline::open`], with the face pipeline's options (ignored by whole-image models).
    pub fn open_with(
        env: &Environment,
        model: &Model,
        opts: SessionOptions,
        face: FaceOptions,
    ) -> Result<Pipeline> {
        crate::backbone::check_device(opts.device)?;
        match model.manifest.kind() {
            ModelKind::Whole => crate::backbone::pipeline(env, model, opts),
            ModelKind::Face => crate::face::pipeline_with(env, model, opts, face),
            ModelKind::Fusion => crate::fusion::pipeline(env, model, opts),
        }
    }
}

/// How to extract.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Images per backbone run.
    pub batch: usize,
    /// Threads that read and decode images.
    pub workers: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            batch: 32,
            workers: 2,
        }
    }
}

/// The summary of an extraction.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    /// Model name.
    pub model: String,
    /// True when the model's weights are random (latency only).
    pub random_weights: bool,
    /// Images considered.
    pub images: usize,
    /// Images run through the backbone in this run.
    pub extracted: usize,
    /// Images found in the cache.
    pub cached: usize,
    /// Images that could not be used, with the reason.
    pub skipped: Vec<Skipped>,
    /// Face models: images in which no face was found (their empty result is cached too).
    pub no_face: Vec<PathBuf>,
    /// Damaged cache entries found and recomputed.
    pub corrupt_recomputed: u64,
    /// Images that went through the backbone (0 when everything was cached).
    pub backbone_runs: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Images per second over the whole run.
    pub images_per_s: f64,
    /// The cache folder used.
    pub cache_dir: Option<PathBuf>,
}

/// Embeddings per input path (`None` for a skipped image) and the summary.
#[derive(Debug)]
pub struct Extracted {
    /// One entry per input path, in order.
    pub embeddings: Vec<Option<Vec<Embedding>>>,
    /// The summary.
    pub report: ExtractReport,
}

enum Outcome {
    Done(Vec<Embedding>),
    Ready(String, Prepared),
    Failed(String),
}

/// Embeds `paths` through `cache` (when given), running the backbone only on what is missing.
/// A fused model runs each part through its own cache (next to `cache`, in the same root), so
/// every part's features are extracted once, whatever they are fused with.
pub fn extract(
    pipeline: &mut Pipeline,
    cache: Option<&FeatureCache>,
    paths: &[PathBuf],
    opts: ExtractOptions,
    reporter: &dyn Reporter,
) -> Result<Extracted> {
    if opts.batch == 0 {
        return Err(Error::config("--batch must be at least 1", None));
    }
    let name = pipeline.model.manifest.name.clone();
    let random_weights = pipeline.model.manifest.random_weights;
    let preparers: Option<Vec<Arc<dyn Prepare>>> = pipeline.preparer.parts().map(|p| p.to_vec());
    if let (Some(preparers), Some(runners)) = (preparers, pipeline.runner.parts_mut()) {
        let start = Instant::now();
        let mut parts = Vec::new();
        for (preparer, (id, runner)) in preparers.iter().zip(runners) {
            let part_cache = cache.map(|c| c.sibling(id)).transpose()?;
            let one = Extractor {
                name: &id.model,
                random_weights,
                preparer,
                runner,
            };
            parts.push(one.extract(part_cache.as_ref(), paths, opts, reporter)?);
        }
        return Ok(fuse_parts(
            &name,
            random_weights,
            parts,
            paths,
            cache,
            start,
        ));
    }
    let one = Extractor {
        name: &name,
        random_weights,
        preparer: &pipeline.preparer.clone(),
        runner: pipeline.runner.as_mut(),
    };
    one.extract(cache, paths, opts, reporter)
}

/// One part's extraction fused into the fused model's: an image is fused when every part has
/// its vector, and skipped (with the first part's reason) otherwise.
fn fuse_parts(
    name: &str,
    random_weights: bool,
    parts: Vec<Extracted>,
    paths: &[PathBuf],
    cache: Option<&FeatureCache>,
    start: Instant,
) -> Extracted {
    let mut skipped: Vec<Skipped> = Vec::new();
    for p in &parts {
        for s in &p.report.skipped {
            if !skipped.iter().any(|k| k.path == s.path) {
                skipped.push(Skipped {
                    path: s.path.clone(),
                    reason: format!("{} ({})", s.reason, p.report.model),
                });
            }
        }
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let embeddings: Vec<Option<Vec<Embedding>>> = (0..paths.len())
        .map(|i| {
            let vectors: Option<Vec<&[f32]>> = parts
                .iter()
                .map(|p| {
                    p.embeddings[i]
                        .as_ref()
                        .and_then(|e| e.first())
                        .map(|e| e.vector.as_slice())
                })
                .collect();
            vectors.map(|v| {
                vec![Embedding {
                    vector: crate::fusion::fuse(&v),
                    face: None,
                }]
            })
        })
        .collect();
    let extracted = parts.iter().map(|p| p.report.extracted).max().unwrap_or(0);
    let seconds = start.elapsed().as_secs_f64();
    let report = ExtractReport {
        model: name.to_string(),
        random_weights,
        images: paths.len(),
        extracted,
        cached: paths.len() - skipped.len() - extracted.min(paths.len() - skipped.len()),
        skipped,
        no_face: Vec::new(),
        corrupt_recomputed: parts.iter().map(|p| p.report.corrupt_recomputed).sum(),
        backbone_runs: parts.iter().map(|p| p.report.backbone_runs).sum(),
        seconds,
        images_per_s: if seconds > 0.0 {
            paths.len() as f64 / seconds
        } else {
            0.0
        },
        cache_dir: cache.map(|c| c.root().to_path_buf()),
    };
    Extracted { embeddings, report }
}

/// What one extraction runs: a single model's (or one part's) two halves.
struct Extractor<'a> {
    name: &'a str,
    random_weights: bool,
    preparer: &'a Arc<dyn Prepare>,
    runner: &'a mut dyn Run,
}

impl Extractor<'_> {
    fn extract(
        self,
        cache: Option<&FeatureCache>,
        paths: &[PathBuf],
        opts: ExtractOptions,
        reporter: &dyn Reporter,
    ) -> Result<Extracted> {
        let Extractor {
            name,
            random_weights,
            preparer,
            runner,
        } = self;
        let start = Instant::now();
        let runs_before = runner.images_run();
        let mut embeddings: Vec<Option<Vec<Embedding>>> = vec![None; paths.len()];
        let mut skipped = Vec::new();
        let (mut extracted, mut cached) = (0usize, 0usize);
        reporter.start(
            &format!("extracting features ({name})"),
            Some(paths.len() as u64),
        );

        let next = AtomicUsize::new(0);
        let workers = opts.workers.max(1).min(paths.len().max(1));
        let result: Result<()> = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<(usize, Outcome)>(opts.batch * 2);
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, preparer) = (&next, &preparer);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= paths.len() {
                        break;
                    }
                    let outcome = prepare_one(&paths[i], cache, preparer.as_ref());
                    if tx.send((i, outcome)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let mut batch: Vec<(usize, String, Prepared)> = Vec::with_capacity(opts.batch);
            let mut cache_warned = false;
            let mut flush =
                |batch: &mut Vec<(usize, String, Prepared)>,
                 embeddings: &mut Vec<Option<Vec<Embedding>>>| {
                    if batch.is_empty() {
                        return Ok(());
                    }
                    let items: Vec<(usize, String, Prepared)> = std::mem::take(batch);
                    let (meta, prepared): (Vec<(usize, String)>, Vec<Prepared>) =
                        items.into_iter().map(|(i, k, p)| ((i, k), p)).unzip();
                    let results = runner.run(prepared)?;
                    for ((i, key), e) in meta.into_iter().zip(results) {
                        if let Some(cache) = cache {
                            if let Err(err) = cache.put(&key, &e) {
                                // The features are still returned: a cache that cannot be written costs
                                // speed next time, not this run's work.
                                if !cache_warned {
                                    reporter.message(&format!(
                                "warning: cannot write the feature cache ({}); going on without it",
                                crate::error::chain(&err)
                            ));
                                    cache_warned = true;
                                }
                            }
                        }
                        embeddings[i] = Some(e);
                    }
                    Ok::<(), Error>(())
                };
            for (i, outcome) in rx {
                match outcome {
                    Outcome::Done(e) => {
                        embeddings[i] = Some(e);
                        cached += 1;
                        reporter.advance(1);
                    }
                    Outcome::Failed(reason) => {
                        skipped.push(Skipped {
                            path: paths[i].clone(),
                            reason,
                        });
                        reporter.advance(1);
                    }
                    Outcome::Ready(key, p) => {
                        batch.push((i, key, p));
                        if batch.len() == opts.batch {
                            let n = batch.len();
                            flush(&mut batch, &mut embeddings)?;
                            extracted += n;
                            reporter.advance(n as u64);
                        }
                    }
                }
            }
            let n = batch.len();
            flush(&mut batch, &mut embeddings)?;
            extracted += n;
            reporter.advance(n as u64);
            Ok(())
        });
        reporter.finish();
        if let Some(cache) = cache {
            // Saved even after a failure: what was hashed stays known. Losing it only costs re-hashing
            // next time, so a failure to save is a warning.
            if let Err(err) = cache.save_index() {
                reporter.message(&format!(
                    "warning: cannot save the cache's file index ({})",
                    crate::error::chain(&err)
                ));
            }
        }
        result?;
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        let seconds = start.elapsed().as_secs_f64();
        let report = ExtractReport {
            model: name.to_string(),
            random_weights,
            images: paths.len(),
            no_face: paths
                .iter()
                .zip(&embeddings)
                .filter(|(_, e)| e.as_ref().is_some_and(|e| e.is_empty()))
                .map(|(p, _)| p.clone())
                .collect(),
            extracted,
            cached,
            skipped,
            corrupt_recomputed: cache.map_or(0, |c| c.corrupt_entries()),
            backbone_runs: runner.images_run() - runs_before,
            seconds,
            images_per_s: if seconds > 0.0 {
                paths.len() as f64 / seconds
            } else {
                0.0
            },
            cache_dir: cache.map(|c| c.dir().to_path_buf()),
        };
        Ok(Extracted { embeddings, report })
    }
}

fn prepare_one(
    path: &std::path::Path,
    cache: Option<&FeatureCache>,
    preparer: &dyn Prepare,
) -> Outcome {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("cannot read: {e}"));
    let (key, bytes) = match cache {
        Some(cache) => match cache.key(path) {
            Ok(k) => {
                if let Some(e) = cache.get(&k.key) {
                    return Outcome::Done(e);
                }
                match k.bytes {
                    Some(b) => (k.key, b),
                    None => match read(path) {
                        Ok(b) => (k.key, b),
                        Err(e) => return Outcome::Failed(e),
                    },
                }
            }
            Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
        },
        None => match read(path) {
            Ok(b) => (String::new(), b),
            Err(e) => return Outcome::Failed(e),
        },
    };
    match preparer.prepare(&bytes) {
        Ok(p) => Outcome::Ready(key, p),
        Err(problem) => Outcome::Failed(problem.0),
    }
}
