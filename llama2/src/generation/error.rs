//! Error type of the generation module.

use crate::chat::ChatError;
use crate::tokenizer::TokenizerError;

/// Why a generation request cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// No prompt (or dialog) was given.
    #[error("no prompts were given")]
    NoPrompts,

    /// A prompt has no tokens.
    #[error("prompt {index} is empty")]
    EmptyPrompt {
        /// Position of the prompt in the batch.
        index: usize,
    },

    /// A prompt does not fit the model's context.
    #[error(
        "prompt {index} has {len} tokens, more than the model's context of {max_seq_len} tokens"
    )]
    PromptTooLong {
        /// Position of the prompt in the batch.
        index: usize,
        /// Its length in tokens.
        len: usize,
        /// The model's context length.
        max_seq_len: usize,
    },

    /// A prompt token is not in the model's vocabulary.
    #[error("prompt {index} contains token {id}, outside the model's vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// Position of the prompt in the batch.
        index: usize,
        /// The offending id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },

    /// The model can produce ids the tokenizer cannot decode.
    #[error(
        "the model's vocabulary ({model}) is larger than the tokenizer's ({tokenizer}); they do not belong together"
    )]
    VocabMismatch {
        /// The model's vocabulary size.
        model: usize,
        /// The tokenizer's vocabulary size.
        tokenizer: usize,
    },

    /// Sampling parameters out of range.
    #[error("invalid sampling parameters: {0}")]
    InvalidSampler(String),

    /// An empty stop sequence.
    #[error("stop sequences must not be empty")]
    EmptyStopSequence,

    /// A dialog cannot be encoded.
    #[error("dialog {index}: {source}")]
    Chat {
        /// Position of the dialog in the batch.
        index: usize,
        /// Why.
        #[source]
        source: ChatError,
    },

    /// Encoding or decoding failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),

    /// A batch has no free row, or its cache window cannot hold the sequence now.
    #[error("the batch is full: no free row or cache positions for this sequence")]
    BatchFull,

    /// A KV-cache window outside what a batch can use.
    #[error(
        "a KV-cache window of {window} positions is outside {min}..={max} (the model's context to twice it)"
    )]
    InvalidWindow {
        /// The window asked for.
        window: usize,
        /// The model's context.
        min: usize,
        /// Twice the context (the rotary tables).
        max: usize,
    },

    /// Logits could not be read back from the device.
    #[error("cannot read logits from the backend: {0}")]
    Backend(String),
}
