//! The rollout side of PPO (paper §3.2.3): per-token KL to the reference policy, the
//! shaped per-token reward, generalised advantage estimation and advantage whitening.
//!
//! Rows are responses of different lengths (`values[b].len()` tokens); nothing past a
//! row's end is read. The conventions are TRL's `PPOTrainer` (0.11) and OpenRLHF's with an
//! action mask: the score is added at the last response token (EOS when the model ended
//! the response), and the value after the last token is 0.

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// An estimator of `KL(π ‖ π_ref)` from one sampled token, with `r = log π − log π_ref`
/// (Schulman, "Approximating KL divergence"; OpenRLHF's `compute_approx_kl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KlEstimator {
    /// `r`: unbiased, can be negative (TRL's default).
    #[default]
    K1,
    /// `r² / 2`: biased, never negative.
    K2,
    /// `e^(−r) − 1 + r`: unbiased and never negative.
    K3,
}

impl KlEstimator {
    /// The estimate at one token.
    pub fn estimate(self, logprob: f64, ref_logprob: f64) -> f64 {
        let r = logprob - ref_logprob;
        match self {
            Self::K1 => r,
            Self::K2 => r * r / 2.0,
            Self::K3 => (-r).exp() - 1.0 + r,
        }
    }

    /// The estimates along one response, clamped to `[−c, c]` when `clamp` is `Some(c)`
    /// (OpenRLHF clamps to ±10).
    pub fn per_token(self, logprobs: &[f64], ref_logprobs: &[f64], clamp: Option<f64>) -> Vec<f64> {
        logprobs
            .iter()
            .zip(ref_logprobs)
            .map(|(&a, &b)| {
                let k = self.estimate(a, b);
                clamp.map_or(k, |c| k.clamp(-c, c))
            })
            .collect()
    }
}

/// The reward shaping and advantage settings.
#[derive(Config, Debug, PartialEq)]
pub struct AdvantageConfig {
    /// Weight β of the KL penalty (the paper's 0.01 for 7B and 13B, 0.005 for 34B and 70B).
    #[config(default = 0.01)]
    pub kl_coef: f64,
    /// The KL estimator of the penalty.
    #[config(default = "KlEstimator::K1")]
    pub kl_estimator: KlEstimator,
    /// Clamp of the per-token KL estimate (none by default, as in TRL).
    #[config(default = "None")]
    pub kl_clamp: Option<f64>,
    /// Discount γ.
    #[config(default = 1.0)]
    pub gamma: f64,
    /// GAE's λ.
    #[config(default = 0.95)]
    pub lam: f64,
    /// Subtracted from the score of a response that did not end with EOS (TRL's
    /// `missing_eos_penalty`); none by default.
    #[config(default = "None")]
    pub missing_eos_penalty: Option<f64>,
    /// Whiten the advantages over the batch.
    #[config(default = true)]
    pub whiten_advantages: bool,
}

/// Per-token rewards of one response: `−β · KL_t` at every token, plus `score` (less the
/// missing-EOS penalty where it applies) at the last one.
pub fn token_rewards(kl: &[f64], score: f64, ended: bool, config: &AdvantageConfig) -> Vec<f64> {
    let mut rewards: Vec<f64> = kl.iter().map(|k| -config.kl_coef * k).collect();
    if let Some(last) = rewards.last_mut() {
        let penalty = match config.missing_eos_penalty {
            Some(p) if !ended => p,
            _ => 0.0,
        };
        *last += score - penalty;
    }
    rewards
}

/// Generalised advantage estimation along one response: `δ_t = r_t + γ V_{t+1} − V_t`
/// with `V_T = 0`, `A_t = δ_t + γλ A_{t+1}`; returns `(A, A + V)`.
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lam: f64) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len().min(values.len());
    let mut advantages = vec![0.0; n];
    let mut last = 0.0;
    for t in (0..n).rev() {
        let next = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next - values[t];
        last = delta + gamma * lam * last;
        advantages[t] = last;
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// `(x − mean) / sqrt(var + 1e-8)` over every token of every row, with the unbiased
/// variance (TRL's `masked_whiten`). With a single token there is no variance to divide
/// by (TRL gives NaN): the token's advantage becomes 0.
pub fn whiten_rows(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n: usize = rows.iter().map(Vec::len).sum();
    if n < 2 {
        return rows.iter().map(|r| vec![0.0; r.len()]).collect();
    }
    let mean = rows.iter().flatten().sum::<f64>() / n as f64;
    let var = rows
        .iter()
        .flatten()
        .map(|x| (x - mean).powi(2))
        .sum::<f64>()
        / (n - 1) as f64;
    let scale = 1.0 / (var + 1e-8).sqrt();
    rows.iter()
        .map(|r| r.iter().map(|x| (x - mean) * scale).collect())
        .collect()
}

/// Advantages and returns of a batch of responses.
#[derive(Clone, Debug, PartialEq)]
pub struct Advantages {
    /// Per-token KL estimates.
    pub kl: Vec<Vec<f64>>,
    /// Per-token rewards.
    pub rewards: Vec<Vec<f64>>,
    /// Advantages (whitened when configured).
    pub advantages: Vec<Vec<f64>>,
    /// Value targets.
    pub returns: Vec<Vec<f64>>,
}

impl AdvantageConfig {
    /// Checks the settings: β ≥ 0, γ and λ in [0, 1], a positive clamp and a finite
    /// penalty where given.
    pub fn validate(&self) -> Result<(), crate::error::RlhfError> {
        let bad = |m: String| Err(crate::error::RlhfError::Config(m));
        if !(self.kl_coef.is_finite() && self.kl_coef >= 0.0) {
            return bad(format!(
                "the KL coefficient {} must be finite and at least 0",
                self.kl_coef
            ));
        }
        for (name, v) in [("gamma", self.gamma), ("lambda", self.lam)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} {v} is not in [0, 1]"));
            }
        }
        if let Some(c) = self.kl_clamp
            && !(c.is_finite() && c > 0.0)
        {
            return bad(format!("the KL clamp {c} must be finite and positive"));
        }
        if let Some(p) = self.missing_eos_penalty
            && !p.is_finite()
        {
            return bad(format!("the missing-EOS penalty {p} is not finite"));
        }
        Ok(())
    }

    /// KL, rewards, advantages and returns of responses with the policy's and the
    /// reference's log-probabilities, the value estimates, the scores and whether each
    /// response ended with EOS.
    pub fn compute(
        &self,
        logprobs: &[Vec<f64>],
        ref_logprobs: &[Vec<f64>],
        values: &[Vec<f64>],
        scores: &[f64],
        ended: &[bool],
    ) -> Advantages {
        let mut out = Advantages {
            kl: Vec::new(),
            rewards: Vec::new(),
            advantages: Vec::new(),
            returns: Vec::new(),
        };
        for b in 0..logprobs.len() {
            let kl = self
                .kl_estimator
                .per_token(&logprobs[b], &ref_logprobs[b], self.kl_clamp);
            let rewards = token_rewards(&kl, scores[b], ended[b], self);
            let (adv, ret) = gae(&rewards, &values[b], self.gamma, self.lam);
            out.kl.push(kl);
            out.rewards.push(rewards);
            out.advantages.push(adv);
            out.returns.push(ret);
        }
        if self.whiten_advantages {
            out.advantages = whiten_rows(&out.advantages);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_by_hand() {
        // γ = 1, λ = 0.5, V = (1, 2), r = (0, 3): δ₁ = 3 − 2 = 1, δ₀ = 0 + 2 − 1 = 1,
        // A₁ = 1, A₀ = 1 + 0.5 · 1 = 1.5.
        let (a, r) = gae(&[0.0, 3.0], &[1.0, 2.0], 1.0, 0.5);
        assert_eq!(a, vec![1.5, 1.0]);
        assert_eq!(r, vec![2.5, 3.0]);
        assert_eq!(whiten_rows(&[vec![4.0]]), vec![vec![0.0]]);
        // [1, 3]: mean 2, unbiased variance 2.
        let w = whiten_rows(&[vec![1.0, 3.0], vec![]]);
        let want = 1.0 / (2.0f64 + 1e-8).sqrt();
        assert!((w[0][0] + want).abs() < 1e-12 && (w[0][1] - want).abs() < 1e-12);
        assert!(w[1].is_empty());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(AdvantageConfig::new().validate().is_ok());
        for c in [
            AdvantageConfig::new().with_kl_coef(-0.1),
            AdvantageConfig::new().with_kl_coef(f64::NAN),
            AdvantageConfig::new().with_gamma(1.5),
            AdvantageConfig::new().with_lam(-0.1),
            AdvantageConfig::new().with_kl_clamp(Some(0.0)),
            AdvantageConfig::new().with_missing_eos_penalty(Some(f64::INFINITY)),
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
