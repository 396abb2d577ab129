//! The pipeline (`cargo run --release --example pipeline`) at the micro scale: every stage
//! writes its outputs, `report.json` has the documented fields, a second run skips the
//! finished stages, the same seed gives the same numbers (also from the command line),
//! `from` redoes a stage and the later ones, a stop leaves no stage half-done, and the
//! models go to Hugging Face layouts and back.
#![cfg(feature = "train")]

mod common;

use common::example;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Int, Tensor, TensorData};
use llama2_burn::backend::{self, Selected, SelectedAutodiff};
use llama2_burn::import::{Checkpoint, StorageDtype, load_model};
use llama2_burn::rlhf::RlhfError;
use llama2_burn::rlhf::pipeline::{Pipeline, PipelineConfig, PipelineReport, Scale, Stage};

/// One test at a time: the backend's generator is shared (each stage seeds it), and
/// matrix products running beside another test's may split their work differently.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/pipeline")
}

fn pipeline(dir: &Path) -> Pipeline {
    let config = PipelineConfig::preset(Scale::Micro, data_dir().display().to_string())
        .with_output_dir(dir.display().to_string());
    Pipeline {
        config,
        scale: "micro".into(),
        backend: backend::NAME.into(),
        log_every: 0,
    }
}

fn run(p: &Pipeline, from: Option<Stage>) -> (PipelineReport, Vec<(String, bool)>) {
    let mut seen = Vec::new();
    let report = p
        .run::<SelectedAutodiff>(from, &|| false, &backend::device(), |s| {
            seen.push((s.name.clone(), s.skipped))
        })
        .unwrap();
    (report, seen)
}

/// The report's numbers, without wall times and skip marks.
fn numbers(r: &PipelineReport) -> serde_json::Value {
    let mut r = r.clone();
    for s in &mut r.stages {
        s.seconds = 0.0;
        s.skipped = false;
    }
    serde_json::to_value(&r).unwrap()
}

#[test]
fn the_micro_pipeline_runs_every_stage_resumes_and_repeats() {
    let _serial = serial();
    let a = tempfile::tempdir().unwrap();
    let p = pipeline(a.path());
    let (report, seen) = run(&p, None);

    let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(seen.len(), names.len());
    for ((name, skipped), want) in seen.iter().zip(&names) {
        assert_eq!(name, want);
        assert!(!skipped, "{name} ran");
    }
    for stage in &report.stages {
        assert!(stage.seconds > 0.0, "{}", stage.name);
        assert!(!stage.outputs.is_empty(), "{}", stage.name);
        for file in &stage.outputs {
            assert!(a.path().join(file).is_file(), "{}: {file}", stage.name);
        }
        assert!(a.path().join(&stage.name).join("stage.json").is_file());
    }
    assert!(a.path().join("model.bpk").is_file());

    // report.json: per stage name, seconds, key metric and metrics; the held-out block
    // with the rule-based score and the reward of the SFT, RS and PPO models.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.path().join("report.json")).unwrap())
            .unwrap();
    let stages = json["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 7);
    for s in stages {
        assert!(s["name"].is_string() && s["seconds"].is_number(), "{s}");
        assert!(
            s["key"]["before"].is_number() && s["key"]["after"].is_number(),
            "{s}"
        );
        assert!(s["metrics"].is_object(), "{s}");
    }
    for model in ["sft", "rejection_sampling", "ppo"] {
        let m = &json["held_out"][model];
        for field in ["reward", "helpfulness", "violation_rate", "perplexity"] {
            assert!(m[field].is_number(), "{model}.{field}: {m}");
        }
        assert!(m["rule_score"]["overall"].is_number(), "{model}: {m}");
        assert!(
            m["rule_score_sampled"]["overall"].is_number(),
            "{model}: {m}"
        );
        assert_eq!(m["gatt_adherence"].as_array().unwrap().len(), 3, "{model}");
    }
    assert_eq!(json["final_model"], "model.bpk");
    let md = std::fs::read_to_string(a.path().join("report.md")).unwrap();
    assert!(
        md.contains("| rejection-sampling |")
            && md.contains("![Held-out reward through RLHF](eval/rlhf.svg)")
    );

    // Past one machine: the final model goes to a Hugging Face directory with its
    // tokenizer (for PyTorch FSDP / OpenRLHF) and comes back with the same outputs.
    let hf = a.path().join("hf");
    Checkpoint::open(a.path().join("model.bpk"))
        .unwrap()
        .save_hf(&hf, StorageDtype::F32)
        .unwrap();
    assert_eq!(
        std::fs::read(hf.join("tokenizer.model")).unwrap(),
        std::fs::read(data_dir().join("tokenizer.model")).unwrap()
    );
    let device = backend::device();
    let logits = |path: &Path| {
        let model = load_model::<Selected>(path, &device).unwrap();
        let tokens = Tensor::<Selected, 2, Int>::from_data(
            TensorData::new(vec![1i64, 300, 42, 7], [1, 4]),
            &device,
        );
        model.forward(tokens).into_data().to_vec::<f32>().unwrap()
    };
    let (ours, back) = (logits(&a.path().join("model.bpk")), logits(&hf));
    assert_eq!(ours.len(), 4 * 1024);
    assert_eq!(ours, back);

    // A second run skips every stage and reports the same numbers.
    let sft_model = a.path().join("sft/model.bpk");
    let written = std::fs::metadata(&sft_model).unwrap().modified().unwrap();
    let (again, seen) = run(&p, None);
    assert!(seen.iter().all(|(_, skipped)| *skipped), "{seen:?}");
    assert_eq!(numbers(&again), numbers(&report));
    assert_eq!(
        std::fs::metadata(&sft_model).unwrap().modified().unwrap(),
        written
    );

    // `from` redoes that stage and the later ones, with the same numbers.
    let (redone, seen) = run(&p, Some(Stage::Ppo));
    let skipped: Vec<bool> = seen.iter().map(|(_, s)| *s).collect();
    assert_eq!(skipped, [true, true, true, true, true, false, false]);
    assert_eq!(numbers(&redone), numbers(&report));

    // The same seed in another directory, from the command line: the same numbers.
    let b = tempfile::tempdir().unwrap();
    let out = Command::new(example("pipeline"))
        .args(["--scale", "micro", "--out"])
        .arg(b.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "pretrain",
        "reward-safety",
        "rejection-sampling",
        "ppo",
        "eval",
    ] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    assert!(
        stdout.contains("answers before (SFT) and after RLHF (PPO)"),
        "{stdout}"
    );
    let twin: PipelineReport =
        serde_json::from_str(&std::fs::read_to_string(b.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(numbers(&twin), numbers(&report));

    // The reward model goes to transformers' LlamaForSequenceClassification layout.
    let reward_example = example("reward");
    let hf = a.path().join("reward-hf");
    let out = Command::new(&reward_example)
        .args(["export", "--model"])
        .arg(a.path().join("reward-helpfulness/reward.bpk"))
        .arg("--out")
        .arg(&hf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(hf.join("config.json")).unwrap();
    assert!(
        config.contains("LlamaForSequenceClassification"),
        "{config}"
    );
    assert!(hf.join("model.safetensors").is_file());

    // Other settings in a finished run's directory are refused, nothing redone.
    let mut other = pipeline(b.path());
    other.config.ppo_lr *= 2.0;
    let err = other
        .run::<SelectedAutodiff>(None, &|| false, &backend::device(), |_| {})
        .unwrap_err();
    assert!(matches!(err, RlhfError::Resume { .. }), "{err}");
}

#[test]
fn a_stop_ends_the_run_between_stages_with_nothing_half_written() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let mut finished = 0;
    let stop_after_first = std::cell::Cell::new(false);
    let err = p
        .run::<SelectedAutodiff>(None, &|| stop_after_first.get(), &backend::device(), |_| {
            finished += 1;
            stop_after_first.set(true);
        })
        .unwrap_err();
    assert!(
        matches!(err, RlhfError::StageInterrupted { stage: "sft" }),
        "{err}"
    );
    assert_eq!(finished, 1);
    assert!(dir.path().join("pretrain/stage.json").is_file());
    assert!(!dir.path().join("sft").exists());
    // Settings that cannot run are refused before any work.
    let empty = tempfile::tempdir().unwrap();
    let mut bad = pipeline(empty.path());
    bad.config.rs_k = 0;
    let err = bad
        .run::<SelectedAutodiff>(None, &|| false, &backend::device(), |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("rs_k"), "{err}");
    assert!(!empty.path().join("config.json").exists());
}

#[test]
fn the_example_refuses_unknown_stages() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(example("pipeline"))
        .args(["--scale", "micro", "--from", "reward", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no stage `reward`"), "{stderr}");
}
