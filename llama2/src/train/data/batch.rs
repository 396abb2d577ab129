//! A batch of windows as tensors.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::window::{IGNORE_INDEX, TokenWindow};

/// Inputs, targets and loss mask of a causal language-modelling batch.
#[derive(Clone, Debug)]
pub struct CausalLmBatch<B: Backend> {
    /// Input token ids, `[batch, seq_len]`.
    pub inputs: Tensor<B, 2, Int>,
    /// Target ids, `[batch, seq_len]`; masked positions hold 0 (any valid id).
    pub targets: Tensor<B, 2, Int>,
    /// 1.0 where the target counts, 0.0 where it is ignored, `[batch, seq_len]`.
    pub mask: Tensor<B, 2>,
    /// Number of unmasked targets in this batch.
    pub n_targets: usize,
    /// The loss is the summed token cross-entropy divided by this number: the
    /// unmasked targets of the whole optimizer step, so that gradient
    /// accumulation over micro-batches gives the gradient of the mean over the
    /// full (token) batch.
    pub loss_denominator: f64,
}

impl<B: Backend> CausalLmBatch<B> {
    /// Stacks windows of equal length; `loss_denominator` defaults to this
    /// batch's own target count (a plain mean).
    pub fn from_windows(
        windows: &[TokenWindow],
        loss_denominator: Option<f64>,
        device: &B::Device,
    ) -> Self {
        assert!(!windows.is_empty(), "empty batch");
        let b = windows.len();
        let s = windows[0].len();
        let mut inputs = Vec::with_capacity(b * s);
        let mut targets = Vec::with_capacity(b * s);
        let mut mask = Vec::with_capacity(b * s);
        for w in windows {
            assert_eq!(w.len(), s, "windows of a batch must have the same length");
            inputs.extend(w.inputs.iter().map(|&t| i64::from(t)));
            for &t in &w.targets {
                let on = t != IGNORE_INDEX;
                targets.push(if on { t } else { 0 });
                mask.push(if on { 1.0f32 } else { 0.0 });
            }
        }
        let n_targets = mask.iter().filter(|&&m| m > 0.0).count();
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, [b, s]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, s]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, s]), device),
            n_targets,
            loss_denominator: loss_denominator.unwrap_or(n_targets.max(1) as f64),
        }
    }
}
