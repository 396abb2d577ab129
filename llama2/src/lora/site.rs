//! Where adapters sit in a [`Llama`]: one optional adapter next to each projection of each
//! block, under its own module path so that the base parameters keep Meta's names.

use burn::nn::Linear;
use burn::tensor::backend::Backend;

use super::adapter::LoraAdapter;
use super::config::LoraTarget;
use crate::model::{Llama, TransformerBlock};

/// A block and one of its projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoraSite {
    /// Block index.
    pub layer: usize,
    /// The projection.
    pub target: LoraTarget,
}

impl LoraSite {
    /// Module path of the frozen projection, `layers.{i}.attention.wq`.
    pub fn projection_path(&self) -> String {
        format!(
            "layers.{}.{}.{}",
            self.layer,
            self.target.module(),
            self.target.name()
        )
    }

    /// Module path of the adapter, `layers.{i}.attention.wq_lora`; its tensors are
    /// `{path}.lora_a.weight` and `{path}.lora_b.weight`.
    pub fn adapter_path(&self) -> String {
        format!("{}_lora", self.projection_path())
    }
}

/// The projection `target` of `block` and its adapter slot.
pub(crate) fn slot<B: Backend>(
    block: &TransformerBlock<B>,
    target: LoraTarget,
) -> (&Linear<B>, Option<&LoraAdapter<B>>) {
    let (a, f) = (&block.attention, &block.feed_forward);
    match target {
        LoraTarget::Wq => (&a.wq, a.wq_lora.as_ref()),
        LoraTarget::Wk => (&a.wk, a.wk_lora.as_ref()),
        LoraTarget::Wv => (&a.wv, a.wv_lora.as_ref()),
        LoraTarget::Wo => (&a.wo, a.wo_lora.as_ref()),
        LoraTarget::W1 => (&f.w1, f.w1_lora.as_ref()),
        LoraTarget::W2 => (&f.w2, f.w2_lora.as_ref()),
        LoraTarget::W3 => (&f.w3, f.w3_lora.as_ref()),
    }
}

/// Mutable [`slot`].
pub(crate) fn slot_mut<B: Backend>(
    block: &mut TransformerBlock<B>,
    target: LoraTarget,
) -> (&mut Linear<B>, &mut Option<LoraAdapter<B>>) {
    let (a, f) = (&mut block.attention, &mut block.feed_forward);
    match target {
        LoraTarget::Wq => (&mut a.wq, &mut a.wq_lora),
        LoraTarget::Wk => (&mut a.wk, &mut a.wk_lora),
        LoraTarget::Wv => (&mut a.wv, &mut a.wv_lora),
        LoraTarget::Wo => (&mut a.wo, &mut a.wo_lora),
        LoraTarget::W1 => (&mut f.w1, &mut f.w1_lora),
        LoraTarget::W2 => (&mut f.w2, &mut f.w2_lora),
        LoraTarget::W3 => (&mut f.w3, &mut f.w3_lora),
    }
}

impl<B: Backend> Llama<B> {
    /// The sites holding an adapter, block by block in [`LoraTarget::ALL`] order.
    pub fn lora_sites(&self) -> Vec<LoraSite> {
        (0..self.layers.len())
            .flat_map(|layer| {
                LoraTarget::ALL
                    .into_iter()
                    .map(move |target| LoraSite { layer, target })
            })
            .filter(|site| self.lora_adapter(*site).is_some())
            .collect()
    }

    /// The adapter at `site`, if one is attached.
    pub fn lora_adapter(&self, site: LoraSite) -> Option<&LoraAdapter<B>> {
        slot(self.layers.get(site.layer)?, site.target).1
    }

    /// The frozen projection at `site`.
    ///
    /// # Panics
    ///
    /// If `site.layer` is not a block of the model.
    pub fn projection(&self, site: LoraSite) -> &Linear<B> {
        slot(&self.layers[site.layer], site.target).0
    }

    /// `[d_input, d_output]` of the projection at `site`.
    pub(crate) fn projection_dims(&self, site: LoraSite) -> [usize; 2] {
        self.projection(site).weight.lazy_shape().dims::<2>()
    }

    /// Puts `adapter` at `site`, replacing what was there.
    pub(crate) fn set_lora_adapter(&mut self, site: LoraSite, adapter: Option<LoraAdapter<B>>) {
        *slot_mut(&mut self.layers[site.layer], site.target).1 = adapter;
    }
}
