//! Training: pretraining (Touvron et al., 2023, §2.2) and supervised
//! fine-tuning (§3.1) on burn-train. Enabled by the `train` cargo feature.
//!
//! | module | paper | contents |
//! |---|---|---|
//! | [`data`] | §2.2, §3.1 | token caches, packed text windows, SFT examples with prompt-masked targets, batches |
//! | [`loss`], [`fused_loss`] | §3.1 | masked token cross-entropy; as one autodiff operation for training |
//! | [`objective`] | — | what the engine needs from a model: [`Trainable`], [`StepOutput`] |
//! | [`step`] | §2.2, §3.1 | burn-train `TrainStep` / `InferenceStep` for [`Llama`](crate::Llama): the causal-LM objective |
//! | [`optim`] | §2.2 | AdamW (0.9, 0.95), ε 1e-5, weight decay 0.1 except on norms |
//! | [`clip`] | §2.2 | gradient clipping by global norm 1.0 |
//! | [`schedule`] | §2.2 | linear warmup, cosine decay to 10% of the peak |
//! | [`config`] | §2.2 | run settings (JSON) |
//! | [`trainer`] | — | the engine for every objective: accumulation, clipping, scheduler, validation, logging, checkpoints |
//! | [`checkpoint`] | — | atomic, resumable checkpoints |
//! | [`memory`] | — | the allocator setting of training processes (freed memory kept for the next step) |
//! | [`log`], [`plot`] | — | per-step metrics (JSONL, CSV) and SVG curves |
//! | [`dashboard`], [`step_metric`], [`line_renderer`] | — | the metrics on burn-train's terminal dashboard or as text lines |
//! | [`pretrain`], [`sft`] | §2.2, §3.1 | the two runs |

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod error;
pub mod fused_loss;
pub mod line_renderer;
pub mod log;
pub mod loss;
pub mod memory;
pub mod objective;
pub mod optim;
pub mod plot;
pub mod pretrain;
pub mod schedule;
pub mod sft;
pub mod step;
pub mod step_metric;
pub mod trainer;

pub use clip::{clip_grad_norm, global_grad_norm};
pub use config::TrainConfig;
pub use dashboard::{Dashboard, default_renderer};
pub use data::{
    CausalLmBatch, DataError, IGNORE_INDEX, PackedTextDataset, SftDataset, TokenWindow,
};
pub use error::TrainError;
pub use line_renderer::LineRenderer;
pub use log::{StepMetrics, ValidMetrics};
pub use memory::keep_freed_memory;
pub use objective::{StepOutput, Trainable};
pub use optim::{LlamaAdamW, OptimConfig};
pub use pretrain::{PretrainConfig, pretrain};
pub use schedule::{WarmupCosine, WarmupCosineConfig};
pub use sft::{SftConfig, finetune, paper_sft_config};
pub use step::{CausalLmOutput, CausalLmOutputSync};
pub use step_metric::StepMetric;
pub use trainer::Trainer;
