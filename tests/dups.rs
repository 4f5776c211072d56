//! Near-duplicates: the grouped split (pure), and `qcyn dups`, `split` and `fit` keeping copies of
//! one photo on one side, on the tiny fixture model (no feature threshold: content and perceptual
//! hash only) with small synthetic photos.
use std::collections::HashMap;
use std::path::PathBuf;

use image::{imageops, Rgb, RgbImage};
use qcyn::dataset::{Dataset, Sample};
use qcyn::split::{self, Split, SplitRule, SplitSpec};
use serde_json::Value;

use crate::util::*;

// ---------------------------------------------------------------------------------- pure

fn dataset(classes: &[(&str, usize)]) -> Dataset {
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

fn spec(rule: SplitRule, test: Option<usize>, seed: u64) -> SplitSpec {
    SplitSpec {
        rule,
        test_per_class: test,
        seed,
    }
}

/// The split as qcyn made it before grouping existed (kept here as the reference): per class,
/// sort by path, shuffle with the class's stream, deal test, validation, training.
fn reference(ds: &Dataset, s: &SplitSpec) -> Split {
    let test = s.test_per_class.unwrap_or(0);
    let mut out = Split::default();
    for (c, name) in ds.classes.iter().enumerate() {
        let mut m: Vec<usize> = (0..ds.samples.len())
            .filter(|&i| ds.samples[i].class == c)
            .collect();
        m.sort_by(|&a, &b| ds.samples[a].path.cmp(&ds.samples[b].path));
        let val = match s.rule {
            SplitRule::ValPerClass { n } => n,
            SplitRule::ValFraction { f } => {
                ((f * m.len() as f64).round() as usize).clamp(1, m.len() - test - 1)
            }
        };
        qcyn::shuffle::shuffle(&mut m, &mut qcyn::shuffle::class_rng(s.seed, name));
        out.test.extend_from_slice(&m[..test]);
        out.val.extend_from_slice(&m[test..test + val]);
        out.train.extend_from_slice(&m[test + val..]);
    }
    out.train.sort_unstable();
    out.val.sort_unstable();
    out.test.sort_unstable();
    out
}

fn err_text(e: qcyn::Error) -> String {
    format!("{e} / hint: {}", e.hint().unwrap_or_default())
}

fn part_of(split: &Split, i: usize) -> usize {
    [&split.train, &split.val, &split.test]
        .iter()
        .position(|p| p.contains(&i))
        .expect("every sample is in a part")
}

#[test]
fn singleton_groups_give_exactly_the_ungrouped_seeded_split() {
    let ds = dataset(&[("ants", 23), ("bees", 9), ("wasps", 5)]);
    for seed in 0..6 {
        for (rule, test) in [
            (SplitRule::ValPerClass { n: 2 }, None),
            (SplitRule::ValPerClass { n: 3 }, Some(1)),
            (SplitRule::ValFraction { f: 0.2 }, None),
            (SplitRule::ValFraction { f: 0.3 }, Some(1)),
        ] {
            let s = spec(rule, test, seed);
            let want = reference(&ds, &s);
            assert_eq!(split::stratified(&ds, &s).unwrap(), want, "{s:?}");
            let singletons: Vec<Vec<usize>> = (0..ds.samples.len()).map(|i| vec![i]).collect();
            let g = split::grouped(&ds, &s, &singletons).unwrap();
            assert_eq!(g.split, want, "{s:?}");
            assert_eq!(g.kept_together(), 0);
            assert!(g.notes.is_empty(), "{:?}", g.notes);
        }
    }
}

#[test]
fn groups_stay_on_one_side_and_counts_stay_exact_where_possible() {
    let ds = dataset(&[("ants", 30), ("bees", 30)]);
    // Five groups of 4 in ants, two of 3 in bees.
    let groups: Vec<Vec<usize>> = (0..5)
        .map(|g| (g * 4..g * 4 + 4).collect())
        .chain([vec![30, 31, 32], vec![40, 41, 42]])
        .collect();
    for seed in 0..20 {
        let s = spec(SplitRule::ValPerClass { n: 5 }, Some(2), seed);
        let g = split::grouped(&ds, &s, &groups).unwrap();
        assert_eq!(g.kept_together(), 7);
        for group in &groups {
            let parts: Vec<usize> = group.iter().map(|&i| part_of(&g.split, i)).collect();
            assert!(
                parts.windows(2).all(|w| w[0] == w[1]),
                "seed {seed}: {group:?} split {parts:?}"
            );
        }
        // Ten singletons per class are enough to make every count exact.
        assert_eq!(
            g.split.class_counts(&ds),
            vec![[23, 5, 2], [23, 5, 2]],
            "seed {seed}"
        );
        assert!(g.notes.is_empty(), "{:?}", g.notes);
    }
}

#[test]
fn a_group_that_cannot_fit_the_count_is_kept_whole_with_a_note() {
    // Two groups of 5 and one image: holding out 2 can only take the single image (1, short by
    // one) or a whole group (5): the nearer is 1.
    let ds = dataset(&[("ants", 11), ("bees", 6)]);
    let groups = vec![(0..5).collect::<Vec<_>>(), (5..10).collect()];
    let s = spec(SplitRule::ValPerClass { n: 2 }, None, 0);
    let g = split::grouped(&ds, &s, &groups).unwrap();
    assert_eq!(g.split.class_counts(&ds)[0][1], 1);
    assert_eq!(g.split.class_counts(&ds)[1][1], 2, "bees are exact");
    assert!(
        g.notes
            .iter()
            .any(|n| n.contains("`ants`")
                && n.contains("1 images held out for validation instead of 2")),
        "{:?}",
        g.notes
    );
    // Only groups: one of them is held out whole (5 instead of 2), never a part of one.
    let ds = dataset(&[("ants", 10), ("bees", 6)]);
    let g = split::grouped(&ds, &s, &groups).unwrap();
    assert_eq!(g.split.class_counts(&ds)[0], [5, 5, 0]);
    assert_eq!(g.notes.len(), 1, "{:?}", g.notes);
}

#[test]
fn a_class_that_is_one_group_is_trained_on_with_a_note_and_refused_when_nothing_is_left() {
    let ds = dataset(&[("ants", 6), ("bees", 6)]);
    let s = spec(SplitRule::ValPerClass { n: 1 }, None, 0);
    let g = split::grouped(&ds, &s, &[(0..6).collect()]).unwrap();
    // Ants: all trained on, none held out; bees split as asked.
    assert_eq!(g.split.class_counts(&ds), vec![[6, 0, 0], [5, 1, 0]]);
    assert!(
        g.notes.iter().any(|n| n
            .contains("class `ants`: all its 6 images are near-duplicates of one another")
            && n.contains("none held out")
            && n.contains("qcyn dups")),
        "{:?}",
        g.notes
    );
    // Two groups are not enough for test + validation + training either.
    let s = spec(SplitRule::ValPerClass { n: 1 }, Some(1), 0);
    let g = split::grouped(&ds, &s, &[(0..3).collect(), (3..6).collect()]).unwrap();
    assert_eq!(g.split.class_counts(&ds)[0], [6, 0, 0]);
    assert!(
        g.notes
            .iter()
            .any(|n| n.contains("only 2 distinct ones") && n.contains("needs at least 3")),
        "{:?}",
        g.notes
    );
    // When no class is left to validate on, the split is refused with why and the fix.
    let both: Vec<Vec<usize>> = vec![(0..6).collect(), (6..12).collect()];
    let s = spec(SplitRule::ValPerClass { n: 1 }, None, 0);
    let e = err_text(split::grouped(&ds, &s, &both).unwrap_err());
    assert!(
        e.contains("class `bees`: all its 6 images are near-duplicates of one another")
            && e.contains("no class is left to validate on"),
        "{e}"
    );
    assert!(e.contains("--no-group") && e.contains("qcyn dups"), "{e}");
    // Without grouping the same data splits.
    assert!(split::stratified(&ds, &s).is_ok());
}

#[test]
fn groups_across_classes_go_to_training_and_are_reported() {
    let ds = dataset(&[("ants", 8), ("bees", 8)]);
    let cross = vec![2, 9];
    for seed in 0..10 {
        let s = spec(SplitRule::ValPerClass { n: 2 }, None, seed);
        let g = split::grouped(&ds, &s, std::slice::from_ref(&cross)).unwrap();
        assert_eq!(g.cross_class, vec![cross.clone()]);
        assert!(g.split.train.contains(&2) && g.split.train.contains(&9));
        assert_eq!(g.split.class_counts(&ds), vec![[6, 2, 0], [6, 2, 0]]);
        assert!(
            g.notes.iter().any(|n| n.contains("span classes")),
            "{:?}",
            g.notes
        );
    }
    // Every image a copy of every other: nothing can be held out.
    let all: Vec<usize> = (0..16).collect();
    let s = spec(SplitRule::ValFraction { f: 0.2 }, None, 0);
    let e = err_text(split::grouped(&ds, &s, &[all]).unwrap_err());
    assert!(
        e.contains("class `ants`") && e.contains("class `bees`"),
        "{e}"
    );
    assert!(
        e.contains("near-duplicates of images in other classes"),
        "{e}"
    );
}

#[test]
fn bad_groups_and_small_classes_are_errors() {
    let ds = dataset(&[("ants", 4), ("bees", 1)]);
    let s = spec(SplitRule::ValPerClass { n: 1 }, None, 0);
    let e = err_text(split::grouped(&ds, &s, &[vec![0, 1]]).unwrap_err());
    assert!(e.contains("class `bees` has a single image"), "{e}");
    let ds = dataset(&[("ants", 4), ("bees", 4)]);
    let e = err_text(split::grouped(&ds, &s, &[vec![0, 1], vec![1, 2]]).unwrap_err());
    assert!(e.contains("in two near-duplicate groups"), "{e}");
    let e = err_text(split::grouped(&ds, &s, &[vec![0, 99]]).unwrap_err());
    assert!(e.contains("sample 99"), "{e}");
}

// ---------------------------------------------------------------------------------- commands

/// A synthetic photo: smooth shapes that differ by `seed` (0 to 14 all differ), tinted by `tint` (so the tiny
/// model's colour features tell the classes apart).
fn photo(seed: u32, tint: [u8; 3]) -> RgbImage {
    let (a, b, c) = (
        1.0 + (seed % 5) as f32,
        2.0 + (seed / 5 % 3) as f32,
        seed as f32 * 0.9,
    );
    // Fine texture of its own (a seeded value noise in 6-pixel cells), as every photo has.
    let cell = |i: u32, j: u32| {
        let h = (i.wrapping_mul(73_856_093)
            ^ j.wrapping_mul(19_349_663)
            ^ seed.wrapping_mul(83_492_791))
        .wrapping_mul(2_654_435_761);
        (h >> 24) as f32 / 255.0 - 0.5
    };
    RgbImage::from_fn(160, 120, |x, y| {
        let (fx, fy) = (x as f32 / 160.0, y as f32 / 120.0);
        let (gx, gy) = (x as f32 / 6.0, y as f32 / 6.0);
        let (i, j) = (gx as u32, gy as u32);
        let (tx, ty) = (gx.fract(), gy.fract());
        let noise = (cell(i, j) * (1.0 - tx) + cell(i + 1, j) * tx) * (1.0 - ty)
            + (cell(i, j + 1) * (1.0 - tx) + cell(i + 1, j + 1) * tx) * ty;
        let v = 0.5 + 0.3 * (a * 3.1 * fx + c).sin() * (b * 2.3 * fy + fx * a).cos() + 0.35 * noise;
        let v = v.clamp(0.0, 1.0);
        Rgb(tint.map(|t| (v * t as f32 + (1.0 - v) * 245.0) as u8))
    })
}

/// The tutorial's augmented copies of one photo: flipped, half size, re-encoded as JPEG.
fn copies(img: &RgbImage) -> Vec<(&'static str, Vec<u8>)> {
    let half = imageops::resize(img, 80, 60, imageops::FilterType::Triangle);
    vec![
        ("orig.png", png(img)),
        ("flip.png", png(&imageops::flip_horizontal(img))),
        ("half.png", png(&half)),
        ("jpeg.jpg", jpeg(img)),
    ]
}

const RED: [u8; 3] = [230, 60, 40];
const BLUE: [u8; 3] = [40, 70, 230];

/// `data/<class>/p<k>_<copy>`: `photos` photos per class, each with its copies.
fn augmented(dir: &Dir, photos: u32) {
    for (class, tint, offset) in [("red", RED, 0), ("blue", BLUE, 6)] {
        for k in 0..photos {
            for (name, bytes) in copies(&photo(offset + k, tint)) {
                dir.write(&format!("data/{class}/p{k:02}_{name}"), &bytes);
            }
        }
    }
}

fn q(dir: &Dir, args: &[&str]) -> (Value, i32, String) {
    q_fixture(dir, args)
}

fn ok(dir: &Dir, args: &[&str]) -> Value {
    let (json, code, err) = q(dir, args);
    assert_eq!(code, 0, "qcyn {args:?} failed: {err}\n{json}");
    json
}

/// The photo a file is a copy of (`p03` of `red/p03_flip.png`), with its class.
fn photo_of(path: &str) -> String {
    let mut it = path.rsplit('/');
    let file = it.next().unwrap();
    format!("{}/{}", it.next().unwrap(), &file[..3])
}

#[test]
fn dups_json_lists_the_copies_of_each_photo_and_cross_class_groups() {
    require_runtime();
    let dir = Dir::new();
    augmented(&dir, 3);
    // The same photo saved in the wrong class too: a likely labelling error.
    dir.write("data/blue/stray.png", &png(&photo(1, RED)));
    let json = ok(&dir, &["dups", "data", "--model", "tiny"]);
    let groups = json["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 6, "{json}");
    for g in groups {
        let paths: Vec<&str> = g
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(
            paths.iter().all(|p| p.starts_with("data/")),
            "paths as given: {paths:?}"
        );
        let photos: std::collections::BTreeSet<String> = paths
            .iter()
            .filter(|p| !p.ends_with("stray.png"))
            .map(|p| photo_of(p))
            .collect();
        assert_eq!(photos.len(), 1, "one photo per group: {paths:?}");
        assert!(paths.len() >= 4, "every copy found: {paths:?}");
    }
    let cross = json["cross_class"].as_array().expect("cross_class");
    assert_eq!(cross.len(), 1, "{json}");
    let members: Vec<&str> = cross[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        members.contains(&"data/blue/stray.png") && members.contains(&"data/red/p01_orig.png"),
        "{members:?}"
    );

    // Distinct photos only: no group.
    let other = Dir::new();
    for k in 0..4 {
        other.write(&format!("data/red/{k}.png"), &png(&photo(k, RED)));
        other.write(&format!("data/blue/{k}.png"), &png(&photo(6 + k, BLUE)));
    }
    let json = ok(&other, &["dups", "data", "--model", "tiny"]);
    assert_eq!(json["groups"], serde_json::json!([]), "{json}");
    assert_eq!(json["cross_class"], serde_json::json!([]), "{json}");

    // An unreadable image: listed, exit 3.
    other.write("data/red/broken.jpg", b"\xFF\xD8\xFFnot really");
    let (json, code, _) = q(&other, &["dups", "data", "--model", "tiny"]);
    assert_eq!(code, 3, "{json}");
    assert!(
        json["skipped"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("broken.jpg"),
        "{json}"
    );
    assert_eq!(json["groups"], serde_json::json!([]), "{json}");
}

#[test]
fn augmented_copies_of_one_photo_never_land_on_both_sides_of_the_default_split() {
    require_runtime();
    let dir = Dir::new();
    augmented(&dir, 6);
    for seed in ["0", "1", "2", "3"] {
        let out = format!("b{seed}");
        let fit = ok(
            &dir,
            &[
                "fit",
                "data",
                "--model",
                "tiny",
                "--val-per-class",
                "8",
                "--seed",
                seed,
                "--out",
                &out,
                "--threads",
                "1",
                "--l2",
                "1",
            ],
        );
        assert_eq!(fit["groups_kept_together"], 12, "{fit}");
        assert_eq!(fit["n_val"], 16, "two photos' copies per class: {fit}");
        // 4 distinct photos held out say little: every photo is held out once instead.
        assert_eq!(fit["accuracy_from"], "grouped_cv", "{fit}");
        let e = &fit["estimate"];
        assert_eq!(
            (e["photos"].as_u64(), e["images"].as_u64()),
            (Some(12), Some(48)),
            "{e}"
        );
        assert_eq!(e["folds"], 5, "6 photos per class allow 5 folds: {e}");
        assert_eq!(fit["accuracy"], e["accuracy"]);
        assert!(fit["held_out_accuracy"].is_number(), "{fit}");
        let report = std::fs::read_to_string(dir.path(&format!("{out}/report.txt"))).unwrap();
        assert!(
            report.contains("grouped 5-fold cross-validation"),
            "{report}"
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.path(&format!("{out}/split.json"))).unwrap())
                .unwrap();
        assert_eq!(manifest["groups"].as_array().map(Vec::len), Some(12));
        let mut side: HashMap<String, &str> = HashMap::new();
        for part in ["train", "val", "test"] {
            for e in manifest[part].as_array().unwrap() {
                let p = photo_of(e["path"].as_str().unwrap());
                let before = side.insert(p.clone(), part);
                assert!(
                    before.is_none_or(|b| b == part),
                    "seed {seed}: {p} in {before:?} and {part}"
                );
            }
        }
    }
    // --no-group: the old image-by-image split, which does put copies on both sides.
    let split = ok(
        &dir,
        &[
            "split",
            "data",
            "--model",
            "tiny",
            "--val-per-class",
            "8",
            "--no-group",
            "--out",
            "plain.json",
        ],
    );
    assert_eq!(split["groups_kept_together"], 0);
    assert_eq!(split["grouping"], false);
    let grouped = ok(
        &dir,
        &[
            "split",
            "data",
            "--model",
            "tiny",
            "--val-per-class",
            "8",
            "--out",
            "grouped.json",
        ],
    );
    assert_eq!(grouped["groups_kept_together"], 12, "{grouped}");
    let plain: Value =
        serde_json::from_slice(&std::fs::read(dir.path("plain.json")).unwrap()).unwrap();
    assert!(
        plain.get("groups").is_none(),
        "no groups recorded without grouping"
    );
    let val: std::collections::BTreeSet<String> = plain["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| photo_of(e["path"].as_str().unwrap()))
        .collect();
    let train: std::collections::BTreeSet<String> = plain["train"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| photo_of(e["path"].as_str().unwrap()))
        .collect();
    assert!(
        val.intersection(&train).next().is_some(),
        "ungrouped, copies leak: {val:?}"
    );
    // Ungrouped, fit reports the held-out part as it is (the user turned the guard off).
    let plain_fit = ok(
        &dir,
        &[
            "fit",
            "data",
            "--model",
            "tiny",
            "--val-per-class",
            "8",
            "--no-group",
            "--out",
            "bp",
            "--threads",
            "1",
            "--l2",
            "1",
        ],
    );
    assert_eq!(plain_fit["accuracy_from"], "held_out", "{plain_fit}");
    assert!(plain_fit.get("estimate").is_none(), "{plain_fit}");
    assert_eq!(plain_fit["accuracy"], plain_fit["held_out_accuracy"]);
}

#[test]
fn split_trains_on_a_class_of_copies_without_holding_it_out_and_no_group_splits_it() {
    require_runtime();
    let dir = Dir::new();
    for (name, bytes) in copies(&photo(3, RED)) {
        dir.write(&format!("data/red/{name}"), &bytes);
    }
    for k in 0..4 {
        dir.write(&format!("data/blue/{k}.png"), &png(&photo(6 + k, BLUE)));
    }
    let json = ok(
        &dir,
        &["split", "data", "--model", "tiny", "--val-per-class", "1"],
    );
    assert_eq!(json["n_val"], 1, "only blue is held out: {json}");
    let notes = json["notes"].to_string();
    assert!(
        notes.contains("class `red`: all its 4 images are near-duplicates of one another")
            && notes.contains("none held out"),
        "{json}"
    );
    // Every red copy is a copy of one photo: red alone cannot be validated on, so when blue is a
    // single group too the split is refused with why and the fix.
    for k in 0..4 {
        dir.write(&format!("data/blue/{k}.png"), &png(&photo(6, BLUE)));
    }
    let m = fixture_models();
    let out = dir.run(&[
        "--models-dir",
        &m,
        "split",
        "data",
        "--model",
        "tiny",
        "--val-per-class",
        "1",
        "--out",
        "none.json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("class `red`: all its 4 images are near-duplicates of one another")
            && err.contains("no class is left to validate on"),
        "{err}"
    );
    assert!(
        err.contains("hint: ") && err.contains("--no-group"),
        "{err}"
    );
    let json = ok(
        &dir,
        &[
            "split",
            "data",
            "--model",
            "tiny",
            "--val-per-class",
            "1",
            "--no-group",
        ],
    );
    assert_eq!(json["n_val"], 2);
    // An old manifest (written before groups existed) is still read by fit.
    let fit = ok(
        &dir,
        &[
            "fit",
            "data",
            "--model",
            "tiny",
            "--split",
            "split.json",
            "--out",
            "b",
            "--l2",
            "1",
            "--threads",
            "1",
        ],
    );
    assert_eq!(fit["grouping"], false);
}
