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

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::error::GenerationError;
use super::sampling::{Sampler, SamplerConfig, log_softmax};
use crate::chat::{Message, Role, UNSAFE_ERROR, encode_dialog};
use crate::model::Llama;
use crate::tokenizer::{StreamDecoder, Tokenizer};

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
                    prompt_len: e.tokens.len(),
                    finish_reason: FinishReason::Unsafe,
                });
            } else {
                let c = done.next().expect("one completion per safe dialog");
                out.push(ChatCompletion {
                    message: Message::new(Role::Assistant, c.text),
                    tokens: c.tokens,
                    logprobs: c.logprobs,
                    prompt_len: c.prompt_len,
                    finish_reason: c.finish_reason,
                });
            }
        }
        Ok(out)
    }

    fn validate(&self, prompts: &[Vec<u32>], options: &GenerationOptions) -> Result<()> {
        options.sampler.validate()?;
        if options.stop_sequences.iter().any(String::is_empty) {
            return Err(GenerationError::EmptyStopSequence);
        }
        if prompts.is_empty() {
            return Err(GenerationError::NoPrompts);
        }
        let config = &self.model.config;
        for (index, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(GenerationError::EmptyPrompt { index });
            }
            if p.len() > config.max_seq_len {
                return Err(GenerationError::PromptTooLong {
                    index,
                    len: p.len(),
                    max_seq_len: config.max_seq_len,
                });
            }
            if let Some(&id) = p.iter().find(|&&id| id as usize >= config.vocab_size) {
                return Err(GenerationError::TokenOutOfRange {
                    index,
                    id,
                    vocab_size: config.vocab_size,
                });
            }
        }
        Ok(())
    }

    fn run(
        &self,
        prompts: &[Vec<u32>],
        options: &GenerationOptions,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<Vec<Completion>> {
        self.validate(prompts, options)?;
        let config = &self.model.config;
        let vocab = config.vocab_size;
        let bsz = prompts.len();
        let max_gen_len = options
            .max_gen_len
            .unwrap_or(config.max_seq_len.saturating_sub(1));
        let min_prompt = prompts.iter().map(Vec::len).min().unwrap_or(0);
        let max_prompt = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let total_len = config
            .max_seq_len
            .min(max_prompt.saturating_add(max_gen_len));
        let all_logits = options.logprobs && options.echo;

        let mut rows = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Row::new(p, i as u64, self.tokenizer, options))
            .collect::<Result<Vec<_>>>()?;

        for (i, row) in rows.iter_mut().enumerate() {
            for piece in std::mem::take(&mut row.echo_pieces) {
                row.emitted += piece.len();
                on_text(i, &piece);
            }
        }

        let device = self.model.devices().into_iter().next().unwrap_or_default();
        let mut cache = self.model.new_cache(bsz, total_len);
        let mut prev_pos = 0;
        let mut cur_pos = min_prompt;
        // Meta's edge case: every prompt fills the context; one pass for the
        // prompt logprobs only.
        if cur_pos == total_len && all_logits {
            let (logits, n) = self.step(&rows, 0, total_len, true, &mut cache, &device)?;
            for (b, row) in rows.iter_mut().enumerate() {
                row.record_logprobs(&logits[b * n * vocab..(b + 1) * n * vocab], 0, vocab);
            }
        }
        while cur_pos < total_len && rows.iter().any(|r| r.done.is_none()) {
            let full = all_logits && prev_pos == 0;
            let (logits, n) = self.step(&rows, prev_pos, cur_pos, full, &mut cache, &device)?;
            for (b, row) in rows.iter_mut().enumerate() {
                let row_logits = &logits[b * n * vocab..(b + 1) * n * vocab];
                let last = &row_logits[(n - 1) * vocab..];
                if row.done.is_none()
                    && cur_pos >= row.prompt_len
                    && row.generated.len() >= max_gen_len
                {
                    row.finish(FinishReason::Length, &options.stop_sequences, &mut |s| {
                        on_text(b, s)
                    })?;
                }
                let token = if row.done.is_some() {
                    // Finished rows keep being fed (their output is ignored).
                    0
                } else if cur_pos < row.prompt_len {
                    row.seq[cur_pos]
                } else {
                    row.sampler
                        .sample(last)
                        .ok_or_else(|| GenerationError::Backend("empty logits".into()))?
                };
                if row.seq.len() == cur_pos {
                    row.seq.push(token);
                }
                if row.done.is_some() {
                    continue;
                }
                if options.logprobs {
                    let first = cur_pos + 1 - n;
                    let from = if full { 0 } else { n - 1 };
                    for j in from..n {
                        let pos = first + j;
                        if options.echo || pos >= row.prompt_len {
                            let lp = log_softmax(&row_logits[j * vocab..(j + 1) * vocab]);
                            row.set_logprob(pos, lp[row.seq[pos] as usize] as f32);
                        }
                    }
                }
                if cur_pos >= row.prompt_len {
                    let emit = &mut |s: &str| on_text(b, s);
                    row.push_generated(token, options, emit)?;
                    if row.done.is_none()
                        && (row.generated.len() >= max_gen_len || cur_pos + 1 >= total_len)
                    {
                        row.finish(FinishReason::Length, &options.stop_sequences, emit)?;
                    }
                }
            }
            prev_pos = cur_pos;
            cur_pos += 1;
        }
        for (i, row) in rows.iter_mut().enumerate() {
            if row.done.is_none() {
                row.finish(FinishReason::Length, &options.stop_sequences, &mut |s| {
                    on_text(i, s)
                })?;
            }
        }
        Ok(rows
            .into_iter()
            .map(|r| r.into_completion(options))
            .collect())
    }

    /// Runs positions `start .. end` of every row through the model and reads
    /// back the logits of the last position (or of all, when `full`).
    /// Returns the host logits `[batch, n, vocab]` flattened and `n`.
    fn step(
        &self,
        rows: &[Row<'_>],
        start: usize,
        end: usize,
        full: bool,
        cache: &mut crate::KvCache<B>,
        device: &B::Device,
    ) -> Result<(Vec<f32>, usize)> {
        let len = end - start;
        let ids: Vec<i64> = rows
            .iter()
            .flat_map(|r| r.seq[start..end].iter().map(|&t| i64::from(t)))
            .collect();
        let tokens =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows.len(), len]), device);
        let hidden = self.model.hidden_states(tokens, start, Some(cache));
        let [batch, _, dim] = hidden.dims();
        let (hidden, n) = if full {
            (hidden, len)
        } else {
            (hidden.slice([0..batch, len - 1..len, 0..dim]), 1)
        };
        let logits = self
            .model
            .logits(hidden)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| GenerationError::Backend(format!("{e:?}")))?;
        Ok((logits, n))
    }
}

/// The state of one sequence of the batch.
struct Row<'t> {
    prompt_len: usize,
    /// Prompt followed by every token fed so far.
    seq: Vec<u32>,
    sampler: Sampler,
    eos_id: u32,
    /// `logprobs[pos]`: log-probability of `seq[pos]` (0 where not computed).
    logprobs: Vec<f32>,
    generated: Vec<u32>,
    decoder: Option<StreamDecoder<'t>>,
    /// Decoded output text (with the prompt's text when echo is on).
    text: String,
    /// Byte offset in `text` where the generated text starts.
    gen_start: usize,
    /// Byte offset in `text` before each generated token.
    token_starts: Vec<usize>,
    /// Bytes of `text` already streamed.
    emitted: usize,
    /// Byte offset of the stop sequence found in `text`.
    stop_at: Option<usize>,
    done: Option<FinishReason>,
    /// Decoded pieces of the echoed prompt, streamed before generation starts.
    echo_pieces: Vec<String>,
}

impl<'t> Row<'t> {
    fn new(
        prompt: &[u32],
        stream: u64,
        tokenizer: &'t Tokenizer,
        options: &GenerationOptions,
    ) -> Result<Self> {
        let mut decoder = tokenizer.stream_decoder();
        let mut text = String::new();
        let mut echo_pieces = Vec::new();
        if options.echo {
            for &id in prompt {
                let piece = decoder.push(id)?;
                text += &piece;
                if !piece.is_empty() {
                    echo_pieces.push(piece);
                }
            }
        }
        Ok(Self {
            prompt_len: prompt.len(),
            seq: prompt.to_vec(),
            sampler: options.sampler.build_stream(stream)?,
            eos_id: tokenizer.eos_id(),
            logprobs: Vec::new(),
            generated: Vec::new(),
            decoder: Some(decoder),
            gen_start: text.len(),
            text,
            token_starts: Vec::new(),
            emitted: 0,
            stop_at: None,
            done: None,
            echo_pieces,
        })
    }

    fn set_logprob(&mut self, pos: usize, value: f32) {
        if self.logprobs.len() <= pos {
            self.logprobs.resize(pos + 1, 0.0);
        }
        self.logprobs[pos] = value;
    }

    /// Logprobs of positions `start + 1 ..` from logits rows `[n, vocab]`
    /// starting at position `start`.
    fn record_logprobs(&mut self, logits: &[f32], start: usize, vocab: usize) {
        for (j, row) in logits.chunks_exact(vocab).enumerate() {
            let pos = start + j + 1;
            if pos < self.seq.len() {
                let lp = log_softmax(row);
                self.set_logprob(pos, lp[self.seq[pos] as usize] as f32);
            }
        }
    }

    fn push_generated(
        &mut self,
        token: u32,
        options: &GenerationOptions,
        emit: &mut dyn FnMut(&str),
    ) -> Result<()> {
        if options.stop_at_eos && token == self.eos_id {
            return self.finish(FinishReason::Eos, &options.stop_sequences, emit);
        }
        self.generated.push(token);
        self.token_starts.push(self.text.len());
        if let Some(decoder) = self.decoder.as_mut() {
            let piece = decoder.push(token)?;
            self.text.push_str(&piece);
        }
        if self.find_stop(&options.stop_sequences) {
            return self.finish(FinishReason::Stop, &options.stop_sequences, emit);
        }
        let safe =
            self.text.len() - held_back(&self.text[self.gen_start..], &options.stop_sequences);
        self.flush(safe, emit);
        Ok(())
    }

    /// Looks for a stop sequence in the generated text; records where.
    fn find_stop(&mut self, stops: &[String]) -> bool {
        let generated = &self.text[self.gen_start..];
        if let Some(pos) = stops
            .iter()
            .filter_map(|s| generated.find(s.as_str()))
            .min()
        {
            self.stop_at = Some(self.gen_start + pos);
            return true;
        }
        false
    }

    fn flush(&mut self, upto: usize, emit: &mut dyn FnMut(&str)) {
        if upto > self.emitted {
            emit(&self.text[self.emitted..upto]);
            self.emitted = upto;
        }
    }

    fn finish(
        &mut self,
        reason: FinishReason,
        stops: &[String],
        emit: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let mut reason = reason;
        if let Some(decoder) = self.decoder.take() {
            let rest = decoder.finish()?;
            self.text.push_str(&rest);
            if self.stop_at.is_none() && self.find_stop(stops) {
                reason = FinishReason::Stop;
            }
        }
        let end = self.stop_at.unwrap_or(self.text.len());
        self.flush(end, emit);
        self.done = Some(reason);
        Ok(())
    }

    fn into_completion(mut self, options: &GenerationOptions) -> Completion {
        if let Some(stop) = self.stop_at {
            let keep = self.token_starts.iter().take_while(|&&s| s < stop).count();
            self.generated.truncate(keep);
            self.text.truncate(stop);
        }
        let start = if options.echo { 0 } else { self.prompt_len };
        let end = self.prompt_len + self.generated.len();
        let mut tokens = if options.echo {
            self.seq[..self.prompt_len].to_vec()
        } else {
            Vec::new()
        };
        tokens.extend_from_slice(&self.generated);
        let logprobs = options.logprobs.then(|| {
            self.logprobs.resize(end.max(self.logprobs.len()), 0.0);
            self.logprobs[start..end].to_vec()
        });
        Completion {
            tokens,
            text: self.text,
            logprobs,
            prompt_len: self.prompt_len,
            finish_reason: self.done.unwrap_or(FinishReason::Length),
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop
/// sequence (text that may still become a stop sequence and is held back).
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| {
            s.char_indices()
                .map(|(i, _)| i)
                .filter(|&i| i > 0 && text.ends_with(&s[..i]))
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_is_longest_partial_stop() {
        let stops = vec!["\n\nUser:".to_string(), "ab".to_string()];
        assert_eq!(held_back("hello\n\nUs", &stops), 4);
        assert_eq!(held_back("hello a", &stops), 1);
        assert_eq!(held_back("hello", &stops), 0);
        assert_eq!(held_back("héé", &["éx".to_string()]), 2);
    }
}
