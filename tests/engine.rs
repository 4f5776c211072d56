//! The engine: decoding every kind of input, the backbone, the feature cache, `extract`, `models`
//! and `bench`.
use std::path::PathBuf;

use image::{Rgb, RgbImage};
use qcyn::backbone::SessionOptions;
use qcyn::models::Model;
use qcyn::pipeline::Pipeline;
use qcyn::preprocess::decode_rgb;

use crate::util::*;

/// The whole-image part of a manifest.
fn whole(model: &Model) -> &qcyn::models::WholeSpec {
    model.manifest.whole().expect("a whole-image model")
}

// ---------------------------------------------------------------- decoding

/// The reason an image is refused; panics (without printing pixels) when it decodes.
fn problem(bytes: &[u8]) -> String {
    match decode_rgb(bytes) {
        Ok(img) => panic!(
            "decoded a {:?} image that should have been refused",
            img.dimensions()
        ),
        Err(e) => e.0,
    }
}

#[test]
fn decode_rejects_damaged_files_with_reasons() {
    let e = problem(&[]);
    assert!(e.contains("empty"), "{e}");

    let good = jpeg(&pattern(64, 48, 1));
    let e = problem(&good[..good.len() / 3]);
    assert!(e.contains("damaged or truncated"), "{e}");

    let e = problem(b"this is a text file, not a photo\n");
    assert!(e.contains("not a recognised image format"), "{e}");
}

#[test]
fn decode_refuses_a_decompression_bomb() {
    let bomb = png_declaring(50_000, 50_000);
    assert!(bomb.len() < 100, "the bomb itself is tiny");
    let e = problem(&bomb);
    assert!(e.contains("too large"), "{e}");
}

#[test]
fn decode_turns_cmyk_jpeg_into_rgb() {
    // 16 x 16 pure cyan in CMYK: C = 255, M = Y = K = 0.
    let cmyk: Vec<u8> = (0..16 * 16).flat_map(|_| [255u8, 0, 0, 0]).collect();
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 95)
        .encode(&cmyk, 16, 16, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let img = decode_rgb(&bytes).unwrap();
    assert_eq!(img.dimensions(), (16, 16));
    let p = img.get_pixel(8, 8).0;
    // Cyan: little red, much green and blue (whatever the Adobe inversion convention, the decoder
    // must give a colour, not garbage or an error).
    assert!(
        p[0] < 80 && p[1] > 170 && p[2] > 170,
        "cyan came out as {p:?}"
    );
}

#[test]
fn decode_reads_16_bit_png() {
    let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(
        10,
        6,
        image::Rgb([65535u16, 32896, 0]),
    );
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb16(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    let rgb = decode_rgb(out.get_ref()).unwrap();
    assert_eq!(rgb.get_pixel(3, 3).0, [255, 128, 0]);
}

#[test]
fn decode_reads_palette_png_with_transparency() {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 4, 4);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
        enc.set_trns(vec![255, 0]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0])
            .unwrap();
    }
    let rgb = decode_rgb(&bytes).unwrap();
    assert_eq!(rgb.dimensions(), (4, 4));
    assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(
        rgb.get_pixel(1, 0).0,
        [0, 0, 255],
        "transparent pixels keep their palette colour"
    );
}

#[test]
fn decode_takes_the_first_frame_of_an_animated_gif() {
    let mut bytes = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut bytes);
        for c in [[255u8, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]] {
            let frame = image::RgbaImage::from_pixel(8, 8, image::Rgba(c));
            enc.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    let rgb = decode_rgb(&bytes).unwrap();
    let p = rgb.get_pixel(4, 4).0;
    assert!(
        p[0] > 200 && p[1] < 50 && p[2] < 50,
        "first frame is red, got {p:?}"
    );
}

#[test]
fn decode_applies_exif_orientation() {
    // 40 x 20: left half black, right half white. Orientation 6 = rotate 90° clockwise to view.
    let img = RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let rotated = with_exif_orientation(&jpeg(&img), 6);
    let out = decode_rgb(&rotated).unwrap();
    assert_eq!(out.dimensions(), (20, 40), "rotated to portrait");
    assert!(
        out.get_pixel(10, 5).0[0] < 40,
        "top was the left (black) half"
    );
    assert!(
        out.get_pixel(10, 35).0[0] > 215,
        "bottom was the right (white) half"
    );
    let plain = decode_rgb(&jpeg(&img)).unwrap();
    assert_eq!(plain.dimensions(), (40, 20), "no tag, no rotation");
}

#[test]
fn greyscale_becomes_rgb() {
    let grey = image::GrayImage::from_pixel(5, 5, image::Luma([77]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(grey)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    assert_eq!(
        decode_rgb(out.get_ref()).unwrap().get_pixel(2, 2).0,
        [77, 77, 77]
    );
}

// ---------------------------------------------------------------- backbone

fn tiny_model() -> Model {
    Model::load(std::path::Path::new(&fixture_model("tiny"))).unwrap()
}

#[test]
fn tiny_backbone_gives_the_hand_computed_features() {
    let mut pipeline = Pipeline::open(
        &ort_env(),
        &tiny_model(),
        SessionOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let a = png(&solid(8, 8, [255, 0, 51]));
    let b = png(&solid(30, 17, [0, 255, 0]));
    let out = pipeline.embed(&[&a, &b, b"not an image"]).unwrap();
    let fa = &out[0].as_ref().unwrap()[0].vector;
    let fb = &out[1].as_ref().unwrap()[0].vector;
    for (got, want) in fa.iter().zip([1.0, 0.0, 0.2, 1.0]) {
        assert!((got - want).abs() < 1e-6, "{fa:?}");
    }
    for (got, want) in fb.iter().zip([0.0, 1.0, 0.0, 1.0]) {
        assert!((got - want).abs() < 1e-6, "{fb:?}");
    }
    assert!(out[2].is_err());
}

#[test]
fn centre_crop_keeps_the_centre() {
    // 24 x 8: red | green | blue thirds. Shorter side 8 → 8 x 8 centre crop is the green third.
    let img = RgbImage::from_fn(24, 8, |x, _| match x / 8 {
        0 => Rgb([255, 0, 0]),
        1 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    });
    let mut pipeline =
        Pipeline::open(&ort_env(), &tiny_model(), SessionOptions::default()).unwrap();
    let out = pipeline.embed(&[&png(&img)]).unwrap();
    let f = &out[0].as_ref().unwrap()[0].vector;
    assert!(f[0] < 0.05 && f[1] > 0.95 && f[2] < 0.05, "{f:?}");
}

#[test]
fn bad_models_are_clear_errors() {
    let dir = Dir::new();
    make_dataset(&dir, "data", &["a", "b"], 2);
    let out = dir.run(&["extract", "data", "--model", &fixture_model("not_onnx")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not_onnx.onnx") && err.contains("not an ONNX model"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = dir.run(&["extract", "data", "--model", &fixture_model("wrong_shape")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("wrong_shape.onnx") && err.contains("16") && err.contains("manifest"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_model_file_that_changed_is_refused() {
    let dir = Dir::new();
    make_dataset(&dir, "data", &["a"], 1);
    let fixtures = project().join("tests/fixtures/models");
    std::fs::copy(fixtures.join("tiny.onnx"), dir.path("tiny.onnx")).unwrap();
    let manifest = std::fs::read_to_string(fixtures.join("tiny.toml")).unwrap();
    let manifest = manifest.replace("sha256 = \"0", "sha256 = \"1");
    std::fs::write(dir.path("tiny.toml"), manifest).unwrap();
    let out = dir.run(&[
        "extract",
        "data",
        "--model",
        dir.path("tiny.toml").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sha256") && err.contains("scripts/setup"),
        "{err}"
    );
}

#[test]
fn a_missing_runtime_says_where_it_looked_and_how_to_fix_it() {
    let dir = Dir::new();
    make_dataset(&dir, "data", &["a"], 1);
    let out = dir.run(&[
        "extract",
        "data",
        "--model",
        &fixture_model("tiny"),
        "--ort-dylib",
        "/nowhere/libonnxruntime.so",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("/nowhere/libonnxruntime.so") && err.contains("scripts/setup"),
        "{err}"
    );
}

// ---------------------------------------------------------------- extract and its cache

fn extract_json(dir: &Dir, data: &str, extra: &[&str]) -> (serde_json::Value, i32) {
    let model = fixture_model("tiny");
    let mut args = vec!["extract", data, "--model", model.as_str(), "--batch", "4"];
    args.extend_from_slice(extra);
    let (json, code, stderr) = dir.json(&args);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (json, code)
}

#[test]
fn second_extract_runs_the_backbone_zero_times_and_new_images_only_once() {
    let dir = Dir::new();
    make_dataset(&dir, "data", &["cats", "dogs"], 6);
    let (first, code) = extract_json(&dir, "data", &[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(
        (
            first["images"].as_u64(),
            first["extracted"].as_u64(),
            first["cached"].as_u64()
        ),
        (Some(12), Some(12), Some(0))
    );
    assert_eq!(first["backbone_runs"], 12);
    assert_eq!(first["skipped"].as_array().unwrap().len(), 0);

    let (second, _) = extract_json(&dir, "data", &[]);
    assert_eq!(
        (second["extracted"].as_u64(), second["cached"].as_u64()),
        (Some(0), Some(12))
    );
    assert_eq!(second["backbone_runs"], 0);

    for i in 0..10 {
        dir.write(
            &format!("data/dogs/new{i}.png"),
            &png(&pattern(30, 30, 100 + i)),
        );
    }
    let (third, _) = extract_json(&dir, "data", &[]);
    assert_eq!(
        (
            third["images"].as_u64(),
            third["extracted"].as_u64(),
            third["cached"].as_u64()
        ),
        (Some(22), Some(10), Some(12))
    );
    assert_eq!(third["backbone_runs"], 10);
}

#[test]
fn a_corrupt_cache_entry_is_detected_and_recomputed() {
    let dir = Dir::new();
    make_dataset(&dir, "data", &["a", "b"], 3);
    extract_json(&dir, "data", &[]);
    let entries = feat_files(&dir.path("cache"));
    assert_eq!(entries.len(), 6);
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&entries[0], &bytes).unwrap();
    std::fs::write(&entries[1], b"").unwrap();
    let (again, code) = extract_json(&dir, "data", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        (again["extracted"].as_u64(), again["cached"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(again["corrupt_recomputed"], 2);
}

fn feat_files(root: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "feat") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn killed_extract_loses_at_most_the_batch_in_flight() {
    let dir = Dir::new();
    // Large enough images that the run takes a while.
    for i in 0..120u32 {
        let class = if i % 2 == 0 { "a" } else { "b" };
        dir.write(
            &format!("data/{class}/{i:03}.png"),
            &png(&pattern(900, 700, i)),
        );
    }
    let model = fixture_model("tiny");
    let mut child = dir
        .qcyn()
        .args([
            "extract",
            "data",
            "--model",
            &model,
            "--batch",
            "4",
            "--threads",
            "1",
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while feat_files(&dir.path("cache")).len() < 8 {
        assert!(start.elapsed().as_secs() < 60, "extract made no progress");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = feat_files(&dir.path("cache")).len();
    assert!(kept >= 8, "entries written before the kill survive");
    let (resumed, code) = extract_json(&dir, "data", &[]);
    assert_eq!(code, 0, "{resumed}");
    assert_eq!(
        resumed["corrupt_recomputed"], 0,
        "no entry was half-written"
    );
    assert_eq!(
        resumed["cached"].as_u64().unwrap() + resumed["extracted"].as_u64().unwrap(),
        120
    );
    assert!(resumed["cached"].as_u64().unwrap() >= kept as u64);
    assert_eq!(feat_files(&dir.path("cache")).len(), 120);
}

#[test]
fn bad_images_are_skipped_with_reasons_and_a_distinct_exit_code() {
    let dir = Dir::new();
    make_dataset(&dir, "data", &["good", "mixed"], 3);
    dir.write("data/mixed/empty.jpg", b"");
    let j = jpeg(&pattern(80, 60, 3));
    dir.write("data/mixed/truncated.jpg", &j[..j.len() / 2]);
    dir.write("data/mixed/notes.jpg", b"shopping list: milk, eggs\n");
    dir.write("data/mixed/bomb.png", &png_declaring(50_000, 50_000));
    dir.write("data/mixed/readme.txt", b"not an image at all");
    std::fs::create_dir_all(dir.path("data/empty_class")).unwrap();
    std::os::unix::fs::symlink(dir.path("nowhere.jpg"), dir.path("data/mixed/dangling.jpg"))
        .unwrap();
    {
        // A name that is not UTF-8 is no bad input (issue 12): the photo is read.
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
        std::fs::write(dir.path("data/mixed").join(name), png(&pattern(10, 10, 1))).unwrap();
    }
    let (json, code) = extract_json(&dir, "data", &[]);
    assert_eq!(code, 3, "some images skipped: exit code 3; {json}");
    assert_eq!(json["extracted"], 7, "{json}");
    let skipped = json["skipped"].as_array().unwrap();
    let reason = |name: &str| -> String {
        skipped
            .iter()
            .find(|s| s["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} not in skipped: {json}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("empty.jpg").contains("empty"));
    assert!(reason("truncated.jpg").contains("truncated"));
    assert!(reason("notes.jpg").contains("not a recognised image format"));
    assert!(reason("bomb.png").contains("too large"));
    assert!(reason("readme.txt").contains("not an image file"));
    assert!(reason("empty_class").contains("no images"));
    assert!(reason("dangling.jpg").contains("cannot read"));
    assert!(
        !skipped
            .iter()
            .any(|s| s["reason"].as_str().unwrap().contains("UTF-8")),
        "{json}"
    );
    assert_eq!(skipped.len(), 7, "{json}");

    // The text summary lists them too.
    let out = dir.run(&["extract", "data", "--model", &fixture_model("tiny")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("7 skipped") && text.contains("bomb.png"),
        "{text}"
    );
}

#[test]
fn an_empty_dataset_is_an_error_naming_the_folder() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("data/a")).unwrap();
    let out = dir.run(&["extract", "data", "--model", &fixture_model("tiny")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("data") && err.contains("no images"), "{err}");
    let out = dir.run(&[
        "extract",
        "missing-folder",
        "--model",
        &fixture_model("tiny"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing-folder"), "{err}");
}

// ---------------------------------------------------------------- models and bench

#[test]
fn models_json_lists_every_backbone() {
    let dir = Dir::new();
    let (json, code, _) = dir.json(&["models"]);
    assert_eq!(code, 0);
    let list = json.as_array().unwrap();
    for name in ["mobilenetv2", "xception71", "face"] {
        let m = list
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {json}"));
        for field in ["path", "sha256", "available", "random_weights"] {
            assert!(m.get(field).is_some(), "{name} lacks {field}");
        }
    }
    let x = list.iter().find(|m| m["name"] == "xception71").unwrap();
    assert_eq!(x["random_weights"], true);
    let m = list.iter().find(|m| m["name"] == "mobilenetv2").unwrap();
    assert_eq!(m["random_weights"], false);
}

#[test]
fn bench_reports_latency_per_batch_size() {
    let dir = Dir::new();
    make_dataset(&dir, "imgs", &["x"], 4);
    let (json, code, err) = dir.json(&[
        "bench",
        "--model",
        &fixture_model("tiny"),
        "--batch",
        "1,4",
        "--seconds",
        "0.05",
        "--images",
        "imgs",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["model"], "tiny");
    assert_eq!(json["provider"], "CPUExecutionProvider");
    assert_eq!(json["random_weights"], false);
    for part in ["results", "pipeline"] {
        let rows = json[part].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{json}");
        for (r, b) in rows.iter().zip([1, 4]) {
            assert_eq!(r["batch"], b);
            let (p50, p95, ips) = (
                r["p50_ms"].as_f64().unwrap(),
                r["p95_ms"].as_f64().unwrap(),
                r["images_per_s"].as_f64().unwrap(),
            );
            assert!(p50 > 0.0 && p95 >= p50 && ips > 0.0, "{r}");
        }
    }
    // The images once through extract: every one run, by one session per thread.
    let e = &json["extract"];
    assert_eq!(e["images"], 4, "{json}");
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    assert_eq!(e["sessions"], threads, "{json}");
    assert!(e["images_per_s"].as_f64().unwrap() > 0.0, "{json}");
}

// ---------------------------------------------------------------- the real MobileNetV2

#[test]
fn mobilenetv2_matches_the_pytorch_reference() {
    let reference: serde_json::Value = serde_json::from_str(include_str!(
        "fixtures/reference/mobilenetv2_synthetic_input.json"
    ))
    .unwrap();
    let model = Model::load(&project().join("models/mobilenetv2.toml")).unwrap();
    let path = require_model_file("mobilenetv2.onnx");
    assert_eq!(
        qcyn::models::sha256_file(&path).unwrap(),
        model.manifest.sha256().unwrap().to_string()
    );
    // x[0,c,h,w] = sin(0.05*h + 0.03*w + c) * (1 + 0.5*c)
    let mut x = vec![0f32; 3 * 224 * 224];
    for c in 0..3 {
        for h in 0..224 {
            for w in 0..224 {
                x[(c * 224 + h) * 224 + w] = ((0.05 * h as f64 + 0.03 * w as f64 + c as f64).sin()
                    * (1.0 + 0.5 * c as f64)) as f32;
            }
        }
    }
    let mut session =
        qcyn::backbone::open_session(&ort_env(), &path, SessionOptions::default()).unwrap();
    let input = ort::value::TensorRef::from_array_view(([1usize, 3, 224, 224], &x[..])).unwrap();
    let out = session.run(ort::inputs!["input" => input]).unwrap();
    let (_, feats) = out["features"].try_extract_tensor::<f32>().unwrap();
    let (_, logits) = out["logits"].try_extract_tensor::<f32>().unwrap();
    let close = |got: &[f32], key: &str| {
        for (g, w) in got.iter().zip(reference[key].as_array().unwrap()) {
            assert!(
                (*g as f64 - w.as_f64().unwrap()).abs() < 1e-3,
                "{key}: {g} vs {w}"
            );
        }
    };
    close(&feats[..16], "pooled_features_first16");
    close(&logits[..16], "logits_first16");
    let norm = feats
        .iter()
        .map(|v| (*v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - reference["pooled_features_l2norm"].as_f64().unwrap()).abs() < 1e-3);
    let top = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(top as u64, reference["top5"][0][0].as_u64().unwrap());
}

#[test]
fn mobilenetv2_with_qcyn_preprocessing_gets_the_reference_top1_on_real_photos() {
    let reference: serde_json::Value = serde_json::from_str(include_str!(
        "fixtures/reference/mobilenetv2_imagenet_top5.json"
    ))
    .unwrap();
    let photos = project().join(".qcyn/testdata/imagenet");
    let model = Model::load(&project().join("models/mobilenetv2.toml")).unwrap();
    let path = require_model_file("mobilenetv2.onnx");
    let pre = qcyn::preprocess::Preprocessor::new(&whole(&model).preprocess, &whole(&model).input);
    let mut session =
        qcyn::backbone::open_session(&ort_env(), &path, SessionOptions::default()).unwrap();
    let mut checked = 0;
    for (name, entry) in reference["images"].as_object().unwrap() {
        let file = photos.join(name);
        if !file.is_file() {
            continue;
        }
        let mut x = vec![0f32; pre.tensor_len()];
        pre.prepare_bytes(&std::fs::read(&file).unwrap(), &mut x)
            .unwrap();
        let input =
            ort::value::TensorRef::from_array_view(([1usize, 3, 224, 224], &x[..])).unwrap();
        let out = session.run(ort::inputs!["input" => input]).unwrap();
        let (_, logits) = out["logits"].try_extract_tensor::<f32>().unwrap();
        let top = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(
            top as u64,
            entry["top5"][0][0].as_u64().unwrap(),
            "{name}: top-1 differs from the reference"
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "only {checked} reference photos found in {}: run scripts/setup",
        photos.display()
    );
}

#[test]
fn large_jpegs_decode_reduced_with_nearly_the_same_tensor() {
    use qcyn::preprocess::{decode_rgb_at_least, Preprocessor};
    // A smooth 2048 x 1536 photo-like image: its shorter side is 6x the 256 the model needs, so
    // it may be decoded at 1/4 scale in the DCT domain.
    let img = RgbImage::from_fn(2048, 1536, |x, y| {
        let (fx, fy) = (x as f32 / 2048.0, y as f32 / 1536.0);
        let ring = (((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt() * 40.0).sin() * 60.0;
        Rgb([
            (fx * 200.0 + ring + 30.0) as u8,
            (fy * 180.0 + 40.0) as u8,
            (128.0 + ring) as u8,
        ])
    });
    let bytes = jpeg(&img);
    let reduced = decode_rgb_at_least(&bytes, Some(256)).unwrap();
    assert_eq!(
        reduced.dimensions(),
        (512, 384),
        "decoded at 1/4 in the DCT domain"
    );
    let full = decode_rgb(&bytes).unwrap();
    assert_eq!(full.dimensions(), (2048, 1536));
    assert_eq!(
        decode_rgb_at_least(&bytes, Some(1000))
            .unwrap()
            .dimensions(),
        (2048, 1536),
        "1/2 is not used"
    );

    let model = Model::load(&project().join("models/mobilenetv2.toml")).unwrap();
    let pre = Preprocessor::new(&whole(&model).preprocess, &whole(&model).input);
    let (mut a, mut b) = (vec![0f32; pre.tensor_len()], vec![0f32; pre.tensor_len()]);
    pre.prepare(&full, &mut a).unwrap();
    pre.prepare(&reduced, &mut b).unwrap();
    let mad = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    // One 8-bit step is 1/255/0.225 ≈ 0.017 after normalisation.
    assert!(mad < 0.03, "mean absolute difference {mad}");
}

#[test]
fn xception71_is_the_default_once_its_pretrained_weights_are_installed() {
    use qcyn::models::{default_model, Registry};
    let dir = Dir::new();
    let fixtures = project().join("tests/fixtures/models");
    std::fs::create_dir_all(dir.path("models")).unwrap();
    std::fs::copy(fixtures.join("tiny.onnx"), dir.path("models/tiny.onnx")).unwrap();
    let tiny = std::fs::read_to_string(fixtures.join("tiny.toml")).unwrap();
    let write = |name: &str, random: bool| {
        let text = tiny
            .replace("name = \"tiny\"", &format!("name = \"{name}\""))
            .replace(
                "random_weights = false",
                &format!("random_weights = {random}"),
            );
        std::fs::write(dir.path(&format!("models/{name}.toml")), text).unwrap();
    };
    let default = || default_model(&Registry::load(&dir.path("models")).unwrap()).name;
    write("mobilenetv2", false);
    write("xception71", true);
    assert_eq!(
        default(),
        "mobilenetv2",
        "random weights are never the default"
    );
    write("xception", false);
    assert_eq!(
        default(),
        "xception+mobilenetv2",
        "without pretrained Xception71, the fusion of the two pretrained models"
    );
    write("xception71", false);
    assert_eq!(default(), "xception71");
    // A part with random weights makes a fusion random, and so never the default.
    write("xception71", true);
    write("xception", true);
    assert_eq!(default(), "mobilenetv2");
}
