//! Supervised fine-tuning dataset (paper §3.1, "Fine-Tuning Details").
//!
//! Rows of a JSONL file are either `{"messages": [{"role", "content"}, …]}`
//! (an optional system message, then user and assistant turns alternating,
//! ending with an assistant turn) or `{"prompt": …, "completion": …}` (one user
//! turn and its answer). Each row is encoded in the exact Llama 2-Chat format
//! by [`encode_completed_dialog`]; as in the paper, "we zero-out the loss on
//! tokens from the user prompt": only the assistant answers and their EOS are
//! targets ([`EncodedDialog::is_assistant`]), every other target is
//! [`IGNORE_INDEX`].
//!
//! With packing on, consecutive examples are concatenated into windows of
//! `seq_len + 1` tokens (BOS/EOS of the format separate them, as the paper
//! "concatenates all the prompts and answers"); an example that does not fit
//! in the rest of a window starts the next one, the rest is padded with EOS and
//! masked. A target is never taken across an example boundary: the first token
//! of each example (its BOS) is never a target. Examples longer than a window
//! are truncated to it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use serde::Deserialize;

use super::error::DataError;
use super::window::TokenWindow;
use crate::chat::{EncodedDialog, Message, encode_completed_dialog};
use crate::tokenizer::Tokenizer;

/// One parsed JSONL row.
#[derive(Deserialize)]
struct Row {
    messages: Option<Vec<Message>>,
    prompt: Option<String>,
    completion: Option<String>,
}

/// Reads the dialogs of an SFT JSONL file; a malformed row is a
/// [`DataError::BadRow`] naming the file and line.
pub fn read_sft_jsonl(path: &Path) -> Result<Vec<Vec<Message>>, DataError> {
    let text = fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut dialogs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Row =
            serde_json::from_str(line).map_err(|e| DataError::bad_row(path, i + 1, e))?;
        let dialog = match row {
            Row {
                messages: Some(messages),
                prompt: None,
                completion: None,
            } => messages,
            Row {
                messages: None,
                prompt: Some(prompt),
                completion: Some(completion),
            } => vec![Message::user(prompt), Message::assistant(completion)],
            _ => {
                return Err(DataError::bad_row(
                    path,
                    i + 1,
                    "expected either \"messages\" or both \"prompt\" and \"completion\"",
                ));
            }
        };
        dialogs.push(dialog);
    }
    Ok(dialogs)
}

/// Encoded SFT examples packed into fixed windows.
#[derive(Clone, Debug)]
pub struct SftDataset {
    windows: Vec<TokenWindow>,
    /// Number of examples that were longer than a window and truncated.
    pub truncated: usize,
    /// Number of examples.
    pub examples: usize,
}

impl SftDataset {
    /// Reads, encodes and packs the rows of JSONL files.
    pub fn from_files(
        paths: &[PathBuf],
        tokenizer: &Tokenizer,
        seq_len: usize,
        pack: bool,
    ) -> Result<Self, DataError> {
        let mut encoded = Vec::new();
        for path in paths {
            let text = fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
            let lines: Vec<usize> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, _)| i + 1)
                .collect();
            for (dialog, line) in read_sft_jsonl(path)?.into_iter().zip(lines) {
                let e = encode_completed_dialog(tokenizer, &dialog)
                    .map_err(|err| DataError::chat(path, line, err))?;
                encoded.push(e);
            }
        }
        Ok(Self::from_encoded(
            &encoded,
            seq_len,
            pack,
            tokenizer.eos_id(),
        ))
    }

    /// Packs encoded dialogs (see the module docs); `pad` fills the unused end
    /// of a window (masked).
    pub fn from_encoded(examples: &[EncodedDialog], seq_len: usize, pack: bool, pad: u32) -> Self {
        let cap = seq_len + 1;
        let mut windows = Vec::new();
        let mut truncated = 0;
        let mut tokens: Vec<u32> = Vec::with_capacity(cap);
        let mut trained: Vec<bool> = Vec::with_capacity(cap);
        let flush = |tokens: &mut Vec<u32>, trained: &mut Vec<bool>, out: &mut Vec<TokenWindow>| {
            if tokens.is_empty() {
                return;
            }
            tokens.resize(cap, pad);
            trained.resize(cap, false);
            out.push(TokenWindow::from_tokens(tokens, trained));
            tokens.clear();
            trained.clear();
        };
        for example in examples {
            let mut n = example.tokens.len();
            if n > cap {
                truncated += 1;
                n = cap;
            }
            if !pack || tokens.len() + n > cap {
                flush(&mut tokens, &mut trained, &mut windows);
            }
            tokens.extend_from_slice(&example.tokens[..n]);
            // The first token of an example is never a target: its predecessor
            // belongs to another example.
            trained.push(false);
            trained.extend_from_slice(&example.is_assistant[1..n]);
        }
        flush(&mut tokens, &mut trained, &mut windows);
        Self {
            windows,
            truncated,
            examples: examples.len(),
        }
    }

    /// The packed windows.
    pub fn windows(&self) -> &[TokenWindow] {
        &self.windows
    }
}

impl Dataset<TokenWindow> for SftDataset {
    fn get(&self, index: usize) -> Option<TokenWindow> {
        self.windows.get(index).cloned()
    }

    fn len(&self) -> usize {
        self.windows.len()
    }
}
