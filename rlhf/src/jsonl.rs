//! The run files of RLHF: JSON documents and JSONL logs, written atomically and read back
//! with errors naming the file and line.

use std::fs;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::RlhfError;

fn bad_row(path: &Path, line: usize, e: serde_json::Error) -> RlhfError {
    RlhfError::BadRow {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    }
}

/// Reads one JSON document.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, RlhfError> {
    let text = fs::read_to_string(path).map_err(|e| RlhfError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| bad_row(path, 1, e))
}

/// Writes one pretty-printed JSON document atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RlhfError> {
    let text = serde_json::to_string_pretty(value).expect("run files serialise");
    llama2::atomic::write_bytes(path, text.as_bytes())?;
    Ok(())
}

/// Reads the rows of a JSONL file (blank lines skipped, still counted as lines).
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, RlhfError> {
    let text = fs::read_to_string(path).map_err(|e| RlhfError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| bad_row(path, i + 1, e)))
        .collect()
}

/// Writes `rows` as a JSONL file atomically.
pub fn write_jsonl<'a, T: Serialize + 'a>(
    path: &Path,
    rows: impl IntoIterator<Item = &'a T>,
) -> Result<(), RlhfError> {
    let mut text = String::new();
    for row in rows {
        text.push_str(&serde_json::to_string(row).expect("run files serialise"));
        text.push('\n');
    }
    llama2::atomic::write_bytes(path, text.as_bytes())?;
    Ok(())
}
