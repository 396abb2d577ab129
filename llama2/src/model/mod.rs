//! The Llama 2 transformer (paper §2.2): a pre-normalised decoder-only transformer with
//! RMSNorm, SwiGLU feed-forward layers, rotary position embeddings and grouped-query
//! attention.
//!
//! | file | part |
//! |---|---|
//! | [`rms_norm`] | RMSNorm pre-normalisation |
//! | [`rotary`] | rotary position embeddings (RoPE), Meta's interleaved-pair convention |
//! | [`attention`] | grouped-query attention with optional KV cache |
//! | [`feed_forward`] | SwiGLU feed-forward network |
//! | [`block`] | one pre-norm transformer block |
//! | [`transformer`] | embeddings, blocks, final norm and output head |
//! | [`mask`] | the causal attention mask |

pub mod attention;
pub mod block;
pub mod feed_forward;
pub mod mask;
pub mod rms_norm;
pub mod rotary;
pub mod transformer;

pub use attention::{Attention, AttentionConfig};
pub use block::{TransformerBlock, TransformerBlockConfig};
pub use feed_forward::{FeedForward, FeedForwardConfig};
pub use rms_norm::{RmsNorm, RmsNormConfig};
pub use rotary::{RotaryEmbedding, RotaryEmbeddingConfig};
pub use transformer::Llama;
