//! Settings of a rejection-sampling run.

use burn::config::Config;
use llama2::train::TrainConfig;

use crate::error::RlhfError;

/// A rejection-sampling fine-tuning run (paper §3.2.3): `rounds` rounds of sampling
/// `samples_per_prompt` responses per prompt, keeping the best (against the archive) and
/// fine-tuning the policy on the kept responses.
#[derive(Config, Debug)]
pub struct RejectionSamplingConfig {
    /// Rounds (the paper's RLHF V1 … V4 iterations).
    #[config(default = 3)]
    pub rounds: usize,
    /// Responses sampled per prompt (the paper's K).
    #[config(default = 4)]
    pub samples_per_prompt: usize,
    /// Prompts sampled per round, taken in turn from the prompt set (0: all of them).
    #[config(default = 0)]
    pub prompts_per_round: usize,
    /// Sampling temperature of each round; the last one repeats.
    #[config(default = "vec![1.0]")]
    pub temperatures: Vec<f64>,
    /// When not empty, each round measures the expected max-of-K reward on
    /// `sweep_prompts` held-out prompts at each of these temperatures and samples at the
    /// best one (the procedure behind the paper's Figure 8).
    #[config(default = "Vec::new()")]
    pub sweep: Vec<f64>,
    /// Held-out prompts of a temperature sweep.
    #[config(default = 16)]
    pub sweep_prompts: usize,
    /// Nucleus sampling threshold (Meta's default 0.9).
    #[config(default = 0.9)]
    pub top_p: f64,
    /// Most new tokens per response.
    #[config(default = 128)]
    pub max_gen_len: usize,
    /// Seed of every request (each prompt of each round has its own stream).
    #[config(default = 42)]
    pub seed: u64,
    /// Fine-tuning settings of each round (its `output_dir` is replaced by the round's,
    /// its seed offset by the round).
    pub sft: TrainConfig,
    /// Passes over the kept responses per round.
    #[config(default = 1.0)]
    pub sft_epochs: f64,
    /// Held-out prompts scored after each round (reward and KL to the initial policy).
    #[config(default = 64)]
    pub eval_prompts: usize,
    /// The run directory.
    #[config(default = "String::from(\"runs/rejection-sampling\")")]
    pub output_dir: String,
}

impl RejectionSamplingConfig {
    /// The temperature of `round` (1-based) from the schedule.
    pub fn scheduled_temperature(&self, round: usize) -> f64 {
        let i = round
            .saturating_sub(1)
            .min(self.temperatures.len().saturating_sub(1));
        self.temperatures.get(i).copied().unwrap_or(1.0)
    }

    /// Checks the settings before anything runs.
    pub fn validate(&self) -> Result<(), RlhfError> {
        let bad = |m: String| Err(RlhfError::Config(m));
        if self.rounds == 0 {
            return bad("rounds must be at least 1".into());
        }
        if self.samples_per_prompt == 0 {
            return bad("samples per prompt must be at least 1".into());
        }
        if self.temperatures.is_empty() {
            return bad("the temperature schedule is empty".into());
        }
        if let Some(t) = self
            .temperatures
            .iter()
            .chain(&self.sweep)
            .find(|t| !(t.is_finite() && **t >= 0.0))
        {
            return bad(format!("temperature {t} is not a finite value ≥ 0"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top-p {} is not in (0, 1]", self.top_p));
        }
        if self.max_gen_len == 0 {
            return bad("max_gen_len must be at least 1".into());
        }
        if !(self.sft_epochs > 0.0 && self.sft_epochs.is_finite()) {
            return bad(format!("sft_epochs {} must be positive", self.sft_epochs));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_run_are_refused() {
        let ok = || RejectionSamplingConfig::new(TrainConfig::new());
        assert!(ok().validate().is_ok());
        for c in [
            ok().with_rounds(0),
            ok().with_samples_per_prompt(0),
            ok().with_temperatures(vec![]),
            ok().with_temperatures(vec![1.0, -0.5]),
            ok().with_sweep(vec![f64::NAN]),
            ok().with_top_p(0.0),
            ok().with_top_p(1.5),
            ok().with_max_gen_len(0),
            ok().with_sft_epochs(0.0),
        ] {
            assert!(matches!(c.validate(), Err(RlhfError::Config(_))), "{c:?}");
        }
        assert_eq!(
            ok().with_temperatures(vec![0.8, 1.2])
                .scheduled_temperature(5),
            1.2
        );
    }
}
