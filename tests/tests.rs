//! The one integration test binary: each module covers one part of qcyn.
mod util;

mod compare;
mod dups;
mod engine;
mod export;
mod face;
mod fusion;
mod precision;
mod pure;
mod report;
mod scripts;
mod serve;
mod unfreeze;
mod workflow;
