//! RMSNorm with its weight as one autodiff operation: the [`crate::kernels::rms_norm`]
//! kernels forward and backward, the input, the weight and each row's inverse rms saved.

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
use crate::kernels::rms_norm as kernel;

/// `x / √(mean(x², D − 1) + eps) · weight` when `B` is a supported `Autodiff<Flex>`, both
/// are f32 and the weight is as long as `x`'s last axis; `Err((x, weight))` otherwise.
#[allow(clippy::type_complexity)]
pub(in crate::kernels) fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, 1>)> {
    if x.dtype() != DType::F32
        || weight.dtype() != DType::F32
        || x.dims()[D - 1] != weight.dims()[0]
    {
        return Err((x, weight));
    }
    match Strategy::of::<B>() {
        Some(Strategy::None) => Ok(run::<B, NoCheckpointing, D>(x, weight, eps)),
        Some(Strategy::Balanced) => Ok(run::<B, BalancedCheckpointing, D>(x, weight, eps)),
        None => Err((x, weight)),
    }
}

fn run<B: Backend, C: CheckpointStrategy, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let shape = x.shape();
    let x = to_tracked::<B, C, D>(x);
    let weight = to_tracked::<B, C, 1>(weight);
    let (x_values, w_values) = (row_major(&x.primitive), row_major(&weight.primitive));
    let (y, inv) = kernel::rms_norm(values(&x_values), values(&w_values), eps as f32);
    let out = flex_f32(y, shape);
    let out = match RmsNorm
        .prepare::<C>([x.node.clone(), weight.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x_values, w_values, inv), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    from_tracked::<B, C, D>(out)
}

#[derive(Debug)]
struct RmsNorm;

impl Backward<Flex, 2> for RmsNorm {
    /// The input and the weight (contiguous) and each row's inverse rms.
    type State = (FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, inv) = ops.state;
        let grad = row_major(&grads.consume::<Flex>(&ops.node));
        let [parent_x, parent_w] = ops.parents;
        let (grad_x, grad_w) = kernel::rms_norm_backward(
            values(&x),
            values(&weight),
            &inv,
            values(&grad),
            parent_w.is_some(),
        );
        if let Some(node) = parent_x {
            grads.register::<Flex>(node.id, flex_f32(grad_x, x.layout().shape().clone()));
        }
        if let (Some(node), Some(grad_w)) = (parent_w, grad_w) {
            grads.register::<Flex>(node.id, flex_f32(grad_w, weight.layout().shape().clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, backend::AutodiffBackend};

    use super::*;
    use crate::kernels::autodiff::assert_close;

    /// Burn's composed RMSNorm.
    fn composed<B: Backend>(x: Tensor<B, 3>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
        let rms = (x.clone().square().mean_dim(2) + eps).sqrt();
        x / rms * weight.unsqueeze()
    }

    /// The norm and the gradients of a weighted sum of it, fused and composed, with the
    /// weight trained or frozen.
    fn both<B: AutodiffBackend>(train_weight: bool) -> [Vec<Vec<f32>>; 2] {
        let device = Default::default();
        let shape = [3, 29, 200];
        let x =
            Tensor::<B::InnerBackend, 3>::random(shape, Distribution::Normal(0.0, 2.0), &device);
        let w =
            Tensor::<B::InnerBackend, 1>::random([200], Distribution::Normal(1.0, 0.3), &device);
        let g =
            Tensor::<B::InnerBackend, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = Tensor::<B, 3>::from_inner(x.clone()).require_grad();
            let w = Tensor::<B, 1>::from_inner(w.clone());
            let w = if train_weight { w.require_grad() } else { w };
            let y = if fused {
                rms_norm(x.clone(), w.clone(), 1e-5)
                    .unwrap_or_else(|_| panic!("fused on Autodiff<Flex>"))
            } else {
                composed(x.clone(), w.clone(), 1e-5)
            };
            let grads = (y.clone() * Tensor::from_inner(g.clone())).sum().backward();
            let mut out = vec![
                y.inner().into_data().to_vec::<f32>().unwrap(),
                x.grad(&grads)
                    .expect("gradient of x")
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap(),
            ];
            match w.grad(&grads) {
                Some(gw) => out.push(gw.into_data().to_vec::<f32>().unwrap()),
                None => assert!(!train_weight, "the trained weight has a gradient"),
            }
            out
        };
        [run(true), run(false)]
    }

    fn check<B: AutodiffBackend>() {
        for train_weight in [true, false] {
            let [fused, composed] = both::<B>(train_weight);
            assert_eq!(fused.len(), if train_weight { 3 } else { 2 });
            assert_eq!(fused.len(), composed.len());
            for ((what, a), b) in ["norm", "grad x", "grad weight"]
                .iter()
                .zip(&fused)
                .zip(&composed)
            {
                assert_close(what, a, b, 1e-5);
            }
        }
    }

    #[test]
    fn fused_rms_norm_equals_burns_composed_one() {
        check::<Autodiff<Flex>>();
        check::<Autodiff<Flex, BalancedCheckpointing>>();
    }

    #[test]
    fn other_backends_and_shapes_are_left_to_burn() {
        let x = Tensor::<Autodiff<crate::TestBackend>, 2>::ones([2, 3], &Default::default());
        let w = Tensor::<Autodiff<crate::TestBackend>, 1>::ones([3], &Default::default());
        assert!(rms_norm(x, w, 1e-5).is_err());
        let x = Tensor::<Autodiff<Flex>, 2>::ones([2, 3], &Default::default());
        let w = Tensor::<Autodiff<Flex>, 1>::ones([4], &Default::default());
        assert!(rms_norm(x, w, 1e-5).is_err());
    }
}
