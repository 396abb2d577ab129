//! Reinforcement learning with human feedback (paper §3.2.3): rejection-sampling fine-tuning
//! and proximal policy optimisation against the reward models of `llama2-reward`, and Ghost
//! Attention (§3.3) for multi-turn consistency.
//!
//! | module | paper | contents |
//! |---|---|---|
//! | [`rollout`] | §3.2.3 | prompts, `K` seeded responses per prompt, scores from the reward models or a rule |
//! | [`rejection`] | §3.2.3 | rejection-sampling fine-tuning with the archive of the best samples |
//! | [`ppo`] | §3.2.3 | PPO: KL-shaped rewards, GAE, clipped losses, policy and value on the training engine |
//! | [`safety`] | §4.4 | red-team violation rate per category beside the helpfulness score |
//! | [`gatt`] | §3.3 | Ghost Attention data: synthetic instructions, sampling with the instruction on every user turn, examples trained on their last turn |
//! | [`pipeline`] | §2–§4 | the whole recipe in one run: pretraining → SFT → reward models → rejection sampling → PPO → evaluation |
//! | [`jsonl`] | — | run files: JSON and JSONL written atomically, read with file and line in errors |
//! | [`error`] | — | [`RlhfError`] |
//!
//! It builds on [`llama2`] (generation, the training engine) and [`llama2_reward`] (the
//! reward models and their combination); Ghost Attention examples are fine-tuning rows of
//! the SFT dataset.

pub mod error;
pub mod gatt;
pub mod jsonl;
pub mod pipeline;
pub mod ppo;
pub mod rejection;
pub mod rollout;
pub mod safety;

pub use error::RlhfError;

pub use llama2;
pub use llama2_reward;
