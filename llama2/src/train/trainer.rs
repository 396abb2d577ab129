//! The training loop shared by pretraining (§2.2) and supervised fine-tuning
//! (§3.1).
//!
//! Each optimizer step takes `accumulation_steps × micro_batch_size` windows
//! from a [`DataOrder`], runs burn-train's [`TrainStep::step`] (forward +
//! backward) on each micro-batch with the loss normalized by the target count
//! of the whole step, accumulates the gradients, clips them by global norm
//! ([`clip_grad_norm`]), advances the [`WarmupCosine`] scheduler and applies
//! [`TrainStep::optimize`] with [`LlamaAdamW`]. Each step's metrics go to a
//! [`Dashboard`] (burn-train's terminal dashboard, or text lines) and to the
//! JSONL/CSV log.
//!
//! The loop is our own rather than burn-train's `Learner`/`SupervisedTraining`
//! because the global clipping sits between accumulation and the optimizer, and
//! because resumable checkpoints need the optimizer's record, which burn-train
//! 0.21's `Learner` does not expose.

use std::path::PathBuf;
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::optim::GradientsAccumulator;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::lr_scheduler::LrScheduler;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{ItemLazy, TrainStep};

use super::checkpoint::{self, TrainState};
use super::clip::clip_grad_norm;
use super::config::TrainConfig;
use super::dashboard::Dashboard;
use super::data::{CausalLmBatch, DataOrder, TokenWindow};
use super::error::TrainError;
use super::log::{MetricsLog, StepMetrics};
use super::optim::LlamaAdamW;
use super::plot::plot_curves;
use super::schedule::WarmupCosine;
use crate::model::Llama;

/// A model with its optimizer, scheduler and data position.
pub struct Trainer<B: AutodiffBackend> {
    /// The model being trained.
    pub model: Llama<B>,
    optim: OptimizerAdaptor<LlamaAdamW, Llama<B>, B>,
    scheduler: WarmupCosine,
    /// Run settings.
    pub config: TrainConfig,
    /// Steps done and data position.
    pub step: usize,
    /// Samples consumed.
    pub cursor: u64,
    device: B::Device,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A fresh run starting from `model`.
    pub fn new(model: Llama<B>, config: TrainConfig, device: &B::Device) -> Self {
        Self {
            model,
            optim: config.optim.init(),
            scheduler: config.resolved_schedule().init(),
            config,
            step: 0,
            cursor: 0,
            device: device.clone(),
        }
    }

    /// Continues the run in `config.output_dir` from its latest checkpoint;
    /// `model` only provides the architecture (its weights are replaced). The
    /// given `config` is used for the rest of the run.
    ///
    /// For a LoRA run, `model` is the base model with the same adapters
    /// attached ([`LoraConfig::attach`](crate::lora::LoraConfig::attach)): the
    /// checkpoint restores the adapters, the base weights stay those of `model`.
    pub fn resume(
        model: Llama<B>,
        config: TrainConfig,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let out = PathBuf::from(&config.output_dir);
        let dir = checkpoint::latest(&out).ok_or_else(|| TrainError::NoCheckpoint(out.clone()))?;
        let mut trainer = Self::new(model, config, device);
        let (model, optim, state) = checkpoint::load(&dir, trainer.model, trainer.optim, device)?;
        trainer.model = model;
        trainer.optim = optim;
        trainer.scheduler = trainer.scheduler.load_record::<B>(state.scheduler_steps);
        trainer.step = state.step;
        trainer.cursor = state.cursor;
        Ok(trainer)
    }

    /// Writes a checkpoint of the current state.
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        let state = TrainState {
            step: self.step,
            cursor: self.cursor,
            scheduler_steps: self.scheduler.to_record::<B>(),
            config: self.config.clone(),
            lora: self.model.lora.clone(),
        };
        checkpoint::save(
            &PathBuf::from(&self.config.output_dir),
            &self.model,
            &self.optim,
            &state,
            self.config.keep_checkpoints,
        )
    }

    /// One optimizer step over the next windows of `data`.
    pub fn train_step<D: Dataset<TokenWindow>>(
        &mut self,
        data: &D,
        order: &mut DataOrder,
    ) -> StepMetrics {
        let started = Instant::now();
        let mb = self.config.micro_batch_size;
        let n = mb * self.config.accumulation_steps();
        let windows: Vec<TokenWindow> = (0..n as u64)
            .map(|k| {
                data.get(order.index(self.cursor + k))
                    .expect("index within the dataset")
            })
            .collect();
        self.cursor += n as u64;
        let target_tokens: usize = windows.iter().map(TokenWindow::n_targets).sum();
        let denominator = target_tokens.max(1) as f64;

        let mut loss = 0.0;
        let mut inputs = 0;
        let mut accumulator = GradientsAccumulator::<Llama<B>>::new();
        let mut single = None;
        let chunks = windows.chunks(mb).count();
        for chunk in windows.chunks(mb) {
            let batch = CausalLmBatch::from_windows(chunk, Some(denominator), &self.device);
            let out = TrainStep::step(&self.model, batch);
            let item = out.item.sync();
            loss += item.loss;
            inputs += item.n_inputs;
            if chunks == 1 {
                single = Some(out.grads);
            } else {
                accumulator.accumulate(&self.model, out.grads);
            }
        }
        let mut grads = single.unwrap_or_else(|| accumulator.grads());
        let grad_norm =
            clip_grad_norm::<B, _>(&self.model, &mut grads, self.config.optim.grad_clip_norm);
        let lr = self.scheduler.step();
        self.model = TrainStep::optimize(self.model.clone(), &mut self.optim, lr, grads);
        self.step += 1;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        StepMetrics {
            step: self.step,
            loss,
            perplexity: loss.exp(),
            lr,
            grad_norm,
            target_tokens,
            tokens_per_s: inputs as f64 / seconds,
            epoch: self.cursor as f64 / data.len() as f64,
        }
    }

    /// Trains until `config.steps` (or `stop_at`, if smaller) with the
    /// metrics on the [`Dashboard`] of `config` (burn-train's terminal
    /// dashboard, or a line every `config.log_every` steps), logged to
    /// `metrics.jsonl` / `metrics.csv`, checkpoints every
    /// `config.checkpoint_every` steps and at the end, and a `curves.svg`
    /// plot. Returns the metrics of the steps run by this call.
    pub fn fit<D: Dataset<TokenWindow>>(
        &mut self,
        data: &D,
        stop_at: Option<usize>,
    ) -> Result<Vec<StepMetrics>, TrainError> {
        let dashboard = Dashboard::for_run(&self.config, self.step, &self.device);
        self.fit_with(data, stop_at, dashboard)
    }

    /// [`Trainer::fit`] reporting to `dashboard`. When its interrupter is
    /// stopped (the dashboard's quit key, or any clone of
    /// [`Dashboard::interrupter`]), the current step is finished, a
    /// checkpoint is written and the run returns early; [`Trainer::resume`]
    /// continues it.
    pub fn fit_with<D: Dataset<TokenWindow>>(
        &mut self,
        data: &D,
        stop_at: Option<usize>,
        mut dashboard: Dashboard<B::InnerBackend>,
    ) -> Result<Vec<StepMetrics>, TrainError> {
        let out = PathBuf::from(&self.config.output_dir);
        let mut log = MetricsLog::open(&out, self.step)?;
        let mut order = DataOrder::new(data.len(), self.config.seed, self.config.shuffle);
        let end = stop_at.map_or(self.config.steps, |s| s.min(self.config.steps));
        let mut ran = Vec::new();
        while self.step < end && !dashboard.should_stop() {
            let m = self.train_step(data, &mut order);
            dashboard.update(&m, end, self.cursor, data.len());
            log.push(m.clone())?;
            ran.push(m);
            let every = self.config.checkpoint_every;
            let stop = dashboard.should_stop();
            if (every > 0 && self.step.is_multiple_of(every)) || self.step == end || stop {
                self.save_checkpoint()?;
            }
        }
        dashboard.finish();
        plot_curves(&log.history, &out.join("curves.svg"))?;
        Ok(ran)
    }
}
