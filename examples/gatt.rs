//! Ghost Attention data (paper §3.3): samples the answers of multi-turn
//! dialogs with an instruction concatenated to every user turn, and writes
//! fine-tuning rows that keep the instruction in the first turn only and
//! train the last answer only (`"loss_on": "last_turn"`).
//!
//! ```sh
//! # the committed tiny model (gibberish answers) and example dialogs, on CPU:
//! cargo run --release --example gatt
//! # a Llama 2-Chat model, then fine-tuning on the result:
//! cargo run --release --example gatt -- --model llama-2-7b-chat/ --tokenizer tokenizer.model \
//!     --data dialogs.jsonl --out gatt.jsonl --temperature 0.7 --per-turn
//! cargo run --release --example finetune -- --model llama-2-7b-chat/ \
//!     --tokenizer tokenizer.model --data gatt.jsonl
//! ```

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use llama2_burn::model::generation::{GenerationOptions, SamplerConfig};
use llama2_burn::rlhf::gatt::{
    ConstraintLists, GattConfig, GattWriter, Instruction, InstructionGenerator,
    InstructionGeneratorConfig, InstructionJoin, InstructionPlacement, InstructionPosition,
    LlamaSampler, read_gatt_dialogs,
};

/// Builds Ghost Attention fine-tuning data from multi-turn dialogs.
///
/// Each row of --data is {"messages": [...]} (the assistant turns are sampled
/// again), optionally with its own "instruction". Other rows get a synthetic
/// instruction (hobby, language, public figure or a combination; the training
/// text is the less verbose form half of the time), or one drawn from
/// --instructions.
#[derive(Parser, Debug)]
#[command(verbatim_doc_comment)]
struct Args {
    /// A Burn record file, a Meta or Hugging Face directory, or a Hub repo id (org/name).
    #[arg(long, default_value = common::COMMITTED_MODEL)]
    model: PathBuf,
    /// SentencePiece tokenizer.model (or tokenizer.json), or a Hub repo id.
    /// [default: Meta's Llama 2 tokenizer, embedded in the binary]
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Source dialogs (JSONL); default: examples/data/gatt_dialogs.jsonl.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output JSONL, written atomically.
    #[arg(long, default_value = "gatt.jsonl")]
    out: PathBuf,
    /// Instructions to draw from instead of synthetic ones: a text file, one per line.
    #[arg(long)]
    instructions: Option<PathBuf>,
    /// Hobby / language / public-figure lists (JSON) for synthetic instructions.
    #[arg(long)]
    constraint_lists: Option<PathBuf>,
    /// Probability of the less verbose training text ("Figure: Napoleon.").
    #[arg(long, default_value_t = 0.5, value_parser = common::parse_probability_f64)]
    terse_probability: f64,
    /// Where the instruction goes in the training example.
    #[arg(long, value_enum, default_value_t = Placement::FirstUser)]
    placement: Placement,
    /// Which side of a user message the instruction is concatenated to.
    #[arg(long, value_enum, default_value_t = Position::Before)]
    position: Position,
    /// Between the instruction and the message.
    #[arg(long, default_value = "\n")]
    separator: String,
    /// One example per turn instead of one per dialog.
    #[arg(long)]
    per_turn: bool,
    /// Dialogs sampled together.
    #[arg(long, default_value_t = 8, value_parser = common::parse_positive)]
    batch: usize,
    /// Maximum number of tokens per answer.
    #[arg(long, default_value_t = 64, value_parser = common::parse_tokens)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7, value_parser = common::parse_temperature)]
    temperature: f32,
    /// Nucleus sampling threshold in [0, 1].
    #[arg(long, default_value_t = 0.9, value_parser = common::parse_probability)]
    top_p: f32,
    /// Seed of the instructions and of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Placement {
    FirstUser,
    System,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Position {
    Before,
    After,
}

fn main() {
    common::run(|| real_main(Args::parse()));
}

fn instructions(args: &Args) -> Result<InstructionGenerator> {
    if let Some(path) = &args.instructions {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read instructions {}", path.display()))?;
        let list: Vec<Instruction> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(Instruction::new)
            .collect();
        return InstructionGenerator::from_instructions(list, args.seed)
            .with_context(|| format!("instructions {}", path.display()));
    }
    let lists = match &args.constraint_lists {
        Some(path) => ConstraintLists::load(path)?,
        None => ConstraintLists::default(),
    };
    Ok(InstructionGeneratorConfig::new()
        .with_seed(args.seed)
        .with_terse_probability(args.terse_probability)
        .init_with_lists(lists)?)
}

fn real_main(args: Args) -> Result<()> {
    common::init_logging();
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| common::data_path("examples/data/gatt_dialogs.jsonl"));
    let mut generator = instructions(&args)?;
    let dialogs = read_gatt_dialogs(&data, &mut generator)?;
    if dialogs.is_empty() {
        bail!("{} holds no dialog", data.display());
    }
    let config = GattConfig::new()
        .with_join(
            InstructionJoin::new()
                .with_position(match args.position {
                    Position::Before => InstructionPosition::Before,
                    Position::After => InstructionPosition::After,
                })
                .with_separator(args.separator.clone()),
        )
        .with_placement(match args.placement {
            Placement::FirstUser => InstructionPlacement::FirstUser,
            Placement::System => InstructionPlacement::System,
        })
        .with_per_turn(args.per_turn);

    let mut writer = GattWriter::create(&args.out)?;
    let tokenizer = match &args.tokenizer {
        Some(path) => common::load_tokenizer(path)?,
        None => common::default_tokenizer()?,
    };
    let model = common::load_model(&args.model)?;
    let options = GenerationOptions::new(args.max_new_tokens)
        .with_sampler(SamplerConfig::new(args.temperature, args.top_p).with_seed(args.seed));
    let mut sampler = LlamaSampler::new(&model, &tokenizer, options)?;

    let turns: usize = dialogs.iter().map(|d| d.turns()).sum();
    let bar = ProgressBar::new(turns as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "sampling [{bar:40}] {pos}/{len} answers {elapsed} {wide_msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    for (b, chunk) in dialogs.chunks(args.batch).enumerate() {
        let examples = config
            .build(&mut sampler, chunk, |n| bar.inc(n as u64))
            .with_context(|| format!("dialogs {}..", b * args.batch))?;
        for e in &examples {
            writer.write(e)?;
        }
        bar.set_message(format!("{} examples", writer.rows()));
    }
    bar.finish();
    let rows = writer.finish()?;
    println!(
        "{} dialogs, {turns} sampled answers → {rows} examples in {}",
        dialogs.len(),
        args.out.display()
    );
    println!(
        "fine-tune with: cargo run --release --example finetune -- --data {}",
        args.out.display()
    );
    Ok(())
}
