//! What the training engine ([`super::Trainer`]) needs from a model to train
//! it: burn-train's [`TrainStep`] / [`InferenceStep`] on batches the model
//! builds from its own items, a loss that sums to the step's mean under
//! gradient accumulation, and how its checkpoints hold its parameters.
//!
//! Causal-LM pretraining and masked SFT ([`Llama`](crate::Llama) on
//! [`TokenWindow`](super::TokenWindow)s) implement it here; the reward model
//! (pairwise ranking loss on preference pairs) implements it in the
//! `llama2-reward` crate. The engine has no objective-specific code.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Record, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::{InferenceStep, ItemLazy, TrainStep};

use super::error::TrainError;
use crate::lora::LoraConfig;

/// The recorder of training checkpoints (full precision).
pub type CheckpointRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// The host-side result of one (micro-)batch, as read back by
/// [`ItemLazy::sync`].
pub trait StepOutput: Clone + Send + 'static {
    /// The batch's share of the step loss: its summed loss divided by the
    /// loss denominator it was built with (summing the shares of a step's
    /// micro-batches gives the step's mean loss).
    fn loss(&self) -> f64;
    /// Input tokens fed to the model (for throughput).
    fn n_inputs(&self) -> usize;
    /// Adds another micro-batch's output of the same step (or of the same
    /// validation pass) to this one.
    fn merge(&mut self, other: Self);
    /// Objective-specific metrics of the merged outputs, named as in
    /// [`Trainable::METRICS`] (e.g. a reward model's pair accuracy). The
    /// default has none.
    fn metrics(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// A model the engine can train: forward + backward through burn-train's
/// [`TrainStep`], validation through the inner module's [`InferenceStep`],
/// both giving outputs that sync to a [`StepOutput`].
pub trait Trainable<B: AutodiffBackend>:
    AutodiffModule<B, InnerModule: InferenceStep<Output: ItemLazy<ItemSync: StepOutput>>>
    + TrainStep<Output: ItemLazy<ItemSync: StepOutput>>
    + Clone
    + Send
    + 'static
{
    /// One training example.
    type Item: Clone + Send + Sync;

    /// Names of the objective's own metrics ([`StepOutput::metrics`]); they
    /// are registered on the dashboard and logged beside the loss.
    const METRICS: &'static [&'static str] = &[];
    /// Whether `exp(loss)` is meaningful (token cross-entropy), so that the
    /// perplexity is shown.
    const PERPLEXITY: bool = true;

    /// What the loss averages over in one item: unmasked target tokens for a
    /// language model, 1 for a preference pair. The loss of a step is the
    /// sum over its items divided by the sum of their weights.
    fn item_weight(item: &Self::Item) -> usize;

    /// A training micro-batch of `items`, whose loss is its summed loss
    /// divided by `loss_denominator` (the weight of the whole step). The
    /// model's own objective settings (e.g. a reward model's margins) may
    /// shape the batch.
    fn train_batch(
        &self,
        items: &[Self::Item],
        loss_denominator: f64,
        device: &B::Device,
    ) -> <Self as TrainStep>::Input;

    /// A validation batch of `items` on the inner backend.
    fn valid_batch(
        &self,
        items: &[Self::Item],
        loss_denominator: f64,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> <Self::InnerModule as InferenceStep>::Input;

    /// The LoRA adapters trained, if any: the checkpoints then hold only the
    /// trainable parameters.
    fn lora(&self) -> Option<&LoraConfig> {
        None
    }

    /// Writes the parameters a checkpoint keeps into `dir` (the whole module
    /// by default) and returns the file written.
    fn save_params(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        write_record::<B, _>(self.clone().into_record(), dir.join("model"))
    }

    /// Reads the parameters [`Trainable::save_params`] wrote into `self`.
    fn load_params(self, dir: &Path, device: &B::Device) -> Result<Self, TrainError> {
        let path = dir.join("model");
        let record = read_record::<B, _>(&path, device)?;
        load_checked(self, record, &path)
    }
}

/// Writes `record` to `path` (the recorder adds its extension) and returns
/// `path`.
pub fn write_record<B: Backend, R: Record<B>>(
    record: R,
    path: PathBuf,
) -> Result<PathBuf, TrainError> {
    CheckpointRecorder::new()
        .record(record, path.clone())
        .map(|()| path.clone())
        .map_err(|source| TrainError::Record { path, source })
}

/// Reads the record [`write_record`] wrote to `path`.
pub fn read_record<B: Backend, R: Record<B>>(
    path: &Path,
    device: &B::Device,
) -> Result<R, TrainError> {
    CheckpointRecorder::new()
        .load(path.to_path_buf(), device)
        .map_err(|source| TrainError::Record {
            path: path.to_path_buf(),
            source,
        })
}

/// The shapes of a module's float parameters, in visiting order.
pub fn param_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
        ) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    shapes.0
}

/// Loads `record` into `module`, refusing a record of another architecture
/// (parameters of other shapes) with [`TrainError::CheckpointMismatch`]
/// instead of a panic.
pub fn load_checked<B: Backend, M: Module<B>>(
    module: M,
    record: M::Record,
    path: &Path,
) -> Result<M, TrainError> {
    let expected = param_shapes::<B, M>(&module);
    let mismatch = |found: Option<Vec<Vec<usize>>>| {
        let detail = match found {
            Some(found) => expected
                .iter()
                .zip(&found)
                .position(|(a, b)| a != b)
                .map(|i| {
                    format!(
                        "parameter {i} has shape {:?}, the model's {:?}",
                        found[i], expected[i]
                    )
                })
                .unwrap_or_else(|| {
                    format!(
                        "{} parameters, the model has {}",
                        found.len(),
                        expected.len()
                    )
                }),
            None => "its parameters do not fit the model".to_string(),
        };
        TrainError::CheckpointMismatch {
            path: path.to_path_buf(),
            detail,
        }
    };
    let loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| module.load_record(record)));
    let loaded = loaded.map_err(|_| mismatch(None))?;
    let found = param_shapes::<B, M>(&loaded);
    if found != expected {
        return Err(mismatch(Some(found)));
    }
    Ok(loaded)
}

/// The host-side output of a training micro-batch of `M`.
pub type TrainSync<M> = <<M as TrainStep>::Output as ItemLazy>::ItemSync;

/// The host-side output of a validation batch of `M`.
pub type ValidSync<B, M> =
    <<<M as AutodiffModule<B>>::InnerModule as InferenceStep>::Output as ItemLazy>::ItemSync;
