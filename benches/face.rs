//! Face pipeline timings: each stage (letterbox, YuNet, alignment, SFace) and the whole pipeline
//! (decode on worker threads, then detect → align → embed), in images per second.
//!
//! `cargo bench --bench face` uses the photos of `scripts/fetch_test_images`
//! (`.qcyn/testdata/faces/`), or the images of a folder given as `QCYN_FACE_BENCH_DIR` (searched
//! recursively, e.g. a copy of a face dataset), and the models of `scripts/setup`. `THREADS` sets
//! ONNX Runtime's intra-op threads (default: all cores). Prints one JSON line per measurement.
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use qcyn::backbone::SessionOptions;
use qcyn::face::{detect, FaceEngine, FaceOptions};
use qcyn::models::Model;

fn images(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            images(&p, out);
        } else if p.extension().is_some_and(|e| {
            matches!(
                e.to_string_lossy().to_lowercase().as_str(),
                "jpg" | "jpeg" | "png" | "pgm" | "bmp" | "webp"
            )
        }) {
            out.push(p);
        }
    }
}

fn per_s(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("QCYN_FACE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project.join(".qcyn/testdata/faces"));
    let mut paths = Vec::new();
    images(&dir, &mut paths);
    let lib = qcyn::runtime::locate_dylib(None)?;
    if paths.is_empty() || !project.join("models/onnx/yunet.onnx").is_file() {
        eprintln!("face bench: no images in {} or no models (run scripts/setup and scripts/fetch_test_images)", dir.display());
        return Ok(());
    }
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let env = ort::init_from(lib)?.with_name("qcyn-bench").build()?;
    let model = Model::load(&project.join("models/face.toml"))?;
    let session = SessionOptions {
        threads,
        ..Default::default()
    };

    // Whole pipeline, as `qcyn extract` runs it (two decoding workers, no cache). The first pass
    // opens the sessions and warms up.
    let mut pipeline = qcyn::face::pipeline(&env, &model, session)?;
    let opts = qcyn::extract::ExtractOptions {
        batch: Some(16),
        workers: 2,
    };
    qcyn::extract::extract(
        &mut pipeline,
        None,
        &paths[..paths.len().min(4)],
        opts,
        &qcyn::progress::NoProgress,
    )?;
    let ex = qcyn::extract::extract(
        &mut pipeline,
        None,
        &paths,
        opts,
        &qcyn::progress::NoProgress,
    )?;
    let faces: usize = ex.embeddings.iter().flatten().map(Vec::len).sum();
    println!(
        "{{\"bench\":\"face_pipeline\",\"images\":{},\"faces\":{faces},\"seconds\":{:.3},\"images_per_s\":{:.2},\"ort_threads\":{threads}}}",
        paths.len(),
        ex.report.seconds,
        ex.report.images_per_s
    );

    // Stages, on decoded images.
    let decoded: Vec<image::RgbImage> = paths
        .iter()
        .filter_map(|p| qcyn::preprocess::decode_rgb(&std::fs::read(p).ok()?).ok())
        .collect();
    let mut engine = FaceEngine::open(&env, &model, session, FaceOptions::default())?;
    let fm = engine.model().clone();
    let mut resizer = fast_image_resize::Resizer::new();
    let mut buf = Vec::new();
    let t = Instant::now();
    for img in &decoded {
        black_box(detect::letterbox(
            img,
            fm.detector.size,
            32,
            fm.detector.colour,
            fm.detector.scale,
            &mut resizer,
            &mut buf,
        )?);
    }
    let letterbox_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut dets = Vec::new();
    for img in &decoded {
        dets.push(engine.detect(img)?);
    }
    let detect_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut crops = Vec::new();
    for (img, d) in decoded.iter().zip(&dets) {
        crops.extend(d.faces.iter().filter_map(|f| engine.align(img, &f.face)));
    }
    let align_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..3 {
        for img in &decoded {
            black_box(engine.analyse(img)?);
        }
    }
    let analyse_s = t.elapsed().as_secs_f64() / 3.0;
    let n = decoded.len();
    let ms = |s: f64, k: usize| if k > 0 { 1000.0 * s / k as f64 } else { 0.0 };
    println!(
        "{{\"bench\":\"face_stages\",\"images\":{n},\"faces\":{},\"letterbox_ms\":{:.2},\"detect_ms\":{:.2},\"align_ms_per_face\":{:.3},\"embed_ms_per_face\":{:.2},\"analyse_images_per_s\":{:.2}}}",
        crops.len(),
        ms(letterbox_s, n),
        ms(detect_s, n),
        ms(align_s, crops.len()),
        ms(analyse_s - detect_s - align_s, crops.len()),
        per_s(n, analyse_s)
    );
    Ok(())
}
