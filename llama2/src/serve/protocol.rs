//! The OpenAI API's request and response bodies (`/v1/chat/completions`,
//! `/v1/completions`), their checks, and their mapping to [`GenerationOptions`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::chat::{Message, Role};
use crate::generation::{Completion, FinishReason, GenerationOptions, SamplerConfig};
use crate::tokenizer::Tokenizer;

/// An API error: the HTTP status and OpenAI's `{"error": {...}}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Human-readable message.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `server_error`, ...).
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code (`context_length_exceeded`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.to_string()),
            code: None,
        }
    }

    /// A 500.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// With a machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// OpenAI's error body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// `stop`: one string or a list of up to 4.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling and length fields both endpoints share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    /// Most new tokens (default: the rest of the context).
    pub max_tokens: Option<u64>,
    /// The chat API's newer name of `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    /// Softmax temperature in `[0, 2]`, 0 greedy (default 1).
    pub temperature: Option<f64>,
    /// Nucleus mass in `(0, 1]` (default 1).
    pub top_p: Option<f64>,
    /// Keep the `k` most likely tokens (an extension of vLLM and llama.cpp).
    pub top_k: Option<i64>,
    /// Up to 4 stop strings.
    pub stop: Option<Stop>,
    /// Seed of the sampler (default: drawn per request).
    pub seed: Option<u64>,
    /// Keep generating after EOS (an extension of vLLM).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Choices to generate (default 1).
    pub n: Option<u64>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
}

/// A message of a chat request.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text: a string, or a list of `{"type": "text", "text": ...}` parts.
    pub content: Value,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Model name (any name is served by the one model).
    pub model: Option<String>,
    /// The dialog.
    pub messages: Vec<ChatMessage>,
    /// Return the logprob of each output token.
    #[serde(default)]
    pub logprobs: bool,
    /// With `logprobs`, the most likely alternatives at each position (0..=20).
    pub top_logprobs: Option<u64>,
    /// Shared fields.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `prompt` of a completion request: text, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// A text, encoded with BOS.
    Text(String),
    /// Token ids, as given.
    Tokens(Vec<u32>),
    /// Several texts (their choices in order, `n` per prompt).
    Texts(Vec<String>),
    /// Several token-id prompts.
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Model name (any name is served by the one model).
    pub model: Option<String>,
    /// The prompt.
    pub prompt: Prompt,
    /// Return the logprob of each token and this many alternatives (0..=5).
    pub logprobs: Option<u64>,
    /// Include the prompt in the output.
    #[serde(default)]
    pub echo: bool,
    /// Shared fields.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// How many choices a request asks for.
pub fn choices(sampling: &Sampling, max_batch: usize) -> Result<usize, ApiError> {
    let n = sampling.n.unwrap_or(1);
    if n == 0 || n > max_batch as u64 {
        return Err(ApiError::invalid(
            "n",
            format!("n must be in 1..={max_batch} (the server's batch), got {n}"),
        ));
    }
    Ok(n as usize)
}

/// The generation options of a request whose prompt has `prompt_len` tokens.
pub fn options(
    sampling: &Sampling,
    prompt_len: usize,
    max_seq_len: usize,
    logprobs: bool,
    top_logprobs: usize,
    echo: bool,
) -> Result<GenerationOptions, ApiError> {
    if prompt_len >= max_seq_len {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "the prompt has {prompt_len} tokens; the model's context is {max_seq_len} tokens, \
                 so no token can be generated"
            ),
        )
        .with_code("context_length_exceeded"));
    }
    let room = max_seq_len - prompt_len;
    let max_tokens = match sampling.max_completion_tokens.or(sampling.max_tokens) {
        None => room,
        Some(0) => return Err(ApiError::invalid("max_tokens", "max_tokens must be ≥ 1")),
        Some(m) if m > room as u64 => {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "the prompt ({prompt_len} tokens) plus max_tokens ({m}) exceeds the model's \
                     context of {max_seq_len} tokens"
                ),
            )
            .with_code("context_length_exceeded"));
        }
        Some(m) => m as usize,
    };
    let temperature = sampling.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be in [0, 2], got {temperature}"),
        ));
    }
    let top_p = sampling.top_p.unwrap_or(1.0);
    if !(top_p.is_finite() && top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    let top_k = match sampling.top_k {
        None | Some(-1) | Some(0) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ApiError::invalid(
                "top_k",
                format!("top_k must be ≥ 1 (or -1 / 0 for none), got {k}"),
            ));
        }
    };
    let stop = match &sampling.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > 4 {
        return Err(ApiError::invalid("stop", "at most 4 stop sequences"));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "stop sequences must not be empty",
        ));
    }
    let seed = sampling.seed.unwrap_or_else(fresh_seed);
    let mut sampler = SamplerConfig::new(temperature as f32, top_p as f32).with_seed(seed);
    if let Some(k) = top_k {
        sampler = sampler.with_top_k(k);
    }
    Ok(GenerationOptions::new(max_tokens)
        .with_sampler(sampler)
        .with_logprobs(logprobs)
        .with_top_logprobs(top_logprobs)
        .with_echo(echo)
        .with_stop_at_eos(!sampling.ignore_eos)
        .with_stop_sequences(stop))
}

/// A seed for a request that gives none: the clock mixed with a counter.
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    nanos ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The dialog of a chat request, in [`Message`]s.
pub fn dialog(messages: &[ChatMessage]) -> Result<Vec<Message>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::invalid(
                        &format!("{param}.role"),
                        format!("role `{other}` is not one of system, user, assistant"),
                    ));
                }
            };
            let content = match &m.content {
                Value::String(s) => s.clone(),
                Value::Array(parts) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.get("type").and_then(Value::as_str), part.get("text")) {
                            (Some("text"), Some(Value::String(t))) => text.push_str(t),
                            _ => {
                                return Err(ApiError::invalid(
                                    &format!("{param}.content"),
                                    "only text content parts are supported",
                                ));
                            }
                        }
                    }
                    text
                }
                _ => {
                    return Err(ApiError::invalid(
                        &format!("{param}.content"),
                        "content must be a string or a list of text parts",
                    ));
                }
            };
            Ok(Message::new(role, content))
        })
        .collect()
}

/// OpenAI's name of a finish reason.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Unsafe => "content_filter",
    }
}

/// A token as text for logprobs: its piece with `▁` as a space, a byte piece as its byte.
pub fn token_text(tokenizer: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let piece = tokenizer.id_to_piece(id).unwrap_or("");
    let bytes = match piece
        .strip_prefix("<0x")
        .and_then(|p| p.strip_suffix('>'))
        .and_then(|h| u8::from_str_radix(h, 16).ok())
    {
        Some(byte) if piece.len() == 6 => vec![byte],
        _ => piece.replace('▁', " ").into_bytes(),
    };
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// The chat API's `logprobs` object of a completion.
pub fn chat_logprobs(tokenizer: &Tokenizer, c: &Completion) -> Value {
    let Some(lps) = &c.logprobs else {
        return Value::Null;
    };
    let content: Vec<Value> = c
        .tokens
        .iter()
        .zip(lps)
        .enumerate()
        .map(|(i, (&id, &lp))| {
            let (token, bytes) = token_text(tokenizer, id);
            let top: Vec<Value> = c
                .top_logprobs
                .as_ref()
                .and_then(|t| t.get(i))
                .map(|alts| {
                    alts.iter()
                        .map(|&(alt, alp)| {
                            let (token, bytes) = token_text(tokenizer, alt);
                            json!({"token": token, "logprob": alp, "bytes": bytes})
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({"token": token, "logprob": lp, "bytes": bytes, "top_logprobs": top})
        })
        .collect();
    json!({ "content": content })
}

/// The completions API's `logprobs` object of a completion.
pub fn completion_logprobs(tokenizer: &Tokenizer, c: &Completion) -> Value {
    let Some(lps) = &c.logprobs else {
        return Value::Null;
    };
    let mut offset = 0;
    let mut tokens = Vec::with_capacity(c.tokens.len());
    let mut offsets = Vec::with_capacity(c.tokens.len());
    for &id in &c.tokens {
        let (token, _) = token_text(tokenizer, id);
        offsets.push(offset);
        offset += token.len();
        tokens.push(token);
    }
    let top: Value = match &c.top_logprobs {
        Some(t) => t
            .iter()
            .map(|alts| {
                let map: serde_json::Map<String, Value> = alts
                    .iter()
                    .map(|&(alt, alp)| (token_text(tokenizer, alt).0, json!(alp)))
                    .collect();
                Value::Object(map)
            })
            .collect(),
        None => Value::Null,
    };
    json!({
        "tokens": tokens,
        "token_logprobs": lps,
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens over every choice.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

impl Usage {
    /// Counts of a prompt and its choices.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(json: Value) -> Sampling {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fields_map_to_generation_options() {
        let s = sampling(json!({"max_tokens": 7, "temperature": 0, "top_p": 0.5,
            "top_k": 3, "stop": ["a", "b"], "seed": 5}));
        let o = options(&s, 10, 64, true, 2, false).unwrap();
        assert_eq!(o.max_gen_len, Some(7));
        assert!(o.sampler.is_greedy());
        assert_eq!(o.sampler.top_k, Some(3));
        assert_eq!(o.sampler.seed, 5);
        assert_eq!(o.stop_sequences, ["a", "b"]);
        assert!(o.logprobs);
        assert_eq!(o.top_logprobs, 2);
        // Without max_tokens: the rest of the context.
        let o = options(&sampling(json!({})), 10, 64, false, 0, false).unwrap();
        assert_eq!(o.max_gen_len, Some(54));
    }

    #[test]
    fn bad_fields_are_400s_naming_the_field() {
        let cases = [
            (json!({"temperature": 3}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"top_k": -2}), "top_k"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": 60}), "max_tokens"),
            (json!({"stop": ""}), "stop"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        ];
        for (body, param) in cases {
            let e = options(&sampling(body.clone()), 10, 64, false, 0, false).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        let e = options(&sampling(json!({})), 64, 64, false, 0, false).unwrap_err();
        assert_eq!(e.code, Some("context_length_exceeded"));
        assert!(choices(&sampling(json!({"n": 0})), 8).is_err());
        assert!(choices(&sampling(json!({"n": 9})), 8).is_err());
        assert_eq!(choices(&sampling(json!({"n": 8})), 8).unwrap(), 8);
    }

    #[test]
    fn messages_map_to_the_dialog() {
        let messages: Vec<ChatMessage> = serde_json::from_value(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]},
        ]))
        .unwrap();
        let d = dialog(&messages).unwrap();
        assert_eq!(d, [Message::system("Be brief."), Message::user("Hi!")]);
        let bad: Vec<ChatMessage> =
            serde_json::from_value(json!([{"role": "tool", "content": "x"}])).unwrap();
        assert_eq!(
            dialog(&bad).unwrap_err().param.as_deref(),
            Some("messages[0].role")
        );
        assert!(dialog(&[]).is_err());
    }
}
