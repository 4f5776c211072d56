//! The one integration test binary: each module covers one part of qcyn.
mod util;

mod engine;
mod pure;
mod face;
mod workflow;
