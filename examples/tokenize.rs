//! Tokenize text or a Llama 2-Chat dialog, or decode ids.
//!
//! ```sh
//! cargo run --example tokenize -- --text "Hello world" --bos
//! cargo run --example tokenize -- --dialog tests/data/chat/dialog.json
//! cargo run --example tokenize -- --decode 1,15043,3186
//! ```

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser};
use llama2_burn::model::chat::{encode_dialog, load_dialogs};

/// Print token ids as JSON, or decode ids to text.
#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("input").required(true).args(["text", "dialog", "decode"])))]
struct Args {
    /// SentencePiece tokenizer.model (or tokenizer.json).
    #[arg(long, default_value_os_t = common::default_tokenizer())]
    tokenizer: PathBuf,
    /// Text to encode.
    #[arg(long)]
    text: Option<String>,
    /// Meta-style dialog JSON (a list of {role, content}, or a list of such lists),
    /// encoded in the Llama 2-Chat format.
    #[arg(long)]
    dialog: Option<PathBuf>,
    /// Ids to decode, e.g. `1,15043,3186`.
    #[arg(long)]
    decode: Option<String>,
    /// Prepend BOS (with --text).
    #[arg(long)]
    bos: bool,
    /// Append EOS (with --text).
    #[arg(long)]
    eos: bool,
}

fn main() {
    common::run(|| real_main(Args::parse()));
}

fn real_main(args: Args) -> Result<()> {
    let tok = common::load_tokenizer(&args.tokenizer)?;
    if let Some(text) = &args.text {
        let ids = tok.encode(text, args.bos, args.eos)?;
        println!("{}", serde_json::to_string(&ids)?);
    } else if let Some(path) = &args.dialog {
        let dialogs = load_dialogs(path)?;
        let mut all = Vec::new();
        for (i, d) in dialogs.iter().enumerate() {
            let e = encode_dialog(&tok, d).with_context(|| format!("dialog {i}"))?;
            if e.unsafe_tags {
                eprintln!("warning: dialog {i} contains special tags ([INST], <<SYS>>)");
            }
            all.push(e.tokens);
        }
        if all.len() == 1 {
            println!("{}", serde_json::to_string(&all[0])?);
        } else {
            println!("{}", serde_json::to_string(&all)?);
        }
    } else if let Some(ids) = &args.decode {
        let ids = common::parse_ids(ids).map_err(anyhow::Error::msg)?;
        println!("{}", tok.decode(&ids)?);
    }
    Ok(())
}
