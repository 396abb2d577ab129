//! Masked token cross-entropy as one autodiff operation on Burn's `Autodiff`
//! backend: the forward pass computes each row's log-sum-exp and the target's
//! logit, and the backward pass writes `softmax(logits) − onehot(target)`
//! straight into the logits' gradient.
//!
//! Composed from Burn's operations, the same loss keeps the log-softmax of
//! the whole `[tokens, vocab]` logits for its backward pass and runs about a
//! dozen passes over tensors of that size (subtract, exp, sum, log, gather,
//! their gradients, a scatter into zeros); this operation keeps only the
//! logits and one value per row, and runs four such passes. The result is the
//! same function: losses equal to f32 rounding, gradients
//! `(exp(x − lse) − [j = t]) · mask · g` as PyTorch's `cross_entropy` gives.

use std::any::TypeId;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::backend::{AutodiffBackend, Backend, BackendTypes};
use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::kernels::{as_type, row_logsumexp, softmax_minus_onehot};

type FloatTensor<B> = <B as BackendTypes>::FloatTensorPrimitive;
type IntTensor<B> = <B as BackendTypes>::IntTensorPrimitive;
/// Burn's autodiff tensor over `I` (the same type for every checkpointing strategy).
type AutodiffTensor<I> = FloatTensor<Autodiff<I>>;

/// Per-row `mask · (logsumexp(logits) − logits[target])` when `B` is Burn's
/// `Autodiff` backend (without checkpointing or with
/// `BalancedCheckpointing`), as one operation; `None` on any other autodiff
/// backend.
///
/// # Shapes
///
/// - logits: `[rows, vocab]`
/// - targets: `[rows, 1]`
/// - mask: `[rows, 1]` (1.0 = counted, 0.0 = ignored; not differentiated)
/// - output: `[rows, 1]`
pub fn masked_nll_rows<B: AutodiffBackend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    type Plain<I> = Autodiff<I, NoCheckpointing>;
    type Balanced<I> = Autodiff<I, BalancedCheckpointing>;
    let id = TypeId::of::<B>();
    if id == TypeId::of::<Plain<B::InnerBackend>>() {
        Some(run::<B, B::InnerBackend, NoCheckpointing>(
            logits, targets, mask,
        ))
    } else if id == TypeId::of::<Balanced<B::InnerBackend>>() {
        Some(run::<B, B::InnerBackend, BalancedCheckpointing>(
            logits, targets, mask,
        ))
    } else {
        None
    }
}

/// `value` as type `T`, which it is (checked by the caller through `TypeId`).
fn same<T: 'static>(value: impl std::any::Any) -> T {
    as_type(value).expect("the backend's tensor type was checked")
}

fn run<B: AutodiffBackend, I: Backend, C: CheckpointStrategy>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let logits: AutodiffTensor<I> = same(logits.into_primitive().tensor());
    let targets: IntTensor<I> = same(targets.into_primitive());
    let mask: AutodiffTensor<I> = same(mask.into_primitive().tensor());
    let out = forward::<I, C>(logits, targets, mask.primitive);
    Tensor::from_primitive(TensorPrimitive::Float(same::<FloatTensor<B>>(out)))
}

fn float<I: Backend, const D: usize>(p: FloatTensor<I>) -> Tensor<I, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

#[derive(Debug)]
struct MaskedNll;

impl<I: Backend> Backward<I, 1> for MaskedNll {
    /// Logits, their row log-sum-exp, targets, mask.
    type State = (FloatTensor<I>, FloatTensor<I>, IntTensor<I>, FloatTensor<I>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, lse, targets, mask) = ops.state;
        unary::<I, _>(ops.parents, ops.node, grads, |grad| {
            let weights = float::<I, 2>(grad) * float::<I, 2>(mask);
            softmax_minus_onehot(
                float::<I, 2>(logits),
                float::<I, 2>(lse),
                Tensor::<I, 2, Int>::from_primitive(targets),
                weights,
            )
            .into_primitive()
            .tensor()
        });
    }
}

fn forward<I: Backend, C: CheckpointStrategy>(
    logits: AutodiffTensor<I>,
    targets: IntTensor<I>,
    mask: FloatTensor<I>,
) -> AutodiffTensor<I> {
    let x = float::<I, 2>(logits.primitive.clone());
    let lse = row_logsumexp(x.clone());
    let picked = x.gather(1, Tensor::from_primitive(targets.clone()));
    let rows = ((lse.clone() - picked) * float::<I, 2>(mask.clone()))
        .into_primitive()
        .tensor();
    match MaskedNll
        .prepare::<C>([logits.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            (
                logits.primitive,
                lse.into_primitive().tensor(),
                targets,
                mask,
            ),
            rows,
        ),
        OpsKind::UnTracked(prep) => prep.finish(rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::train::loss::masked_nll_sum;
    use burn::tensor::{Distribution, TensorData};

    const ROWS: usize = 7;
    const VOCAB: usize = 13;

    /// The loss `Σ w_r · rows_r` (random row weights `w`, so that every row's
    /// gradient is scaled differently) and the logits' gradient, fused and composed.
    fn both<B: AutodiffBackend>(device: &B::Device) -> [(Vec<f32>, Vec<f32>); 2] {
        let logits = Tensor::<B::InnerBackend, 2>::random(
            [ROWS, VOCAB],
            Distribution::Normal(0.0, 3.0),
            device,
        );
        let targets: Vec<i64> = (0..ROWS).map(|r| ((r * 5 + 3) % VOCAB) as i64).collect();
        let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [ROWS, 1]), device);
        let mask: Vec<f32> = (0..ROWS)
            .map(|r| if r % 3 == 1 { 0.0 } else { 1.0 })
            .collect();
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [ROWS, 1]), device);
        let weights = Tensor::<B, 2>::random([ROWS, 1], Distribution::Uniform(0.5, 2.0), device);
        let run = |fused: bool| {
            let x = Tensor::<B, 2>::from_inner(logits.clone()).require_grad();
            let rows = if fused {
                masked_nll_rows(x.clone(), targets.clone(), mask.clone()).expect("Burn's Autodiff")
            } else {
                // `masked_nll_sum` row by row: a batch of one-token sequences.
                let per_row: Vec<Tensor<B, 1>> = (0..ROWS)
                    .map(|r| {
                        masked_nll_sum(
                            x.clone().slice(r..r + 1).reshape([1, 1, VOCAB]),
                            targets.clone().slice(r..r + 1),
                            mask.clone().slice(r..r + 1),
                        )
                    })
                    .collect();
                Tensor::cat(per_row, 0).reshape([ROWS, 1])
            };
            let loss = (rows.clone() * weights.clone()).sum();
            let grads = loss.backward();
            let grad = x.grad(&grads).expect("the logits' gradient");
            (
                rows.into_data().to_vec::<f32>().unwrap(),
                grad.into_data().to_vec::<f32>().unwrap(),
            )
        };
        [run(true), run(false)]
    }

    fn assert_close(fused: &[f32], composed: &[f32], what: &str) {
        assert_eq!(fused.len(), composed.len(), "{what}: lengths");
        assert!(!fused.is_empty());
        for (i, (a, b)) in fused.iter().zip(composed).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    fn check<B: AutodiffBackend>(device: &B::Device) {
        let [(rows, grad), (rows_ref, grad_ref)] = both::<B>(device);
        assert_eq!(rows.len(), ROWS);
        assert_eq!(grad.len(), ROWS * VOCAB);
        assert_close(&rows, &rows_ref, "rows");
        assert_close(&grad, &grad_ref, "gradient");
        // Masked rows have no loss and no gradient; the others' gradients sum to 0.
        for r in 0..ROWS {
            let sum: f32 = grad[r * VOCAB..(r + 1) * VOCAB].iter().sum();
            assert!(sum.abs() < 1e-5, "row {r} gradient sums to {sum}");
            if r % 3 == 1 {
                assert_eq!(rows[r], 0.0);
                assert!(grad[r * VOCAB..(r + 1) * VOCAB].iter().all(|&g| g == 0.0));
            } else {
                assert!(rows[r] > 0.0);
            }
        }
    }

    #[test]
    fn fused_equals_composed_loss_and_gradient() {
        check::<Autodiff<TestBackend>>(&Default::default());
        check::<Autodiff<TestBackend, BalancedCheckpointing>>(&Default::default());
    }

    #[cfg(feature = "flex")]
    #[test]
    fn fused_equals_composed_on_flex() {
        check::<Autodiff<burn_flex::Flex>>(&Default::default());
    }
}
