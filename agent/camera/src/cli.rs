//! The camera's command-line settings, shared by every program that opens a
//! camera (`agent node camera`, `calib capture`): a settings file
//! (`--camera-config`, TOML of [`SourceConfig`]) that the flags override.

use crate::preset::{InputFormat, Preset, SourceConfig};
use std::path::PathBuf;

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The settings file could not be read.
    #[error("cannot read the camera settings {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The settings file is not valid TOML of the settings.
    #[error("camera settings {path}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error(transparent)]
    Invalid(#[from] crate::preset::ConfigError),
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// A live stereo camera through GStreamer: sbs-uvc (one UVC
    /// device, both eyes side by side), two-v4l2 (two devices, paired by capture
    /// time), jetson-csi (two nvarguscamerasrc sensors), file (a side-by-side
    /// video or image sequence), test (videotestsrc), tcp-mjpeg (side-by-side
    /// MJPEG over TCP).
    #[arg(long)]
    preset: Option<Preset>,
    /// a pipeline of one's own in gst-launch syntax, ending in
    /// 8-bit gray appsinks named `sbs`, or `left` and `right` (README, "Cameras").
    #[arg(long)]
    pipeline: Option<String>,
    /// a settings file (TOML: preset, device, width, height, fps, ...).
    #[arg(long)]
    camera_config: Option<PathBuf>,
    /// the V4L2 device (sbs-uvc; the left one for two-v4l2).
    #[arg(long)]
    camera_device: Option<String>,
    /// two-v4l2: the right V4L2 device.
    #[arg(long)]
    camera_device_right: Option<String>,
    /// jetson-csi: sensor ids of the left and right cameras.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    sensors: Option<Vec<u32>>,
    /// file: the video, or an image sequence (`pairs/%05d.png`).
    #[arg(long)]
    location: Option<String>,
    /// tcp-mjpeg: the camera's host.
    #[arg(long)]
    camera_host: Option<String>,
    /// tcp-mjpeg: the camera's port.
    #[arg(long)]
    camera_port: Option<u16>,
    /// width of one eye (px); must be the rig's.
    #[arg(long)]
    width: Option<u32>,
    /// height (px).
    #[arg(long)]
    height: Option<u32>,
    /// frames per second asked of the device.
    #[arg(long)]
    fps: Option<u32>,
    /// V4L2 presets: what the device sends (mjpeg or yuyv).
    #[arg(long)]
    format: Option<InputFormat>,
    /// two devices: largest capture-time difference of a pair (ms).
    #[arg(long)]
    max_skew_ms: Option<f64>,
    /// file: play at the file's frame rate (else as fast as read).
    #[arg(long)]
    realtime: bool,
}

impl SourceArgs {
    /// Whether a live camera was asked for.
    /// Any camera flag counts: a device given without a preset still means
    /// the live camera (with the default preset), never something else.
    pub fn wanted(&self) -> bool {
        self.preset.is_some()
            || self.pipeline.is_some()
            || self.camera_config.is_some()
            || self.camera_device.is_some()
            || self.camera_device_right.is_some()
            || self.sensors.is_some()
            || self.location.is_some()
            || self.camera_host.is_some()
            || self.camera_port.is_some()
            || self.width.is_some()
            || self.height.is_some()
            || self.fps.is_some()
            || self.format.is_some()
            || self.max_skew_ms.is_some()
            || self.realtime
    }

    /// The source's settings: the file's, then the flags.
    pub fn source(&self) -> Result<SourceConfig, SettingsError> {
        let mut c = match &self.camera_config {
            Some(p) => {
                let path = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<SourceConfig>(&text)
                    .map_err(|source| SettingsError::Parse { path, source })?
            }
            None => SourceConfig::default(),
        };
        if let Some(v) = self.preset {
            c.preset = v;
        }
        if let Some(v) = &self.pipeline {
            c.pipeline = Some(v.clone());
        }
        if let Some(v) = &self.camera_device {
            c.device = v.clone();
        }
        if let Some(v) = &self.camera_device_right {
            c.device_right = v.clone();
        }
        if let Some(v) = &self.sensors {
            c.sensors = [v[0], v[1]];
        }
        if let Some(v) = &self.location {
            c.location = v.clone();
        }
        if let Some(v) = &self.camera_host {
            c.host = v.clone();
        }
        if let Some(v) = self.camera_port {
            c.port = v;
        }
        if let Some(v) = self.width {
            c.width = v;
        }
        if let Some(v) = self.height {
            c.height = v;
        }
        if let Some(v) = self.fps {
            c.fps = v;
        }
        if let Some(v) = self.format {
            c.format = v;
        }
        if let Some(v) = self.max_skew_ms {
            c.max_skew_ms = v;
        }
        c.realtime |= self.realtime;
        c.validate()?;
        Ok(c)
    }
}
