//! What a pipeline run reports: per stage its time, headline metric before → after and
//! other metrics; at the end the held-out evaluation of the SFT, rejection-sampling and
//! PPO models and a few answers before and after RLHF. Written as `report.json` and a
//! `report.md` that embeds the plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::RlhfError;
use crate::pipeline::tasks::RuleScores;

/// A stage's headline metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyMetric {
    /// What it measures.
    pub name: String,
    /// Before the stage (its input model).
    pub before: f64,
    /// After the stage.
    pub after: f64,
}

/// One finished stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// The stage's name ([`Stage::name`](super::Stage::name)).
    pub name: String,
    /// The paper's section.
    pub section: String,
    /// Wall time.
    pub seconds: f64,
    /// The headline metric.
    pub key: KeyMetric,
    /// Other metrics (finite values only).
    pub metrics: BTreeMap<String, f64>,
    /// The files it wrote, relative to the run directory.
    pub outputs: Vec<String>,
    /// Whether this run skipped it because its output existed.
    #[serde(default)]
    pub skipped: bool,
}

impl StageReport {
    /// A report with no metrics besides the headline.
    pub fn new(stage: super::Stage, key: KeyMetric) -> Self {
        Self {
            name: stage.name().into(),
            section: stage.section().into(),
            seconds: 0.0,
            key,
            metrics: BTreeMap::new(),
            outputs: Vec::new(),
            skipped: false,
        }
    }

    /// Records `value` as `name` when it is finite.
    pub fn put(&mut self, name: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.metrics.insert(name.into(), value);
        }
    }
}

/// One model on the held-out sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEval {
    /// The record evaluated, relative to the run directory.
    pub model: String,
    /// Mean combined reward (eq. 3 on the logit scale) of its greedy answers to the
    /// held-out prompts.
    pub reward: f64,
    /// Mean helpfulness reward model score `σ(r_h)` of those answers.
    pub helpfulness: f64,
    /// The task rules' score of those answers, overall and per category.
    pub rule_score: RuleScores,
    /// The task rules' score of one answer per prompt sampled at temperature 1.
    pub rule_score_sampled: RuleScores,
    /// Share of red-team answers with `σ(r_s) < 0.15`.
    pub violation_rate: f64,
    /// Share of red-team answers that refuse, by the rule.
    pub red_team_refusals: f64,
    /// Perplexity of the held-out SFT dialogs' answer tokens.
    pub perplexity: f64,
    /// Share of answers keeping the GAtt instruction of the system message, per turn.
    pub gatt_adherence: Vec<f64>,
    /// Mean answer length in tokens.
    pub response_len: f64,
}

/// Answers of the SFT and the final model to one held-out prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleAnswers {
    /// The prompt.
    pub prompt: String,
    /// The SFT model's greedy answer.
    pub sft: String,
    /// The PPO model's greedy answer.
    pub ppo: String,
}

/// The held-out comparison of the models after SFT, rejection sampling and PPO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutReport {
    /// After SFT.
    pub sft: ModelEval,
    /// After rejection sampling.
    pub rejection_sampling: ModelEval,
    /// After PPO.
    pub ppo: ModelEval,
    /// A few answers before and after RLHF.
    pub samples: Vec<SampleAnswers>,
}

/// `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// The backend it ran on.
    pub backend: String,
    /// The scale preset, or `custom`.
    pub scale: String,
    /// The seed.
    pub seed: u64,
    /// Every stage, in order.
    pub stages: Vec<StageReport>,
    /// The held-out evaluation (once the eval stage has run).
    pub held_out: Option<HeldOutReport>,
    /// The final model, relative to the run directory.
    pub final_model: String,
}

impl PipelineReport {
    /// The stage table: stage, paper section, time, headline metric before → after.
    pub fn stage_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<19} {:<10} {:>7}  {:<40} {:>9}    {:>9}",
            "stage", "paper", "time", "metric", "before", "after"
        );
        for st in &self.stages {
            let _ = writeln!(
                s,
                "{:<19} {:<10} {:>6.1}s  {:<40} {:>9} → {:>9}",
                st.name,
                st.section,
                st.seconds,
                st.key.name,
                number(st.key.before),
                number(st.key.after)
            );
        }
        s
    }

    /// The held-out table of the SFT, rejection-sampling and PPO models.
    pub fn held_out_table(&self) -> Option<String> {
        let h = self.held_out.as_ref()?;
        let rows = [
            ("SFT", &h.sft),
            ("rejection sampling", &h.rejection_sampling),
            ("PPO", &h.ppo),
        ];
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| model | reward | helpfulness σ(r_h) | rule score | sum | format | safety | rule score (T = 1) | red-team violations | red-team refusals | perplexity | GAtt adherence per turn |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, m) in rows {
            let cat = |c: &str| {
                m.rule_score
                    .by_category
                    .get(c)
                    .map_or("–".into(), |v| pct(*v))
            };
            let _ = writeln!(
                s,
                "| {name} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
                m.reward,
                m.helpfulness,
                pct(m.rule_score.overall),
                cat("sum"),
                cat("format"),
                cat("safety"),
                pct(m.rule_score_sampled.overall),
                pct(m.violation_rate),
                pct(m.red_team_refusals),
                m.perplexity,
                m.gatt_adherence
                    .iter()
                    .map(|v| pct(*v))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        Some(s)
    }

    /// `report.md`: the tables, the plots of `plots` (title, path relative to the run
    /// directory) and the sample answers.
    pub fn markdown(&self, plots: &[(String, String)]) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Llama 2 recipe, end to end\n\nBackend {}, scale {}, seed {}. Final model: `{}`.\n",
            self.backend, self.scale, self.seed, self.final_model
        );
        let _ = writeln!(s, "## Stages\n");
        let _ = writeln!(
            s,
            "| stage | paper | time (s) | metric | before | after |\n|---|---|---|---|---|---|"
        );
        for st in &self.stages {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1}{} | {} | {} | {} |",
                st.name,
                st.section,
                st.seconds,
                if st.skipped { " (earlier run)" } else { "" },
                st.key.name,
                number(st.key.before),
                number(st.key.after)
            );
        }
        if let Some(table) = self.held_out_table() {
            let _ = writeln!(
                s,
                "\n## Held-out evaluation\n\nGreedy answers to held-out prompts; the rule score is computed by the task's rules, not by a reward model.\n\n{table}"
            );
        }
        if let Some(h) = &self.held_out {
            let _ = writeln!(s, "\n## Answers before and after RLHF\n");
            for a in &h.samples {
                let _ = writeln!(
                    s,
                    "- **{}**\n  - SFT: `{}`\n  - PPO: `{}`",
                    a.prompt,
                    a.sft.replace('`', "'"),
                    a.ppo.replace('`', "'")
                );
            }
        }
        if !plots.is_empty() {
            let _ = writeln!(s, "\n## Curves\n");
            for (title, path) in plots {
                let _ = writeln!(s, "### {title}\n\n![{title}]({path})\n");
            }
        }
        for st in &self.stages {
            if st.metrics.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n## {} metrics\n", st.name);
            for (k, v) in &st.metrics {
                let _ = writeln!(s, "- {k}: {}", number(*v));
            }
        }
        s
    }

    /// Writes `report.json` and `report.md` into `dir`, atomically.
    pub fn write(&self, dir: &Path, plots: &[(String, String)]) -> Result<(), RlhfError> {
        crate::jsonl::write_json(&dir.join("report.json"), self)?;
        llama2::atomic::write_bytes(&dir.join("report.md"), self.markdown(plots).as_bytes())?;
        Ok(())
    }
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

fn number(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
