//! Where a whole-image model is cut for the unfrozen path (`qcyn fit --unfreeze N`): a manifest's
//! `[[tail]]` tables, each naming a frozen prefix graph (whose output map is cached) and a
//! trainable tail graph, both built and pinned by `scripts/build_models.py`.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::{Model, ModelKind, ModelManifest, ModelSpec, OutputSpec, Precision};

/// One `[[tail]]` table of a whole-image manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailSpec {
    /// How many of the backbone's last blocks the tail holds (`--unfreeze N`).
    pub blocks: usize,
    /// The weight initializer of the tail's first node (where the models script cuts).
    pub first_weight: String,
    /// Shape `[channels, height, width]` of the map the prefix outputs (and the tail reads).
    pub map: [usize; 3],
    /// Prefix graph: the model's input → `map` `[N, channels · height · width]`.
    pub prefix: PathBuf,
    /// sha256 of the prefix graph.
    pub prefix_sha256: String,
    /// Tail graph: `map` → the model's feature output.
    pub tail: PathBuf,
    /// sha256 of the tail graph as built (before training).
    pub tail_sha256: String,
}

impl TailSpec {
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        if self.blocks == 0 || self.map.contains(&0) {
            return Err("[[tail]] needs blocks ≥ 1 and a map of positive sizes".into());
        }
        for sha in [&self.prefix_sha256, &self.tail_sha256] {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("[[tail]] sha256 values must be 64 hex digits".into());
            }
        }
        Ok(())
    }

    /// Values per cached map (`channels · height · width`).
    pub fn map_len(&self) -> usize {
        self.map.iter().product()
    }
}

impl Model {
    /// The `[[tail]]` table for `--unfreeze blocks`, or an error naming what can be unfrozen.
    pub fn tail_spec(
        &self,
        blocks: usize,
        registry_tails: &[(String, Vec<usize>)],
    ) -> Result<&TailSpec> {
        let name = &self.manifest.name;
        let which = || {
            let list: Vec<String> = registry_tails
                .iter()
                .map(|(m, b)| {
                    let b: Vec<String> = b.iter().map(|b| b.to_string()).collect();
                    format!("{m} (--unfreeze {})", b.join(" or "))
                })
                .collect();
            if list.is_empty() {
                "no model of this models folder has one".to_string()
            } else {
                format!("models with a cut point: {}", list.join(", "))
            }
        };
        let spec = match (&self.manifest.spec, self.manifest.kind()) {
            (_, ModelKind::Face) => {
                return Err(Error::config(
                    format!("--unfreeze is not supported for the face model `{name}`: its embedder runs on aligned face crops, one per face"),
                    Some(format!("fit face models frozen (leave out --unfreeze); {}", which())),
                ))
            }
            (_, ModelKind::Fusion) => {
                return Err(Error::config(
                    format!("--unfreeze is not supported for the fused model `{name}`"),
                    Some(which()),
                ))
            }
            (ModelSpec::Whole(w), _) => w,
            _ => unreachable!("kind matches spec"),
        };
        if self.precision != Precision::Fp32 {
            return Err(Error::config(
                "--unfreeze trains in float32; it has no int8 path",
                Some("leave out --precision int8".into()),
            ));
        }
        spec.tails.iter().find(|t| t.blocks == blocks).ok_or_else(|| {
            let here: Vec<String> = spec.tails.iter().map(|t| t.blocks.to_string()).collect();
            Error::config(
                if here.is_empty() {
                    format!(
                        "model `{name}` has no cut point for --unfreeze (its manifest {} has no [[tail]] table)",
                        self.manifest_path.display()
                    )
                } else {
                    format!(
                        "model `{name}` can unfreeze {} block(s), not {blocks}",
                        here.join(" or ")
                    )
                },
                Some(which()),
            )
        })
    }

    /// The frozen prefix of `tail` as a whole-image model of its own: the same input and
    /// preprocessing, its output the flattened map. Its features are cached like any model's.
    pub fn prefix_model(&self, tail: &TailSpec) -> Model {
        let mut m = self.clone();
        let name = format!("{}-prefix{}", self.manifest.name, tail.blocks);
        if let ModelSpec::Whole(w) = &mut m.manifest.spec {
            w.file = tail.prefix.clone();
            w.sha256 = Some(tail.prefix_sha256.clone());
            w.int8 = None;
            w.tails = Vec::new();
            w.output = OutputSpec {
                features: "map".into(),
                dim: tail.map_len(),
                logits: None,
                near_duplicate_cosine: None,
            };
        }
        m.manifest = ModelManifest {
            name,
            description: format!(
                "frozen prefix of `{}` up to its last {} block(s)",
                self.manifest.name, tail.blocks
            ),
            ..m.manifest
        };
        m.parts = Vec::new();
        m
    }
}
