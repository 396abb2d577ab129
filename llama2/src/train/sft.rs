//! Supervised fine-tuning (paper §3.1): the Llama 2-Chat format, loss on the
//! answer tokens only, packed examples, full fine-tuning.

use std::path::PathBuf;

use burn::config::Config;
use burn::tensor::backend::AutodiffBackend;

use super::config::TrainConfig;
use super::data::SftDataset;
use super::error::TrainError;
use super::log::StepMetrics;
use super::optim::OptimConfig;
use super::schedule::WarmupCosineConfig;
use super::trainer::Trainer;
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

/// The paper's §3.1 settings: "a cosine learning rate schedule with an initial
/// learning rate of 2 × 10⁻⁵, a weight decay of 0.1, a batch size of 64, and a
/// sequence length of 4096 tokens", 2 epochs. The paper gives no warmup; we
/// use 3% of the steps, and the same 10% floor as pretraining.
pub fn paper_sft_config(steps: usize) -> TrainConfig {
    TrainConfig::new()
        .with_steps(steps)
        .with_seq_len(4096)
        .with_micro_batch_size(1)
        .with_tokens_per_step(64 * 4096)
        .with_optim(OptimConfig::new().with_weight_decay(0.1))
        .with_schedule(
            WarmupCosineConfig::new()
                .with_peak_lr(2e-5)
                .with_warmup_steps((steps * 3).div_ceil(100))
                .with_total_steps(0),
        )
}

/// A fine-tuning run: the loop's settings and the JSONL data.
#[derive(Config, Debug)]
pub struct SftConfig {
    /// Loop, optimizer and schedule settings.
    pub train: TrainConfig,
    /// JSONL files of `{"messages": …}` or `{"prompt", "completion"}` rows,
    /// each optionally with `"loss_on": "last_turn"` (see [`super::data::sft`]).
    pub data: Vec<String>,
    /// Pack several examples per window.
    #[config(default = true)]
    pub pack: bool,
}

impl SftConfig {
    /// Reads and encodes the examples.
    pub fn dataset(&self, tokenizer: &Tokenizer) -> Result<SftDataset, TrainError> {
        let paths: Vec<PathBuf> = self.data.iter().map(PathBuf::from).collect();
        Ok(SftDataset::from_files(
            &paths,
            tokenizer,
            self.train.seq_len,
            self.pack,
        )?)
    }
}

/// Fine-tunes `model` (or resumes the run in `train.output_dir`) and returns
/// the trained model with the metrics of the steps run.
pub fn finetune<B: AutodiffBackend>(
    model: Llama<B>,
    config: &SftConfig,
    tokenizer: &Tokenizer,
    resume: bool,
    device: &B::Device,
) -> Result<(Llama<B>, Vec<StepMetrics>), TrainError> {
    let data = config.dataset(tokenizer)?;
    let mut trainer = if resume {
        Trainer::resume(model, config.train.clone(), device)?
    } else {
        Trainer::new(model, config.train.clone(), device)
    };
    let metrics = trainer.fit(&data, None)?;
    Ok((trainer.model, metrics))
}
