//! The pipeline's settings: where the data is, where the run goes, the model's shape and
//! every stage's length and learning rate, with presets per scale.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// The stages, in order; each is a paper section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// §2: pretraining on a weighted mixture of two text sources.
    Pretrain,
    /// §3.1 and §3.3: supervised fine-tuning on chat dialogs and Ghost Attention examples.
    Sft,
    /// §3.2.2: the helpfulness reward model.
    RewardHelpfulness,
    /// §3.2.2: the safety reward model.
    RewardSafety,
    /// §3.2.3: rejection-sampling fine-tuning against the combined reward.
    RejectionSampling,
    /// §3.2.3: PPO on top of the rejection-sampling model.
    Ppo,
    /// §3.4 and §4: held-out reward, rule-based score, safety, perplexity, GAtt adherence.
    Eval,
}

impl Stage {
    /// Every stage, in the order they run.
    pub const ALL: [Stage; 7] = [
        Stage::Pretrain,
        Stage::Sft,
        Stage::RewardHelpfulness,
        Stage::RewardSafety,
        Stage::RejectionSampling,
        Stage::Ppo,
        Stage::Eval,
    ];

    /// The stage's name: its directory under the run directory and its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Pretrain => "pretrain",
            Stage::Sft => "sft",
            Stage::RewardHelpfulness => "reward-helpfulness",
            Stage::RewardSafety => "reward-safety",
            Stage::RejectionSampling => "rejection-sampling",
            Stage::Ppo => "ppo",
            Stage::Eval => "eval",
        }
    }

    /// The paper's section.
    pub fn section(self) -> &'static str {
        match self {
            Stage::Pretrain => "§2",
            Stage::Sft => "§3.1, §3.3",
            Stage::RewardHelpfulness | Stage::RewardSafety => "§3.2.2",
            Stage::RejectionSampling | Stage::Ppo => "§3.2.3",
            Stage::Eval => "§3.4, §4",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Stage::ALL.iter().map(|s| s.name()).collect();
                format!("no stage `{s}` (stages: {})", names.join(", "))
            })
    }
}

/// The size of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// Seconds: a smoke test of every stage (the models learn little).
    Micro,
    /// The default: minutes on a laptop CPU, and each stage measurably does its job.
    Tiny,
    /// A larger model and longer stages (tens of minutes on CPU; a GPU backend helps).
    Small,
}

impl FromStr for Scale {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "micro" => Ok(Scale::Micro),
            "tiny" => Ok(Scale::Tiny),
            "small" => Ok(Scale::Small),
            _ => Err(format!("no scale `{s}` (micro, tiny, small)")),
        }
    }
}

/// The model pretrained from scratch (ignored with a base checkpoint).
#[derive(Config, Debug, PartialEq)]
pub struct ModelShape {
    /// Width.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Context length.
    #[config(default = 128)]
    pub max_seq_len: usize,
}

/// One run of the whole recipe.
#[derive(Config, Debug)]
pub struct PipelineConfig {
    /// The folder of the pipeline data (`examples/data/pipeline`, written by
    /// `scripts/gen_pipeline_data.py`).
    pub data_dir: String,
    /// The run directory: one folder per stage, the report, the final model.
    #[config(default = "String::from(\"runs/pipeline\")")]
    pub output_dir: String,
    /// Seeds model initialisation, data order, sampling and dropout of every stage.
    #[config(default = 42)]
    pub seed: u64,
    /// A Meta or Hugging Face checkpoint (or record) to start from instead of
    /// pretraining; its tokenizer replaces the pipeline's.
    #[config(default = "None")]
    pub base: Option<String>,
    /// The pretrained model's shape.
    pub model: ModelShape,
    /// Pretraining optimizer steps.
    pub pretrain_steps: usize,
    /// Pretraining sequences per step (one micro-batch).
    pub pretrain_batch: usize,
    /// Pretraining window length.
    #[config(default = 64)]
    pub pretrain_seq_len: usize,
    /// Pretraining peak learning rate.
    #[config(default = 3e-3)]
    pub pretrain_lr: f64,
    /// Weights of the two pretraining sources (prose, arithmetic).
    #[config(default = "vec![1.0, 1.0]")]
    pub pretrain_weights: Vec<f64>,
    /// SFT passes over the dialogs.
    pub sft_epochs: f64,
    /// SFT peak learning rate.
    #[config(default = 2e-3)]
    pub sft_lr: f64,
    /// Sequence length of SFT, reward models and RLHF fine-tuning.
    #[config(default = 96)]
    pub seq_len: usize,
    /// Ghost Attention examples built from the source dialogs (0: all).
    #[config(default = 0)]
    pub gatt_dialogs: usize,
    /// Reward-model passes over the helpfulness pairs.
    pub reward_epochs: f64,
    /// Reward-model passes over the (fewer) safety pairs.
    pub safety_epochs: f64,
    /// Reward-model peak learning rate.
    #[config(default = 1e-3)]
    pub reward_lr: f64,
    /// Pairs per reward-model step.
    #[config(default = 32)]
    pub reward_pairs_per_step: usize,
    /// Rejection-sampling rounds.
    pub rs_rounds: usize,
    /// Responses sampled per prompt (the paper's K).
    pub rs_k: usize,
    /// Prompts per round (0: all of `prompts.jsonl`).
    #[config(default = 0)]
    pub rs_prompts_per_round: usize,
    /// Sampling temperature of each round.
    #[config(default = "vec![1.0]")]
    pub rs_temperatures: Vec<f64>,
    /// Passes over the kept responses per round.
    #[config(default = 2.0)]
    pub rs_sft_epochs: f64,
    /// Learning rate of the rounds' fine-tuning.
    #[config(default = 1e-4)]
    pub rs_lr: f64,
    /// PPO iterations.
    pub ppo_iterations: usize,
    /// Responses per PPO rollout.
    pub ppo_rollout: usize,
    /// Responses per PPO gradient step.
    #[config(default = 32)]
    pub ppo_minibatch: usize,
    /// PPO learning rate (constant).
    #[config(default = 2e-5)]
    pub ppo_lr: f64,
    /// PPO's KL penalty β.
    #[config(default = 0.05)]
    pub ppo_kl_coef: f64,
    /// Most new tokens of a response (RLHF and evaluation).
    #[config(default = 24)]
    pub max_gen_len: usize,
    /// Held-out prompts of the evaluations (0: all).
    #[config(default = 0)]
    pub eval_prompts: usize,
    /// Held-out GAtt dialogs evaluated (0: all).
    #[config(default = 0)]
    pub gatt_eval_dialogs: usize,
    /// Answers shown before and after RLHF.
    #[config(default = 4)]
    pub samples_shown: usize,
}

impl PipelineConfig {
    /// The preset of `scale` on the data in `data_dir`.
    pub fn preset(scale: Scale, data_dir: impl Into<String>) -> Self {
        let data_dir = data_dir.into();
        match scale {
            Scale::Micro => Self::new(
                data_dir,
                ModelShape::new(32, 2, 4, 2),
                4,
                4,
                1.0,
                0.05,
                0.2,
                1,
                2,
                1,
                8,
            )
            .with_gatt_dialogs(8)
            .with_rs_prompts_per_round(8)
            .with_ppo_minibatch(8)
            .with_max_gen_len(8)
            .with_eval_prompts(8)
            .with_gatt_eval_dialogs(2)
            .with_samples_shown(2),
            Scale::Tiny => Self::new(
                data_dir,
                ModelShape::new(64, 4, 4, 2),
                400,
                16,
                3.0,
                1.0,
                3.0,
                2,
                4,
                4,
                128,
            )
            .with_rs_temperatures(vec![0.9, 1.0]),
            Scale::Small => Self::new(
                data_dir,
                ModelShape::new(128, 6, 8, 4).with_max_seq_len(256),
                1500,
                16,
                4.0,
                2.0,
                4.0,
                4,
                8,
                8,
                192,
            )
            .with_pretrain_seq_len(128)
            .with_rs_temperatures(vec![0.9, 1.0, 1.1]),
        }
    }

    /// Errors on settings that cannot run, before any work.
    pub fn validate(&self) -> Result<(), String> {
        let m = &self.model;
        if m.dim == 0 || m.layers == 0 || m.heads == 0 || m.kv_heads == 0 {
            return Err("the model's dim, layers, heads and kv_heads must be positive".into());
        }
        if !m.dim.is_multiple_of(m.heads) || !m.heads.is_multiple_of(m.kv_heads) {
            return Err(format!(
                "dim {} must be a multiple of heads {}, and heads of kv_heads {}",
                m.dim, m.heads, m.kv_heads
            ));
        }
        let positive = [
            ("pretrain_steps", self.pretrain_steps),
            ("pretrain_batch", self.pretrain_batch),
            ("pretrain_seq_len", self.pretrain_seq_len),
            ("seq_len", self.seq_len),
            ("rs_rounds", self.rs_rounds),
            ("rs_k", self.rs_k),
            ("ppo_iterations", self.ppo_iterations),
            ("ppo_rollout", self.ppo_rollout),
            ("ppo_minibatch", self.ppo_minibatch),
            ("max_gen_len", self.max_gen_len),
            ("reward_pairs_per_step", self.reward_pairs_per_step),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        let rates = [
            ("pretrain_lr", self.pretrain_lr),
            ("sft_lr", self.sft_lr),
            ("reward_lr", self.reward_lr),
            ("rs_lr", self.rs_lr),
            ("ppo_lr", self.ppo_lr),
            ("sft_epochs", self.sft_epochs),
            ("reward_epochs", self.reward_epochs),
            ("safety_epochs", self.safety_epochs),
            ("rs_sft_epochs", self.rs_sft_epochs),
        ];
        if let Some((name, v)) = rates.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(format!("{name} must be a finite positive number, not {v}"));
        }
        if !(self.ppo_kl_coef.is_finite() && self.ppo_kl_coef >= 0.0) {
            return Err(format!("ppo_kl_coef {} must be ≥ 0", self.ppo_kl_coef));
        }
        if self.pretrain_weights.len() != 2
            || self
                .pretrain_weights
                .iter()
                .any(|w| !(w.is_finite() && *w > 0.0))
        {
            return Err("pretrain_weights must be two positive weights (prose, arithmetic)".into());
        }
        if self.rs_temperatures.is_empty()
            || self
                .rs_temperatures
                .iter()
                .any(|t| !(t.is_finite() && *t > 0.0))
        {
            return Err("rs_temperatures must be positive temperatures".into());
        }
        if self.seq_len > m.max_seq_len || self.pretrain_seq_len > m.max_seq_len {
            return Err(format!(
                "seq_len {} and pretrain_seq_len {} must fit the context {}",
                self.seq_len, self.pretrain_seq_len, m.max_seq_len
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip_and_unknown_ones_list_the_stages() {
        for stage in Stage::ALL {
            assert_eq!(stage.name().parse::<Stage>(), Ok(stage));
        }
        let err = "reward".parse::<Stage>().unwrap_err();
        assert!(err.contains("reward-helpfulness"), "{err}");
        assert!(Stage::Pretrain < Stage::Eval);
    }

    #[test]
    fn presets_are_valid_and_bad_settings_are_named() {
        for scale in [Scale::Micro, Scale::Tiny, Scale::Small] {
            PipelineConfig::preset(scale, "data").validate().unwrap();
        }
        let mut bad = PipelineConfig::preset(Scale::Micro, "data");
        bad.rs_k = 0;
        assert!(bad.validate().unwrap_err().contains("rs_k"));
        let bad = PipelineConfig::preset(Scale::Micro, "data").with_ppo_lr(f64::NAN);
        assert!(bad.validate().unwrap_err().contains("ppo_lr"));
        let bad = PipelineConfig::preset(Scale::Micro, "data").with_seq_len(1000);
        assert!(bad.validate().unwrap_err().contains("context"));
    }
}
