//! Reward modelling (paper §3.2.2): reward models initialised from a Llama 2 checkpoint whose
//! output head is replaced by a scalar regression head, trained on human preference pairs with
//! the binary ranking loss plus the preference-strength margin.
//!
//! This crate is the home of that part of the recipe; it builds on [`llama2`].

pub use llama2;
