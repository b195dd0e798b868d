//! Named camera pipelines and the settings that fill them in.
//!
//! Every pipeline ends in gray `appsink`s (8-bit gray, or a YUV format whose
//! luma is read as the gray image): one named `sbs` for a
//! side-by-side frame (left eye in the left half), or two named `left` and
//! `right` for two devices. Whatever the device gives (MJPEG, YUYV, NV12) is
//! converted inside the pipeline. A custom pipeline (`--pipeline`) follows the
//! same naming; check one with `gst-launch-1.0`, replacing the appsinks by
//! `fakesink` (see the camera section of the README).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A named pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// One UVC device whose frame holds both eyes side by side (`v4l2src`,
    /// MJPEG or YUYV), split into left and right.
    SbsUvc,
    /// Two V4L2 devices, paired by capture time.
    TwoV4l2,
    /// A Jetson's two CSI cameras (`nvarguscamerasrc` sensors 0 and 1,
    /// converted by `nvvidconv`), paired by capture time.
    JetsonCsi,
    /// A side-by-side video file, or an image sequence (`%05d` in the name).
    File,
    /// GStreamer's test pattern, side by side (no camera needed).
    Test,
    /// A network camera: side-by-side MJPEG over TCP (`multipart`, as
    /// `multipartmux ! tcpserversink` sends it).
    TcpMjpeg,
}

impl Preset {
    /// Every preset, in the order the help lists them.
    pub const ALL: [Preset; 6] = [
        Preset::SbsUvc,
        Preset::TwoV4l2,
        Preset::JetsonCsi,
        Preset::File,
        Preset::Test,
        Preset::TcpMjpeg,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::SbsUvc => "sbs-uvc",
            Preset::TwoV4l2 => "two-v4l2",
            Preset::JetsonCsi => "jetson-csi",
            Preset::File => "file",
            Preset::Test => "test",
            Preset::TcpMjpeg => "tcp-mjpeg",
        }
    }

    /// Whether the source runs on its own clock (a device): the newest frame
    /// wins and late frames are dropped. A file is read as fast as it is
    /// consumed unless `realtime` is asked for.
    pub fn is_live(self) -> bool {
        !matches!(self, Preset::File)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Preset::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
                format!("unknown camera preset {s:?} (one of {})", names.join(", "))
            })
    }
}

/// What a V4L2 device sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// Motion JPEG (most UVC cameras at full rate).
    Mjpeg,
    /// Uncompressed YUYV 4:2:2.
    Yuyv,
}

impl FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mjpeg" => Ok(Self::Mjpeg),
            "yuyv" => Ok(Self::Yuyv),
            _ => Err(format!("unknown input format {s:?} (mjpeg or yuyv)")),
        }
    }
}

/// A camera source's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// The named pipeline.
    pub preset: Preset,
    /// A pipeline of one's own (gst-launch syntax, appsinks named `sbs`, or
    /// `left` and `right`); replaces the preset's.
    pub pipeline: Option<String>,
    /// `sbs-uvc`: the device; `two-v4l2`: the left device.
    pub device: String,
    /// `two-v4l2`: the right device.
    pub device_right: String,
    /// `jetson-csi`: sensor ids of the left and right cameras.
    pub sensors: [u32; 2],
    /// `file`: the video, or an image sequence such as `pairs/%05d.png`.
    pub location: String,
    /// `tcp-mjpeg`: the camera's host and port.
    pub host: String,
    /// `tcp-mjpeg`: port.
    pub port: u16,
    /// Width of one eye (px).
    pub width: u32,
    /// Height (px).
    pub height: u32,
    /// Frames per second asked of the device (image sequences: the rate they
    /// are stamped at).
    pub fps: u32,
    /// What a V4L2 device sends.
    pub format: InputFormat,
    /// Largest capture-time difference between the two eyes of a pair (ms),
    /// for two-device sources.
    pub max_skew_ms: f64,
    /// Play a file at its own frame rate instead of as fast as it is read.
    pub realtime: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            preset: Preset::SbsUvc,
            pipeline: None,
            device: "/dev/video0".into(),
            device_right: "/dev/video1".into(),
            sensors: [0, 1],
            location: String::new(),
            host: "127.0.0.1".into(),
            port: 5000,
            width: 640,
            height: 480,
            fps: 30,
            format: InputFormat::Mjpeg,
            max_skew_ms: 5.0,
            realtime: false,
        }
    }
}

/// Why a configuration cannot make a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range or missing.
    #[error("camera settings: {0}")]
    Invalid(String),
}

/// The tail every branch ends in: the luma plane in a format the source reads
/// directly ([`crate::source::GRAY_CAPS`]; `videoconvert` passes such formats
/// through and converts any other).
fn gray_sink(name: &str, live: bool, sync: bool) -> String {
    // A live camera keeps only the newest frame (lowest latency); a file is
    // read with back-pressure, so that no frame is lost.
    let (max, drop) = if live { (1, true) } else { (2, false) };
    format!(
        "videoconvert ! {} ! appsink name={name} sync={sync} max-buffers={max} drop={drop} emit-signals=false",
        crate::source::GRAY_CAPS
    )
}

/// Quote a value for gst-launch syntax.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl SourceConfig {
    /// Whether the source runs on its own clock.
    pub fn is_live(&self) -> bool {
        match &self.pipeline {
            Some(p) => !p.contains("filesrc"),
            None => self.preset.is_live(),
        }
    }

    /// Checks the values a pipeline is built from.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.pipeline.is_none() {
            if !(16..=8192).contains(&self.width) || !(16..=8192).contains(&self.height) {
                return bad(format!(
                    "eye size {}x{} must be 16..8192 on each side",
                    self.width, self.height
                ));
            }
            if !(1..=1000).contains(&self.fps) {
                return bad(format!("fps {} must be 1..1000", self.fps));
            }
            if self.preset == Preset::File && self.location.is_empty() {
                return bad("the file preset needs a location (--location FILE)".into());
            }
        }
        if !(self.max_skew_ms.is_finite() && self.max_skew_ms >= 0.0) {
            return bad(format!(
                "max skew {} ms must be a non-negative number",
                self.max_skew_ms
            ));
        }
        Ok(())
    }

    /// The gst-launch description of the source.
    pub fn pipeline_description(&self) -> Result<String, ConfigError> {
        self.validate()?;
        if let Some(p) = &self.pipeline {
            return Ok(p.clone());
        }
        let (w, h, fps) = (self.width, self.height, self.fps);
        let live = self.is_live();
        let v4l2 = |dev: &str, width: u32| match self.format {
            InputFormat::Mjpeg => format!(
                "v4l2src device={} ! image/jpeg,width={width},height={h},framerate={fps}/1 ! jpegdec",
                quoted(dev)
            ),
            InputFormat::Yuyv => format!(
                "v4l2src device={} ! video/x-raw,format=YUY2,width={width},height={h},framerate={fps}/1",
                quoted(dev)
            ),
        };
        Ok(match self.preset {
            Preset::SbsUvc => format!(
                "{} ! {}",
                v4l2(&self.device, 2 * w),
                gray_sink("sbs", true, false)
            ),
            Preset::TwoV4l2 => format!(
                "{} ! {} {} ! {}",
                v4l2(&self.device, w),
                gray_sink("left", true, false),
                v4l2(&self.device_right, w),
                gray_sink("right", true, false)
            ),
            Preset::JetsonCsi => {
                let csi = |id: u32| {
                    format!(
                        "nvarguscamerasrc sensor-id={id} ! video/x-raw(memory:NVMM),width={w},height={h},framerate={fps}/1 ! nvvidconv"
                    )
                };
                format!(
                    "{} ! {} {} ! {}",
                    csi(self.sensors[0]),
                    gray_sink("left", true, false),
                    csi(self.sensors[1]),
                    gray_sink("right", true, false)
                )
            }
            Preset::File => {
                let loc = &self.location;
                let src = if loc.contains('%') {
                    let lower = loc.to_ascii_lowercase();
                    let media = if lower.ends_with(".png") {
                        "image/png"
                    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
                        "image/jpeg"
                    } else {
                        return Err(ConfigError::Invalid(format!(
                            "image sequence {loc}: name the frames .png, .jpg or .jpeg"
                        )));
                    };
                    format!(
                        "multifilesrc location={} index=0 caps={media},framerate={fps}/1",
                        quoted(loc)
                    )
                } else {
                    format!("filesrc location={}", quoted(loc))
                };
                format!(
                    "{src} ! decodebin ! {}",
                    gray_sink("sbs", live, self.realtime)
                )
            }
            Preset::Test => format!(
                "videotestsrc is-live=true pattern=smpte ! video/x-raw,width={},height={h},framerate={fps}/1 ! {}",
                2 * w,
                gray_sink("sbs", true, false)
            ),
            Preset::TcpMjpeg => format!(
                "tcpclientsrc host={} port={} ! multipartdemux ! jpegdec ! {}",
                quoted(&self.host),
                self.port,
                gray_sink("sbs", true, false)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_their_names() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        let e = "usb".parse::<Preset>().unwrap_err();
        assert!(e.contains("sbs-uvc") && e.contains("usb"), "{e}");
    }

    #[test]
    fn side_by_side_asks_the_device_for_both_eyes() {
        let c = SourceConfig {
            width: 640,
            height: 480,
            ..SourceConfig::default()
        };
        let p = c.pipeline_description().unwrap();
        assert!(p.contains("width=1280,height=480"), "{p}");
        assert!(p.contains("appsink name=sbs"), "{p}");
    }

    #[test]
    fn file_needs_a_location_and_a_known_image_type() {
        let mut c = SourceConfig {
            preset: Preset::File,
            ..SourceConfig::default()
        };
        assert!(c.pipeline_description().is_err());
        c.location = "frames/%05d.bmp".into();
        assert!(
            c.pipeline_description()
                .unwrap_err()
                .to_string()
                .contains(".png")
        );
        c.location = "frames/%05d.png".into();
        assert!(c.pipeline_description().unwrap().contains("image/png"));
    }
}
