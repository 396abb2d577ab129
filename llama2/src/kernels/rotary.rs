//! The rotary embedding's rotation of adjacent pairs (Su et al., 2021, in Meta's
//! convention) and its gradient in one pass: rows over the threads.
//!
//! Burn composes the rotation of a stack, a negation, a repeat of the tables per head, a
//! gather that swaps the members of each pair, two products and a sum; backward, a scatter
//! and the products' gradients on top.

use rayon::prelude::*;

/// Elements per parallel task (whole rows of `head_dim`).
const CHUNK: usize = 1 << 14;

/// Rotates each pair `(x₀, x₁)` of every row of `x` by the angle of the row's position:
/// `(x₀ cos − x₁ sin, x₁ cos + x₀ sin)`, the products and sums of Meta's complex
/// multiplication in the same order. With `inverse` the angle is negated, which is the
/// gradient of the rotation: `(g₀ cos + g₁ sin, g₁ cos − g₀ sin)`.
///
/// `x` is `[batch, seq_len, heads, head_dim]` row-major; the tables hold the cosines and
/// sines of its `seq_len` positions.
///
/// # Shapes
///
/// - x, output: `[batch · seq_len · heads · head_dim]`
/// - cos, sin: `[seq_len · head_dim / 2]`
pub fn rotate_pairs(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    heads: usize,
    head_dim: usize,
    inverse: bool,
) -> Vec<f32> {
    assert!(
        head_dim > 0 && head_dim.is_multiple_of(2),
        "head_dim must be even"
    );
    assert_eq!(cos.len(), sin.len());
    let half = head_dim / 2;
    let seq_len = cos.len() / half;
    assert_eq!(cos.len(), seq_len * half, "tables of whole positions");
    assert!(
        seq_len > 0 && x.len().is_multiple_of(seq_len * heads * head_dim),
        "x holds whole [seq_len, heads, head_dim] blocks"
    );
    let mut out = vec![0.0f32; x.len()];
    let rows_per_task = (CHUNK / head_dim).max(1);
    let rotate = |(task, (out, x)): (usize, (&mut [f32], &[f32]))| {
        let first_row = task * rows_per_task;
        for (r, (out, x)) in out
            .chunks_exact_mut(head_dim)
            .zip(x.chunks_exact(head_dim))
            .enumerate()
        {
            let pos = ((first_row + r) / heads) % seq_len;
            let table = pos * half..(pos + 1) * half;
            rotate_row(x, &cos[table.clone()], &sin[table], out, inverse);
        }
    };
    let task_len = rows_per_task * head_dim;
    if x.len() <= task_len {
        rotate((0, (&mut out[..], x)));
    } else {
        out.par_chunks_mut(task_len)
            .zip(x.par_chunks(task_len))
            .enumerate()
            .for_each(rotate);
    }
    out
}

/// One row: `out[2i] = x[2i] c − x[2i+1] s`, `out[2i+1] = x[2i+1] c + x[2i] s`, with `s`
/// negated when `inverse`.
#[inline]
fn rotate_row(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32], inverse: bool) {
    for (((out, x), &c), &s) in out
        .chunks_exact_mut(2)
        .zip(x.chunks_exact(2))
        .zip(cos)
        .zip(sin)
    {
        let s = if inverse { -s } else { s };
        out[0] = x[0] * c - x[1] * s;
        out[1] = x[1] * c + x[0] * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    /// The rotation in f64 from the angle's cosine and sine.
    fn reference(x: &[f32], cos: &[f32], sin: &[f32], heads: usize, dim: usize) -> Vec<f64> {
        let half = dim / 2;
        let seq = cos.len() / half;
        let mut out = vec![0.0; x.len()];
        for row in 0..x.len() / dim {
            let pos = (row / heads) % seq;
            for i in 0..half {
                let (c, s) = (cos[pos * half + i] as f64, sin[pos * half + i] as f64);
                let (x0, x1) = (x[row * dim + 2 * i] as f64, x[row * dim + 2 * i + 1] as f64);
                out[row * dim + 2 * i] = x0 * c - x1 * s;
                out[row * dim + 2 * i + 1] = x1 * c + x0 * s;
            }
        }
        out
    }

    #[test]
    fn rotation_and_its_inverse_match_f64() {
        // [batch 4, seq 67, heads 7, head_dim 12]: two parallel tasks, the second starting
        // inside a position's heads.
        let (batch, seq, heads, dim) = (4, 67, 7, 12);
        let n = batch * seq * heads * dim;
        let x = test_values(n, 1, 4.0);
        let angles: Vec<f64> = (0..seq * dim / 2).map(|k| 0.37 * k as f64).collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
        let y = rotate_pairs(&x, &cos, &sin, heads, dim, false);
        let want = reference(&x, &cos, &sin, heads, dim);
        assert_eq!(y.len(), n);
        assert_eq!(want.len(), n);
        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "y[{i}]: {a} vs {b}"
            );
        }
        // The inverse rotation undoes it (the gradient of an orthogonal map is its transpose).
        let back = rotate_pairs(&y, &cos, &sin, heads, dim, true);
        assert_eq!(back.len(), n);
        for (i, (a, b)) in back.iter().zip(&x).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "x[{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn one_position_small_input_runs_inline() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let (cos, sin) = ([0.0, 1.0], [1.0, 0.0]);
        // Pair 0 turns by 90°, pair 1 stays.
        assert_eq!(
            rotate_pairs(&x, &cos, &sin, 1, 4, false),
            vec![-2.0, 1.0, 3.0, 4.0]
        );
        assert_eq!(
            rotate_pairs(&x, &cos, &sin, 1, 4, true),
            vec![2.0, -1.0, 3.0, 4.0]
        );
    }
}
