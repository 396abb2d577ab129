//! Adapters files: only the adapter tensors, in safetensors, with the [`LoraConfig`] as
//! metadata, so that a few megabytes rebuild the fine-tuned model on top of its base.
//!
//! Tensors are named by their module path (`layers.0.attention.wq_lora.lora_a.weight`) and
//! stored in Burn's layout (`Aᵀ` `[d_input, rank]`, `Bᵀ` `[rank, d_output]`) as f32; the
//! metadata holds `format = llama2-burn-lora` and `llama2.lora` = the configuration as JSON.
//! Files are written to a temporary sibling and renamed into place.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::{DType, TensorData, backend::Backend};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::config::LoraConfig;
use super::error::LoraError;
use super::site::LoraSite;
use super::weights::LoraWeights;
use crate::model::Llama;

/// Metadata key holding the [`LoraConfig`] as JSON.
pub const LORA_CONFIG_KEY: &str = "llama2.lora";
/// Value of the `format` metadata key.
pub const FORMAT: &str = "llama2-burn-lora";

/// Writes the adapters of `model` (not its base weights) to `path`.
pub fn save_adapters<B: Backend>(
    model: &Llama<B>,
    path: impl AsRef<Path>,
) -> Result<(), LoraError> {
    let path = path.as_ref();
    let config = model.lora.as_ref().ok_or(LoraError::NotAttached)?;
    let tensors: Vec<(String, TensorData)> = model
        .lora_weights()
        .into_iter()
        .flat_map(|w| {
            [
                (LoraWeights::lora_a_name(w.site), w.lora_a),
                (LoraWeights::lora_b_name(w.site), w.lora_b),
            ]
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, data)| {
            TensorView::new(Dtype::F32, data.shape.to_vec(), data.as_bytes())
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoraError::format(path, e.to_string()))?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        (
            LORA_CONFIG_KEY.to_string(),
            serde_json::to_string(config).expect("configs serialise"),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| LoraError::format(path, e.to_string()))?;
    crate::atomic::write_bytes(path, &bytes)?;
    Ok(())
}

/// Reads the [`LoraConfig`] of an adapters file without its tensors.
pub fn read_adapters_config(path: impl AsRef<Path>) -> Result<LoraConfig, LoraError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| LoraError::io(path, e))?;
    config_of(path, &bytes)
}

fn config_of(path: &Path, bytes: &[u8]) -> Result<LoraConfig, LoraError> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| LoraError::format(path, e.to_string()))?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(LORA_CONFIG_KEY))
        .ok_or_else(|| {
            LoraError::format(
                path,
                format!("no `{LORA_CONFIG_KEY}` metadata: not a llama2-burn adapters file"),
            )
        })?;
    let config: LoraConfig = serde_json::from_str(json)
        .map_err(|e| LoraError::format(path, format!("`{LORA_CONFIG_KEY}`: {e}")))?;
    config
        .validate()
        .map_err(|e| LoraError::format(path, format!("`{LORA_CONFIG_KEY}`: {e}")))?;
    Ok(config)
}

/// Attaches the adapters saved in `path` to `model`, a base model without adapters. Every
/// tensor the stored configuration calls for must be there with the shape the model and rank
/// give, and nothing else; the base weights are frozen and the adapters trainable, as after
/// [`LoraConfig::attach`].
pub fn load_adapters<B: Backend>(
    model: Llama<B>,
    path: impl AsRef<Path>,
) -> Result<Llama<B>, LoraError> {
    let path = path.as_ref();
    if model.lora.is_some() {
        return Err(LoraError::AlreadyAttached);
    }
    let bytes = std::fs::read(path).map_err(|e| LoraError::io(path, e))?;
    let config = config_of(path, &bytes)?;
    let file =
        SafeTensors::deserialize(&bytes).map_err(|e| LoraError::format(path, e.to_string()))?;

    // Every expected tensor name, with its site and whether it is `A`.
    let sites = config.sites(model.layers.len());
    let mut expected: BTreeMap<String, (LoraSite, bool)> = BTreeMap::new();
    for &site in &sites {
        expected.insert(LoraWeights::lora_a_name(site), (site, true));
        expected.insert(LoraWeights::lora_b_name(site), (site, false));
    }
    let mut names = file.names();
    names.sort();
    if let Some(unknown) = names.iter().find(|n| !expected.contains_key(**n)) {
        return Err(LoraError::UnknownTensor {
            path: path.to_path_buf(),
            tensor: unknown.to_string(),
        });
    }
    let mut a: HashMap<LoraSite, TensorData> = HashMap::new();
    let mut b: HashMap<LoraSite, TensorData> = HashMap::new();
    for (name, (site, is_a)) in &expected {
        let view = file.tensor(name).map_err(|_| LoraError::MissingTensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
        })?;
        let [a_shape, b_shape] = config.shapes(&model, *site);
        let shape = if *is_a { a_shape } else { b_shape };
        if view.shape() != shape.as_slice() {
            return Err(LoraError::ShapeMismatch {
                path: path.to_path_buf(),
                tensor: name.clone(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = tensor_data(path, name, &view)?;
        if *is_a {
            a.insert(*site, data);
        } else {
            b.insert(*site, data);
        }
    }
    let weights = sites
        .into_iter()
        .map(|site| LoraWeights {
            site,
            lora_a: a.remove(&site).expect("checked above"),
            lora_b: b.remove(&site).expect("checked above"),
        })
        .collect();
    config.attach_weights(model, weights, path)
}

/// A stored tensor as f32 data.
pub(crate) fn tensor_data(
    path: &Path,
    name: &str,
    view: &TensorView<'_>,
) -> Result<TensorData, LoraError> {
    let dtype = match view.dtype() {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        other => {
            return Err(LoraError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(
        TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype)
            .convert_dtype(DType::F32),
    )
}
