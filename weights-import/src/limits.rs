//! Bounds on model sizes, checked before anything is allocated from a configuration.
//!
//! They are far above any Llama 2 (70B: dim 8192, 80 layers, 64 heads, FFN 28672, context
//! 4096) but low enough that building the parameter list, the rotary tables or a tensor
//! from a hostile `params.json` / `config.json` / record cannot exhaust memory or overflow.

use std::path::Path;

use llama2::LlamaConfig;

use crate::error::{ImportError, Result};
use crate::hf::HfConfig;
use crate::meta::MetaParams;

/// Model width.
pub const MAX_DIM: usize = 1 << 17;
/// Blocks.
pub const MAX_LAYERS: usize = 1 << 10;
/// Attention heads (query or key/value).
pub const MAX_HEADS: usize = 1 << 12;
/// Vocabulary size.
pub const MAX_VOCAB: usize = 1 << 22;
/// SwiGLU hidden size.
pub const MAX_FFN: usize = 1 << 20;
/// Context length (the rotary tables hold twice this many positions).
pub const MAX_SEQ_LEN: usize = 1 << 20;
/// `multiple_of` of `params.json`.
pub const MAX_MULTIPLE_OF: usize = 1 << 16;
/// `ffn_dim_multiplier` of `params.json`.
pub const MAX_FFN_MULTIPLIER: f64 = 64.0;
/// Model-parallel shards.
pub const MAX_SHARDS: usize = 1 << 10;
/// Parameters of the whole model (2⁴⁰ ≈ 1.1 T).
pub const MAX_PARAMS: u128 = 1 << 40;

fn at_most(path: &Path, what: &str, value: usize, limit: usize) -> Result<()> {
    if value > limit {
        return Err(ImportError::Limit {
            path: path.to_path_buf(),
            what: what.to_string(),
            value: value.to_string(),
            limit: limit.to_string(),
        });
    }
    Ok(())
}

/// The raw fields of `params.json`, before a configuration is computed from them.
pub(crate) fn check_meta(path: &Path, p: &MetaParams) -> Result<()> {
    at_most(path, "dim", p.dim, MAX_DIM)?;
    at_most(path, "n_layers", p.n_layers, MAX_LAYERS)?;
    at_most(path, "n_heads", p.n_heads, MAX_HEADS)?;
    at_most(path, "n_kv_heads", p.n_kv_heads.unwrap_or(0), MAX_HEADS)?;
    if let Some(v) = p.vocab_size
        && v > 0
    {
        at_most(
            path,
            "vocab_size",
            usize::try_from(v).unwrap_or(usize::MAX),
            MAX_VOCAB,
        )?;
    }
    at_most(
        path,
        "multiple_of",
        p.multiple_of.unwrap_or(0),
        MAX_MULTIPLE_OF,
    )?;
    if let Some(m) = p.ffn_dim_multiplier
        && (m.is_nan() || m > MAX_FFN_MULTIPLIER)
    {
        return Err(ImportError::Limit {
            path: path.to_path_buf(),
            what: "ffn_dim_multiplier".into(),
            value: m.to_string(),
            limit: MAX_FFN_MULTIPLIER.to_string(),
        });
    }
    Ok(())
}

/// The raw fields of `config.json`.
pub(crate) fn check_hf(path: &Path, c: &HfConfig) -> Result<()> {
    at_most(path, "hidden_size", c.hidden_size, MAX_DIM)?;
    at_most(path, "num_hidden_layers", c.num_hidden_layers, MAX_LAYERS)?;
    at_most(
        path,
        "num_attention_heads",
        c.num_attention_heads,
        MAX_HEADS,
    )?;
    at_most(
        path,
        "num_key_value_heads",
        c.num_key_value_heads.unwrap_or(0),
        MAX_HEADS,
    )?;
    at_most(path, "vocab_size", c.vocab_size, MAX_VOCAB)?;
    at_most(path, "intermediate_size", c.intermediate_size, MAX_FFN)?;
    at_most(path, "head_dim", c.head_dim.unwrap_or(0), MAX_DIM)?;
    at_most(
        path,
        "max_position_embeddings",
        c.max_position_embeddings.unwrap_or(0),
        MAX_SEQ_LEN,
    )
}

/// A model configuration, from whichever source.
pub(crate) fn check_config(path: &Path, c: &LlamaConfig) -> Result<()> {
    at_most(path, "dim", c.dim, MAX_DIM)?;
    at_most(path, "n_layers", c.n_layers, MAX_LAYERS)?;
    at_most(path, "n_heads", c.n_heads, MAX_HEADS)?;
    at_most(path, "n_kv_heads", c.n_kv_heads, MAX_HEADS)?;
    at_most(path, "vocab_size", c.vocab_size, MAX_VOCAB)?;
    at_most(
        path,
        "multiple_of",
        c.multiple_of,
        MAX_MULTIPLE_OF.max(c.dim),
    )?;
    if let Some(m) = c.ffn_dim_multiplier
        && (m.is_nan() || m > MAX_FFN_MULTIPLIER)
    {
        return Err(ImportError::Limit {
            path: path.to_path_buf(),
            what: "ffn_dim_multiplier".into(),
            value: m.to_string(),
            limit: MAX_FFN_MULTIPLIER.to_string(),
        });
    }
    at_most(path, "FFN hidden size", c.ffn_hidden_dim(), MAX_FFN)?;
    at_most(path, "max_seq_len", c.max_seq_len, MAX_SEQ_LEN)?;
    // Bounded above, so these products fit in u128.
    let (dim, layers, vocab) = (c.dim as u128, c.n_layers as u128, c.vocab_size as u128);
    let kv = (c.n_kv_heads as u128) * (c.dim / c.n_heads.max(1)) as u128;
    let ffn = c.ffn_hidden_dim() as u128;
    let params =
        2 * vocab * dim + dim + layers * (2 * dim * dim + 2 * dim * kv + 3 * dim * ffn + 2 * dim);
    if params > MAX_PARAMS {
        return Err(ImportError::Limit {
            path: path.to_path_buf(),
            what: "parameter count".into(),
            value: params.to_string(),
            limit: MAX_PARAMS.to_string(),
        });
    }
    Ok(())
}
