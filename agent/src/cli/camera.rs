//! The live camera's command-line settings (`agent node camera`, `agent bench
//! --camera-*`): a settings file (`--camera-config`, TOML of
//! `camera::SourceConfig`) that the flags override.

use anyhow::{Context as _, Result};
use camera::{InputFormat, Preset, SourceConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct CameraArgs {
    /// camera node: a live stereo camera through GStreamer: sbs-uvc (one UVC
    /// device, both eyes side by side), two-v4l2 (two devices, paired by capture
    /// time), jetson-csi (two nvarguscamerasrc sensors), file (a side-by-side
    /// video or image sequence), test (videotestsrc), tcp-mjpeg (side-by-side
    /// MJPEG over TCP). Without it (and without --pipeline) the camera node is the twin.
    #[arg(long)]
    preset: Option<Preset>,
    /// camera node: a pipeline of one's own in gst-launch syntax, ending in
    /// 8-bit gray appsinks named `sbs`, or `left` and `right` (README, "Cameras").
    #[arg(long)]
    pipeline: Option<String>,
    /// camera node: a settings file (TOML: preset, device, width, height, fps, ...).
    #[arg(long)]
    camera_config: Option<PathBuf>,
    /// camera node: the V4L2 device (sbs-uvc; the left one for two-v4l2).
    #[arg(long)]
    camera_device: Option<String>,
    /// camera node, two-v4l2: the right V4L2 device.
    #[arg(long)]
    camera_device_right: Option<String>,
    /// camera node, jetson-csi: sensor ids of the left and right cameras.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    sensors: Option<Vec<u32>>,
    /// camera node, file: the video, or an image sequence (`pairs/%05d.png`).
    #[arg(long)]
    location: Option<String>,
    /// camera node, tcp-mjpeg: the camera's host.
    #[arg(long)]
    camera_host: Option<String>,
    /// camera node, tcp-mjpeg: the camera's port.
    #[arg(long)]
    camera_port: Option<u16>,
    /// camera node: width of one eye (px); must be the rig's.
    #[arg(long)]
    width: Option<u32>,
    /// camera node: height (px).
    #[arg(long)]
    height: Option<u32>,
    /// camera node: frames per second asked of the device.
    #[arg(long)]
    fps: Option<u32>,
    /// camera node, V4L2 presets: what the device sends (mjpeg or yuyv).
    #[arg(long)]
    format: Option<InputFormat>,
    /// camera node, two devices: largest capture-time difference of a pair (ms).
    #[arg(long)]
    max_skew_ms: Option<f64>,
    /// camera node, file: play at the file's frame rate (else as fast as read).
    #[arg(long)]
    realtime: bool,
    /// camera node: no pair for this long (ms) and the camera counts as lost
    /// (at least 2.5 frame periods).
    #[arg(long, default_value_t = 250)]
    stall_ms: u64,
    /// camera node: wait between attempts to start a lost camera again (ms).
    #[arg(long, default_value_t = 500)]
    retry_ms: u64,
}

impl CameraArgs {
    /// Whether a live camera was asked for.
    pub(crate) fn wanted(&self) -> bool {
        self.preset.is_some() || self.pipeline.is_some() || self.camera_config.is_some()
    }

    /// The source's settings: the file's, then the flags.
    pub(crate) fn source(&self) -> Result<SourceConfig> {
        let mut c = match &self.camera_config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the camera settings {}", p.display()))?;
                toml::from_str::<SourceConfig>(&text)
                    .with_context(|| format!("camera settings {}", p.display()))?
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

    /// The camera node's settings, if a live camera was asked for.
    pub(crate) fn node_options(&self) -> Result<Option<agent::camnode::CameraNodeOptions>> {
        if !self.wanted() {
            return Ok(None);
        }
        Ok(Some(agent::camnode::CameraNodeOptions {
            source: self.source()?,
            stall: Duration::from_millis(self.stall_ms.max(1)),
            retry: Duration::from_millis(self.retry_ms.max(1)),
            ..Default::default()
        }))
    }
}
