//! Which burn device the networks run on.
//!
//! The CPU `ndarray` backend is the default build; `--features cuda` adds the
//! CUDA backend (needs the CUDA runtime only when a CUDA device is picked).

use burn::tensor::Device;
use thiserror::Error;

/// A compute backend the user can ask for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's `ndarray` CPU backend (always built).
    Cpu,
    /// burn's CUDA backend (build with `--features cuda`).
    Cuda,
}

/// Why a backend could not be used.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The binary was built without that backend.
    #[error("backend `{0}` is not compiled into this binary; rebuild with `--features {0}`")]
    NotCompiled(&'static str),
}

/// The plain (inference) device for a backend.
pub fn device(backend: Backend) -> Result<Device, DeviceError> {
    match backend {
        Backend::Cpu => {
            // burn 0.22 marks ndarray deprecated in favour of `flex`; the project keeps
            // ndarray as its CPU default until flex is measured on the target.
            #[allow(deprecated)]
            let d = Device::ndarray();
            Ok(d)
        }
        #[cfg(feature = "cuda")]
        Backend::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        Backend::Cuda => Err(DeviceError::NotCompiled("cuda")),
    }
}

/// The backends compiled into this binary, CPU first.
pub fn compiled_backends() -> Vec<Backend> {
    let mut v = vec![Backend::Cpu];
    if cfg!(feature = "cuda") {
        v.push(Backend::Cuda);
    }
    v
}
