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

/// The tiny reference model as repo `repo` at `main` in the cache at `cache`.
fn cache_tiny(cache: &Path, repo: &str) {
    cache_repo(cache, repo, COMMIT, &["main"], &model_files(&tiny("hf")));
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
    cache_tiny(cache.path(), REPO);
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
    cache_tiny(cache.path(), "tests/data");
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
    cache_tiny(cache.path(), REPO);
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

/// A stand-in for the Hub's file endpoint on loopback: `/{repo}/resolve/{revision}/{file}`
/// (`main` or the commit) with the headers `huggingface_hub` reads (`x-repo-commit`, `etag`, `content-range`),
/// byte ranges, a gated repo that needs `Bearer secret`, and 404s with `x-error-code`.
/// Returns its address and a log of the paths asked for.
fn fake_hub(
    files: Vec<(&'static str, PathBuf)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let (mut range, mut auth) = (None, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    let (a, b) = v.trim().split_once('-').unwrap();
                    range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().ok()));
                } else if lower.starts_with("authorization:") {
                    auth = Some(line["authorization:".len()..].trim().to_string());
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.lock().unwrap().push(path.clone());
            let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
            let reply = |stream: &mut std::net::TcpStream,
                         status: &str,
                         headers: &str,
                         body: &[u8]| {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            };
            let found = match parts.as_slice() {
                [org, name, "resolve", revision, file]
                    if *revision == "main" || *revision == COMMIT =>
                {
                    let repo = format!("{org}/{name}");
                    let gated = repo == "org/gated";
                    if gated && auth.as_deref() != Some("Bearer secret") {
                        reply(
                            &mut stream,
                            "401 Unauthorized",
                            "x-error-code: GatedRepo\r\n",
                            b"",
                        );
                        continue;
                    }
                    (repo == "org/tiny" || gated)
                        .then(|| files.iter().find(|(f, _)| f == file))
                        .flatten()
                }
                _ => None,
            };
            let Some((file, source)) = found else {
                reply(
                    &mut stream,
                    "404 Not Found",
                    "x-error-code: EntryNotFound\r\n",
                    b"",
                );
                continue;
            };
            let bytes = std::fs::read(source).unwrap();
            let (start, end) = match range {
                Some((a, b)) => (a, b.unwrap_or(bytes.len() - 1).min(bytes.len() - 1)),
                None => (0, bytes.len() - 1),
            };
            let headers = format!(
                "x-repo-commit: {COMMIT}\r\netag: \"etag-{file}\"\r\ncontent-range: bytes {start}-{end}/{}\r\n",
                bytes.len()
            );
            reply(
                &mut stream,
                "206 Partial Content",
                &headers,
                &bytes[start..=end],
            );
        }
    });
    (address, log)
}

#[test]
fn missing_files_are_downloaded_into_the_cache_and_then_used_offline() {
    let files = model_files(&tiny("hf"));
    let (endpoint, log) = fake_hub(files.clone());
    let cache = tempfile::tempdir().unwrap();
    let online = |token: Option<&str>| {
        Hub::new(HubOptions {
            cache_dir: cache.path().to_path_buf(),
            offline: false,
            token: token.map(str::to_string),
            endpoint: Some(endpoint.clone()),
            progress: false,
        })
    };
    let dir = online(None).model("org/tiny", "main").unwrap();
    assert_eq!(
        dir,
        cache
            .path()
            .join("models--org--tiny")
            .join("snapshots")
            .join(COMMIT)
    );
    assert_eq!(
        std::fs::read_to_string(cache.path().join("models--org--tiny/refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    // What a model needs, and nothing else (generation_config.json stays on the Hub).
    let needed: Vec<_> = files
        .iter()
        .filter(|(name, _)| *name != "generation_config.json")
        .collect();
    assert_eq!(needed.len(), 3);
    assert!(!dir.join("generation_config.json").exists());
    for (name, source) in needed {
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            std::fs::read(source).unwrap(),
            "{name}"
        );
    }
    assert_eq!(summary(&dir), summary(&tiny("hf")));
    let asked = log.lock().unwrap().len();
    assert!(
        asked >= files.len(),
        "{asked} requests for {} files",
        files.len()
    );

    // Now cached: offline, and online without asking the Hub again.
    assert_eq!(
        offline_hub(cache.path()).model("org/tiny", "main").unwrap(),
        dir
    );
    assert_eq!(online(None).model("org/tiny", "main").unwrap(), dir);
    assert_eq!(log.lock().unwrap().len(), asked);

    // A gated repo: 401 without the token, served with it.
    match online(None).model("org/gated", "main") {
        Err(HubError::Unauthorized {
            status: 401,
            had_token: false,
            ..
        }) => {}
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let gated = online(Some("secret")).model("org/gated", "main").unwrap();
    assert_eq!(summary(&gated), summary(&tiny("hf")));
    // A repo the Hub does not have.
    match online(None).model("org/absent", "main") {
        Err(HubError::NotFound { repo, file, .. }) => {
            assert_eq!(repo, "org/absent");
            assert_eq!(file, "config.json");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}
