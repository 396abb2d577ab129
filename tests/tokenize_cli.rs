//! The `tokenize` command as a user runs it: text from a file or standard input (any
//! text, a NUL or a leading `-` included) gives sentencepiece's ids
//! (`tests/data/tokenizer/llama2_cases.json`, written by sentencepiece from Meta's Llama 2
//! `tokenizer.model`); the default tokenizer is embedded, and the commands' defaults are
//! found without the build machine's paths.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{data_dir, example};

/// sentencepiece's ids for `text`, from the reference cases.
fn expected_ids(text: &str) -> Vec<u32> {
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir().join("tokenizer/llama2_cases.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cases["model"], "llama2-tokenizer/tokenizer.model");
    let case = cases["encode"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == text)
        .unwrap_or_else(|| panic!("no reference case for {text:?}"));
    case["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

/// Runs `tokenize` in `dir` (no repository files there), feeding `stdin`.
fn tokenize(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(example("tokenize"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ids(output: &Output) -> Vec<u32> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Texts no command-line argument can carry as they are.
const TEXTS: [&str; 5] = [
    "a\u{0}b",
    "\u{0}\u{1}\u{2}",
    "-42",
    "trailing newline\n",
    "line one\nline two\n",
];

#[test]
fn text_from_a_file_or_standard_input_gives_sentencepieces_ids() {
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in TEXTS.iter().enumerate() {
        let expected = expected_ids(text);
        assert!(!expected.is_empty(), "{text:?}");
        let name = format!("-text{i}.txt");
        std::fs::write(dir.path().join(&name), text).unwrap();
        let file_arg = format!("./{name}");
        let runs = [
            tokenize(dir.path(), &["--file", &name], None),
            tokenize(dir.path(), &[&file_arg], None),
            tokenize(dir.path(), &["--", &name], None),
            tokenize(dir.path(), &["--file", "-"], Some(text.as_bytes())),
            tokenize(dir.path(), &["-"], Some(text.as_bytes())),
        ];
        for (run, output) in runs.iter().enumerate() {
            assert_eq!(ids(output), expected, "{text:?}, run {run}");
        }
        let mut with_bos_eos = vec![1];
        with_bos_eos.extend(&expected);
        with_bos_eos.push(2);
        let output = tokenize(dir.path(), &["-", "--bos", "--eos"], Some(text.as_bytes()));
        assert_eq!(ids(&output), with_bos_eos, "{text:?} with BOS and EOS");
    }
    // The embedded default is Meta's tokenizer: the same ids as the committed file.
    let explicit = data_dir().join("llama2-tokenizer/tokenizer.model");
    let output = tokenize(
        dir.path(),
        &["--tokenizer", explicit.to_str().unwrap(), "-"],
        Some(TEXTS[0].as_bytes()),
    );
    assert_eq!(ids(&output), expected_ids(TEXTS[0]));
}

#[test]
fn unreadable_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokenize(dir.path(), &["-"], Some(b"caf\xe9"));
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("standard input is not UTF-8"), "{error}");
    let output = tokenize(dir.path(), &["--file", "missing.txt"], None);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("missing.txt"), "{error}");
    // Two inputs at once are refused by the parser.
    let output = tokenize(dir.path(), &["--text", "x", "-"], None);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn help_shows_no_build_machine_path_and_defaults_are_found_at_run_time() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    for name in ["tokenize", "generate", "chat", "gatt"] {
        let output = Command::new(example(name))
            .arg("--help")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{name} --help");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("--tokenizer"), "{name}: {help}");
        assert!(!help.contains(root), "{name} --help shows {root}: {help}");
    }
    // From a directory without the repository's files, `generate` still finds its default
    // model (tests/data/tiny-chat) above its executable, or under LLAMA2_BURN_ROOT.
    let generate = |root: Option<&Path>| {
        let mut cmd = Command::new(example("generate"));
        cmd.args([
            "--max-new-tokens",
            "2",
            "--temperature",
            "0",
            "--ignore-eos",
            "--json",
        ])
        .current_dir(dir.path())
        .env("RAYON_NUM_THREADS", "1");
        match root {
            Some(root) => cmd.env("LLAMA2_BURN_ROOT", root),
            None => cmd.env_remove("LLAMA2_BURN_ROOT"),
        };
        cmd.output().unwrap()
    };
    let found = generate(None);
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(json[0]["ids"].as_array().map(Vec::len), Some(2));
    let nowhere = dir.path().join("nowhere");
    let output = generate(Some(&nowhere));
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&nowhere.join("tests/data/tiny-chat").display().to_string()),
        "{error}"
    );
}
