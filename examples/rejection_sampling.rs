//! Rejection-sampling fine-tuning (paper §3.2.3): `K` responses per prompt from the policy
//! (or a larger sampler), the best by the reward model(s) against the archive of earlier
//! rounds' best, fine-tuning on the kept responses; round after round.
//!
//! ```text
//! cargo run --release --example rejection_sampling -- \
//!     --policy runs/finetune/model.bpk --reward runs/reward-helpfulness/reward.bpk \
//!     --safety runs/reward-safety/reward.bpk --rounds 3 --k 4 --temperature 1.0,1.1,1.2
//! ```
//!
//! Prompts default to `examples/data/rlhf_prompts.jsonl` (held out:
//! `examples/data/rlhf_heldout.jsonl`, made by `scripts/gen_rlhf_prompts.py`). The run
//! directory (default `runs/rejection-sampling`) holds each round's samples, archive,
//! fine-tuning run and policy, `rounds.jsonl`, `archive.jsonl` and the plots; Ctrl-C stops
//! after the current prompt and `--resume` continues.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::Parser;
use common::train_args::{TrainArgs, positive, positive_f64};
use llama2_burn::backend::{self, SelectedAutodiff};
use llama2_burn::model::train::{TrainConfig, WarmupCosineConfig};
use llama2_burn::rlhf::rejection::{RejectionSampling, RejectionSamplingConfig};
use llama2_burn::rlhf::rollout::RewardScorer;

/// Rejection-sampling fine-tuning against helpfulness (and safety) reward models.
#[derive(Parser, Debug)]
struct Args {
    /// The policy to improve: a record, Meta or Hugging Face folder.
    #[arg(long)]
    policy: PathBuf,
    /// Sample with this model instead of the policy (distillation: the paper samples
    /// with 70B and fine-tunes smaller models on the best samples).
    #[arg(long)]
    sampler: Option<PathBuf>,
    /// Helpfulness reward model (record or LlamaForSequenceClassification folder).
    #[arg(long)]
    reward: PathBuf,
    /// Safety reward model; with it, scores are the paper's gated combination.
    #[arg(long)]
    safety: Option<PathBuf>,
    /// Tokenizer (default: the policy's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Prompt JSONL (`prompt`, optional `id`, `is_safety`, `category`).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Held-out prompt JSONL (evaluation and temperature sweeps).
    #[arg(long)]
    held_out: Option<PathBuf>,
    /// Rounds.
    #[arg(long, default_value_t = 3, value_parser = positive)]
    rounds: usize,
    /// Responses sampled per prompt.
    #[arg(long, default_value_t = 4, value_parser = positive)]
    k: usize,
    /// Prompts per round, in turn from the prompt file (default: all).
    #[arg(long, value_parser = positive)]
    prompts_per_round: Option<usize>,
    /// Temperature of each round, comma-separated; the last one repeats.
    #[arg(long, value_delimiter = ',', default_value = "1.0")]
    temperature: Vec<f64>,
    /// Measure the expected max-of-K reward on held-out prompts at these temperatures
    /// each round and sample at the best (overrides --temperature).
    #[arg(long, value_delimiter = ',')]
    temperature_sweep: Vec<f64>,
    /// Held-out prompts of a sweep.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    sweep_prompts: usize,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.9, value_parser = common::parse_probability_f64)]
    top_p: f64,
    /// Most new tokens per response.
    #[arg(long, default_value_t = 128, value_parser = positive)]
    max_gen_len: usize,
    /// Passes over the kept responses per round.
    #[arg(long, default_value_t = 2.0, value_parser = positive_f64)]
    sft_epochs: f64,
    /// Held-out prompts evaluated after each round.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    eval_prompts: usize,
    /// Fine-tuning settings of each round (`--seed` also seeds the sampling, `--out` is
    /// the run directory).
    #[command(flatten)]
    train: TrainArgs,
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
    let sampler = args
        .sampler
        .as_deref()
        .map(common::load_model)
        .transpose()?;
    let helpfulness = common::load_reward(&args.reward)?;
    let safety = args
        .safety
        .as_deref()
        .map(common::load_reward)
        .transpose()?;
    let max = policy.config.max_seq_len;
    let (prompts, held_out) =
        common::rlhf_prompt_sets(args.prompts, args.held_out, &tokenizer, max)?;

    let mut sft = TrainConfig::new()
        .with_seq_len(max.min(512))
        .with_micro_batch_size(8)
        .with_log_every(10)
        .with_schedule(
            WarmupCosineConfig::new()
                .with_peak_lr(1e-5)
                .with_warmup_steps(0)
                .with_total_steps(0),
        )
        .with_output_dir(
            PathBuf::from("runs/rejection-sampling")
                .display()
                .to_string(),
        );
    args.train.apply(&mut sft);
    let config = RejectionSamplingConfig::new(sft.clone())
        .with_rounds(args.rounds)
        .with_samples_per_prompt(args.k)
        .with_prompts_per_round(args.prompts_per_round.unwrap_or(0))
        .with_temperatures(args.temperature)
        .with_sweep(args.temperature_sweep)
        .with_sweep_prompts(args.sweep_prompts)
        .with_top_p(args.top_p)
        .with_max_gen_len(args.max_gen_len)
        .with_seed(sft.seed)
        .with_sft_epochs(args.sft_epochs)
        .with_eval_prompts(args.eval_prompts)
        .with_output_dir(sft.output_dir.clone());
    let tokenizer_file = common::tokenizer_file(&args.policy);
    let run = RejectionSampling {
        config,
        tokenizer: &tokenizer,
        tokenizer_file: tokenizer_file.as_ref(),
        prompts: &prompts,
        held_out: &held_out,
        policy_name: args.policy.display().to_string(),
    };
    let name = common::scorer_name(&args.reward, args.safety.as_deref());
    let mut scorer = RewardScorer::new(
        &helpfulness,
        safety.as_ref(),
        policy.config.vocab_size,
        tokenizer.eos_id(),
        name,
    )?;
    let sampler = args
        .sampler
        .as_ref()
        .zip(sampler.as_ref())
        .map(|(path, model)| (path.to_str().unwrap_or("sampler"), model));
    let stop = common::stop_flag();
    let out = run.run(
        policy,
        sampler,
        &mut scorer,
        args.train.resume,
        &|| stop.load(Ordering::SeqCst),
        &device,
    )?;

    println!(
        "{:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "round", "temp", "mean", "median", "max of K", "kept", "held-out", "KL"
    );
    println!(
        "{:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9.3} {:>8.3}",
        0, "", "", "", "", "", out.initial.reward, 0.0
    );
    for r in &out.rounds {
        println!(
            "{:>5} {:>6.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.3}",
            r.round,
            r.temperature,
            r.sample_mean,
            r.sample_median,
            r.sample_max,
            r.kept_mean,
            r.held_out.reward,
            r.held_out.kl
        );
    }
    let dir = PathBuf::from(&run.config.output_dir);
    println!(
        "policy: {}\narchive: {} ({} prompts)",
        dir.join(format!("round-{}/policy.bpk", out.rounds.len()))
            .display(),
        dir.join("archive.jsonl").display(),
        out.archive.len()
    );
    Ok(())
}
