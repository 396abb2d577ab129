//! The learning-rate schedule of the paper's pretraining recipe (§2.2):
//! "a cosine learning rate schedule, with warmup of 2000 steps, and decay
//! final learning rate down to 10% of the peak learning rate".
//!
//! For optimizer step `t` (counted from 0), with peak `η`, warmup `W`, total
//! `T` and floor `η_min = final_lr_ratio · η`:
//!
//! - `t < W`: `η · (t + 1) / W` (linear warmup reaching `η` at `t = W − 1`);
//! - `W ≤ t ≤ T`: `η_min + (η − η_min) · (1 + cos(π (t − W) / (T − W))) / 2`;
//! - `t > T`: `η_min`.
//!
//! This is what PyTorch's `SequentialLR([LinearLR(start_factor=1/W,
//! total_iters=W−1), CosineAnnealingLR(T_max=T−W, eta_min=η_min)],
//! milestones=[W])` produces, which the tests check.

use burn::config::Config;
use burn::optim::LearningRate;
use burn::optim::lr_scheduler::LrScheduler;
use burn::tensor::backend::Backend;

/// Warmup + cosine decay settings.
#[derive(Config, Debug, PartialEq)]
pub struct WarmupCosineConfig {
    /// Peak learning rate (the paper: 3e-4 for 7B/13B, 1.5e-4 for 34B/70B; 2e-5 for SFT).
    #[config(default = 3e-4)]
    pub peak_lr: f64,
    /// Linear warmup steps (the paper: 2000).
    #[config(default = 2000)]
    pub warmup_steps: usize,
    /// Step at which the cosine reaches its floor (normally the run's total steps).
    #[config(default = 10000)]
    pub total_steps: usize,
    /// Final learning rate as a fraction of the peak (the paper: 10%).
    #[config(default = 0.1)]
    pub final_lr_ratio: f64,
}

impl WarmupCosineConfig {
    /// The scheduler, at step 0.
    pub fn init(&self) -> WarmupCosine {
        assert!(self.peak_lr > 0.0, "peak_lr must be positive");
        WarmupCosine {
            config: self.clone(),
            step: 0,
        }
    }

    /// The learning rate of optimizer step `t` (from 0).
    pub fn lr_at(&self, t: usize) -> f64 {
        let peak = self.peak_lr;
        let floor = peak * self.final_lr_ratio;
        let warmup = self.warmup_steps;
        if t < warmup {
            return peak * (t + 1) as f64 / warmup as f64;
        }
        let span = self.total_steps.saturating_sub(warmup);
        if span == 0 || t >= self.total_steps {
            return floor;
        }
        let progress = (t - warmup) as f64 / span as f64;
        floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// burn [`LrScheduler`] for [`WarmupCosineConfig`]; its record is the number
/// of steps taken.
#[derive(Clone, Debug)]
pub struct WarmupCosine {
    config: WarmupCosineConfig,
    step: usize,
}

impl WarmupCosine {
    /// Steps taken so far.
    pub fn steps_taken(&self) -> usize {
        self.step
    }
}

impl LrScheduler for WarmupCosine {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let lr = self.config.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.step = record;
        self
    }
}
