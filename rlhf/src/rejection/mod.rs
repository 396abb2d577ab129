//! Rejection-sampling fine-tuning (paper §3.2.3): sample `K` responses per prompt, keep the
//! best by the reward model — against the best of all earlier rounds — and fine-tune on
//! the kept responses, round after round.
//!
//! | file | contents |
//! |---|---|
//! | [`config`] | [`RejectionSamplingConfig`]: rounds, K, temperature schedule or sweep, fine-tuning |
//! | [`run`] | [`RejectionSampling::run`]: the loop, resumable at prompt granularity |
//! | [`archive`] | [`Archive`]: the best response per prompt over all rounds, a JSONL file |
//! | [`samples`] | the scored responses of a round, appended prompt by prompt |
//! | [`select`] | best-of-K (first on ties), the max / median of N samples |
//! | [`plot`] | reward per round and best-of-N curves as SVG |

pub mod archive;
pub mod config;
pub mod plot;
pub mod run;
pub mod samples;
pub mod select;

pub use archive::{Archive, ArchiveEntry};
pub use config::RejectionSamplingConfig;
pub use run::{RejectionOutcome, RejectionSampling, RoundReport, save_policy};
pub use samples::{PromptSamples, ScoredResponse};
pub use select::{best_of, best_of_n_curve};
