//! LoRA: low-rank adaptation of large language models (Hu et al., 2021).
//!
//! The pretrained weights are frozen and each targeted projection `W` gets a trainable
//! update `(α / r) · B A` of rank `r`, so fine-tuning trains and stores a few megabytes
//! instead of the whole model. The adapters sit next to the projections they adapt
//! ([`Attention`](crate::model::Attention)'s `wq_lora` …, [`FeedForward`](crate::model::FeedForward)'s
//! `w1_lora` …), so [`Llama::forward`](crate::Llama::forward), cached decoding, generation and
//! the trainer work unchanged, and the base weights keep their parameter paths.
//!
//! | file | contents |
//! |---|---|
//! | [`config`] | [`LoraConfig`] (rank, α, dropout, targets, rsLoRA) and [`LoraTarget`] |
//! | [`adapter`] | [`LoraAdapter`], one `B A` pair with its dropout and scale |
//! | [`site`] | [`LoraSite`]: which block and projection an adapter sits on |
//! | [`attach`] | attaching fresh adapters and freezing the base |
//! | [`merge`] | folding the adapters into the base weights |
//! | [`weights`] | adapter tensors as plain data |
//! | [`file`] | adapters files (safetensors with the configuration as metadata) |
//! | [`error`] | [`LoraError`] |
//!
//! ```no_run
//! use llama2::lora::{LoraConfig, load_adapters, save_adapters};
//! # type B = burn::backend::NdArray;
//! # let base: llama2::Llama<B> = llama2::LlamaConfig::tiny_15m().init(&Default::default());
//! let model = LoraConfig::new().with_rank(16).attach(base)?;
//! // … train `model`: only the adapters get gradients …
//! save_adapters(&model, "adapters.safetensors")?;
//! let merged = model.merge_lora(); // a plain model, same outputs
//! # Ok::<(), llama2::lora::LoraError>(())
//! ```

pub mod adapter;
pub mod attach;
pub mod config;
pub mod error;
pub mod file;
pub mod merge;
pub mod site;
pub mod weights;

pub use adapter::{LoraAdapter, LoraAdapterConfig};
pub use config::{LoraConfig, LoraTarget};
pub use error::LoraError;
pub use file::{load_adapters, read_adapters_config, save_adapters};
pub use merge::merge;
pub use site::LoraSite;
pub use weights::LoraWeights;
