//! The Flex backend's route to [`few_rows`](super::few_rows): the model is generic over
//! `B: Backend`, so the Flex tensors are recognised by type at run time (a `TypeId`
//! comparison through `Any`) and every other backend, including `Autodiff<Flex>` in
//! training, keeps Burn's matmul.

use std::any::Any;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use burn_flex::Flex;

use super::few_rows;

/// Weights smaller than this run faster through gemm than across threads (one row).
const MIN_WEIGHT_ELEMENTS: usize = 1 << 16;
/// With several rows gemm's register-blocked kernels win while the weight sits in cache:
/// measured on the 15M shape (288 × 768 projections, batch 4) as 284 tok/s through gemm
/// against 245 through this kernel, while the 110M shape's 768 × 768 and larger
/// projections decode 20 % faster through it.
const MIN_WEIGHT_ELEMENTS_SEVERAL_ROWS: usize = 1 << 19;

/// `Some(x · weight)` when both are contiguous f32 Flex tensors, `x` has at most
/// [`few_rows::MAX_ROWS`] rows and the weight is large enough for the kernel to win.
pub(super) fn matmul_weight<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    let weight = (weight as &dyn Any).downcast_ref::<Tensor<Flex, 2>>()?;
    let [m, k] = x.dims();
    let [k_w, n] = weight.dims();
    let min_elements = if m == 1 {
        MIN_WEIGHT_ELEMENTS
    } else {
        MIN_WEIGHT_ELEMENTS_SEVERAL_ROWS
    };
    if m == 0 || m > few_rows::MAX_ROWS || k != k_w || k * n < min_elements {
        return None;
    }
    let x_prim = x.clone().into_primitive().tensor();
    let w_prim = weight.clone().into_primitive().tensor();
    let out = few_rows::matmul(
        x_prim.as_slice::<f32>()?,
        w_prim.as_slice::<f32>()?,
        m,
        k,
        n,
    );
    let out = Tensor::<Flex, 2>::from_data(TensorData::new(out, [m, n]), &x.device());
    let out: Box<dyn Any> = Box::new(out);
    out.downcast::<Tensor<B, 2>>().ok().map(|out| *out)
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
    fn other_shapes_and_views_are_left_to_burn() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::ones([9, 512], &device);
        let w = Tensor::<Flex, 2>::ones([512, 512], &device);
        assert!(matmul_weight(&x, &w).is_none(), "9 rows");
        let small = Tensor::<Flex, 2>::ones([64, 64], &device);
        assert!(matmul_weight(&Tensor::ones([1, 64], &device), &small).is_none());
        // A transposed weight is a strided view: not contiguous, left to gemm.
        let transposed = Tensor::<Flex, 2>::ones([512, 640], &device).transpose();
        assert!(matmul_weight(&Tensor::ones([1, 640], &device), &transposed).is_none());
    }
}
