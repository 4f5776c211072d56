//! Serve: a bundle over HTTP (`qcyn serve`). One backbone session, owned by one thread and fed by
//! a bounded queue, answers every request; requests queued together run as one batch. Decoding
//! runs on request threads, after the image's header has been checked against the pixel limit.
//!
//! Routes: `POST /v1/predict` (image bytes in, `predict --json`'s entry out), `GET /v1/model`,
//! `GET /healthz`, and `GET /`, a page for people. Errors are JSON `{"error": …}`: 400 for an
//! image that cannot be used, 408 when the body does not arrive in time, 413 over the body limit,
//! 503 with `Retry-After` when the queue is full.
//!
//! Like `predict`, serve sits at the end of the data's way: nothing imports it.
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::predict::PredictOptions;

mod routes;
mod worker;

pub use worker::OpenPipeline;

/// How to serve.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub addr: SocketAddr,
    /// Largest request body, bytes (413 above it).
    pub max_body_bytes: usize,
    /// Largest image, width × height from its header, checked before decoding (400 above it).
    pub max_pixels: u64,
    /// Time a client has to send its whole body (408 after it).
    pub read_timeout: Duration,
    /// Prediction requests admitted at once; more are answered 503 with `Retry-After`.
    pub queue: usize,
    /// Images per backbone run, at most (those queued together run together).
    pub batch: usize,
    /// Images decoded at once.
    pub decoders: usize,
    /// Time in-flight requests get to finish after Ctrl-C or SIGTERM.
    pub grace: Duration,
    /// `top_k` and the unknown threshold, as `qcyn predict` takes them.
    pub predict: PredictOptions,
}

/// A server whose model is loaded and whose socket is bound, not yet answering.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    app: Arc<routes::App>,
    backbone: JoinHandle<()>,
    grace: Duration,
}

impl Server {
    /// Opens the backbone (on its own thread, checked against the bundle: a model file changed
    /// since the fit is refused) and binds the address.
    pub fn start(bundle: Bundle, open: OpenPipeline, opts: ServeOptions) -> Result<Server> {
        let bundle = Arc::new(bundle);
        let (worker, backbone) =
            worker::Worker::start(open, bundle.clone(), opts.predict, opts.batch, opts.queue)?;
        let listener = std::net::TcpListener::bind(opts.addr).map_err(|e| {
            Error::config(
                format!("cannot listen on {}: {e}", opts.addr),
                Some("choose another port with --addr (127.0.0.1:0 picks a free one)".into()),
            )
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::config(format!("cannot set up the socket: {e}"), None))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("qcyn-serve")
            .build()
            .map_err(|e| Error::config(format!("cannot start the server's threads: {e}"), None))?;
        let app = Arc::new(routes::App {
            worker,
            bundle,
            limits: routes::Limits {
                max_body_bytes: opts.max_body_bytes,
                max_pixels: opts.max_pixels,
                read_timeout: opts.read_timeout,
                queue: opts.queue.max(1),
                batch: opts.batch.max(1),
            },
            in_flight: AtomicUsize::new(0),
            decoders: tokio::sync::Semaphore::new(opts.decoders.max(1)),
        });
        Ok(Server {
            runtime,
            listener,
            app,
            backbone,
            grace: opts.grace,
        })
    }

    /// The address bound (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::config(format!("cannot read the bound address: {e}"), None))
    }

    /// Answers requests until Ctrl-C or SIGTERM; then stops taking connections, lets requests in
    /// flight finish (for at most the grace time) and stops the backbone.
    pub fn run(self) -> Result<()> {
        let Server {
            runtime,
            listener,
            app,
            backbone,
            grace,
        } = self;
        let router = routes::router(app.clone());
        let result = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| Error::config(format!("cannot use the socket: {e}"), None))?;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let mut stopped = stop_rx.clone();
            let server = tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let mut rx = stop_rx;
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await
            });
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            let _ = stopped.wait_for(|s| *s).await;
            match tokio::time::timeout(grace, server).await {
                Ok(Ok(Err(e))) => Err(Error::config(format!("the server failed: {e}"), None)),
                _ => Ok(()),
            }
        });
        // Requests still held past the grace time are dropped with the runtime; then the queue's
        // last sender goes and the backbone thread ends.
        runtime.shutdown_timeout(Duration::from_millis(100));
        drop(app);
        let _ = backbone.join();
        result
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
