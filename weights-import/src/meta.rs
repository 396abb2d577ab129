//! Meta's release layout: `params.json` and `consolidated.NN.pth` model-parallel shards
//! (bf16, PyTorch zip/pickle), read with this crate's verifying reader ([`crate::pth`]).
//!
//! The pickle is parsed, never executed: anything other than tensors rebuilt through
//! torch's `_rebuild_tensor_v2` and plain containers is rejected. Shapes are checked against
//! `params.json` before any tensor is read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use llama2::LlamaConfig;
use serde::Deserialize;

use crate::checkpoint::{Checkpoint, Loader, PendingParam, SourceFormat};
use crate::dtype::is_float;
use crate::error::{ImportError, Result};
use crate::layout::{ParamSpec, ShardSplit, concat_2d, param_specs, transpose};
use crate::pth::PthFile;

/// Meta's `params.json` (`ModelArgs`). Absent optional fields take Meta's defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MetaParams {
    /// Model width.
    pub dim: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (defaults to `n_heads`).
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    /// Vocabulary size; `-1` (as released) means "from the embedding".
    #[serde(default)]
    pub vocab_size: Option<i64>,
    /// FFN rounding multiple (default 256).
    #[serde(default)]
    pub multiple_of: Option<usize>,
    /// FFN multiplier (70B: 1.3).
    #[serde(default)]
    pub ffn_dim_multiplier: Option<f64>,
    /// RMSNorm epsilon (default 1e-5).
    #[serde(default)]
    pub norm_eps: Option<f64>,
    /// Rotary base (default 10000).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Llama 3.1's frequency scaling, which Llama 2 does not have.
    #[serde(default)]
    pub use_scaled_rope: Option<bool>,
}

impl MetaParams {
    /// Reads and parses `params.json`.
    pub fn read(path: &Path) -> Result<Self> {
        crate::error::read_json(path, "Meta model parameters")
    }

    /// The model configuration, with the vocabulary size taken from the embedding when the
    /// file leaves it at `-1`.
    pub fn to_config(&self, embedding_rows: Option<usize>) -> Option<LlamaConfig> {
        let vocab = match self.vocab_size {
            Some(v) if v > 0 => v as usize,
            _ => embedding_rows?,
        };
        let mut config = LlamaConfig::new(
            self.dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads.unwrap_or(self.n_heads),
            vocab,
        )
        .with_ffn_dim_multiplier(self.ffn_dim_multiplier);
        if let Some(m) = self.multiple_of {
            config = config.with_multiple_of(m);
        }
        if let Some(eps) = self.norm_eps {
            config = config.with_norm_eps(eps);
        }
        if let Some(theta) = self.rope_theta {
            config = config.with_rope_theta(theta);
        }
        Some(config)
    }
}

/// `consolidated.NN.pth` files of `dir`, checked to be numbered `00 .. n-1`.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| ImportError::io(dir, e))?;
    let mut numbered = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| ImportError::io(dir, e))?;
        // A name that is not UTF-8 cannot be `consolidated.NN.pth`.
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(index) = name
            .strip_prefix("consolidated.")
            .and_then(|rest| rest.strip_suffix(".pth"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
            && let Some(other) = numbered.insert(index, entry.path())
        {
            return Err(ImportError::Shards {
                path: dir.to_path_buf(),
                message: format!(
                    "{} and {} are both shard {index}; remove one",
                    other.display(),
                    entry.path().display()
                ),
            });
        }
    }
    if numbered.is_empty() {
        return Err(ImportError::MissingFile {
            path: dir.join("consolidated.00.pth"),
            what: "no consolidated.*.pth checkpoint shard",
        });
    }
    let count = numbered.keys().next_back().map_or(0, |last| last + 1);
    if let Some(missing) = (0..count).find(|i| !numbered.contains_key(i)) {
        return Err(ImportError::MissingFile {
            path: dir.join(format!("consolidated.{missing:02}.pth")),
            what: "model-parallel shard (the numbering has a gap)",
        });
    }
    Ok(numbered.into_values().collect())
}

/// Opens a Meta checkpoint directory.
pub fn open_meta(dir: &Path) -> Result<Checkpoint> {
    let params_path = dir.join("params.json");
    let params = MetaParams::read(&params_path)?;
    if params.use_scaled_rope == Some(true) {
        return Err(ImportError::Unsupported {
            path: params_path,
            message: "use_scaled_rope (Llama 3.1 frequency scaling) is not part of Llama 2".into(),
        });
    }
    let files = shard_files(dir)?;
    crate::limits::check_meta(&params_path, &params)?;
    if files.len() > crate::limits::MAX_SHARDS {
        return Err(ImportError::Limit {
            path: dir.to_path_buf(),
            what: "model-parallel shards".into(),
            value: files.len().to_string(),
            limit: crate::limits::MAX_SHARDS.to_string(),
        });
    }
    let mut shards = Vec::with_capacity(files.len());
    for file in &files {
        shards.push(Rc::new(PthFile::open(file)?));
    }

    let embedding_rows = shards[0]
        .get("tok_embeddings.weight")
        .and_then(|t| t.shape.first().copied());
    let config = params
        .to_config(embedding_rows)
        .ok_or_else(|| ImportError::MissingTensor {
            path: files[0].clone(),
            tensor: "tok_embeddings.weight".into(),
        })?;
    config.validate().map_err(|e| ImportError::Unsupported {
        path: params_path.clone(),
        message: e.to_string(),
    })?;
    crate::limits::check_config(&params_path, &config)?;
    check_shard_count(dir, &config, files.len())?;

    let specs = param_specs(&config);
    let known: HashMap<&str, ()> = specs.iter().map(|s| (s.name.as_str(), ())).collect();
    for (file, tensors) in files.iter().zip(&shards) {
        let mut names: Vec<&str> = tensors.tensors().map(|(name, _)| name).collect();
        names.sort();
        for name in names {
            if name != "rope.freqs" && !known.contains_key(name) {
                return Err(ImportError::UnknownTensor {
                    path: file.clone(),
                    tensor: name.to_string(),
                });
            }
        }
    }

    let mut params = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut parts = Vec::with_capacity(files.len());
        for (file, tensors) in files.iter().zip(&shards) {
            let tensor = tensors
                .get(&spec.name)
                .ok_or_else(|| ImportError::MissingTensor {
                    path: file.clone(),
                    tensor: spec.name.clone(),
                })?;
            check_tensor(file, &spec, tensor, files.len())?;
            parts.push(tensors.clone());
        }
        let load = shard_loader(&spec, parts);
        params.push(PendingParam { spec, load });
    }
    Ok(Checkpoint {
        config,
        source: dir.to_path_buf(),
        format: SourceFormat::Meta {
            shards: files.len(),
        },
        params,
        check_finite: true,
    })
}

fn check_shard_count(dir: &Path, config: &LlamaConfig, shards: usize) -> Result<()> {
    let sizes = [
        ("n_heads", config.n_heads),
        ("n_kv_heads", config.n_kv_heads),
        ("dim", config.dim),
        ("vocab_size", config.vocab_size),
        ("FFN hidden size", config.ffn_hidden_dim()),
    ];
    for (what, size) in sizes {
        if !size.is_multiple_of(shards) {
            return Err(ImportError::Shards {
                path: dir.to_path_buf(),
                message: format!(
                    "{shards} model-parallel shards (consolidated.00.pth … consolidated.{:02}.pth) cannot split {what} = {size}",
                    shards - 1
                ),
            });
        }
    }
    Ok(())
}

fn check_tensor(
    file: &Path,
    spec: &ParamSpec,
    tensor: &crate::pth::PthTensor,
    shards: usize,
) -> Result<()> {
    if !is_float(tensor.dtype) {
        return Err(ImportError::UnsupportedDtype {
            path: file.to_path_buf(),
            tensor: spec.name.clone(),
            dtype: format!("{:?}", tensor.dtype),
        });
    }
    let expected = spec.shard_shape(shards);
    if tensor.shape.as_slice() != expected.as_slice() {
        return Err(ImportError::ShapeMismatch {
            path: file.to_path_buf(),
            tensor: spec.name.clone(),
            expected,
            found: tensor.shape.clone(),
        });
    }
    Ok(())
}

/// Reads a tensor from every shard, merges the shards the way fairscale split them, and
/// transposes linear weights to Burn's layout.
fn shard_loader(spec: &ParamSpec, parts: Vec<Rc<PthFile>>) -> Loader {
    let spec = spec.clone();
    Rc::new(move || {
        let read = |file: &Rc<PthFile>| -> Result<Vec<f32>> { file.read_f32(&spec.name) };
        let values = match spec.split {
            ShardSplit::Replicated => {
                // Every shard's copy is read (and so CRC-checked); they must agree bit for bit.
                let first = read(&parts[0])?;
                for part in &parts[1..] {
                    let other = read(part)?;
                    if other
                        .iter()
                        .map(|v| v.to_bits())
                        .ne(first.iter().map(|v| v.to_bits()))
                    {
                        return Err(ImportError::Shards {
                            path: part.path().to_path_buf(),
                            message: format!(
                                "replicated tensor `{}` differs from {}'s copy",
                                spec.name,
                                parts[0].path().display()
                            ),
                        });
                    }
                }
                first
            }
            split => {
                let pieces = parts.iter().map(read).collect::<Result<Vec<_>>>()?;
                let shard = spec.shard_shape(parts.len());
                let dim = if split == ShardSplit::Rows { 0 } else { 1 };
                concat_2d(&pieces, shard[0], shard[1], dim)
            }
        };
        Ok(if spec.linear {
            transpose(&values, spec.shape[0], spec.shape[1])
        } else {
            values
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> MetaParams {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn released_params_json_give_the_presets() {
        // The params.json files Meta ships with Llama 2.
        let p7 = parse(
            r#"{"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-05, "vocab_size": -1}"#,
        );
        assert_eq!(p7.to_config(Some(32000)), Some(LlamaConfig::llama2_7b()));
        let p13 = parse(
            r#"{"dim": 5120, "multiple_of": 256, "n_heads": 40, "n_layers": 40, "norm_eps": 1e-05, "vocab_size": -1}"#,
        );
        assert_eq!(p13.to_config(Some(32000)), Some(LlamaConfig::llama2_13b()));
        let p70 = parse(
            r#"{"dim": 8192, "multiple_of": 4096, "ffn_dim_multiplier": 1.3, "n_heads": 64, "n_kv_heads": 8, "n_layers": 80, "norm_eps": 1e-05, "vocab_size": -1}"#,
        );
        let c70 = p70.to_config(Some(32000)).unwrap();
        assert_eq!(c70, LlamaConfig::llama2_70b());
        assert_eq!(c70.ffn_hidden_dim(), 28672);
    }

    #[test]
    fn vocab_size_minus_one_needs_the_embedding() {
        let p = parse(r#"{"dim": 64, "n_heads": 4, "n_layers": 2, "vocab_size": -1}"#);
        assert_eq!(p.to_config(None), None);
        assert_eq!(p.to_config(Some(512)).unwrap().vocab_size, 512);
        let explicit = parse(r#"{"dim": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 100}"#);
        assert_eq!(explicit.to_config(Some(512)).unwrap().vocab_size, 100);
    }
}
