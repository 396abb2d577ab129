//! Llama 2-Chat prompt format, as built by Meta's `Llama.chat_completion`
//! (llama/generation.py).
//!
//! A leading system message is folded into the first user message as
//! `<<SYS>>\n{system}\n<</SYS>>\n\n{user}`. Each completed (user, assistant)
//! pair is encoded as
//! `encode("[INST] {user.strip()} [/INST] {answer.strip()} ", bos, eos)`,
//! and, for a dialog to be answered, the final user message as
//! `encode("[INST] {user.strip()} [/INST]", bos, no eos)`. `strip` is
//! Python's `str.strip()`. The tags are plain text: they are encoded like any
//! other characters, never as special ids.
//!
//! Assistant span of a completed pair (for loss masking): the pair's tokens
//! from the first position where they differ from the tokens of its prompt
//! part `"[INST] {user.strip()} [/INST]"` encoded alone (with BOS) up to the
//! end of the pair, EOS included. With SentencePiece vocabularies, where `▁`
//! only starts pieces, no piece spans the `]` and the following `▁`, so the
//! prompt part's tokens are a prefix of the pair's tokens and the span is
//! exactly the tokens of `" {answer.strip()} "` followed by EOS.

use super::dialog::{Message, Role};
use super::error::ChatError;
use crate::tokenizer::Tokenizer;

/// Opens an instruction.
pub const B_INST: &str = "[INST]";
/// Closes an instruction.
pub const E_INST: &str = "[/INST]";
/// Opens the system prompt.
pub const B_SYS: &str = "<<SYS>>\n";
/// Closes the system prompt.
pub const E_SYS: &str = "\n<</SYS>>\n\n";
/// Tags whose presence in any message content marks a request as unsafe.
pub const SPECIAL_TAGS: [&str; 4] = [B_INST, E_INST, "<<SYS>>", "<</SYS>>"];
/// The reply Meta's `chat_completion` gives instead of generating for an
/// unsafe request.
pub const UNSAFE_ERROR: &str = "Error: special tags are not allowed as part of the prompt.";

/// Token ids of an encoded dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedDialog {
    /// The token ids, BOS/EOS included.
    pub tokens: Vec<u32>,
    /// For each token, whether it belongs to an assistant answer span (answer
    /// text and its EOS; see the module docs), after
    /// [`with_loss_on`](EncodedDialog::with_loss_on) only to the spans that
    /// are training targets.
    pub is_assistant: Vec<bool>,
    /// Whether any message content contains one of [`SPECIAL_TAGS`]; Meta's
    /// `chat_completion` answers such dialogs with [`UNSAFE_ERROR`].
    pub unsafe_tags: bool,
}

/// Whether any message content contains one of [`SPECIAL_TAGS`].
pub fn has_special_tags(dialog: &[Message]) -> bool {
    dialog
        .iter()
        .any(|m| SPECIAL_TAGS.iter().any(|tag| m.content.contains(tag)))
}

/// Encodes a dialog to be answered by the model, exactly as Meta's
/// `chat_completion`: the dialog must end with a user message, which is left
/// open after `[/INST]`.
pub fn encode_dialog(
    tokenizer: &Tokenizer,
    dialog: &[Message],
) -> Result<EncodedDialog, ChatError> {
    encode(tokenizer, dialog, End::OpenPrompt)
}

/// Encodes a finished dialog ending with an assistant message (fine-tuning
/// data): every (user, assistant) pair is encoded as in [`encode_dialog`],
/// and no open prompt follows.
pub fn encode_completed_dialog(
    tokenizer: &Tokenizer,
    dialog: &[Message],
) -> Result<EncodedDialog, ChatError> {
    encode(tokenizer, dialog, End::Completed)
}

/// How the dialog ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// With a user message awaiting an answer.
    OpenPrompt,
    /// With an assistant message.
    Completed,
}

fn encode(tokenizer: &Tokenizer, dialog: &[Message], end: End) -> Result<EncodedDialog, ChatError> {
    let turns = validate(dialog, end)?;
    let mut tokens = Vec::new();
    let mut is_assistant = Vec::new();
    // With an open prompt the last turn is left over; it is encoded below.
    for pair in turns.chunks_exact(2) {
        let head = format!("{B_INST} {} {E_INST}", python_strip(&pair[0]));
        let full = format!("{head} {} ", python_strip(&pair[1]));
        let pair_tokens = tokenizer.encode(&full, true, true)?;
        let head_tokens = tokenizer.encode(&head, true, false)?;
        let start = pair_tokens
            .iter()
            .zip(&head_tokens)
            .take_while(|(a, b)| a == b)
            .count();
        is_assistant.extend((0..pair_tokens.len()).map(|i| i >= start));
        tokens.extend(pair_tokens);
    }
    if end == End::OpenPrompt {
        let last = &turns[turns.len() - 1];
        let prompt = tokenizer.encode(
            &format!("{B_INST} {} {E_INST}", python_strip(last)),
            true,
            false,
        )?;
        is_assistant.resize(is_assistant.len() + prompt.len(), false);
        tokens.extend(prompt);
    }
    Ok(EncodedDialog {
        tokens,
        is_assistant,
        unsafe_tags: has_special_tags(dialog),
    })
}

/// Checks the dialog's structure and returns the contents of the alternating
/// user/assistant turns, with the system message folded into the first one.
fn validate(dialog: &[Message], end: End) -> Result<Vec<String>, ChatError> {
    let Some(first) = dialog.first() else {
        return Err(ChatError::EmptyDialog);
    };
    if let Some(index) = dialog.iter().skip(1).position(|m| m.role == Role::System) {
        return Err(ChatError::SystemNotFirst { index: index + 1 });
    }
    // (index in `dialog`, role, content) of each turn.
    let mut turns: Vec<(usize, Role, String)> = Vec::with_capacity(dialog.len());
    let rest = if first.role == Role::System {
        let second = dialog.get(1).ok_or(ChatError::SystemOnly)?;
        let content = format!("{B_SYS}{}{E_SYS}{}", first.content, second.content);
        turns.push((1, second.role, content));
        2
    } else {
        0
    };
    turns.extend(
        dialog
            .iter()
            .enumerate()
            .skip(rest)
            .map(|(i, m)| (i, m.role, m.content.clone())),
    );
    for (k, (index, role, _)) in turns.iter().enumerate() {
        let expected = if k % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if *role != expected {
            return Err(ChatError::UnexpectedRole {
                index: *index,
                expected,
                found: *role,
            });
        }
    }
    let found = turns[turns.len() - 1].1;
    match end {
        End::OpenPrompt if found != Role::User => Err(ChatError::LastNotUser { found }),
        End::Completed if found != Role::Assistant => Err(ChatError::LastNotAssistant { found }),
        _ => Ok(turns.into_iter().map(|(_, _, content)| content).collect()),
    }
}

/// Python's `str.strip()`: removes leading and trailing characters for which
/// `str.isspace()` holds (Unicode whitespace plus U+001C..U+001F).
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::testdata::{llama2, test_data_dir};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct ValidCase {
        name: String,
        mode: String,
        dialog: Vec<Message>,
        tokens: Vec<u32>,
        is_assistant: Vec<bool>,
        #[serde(rename = "unsafe")]
        unsafe_tags: bool,
        answers: Vec<String>,
    }

    #[derive(Deserialize)]
    struct InvalidCase {
        name: String,
        mode: String,
        dialog: Vec<Message>,
        error: String,
    }

    #[derive(Deserialize)]
    struct Cases {
        valid: Vec<ValidCase>,
        invalid: Vec<InvalidCase>,
    }

    fn cases() -> Cases {
        let path = test_data_dir().join("chat/dialogs.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn run(mode: &str, dialog: &[Message]) -> Result<EncodedDialog, ChatError> {
        match mode {
            "prompt" => encode_dialog(llama2(), dialog),
            "completed" => encode_completed_dialog(llama2(), dialog),
            other => panic!("unknown mode {other}"),
        }
    }

    fn kind(err: &ChatError) -> &'static str {
        match err {
            ChatError::EmptyDialog => "empty_dialog",
            ChatError::SystemNotFirst { .. } => "system_not_first",
            ChatError::SystemOnly => "system_only",
            ChatError::UnexpectedRole { .. } => "unexpected_role",
            ChatError::LastNotUser { .. } => "last_not_user",
            ChatError::LastNotAssistant { .. } => "last_not_assistant",
            _ => "other",
        }
    }

    #[test]
    fn valid_dialogs_match_meta() {
        let cases = cases();
        assert!(cases.valid.len() >= 12);
        for case in &cases.valid {
            let enc =
                run(&case.mode, &case.dialog).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(enc.tokens, case.tokens, "{}", case.name);
            assert_eq!(enc.is_assistant, case.is_assistant, "{}", case.name);
            assert_eq!(enc.unsafe_tags, case.unsafe_tags, "{}", case.name);
        }
    }

    #[test]
    fn assistant_spans_decode_to_the_answers() {
        let tok = llama2();
        for case in cases().valid {
            let enc = run(&case.mode, &case.dialog).unwrap();
            // Split the marked tokens into maximal runs; each ends with EOS.
            let mut spans: Vec<Vec<u32>> = Vec::new();
            for (i, (&t, &a)) in enc.tokens.iter().zip(&enc.is_assistant).enumerate() {
                if a {
                    if i == 0 || !enc.is_assistant[i - 1] {
                        spans.push(Vec::new());
                    }
                    spans.last_mut().unwrap().push(t);
                }
            }
            assert_eq!(spans.len(), case.answers.len(), "{}", case.name);
            for (span, answer) in spans.iter().zip(&case.answers) {
                assert_eq!(*span.last().unwrap(), tok.eos_id(), "{}", case.name);
                let text = tok.decode(&span[..span.len() - 1]).unwrap();
                assert_eq!(text, format!("{answer} "), "{}", case.name);
            }
            if case.mode == "prompt" {
                assert!(!enc.is_assistant.last().unwrap(), "{}", case.name);
            }
        }
    }

    #[test]
    fn invalid_dialogs_give_the_expected_error() {
        let cases = cases();
        assert!(!cases.invalid.is_empty());
        for case in &cases.invalid {
            let err = run(&case.mode, &case.dialog).unwrap_err();
            assert_eq!(kind(&err), case.error, "{}: {err}", case.name);
        }
    }

    #[test]
    fn error_details_point_at_the_message() {
        let tok = llama2();
        let d = [Message::user("a"), Message::user("b")];
        match encode_dialog(tok, &d).unwrap_err() {
            ChatError::UnexpectedRole {
                index,
                expected,
                found,
            } => {
                assert_eq!((index, expected, found), (1, Role::Assistant, Role::User));
            }
            e => panic!("{e:?}"),
        }
        let d = [Message::system("s"), Message::assistant("a")];
        let err = encode_dialog(tok, &d).unwrap_err();
        assert!(
            matches!(
                err,
                ChatError::UnexpectedRole {
                    index: 1,
                    found: Role::Assistant,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "message 1 is from the assistant, expected the user (roles must alternate user/assistant, starting with user)"
        );
        let d = [
            Message::user("a"),
            Message::assistant("b"),
            Message::system("c"),
        ];
        assert!(matches!(
            encode_dialog(tok, &d),
            Err(ChatError::SystemNotFirst { index: 2 })
        ));
    }

    #[test]
    fn single_turn_layout() {
        let tok = llama2();
        let enc = encode_dialog(tok, &[Message::user("  Hi there \n")]).unwrap();
        assert_eq!(
            enc.tokens,
            tok.encode("[INST] Hi there [/INST]", true, false).unwrap()
        );
        assert!(enc.is_assistant.iter().all(|&a| !a));
        assert!(!enc.unsafe_tags);
        let enc = encode_dialog(tok, &[Message::system("S"), Message::user("U")]).unwrap();
        let expected = tok
            .encode("[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]", true, false)
            .unwrap();
        assert_eq!(enc.tokens, expected);
    }

    #[test]
    fn python_strip_matches_str_strip() {
        assert_eq!(python_strip("\u{1c}\u{1f} a b \u{3000}\u{a0}\u{85}"), "a b");
        assert_eq!(python_strip("\u{200b}x\u{200b}"), "\u{200b}x\u{200b}");
        assert_eq!(python_strip(" \t\n\r\u{b}\u{c}"), "");
    }
}
