//! SwiGLU feed-forward network (Shazeer, 2020).

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, activation::silu, backend::Backend};

use super::linear_rows;

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
}

impl<B: Backend> FeedForward<B> {
    /// # Shapes
    ///
    /// - x: `[batch, seq_len, dim]`
    /// - output: `[batch, seq_len, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(linear_rows(&self.w1, x.clone()));
        linear_rows(&self.w2, gate * linear_rows(&self.w3, x))
    }
}
