//! Errors of training runs.

use std::path::PathBuf;

use burn::record::RecorderError;

use super::data::DataError;

/// Why a training run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint could not be written or read (an empty or truncated
    /// file, a file of another model or format, a full disk).
    #[error(
        "checkpoint file {path} cannot be read or written (empty, truncated, or not a checkpoint of this run?): {source}"
    )]
    Record {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        source: RecorderError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The checkpoint was written with other LoRA adapters (or none) than the
    /// model it is loaded into has.
    #[error("checkpoint {path}: LoRA adapters {checkpoint:?} do not match the model's {model:?}")]
    LoraMismatch {
        /// The checkpoint directory.
        path: PathBuf,
        /// The checkpoint's LoRA configuration (JSON), if any.
        checkpoint: Option<String>,
        /// The model's LoRA configuration (JSON), if any.
        model: Option<String>,
    },
    /// A checkpoint holds another architecture than the model it is loaded into.
    #[error("checkpoint {path} is of another model: {detail}")]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// LoRA adapters could not be attached.
    #[error(transparent)]
    Lora(#[from] crate::lora::LoraError),
    /// The training data holds no item.
    #[error("the training data is empty")]
    EmptyData,
    /// `--resume` found no checkpoint.
    #[error("no checkpoint to resume from in {0}")]
    NoCheckpoint(PathBuf),
    /// The loss plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl From<crate::atomic::WriteError> for TrainError {
    fn from(e: crate::atomic::WriteError) -> Self {
        Self::io(e.path, e.source)
    }
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
