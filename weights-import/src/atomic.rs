//! Outputs appear whole or not at all: everything is written to a temporary sibling and
//! renamed into place once complete.

use std::path::{Path, PathBuf};

use crate::error::{ImportError, Result};

/// A temporary-file builder next to the output. Outputs get ordinary permissions (`0644`
/// files, `0755` directories) rather than the owner-only ones of temporary files.
fn builder(mode: u32) -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".llama2-burn-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Calls `write` with a temporary path next to `path`, then renames it to `path`. On error
/// the temporary file is removed and `path` is untouched.
pub(crate) fn write_file(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = parent_of(path);
    let tmp = builder(0o644)
        .tempfile_in(&parent)
        .map_err(|e| ImportError::io(&parent, e))?;
    write(tmp.path())?;
    tmp.persist(path)
        .map_err(|e| ImportError::io(path, e.error))?;
    Ok(())
}

/// Calls `write` with a temporary directory next to `dir`, then renames it to `dir`, which
/// must not exist yet or be empty.
pub(crate) fn write_dir(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| ImportError::io(dir, e))?
            .next()
            .is_none();
        if !empty {
            return Err(ImportError::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "output directory exists and is not empty",
                ),
            ));
        }
        std::fs::remove_dir(dir).map_err(|e| ImportError::io(dir, e))?;
    }
    let parent = parent_of(dir);
    let tmp = builder(0o755)
        .tempdir_in(&parent)
        .map_err(|e| ImportError::io(&parent, e))?;
    write(tmp.path())?;
    let tmp = tmp.keep();
    std::fs::rename(&tmp, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        ImportError::io(dir, e)
    })
}
