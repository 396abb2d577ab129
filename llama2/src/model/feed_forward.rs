//! SwiGLU feed-forward network (Shazeer, 2020).

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};

use super::adapted_rows;
use crate::lora::LoraAdapter;

/// Configuration of [`FeedForward`].
#[derive(Config, Debug)]
pub struct FeedForwardConfig {
    /// Model width.
    pub dim: usize,
    /// Hidden width (see [`LlamaConfig::ffn_hidden_dim`](crate::LlamaConfig::ffn_hidden_dim)).
    pub hidden_dim: usize,
    /// Initialiser of the three projections.
    #[config(default = "Initializer::Normal { mean: 0.0, std: 0.02 }")]
    pub initializer: Initializer,
}

impl FeedForwardConfig {
    /// Creates the three bias-free projections.
    pub fn init<B: Backend>(&self, device: &B::Device) -> FeedForward<B> {
        let linear = |d_input, d_output| {
            LinearConfig::new(d_input, d_output)
                .with_bias(false)
                .with_initializer(self.initializer.clone())
                .init(device)
        };
        FeedForward {
            w1: linear(self.dim, self.hidden_dim),
            w2: linear(self.hidden_dim, self.dim),
            w3: linear(self.dim, self.hidden_dim),
            w1_lora: None,
            w2_lora: None,
            w3_lora: None,
        }
    }
}

/// `w2(silu(w1 x) ⊙ w3 x)`.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    /// Gate projection, `dim → hidden`.
    pub w1: Linear<B>,
    /// Down projection, `hidden → dim`.
    pub w2: Linear<B>,
    /// Up projection, `dim → hidden`.
    pub w3: Linear<B>,
    /// LoRA adapter of `w1`, when attached (see [`crate::lora`]).
    pub w1_lora: Option<LoraAdapter<B>>,
    /// LoRA adapter of `w2`.
    pub w2_lora: Option<LoraAdapter<B>>,
    /// LoRA adapter of `w3`.
    pub w3_lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> FeedForward<B> {
    /// # Shapes
    ///
    /// - x: `[batch, seq_len, dim]`
    /// - output: `[batch, seq_len, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = adapted_rows(&self.w1, self.w1_lora.as_ref(), x.clone());
        let up = adapted_rows(&self.w3, self.w3_lora.as_ref(), x);
        let hidden = crate::kernels::swiglu(gate, up);
        adapted_rows(&self.w2, self.w2_lora.as_ref(), hidden)
    }
}
