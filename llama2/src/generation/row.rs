//! One sequence being generated: its tokens, sampler, decoded text, stop-sequence search
//! and logprobs. Positions here are the sequence's own (0 = its first prompt token),
//! whatever cache positions the batch gives it.

use super::error::GenerationError;
use super::generate::{Completion, FinishReason, GenerationOptions};
use super::sampling::{Sampler, log_softmax};
use crate::tokenizer::{StreamDecoder, Tokenizer};

type Result<T> = std::result::Result<T, GenerationError>;

/// The state of one sequence of a batch.
pub(crate) struct Row<'t> {
    pub(crate) options: GenerationOptions,
    pub(crate) prompt_len: usize,
    /// Most new tokens (`options.max_gen_len`, or the context).
    pub(crate) max_gen_len: usize,
    /// Positions the sequence may use: `min(max_seq_len, prompt_len + max_gen_len)`.
    pub(crate) total_len: usize,
    /// Prompt followed by every token fed so far.
    pub(crate) seq: Vec<u32>,
    sampler: Sampler,
    eos_id: u32,
    /// `logprobs[pos]`: log-probability of `seq[pos]` (0 where not computed).
    logprobs: Vec<f32>,
    /// `top_logprobs[pos]`: the most likely ids at `pos` with their log-probabilities.
    top_logprobs: Vec<Vec<(u32, f32)>>,
    pub(crate) generated: Vec<u32>,
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
    pub(crate) done: Option<FinishReason>,
    /// Decoded pieces of the echoed prompt, streamed before generation starts.
    pub(crate) echo_pieces: Vec<String>,
}

impl<'t> Row<'t> {
    pub(crate) fn new(
        prompt: &[u32],
        stream: u64,
        tokenizer: &'t Tokenizer,
        options: &GenerationOptions,
        max_seq_len: usize,
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
        let (max_gen_len, total_len) = lengths(prompt.len(), options, max_seq_len);
        Ok(Self {
            options: options.clone(),
            prompt_len: prompt.len(),
            max_gen_len,
            total_len,
            seq: prompt.to_vec(),
            sampler: options.sampler.build_stream(stream)?,
            eos_id: tokenizer.eos_id(),
            logprobs: Vec::new(),
            top_logprobs: Vec::new(),
            generated: Vec::new(),
            decoder: Some(decoder),
            gen_start: text.len(),
            token_starts: Vec::new(),
            // The echoed prompt is streamed from `echo_pieces`.
            emitted: text.len(),
            text,
            stop_at: None,
            done: None,
            echo_pieces,
        })
    }

    /// Whether the logits of prompt positions are needed (echoed logprobs).
    pub(crate) fn wants_prompt_logprobs(&self) -> bool {
        self.options.logprobs && self.options.echo
    }

    /// Samples the token at `pos` from the logits of position `pos - 1`.
    pub(crate) fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        self.sampler
            .sample(logits)
            .ok_or_else(|| GenerationError::Backend("empty logits".into()))
    }

    /// Records the logprob of `seq[pos]` from the logits of position `pos - 1`.
    pub(crate) fn record_logprob(&mut self, pos: usize, logits: &[f32]) {
        let Some(&id) = self.seq.get(pos) else {
            return;
        };
        let lp = log_softmax(logits);
        if self.logprobs.len() <= pos {
            self.logprobs.resize(pos + 1, 0.0);
        }
        self.logprobs[pos] = lp[id as usize] as f32;
        let k = self.options.top_logprobs;
        if k > 0 {
            let mut order: Vec<u32> = (0..lp.len() as u32).collect();
            let k = k.min(order.len());
            order.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
                lp[b as usize].total_cmp(&lp[a as usize])
            });
            order.truncate(k);
            order.sort_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]).then(a.cmp(&b)));
            if self.top_logprobs.len() <= pos {
                self.top_logprobs.resize(pos + 1, Vec::new());
            }
            self.top_logprobs[pos] = order
                .into_iter()
                .map(|id| (id, lp[id as usize] as f32))
                .collect();
        }
    }

    pub(crate) fn push_generated(&mut self, token: u32, emit: &mut dyn FnMut(&str)) -> Result<()> {
        if self.options.stop_at_eos && token == self.eos_id {
            return self.finish(FinishReason::Eos, emit);
        }
        self.generated.push(token);
        self.token_starts.push(self.text.len());
        if let Some(decoder) = self.decoder.as_mut() {
            let piece = decoder.push(token)?;
            self.text.push_str(&piece);
        }
        if self.find_stop() {
            return self.finish(FinishReason::Stop, emit);
        }
        let safe =
            self.text.len() - held_back(&self.text[self.gen_start..], &self.options.stop_sequences);
        self.flush(safe, emit);
        Ok(())
    }

    /// Looks for a stop sequence in the generated text; records where.
    fn find_stop(&mut self) -> bool {
        let generated = &self.text[self.gen_start..];
        if let Some(pos) = self
            .options
            .stop_sequences
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

    /// Ends the sequence: decodes what the stream decoder holds back and streams the rest of
    /// the text (up to a stop sequence).
    pub(crate) fn finish(
        &mut self,
        reason: FinishReason,
        emit: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let mut reason = reason;
        if let Some(decoder) = self.decoder.take() {
            let rest = decoder.finish()?;
            self.text.push_str(&rest);
            if self.stop_at.is_none() && self.find_stop() {
                reason = FinishReason::Stop;
            }
        }
        let end = self.stop_at.unwrap_or(self.text.len());
        self.flush(end, emit);
        self.done = Some(reason);
        Ok(())
    }

    pub(crate) fn into_completion(mut self) -> Completion {
        if let Some(stop) = self.stop_at {
            let keep = self.token_starts.iter().take_while(|&&s| s < stop).count();
            self.generated.truncate(keep);
            self.text.truncate(stop);
        }
        let echo = self.options.echo;
        let start = if echo { 0 } else { self.prompt_len };
        let end = self.prompt_len + self.generated.len();
        let mut tokens = if echo {
            self.seq[..self.prompt_len].to_vec()
        } else {
            Vec::new()
        };
        tokens.extend_from_slice(&self.generated);
        let logprobs = self.options.logprobs.then(|| {
            self.logprobs.resize(end.max(self.logprobs.len()), 0.0);
            self.logprobs[start..end].to_vec()
        });
        let top_logprobs = (self.options.logprobs && self.options.top_logprobs > 0).then(|| {
            self.top_logprobs
                .resize(end.max(self.top_logprobs.len()), Vec::new());
            self.top_logprobs[start..end].to_vec()
        });
        Completion {
            tokens,
            text: self.text,
            logprobs,
            top_logprobs,
            prompt_len: self.prompt_len,
            finish_reason: self.done.unwrap_or(FinishReason::Length),
        }
    }
}

/// A sequence's most new tokens (`options.max_gen_len`, else the context less one, Meta's
/// default) and the positions it may use, `min(max_seq_len, prompt_len + max_gen_len)`.
pub(crate) fn lengths(
    prompt_len: usize,
    options: &GenerationOptions,
    max_seq_len: usize,
) -> (usize, usize) {
    let max_gen_len = options.max_gen_len.unwrap_or(max_seq_len.saturating_sub(1));
    (
        max_gen_len,
        max_seq_len.min(prompt_len.saturating_add(max_gen_len)),
    )
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
