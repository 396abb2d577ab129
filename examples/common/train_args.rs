//! The training-loop flags shared by the `pretrain` and `finetune` examples.

use std::path::PathBuf;

use llama2_burn::backend;
use llama2_burn::model::train::TrainConfig;

/// Flags that override a [`TrainConfig`].
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Optimizer steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warmup steps.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Tokens per sequence.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Tokens per optimizer step (gradient accumulation).
    #[arg(long)]
    pub tokens_per_step: Option<usize>,
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
