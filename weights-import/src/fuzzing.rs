//! Entry points for the mutation harness (`weights-import/tests/fuzz.rs`): each runs one
//! reader on untrusted bytes and reports whether it accepted them. Not a stable API.

use std::path::Path;

use crate::error::Result;

/// Parses `bytes` as a `data.pkl` with the importer's bounds; `true` when accepted.
pub fn pickle(bytes: &[u8]) -> bool {
    crate::pickle::parse(bytes, crate::pickle::Limits::default()).is_ok()
}

/// Opens a `.pth` file and reads every floating-point tensor; returns how many were read.
pub fn pth_file(path: &Path) -> Result<usize> {
    let file = crate::pth::PthFile::open(path)?;
    let names: Vec<String> = file
        .tensors()
        .filter(|(_, t)| crate::dtype::is_float(t.dtype))
        .map(|(name, _)| name.to_string())
        .collect();
    for name in &names {
        file.read_f32(name)?;
    }
    Ok(names.len())
}

/// Opens a checkpoint (a Meta or Hugging Face directory, or a record file) and reads every
/// parameter.
pub fn checkpoint_dir(dir: &Path) -> Result<usize> {
    let checkpoint = crate::Checkpoint::open(dir)?;
    let names: Vec<String> = checkpoint.params().map(|p| p.name.clone()).collect();
    for name in &names {
        checkpoint.load_param(name)?;
    }
    Ok(names.len())
}
