//! One pre-normalised transformer block.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};

use super::attention::{Attention, AttentionConfig};
use super::feed_forward::{FeedForward, FeedForwardConfig};
use super::rms_norm::{RmsNorm, RmsNormConfig};
use super::rotary::RotaryEmbedding;
use crate::cache::LayerCache;

/// Configuration of [`TransformerBlock`].
#[derive(Config, Debug)]
pub struct TransformerBlockConfig {
    /// Attention sizes.
    pub attention: AttentionConfig,
    /// Feed-forward sizes.
    pub feed_forward: FeedForwardConfig,
    /// RMSNorm epsilon.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
}

impl TransformerBlockConfig {
    /// Creates the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TransformerBlock<B> {
        let norm = RmsNormConfig::new(self.attention.dim).with_eps(self.norm_eps);
        TransformerBlock {
            attention: self.attention.init(device),
            feed_forward: self.feed_forward.init(device),
            attention_norm: norm.init(device),
            ffn_norm: norm.init(device),
        }
    }
}

/// `h = x + attention(norm(x))`, `out = h + feed_forward(norm(h))`.
#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    /// Self-attention.
    pub attention: Attention<B>,
    /// SwiGLU feed-forward network.
    pub feed_forward: FeedForward<B>,
    /// Norm before attention.
    pub attention_norm: RmsNorm<B>,
    /// Norm before the feed-forward network.
    pub ffn_norm: RmsNorm<B>,
}

impl<B: Backend> TransformerBlock<B> {
    /// See [`Attention::forward`] for `start_pos`, `mask` and `cache`.
    ///
    /// # Shapes
    ///
    /// - x: `[batch, seq_len, dim]`
    /// - output: `[batch, seq_len, dim]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RotaryEmbedding<B>,
        start_pos: usize,
        mask: Option<Tensor<B, 3>>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        // Residual sums written `f(x) + x` rather than `x + f(x)` (the same sum): the
        // left operand is the one a backend can update in place.
        let h = self.attention.forward(
            self.attention_norm.forward(x.clone()),
            rope,
            start_pos,
            mask,
            cache,
        ) + x;
        self.feed_forward.forward(self.ffn_norm.forward(h.clone())) + h
    }
}
