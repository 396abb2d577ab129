//! Proximal policy optimisation (paper §3.2.3, "PPO"): the policy maximises the combined
//! reward of the reward models minus a KL penalty to the initial policy.
//!
//! | file | contents |
//! |---|---|
//! | [`advantage`] | KL estimators (k1, k2, k3), the shaped per-token reward, GAE, whitening |
//! | [`loss`] | the clipped surrogate and clipped value losses |
//! | [`model`] | [`PolicyAndValue`]: policy + value model as one module on the training engine |
//! | [`run`] | [`Ppo::run`]: rollouts, advantages, minibatch steps, held-out evaluation, resumable |

pub mod advantage;
pub mod loss;
pub mod model;
pub mod run;

pub use advantage::{AdvantageConfig, Advantages, KlEstimator, gae, token_rewards, whiten_rows};
pub use loss::{PpoLossConfig, PpoLosses, PpoTokens};
pub use model::{PolicyAndValue, PpoBatch, PpoOutput, PpoOutputSync, RolloutItem};
pub use run::{IterationReport, Ppo, PpoConfig, PpoOutcome, paper_ppo_train};
