//! Backbone: an ONNX Runtime session that turns prepared images into feature vectors.
//!
//! The execution provider is a setting of the session ([`Device`]); nothing above this module
//! changes with it. Sessions are opened from an [`ort::environment::Environment`] that the binary
//! (or a test) created: the library never configures ONNX Runtime's global state.
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ort::environment::Environment;
use ort::session::{
    builder::{AutoDevicePolicy, GraphOptimizationLevel},
    Session,
};
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::Embedding;
use crate::models::{Layout, Model, WholeSpec};
use crate::pipeline::{CacheIdentity, Pipeline, Prepare, Prepared, Run};
use crate::preprocess::{ImageProblem, Preprocessor};

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider: needs an NVIDIA GPU and what `scripts/setup --gpu`
    /// fetches (onnxruntime-gpu, built for CUDA 13, and the NVIDIA CUDA 13 and cuDNN 9 libraries).
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

/// Errors when this qcyn cannot run sessions on `device`. Pipelines call it when they are opened,
/// so a device that cannot work is refused before any work, even when every feature is cached and
/// no session would be opened.
///
/// For CUDA it checks what can be checked before a session exists: that the ONNX Runtime library
/// loaded is a GPU build, and that an NVIDIA driver is loaded. What only a session shows (a CUDA
/// or cuDNN library missing or of another version, no usable GPU) is reported when the session
/// opens ([`open_session`]); qcyn never falls back to the CPU in silence.
pub fn check_device(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda => {
            let mut missing = Vec::new();
            if !<ort::ep::CUDA as ort::ep::ExecutionProvider>::is_available().unwrap_or(false) {
                missing.push(
                    "the ONNX Runtime library loaded is a CPU-only build: it has no CUDAExecutionProvider (for --device cuda qcyn loads runtime/gpu/ when scripts/setup --gpu has filled it, unless --ort-dylib names another library)".to_string(),
                );
            }
            if !nvidia_driver_loaded() {
                missing.push(format!(
                    "no NVIDIA GPU driver is loaded on this machine ({NVIDIA_DRIVER} is absent)"
                ));
            }
            if missing.is_empty() {
                return Ok(());
            }
            Err(Error::config(
                format!(
                    "--device cuda: the CUDA execution provider cannot run here: {}",
                    missing.join("; ")
                ),
                Some(format!(
                    "run {} --gpu (it fetches onnxruntime-gpu {}, built for CUDA 13, and the NVIDIA CUDA 13 and cuDNN 9 runtime wheels into runtime/gpu/) on a machine with an NVIDIA GPU and its driver; or use --device cpu",
                    crate::runtime::project_dir().join("scripts/setup").display(),
                    crate::runtime::GPU_ORT_VERSION
                )),
            ))
        }
    }
}

/// Present when the NVIDIA kernel driver is loaded.
const NVIDIA_DRIVER: &str = "/proc/driver/nvidia/version";

fn nvidia_driver_loaded() -> bool {
    Path::new(NVIDIA_DRIVER).exists()
}

/// Registers the CUDA execution provider on `builder`, failing (never falling back to the CPU)
/// when it cannot: the NVIDIA libraries `scripts/setup --gpu` put in runtime/gpu/cuda/ are loaded
/// first, so that a missing or wrong one is named.
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder> {
    let fix = || {
        format!(
            "run {} --gpu to fetch the CUDA 13 and cuDNN 9 libraries that onnxruntime-gpu {} needs (or put them on LD_LIBRARY_PATH); or use --device cpu",
            crate::runtime::project_dir().join("scripts/setup").display(),
            crate::runtime::GPU_ORT_VERSION
        )
    };
    let libs = crate::runtime::gpu_cuda_dir();
    if libs.is_dir() {
        ort::ep::cuda::preload_dylibs(Some(&libs), Some(&libs)).map_err(|e| {
            Error::config(
                format!(
                    "--device cuda: a CUDA library in {} cannot be loaded: {e}",
                    libs.display()
                ),
                Some(fix()),
            )
        })?;
    }
    builder
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map_err(|e| {
            Error::config(
                format!(
                    "--device cuda: ONNX Runtime cannot open the CUDA execution provider: {}",
                    ort::Error::<()>::from(e).message()
                ),
                Some(fix()),
            )
        })
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
    check_device(opts.device)?;
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
    // ONNX Runtime's intra-op threads spin while they wait for work by default, on the cores
    // that decode the next batch: without spinning, `extract` of hymenoptera with mobilenetv2 on
    // 2 cores took 1.31x (int8) and 1.20x (fp32) less time, and the backbone alone was as fast.
    builder = builder
        .with_intra_op_spinning(false)
        .map_err(ort::Error::from)?;
    if opts.device == Device::Cuda {
        builder = with_cuda(builder)?;
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
        let spec = whole_spec(model)?;
        let path = graph(model)?.path;
        if verify_sha256 {
            verify_model_file(model, &path)?;
        }
        let session = open_session(env, &path, opts)?;
        let (input, output) = (&spec.input, &spec.output);
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

/// The whole-image part of a manifest, or an error naming the model when it is a face model.
fn whole_spec(model: &Model) -> Result<&WholeSpec> {
    model.manifest.whole().ok_or_else(|| {
        Error::config(
            format!(
                "model `{}` is a face model, not a whole-image backbone",
                model.manifest.name
            ),
            Some("open it with the face pipeline (`Pipeline::open` picks it by kind)".into()),
        )
    })
}

/// The graph a whole-image model runs at its precision, or an error when it has none.
fn graph(model: &Model) -> Result<crate::models::Graph> {
    whole_spec(model)?;
    model.graph().ok_or_else(|| {
        Error::config(
            format!(
                "model `{}` has no {} graph (its manifest {} has no [int8] table)",
                model.manifest.name,
                model.precision,
                model.manifest_path.display()
            ),
            Some(
                "`qcyn models` lists the models with an int8 graph; or use --precision fp32".into(),
            ),
        )
    })
}

/// Checks a model file's sha256 against its manifest (the `[int8]` table's for an int8 model).
pub fn verify_model_file(model: &Model, path: &Path) -> Result<String> {
    let g = graph(model)?;
    crate::models::verify_file(path, g.sha256.as_deref(), &model.manifest_path, &g.what)
}

struct WholePreparer(Preprocessor);

impl Prepare for WholePreparer {
    fn prepare(&self, bytes: &[u8]) -> Result<Prepared, ImageProblem> {
        let mut out = vec![0f32; self.0.tensor_len()];
        self.0.prepare_bytes(bytes, &mut out)?;
        Ok(Prepared::Tensor(out))
    }
}

struct WholeRunner {
    env: Environment,
    model: Model,
    opts: SessionOptions,
    backbone: Option<WholeImageBackbone>,
    /// Shared with the runner's replicas.
    images_run: Arc<AtomicU64>,
    buf: Vec<f32>,
}

impl WholeRunner {
    /// The session, opened (and the file checked) on first use.
    fn backbone(&mut self) -> Result<&mut WholeImageBackbone> {
        if self.backbone.is_none() {
            self.backbone = Some(WholeImageBackbone::open(
                &self.env,
                &self.model,
                self.opts,
                true,
            )?);
        }
        Ok(self.backbone.as_mut().expect("opened above"))
    }
}

impl Run for WholeRunner {
    fn run(&mut self, batch: Vec<Prepared>) -> Result<Vec<Vec<Embedding>>> {
        self.backbone()?;
        let backbone = self.backbone.as_mut().expect("opened above");
        let n = batch.len();
        let mut tensors = batch.into_iter().map(|p| match p {
            Prepared::Tensor(t) => t,
            _ => unreachable!("the whole-image preparer makes tensors"),
        });
        let feats = if n == 1 {
            // One image: its tensor is the batch, no copy.
            backbone.run(&tensors.next().expect("one tensor"), 1)?
        } else {
            self.buf.clear();
            for t in tensors {
                self.buf.extend_from_slice(&t);
            }
            backbone.run(&self.buf, n)?
        };
        self.images_run.fetch_add(n as u64, Ordering::Relaxed);
        Ok(crate::features::whole_image_rows(&feats, backbone.dim()))
    }

    fn images_run(&self) -> u64 {
        self.images_run.load(Ordering::Relaxed)
    }

    fn replicate(&self, threads: usize) -> Option<Box<dyn Run + Send>> {
        (self.opts.device == Device::Cpu).then(|| {
            Box::new(WholeRunner {
                env: self.env.clone(),
                model: self.model.clone(),
                opts: SessionOptions {
                    threads,
                    ..self.opts
                },
                backbone: None,
                images_run: Arc::clone(&self.images_run),
                buf: Vec::new(),
            }) as Box<dyn Run + Send>
        })
    }

    fn run_tensor(&mut self, batch: &[f32], n: usize) -> Option<Result<()>> {
        Some(self.backbone().and_then(|b| b.run(batch, n)).map(|_| ()))
    }
}

/// The pipeline of a whole-image model: decode + preprocess on worker threads, the ONNX session
/// (opened on the first batch) on the calling thread.
pub fn pipeline(env: &Environment, model: &Model, opts: SessionOptions) -> Result<Pipeline> {
    // The cache and bundles are keyed by the model's sha256: a manifest that does not pin one
    // gets the file's actual hash, so a replaced file can never reuse the old features.
    // int8 features are cached apart from fp32 ones: another sha256, and another folder name.
    let spec = whole_spec(model)?;
    let g = graph(model)?;
    let sha256 = match &g.sha256 {
        Some(sha) => sha.clone(),
        None => verify_model_file(model, &g.path)?,
    };
    let pre = Preprocessor::new(&spec.preprocess, &spec.input);
    Ok(Pipeline {
        identity: CacheIdentity {
            model: match model.precision {
                crate::models::Precision::Fp32 => model.manifest.name.clone(),
                p => format!("{}-{p}", model.manifest.name),
            },
            sha256,
            preprocess_id: crate::preprocess::preprocess_id(&spec.preprocess, &spec.input),
        },
        preparer: Arc::new(WholePreparer(pre)),
        runner: Box::new(WholeRunner {
            env: env.clone(),
            model: model.clone(),
            opts,
            backbone: None,
            images_run: Arc::new(AtomicU64::new(0)),
            buf: Vec::new(),
        }),
        model: model.clone(),
    })
}
