//! Training reward models (paper §3.2.2) on the workspace's one training
//! engine ([`llama2::train::Trainer`]): chosen and rejected responses as one
//! `[2P, T]` batch, the ranking loss averaged over the step's pairs, AdamW as
//! in pretraining, global clipping, warmup then cosine to 10 %.
//!
//! The paper's settings ([`RewardTrainConfig::paper`]): one epoch, peak
//! learning rate 1e-5 (5e-6 for 70B), cosine to 10 % of the peak, warmup 3 %
//! of the steps (at least 5), 512 pairs per step.

use std::path::PathBuf;

use burn::config::Config;
use burn::data::dataset::Dataset;
use burn::tensor::backend::AutodiffBackend;
use llama2::lora::LoraConfig;
use llama2::train::data::holdout;
use llama2::train::{
    StepMetrics, StepOutput, TrainConfig, TrainError, Trainable, Trainer, WarmupCosineConfig,
};
use llama2::{LlamaConfig, Tokenizer};

use crate::batch::PreferenceBatch;
use crate::data::{EncodedPair, PreferenceDataset};
use crate::error::RewardError;
use crate::model::RewardModel;
use crate::rating::Rating;
use crate::step::RewardOutputSync;

/// Names of the reward objective's metrics on the dashboard and in the logs.
pub const METRICS: &[&str] = &[
    "Accuracy",
    "Margin",
    "Reward Mean",
    "Reward Std",
    "Accuracy significantly better",
    "Accuracy better",
    "Accuracy slightly better",
    "Accuracy negligibly better / unsure",
];

impl StepOutput for RewardOutputSync {
    fn loss(&self) -> f64 {
        self.loss
    }

    fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    fn merge(&mut self, other: Self) {
        self.loss += other.loss;
        self.n_pairs += other.n_pairs;
        self.n_inputs += other.n_inputs;
        self.correct += other.correct;
        self.margin_sum += other.margin_sum;
        self.reward_sum += other.reward_sum;
        self.reward_sq_sum += other.reward_sq_sum;
        for (mine, theirs) in self.by_rating.iter_mut().zip(other.by_rating) {
            *mine = mine.merge(theirs);
        }
        self.unrated = self.unrated.merge(other.unrated);
    }

    /// Accuracy (strict `r_c > r_r`), mean margin `r_c − r_r`, reward mean and
    /// standard deviation over both sides, and the accuracy per column of the
    /// paper's Table 8 (NaN for a column without pairs).
    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let pairs = self.n_pairs.max(1) as f64;
        let n = (2 * self.n_pairs).max(1) as f64;
        let mean = self.reward_sum / n;
        let var = (self.reward_sq_sum / n - mean * mean).max(0.0);
        let b = &self.by_rating;
        let columns = [b[0], b[1], b[2], b[3].merge(b[4])];
        let mut out = vec![
            (METRICS[0], self.correct as f64 / pairs),
            (METRICS[1], self.margin_sum / pairs),
            (METRICS[2], mean),
            (METRICS[3], var.sqrt()),
        ];
        for (name, bucket) in METRICS[4..].iter().zip(columns) {
            out.push((name, bucket.accuracy().unwrap_or(f64::NAN)));
        }
        out
    }
}

/// Pairwise ranking on preference pairs. The loss averages over the step's
/// pairs; a checkpoint holds the whole model (trunk and score head).
impl<B: AutodiffBackend> Trainable<B> for RewardModel<B> {
    type Item = EncodedPair;

    const METRICS: &'static [&'static str] = METRICS;
    const PERPLEXITY: bool = false;

    fn item_weight(_: &EncodedPair) -> usize {
        1
    }

    fn train_batch(
        &self,
        items: &[EncodedPair],
        loss_denominator: f64,
        device: &B::Device,
    ) -> PreferenceBatch<B> {
        batch(self, items, loss_denominator, device)
    }

    fn valid_batch(
        &self,
        items: &[EncodedPair],
        loss_denominator: f64,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> PreferenceBatch<B::InnerBackend> {
        batch(self, items, loss_denominator, device)
    }

    fn lora(&self) -> Option<&LoraConfig> {
        self.trunk.lora.as_ref()
    }
}

/// Chosen and rejected sides of `items` as one right-padded batch (pad id 0:
/// rewards are read at explicit lengths), margins from the model's objective.
fn batch<B: AutodiffBackend, BB: burn::tensor::backend::Backend>(
    model: &RewardModel<B>,
    items: &[EncodedPair],
    loss_denominator: f64,
    device: &BB::Device,
) -> PreferenceBatch<BB> {
    PreferenceBatch::new(
        items,
        model.objective.margin,
        0,
        Some(loss_denominator),
        device,
    )
    .expect("the engine batches at least one encoded pair, each side non-empty")
}

/// A reward-model training run.
#[derive(Config, Debug)]
pub struct RewardTrainConfig {
    /// Loop, optimizer and schedule settings; `train.seq_len` is the most
    /// tokens of one side of a pair (prompt + response: longer prompts are
    /// cut from the left).
    pub train: TrainConfig,
    /// Preference JSONL files (TRL's columns).
    pub data: Vec<String>,
    /// Held-out preference files; when empty, `train.valid_fraction` of the
    /// pairs is held out.
    #[config(default = "Vec::new()")]
    pub valid: Vec<String>,
    /// Pairs per optimizer step (gradients of `ceil(pairs / micro_batch_size)`
    /// micro-batches are accumulated); 0 keeps `train.tokens_per_step`.
    #[config(default = 512)]
    pub pairs_per_step: usize,
    /// Passes over the data; when set, it replaces `train.steps` once the data
    /// is read (the paper trains for one epoch).
    #[config(default = "Some(1.0)")]
    pub epochs: Option<f64>,
    /// Warmup as a fraction of the steps, at least `min_warmup_steps`; when
    /// set, it replaces `train.schedule.warmup_steps`.
    #[config(default = "Some(0.03)")]
    pub warmup_ratio: Option<f64>,
    /// The least warmup steps with `warmup_ratio`.
    #[config(default = 5)]
    pub min_warmup_steps: usize,
}

impl RewardTrainConfig {
    /// The paper's reward-model settings (§3.2.2) on `data`: one epoch, peak
    /// learning rate 1e-5 (the paper uses 5e-6 for 70B), cosine to 10 %,
    /// warmup 3 % of the steps (at least 5), 512 pairs per step, AdamW as
    /// pretraining.
    pub fn paper(data: Vec<String>) -> Self {
        let mut train = TrainConfig::new()
            .with_seq_len(4096)
            .with_micro_batch_size(8);
        train.schedule.peak_lr = 1e-5;
        Self::new(train, data)
    }

    /// The repository's tiny run on `data` (the `reward train` example's default, with
    /// the trunk of [`tiny_trunk`](Self::tiny_trunk)): sides of at most 96 tokens,
    /// micro-batches of 16, 32 pairs per step, 15 epochs, peak learning rate 1e-3 after
    /// 20 warmup steps, cosine to 10 %.
    pub fn tiny(data: Vec<String>) -> Self {
        let train = TrainConfig::new()
            .with_seq_len(96)
            .with_micro_batch_size(16)
            .with_schedule(
                WarmupCosineConfig::new()
                    .with_peak_lr(1e-3)
                    .with_warmup_steps(20)
                    .with_total_steps(0),
            );
        Self::new(train, data)
            .with_pairs_per_step(32)
            .with_epochs(Some(15.0))
            .with_warmup_ratio(None)
    }

    /// The trunk of the tiny reward model for a tokenizer of `vocab_size` tokens: width
    /// 96, 3 layers, 4 heads sharing 2 key/value heads, a context of `train.seq_len`.
    pub fn tiny_trunk(&self, vocab_size: usize) -> LlamaConfig {
        let mut c = LlamaConfig::tiny_15m();
        c.dim = 96;
        c.n_layers = 3;
        c.n_heads = 4;
        c.n_kv_heads = 2;
        c.vocab_size = vocab_size;
        c.max_seq_len = self.train.seq_len;
        c
    }

    /// The loop settings for `pairs` training pairs.
    pub fn resolved_train(&self, pairs: usize) -> TrainConfig {
        let mut train = self.train.clone();
        if self.pairs_per_step > 0 {
            // accumulation_steps() = ceil(tokens_per_step / (micro · seq_len)).
            train.tokens_per_step = self.pairs_per_step * train.seq_len;
        }
        if let Some(epochs) = self.epochs {
            train.steps = train.steps_for_epochs(epochs, pairs);
        }
        if let Some(ratio) = self.warmup_ratio {
            let warmup = train.warmup_for_ratio(ratio);
            train.schedule.warmup_steps = warmup.max(self.min_warmup_steps).min(train.steps);
        }
        train
    }

    /// Reads and encodes the training pairs.
    pub fn dataset(&self, tokenizer: &Tokenizer) -> Result<PreferenceDataset, RewardError> {
        let paths: Vec<PathBuf> = self.data.iter().map(PathBuf::from).collect();
        PreferenceDataset::from_files(&paths, tokenizer, self.train.seq_len)
    }

    /// Reads and encodes the held-out pairs, if any.
    pub fn valid_dataset(
        &self,
        tokenizer: &Tokenizer,
    ) -> Result<Option<PreferenceDataset>, RewardError> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        let paths: Vec<PathBuf> = self.valid.iter().map(PathBuf::from).collect();
        PreferenceDataset::from_files(&paths, tokenizer, self.train.seq_len).map(Some)
    }
}

/// Why a reward-model run failed.
#[derive(Debug, thiserror::Error)]
pub enum RewardTrainError {
    /// The preference data could not be read.
    #[error(transparent)]
    Data(#[from] RewardError),
    /// The training loop failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// No pair of the data fits.
    #[error("{0}: no preference pair fits in the sequence length")]
    NoPairs(String),
}

/// Trains `model` (or resumes the run in `train.output_dir`) on the pairs
/// of `config` and returns it with the metrics of the steps run; the
/// held-out loss, accuracy and Table 8 columns go to `valid.jsonl`.
pub fn train_reward<B: AutodiffBackend>(
    model: RewardModel<B>,
    config: &RewardTrainConfig,
    tokenizer: &Tokenizer,
    resume: bool,
    device: &B::Device,
) -> Result<(RewardModel<B>, Vec<StepMetrics>), RewardTrainError> {
    let data = config.dataset(tokenizer)?;
    if data.pairs.is_empty() {
        return Err(RewardTrainError::NoPairs(config.data.join(", ")));
    }
    if data.skipped > 0 || data.truncated > 0 {
        tracing::info!(
            "{} pairs: {} prompts cut from the left, {} pairs skipped (a response alone does not fit {} tokens)",
            data.pairs.len(),
            data.truncated,
            data.skipped,
            config.train.seq_len
        );
    }
    let valid = config.valid_dataset(tokenizer)?;
    let fraction = if valid.is_some() {
        0.0
    } else {
        config.train.valid_fraction
    };
    let (data, held_out) = holdout(data, fraction).map_err(TrainError::from)?;
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

/// The Table 8 column names, in order.
pub fn table8_columns() -> [&'static str; 4] {
    [
        Rating::SignificantlyBetter.as_str(),
        Rating::Better.as_str(),
        Rating::SlightlyBetter.as_str(),
        "negligibly_better / unsure",
    ]
}
