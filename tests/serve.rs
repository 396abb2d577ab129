//! The OpenAI-compatible server (`serve` example) against a real HTTP client on loopback,
//! its answers checked against the library's `Generator` on the same model.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use llama2::chat::{Message, encode_dialog};
use llama2::generation::{GenerationOptions, Generator};
use llama2::tokenizer::Tokenizer;
use serde_json::{Value, json};

/// A server on a free loopback port, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// The tiny chat model (Llama 2's vocabulary).
    fn start() -> Self {
        Self::with_model("tiny-chat")
    }

    /// The model at `tests/data/<model>`.
    fn with_model(model: &str) -> Self {
        let mut child = Command::new(example("serve"))
            .args(["--model", data_dir().join(model).to_str().unwrap()])
            .args(["--port", "0", "--max-batch", "16"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Self { child, base }
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, (u16, Value)> {
        match ureq::post(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(120))
            .send_json(body.clone())
        {
            Ok(r) => Ok(r.into_json().unwrap()),
            Err(ureq::Error::Status(code, r)) => Err((code, r.into_json().unwrap())),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    fn get(&self, path: &str) -> Value {
        ureq::get(&format!("{}{path}", self.base))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    /// The decode steps run so far, read once no row is being decoded (within 30 s).
    fn steps_when_idle(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.get("/health");
            if health["rows"] == 0 {
                return health["steps"].as_u64().unwrap();
            }
            assert!(Instant::now() < deadline, "the row was not freed: {health}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `data:` payloads of a streamed response, up to `[DONE]` (included).
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let response = ureq::post(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(120))
            .send_json(body.clone())
            .unwrap();
        assert_eq!(response.content_type(), "text/event-stream");
        let mut out = Vec::new();
        for line in BufReader::new(response.into_reader()).lines() {
            let line = line.unwrap();
            if let Some(data) = line.strip_prefix("data: ") {
                out.push(data.to_string());
                if data == "[DONE]" {
                    break;
                }
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn model() -> llama2::Llama<B> {
    llama2_import::load_model::<B>(data_dir().join("tiny-chat"), &device()).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(data_dir().join("llama2-tokenizer/tokenizer.model")).unwrap()
}

fn question(i: usize) -> String {
    format!("Question {i}: what is {i} + {}?", i * 7 % 11)
}

/// `generate`'s greedy answer to one user message.
fn greedy_answer(generator: &Generator<'_, B>, user: &str, max_tokens: usize) -> String {
    let out = generator
        .chat_completion(
            &[vec![Message::user(user)]],
            &GenerationOptions::greedy(max_tokens),
        )
        .unwrap();
    out[0].message.content.clone()
}

#[test]
fn chat_whole_and_streamed_equal_generate() {
    let server = Server::start();
    let (model, tok) = (model(), tokenizer());
    let generator = Generator::new(&model, &tok).unwrap();
    let user = "Tell me a story about a brave llama.";
    let expected = greedy_answer(&generator, user, 24);
    assert!(!expected.is_empty());
    let prompt_len = encode_dialog(&tok, &[Message::user(user)])
        .unwrap()
        .tokens
        .len();

    let body = json!({"model": "tiny-chat", "temperature": 0, "max_tokens": 24,
        "messages": [{"role": "user", "content": user}]});
    let r = server.post("/v1/chat/completions", &body).unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"].as_array().unwrap().len(), 1);
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r["choices"][0]["message"]["content"], expected.as_str());
    assert_eq!(r["usage"]["prompt_tokens"], prompt_len);
    let completion_tokens = r["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens > 0 && completion_tokens <= 24);
    assert_eq!(
        r["usage"]["total_tokens"].as_u64().unwrap(),
        prompt_len as u64 + completion_tokens
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let chunks = server.stream("/v1/chat/completions", &streamed);
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    assert!(chunks.len() >= 4, "role, text, finish and usage chunks");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, expected);
    let finish = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
    assert_eq!(finish, &r["choices"][0]["finish_reason"]);
    assert_eq!(chunks.last().unwrap()["usage"], r["usage"]);

    // Logprobs of the chat API: one per token, with the requested alternatives.
    let mut with_lp = body.clone();
    with_lp["logprobs"] = json!(true);
    with_lp["top_logprobs"] = json!(3);
    let r = server.post("/v1/chat/completions", &with_lp).unwrap();
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len() as u64, completion_tokens);
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert!(
            (top[0]["logprob"].as_f64().unwrap() - t["logprob"].as_f64().unwrap()).abs() < 1e-6
        );
    }
}

#[test]
fn completions_match_text_completion_with_logprobs() {
    let server = Server::start();
    let (model, tok) = (model(), tokenizer());
    let generator = Generator::new(&model, &tok).unwrap();
    let options = GenerationOptions::greedy(16).with_logprobs(true);
    let expected = generator
        .text_completion(&["Once upon a time".into()], &options)
        .unwrap()
        .remove(0);
    let r = server
        .post(
            "/v1/completions",
            &json!({"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0,
                "logprobs": 2}),
        )
        .unwrap();
    assert_eq!(r["object"], "text_completion");
    assert_eq!(r["choices"][0]["text"], expected.text.as_str());
    let lps = r["choices"][0]["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap();
    let want = expected.logprobs.unwrap();
    assert_eq!(lps.len(), want.len());
    for (got, want) in lps.iter().zip(&want) {
        assert!((got.as_f64().unwrap() - f64::from(*want)).abs() < 1e-4);
    }
    assert_eq!(
        r["choices"][0]["logprobs"]["top_logprobs"][0]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    // Several prompts in one request: their choices in order, as each alone.
    let others = generator
        .text_completion(&["Hello".into()], &GenerationOptions::greedy(16))
        .unwrap()
        .remove(0);
    let r = server
        .post(
            "/v1/completions",
            &json!({"prompt": ["Once upon a time", "Hello"], "max_tokens": 16,
                "temperature": 0}),
        )
        .unwrap();
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["text"], expected.text.as_str());
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(choices[1]["text"], others.text.as_str());
    let prompt_tokens = tok.encode("Once upon a time", true, false).unwrap().len()
        + tok.encode("Hello", true, false).unwrap().len();
    assert_eq!(r["usage"]["prompt_tokens"], prompt_tokens);
    // n choices from one seed: reproducible, and different from each other.
    let body = json!({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 1.0,
        "seed": 7, "n": 3});
    let a = server.post("/v1/completions", &body).unwrap();
    let b = server.post("/v1/completions", &body).unwrap();
    let texts = |r: &Value| -> Vec<String> {
        r["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&a).len(), 3);
    assert_eq!(texts(&a), texts(&b));
    assert_ne!(texts(&a)[0], texts(&a)[1]);
}

#[test]
fn concurrent_requests_are_batched_and_answered_as_alone() {
    let server = Server::start();
    let (model, tok) = (model(), tokenizer());
    let generator = Generator::new(&model, &tok).unwrap();
    let n = 16;
    let max_tokens = 48;
    let expected: Vec<String> = (0..n)
        .map(|i| greedy_answer(&generator, &question(i), max_tokens))
        .collect();
    let body = |i: usize| {
        json!({"temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": question(i)}]})
    };
    let answer = |r: Value| {
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let start = Instant::now();
    for (i, want) in expected.iter().enumerate() {
        let got = answer(server.post("/v1/chat/completions", &body(i)).unwrap());
        assert_eq!(&got, want, "request {i} alone");
    }
    let one_by_one = start.elapsed();
    let steps_alone = server.get("/health")["steps"].as_u64().unwrap();

    let start = Instant::now();
    let answers: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let server = &server;
                s.spawn(move || answer(server.post("/v1/chat/completions", &body(i)).unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let together = start.elapsed();
    assert_eq!(answers.len(), n);
    for (i, (got, want)) in answers.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "request {i} among {n} concurrent ones");
    }
    let health = server.get("/health");
    let steps_together = health["steps"].as_u64().unwrap() - steps_alone;
    assert!(health["peak_rows"].as_u64().unwrap() > 1, "{health}");
    // The batch decodes many requests per step.
    assert!(
        steps_together * 2 < steps_alone,
        "{steps_together} steps together vs {steps_alone} one by one"
    );
    eprintln!(
        "{n} requests: {one_by_one:.2?} one by one ({steps_alone} steps), {together:.2?} \
         concurrently ({steps_together} steps)"
    );
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let server = Server::start();
    let chat = |body: Value| server.post("/v1/chat/completions", &body).unwrap_err();
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            chat(json!({"messages": user, "temperature": 5})),
            "temperature",
        ),
        (chat(json!({"messages": user, "top_p": 0})), "top_p"),
        (
            chat(json!({"messages": user, "max_tokens": 0})),
            "max_tokens",
        ),
        (chat(json!({"messages": user, "n": 17})), "n"),
        (chat(json!({"messages": user, "stop": ""})), "stop"),
        (
            chat(json!({"messages": user, "top_logprobs": 2})),
            "top_logprobs",
        ),
        (chat(json!({"messages": []})), "messages"),
        (
            chat(json!({"messages": [{"role": "tool", "content": "x"}]})),
            "messages[0].role",
        ),
        (
            chat(json!({"messages": [{"role": "assistant", "content": "x"}]})),
            "messages",
        ),
        (chat(json!({"messages": "hello"})), "body"),
        (
            server
                .post("/v1/completions", &json!({"prompt": [1, 99999]}))
                .unwrap_err(),
            "prompt",
        ),
        (
            server
                .post("/v1/completions", &json!({"prompt": [[1, 2], [1, 99999]]}))
                .unwrap_err(),
            "prompt[1]",
        ),
    ];
    for ((status, body), param) in cases {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["param"], param, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let models = server.get("/v1/models");
    let context = models["data"][0]["max_model_len"].as_u64().unwrap() as usize;
    let long = "word ".repeat(context);
    let (status, body) = chat(json!({"messages": [{"role": "user", "content": long}]}));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let (status, body) = chat(json!({"messages": user, "max_tokens": context}));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    // Not JSON at all.
    let raw = ureq::post(&format!("{}/v1/chat/completions", server.base))
        .set("content-type", "application/json")
        .send_string("{not json");
    match raw {
        Err(ureq::Error::Status(400, r)) => {
            let body: Value = r.into_json().unwrap();
            assert_eq!(body["error"]["param"], "body");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    match ureq::get(&format!("{}/v2/nothing", server.base)).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("expected a 404, got {other:?}"),
    }
    // A dialog with special tags is answered with Meta's error, not run.
    let r = server
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "[INST] hi"}]}),
        )
        .unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(models["object"], "list");
    assert_eq!(server.get("/health")["status"], "ok");
    // A model whose vocabulary (512) is smaller than its tokenizer's: ids past the model's
    // are refused before they reach the engine.
    let small = Server::with_model("tiny/hf");
    let (status, body) = small
        .post(
            "/v1/completions",
            &json!({"prompt": [1, 600], "max_tokens": 2}),
        )
        .unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "prompt");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("512"),
        "{body}"
    );
    let ok = server
        .post(
            "/v1/chat/completions",
            &json!({"messages": user, "max_tokens": 4, "temperature": 0}),
        )
        .unwrap();
    assert_eq!(ok["object"], "chat.completion");
}

#[test]
fn a_client_that_hangs_up_frees_its_row() {
    let server = Server::start();
    let max_tokens = 1500;
    let body = json!({"stream": true, "temperature": 1.0, "seed": 3, "max_tokens": max_tokens,
        "ignore_eos": true, "messages": [{"role": "user", "content": "Talk for a long time."}]});
    let response = ureq::post(&format!("{}/v1/chat/completions", server.base))
        .send_json(body)
        .unwrap();
    let mut reader = BufReader::new(response.into_reader());
    let mut seen = 0;
    let mut line = String::new();
    while seen < 3 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("data: ") {
            seen += 1;
        }
    }
    assert!(server.get("/health")["rows"].as_u64().unwrap() <= 1);
    // Hang up mid-stream.
    drop(reader);
    let steps = server.steps_when_idle();
    assert!(
        steps < max_tokens / 2,
        "{steps} steps: the row ran on after the client left"
    );
    // A whole (non-streamed) request whose client gives up waiting.
    let before = server.get("/health")["steps"].as_u64().unwrap();
    let gave_up = ureq::post(&format!("{}/v1/completions", server.base))
        .timeout(Duration::from_millis(300))
        .send_json(
            json!({"prompt": "Once", "max_tokens": max_tokens, "temperature": 1.0,
            "ignore_eos": true}),
        );
    assert!(
        gave_up.is_err(),
        "the request should time out on the client"
    );
    let steps = server.steps_when_idle() - before;
    assert!(
        steps < max_tokens / 2,
        "{steps} steps: the row ran on after the client left"
    );
}

#[test]
fn a_window_outside_the_context_range_is_refused_before_serving() {
    let out = Command::new(example("serve"))
        .args(["--model", data_dir().join("tiny-chat").to_str().unwrap()])
        .args(["--port", "0", "--window", "100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it must not start listening");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("window of 100 positions is outside 4096..=8192"),
        "{stderr}"
    );
}
