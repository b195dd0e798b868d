//! Which burn device the networks run on.
//!
//! Two backends: burn's `ndarray` CPU backend (always built) and, with the `gpu`
//! cargo feature (on by default), burn's wgpu backend, which runs on any Vulkan
//! driver — NVIDIA's (desktop, server, Jetson L4T), AMD's, Intel's, and Mesa's
//! software rasterizer lavapipe, which CI uses. `auto` takes the GPU when an
//! adapter comes up and the CPU otherwise, and says which in the log.
//!
//! burn's CUDA backend is not offered: its build downloads an LLVM bundle
//! (`cubecl-llvm`'s build script), which neither this project's CI nor an
//! offline robot can do, so it could never be built or tested here. wgpu on
//! Vulkan reaches the same NVIDIA GPUs.

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
    /// burn's wgpu backend on a Vulkan adapter (wgpu prefers a discrete GPU,
    /// then an integrated one, then a software one such as lavapipe); fails
    /// when none opens.
    Gpu,
    /// The GPU when a hardware Vulkan adapter opens, else the CPU backend (a
    /// software Vulkan device is slower than the CPU backend itself), said in
    /// the log.
    Auto,
}

/// Why a backend could not be used.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The binary was built without that backend.
    #[error("backend `{0}` is not compiled into this binary; rebuild with `--features {0}`")]
    NotCompiled(&'static str),
    /// The GPU runtime found no adapter or could not open it.
    #[error(
        "no GPU adapter could be opened ({0}); is a Vulkan driver installed (libvulkan1 and the GPU's ICD, or mesa-vulkan-drivers for lavapipe)?"
    )]
    NoAdapter(String),
}

/// The device a backend resolved to, and what it is.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The plain (inference) device; `.autodiff()` gives the training one.
    pub device: Device,
    /// The backend actually used (`Auto` resolved to `Cpu` or `Gpu`).
    pub backend: Backend,
    /// The adapter: `<name> (<type> on <API>, driver <driver> <version>)`, e.g.
    /// `llvmpipe (LLVM 15.0.6, 256 bits) (Cpu on Vulkan, driver llvmpipe Mesa
    /// 22.3.6 (LLVM 15.0.6))`, or `CPU (ndarray)`.
    pub adapter: String,
    /// Why `auto` fell back to the CPU, when it did.
    pub fallback: Option<String>,
}

/// The Vulkan adapter wgpu opened: the device, its description and whether it
/// is a software one (a CPU rasterizer such as lavapipe).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
struct Gpu {
    device: Device,
    adapter: String,
    software: bool,
}

/// The wgpu device, opened once per process (wgpu's runtime cannot be
/// initialised twice; adapters do not appear mid-run, so a failure is kept
/// too) and shared by every network. A driver that panics while opening is
/// reported like one that fails.
#[cfg(feature = "gpu")]
fn gpu() -> Result<Gpu, DeviceError> {
    use burn::tensor::wgpu::WgpuBackend;
    use std::sync::OnceLock;
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    GPU.get_or_init(|| {
        let opened = std::panic::catch_unwind(|| {
            Device::wgpu_options()
                .graphics_api(WgpuBackend::Vulkan)
                .init_with_setup()
        });
        let (device, setup) = match opened {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("the Vulkan driver panicked while opening".into()),
        };
        let info = setup.adapter.get_info();
        let adapter = format!(
            "{} ({:?} on {:?}, driver {} {})",
            info.name, info.device_type, info.backend, info.driver, info.driver_info
        );
        tracing::info!("GPU adapter: {adapter}");
        Ok(Gpu {
            device,
            adapter,
            software: info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu,
        })
    })
    .clone()
    .map_err(DeviceError::NoAdapter)
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<Gpu, DeviceError> {
    Err(DeviceError::NotCompiled("gpu"))
}

fn cpu() -> Device {
    // burn 0.22 marks ndarray deprecated in favour of `flex`; the project keeps
    // ndarray as its CPU default until flex is measured on the target.
    #[allow(deprecated)]
    let d = Device::ndarray();
    d
}

/// Open `backend`: the device, the backend it resolved to and the adapter's name.
pub fn resolve(backend: Backend) -> Result<Resolved, DeviceError> {
    let on_cpu = |fallback: Option<String>| Resolved {
        device: cpu(),
        backend: Backend::Cpu,
        adapter: "CPU (ndarray)".into(),
        fallback,
    };
    let on_gpu = |g: Gpu| Resolved {
        device: g.device,
        backend: Backend::Gpu,
        adapter: g.adapter,
        fallback: None,
    };
    match backend {
        Backend::Cpu => Ok(on_cpu(None)),
        Backend::Gpu => gpu().map(on_gpu),
        Backend::Auto => {
            let why = match gpu() {
                Ok(g) if !g.software => return Ok(on_gpu(g)),
                Ok(g) => format!(
                    "backend auto: the only Vulkan adapter is a software one ({}), slower than the CPU backend; the networks run on the CPU",
                    g.adapter
                ),
                Err(e) => format!("backend auto: {e}; the networks run on the CPU"),
            };
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| tracing::info!("{why}"));
            Ok(on_cpu(Some(why)))
        }
    }
}

/// The plain (inference) device for a backend.
pub fn device(backend: Backend) -> Result<Device, DeviceError> {
    resolve(backend).map(|r| r.device)
}

/// The backends compiled into this binary, CPU first (`auto` is not one).
pub fn compiled_backends() -> Vec<Backend> {
    let mut v = vec![Backend::Cpu];
    if cfg!(feature = "gpu") {
        v.push(Backend::Gpu);
    }
    v
}

/// The CPU device on which a network draws its initial weights before moving
/// to `device`: the same seed gives the same weights on every backend (each
/// backend's own generator draws different numbers), with `device`'s autodiff
/// (not its gradient-checkpointing strategy, which no network here uses).
/// `rl::mlp::init_device` is the same function for the learners, which this
/// crate's robot build does not link.
pub fn init_device(device: &Device) -> Device {
    if device.gradient_checkpointing_strategy().is_some() {
        cpu().autodiff()
    } else {
        cpu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_resolves_to_ndarray_and_auto_says_why_it_falls_back() {
        let r = resolve(Backend::Cpu).unwrap();
        assert_eq!(r.backend, Backend::Cpu);
        assert_eq!(r.adapter, "CPU (ndarray)");
        assert!(r.fallback.is_none());
        // Auto gives a device whichever way the adapter search goes, and says
        // why exactly when it lands on the CPU.
        let a = resolve(Backend::Auto).unwrap();
        assert_eq!(a.fallback.is_some(), a.backend == Backend::Cpu, "{a:?}");
        assert!(!a.adapter.is_empty());
        if let Some(why) = &a.fallback {
            assert!(why.contains("the networks run on the CPU"), "{why}");
        }
    }

    #[test]
    fn init_device_keeps_autodiff() {
        let plain = cpu();
        assert!(
            init_device(&plain)
                .gradient_checkpointing_strategy()
                .is_none()
        );
        assert!(
            init_device(&plain.autodiff())
                .gradient_checkpointing_strategy()
                .is_some()
        );
    }
}
