//! The key/value cache for incremental decoding.
//!
//! The cache is preallocated for a batch and a maximum length, as in Meta's reference: the
//! keys and values of new positions are written at `start_pos`, and attention reads the first
//! `start_pos + seq_len` positions. It lives beside the model so that the caller decides its
//! size and lifetime (one per generation request, reused across calls, or none).

use core::ops::Range;

use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;

/// Positions held by the small write buffer of a [`LayerCache`].
const TAIL_LEN: usize = 64;

/// Keys and values of one layer.
///
/// Positions are stored position-major, `[max_batch, positions, n_kv_heads, head_dim]`, so
/// that the projections are written without transposition and the first `n` positions of a
/// full batch are one contiguous block. Positions `0 .. committed` live in the preallocated
/// main buffer; positions from `committed` on (up to [`TAIL_LEN`] of them) in a small tail
/// buffer that single-token decoding writes into. Writing into a tensor costs a copy of the
/// whole tensor on backends whose `slice_assign` is copy-on-write (Flex), so the per-token
/// writes go to the small buffer and the main one is written once per [`TAIL_LEN`] tokens
/// (and once per prompt).
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    tail_keys: Tensor<B, 4>,
    tail_values: Tensor<B, 4>,
    committed: usize,
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
        let shape = [max_batch, max_seq_len, n_kv_heads, head_dim];
        let tail = [max_batch, TAIL_LEN.min(max_seq_len), n_kv_heads, head_dim];
        Self {
            keys: Tensor::zeros(shape, device),
            values: Tensor::zeros(shape, device),
            tail_keys: Tensor::zeros(tail, device),
            tail_values: Tensor::zeros(tail, device),
            committed: 0,
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
        let mut parts = self.append_parts(keys, values, start_pos);
        if parts.len() == 1 {
            return parts.pop().unwrap();
        }
        let (keys, values) = parts.into_iter().unzip();
        (Tensor::cat(keys, 2), Tensor::cat(values, 2))
    }

    /// [`append`](Self::append), returning positions `0 .. start_pos + seq_len` as one or two
    /// consecutive parts (views of the buffers, not copies), in position order.
    pub(crate) fn append_parts(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        start_pos: usize,
    ) -> Vec<(Tensor<B, 4>, Tensor<B, 4>)> {
        let [batch, heads, seq_len, head_dim] = keys.dims();
        let [max_batch, max_seq_len, _, _] = self.keys.dims();
        let tail_len = self.tail_keys.dims()[1];
        let end = start_pos + seq_len;
        assert!(
            batch <= max_batch,
            "batch {batch} exceeds the cache's {max_batch}"
        );
        assert!(
            end <= max_seq_len,
            "position {end} exceeds the cache's {max_seq_len}"
        );
        // Position-major views of the new rows: `[batch, seq_len, heads, head_dim]`.
        let keys = keys.swap_dims(1, 2);
        let values = values.swap_dims(1, 2);
        let write = |t: &mut Tensor<B, 4>, rows: Range<usize>, value: Tensor<B, 4>| {
            t.inplace(|t| t.slice_assign([0..batch, rows, 0..heads, 0..head_dim], value))
        };

        if start_pos >= self.committed && end <= self.committed + tail_len {
            // Into the tail.
            let rows = start_pos - self.committed..end - self.committed;
            write(&mut self.tail_keys, rows.clone(), keys);
            write(&mut self.tail_values, rows, values);
        } else if start_pos < self.committed {
            // Rewriting committed positions (a new sequence in a used cache): the main buffer
            // holds `0 .. end`, later positions go to the tail again.
            write(&mut self.keys, start_pos..end, keys);
            write(&mut self.values, start_pos..end, values);
            self.committed = end;
        } else {
            // Past the tail: move the tail's positions `committed .. start_pos` into the main
            // buffer together with the new ones, and start an empty tail at `end`.
            let pending = (start_pos - self.committed).min(tail_len);
            let committed = self.committed;
            let (keys, values) = if pending == 0 {
                (keys, values)
            } else {
                let old = |t: &Tensor<B, 4>| {
                    t.clone()
                        .slice([0..batch, 0..pending, 0..heads, 0..head_dim])
                };
                let (old_keys, old_values) = (old(&self.tail_keys), old(&self.tail_values));
                if committed + pending == start_pos {
                    (
                        Tensor::cat(vec![old_keys, keys], 1),
                        Tensor::cat(vec![old_values, values], 1),
                    )
                } else {
                    // A gap of never-written positions lies between the tail and the new rows.
                    write(&mut self.keys, committed..committed + pending, old_keys);
                    write(&mut self.values, committed..committed + pending, old_values);
                    (keys, values)
                }
            };
            let first = end - keys.dims()[1];
            write(&mut self.keys, first..end, keys);
            write(&mut self.values, first..end, values);
            self.committed = end;
        }

        // Read back `0 .. end` as head-major views.
        let read = |t: &Tensor<B, 4>, rows: Range<usize>| {
            t.clone()
                .slice([0..batch, rows, 0..heads, 0..head_dim])
                .swap_dims(1, 2)
        };
        let mut parts = Vec::with_capacity(2);
        let main = end.min(self.committed);
        if main > 0 {
            parts.push((read(&self.keys, 0..main), read(&self.values, 0..main)));
        }
        if end > self.committed {
            let rows = 0..end - self.committed;
            parts.push((
                read(&self.tail_keys, rows.clone()),
                read(&self.tail_values, rows),
            ));
        }
        parts
    }

    /// Position-major keys and values of positions `positions` of batch row `row`, copies.
    ///
    /// # Shapes
    ///
    /// - output: two tensors `[1, positions.len(), n_kv_heads, head_dim]`
    fn read_row(&self, row: usize, positions: Range<usize>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [_, _, heads, head_dim] = self.keys.dims();
        let read = |t: &Tensor<B, 4>, rows: Range<usize>| {
            t.clone().slice([row..row + 1, rows, 0..heads, 0..head_dim])
        };
        let mut keys = Vec::with_capacity(2);
        let mut values = Vec::with_capacity(2);
        let main = positions.start.min(self.committed)..positions.end.min(self.committed);
        if !main.is_empty() {
            keys.push(read(&self.keys, main.clone()));
            values.push(read(&self.values, main));
        }
        let tail = positions.start.max(self.committed)..positions.end.max(self.committed);
        if !tail.is_empty() {
            let tail = tail.start - self.committed..tail.end - self.committed;
            keys.push(read(&self.tail_keys, tail.clone()));
            values.push(read(&self.tail_values, tail));
        }
        (Tensor::cat(keys, 1), Tensor::cat(values, 1))
    }

    /// Writes position-major keys and values of positions `start ..` into batch row `row`
    /// (each position into the buffer that holds it now).
    fn write_row(&mut self, row: usize, start: usize, keys: Tensor<B, 4>, values: Tensor<B, 4>) {
        let [_, len, heads, head_dim] = keys.dims();
        let end = start + len;
        let write = |t: &mut Tensor<B, 4>, rows: Range<usize>, value: Tensor<B, 4>| {
            t.inplace(|t| t.slice_assign([row..row + 1, rows, 0..heads, 0..head_dim], value))
        };
        let split = self.committed.clamp(start, end);
        if split > start {
            let n = split - start;
            write(&mut self.keys, start..split, keys.clone().narrow(1, 0, n));
            write(
                &mut self.values,
                start..split,
                values.clone().narrow(1, 0, n),
            );
        }
        if end > split {
            let (from, n) = (split - start, end - split);
            let rows = split - self.committed..end - self.committed;
            write(&mut self.tail_keys, rows.clone(), keys.narrow(1, from, n));
            write(&mut self.tail_values, rows, values.narrow(1, from, n));
        }
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

    /// The first position that a write lands in the small write buffer (cheap to write
    /// into; earlier positions are in the main buffer, which a write copies whole on
    /// copy-on-write backends).
    pub fn tail_start(&self) -> usize {
        self.layers.first().map_or(0, |l| l.committed)
    }

    /// Copies positions `positions` of row `from_row` of `other` (a cache of the same model)
    /// into row `row` of this cache: a sequence prefilled on its own joins a batch.
    ///
    /// # Panics
    ///
    /// If the caches belong to different models, or the positions were not written in
    /// `other` or do not fit this cache (positions past `committed + tail` here).
    pub fn copy_row_from(
        &mut self,
        other: &KvCache<B>,
        from_row: usize,
        row: usize,
        positions: Range<usize>,
    ) {
        assert_eq!(
            self.layers.len(),
            other.layers.len(),
            "caches of different models"
        );
        for (to, from) in self.layers.iter_mut().zip(&other.layers) {
            let (keys, values) = from.read_row(from_row, positions.clone());
            to.write_row(row, positions.start, keys, values);
        }
    }
}
