//! Supervised fine-tuning (paper §3.1): the Llama 2-Chat format, loss on the
//! answer tokens only, packed examples; full fine-tuning as in the paper, or
//! LoRA adapters on a frozen base ([`crate::lora`]).

use std::path::PathBuf;

use burn::config::Config;
use burn::data::dataset::Dataset;
use burn::tensor::backend::AutodiffBackend;

use super::config::TrainConfig;
use super::data::{DataError, SftDataset, holdout};
use super::error::TrainError;
use super::log::StepMetrics;
use super::optim::OptimConfig;
use super::schedule::WarmupCosineConfig;
use super::trainer::Trainer;
use crate::lora::LoraConfig;
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

/// The paper's §3.1 settings: "a cosine learning rate schedule with an initial
/// learning rate of 2 × 10⁻⁵, a weight decay of 0.1, a batch size of 64, and a
/// sequence length of 4096 tokens", for `steps` optimizer steps. The paper gives
/// no warmup; we use 3% of the steps, and the same 10% floor as pretraining.
/// [`SftConfig::paper`] counts the steps from the paper's 2 epochs instead.
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
    /// Held-out JSONL files of the same form, evaluated every
    /// `train.eval_every` steps; when empty, `train.valid_fraction` of the
    /// windows is held out.
    #[config(default = "Vec::new()")]
    pub valid: Vec<String>,
    /// Pack several examples per window.
    #[config(default = true)]
    pub pack: bool,
    /// Passes over the data; when set, it replaces `train.steps` by
    /// `ceil(epochs · windows / windows per step)` once the data is read.
    #[config(default = "None")]
    pub epochs: Option<f64>,
    /// Warmup as a fraction of the steps; when set, it replaces
    /// `train.schedule.warmup_steps` once the number of steps is known.
    #[config(default = "None")]
    pub warmup_ratio: Option<f64>,
    /// Train LoRA adapters on a frozen base instead of every weight.
    #[config(default = "None")]
    pub lora: Option<LoraConfig>,
}

impl SftConfig {
    /// The paper's §3.1 run on `data`: [`paper_sft_config`] for 2 epochs, with
    /// 3% warmup.
    pub fn paper(data: Vec<String>) -> Self {
        Self::new(paper_sft_config(0), data)
            .with_epochs(Some(2.0))
            .with_warmup_ratio(Some(0.03))
    }

    /// Reads and encodes the examples.
    pub fn dataset(&self, tokenizer: &Tokenizer) -> Result<SftDataset, TrainError> {
        let paths: Vec<PathBuf> = self.data.iter().map(PathBuf::from).collect();
        let data = SftDataset::from_files(&paths, tokenizer, self.train.seq_len, self.pack)?;
        if data.len() == 0 {
            return Err(DataError::Empty(PathBuf::from(self.data.join(", "))).into());
        }
        Ok(data)
    }

    /// Reads and encodes the validation examples, if any.
    pub fn valid_dataset(&self, tokenizer: &Tokenizer) -> Result<Option<SftDataset>, TrainError> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        let paths: Vec<PathBuf> = self.valid.iter().map(PathBuf::from).collect();
        Ok(Some(SftDataset::from_files(
            &paths,
            tokenizer,
            self.train.seq_len,
            self.pack,
        )?))
    }

    /// The loop's settings for a dataset of `windows` windows: the steps from
    /// [`SftConfig::epochs`] and the warmup from [`SftConfig::warmup_ratio`],
    /// where set.
    pub fn resolved_train(&self, windows: usize) -> TrainConfig {
        let mut train = self.train.clone();
        if let Some(epochs) = self.epochs {
            train.steps = train.steps_for_epochs(epochs, windows);
        }
        if let Some(ratio) = self.warmup_ratio {
            train.schedule.warmup_steps = train.warmup_for_ratio(ratio);
        }
        train
    }
}

/// Fine-tunes `model` (or resumes the run in `train.output_dir`) and returns
/// the trained model with the metrics of the steps run. With `config.lora`,
/// adapters are attached to `model` (a base model without adapters) and only
/// they are trained; the returned model carries them, unmerged.
pub fn finetune<B: AutodiffBackend>(
    model: Llama<B>,
    config: &SftConfig,
    tokenizer: &Tokenizer,
    resume: bool,
    device: &B::Device,
) -> Result<(Llama<B>, Vec<StepMetrics>), TrainError> {
    let data = config.dataset(tokenizer)?;
    let valid = config.valid_dataset(tokenizer)?;
    let fraction = if valid.is_some() {
        0.0
    } else {
        config.train.valid_fraction
    };
    let (data, held_out) = holdout(data, fraction)?;
    let model = match &config.lora {
        Some(lora) => lora.attach(model)?,
        None => model,
    };
    let train = config.resolved_train(data.len());
    let trainer = if resume {
        Trainer::resume(model, train, device)?
    } else {
        Trainer::new(model, train, device)
    };
    let mut trainer = trainer.with_validation_or(valid, held_out);
    let metrics = trainer.fit(&data, None)?;
    Ok((trainer.model, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_run_counts_two_epochs_of_64_sequence_steps() {
        let config = SftConfig::paper(vec!["data.jsonl".into()]);
        // 1000 windows of 4096 tokens, 64 windows per step: 2 epochs = 31.25 → 32 steps.
        let train = config.resolved_train(1000);
        assert_eq!(train.accumulation_steps(), 64);
        assert_eq!(train.steps, 32);
        assert_eq!(train.schedule.warmup_steps, 1);
        assert_eq!(train.schedule.peak_lr, 2e-5);
        assert_eq!(train.optim.weight_decay, 0.1);
        // Without epochs the configured steps stand.
        let fixed = SftConfig::new(paper_sft_config(500), vec![]);
        assert_eq!(fixed.resolved_train(1000).steps, 500);
        assert_eq!(fixed.resolved_train(1000).schedule.warmup_steps, 15);
    }
}
