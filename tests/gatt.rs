//! Ghost Attention data (paper §3.3) against references we did not write:
//! `tests/data/gatt/cases.json` (`scripts/gen_gatt_cases.py`), with token ids
//! and loss masks from Meta's `chat_completion` prompt building run with the
//! `sentencepiece` package, and transformers' greedy answers of the tiny-chat
//! model for the instruction-augmented contexts.
#![cfg(feature = "train")]

mod common;

use common::{B, data_dir, device};
use llama2_burn::model::Tokenizer;
use llama2_burn::model::chat::{LossOn, Message, Role, encode_dialog};
use llama2_burn::model::generation::GenerationOptions;
use llama2_burn::model::train::IGNORE_INDEX;
use llama2_burn::model::train::data::{SftDataset, read_sft_examples};
use llama2_burn::rlhf::gatt::{
    AssistantSampler, GattConfig, GattDialog, GattExample, Instruction, InstructionJoin,
    InstructionPlacement, LlamaSampler, write_gatt_jsonl,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct RefExample {
    messages: Vec<Message>,
    tokens: Vec<u32>,
    trained: Vec<bool>,
    answer_tokens: Vec<u32>,
}

#[derive(Deserialize)]
struct MaskCase {
    name: String,
    source: Vec<Message>,
    instruction: Instruction,
    join: InstructionJoin,
    placement: InstructionPlacement,
    answers: Vec<String>,
    sampling_contexts: Vec<Vec<Message>>,
    examples: Vec<RefExample>,
}

#[derive(Deserialize)]
struct SamplingCase {
    source: Vec<Message>,
    instruction: Instruction,
    join: InstructionJoin,
    max_new_tokens: usize,
    contexts: Vec<Vec<Message>>,
    context_tokens: Vec<Vec<u32>>,
    answer_tokens: Vec<Vec<u32>>,
    answers: Vec<String>,
}

#[derive(Deserialize)]
struct Cases {
    mask_cases: Vec<MaskCase>,
    sampling: SamplingCase,
}

fn cases() -> Cases {
    let text = std::fs::read_to_string(data_dir().join("gatt/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(data_dir().join("llama2-tokenizer/tokenizer.model")).unwrap()
}

/// Answers turn `k` (the number of user messages in the context, minus one)
/// with a fixed text, and records every context it is given.
struct Scripted {
    answers: Vec<String>,
    contexts: Vec<Vec<Message>>,
}

impl AssistantSampler for Scripted {
    type Error = std::io::Error;

    fn next_message(&mut self, context: &[Message]) -> Result<String, Self::Error> {
        self.contexts.push(context.to_vec());
        let turn = context.iter().filter(|m| m.role == Role::User).count() - 1;
        Ok(self.answers[turn].clone())
    }
}

/// Records the contexts a sampler is asked to answer.
struct Recording<S> {
    inner: S,
    contexts: Vec<Vec<Message>>,
}

impl<S: AssistantSampler> AssistantSampler for Recording<S> {
    type Error = S::Error;

    fn next_message(&mut self, context: &[Message]) -> Result<String, Self::Error> {
        self.contexts.push(context.to_vec());
        self.inner.next_message(context)
    }

    fn next_messages(&mut self, contexts: &[Vec<Message>]) -> Result<Vec<String>, Self::Error> {
        self.contexts.extend_from_slice(contexts);
        self.inner.next_messages(contexts)
    }
}

fn build(case: &MaskCase, per_turn: bool) -> (Vec<GattExample>, Vec<Vec<Message>>) {
    let dialog = GattDialog::new(&case.source, case.instruction.clone()).unwrap();
    let config = GattConfig::new()
        .with_join(case.join.clone())
        .with_placement(case.placement)
        .with_per_turn(per_turn);
    let mut sampler = Scripted {
        answers: case.answers.clone(),
        contexts: Vec::new(),
    };
    let examples = config.build(&mut sampler, &[dialog], |_| {}).unwrap();
    (examples, sampler.contexts)
}

/// The sampling contexts carry the instruction on every user turn; the
/// training examples carry it once; the loss mask covers exactly the final
/// answer and its EOS, token by token, as in the reference.
#[test]
fn gatt_examples_and_masks_match_meta_encoding() {
    let tok = tokenizer();
    let cases = cases();
    assert!(cases.mask_cases.len() >= 2);
    for case in &cases.mask_cases {
        let name = &case.name;
        let (examples, contexts) = build(case, true);
        assert_eq!(contexts, case.sampling_contexts, "{name}");
        for ctx in &contexts {
            for m in ctx.iter().filter(|m| m.role == Role::User) {
                assert!(m.content.contains(&case.instruction.text), "{name}: {m:?}");
            }
        }
        assert_eq!(examples.len(), case.examples.len(), "{name}");
        for (k, (ours, want)) in examples.iter().zip(&case.examples).enumerate() {
            assert_eq!(ours.messages, want.messages, "{name} turn {k}");
            assert_eq!(ours.loss_on, LossOn::LastTurn);
            // The training text appears in exactly one message (the first user
            // turn or the system message), never in a later user turn.
            let holders: Vec<usize> = ours
                .messages
                .iter()
                .enumerate()
                .filter(|(_, m)| m.role != Role::Assistant)
                .filter(|(_, m)| m.content.contains(&case.instruction.training_text))
                .map(|(i, _)| i)
                .collect();
            let first_user = ours.messages.iter().position(|m| m.role == Role::User);
            match case.placement {
                InstructionPlacement::FirstUser => assert_eq!(holders, [first_user.unwrap()]),
                InstructionPlacement::System => {
                    assert_eq!(holders, [0]);
                    assert_eq!(ours.messages[0].role, Role::System);
                }
            }

            let enc = ours.encode(&tok).unwrap();
            assert_eq!(enc.tokens, want.tokens, "{name} turn {k}");
            assert_eq!(enc.is_assistant, want.trained, "{name} turn {k}");
            // Independently of the reference: masked positions are the Meta
            // prompt of the dialog without its last answer, targets are the
            // rest (the answer and EOS).
            let n = ours.messages.len();
            let prompt = encode_dialog(&tok, &ours.messages[..n - 1]).unwrap().tokens;
            assert_eq!(&enc.tokens[..prompt.len()], &prompt[..]);
            let trained: Vec<u32> = enc
                .tokens
                .iter()
                .zip(&enc.is_assistant)
                .filter(|(_, a)| **a)
                .map(|(t, _)| *t)
                .collect();
            assert_eq!(trained, want.answer_tokens, "{name} turn {k}");
            assert_eq!(trained, enc.tokens[prompt.len()..]);
            assert_eq!(*trained.last().unwrap(), tok.eos_id());
            assert_eq!(
                tok.decode(&trained[..trained.len() - 1]).unwrap(),
                format!("{} ", case.answers[k].trim())
            );
        }
        // Without per-turn examples: the full dialog only.
        let (full, _) = build(case, false);
        assert_eq!(full, examples[examples.len() - 1..]);
    }
}

/// Examples written as JSONL are read back by the SFT dataset with the same
/// mask: a target is the next token exactly where the reference trains it.
#[test]
fn gatt_jsonl_trains_only_the_last_turn_in_sft_dataset() {
    let tok = tokenizer();
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatt.jsonl");
    let mut examples = Vec::new();
    let mut refs = Vec::new();
    for case in &cases.mask_cases {
        examples.extend(build(case, true).0);
        refs.extend(case.examples.iter());
    }
    assert_eq!(write_gatt_jsonl(&path, &examples).unwrap(), examples.len());
    let rows = read_sft_examples(&path).unwrap();
    assert_eq!(rows.len(), examples.len());
    for (row, e) in rows.iter().zip(&examples) {
        assert_eq!(
            (row.loss_on, &row.messages),
            (LossOn::LastTurn, &e.messages)
        );
    }

    let longest = refs.iter().map(|r| r.tokens.len()).max().unwrap();
    let data =
        SftDataset::from_files(std::slice::from_ref(&path), &tok, longest - 1, false).unwrap();
    assert_eq!(data.windows().len(), refs.len());
    for (k, (w, r)) in data.windows().iter().zip(&refs).enumerate() {
        let n = r.tokens.len();
        assert_eq!(&w.inputs[..n - 1], &r.tokens[..n - 1], "example {k}");
        for i in 0..longest - 1 {
            let want = if i + 1 < n && r.trained[i + 1] {
                i64::from(r.tokens[i + 1])
            } else {
                IGNORE_INDEX
            };
            assert_eq!(w.targets[i], want, "example {k} target {i}");
        }
        assert_eq!(w.n_targets(), r.answer_tokens.len());
    }

    // Packed together, the targets are still only the last answers.
    let total: usize = refs.iter().map(|r| r.tokens.len()).sum();
    let packed = SftDataset::from_files(&[path], &tok, total, true).unwrap();
    assert_eq!(packed.windows().len(), 1);
    let expected: usize = refs.iter().map(|r| r.answer_tokens.len()).sum();
    assert_eq!(packed.windows()[0].n_targets(), expected);
}

/// Sampling through `LlamaSampler` on the tiny-chat model: the contexts are
/// the reference's (instruction on every user turn, the answers so far) and
/// greedy answers equal transformers' for those contexts.
#[test]
fn llama_sampler_answers_match_transformers_greedy() {
    let tok = tokenizer();
    let case = cases().sampling;
    let model =
        llama2_burn::import::load_model::<B>(data_dir().join("tiny-chat"), &device()).unwrap();
    let options = GenerationOptions::greedy(case.max_new_tokens);
    let mut sampler = Recording {
        inner: LlamaSampler::new(&model, &tok, options).unwrap(),
        contexts: Vec::new(),
    };
    let dialog = GattDialog::new(&case.source, case.instruction.clone()).unwrap();
    let config = GattConfig::new().with_join(case.join.clone());
    let examples = config.build(&mut sampler, &[dialog], |_| {}).unwrap();

    assert_eq!(sampler.contexts, case.contexts);
    for (ctx, want) in sampler.contexts.iter().zip(&case.context_tokens) {
        assert_eq!(&encode_dialog(&tok, ctx).unwrap().tokens, want);
    }
    let [example] = &examples[..] else {
        panic!("{} examples", examples.len())
    };
    let answers: Vec<&str> = example
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(answers, case.answers);
    for (answer, ids) in answers.iter().zip(&case.answer_tokens) {
        assert_eq!(tok.decode(ids).unwrap(), *answer);
    }
    // The training example: instruction's training text in the first user
    // turn only, the dialog's system message kept.
    assert_eq!(example.messages[0], case.source[0]);
    assert!(
        example.messages[1]
            .content
            .starts_with(&case.instruction.training_text)
    );
    assert!(
        example.messages[2..]
            .iter()
            .all(|m| !m.content.contains(&case.instruction.training_text)
                && !m.content.contains(&case.instruction.text))
    );
}

/// With temperature sampling, a seed reproduces the answers, another seed
/// changes them, and consecutive requests do not repeat one random stream;
/// the reserved chat tags stop generation.
#[test]
fn llama_sampler_seeds_reproduce_runs() {
    use llama2_burn::model::chat::SPECIAL_TAGS;
    use llama2_burn::model::generation::SamplerConfig;

    let tok = tokenizer();
    let case = cases().sampling;
    let model =
        llama2_burn::import::load_model::<B>(data_dir().join("tiny-chat"), &device()).unwrap();
    let dialog = GattDialog::new(&case.source, case.instruction.clone()).unwrap();
    // The same dialog twice in one batch, asked for three turns.
    let dialogs = [dialog.clone(), dialog];
    let run = |seed: u64| {
        let options =
            GenerationOptions::new(12).with_sampler(SamplerConfig::new(1.0, 1.0).with_seed(seed));
        let mut sampler = LlamaSampler::new(&model, &tok, options).unwrap();
        for tag in SPECIAL_TAGS {
            assert!(sampler.options().stop_sequences.iter().any(|s| s == tag));
        }
        GattConfig::new()
            .sample_answers(&mut sampler, &dialogs, &mut |_| {})
            .unwrap()
    };
    let a = run(3);
    assert_eq!(a, run(3));
    assert_ne!(a, run(4));
    // Rows of a request draw from different streams, requests from
    // different seeds.
    assert_ne!(a[0], a[1]);
    let options =
        GenerationOptions::new(12).with_sampler(SamplerConfig::new(1.0, 1.0).with_seed(3));
    let mut sampler = LlamaSampler::new(&model, &tok, options).unwrap();
    let context = &case.contexts[0];
    let first = sampler.next_message(context).unwrap();
    assert_eq!(first, a[0][0]);
    assert_ne!(sampler.next_message(context).unwrap(), first);
}
