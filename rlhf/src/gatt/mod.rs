//! Ghost Attention (paper §3.3, "System Message for Multi-Turn Consistency"):
//! fine-tuning data that teaches the model to respect an instruction over a
//! whole conversation.
//!
//! An instruction is concatenated to every user message of a multi-turn
//! dialog, the answers are sampled from the latest model with that context,
//! and the training example keeps the instruction in the first turn only,
//! with the loss on the last answer only.
//!
//! | file | contents |
//! |---|---|
//! | [`constraint`] | hobby / language / public-figure constraints, their phrasings and built-in lists |
//! | [`instruction`] | [`Instruction`]: sampling text and (less verbose) training text |
//! | [`generator`] | [`InstructionGenerator`]: seeded synthetic instructions and combinations, or user-given ones |
//! | [`augment`] | [`augment_for_sampling`]: the instruction on every user message |
//! | [`dialog`] | [`GattDialog`]: the user turns of a source dialog and its instruction |
//! | [`sampler`] | [`AssistantSampler`]: the next assistant message of a dialog |
//! | [`llama_sampler`] | [`LlamaSampler`]: Meta's `chat_completion` on a Llama model |
//! | [`example`] | [`GattExample`]: the training dialog, trained on its last answer |
//! | [`builder`] | [`GattConfig::build`]: sampling turn by turn and building the examples |
//! | [`jsonl`] | reading source dialogs, writing examples atomically |
//! | [`error`] | [`GattError`], [`SamplerError`] |
//!
//! ```no_run
//! use llama2::generation::{GenerationOptions, SamplerConfig};
//! use llama2_rlhf::gatt::{GattConfig, InstructionGeneratorConfig, LlamaSampler, read_gatt_dialogs, write_gatt_jsonl};
//! # fn run<B: burn::tensor::backend::Backend>(model: &llama2::Llama<B>, tok: &llama2::Tokenizer)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let mut instructions = InstructionGeneratorConfig::new().with_seed(1).init()?;
//! let dialogs = read_gatt_dialogs("dialogs.jsonl".as_ref(), &mut instructions)?;
//! let options = GenerationOptions::new(256).with_sampler(SamplerConfig::new(0.7, 0.9).with_seed(1));
//! let mut sampler = LlamaSampler::new(model, tok, options)?;
//! let examples = GattConfig::new().build(&mut sampler, &dialogs, |_| {})?;
//! write_gatt_jsonl("gatt.jsonl".as_ref(), &examples)?;
//! # Ok(()) }
//! ```

pub mod augment;
pub mod builder;
pub mod constraint;
pub mod dialog;
pub mod error;
pub mod example;
pub mod generator;
pub mod instruction;
pub mod jsonl;
pub mod llama_sampler;
pub mod sampler;

pub use augment::{InstructionJoin, InstructionPosition, augment_for_sampling};
pub use builder::GattConfig;
pub use constraint::{Constraint, ConstraintFamily, ConstraintLists};
pub use dialog::GattDialog;
pub use error::{GattError, SamplerError};
pub use example::{GattExample, InstructionPlacement, training_dialog};
pub use generator::{InstructionGenerator, InstructionGeneratorConfig, InstructionKind};
pub use instruction::Instruction;
pub use jsonl::{GattWriter, read_gatt_dialogs, write_gatt_jsonl};
pub use llama_sampler::LlamaSampler;
pub use sampler::AssistantSampler;
