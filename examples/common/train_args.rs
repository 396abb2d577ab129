//! The training-loop flags shared by the `pretrain` and `finetune` examples.

use std::path::PathBuf;

use llama2_burn::backend;
use llama2_burn::model::train::TrainConfig;

/// A whole number of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number greater than 0.
pub fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number greater than 0, not {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A fraction in [0, 1).
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be at least 0 and below 1, not {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Flags that override a [`TrainConfig`].
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Optimizer steps.
    #[arg(long, value_parser = positive)]
    pub steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long, value_parser = positive_f64)]
    pub lr: Option<f64>,
    /// Warmup steps.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
    /// Tokens per sequence.
    #[arg(long, value_parser = positive)]
    pub seq_len: Option<usize>,
    /// Tokens per optimizer step (gradient accumulation).
    #[arg(long, value_parser = positive)]
    pub tokens_per_step: Option<usize>,
    /// Data-parallel training on this many devices of the backend (GPUs 0..N on
    /// cuda/wgpu; on CPU backends the same CPU, which only runs micro-batches in
    /// parallel threads). Each step's micro-batches are spread over the devices.
    #[arg(long, value_parser = positive)]
    pub devices: Option<usize>,
    /// Seed of the model initialisation, the data order and dropout [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hold out this fraction of the training sequences for validation (when
    /// no `--valid` files are given).
    #[arg(long, value_parser = fraction)]
    pub valid_fraction: Option<f64>,
    /// Evaluate on the validation data every N steps (and at the end).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Stop once N evaluations in a row have not lowered the validation loss.
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Checkpoint every N steps.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Run directory (checkpoints, metrics.jsonl/csv, curves.svg, the trained model).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from the latest checkpoint in the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Show burn-train's terminal dashboard when standard output is a terminal (`q`
    /// then `s` stops after a checkpoint). The default on GPU backends; on CPU
    /// backends it is opt-in, as its thread keeps one core busy.
    #[arg(long, overrides_with = "no_dashboard")]
    pub dashboard: bool,
    /// Print a progress line per logged step instead of the dashboard.
    #[arg(long, overrides_with = "dashboard")]
    pub no_dashboard: bool,
}

impl TrainArgs {
    /// Writes the given flags into `t`.
    pub fn apply(&self, t: &mut TrainConfig) {
        if let Some(v) = self.steps {
            t.steps = v;
        }
        if let Some(v) = self.lr {
            t.schedule.peak_lr = v;
        }
        if let Some(v) = self.warmup {
            t.schedule.warmup_steps = v;
        }
        if let Some(v) = self.batch {
            t.micro_batch_size = v;
        }
        if let Some(v) = self.seq_len {
            t.seq_len = v;
        }
        if let Some(v) = self.tokens_per_step {
            t.tokens_per_step = v;
        }
        if let Some(v) = self.devices {
            t.devices = v;
        }
        if let Some(v) = self.seed {
            t.seed = v;
        }
        if let Some(v) = self.valid_fraction {
            t.valid_fraction = v;
        }
        if let Some(v) = self.eval_every {
            t.eval_every = v;
        }
        if let Some(v) = self.early_stopping {
            t.early_stopping_patience = v;
        }
        if let Some(v) = self.checkpoint_every {
            t.checkpoint_every = v;
        }
        if self.dashboard {
            t.dashboard = true;
        } else if self.no_dashboard || backend::ON_CPU {
            t.dashboard = false;
        }
        if let Some(v) = &self.out {
            t.output_dir = v.display().to_string();
        }
    }
}
