//! Packed next-token dataset for pretraining (paper §2.2; the recipe of
//! Touvron et al. 2023a, "LLaMA", §2.1).
//!
//! Each document is encoded with BOS at its start and EOS at its end, as Llama
//! does, the documents are concatenated into one token stream, and the stream
//! is cut into consecutive, non-overlapping windows of `seq_len + 1` tokens:
//! window `w` gives inputs `stream[w·(s+1) .. w·(s+1)+s]` and targets shifted by
//! one. Documents therefore cross window boundaries, and a window may hold
//! several documents; every next token is a target. The incomplete tail is
//! dropped.
//!
//! Sources: a `.jsonl` file is one document per line (its `"text"` string
//! field); any other file is read as UTF-8 plain text and is one document.
//! Each source is tokenized once into a [cache](super::cache).

use std::fs;
use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;

use super::cache::{self, CacheStatus};
use super::error::DataError;
use super::window::TokenWindow;
use crate::tokenizer::Tokenizer;

/// A token stream cut into fixed windows.
#[derive(Clone, Debug)]
pub struct PackedTextDataset {
    tokens: Vec<u32>,
    seq_len: usize,
    /// How each source was obtained from the cache.
    pub cache_status: Vec<(PathBuf, CacheStatus)>,
}

impl PackedTextDataset {
    /// Tokenizes (or reads from `cache_dir`) every source and packs the
    /// documents into windows of `seq_len + 1` tokens.
    pub fn from_files(
        sources: &[PathBuf],
        tokenizer: &Tokenizer,
        seq_len: usize,
        cache_dir: &Path,
    ) -> Result<Self, DataError> {
        let mut tokens = Vec::new();
        let mut cache_status = Vec::new();
        for source in sources {
            let (part, status) = cache::load_or_build(source, cache_dir, tokenizer, || {
                tokenize_source(source, tokenizer)
            })?;
            tokens.extend(part);
            cache_status.push((source.clone(), status));
        }
        let what = sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut dataset = Self::from_tokens(tokens, seq_len, &what)?;
        dataset.cache_status = cache_status;
        Ok(dataset)
    }

    /// Packs an already tokenized stream.
    pub fn from_tokens(tokens: Vec<u32>, seq_len: usize, what: &str) -> Result<Self, DataError> {
        assert!(seq_len > 0, "seq_len must be positive");
        if tokens.len() < seq_len + 1 {
            return Err(DataError::TooSmall {
                what: what.to_string(),
                window: seq_len + 1,
                tokens: tokens.len(),
            });
        }
        Ok(Self {
            tokens,
            seq_len,
            cache_status: Vec::new(),
        })
    }

    /// The whole token stream.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Window length.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
}

impl Dataset<TokenWindow> for PackedTextDataset {
    fn get(&self, index: usize) -> Option<TokenWindow> {
        let w = self.seq_len + 1;
        let start = index.checked_mul(w)?;
        let window = self.tokens.get(start..start + w)?;
        Some(TokenWindow::all_trained(window))
    }

    fn len(&self) -> usize {
        self.tokens.len() / (self.seq_len + 1)
    }
}

/// The documents of one source file (see the module docs).
pub fn read_documents(source: &Path) -> Result<Vec<String>, DataError> {
    let text = fs::read_to_string(source).map_err(|e| DataError::io(source, e))?;
    if source.extension().is_some_and(|e| e == "jsonl") {
        let mut docs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| DataError::bad_row(source, i + 1, e))?;
            match value.get("text") {
                Some(serde_json::Value::String(s)) => docs.push(s.clone()),
                Some(_) => {
                    return Err(DataError::bad_row(
                        source,
                        i + 1,
                        "\"text\" is not a string",
                    ));
                }
                None => return Err(DataError::bad_row(source, i + 1, "no \"text\" field")),
            }
        }
        Ok(docs)
    } else {
        Ok(vec![text])
    }
}

/// `BOS doc EOS` for every document of `source`, concatenated.
pub fn tokenize_source(source: &Path, tokenizer: &Tokenizer) -> Result<Vec<u32>, DataError> {
    let mut tokens = Vec::new();
    for doc in read_documents(source)? {
        let ids =
            tokenizer
                .encode(&doc, true, true)
                .map_err(|source_err| DataError::Tokenizer {
                    path: source.to_path_buf(),
                    source: source_err,
                })?;
        tokens.extend(ids);
    }
    Ok(tokens)
}
