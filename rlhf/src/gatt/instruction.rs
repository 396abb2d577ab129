//! The instruction of a Ghost Attention dialog (paper §3.3): "an instruction,
//! inst, that should be respected throughout the dialogue", with the text
//! used while sampling and the (possibly less verbose) text of the training
//! example.

use serde::{Deserialize, Serialize};

use super::constraint::Constraint;
use super::error::GattError;

/// An instruction to be respected throughout a dialog.
///
/// In JSON, either a string (the same text for sampling and training) or
/// `{"text": ..., "training_text": ..., "constraints": [...]}` with the last
/// two optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// Concatenated to every user message when the answers are sampled.
    pub text: String,
    /// Placed once, in the first user turn or the system message, of the
    /// training example: `text` or a less verbose form of it ("when
    /// constructing the final system message for the training data, we also
    /// modify the original instruction half of the time to be less verbose").
    pub training_text: String,
    /// The synthetic constraints it was built from; empty for an instruction
    /// given by the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

impl Instruction {
    /// An instruction with the same text for sampling and training.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            training_text: text.clone(),
            text,
            constraints: Vec::new(),
        }
    }

    /// The same instruction with another training text.
    pub fn with_training_text(mut self, training_text: impl Into<String>) -> Self {
        self.training_text = training_text.into();
        self
    }

    /// Whether the training text is a different (less verbose) form.
    pub fn is_terse(&self) -> bool {
        self.training_text != self.text
    }

    /// Checks that both texts are non-empty.
    pub fn validate(&self) -> Result<(), GattError> {
        if self.text.trim().is_empty() || self.training_text.trim().is_empty() {
            return Err(GattError::EmptyInstruction);
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Instruction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            text: String,
            training_text: Option<String>,
            #[serde(default)]
            constraints: Vec<Constraint>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Full(Full),
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Text(text) => Instruction::new(text),
            Form::Full(f) => Instruction {
                training_text: f.training_text.unwrap_or_else(|| f.text.clone()),
                text: f.text,
                constraints: f.constraints,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gatt::constraint::ConstraintFamily;

    #[test]
    fn json_forms() {
        let i: Instruction = serde_json::from_str(r#""Speak in Latin.""#).unwrap();
        assert_eq!(i, Instruction::new("Speak in Latin."));
        assert!(!i.is_terse());
        let i: Instruction = serde_json::from_str(
            r#"{"text": "Always act as Napoleon from now.", "training_text": "Figure: Napoleon."}"#,
        )
        .unwrap();
        assert!(i.is_terse());
        assert_eq!(i.training_text, "Figure: Napoleon.");
        let mut full = Instruction::new("Act as Napoleon.");
        full.constraints = vec![Constraint::new(ConstraintFamily::PublicFigure, "Napoleon")];
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<Instruction>(&json).unwrap(), full);
        assert!(serde_json::from_str::<Instruction>(r#"{"txt": "x"}"#).is_err());
    }

    #[test]
    fn empty_texts_are_rejected() {
        assert!(Instruction::new("Be brief.").validate().is_ok());
        assert!(matches!(
            Instruction::new(" \n").validate(),
            Err(GattError::EmptyInstruction)
        ));
        assert!(
            Instruction::new("Be brief.")
                .with_training_text("")
                .validate()
                .is_err()
        );
    }
}
