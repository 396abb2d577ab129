//! The exponential and the logistic sigmoid of the vectorized kernels.
//!
//! [`exp`] is Cephes' `expf` (range reduction by `ln 2` in two parts, a degree-6
//! polynomial; within 2 ulp of the exact value on `[−87, 88]`), branch-free so that the
//! compiler vectorizes the loops that call it under the kernels' `target_feature`
//! variants, where glibc's `expf` is a scalar call per element. Arguments below −87 give
//! `exp(−87)` instead of a smaller number (an absolute error under 2e-38); NaN stays NaN.

/// Cephes `expf` for `x ≤ 88`, branch-free (see the module documentation).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_2e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    let k = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits(((k + 127) as u32) << 23);
    y * scale
}

/// `1 / (1 + exp(−x))`, through [`exp`]: within a few ulp of the exact value; below
/// `x = −88` it stays at `1 / (1 + exp(88))` ≈ 6e-39 instead of going to 0.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_on_its_range() {
        let mut worst = 0.0f64;
        let mut count = 0;
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).next_up() as f64 - want as f32 as f64;
            worst = worst.max((got - want).abs() / ulp);
            count += 1;
        }
        assert_eq!(count, 2_000_001);
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) < 2e-38);
    }

    #[test]
    fn sigmoid_is_close_to_f64() {
        let mut count = 0;
        for i in 0..=200_000 {
            let x = -40.0 + 80.0 * i as f32 / 200_000.0;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            let got = sigmoid(x) as f64;
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON as f64 * want,
                "{x}: {got} vs {want}"
            );
            count += 1;
        }
        assert_eq!(count, 200_001);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(100.0), 1.0);
        assert!(sigmoid(-100.0) < 1e-38);
        assert!(sigmoid(f32::NAN).is_nan());
    }
}
