//! Scores of sampled responses: the reward models of `llama2-reward` (helpfulness alone,
//! or helpfulness and safety combined as in §3.2.3), or a rule a program checks.

use burn::tensor::backend::Backend;
use llama2_reward::combine::sigmoid;
use llama2_reward::{CombineConfig, RewardModel};

use crate::error::RlhfError;
use crate::rollout::prompts::Prompt;
use crate::rollout::sampler::Response;

/// Scores responses; a higher score is a better response.
pub trait Scorer {
    /// Names the scorer in archives and logs (e.g. the reward model's file).
    fn id(&self) -> String;

    /// The score of each `(prompt, response)`.
    fn score(&mut self, items: &[(&Prompt, &Response)]) -> Result<Vec<f64>, RlhfError>;
}

impl<S: Scorer + ?Sized> Scorer for &mut S {
    fn id(&self) -> String {
        (**self).id()
    }

    fn score(&mut self, items: &[(&Prompt, &Response)]) -> Result<Vec<f64>, RlhfError> {
        (**self).score(items)
    }
}

/// A rule-based score: `rule(prompt, response)`, e.g. whether the answer holds a computed
/// value. No reward model computes it, so it cross-checks one.
pub struct RuleScorer<F> {
    name: String,
    rule: F,
}

impl<F: FnMut(&Prompt, &Response) -> f64> RuleScorer<F> {
    /// A scorer named `name` computing `rule`.
    pub fn new(name: impl Into<String>, rule: F) -> Self {
        Self {
            name: name.into(),
            rule,
        }
    }
}

impl<F: FnMut(&Prompt, &Response) -> f64> Scorer for RuleScorer<F> {
    fn id(&self) -> String {
        self.name.clone()
    }

    fn score(&mut self, items: &[(&Prompt, &Response)]) -> Result<Vec<f64>, RlhfError> {
        Ok(items.iter().map(|(p, r)| (self.rule)(p, r)).collect())
    }
}

/// The reward models' score of each response, on the logit scale:
///
/// - helpfulness only: the raw score `r_h` (the logit of `σ(r_h)`);
/// - with a safety model: `LOGIT(R_c)` of the paper's eq. 3, where `R_c` is the safety
///   score `σ(r_s)` on safety prompts or when it is below the threshold, else `σ(r_h)`.
///
/// The sequence scored is the prompt's tokens, the response's tokens and EOS (added when
/// the response did not end), the way the reward models were trained on completed
/// dialogs; a sequence longer than the reward model's context keeps BOS and its last
/// tokens. Whitening, where wanted (PPO), is applied to these values by the caller.
pub struct RewardScorer<'a, B: Backend> {
    /// The helpfulness reward model.
    pub helpfulness: &'a RewardModel<B>,
    /// The safety reward model, if any.
    pub safety: Option<&'a RewardModel<B>>,
    /// The gate and logit settings.
    pub combine: CombineConfig,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// The tokenizer's EOS id.
    pub eos_id: u32,
    /// Names the models in archives.
    pub name: String,
}

impl<'a, B: Backend> RewardScorer<'a, B> {
    /// A scorer on the helpfulness model and, optionally, the safety model; both must have
    /// the vocabulary `vocab_size` of the policy.
    pub fn new(
        helpfulness: &'a RewardModel<B>,
        safety: Option<&'a RewardModel<B>>,
        vocab_size: usize,
        eos_id: u32,
        name: impl Into<String>,
    ) -> Result<Self, RlhfError> {
        for (which, model) in [("helpfulness", Some(helpfulness)), ("safety", safety)] {
            let Some(model) = model else { continue };
            let theirs = model.trunk.config.vocab_size;
            if theirs != vocab_size {
                return Err(RlhfError::Mismatch {
                    what: "reward model and policy",
                    detail: format!(
                        "the {which} reward model has a vocabulary of {theirs} tokens, the policy {vocab_size}: they were not made with the same tokenizer"
                    ),
                });
            }
        }
        Ok(Self {
            helpfulness,
            safety,
            combine: CombineConfig::new(),
            batch_size: 16,
            eos_id,
            name: name.into(),
        })
    }

    fn sequences(&self, items: &[(&Prompt, &Response)], max: usize) -> Vec<Vec<u32>> {
        items
            .iter()
            .map(|(p, r)| {
                let mut seq = p.tokens.clone();
                seq.extend_from_slice(&r.tokens);
                if !r.ended {
                    seq.push(self.eos_id);
                }
                if seq.len() > max {
                    let tail = seq.len() - (max - 1);
                    let mut kept = vec![seq[0]];
                    kept.extend_from_slice(&seq[tail..]);
                    seq = kept;
                }
                seq
            })
            .collect()
    }
}

impl<B: Backend> Scorer for RewardScorer<'_, B> {
    fn id(&self) -> String {
        self.name.clone()
    }

    fn score(&mut self, items: &[(&Prompt, &Response)]) -> Result<Vec<f64>, RlhfError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let max = self.helpfulness.trunk.rope.max_positions();
        let seqs = self.sequences(items, max);
        let help: Vec<f64> = self
            .helpfulness
            .score_sequences(&seqs, self.batch_size)?
            .into_iter()
            .map(f64::from)
            .collect();
        let Some(safety) = self.safety else {
            return Ok(help);
        };
        let max = safety.trunk.rope.max_positions();
        let seqs = self.sequences(items, max);
        let safe: Vec<f64> = safety
            .score_sequences(&seqs, self.batch_size)?
            .into_iter()
            .map(|s| sigmoid(f64::from(s)))
            .collect();
        let help: Vec<f64> = help.into_iter().map(sigmoid).collect();
        let flags: Vec<bool> = items.iter().map(|(p, _)| p.is_safety).collect();
        Ok(self.combine.combined_logits(&help, &safe, &flags))
    }
}
