//! Rejection sampling and PPO on a tiny random policy with a reward a program checks (the
//! share of response tokens in the lower half of the vocabulary, a stand-in for "the
//! answer holds the computed value"): held-out reward rises over rounds / iterations while
//! the KL to the initial policy stays bounded, the archive never lets a prompt's best score
//! fall, and a run stopped part-way and resumed ends with the same archive, reports and
//! weights as the uninterrupted run.
#![cfg(feature = "train")]

use std::cell::Cell;
use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use llama2_burn::backend::{self, SelectedAutodiff};
use llama2_burn::model::chat::Message;
use llama2_burn::model::train::{TrainConfig, WarmupCosineConfig};
use llama2_burn::model::{Llama, LlamaConfig, Tokenizer};
use llama2_burn::reward::RewardModelConfig;
use llama2_burn::rlhf::RlhfError;
use llama2_burn::rlhf::ppo::{AdvantageConfig, Ppo, PpoConfig, paper_ppo_train};
use llama2_burn::rlhf::rejection::{Archive, RejectionSampling, RejectionSamplingConfig};
use llama2_burn::rlhf::rollout::{Prompt, Response, RuleScorer};

type AD = SelectedAutodiff;

fn tokenizer() -> Tokenizer {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Tokenizer::from_file(root.join("tests/data/tokenizer/small.model")).unwrap()
}

/// One test at a time: the backend's generator is shared, and matrix products running
/// beside another test's may split their work differently, which changes the last bits of
/// a sum and, after a sampled token flips, a whole run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn policy(tok: &Tokenizer, seed: u64) -> Llama<AD> {
    let device = backend::device();
    AD::seed(&device, seed);
    let mut c = LlamaConfig::tiny_15m();
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.vocab_size = tok.vocab_size();
    c.max_seq_len = 64;
    c.init::<AD>(&device)
}

fn prompts(tok: &Tokenizer, n: usize, offset: usize) -> Vec<Prompt> {
    (0..n)
        .map(|i| {
            let text = format!("Tell me about the number {}.", i + offset);
            Prompt::new(format!("p{}", i + offset), vec![Message::user(text)], tok).unwrap()
        })
        .collect()
}

/// The share of response tokens whose id is below half the vocabulary.
fn rule(half: u32) -> impl FnMut(&Prompt, &Response) -> f64 {
    move |_, r| {
        let low = r.tokens.iter().filter(|&&t| t < half).count();
        low as f64 / r.tokens.len().max(1) as f64
    }
}

fn sft(dir: &Path) -> TrainConfig {
    TrainConfig::new()
        .with_seq_len(64)
        .with_micro_batch_size(8)
        .with_log_every(0)
        .with_dashboard(false)
        .with_schedule(
            WarmupCosineConfig::new()
                .with_peak_lr(5e-3)
                .with_warmup_steps(1)
                .with_total_steps(0),
        )
        .with_output_dir(dir.display().to_string())
}

fn rs_config(dir: &Path) -> RejectionSamplingConfig {
    RejectionSamplingConfig::new(sft(dir))
        .with_rounds(3)
        .with_samples_per_prompt(8)
        .with_temperatures(vec![1.0, 1.1, 1.2])
        .with_top_p(1.0)
        .with_max_gen_len(12)
        .with_sft_epochs(4.0)
        .with_eval_prompts(16)
        .with_output_dir(dir.display().to_string())
}

fn weights<B: Backend>(model: &Llama<B>) -> Vec<f32> {
    let mut v = model
        .output
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    v.extend(
        model.layers[0]
            .attention
            .wq
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap(),
    );
    v
}

#[test]
fn rejection_sampling_raises_the_held_out_reward_and_keeps_the_best() {
    let _serial = serial();
    let tok = tokenizer();
    let half = tok.vocab_size() as u32 / 2;
    let train = prompts(&tok, 24, 0);
    let held = prompts(&tok, 16, 100);
    let dir = tempfile::tempdir().unwrap();
    let run = RejectionSampling {
        config: rs_config(dir.path()),
        tokenizer: &tok,
        tokenizer_file: None,
        prompts: &train,
        held_out: &held,
        policy_name: "initial".into(),
    };
    let mut scorer = RuleScorer::new("low-half", rule(half));
    let out = run
        .run(
            policy(&tok, 7),
            None,
            &mut scorer,
            false,
            &|| false,
            &backend::device(),
        )
        .unwrap();
    assert_eq!(out.rounds.len(), 3);
    let first = out.initial.reward;
    let last = out.rounds[2].held_out.reward;
    eprintln!(
        "held-out reward {first:.3} → {:?}; KL {:?}",
        out.rounds
            .iter()
            .map(|r| r.held_out.reward)
            .collect::<Vec<_>>(),
        out.rounds.iter().map(|r| r.held_out.kl).collect::<Vec<_>>()
    );
    assert!(last > first + 0.1, "held-out reward {first} → {last}");
    for r in &out.rounds {
        assert!(
            r.held_out.kl.is_finite() && r.held_out.kl < 15.0,
            "KL {}",
            r.held_out.kl
        );
        assert!(r.sample_max >= r.sample_median && r.kept_mean >= r.sample_max - 1e-12);
        assert_eq!(r.best_of_n.len(), 8);
        assert!(
            r.best_of_n.windows(2).all(|w| w[1].1 >= w[0].1),
            "max of N grows with N"
        );
        assert!(r.sft_steps > 0 && r.sft_loss.1.is_finite());
    }
    // The archive: every prompt's best score never falls from one round to the next, and
    // the kept set is at least as good as the best new sample.
    let mut previous = Archive::default();
    for round in 1..=3 {
        let now = Archive::read(&dir.path().join(format!("round-{round}/archive.jsonl"))).unwrap();
        assert_eq!(now.len(), 24);
        for (id, old) in &previous.entries {
            let new = now.get(id).unwrap();
            assert!(
                new.score >= old.score,
                "{id}: {} → {}",
                old.score,
                new.score
            );
            assert!(new.round <= round);
        }
        previous = now;
    }
    assert!(
        previous.entries.values().any(|e| e.round > 1),
        "later rounds win some prompts"
    );
    for file in [
        "rounds.jsonl",
        "rewards.svg",
        "best_of_n.svg",
        "archive.jsonl",
        "round-3/policy.bpk",
    ] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    // A second run into the same directory without resume is refused.
    let again = run.run(
        policy(&tok, 7),
        None,
        &mut scorer,
        false,
        &|| false,
        &backend::device(),
    );
    assert!(matches!(again, Err(RlhfError::Resume { .. })), "{again:?}");
}

#[test]
fn a_stopped_rejection_sampling_run_resumes_to_the_same_end() {
    let _serial = serial();
    let tok = tokenizer();
    let half = tok.vocab_size() as u32 / 2;
    let train = prompts(&tok, 10, 0);
    let held = prompts(&tok, 6, 100);
    let run = |dir: &Path, resume: bool, stop_after: Option<usize>| {
        let mut config = rs_config(dir).with_rounds(2).with_sft_epochs(2.0);
        config.eval_prompts = 6;
        let run = RejectionSampling {
            config,
            tokenizer: &tok,
            tokenizer_file: None,
            prompts: &train,
            held_out: &held,
            policy_name: "initial".into(),
        };
        let calls = Cell::new(0usize);
        let stop = || {
            calls.set(calls.get() + 1);
            stop_after.is_some_and(|n| calls.get() >= n)
        };
        let mut scorer = RuleScorer::new("low-half", rule(half));
        run.run(
            policy(&tok, 11),
            None,
            &mut scorer,
            resume,
            &stop,
            &backend::device(),
        )
    };
    let whole = tempfile::tempdir().unwrap();
    let want = run(whole.path(), false, None).unwrap();

    let parts = tempfile::tempdir().unwrap();
    // Stopped in round 2 after 4 of its prompts (the first call of the round is after
    // the temperature, then one per prompt): round 1 is done, round 2 is half sampled.
    let stopped = run(parts.path(), false, Some(1 + 10 + 1 + 1 + 4));
    assert!(
        matches!(stopped, Err(RlhfError::Interrupted)),
        "{stopped:?}"
    );
    let half_done = std::fs::read_to_string(parts.path().join("round-2/samples.jsonl")).unwrap();
    assert_eq!(half_done.lines().count(), 4);
    let got = run(parts.path(), true, None).unwrap();

    assert_eq!(got.rounds.len(), 2);
    for (g, w) in got.rounds.iter().zip(&want.rounds) {
        assert_eq!(g.held_out, w.held_out, "round {}", g.round);
        assert_eq!(g.best_of_n, w.best_of_n);
        assert_eq!(g.sft_loss, w.sft_loss);
    }
    assert_eq!(got.archive, want.archive);
    assert_eq!(weights(&got.policy.valid()), weights(&want.policy.valid()));
}

fn ppo_config(dir: &Path) -> PpoConfig {
    let mut train = paper_ppo_train()
        .with_log_every(0)
        .with_dashboard(false)
        .with_micro_batch_size(8);
    train.schedule = train.schedule.with_peak_lr(1e-2);
    PpoConfig::new()
        .with_iterations(8)
        .with_rollout_size(64)
        .with_minibatch_size(8)
        .with_max_gen_len(10)
        .with_eval_prompts(16)
        .with_advantage(AdvantageConfig::new().with_kl_coef(0.01))
        .with_train(train)
        .with_output_dir(dir.display().to_string())
}

#[test]
fn ppo_raises_the_held_out_reward_with_a_bounded_kl_and_resumes() {
    let _serial = serial();
    let tok = tokenizer();
    let half = tok.vocab_size() as u32 / 2;
    let train = prompts(&tok, 32, 0);
    let held = prompts(&tok, 16, 100);
    let device = backend::device();
    let value = |seed| {
        RewardModelConfig::new()
            .with_seed(seed)
            .init(policy(&tok, seed + 1))
    };
    let run = |config: PpoConfig, resume: bool, stop_after: Option<usize>| {
        let ppo = Ppo {
            config,
            tokenizer: &tok,
            tokenizer_file: None,
            prompts: &train,
            held_out: &held,
        };
        let calls = Cell::new(0usize);
        let stop = || {
            calls.set(calls.get() + 1);
            stop_after.is_some_and(|n| calls.get() >= n)
        };
        let mut scorer = RuleScorer::new("low-half", rule(half));
        ppo.run(
            policy(&tok, 5),
            value(3),
            &mut scorer,
            resume,
            &stop,
            &device,
        )
    };
    let whole = tempfile::tempdir().unwrap();
    let out = run(ppo_config(whole.path()), false, None).unwrap();
    let n_it = out.iterations.len();
    let first = out.initial.reward;
    let last = out.iterations[n_it - 1].held_out.unwrap().reward;
    eprintln!(
        "PPO held-out reward {first:.3} → {last:.3}; rollout reward {:?}; KL {:?}",
        out.iterations.iter().map(|r| r.reward).collect::<Vec<_>>(),
        out.iterations.iter().map(|r| r.kl).collect::<Vec<_>>()
    );
    assert!(last > first + 0.05, "held-out reward {first} → {last}");
    for r in &out.iterations {
        assert!(r.kl.is_finite() && r.kl.abs() < 15.0, "KL {}", r.kl);
        assert!((0.0..=1.0).contains(&r.clip_fraction));
        assert!(r.entropy > 0.0 && r.value_loss.is_finite());
    }
    for file in [
        "iterations.jsonl",
        "ppo.svg",
        "policy.bpk",
        "metrics.jsonl",
        "metrics.csv",
    ] {
        assert!(whole.path().join(file).exists(), "{file}");
    }

    let steps = std::fs::read_to_string(whole.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        steps.lines().count(),
        8 * 64 / 8,
        "one line per minibatch step"
    );
    assert!(steps.contains("Clip Fraction"));

    // Stopped after iteration 2, resumed: the same reports and weights.
    let short = |dir: &Path| ppo_config(dir).with_iterations(4);
    let a = tempfile::tempdir().unwrap();
    let want = run(short(a.path()), false, None).unwrap();
    let b = tempfile::tempdir().unwrap();
    let stopped = run(short(b.path()), false, Some(2));
    assert!(
        matches!(stopped, Err(RlhfError::Interrupted)),
        "{stopped:?}"
    );
    // As if killed after writing iteration 3's report but before its checkpoint.
    let log = b.path().join("iterations.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    let last = text
        .lines()
        .last()
        .unwrap()
        .replace("\"iteration\":2", "\"iteration\":3");
    text.push_str(&last);
    text.push('\n');
    std::fs::write(&log, text).unwrap();
    let got = run(short(b.path()), true, None).unwrap();
    assert_eq!(got.iterations.len(), 4);
    for (g, w) in got.iterations.iter().zip(&want.iterations) {
        assert_eq!(
            (g.reward, g.kl, g.policy_loss),
            (w.reward, w.kl, w.policy_loss)
        );
        assert_eq!(g.held_out, w.held_out);
    }
    assert_eq!(
        weights(&got.model.policy.valid()),
        weights(&want.model.policy.valid())
    );
}

#[test]
fn bad_inputs_are_typed_errors_before_sampling() {
    let _serial = serial();
    let tok = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let train = prompts(&tok, 4, 0);
    let mut scorer = RuleScorer::new("low-half", rule(600));
    let device = backend::device();
    // A prompt longer than the context.
    let long = vec![Prompt::new("long", vec![Message::user("word ".repeat(80))], &tok).unwrap()];
    let run = RejectionSampling {
        config: rs_config(dir.path()),
        tokenizer: &tok,
        tokenizer_file: None,
        prompts: &long,
        held_out: &train,
        policy_name: "initial".into(),
    };
    let err = run.run(
        policy(&tok, 1),
        None,
        &mut scorer,
        false,
        &|| false,
        &device,
    );
    assert!(
        matches!(err, Err(RlhfError::PromptTooLong { .. })),
        "{err:?}"
    );
    assert!(!dir.path().join("round-1").exists());
    // No prompts.
    let empty: Vec<Prompt> = Vec::new();
    let run = RejectionSampling {
        prompts: &empty,
        ..run
    };
    let err = run.run(
        policy(&tok, 1),
        None,
        &mut scorer,
        false,
        &|| false,
        &device,
    );
    assert!(matches!(err, Err(RlhfError::Config(_))), "{err:?}");
    // A value model with another vocabulary.
    let mut c = LlamaConfig::tiny_15m();
    c.dim = 16;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.vocab_size = 100;
    let other = RewardModelConfig::new().init(c.init::<AD>(&device));
    let ppo = Ppo {
        config: ppo_config(dir.path()),
        tokenizer: &tok,
        tokenizer_file: None,
        prompts: &train,
        held_out: &train,
    };
    let err = ppo.run(
        policy(&tok, 1),
        other,
        &mut scorer,
        false,
        &|| false,
        &device,
    );
    assert!(matches!(err, Err(RlhfError::Mismatch { .. })), "{err:?}");
    // A reward model with another vocabulary.
    let rm = RewardModelConfig::new().init(c.init::<llama2_burn::backend::Selected>(&device));
    let err = llama2_burn::rlhf::rollout::RewardScorer::new(&rm, None, tok.vocab_size(), 2, "rm");
    assert!(matches!(err, Err(RlhfError::Mismatch { .. })));
}

#[test]
fn ppo_with_lora_trains_the_adapters_against_the_frozen_base() {
    use llama2_burn::model::lora::LoraConfig;
    let _serial = serial();
    let tok = tokenizer();
    let half = tok.vocab_size() as u32 / 2;
    let train = prompts(&tok, 16, 0);
    let held = prompts(&tok, 8, 100);
    let device = backend::device();
    let dir = tempfile::tempdir().unwrap();
    let config = ppo_config(dir.path())
        .with_iterations(3)
        .with_rollout_size(16)
        .with_eval_prompts(8)
        .with_lora(Some(LoraConfig::new().with_rank(4).with_dropout(0.0)));
    let ppo = Ppo {
        config,
        tokenizer: &tok,
        tokenizer_file: None,
        prompts: &train,
        held_out: &held,
    };
    let initial = policy(&tok, 5);
    let base = weights(&initial.valid());
    let value = RewardModelConfig::new().with_seed(3).init(policy(&tok, 4));
    let mut scorer = RuleScorer::new("low-half", rule(half));
    let out = ppo
        .run(initial, value, &mut scorer, false, &|| false, &device)
        .unwrap();
    let trained = out.model.policy.valid();
    assert!(trained.lora.is_some());
    // The base weights are untouched; the adapters moved away from their zero start.
    assert_eq!(weights(&trained), base);
    let sites = trained.lora_sites();
    assert!(!sites.is_empty());
    let moved = sites.iter().any(|&site| {
        let b = trained.lora_adapter(site).unwrap().lora_b.weight.val();
        b.into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .any(|&x| x != 0.0)
    });
    assert!(moved, "the adapters trained");
    assert!(out.iterations.iter().all(|r| r.kl.is_finite()));
    // The saved policy is the merged model: a plain record that differs from the base.
    let saved: Llama<llama2_burn::backend::Selected> =
        llama2_burn::import::load_model(dir.path().join("policy.bpk"), &device).unwrap();
    assert!(saved.lora.is_none());
    assert_ne!(weights(&saved), base);
}
