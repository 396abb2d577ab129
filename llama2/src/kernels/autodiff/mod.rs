//! Operations that run as one node of Burn's autodiff backend over Flex (training),
//! each with its forward kernel and a backward pass written for it, where Burn composes
//! them of several element-wise operations that keep and revisit their intermediates.
//!
//! | file | operation |
//! |---|---|
//! | [`softmax`] | softmax over the last axis: Flex's fused forward, `y ⊙ (g − Σ g y)` backward from the saved output |
//! | [`swiglu`] | `silu(a) ⊙ b` ([`super::swiglu`] kernels) |
//! | [`rms_norm`] | RMSNorm with its weight ([`super::rms_norm`] kernels) |
//! | [`rotary`] | the rotary embedding's rotation ([`super::rotary`] kernel), the gradient rotated back |
//! | [`matmul`] | activations times a weight, forward and both gradients ([`super::gemm`]) |
//! | [`layout`] | a tensor and its gradient brought into row-major order ([`super::layout`] kernel) |
//!
//! Each applies to `Autodiff<Flex>` without checkpointing or with
//! `BalancedCheckpointing` and f32 tensors, recognised by `TypeId`; every other backend
//! gets its inputs back and runs Burn's operations.

pub(super) mod layout;
pub(super) mod matmul;
pub(super) mod rms_norm;
pub(super) mod rotary;
pub(super) mod softmax;
pub(super) mod swiglu;

use std::any::TypeId;

use burn::backend::Autodiff;
pub(super) use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{Shape, Tensor, TensorData, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

use super::as_type;
pub(super) use super::flex::row_major;

pub(super) type FloatTensor<B> = <B as BackendTypes>::FloatTensorPrimitive;

/// The checkpointing strategy of a supported autodiff backend.
pub(super) enum Strategy {
    /// `Autodiff<Flex>` (no checkpointing).
    None,
    /// `Autodiff<Flex, BalancedCheckpointing>`.
    Balanced,
}

impl Strategy {
    /// Which supported backend `B` is, if it is one.
    pub(super) fn of<B: Backend>() -> Option<Self> {
        let id = TypeId::of::<B>();
        if id == TypeId::of::<Autodiff<Flex, NoCheckpointing>>() {
            Some(Self::None)
        } else if id == TypeId::of::<Autodiff<Flex, BalancedCheckpointing>>() {
            Some(Self::Balanced)
        } else {
            None
        }
    }
}

/// `value` as type `T`, which it is (checked by the caller through `TypeId`).
fn same<T: 'static>(value: impl std::any::Any) -> T {
    as_type(value).expect("the backend's tensor type was checked")
}

/// The autodiff primitive of `x`, for `B` = `Autodiff<Flex, C>` (checked by the caller).
pub(super) fn to_tracked<B: Backend, C: CheckpointStrategy, const D: usize>(
    x: Tensor<B, D>,
) -> FloatTensor<Autodiff<Flex, C>> {
    same(x.into_primitive().tensor())
}

/// The tensor of an autodiff primitive, for `B` = `Autodiff<Flex, C>`.
pub(super) fn from_tracked<B: Backend, C: CheckpointStrategy, const D: usize>(
    x: FloatTensor<Autodiff<Flex, C>>,
) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(same::<FloatTensor<B>>(x)))
}

/// A contiguous f32 Flex tensor of `shape` holding `values`.
pub(super) fn flex_f32(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The f32 elements of a contiguous tensor ([`row_major`]).
pub(super) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked before the kernel)")
}

/// Asserts that `got` equals `want` element by element within `abs + 1e-5 · |want|`, both
/// of one non-zero length: the fused operations' tests against Burn's composed ones.
#[cfg(test)]
fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    assert!(!got.is_empty(), "{what}: no values");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= abs + 1e-5 * b.abs(),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}
