//! LoRA (Hu et al., 2021) tests. Expected values come from PEFT
//! (`scripts/gen_lora_reference.py`: adapters in `tests/data/tiny/peft-lora` and
//! `tests/data/tiny/peft-rslora`, logits in `tests/data/tiny/lora_reference.safetensors`), from
//! the base model itself (fresh adapters change nothing, merging changes nothing, saving and
//! loading change nothing) and from training (only adapters move).

mod common;

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::{B, data_dir, device, max_abs_diff, tiny, tokens};
use llama2_burn::import::{
    ImportError, StorageDtype, load_model, load_peft, save_model, save_peft,
};
use llama2_burn::model::Llama;
use llama2_burn::model::lora::{
    LoraConfig, LoraError, LoraSite, LoraTarget, load_adapters, read_adapters_config, save_adapters,
};
use safetensors::SafeTensors;

struct Reference(Vec<u8>);

impl Reference {
    fn load() -> Self {
        Self(std::fs::read(data_dir().join("tiny/lora_reference.safetensors")).unwrap())
    }

    fn f32(&self, name: &str) -> Vec<f32> {
        let file = SafeTensors::deserialize(&self.0).unwrap();
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::F32);
        view.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn tokens(&self) -> Vec<i64> {
        let file = SafeTensors::deserialize(&self.0).unwrap();
        let view = file.tensor("tokens").unwrap();
        assert_eq!(view.shape(), [2, 12]);
        view.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn base() -> Llama<B> {
    load_model::<B>(tiny("hf"), &device()).unwrap()
}

fn logits(model: &Llama<B>, ids: &[i64]) -> Vec<f32> {
    values(model.forward(tokens(ids, 2)))
}

/// Merged and unmerged logits agree to 1e-5, relative to the largest logit when that is above
/// 1: the tiny model's logits reach ~20, where 1e-5 is a few f32 ulps.
fn assert_merged_close(merged: &[f32], adapted: &[f32], what: &str) {
    let largest = adapted.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(merged, adapted);
    assert!(
        diff <= 1e-5 * largest,
        "{what}: merged vs adapters {diff} (largest logit {largest})"
    );
}

fn peft(name: &str) -> PathBuf {
    data_dir().join("tiny").join(name)
}

/// A fresh adapter has `B = 0`: attaching adapters to every projection changes no logit.
#[test]
fn fresh_adapters_leave_logits_unchanged() {
    let r = Reference::load();
    let ids = r.tokens();
    let model = base();
    let before = logits(&model, &ids);
    let config = LoraConfig::new().with_rank(4).with_feed_forward();
    let adapted = config.attach(model).unwrap();
    assert_eq!(adapted.lora_sites().len(), 2 * 7);
    assert_eq!(adapted.lora, Some(config.clone()));
    assert_eq!(logits(&adapted, &ids), before);
    // A second set of adapters on top is refused.
    assert!(matches!(
        config.attach(adapted),
        Err(LoraError::AlreadyAttached)
    ));
}

/// PEFT's adapters (all seven projections, and rsLoRA on q/v) loaded onto the tiny model give
/// PEFT's logits, in a full forward pass and in cached decoding.
#[test]
fn peft_adapters_give_peft_logits() {
    let r = Reference::load();
    let ids = r.tokens();
    let plain = logits(&base(), &ids);
    for (dir, key, targets, scale) in [
        ("peft-lora", "logits.lora", LoraTarget::ALL.to_vec(), 2.0),
        (
            "peft-rslora",
            "logits.rslora",
            vec![LoraTarget::Wq, LoraTarget::Wv],
            3.0 / 2f64.sqrt(),
        ),
    ] {
        let model = load_peft(base(), peft(dir)).unwrap();
        let config = model.lora.clone().unwrap();
        assert_eq!(config.targets, targets, "{dir}");
        assert!((config.scale() - scale).abs() < 1e-12, "{dir}");
        let expected = r.f32(key);
        let ours = logits(&model, &ids);
        let diff = max_abs_diff(&ours, &expected);
        assert!(diff < 1e-4, "{dir}: max |ours - PEFT| = {diff}");
        // The adapters matter: without them the logits are far from PEFT's.
        assert!(max_abs_diff(&plain, &expected) > 1.0, "{dir}");

        // Cached decoding: a prompt of 5, then one token at a time.
        let mut cache = model.new_cache(2, 12);
        let mut chunks = Vec::new();
        let mut start = 0;
        for len in [5, 1, 1, 1, 1, 1, 1, 1] {
            let rows: Vec<i64> = (0..2)
                .flat_map(|b| ids[b * 12 + start..b * 12 + start + len].to_vec())
                .collect();
            chunks.push(model.forward_cached(tokens(&rows, 2), start, &mut cache));
            start += len;
        }
        let cached = values(Tensor::cat(chunks, 1));
        let diff = max_abs_diff(&cached, &expected);
        assert!(diff < 1e-4, "{dir}: cached vs PEFT {diff}");
    }
}

/// Merging folds `scale · B A` into the weights: the merged model (no adapters) gives the
/// adapted model's logits, and PEFT's `merge_and_unload` logits; it saves as an ordinary
/// record, while a model with adapters attached is refused by `save_model`.
#[test]
fn merged_model_gives_the_adapted_logits() {
    let r = Reference::load();
    let ids = r.tokens();
    let adapted = load_peft(base(), peft("peft-lora")).unwrap();
    let unmerged = logits(&adapted, &ids);
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        save_model(&adapted, dir.path().join("refused.bpk"), StorageDtype::F32),
        Err(ImportError::Unsupported { .. })
    ));
    assert!(!dir.path().join("refused.bpk").exists());

    let merged = adapted.merge_lora();
    assert!(merged.lora.is_none());
    assert!(merged.lora_sites().is_empty());
    let ours = logits(&merged, &ids);
    assert_merged_close(&ours, &unmerged, "PEFT adapters");
    let diff = max_abs_diff(&ours, &r.f32("logits.lora_merged"));
    assert!(diff < 1e-4, "merged vs PEFT merge_and_unload: {diff}");

    let path = dir.path().join("merged.bpk");
    save_model(&merged, &path, StorageDtype::F32).unwrap();
    let reloaded = load_model::<B>(&path, &device()).unwrap();
    assert_eq!(logits(&reloaded, &ids), ours);
}

/// Merging a model whose adapters hold arbitrary non-zero `A` and `B`: every projection of both
/// blocks, on the tiny model and on the tiny-chat model (another shape).
#[test]
fn merge_matches_adapters_with_nonzero_b() {
    let ids: Vec<i64> = (0..24).map(|i| (i * 37 + 5) % 500 + 1).collect();
    let pattern = |n: usize, seed: usize, step: f32| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) * step)
            .collect()
    };
    for model in [
        base(),
        load_model::<B>(data_dir().join("tiny-chat"), &device()).unwrap(),
    ] {
        let plain = logits(&model, &ids);
        let mut model = LoraConfig::new()
            .with_rank(3)
            .with_alpha(5.0)
            .with_feed_forward()
            .attach(model)
            .unwrap();
        for (k, site) in model.lora_sites().into_iter().enumerate() {
            let mut adapter = model.lora_adapter(site).unwrap().clone();
            for (weight, seed, step) in [
                (&mut adapter.lora_a.weight, 2 * k, 0.01),
                (&mut adapter.lora_b.weight, 2 * k + 1, 0.02),
            ] {
                let shape = weight.dims();
                let values = pattern(shape[0] * shape[1], seed, step);
                *weight = Param::from_data(TensorData::new(values, shape), &device());
            }
            set_adapter(&mut model, site, adapter);
        }
        let adapted = logits(&model, &ids);
        assert!(max_abs_diff(&adapted, &plain) > 0.05);
        let merged = logits(&model.merge_lora(), &ids);
        assert_merged_close(&merged, &adapted, "non-zero B");
    }
}

fn set_adapter(
    model: &mut Llama<B>,
    site: LoraSite,
    adapter: llama2_burn::model::lora::LoraAdapter<B>,
) {
    let block = &mut model.layers[site.layer];
    let slot = match site.target {
        LoraTarget::Wq => &mut block.attention.wq_lora,
        LoraTarget::Wk => &mut block.attention.wk_lora,
        LoraTarget::Wv => &mut block.attention.wv_lora,
        LoraTarget::Wo => &mut block.attention.wo_lora,
        LoraTarget::W1 => &mut block.feed_forward.w1_lora,
        LoraTarget::W2 => &mut block.feed_forward.w2_lora,
        LoraTarget::W3 => &mut block.feed_forward.w3_lora,
    };
    *slot = Some(adapter);
}

/// An adapters file loaded onto a freshly loaded base gives the same logits, bit for bit, and
/// holds only the adapters and their configuration.
#[test]
fn adapters_file_round_trip() {
    let r = Reference::load();
    let ids = r.tokens();
    for dir in ["peft-lora", "peft-rslora"] {
        let model = load_peft(base(), peft(dir)).unwrap();
        let expected = logits(&model, &ids);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("adapters.safetensors");
        save_adapters(&model, &path).unwrap();
        assert_eq!(
            read_adapters_config(&path).unwrap(),
            model.lora.clone().unwrap()
        );
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.len(), 2 * model.lora_sites().len());
        assert!(file.names().iter().all(|n| n.contains("_lora.lora_")));
        // Only the temporary file's rename leaves anything in the directory.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

        let loaded = load_adapters(base(), &path).unwrap();
        assert_eq!(loaded.lora, model.lora);
        assert_eq!(logits(&loaded, &ids), expected);
    }
}

/// Exporting PEFT's adapters back to PEFT's layout gives PEFT's tensors bit for bit (the q/k
/// rows of `lora_B` permuted back) and a configuration that loads again.
#[test]
fn peft_export_reproduces_peft_files() {
    let r = Reference::load();
    let ids = r.tokens();
    for dir in ["peft-lora", "peft-rslora"] {
        let model = load_peft(base(), peft(dir)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("adapter");
        save_peft(&model, &out).unwrap();

        let original = std::fs::read(peft(dir).join("adapter_model.safetensors")).unwrap();
        let original = SafeTensors::deserialize(&original).unwrap();
        let exported = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
        let exported = SafeTensors::deserialize(&exported).unwrap();
        let mut names = original.names();
        names.sort();
        let mut exported_names = exported.names();
        exported_names.sort();
        assert_eq!(names, exported_names, "{dir}");
        for name in names {
            let (a, b) = (
                original.tensor(name).unwrap(),
                exported.tensor(name).unwrap(),
            );
            assert_eq!(a.shape(), b.shape(), "{name}");
            assert_eq!(a.data(), b.data(), "{name}");
        }
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap())
                .unwrap();
        let theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(peft(dir).join("adapter_config.json")).unwrap())
                .unwrap();
        for key in ["peft_type", "r", "lora_alpha", "use_rslora", "bias"] {
            assert_eq!(json[key], theirs[key], "{dir}: {key}");
        }
        // A set for PEFT.
        let sorted = |v: &serde_json::Value| {
            let mut names: Vec<String> = serde_json::from_value(v.clone()).unwrap();
            names.sort();
            names
        };
        assert_eq!(
            sorted(&json["target_modules"]),
            sorted(&theirs["target_modules"])
        );
        let again = load_peft(base(), &out).unwrap();
        assert_eq!(logits(&again, &ids), logits(&model, &ids));
    }
}

/// Writes a safetensors file of f32 tensors with the given metadata.
fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: &[(&str, &str)],
) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let meta = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

/// The tensors of an adapters file.
fn read_tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, v.shape().to_vec(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Bad adapters files give typed errors naming the file and tensor.
#[test]
fn bad_adapters_files_are_refused() {
    let model = load_peft(base(), peft("peft-rslora")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.safetensors");
    save_adapters(&model, &good).unwrap();
    let tensors = read_tensors(&good);
    let config = model.lora.clone().unwrap();
    let json = serde_json::to_string(&config).unwrap();
    let meta = [
        ("format", "llama2-burn-lora"),
        ("llama2.lora", json.as_str()),
    ];
    let file = |name: &str| tmp.path().join(name);

    // The configuration says rank 4, the tensors have rank 2.
    let rank4 = serde_json::to_string(&config.clone().with_rank(4)).unwrap();
    write_safetensors(
        &file("rank.safetensors"),
        &tensors,
        &[("llama2.lora", rank4.as_str())],
    );
    match load_adapters(base(), file("rank.safetensors")) {
        Err(LoraError::ShapeMismatch {
            path,
            tensor,
            expected,
            found,
        }) => {
            assert_eq!(path, file("rank.safetensors"));
            assert_eq!(tensor, "layers.0.attention.wq_lora.lora_a.weight");
            assert_eq!((expected, found), (vec![64, 4], vec![64, 2]));
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }

    // A tensor is missing.
    let missing: Vec<_> = tensors
        .iter()
        .filter(|t| t.0 != "layers.1.attention.wv_lora.lora_b.weight")
        .cloned()
        .collect();
    write_safetensors(&file("missing.safetensors"), &missing, &meta);
    match load_adapters(base(), file("missing.safetensors")) {
        Err(LoraError::MissingTensor { path, tensor }) => {
            assert_eq!(path, file("missing.safetensors"));
            assert_eq!(tensor, "layers.1.attention.wv_lora.lora_b.weight");
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }

    // A tensor the configuration does not call for.
    let mut extra = tensors.clone();
    extra.push((
        "layers.0.feed_forward.w1_lora.lora_a.weight".into(),
        vec![64, 2],
        vec![0.0; 128],
    ));
    write_safetensors(&file("extra.safetensors"), &extra, &meta);
    match load_adapters(base(), file("extra.safetensors")) {
        Err(LoraError::UnknownTensor { tensor, .. }) => {
            assert_eq!(tensor, "layers.0.feed_forward.w1_lora.lora_a.weight")
        }
        other => panic!("expected an unknown tensor, got {other:?}"),
    }

    // A transposed tensor.
    let mut transposed = tensors.clone();
    transposed[0].1.reverse();
    write_safetensors(&file("transposed.safetensors"), &transposed, &meta);
    assert!(matches!(
        load_adapters(base(), file("transposed.safetensors")),
        Err(LoraError::ShapeMismatch { tensor, .. }) if tensor == transposed[0].0
    ));

    // Truncated.
    let bytes = std::fs::read(&good).unwrap();
    for len in [0, 7, 100, bytes.len() - 10] {
        std::fs::write(file("truncated.safetensors"), &bytes[..len]).unwrap();
        match load_adapters(base(), file("truncated.safetensors")) {
            Err(LoraError::Format { path, .. }) => {
                assert_eq!(path, file("truncated.safetensors"))
            }
            other => panic!("{len} bytes: expected a format error, got {other:?}"),
        }
    }

    // A model's weights, not adapters.
    match load_adapters(base(), tiny("hf").join("model.safetensors")) {
        Err(LoraError::Format { message, .. }) => assert!(message.contains("llama2.lora")),
        other => panic!("expected a format error, got {other:?}"),
    }
    // Adapters of another model (tiny-chat has width 16).
    let chat = load_model::<B>(data_dir().join("tiny-chat"), &device()).unwrap();
    assert!(matches!(
        load_adapters(chat, &good),
        Err(LoraError::ShapeMismatch { .. })
    ));
    // No such file; a model without adapters has none to save.
    assert!(matches!(
        load_adapters(base(), file("absent.safetensors")),
        Err(LoraError::Io { .. })
    ));
    assert!(matches!(
        save_adapters(&base(), file("none.safetensors")),
        Err(LoraError::NotAttached)
    ));
    assert!(!file("none.safetensors").exists());
    // The good file still loads.
    load_adapters(base(), &good).unwrap();
}

/// Copies a PEFT adapter directory, editing its configuration and tensors.
fn edited_peft(
    to: &Path,
    from: &str,
    config: impl FnOnce(&mut serde_json::Value),
    tensors: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) {
    std::fs::create_dir_all(to).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(peft(from).join("adapter_config.json")).unwrap())
            .unwrap();
    config(&mut json);
    std::fs::write(to.join("adapter_config.json"), json.to_string()).unwrap();
    let mut t = read_tensors(&peft(from).join("adapter_model.safetensors"));
    tensors(&mut t);
    write_safetensors(
        &to.join("adapter_model.safetensors"),
        &t,
        &[("format", "pt")],
    );
}

/// Bad PEFT directories give typed errors naming the file and tensor.
#[test]
fn bad_peft_adapters_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name);

    edited_peft(
        &dir("dora"),
        "peft-rslora",
        |c| c["use_dora"] = true.into(),
        |_| {},
    );
    match load_peft(base(), dir("dora")) {
        Err(ImportError::Unsupported { path, message }) => {
            assert_eq!(path, dir("dora").join("adapter_config.json"));
            assert!(message.contains("DoRA"), "{message}");
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
    edited_peft(
        &dir("pattern"),
        "peft-rslora",
        |c| c["alpha_pattern"] = serde_json::json!({"q_proj": 7}),
        |_| {},
    );
    assert!(matches!(
        load_peft(base(), dir("pattern")),
        Err(ImportError::Unsupported { .. })
    ));

    let b_name = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight";
    edited_peft(
        &dir("missing"),
        "peft-rslora",
        |_| {},
        |t| t.retain(|x| x.0 != b_name),
    );
    match load_peft(base(), dir("missing")) {
        Err(ImportError::MissingTensor { path, tensor }) => {
            assert_eq!(path, dir("missing").join("adapter_model.safetensors"));
            assert_eq!(tensor, b_name);
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }
    // r says 4, the tensors have rank 2.
    edited_peft(&dir("rank"), "peft-rslora", |c| c["r"] = 4.into(), |_| {});
    assert!(matches!(
        load_peft(base(), dir("rank")),
        Err(ImportError::ShapeMismatch { tensor, expected, found, .. })
            if tensor == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
                && expected == vec![4, 64] && found == vec![2, 64]
    ));
    // Adapters on a module the model does not have.
    edited_peft(
        &dir("lm_head"),
        "peft-rslora",
        |_| {},
        |t| {
            t.push((
                "base_model.model.lm_head.lora_A.weight".into(),
                vec![2, 64],
                vec![0.0; 128],
            ))
        },
    );
    assert!(matches!(
        load_peft(base(), dir("lm_head")),
        Err(ImportError::UnknownTensor { tensor, .. }) if tensor == "base_model.model.lm_head.lora_A.weight"
    ));
    // No adapter_config.json.
    std::fs::create_dir_all(dir("empty")).unwrap();
    assert!(matches!(
        load_peft(base(), dir("empty")),
        Err(ImportError::MissingFile { .. })
    ));
}

/// Every float parameter's bits, by id.
struct Snapshot(Vec<(ParamId, Vec<u32>)>);

impl<Bk: Backend> ModuleVisitor<Bk> for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        let bits = values(param.val()).iter().map(|v| v.to_bits()).collect();
        self.0.push((param.id, bits));
    }
}

fn snapshot<Bk: Backend, M: Module<Bk>>(module: &M) -> Vec<(ParamId, Vec<u32>)> {
    let mut s = Snapshot(Vec::new());
    module.visit(&mut s);
    s.0
}

#[cfg(feature = "train")]
mod training {
    use super::*;
    use burn::module::AutodiffModule;
    use llama2_burn::backend::SelectedAutodiff;
    use llama2_burn::model::Tokenizer;
    use llama2_burn::model::train::{
        OptimConfig, SftConfig, TrainConfig, TrainError, Trainer, WarmupCosineConfig, finetune,
    };

    type AD = SelectedAutodiff;

    fn chat_model() -> Llama<AD> {
        load_model::<AD>(data_dir().join("tiny-chat"), &device()).unwrap()
    }

    fn sft_config(out: &Path, steps: usize, lora: LoraConfig) -> SftConfig {
        let train = TrainConfig::new()
            .with_steps(steps)
            .with_seq_len(64)
            .with_micro_batch_size(2)
            .with_tokens_per_step(256) // 2 micro-batches accumulated
            .with_log_every(0)
            .with_checkpoint_every(3)
            .with_optim(OptimConfig::new())
            .with_schedule(
                WarmupCosineConfig::new()
                    .with_peak_lr(2e-2)
                    .with_warmup_steps(1)
                    .with_total_steps(0),
            )
            .with_output_dir(out.display().to_string());
        SftConfig::new(
            train,
            vec![
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("examples/data/sft_tiny.jsonl")
                    .display()
                    .to_string(),
            ],
        )
        .with_lora(Some(lora))
    }

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_file(data_dir().join("llama2-tokenizer/tokenizer.model")).unwrap()
    }

    /// A few LoRA SFT steps with the real trainer: the loss falls, the adapters move, and
    /// every base parameter is bit-identical afterwards (no gradient, no weight decay).
    #[test]
    fn lora_sft_changes_only_the_adapters() {
        let model = chat_model();
        let base = snapshot(&model);
        let tmp = tempfile::tempdir().unwrap();
        let lora = LoraConfig::new().with_rank(4).with_feed_forward();
        let config = sft_config(tmp.path(), 8, lora.clone());
        let (trained, metrics) = finetune(model, &config, &tokenizer(), false, &device()).unwrap();
        assert_eq!(metrics.len(), 8);
        let (first, last) = (metrics[0].loss, metrics[7].loss);
        assert!(last < first - 0.5, "loss {first} → {last}");

        assert_eq!(trained.lora, Some(lora));
        let after: std::collections::HashMap<ParamId, Vec<u32>> =
            snapshot(&trained).into_iter().collect();
        assert_eq!(after.len(), base.len() + 2 * 2 * 7);
        for (id, bits) in &base {
            assert_eq!(after.get(id), Some(bits), "base parameter {id} changed");
        }
        for site in trained.lora_sites() {
            let adapter = trained.lora_adapter(site).unwrap();
            let b = values(adapter.lora_b.weight.val());
            assert!(b.iter().any(|v| *v != 0.0), "{site:?}: B still zero");
        }
        // The adapters' effect survives merging (on the inner backend) and saving.
        let ids: Vec<i64> = (0..16).map(|i| 1 + (i * 911) % 31999).collect();
        let inner = trained.valid();
        let adapted = values(inner.forward(tokens(&ids, 2)));
        let path = tmp.path().join("adapters.safetensors");
        save_adapters(&inner, &path).unwrap();
        let chat = load_model::<B>(data_dir().join("tiny-chat"), &device()).unwrap();
        let plain = values(chat.forward(tokens(&ids, 2)));
        assert!(max_abs_diff(&plain, &adapted) > 1e-2);
        let loaded = load_adapters(chat, &path).unwrap();
        assert_eq!(values(loaded.forward(tokens(&ids, 2))), adapted);
        let merged = values(inner.merge_lora().forward(tokens(&ids, 2)));
        assert_merged_close(&merged, &adapted, "trained adapters");
    }

    /// A LoRA run checkpoints only its adapters and resumes to the same losses as an
    /// uninterrupted run; a checkpoint is not loaded into a model with other adapters.
    #[test]
    fn lora_run_resumes_from_adapter_checkpoints() {
        let tmp = tempfile::tempdir().unwrap();
        // No dropout: the resumed run must draw nothing the uninterrupted one did not.
        let lora = LoraConfig::new().with_rank(2).with_dropout(0.0);
        let tok = tokenizer();
        // The same initial adapters for both runs: clones share the adapters drawn by attach.
        let start = lora.attach(chat_model()).unwrap();
        let full = sft_config(&tmp.path().join("full"), 6, lora.clone());
        let data = full.dataset(&tok).unwrap();
        let mut whole = Trainer::new(start.clone(), full.train.clone(), &device());
        let uninterrupted = whole.fit(&data, None).unwrap();

        let split = sft_config(&tmp.path().join("split"), 6, lora.clone());
        let mut first = Trainer::new(start, split.train.clone(), &device());
        let mut losses = first.fit(&data, Some(3)).unwrap();
        drop(first);
        let checkpoint = tmp.path().join("split/checkpoints/step-00000003");
        assert!(checkpoint.join("adapters.mpk").exists());
        assert!(!checkpoint.join("model.mpk").exists());
        let (_, rest) = finetune(chat_model(), &split, &tok, true, &device()).unwrap();
        losses.extend(rest);
        assert_eq!(losses.len(), 6);
        for (a, b) in uninterrupted.iter().zip(&losses) {
            assert_eq!(a.step, b.step);
            assert!(
                (a.loss - b.loss).abs() < 1e-5,
                "step {}: {} vs {}",
                a.step,
                a.loss,
                b.loss
            );
        }

        // Other adapters, or none, than the checkpoint's.
        for model in [
            chat_model(),
            LoraConfig::new().with_rank(3).attach(chat_model()).unwrap(),
        ] {
            assert!(matches!(
                Trainer::resume(model, split.train.clone(), &device()),
                Err(TrainError::LoraMismatch { .. })
            ));
        }
    }
}
