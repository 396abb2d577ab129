//! PPO (paper §3.2.3) on top of a chat or rejection-sampling model: rollouts scored by the
//! reward model(s) (`whiten(logit(R_c))`), a KL penalty to the initial policy, GAE, the
//! clipped losses, AdamW with the paper's settings.
//!
//! ```text
//! cargo run --release --example ppo -- \
//!     --policy runs/rejection-sampling/round-3/policy.bpk \
//!     --reward runs/reward-helpfulness/reward.bpk --safety runs/reward-safety/reward.bpk
//! ```
//!
//! The value model starts from the helpfulness reward model (`--value` to choose another);
//! `--lora-rank` trains adapters on the policy, with the base as the reference.
//! The run directory (default `runs/ppo`) holds the checkpoints, `iterations.jsonl`,
//! `ppo.svg` and the final `policy.bpk`; Ctrl-C stops after the current iteration and
//! `--resume` continues.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use common::train_args::{positive, positive_f64};
use llama2_burn::backend::{self, SelectedAutodiff};
use llama2_burn::model::lora::LoraConfig;
use llama2_burn::reward::RewardModel;
use llama2_burn::rlhf::ppo::{
    AdvantageConfig, KlEstimator, Ppo, PpoConfig, PpoLossConfig, paper_ppo_train,
};
use llama2_burn::rlhf::rollout::RewardScorer;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kl {
    K1,
    K2,
    K3,
}

/// Proximal policy optimisation against helpfulness (and safety) reward models.
#[derive(Parser, Debug)]
struct Args {
    /// The policy: a record, Meta or Hugging Face folder.
    #[arg(long)]
    policy: PathBuf,
    /// Helpfulness reward model (record or LlamaForSequenceClassification folder).
    #[arg(long)]
    reward: PathBuf,
    /// Safety reward model; with it, scores are the paper's gated combination.
    #[arg(long)]
    safety: Option<PathBuf>,
    /// Initialises the value model (default: the helpfulness reward model).
    #[arg(long)]
    value: Option<PathBuf>,
    /// Tokenizer (default: the policy's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Rollout prompts (default: examples/data/rlhf_prompts.jsonl).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Held-out prompts (default: examples/data/rlhf_heldout.jsonl).
    #[arg(long)]
    held_out: Option<PathBuf>,
    /// Rollout-and-update iterations.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    iterations: usize,
    /// Responses per rollout (the paper: 512).
    #[arg(long, default_value_t = 512, value_parser = positive)]
    rollout_size: usize,
    /// Responses per gradient step (the paper: 64).
    #[arg(long, default_value_t = 64, value_parser = positive)]
    minibatch: usize,
    /// Responses per forward/backward pass (gradient accumulation up to the minibatch).
    #[arg(long, default_value_t = 8, value_parser = positive)]
    micro_batch: usize,
    /// Passes over each rollout.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    ppo_epochs: usize,
    /// KL penalty β (the paper: 0.01 for 7B/13B, 0.005 for 34B/70B).
    #[arg(long, default_value_t = 0.01)]
    kl_coef: f64,
    /// KL estimator of the penalty.
    #[arg(long, value_enum, default_value_t = Kl::K1)]
    kl_estimator: Kl,
    /// Discount γ.
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    /// GAE λ.
    #[arg(long, default_value_t = 0.95)]
    lam: f64,
    /// Ratio clipping ε.
    #[arg(long, default_value_t = 0.2)]
    cliprange: f64,
    /// Value clipping.
    #[arg(long, default_value_t = 0.2)]
    cliprange_value: f64,
    /// Weight of the value loss.
    #[arg(long, default_value_t = 0.1)]
    vf_coef: f64,
    /// Subtracted from the score of a response without EOS.
    #[arg(long)]
    missing_eos_penalty: Option<f64>,
    /// Rollout temperature.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    temperature: f64,
    /// Most new tokens per response.
    #[arg(long, default_value_t = 128, value_parser = positive)]
    max_gen_len: usize,
    /// Learning rate (constant; the paper: 1e-6).
    #[arg(long, default_value_t = 1e-6, value_parser = positive_f64)]
    lr: f64,
    /// Held-out evaluation every N iterations.
    #[arg(long, default_value_t = 1)]
    eval_every: usize,
    /// Held-out prompts evaluated.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    eval_prompts: usize,
    /// Stop after N evaluations without a better held-out reward.
    #[arg(long, default_value_t = 0)]
    early_stopping: usize,
    /// Train LoRA adapters of this rank on the policy (attention projections, no
    /// dropout) instead of every weight; the reference is then the base itself.
    #[arg(long, value_parser = positive)]
    lora_rank: Option<usize>,
    /// LoRA scaling α (default: twice the rank).
    #[arg(long, requires = "lora_rank")]
    lora_alpha: Option<f64>,
    /// Seed of the rollouts.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run directory.
    #[arg(long, default_value = "runs/ppo")]
    out: PathBuf,
    /// Continue the run in `--out`.
    #[arg(long)]
    resume: bool,
}

fn main() {
    common::run(|| run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    common::init_logging();
    llama2_burn::model::train::keep_freed_memory();
    let tokenizer = common::resolve_tokenizer(args.tokenizer.as_deref(), &args.policy)?;
    let device = backend::device();
    let policy = llama2_burn::import::load_model::<SelectedAutodiff>(&args.policy, &device)
        .with_context(|| format!("cannot load the policy {}", args.policy.display()))?;
    let helpfulness = common::load_reward(&args.reward)?;
    let safety = args
        .safety
        .as_deref()
        .map(common::load_reward)
        .transpose()?;
    let value_path = args.value.as_ref().unwrap_or(&args.reward);
    let (value, _) = RewardModel::<SelectedAutodiff>::load(value_path, &device)
        .with_context(|| format!("cannot load the value model {}", value_path.display()))?;
    let (prompts, held_out) = common::rlhf_prompt_sets(
        args.prompts,
        args.held_out,
        &tokenizer,
        policy.config.max_seq_len,
    )?;

    let mut train = paper_ppo_train()
        .with_micro_batch_size(args.micro_batch)
        .with_dashboard(false)
        .with_log_every(0);
    train.schedule = train.schedule.with_peak_lr(args.lr);
    let kl_estimator = match args.kl_estimator {
        Kl::K1 => KlEstimator::K1,
        Kl::K2 => KlEstimator::K2,
        Kl::K3 => KlEstimator::K3,
    };
    let config = PpoConfig::new()
        .with_iterations(args.iterations)
        .with_rollout_size(args.rollout_size)
        .with_minibatch_size(args.minibatch)
        .with_ppo_epochs(args.ppo_epochs)
        .with_temperature(args.temperature)
        .with_max_gen_len(args.max_gen_len)
        .with_advantage(
            AdvantageConfig::new()
                .with_kl_coef(args.kl_coef)
                .with_kl_estimator(kl_estimator)
                .with_gamma(args.gamma)
                .with_lam(args.lam)
                .with_missing_eos_penalty(args.missing_eos_penalty),
        )
        .with_losses(
            PpoLossConfig::new()
                .with_cliprange(args.cliprange)
                .with_cliprange_value(args.cliprange_value)
                .with_vf_coef(args.vf_coef),
        )
        .with_train(train)
        .with_eval_every(args.eval_every)
        .with_eval_prompts(args.eval_prompts)
        .with_early_stopping_patience(args.early_stopping)
        .with_lora(args.lora_rank.map(|rank| {
            LoraConfig::new()
                .with_rank(rank)
                .with_alpha(args.lora_alpha.unwrap_or(2.0 * rank as f64))
                .with_dropout(0.0)
        }))
        .with_seed(args.seed)
        .with_output_dir(args.out.display().to_string());
    let tokenizer_file = common::tokenizer_file(&args.policy);
    let ppo = Ppo {
        config,
        tokenizer: &tokenizer,
        tokenizer_file: tokenizer_file.as_ref(),
        prompts: &prompts,
        held_out: &held_out,
    };
    let name = common::scorer_name(&args.reward, args.safety.as_deref());
    let mut scorer = RewardScorer::new(
        &helpfulness,
        safety.as_ref(),
        policy.config.vocab_size,
        tokenizer.eos_id(),
        name,
    )?;
    let stop = common::stop_flag();
    let out = ppo.run(
        policy,
        value,
        &mut scorer,
        args.resume,
        &|| stop.load(Ordering::SeqCst),
        &device,
    )?;
    println!(
        "{:>4} {:>8} {:>7} {:>8} {:>6} {:>8} {:>8} {:>9}",
        "iter", "reward", "KL", "entropy", "clip", "vf loss", "length", "held-out"
    );
    println!(
        "{:>4} {:>8} {:>7} {:>8} {:>6} {:>8} {:>8} {:>9.3}",
        0, "", "", "", "", "", "", out.initial.reward
    );
    for r in &out.iterations {
        println!(
            "{:>4} {:>8.3} {:>7.3} {:>8.3} {:>6.3} {:>8.4} {:>8.1} {:>9}",
            r.iteration,
            r.reward,
            r.kl,
            r.entropy,
            r.clip_fraction,
            r.value_loss,
            r.response_len,
            r.held_out
                .map_or(String::new(), |h| format!("{:.3}", h.reward))
        );
    }
    println!("policy: {}", args.out.join("policy.bpk").display());
    Ok(())
}
