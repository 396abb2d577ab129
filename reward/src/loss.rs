//! The reward model's training objective (paper §3.2.2, eq. 2):
//!
//! `L = −log σ(r(x, y_c) − r(x, y_r) − m(r)) = softplus(r_r − r_c + m)`
//!
//! computed with Burn's `log_sigmoid`, which every backend evaluates in the stable form
//! `min(x, 0) − log1p(exp(−|x|))`: finite at any magnitude (at `x = −120`,
//! `log(sigmoid(x))` evaluated naively is `log(0) = −∞` in f32; here it is `−120`).
//! The margin `m` is given per pair ([`crate::MarginKind`] turns ratings into margins).
//!
//! Optionally TRL's `RewardTrainer` term `center_rewards_coefficient · mean((r_c + r_r)²)`
//! (Eisenstein et al., 2023) keeps the rewards centred on zero.

use burn::config::Config;

use crate::rating::MarginKind;
use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::Backend;

/// Settings of the ranking loss.
#[derive(Config, Debug, PartialEq)]
pub struct RankingLossConfig {
    /// Where each pair's margin `m` comes from (paper Table 27, the
    /// `margin` column, or none).
    #[config(default = "MarginKind::None")]
    pub margin: MarginKind,
    /// TRL's `center_rewards_coefficient`; `None` (TRL's default) adds nothing.
    #[config(default = "None")]
    pub center_rewards_coefficient: Option<f64>,
}

impl RankingLossConfig {
    /// The loss function.
    pub fn init(&self) -> RankingLoss {
        RankingLoss {
            center_rewards_coefficient: self.center_rewards_coefficient,
        }
    }
}

/// The margin ranking loss, summed over pairs (divide by the step's pair count for TRL's
/// mean).
#[derive(Clone, Debug, PartialEq)]
pub struct RankingLoss {
    /// See [`RankingLossConfig::center_rewards_coefficient`].
    pub center_rewards_coefficient: Option<f64>,
}

impl RankingLoss {
    /// `Σ_i [−log σ(r_c,i − r_r,i − m_i) + coef · (r_c,i + r_r,i)²]`.
    ///
    /// # Shapes
    ///
    /// - chosen, rejected, margins: `[pairs]`
    /// - output: `[1]`
    pub fn forward<B: Backend>(
        &self,
        chosen: Tensor<B, 1>,
        rejected: Tensor<B, 1>,
        margins: Tensor<B, 1>,
    ) -> Tensor<B, 1> {
        let mut loss = pair_losses(chosen.clone(), rejected.clone(), margins).sum();
        if let Some(coef) = self.center_rewards_coefficient {
            loss = loss + (chosen + rejected).powi_scalar(2).sum().mul_scalar(coef);
        }
        loss
    }
}

/// The ranking loss of each pair, `−log σ(r_c − r_r − m)`.
///
/// # Shapes
///
/// - chosen, rejected, margins: `[pairs]`
/// - output: `[pairs]`
pub fn pair_losses<B: Backend>(
    chosen: Tensor<B, 1>,
    rejected: Tensor<B, 1>,
    margins: Tensor<B, 1>,
) -> Tensor<B, 1> {
    log_sigmoid(chosen - rejected - margins).neg()
}

/// [`pair_losses`] of one pair on the host in f64: `softplus(r_r − r_c + m)` as
/// `max(z, 0) + ln(1 + e^(−|z|))`.
pub fn pair_loss_f64(chosen: f64, rejected: f64, margin: f64) -> f64 {
    let z = rejected - chosen + margin;
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend as B;
    use burn::tensor::TensorData;

    fn t(values: &[f32]) -> Tensor<B, 1> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Default::default(),
        )
    }

    fn v(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn hand_computed_values() {
        // softplus(0) = ln 2; softplus(−1) = ln(1 + 1/e); softplus(2) = ln(1 + e²).
        let got = v(pair_losses(
            t(&[1.0, 1.0, 0.0]),
            t(&[1.0, 0.0, 1.0]),
            t(&[0.0, 0.0, 1.0]),
        ));
        let expected = [
            2f32.ln(),
            (1.0 + (-1f32).exp()).ln(),
            (1.0 + 2f32.exp()).ln(),
        ];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{got:?}");
        }
        assert!((pair_loss_f64(0.0, 1.0, 1.0) - (1.0 + 2f64.exp()).ln()).abs() < 1e-12);
    }

    #[test]
    fn finite_at_extreme_differences() {
        // Naive log(sigmoid(−120)) in f32 is log(0) = −inf.
        assert_eq!((1.0 / (1.0 + 120f32.exp())).ln(), f32::NEG_INFINITY);
        let got = v(pair_losses(
            t(&[-60.0, 60.0, 5e3]),
            t(&[60.0, -60.0, -5e3]),
            t(&[0.0; 3]),
        ));
        assert!((got[0] - 120.0).abs() < 1e-4, "{got:?}");
        assert!(got[1] >= 0.0 && got[1] < 1e-30, "{got:?}");
        assert!(got[2] == 0.0, "{got:?}");
        assert!((pair_loss_f64(-5e3, 5e3, 0.0) - 1e4).abs() < 1e-9);
    }

    #[test]
    fn centring_term_is_trl_s() {
        let loss = RankingLossConfig::new()
            .with_center_rewards_coefficient(Some(0.01))
            .init();
        let (c, r) = ([0.5f32, -1.0], [0.25f32, 2.0]);
        let got = v(loss.forward(t(&c), t(&r), t(&[0.0, 0.0])))[0];
        let expected: f64 = c
            .iter()
            .zip(&r)
            .map(|(&c, &r)| {
                pair_loss_f64(c.into(), r.into(), 0.0) + 0.01 * f64::from(c + r).powi(2)
            })
            .sum();
        assert!(
            (f64::from(got) - expected).abs() < 1e-6,
            "{got} vs {expected}"
        );
    }
}
