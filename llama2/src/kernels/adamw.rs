//! One AdamW step (Loshchilov & Hutter, 2019) on a parameter in one pass: the moments,
//! the bias correction, the decoupled weight decay and the update, element by element
//! over the threads, in place.
//!
//! The arithmetic is Burn's `AdamW` (burn-optim 0.21) operation by operation — the same
//! f32 operations in the same order, so the same values — where Burn runs each as a
//! pass of its own over the parameter's size (about fifteen, each allocating its result).

use multiversion::multiversion;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// The scalars of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// ε, added to `√v̂`.
    pub epsilon: f32,
    /// Decoupled weight decay (`θ ← θ · (1 − lr · wd)`).
    pub weight_decay: f32,
    /// The step's number, from 1 (the bias correction's exponent).
    pub time: usize,
}

/// Updates `param`, `moment_1` and `moment_2` in place with gradient `grad`; the moments
/// of the first step are zeros.
///
/// `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`,
/// `θ ← θ·(1 − lr·wd) − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)`.
///
/// # Shapes
///
/// - param, grad, moment_1, moment_2: `[n]`
pub fn adamw_step(
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    step: &AdamWStep,
) {
    let n = param.len();
    assert_eq!(grad.len(), n);
    assert_eq!(moment_1.len(), n);
    assert_eq!(moment_2.len(), n);
    let s = Scalars::new(step);
    if n <= CHUNK {
        dispatch(param, grad, moment_1, moment_2, &s);
        return;
    }
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(moment_1.par_chunks_mut(CHUNK))
        .zip(moment_2.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| dispatch(p, g, m, v, &s));
}

/// The f32 scalars of Burn's operations.
#[derive(Clone, Copy)]
struct Scalars {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    keep: f32,
    lr: f32,
}

impl Scalars {
    fn new(s: &AdamWStep) -> Self {
        let time = s.time as i32;
        let decay_rate = s.lr * s.weight_decay as f64;
        Self {
            beta_1: s.beta_1,
            beta_2: s.beta_2,
            factor_1: 1.0 - s.beta_1,
            factor_2: 1.0 - s.beta_2,
            correction_1: 1f32 - s.beta_1.powi(time),
            correction_2: 1f32 - s.beta_2.powi(time),
            epsilon: s.epsilon,
            keep: (1.0 - decay_rate) as f32,
            lr: s.lr as f32,
        }
    }
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2"))]
fn dispatch(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &Scalars) {
    step_any(p, g, m, v, s)
}

/// Burn's operations in order (no fused multiply-adds: Burn rounds every product).
#[inline(always)]
fn step_any(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &Scalars) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let gi = g[i];
        let mi = m[i] * s.beta_1 + gi * s.factor_1;
        let vi = v[i] * s.beta_2 + (gi * gi) * s.factor_2;
        m[i] = mi;
        v[i] = vi;
        let delta = (mi / s.correction_1) / ((vi / s.correction_2).sqrt() + s.epsilon);
        p[i] = p[i] * s.keep - delta * s.lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    #[test]
    fn three_steps_equal_the_formula_in_f64() {
        let n = 2 * CHUNK + 77;
        let mut p = test_values(n, 1, 1.0);
        let mut m = vec![0.0f32; n];
        let mut v = vec![0.0f32; n];
        let mut want: Vec<[f64; 3]> = p.iter().map(|&p| [p as f64, 0.0, 0.0]).collect();
        for time in 1..=3 {
            let step = AdamWStep {
                lr: 3e-4 * time as f64,
                beta_1: 0.9,
                beta_2: 0.95,
                epsilon: 1e-5,
                weight_decay: 0.1,
                time,
            };
            let g = test_values(n, 1 + time, 0.1);
            adamw_step(&mut p, &g, &mut m, &mut v, &step);
            for (w, &g) in want.iter_mut().zip(&g) {
                let g = g as f64;
                let [p, m, v] = w;
                *m = 0.9 * *m + 0.1 * g;
                *v = 0.95 * *v + 0.05 * g * g;
                let m_hat = *m / (1.0 - 0.9f64.powi(time as i32));
                let v_hat = *v / (1.0 - 0.95f64.powi(time as i32));
                *p = *p * (1.0 - step.lr * 0.1) - step.lr * m_hat / (v_hat.sqrt() + 1e-5);
            }
        }
        assert_eq!(want.len(), p.len());
        for (i, (w, (&p, (&m, &v)))) in want.iter().zip(p.iter().zip(m.iter().zip(&v))).enumerate()
        {
            for (what, got, want) in [("param", p, w[0]), ("m", m, w[1]), ("v", v, w[2])] {
                assert!(
                    (got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{what}[{i}]: {got} vs {want}"
                );
            }
        }
    }
}
