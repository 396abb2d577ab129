//! burn-train's [`TrainStep`] and [`InferenceStep`] for [`Llama`]: next-token
//! cross-entropy over a [`CausalLmBatch`] (paper §2.2 / §3.1 objective), and
//! the [`Trainable`] objective the engine trains it with.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Transaction;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};

use super::data::{CausalLmBatch, TokenWindow};
use super::error::TrainError;
use super::loss::{masked_nll_sum, masked_nll_sum_train};
use super::objective::{StepOutput, Trainable, load_checked, read_record, write_record};
use crate::lora::{LoraAdapter, LoraConfig};
use crate::model::Llama;
use burn::tensor::{Int, Tensor};

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
        self.causal_lm_loss_with(batch, masked_nll_sum)
    }

    fn causal_lm_loss_with(
        &self,
        batch: CausalLmBatch<B>,
        nll_sum: impl FnOnce(Tensor<B, 3>, Tensor<B, 2, Int>, Tensor<B, 2>) -> Tensor<B, 1>,
    ) -> CausalLmOutput<B> {
        let [b, s] = batch.inputs.dims();
        let logits = self.forward(batch.inputs);
        let loss = nll_sum(logits, batch.targets, batch.mask).div_scalar(batch.loss_denominator);
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
        let output = self.causal_lm_loss_with(batch, masked_nll_sum_train);
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

impl StepOutput for CausalLmOutputSync {
    fn loss(&self) -> f64 {
        self.loss
    }

    fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    fn merge(&mut self, other: Self) {
        self.loss += other.loss;
        self.n_targets += other.n_targets;
        self.n_inputs += other.n_inputs;
    }
}

/// Causal language modelling on token windows: pretraining (every next token
/// a target) and SFT (answer tokens only). The loss averages over the
/// unmasked targets of the step. With LoRA adapters attached, checkpoints
/// hold only the adapters (`adapters.mpk`): the frozen base is not written
/// again at every step.
impl<B: AutodiffBackend> Trainable<B> for Llama<B> {
    type Item = TokenWindow;

    fn item_weight(item: &TokenWindow) -> usize {
        item.n_targets()
    }

    fn train_batch(
        &self,
        items: &[TokenWindow],
        loss_denominator: f64,
        device: &B::Device,
    ) -> CausalLmBatch<B> {
        CausalLmBatch::from_windows(items, Some(loss_denominator), device)
    }

    fn valid_batch(
        &self,
        items: &[TokenWindow],
        loss_denominator: f64,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> CausalLmBatch<B::InnerBackend> {
        CausalLmBatch::from_windows(items, Some(loss_denominator), device)
    }

    fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    fn save_params(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        match self.lora {
            None => write_record::<B, _>(self.clone().into_record(), dir.join("model")),
            Some(_) => write_record::<B, _>(adapters(self).into_record(), dir.join("adapters")),
        }
    }

    /// A checkpoint of a LoRA run holds only the adapters: `self` must then
    /// carry the base weights and adapters of the same [`LoraConfig`] (their
    /// values are replaced).
    fn load_params(self, dir: &Path, device: &B::Device) -> Result<Self, TrainError> {
        if self.lora.is_none() {
            let path = dir.join("model");
            let record = read_record::<B, _>(&path, device)?;
            return load_checked(self, record, &path);
        }
        let path = dir.join("adapters");
        let record = read_record::<B, _>(&path, device)?;
        let loaded = load_checked(adapters(&self), record, &path)?;
        let mut model = self;
        for (site, adapter) in model.lora_sites().into_iter().zip(loaded) {
            model.set_lora_adapter(site, Some(adapter));
        }
        Ok(model)
    }
}

/// The attached adapters, in [`Llama::lora_sites`] order.
fn adapters<B: Backend>(model: &Llama<B>) -> Vec<LoraAdapter<B>> {
    model
        .lora_sites()
        .into_iter()
        .filter_map(|site| model.lora_adapter(site).cloned())
        .collect()
}
