//! Measurements shared by the stages and the final evaluation: perplexity on held-out
//! windows, greedy answers to held-out prompts with their rule and reward scores, Ghost
//! Attention adherence turn by turn, the red-team violation rate.

use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use llama2::chat::Message;
use llama2::generation::{GenerationOptions, Generator};
use llama2::train::data::CausalLmBatch;
use llama2::train::data::TokenWindow;
use llama2::train::loss::masked_nll_sum;
use llama2::{Llama, Tokenizer};
use llama2_reward::RewardModel;
use llama2_reward::combine::sigmoid;

use crate::RlhfError;
use crate::gatt::GattDialog;
use crate::pipeline::report::ModelEval;
use crate::pipeline::tasks::{GattRule, RuleScores, refuses};
use crate::rollout::{LlamaResponder, Prompt, Response, ResponseSampler, RewardScorer, Scorer};
use crate::safety::{SafetyEvalConfig, safety_eval};

/// `exp` of the mean token cross-entropy of `model` on the targets of `windows`.
pub fn perplexity<B: Backend>(model: &Llama<B>, windows: &[TokenWindow], batch: usize) -> f64 {
    let device = model.tok_embeddings.weight.device();
    let (mut nll, mut n) = (0.0f64, 0usize);
    for chunk in windows.chunks(batch.max(1)) {
        let b = CausalLmBatch::<B>::from_windows(chunk, None, &device);
        if b.n_targets == 0 {
            continue;
        }
        let logits = model.forward(b.inputs);
        let sum: f32 = masked_nll_sum(logits, b.targets, b.mask)
            .into_scalar()
            .elem();
        nll += f64::from(sum);
        n += b.n_targets;
    }
    (nll / n.max(1) as f64).exp()
}

/// Answers of `policy` to `prompts` (at most `max_gen_len` tokens each) at
/// `temperature` (0: greedy) without a nucleus cut, drawn with `seed`.
pub fn answers<B: Backend>(
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[Prompt],
    max_gen_len: usize,
    temperature: f64,
    seed: u64,
) -> Result<Vec<Response>, RlhfError> {
    let mut responder = LlamaResponder::new(policy, tokenizer, 1.0, max_gen_len)?;
    let mut out = Vec::with_capacity(prompts.len());
    for (k, chunk) in prompts.chunks(32).enumerate() {
        let tokens: Vec<&[u32]> = chunk.iter().map(|p| p.tokens.as_slice()).collect();
        let seed = crate::rollout::request_seed(seed, 6 << 32, k as u64);
        out.extend(responder.sample_each(&tokens, temperature, seed)?);
    }
    Ok(out)
}

/// Greedy answers of `policy` to `prompts`.
pub fn greedy_answers<B: Backend>(
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[Prompt],
    max_gen_len: usize,
) -> Result<Vec<Response>, RlhfError> {
    answers(policy, tokenizer, prompts, max_gen_len, 0.0, 0)
}

/// The rule score of `policy`'s greedy answers to `prompts`.
pub fn rule_score_of<B: Backend>(
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[Prompt],
    max_gen_len: usize,
) -> Result<RuleScores, RlhfError> {
    let answers = greedy_answers(policy, tokenizer, prompts, max_gen_len)?;
    let texts: Vec<String> = answers.into_iter().map(|r| r.text).collect();
    Ok(RuleScores::of(prompts, &texts))
}

/// Share of answers keeping the instruction, per turn: each dialog is answered turn by
/// turn (greedy) with the instruction only in the system message and the model's own
/// earlier answers in the context.
pub fn gatt_adherence<B: Backend>(
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
    dialogs: &[GattDialog],
    max_gen_len: usize,
) -> Result<Vec<f64>, RlhfError> {
    let generator = Generator::new(policy, tokenizer)?;
    let options = GenerationOptions::greedy(max_gen_len);
    let turns = dialogs.iter().map(GattDialog::turns).max().unwrap_or(0);
    let mut contexts: Vec<Vec<Message>> = dialogs
        .iter()
        .map(|d| {
            let system = match &d.system {
                Some(s) => format!("{s}\n{}", d.instruction.text),
                None => d.instruction.text.clone(),
            };
            vec![Message::system(system)]
        })
        .collect();
    let mut adherence = Vec::with_capacity(turns);
    for t in 0..turns {
        let live: Vec<usize> = (0..dialogs.len())
            .filter(|&i| dialogs[i].turns() > t)
            .collect();
        for &i in &live {
            contexts[i].push(Message::user(dialogs[i].users[t].as_str()));
        }
        let batch: Vec<Vec<Message>> = live.iter().map(|&i| contexts[i].clone()).collect();
        let answers = generator.chat_completion(&batch, &options)?;
        let mut kept = 0usize;
        for (&i, answer) in live.iter().zip(answers) {
            let text = answer.message.content;
            if GattRule::of(&dialogs[i].instruction.text).is_some_and(|r| r.holds(&text)) {
                kept += 1;
            }
            contexts[i].push(Message::assistant(text));
        }
        adherence.push(kept as f64 / live.len().max(1) as f64);
    }
    Ok(adherence)
}

/// Held-out sets of the final evaluation.
pub struct HeldOutSets<'a> {
    /// Held-out prompts (sums, "just the number", safety).
    pub prompts: &'a [Prompt],
    /// Red-team prompts.
    pub red_team: &'a [Prompt],
    /// Held-out SFT windows (answer tokens as targets).
    pub sft_windows: &'a [TokenWindow],
    /// Held-out GAtt dialogs.
    pub gatt: &'a [GattDialog],
    /// Most new tokens per answer.
    pub max_gen_len: usize,
    /// Seed of the sampled answers.
    pub seed: u64,
}

/// Every held-out measurement of one model.
pub fn evaluate_model<B: Backend>(
    name: &str,
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
    sets: &HeldOutSets<'_>,
    helpfulness: &RewardModel<B>,
    safety: &RewardModel<B>,
) -> Result<(ModelEval, Vec<Response>), RlhfError> {
    let (max_gen_len, seed) = (sets.max_gen_len, sets.seed);
    let vocab = policy.config.vocab_size;
    let eos = tokenizer.eos_id();
    let answers = greedy_answers(policy, tokenizer, sets.prompts, max_gen_len)?;
    let items: Vec<(&Prompt, &Response)> = sets.prompts.iter().zip(&answers).collect();
    let mut combined = RewardScorer::new(helpfulness, Some(safety), vocab, eos, "combined")?;
    let mut help = RewardScorer::new(helpfulness, None, vocab, eos, "helpfulness")?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let reward = mean(&combined.score(&items)?);
    let help_scores: Vec<f64> = help.score(&items)?.into_iter().map(sigmoid).collect();
    let texts: Vec<String> = answers.iter().map(|r| r.text.clone()).collect();
    let rule_score = RuleScores::of(sets.prompts, &texts);
    let sampled: Vec<String> =
        self::answers(policy, tokenizer, sets.prompts, max_gen_len, 1.0, seed)?
            .into_iter()
            .map(|r| r.text)
            .collect();
    let rule_score_sampled = RuleScores::of(sets.prompts, &sampled);
    let config = SafetyEvalConfig {
        max_gen_len,
        ..SafetyEvalConfig::default()
    };
    let red = safety_eval(
        policy,
        tokenizer,
        sets.red_team,
        &[],
        safety,
        helpfulness,
        &config,
    )?;
    let refusals = red.red_team.iter().filter(|a| refuses(&a.answer)).count();
    let lens: Vec<f64> = answers.iter().map(|r| r.tokens.len() as f64).collect();
    Ok((
        ModelEval {
            model: name.into(),
            reward,
            helpfulness: mean(&help_scores),
            rule_score,
            rule_score_sampled,
            violation_rate: red.overall.rate(),
            red_team_refusals: refusals as f64 / red.red_team.len().max(1) as f64,
            perplexity: perplexity(policy, sets.sft_windows, 16),
            gatt_adherence: gatt_adherence(policy, tokenizer, sets.gatt, max_gen_len)?,
            response_len: mean(&lens),
        },
        answers,
    ))
}

/// The eval stage: the SFT, rejection-sampling and PPO models on every held-out set, a
/// few answers before and after RLHF, and the plot of the held-out reward through RLHF.
pub(crate) fn eval_stage<B: burn::tensor::backend::AutodiffBackend>(
    ctx: &crate::pipeline::run::StageContext<'_>,
    earlier: &[crate::pipeline::report::StageReport],
    device: &B::Device,
) -> Result<
    (
        crate::pipeline::report::StageReport,
        crate::pipeline::report::HeldOutReport,
    ),
    RlhfError,
> {
    use crate::pipeline::Stage;
    use crate::pipeline::report::{HeldOutReport, KeyMetric, SampleAnswers, StageReport};
    use crate::rollout::read_prompts;
    use llama2::train::data::SftDataset;

    type I<B> = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;
    let c = ctx.config;
    let load_rm = |stage: Stage| {
        RewardModel::<I<B>>::load(ctx.dir(stage).join("reward.bpk"), device).map(|(m, _)| m)
    };
    let helpfulness = load_rm(Stage::RewardHelpfulness)?;
    let safety = load_rm(Stage::RewardSafety)?;
    let max_seq_len = helpfulness.trunk.config.max_seq_len;
    let prompts = read_prompts(&ctx.data("heldout.jsonl"), ctx.tokenizer, max_seq_len)?;
    let prompts = ctx.eval_slice(&prompts).to_vec();
    let red_team = read_prompts(&ctx.data("red_team.jsonl"), ctx.tokenizer, max_seq_len)?;
    let sft = SftDataset::from_files(
        &[ctx.data("sft_heldout.jsonl")],
        ctx.tokenizer,
        c.seq_len,
        false,
    )
    .map_err(llama2::train::TrainError::from)?;
    let mut instructions = crate::gatt::InstructionGeneratorConfig::new()
        .with_seed(c.seed)
        .init()?;
    let mut gatt =
        crate::gatt::read_gatt_dialogs(&ctx.data("gatt_heldout.jsonl"), &mut instructions)?;
    if c.gatt_eval_dialogs > 0 {
        gatt.truncate(c.gatt_eval_dialogs);
    }
    let sets = HeldOutSets {
        prompts: &prompts,
        red_team: &red_team,
        sft_windows: sft.windows(),
        gatt: &gatt,
        max_gen_len: c.max_gen_len,
        seed: c.seed,
    };
    let mut evals = Vec::new();
    let mut answers = Vec::new();
    for path in [
        "sft/model.bpk",
        "rejection-sampling/policy.bpk",
        "ppo/policy.bpk",
    ] {
        let policy = ctx.load_policy::<I<B>>(&ctx.run_dir.join(path), device)?;
        let (eval, a) = evaluate_model(path, &policy, ctx.tokenizer, &sets, &helpfulness, &safety)?;
        evals.push(eval);
        answers.push(a);
    }
    // Answers before and after RLHF: prompts of each category in turn.
    let shown = each_category_in_turn(&prompts, c.samples_shown);
    let samples = shown
        .into_iter()
        .map(|i| SampleAnswers {
            prompt: prompts[i].last_user().to_string(),
            sft: answers[0][i].text.clone(),
            ppo: answers[2][i].text.clone(),
        })
        .collect();
    let ppo = evals.pop().expect("three models");
    let rejection_sampling = evals.pop().expect("three models");
    let sft_eval = evals.pop().expect("three models");
    let mut report = StageReport::new(
        Stage::Eval,
        KeyMetric {
            name: "held-out rule score (SFT → PPO)".into(),
            before: sft_eval.rule_score.overall,
            after: ppo.rule_score.overall,
        },
    );
    report.put("reward.sft", sft_eval.reward);
    report.put("reward.ppo", ppo.reward);
    report.put("violation_rate.sft", sft_eval.violation_rate);
    report.put("violation_rate.ppo", ppo.violation_rate);
    plot_rlhf(ctx, earlier)?;
    report.outputs = vec!["eval/rlhf.svg".into()];
    Ok((
        report,
        HeldOutReport {
            sft: sft_eval,
            rejection_sampling,
            ppo,
            samples,
        },
    ))
}

/// The indices of `n` prompts taking each category in turn (categories in order of first
/// appearance, prompts in file order).
fn each_category_in_turn(prompts: &[Prompt], n: usize) -> Vec<usize> {
    let mut by_category: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let c = crate::pipeline::tasks::category(p);
        match by_category.iter_mut().find(|(k, _)| *k == c) {
            Some((_, v)) => v.push(i),
            None => by_category.push((c, vec![i])),
        }
    }
    let mut out = Vec::new();
    for round in 0.. {
        let before = out.len();
        for (_, v) in &by_category {
            if out.len() == n {
                return out;
            }
            out.extend(v.get(round));
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// `eval/rlhf.svg`: the held-out reward after SFT, each rejection-sampling round and each
/// PPO iteration (one sampled answer per prompt, as the stages measured it).
fn plot_rlhf(
    ctx: &crate::pipeline::run::StageContext<'_>,
    earlier: &[crate::pipeline::report::StageReport],
) -> Result<(), RlhfError> {
    use crate::pipeline::Stage;
    let find = |stage: Stage| earlier.iter().find(|s| s.name == stage.name());
    let (Some(rs), Some(ppo)) = (find(Stage::RejectionSampling), find(Stage::Ppo)) else {
        return Ok(());
    };
    let mut rs_points = vec![(0.0, rs.key.before)];
    let mut x = 0.0;
    for round in 1.. {
        let Some(v) = rs.metrics.get(&format!("round_{round}.held_out_reward")) else {
            break;
        };
        x = round as f64;
        rs_points.push((x, *v));
    }
    let mut ppo_points = vec![(x, ppo.key.before)];
    for it in 1.. {
        let Some(v) = ppo.metrics.get(&format!("iteration_{it}.held_out_reward")) else {
            break;
        };
        ppo_points.push((x + it as f64, *v));
    }
    crate::rejection::plot::line_chart(
        &ctx.dir(Stage::Eval).join("rlhf.svg"),
        "Held-out reward through RLHF",
        "rejection-sampling round, then PPO iteration",
        &[
            (
                "rejection sampling".into(),
                plotters::style::BLUE,
                rs_points,
            ),
            ("PPO".into(), plotters::style::RED, ppo_points),
        ],
    )
}
