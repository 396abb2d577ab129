//! On-disk cache of a tokenized source file (paper §2.1: text is tokenized
//! once, then trained on many times).
//!
//! `<cache_dir>/<stem>-<key>.tokens` holds a 16-byte header — the magic
//! `LLTOKv1\0`, the element width in bytes (2 or 4) as a little-endian `u32`,
//! and the token count as a little-endian `u32` — followed by the token ids as
//! little-endian `u16` (vocabularies up to 65,536 ids) or `u32`. A JSON
//! sidecar `<stem>-<key>.json` records what the tokens were made from: the
//! source's path, size and modification time and a fingerprint of the
//! tokenizer. The cache is reused only when all of them still match; both files
//! are written to a temporary name and renamed into place.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::error::DataError;
use crate::tokenizer::Tokenizer;

const MAGIC: &[u8; 8] = b"LLTOKv1\0";

/// What a cached token file was built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The source file.
    pub source: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
    /// [`tokenizer_fingerprint`] of the tokenizer.
    pub tokenizer: String,
    /// Number of tokens in the cache.
    pub tokens: usize,
}

/// A stable fingerprint of a tokenizer's vocabulary and special ids (FNV-1a
/// over every piece), used to invalidate caches made by another tokenizer.
pub fn tokenizer_fingerprint(tokenizer: &Tokenizer) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&(tokenizer.vocab_size() as u64).to_le_bytes());
    eat(&tokenizer.bos_id().to_le_bytes());
    eat(&tokenizer.eos_id().to_le_bytes());
    for id in 0..tokenizer.vocab_size() as u32 {
        eat(tokenizer.id_to_piece(id).unwrap_or("").as_bytes());
        eat(&[0xff]);
    }
    format!("{hash:016x}")
}

fn source_key(source: &Path, tokenizer: &str) -> Result<CacheKey, DataError> {
    let meta = fs::metadata(source).map_err(|e| DataError::io(source, e))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(CacheKey {
        source: fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf()),
        size: meta.len(),
        mtime_ns,
        tokenizer: tokenizer.to_string(),
        tokens: 0,
    })
}

fn cache_paths(cache_dir: &Path, key: &CacheKey) -> (PathBuf, PathBuf) {
    let stem = key
        .source
        .file_stem()
        .map_or_else(|| "source".into(), |s| s.to_string_lossy().into_owned());
    // The file name depends on the source path and the tokenizer, so caches of
    // different sources or tokenizers live side by side.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key
        .source
        .to_string_lossy()
        .bytes()
        .chain(key.tokenizer.bytes())
    {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let base = format!("{stem}-{hash:016x}");
    (
        cache_dir.join(format!("{base}.tokens")),
        cache_dir.join(format!("{base}.json")),
    )
}

/// Whether a token cache was reused or (re)built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// The cached tokens matched the source and were read back.
    Hit,
    /// The source was tokenized and the cache written.
    Built,
}

/// Returns the tokens of `source`, reading them from `cache_dir` when a cache
/// made from the same file (size, mtime) with the same tokenizer exists, and
/// otherwise calling `tokenize` and writing the cache.
pub fn load_or_build(
    source: &Path,
    cache_dir: &Path,
    tokenizer: &Tokenizer,
    tokenize: impl FnOnce() -> Result<Vec<u32>, DataError>,
) -> Result<(Vec<u32>, CacheStatus), DataError> {
    let mut key = source_key(source, &tokenizer_fingerprint(tokenizer))?;
    let (data_path, meta_path) = cache_paths(cache_dir, &key);
    if let Some(tokens) = read_cache(&data_path, &meta_path, &key) {
        return Ok((tokens, CacheStatus::Hit));
    }
    let tokens = tokenize()?;
    key.tokens = tokens.len();
    fs::create_dir_all(cache_dir).map_err(|e| DataError::io(cache_dir, e))?;
    let wide = tokens.iter().any(|&t| t > u32::from(u16::MAX));
    let mut bytes = Vec::with_capacity(16 + tokens.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(if wide { 4u32 } else { 2u32 }).to_le_bytes());
    bytes.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    for &t in &tokens {
        if wide {
            bytes.extend_from_slice(&t.to_le_bytes());
        } else {
            bytes.extend_from_slice(&(t as u16).to_le_bytes());
        }
    }
    crate::atomic::write_bytes(&data_path, &bytes)?;
    let meta = serde_json::to_vec_pretty(&key).expect("cache key serializes");
    crate::atomic::write_bytes(&meta_path, &meta)?;
    Ok((tokens, CacheStatus::Built))
}

fn read_cache(data_path: &Path, meta_path: &Path, key: &CacheKey) -> Option<Vec<u32>> {
    let stored: CacheKey = serde_json::from_slice(&fs::read(meta_path).ok()?).ok()?;
    let same = CacheKey {
        tokens: stored.tokens,
        ..key.clone()
    };
    if stored != same {
        return None;
    }
    let bytes = fs::read(data_path).ok()?;
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return None;
    }
    let width = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
    let count = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    let body = &bytes[16..];
    if !(width == 2 || width == 4) || body.len() != count * width || count != stored.tokens {
        return None;
    }
    Some(
        body.chunks_exact(width)
            .map(|c| match width {
                2 => u32::from(u16::from_le_bytes([c[0], c[1]])),
                _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            })
            .collect(),
    )
}
