//! Shared by the examples: default paths, model/tokenizer loading, id parsing.
#![allow(dead_code)]

pub mod measure;
#[cfg(feature = "train")]
pub mod train_args;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use llama2_burn::backend::{self, Selected};
use llama2_burn::model::{Llama, Tokenizer, WeightDType};

/// The final model of the pipeline example (`runs/pipeline/model.bpk`, relative to the
/// current directory) when it exists; otherwise `tests/data/tiny-chat`, a random-weight
/// model with Llama 2's vocabulary.
pub fn default_model() -> PathBuf {
    let pipeline = PathBuf::from("runs/pipeline/model.bpk");
    if pipeline.is_file() {
        return pipeline;
    }
    committed_model()
}

/// `tests/data/tiny-chat`: a random-weight model with Llama 2's vocabulary.
pub fn committed_model() -> PathBuf {
    data_path(COMMITTED_MODEL)
}

/// [`committed_model`] as `--help` shows it.
pub const COMMITTED_MODEL: &str = "tests/data/tiny-chat";

/// Where Meta's Llama 2 `tokenizer.model` is committed; the examples carry a copy
/// ([`default_tokenizer`]).
pub const LLAMA2_TOKENIZER: &str = "tests/data/llama2-tokenizer/tokenizer.model";

/// Meta's Llama 2 `tokenizer.model`, embedded in the binary.
pub const LLAMA2_TOKENIZER_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/llama2-tokenizer/tokenizer.model"
));

/// Meta's Llama 2 tokenizer, from the copy embedded in the binary.
pub fn default_tokenizer() -> Result<Tokenizer> {
    Tokenizer::from_sentencepiece_bytes(LLAMA2_TOKENIZER_BYTES)
        .context("cannot load the embedded Llama 2 tokenizer")
}

/// A file of the repository (`tests/data/...`, `examples/data/...`), found at run time so
/// that a binary moved elsewhere still finds it: under `$LLAMA2_BURN_ROOT` when set; else
/// in the current directory when it holds the file; else in the first directory above
/// the executable (`target/<profile>/examples/`) that holds it; else where it was at
/// build time.
pub fn data_path(relative: impl AsRef<Path>) -> PathBuf {
    let relative = relative.as_ref();
    if let Some(root) = std::env::var_os("LLAMA2_BURN_ROOT").filter(|r| !r.is_empty()) {
        return Path::new(&root).join(relative);
    }
    if relative.exists() {
        return relative.to_path_buf();
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(found) = exe
            .ancestors()
            .skip(1)
            .map(|dir| dir.join(relative))
            .find(|p| p.exists())
    {
        return found;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A path as given, or, for a relative path under `tests/data/` or `examples/data/`
/// that the current directory lacks, the repository's file ([`data_path`]).
pub fn repo_file(path: &Path) -> PathBuf {
    let in_repo = path.starts_with("tests/data") || path.starts_with("examples/data");
    if in_repo && !path.exists() {
        data_path(path)
    } else {
        path.to_path_buf()
    }
}

/// The local HF cache, token and offline setting from the environment.
pub fn hub() -> &'static llama2_burn::import::hub::Hub {
    use llama2_burn::import::hub::{Hub, HubOptions};
    static HUB: std::sync::OnceLock<Hub> = std::sync::OnceLock::new();
    HUB.get_or_init(|| Hub::new(HubOptions::from_env()))
}

/// The revision of a `--model` repo id when none is given.
pub const DEFAULT_REVISION: &str = llama2_burn::import::hub::DEFAULT_REVISION;

/// A `--model` argument: an existing path (or a repository file, [`repo_file`]) as is;
/// otherwise a Hugging Face Hub repo id (`org/name`) at `revision`, resolved to its
/// snapshot directory in the local HF cache, downloading what is missing.
pub fn model_path(arg: &Path, revision: &str) -> Result<PathBuf> {
    let path = repo_file(arg);
    hub().locate_model(&path, revision).with_context(|| {
        format!(
            "{} is not a local file or directory; as a Hugging Face Hub repo id",
            arg.display()
        )
    })
}

/// The `--model` given ([`model_path`]), else [`default_model`].
pub fn model_arg(model: Option<&Path>, revision: &str) -> Result<PathBuf> {
    match model {
        Some(model) => model_path(model, revision),
        None => Ok(default_model()),
    }
}

/// A `--tokenizer` argument: an existing file as is; otherwise a Hugging Face Hub repo
/// id at `revision`, resolved to its `tokenizer.model` (or `tokenizer.json`).
pub fn tokenizer_path(arg: &Path, revision: &str) -> Result<PathBuf> {
    let path = repo_file(arg);
    hub().locate_tokenizer(&path, revision).with_context(|| {
        format!(
            "{} is not a local file; as a Hugging Face Hub repo id",
            arg.display()
        )
    })
}

/// The model a generation command runs (`generate`, `chat`, `serve`).
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// A Burn record file, a Meta (params.json + consolidated.*.pth) or Hugging Face directory,
    /// or a Hugging Face Hub repo id (org/name: the local HF cache, else a download).
    /// [default: runs/pipeline/model.bpk when it exists, else tests/data/tiny-chat]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Revision (branch, tag or commit hash) of a --model repo id.
    #[arg(long, default_value = DEFAULT_REVISION)]
    pub revision: String,
    /// LoRA adapters to merge into the model: an adapters file from the finetune
    /// example or a Hugging Face PEFT directory.
    #[arg(long)]
    pub adapters: Option<PathBuf>,
    /// SentencePiece tokenizer.model (or tokenizer.json), or a Hub repo id (read at
    /// main); default: the one stored with the model, else Meta's Llama 2 tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Storage precision of the projections and the output head: f32, f16 (half the
    /// memory and the bytes streamed per token) or bf16; activations, the KV cache and
    /// every sum stay f32.
    #[arg(long, default_value = "f32")]
    pub dtype: WeightDType,
}

impl ModelArgs {
    /// The model's local path (a repo id resolved) and its tokenizer, before the model is
    /// loaded.
    pub fn resolve(&self) -> Result<(PathBuf, Tokenizer)> {
        let path = model_arg(self.model.as_deref(), &self.revision)?;
        let tokenizer = resolve_tokenizer(self.tokenizer.as_deref(), &path)?;
        Ok((path, tokenizer))
    }

    /// The model at `path` (from [`resolve`](Self::resolve)) with the adapters merged,
    /// its weights in `--dtype` (read straight into it; with adapters, after merging them
    /// into the f32 weights).
    pub fn load(&self, path: &Path) -> Result<Llama<Selected>> {
        match &self.adapters {
            Some(adapters) => {
                let model = apply_adapters(load_model(path)?, adapters)?;
                Ok(model.with_weight_dtype(self.dtype)?)
            }
            None => load_model_in(path, self.dtype),
        }
    }
}

/// Logs to stderr, `RUST_LOG` overriding `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Loads a tokenizer file, or the tokenizer of a Hub repo id at `main` ([`tokenizer_path`]).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let path = tokenizer_path(path, DEFAULT_REVISION)?;
    Tokenizer::from_file(&path).with_context(|| format!("cannot load tokenizer {}", path.display()))
}

/// The tokenizer `explicit` names (a file or a Hub repo id at `main`); without one, the
/// tokenizer the model at `model` (a path, or a Hub repo id at `main`) carries (a
/// record's, or a Meta/HF folder's `tokenizer.model` / `tokenizer.json`); without that,
/// [`default_tokenizer`].
pub fn resolve_tokenizer(explicit: Option<&Path>, model: &Path) -> Result<Tokenizer> {
    if let Some(path) = explicit {
        return load_tokenizer(path);
    }
    let model = &model_path(model, DEFAULT_REVISION)?;
    if model.exists()
        && let Some(tokenizer) = llama2_burn::import::model_tokenizer(model)
            .with_context(|| format!("cannot read the tokenizer of {}", model.display()))?
    {
        tracing::info!("using the tokenizer stored with {}", model.display());
        return Ok(tokenizer);
    }
    default_tokenizer()
}

/// Loads a model: a record file, a Meta or HF directory, or a Hub repo id at `main`
/// ([`model_path`]; resolve the path first for another revision).
pub fn load_model(path: &Path) -> Result<Llama<Selected>> {
    load_model_in(path, WeightDType::F32)
}

/// [`load_model`] with the projections and the output head stored as `weights`, converted
/// as each tensor is read (the f32 model is never held).
pub fn load_model_in(path: &Path, weights: WeightDType) -> Result<Llama<Selected>> {
    let path = &model_path(path, DEFAULT_REVISION)?;
    if !path.exists() {
        bail!("model path {} does not exist", path.display());
    }
    let start = Instant::now();
    let model = llama2_burn::import::load_model_in::<Selected>(path, &backend::device(), weights)
        .with_context(|| format!("cannot load model {}", path.display()))?;
    let c = &model.config;
    tracing::info!(
        "loaded {} on {} in {:.2?} ({weights} weights): dim {}, {} layers, {} heads ({} kv), vocab {}, context {}",
        path.display(),
        backend::NAME,
        start.elapsed(),
        c.dim,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.vocab_size,
        c.max_seq_len
    );
    Ok(model)
}

/// Attaches LoRA adapters to `model` and merges them into its weights (the same outputs,
/// no extra cost per token): an adapters file written by `finetune`
/// (`adapters.safetensors`) or a Hugging Face PEFT directory (`adapter_config.json` +
/// `adapter_model.safetensors`).
pub fn apply_adapters(model: Llama<Selected>, path: &Path) -> Result<Llama<Selected>> {
    let model = if llama2_burn::import::peft::is_peft_dir(path) {
        llama2_burn::import::load_peft(model, path)?
    } else {
        llama2_burn::model::lora::load_adapters(model, path)?
    };
    let lora = model.lora.clone().expect("adapters attached");
    tracing::info!(
        "merged LoRA adapters from {}: rank {}, alpha {}, {} projections",
        path.display(),
        lora.rank,
        lora.alpha,
        model.lora_sites().len()
    );
    Ok(model.merge_lora())
}

/// Parses `1,2,3` (spaces allowed) into ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    let ids = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>().map_err(|_| {
                format!("`{t}` is not a token id (expected comma-separated non-negative integers)")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err("no token ids given".into());
    }
    Ok(ids)
}

/// Largest `--max-new-tokens` / `--new-tokens` / `--prompt-len` accepted: far beyond any
/// context, small enough that no position or buffer size computed from it overflows.
pub const MAX_TOKENS: usize = 1 << 20;

fn count(s: &str, what: &str, min: usize, max: usize) -> Result<usize, String> {
    let value: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a {what} (expected an integer in {min}..={max})"))?;
    if !(min..=max).contains(&value) {
        return Err(format!("{what} {value} is outside {min}..={max}"));
    }
    Ok(value)
}

/// A number of tokens: `1..=MAX_TOKENS`.
pub fn parse_tokens(s: &str) -> Result<usize, String> {
    count(s, "token count", 1, MAX_TOKENS)
}

/// A batch size or repetition count: `1..=65536`.
pub fn parse_positive(s: &str) -> Result<usize, String> {
    count(s, "count", 1, 1 << 16)
}

/// `--top-k`: `1..=2^22` (no vocabulary is larger).
pub fn parse_top_k(s: &str) -> Result<usize, String> {
    count(s, "top-k", 1, 1 << 22)
}

fn float_in(s: &str, what: &str, min: f64, max: f64) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number ({what} must be in [{min}, {max}])"))?;
    if !(value.is_finite() && (min..=max).contains(&value)) {
        return Err(format!("{what} {value} is outside [{min}, {max}]"));
    }
    Ok(value)
}

/// `--temperature`: finite, in `[0, 100]` (0 is greedy).
pub fn parse_temperature(s: &str) -> Result<f32, String> {
    float_in(s, "temperature", 0.0, 100.0).map(|v| v as f32)
}

/// A probability such as `--top-p`: in `[0, 1]`.
pub fn parse_probability(s: &str) -> Result<f32, String> {
    float_in(s, "probability", 0.0, 1.0).map(|v| v as f32)
}

/// A probability as f64.
pub fn parse_probability_f64(s: &str) -> Result<f64, String> {
    float_in(s, "probability", 0.0, 1.0)
}

/// Runs `main`, printing an error chain (no backtrace) and exiting with 1 on failure.
pub fn run(main: impl FnOnce() -> Result<()>) {
    if let Err(e) = main() {
        // The chain, skipping causes that a message already quotes.
        let mut message = String::new();
        for cause in e.chain().map(ToString::to_string) {
            if !message.contains(&cause) {
                if !message.is_empty() {
                    message += ": ";
                }
                message += &cause;
            }
        }
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// A flag set by Ctrl-C (the run saves its state and stops at the next prompt or
/// iteration; a second Ctrl-C exits at once).
pub fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current step; run again with --resume to continue");
    });
    flag
}

/// The tokenizer file stored with (or beside) a model, to store with the models a run
/// writes.
pub fn tokenizer_file(model: &Path) -> Option<llama2_burn::import::TokenizerFile> {
    llama2_burn::import::Checkpoint::open(model)
        .ok()?
        .source_tokenizer()
        .ok()
        .flatten()
}

/// Reads a reward model record or `LlamaForSequenceClassification` directory.
pub fn load_reward(path: &Path) -> Result<llama2_burn::reward::RewardModel<Selected>> {
    let (model, _) = llama2_burn::reward::RewardModel::<Selected>::load(path, &backend::device())
        .with_context(|| format!("cannot load reward model {}", path.display()))?;
    Ok(model)
}

/// The rollout and held-out prompt sets of the RLHF examples: the files given, else
/// `examples/data/rlhf_prompts.jsonl` and `rlhf_heldout.jsonl`.
pub fn rlhf_prompt_sets(
    prompts: Option<PathBuf>,
    held_out: Option<PathBuf>,
    tokenizer: &Tokenizer,
    max_seq_len: usize,
) -> Result<(
    Vec<llama2_burn::rlhf::rollout::Prompt>,
    Vec<llama2_burn::rlhf::rollout::Prompt>,
)> {
    use llama2_burn::rlhf::rollout::read_prompts;
    let prompts = prompts.unwrap_or_else(|| data_path("examples/data/rlhf_prompts.jsonl"));
    let held_out = held_out.unwrap_or_else(|| data_path("examples/data/rlhf_heldout.jsonl"));
    Ok((
        read_prompts(&prompts, tokenizer, max_seq_len)?,
        read_prompts(&held_out, tokenizer, max_seq_len)?,
    ))
}

/// Names the reward model(s) of a run in its archive and logs.
pub fn scorer_name(reward: &Path, safety: Option<&Path>) -> String {
    match safety {
        Some(s) => format!("{} + {}", reward.display(), s.display()),
        None => reward.display().to_string(),
    }
}
