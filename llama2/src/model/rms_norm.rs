//! Root-mean-square layer normalisation (Zhang & Sennrich, 2019), as Llama's pre-norm.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::{Tensor, backend::Backend};

/// Configuration of [`RmsNorm`].
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    /// Width of the normalised (last) dimension.
    pub dim: usize,
    /// Added to the mean square before the square root.
    #[config(default = 1e-5)]
    pub eps: f64,
}

impl RmsNormConfig {
    /// Creates the layer with its weight at one.
    pub fn init<B: Backend>(&self, device: &B::Device) -> RmsNorm<B> {
        RmsNorm {
            weight: Initializer::Ones.init([self.dim], device),
            eps: self.eps,
        }
    }
}

/// `y = x / sqrt(mean(x²) + eps) · weight`, normalised in f32 whatever the input's precision
/// and cast back before the weight is applied, as Meta's `RMSNorm`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel gain.
    pub weight: Param<Tensor<B, 1>>,
    /// Numerical-stability epsilon.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Normalises over the last dimension.
    ///
    /// # Shapes
    ///
    /// - input: `[..., dim]`
    /// - output: `[..., dim]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        crate::kernels::rms_norm(x, self.weight.val(), self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::{TensorData, Tolerance};

    #[test]
    fn normalises_by_root_mean_square() {
        let device = Default::default();
        let mut norm = RmsNormConfig::new(4).init::<TestBackend>(&device);
        norm.weight = Param::from_data([1.0, 2.0, 0.5, 1.0], &device);
        let x = Tensor::<TestBackend, 2>::from_floats([[1.0, -2.0, 3.0, -4.0]], &device);
        let rms = ((1.0f64 + 4.0 + 9.0 + 16.0) / 4.0 + 1e-5).sqrt();
        let expected = [[1.0 / rms, -4.0 / rms, 1.5 / rms, -4.0 / rms]];
        norm.forward(x)
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from(expected), Tolerance::default());
    }
}
