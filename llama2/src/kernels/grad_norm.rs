//! The two passes of global-norm gradient clipping over a gradient: the sum of its
//! squares and its scaling by the clip coefficient, element by element over the threads
//! (the scaling in place).
//!
//! Burn composes the sum of squares of a square (a pass writing a gradient-sized
//! temporary) and a sum, and the scaling as a multiplication writing a new gradient, each
//! on one thread.

use multiversion::multiversion;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;
/// Independent accumulators of one task: lanes the compiler keeps in vector registers.
const LANES: usize = 16;

/// `Σ xᵢ²`, each square and the sums in f64.
///
/// # Shapes
///
/// - x: `[n]`
pub fn sum_squares(x: &[f32]) -> f64 {
    if x.len() <= CHUNK {
        return dispatch_sum_squares(x);
    }
    x.par_chunks(CHUNK).map(dispatch_sum_squares).sum()
}

/// `x ← x · by`, in f32 as Burn's `mul_scalar`.
///
/// # Shapes
///
/// - x: `[n]`
pub fn scale(x: &mut [f32], by: f32) {
    if x.len() <= CHUNK {
        dispatch_scale(x, by);
        return;
    }
    x.par_chunks_mut(CHUNK)
        .for_each(|chunk| dispatch_scale(chunk, by));
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_sum_squares(x: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for block in &mut blocks {
        for (a, &v) in acc.iter_mut().zip(block) {
            let v = f64::from(v);
            *a += v * v;
        }
    }
    let tail: f64 = blocks
        .remainder()
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum();
    acc.iter().sum::<f64>() + tail
}

#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma"))]
fn dispatch_scale(x: &mut [f32], by: f32) {
    for v in x {
        *v *= by;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    #[test]
    fn sum_of_squares_matches_f64_across_tasks() {
        // Three parallel tasks and a tail shorter than the accumulator lanes.
        let n = 2 * CHUNK + 1003;
        let x = test_values(n, 3, 6.0);
        let want: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
        let got = sum_squares(&x);
        assert!(((got - want) / want).abs() < 1e-12, "{got} vs {want}");
        assert_eq!(sum_squares(&[]), 0.0);
        assert_eq!(sum_squares(&[3.0, -4.0]), 25.0);
    }

    #[test]
    fn scaling_is_f32_multiplication_element_by_element() {
        let n = 2 * CHUNK + 7;
        let x = test_values(n, 5, 2.0);
        let by = 0.271_f32;
        let mut y = x.clone();
        scale(&mut y, by);
        assert_eq!(y.len(), n);
        for (i, (&y, &x)) in y.iter().zip(&x).enumerate() {
            assert_eq!(y, x * by, "element {i}");
        }
    }
}
