//! Rejection sampling and PPO (paper §3.2.3) against the combined reward of the two
//! reward models (eq. 3): rounds of best-of-K fine-tuning from the SFT model, then PPO
//! on top of the last round's model with the helpfulness model as the value model.

use llama2::train::{TrainConfig, WarmupCosineConfig};
use llama2_reward::RewardModel;

use burn::tensor::backend::AutodiffBackend;

use crate::RlhfError;
use crate::pipeline::Stage;
use crate::pipeline::language::loop_config;
use crate::pipeline::report::{KeyMetric, StageReport};
use crate::pipeline::run::StageContext;
use crate::ppo::{AdvantageConfig, Ppo, PpoConfig, paper_ppo_train};
use crate::rejection::{RejectionSampling, RejectionSamplingConfig, save_policy};
use crate::rollout::{Prompt, RewardScorer, read_prompts};

/// The reward models, on the inner backend, for scoring.
struct Rewards<B: burn::tensor::backend::Backend> {
    helpfulness: RewardModel<B>,
    safety: RewardModel<B>,
}

impl<B: burn::tensor::backend::Backend> Rewards<B> {
    /// The combined reward of eq. 3 for a policy of `vocab_size` tokens.
    fn scorer(
        &self,
        vocab_size: usize,
        ctx: &StageContext<'_>,
    ) -> Result<RewardScorer<'_, B>, RlhfError> {
        RewardScorer::new(
            &self.helpfulness,
            Some(&self.safety),
            vocab_size,
            ctx.tokenizer.eos_id(),
            "helpfulness + safety reward models",
        )
    }
}

fn rewards<B: AutodiffBackend>(
    ctx: &StageContext<'_>,
    device: &B::Device,
) -> Result<Rewards<B::InnerBackend>, RlhfError> {
    let load = |stage: Stage| {
        RewardModel::<B::InnerBackend>::load(ctx.dir(stage).join("reward.bpk"), device)
            .map(|(m, _)| m)
    };
    Ok(Rewards {
        helpfulness: load(Stage::RewardHelpfulness)?,
        safety: load(Stage::RewardSafety)?,
    })
}

fn prompt_sets(
    ctx: &StageContext<'_>,
    max_seq_len: usize,
) -> Result<(Vec<Prompt>, Vec<Prompt>), RlhfError> {
    Ok((
        read_prompts(&ctx.data("prompts.jsonl"), ctx.tokenizer, max_seq_len)?,
        read_prompts(&ctx.data("heldout.jsonl"), ctx.tokenizer, max_seq_len)?,
    ))
}

/// The rejection-sampling stage; writes `rejection-sampling/policy.bpk`.
pub(crate) fn rejection_stage<B: AutodiffBackend>(
    ctx: &StageContext<'_>,
    device: &B::Device,
) -> Result<StageReport, RlhfError> {
    let c = ctx.config;
    let dir = ctx.dir(Stage::RejectionSampling);
    B::seed(device, c.seed);
    let policy = ctx.load_policy::<B>(&ctx.dir(Stage::Sft).join("model.bpk"), device)?;
    let (prompts, held_out) = prompt_sets(ctx, policy.config.max_seq_len)?;
    let rm = rewards::<B>(ctx, device)?;
    let mut scorer = rm.scorer(policy.config.vocab_size, ctx)?;
    let sft: TrainConfig = loop_config(ctx, Stage::RejectionSampling, 0).with_schedule(
        WarmupCosineConfig::new()
            .with_peak_lr(c.rs_lr)
            .with_warmup_steps(0)
            .with_total_steps(0),
    );
    let eval_prompts = ctx.eval_slice(&held_out).len();
    let config = RejectionSamplingConfig::new(sft)
        .with_rounds(c.rs_rounds)
        .with_samples_per_prompt(c.rs_k)
        .with_prompts_per_round(c.rs_prompts_per_round)
        .with_temperatures(c.rs_temperatures.clone())
        .with_top_p(0.9)
        .with_max_gen_len(c.max_gen_len)
        .with_seed(c.seed)
        .with_sft_epochs(c.rs_sft_epochs)
        .with_eval_prompts(eval_prompts)
        .with_output_dir(dir.display().to_string());
    let run = RejectionSampling {
        config,
        tokenizer: ctx.tokenizer,
        tokenizer_file: Some(ctx.tokenizer_file),
        prompts: &prompts,
        held_out: &held_out,
        policy_name: "sft/model.bpk".into(),
    };
    let resume = dir.exists();
    let out = run
        .run(policy, None, &mut scorer, resume, ctx.stop, device)
        .map_err(|e| ctx.interrupted(e, Stage::RejectionSampling))?;
    let policy = burn::module::AutodiffModule::valid(&out.policy);
    save_policy(&policy, &dir.join("policy.bpk"), Some(ctx.tokenizer_file))?;
    let last = out.rounds.last().map_or(out.initial, |r| r.held_out);
    let mut report = StageReport::new(
        Stage::RejectionSampling,
        KeyMetric {
            name: "held-out reward (combined, sampled)".into(),
            before: out.initial.reward,
            after: last.reward,
        },
    );
    for r in &out.rounds {
        let k = |name: &str| format!("round_{}.{name}", r.round);
        report.put(k("temperature"), r.temperature);
        report.put(k("sample_mean"), r.sample_mean);
        report.put(k("max_of_k"), r.sample_max);
        report.put(k("kept_mean"), r.kept_mean);
        report.put(k("held_out_reward"), r.held_out.reward);
        report.put(k("kl_to_sft"), r.held_out.kl);
        report.put(k("archive_kept"), r.archive_kept as f64);
    }
    report.outputs = vec![
        "rejection-sampling/policy.bpk".into(),
        "rejection-sampling/archive.jsonl".into(),
        "rejection-sampling/rewards.svg".into(),
        "rejection-sampling/best_of_n.svg".into(),
    ];
    Ok(report)
}

/// The PPO stage; writes `ppo/policy.bpk`.
pub(crate) fn ppo_stage<B: AutodiffBackend>(
    ctx: &StageContext<'_>,
    device: &B::Device,
) -> Result<StageReport, RlhfError> {
    let c = ctx.config;
    let dir = ctx.dir(Stage::Ppo);
    B::seed(device, c.seed);
    let start = ctx.dir(Stage::RejectionSampling).join("policy.bpk");
    let policy = ctx.load_policy::<B>(&start, device)?;
    let (prompts, held_out) = prompt_sets(ctx, policy.config.max_seq_len)?;
    let rm = rewards::<B>(ctx, device)?;
    let (value, _) =
        RewardModel::<B>::load(ctx.dir(Stage::RewardHelpfulness).join("reward.bpk"), device)?;
    let mut scorer = rm.scorer(policy.config.vocab_size, ctx)?;
    let mut train = paper_ppo_train()
        .with_micro_batch_size(c.ppo_minibatch.min(16))
        .with_dashboard(false)
        .with_log_every(0)
        .with_seed(c.seed);
    train.schedule = train.schedule.with_peak_lr(c.ppo_lr);
    let config = PpoConfig::new()
        .with_iterations(c.ppo_iterations)
        .with_rollout_size(c.ppo_rollout)
        .with_minibatch_size(c.ppo_minibatch)
        .with_max_gen_len(c.max_gen_len)
        .with_advantage(AdvantageConfig::new().with_kl_coef(c.ppo_kl_coef))
        .with_train(train)
        .with_eval_every(1)
        .with_eval_prompts(ctx.eval_slice(&held_out).len())
        .with_seed(c.seed)
        .with_output_dir(dir.display().to_string());
    let ppo = Ppo {
        config,
        tokenizer: ctx.tokenizer,
        tokenizer_file: Some(ctx.tokenizer_file),
        prompts: &prompts,
        held_out: &held_out,
    };
    let resume = dir.exists();
    let out = ppo
        .run(policy, value, &mut scorer, resume, ctx.stop, device)
        .map_err(|e| ctx.interrupted(e, Stage::Ppo))?;
    let last = out
        .iterations
        .iter()
        .rev()
        .find_map(|r| r.held_out)
        .unwrap_or(out.initial);
    let mut report = StageReport::new(
        Stage::Ppo,
        KeyMetric {
            name: "held-out reward (combined, sampled)".into(),
            before: out.initial.reward,
            after: last.reward,
        },
    );
    for r in &out.iterations {
        let k = |name: &str| format!("iteration_{}.{name}", r.iteration);
        report.put(k("reward"), r.reward);
        report.put(k("kl"), r.kl);
        report.put(k("entropy"), r.entropy);
        report.put(k("clip_fraction"), r.clip_fraction);
        if let Some(h) = r.held_out {
            report.put(k("held_out_reward"), h.reward);
            report.put(k("held_out_kl"), h.kl);
        }
    }
    report.outputs = vec![
        "ppo/policy.bpk".into(),
        "ppo/iterations.jsonl".into(),
        "ppo/ppo.svg".into(),
    ];
    Ok(report)
}
