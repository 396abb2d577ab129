//! Gradient clipping by global norm (paper §2.2: "gradient clipping of 1.0").
//!
//! burn's built-in clipping works tensor by tensor; this is the global
//! version with `torch.nn.utils.clip_grad_norm_` semantics: the total norm is
//! the 2-norm of all gradients concatenated, and when
//! `clip_coef = max_norm / (total_norm + 1e-6)` is below 1 every gradient is
//! multiplied by it.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

struct Params {
    /// (id, rank) of every float parameter.
    ids: Vec<(ParamId, usize)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Params {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.ids.push((param.id, D));
    }
}

fn param_ids<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M) -> Vec<(ParamId, usize)> {
    let mut visitor = Params { ids: Vec::new() };
    module.visit(&mut visitor);
    visitor.ids
}

fn sum_sq<B: AutodiffBackend, const D: usize>(grads: &GradientsParams, id: ParamId) -> Option<f64> {
    grads
        .get::<B::InnerBackend, D>(id)
        .map(|g| crate::kernels::sum_squares(&g))
}

fn scale<B: AutodiffBackend, const D: usize>(grads: &mut GradientsParams, id: ParamId, by: f64) {
    if let Some(g) = grads.remove::<B::InnerBackend, D>(id) {
        grads.register::<B::InnerBackend, D>(id, crate::kernels::scale(g, by));
    }
}

macro_rules! by_rank {
    ($rank:expr, $f:ident :: <$b:ty> ($($arg:expr),*)) => {
        match $rank {
            1 => $f::<$b, 1>($($arg),*),
            2 => $f::<$b, 2>($($arg),*),
            3 => $f::<$b, 3>($($arg),*),
            4 => $f::<$b, 4>($($arg),*),
            r => panic!("parameters of rank {r} are not supported"),
        }
    };
}

/// The 2-norm of all gradients of `module`'s parameters taken together.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    param_ids::<B, M>(module)
        .into_iter()
        .filter_map(|(id, rank)| by_rank!(rank, sum_sq::<B>(grads, id)))
        .sum::<f64>()
        .sqrt()
}

/// Clips `grads` to global norm `max_norm` as `torch.nn.utils.clip_grad_norm_`
/// does and returns the norm before clipping. `max_norm <= 0` disables
/// clipping (the norm is still returned).
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let total = global_grad_norm::<B, M>(module, grads);
    if max_norm > 0.0 {
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            for (id, rank) in param_ids::<B, M>(module) {
                by_rank!(rank, scale::<B>(grads, id, coef));
            }
        }
    }
    total
}
