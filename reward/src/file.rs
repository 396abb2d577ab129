//! Reading and writing reward models: reward records and transformers
//! `LlamaForSequenceClassification` directories, through [`llama2_import::seq_cls`].

use std::path::Path;

use burn::tensor::backend::Backend;
use llama2_import::{ImportError, RewardMeta, SeqClsCheckpoint, StorageDtype};

use crate::model::RewardModel;

impl<B: Backend> RewardModel<B> {
    /// Loads a reward record file or a `LlamaForSequenceClassification` directory, with its
    /// metadata (padding id, normalisation statistics).
    pub fn load(
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<(Self, RewardMeta), ImportError> {
        let file = SeqClsCheckpoint::open(path)?;
        let meta = file.meta.clone();
        let (trunk, score) = file.into_parts::<B>(device)?;
        Ok((Self::from_parts(trunk, score), meta))
    }

    /// The model's parameters for writing ([`SeqClsCheckpoint::save_record`],
    /// [`SeqClsCheckpoint::save_hf`]).
    pub fn to_checkpoint(&self, meta: RewardMeta) -> Result<SeqClsCheckpoint, ImportError> {
        SeqClsCheckpoint::from_parts(&self.trunk, &self.score, meta)
    }

    /// Writes a reward record in `dtype`.
    pub fn save(
        &self,
        path: impl AsRef<Path>,
        meta: RewardMeta,
        dtype: StorageDtype,
    ) -> Result<(), ImportError> {
        self.to_checkpoint(meta)?.save_record(path, dtype)
    }

    /// Writes a transformers `LlamaForSequenceClassification` directory in `dtype`.
    pub fn export_hf(
        &self,
        dir: impl AsRef<Path>,
        meta: RewardMeta,
        dtype: StorageDtype,
    ) -> Result<(), ImportError> {
        self.to_checkpoint(meta)?.save_hf(dir, dtype)
    }
}
