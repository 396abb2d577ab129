//! A Ghost Attention training example (paper §3.3): "we can drop [the
//! instruction] in all but the first turn", and "set the loss to 0 for all
//! the tokens from the previous turns, including assistant messages".
//!
//! The example is the dialog with the instruction's training text only in
//! the first user turn (or in the system message), the sampled answers, and
//! [`LossOn::LastTurn`]: encoded with [`encode_completed_dialog`], the only
//! targets are the final answer and its EOS. As a JSONL row it is a
//! fine-tuning row of `llama2`'s SFT dataset:
//!
//! ```json
//! {"messages": [{"role": "user", "content": "Act as Napoleon.\nHi."}, …],
//!  "loss_on": "last_turn",
//!  "instruction": {"text": "Always act as Napoleon from now.", "training_text": "Figure: Napoleon.", …}}
//! ```

use llama2::Tokenizer;
use llama2::chat::{ChatError, EncodedDialog, LossOn, Message, encode_completed_dialog};
use serde::{Deserialize, Serialize};

use super::augment::InstructionJoin;
use super::dialog::GattDialog;
use super::instruction::Instruction;

/// Where the instruction goes in the training example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstructionPlacement {
    /// Concatenated to the first user message only (with the same
    /// [`InstructionJoin`] as when sampling).
    #[default]
    FirstUser,
    /// As the system message; with a system message already there, after it,
    /// joined by the [`InstructionJoin`] separator.
    System,
}

/// The training dialog of the first `answers.len()` turns of `source`: the
/// instruction's training text placed once, then every turn closed by its
/// sampled answer. `answers` longer than the dialog are cut to its turns.
pub fn training_dialog(
    source: &GattDialog,
    answers: &[String],
    placement: InstructionPlacement,
    join: &InstructionJoin,
) -> Vec<Message> {
    let instruction = source.instruction.training_text.as_str();
    let mut out = Vec::with_capacity(2 * answers.len() + 1);
    let system = match (placement, &source.system) {
        (InstructionPlacement::FirstUser, s) => s.clone(),
        (InstructionPlacement::System, None) => Some(instruction.to_string()),
        (InstructionPlacement::System, Some(s)) => {
            Some(format!("{s}{}{instruction}", join.separator))
        }
    };
    out.extend(system.map(Message::system));
    for (k, (user, answer)) in source.users.iter().zip(answers).enumerate() {
        let content = if k == 0 && placement == InstructionPlacement::FirstUser {
            join.join(instruction, user)
        } else {
            user.clone()
        };
        out.push(Message::user(content));
        out.push(Message::assistant(answer.as_str()));
    }
    out
}

/// One Ghost Attention example: a finished dialog trained on its last answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GattExample {
    /// The dialog, ending with the answer that is trained.
    pub messages: Vec<Message>,
    /// [`LossOn::LastTurn`] for examples built here.
    pub loss_on: LossOn,
    /// The instruction the answers were sampled with.
    pub instruction: Instruction,
}

impl GattExample {
    /// The example of the first `answers.len()` turns of `source`.
    pub fn new(
        source: &GattDialog,
        answers: &[String],
        placement: InstructionPlacement,
        join: &InstructionJoin,
    ) -> Self {
        Self {
            messages: training_dialog(source, answers, placement, join),
            loss_on: LossOn::LastTurn,
            instruction: source.instruction.clone(),
        }
    }

    /// Encodes the dialog in the Llama 2-Chat format with its loss mask
    /// ([`EncodedDialog::is_assistant`] marks the trained tokens), as the SFT
    /// dataset does.
    pub fn encode(&self, tokenizer: &Tokenizer) -> Result<EncodedDialog, ChatError> {
        Ok(encode_completed_dialog(tokenizer, &self.messages)?.with_loss_on(self.loss_on))
    }

    /// The JSONL row.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("messages and instructions serialize to JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(system: Option<&str>) -> GattDialog {
        let mut d: Vec<Message> = system.map(Message::system).into_iter().collect();
        d.extend([
            Message::user("Hi."),
            Message::assistant("x"),
            Message::user("Born?"),
            Message::assistant("y"),
            Message::user("Plans?"),
        ]);
        let inst = Instruction::new("Always act as Napoleon from now.")
            .with_training_text("Figure: Napoleon.");
        GattDialog::new(&d, inst).unwrap()
    }

    fn answers() -> Vec<String> {
        ["Bonjour.", "Corsica.", "Europe."]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn instruction_only_in_the_first_turn() {
        let join = InstructionJoin::new();
        let d = training_dialog(
            &source(None),
            &answers(),
            InstructionPlacement::FirstUser,
            &join,
        );
        assert_eq!(
            d,
            [
                Message::user("Figure: Napoleon.\nHi."),
                Message::assistant("Bonjour."),
                Message::user("Born?"),
                Message::assistant("Corsica."),
                Message::user("Plans?"),
                Message::assistant("Europe."),
            ]
        );
        let prefix = training_dialog(
            &source(None),
            &answers()[..1],
            InstructionPlacement::FirstUser,
            &join,
        );
        assert_eq!(prefix, d[..2]);
    }

    #[test]
    fn instruction_as_system_message() {
        let join = InstructionJoin::new().with_separator(" ".into());
        let d = training_dialog(
            &source(None),
            &answers(),
            InstructionPlacement::System,
            &join,
        );
        assert_eq!(d[0], Message::system("Figure: Napoleon."));
        assert_eq!(d[1], Message::user("Hi."));
        assert_eq!(d.len(), 7);
        let d = training_dialog(
            &source(Some("Be kind.")),
            &answers(),
            InstructionPlacement::System,
            &join,
        );
        assert_eq!(d[0], Message::system("Be kind. Figure: Napoleon."));
        let d = training_dialog(
            &source(Some("Be kind.")),
            &answers(),
            InstructionPlacement::FirstUser,
            &join,
        );
        assert_eq!(d[0], Message::system("Be kind."));
        assert_eq!(d[1], Message::user("Figure: Napoleon. Hi."));
    }

    #[test]
    fn json_row() {
        let e = GattExample::new(
            &source(None),
            &answers(),
            InstructionPlacement::FirstUser,
            &InstructionJoin::new(),
        );
        let line = e.to_json_line();
        assert!(line.contains("\"loss_on\":\"last_turn\""), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<GattExample>(&line).unwrap(), e);
    }
}
