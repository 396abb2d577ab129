//! The causal attention mask.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// Additive causal mask for `seq_len` new positions that follow `start_pos` cached ones.
///
/// Row `i` (position `start_pos + i`) may attend to keys `0 ..= start_pos + i`: those entries
/// are `0`, later ones are `-inf`. This is Meta's `triu(full(-inf), 1)` with `start_pos`
/// zero columns prepended.
///
/// # Shapes
///
/// - output: `[1, seq_len, start_pos + seq_len]` (one mask for every row of a batch)
pub fn causal_mask<B: Backend>(
    seq_len: usize,
    start_pos: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    row_causal_mask(seq_len, start_pos, &[0], device)
}

/// Causal mask of rows whose sequences start at different positions: row `b` attends to
/// keys `first_keys[b] ..= start_pos + i` only (earlier positions of its cache row belong to
/// no sequence of its own). Rows that join a running batch start at a later position; as the
/// rotary embedding makes attention depend on relative positions only, the row computes what
/// it would from position 0.
///
/// A row's `first_keys[b]` must not exceed `start_pos + seq_len - 1` (every query keeps at
/// least its own key).
///
/// # Shapes
///
/// - output: `[first_keys.len(), seq_len, start_pos + seq_len]`
pub fn row_causal_mask<B: Backend>(
    seq_len: usize,
    start_pos: usize,
    first_keys: &[usize],
    device: &B::Device,
) -> Tensor<B, 3> {
    let total = start_pos + seq_len;
    let rows = first_keys.len();
    let mut values = vec![0.0f32; rows * seq_len * total];
    for (b, &first) in first_keys.iter().enumerate() {
        for i in 0..seq_len {
            let row = &mut values[(b * seq_len + i) * total..(b * seq_len + i + 1) * total];
            let own = start_pos + i;
            for (k, v) in row.iter_mut().enumerate() {
                if k > own || k < first.min(own) {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [rows, seq_len, total]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn masks_future_positions_only() {
        let mask = causal_mask::<TestBackend>(2, 1, &Default::default());
        let ninf = f32::NEG_INFINITY;
        assert_eq!(
            mask.into_data().to_vec::<f32>().unwrap(),
            vec![0.0, 0.0, ninf, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn row_masks_hide_keys_before_each_rows_start() {
        let mask = row_causal_mask::<TestBackend>(1, 3, &[0, 2], &Default::default());
        let ninf = f32::NEG_INFINITY;
        assert_eq!(mask.dims(), [2, 1, 4]);
        assert_eq!(
            mask.into_data().to_vec::<f32>().unwrap(),
            vec![0.0, 0.0, 0.0, 0.0, ninf, ninf, 0.0, 0.0]
        );
    }
}
