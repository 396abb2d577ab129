//! Llama 2 tokenizer.
//!
//! [`Tokenizer`] loads Meta's SentencePiece `tokenizer.model` (or a Hugging
//! Face `tokenizer.json`) and reproduces the `sentencepiece` package exactly:
//! `encode(text, bos, eos)` follows Meta's `Tokenizer.encode`, `decode`
//! follows `SentencePieceProcessor.decode`, and [`StreamDecoder`] decodes
//! incrementally with the same result.
//!
//! Module layout:
//! * [`proto`]: the SentencePiece model protobuf messages;
//! * [`pieces`]: piece kinds and byte-piece helpers;
//! * `sentencepiece`: conversion of a `.model` into a `tokenizers` pipeline;
//! * `hf_json`: loading a `tokenizer.json`;
//! * `decode`: SentencePiece decoding rules;
//! * [`StreamDecoder`]: incremental decoding;
//! * [`TokenizerError`] and [`Result`]: errors.

mod codec;
mod decode;
mod error;
mod hf_json;
pub mod pieces;
pub mod proto;
mod sentencepiece;
mod stream;
#[cfg(test)]
pub(crate) mod testdata;

pub use codec::Tokenizer;
pub use error::{Result, TokenizerError};
pub use pieces::PieceKind;
pub use stream::StreamDecoder;
