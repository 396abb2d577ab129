//! The archive of the paper's rejection sampling: "top-performing samples from all prior
//! iterations". Per prompt, the best response of every earlier round with where it came
//! from. Before each round's selection it is re-scored with the current reward model and
//! competes with the new samples, so no round can fall below an earlier best.
//!
//! The archive is a JSONL file, one [`ArchiveEntry`] per line in prompt order, written
//! atomically.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::RlhfError;
use crate::jsonl::{read_jsonl, write_jsonl};
use crate::rollout::Response;

/// The best response to one prompt so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchiveEntry {
    /// The prompt's id.
    pub prompt_id: String,
    /// The answer.
    pub response: String,
    /// Its tokens as sampled (EOS last when the sampler ended it).
    pub tokens: Vec<u32>,
    /// Whether the sampler ended it with EOS.
    pub ended: bool,
    /// The round (1-based) it was sampled in.
    pub round: usize,
    /// The sampling temperature.
    pub temperature: f64,
    /// The model that sampled it.
    pub policy: String,
    /// The scorer of [`score`](Self::score).
    pub reward_model: String,
    /// Its score under `reward_model`, the last time it was scored.
    pub score: f64,
}

impl ArchiveEntry {
    /// The entry's response as sampled.
    pub fn as_response(&self) -> Response {
        Response {
            tokens: self.tokens.clone(),
            text: self.response.clone(),
            ended: self.ended,
        }
    }
}

/// Best responses by prompt id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Archive {
    /// The entries, by prompt id.
    pub entries: BTreeMap<String, ArchiveEntry>,
}

impl Archive {
    /// Reads an archive file; a missing file is an empty archive.
    pub fn read(path: &Path) -> Result<Self, RlhfError> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let rows: Vec<ArchiveEntry> = read_jsonl(path)?;
        let entries = rows.into_iter().map(|e| (e.prompt_id.clone(), e)).collect();
        Ok(Self { entries })
    }

    /// Writes the archive atomically.
    pub fn write(&self, path: &Path) -> Result<(), RlhfError> {
        write_jsonl(path, self.entries.values())
    }

    /// The entry of a prompt.
    pub fn get(&self, prompt_id: &str) -> Option<&ArchiveEntry> {
        self.entries.get(prompt_id)
    }

    /// Number of prompts with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no prompt has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn archives_round_trip_through_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.jsonl");
        assert!(Archive::read(&path).unwrap().is_empty());
        let mut archive = Archive::default();
        for (id, score) in [("b", -0.5), ("a", 1.25)] {
            archive.entries.insert(
                id.into(),
                ArchiveEntry {
                    prompt_id: id.into(),
                    response: format!("answer {id}"),
                    tokens: vec![5, 6, 2],
                    ended: true,
                    round: 2,
                    temperature: 1.1,
                    policy: "round-1".into(),
                    reward_model: "rm.bpk".into(),
                    score,
                },
            );
        }
        archive.write(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains("\"prompt_id\":\"a\""));
        assert_eq!(Archive::read(&path).unwrap(), archive);
        fs::write(&path, "{\"prompt_id\": 3}\n").unwrap();
        assert!(matches!(
            Archive::read(&path),
            Err(RlhfError::BadRow { line: 1, .. })
        ));
    }
}
