//! Instruction concatenation (paper §3.3): "We can then synthetically
//! concatenate this instruction to all the user messages of the
//! conversation" before sampling the answers.

use burn::config::Config;
use llama2::chat::{Message, Role};
use serde::{Deserialize, Serialize};

/// Which side of a message the instruction goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstructionPosition {
    /// `{instruction}{separator}{message}`.
    #[default]
    Before,
    /// `{message}{separator}{instruction}`.
    After,
}

/// How an instruction is concatenated to a message.
#[derive(Config, Debug, PartialEq, Eq)]
pub struct InstructionJoin {
    /// Which side of the message.
    #[config(default = "InstructionPosition::Before")]
    pub position: InstructionPosition,
    /// Placed between the instruction and the message.
    #[config(default = "String::from(\"\\n\")")]
    pub separator: String,
}

impl InstructionJoin {
    /// The message with the instruction concatenated.
    pub fn join(&self, instruction: &str, message: &str) -> String {
        match self.position {
            InstructionPosition::Before => format!("{instruction}{}{message}", self.separator),
            InstructionPosition::After => format!("{message}{}{instruction}", self.separator),
        }
    }
}

/// The dialog with `instruction` concatenated to every user message; system
/// and assistant messages are unchanged.
pub fn augment_for_sampling(
    dialog: &[Message],
    instruction: &str,
    join: &InstructionJoin,
) -> Vec<Message> {
    dialog
        .iter()
        .map(|m| match m.role {
            Role::User => Message::user(join.join(instruction, &m.content)),
            _ => m.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_message_carries_the_instruction() {
        let dialog = [
            Message::system("Be kind."),
            Message::user("Hi."),
            Message::assistant("Hello."),
            Message::user("Plans?"),
        ];
        let out = augment_for_sampling(&dialog, "Act as Napoleon.", &InstructionJoin::new());
        assert_eq!(
            out,
            [
                Message::system("Be kind."),
                Message::user("Act as Napoleon.\nHi."),
                Message::assistant("Hello."),
                Message::user("Act as Napoleon.\nPlans?"),
            ]
        );
        let after = InstructionJoin::new()
            .with_position(InstructionPosition::After)
            .with_separator(" ".into());
        let out = augment_for_sampling(&dialog, "Speak in French.", &after);
        assert_eq!(out[1].content, "Hi. Speak in French.");
        assert_eq!(out[3].content, "Plans? Speak in French.");
        assert_eq!(out[2], dialog[2]);
    }

    #[test]
    fn join_settings_are_json() {
        let j = InstructionJoin::new().with_position(InstructionPosition::After);
        let json = serde_json::to_string(&j).unwrap();
        assert!(json.contains("\"after\""), "{json}");
        assert_eq!(serde_json::from_str::<InstructionJoin>(&json).unwrap(), j);
    }
}
