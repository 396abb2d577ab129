//! Converts a Meta checkpoint directory (`params.json`, `consolidated.NN.pth`) or a Hugging
//! Face directory (`config.json`, safetensors) into a llama2-burn record file, and optionally
//! exports it back to Hugging Face safetensors.
//!
//! ```text
//! cargo run --release --example import -- --meta llama-2-7b --out llama-2-7b.bpk --dtype bf16
//! cargo run --release --example import -- --hf Llama-2-7b-hf --out llama-2-7b.bpk
//! cargo run --release --example import -- --hf meta-llama/Llama-2-7b-hf --out llama-2-7b.bpk
//! cargo run --release --example import -- --record llama-2-7b.bpk --export-hf out-hf
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use llama2_burn::import::hub::{self, Hub, HubOptions};
use llama2_burn::import::{Checkpoint, StorageDtype};

#[derive(Parser, Debug)]
#[command(
    about = "Import Llama 2 weights into a llama2-burn record, or export one to Hugging Face safetensors"
)]
#[command(group(ArgGroup::new("source").required(true).args(["meta", "hf", "record"])))]
struct Args {
    /// Meta checkpoint directory (params.json + consolidated.NN.pth).
    #[arg(long)]
    meta: Option<PathBuf>,
    /// Hugging Face directory (config.json + model.safetensors or an index), or a
    /// Hugging Face Hub repo id (org/name: the local HF cache, else a download).
    #[arg(long)]
    hf: Option<PathBuf>,
    /// Revision (branch, tag or commit hash) of an --hf repo id.
    #[arg(long, default_value = hub::DEFAULT_REVISION)]
    revision: String,
    /// An existing llama2-burn record file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Record file to write.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Hugging Face directory to write (config.json + model.safetensors).
    #[arg(long)]
    export_hf: Option<PathBuf>,
    /// Precision of the written weights: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: StorageDtype,
    /// Scan every tensor for NaN and infinities and refuse the import at the first one
    /// (`--check-finite false` skips the scan).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    check_finite: bool,
}

fn bar(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

fn run(args: Args) -> Result<(), llama2_burn::import::ImportError> {
    let hf = match &args.hf {
        Some(hf) => Some(Hub::new(HubOptions::from_env()).locate_model(hf, &args.revision)?),
        None => None,
    };
    let source = args
        .meta
        .or(hf)
        .or(args.record)
        .expect("clap requires a source");
    let checkpoint = Checkpoint::open(&source)?.with_check_finite(args.check_finite);
    let config = &checkpoint.config;
    eprintln!(
        "{}: {:?}, {} layers, dim {}, {} heads ({} kv), vocab {}, {:.1}M parameters",
        source.display(),
        checkpoint.format,
        config.n_layers,
        config.dim,
        config.n_heads,
        config.n_kv_heads,
        config.vocab_size,
        config.num_params() as f64 / 1e6
    );
    let total = checkpoint.params().len();
    if let Some(out) = &args.out {
        let progress = bar(total, "record");
        let p = progress.clone();
        checkpoint.save_record_with_progress(out, args.dtype, move |done, _, name| {
            p.set_position(done as u64);
            p.set_message(name.to_string());
        })?;
        progress.finish_with_message(format!("{} ({})", out.display(), args.dtype));
    }
    if let Some(dir) = &args.export_hf {
        eprintln!(
            "exporting {total} tensors to {} ({})",
            dir.display(),
            args.dtype
        );
        checkpoint.save_hf(dir, args.dtype)?;
        eprintln!("wrote {}", dir.display());
    }
    if args.out.is_none() && args.export_hf.is_none() {
        eprintln!(
            "checked {total} tensors' names, shapes and dtypes (give --out or --export-hf to convert)"
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
