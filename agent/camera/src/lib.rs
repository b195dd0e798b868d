//! Live stereo cameras through GStreamer.
//!
//! A [`CameraSource`] runs a pipeline (a named [`Preset`] or one's own, in
//! gst-launch syntax) whose 8-bit gray appsinks deliver either side-by-side
//! frames (one UVC device with both eyes in one image, split here) or the
//! frames of two devices (paired by capture time within a maximum skew, the
//! rest dropped and counted, see [`pairing`]). Pairs carry the capture time
//! as their stamp, and the source reports its [`Health`]: frame rate, skew,
//! drops and latency. An error or the end of the stream ends a source;
//! reconnecting is starting a new one (the camera node does, with backoff).
//!
//! Rectification is not done here: the agent's camera stage applies the
//! calibrated rig's maps to the pairs this crate delivers.
#![forbid(unsafe_code)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod health;
pub mod pairing;
pub mod preset;
pub mod source;
pub mod video;

pub use gstreamer as gst;
pub use gstreamer_app as gst_app;
pub use health::Health;
pub use pairing::{Eye, Pairer};
pub use preset::{ConfigError, InputFormat, Preset, SourceConfig};
pub use source::{
    CameraError, CameraPair, CameraSource, Frame, Layout, split_side_by_side, unix_now_ns,
};
