//! The HTTP routes: `POST /v1/predict`, `GET /v1/model`, `GET /healthz` and the page at `/`.
//! Every error is JSON `{"error": "…"}` with a status that says whose fault it is.
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::worker::{Job, Refused, Worker};
use crate::bundle::Bundle;

/// The page at `/`: drop or pick photos, see labels, probabilities and face boxes. No network
/// beyond this server; the script is inline.
const PAGE: &str = include_str!("page.html");

/// What one request may cost.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest image, width × height, read from its header before decoding.
    pub max_pixels: u64,
    /// Time a client has to send its whole body.
    #[serde(serialize_with = "seconds")]
    pub read_timeout: Duration,
    /// Prediction requests admitted at once (reading, decoding, queued or in the backbone).
    pub queue: usize,
    /// Images per backbone run, at most.
    pub batch: usize,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What every route shares.
pub(crate) struct App {
    pub worker: Worker,
    pub bundle: Arc<Bundle>,
    pub limits: Limits,
    /// Prediction requests admitted now.
    pub in_flight: AtomicUsize,
    /// Decoding runs on blocking threads, at most this many at once.
    pub decoders: tokio::sync::Semaphore,
}

/// The router over `app`.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app)
}

/// A JSON error with its status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    (
        status,
        Json(E {
            error: message.into(),
        }),
    )
        .into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route: POST /v1/predict, GET /v1/model, GET /healthz, GET /",
    )
}

async fn wrong_method() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "wrong method: POST /v1/predict, GET /v1/model, GET /healthz, GET /",
    )
}

async fn model(State(app): State<Arc<App>>) -> Response {
    #[derive(Serialize)]
    struct ModelView<'a> {
        classes: &'a [String],
        model: ModelInfoView<'a>,
        kind: crate::models::ModelKind,
        qcyn_version: &'a str,
        created: &'a str,
        validation_accuracy: Option<f64>,
        limits: Limits,
        backbone_runs: u64,
        images_run: u64,
    }
    #[derive(Serialize)]
    struct ModelInfoView<'a> {
        name: &'a str,
        sha256: &'a str,
        precision: crate::models::Precision,
    }
    let b = &app.bundle;
    Json(ModelView {
        classes: &b.classes,
        model: ModelInfoView {
            name: &app.worker.model,
            sha256: &b.model.sha256,
            precision: b.model.precision,
        },
        kind: app.worker.kind,
        qcyn_version: &b.qcyn_version,
        created: &b.created,
        validation_accuracy: b.validation.as_ref().map(|v| v.accuracy),
        limits: app.limits,
        backbone_runs: app.worker.counters.batches.load(Ordering::Relaxed),
        images_run: app.worker.counters.images.load(Ordering::Relaxed),
    })
    .into_response()
}

/// One admitted prediction request; leaving frees its place.
struct Admitted<'a>(&'a AtomicUsize);

impl<'a> Admitted<'a> {
    fn try_new(count: &'a AtomicUsize, max: usize) -> Option<Admitted<'a>> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Admitted(count))
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn busy(queue: usize) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("busy: {queue} requests are already being answered (--queue); retry shortly"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// `?name=` gives the `path` the answer carries (default `upload`).
#[derive(Debug, Deserialize)]
struct PredictQuery {
    name: Option<String>,
}

async fn predict(
    State(app): State<Arc<App>>,
    Query(q): Query<PredictQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limits = app.limits;
    let Some(_admitted) = Admitted::try_new(&app.in_flight, limits.queue) else {
        return busy(limits.queue);
    };
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is over the limit of {} bytes (--max-body-mib)",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large();
    }
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    let bytes = match tokio::time::timeout(limits.read_timeout, read).await {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the image did not arrive within {:.0} s (--read-timeout)",
                    limits.read_timeout.as_secs_f64()
                ),
            )
        }
        Ok(Err(e)) => {
            let text = crate::error::chain(&e);
            if text.contains("length limit") {
                return too_large();
            }
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {text}"),
            );
        }
        Ok(Ok(b)) => b,
    };
    if let Some(problem) = too_many_pixels(&bytes, limits.max_pixels) {
        return error(StatusCode::BAD_REQUEST, problem);
    }
    let prepared = {
        let Ok(_permit) = app.decoders.acquire().await else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        };
        let preparer = app.worker.preparer.clone();
        match tokio::task::spawn_blocking(move || preparer.prepare(&bytes)).await {
            Ok(Ok(p)) => p,
            Ok(Err(problem)) => return error(StatusCode::BAD_REQUEST, problem.0),
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("decoding failed: {e}"),
                )
            }
        }
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        prepared,
        name: PathBuf::from(q.name.unwrap_or_else(|| "upload".into())),
        reply,
    };
    match app.worker.submit(job) {
        Ok(()) => {}
        Err(Refused::Full) => return busy(limits.queue),
        Err(Refused::Stopped) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the backbone has stopped")
        }
    }
    match answer.await {
        Ok(Ok(prediction)) => Json(prediction).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the backbone failed: {e}"),
        ),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the backbone has stopped"),
    }
}

/// Why an image is refused before decoding: its header declares more than `max_pixels` pixels.
/// Images whose size cannot be read here are left to the decoder, which says what is wrong.
fn too_many_pixels(bytes: &[u8], max_pixels: u64) -> Option<String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    reader.format()?;
    let (w, h) = reader.into_dimensions().ok()?;
    let pixels = u64::from(w) * u64::from(h);
    (pixels > max_pixels).then(|| {
        format!(
            "image too large: its header says {w}×{h} = {pixels} pixels; this server decodes at most {max_pixels} (--max-megapixels)"
        )
    })
}
