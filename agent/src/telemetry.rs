//! Live telemetry in rerun.
//!
//! Entity tree (one place, so every node logs the same way):
//! - `world/room`, `world/obstacles`: static geometry of the twin (boxes, metres, z up);
//! - `world/robot`: robot pose (`Transform3D`, body x forward, y left, z up);
//! - `world/robot/camera`: left camera (`Pinhole`, OpenCV axes) with `image`
//!   (grayscale), `depth/stereo` (semi-global matching), `depth/mono` (the
//!   network's coarse map) and `depth/truth` (the twin's exact depth), all
//!   `DepthImage` in millimetres;
//! - `world/trajectory`: flown path;
//! - `plots/<name>`: scalars (speed, clearance, learner loss, mono error, ...);
//! - `events`: text log of collisions, resets and mode switches.
//!
//! Timelines: `frame` (camera frame index) and `sim_time` (seconds).
//!
//! A run that flies several arms side by side (`agent persist`) gives each arm a
//! scope, `<arm>/world/...`, `<arm>/plots/...`, `<arm>/events`, and logs the
//! figures it compares under `compare/<figure>/<arm>` so they share one plot.

use rerun::{RecordingStream, RecordingStreamBuilder};
use sim::{StereoFrame, StereoRig, World};
use std::path::PathBuf;
use thiserror::Error;

/// Where telemetry goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// Write an .rrd file.
    Save(PathBuf),
    /// Stream to a running viewer or server over gRPC
    /// (`rerun+http://HOST:PORT/proxy`; a viewer started with `rerun` listens on 9876).
    Connect(String),
    /// Start a viewer (the `rerun` executable on PATH) and stream to it.
    Spawn,
    /// No telemetry.
    Off,
}

impl Sink {
    /// Where it goes, for messages.
    pub fn describe(&self) -> String {
        match self {
            Sink::Save(p) => format!("{} (view with `rerun {}`)", p.display(), p.display()),
            Sink::Connect(url) => format!("streamed to {url}"),
            Sink::Spawn => "streamed to a spawned viewer".into(),
            Sink::Off => "off".into(),
        }
    }
}

/// A telemetry failure.
#[derive(Debug, Error)]
pub enum TelemetryError {
    /// Opening the sink failed.
    #[error("cannot open rerun sink {sink}: {reason}")]
    Open { sink: String, reason: String },
    /// Logging failed.
    #[error("rerun logging failed at {path}: {reason}")]
    Log { path: String, reason: String },
}

/// A rerun recording (or nothing, when off).
#[derive(Clone)]
pub struct Telemetry {
    rec: Option<RecordingStream>,
    scope: String,
}

fn log_err(path: &str, e: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Log {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

impl Telemetry {
    /// Open the sink.
    pub fn open(sink: &Sink, app: &'static str) -> Result<Self, TelemetryError> {
        let open_err = |e: rerun::RecordingStreamError| TelemetryError::Open {
            sink: sink.describe(),
            reason: e.to_string(),
        };
        let rec = match sink {
            Sink::Off => None,
            Sink::Connect(url) => Some(
                RecordingStreamBuilder::new(app)
                    .connect_grpc_opts(url.clone())
                    .map_err(open_err)?,
            ),
            Sink::Spawn => Some(RecordingStreamBuilder::new(app).spawn().map_err(open_err)?),
            Sink::Save(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| TelemetryError::Open {
                        sink: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                }
                // A file has no viewer waiting on it: batch rows for 2 s rather than
                // rerun's 200 ms, so each chunk (which carries its own schema) holds
                // more rows (one simulated minute of `agent persist`: 12.9 -> 4.5 MB).
                let batching = rerun::log::ChunkBatcherConfig {
                    flush_tick: std::time::Duration::from_secs(2),
                    ..rerun::log::ChunkBatcherConfig::DEFAULT
                };
                Some(
                    RecordingStreamBuilder::new(app)
                        .batcher_config(batching)
                        .save(path)
                        .map_err(|e| TelemetryError::Open {
                            sink: path.display().to_string(),
                            reason: e.to_string(),
                        })?,
                )
            }
        };
        Ok(Self {
            rec,
            scope: String::new(),
        })
    }

    /// Telemetry that records nothing.
    pub fn off() -> Self {
        Self {
            rec: None,
            scope: String::new(),
        }
    }

    /// The same recording with every entity path under `scope/`.
    pub fn scoped(&self, scope: &str) -> Self {
        Self {
            rec: self.rec.clone(),
            scope: format!("{scope}/"),
        }
    }

    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.scope)
    }

    /// Log one scalar at an absolute entity path (for comparisons across scopes).
    pub fn scalar_at(&self, path: &str, value: f64) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        if !value.is_finite() {
            return Ok(());
        }
        r.log(path, &rerun::Scalars::single(value))
            .map_err(|e| log_err(path, e))
    }

    /// Whether anything is recorded.
    pub fn enabled(&self) -> bool {
        self.rec.is_some()
    }

    /// Set the current time on both timelines.
    pub fn set_time(&self, frame: i64, sim_time: f64) {
        if let Some(r) = &self.rec {
            r.set_time_sequence("frame", frame);
            r.set_duration_secs("sim_time", sim_time);
        }
    }

    /// Log the room and obstacles (static).
    pub fn log_world(&self, world: &World) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        r.log_static(
            self.path("world").as_str(),
            &rerun::ViewCoordinates::RIGHT_HAND_Z_UP(),
        )
        .map_err(|e| log_err("world", e))?;
        let [l, w, h] = world.size.map(|v| v as f32);
        r.log_static(
            self.path("world/room").as_str(),
            &rerun::Boxes3D::from_centers_and_half_sizes(
                [(l / 2.0, 0.0, h / 2.0)],
                [(l / 2.0, w / 2.0, h / 2.0)],
            ),
        )
        .map_err(|e| log_err("world/room", e))?;
        let (mut centers, mut halves) = (Vec::new(), Vec::new());
        for ob in &world.obstacles {
            let (mn, mx) = match ob.shape {
                sim::world::Shape::Box { min, max } => (min, max),
                sim::world::Shape::Cylinder { cx, cy, r, z0, z1 } => {
                    ([cx - r, cy - r, z0], [cx + r, cy + r, z1])
                }
            };
            centers.push([0, 1, 2].map(|a| ((mn[a] + mx[a]) / 2.0) as f32));
            halves.push([0, 1, 2].map(|a| ((mx[a] - mn[a]) / 2.0) as f32));
        }
        r.log_static(
            self.path("world/obstacles").as_str(),
            &rerun::Boxes3D::from_centers_and_half_sizes(centers, halves),
        )
        .map_err(|e| log_err("world/obstacles", e))
    }

    /// Log the camera model and its mounting (static).
    pub fn log_camera(&self, rig: &StereoRig) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        let k = rig.intrinsics;
        let m = sim::render::CAMERA_TO_BODY;
        // rerun takes the 3x3 matrix column-major.
        let cols = [0, 1, 2].map(|j| [0, 1, 2].map(|i| m[i][j] as f32));
        r.log_static(
            self.path("world/robot/camera").as_str(),
            &rerun::Transform3D::from_mat3x3(rerun::datatypes::Mat3x3::from(cols)),
        )
        .map_err(|e| log_err("world/robot/camera", e))?;
        r.log_static(
            self.path("world/robot/camera").as_str(),
            &rerun::Pinhole::from_focal_length_and_resolution(
                [k.fx as f32, k.fy as f32],
                [k.width as f32, k.height as f32],
            )
            .with_principal_point([k.cx as f32, k.cy as f32]),
        )
        .map_err(|e| log_err("world/robot/camera", e))
    }

    /// Log the robot pose: position (m) and attitude quaternion (w, x, y, z).
    pub fn log_pose(&self, position: [f64; 3], attitude: [f64; 4]) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        let [w, x, y, z] = attitude.map(|v| v as f32);
        r.log(
            self.path("world/robot").as_str(),
            &rerun::Transform3D::from_translation_rotation(
                position.map(|v| v as f32),
                rerun::Quaternion::from_xyzw([x, y, z, w]),
            ),
        )
        .map_err(|e| log_err("world/robot", e))
    }

    /// Log the left image.
    pub fn log_image(&self, frame: &StereoFrame) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        let path = self.path("world/robot/camera/image");
        r.log(
            path.as_str(),
            &rerun::Image::from_l8(
                frame.left.clone(),
                [frame.width as u32, frame.height as u32],
            ),
        )
        .map_err(|e| log_err(&path, e))
    }

    /// Log a depth map (m; non-finite = unknown) as `world/robot/camera/depth/<which>`.
    pub fn log_depth(
        &self,
        which: &str,
        depth: &[f32],
        width: usize,
        height: usize,
    ) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        let bytes: Vec<u8> = depth
            .iter()
            .map(|&z| {
                if z.is_finite() && z > 0.0 {
                    (z * 1000.0).min(65535.0) as u16
                } else {
                    0
                }
            })
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let img = rerun::DepthImage::from_data_type_and_bytes(
            bytes,
            [width as u32, height as u32],
            rerun::ChannelDatatype::U16,
        )
        .with_meter(1000.0);
        let path = self.path(&format!("world/robot/camera/depth/{which}"));
        r.log(path.as_str(), &img).map_err(|e| log_err(&path, e))
    }

    /// Log the flown path so far.
    pub fn log_path(&self, points: &[[f32; 3]]) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        r.log(
            self.path("world/trajectory").as_str(),
            &rerun::LineStrips3D::new([points.to_vec()]),
        )
        .map_err(|e| log_err("world/trajectory", e))
    }

    /// Log one scalar under `plots/<name>`.
    pub fn scalar(&self, name: &str, value: f64) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        if !value.is_finite() {
            return Ok(());
        }
        let path = self.path(&format!("plots/{name}"));
        r.log(path.as_str(), &rerun::Scalars::single(value))
            .map_err(|e| log_err(&path, e))
    }

    /// Log an event line.
    pub fn event(&self, text: &str) -> Result<(), TelemetryError> {
        let Some(r) = &self.rec else { return Ok(()) };
        r.log(self.path("events").as_str(), &rerun::TextLog::new(text))
            .map_err(|e| log_err("events", e))
    }

    /// Write everything buffered to the sink.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        match &self.rec {
            Some(r) => r.flush_blocking().map_err(|e| log_err("flush", e)),
            None => Ok(()),
        }
    }
}
