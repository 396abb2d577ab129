//! A Llama 2-Chat conversation in the terminal.
//!
//! ```sh
//! cargo run --release --example chat                    # tiny random model, gibberish
//! cargo run --release --example chat -- --model llama-2-7b-chat/ \
//!     --tokenizer tokenizer.model --system "Answer in one sentence."
//! cargo run --release --example chat -- --dialog dialog.json
//! ```

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use llama2_burn::backend::Selected;
use llama2_burn::model::chat::{Message, encode_dialog, load_dialogs};
use llama2_burn::model::generation::{GenerationOptions, Generator, SamplerConfig};

/// Chat with Llama 2-Chat, keeping the multi-turn history in Meta's format.
///
/// Without arguments this runs the committed tiny model (tests/data/tiny-chat,
/// random weights with Llama 2's vocabulary): its answers are random-weight
/// gibberish. Pass --model with a Llama 2-Chat checkpoint for real answers.
/// In the interactive mode, `/reset` starts a new conversation and `/quit`
/// (or end of input) leaves.
#[derive(Parser, Debug)]
#[command(verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    model: common::ModelArgs,
    /// System prompt for the interactive conversation.
    #[arg(long)]
    system: Option<String>,
    /// Answer the dialog(s) in this JSON file (Meta's list of {role, content}) and exit.
    #[arg(long)]
    dialog: Option<PathBuf>,
    /// Maximum number of tokens per answer.
    #[arg(long, default_value_t = 128, value_parser = common::parse_tokens)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.6, value_parser = common::parse_temperature)]
    temperature: f32,
    /// Nucleus sampling threshold in [0, 1].
    #[arg(long, default_value_t = 0.9, value_parser = common::parse_probability)]
    top_p: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    common::run(|| real_main(Args::parse()));
}

fn real_main(args: Args) -> Result<()> {
    common::init_logging();
    let (model_path, tokenizer) = args.model.resolve()?;
    let dialogs = args.dialog.as_ref().map(load_dialogs).transpose()?;
    let model = args.model.load(&model_path)?;
    let generator = Generator::new(&model, &tokenizer)?;
    let options = GenerationOptions::new(args.max_new_tokens)
        .with_sampler(SamplerConfig::new(args.temperature, args.top_p).with_seed(args.seed));
    match dialogs {
        Some(dialogs) => answer_file(&generator, &dialogs, &options),
        None => interactive(&generator, args.system.as_deref(), &options),
    }
}

/// Checks that a dialog leaves room for an answer in the context.
fn check_fits(generator: &Generator<'_, Selected>, dialog: &[Message]) -> Result<usize> {
    let len = encode_dialog(generator.tokenizer(), dialog)?.tokens.len();
    let context = generator.model().config.max_seq_len;
    if len >= context {
        bail!(
            "the dialog is {len} tokens long, which does not leave room for an answer in the model's context of {context} tokens"
        );
    }
    Ok(len)
}

fn answer_file(
    generator: &Generator<'_, Selected>,
    dialogs: &[Vec<Message>],
    options: &GenerationOptions,
) -> Result<()> {
    if dialogs.is_empty() {
        bail!("the dialog file holds no dialog");
    }
    for (i, d) in dialogs.iter().enumerate() {
        check_fits(generator, d).map_err(|e| e.context(format!("dialog {i}")))?;
    }
    let answers = generator.chat_completion(dialogs, options)?;
    for (i, (d, a)) in dialogs.iter().zip(&answers).enumerate() {
        if dialogs.len() > 1 {
            println!("=== dialog {i} ===");
        }
        for m in d {
            println!("{}: {}", m.role.as_str(), m.content);
        }
        println!("> assistant: {}\n", a.message.content);
    }
    Ok(())
}

fn interactive(
    generator: &Generator<'_, Selected>,
    system: Option<&str>,
    options: &GenerationOptions,
) -> Result<()> {
    let fresh = || system.map(Message::system).into_iter().collect::<Vec<_>>();
    let mut history = fresh();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut turn = 0u64;
    eprintln!("Type a message; /reset starts over, /quit leaves.");
    loop {
        print!("user> ");
        stdout.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "/quit" | "/exit" => return Ok(()),
            "/reset" => {
                history = fresh();
                eprintln!("(new conversation)");
                continue;
            }
            "" => continue,
            _ => {}
        }
        history.push(Message::user(line));
        if let Err(e) = check_fits(generator, &history) {
            history.pop();
            eprintln!("error: {e:#}; use /reset to start a new conversation");
            continue;
        }
        // A different stream of the seed for every turn.
        let mut opts = options.clone();
        opts.sampler.seed = options.sampler.seed.wrapping_add(turn);
        turn += 1;
        print!("assistant> ");
        stdout.flush()?;
        let answer = generator.chat_completion_streaming(
            std::slice::from_ref(&history),
            &opts,
            |_, piece| {
                print!("{piece}");
                let _ = std::io::stdout().flush();
            },
        );
        println!();
        match answer {
            Ok(mut a) => history.push(a.remove(0).message),
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
            }
        }
    }
}
