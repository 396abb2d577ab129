//! Typed errors of rejection sampling, PPO and the safety evaluation.

use std::path::PathBuf;

use llama2::generation::GenerationError;
use llama2::train::TrainError;
use llama2_import::ImportError;
use llama2_reward::RewardError;

/// Why an RLHF run cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RlhfError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A malformed row of a JSONL file (prompts, samples, archive).
    #[error("{}:{line}: {message}", path.display())]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },

    /// A prompt file without prompts.
    #[error("{}: no prompts", path.display())]
    NoPrompts {
        /// The file.
        path: PathBuf,
    },

    /// A prompt that leaves no room for an answer in the policy's context.
    #[error(
        "prompt {id} is {len} tokens; the policy's context of {max_seq_len} leaves no room for an answer"
    )]
    PromptTooLong {
        /// The prompt's id.
        id: String,
        /// Its length in tokens.
        len: usize,
        /// The policy's context.
        max_seq_len: usize,
    },

    /// Two models that must agree (policy, sampler, reward and value models) do not.
    #[error("{what}: {detail}")]
    Mismatch {
        /// Which models.
        what: &'static str,
        /// How they differ.
        detail: String,
    },

    /// Settings that cannot run.
    #[error("invalid settings: {0}")]
    Config(String),

    /// Sampling failed.
    #[error(transparent)]
    Generation(#[from] GenerationError),

    /// Scoring with a reward model failed.
    #[error(transparent)]
    Reward(#[from] RewardError),

    /// Fine-tuning or a checkpoint failed.
    #[error(transparent)]
    Train(#[from] TrainError),

    /// LoRA adapters could not be attached.
    #[error(transparent)]
    Lora(#[from] llama2::lora::LoraError),

    /// A model record could not be written or read.
    #[error(transparent)]
    Record(#[from] ImportError),

    /// A scorer failed.
    #[error("scoring: {0}")]
    Scorer(String),

    /// A run directory holds state that does not belong to this run.
    #[error("cannot resume from {}: {message}", path.display())]
    Resume {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        message: String,
    },

    /// Ghost Attention data could not be built.
    #[error(transparent)]
    Gatt(#[from] crate::gatt::GattError),

    /// A reward model could not be trained.
    #[error(transparent)]
    RewardTraining(#[from] llama2_reward::RewardTrainError),

    /// The pipeline was stopped during a stage; the finished stages are kept.
    #[error("stopped during the {stage} stage; run the pipeline again to redo it and go on")]
    StageInterrupted {
        /// The stage's name.
        stage: &'static str,
    },

    /// The run was stopped (its state is saved; `--resume` continues it).
    #[error("stopped; run again with --resume to continue")]
    Interrupted,
}

impl From<llama2::atomic::WriteError> for RlhfError {
    fn from(e: llama2::atomic::WriteError) -> Self {
        Self::io(e.path, e.source)
    }
}

impl RlhfError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
