//! Softmax as one operation of Burn's autodiff backend over Flex: the forward
//! pass is Flex's fused softmax (one vectorized pass per row for the maximum,
//! the exponentials and the sum, one to normalize), the backward pass
//! `y ⊙ (g − Σ_j g_j y_j)` from the saved output, without exponentials.
//!
//! Burn's autodiff backend otherwise decomposes softmax into five operations
//! (maximum, subtract, exp, sum, divide) whose backward passes keep and
//! recompute their own intermediates, with a scalar `exp` on Flex.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::Flex;

use super::{FloatTensor, Strategy, from_tracked, to_tracked};

/// `softmax(x, D − 1)` when `B` is `Autodiff<Flex>` (without checkpointing or
/// with `BalancedCheckpointing`) and `x` is f32; `Err(x)` otherwise.
pub(in crate::kernels) fn softmax_last<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if x.dtype() != burn::tensor::DType::F32 {
        return Err(x);
    }
    match Strategy::of::<B>() {
        Some(Strategy::None) => Ok(run::<B, super::NoCheckpointing, D>(x)),
        Some(Strategy::Balanced) => Ok(run::<B, super::BalancedCheckpointing, D>(x)),
        None => Err(x),
    }
}

fn run<B: Backend, C: CheckpointStrategy, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let x = to_tracked::<B, C, D>(x);
    let y = burn_flex::ops::activation::softmax(x.primitive, D - 1);
    let out = match Softmax::<D>
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    from_tracked::<B, C, D>(out)
}

#[derive(Debug)]
struct Softmax<const D: usize>;

impl<const D: usize> Backward<Flex, 1> for Softmax<D> {
    /// The output.
    type State = FloatTensor<Flex>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(ops.state));
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let g = Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(grad));
            let dot = (g.clone() * y.clone()).sum_dim(D - 1);
            ((g - dot) * y).into_primitive().tensor()
        });
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    use burn::tensor::activation::softmax;
    use burn::tensor::{Distribution, backend::AutodiffBackend};

    use super::*;
    use crate::kernels::autodiff::assert_close;

    /// Softmax of causal-masked scores and the gradient of a weighted sum of it,
    /// by the fused operation and by Burn's composed one.
    fn both<B: AutodiffBackend>() -> [(Vec<f32>, Vec<f32>); 2] {
        let device = Default::default();
        let [b, h, s] = [2, 3, 37];
        let scores = Tensor::<B::InnerBackend, 4>::random(
            [b, h, s, s],
            Distribution::Normal(0.0, 2.0),
            &device,
        );
        let above = Tensor::<B::InnerBackend, 2>::ones([s, s], &device)
            .triu(1)
            .bool();
        let mask = Tensor::<B::InnerBackend, 2>::zeros([s, s], &device)
            .mask_fill(above, f32::NEG_INFINITY)
            .reshape([1, 1, s, s]);
        let weights = Tensor::<B, 4>::random([b, h, s, s], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = Tensor::<B, 4>::from_inner(scores.clone() + mask.clone()).require_grad();
            let y = if fused {
                softmax_last(x.clone()).unwrap_or_else(|_| panic!("fused on Autodiff<Flex>"))
            } else {
                softmax(x.clone(), 3)
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let grad = x.grad(&grads).expect("gradient");
            (
                y.into_data().to_vec::<f32>().unwrap(),
                grad.into_data().to_vec::<f32>().unwrap(),
            )
        };
        [run(true), run(false)]
    }

    fn check<B: AutodiffBackend>() {
        let [(y, g), (y_ref, g_ref)] = both::<B>();
        for (what, a, b) in [("softmax", &y, &y_ref), ("gradient", &g, &g_ref)] {
            assert_eq!(a.len(), 2 * 3 * 37 * 37);
            assert_close(what, a, b, 1e-6);
        }
        // Masked positions are exactly 0, with a 0 gradient.
        assert_eq!(y[1], 0.0);
        assert_eq!(g[1], 0.0);
    }

    #[test]
    fn fused_softmax_equals_burns_composed_one() {
        check::<Autodiff<Flex>>();
        check::<Autodiff<Flex, BalancedCheckpointing>>();
    }

    #[test]
    fn other_backends_are_left_to_burn() {
        let x = Tensor::<Autodiff<crate::TestBackend>, 2>::ones([2, 3], &Default::default());
        assert!(softmax_last(x).is_err());
        let x = Tensor::<Flex, 2>::ones([2, 3], &Default::default());
        assert!(softmax_last(x).is_err());
    }
}
