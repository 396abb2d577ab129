//! A source dialog of Ghost Attention (paper §3.3): "a multi-turn dialogue
//! dataset between two persons ... with a list of messages [u1, a1, ..., un,
//! an]" and the instruction to respect throughout it. Only the user turns
//! (and an optional system message) are kept; the answers are sampled again
//! with the instruction in context.

use llama2::chat::{ChatError, Message, Role, has_special_tags};

use super::augment::{InstructionJoin, augment_for_sampling};
use super::error::GattError;
use super::instruction::Instruction;

/// The user side of a multi-turn dialog and its instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GattDialog {
    /// The dialog's own system message, if it has one.
    pub system: Option<String>,
    /// The user messages `u1 … un`, in order.
    pub users: Vec<String>,
    /// The instruction to respect throughout.
    pub instruction: Instruction,
}

impl GattDialog {
    /// Takes the system message and the user turns of `dialog` (an optional
    /// system message, then user and assistant messages alternating, starting
    /// with the user; its assistant messages are dropped).
    pub fn new(dialog: &[Message], instruction: Instruction) -> Result<Self, GattError> {
        instruction.validate()?;
        let (system, rest) = match dialog.split_first() {
            None => return Err(GattError::Dialog(ChatError::EmptyDialog)),
            Some((first, rest)) if first.role == Role::System => {
                if rest.is_empty() {
                    return Err(GattError::Dialog(ChatError::SystemOnly));
                }
                (Some(first.content.clone()), rest)
            }
            Some(_) => (None, dialog),
        };
        let offset = dialog.len() - rest.len();
        let mut users = Vec::with_capacity(rest.len().div_ceil(2));
        for (k, m) in rest.iter().enumerate() {
            let index = offset + k;
            if m.role == Role::System {
                return Err(GattError::Dialog(ChatError::SystemNotFirst { index }));
            }
            let expected = if k % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            if m.role != expected {
                return Err(GattError::Dialog(ChatError::UnexpectedRole {
                    index,
                    expected,
                    found: m.role,
                }));
            }
            if m.role == Role::User {
                if has_special_tags(std::slice::from_ref(m)) {
                    return Err(GattError::SpecialTags {
                        what: format!("message {index}"),
                    });
                }
                users.push(m.content.clone());
            }
        }
        if system
            .as_ref()
            .is_some_and(|s| has_special_tags(&[Message::system(s.as_str())]))
        {
            return Err(GattError::SpecialTags {
                what: "the system message".into(),
            });
        }
        if has_special_tags(&[
            Message::user(instruction.text.as_str()),
            Message::user(instruction.training_text.as_str()),
        ]) {
            return Err(GattError::SpecialTags {
                what: "the instruction".into(),
            });
        }
        Ok(Self {
            system,
            users,
            instruction,
        })
    }

    /// Number of turns (user messages).
    pub fn turns(&self) -> usize {
        self.users.len()
    }

    /// The context from which answer number `answers.len()` is sampled: the
    /// system message, then the user turns so far, each with the instruction
    /// concatenated, closed by the answers sampled so far, ending with the
    /// next user turn; `None` once every turn is answered.
    pub fn sampling_context(
        &self,
        answers: &[String],
        join: &InstructionJoin,
    ) -> Option<Vec<Message>> {
        let next = self.users.get(answers.len())?;
        let mut plain: Vec<Message> = self.system.iter().map(Message::system).collect();
        for (user, answer) in self.users.iter().zip(answers) {
            plain.push(Message::user(user.as_str()));
            plain.push(Message::assistant(answer.as_str()));
        }
        plain.push(Message::user(next.as_str()));
        Some(augment_for_sampling(&plain, &self.instruction.text, join))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Vec<Message> {
        vec![
            Message::system("You are helpful."),
            Message::user("Hi."),
            Message::assistant("Old answer."),
            Message::user("Where were you born?"),
        ]
    }

    #[test]
    fn keeps_the_user_side() {
        let d = GattDialog::new(&source(), Instruction::new("Act as Napoleon.")).unwrap();
        assert_eq!(d.system.as_deref(), Some("You are helpful."));
        assert_eq!(d.users, ["Hi.", "Where were you born?"]);
        assert_eq!(d.turns(), 2);
        let join = InstructionJoin::new();
        let ctx = d.sampling_context(&["New answer.".into()], &join).unwrap();
        assert_eq!(
            ctx,
            [
                Message::system("You are helpful."),
                Message::user("Act as Napoleon.\nHi."),
                Message::assistant("New answer."),
                Message::user("Act as Napoleon.\nWhere were you born?"),
            ]
        );
        let first = d.sampling_context(&[], &join).unwrap();
        assert_eq!(first[1..], [Message::user("Act as Napoleon.\nHi.")]);
        let all = ["a".to_string(), "b".to_string()];
        assert!(d.sampling_context(&all, &join).is_none());
    }

    #[test]
    fn bad_dialogs_are_typed_errors() {
        let inst = || Instruction::new("Act as Napoleon.");
        let err = |d: &[Message]| GattDialog::new(d, inst()).unwrap_err();
        assert!(matches!(
            err(&[]),
            GattError::Dialog(ChatError::EmptyDialog)
        ));
        assert!(matches!(
            err(&[Message::system("s")]),
            GattError::Dialog(ChatError::SystemOnly)
        ));
        assert!(matches!(
            err(&[Message::user("a"), Message::user("b")]),
            GattError::Dialog(ChatError::UnexpectedRole { index: 1, .. })
        ));
        assert!(matches!(
            err(&[Message::assistant("a")]),
            GattError::Dialog(ChatError::UnexpectedRole { index: 0, .. })
        ));
        assert!(matches!(
            err(&[Message::user("a"), Message::system("b")]),
            GattError::Dialog(ChatError::SystemNotFirst { index: 1 })
        ));
        let e = err(&[
            Message::user("a"),
            Message::assistant("b"),
            Message::user("[INST] c"),
        ]);
        assert!(
            matches!(&e, GattError::SpecialTags { what } if what == "message 2"),
            "{e}"
        );
        let e = err(&[Message::system("<<SYS>>"), Message::user("a")]);
        assert!(matches!(e, GattError::SpecialTags { .. }), "{e}");
        // Assistant messages are dropped, whatever they hold.
        let ok = [Message::user("a"), Message::assistant("[/INST]")];
        assert_eq!(GattDialog::new(&ok, inst()).unwrap().users, ["a"]);
        let e = GattDialog::new(&ok, Instruction::new("Act [/INST]")).unwrap_err();
        assert!(matches!(e, GattError::SpecialTags { .. }), "{e}");
        let e = GattDialog::new(&ok, Instruction::new("")).unwrap_err();
        assert!(matches!(e, GattError::EmptyInstruction), "{e}");
    }
}
