//! Building Ghost Attention data (paper §3.3): for each source
//! dialog, sample every answer with the instruction concatenated to all user
//! turns of the context, then write the training dialog with the instruction
//! in the first turn only and the loss on the last answer only.
//!
//! Answers are sampled turn by turn over a batch of dialogs: request `k`
//! holds the contexts of turn `k` of every dialog that has one, so a
//! batching sampler runs the dialogs of a batch together.

use burn::config::Config;

use super::augment::InstructionJoin;
use super::dialog::GattDialog;
use super::error::GattError;
use super::example::{GattExample, InstructionPlacement};
use super::sampler::AssistantSampler;

/// How Ghost Attention examples are built.
#[derive(Config, Debug, PartialEq, Eq)]
pub struct GattConfig {
    /// How the instruction is concatenated to a user message, when sampling
    /// (every user turn) and in the training example (the first user turn).
    #[config(default = "InstructionJoin::new()")]
    pub join: InstructionJoin,
    /// Where the instruction goes in the training example.
    #[config(default = "InstructionPlacement::FirstUser")]
    pub placement: InstructionPlacement,
    /// One example per turn (the dialog up to that turn's answer, trained on
    /// it) instead of one per dialog (trained on the final answer): every
    /// turn is a target of Ghost Attention.
    #[config(default = false)]
    pub per_turn: bool,
}

impl GattConfig {
    /// Samples the answers of `dialogs` and returns their examples, in the
    /// order of the dialogs (and of the turns with
    /// [`per_turn`](Self::per_turn)). `on_answers(n)` is called after each
    /// request with the number of answers it gave.
    pub fn build<S: AssistantSampler>(
        &self,
        sampler: &mut S,
        dialogs: &[GattDialog],
        mut on_answers: impl FnMut(usize),
    ) -> Result<Vec<GattExample>, GattError> {
        let answers = self.sample_answers(sampler, dialogs, &mut on_answers)?;
        let mut examples = Vec::new();
        for (dialog, answers) in dialogs.iter().zip(&answers) {
            if self.per_turn {
                for turn in 1..=answers.len() {
                    examples.push(GattExample::new(
                        dialog,
                        &answers[..turn],
                        self.placement,
                        &self.join,
                    ));
                }
            } else {
                examples.push(GattExample::new(
                    dialog,
                    answers,
                    self.placement,
                    &self.join,
                ));
            }
        }
        Ok(examples)
    }

    /// The sampled answers of every turn of every dialog.
    pub fn sample_answers<S: AssistantSampler>(
        &self,
        sampler: &mut S,
        dialogs: &[GattDialog],
        on_answers: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<String>>, GattError> {
        let mut answers: Vec<Vec<String>> = vec![Vec::new(); dialogs.len()];
        let turns = dialogs.iter().map(GattDialog::turns).max().unwrap_or(0);
        for turn in 0..turns {
            let (open, contexts): (Vec<usize>, Vec<_>) = dialogs
                .iter()
                .enumerate()
                .filter_map(|(i, d)| Some((i, d.sampling_context(&answers[i], &self.join)?)))
                .unzip();
            let sampled =
                sampler
                    .next_messages(&contexts)
                    .map_err(|source| GattError::Sampler {
                        index: open[0],
                        turn,
                        source: Box::new(source),
                    })?;
            if sampled.len() != open.len() {
                return Err(GattError::AnswerCount {
                    expected: open.len(),
                    got: sampled.len(),
                });
            }
            for (i, answer) in open.into_iter().zip(sampled) {
                answers[i].push(answer);
            }
            on_answers(contexts.len());
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gatt::instruction::Instruction;
    use llama2::chat::{LossOn, Message, Role};

    /// Answers with a fixed text per call and records every context.
    #[derive(Default)]
    struct Recorder {
        contexts: Vec<Vec<Message>>,
        batches: Vec<usize>,
    }

    impl AssistantSampler for Recorder {
        type Error = std::io::Error;

        fn next_message(&mut self, context: &[Message]) -> Result<String, Self::Error> {
            self.contexts.push(context.to_vec());
            let turn = context.iter().filter(|m| m.role == Role::User).count();
            let user = &context.last().unwrap().content;
            Ok(format!("answer {turn} to {user:?}"))
        }

        fn next_messages(&mut self, contexts: &[Vec<Message>]) -> Result<Vec<String>, Self::Error> {
            self.batches.push(contexts.len());
            contexts.iter().map(|c| self.next_message(c)).collect()
        }
    }

    fn dialogs() -> Vec<GattDialog> {
        let three = [
            Message::user("Hi."),
            Message::assistant("old"),
            Message::user("Born?"),
            Message::assistant("old"),
            Message::user("Plans?"),
        ];
        let one = [Message::system("Be kind."), Message::user("Weather?")];
        vec![
            GattDialog::new(&three, Instruction::new("Act as Napoleon.")).unwrap(),
            GattDialog::new(
                &one,
                Instruction::new("Speak in French.").with_training_text("Language: French."),
            )
            .unwrap(),
        ]
    }

    #[test]
    fn contexts_carry_the_instruction_on_every_user_turn() {
        let mut rec = Recorder::default();
        let config = GattConfig::new();
        let examples = config.build(&mut rec, &dialogs(), |_| {}).unwrap();
        assert_eq!(rec.batches, [2, 1, 1]);
        assert_eq!(rec.contexts.len(), 4);
        for ctx in &rec.contexts {
            let inst = if ctx[0].role == Role::System {
                "Speak in French.\n"
            } else {
                "Act as Napoleon.\n"
            };
            for m in ctx.iter().filter(|m| m.role == Role::User) {
                assert!(m.content.starts_with(inst), "{m:?}");
            }
            assert_eq!(ctx.last().unwrap().role, Role::User);
        }
        // Turn 3's context holds the answers sampled for turns 1 and 2.
        assert_eq!(
            rec.contexts[3],
            [
                Message::user("Act as Napoleon.\nHi."),
                Message::assistant("answer 1 to \"Act as Napoleon.\\nHi.\""),
                Message::user("Act as Napoleon.\nBorn?"),
                Message::assistant("answer 2 to \"Act as Napoleon.\\nBorn?\""),
                Message::user("Act as Napoleon.\nPlans?"),
            ]
        );

        assert_eq!(examples.len(), 2);
        let e = &examples[0];
        assert_eq!(e.loss_on, LossOn::LastTurn);
        let users: Vec<&str> = e
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(users, ["Act as Napoleon.\nHi.", "Born?", "Plans?"]);
        let sampled: Vec<&str> = e
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(
            sampled,
            [
                "answer 1 to \"Act as Napoleon.\\nHi.\"",
                "answer 2 to \"Act as Napoleon.\\nBorn?\"",
                "answer 3 to \"Act as Napoleon.\\nPlans?\""
            ]
        );
        assert_eq!(
            examples[1].messages,
            [
                Message::system("Be kind."),
                Message::user("Language: French.\nWeather?"),
                Message::assistant("answer 1 to \"Speak in French.\\nWeather?\""),
            ]
        );
    }

    #[test]
    fn one_example_per_turn() {
        let mut rec = Recorder::default();
        let config = GattConfig::new()
            .with_per_turn(true)
            .with_placement(InstructionPlacement::System);
        let mut counted = 0;
        let examples = config
            .build(&mut rec, &dialogs(), |n| counted += n)
            .unwrap();
        assert_eq!(counted, 4);
        assert_eq!(examples.len(), 4);
        let lens: Vec<usize> = examples.iter().map(|e| e.messages.len()).collect();
        assert_eq!(lens, [3, 5, 7, 3]);
        for e in &examples[..3] {
            assert_eq!(e.messages[0], Message::system("Act as Napoleon."));
            assert_eq!(e.messages[..], examples[2].messages[..e.messages.len()]);
        }
        assert_eq!(
            examples[3].messages[0],
            Message::system("Be kind.\nLanguage: French.")
        );
    }

    struct Failing(usize);

    impl AssistantSampler for Failing {
        type Error = std::io::Error;
        fn next_message(&mut self, _: &[Message]) -> Result<String, Self::Error> {
            Err(std::io::Error::other("no model"))
        }
        fn next_messages(&mut self, contexts: &[Vec<Message>]) -> Result<Vec<String>, Self::Error> {
            Ok(vec![String::new(); contexts.len() + self.0])
        }
    }

    #[test]
    fn sampler_failures_are_typed_errors() {
        let config = GattConfig::new();
        let err = config
            .build(&mut Failing(1), &dialogs(), |_| {})
            .unwrap_err();
        assert!(
            matches!(
                err,
                GattError::AnswerCount {
                    expected: 2,
                    got: 3
                }
            ),
            "{err}"
        );
        struct Broken;
        impl AssistantSampler for Broken {
            type Error = std::io::Error;
            fn next_message(&mut self, _: &[Message]) -> Result<String, Self::Error> {
                Err(std::io::Error::other("no model"))
            }
        }
        let err = config.build(&mut Broken, &dialogs(), |_| {}).unwrap_err();
        assert!(matches!(err, GattError::Sampler { turn: 0, .. }), "{err}");
        assert!(
            err.to_string().contains("no model")
                || std::error::Error::source(&err).unwrap().to_string() == "no model"
        );
        assert!(config.build(&mut Broken, &[], |_| {}).unwrap().is_empty());
    }
}
