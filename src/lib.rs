//! qcyn: teach a computer your own image categories from a few dozen photos each.
//!
//! A pretrained ONNX backbone, run by ONNX Runtime, turns every image into a feature vector once;
//! the vectors are cached; a softmax head is trained on them in pure Rust. The modules follow the
//! data, one way:
//!
//! ```text
//! dataset (scan) ─▶ split ─▶ preprocess ─▶ backbone ─▶ cache ─▶ head ─▶ evaluate ─▶ bundle
//!                                 predict: bundle ─▶ preprocess ─▶ backbone ─▶ head
//!                                 bench:   preprocess ─▶ backbone
//! ```
//!
//! `extract` drives scan → preprocess → backbone → cache; `fit` adds head → evaluate → bundle.
//! The library never configures ONNX Runtime's global environment: the binary does, and passes the
//! [`ort::environment::Environment`] in.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod atomic;
pub mod backbone;
pub mod bench;
pub mod bundle;
pub mod cache;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod extract;
pub mod face;
pub mod features;
pub mod fit;
pub mod head;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod predict;
pub mod preprocess;
pub mod progress;
pub mod runtime;
pub mod shuffle;
pub mod split;

pub use error::{Error, Result};
