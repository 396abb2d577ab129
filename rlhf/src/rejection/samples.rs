//! The samples of one round: a JSONL line per prompt with its `K` scored responses,
//! appended and flushed as each prompt is done, so that a killed run continues at the next
//! prompt. A torn last line (the run died while writing it) is dropped on reading.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RlhfError;
use crate::rollout::Response;

/// One scored response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredResponse {
    /// The answer.
    pub response: String,
    /// Its tokens as sampled.
    pub tokens: Vec<u32>,
    /// Whether the sampler ended it with EOS.
    pub ended: bool,
    /// Its score.
    pub score: f64,
}

impl ScoredResponse {
    /// The response with its score.
    pub fn new(response: Response, score: f64) -> Self {
        Self {
            response: response.text,
            tokens: response.tokens,
            ended: response.ended,
            score,
        }
    }

    /// The response without its score.
    pub fn as_response(&self) -> Response {
        Response {
            tokens: self.tokens.clone(),
            text: self.response.clone(),
            ended: self.ended,
        }
    }
}

/// The responses sampled for one prompt in one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptSamples {
    /// The prompt's id.
    pub prompt_id: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// Seed of the request.
    pub seed: u64,
    /// The responses in sampling order.
    pub samples: Vec<ScoredResponse>,
}

impl PromptSamples {
    /// The scores in sampling order.
    pub fn scores(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.score).collect()
    }
}

/// An append-only samples file.
#[derive(Debug)]
pub struct SamplesFile {
    path: PathBuf,
    file: File,
}

impl SamplesFile {
    /// Opens `path` for appending after the complete rows it holds, which are returned; a
    /// torn last row is cut off.
    pub fn open(path: &Path) -> Result<(Self, Vec<PromptSamples>), RlhfError> {
        let text = match fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(RlhfError::io(path, e)),
        };
        let mut rows = Vec::new();
        let mut valid = 0;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            if !line.ends_with('\n') {
                break; // torn
            }
            let row: PromptSamples =
                serde_json::from_str(line.trim_end()).map_err(|e| RlhfError::BadRow {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                })?;
            rows.push(row);
            valid += line.len();
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| RlhfError::io(path, e))?;
        file.set_len(valid as u64)
            .map_err(|e| RlhfError::io(path, e))?;
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| RlhfError::io(path, e))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            rows,
        ))
    }

    /// Appends one row and flushes it to disk.
    pub fn append(&mut self, row: &PromptSamples) -> Result<(), RlhfError> {
        let mut line = serde_json::to_string(row).expect("rows serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| RlhfError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> PromptSamples {
        PromptSamples {
            prompt_id: id.into(),
            temperature: 0.8,
            seed: 7,
            samples: vec![ScoredResponse {
                response: "hi".into(),
                tokens: vec![4, 2],
                ended: true,
                score: 0.5,
            }],
        }
    }

    #[test]
    fn rows_survive_reopening_and_a_torn_row_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.jsonl");
        let (mut file, rows) = SamplesFile::open(&path).unwrap();
        assert!(rows.is_empty());
        file.append(&row("a")).unwrap();
        file.append(&row("b")).unwrap();
        drop(file);
        // A run killed in the middle of its third row.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"prompt_id\": \"c\", \"temp").unwrap();
        drop(f);
        let (mut file, rows) = SamplesFile::open(&path).unwrap();
        assert_eq!(rows, vec![row("a"), row("b")]);
        file.append(&row("c")).unwrap();
        drop(file);
        let (_, rows) = SamplesFile::open(&path).unwrap();
        assert_eq!(rows, vec![row("a"), row("b"), row("c")]);
    }
}
