//! Row-wise log-sum-exp and its gradient for the token cross-entropy of
//! training ([`crate::train::fused_loss`]): rows split over the threads, the
//! exponential vectorized (AVX-512 or AVX2 chosen at run time, each row one
//! pass for the maximum and one for the sum).
//!
//! The exponential is [`super::exp::exp`], which the compiler vectorizes.

use multiversion::multiversion;
use rayon::prelude::*;

use super::exp::exp;

/// Rows per parallel task (a row is a vocabulary of logits).
const ROWS_PER_TASK: usize = 4;

/// Per row of `logits` (`[rows, vocab]`, row-major): `log Σ_j exp(x_j)`;
/// NaN when the row holds a NaN.
pub fn row_logsumexp(logits: &[f32], vocab: usize) -> Vec<f32> {
    assert!(vocab > 0 && logits.len().is_multiple_of(vocab));
    let mut out = vec![0.0f32; logits.len() / vocab];
    out.par_chunks_mut(ROWS_PER_TASK)
        .zip(logits.par_chunks(ROWS_PER_TASK * vocab))
        .for_each(|(lse, rows)| {
            for (lse, row) in lse.iter_mut().zip(rows.chunks_exact(vocab)) {
                *lse = dispatch_lse(row);
            }
        });
    out
}

/// The gradient of `Σ_r w_r · (lse_r − x_{r, t_r})` with respect to the
/// logits: `w_r · (exp(x_rj − lse_r) − [j = t_r])`.
///
/// # Shapes
///
/// - logits: `[rows, vocab]`, row-major
/// - lse, targets, weights: `[rows]`
/// - output: `[rows, vocab]`
pub fn softmax_minus_onehot(
    logits: &[f32],
    vocab: usize,
    lse: &[f32],
    targets: &[usize],
    weights: &[f32],
) -> Vec<f32> {
    let rows = lse.len();
    assert_eq!(logits.len(), rows * vocab);
    assert_eq!(targets.len(), rows);
    assert_eq!(weights.len(), rows);
    let mut out = vec![0.0f32; logits.len()];
    out.par_chunks_mut(ROWS_PER_TASK * vocab)
        .zip(logits.par_chunks(ROWS_PER_TASK * vocab))
        .enumerate()
        .for_each(|(task, (out, x))| {
            let first = task * ROWS_PER_TASK;
            for (i, (out, x)) in out
                .chunks_exact_mut(vocab)
                .zip(x.chunks_exact(vocab))
                .enumerate()
            {
                let r = first + i;
                let w = weights[r];
                if w == 0.0 {
                    continue;
                }
                dispatch_scaled_exp(x, lse[r], w, out);
                if let Some(o) = out.get_mut(targets[r]) {
                    *o -= w;
                }
            }
        });
    out
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_lse(row: &[f32]) -> f32 {
    lse_any(row)
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_scaled_exp(x: &[f32], shift: f32, scale: f32, out: &mut [f32]) {
    scaled_exp_any(x, shift, scale, out)
}

/// Lanes of the vectorized loops (one AVX-512 register).
const LANES: usize = 16;

#[inline(always)]
fn lse_any(row: &[f32]) -> f32 {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            max[l] = if c[l] > max[l] { c[l] } else { max[l] };
            nan[l] |= c[l].is_nan();
        }
    }
    let mut m = f32::NEG_INFINITY;
    let mut any_nan = nan.iter().any(|&n| n);
    for &v in max.iter().chain(tail) {
        m = if v > m { v } else { m };
        any_nan |= v.is_nan();
    }
    if any_nan {
        return f32::NAN;
    }
    if m == f32::INFINITY {
        return f32::INFINITY;
    }
    let mut sum = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            sum[l] += exp(c[l] - m);
        }
    }
    let mut s: f32 = tail.iter().map(|&v| exp(v - m)).sum();
    s += sum.iter().sum::<f32>();
    m + s.ln()
}

#[inline(always)]
fn scaled_exp_any(x: &[f32], shift: f32, scale: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp(v - shift) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsumexp_and_gradient_equal_f64() {
        let vocab = 1003; // a tail after the 16-lane chunks
        let rows = 11; // tasks of 4 rows and a short last one
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919 % 10007) as f32 / 10007.0 - 0.5) * 20.0)
            .collect();
        let lse = row_logsumexp(&logits, vocab);
        assert_eq!(lse.len(), rows);
        let targets: Vec<usize> = (0..rows).map(|r| (r * 97) % vocab).collect();
        let weights: Vec<f32> = (0..rows)
            .map(|r| if r == 3 { 0.0 } else { 0.5 + r as f32 })
            .collect();
        let grad = softmax_minus_onehot(&logits, vocab, &lse, &targets, &weights);
        assert_eq!(grad.len(), rows * vocab);
        for r in 0..rows {
            let row = &logits[r * vocab..(r + 1) * vocab];
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let want = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            assert!((lse[r] as f64 - want).abs() < 1e-5, "row {r}");
            for j in 0..vocab {
                let p = (row[j] as f64 - want).exp();
                let g = weights[r] as f64 * (p - if j == targets[r] { 1.0 } else { 0.0 });
                let got = grad[r * vocab + j] as f64;
                assert!(
                    (got - g).abs() < 1e-6 * (1.0 + g.abs()),
                    "[{r}, {j}]: {got} vs {g}"
                );
            }
        }
    }

    #[test]
    fn non_finite_rows() {
        let mut row = vec![0.0f32; 40];
        row[17] = f32::NAN;
        assert!(row_logsumexp(&row, 40)[0].is_nan());
        row[17] = f32::INFINITY;
        assert_eq!(row_logsumexp(&row, 40)[0], f32::INFINITY);
        row[17] = f32::NEG_INFINITY;
        let want = (39.0f32).ln();
        assert!((row_logsumexp(&row, 40)[0] - want).abs() < 1e-6);
    }
}
