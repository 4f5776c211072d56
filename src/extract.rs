//! Extract: scan results → preprocess → backbone → cache, with decoding overlapped with inference.
//!
//! On a CPU, each worker thread owns a single-threaded session of the backbone (a "lane": see
//! [`crate::pipeline::Run::replicate`]) and reads, hashes, decodes and runs its own images, one at
//! a time by default; where the backbone cannot be replicated (face models, GPU sessions), the
//! workers read, hash and decode while the calling thread runs the one session on full batches.
//! Either way the calling thread writes every finished batch to the cache at once, so an
//! interrupted run loses at most the batches in flight. A cached image is never decoded, and when
//! everything is cached the model is not even loaded.
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

/// Images per run of one session that several cores share (and of a GPU or face session).
pub const SESSION_BATCH: usize = 32;
/// Images per run of each single-threaded session when every core runs its own ("lanes"):
/// one at a time measured fastest for every backbone here (mobilenetv2 187 images/s at batch 1
/// against 176 at 4 and 173 at 8 on one thread; xception 9.5 against 9.2 at 4).
pub const LANE_BATCH: usize = 1;

/// How to extract.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Images per backbone run (`None`: [`LANE_BATCH`] for one session per core,
    /// [`SESSION_BATCH`] otherwise).
    pub batch: Option<usize>,
    /// Threads that read and decode images; on a CPU also the sessions, one each, when the
    /// backbone can be replicated.
    pub workers: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            batch: None,
            workers: 2,
        }
    }
}

impl ExtractOptions {
    /// The batch size: the one asked for, else the default for the way the sessions run.
    pub fn batch_for(&self, lanes: bool) -> usize {
        self.batch
            .unwrap_or(if lanes { LANE_BATCH } else { SESSION_BATCH })
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
    /// Backbone sessions that ran side by side: one per thread on a CPU, else 1 (0 when nothing
    /// needed the backbone).
    pub sessions: usize,
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
    if opts.batch == Some(0) {
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
        sessions: parts.iter().map(|p| p.report.sessions).max().unwrap_or(0),
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
        // On a CPU, one single-threaded session per worker, each decoding and running its own
        // images ("lanes"), when the runner can be replicated; otherwise the workers decode and
        // this thread runs the one session on full batches.
        let lanes: Option<Vec<Box<dyn Run + Send>>> = (workers > 1)
            .then(|| (0..workers).map(|_| runner.replicate(1)).collect())
            .flatten();
        let batch_size = opts.batch_for(lanes.is_some());
        let sessions = lanes.as_ref().map_or(1, Vec::len);
        let result: Result<()> = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Msg>(batch_size.max(workers) * 2);
            let next = &next;
            match lanes {
                Some(lanes) => {
                    for mut lane in lanes {
                        let tx = tx.clone();
                        let preparer = &preparer;
                        scope.spawn(move || {
                            let claim = || {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                (i < paths.len()).then_some(i)
                            };
                            run_lane(
                                lane.as_mut(),
                                &claim,
                                paths,
                                cache,
                                preparer.as_ref(),
                                batch_size,
                                &tx,
                            )
                        });
                    }
                }
                None => {
                    for _ in 0..workers {
                        let tx = tx.clone();
                        let preparer = &preparer;
                        scope.spawn(move || loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= paths.len() {
                                break;
                            }
                            let outcome = prepare_one(&paths[i], cache, preparer.as_ref());
                            if tx.send(Msg::One(i, outcome)).is_err() {
                                break;
                            }
                        });
                    }
                }
            }
            drop(tx);
            let mut batch: Vec<(usize, String, Prepared)> = Vec::with_capacity(batch_size);
            let mut cache_warned = false;
            // A batch's features: written to the cache at once, then kept.
            let mut keep =
                |items: Vec<(usize, String, Vec<Embedding>)>,
                 embeddings: &mut Vec<Option<Vec<Embedding>>>| {
                    let n = items.len();
                    for (i, key, e) in items {
                        if let Some(cache) = cache {
                            if let Err(err) = cache.put(&key, &e) {
                                // The features are still returned: a cache that cannot be written
                                // costs speed next time, not this run's work.
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
                    extracted += n;
                    reporter.advance(n as u64);
                };
            for msg in rx {
                match msg {
                    Msg::One(i, Outcome::Done(e)) => {
                        embeddings[i] = Some(e);
                        cached += 1;
                        reporter.advance(1);
                    }
                    Msg::One(i, Outcome::Failed(reason)) => {
                        skipped.push(Skipped {
                            path: paths[i].clone(),
                            reason,
                        });
                        reporter.advance(1);
                    }
                    Msg::One(i, Outcome::Ready(key, p)) => {
                        batch.push((i, key, p));
                        if batch.len() == batch_size {
                            keep(run_batch(runner, &mut batch)?, &mut embeddings);
                        }
                    }
                    Msg::Ran(items) => keep(items?, &mut embeddings),
                }
            }
            if !batch.is_empty() {
                keep(run_batch(runner, &mut batch)?, &mut embeddings);
            }
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
            sessions: if extracted > 0 { sessions } else { 0 },
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

/// What the worker threads send to the thread that keeps the results.
enum Msg {
    /// One image: cached, failed, or prepared for this thread's session.
    One(usize, Outcome),
    /// A lane's batch, run through its own session: index, cache key and features per image.
    Ran(Result<Vec<(usize, String, Vec<Embedding>)>>),
}

/// Runs `batch` (emptied) through `runner`: index, cache key and features per image.
fn run_batch(
    runner: &mut dyn Run,
    batch: &mut Vec<(usize, String, Prepared)>,
) -> Result<Vec<(usize, String, Vec<Embedding>)>> {
    let (meta, prepared): (Vec<(usize, String)>, Vec<Prepared>) = std::mem::take(batch)
        .into_iter()
        .map(|(i, k, p)| ((i, k), p))
        .unzip();
    let results = runner.run(prepared)?;
    Ok(meta
        .into_iter()
        .zip(results)
        .map(|((i, k), e)| (i, k, e))
        .collect())
}

/// One lane: claims images one at a time, prepares each, and runs its own session on every
/// `batch` of them; stops when no image is left, a batch fails, or the receiver is gone.
fn run_lane(
    lane: &mut dyn Run,
    claim: &dyn Fn() -> Option<usize>,
    paths: &[PathBuf],
    cache: Option<&FeatureCache>,
    preparer: &dyn Prepare,
    batch_size: usize,
    tx: &mpsc::SyncSender<Msg>,
) {
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        let next = claim();
        if let Some(i) = next {
            match prepare_one(&paths[i], cache, preparer) {
                Outcome::Ready(key, p) => batch.push((i, key, p)),
                other => {
                    if tx.send(Msg::One(i, other)).is_err() {
                        return;
                    }
                }
            }
        }
        if batch.len() == batch_size || (next.is_none() && !batch.is_empty()) {
            let ran = run_batch(lane, &mut batch);
            let failed = ran.is_err();
            if tx.send(Msg::Ran(ran)).is_err() || failed {
                return;
            }
        }
        if next.is_none() {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::ImageProblem;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// Bytes → one value, their length; "bad" is an image that cannot be decoded.
    struct LenPreparer;

    impl Prepare for LenPreparer {
        fn prepare(&self, bytes: &[u8]) -> std::result::Result<Prepared, ImageProblem> {
            if bytes == b"bad" {
                return Err(ImageProblem("cannot decode".into()));
            }
            Ok(Prepared::Tensor(vec![bytes.len() as f32]))
        }
    }

    /// A backbone whose feature is twice the input; records which runner ran each batch and
    /// how large it was; fails on an input of length `fail_on`.
    struct Doubler {
        id: usize,
        replicas: Arc<AtomicUsize>,
        images: Arc<AtomicU64>,
        seen: Arc<Mutex<Vec<(usize, usize)>>>,
        fail_on: Option<f32>,
        replicable: bool,
    }

    impl Run for Doubler {
        fn run(&mut self, batch: Vec<Prepared>) -> Result<Vec<Vec<Embedding>>> {
            self.seen.lock().unwrap().push((self.id, batch.len()));
            let mut out = Vec::new();
            for p in batch {
                let Prepared::Tensor(t) = p else {
                    unreachable!()
                };
                if Some(t[0]) == self.fail_on {
                    return Err(Error::config("the backbone failed", None));
                }
                out.push(vec![Embedding {
                    vector: vec![2.0 * t[0]],
                    face: None,
                }]);
            }
            self.images.fetch_add(out.len() as u64, Ordering::Relaxed);
            Ok(out)
        }
        fn images_run(&self) -> u64 {
            self.images.load(Ordering::Relaxed)
        }
        fn replicate(&self, _threads: usize) -> Option<Box<dyn Run + Send>> {
            self.replicable.then(|| {
                let id = self.replicas.fetch_add(1, Ordering::Relaxed) + 1;
                Box::new(Doubler {
                    id,
                    replicas: Arc::clone(&self.replicas),
                    images: Arc::clone(&self.images),
                    seen: Arc::clone(&self.seen),
                    fail_on: self.fail_on,
                    replicable: true,
                }) as Box<dyn Run + Send>
            })
        }
    }

    fn doubler(fail_on: Option<f32>, replicable: bool) -> Doubler {
        Doubler {
            id: 0,
            replicas: Arc::new(AtomicUsize::new(0)),
            images: Arc::new(AtomicU64::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            fail_on,
            replicable,
        }
    }

    /// Files whose lengths are 1..=n, with "bad" as the fifth.
    fn files(dir: &std::path::Path, n: usize) -> Vec<PathBuf> {
        (1..=n)
            .map(|k| {
                let p = dir.join(format!("{k:03}.img"));
                let bytes = if k == 5 {
                    b"bad".to_vec()
                } else {
                    vec![7u8; k]
                };
                std::fs::write(&p, bytes).unwrap();
                p
            })
            .collect()
    }

    fn run_extract(
        runner: &mut Doubler,
        paths: &[PathBuf],
        opts: ExtractOptions,
    ) -> Result<Extracted> {
        let preparer: Arc<dyn Prepare> = Arc::new(LenPreparer);
        Extractor {
            name: "doubler",
            random_weights: false,
            preparer: &preparer,
            runner,
        }
        .extract(None, paths, opts, &crate::progress::NoProgress)
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qcyn-extract-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Two lanes, each its own runner, run every image once; the results are in the input's
    /// order, the undecodable image is listed, and the count of images run covers both lanes.
    #[test]
    fn lanes_run_every_image_once_on_replicas_in_order() {
        let dir = temp("lanes");
        let paths = files(&dir, 40);
        for (batch, size) in [(None, LANE_BATCH), (Some(3), 3)] {
            let mut runner = doubler(None, true);
            let out =
                run_extract(&mut runner, &paths, ExtractOptions { batch, workers: 2 }).unwrap();
            for (k, e) in out.embeddings.iter().enumerate() {
                if k == 4 {
                    assert!(e.is_none());
                } else {
                    assert_eq!(e.as_ref().unwrap()[0].vector, vec![2.0 * (k + 1) as f32]);
                }
            }
            assert_eq!(out.report.skipped.len(), 1);
            assert_eq!(out.report.skipped[0].path, paths[4]);
            assert_eq!((out.report.extracted, out.report.backbone_runs), (39, 39));
            assert_eq!(out.report.sessions, 2);
            let seen = runner.seen.lock().unwrap();
            let ids: HashSet<usize> = seen.iter().map(|s| s.0).collect();
            assert!(
                !ids.contains(&0),
                "the calling thread's runner is not used: {seen:?}"
            );
            assert_eq!(runner.replicas.load(Ordering::Relaxed), 2);
            assert!(seen.iter().all(|s| s.1 <= size), "{seen:?}");
            assert_eq!(seen.iter().map(|s| s.1).sum::<usize>(), 39);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A runner that cannot be replicated (face models, GPU) runs full batches on the calling
    /// thread, at the session batch by default.
    #[test]
    fn without_replicas_one_runner_takes_full_batches() {
        let dir = temp("one");
        let paths = files(&dir, 40);
        let mut runner = doubler(None, false);
        let out = run_extract(
            &mut runner,
            &paths,
            ExtractOptions {
                batch: None,
                workers: 2,
            },
        )
        .unwrap();
        assert_eq!((out.report.backbone_runs, out.report.sessions), (39, 1));
        let seen = runner.seen.lock().unwrap();
        assert_eq!(seen.first(), Some(&(0, SESSION_BATCH)), "{seen:?}");
        assert!(seen.iter().all(|s| s.0 == 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A lane whose backbone fails ends the extraction with that error, without hanging.
    #[test]
    fn a_failing_lane_is_an_error() {
        let dir = temp("fail");
        let paths = files(&dir, 40);
        let mut runner = doubler(Some(17.0), true);
        let err = run_extract(
            &mut runner,
            &paths,
            ExtractOptions {
                batch: None,
                workers: 2,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("the backbone failed"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
