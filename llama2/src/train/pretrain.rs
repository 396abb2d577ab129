//! Pretraining (paper §2.2): next-token prediction on packed text with the
//! AdamW / warmup-cosine / clipping recipe.

use std::path::PathBuf;

use burn::config::Config;
use burn::tensor::backend::AutodiffBackend;

use super::config::TrainConfig;
use super::data::PackedTextDataset;
use super::error::TrainError;
use super::log::StepMetrics;
use super::trainer::Trainer;
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

/// A pretraining run: the loop's settings and the corpus.
#[derive(Config, Debug)]
pub struct PretrainConfig {
    /// Loop, optimizer and schedule settings.
    pub train: TrainConfig,
    /// Text (`.txt`, one document per file) or JSONL (`{"text": …}` per line) files.
    pub sources: Vec<String>,
    /// Where tokenized sources are cached.
    #[config(default = "String::from(\"token-cache\")")]
    pub cache_dir: String,
}

impl PretrainConfig {
    /// Tokenizes (or reads the caches of) the sources.
    pub fn dataset(&self, tokenizer: &Tokenizer) -> Result<PackedTextDataset, TrainError> {
        let sources: Vec<PathBuf> = self.sources.iter().map(PathBuf::from).collect();
        Ok(PackedTextDataset::from_files(
            &sources,
            tokenizer,
            self.train.seq_len,
            &PathBuf::from(&self.cache_dir),
        )?)
    }
}

/// Pretrains `model` (fresh, or resumed from the latest checkpoint in
/// `train.output_dir` when `resume`) and returns the trained model with the
/// metrics of the steps run.
pub fn pretrain<B: AutodiffBackend>(
    model: Llama<B>,
    config: &PretrainConfig,
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
