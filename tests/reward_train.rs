//! A tiny reward model trained on the engine learns the synthetic preference
//! rule (`scripts/gen_preferences.py`: single-digit sums rated by how wrong
//! the rejected answer is, answer formats, safety refusals): more than 90 % of
//! the held-out pairs ranked right, and, as in the paper's Table 8, the
//! clearest preferences ("significantly better") ranked right more often than
//! the closest ones ("negligibly better / unsure").
//!
//! This is the `reward train` example's default run (a dim-96, 3-layer model;
//! about 6 minutes on 2 cores), so it has a test binary of its own.
#![cfg(feature = "train")]

use std::path::PathBuf;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use llama2_burn::backend::{self, SelectedAutodiff};
use llama2_burn::model::train::{TrainConfig, WarmupCosineConfig};
use llama2_burn::model::{LlamaConfig, Tokenizer};
use llama2_burn::reward::{
    MarginKind, RankingLossConfig, RewardModelConfig, RewardTrainConfig, evaluate, train_reward,
};

#[test]
fn a_tiny_reward_model_learns_the_synthetic_preferences() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tokenizer = Tokenizer::from_file(root.join("tests/data/tokenizer/small.model")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = RewardTrainConfig::tiny(vec![
        root.join("examples/data/preferences_train.jsonl")
            .display()
            .to_string(),
    ]);
    config.train = config
        .train
        .with_log_every(0)
        .with_dashboard(false)
        .with_output_dir(dir.path().display().to_string());

    let device = backend::device();
    SelectedAutodiff::seed(&device, 42);
    let trunk = config.tiny_trunk(tokenizer.vocab_size());
    let model = RewardModelConfig::new()
        .with_seed(42)
        .init(trunk.init::<SelectedAutodiff>(&device))
        .with_objective(RankingLossConfig::new().with_margin(MarginKind::Small));
    let (model, steps) = train_reward(model, &config, &tokenizer, false, &device).unwrap();
    assert!(steps.len() > 100, "{} steps", steps.len());

    let heldout = llama2_burn::reward::PreferenceDataset::from_files(
        &[root.join("examples/data/preferences_heldout.jsonl")],
        &tokenizer,
        96,
    )
    .unwrap();
    assert_eq!(heldout.pairs.len(), 200);
    let metrics = evaluate(&model.valid(), &heldout.pairs, 32, MarginKind::None, 0).unwrap();
    let accuracy = metrics.accuracy().unwrap();
    let table = metrics.table8();
    let strongest = table[0].accuracy().unwrap();
    let weakest = table[3].accuracy().unwrap();
    eprintln!(
        "held-out accuracy {accuracy:.3}; per rating {:?}",
        table.map(|b| b.accuracy())
    );
    assert!(accuracy > 0.9, "held-out accuracy {accuracy}");
    // The clearest preferences are ranked right at least as often as the closest ones
    // (equal only when both are perfect).
    assert!(
        strongest > weakest || (strongest == 1.0 && weakest == 1.0),
        "significantly better {strongest} vs negligibly better {weakest}"
    );
}

/// A LoRA reward model on the engine: only the adapters and the score head
/// train (the trunk's base weights stay bit-identical), and the ranking loss
/// falls.
#[test]
fn lora_reward_training_changes_only_adapters_and_the_score_head() {
    use llama2_burn::model::lora::LoraConfig;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tokenizer = Tokenizer::from_file(root.join("tests/data/tokenizer/small.model")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = RewardTrainConfig::new(
        TrainConfig::new()
            .with_seq_len(96)
            .with_micro_batch_size(16)
            .with_steps(30)
            .with_log_every(0)
            .with_dashboard(false)
            .with_schedule(
                WarmupCosineConfig::new()
                    .with_peak_lr(1e-2)
                    .with_warmup_steps(3)
                    .with_total_steps(0),
            )
            .with_output_dir(dir.path().display().to_string()),
        vec![
            root.join("examples/data/preferences_train.jsonl")
                .display()
                .to_string(),
        ],
    )
    .with_pairs_per_step(16)
    .with_epochs(None)
    .with_warmup_ratio(None);

    let device = backend::device();
    let mut c = LlamaConfig::tiny_15m();
    c.dim = 32;
    c.n_layers = 1;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.vocab_size = tokenizer.vocab_size();
    c.max_seq_len = 96;
    let base = c.init::<SelectedAutodiff>(&device);
    let base = base.clone().load_record(base.into_record());
    let values = |t: burn::tensor::Tensor<SelectedAutodiff, 2>| -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    };
    let embeddings = values(base.tok_embeddings.weight.val());
    let wq = values(base.layers[0].attention.wq.weight.val());
    let trunk = LoraConfig::new()
        .with_rank(4)
        .with_dropout(0.0)
        .attach(base)
        .unwrap();
    let model = RewardModelConfig::new().init(trunk);
    let score = values(model.score.weight.val());
    let (trained, steps) = train_reward(model, &config, &tokenizer, false, &device).unwrap();
    assert_eq!(steps.len(), 30);
    let first: f64 = steps[..5].iter().map(|s| s.loss).sum::<f64>() / 5.0;
    let last: f64 = steps[25..].iter().map(|s| s.loss).sum::<f64>() / 5.0;
    assert!(last < first, "ranking loss {first} → {last}");
    assert_eq!(
        values(trained.trunk.tok_embeddings.weight.val()),
        embeddings
    );
    assert_eq!(
        values(trained.trunk.layers[0].attention.wq.weight.val()),
        wq
    );
    assert_ne!(
        values(trained.score.weight.val()),
        score,
        "the score head trains"
    );
    assert!(trained.trunk.lora.is_some());
}
