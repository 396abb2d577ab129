//! SwiGLU's gating `silu(a) ⊙ b` (Shazeer, 2020) and its gradient, element-wise:
//! chunks of elements over the threads, the sigmoid vectorized through
//! [`super::exp::sigmoid`] (AVX-512 or AVX2 chosen at run time).
//!
//! Burn composes the same as a sigmoid, two products and, backward, about six more
//! element-wise operations, with glibc's scalar `expf`.

use multiversion::multiversion;
use rayon::prelude::*;

use super::exp::sigmoid;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `silu(a) ⊙ b = a · σ(a) · b`, element-wise.
///
/// # Shapes
///
/// - a, b, output: `[n]`
pub fn swiglu(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len());
    let mut out = vec![0.0f32; a.len()];
    if a.len() <= CHUNK {
        // One task: no round trip through the thread pool (decoding's rows).
        dispatch_forward(a, b, &mut out);
        return out;
    }
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| dispatch_forward(a, b, out));
    out
}

/// The gradients of `Σ g ⊙ swiglu(a, b)`: with `s = σ(a)`,
/// `∂/∂a = g · b · s · (1 + a · (1 − s))` and `∂/∂b = g · a · s`.
///
/// # Shapes
///
/// - a, b, grad, outputs: `[n]`
pub fn swiglu_backward(a: &[f32], b: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), grad.len());
    let mut grad_a = vec![0.0f32; a.len()];
    let mut grad_b = vec![0.0f32; a.len()];
    if a.len() <= CHUNK {
        dispatch_backward(a, b, grad, &mut grad_a, &mut grad_b);
        return (grad_a, grad_b);
    }
    grad_a
        .par_chunks_mut(CHUNK)
        .zip(grad_b.par_chunks_mut(CHUNK))
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((ga, gb), (a, b)), g)| dispatch_backward(a, b, g, ga, gb));
    (grad_a, grad_b)
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_forward(a: &[f32], b: &[f32], out: &mut [f32]) {
    forward_any(a, b, out)
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_backward(a: &[f32], b: &[f32], g: &[f32], ga: &mut [f32], gb: &mut [f32]) {
    backward_any(a, b, g, ga, gb)
}

#[inline(always)]
fn forward_any(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a * sigmoid(a) * b;
    }
}

#[inline(always)]
fn backward_any(a: &[f32], b: &[f32], g: &[f32], ga: &mut [f32], gb: &mut [f32]) {
    let n = a.len();
    let (b, g, ga, gb) = (&b[..n], &g[..n], &mut ga[..n], &mut gb[..n]);
    for i in 0..n {
        let s = sigmoid(a[i]);
        let silu = a[i] * s;
        ga[i] = g[i] * b[i] * (s + silu * (1.0 - s));
        gb[i] = g[i] * silu;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    #[test]
    fn gate_and_gradients_equal_f64() {
        // Two full parallel chunks, a partial one and a tail after the vector lanes.
        let n = 2 * CHUNK + 1_003;
        let a = values(n, 1, 24.0);
        let b = values(n, 2, 6.0);
        let g = values(n, 3, 2.0);
        let out = swiglu(&a, &b);
        let (ga, gb) = swiglu_backward(&a, &b, &g);
        assert_eq!([out.len(), ga.len(), gb.len()], [n; 3]);
        let close = |got: f32, want: f64, what: &str, i: usize| {
            assert!(
                (got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{what}[{i}]: {got} vs {want}"
            );
        };
        for i in 0..n {
            let (a, b, g) = (a[i] as f64, b[i] as f64, g[i] as f64);
            let s = 1.0 / (1.0 + (-a).exp());
            close(out[i], a * s * b, "output", i);
            close(ga[i], g * b * (s + a * s * (1.0 - s)), "grad a", i);
            close(gb[i], g * a * s, "grad b", i);
        }
    }

    #[test]
    fn nan_propagates() {
        let out = swiglu(&[f32::NAN, 1.0], &[1.0, f32::NAN]);
        assert!(out[0].is_nan() && out[1].is_nan());
        let (ga, gb) = swiglu_backward(&[f32::NAN], &[1.0], &[1.0]);
        assert!(ga[0].is_nan() && gb[0].is_nan());
    }
}
