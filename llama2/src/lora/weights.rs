//! Adapter tensors as plain data, in Burn's layout: what adapter files hold, independent of
//! the file format.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::{DType, Element, TensorData, backend::Backend};

use super::config::LoraConfig;
use super::error::LoraError;
use super::site::LoraSite;
use crate::model::Llama;

/// One adapter's tensors.
#[derive(Clone, Debug)]
pub struct LoraWeights {
    /// Where the adapter sits.
    pub site: LoraSite,
    /// `Aᵀ`, `[d_input, rank]`.
    pub lora_a: TensorData,
    /// `Bᵀ`, `[rank, d_output]`.
    pub lora_b: TensorData,
}

impl LoraWeights {
    /// Name of the `A` tensor in an adapters file: `{adapter path}.lora_a.weight`.
    pub fn lora_a_name(site: LoraSite) -> String {
        format!("{}.lora_a.weight", site.adapter_path())
    }

    /// Name of the `B` tensor in an adapters file: `{adapter path}.lora_b.weight`.
    pub fn lora_b_name(site: LoraSite) -> String {
        format!("{}.lora_b.weight", site.adapter_path())
    }
}

impl<B: Backend> Llama<B> {
    /// The tensors of the attached adapters (f32), in [`Llama::lora_sites`] order.
    pub fn lora_weights(&self) -> Vec<LoraWeights> {
        self.lora_sites()
            .into_iter()
            .map(|site| {
                let adapter = self
                    .lora_adapter(site)
                    .expect("a listed site has an adapter");
                LoraWeights {
                    site,
                    lora_a: adapter
                        .lora_a
                        .weight
                        .val()
                        .into_data()
                        .convert_dtype(DType::F32),
                    lora_b: adapter
                        .lora_b
                        .weight
                        .val()
                        .into_data()
                        .convert_dtype(DType::F32),
                }
            })
            .collect()
    }
}

impl LoraConfig {
    /// The shapes of `Aᵀ` and `Bᵀ` at `site` of `model`.
    pub fn shapes<B: Backend>(&self, model: &Llama<B>, site: LoraSite) -> [[usize; 2]; 2] {
        let [d_input, d_output] = model.projection_dims(site);
        [[d_input, self.rank], [self.rank, d_output]]
    }

    /// [`attach`](Self::attach)es adapters holding the given tensors. `weights` must have
    /// exactly one entry for each of [`sites`](Self::sites), with the shapes of
    /// [`shapes`](Self::shapes); errors name `source` (the file the tensors came from) and
    /// the tensor in [`LoraWeights::lora_a_name`] / [`LoraWeights::lora_b_name`] terms.
    pub fn attach_weights<B: Backend>(
        &self,
        model: Llama<B>,
        weights: Vec<LoraWeights>,
        source: &Path,
    ) -> Result<Llama<B>, LoraError> {
        let mut model = self.attach(model)?;
        let sites = self.sites(model.layers.len());
        let mut found: Vec<Option<LoraWeights>> = vec![None; sites.len()];
        for w in weights {
            let Some(i) = sites.iter().position(|s| *s == w.site) else {
                return Err(LoraError::UnknownTensor {
                    path: source.to_path_buf(),
                    tensor: LoraWeights::lora_a_name(w.site),
                });
            };
            found[i] = Some(w);
        }
        let device = model.devices()[0].clone();
        let dtype = <B::FloatElem as Element>::dtype();
        for (site, w) in sites.into_iter().zip(found) {
            let w = w.ok_or_else(|| LoraError::MissingTensor {
                path: source.to_path_buf(),
                tensor: LoraWeights::lora_a_name(site),
            })?;
            let [a_shape, b_shape] = self.shapes(&model, site);
            for (name, data, shape) in [
                (LoraWeights::lora_a_name(site), &w.lora_a, a_shape),
                (LoraWeights::lora_b_name(site), &w.lora_b, b_shape),
            ] {
                if data.shape.as_slice() != shape.as_slice() {
                    return Err(LoraError::ShapeMismatch {
                        path: source.to_path_buf(),
                        tensor: name,
                        expected: shape.to_vec(),
                        found: data.shape.to_vec(),
                    });
                }
            }
            let mut adapter = model
                .lora_adapter(site)
                .cloned()
                .expect("attach puts an adapter on every site");
            adapter.lora_a.weight = Param::from_data(w.lora_a.convert_dtype(dtype), &device);
            adapter.lora_b.weight = Param::from_data(w.lora_b.convert_dtype(dtype), &device);
            model.set_lora_adapter(site, Some(adapter));
        }
        Ok(model)
    }
}
