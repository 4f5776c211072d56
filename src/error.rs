//! The library's error type. Every variant names the file or value involved; [`Error::hint`] says
//! how to fix it.
use std::path::PathBuf;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in qcyn's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("cannot read", "cannot write", …).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A user-supplied option or configuration is invalid.
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// Something about an input file (list file, split manifest, bundle, model) is invalid.
    #[error("{path}: {message}")]
    BadFile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// ONNX Runtime reported an error.
    #[error("ONNX Runtime failed")]
    Ort(#[from] ort::Error),
    /// The softmax head cannot be trained or used: its hyperparameters, training data or input.
    ///
    /// The message includes the head's own, so it is not also given as the source (a `{:#}` chain
    /// would print it twice); match on the variant to reach it.
    #[error("softmax head: {0}")]
    Head(crate::head::HeadError),
}

impl From<crate::head::HeadError> for Error {
    fn from(e: crate::head::HeadError) -> Self {
        Error::Head(e)
    }
}

/// An error and its causes, joined by ": " (what `{:#}` gives for an `anyhow` error).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl Error {
    /// A one-line suggestion for the user, when one is known.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Config { hint, .. } | Error::BadFile { hint, .. } => hint.as_deref(),
            Error::Head(e) => e.hint(),
            Error::Io { .. } | Error::Ort(_) => None,
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Config`].
    pub fn config(message: impl Into<String>, hint: Option<String>) -> Self {
        Error::Config {
            message: message.into(),
            hint,
        }
    }

    /// Shorthand for an [`Error::BadFile`].
    pub fn bad_file(
        path: impl Into<PathBuf>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
            hint,
        }
    }
}

/// The first `n` items joined by ", ", with "…" when there are more.
pub(crate) fn preview<T: AsRef<str>>(items: &[T], n: usize) -> String {
    let mut s = items
        .iter()
        .take(n)
        .map(|x| x.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > n {
        s.push_str(", …");
    }
    s
}
