//! The pure-Rust core, no ONNX Runtime needed: split, list files, softmax head, evaluation,
//! bundle.
use std::path::{Path, PathBuf};

use linfa::prelude::*;
use ndarray::{Array1, Array2};
use qcyn::bundle::{Bundle, SplitSource, TrainingConfig};
use qcyn::dataset::{self, Dataset, Sample};
use qcyn::head::{self, ClassWeight, HeadError, SoftmaxParams};
use qcyn::metrics;
use qcyn::models::Model;
use qcyn::split::manifest::SplitManifest;
use qcyn::split::{self, lists, Split, SplitRule, SplitSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// helpers

/// An in-memory dataset under `/data` with `counts[c]` images in class `c`.
fn synthetic_dataset(classes: &[(&str, usize)]) -> Dataset {
    let root = PathBuf::from("/data");
    let mut samples = Vec::new();
    for (c, (name, count)) in classes.iter().enumerate() {
        for i in 0..*count {
            samples.push(Sample {
                path: root.join(name).join(format!("img{i:03}.jpg")),
                class: c,
            });
        }
    }
    Dataset {
        root,
        classes: classes.iter().map(|(n, _)| n.to_string()).collect(),
        samples,
        skipped: Vec::new(),
    }
}

/// Class folders with empty `.jpg` files (scan and lists only look at names).
fn dataset_on_disk(root: &Path, classes: &[(&str, &[&str])]) {
    for (class, files) in classes {
        for f in *files {
            let p = root.join(class).join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"not decoded here").unwrap();
        }
    }
}

fn spec(rule: SplitRule, seed: u64) -> SplitSpec {
    SplitSpec {
        rule,
        test_per_class: None,
        seed,
    }
}

fn err_text(e: qcyn::Error) -> String {
    format!("{e} (hint: {})", e.hint().unwrap_or(""))
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `per_class` points per class around class centres `centres`, Gaussian noise of `sd`.
fn blobs(
    centres: &[Vec<f32>],
    per_class: usize,
    sd: f32,
    seed: u64,
) -> (Array2<f32>, Array1<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = centres[0].len();
    let n = centres.len() * per_class;
    let y = Array1::from_shape_fn(n, |i| i % centres.len());
    let x = Array2::from_shape_fn((n, d), |(i, j)| centres[y[i]][j] + sd * normal(&mut rng));
    (x, y)
}

/// Columns with mean 0 and (population) standard deviation 1.
fn standardised(mut x: Array2<f32>) -> Array2<f32> {
    for mut col in x.columns_mut() {
        let n = col.len() as f64;
        let mean = col.iter().map(|v| *v as f64).sum::<f64>() / n;
        let sd = (col.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        col.mapv_inplace(|v| ((v as f64 - mean) / sd) as f32);
    }
    x
}

// ---------------------------------------------------------------------------------------------
// split

#[test]
fn split_is_reproducible_and_stratified() {
    let ds = synthetic_dataset(&[("ants", 10), ("bees", 7), ("wasps", 5)]);
    let s = spec(SplitRule::ValPerClass { n: 2 }, 7);
    let a = split::stratified(&ds, &s).unwrap();
    let b = split::stratified(&ds, &s).unwrap();
    assert_eq!(a, b, "same seed, same split");
    assert_eq!(a.class_counts(&ds), vec![[8, 2, 0], [5, 2, 0], [3, 2, 0]]);
    let mut all: Vec<usize> = a
        .train
        .iter()
        .chain(&a.val)
        .chain(&a.test)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..ds.samples.len()).collect::<Vec<_>>(),
        "parts are disjoint and cover every sample"
    );
    for part in [&a.train, &a.val] {
        assert!(
            part.windows(2).all(|w| w[0] < w[1]),
            "parts are in ascending order"
        );
    }
    let other = split::stratified(&ds, &spec(SplitRule::ValPerClass { n: 2 }, 8)).unwrap();
    assert_ne!(a.val, other.val, "another seed gives another split");

    // Adding images to one class leaves the other classes' split unchanged.
    let grown = synthetic_dataset(&[("ants", 14), ("bees", 7), ("wasps", 5)]);
    let g = split::stratified(&grown, &s).unwrap();
    let names = |ds: &Dataset, idx: &[usize]| -> Vec<PathBuf> {
        idx.iter()
            .filter(|&&i| ds.samples[i].class != 0)
            .map(|&i| ds.samples[i].path.clone())
            .collect()
    };
    assert_eq!(names(&ds, &a.val), names(&grown, &g.val));
}

#[test]
fn split_with_test_part_and_fraction_rule() {
    let ds = synthetic_dataset(&[("a", 10), ("b", 7), ("c", 4)]);
    let s = SplitSpec {
        rule: SplitRule::ValPerClass { n: 1 },
        test_per_class: Some(2),
        seed: 1,
    };
    let sp = split::stratified(&ds, &s).unwrap();
    assert_eq!(sp.class_counts(&ds), vec![[7, 1, 2], [4, 1, 2], [1, 1, 2]]);
    assert_eq!(sp, split::stratified(&ds, &s).unwrap());

    // Fraction: rounded per class, at least one validated and one trained on.
    let ds = synthetic_dataset(&[("a", 10), ("b", 7), ("c", 2)]);
    let sp = split::stratified(&ds, &spec(SplitRule::ValFraction { f: 0.2 }, 3)).unwrap();
    assert_eq!(sp.class_counts(&ds), vec![[8, 2, 0], [6, 1, 0], [1, 1, 0]]);
    let sp = split::stratified(&ds, &spec(SplitRule::ValFraction { f: 0.9 }, 3)).unwrap();
    assert_eq!(sp.class_counts(&ds), vec![[1, 9, 0], [1, 6, 0], [1, 1, 0]]);
    let e = split::stratified(&ds, &spec(SplitRule::ValFraction { f: 1.5 }, 3)).unwrap_err();
    assert!(err_text(e).contains("between 0 and 1"));
}

#[test]
fn split_needs_one_image_to_train_on() {
    // A class that validation and test would empty is refused, not silently left untrained.
    let ds = synthetic_dataset(&[("a", 10), ("c", 3)]);
    let s = SplitSpec {
        rule: SplitRule::ValPerClass { n: 1 },
        test_per_class: Some(2),
        seed: 1,
    };
    let e = err_text(split::stratified(&ds, &s).unwrap_err());
    assert!(e.contains("class `c` has 3 images"), "{e}");
    assert!(
        e.contains("needs at least 4 (3 held out + 1 to train)"),
        "{e}"
    );
}

#[test]
fn split_too_small_class_names_class_and_count() {
    let ds = synthetic_dataset(&[("ants", 40), ("bees", 12)]);
    let e =
        err_text(split::stratified(&ds, &spec(SplitRule::ValPerClass { n: 20 }, 0)).unwrap_err());
    assert!(
        e.contains("class `bees` has 12 images; --val-per-class 20 needs at least 21 (20 held out + 1 to train)"),
        "{e}"
    );
    assert!(!e.contains("ants"), "only the small class is named: {e}");
}

#[test]
fn split_single_image_class_is_an_error() {
    let ds = synthetic_dataset(&[("ants", 5), ("lonely", 1)]);
    for rule in [
        SplitRule::ValPerClass { n: 1 },
        SplitRule::ValFraction { f: 0.2 },
    ] {
        let e = err_text(split::stratified(&ds, &spec(rule, 0)).unwrap_err());
        assert!(e.contains("class `lonely` has a single image"), "{e}");
    }
}

#[test]
fn split_manifest_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    dataset_on_disk(
        &root,
        &[
            ("ants", &["a1.jpg", "a2.jpg", "a3.jpg"]),
            ("bees", &["b1.jpg", "b 2.jpg", "b3.png"]),
        ],
    );
    let ds = dataset::scan(&root).unwrap();
    let s = spec(SplitRule::ValPerClass { n: 1 }, 11);
    let sp = split::stratified(&ds, &s).unwrap();
    let m = SplitManifest::new(&ds, &sp, Some(&s)).unwrap();
    assert!(
        m.val
            .iter()
            .all(|e| !e.path.starts_with('/') && e.path.contains('/')),
        "{:?}",
        m.val
    );
    let file = dir.path().join("split.json");
    m.write(&file).unwrap();
    let back = SplitManifest::read(&file).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.seed, Some(11));
    let resolved = back.resolve(&ds).unwrap();
    assert_eq!(resolved.split, sp);
    assert!(resolved.unlisted.is_empty());
    let (ds2, sp2) = back.to_dataset(&root);
    assert_eq!(ds2.samples, ds.samples);
    assert_eq!(sp2, sp);

    // A new image is unlisted; a deleted one is an error naming it.
    dataset_on_disk(&root, &[("ants", &["a4.jpg"])]);
    let grown = dataset::scan(&root).unwrap();
    let r = back.resolve(&grown).unwrap();
    assert_eq!(r.unlisted.len(), 1);
    assert_eq!(grown.samples[r.unlisted[0]].path, root.join("ants/a4.jpg"));
    let gone = &m.train[0].path;
    std::fs::remove_file(root.join(gone)).unwrap();
    let e = err_text(back.resolve(&dataset::scan(&root).unwrap()).unwrap_err());
    assert!(e.contains(gone.as_str()), "{e}");

    // A truncated manifest is refused.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();
    let e = err_text(SplitManifest::read(&file).unwrap_err());
    assert!(e.contains("damaged or truncated"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// list files

fn write_lists(dir: &Path, labels: &str, train: &str, val: &str) {
    std::fs::write(dir.join(lists::LABEL_LIST), labels).unwrap();
    std::fs::write(dir.join(lists::TRAIN_LIST), train).unwrap();
    std::fs::write(dir.join(lists::VALIDATE_LIST), val).unwrap();
}

#[test]
fn lists_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    dataset_on_disk(
        root,
        &[
            ("ants", &["a1.jpg", "a2.jpg", "a 3.jpg", "a4.jpg"]),
            ("bees", &["b1.jpg", "sub/b2.jpg", "b3.jpg", "b4.jpg"]),
        ],
    );
    let ds = dataset::scan(root).unwrap();
    let s = SplitSpec {
        rule: SplitRule::ValPerClass { n: 1 },
        test_per_class: Some(1),
        seed: 5,
    };
    let sp = split::stratified(&ds, &s).unwrap();
    lists::write(root, &ds, &sp).unwrap();

    let labels = std::fs::read_to_string(root.join(lists::LABEL_LIST)).unwrap();
    assert_eq!(labels, "ants\nbees\n");
    let train = std::fs::read_to_string(root.join(lists::TRAIN_LIST)).unwrap();
    let expected: String = sp
        .train
        .iter()
        .map(|&i| {
            let rel = ds.samples[i]
                .path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            format!("{rel} {}\n", ds.samples[i].class)
        })
        .collect();
    assert_eq!(train, expected);
    assert_eq!(train.lines().count(), 4);

    let back = lists::read(root, None).unwrap();
    assert_eq!(back.dataset.classes, ds.classes);
    assert_eq!(back.dataset.samples, ds.samples);
    assert_eq!(back.split, sp);

    // test_list.txt is written even when empty, and read back as an empty part.
    let s = spec(SplitRule::ValPerClass { n: 1 }, 5);
    let sp = split::stratified(&ds, &s).unwrap();
    lists::write(root, &ds, &sp).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join(lists::TEST_LIST)).unwrap(),
        ""
    );
    assert_eq!(lists::read(root, None).unwrap().split, sp);
}

#[test]
fn lists_base_folder_and_class_names_as_labels() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lists_dir = dir.path().join("lists");
    std::fs::create_dir_all(&lists_dir).unwrap();
    dataset_on_disk(
        &data,
        &[("ants", &["a 1.jpg", "a2.jpg"]), ("bees", &["b1.jpg"])],
    );
    // CRLF endings, a path with a space, a class given by name, a `./` prefix, a blank line.
    write_lists(
        &lists_dir,
        "ants\nbees\n\n",
        "ants/a 1.jpg 0\r\n./bees/b1.jpg  bees\n\n",
        "ants/a2.jpg\t0\n",
    );
    let l = lists::read(&lists_dir, Some(&data)).unwrap();
    assert_eq!(l.dataset.root, data);
    assert_eq!(l.dataset.samples.len(), 3);
    assert_eq!(l.split.train.len(), 2);
    assert_eq!(l.split.val.len(), 1);
    assert!(
        l.split.test.is_empty(),
        "a missing test_list.txt is an empty part"
    );
    let val = &l.dataset.samples[l.split.val[0]];
    assert_eq!(val.path, data.join("ants/a2.jpg"));
    assert_eq!(val.class, 0);
    assert!(l
        .dataset
        .samples
        .iter()
        .any(|s| s.path == data.join("bees/b1.jpg") && s.class == 1));
}

/// Reads lists made of `train` and `val` lines over a small dataset and returns the error text.
fn list_error(train: &str, val: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    dataset_on_disk(
        dir.path(),
        &[
            ("ants", &["a1.jpg", "a2.jpg", "a3.jpg"]),
            ("bees", &["b1.jpg", "b2.jpg"]),
        ],
    );
    write_lists(dir.path(), "ants\nbees\n", train, val);
    err_text(lists::read(dir.path(), None).unwrap_err())
}

#[test]
fn lists_label_out_of_range() {
    let e = list_error("ants/a1.jpg 0\nbees/b1.jpg 2\n", "");
    assert!(e.contains("train_list.txt") && e.contains("line 2"), "{e}");
    assert!(
        e.contains("label 2 is out of range") && e.contains("2 classes"),
        "{e}"
    );
    let e = list_error("ants/a1.jpg 0\n", "bees/b1.jpg -1\n");
    assert!(
        e.contains("validate_list.txt")
            && e.contains("line 1")
            && e.contains("label -1 is out of range"),
        "{e}"
    );
}

#[test]
fn lists_unknown_class_label() {
    let e = list_error("ants/a1.jpg 0\nbees/b1.jpg wasps\n", "");
    assert!(
        e.contains("train_list.txt") && e.contains("line 2") && e.contains("unknown class `wasps`"),
        "{e}"
    );
    let e = list_error("ants/a1.jpg 1.5\n", "");
    assert!(
        e.contains("line 1") && e.contains("unknown class `1.5`"),
        "{e}"
    );
    let e = list_error("ants/a1.jpg\n", "");
    assert!(
        e.contains("line 1") && e.contains("expected `relative/path label`"),
        "{e}"
    );
}

#[test]
fn lists_duplicate_path() {
    let e = list_error("ants/a1.jpg 0\nbees/b1.jpg 1\nants/a1.jpg 0\n", "");
    assert!(
        e.contains("train_list.txt") && e.contains("line 3") && e.contains("listed twice"),
        "{e}"
    );
    assert!(
        e.contains("train_list.txt line 1"),
        "names the first occurrence: {e}"
    );
    let e = list_error("ants/a1.jpg 0\n", "bees/b2.jpg 1\n./ants/a1.jpg 0\n");
    assert!(
        e.contains("validate_list.txt") && e.contains("line 2") && e.contains("listed twice"),
        "{e}"
    );
}

#[test]
fn lists_path_escaping_base() {
    for bad in ["../outside.jpg", "ants/../../x.jpg", "/etc/passwd"] {
        let e = list_error(&format!("ants/a1.jpg 0\n{bad} 1\n"), "");
        assert!(
            e.contains("train_list.txt") && e.contains("line 2"),
            "{bad}: {e}"
        );
        assert!(
            e.contains("escapes the base") || e.contains("absolute paths are not allowed"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn lists_missing_images_are_collected() {
    let train: String = (0..8)
        .map(|i| format!("ants/gone{i}.jpg 0\n"))
        .collect::<String>()
        + "ants/a1.jpg 0\n";
    let e = list_error(&train, "bees/nothere.jpg 1\n");
    assert!(e.contains("9 listed image(s) are missing"), "{e}");
    assert!(e.contains("ants/gone0.jpg (train_list.txt line 1)"), "{e}");
    assert!(e.contains('…'), "only the first few are named: {e}");
}

#[test]
fn lists_label_list_problems() {
    let dir = tempfile::tempdir().unwrap();
    dataset_on_disk(dir.path(), &[("ants", &["a1.jpg"])]);
    write_lists(dir.path(), "ants\n\nbees\n", "ants/a1.jpg 0\n", "");
    let e = err_text(lists::read(dir.path(), None).unwrap_err());
    assert!(
        e.contains("label_list.txt") && e.contains("line 2") && e.contains("empty class name"),
        "{e}"
    );
    write_lists(dir.path(), "ants\nbees\nants\n", "ants/a1.jpg 0\n", "");
    let e = err_text(lists::read(dir.path(), None).unwrap_err());
    assert!(
        e.contains("line 3") && e.contains("already named on line 1"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// head

#[test]
fn head_learns_a_separable_problem() {
    let centres = vec![
        vec![3.0, 0.0, 0.0],
        vec![0.0, 3.0, 0.0],
        vec![0.0, 0.0, 3.0],
    ];
    let (x, y) = blobs(&centres, 20, 0.3, 1);
    let ds = DatasetBase::new(x.clone(), y.clone());
    let fit = SoftmaxParams::new().l2(0.1).fit(&ds).unwrap();
    assert!(fit.refit.converged, "{:?}", fit.refit);
    let pred: Array1<usize> = fit.head.predict(&x);
    assert_eq!(pred, y, "a separable problem is learnt perfectly");
    let p = fit.head.predict_proba(x.view());
    assert_eq!(p.dim(), (60, 3));
    for (row, &t) in p.rows().into_iter().zip(&y) {
        assert!((row.sum() - 1.0).abs() < 1e-5);
        assert!(row[t] > 0.9, "confident on easy points: {row}");
    }
    // Shifted and scaled features give the same predictions: the head standardises.
    let x2 = x.mapv(|v| v * 1000.0 + 50.0);
    let fit2 = SoftmaxParams::new()
        .l2(0.1)
        .fit(&DatasetBase::new(x2.clone(), y.clone()))
        .unwrap();
    let p2 = fit2.head.predict_proba(x2.view());
    assert!((&p2 - &p).iter().all(|d| d.abs() < 1e-3));
}

fn primal_copy(centres: &[Vec<f32>]) -> Array2<f32> {
    standardised(blobs(centres, 20, 0.6, 2).0)
}

#[test]
fn head_matches_linfa_logistic() {
    // Same objective: Σ CE + l2/2 ‖W‖², bias unpenalised. On standardised features the head's
    // standardisation is the identity, so the two models must agree.
    let centres = vec![
        vec![1.0, 0.0, 0.5, 0.0],
        vec![0.0, 1.0, 0.0, 0.3],
        vec![0.5, 0.5, 1.0, 0.0],
    ];
    let (x, y) = blobs(&centres, 20, 0.6, 2);
    // 60 samples, 4 features: the head works on the features directly.
    let primal = standardised(x);
    // 30 samples, 40 features: the head works in the span of the samples (Gram form).
    let wide = {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        Array2::from_shape_fn((30, 40), |(i, j)| {
            normal(&mut rng) + if j % 3 == i % 3 { 0.8 } else { 0.0 }
        })
    };
    let wide_y = Array1::from_shape_fn(30, |i| i % 3);
    let cases = [
        (primal, y.clone(), 0.3f32),
        (primal_copy(&centres), y.clone(), 3.0),
        (standardised(wide.clone()), wide_y.clone(), 0.5),
        (standardised(wide), wide_y, 5.0),
    ];
    for (x, y, l2) in cases {
        let ours = SoftmaxParams::new()
            .l2(l2)
            .tol(1e-7)
            .max_iter(2000)
            .fit(&DatasetBase::new(x.clone(), y.clone()))
            .unwrap();
        let x64 = x.mapv(|v| v as f64);
        let theirs = linfa_logistic::MultiLogisticRegression::default()
            .alpha(l2 as f64)
            .gradient_tolerance(1e-10)
            .max_iterations(5000)
            .fit(&DatasetBase::new(x64.clone(), y.clone()))
            .unwrap();
        let p_ours = ours.head.predict_proba(x.view());
        let p_theirs = theirs.predict_probabilities(&x64);
        let worst = p_ours
            .iter()
            .zip(p_theirs.iter())
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-3,
            "l2 {l2}, {:?}: probabilities differ by up to {worst}",
            x.dim()
        );
        let w_theirs = theirs.params(); // d × k
        let w_ours = ours.head.weights_view(); // k × d
        let wd = w_ours
            .t()
            .iter()
            .zip(w_theirs.iter())
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            wd < 1e-2,
            "l2 {l2}, {:?}: weights differ by up to {wd}",
            x.dim()
        );
    }
}

#[test]
fn head_cv_picks_a_sensible_strength() {
    // Two informative features among 60 noise features, 20 samples per class: a weak penalty
    // fits the noise, a huge one washes out the signal.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n, d) = (60, 62);
    let y = Array1::from_shape_fn(n, |i| i % 3);
    let x = Array2::from_shape_fn((n, d), |(i, j)| {
        let signal = match j {
            0 => [2.0, -2.0, 0.0][y[i]],
            1 => [0.0, 2.0, -2.0][y[i]],
            _ => 0.0,
        };
        signal + normal(&mut rng)
    });
    let grid = vec![1e4, 1e3, 1e2, 10.0, 1.0, 0.1, 0.01];
    // One scaling, so the grid reported is the one the strength was chosen from alone.
    let fit = SoftmaxParams::new()
        .l2_grid(grid.clone())
        .scalings(vec![qcyn::head::Scaling::Feature])
        .folds(5)
        .seed(1)
        .fit(&DatasetBase::new(x, y))
        .unwrap();
    let cv = fit.cv.expect("a grid cross-validates");
    assert_eq!(cv.grid.len(), grid.len());
    assert_eq!(cv.folds, 5);
    assert_eq!(cv.criterion, "log_loss");
    let best = cv
        .grid
        .iter()
        .min_by(|a, b| a.log_loss.total_cmp(&b.log_loss))
        .unwrap();
    assert_eq!(cv.chosen_l2, best.l2);
    assert_eq!(fit.head.l2, cv.chosen_l2);
    assert!(
        cv.chosen_l2 > 0.01 && cv.chosen_l2 < 1e4,
        "chose {} from {:?}",
        cv.chosen_l2,
        cv.grid
    );
    let weakest = cv.grid.last().unwrap();
    assert!(
        best.log_loss < weakest.log_loss - 0.05,
        "the weakest penalty overfits: {:?}",
        cv.grid
    );
    assert!(best.accuracy > 0.6, "{:?}", best);
    assert!(cv.notes.is_empty(), "{:?}", cv.notes);
}

#[test]
fn head_hyperparameters_are_checked_first() {
    let (x, y) = blobs(&[vec![0.0, 0.0], vec![2.0, 2.0]], 6, 0.5, 4);
    let ds = DatasetBase::new(x.clone(), y.clone());
    let err = |p: SoftmaxParams| p.fit(&ds).unwrap_err();
    assert!(matches!(
        err(SoftmaxParams::new().l2_grid(vec![])),
        HeadError::EmptyGrid
    ));
    assert!(matches!(
        err(SoftmaxParams::new().folds(1)),
        HeadError::TooFewFolds(1)
    ));
    assert!(
        matches!(err(SoftmaxParams::new().l2(-1.0)), HeadError::InvalidStrength(v) if v == -1.0)
    );
    assert!(matches!(
        err(SoftmaxParams::new().tol(0.0)),
        HeadError::InvalidTolerance(_)
    ));

    let mut bad = x.clone();
    bad[[3, 1]] = f32::NAN;
    let e = SoftmaxParams::new()
        .fit(&DatasetBase::new(bad, y.clone()))
        .unwrap_err();
    assert!(
        matches!(e, HeadError::NonFinite { row: 3, col: 1, .. }),
        "{e:?}"
    );
    let e: qcyn::Error = e.into();
    assert!(err_text(e).contains("feature 1 of sample 3 is NaN"));

    // A class with a single training sample cannot be cross-validated …
    let y1 = Array1::from_vec(vec![0, 0, 0, 0, 1]);
    let x1 = x.slice(ndarray::s![0..5, ..]).to_owned();
    let e = SoftmaxParams::new()
        .fit(&DatasetBase::new(x1.clone(), y1.clone()))
        .unwrap_err();
    assert!(
        matches!(
            e,
            HeadError::ClassTooSmall {
                class: 1,
                count: 1,
                needed: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // … but can be fitted at a given strength.
    assert!(SoftmaxParams::new()
        .l2(1.0)
        .fit(&DatasetBase::new(x1, y1))
        .is_ok());
    // A class absent from the labels is an error too.
    let e = SoftmaxParams::new()
        .n_classes(3)
        .l2(1.0)
        .fit(&ds)
        .unwrap_err();
    assert!(
        matches!(
            e,
            HeadError::ClassTooSmall {
                class: 2,
                count: 0,
                ..
            }
        ),
        "{e:?}"
    );

    // More folds than the smallest class has samples: reduced, with a note.
    let fit = SoftmaxParams::new().folds(10).fit(&ds).unwrap();
    let cv = fit.cv.unwrap();
    assert_eq!((cv.folds, cv.folds_requested), (6, 10));
    assert!(
        cv.notes
            .iter()
            .any(|n| n.contains("folds reduced from 10 to 6")),
        "{:?}",
        cv.notes
    );
}

#[test]
fn head_balanced_class_weight_helps_the_small_class() {
    // Overlapping classes, 90 vs 10: unweighted, the small class is rarely predicted.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let y = Array1::from_shape_fn(100, |i| usize::from(i >= 90));
    let x = Array2::from_shape_fn(
        (100, 2),
        |(i, j)| if j == 0 { y[i] as f32 * 1.0 } else { 0.0 } + normal(&mut rng),
    );
    let ds = DatasetBase::new(x.clone(), y.clone());
    let small = |cw: ClassWeight| {
        let fit = SoftmaxParams::new()
            .l2(1.0)
            .class_weight(cw)
            .fit(&ds)
            .unwrap();
        let pred: Array1<usize> = fit.head.predict(&x);
        pred.iter()
            .zip(&y)
            .filter(|(p, t)| **p == 1 && **t == 1)
            .count()
    };
    let (plain, balanced) = (small(ClassWeight::None), small(ClassWeight::Balanced));
    assert!(
        balanced > plain + 2,
        "small class recalled: {plain} unweighted, {balanced} balanced"
    );
}

#[test]
fn head_serde_round_trip_and_dimension_check() {
    let (x, y) = blobs(&[vec![0.0, 0.0, 1.0], vec![2.0, 2.0, 0.0]], 10, 0.5, 5);
    let fit = SoftmaxParams::new()
        .l2(1.0)
        .fit(&DatasetBase::new(x.clone(), y))
        .unwrap();
    let json = serde_json::to_string(&fit.head).unwrap();
    let back: head::SoftmaxHead = serde_json::from_str(&json).unwrap();
    assert_eq!(back, fit.head);
    assert_eq!(
        back.predict_proba(x.view()),
        fit.head.predict_proba(x.view())
    );
    assert!(back.validate().is_ok());
    let e = back
        .try_predict_proba(x.slice(ndarray::s![.., 0..2]))
        .unwrap_err();
    assert!(matches!(
        e,
        HeadError::DimensionMismatch {
            expected: 3,
            found: 2
        }
    ));
}

// ---------------------------------------------------------------------------------------------
// evaluate

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn evaluate_hand_computed_example() {
    let classes = names(&["a", "b", "c"]);
    let y = [0, 0, 0, 1, 1, 2];
    let p = ndarray::arr2(&[
        [0.8f32, 0.1, 0.1], // a → a
        [0.6, 0.3, 0.1],    // a → a
        [0.3, 0.5, 0.2],    // a → b
        [0.2, 0.7, 0.1],    // b → b
        [0.1, 0.4, 0.5],    // b → c
        [0.3, 0.7, 0.0],    // c → b (p = 0, clipped)
    ]);
    let r = metrics::evaluate(&y, p.view(), &classes).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert_eq!(r.n, 6);
    assert_eq!(
        r.confusion,
        vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 1, 0]]
    );
    assert!(close(r.accuracy, 0.5));
    let (pa, pb, pc) = (&r.per_class[0], &r.per_class[1], &r.per_class[2]);
    assert!(
        close(pa.precision, 1.0)
            && close(pa.recall, 2.0 / 3.0)
            && close(pa.f1, 0.8)
            && pa.support == 3
    );
    assert!(
        close(pb.precision, 1.0 / 3.0)
            && close(pb.recall, 0.5)
            && close(pb.f1, 0.4)
            && pb.support == 2
    );
    assert!(
        close(pc.precision, 0.0) && close(pc.recall, 0.0) && close(pc.f1, 0.0) && pc.support == 1
    );
    assert!(close(r.macro_f1, 0.4));
    // (−ln .8 − ln .6 − ln .3 − ln .7 − ln .4 − ln 1e-15) / 6
    let expected = (0.8f32 as f64).ln()
        + (0.6f32 as f64).ln()
        + (0.3f32 as f64).ln()
        + (0.7f32 as f64).ln()
        + (0.4f32 as f64).ln()
        + 1e-15f64.ln();
    assert!(close(r.log_loss, -expected / 6.0), "{}", r.log_loss);
    assert!((r.log_loss - 6.291614).abs() < 1e-5);
    assert_eq!(r.bias.errors, 3);
    assert_eq!(r.bias.leans_toward.as_deref(), Some("b"));
    assert_eq!(r.bias.count, 2);
    assert!(close(r.bias.share, 2.0 / 3.0));
    assert_eq!(r.bias.lowest_recall.as_ref().unwrap().class, "c");
    assert_eq!(r.bias.highest_recall.as_ref().unwrap().class, "a");
    assert!(close(r.bias.recall_spread, 2.0 / 3.0));

    let json = serde_json::to_value(&r).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "accuracy",
            "bias",
            "calibration",
            "classes",
            "confusion",
            "log_loss",
            "macro_f1",
            "n",
            "per_class"
        ]
    );
    let mut pk: Vec<&str> = json["per_class"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    pk.sort_unstable();
    assert_eq!(pk, ["class", "f1", "precision", "recall", "support"]);

    let h = r.human();
    assert!(h.contains("accuracy 0.500 (3/6)"), "{h}");
    assert!(
        h.contains("bias: errors lean toward `b`: 2 of 3 wrong predictions (67%)"),
        "{h}"
    );
    assert!(h.contains("confusion matrix (rows: true class"), "{h}");
    let row_c = h
        .lines()
        .find(|l| l.starts_with("2 c"))
        .expect("confusion row of c");
    assert_eq!(
        row_c.split_whitespace().collect::<Vec<_>>(),
        ["2", "c", "0", "1", "0"],
        "{h}"
    );
}

#[test]
fn evaluate_perfect_and_bad_input() {
    let classes = names(&["x", "y"]);
    let p = ndarray::arr2(&[[0.9f32, 0.1], [0.2, 0.8]]);
    let r = metrics::evaluate(&[0, 1], p.view(), &classes).unwrap();
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(r.bias.leans_toward, None);
    assert!(r.human().contains("bias: no errors."));
    assert!(metrics::evaluate(&[0], p.view(), &classes).is_err());
    assert!(metrics::evaluate(&[0, 2], p.view(), &classes).is_err());
    assert!(metrics::evaluate(&[0, 1], p.view(), &names(&["x"])).is_err());
}

// ---------------------------------------------------------------------------------------------
// bundle

const MANIFEST: &str = r#"
name = "tiny"
file = "tiny.onnx"
sha256 = "aaaa"
[input]
name = "input"
layout = "nchw"
height = 8
width = 8
[preprocess]
resize = "shorter_then_center_crop"
resize_to = 10
filter = "bilinear"
colour = "rgb"
scale = 255.0
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
[output]
features = "features"
dim = 3
"#;

fn model_in(dir: &Path, file: &str, text: &str) -> Model {
    let p = dir.join(file);
    std::fs::write(&p, text).unwrap();
    Model::load(&p).unwrap()
}

/// Manifests are typed per kind: what a kind needs is there, and nothing of the other kind.
#[test]
fn manifests_that_mix_or_miss_their_kind_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let e = Model::load(&p).unwrap_err();
        assert!(e.to_string().contains(name), "names the file: {e}");
        e.to_string()
    };
    let e = load("nofile.toml", &MANIFEST.replace("file = \"tiny.onnx\"", ""));
    assert!(
        e.contains("needs `file`, [input], [preprocess] and [output]"),
        "{e}"
    );
    let e = load(
        "mixed.toml",
        &format!("{MANIFEST}\n[detector]\nfile = \"d.onnx\"\nsha256 = \"a\"\ninput = \"i\"\nsize = 640\ncolour = \"bgr\"\nstrides = [8]\n"),
    );
    assert!(e.contains("has no [detector] or [embedder]"), "{e}");
    let e = load(
        "face.toml",
        "name = \"f\"\nkind = \"face\"\n[detector]\nfile = \"d.onnx\"\nsha256 = \"a\"\ninput = \"i\"\nsize = 640\ncolour = \"bgr\"\nstrides = [8]\n",
    );
    assert!(e.contains("needs a [detector] and an [embedder]"), "{e}");
    let e = load("kind.toml", &format!("kind = \"fused\"\n{MANIFEST}"));
    assert!(e.contains("fused"), "{e}");
    let m = model_in(dir.path(), "ok.toml", MANIFEST);
    assert_eq!(m.manifest.kind(), qcyn::models::ModelKind::Whole);
    assert!(m.manifest.face().is_none());
}

fn sample_bundle(model: &Model) -> Bundle {
    let (x, y) = blobs(&[vec![0.0, 0.0, 1.0], vec![2.0, 2.0, 0.0]], 10, 0.5, 6);
    let params = SoftmaxParams::new().l2_grid(vec![10.0, 1.0]).folds(3);
    let fit = params
        .clone()
        .fit(&DatasetBase::new(x.clone(), y.clone()))
        .unwrap();
    let classes = names(&["cats", "dogs"]);
    let report = metrics::evaluate(
        y.as_slice().unwrap(),
        fit.head.predict_proba(x.view()).view(),
        &classes,
    )
    .unwrap();
    let training = TrainingConfig {
        split: SplitSource::Rule {
            spec: spec(SplitRule::ValPerClass { n: 2 }, 0),
            manifest: None,
        },
        dataset_root: PathBuf::from("/data"),
        train_counts: vec![10, 10],
        class_weight: ClassWeight::None,
        params: linfa::ParamGuard::check(params).unwrap(),
        cv: fit.cv.clone(),
        refit: fit.refit,
    };
    Bundle::new(model, "aaaa", classes, fit.head, training, Some(report))
}

#[test]
fn bundle_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path(), "tiny.toml", MANIFEST);
    let b = sample_bundle(&model);
    let path = dir.path().join("out/bundle.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    b.write(&path).unwrap();
    let back = Bundle::load(&path).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.format_version, qcyn::bundle::BUNDLE_FORMAT_VERSION);
    assert_eq!(
        back.model.manifest, model.manifest,
        "preprocessing travels with the bundle"
    );
    assert!(
        back.created.ends_with('Z') && back.created.len() == 20,
        "{}",
        back.created
    );
    assert!(back.open_set.is_none());
    back.check_model(&model, "AAAA").unwrap();
    let files: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(files.len(), 1, "no temporary file left behind");
}

/// A bundle written by qcyn 0.1 (format 1: manifests and the open set as raw tables) is refused
/// with "re-run fit", never read half-way or panicked on.
#[test]
fn a_format_1_bundle_asks_for_a_new_fit() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path(), "tiny.toml", MANIFEST);
    let path = dir.path().join("bundle.json");
    sample_bundle(&model).write(&path).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["format_version"] = 1.into();
    v["qcyn_version"] = "0.1.0".into();
    v["open_set"] = serde_json::json!({"threshold": 0.3, "centroids": "as a raw table"});
    std::fs::write(&path, v.to_string()).unwrap();
    let err = Bundle::load(&path).unwrap_err();
    let e = err_text(err);
    assert!(e.contains("format version 1 "), "{e}");
    assert!(e.contains("re-run `qcyn fit`"), "{e}");
}

#[test]
fn bundle_truncated_or_missing_or_wrong_version() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path(), "tiny.toml", MANIFEST);
    let path = dir.path().join("bundle.json");
    sample_bundle(&model).write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, &text[..text.len() * 2 / 3]).unwrap();
    let e = err_text(Bundle::load(&path).unwrap_err());
    assert!(
        e.contains("bundle is damaged or truncated") && e.contains("re-run `qcyn fit`"),
        "{e}"
    );
    assert!(e.contains("bundle.json"), "names the file: {e}");

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["format_version"] = 99.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = err_text(Bundle::load(&path).unwrap_err());
    assert!(e.contains("format version 99"), "{e}");

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["head"]["bias"] = serde_json::json!([0.0]);
    std::fs::write(&path, v.to_string()).unwrap();
    let e = err_text(Bundle::load(&path).unwrap_err());
    assert!(e.contains("`bias` has 1 values, expected 2"), "{e}");

    let e = err_text(Bundle::load(&dir.path().join("nope.json")).unwrap_err());
    assert!(
        e.contains("bundle not found") && e.contains("qcyn fit"),
        "{e}"
    );
}

#[test]
fn bundle_made_with_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path(), "tiny.toml", MANIFEST);
    let b = sample_bundle(&model);
    b.check_model(&model, "aaaa").unwrap();

    let other = model_in(
        dir.path(),
        "other.toml",
        &MANIFEST.replace("name = \"tiny\"", "name = \"other\""),
    );
    let e = err_text(b.check_model(&other, "aaaa").unwrap_err());
    assert!(e.contains("trained with model `tiny`, not `other`"), "{e}");

    let e = err_text(b.check_model(&model, "bbbb").unwrap_err());
    assert!(e.contains("sha256 bbbb now, aaaa then"), "{e}");

    let moved = model_in(
        dir.path(),
        "moved.toml",
        &MANIFEST.replace("resize_to = 10", "resize_to = 12"),
    );
    let e = err_text(b.check_model(&moved, "aaaa").unwrap_err());
    assert!(
        e.contains("has changed") && e.contains("[preprocess]"),
        "{e}"
    );
}

#[test]
fn split_spec_serialises_readably() {
    let s = SplitSpec {
        rule: SplitRule::ValFraction { f: 0.25 },
        test_per_class: None,
        seed: 3,
    };
    let v = serde_json::to_value(s).unwrap();
    assert_eq!(v["rule"]["kind"], "val_fraction");
    assert_eq!(v["rule"]["f"], 0.25);
    let back: SplitSpec = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
    let _ = Split::default().is_empty();
}
