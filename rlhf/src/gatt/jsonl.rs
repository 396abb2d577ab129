//! Ghost Attention data through files.
//!
//! Source dialogs are JSONL rows `{"messages": [...]}` (an optional system
//! message, then user and assistant turns alternating, starting with the
//! user; the assistant turns are sampled again) with an optional
//! `"instruction"` (a string, or `{"text", "training_text"}`); rows without
//! one get the next instruction of an [`InstructionGenerator`]. Other fields
//! are ignored.
//!
//! Examples are written as JSONL rows of [`GattExample`], which the SFT
//! dataset of `llama2` reads (`"loss_on": "last_turn"`), by a [`GattWriter`]:
//! the rows go to a temporary file beside the output, renamed over it once
//! complete, so the output appears whole or not at all.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use llama2::atomic::AtomicFile;
use llama2::chat::Message;
use serde::Deserialize;

use super::dialog::GattDialog;
use super::error::GattError;
use super::example::GattExample;
use super::generator::InstructionGenerator;
use super::instruction::Instruction;

#[derive(Deserialize)]
struct Row {
    messages: Vec<Message>,
    instruction: Option<Instruction>,
}

/// Reads the source dialogs of a JSONL file, drawing an instruction from
/// `instructions` for each row that has none (in file order). A malformed
/// row, or one that is not a usable dialog, is a [`GattError::BadRow`]
/// naming the file and line.
pub fn read_gatt_dialogs(
    path: &Path,
    instructions: &mut InstructionGenerator,
) -> Result<Vec<GattDialog>, GattError> {
    let text = fs::read_to_string(path).map_err(|e| GattError::io(path, e))?;
    let mut dialogs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: &dyn ToString| GattError::bad_row(path, i + 1, m.to_string());
        let row: Row = serde_json::from_str(line).map_err(|e| bad(&e))?;
        let instruction = match row.instruction {
            Some(instruction) => instruction,
            None => instructions.next_instruction(),
        };
        dialogs.push(GattDialog::new(&row.messages, instruction).map_err(|e| bad(&e))?);
    }
    Ok(dialogs)
}

/// Writes examples as JSONL, atomically (see the module docs).
#[derive(Debug)]
pub struct GattWriter {
    out: AtomicFile,
    rows: usize,
}

impl GattWriter {
    /// Starts writing `path` (created or replaced by [`finish`](Self::finish)).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, GattError> {
        let out = AtomicFile::create(path).map_err(|e| GattError::io(e.path, e.source))?;
        Ok(Self { out, rows: 0 })
    }

    /// Appends one example.
    pub fn write(&mut self, example: &GattExample) -> Result<(), GattError> {
        writeln!(self.out, "{}", example.to_json_line())
            .map_err(|e| GattError::io(self.out.path(), e))?;
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Moves the complete file into place; returns the number of rows. If
    /// the writer is dropped instead, the output is left untouched.
    pub fn finish(self) -> Result<usize, GattError> {
        self.out
            .finish()
            .map_err(|e| GattError::io(e.path, e.source))?;
        Ok(self.rows)
    }
}

/// Writes `examples` to `path` with a [`GattWriter`].
pub fn write_gatt_jsonl(path: &Path, examples: &[GattExample]) -> Result<usize, GattError> {
    let mut writer = GattWriter::create(path)?;
    for e in examples {
        writer.write(e)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gatt::augment::InstructionJoin;
    use crate::gatt::example::InstructionPlacement;
    use crate::gatt::generator::InstructionGeneratorConfig;

    fn generator() -> InstructionGenerator {
        InstructionGeneratorConfig::new()
            .with_seed(5)
            .init()
            .unwrap()
    }

    #[test]
    fn reads_rows_with_and_without_instructions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialogs.jsonl");
        fs::write(
            &path,
            concat!(
                r#"{"messages": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Yo."}, {"role": "user", "content": "Plans?"}], "id": 7}"#,
                "\n\n",
                r#"{"messages": [{"role": "user", "content": "Hi."}], "instruction": "Speak in Latin."}"#,
                "\n",
                r#"{"messages": [{"role": "user", "content": "Hi."}], "instruction": {"text": "Always act as Napoleon from now.", "training_text": "Figure: Napoleon."}}"#,
                "\n"
            ),
        )
        .unwrap();
        let dialogs = read_gatt_dialogs(&path, &mut generator()).unwrap();
        assert_eq!(dialogs.len(), 3);
        assert_eq!(dialogs[0].users, ["Hi.", "Plans?"]);
        assert_eq!(dialogs[0].instruction, generator().next_instruction());
        assert_eq!(dialogs[1].instruction, Instruction::new("Speak in Latin."));
        assert_eq!(dialogs[2].instruction.training_text, "Figure: Napoleon.");
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialogs.jsonl");
        let good = r#"{"messages": [{"role": "user", "content": "Hi."}]}"#;
        for bad in [
            "{",
            r#"{"prompt": "Hi."}"#,
            r#"{"messages": []}"#,
            r#"{"messages": [{"role": "assistant", "content": "Hi."}]}"#,
            r#"{"messages": [{"role": "user", "content": "[INST]"}]}"#,
            r#"{"messages": [{"role": "user", "content": "Hi."}], "instruction": ""}"#,
            r#"{"messages": [{"role": "user", "content": "Hi."}], "instruction": 3}"#,
        ] {
            fs::write(&path, format!("{good}\n\n{bad}\n")).unwrap();
            match read_gatt_dialogs(&path, &mut generator()) {
                Err(GattError::BadRow {
                    path: p,
                    line,
                    message,
                }) => {
                    assert_eq!((p.as_path(), line), (path.as_path(), 3), "{bad}: {message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let missing = dir.path().join("missing.jsonl");
        let err = read_gatt_dialogs(&missing, &mut generator()).unwrap_err();
        assert!(matches!(err, GattError::Io { .. }) && err.to_string().contains("missing.jsonl"));
    }

    #[test]
    fn writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatt.jsonl");
        let source =
            GattDialog::new(&[Message::user("Hi.")], Instruction::new("Be brief.")).unwrap();
        let e = GattExample::new(
            &source,
            &["Hello.".into()],
            InstructionPlacement::FirstUser,
            &InstructionJoin::new(),
        );
        fs::write(&path, "previous\n").unwrap();
        let mut w = GattWriter::create(&path).unwrap();
        w.write(&e).unwrap();
        w.write(&e).unwrap();
        assert_eq!(w.rows(), 2);
        // Nothing is visible before finish.
        assert_eq!(fs::read_to_string(&path).unwrap(), "previous\n");
        drop(w);
        assert_eq!(fs::read_to_string(&path).unwrap(), "previous\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        assert_eq!(write_gatt_jsonl(&path, &[e.clone(), e.clone()]).unwrap(), 2);
        let text = fs::read_to_string(&path).unwrap();
        let rows: Vec<GattExample> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows, [e.clone(), e.clone()]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let err = GattWriter::create(dir.path().join("no/such/dir/gatt.jsonl")).unwrap_err();
        assert!(matches!(err, GattError::Io { .. }), "{err}");
    }
}
