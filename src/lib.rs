//! qcyn: teach a computer your own image categories from a few dozen photos each.
//!
//! A pretrained ONNX backbone, run by ONNX Runtime, turns every image into a feature vector once;
//! the vectors are cached; a softmax head is trained on them in pure Rust. Each step of the data's
//! way has its module, and imports only run from a later step to an earlier one:
//!
//! ```text
//! dataset (scan) ─▶ split ─▶ preprocess ─▶ pipeline ─▶ backbone | face ─▶ cache ─▶ extract
//!   ─▶ dups ─▶ head ─▶ metrics ─▶ estimate ─▶ unfreeze ─▶ bundle ─▶ fit | eval
//!   ─▶ compare | predict | export | serve | report;
//!   bench measures preprocess ─▶ backbone
//! ```
//!
//! - [`dataset`]: folder-per-class scan, path rules; [`split`]: the seeded split, its manifest and
//!   the tutorial's list files; [`shuffle`]: the one seeded shuffler.
//! - [`models`]: manifests (typed per kind); [`preprocess`]: decode, resize, normalise.
//! - [`features`]: what a backbone gives ([`features::Embedding`], [`features::FaceBox`]);
//!   [`pipeline`]: the Prepare/Run halves of every extractor and its cache identity.
//! - [`backbone`]: ONNX Runtime sessions and whole-image models; [`face`]: detect → align → embed;
//!   [`fusion`]: several whole-image models as one (each part unit length, concatenated).
//! - [`cache`]: features on disk; [`extract`]: opens a pipeline by kind and runs it through the
//!   cache, decoding overlapped with inference; [`dups`]: near-duplicate groups (content,
//!   perceptual hash, cached features), which a grouped split keeps on one side.
//! - [`head`]: the softmax head and its cross-validation; [`metrics`]: accuracy, F1, confusion;
//!   [`estimate`]: grouped cross-validation when too few distinct photos are held out;
//!   [`label`]: the label of one image (for face models, of several faces), shared by `predict`,
//!   `fit` and `eval`.
//! - [`unfreeze`]: `fit --unfreeze N`, the backbone's last block(s) fine-tuned in Rust on cached
//!   prefix maps, the trained tail written back as an ONNX graph ([`onnx_proto`]: just enough
//!   protobuf for that and for [`export`]).
//! - [`bundle`]: everything needed to predict; [`fit`] and [`eval`]: the `qcyn fit` and
//!   `qcyn eval` workflows; [`compare`]: backbones × heads × class weights over repeated
//!   splits, with intervals; [`predict`]: labels and probabilities; [`bench`](mod@bench): latency;
//!   [`export`]: a bundle as one ONNX file; [`serve`]: a bundle over HTTP; [`report`]: a fit's
//!   report as one HTML page.
//! - Shared by all: [`error`], [`atomic`], [`progress`], [`runtime`].
//!
//! The library never configures ONNX Runtime's global environment: the binary does, and passes the
//! [`ort::environment::Environment`] in.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod atomic;
pub mod backbone;
pub mod bench;
pub mod bundle;
pub mod cache;
pub mod compare;
pub mod dataset;
pub mod dups;
pub mod error;
pub mod estimate;
pub mod eval;
pub mod export;
pub mod extract;
pub mod face;
pub mod features;
pub mod fit;
pub mod fusion;
pub mod head;
pub mod label;
pub mod metrics;
pub mod models;
pub mod onnx_proto;
pub mod pipeline;
pub mod predict;
pub mod preprocess;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod shuffle;
pub mod split;
pub mod unfreeze;

pub use error::{Error, Result};
