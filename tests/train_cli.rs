//! The `finetune` example as a user runs it: the same `--seed` gives the same
//! loss curve (model initialisation, data order and dropout are seeded), and
//! a run killed with SIGKILL between checkpoints continues with `--resume`
//! to exactly the uninterrupted run's curve.
#![cfg(feature = "train")]

mod common;

use common::example;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn finetune(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(example("finetune"));
    cmd.args(["--steps", "60", "--checkpoint-every", "6", "--no-dashboard"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn losses(out: &Path) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap() as usize,
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn run(mut cmd: Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn seeded_runs_repeat_and_killed_runs_resume() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    run(finetune(&a, &[]));
    run(finetune(&b, &[]));
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), 60);
    assert_eq!(la, lb, "two runs with the same seed");

    // The trained record carries its (small) tokenizer: `generate` needs no
    // `--tokenizer` for it, and the ids it prints are in the model's vocabulary.
    let out = Command::new(example("generate"))
        .arg("--model")
        .arg(a.join("model.bpk"))
        .args(["--prompt", "Hello", "--max-new-tokens", "4", "--json"])
        .args(["--temperature", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate on the fine-tuned record: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let small = llama2_burn::model::Tokenizer::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer/small.model"),
    )
    .unwrap();
    let stored = llama2_burn::import::model_tokenizer(a.join("model.bpk"))
        .unwrap()
        .expect("the record holds a tokenizer");
    assert_eq!(stored.vocab_size(), small.vocab_size());
    assert_eq!(
        stored.encode("Hello world", true, false).unwrap(),
        small.encode("Hello world", true, false).unwrap()
    );

    let c = dir.path().join("c");
    run(finetune(&c, &["--seed", "7"]));
    let lc = losses(&c);
    assert_eq!(lc.len(), 60);
    assert_ne!(la[0].1, lc[0].1, "another seed, another initialisation");

    // Kill a run as soon as its first checkpoint exists, then resume it.
    let k = dir.path().join("k");
    let mut child = finetune(&k, &[]).spawn().unwrap();
    let latest = k.join("checkpoints/latest");
    let started = Instant::now();
    while !latest.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().ok(); // SIGKILL
    let status = child.wait().unwrap();
    let killed_at = losses(&k).len();
    assert!(
        !status.success() && killed_at < 60,
        "the run finished ({killed_at} steps) before it could be killed"
    );
    run(finetune(&k, &["--resume"]));
    let lk = losses(&k);
    assert_eq!(lk.len(), 60);
    for ((sa, xa), (sk, xk)) in la.iter().zip(&lk) {
        assert_eq!(sa, sk);
        assert!(
            (xa - xk).abs() < 1e-6,
            "step {sa}: {xa} uninterrupted vs {xk} killed and resumed"
        );
    }
}

/// Bad numbers are refused by the flag parsers before any work starts: a
/// usage error (exit code 2) naming the flag, no run directory written.
#[test]
fn bad_training_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (flag, value) in [
        ("--batch", "0"),
        ("--seq-len", "0"),
        ("--steps", "0"),
        ("--tokens-per-step", "0"),
        ("--lr", "NaN"),
        ("--lr", "-1e-3"),
        ("--valid-fraction", "1.5"),
        ("--devices", "0"),
    ] {
        for name in ["finetune", "pretrain"] {
            let result = Command::new(example(name))
                .arg(format!("{flag}={value}"))
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
            assert_eq!(result.status.code(), Some(2), "{name} {flag} {value}");
            let stderr = String::from_utf8_lossy(&result.stderr);
            assert!(stderr.contains(flag), "{name} {flag} {value}: {stderr}");
            assert!(
                !out.exists(),
                "{name} {flag} {value} wrote {}",
                out.display()
            );
        }
    }
}
