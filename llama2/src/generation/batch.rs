//! The decode state of a ragged batch that rows join and leave between steps (continuous
//! batching), the engine under [`Generator`](super::Generator) and the chat server.
//!
//! All rows share one KV cache and one clock: a step feeds cache positions
//! `clock .. clock + n` of every row. A row that joins at clock `c` keeps its own positions
//! `0 ..` at cache positions `c ..`; it attends to those only (a per-row mask), and because
//! the rotary embedding makes attention depend on relative positions, it computes what it
//! would alone. As in Meta's `generate`, a step feeds the prompt tokens of rows still inside
//! their prompt (teacher forcing) and samples for the others: the first step of rows that
//! start together feeds their common prompt length at once. A row that joins a running batch
//! at clock `c` reads its prompt but the last token in one pass of its own when it is added
//! (at cache positions `c - k .. c`, as far back as the cache's small write buffer goes: see
//! `prefill`), then goes on with the batch; the rest of a longer prompt is read one token
//! per step.
//!
//! When the last row leaves, the clock goes back to 0. A row is admitted only if its whole
//! length (`min(max_seq_len, prompt + max_gen_len)`) fits before the end of the cache
//! window; otherwise it waits until the batch drains ([`DecodeBatch::admits`]).
//!
//! # Shapes
//!
//! - model input per step: `[rows, n]` (`rows` = highest occupied slot + 1)
//! - logits read back per step: `[rows, vocab_size]` (`[rows, n, vocab_size]` when a row
//!   needs the logprobs of its prompt)

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::error::GenerationError;
use super::generate::{Completion, FinishReason, GenerationOptions};
use super::row::{Row, lengths};
use crate::KvCache;
use crate::config::LlamaConfig;
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

type Result<T> = std::result::Result<T, GenerationError>;

/// Identifies a row of a [`DecodeBatch`], unique over the batch's life.
pub type RowId = u64;

/// What a step produced for one row.
#[derive(Debug)]
pub enum RowEvent<'e> {
    /// Text that is final (the pieces of a row concatenate to its completion's text).
    Text(&'e str),
    /// The row has finished and left the batch.
    Done(Completion),
}

struct Slot<'t> {
    id: RowId,
    /// Cache position of the row's position 0.
    start: usize,
    row: Row<'t>,
}

/// A ragged batch in the middle of decoding.
pub struct DecodeBatch<'a, B: Backend> {
    model: &'a Llama<B>,
    tokenizer: &'a Tokenizer,
    device: B::Device,
    cache: KvCache<B>,
    window: usize,
    clock: usize,
    slots: Vec<Option<Slot<'a>>>,
    next_id: RowId,
}

impl<'a, B: Backend> DecodeBatch<'a, B> {
    /// An empty batch of at most `max_rows` rows whose cache holds `window` positions
    /// (at most the rotary tables' `2 · max_seq_len`).
    pub fn new(
        model: &'a Llama<B>,
        tokenizer: &'a Tokenizer,
        max_rows: usize,
        window: usize,
    ) -> Result<Self> {
        let (m, t) = (model.config.vocab_size, tokenizer.vocab_size());
        if m > t {
            return Err(GenerationError::VocabMismatch {
                model: m,
                tokenizer: t,
            });
        }
        let window = window.clamp(1, 2 * model.config.max_seq_len);
        let max_rows = max_rows.max(1);
        Ok(Self {
            model,
            tokenizer,
            device: model.devices().into_iter().next().unwrap_or_default(),
            cache: model.new_cache(max_rows, window),
            window,
            clock: 0,
            slots: (0..max_rows).map(|_| None).collect(),
            next_id: 0,
        })
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether no row is in the batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a prompt of `prompt_len` tokens with these options would be admitted now.
    pub fn admits(&self, prompt_len: usize, options: &GenerationOptions) -> bool {
        let (_, need) = lengths(prompt_len, options, self.model.config.max_seq_len);
        let clock = if self.is_empty() { 0 } else { self.clock };
        self.slots.iter().any(Option::is_none) && clock + need <= self.window
    }

    /// Checks a prompt and options against the model (the errors [`add`](Self::add) gives);
    /// see [`check_request`].
    pub fn check(&self, prompt: &[u32], options: &GenerationOptions, index: usize) -> Result<()> {
        check_request(&self.model.config, prompt, options, index)
    }

    /// Adds a row at the current clock, reading its prompt at once when the batch is running
    /// (see the module docs); it is fed from the next [`step`](Self::step).
    /// `stream` selects the sampler's random stream (see
    /// [`SamplerConfig::build_stream`](super::SamplerConfig::build_stream)).
    pub fn add(
        &mut self,
        prompt: &[u32],
        options: &GenerationOptions,
        stream: u64,
    ) -> Result<RowId> {
        self.check(prompt, options, 0)?;
        if !self.admits(prompt.len(), options) {
            return Err(GenerationError::BatchFull);
        }
        if self.is_empty() {
            self.clock = 0;
        }
        let mut row = Row::new(
            prompt,
            stream,
            self.tokenizer,
            options,
            self.model.config.max_seq_len,
        )?;
        if row.prompt_len >= row.total_len && !row.wants_prompt_logprobs() {
            // Nothing to generate and nothing to score: ends at the next step unfed.
            row.done = Some(FinishReason::Length);
        }
        let id = self.next_id;
        self.next_id += 1;
        let free = self
            .slots
            .iter()
            .position(Option::is_none)
            .expect("admits() found a free slot");
        let start = self.prefill(free, &row);
        self.slots[free] = Some(Slot { id, start, row });
        Ok(id)
    }

    /// Reads the prompt of a row that joins a running batch in one pass of its own, up to
    /// its last token (which the next step feeds, to sample from its logits): its first
    /// `k` tokens go to cache positions `clock - k .. clock` of its slot, where
    /// `k = min(prompt_len - 1, clock - tail_start)`: positions in the cache's small write
    /// buffer only (a write into the main buffer copies it whole on copy-on-write backends,
    /// which costs more than it saves). Returns the cache position of the row's position 0
    /// (`clock` when nothing was prefilled: the batch is starting, or the row needs its
    /// prompt's logprobs).
    fn prefill(&mut self, slot: usize, row: &super::row::Row<'_>) -> usize {
        let clock = self.clock;
        let room = clock.saturating_sub(self.cache.tail_start());
        let k = row.prompt_len.saturating_sub(1).min(room);
        if k == 0 || row.done.is_some() || row.wants_prompt_logprobs() {
            return clock;
        }
        let start = clock - k;
        let ids: Vec<i64> = row.seq[..k].iter().map(|&t| i64::from(t)).collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, k]), &self.device);
        let mut own = self.model.new_cache(1, clock);
        // Only the keys and values are kept; the hidden states are not read.
        let _ = self
            .model
            .hidden_states_from(tokens, start, Some(&mut own), &[start]);
        self.cache.copy_row_from(&own, 0, slot, start..clock);
        start
    }

    /// Removes a row (a cancelled request); `false` if it is not in the batch.
    pub fn cancel(&mut self, id: RowId) -> bool {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.id == id) {
                *slot = None;
                if self.is_empty() {
                    self.clock = 0;
                }
                return true;
            }
        }
        false
    }

    /// Runs one step: feeds the next positions of every row, samples or teacher-forces the
    /// next token of each, and reports new text and finished rows through `on_event`.
    /// Finished rows leave the batch.
    pub fn step(&mut self, on_event: &mut dyn FnMut(RowId, RowEvent<'_>)) -> Result<()> {
        for slot in self.slots.iter_mut().flatten() {
            for piece in std::mem::take(&mut slot.row.echo_pieces) {
                on_event(slot.id, RowEvent::Text(&piece));
            }
        }
        self.flush_done(on_event);
        let clock = self.clock;
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect();
        let Some(&last) = live.last() else {
            self.clock = 0;
            return Ok(());
        };
        if clock >= self.window {
            // Unreachable for admitted rows (each fits before the window's end); ends them
            // rather than writing past the cache.
            for slot in self.slots.iter_mut().flatten() {
                let id = slot.id;
                slot.row.finish(FinishReason::Length, &mut |s| {
                    on_event(id, RowEvent::Text(s))
                })?;
            }
            self.flush_done(on_event);
            self.clock = 0;
            return Ok(());
        }
        let rows = last + 1;
        // Every live row feeds `n` positions: its prompt tokens while inside the prompt.
        let n = live
            .iter()
            .map(|&i| {
                let s = self.slots[i].as_ref().unwrap();
                s.row.prompt_len.saturating_sub(clock - s.start).max(1)
            })
            .min()
            .unwrap_or(1);
        let n = n.min(self.window - clock);
        let full = n > 1
            && live.iter().any(|&i| {
                let s = self.slots[i].as_ref().unwrap();
                s.row.wants_prompt_logprobs() && clock - s.start + 1 < s.row.prompt_len
            });
        let mut ids = Vec::with_capacity(rows * n);
        let mut first_keys = Vec::with_capacity(rows);
        for slot in &self.slots[..rows] {
            match slot {
                Some(s) => {
                    let at = clock - s.start;
                    ids.extend(s.row.seq[at..at + n].iter().map(|&t| i64::from(t)));
                    first_keys.push(s.start);
                }
                None => {
                    ids.extend(std::iter::repeat_n(0, n));
                    first_keys.push(clock);
                }
            }
        }
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, n]), &self.device);
        let hidden =
            self.model
                .hidden_states_from(tokens, clock, Some(&mut self.cache), &first_keys);
        let dim = hidden.dims()[2];
        let (hidden, per_row) = if full {
            (hidden, n)
        } else {
            (hidden.slice([0..rows, n - 1..n, 0..dim]), 1)
        };
        let logits = self
            .model
            .logits(hidden)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| GenerationError::Backend(format!("{e:?}")))?;
        let vocab = self.model.config.vocab_size;
        self.clock = clock + n;

        for &b in &live {
            let slot = self.slots[b].as_mut().unwrap();
            let id = slot.id;
            let emit = &mut |s: &str| on_event(id, RowEvent::Text(s));
            let row = &mut slot.row;
            let row_logits = &logits[b * per_row * vocab..(b + 1) * per_row * vocab];
            // The position whose token is decided now.
            let cur = clock + n - slot.start;
            if row.done.is_some() {
                continue;
            }
            if cur >= row.prompt_len && row.generated.len() >= row.max_gen_len {
                row.finish(FinishReason::Length, emit)?;
                continue;
            }
            let last = &row_logits[(per_row - 1) * vocab..];
            if cur < row.total_len {
                let token = if cur < row.prompt_len {
                    row.seq[cur]
                } else {
                    row.sample(last)?
                };
                if row.seq.len() == cur {
                    row.seq.push(token);
                }
            }
            if row.options.logprobs {
                let from = if per_row == n { 0 } else { n - 1 };
                for j in from..n {
                    let pos = cur + 1 + j - n;
                    if pos < row.seq.len() && (row.options.echo || pos >= row.prompt_len) {
                        let offset = (j + per_row - n) * vocab;
                        row.record_logprob(pos, &row_logits[offset..offset + vocab]);
                    }
                }
            }
            if cur >= row.total_len {
                // A prompt that fills the context, fed for its logprobs only.
                row.finish(FinishReason::Length, emit)?;
                continue;
            }
            if cur >= row.prompt_len {
                let token = row.seq[cur];
                row.push_generated(token, emit)?;
            }
            if row.done.is_none()
                && (cur + 1 >= row.total_len
                    || (cur >= row.prompt_len && row.generated.len() >= row.max_gen_len))
            {
                row.finish(FinishReason::Length, emit)?;
            }
        }
        self.flush_done(on_event);
        if self.is_empty() {
            self.clock = 0;
        }
        Ok(())
    }

    /// Reports and removes finished rows.
    fn flush_done(&mut self, on_event: &mut dyn FnMut(RowId, RowEvent<'_>)) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.row.done.is_some()) {
                let s = slot.take().unwrap();
                on_event(s.id, RowEvent::Done(s.row.into_completion()));
            }
        }
    }
}

/// Checks a request against a model's configuration before any work: sampling parameters,
/// stop sequences, and prompt `index` (not empty, within the context, every id in the
/// vocabulary).
pub fn check_request(
    config: &LlamaConfig,
    prompt: &[u32],
    options: &GenerationOptions,
    index: usize,
) -> Result<()> {
    options.sampler.validate()?;
    if options.stop_sequences.iter().any(String::is_empty) {
        return Err(GenerationError::EmptyStopSequence);
    }
    if prompt.is_empty() {
        return Err(GenerationError::EmptyPrompt { index });
    }
    if prompt.len() > config.max_seq_len {
        return Err(GenerationError::PromptTooLong {
            index,
            len: prompt.len(),
            max_seq_len: config.max_seq_len,
        });
    }
    if let Some(&id) = prompt.iter().find(|&&id| id as usize >= config.vocab_size) {
        return Err(GenerationError::TokenOutOfRange {
            index,
            id,
            vocab_size: config.vocab_size,
        });
    }
    Ok(())
}
