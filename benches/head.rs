//! Softmax head benchmarks on deterministic synthetic features shaped like the case:
//! 1,000 images, 1280-D (MobileNetV2 pooled features), 40 classes.
//!
//! `cargo bench --bench head` runs criterion on: the cross-validated fit (5 folds × 5 strengths,
//! then the refit), a single fit at one strength, and `predict_proba` for one image and for 1,000.
//! It also writes the features to `target/head_bench/` (`features.f32`: little-endian f32,
//! row-major n × d; `labels.u32`; `meta.json`) so that `benches/sklearn_baseline.py` times
//! scikit-learn on the very same numbers.
//!
//! `cargo bench --bench head -- --quick` skips criterion: one timed run of each, printed, plus the
//! cross-validation report (what the comparison with scikit-learn uses). Environment knobs for
//! that mode: `TOL` (gradient tolerance, default the head's), `GRID` (comma-separated L2
//! strengths), `SEP` (spread of the class means, default 0.4: about 90% cross-validated accuracy).
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::Criterion;
use linfa::traits::Fit;
use linfa::DatasetBase;
use ndarray::{Array1, Array2};
use qcyn::head::{HeadFit, SoftmaxParams, DEFAULT_L2_GRID};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 1000;
const D: usize = 1280;
const K: usize = 40;
const SEED: u64 = 42;
/// Rank of the shared nuisance variation.
const R: usize = 32;
/// Spread of the class means (sets how hard the problem is).
const SEP: f32 = 0.4;

/// Post-ReLU features around a mean per class, with correlated nuisance variation shared by all
/// classes (as real backbone features have): x = max(0, μ_c + U z + ε), μ_c ~ N(0, SEP²) per
/// feature, U (d × 32) ~ N(0, 0.3²), z ~ N(0, I), ε ~ N(0, 1); 25 images per class.
fn features() -> (Array2<f32>, Array1<usize>) {
    let sep: f32 = std::env::var("SEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEP);
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut normal = move || {
        // Box–Muller.
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    };
    let means = Array2::from_shape_fn((K, D), |_| sep * normal());
    let u = Array2::from_shape_fn((D, R), |_| 0.3 * normal());
    let z = Array2::from_shape_fn((N, R), |_| normal());
    let shared = z.dot(&u.t());
    let y = Array1::from_shape_fn(N, |i| i % K);
    let x = Array2::from_shape_fn((N, D), |(i, j)| {
        (means[[y[i], j]] + shared[[i, j]] + normal()).max(0.0)
    });
    (x, y)
}

fn export(x: &Array2<f32>, y: &Array1<usize>) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/head_bench");
    std::fs::create_dir_all(&dir).expect("create target/head_bench");
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("features.f32"), bytes).expect("write features");
    let labels: Vec<u8> = y.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect();
    std::fs::write(dir.join("labels.u32"), labels).expect("write labels");
    let meta = serde_json::json!({
        "n": N, "d": D, "k": K, "seed": SEED, "folds": 5,
        "l2_grid": DEFAULT_L2_GRID,
        "C_grid": DEFAULT_L2_GRID.iter().map(|a| 1.0 / *a as f64).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("meta.json"),
        serde_json::to_string_pretty(&meta).unwrap(),
    )
    .expect("write meta");
    dir
}

fn tol() -> f32 {
    std::env::var("TOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(qcyn::head::DEFAULT_TOL)
}

fn grid() -> Vec<f32> {
    std::env::var("GRID")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|x| x.parse().expect("GRID: comma-separated numbers"))
                .collect()
        })
        .unwrap_or(DEFAULT_L2_GRID.to_vec())
}

fn cv_fit(ds: &DatasetBase<Array2<f32>, Array1<usize>>) -> HeadFit {
    SoftmaxParams::new()
        .folds(5)
        .l2_grid(grid())
        .tol(tol())
        .fit(ds)
        .expect("cv fit")
}

fn single_fit(ds: &DatasetBase<Array2<f32>, Array1<usize>>, l2: f32) -> HeadFit {
    SoftmaxParams::new()
        .l2(l2)
        .tol(tol())
        .fit(ds)
        .expect("single fit")
}

fn quick(ds: &DatasetBase<Array2<f32>, Array1<usize>>) {
    let t = Instant::now();
    let fit = cv_fit(ds);
    let cv_s = t.elapsed().as_secs_f64();
    let cv = fit.cv.as_ref().expect("cv report");
    println!(
        "cv_fit_s {cv_s:.3}  (5 folds x 5 strengths + refit, {} threads)",
        rayon::current_num_threads()
    );
    for p in &cv.grid {
        println!(
            "  l2 {:>8}  C {:>8.4}  cv log loss {:.4}  cv accuracy {:.4}  iterations {:>5}  converged {}",
            p.l2,
            1.0 / p.l2,
            p.log_loss,
            p.accuracy,
            p.iterations,
            p.converged
        );
    }
    println!(
        "  chosen l2 {} (C {}); refit {:?}",
        cv.chosen_l2,
        1.0 / cv.chosen_l2,
        fit.refit
    );
    let l2 = cv.chosen_l2;
    let t = Instant::now();
    let single = single_fit(ds, l2);
    println!(
        "single_fit_s {:.3}  (l2 {l2}, from zero) {:?}",
        t.elapsed().as_secs_f64(),
        single.refit
    );
    let x = ds.records();
    let one = x.slice(ndarray::s![0..1, ..]);
    let reps = 2000;
    let t = Instant::now();
    for _ in 0..reps {
        black_box(single.head.predict_proba(black_box(one)));
    }
    println!(
        "predict_proba_one_us {:.1}",
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    );
    let t = Instant::now();
    black_box(single.head.predict_proba(x.view()));
    println!(
        "predict_proba_1000_us_per_image {:.2}",
        t.elapsed().as_secs_f64() / N as f64 * 1e6
    );
    let train_acc = {
        let p = fit.head.predict_proba(x.view());
        let y = ds.targets();
        p.rows()
            .into_iter()
            .zip(y)
            .filter(|(r, &t)| r.iter().enumerate().all(|(j, v)| *v <= r[t] || j == t))
            .count() as f64
            / N as f64
    };
    println!("training accuracy of the cv-chosen head {train_acc:.4}");
}

fn main() {
    let (x, y) = features();
    let dir = export(&x, &y);
    eprintln!("features written to {}", dir.display());
    let ds = DatasetBase::new(x, y);
    if std::env::args().any(|a| a == "--quick") {
        quick(&ds);
        return;
    }
    let chosen = cv_fit(&ds).cv.expect("cv report").chosen_l2;
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("head");
    g.sample_size(10);
    g.bench_function("cv_fit_5folds_5strengths", |b| {
        b.iter(|| cv_fit(black_box(&ds)))
    });
    g.bench_function("single_fit", |b| {
        b.iter(|| single_fit(black_box(&ds), chosen))
    });
    g.finish();
    let head = single_fit(&ds, chosen).head;
    let one = ds.records().slice(ndarray::s![0..1, ..]).to_owned();
    c.bench_function("predict_proba_1_image", |b| {
        b.iter(|| head.predict_proba(black_box(one.view())))
    });
    c.bench_function("predict_proba_1000_images", |b| {
        b.iter(|| head.predict_proba(black_box(ds.records().view())))
    });
    c.final_summary();
}
