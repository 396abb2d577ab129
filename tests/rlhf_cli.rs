//! The `rejection_sampling`, `ppo` and `safety_eval` examples as a user runs them, on a
//! tiny random policy and untrained reward models written as records: each writes its
//! outputs and exits 0; bad input exits non-zero naming what is wrong, before sampling.
#![cfg(feature = "train")]

mod common;

use common::example;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use llama2_burn::backend::{self, Selected};
use llama2_burn::import::{Checkpoint, StorageDtype, TokenizerFile};
use llama2_burn::model::{LlamaConfig, Tokenizer};
use llama2_burn::reward::{RewardMeta, RewardModelConfig};

/// A tiny policy record with the small tokenizer, and two reward records.
fn models(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tok_path = root.join("tests/data/tokenizer/small.model");
    let tok = Tokenizer::from_file(&tok_path).unwrap();
    let device = backend::device();
    let mut c = LlamaConfig::tiny_15m();
    c.dim = 32;
    c.n_layers = 1;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.vocab_size = tok.vocab_size();
    c.max_seq_len = 64;
    let policy = dir.join("policy.bpk");
    let file = TokenizerFile::read(&tok_path).unwrap();
    Checkpoint::from_model(&c.init::<Selected>(&device))
        .save_record_with(&policy, StorageDtype::F32, Some(&file), |_, _, _| {})
        .unwrap();
    let mut rms = Vec::new();
    for (name, seed) in [("helpful.bpk", 1), ("safety.bpk", 2)] {
        let path = dir.join(name);
        RewardModelConfig::new()
            .with_seed(seed)
            .with_init_std(1.0)
            .init(c.init::<Selected>(&device))
            .save(&path, RewardMeta::default(), StorageDtype::F32)
            .unwrap();
        rms.push(path);
    }
    (policy, rms.remove(0), rms.remove(0))
}

fn prompts(dir: &Path) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!(
            "{{\"id\": \"p{i}\", \"prompt\": \"What is {i} + 1?\", \"is_safety\": {}, \"category\": \"{}\"}}\n",
            i % 4 == 0,
            if i % 4 == 0 { "harm" } else { "sum" }
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_rlhf_examples_run_end_to_end_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, helpful, safety) = models(dir.path());
    let prompts = prompts(dir.path());
    let rs_out = dir.path().join("rs");
    let rs = |extra: &[&str]| {
        Command::new(example("rejection_sampling"))
            .arg("--policy")
            .arg(&policy)
            .arg("--reward")
            .arg(&helpful)
            .arg("--safety")
            .arg(&safety)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--held-out")
            .arg(&prompts)
            .args([
                "--rounds",
                "2",
                "--k",
                "3",
                "--max-gen-len",
                "6",
                "--eval-prompts",
                "4",
            ])
            .args([
                "--temperature-sweep",
                "0.7,1.3",
                "--sweep-prompts",
                "2",
                "--lr",
                "1e-3",
            ])
            .arg("--out")
            .arg(&rs_out)
            .args(extra)
            .output()
            .unwrap()
    };
    let table = ok(rs(&[]));
    assert!(table.contains("held-out"), "{table}");
    for file in [
        "rounds.jsonl",
        "archive.jsonl",
        "rewards.svg",
        "round-2/policy.bpk",
        "round-1/selected.jsonl",
    ] {
        assert!(rs_out.join(file).exists(), "{file}");
    }
    let round: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(rs_out.join("round-1/report.json"))
            .unwrap()
            .as_str(),
    )
    .unwrap();
    assert_eq!(round["sweep"].as_array().unwrap().len(), 2);
    // The same directory again without --resume is refused; with it, nothing is redone.
    let again = rs(&[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--resume")
            || String::from_utf8_lossy(&again.stderr).contains("resume")
    );
    ok(rs(&["--resume"]));

    let ppo_out = dir.path().join("ppo");
    let ppo = ok(Command::new(example("ppo"))
        .arg("--policy")
        .arg(rs_out.join("round-2/policy.bpk"))
        .arg("--reward")
        .arg(&helpful)
        .arg("--safety")
        .arg(&safety)
        .arg("--prompts")
        .arg(&prompts)
        .arg("--held-out")
        .arg(&prompts)
        .args([
            "--iterations",
            "2",
            "--rollout-size",
            "8",
            "--minibatch",
            "4",
            "--micro-batch",
            "2",
        ])
        .args([
            "--max-gen-len",
            "6",
            "--eval-prompts",
            "4",
            "--lr",
            "1e-4",
            "--kl-estimator",
            "k3",
        ])
        .arg("--out")
        .arg(&ppo_out)
        .output()
        .unwrap());
    assert!(ppo.contains("held-out"), "{ppo}");
    assert!(ppo_out.join("policy.bpk").exists());
    assert_eq!(
        std::fs::read_to_string(ppo_out.join("iterations.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let report = dir.path().join("safety.json");
    let table = ok(Command::new(example("safety_eval"))
        .arg("--policy")
        .arg(ppo_out.join("policy.bpk"))
        .arg("--safety")
        .arg(&safety)
        .arg("--reward")
        .arg(&helpful)
        .arg("--red-team")
        .arg(&prompts)
        .arg("--helpful")
        .arg(&prompts)
        .args(["--max-gen-len", "6"])
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap());
    assert!(table.contains("harm") && table.contains("all"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["overall"]["answers"], 8);
    assert_eq!(json["by_category"]["harm"]["answers"], 2);
    // The violations are the red-team answers scored below the threshold.
    let below = json["red_team"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["score"].as_f64().unwrap() < 0.15)
        .count();
    assert_eq!(json["overall"]["violations"], below);

    // Bad PPO numbers are refused before anything is written.
    for (bad, says) in [
        (&["--gamma", "1.5", "--micro-batch", "2"][..], "gamma 1.5"),
        (&["--kl-coef=-1", "--micro-batch", "2"], "KL coefficient"),
        (&["--cliprange", "0", "--micro-batch", "2"], "clip ranges"),
        (&["--micro-batch", "3"], "micro-batch"),
    ] {
        let out_dir = dir.path().join("ppo-bad");
        let out = Command::new(example("ppo"))
            .arg("--policy")
            .arg(&policy)
            .arg("--reward")
            .arg(&helpful)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--held-out")
            .arg(&prompts)
            .args(["--rollout-size", "8", "--minibatch", "4"])
            .args(bad)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("invalid settings") && err.contains(says),
            "{bad:?}: {err}"
        );
        assert!(!out_dir.exists(), "{bad:?} wrote {}", out_dir.display());
    }

    // A negative sampling temperature for the safety evaluation is refused.
    let out = Command::new(example("safety_eval"))
        .arg("--policy")
        .arg(&policy)
        .arg("--safety")
        .arg(&safety)
        .arg("--reward")
        .arg(&helpful)
        .arg("--red-team")
        .arg(&prompts)
        .arg("--temperature=-1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("temperature -1"),
        "{err}"
    );

    // Bad input: an empty prompt file, a prompt too long for the context.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let long = dir.path().join("long.jsonl");
    std::fs::write(
        &long,
        format!("{{\"prompt\": \"{}\"}}\n", "word ".repeat(80)),
    )
    .unwrap();
    for (file, says) in [(&empty, "no prompts"), (&long, "leaves no room")] {
        let out = Command::new(example("rejection_sampling"))
            .arg("--policy")
            .arg(&policy)
            .arg("--reward")
            .arg(&helpful)
            .arg("--prompts")
            .arg(file)
            .arg("--out")
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
        assert!(!dir.path().join("bad/round-1").exists());
    }
}

/// A rejection-sampling run killed (SIGKILL) in the middle of its second round's sampling
/// and resumed ends with the uninterrupted run's archive, reports and policy record.
#[test]
fn a_killed_rejection_sampling_run_resumes_to_the_same_archive_and_weights() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let (policy, helpful, safety) = models(dir.path());
    let prompts = dir.path().join("many.jsonl");
    let text: String = (0..48)
        .map(|i| format!("{{\"id\": \"q{i}\", \"prompt\": \"Tell me about {i}.\"}}\n"))
        .collect();
    std::fs::write(&prompts, text).unwrap();
    let rs = |out: &Path, extra: &[&str]| {
        let mut cmd = Command::new(example("rejection_sampling"));
        cmd.arg("--policy")
            .arg(&policy)
            .arg("--reward")
            .arg(&helpful)
            .arg("--safety")
            .arg(&safety)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--held-out")
            .arg(&prompts)
            .args([
                "--rounds",
                "2",
                "--k",
                "4",
                "--max-gen-len",
                "24",
                "--eval-prompts",
                "4",
            ])
            .args(["--lr", "1e-3", "--no-dashboard"])
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("RAYON_NUM_THREADS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let whole = dir.path().join("whole");
    ok(rs(&whole, &[]).output().unwrap());

    let killed = dir.path().join("killed");
    let mut child = rs(&killed, &[]).spawn().unwrap();
    let samples = killed.join("round-2/samples.jsonl");
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&samples).map_or(0, |t| t.lines().count());
        if lines >= 3 || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "round 2 did not start"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().ok(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success() && !killed.join("round-2/report.json").exists(),
        "the run finished before it could be killed"
    );
    ok(rs(&killed, &["--resume"]).output().unwrap());

    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        read(whole.join("archive.jsonl")),
        read(killed.join("archive.jsonl"))
    );
    assert_eq!(
        read(whole.join("round-2/samples.jsonl")),
        read(killed.join("round-2/samples.jsonl"))
    );
    let weights = |p: PathBuf| -> Vec<f32> {
        let m = llama2_burn::import::load_model::<Selected>(&p, &backend::device()).unwrap();
        let mut v = Vec::new();
        let mut put = |t: burn::tensor::Tensor<Selected, 2>| {
            v.extend(t.into_data().to_vec::<f32>().unwrap());
        };
        put(m.tok_embeddings.weight.val());
        put(m.output.weight.val());
        for l in &m.layers {
            let a = &l.attention;
            let f = &l.feed_forward;
            for w in [&a.wq, &a.wk, &a.wv, &a.wo, &f.w1, &f.w2, &f.w3] {
                put(w.weight.val());
            }
        }
        v
    };
    let (w, k) = (
        weights(whole.join("round-2/policy.bpk")),
        weights(killed.join("round-2/policy.bpk")),
    );
    assert_eq!(w.len(), k.len());
    assert!(
        w == k,
        "the resumed run's policy differs from the uninterrupted one's"
    );
    let held_out = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("rounds.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["held_out"].clone())
            .collect()
    };
    assert_eq!(held_out(&whole), held_out(&killed));
}
