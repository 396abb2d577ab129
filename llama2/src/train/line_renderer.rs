//! A plain-text burn-train [`MetricsRenderer`]: one line per logged step,
//! for logs, pipes and terminals without the dashboard.
//!
//! ```text
//! Step 10/300 | Epoch 1 | Sequences 80/431 | Loss 6.1234 | Learning Rate 6.667e-4 | Perplexity 456.4 | Throughput 2345 tok/s | Gradient Norm 1.234
//! ```

use std::collections::HashMap;
use std::io::Write;

use burn::train::metric::{MetricAttributes, MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};

/// Prints the metrics of every `every`-th training step (and of the last
/// one) as a line to a writer (standard output by default); `every = 0`
/// prints nothing.
pub struct LineRenderer {
    every: usize,
    out: Box<dyn Write + Send + Sync>,
    definitions: HashMap<MetricId, MetricDefinition>,
    /// Values received since the last rendered step, in arrival order.
    pending: Vec<(MetricId, Value)>,
    /// Validation values received since the last rendered evaluation.
    pending_valid: Vec<(MetricId, Value)>,
}

enum Value {
    Number(f64),
    Text(String),
}

impl LineRenderer {
    /// A renderer printing every `every`-th step to standard output.
    pub fn new(every: usize) -> Self {
        Self::to_writer(every, Box::new(std::io::stdout()))
    }

    /// A renderer printing every `every`-th step to `out`.
    pub fn to_writer(every: usize, out: Box<dyn Write + Send + Sync>) -> Self {
        Self {
            every,
            out,
            definitions: HashMap::new(),
            pending: Vec::new(),
            pending_valid: Vec::new(),
        }
    }

    fn push(&mut self, state: MetricState) {
        push(&mut self.pending, state);
    }

    fn line(&self, indicators: &[ProgressType]) -> String {
        self.line_of(indicators, &self.pending)
    }
}

fn push(pending: &mut Vec<(MetricId, Value)>, state: MetricState) {
    let (id, value) = match state {
        MetricState::Numeric(entry, value) => (entry.metric_id, Value::Number(value.current())),
        MetricState::Generic(entry) => (
            entry.metric_id,
            Value::Text(entry.serialized_entry.formatted),
        ),
    };
    pending.retain(|(other, _)| *other != id);
    pending.push((id, value));
}

impl LineRenderer {
    fn line_of(&self, indicators: &[ProgressType], pending: &[(MetricId, Value)]) -> String {
        let mut cells: Vec<String> = indicators
            .iter()
            .map(|p| match p {
                ProgressType::Detailed { tag, progress } => {
                    format!(
                        "{tag} {}/{}",
                        progress.items_processed, progress.items_total
                    )
                }
                ProgressType::Value { tag, value } => format!("{tag} {value}"),
            })
            .collect();
        for (id, value) in pending {
            let (name, unit) = match self.definitions.get(id) {
                Some(d) => (
                    d.name.as_str(),
                    match &d.attributes {
                        MetricAttributes::Numeric(a) => a.unit.as_deref(),
                        MetricAttributes::None => None,
                    },
                ),
                None => ("?", None),
            };
            let value = match value {
                Value::Number(v) => format_number(*v),
                Value::Text(t) => t.clone(),
            };
            cells.push(match unit {
                Some(unit) => format!("{name} {value} {unit}"),
                None => format!("{name} {value}"),
            });
        }
        cells.join(" | ")
    }
}

/// Four significant decimals in the usual range, whole numbers from 1000 up,
/// scientific notation for small values.
fn format_number(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() {
        format!("{v}")
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.push(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        push(&mut self.pending_valid, state);
    }

    fn render_train(&mut self, item: TrainingProgress, progress_indicators: Vec<ProgressType>) {
        let step = item
            .iteration
            .unwrap_or(item.global_progress.items_processed);
        let last = item.global_progress.items_processed >= item.global_progress.items_total;
        if self.every > 0 && (step.is_multiple_of(self.every) || last) {
            let line = self.line(&progress_indicators);
            // A closed pipe must not stop training.
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
        self.pending.clear();
    }

    fn render_valid(&mut self, _item: TrainingProgress, progress_indicators: Vec<ProgressType>) {
        if self.every > 0 {
            let line = self.line_of(&progress_indicators, &self.pending_valid);
            let _ = writeln!(self.out, "valid | {line}");
            let _ = self.out.flush();
        }
        self.pending_valid.clear();
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}

    fn render_test(&mut self, _item: EvaluationProgress, _progress_indicators: Vec<ProgressType>) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.definitions
            .insert(definition.metric_id.clone(), definition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::Progress;
    use burn::train::metric::{MetricEntry, NumericAttributes, NumericEntry, SerializedEntry};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn definition(name: &str, unit: Option<&str>) -> MetricDefinition {
        MetricDefinition {
            metric_id: MetricId::new(Arc::new(name.to_string())),
            name: name.to_string(),
            description: None,
            attributes: NumericAttributes {
                unit: unit.map(str::to_string),
                higher_is_better: true,
            }
            .into(),
        }
    }

    fn numeric(name: &str, v: f64) -> MetricState {
        MetricState::Numeric(
            MetricEntry::new(
                MetricId::new(Arc::new(name.to_string())),
                SerializedEntry::new(String::new(), String::new()),
            ),
            NumericEntry::Value(v),
        )
    }

    fn render(r: &mut LineRenderer, step: usize, total: usize) {
        r.update_train(numeric("Loss", 2.5 + step as f64));
        r.update_train(numeric("Throughput", 12345.6));
        r.update_train(numeric("Learning Rate", 3e-4));
        r.render_train(
            TrainingProgress {
                progress: None,
                global_progress: Progress::new(step, total),
                iteration: Some(step),
            },
            vec![
                ProgressType::Detailed {
                    tag: "Step".into(),
                    progress: Progress::new(step, total),
                },
                ProgressType::Value {
                    tag: "Epoch".into(),
                    value: 1,
                },
            ],
        );
    }

    #[test]
    fn prints_every_nth_and_the_last_step() {
        let out = Shared::default();
        let mut r = LineRenderer::to_writer(2, Box::new(out.clone()));
        r.register_metric(definition("Loss", None));
        r.register_metric(definition("Throughput", Some("tok/s")));
        r.register_metric(definition("Learning Rate", None));
        for step in 1..=5 {
            render(&mut r, step, 5);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "Step 2/5 | Epoch 1 | Loss 4.5000 | Throughput 12346 tok/s | Learning Rate 3.000e-4",
                "Step 4/5 | Epoch 1 | Loss 6.5000 | Throughput 12346 tok/s | Learning Rate 3.000e-4",
                "Step 5/5 | Epoch 1 | Loss 7.5000 | Throughput 12346 tok/s | Learning Rate 3.000e-4",
            ]
        );

        let quiet = Shared::default();
        let mut r = LineRenderer::to_writer(0, Box::new(quiet.clone()));
        render(&mut r, 1, 1);
        assert!(quiet.0.lock().unwrap().is_empty());
    }
}
