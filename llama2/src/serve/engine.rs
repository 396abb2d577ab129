//! The generation engine of the server: one thread owns the model and a [`DecodeBatch`];
//! requests arrive on a channel, join the batch at the next step when they fit (first come,
//! first served), and their rows leave when they finish or when the client goes away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use burn::tensor::backend::Backend;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::LlamaConfig;
use crate::generation::{
    Completion, DecodeBatch, GenerationError, GenerationOptions, RowEvent, check_request,
};
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

/// Settings of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rows decoded together (requests × their `n`).
    pub max_batch: usize,
    /// Positions of the shared KV cache, from the model's context to twice it (others are
    /// refused); `None`: twice the context. A request joins a running batch only if its whole length fits before the
    /// window's end.
    pub window: Option<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            window: None,
        }
    }
}

/// What the engine sends back for one request.
#[derive(Debug)]
pub enum EngineEvent {
    /// New final text of choice `index`.
    Text {
        /// The choice.
        index: usize,
        /// The text.
        text: String,
    },
    /// Choice `index` has finished.
    Done {
        /// The choice.
        index: usize,
        /// Its tokens, text, logprobs and finish reason.
        completion: Completion,
    },
    /// The request failed (every unfinished choice with it).
    Failed(String),
}

/// A request for `n` continuations of one prompt.
struct Job {
    prompt: Vec<u32>,
    options: GenerationOptions,
    n: usize,
    events: UnboundedSender<EngineEvent>,
}

/// Counters the server reports on `/health`.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Rows being decoded.
    pub rows: AtomicUsize,
    /// Requests waiting for room in the batch.
    pub waiting: AtomicUsize,
    /// Decode steps run so far.
    pub steps: AtomicUsize,
    /// Most rows decoded together in one step so far.
    pub peak_rows: AtomicUsize,
}

/// A handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    stats: Arc<EngineStats>,
    model_config: LlamaConfig,
    max_batch: usize,
}

impl Engine {
    /// Starts the engine thread, which owns `model` and `tokenizer`.
    pub fn start<B: Backend>(
        model: Llama<B>,
        tokenizer: Arc<Tokenizer>,
        config: EngineConfig,
    ) -> Result<Self, GenerationError> {
        let model_config = model.config.clone();
        let max_seq_len = model_config.max_seq_len;
        let max_batch = config.max_batch.max(1);
        let (min, max) = (max_seq_len, 2 * max_seq_len);
        let window = config.window.unwrap_or(max);
        if !(min..=max).contains(&window) {
            return Err(GenerationError::InvalidWindow { window, min, max });
        }
        // Fail here, not in the thread, on a mismatched tokenizer.
        DecodeBatch::new(&model, &tokenizer, 1, 1)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        let stats = Arc::new(EngineStats::default());
        let thread_stats = stats.clone();
        thread::Builder::new()
            .name("llama2-engine".into())
            .spawn(move || run(model, tokenizer, max_batch, window, inbox, thread_stats))
            .map_err(|e| {
                GenerationError::Backend(format!("cannot start the engine thread: {e}"))
            })?;
        Ok(Self {
            jobs,
            stats,
            model_config,
            max_batch,
        })
    }

    /// Queues `n` continuations of `prompt` (choice `i` samples from random stream `i`);
    /// events arrive on the returned receiver. Dropping the receiver cancels the request.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        options: GenerationOptions,
        n: usize,
    ) -> UnboundedReceiver<EngineEvent> {
        let (events, receiver) = unbounded_channel();
        let job = Job {
            prompt,
            options,
            n,
            events,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            let _ = job.events.send(EngineEvent::Failed(
                "the generation engine has stopped".into(),
            ));
        }
        receiver
    }

    /// The engine's counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The model's context length.
    pub fn max_seq_len(&self) -> usize {
        self.model_config.max_seq_len
    }

    /// Checks prompt `index` of a request and its options against the model before it is
    /// queued (the checks the decode batch makes when the request joins it).
    pub fn check(
        &self,
        prompt: &[u32],
        options: &GenerationOptions,
        index: usize,
    ) -> Result<(), GenerationError> {
        check_request(&self.model_config, prompt, options, index)
    }

    /// Most rows decoded together (the largest `n` a request may ask for).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
}

/// A request being decoded: its rows' ids, in choice order.
struct Active {
    rows: Vec<u64>,
    finished: usize,
    events: UnboundedSender<EngineEvent>,
}

fn run<B: Backend>(
    model: Llama<B>,
    tokenizer: Arc<Tokenizer>,
    max_batch: usize,
    window: usize,
    inbox: mpsc::Receiver<Job>,
    stats: Arc<EngineStats>,
) {
    let mut batch = match DecodeBatch::new(&model, &tokenizer, max_batch, window) {
        Ok(batch) => batch,
        Err(e) => {
            tracing::error!("cannot start the decode batch: {e}");
            return;
        }
    };
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut active: Vec<Active> = Vec::new();
    loop {
        // Block for work only when there is none.
        if batch.is_empty() && waiting.is_empty() {
            match inbox.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        while let Ok(job) = inbox.try_recv() {
            waiting.push_back(job);
        }
        // Requests whose client left.
        waiting.retain(|job| !job.events.is_closed());
        active.retain(|a| {
            if a.events.is_closed() {
                for &id in &a.rows {
                    batch.cancel(id);
                }
                tracing::info!(
                    "request cancelled by the client; {} rows freed",
                    a.rows.len()
                );
                false
            } else {
                true
            }
        });
        // Admit waiting requests in order while they fit.
        while let Some(job) = waiting.front() {
            let free = max_batch - batch.len();
            if job.n > free || !batch.admits(job.prompt.len(), &job.options) {
                break;
            }
            let job = waiting.pop_front().unwrap();
            let mut rows = Vec::with_capacity(job.n);
            let mut failed = None;
            for choice in 0..job.n {
                match batch.add(&job.prompt, &job.options, choice as u64) {
                    Ok(id) => rows.push(id),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                for &id in &rows {
                    batch.cancel(id);
                }
                let _ = job.events.send(EngineEvent::Failed(e.to_string()));
                continue;
            }
            active.push(Active {
                rows,
                finished: 0,
                events: job.events,
            });
        }
        stats.waiting.store(waiting.len(), Ordering::Relaxed);
        stats.rows.store(batch.len(), Ordering::Relaxed);
        stats.peak_rows.fetch_max(batch.len(), Ordering::Relaxed);
        if batch.is_empty() {
            if let Some(job) = waiting.pop_front() {
                // Does not fit even an empty batch: `n` above the batch size.
                let _ = job.events.send(EngineEvent::Failed(format!(
                    "n = {} is more than the server's batch of {max_batch} rows",
                    job.n
                )));
            }
            continue;
        }
        let result = batch.step(&mut |id, event| {
            let Some(a) = active.iter_mut().find(|a| a.rows.contains(&id)) else {
                return;
            };
            let index = a.rows.iter().position(|&r| r == id).unwrap();
            let event = match event {
                RowEvent::Text(text) => EngineEvent::Text {
                    index,
                    text: text.to_string(),
                },
                RowEvent::Done(completion) => {
                    a.finished += 1;
                    EngineEvent::Done { index, completion }
                }
            };
            let _ = a.events.send(event);
        });
        stats.steps.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::error!("decode step failed: {e}");
            for a in active.drain(..) {
                for &id in &a.rows {
                    batch.cancel(id);
                }
                let _ = a.events.send(EngineEvent::Failed(e.to_string()));
            }
            continue;
        }
        active.retain(|a| a.finished < a.rows.len());
        stats.rows.store(batch.len(), Ordering::Relaxed);
    }
}
