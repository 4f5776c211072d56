//! Progress reporting. The library calls a [`Reporter`]; the binary draws it with `indicatif`
//! (and hides it when quiet or not on a terminal). Tests and library users pass [`NoProgress`].

/// Receives progress of long work.
pub trait Reporter: Send + Sync {
    /// A phase starts, with the number of steps if known.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `n` more steps of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// A short status of the current phase, shown beside its progress (e.g. the loss so far).
    fn status(&self, _text: &str) {}
    /// A diagnostic line for people (goes to stderr in the binary).
    fn message(&self, _text: &str) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// A reporter that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Reporter for NoProgress {}
