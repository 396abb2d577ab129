//! The backend selected by cargo features.
//!
//! | feature | backend | device |
//! |---|---|---|
//! | `cuda` | [`burn::backend::Cuda`] | first NVIDIA GPU |
//! | `wgpu` | [`burn::backend::Wgpu`] | default wgpu adapter (Vulkan, Metal, DX12; lavapipe on CPU) |
//! | `flex` (default) | [`burn::backend::Flex`] | CPU |
//! | `ndarray` | [`burn::backend::NdArray`] | CPU |
//!
//! When several features are enabled the first one in the table wins. [`Selected`] is that
//! backend and [`SelectedAutodiff`] is it wrapped for training.

#[cfg(feature = "cuda")]
mod selected {
    pub type Selected = burn::backend::Cuda<f32, i32>;
    pub const NAME: &str = "cuda";
    /// Whether the backend computes on the CPU (wgpu counts as a GPU backend, even on lavapipe).
    pub const ON_CPU: bool = false;
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
mod selected {
    pub type Selected = burn::backend::Wgpu<f32, i32>;
    pub const NAME: &str = "wgpu";
    /// Whether the backend computes on the CPU (wgpu counts as a GPU backend, even on lavapipe).
    pub const ON_CPU: bool = false;
}

#[cfg(all(feature = "flex", not(any(feature = "cuda", feature = "wgpu"))))]
mod selected {
    pub type Selected = burn::backend::Flex;
    pub const NAME: &str = "flex";
    /// Whether the backend computes on the CPU (wgpu counts as a GPU backend, even on lavapipe).
    pub const ON_CPU: bool = true;
}

#[cfg(all(
    feature = "ndarray",
    not(any(feature = "cuda", feature = "wgpu", feature = "flex"))
))]
mod selected {
    pub type Selected = burn::backend::NdArray<f32, i64>;
    pub const NAME: &str = "ndarray";
    /// Whether the backend computes on the CPU (wgpu counts as a GPU backend, even on lavapipe).
    pub const ON_CPU: bool = true;
}

#[cfg(not(any(
    feature = "cuda",
    feature = "wgpu",
    feature = "flex",
    feature = "ndarray"
)))]
compile_error!("enable one backend feature: ndarray, flex, wgpu or cuda");

pub use selected::{NAME, ON_CPU, Selected};

/// The selected backend with automatic differentiation, for training.
pub type SelectedAutodiff = burn::backend::Autodiff<Selected>;

/// The default device of the selected backend.
pub fn device() -> burn::tensor::Device<Selected> {
    Default::default()
}
