//! One low-rank adapter (Hu et al., 2021, §4.1): the trainable update `ΔW = (α / r) · B A` of
//! a frozen projection `W`.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};

/// Configuration of [`LoraAdapter`].
#[derive(Config, Debug)]
pub struct LoraAdapterConfig {
    /// Input width of the adapted projection.
    pub d_input: usize,
    /// Output width of the adapted projection.
    pub d_output: usize,
    /// Rank `r`.
    pub rank: usize,
    /// Scale of the update, `α / r` (see [`LoraConfig::scale`](super::LoraConfig::scale)).
    pub scale: f64,
    /// Dropout probability on the adapter input.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LoraAdapterConfig {
    /// Creates the adapter as PEFT does: `A` Kaiming-uniform (bound `1/√d_input`, PyTorch's
    /// `nn.Linear` default and `kaiming_uniform_(a=√5)`), `B` zero, so that the adapted
    /// projection starts equal to the frozen one.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LoraAdapter<B> {
        LoraAdapter {
            lora_a: LinearConfig::new(self.d_input, self.rank)
                .with_bias(false)
                .with_initializer(Initializer::KaimingUniform {
                    gain: 1.0 / 3.0f64.sqrt(),
                    fan_out_only: false,
                })
                .init(device),
            lora_b: LinearConfig::new(self.rank, self.d_output)
                .with_bias(false)
                .with_initializer(Initializer::Zeros)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            scale: self.scale,
        }
    }
}

/// `x ↦ scale · B A dropout(x)`, added to the output of a frozen projection.
///
/// `lora_a.weight` is `Aᵀ`, `[d_input, rank]`, and `lora_b.weight` is `Bᵀ`, `[rank, d_output]`
/// (Burn's linear layout, the transposes of PEFT's `lora_A.weight` / `lora_B.weight`).
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// Down projection `A`, `d_input → rank`.
    pub lora_a: Linear<B>,
    /// Up projection `B`, `rank → d_output`.
    pub lora_b: Linear<B>,
    /// Dropout on the input; active only on autodiff backends.
    pub dropout: Dropout,
    /// `α / r` (or `α / √r`).
    pub scale: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// The update of the projection's output. The scale is applied to the `rank`-wide
    /// intermediate, the cheapest place.
    ///
    /// # Shapes
    ///
    /// - x: `[rows, d_input]`
    /// - output: `[rows, d_output]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let down = self.lora_a.forward(self.dropout.forward(x));
        self.lora_b.forward(down.mul_scalar(self.scale))
    }

    /// The update as a weight in Burn's linear layout, `scale · Aᵀ Bᵀ = (scale · B A)ᵀ`.
    ///
    /// # Shapes
    ///
    /// - output: `[d_input, d_output]`
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_a
            .weight
            .val()
            .matmul(self.lora_b.weight.val())
            .mul_scalar(self.scale)
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.weight.lazy_shape().dims::<2>()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::{Distribution, Tolerance};

    type B = TestBackend;

    #[test]
    fn fresh_adapter_is_zero_and_a_is_bounded() {
        let device = Default::default();
        let adapter = LoraAdapterConfig::new(48, 20, 4, 2.0).init::<B>(&device);
        assert_eq!(adapter.rank(), 4);
        let a = adapter.lora_a.weight.val();
        assert_eq!(a.dims(), [48, 4]);
        let bound = 1.0 / 48f32.sqrt();
        let max = a.abs().max().into_scalar();
        assert!(
            max <= bound && max > 0.5 * bound,
            "max |A| {max}, bound {bound}"
        );
        let x = Tensor::<B, 2>::random([5, 48], Distribution::Default, &device);
        let out = adapter.forward(x);
        assert_eq!(out.dims(), [5, 20]);
        assert_eq!(out.abs().max().into_scalar(), 0.0);
    }

    #[test]
    fn forward_is_the_delta_weight_applied() {
        let device = Default::default();
        let mut adapter = LoraAdapterConfig::new(6, 5, 3, 0.75).init::<B>(&device);
        adapter.lora_b.weight = adapter
            .lora_b
            .weight
            .map(|_| Tensor::random([3, 5], Distribution::Normal(0.0, 1.0), &device));
        let x = Tensor::<B, 2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        // x Aᵀ Bᵀ · scale, written out from the two weights.
        let a = adapter.lora_a.weight.val();
        let b = adapter.lora_b.weight.val();
        let expected = x.clone().matmul(a).matmul(b).mul_scalar(0.75);
        adapter
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
        adapter
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(
                &x.matmul(adapter.delta_weight()).into_data(),
                Tolerance::absolute(1e-6),
            );
    }
}
