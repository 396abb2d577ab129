//! Rotary position embeddings (Su et al., 2021) in Meta's convention: dimensions are rotated
//! in adjacent pairs `(x[2i], x[2i+1])` by the angle `pos · θ^(-2i/head_dim)`.
//!
//! Hugging Face checkpoints rotate the two halves of the head instead ("rotate_half"); the
//! importer permutes their query/key projections so this convention applies to both.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, TensorData, backend::Backend};

/// Configuration of [`RotaryEmbedding`].
#[derive(Config, Debug)]
pub struct RotaryEmbeddingConfig {
    /// Size of one attention head (must be even).
    pub head_dim: usize,
    /// Number of positions the tables cover (Meta builds them for twice the context).
    pub max_positions: usize,
    /// Base θ of the geometric frequency progression.
    #[config(default = 10000.0)]
    pub theta: f64,
}

impl RotaryEmbeddingConfig {
    /// Precomputes the cosine and sine tables.
    ///
    /// Frequencies and angles are computed in f32, as Meta's `precompute_freqs_cis`, so that
    /// the rounding of the angle at large positions matches the reference.
    pub fn init<B: Backend>(&self, device: &B::Device) -> RotaryEmbedding<B> {
        let half = self.head_dim / 2;
        let theta = self.theta as f32;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / self.head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(self.max_positions * half);
        let mut sin = Vec::with_capacity(self.max_positions * half);
        for pos in 0..self.max_positions {
            for &f in &inv_freq {
                let angle = (pos as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let shape = [self.max_positions, half];
        RotaryEmbedding {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }
}

/// Rotates query and key vectors by their position. Holds constant tables only; they are not
/// parameters and are not saved in records.
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    /// `cos(pos · freq_i)`, shape `[max_positions, head_dim / 2]`.
    pub cos: Tensor<B, 2>,
    /// `sin(pos · freq_i)`, shape `[max_positions, head_dim / 2]`.
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Number of positions covered by the tables.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `x` whose positions are `start_pos .. start_pos + seq_len`.
    ///
    /// # Shapes
    ///
    /// - x: `[batch, heads, seq_len, head_dim]`
    /// - output: `[batch, heads, seq_len, head_dim]`
    pub fn apply(&self, x: Tensor<B, 4>, start_pos: usize) -> Tensor<B, 4> {
        let [batch, heads, seq_len, head_dim] = x.dims();
        let half = head_dim / 2;
        let range = start_pos..start_pos + seq_len;
        let cos = self
            .cos
            .clone()
            .slice([range.clone(), 0..half])
            .reshape([1, 1, seq_len, half, 1]);
        let sin = self
            .sin
            .clone()
            .slice([range, 0..half])
            .reshape([1, 1, seq_len, half, 1]);

        let pairs = x.reshape([batch, heads, seq_len, half, 2]);
        let even = pairs.clone().narrow(4, 0, 1);
        let odd = pairs.narrow(4, 1, 1);
        let rotated_even = even.clone() * cos.clone() - odd.clone() * sin.clone();
        let rotated_odd = even * sin + odd * cos;
        Tensor::cat(vec![rotated_even, rotated_odd], 4).reshape([batch, heads, seq_len, head_dim])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::Tolerance;

    #[test]
    fn rotates_adjacent_pairs() {
        let device = Default::default();
        let rope = RotaryEmbeddingConfig::new(4, 8).init::<TestBackend>(&device);
        // One head, positions 0 and 3.
        let x = Tensor::<TestBackend, 4>::from_floats(
            [[[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]]],
            &device,
        );
        let out = rope.apply(x.clone().narrow(2, 0, 1), 0);
        out.into_data()
            .assert_approx_eq::<f32>(&x.clone().narrow(2, 0, 1).into_data(), Tolerance::default());

        let out = rope.apply(x.narrow(2, 1, 1), 3);
        let (a0, a1) = (3.0f64, 3.0f64 * 0.01);
        let expected = [[[[
            1.0 * a0.cos() - 2.0 * a0.sin(),
            1.0 * a0.sin() + 2.0 * a0.cos(),
            3.0 * a1.cos() - 4.0 * a1.sin(),
            3.0 * a1.sin() + 4.0 * a1.cos(),
        ]]]];
        out.into_data()
            .assert_approx_eq::<f32>(&TensorData::from(expected), Tolerance::default());
    }
}
