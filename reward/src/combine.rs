//! Combining the helpfulness and safety rewards for RLHF (paper §3.2.3, eq. 3–4):
//!
//! ```text
//! R_c(g | p) = R_s(g | p)  if IS_SAFETY(p) or R_s(g | p) < 0.15
//!              R_h(g | p)  otherwise
//! R̃_c(g | p) = WHITEN(LOGIT(R_c(g | p)))
//! ```
//!
//! `R_s` and `R_h` are on the sigmoid scale (`σ` of the raw scores, [`sigmoid`]). LOGIT is
//! applied to `R_c` clamped to `[ε, 1 − ε]`, so a score of exactly 0 or 1 gives a finite
//! value. WHITEN subtracts the mean and divides by `sqrt(var + 1e-8)` as TRL's `whiten`
//! does, but with the population variance (TRL's `masked_var` applies Bessel's correction by
//! default), so that one sample and stored statistics need no special case; the statistics
//! are those of the batch or stored ones
//! ([`RewardNormalization`], e.g. measured by [`crate::evaluate`]).

use burn::config::Config;
pub use llama2_import::RewardNormalization;

/// Added to the variance before the square root, as TRL's `whiten` does.
pub const WHITEN_EPS: f64 = 1e-8;

/// Settings of the combination.
#[derive(Config, Debug, PartialEq)]
pub struct CombineConfig {
    /// Safety scores below this override the helpfulness score (the paper's 0.15).
    #[config(default = 0.15)]
    pub safety_threshold: f64,
    /// `R_c` is clamped to `[ε, 1 − ε]` before the logit.
    #[config(default = 1e-6)]
    pub logit_eps: f64,
}

/// The logistic function, `1 / (1 + e^(−x))`, without overflow.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(p / (1 − p))` of `p` clamped to `[eps, 1 − eps]`.
pub fn logit_clamped(p: f64, eps: f64) -> f64 {
    let p = p.clamp(eps, 1.0 - eps);
    (p / (1.0 - p)).ln()
}

impl CombineConfig {
    /// `R_c`: the safety score on safety prompts or when it is below the threshold, else
    /// the helpfulness score (sigmoid scale in and out).
    pub fn gate(&self, helpfulness: f64, safety: f64, is_safety: bool) -> f64 {
        if is_safety || safety < self.safety_threshold {
            safety
        } else {
            helpfulness
        }
    }

    /// `LOGIT(R_c)` of each sample, before whitening.
    pub fn combined_logits(
        &self,
        helpfulness: &[f64],
        safety: &[f64],
        is_safety: &[bool],
    ) -> Vec<f64> {
        helpfulness
            .iter()
            .zip(safety)
            .zip(is_safety)
            .map(|((&h, &s), &flag)| logit_clamped(self.gate(h, s, flag), self.logit_eps))
            .collect()
    }

    /// `WHITEN(LOGIT(R_c))` of each sample, with `stats` or, when `None`, the statistics of
    /// these samples.
    pub fn combine(
        &self,
        helpfulness: &[f64],
        safety: &[f64],
        is_safety: &[bool],
        stats: Option<&RewardNormalization>,
    ) -> Vec<f64> {
        let logits = self.combined_logits(helpfulness, safety, is_safety);
        let stats = stats.copied().unwrap_or_else(|| normalization(&logits));
        whiten(&logits, &stats)
    }
}

/// Mean and population standard deviation of `values` (0 and 0 when empty).
pub fn normalization(values: &[f64]) -> RewardNormalization {
    let mut stats = RunningStats::default();
    values.iter().for_each(|&v| stats.push(v));
    stats.normalization()
}

/// `(x − mean) / sqrt(std² + 1e-8)` of each value.
pub fn whiten(values: &[f64], stats: &RewardNormalization) -> Vec<f64> {
    let scale = (stats.std * stats.std + WHITEN_EPS).sqrt();
    values.iter().map(|v| (v - stats.mean) / scale).collect()
}

/// Running mean and variance (Welford's algorithm), for statistics gathered over many
/// batches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunningStats {
    count: u64,
    mean: f64,
    m2: f64,
}

impl RunningStats {
    /// Adds one value.
    pub fn push(&mut self, value: f64) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    /// Values added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean and population standard deviation so far.
    pub fn normalization(&self) -> RewardNormalization {
        let var = if self.count == 0 {
            0.0
        } else {
            self.m2 / self.count as f64
        };
        RewardNormalization {
            mean: self.mean,
            std: var.max(0.0).sqrt(),
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn the_gate_switches_at_the_threshold_on_both_sides() {
        let c = CombineConfig::new();
        assert_eq!(c.gate(0.9, 0.1, false), 0.1); // unsafe: below 0.15
        assert_eq!(c.gate(0.9, 0.149_999, false), 0.149_999);
        assert_eq!(c.gate(0.9, 0.15, false), 0.9); // not below: helpfulness
        assert_eq!(c.gate(0.9, 0.151, false), 0.9);
        assert_eq!(c.gate(0.9, 0.8, true), 0.8); // safety prompt: always safety
        assert_eq!(c.gate(0.3, 0.0, false), 0.0);
        assert_eq!(
            CombineConfig::new()
                .with_safety_threshold(0.5)
                .gate(0.9, 0.4, false),
            0.4
        );
    }

    #[test]
    fn logits_are_finite_at_zero_and_one() {
        close(logit_clamped(0.5, 1e-6), 0.0);
        close(logit_clamped(0.75, 1e-6), 3f64.ln());
        let top = ((1.0 - 1e-6) / 1e-6f64).ln();
        close(logit_clamped(1.0, 1e-6), top);
        close(logit_clamped(0.0, 1e-6), -top);
        close(logit_clamped(0.0, 1e-6), logit_clamped(1e-6, 1e-6));
        close(sigmoid(3f64.ln()), 0.75);
        close(sigmoid(-800.0), 0.0);
        close(sigmoid(800.0), 1.0);
    }

    #[test]
    fn whitening_from_the_batch_or_stored_statistics() {
        let c = CombineConfig::new();
        // Logits of the gated scores: 0.5 → 0, 0.75 → ln 3, safety 0.1 → ln(1/9).
        let help = [0.5, 0.75, 0.9];
        let safety = [0.6, 0.2, 0.1];
        let logits = c.combined_logits(&help, &safety, &[false, false, false]);
        close(logits[0], 0.0);
        close(logits[1], 3f64.ln());
        close(logits[2], (1.0f64 / 9.0).ln());
        let mean = (3f64.ln() + (1.0f64 / 9.0).ln()) / 3.0;
        let var = logits.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / 3.0;
        let got = c.combine(&help, &safety, &[false; 3], None);
        for (g, l) in got.iter().zip(&logits) {
            close(*g, (l - mean) / (var + 1e-8).sqrt());
        }
        let stored = RewardNormalization {
            mean: 1.0,
            std: 2.0,
            count: 10,
        };
        let got = c.combine(&help, &safety, &[false; 3], Some(&stored));
        close(got[1], (3f64.ln() - 1.0) / (4.0f64 + 1e-8).sqrt());
        // [1, 2, 3]: mean 2, population variance 2/3.
        let stats = normalization(&[1.0, 2.0, 3.0]);
        close(stats.mean, 2.0);
        close(stats.std, (2.0f64 / 3.0).sqrt());
        assert_eq!(stats.count, 3);
        assert_eq!(normalization(&[]).count, 0);
    }
}
