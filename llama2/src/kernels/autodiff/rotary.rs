//! The rotary embedding's rotation as one autodiff operation: the
//! [`crate::kernels::rotary`] kernel forward, and backward the inverse rotation of the
//! gradient (the rotation is orthogonal); only the position tables are saved.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_flex::Flex;

use super::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing, Strategy, flex_f32, from_tracked,
    row_major, to_tracked, values,
};
use crate::kernels::rotary as kernel;

/// `x` rotated by the tables `cos`, `sin` of its positions when `B` is a supported
/// `Autodiff<Flex>`, all are f32 and the shapes fit; `Err(x)` otherwise. The tables are
/// constants (no gradient flows to them).
///
/// # Shapes
///
/// - x, output: `[batch, seq_len, heads, head_dim]`
/// - cos, sin: `[seq_len, head_dim / 2]`
pub(in crate::kernels) fn rotate_pairs<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if !super::super::rotary_shapes_fit(&x, cos, sin) {
        return Err(x);
    }
    match Strategy::of::<B>() {
        Some(Strategy::None) => Ok(run::<B, NoCheckpointing>(x, cos, sin)),
        Some(Strategy::Balanced) => Ok(run::<B, BalancedCheckpointing>(x, cos, sin)),
        None => Err(x),
    }
}

fn run<B: Backend, C: CheckpointStrategy>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
) -> Tensor<B, 4> {
    let shape = x.shape();
    let [_, _, heads, head_dim] = x.dims();
    let table =
        |t: &Tensor<B, 2>| values(&row_major(&to_tracked::<B, C, 2>(t.clone()).primitive)).to_vec();
    let (cos, sin) = (table(cos), table(sin));
    let x = to_tracked::<B, C, 4>(x);
    let x_values = row_major(&x.primitive);
    let y = kernel::rotate_pairs(values(&x_values), &cos, &sin, heads, head_dim, false);
    let out = flex_f32(y, shape);
    let out = match Rotary
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            Tables {
                cos,
                sin,
                heads,
                head_dim,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    from_tracked::<B, C, 4>(out)
}

/// The position tables of a rotation and the layout of its rows.
#[derive(Clone, Debug)]
struct Tables {
    cos: Vec<f32>,
    sin: Vec<f32>,
    heads: usize,
    head_dim: usize,
}

#[derive(Debug)]
struct Rotary;

impl Backward<Flex, 1> for Rotary {
    type State = Tables;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let t = ops.state;
        let grad = row_major(&grads.consume::<Flex>(&ops.node));
        let shape = grad.layout().shape().clone();
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let g = kernel::rotate_pairs(values(&grad), &t.cos, &t.sin, t.heads, t.head_dim, true);
            grads.register::<Flex>(node.id, flex_f32(g, shape));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, backend::AutodiffBackend};

    use super::*;
    use crate::kernels::autodiff::assert_close;
    use crate::model::rotary::RotaryEmbeddingConfig;

    /// The rotation of `[2, 19, 3, 8]` queries from position 5 and the gradient of a weighted
    /// sum of it: fused, and composed by Burn (`RotaryEmbedding`'s generic path).
    fn both<B: AutodiffBackend>() -> [[Vec<f32>; 2]; 2] {
        let device = Default::default();
        let shape = [2, 19, 3, 8];
        let input =
            || Tensor::<B::InnerBackend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (x, w) = (input(), input());
        let rope = RotaryEmbeddingConfig::new(8, 64).init::<B>(&device);
        let run = |fused: bool| {
            let x = Tensor::<B, 4>::from_inner(x.clone()).require_grad();
            let y = if fused {
                rope.apply_seq_major(x.clone(), 5)
            } else {
                rope.apply_seq_major_composed(x.clone(), 5)
            };
            let grads = (y.clone() * Tensor::from_inner(w.clone())).sum().backward();
            let data = |t: Tensor<B::InnerBackend, 4>| t.into_data().to_vec::<f32>().unwrap();
            [
                data(y.inner()),
                data(x.grad(&grads).expect("gradient of x")),
            ]
        };
        [run(true), run(false)]
    }

    fn check<B: AutodiffBackend>() {
        let [fused, composed] = both::<B>();
        assert_eq!(fused.len(), 2);
        for ((what, a), b) in ["rotation", "grad x"].iter().zip(&fused).zip(&composed) {
            assert_eq!(a.len(), 2 * 19 * 3 * 8);
            assert_close(what, a, b, 1e-6);
        }
        // The forward pass rounds as Burn's composition does: bit for bit.
        assert_eq!(fused[0], composed[0]);
    }

    #[test]
    fn fused_rotation_equals_burns_composed_one() {
        check::<Autodiff<Flex>>();
        check::<Autodiff<Flex, BalancedCheckpointing>>();
    }

    #[test]
    fn other_backends_and_shapes_are_left_to_burn() {
        let x = Tensor::<Autodiff<crate::TestBackend>, 4>::ones([1, 2, 1, 4], &Default::default());
        let t = Tensor::<Autodiff<crate::TestBackend>, 2>::ones([2, 2], &Default::default());
        assert!(rotate_pairs(x, &t, &t).is_err());
        let x = Tensor::<Autodiff<Flex>, 4>::ones([1, 2, 1, 4], &Default::default());
        let t = Tensor::<Autodiff<Flex>, 2>::ones([3, 2], &Default::default());
        assert!(rotate_pairs(x, &t, &t).is_err());
    }
}
