//! Outputs appear whole or not at all: everything is written to a temporary sibling and
//! renamed into place once complete.
//!
//! A temporary's name holds the writer's process id (`.llama2-burn-<pid>-<random>.tmp`).
//! A run killed before it could clean up (SIGKILL, power loss) leaves one behind; the next
//! write into that directory removes the temporaries of processes that no longer run (and,
//! where process ids cannot be checked, those older than a day).

use std::path::{Path, PathBuf};

/// A write that failed: the file or directory, and why. Every crate's error type converts
/// from it, so that it names the path in that crate's terms.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    /// The output, its temporary or its directory.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

fn io(path: &Path, source: std::io::Error) -> WriteError {
    WriteError {
        path: path.to_path_buf(),
        source,
    }
}

/// A temporary-file builder next to the output. Outputs get ordinary permissions (`0644`
/// files, `0755` directories) rather than the owner-only ones of temporary files.
fn builder(mode: u32, prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(TMP_SUFFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
}

const TMP_PREFIX: &str = ".llama2-burn-";
const TMP_SUFFIX: &str = ".tmp";
/// Age after which a temporary whose writer cannot be identified counts as stale.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn own_prefix() -> String {
    format!("{TMP_PREFIX}{}-", std::process::id())
}

/// Whether a process with this id still runs; `None` where that cannot be told.
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if cfg!(target_os = "linux") && proc.join("self").exists() {
        Some(proc.join(pid.to_string()).exists())
    } else {
        None
    }
}

/// Whether a directory entry is a temporary left by a writer that is gone.
fn is_stale(name: &str, entry: &std::fs::DirEntry) -> bool {
    let Some(middle) = name
        .strip_prefix(TMP_PREFIX)
        .and_then(|rest| rest.strip_suffix(TMP_SUFFIX))
    else {
        return false;
    };
    let pid = middle
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok());
    if let Some(pid) = pid
        && pid == std::process::id()
    {
        return false;
    }
    if let Some(alive) = pid.and_then(process_alive) {
        return !alive;
    }
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_AFTER)
}

/// Removes stale temporaries of `dir` (best effort: a failure leaves them).
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_stale(&name, &entry) {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path).is_ok(),
            Ok(_) => std::fs::remove_file(&path).is_ok(),
            Err(_) => false,
        };
        if gone {
            tracing::info!("removed {}, left by an interrupted run", path.display());
            removed += 1;
        }
    }
    removed
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new temporary file next to `path` (after removing stale ones there).
fn temporary_beside(path: &Path) -> Result<tempfile::NamedTempFile, WriteError> {
    let parent = parent_of(path);
    remove_stale_temporaries(&parent);
    builder(0o644, &own_prefix())
        .tempfile_in(&parent)
        .map_err(|e| io(&parent, e))
}

/// Calls `write` with a temporary path next to `path`, syncs it and renames it to `path`.
/// On error the temporary file is removed and `path` is untouched.
pub fn write_file<E: From<WriteError>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temporary_beside(path)?;
    write(tmp.path())?;
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// A file written in pieces (it implements [`std::io::Write`]) that appears at its path
/// only on [`finish`](Self::finish). Dropped unfinished, its temporary is removed and the
/// path is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    out: std::io::BufWriter<tempfile::NamedTempFile>,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts writing `path` (created or replaced by [`finish`](Self::finish)).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, WriteError> {
        let path = path.into();
        let tmp = temporary_beside(&path)?;
        Ok(Self {
            out: std::io::BufWriter::new(tmp),
            path,
        })
    }

    /// The output's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and moves the file into place.
    pub fn finish(self) -> Result<(), WriteError> {
        let path = self.path;
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| io(&path, e.into_error()))?;
        tmp.as_file().sync_all().map_err(|e| io(&path, e))?;
        tmp.persist(&path).map_err(|e| io(&path, e.error))?;
        Ok(())
    }
}

impl std::io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes `bytes` to `path` through a temporary sibling: `path` holds the old contents or
/// the new ones, never part of them.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_file(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| io(tmp, e))
    })
}

/// Calls `write` with a temporary directory next to `dir`, then renames it to `dir`, which
/// must not exist yet or be empty.
pub fn write_dir<E: From<WriteError>>(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .next()
            .is_none();
        if !empty {
            return Err(io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "output directory exists and is not empty",
                ),
            )
            .into());
        }
        std::fs::remove_dir(dir).map_err(|e| io(dir, e))?;
    }
    let parent = parent_of(dir);
    remove_stale_temporaries(&parent);
    let prefix = own_prefix();
    let tmp = builder(0o755, &prefix)
        .tempdir_in(&parent)
        .map_err(|e| io(&parent, e))?;
    write(tmp.path())?;
    let tmp = tmp.keep();
    std::fs::rename(&tmp, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        io(dir, e).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has id 4194304 + 1 (above Linux's pid_max).
        let dead = dir.path().join(".llama2-burn-4194305-abc.tmp");
        let dead_dir = dir.path().join(".llama2-burn-4194305-def.tmp");
        let mine = dir.path().join(format!("{}x.tmp", own_prefix()));
        let other = dir.path().join("model.bpk");
        std::fs::write(&dead, b"partial").unwrap();
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("model.safetensors"), b"partial").unwrap();
        std::fs::write(&mine, b"in progress").unwrap();
        std::fs::write(&other, b"an output").unwrap();
        if process_alive(1).is_none() {
            return; // no /proc: only age decides, which this test cannot fake cheaply
        }
        assert_eq!(remove_stale_temporaries(dir.path()), 2);
        assert!(!dead.exists() && !dead_dir.exists());
        assert!(mine.exists() && other.exists());
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_atomic_file_appears_only_when_finished() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, b"old\n").unwrap();

        let mut out = AtomicFile::create(&path).unwrap();
        writeln!(out, "first").unwrap();
        writeln!(out, "second").unwrap();
        // Before finish: the old contents, beside one temporary.
        assert_eq!(std::fs::read(&path).unwrap(), b"old\n");
        assert_eq!(names(dir.path()).len(), 2);
        out.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first\nsecond\n");
        assert_eq!(names(dir.path()), ["rows.jsonl"]);

        // Dropped unfinished: the output is untouched and the temporary gone.
        let mut out = AtomicFile::create(&path).unwrap();
        writeln!(out, "never").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"first\nsecond\n");
        assert_eq!(names(dir.path()), ["rows.jsonl"]);
    }

    #[test]
    fn a_failed_write_leaves_neither_output_nor_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.svg");
        let result: Result<(), WriteError> = write_file(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(io(tmp, std::io::Error::other("renderer failed")))
        });
        assert!(result.is_err());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

        let out = dir.path().join("step-00000010");
        let result: Result<(), WriteError> = write_dir(&out, |tmp| {
            std::fs::write(tmp.join("model.bpk"), b"half").unwrap();
            Err(io(tmp, std::io::Error::other("disk full")))
        });
        assert!(result.is_err());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }
}
