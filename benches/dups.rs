//! Near-duplicate evidence per image, for `benches/dups.sh` to measure thresholds on: for every
//! image of the folder-per-class datasets given, one JSON line with its path, class, content key,
//! perceptual hashes and (unit-length) feature vector. Features come through a feature cache
//! (`QCYN_CACHE_DIR`, default a temporary folder), as `qcyn dups` gets them; the content keys and
//! perceptual hashes are then timed on their own (the cost beyond cached features), and so is
//! comparing every pair ([`qcyn::dups::group`]), printed as a last `{"cost": …}` line.
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
        let hashes: Vec<_> = paths
            .par_iter()
            .map(|p| {
                std::fs::read(p)
                    .ok()
                    .and_then(|b| qcyn::dups::hash_bytes(&b))
            })
            .collect();
        hash_s += start.elapsed().as_secs_f64();
        let features: Vec<Option<Vec<f32>>> = out
            .embeddings
            .into_iter()
            .map(|e| e.and_then(|e| e.into_iter().next()).map(|e| e.vector))
            .collect();
        let ev = Evidences {
            keys: keys.clone(),
            hashes: hashes.clone(),
            features: features.clone(),
        };
        let start = Instant::now();
        let opts = DupsOptions {
            max_hash_distance: qcyn::dups::DEFAULT_MAX_HASH_DISTANCE,
            min_cosine: Some(0.9),
        };
        std::hint::black_box(qcyn::dups::group(&ev, &opts));
        compare_s += start.elapsed().as_secs_f64();
        total_images += paths.len();
        for (i, s) in data.samples.iter().enumerate() {
            let unit = features[i].as_ref().map(|v| {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter().map(|x| x / n).collect::<Vec<f32>>()
            });
            println!(
                "{}",
                serde_json::json!({
                    "data": dir,
                    "path": s.path,
                    "class": data.classes[s.class],
                    "key": keys[i],
                    "hash": hashes[i].map(|h| h.plain.to_string()),
                    "mirrored": hashes[i].map(|h| h.mirrored.to_string()),
                    "feature": unit,
                })
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({"cost": {
            "images": total_images,
            "hash_ms_per_image": hash_s * 1000.0 / total_images.max(1) as f64,
            "compare_ms_per_image": compare_s * 1000.0 / total_images.max(1) as f64,
            "threads": rayon::current_num_threads(),
            "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        }})
    );
}
