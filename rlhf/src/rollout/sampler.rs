//! Where responses come from: the policy itself, or another model (the paper samples with
//! the 70B model and fine-tunes smaller ones on its best answers).
//!
//! A request is `k` responses to one prompt with one seed; response `i` draws from ChaCha
//! stream `i` of that seed, so a request gives the same responses however the prompts of a
//! run are ordered, batched or resumed.

use burn::tensor::backend::Backend;
use llama2::chat::SPECIAL_TAGS;
use llama2::generation::{FinishReason, GenerationOptions, Generator, SamplerConfig};
use llama2::{Llama, Tokenizer};

use crate::error::RlhfError;

/// One sampled response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The response's tokens as sampled, followed by EOS when the model ended it.
    pub tokens: Vec<u32>,
    /// The answer text (cut before a reserved chat tag).
    pub text: String,
    /// Whether the model produced EOS.
    pub ended: bool,
}

/// Samples responses to encoded prompts.
pub trait ResponseSampler {
    /// `k` responses to `prompt` (Llama 2-Chat tokens, open after `[/INST]`) at
    /// `temperature` (0: greedy), drawn with `seed`.
    fn sample(
        &mut self,
        prompt: &[u32],
        k: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<Response>, RlhfError>;

    /// One response to each of `prompts`, drawn with `seed` (the default asks
    /// [`sample`](Self::sample) prompt by prompt with seeds derived from `seed`).
    fn sample_each(
        &mut self,
        prompts: &[&[u32]],
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<Response>, RlhfError> {
        let mut out = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            let seed = crate::rollout::request_seed(seed, 0, i as u64);
            out.extend(self.sample(p, 1, temperature, seed)?);
        }
        Ok(out)
    }
}

/// [`ResponseSampler`] over a Llama model: batched generation with the KV cache, nucleus
/// sampling (`top_p`), at most `max_gen_len` new tokens, the reserved chat tags as stop
/// sequences.
#[derive(Debug)]
pub struct LlamaResponder<'a, B: Backend> {
    generator: Generator<'a, B>,
    /// Nucleus sampling threshold (1: the whole distribution).
    pub top_p: f64,
    /// Most new tokens per response.
    pub max_gen_len: usize,
}

impl<'a, B: Backend> LlamaResponder<'a, B> {
    /// A responder on `model` and its tokenizer.
    pub fn new(
        model: &'a Llama<B>,
        tokenizer: &'a Tokenizer,
        top_p: f64,
        max_gen_len: usize,
    ) -> Result<Self, RlhfError> {
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(RlhfError::Config(format!("top-p {top_p} is not in (0, 1]")));
        }
        if max_gen_len == 0 {
            return Err(RlhfError::Config("max_gen_len is 0".into()));
        }
        Ok(Self {
            generator: Generator::new(model, tokenizer)?,
            top_p,
            max_gen_len,
        })
    }
}

impl<B: Backend> ResponseSampler for LlamaResponder<'_, B> {
    fn sample(
        &mut self,
        prompt: &[u32],
        k: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<Response>, RlhfError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let prompts = vec![prompt; k];
        self.sample_each(&prompts, temperature, seed)
    }

    /// One batched generation: row `i` draws from ChaCha stream `i` of `seed`.
    fn sample_each(
        &mut self,
        prompts: &[&[u32]],
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<Response>, RlhfError> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let sampler = if temperature <= 0.0 {
            SamplerConfig::greedy()
        } else {
            SamplerConfig::new(temperature as f32, self.top_p as f32)
        }
        .with_seed(seed);
        let options = GenerationOptions::new(self.max_gen_len)
            .with_sampler(sampler)
            .with_stop_sequences(SPECIAL_TAGS.iter().copied());
        let prompts: Vec<Vec<u32>> = prompts.iter().map(|p| p.to_vec()).collect();
        let eos = self.generator.tokenizer().eos_id();
        let completions = self.generator.generate(&prompts, &options)?;
        Ok(completions
            .into_iter()
            .map(|c| {
                let ended = c.finish_reason == FinishReason::Eos;
                let mut tokens = c.tokens;
                if ended {
                    tokens.push(eos);
                }
                Response {
                    tokens,
                    text: c.text.trim().to_string(),
                    ended,
                }
            })
            .collect())
    }
}
