//! The optimizer of the paper's pretraining recipe (§2.2, "Training Details"):
//! AdamW with β₁ = 0.9, β₂ = 0.95, ε = 10⁻⁵ and weight decay 0.1.
//!
//! The paper does not say which parameters are decayed. We follow common
//! practice (GPT-2/nanoGPT, Megatron, Hugging Face's `Trainer`): every matrix
//! — the attention and feed-forward projections, the output projection and
//! the token embeddings — is decayed, and the 1-D parameters — the RMSNorm
//! gains — are not. The split is by rank, so it needs no parameter names.
//!
//! Weight decay is decoupled (`θ ← θ − lr·wd·θ`, then the Adam update), the
//! same update as `torch.optim.AdamW`. Gradient clipping by global norm lives
//! in [`super::clip`] and is applied before the optimizer.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, LearningRate, SimpleOptimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Device, Tensor};

/// Optimizer hyper-parameters (defaults: the paper's).
#[derive(Config, Debug, PartialEq)]
pub struct OptimConfig {
    /// Adam β₁.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Adam β₂.
    #[config(default = 0.95)]
    pub beta_2: f32,
    /// Adam ε.
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// Decoupled weight decay of the matrices (not of the RMSNorm gains).
    #[config(default = 0.1)]
    pub weight_decay: f32,
    /// Maximum global gradient norm; 0 disables clipping.
    #[config(default = 1.0)]
    pub grad_clip_norm: f64,
}

impl OptimConfig {
    /// The optimizer for a module `M` on autodiff backend `B`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> OptimizerAdaptor<LlamaAdamW, M, B> {
        OptimizerAdaptor::from(LlamaAdamW {
            decayed: self.adamw(self.weight_decay).build(),
            not_decayed: self.adamw(0.0).build(),
        })
    }

    fn adamw(&self, weight_decay: f32) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(weight_decay)
    }
}

/// AdamW that decays parameters of rank ≥ 2 and leaves 1-D parameters
/// (RMSNorm gains, biases) undecayed; see the module docs.
#[derive(Clone)]
pub struct LlamaAdamW {
    decayed: AdamW,
    not_decayed: AdamW,
}

impl<B: Backend> SimpleOptimizer<B> for LlamaAdamW {
    type State<const D: usize> = <AdamW as SimpleOptimizer<B>>::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let inner = if D >= 2 {
            &self.decayed
        } else {
            &self.not_decayed
        };
        SimpleOptimizer::<B>::step(inner, lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}
