//! The product of activations and a weight, `x · w`, as one autodiff operation: forward
//! and both gradients (`g · wᵀ`, `xᵀ · g`) through [`crate::kernels::gemm`], transposes
//! as strided views, outputs written without Flex's zeroing and realignment copy. The two
//! operands are saved, as Burn's matmul saves them.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor};
use burn_flex::{Flex, FlexTensor};

use super::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing, Strategy, flex_f32, from_tracked,
    to_tracked,
};
use crate::kernels::flex::matrix as view;
use crate::kernels::gemm;

/// `x · w` when `B` is a supported `Autodiff<Flex>`, both are f32 and the inner
/// dimensions agree; `Err((x, w))` otherwise.
///
/// # Shapes
///
/// - x: `[m, k]`, w: `[k, n]`
/// - output: `[m, n]`
#[allow(clippy::type_complexity)]
pub(in crate::kernels) fn matmul<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, (Tensor<B, 2>, Tensor<B, 2>)> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 || x.dims()[1] != w.dims()[0] {
        return Err((x, w));
    }
    match Strategy::of::<B>() {
        Some(Strategy::None) => Ok(run::<B, NoCheckpointing>(x, w)),
        Some(Strategy::Balanced) => Ok(run::<B, BalancedCheckpointing>(x, w)),
        None => Err((x, w)),
    }
}

fn run<B: Backend, C: CheckpointStrategy>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    let [m, _] = x.dims();
    let [_, n] = w.dims();
    let (x, w) = (to_tracked::<B, C, 2>(x), to_tracked::<B, C, 2>(w));
    let y = gemm::matmul(view(&x.primitive), view(&w.primitive));
    let out = flex_f32(y, Shape::new([m, n]));
    let out = match Product
        .prepare::<C>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    from_tracked::<B, C, 2>(out)
}

#[derive(Debug)]
struct Product;

impl Backward<Flex, 2> for Product {
    /// The operands `x` and `w`.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [parent_x, parent_w] = ops.parents;
        let (x, w, g) = (view(&x), view(&w), view(&grad));
        if let Some(node) = parent_x {
            let gx = gemm::matmul(g, w.t());
            grads.register::<Flex>(node.id, flex_f32(gx, Shape::new([x.rows, x.cols])));
        }
        if let Some(node) = parent_w {
            let gw = gemm::matmul(x.t(), g);
            grads.register::<Flex>(node.id, flex_f32(gw, Shape::new([w.rows, w.cols])));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, backend::AutodiffBackend};

    use super::*;
    use crate::kernels::autodiff::assert_close;

    /// `sum((x · w) ⊙ c)` of a transposed `x` (a strided view) and the gradients of `x`
    /// and `w`: through this operation and through Burn's matmul.
    fn both<B: AutodiffBackend>() -> [[Vec<f32>; 3]; 2] {
        let device = Default::default();
        let (m, k, n) = (37, 300, 29);
        let random = |shape: [usize; 2]| {
            Tensor::<B::InnerBackend, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
        };
        let (xt, w, c) = (random([k, m]), random([k, n]), random([m, n]));
        let run = |ours: bool| {
            let xt = Tensor::<B, 2>::from_inner(xt.clone()).require_grad();
            let w = Tensor::<B, 2>::from_inner(w.clone()).require_grad();
            let x = xt.clone().transpose();
            let y = if ours {
                matmul(x, w.clone()).expect("served")
            } else {
                x.matmul(w.clone())
            };
            let grads = (y.clone() * Tensor::from_inner(c.clone())).sum().backward();
            let data = |t: Tensor<B::InnerBackend, 2>| t.into_data().to_vec::<f32>().unwrap();
            [
                data(y.inner()),
                data(xt.grad(&grads).expect("gradient of x")),
                data(w.grad(&grads).expect("gradient of w")),
            ]
        };
        [run(true), run(false)]
    }

    #[test]
    fn product_and_gradients_equal_burns_matmul() {
        for [ours, burns] in [
            both::<Autodiff<Flex>>(),
            both::<Autodiff<Flex, BalancedCheckpointing>>(),
        ] {
            assert_eq!(ours.len(), 3);
            for ((what, a), b) in ["x · w", "grad x", "grad w"].iter().zip(&ours).zip(&burns) {
                assert_close(what, a, b, 1e-4);
            }
        }
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient_and_others_are_left_to_burn() {
        let device = Default::default();
        let x = Tensor::<Autodiff<Flex>, 2>::ones([2, 3], &device).require_grad();
        let w = Tensor::<Autodiff<Flex>, 2>::ones([3, 4], &device);
        let grads = matmul(x.clone(), w.clone())
            .expect("served")
            .sum()
            .backward();
        assert_eq!(
            x.grad(&grads)
                .expect("gradient of x")
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
            vec![4.0; 6]
        );
        assert!(w.grad(&grads).is_none());
        let x = Tensor::<Autodiff<crate::TestBackend>, 2>::ones([2, 3], &Default::default());
        let w = Tensor::<Autodiff<crate::TestBackend>, 2>::ones([3, 4], &Default::default());
        assert!(matmul(x, w).is_err());
    }
}
