//! CPU kernels the backends do not provide, each beside a generic fallback.
//!
//! | file | kernel |
//! |---|---|
//! | [`few_rows`] | a few rows times an f32, f16 or bf16 weight matrix (batch decoding): multi-threaded, streaming the weight once |
//! | [`cross_entropy`] | row log-sum-exp and `softmax − onehot` of the training loss: multi-threaded, a vectorized exponential |
//! | [`adamw`] | one AdamW step on a parameter in one pass, in place, multi-threaded |
//! | [`swiglu`](mod@swiglu) | SwiGLU's gating `silu(a) ⊙ b` and its gradient: multi-threaded, a vectorized sigmoid |
//! | [`rms_norm`](mod@rms_norm) | RMSNorm with its weight, and its gradient: rows over the threads, vectorized |
//! | [`rotary`] | the rotary embedding's rotation of adjacent pairs, and its gradient: rows over the threads |
//! | [`gemm`] (feature `flex`) | f32 products of strided views through the `gemm` crate, written into new buffers without zeroing or a second copy |
//! | [`layout`] | a strided (transposed) view copied into row-major order: rows over the threads |
//! | [`grad_norm`] | a gradient's sum of squares and its scaling (global-norm clipping): multi-threaded, the scaling in place |
//! | `exp` | the vectorizable exponential and sigmoid of these kernels |
//! | `autodiff` (features `flex`, `train`) | the weight product, softmax, SwiGLU, RMSNorm, the rotary rotation and the row-major copy as single autodiff operations on `Autodiff<Flex>` |
//! | `flex` (feature `flex`) | routes [`matmul_weight`], [`row_logsumexp`], [`softmax_minus_onehot`], [`swiglu`](fn@swiglu), [`rms_norm`](fn@rms_norm), [`rotate_pairs`], [`row_major`], [`sum_squares`], [`scale`] and [`adamw_step`] on the Flex backend to them |
//!
//! Every kernel computes what the Burn operation it replaces computes, up to the order of
//! f32 additions; on any other backend, or for shapes a kernel does not serve, the Burn
//! operation runs.

pub mod adamw;
#[cfg(all(feature = "flex", feature = "train"))]
mod autodiff;
pub mod cross_entropy;
mod exp;
pub mod few_rows;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
pub mod gemm;
pub mod grad_norm;
pub mod layout;
pub mod rms_norm;
pub mod rotary;
pub mod swiglu;

/// `n` values spread over `[−scale/2, scale/2)` in a scrambled order fixed by `seed`: the
/// inputs of the element-wise kernels' tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 10_007) as f32 / 10_007.0 - 0.5) * scale)
        .collect()
}

use burn::tensor::{ElementConversion, IndexingUpdateOp, Int, Tensor, backend::Backend};

/// `value` as type `T` when it is one (the kernels' way from a generic backend's
/// tensor to a concrete one and back).
#[cfg(any(feature = "flex", feature = "train"))]
pub(crate) fn as_type<T: 'static>(value: impl std::any::Any) -> Option<T> {
    (Box::new(value) as Box<dyn std::any::Any>)
        .downcast::<T>()
        .ok()
        .map(|value| *value)
}

/// `x · weight` for activations `x` and a weight stored `[d_in, d_out]` (Burn's `Linear`).
///
/// The weight may be stored in a narrower float type than `x` (f16 or bf16 weights with f32
/// activations, see [`crate::model::WeightDType`]); the product is then computed as if the
/// weight were widened to `x`'s type. On Flex, a product of at most
/// [`few_rows::MAX_ROWS`] rows (decoding) runs the [`few_rows`] kernel on all of the
/// backend's threads (widening half-precision weights in registers) and larger f32
/// products run [`gemm`](mod@gemm); on `Autodiff<Flex>` (training) an f32 product is one
/// autodiff operation through [`gemm`](mod@gemm), forward and backward; otherwise
/// `x.matmul(weight)`, after a cast of the weight on other backends.
///
/// # Shapes
///
/// - x: `[rows, d_in]`
/// - weight: `[d_in, d_out]`
/// - output: `[rows, d_out]`
pub fn matmul_weight<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(all(feature = "flex", feature = "train"))]
    let (x, weight) = match autodiff::matmul::matmul(x, weight) {
        Ok(y) => return y,
        Err(operands) => operands,
    };
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

/// `log Σ_j exp(x_rj)` of each row.
///
/// On Flex (contiguous f32 `x`) the [`cross_entropy`] kernel; otherwise Burn's
/// operations (the row maximum subtracted first).
///
/// # Shapes
///
/// - x: `[rows, vocab]`
/// - output: `[rows, 1]`
pub fn row_logsumexp<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex::row_logsumexp(&x) {
        return out;
    }
    let max = x.clone().max_dim(1);
    (x - max.clone()).exp().sum_dim(1).log() + max
}

/// `w_r · (exp(x_rj − lse_r) − [j = t_r])`: the gradient of
/// `Σ_r w_r · (lse_r − x_{r, t_r})` with respect to `x`, for `lse` =
/// [`row_logsumexp`]`(x)`.
///
/// On Flex (contiguous f32 `x`) the [`cross_entropy`] kernel (one pass per row, no
/// temporaries); otherwise Burn's operations.
///
/// # Shapes
///
/// - x: `[rows, vocab]`
/// - lse, targets, weights: `[rows, 1]`
/// - output: `[rows, vocab]`
pub fn softmax_minus_onehot<B: Backend>(
    x: Tensor<B, 2>,
    lse: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex::softmax_minus_onehot(&x, &lse, &targets, &weights) {
        return out;
    }
    (x - lse)
        .exp()
        .mul(weights.clone())
        .scatter(1, targets, weights.neg(), IndexingUpdateOp::Add)
}

/// `softmax(x, D − 1)`.
///
/// On `Autodiff<Flex>` (training) one autodiff operation (Flex's fused softmax
/// forward, the backward from the saved output); otherwise Burn's `softmax`.
///
/// # Shapes
///
/// - x, output: `[..., n]`
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", feature = "train"))]
    let x = match autodiff::softmax::softmax_last(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::softmax(x, D - 1)
}

/// `silu(a) ⊙ b`, SwiGLU's gating.
///
/// On `Autodiff<Flex>` (training) one autodiff operation and on Flex one pass, both
/// through the [`swiglu`](mod@swiglu) kernels, for f32 tensors of one shape; otherwise
/// Burn's `silu(a) * b`.
///
/// # Shapes
///
/// - a, b, output: `[...]`
pub fn swiglu<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", feature = "train"))]
    let (a, b) = match autodiff::swiglu::swiglu(a, b) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    #[cfg(feature = "flex")]
    if let Some(y) = flex::swiglu(&a, &b) {
        return y;
    }
    burn::tensor::activation::silu(a) * b
}

/// RMSNorm over the last axis, `x / √(mean(x²) + eps) · weight`, normalised in f32
/// whatever `x`'s precision and cast back before the weight is applied (as Meta's
/// `RMSNorm`).
///
/// For f32 `x` and weight, on `Autodiff<Flex>` (training) one autodiff operation and on
/// Flex one pass per row, both through the [`rms_norm`](mod@rms_norm) kernels;
/// otherwise Burn's operations.
///
/// # Shapes
///
/// - x, output: `[..., dim]`
/// - weight: `[dim]`
pub fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", feature = "train"))]
    let (x, weight) = match autodiff::rms_norm::rms_norm(x, weight, eps) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    #[cfg(feature = "flex")]
    if let Some(y) = flex::rms_norm(&x, &weight, eps) {
        return y;
    }
    let dtype = x.dtype();
    let x = x.cast(burn::tensor::DType::F32);
    // A division rather than `recip()`: some CPU backends compute reciprocals with an
    // approximate (12-bit) SIMD instruction.
    let rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt();
    (x / rms).cast(dtype) * weight.unsqueeze()
}

/// `x`'s adjacent pairs rotated by the angles of its positions, `(x₀ cos − x₁ sin,
/// x₁ cos + x₀ sin)` ([`rotary::rotate_pairs`]), for f32 tensors on `Autodiff<Flex>`
/// (training: one autodiff operation, the gradient rotated back) or on Flex (one pass).
/// `Err(x)` on any other backend or dtype, for the caller's composition of Burn
/// operations (whose result this equals bit for bit).
///
/// # Shapes
///
/// - x, output: `[batch, seq_len, heads, head_dim]`
/// - cos, sin: `[seq_len, head_dim / 2]`, the tables of `x`'s positions
pub fn rotate_pairs<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    #[cfg(all(feature = "flex", feature = "train"))]
    let x = match autodiff::rotary::rotate_pairs(x, cos, sin) {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    #[cfg(feature = "flex")]
    if let Some(y) = flex::rotate_pairs(&x, cos, sin) {
        return Ok(y);
    }
    let _ = (cos, sin);
    Err(x)
}

/// Whether [`rotate_pairs`]' kernel serves these operands: f32, an even head size and
/// tables of `seq_len` rows of `head_dim / 2`.
#[cfg(feature = "flex")]
fn rotary_shapes_fit<B: Backend>(x: &Tensor<B, 4>, cos: &Tensor<B, 2>, sin: &Tensor<B, 2>) -> bool {
    let [_, seq_len, _, head_dim] = x.dims();
    let table = [seq_len, head_dim / 2];
    [x.dtype(), cos.dtype(), sin.dtype()] == [burn::tensor::DType::F32; 3]
        && head_dim > 0
        && head_dim.is_multiple_of(2)
        && cos.dims() == table
        && sin.dims() == table
}

/// `x` with its elements in row-major order, and in training its gradient too.
///
/// On Flex and `Autodiff<Flex>` a strided view (a transposed tensor) is copied on all
/// threads ([`layout`]), where the reshape that follows would copy it on one; other
/// backends get `x` back as it is (their reshapes copy what they need).
///
/// # Shapes
///
/// - x, output: `[...]`
pub fn row_major<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", feature = "train"))]
    let x = match autodiff::layout::row_major_tracked(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    #[cfg(feature = "flex")]
    let x = match flex::row_major_tensor(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x
}

/// `Σ x²` over all of `x`'s elements, in f64.
///
/// On Flex (contiguous f32 `x`) the [`grad_norm`] kernel on all threads, each square and
/// sum in f64; otherwise Burn's `square().sum()`.
///
/// # Shapes
///
/// - x: `[...]`
pub fn sum_squares<B: Backend, const D: usize>(x: &Tensor<B, D>) -> f64 {
    #[cfg(feature = "flex")]
    if let Some(sum) = flex::sum_squares(x) {
        return sum;
    }
    x.clone().square().sum().into_scalar().elem::<f64>()
}

/// `x · by`.
///
/// On Flex (f32 `x`) the [`grad_norm`] kernel on all threads, in place where `x`'s buffer
/// is not shared; otherwise Burn's `mul_scalar`. Both multiply in f32.
///
/// # Shapes
///
/// - x, output: `[...]`
pub fn scale<B: Backend, const D: usize>(x: Tensor<B, D>, by: f64) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::scale(x, by) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x.mul_scalar(by)
}

/// A parameter and its AdamW moments after one step ([`adamw::adamw_step`]).
pub type AdamWTensors<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>);

/// The inputs of [`adamw_step`]: the parameter, its gradient and the moments `(m, v)`.
pub type AdamWInputs<B, const D: usize> = (
    Tensor<B, D>,
    Tensor<B, D>,
    Option<(Tensor<B, D>, Tensor<B, D>)>,
);

/// One AdamW step of `param` with `grad` and the moments `(m, v)` of the previous steps
/// (`None` at the first step): the updated parameter and moments, computed by the
/// [`adamw`] kernel in one pass over f32 Flex tensors (in place where the buffers are not
/// shared). `Err` gives the inputs back on any other backend or dtype, for Burn's `AdamW`
/// (whose result this equals).
///
/// # Shapes
///
/// - param, grad, m, v: `[...]`, one shape
pub fn adamw_step<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    step: &adamw::AdamWStep,
) -> Result<AdamWTensors<B, D>, AdamWInputs<B, D>> {
    #[cfg(feature = "flex")]
    return flex::adamw_step(param, grad, moments, step);
    #[cfg(not(feature = "flex"))]
    {
        let _ = step;
        Err((param, grad, moments))
    }
}
