//! Typed errors of the reward crate. File errors name the file and line.

use std::path::PathBuf;

use llama2::chat::ChatError;

/// Why preference data could not be read or a model could not score a batch.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// A preference file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSONL row is malformed (bad JSON, missing or ill-typed columns).
    #[error("{path}:{line}: {message}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the row.
        message: String,
    },
    /// A row's `rating` is not one of the paper's preference strengths.
    #[error(
        "{path}:{line}: unknown rating `{rating}` (expected significantly_better, better, slightly_better, negligibly_better or unsure)"
    )]
    UnknownRating {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The rating found.
        rating: String,
    },
    /// A row's dialog cannot be put in the Llama 2-Chat format.
    #[error("{path}:{line}: {side}: {source}")]
    Chat {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// `chosen` or `rejected`.
        side: &'static str,
        /// The underlying error.
        #[source]
        source: ChatError,
    },
    /// Token ids and lengths of a batch do not agree.
    #[error("bad batch: {0}")]
    BadBatch(String),
}
