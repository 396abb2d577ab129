//! `silu(a) ⊙ b` as one autodiff operation: the [`crate::kernels::swiglu`] kernels
//! forward and backward, the two inputs saved.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use burn_flex::{Flex, FlexTensor};

use super::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing, Strategy, flex_f32, from_tracked,
    row_major, to_tracked, values,
};
use crate::kernels::swiglu as kernel;

/// `silu(a) ⊙ b` when `B` is a supported `Autodiff<Flex>` and `a`, `b` are f32 tensors
/// of one shape; `Err((a, b))` otherwise.
#[allow(clippy::type_complexity)]
pub(in crate::kernels) fn swiglu<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 || a.dims() != b.dims() {
        return Err((a, b));
    }
    match Strategy::of::<B>() {
        Some(Strategy::None) => Ok(run::<B, NoCheckpointing, D>(a, b)),
        Some(Strategy::Balanced) => Ok(run::<B, BalancedCheckpointing, D>(a, b)),
        None => Err((a, b)),
    }
}

fn run<B: Backend, C: CheckpointStrategy, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Tensor<B, D> {
    let shape = a.shape();
    let (a, b) = (to_tracked::<B, C, D>(a), to_tracked::<B, C, D>(b));
    let (a_values, b_values) = (row_major(&a.primitive), row_major(&b.primitive));
    let out = flex_f32(kernel::swiglu(values(&a_values), values(&b_values)), shape);
    let out = match SwiGlu
        .prepare::<C>([a.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((a_values, b_values), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    from_tracked::<B, C, D>(out)
}

#[derive(Debug)]
struct SwiGlu;

impl Backward<Flex, 2> for SwiGlu {
    /// The inputs `a` and `b`, contiguous.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (a, b) = ops.state;
        let grad = row_major(&grads.consume::<Flex>(&ops.node));
        let shape = a.layout().shape().clone();
        let (grad_a, grad_b) = kernel::swiglu_backward(values(&a), values(&b), values(&grad));
        let [parent_a, parent_b] = ops.parents;
        if let Some(node) = parent_a {
            grads.register::<Flex>(node.id, flex_f32(grad_a, shape.clone()));
        }
        if let Some(node) = parent_b {
            grads.register::<Flex>(node.id, flex_f32(grad_b, shape));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::tensor::activation::silu;
    use burn::tensor::{Distribution, backend::AutodiffBackend};

    use super::*;
    use crate::kernels::autodiff::assert_close;

    /// The gate and the gradients of a weighted sum of it, fused and composed by Burn.
    fn both<B: AutodiffBackend>() -> [[Vec<f32>; 3]; 2] {
        let device = Default::default();
        let shape = [2, 37, 301];
        let input = |std: f64| {
            Tensor::<B::InnerBackend, 3>::random(shape, Distribution::Normal(0.0, std), &device)
        };
        let (a, b, w) = (input(3.0), input(1.0), input(1.0));
        let run = |fused: bool| {
            let a = Tensor::<B, 3>::from_inner(a.clone()).require_grad();
            let b = Tensor::<B, 3>::from_inner(b.clone()).require_grad();
            let y = if fused {
                swiglu(a.clone(), b.clone()).unwrap_or_else(|_| panic!("fused on Autodiff<Flex>"))
            } else {
                silu(a.clone()) * b.clone()
            };
            let grads = (y.clone() * Tensor::from_inner(w.clone())).sum().backward();
            let data = |t: Tensor<B::InnerBackend, 3>| t.into_data().to_vec::<f32>().unwrap();
            [
                data(y.inner()),
                data(a.grad(&grads).expect("gradient of a")),
                data(b.grad(&grads).expect("gradient of b")),
            ]
        };
        [run(true), run(false)]
    }

    fn check<B: AutodiffBackend>() {
        let [fused, composed] = both::<B>();
        for ((what, a), b) in ["gate", "grad a", "grad b"]
            .iter()
            .zip(&fused)
            .zip(&composed)
        {
            assert_eq!(a.len(), 2 * 37 * 301);
            assert_close(what, a, b, 1e-6);
        }
    }

    #[test]
    fn fused_swiglu_equals_burns_composed_one() {
        check::<Autodiff<Flex>>();
        check::<Autodiff<Flex, BalancedCheckpointing>>();
    }

    #[test]
    fn other_backends_and_shapes_are_left_to_burn() {
        let x = Tensor::<Autodiff<crate::TestBackend>, 2>::ones([2, 3], &Default::default());
        assert!(swiglu(x.clone(), x).is_err());
        let x = Tensor::<Autodiff<Flex>, 2>::ones([2, 3], &Default::default());
        let y = Tensor::<Autodiff<Flex>, 2>::ones([1, 3], &Default::default());
        assert!(swiglu(x, y).is_err());
    }
}
