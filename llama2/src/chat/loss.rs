//! Which answers of a completed dialog are training targets.
//!
//! Supervised fine-tuning (paper §3.1) trains on every assistant answer and
//! "zero[es] out the loss on tokens from the user prompt". Ghost Attention
//! (§3.3) trains on the final answer only: "we simply set the loss to 0 for
//! all the tokens from the previous turns, including assistant messages".

use serde::{Deserialize, Serialize};

use super::format::EncodedDialog;

/// The answers of a completed dialog that carry the loss.
///
/// In JSON (the `"loss_on"` field of a fine-tuning row) the values are
/// `"assistant_turns"` and `"last_turn"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    /// Every assistant answer and its EOS (paper §3.1).
    #[default]
    AssistantTurns,
    /// The final assistant answer and its EOS; the system message, every user
    /// turn and every earlier answer are context (Ghost Attention, §3.3).
    LastTurn,
}

impl LossOn {
    /// The JSON name (`"assistant_turns"`, `"last_turn"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LossOn::AssistantTurns => "assistant_turns",
            LossOn::LastTurn => "last_turn",
        }
    }
}

impl EncodedDialog {
    /// Restricts [`is_assistant`](EncodedDialog::is_assistant) to the answers
    /// selected by `loss_on`. For [`LossOn::LastTurn`] only the final answer
    /// span is kept: the last maximal run of marked tokens, which is the last
    /// (user, assistant) pair's answer and EOS, since every pair starts with
    /// an unmarked BOS.
    pub fn with_loss_on(mut self, loss_on: LossOn) -> Self {
        if loss_on == LossOn::LastTurn {
            let end = self
                .is_assistant
                .iter()
                .rposition(|&a| a)
                .map_or(0, |i| i + 1);
            let start = self.is_assistant[..end]
                .iter()
                .rposition(|&a| !a)
                .map_or(0, |i| i + 1);
            for (i, a) in self.is_assistant.iter_mut().enumerate() {
                *a = *a && (start..end).contains(&i);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Message, encode_completed_dialog, encode_dialog};
    use crate::tokenizer::testdata::llama2;

    #[test]
    fn json_names() {
        assert_eq!(
            serde_json::to_string(&LossOn::LastTurn).unwrap(),
            "\"last_turn\""
        );
        let v: LossOn = serde_json::from_str("\"assistant_turns\"").unwrap();
        assert_eq!(v, LossOn::AssistantTurns);
        assert_eq!(LossOn::LastTurn.as_str(), "last_turn");
        assert!(serde_json::from_str::<LossOn>("\"last\"").is_err());
    }

    /// The kept span is the last answer: everything before it is the
    /// Meta-encoded prompt of the last turn.
    #[test]
    fn last_turn_keeps_the_final_answer() {
        let tok = llama2();
        let dialog = [
            Message::system("Be brief."),
            Message::user("One?"),
            Message::assistant("Uno."),
            Message::user("Two?"),
            Message::assistant("Dos."),
        ];
        let all = encode_completed_dialog(tok, &dialog).unwrap();
        let last = all.clone().with_loss_on(LossOn::LastTurn);
        assert_eq!(last.tokens, all.tokens);
        let prompt = encode_dialog(tok, &dialog[..4]).unwrap().tokens;
        assert_eq!(&all.tokens[..prompt.len()], &prompt[..]);
        for (i, &a) in last.is_assistant.iter().enumerate() {
            assert_eq!(a, i >= prompt.len(), "position {i}");
        }
        assert!(all.is_assistant[..prompt.len()].iter().any(|&a| a));
        let same = all.clone().with_loss_on(LossOn::AssistantTurns);
        assert_eq!(same, all);
    }
}
