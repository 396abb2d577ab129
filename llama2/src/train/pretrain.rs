//! Pretraining (paper §2.2): next-token prediction on packed text with the
//! AdamW / warmup-cosine / clipping recipe.

use std::path::PathBuf;

use burn::config::Config;
use burn::tensor::backend::AutodiffBackend;

use super::config::TrainConfig;
use burn::data::dataset::Dataset;

use std::sync::Arc;

use super::data::{MixtureDataset, PackedTextDataset, TokenWindow, holdout};
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
    /// Sampling weights, one per source, for a data mixture
    /// ([`MixtureDataset`]: each window comes from a source with probability
    /// proportional to its weight, seeded by `train.seed`); empty: the
    /// sources are concatenated.
    #[config(default = "Vec::new()")]
    pub weights: Vec<f64>,
    /// Held-out text or JSONL files evaluated every `train.eval_every` steps;
    /// when empty, `train.valid_fraction` of the windows is held out.
    #[config(default = "Vec::new()")]
    pub valid: Vec<String>,
    /// Where tokenized sources are cached.
    #[config(default = "String::from(\"token-cache\")")]
    pub cache_dir: String,
}

impl PretrainConfig {
    /// Tokenizes (or reads the caches of) the sources: their concatenation,
    /// or with [`PretrainConfig::weights`] their mixture (each source packed
    /// on its own, with its own token cache).
    pub fn dataset(
        &self,
        tokenizer: &Tokenizer,
    ) -> Result<Arc<dyn Dataset<TokenWindow>>, TrainError> {
        let sources: Vec<PathBuf> = self.sources.iter().map(PathBuf::from).collect();
        let cache = PathBuf::from(&self.cache_dir);
        if self.weights.is_empty() {
            return Ok(Arc::new(PackedTextDataset::from_files(
                &sources,
                tokenizer,
                self.train.seq_len,
                &cache,
            )?));
        }
        let parts = sources
            .iter()
            .map(|source| {
                PackedTextDataset::from_files(
                    std::slice::from_ref(source),
                    tokenizer,
                    self.train.seq_len,
                    &cache,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(MixtureDataset::new(
            parts,
            self.weights.clone(),
            self.train.seed,
        )?))
    }

    /// Tokenizes (or reads the caches of) the validation files, if any.
    pub fn valid_dataset(
        &self,
        tokenizer: &Tokenizer,
    ) -> Result<Option<PackedTextDataset>, TrainError> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        let sources: Vec<PathBuf> = self.valid.iter().map(PathBuf::from).collect();
        Ok(Some(PackedTextDataset::from_files(
            &sources,
            tokenizer,
            self.train.seq_len,
            &PathBuf::from(&self.cache_dir),
        )?))
    }
}

/// Pretrains `model` (fresh, or resumed from the latest checkpoint in
/// `train.output_dir` when `resume`) and returns the trained model with the
/// metrics of the steps run. With validation files or a validation fraction,
/// the validation loss and perplexity are logged to `valid.jsonl`.
pub fn pretrain<B: AutodiffBackend>(
    model: Llama<B>,
    config: &PretrainConfig,
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
    let trainer = if resume {
        Trainer::resume(model, config.train.clone(), device)?
    } else {
        Trainer::new(model, config.train.clone(), device)
    };
    let mut trainer = trainer.with_validation_or(valid, held_out);
    let metrics = trainer.fit(&data, None)?;
    Ok((trainer.model, metrics))
}
