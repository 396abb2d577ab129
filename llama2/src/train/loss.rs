//! Token-level cross-entropy with a target mask (paper §3.1: the loss on prompt
//! tokens is zeroed out; PyTorch's `CrossEntropyLoss(ignore_index=-100)`).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};

use super::fused_loss::masked_nll_rows;

/// Sum over unmasked positions of `-log softmax(logits)[target]`.
///
/// # Shapes
///
/// - logits: `[batch, seq_len, vocab]`
/// - targets, mask: `[batch, seq_len]` (mask 1.0 = counted, 0.0 = ignored)
/// - output: `[1]`
pub fn masked_nll_sum<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let log_probs = log_softmax(logits, 2);
    let picked: Tensor<B, 2> = log_probs
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .squeeze_dim(2);
    (picked.neg() * mask).sum()
}

/// [`masked_nll_sum`] for training: on Burn's `Autodiff` backend one fused
/// operation ([`super::fused_loss`]) that keeps only the logits and a value per
/// row for the backward pass; on other autodiff backends the composed loss.
///
/// # Shapes
///
/// - logits: `[batch, seq_len, vocab]`
/// - targets, mask: `[batch, seq_len]` (mask 1.0 = counted, 0.0 = ignored)
/// - output: `[1]`
pub fn masked_nll_sum_train<B: AutodiffBackend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [b, s, v] = logits.dims();
    let rows = b * s;
    match masked_nll_rows(
        logits.clone().reshape([rows, v]),
        targets.clone().reshape([rows, 1]),
        mask.clone().reshape([rows, 1]),
    ) {
        Some(per_row) => per_row.sum(),
        None => masked_nll_sum(logits, targets, mask),
    }
}
