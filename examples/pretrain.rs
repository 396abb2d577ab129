//! Pretrains a small Llama 2 from scratch (paper §2.2 recipe: AdamW (0.9, 0.95),
//! weight decay 0.1, clipping 1.0, warmup + cosine to 10%) and prints the loss
//! falling. Without `--corpus` it trains on the repository's small test corpus
//! with the small test tokenizer, in a few minutes on CPU.
//!
//! ```text
//! cargo run --release --example pretrain
//! cargo run --release --example pretrain -- --corpus book.txt --tokenizer tokenizer.model --steps 2000
//! cargo run --release --example pretrain -- --resume            # continue the last run
//! cargo run --release --example pretrain -- --config run.json   # a saved PretrainConfig
//! ```

use std::path::PathBuf;

use anyhow::Context;
use burn::config::Config;
use burn::tensor::backend::Backend;
use clap::Parser;
use llama2_burn::backend::{self, SelectedAutodiff};
use llama2_burn::import::{StorageDtype, save_model_with_tokenizer};
use llama2_burn::model::train::{PretrainConfig, TrainConfig, WarmupCosineConfig, pretrain};
use llama2_burn::model::{LlamaConfig, Tokenizer};

const DATA: &str = "tests/data/tokenizer";

#[path = "common/mod.rs"]
mod common;
use common::train_args::TrainArgs;

#[derive(Parser, Debug)]
#[command(about = "Pretrain a small Llama 2 on a text corpus")]
struct Args {
    /// Text (.txt) or JSONL ({"text": …}) files; default: the repository's small corpus.
    /// `FILE:WEIGHT` (e.g. `--corpus wiki.jsonl:3 --corpus web.txt:1`) mixes the
    /// sources, drawing each sequence from a source with probability proportional to
    /// its weight.
    #[arg(long, alias = "data", value_parser = weighted_source)]
    corpus: Vec<(PathBuf, Option<f64>)>,
    /// Held-out text or JSONL files for validation (see `--eval-every`).
    #[arg(long)]
    valid: Vec<PathBuf>,
    /// SentencePiece model; default: the repository's small tokenizer (1,200 pieces).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A PretrainConfig JSON (see `--print-config`); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective config as JSON and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    train: TrainArgs,
    /// Model width.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Transformer layers.
    #[arg(long, default_value_t = 4)]
    layers: usize,
}

/// `FILE` or `FILE:WEIGHT` with a finite positive weight.
fn weighted_source(s: &str) -> Result<(PathBuf, Option<f64>), String> {
    if let Some((path, weight)) = s.rsplit_once(':')
        && let Ok(w) = weight.parse::<f64>()
    {
        if !(w.is_finite() && w > 0.0) {
            return Err(format!("the weight of {path} must be positive, not {w}"));
        }
        return Ok((PathBuf::from(path), Some(w)));
    }
    Ok((PathBuf::from(s), None))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    llama2_burn::model::train::keep_freed_memory();
    let tokenizer_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| common::data_path(format!("{DATA}/small.model")));
    let tokenizer = Tokenizer::from_file(&tokenizer_path)
        .with_context(|| format!("tokenizer {}", tokenizer_path.display()))?;

    let mut config = match &args.config {
        Some(path) => {
            PretrainConfig::load(path).with_context(|| format!("config {}", path.display()))?
        }
        None => PretrainConfig::new(
            TrainConfig::new()
                .with_steps(300)
                .with_seq_len(128)
                .with_micro_batch_size(8)
                .with_checkpoint_every(100)
                .with_log_every(10)
                .with_output_dir("runs/pretrain".into())
                .with_schedule(
                    WarmupCosineConfig::new()
                        .with_peak_lr(2e-3)
                        .with_warmup_steps(30)
                        .with_total_steps(0),
                ),
            vec![
                common::data_path(format!("{DATA}/small_corpus.txt"))
                    .display()
                    .to_string(),
            ],
        )
        .with_cache_dir("runs/token-cache".into()),
    };
    if !args.corpus.is_empty() {
        config.sources = args
            .corpus
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        let weighted = args.corpus.iter().filter(|(_, w)| w.is_some()).count();
        anyhow::ensure!(
            weighted == 0 || weighted == args.corpus.len(),
            "give every --corpus a weight (FILE:WEIGHT) or none"
        );
        config.weights = args.corpus.iter().filter_map(|(_, w)| *w).collect();
    }
    if !args.valid.is_empty() {
        config.valid = args.valid.iter().map(|p| p.display().to_string()).collect();
    }
    args.train.apply(&mut config.train);
    if args.print_config {
        println!("{config}");
        return Ok(());
    }

    let mut model_config = LlamaConfig::tiny_15m();
    model_config.dim = args.dim;
    model_config.n_layers = args.layers;
    model_config.n_heads = 4;
    model_config.n_kv_heads = 4;
    model_config.vocab_size = tokenizer.vocab_size();
    model_config.max_seq_len = config.train.seq_len;
    model_config.validate()?;

    let device = backend::device();
    SelectedAutodiff::seed(&device, config.train.seed);
    let model = model_config.init::<SelectedAutodiff>(&device);
    let out = PathBuf::from(&config.train.output_dir);
    std::fs::create_dir_all(&out)?;
    config.save(out.join("config.json"))?;
    println!(
        "pretraining a {:.2}M-parameter model on {} ({}), {} steps, backend {}",
        model_config.num_params() as f64 / 1e6,
        config.sources.join(", "),
        tokenizer_path.display(),
        config.train.steps,
        backend::NAME
    );
    let (model, metrics) = pretrain(model, &config, &tokenizer, args.train.resume, &device)?;
    if let (Some(first), Some(last)) = (metrics.first(), metrics.last()) {
        println!("loss {:.4} → {:.4}", first.loss, last.loss);
    }
    if let Some(last) = metrics.last()
        && last.step < config.train.steps
    {
        println!(
            "stopped at step {} of {}; `--resume` continues from its checkpoint",
            last.step, config.train.steps
        );
    }
    save_model_with_tokenizer(
        &model,
        out.join("model.bpk"),
        StorageDtype::F32,
        &tokenizer_path,
    )?;
    println!(
        "wrote {}, {} and {}",
        out.join("model.bpk").display(),
        out.join("metrics.csv").display(),
        out.join("curves.svg").display()
    );
    Ok(())
}
