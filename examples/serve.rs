//! An OpenAI-compatible chat and completions server.
//!
//! ```sh
//! cargo run --release --example serve -- --port 8080
//! curl http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \
//!     -d '{"model": "llama-2", "messages": [{"role": "user", "content": "What is 2 + 3?"}]}'
//! ```

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use llama2_burn::model::serve::{Engine, EngineConfig, ServerState, router};

/// Serve a Llama 2 model over HTTP with the OpenAI API: `POST /v1/chat/completions`
/// (Llama 2-Chat format), `POST /v1/completions`, `GET /v1/models`, `GET /health`.
/// Concurrent requests are decoded together in one continuously batched KV cache.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    model: common::ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Rows decoded together (requests × their `n`).
    #[arg(long, default_value_t = 8, value_parser = common::parse_positive)]
    max_batch: usize,
    /// KV-cache positions shared by the batch, from the model's context to twice it
    /// [default: twice the context].
    #[arg(long, value_parser = common::parse_tokens)]
    window: Option<usize>,
    /// The model name `/v1/models` reports [default: the model's file or folder name].
    #[arg(long)]
    served_model_name: Option<String>,
}

/// A repo id as given; a folder's name; a file's stem, or its folder's name for a file
/// called `model.*`.
fn served_name(given: Option<&std::path::Path>, resolved: &std::path::Path) -> String {
    if let Some(given) = given
        && !given.exists()
    {
        return given.display().to_string();
    }
    let stem = resolved
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned());
    let parent = resolved
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned());
    match (resolved.is_file(), stem, parent) {
        (true, Some(stem), Some(parent)) if stem == "model" => parent,
        (_, Some(stem), _) => stem,
        _ => "llama-2".into(),
    }
}

fn main() {
    common::run(|| real_main(Args::parse()));
}

fn real_main(args: Args) -> Result<()> {
    common::init_logging();
    let (model_path, tokenizer) = args.model.resolve()?;
    let tokenizer = Arc::new(tokenizer);
    let model = args.model.load(&model_path)?;
    let name = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| served_name(args.model.model.as_deref(), &model_path));
    let config = EngineConfig {
        max_batch: args.max_batch,
        window: args.window,
    };
    let engine = Engine::start(model, tokenizer.clone(), config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local} (model `{name}`)");
        std::io::stdout().flush()?;
        tracing::info!(
            "serving {} with batches of up to {} rows",
            model_path.display(),
            args.max_batch
        );
        axum::serve(listener, router(ServerState::new(engine, tokenizer, name)))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server stopped")
    })
}
