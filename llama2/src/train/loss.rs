//! Token-level cross-entropy with a target mask (paper §3.1: the loss on prompt
//! tokens is zeroed out; PyTorch's `CrossEntropyLoss(ignore_index=-100)`).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

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
