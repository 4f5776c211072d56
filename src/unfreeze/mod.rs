//! The unfrozen path (`qcyn fit --unfreeze N`): fine-tune a backbone's last block(s) on cached
//! feature maps, in pure Rust, and hand `fit` a trained tail graph.
//!
//! ```text
//! prefix graph (frozen, ONNX Runtime) ─▶ maps cache (f16, photo + mirror image)
//!   ─▶ train tail + head (net, train: AdamW, L2-SP, early stopping, checkpoints)
//!   ─▶ weights written into the tail graph (graph) ─▶ features of every image through
//!      ONNX Runtime's run of that graph, cached ─▶ `fit` as for any model (views::tail_pipeline)
//! ```
//!
//! ONNX Runtime's training API is out of reach (Python-only, 1.19), so the tail's forward and
//! backward passes are written here ([`net`]); ONNX Runtime runs the trained graph for prediction,
//! and [`UnfreezeReport::ort_max_abs_diff`] says how closely the two agree.
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use ort::environment::Environment;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backbone::SessionOptions;
use crate::cache::FeatureCache;
use crate::error::{Error, Result};
use crate::extract::{extract, ExtractOptions};
use crate::features::Embedding;
use crate::head::SoftmaxValidParams;
use crate::models::{Model, TailSpec};
use crate::progress::Reporter;

pub mod graph;
pub mod net;
pub mod train;
pub mod views;

pub use train::{TrainOptions, TrainOutcome};
pub use views::{tail_pipeline, TrainedTail};

/// File name of the checkpoint in the bundle folder (removed when training ends).
pub const CHECKPOINT_FILE: &str = "unfreeze-checkpoint.bin";

/// What `--unfreeze` asks for.
#[derive(Debug, Clone)]
pub struct UnfreezeOptions {
    /// How many of the last blocks to train.
    pub blocks: usize,
    /// Training settings.
    pub train: TrainOptions,
    /// Continue from the checkpoint in the bundle folder.
    pub resume: bool,
}

/// The labelled images to fine-tune on.
#[derive(Debug)]
pub struct Images<'a> {
    /// Training images, then validation images (validation ones are only embedded, never trained
    /// on, so that `fit` scores them as unseen).
    pub paths: &'a [PathBuf],
    /// How many of `paths` are training images.
    pub n_train: usize,
    /// Class of each image (training, then validation).
    pub labels: &'a [usize],
    /// Near-duplicate unit of each training image.
    pub units: &'a [usize],
}

/// What fine-tuning did, for the fit report.
#[derive(Debug, Clone, Serialize)]
pub struct UnfreezeReport {
    /// Blocks trained.
    pub blocks: usize,
    /// The training run.
    #[serde(flatten)]
    pub outcome: TrainOutcome,
    /// The settings.
    pub options: TrainOptions,
    /// Images run through the frozen prefix in this run (0 when every map was cached).
    pub map_backbone_runs: u64,
    /// Bytes of one image's cached maps (both views, float16).
    pub map_cache_bytes_per_image: usize,
    /// Accuracy on the validation part of the frozen backbone's head (the starting head, on the
    /// pretrained tail's features) on the same split: what `--unfreeze` is compared with.
    pub frozen_held_out_accuracy: Option<f64>,
    /// Largest difference between the tail's features in Rust and ONNX Runtime's run of the
    /// written graph, over the first training images.
    pub ort_max_abs_diff: f32,
    /// The trained tail file.
    pub tail_file: PathBuf,
}

/// The result: the trained tail (for the bundle) and the report.
#[derive(Debug)]
pub struct Unfrozen {
    /// The tail, as the bundle records it.
    pub tail: TrainedTail,
    /// The report.
    pub report: UnfreezeReport,
}

/// Fine-tunes `model`'s last `opts.blocks` block(s) on `images` and writes the trained tail into
/// `bundle_dir`; then embeds every image through it (ONNX Runtime) into `cache_root`'s cache of
/// [`views::tail_identity`], so `fit` with [`tail_pipeline`] runs no backbone.
#[allow(clippy::too_many_arguments)]
pub fn unfreeze(
    env: &Environment,
    model: &Model,
    spec: &TailSpec,
    cache_root: &Path,
    images: &Images<'_>,
    params: &SoftmaxValidParams,
    opts: &UnfreezeOptions,
    session: SessionOptions,
    extract_opts: ExtractOptions,
    bundle_dir: &Path,
    reporter: &dyn Reporter,
) -> Result<Unfrozen> {
    opts.train.check()?;
    let graph = tail_graph(model, spec)?;
    // 1. The maps of every image (both views), through their own float16 cache.
    let Maps {
        maps: rounded,
        cache: maps_cache,
        backbone_runs: map_backbone_runs,
        identity: id,
    } = maps(
        env,
        model,
        spec,
        cache_root,
        images.paths,
        session,
        extract_opts,
        reporter,
    )?;
    let map_of = |k: usize| rounded[k].as_deref();
    let rows: Vec<usize> = (0..images.n_train)
        .filter(|&k| map_of(k).is_some())
        .collect();
    let maps: Vec<&[f32]> = rows
        .iter()
        .map(|&k| map_of(k).expect("kept above"))
        .collect();
    let labels: Vec<usize> = rows.iter().map(|&k| images.labels[k]).collect();
    let units: Vec<usize> = rows.iter().map(|&k| images.units[k]).collect();
    if maps.is_empty() {
        return Err(Error::config("no training image could be read", None));
    }

    // 2. The head starts as the frozen head on the pretrained tail's features (linear probe).
    let tail0 = graph.tail.clone();
    reporter.message("fitting the starting head on the pretrained tail's features");
    let (head0, probe) = probe_head(&tail0, &maps, &labels, &units, params)?;

    // The frozen backbone's head on the same split, for the comparison in the report.
    let val_rows: Vec<usize> = (images.n_train..images.paths.len())
        .filter(|&k| map_of(k).is_some())
        .collect();
    let frozen_held_out_accuracy = (!val_rows.is_empty()).then(|| {
        let val_maps: Vec<&[f32]> = val_rows
            .iter()
            .map(|&k| map_of(k).expect("kept above"))
            .collect();
        let p = probe.predict_proba(train::features(&tail0, &val_maps).view());
        let right = val_rows
            .iter()
            .enumerate()
            .filter(|&(j, &k)| {
                let row = p.row(j);
                (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])) == Some(images.labels[k])
            })
            .count();
        // Unreadable validation images count as wrong, as fit counts them.
        right as f64 / (images.paths.len() - images.n_train) as f64
    });

    // 3. Train.
    let fingerprint = fingerprint(
        &id.sha256,
        spec,
        &maps_cache.keys(&images.paths[..images.n_train]),
        &labels,
        &opts.train,
    );
    let checkpoint = bundle_dir.join(CHECKPOINT_FILE);
    std::fs::create_dir_all(bundle_dir)
        .map_err(|e| Error::io("cannot create bundle folder", bundle_dir, e))?;
    let set = train::TrainSet {
        maps: &maps,
        labels: &labels,
        units: &units,
    };
    let outcome = train::train(
        tail0,
        head0,
        &set,
        &opts.train,
        Some(&checkpoint),
        opts.resume,
        &fingerprint,
        reporter,
    )?;

    // 4. The trained weights, written into the tail graph, beside the bundle.
    let written = graph.write(&outcome.tail).map_err(|e| {
        Error::bad_file(
            model.resolve(&spec.tail),
            format!("cannot write the trained tail: {e}"),
            None,
        )
    })?;
    let sha = hex::encode(Sha256::digest(&written));
    let file = PathBuf::from(format!("tail{}-{}.onnx", spec.blocks, &sha[..12]));
    let out_path = bundle_dir.join(&file);
    crate::atomic::write_atomic(&out_path, &written)?;
    let trained = TrainedTail {
        blocks: spec.blocks,
        file: file.clone(),
        sha256: sha.clone(),
    };

    // 5. Every image's features through ONNX Runtime's run of the written graph, cached for fit.
    let tid = views::tail_identity(model, spec, &sha)?;
    let tail_cache = FeatureCache::open(cache_root, &tid.model, &tid.sha256, &tid.preprocess_id)?;
    let dim = model.manifest.whole().map_or(0, |w| w.output.dim);
    let output = model
        .manifest
        .whole()
        .map_or(String::new(), |w| w.output.features.clone());
    let mut ort_tail =
        views::TailSession::open(env, &out_path, spec.map_len(), dim, &output, session)?;
    let keys = maps_cache.keys(images.paths);
    let all: Vec<usize> = (0..images.paths.len())
        .filter(|&k| map_of(k).is_some() && keys[k].is_some())
        .collect();
    let mut diff = 0f32;
    for (c, chunk) in all.chunks(32).enumerate() {
        let mut buf = Vec::with_capacity(chunk.len() * spec.map_len());
        for &k in chunk {
            buf.extend_from_slice(&map_of(k).expect("kept above")[..spec.map_len()]);
        }
        let feats = ort_tail.run(&buf, chunk.len())?;
        if c == 0 {
            let views: Vec<&[f32]> = chunk
                .iter()
                .map(|&k| map_of(k).expect("kept above"))
                .collect();
            let rust = train::features(&outcome.tail, &views);
            diff = rust
                .iter()
                .zip(&feats)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
        }
        for (&k, f) in chunk.iter().zip(feats.chunks_exact(dim)) {
            let key = keys[k].as_ref().expect("kept above");
            tail_cache.put(
                key,
                &[Embedding {
                    vector: f.to_vec(),
                    face: None,
                }],
            )?;
        }
    }
    tail_cache.save_index()?;
    let _ = std::fs::remove_file(&checkpoint);
    Ok(Unfrozen {
        tail: trained,
        report: UnfreezeReport {
            blocks: spec.blocks,
            outcome,
            options: opts.train.clone(),
            map_backbone_runs,
            map_cache_bytes_per_image: 2 * 2 * spec.map_len(),
            frozen_held_out_accuracy,
            ort_max_abs_diff: diff,
            tail_file: out_path,
        },
    })
}

/// The tail graph of `spec`, checked against its pinned sha256 and read into layers.
pub fn tail_graph(model: &Model, spec: &TailSpec) -> Result<graph::TailGraph> {
    let tail_path = model.resolve(&spec.tail);
    crate::models::verify_file(
        &tail_path,
        Some(&spec.tail_sha256),
        &model.manifest_path,
        &format!("tail graph of `{}`", model.manifest.name),
    )?;
    let bytes = std::fs::read(&tail_path).map_err(|e| Error::io("cannot read", &tail_path, e))?;
    graph::TailGraph::read(bytes, spec.map).map_err(|e| {
        Error::bad_file(
            &tail_path,
            format!("cannot train this tail graph: {e}"),
            None,
        )
    })
}

/// Every image's two maps (photo and mirror image, concatenated), as the float16 cache holds
/// them; `None` for an image that could not be read.
#[derive(Debug)]
pub struct Maps {
    /// Per path, `2 · map_len` values rounded to float16 precision.
    pub maps: Vec<Option<Vec<f32>>>,
    /// The maps' cache (its keys name the images by content).
    pub cache: FeatureCache,
    /// Images that went through the prefix in this run.
    pub backbone_runs: u64,
    /// The maps' cache identity.
    pub identity: crate::pipeline::CacheIdentity,
}

/// The maps of `paths` through their float16 cache in `cache_root`.
#[allow(clippy::too_many_arguments)]
pub fn maps(
    env: &Environment,
    model: &Model,
    spec: &TailSpec,
    cache_root: &Path,
    paths: &[PathBuf],
    session: SessionOptions,
    extract_opts: ExtractOptions,
    reporter: &dyn Reporter,
) -> Result<Maps> {
    let mut pipeline = views::mirrored(env, model, spec, session)?;
    let id = pipeline.identity.clone();
    let cache =
        FeatureCache::open(cache_root, &id.model, &id.sha256, &id.preprocess_id)?.with_half();
    reporter.message(&format!(
        "maps of the frozen prefix ({} values per view) through the cache",
        spec.map_len()
    ));
    // Each image is two inputs (photo and mirror image): half the batch keeps ONNX Runtime's
    // memory where a plain extract has it.
    let opts = ExtractOptions {
        batch: Some((extract_opts.batch.unwrap_or(crate::extract::SESSION_BATCH) / 2).max(1)),
        ..extract_opts
    };
    let extracted = extract(&mut pipeline, Some(&cache), paths, opts, reporter)?;
    // Maps as the cache holds them (float16), so a first run trains on exactly what a second
    // run reads back: the same weights for a seed, whatever was cached. Rounded in place: the
    // maps are the largest thing held (2 · 4 bytes · map size per image).
    let maps = extracted
        .embeddings
        .into_iter()
        .map(|e| {
            e.and_then(|e| e.into_iter().next()).map(|e| {
                let mut v = e.vector;
                for x in &mut v {
                    *x = half::f16::from_f32(*x).to_f32();
                }
                v
            })
        })
        .collect();
    Ok(Maps {
        maps,
        cache,
        backbone_runs: extracted.report.backbone_runs,
        identity: id,
    })
}

/// The starting head of fine-tuning: the frozen head (L2 by cross-validation) fitted on the
/// pretrained tail's features of `maps` (first view), as trainable and as fitted.
pub fn probe_head(
    tail: &net::Tail,
    maps: &[&[f32]],
    labels: &[usize],
    units: &[usize],
    params: &SoftmaxValidParams,
) -> Result<(net::Head, crate::head::SoftmaxHead)> {
    let x0 = train::features(tail, maps);
    let h = crate::head::fit_grouped(x0.view(), labels, Some(units), params)?.head;
    let head = net::Head {
        w: Array2::from_shape_vec((h.classes, h.dim), h.weights.clone()).expect("k × d weights"),
        b: Array1::from_vec(h.bias.clone()),
        mean: Array1::from_vec(h.mean.clone()),
        scale: Array1::from_vec(h.scale.clone()),
    };
    Ok((head, h))
}

/// What a checkpoint must have been written for: the maps, the images and labels, the options.
fn fingerprint(
    maps_sha: &str,
    spec: &TailSpec,
    keys: &[Option<String>],
    labels: &[usize],
    opts: &TrainOptions,
) -> String {
    let mut h = Sha256::new();
    h.update(maps_sha.as_bytes());
    h.update(spec.tail_sha256.as_bytes());
    for k in keys {
        h.update(k.as_deref().unwrap_or("-").as_bytes());
    }
    for l in labels {
        h.update(l.to_le_bytes());
    }
    h.update(serde_json::to_vec(opts).expect("serialisable options"));
    hex::encode(h.finalize())
}
