//! Reward modelling (paper §3.2.2): reward models initialised from a Llama 2 checkpoint whose
//! output head is replaced by a scalar regression head, trained on human preference pairs with
//! the binary ranking loss plus the preference-strength margin.
//!
//! | module | paper | contents |
//! |---|---|---|
//! | [`model`] | §3.2.2 | [`RewardModel`]: Llama trunk + `dim → 1` score head at the last real token |
//! | [`data`] | §3.2.1 | preference JSONL (TRL columns) in the Llama 2-Chat format |
//! | [`batch`] | — | [`PreferenceBatch`]: chosen and rejected as one right-padded batch |
//! | [`rating`] | Table 27 | preference ratings and the small / large margins |
//! | [`loss`] | eq. 2 | `−log σ(r_c − r_r − m)`, TRL's reward centring |
//! | [`step`] | — | burn-train's `TrainStep` / `InferenceStep` and synced statistics |
//! | [`train`] | §3.2.2 | the reward objective on the training engine, the paper's settings and the tiny default run |
//! | [`metrics`] | Tables 7, 8 | accuracy overall and per rating, [`evaluate`] |
//! | [`combine`] | §3.2.3 | safety / helpfulness gate, logit and whitening for RLHF |
//! | [`file`] | — | reward records and `LlamaForSequenceClassification` directories |
//! | [`error`] | — | [`RewardError`], naming the file and line |

pub mod batch;
pub mod combine;
pub mod data;
pub mod error;
pub mod file;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod rating;
pub mod step;
pub mod train;

pub use llama2;

pub use batch::{PreferenceBatch, PreferenceBatcher};
pub use combine::{CombineConfig, RewardNormalization, RunningStats};
pub use data::{
    EncodedPair, PreferenceDataset, PreferencePair, parse_preferences, read_preferences,
};
pub use error::RewardError;
pub use llama2_import::RewardMeta;
pub use loss::{RankingLoss, RankingLossConfig};
pub use metrics::{RewardMetrics, evaluate};
pub use model::{Padding, RewardModel, RewardModelConfig};
pub use rating::{MarginKind, Rating};
pub use step::{BucketCount, RewardOutput, RewardOutputSync};
pub use train::{RewardTrainConfig, RewardTrainError, train_reward};

#[cfg(test)]
pub(crate) type TestBackend = burn::backend::NdArray<f32, i64>;
