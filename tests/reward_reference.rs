//! The reward model against transformers' `LlamaForSequenceClassification` and float64
//! PyTorch (`scripts/gen_reward_reference.py`, data in `tests/data/reward/`): rewards of
//! single, right-padded and left-padded sequences, the ranking loss at ordinary and extreme
//! values, TRL's loss with reward centring, per-rating accuracy, the export round trip and
//! the typed errors of bad inputs.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use llama2_import::{ImportError, RewardMeta, RewardNormalization, SeqClsCheckpoint, StorageDtype};
use llama2_reward::loss::{pair_loss_f64, pair_losses};
use llama2_reward::{
    Padding, RankingLossConfig, Rating, RewardError, RewardMetrics, RewardModel, RewardOutputSync,
    read_preferences,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Batch {
    tokens: Vec<Vec<i64>>,
    lengths: Vec<usize>,
    rewards: Vec<f64>,
}

#[derive(Deserialize)]
struct Losses {
    chosen: Vec<f64>,
    rejected: Vec<f64>,
    margin: Vec<f64>,
    loss: Vec<f64>,
}

#[derive(Deserialize)]
struct TrlLoss {
    chosen: Vec<f64>,
    rejected: Vec<f64>,
    center_rewards_coefficient: f64,
    loss: f64,
}

#[derive(Deserialize)]
struct Buckets {
    chosen: Vec<f64>,
    rejected: Vec<f64>,
    ratings: Vec<Option<String>>,
    correct: Vec<usize>,
    total: Vec<usize>,
    overall: f64,
}

#[derive(Deserialize)]
struct Reference {
    sequences: Vec<Vec<i64>>,
    rewards_alone: Vec<f64>,
    right_padded: Batch,
    left_padded: Batch,
    loss: Losses,
    trl_loss: TrlLoss,
    buckets: Buckets,
}

fn dir() -> PathBuf {
    data_dir().join("reward")
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn model(path: &Path) -> (RewardModel<B>, RewardMeta) {
    RewardModel::load(path, &device()).unwrap()
}

fn rows(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = rows.concat();
    Tensor::from_data(TensorData::new(ids, [rows.len(), rows[0].len()]), &device())
}

fn rewards_of(
    model: &RewardModel<B>,
    ids: &[Vec<i64>],
    lengths: &[usize],
    padding: Padding,
) -> Vec<f32> {
    model
        .forward(rows(ids), lengths, padding)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

fn f32s(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

fn vector(values: &[f64]) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(f32s(values), [values.len()]), &device())
}

#[test]
fn rewards_match_transformers_alone_and_padded_on_either_side() {
    let r = reference();
    let (model, meta) = model(&dir().join("hf"));
    assert_eq!(meta.pad_token_id, Some(0));
    assert_eq!(r.sequences.len(), r.rewards_alone.len());
    let alone: Vec<f32> = r
        .sequences
        .iter()
        .flat_map(|s| rewards_of(&model, std::slice::from_ref(s), &[s.len()], Padding::Right))
        .collect();
    let diff = max_abs_diff(&alone, &f32s(&r.rewards_alone));
    assert!(diff <= tolerance(), "alone: max |Δr| = {diff}");
    for (batch, padding) in [
        (&r.right_padded, Padding::Right),
        (&r.left_padded, Padding::Left),
    ] {
        assert_eq!(batch.rewards.len(), r.sequences.len());
        let got = rewards_of(&model, &batch.tokens, &batch.lengths, padding);
        let diff = max_abs_diff(&got, &f32s(&batch.rewards));
        assert!(diff <= tolerance(), "{padding:?}: max |Δr| = {diff}");
    }
    // The rewards differ enough for the comparison to mean something.
    let spread = alone.iter().cloned().fold(f32::MIN, f32::max)
        - alone.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.1, "{alone:?}");
}

#[test]
fn ranking_loss_matches_float64_pytorch_at_any_magnitude() {
    let l = reference().loss;
    let n = l.loss.len();
    assert!(n >= 20);
    assert_eq!(
        (l.chosen.len(), l.rejected.len(), l.margin.len()),
        (n, n, n)
    );
    let got: Vec<f32> = pair_losses(vector(&l.chosen), vector(&l.rejected), vector(&l.margin))
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    assert_eq!(got.len(), n);
    for (i, &g) in got.iter().enumerate() {
        let (c, r, m, want) = (l.chosen[i], l.rejected[i], l.margin[i], l.loss[i]);
        let host = pair_loss_f64(c, r, m);
        assert!(
            (host - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "f64 ({c}, {r}, {m}): {host} vs {want}"
        );
        let g = f64::from(g);
        // Relative 1e-5; below f32's smallest normal number only absolutely.
        let tol = (1e-5 * want.abs()).max(f64::from(f32::MIN_POSITIVE));
        assert!(
            g.is_finite() && (g - want).abs() <= tol,
            "f32 ({c}, {r}, {m}): {g} vs {want}"
        );
    }
}

#[test]
fn trl_loss_with_reward_centring_matches() {
    let t = reference().trl_loss;
    assert_eq!(t.chosen.len(), t.rejected.len());
    let n = t.chosen.len();
    let loss = RankingLossConfig::new()
        .with_center_rewards_coefficient(Some(t.center_rewards_coefficient))
        .init()
        .forward(
            vector(&t.chosen),
            vector(&t.rejected),
            vector(&vec![0.0; n]),
        )
        .div_scalar(n as f64)
        .into_scalar();
    let got = f64::from(loss);
    assert!(
        (got - t.loss).abs() <= 1e-5 * t.loss.abs(),
        "{got} vs {}",
        t.loss
    );
}

#[test]
fn per_rating_accuracy_matches_python() {
    let b = reference().buckets;
    let n = b.chosen.len();
    assert_eq!((b.rejected.len(), b.ratings.len()), (n, n));
    let ratings: Vec<Option<Rating>> = b
        .ratings
        .iter()
        .map(|r| r.as_deref().map(|r| Rating::parse(r).unwrap()))
        .collect();
    let mut metrics = RewardMetrics::default();
    metrics.add(&RewardOutputSync::from_rewards(
        0.0,
        &b.chosen,
        &b.rejected,
        &ratings,
        0,
    ));
    let table8 = metrics.table8();
    assert_eq!(b.correct.len(), 4);
    assert_eq!(table8.map(|c| c.correct).to_vec(), b.correct);
    assert_eq!(table8.map(|c| c.total).to_vec(), b.total);
    assert_eq!(metrics.accuracy(), Some(b.overall));
    assert!(b.total.iter().all(|&t| t > 0), "every column is exercised");
}

/// A safetensors file's tensors: name → (dtype, shape, bytes).
fn tensors(path: &Path) -> std::collections::BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (
                    format!("{:?}", view.dtype()),
                    view.shape().to_vec(),
                    view.data().to_vec(),
                ),
            )
        })
        .collect()
}

#[test]
fn export_writes_transformers_layout_that_round_trips() {
    let r = reference();
    let (model, meta) = model(&dir().join("hf"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    model
        .export_hf(&out, meta.clone(), StorageDtype::BF16)
        .unwrap();
    // Same tensors, names, shapes and bf16 bytes as the file transformers wrote.
    let original = tensors(&dir().join("hf/model.safetensors"));
    let exported = tensors(&out.join("model.safetensors"));
    assert!(original.contains_key("score.weight") && !exported.contains_key("lm_head.weight"));
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        exported.keys().collect::<Vec<_>>()
    );
    for (name, value) in &original {
        assert!(exported[name] == *value, "`{name}` differs");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForSequenceClassification");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 1);
    assert_eq!(config["pad_token_id"], 0);

    // A reward record keeps the normalisation statistics.
    let stats = RewardNormalization {
        mean: -0.5,
        std: 2.0,
        count: 8,
    };
    let meta = RewardMeta {
        normalization: Some(stats),
        ..meta
    };
    let record = tmp.path().join("rm.bpk");
    model
        .save(&record, meta.clone(), StorageDtype::F32)
        .unwrap();
    for path in [out, record] {
        let (back, back_meta) = self::model(&path);
        if path.extension().is_some() {
            assert_eq!(back_meta, meta);
        }
        let s = &r.sequences[3];
        let got = rewards_of(&back, std::slice::from_ref(s), &[s.len()], Padding::Right);
        assert!((f64::from(got[0]) - r.rewards_alone[3]).abs() <= f64::from(tolerance()));
    }
}

#[test]
fn bad_preference_rows_give_typed_errors_naming_file_and_line() {
    let bad = dir().join("bad");
    for (file, line) in [
        ("malformed-json.jsonl", 2),
        ("missing-rejected.jsonl", 3),
        ("bad-message.jsonl", 1),
    ] {
        let err = read_preferences(&bad.join(file)).unwrap_err();
        match &err {
            RewardError::BadRow { path, line: l, .. } => {
                assert_eq!(
                    (path.file_name().unwrap().to_str().unwrap(), *l),
                    (file, line),
                    "{err}"
                )
            }
            other => panic!("{file}: {other:?}"),
        }
        assert!(err.to_string().contains(&format!("{file}:{line}")), "{err}");
    }
    let err = read_preferences(&bad.join("unknown-rating.jsonl")).unwrap_err();
    assert!(
        matches!(&err, RewardError::UnknownRating { line: 2, rating, .. } if rating == "much_better"),
        "{err}"
    );
}

#[test]
fn missing_or_misshapen_score_heads_are_typed_errors() {
    let bad = dir().join("bad");
    SeqClsCheckpoint::open(bad.join("micro-good")).unwrap(); // positive control
    match SeqClsCheckpoint::open(bad.join("micro-no-score")).unwrap_err() {
        ImportError::MissingTensor { path, tensor } => {
            assert!(path.ends_with("micro-no-score"), "{}", path.display());
            assert_eq!(tensor, "score.weight");
        }
        other => panic!("{other:?}"),
    }
    match SeqClsCheckpoint::open(bad.join("micro-score-wrong-shape")).unwrap_err() {
        ImportError::ShapeMismatch {
            path,
            tensor,
            expected,
            found,
        } => {
            assert!(
                path.ends_with("micro-score-wrong-shape/model.safetensors"),
                "{}",
                path.display()
            );
            assert_eq!(
                (tensor.as_str(), expected, found),
                ("score.weight", vec![1, 16], vec![2, 16])
            );
        }
        other => panic!("{other:?}"),
    }
    // A causal LM directory has no score head either.
    let err = SeqClsCheckpoint::open(tiny("hf")).unwrap_err();
    assert!(
        matches!(&err, ImportError::MissingTensor { tensor, .. } if tensor == "score.weight"),
        "{err}"
    );
}

#[test]
fn evaluate_scores_the_synthetic_heldout_set_in_batches_as_one_by_one() {
    use llama2_reward::{MarginKind, PreferenceDataset, evaluate};
    let tokenizer = llama2::Tokenizer::from_file(data_dir().join("tokenizer/small.model")).unwrap();
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/preferences_heldout.jsonl");
    let raw = read_preferences(&path).unwrap();
    let data = PreferenceDataset::from_files(&[path], &tokenizer, 200).unwrap();
    assert_eq!(
        (data.pairs.len(), data.skipped, data.truncated),
        (raw.len(), 0, 0)
    );
    let (model, _) = model(&dir().join("hf"));
    let metrics = evaluate(&model, &data.pairs, 7, MarginKind::Small, 0).unwrap();
    assert_eq!(metrics.pairs, raw.len());
    for rating in Rating::ALL {
        let expected = raw.iter().filter(|p| p.rating == Some(rating)).count();
        assert_eq!(metrics.bucket(rating).total, expected, "{rating:?}");
    }
    // The batched statistics equal those of each side scored alone.
    let alone = |ids: &[u32]| {
        let row: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        f64::from(rewards_of(&model, &[row], &[ids.len()], Padding::Right)[0])
    };
    let (mut correct, mut margin_sum) = (0, 0.0);
    for pair in &data.pairs {
        let (c, r) = (alone(&pair.chosen), alone(&pair.rejected));
        assert!((c - r).abs() > 1e-3, "near tie at line {}", pair.line);
        correct += usize::from(c > r);
        margin_sum += c - r;
    }
    assert_eq!(metrics.correct, correct);
    assert!(
        (metrics.margin_sum - margin_sum).abs() < 1e-3,
        "{} vs {margin_sum}",
        metrics.margin_sum
    );
    assert!(metrics.normalization().std > 0.0);
}
