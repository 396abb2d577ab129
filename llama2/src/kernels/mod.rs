//! CPU kernels the backends do not provide, each beside a generic fallback.
//!
//! | file | kernel |
//! |---|---|
//! | [`few_rows`] | a few rows times an f32, f16 or bf16 weight matrix (batch decoding): multi-threaded, streaming the weight once |
//! | `flex` (feature `flex`) | routes [`matmul_weight`] on the Flex backend to [`few_rows`] |
//!
//! Every kernel computes what the Burn operation it replaces computes, up to the order of
//! f32 additions; on any other backend, or for shapes a kernel does not serve, the Burn
//! operation runs.

pub mod few_rows;
#[cfg(feature = "flex")]
mod flex;

use burn::tensor::{Tensor, backend::Backend};

/// `x · weight` for activations `x` and a weight stored `[d_in, d_out]` (Burn's `Linear`).
///
/// The weight may be stored in a narrower float type than `x` (f16 or bf16 weights with f32
/// activations, see [`crate::model::WeightDType`]); the product is then computed as if the
/// weight were widened to `x`'s type. On Flex, a product of at most
/// [`few_rows::MAX_ROWS`] rows (decoding) runs the [`few_rows`] kernel on all of the
/// backend's threads (widening half-precision weights in registers); otherwise
/// `x.matmul(weight)`, after a cast of the weight on other backends.
///
/// # Shapes
///
/// - x: `[rows, d_in]`
/// - weight: `[d_in, d_out]`
/// - output: `[rows, d_out]`
pub fn matmul_weight<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex::matmul_weight(&x, &weight) {
        return out;
    }
    let dtype = x.dtype();
    if weight.dtype() != dtype {
        return x.matmul(weight.cast(dtype));
    }
    x.matmul(weight)
}
