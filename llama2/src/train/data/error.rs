//! Typed errors of the training data pipeline.

use std::path::PathBuf;

use crate::chat::ChatError;
use crate::tokenizer::TokenizerError;

/// Why a dataset could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A source or cache file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSONL row is malformed or does not describe a usable example.
    #[error("{path}:{line}: {message}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the row.
        message: String,
    },
    /// The tokenizer failed on a document.
    #[error("{path}: tokenizer: {source}")]
    Tokenizer {
        /// The file whose text failed.
        path: PathBuf,
        /// The underlying error.
        source: TokenizerError,
    },
    /// The dataset holds fewer tokens than one training window.
    #[error("{what}: no complete window of {window} tokens (only {tokens} tokens)")]
    TooSmall {
        /// Which dataset.
        what: String,
        /// Tokens in a window (`seq_len + 1`).
        window: usize,
        /// Tokens available.
        tokens: usize,
    },
    /// A validation split that cannot be made.
    #[error("{0}")]
    BadSplit(String),
    /// A data file or source holds no training item.
    #[error("{0}: no training example")]
    Empty(PathBuf),
}

impl From<crate::atomic::WriteError> for DataError {
    fn from(e: crate::atomic::WriteError) -> Self {
        Self::io(e.path, e.source)
    }
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_row(path: impl Into<PathBuf>, line: usize, message: impl ToString) -> Self {
        Self::BadRow {
            path: path.into(),
            line,
            message: message.to_string(),
        }
    }

    pub(crate) fn chat(path: impl Into<PathBuf>, line: usize, source: ChatError) -> Self {
        Self::bad_row(path, line, source)
    }
}
