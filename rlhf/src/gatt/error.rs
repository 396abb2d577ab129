//! Typed errors of Ghost Attention data building.

use std::path::PathBuf;

use llama2::chat::ChatError;
use llama2::generation::GenerationError;

/// Why Ghost Attention data cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum GattError {
    /// A source dialog does not have the structure of a conversation.
    #[error("invalid dialog: {0}")]
    Dialog(#[source] ChatError),

    /// A text contains one of the reserved Llama 2-Chat tags (`[INST]`,
    /// `[/INST]`, `<<SYS>>`, `<</SYS>>`), which cannot be trained on.
    #[error("{what} contains a reserved chat tag ([INST], [/INST], <<SYS>> or <</SYS>>)")]
    SpecialTags {
        /// Which text.
        what: String,
    },

    /// An instruction with no text.
    #[error("the instruction is empty")]
    EmptyInstruction,

    /// Instruction generator settings that cannot produce instructions.
    #[error("invalid instruction generator settings: {0}")]
    InvalidGenerator(String),

    /// The assistant sampler failed.
    #[error("sampling answer {turn} of dialog {index}: {source}")]
    Sampler {
        /// Position of the first dialog of the failed request in its batch.
        index: usize,
        /// 0-based turn being sampled.
        turn: usize,
        /// The sampler's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The sampler returned another number of answers than it was asked for.
    #[error("the sampler answered {got} dialogs, {expected} were asked")]
    AnswerCount {
        /// Dialogs in the request.
        expected: usize,
        /// Answers returned.
        got: usize,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A row of a JSONL file is malformed or not a usable dialog.
    #[error("{}:{line}: {message}", path.display())]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the row.
        message: String,
    },

    /// A JSON file is malformed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl GattError {
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
}

/// Why [`LlamaSampler`](super::LlamaSampler) could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// Generation failed (bad sampling settings, a dialog that cannot be
    /// encoded, a backend error).
    #[error(transparent)]
    Generation(#[from] GenerationError),

    /// A dialog leaves no room for an answer in the model's context.
    #[error(
        "dialog {index} is {len} tokens long, which leaves no room for an answer in the model's context of {max_seq_len} tokens"
    )]
    ContextFull {
        /// Position of the dialog in the request.
        index: usize,
        /// Its encoded length.
        len: usize,
        /// The model's context length.
        max_seq_len: usize,
    },

    /// A dialog contains reserved chat tags; Meta's `chat_completion` refuses
    /// to answer it.
    #[error("dialog {index} contains a reserved chat tag ([INST], [/INST], <<SYS>> or <</SYS>>)")]
    SpecialTags {
        /// Position of the dialog in the request.
        index: usize,
    },
}
