//! A verifying reader for the zip archives `torch.save` writes.
//!
//! Burn-store's PyTorch reader fills a tensor whose record is missing or short with zeros,
//! ignores strides and trusts the zip's CRCs; this one does not. At open it parses the
//! central directory and `data.pkl` (with [`crate::pickle`]'s bounds) and checks, for every
//! tensor, without reading any tensor data, that
//!
//! * its storage is a record `<root>/data/<key>` of the archive's own root folder, stored
//!   uncompressed and lying inside the file;
//! * the record holds exactly the storage's declared bytes, and the tensor's offset, sizes
//!   and strides stay inside it (no negative offset or stride, no overflow);
//! * its name appears once.
//!
//! When a tensor is read its record's CRC-32 is checked (once per record) and its elements
//! are gathered through its strides, so a transposed or sliced view saved by `torch.save`
//! reads as `torch.load` gives it.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::DType;
use memmap2::Mmap;

use crate::error::{ImportError, Result};
use crate::pickle::{self, Limits, Node, TensorRef, Value};

/// Largest `data.pkl` read (a 70B shard's is a few hundred kilobytes).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// An uncompressed zip record.
#[derive(Debug)]
struct Record {
    name: String,
    start: usize,
    len: usize,
    crc: u32,
    verified: Cell<bool>,
}

/// A tensor of a `.pth` file, checked against its storage.
#[derive(Debug, Clone)]
pub(crate) struct PthTensor {
    /// Element type of the storage.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    stride: Vec<usize>,
    offset: usize,
    record: usize,
}

/// An opened `.pth` file.
pub(crate) struct PthFile {
    path: PathBuf,
    map: Mmap,
    records: Vec<Record>,
    tensors: Vec<(String, PthTensor)>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for PthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PthFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn pytorch(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Pytorch {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn storage(path: &Path, tensor: &str, message: impl Into<String>) -> ImportError {
    ImportError::Storage {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        message: message.into(),
    }
}

impl PthFile {
    /// Opens and checks a `.pth` file; no tensor data is read.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Self::open_with_limits(path, Limits::default())
    }

    pub(crate) fn open_with_limits(path: &Path, limits: Limits) -> Result<Self> {
        let file = std::fs::File::open(path)
            .map_err(|e| ImportError::read(path, "PyTorch checkpoint", e))?;
        let file_len = file.metadata().map_err(|e| ImportError::io(path, e))?.len();
        if file_len == 0 {
            return Err(pytorch(path, "the file is empty"));
        }
        let mut archive = zip::ZipArchive::new(&file).map_err(|e| {
            pytorch(
                path,
                format!("not a zip archive ({e}); only torch.save's zip format is read"),
            )
        })?;

        // Every entry's place in the file; the root folder is the one holding data.pkl.
        let mut entries: HashMap<String, usize> = HashMap::new();
        let mut records = Vec::new();
        let mut pickles = Vec::new();
        for i in 0..archive.len() {
            let entry = archive
                .by_index_raw(i)
                .map_err(|e| pytorch(path, format!("zip entry {i}: {e}")))?;
            let name = entry.name().to_string();
            if name.ends_with("/data.pkl") && name.matches('/').count() == 1 {
                pickles.push(i);
            }
            let start = entry
                .data_start()
                .ok_or_else(|| pytorch(path, format!("zip entry `{name}` has no data offset")))?;
            let stored = entry.compression() == zip::CompressionMethod::Stored
                && entry.compressed_size() == entry.size()
                && !entry.encrypted();
            let inside = start
                .checked_add(entry.compressed_size())
                .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(pytorch(
                    path,
                    format!("zip entry `{name}` runs past the end of the file"),
                ));
            }
            let record = Record {
                name: name.clone(),
                start: start as usize,
                len: if stored {
                    entry.size() as usize
                } else {
                    usize::MAX
                },
                crc: entry.crc32(),
                verified: Cell::new(false),
            };
            if entries.insert(name.clone(), records.len()).is_some() {
                return Err(pytorch(path, format!("zip entry `{name}` appears twice")));
            }
            records.push(record);
        }
        let pickle_index = match pickles.as_slice() {
            [one] => *one,
            [] => return Err(pytorch(path, "no `<folder>/data.pkl` in the archive")),
            _ => {
                return Err(pytorch(
                    path,
                    "more than one `<folder>/data.pkl` in the archive",
                ));
            }
        };
        let root = records[pickle_index]
            .name
            .strip_suffix("data.pkl")
            .expect("matched above")
            .to_string();

        if let Some(&i) = entries.get(&format!("{root}byteorder")) {
            let mut order = String::new();
            archive
                .by_index(i)
                .map_err(|e| pytorch(path, format!("`{root}byteorder`: {e}")))?
                .take(16)
                .read_to_string(&mut order)
                .map_err(|e| pytorch(path, format!("`{root}byteorder`: {e}")))?;
            if order.trim() != "little" {
                return Err(ImportError::Unsupported {
                    path: path.to_path_buf(),
                    message: format!("byte order `{}` (only little-endian is read)", order.trim()),
                });
            }
        }

        // data.pkl, CRC-checked by the zip reader.
        let pickle_bytes = {
            let entry = archive
                .by_index(pickle_index)
                .map_err(|e| pytorch(path, format!("`{root}data.pkl`: {e}")))?;
            if entry.size() > MAX_PICKLE_BYTES {
                return Err(ImportError::Limit {
                    path: path.to_path_buf(),
                    what: "data.pkl size in bytes".into(),
                    value: entry.size().to_string(),
                    limit: MAX_PICKLE_BYTES.to_string(),
                });
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .take(MAX_PICKLE_BYTES)
                .read_to_end(&mut bytes)
                .map_err(
                    |e| match e.to_string().to_lowercase().contains("checksum") {
                        true => ImportError::Checksum {
                            path: path.to_path_buf(),
                            record: format!("{root}data.pkl"),
                        },
                        false => pytorch(path, format!("`{root}data.pkl`: {e}")),
                    },
                )?;
            bytes
        };
        drop(archive);
        let top = pickle::parse(&pickle_bytes, limits).map_err(|e| match e {
            pickle::PickleError::Limit {
                what,
                limit,
                offset,
            } => ImportError::Limit {
                path: path.to_path_buf(),
                what: format!("`{root}data.pkl`: {what} at byte {offset}"),
                value: format!("{}", limit + 1),
                limit: limit.to_string(),
            },
            other => pytorch(path, format!("`{root}data.pkl`: {other}")),
        })?;

        let mut tensors = Vec::new();
        let mut index = HashMap::new();
        flatten(path, &top, "", &mut |name, tensor| {
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(ImportError::DuplicateTensor {
                    path: path.to_path_buf(),
                    tensor: name,
                    other: path.to_path_buf(),
                });
            }
            let checked = check_tensor(path, &name, tensor, &root, &entries, &records)?;
            tensors.push((name, checked));
            Ok(())
        })?;

        // SAFETY: the file is opened read-only and only read; every range read was checked
        // against the file's length above, and records are CRC-checked before use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ImportError::io(path, e))?;
        if (map.len() as u64) < file_len {
            return Err(pytorch(path, "the file shrank while being opened"));
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            records,
            tensors,
            index,
        })
    }

    /// The tensors in file order.
    pub(crate) fn tensors(&self) -> impl Iterator<Item = (&str, &PthTensor)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&PthTensor> {
        self.index.get(name).map(|&i| &self.tensors[i].1)
    }

    /// Reads a floating-point tensor as f32 values in row-major order of its shape.
    pub(crate) fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let tensor = self.get(name).ok_or_else(|| ImportError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })?;
        let record = &self.records[tensor.record];
        let bytes = &self.map[record.start..record.start + record.len];
        if !record.verified.get() {
            if crc32fast::hash(bytes) != record.crc {
                return Err(ImportError::Checksum {
                    path: self.path.clone(),
                    record: record.name.clone(),
                });
            }
            record.verified.set(true);
        }
        let size = tensor.dtype.size();
        let decode: fn(&[u8]) -> f32 = match tensor.dtype {
            DType::F32 => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F16 => |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::BF16 => |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::F64 => |b| f64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f32,
            other => {
                return Err(ImportError::UnsupportedDtype {
                    path: self.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let numel: usize = tensor.shape.iter().product();
        let mut out = Vec::with_capacity(numel);
        if numel == 0 {
            return Ok(out);
        }
        if is_contiguous(&tensor.shape, &tensor.stride) {
            let start = tensor.offset * size;
            out.extend(
                bytes[start..start + numel * size]
                    .chunks_exact(size)
                    .map(decode),
            );
            return Ok(out);
        }
        // Strided: walk the index like an odometer.
        let rank = tensor.shape.len();
        let mut index = vec![0usize; rank];
        let mut at = tensor.offset;
        for _ in 0..numel {
            out.push(decode(&bytes[at * size..(at + 1) * size]));
            for d in (0..rank).rev() {
                index[d] += 1;
                at += tensor.stride[d];
                if index[d] < tensor.shape[d] {
                    break;
                }
                at -= tensor.stride[d] * tensor.shape[d];
                index[d] = 0;
            }
        }
        Ok(out)
    }
}

fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&n, &s) in shape.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(n);
    }
    true
}

/// Calls `found` for every tensor of a (possibly nested) dict, with dotted names.
fn flatten(
    path: &Path,
    node: &Node,
    prefix: &str,
    found: &mut dyn FnMut(String, &TensorRef) -> Result<()>,
) -> Result<()> {
    let Value::Dict(items) = node.value() else {
        return Err(pytorch(path, "the pickled object is not a dict of tensors"));
    };
    for (key, value) in items {
        let Value::Str(key) = key.value() else {
            return Err(pytorch(
                path,
                format!("a key under `{prefix}` is not a string"),
            ));
        };
        let name = format!("{prefix}{key}");
        match value.value() {
            Value::Tensor(tensor) => found(name, tensor)?,
            Value::Dict(_) => flatten(path, value, &format!("{name}."), found)?,
            _ => return Err(pytorch(path, format!("`{name}` is not a tensor"))),
        }
    }
    Ok(())
}

fn check_tensor(
    path: &Path,
    name: &str,
    tensor: &TensorRef,
    root: &str,
    entries: &HashMap<String, usize>,
    records: &[Record],
) -> Result<PthTensor> {
    let record_name = format!("{root}data/{}", tensor.key);
    let record = *entries
        .get(&record_name)
        .ok_or_else(|| ImportError::MissingRecord {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            record: record_name.clone(),
        })?;
    let len = records[record].len;
    if len == usize::MAX {
        return Err(pytorch(
            path,
            format!(
                "record `{record_name}` is compressed or encrypted; torch.save stores records uncompressed"
            ),
        ));
    }
    let itemsize = tensor.dtype.size();
    let storage_numel = usize::try_from(tensor.storage_numel).map_err(|_| {
        storage(
            path,
            name,
            format!("storage size {} is negative", tensor.storage_numel),
        )
    })?;
    if storage_numel.checked_mul(itemsize) != Some(len) {
        return Err(storage(
            path,
            name,
            format!(
                "record `{record_name}` holds {len} bytes, but the pickle declares {storage_numel} elements of {itemsize} bytes"
            ),
        ));
    }
    let offset = usize::try_from(tensor.offset).map_err(|_| {
        storage(
            path,
            name,
            format!("storage offset {} is negative", tensor.offset),
        )
    })?;
    let to_usize = |values: &[i64], what: &str| -> Result<Vec<usize>> {
        values
            .iter()
            .map(|&v| {
                usize::try_from(v).map_err(|_| {
                    storage(
                        path,
                        name,
                        format!("{what} {values:?} has a negative entry"),
                    )
                })
            })
            .collect()
    };
    let shape = to_usize(&tensor.size, "size")?;
    let stride = to_usize(&tensor.stride, "stride")?;
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| storage(path, name, format!("size {shape:?} overflows")))?;
    if numel > 0 {
        // The last element read is at offset + Σ (size - 1) · stride.
        let last = shape.iter().zip(&stride).try_fold(offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
        if last.is_none_or(|last| last >= storage_numel) {
            return Err(storage(
                path,
                name,
                format!(
                    "offset {offset}, size {shape:?} and stride {stride:?} reach past the {storage_numel} elements of `{record_name}`"
                ),
            ));
        }
    } else if offset > storage_numel {
        return Err(storage(
            path,
            name,
            format!("offset {offset} is past the {storage_numel} elements of `{record_name}`"),
        ));
    }
    // A dimension of size 1 is never stepped along; its stride (which the bound above does
    // not limit) is irrelevant, and zeroing it keeps the index arithmetic in range.
    let stride = shape
        .iter()
        .zip(stride)
        .map(|(&n, s)| if n == 1 { 0 } else { s })
        .collect();
    Ok(PthTensor {
        dtype: tensor.dtype,
        shape,
        stride,
        offset,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(!is_contiguous(&[3, 2], &[1, 3]));
        assert!(is_contiguous(&[1, 3], &[7, 1]));
        assert!(is_contiguous(&[], &[]));
    }
}
