//! The live view of a training run: every step's [`StepMetrics`] go through
//! burn-train metrics — [`LossMetric`], [`LearningRateMetric`] and the
//! [`StepMetric`]s for perplexity, throughput and gradient norm — to a
//! burn-train [`MetricsRenderer`], with the run's step and epoch position as
//! the progress.
//!
//! [`default_renderer`] picks burn-train's terminal dashboard
//! ([`TuiMetricsRendererWrapper`]: a plot per metric, progress bars and an
//! ETA) when [`TrainConfig::dashboard`] is set and standard output is a
//! terminal, and a [`LineRenderer`] printing a line every
//! [`TrainConfig::log_every`] steps otherwise (logs, pipes, CI). In the
//! dashboard, `q` then `s` ("Stop the training") sets the [`Interrupter`]:
//! the trainer finishes the current step, writes a checkpoint and returns, so
//! the run can be resumed. (`q` then `k` is burn-train's hard kill: a panic,
//! without a checkpoint.) burn-train 0.21's dashboard thread polls without
//! sleeping, so it keeps one CPU core busy while training runs.

use std::io::IsTerminal;

use burn::data::dataloader::Progress;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::train::Interrupter;
use burn::train::metric::{
    LearningRateMetric, LossInput, LossMetric, Metric, MetricDefinition, MetricEntry, MetricId,
    MetricMetadata, Numeric,
};
use burn::train::renderer::tui::TuiMetricsRendererWrapper;
use burn::train::renderer::{MetricState, MetricsRenderer, ProgressType, TrainingProgress};

use super::config::TrainConfig;
use super::line_renderer::LineRenderer;
use super::log::{StepMetrics, ValidMetrics};
use super::objective::Trainable;
use super::step_metric::StepMetric;

/// burn-train's dashboard when `config.dashboard` is set and standard output
/// is a terminal; otherwise a [`LineRenderer`] printing every
/// `config.log_every` steps. `start_step` is the step the run (re)starts from,
/// for the dashboard's progress and ETA.
pub fn default_renderer(
    config: &TrainConfig,
    start_step: usize,
    interrupter: &Interrupter,
) -> Box<dyn MetricsRenderer> {
    if config.dashboard && std::io::stdout().is_terminal() {
        Box::new(TuiMetricsRendererWrapper::new(
            interrupter.clone(),
            Some(start_step),
        ))
    } else {
        Box::new(LineRenderer::new(config.log_every))
    }
}

/// A metric with the id its entries are reported under.
struct Tracked<M> {
    id: MetricId,
    metric: M,
}

impl<M: Metric + Numeric> Tracked<M> {
    fn new(metric: M) -> Self {
        Self {
            id: MetricId::new(metric.name()),
            metric,
        }
    }

    fn definition(&self) -> MetricDefinition {
        MetricDefinition::new(self.id.clone(), &self.metric)
    }

    fn update(&mut self, input: &M::Input, metadata: &MetricMetadata) -> MetricState {
        let entry = self.metric.update(input, metadata);
        MetricState::Numeric(
            MetricEntry::new(self.id.clone(), entry),
            self.metric.value(),
        )
    }
}

/// Feeds each step's metrics to a [`MetricsRenderer`] and carries the
/// [`Interrupter`] the renderer (or any other holder of a clone) uses to ask
/// the trainer to stop. `B` is the backend of the loss tensor handed to
/// [`LossMetric`].
pub struct Dashboard<B: Backend> {
    renderer: Box<dyn MetricsRenderer>,
    interrupter: Interrupter,
    loss: Tracked<LossMetric<B>>,
    lr: Tracked<LearningRateMetric>,
    step_metrics: Vec<Tracked<StepMetric>>,
    valid_loss: Tracked<LossMetric<B>>,
    valid_metrics: Vec<Tracked<StepMetric>>,
    epoch: Option<u64>,
    device: B::Device,
}

impl<B: Backend> Dashboard<B> {
    /// Registers the metrics of language-model training (loss, perplexity,
    /// learning rate, throughput, gradient norm) with `renderer`.
    pub fn new(
        renderer: Box<dyn MetricsRenderer>,
        interrupter: Interrupter,
        device: &B::Device,
    ) -> Self {
        Self::with_metrics(renderer, interrupter, device, true, &[])
    }

    /// Registers the loss, the learning rate, the perplexity when
    /// `perplexity`, throughput, gradient norm and the objective's own
    /// metrics `objective` ([`Trainable::METRICS`]) with `renderer`.
    pub fn with_metrics(
        mut renderer: Box<dyn MetricsRenderer>,
        interrupter: Interrupter,
        device: &B::Device,
        perplexity: bool,
        objective: &[&'static str],
    ) -> Self {
        let loss = Tracked::new(LossMetric::new());
        let lr = Tracked::new(LearningRateMetric::new());
        let own = |with_perplexity: bool| {
            with_perplexity
                .then(StepMetric::perplexity)
                .into_iter()
                .chain(objective.iter().map(|&name| StepMetric::objective(name)))
        };
        let step_metrics: Vec<_> = own(perplexity)
            .chain([StepMetric::throughput(), StepMetric::grad_norm()])
            .map(Tracked::new)
            .collect();
        let valid_loss = Tracked::new(LossMetric::new());
        let valid_metrics: Vec<_> = own(perplexity).map(Tracked::new).collect();
        renderer.register_metric(loss.definition());
        renderer.register_metric(lr.definition());
        for m in &step_metrics {
            renderer.register_metric(m.definition());
        }
        Self {
            renderer,
            interrupter,
            loss,
            lr,
            step_metrics,
            valid_loss,
            valid_metrics,
            epoch: None,
            device: device.clone(),
        }
    }

    /// The dashboard of a run of model `M` with `config`, restarting at
    /// `start_step`, on [`default_renderer`] with a fresh [`Interrupter`].
    pub fn for_run<AB, M>(config: &TrainConfig, start_step: usize, device: &B::Device) -> Self
    where
        AB: burn::tensor::backend::AutodiffBackend,
        M: Trainable<AB>,
    {
        let interrupter = Interrupter::new();
        let renderer = default_renderer(config, start_step, &interrupter);
        Self::with_metrics(renderer, interrupter, device, M::PERPLEXITY, M::METRICS)
    }

    /// The interrupter whose [`Interrupter::stop`] asks the trainer to stop
    /// after the current step.
    pub fn interrupter(&self) -> &Interrupter {
        &self.interrupter
    }

    /// Whether stopping was requested.
    pub fn should_stop(&self) -> bool {
        self.interrupter.should_stop()
    }

    /// Reports step `m` of a run ending at `end_step`, after which `cursor`
    /// samples of an epoch of `samples_per_epoch` have been consumed. The
    /// metrics' running ("epoch") means restart with every epoch.
    pub fn update(
        &mut self,
        m: &StepMetrics,
        end_step: usize,
        cursor: u64,
        samples_per_epoch: usize,
    ) {
        let per_epoch = samples_per_epoch.max(1) as u64;
        let epoch = cursor.saturating_sub(1) / per_epoch;
        if self.epoch.is_some_and(|e| e != epoch) {
            self.loss.metric.clear();
            self.lr.metric.clear();
            for t in &mut self.step_metrics {
                t.metric.clear();
            }
        }
        self.epoch = Some(epoch);

        let steps = Progress::new(m.step, end_step);
        let metadata = MetricMetadata {
            progress: steps.clone(),
            global_progress: steps.clone(),
            iteration: Some(m.step),
            lr: Some(m.lr),
        };
        let loss = Tensor::<B, 1>::from_floats([m.loss as f32], &self.device);
        let state = self.loss.update(&LossInput::new(loss), &metadata);
        self.renderer.update_train(state);
        let state = self.lr.update(&(), &metadata);
        self.renderer.update_train(state);
        for t in &mut self.step_metrics {
            let state = t.update(m, &metadata);
            self.renderer.update_train(state);
        }

        let in_epoch = cursor - epoch * per_epoch;
        let indicators = vec![
            ProgressType::Detailed {
                tag: "Step".into(),
                progress: steps.clone(),
            },
            ProgressType::Value {
                tag: "Epoch".into(),
                value: epoch as usize + 1,
            },
            ProgressType::Detailed {
                tag: "Sequences".into(),
                progress: Progress::new(in_epoch as usize, per_epoch as usize),
            },
        ];
        self.renderer.render_train(
            TrainingProgress {
                progress: None,
                global_progress: steps,
                iteration: Some(m.step),
            },
            indicators,
        );
    }

    /// Reports an evaluation on the validation data during a run ending at
    /// `end_step`.
    pub fn update_valid(&mut self, v: &ValidMetrics, end_step: usize) {
        let steps = Progress::new(v.step, end_step);
        let metadata = MetricMetadata {
            progress: steps.clone(),
            global_progress: steps.clone(),
            iteration: Some(v.step),
            lr: None,
        };
        let loss = Tensor::<B, 1>::from_floats([v.loss as f32], &self.device);
        let state = self.valid_loss.update(&LossInput::new(loss), &metadata);
        self.renderer.update_valid(state);
        let as_step = StepMetrics {
            step: v.step,
            loss: v.loss,
            perplexity: v.perplexity,
            lr: 0.0,
            grad_norm: 0.0,
            target_tokens: 0,
            tokens_per_s: 0.0,
            epoch: 0.0,
            metrics: v.metrics.clone(),
        };
        for t in &mut self.valid_metrics {
            let state = t.update(&as_step, &metadata);
            self.renderer.update_valid(state);
        }
        self.renderer.render_valid(
            TrainingProgress {
                progress: None,
                global_progress: steps.clone(),
                iteration: Some(v.step),
            },
            vec![ProgressType::Detailed {
                tag: "Step".into(),
                progress: steps,
            }],
        );
    }

    /// Tells the renderer that training ended and closes it (the dashboard
    /// gives the terminal back).
    pub fn finish(mut self) {
        // The renderer's own summary output is all it can fail on.
        let _ = self.renderer.on_train_end(None);
    }
}
