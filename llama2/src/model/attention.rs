//! Grouped-query attention (Ainslie et al., 2023): `n_heads` query heads share
//! `n_kv_heads` key/value heads, consecutive query heads using the same one, as Meta's
//! `repeat_kv`. Keys and values are never copied per query head: the query heads of one
//! group are stacked along the sequence axis and multiplied against their shared keys.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{DType, Tensor, activation::softmax, backend::Backend};

use super::adapted_rows;
use super::rotary::RotaryEmbedding;
use crate::cache::LayerCache;
use crate::kernels;
use crate::lora::LoraAdapter;

/// Configuration of [`Attention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width.
    pub dim: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (divides `n_heads`).
    pub n_kv_heads: usize,
    /// Initialiser of the projections.
    #[config(default = "Initializer::Normal { mean: 0.0, std: 0.02 }")]
    pub initializer: Initializer,
}

impl AttentionConfig {
    /// Creates the four bias-free projections.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        let head_dim = self.dim / self.n_heads;
        let linear = |d_input, d_output| {
            LinearConfig::new(d_input, d_output)
                .with_bias(false)
                .with_initializer(self.initializer.clone())
                .init(device)
        };
        Attention {
            wq: linear(self.dim, self.n_heads * head_dim),
            wk: linear(self.dim, self.n_kv_heads * head_dim),
            wv: linear(self.dim, self.n_kv_heads * head_dim),
            wo: linear(self.n_heads * head_dim, self.dim),
            wq_lora: None,
            wk_lora: None,
            wv_lora: None,
            wo_lora: None,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim,
        }
    }
}

/// Causal self-attention with rotary embeddings and shared key/value heads.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection, `dim → n_heads · head_dim`.
    pub wq: Linear<B>,
    /// Key projection, `dim → n_kv_heads · head_dim`.
    pub wk: Linear<B>,
    /// Value projection, `dim → n_kv_heads · head_dim`.
    pub wv: Linear<B>,
    /// Output projection, `n_heads · head_dim → dim`.
    pub wo: Linear<B>,
    /// LoRA adapter of `wq`, when attached (see [`crate::lora`]).
    pub wq_lora: Option<LoraAdapter<B>>,
    /// LoRA adapter of `wk`.
    pub wk_lora: Option<LoraAdapter<B>>,
    /// LoRA adapter of `wv`.
    pub wv_lora: Option<LoraAdapter<B>>,
    /// LoRA adapter of `wo`.
    pub wo_lora: Option<LoraAdapter<B>>,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads.
    pub n_kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Attends the new positions `start_pos .. start_pos + seq_len` to themselves and, when a
    /// cache is given, to the `start_pos` positions it already holds (the new keys and values
    /// are written into it).
    ///
    /// `mask` is added to the attention scores: one mask for every row (first axis 1), or one
    /// per row (first axis `batch`, e.g. [`super::mask::row_causal_mask`]). Pass the causal mask
    /// when `seq_len > 1`.
    ///
    /// # Shapes
    ///
    /// - x: `[batch, seq_len, dim]`
    /// - mask: `[1 | batch, seq_len, start_pos + seq_len]` (or `[.., seq_len, seq_len]` without
    ///   a cache)
    /// - output: `[batch, seq_len, dim]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RotaryEmbedding<B>,
        start_pos: usize,
        mask: Option<Tensor<B, 3>>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq_len, _] = x.dims();
        let (heads, kv_heads, head_dim) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let group = heads / kv_heads;

        // Projections stay position-major, `[batch, seq_len, heads, head_dim]`, through the
        // rotation; the head-major `[batch, heads, seq_len, head_dim]` operands of the
        // attention products are transposed views of them.
        let split = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq_len, n, head_dim]);
        let q = split(
            adapted_rows(&self.wq, self.wq_lora.as_ref(), x.clone()),
            heads,
        );
        let k = split(
            adapted_rows(&self.wk, self.wk_lora.as_ref(), x.clone()),
            kv_heads,
        );
        let v = split(adapted_rows(&self.wv, self.wv_lora.as_ref(), x), kv_heads);
        let q = rope.apply_seq_major(q, start_pos).swap_dims(1, 2);
        let k = rope.apply_seq_major(k, start_pos).swap_dims(1, 2);
        // In training the values' gradient arrives head-major: `row_major` copies it back
        // to positions on all threads before the projection's backward pass.
        let v = kernels::row_major(v).swap_dims(1, 2);

        // The keys and values of all positions, in one or two consecutive parts (see
        // `LayerCache::append_parts`).
        let parts = match cache {
            Some(cache) => cache.append_parts(k, v, start_pos),
            None => vec![(k, v)],
        };

        // [batch, kv_heads, group · seq_len, head_dim]: the query heads of one group in a row.
        let rows = group * seq_len;
        let q = if group == 1 {
            q
        } else {
            kernels::row_major(q).reshape([batch, kv_heads, rows, head_dim])
        };
        let mut scores: Vec<Tensor<B, 4>> = parts
            .iter()
            .map(|(k, _)| q.clone().matmul(k.clone().swap_dims(2, 3)))
            .collect();
        let scores = if scores.len() == 1 {
            scores.pop().unwrap()
        } else {
            Tensor::cat(scores, 3)
        };
        let keys_len = scores.dims()[3];
        let scores = scores.div_scalar((head_dim as f64).sqrt());
        let scores = match mask {
            // The mask rows repeat for every query head of a group; scores and mask are
            // flattened so that the mask broadcasts as one whole row per (batch, kv head).
            Some(mask) => {
                let mask_rows = mask.dims()[0];
                let mask = if group == 1 {
                    mask
                } else {
                    mask.repeat_dim(1, group)
                };
                if mask_rows == 1 {
                    (scores.reshape([batch * kv_heads, rows * keys_len])
                        + mask.reshape([1, rows * keys_len]))
                    .reshape([batch, kv_heads, rows, keys_len])
                } else {
                    (scores.reshape([batch, kv_heads, rows * keys_len])
                        + mask.reshape([mask_rows, 1, rows * keys_len]))
                    .reshape([batch, kv_heads, rows, keys_len])
                }
            }
            None => scores,
        };
        let dtype = scores.dtype();
        let probs = if dtype == DType::F32 {
            kernels::softmax_last(scores)
        } else {
            softmax(scores.cast(DType::F32), 3).cast(dtype)
        };
        let out = if parts.len() == 1 {
            let (_, v) = parts.into_iter().next().unwrap();
            probs.matmul(v)
        } else {
            let mut offset = 0;
            let mut out: Option<Tensor<B, 4>> = None;
            for (_, v) in parts {
                let len = v.dims()[2];
                let part = probs.clone().narrow(3, offset, len).matmul(v);
                offset += len;
                out = Some(match out {
                    Some(out) => out + part,
                    None => part,
                });
            }
            out.unwrap()
        };
        let out = kernels::row_major(
            out.reshape([batch, heads, seq_len, head_dim])
                .swap_dims(1, 2),
        )
        .reshape([batch, seq_len, heads * head_dim]);
        adapted_rows(&self.wo, self.wo_lora.as_ref(), out)
    }
}
