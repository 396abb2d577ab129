//! Reward models (paper §3.2.2): train a helpfulness or safety reward model
//! on preference pairs, score sequences with it, and evaluate its accuracy per
//! preference rating (the columns of the paper's Table 8).
//!
//! ```text
//! # a tiny reward model on the repository's synthetic preferences, on CPU:
//! cargo run --release --example reward -- train
//! # from a chat model, the paper's settings (1 epoch, lr 1e-5, 512 pairs per step):
//! cargo run --release --example reward --no-default-features --features cuda -- train \
//!     --model Llama-2-7b-chat-hf --data helpful.jsonl --kind helpfulness --margin small --paper
//! cargo run --release --example reward -- score --model runs/reward/reward.bpk --ids 1,450,7483 --json
//! cargo run --release --example reward -- eval --model runs/reward/reward.bpk --data heldout.jsonl
//! cargo run --release --example reward -- export --model runs/reward/reward.bpk --out reward-hf
//! ```
//!
//! `--model` for `train` takes a chat/SFT model (record, Meta or HF folder):
//! its LM head is dropped and a small seeded score head added. `score` and
//! `eval` take a reward record or a transformers `LlamaForSequenceClassification`
//! folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use burn::config::Config;
use burn::tensor::backend::Backend;
use clap::{Parser, Subcommand, ValueEnum};
use llama2_burn::backend::{self, Selected, SelectedAutodiff};
use llama2_burn::import::{RewardMeta, StorageDtype, load_model, model_tokenizer};
use llama2_burn::model::Tokenizer;
use llama2_burn::reward::{
    MarginKind, PreferenceDataset, RankingLossConfig, RewardModel, RewardModelConfig,
    RewardTrainConfig, evaluate, train_reward,
};
use serde_json::json;

#[path = "common/mod.rs"]
mod common;
use common::train_args::TrainArgs;

#[derive(Parser, Debug)]
#[command(about = "Train, score with and evaluate Llama 2 reward models (paper §3.2.2)")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a reward model on preference pairs.
    Train(Box<TrainCmd>),
    /// Print the rewards of token sequences or of a preference file's responses.
    Score(ScoreCmd),
    /// Accuracy overall and per rating on preference pairs.
    Eval(EvalCmd),
    /// Write a reward record as a transformers `LlamaForSequenceClassification` folder.
    Export(ExportCmd),
}

#[derive(clap::Args, Debug)]
struct ExportCmd {
    /// Reward record (or LlamaForSequenceClassification folder).
    #[arg(long)]
    model: PathBuf,
    /// The folder to write (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Helpfulness,
    Safety,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Margin {
    /// Table 27's small margins (1, 2/3, 1/3, 0).
    Small,
    /// Table 27's large margins (3, 2, 1, 0).
    Large,
    /// The rows' numeric `margin` column.
    Column,
    /// No margin (the binary ranking loss).
    None,
}

impl From<Margin> for MarginKind {
    fn from(m: Margin) -> Self {
        match m {
            Margin::Small => MarginKind::Small,
            Margin::Large => MarginKind::Large,
            Margin::Column => MarginKind::Column,
            Margin::None => MarginKind::None,
        }
    }
}

#[derive(clap::Args, Debug)]
struct TrainCmd {
    /// Chat/SFT model to initialise from (record, Meta or HF folder, or a Hub repo id
    /// at main); default: a tiny random model for the repository's small tokenizer.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Tokenizer (a file or a Hub repo id); default: the model's own, else the
    /// repository's small tokenizer.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Preference JSONL files; default: examples/data/preferences_train.jsonl.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Held-out preference files; default: examples/data/preferences_heldout.jsonl
    /// with the default data, otherwise `--valid-fraction` of the pairs.
    #[arg(long)]
    valid: Vec<PathBuf>,
    /// Which of the paper's two reward models this is; it names the run directory
    /// (`runs/reward-<kind>`). Both train the same objective on the pairs given: train
    /// the safety model on safety preference data.
    #[arg(long, value_enum, default_value_t = Kind::Helpfulness)]
    kind: Kind,
    /// The margin of the ranking loss.
    #[arg(long, value_enum, default_value_t = Margin::Small)]
    margin: Margin,
    /// TRL's center_rewards_coefficient.
    #[arg(long)]
    center_rewards: Option<f64>,
    /// The paper's settings: 1 epoch, lr 1e-5, 512 pairs per step, 3 % warmup.
    #[arg(long)]
    paper: bool,
    /// Pairs per optimizer step.
    #[arg(long, value_parser = common::train_args::positive)]
    pairs_per_step: Option<usize>,
    /// Passes over the data.
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<f64>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(clap::Args, Debug)]
struct ScoreCmd {
    /// Reward record or LlamaForSequenceClassification folder.
    #[arg(long)]
    model: PathBuf,
    /// Tokenizer, for `--data` (default: the model's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A token sequence, e.g. `1,450,7483`; repeatable.
    #[arg(long, value_parser = common::parse_ids)]
    ids: Vec<Vec<u32>>,
    /// Score the chosen and rejected responses of a preference file.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print `{"rewards": [...]}`.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct EvalCmd {
    /// Reward record or LlamaForSequenceClassification folder.
    #[arg(long)]
    model: PathBuf,
    /// Tokenizer (default: the model's own, else the repository's small tokenizer).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Preference JSONL files; default: examples/data/preferences_heldout.jsonl.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Most tokens of one side of a pair.
    #[arg(long, default_value_t = 512, value_parser = common::train_args::positive)]
    max_len: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() {
    common::run(|| match Args::parse().command {
        Command::Train(cmd) => {
            llama2_burn::model::train::keep_freed_memory();
            train(*cmd)
        }
        Command::Score(cmd) => score(cmd),
        Command::Eval(cmd) => eval(cmd),
        Command::Export(cmd) => export(cmd),
    });
}

fn export(cmd: ExportCmd) -> Result<()> {
    let (model, meta) = load_reward(&cmd.model)?;
    model
        .export_hf(&cmd.out, meta, StorageDtype::F32)
        .with_context(|| format!("writing {}", cmd.out.display()))?;
    println!("wrote {}", cmd.out.display());
    Ok(())
}

fn small_tokenizer() -> PathBuf {
    common::data_path("tests/data/tokenizer/small.model")
}

/// The explicit tokenizer, else the one stored with `model`, else the small one.
fn tokenizer_for(explicit: Option<&Path>, model: Option<&Path>) -> Result<(Tokenizer, PathBuf)> {
    if let Some(path) = explicit {
        return Ok((common::load_tokenizer(path)?, path.to_path_buf()));
    }
    if let Some(model) = model
        && let Some(t) = model_tokenizer(model)
            .with_context(|| format!("cannot read the tokenizer of {}", model.display()))?
    {
        return Ok((t, model.to_path_buf()));
    }
    let path = small_tokenizer();
    Ok((common::load_tokenizer(&path)?, path))
}

/// A repository data file ([`common::data_path`]) as a config's path string.
fn data_file(relative: &str) -> String {
    common::data_path(relative).display().to_string()
}

fn strings(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

fn train(cmd: TrainCmd) -> Result<()> {
    common::init_logging();
    let base = cmd
        .model
        .as_deref()
        .map(|m| common::model_path(m, common::DEFAULT_REVISION))
        .transpose()?;
    let (tokenizer, _) = tokenizer_for(cmd.tokenizer.as_deref(), base.as_deref())?;
    let default_data = cmd.data.is_empty();
    let data = if default_data {
        vec![data_file("examples/data/preferences_train.jsonl")]
    } else {
        strings(&cmd.data)
    };
    let mut config = if cmd.paper {
        RewardTrainConfig::paper(data)
    } else {
        let mut tiny = RewardTrainConfig::tiny(data);
        tiny.train = tiny.train.with_log_every(10).with_eval_every(50);
        tiny
    };
    config.valid = if !cmd.valid.is_empty() {
        strings(&cmd.valid)
    } else if default_data {
        vec![data_file("examples/data/preferences_heldout.jsonl")]
    } else {
        Vec::new()
    };
    let kind = match cmd.kind {
        Kind::Helpfulness => "helpfulness",
        Kind::Safety => "safety",
    };
    if config.train.output_dir == "runs/train" {
        config.train.output_dir = format!("runs/reward-{kind}");
    }
    if let Some(v) = cmd.pairs_per_step {
        config.pairs_per_step = v;
    }
    if let Some(v) = cmd.epochs {
        config.epochs = Some(v);
    }
    if cmd.train.steps.is_some() {
        config.epochs = None;
    }
    if cmd.train.warmup.is_some() {
        config.warmup_ratio = None;
    }
    cmd.train.apply(&mut config.train);

    let device = backend::device();
    SelectedAutodiff::seed(&device, config.train.seed);
    let trunk = match &base {
        Some(path) => load_model::<SelectedAutodiff>(path, &device)
            .with_context(|| format!("model {}", path.display()))?,
        None => config
            .tiny_trunk(tokenizer.vocab_size())
            .init::<SelectedAutodiff>(&device),
    };
    ensure!(
        trunk.config.vocab_size >= tokenizer.vocab_size(),
        "the model's vocabulary ({}) is smaller than the tokenizer's ({})",
        trunk.config.vocab_size,
        tokenizer.vocab_size()
    );
    let objective = RankingLossConfig::new()
        .with_margin(cmd.margin.into())
        .with_center_rewards_coefficient(cmd.center_rewards);
    let model = RewardModelConfig::new()
        .with_seed(config.train.seed)
        .init(trunk)
        .with_objective(objective);
    let out = PathBuf::from(&config.train.output_dir);
    std::fs::create_dir_all(&out)?;
    config.save(out.join("config.json"))?;
    println!(
        "training a {kind} reward model on {} (margin {:?}, backend {})",
        config.data.join(", "),
        cmd.margin,
        backend::NAME
    );
    let (model, metrics) = train_reward(model, &config, &tokenizer, cmd.train.resume, &device)?;
    if let (Some(first), Some(last)) = (metrics.first(), metrics.last()) {
        println!("ranking loss {:.4} → {:.4}", first.loss, last.loss);
    }
    // Normalisation statistics for later whitening, from the held-out pairs (or the
    // training pairs when none are held out).
    let stats_data = if config.valid.is_empty() {
        config.dataset(&tokenizer)?
    } else {
        config
            .valid_dataset(&tokenizer)?
            .expect("valid files given")
    };
    let inner = burn::module::AutodiffModule::valid(&model);
    let heldout = evaluate(
        &inner,
        &stats_data.pairs,
        config.train.micro_batch_size,
        model.objective.margin,
        0,
    )?;
    print_table(&heldout);
    let meta = RewardMeta {
        pad_token_id: Some(0),
        normalization: Some(heldout.normalization()),
    };
    let path = out.join("reward.bpk");
    inner
        .save(&path, meta, StorageDtype::F32)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn load_reward(path: &Path) -> Result<(RewardModel<Selected>, RewardMeta)> {
    RewardModel::<Selected>::load(path, &backend::device())
        .with_context(|| format!("cannot load reward model {}", path.display()))
}

fn score(cmd: ScoreCmd) -> Result<()> {
    let (model, _) = load_reward(&cmd.model)?;
    let mut sequences = cmd.ids.clone();
    if let Some(path) = &cmd.data {
        let (tokenizer, _) = tokenizer_for(cmd.tokenizer.as_deref(), Some(&cmd.model))?;
        let pairs = PreferenceDataset::from_files(
            std::slice::from_ref(path),
            &tokenizer,
            model.trunk.config.max_seq_len,
        )?;
        for p in &pairs.pairs {
            sequences.push(p.chosen.clone());
            sequences.push(p.rejected.clone());
        }
    }
    ensure!(!sequences.is_empty(), "give --ids or --data");
    let rewards = model.score_sequences(&sequences, 16)?;
    if cmd.json {
        println!("{}", json!({ "rewards": rewards }));
    } else {
        for (ids, r) in sequences.iter().zip(&rewards) {
            println!("{r:.6}\t{} tokens", ids.len());
        }
    }
    Ok(())
}

fn eval(cmd: EvalCmd) -> Result<()> {
    let (model, _) = load_reward(&cmd.model)?;
    let (tokenizer, _) = tokenizer_for(cmd.tokenizer.as_deref(), Some(&cmd.model))?;
    let data = if cmd.data.is_empty() {
        vec![common::data_path("examples/data/preferences_heldout.jsonl")]
    } else {
        cmd.data.clone()
    };
    let pairs = PreferenceDataset::from_files(&data, &tokenizer, cmd.max_len)?;
    let metrics = evaluate(&model, &pairs.pairs, 16, MarginKind::None, 0)?;
    if cmd.json {
        let columns = llama2_burn::reward::train::table8_columns();
        let per_rating: serde_json::Map<String, serde_json::Value> = columns
            .iter()
            .zip(metrics.table8())
            .map(|(name, b)| {
                (
                    name.to_string(),
                    json!({"accuracy": b.accuracy(), "pairs": b.total}),
                )
            })
            .collect();
        println!(
            "{}",
            json!({
                "pairs": metrics.pairs,
                "accuracy": metrics.accuracy(),
                "mean_margin": metrics.mean_margin(),
                "per_rating": per_rating,
                "skipped": pairs.skipped,
            })
        );
    } else {
        print_table(&metrics);
    }
    Ok(())
}

fn print_table(m: &llama2_burn::reward::RewardMetrics) {
    let columns = llama2_burn::reward::train::table8_columns();
    println!("{:<28} {:>6} {:>9}", "rating", "pairs", "accuracy");
    for (name, b) in columns.iter().zip(m.table8()) {
        let acc = b
            .accuracy()
            .map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a));
        println!("{name:<28} {:>6} {acc:>9}", b.total);
    }
    let acc = m
        .accuracy()
        .map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a));
    println!("{:<28} {:>6} {acc:>9}", "all", m.pairs);
}
