//! Tokenize text or a Llama 2-Chat dialog, or decode ids.
//!
//! ```sh
//! cargo run --example tokenize -- --text "Hello world" --bos
//! cargo run --example tokenize -- --file notes.txt      # or: tokenize notes.txt
//! printf 'a\0b' | cargo run --example tokenize -- -     # standard input
//! cargo run --example tokenize -- --tokenizer meta-llama/Llama-2-7b-hf --text "Hi"
//! cargo run --example tokenize -- --dialog tests/data/chat/dialog.json
//! cargo run --example tokenize -- --decode 1,15043,3186
//! ```

#[path = "common/mod.rs"]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser};
use llama2_burn::model::chat::{encode_dialog, load_dialogs};

/// Print token ids as JSON, or decode ids to text.
#[derive(Parser, Debug)]
#[command(group(
    ArgGroup::new("input")
        .required(true)
        .args(["text", "file", "path", "dialog", "decode"])
))]
struct Args {
    /// SentencePiece tokenizer.model (or tokenizer.json), or a Hugging Face Hub repo id
    /// (org/name). [default: Meta's Llama 2 tokenizer, embedded in the binary]
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Revision (branch, tag or commit hash) of a --tokenizer repo id.
    #[arg(long, default_value = common::DEFAULT_REVISION)]
    revision: String,
    /// Text to encode (text starting with `-`: --text=-x; any text: --file).
    #[arg(long)]
    text: Option<String>,
    /// Encode the text of this file (UTF-8, read as is, a final newline included);
    /// `-` reads standard input.
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    file: Option<PathBuf>,
    /// The same as --file: a file to encode, or `-` for standard input.
    #[arg(value_name = "FILE")]
    path: Option<PathBuf>,
    /// Meta-style dialog JSON (a list of {role, content}, or a list of such lists),
    /// encoded in the Llama 2-Chat format.
    #[arg(long)]
    dialog: Option<PathBuf>,
    /// Ids to decode, e.g. `1,15043,3186`.
    #[arg(long)]
    decode: Option<String>,
    /// Prepend BOS (with --text or --file).
    #[arg(long)]
    bos: bool,
    /// Append EOS (with --text or --file).
    #[arg(long)]
    eos: bool,
}

fn main() {
    common::run(|| real_main(Args::parse()));
}

/// The text of `path`, or of standard input for `-`.
fn read_text(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    String::from_utf8(bytes).map_err(|e| {
        let name = if path == Path::new("-") {
            "standard input".to_string()
        } else {
            path.display().to_string()
        };
        anyhow::anyhow!(
            "{name} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn real_main(args: Args) -> Result<()> {
    let tok = match &args.tokenizer {
        Some(path) => {
            let path = common::tokenizer_path(path, &args.revision)?;
            common::load_tokenizer(&path)?
        }
        None => common::default_tokenizer()?,
    };
    let text = match args.file.as_deref().or(args.path.as_deref()) {
        Some(path) => Some(read_text(path)?),
        None => args.text.clone(),
    };
    if let Some(text) = &text {
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
