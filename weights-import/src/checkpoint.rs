//! A checkpoint opened for reading: its configuration and a lazy loader for every parameter.
//!
//! Nothing is read until a parameter is asked for, and parameters are converted one at a
//! time, so converting a checkpoint needs memory for the output plus one tensor.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element, Shape, TensorData};
use burn_store::{ModuleSnapshot, TensorSnapshot, TensorSnapshotError};
use llama2::model::precision;
use llama2::{Llama, LlamaConfig, WeightDType};

use crate::error::{ImportError, Result};
use crate::layout::ParamSpec;

/// Produces one parameter's values in Burn's layout (`[in, out]` for linear weights).
pub(crate) type Loader = Rc<dyn Fn() -> Result<Vec<f32>>>;

/// Progress callback shared by the snapshots: `(done, total, name)`.
type Progress = Rc<RefCell<dyn FnMut(usize, usize, &str)>>;

/// The first error met while reading tensors behind burn-store's string-typed errors.
pub(crate) type Failure = Rc<RefCell<Option<ImportError>>>;

/// Where a checkpoint was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFormat {
    /// Meta's `params.json` + `consolidated.NN.pth`, with this many model-parallel shards.
    Meta { shards: usize },
    /// Hugging Face `config.json` + safetensors.
    HuggingFace,
    /// A llama2-burn record file.
    Record,
    /// Parameters of a model in memory.
    Model,
}

/// A parameter and the way to read it.
#[derive(Clone)]
pub struct PendingParam {
    /// What the parameter is.
    pub spec: ParamSpec,
    pub(crate) load: Loader,
}

/// A checkpoint: configuration plus lazily loaded parameters.
pub struct Checkpoint {
    /// The model's hyper-parameters.
    pub config: LlamaConfig,
    /// The file or directory it was read from.
    pub source: PathBuf,
    /// The layout it was read from.
    pub format: SourceFormat,
    pub(crate) params: Vec<PendingParam>,
    /// Whether every tensor read is scanned for NaN and infinities (on by default).
    pub(crate) check_finite: bool,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("source", &self.source)
            .field("format", &self.format)
            .field("config", &self.config)
            .field("params", &self.params.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens a Burn record file, a Meta checkpoint directory or a Hugging Face directory,
    /// deciding by what is there.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_file() {
            return crate::record::open_record(path);
        }
        if !path.exists() {
            return Err(ImportError::MissingFile {
                path: path.to_path_buf(),
                what: "checkpoint file or directory",
            });
        }
        if path.join("params.json").exists() {
            crate::meta::open_meta(path)
        } else if path.join("config.json").exists() {
            crate::hf::open_hf(path)
        } else if has_pth(path) {
            // A Meta directory that lost its params.json: say what is missing.
            crate::meta::open_meta(path)
        } else if has_safetensors(path) {
            crate::hf::open_hf(path)
        } else {
            Err(ImportError::UnknownLayout {
                path: path.to_path_buf(),
            })
        }
    }

    /// Turns the scan for NaN and infinite weights off or on (on by default for checkpoints
    /// opened from files, off for [`from_model`](Self::from_model)). With it on, reading a
    /// tensor holding one fails with [`ImportError::NonFinite`].
    pub fn with_check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// Reads a parameter, scanning it for non-finite values when asked to.
    pub(crate) fn load(&self, param: &PendingParam) -> Result<Vec<f32>> {
        load_checked(param, &self.source, self.check_finite)
    }

    /// Refuses an output path that is the source file or one of the files of the source
    /// directory: writing it would replace an input.
    pub(crate) fn refuse_overwriting_inputs(&self, out: &Path) -> Result<()> {
        let Ok(out_meta) = std::fs::metadata(out) else {
            return Ok(()); // a new file cannot be an input
        };
        let mut inputs = vec![self.source.clone()];
        if self.source.is_dir()
            && let Ok(entries) = std::fs::read_dir(&self.source)
        {
            inputs.extend(entries.flatten().map(|e| e.path()));
        }
        for input in inputs {
            if let Ok(meta) = std::fs::metadata(&input)
                && same_file(&out_meta, &meta, out, &input)
            {
                return Err(ImportError::OutputIsInput {
                    path: out.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// The parameters, in module order.
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
        self.load(param)
    }

    /// Builds the model on `device` with these weights.
    pub fn into_model<B: Backend>(self, device: &B::Device) -> Result<Llama<B>> {
        self.into_model_with_progress(device, |_, _, _| {})
    }

    /// [`into_model`](Self::into_model), calling `progress(done, total, name)` as each tensor
    /// is loaded.
    pub fn into_model_with_progress<B: Backend>(
        self,
        device: &B::Device,
        progress: impl FnMut(usize, usize, &str) + 'static,
    ) -> Result<Llama<B>> {
        self.into_model_in(device, WeightDType::F32, progress)
    }

    /// [`into_model_with_progress`](Self::into_model_with_progress) with the projections and
    /// the output head stored as `weights` ([`Llama::with_weight_dtype`]) as they are read:
    /// each tensor is converted on its own, so a model loaded in f16 never holds its f32
    /// weights (a 7B model needs about 13.5 GB instead of 27).
    ///
    /// # Errors
    ///
    /// Besides the loading errors, [`ImportError::Unsupported`] when the backend cannot
    /// store `weights`.
    pub fn into_model_in<B: Backend>(
        self,
        device: &B::Device,
        weights: WeightDType,
        progress: impl FnMut(usize, usize, &str) + 'static,
    ) -> Result<Llama<B>> {
        self.config
            .validate()
            .map_err(|e| ImportError::Unsupported {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        weights
            .check::<B>(device)
            .map_err(|e| ImportError::Unsupported {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        // Parameters are lazy until loaded: the initialiser's f32 tensors are never made.
        let mut model = self.config.init::<B>(device);
        let target = <B::FloatElem as Element>::dtype();
        let stored = DType::from(weights.float_dtype());
        let failure = Failure::default();
        let snapshots = self.snapshots(
            |name| {
                if precision::is_projection_weight(name) {
                    stored
                } else {
                    target
                }
            },
            crate::dtype::encode,
            progress,
            &failure,
        );
        let result = model.apply(snapshots, None, None, false);
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
        if let Some(missing) = result.missing.first() {
            return Err(ImportError::MissingTensor {
                path: self.source.clone(),
                tensor: missing.0.clone(),
            });
        }
        if let Some(unused) = result.unused.first() {
            return Err(ImportError::UnknownTensor {
                path: self.source.clone(),
                tensor: unused.clone(),
            });
        }
        Ok(model)
    }

    /// Lazy burn-store snapshots of every parameter, each encoded by `encode` into
    /// `dtype(name)` when read. The first loader error is kept in `failure`, since burn-store reports
    /// snapshot errors as strings.
    pub(crate) fn snapshots(
        &self,
        dtype: impl Fn(&str) -> DType,
        encode: impl Fn(Vec<f32>, Vec<usize>, DType) -> TensorData + Clone + 'static,
        progress: impl FnMut(usize, usize, &str) + 'static,
        failure: &Failure,
    ) -> Vec<TensorSnapshot> {
        let progress: Progress = Rc::new(RefCell::new(progress));
        let total = self.params.len();
        self.params
            .iter()
            .enumerate()
            .map(|(index, param)| {
                let load = param.load.clone();
                let source = self.source.clone();
                let check_finite = self.check_finite;
                let failure = failure.clone();
                let progress = progress.clone();
                let encode = encode.clone();
                let shape = param.spec.burn_shape();
                let name = param.spec.name.clone();
                let param_dtype = dtype(&name);
                let data_shape = shape.clone();
                let data_fn = Rc::new(move || -> Result<TensorData, TensorSnapshotError> {
                    let values = load()
                        .and_then(|values| finite(values, &source, &name, check_finite))
                        .map_err(|e| {
                            let message = e.to_string();
                            failure.borrow_mut().get_or_insert(e);
                            TensorSnapshotError::DataError(message)
                        })?;
                    (progress.borrow_mut())(index + 1, total, &name);
                    Ok(encode(values, data_shape.clone(), param_dtype))
                });
                TensorSnapshot::from_closure(
                    data_fn,
                    param_dtype,
                    Shape::from(shape),
                    param.spec.name.split('.').map(str::to_string).collect(),
                    Vec::new(),
                    ParamId::new(),
                )
            })
            .collect()
    }

    /// The parameters of a model, for saving or exporting it.
    pub fn from_model<B: Backend>(model: &Llama<B>) -> Self {
        let config = model.config.clone();
        let snapshots: std::collections::HashMap<String, TensorSnapshot> = model
            .collect(None, None, false)
            .into_iter()
            .map(|s| (s.full_path(), s))
            .collect();
        let params = crate::layout::param_specs(&config)
            .into_iter()
            .map(|spec| {
                let snapshot = snapshots.get(&spec.name).cloned();
                let name = spec.name.clone();
                let load: Loader = Rc::new(move || {
                    let snapshot = snapshot
                        .as_ref()
                        .ok_or_else(|| ImportError::MissingTensor {
                            path: PathBuf::from("<model>"),
                            tensor: name.clone(),
                        })?;
                    let data = snapshot.to_data().map_err(|e| ImportError::TensorData {
                        path: PathBuf::from("<model>"),
                        tensor: name.clone(),
                        message: format!("{e:?}"),
                    })?;
                    crate::dtype::data_to_f32(&data).ok_or_else(|| ImportError::UnsupportedDtype {
                        path: PathBuf::from("<model>"),
                        tensor: name.clone(),
                        dtype: format!("{:?}", data.dtype),
                    })
                });
                PendingParam { spec, load }
            })
            .collect();
        Self {
            config,
            source: PathBuf::from("<model>"),
            format: SourceFormat::Model,
            params,
            // A model in memory is saved as it is (a diverged run's weights included); the
            // scan guards what is read from files.
            check_finite: false,
        }
    }
}

/// Reads a parameter, scanning it for non-finite values when `check` is set.
pub(crate) fn load_checked(param: &PendingParam, source: &Path, check: bool) -> Result<Vec<f32>> {
    finite((param.load)()?, source, &param.spec.name, check)
}

fn finite(values: Vec<f32>, source: &Path, name: &str, check: bool) -> Result<Vec<f32>> {
    if check && let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(ImportError::NonFinite {
            path: source.to_path_buf(),
            tensor: name.to_string(),
            index,
            value: values[index],
        });
    }
    Ok(values)
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, a_path: &Path, b_path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = (a_path, b_path);
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        match (a_path.canonicalize(), b_path.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

fn has_ext(dir: &Path, ext: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == ext))
        })
        .unwrap_or(false)
}

fn has_pth(dir: &Path) -> bool {
    has_ext(dir, "pth")
}

fn has_safetensors(dir: &Path) -> bool {
    has_ext(dir, "safetensors")
}
