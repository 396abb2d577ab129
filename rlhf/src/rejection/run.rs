//! The rejection-sampling loop (paper §3.2.3, "Rejection Sampling"):
//!
//! 1. the temperature of the round, from the schedule or measured by a sweep;
//! 2. for each prompt of the round, `K` responses from the sampler (the current policy, or
//!    another model when distilling), scored;
//! 3. per prompt, the best of the new responses and of the archived best (re-scored with
//!    the current scorer); the archive keeps the winner;
//! 4. the policy fine-tuned on the winners with the SFT objective on the training engine
//!    (only the answer is a target);
//! 5. held-out reward and KL(policy ‖ initial policy).
//!
//! Layout of the run directory:
//!
//! ```text
//! initial.json              held-out reward of the initial policy
//! archive.jsonl             the archive after the latest round (a copy of the round's)
//! rounds.jsonl              one RoundReport per finished round
//! rewards.svg, best_of_n.svg
//! round-R/samples.jsonl     K scored responses per prompt, appended prompt by prompt
//! round-R/archive.jsonl     the archive after the round's selection
//! round-R/selected.jsonl    the fine-tuning rows of the round (written last)
//! round-R/sft/              the fine-tuning run (checkpoints, metrics, curves)
//! round-R/policy.bpk        the policy after the round, with its tokenizer
//! round-R/report.json       the round's RoundReport (the round is done)
//! ```
//!
//! Every file but the samples is written atomically, and the samples file drops a torn
//! last line, so a run killed anywhere continues with `resume` at the next prompt (or the
//! next stage of the round) and ends where the uninterrupted run ends: requests are
//! seeded by (round, prompt), fine-tuning by the round.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use llama2::chat::Message;
use llama2::train::{SftConfig, checkpoint, finetune};
use llama2::{Llama, Tokenizer};
use llama2_import::{Checkpoint, StorageDtype, TokenizerFile};
use serde::{Deserialize, Serialize};

use super::archive::{Archive, ArchiveEntry};
use super::config::RejectionSamplingConfig;
use super::plot::plot_rounds;
use super::samples::{PromptSamples, SamplesFile, ScoredResponse};
use super::select::{best_of, best_of_n_curve, mean, median};
use crate::error::RlhfError;
use crate::jsonl::{read_json, write_json, write_jsonl};
use crate::rollout::{
    HeldOut, LlamaResponder, Prompt, Response, ResponseSampler, Scorer, check_fits,
    evaluate_policy, request_seed,
};

/// Request streams of the stages of a round.
const SAMPLE_STAGE: u64 = 0;
const SWEEP_STAGE: u64 = 1 << 32;
const EVAL_STAGE: u64 = 2 << 32;

/// What one round did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// 1-based round.
    pub round: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// `(temperature, expected max-of-K reward)` of the sweep, when one ran.
    pub sweep: Vec<(f64, f64)>,
    /// Prompts sampled.
    pub prompts: usize,
    /// Over prompts, the mean of the mean / median / max score of their `K` responses.
    pub sample_mean: f64,
    /// See [`sample_mean`](Self::sample_mean).
    pub sample_median: f64,
    /// See [`sample_mean`](Self::sample_mean).
    pub sample_max: f64,
    /// `(N, mean max, mean median)` of the first `N` responses, `N = 1 ..= K`.
    pub best_of_n: Vec<(usize, f64, f64)>,
    /// Mean score of the kept responses (the winners against the archive).
    pub kept_mean: f64,
    /// Prompts whose archived response beat the new ones.
    pub archive_kept: usize,
    /// Loss of the first and last fine-tuning steps.
    pub sft_loss: (f64, f64),
    /// Fine-tuning steps.
    pub sft_steps: usize,
    /// The policy after the round on the held-out prompts.
    pub held_out: HeldOut,
    /// Wall time of the round.
    pub seconds: f64,
}

/// A rejection-sampling run over a prompt set.
#[derive(Debug)]
pub struct RejectionSampling<'a> {
    /// Settings.
    pub config: RejectionSamplingConfig,
    /// The policy's tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// Stored with each round's policy record.
    pub tokenizer_file: Option<&'a TokenizerFile>,
    /// Prompts sampled in the rounds.
    pub prompts: &'a [Prompt],
    /// Held-out prompts (evaluation and temperature sweeps).
    pub held_out: &'a [Prompt],
    /// Names the initial policy in the archive.
    pub policy_name: String,
}

/// The result of a run.
#[derive(Debug)]
pub struct RejectionOutcome<B: AutodiffBackend> {
    /// The policy after the last round.
    pub policy: Llama<B>,
    /// The initial policy on the held-out prompts.
    pub initial: HeldOut,
    /// One report per round.
    pub rounds: Vec<RoundReport>,
    /// The archive after the last round.
    pub archive: Archive,
}

/// Writes `policy` as a record with the run's tokenizer.
pub fn save_policy<B: burn::tensor::backend::Backend>(
    policy: &Llama<B>,
    path: &Path,
    tokenizer: Option<&TokenizerFile>,
) -> Result<(), RlhfError> {
    Checkpoint::from_model(policy).save_record_with(
        path,
        StorageDtype::F32,
        tokenizer,
        |_, _, _| {},
    )?;
    Ok(())
}

impl RejectionSampling<'_> {
    fn round_dir(&self, round: usize) -> PathBuf {
        PathBuf::from(&self.config.output_dir).join(format!("round-{round}"))
    }

    /// The prompts of `round`: all, or the next `prompts_per_round` in turn.
    pub fn round_prompts(&self, round: usize) -> Vec<&Prompt> {
        let n = self.config.prompts_per_round;
        if n == 0 || n >= self.prompts.len() {
            return self.prompts.iter().collect();
        }
        let start = (round - 1) * n % self.prompts.len();
        (0..n)
            .map(|i| &self.prompts[(start + i) % self.prompts.len()])
            .collect()
    }

    /// Runs the rounds (or continues them with `resume`) from `policy`. Responses come
    /// from `sampler` when given (distillation: `(name, model)`), else from the current
    /// policy. `stop` is asked after each prompt and each stage; when it answers true the
    /// run ends with [`RlhfError::Interrupted`], its state saved.
    pub fn run<B: AutodiffBackend, S: Scorer>(
        &self,
        policy: Llama<B>,
        sampler: Option<(&str, &Llama<B::InnerBackend>)>,
        scorer: &mut S,
        resume: bool,
        stop: &dyn Fn() -> bool,
        device: &B::Device,
    ) -> Result<RejectionOutcome<B>, RlhfError> {
        self.config.validate()?;
        if self.prompts.is_empty() {
            return Err(RlhfError::Config("no prompts to sample".into()));
        }
        if self.held_out.is_empty() {
            return Err(RlhfError::Config("no held-out prompts".into()));
        }
        let max_seq_len = policy.config.max_seq_len;
        check_fits(self.prompts.iter().chain(self.held_out), max_seq_len)?;
        if let Some((name, model)) = sampler
            && model.config.vocab_size != policy.config.vocab_size
        {
            return Err(RlhfError::Mismatch {
                what: "sampler and policy",
                detail: format!(
                    "{name} has a vocabulary of {} tokens, the policy {}",
                    model.config.vocab_size, policy.config.vocab_size
                ),
            });
        }
        let out = PathBuf::from(&self.config.output_dir);
        if !resume && self.round_dir(1).exists() {
            return Err(RlhfError::Resume {
                path: out,
                message: "it holds an earlier run: resume it or choose another directory".into(),
            });
        }
        fs::create_dir_all(&out).map_err(|e| RlhfError::io(&out, e))?;

        let initial_model = policy.valid();
        let initial_path = out.join("initial.json");
        let initial = if resume && initial_path.exists() {
            read_json(&initial_path)?
        } else {
            let h = self.held_out_eval(&initial_model, &initial_model, scorer)?;
            write_json(&initial_path, &h)?;
            h
        };

        let mut policy = policy;
        let mut rounds = Vec::new();
        let mut archive = Archive::default();
        for round in 1..=self.config.rounds {
            let dir = self.round_dir(round);
            let report_path = dir.join("report.json");
            if report_path.exists() {
                // Done earlier: its report, archive and (for the next round) policy.
                let report: RoundReport = read_json(&report_path)?;
                rounds.push(report);
                archive = Archive::read(&dir.join("archive.jsonl"))?;
                let next_done = self.round_dir(round + 1).join("report.json").exists();
                if !next_done {
                    policy = llama2_import::load_model::<B>(dir.join("policy.bpk"), device)?;
                }
            } else {
                fs::create_dir_all(&dir).map_err(|e| RlhfError::io(&dir, e))?;
                let (next, report) = self.round(
                    round,
                    &dir,
                    policy,
                    sampler,
                    scorer,
                    &initial_model,
                    &mut archive,
                    stop,
                    device,
                )?;
                policy = next;
                rounds.push(report);
            }
            // The run's own files follow the rounds done, also when a run killed after a
            // round's report resumes.
            write_jsonl(&out.join("rounds.jsonl"), &rounds)?;
            archive.write(&out.join("archive.jsonl"))?;
            plot_rounds(&initial, &rounds, &out)?;
        }
        Ok(RejectionOutcome {
            policy,
            initial,
            rounds,
            archive,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn round<B: AutodiffBackend, S: Scorer>(
        &self,
        round: usize,
        dir: &Path,
        policy: Llama<B>,
        sampler: Option<(&str, &Llama<B::InnerBackend>)>,
        scorer: &mut S,
        initial: &Llama<B::InnerBackend>,
        archive: &mut Archive,
        stop: &dyn Fn() -> bool,
        device: &B::Device,
    ) -> Result<(Llama<B>, RoundReport), RlhfError> {
        let started = Instant::now();
        let c = &self.config;
        let current = policy.valid();
        let (sampler_name, sampler_model) = match sampler {
            Some((name, model)) => (name.to_string(), model),
            None => (self.policy_id(round), &current),
        };
        let mut responder =
            LlamaResponder::new(sampler_model, self.tokenizer, c.top_p, c.max_gen_len)?;

        // 1. Temperature.
        let (temperature, sweep) = if c.sweep.is_empty() {
            (c.scheduled_temperature(round), Vec::new())
        } else {
            self.sweep(round, &mut responder, scorer)?
        };
        if stop() {
            return Err(RlhfError::Interrupted);
        }

        // 2. Samples, prompt by prompt.
        let prompts = self.round_prompts(round);
        let (mut file, mut done) = SamplesFile::open(&dir.join("samples.jsonl"))?;
        if done.len() > prompts.len() || done.iter().zip(&prompts).any(|(d, p)| d.prompt_id != p.id)
        {
            return Err(RlhfError::Resume {
                path: dir.join("samples.jsonl"),
                message: "its prompts are not this run's".into(),
            });
        }
        for (i, prompt) in prompts.iter().enumerate().skip(done.len()) {
            let seed = request_seed(c.seed, SAMPLE_STAGE + round as u64, i as u64);
            let responses =
                responder.sample(&prompt.tokens, c.samples_per_prompt, temperature, seed)?;
            let items: Vec<(&Prompt, &Response)> = responses.iter().map(|r| (*prompt, r)).collect();
            let scores = scorer.score(&items)?;
            let row = PromptSamples {
                prompt_id: prompt.id.clone(),
                temperature,
                seed,
                samples: responses
                    .into_iter()
                    .zip(scores)
                    .map(|(r, s)| ScoredResponse::new(r, s))
                    .collect(),
            };
            file.append(&row)?;
            done.push(row);
            if stop() {
                return Err(RlhfError::Interrupted);
            }
        }
        drop(file);

        // 3. Selection against the archive as it was before this round.
        let previous = if round == 1 {
            Archive::default()
        } else {
            Archive::read(&self.round_dir(round - 1).join("archive.jsonl"))?
        };
        let archived: Vec<(&Prompt, Response)> = prompts
            .iter()
            .filter_map(|p| previous.get(&p.id).map(|e| (*p, e.as_response())))
            .collect();
        let items: Vec<(&Prompt, &Response)> = archived.iter().map(|(p, r)| (*p, r)).collect();
        let rescored: std::collections::BTreeMap<String, f64> = archived
            .iter()
            .map(|(p, _)| p.id.clone())
            .zip(scorer.score(&items)?)
            .collect();
        let mut next = previous.clone();
        let mut kept = Vec::with_capacity(prompts.len());
        let mut archive_kept = 0;
        let policy_name = sampler_name.clone();
        for (prompt, row) in prompts.iter().zip(&done) {
            let mut scores = row.scores();
            let old = previous
                .get(&prompt.id)
                .and_then(|e| rescored.get(&prompt.id).map(|&s| (e.clone(), s)));
            if let Some((_, score)) = &old {
                scores.push(*score);
            }
            let best = best_of(&scores).ok_or_else(|| {
                RlhfError::Scorer(format!("a score of prompt {} is NaN", prompt.id))
            })?;
            let entry = if best < row.samples.len() {
                let s = &row.samples[best];
                ArchiveEntry {
                    prompt_id: prompt.id.clone(),
                    response: s.response.clone(),
                    tokens: s.tokens.clone(),
                    ended: s.ended,
                    round,
                    temperature,
                    policy: policy_name.clone(),
                    reward_model: scorer.id(),
                    score: s.score,
                }
            } else {
                archive_kept += 1;
                let (mut e, score) = old.expect("the archived candidate is last");
                e.score = score;
                e.reward_model = scorer.id();
                e
            };
            kept.push(entry.clone());
            next.entries.insert(prompt.id.clone(), entry);
        }
        next.write(&dir.join("archive.jsonl"))?;
        let selected = dir.join("selected.jsonl");
        let mut rows = String::new();
        for (prompt, entry) in prompts.iter().zip(&kept) {
            let mut messages: Vec<Message> = prompt.messages.clone();
            messages.push(Message::assistant(entry.response.clone()));
            let row = serde_json::json!({
                "messages": messages,
                "loss_on": "last_turn",
                "prompt_id": prompt.id,
                "score": entry.score,
            });
            rows.push_str(&row.to_string());
            rows.push('\n');
        }
        llama2::atomic::write_bytes(&selected, rows.as_bytes())?;
        *archive = next;
        if stop() {
            return Err(RlhfError::Interrupted);
        }

        // 4. Fine-tuning on the kept responses.
        let sft_dir = dir.join("sft");
        let mut train = c.sft.clone();
        train.output_dir = sft_dir.display().to_string();
        train.seed = c.sft.seed.wrapping_add(round as u64);
        let sft = SftConfig::new(train, vec![selected.display().to_string()])
            .with_epochs(Some(c.sft_epochs));
        let resume_sft = checkpoint::latest(&sft_dir).is_some();
        let (policy, steps) = finetune(policy, &sft, self.tokenizer, resume_sft, device)?;
        let trained = policy.valid();
        save_policy(&trained, &dir.join("policy.bpk"), self.tokenizer_file)?;

        // 5. Held-out evaluation.
        let held_out = self.held_out_eval(&trained, initial, scorer)?;
        let scores: Vec<Vec<f64>> = done.iter().map(PromptSamples::scores).collect();
        let per = |f: fn(&[f64]) -> f64| mean(&scores.iter().map(|s| f(s)).collect::<Vec<_>>());
        let report = RoundReport {
            round,
            temperature,
            sweep,
            prompts: prompts.len(),
            sample_mean: per(mean),
            sample_median: per(median),
            sample_max: per(|s| s.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            best_of_n: best_of_n_curve(&scores),
            kept_mean: mean(&kept.iter().map(|e| e.score).collect::<Vec<_>>()),
            archive_kept,
            sft_loss: (
                steps.first().map_or(f64::NAN, |m| m.loss),
                steps.last().map_or(f64::NAN, |m| m.loss),
            ),
            sft_steps: steps.len(),
            held_out,
            seconds: started.elapsed().as_secs_f64(),
        };
        write_json(&dir.join("report.json"), &report)?;
        Ok((policy, report))
    }

    fn policy_id(&self, round: usize) -> String {
        if round == 1 {
            self.policy_name.clone()
        } else {
            format!("round-{}", round - 1)
        }
    }

    /// Expected max-of-K reward on the sweep prompts at each temperature (the same seeds
    /// at every temperature), and the best temperature (the first on ties).
    fn sweep<R: ResponseSampler, S: Scorer>(
        &self,
        round: usize,
        responder: &mut R,
        scorer: &mut S,
    ) -> Result<(f64, Vec<(f64, f64)>), RlhfError> {
        let c = &self.config;
        let prompts = &self.held_out[..c.sweep_prompts.clamp(1, self.held_out.len())];
        let mut results = Vec::with_capacity(c.sweep.len());
        for &t in &c.sweep {
            let mut maxes = Vec::with_capacity(prompts.len());
            for (i, prompt) in prompts.iter().enumerate() {
                let seed = request_seed(c.seed, SWEEP_STAGE + round as u64, i as u64);
                let responses = responder.sample(&prompt.tokens, c.samples_per_prompt, t, seed)?;
                let items: Vec<(&Prompt, &Response)> =
                    responses.iter().map(|r| (prompt, r)).collect();
                let scores = scorer.score(&items)?;
                maxes.push(scores.into_iter().fold(f64::NEG_INFINITY, f64::max));
            }
            results.push((t, mean(&maxes)));
        }
        let values: Vec<f64> = results.iter().map(|r| r.1).collect();
        let best =
            best_of(&values).ok_or_else(|| RlhfError::Scorer("a sweep reward is NaN".into()))?;
        Ok((results[best].0, results))
    }

    /// The held-out evaluation of `policy` against `initial` (the same seeds every round).
    pub fn held_out_eval<BI: burn::tensor::backend::Backend, S: Scorer>(
        &self,
        policy: &Llama<BI>,
        initial: &Llama<BI>,
        scorer: &mut S,
    ) -> Result<HeldOut, RlhfError> {
        let c = &self.config;
        let prompts = &self.held_out[..c.eval_prompts.clamp(1, self.held_out.len())];
        evaluate_policy(
            policy,
            initial,
            self.tokenizer,
            prompts,
            scorer,
            c.max_gen_len,
            request_seed(c.seed, EVAL_STAGE, 0),
        )
    }
}
