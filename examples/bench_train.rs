//! Training throughput of the Llama 2 model on the selected backend, with random weights and
//! random tokens.
//!
//! For every shape (each measured in its own child process, so that the peak memory is the
//! shape's own), the optimizer step the [`Trainer`] runs — forward, cross-entropy, backward,
//! clipping by global norm (1.0) and AdamW (0.9, 0.95, ε 1e-5, weight decay 0.1) — on one
//! batch of `batch × seq_len` tokens:
//!
//! * training tokens/s: `batch × seq_len` over the median step time, after warm-up steps (the
//!   first step also allocates the optimizer's moments);
//! * peak resident memory of the process (`VmHWM`): weights, gradients, the two AdamW moments
//!   and the activations kept for the backward pass.
//!
//! Every timed step ends with the backend synchronized, so asynchronous backends are timed to
//! completion. `scripts/bench_hf_train.py` measures transformers on the same shapes.
//!
//! ```text
//! cargo run --release --example bench_train -- --shapes 15m,110m            # 15m: 8×256, 110m: 4×256
//! cargo run --release --example bench_train -- --shapes 110m --batch 4 --steps 10 --threads 2
//! cargo run --release --example bench_train -- --shapes 110m --checkpointing balanced
//! cargo run --release --example bench_train --no-default-features --features cuda -- --json
//! ```

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::data::dataset::InMemDataset;
use burn::tensor::backend::AutodiffBackend;
use clap::{Parser, ValueEnum};
use llama2_burn::backend::{self, Selected, SelectedAutodiff};
use llama2_burn::model::train::data::DataOrder;
use llama2_burn::model::train::{TokenWindow, TrainConfig, Trainer, WarmupCosineConfig};
use llama2_burn::model::{Llama, LlamaConfig};
use serde_json::{Value, json};

mod common;
use common::measure::{
    loadavg, materialise, median, print_table as print_rows, random_tokens, rss_kib, run_workers,
};

/// Which activations the backward pass keeps (Burn's autodiff checkpointing strategies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Checkpointing {
    /// Every activation the backward pass reads is kept.
    None,
    /// Burn's `BalancedCheckpointing`: outputs of memory-bound operations are recomputed in
    /// the backward pass instead of kept.
    Balanced,
}

#[derive(Parser, Debug)]
#[command(about = "Training tokens/s and peak memory of full optimizer steps")]
struct Args {
    /// Comma-separated model shapes (`15m`, `110m`, `7b`, ...).
    #[arg(long, default_value = "15m,110m")]
    shapes: String,
    /// Sequences per step; default 8 for `15m`, 4 for the other shapes.
    #[arg(long)]
    batch: Option<usize>,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Threads of the CPU backends (`RAYON_NUM_THREADS` and `MATMUL_NUM_THREADS` of the
    /// measurement processes); default: the backends' own choice.
    #[arg(long)]
    threads: Option<usize>,
    /// Seed of the random tokens.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Activation checkpointing.
    #[arg(long, value_enum, default_value = "none")]
    checkpointing: Checkpointing,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure this one shape in the current process and print its JSON (used internally).
    #[arg(long, hide = true)]
    worker: Option<String>,
}

impl Args {
    fn batch_for(&self, shape: &str) -> usize {
        self.batch.unwrap_or(if shape.eq_ignore_ascii_case("15m") {
            8
        } else {
            4
        })
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    llama2_burn::model::train::keep_freed_memory();
    ensure!(
        args.steps > 0 && args.seq_len > 0 && args.batch != Some(0) && args.threads != Some(0),
        "--steps, --seq-len, --batch and --threads must be positive"
    );
    if let Some(shape) = &args.worker {
        let result = match args.checkpointing {
            Checkpointing::None => measure_shape::<SelectedAutodiff>(&args, shape)?,
            Checkpointing::Balanced => {
                measure_shape::<Autodiff<Selected, BalancedCheckpointing>>(&args, shape)?
            }
        };
        println!("{result}");
        return Ok(());
    }

    let threads: Vec<(&str, String)> = match args.threads {
        Some(n) => vec![
            ("RAYON_NUM_THREADS", n.to_string()),
            ("MATMUL_NUM_THREADS", n.to_string()),
        ],
        None => Vec::new(),
    };
    let results = run_workers(&args.shapes, &threads)?;

    let env = json!({
        "backend": backend::NAME,
        "threads": results.first().map_or(Value::Null, |r| r["threads"].clone()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "loadavg": loadavg(),
        "seq_len": args.seq_len,
        "steps": args.steps,
        "warmup": args.warmup,
        "checkpointing": format!("{:?}", args.checkpointing).to_lowercase(),
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "env": env, "results": results }))?
        );
    } else {
        print_table(&env, &results);
    }
    Ok(())
}

/// Measures one shape in this process.
fn measure_shape<B: AutodiffBackend<Device = burn::tensor::Device<Selected>>>(
    args: &Args,
    shape: &str,
) -> Result<Value> {
    let device = backend::device();
    let batch = args.batch_for(shape);
    let config = LlamaConfig::preset(shape)
        .with_context(|| format!("unknown shape {shape:?}"))?
        .with_max_seq_len(args.seq_len);
    let rss_start = rss_kib("VmRSS:");
    let model: Llama<B> = config.init(&device);
    materialise(&model);
    B::sync(&device)?;
    let rss_model = rss_kib("VmRSS:");

    let steps = args.warmup + args.steps;
    let mut rng = args.seed ^ 0x9e37_79b9_7f4a_7c15;
    let windows: Vec<TokenWindow> = (0..steps * batch)
        .map(|_| {
            TokenWindow::all_trained(&random_tokens(
                &mut rng,
                args.seq_len + 1,
                config.vocab_size,
            ))
        })
        .collect();
    let data = InMemDataset::new(windows);
    let train = TrainConfig::new()
        .with_steps(steps)
        .with_seq_len(args.seq_len)
        .with_micro_batch_size(batch)
        .with_shuffle(false)
        .with_log_every(0)
        .with_dashboard(false)
        .with_schedule(
            WarmupCosineConfig::new()
                .with_warmup_steps(0)
                .with_total_steps(0),
        );
    let mut trainer = Trainer::new(model, train, &device);
    let mut order = DataOrder::new(steps * batch, 0, false);

    let mut times = Vec::with_capacity(args.steps);
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        let start = Instant::now();
        let m = trainer.train_step(&data, &mut order);
        B::sync(&device)?;
        let elapsed = start.elapsed();
        ensure!(m.loss.is_finite(), "step {}: loss {}", m.step, m.loss);
        losses.push(m.loss);
        if step >= args.warmup {
            times.push(elapsed);
        }
    }
    let step_time = median(times);
    let tokens = batch * args.seq_len;

    Ok(json!({
        "shape": shape,
        "params": config.num_params(),
        "batch": batch,
        "seq_len": args.seq_len,
        "threads": rayon::current_num_threads(),
        "step_ms": step_time.as_secs_f64() * 1e3,
        "tok_s": tokens as f64 / step_time.as_secs_f64(),
        "loss_first": losses.first(),
        "loss_last": losses.last(),
        "rss_model_mib": (rss_model - rss_start) as f64 / 1024.0,
        "peak_rss_mib": rss_kib("VmHWM:") as f64 / 1024.0,
    }))
}

fn print_table(env: &Value, results: &[Value]) {
    println!(
        "backend {} | activation checkpointing {} | {} threads on {} CPUs | seq_len {} | median of {} steps after {} warm-up | load average {}",
        env["backend"],
        env["checkpointing"],
        env["threads"],
        env["cpus"],
        env["seq_len"],
        env["steps"],
        env["warmup"],
        env["loadavg"]
    );
    let head: Vec<String> = [
        "shape",
        "params",
        "batch×seq",
        "step ms",
        "train tok/s",
        "peak RSS MiB",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r["shape"].as_str().unwrap_or("?").to_string(),
                format!("{:.1}M", r["params"].as_f64().unwrap_or(0.0) / 1e6),
                format!("{}×{}", r["batch"], r["seq_len"]),
                format!("{:.0}", r["step_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.1}", r["tok_s"].as_f64().unwrap_or(0.0)),
                format!("{:.0}", r["peak_rss_mib"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    print_rows(&head, &rows);
}
