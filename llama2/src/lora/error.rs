//! Errors of attaching, saving and loading LoRA adapters. Every file error names the file
//! and, where there is one, the tensor.

use std::path::PathBuf;

/// Why adapters could not be attached, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// The configuration does not describe adapters.
    #[error("invalid LoRA configuration: {0}")]
    InvalidConfig(String),
    /// A projection name that is not one of `wq wk wv wo w1 w2 w3` (or their Hugging Face
    /// names).
    #[error("unknown LoRA target `{0}` (expected one of wq, wk, wv, wo, w1, w2, w3)")]
    UnknownTarget(String),
    /// Adapters are attached already.
    #[error("the model already has LoRA adapters attached")]
    AlreadyAttached,
    /// The operation needs adapters and the model has none.
    #[error("the model has no LoRA adapters attached")]
    NotAttached,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a readable adapters file (truncated, not safetensors, bad metadata).
    #[error("{path}: not a readable LoRA adapters file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An adapter tensor the configuration calls for is absent.
    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// The file holds a tensor that is not an adapter of this model and configuration.
    #[error("{path}: unexpected tensor `{tensor}`")]
    UnknownTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// A tensor's shape does not fit the model and rank.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the model and rank call for.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is not stored as f32, f16, bf16 or f64.
    #[error("{path}: tensor `{tensor}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The stored dtype.
        dtype: String,
    },
}

impl From<crate::atomic::WriteError> for LoraError {
    fn from(e: crate::atomic::WriteError) -> Self {
        Self::io(e.path, e.source)
    }
}

impl LoraError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
