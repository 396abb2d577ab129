//! Supervised fine-tuning dataset (paper §3.1, "Fine-Tuning Details").
//!
//! Rows of a JSONL file are either `{"messages": [{"role", "content"}, …]}`
//! (an optional system message, then user and assistant turns alternating,
//! ending with an assistant turn) or `{"prompt": …, "completion": …}` (one user
//! turn and its answer). Each row is encoded in the exact Llama 2-Chat format
//! by [`encode_completed_dialog`]; as in the paper, "we zero-out the loss on
//! tokens from the user prompt": only the assistant answers and their EOS are
//! targets ([`EncodedDialog::is_assistant`]), every other target is
//! [`IGNORE_INDEX`](super::IGNORE_INDEX).
//!
//! A row may add `"loss_on": "last_turn"` ([`LossOn`]): then only the final
//! answer and its EOS are targets and every earlier turn, earlier answers
//! included, is context. Ghost Attention data (§3.3) is written this way. The
//! default, `"assistant_turns"`, trains every answer. Other fields of a row
//! are ignored.
//!
//! With packing on, consecutive examples are concatenated into windows of
//! `seq_len + 1` tokens (BOS/EOS of the format separate them, as the paper
//! "concatenates all the prompts and answers"); an example that does not fit
//! in the rest of a window starts the next one, the rest is padded with EOS and
//! masked. A target is never taken across an example boundary: the first token
//! of each example (its BOS) is never a target. An example longer than a
//! window keeps its first `seq_len + 1` tokens, unless none of those is a
//! target (a long prompt, or a last-turn example whose earlier turns fill the
//! window): then it keeps the window that ends with its last target.

use std::fs;
use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use serde::Deserialize;

use super::error::DataError;
use super::window::TokenWindow;
use crate::chat::{EncodedDialog, LossOn, Message, encode_completed_dialog};
use crate::tokenizer::Tokenizer;

/// One parsed JSONL row.
#[derive(Deserialize)]
struct Row {
    messages: Option<Vec<Message>>,
    prompt: Option<String>,
    completion: Option<String>,
    #[serde(default)]
    loss_on: LossOn,
}

/// One fine-tuning example of a JSONL file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftExample {
    /// The dialog, ending with an assistant answer.
    pub messages: Vec<Message>,
    /// Which answers are targets.
    pub loss_on: LossOn,
    /// 1-based line of the row in its file.
    pub line: usize,
}

impl SftExample {
    /// Encodes the dialog with the targets chosen by [`loss_on`](Self::loss_on).
    pub fn encode(&self, tokenizer: &Tokenizer) -> Result<EncodedDialog, crate::chat::ChatError> {
        Ok(encode_completed_dialog(tokenizer, &self.messages)?.with_loss_on(self.loss_on))
    }
}

/// Reads the examples of an SFT JSONL file; a malformed row is a
/// [`DataError::BadRow`] naming the file and line.
pub fn read_sft_examples(path: &Path) -> Result<Vec<SftExample>, DataError> {
    let text = fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Row =
            serde_json::from_str(line).map_err(|e| DataError::bad_row(path, i + 1, e))?;
        let messages = match row {
            Row {
                messages: Some(messages),
                prompt: None,
                completion: None,
                ..
            } => messages,
            Row {
                messages: None,
                prompt: Some(prompt),
                completion: Some(completion),
                ..
            } => vec![Message::user(prompt), Message::assistant(completion)],
            _ => {
                return Err(DataError::bad_row(
                    path,
                    i + 1,
                    "expected either \"messages\" or both \"prompt\" and \"completion\"",
                ));
            }
        };
        examples.push(SftExample {
            messages,
            loss_on: row.loss_on,
            line: i + 1,
        });
    }
    Ok(examples)
}

/// Reads the dialogs of an SFT JSONL file (see [`read_sft_examples`], which
/// also gives each row's [`LossOn`]).
pub fn read_sft_jsonl(path: &Path) -> Result<Vec<Vec<Message>>, DataError> {
    Ok(read_sft_examples(path)?
        .into_iter()
        .map(|e| e.messages)
        .collect())
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
            for example in read_sft_examples(path)? {
                let e = example
                    .encode(tokenizer)
                    .map_err(|err| DataError::chat(path, example.line, err))?;
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
            let (start, end) = kept_span(&example.is_assistant, cap);
            if end - start < example.tokens.len() {
                truncated += 1;
            }
            if !pack || tokens.len() + (end - start) > cap {
                flush(&mut tokens, &mut trained, &mut windows);
            }
            tokens.extend_from_slice(&example.tokens[start..end]);
            // The first token of an example is never a target: its predecessor
            // belongs to another example.
            trained.push(false);
            trained.extend_from_slice(&example.is_assistant[start + 1..end]);
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

/// The `start..end` tokens of an example kept in a window of `cap` tokens:
/// all of them when they fit, else the first `cap` if that holds a target
/// (position ≥ 1), else the `cap` ending with the last target.
fn kept_span(is_target: &[bool], cap: usize) -> (usize, usize) {
    let n = is_target.len();
    if n <= cap || is_target[1..cap].contains(&true) {
        return (0, n.min(cap));
    }
    match is_target.iter().rposition(|&t| t) {
        Some(last) => (last + 1 - cap, last + 1),
        None => (0, cap),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::testdata::llama2;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("rows.jsonl");
        fs::write(&path, text).unwrap();
        path
    }

    const DIALOG: &str = r#"[{"role": "user", "content": "One?"}, {"role": "assistant", "content": "Uno."}, {"role": "user", "content": "Two?"}, {"role": "assistant", "content": "Dos."}]"#;

    #[test]
    fn long_examples_keep_a_window_with_targets() {
        const IGNORE: i64 = crate::train::data::IGNORE_INDEX;
        let example = |prompt: usize, answer: usize| EncodedDialog {
            tokens: (0..(prompt + answer) as u32).collect(),
            is_assistant: (0..prompt + answer).map(|i| i >= prompt).collect(),
            unsafe_tags: false,
        };
        // The answer starts inside the first window: keep the start.
        let data = SftDataset::from_encoded(&[example(5, 10)], 7, false, 99);
        assert_eq!(data.truncated, 1);
        assert_eq!(data.windows()[0].inputs, vec![0, 1, 2, 3, 4, 5, 6]);
        // A prompt longer than the window: keep the window ending with the answer.
        let data = SftDataset::from_encoded(&[example(12, 3)], 7, false, 99);
        assert_eq!(data.truncated, 1);
        let w = &data.windows()[0];
        assert_eq!(w.inputs, vec![7, 8, 9, 10, 11, 12, 13]);
        // Targets 12, 13, 14 (the answer), the first token never one.
        assert_eq!(w.targets, vec![IGNORE, IGNORE, IGNORE, IGNORE, 12, 13, 14]);
        // Fitting examples are untouched.
        let data = SftDataset::from_encoded(&[example(3, 2)], 7, false, 99);
        assert_eq!(data.truncated, 0);
    }

    #[test]
    fn loss_on_is_read_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &format!(
                "{{\"messages\": {DIALOG}}}\n\n{{\"messages\": {DIALOG}, \"loss_on\": \"last_turn\", \"instruction\": \"Speak in Spanish.\"}}\n{{\"prompt\": \"a\", \"completion\": \"b\", \"loss_on\": \"assistant_turns\"}}\n"
            ),
        );
        let rows = read_sft_examples(&path).unwrap();
        let summary: Vec<(LossOn, usize, usize)> = rows
            .iter()
            .map(|r| (r.loss_on, r.line, r.messages.len()))
            .collect();
        assert_eq!(
            summary,
            [
                (LossOn::AssistantTurns, 1, 4),
                (LossOn::LastTurn, 3, 4),
                (LossOn::AssistantTurns, 4, 2)
            ]
        );
        assert_eq!(rows[0].messages, rows[1].messages);

        // The last-turn row trains a strict subset of the all-turns row: the
        // final answer span.
        let tok = llama2();
        let data = SftDataset::from_files(std::slice::from_ref(&path), tok, 64, false).unwrap();
        let [all, last, _] = data.windows() else {
            panic!("{} windows", data.windows().len())
        };
        assert_eq!(all.inputs, last.inputs);
        let prompt_len = crate::chat::encode_dialog(tok, &rows[0].messages[..3])
            .unwrap()
            .tokens
            .len();
        for i in 0..64 {
            let expected = if i + 1 >= prompt_len {
                all.targets[i]
            } else {
                super::super::IGNORE_INDEX
            };
            assert_eq!(last.targets[i], expected, "target {i}");
        }
        assert!(all.n_targets() > last.n_targets());
    }

    #[test]
    fn unknown_loss_on_is_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &format!(
                "{{\"messages\": {DIALOG}}}\n{{\"messages\": {DIALOG}, \"loss_on\": \"last\"}}\n"
            ),
        );
        match read_sft_examples(&path) {
            Err(DataError::BadRow {
                path: p,
                line,
                message,
            }) => {
                assert_eq!((p, line), (path.clone(), 2));
                assert!(message.contains("last_turn"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
