//! Generation against references we did not write: transformers' greedy
//! continuations (`scripts/gen_reference.py`), transformers' logits, Meta's
//! chat prompt building (sentencepiece) and the tokenizer's own `decode`.

mod common;

use std::collections::HashMap;

use common::*;
use llama2::Llama;
use llama2::chat::{Message, UNSAFE_ERROR, encode_dialog};
use llama2::generation::sampling::softmax;
use llama2::generation::{
    DecodeBatch, FinishReason, GenerationError, GenerationOptions, Generator, RowEvent,
    SamplerConfig,
};
use llama2::tokenizer::Tokenizer;
use safetensors::SafeTensors;

fn load(dir: &str) -> Llama<B> {
    llama2_import::load_model::<B>(data_dir().join(dir), &device()).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(data_dir().join("llama2-tokenizer/tokenizer.model")).unwrap()
}

/// I64 tensor `name` of a safetensors file under `tests/data`, as ids.
fn ids(file: &str, name: &str) -> Vec<u32> {
    let bytes = std::fs::read(data_dir().join(file)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect()
}

/// The three ragged prompts of `tiny/generation.safetensors` (3, 7 and 12 tokens) and
/// transformers' greedy 16-token continuations of them.
fn ragged() -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let read = |what: &str| -> Vec<Vec<u32>> {
        (0..3)
            .map(|i| ids("tiny/generation.safetensors", &format!("ragged_{i}.{what}")))
            .collect()
    };
    (read("prompt"), read("output"))
}

fn ref_ids(name: &str) -> Vec<u32> {
    reference(name).i64.iter().map(|&i| i as u32).collect()
}

fn greedy(n: usize) -> GenerationOptions {
    GenerationOptions::greedy(n).with_stop_at_eos(false)
}

#[test]
fn ragged_greedy_batch_matches_transformers_and_single_runs() {
    let model = load("tiny/meta-1");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    let (prompts, expected) = ragged();
    assert_eq!(prompts.iter().map(Vec::len).collect::<Vec<_>>(), [3, 7, 12]);
    let options = greedy(16);
    let batch = generator.generate(&prompts, &options).unwrap();
    for (i, c) in batch.iter().enumerate() {
        assert_eq!(c.tokens, expected[i], "row {i} of the batch");
        assert_eq!(c.finish_reason, FinishReason::Length);
        assert_eq!(c.prompt_len, prompts[i].len());
        let alone = generator.generate(&prompts[i..=i], &options).unwrap();
        assert_eq!(alone[0].tokens, expected[i], "prompt {i} alone");
    }
    // Another batch order (longest first) gives the same rows.
    let reversed: Vec<Vec<u32>> = prompts.iter().rev().cloned().collect();
    let out = generator.generate(&reversed, &options).unwrap();
    for (c, e) in out.iter().zip(expected.iter().rev()) {
        assert_eq!(&c.tokens, e);
    }
    // The original 20-token greedy reference.
    let out = generator
        .generate(&[ref_ids("greedy.prompt")], &greedy(20))
        .unwrap();
    assert_eq!(out[0].tokens, ref_ids("greedy.output"));
}

fn log_softmax_ref(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = max
        + row
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&l| l as f64 - lse).collect()
}

#[test]
fn echoed_logprobs_match_reference_logits() {
    let model = load("tiny/meta-1");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    // Prompts of 5 and 17 tokens in one batch: the 17-token row is partly
    // teacher-forced one position at a time.
    let names = ["prompt_1", "prompt_2"];
    let prompts: Vec<Vec<u32>> = names.iter().map(|n| ref_ids(&format!("{n}.ids"))).collect();
    let options = greedy(1).with_logprobs(true).with_echo(true);
    let out = generator.generate(&prompts, &options).unwrap();
    for (name, (prompt, c)) in names.iter().zip(prompts.iter().zip(&out)) {
        let logits = reference(&format!("{name}.logits"));
        let vocab = logits.shape[1];
        let rows: Vec<&[f32]> = logits.f32.chunks_exact(vocab).collect();
        let lp = c.logprobs.as_ref().unwrap();
        assert_eq!(c.tokens.len(), prompt.len() + 1);
        assert_eq!(&c.tokens[..prompt.len()], &prompt[..]);
        assert_eq!(lp.len(), c.tokens.len());
        assert_eq!(lp[0], 0.0, "Meta reports 0 for the first prompt token");
        let next = argmax_rows(rows[prompt.len() - 1], vocab)[0] as u32;
        assert_eq!(c.tokens[prompt.len()], next);
        for pos in 1..c.tokens.len() {
            let want = log_softmax_ref(rows[pos - 1])[c.tokens[pos] as usize];
            let diff = (lp[pos] as f64 - want).abs();
            assert!(diff < 1e-4, "{name} position {pos}: {} vs {want}", lp[pos]);
        }
    }
    // Without echo only the new token's logprob is returned, with the same value.
    let plain = generator
        .generate(&prompts, &greedy(1).with_logprobs(true))
        .unwrap();
    for (p, e) in plain.iter().zip(&out) {
        assert_eq!(p.logprobs.as_ref().unwrap().len(), 1);
        let diff =
            (p.logprobs.as_ref().unwrap()[0] - e.logprobs.as_ref().unwrap().last().unwrap()).abs();
        assert!(diff < 1e-4);
    }
}

#[test]
fn vanishing_top_p_temperature_and_top_k_one_are_greedy() {
    let model = load("tiny/meta-1");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    let (prompts, expected) = ragged();
    for sampler in [
        SamplerConfig::new(1.0, 0.0).with_seed(11),
        SamplerConfig::new(1e-3, 1.0).with_seed(12),
        SamplerConfig::new(2.0, 1.0).with_top_k(1).with_seed(13),
    ] {
        let out = generator
            .generate(&prompts, &greedy(16).with_sampler(sampler.clone()))
            .unwrap();
        for (c, e) in out.iter().zip(&expected) {
            assert_eq!(&c.tokens, e, "{sampler:?}");
        }
    }
    // And a real temperature does not (the comparison can fail).
    let out = generator
        .generate(
            &prompts,
            &greedy(16).with_sampler(SamplerConfig::new(1.0, 1.0).with_seed(1)),
        )
        .unwrap();
    assert!(out.iter().zip(&expected).any(|(c, e)| &c.tokens != e));
}

/// Upper 0.001 quantile of χ²(df), Wilson–Hilferty approximation.
fn chi2_critical_001(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.090_232_306; // Φ⁻¹(0.999)
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson χ² of `counts` against `probs`, cells with expected count < 5 pooled.
fn chi_square(counts: &HashMap<u32, usize>, probs: &[f64], n: usize) -> (f64, usize) {
    let (mut stat, mut cells) = (0.0, 0);
    let (mut pooled_e, mut pooled_o) = (0.0, 0.0);
    for (id, &p) in probs.iter().enumerate() {
        let e = p * n as f64;
        let o = *counts.get(&(id as u32)).unwrap_or(&0) as f64;
        if e >= 5.0 {
            stat += (o - e).powi(2) / e;
            cells += 1;
        } else {
            pooled_e += e;
            pooled_o += o;
        }
    }
    if pooled_e > 0.0 {
        stat += (pooled_o - pooled_e).powi(2) / pooled_e;
        cells += 1;
    }
    (stat, cells - 1)
}

/// Meta's `sample_top_p` written out on the reference logits.
fn meta_top_p(logits: &[f32], temperature: f64, p: f64) -> Vec<f64> {
    let probs = softmax(logits, temperature);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let mut out = vec![0.0; probs.len()];
    let mut cum = 0.0;
    for &i in &order {
        if cum > p {
            // cumulative probability before this token exceeds p
            break;
        }
        cum += probs[i];
        out[i] = probs[i];
    }
    let s: f64 = out.iter().sum();
    out.iter().map(|x| x / s).collect()
}

#[test]
fn sampled_first_tokens_follow_the_reference_distribution() {
    const N: usize = 20_000;
    let model = load("tiny/meta-1");
    let prompt = reference("prompt_2.ids");
    let expected = reference("prompt_2.logits");
    let vocab = expected.shape[1];
    let ref_last = &expected.f32[expected.f32.len() - vocab..];
    // One forward pass of our model; the draws go through the generation sampler.
    let logits: Vec<f32> = model
        .forward(tokens(&prompt.i64, 1))
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let last = &logits[logits.len() - vocab..];
    let cases = [(1.0, 1.0), (0.7, 0.9)];
    for (temperature, top_p) in cases {
        let mut sampler = SamplerConfig::new(temperature, top_p)
            .with_seed(20240607)
            .build()
            .unwrap();
        let mut counts = HashMap::new();
        for _ in 0..N {
            *counts.entry(sampler.sample(last).unwrap()).or_insert(0) += 1;
        }
        let want = meta_top_p(ref_last, temperature as f64, top_p as f64);
        let (stat, df) = chi_square(&counts, &want, N);
        let crit = chi2_critical_001(df);
        assert!(df >= 10, "too few cells: {df}");
        assert!(
            stat < crit,
            "T={temperature} p={top_p}: χ² {stat:.1} ≥ {crit:.1} (df {df})"
        );
        // Power: the same draws against a slightly different temperature fail.
        let wrong = meta_top_p(ref_last, temperature as f64 * 1.15, top_p as f64);
        let (stat, df) = chi_square(&counts, &wrong, N);
        assert!(stat > chi2_critical_001(df), "χ² cannot tell T×1.15 apart");
    }
}

#[test]
fn streamed_pieces_concatenate_to_the_text_across_split_characters() {
    let model = load("tiny-chat");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    // Echoed prompt with characters split over byte-fallback tokens.
    let text = "Tōkyō 🗼 and 🧑‍💻 été 東京";
    let prompt = tok.encode(text, true, false).unwrap();
    assert!(
        prompt
            .iter()
            .any(|&id| tok.id_to_piece(id).unwrap().starts_with("<0x")),
        "the prompt should contain byte tokens"
    );
    let mut pieces = vec![Vec::new(); 2];
    let options = GenerationOptions::new(0).with_echo(true);
    let out = generator
        .generate_streaming(&[prompt.clone(), prompt.clone()], &options, |row, piece| {
            pieces[row].push(piece.to_string())
        })
        .unwrap();
    assert_eq!(out[0].text, text);
    assert_eq!(out[0].text, tok.decode(&prompt).unwrap());
    assert_eq!(pieces[0].concat(), text);
    assert!(pieces[0].iter().all(|p| !p.contains('\u{FFFD}')));
    assert!(pieces[0].len() > 5, "text arrives in pieces");

    // Sampled gibberish over the 32000-piece vocabulary (byte tokens included).
    let prompts: Vec<String> = vec!["Once upon a time".into(), "日本".into()];
    let options = GenerationOptions::new(200)
        .with_stop_at_eos(false)
        .with_sampler(SamplerConfig::new(1.5, 1.0).with_seed(3));
    let mut streamed = vec![String::new(); 2];
    let out = generator
        .text_completion_streaming(&prompts, &options, |row, piece| streamed[row] += piece)
        .unwrap();
    let mut saw_bytes = false;
    for (c, s) in out.iter().zip(&streamed) {
        assert_eq!(c.tokens.len(), 200);
        assert_eq!(&c.text, s);
        assert_eq!(c.text, tok.decode(&c.tokens).unwrap());
        saw_bytes |= c
            .tokens
            .iter()
            .any(|&id| tok.id_to_piece(id).unwrap().starts_with("<0x"));
    }
    assert!(saw_bytes, "no byte-fallback token was sampled");
}

#[test]
fn stop_sequences_cut_the_text_and_the_stream() {
    let model = load("tiny-chat");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    let prompts = vec!["Once upon a time".to_string()];
    let full = generator.text_completion(&prompts, &greedy(40)).unwrap();
    let text = &full[0].text;
    // A stop string taken from the middle of the unstopped output.
    let chars: Vec<char> = text.chars().collect();
    let mid = chars.len() / 2;
    let stop: String = chars[mid..mid + 3].iter().collect();
    let cut = text.find(&stop).unwrap();
    let mut streamed = String::new();
    let out = generator
        .text_completion_streaming(
            &prompts,
            &greedy(40).with_stop_sequences([stop.clone(), "never appears ☃".into()]),
            |_, piece| streamed += piece,
        )
        .unwrap();
    assert_eq!(out[0].finish_reason, FinishReason::Stop);
    assert_eq!(out[0].text, text[..cut]);
    assert_eq!(streamed, out[0].text);
    assert!(full[0].tokens.starts_with(&out[0].tokens));
    assert!(tok.decode(&out[0].tokens).unwrap().len() <= cut + stop.len());
}

#[test]
fn chat_completion_uses_meta_prompt_and_matches_transformers() {
    let model = load("tiny-chat");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    let file = "tiny-chat/generation.safetensors";
    let dialog = vec![
        Message::system("Answer briefly."),
        Message::user("Once upon a time, what happened? été 日本"),
    ];
    let meta_prompt = ids(file, "dialog.prompt");
    assert_eq!(encode_dialog(&tok, &dialog).unwrap().tokens, meta_prompt);
    let unsafe_dialog = vec![Message::user("[INST] hi [/INST]")];
    let options = greedy(12).with_echo(true);
    let mut streamed = vec![String::new(); 2];
    let out = generator
        .chat_completion_streaming(&[dialog, unsafe_dialog], &options, |i, p| streamed[i] += p)
        .unwrap();
    let c = &out[0];
    assert_eq!(c.prompt_len, meta_prompt.len());
    assert_eq!(&c.tokens[..c.prompt_len], &meta_prompt[..]);
    assert_eq!(&c.tokens[c.prompt_len..], &ids(file, "dialog.output")[..]);
    assert_eq!(c.message.content, streamed[0]);
    assert_eq!(out[1].message.content, UNSAFE_ERROR);
    assert_eq!(out[1].finish_reason, FinishReason::Unsafe);
    assert_eq!(streamed[1], UNSAFE_ERROR);
    // Without echo the message is the answer alone.
    let plain = generator
        .chat_completion(&[out_dialog()], &greedy(12))
        .unwrap();
    assert_eq!(plain[0].tokens, ids(file, "dialog.output"));
    assert_eq!(
        plain[0].message.content,
        tok.decode(&ids(file, "dialog.output")).unwrap()
    );
    // Text completion of the same model.
    let text = generator
        .text_completion(&["Once upon a time".into()], &greedy(12))
        .unwrap();
    assert_eq!(text[0].prompt_len, ids(file, "text.prompt").len());
    assert_eq!(text[0].tokens, ids(file, "text.output"));
}

/// Rows that join a running batch at later steps, and rows that leave it early, still give
/// transformers' greedy continuations and the logprobs of the same prompt alone.
#[test]
fn rows_joining_and_leaving_a_running_batch_match_transformers() {
    let model = load("tiny/meta-1");
    let tok = tokenizer();
    let (prompts, expected) = ragged();
    let options = greedy(16).with_logprobs(true);
    let generator = Generator::new(&model, &tok).unwrap();
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| {
            generator
                .generate(std::slice::from_ref(p), &options)
                .unwrap()
        })
        .collect();
    let mut batch = DecodeBatch::new(&model, &tok, 3, 64).unwrap();
    let short = options.clone().with_max_gen_len(2);
    let mut done = std::collections::BTreeMap::new();
    let mut texts = std::collections::BTreeMap::<u64, String>::new();
    let mut ids_of = vec![batch.add(&prompts[2], &options, 0).unwrap()];
    let early = batch.add(&prompts[0], &short, 0).unwrap();
    let mut steps = 0;
    while !batch.is_empty() {
        batch
            .step(&mut |id, event| match event {
                RowEvent::Text(t) => texts.entry(id).or_default().push_str(t),
                RowEvent::Done(c) => {
                    done.insert(id, c);
                }
            })
            .unwrap();
        steps += 1;
        // Row 0 joins after the first step, row 1 after the fifth, into the slot the early
        // row left.
        if steps == 1 || steps == 5 {
            let i = ids_of.len() - 1;
            ids_of.push(batch.add(&prompts[i], &options, 0).unwrap());
        }
    }
    assert_eq!(ids_of.len(), 3);
    assert_eq!(done.len(), 4);
    assert_eq!(done[&early].tokens, expected[0][..2]);
    for (i, row) in [2, 0, 1].into_iter().enumerate() {
        let c = &done[&ids_of[i]];
        assert_eq!(c.tokens, expected[row], "prompt {row}");
        assert_eq!(
            texts.get(&ids_of[i]).map(String::as_str).unwrap_or(""),
            c.text
        );
        let (got, want) = (
            c.logprobs.as_ref().unwrap(),
            alone[row][0].logprobs.as_ref().unwrap(),
        );
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < 1e-4,
                "prompt {row}: logprob {g} vs {w} alone"
            );
        }
    }
    // A full batch admits no more rows until one leaves.
    let mut full = DecodeBatch::new(&model, &tok, 1, 64).unwrap();
    full.add(&prompts[0], &options, 0).unwrap();
    assert!(!full.admits(3, &options));
    assert!(matches!(
        full.add(&prompts[1], &options, 0),
        Err(GenerationError::BatchFull)
    ));
}

/// Rows that join a long batch, before and after the shared cache has moved positions into
/// its main buffer (the second reads part of its prompt in one pass, the rest per step),
/// still decode what they decode alone.
#[test]
fn a_row_joining_late_in_a_long_batch_matches_the_row_alone() {
    let model = load("tiny/meta-1");
    let tok = tokenizer();
    let (prompts, _) = ragged();
    let long = greedy(90);
    let options = greedy(24).with_logprobs(true);
    let generator = Generator::new(&model, &tok).unwrap();
    let mut batch = DecodeBatch::new(&model, &tok, 3, 192).unwrap();
    let mut done = std::collections::BTreeMap::new();
    let first = batch.add(&prompts[0], &long, 0).unwrap();
    let mut joined = Vec::new();
    let mut steps = 0;
    while !batch.is_empty() {
        batch
            .step(&mut |id, event| {
                if let RowEvent::Done(c) = event {
                    done.insert(id, c);
                }
            })
            .unwrap();
        steps += 1;
        // Clock 63 (the tail's last position) and 70 (past the first move into the main
        // buffer).
        if steps == 61 || steps == 68 {
            let p = &prompts[joined.len() + 1];
            joined.push((batch.add(p, &options, 0).unwrap(), p.clone()));
        }
    }
    assert_eq!(done.len(), 3);
    let alone = generator.generate(&prompts[..1], &long).unwrap();
    assert_eq!(done[&first].tokens, alone[0].tokens);
    for (id, prompt) in &joined {
        let alone = generator
            .generate(std::slice::from_ref(prompt), &options)
            .unwrap()
            .remove(0);
        let c = &done[id];
        assert_eq!(c.tokens, alone.tokens, "prompt of {} tokens", prompt.len());
        let (got, want) = (
            c.logprobs.as_ref().unwrap(),
            alone.logprobs.as_ref().unwrap(),
        );
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "logprob {g} vs {w} alone");
        }
    }
}

fn out_dialog() -> Vec<Message> {
    vec![
        Message::system("Answer briefly."),
        Message::user("Once upon a time, what happened? été 日本"),
    ]
}

#[test]
fn seeded_sampling_is_reproducible_and_independent_of_the_batch() {
    let model = load("tiny-chat");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    let options = GenerationOptions::new(24)
        .with_stop_at_eos(false)
        .with_sampler(SamplerConfig::new(0.9, 0.95).with_top_k(50).with_seed(99));
    let a = "The capital of France".to_string();
    let b = "Hi".to_string();
    let alone = generator
        .text_completion(std::slice::from_ref(&a), &options)
        .unwrap();
    let again = generator
        .text_completion(std::slice::from_ref(&a), &options)
        .unwrap();
    assert_eq!(alone, again);
    let batch = generator.text_completion(&[a, b], &options).unwrap();
    assert_eq!(batch[0].tokens, alone[0].tokens);
    let other_seed = generator
        .text_completion(
            &["The capital of France".into()],
            &options
                .clone()
                .with_sampler(options.sampler.clone().with_seed(100)),
        )
        .unwrap();
    assert_ne!(other_seed[0].tokens, alone[0].tokens);
}

#[test]
fn bad_requests_are_typed_errors() {
    let model = load("tiny/meta-1");
    let tok = tokenizer();
    let generator = Generator::new(&model, &tok).unwrap();
    let ok = vec![vec![5u32, 6, 7]];
    let opts = greedy(4);
    let err =
        |prompts: &[Vec<u32>], o: &GenerationOptions| generator.generate(prompts, o).unwrap_err();
    assert!(matches!(err(&[], &opts), GenerationError::NoPrompts));
    assert!(matches!(
        err(&[vec![1], vec![]], &opts),
        GenerationError::EmptyPrompt { index: 1 }
    ));
    let long = vec![7u32; model.config.max_seq_len + 1];
    let e = err(&[long], &opts);
    assert!(
        matches!(e, GenerationError::PromptTooLong { index: 0, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("context"));
    assert!(matches!(
        err(&[vec![1, 600]], &opts),
        GenerationError::TokenOutOfRange { id: 600, .. }
    ));
    let bad = opts.clone().with_sampler(SamplerConfig::new(0.5, 2.0));
    assert!(matches!(err(&ok, &bad), GenerationError::InvalidSampler(_)));
    let bad = opts.clone().with_stop_sequences([""]);
    assert!(matches!(err(&ok, &bad), GenerationError::EmptyStopSequence));
    let chat =
        generator.chat_completion(&[vec![Message::assistant("hi"), Message::user("x")]], &opts);
    assert!(matches!(chat, Err(GenerationError::Chat { index: 0, .. })));
    assert!(matches!(
        generator.chat_completion(&[], &opts),
        Err(GenerationError::NoPrompts)
    ));
    // A prompt filling the whole context generates nothing instead of failing.
    let mut short_ctx = load("tiny/meta-1");
    short_ctx.config.max_seq_len = 8;
    let g = Generator::new(&short_ctx, &tok).unwrap();
    let out = g.generate(&[vec![5; 8], vec![5; 3]], &greedy(100)).unwrap();
    assert!(out[0].tokens.is_empty());
    assert_eq!(out[1].tokens.len(), 5, "bounded by the context");
    assert_eq!(out[1].finish_reason, FinishReason::Length);
}
