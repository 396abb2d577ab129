//! Supervised fine-tuning (paper §3.1) of a Llama 2 model on JSONL dialogs in
//! the Llama 2-Chat format, with the loss on the answer tokens only: full
//! fine-tuning, or LoRA adapters (Hu et al., 2021) on a frozen base with
//! `--lora`.
//!
//! ```text
//! # the repository's tiny model and example data, on CPU:
//! cargo run --release --example finetune
//! # a real model on a GPU (the paper's settings: lr 2e-5, cosine, wd 0.1, 64 × 4096 tokens):
//! cargo run --release --example finetune --no-default-features --features cuda -- \
//!     --model Llama-2-7b-hf --tokenizer tokenizer.model --data sft.jsonl --paper
//! # LoRA on the attention and feed-forward projections, also writing the merged model:
//! cargo run --release --example finetune --no-default-features --features cuda -- \
//!     --model Llama-2-7b-hf --tokenizer tokenizer.model --data sft.jsonl --lr 2e-4 \
//!     --lora --lora-rank 16 --lora-alpha 32 --lora-ffn --merge
//! ```
//!
//! `--model` takes a record file, a Meta checkpoint directory or a Hugging Face
//! directory. Rows are `{"messages": [...]}` or `{"prompt": ..., "completion": ...}`.
//!
//! The run directory gets `model.bpk` (full fine-tuning), or with `--lora`
//! `adapters.safetensors` (the adapters and their configuration; `generate
//! --adapters` and `chat --adapters` take it) and `peft/` (the same adapters
//! in Hugging Face PEFT's layout), plus `model.bpk` with the adapters merged
//! when `--merge` is given.

use std::path::PathBuf;

use anyhow::Context;
use burn::config::Config;
use burn::tensor::backend::Backend;
use clap::Parser;
use llama2_burn::backend::{self, SelectedAutodiff};
use llama2_burn::import::{StorageDtype, load_model, save_model_with_tokenizer, save_peft};
use llama2_burn::model::Tokenizer;
use llama2_burn::model::lora::{LoraConfig, save_adapters};
use llama2_burn::model::train::{SftConfig, TrainConfig, WarmupCosineConfig, finetune};

#[path = "common/mod.rs"]
mod common;
use common::train_args::TrainArgs;

#[derive(Parser, Debug)]
#[command(about = "Supervised fine-tuning of Llama 2 on JSONL dialogs")]
struct Args {
    /// Record file, Meta directory, HF directory or Hub repo id (at main); default: a
    /// tiny model made for the small test tokenizer.
    #[arg(long)]
    model: Option<PathBuf>,
    /// SentencePiece model (or a Hub repo id); default: the repository's small tokenizer.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// JSONL files; default: examples/data/sft_tiny.jsonl.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Held-out JSONL files for validation (see `--eval-every`).
    #[arg(long)]
    valid: Vec<PathBuf>,
    /// An SftConfig JSON; flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start from the paper's §3.1 settings (lr 2e-5, cosine, weight decay 0.1,
    /// 64 × 4096 tokens per step, 2 epochs).
    #[arg(long)]
    paper: bool,
    /// Print the effective config as JSON and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    train: TrainArgs,
    /// Passes over the data (`--paper`: 2); the steps follow from the data size.
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<f64>,
    /// Do not pack several examples per sequence.
    #[arg(long)]
    no_pack: bool,
    /// Train LoRA adapters on a frozen base instead of every weight.
    #[arg(long)]
    lora: bool,
    /// LoRA rank r [default: 8].
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha / r [default: 16].
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// Dropout on the adapter inputs [default: 0.05].
    #[arg(long)]
    lora_dropout: Option<f64>,
    /// Adapt the feed-forward projections (w1, w2, w3) too, not only attention.
    #[arg(long)]
    lora_ffn: bool,
    /// Scale the update by alpha / sqrt(r) (rsLoRA).
    #[arg(long)]
    lora_rslora: bool,
    /// With LoRA, also write the model with the adapters merged (model.bpk).
    #[arg(long)]
    merge: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    llama2_burn::model::train::keep_freed_memory();
    let tokenizer_path = match &args.tokenizer {
        Some(path) => common::tokenizer_path(path, common::DEFAULT_REVISION)?,
        None => common::data_path("tests/data/tokenizer/small.model"),
    };
    let tokenizer = Tokenizer::from_file(&tokenizer_path)
        .with_context(|| format!("tokenizer {}", tokenizer_path.display()))?;
    let default_data = vec![
        common::data_path("examples/data/sft_tiny.jsonl")
            .display()
            .to_string(),
    ];
    let mut config = match &args.config {
        Some(path) => {
            SftConfig::load(path).with_context(|| format!("config {}", path.display()))?
        }
        None if args.paper => SftConfig::paper(default_data),
        None => SftConfig::new(
            TrainConfig::new()
                .with_steps(60)
                .with_seq_len(96)
                .with_micro_batch_size(4)
                .with_log_every(5)
                .with_schedule(
                    WarmupCosineConfig::new()
                        .with_peak_lr(3e-3)
                        .with_warmup_steps(5)
                        .with_total_steps(0),
                ),
            default_data,
        ),
    };
    if config.train.output_dir == "runs/train" {
        config.train.output_dir = "runs/finetune".into();
    }
    if !args.data.is_empty() {
        config.data = args.data.iter().map(|p| p.display().to_string()).collect();
    }
    if !args.valid.is_empty() {
        config.valid = args.valid.iter().map(|p| p.display().to_string()).collect();
    }
    if args.no_pack {
        config.pack = false;
    }
    if let Some(v) = args.epochs {
        config.epochs = Some(v);
    }
    if args.train.steps.is_some() {
        config.epochs = None;
    }
    if args.train.warmup.is_some() {
        config.warmup_ratio = None;
    }
    args.train.apply(&mut config.train);
    let lora_flags = args.lora_rank.is_some()
        || args.lora_alpha.is_some()
        || args.lora_dropout.is_some()
        || args.lora_ffn
        || args.lora_rslora;
    if args.lora || lora_flags {
        let mut lora = config.lora.take().unwrap_or_else(LoraConfig::new);
        if let Some(v) = args.lora_rank {
            lora.rank = v;
        }
        if let Some(v) = args.lora_alpha {
            lora.alpha = v;
        }
        if let Some(v) = args.lora_dropout {
            lora.dropout = v;
        }
        if args.lora_ffn {
            lora = lora.with_feed_forward();
        }
        if args.lora_rslora {
            lora.rslora = true;
        }
        lora.validate()?;
        config.lora = Some(lora);
    }
    anyhow::ensure!(
        !args.merge || config.lora.is_some(),
        "--merge merges LoRA adapters: it needs --lora"
    );
    if args.print_config {
        println!("{config}");
        return Ok(());
    }

    let device = backend::device();
    SelectedAutodiff::seed(&device, config.train.seed);
    let model = match &args.model {
        Some(path) => load_model::<SelectedAutodiff>(
            common::model_path(path, common::DEFAULT_REVISION)?,
            &device,
        )
        .with_context(|| format!("model {}", path.display()))?,
        None => {
            let mut c = llama2_burn::model::LlamaConfig::tiny_15m();
            c.dim = 64;
            c.n_layers = 2;
            c.n_heads = 4;
            c.n_kv_heads = 2;
            c.vocab_size = tokenizer.vocab_size();
            c.max_seq_len = config.train.seq_len;
            c.init::<SelectedAutodiff>(&device)
        }
    };
    anyhow::ensure!(
        model.config.vocab_size >= tokenizer.vocab_size(),
        "the model's vocabulary ({}) is smaller than the tokenizer's ({})",
        model.config.vocab_size,
        tokenizer.vocab_size()
    );
    let out = PathBuf::from(&config.train.output_dir);
    std::fs::create_dir_all(&out)?;
    config.save(out.join("config.json"))?;
    let length = match config.epochs {
        Some(epochs) => format!("{epochs} epochs"),
        None => format!("{} steps", config.train.steps),
    };
    println!(
        "fine-tuning on {} ({length}, backend {}{})",
        config.data.join(", "),
        backend::NAME,
        match &config.lora {
            Some(l) => format!(
                ", LoRA rank {} alpha {} on {}",
                l.rank,
                l.alpha,
                l.targets
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => String::new(),
        }
    );
    let (model, metrics) = finetune(model, &config, &tokenizer, args.train.resume, &device)?;
    if let (Some(first), Some(last)) = (metrics.first(), metrics.last()) {
        println!("answer-token loss {:.4} → {:.4}", first.loss, last.loss);
    }
    let stopped = metrics.last().filter(|last| match config.epochs {
        Some(epochs) => last.epoch < epochs,
        None => last.step < config.train.steps,
    });
    if let Some(last) = stopped {
        println!(
            "stopped at step {} (epoch {:.2}); `--resume` continues from its checkpoint",
            last.step, last.epoch
        );
        return Ok(());
    }
    if model.lora.is_some() {
        let path = out.join("adapters.safetensors");
        save_adapters(&model, &path)?;
        println!("wrote {}", path.display());
        let peft = out.join("peft");
        if peft.exists() {
            std::fs::remove_dir_all(&peft)?;
        }
        save_peft(&model, &peft)?;
        println!("wrote {}", peft.display());
        if !args.merge {
            return Ok(());
        }
    }
    let model = model.merge_lora();
    save_model_with_tokenizer(
        &model,
        out.join("model.bpk"),
        StorageDtype::F32,
        &tokenizer_path,
    )?;
    println!("wrote {}", out.join("model.bpk").display());
    Ok(())
}
