//! Human preference pairs (paper §3.2.1) from JSONL files with TRL's column names.
//!
//! Each row holds `chosen` and `rejected`, either strings (one assistant answer) or message
//! lists (`[{"role", "content"}, …]`, Meta's dialog form), and optionally:
//!
//! - `prompt`: a string (one user turn) or a message list, prepended to both sides; without
//!   it, `chosen` and `rejected` are whole dialogs (TRL's "implicit prompt" form);
//! - `margin`: a number (used with [`MarginKind::Column`]);
//! - `rating`: `significantly_better | better | slightly_better | negligibly_better |
//!   unsure` ([`Rating`], used with [`MarginKind::Small`] / [`MarginKind::Large`] and for
//!   per-bucket accuracy);
//! - `is_safety` (bool) and `category` (string), carried along.
//!
//! Each side is encoded with the exact Llama 2-Chat format of a completed dialog
//! ([`encode_completed_dialog`]): every earlier turn is included, and the response is the
//! final `" {answer} "` followed by EOS. A pair longer than `max_len` tokens keeps both
//! responses whole and truncates the prompt (everything before the final answer) from the
//! left, keeping its leading BOS; both sides keep the same number of prompt tokens at most.
//! A pair whose longer response plus BOS does not fit is skipped and counted.
//!
//! A malformed row, or an unknown rating, is an error naming the file and line.

use std::fs;
use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use llama2::Tokenizer;
use llama2::chat::{LossOn, Message, encode_completed_dialog};
use serde::Deserialize;

use crate::error::RewardError;
use crate::rating::{MarginKind, Rating};

/// One side of a row, or its prompt.
#[derive(Deserialize)]
#[serde(untagged)]
enum Turns {
    Text(String),
    Messages(Vec<Message>),
}

/// One JSONL row as written.
#[derive(Deserialize)]
struct Row {
    chosen: Turns,
    rejected: Turns,
    #[serde(default)]
    prompt: Option<Turns>,
    #[serde(default)]
    margin: Option<f64>,
    #[serde(default)]
    rating: Option<String>,
    #[serde(default)]
    is_safety: Option<bool>,
    #[serde(default)]
    category: Option<String>,
}

/// One preference pair of a file, as dialogs.
#[derive(Clone, Debug, PartialEq)]
pub struct PreferencePair {
    /// The preferred dialog (prompt turns, then the chosen answer).
    pub chosen: Vec<Message>,
    /// The other dialog (same prompt, the rejected answer).
    pub rejected: Vec<Message>,
    /// The `margin` column.
    pub margin: Option<f64>,
    /// The `rating` column.
    pub rating: Option<Rating>,
    /// The `is_safety` column (false when absent).
    pub is_safety: bool,
    /// The `category` column.
    pub category: Option<String>,
    /// The file the row comes from.
    pub path: PathBuf,
    /// 1-based line of the row.
    pub line: usize,
}

/// A pair as token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedPair {
    /// Chosen dialog, BOS … answer EOS.
    pub chosen: Vec<u32>,
    /// Rejected dialog.
    pub rejected: Vec<u32>,
    /// The `margin` column.
    pub margin: Option<f64>,
    /// The preference strength.
    pub rating: Option<Rating>,
    /// Whether the prompt is a safety prompt.
    pub is_safety: bool,
    /// Whether the prompt was truncated to fit.
    pub truncated: bool,
    /// 1-based line of the row in its file.
    pub line: usize,
}

impl EncodedPair {
    /// The loss margin of this pair under `kind`.
    pub fn margin(&self, kind: MarginKind) -> f64 {
        kind.margin(self.rating, self.margin)
    }
}

fn turns(turns: Turns, as_user: bool) -> Vec<Message> {
    match turns {
        Turns::Text(text) if as_user => vec![Message::user(text)],
        Turns::Text(text) => vec![Message::assistant(text)],
        Turns::Messages(messages) => messages,
    }
}

/// Parses the rows of a preference JSONL text; `path` names it in errors. Blank lines are
/// skipped.
pub fn parse_preferences(text: &str, path: &Path) -> Result<Vec<PreferencePair>, RewardError> {
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| RewardError::BadRow {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        for column in ["chosen", "rejected"] {
            if value.get(column).is_none() {
                return Err(bad(format!("missing column `{column}`")));
            }
        }
        let row: Row = serde_json::from_value(value).map_err(|e| {
            bad(format!(
                "{e} (`chosen`, `rejected` and `prompt` are strings or lists of {{role, content}} messages)"
            ))
        })?;
        let rating = match row.rating {
            None => None,
            Some(name) => Some(
                Rating::parse(&name).ok_or_else(|| RewardError::UnknownRating {
                    path: path.to_path_buf(),
                    line: i + 1,
                    rating: name,
                })?,
            ),
        };
        if let Some(margin) = row.margin
            && !margin.is_finite()
        {
            return Err(bad(format!("margin {margin} is not finite")));
        }
        let prompt = row.prompt.map(|p| turns(p, true)).unwrap_or_default();
        let side = |answer: Turns| {
            let mut dialog = prompt.clone();
            dialog.extend(turns(answer, false));
            dialog
        };
        pairs.push(PreferencePair {
            chosen: side(row.chosen),
            rejected: side(row.rejected),
            margin: row.margin,
            rating,
            is_safety: row.is_safety.unwrap_or(false),
            category: row.category,
            path: path.to_path_buf(),
            line: i + 1,
        });
    }
    Ok(pairs)
}

/// Reads the pairs of a preference JSONL file (see the module docs).
pub fn read_preferences(path: &Path) -> Result<Vec<PreferencePair>, RewardError> {
    let text = fs::read_to_string(path).map_err(|source| RewardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_preferences(&text, path)
}

/// A dialog's tokens split into the prompt (everything before the final answer) and the
/// final answer with its EOS.
struct Split {
    tokens: Vec<u32>,
    prompt_len: usize,
}

impl Split {
    fn response_len(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// BOS, then the last `keep − 1` prompt tokens, then the response.
    fn truncated(&self, keep: usize) -> Vec<u32> {
        if keep >= self.prompt_len {
            return self.tokens.clone();
        }
        let mut out = Vec::with_capacity(keep + self.response_len());
        out.push(self.tokens[0]);
        out.extend_from_slice(&self.tokens[self.prompt_len + 1 - keep..]);
        out
    }
}

impl PreferencePair {
    /// Encodes both sides (see the module docs); `None` when the responses cannot fit in
    /// `max_len` tokens.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        max_len: usize,
    ) -> Result<Option<EncodedPair>, RewardError> {
        let split = |dialog: &[Message], side: &'static str| {
            let encoded = encode_completed_dialog(tokenizer, dialog)
                .map_err(|source| RewardError::Chat {
                    path: self.path.clone(),
                    line: self.line,
                    side,
                    source,
                })?
                .with_loss_on(LossOn::LastTurn);
            let prompt_len = encoded
                .is_assistant
                .iter()
                .position(|&a| a)
                .unwrap_or(encoded.tokens.len());
            Ok::<_, RewardError>(Split {
                tokens: encoded.tokens,
                prompt_len,
            })
        };
        let chosen = split(&self.chosen, "chosen")?;
        let rejected = split(&self.rejected, "rejected")?;
        let response = chosen.response_len().max(rejected.response_len());
        // The prompt keeps its BOS plus at least nothing else.
        if response + 1 > max_len {
            return Ok(None);
        }
        let keep = max_len - response;
        let truncated = chosen.prompt_len > keep || rejected.prompt_len > keep;
        Ok(Some(EncodedPair {
            chosen: chosen.truncated(keep),
            rejected: rejected.truncated(keep),
            margin: self.margin,
            rating: self.rating,
            is_safety: self.is_safety,
            truncated,
            line: self.line,
        }))
    }
}

/// Encoded preference pairs, with counts of what did not fit.
#[derive(Clone, Debug, Default)]
pub struct PreferenceDataset {
    /// The pairs that fit.
    pub pairs: Vec<EncodedPair>,
    /// Pairs whose prompt was truncated.
    pub truncated: usize,
    /// Pairs skipped because a response alone does not fit.
    pub skipped: usize,
}

impl PreferenceDataset {
    /// Reads and encodes the pairs of JSONL files, at most `max_len` tokens a side.
    pub fn from_files(
        paths: &[PathBuf],
        tokenizer: &Tokenizer,
        max_len: usize,
    ) -> Result<Self, RewardError> {
        let mut pairs = Vec::new();
        for path in paths {
            pairs.extend(read_preferences(path)?);
        }
        Self::encode(&pairs, tokenizer, max_len)
    }

    /// Encodes parsed pairs.
    pub fn encode(
        pairs: &[PreferencePair],
        tokenizer: &Tokenizer,
        max_len: usize,
    ) -> Result<Self, RewardError> {
        let mut out = Self::default();
        for pair in pairs {
            match pair.encode(tokenizer, max_len)? {
                Some(encoded) => {
                    out.truncated += usize::from(encoded.truncated);
                    out.pairs.push(encoded);
                }
                None => out.skipped += 1,
            }
        }
        Ok(out)
    }
}

impl Dataset<EncodedPair> for PreferenceDataset {
    fn get(&self, index: usize) -> Option<EncodedPair> {
        self.pairs.get(index).cloned()
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama2::chat::Role;

    fn tokenizer() -> Tokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/llama2-tokenizer/tokenizer.model");
        Tokenizer::from_file(path).unwrap()
    }

    fn parse(text: &str) -> Result<Vec<PreferencePair>, RewardError> {
        parse_preferences(text, Path::new("prefs.jsonl"))
    }

    #[test]
    fn string_and_message_columns_give_the_same_dialogs() {
        let text = concat!(
            r#"{"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away.", "rating": "better", "is_safety": true, "category": "greeting"}"#,
            "\n\n",
            r#"{"prompt": [{"role": "user", "content": "Hi?"}], "chosen": [{"role": "assistant", "content": "Hello."}], "rejected": [{"role": "assistant", "content": "Go away."}], "margin": 0.5}"#,
            "\n",
            r#"{"chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}], "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}]}"#,
        );
        let pairs = parse(text).unwrap();
        assert_eq!(pairs.len(), 3);
        for p in &pairs {
            assert_eq!(
                p.chosen,
                [Message::user("Hi?"), Message::assistant("Hello.")]
            );
            assert_eq!(p.rejected[1].content, "Go away.");
        }
        assert_eq!(
            (pairs[0].rating, pairs[0].is_safety),
            (Some(Rating::Better), true)
        );
        assert_eq!(pairs[0].category.as_deref(), Some("greeting"));
        assert_eq!(
            (pairs[1].margin, pairs[1].line, pairs[2].line),
            (Some(0.5), 3, 4)
        );
        assert!(!pairs[2].is_safety);
    }

    #[test]
    fn bad_rows_name_the_file_and_line() {
        let good = r#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#;
        for (row, missing) in [
            ("{not json", None),
            (r#"{"prompt": "a", "chosen": "b"}"#, Some("rejected")),
            (r#"{"chosen": 3, "rejected": "c"}"#, None),
            (r#"{"chosen": "b", "rejected": "c", "margin": "big"}"#, None),
            (
                r#"{"chosen": [{"role": "robot", "content": "x"}], "rejected": "c"}"#,
                None,
            ),
        ] {
            let err = parse(&format!("{good}\n{row}\n")).unwrap_err();
            match &err {
                RewardError::BadRow {
                    path,
                    line,
                    message,
                } => {
                    assert_eq!((path.to_str(), *line), (Some("prefs.jsonl"), 2), "{err}");
                    if let Some(column) = missing {
                        assert!(message.contains(column), "{err}");
                    }
                }
                other => panic!("{row}: {other:?}"),
            }
        }
        let err =
            parse(r#"{"chosen": "b", "rejected": "c", "rating": "much_better"}"#).unwrap_err();
        assert!(
            matches!(&err, RewardError::UnknownRating { line: 1, rating, .. } if rating == "much_better"),
            "{err}"
        );
    }

    #[test]
    fn sides_are_completed_chat_dialogs_ending_with_eos() {
        let tok = tokenizer();
        let pairs = parse(
            r#"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}], "chosen": "6", "rejected": "7"}"#,
        )
        .unwrap();
        let pair = pairs[0].encode(&tok, 512).unwrap().unwrap();
        let expected = [
            tok.encode(
                "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n2+2? [/INST] 4 ",
                true,
                true,
            )
            .unwrap(),
            tok.encode("[INST] 3+3? [/INST] 6 ", true, true).unwrap(),
        ]
        .concat();
        assert_eq!(pair.chosen, expected);
        assert_eq!(*pair.rejected.last().unwrap(), tok.eos_id());
        assert!(!pair.truncated);
        // A side that does not end with an answer is a chat error naming the line.
        let bad = parse(r#"{"chosen": "b", "rejected": "c"}"#).unwrap();
        let err = bad[0].encode(&tok, 512).unwrap_err();
        assert!(
            matches!(
                err,
                RewardError::Chat {
                    line: 1,
                    side: "chosen",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(bad[0].chosen[0].role, Role::Assistant);
    }

    #[test]
    fn long_prompts_are_cut_from_the_left_and_long_responses_skipped() {
        let tok = tokenizer();
        let long = "one two three four five six seven eight nine ten ".repeat(4);
        let row = format!(r#"{{"prompt": "{long}", "chosen": "yes indeed", "rejected": "no"}}"#);
        let pairs = parse(&row).unwrap();
        let full = pairs[0].encode(&tok, 1000).unwrap().unwrap();
        let answer = tok
            .encode("[INST] x [/INST] yes indeed ", true, true)
            .unwrap();
        let head = tok.encode("[INST] x [/INST]", true, false).unwrap();
        let response = answer.len() - head.len();
        let max_len = response + 10;
        let cut = pairs[0].encode(&tok, max_len).unwrap().unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.chosen.len(), max_len);
        assert_eq!(cut.chosen[0], tok.bos_id());
        assert_eq!(
            cut.chosen[1..],
            full.chosen[full.chosen.len() - max_len + 1..]
        );
        // The shorter response keeps the same prompt tokens.
        assert_eq!(cut.rejected[..10], cut.chosen[..10]);
        let data = PreferenceDataset::encode(&pairs, &tok, response).unwrap();
        assert_eq!((data.pairs.len(), data.skipped), (0, 1));
        let data = PreferenceDataset::encode(&pairs, &tok, response + 1).unwrap();
        assert_eq!((data.pairs.len(), data.truncated), (1, 1));
    }

    #[test]
    fn the_synthetic_examples_encode_with_both_tokenizers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = [
            root.join("examples/data/preferences_train.jsonl"),
            root.join("examples/data/preferences_heldout.jsonl"),
        ];
        let small = Tokenizer::from_file(root.join("tests/data/tokenizer/small.model")).unwrap();
        for tok in [tokenizer(), small] {
            let data = PreferenceDataset::from_files(&files, &tok, 256).unwrap();
            assert_eq!(
                (data.pairs.len(), data.skipped, data.truncated),
                (2600, 0, 0)
            );
            assert!(data.pairs.iter().any(|p| p.is_safety));
            for rating in Rating::ALL {
                assert!(
                    data.pairs.iter().any(|p| p.rating == Some(rating)),
                    "{rating:?}"
                );
            }
            assert!(
                data.pairs
                    .iter()
                    .all(|p| p.chosen.len() <= 256 && p.chosen[0] == tok.bos_id())
            );
        }
    }
}
