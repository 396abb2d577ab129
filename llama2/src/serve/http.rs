//! The HTTP routes of the OpenAI-compatible server (axum).
//!
//! | route | |
//! |---|---|
//! | `POST /v1/chat/completions` | a Llama 2-Chat dialog answered, whole or streamed |
//! | `POST /v1/completions` | a text (or token-id) prompt continued |
//! | `GET /v1/models` | the one served model |
//! | `GET /health` | status and the engine's counters |

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::engine::{Engine, EngineEvent};
use super::protocol::{
    ApiError, ChatRequest, CompletionRequest, Prompt, Usage, chat_logprobs, choices,
    completion_logprobs, dialog, finish_reason, options,
};
use crate::chat::{UNSAFE_ERROR, encode_dialog};
use crate::generation::Completion;
use crate::tokenizer::Tokenizer;

/// What the routes share.
#[derive(Clone)]
pub struct ServerState {
    engine: Engine,
    tokenizer: Arc<Tokenizer>,
    model_id: Arc<str>,
    created: u64,
}

impl ServerState {
    /// Serves `engine`'s model under the name `model_id`.
    pub fn new(engine: Engine, tokenizer: Arc<Tokenizer>, model_id: impl Into<String>) -> Self {
        Self {
            engine,
            tokenizer,
            model_id: model_id.into().into(),
            created: now(),
        }
    }
}

/// The server's routes.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn request_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let start = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        "{method} {path} → {} in {:.1?}",
        response.status().as_u16(),
        start.elapsed()
    );
    response
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        message: "no such route; the server answers /v1/chat/completions, /v1/completions, \
                  /v1/models and /health"
            .into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

async fn models(State(state): State<ServerState>) -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [{
        "id": &*state.model_id,
        "object": "model",
        "created": state.created,
        "owned_by": "llama2-burn",
        "max_model_len": state.engine.max_seq_len(),
    }]}))
}

async fn health(State(state): State<ServerState>) -> axum::Json<Value> {
    let s = state.engine.stats();
    axum::Json(json!({
        "status": "ok",
        "rows": s.rows.load(Ordering::Relaxed),
        "waiting": s.waiting.load(Ordering::Relaxed),
        "steps": s.steps.load(Ordering::Relaxed),
        "peak_rows": s.peak_rows.load(Ordering::Relaxed),
    }))
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("invalid request body: {e}")))
}

/// Which API a request came through (the shape of its responses).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Completions,
}

/// A request ready for the engine.
struct Prepared {
    api: Api,
    id: String,
    model: String,
    prompt_tokens: usize,
    n: usize,
    stream: bool,
    include_usage: bool,
    echo: bool,
}

impl Prepared {
    /// New tokens of a choice (its tokens less the echoed prompt).
    fn generated(&self, c: &Completion) -> usize {
        let echoed = if self.echo { c.prompt_len } else { 0 };
        c.tokens.len().saturating_sub(echoed)
    }
}

async fn chat(State(state): State<ServerState>, body: Bytes) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(&body)?;
    let messages = dialog(&request.messages)?;
    let encoded = encode_dialog(&state.tokenizer, &messages)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let top = request.top_logprobs.unwrap_or(0);
    if top > 20 {
        return Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs must be in 0..=20",
        ));
    }
    if top > 0 && !request.logprobs {
        return Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    let n = choices(&request.sampling, state.engine.max_batch())?;
    let opts = options(
        &request.sampling,
        encoded.tokens.len(),
        state.engine.max_seq_len(),
        request.logprobs,
        top as usize,
        false,
    )?;
    state
        .engine
        .check(&encoded.tokens, &opts, 0)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let prepared = Prepared {
        api: Api::Chat,
        id: request_id("chatcmpl"),
        model: request.model.unwrap_or_else(|| state.model_id.to_string()),
        prompt_tokens: encoded.tokens.len(),
        n,
        stream: request.sampling.stream,
        include_usage: request
            .sampling
            .stream_options
            .is_some_and(|o| o.include_usage),
        echo: false,
    };
    if encoded.unsafe_tags {
        // Meta's `chat_completion`: a dialog with special tags is not run.
        return Ok(unsafe_answer(&state, prepared));
    }
    let events = state.engine.submit(encoded.tokens, opts, n);
    respond(state, prepared, events).await
}

async fn completions(State(state): State<ServerState>, body: Bytes) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse(&body)?;
    let prompts = match &request.prompt {
        Prompt::Text(text) => vec![encode(&state, text)?],
        Prompt::Tokens(ids) => vec![ids.clone()],
        Prompt::Texts(texts) => texts
            .iter()
            .map(|t| encode(&state, t))
            .collect::<Result<_, _>>()?,
        Prompt::TokenLists(lists) => lists.clone(),
    };
    if prompts.is_empty() {
        return Err(ApiError::invalid("prompt", "no prompt was given"));
    }
    let top = request.logprobs.unwrap_or(0);
    if top > 5 {
        return Err(ApiError::invalid("logprobs", "logprobs must be in 0..=5"));
    }
    let n = choices(&request.sampling, state.engine.max_batch())?;
    // Every prompt is checked before any is queued.
    let single = prompts.len() == 1;
    let mut jobs = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.into_iter().enumerate() {
        let param = if single {
            "prompt".to_string()
        } else {
            format!("prompt[{i}]")
        };
        let opts = options(
            &request.sampling,
            prompt.len(),
            state.engine.max_seq_len(),
            request.logprobs.is_some(),
            top as usize,
            request.echo,
        )
        .map_err(|mut e| {
            if e.param.as_deref() == Some("messages") {
                e.param = Some(param.clone());
            }
            e
        })?;
        state
            .engine
            .check(&prompt, &opts, i)
            .map_err(|e| ApiError::invalid(&param, e.to_string()))?;
        jobs.push((prompt, opts));
    }
    let prepared = Prepared {
        api: Api::Completions,
        id: request_id("cmpl"),
        model: request.model.unwrap_or_else(|| state.model_id.to_string()),
        prompt_tokens: jobs.iter().map(|(p, _)| p.len()).sum(),
        n: n * jobs.len(),
        stream: request.sampling.stream,
        include_usage: request
            .sampling
            .stream_options
            .is_some_and(|o| o.include_usage),
        echo: request.echo,
    };
    let mut receivers: Vec<_> = jobs
        .into_iter()
        .map(|(prompt, opts)| state.engine.submit(prompt, opts, n))
        .collect();
    let events = if receivers.len() == 1 {
        receivers.pop().unwrap()
    } else {
        merge(receivers, n)
    };
    respond(state, prepared, events).await
}

/// The events of several prompts' requests as one request's: choice `j` of prompt `i` is
/// choice `i * n + j`, OpenAI's order. Dropping the merged receiver drops them all (and so
/// cancels them).
fn merge(
    receivers: Vec<UnboundedReceiver<EngineEvent>>,
    n: usize,
) -> UnboundedReceiver<EngineEvent> {
    let (tx, merged) = tokio::sync::mpsc::unbounded_channel();
    for (i, mut rx) in receivers.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = rx.recv() => {
                        let Some(event) = event else { return };
                        let event = match event {
                            EngineEvent::Text { index, text } => EngineEvent::Text {
                                index: i * n + index,
                                text,
                            },
                            EngineEvent::Done { index, completion } => EngineEvent::Done {
                                index: i * n + index,
                                completion,
                            },
                            failed => failed,
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
    }
    merged
}

fn encode(state: &ServerState, text: &str) -> Result<Vec<u32>, ApiError> {
    state
        .tokenizer
        .encode(text, true, false)
        .map_err(|e| ApiError::invalid("prompt", e.to_string()))
}

async fn respond(
    state: ServerState,
    p: Prepared,
    events: UnboundedReceiver<EngineEvent>,
) -> Result<Response, ApiError> {
    if p.stream {
        Ok(stream(state, p, events))
    } else {
        whole(state, p, events).await
    }
}

/// Waits for every choice and answers with one JSON body.
async fn whole(
    state: ServerState,
    p: Prepared,
    mut events: UnboundedReceiver<EngineEvent>,
) -> Result<Response, ApiError> {
    let mut done: Vec<Option<Completion>> = vec![None; p.n];
    while done.iter().any(Option::is_none) {
        match events.recv().await {
            Some(EngineEvent::Done { index, completion }) => done[index] = Some(completion),
            Some(EngineEvent::Text { .. }) => {}
            Some(EngineEvent::Failed(message)) => return Err(ApiError::server(message)),
            None => return Err(ApiError::server("the generation engine has stopped")),
        }
    }
    let done: Vec<Completion> = done.into_iter().flatten().collect();
    let generated = done.iter().map(|c| p.generated(c)).sum();
    let usage = Usage::new(p.prompt_tokens, generated);
    let choices: Vec<Value> = done
        .iter()
        .enumerate()
        .map(|(index, c)| choice(&state, p.api, index, c))
        .collect();
    let object = match p.api {
        Api::Chat => "chat.completion",
        Api::Completions => "text_completion",
    };
    Ok(axum::Json(json!({
        "id": p.id,
        "object": object,
        "created": now(),
        "model": p.model,
        "choices": choices,
        "usage": usage,
    }))
    .into_response())
}

fn choice(state: &ServerState, api: Api, index: usize, c: &Completion) -> Value {
    let reason = finish_reason(c.finish_reason);
    match api {
        Api::Chat => json!({
            "index": index,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": chat_logprobs(&state.tokenizer, c),
            "finish_reason": reason,
        }),
        Api::Completions => json!({
            "index": index,
            "text": c.text,
            "logprobs": completion_logprobs(&state.tokenizer, c),
            "finish_reason": reason,
        }),
    }
}

fn chunk(p: &Prepared, created: u64, choices: Value, usage: Option<Usage>) -> Event {
    let object = match p.api {
        Api::Chat => "chat.completion.chunk",
        Api::Completions => "text_completion",
    };
    let mut body = json!({
        "id": p.id,
        "object": object,
        "created": created,
        "model": p.model,
        "choices": choices,
    });
    if let Some(usage) = usage {
        body["usage"] = json!(usage);
    }
    Event::default().data(body.to_string())
}

/// Streams the choices as server-sent events in OpenAI's chunk format, ending with
/// `data: [DONE]`. When the client goes away the stream is dropped, and with it the
/// engine's receiver, which frees the request's rows.
fn stream(state: ServerState, p: Prepared, mut events: UnboundedReceiver<EngineEvent>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(32);
    tokio::spawn(async move {
        let created = now();
        let send = |event: Event| {
            let tx = tx.clone();
            async move { tx.send(Ok(event)).await.is_ok() }
        };
        if p.api == Api::Chat {
            let first: Vec<Value> = (0..p.n)
                .map(|i| {
                    json!({"index": i, "delta": {"role": "assistant", "content": ""},
                    "logprobs": null, "finish_reason": null})
                })
                .collect();
            if !send(chunk(&p, created, json!(first), None)).await {
                return;
            }
        }
        let mut finished = 0;
        let mut generated = 0;
        while finished < p.n {
            let event = match events.recv().await {
                Some(EngineEvent::Text { index, text }) => {
                    let c = match p.api {
                        Api::Chat => json!([{"index": index, "delta": {"content": text},
                            "logprobs": null, "finish_reason": null}]),
                        Api::Completions => json!([{"index": index, "text": text,
                            "logprobs": null, "finish_reason": null}]),
                    };
                    chunk(&p, created, c, None)
                }
                Some(EngineEvent::Done { index, completion }) => {
                    finished += 1;
                    generated += p.generated(&completion);
                    let reason = finish_reason(completion.finish_reason);
                    let c = match p.api {
                        Api::Chat => json!([{"index": index, "delta": {},
                            "logprobs": chat_logprobs(&state.tokenizer, &completion),
                            "finish_reason": reason}]),
                        Api::Completions => json!([{"index": index, "text": "",
                            "logprobs": completion_logprobs(&state.tokenizer, &completion),
                            "finish_reason": reason}]),
                    };
                    chunk(&p, created, c, None)
                }
                Some(EngineEvent::Failed(message)) => {
                    let _ =
                        send(Event::default().data(ApiError::server(message).body().to_string()))
                            .await;
                    return;
                }
                None => return,
            };
            if !send(event).await {
                return;
            }
        }
        if p.include_usage {
            let usage = Usage::new(p.prompt_tokens, generated);
            if !send(chunk(&p, created, json!([]), Some(usage))).await {
                return;
            }
        }
        let _ = send(Event::default().data("[DONE]")).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    });
    Sse::new(body).into_response()
}

/// The answer to a dialog with special tags, without running the model.
fn unsafe_answer(state: &ServerState, p: Prepared) -> Response {
    let completion = Completion {
        tokens: Vec::new(),
        text: UNSAFE_ERROR.to_string(),
        logprobs: None,
        top_logprobs: None,
        prompt_len: p.prompt_tokens,
        finish_reason: crate::generation::FinishReason::Unsafe,
    };
    if p.stream {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        for index in 0..p.n {
            let _ = tx.send(EngineEvent::Text {
                index,
                text: UNSAFE_ERROR.to_string(),
            });
            let _ = tx.send(EngineEvent::Done {
                index,
                completion: completion.clone(),
            });
        }
        return stream(state.clone(), p, events);
    }
    let choices: Vec<Value> = (0..p.n)
        .map(|index| choice(state, p.api, index, &completion))
        .collect();
    axum::Json(json!({
        "id": p.id,
        "object": "chat.completion",
        "created": now(),
        "model": p.model,
        "choices": choices,
        "usage": Usage::new(p.prompt_tokens, 0),
    }))
    .into_response()
}
