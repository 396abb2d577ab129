//! The `--dtype` option as a user gives it: `generate` in f16 and bf16 picks the same
//! greedy tokens as in f32 on the default model, and a precision the program does not
//! have is refused by name, with a non-zero exit and no output file written.

mod common;

use std::process::{Command, Output};

use common::{data_dir, example};

/// `generate` on its default model (tests/data/tiny-chat), greedy, in `dtype`.
fn generate(dtype: &str) -> Output {
    Command::new(example("generate"))
        .args([
            "--max-new-tokens",
            "12",
            "--temperature",
            "0",
            "--ignore-eos",
        ])
        .args(["--json", "--dtype", dtype])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// The generated ids of a `--json` output.
fn ids(output: &Output) -> Vec<u64> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    rows[0]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap())
        .collect()
}

/// A refused command line: clap's usage error (exit 2) naming the value and the choices,
/// not a panic.
fn assert_refused(output: &Output, value: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(value), "{stderr}");
    assert!(stderr.contains("f32, f16 or bf16"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn generate_in_16_bits_picks_the_f32_greedy_tokens() {
    let f32_ids = ids(&generate("f32"));
    assert_eq!(f32_ids.len(), 12);
    assert_eq!(ids(&generate("f16")), f32_ids);
    assert_eq!(ids(&generate("bf16")), f32_ids);
}

#[test]
fn an_unknown_dtype_is_refused_by_name() {
    assert_refused(&generate("int8"), "int8");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.bpk");
    let import = Command::new(example("import"))
        .arg("--hf")
        .arg(data_dir().join("tiny/hf"))
        .arg("--out")
        .arg(&out)
        .args(["--dtype", "q4"])
        .output()
        .unwrap();
    assert_refused(&import, "q4");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
