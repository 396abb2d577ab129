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
            // Drawn now rather than lazily, so that clones of the model share one `A`.
            let _ = (adapter.lora_a.weight.val(), adapter.lora_b.weight.val());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::config::LlamaConfig;
    use crate::lora::{LoraSite, LoraTarget};
    use burn::backend::Autodiff;
    use burn::module::ModuleVisitor;

    type AD = Autodiff<TestBackend>;

    /// `(path-less) require_grad` of every float parameter, in visiting order.
    struct Grads(Vec<bool>);

    impl<B: Backend> ModuleVisitor<B> for Grads {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().is_require_grad());
        }
    }

    fn grads<M: Module<AD>>(module: &M) -> Vec<bool> {
        let mut g = Grads(Vec::new());
        module.visit(&mut g);
        g.0
    }

    fn tiny() -> Llama<AD> {
        LlamaConfig::new(32, 2, 4, 2, 50)
            .with_multiple_of(16)
            .with_max_seq_len(16)
            .init(&Default::default())
    }

    #[test]
    fn attaching_freezes_the_base_and_unloading_restores_it() {
        let model = tiny();
        let n_base = grads(&model).len();
        assert!(grads(&model).into_iter().all(|g| g));

        let config = LoraConfig::new()
            .with_rank(2)
            .with_targets(vec![LoraTarget::Wv, LoraTarget::W2]);
        let model = config.attach(model).unwrap();
        assert_eq!(
            model.lora_sites(),
            vec![
                LoraSite {
                    layer: 0,
                    target: LoraTarget::Wv
                },
                LoraSite {
                    layer: 0,
                    target: LoraTarget::W2
                },
                LoraSite {
                    layer: 1,
                    target: LoraTarget::Wv
                },
                LoraSite {
                    layer: 1,
                    target: LoraTarget::W2
                },
            ]
        );
        let adapter = model
            .lora_adapter(LoraSite {
                layer: 1,
                target: LoraTarget::W2,
            })
            .unwrap();
        assert_eq!(adapter.lora_a.weight.dims(), [96, 2]);
        assert_eq!(adapter.lora_b.weight.dims(), [2, 32]);
        assert_eq!(adapter.scale, 8.0);
        assert_eq!(adapter.dropout.prob, 0.05);
        assert_eq!(
            LoraSite {
                layer: 1,
                target: LoraTarget::W2
            }
            .adapter_path(),
            "layers.1.feed_forward.w2_lora"
        );

        let flags = grads(&model);
        assert_eq!(flags.len(), n_base + 4 * 2);
        assert_eq!(flags.iter().filter(|g| **g).count(), 4 * 2);
        assert!(!model.tok_embeddings.weight.val().is_require_grad());
        assert!(!model.layers[0].attention.wv.weight.val().is_require_grad());

        let model = model.unload_lora();
        assert!(model.lora.is_none());
        assert!(model.lora_sites().is_empty());
        assert_eq!(grads(&model), vec![true; n_base]);
    }

    #[test]
    fn invalid_configs_are_refused() {
        assert!(matches!(
            LoraConfig::new().with_rank(0).attach(tiny()),
            Err(LoraError::InvalidConfig(_))
        ));
    }
}
