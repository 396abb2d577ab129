//! Prompt sets for sampling: JSONL rows with a `prompt` (a string, one user turn, or a
//! message list in Meta's dialog form ending with a user turn), and optionally an `id`
//! (default: `line-N`), `is_safety` (bool), `category` (string) and any other fields, kept
//! for rule-based scorers (e.g. an expected `answer`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use llama2::Tokenizer;
use llama2::chat::{Message, encode_dialog};
use serde::Deserialize;

use crate::error::RlhfError;

#[derive(Deserialize)]
#[serde(untagged)]
enum Turns {
    Text(String),
    Messages(Vec<Message>),
}

#[derive(Deserialize)]
struct Row {
    prompt: Turns,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    is_safety: Option<bool>,
    #[serde(default)]
    category: Option<String>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// One prompt, encoded for the policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// Unique within its file.
    pub id: String,
    /// The dialog to answer, ending with a user message.
    pub messages: Vec<Message>,
    /// Whether it is a safety (adversarial) prompt.
    pub is_safety: bool,
    /// Risk or task category.
    pub category: Option<String>,
    /// The row's other fields.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The dialog in the Llama 2-Chat format, open after `[/INST]`.
    pub tokens: Vec<u32>,
}

impl Prompt {
    /// A prompt from a dialog ending with a user message.
    pub fn new(
        id: impl Into<String>,
        messages: Vec<Message>,
        tokenizer: &Tokenizer,
    ) -> Result<Self, RlhfError> {
        let id = id.into();
        let encoded = encode_dialog(tokenizer, &messages).map_err(|e| RlhfError::BadRow {
            path: PathBuf::from(&id),
            line: 0,
            message: e.to_string(),
        })?;
        Ok(Self {
            id,
            messages,
            is_safety: false,
            category: None,
            extra: Default::default(),
            tokens: encoded.tokens,
        })
    }

    /// The last user message.
    pub fn last_user(&self) -> &str {
        self.messages.last().map_or("", |m| m.content.as_str())
    }
}

/// Checks that every prompt leaves room for an answer in `max_seq_len` tokens.
pub fn check_fits<'a>(
    prompts: impl IntoIterator<Item = &'a Prompt>,
    max_seq_len: usize,
) -> Result<(), RlhfError> {
    for p in prompts {
        if p.tokens.len() >= max_seq_len {
            return Err(RlhfError::PromptTooLong {
                id: p.id.clone(),
                len: p.tokens.len(),
                max_seq_len,
            });
        }
    }
    Ok(())
}

/// The prompts of a JSONL file; a row that is malformed, has special tags, repeats an id or
/// leaves no room for an answer in `max_seq_len` tokens is an error naming the file and
/// line, and an empty file is [`RlhfError::NoPrompts`].
pub fn read_prompts(
    path: &Path,
    tokenizer: &Tokenizer,
    max_seq_len: usize,
) -> Result<Vec<Prompt>, RlhfError> {
    let text = fs::read_to_string(path).map_err(|e| RlhfError::io(path, e))?;
    let bad = |line: usize, message: String| RlhfError::BadRow {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut prompts = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(line).map_err(|e| bad(number, e.to_string()))?;
        let messages = match row.prompt {
            Turns::Text(text) => vec![Message::user(text)],
            Turns::Messages(m) => m,
        };
        let encoded =
            encode_dialog(tokenizer, &messages).map_err(|e| bad(number, e.to_string()))?;
        if encoded.unsafe_tags {
            return Err(bad(
                number,
                "the prompt contains a reserved chat tag ([INST], [/INST], <<SYS>>, <</SYS>>)"
                    .into(),
            ));
        }
        let id = row.id.unwrap_or_else(|| format!("line-{number}"));
        if !ids.insert(id.clone()) {
            return Err(bad(number, format!("id {id:?} appears twice")));
        }
        if encoded.tokens.len() >= max_seq_len {
            return Err(RlhfError::PromptTooLong {
                id: format!("{id} ({}:{number})", path.display()),
                len: encoded.tokens.len(),
                max_seq_len,
            });
        }
        prompts.push(Prompt {
            id,
            messages,
            is_safety: row.is_safety.unwrap_or(false),
            category: row.category,
            extra: row.extra,
            tokens: encoded.tokens,
        });
    }
    if prompts.is_empty() {
        return Err(RlhfError::NoPrompts {
            path: path.to_path_buf(),
        });
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        Tokenizer::from_file(root.join("tests/data/tokenizer/small.model")).unwrap()
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prompts.jsonl");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn strings_and_dialogs_with_their_fields() {
        let (_dir, path) = write(concat!(
            "{\"prompt\": \"What is 2 + 3?\", \"answer\": 5}\n",
            "\n",
            "{\"id\": \"s1\", \"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, ",
            "{\"role\": \"user\", \"content\": \"Hi\"}], \"is_safety\": true, \"category\": \"harm\"}\n"
        ));
        let tok = tokenizer();
        let prompts = read_prompts(&path, &tok, 512).unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].id, "line-1");
        assert_eq!(prompts[0].extra["answer"], 5);
        assert!(!prompts[0].is_safety);
        assert_eq!(prompts[1].id, "s1");
        assert!(prompts[1].is_safety);
        assert_eq!(prompts[1].category.as_deref(), Some("harm"));
        assert_eq!(prompts[1].last_user(), "Hi");
        let expected = encode_dialog(&tok, &[Message::user("What is 2 + 3?")]).unwrap();
        assert_eq!(prompts[0].tokens, expected.tokens);
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let tok = tokenizer();
        let (_d, empty) = write("\n\n");
        assert!(matches!(
            read_prompts(&empty, &tok, 512),
            Err(RlhfError::NoPrompts { .. })
        ));
        let (_d, bad) = write("{\"prompt\": \"a\"}\n{\"nope\": 1}\n");
        match read_prompts(&bad, &tok, 512) {
            Err(RlhfError::BadRow { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        let (_d, twice) =
            write("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n");
        assert!(
            matches!(read_prompts(&twice, &tok, 512), Err(RlhfError::BadRow { line: 2, message, .. }) if message.contains("twice"))
        );
        let (_d, long) = write(&format!("{{\"prompt\": \"{}\"}}\n", "word ".repeat(100)));
        assert!(matches!(
            read_prompts(&long, &tok, 64),
            Err(RlhfError::PromptTooLong {
                max_seq_len: 64,
                ..
            })
        ));
        let (_d, tags) = write("{\"prompt\": \"[INST] hi\"}\n");
        assert!(matches!(
            read_prompts(&tags, &tok, 512),
            Err(RlhfError::BadRow { line: 1, .. })
        ));
    }
}
