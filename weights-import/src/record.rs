//! llama2-burn record files: Burn's burnpack format (burn-store) holding every parameter in
//! Burn's layout and the model configuration as JSON metadata (`llama2.config`), so that a
//! record alone rebuilds the model.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use burn_store::{BurnpackStore, BurnpackWriter, ModuleStore, TensorSnapshot};
use llama2::LlamaConfig;
use serde::Deserialize;

use crate::checkpoint::{Checkpoint, Failure, Loader, PendingParam, SourceFormat};
use crate::dtype::{StorageDtype, data_to_f32, is_float};
use crate::error::{ImportError, Result};
use crate::layout::param_specs;
use crate::tokenizer_file::TokenizerFile;

/// Metadata key holding the model configuration.
pub const CONFIG_KEY: &str = "llama2.config";

pub(crate) fn record_error(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Record {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The burnpack header: magic "BURN" (u32 LE), format version (u16 LE), metadata size (u32 LE).
const MAGIC: u32 = 0x4255_524E;
const HEADER_SIZE: usize = 10;
const MAX_METADATA_SIZE: usize = 100 * 1024 * 1024;

/// The part of burnpack's CBOR metadata block read here.
#[derive(Deserialize)]
pub(crate) struct Metadata {
    #[serde(default)]
    pub(crate) metadata: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    tensors: std::collections::BTreeMap<String, Descriptor>,
}

/// Where a tensor's bytes are, relative to the data section.
#[derive(Deserialize)]
struct Descriptor {
    data_offsets: (u64, u64),
}

/// burnpack's data section starts at the first multiple of this after the metadata.
const TENSOR_ALIGNMENT: u64 = 256;

/// Refuses a record whose file ends before the data its metadata describes (a truncated
/// copy, an interrupted write), naming the first tensor cut off.
fn check_extent(path: &Path, metadata_size: usize, metadata: &Metadata) -> Result<()> {
    let file_len = std::fs::metadata(path)
        .map_err(|e| ImportError::io(path, e))?
        .len();
    let data_start =
        ((HEADER_SIZE + metadata_size) as u64).div_ceil(TENSOR_ALIGNMENT) * TENSOR_ALIGNMENT;
    for (name, tensor) in &metadata.tensors {
        let (start, end) = tensor.data_offsets;
        if start > end {
            return Err(record_error(
                path,
                format!("tensor `{name}` has data offsets {start}..{end}"),
            ));
        }
        let needed = data_start.saturating_add(end);
        if needed > file_len {
            return Err(record_error(
                path,
                format!(
                    "the file is {file_len} bytes but tensor `{name}` ends at byte {needed}: truncated"
                ),
            ));
        }
    }
    Ok(())
}

/// Reads the key/value metadata of a burnpack file.
pub(crate) fn read_metadata(path: &Path) -> Result<Metadata> {
    let mut file = std::fs::File::open(path).map_err(|e| ImportError::io(path, e))?;
    let mut header = [0u8; HEADER_SIZE];
    file.read_exact(&mut header)
        .map_err(|_| record_error(path, "file is shorter than a burnpack header"))?;
    if u32::from_le_bytes([header[0], header[1], header[2], header[3]]) != MAGIC {
        return Err(record_error(path, "bad magic number: not a burnpack file"));
    }
    let size = u32::from_le_bytes([header[6], header[7], header[8], header[9]]) as usize;
    if size > MAX_METADATA_SIZE {
        return Err(record_error(path, "metadata block is too large"));
    }
    let mut metadata = vec![0u8; size];
    file.read_exact(&mut metadata)
        .map_err(|_| record_error(path, "file ends inside the metadata block"))?;
    let metadata: Metadata = ciborium::de::from_reader(metadata.as_slice())
        .map_err(|e| record_error(path, e.to_string()))?;
    check_extent(path, size, &metadata)?;
    Ok(metadata)
}

/// The tokenizer file a record carries, if any.
pub fn record_tokenizer_file(path: &Path) -> Result<Option<TokenizerFile>> {
    TokenizerFile::from_metadata(&read_metadata(path)?.metadata, path)
}

/// The tokenizer of a model: the one a record carries, or the
/// `tokenizer.model` / `tokenizer.json` of a Meta or Hugging Face folder;
/// `None` when there is none.
pub fn model_tokenizer(path: impl AsRef<Path>) -> Result<Option<llama2::Tokenizer>> {
    let path = path.as_ref();
    let file = if path.is_file() {
        record_tokenizer_file(path)?
    } else {
        TokenizerFile::find(path)
            .map(TokenizerFile::read)
            .transpose()?
    };
    file.map(|f| f.tokenizer(path)).transpose()
}

/// Opens a record written by [`Checkpoint::save_record`].
pub fn open_record(path: &Path) -> Result<Checkpoint> {
    let metadata = read_metadata(path)?;
    let config_json = metadata.metadata.get(CONFIG_KEY).ok_or_else(|| {
        record_error(
            path,
            format!("no `{CONFIG_KEY}` metadata: not a llama2-burn record"),
        )
    })?;
    let config: LlamaConfig = serde_json::from_str(config_json)
        .map_err(|e| record_error(path, format!("`{CONFIG_KEY}`: {e}")))?;
    config
        .validate()
        .map_err(|e| record_error(path, e.to_string()))?;
    crate::limits::check_config(path, &config)?;
    let mut store = BurnpackStore::from_file(path);
    let snapshots: HashMap<String, TensorSnapshot> = store
        .get_all_snapshots()
        .map_err(|e| record_error(path, e.to_string()))?
        .iter()
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect();

    let specs = param_specs(&config);
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
    Ok(Checkpoint {
        config,
        source: path.to_path_buf(),
        format: SourceFormat::Record,
        params,
        check_finite: true,
    })
}

impl Checkpoint {
    /// Writes a record file in `dtype`, one tensor at a time. The file appears only once
    /// complete.
    ///
    /// The record carries the tokenizer of the checkpoint: the one a record
    /// source carries, or the `tokenizer.model` / `tokenizer.json` of a Meta or
    /// Hugging Face folder ([`TokenizerFile::find`]); see
    /// [`save_record_with`](Self::save_record_with) to choose it.
    pub fn save_record(&self, path: impl AsRef<Path>, dtype: StorageDtype) -> Result<()> {
        let tokenizer = self.source_tokenizer()?;
        self.save_record_with(path, dtype, tokenizer.as_ref(), |_, _, _| {})
    }

    /// The tokenizer file that came with the checkpoint, if any.
    pub fn source_tokenizer(&self) -> Result<Option<TokenizerFile>> {
        match self.format {
            SourceFormat::Record => record_tokenizer_file(&self.source),
            SourceFormat::Model => Ok(None),
            SourceFormat::Meta { .. } | SourceFormat::HuggingFace => {
                TokenizerFile::find(&self.source)
                    .map(TokenizerFile::read)
                    .transpose()
            }
        }
    }

    /// [`save_record`](Self::save_record), calling `progress(done, total, name)` as each
    /// tensor is written.
    pub fn save_record_with_progress(
        &self,
        path: impl AsRef<Path>,
        dtype: StorageDtype,
        progress: impl FnMut(usize, usize, &str) + 'static,
    ) -> Result<()> {
        let tokenizer = self.source_tokenizer()?;
        self.save_record_with(path, dtype, tokenizer.as_ref(), progress)
    }

    /// [`save_record_with_progress`](Self::save_record_with_progress) storing
    /// `tokenizer` (or none) in the record.
    pub fn save_record_with(
        &self,
        path: impl AsRef<Path>,
        dtype: StorageDtype,
        tokenizer: Option<&TokenizerFile>,
        progress: impl FnMut(usize, usize, &str) + 'static,
    ) -> Result<()> {
        let path = path.as_ref();
        self.refuse_overwriting_inputs(path)?;
        let failure = Failure::default();
        let snapshots = self.snapshots(
            |_| dtype.dtype(),
            move |values, shape, _| dtype.encode(values, shape),
            progress,
            &failure,
        );
        let config = serde_json::to_string(&self.config).expect("configs serialise");
        let mut writer = BurnpackWriter::new(snapshots)
            .with_metadata(CONFIG_KEY, &config)
            .with_metadata("llama2.dtype", &dtype.to_string());
        if let Some(tokenizer) = tokenizer {
            for (key, value) in tokenizer.to_metadata() {
                writer = writer.with_metadata(key, &value);
            }
        }
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
