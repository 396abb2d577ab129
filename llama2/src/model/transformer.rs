//! The full Llama 2 transformer: token embeddings, `n_layers` blocks, final RMSNorm and an
//! untied output head.

use burn::module::{Initializer, Module};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Int, Tensor, backend::Backend};

use super::attention::AttentionConfig;
use super::block::{TransformerBlock, TransformerBlockConfig};
use super::feed_forward::FeedForwardConfig;
use super::mask::causal_mask;
use super::rms_norm::{RmsNorm, RmsNormConfig};
use super::rotary::{RotaryEmbedding, RotaryEmbeddingConfig};
use crate::cache::KvCache;
use crate::config::LlamaConfig;

/// Llama 2. Parameter paths are Meta's: `tok_embeddings.weight`,
/// `layers.{i}.attention.{wq,wk,wv,wo}.weight`, `layers.{i}.feed_forward.{w1,w2,w3}.weight`,
/// `layers.{i}.{attention_norm,ffn_norm}.weight`, `norm.weight`, `output.weight` (linear
/// weights stored `[in, out]`, Burn's layout).
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embeddings, `[vocab_size, dim]`.
    pub tok_embeddings: Embedding<B>,
    /// The transformer blocks.
    pub layers: Vec<TransformerBlock<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Output head, `dim → vocab_size`.
    pub output: Linear<B>,
    /// Rotary tables shared by all layers (constants, not saved).
    pub rope: RotaryEmbedding<B>,
    /// The hyper-parameters the model was built from.
    pub config: LlamaConfig,
}

impl<B: Backend> Llama<B> {
    pub(crate) fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let block = TransformerBlockConfig::new(
            AttentionConfig::new(config.dim, config.n_heads, config.n_kv_heads)
                .with_initializer(init.clone()),
            FeedForwardConfig::new(config.dim, config.ffn_hidden_dim())
                .with_initializer(init.clone()),
        )
        .with_norm_eps(config.norm_eps);
        Llama {
            tok_embeddings: EmbeddingConfig::new(config.vocab_size, config.dim)
                .with_initializer(init.clone())
                .init(device),
            layers: (0..config.n_layers).map(|_| block.init(device)).collect(),
            norm: RmsNormConfig::new(config.dim)
                .with_eps(config.norm_eps)
                .init(device),
            output: LinearConfig::new(config.dim, config.vocab_size)
                .with_bias(false)
                .with_initializer(init)
                .init(device),
            rope: RotaryEmbeddingConfig::new(config.head_dim(), 2 * config.max_seq_len)
                .with_theta(config.rope_theta)
                .init(device),
            config: config.clone(),
        }
    }

    /// Logits for every position of full sequences, with causal attention (training and
    /// scoring).
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq_len]`
    /// - output: `[batch, seq_len, vocab_size]`
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.output.forward(self.hidden_states(tokens, 0, None))
    }

    /// Logits for the new positions `start_pos .. start_pos + seq_len`, attending to the
    /// `start_pos` positions already in `cache` and appending the new ones to it; Meta's
    /// `Transformer.forward(tokens, start_pos)`.
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq_len]` with `batch ≤ cache.max_batch()`
    /// - output: `[batch, seq_len, vocab_size]`
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        start_pos: usize,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        self.output
            .forward(self.hidden_states(tokens, start_pos, Some(cache)))
    }

    /// Final-norm hidden states of the new positions (what the output head, or a reward
    /// head, reads).
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq_len]`
    /// - output: `[batch, seq_len, dim]`
    ///
    /// # Panics
    ///
    /// If `start_pos + seq_len` exceeds the rotary tables (`2 · max_seq_len`) or the cache.
    pub fn hidden_states(
        &self,
        tokens: Tensor<B, 2, Int>,
        start_pos: usize,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [_, seq_len] = tokens.dims();
        let end = start_pos + seq_len;
        assert!(
            end <= self.rope.max_positions(),
            "position {end} is past the rotary tables ({} positions)",
            self.rope.max_positions()
        );
        if let Some(cache) = cache.as_deref() {
            assert_eq!(
                cache.num_layers(),
                self.layers.len(),
                "cache built for another model"
            );
        }
        let device = tokens.device();
        let mask = (seq_len > 1).then(|| causal_mask::<B>(seq_len, start_pos, &device));
        let mut h = self.tok_embeddings.forward(tokens);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| c.layer_mut(i));
            h = layer.forward(h, &self.rope, start_pos, mask.clone(), layer_cache);
        }
        self.norm.forward(h)
    }

    /// Applies the output head to hidden states.
    ///
    /// # Shapes
    ///
    /// - hidden: `[batch, seq_len, dim]`
    /// - output: `[batch, seq_len, vocab_size]`
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.output.forward(hidden)
    }

    /// A key/value cache sized for this model.
    pub fn new_cache(&self, max_batch: usize, max_seq_len: usize) -> KvCache<B> {
        KvCache::new(&self.config, max_batch, max_seq_len, &self.devices()[0])
    }
}
