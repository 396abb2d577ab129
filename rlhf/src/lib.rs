//! Reinforcement learning with human feedback (paper §3.2.3): rejection-sampling fine-tuning
//! and proximal policy optimisation against the reward models of `llama2-reward`, and Ghost
//! Attention (§3.3) for multi-turn consistency.
//!
//! This crate is the home of that part of the recipe; it builds on [`llama2`].

pub use llama2;
