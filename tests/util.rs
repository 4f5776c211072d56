//! Helpers shared by the integration tests: a temporary folder, the `qcyn` binary, image makers.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{Rgb, RgbImage};
use serde_json::Value;

/// The source tree.
pub fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture manifest by name (`tests/fixtures/models/<name>.toml`).
pub fn fixture_model(name: &str) -> String {
    project()
        .join("tests/fixtures/models")
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

/// Panics with the fix when `scripts/setup` has not been run: tests that need ONNX Runtime must
/// not pass vacuously.
pub fn require_runtime() {
    let lib = project().join("runtime").join(qcyn::runtime::DYLIB_NAME);
    assert!(
        lib.is_file(),
        "{} is missing: run scripts/setup before the tests",
        lib.display()
    );
}

/// Panics with the fix when a model built by `scripts/setup` is missing.
pub fn require_model_file(file: &str) -> PathBuf {
    let p = project().join("models/onnx").join(file);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup before the tests",
        p.display()
    );
    p
}

/// A temporary folder that also serves as the cache root of the commands run in it.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes bytes to `rel`, creating folders.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `qcyn` with this folder's cache.
    pub fn qcyn(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_qcyn"));
        c.env("QCYN_CACHE_DIR", self.path("cache"))
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("QCYN_MODELS_DIR");
        c.current_dir(self.root());
        c
    }

    /// Runs `qcyn args…` and returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.qcyn().args(args).output().expect("qcyn runs")
    }

    /// Runs `qcyn args… --json`, parses stdout, returns (json, exit code, stderr).
    pub fn json(&self, args: &[&str]) -> (Value, i32, String) {
        let out = self
            .qcyn()
            .args(args)
            .arg("--json")
            .output()
            .expect("qcyn runs");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (json, out.status.code().unwrap_or(-1), stderr)
    }
}

/// PNG bytes of an image.
pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// JPEG bytes of an image.
pub fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A solid image.
pub fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(c))
}

/// A deterministic colourful image, different for each `seed`.
pub fn pattern(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = x.wrapping_mul(7 + seed) ^ y.wrapping_mul(13 + 3 * seed);
        Rgb([
            (v % 251) as u8,
            ((v / 3 + seed * 40) % 253) as u8,
            ((x + y + seed * 17) % 255) as u8,
        ])
    })
}

/// A folder-per-class dataset of `per_class` PNGs per class under `dir`.
pub fn make_dataset(dir: &Dir, rel: &str, classes: &[&str], per_class: u32) -> PathBuf {
    for (k, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            let img = pattern(24 + i % 5, 20 + k as u32, i * 10 + k as u32);
            dir.write(&format!("{rel}/{class}/img{i:03}.png"), &png(&img));
        }
    }
    dir.path(rel)
}

/// CRC-32 (PNG's), for hand-made PNG chunks.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A tiny PNG file whose header declares `w` × `h` pixels (a decompression bomb).
pub fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes: far too little data, but the header is what matters.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A JPEG with an EXIF orientation tag inserted after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The process's ONNX Runtime environment (loaded once from the project's runtime folder).
pub fn ort_env() -> ort::environment::Environment {
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        require_runtime();
        let lib = project().join("runtime").join(qcyn::runtime::DYLIB_NAME);
        ort::init_from(lib)
            .expect("load ONNX Runtime")
            .with_name("qcyn-test")
            .build()
            .expect("environment")
    })
    .clone()
}

/// The folder of the tiny model fixtures (`tests/fixtures/models`).
pub fn fixture_models() -> String {
    project()
        .join("tests/fixtures/models")
        .display()
        .to_string()
}

/// `qcyn --models-dir <fixtures> args… --json` in `dir`: (json, exit code, stderr), never a panic.
pub fn q_fixture(dir: &Dir, args: &[&str]) -> (Value, i32, String) {
    let m = fixture_models();
    let mut all = vec!["--models-dir", m.as_str()];
    all.extend_from_slice(args);
    let (json, code, err) = dir.json(&all);
    assert!(!err.contains("panicked"), "{err}");
    (json, code, err)
}

/// 8×8 photos of two classes (`red`, `blue`, 10 each): the tiny fixture model's input size, so
/// its preprocessing is only `x / 255` and Python can make exactly the tensor qcyn makes.
pub fn tiny_dataset(dir: &Dir) {
    for (k, class) in ["red", "blue"].iter().enumerate() {
        for i in 0..10u32 {
            let img = pattern(8, 8, i * 7 + k as u32 * 50);
            dir.write(&format!("data/{class}/p{i}.png"), &png(&img));
        }
    }
}

/// A folder with [`tiny_dataset`] and a bundle `b` fitted on it with the tiny fixture model,
/// `val_per_class` held out per class.
pub fn tiny_fitted(val_per_class: &str) -> Dir {
    let dir = Dir::new();
    tiny_dataset(&dir);
    let (_, code, err) = q_fixture(
        &dir,
        &[
            "fit",
            "data",
            "--model",
            "tiny",
            "--val-per-class",
            val_per_class,
            "--no-group",
            "--l2",
            "1",
            "--out",
            "b",
        ],
    );
    assert_eq!(code, 0, "{err}");
    dir
}
