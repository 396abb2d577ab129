//! Rotary position embeddings (Su et al., 2021) in Meta's convention: dimensions are rotated
//! in adjacent pairs `(x[2i], x[2i+1])` by the angle `pos · θ^(-2i/head_dim)`.
//!
//! Hugging Face checkpoints rotate the two halves of the head instead ("rotate_half"); the
//! importer permutes their query/key projections so this convention applies to both.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

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
        self.apply_seq_major(x.swap_dims(1, 2), start_pos)
            .swap_dims(1, 2)
    }

    /// [`apply`](Self::apply) for `x` laid out position-major, `[batch, seq_len, heads,
    /// head_dim]`, as the query and key projections produce it (no transposition needed).
    ///
    /// On Flex and `Autodiff<Flex>` one pass of [`crate::kernels::rotate_pairs`];
    /// elsewhere [`rotate_composed`], with the same roundings.
    pub(crate) fn apply_seq_major(&self, x: Tensor<B, 4>, start_pos: usize) -> Tensor<B, 4> {
        let (cos, sin) = self.tables(start_pos, &x);
        match crate::kernels::rotate_pairs(x, &cos, &sin) {
            Ok(y) => y,
            Err(x) => rotate_composed(x, cos, sin),
        }
    }

    /// [`apply_seq_major`](Self::apply_seq_major) through [`rotate_composed`] on every
    /// backend: the reference of the fused kernel's tests.
    #[cfg(test)]
    pub(crate) fn apply_seq_major_composed(
        &self,
        x: Tensor<B, 4>,
        start_pos: usize,
    ) -> Tensor<B, 4> {
        let (cos, sin) = self.tables(start_pos, &x);
        rotate_composed(x, cos, sin)
    }

    /// The cosines and sines of the positions `start_pos .. start_pos + seq_len` of `x`.
    ///
    /// # Shapes
    ///
    /// - x: `[batch, seq_len, heads, head_dim]`
    /// - outputs: `[seq_len, head_dim / 2]`
    fn tables(&self, start_pos: usize, x: &Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [_, seq_len, _, head_dim] = x.dims();
        let range = start_pos..start_pos + seq_len;
        let half = head_dim / 2;
        (
            self.cos.clone().slice([range.clone(), 0..half]),
            self.sin.clone().slice([range, 0..half]),
        )
    }
}

/// Rotates the pairs of `x` by the tables of its positions as Burn operations, for every
/// backend: `x ⊙ cos' + swap(x) ⊙ sin'`, where `cos'` repeats each cosine twice, `sin'` is
/// `(-sin, sin)` per pair and `swap` exchanges the two members of every pair:
/// `(x₀·cos − x₁·sin, x₁·cos + x₀·sin)`, the same products and sums as Meta's complex
/// multiplication, computed with contiguous element-wise operations.
///
/// # Shapes
///
/// - x, output: `[batch, seq_len, heads, head_dim]`
/// - cos, sin: `[seq_len, head_dim / 2]`
fn rotate_composed<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
) -> Tensor<B, 4> {
    let [batch, seq_len, heads, head_dim] = x.dims();
    let device = x.device();
    let pairs = |a: Tensor<B, 2>, b: Tensor<B, 2>| {
        Tensor::stack::<3>(vec![a, b], 2).reshape([seq_len, head_dim])
    };
    let mut cos = pairs(cos.clone(), cos);
    let mut sin = pairs(sin.clone().neg(), sin);

    // The tables broadcast over whole rows of `x` viewed as `[rows, table_len]`: one
    // position covers `heads` rows of `head_dim`, so repeat the tables per head unless
    // there is a single position.
    let table_rows = if seq_len == 1 {
        1
    } else {
        let repeat = |t: Tensor<B, 2>| {
            t.reshape([seq_len, 1, head_dim])
                .repeat_dim(1, heads)
                .reshape([seq_len * heads, head_dim])
        };
        cos = repeat(cos);
        sin = repeat(sin);
        seq_len * heads
    };
    let table_len = table_rows * head_dim;
    let rows = batch * seq_len * heads / table_rows;

    let swap: Vec<i64> = (0..head_dim as i64).map(|i| i ^ 1).collect();
    let swap = Tensor::<B, 1, Int>::from_data(TensorData::new(swap, [head_dim]), &device);
    let x = x.reshape([batch * seq_len * heads, head_dim]);
    let swapped = x.clone().select(1, swap).reshape([rows, table_len]);
    let rotated = x.reshape([rows, table_len]) * cos.reshape([1, table_len])
        + swapped * sin.reshape([1, table_len]);
    rotated.reshape([batch, seq_len, heads, head_dim])
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

    /// Every head of every sequence is rotated by its own position, by the complex product
    /// of Meta's `apply_rotary_emb`, whichever layout and number of positions.
    #[test]
    fn rotates_every_head_and_position() {
        let device = Default::default();
        let (batch, heads, seq_len, head_dim, start) = (2, 3, 5, 8, 4);
        let rope = RotaryEmbeddingConfig::new(head_dim, 16).init::<TestBackend>(&device);
        let n = batch * heads * seq_len * head_dim;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x = Tensor::<TestBackend, 4>::from_data(
            TensorData::new(values.clone(), [batch, heads, seq_len, head_dim]),
            &device,
        );
        let mut expected = vec![0.0f32; n];
        for (row, (out, x)) in expected
            .chunks_mut(head_dim)
            .zip(values.chunks(head_dim))
            .enumerate()
        {
            let pos = (start + row % seq_len) as f32;
            for i in 0..head_dim / 2 {
                let freq = 1.0 / 10000f32.powf((2 * i) as f32 / head_dim as f32);
                let (sin, cos) = ((pos * freq) as f64).sin_cos();
                let (sin, cos) = (sin as f32, cos as f32);
                out[2 * i] = x[2 * i] * cos - x[2 * i + 1] * sin;
                out[2 * i + 1] = x[2 * i] * sin + x[2 * i + 1] * cos;
            }
        }
        let expected = TensorData::new(expected, [batch, heads, seq_len, head_dim]);
        rope.apply(x.clone(), start)
            .into_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
        // One position at a time gives the same rotation.
        for p in 0..seq_len {
            rope.apply(x.clone().narrow(2, p, 1), start + p)
                .into_data()
                .assert_approx_eq::<f32>(
                    &Tensor::<TestBackend, 4>::from_data(expected.clone(), &device)
                        .narrow(2, p, 1)
                        .into_data(),
                    Tolerance::absolute(1e-6),
                );
        }
    }
}
