//! The backbone's thread: it owns the one ONNX Runtime session, takes prepared images from a
//! bounded queue, runs every image queued at that moment as one batch (up to the batch size), and
//! answers each request with its prediction.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::models::ModelKind;
use crate::pipeline::{Pipeline, Prepare, Prepared};
use crate::predict::{predict_embedded, PredictOptions, Prediction};

/// Opens the backbone's pipeline, on the backbone's own thread (a pipeline stays on the thread
/// that opened it).
pub type OpenPipeline = Box<dyn FnOnce() -> Result<Pipeline> + Send>;

/// One image waiting for the backbone.
pub(crate) struct Job {
    /// The decoded, preprocessed image.
    pub prepared: Prepared,
    /// The name its prediction carries (`path` in the JSON).
    pub name: PathBuf,
    /// Where the answer goes: the prediction, or why the backbone failed.
    pub reply: tokio::sync::oneshot::Sender<std::result::Result<Prediction, String>>,
}

/// Counters of the backbone's work.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Backbone runs.
    pub batches: AtomicU64,
    /// Images run.
    pub images: AtomicU64,
}

/// The running backbone thread and what requests need from it.
pub(crate) struct Worker {
    /// The queue into the backbone.
    pub tx: SyncSender<Job>,
    /// The decoding half of the pipeline, run on request threads.
    pub preparer: Arc<dyn Prepare>,
    /// The model's kind.
    pub kind: ModelKind,
    /// The model's name.
    pub model: String,
    /// Work done so far.
    pub counters: Arc<Counters>,
}

/// Why a job was not queued.
pub(crate) enum Refused {
    /// The queue is full.
    Full,
    /// The backbone thread has stopped.
    Stopped,
}

impl Worker {
    /// Opens the pipeline on a new thread and checks it against the bundle (the model file must
    /// be the one the head was fitted on); returns once the backbone is ready, or the error.
    pub fn start(
        open: OpenPipeline,
        bundle: Arc<Bundle>,
        opts: PredictOptions,
        batch: usize,
        queue: usize,
    ) -> Result<(Worker, JoinHandle<()>)> {
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let (ready_tx, ready_rx) = sync_channel(1);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("qcyn-backbone".into())
            .spawn(move || {
                let pipeline = open().and_then(|mut p| {
                    bundle.check_model(&p.model, &p.identity.sha256)?;
                    warm_up(&mut p)?;
                    Ok(p)
                });
                let mut pipeline = match pipeline {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok((
                            p.preparer.clone(),
                            p.model.manifest.kind(),
                            p.model.manifest.name.clone(),
                        )));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(&mut pipeline, &bundle, &opts, batch.max(1), &rx, &c);
            })
            .map_err(|e| {
                Error::config(
                    format!("cannot start the backbone thread: {e}"),
                    Some("the system is out of threads or memory".into()),
                )
            })?;
        let ready = ready_rx.recv().map_err(|_| {
            Error::config(
                "the backbone thread stopped while opening the model",
                Some("this is a bug in qcyn".into()),
            )
        })?;
        let (preparer, kind, model) = match ready {
            Ok(r) => r,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok((
            Worker {
                tx,
                preparer,
                kind,
                model,
                counters,
            },
            thread,
        ))
    }

    /// Queues a job, without waiting: [`Refused::Full`] when the queue is full.
    pub fn submit(&self, job: Job) -> std::result::Result<(), Refused> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }
}

/// Runs one grey image through the pipeline, so that its sessions are open (and a model that
/// cannot run is refused) before the first request.
fn warm_up(pipeline: &mut Pipeline) -> Result<()> {
    let img = image::RgbImage::from_pixel(256, 256, image::Rgb([128, 128, 128]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error::config(format!("cannot make the warm-up image: {e}"), None))?;
    let png = png.into_inner();
    match pipeline.embed(&[png.as_slice()])?.pop() {
        Some(Err(problem)) => Err(Error::config(
            format!("the model cannot prepare a plain grey image: {problem}"),
            Some("check the model's manifest".into()),
        )),
        _ => Ok(()),
    }
}

/// The backbone loop: waits for a job, takes every other job already queued (up to `batch`),
/// runs them as one batch, answers each. Ends when every sender is gone.
fn run(
    pipeline: &mut Pipeline,
    bundle: &Bundle,
    opts: &PredictOptions,
    batch: usize,
    rx: &Receiver<Job>,
    counters: &Counters,
) {
    let kind = pipeline.model.manifest.kind();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (inputs, rest): (Vec<Prepared>, Vec<_>) = jobs
            .into_iter()
            .map(|j| (j.prepared, (j.name, j.reply)))
            .unzip();
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .images
            .fetch_add(inputs.len() as u64, Ordering::Relaxed);
        match pipeline.runner.run(inputs) {
            Ok(embeddings) => {
                for ((name, reply), emb) in rest.into_iter().zip(embeddings) {
                    let answer = predict_embedded(bundle, kind, &name, &emb, opts)
                        .map_err(|e| crate::error::chain(&e));
                    // The client may have gone: nothing to do then.
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let msg = crate::error::chain(&e);
                for (_, reply) in rest {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
}
