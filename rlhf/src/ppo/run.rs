//! The PPO loop (paper §3.2.3): per iteration, a rollout of `rollout_size` responses from
//! the policy, scored by the reward model(s) (`whiten(logit(R_c))`), the KL-shaped
//! per-token rewards against the frozen initial policy, GAE, and `ppo_epochs` passes of
//! minibatch steps on the training engine — one gradient step per minibatch, AdamW with
//! the paper's settings, global-norm clipping.
//!
//! Layout of the run directory:
//!
//! ```text
//! checkpoints/        the engine's checkpoints (policy, value model, optimizer), per iteration
//! iterations.jsonl    one IterationReport per finished iteration (step losses averaged)
//! metrics.jsonl/csv   every minibatch step: loss, policy and value loss, clip fractions,
//!                     approximate KL, entropy, gradient norm, learning rate
//! metrics.jsonl       the engine's per-step log (losses, clip fractions, approx KL, entropy)
//! ppo.svg             reward, KL and held-out reward per iteration
//! policy.bpk          the final policy (adapters merged), with its tokenizer
//! ```
//!
//! A killed run continues with `resume` from its last finished iteration and ends where
//! the uninterrupted run ends: rollouts are seeded by the iteration.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::config::Config;
use burn::data::dataset::InMemDataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use llama2::lora::LoraConfig;
use llama2::train::data::DataOrder;
use llama2::train::log::MetricsLog;
use llama2::train::{OptimConfig, TrainConfig, Trainer, WarmupCosineConfig, checkpoint};
use llama2::{Llama, Tokenizer};
use llama2_import::TokenizerFile;
use llama2_reward::RewardModel;
use llama2_reward::combine::{normalization, whiten};
use serde::{Deserialize, Serialize};

use super::advantage::AdvantageConfig;
use super::loss::PpoLossConfig;
use super::model::{PolicyAndValue, RolloutItem};
use crate::error::RlhfError;
use crate::jsonl::{read_jsonl, write_jsonl};
use crate::rejection::plot::line_chart;
use crate::rejection::save_policy;
use crate::rejection::select::mean;
use crate::rollout::{
    HeldOut, LlamaResponder, Prompt, Response, ResponseBatch, ResponseSampler, Scorer, check_fits,
    evaluate_policy, request_seed,
};

const ROLLOUT_STAGE: u64 = 3 << 32;
const EVAL_STAGE: u64 = 4 << 32;

/// The paper's PPO optimizer: AdamW β = (0.9, 0.95), ε = 1e-5, weight decay 0.1, global
/// clipping 1.0, constant learning rate 1e-6.
pub fn paper_ppo_train() -> TrainConfig {
    TrainConfig::new()
        .with_optim(
            OptimConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.95)
                .with_epsilon(1e-5)
                .with_weight_decay(0.1)
                .with_grad_clip_norm(1.0),
        )
        .with_schedule(
            WarmupCosineConfig::new()
                .with_peak_lr(1e-6)
                .with_warmup_steps(0)
                .with_final_lr_ratio(1.0)
                .with_total_steps(0),
        )
        .with_micro_batch_size(8)
}

/// A PPO run.
#[derive(Config, Debug)]
pub struct PpoConfig {
    /// Rollout-and-update iterations.
    #[config(default = 10)]
    pub iterations: usize,
    /// Responses per rollout (the paper's batch size 512).
    #[config(default = 512)]
    pub rollout_size: usize,
    /// Responses per gradient step (the paper's minibatch 64).
    #[config(default = 64)]
    pub minibatch_size: usize,
    /// Passes over each rollout (the paper: one gradient step per minibatch).
    #[config(default = 1)]
    pub ppo_epochs: usize,
    /// Sampling temperature of the rollouts.
    #[config(default = 1.0)]
    pub temperature: f64,
    /// Nucleus threshold of the rollouts.
    #[config(default = 1.0)]
    pub top_p: f64,
    /// Most new tokens per response.
    #[config(default = 128)]
    pub max_gen_len: usize,
    /// Reward shaping and GAE.
    #[config(default = "AdvantageConfig::new()")]
    pub advantage: AdvantageConfig,
    /// Losses.
    #[config(default = "PpoLossConfig::new()")]
    pub losses: PpoLossConfig,
    /// Whiten the rollout's scores (the paper's `WHITEN(LOGIT(R_c))`) with the rollout's
    /// statistics.
    #[config(default = true)]
    pub whiten_scores: bool,
    /// Optimizer, schedule and micro-batch size ([`paper_ppo_train`] by default); its
    /// `steps`, `seq_len`, `tokens_per_step` and `output_dir` are set by the run.
    #[config(default = "paper_ppo_train()")]
    pub train: TrainConfig,
    /// Held-out evaluation every this many iterations (0: only at the end).
    #[config(default = 1)]
    pub eval_every: usize,
    /// Held-out prompts evaluated.
    #[config(default = 64)]
    pub eval_prompts: usize,
    /// Stop after this many evaluations without a better held-out reward (0: never).
    #[config(default = 0)]
    pub early_stopping_patience: usize,
    /// Train LoRA adapters on the policy instead of every weight: the reference policy is
    /// then the same base weights with the adapters left out (no second copy in memory).
    /// Set the adapters' dropout to 0 so that the ratio `π/π_old` starts at 1.
    #[config(default = "None")]
    pub lora: Option<LoraConfig>,
    /// Seed of the rollouts.
    #[config(default = 42)]
    pub seed: u64,
    /// The run directory.
    #[config(default = "String::from(\"runs/ppo\")")]
    pub output_dir: String,
}

/// What one iteration did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationReport {
    /// 1-based iteration.
    pub iteration: usize,
    /// Mean score of the rollout's responses (before whitening).
    pub reward: f64,
    /// Mean per-response KL estimate (k1 summed over tokens) to the reference.
    pub kl: f64,
    /// Mean per-token entropy of the policy on the rollout.
    pub entropy: f64,
    /// Mean response length.
    pub response_len: f64,
    /// Share of responses that ended with EOS.
    pub ended: f64,
    /// Means over the iteration's steps: policy loss, value loss, clip fraction, value
    /// clip fraction, approximate KL.
    pub policy_loss: f64,
    /// See [`policy_loss`](Self::policy_loss).
    pub value_loss: f64,
    /// See [`policy_loss`](Self::policy_loss).
    pub clip_fraction: f64,
    /// See [`policy_loss`](Self::policy_loss).
    pub value_clip_fraction: f64,
    /// See [`policy_loss`](Self::policy_loss).
    pub approx_kl: f64,
    /// Held-out evaluation, when one ran.
    pub held_out: Option<HeldOut>,
    /// Wall time.
    pub seconds: f64,
}

/// The result of a run.
#[derive(Debug)]
pub struct PpoOutcome<B: AutodiffBackend> {
    /// The policy and value model after the last iteration.
    pub model: PolicyAndValue<B>,
    /// The initial policy on the held-out prompts.
    pub initial: HeldOut,
    /// One report per iteration.
    pub iterations: Vec<IterationReport>,
}

/// A PPO run over a prompt set.
#[derive(Debug)]
pub struct Ppo<'a> {
    /// Settings.
    pub config: PpoConfig,
    /// The policy's tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// Stored with the final policy record.
    pub tokenizer_file: Option<&'a TokenizerFile>,
    /// Rollout prompts, taken in turn.
    pub prompts: &'a [Prompt],
    /// Held-out prompts.
    pub held_out: &'a [Prompt],
}

impl PpoConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RlhfError> {
        let bad = |m: &str| Err(RlhfError::Config(m.into()));
        if self.iterations == 0 || self.rollout_size == 0 || self.ppo_epochs == 0 {
            return bad("iterations, rollout size and PPO epochs must be at least 1");
        }
        if self.minibatch_size == 0 || !self.rollout_size.is_multiple_of(self.minibatch_size) {
            return bad("the rollout size must be a multiple of the minibatch size");
        }
        let mb = self.train.micro_batch_size;
        if mb == 0 || !self.minibatch_size.is_multiple_of(mb) {
            return bad("the minibatch size must be a multiple of the micro-batch size");
        }
        let top_p_ok = self.top_p > 0.0 && self.top_p <= 1.0;
        if !top_p_ok || self.temperature.is_nan() || self.temperature <= 0.0 {
            return bad("PPO samples with a temperature > 0 and top-p in (0, 1]");
        }
        if self.max_gen_len == 0 {
            return bad("max_gen_len must be at least 1");
        }
        self.advantage.validate()?;
        let l = &self.losses;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(l.cliprange) || !positive(l.cliprange_value) {
            return bad("the clip ranges must be finite and positive");
        }
        if !(l.vf_coef.is_finite() && l.vf_coef >= 0.0) {
            return bad("the value-loss weight must be finite and at least 0");
        }
        Ok(())
    }

    /// Optimizer steps per iteration.
    pub fn steps_per_iteration(&self) -> usize {
        self.ppo_epochs * self.rollout_size / self.minibatch_size
    }
}

impl Ppo<'_> {
    /// Runs PPO (or continues it with `resume`) on `policy` with a value model initialised
    /// from `value` (a reward model), against a frozen copy of the initial policy; `stop`
    /// is asked after each iteration.
    pub fn run<B: AutodiffBackend, S: Scorer>(
        &self,
        policy: Llama<B>,
        value: RewardModel<B>,
        scorer: &mut S,
        resume: bool,
        stop: &dyn Fn() -> bool,
        device: &B::Device,
    ) -> Result<PpoOutcome<B>, RlhfError> {
        let c = &self.config;
        c.validate()?;
        if self.prompts.is_empty() || self.held_out.is_empty() {
            return Err(RlhfError::Config(
                "PPO needs rollout and held-out prompts".into(),
            ));
        }
        if value.trunk.config.vocab_size != policy.config.vocab_size {
            return Err(RlhfError::Mismatch {
                what: "value model and policy",
                detail: format!(
                    "the value model has a vocabulary of {} tokens, the policy {}",
                    value.trunk.config.vocab_size, policy.config.vocab_size
                ),
            });
        }
        let max_seq_len = policy.config.max_seq_len;
        check_fits(self.prompts.iter().chain(self.held_out), max_seq_len)?;
        let out = PathBuf::from(&c.output_dir);
        let has_run = checkpoint::latest(&out).is_some();
        if !resume && has_run {
            return Err(RlhfError::Resume {
                path: out,
                message: "it holds an earlier run: resume it or choose another directory".into(),
            });
        }
        fs::create_dir_all(&out).map_err(|e| RlhfError::io(&out, e))?;

        let policy = match &c.lora {
            Some(lora) => lora.attach(policy)?,
            None => policy,
        };
        // With adapters, the reference is the frozen base itself: its tensors are shared
        // with the policy's, which never change.
        let reference = policy.valid().unload_lora();
        let held_out = &self.held_out[..c.eval_prompts.clamp(1, self.held_out.len())];
        let eval_seed = request_seed(c.seed, EVAL_STAGE, 0);
        let initial = evaluate_policy(
            &reference,
            &reference,
            self.tokenizer,
            held_out,
            scorer,
            c.max_gen_len,
            eval_seed,
        )?;

        let steps = c.steps_per_iteration();
        let mut train = c.train.clone();
        train.steps = steps * c.iterations;
        train.seq_len = max_seq_len;
        train.tokens_per_step = c.minibatch_size * max_seq_len;
        train.output_dir = out.display().to_string();
        let model = PolicyAndValue {
            policy,
            value,
            losses: c.losses.clone(),
        };
        let mut trainer = if resume && has_run {
            Trainer::resume(model, train, device)?
        } else {
            Trainer::new(model, train, device)
        };
        let log_path = out.join("iterations.jsonl");
        let mut reports: Vec<IterationReport> = if resume && log_path.exists() {
            read_jsonl(&log_path)?
        } else {
            Vec::new()
        };
        let done = trainer.step / steps.max(1);
        reports.truncate(done);
        if reports.len() != done {
            return Err(RlhfError::Resume {
                path: log_path,
                message: format!("{} iterations logged, {done} checkpointed", reports.len()),
            });
        }
        let mut step_log = MetricsLog::open(&out, trainer.step, super::model::METRICS)?;
        let mut best = reports
            .iter()
            .filter_map(|r| r.held_out.map(|h| h.reward))
            .fold(initial.reward, f64::max);
        let mut stale = 0;

        for iteration in done + 1..=c.iterations {
            let started = Instant::now();
            let (items, stats) = self.rollout(iteration, &trainer.model, &reference, scorer)?;
            let data = InMemDataset::new(items);
            let mut order = DataOrder::new(
                burn::data::dataset::Dataset::len(&data),
                request_seed(c.seed, ROLLOUT_STAGE + iteration as u64, 1),
                true,
            );
            trainer.cursor = 0;
            let mut step_metrics = Vec::with_capacity(steps);
            for _ in 0..steps {
                let m = trainer.train_step(&data, &mut order);
                step_log.push(m.clone())?;
                step_metrics.push(m);
            }
            let avg = |name: &str| {
                mean(
                    &step_metrics
                        .iter()
                        .map(|m| m.metrics.get(name).copied().unwrap_or(f64::NAN))
                        .collect::<Vec<_>>(),
                )
            };
            let evaluate =
                (c.eval_every > 0 && iteration % c.eval_every == 0) || iteration == c.iterations;
            let held = if evaluate {
                Some(evaluate_policy(
                    &trainer.model.policy.valid(),
                    &reference,
                    self.tokenizer,
                    held_out,
                    scorer,
                    c.max_gen_len,
                    eval_seed,
                )?)
            } else {
                None
            };
            let report = IterationReport {
                iteration,
                reward: stats.reward,
                kl: stats.kl,
                entropy: avg("Entropy"),
                response_len: stats.response_len,
                ended: stats.ended,
                policy_loss: avg("Policy Loss"),
                value_loss: avg("Value Loss"),
                clip_fraction: avg("Clip Fraction"),
                value_clip_fraction: avg("Value Clip Fraction"),
                approx_kl: avg("Approx KL"),
                held_out: held,
                seconds: started.elapsed().as_secs_f64(),
            };
            tracing::info!(
                iteration,
                reward = report.reward,
                kl = report.kl,
                held_out = held.map(|h| h.reward),
                "ppo iteration"
            );
            // The report first, then the checkpoint: a run killed between the two has one
            // report more than checkpoints, which resuming drops and redoes.
            reports.push(report);
            write_jsonl(&log_path, &reports)?;
            plot(&initial, &reports, &out.join("ppo.svg"))?;
            trainer.save_checkpoint()?;
            if let Some(h) = held {
                if h.reward > best {
                    best = h.reward;
                    stale = 0;
                } else {
                    stale += 1;
                }
            }
            let patience = c.early_stopping_patience;
            if patience > 0 && stale >= patience {
                tracing::info!(iteration, "held-out reward stopped improving: early stop");
                break;
            }
            if stop() && iteration < c.iterations {
                return Err(RlhfError::Interrupted);
            }
        }
        save_policy(
            &trainer.model.policy.valid().merge_lora(),
            &out.join("policy.bpk"),
            self.tokenizer_file,
        )?;
        Ok(PpoOutcome {
            model: trainer.model,
            initial,
            iterations: reports,
        })
    }

    /// The rollout of `iteration`: responses, scores, log-probabilities, values and
    /// advantages, and their statistics.
    fn rollout<B: AutodiffBackend, S: Scorer>(
        &self,
        iteration: usize,
        model: &PolicyAndValue<B>,
        reference: &Llama<B::InnerBackend>,
        scorer: &mut S,
    ) -> Result<(Vec<RolloutItem>, RolloutStats), RlhfError> {
        let c = &self.config;
        let policy = model.policy.valid();
        let value = model.value.valid();
        let n = self.prompts.len();
        let start = (iteration - 1) * c.rollout_size % n;
        let prompts: Vec<&Prompt> = (0..c.rollout_size)
            .map(|i| &self.prompts[(start + i) % n])
            .collect();
        let mut responder = LlamaResponder::new(&policy, self.tokenizer, c.top_p, c.max_gen_len)?;
        let tokens: Vec<&[u32]> = prompts.iter().map(|p| p.tokens.as_slice()).collect();
        let mut responses: Vec<Response> = Vec::with_capacity(c.rollout_size);
        let chunk = c.minibatch_size.max(1);
        for (k, batch) in tokens.chunks(chunk).enumerate() {
            let seed = request_seed(c.seed, ROLLOUT_STAGE + iteration as u64, 2 + k as u64);
            responses.extend(responder.sample_each(batch, c.temperature, seed)?);
        }
        // A response cut before any token (a chat tag first) has no action to learn from:
        // it gets the smallest response there is, EOS.
        let eos = self.tokenizer.eos_id();
        for r in &mut responses {
            if r.tokens.is_empty() {
                r.tokens.push(eos);
                r.ended = true;
            }
        }
        let items: Vec<(&Prompt, &Response)> =
            prompts.iter().copied().zip(responses.iter()).collect();
        let raw = scorer.score(&items)?;
        if let Some(i) = raw.iter().position(|s| !s.is_finite()) {
            return Err(RlhfError::Scorer(format!(
                "the score of the response to prompt {} is {}",
                prompts[i].id, raw[i]
            )));
        }
        let scores = if c.whiten_scores {
            whiten(&raw, &normalization(&raw))
        } else {
            raw.clone()
        };

        let rows: Vec<(&[u32], &[u32])> = prompts
            .iter()
            .zip(&responses)
            .map(|(p, r)| (p.tokens.as_slice(), r.tokens.as_slice()))
            .collect();
        let device = policy.tok_embeddings.weight.device();
        let (mut logprobs, mut ref_logprobs, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in rows.chunks(c.train.micro_batch_size.max(1)) {
            let batch = ResponseBatch::new(chunk, policy.config.max_seq_len, &device)?;
            let lens = batch.response_lens.clone();
            logprobs.extend(to_rows(batch.logprobs(&policy), &lens)?);
            ref_logprobs.extend(to_rows(batch.logprobs(reference), &lens)?);
            let v = batch.at_responses(value.values(batch.tokens.clone()));
            values.extend(to_rows(v, &lens)?);
        }
        let ended: Vec<bool> = responses.iter().map(|r| r.ended).collect();
        let adv = c
            .advantage
            .compute(&logprobs, &ref_logprobs, &values, &scores, &ended);
        let kl: Vec<f64> = logprobs
            .iter()
            .zip(&ref_logprobs)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).sum())
            .collect();
        let lens: Vec<f64> = responses.iter().map(|r| r.tokens.len() as f64).collect();
        let ends: Vec<f64> = ended.iter().map(|&e| f64::from(u8::from(e))).collect();
        let stats = RolloutStats {
            reward: mean(&raw),
            kl: mean(&kl),
            response_len: mean(&lens),
            ended: mean(&ends),
        };
        let items = prompts
            .iter()
            .zip(responses)
            .enumerate()
            .map(|(b, (p, r))| RolloutItem {
                prompt: p.tokens.clone(),
                response: r.tokens,
                logprobs: logprobs[b].clone(),
                values: values[b].clone(),
                advantages: adv.advantages[b].clone(),
                returns: adv.returns[b].clone(),
            })
            .collect();
        Ok((items, stats))
    }
}

/// Means over a rollout's responses.
struct RolloutStats {
    /// Score before whitening.
    reward: f64,
    /// `Σ_t log π − log π_ref`.
    kl: f64,
    /// Tokens.
    response_len: f64,
    /// Share ended with EOS.
    ended: f64,
}

fn to_rows<B: Backend>(
    values: burn::tensor::Tensor<B, 2>,
    lens: &[usize],
) -> Result<Vec<Vec<f64>>, RlhfError> {
    crate::rollout::batch::rows_of(values, lens)
}

fn plot(initial: &HeldOut, reports: &[IterationReport], path: &Path) -> Result<(), RlhfError> {
    use plotters::style::{BLUE, GREEN, RED};
    let mut held = vec![(0.0, initial.reward)];
    held.extend(
        reports
            .iter()
            .filter_map(|r| r.held_out.map(|h| (r.iteration as f64, h.reward))),
    );
    line_chart(
        path,
        "PPO: reward and KL per iteration",
        "iteration",
        &[
            (
                "rollout reward".into(),
                RED,
                reports
                    .iter()
                    .map(|r| (r.iteration as f64, r.reward))
                    .collect(),
            ),
            ("held-out reward".into(), BLUE, held),
            (
                "KL to the reference".into(),
                GREEN,
                reports.iter().map(|r| (r.iteration as f64, r.kl)).collect(),
            ),
        ],
    )
}
