//! Models and tokenizers by Hugging Face Hub repo id, with the network off: a Hugging Face
//! cache is built by hand (`models--org--name/refs/main` + `snapshots/<commit>/`, files
//! linked into `blobs/` as `huggingface_hub` does) from the tiny reference model, and both
//! the resolver and the `generate` command read it with `HF_HUB_OFFLINE=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{data_dir, example, tiny};
use llama2_import::hub::{Hub, HubError, HubOptions};
use llama2_import::{Checkpoint, ImportError};

const REPO: &str = "test-org/tiny-llama";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn llama2_tokenizer() -> PathBuf {
    data_dir().join("llama2-tokenizer/tokenizer.model")
}

/// Puts `files` (name in the repo, source file) into the cache at `cache` as snapshot
/// `commit` of `repo`, each a link to a blob, and points `refs/<r>` at it for each of `refs`.
fn cache_repo(cache: &Path, repo: &str, commit: &str, refs: &[&str], files: &[(&str, PathBuf)]) {
    let folder = cache.join(llama2_import::hub::repo_folder(repo));
    let snapshot = folder.join("snapshots").join(commit);
    std::fs::create_dir_all(folder.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for (i, (name, source)) in files.iter().enumerate() {
        let blob = folder.join("blobs").join(format!("{commit}-{i}"));
        std::fs::copy(source, &blob).unwrap();
        let link = snapshot.join(name);
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(blob.file_name().unwrap()),
            &link,
        )
        .unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, &link).unwrap();
    }
    for r in refs {
        let path = folder.join("refs").join(r);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, commit).unwrap();
    }
}

/// Every file of a reference model directory, plus Llama 2's tokenizer.
fn model_files(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut files: Vec<(&'static str, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            (&*Box::leak(name.into_boxed_str()), path)
        })
        .collect();
    files.sort();
    files.push(("tokenizer.model", llama2_tokenizer()));
    files
}

fn offline_hub(cache: &Path) -> Hub {
    Hub::new(HubOptions::offline(cache))
}

/// The parameter names and shapes a checkpoint directory holds, with its configuration.
fn summary(dir: &Path) -> (String, Vec<(String, Vec<usize>)>) {
    let checkpoint = Checkpoint::open(dir).unwrap();
    let params = checkpoint
        .params()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    (format!("{:?}", checkpoint.config), params)
}

#[test]
fn a_cached_repo_resolves_through_refs_main_to_its_snapshot() {
    let cache = tempfile::tempdir().unwrap();
    cache_repo(
        cache.path(),
        REPO,
        COMMIT,
        &["main"],
        &model_files(&tiny("hf")),
    );
    let hub = offline_hub(cache.path());
    let dir = hub.model(REPO, "main").unwrap();
    let folder = cache.path().join("models--test-org--tiny-llama");
    assert_eq!(dir, folder.join("snapshots").join(COMMIT));
    assert_eq!(summary(&dir), summary(&tiny("hf")));
    let tokenizer = llama2_import::model_tokenizer(&dir).unwrap().unwrap();
    assert_eq!(tokenizer.vocab_size(), 32000);
    assert_eq!(
        hub.tokenizer(REPO, "main").unwrap(),
        dir.join("tokenizer.model")
    );
    // A revision that is a commit hash names the snapshot without a ref.
    assert_eq!(hub.model(REPO, COMMIT).unwrap(), dir);
    // The loader reads the snapshot as a Hugging Face directory.
    let model = llama2_import::load_model::<common::B>(&dir, &common::device()).unwrap();
    assert_eq!(model.config.vocab_size, 512);
}

#[test]
fn a_commit_hash_revision_needs_no_ref_and_other_refs_are_followed() {
    let cache = tempfile::tempdir().unwrap();
    cache_repo(cache.path(), REPO, COMMIT, &[], &model_files(&tiny("hf")));
    cache_repo(
        cache.path(),
        REPO,
        OTHER_COMMIT,
        &["refs/pr/1"],
        &model_files(&tiny("hf-sharded")),
    );
    let hub = offline_hub(cache.path());
    let snapshots = cache.path().join("models--test-org--tiny-llama/snapshots");
    assert_eq!(hub.model(REPO, COMMIT).unwrap(), snapshots.join(COMMIT));
    assert_eq!(
        hub.model(REPO, &COMMIT.to_uppercase()).unwrap(),
        snapshots.join(COMMIT)
    );
    assert_eq!(
        hub.model(REPO, "refs/pr/1").unwrap(),
        snapshots.join(OTHER_COMMIT)
    );
    // No `refs/main`: offline, main is unknown.
    let error = hub.model(REPO, "main").unwrap_err();
    assert!(
        matches!(&error, HubError::Offline { file, revision, .. } if file == "config.json" && revision == "main"),
        "{error}"
    );
}

#[test]
fn a_sharded_index_needs_every_shard_it_names() {
    let cache = tempfile::tempdir().unwrap();
    let files = model_files(&tiny("hf-sharded"));
    assert!(
        files
            .iter()
            .any(|(n, _)| *n == "model.safetensors.index.json")
    );
    cache_repo(cache.path(), REPO, COMMIT, &["main"], &files);
    let hub = offline_hub(cache.path());
    let dir = hub.model(REPO, "main").unwrap();
    assert_eq!(summary(&dir), summary(&tiny("hf-sharded")));
    assert_eq!(summary(&dir), summary(&tiny("hf")));

    // Without one of the shards, offline, the error names that shard.
    let partial = tempfile::tempdir().unwrap();
    let missing = "model-00002-of-00003.safetensors";
    let kept: Vec<_> = files.into_iter().filter(|(n, _)| *n != missing).collect();
    cache_repo(partial.path(), REPO, COMMIT, &["main"], &kept);
    let error = offline_hub(partial.path()).model(REPO, "main").unwrap_err();
    match &error {
        HubError::Offline {
            repo,
            file,
            cache_dir,
            ..
        } => {
            assert_eq!(repo, REPO);
            assert_eq!(file, missing);
            assert_eq!(cache_dir, partial.path());
        }
        other => panic!("expected Offline, got {other:?}"),
    }
}

#[test]
fn offline_without_a_cached_copy_names_the_repo_the_file_and_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let hub = offline_hub(cache.path());
    let error = hub.model("meta-llama/Llama-2-7b-hf", "main").unwrap_err();
    assert!(
        matches!(&error, HubError::Offline { repo, file, .. } if repo == "meta-llama/Llama-2-7b-hf" && file == "config.json"),
        "{error:?}"
    );
    let message = error.to_string();
    for part in [
        "meta-llama/Llama-2-7b-hf",
        "config.json",
        &cache.path().display().to_string(),
        "HF_HUB_OFFLINE",
        "huggingface-cli download meta-llama/Llama-2-7b-hf",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    // Through the crate's error type.
    let wrapped: ImportError = error.into();
    assert!(matches!(
        wrapped,
        ImportError::Hub(HubError::Offline { .. })
    ));

    // Cached config but no weights: the error names the weights.
    cache_repo(
        cache.path(),
        REPO,
        COMMIT,
        &["main"],
        &[("config.json", tiny("hf").join("config.json"))],
    );
    let error = hub.model(REPO, "main").unwrap_err();
    assert!(
        matches!(&error, HubError::Offline { file, .. } if file.contains("model.safetensors")),
        "{error:?}"
    );
    // No tokenizer in the cache.
    let error = hub.tokenizer(REPO, "main").unwrap_err();
    assert!(
        matches!(&error, HubError::Offline { file, .. } if file.contains("tokenizer.model")),
        "{error:?}"
    );
}

#[test]
fn an_existing_path_wins_over_a_repo_id_and_bad_ids_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    // `tests/data` is both a path (the test runs in the package root) and a repo id's form.
    cache_repo(
        cache.path(),
        "tests/data",
        COMMIT,
        &["main"],
        &model_files(&tiny("hf")),
    );
    let hub = offline_hub(cache.path());
    assert!(Path::new("tests/data").is_dir());
    assert_eq!(
        hub.locate_model(Path::new("tests/data"), "main").unwrap(),
        Path::new("tests/data")
    );
    assert_eq!(
        hub.locate_tokenizer(Path::new("tests/data"), "main")
            .unwrap(),
        Path::new("tests/data")
    );
    // A repo id that is not a path resolves on the (offline) Hub.
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("no-such-dir");
    assert!(!Path::new(REPO).exists());
    assert_eq!(
        hub.locate_model(Path::new(REPO), "main")
            .unwrap_err()
            .to_string(),
        hub.model(REPO, "main").unwrap_err().to_string()
    );
    // Neither a path nor a repo id: left to the loader, which says it is missing.
    for arg in [elsewhere.as_path(), Path::new("a/b/c"), Path::new("../x")] {
        assert_eq!(hub.locate_model(arg, "main").unwrap(), arg);
    }
    assert!(matches!(
        hub.model("a/b/c", "main"),
        Err(HubError::InvalidRepoId { .. })
    ));
    assert!(matches!(
        hub.model(REPO, "../../etc"),
        Err(HubError::InvalidRevision { .. })
    ));
}

#[test]
fn an_index_naming_a_file_outside_the_repo_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index.json");
    std::fs::write(
        &index,
        r#"{"metadata": {}, "weight_map": {"lm_head.weight": "../../../secret.safetensors"}}"#,
    )
    .unwrap();
    cache_repo(
        cache.path(),
        REPO,
        COMMIT,
        &["main"],
        &[
            ("config.json", tiny("hf").join("config.json")),
            ("model.safetensors.index.json", index),
        ],
    );
    let error = offline_hub(cache.path()).model(REPO, "main").unwrap_err();
    assert!(
        matches!(&error, HubError::Index { .. }) && error.to_string().contains("secret"),
        "{error:?}"
    );
}

/// `generate` with the cache at `cache`, offline, and no way to reach a Hub.
fn generate(cache: &Path, args: &[&str]) -> Output {
    Command::new(example("generate"))
        .args(args)
        .args([
            "--prompt-ids",
            "1,263,338,411",
            "--max-new-tokens",
            "12",
            "--temperature",
            "0",
            "--ignore-eos",
            "--json",
        ])
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_TOKEN")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn generate_by_repo_id_from_the_cache_equals_generate_by_path() {
    let cache = tempfile::tempdir().unwrap();
    cache_repo(
        cache.path(),
        REPO,
        COMMIT,
        &["main"],
        &model_files(&tiny("hf")),
    );
    let tokenizer = llama2_tokenizer();
    let tokenizer = tokenizer.to_str().unwrap();
    let local = tiny("hf");
    let by_path = stdout(&generate(
        cache.path(),
        &["--model", local.to_str().unwrap(), "--tokenizer", tokenizer],
    ));
    let json: serde_json::Value = serde_json::from_str(&by_path).unwrap();
    assert_eq!(
        json[0]["ids"].as_array().map(Vec::len),
        Some(12),
        "{by_path}"
    );

    // The snapshot's own tokenizer, by the model's repo id.
    let output = generate(cache.path(), &["--model", REPO]);
    assert_eq!(stdout(&output), by_path);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("using the tokenizer stored with"), "{log}");

    // A commit revision, and the tokenizer by repo id.
    let output = generate(
        cache.path(),
        &["--model", REPO, "--revision", COMMIT, "--tokenizer", REPO],
    );
    assert_eq!(stdout(&output), by_path);
}

#[test]
fn generate_offline_without_the_repo_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let output = generate(cache.path(), &["--model", "meta-llama/Llama-2-7b-chat-hf"]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    for part in [
        "meta-llama/Llama-2-7b-chat-hf",
        "config.json",
        "HF_HUB_OFFLINE",
        "huggingface-cli download",
        &cache.path().display().to_string(),
    ] {
        assert!(error.contains(part), "`{part}` missing from: {error}");
    }
    assert!(!error.contains("panicked"), "{error}");
}
