//! An OpenAI-compatible HTTP server for a Llama 2 model (feature `serve`).
//!
//! | file | contents |
//! |---|---|
//! | [`engine`] | [`Engine`]: the thread that owns the model and decodes every request in one continuously batched [`DecodeBatch`](crate::generation::DecodeBatch) |
//! | [`protocol`] | the OpenAI request/response bodies, their checks, OpenAI's error shape |
//! | [`http`] | the axum routes: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health`, streaming as server-sent events |
//!
//! ```no_run
//! # async fn run<B: burn::tensor::backend::Backend>(model: llama2::Llama<B>, tok: llama2::Tokenizer)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use llama2::serve::{Engine, EngineConfig, ServerState, router};
//! let tokenizer = Arc::new(tok);
//! let engine = Engine::start(model, tokenizer.clone(), EngineConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(ServerState::new(engine, tokenizer, "llama-2"))).await?;
//! # Ok(()) }
//! ```

pub mod engine;
pub mod http;
pub mod protocol;

pub use engine::{Engine, EngineConfig, EngineEvent, EngineStats};
pub use http::{ServerState, router};
pub use protocol::ApiError;
