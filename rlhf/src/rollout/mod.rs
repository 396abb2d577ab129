//! What RLHF samples and scores, shared by rejection sampling and PPO.
//!
//! | file | contents |
//! |---|---|
//! | [`prompts`] | [`Prompt`]: prompt JSONL, encoded in the Llama 2-Chat format |
//! | [`sampler`] | [`ResponseSampler`], [`LlamaResponder`]: `k` seeded responses per prompt |
//! | [`scorer`] | [`Scorer`]: reward models (helpfulness, safety gate) or a rule |
//! | [`batch`] | [`ResponseBatch`]: prompt ‖ response rows, per-token log-probabilities |
//! | [`eval`] | [`evaluate_policy`]: held-out reward and KL to a reference |

pub mod batch;
pub mod eval;
pub mod prompts;
pub mod sampler;
pub mod scorer;

pub use batch::{ResponseBatch, response_logprobs};
pub use eval::{HeldOut, evaluate_policy};
pub use prompts::{Prompt, check_fits, read_prompts};
pub use sampler::{LlamaResponder, Response, ResponseSampler};
pub use scorer::{RewardScorer, RuleScorer, Scorer};

/// SplitMix64's output function: decorrelates consecutive seeds.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of request `index` of stage `stage` of a run seeded `seed`.
pub fn request_seed(seed: u64, stage: u64, index: u64) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(stage)) ^ index)
}
