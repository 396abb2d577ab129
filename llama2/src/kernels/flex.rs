//! The Flex backend's route to [`few_rows`](super::few_rows): the model is generic over
//! `B: Backend`, so the Flex tensors are recognised by type at run time (a `TypeId`
//! comparison through `Any`) and every other backend, including `Autodiff<Flex>` in
//! training, keeps Burn's matmul.

use std::any::Any;

use burn::tensor::{DType, Int, Tensor, TensorData, TensorPrimitive, backend::Backend, bf16, f16};
use burn_flex::{Flex, FlexTensor};

use super::few_rows::{self, Weight};
use super::gemm::{self, Matrix};
use super::{
    AdamWInputs, AdamWTensors, adamw, as_type, cross_entropy, grad_norm, layout,
    rms_norm as norm_kernel, rotary, swiglu as gate_kernel,
};

/// Weights smaller than this run faster through gemm than across threads (one row).
const MIN_WEIGHT_ELEMENTS: usize = 1 << 16;
/// With several rows gemm's register-blocked kernels win while the weight sits in cache:
/// measured on the 15M shape (288 × 768 projections, batch 4) as 284 tok/s through gemm
/// against 245 through this kernel, while the 110M shape's 768 × 768 and larger
/// projections decode 20 % faster through it.
const MIN_WEIGHT_ELEMENTS_SEVERAL_ROWS: usize = 1 << 19;

/// `Some(x · weight)` when both are contiguous Flex tensors, `x` in f32 and the weight in
/// f32, f16 or bf16. A product of at most [`few_rows::MAX_ROWS`] rows with a weight large
/// enough for the kernel to win runs [`few_rows`]; any other product with a half-precision
/// weight widens it to f32 on all threads for Burn's matmul (Burn's own cast is
/// single-threaded and goes through f64), and a larger f32 product runs [`gemm`](mod@gemm).
pub(super) fn matmul_weight<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    let weight = (weight as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    let [m, k] = x.dims();
    let [k_w, n] = weight.dims();
    if k != k_w {
        return None;
    }
    let x_prim = x.clone().into_primitive().tensor();
    let w_prim = weight.clone().into_primitive().tensor();
    let stored = stored_weight(&w_prim)?;
    let min_elements = if m == 1 {
        MIN_WEIGHT_ELEMENTS
    } else {
        MIN_WEIGHT_ELEMENTS_SEVERAL_ROWS
    };
    let out = if (1..=few_rows::MAX_ROWS).contains(&m)
        && (k * n >= min_elements || !matches!(stored, Weight::F32(_)))
    {
        let out = few_rows::matmul(x_prim.as_slice::<f32>()?, stored, m, k, n);
        Tensor::<Flex, 2>::from_data(TensorData::new(out, [m, n]), &x.device())
    } else if matches!(stored, Weight::F32(_)) {
        if x_prim.dtype() != DType::F32 {
            return None;
        }
        let y = gemm::matmul(matrix(&x_prim), matrix(&w_prim));
        Tensor::<Flex, 2>::from_data(TensorData::new(y, [m, n]), &x.device())
    } else {
        let widened = few_rows::widen(stored);
        x.clone().matmul(Tensor::from_data(
            TensorData::new(widened, [k, n]),
            &x.device(),
        ))
    };
    as_type(out)
}

/// The strided `[rows, cols]` view of a 2-D f32 Flex tensor.
pub(in crate::kernels) fn matrix(t: &FlexTensor) -> Matrix<'_> {
    let layout = t.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    Matrix {
        data: t.storage::<f32>(),
        offset: layout.start_offset(),
        rows: shape[0],
        cols: shape[1],
        row_stride: strides[0],
        col_stride: strides[1],
    }
}

/// [`super::row_logsumexp`] on Flex for a contiguous f32 `x`.
pub(super) fn row_logsumexp<B: Backend>(x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    let [rows, vocab] = x.dims();
    let prim = x.clone().into_primitive().tensor();
    let lse = cross_entropy::row_logsumexp(prim.as_slice::<f32>()?, vocab);
    let out = Tensor::<Flex, 2>::from_data(TensorData::new(lse, [rows, 1]), &x.device());
    as_type(out)
}

/// [`super::softmax_minus_onehot`] on Flex for a contiguous f32 `x`.
pub(super) fn softmax_minus_onehot<B: Backend>(
    x: &Tensor<B, 2>,
    lse: &Tensor<B, 2>,
    targets: &Tensor<B, 2, Int>,
    weights: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    let [rows, vocab] = x.dims();
    let prim = x.clone().into_primitive().tensor();
    let logits = prim.as_slice::<f32>()?;
    let small = |t: &Tensor<B, 2>| t.clone().into_data().convert::<f32>().to_vec::<f32>().ok();
    let lse = small(lse)?;
    let weights = small(weights)?;
    let targets: Vec<usize> = targets
        .clone()
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .ok()?
        .into_iter()
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect();
    if lse.len() != rows || weights.len() != rows || targets.len() != rows {
        return None;
    }
    let grad = cross_entropy::softmax_minus_onehot(logits, vocab, &lse, &targets, &weights);
    let out = Tensor::<Flex, 2>::from_data(TensorData::new(grad, [rows, vocab]), &x.device());
    as_type(out)
}

/// [`super::swiglu`] on Flex for f32 `a` and `b` of one shape.
pub(super) fn swiglu<B: Backend, const D: usize>(
    a: &Tensor<B, D>,
    b: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let a = (a as &dyn Any).downcast_ref::<Tensor<Flex, D>>()?;
    let b = (b as &dyn Any).downcast_ref::<Tensor<Flex, D>>()?;
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 || a.dims() != b.dims() {
        return None;
    }
    let a_prim = row_major(&a.clone().into_primitive().tensor());
    let b_prim = row_major(&b.clone().into_primitive().tensor());
    let out = gate_kernel::swiglu(a_prim.as_slice::<f32>()?, b_prim.as_slice::<f32>()?);
    let out = Tensor::<Flex, D>::from_data(TensorData::new(out, a.shape()), &a.device());
    as_type(out)
}

/// [`super::rms_norm`] on Flex for an f32 `x` and weight.
pub(super) fn rms_norm<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Flex, D>>()?;
    let weight = (weight as &dyn Any).downcast_ref::<Tensor<Flex, 1>>()?;
    if x.dtype() != DType::F32
        || weight.dtype() != DType::F32
        || x.dims()[D - 1] != weight.dims()[0]
    {
        return None;
    }
    let x_prim = row_major(&x.clone().into_primitive().tensor());
    let w_prim = row_major(&weight.clone().into_primitive().tensor());
    let (y, _) = norm_kernel::rms_norm(
        x_prim.as_slice::<f32>()?,
        w_prim.as_slice::<f32>()?,
        eps as f32,
    );
    let out = Tensor::<Flex, D>::from_data(TensorData::new(y, x.shape()), &x.device());
    as_type(out)
}

/// [`super::rotate_pairs`] on Flex for f32 tensors of fitting shapes.
pub(super) fn rotate_pairs<B: Backend>(
    x: &Tensor<B, 4>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
) -> Option<Tensor<B, 4>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Flex, 4>>()?;
    let cos = (cos as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    let sin = (sin as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    if !super::rotary_shapes_fit(x, cos, sin) {
        return None;
    }
    let [_, _, heads, head_dim] = x.dims();
    let contiguous = |t: &Tensor<Flex, 2>| row_major(&t.clone().into_primitive().tensor());
    let (cos, sin) = (contiguous(cos), contiguous(sin));
    let x_prim = row_major(&x.clone().into_primitive().tensor());
    let y = rotary::rotate_pairs(
        x_prim.as_slice::<f32>()?,
        cos.as_slice::<f32>()?,
        sin.as_slice::<f32>()?,
        heads,
        head_dim,
        false,
    );
    let out = Tensor::<Flex, 4>::from_data(TensorData::new(y, x.shape()), &x.device());
    as_type(out)
}

/// [`super::adamw_step`] on Flex for f32 tensors of one shape.
pub(super) fn adamw_step<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    step: &adamw::AdamWStep,
) -> Result<AdamWTensors<B, D>, AdamWInputs<B, D>> {
    let served = (&param as &dyn Any).is::<Tensor<Flex, D>>()
        && param.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && grad.dims() == param.dims()
        && moments.as_ref().is_none_or(|(m, v)| {
            m.dtype() == DType::F32
                && v.dtype() == DType::F32
                && m.dims() == param.dims()
                && v.dims() == param.dims()
        });
    if !served {
        return Err((param, grad, moments));
    }
    let flex = |t: Tensor<B, D>| -> FlexTensor {
        let t: Tensor<Flex, D> = as_type(t).expect("a Flex tensor (checked)");
        t.into_primitive().tensor()
    };
    let shape = param.shape();
    let mut p = writable(flex(param));
    let g = row_major(&flex(grad));
    let (mut m, mut v) = match moments {
        Some((m, v)) => (writable(flex(m)), writable(flex(v))),
        None => {
            let zeros = || FlexTensor::zeros(shape.clone(), DType::F32);
            (zeros(), zeros())
        }
    };
    adamw::adamw_step(
        p.try_storage_mut::<f32>().expect("a unique buffer"),
        g.as_slice::<f32>().expect("contiguous"),
        m.try_storage_mut::<f32>().expect("a unique buffer"),
        v.try_storage_mut::<f32>().expect("a unique buffer"),
        step,
    );
    let back = |t: FlexTensor| -> Tensor<B, D> {
        as_type(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t)))
            .expect("B is Flex (checked)")
    };
    Ok((back(p), back(m), back(v)))
}

/// [`super::sum_squares`] on Flex for a contiguous f32 `x`.
pub(super) fn sum_squares<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<f64> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Flex, D>>()?;
    if x.dtype() != DType::F32 {
        return None;
    }
    let prim = x.clone().into_primitive().tensor();
    Some(grad_norm::sum_squares(prim.as_slice::<f32>()?))
}

/// [`super::scale`] on Flex for an f32 `x`, in place where its buffer is not shared.
pub(super) fn scale<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    by: f64,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    map_flex(x, |t| {
        let mut t = writable(t);
        grad_norm::scale(
            t.try_storage_mut::<f32>().expect("a unique buffer"),
            by as f32,
        );
        t
    })
}

/// [`super::row_major`] on Flex.
pub(super) fn row_major_tensor<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    map_flex(x, |t| row_major(&t))
}

/// `f` applied to the primitive of `x` when `B` is Flex; `Err(x)` otherwise.
fn map_flex<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(FlexTensor) -> FlexTensor,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !(&x as &dyn Any).is::<Tensor<Flex, D>>() {
        return Err(x);
    }
    let x: Tensor<Flex, D> = as_type(x).expect("a Flex tensor (checked)");
    let t = f(x.into_primitive().tensor());
    Ok(as_type(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t))).expect("B is Flex"))
}

/// `t` with its elements in row-major order: `t` itself when they are, an f32 strided
/// view copied on all threads ([`layout::to_row_major`]), other dtypes by Flex.
pub(in crate::kernels) fn row_major(t: &FlexTensor) -> FlexTensor {
    if t.dtype() != DType::F32 || fills_buffer(t) {
        return t.to_contiguous();
    }
    writable(t.clone())
}

/// Whether the f32 tensor `t` holds its elements in row-major order over its whole buffer.
fn fills_buffer(t: &FlexTensor) -> bool {
    t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * std::mem::size_of::<f32>()
}

/// The f32 tensor `t` with a buffer of its own holding exactly its elements in row-major
/// order: `t` itself when it has one, else a copy made on all threads.
fn writable(t: FlexTensor) -> FlexTensor {
    if fills_buffer(&t) && t.is_unique() {
        return t;
    }
    let layout = t.layout();
    let values = layout::to_row_major(
        t.storage::<f32>(),
        layout.start_offset(),
        layout.shape(),
        layout.strides(),
    );
    FlexTensor::from_data(TensorData::new(values, layout.shape().clone()))
}

/// The elements of a contiguous f32, f16 or bf16 Flex tensor.
fn stored_weight(w: &FlexTensor) -> Option<Weight<'_>> {
    Some(match w.dtype() {
        DType::F32 => Weight::F32(w.as_slice::<f32>()?),
        DType::F16 => Weight::F16(bytemuck_u16(w.as_slice::<f16>()?)),
        DType::BF16 => Weight::Bf16(bytemuck_u16(w.as_slice::<bf16>()?)),
        _ => return None,
    })
}

/// The bit patterns of half-precision values.
fn bytemuck_u16<T: Copy>(values: &[T]) -> &[u16] {
    assert_eq!(std::mem::size_of::<T>(), 2);
    // SAFETY: f16 and bf16 are `repr(transparent)` over u16 (asserted 2 bytes), so the
    // slice has the same length, alignment and validity as `[u16]`.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u16>(), values.len()) }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn flex_products_of_few_rows_equal_burns_matmul() {
        let device = Default::default();
        for (m, k, n) in [(1, 288, 32000), (4, 768, 768), (8, 512, 1376)] {
            let x = Tensor::<Flex, 2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<Flex, 2>::random([k, n], Distribution::Normal(0.0, 0.05), &device);
            let got = matmul_weight(&x, &w).expect("served by the kernel");
            let want = x.matmul(w);
            assert_eq!(got.dims(), [m, n]);
            got.into_data().assert_approx_eq::<f32>(
                &want.into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
        }
    }

    #[test]
    fn rotation_equals_burns_composition_bit_for_bit() {
        let device = Default::default();
        let rope = crate::model::rotary::RotaryEmbeddingConfig::new(64, 512).init::<Flex>(&device);
        // Prefill of two sequences from position 0, and one decoding position far in.
        for (batch, seq, start) in [(2, 300, 0), (3, 1, 417)] {
            let x = Tensor::<Flex, 4>::random(
                [batch, seq, 6, 64],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let composed = rope.apply_seq_major_composed(x.clone(), start).into_data();
            let fused = rope.apply_seq_major(x, start).into_data();
            assert_eq!(fused.shape, composed.shape);
            assert_eq!(
                fused.to_vec::<f32>().unwrap(),
                composed.to_vec::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn gate_and_norm_equal_burns_operations() {
        let device = Default::default();
        // A decoding row (one task) and a prefill block (several), the latter as a view.
        for rows in [1, 300] {
            let x =
                Tensor::<Flex, 3>::random([1, rows, 768], Distribution::Normal(0.0, 2.0), &device);
            let b =
                Tensor::<Flex, 3>::random([1, rows, 768], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<Flex, 1>::random([768], Distribution::Normal(1.0, 0.2), &device);
            let x = if rows > 1 {
                x.swap_dims(0, 1).swap_dims(0, 1)
            } else {
                x
            };
            let gate = swiglu(&x, &b).expect("f32 Flex tensors");
            let want = burn::tensor::activation::silu(x.clone()) * b;
            gate.into_data().assert_approx_eq::<f32>(
                &want.into_data(),
                burn::tensor::Tolerance::absolute(1e-5),
            );
            let norm = rms_norm(&x, &w, 1e-5).expect("f32 Flex tensors");
            let rms = (x.clone().square().mean_dim(2) + 1e-5).sqrt();
            let want = x / rms * w.unsqueeze();
            norm.into_data().assert_approx_eq::<f32>(
                &want.into_data(),
                burn::tensor::Tolerance::absolute(1e-5),
            );
        }
        let x = Tensor::<Flex, 2>::ones([2, 3], &device);
        assert!(rms_norm(&x, &Tensor::ones([4], &device), 1e-5).is_none());
        assert!(swiglu(&x, &Tensor::ones([1, 3], &device)).is_none());
    }

    #[test]
    fn half_precision_weights_multiply_as_their_f32_values() {
        use burn::tensor::FloatDType;
        let device = Default::default();
        // Decoding shapes (the kernel), a prefill shape (widened, then gemm) and a small
        // weight (the kernel: Burn's matmul does not take mixed precisions).
        for (m, k, n) in [(1, 288, 32000), (4, 768, 768), (33, 288, 768), (2, 16, 24)] {
            let x = Tensor::<Flex, 2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<Flex, 2>::random([k, n], Distribution::Normal(0.0, 0.05), &device);
            for dtype in [FloatDType::F16, FloatDType::BF16] {
                let stored = w.clone().cast(dtype);
                let got = matmul_weight(&x, &stored).expect("served");
                let want = x.clone().matmul(stored.cast(FloatDType::F32));
                assert_eq!(got.dims(), [m, n]);
                assert_eq!(got.dtype(), DType::F32);
                got.into_data().assert_approx_eq::<f32>(
                    &want.into_data(),
                    burn::tensor::Tolerance::absolute(1e-4),
                );
            }
        }
    }

    #[test]
    fn other_f32_products_run_gemm_and_strided_weights_are_left_to_burn() {
        let device = Default::default();
        let random = |shape: [usize; 2]| {
            Tensor::<Flex, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
        };
        // Too many rows for the decoding kernel, and a weight too small for it; the
        // activations of the first as a transposed (strided) view.
        for (x, w) in [
            (random([512, 9]).transpose(), random([512, 512])),
            (random([1, 64]), random([64, 64])),
        ] {
            let got = matmul_weight(&x, &w).expect("served by gemm");
            let want = x.clone().matmul(w);
            assert_eq!(got.dims(), want.dims());
            got.into_data().assert_approx_eq::<f32>(
                &want.into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
        }
        // A transposed weight is a strided view: not contiguous, left to Burn.
        let transposed = Tensor::<Flex, 2>::ones([512, 640], &device).transpose();
        assert!(matmul_weight(&Tensor::ones([1, 640], &device), &transposed).is_none());
    }
}
