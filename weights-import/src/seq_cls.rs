//! Reward models on disk: transformers' `LlamaForSequenceClassification` directories
//! (`config.json` + safetensors: `model.*` and `score.weight` `[1, dim]`, no `lm_head`) and
//! llama2-burn reward records (burnpack: the trunk's parameters without the LM head,
//! `score.weight` in Burn's `[dim, 1]` layout, the configuration and the reward
//! normalisation statistics as JSON metadata).
//!
//! The trunk's parameters use the causal LM's names and q/k permutation ([`crate::hf`],
//! [`crate::layout`]). A file without `score.weight` is a [`ImportError::MissingTensor`], a
//! score head of another shape (e.g. `num_labels: 2`) an [`ImportError::ShapeMismatch`]; both
//! name the file and the tensor. An `lm_head.weight` next to the score head is ignored.
//!
//! Models come out as a trunk [`Llama`] whose unused LM head is a [`placeholder_head`] (the
//! `[dim, vocab]` head of the configuration is allocated while the trunk is built, then
//! dropped) and the score head as a bias-free `dim → 1` [`Linear`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Element, Tensor};
use burn_store::{BurnpackStore, BurnpackWriter, ModuleSnapshot, ModuleStore, TensorSnapshot};
use llama2::{Llama, LlamaConfig};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, Failure, Loader, PendingParam, SourceFormat};
use crate::dtype::{StorageDtype, data_to_f32, is_float};
use crate::error::{ImportError, Result};
use crate::hf::{HfConfig, hf_loader, stored_tensors};
use crate::layout::{HfPermute, ParamSpec, ShardSplit, param_specs};
use crate::record::{CONFIG_KEY, read_metadata, record_error};

/// Name of the score head, in both layouts.
pub const SCORE_TENSOR: &str = "score.weight";
/// The LM head's name (Meta / Burn), absent from reward files.
const OUTPUT_TENSOR: &str = "output.weight";
/// Metadata key of a reward record holding [`RewardMeta`] as JSON.
pub const REWARD_KEY: &str = "llama2.reward";

/// Mean and standard deviation of a reward model's scores on a reference set, so that
/// later stages can whiten them (paper §3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardNormalization {
    /// Mean score.
    pub mean: f64,
    /// Standard deviation of the scores (population, `ddof = 0`).
    pub std: f64,
    /// Number of scores the statistics were computed from.
    pub count: u64,
}

/// What a reward file holds besides the weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardMeta {
    /// transformers' `pad_token_id` (used there to find each row's last token).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Reward statistics for whitening, once measured.
    #[serde(default)]
    pub normalization: Option<RewardNormalization>,
}

/// The score head's description: `[1, dim]` in PyTorch's layout, `[dim, 1]` in Burn's.
pub fn score_spec(config: &LlamaConfig) -> ParamSpec {
    ParamSpec {
        name: SCORE_TENSOR.into(),
        hf_name: SCORE_TENSOR.into(),
        shape: vec![1, config.dim],
        linear: true,
        split: ShardSplit::Rows,
        hf_permute: HfPermute::None,
    }
}

/// Every parameter of a reward model: the trunk's (no LM head), then the score head.
pub fn seq_cls_specs(config: &LlamaConfig) -> Vec<ParamSpec> {
    let mut specs: Vec<ParamSpec> = param_specs(config)
        .into_iter()
        .filter(|s| s.name != OUTPUT_TENSOR)
        .collect();
    specs.push(score_spec(config));
    specs
}

/// The stand-in for the LM head of a reward model's trunk: a zero, bias-free `dim → 1`
/// linear layer. A reward model reads the final hidden states, never the head, so the
/// `[dim, vocab]` matrix need not be kept.
pub fn placeholder_head<B: Backend>(dim: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(dim, 1)
        .with_bias(false)
        .with_initializer(burn::nn::Initializer::Zeros)
        .init(device)
}

/// The fields of a `LlamaForSequenceClassification` `config.json` beyond the causal LM's.
#[derive(Deserialize)]
struct SeqClsFields {
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pad_token_id: Option<serde_json::Value>,
}

/// A reward model opened for reading or about to be written: its configuration, metadata
/// and lazily loaded parameters ([`seq_cls_specs`]).
pub struct SeqClsCheckpoint {
    /// The trunk's hyper-parameters.
    pub config: LlamaConfig,
    /// The file or directory it was read from.
    pub source: PathBuf,
    /// [`SourceFormat::HuggingFace`], [`SourceFormat::Record`] or [`SourceFormat::Model`].
    pub format: SourceFormat,
    /// Padding id and normalisation statistics.
    pub meta: RewardMeta,
    params: Vec<PendingParam>,
}

impl std::fmt::Debug for SeqClsCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqClsCheckpoint")
            .field("source", &self.source)
            .field("format", &self.format)
            .field("config", &self.config)
            .field("meta", &self.meta)
            .field("params", &self.params.len())
            .finish()
    }
}

impl SeqClsCheckpoint {
    /// Opens a reward record file or a `LlamaForSequenceClassification` directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_file() {
            open_reward_record(path)
        } else if path.is_dir() {
            open_hf_seq_cls(path)
        } else {
            Err(ImportError::MissingFile {
                path: path.to_path_buf(),
                what: "reward record or LlamaForSequenceClassification directory",
            })
        }
    }

    /// The parameters of a trunk and its score head (`dim → 1`, no bias), for saving or
    /// exporting. The trunk's LM head is not included. A trunk with LoRA adapters attached,
    /// a score head of another shape or with a bias is refused.
    pub fn from_parts<B: Backend>(
        trunk: &Llama<B>,
        score: &Linear<B>,
        meta: RewardMeta,
    ) -> Result<Self> {
        let source = PathBuf::from("<model>");
        if trunk.lora.is_some() {
            return Err(ImportError::Unsupported {
                path: source,
                message: "the trunk has LoRA adapters attached: merge them first \
                          (Llama::merge_lora)"
                    .into(),
            });
        }
        let config = trunk.config.clone();
        let spec = score_spec(&config);
        let found = score.weight.dims().to_vec();
        if found != spec.burn_shape() || score.bias.is_some() {
            return Err(ImportError::ShapeMismatch {
                path: source,
                tensor: SCORE_TENSOR.into(),
                expected: spec.burn_shape(),
                found,
            });
        }
        let mut params: Vec<PendingParam> = Checkpoint::from_model(trunk)
            .params
            .into_iter()
            .filter(|p| p.spec.name != OUTPUT_TENSOR)
            .collect();
        let weight = score.weight.val();
        let load: Loader = Rc::new(move || {
            let data = weight.to_data();
            data_to_f32(&data).ok_or_else(|| ImportError::UnsupportedDtype {
                path: PathBuf::from("<model>"),
                tensor: SCORE_TENSOR.into(),
                dtype: format!("{:?}", data.dtype),
            })
        });
        params.push(PendingParam { spec, load });
        Ok(Self {
            config,
            source,
            format: SourceFormat::Model,
            meta,
            params,
        })
    }

    /// The parameters, in module order ([`seq_cls_specs`]).
    pub fn params(&self) -> impl ExactSizeIterator<Item = &ParamSpec> {
        self.params.iter().map(|p| &p.spec)
    }

    /// Reads one parameter in Burn's layout.
    pub fn load_param(&self, name: &str) -> Result<Vec<f32>> {
        let param = self
            .params
            .iter()
            .find(|p| p.spec.name == name)
            .ok_or_else(|| ImportError::MissingTensor {
                path: self.source.clone(),
                tensor: name.to_string(),
            })?;
        (param.load)()
    }

    /// Builds the trunk (LM head replaced by a [`placeholder_head`]) and the score head on
    /// `device`.
    pub fn into_parts<B: Backend>(self, device: &B::Device) -> Result<(Llama<B>, Linear<B>)> {
        self.config
            .validate()
            .map_err(|e| ImportError::Unsupported {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        let mut trunk = self.config.init::<B>(device);
        trunk.output = placeholder_head(self.config.dim, device);
        let target = <B::FloatElem as Element>::dtype();
        let (score, trunk_params): (Vec<PendingParam>, Vec<PendingParam>) = self
            .params
            .into_iter()
            .partition(|p| p.spec.name == SCORE_TENSOR);
        let checkpoint = Checkpoint {
            config: self.config.clone(),
            source: self.source.clone(),
            format: self.format.clone(),
            params: trunk_params,
            check_finite: self.format != SourceFormat::Model,
        };
        let failure = Failure::default();
        let snapshots = checkpoint.snapshots(
            |_| target,
            move |values, shape, _| crate::dtype::encode(values, shape, target),
            |_, _, _| {},
            &failure,
        );
        let result = trunk.apply(snapshots, None, None, false);
        if let Some(error) = failure.borrow_mut().take() {
            return Err(error);
        }
        if let Some(error) = result.errors.first() {
            return Err(ImportError::TensorData {
                path: self.source.clone(),
                tensor: String::new(),
                message: error.to_string(),
            });
        }
        if let Some(missing) = result.missing.iter().find(|m| m.0 != OUTPUT_TENSOR) {
            return Err(ImportError::MissingTensor {
                path: self.source.clone(),
                tensor: missing.0.clone(),
            });
        }
        let score = score.first().ok_or_else(|| ImportError::MissingTensor {
            path: self.source.clone(),
            tensor: SCORE_TENSOR.into(),
        })?;
        let values = (score.load)()?;
        let data = crate::dtype::encode(values, vec![self.config.dim, 1], target);
        let score = Linear {
            weight: Param::from_tensor(Tensor::from_data(data, device)),
            bias: None,
        };
        Ok((trunk, score))
    }

    /// Writes a transformers `LlamaForSequenceClassification` directory (`num_labels: 1`,
    /// `pad_token_id` from [`RewardMeta`]) in `dtype`. `dir` must not exist or be empty; it
    /// appears only once complete.
    pub fn save_hf(&self, dir: impl AsRef<Path>, dtype: StorageDtype) -> Result<()> {
        let mut config = HfConfig::json_for(&self.config, crate::export::torch_dtype(dtype));
        let object = config.as_object_mut().expect("a JSON object");
        object.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForSequenceClassification"]),
        );
        object.insert("id2label".into(), serde_json::json!({"0": "LABEL_0"}));
        object.insert("label2id".into(), serde_json::json!({"LABEL_0": 0}));
        object.insert(
            "pad_token_id".into(),
            serde_json::json!(self.meta.pad_token_id),
        );
        crate::export::write_hf_dir(
            dir.as_ref(),
            &config,
            &self.params,
            &self.source,
            self.format != SourceFormat::Model,
            dtype,
            None,
        )
    }

    /// Writes a reward record in `dtype` (the statistics and configuration as metadata). The
    /// file appears only once complete.
    pub fn save_record(&self, path: impl AsRef<Path>, dtype: StorageDtype) -> Result<()> {
        let path = path.as_ref();
        let checkpoint = Checkpoint {
            config: self.config.clone(),
            source: self.source.clone(),
            format: self.format.clone(),
            params: self.params.clone(),
            check_finite: self.format != SourceFormat::Model,
        };
        let failure = Failure::default();
        let snapshots = checkpoint.snapshots(
            |_| dtype.dtype(),
            move |values, shape, _| dtype.encode(values, shape),
            |_, _, _| {},
            &failure,
        );
        let config = serde_json::to_string(&self.config).expect("configs serialise");
        let meta = serde_json::to_string(&self.meta).expect("metadata serialises");
        let writer = BurnpackWriter::new(snapshots)
            .with_metadata(CONFIG_KEY, &config)
            .with_metadata(REWARD_KEY, &meta)
            .with_metadata("llama2.dtype", &dtype.to_string());
        crate::atomic::write_file(path, |tmp| {
            writer.write_to_file(tmp).map_err(|e| {
                failure
                    .borrow_mut()
                    .take()
                    .unwrap_or_else(|| record_error(path, e.to_string()))
            })
        })
    }
}

/// Opens a `LlamaForSequenceClassification` directory.
fn open_hf_seq_cls(dir: &Path) -> Result<SeqClsCheckpoint> {
    let config_path = dir.join("config.json");
    let hf = HfConfig::read(&config_path)?;
    let fields: SeqClsFields =
        crate::error::read_json(&config_path, "Hugging Face model configuration")?;
    let config = hf.to_config().map_err(|message| ImportError::Unsupported {
        path: config_path.clone(),
        message,
    })?;
    let labels = fields
        .num_labels
        .or_else(|| fields.id2label.as_ref().map(BTreeMap::len));
    if let Some(labels) = labels
        && labels != 1
    {
        return Err(ImportError::Unsupported {
            path: config_path,
            message: format!("num_labels is {labels}: a reward model has one output"),
        });
    }
    let pad_token_id = match &fields.pad_token_id {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| ImportError::Config {
                    path: config_path.clone(),
                    message: format!("pad_token_id {value} is not a token id"),
                })?,
        ),
    };

    let stored = stored_tensors(dir)?;
    let specs = seq_cls_specs(&config);
    let mut names: Vec<&String> = stored.keys().collect();
    names.sort();
    for name in names {
        let known = specs.iter().any(|s| &s.hf_name == name)
            || name == "lm_head.weight"
            || name.ends_with("rotary_emb.inv_freq");
        if !known {
            return Err(ImportError::UnknownTensor {
                path: stored[name].file.clone(),
                tensor: name.clone(),
            });
        }
    }
    let mut params = Vec::with_capacity(specs.len());
    for spec in specs {
        let tensor = stored
            .get(&spec.hf_name)
            .ok_or_else(|| ImportError::MissingTensor {
                path: dir.to_path_buf(),
                tensor: spec.hf_name.clone(),
            })?;
        if crate::dtype::safetensors_float(tensor.dtype).is_none() {
            return Err(ImportError::UnsupportedDtype {
                path: tensor.file.clone(),
                tensor: spec.hf_name.clone(),
                dtype: format!("{:?}", tensor.dtype),
            });
        }
        if tensor.shape != spec.shape {
            return Err(ImportError::ShapeMismatch {
                path: tensor.file.clone(),
                tensor: spec.hf_name.clone(),
                expected: spec.shape.clone(),
                found: tensor.shape.clone(),
            });
        }
        let load = hf_loader(spec.clone(), spec.hf_name.clone(), tensor.clone());
        params.push(PendingParam { spec, load });
    }
    Ok(SeqClsCheckpoint {
        config,
        source: dir.to_path_buf(),
        format: SourceFormat::HuggingFace,
        meta: RewardMeta {
            pad_token_id,
            normalization: None,
        },
        params,
    })
}

/// Opens a reward record written by [`SeqClsCheckpoint::save_record`].
fn open_reward_record(path: &Path) -> Result<SeqClsCheckpoint> {
    let metadata = read_metadata(path)?.metadata;
    let meta_json = metadata.get(REWARD_KEY).ok_or_else(|| {
        record_error(
            path,
            format!("no `{REWARD_KEY}` metadata: not a llama2-burn reward record"),
        )
    })?;
    let meta: RewardMeta = serde_json::from_str(meta_json)
        .map_err(|e| record_error(path, format!("`{REWARD_KEY}`: {e}")))?;
    let config_json = metadata
        .get(CONFIG_KEY)
        .ok_or_else(|| record_error(path, format!("no `{CONFIG_KEY}` metadata")))?;
    let config: LlamaConfig = serde_json::from_str(config_json)
        .map_err(|e| record_error(path, format!("`{CONFIG_KEY}`: {e}")))?;
    config
        .validate()
        .map_err(|e| record_error(path, e.to_string()))?;
    let mut store = BurnpackStore::from_file(path);
    let snapshots: HashMap<String, TensorSnapshot> = store
        .get_all_snapshots()
        .map_err(|e| record_error(path, e.to_string()))?
        .iter()
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect();
    let specs = seq_cls_specs(&config);
    if let Some(unknown) = snapshots
        .keys()
        .filter(|k| !specs.iter().any(|s| &s.name == *k))
        .min()
    {
        return Err(ImportError::UnknownTensor {
            path: path.to_path_buf(),
            tensor: unknown.clone(),
        });
    }
    let mut params = Vec::with_capacity(specs.len());
    for spec in specs {
        let snapshot =
            snapshots
                .get(&spec.name)
                .cloned()
                .ok_or_else(|| ImportError::MissingTensor {
                    path: path.to_path_buf(),
                    tensor: spec.name.clone(),
                })?;
        if !is_float(snapshot.dtype) {
            return Err(ImportError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: spec.name.clone(),
                dtype: format!("{:?}", snapshot.dtype),
            });
        }
        if snapshot.shape.as_slice() != spec.burn_shape().as_slice() {
            return Err(ImportError::ShapeMismatch {
                path: path.to_path_buf(),
                tensor: spec.name.clone(),
                expected: spec.burn_shape(),
                found: snapshot.shape.to_vec(),
            });
        }
        let file = path.to_path_buf();
        let name = spec.name.clone();
        let load: Loader = Rc::new(move || {
            let data = snapshot.to_data().map_err(|e| ImportError::TensorData {
                path: file.clone(),
                tensor: name.clone(),
                message: format!("{e:?}"),
            })?;
            data_to_f32(&data).ok_or_else(|| ImportError::UnsupportedDtype {
                path: file.clone(),
                tensor: name.clone(),
                dtype: format!("{:?}", data.dtype),
            })
        });
        params.push(PendingParam { spec, load });
    }
    Ok(SeqClsCheckpoint {
        config,
        source: path.to_path_buf(),
        format: SourceFormat::Record,
        meta,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::NdArray<f32>;

    fn tiny() -> LlamaConfig {
        LlamaConfig::new(16, 1, 4, 2, 40)
            .with_multiple_of(16)
            .with_max_seq_len(32)
    }

    fn parts() -> (Llama<B>, Linear<B>) {
        let device = Default::default();
        let trunk = tiny().init::<B>(&device);
        let score = LinearConfig::new(16, 1).with_bias(false).init(&device);
        (trunk, score)
    }

    fn values(linear: &Linear<B>) -> Vec<f32> {
        linear.weight.val().into_data().to_vec().unwrap()
    }

    #[test]
    fn specs_drop_the_lm_head_and_add_the_score() {
        let specs = seq_cls_specs(&tiny());
        assert!(specs.iter().all(|s| s.name != OUTPUT_TENSOR));
        let score = specs.last().unwrap();
        assert_eq!(
            (score.shape.clone(), score.burn_shape()),
            (vec![1, 16], vec![16, 1])
        );
        assert_eq!(specs.len(), param_specs(&tiny()).len());
    }

    #[test]
    fn records_and_hf_directories_round_trip() {
        let (trunk, score) = parts();
        let meta = RewardMeta {
            pad_token_id: Some(0),
            normalization: Some(RewardNormalization {
                mean: 0.25,
                std: 1.5,
                count: 7,
            }),
        };
        let dir = tempfile::tempdir().unwrap();
        let file = SeqClsCheckpoint::from_parts(&trunk, &score, meta.clone()).unwrap();
        file.save_record(dir.path().join("rm.bpk"), StorageDtype::F32)
            .unwrap();
        file.save_hf(dir.path().join("hf"), StorageDtype::F32)
            .unwrap();
        for path in [dir.path().join("rm.bpk"), dir.path().join("hf")] {
            let back = SeqClsCheckpoint::open(&path).unwrap();
            if back.format == SourceFormat::Record {
                assert_eq!(back.meta, meta);
            } else {
                assert_eq!(back.meta.pad_token_id, Some(0));
            }
            for spec in file.params() {
                assert_eq!(
                    back.load_param(&spec.name).unwrap(),
                    file.load_param(&spec.name).unwrap(),
                    "{}: {}",
                    path.display(),
                    spec.name
                );
            }
            let (t, s) = back.into_parts::<B>(&Default::default()).unwrap();
            assert_eq!(values(&s), values(&score));
            assert_eq!(t.output.weight.dims(), [16, 1]);
        }
    }

    #[test]
    fn a_causal_lm_record_is_not_a_reward_record() {
        let (trunk, _) = parts();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lm.bpk");
        crate::save_model(&trunk, &path, StorageDtype::F32).unwrap();
        let err = SeqClsCheckpoint::open(&path).unwrap_err();
        assert!(matches!(err, ImportError::Record { .. }), "{err}");
    }

    #[test]
    fn a_score_head_of_the_wrong_shape_is_refused() {
        let (trunk, _) = parts();
        let two = LinearConfig::new(16, 2)
            .with_bias(false)
            .init(&Default::default());
        let err = SeqClsCheckpoint::from_parts(&trunk, &two, RewardMeta::default()).unwrap_err();
        assert!(
            matches!(&err, ImportError::ShapeMismatch { tensor, .. } if tensor == SCORE_TENSOR),
            "{err}"
        );
    }
}
