//! Model hyper-parameters (paper Table 1) and the published presets.

use burn::config::Config;
use burn::prelude::Backend;

use crate::model::Llama;

/// Hyper-parameters of a Llama 2 model, named as in Meta's `ModelArgs`.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Model (embedding) width.
    pub dim: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads; `n_heads` for multi-head attention, fewer for GQA.
    pub n_kv_heads: usize,
    /// Vocabulary size (rows of the embedding and of the output head).
    pub vocab_size: usize,
    /// The SwiGLU hidden size is rounded up to a multiple of this.
    #[config(default = 256)]
    pub multiple_of: usize,
    /// Optional multiplier applied to the SwiGLU hidden size before rounding (1.3 for 70B).
    #[config(default = "None")]
    pub ffn_dim_multiplier: Option<f64>,
    /// Explicit SwiGLU hidden size (Hugging Face's `intermediate_size`), overriding the
    /// formula from `multiple_of` and `ffn_dim_multiplier`.
    #[config(default = "None")]
    pub intermediate_size: Option<usize>,
    /// RMSNorm epsilon.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Rotary embedding base θ.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Context length. Rotary tables are built for twice this, as Meta does.
    #[config(default = 4096)]
    pub max_seq_len: usize,
}

/// A configuration that cannot describe a model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A size that must be positive is zero.
    #[error("`{0}` must be positive")]
    Zero(&'static str),
    /// `dim` is not a multiple of `n_heads`.
    #[error("dim {dim} is not divisible by n_heads {n_heads}")]
    HeadsDoNotDivideDim { dim: usize, n_heads: usize },
    /// `n_heads` is not a multiple of `n_kv_heads`.
    #[error("n_heads {n_heads} is not divisible by n_kv_heads {n_kv_heads}")]
    KvHeadsDoNotDivideHeads { n_heads: usize, n_kv_heads: usize },
    /// Rotary embeddings rotate pairs of dimensions, so the head size must be even.
    #[error("head dimension {0} must be even for rotary embeddings")]
    OddHeadDim(usize),
    /// The FFN multiplier must be a positive finite number.
    #[error("ffn_dim_multiplier {0} must be positive and finite")]
    BadFfnMultiplier(f64),
    /// Epsilon or θ is not a positive finite number.
    #[error("`{0}` must be positive and finite")]
    NotPositive(&'static str),
}

impl LlamaConfig {
    /// Llama 2 7B: 32 layers, 32 heads, width 4096, FFN 11008.
    pub fn llama2_7b() -> Self {
        Self::new(4096, 32, 32, 32, 32000)
    }

    /// Llama 2 13B: 40 layers, 40 heads, width 5120, FFN 13824.
    pub fn llama2_13b() -> Self {
        Self::new(5120, 40, 40, 40, 32000)
    }

    /// Llama 2 70B: 80 layers, 64 query heads sharing 8 key/value heads, width 8192, FFN 28672.
    pub fn llama2_70b() -> Self {
        Self::new(8192, 80, 64, 8, 32000)
            .with_multiple_of(4096)
            .with_ffn_dim_multiplier(Some(1.3))
    }

    /// The 15M-parameter shape of the "tinyllamas" models (width 288, 6 layers, 6 heads).
    pub fn tiny_15m() -> Self {
        Self::new(288, 6, 6, 6, 32000).with_multiple_of(32)
    }

    /// The 110M-parameter shape of the "tinyllamas" models (width 768, 12 layers, 12 heads).
    pub fn tiny_110m() -> Self {
        Self::new(768, 12, 12, 12, 32000).with_multiple_of(32)
    }

    /// A preset by name: `7b`, `13b`, `70b`, `15m`, `110m` (case-insensitive, `llama2-` prefix optional).
    pub fn preset(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        match name
            .trim_start_matches("llama2-")
            .trim_start_matches("llama2_")
        {
            "7b" => Some(Self::llama2_7b()),
            "13b" => Some(Self::llama2_13b()),
            "70b" => Some(Self::llama2_70b()),
            "15m" => Some(Self::tiny_15m()),
            "110m" => Some(Self::tiny_110m()),
            _ => None,
        }
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// SwiGLU hidden size: `intermediate_size` if set, else by Meta's formula: `2/3 · 4·dim`, times the optional multiplier,
    /// rounded up to `multiple_of`.
    pub fn ffn_hidden_dim(&self) -> usize {
        if let Some(size) = self.intermediate_size {
            return size;
        }
        let mut hidden = 2 * (4 * self.dim) / 3;
        if let Some(multiplier) = self.ffn_dim_multiplier {
            hidden = (multiplier * hidden as f64) as usize;
        }
        self.multiple_of * hidden.div_ceil(self.multiple_of)
    }

    /// Number of parameters of the model.
    pub fn num_params(&self) -> usize {
        let kv_dim = self.n_kv_heads * self.head_dim();
        let attention = 2 * self.dim * self.dim + 2 * self.dim * kv_dim;
        let ffn = 3 * self.dim * self.ffn_hidden_dim();
        let block = attention + ffn + 2 * self.dim;
        2 * self.vocab_size * self.dim + self.n_layers * block + self.dim
    }

    /// Checks that the sizes describe a buildable model.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("dim", self.dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("vocab_size", self.vocab_size),
            ("multiple_of", self.multiple_of),
            ("max_seq_len", self.max_seq_len),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if !self.dim.is_multiple_of(self.n_heads) {
            return Err(ConfigError::HeadsDoNotDivideDim {
                dim: self.dim,
                n_heads: self.n_heads,
            });
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ConfigError::KvHeadsDoNotDivideHeads {
                n_heads: self.n_heads,
                n_kv_heads: self.n_kv_heads,
            });
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim(self.head_dim()));
        }
        if let Some(m) = self.ffn_dim_multiplier
            && !(m.is_finite() && m > 0.0)
        {
            return Err(ConfigError::BadFfnMultiplier(m));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(ConfigError::NotPositive("norm_eps"));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(ConfigError::NotPositive("rope_theta"));
        }
        Ok(())
    }

    /// Builds a randomly initialised model (normal, σ = 0.02; norms at one).
    ///
    /// Parameters are initialised lazily, so loading weights right after `init` costs no
    /// extra memory. Call [`validate`](Self::validate) first for configurations read from
    /// files: `init` panics on a configuration that `validate` rejects.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Llama<B> {
        if let Err(e) = self.validate() {
            panic!("invalid LlamaConfig: {e}");
        }
        Llama::new(self, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffn_sizes_match_meta_formula() {
        assert_eq!(LlamaConfig::llama2_7b().ffn_hidden_dim(), 11008);
        assert_eq!(LlamaConfig::llama2_13b().ffn_hidden_dim(), 13824);
        assert_eq!(LlamaConfig::llama2_70b().ffn_hidden_dim(), 28672);
        assert_eq!(LlamaConfig::tiny_15m().ffn_hidden_dim(), 768);
        assert_eq!(LlamaConfig::tiny_110m().ffn_hidden_dim(), 2048);
    }

    #[test]
    fn parameter_counts_match_published_sizes() {
        let billions = |c: LlamaConfig| c.num_params() as f64 / 1e9;
        assert!((billions(LlamaConfig::llama2_7b()) - 6.74).abs() < 0.01);
        assert!((billions(LlamaConfig::llama2_13b()) - 13.02).abs() < 0.01);
        assert!((billions(LlamaConfig::llama2_70b()) - 68.98).abs() < 0.01);
    }

    #[test]
    fn presets_by_name() {
        assert_eq!(
            LlamaConfig::preset("Llama2-70B"),
            Some(LlamaConfig::llama2_70b())
        );
        assert_eq!(LlamaConfig::preset("110m"), Some(LlamaConfig::tiny_110m()));
        assert_eq!(LlamaConfig::preset("3b"), None);
    }

    #[test]
    fn validation_rejects_bad_shapes() {
        let ok = LlamaConfig::new(64, 2, 4, 2, 512);
        assert_eq!(ok.validate(), Ok(()));
        assert!(matches!(
            LlamaConfig::new(64, 2, 5, 5, 512).validate(),
            Err(ConfigError::HeadsDoNotDivideDim { .. })
        ));
        assert!(matches!(
            LlamaConfig::new(64, 2, 4, 3, 512).validate(),
            Err(ConfigError::KvHeadsDoNotDivideHeads { .. })
        ));
        assert!(matches!(
            LlamaConfig::new(12, 2, 4, 4, 512).validate(),
            Err(ConfigError::OddHeadDim(3))
        ));
        assert_eq!(
            LlamaConfig::new(64, 0, 4, 2, 512).validate(),
            Err(ConfigError::Zero("n_layers"))
        );
    }
}
