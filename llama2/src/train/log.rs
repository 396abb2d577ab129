//! Per-step training metrics (loss, perplexity, learning rate, gradient norm,
//! tokens/s), written as JSON lines and CSV.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::TrainError;

/// Metrics of one optimizer step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer step, from 1.
    pub step: usize,
    /// Mean token cross-entropy over the step's targets.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Learning rate used by this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// What the step's loss averages over: target tokens (language
    /// modelling) or pairs (reward modelling).
    pub target_tokens: usize,
    /// Input tokens processed per second.
    pub tokens_per_s: f64,
    /// Epoch (passes over the data) at the end of the step.
    pub epoch: f64,
    /// The objective's own metrics (e.g. a reward model's accuracy).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// Metrics of one evaluation on the validation data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidMetrics {
    /// Optimizer steps done when evaluated.
    pub step: usize,
    /// Mean loss over the validation items' weights (target tokens, pairs).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Validation items evaluated.
    pub items: usize,
    /// The objective's own metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// Append-only `metrics.jsonl` and `metrics.csv` in a run directory.
pub struct MetricsLog {
    jsonl: PathBuf,
    csv: PathBuf,
    /// Every step logged so far (including those of earlier, resumed runs).
    pub history: Vec<StepMetrics>,
    extra: Vec<String>,
}

const CSV_HEADER: &str = "step,loss,perplexity,lr,grad_norm,target_tokens,tokens_per_s,epoch";

impl MetricsLog {
    /// Opens the log in `dir`, keeping the steps up to `keep_until` of an
    /// earlier run (those a resumed run continues from) and dropping later ones.
    /// `extra` names the objective's own metrics, written as further CSV
    /// columns.
    pub fn open(dir: &Path, keep_until: usize, extra: &[&str]) -> Result<Self, TrainError> {
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let jsonl = dir.join("metrics.jsonl");
        let csv = dir.join("metrics.csv");
        let history: Vec<StepMetrics> = match fs::read_to_string(&jsonl) {
            Ok(text) => text
                .lines()
                .filter_map(|l| serde_json::from_str::<StepMetrics>(l).ok())
                .filter(|m| m.step <= keep_until)
                .collect(),
            Err(_) => Vec::new(),
        };
        let log = Self {
            jsonl,
            csv,
            history,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        log.rewrite()?;
        Ok(log)
    }

    fn rewrite(&self) -> Result<(), TrainError> {
        let mut j = String::new();
        let mut c = String::from(CSV_HEADER);
        for name in &self.extra {
            c.push(',');
            c.push_str(name);
        }
        c.push('\n');
        for m in &self.history {
            j.push_str(&serde_json::to_string(m).expect("metrics serialize"));
            j.push('\n');
            c.push_str(&self.csv_line(m));
        }
        crate::atomic::write_bytes(&self.jsonl, j.as_bytes())?;
        crate::atomic::write_bytes(&self.csv, c.as_bytes())?;
        Ok(())
    }

    /// Records one step.
    pub fn push(&mut self, m: StepMetrics) -> Result<(), TrainError> {
        append(
            &self.jsonl,
            &(serde_json::to_string(&m).expect("serialize") + "\n"),
        )?;
        append(&self.csv, &self.csv_line(&m))?;
        self.history.push(m);
        Ok(())
    }
}

impl MetricsLog {
    fn csv_line(&self, m: &StepMetrics) -> String {
        let mut line = format!(
            "{},{},{},{},{},{},{},{}",
            m.step,
            m.loss,
            m.perplexity,
            m.lr,
            m.grad_norm,
            m.target_tokens,
            m.tokens_per_s,
            m.epoch
        );
        for name in &self.extra {
            line.push(',');
            if let Some(v) = m.metrics.get(name) {
                line.push_str(&v.to_string());
            }
        }
        line.push('\n');
        line
    }
}

/// Append-only `valid.jsonl` in a run directory: one line per evaluation.
pub struct ValidLog {
    path: PathBuf,
    /// Every evaluation logged so far (including those of earlier, resumed runs).
    pub history: Vec<ValidMetrics>,
}

impl ValidLog {
    /// Opens the log in `dir`, keeping the evaluations up to step
    /// `keep_until`.
    pub fn open(dir: &Path, keep_until: usize) -> Result<Self, TrainError> {
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let path = dir.join("valid.jsonl");
        let history: Vec<ValidMetrics> = match fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| serde_json::from_str::<ValidMetrics>(l).ok())
                .filter(|m| m.step <= keep_until)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut text = String::new();
        for m in &history {
            text.push_str(&serde_json::to_string(m).expect("metrics serialize"));
            text.push('\n');
        }
        if !history.is_empty() || path.exists() {
            crate::atomic::write_bytes(&path, text.as_bytes())?;
        }
        Ok(Self { path, history })
    }

    /// Records one evaluation.
    pub fn push(&mut self, m: ValidMetrics) -> Result<(), TrainError> {
        append(
            &self.path,
            &(serde_json::to_string(&m).expect("serialize") + "\n"),
        )?;
        self.history.push(m);
        Ok(())
    }
}

fn append(path: &Path, text: &str) -> Result<(), TrainError> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| TrainError::io(path, e))
}
