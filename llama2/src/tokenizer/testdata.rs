//! Test fixtures: locations of the committed test data and the case files
//! written by `scripts/gen_tokenizer_cases.py`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use super::Tokenizer;

/// Root of the test data (`tests/data` of the repository).
///
/// `LLAMA2_TEST_DATA` overrides the location at run time.
pub(crate) fn test_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLAMA2_TEST_DATA") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

/// The small SentencePiece model trained with Llama 2's settings.
pub(crate) fn small_model_path() -> PathBuf {
    test_data_dir().join("tokenizer/small.model")
}

/// A small model without byte fallback and without the dummy prefix.
pub(crate) fn variant_model_path() -> PathBuf {
    test_data_dir().join("tokenizer/variant.model")
}

/// Meta's Llama 2 `tokenizer.model`.
pub(crate) fn llama2_model_path() -> PathBuf {
    test_data_dir().join("llama2-tokenizer/tokenizer.model")
}

/// One `sp.encode(text)` result.
#[derive(Debug, Deserialize)]
pub(crate) struct EncodeCase {
    pub(crate) text: String,
    pub(crate) ids: Vec<u32>,
    pub(crate) pieces: Vec<String>,
    pub(crate) decoded: String,
}

/// One `sp.decode(ids)` result.
#[derive(Debug, Deserialize)]
pub(crate) struct DecodeCase {
    pub(crate) ids: Vec<u32>,
    pub(crate) text: String,
}

/// A case file of one model.
#[derive(Debug, Deserialize)]
pub(crate) struct CaseFile {
    pub(crate) vocab_size: usize,
    pub(crate) unk_id: i64,
    pub(crate) bos_id: i64,
    pub(crate) eos_id: i64,
    pub(crate) pad_id: i64,
    pub(crate) encode: Vec<EncodeCase>,
    pub(crate) decode: Vec<DecodeCase>,
}

fn read_cases(name: &str) -> CaseFile {
    let path = test_data_dir().join("tokenizer").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

fn load(path: PathBuf) -> Tokenizer {
    Tokenizer::from_sentencepiece(&path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// The small test tokenizer, loaded once.
pub(crate) fn small() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| load(small_model_path()))
}

/// The Llama 2 tokenizer, loaded once.
pub(crate) fn llama2() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| load(llama2_model_path()))
}

/// The variant test tokenizer, loaded once.
pub(crate) fn variant() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| load(variant_model_path()))
}

/// `(name, tokenizer, cases)` for every test model.
pub(crate) fn all_cases() -> [(&'static str, &'static Tokenizer, &'static CaseFile); 3] {
    static SMALL: OnceLock<CaseFile> = OnceLock::new();
    static VARIANT: OnceLock<CaseFile> = OnceLock::new();
    static LLAMA2: OnceLock<CaseFile> = OnceLock::new();
    [
        (
            "small",
            small(),
            SMALL.get_or_init(|| read_cases("small_cases.json")),
        ),
        (
            "variant",
            variant(),
            VARIANT.get_or_init(|| read_cases("variant_cases.json")),
        ),
        (
            "llama2",
            llama2(),
            LLAMA2.get_or_init(|| read_cases("llama2_cases.json")),
        ),
    ]
}

/// The id of byte piece `b`.
pub(crate) fn byte_id(tok: &Tokenizer, b: u8) -> u32 {
    tok.piece_to_id(&super::pieces::byte_piece(b)).unwrap()
}

/// A file in the temporary directory, removed on drop.
pub(crate) struct TempFile(PathBuf);

impl TempFile {
    /// Creates the file with `contents`; `name` keeps concurrent tests apart.
    pub(crate) fn new(name: &str, contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("llama2-test-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
