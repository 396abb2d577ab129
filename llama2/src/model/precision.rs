//! The storage precision of the model's matrix weights. Llama 2's weights ship in bf16
//! (Meta) and f16 (Hugging Face); holding the projections and the output head in 16 bits
//! halves the memory a model takes and the bytes every decoded token streams, while
//! activations, norms, embeddings, adapters and the KV cache stay f32 and every product
//! accumulates in f32 ([`crate::kernels::matmul_weight`]).

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::{Backend, DTypeUsage};
use burn::tensor::{FloatDType, Tensor};

use super::Llama;

/// The float type the projections (`wq`, `wk`, `wv`, `wo`, `w1`, `w2`, `w3`) and the output
/// head are stored in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightDType {
    /// 32-bit floats (training and the reference precision).
    #[default]
    F32,
    /// IEEE half precision (Hugging Face's `torch_dtype: float16`).
    F16,
    /// bfloat16 (Meta's checkpoints).
    Bf16,
}

impl WeightDType {
    /// Every precision, in the order `--dtype` lists them.
    pub const ALL: [WeightDType; 3] = [WeightDType::F32, WeightDType::F16, WeightDType::Bf16];

    /// The tensor dtype.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            WeightDType::F32 => FloatDType::F32,
            WeightDType::F16 => FloatDType::F16,
            WeightDType::Bf16 => FloatDType::BF16,
        }
    }

    /// `Ok` when `B` can store tensors of this precision on `device`.
    ///
    /// # Errors
    ///
    /// [`UnsupportedDType`] otherwise (NdArray has no f16 or bf16 tensors).
    pub fn check<B: Backend>(self, device: &B::Device) -> Result<(), UnsupportedDType> {
        if self == WeightDType::F32
            || B::dtype_usage(device, self.float_dtype().into()).contains(DTypeUsage::Storage)
        {
            Ok(())
        } else {
            Err(UnsupportedDType {
                dtype: self,
                backend: B::name(device),
            })
        }
    }
}

impl fmt::Display for WeightDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightDType::F32 => "f32",
            WeightDType::F16 => "f16",
            WeightDType::Bf16 => "bf16",
        })
    }
}

impl FromStr for WeightDType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WeightDType::ALL
            .into_iter()
            .find(|d| d.to_string() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown weight dtype `{s}` (expected f32, f16 or bf16)"))
    }
}

/// The backend cannot store weights in the requested precision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {backend} backend cannot store {dtype} tensors (use f32, or a backend such as Flex)")]
pub struct UnsupportedDType {
    pub dtype: WeightDType,
    pub backend: String,
}

/// The modules whose `weight` [`Llama::with_weight_dtype`] stores in the chosen precision.
const PROJECTIONS: [&str; 8] = ["wq", "wk", "wv", "wo", "w1", "w2", "w3", "output"];

impl<B: Backend> Llama<B> {
    /// The model with its projections and output head stored as `dtype` (rounded to
    /// nearest; other parameters unchanged), for inference. Each weight is converted and
    /// its f32 copy freed before the next, so the peak is the f32 model plus one weight.
    /// Training needs f32 weights: convert after merging adapters, not before.
    ///
    /// # Errors
    ///
    /// [`UnsupportedDType`] when the backend cannot store `dtype` (NdArray has no f16 or
    /// bf16 tensors); the model is then dropped.
    pub fn with_weight_dtype(self, dtype: WeightDType) -> Result<Self, UnsupportedDType> {
        dtype.check::<B>(&self.output.weight.device())?;
        Ok(self.map(&mut Cast {
            dtype: dtype.float_dtype(),
            path: Vec::new(),
        }))
    }

    /// The precision the output head is stored in (every projection shares it after
    /// [`with_weight_dtype`](Self::with_weight_dtype)).
    pub fn weight_dtype(&self) -> WeightDType {
        match FloatDType::from(self.output.weight.val().dtype()) {
            FloatDType::F16 => WeightDType::F16,
            FloatDType::BF16 => WeightDType::Bf16,
            _ => WeightDType::F32,
        }
    }
}

/// Whether the parameter at `path` (`layers.0.attention.wq.weight`, `output.weight`) is one
/// that [`Llama::with_weight_dtype`] stores in the chosen precision.
pub fn is_projection_weight(path: &str) -> bool {
    let mut parts = path.rsplit('.');
    parts.next() == Some("weight") && parts.next().is_some_and(|m| PROJECTIONS.contains(&m))
}

/// Casts the `weight` of every module named in [`PROJECTIONS`].
struct Cast {
    dtype: FloatDType,
    path: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Cast {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !is_projection_weight(&self.path.join(".")) {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.dtype), mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::DType;

    use super::*;
    use crate::config::LlamaConfig;

    fn tiny<B: Backend>() -> Llama<B> {
        let mut c = LlamaConfig::tiny_15m();
        c.dim = 32;
        c.n_layers = 2;
        c.n_heads = 4;
        c.n_kv_heads = 2;
        c.vocab_size = 64;
        c.max_seq_len = 16;
        c.init(&Default::default())
    }

    #[cfg(feature = "flex")]
    #[test]
    fn only_projections_and_the_head_change_precision() {
        let model = tiny::<burn_flex::Flex>()
            .with_weight_dtype(WeightDType::F16)
            .unwrap();
        assert_eq!(model.weight_dtype(), WeightDType::F16);
        assert_eq!(model.output.weight.val().dtype(), DType::F16);
        assert_eq!(model.tok_embeddings.weight.val().dtype(), DType::F32);
        assert_eq!(model.norm.weight.val().dtype(), DType::F32);
        assert_eq!(model.layers.len(), 2);
        for block in &model.layers {
            let a = &block.attention;
            for w in [&a.wq, &a.wk, &a.wv, &a.wo] {
                assert_eq!(w.weight.val().dtype(), DType::F16);
            }
            let f = &block.feed_forward;
            for w in [&f.w1, &f.w2, &f.w3] {
                assert_eq!(w.weight.val().dtype(), DType::F16);
            }
            assert_eq!(block.attention_norm.weight.val().dtype(), DType::F32);
        }
        assert_eq!(
            model
                .with_weight_dtype(WeightDType::F32)
                .unwrap()
                .weight_dtype(),
            WeightDType::F32
        );
    }

    #[test]
    fn a_backend_without_half_tensors_refuses_them() {
        type B = burn::backend::NdArray;
        let err = tiny::<B>()
            .with_weight_dtype(WeightDType::Bf16)
            .unwrap_err();
        assert_eq!(err.dtype, WeightDType::Bf16);
        assert!(err.to_string().contains("cannot store bf16"), "{err}");
        let model = tiny::<B>().with_weight_dtype(WeightDType::F32).unwrap();
        assert_eq!(model.weight_dtype(), WeightDType::F32);
    }

    #[test]
    fn projection_paths() {
        for path in [
            "layers.0.attention.wq.weight",
            "layers.11.feed_forward.w2.weight",
            "output.weight",
        ] {
            assert!(is_projection_weight(path), "{path}");
        }
        for path in [
            "tok_embeddings.weight",
            "norm.weight",
            "layers.0.attention_norm.weight",
            "layers.0.attention.wq_lora.lora_a.weight",
            "layers.0.attention.wq.bias",
            "weight",
        ] {
            assert!(!is_projection_weight(path), "{path}");
        }
    }

    #[test]
    fn dtype_names_parse_and_print() {
        for d in WeightDType::ALL {
            assert_eq!(d.to_string().parse::<WeightDType>(), Ok(d));
        }
        assert_eq!("BF16".parse::<WeightDType>(), Ok(WeightDType::Bf16));
        assert!(
            "q8".parse::<WeightDType>()
                .unwrap_err()
                .contains("f32, f16 or bf16")
        );
    }
}
