//! Reinforcement learning with human feedback (paper §3.2.3): rejection-sampling fine-tuning
//! and proximal policy optimisation against the reward models of `llama2-reward`, and Ghost
//! Attention (§3.3) for multi-turn consistency.
//!
//! | module | paper | contents |
//! |---|---|---|
//! | [`gatt`] | §3.3 | Ghost Attention data: synthetic instructions, sampling with the instruction on every user turn, examples trained on their last turn |
//!
//! It builds on [`llama2`]; Ghost Attention examples are fine-tuning rows of its SFT dataset.

pub mod gatt;

pub use llama2;
