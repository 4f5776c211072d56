//! Bench: latency and throughput of the backbone alone, and of the whole read → decode →
//! preprocess → backbone path. Measuring ([`run`]) is separate from printing (the binary).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::models::ModelKind;
use crate::pipeline::{Pipeline, Prepared};
use crate::progress::Reporter;

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct BenchLimits {
    /// Batch sizes to measure.
    pub batches: Vec<usize>,
    /// Untimed runs before measuring, per batch size.
    pub warmup: usize,
    /// Least timed runs per batch size.
    pub min_iters: usize,
    /// Most timed runs per batch size.
    pub max_iters: usize,
    /// Stop adding runs to a batch size after this long (once `min_iters` are done).
    pub max_time: Duration,
}

impl Default for BenchLimits {
    fn default() -> Self {
        BenchLimits {
            batches: vec![1, 8, 32],
            warmup: 2,
            min_iters: 5,
            max_iters: 200,
            max_time: Duration::from_secs(5),
        }
    }
}

/// Figures for one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Images per run.
    pub batch: usize,
    /// Median latency of one run, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile latency of one run, milliseconds.
    pub p95_ms: f64,
    /// Images per second (batch / mean latency).
    pub images_per_s: f64,
    /// Timed runs.
    pub iterations: usize,
}

/// The `--images` through `extract`, once.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractFigure {
    /// Images that went through the backbone.
    pub images: usize,
    /// Backbone sessions side by side.
    pub sessions: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Images per second.
    pub images_per_s: f64,
}

impl ExtractFigure {
    /// The figure of an extraction's report.
    pub fn of(report: &crate::extract::ExtractReport) -> ExtractFigure {
        ExtractFigure {
            images: report.extracted,
            sessions: report.sessions,
            seconds: report.seconds,
            images_per_s: if report.seconds > 0.0 {
                report.extracted as f64 / report.seconds
            } else {
                0.0
            },
        }
    }
}

/// What `bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Model name.
    pub model: String,
    /// sha256 of the model file(s).
    pub sha256: String,
    /// True when the weights are random: the figures are latency only.
    pub random_weights: bool,
    /// Which graph ran: `fp32` or `int8`.
    pub precision: crate::models::Precision,
    /// Execution provider the session ran on.
    pub provider: String,
    /// Intra-op threads of the session (0 = ONNX Runtime's default).
    pub threads: usize,
    /// Backbone alone, on prepared inputs.
    pub results: Vec<BenchResult>,
    /// The whole path from files, when images were given.
    pub pipeline: Option<Vec<BenchResult>>,
    /// Where the pipeline images came from.
    pub images: Option<PathBuf>,
    /// The images once through `extract` as it runs (no cache; one session per thread on a
    /// CPU), sessions opened included: throughput rather than latency.
    pub extract: Option<ExtractFigure>,
    /// Notes for people (random weights, what was measured).
    pub notes: Vec<String>,
}

/// Measures `pipeline`. `images` (already read into memory, so disk speed is left out of the
/// backbone figures but not of the pipeline ones) enables the whole-path measurement.
pub fn run(
    pipeline: &mut Pipeline,
    images: &[PathBuf],
    limits: &BenchLimits,
    workers: usize,
    reporter: &dyn Reporter,
) -> Result<(Vec<BenchResult>, Option<Vec<BenchResult>>)> {
    if limits.batches.is_empty() || limits.batches.contains(&0) {
        return Err(Error::config(
            "--batch needs positive batch sizes, e.g. 1,8,32",
            None,
        ));
    }
    let whole = pipeline.model.manifest.whole();
    let is_face = pipeline.model.manifest.kind() == ModelKind::Face;
    // Prepared inputs for the backbone-only figures: real images when given, else random tensors.
    let mut pool: Vec<Arc<Prepared>> = Vec::new();
    if !images.is_empty() {
        for p in images.iter().take(64) {
            let bytes = std::fs::read(p).map_err(|e| Error::io("cannot read", p, e))?;
            if let Ok(prep) = pipeline.preparer.prepare(&bytes) {
                pool.push(Arc::new(prep));
            }
        }
        if pool.is_empty() {
            return Err(Error::config("none of the --images could be decoded", None));
        }
    } else if is_face {
        return Err(Error::config(
            "benchmarking a face model needs real photos",
            Some("pass --images DIR with a few photos of faces".into()),
        ));
    }
    // Random inputs: one tensor, or one per part of a fused model.
    let tensor_lens: Vec<usize> = match whole {
        Some(w) => vec![3 * w.input.height as usize * w.input.width as usize],
        None => pipeline
            .model
            .parts
            .iter()
            .filter_map(|p| p.manifest.whole())
            .map(|w| 3 * w.input.height as usize * w.input.width as usize)
            .collect(),
    };
    let random_tensor = |len: usize, rng: &mut rand_chacha::ChaCha8Rng| {
        Prepared::Tensor((0..len).map(|_| rng.gen_range(-2.0f32..2.0)).collect())
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let make_batch = |n: usize, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<Prepared> {
        (0..n)
            .map(|k| {
                if pool.is_empty() {
                    match tensor_lens.as_slice() {
                        [one] => random_tensor(*one, rng),
                        parts => {
                            Prepared::Parts(parts.iter().map(|&l| random_tensor(l, rng)).collect())
                        }
                    }
                } else {
                    pool[k % pool.len()].as_ref().clone()
                }
            })
            .collect()
    };
    let mut backbone = Vec::new();
    for &b in &limits.batches {
        reporter.message(&format!("backbone, batch {b}"));
        let template = make_batch(b, &mut rng);
        // Whole-image models: one input tensor laid out before timing, as Python's benchmark
        // does; face models: the runner on decoded images (detect, align, embed).
        let tensor: Vec<f32> = template
            .iter()
            .filter_map(|p| match p {
                Prepared::Tensor(t) => Some(t.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        let times = measure(limits, || {
            let batch = clone_batch(&template);
            let t = Instant::now();
            match pipeline.runner.run_tensor(&tensor, b) {
                Some(done) if !tensor.is_empty() => done?,
                _ => {
                    pipeline.runner.run(batch)?;
                }
            }
            Ok((t.elapsed(), b))
        })?;
        backbone.push(summarise(b, &times));
    }
    let whole = if images.is_empty() {
        None
    } else {
        let preparer = pipeline.preparer.clone();
        let mut out = Vec::new();
        for &b in &limits.batches {
            reporter.message(&format!("read → decode → preprocess → backbone, batch {b}"));
            let mut cursor = 0usize;
            let times = measure(limits, || {
                let files: Vec<&PathBuf> = (0..b)
                    .map(|k| &images[(cursor + k) % images.len()])
                    .collect();
                cursor += b;
                let t = Instant::now();
                let prepared = prepare_parallel(&files, preparer.as_ref(), workers)?;
                // Only images that decoded count towards images/s.
                let n = prepared.len();
                if n > 0 {
                    pipeline.runner.run(prepared)?;
                }
                Ok((t.elapsed(), n))
            })?;
            out.push(summarise(b, &times));
        }
        Some(out)
    };
    Ok((backbone, whole))
}

fn clone_batch(template: &[Prepared]) -> Vec<Prepared> {
    template.to_vec()
}

fn prepare_parallel(
    files: &[&PathBuf],
    preparer: &dyn crate::pipeline::Prepare,
    workers: usize,
) -> Result<Vec<Prepared>> {
    let chunk = files.len().div_ceil(workers.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|p| {
                            std::fs::read(p)
                                .ok()
                                .and_then(|b| preparer.prepare(&b).ok())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        Ok(handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker does not panic"))
            .collect())
    })
}

fn measure(
    limits: &BenchLimits,
    mut once: impl FnMut() -> Result<(Duration, usize)>,
) -> Result<Vec<(Duration, usize)>> {
    for _ in 0..limits.warmup {
        once()?;
    }
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < limits.max_iters
        && (times.len() < limits.min_iters || start.elapsed() < limits.max_time)
    {
        times.push(once()?);
    }
    Ok(times)
}

/// Latency percentiles of the runs, and images/s as the images run over the total time.
fn summarise(batch: usize, runs: &[(Duration, usize)]) -> BenchResult {
    let mut ms: Vec<f64> = runs.iter().map(|(t, _)| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let images: usize = runs.iter().map(|(_, n)| n).sum();
    let seconds: f64 = runs.iter().map(|(t, _)| t.as_secs_f64()).sum();
    BenchResult {
        batch,
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
        images_per_s: if seconds > 0.0 {
            images as f64 / seconds
        } else {
            0.0
        },
        iterations: ms.len(),
    }
}
