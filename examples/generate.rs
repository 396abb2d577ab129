//! Text generation from the command line.
//!
//! ```sh
//! cargo run --release --example generate                       # tiny random model, gibberish
//! cargo run --release --example generate -- --model llama-2-7b/ --tokenizer tokenizer.model \
//!     --prompt "The capital of France is" --max-new-tokens 32 --temperature 0.6 --top-p 0.9
//! ```

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use llama2_burn::model::generation::{
    Completion, FinishReason, GenerationOptions, Generator, SamplerConfig,
};

/// Generate text with Llama 2.
///
/// Without arguments this runs the committed tiny model (tests/data/tiny-chat,
/// random weights with Llama 2's vocabulary) on "Once upon a time": the output
/// is random-weight gibberish, which shows that the pipeline works, not what
/// Llama 2 says. Pass --model with a real checkpoint for meaningful text.
#[derive(Parser, Debug)]
#[command(verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    model: common::ModelArgs,
    /// Prompt text (BOS is prepended); repeat for a batch.
    #[arg(long)]
    prompt: Vec<String>,
    /// Prompt as token ids, e.g. `1,450,7483`; repeat for a batch.
    #[arg(long, value_parser = common::parse_ids)]
    prompt_ids: Vec<Vec<u32>>,
    /// Maximum number of new tokens per sequence.
    #[arg(long, default_value_t = 64, value_parser = common::parse_tokens)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.6, value_parser = common::parse_temperature)]
    temperature: f32,
    /// Nucleus sampling threshold in [0, 1].
    #[arg(long, default_value_t = 0.9, value_parser = common::parse_probability)]
    top_p: f32,
    /// Keep only the k most probable tokens.
    #[arg(long, value_parser = common::parse_top_k)]
    top_k: Option<usize>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep generating after EOS.
    #[arg(long)]
    ignore_eos: bool,
    /// Stop string (the text is cut before it); repeatable.
    #[arg(long)]
    stop: Vec<String>,
    /// Report per-token log-probabilities.
    #[arg(long)]
    logprobs: bool,
    /// Include the prompt in the output.
    #[arg(long)]
    echo: bool,
    /// Print JSON (ids, text, logprobs per sequence) instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn main() {
    common::run(|| real_main(Args::parse()));
}

fn real_main(args: Args) -> Result<()> {
    common::init_logging();
    let (model_path, tokenizer) = args.model.resolve()?;

    let mut prompts: Vec<Vec<u32>> = Vec::new();
    for p in &args.prompt {
        prompts.push(tokenizer.encode(p, true, false)?);
    }
    prompts.extend(args.prompt_ids.iter().cloned());
    if prompts.is_empty() {
        prompts.push(tokenizer.encode("Once upon a time", true, false)?);
    }
    let mut sampler = SamplerConfig::new(args.temperature, args.top_p).with_seed(args.seed);
    sampler.top_k = args.top_k;
    sampler.validate()?;
    let options = GenerationOptions::new(args.max_new_tokens)
        .with_sampler(sampler)
        .with_logprobs(args.logprobs)
        .with_echo(args.echo)
        .with_stop_at_eos(!args.ignore_eos)
        .with_stop_sequences(args.stop.iter().cloned());
    let model = args.model.load(&model_path)?;
    let generator = Generator::new(&model, &tokenizer)?;

    let start = Instant::now();
    let single = prompts.len() == 1;
    let stream = single && !args.json;
    let mut stdout = std::io::stdout();
    let completions = generator.generate_streaming(&prompts, &options, |_, piece| {
        if stream {
            print!("{piece}");
            let _ = stdout.flush();
        }
    })?;
    let elapsed = start.elapsed();
    let new_tokens: usize = completions
        .iter()
        .map(|c| c.tokens.len() - if args.echo { c.prompt_len } else { 0 })
        .sum();
    tracing::info!(
        "{new_tokens} new tokens in {elapsed:.2?} ({:.1} tokens/s)",
        new_tokens as f64 / elapsed.as_secs_f64().max(1e-9)
    );

    if args.json {
        let out: Vec<_> = completions.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if stream {
        println!();
    }
    for (i, c) in completions.iter().enumerate() {
        if !single {
            println!("--- [{i}] ({:?}) ---\n{}", c.finish_reason, c.text);
        }
        if let Some(lp) = &c.logprobs {
            let pieces: Vec<String> = c
                .tokens
                .iter()
                .zip(lp)
                .map(|(&t, l)| format!("{}:{l:.3}", tokenizer.id_to_piece(t).unwrap_or("?")))
                .collect();
            println!("logprobs [{i}]: {}", pieces.join(" "));
        }
    }
    if completions.is_empty() {
        bail!("nothing was generated");
    }
    Ok(())
}

fn to_json(c: &Completion) -> serde_json::Value {
    serde_json::json!({
        "ids": c.tokens,
        "text": c.text,
        "logprobs": c.logprobs,
        "prompt_len": c.prompt_len,
        "finish_reason": match c.finish_reason {
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Unsafe => "unsafe",
        },
    })
}
