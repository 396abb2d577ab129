//! LoRA adapters in Hugging Face PEFT's layout: a directory with `adapter_config.json` and
//! `adapter_model.safetensors`, tensors named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` and stored as PyTorch
//! does (`lora_A` `[r, d_in]`, `lora_B` `[d_out, r]`).
//!
//! Hugging Face permutes the rows of the query and key projections for its rotate-half
//! rotary embedding (see [`crate::layout`]); the rows of `lora_B` are outputs of those
//! projections, so they carry the same permutation and are un-permuted on import (and
//! permuted on export) like the weights they adapt. `lora_A` is not permuted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData};
use llama2::Llama;
use llama2::lora::{LoraConfig, LoraError, LoraSite, LoraTarget, LoraWeights};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::dtype::{decode_le, safetensors_float};
use crate::error::{ImportError, Result};
use crate::layout::{HfPermute, param_specs, permute_hf, transpose, unpermute_hf};

/// PEFT's configuration file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT's weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The part of PEFT's `LoraConfig` that decides what the adapters compute. Fields that would
/// change the computation in ways this crate does not implement are read so that they can
/// be refused.
#[derive(Debug, Deserialize)]
struct PeftConfig {
    #[serde(default)]
    peft_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    modules_to_save: Option<serde_json::Value>,
    #[serde(default)]
    layers_to_transform: Option<serde_json::Value>,
    #[serde(default)]
    rank_pattern: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    alpha_pattern: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    layer_replication: Option<serde_json::Value>,
    #[serde(default)]
    lora_bias: bool,
    #[serde(default)]
    use_qalora: bool,
    #[serde(default)]
    target_parameters: Option<serde_json::Value>,
    #[serde(default)]
    trainable_token_indices: Option<serde_json::Value>,
    #[serde(default)]
    alora_invocation_tokens: Option<serde_json::Value>,
}

impl PeftConfig {
    /// Why these adapters cannot be represented, if they cannot.
    fn unsupported(&self) -> Option<String> {
        let non_empty = |v: &Option<serde_json::Value>| match v {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if let Some(kind) = &self.peft_type
            && kind != "LORA"
        {
            return Some(format!("peft_type {kind} is not LORA"));
        }
        if self.use_dora {
            return Some("DoRA (use_dora) is not supported".into());
        }
        if let Some(bias) = &self.bias
            && bias != "none"
        {
            return Some(format!(
                "bias = {bias:?}: only bias-free adapters are supported"
            ));
        }
        if self.lora_bias {
            return Some("lora_bias (a bias on lora_B) is not supported".into());
        }
        if self.use_qalora {
            return Some("QALoRA (use_qalora) is not supported".into());
        }
        if non_empty(&self.target_parameters) {
            return Some("target_parameters (LoRA on raw parameters) is not supported".into());
        }
        if non_empty(&self.trainable_token_indices) {
            return Some("trainable_token_indices is not supported".into());
        }
        if non_empty(&self.alora_invocation_tokens) {
            return Some("activated LoRA (alora_invocation_tokens) is not supported".into());
        }
        if self.fan_in_fan_out {
            return Some("fan_in_fan_out is for GPT-2 style Conv1D layers".into());
        }
        if non_empty(&self.modules_to_save) {
            return Some("modules_to_save (fully trained extra modules) is not supported".into());
        }
        if non_empty(&self.layers_to_transform) {
            return Some(
                "layers_to_transform (adapters on some layers only) is not supported".into(),
            );
        }
        if non_empty(&self.layer_replication) {
            return Some("layer_replication is not supported".into());
        }
        if self.rank_pattern.as_ref().is_some_and(|p| !p.is_empty())
            || self.alpha_pattern.as_ref().is_some_and(|p| !p.is_empty())
        {
            return Some(
                "per-module ranks or alphas (rank_pattern, alpha_pattern) are not supported".into(),
            );
        }
        None
    }
}

/// PEFT's name of the `lora_A` (or `lora_B`) tensor at `site`.
pub fn peft_name(site: LoraSite, a: bool) -> String {
    format!(
        "base_model.model.model.layers.{}.{}.{}.lora_{}.weight",
        site.layer,
        site.target.hf_module(),
        site.target.hf_name(),
        if a { "A" } else { "B" }
    )
}

/// The site and `A`/`B` of a PEFT tensor name.
fn parse_name(name: &str) -> Option<(LoraSite, bool)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, rest) = rest.split_once('.')?;
    let (proj, rest) = rest.split_once('.')?;
    let a = match rest {
        "lora_A.weight" => true,
        "lora_B.weight" => false,
        _ => return None,
    };
    let target = LoraTarget::from_name(proj).filter(|t| t.hf_module() == module)?;
    Some((LoraSite { layer, target }, a))
}

/// The rotary permutation Hugging Face applies to the rows of the projection at `site`.
fn permutation<B: Backend>(model: &Llama<B>, site: LoraSite) -> HfPermute {
    let name = format!("{}.weight", site.projection_path());
    param_specs(&model.config)
        .into_iter()
        .find(|s| s.name == name)
        .map_or(HfPermute::None, |s| s.hf_permute)
}

fn unsupported(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Unsupported {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a PEFT adapter directory into a [`LoraConfig`]. The targets are the projections
/// that have tensors in `adapter_model.safetensors` (`target_modules` may name modules by
/// pattern or list modules of other architectures).
pub fn read_peft_config(dir: impl AsRef<Path>) -> Result<LoraConfig> {
    let dir = dir.as_ref();
    let (config, _) = read_peft(dir)?;
    Ok(config)
}

/// A stored tensor: shape and f32 values.
type Stored = (Vec<usize>, Vec<f32>);

/// The stored `[A, B]` of each site.
type StoredSites = BTreeMap<LoraSite, [Option<Stored>; 2]>;

/// The configuration and the stored `[A, B]` of each site, as PEFT stores them.
fn read_peft(dir: &Path) -> Result<(LoraConfig, StoredSites)> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let peft: PeftConfig = crate::error::read_json(&config_path, "PEFT adapter_config.json")?;
    if let Some(message) = peft.unsupported() {
        return Err(unsupported(&config_path, message));
    }
    let path = dir.join(ADAPTER_WEIGHTS);
    let bytes = std::fs::read(&path)
        .map_err(|e| ImportError::read(&path, "PEFT adapter_model.safetensors", e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| ImportError::Safetensors {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut names = file.names();
    names.sort();
    let mut tensors = StoredSites::new();
    for name in names {
        let (site, a) = parse_name(name).ok_or_else(|| ImportError::UnknownTensor {
            path: path.clone(),
            tensor: name.to_string(),
        })?;
        let view = file.tensor(name).map_err(|e| ImportError::Safetensors {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let values = safetensors_float(view.dtype())
            .and_then(|dtype| decode_le(dtype, view.data()))
            .ok_or_else(|| ImportError::UnsupportedDtype {
                path: path.clone(),
                tensor: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            })?;
        tensors.entry(site).or_default()[usize::from(!a)] = Some((view.shape().to_vec(), values));
    }
    let targets: BTreeSet<LoraTarget> = tensors.keys().map(|s| s.target).collect();
    if targets.is_empty() {
        return Err(ImportError::Safetensors {
            path,
            message: "no LoRA tensors".into(),
        });
    }
    let config = LoraConfig::new()
        .with_rank(peft.r)
        .with_alpha(peft.lora_alpha)
        .with_dropout(peft.lora_dropout)
        .with_rslora(peft.use_rslora)
        .with_targets(targets.into_iter().collect());
    config
        .validate()
        .map_err(|e| unsupported(&config_path, e.to_string()))?;
    Ok((config, tensors))
}

/// Attaches the PEFT adapters in `dir` to `model`, a base model without adapters. Every
/// layer must carry adapters on the same projections; shapes are checked against the model
/// and `r` and errors name the PEFT tensor.
pub fn load_peft<B: Backend>(model: Llama<B>, dir: impl AsRef<Path>) -> Result<Llama<B>> {
    let dir = dir.as_ref();
    let path = dir.join(ADAPTER_WEIGHTS);
    if model.lora.is_some() {
        return Err(ImportError::Lora(LoraError::AlreadyAttached));
    }
    let (config, mut tensors) = read_peft(dir)?;
    let mut weights = Vec::new();
    for site in config.sites(model.layers.len()) {
        let [[d_input, rank], [_, d_output]] = config.shapes(&model, site);
        let stored = tensors.remove(&site).unwrap_or_default();
        let [a, b] = stored;
        let take = |t: Option<Stored>, is_a: bool| {
            let name = peft_name(site, is_a);
            let expected = if is_a {
                vec![rank, d_input]
            } else {
                vec![d_output, rank]
            };
            let (shape, values) = t.ok_or_else(|| ImportError::MissingTensor {
                path: path.clone(),
                tensor: name.clone(),
            })?;
            if shape != expected {
                return Err(ImportError::ShapeMismatch {
                    path: path.clone(),
                    tensor: name,
                    expected,
                    found: shape,
                });
            }
            Ok(values)
        };
        let a = take(a, true)?;
        let b = take(b, false)?;
        let b = match permutation(&model, site) {
            HfPermute::Heads(heads) => unpermute_hf(&b, d_output, rank, heads),
            HfPermute::None => b,
        };
        weights.push(LoraWeights {
            site,
            lora_a: TensorData::new(transpose(&a, rank, d_input), [d_input, rank]),
            lora_b: TensorData::new(transpose(&b, d_output, rank), [rank, d_output]),
        });
    }
    // Tensors for layers the model does not have.
    if let Some((&site, _)) = tensors.iter().next() {
        return Err(ImportError::UnknownTensor {
            path,
            tensor: peft_name(site, true),
        });
    }
    Ok(config.attach_weights(model, weights, &path)?)
}

/// PEFT's `adapter_config.json` for `config`.
#[derive(Serialize)]
struct PeftConfigOut<'a> {
    peft_type: &'static str,
    task_type: &'static str,
    base_model_name_or_path: Option<String>,
    r: usize,
    lora_alpha: serde_json::Value,
    lora_dropout: f64,
    target_modules: Vec<&'a str>,
    use_rslora: bool,
    use_dora: bool,
    bias: &'static str,
    fan_in_fan_out: bool,
    init_lora_weights: bool,
    modules_to_save: Option<()>,
    inference_mode: bool,
}

/// Writes the adapters of `model` as a PEFT adapter directory that `PeftModel.from_pretrained`
/// loads onto the Hugging Face export of the base model. `dir` must not exist or be empty;
/// it appears only once complete.
pub fn save_peft<B: Backend>(model: &Llama<B>, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    let config = model
        .lora
        .as_ref()
        .ok_or(ImportError::Lora(LoraError::NotAttached))?;
    let mut targets = config.targets.clone();
    targets.sort();
    let json = PeftConfigOut {
        peft_type: "LORA",
        task_type: "CAUSAL_LM",
        base_model_name_or_path: None,
        r: config.rank,
        // PEFT writes `lora_alpha` as an integer; keep integral values integers.
        lora_alpha: if config.alpha.fract() == 0.0 && config.alpha.abs() < 2f64.powi(53) {
            (config.alpha as i64).into()
        } else {
            config.alpha.into()
        },
        lora_dropout: config.dropout,
        target_modules: targets.iter().map(|t| t.hf_name()).collect(),
        use_rslora: config.rslora,
        use_dora: false,
        bias: "none",
        fan_in_fan_out: false,
        init_lora_weights: true,
        modules_to_save: None,
        inference_mode: true,
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for w in model.lora_weights() {
        let [d_input, rank] = [w.lora_a.shape[0], w.lora_a.shape[1]];
        let d_output = w.lora_b.shape[1];
        let a = transpose(&f32_values(&w.lora_a), d_input, rank);
        let b = transpose(&f32_values(&w.lora_b), rank, d_output);
        let b = match permutation(model, w.site) {
            HfPermute::Heads(heads) => permute_hf(&b, d_output, rank, heads),
            HfPermute::None => b,
        };
        for (name, shape, values) in [
            (peft_name(w.site, true), vec![rank, d_input], a),
            (peft_name(w.site, false), vec![d_output, rank], b),
        ] {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((name, shape, bytes));
        }
    }
    crate::atomic::write_dir(dir, |tmp| {
        let config_path = tmp.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(&json).expect("JSON values serialise");
        std::fs::write(&config_path, text)
            .map_err(|e| ImportError::io(dir.join(ADAPTER_CONFIG), e))?;
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ImportError::Safetensors {
                path: dir.join(ADAPTER_WEIGHTS),
                message: e.to_string(),
            })?;
        let metadata = [("format".to_string(), "pt".to_string())].into();
        safetensors::serialize_to_file(views, Some(metadata), &tmp.join(ADAPTER_WEIGHTS)).map_err(
            |e| ImportError::Safetensors {
                path: dir.join(ADAPTER_WEIGHTS),
                message: e.to_string(),
            },
        )
    })
}

fn f32_values(data: &TensorData) -> Vec<f32> {
    data.clone()
        .convert_dtype(DType::F32)
        .to_vec::<f32>()
        .expect("f32 data")
}

/// Whether `dir` looks like a PEFT adapter directory.
pub fn is_peft_dir(dir: impl AsRef<Path>) -> bool {
    let dir = dir.as_ref();
    dir.join(ADAPTER_CONFIG).is_file() && dir.join(ADAPTER_WEIGHTS).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for target in LoraTarget::ALL {
            for a in [true, false] {
                let site = LoraSite { layer: 11, target };
                assert_eq!(parse_name(&peft_name(site, a)), Some((site, a)));
            }
        }
        assert_eq!(
            peft_name(
                LoraSite {
                    layer: 3,
                    target: LoraTarget::Wk
                },
                false
            ),
            "base_model.model.model.layers.3.self_attn.k_proj.lora_B.weight"
        );
        for bad in [
            "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
            "base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight",
            "base_model.model.lm_head.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
