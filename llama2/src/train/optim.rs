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
//!
//! On Flex the step of each parameter is the one-pass [`crate::kernels::adamw`] kernel,
//! which computes what Burn's `AdamW` computes; other backends run Burn's `AdamW`.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Device, Tensor};

use crate::kernels::{adamw::AdamWStep, adamw_step};

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
        OptimizerAdaptor::from(self.llama_adamw())
    }

    fn llama_adamw(&self) -> LlamaAdamW {
        LlamaAdamW {
            decayed: self.adamw(self.weight_decay).build(),
            not_decayed: self.adamw(0.0).build(),
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
        }
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
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
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
        let decayed = D >= 2;
        let step = AdamWStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: if decayed { self.weight_decay } else { 0.0 },
            time: state.as_ref().map_or(1, |s| s.momentum.time + 1),
        };
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        let (tensor, grad, state) = match adamw_step(tensor, grad, moments, &step) {
            Ok((tensor, moment_1, moment_2)) => {
                let momentum = AdaptiveMomentumState::new(step.time, moment_1, moment_2);
                return (tensor, Some(AdamWState::new(momentum)));
            }
            Err((tensor, grad, moments)) => (
                tensor,
                grad,
                moments.map(|(moment_1, moment_2)| {
                    AdamWState::new(AdaptiveMomentumState::new(
                        step.time - 1,
                        moment_1,
                        moment_2,
                    ))
                }),
            ),
        };
        let inner = if decayed {
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

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::Distribution;
    use burn_flex::Flex;

    use super::*;

    /// Three steps of `LlamaAdamW` (the Flex kernel) against Burn's `AdamW` with the same
    /// settings, on a decayed matrix and an undecayed vector.
    fn compare<const D: usize>(shape: [usize; D], decay: bool) {
        let config = OptimConfig::new();
        let ours = config.llama_adamw();
        let burns = config
            .adamw(if decay { config.weight_decay } else { 0.0 })
            .build();
        let device = Default::default();
        let start = Tensor::<Flex, D>::random(shape, Distribution::Normal(0.0, 0.5), &device);
        let (mut a, mut b) = (start.clone(), start);
        let (mut state_a, mut state_b) = (None, None);
        for step in 1..=3 {
            let grad = Tensor::<Flex, D>::random(shape, Distribution::Normal(0.0, 0.1), &device);
            let lr = 1e-3 * step as f64;
            (a, state_a) = ours.step(lr, a, grad.clone(), state_a);
            (b, state_b) = SimpleOptimizer::<Flex>::step(&burns, lr, b, grad, state_b);
            let (sa, sb) = (state_a.as_ref().unwrap(), state_b.as_ref().unwrap());
            assert_eq!(sa.momentum.time, step);
            assert_eq!(sa.momentum.time, sb.momentum.time);
            for (x, y) in [
                (a.clone(), b.clone()),
                (sa.momentum.moment_1.clone(), sb.momentum.moment_1.clone()),
                (sa.momentum.moment_2.clone(), sb.momentum.moment_2.clone()),
            ] {
                x.into_data().assert_approx_eq::<f32>(
                    &y.into_data(),
                    burn::tensor::Tolerance::absolute(1e-7),
                );
            }
        }
    }

    #[test]
    fn flex_runs_the_kernel_and_other_backends_do_not() {
        let step = AdamWStep {
            lr: 1e-3,
            beta_1: 0.9,
            beta_2: 0.95,
            epsilon: 1e-5,
            weight_decay: 0.1,
            time: 1,
        };
        let t = Tensor::<Flex, 2>::ones([3, 4], &Default::default());
        assert!(adamw_step(t.clone(), t, None, &step).is_ok());
        let t = Tensor::<crate::TestBackend, 2>::ones([3, 4], &Default::default());
        assert!(adamw_step(t.clone(), t, None, &step).is_err());
    }

    #[test]
    fn the_flex_step_equals_burns_adamw() {
        compare([300, 257], true);
        compare([771], false);
    }
}
