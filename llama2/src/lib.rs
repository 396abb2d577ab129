//! The Llama 2 model (Touvron et al., 2023, §2.2) as Burn modules generic over `B: Backend`.
//!
//! | module | paper | contents |
//! |---|---|---|
//! | [`config`] | Table 1 | [`LlamaConfig`] and the 7B / 13B / 70B presets |
//! | [`model`] | §2.2 "Training Details" | RMSNorm, RoPE, grouped-query attention, SwiGLU, the transformer, f32/f16/bf16 weight storage |
//! | [`cache`] | — | the key/value cache for incremental decoding |
//! | [`tokenizer`] | §2.1 | Meta's SentencePiece BPE tokenizer, exact to the `sentencepiece` package |
//! | [`chat`] | §3.1 | the Llama 2-Chat dialog format (`[INST]`, `<<SYS>>`) |
//! | [`generation`] | — | sampling (greedy, temperature, top-k, top-p) and Meta's `generate`, `text_completion`, `chat_completion` |
//! | [`kernels`] | — | CPU kernels for decoding, the weight products, the training loss, softmax, SwiGLU, RMSNorm, the rotary rotation, row-major copies, gradient clipping and AdamW (Flex), each beside Burn's operations as the fallback |
//! | [`lora`] | — | LoRA adapters (Hu et al., 2021): attach, freeze, merge, save and load |
//! | `serve` (feature `serve`) | — | an OpenAI-compatible HTTP server with streaming and continuous batching |
//! | `train` (feature `train`) | §2.2, §3.1 | pretraining and supervised fine-tuning on burn-train |
//! | [`atomic`] | — | outputs written to a temporary sibling and renamed into place |
//!
//! The model computes what Meta's reference `model.py` computes: the same parameter names,
//! the same interleaved-pair rotary convention and the same head grouping, so a checkpoint
//! maps onto it one tensor to one tensor.

pub mod atomic;
pub mod cache;
pub mod chat;
pub mod config;
pub mod generation;
pub mod kernels;
pub mod lora;
pub mod model;
#[cfg(feature = "serve")]
pub mod serve;
pub mod tokenizer;
#[cfg(feature = "train")]
pub mod train;

pub use cache::KvCache;
pub use config::{ConfigError, LlamaConfig};
pub use lora::{LoraConfig, LoraError};
pub use model::{Llama, WeightDType};
pub use tokenizer::Tokenizer;

#[cfg(test)]
pub(crate) type TestBackend = burn::backend::NdArray<f32, i64>;
