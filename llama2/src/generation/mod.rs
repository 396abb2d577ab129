//! Text generation: Meta's `Llama.generate`, `text_completion` and
//! `chat_completion` on top of the pure model.
//!
//! | file | contents |
//! |---|---|
//! | [`sampling`] | [`SamplerConfig`] / [`Sampler`]: greedy, temperature, top-k, Meta's top-p, seeded |
//! | [`generate`] | [`Generator`]: batched generation with a KV cache, EOS and stop sequences, logprobs, echo, streaming |
//! | [`batch`] | [`DecodeBatch`]: the decode state of a ragged batch that rows join and leave between steps (continuous batching) |
//! | `row` | one sequence: its sampler, text, stop sequences and logprobs |
//! | [`error`] | [`GenerationError`] |
//!
//! ```no_run
//! use llama2::generation::{GenerationOptions, Generator, SamplerConfig};
//! # fn run<B: burn::tensor::backend::Backend>(model: &llama2::Llama<B>, tok: &llama2::Tokenizer)
//! # -> Result<(), llama2::generation::GenerationError> {
//! let generator = Generator::new(model, tok)?;
//! let options = GenerationOptions::new(32).with_sampler(SamplerConfig::new(0.8, 0.95).with_seed(1));
//! let out = generator.text_completion_streaming(&["Once upon a time".into()], &options, |_, piece| {
//!     print!("{piece}")
//! })?;
//! println!("\n{} tokens", out[0].tokens.len());
//! # Ok(()) }
//! ```

pub mod batch;
pub mod error;
pub mod generate;
mod row;
pub mod sampling;

pub use batch::{DecodeBatch, RowEvent, RowId, check_request};
pub use error::GenerationError;
pub use generate::{ChatCompletion, Completion, FinishReason, GenerationOptions, Generator};
pub use sampling::{Sampler, SamplerConfig};
