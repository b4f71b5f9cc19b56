//! The library's error type.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine, with enough context to tell
/// the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum MinusError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),

    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A weights file is unreadable, truncated or of the wrong kind.
    #[error("{path}: {message}")]
    BadWeights { path: PathBuf, message: String },

    /// A tensor a network needs is not in the file.
    #[error("{path}: missing tensor `{key}`")]
    MissingTensor { path: PathBuf, key: String },

    /// A configuration file is missing or malformed.
    #[error("{path}: bad config: {message}")]
    BadConfig { path: PathBuf, message: String },

    /// A file Minus will not read or replace (not a regular file, too large, ...).
    #[error("{path}: {message}")]
    Refused { path: PathBuf, message: String },

    /// An input image could not be decoded.
    #[error("{path}: cannot read image: {message}")]
    BadImage { path: PathBuf, message: String },

    /// The request itself is inconsistent (bad size, weights, windows, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A model the setup needs is not given (an adapter without its image encoder, ...).
    #[error("{path}: {message}")]
    MissingModel { path: PathBuf, message: String },

    /// A catalogue name that is not in the catalogue.
    #[error("unknown model `{name}` (known: {known})")]
    UnknownModel { name: String, known: String },

    /// The chosen compute device cannot be opened.
    #[error("{0}")]
    DeviceUnavailable(String),

    /// The chosen number format does not run on the device.
    #[error("{0}")]
    UnsupportedDtype(String),

    /// A result could not be encoded (PNG, settings text).
    #[error("cannot encode {what}: {message}")]
    Encoding { what: String, message: String },

    /// A network produced a tensor of a shape the pipeline cannot use.
    #[error("unexpected output shape: {0}")]
    UnexpectedShape(String),

    /// A download from the model hub failed.
    #[error("download of {what} failed: {message}")]
    Download { what: String, message: String },

    /// The user cancelled the generation.
    #[error("cancelled")]
    Cancelled,
}

impl MinusError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// Result alias for the library.
pub type Result<T> = std::result::Result<T, MinusError>;
