//! Import and export errors. Every variant names the file and, where there is one, the tensor.

use std::path::PathBuf;

/// Why a checkpoint could not be read, converted or written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A required file is absent.
    #[error("{path}: missing ({what})")]
    MissingFile { path: PathBuf, what: &'static str },
    /// The path is neither a Burn record, a Meta checkpoint directory nor a Hugging Face one.
    #[error(
        "{path}: not a Burn record, a Meta checkpoint (params.json) or a Hugging Face checkpoint (config.json)"
    )]
    UnknownLayout { path: PathBuf },
    /// A JSON configuration is malformed or lacks a field.
    #[error("{path}: invalid JSON configuration: {message}")]
    Config { path: PathBuf, message: String },
    /// The configuration describes a model this crate cannot build.
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    /// Model-parallel shards are missing, unexpected or do not fit the model.
    #[error("{path}: {message}")]
    Shards { path: PathBuf, message: String },
    /// A `.pth` file is not a readable PyTorch zip/pickle archive.
    #[error("{path}: not a readable PyTorch checkpoint: {message}")]
    Pytorch { path: PathBuf, message: String },
    /// A safetensors file or index is malformed.
    #[error("{path}: not a readable safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A Burn record file is malformed.
    #[error("{path}: not a readable llama2-burn record: {message}")]
    Record { path: PathBuf, message: String },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },
    /// The checkpoint holds a tensor the model does not have.
    #[error("{path}: unexpected tensor `{tensor}`")]
    UnknownTensor { path: PathBuf, tensor: String },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor is stored in a type that is not a floating-point weight type.
    #[error(
        "{path}: tensor `{tensor}` has unsupported dtype {dtype} (expected f32, f16, bf16 or f64)"
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A tensor's storage record is absent from the archive's own `data/` folder.
    #[error("{path}: tensor `{tensor}` has no storage record `{record}` in the archive")]
    MissingRecord {
        path: PathBuf,
        tensor: String,
        record: String,
    },
    /// A tensor's offset, sizes or strides do not fit its storage, or the storage's declared
    /// size is not the record's.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Storage {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    /// An archive record's bytes do not match its CRC-32.
    #[error("{path}: record `{record}` is corrupt (CRC-32 mismatch)")]
    Checksum { path: PathBuf, record: String },
    /// A tensor appears twice: two keys of one pickle or two files of one checkpoint.
    #[error("{path}: tensor `{tensor}` appears more than once (also in {other})")]
    DuplicateTensor {
        path: PathBuf,
        tensor: String,
        other: PathBuf,
    },
    /// A safetensors index and the shards it names disagree about where a tensor is.
    #[error("{path}: {message}")]
    Index { path: PathBuf, message: String },
    /// A safetensors index names a file outside the model directory.
    #[error("{path}: the index names `{entry}`, which is not a file inside the model directory")]
    PathEscape { path: PathBuf, entry: String },
    /// A size in a configuration or a file is beyond what this crate accepts.
    #[error("{path}: {what} = {value} exceeds the limit of {limit}")]
    Limit {
        path: PathBuf,
        what: String,
        value: String,
        limit: String,
    },
    /// A weight is NaN or infinite.
    #[error("{path}: tensor `{tensor}` holds a non-finite value ({value}) at element {index}")]
    NonFinite {
        path: PathBuf,
        tensor: String,
        index: usize,
        value: f32,
    },
    /// The output would overwrite one of the inputs.
    #[error("{path}: the output is one of the input files; choose another output path")]
    OutputIsInput { path: PathBuf },
    /// LoRA adapters could not be attached.
    #[error(transparent)]
    Lora(#[from] llama2::lora::LoraError),
    /// A tokenizer file (or the one a record carries) does not load.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// A Hugging Face Hub repo id could not be resolved to local files.
    #[cfg(feature = "hub")]
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    /// Reading a tensor's bytes failed.
    #[error("{path}: cannot read tensor `{tensor}`: {message}")]
    TensorData {
        path: PathBuf,
        tensor: String,
        message: String,
    },
}

impl From<llama2::atomic::WriteError> for ImportError {
    fn from(e: llama2::atomic::WriteError) -> Self {
        Self::io(e.path, e.source)
    }
}

impl ImportError {
    /// A read error, reported as [`MissingFile`](Self::MissingFile) when the file is absent.
    pub(crate) fn read(path: &std::path::Path, what: &'static str, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Self::MissingFile {
                path: path.to_path_buf(),
                what,
            },
            _ => Self::io(path, source),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reads and parses a JSON configuration file (`what` names it in a missing-file error).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &'static str,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::read(path, what, e))?;
    serde_json::from_str(&text).map_err(|e| ImportError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Result of this crate's operations.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;
