//! The helpfulness and safety reward models (paper §3.2.2): both initialised from the SFT
//! model, trained with the margin ranking loss on the embedded preference pairs (each on
//! its own mix), evaluated per rating bucket (Table 8) on the held-out pairs.

use std::path::PathBuf;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use llama2::train::WarmupCosineConfig;
use llama2_import::{RewardMeta, StorageDtype};
use llama2_reward::train::table8_columns;
use llama2_reward::{
    EncodedPair, MarginKind, PreferenceDataset, RankingLossConfig, RewardMetrics, RewardModel,
    RewardModelConfig, RewardTrainConfig, evaluate, train_reward,
};

use crate::RlhfError;
use crate::pipeline::Stage;
use crate::pipeline::language::loop_config;
use crate::pipeline::report::{KeyMetric, StageReport};
use crate::pipeline::run::StageContext;

fn accuracy<B: Backend>(
    model: &RewardModel<B>,
    pairs: &[EncodedPair],
) -> Result<RewardMetrics, RlhfError> {
    Ok(evaluate(model, pairs, 16, MarginKind::None, 0)?)
}

/// Trains the reward model of `stage` (helpfulness or safety) from the SFT model; writes
/// `<stage>/reward.bpk`.
pub(crate) fn reward_stage<B: AutodiffBackend>(
    ctx: &StageContext<'_>,
    stage: Stage,
    device: &B::Device,
) -> Result<StageReport, RlhfError> {
    let c = ctx.config;
    let safety = stage == Stage::RewardSafety;
    let dir = ctx.dir(stage);
    B::seed(device, c.seed);
    let trunk = ctx.load_policy::<B>(&ctx.dir(Stage::Sft).join("model.bpk"), device)?;
    let model = RewardModelConfig::new()
        .with_seed(c.seed)
        .init(trunk)
        .with_objective(
            RankingLossConfig::new()
                .with_margin(MarginKind::Small)
                .with_center_rewards_coefficient(Some(0.01)),
        );

    let (data, epochs) = if safety {
        ("safety_train.jsonl", c.safety_epochs)
    } else {
        ("helpfulness_train.jsonl", c.reward_epochs)
    };
    let held_path: PathBuf = ctx.data("preferences_heldout.jsonl");
    let train = loop_config(ctx, stage, 0)
        .with_micro_batch_size(16)
        .with_schedule(
            WarmupCosineConfig::new()
                .with_peak_lr(c.reward_lr)
                .with_warmup_steps(0)
                .with_total_steps(0),
        );
    let config = RewardTrainConfig::new(train, vec![ctx.data(data).display().to_string()])
        .with_valid(vec![held_path.display().to_string()])
        .with_pairs_per_step(c.reward_pairs_per_step)
        .with_epochs(Some(epochs))
        .with_warmup_ratio(Some(0.05))
        .with_min_warmup_steps(1);
    let held =
        PreferenceDataset::from_files(std::slice::from_ref(&held_path), ctx.tokenizer, c.seq_len)?;
    let (own, other): (Vec<EncodedPair>, Vec<EncodedPair>) =
        held.pairs.into_iter().partition(|p| p.is_safety == safety);
    if own.is_empty() || other.is_empty() {
        return Err(RlhfError::Config(format!(
            "{}: the held-out pairs need both safety and helpfulness pairs",
            held_path.display()
        )));
    }
    let before = accuracy(&model.valid(), &own)?;
    let (model, metrics) = train_reward(model, &config, ctx.tokenizer, false, device)?;
    let model = model.valid();
    let after = accuracy(&model, &own)?;
    let cross = accuracy(&model, &other)?;
    let meta = RewardMeta {
        pad_token_id: Some(0),
        normalization: Some(after.normalization()),
    };
    model.save(dir.join("reward.bpk"), meta, StorageDtype::F32)?;

    let (own_name, other_name) = if safety {
        ("safety", "helpfulness")
    } else {
        ("helpfulness", "safety")
    };
    let mut report = StageReport::new(
        stage,
        KeyMetric {
            name: format!("held-out {own_name} pair accuracy"),
            before: before.accuracy().unwrap_or(0.0),
            after: after.accuracy().unwrap_or(0.0),
        },
    );
    report.put("steps", metrics.len() as f64);
    report.put(
        format!("{other_name}_pair_accuracy"),
        cross.accuracy().unwrap_or(0.0),
    );
    for (name, bucket) in table8_columns().iter().zip(after.table8()) {
        if let Some(a) = bucket.accuracy() {
            report.put(format!("accuracy.{name}"), a);
        }
    }
    if let (Some(first), Some(last)) = (metrics.first(), metrics.last()) {
        report.put("train_loss_first", first.loss);
        report.put("train_loss_last", last.loss);
    }
    report.outputs = vec![
        format!("{}/reward.bpk", stage.name()),
        format!("{}/curves.svg", stage.name()),
    ];
    Ok(report)
}
