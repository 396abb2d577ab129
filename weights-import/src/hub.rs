//! Models and tokenizers by Hugging Face Hub repo id (`meta-llama/Llama-2-7b-chat-hf`), as
//! `transformers` resolves them: the local Hugging Face cache first, then downloads of the
//! files it lacks (through the [`hf_hub`] crate).
//!
//! The cache has the standard layout, shared with `huggingface_hub` and `huggingface-cli`:
//! `<cache>/models--<org>--<name>/refs/<revision>` holds the commit hash a branch or tag
//! points at, `snapshots/<commit>/<file>` the files (links into `blobs/`), and
//! `.no_exist/<commit>/<file>` marks a file the repo does not have. A revision that is a
//! 40-digit commit hash names its snapshot directly.
//!
//! A model needs `config.json`, `model.safetensors` or `model.safetensors.index.json` and
//! every shard the index names, and its tokenizer (`tokenizer.model`, else
//! `tokenizer.json`) when the repo has one. The snapshot directory that holds them is a
//! Hugging Face directory for [`crate::load_model`] and [`crate::model_tokenizer`].
//!
//! ```no_run
//! use llama2_import::hub::{Hub, HubOptions};
//! # type B = burn::backend::NdArray;
//! let hub = Hub::new(HubOptions::from_env()); // HF_HUB_CACHE / HF_HOME, HF_TOKEN, HF_HUB_OFFLINE
//! let dir = hub.model("meta-llama/Llama-2-7b-chat-hf", "main")?;
//! let model = llama2_import::load_model::<B>(&dir, &Default::default())?;
//! # Ok::<(), llama2_import::ImportError>(())
//! ```

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// The Hub's address.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

const CONFIG: &str = "config.json";
const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";
const TOKENIZERS: [&str; 2] = ["tokenizer.model", "tokenizer.json"];

/// Why a repo id could not be resolved to local files.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The string is not a repo id.
    #[error(
        "`{repo}` is not a Hugging Face repo id (`name` or `org/name`, at most 96 letters, \
         digits, `-`, `_` or `.` each, starting and ending with a letter or digit, no `--` or `..`)"
    )]
    InvalidRepoId { repo: String },
    /// The revision is not a branch, tag or commit name.
    #[error("`{revision}` is not a revision name (a branch, a tag or a commit hash)")]
    InvalidRevision { revision: String },
    /// The Hub refused the file (401 or 403): the repo is gated or private.
    #[error(
        "{repo} is gated or private: the Hugging Face Hub refused `{file}` (revision {revision}, \
         HTTP {status}{}). Accept the licence on https://huggingface.co/{repo} with your \
         account, then set HF_TOKEN to an access token of that account \
         (https://huggingface.co/settings/tokens) or run `huggingface-cli login`",
        if *.had_token { ", with the token given" } else { ", without a token" }
    )]
    Unauthorized {
        repo: String,
        revision: String,
        file: String,
        status: u16,
        had_token: bool,
    },
    /// The repo, the revision or the file does not exist (404).
    #[error(
        "not found on the Hugging Face Hub: `{file}` of {repo} at revision {revision}; check \
         the repo id and the revision (a private repo also needs HF_TOKEN)"
    )]
    NotFound {
        repo: String,
        revision: String,
        file: String,
    },
    /// Offline (`HF_HUB_OFFLINE`) and the file is not in the cache.
    #[error(
        "{repo}: `{file}` (revision {revision}) is not in the Hugging Face cache {} and \
         HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download it, or download the repo \
         first with `huggingface-cli download {repo}`",
        .cache_dir.display()
    )]
    Offline {
        repo: String,
        revision: String,
        file: String,
        cache_dir: PathBuf,
    },
    /// The download failed for another reason (network, rate limit, server, disk).
    #[error("cannot download `{file}` of {repo} (revision {revision}): {source}")]
    Download {
        repo: String,
        revision: String,
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A cache file could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cached `model.safetensors.index.json` is malformed or names a file outside the repo.
    #[error("{}: {message}", .path.display())]
    Index { path: PathBuf, message: String },
}

/// Result of the resolver.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// Where the cache is, whether the network may be used, and with which token.
#[derive(Clone)]
pub struct HubOptions {
    /// The hub cache directory.
    pub cache_dir: PathBuf,
    /// No network at all: only cached files are used.
    pub offline: bool,
    /// The access token for gated and private repos.
    pub token: Option<String>,
    /// The Hub's address ([`DEFAULT_ENDPOINT`] when `None`).
    pub endpoint: Option<String>,
    /// Whether downloads draw a progress bar on standard error (hidden when it is not a
    /// terminal).
    pub progress: bool,
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("endpoint", &self.endpoint)
            .field("progress", &self.progress)
            .finish()
    }
}

impl HubOptions {
    /// The options `huggingface_hub` reads from the environment:
    ///
    /// * cache: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, where
    ///   `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`;
    /// * offline: `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set to `1`, `true`, `yes` or `on`;
    /// * token: `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`), else the file `HF_TOKEN_PATH`, else
    ///   `$HF_HOME/token` (written by `huggingface-cli login`); none with
    ///   `HF_HUB_DISABLE_IMPLICIT_TOKEN`;
    /// * endpoint: `HF_ENDPOINT`.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) reading variables through `var` (empty values count as
    /// unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = get("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            get("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache_dir = get("HF_HUB_CACHE")
            .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let truthy = |name: &str| get(name).is_some_and(|v| is_true(&v.to_string_lossy()));
        let offline = truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE");
        let token = if truthy("HF_HUB_DISABLE_IMPLICIT_TOKEN") {
            None
        } else {
            get("HF_TOKEN")
                .or_else(|| get("HUGGING_FACE_HUB_TOKEN"))
                .and_then(|t| t.into_string().ok())
                .or_else(|| {
                    let file = get("HF_TOKEN_PATH")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| home.join("token"));
                    std::fs::read_to_string(file).ok()
                })
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        };
        let endpoint = get("HF_ENDPOINT").and_then(|e| e.into_string().ok());
        Self {
            cache_dir,
            offline,
            token,
            endpoint,
            progress: true,
        }
    }

    /// Offline use of the cache at `cache_dir`, without a token.
    pub fn offline(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            offline: true,
            token: None,
            endpoint: None,
            progress: false,
        }
    }
}

/// `1`, `true`, `yes` or `on`, in any case: `huggingface_hub`'s true values.
pub fn is_true(value: &str) -> bool {
    ["1", "true", "yes", "on"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t))
}

/// Whether `s` has the form of a Hub repo id: `name` or `org/name`, each part 1 to 96 of
/// `A-Z a-z 0-9 - _ .`, starting and ending with a letter, digit or `_`, with no `--` or
/// `..`, not ending in `.git` (the rules of `huggingface_hub`'s `validate_repo_id`).
pub fn is_repo_id(s: &str) -> bool {
    let part = |p: &str| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        (1..=96).contains(&p.len())
            && p.chars().all(|c| word(c) || c == '-' || c == '.')
            && p.starts_with(word)
            && p.ends_with(word)
    };
    let mut parts = s.split('/');
    let valid_parts = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, None) => part(name),
        (Some(org), Some(name), None) => part(org) && part(name),
        _ => false,
    };
    valid_parts && !s.contains("--") && !s.contains("..") && !s.ends_with(".git")
}

/// Whether `revision` is a 40-digit commit hash.
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cache folder of a model repo: `models--org--name`.
pub fn repo_folder(repo: &str) -> String {
    std::iter::once("models")
        .chain(repo.split('/'))
        .collect::<Vec<_>>()
        .join("--")
}

/// A revision can name a ref file under `refs/`: no empty, `.` or `..` part, no root.
fn valid_revision(revision: &str) -> bool {
    !revision.is_empty()
        && !revision.contains('\\')
        && Path::new(revision)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && !revision.split('/').any(str::is_empty)
}

/// Resolves repo ids to local files, in the cache or downloaded into it.
pub struct Hub {
    options: HubOptions,
    client: OnceLock<Api>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A resolver with `options`; no network connection is made before a download is needed.
    pub fn new(options: HubOptions) -> Self {
        Self {
            options,
            client: OnceLock::new(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &HubOptions {
        &self.options
    }

    /// A model argument as `transformers` reads it: `arg` itself when it exists or is not a
    /// repo id, otherwise the snapshot directory of repo `arg` at `revision` ([`model`](Self::model)).
    pub fn locate_model(&self, arg: &Path, revision: &str) -> Result<PathBuf> {
        match as_repo_id(arg) {
            Some(repo) => self.model(repo, revision),
            None => Ok(arg.to_path_buf()),
        }
    }

    /// A tokenizer argument: `arg` itself when it exists or is not a repo id, otherwise the
    /// tokenizer file of repo `arg` at `revision` ([`tokenizer`](Self::tokenizer)).
    pub fn locate_tokenizer(&self, arg: &Path, revision: &str) -> Result<PathBuf> {
        match as_repo_id(arg) {
            Some(repo) => self.tokenizer(repo, revision),
            None => Ok(arg.to_path_buf()),
        }
    }

    /// The snapshot directory of model repo `repo` at `revision`, holding `config.json`,
    /// the safetensors weights (every shard of a sharded index) and the tokenizer when the
    /// repo has one; missing files are downloaded unless offline.
    pub fn model(&self, repo: &str, revision: &str) -> Result<PathBuf> {
        let mut snapshot = Snapshot::open(self, repo, revision)?;
        snapshot.require(CONFIG)?;
        if snapshot.cached(INDEX) {
            snapshot.shards()?;
        } else if !snapshot.cached(SINGLE) {
            if self.options.offline {
                return Err(snapshot.offline(&format!("{SINGLE} (or {INDEX})")));
            }
            if snapshot.fetch(SINGLE)?.is_none() {
                match snapshot.fetch(INDEX)? {
                    Some(_) => snapshot.shards()?,
                    None => {
                        return Err(snapshot
                            .not_found(&format!("{SINGLE} or {INDEX} (safetensors weights)")));
                    }
                }
            }
        }
        if snapshot.first_of(&TOKENIZERS)?.is_none() {
            tracing::warn!(
                "{repo} (revision {revision}): no tokenizer.model or tokenizer.json{}",
                if self.options.offline {
                    " in the cache"
                } else {
                    " in the repo"
                }
            );
        }
        snapshot.dir()
    }

    /// The tokenizer file of repo `repo` at `revision`: `tokenizer.model`, else
    /// `tokenizer.json`.
    pub fn tokenizer(&self, repo: &str, revision: &str) -> Result<PathBuf> {
        let mut snapshot = Snapshot::open(self, repo, revision)?;
        match snapshot.first_of(&TOKENIZERS)? {
            Some(path) => Ok(path),
            None if self.options.offline => {
                Err(snapshot.offline(&format!("{} (or {})", TOKENIZERS[0], TOKENIZERS[1])))
            }
            None => Err(snapshot.not_found(&format!("{} or {}", TOKENIZERS[0], TOKENIZERS[1]))),
        }
    }

    /// One file of repo `repo` at `revision`, from the cache or downloaded.
    pub fn file(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf> {
        Snapshot::open(self, repo, revision)?.require(file)
    }

    fn client(&self) -> std::result::Result<&Api, ApiError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = ApiBuilder::from_cache(Cache::new(self.options.cache_dir.clone()))
            .with_endpoint(
                self.options
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            )
            .with_token(self.options.token.clone())
            .with_progress(self.options.progress && std::io::stderr().is_terminal())
            .build()?;
        Ok(self.client.get_or_init(|| client))
    }
}

/// `arg` as a repo id when it is not an existing path and has a repo id's form.
fn as_repo_id(arg: &Path) -> Option<&str> {
    if arg.exists() {
        return None;
    }
    arg.to_str().filter(|s| is_repo_id(s))
}

/// One revision of one repo: its commit once known, and the files it holds.
struct Snapshot<'a> {
    hub: &'a Hub,
    repo: &'a str,
    revision: &'a str,
    /// `<cache>/models--org--name`.
    folder: PathBuf,
    commit: Option<String>,
}

impl<'a> Snapshot<'a> {
    fn open(hub: &'a Hub, repo: &'a str, revision: &'a str) -> Result<Self> {
        if !is_repo_id(repo) {
            return Err(HubError::InvalidRepoId { repo: repo.into() });
        }
        if !valid_revision(revision) {
            return Err(HubError::InvalidRevision {
                revision: revision.into(),
            });
        }
        let folder = hub.options.cache_dir.join(repo_folder(repo));
        let commit = if is_commit_hash(revision) {
            Some(revision.to_ascii_lowercase())
        } else {
            let path = folder.join("refs").join(revision);
            match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.trim().to_string()).filter(|c| is_commit_hash(c)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(HubError::Io { path, source: e }),
            }
        };
        if let Some(commit) = &commit {
            tracing::debug!("{repo} (revision {revision}): cached commit {commit}");
        }
        Ok(Self {
            hub,
            repo,
            revision,
            folder,
            commit,
        })
    }

    fn cached_path(&self, file: &str) -> Option<PathBuf> {
        let commit = self.commit.as_ref()?;
        Some(self.folder.join("snapshots").join(commit).join(file))
    }

    fn cached(&self, file: &str) -> bool {
        self.cached_path(file).is_some_and(|p| p.is_file())
    }

    /// The cache records that the repo lacks `file` at this commit.
    fn known_missing(&self, file: &str) -> bool {
        self.commit
            .as_ref()
            .is_some_and(|c| self.folder.join(".no_exist").join(c).join(file).exists())
    }

    /// `file`, cached or downloaded; `None` when the repo does not have it (or, offline, when
    /// the cache does not).
    fn fetch(&mut self, file: &str) -> Result<Option<PathBuf>> {
        if let Some(path) = self.cached_path(file).filter(|p| p.is_file()) {
            return Ok(Some(path));
        }
        if self.hub.options.offline || self.known_missing(file) {
            return Ok(None);
        }
        match self.download(file) {
            Ok(path) => Ok(Some(path)),
            Err(HubError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `file`, cached or downloaded, or the error that says why it is not there.
    fn require(&mut self, file: &str) -> Result<PathBuf> {
        if let Some(path) = self.cached_path(file).filter(|p| p.is_file()) {
            return Ok(path);
        }
        if self.hub.options.offline {
            return Err(self.offline(file));
        }
        if self.known_missing(file) {
            return Err(self.not_found(file));
        }
        self.download(file)
    }

    /// The first of `files` the repo has.
    fn first_of(&mut self, files: &[&str]) -> Result<Option<PathBuf>> {
        if let Some(path) = files
            .iter()
            .find_map(|f| self.cached_path(f).filter(|p| p.is_file()))
        {
            return Ok(Some(path));
        }
        for file in files {
            if let Some(path) = self.fetch(file)? {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// Every shard `model.safetensors.index.json` names.
    fn shards(&mut self) -> Result<()> {
        let index = self.require(INDEX)?;
        for shard in shard_names(&index)? {
            self.require(&shard)?;
        }
        Ok(())
    }

    fn dir(&self) -> Result<PathBuf> {
        let commit = self.commit.as_ref().ok_or_else(|| self.offline(CONFIG))?;
        Ok(self.folder.join("snapshots").join(commit))
    }

    fn download(&mut self, file: &str) -> Result<PathBuf> {
        // Once the commit is known, every file comes from that commit's snapshot, even if
        // the branch moves meanwhile.
        let revision = self.commit.clone().unwrap_or_else(|| self.revision.into());
        tracing::info!(
            "downloading {file} from {} (revision {revision})",
            self.repo
        );
        let error = |e: ApiError| self.download_error(e, file);
        let client = self.hub.client().map_err(error)?;
        let repo = client.repo(Repo::with_revision(
            self.repo.to_string(),
            RepoType::Model,
            revision,
        ));
        let path = repo.download(file).map_err(error)?;
        if self.commit.is_none() {
            self.commit = commit_of(&self.folder, &path).or_else(|| {
                std::fs::read_to_string(self.folder.join("refs").join(self.revision))
                    .ok()
                    .map(|c| c.trim().to_string())
            });
        }
        Ok(path)
    }

    fn download_error(&self, e: ApiError, file: &str) -> HubError {
        if let ApiError::RequestError(request) = &e
            && let ureq::Error::Status(status, response) = request.as_ref()
        {
            let code = response.header("x-error-code").unwrap_or("");
            if *status == 404
                || matches!(code, "RepoNotFound" | "RevisionNotFound" | "EntryNotFound")
            {
                return self.not_found(file);
            }
            if matches!(status, 401 | 403) {
                return HubError::Unauthorized {
                    repo: self.repo.into(),
                    revision: self.revision.into(),
                    file: file.into(),
                    status: *status,
                    had_token: self.hub.options.token.is_some(),
                };
            }
        }
        HubError::Download {
            repo: self.repo.into(),
            revision: self.revision.into(),
            file: file.into(),
            source: Box::new(e),
        }
    }

    fn offline(&self, file: &str) -> HubError {
        HubError::Offline {
            repo: self.repo.into(),
            revision: self.revision.into(),
            file: file.into(),
            cache_dir: self.hub.options.cache_dir.clone(),
        }
    }

    fn not_found(&self, file: &str) -> HubError {
        HubError::NotFound {
            repo: self.repo.into(),
            revision: self.revision.into(),
            file: file.into(),
        }
    }
}

/// The commit of a downloaded file `<folder>/snapshots/<commit>/<file>`.
fn commit_of(folder: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(folder.join("snapshots")).ok()?;
    match relative.components().next()? {
        Component::Normal(c) => c.to_str().map(str::to_string),
        _ => None,
    }
}

/// The files `weight_map` of a safetensors index names, each a plain relative path.
fn shard_names(index: &Path) -> Result<BTreeSet<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| HubError::Io {
        path: index.to_path_buf(),
        source: e,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| HubError::Index {
        path: index.to_path_buf(),
        message: format!("not a safetensors index: {e}"),
    })?;
    let mut names = BTreeSet::new();
    for file in parsed.weight_map.into_values() {
        if !valid_revision(&file) {
            return Err(HubError::Index {
                path: index.to_path_buf(),
                message: format!("the index names `{file}`, which is not a file of the repo"),
            });
        }
        names.insert(file);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_follow_huggingface_hub_rules() {
        for id in [
            "gpt2",
            "meta-llama/Llama-2-7b-chat-hf",
            "Foo-BAR_foo.bar123",
            "123",
            "_x/y_",
        ] {
            assert!(is_repo_id(id), "{id}");
        }
        for id in [
            "",
            "a/b/c",
            "/abs",
            "org/",
            ".repo",
            "repo.",
            "-repo",
            "foo--bar",
            "foo..bar",
            "foo.git",
            "org/na me",
            "café",
            "./model",
            "model\\x",
            &"a".repeat(97),
        ] {
            assert!(!is_repo_id(id), "{id}");
        }
        assert!(is_repo_id(&"a".repeat(96)));
    }

    #[test]
    fn options_follow_the_environment_precedence() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let o = HubOptions::from_vars(vars(&[("HOME", "/home/u")]));
        assert_eq!(o.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
        assert!(!o.offline);
        let o = HubOptions::from_vars(vars(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]));
        assert_eq!(o.cache_dir, Path::new("/xdg/huggingface/hub"));
        let o = HubOptions::from_vars(vars(&[("HF_HOME", "/hf"), ("XDG_CACHE_HOME", "/xdg")]));
        assert_eq!(o.cache_dir, Path::new("/hf/hub"));
        let o = HubOptions::from_vars(vars(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/cache"),
            ("HUGGINGFACE_HUB_CACHE", "/legacy"),
        ]));
        assert_eq!(o.cache_dir, Path::new("/cache"));
        let o = HubOptions::from_vars(vars(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/l")]));
        assert_eq!(o.cache_dir, Path::new("/l"));
        for value in ["1", "true", "YES", "On"] {
            let pairs: &'static [(&str, &str)] =
                Box::leak(vec![("HF_HUB_OFFLINE", value)].into_boxed_slice());
            assert!(HubOptions::from_vars(vars(pairs)).offline, "{value}");
        }
        for value in ["0", "false", "", "off"] {
            let pairs: &'static [(&str, &str)] =
                Box::leak(vec![("HF_HUB_OFFLINE", value)].into_boxed_slice());
            assert!(!HubOptions::from_vars(vars(pairs)).offline, "{value}");
        }
        let o = HubOptions::from_vars(vars(&[("HF_TOKEN", " hf_abc \n"), ("HF_HOME", "/none")]));
        assert_eq!(o.token.as_deref(), Some("hf_abc"));
        let o = HubOptions::from_vars(vars(&[
            ("HF_TOKEN", "hf_abc"),
            ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1"),
        ]));
        assert_eq!(o.token, None);
        assert!(!format!("{o:?}").contains("hf_abc"));
    }

    #[test]
    fn the_token_file_of_hf_home_is_read() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("token"), "hf_from_file\n").unwrap();
        let dir = home.path().as_os_str().to_owned();
        let o = HubOptions::from_vars(|name| (name == "HF_HOME").then(|| dir.clone()));
        assert_eq!(o.token.as_deref(), Some("hf_from_file"));
        assert_eq!(o.cache_dir, home.path().join("hub"));
    }

    #[test]
    fn revisions_and_index_entries_stay_inside_the_repo() {
        for ok in ["main", "v1.0", "refs/pr/1", "a".repeat(40).as_str()] {
            assert!(valid_revision(ok), "{ok}");
        }
        for bad in ["", "..", "../x", "/main", "a//b", "a/", "./a", "a\\b"] {
            assert!(!valid_revision(bad), "{bad}");
        }
    }
}
