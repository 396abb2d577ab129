//! Error type of the tokenizer module.

use std::path::PathBuf;

/// Result alias used throughout [`crate::tokenizer`].
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, saving or running a tokenizer.
///
/// Errors about a file name that file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read (missing, permissions, ...).
    #[error("cannot read tokenizer file {}: {source}", path.display())]
    Io {
        /// File that was read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not a SentencePiece model protobuf.
    #[error("{} is not a SentencePiece model: {reason}", path.display())]
    NotSentencePiece {
        /// File that was read.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// The SentencePiece model uses an algorithm other than BPE.
    #[error(
        "{}: unsupported SentencePiece model type {model_type} (only BPE models are supported)",
        path.display()
    )]
    UnsupportedModelType {
        /// File that was read.
        path: PathBuf,
        /// Model type found in the trainer spec (`UNIGRAM`, `WORD`, `CHAR`, ...).
        model_type: String,
    },

    /// The SentencePiece model is valid but uses a feature that cannot be
    /// reproduced exactly (normalization rules, user-defined pieces, ...).
    #[error("{}: unsupported SentencePiece model: {reason}", path.display())]
    UnsupportedModel {
        /// File that was read.
        path: PathBuf,
        /// The unsupported feature.
        reason: String,
    },

    /// The file is not a usable Hugging Face `tokenizer.json`.
    #[error("{} is not a usable tokenizer.json: {reason}", path.display())]
    InvalidHfJson {
        /// File that was read.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// A special token the API needs (BOS/EOS) is not in the vocabulary.
    #[error("{}: the vocabulary has no {what} token ({piece:?})", path.display())]
    MissingSpecialToken {
        /// File that was read.
        path: PathBuf,
        /// Role of the token (`BOS`, `EOS`).
        what: &'static str,
        /// Piece that was looked up.
        piece: String,
    },

    /// A `tokenizer.json` could not be written.
    #[error("cannot write tokenizer file {}: {reason}", path.display())]
    Save {
        /// File that was written.
        path: PathBuf,
        /// Why writing failed.
        reason: String,
    },

    /// A token id is not below the vocabulary size.
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    IdOutOfRange {
        /// Offending id.
        id: u32,
        /// Number of pieces in the vocabulary.
        vocab_size: usize,
    },

    /// The underlying `tokenizers` pipeline failed while encoding or decoding.
    #[error("tokenization failed: {0}")]
    Tokenization(String),
}
