//! Weight import and export for Llama 2: data flows files → [`Checkpoint`] → model or record.
//!
//! | module | contents |
//! |---|---|
//! | [`meta`] | Meta's `params.json` + `consolidated.NN.pth` (bf16, model-parallel shards merged) |
//! | [`hf`] | Hugging Face `config.json` + safetensors (single or sharded), q/k un-permuted |
//! | [`hub`] | models and tokenizers by Hugging Face Hub repo id: the local HF cache, then downloads |
//! | [`record`] | llama2-burn record files (burnpack, f32 / f16 / bf16) with their config and tokenizer |
//! | [`tokenizer_file`] | the tokenizer bytes a record carries |
//! | [`export`] | back out to Hugging Face safetensors |
//! | [`peft`] | LoRA adapters in Hugging Face PEFT's layout, both ways |
//! | [`seq_cls`] | reward models: `LlamaForSequenceClassification` directories and reward records |
//! | [`layout`] | parameter names, shapes, shard splits and the rotary permutation |
//! | [`checkpoint`] | the lazily loaded [`Checkpoint`] every source opens into |
//! | [`error`] | [`ImportError`], which names the file and tensor at fault |
//! | [`atomic`] | (re-exported from `llama2`) every output written to a temporary sibling and renamed into place |
//!
//! ```no_run
//! use llama2_import::{Checkpoint, StorageDtype};
//! # type B = burn::backend::NdArray;
//! let checkpoint = Checkpoint::open("llama-2-7b")?; // Meta or Hugging Face directory
//! checkpoint.save_record("llama-2-7b.bpk", StorageDtype::BF16)?;
//! let model = llama2_import::load_model::<B>("llama-2-7b.bpk", &Default::default())?;
//! # Ok::<(), llama2_import::ImportError>(())
//! ```

pub use llama2::atomic;
pub mod checkpoint;
pub mod dtype;
pub mod error;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod hf;
#[cfg(feature = "hub")]
pub mod hub;
pub mod layout;
pub mod limits;
pub mod meta;
pub mod peft;
mod pickle;
mod pth;
pub mod record;
pub mod seq_cls;
pub mod tokenizer_file;

use std::path::Path;

use burn::tensor::backend::Backend;
use llama2::{Llama, WeightDType};

pub use checkpoint::{Checkpoint, SourceFormat};
pub use dtype::StorageDtype;
pub use error::{ImportError, Result};
pub use peft::{load_peft, save_peft};
pub use record::model_tokenizer;
pub use seq_cls::{RewardMeta, RewardNormalization, SeqClsCheckpoint};
pub use tokenizer_file::TokenizerFile;

/// Loads a model from a record file, a Meta checkpoint directory or a Hugging Face
/// directory.
pub fn load_model<B: Backend>(path: impl AsRef<Path>, device: &B::Device) -> Result<Llama<B>> {
    Checkpoint::open(path)?.into_model(device)
}

/// [`load_model`] with the projections and the output head stored as `weights`, converted
/// one tensor at a time as they are read ([`Checkpoint::into_model_in`]).
pub fn load_model_in<B: Backend>(
    path: impl AsRef<Path>,
    device: &B::Device,
    weights: WeightDType,
) -> Result<Llama<B>> {
    Checkpoint::open(path)?.into_model_in(device, weights, |_, _, _| {})
}

/// Saves a model as a record file in `dtype`, without a tokenizer (see
/// [`save_model_with_tokenizer`]). A model with LoRA adapters attached is
/// refused: merge them first ([`Llama::merge_lora`]) or save them on their own
/// ([`llama2::lora::save_adapters`], [`save_peft`]).
pub fn save_model<B: Backend>(
    model: &Llama<B>,
    path: impl AsRef<Path>,
    dtype: StorageDtype,
) -> Result<()> {
    refuse_adapters(model, path.as_ref())?;
    Checkpoint::from_model(model).save_record_with(path, dtype, None, |_, _, _| {})
}

/// [`save_model`] storing the tokenizer file `tokenizer` (`tokenizer.model`
/// or `tokenizer.json`) in the record, so that `generate` and `chat` need no
/// `--tokenizer` for it ([`model_tokenizer`]).
pub fn save_model_with_tokenizer<B: Backend>(
    model: &Llama<B>,
    path: impl AsRef<Path>,
    dtype: StorageDtype,
    tokenizer: &Path,
) -> Result<()> {
    refuse_adapters(model, path.as_ref())?;
    let tokenizer = TokenizerFile::read(tokenizer)?;
    Checkpoint::from_model(model).save_record_with(path, dtype, Some(&tokenizer), |_, _, _| {})
}

/// Exports a model as a Hugging Face `LlamaForCausalLM` directory in `dtype`. A model with
/// LoRA adapters attached is refused, as by [`save_model`].
pub fn export_hf<B: Backend>(
    model: &Llama<B>,
    dir: impl AsRef<Path>,
    dtype: StorageDtype,
) -> Result<()> {
    refuse_adapters(model, dir.as_ref())?;
    Checkpoint::from_model(model).save_hf(dir, dtype)
}

/// Records and exports hold base weights only; writing a model with adapters would drop them.
fn refuse_adapters<B: Backend>(model: &Llama<B>, path: &Path) -> Result<()> {
    match model.lora {
        Some(_) => Err(ImportError::Unsupported {
            path: path.to_path_buf(),
            message: "the model has LoRA adapters attached: merge them (Llama::merge_lora) \
                      or save them on their own (save_adapters, save_peft)"
                .into(),
        }),
        None => Ok(()),
    }
}
