//! `qcyn serve`: a bundle over HTTP until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::backbone::SessionOptions;
use qcyn::bundle::Bundle;
use qcyn::extract::ExtractOptions;
use qcyn::pipeline::Pipeline;

use super::{device, resolve_threads, Ctx};
use crate::args;

pub(super) fn run(ctx: &Ctx, a: args::ServeArgs) -> Result<ExitCode> {
    let bundle = Bundle::load(&qcyn::bundle::bundle_path(&a.bundle))?;
    let registry = ctx.registry()?;
    // The graph the bundle was fitted on (fp32 or int8); the server checks its sha256.
    let model =
        registry.with_precision(registry.get(&bundle.model.name)?, bundle.model.precision)?;
    let env = ctx.environment_for(device(a.device))?;
    let threads = resolve_threads(a.threads);
    let session = SessionOptions {
        threads,
        device: device(a.device),
    };
    let face = bundle.face_options.unwrap_or_default();
    // A bundle fitted with --unfreeze runs the frozen prefix, then its trained tail.
    let tail = super::bundle_tail(&registry, &model, &bundle, &a.bundle)?;
    let open: qcyn::serve::OpenPipeline = Box::new(move || match &tail {
        Some((spec, trained, path)) => {
            qcyn::unfreeze::tail_pipeline(&env, &model, spec, trained, path, session)
        }
        None => Pipeline::open_with(&env, &model, session, face),
    });
    let opts = qcyn::serve::ServeOptions {
        addr: a.addr,
        max_body_bytes: a.max_body_mib.saturating_mul(1024 * 1024),
        max_pixels: (a.max_megapixels * 1e6) as u64,
        read_timeout: a.read_timeout,
        queue: a.queue,
        batch: a.batch,
        decoders: a.decoders.unwrap_or(threads),
        grace: std::time::Duration::from_secs(10),
        predict: qcyn::predict::PredictOptions {
            top_k: a.top_k,
            unknown_threshold: a.unknown_threshold,
            extract: ExtractOptions {
                batch: Some(a.batch),
                workers: threads,
            },
        },
    };
    let server = qcyn::serve::Server::start(bundle, open, opts)?;
    let addr = server.local_addr()?;
    if !addr.ip().is_loopback() {
        ctx.note(&format!(
            "note: {} is reachable from other machines; there is no authentication",
            addr.ip()
        ));
    }
    eprintln!("listening on http://{addr}");
    server.run()?;
    ctx.note("stopped");
    Ok(ExitCode::SUCCESS)
}
