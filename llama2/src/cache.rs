//! The key/value cache for incremental decoding.
//!
//! The cache is preallocated for a batch and a maximum length, as in Meta's reference: the
//! keys and values of new positions are written at `start_pos`, and attention reads the first
//! `start_pos + seq_len` positions. It lives beside the model so that the caller decides its
//! size and lifetime (one per generation request, reused across calls, or none).

use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;

/// Keys and values of one layer.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
}

impl<B: Backend> LayerCache<B> {
    /// An all-zero cache.
    pub fn new(
        max_batch: usize,
        n_kv_heads: usize,
        max_seq_len: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Self {
        let shape = [max_batch, n_kv_heads, max_seq_len, head_dim];
        Self {
            keys: Tensor::zeros(shape, device),
            values: Tensor::zeros(shape, device),
        }
    }

    /// Writes the keys and values of positions `start_pos .. start_pos + seq_len` and returns
    /// those of positions `0 .. start_pos + seq_len` for the same batch rows.
    ///
    /// # Shapes
    ///
    /// - keys, values: `[batch, n_kv_heads, seq_len, head_dim]`
    /// - output: two tensors `[batch, n_kv_heads, start_pos + seq_len, head_dim]`
    ///
    /// # Panics
    ///
    /// If the batch or the positions do not fit the cache.
    pub fn append(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        start_pos: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, heads, seq_len, head_dim] = keys.dims();
        let [max_batch, _, max_seq_len, _] = self.keys.dims();
        let end = start_pos + seq_len;
        assert!(
            batch <= max_batch,
            "batch {batch} exceeds the cache's {max_batch}"
        );
        assert!(
            end <= max_seq_len,
            "position {end} exceeds the cache's {max_seq_len}"
        );
        let write = [0..batch, 0..heads, start_pos..end, 0..head_dim];
        self.keys.inplace(|t| t.slice_assign(write.clone(), keys));
        self.values.inplace(|t| t.slice_assign(write, values));
        let read = [0..batch, 0..heads, 0..end, 0..head_dim];
        (
            self.keys.clone().slice(read.clone()),
            self.values.clone().slice(read),
        )
    }
}

/// Keys and values of every layer of a model.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
    max_batch: usize,
    max_seq_len: usize,
}

impl<B: Backend> KvCache<B> {
    /// A cache for `max_batch` sequences of up to `max_seq_len` positions.
    pub fn new(
        config: &LlamaConfig,
        max_batch: usize,
        max_seq_len: usize,
        device: &B::Device,
    ) -> Self {
        let layers = (0..config.n_layers)
            .map(|_| {
                LayerCache::new(
                    max_batch,
                    config.n_kv_heads,
                    max_seq_len,
                    config.head_dim(),
                    device,
                )
            })
            .collect();
        Self {
            layers,
            max_batch,
            max_seq_len,
        }
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Largest batch the cache holds.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Largest number of positions the cache holds.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// The cache of layer `index`.
    pub fn layer_mut(&mut self, index: usize) -> &mut LayerCache<B> {
        &mut self.layers[index]
    }
}
