//! The paper's whole recipe in one run, on data the repository generates
//! (`scripts/gen_pipeline_data.py` → `examples/data/pipeline/`), with tasks whose answers
//! a program checks, so that "the reward went up" can be cross-checked by a score no
//! reward model computed.
//!
//! | stage | paper | what it does |
//! |---|---|---|
//! | `pretrain` | §2 | a small Llama 2 from scratch on a weighted mixture of two text sources |
//! | `sft` | §3.1, §3.3 | fine-tuning on Llama 2-Chat dialogs and Ghost Attention examples |
//! | `reward-helpfulness`, `reward-safety` | §3.2.2 | two reward models from the SFT model, margin ranking loss, accuracy per rating |
//! | `rejection-sampling` | §3.2.3 | best-of-K rounds against the combined reward, with the archive |
//! | `ppo` | §3.2.3 | PPO on the rejection-sampling model |
//! | `eval` | §3.4, §4 | held-out reward, rule score, red-team violations, perplexity, GAtt adherence per turn |
//!
//! | file | contents |
//! |---|---|
//! | [`config`] | [`PipelineConfig`], presets per [`Scale`], the [`Stage`]s |
//! | [`tasks`] | the tasks' rules, the rule-following assistant of the GAtt data |
//! | [`language`] | the pretraining and SFT stages |
//! | [`reward`] | the reward-model stages |
//! | [`rl`] | the rejection-sampling and PPO stages |
//! | [`evaluate`] | perplexity, greedy answers, GAtt adherence; the eval stage |
//! | [`report`] | `report.json`, `report.md`, the stage table |
//! | [`run`] | [`Pipeline::run`]: stages in order, skipped when done, `from` to redo |

pub mod config;
pub mod evaluate;
pub mod language;
pub mod report;
pub mod reward;
pub mod rl;
pub mod run;
pub mod tasks;

pub use config::{ModelShape, PipelineConfig, Scale, Stage};
pub use report::{HeldOutReport, KeyMetric, ModelEval, PipelineReport, StageReport};
pub use run::Pipeline;
