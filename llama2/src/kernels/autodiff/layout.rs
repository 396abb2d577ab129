//! A tensor brought into row-major order as one autodiff operation, its gradient too:
//! both copies (when the layouts are strided views) on all threads through
//! [`crate::kernels::layout`], where Flex would make them on one thread inside the
//! reshape that follows.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use burn_flex::Flex;

use super::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing, Strategy, from_tracked, row_major,
    to_tracked,
};

/// `x` in row-major order when `B` is a supported `Autodiff<Flex>` and `x` is f32 (its
/// gradient in row-major order as well); `Err(x)` otherwise.
///
/// # Shapes
///
/// - x, output: `[...]`
pub(in crate::kernels) fn row_major_tracked<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    match Strategy::of::<B>() {
        Some(Strategy::None) => Ok(run::<B, NoCheckpointing, D>(x)),
        Some(Strategy::Balanced) => Ok(run::<B, BalancedCheckpointing, D>(x)),
        None => Err(x),
    }
}

fn run<B: Backend, C: CheckpointStrategy, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let x = to_tracked::<B, C, D>(x);
    let out = row_major(&x.primitive);
    let out = RowMajor
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateless(out);
    from_tracked::<B, C, D>(out)
}

#[derive(Debug)]
struct RowMajor;

impl Backward<Flex, 1> for RowMajor {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = row_major(&grads.consume::<Flex>(&ops.node));
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, backend::AutodiffBackend};

    use super::*;

    /// Heads `[2, 3, 5, 4]` moved behind positions and flattened, times a weight, summed:
    /// the output and the gradient with the row-major operation and without it.
    fn both<B: AutodiffBackend>() -> [[Vec<f32>; 2]; 2] {
        let device = Default::default();
        let x = Tensor::<B::InnerBackend, 4>::random([2, 3, 5, 4], Distribution::Default, &device);
        let w = Tensor::<B::InnerBackend, 3>::random([2, 5, 12], Distribution::Default, &device);
        let run = |ours: bool| {
            let x = Tensor::<B, 4>::from_inner(x.clone()).require_grad();
            let moved = x.clone().swap_dims(1, 2);
            let moved = if ours {
                row_major_tracked(moved).expect("served")
            } else {
                moved
            };
            let y = moved.reshape([2, 5, 12]);
            let grads = (y.clone() * Tensor::from_inner(w.clone())).sum().backward();
            let grad = x.grad(&grads).expect("gradient of x").swap_dims(1, 2);
            let data = |t: Tensor<B::InnerBackend, 3>| t.into_data().to_vec::<f32>().unwrap();
            [data(y.inner()), data(grad.reshape([2, 5, 12]))]
        };
        [run(true), run(false)]
    }

    #[test]
    fn values_and_gradients_are_unchanged() {
        for [ours, burns] in [
            both::<Autodiff<Flex>>(),
            both::<Autodiff<Flex, BalancedCheckpointing>>(),
        ] {
            assert_eq!(ours[0].len(), 120);
            assert_eq!(ours, burns);
        }
    }

    #[test]
    fn other_backends_are_left_to_burn() {
        let x = Tensor::<Autodiff<crate::TestBackend>, 2>::ones([2, 3], &Default::default());
        assert!(row_major_tracked(x).is_err());
    }
}
