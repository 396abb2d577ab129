//! Helpers shared by the integration tests: the committed reference data and the backend
//! selected by cargo features.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use llama2_burn::backend::{self, Selected};
use safetensors::SafeTensors;

pub type B = Selected;

/// `tests/data` of the repository.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

/// The tiny reference model's directory for a layout (`meta-1`, `meta-2`, `hf`, `hf-sharded`).
pub fn tiny(layout: &str) -> PathBuf {
    data_dir().join("tiny").join(layout)
}

/// Logit tolerance: 1e-4 on CPU backends, 1e-3 on GPU-style backends.
pub fn tolerance() -> f32 {
    match backend::NAME {
        "ndarray" | "flex" => 1e-4,
        _ => 1e-3,
    }
}

pub fn device() -> burn::tensor::Device<B> {
    backend::device()
}

/// One reference tensor: shape and values.
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

/// Reads a tensor from `tests/data/tiny/reference.safetensors`.
pub fn reference(name: &str) -> RefTensor {
    let bytes = std::fs::read(data_dir().join("tiny/reference.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let view = file
        .tensor(name)
        .unwrap_or_else(|_| panic!("reference has no `{name}`"));
    let data = view.data();
    let (mut f32v, mut i64v) = (Vec::new(), Vec::new());
    match view.dtype() {
        safetensors::Dtype::F32 => {
            f32v = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        }
        safetensors::Dtype::I64 => {
            i64v = data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        }
        other => panic!("unexpected dtype {other:?}"),
    }
    RefTensor {
        shape: view.shape().to_vec(),
        f32: f32v,
        i64: i64v,
    }
}

/// A `[batch, len]` token tensor on backend `T`'s default device (the selected backend's
/// unless the caller names another).
pub fn tokens<T: Backend>(ids: &[i64], batch: usize) -> Tensor<T, 2, Int> {
    let len = ids.len() / batch;
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [batch, len]),
        &Default::default(),
    )
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Index of the largest value of each row of `width`.
pub fn argmax_rows(values: &[f32], width: usize) -> Vec<usize> {
    values
        .chunks_exact(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}

/// The example binary `name` that `cargo test` builds beside the test binaries.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the whole test suite (`cargo test --release --workspace`), which builds the examples",
        path.display()
    );
    path
}
