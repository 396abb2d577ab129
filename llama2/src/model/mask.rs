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
/// - output: `[seq_len, start_pos + seq_len]`
pub fn causal_mask<B: Backend>(
    seq_len: usize,
    start_pos: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let total = start_pos + seq_len;
    let mut values = vec![0.0f32; seq_len * total];
    for i in 0..seq_len {
        for v in &mut values[i * total + start_pos + i + 1..(i + 1) * total] {
            *v = f32::NEG_INFINITY;
        }
    }
    Tensor::from_data(TensorData::new(values, [seq_len, total]), device)
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
}
