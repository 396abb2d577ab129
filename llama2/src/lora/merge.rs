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

#[cfg(test)]
mod tests {
    use crate::TestBackend;
    use crate::config::LlamaConfig;
    use crate::lora::{LoraConfig, LoraSite, LoraTarget};
    use burn::module::Param;
    use burn::tensor::{Distribution, Tensor, Tolerance};

    type B = TestBackend;

    /// The merged weight is `W + scale · Aᵀ Bᵀ` in Burn's `[d_input, d_output]` layout, written
    /// out element by element.
    #[test]
    fn merged_weight_is_w_plus_scaled_product() {
        let device = Default::default();
        let model = LlamaConfig::new(32, 1, 4, 2, 50)
            .with_multiple_of(16)
            .with_max_seq_len(16)
            .init::<B>(&device);
        let config = LoraConfig::new()
            .with_rank(3)
            .with_alpha(4.5)
            .with_targets(vec![LoraTarget::Wk]);
        let mut model = config.attach(model).unwrap();
        let site = LoraSite {
            layer: 0,
            target: LoraTarget::Wk,
        };
        let mut adapter = model.lora_adapter(site).unwrap().clone();
        adapter.lora_b.weight = Param::from_tensor(Tensor::random(
            [3, 16],
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        model.set_lora_adapter(site, Some(adapter.clone()));

        let w: Vec<f32> = model.layers[0]
            .attention
            .wk
            .weight
            .val()
            .to_data()
            .to_vec()
            .unwrap();
        let a: Vec<f32> = adapter.lora_a.weight.val().to_data().to_vec().unwrap();
        let b: Vec<f32> = adapter.lora_b.weight.val().to_data().to_vec().unwrap();
        let (d_in, d_out, r) = (32, 16, 3);
        let expected: Vec<f32> = (0..d_in * d_out)
            .map(|k| {
                let (i, o) = (k / d_out, k % d_out);
                let dot: f32 = (0..r).map(|j| a[i * r + j] * b[j * d_out + o]).sum();
                w[k] + 1.5 * dot
            })
            .collect();

        let merged = model.merge_lora();
        assert!(merged.lora.is_none());
        assert!(merged.layers[0].attention.wk_lora.is_none());
        merged.layers[0]
            .attention
            .wk
            .weight
            .val()
            .into_data()
            .assert_approx_eq::<f32>(
                &burn::tensor::TensorData::new(expected, [d_in, d_out]),
                Tolerance::absolute(1e-6),
            );
    }
}
