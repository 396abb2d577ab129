//! Settings of a training run, serializable as JSON (`TrainConfig::save` /
//! `TrainConfig::load`) and overridable from the command line by the examples.

use burn::config::Config;

use super::optim::OptimConfig;
use super::schedule::WarmupCosineConfig;

/// A training run. Defaults are the paper's pretraining recipe (§2.2) where it
/// gives one; [`super::sft::paper_sft_config`] has the §3.1 fine-tuning ones.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// AdamW and clipping.
    #[config(default = "OptimConfig::new()")]
    pub optim: OptimConfig,
    /// Learning-rate schedule; a `total_steps` of 0 means [`TrainConfig::steps`].
    #[config(default = "WarmupCosineConfig::new().with_total_steps(0)")]
    pub schedule: WarmupCosineConfig,
    /// Optimizer steps of the whole run.
    #[config(default = 1000)]
    pub steps: usize,
    /// Tokens fed to the model per sequence.
    #[config(default = 256)]
    pub seq_len: usize,
    /// Sequences per forward/backward pass.
    #[config(default = 8)]
    pub micro_batch_size: usize,
    /// Target tokens per optimizer step (the paper: 4M); gradients of
    /// `ceil(tokens_per_step / (micro_batch_size · seq_len))` micro-batches are
    /// accumulated. 0: one micro-batch per step.
    #[config(default = 0)]
    pub tokens_per_step: usize,
    /// Devices of data-parallel training on one node (see
    /// [`Trainer::with_devices`](super::Trainer::with_devices)): the
    /// trainer's device and the next ones of its kind.
    #[config(default = 1)]
    pub devices: usize,
    /// Seed of the data order.
    #[config(default = 42)]
    pub seed: u64,
    /// Shuffle the windows every epoch.
    #[config(default = true)]
    pub shuffle: bool,
    /// Write a checkpoint every this many steps (and at the end); 0: only at the end.
    #[config(default = 0)]
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (older ones are deleted); 0 keeps all.
    #[config(default = 2)]
    pub keep_checkpoints: usize,
    /// Print a progress line every this many steps when the dashboard is not
    /// shown; 0: quiet.
    #[config(default = 1)]
    pub log_every: usize,
    /// Show burn-train's terminal dashboard (plots of the metrics, progress,
    /// ETA; `q` stops the run after a checkpoint) when standard output is a
    /// terminal; see [`super::dashboard`].
    #[config(default = true)]
    pub dashboard: bool,
    /// Hold out this fraction of the training items (the last ones) for
    /// validation when no validation files are given; 0: none.
    #[config(default = 0.0)]
    pub valid_fraction: f64,
    /// Evaluate on the validation data every this many steps (and at the
    /// end); 0: only at the end. Without validation data, nothing is
    /// evaluated.
    #[config(default = 0)]
    pub eval_every: usize,
    /// Stop when this many evaluations in a row have not lowered the
    /// validation loss; 0: never.
    #[config(default = 0)]
    pub early_stopping_patience: usize,
    /// Directory of checkpoints, metrics and plots.
    #[config(default = "String::from(\"runs/train\")")]
    pub output_dir: String,
}

impl TrainConfig {
    /// Micro-batches accumulated per optimizer step.
    pub fn accumulation_steps(&self) -> usize {
        let per_micro = self.micro_batch_size * self.seq_len;
        if self.tokens_per_step == 0 {
            1
        } else {
            self.tokens_per_step.div_ceil(per_micro).max(1)
        }
    }

    /// Optimizer steps of `epochs` passes over `items` training items
    /// (`micro_batch_size × accumulation_steps` items a step), at least 1.
    pub fn steps_for_epochs(&self, epochs: f64, items: usize) -> usize {
        let per_step = self.micro_batch_size * self.accumulation_steps();
        let steps = (epochs * items as f64 / per_step.max(1) as f64).ceil();
        (steps as usize).max(1)
    }

    /// Warmup steps of `ratio` of [`TrainConfig::steps`], rounded up.
    pub fn warmup_for_ratio(&self, ratio: f64) -> usize {
        (ratio * self.steps as f64).ceil() as usize
    }

    /// The schedule with `total_steps` resolved.
    pub fn resolved_schedule(&self) -> WarmupCosineConfig {
        let mut schedule = self.schedule.clone();
        if schedule.total_steps == 0 {
            schedule.total_steps = self.steps;
        }
        schedule
    }
}
