//! Inference throughput of the Llama 2 model on the selected backend, with random weights.
//!
//! For every shape (each measured in its own child process, so that the peak memory is the
//! shape's own):
//!
//! * prefill tokens/s: one cached forward pass of the whole prompt into a fresh cache, output
//!   head applied to the last position only;
//! * time to first token: cache allocation, prefill and the greedy choice of the first token;
//! * greedy decode tokens/s with the KV cache, one token per sequence per step, for every
//!   batch size (tokens/s counts all sequences of the batch);
//! * peak resident memory of the process (`VmHWM`).
//!
//! Every timed step ends by reading a result back to the host, so asynchronous backends are
//! timed to completion.
//!
//! ```text
//! cargo run --release --example bench -- --shapes 15m,110m --batch 1,4,16
//! cargo run --release --example bench --no-default-features --features flex -- --json
//! cargo run --release --example bench -- --shapes 110m --batch 1 --dtype f16
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::prelude::Backend;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use llama2_burn::backend::{self, Selected};
use llama2_burn::model::{Llama, LlamaConfig, WeightDType};
use serde_json::{Value, json};

mod common;
use common::measure::{
    loadavg, materialise, median, print_table as print_rows, rss_kib, run_workers,
};

type B = Selected;

#[derive(Parser, Debug)]
#[command(about = "Prefill, time-to-first-token, decode throughput and peak memory")]
struct Args {
    /// Comma-separated model shapes (`15m`, `110m`, `7b`, ...).
    #[arg(long, default_value = "15m,110m")]
    shapes: String,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 256, value_parser = common::parse_tokens)]
    prompt_len: usize,
    /// New tokens generated per sequence in the decode measurement.
    #[arg(long, default_value_t = 256, value_parser = common::parse_tokens)]
    new_tokens: usize,
    /// Comma-separated decode batch sizes.
    #[arg(long, default_value = "1,4,16")]
    batch: String,
    /// Timed repetitions of each measurement (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 3, value_parser = common::parse_positive)]
    repeats: usize,
    /// Storage precision of the projections and the output head (`f32`, `f16`, `bf16`);
    /// activations and accumulation stay f32.
    #[arg(long, default_value = "f32")]
    dtype: WeightDType,
    /// Seed of the random prompts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure this one shape in the current process and print its JSON (used internally).
    #[arg(long, hide = true)]
    worker: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.repeats == 0 || args.prompt_len == 0 || args.new_tokens < 2 {
        bail!("--repeats and --prompt-len must be positive and --new-tokens at least 2");
    }
    let batches = parse_batches(&args.batch)?;
    if let Some(shape) = &args.worker {
        let result = measure_shape(&args, shape, &batches)?;
        println!("{result}");
        return Ok(());
    }

    let results = run_workers(&args.shapes, &[])?;

    let env = json!({
        "backend": backend::NAME,
        "threads": rayon::current_num_threads(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "loadavg": loadavg(),
        "dtype": args.dtype.to_string(),
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "env": env, "results": results }))?
        );
    } else {
        print_table(&env, &results, &batches);
    }
    Ok(())
}

fn parse_batches(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|b| {
            let b: usize = b
                .trim()
                .parse()
                .with_context(|| format!("batch size {b:?}"))?;
            if !(1..=1 << 16).contains(&b) {
                bail!("batch size {b} is outside 1..=65536");
            }
            Ok(b)
        })
        .collect()
}

/// Measures one shape in this process.
fn measure_shape(args: &Args, shape: &str, batches: &[usize]) -> Result<Value> {
    let device = backend::device();
    let config = LlamaConfig::preset(shape)
        .with_context(|| format!("unknown shape {shape:?}"))?
        .with_max_seq_len(args.prompt_len + args.new_tokens);
    let rss_start = rss_kib("VmRSS:");
    let model: Llama<B> = config.init(&device).with_weight_dtype(args.dtype)?;
    materialise(&model);
    B::sync(&device)?;
    let rss_model = rss_kib("VmRSS:");
    let cache_len = args.prompt_len + args.new_tokens;
    let mut rng = args.seed ^ 0x9e37_79b9_7f4a_7c15;

    // Prefill: one cached forward of the prompt, output head on the last position only.
    let prompt = prompt_tokens(&mut rng, 1, args.prompt_len, config.vocab_size);
    let prefill = median_of(args.repeats, || {
        let mut cache = model.new_cache(1, cache_len);
        let tokens = tokens_tensor(&prompt, 1, &device);
        let start = Instant::now();
        let next = first_token(&model, tokens, &mut cache);
        std::hint::black_box(next);
        start.elapsed()
    });

    // Time to first token: everything a request does before it has its first token.
    let ttft = median_of(args.repeats, || {
        let start = Instant::now();
        let mut cache = model.new_cache(1, cache_len);
        let tokens = tokens_tensor(&prompt, 1, &device);
        let next = first_token(&model, tokens, &mut cache);
        std::hint::black_box(next);
        start.elapsed()
    });

    // Greedy decode: after the prompt, `new_tokens - 1` steps of one token per sequence (the
    // first new token comes from the prefill).
    let mut decode = serde_json::Map::new();
    for &batch in batches {
        let prompt = prompt_tokens(&mut rng, batch, args.prompt_len, config.vocab_size);
        let run = |steps: usize| {
            let mut cache = model.new_cache(batch, cache_len);
            let mut next = first_token(&model, tokens_tensor(&prompt, batch, &device), &mut cache);
            let start = Instant::now();
            for step in 0..steps {
                let tokens = tokens_tensor(&next, batch, &device);
                let logits = model.forward_cached(tokens, args.prompt_len + step, &mut cache);
                next = argmax_last(logits);
            }
            start.elapsed()
        };
        run(8.min(args.new_tokens - 1)); // warm-up
        let steps = args.new_tokens - 1;
        let times: Vec<Duration> = (0..args.repeats).map(|_| run(steps)).collect();
        let per_step = median(times) / steps as u32;
        decode.insert(
            batch.to_string(),
            json!({
                "batch": batch,
                "ms_per_step": per_step.as_secs_f64() * 1e3,
                "tok_s": batch as f64 / per_step.as_secs_f64(),
            }),
        );
    }

    Ok(json!({
        "shape": shape,
        "params": config.num_params(),
        "prefill_s": prefill.as_secs_f64(),
        "prefill_tok_s": args.prompt_len as f64 / prefill.as_secs_f64(),
        "ttft_ms": ttft.as_secs_f64() * 1e3,
        "decode": decode,
        "rss_model_mib": (rss_model - rss_start) as f64 / 1024.0,
        "peak_rss_mib": rss_kib("VmHWM:") as f64 / 1024.0,
    }))
}

/// Runs the prompt through the model into `cache` and returns the greedy next token of every
/// sequence.
fn first_token(
    model: &Llama<B>,
    tokens: Tensor<B, 2, Int>,
    cache: &mut llama2_burn::model::KvCache<B>,
) -> Vec<i64> {
    let [_, seq_len] = tokens.dims();
    let hidden = model.hidden_states(tokens, 0, Some(cache));
    argmax_last(model.logits(hidden.narrow(1, seq_len - 1, 1)))
}

/// Greedy token of the last position of every sequence, read back to the host.
fn argmax_last(logits: Tensor<B, 3>) -> Vec<i64> {
    let [batch, seq_len, vocab] = logits.dims();
    logits
        .narrow(1, seq_len - 1, 1)
        .reshape([batch, vocab])
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .expect("integer data")
}

fn tokens_tensor(tokens: &[i64], batch: usize, device: &Device<B>) -> Tensor<B, 2, Int> {
    let seq_len = tokens.len() / batch;
    Tensor::from_data(TensorData::new(tokens.to_vec(), [batch, seq_len]), device)
}

/// `batch` prompts of `len` random tokens, as ids for [`tokens_tensor`].
fn prompt_tokens(state: &mut u64, batch: usize, len: usize, vocab: usize) -> Vec<i64> {
    common::measure::random_tokens(state, batch * len, vocab)
        .into_iter()
        .map(i64::from)
        .collect()
}

fn median_of(repeats: usize, mut f: impl FnMut() -> Duration) -> Duration {
    f(); // warm-up
    median((0..repeats).map(|_| f()).collect())
}

fn print_table(env: &Value, results: &[Value], batches: &[usize]) {
    println!(
        "backend {} | weights {} | {} threads on {} CPUs | prompt {} tokens, {} new tokens, median of {} | load average {}",
        env["backend"],
        env["dtype"],
        env["threads"],
        env["cpus"],
        env["prompt_len"],
        env["new_tokens"],
        env["repeats"],
        env["loadavg"]
    );
    let mut head = vec![
        "shape".to_string(),
        "params".into(),
        "prefill tok/s".into(),
        "TTFT ms".into(),
    ];
    head.extend(batches.iter().map(|b| format!("decode tok/s b={b}")));
    head.push("peak RSS MiB".into());
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let mut row = vec![
                r["shape"].as_str().unwrap_or("?").to_string(),
                format!("{:.1}M", r["params"].as_f64().unwrap_or(0.0) / 1e6),
                format!("{:.0}", r["prefill_tok_s"].as_f64().unwrap_or(0.0)),
                format!("{:.1}", r["ttft_ms"].as_f64().unwrap_or(0.0)),
            ];
            row.extend(batches.iter().map(|b| {
                format!(
                    "{:.1}",
                    r["decode"][b.to_string()]["tok_s"].as_f64().unwrap_or(0.0)
                )
            }));
            row.push(format!("{:.0}", r["peak_rss_mib"].as_f64().unwrap_or(0.0)));
            row
        })
        .collect();
    print_rows(&head, &rows);
}
