//! [`AssistantSampler`] over a Llama 2-Chat model: Meta's `chat_completion`
//! ([`Generator::chat_completion`]) on a [`Llama`] and its [`Tokenizer`].
//!
//! The reserved chat tags are stop sequences, so a sampled answer never holds
//! one (it is cut before the tag) and the next turn's context stays a valid
//! Llama 2-Chat dialog. Each call draws from its own random stream: request
//! `n` (0, 1, …) samples with the seed `splitmix64(seed + n)`, and within a
//! request dialog `i` on ChaCha stream `i`, so a run is reproducible from the
//! seed and the sequence of requests.
//!
//! # Shapes
//!
//! - one request: a batch of `contexts.len()` prompts, each at most
//!   `max_seq_len - 1` tokens

use burn::tensor::backend::Backend;
use llama2::chat::{Message, SPECIAL_TAGS, encode_dialog};
use llama2::generation::{GenerationError, GenerationOptions, Generator};
use llama2::{Llama, Tokenizer};

use super::error::SamplerError;
use super::sampler::AssistantSampler;

/// Samples answers from a Llama 2-Chat model.
#[derive(Debug)]
pub struct LlamaSampler<'a, B: Backend> {
    generator: Generator<'a, B>,
    options: GenerationOptions,
    requests: u64,
}

impl<'a, B: Backend> LlamaSampler<'a, B> {
    /// A sampler generating with `options` (the reserved chat tags are added
    /// to its stop sequences; its seed is the run's base seed).
    pub fn new(
        model: &'a Llama<B>,
        tokenizer: &'a Tokenizer,
        options: GenerationOptions,
    ) -> Result<Self, SamplerError> {
        options.sampler.validate()?;
        let generator = Generator::new(model, tokenizer)?;
        let mut options = options;
        for tag in SPECIAL_TAGS {
            if !options.stop_sequences.iter().any(|s| s == tag) {
                options.stop_sequences.push(tag.to_string());
            }
        }
        if options.stop_sequences.iter().any(String::is_empty) {
            return Err(GenerationError::EmptyStopSequence.into());
        }
        Ok(Self {
            generator,
            options,
            requests: 0,
        })
    }

    /// The generation settings in use.
    pub fn options(&self) -> &GenerationOptions {
        &self.options
    }
}

/// SplitMix64's output function: decorrelates consecutive seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<B: Backend> AssistantSampler for LlamaSampler<'_, B> {
    type Error = SamplerError;

    fn next_message(&mut self, context: &[Message]) -> Result<String, SamplerError> {
        let mut answers = self.next_messages(&[context.to_vec()])?;
        Ok(answers.pop().unwrap_or_default())
    }

    fn next_messages(&mut self, contexts: &[Vec<Message>]) -> Result<Vec<String>, SamplerError> {
        let tokenizer = self.generator.tokenizer();
        let max_seq_len = self.generator.model().config.max_seq_len;
        for (index, context) in contexts.iter().enumerate() {
            let encoded = encode_dialog(tokenizer, context)
                .map_err(|source| GenerationError::Chat { index, source })?;
            if encoded.unsafe_tags {
                return Err(SamplerError::SpecialTags { index });
            }
            if encoded.tokens.len() >= max_seq_len {
                return Err(SamplerError::ContextFull {
                    index,
                    len: encoded.tokens.len(),
                    max_seq_len,
                });
            }
        }
        let mut options = self.options.clone();
        options.sampler.seed = splitmix64(self.options.sampler.seed.wrapping_add(self.requests));
        self.requests += 1;
        let answers = self.generator.chat_completion(contexts, &options)?;
        Ok(answers.into_iter().map(|a| a.message.content).collect())
    }
}
