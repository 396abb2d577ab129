//! RMSNorm `y = x / √(mean(x²) + ε) · w` over the rows of a matrix, and its gradient:
//! rows over the threads, one pass per row for the sum of squares and one to write,
//! vectorized (AVX-512 or AVX2 chosen at run time).
//!
//! Burn composes the forward pass of six operations over broadcast shapes and, backward,
//! keeps and revisits each one's intermediates.

use multiversion::multiversion;
use rayon::prelude::*;

/// Elements per parallel task (whole rows).
const TASK_ELEMENTS: usize = 1 << 14;

fn rows_per_task(dim: usize) -> usize {
    (TASK_ELEMENTS / dim.max(1)).max(1)
}

/// Per row `x_r` of `x`: `y_r = x_r · (1 / rms_r) ⊙ weight` with
/// `rms_r = √(Σ_j x_rj² / dim + eps)`. Returns `y` and `1 / rms_r` per row.
///
/// # Shapes
///
/// - x, y: `[rows, dim]`, row-major
/// - weight: `[dim]`
/// - inverse rms: `[rows]`
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let dim = weight.len();
    assert!(dim > 0 && x.len().is_multiple_of(dim));
    let rows = x.len() / dim;
    let per_task = rows_per_task(dim);
    let mut y = vec![0.0f32; x.len()];
    let mut inv = vec![0.0f32; rows];
    if rows <= per_task {
        // One task: no round trip through the thread pool (decoding's rows).
        for ((y, inv), x) in y
            .chunks_exact_mut(dim)
            .zip(&mut inv)
            .zip(x.chunks_exact(dim))
        {
            *inv = dispatch_forward_row(x, weight, eps, y);
        }
        return (y, inv);
    }
    y.par_chunks_mut(per_task * dim)
        .zip(inv.par_chunks_mut(per_task))
        .zip(x.par_chunks(per_task * dim))
        .for_each(|((y, inv), x)| {
            for ((y, inv), x) in y.chunks_exact_mut(dim).zip(inv).zip(x.chunks_exact(dim)) {
                *inv = dispatch_forward_row(x, weight, eps, y);
            }
        });
    (y, inv)
}

/// The gradients of `Σ g ⊙ rms_norm(x, weight)` with respect to `x` and, when
/// `with_weight`, to `weight`, from [`rms_norm`]'s inverse rms `inv`: with
/// `r = inv_r`, `∂/∂x_ri = r·g_ri·w_i − (r³ / dim) · x_ri · Σ_j g_rj·w_j·x_rj` and
/// `∂/∂w_i = Σ_r g_ri · x_ri · r`. The weight's sum runs over fixed tasks of rows
/// added in order, so the result does not depend on the thread count's scheduling.
///
/// # Shapes
///
/// - x, grad, ∂x: `[rows, dim]`, row-major
/// - weight, ∂w: `[dim]`
/// - inv: `[rows]`
pub fn rms_norm_backward(
    x: &[f32],
    weight: &[f32],
    inv: &[f32],
    grad: &[f32],
    with_weight: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let dim = weight.len();
    let rows = inv.len();
    assert_eq!(x.len(), rows * dim);
    assert_eq!(grad.len(), rows * dim);
    let per_task = rows_per_task(dim);
    let mut grad_x = vec![0.0f32; x.len()];
    let partials: Vec<Vec<f32>> = grad_x
        .par_chunks_mut(per_task * dim)
        .zip(x.par_chunks(per_task * dim))
        .zip(grad.par_chunks(per_task * dim))
        .zip(inv.par_chunks(per_task))
        .map(|(((gx, x), g), inv)| {
            let mut gw = if with_weight {
                vec![0.0f32; dim]
            } else {
                Vec::new()
            };
            for (((gx, x), g), &r) in gx
                .chunks_exact_mut(dim)
                .zip(x.chunks_exact(dim))
                .zip(g.chunks_exact(dim))
                .zip(inv)
            {
                dispatch_backward_row(x, weight, r, g, gx, &mut gw);
            }
            gw
        })
        .collect();
    let grad_w = with_weight.then(|| {
        let mut total = vec![0.0f32; dim];
        for partial in &partials {
            for (t, p) in total.iter_mut().zip(partial) {
                *t += p;
            }
        }
        total
    });
    (grad_x, grad_w)
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_forward_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> f32 {
    forward_row(x, w, eps, y)
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_backward_row(x: &[f32], w: &[f32], r: f32, g: &[f32], gx: &mut [f32], gw: &mut [f32]) {
    backward_row(x, w, r, g, gx, gw)
}

/// Lanes of the vectorized sums (one AVX-512 register).
const LANES: usize = 16;

/// `Σ_j a_j · b_j · c_j` (or `Σ a_j · b_j` with `c = None`), in `LANES` partial sums.
#[inline(always)]
fn dot3(a: &[f32], b: &[f32], c: Option<&[f32]>) -> f32 {
    let n = a.len();
    let mut acc = [0.0f32; LANES];
    let whole = n - n % LANES;
    for start in (0..whole).step_by(LANES) {
        for (l, acc) in acc.iter_mut().enumerate() {
            let i = start + l;
            let p = a[i] * b[i];
            *acc += match c {
                Some(c) => p * c[i],
                None => p,
            };
        }
    }
    let mut tail = 0.0f32;
    for i in whole..n {
        let p = a[i] * b[i];
        tail += match c {
            Some(c) => p * c[i],
            None => p,
        };
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn forward_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> f32 {
    let n = w.len();
    let (x, y) = (&x[..n], &mut y[..n]);
    let rms = (dot3(x, x, None) / n as f32 + eps).sqrt();
    let r = 1.0 / rms;
    for i in 0..n {
        y[i] = x[i] * r * w[i];
    }
    r
}

#[inline(always)]
fn backward_row(x: &[f32], w: &[f32], r: f32, g: &[f32], gx: &mut [f32], gw: &mut [f32]) {
    let n = w.len();
    let (x, g, gx) = (&x[..n], &g[..n], &mut gx[..n]);
    let c = r * r * r / n as f32 * dot3(g, w, Some(x));
    for i in 0..n {
        gx[i] = r * g[i] * w[i] - c * x[i];
    }
    if !gw.is_empty() {
        let gw = &mut gw[..n];
        for i in 0..n {
            gw[i] += g[i] * x[i] * r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    #[test]
    fn norm_and_gradients_equal_f64() {
        // dim 771: a tail after the lanes; 45 rows of it: two tasks of 21 rows and a short one.
        let (rows, dim) = (45, 771);
        let eps = 1e-5f32;
        let x = values(rows * dim, 1, 4.0);
        let w = values(dim, 2, 3.0);
        let g = values(rows * dim, 3, 2.0);
        let (y, inv) = rms_norm(&x, &w, eps);
        let (gx, gw) = rms_norm_backward(&x, &w, &inv, &g, true);
        let gw = gw.expect("weight gradient asked for");
        assert_eq!(
            [y.len(), gx.len(), inv.len(), gw.len()],
            [rows * dim, rows * dim, rows, dim]
        );
        let close = |got: f32, want: f64, what: &str| {
            assert!(
                (got as f64 - want).abs() <= 2e-5 * (1.0 + want.abs()),
                "{what}: {got} vs {want}"
            );
        };
        let mut want_gw = vec![0.0f64; dim];
        for r in 0..rows {
            let xr: Vec<f64> = x[r * dim..(r + 1) * dim]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let gr: Vec<f64> = g[r * dim..(r + 1) * dim]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let ms = xr.iter().map(|v| v * v).sum::<f64>() / dim as f64;
            let inv_rms = 1.0 / (ms + eps as f64).sqrt();
            close(inv[r], inv_rms, "inverse rms");
            let dot: f64 = (0..dim).map(|j| gr[j] * w[j] as f64 * xr[j]).sum();
            for j in 0..dim {
                close(y[r * dim + j], xr[j] * inv_rms * w[j] as f64, "y");
                let want =
                    inv_rms * gr[j] * w[j] as f64 - inv_rms.powi(3) / dim as f64 * xr[j] * dot;
                close(gx[r * dim + j], want, "grad x");
                want_gw[j] += gr[j] * xr[j] * inv_rms;
            }
        }
        for j in 0..dim {
            close(gw[j], want_gw[j], "grad weight");
        }
        let (gx_only, none) = rms_norm_backward(&x, &w, &inv, &g, false);
        assert!(none.is_none());
        assert_eq!(gx_only, gx);
    }
}
