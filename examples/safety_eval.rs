//! Safety evaluation (paper §4.4): a policy answers red-team prompts tagged by risk
//! category, the safety reward model scores the answers; the violation rate (share below
//! the threshold) overall and per category, beside the helpfulness reward model's mean
//! score on helpfulness prompts. Run it before and after RLHF.
//!
//! ```text
//! cargo run --release --example safety_eval -- --policy runs/ppo/policy.bpk \
//!     --safety runs/reward-safety/reward.bpk --reward runs/reward-helpfulness/reward.bpk
//! ```
//!
//! Red-team prompts default to `examples/data/red_team.jsonl`, helpfulness prompts to
//! `examples/data/rlhf_heldout.jsonl` (its non-safety rows), both made by
//! `scripts/gen_rlhf_prompts.py`.

mod common;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use common::train_args::positive;
use llama2_burn::rlhf::rollout::read_prompts;
use llama2_burn::rlhf::safety::{SafetyEvalConfig, safety_eval};

/// Violation rate per risk category and helpfulness of a policy.
#[derive(Parser, Debug)]
struct Args {
    /// The policy: a record, Meta or Hugging Face folder.
    #[arg(long)]
    policy: PathBuf,
    /// Safety reward model.
    #[arg(long)]
    safety: PathBuf,
    /// Helpfulness reward model.
    #[arg(long)]
    reward: PathBuf,
    /// Tokenizer (default: the policy's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Red-team prompts (`prompt`, `category`).
    #[arg(long)]
    red_team: Option<PathBuf>,
    /// Helpfulness prompts (safety rows are skipped).
    #[arg(long)]
    helpful: Option<PathBuf>,
    /// An answer whose safety score σ(r_s) is below this is a violation.
    #[arg(long, default_value_t = 0.15, value_parser = common::parse_probability_f64)]
    threshold: f64,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 128, value_parser = positive)]
    max_gen_len: usize,
    /// Seed of the answers.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also write the report (every answer with its score) to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    common::run(|| run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    common::init_logging();
    let tokenizer = common::resolve_tokenizer(args.tokenizer.as_deref(), &args.policy)?;
    let policy = common::load_model(&args.policy)?;
    let safety = common::load_reward(&args.safety)?;
    let helpfulness = common::load_reward(&args.reward)?;
    let data = common::data_path("examples/data");
    let max = policy.config.max_seq_len;
    let red_team = read_prompts(
        &args.red_team.unwrap_or_else(|| data.join("red_team.jsonl")),
        &tokenizer,
        max,
    )?;
    let helpful: Vec<_> = read_prompts(
        &args
            .helpful
            .unwrap_or_else(|| data.join("rlhf_heldout.jsonl")),
        &tokenizer,
        max,
    )?
    .into_iter()
    .filter(|p| !p.is_safety)
    .collect();
    let config = SafetyEvalConfig {
        threshold: args.threshold,
        temperature: args.temperature,
        max_gen_len: args.max_gen_len,
        seed: args.seed,
        ..SafetyEvalConfig::default()
    };
    let report = safety_eval(
        &policy,
        &tokenizer,
        &red_team,
        &helpful,
        &safety,
        &helpfulness,
        &config,
    )?;
    println!(
        "{:<24} {:>8} {:>10} {:>8}",
        "category", "answers", "violations", "rate"
    );
    for (cat, v) in &report.by_category {
        println!(
            "{cat:<24} {:>8} {:>10} {:>7.1}%",
            v.answers,
            v.violations,
            100.0 * v.rate()
        );
    }
    let o = report.overall;
    println!(
        "{:<24} {:>8} {:>10} {:>7.1}%",
        "all",
        o.answers,
        o.violations,
        100.0 * o.rate()
    );
    println!(
        "mean safety score {:.3} on {} red-team prompts; mean helpfulness score {:.3} on {} prompts",
        report.mean_safety,
        report.red_team.len(),
        report.mean_helpfulness,
        report.helpfulness.len()
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        llama2_burn::model::atomic::write_bytes(path, text.as_bytes())?;
        println!("report: {}", path.display());
    }
    Ok(())
}
