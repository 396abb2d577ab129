//! A policy on held-out prompts: the mean score of its answers and its KL to a reference.

use burn::tensor::backend::Backend;
use llama2::{Llama, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::error::RlhfError;
use crate::rollout::{
    LlamaResponder, Prompt, Response, ResponseSampler, Scorer, response_logprobs,
};

/// Held-out reward of a policy and its KL to a reference policy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// Mean score of one response per held-out prompt (temperature 1, no nucleus cut).
    pub reward: f64,
    /// Mean over those responses of `Σ_t log π(y_t) − log π_ref(y_t)`: a sampled estimate
    /// of KL(π ‖ π_ref) per response.
    pub kl: f64,
    /// Mean response length in tokens.
    pub response_len: f64,
}

/// One response per prompt from `policy` at temperature 1 drawn with `seed`, scored; and
/// the KL estimate of those responses to `reference`.
pub fn evaluate_policy<B: Backend, S: Scorer>(
    policy: &Llama<B>,
    reference: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[Prompt],
    scorer: &mut S,
    max_gen_len: usize,
    seed: u64,
) -> Result<HeldOut, RlhfError> {
    let mut responder = LlamaResponder::new(policy, tokenizer, 1.0, max_gen_len)?;
    let tokens: Vec<&[u32]> = prompts.iter().map(|p| p.tokens.as_slice()).collect();
    let responses = responder.sample_each(&tokens, 1.0, seed)?;
    let items: Vec<(&Prompt, &Response)> = prompts.iter().zip(&responses).collect();
    let scores = scorer.score(&items)?;
    let rows: Vec<(&[u32], &[u32])> = prompts
        .iter()
        .zip(&responses)
        .filter(|(_, r)| !r.tokens.is_empty())
        .map(|(p, r)| (p.tokens.as_slice(), r.tokens.as_slice()))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let kl = if rows.is_empty() {
        0.0
    } else {
        let now = response_logprobs(policy, &rows, 16)?;
        let before = response_logprobs(reference, &rows, 16)?;
        let per: Vec<f64> = now
            .iter()
            .zip(&before)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).sum())
            .collect();
        mean(&per)
    };
    let lens: Vec<f64> = responses.iter().map(|r| r.tokens.len() as f64).collect();
    Ok(HeldOut {
        reward: mean(&scores),
        kl,
        response_len: mean(&lens),
    })
}
