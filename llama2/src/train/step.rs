//! burn-train's [`TrainStep`] and [`InferenceStep`] for [`Llama`]: next-token
//! cross-entropy over a [`CausalLmBatch`] (paper §2.2 / §3.1 objective).

use burn::tensor::Transaction;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};

use super::data::CausalLmBatch;
use super::loss::masked_nll_sum;
use crate::model::Llama;
use burn::tensor::Tensor;

/// The loss of one (micro-)batch.
#[derive(Clone, Debug)]
pub struct CausalLmOutput<B: Backend> {
    /// Summed token cross-entropy divided by the batch's `loss_denominator`, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Unmasked targets in the batch.
    pub n_targets: usize,
    /// Input tokens in the batch (`batch × seq_len`).
    pub n_inputs: usize,
}

/// [`CausalLmOutput`] read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct CausalLmOutputSync {
    /// The loss value.
    pub loss: f64,
    /// Unmasked targets in the batch.
    pub n_targets: usize,
    /// Input tokens in the batch.
    pub n_inputs: usize,
}

impl<B: Backend> ItemLazy for CausalLmOutput<B> {
    type ItemSync = CausalLmOutputSync;

    fn sync(self) -> Self::ItemSync {
        let [loss] = Transaction::default()
            .register(self.loss)
            .execute()
            .try_into()
            .expect("one tensor");
        CausalLmOutputSync {
            loss: loss
                .convert::<f64>()
                .to_vec::<f64>()
                .expect("f64 data")
                .first()
                .copied()
                .unwrap_or(f64::NAN),
            n_targets: self.n_targets,
            n_inputs: self.n_inputs,
        }
    }
}

impl<B: Backend> Llama<B> {
    /// The batch loss: summed masked cross-entropy / `loss_denominator`.
    pub fn causal_lm_loss(&self, batch: CausalLmBatch<B>) -> CausalLmOutput<B> {
        let [b, s] = batch.inputs.dims();
        let logits = self.forward(batch.inputs);
        let loss =
            masked_nll_sum(logits, batch.targets, batch.mask).div_scalar(batch.loss_denominator);
        CausalLmOutput {
            loss,
            n_targets: batch.n_targets,
            n_inputs: b * s,
        }
    }
}

impl<B: AutodiffBackend> TrainStep for Llama<B> {
    type Input = CausalLmBatch<B>;
    type Output = CausalLmOutput<B>;

    fn step(&self, batch: CausalLmBatch<B>) -> TrainOutput<CausalLmOutput<B>> {
        let output = self.causal_lm_loss(batch);
        let grads = output.loss.backward();
        TrainOutput::new(self, grads, output)
    }
}

impl<B: Backend> InferenceStep for Llama<B> {
    type Input = CausalLmBatch<B>;
    type Output = CausalLmOutput<B>;

    fn step(&self, batch: CausalLmBatch<B>) -> CausalLmOutput<B> {
        self.causal_lm_loss(batch)
    }
}
