//! Weight import and export for Llama 2: data flows files → [`Checkpoint`] → model or record.
//!
//! | module | contents |
//! |---|---|
//! | [`meta`] | Meta's `params.json` + `consolidated.NN.pth` (bf16, model-parallel shards merged) |
//! | [`hf`] | Hugging Face `config.json` + safetensors (single or sharded), q/k un-permuted |
//! | [`record`] | llama2-burn record files (burnpack, f32 / f16 / bf16) |
//! | [`export`] | back out to Hugging Face safetensors |
//! | [`layout`] | parameter names, shapes, shard splits and the rotary permutation |
//! | [`checkpoint`] | the lazily loaded [`Checkpoint`] every source opens into |
//! | [`error`] | [`ImportError`], which names the file and tensor at fault |
//!
//! ```no_run
//! use llama2_import::{Checkpoint, StorageDtype};
//! # type B = burn::backend::NdArray;
//! let checkpoint = Checkpoint::open("llama-2-7b")?; // Meta or Hugging Face directory
//! checkpoint.save_record("llama-2-7b.bpk", StorageDtype::BF16)?;
//! let model = llama2_import::load_model::<B>("llama-2-7b.bpk", &Default::default())?;
//! # Ok::<(), llama2_import::ImportError>(())
//! ```

mod atomic;
pub mod checkpoint;
pub mod dtype;
pub mod error;
pub mod export;
pub mod hf;
pub mod layout;
pub mod meta;
pub mod record;

use std::path::Path;

use burn::tensor::backend::Backend;
use llama2::Llama;

pub use checkpoint::{Checkpoint, SourceFormat};
pub use dtype::StorageDtype;
pub use error::{ImportError, Result};

/// Loads a model from a record file, a Meta checkpoint directory or a Hugging Face
/// directory.
pub fn load_model<B: Backend>(path: impl AsRef<Path>, device: &B::Device) -> Result<Llama<B>> {
    Checkpoint::open(path)?.into_model(device)
}

/// Saves a model as a record file in `dtype`.
pub fn save_model<B: Backend>(
    model: &Llama<B>,
    path: impl AsRef<Path>,
    dtype: StorageDtype,
) -> Result<()> {
    Checkpoint::from_model(model).save_record(path, dtype)
}

/// Exports a model as a Hugging Face `LlamaForCausalLM` directory in `dtype`.
pub fn export_hf<B: Backend>(
    model: &Llama<B>,
    dir: impl AsRef<Path>,
    dtype: StorageDtype,
) -> Result<()> {
    Checkpoint::from_model(model).save_hf(dir, dtype)
}
