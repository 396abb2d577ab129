//! Hugging Face's layout: `config.json` and `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), with the query/key rows permuted for "rotate-half" RoPE.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use llama2::LlamaConfig;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, Loader, PendingParam, SourceFormat};
use crate::dtype::{decode_le, safetensors_float};
use crate::error::{ImportError, Result};
use crate::layout::{HfPermute, ParamSpec, param_specs, transpose, unpermute_hf};

/// transformers 5's `rope_parameters`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RopeParameters {
    /// Rotary base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Only `"default"` is Llama 2's.
    #[serde(default)]
    pub rope_type: Option<String>,
}

/// The fields of a `LlamaForCausalLM` `config.json` that define the model, in both the
/// classic key set (`rope_theta`, `torch_dtype`) and transformers 5's (`rope_parameters`,
/// `dtype`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HfConfig {
    /// Must be `"llama"` when present.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Model width.
    pub hidden_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (defaults to the query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// SwiGLU hidden size.
    pub intermediate_size: usize,
    /// RMSNorm epsilon.
    #[serde(default)]
    pub rms_norm_eps: Option<f64>,
    /// Rotary base (classic key).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Rotary parameters (transformers 5).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// Rotary scaling; Llama 2 has none.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Context length.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Whether the output head reuses the embedding.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Head size, when given explicitly.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Attention projection biases; Llama 2 has none.
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// FFN biases; Llama 2 has none.
    #[serde(default)]
    pub mlp_bias: Option<bool>,
    /// Activation; Llama 2 uses `silu`.
    #[serde(default)]
    pub hidden_act: Option<String>,
}

impl HfConfig {
    /// Reads and parses `config.json`.
    pub fn read(path: &Path) -> Result<Self> {
        crate::error::read_json(path, "Hugging Face model configuration")
    }

    /// The model configuration; an error names what Llama 2 does not support.
    pub fn to_config(&self) -> std::result::Result<LlamaConfig, String> {
        if let Some(kind) = &self.model_type
            && kind != "llama"
        {
            return Err(format!("model_type `{kind}` is not `llama`"));
        }
        if self.attention_bias == Some(true) || self.mlp_bias == Some(true) {
            return Err("attention_bias / mlp_bias: Llama 2 has no biases".into());
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(format!("hidden_act `{act}`: Llama 2 uses silu"));
        }
        if let Some(scaling) = &self.rope_scaling
            && !scaling.is_null()
        {
            return Err(format!("rope_scaling {scaling}: Llama 2 uses plain RoPE"));
        }
        let rope = self.rope_parameters.as_ref();
        if let Some(kind) = rope.and_then(|r| r.rope_type.as_deref())
            && kind != "default"
        {
            return Err(format!("rope_type `{kind}`: Llama 2 uses plain RoPE"));
        }
        if let Some(head_dim) = self.head_dim
            && head_dim * self.num_attention_heads != self.hidden_size
        {
            return Err(format!(
                "head_dim {head_dim} × {} heads differs from hidden_size {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        let mut config = LlamaConfig::new(
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            self.vocab_size,
        );
        if config.ffn_hidden_dim() != self.intermediate_size {
            config = config.with_intermediate_size(Some(self.intermediate_size));
        }
        if let Some(eps) = self.rms_norm_eps {
            config = config.with_norm_eps(eps);
        }
        if let Some(theta) = rope.and_then(|r| r.rope_theta).or(self.rope_theta) {
            config = config.with_rope_theta(theta);
        }
        if let Some(max) = self.max_position_embeddings {
            config = config.with_max_seq_len(max);
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// The `config.json` of a `LlamaForCausalLM` with this configuration.
    pub fn json_for(config: &LlamaConfig, dtype: &str) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": config.dim,
            "num_hidden_layers": config.n_layers,
            "num_attention_heads": config.n_heads,
            "num_key_value_heads": config.n_kv_heads,
            "head_dim": config.head_dim(),
            "vocab_size": config.vocab_size,
            "intermediate_size": config.ffn_hidden_dim(),
            "rms_norm_eps": config.norm_eps,
            "rope_theta": config.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
            "rope_scaling": null,
            "max_position_embeddings": config.max_seq_len,
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "tie_word_embeddings": false,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": dtype,
            "dtype": dtype,
        })
    }
}

#[derive(Deserialize)]
struct SafetensorsIndex {
    weight_map: BTreeMap<String, String>,
}

/// One tensor in a memory-mapped safetensors file.
#[derive(Clone)]
pub(crate) struct StoredTensor {
    pub(crate) file: PathBuf,
    map: Rc<Mmap>,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    range: std::ops::Range<usize>,
}

pub(crate) fn map_file(path: &Path) -> Result<Vec<(String, StoredTensor)>> {
    let file =
        std::fs::File::open(path).map_err(|e| ImportError::read(path, "safetensors shard", e))?;
    // SAFETY: the file is opened read-only and only read; the loader reports a modified or
    // truncated file through safetensors' bounds checks made at open time.
    let map = Rc::new(unsafe { Mmap::map(&file) }.map_err(|e| ImportError::io(path, e))?);
    let parsed = SafeTensors::deserialize(&map).map_err(|e| ImportError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let base = map.as_ptr() as usize;
    let tensors = parsed
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let start = view.data().as_ptr() as usize - base;
            let stored = StoredTensor {
                file: path.to_path_buf(),
                map: map.clone(),
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                range: start..start + view.data().len(),
            };
            (name, stored)
        })
        .collect();
    Ok(tensors)
}

/// Every tensor of a directory's safetensors files by name, each in exactly
/// one file and, with an index, in the file its `weight_map` names (which
/// must stay inside `dir` and list no tensor that is absent).
pub(crate) fn stored_tensors(dir: &Path) -> Result<HashMap<String, StoredTensor>> {
    let sources = safetensors_sources(dir)?;
    let mut stored: HashMap<String, StoredTensor> = HashMap::new();
    for file in &sources.files {
        let mut tensors = map_file(file)?;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, tensor) in tensors {
            if let Some(first) = stored.get(&name) {
                return Err(ImportError::DuplicateTensor {
                    path: file.clone(),
                    tensor: name,
                    other: first.file.clone(),
                });
            }
            stored.insert(name, tensor);
        }
    }
    if let Some((index_path, weight_map)) = &sources.index {
        let mut names: Vec<&String> = stored.keys().collect();
        names.sort();
        for name in names {
            let file = &stored[name].file;
            match weight_map.get(name) {
                Some(listed) if listed == file => {}
                Some(listed) => {
                    return Err(ImportError::Index {
                        path: file.clone(),
                        message: format!(
                            "holds `{name}`, which {} assigns to {}",
                            index_path.display(),
                            listed.display()
                        ),
                    });
                }
                None => {
                    return Err(ImportError::Index {
                        path: file.clone(),
                        message: format!(
                            "holds `{name}`, which {} does not list",
                            index_path.display()
                        ),
                    });
                }
            }
        }
    }
    if let Some((_, weight_map)) = &sources.index
        && let Some((name, file)) = weight_map
            .iter()
            .find(|(name, _)| !stored.contains_key(*name))
    {
        return Err(ImportError::MissingTensor {
            path: file.clone(),
            tensor: name.clone(),
        });
    }

    Ok(stored)
}

/// Where the tensors of a directory are: `model.safetensors`, or the shards of
/// `model.safetensors.index.json` with its `weight_map` (tensor name → file).
struct Sources {
    files: Vec<PathBuf>,
    index: Option<(PathBuf, BTreeMap<String, PathBuf>)>,
}

/// An index entry must be a relative path inside the model directory: no root, no `..`.
fn index_entry(dir: &Path, index_path: &Path, entry: &str) -> Result<PathBuf> {
    use std::path::Component;
    let relative = Path::new(entry);
    let plain = !entry.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && relative
            .components()
            .any(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(ImportError::PathEscape {
            path: index_path.to_path_buf(),
            entry: entry.to_string(),
        });
    }
    Ok(dir.join(relative))
}

fn safetensors_sources(dir: &Path) -> Result<Sources> {
    let index_path = dir.join("model.safetensors.index.json");
    if index_path.exists() {
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| ImportError::io(&index_path, e))?;
        let index: SafetensorsIndex =
            serde_json::from_str(&text).map_err(|e| ImportError::Safetensors {
                path: index_path.clone(),
                message: e.to_string(),
            })?;
        let mut weight_map = BTreeMap::new();
        for (tensor, file) in index.weight_map {
            weight_map.insert(tensor, index_entry(dir, &index_path, &file)?);
        }
        let mut files: Vec<PathBuf> = weight_map.values().cloned().collect();
        files.sort();
        files.dedup();
        return Ok(Sources {
            files,
            index: Some((index_path, weight_map)),
        });
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(Sources {
            files: vec![single],
            index: None,
        });
    }
    Err(ImportError::MissingFile {
        path: single,
        what: "model.safetensors or model.safetensors.index.json",
    })
}

/// Opens a Hugging Face checkpoint directory.
pub fn open_hf(dir: &Path) -> Result<Checkpoint> {
    let config_path = dir.join("config.json");
    let hf = HfConfig::read(&config_path)?;
    crate::limits::check_hf(&config_path, &hf)?;
    let config = hf.to_config().map_err(|message| ImportError::Unsupported {
        path: config_path.clone(),
        message,
    })?;
    crate::limits::check_config(&config_path, &config)?;

    let stored = stored_tensors(dir)?;

    let specs = param_specs(&config);
    let by_hf: HashMap<&str, &ParamSpec> = specs.iter().map(|s| (s.hf_name.as_str(), s)).collect();
    let mut names: Vec<&String> = stored.keys().collect();
    names.sort();
    for name in names {
        if !by_hf.contains_key(name.as_str()) && !name.ends_with("rotary_emb.inv_freq") {
            return Err(ImportError::UnknownTensor {
                path: stored[name].file.clone(),
                tensor: name.clone(),
            });
        }
    }

    let tied = hf.tie_word_embeddings == Some(true);
    let mut params = Vec::with_capacity(specs.len());
    for spec in &specs {
        let name = if tied && spec.name == "output.weight" && !stored.contains_key(&spec.hf_name) {
            "model.embed_tokens.weight"
        } else {
            spec.hf_name.as_str()
        };
        let tensor = stored.get(name).ok_or_else(|| ImportError::MissingTensor {
            path: dir.to_path_buf(),
            tensor: name.to_string(),
        })?;
        if !matches!(
            tensor.dtype,
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
        ) {
            return Err(ImportError::UnsupportedDtype {
                path: tensor.file.clone(),
                tensor: name.to_string(),
                dtype: format!("{:?}", tensor.dtype),
            });
        }
        if tensor.shape != spec.shape {
            return Err(ImportError::ShapeMismatch {
                path: tensor.file.clone(),
                tensor: name.to_string(),
                expected: spec.shape.clone(),
                found: tensor.shape.clone(),
            });
        }
        params.push(PendingParam {
            spec: spec.clone(),
            load: hf_loader(spec.clone(), name.to_string(), tensor.clone()),
        });
    }
    Ok(Checkpoint {
        config,
        source: dir.to_path_buf(),
        format: SourceFormat::HuggingFace,
        params,
        check_finite: true,
    })
}

pub(crate) fn hf_loader(spec: ParamSpec, name: String, tensor: StoredTensor) -> Loader {
    Rc::new(move || {
        let values = safetensors_float(tensor.dtype)
            .and_then(|dtype| decode_le(dtype, &tensor.map[tensor.range.clone()]))
            .ok_or_else(|| ImportError::UnsupportedDtype {
                path: tensor.file.clone(),
                tensor: name.clone(),
                dtype: format!("{:?}", tensor.dtype),
            })?;
        let values = match spec.hf_permute {
            HfPermute::Heads(heads) => unpermute_hf(&values, spec.shape[0], spec.shape[1], heads),
            HfPermute::None => values,
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

    const LLAMA_2_7B_HF: &str = r#"{
        "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
        "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.32.0.dev0",
        "use_cache": true, "vocab_size": 32000}"#;

    #[test]
    fn the_published_7b_config_is_the_preset() {
        let config: HfConfig = serde_json::from_str(LLAMA_2_7B_HF).unwrap();
        assert_eq!(config.to_config().unwrap(), LlamaConfig::llama2_7b());
    }

    #[test]
    fn transformers_5_rope_parameters_are_read() {
        let json = LLAMA_2_7B_HF.replace(
            r#""rope_scaling": null,"#,
            r#""rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},"#,
        );
        let config: HfConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(config.to_config().unwrap().rope_theta, 500000.0);
    }

    #[test]
    fn what_llama_2_lacks_is_refused() {
        for (from, to, needle) in [
            (
                r#""rope_scaling": null"#,
                r#""rope_scaling": {"type": "linear", "factor": 2.0}"#,
                "rope_scaling",
            ),
            (r#""hidden_act": "silu""#, r#""hidden_act": "gelu""#, "gelu"),
            (
                r#""model_type": "llama""#,
                r#""model_type": "mistral""#,
                "mistral",
            ),
        ] {
            let config: HfConfig = serde_json::from_str(&LLAMA_2_7B_HF.replace(from, to)).unwrap();
            let error = config.to_config().unwrap_err();
            assert!(error.contains(needle), "{error}");
        }
    }

    #[test]
    fn a_json_config_round_trips() {
        let config = LlamaConfig::llama2_70b();
        let json = HfConfig::json_for(&config, "bfloat16");
        let back: HfConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_config().unwrap().ffn_hidden_dim(), 28672);
        assert_eq!(back.to_config().unwrap().n_kv_heads, 8);
    }
}
