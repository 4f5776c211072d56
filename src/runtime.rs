//! Where the ONNX Runtime shared library is. The library only *locates* it: loading it and
//! configuring the global environment is the binary's job (`ort::init_from`).
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of the runtime that `scripts/setup` extracts from the `onnxruntime==1.32.0` wheel.
pub const DYLIB_NAME: &str = "libonnxruntime.so.1.32.0";

/// Version of the `onnxruntime-gpu` wheel that `scripts/setup --gpu` takes its library from (the
/// newest with a Linux wheel, built for CUDA 13).
pub const GPU_ORT_VERSION: &str = "1.31.1";

/// The GPU build of ONNX Runtime that `scripts/setup --gpu` extracts (with its CUDA provider
/// libraries beside it).
pub fn gpu_dylib() -> PathBuf {
    default_runtime_dir()
        .join("gpu")
        .join(format!("libonnxruntime.so.{GPU_ORT_VERSION}"))
}

/// The NVIDIA CUDA and cuDNN libraries that `scripts/setup --gpu` extracts.
pub fn gpu_cuda_dir() -> PathBuf {
    default_runtime_dir().join("gpu").join("cuda")
}

/// The qcyn source tree this binary was built from (holds `models/`, `runtime/`, `scripts/`).
pub fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder `scripts/setup` extracts the runtime into.
pub fn default_runtime_dir() -> PathBuf {
    project_dir().join("runtime")
}

/// The folder with the model manifests: `QCYN_MODELS_DIR` if set, else the project's `models/`.
pub fn default_models_dir() -> PathBuf {
    match std::env::var_os("QCYN_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => project_dir().join("models"),
    }
}

/// Finds the ONNX Runtime library: `explicit` (`--ort-dylib`), then `ORT_DYLIB_PATH`, then the
/// project's `runtime/` folder. The error lists every place tried and the command that fixes it.
pub fn locate_dylib(explicit: Option<&Path>) -> Result<PathBuf> {
    locate_dylib_for(explicit, false)
}

/// Like [`locate_dylib`]; with `gpu` (for `--device cuda`), the GPU build that
/// `scripts/setup --gpu` extracted comes first after `--ort-dylib`.
pub fn locate_dylib_for(explicit: Option<&Path>, gpu: bool) -> Result<PathBuf> {
    let mut looked = Vec::new();
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(("--ort-dylib".into(), p.to_path_buf()));
    }
    // `--device cuda` asks for the GPU build more precisely than ORT_DYLIB_PATH (usually set
    // for the CPU one) does, so it comes first when it is there.
    if gpu && explicit.is_none() && gpu_dylib().is_file() {
        return Ok(gpu_dylib());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        candidates.push(("ORT_DYLIB_PATH".into(), PathBuf::from(p)));
    }
    candidates.push((
        "project runtime folder".into(),
        default_runtime_dir().join(DYLIB_NAME),
    ));
    for (source, path) in candidates {
        if path.is_file() {
            return Ok(path);
        }
        let what = if path.exists() {
            "not a file"
        } else {
            "not found"
        };
        looked.push(format!("{source}: {} ({what})", path.display()));
        if source == "--ort-dylib" {
            // An explicit choice that does not work must not silently fall back to another library.
            break;
        }
    }
    Err(Error::config(
        format!("cannot find the ONNX Runtime library; looked in: {}", looked.join("; ")),
        Some(format!(
            "run `{}` to fetch it (onnxruntime 1.32.0 from the Python registry), or pass --ort-dylib PATH",
            project_dir().join("scripts/setup").display()
        )),
    ))
}
