//! Running the stages in order: each writes its folder under the run directory and, last,
//! its `stage.json`; a stage whose `stage.json` exists is skipped, `from` redoes a stage
//! and every later one. An unfinished stage is redone (rejection sampling and PPO go on
//! from their saved state). `report.json` / `report.md` are rewritten after every stage.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use llama2::{Llama, Tokenizer};
use llama2_import::TokenizerFile;

use crate::RlhfError;
use crate::jsonl::{read_json, write_json};
use crate::pipeline::config::{PipelineConfig, Stage};
use crate::pipeline::evaluate::eval_stage;
use crate::pipeline::language::{pretrain_stage, sft_stage};
use crate::pipeline::report::{HeldOutReport, PipelineReport, StageReport};
use crate::pipeline::reward::reward_stage;
use crate::pipeline::rl::{ppo_stage, rejection_stage};

/// What every stage sees.
pub(crate) struct StageContext<'a> {
    pub config: &'a PipelineConfig,
    pub run_dir: PathBuf,
    pub tokenizer: &'a Tokenizer,
    pub tokenizer_file: &'a TokenizerFile,
    pub stop: &'a dyn Fn() -> bool,
    pub log_every: usize,
}

impl StageContext<'_> {
    /// The folder of `stage`.
    pub fn dir(&self, stage: Stage) -> PathBuf {
        self.run_dir.join(stage.name())
    }

    /// A file of the pipeline data.
    pub fn data(&self, name: &str) -> PathBuf {
        Path::new(&self.config.data_dir).join(name)
    }

    /// The model SFT starts from: the base checkpoint, else the pretrained model.
    pub fn start_model(&self) -> PathBuf {
        match &self.config.base {
            Some(base) => PathBuf::from(base),
            None => self.dir(Stage::Pretrain).join("model.bpk"),
        }
    }

    /// Loads a policy record (or checkpoint) and checks its vocabulary.
    pub fn load_policy<B: Backend>(
        &self,
        path: &Path,
        device: &B::Device,
    ) -> Result<Llama<B>, RlhfError> {
        let model = llama2_import::load_model::<B>(path, device)?;
        if model.config.vocab_size < self.tokenizer.vocab_size() {
            return Err(RlhfError::Mismatch {
                what: "model and tokenizer",
                detail: format!(
                    "{} has a vocabulary of {} tokens, the tokenizer {}",
                    path.display(),
                    model.config.vocab_size,
                    self.tokenizer.vocab_size()
                ),
            });
        }
        Ok(model)
    }

    /// The held-out prompts evaluated: the first `eval_prompts`, or all.
    pub fn eval_slice<'p, T>(&self, items: &'p [T]) -> &'p [T] {
        match self.config.eval_prompts {
            0 => items,
            n => &items[..n.min(items.len())],
        }
    }

    /// Names the stage in a stop.
    pub fn interrupted(&self, e: RlhfError, stage: Stage) -> RlhfError {
        match e {
            RlhfError::Interrupted => RlhfError::StageInterrupted {
                stage: stage.name(),
            },
            e => e,
        }
    }
}

/// The paper's recipe as one run (see the [module docs](super)).
pub struct Pipeline {
    /// The settings.
    pub config: PipelineConfig,
    /// Names the preset in the report (`micro`, `tiny`, `small`, or `custom`).
    pub scale: String,
    /// Names the backend in the report.
    pub backend: String,
    /// A progress line of the training loops every N steps (0: none).
    pub log_every: usize,
}

/// The file of a finished stage's report.
fn stage_file(run_dir: &Path, stage: Stage) -> PathBuf {
    run_dir.join(stage.name()).join("stage.json")
}

impl Pipeline {
    /// The final model: the PPO policy, copied to the run directory.
    pub fn final_model(&self) -> PathBuf {
        Path::new(&self.config.output_dir).join("model.bpk")
    }

    /// Runs the stages not yet done (and every stage from `from` on), calling
    /// `on_stage` after each with its report; returns the whole report. `stop` is
    /// checked between stages and inside rejection sampling and PPO; a stop ends the
    /// run with [`RlhfError::StageInterrupted`], the finished stages kept.
    pub fn run<B: AutodiffBackend>(
        &self,
        from: Option<Stage>,
        stop: &dyn Fn() -> bool,
        device: &B::Device,
        mut on_stage: impl FnMut(&StageReport),
    ) -> Result<PipelineReport, RlhfError> {
        let c = &self.config;
        c.validate().map_err(RlhfError::Config)?;
        let run_dir = PathBuf::from(&c.output_dir);
        fs::create_dir_all(&run_dir).map_err(|e| RlhfError::io(&run_dir, e))?;
        llama2::atomic::remove_stale_temporaries(&run_dir);

        // Settings: the run directory's must match, unless stages are redone (`from`:
        // the earlier stages are kept as they are).
        let config_path = run_dir.join("config.json");
        let settings = serde_json::to_value(c).expect("settings serialise");
        if config_path.exists() && from.is_none() {
            let earlier: serde_json::Value = read_json(&config_path)?;
            if earlier != settings {
                return Err(RlhfError::Resume {
                    path: run_dir,
                    message: "it holds a pipeline run with other settings: choose another output directory, or redo the stages they change with `--from STAGE`".into(),
                });
            }
        }
        if let Some(from) = from {
            for stage in Stage::ALL.into_iter().filter(|s| *s >= from) {
                let dir = run_dir.join(stage.name());
                if dir.exists() {
                    fs::remove_dir_all(&dir).map_err(|e| RlhfError::io(&dir, e))?;
                }
            }
        }
        write_json(&config_path, &settings)?;

        let (tokenizer_path, tokenizer) = self.tokenizer()?;
        let tokenizer_file = TokenizerFile::read(&tokenizer_path)?;
        let ctx = StageContext {
            config: c,
            run_dir: run_dir.clone(),
            tokenizer: &tokenizer,
            tokenizer_file: &tokenizer_file,
            stop,
            log_every: self.log_every,
        };

        let mut report = PipelineReport {
            backend: self.backend.clone(),
            scale: self.scale.clone(),
            seed: c.seed,
            stages: Vec::new(),
            held_out: None,
            final_model: "model.bpk".into(),
        };
        for stage in Stage::ALL {
            let done = stage_file(&run_dir, stage);
            if done.exists() {
                let mut earlier: StageReport = read_json(&done)?;
                earlier.skipped = true;
                if stage == Stage::Eval {
                    report.held_out = Some(read_json(&run_dir.join("eval/held_out.json"))?);
                }
                on_stage(&earlier);
                report.stages.push(earlier);
                continue;
            }
            if stop() {
                return Err(RlhfError::StageInterrupted {
                    stage: stage.name(),
                });
            }
            let dir = ctx.dir(stage);
            // A stage that did not finish starts again, except the RLHF stages, which
            // continue from their saved state.
            let resumable = matches!(stage, Stage::RejectionSampling | Stage::Ppo);
            if dir.exists() && !resumable {
                fs::remove_dir_all(&dir).map_err(|e| RlhfError::io(&dir, e))?;
            }
            fs::create_dir_all(&dir).map_err(|e| RlhfError::io(&dir, e))?;
            tracing::info!("stage {} ({})", stage.name(), stage.section());
            let start = Instant::now();
            let mut stage_report = match stage {
                Stage::Pretrain if c.base.is_some() => self.base_stage(),
                Stage::Pretrain => pretrain_stage::<B>(&ctx, device)?,
                Stage::Sft => sft_stage::<B>(&ctx, device)?,
                Stage::RewardHelpfulness | Stage::RewardSafety => {
                    reward_stage::<B>(&ctx, stage, device)?
                }
                Stage::RejectionSampling => rejection_stage::<B>(&ctx, device)?,
                Stage::Ppo => ppo_stage::<B>(&ctx, device)?,
                Stage::Eval => {
                    let (r, held_out) = eval_stage::<B>(&ctx, &report.stages, device)?;
                    self.finish(&ctx, &held_out)?;
                    report.held_out = Some(held_out);
                    r
                }
            };
            stage_report.seconds = start.elapsed().as_secs_f64();
            write_json(&done, &stage_report)?;
            on_stage(&stage_report);
            report.stages.push(stage_report);
            report.write(&run_dir, &plots(&run_dir))?;
        }
        report.write(&run_dir, &plots(&run_dir))?;
        Ok(report)
    }

    /// The tokenizer: the base checkpoint's, else the pipeline's.
    fn tokenizer(&self) -> Result<(PathBuf, Tokenizer), RlhfError> {
        let path = match &self.config.base {
            Some(base) => {
                let base = Path::new(base);
                let found = if base.is_dir() {
                    TokenizerFile::find(base)
                } else {
                    None
                };
                match found {
                    Some(p) => p,
                    None => {
                        return Err(RlhfError::Config(format!(
                            "{}: no tokenizer.model or tokenizer.json beside the base checkpoint",
                            base.display()
                        )));
                    }
                }
            }
            None => Path::new(&self.config.data_dir).join("tokenizer.model"),
        };
        let tokenizer = Tokenizer::from_file(&path)
            .map_err(|e| RlhfError::Config(format!("tokenizer {}: {e}", path.display())))?;
        Ok((path, tokenizer))
    }

    /// The pretraining stage's report with a base checkpoint: nothing to do.
    fn base_stage(&self) -> StageReport {
        StageReport::new(
            Stage::Pretrain,
            crate::pipeline::report::KeyMetric {
                name: "skipped: starts from the base checkpoint".into(),
                before: 0.0,
                after: 0.0,
            },
        )
    }

    /// Writes the held-out report and the final model (the PPO record, copied).
    fn finish(&self, ctx: &StageContext<'_>, held_out: &HeldOutReport) -> Result<(), RlhfError> {
        write_json(&ctx.dir(Stage::Eval).join("held_out.json"), held_out)?;
        let ppo = ctx.dir(Stage::Ppo).join("policy.bpk");
        let bytes = fs::read(&ppo).map_err(|e| RlhfError::io(&ppo, e))?;
        llama2::atomic::write_bytes(&self.final_model(), &bytes)?;
        Ok(())
    }
}

/// The plots of a run that exist, with their titles.
fn plots(run_dir: &Path) -> Vec<(String, String)> {
    [
        ("Held-out reward through RLHF", "eval/rlhf.svg"),
        ("Pretraining", "pretrain/curves.svg"),
        ("Supervised fine-tuning", "sft/curves.svg"),
        ("Helpfulness reward model", "reward-helpfulness/curves.svg"),
        ("Safety reward model", "reward-safety/curves.svg"),
        (
            "Rejection sampling: reward per round",
            "rejection-sampling/rewards.svg",
        ),
        (
            "Rejection sampling: best of N",
            "rejection-sampling/best_of_n.svg",
        ),
        ("PPO", "ppo/ppo.svg"),
    ]
    .into_iter()
    .filter(|(_, p)| run_dir.join(p).exists())
    .map(|(t, p)| (t.to_string(), p.to_string()))
    .collect()
}
