//! The training engine: one loop for every objective of the paper —
//! pretraining (§2.2), supervised fine-tuning (§3.1) and reward modelling
//! (§3.2.2) — over any [`Trainable`] model.
//!
//! Each optimizer step takes `accumulation_steps × micro_batch_size` items
//! from a [`DataOrder`], runs burn-train's [`TrainStep::step`] (forward +
//! backward) on each micro-batch with the loss normalized by the weight of the
//! whole step ([`Trainable::item_weight`]: target tokens, pairs), accumulates
//! the gradients, clips them by global norm ([`clip_grad_norm`]), advances the
//! [`WarmupCosine`] scheduler once and applies [`TrainStep::optimize`] with
//! [`LlamaAdamW`]. Every `eval_every` steps the inner (non-autodiff) module
//! is evaluated on the validation items through burn-train's
//! [`InferenceStep`](burn::train::InferenceStep). Each step's metrics go to a
//! [`Dashboard`] (burn-train's terminal dashboard, or text lines) and to the
//! JSONL/CSV logs.
//!
//! The loop drives burn-train's step traits, metrics and renderer itself
//! rather than `SupervisedTraining::launch`: the global clipping sits between
//! accumulation and the optimizer, the scheduler steps once per optimizer
//! step, and step-granular resumable checkpoints need the optimizer's record,
//! which burn-train 0.21's `Learner` only hands to its own per-epoch
//! checkpointer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::GradientsAccumulator;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::lr_scheduler::LrScheduler;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, ItemLazy, TrainStep};

use super::checkpoint::{self, TrainState};
use super::clip::clip_grad_norm;
use super::config::TrainConfig;
use super::dashboard::Dashboard;
use super::data::DataOrder;
use super::error::TrainError;
use super::log::{MetricsLog, StepMetrics, ValidLog, ValidMetrics};
use super::objective::{StepOutput, TrainSync, Trainable, ValidSync};
use super::optim::LlamaAdamW;
use super::plot::plot_curves;
use super::schedule::WarmupCosine;
use crate::model::Llama;

/// A model with its optimizer, scheduler and data position.
pub struct Trainer<B: AutodiffBackend, M: Trainable<B> = Llama<B>> {
    /// The model being trained.
    pub model: M,
    optim: OptimizerAdaptor<LlamaAdamW, M, B>,
    scheduler: WarmupCosine,
    /// Run settings.
    pub config: TrainConfig,
    /// Steps done and data position.
    pub step: usize,
    /// Samples consumed.
    pub cursor: u64,
    valid: Option<Arc<dyn Dataset<M::Item>>>,
    device: B::Device,
    /// Devices of data-parallel steps; the first is `device`.
    devices: Vec<B::Device>,
}

impl<B: AutodiffBackend, M: Trainable<B>> Trainer<B, M> {
    /// A fresh run starting from `model`.
    pub fn new(model: M, config: TrainConfig, device: &B::Device) -> Self {
        let devices = device_list::<B>(device, config.devices.max(1));
        Self {
            model,
            optim: config.optim.init(),
            scheduler: config.resolved_schedule().init(),
            config,
            step: 0,
            cursor: 0,
            valid: None,
            device: device.clone(),
            devices,
        }
    }

    /// Runs each step's micro-batches data-parallel on `devices` (the model
    /// stays on the trainer's device, which should be the first of them):
    /// micro-batch `k` of a step runs on device `k mod n` in a thread of its
    /// own, its gradients are moved to the main device and summed, and one
    /// clipped optimizer step follows, as burn-train's multi-device strategy
    /// does. The step's result is that of the same micro-batches on one
    /// device; with `n` devices, give at least `n` micro-batches per step
    /// (`tokens_per_step`) to use them all.
    pub fn with_devices(mut self, devices: Vec<B::Device>) -> Self {
        if !devices.is_empty() {
            self.devices = devices;
        }
        self
    }

    /// Continues the run in `config.output_dir` from its latest checkpoint;
    /// `model` only provides the architecture (its trained weights are
    /// replaced). The given `config` is used for the rest of the run.
    ///
    /// For a LoRA run, `model` is the base model with the same adapters
    /// attached ([`LoraConfig::attach`](crate::lora::LoraConfig::attach)): the
    /// checkpoint restores the adapters, the base weights stay those of `model`.
    pub fn resume(model: M, config: TrainConfig, device: &B::Device) -> Result<Self, TrainError> {
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

    /// Evaluates on `valid` every [`TrainConfig::eval_every`] steps (and at
    /// the end of [`Trainer::fit`]).
    pub fn with_validation(mut self, valid: impl Dataset<M::Item> + 'static) -> Self {
        self.valid = Some(Arc::new(valid));
        self
    }

    /// Evaluates on `valid` when given (validation files), else on
    /// `held_out` (a split of the training data) when it has items.
    pub fn with_validation_or(
        self,
        valid: Option<impl Dataset<M::Item> + 'static>,
        held_out: impl Dataset<M::Item> + 'static,
    ) -> Self {
        match valid {
            Some(valid) => self.with_validation(valid),
            None if !held_out.is_empty() => self.with_validation(held_out),
            None => self,
        }
    }

    /// Writes a checkpoint of the current state.
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        let state = TrainState {
            step: self.step,
            cursor: self.cursor,
            scheduler_steps: self.scheduler.to_record::<B>(),
            config: self.config.clone(),
            lora: self.model.lora().cloned(),
        };
        checkpoint::save(
            &PathBuf::from(&self.config.output_dir),
            &self.model,
            &self.optim,
            &state,
            self.config.keep_checkpoints,
        )
    }

    /// One optimizer step over the next items of `data`.
    pub fn train_step<D: Dataset<M::Item> + ?Sized>(
        &mut self,
        data: &D,
        order: &mut DataOrder,
    ) -> StepMetrics {
        let started = Instant::now();
        let mb = self.config.micro_batch_size;
        let n = mb * self.config.accumulation_steps();
        let items: Vec<M::Item> = (0..n as u64)
            .map(|k| {
                data.get(order.index(self.cursor + k))
                    .expect("index within the dataset")
            })
            .collect();
        self.cursor += n as u64;
        let weight: usize = items.iter().map(M::item_weight).sum();
        let denominator = weight.max(1) as f64;

        let mut merged: Option<TrainSync<M>> = None;
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut single = None;
        let chunks: Vec<&[M::Item]> = items.chunks(mb).collect();
        let n_chunks = chunks.len();
        for round in chunks.chunks(self.devices.len()) {
            for (item, grads) in self.run_round(round, denominator) {
                match &mut merged {
                    Some(m) => m.merge(item),
                    None => merged = Some(item),
                }
                if n_chunks == 1 {
                    single = Some(grads);
                } else {
                    accumulator.accumulate(&self.model, grads);
                }
            }
        }
        let merged = merged.expect("a step has at least one micro-batch");
        let mut grads = single.unwrap_or_else(|| accumulator.grads());
        let grad_norm =
            clip_grad_norm::<B, _>(&self.model, &mut grads, self.config.optim.grad_clip_norm);
        let lr = self.scheduler.step();
        // The model is moved into the optimizer rather than cloned: holding the only
        // reference to each parameter lets the AdamW kernel update it in place (a clone
        // would make it copy every parameter first).
        let optim = &mut self.optim;
        update_in_place(&mut self.model, |model| {
            TrainStep::optimize(model, optim, lr, grads)
        });
        self.step += 1;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let loss = merged.loss();
        StepMetrics {
            step: self.step,
            loss,
            perplexity: loss.exp(),
            lr,
            grad_norm,
            target_tokens: weight,
            tokens_per_s: merged.n_inputs() as f64 / seconds,
            epoch: self.cursor as f64 / data.len() as f64,
            metrics: named(merged.metrics()),
        }
    }

    /// Forward + backward of up to one micro-batch per device, in parallel;
    /// the gradients come back on the main device, in micro-batch order.
    fn run_round(
        &self,
        round: &[&[M::Item]],
        denominator: f64,
    ) -> Vec<(TrainSync<M>, burn::optim::GradientsParams)> {
        let run = |model: &M, chunk: &[M::Item], device: &B::Device| {
            let batch = model.train_batch(chunk, denominator, device);
            let out = TrainStep::step(model, batch);
            (out.item.sync(), out.grads)
        };
        if round.len() == 1 {
            return vec![run(&self.model, round[0], &self.device)];
        }
        std::thread::scope(|scope| {
            let workers: Vec<_> = round
                .iter()
                .zip(&self.devices)
                .map(|(&chunk, device)| {
                    let model = self.model.clone().fork(device);
                    scope.spawn(move || run(&model, chunk, device))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    let (item, grads) = w.join().expect("a training worker panicked");
                    (item, grads.to_device(&self.device, &self.model))
                })
                .collect()
        })
    }

    /// The loss (mean over the items' weights) and objective metrics of the
    /// current model on `data`, evaluated by the inner module in batches of
    /// `micro_batch_size`.
    pub fn evaluate<D: Dataset<M::Item> + ?Sized>(&self, data: &D) -> ValidMetrics {
        let inner = self.model.valid();
        let device = inner.devices()[0].clone();
        let items: Vec<M::Item> = (0..data.len()).filter_map(|i| data.get(i)).collect();
        let weight: usize = items.iter().map(M::item_weight).sum();
        let denominator = weight.max(1) as f64;
        let merged: Option<ValidSync<B, M>> = items
            .chunks(self.config.micro_batch_size.max(1))
            .map(|chunk| {
                let batch = self.model.valid_batch(chunk, denominator, &device);
                InferenceStep::step(&inner, batch).sync()
            })
            .reduce(|mut all, next| {
                all.merge(next);
                all
            });
        let (loss, metrics) = merged.map_or((f64::NAN, Vec::new()), |m| (m.loss(), m.metrics()));
        ValidMetrics {
            step: self.step,
            loss,
            perplexity: loss.exp(),
            items: items.len(),
            metrics: named(metrics),
        }
    }

    /// Trains until `config.steps` (or `stop_at`, if smaller) with the
    /// metrics on the [`Dashboard`] of `config` (burn-train's terminal
    /// dashboard, or a line every `config.log_every` steps), logged to
    /// `metrics.jsonl` / `metrics.csv` (validation: `valid.jsonl`),
    /// checkpoints every `config.checkpoint_every` steps and at the end, and
    /// a `curves.svg` plot. Returns the metrics of the steps run by this call.
    pub fn fit<D: Dataset<M::Item> + ?Sized>(
        &mut self,
        data: &D,
        stop_at: Option<usize>,
    ) -> Result<Vec<StepMetrics>, TrainError> {
        let dashboard = Dashboard::for_run::<B, M>(&self.config, self.step, &self.device);
        self.fit_with(data, stop_at, dashboard)
    }

    /// [`Trainer::fit`] reporting to `dashboard`. When its interrupter is
    /// stopped (the dashboard's quit key, or any clone of
    /// [`Dashboard::interrupter`]), the current step is finished, a
    /// checkpoint is written and the run returns early; [`Trainer::resume`]
    /// continues it. With validation data and
    /// [`TrainConfig::early_stopping_patience`] set, the run also stops (with
    /// a checkpoint) once that many evaluations in a row have not lowered the
    /// validation loss.
    pub fn fit_with<D: Dataset<M::Item> + ?Sized>(
        &mut self,
        data: &D,
        stop_at: Option<usize>,
        mut dashboard: Dashboard<B::InnerBackend>,
    ) -> Result<Vec<StepMetrics>, TrainError> {
        if data.is_empty() {
            return Err(TrainError::EmptyData);
        }
        let out = PathBuf::from(&self.config.output_dir);
        let mut log = MetricsLog::open(&out, self.step, M::METRICS)?;
        let mut valid_log = ValidLog::open(&out, self.step)?;
        let mut order = DataOrder::new(data.len(), self.config.seed, self.config.shuffle);
        let end = stop_at.map_or(self.config.steps, |s| s.min(self.config.steps));
        let mut ran = Vec::new();
        let mut best = valid_log
            .history
            .iter()
            .map(|v| v.loss)
            .fold(f64::INFINITY, f64::min);
        let mut stale = 0usize;
        let mut early_stop = false;
        while self.step < end && !dashboard.should_stop() && !early_stop {
            let m = self.train_step(data, &mut order);
            dashboard.update(&m, end, self.cursor, data.len());
            log.push(m.clone())?;
            ran.push(m);
            let eval_every = self.config.eval_every;
            if let Some(valid) = self.valid.clone()
                && ((eval_every > 0 && self.step.is_multiple_of(eval_every)) || self.step == end)
            {
                let v = self.evaluate(valid.as_ref());
                dashboard.update_valid(&v, end);
                if v.loss < best {
                    best = v.loss;
                    stale = 0;
                } else {
                    stale += 1;
                }
                let patience = self.config.early_stopping_patience;
                early_stop = patience > 0 && stale >= patience;
                valid_log.push(v)?;
            }
            let every = self.config.checkpoint_every;
            let stop = dashboard.should_stop() || early_stop;
            if (every > 0 && self.step.is_multiple_of(every)) || self.step == end || stop {
                self.save_checkpoint()?;
            }
        }
        dashboard.finish();
        plot_curves(&log.history, &out.join("curves.svg"))?;
        Ok(ran)
    }
}

/// `device` and the next `n - 1` devices of its kind (index ids counted up
/// from its own; on a CPU backend every id is the one CPU).
fn device_list<B: AutodiffBackend>(device: &B::Device, n: usize) -> Vec<B::Device> {
    use burn::tensor::backend::Device as _;
    let first = device.to_id();
    (0..n as u16)
        .map(|k| {
            let mut id = first;
            id.index_id = first.index_id + k;
            B::Device::from_id(id)
        })
        .collect()
}

fn named(metrics: Vec<(&'static str, f64)>) -> std::collections::BTreeMap<String, f64> {
    metrics
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Replaces `*slot` by `f(*slot)`, moving the value through `f` without a clone. Should
/// `f` panic, the process aborts: `*slot` would otherwise be dropped a second time during
/// unwinding.
fn update_in_place<T>(slot: &mut T, f: impl FnOnce(T) -> T) {
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let guard = AbortOnUnwind;
    // SAFETY: the value read out of `slot` is moved into `f` and `slot` is written back
    // before anything can observe it; if `f` unwinds instead of returning, `guard` aborts
    // the process before `slot`'s moved-out value could be used or dropped again.
    unsafe {
        let value = std::ptr::read(slot);
        std::ptr::write(slot, f(value));
    }
    std::mem::forget(guard);
}
