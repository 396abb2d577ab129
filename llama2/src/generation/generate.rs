//! The generation loop: Meta's `Llama.generate`, `text_completion` and
//! `chat_completion`.
//!
//! A batch of prompts of different lengths is decoded together. As in Meta's
//! reference, the prefix every prompt has (the shortest prompt's length) goes
//! through the model in one call, then one position at a time; at a position
//! still inside a row's prompt the prompt token is kept (teacher forcing) and
//! only rows past their prompt sample. The KV cache holds
//! `min(max_seq_len, longest prompt + max_gen_len)` positions. A row stops at
//! EOS (not included in the output), at a stop sequence (the text is cut
//! before it), after `max_gen_len` new tokens, or at the end of the context.
//!
//! Each row samples from its own random stream (`seed`, stream = row index),
//! and only when it actually samples, so a row's draws do not depend on the
//! other prompts of the batch.
//!
//! Only the last position's logits are computed at each step, except when
//! logprobs are requested together with echo: then the first call computes
//! the logits of every prompt position.
//!
//! # Shapes
//!
//! - model input per step: `[batch, positions]` (`positions` = shortest prompt
//!   length for the first call, then 1)
//! - logits read back per step: `[batch, vocab_size]` (`[batch, positions,
//!   vocab_size]` for the first call with logprobs and echo)

use burn::tensor::backend::Backend;

use super::batch::{DecodeBatch, RowEvent, RowId};
use super::error::GenerationError;
use super::row::lengths;
use super::sampling::SamplerConfig;
use crate::chat::{Message, Role, UNSAFE_ERROR, encode_dialog};
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

type Result<T> = std::result::Result<T, GenerationError>;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    /// Maximum number of new tokens per sequence; `None`: `max_seq_len - 1`,
    /// Meta's default. Generation also stops at the end of the context.
    pub max_gen_len: Option<usize>,
    /// Sampling policy.
    pub sampler: SamplerConfig,
    /// Return the log-probability of each output token.
    pub logprobs: bool,
    /// Include the prompt in the output (tokens, text and logprobs).
    pub echo: bool,
    /// Stop a sequence when it produces EOS (`false`: EOS is an ordinary token).
    pub stop_at_eos: bool,
    /// Extra stop strings, matched on the decoded generated text; the text is
    /// cut before the first match.
    pub stop_sequences: Vec<String>,
    /// With `logprobs`: also return this many most likely tokens at each position.
    pub top_logprobs: usize,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self {
            max_gen_len: None,
            sampler: SamplerConfig::default(),
            logprobs: false,
            echo: false,
            stop_at_eos: true,
            stop_sequences: Vec::new(),
            top_logprobs: 0,
        }
    }
}

impl GenerationOptions {
    /// At most `max_gen_len` new tokens, Meta's default sampling.
    pub fn new(max_gen_len: usize) -> Self {
        Self {
            max_gen_len: Some(max_gen_len),
            ..Self::default()
        }
    }

    /// Greedy decoding of at most `max_gen_len` new tokens.
    pub fn greedy(max_gen_len: usize) -> Self {
        Self::new(max_gen_len).with_sampler(SamplerConfig::greedy())
    }

    /// With at most `n` new tokens.
    pub fn with_max_gen_len(mut self, n: usize) -> Self {
        self.max_gen_len = Some(n);
        self
    }

    /// With another sampling policy.
    pub fn with_sampler(mut self, sampler: SamplerConfig) -> Self {
        self.sampler = sampler;
        self
    }

    /// With or without logprobs.
    pub fn with_logprobs(mut self, logprobs: bool) -> Self {
        self.logprobs = logprobs;
        self
    }

    /// With or without the prompt in the output.
    pub fn with_echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// Whether EOS ends a sequence.
    pub fn with_stop_at_eos(mut self, stop: bool) -> Self {
        self.stop_at_eos = stop;
        self
    }

    /// With the `k` most likely tokens at each position (and `logprobs` on when `k > 0`).
    pub fn with_top_logprobs(mut self, k: usize) -> Self {
        self.top_logprobs = k;
        self.logprobs |= k > 0;
        self
    }

    /// With extra stop strings.
    pub fn with_stop_sequences(
        mut self,
        stops: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.stop_sequences = stops.into_iter().map(Into::into).collect();
        self
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced EOS.
    Eos,
    /// A stop sequence appeared in the text.
    Stop,
    /// `max_gen_len` new tokens, or the end of the context.
    Length,
    /// A chat dialog contained special tags; nothing was generated and the
    /// answer is Meta's [`UNSAFE_ERROR`].
    Unsafe,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Output ids: the new tokens (after the prompt when echo is on), without
    /// EOS and without the tokens that start at or after a stop sequence.
    pub tokens: Vec<u32>,
    /// `tokens` decoded (cut before a stop sequence).
    pub text: String,
    /// `log p(token | previous tokens)` for each of `tokens`, when requested.
    /// The first prompt token has no prediction and gets 0, as in Meta's code.
    pub logprobs: Option<Vec<f32>>,
    /// The [`GenerationOptions::top_logprobs`] most likely `(id, logprob)` at each position of
    /// `tokens`, most likely first, when requested.
    pub top_logprobs: Option<Vec<Vec<(u32, f32)>>>,
    /// Length of the prompt in tokens.
    pub prompt_len: usize,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

/// One chat answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCompletion {
    /// The assistant message (Meta's `UNSAFE_ERROR` for a dialog with special tags).
    pub message: Message,
    /// Output ids, as in [`Completion::tokens`] (empty for an unsafe dialog).
    pub tokens: Vec<u32>,
    /// As in [`Completion::logprobs`].
    pub logprobs: Option<Vec<f32>>,
    /// As in [`Completion::top_logprobs`].
    pub top_logprobs: Option<Vec<Vec<(u32, f32)>>>,
    /// Length of the encoded dialog in tokens.
    pub prompt_len: usize,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

/// A model with its tokenizer, ready to generate.
#[derive(Debug)]
pub struct Generator<'a, B: Backend> {
    model: &'a Llama<B>,
    tokenizer: &'a Tokenizer,
}

impl<'a, B: Backend> Generator<'a, B> {
    /// Pairs a model with a tokenizer whose vocabulary covers the model's.
    pub fn new(model: &'a Llama<B>, tokenizer: &'a Tokenizer) -> Result<Self> {
        let (m, t) = (model.config.vocab_size, tokenizer.vocab_size());
        if m > t {
            return Err(GenerationError::VocabMismatch {
                model: m,
                tokenizer: t,
            });
        }
        Ok(Self { model, tokenizer })
    }

    /// The model.
    pub fn model(&self) -> &'a Llama<B> {
        self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &'a Tokenizer {
        self.tokenizer
    }

    /// Generates from token-id prompts (Meta's `generate`).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        options: &GenerationOptions,
    ) -> Result<Vec<Completion>> {
        self.generate_streaming(prompts, options, |_, _| {})
    }

    /// [`generate`](Self::generate), calling `on_text(row, piece)` with each
    /// piece of text as soon as it is final. The pieces of a row concatenate to
    /// its [`Completion::text`].
    pub fn generate_streaming(
        &self,
        prompts: &[Vec<u32>],
        options: &GenerationOptions,
        mut on_text: impl FnMut(usize, &str),
    ) -> Result<Vec<Completion>> {
        self.run(prompts, options, &mut on_text)
    }

    /// Completes text prompts, each encoded with BOS (Meta's `text_completion`).
    pub fn text_completion(
        &self,
        prompts: &[String],
        options: &GenerationOptions,
    ) -> Result<Vec<Completion>> {
        self.text_completion_streaming(prompts, options, |_, _| {})
    }

    /// [`text_completion`](Self::text_completion) with streaming, as in
    /// [`generate_streaming`](Self::generate_streaming).
    pub fn text_completion_streaming(
        &self,
        prompts: &[String],
        options: &GenerationOptions,
        mut on_text: impl FnMut(usize, &str),
    ) -> Result<Vec<Completion>> {
        let ids = prompts
            .iter()
            .map(|p| self.tokenizer.encode(p, true, false))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.run(&ids, options, &mut on_text)
    }

    /// Answers dialogs in the Llama 2-Chat format (Meta's `chat_completion`).
    /// Dialogs containing special tags are not run; their answer is
    /// [`UNSAFE_ERROR`].
    pub fn chat_completion(
        &self,
        dialogs: &[Vec<Message>],
        options: &GenerationOptions,
    ) -> Result<Vec<ChatCompletion>> {
        self.chat_completion_streaming(dialogs, options, |_, _| {})
    }

    /// [`chat_completion`](Self::chat_completion) with streaming; an unsafe
    /// dialog streams its error text.
    pub fn chat_completion_streaming(
        &self,
        dialogs: &[Vec<Message>],
        options: &GenerationOptions,
        mut on_text: impl FnMut(usize, &str),
    ) -> Result<Vec<ChatCompletion>> {
        if dialogs.is_empty() {
            return Err(GenerationError::NoPrompts);
        }
        let mut encoded = Vec::with_capacity(dialogs.len());
        for (index, dialog) in dialogs.iter().enumerate() {
            let e = encode_dialog(self.tokenizer, dialog)
                .map_err(|source| GenerationError::Chat { index, source })?;
            encoded.push(e);
        }
        let safe: Vec<usize> = (0..dialogs.len())
            .filter(|&i| !encoded[i].unsafe_tags)
            .collect();
        let prompts: Vec<Vec<u32>> = safe.iter().map(|&i| encoded[i].tokens.clone()).collect();
        let mut done = if prompts.is_empty() {
            Vec::new()
        } else {
            self.run(&prompts, options, &mut |row, piece| {
                on_text(safe[row], piece)
            })?
        }
        .into_iter();
        let mut out = Vec::with_capacity(dialogs.len());
        for (i, e) in encoded.iter().enumerate() {
            if e.unsafe_tags {
                on_text(i, UNSAFE_ERROR);
                out.push(ChatCompletion {
                    message: Message::new(Role::Assistant, UNSAFE_ERROR),
                    tokens: Vec::new(),
                    logprobs: options.logprobs.then(Vec::new),
                    top_logprobs: (options.logprobs && options.top_logprobs > 0).then(Vec::new),
                    prompt_len: e.tokens.len(),
                    finish_reason: FinishReason::Unsafe,
                });
            } else {
                let c = done.next().expect("one completion per safe dialog");
                out.push(ChatCompletion {
                    message: Message::new(Role::Assistant, c.text),
                    tokens: c.tokens,
                    logprobs: c.logprobs,
                    top_logprobs: c.top_logprobs,
                    prompt_len: c.prompt_len,
                    finish_reason: c.finish_reason,
                });
            }
        }
        Ok(out)
    }

    fn run(
        &self,
        prompts: &[Vec<u32>],
        options: &GenerationOptions,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<Vec<Completion>> {
        if prompts.is_empty() {
            return Err(GenerationError::NoPrompts);
        }
        // The cache holds the longest sequence.
        let max_seq_len = self.model.config.max_seq_len;
        let window = prompts
            .iter()
            .map(|p| lengths(p.len(), options, max_seq_len).1)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut batch = DecodeBatch::new(self.model, self.tokenizer, prompts.len(), window)?;
        for (index, p) in prompts.iter().enumerate() {
            batch.check(p, options, index)?;
        }
        let mut ids = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            ids.push(batch.add(p, options, i as u64)?);
        }
        let mut done: Vec<Option<Completion>> = vec![None; prompts.len()];
        // Row ids are given in order from 0, so an id is the prompt's index.
        let index = |id: RowId| (id - ids[0]) as usize;
        while !batch.is_empty() {
            batch.step(&mut |id, event| match event {
                RowEvent::Text(piece) => on_text(index(id), piece),
                RowEvent::Done(c) => done[index(id)] = Some(c),
            })?;
        }
        Ok(done
            .into_iter()
            .map(|c| c.expect("every row finishes"))
            .collect())
    }
}
