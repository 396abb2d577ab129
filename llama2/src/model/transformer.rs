//! The full Llama 2 transformer: token embeddings, `n_layers` blocks, final RMSNorm and an
//! untied output head.

use burn::module::{Initializer, Module};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Int, Tensor, backend::Backend};

use super::attention::AttentionConfig;
use super::block::{TransformerBlock, TransformerBlockConfig};
use super::feed_forward::FeedForwardConfig;
use super::linear_rows;
use super::mask::{causal_mask, row_causal_mask};
use super::rms_norm::{RmsNorm, RmsNormConfig};
use super::rotary::{RotaryEmbedding, RotaryEmbeddingConfig};
use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::lora::LoraConfig;

/// Llama 2. Parameter paths are Meta's: `tok_embeddings.weight`,
/// `layers.{i}.attention.{wq,wk,wv,wo}.weight`, `layers.{i}.feed_forward.{w1,w2,w3}.weight`,
/// `layers.{i}.{attention_norm,ffn_norm}.weight`, `norm.weight`, `output.weight` (linear
/// weights stored `[in, out]`, Burn's layout). LoRA adapters, when attached
/// ([`crate::lora`]), add `layers.{i}.attention.wq_lora.lora_{a,b}.weight` and the like.
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
    /// The configuration of the attached LoRA adapters, if any (see [`crate::lora`]).
    pub lora: Option<LoraConfig>,
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
            lora: None,
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
        self.logits(self.hidden_states(tokens, 0, None))
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
        self.logits(self.hidden_states(tokens, start_pos, Some(cache)))
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
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let seq_len = tokens.dims()[1];
        let device = tokens.device();
        let mask = (seq_len > 1).then(|| causal_mask::<B>(seq_len, start_pos, &device));
        self.hidden_states_masked(tokens, start_pos, cache, mask)
    }

    /// [`hidden_states`](Self::hidden_states) for rows whose sequences start at different
    /// cache positions (continuous batching): row `b` attends to positions
    /// `first_keys[b] ..` of its cache row only (see [`row_causal_mask`]).
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq_len]`, `first_keys.len() == batch`
    /// - output: `[batch, seq_len, dim]`
    ///
    /// # Panics
    ///
    /// As [`hidden_states`](Self::hidden_states), and if `first_keys` does not have one entry
    /// per row.
    pub fn hidden_states_from(
        &self,
        tokens: Tensor<B, 2, Int>,
        start_pos: usize,
        cache: Option<&mut KvCache<B>>,
        first_keys: &[usize],
    ) -> Tensor<B, 3> {
        let [batch, seq_len] = tokens.dims();
        assert_eq!(first_keys.len(), batch, "one first key position per row");
        let device = tokens.device();
        let mask = if first_keys.iter().all(|&k| k == 0) {
            (seq_len > 1).then(|| causal_mask::<B>(seq_len, start_pos, &device))
        } else {
            Some(row_causal_mask::<B>(
                seq_len, start_pos, first_keys, &device,
            ))
        };
        self.hidden_states_masked(tokens, start_pos, cache, mask)
    }

    fn hidden_states_masked(
        &self,
        tokens: Tensor<B, 2, Int>,
        start_pos: usize,
        mut cache: Option<&mut KvCache<B>>,
        mask: Option<Tensor<B, 3>>,
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
        linear_rows(&self.output, hidden)
    }

    /// A key/value cache sized for this model.
    pub fn new_cache(&self, max_batch: usize, max_seq_len: usize) -> KvCache<B> {
        KvCache::new(&self.config, max_batch, max_seq_len, &self.devices()[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::{TensorData, Tolerance};

    type B = TestBackend;

    /// A tiny grouped-query model: 4 query heads sharing 2 key/value heads.
    fn tiny_gqa() -> (Llama<B>, LlamaConfig) {
        let config = LlamaConfig::new(64, 2, 4, 2, 97)
            .with_multiple_of(16)
            .with_max_seq_len(96);
        (config.init::<B>(&Default::default()), config)
    }

    fn tokens(n: usize, batch: usize, seed: u64) -> Vec<i64> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n * batch)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 97) as i64
            })
            .collect()
    }

    fn tensor(tokens: &[i64], batch: usize) -> Tensor<B, 2, Int> {
        let len = tokens.len() / batch;
        Tensor::from_data(
            TensorData::new(tokens.to_vec(), [batch, len]),
            &Default::default(),
        )
    }

    /// Logits of positions `range` of each sequence, from the full forward pass.
    fn full_logits(model: &Llama<B>, tokens: &[i64], batch: usize) -> Tensor<B, 3> {
        model.forward(tensor(tokens, batch))
    }

    /// Feeds `tokens` through the cache in chunks of the given sizes and concatenates the
    /// logits of every chunk.
    fn cached_logits(
        model: &Llama<B>,
        cache: &mut KvCache<B>,
        tokens: &[i64],
        batch: usize,
        chunks: &[usize],
    ) -> Tensor<B, 3> {
        let len = tokens.len() / batch;
        assert_eq!(chunks.iter().sum::<usize>(), len);
        let mut start = 0;
        let mut outputs = Vec::new();
        for &chunk in chunks {
            let rows: Vec<i64> = (0..batch)
                .flat_map(|b| tokens[b * len + start..b * len + start + chunk].to_vec())
                .collect();
            outputs.push(model.forward_cached(tensor(&rows, batch), start, cache));
            start += chunk;
        }
        Tensor::cat(outputs, 1)
    }

    fn assert_close(a: Tensor<B, 3>, b: Tensor<B, 3>) {
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4));
    }

    #[test]
    fn cached_decoding_matches_full_forward() {
        let (model, _) = tiny_gqa();
        // A prompt, then one token at a time, well past the cache's write buffer.
        let len = 90;
        let tokens = tokens(len, 1, 1);
        let mut chunks = vec![7];
        chunks.extend(std::iter::repeat_n(1, len - 7));
        let mut cache = model.new_cache(1, len);
        assert_close(
            cached_logits(&model, &mut cache, &tokens, 1, &chunks),
            full_logits(&model, &tokens, 1),
        );
    }

    #[test]
    fn cached_chunks_and_batches_match_full_forward() {
        let (model, _) = tiny_gqa();
        let (len, batch) = (80, 3);
        let tokens = tokens(len, batch, 2);
        let full = full_logits(&model, &tokens, batch);
        // Prompts longer and shorter than the write buffer, odd chunk sizes, a cache with
        // more rows than the batch.
        for chunks in [vec![70, 1, 1, 8], vec![3, 30, 40, 2, 5], vec![1; len]] {
            let mut cache = model.new_cache(batch + 1, len + 5);
            assert_close(
                cached_logits(&model, &mut cache, &tokens, batch, &chunks),
                full.clone(),
            );
        }
    }

    #[test]
    fn a_used_cache_serves_a_new_sequence() {
        let (model, _) = tiny_gqa();
        let mut cache = model.new_cache(1, 96);
        let first = tokens(75, 1, 3);
        cached_logits(&model, &mut cache, &first, 1, &[10, 65]);
        let second = tokens(70, 1, 4);
        let mut chunks = vec![4];
        chunks.extend(std::iter::repeat_n(1, 66));
        assert_close(
            cached_logits(&model, &mut cache, &second, 1, &chunks),
            full_logits(&model, &second, 1),
        );
    }

    #[test]
    fn hidden_states_of_the_last_position_give_its_logits() {
        let (model, _) = tiny_gqa();
        let tokens = tokens(12, 2, 5);
        let full = full_logits(&model, &tokens, 2).narrow(1, 11, 1);
        let mut cache = model.new_cache(2, 12);
        let hidden = model.hidden_states(tensor(&tokens, 2), 0, Some(&mut cache));
        assert_close(model.logits(hidden.narrow(1, 11, 1)), full);
    }
}
