//! The model, loaded from Meta's and Hugging Face's layouts, against logits and greedy
//! decodes computed by transformers' `LlamaForCausalLM` (f32) on the same weights
//! (`scripts/gen_reference.py`).

mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use common::*;
use llama2::Llama;
use llama2_import::Checkpoint;

fn load<B: Backend>(layout: &str) -> Llama<B> {
    Checkpoint::open(tiny(layout))
        .unwrap()
        .into_model::<B>(&Default::default())
        .unwrap()
}

fn logits_of<B: Backend>(model: &Llama<B>, ids: &[i64], batch: usize) -> Vec<f32> {
    model
        .forward(tokens(ids, batch))
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

#[test]
fn all_layouts_load_identical_parameters() {
    let reference = Checkpoint::open(tiny("meta-1")).unwrap();
    assert_eq!(
        reference.format,
        llama2_import::SourceFormat::Meta { shards: 1 }
    );
    for layout in ["meta-2", "hf", "hf-sharded"] {
        let other = Checkpoint::open(tiny(layout)).unwrap();
        assert_eq!(other.params().count(), reference.params().count());
        for spec in reference.params() {
            let a = reference.load_param(&spec.name).unwrap();
            let b = other.load_param(&spec.name).unwrap();
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{layout}: `{}` differs from meta-1",
                spec.name
            );
        }
    }
}

#[test]
fn logits_match_transformers_at_every_position() {
    logits_match_transformers_at_every_position_on::<B>(tolerance());
}

fn logits_match_transformers_at_every_position_on<B: Backend>(tolerance: f32) {
    for layout in ["meta-1", "meta-2", "hf", "hf-sharded"] {
        let model = load::<B>(layout);
        for i in 0..4 {
            let ids = reference(&format!("prompt_{i}.ids")).i64;
            let expected = reference(&format!("prompt_{i}.logits"));
            let vocab = expected.shape[1];
            let got = logits_of(&model, &ids, 1);
            let diff = max_abs_diff(&got, &expected.f32);
            assert!(
                diff <= tolerance,
                "{layout}, prompt of {} tokens: max |Δlogit| = {diff}",
                ids.len()
            );
            assert_eq!(argmax_rows(&got, vocab), argmax_rows(&expected.f32, vocab));
        }
    }
}

#[test]
fn batched_logits_match_transformers() {
    batched_logits_match_transformers_on::<B>(tolerance());
}

fn batched_logits_match_transformers_on<B: Backend>(tolerance: f32) {
    let model = load::<B>("meta-1");
    let ids = reference("batch.ids");
    let expected = reference("batch.logits");
    let got = logits_of(&model, &ids.i64, ids.shape[0]);
    let diff = max_abs_diff(&got, &expected.f32);
    assert!(diff <= tolerance, "max |Δlogit| = {diff}");
}

#[test]
fn cached_decoding_matches_full_forward() {
    cached_decoding_matches_full_forward_on::<B>(tolerance());
}

fn cached_decoding_matches_full_forward_on<B: Backend>(tolerance: f32) {
    let model = load::<B>("meta-1");
    let ids = reference("prompt_3.ids").i64; // 64 tokens
    let full = logits_of(&model, &ids, 1);
    let vocab = model.config.vocab_size;

    // A 20-token prompt, then chunks of 1, 3 and 1 tokens at a time.
    let mut cache = model.new_cache(1, ids.len());
    let mut cached = Vec::new();
    let mut pos = 0;
    for chunk in [20, 1, 3, 1, 1, 38] {
        let logits = model.forward_cached(tokens(&ids[pos..pos + chunk], 1), pos, &mut cache);
        cached.extend(logits.into_data().convert::<f32>().to_vec::<f32>().unwrap());
        pos += chunk;
    }
    assert_eq!(pos, ids.len());
    let diff = max_abs_diff(&cached, &full);
    assert!(diff <= tolerance, "cached vs full: max |Δlogit| = {diff}");
    assert_eq!(argmax_rows(&cached, vocab), argmax_rows(&full, vocab));
}

#[test]
fn greedy_decoding_with_cache_matches_transformers_generate() {
    greedy_decoding_with_cache_matches_transformers_generate_on::<B>();
}

fn greedy_decoding_with_cache_matches_transformers_generate_on<B: Backend>() {
    let model = load::<B>("hf");
    let prompt = reference("greedy.prompt").i64;
    let expected = reference("greedy.output").i64;
    let mut cache = model.new_cache(1, prompt.len() + expected.len());
    let mut next = model.forward_cached(tokens(&prompt, 1), 0, &mut cache);
    let mut generated = Vec::new();
    for pos in prompt.len()..prompt.len() + expected.len() {
        let [_, len, _] = next.dims();
        let id: Tensor<B, 1, Int> = next.narrow(1, len - 1, 1).argmax(2).flatten(0, 2);
        let id = id.into_data().convert::<i64>().to_vec::<i64>().unwrap()[0];
        generated.push(id);
        let input = tokens::<B>(&[id], 1);
        next = model.forward_cached(input, pos, &mut cache);
    }
    assert_eq!(generated, expected);
}

/// The same checks on NdArray, the other CPU backend, in the same test binary as Flex (one
/// build for both).
#[cfg(all(feature = "flex", not(any(feature = "wgpu", feature = "cuda"))))]
mod on_ndarray {
    type B = burn::backend::NdArray<f32, i64>;

    #[test]
    fn logits_match_transformers_at_every_position() {
        super::logits_match_transformers_at_every_position_on::<B>(1e-4);
    }

    #[test]
    fn batched_logits_match_transformers() {
        super::batched_logits_match_transformers_on::<B>(1e-4);
    }

    #[test]
    fn cached_decoding_matches_full_forward() {
        super::cached_decoding_matches_full_forward_on::<B>(1e-4);
    }

    #[test]
    fn greedy_decoding_with_cache_matches_transformers_generate() {
        super::greedy_decoding_with_cache_matches_transformers_generate_on::<B>();
    }
}
