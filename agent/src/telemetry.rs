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
#[cfg(feature = "twin")]
use sim::{StereoFrame, StereoRig, World};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
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

/// A queue with a fixed capacity that never blocks the producer: when full, the
/// oldest item is dropped and counted. The control loop logs into it; a
/// worker thread drains it into rerun.
pub struct DropOldest<T> {
    items: Mutex<VecDeque<T>>,
    ready: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    closed: AtomicBool,
}

impl<T> DropOldest<T> {
    /// An empty queue holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item`, dropping the oldest if full. Never waits for the consumer.
    pub fn push(&self, item: T) {
        let mut q = self.lock();
        if q.len() >= self.capacity {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(item);
        drop(q);
        self.ready.notify_one();
    }

    /// The oldest item, waiting up to `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let mut q = self.lock();
        if q.is_empty() {
            q = self
                .ready
                .wait_timeout(q, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        q.pop_front()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One logging call, serialized in the caller's thread.
struct Item {
    path: String,
    static_: bool,
    time: Option<(i64, f64)>,
    batches: Vec<rerun::SerializedComponentBatch>,
}

/// The recording stream behind its queue and worker thread.
struct Logger {
    rec: RecordingStream,
    queue: Arc<DropOldest<Item>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    written: Arc<AtomicU64>,
}

/// How many logging calls may wait for the worker (about 10 s of a flight's telemetry).
const QUEUE: usize = 4096;

impl Logger {
    fn start(rec: RecordingStream) -> Arc<Logger> {
        let queue = Arc::new(DropOldest::<Item>::new(QUEUE));
        let written = Arc::new(AtomicU64::new(0));
        let worker = {
            let (rec, queue, written) = (rec.clone(), queue.clone(), written.clone());
            std::thread::Builder::new()
                .name("telemetry".into())
                .spawn(move || {
                    loop {
                        let Some(item) = queue.pop_timeout(Duration::from_millis(50)) else {
                            if queue.closed.load(Ordering::Relaxed) {
                                break;
                            }
                            continue;
                        };
                        if let Some((frame, t)) = item.time {
                            rec.set_time_sequence("frame", frame);
                            rec.set_duration_secs("sim_time", t);
                        }
                        if let Err(e) = rec.log_serialized_batches(
                            item.path.as_str(),
                            item.static_,
                            item.batches,
                        ) {
                            tracing::warn!("telemetry: {}: {e}", item.path);
                        }
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .ok()
        };
        Arc::new(Logger {
            rec,
            queue,
            worker: Mutex::new(worker),
            written,
        })
    }

    /// Waits until the worker has taken everything queued (or `timeout`).
    fn drain(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.queue.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.drain(Duration::from_secs(30));
        self.queue.closed.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = w.join();
        }
        let _ = self.rec.flush_blocking();
    }
}

/// A rerun recording (or nothing, when off). Logging calls serialize their
/// data and queue it (bounded, oldest dropped and counted): they never wait
/// for the sink, however slow the viewer or the disk.
pub struct Telemetry {
    rec: Option<Arc<Logger>>,
    scope: String,
    /// This handle's current time (rerun's timelines are per thread; each clone
    /// keeps its own, like a thread would).
    time: Mutex<Option<(i64, f64)>>,
}

impl Clone for Telemetry {
    fn clone(&self) -> Self {
        Self {
            rec: self.rec.clone(),
            scope: self.scope.clone(),
            time: Mutex::new(*self.time.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

/// A pinhole camera model of focal lengths `f`, principal point `c` and image `size` (px).
fn pinhole(f: [f64; 2], c: [f64; 2], size: [usize; 2]) -> rerun::Pinhole {
    rerun::Pinhole::from_focal_length_and_resolution(
        [f[0] as f32, f[1] as f32],
        [size[0] as f32, size[1] as f32],
    )
    .with_principal_point([c[0] as f32, c[1] as f32])
}

/// The camera's mounting on the body (optical frame to body frame).
fn camera_mount() -> rerun::Transform3D {
    let m = types::CAMERA_TO_BODY;
    // rerun takes the 3x3 matrix column-major.
    let cols = [0, 1, 2].map(|j| [0, 1, 2].map(|i| m[i][j] as f32));
    rerun::Transform3D::from_mat3x3(rerun::datatypes::Mat3x3::from(cols))
}

fn log_err(path: &str, e: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Log {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

/// The default viewer layout: the 3-D world beside the camera image with the
/// stereo and mono depth, the plots and the event log — one tab per scope
/// (`agent persist`'s arms) plus the comparison plots when there are scopes.
pub fn layout(scopes: &[&str]) -> rerun::blueprint::Blueprint {
    use rerun::blueprint::{
        Blueprint, ContainerLike, Horizontal, Spatial2DView, Spatial3DView, Tabs, TextLogView,
        TimeSeriesView, Vertical,
    };
    let one = |prefix: &str, name: &str| -> ContainerLike {
        let p = |s: &str| format!("{prefix}/{s}");
        Horizontal::new([
            Spatial3DView::new("world").with_origin(p("world")).into(),
            Vertical::new([
                Horizontal::new([
                    Spatial2DView::new("camera")
                        .with_origin(p("world/robot/camera/image"))
                        .into(),
                    Spatial2DView::new("stereo depth")
                        .with_origin(p("world/robot/camera/depth/stereo"))
                        .into(),
                    Spatial2DView::new("mono depth")
                        .with_origin(p("world/robot/camera/depth/mono"))
                        .into(),
                ])
                .into(),
                TimeSeriesView::new("plots").with_origin(p("plots")).into(),
                TextLogView::new("events").with_origin(p("events")).into(),
            ])
            .with_row_shares([1.0, 1.5, 0.6])
            .into(),
        ])
        .with_column_shares([1.2, 1.0])
        .with_name(name)
        .into()
    };
    if scopes.is_empty() {
        Blueprint::new(one("", "flight"))
    } else {
        let mut tabs: Vec<ContainerLike> =
            scopes.iter().map(|s| one(&format!("/{s}"), s)).collect();
        tabs.push(
            TimeSeriesView::new("compare")
                .with_origin("/compare")
                .into(),
        );
        Blueprint::new(Tabs::new(tabs))
    }
}

/// A long flight's trajectory for rerun, each point logged a bounded number
/// of times: the points are cut into stretches of [`Trajectory::STRETCH`];
/// a finished stretch is logged once under its own entity, and the open one
/// (at most a stretch long) again every [`Trajectory::OPEN_EVERY`] points. Data
/// grow linearly with the flight, never with its square (re-logging the whole
/// path every few states made an hour's .rrd several gigabytes).
#[derive(Debug, Default)]
pub struct Trajectory {
    open: Vec<[f32; 3]>,
    done: u64,
}

/// What to log for the trajectory.
#[derive(Debug, Clone, PartialEq)]
pub enum TrajectoryPiece {
    /// A finished stretch (its first point is the previous stretch's last).
    Done {
        /// Its number, from 0.
        index: u64,
        /// Its points.
        points: Vec<[f32; 3]>,
    },
    /// The stretch being flown.
    Open(Vec<[f32; 3]>),
}

impl Trajectory {
    /// Points per finished stretch.
    pub const STRETCH: usize = 100;
    /// The open stretch is logged again every this many points.
    pub const OPEN_EVERY: usize = 10;

    /// The stretch being flown, to log when the flight ends.
    pub fn open_piece(&self) -> TrajectoryPiece {
        TrajectoryPiece::Open(self.open.clone())
    }

    /// Add a point; what to log now, if anything.
    pub fn push(&mut self, p: [f32; 3]) -> Option<TrajectoryPiece> {
        self.open.push(p);
        if self.open.len() > Self::STRETCH {
            let points = std::mem::replace(&mut self.open, vec![p]);
            let index = self.done;
            self.done += 1;
            return Some(TrajectoryPiece::Done { index, points });
        }
        self.open
            .len()
            .is_multiple_of(Self::OPEN_EVERY)
            .then(|| TrajectoryPiece::Open(self.open.clone()))
    }
}

/// Telemetry as the observer of the loop's stages on the in-process
/// executor: what a stage says becomes an event on the timeline.
pub struct TelemetryNotes<'a>(pub &'a Telemetry);

impl crate::pipeline::Observer for TelemetryNotes<'_> {
    fn note(
        &mut self,
        _stage: &'static str,
        _frame: &bus::wire::Header,
        text: &str,
    ) -> anyhow::Result<()> {
        Ok(self.0.event(text)?)
    }
}

impl Telemetry {
    /// Open the sink, with the default layout.
    pub fn open(sink: &Sink, app: &'static str) -> Result<Self, TelemetryError> {
        Self::open_with_layout(sink, app, &[])
    }

    /// Open the sink; the viewer's default layout has one tab per scope.
    pub fn open_with_layout(
        sink: &Sink,
        app: &'static str,
        scopes: &[&str],
    ) -> Result<Self, TelemetryError> {
        let builder = || RecordingStreamBuilder::new(app).with_default_blueprint(layout(scopes));
        let open_err = |e: rerun::RecordingStreamError| TelemetryError::Open {
            sink: sink.describe(),
            reason: e.to_string(),
        };
        let rec = match sink {
            Sink::Off => None,
            Sink::Connect(url) => Some(builder().connect_grpc_opts(url.clone()).map_err(open_err)?),
            Sink::Spawn => Some(builder().spawn().map_err(open_err)?),
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
                Some(builder().batcher_config(batching).save(path).map_err(|e| {
                    TelemetryError::Open {
                        sink: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?)
            }
        };
        Ok(Self {
            rec: rec.map(Logger::start),
            scope: String::new(),
            time: Mutex::new(None),
        })
    }

    /// Telemetry that records nothing.
    pub fn off() -> Self {
        Self {
            rec: None,
            scope: String::new(),
            time: Mutex::new(None),
        }
    }

    /// The same recording with every entity path under `scope/`.
    pub fn scoped(&self, scope: &str) -> Self {
        Self {
            rec: self.rec.clone(),
            scope: format!("{scope}/"),
            time: Mutex::new(*self.time.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }

    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.scope)
    }

    /// Queues `data` for `path`, stamped with this handle's current time.
    fn submit<AS: ?Sized + rerun::AsComponents>(&self, path: &str, static_: bool, data: &AS) {
        let Some(l) = &self.rec else { return };
        l.queue.push(Item {
            path: path.to_string(),
            static_,
            time: *self.time.lock().unwrap_or_else(|p| p.into_inner()),
            batches: data.as_serialized_batches(),
        });
    }

    /// Logging calls dropped because the queue was full (the sink fell behind).
    pub fn dropped(&self) -> u64 {
        self.rec.as_ref().map_or(0, |l| l.queue.dropped())
    }

    /// Logging calls handed to rerun so far.
    pub fn written(&self) -> u64 {
        self.rec
            .as_ref()
            .map_or(0, |l| l.written.load(Ordering::Relaxed))
    }

    /// Log one scalar at an absolute entity path (for comparisons across scopes).
    pub fn scalar_at(&self, path: &str, value: f64) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        if !value.is_finite() {
            return Ok(());
        }
        self.submit(path, false, &rerun::Scalars::single(value));
        Ok(())
    }

    /// Whether anything is recorded.
    pub fn enabled(&self) -> bool {
        self.rec.is_some()
    }

    /// Set the current time on both timelines.
    pub fn set_time(&self, frame: i64, sim_time: f64) {
        *self.time.lock().unwrap_or_else(|p| p.into_inner()) = Some((frame, sim_time));
    }

    /// Log the room and obstacles (static).
    #[cfg(feature = "twin")]
    pub fn log_world(&self, world: &World) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        self.submit(
            self.path("world").as_str(),
            true,
            &rerun::ViewCoordinates::RIGHT_HAND_Z_UP(),
        );
        let [l, w, h] = world.size.map(|v| v as f32);
        self.submit(
            self.path("world/room").as_str(),
            true,
            &rerun::Boxes3D::from_centers_and_half_sizes(
                [(l / 2.0, 0.0, h / 2.0)],
                [(l / 2.0, w / 2.0, h / 2.0)],
            ),
        );
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
        self.submit(
            self.path("world/obstacles").as_str(),
            true,
            &rerun::Boxes3D::from_centers_and_half_sizes(centers, halves),
        );
        Ok(())
    }

    /// Log the camera model and its mounting (static).
    #[cfg(feature = "twin")]
    pub fn log_camera(&self, rig: &StereoRig) -> Result<(), TelemetryError> {
        let k = rig.intrinsics;
        let path = self.path("world/robot/camera");
        self.submit(&path, true, &camera_mount());
        self.submit(
            &path,
            true,
            &pinhole([k.fx, k.fy], [k.cx, k.cy], [k.width, k.height]),
        );
        Ok(())
    }

    /// Log the robot pose: position (m) and attitude quaternion (w, x, y, z).
    pub fn log_pose(&self, position: [f64; 3], attitude: [f64; 4]) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        let [w, x, y, z] = attitude.map(|v| v as f32);
        self.submit(
            self.path("world/robot").as_str(),
            false,
            &rerun::Transform3D::from_translation_rotation(
                position.map(|v| v as f32),
                rerun::Quaternion::from_xyzw([x, y, z, w]),
            ),
        );
        Ok(())
    }

    /// Log the left image of a twin frame.
    #[cfg(feature = "twin")]
    pub fn log_image(&self, frame: &StereoFrame) -> Result<(), TelemetryError> {
        self.log_left(&frame.left, frame.width, frame.height)
    }

    /// Log the left image (8-bit gray, `width` x `height`).
    pub fn log_left(&self, left: &[u8], width: usize, height: usize) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        let path = self.path("world/robot/camera/image");
        self.submit(
            path.as_str(),
            false,
            &rerun::Image::from_l8(left.to_vec(), [width as u32, height as u32]),
        );
        Ok(())
    }

    /// Log a depth map (m; non-finite = unknown) as `world/robot/camera/depth/<which>`.
    pub fn log_depth(
        &self,
        which: &str,
        depth: &[f32],
        width: usize,
        height: usize,
    ) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
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
        self.submit(path.as_str(), false, &img);
        Ok(())
    }

    /// Log the flown path so far.
    pub fn log_path(&self, points: &[[f32; 3]]) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        self.submit(
            self.path("world/trajectory").as_str(),
            false,
            &rerun::LineStrips3D::new([points.to_vec()]),
        );
        Ok(())
    }

    /// Log what [`Trajectory::push`] asked for: a finished stretch of the
    /// trajectory under its own entity (logged once), or the open one.
    pub fn log_trajectory(&self, piece: &TrajectoryPiece) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        match piece {
            TrajectoryPiece::Done { index, points } => self.submit(
                self.path(&format!("world/trajectory/done/{index:06}"))
                    .as_str(),
                false,
                &rerun::LineStrips3D::new([points.clone()]),
            ),
            TrajectoryPiece::Open(points) => self.submit(
                self.path("world/trajectory").as_str(),
                false,
                &rerun::LineStrips3D::new([points.clone()]),
            ),
        }
        Ok(())
    }

    /// Log the right camera of the rig, `baseline` to the right of the left one (static).
    #[cfg(feature = "twin")]
    pub fn log_right_camera(&self, rig: &StereoRig) -> Result<(), TelemetryError> {
        let k = rig.intrinsics;
        let path = self.path("world/robot/camera/right");
        // In the left camera's frame (x right, y down, z forward).
        self.submit(
            &path,
            true,
            &rerun::Transform3D::from_translation([rig.baseline as f32, 0.0, 0.0]),
        );
        self.submit(
            &path,
            true,
            &pinhole([k.fx, k.fy], [k.cx, k.cy], [k.width, k.height]),
        );
        Ok(())
    }

    /// Log both cameras of a calibrated rig (from `calib`'s rig file): the left
    /// at `world/robot/camera`, the right at `world/robot/camera/right`, placed
    /// by the rig's extrinsics (static).
    pub fn log_rig(&self, rig: &calib::Rig) -> Result<(), TelemetryError> {
        let size = [rig.width, rig.height];
        let left = self.path("world/robot/camera");
        self.submit(&left, true, &camera_mount());
        let (l, rc) = (&rig.left, &rig.right);
        self.submit(
            &left,
            true,
            &pinhole([l.fx(), l.fy()], [l.cx(), l.cy()], size),
        );
        // x_right = R x_left + t: the right camera sits at -R^T t, rotated by R^T.
        let (r, t) = (rig.r, rig.t);
        let centre = [0, 1, 2].map(|i| -(r[0][i] * t[0] + r[1][i] * t[1] + r[2][i] * t[2]) as f32);
        // R^T, column-major for rerun: column j of R^T is row j of R.
        let rt_cols = [0, 1, 2].map(|j| [0, 1, 2].map(|i| r[j][i] as f32));
        let right = self.path("world/robot/camera/right");
        self.submit(
            &right,
            true,
            &rerun::Transform3D::from_translation_mat3x3(
                centre,
                rerun::datatypes::Mat3x3::from(rt_cols),
            ),
        );
        self.submit(
            &right,
            true,
            &pinhole([rc.fx(), rc.fy()], [rc.cx(), rc.cy()], size),
        );
        Ok(())
    }

    /// Log a depth scan (m per column, left to right) as a bar chart under `plots/scan/<which>`.
    pub fn log_scan(&self, which: &str, scan: &[f32]) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        let values: Vec<f64> = scan
            .iter()
            .map(|&d| if d.is_finite() { d as f64 } else { 0.0 })
            .collect();
        self.submit(
            self.path(&format!("plots/scan/{which}")).as_str(),
            false,
            &rerun::BarChart::new(values),
        );
        Ok(())
    }

    /// Log one scalar under `plots/<name>`.
    pub fn scalar(&self, name: &str, value: f64) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        if !value.is_finite() {
            return Ok(());
        }
        let path = self.path(&format!("plots/{name}"));
        self.submit(path.as_str(), false, &rerun::Scalars::single(value));
        Ok(())
    }

    /// Log an event line.
    pub fn event(&self, text: &str) -> Result<(), TelemetryError> {
        if self.rec.is_none() {
            return Ok(());
        }
        self.submit(
            self.path("events").as_str(),
            false,
            &rerun::TextLog::new(text),
        );
        Ok(())
    }

    /// Write everything buffered to the sink.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        match &self.rec {
            Some(l) => {
                l.drain(Duration::from_secs(30));
                l.rec.flush_blocking().map_err(|e| log_err("flush", e))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod trajectory_tests {
    use super::*;

    fn logged(n: usize) -> (usize, Vec<Vec<[f32; 3]>>) {
        let mut t = Trajectory::default();
        let (mut total, mut done) = (0, Vec::new());
        for k in 0..n {
            match t.push([k as f32, 0.0, 0.0]) {
                Some(TrajectoryPiece::Done { index, points }) => {
                    assert_eq!(index as usize, done.len());
                    total += points.len();
                    done.push(points);
                }
                Some(TrajectoryPiece::Open(points)) => total += points.len(),
                None => {}
            }
        }
        (total, done)
    }

    #[test]
    fn trajectory_points_are_logged_a_bounded_number_of_times() {
        let (short, _) = logged(1_000);
        let (long, done) = logged(100_000);
        // Linear in the flight: 100 times the points, about 100 times the data.
        let ratio = long as f64 / short as f64;
        assert!(
            (95.0..105.0).contains(&ratio),
            "{short} -> {long} points logged"
        );
        assert!(long < 100_000 * 7, "{long} points logged for 100000");
        // The finished stretches are the path, in order, each joined to the next.
        assert_eq!(done.len(), 100_000 / Trajectory::STRETCH - 1);
        for (k, d) in done.iter().enumerate() {
            assert_eq!(d.len(), Trajectory::STRETCH + 1);
            assert_eq!(d[0][0] as usize, k * Trajectory::STRETCH);
        }
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_oldest_and_never_blocks() {
        let q = DropOldest::new(3);
        for i in 0..10 {
            q.push(i);
        }
        assert_eq!(q.dropped(), 7);
        assert_eq!(q.len(), 3);
        let got: Vec<i32> = std::iter::from_fn(|| q.pop_timeout(Duration::ZERO)).collect();
        assert_eq!(got, vec![7, 8, 9], "the newest are kept, in order");
        assert!(q.pop_timeout(Duration::from_millis(1)).is_none());
    }

    #[test]
    fn a_consumer_wakes_when_an_item_arrives() {
        let q = Arc::new(DropOldest::new(8));
        let c = {
            let q = q.clone();
            std::thread::spawn(move || q.pop_timeout(Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(20));
        q.push(42);
        assert_eq!(c.join().unwrap(), Some(42));
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn logging_to_a_file_goes_through_the_queue() {
        let dir = std::env::temp_dir().join(format!("tel-queue-{}", std::process::id()));
        let path = dir.join("t.rrd");
        let tel = Telemetry::open(&Sink::Save(path.clone()), "queue_test").unwrap();
        for i in 0..100 {
            tel.set_time(i, i as f64 * 0.1);
            tel.scalar("x", i as f64).unwrap();
        }
        tel.flush().unwrap();
        assert_eq!(tel.written(), 100);
        assert_eq!(tel.dropped(), 0);
        drop(tel);
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
