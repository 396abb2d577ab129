//! Merging adapters into the base weights (Hu et al., 2021, §4.1: "we can explicitly compute
//! and store W = W₀ + BA and perform inference as usual", so a merged model has no extra
//! latency).

use burn::module::Module;
use burn::tensor::backend::Backend;

use super::attach::RequireGrad;
use crate::model::Llama;

impl<B: Backend> Llama<B> {
    /// Folds every adapter into its projection, `W ← W + scale · B A` (in Burn's `[d_input,
    /// d_output]` layout, `Wᵀ ← Wᵀ + scale · Aᵀ Bᵀ`), and returns a plain model without
    /// adapters whose parameters are all trainable again, as a freshly loaded model's. It can
    /// be saved as an ordinary record. A model without adapters is returned unchanged.
    pub fn merge_lora(mut self) -> Self {
        if self.lora.take().is_none() {
            return self;
        }
        for site in self.lora_sites() {
            let adapter = self
                .lora_adapter(site)
                .cloned()
                .expect("a listed site has an adapter");
            let delta = adapter.delta_weight().detach();
            let block = &mut self.layers[site.layer];
            let (linear, slot) = super::site::slot_mut(block, site.target);
            linear.weight = linear.weight.clone().map(|w| (w + delta).detach());
            *slot = None;
        }
        self.map(&mut RequireGrad(true))
    }
}

/// [`Llama::merge_lora`].
pub fn merge<B: Backend>(model: Llama<B>) -> Llama<B> {
    model.merge_lora()
}
