//! Calibration of the stereo rig: camera models and the rig files the rest of the
//! stack (and OpenCV and ROS) read.
//!
//! Detection, mono/stereo calibration and rectification build on these.
#![forbid(unsafe_code)]

#[cfg(feature = "capture")]
pub mod capture;
pub mod detect;
pub mod model;
pub mod mono;
pub mod png_io;
pub mod rectify;
pub mod rig;
pub mod stereo;
pub mod synthetic;
pub mod yaml;

pub use model::{Camera, CameraModel, KannalaBrandt, LensKind, PinholeRadTan};
pub use rig::{Rig, RigError};
