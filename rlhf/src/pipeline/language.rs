//! Pretraining (paper §2) on a weighted mixture of the two embedded sources, and
//! supervised fine-tuning (§3.1) on the embedded dialogs plus Ghost Attention examples
//! (§3.3), both on the one training engine of `llama2::train`.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use llama2::LlamaConfig;
use llama2::train::data::{SftDataset, TokenWindow};
use llama2::train::{
    PretrainConfig, SftConfig, TrainConfig, WarmupCosineConfig, finetune, pretrain,
};

use crate::RlhfError;
use crate::gatt::{
    GattConfig, InstructionGeneratorConfig, InstructionPlacement, read_gatt_dialogs,
    write_gatt_jsonl,
};
use crate::pipeline::Stage;
use crate::pipeline::evaluate::{perplexity, rule_score_of};
use crate::pipeline::report::{KeyMetric, StageReport};
use crate::pipeline::run::StageContext;
use crate::pipeline::tasks::RuleAssistant;
use crate::rejection::save_policy;
use crate::rollout::read_prompts;

/// The loop settings shared by the stages: no dashboard, a line every few steps.
pub(crate) fn loop_config(ctx: &StageContext<'_>, stage: Stage, steps: usize) -> TrainConfig {
    TrainConfig::new()
        .with_steps(steps)
        .with_seq_len(ctx.config.seq_len)
        .with_micro_batch_size(8)
        .with_dashboard(false)
        .with_log_every(ctx.log_every)
        .with_checkpoint_every(0)
        .with_seed(ctx.config.seed)
        .with_output_dir(ctx.dir(stage).display().to_string())
}

/// Windows of a dataset, in order.
fn windows(data: &dyn burn::data::dataset::Dataset<TokenWindow>) -> Vec<TokenWindow> {
    (0..data.len()).filter_map(|i| data.get(i)).collect()
}

/// Pretrains the model of `config.model` from scratch; writes `pretrain/model.bpk`.
pub(crate) fn pretrain_stage<B: AutodiffBackend>(
    ctx: &StageContext<'_>,
    device: &B::Device,
) -> Result<StageReport, RlhfError> {
    let c = ctx.config;
    let dir = ctx.dir(Stage::Pretrain);
    B::seed(device, c.seed);
    let mut shape = LlamaConfig::tiny_15m();
    shape.dim = c.model.dim;
    shape.n_layers = c.model.layers;
    shape.n_heads = c.model.heads;
    shape.n_kv_heads = c.model.kv_heads;
    shape.vocab_size = ctx.tokenizer.vocab_size();
    shape.max_seq_len = c.model.max_seq_len;
    shape
        .validate()
        .map_err(|e| RlhfError::Config(format!("model shape: {e}")))?;
    let model = shape.init::<B>(device);

    let train = loop_config(ctx, Stage::Pretrain, c.pretrain_steps)
        .with_seq_len(c.pretrain_seq_len)
        .with_micro_batch_size(c.pretrain_batch)
        .with_eval_every(c.pretrain_steps.div_ceil(4))
        .with_schedule(
            WarmupCosineConfig::new()
                .with_peak_lr(c.pretrain_lr)
                .with_warmup_steps(c.pretrain_steps.div_ceil(10))
                .with_total_steps(0),
        );
    let data = |name: &str| ctx.data(name).display().to_string();
    let config = PretrainConfig::new(train, vec![data("prose.txt"), data("arithmetic.txt")])
        .with_weights(c.pretrain_weights.clone())
        .with_valid(vec![
            data("prose_heldout.txt"),
            data("arithmetic_heldout.txt"),
        ])
        .with_cache_dir(dir.join("token-cache").display().to_string());
    let held_out = config
        .valid_dataset(ctx.tokenizer)?
        .map(|d| windows(&d))
        .unwrap_or_default();
    let before = perplexity(&model.valid(), &held_out, 16);
    let (model, metrics) = pretrain(model, &config, ctx.tokenizer, false, device)?;
    let model = model.valid();
    let after = perplexity(&model, &held_out, 16);
    save_policy(&model, &dir.join("model.bpk"), Some(ctx.tokenizer_file))?;

    let mut report = StageReport::new(
        Stage::Pretrain,
        KeyMetric {
            name: "held-out perplexity (2 sources)".into(),
            before,
            after,
        },
    );
    report.put("parameters", shape.num_params() as f64);
    report.put("steps", metrics.len() as f64);
    report.put(
        "tokens",
        metrics.iter().map(|m| m.target_tokens as f64).sum(),
    );
    if let (Some(first), Some(last)) = (metrics.first(), metrics.last()) {
        report.put("train_loss_first", first.loss);
        report.put("train_loss_last", last.loss);
    }
    report.outputs = vec!["pretrain/model.bpk".into(), "pretrain/curves.svg".into()];
    Ok(report)
}

/// Builds the Ghost Attention examples (answers sampled with the instruction on every
/// user turn, kept in the system message of the training dialog, trained on the last
/// turn), then fine-tunes on them and the SFT dialogs; writes `sft/gatt.jsonl` and
/// `sft/model.bpk`.
pub(crate) fn sft_stage<B: AutodiffBackend>(
    ctx: &StageContext<'_>,
    device: &B::Device,
) -> Result<StageReport, RlhfError> {
    let c = ctx.config;
    let dir = ctx.dir(Stage::Sft);
    B::seed(device, c.seed);
    let model = ctx.load_policy::<B>(&ctx.start_model(), device)?;

    let mut instructions = InstructionGeneratorConfig::new().with_seed(c.seed).init()?;
    let mut dialogs = read_gatt_dialogs(&ctx.data("gatt_dialogs.jsonl"), &mut instructions)?;
    if c.gatt_dialogs > 0 {
        dialogs.truncate(c.gatt_dialogs);
    }
    let gatt = GattConfig::new()
        .with_placement(InstructionPlacement::System)
        .with_per_turn(true)
        .build(&mut RuleAssistant, &dialogs, |_| {})?;
    let gatt_path = dir.join("gatt.jsonl");
    write_gatt_jsonl(&gatt_path, &gatt)?;

    let train = loop_config(ctx, Stage::Sft, 0).with_schedule(
        WarmupCosineConfig::new()
            .with_peak_lr(c.sft_lr)
            .with_warmup_steps(0)
            .with_total_steps(0),
    );
    let config = SftConfig::new(
        train,
        vec![
            ctx.data("sft.jsonl").display().to_string(),
            gatt_path.display().to_string(),
        ],
    )
    .with_valid(vec![ctx.data("sft_heldout.jsonl").display().to_string()])
    .with_epochs(Some(c.sft_epochs))
    .with_warmup_ratio(Some(0.05));
    let held_windows = SftDataset::from_files(
        &[ctx.data("sft_heldout.jsonl")],
        ctx.tokenizer,
        c.seq_len,
        false,
    )
    .map_err(llama2::train::TrainError::from)?;
    let prompts = read_prompts(
        &ctx.data("heldout.jsonl"),
        ctx.tokenizer,
        model.config.max_seq_len,
    )?;
    let prompts = ctx.eval_slice(&prompts);
    let initial = model.valid();
    let ppl_before = perplexity(&initial, held_windows.windows(), 16);
    let rule_before = rule_score_of(&initial, ctx.tokenizer, prompts, c.max_gen_len)?;
    drop(initial);
    let (model, metrics) = finetune(model, &config, ctx.tokenizer, false, device)?;
    let model = model.valid();
    let ppl_after = perplexity(&model, held_windows.windows(), 16);
    let rule_after = rule_score_of(&model, ctx.tokenizer, prompts, c.max_gen_len)?;
    save_policy(&model, &dir.join("model.bpk"), Some(ctx.tokenizer_file))?;

    let mut report = StageReport::new(
        Stage::Sft,
        KeyMetric {
            name: "held-out rule score (greedy)".into(),
            before: rule_before.overall,
            after: rule_after.overall,
        },
    );
    report.put("gatt_examples", gatt.len() as f64);
    report.put("steps", metrics.len() as f64);
    report.put("answer_perplexity_before", ppl_before);
    report.put("answer_perplexity_after", ppl_after);
    for (k, v) in &rule_after.by_category {
        report.put(format!("rule_score.{k}"), *v);
    }
    report.outputs = vec![
        "sft/gatt.jsonl".into(),
        "sft/model.bpk".into(),
        "sft/curves.svg".into(),
    ];
    Ok(report)
}
