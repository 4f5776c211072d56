//! Fused models: several whole-image backbones as one. Each part prepares its own input and runs
//! its own session; each part's features are scaled to unit length and the parts concatenated,
//! so the head and everything after it see one vector. `extract` caches every part's features
//! on their own ([`crate::pipeline::Run::parts_mut`]), so fusing reuses what each part extracted.
use std::sync::Arc;

use ort::environment::Environment;
use sha2::{Digest, Sha256};

use crate::backbone::SessionOptions;
use crate::error::{Error, Result};
use crate::features::Embedding;
use crate::models::Model;
use crate::pipeline::{CacheIdentity, Pipeline, Prepare, Prepared, Run};
use crate::preprocess::ImageProblem;

/// The fused vector: each part scaled to unit length (a zero part stays zero), concatenated in
/// the parts' order.
pub fn fuse(parts: &[&[f32]]) -> Vec<f32> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        let norm = p.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let k = if norm > 0.0 { (1.0 / norm) as f32 } else { 0.0 };
        out.extend(p.iter().map(|v| v * k));
    }
    out
}

/// The cache identity of a fused model: its name, and a hash of its parts' identities (so a
/// changed part is a changed fusion).
pub fn identity(name: &str, parts: &[CacheIdentity]) -> CacheIdentity {
    let digest = |f: &dyn Fn(&CacheIdentity) -> &str| {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.model.as_bytes());
            h.update(b"\0");
            h.update(f(p).as_bytes());
            h.update(b"\0");
        }
        hex::encode(h.finalize())
    };
    CacheIdentity {
        model: name.to_string(),
        sha256: digest(&|p| p.sha256.as_str()),
        preprocess_id: digest(&|p| p.preprocess_id.as_str()),
    }
}

struct FusedPreparer(Vec<Arc<dyn Prepare>>);

impl Prepare for FusedPreparer {
    fn prepare(&self, bytes: &[u8]) -> Result<Prepared, ImageProblem> {
        self.0
            .iter()
            .map(|p| p.prepare(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map(Prepared::Parts)
    }

    fn parts(&self) -> Option<&[Arc<dyn Prepare>]> {
        Some(&self.0)
    }
}

struct FusedRunner(Vec<(CacheIdentity, Box<dyn Run>)>);

impl Run for FusedRunner {
    fn run(&mut self, batch: Vec<Prepared>) -> Result<Vec<Vec<Embedding>>> {
        let n = batch.len();
        let mut per_part: Vec<Vec<Prepared>> = (0..self.0.len()).map(|_| Vec::new()).collect();
        for p in batch {
            let Prepared::Parts(parts) = p else {
                unreachable!("the fused preparer makes one input per part")
            };
            for (k, q) in parts.into_iter().enumerate() {
                per_part[k].push(q);
            }
        }
        let mut outs = Vec::with_capacity(self.0.len());
        for ((_, runner), inputs) in self.0.iter_mut().zip(per_part) {
            outs.push(runner.run(inputs)?);
        }
        Ok((0..n)
            .map(|i| {
                let vectors: Vec<&[f32]> = outs.iter().map(|o| o[i][0].vector.as_slice()).collect();
                vec![Embedding {
                    vector: fuse(&vectors),
                    face: None,
                }]
            })
            .collect())
    }

    fn images_run(&self) -> u64 {
        self.0
            .iter()
            .map(|(_, r)| r.images_run())
            .max()
            .unwrap_or(0)
    }

    fn parts_mut(&mut self) -> Option<Vec<(&CacheIdentity, &mut dyn Run)>> {
        Some(
            self.0
                .iter_mut()
                .map(|(id, r)| (&*id, r.as_mut() as &mut dyn Run))
                .collect(),
        )
    }
}

/// The pipeline of a fused model: one whole-image pipeline per part (no session is opened until
/// the first batch), fused.
pub fn pipeline(env: &Environment, model: &Model, opts: SessionOptions) -> Result<Pipeline> {
    if model.parts.len() < 2 {
        return Err(Error::config(
            format!(
                "fused model `{}` has {} resolved parts",
                model.manifest.name,
                model.parts.len()
            ),
            Some(
                "load it through the models folder (`Registry::get`), which resolves its parts"
                    .into(),
            ),
        ));
    }
    let mut preparers = Vec::new();
    let mut runners = Vec::new();
    let mut ids = Vec::new();
    for part in &model.parts {
        let p = crate::backbone::pipeline(env, part, opts)?;
        preparers.push(p.preparer);
        ids.push(p.identity.clone());
        runners.push((p.identity, p.runner));
    }
    Ok(Pipeline {
        identity: identity(&model.manifest.name, &ids),
        preparer: Arc::new(FusedPreparer(preparers)),
        runner: Box::new(FusedRunner(runners)),
        model: model.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_scales_each_part_to_unit_length() {
        let v = fuse(&[&[3.0, 4.0], &[0.0, 0.0, 2.0]]);
        assert_eq!(v, vec![0.6, 0.8, 0.0, 0.0, 1.0]);
        assert_eq!(fuse(&[&[0.0], &[5.0]]), vec![0.0, 1.0]);
    }
}
