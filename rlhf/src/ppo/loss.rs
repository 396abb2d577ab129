//! PPO's losses (Schulman et al., 2017), as TRL's `PPOTrainer` computes them, on tensors
//! so that they train: the clipped surrogate of the policy and the clipped value loss,
//! summed over response tokens and divided by the step's token count (a masked mean when
//! the step is one batch).

use burn::config::Config;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Clipping and weighting of the losses.
#[derive(Config, Debug, PartialEq)]
pub struct PpoLossConfig {
    /// The ratio `π/π_old` is clipped to `[1 − ε, 1 + ε]`.
    #[config(default = 0.2)]
    pub cliprange: f64,
    /// The new value is clipped to `old ± cliprange_value`.
    #[config(default = 0.2)]
    pub cliprange_value: f64,
    /// Weight of the value loss in the total (TRL's `vf_coef`).
    #[config(default = 0.1)]
    pub vf_coef: f64,
}

/// Per-token inputs of the losses, 0 past each response.
///
/// # Shapes
///
/// - every tensor: `[batch, response_len]`
#[derive(Clone, Debug)]
pub struct PpoTokens<B: Backend> {
    /// `log π` now (with gradients).
    pub logprobs: Tensor<B, 2>,
    /// `log π_old` at rollout time.
    pub old_logprobs: Tensor<B, 2>,
    /// Advantages.
    pub advantages: Tensor<B, 2>,
    /// Value estimates now (with gradients).
    pub values: Tensor<B, 2>,
    /// Value estimates at rollout time.
    pub old_values: Tensor<B, 2>,
    /// Value targets.
    pub returns: Tensor<B, 2>,
    /// 1 on response tokens, 0 on padding.
    pub mask: Tensor<B, 2>,
}

/// The losses of one (micro-)batch with their statistics as sums over tokens.
#[derive(Clone, Debug)]
pub struct PpoLosses<B: Backend> {
    /// `pg + vf_coef · vf`, `[1]`.
    pub total: Tensor<B, 1>,
    /// `Σ max(−A·ρ, −A·clip(ρ)) / denominator`, `[1]`.
    pub policy: Tensor<B, 1>,
    /// `0.5 · Σ max((V − R)², (V_clip − R)²) / denominator`, `[1]`.
    pub value: Tensor<B, 1>,
    /// Tokens where the clipped surrogate is the larger loss, `[1]`.
    pub policy_clipped: Tensor<B, 1>,
    /// Tokens where the clipped value loss is the larger one, `[1]`.
    pub value_clipped: Tensor<B, 1>,
    /// `Σ 0.5 (log π − log π_old)²`, `[1]`.
    pub approx_kl: Tensor<B, 1>,
}

impl PpoLossConfig {
    /// The losses of the response tokens of a batch, summed and divided by `denominator`
    /// (the step's response tokens).
    pub fn forward<B: Backend>(&self, tokens: PpoTokens<B>, denominator: f64) -> PpoLosses<B> {
        let PpoTokens {
            logprobs,
            old_logprobs,
            advantages,
            values,
            old_values,
            returns,
            mask,
        } = tokens;
        let eps = self.cliprange;
        let diff = logprobs - old_logprobs;
        let ratio = diff.clone().exp();
        let pg1 = advantages.clone().neg().mul(ratio.clone());
        let pg2 = advantages.neg().mul(ratio.clamp(1.0 - eps, 1.0 + eps));
        let policy_clipped = pg2
            .clone()
            .greater(pg1.clone())
            .float()
            .mul(mask.clone())
            .sum();
        let pg = pg1
            .max_pair(pg2)
            .mul(mask.clone())
            .sum()
            .div_scalar(denominator);

        let c = self.cliprange_value;
        let clipped = old_values.clone() + (values.clone() - old_values).clamp(-c, c);
        let vf1 = (values - returns.clone()).powi_scalar(2);
        let vf2 = (clipped - returns).powi_scalar(2);
        let value_clipped = vf2
            .clone()
            .greater(vf1.clone())
            .float()
            .mul(mask.clone())
            .sum();
        let vf = vf1
            .max_pair(vf2)
            .mul(mask.clone())
            .sum()
            .mul_scalar(0.5)
            .div_scalar(denominator);
        let approx_kl = diff.detach().powi_scalar(2).mul(mask).sum().mul_scalar(0.5);
        PpoLosses {
            total: pg.clone() + vf.clone().mul_scalar(self.vf_coef),
            policy: pg,
            value: vf,
            policy_clipped,
            value_clipped,
            approx_kl,
        }
    }
}
