//! Backbone: an ONNX Runtime session that turns prepared images into feature vectors.
//!
//! The execution provider is a setting of the session ([`Device`]); nothing above this module
//! changes with it. Sessions are opened from an [`ort::environment::Environment`] that the binary
//! (or a test) created: the library never configures ONNX Runtime's global state.
use std::path::Path;

use ort::environment::Environment;
use ort::session::{
    builder::{AutoDevicePolicy, GraphOptimizationLevel},
    Session,
};
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::{Layout, Model};

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider (not delivered yet).
    Cuda,
}

impl Device {
    /// ONNX Runtime's name of the execution provider.
    pub fn provider_name(self) -> &'static str {
        match self {
            Device::Cpu => "CPUExecutionProvider",
            Device::Cuda => "CUDAExecutionProvider",
        }
    }
}

/// How to run a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Intra-op threads (0 = ONNX Runtime's default, one per core).
    pub threads: usize,
    /// Execution provider.
    pub device: Device,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 0,
            device: Device::Cpu,
        }
    }
}

/// One feature vector of an image: the whole image, or one face with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// The feature vector.
    pub vector: Vec<f32>,
    /// The face it came from (face models only).
    pub face: Option<FaceBox>,
}

/// A detected face in original image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    /// `[x, y, w, h]` of the face box.
    pub bbox: [f32; 4],
    /// Detector confidence in 0..1.
    pub score: f32,
    /// Five landmarks: right eye, left eye, nose tip, right and left mouth corners (x, y).
    pub landmarks: [[f32; 2]; 5],
}

impl FaceBox {
    /// Number of `f32` values [`FaceBox::to_floats`] writes.
    pub const FLOATS: usize = 15;

    /// Flattens to 15 floats (box, score, landmarks), for the cache.
    pub fn to_floats(&self) -> [f32; 15] {
        let mut out = [0f32; 15];
        out[..4].copy_from_slice(&self.bbox);
        out[4] = self.score;
        for (i, l) in self.landmarks.iter().enumerate() {
            out[5 + 2 * i] = l[0];
            out[6 + 2 * i] = l[1];
        }
        out
    }

    /// Reads what [`FaceBox::to_floats`] wrote.
    pub fn from_floats(f: &[f32]) -> FaceBox {
        let mut landmarks = [[0f32; 2]; 5];
        for (i, l) in landmarks.iter_mut().enumerate() {
            *l = [f[5 + 2 * i], f[6 + 2 * i]];
        }
        FaceBox {
            bbox: [f[0], f[1], f[2], f[3]],
            score: f[4],
            landmarks,
        }
    }
}

/// Opens an ONNX Runtime session on `path` with clear errors for a missing or non-ONNX file.
pub fn open_session(env: &Environment, path: &Path, opts: SessionOptions) -> Result<Session> {
    if !path.is_file() {
        return Err(Error::bad_file(
            path,
            "model file not found",
            Some("run scripts/setup to build the models, or check the manifest's `file`".into()),
        ));
    }
    if opts.device == Device::Cuda {
        return Err(Error::config(
            "the CUDA execution provider is not available in this version of qcyn",
            Some("use --device cpu".into()),
        ));
    }
    // ort's builder asks ONNX Runtime to pick devices by a "max efficiency" policy; qcyn chooses
    // the execution provider itself (`Device`), so it asks for plain CPU, as Python's
    // onnxruntime does with `providers=["CPUExecutionProvider"]`.
    let mut builder = Session::builder(env)?
        .with_auto_device(AutoDevicePolicy::PreferCPU)
        .map_err(ort::Error::from)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?;
    if opts.threads > 0 {
        builder = builder
            .with_intra_threads(opts.threads)
            .map_err(ort::Error::from)?;
    }
    builder.commit_from_file(path).map_err(|e| {
        Error::bad_file(
            path,
            format!("ONNX Runtime cannot load this model: {}", e.message()),
            Some("the file is damaged or not an ONNX model; rebuild it with scripts/setup".into()),
        )
    })
}

/// Shape of a session input or output as ONNX Runtime reports it (-1 for dynamic dimensions).
pub fn outlet_shape(outlets: &[ort::value::Outlet], name: &str) -> Option<Vec<i64>> {
    outlets
        .iter()
        .find(|o| o.name() == name)
        .and_then(|o| o.dtype().tensor_shape())
        .map(|s| s.to_vec())
}

/// A whole-image model: one feature vector per image.
#[derive(Debug)]
pub struct WholeImageBackbone {
    session: Session,
    input_name: String,
    output_name: String,
    dims: [usize; 3],
    dim: usize,
    fixed_batch: Option<usize>,
}

impl WholeImageBackbone {
    /// Opens a whole-image model after checking its file against the manifest: the sha256 (when
    /// `verify_sha256`), and the input and output names and shapes.
    pub fn open(
        env: &Environment,
        model: &Model,
        opts: SessionOptions,
        verify_sha256: bool,
    ) -> Result<Self> {
        let path = model.onnx_path().expect("whole-image manifest has a file");
        if verify_sha256 {
            verify_model_file(model, &path)?;
        }
        let session = open_session(env, &path, opts)?;
        let input = model.input();
        let output = model.output();
        let mismatch = |what: String| {
            Err(Error::bad_file(
                &path,
                what,
                Some(format!(
                    "the manifest {} does not describe this file",
                    model.manifest_path.display()
                )),
            ))
        };
        let Some(shape) = outlet_shape(session.inputs(), &input.name) else {
            let names: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
            return mismatch(format!(
                "model has no input `{}` (its inputs: {})",
                input.name,
                names.join(", ")
            ));
        };
        let (h, w) = (input.height as i64, input.width as i64);
        let expected: [i64; 3] = match input.layout {
            Layout::Nchw => [3, h, w],
            Layout::Nhwc => [h, w, 3],
        };
        let ok = shape.len() == 4
            && shape[1..]
                .iter()
                .zip(expected)
                .all(|(&a, b)| a == b || a < 0);
        if !ok {
            return mismatch(format!(
                "model input `{}` has shape {:?}, the manifest says [N, {}, {}, {}]",
                input.name, shape, expected[0], expected[1], expected[2]
            ));
        }
        let fixed_batch = (shape[0] > 0).then_some(shape[0] as usize);
        match outlet_shape(session.outputs(), &output.features) {
            None => {
                let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
                return mismatch(format!(
                    "model has no output `{}` (its outputs: {})",
                    output.features,
                    names.join(", ")
                ));
            }
            Some(s) if s.len() != 2 || (s[1] >= 0 && s[1] as usize != output.dim) => {
                return mismatch(format!(
                    "model output `{}` has shape {:?}, the manifest says [N, {}]",
                    output.features, s, output.dim
                ));
            }
            Some(_) => {}
        }
        Ok(WholeImageBackbone {
            session,
            input_name: input.name.clone(),
            output_name: output.features.clone(),
            dims: expected.map(|d| d as usize),
            dim: output.dim,
            fixed_batch,
        })
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Runs `n` prepared images (`n × tensor_len` values, see [`crate::preprocess::Preprocessor`])
    /// and returns `n × dim` features, row-major.
    pub fn run(&mut self, batch: &[f32], n: usize) -> Result<Vec<f32>> {
        let per = self.dims.iter().product::<usize>();
        assert_eq!(batch.len(), n * per, "batch holds n prepared images");
        if let Some(fixed) = self.fixed_batch.filter(|&f| f != n) {
            // A graph with a fixed batch size runs one chunk of that size at a time.
            let mut out = Vec::with_capacity(n * self.dim);
            for chunk in batch.chunks(fixed * per) {
                let m = chunk.len() / per;
                let mut padded = chunk.to_vec();
                padded.resize(fixed * per, 0.0);
                let feats = self.run_exact(&padded, fixed)?;
                out.extend_from_slice(&feats[..m * self.dim]);
            }
            return Ok(out);
        }
        self.run_exact(batch, n)
    }

    fn run_exact(&mut self, batch: &[f32], n: usize) -> Result<Vec<f32>> {
        let [a, b, c] = self.dims;
        let tensor = TensorRef::from_array_view(([n, a, b, c], batch))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])?;
        let (shape, data) = outputs[self.output_name.as_str()].try_extract_tensor::<f32>()?;
        if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != self.dim {
            return Err(Error::config(
                format!(
                    "model output `{}` has shape {:?}, expected [{n}, {}]",
                    self.output_name,
                    &shape[..],
                    self.dim
                ),
                None,
            ));
        }
        Ok(data.to_vec())
    }
}

/// Checks a model file's sha256 against its manifest.
pub fn verify_model_file(model: &Model, path: &Path) -> Result<String> {
    crate::models::verify_file(
        path,
        model.manifest.sha256.as_deref(),
        &model.manifest_path,
        &format!("model file for `{}`", model.manifest.name),
    )
}
