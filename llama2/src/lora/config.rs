//! LoRA hyper-parameters (Hu et al., 2021, §4): the rank `r` of the update, the scale
//! `α / r`, dropout on the adapter input, and which projections are adapted.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use super::error::LoraError;

/// A projection of a transformer block that can carry an adapter.
///
/// Serialised by Meta's parameter name (`"wq"`, …); [`hf_name`](Self::hf_name) gives the
/// name PEFT's `target_modules` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraTarget {
    /// Query projection (`attention.wq`, HF `self_attn.q_proj`).
    Wq,
    /// Key projection (`attention.wk`, HF `self_attn.k_proj`).
    Wk,
    /// Value projection (`attention.wv`, HF `self_attn.v_proj`).
    Wv,
    /// Output projection (`attention.wo`, HF `self_attn.o_proj`).
    Wo,
    /// Feed-forward gate projection (`feed_forward.w1`, HF `mlp.gate_proj`).
    W1,
    /// Feed-forward down projection (`feed_forward.w2`, HF `mlp.down_proj`).
    W2,
    /// Feed-forward up projection (`feed_forward.w3`, HF `mlp.up_proj`).
    W3,
}

impl LoraTarget {
    /// Every projection, in module order.
    pub const ALL: [LoraTarget; 7] = [
        Self::Wq,
        Self::Wk,
        Self::Wv,
        Self::Wo,
        Self::W1,
        Self::W2,
        Self::W3,
    ];
    /// The four attention projections (the default targets).
    pub const ATTENTION: [LoraTarget; 4] = [Self::Wq, Self::Wk, Self::Wv, Self::Wo];
    /// The three feed-forward projections.
    pub const FEED_FORWARD: [LoraTarget; 3] = [Self::W1, Self::W2, Self::W3];

    /// Meta's parameter name: `wq`, `wk`, `wv`, `wo`, `w1`, `w2`, `w3`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wq => "wq",
            Self::Wk => "wk",
            Self::Wv => "wv",
            Self::Wo => "wo",
            Self::W1 => "w1",
            Self::W2 => "w2",
            Self::W3 => "w3",
        }
    }

    /// The block sub-module holding the projection: `attention` or `feed_forward`.
    pub fn module(self) -> &'static str {
        match self {
            Self::Wq | Self::Wk | Self::Wv | Self::Wo => "attention",
            Self::W1 | Self::W2 | Self::W3 => "feed_forward",
        }
    }

    /// Hugging Face's module name (`q_proj`, …, `gate_proj`, `down_proj`, `up_proj`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Wq => "q_proj",
            Self::Wk => "k_proj",
            Self::Wv => "v_proj",
            Self::Wo => "o_proj",
            Self::W1 => "gate_proj",
            Self::W2 => "down_proj",
            Self::W3 => "up_proj",
        }
    }

    /// Hugging Face's parent module: `self_attn` or `mlp`.
    pub fn hf_module(self) -> &'static str {
        match self.module() {
            "attention" => "self_attn",
            _ => "mlp",
        }
    }

    /// The target with this Meta (`wq`) or Hugging Face (`q_proj`) name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name || t.hf_name() == name)
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoraTarget {
    type Err = LoraError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| LoraError::UnknownTarget(s.to_string()))
    }
}

/// Configuration of low-rank adaptation (Hu et al., 2021): each targeted projection
/// `h = W x` becomes `h = W x + (α / r) · B A dropout(x)` with `A ∈ ℝ^{r×d_in}` initialised
/// Kaiming-uniform, `B ∈ ℝ^{d_out×r}` initialised to zero (so a fresh adapter changes
/// nothing), and `W` frozen. Defaults are PEFT's (`r = 8`, `lora_alpha = 16`,
/// `lora_dropout = 0.05` as in common Llama recipes) on the four attention projections.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    #[config(default = 8)]
    pub rank: usize,
    /// `α`: the update is scaled by `α / r` (or `α / √r` with [`rslora`](Self::rslora)).
    #[config(default = 16.0)]
    pub alpha: f64,
    /// Dropout probability on the adapter input, applied in training (autodiff backends)
    /// only.
    #[config(default = 0.05)]
    pub dropout: f64,
    /// The projections that get an adapter, in every block.
    #[config(default = "LoraTarget::ATTENTION.to_vec()")]
    pub targets: Vec<LoraTarget>,
    /// Rank-stabilised scaling `α / √r` (Kalajdzievski, 2023; PEFT's `use_rslora`).
    #[config(default = false)]
    pub rslora: bool,
}

impl LoraConfig {
    /// The factor applied to `B A x`: `α / r`, or `α / √r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Adds the feed-forward projections `w1`, `w2`, `w3` to the targets.
    pub fn with_feed_forward(mut self) -> Self {
        for target in LoraTarget::FEED_FORWARD {
            if !self.targets.contains(&target) {
                self.targets.push(target);
            }
        }
        self.targets.sort();
        self
    }

    /// Checks that the configuration describes adapters: a positive rank, a finite `α`, a
    /// dropout probability in `[0, 1)` and at least one target, none repeated.
    pub fn validate(&self) -> Result<(), LoraError> {
        let invalid = |message: String| Err(LoraError::InvalidConfig(message));
        if self.rank == 0 {
            return invalid("rank must be positive".into());
        }
        if !self.alpha.is_finite() {
            return invalid(format!("alpha {} is not finite", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        if self.targets.is_empty() {
            return invalid("no target projections".into());
        }
        for (i, target) in self.targets.iter().enumerate() {
            if self.targets[..i].contains(target) {
                return invalid(format!("target `{target}` is listed twice"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_scale() {
        let c = LoraConfig::new();
        assert_eq!(c.rank, 8);
        assert_eq!(c.alpha, 16.0);
        assert_eq!(c.dropout, 0.05);
        assert_eq!(c.targets, LoraTarget::ATTENTION.to_vec());
        assert_eq!(c.scale(), 2.0);
        assert_eq!(c.with_rslora(true).with_rank(16).scale(), 4.0);
    }

    #[test]
    fn feed_forward_targets_and_names() {
        let c = LoraConfig::new()
            .with_targets(vec![LoraTarget::Wv, LoraTarget::Wq])
            .with_feed_forward();
        assert_eq!(
            c.targets,
            vec![
                LoraTarget::Wq,
                LoraTarget::Wv,
                LoraTarget::W1,
                LoraTarget::W2,
                LoraTarget::W3
            ]
        );
        assert_eq!("gate_proj".parse::<LoraTarget>().unwrap(), LoraTarget::W1);
        assert_eq!("wo".parse::<LoraTarget>().unwrap(), LoraTarget::Wo);
        assert!("lm_head".parse::<LoraTarget>().is_err());
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.contains(r#""targets":["wq","wv","w1","w2","w3"]"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<LoraConfig>(&json).unwrap(), c);
    }

    #[test]
    fn validation() {
        assert!(LoraConfig::new().validate().is_ok());
        for bad in [
            LoraConfig::new().with_rank(0),
            LoraConfig::new().with_alpha(f64::NAN),
            LoraConfig::new().with_dropout(1.0),
            LoraConfig::new().with_dropout(-0.1),
            LoraConfig::new().with_targets(vec![]),
            LoraConfig::new().with_targets(vec![LoraTarget::Wq, LoraTarget::Wq]),
        ] {
            assert!(
                matches!(bad.validate(), Err(LoraError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }
}
