//! # llama2-burn
//!
//! Llama 2 and Llama 2-Chat (Touvron et al., 2023) on the [Burn](https://burn.dev) framework.
//!
//! This facade crate re-exports the workspace members so that a Burn application needs a
//! single dependency:
//!
//! | module | crate | what lives there |
//! |---|---|---|
//! | [`model`] | `llama2` | the architecture (RMSNorm, RoPE, GQA, SwiGLU), configs, KV cache |
//! | [`import`] | `llama2-import` | Meta `.pth` / Hugging Face safetensors in, Burn records and safetensors out |
//! | [`reward`] | `llama2-reward` | reward modelling (helpfulness / safety) |
//! | [`rlhf`] | `llama2-rlhf` | rejection sampling and PPO |
//! | [`backend`] | this crate | the backend chosen by cargo feature |

pub mod backend;

pub use llama2 as model;
pub use llama2_import as import;
pub use llama2_reward as reward;
pub use llama2_rlhf as rlhf;
