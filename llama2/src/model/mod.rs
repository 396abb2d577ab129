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
//! | [`precision`] | the storage precision of the matrix weights (f32, f16, bf16) |

pub mod attention;
pub mod block;
pub mod feed_forward;
pub mod mask;
pub mod precision;
pub mod rms_norm;
pub mod rotary;
pub mod transformer;

pub use attention::{Attention, AttentionConfig};
pub use block::{TransformerBlock, TransformerBlockConfig};
pub use feed_forward::{FeedForward, FeedForwardConfig};
pub use precision::{UnsupportedDType, WeightDType};
pub use rms_norm::{RmsNorm, RmsNormConfig};
pub use rotary::{RotaryEmbedding, RotaryEmbeddingConfig};
pub use transformer::Llama;

use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};

use crate::lora::LoraAdapter;

/// Applies `linear` to every position of `x` as one `[batch · seq_len, d_in]` matrix
/// product. Burn's `Linear` on a 3-D input multiplies each batch row separately against the
/// broadcast weight, which reads the whole weight once per sequence when decoding a batch.
///
/// # Shapes
///
/// - x: `[batch, seq_len, d_in]`
/// - output: `[batch, seq_len, d_out]`
pub(crate) fn linear_rows<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, seq_len, d_in] = x.dims();
    let out = linear_2d(linear, x.reshape([batch * seq_len, d_in]));
    let d_out = out.dims()[1];
    out.reshape([batch, seq_len, d_out])
}

/// `Linear::forward` on a `[rows, d_in]` matrix through [`crate::kernels::matmul_weight`]
/// (a decoding kernel on Flex, Burn's matmul elsewhere).
fn linear_2d<B: Backend>(linear: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let out = crate::kernels::matmul_weight(x, linear.weight.val());
    match &linear.bias {
        Some(bias) => out + bias.val().unsqueeze(),
        None => out,
    }
}

/// [`linear_rows`] plus, when an adapter is attached, its low-rank update of the same rows
/// (LoRA, Hu et al., 2021: `W x + scale · B A x`). Without an adapter this is exactly
/// [`linear_rows`].
///
/// # Shapes
///
/// - x: `[batch, seq_len, d_in]`
/// - output: `[batch, seq_len, d_out]`
pub(crate) fn adapted_rows<B: Backend>(
    linear: &Linear<B>,
    adapter: Option<&LoraAdapter<B>>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let Some(adapter) = adapter else {
        return linear_rows(linear, x);
    };
    let [batch, seq_len, d_in] = x.dims();
    let x = x.reshape([batch * seq_len, d_in]);
    let out = linear_2d(linear, x.clone()) + adapter.forward(x);
    let d_out = out.dims()[1];
    out.reshape([batch, seq_len, d_out])
}
