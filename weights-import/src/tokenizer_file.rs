//! The tokenizer a record carries: the bytes of the `tokenizer.model`
//! (SentencePiece) or `tokenizer.json` (Hugging Face) the model was imported
//! or trained with, stored in the record's metadata so that a record alone
//! encodes and decodes text.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use llama2::Tokenizer;

use crate::error::{ImportError, Result};

/// Metadata key of the tokenizer's bytes (base64).
pub const TOKENIZER_KEY: &str = "llama2.tokenizer";
/// Metadata key of the tokenizer's format: `sentencepiece` or `hf-json`.
pub const TOKENIZER_FORMAT_KEY: &str = "llama2.tokenizer_format";

/// The format of a tokenizer file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerFormat {
    /// Meta's `tokenizer.model`.
    SentencePiece,
    /// Hugging Face's `tokenizer.json`.
    HfJson,
}

impl TokenizerFormat {
    fn name(self) -> &'static str {
        match self {
            Self::SentencePiece => "sentencepiece",
            Self::HfJson => "hf-json",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "sentencepiece" => Some(Self::SentencePiece),
            "hf-json" => Some(Self::HfJson),
            _ => None,
        }
    }
}

/// A tokenizer file's bytes, checked to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerFile {
    /// The format.
    pub format: TokenizerFormat,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

impl TokenizerFile {
    /// The file name it has in a checkpoint directory: `tokenizer.model` or
    /// `tokenizer.json`.
    pub fn file_name(&self) -> &'static str {
        match self.format {
            TokenizerFormat::SentencePiece => "tokenizer.model",
            TokenizerFormat::HfJson => "tokenizer.json",
        }
    }

    /// Reads `path` (`.json`: Hugging Face, otherwise SentencePiece) and
    /// checks that it loads.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| ImportError::read(path, "tokenizer file", e))?;
        let format = if path.extension().is_some_and(|e| e == "json") {
            TokenizerFormat::HfJson
        } else {
            TokenizerFormat::SentencePiece
        };
        let file = Self { format, bytes };
        file.tokenizer(path)?;
        Ok(file)
    }

    /// The tokenizer file of a checkpoint directory, if it has one:
    /// `tokenizer.model` (preferred: the exact SentencePiece model) or
    /// `tokenizer.json` in `dir`, or Meta's `tokenizer.model` in its parent
    /// (Meta ships one tokenizer beside the model folders).
    pub fn find(dir: &Path) -> Option<PathBuf> {
        let beside = [dir.join("tokenizer.model"), dir.join("tokenizer.json")];
        let parent = dir.parent().map(|p| p.join("tokenizer.model"));
        beside
            .into_iter()
            .chain(parent.filter(|_| dir.join("params.json").exists()))
            .find(|p| p.is_file())
    }

    /// The tokenizer; `source` names the file or record in errors.
    pub fn tokenizer(&self, source: &Path) -> Result<Tokenizer> {
        let loaded = match self.format {
            TokenizerFormat::SentencePiece => Tokenizer::from_sentencepiece_bytes(&self.bytes),
            TokenizerFormat::HfJson => Tokenizer::from_hf_json_bytes(&self.bytes, source),
        };
        loaded.map_err(|e| ImportError::Tokenizer {
            path: source.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The metadata entries that store it.
    pub(crate) fn to_metadata(&self) -> [(&'static str, String); 2] {
        [
            (TOKENIZER_FORMAT_KEY, self.format.name().to_string()),
            (TOKENIZER_KEY, STANDARD.encode(&self.bytes)),
        ]
    }

    /// Reads it back from a record's metadata; `None` when the record has
    /// no tokenizer.
    pub(crate) fn from_metadata(
        metadata: &std::collections::BTreeMap<String, String>,
        path: &Path,
    ) -> Result<Option<Self>> {
        let Some(encoded) = metadata.get(TOKENIZER_KEY) else {
            return Ok(None);
        };
        let bad = |message: String| ImportError::Record {
            path: path.to_path_buf(),
            message,
        };
        let format = metadata
            .get(TOKENIZER_FORMAT_KEY)
            .and_then(|f| TokenizerFormat::parse(f))
            .ok_or_else(|| bad(format!("`{TOKENIZER_FORMAT_KEY}` missing or unknown")))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| bad(format!("`{TOKENIZER_KEY}`: {e}")))?;
        Ok(Some(Self { format, bytes }))
    }
}
