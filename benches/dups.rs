//! Near-duplicate evidence, for `benches/dups.sh` to measure thresholds on: for every image of the
//! folder-per-class datasets given, one JSON line `{"image": …}` with its path and class; then one
//! line `{"pair": …}` per candidate pair under loose thresholds (perceptual-hash distance
//! `DUPS_LOOSE_HASH`, default 24; feature cosine `DUPS_LOOSE_COSINE`, default 0.6; the 10 nearest
//! per image) with its hash distance, cosine and the NCC of its aligned pixels, so that any
//! stricter rule can be replayed. Features come through a feature cache (`QCYN_CACHE_DIR`, default
//! a temporary folder), as `qcyn dups` gets them; the content keys, perceptual hashes and
//! thumbnails are then timed on their own (the cost beyond cached features), and so is the
//! default rule ([`qcyn::dups::group`] with the model's defaults), printed as a last
//! `{"cost": …}` line.
//!
//!   cargo bench --profile dev --bench dups -- MODEL DATA...
use std::path::PathBuf;
use std::time::Instant;

use qcyn::backbone::SessionOptions;
use qcyn::cache::FeatureCache;
use qcyn::dups::{DupsOptions, Evidences};
use qcyn::extract::{extract, ExtractOptions};
use qcyn::models::Registry;
use qcyn::pipeline::Pipeline;
use qcyn::progress::NoProgress;
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (model_name, dirs) = args.split_first().expect("usage: dups MODEL DATA...");
    let registry = Registry::load(&qcyn::runtime::default_models_dir()).expect("models");
    let model = registry.get(model_name).expect("model");
    let lib = qcyn::runtime::locate_dylib(None).expect("ONNX Runtime");
    let env = ort::init_from(lib)
        .expect("load ONNX Runtime")
        .with_name("qcyn-bench")
        .build()
        .expect("environment");
    let mut pipeline = Pipeline::open(&env, &model, SessionOptions::default()).expect("pipeline");
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = std::env::var_os("QCYN_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let id = pipeline.identity.clone();
    let cache = FeatureCache::open(&root, &id.model, &id.sha256, &id.preprocess_id).expect("cache");
    let defaults = DupsOptions::for_model(&model);
    let env_or = |name: &str, default: f32| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<f32>().ok())
            .unwrap_or(default)
    };
    let loose = DupsOptions {
        max_hash_distance: env_or("DUPS_LOOSE_HASH", 24.0) as u32,
        min_cosine: defaults
            .min_cosine
            .map(|_| env_or("DUPS_LOOSE_COSINE", 0.6)),
        min_ncc: -1.0,
        min_detail: -1.0,
        neighbours: qcyn::dups::DEFAULT_NEIGHBOURS,
    };
    let mut total_images = 0usize;
    let (mut hash_s, mut compare_s) = (0.0, 0.0);
    for dir in dirs {
        let data = qcyn::dataset::scan(std::path::Path::new(dir)).expect("dataset");
        let paths: Vec<PathBuf> = data.samples.iter().map(|s| s.path.clone()).collect();
        let out = extract(
            &mut pipeline,
            Some(&cache),
            &paths,
            ExtractOptions::default(),
            &NoProgress,
        )
        .expect("extract");
        let start = Instant::now();
        // Timed as a first run pays it: every file read and hashed (later runs of `qcyn dups`
        // skip the sha256 of unchanged files, not the perceptual hash).
        let keys: Vec<Option<String>> = paths
            .par_iter()
            .map(|p| qcyn::cache::content_key(p).ok())
            .collect();
        let looks: Vec<_> = paths
            .par_iter()
            .map(|p| {
                std::fs::read(p)
                    .ok()
                    .and_then(|b| qcyn::dups::look(&b).ok())
            })
            .collect();
        let hashes: Vec<_> = looks.iter().map(|l| l.as_ref().and_then(|l| l.0)).collect();
        let thumbs: Vec<_> = looks.into_iter().map(|l| l.map(|l| l.1)).collect();
        hash_s += start.elapsed().as_secs_f64();
        let features: Vec<Option<Vec<f32>>> = out
            .embeddings
            .into_iter()
            .map(|e| e.and_then(|e| e.into_iter().next()).map(|e| e.vector))
            .collect();
        let ev = Evidences {
            keys,
            hashes,
            features,
            thumbs,
        };
        let start = Instant::now();
        std::hint::black_box(qcyn::dups::group(&ev, &defaults));
        compare_s += start.elapsed().as_secs_f64();
        total_images += paths.len();
        let (_, candidates) = qcyn::dups::group(&ev, &loose);
        for s in &data.samples {
            println!(
                "{}",
                serde_json::json!({"image": {"data": dir, "path": s.path, "class": data.classes[s.class]}})
            );
        }
        for p in candidates {
            println!(
                "{}",
                serde_json::json!({"pair": {
                    "data": dir,
                    "a": data.samples[p.a].path,
                    "b": data.samples[p.b].path,
                    "by": p.by,
                    "hash_distance": p.hash_distance,
                    "cosine": p.cosine,
                    "ncc": p.ncc,
                    "detail": p.alignment.map(|al| al.detail_ncc),
                }})
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({"cost": {
            "images": total_images,
            "hash_ms_per_image": hash_s * 1000.0 / total_images.max(1) as f64,
            "rule_ms_per_image": compare_s * 1000.0 / total_images.max(1) as f64,
            "threads": rayon::current_num_threads(),
            "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        }})
    );
}
