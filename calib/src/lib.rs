//! Calibration of the stereo rig: camera models and the rig files the rest of the
//! stack (and OpenCV and ROS) read.
//!
//! Detection, mono/stereo calibration and rectification build on these.
// Unsafe code is denied (workspace lints) except in the AVX2 remap kernel and
// its one call in `rectify`.

#[cfg(feature = "capture")]
pub mod capture;
pub mod detect;
pub mod model;
pub mod mono;
pub mod png_io;
pub mod rectify;
#[cfg(target_arch = "x86_64")]
mod remap_avx2;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod remap_neon;
pub mod rig;
pub mod stereo;
pub mod synthetic;
pub mod yaml;

pub use model::{Camera, CameraModel, KannalaBrandt, LensKind, PinholeRadTan};
pub use rig::{Rig, RigError};
