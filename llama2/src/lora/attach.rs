//! Attaching fresh adapters to a model and freezing its base weights (Hu et al., 2021, §4:
//! "we freeze the pretrained weights and inject trainable rank decomposition matrices").

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, backend::Backend};

use super::adapter::LoraAdapterConfig;
use super::config::LoraConfig;
use super::error::LoraError;
use super::site::LoraSite;
use crate::model::Llama;

/// Sets `require_grad` on every float parameter it maps.
pub(crate) struct RequireGrad(pub bool);

impl<B: Backend> ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(self.0)
    }
}

impl LoraConfig {
    /// The sites this configuration puts adapters on in a model of `n_layers` blocks.
    pub fn sites(&self, n_layers: usize) -> Vec<LoraSite> {
        let mut targets = self.targets.clone();
        targets.sort();
        (0..n_layers)
            .flat_map(|layer| {
                targets
                    .clone()
                    .into_iter()
                    .map(move |target| LoraSite { layer, target })
            })
            .collect()
    }

    /// Freezes every parameter of `model` (no gradients, so no optimizer state) and attaches a
    /// fresh adapter to each targeted projection of every block. The model computes exactly
    /// what it computed before until the adapters are trained (`B = 0`).
    ///
    /// Parameter paths of the base weights do not change; the adapters live at
    /// [`LoraSite::adapter_path`].
    pub fn attach<B: Backend>(&self, model: Llama<B>) -> Result<Llama<B>, LoraError> {
        self.validate()?;
        if model.lora.is_some() {
            return Err(LoraError::AlreadyAttached);
        }
        let device = model.devices()[0].clone();
        let mut model = model.map(&mut RequireGrad(false));
        for site in self.sites(model.layers.len()) {
            let [d_input, d_output] = model.projection_dims(site);
            let adapter = LoraAdapterConfig::new(d_input, d_output, self.rank, self.scale())
                .with_dropout(self.dropout)
                .init(&device);
            model.set_lora_adapter(site, Some(adapter));
        }
        model.lora = Some(self.clone());
        Ok(model)
    }
}

impl<B: Backend> Llama<B> {
    /// Attaches fresh LoRA adapters; see [`LoraConfig::attach`].
    pub fn with_lora(self, config: &LoraConfig) -> Result<Self, LoraError> {
        config.attach(self)
    }

    /// Removes the adapters without merging them (the base model back, trainable again);
    /// PEFT's `unload`. A model without adapters is returned unchanged.
    pub fn unload_lora(mut self) -> Self {
        if self.lora.take().is_none() {
            return self;
        }
        for site in self.lora_sites() {
            self.set_lora_adapter(site, None);
        }
        self.map(&mut RequireGrad(true))
    }
}
