//! burn-train metrics read from a [`StepMetrics`]: perplexity, throughput and
//! gradient norm, the per-step quantities burn-train has no metric for (its
//! `PerplexityMetric` recomputes perplexity from logits; the trainer already
//! has the step's mean token cross-entropy).

use std::sync::Arc;

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};

use super::log::StepMetrics;

/// A numeric burn-train [`Metric`] whose value at each step is one quantity of
/// that step's [`StepMetrics`]. Its running value is the mean over the steps
/// since the last [`Metric::clear`] (the trainer clears at epoch boundaries).
#[derive(Clone)]
pub struct StepMetric {
    name: MetricName,
    description: &'static str,
    unit: Option<&'static str>,
    precision: usize,
    higher_is_better: bool,
    read: Arc<dyn Fn(&StepMetrics) -> f64 + Send + Sync>,
    state: NumericMetricState,
}

impl StepMetric {
    fn new(
        name: &str,
        description: &'static str,
        unit: Option<&'static str>,
        precision: usize,
        higher_is_better: bool,
        read: impl Fn(&StepMetrics) -> f64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: Arc::new(name.to_string()),
            description,
            unit,
            precision,
            higher_is_better,
            read: Arc::new(read),
            state: NumericMetricState::new(),
        }
    }

    /// `Perplexity`: `exp` of the step's mean token cross-entropy.
    pub fn perplexity() -> Self {
        Self::new(
            "Perplexity",
            "exp of the mean token cross-entropy of the step",
            None,
            2,
            false,
            |m| m.perplexity,
        )
    }

    /// `Throughput`: input tokens processed per second, in `tok/s`.
    pub fn throughput() -> Self {
        Self::new(
            "Throughput",
            "input tokens per second of the step",
            Some("tok/s"),
            0,
            true,
            |m| m.tokens_per_s,
        )
    }

    /// `Gradient Norm`: the global gradient norm before clipping.
    pub fn grad_norm() -> Self {
        Self::new(
            "Gradient Norm",
            "global 2-norm of the gradients before clipping",
            None,
            3,
            false,
            |m| m.grad_norm,
        )
    }

    /// An objective's own metric `name`, read from [`StepMetrics::metrics`]
    /// (NaN in a step that lacks it).
    pub fn objective(name: &'static str) -> Self {
        Self::new(
            name,
            "a metric of the training objective",
            None,
            4,
            true,
            move |m| m.metrics.get(name).copied().unwrap_or(f64::NAN),
        )
    }

    /// The value this metric reads from `m`.
    pub fn read(&self, m: &StepMetrics) -> f64 {
        (self.read)(m)
    }
}

impl Metric for StepMetric {
    type Input = StepMetrics;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        Some(self.description.to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: self.unit.map(str::to_string),
            higher_is_better: self.higher_is_better,
        }
        .into()
    }

    fn update(&mut self, item: &StepMetrics, _metadata: &MetricMetadata) -> SerializedEntry {
        let mut format = FormatOptions::new(self.name()).precision(self.precision);
        if let Some(unit) = self.unit {
            format = format.unit(unit);
        }
        self.state.update(self.read(item), 1, format)
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl Numeric for StepMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::Progress;

    fn metrics(step: usize, loss: f64, tokens_per_s: f64, grad_norm: f64) -> StepMetrics {
        StepMetrics {
            step,
            loss,
            perplexity: loss.exp(),
            lr: 1e-3,
            grad_norm,
            target_tokens: 10,
            tokens_per_s,
            epoch: 0.5,
            metrics: Default::default(),
        }
    }

    fn metadata(step: usize) -> MetricMetadata {
        MetricMetadata {
            progress: Progress::new(step, 10),
            global_progress: Progress::new(step, 10),
            iteration: Some(step),
            lr: Some(1e-3),
        }
    }

    #[test]
    fn current_and_running_values() {
        let mut metric = StepMetric::throughput();
        metric.update(&metrics(1, 2.0, 100.0, 0.5), &metadata(1));
        let entry = metric.update(&metrics(2, 1.0, 300.0, 0.25), &metadata(2));
        assert_eq!(metric.value().current(), 300.0);
        assert_eq!(metric.running_value().current(), 200.0);
        assert_eq!(entry.formatted, "epoch 200 tok/s - batch 300 tok/s");
        metric.clear();
        metric.update(&metrics(3, 1.0, 50.0, 0.25), &metadata(3));
        assert_eq!(metric.running_value().current(), 50.0);

        let mut ppl = StepMetric::perplexity();
        ppl.update(&metrics(1, 2.0, 100.0, 0.5), &metadata(1));
        assert_eq!(ppl.value().current(), 2f64.exp());
        let mut norm = StepMetric::grad_norm();
        norm.update(&metrics(1, 2.0, 100.0, 0.5), &metadata(1));
        assert_eq!(norm.value().current(), 0.5);
        assert!(matches!(
            norm.attributes(),
            MetricAttributes::Numeric(NumericAttributes {
                higher_is_better: false,
                ..
            })
        ));
    }
}
