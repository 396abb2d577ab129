//! Error type of the chat module.

use std::path::PathBuf;

use super::dialog::Role;
use crate::tokenizer::TokenizerError;

/// Why a dialog cannot be encoded or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The dialog has no messages.
    #[error("the dialog is empty")]
    EmptyDialog,

    /// A system message appears after the first message.
    #[error("message {index} is a system message; only the first message may be one")]
    SystemNotFirst {
        /// Position of the system message in the dialog.
        index: usize,
    },

    /// The dialog consists of a system message alone.
    #[error("the dialog has only a system message; a user message must follow it")]
    SystemOnly,

    /// Roles do not alternate user, assistant, user, ... (after an optional
    /// leading system message).
    #[error(
        "message {index} is from the {found}, expected the {expected} (roles must alternate user/assistant, starting with user)"
    )]
    UnexpectedRole {
        /// Position of the offending message in the dialog.
        index: usize,
        /// Role required at that position.
        expected: Role,
        /// Role found.
        found: Role,
    },

    /// A dialog to be answered does not end with a user message.
    #[error("the last message must be from the user, found the {found}")]
    LastNotUser {
        /// Role of the last message.
        found: Role,
    },

    /// A completed dialog does not end with an assistant message.
    #[error("the last message of a completed dialog must be from the assistant, found the {found}")]
    LastNotAssistant {
        /// Role of the last message.
        found: Role,
    },

    /// Tokenization failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),

    /// A dialog file could not be read.
    #[error("cannot read dialog file {}: {source}", path.display())]
    Io {
        /// File that was read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Dialog JSON is malformed.
    #[error("invalid dialog JSON{}: {source}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Json {
        /// File that was read, if any.
        path: Option<PathBuf>,
        /// Underlying parse error.
        #[source]
        source: serde_json::Error,
    },
}
