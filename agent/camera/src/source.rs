//! A live stereo source: a GStreamer pipeline whose gray appsinks deliver
//! frames with their capture time; side-by-side frames are split, frames of
//! two devices paired by capture time.
//!
//! Capture time: a buffer's presentation time is running time on the
//! pipeline's clock (for `v4l2src`, when the driver captured the frame). It is
//! turned into the bus's clock (Unix time) with one offset per pipeline, taken
//! at its first frame, so that stamps of one run differ exactly as the
//! buffers' times do. Latency is the time the pair is handed to the consumer
//! minus the capture time. A live camera's consumer always gets the newest
//! pair; older ones that queued up while it was busy are dropped and counted.

use crate::health::{Health, HealthMeter};
use crate::pairing::{Eye, Pairer};
use crate::preset::{ConfigError, SourceConfig};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// What went wrong with a camera.
#[derive(Debug, Error)]
pub enum CameraError {
    /// The settings cannot make a pipeline.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// GStreamer itself could not start.
    #[error("GStreamer could not be initialised (is libgstreamer1.0 installed?)")]
    Init(#[source] gst::glib::Error),
    /// The pipeline description does not parse (unknown element, bad caps).
    #[error("camera pipeline does not parse: {reason}\n  pipeline: {pipeline}")]
    Parse {
        /// The description.
        pipeline: String,
        /// GStreamer's message.
        reason: String,
    },
    /// The pipeline has not the appsinks a stereo source needs.
    #[error(
        "camera pipeline needs an appsink named `sbs` (side by side) or two named `left` and `right`: {0}"
    )]
    Sinks(String),
    /// The pipeline would not start (device missing, busy, unsupported caps).
    #[error("camera did not start: {0}")]
    Start(String),
    /// The pipeline stopped with an error (device unplugged, stream lost).
    #[error("camera stopped: {0}")]
    Stopped(String),
    /// The source ended (end of a file, the sender closed the stream).
    #[error("camera stream ended")]
    EndOfStream,
    /// A video could not be written.
    #[error("cannot write the video {path}: {reason}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One gray image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width (px).
    pub width: usize,
    /// Height (px).
    pub height: usize,
    /// Pixels, row-major, no padding.
    pub data: Vec<u8>,
}

/// A raw (unrectified) stereo pair of one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraPair {
    /// Sequence number (from 0, per source).
    pub seq: u64,
    /// Width of one eye (px).
    pub width: usize,
    /// Height (px).
    pub height: usize,
    /// Left image, row-major.
    pub left: Vec<u8>,
    /// Right image.
    pub right: Vec<u8>,
    /// Capture time of the left image (Unix ns).
    pub stamp_ns: u64,
    /// When the pair reached the source (Unix ns).
    pub recv_ns: u64,
    /// Right capture time minus left (ns); 0 for a side-by-side frame.
    pub skew_ns: i64,
}

/// Unix time (ns).
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// How the pipeline delivers the eyes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One frame with both eyes side by side.
    SideBySide,
    /// Two devices.
    TwoDevices,
}

struct Arrival {
    eye: Option<Eye>,
    /// One frame of an eye, or the left and right halves of a side-by-side one.
    frames: Vec<Frame>,
    stamp_ns: u64,
    recv_ns: u64,
}

/// The formats an appsink may take: 8-bit gray, or any YUV layout whose luma
/// is the gray image (read straight from the buffer, so that a decoder's I420
/// or a camera's YUYV needs no conversion pass).
pub const GRAY_CAPS: &str =
    "video/x-raw,format={GRAY8,I420,YV12,NV12,NV21,Y42B,Y444,YUY2,YVYU,UYVY}";

/// Where the luma of a row lies: the first byte and the step between pixels.
fn luma_layout(info: &gst_video::VideoInfo) -> Result<(usize, usize), String> {
    use gst_video::VideoFormat as F;
    let off = info.offset().first().copied().unwrap_or(0);
    Ok(match info.format() {
        F::Gray8 | F::I420 | F::Yv12 | F::Nv12 | F::Nv21 | F::Y42b | F::Y444 => (off, 1),
        F::Yuy2 | F::Yvyu => (off, 2),
        F::Uyvy => (off + 1, 2),
        f => {
            return Err(format!(
                "the appsink gets {f:?}: end the branch with videoconvert ! {GRAY_CAPS}"
            ));
        }
    })
}

/// The gray image of a sample, cut into `parts` side-by-side images (1: the
/// whole frame; 2: left and right eyes), in one pass over the buffer.
fn read_gray(sample: &gst::Sample, parts: usize) -> Result<Vec<Frame>, String> {
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("caps {caps}: {e}"))?;
    let (start, step) = luma_layout(&info)?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    if parts == 0 || w % parts != 0 || w == 0 {
        return Err(format!("a frame {w} px wide cannot be cut into {parts}"));
    }
    let stride = usize::try_from(info.stride()[0]).map_err(|_| "negative stride")?;
    let buf = sample.buffer().ok_or("sample without buffer")?;
    let map = buf.map_readable().map_err(|_| "buffer not readable")?;
    let need = start + stride * h.saturating_sub(1) + (w - 1) * step + 1;
    if stride < w * step || map.len() < need {
        return Err(format!(
            "{w}x{h} frame with stride {stride} in a buffer of {} bytes",
            map.len()
        ));
    }
    let pw = w / parts;
    let mut out: Vec<Vec<u8>> = (0..parts).map(|_| Vec::with_capacity(pw * h)).collect();
    for y in 0..h {
        let row = &map[start + y * stride..];
        for (p, o) in out.iter_mut().enumerate() {
            let seg = &row[p * pw * step..];
            if step == 1 {
                o.extend_from_slice(&seg[..pw]);
            } else {
                // Every `step`-th byte, up to the last pixel's luma (the
                // buffer need not hold the bytes after it).
                o.extend(seg[..(pw - 1) * step + 1].chunks(step).map(|c| c[0]));
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|data| Frame {
            width: pw,
            height: h,
            data,
        })
        .collect())
}

/// The capture time of a sample in Unix ns (the receive time when the buffer
/// has no presentation time).
fn capture_stamp(
    sink: &gst_app::AppSink,
    sample: &gst::Sample,
    recv_ns: u64,
    offset: &OnceLock<i128>,
) -> u64 {
    let pts = sample.buffer().and_then(|b| b.pts());
    let (Some(pts), Some(base), Some(clock)) = (pts, sink.base_time(), sink.clock()) else {
        return recv_ns;
    };
    let off = *offset.get_or_init(|| i128::from(recv_ns) - i128::from(clock.time().nseconds()));
    let t = off + i128::from(base.nseconds()) + i128::from(pts.nseconds());
    u64::try_from(t).unwrap_or(recv_ns)
}

/// Splits a side-by-side frame into its halves.
pub fn split_side_by_side(frame: &Frame) -> Result<(Frame, Frame), String> {
    let (w2, h) = (frame.width, frame.height);
    if w2 % 2 != 0 || w2 < 2 {
        return Err(format!(
            "a side-by-side frame {w2} px wide cannot be halved"
        ));
    }
    let w = w2 / 2;
    let mut l = Vec::with_capacity(w * h);
    let mut r = Vec::with_capacity(w * h);
    for row in frame.data.chunks_exact(w2) {
        l.extend_from_slice(&row[..w]);
        r.extend_from_slice(&row[w..]);
    }
    Ok((
        Frame {
            width: w,
            height: h,
            data: l,
        },
        Frame {
            width: w,
            height: h,
            data: r,
        },
    ))
}

/// A running camera.
pub struct CameraSource {
    pipeline: gst::Pipeline,
    bus: gst::Bus,
    rx: mpsc::Receiver<Arrival>,
    layout: Layout,
    pairer: Pairer<(Frame, u64)>,
    health: HealthMeter,
    unreadable: Arc<AtomicU64>,
    overrun: Arc<AtomicU64>,
    last_problem: Arc<std::sync::Mutex<Option<String>>>,
    seq: u64,
    description: String,
    live: bool,
    /// Frames of pairs skipped for a newer one.
    skipped: u64,
    /// The end of the stream was posted (the queue is drained before it is reported).
    ended: bool,
}

impl CameraSource {
    /// Builds the pipeline of `cfg` and starts it.
    pub fn start(cfg: &SourceConfig) -> Result<Self, CameraError> {
        let description = cfg.pipeline_description()?;
        Self::start_description(&description, cfg.is_live(), cfg.max_skew_ms)
    }

    /// Starts a pipeline given as a gst-launch description (its appsinks named
    /// `sbs`, or `left` and `right`). `live`: keep only the newest frames when
    /// the consumer is late (else wait for it); `max_skew_ms`: pairing limit of
    /// two devices.
    pub fn start_description(
        description: &str,
        live: bool,
        max_skew_ms: f64,
    ) -> Result<Self, CameraError> {
        gst::init().map_err(CameraError::Init)?;
        let element = gst::parse::launch(description).map_err(|e| CameraError::Parse {
            pipeline: description.to_string(),
            reason: e.to_string(),
        })?;
        let pipeline = element.downcast::<gst::Pipeline>().map_err(|_| {
            CameraError::Sinks("the description is a single element, not a pipeline".into())
        })?;
        let sink = |name: &str| {
            pipeline
                .by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        };
        let (layout, sinks) = match (sink("sbs"), sink("left"), sink("right")) {
            (Some(s), None, None) => (Layout::SideBySide, vec![(None, s)]),
            (None, Some(l), Some(r)) => (
                Layout::TwoDevices,
                vec![(Some(Eye::Left), l), (Some(Eye::Right), r)],
            ),
            (s, l, r) => {
                let found: Vec<&str> = [
                    ("sbs", s.is_some()),
                    ("left", l.is_some()),
                    ("right", r.is_some()),
                ]
                .iter()
                .filter(|(_, f)| *f)
                .map(|(n, _)| *n)
                .collect();
                return Err(CameraError::Sinks(if found.is_empty() {
                    "it has none".into()
                } else {
                    format!("it has {}", found.join(", "))
                }));
            }
        };
        // Live: a bounded queue that drops when the consumer is late; a file:
        // the pipeline waits for the consumer.
        let (tx, rx) = mpsc::sync_channel::<Arrival>(if live { 4 } else { 2 });
        let offset = Arc::new(OnceLock::new());
        let unreadable = Arc::new(AtomicU64::new(0));
        let overrun = Arc::new(AtomicU64::new(0));
        let last_problem = Arc::new(std::sync::Mutex::new(None));
        for (eye, s) in sinks {
            let (tx, offset, unreadable, overrun, problem) = (
                tx.clone(),
                offset.clone(),
                unreadable.clone(),
                overrun.clone(),
                last_problem.clone(),
            );
            s.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let recv_ns = unix_now_ns();
                        let parts = if eye.is_none() { 2 } else { 1 };
                        let frames = match read_gray(&sample, parts) {
                            Ok(f) => f,
                            Err(e) => {
                                unreadable.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut p) = problem.lock() {
                                    *p = Some(e);
                                }
                                return Ok(gst::FlowSuccess::Ok);
                            }
                        };
                        let stamp_ns = capture_stamp(sink, &sample, recv_ns, &offset);
                        let a = Arrival {
                            eye,
                            frames,
                            stamp_ns,
                            recv_ns,
                        };
                        if live {
                            match tx.try_send(a) {
                                Ok(()) => {}
                                Err(mpsc::TrySendError::Full(_)) => {
                                    overrun.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(mpsc::TrySendError::Disconnected(_)) => {
                                    return Err(gst::FlowError::Flushing);
                                }
                            }
                        } else {
                            tx.send(a).map_err(|_| gst::FlowError::Flushing)?;
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        let bus = pipeline
            .bus()
            .ok_or_else(|| CameraError::Start("the pipeline has no message bus".into()))?;
        let source = Self {
            pipeline,
            bus,
            rx,
            layout,
            // Up to a second of frames at 30 fps waits for the other camera.
            pairer: Pairer::new((max_skew_ms * 1e6) as u64, 30),
            health: HealthMeter::default(),
            unreadable,
            overrun,
            last_problem,
            seq: 0,
            description: description.to_string(),
            live,
            skipped: 0,
            ended: false,
        };
        if source.pipeline.set_state(gst::State::Playing).is_err() {
            let why = source
                .bus
                .timed_pop_filtered(
                    gst::ClockTime::from_mseconds(500),
                    &[gst::MessageType::Error],
                )
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(error_text(e)),
                    _ => None,
                })
                .unwrap_or_else(|| "the pipeline refused to play".into());
            let _ = source.pipeline.set_state(gst::State::Null);
            return Err(CameraError::Start(why));
        }
        Ok(source)
    }

    /// How the eyes arrive.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The pipeline that runs (gst-launch syntax).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The GStreamer pipeline (to feed an `appsrc` in tests, or inspect).
    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Frame rate, skew, drops and latency so far.
    pub fn health(&self) -> Health {
        let p = self.pairer.stats();
        let mut h = self.health.health();
        h.unreadable = self.unreadable.load(Ordering::Relaxed);
        h.dropped =
            p.dropped() + self.overrun.load(Ordering::Relaxed) + self.skipped + h.unreadable;
        h
    }

    /// Why frames were unreadable, if they were.
    pub fn last_problem(&self) -> Option<String> {
        self.last_problem.lock().ok().and_then(|p| p.clone())
    }

    /// The next pair within `timeout` (`Ok(None)` when none came). An error
    /// or the end of the stream ends the source: start a new one to reconnect.
    pub fn next_pair(&mut self, timeout: Duration) -> Result<Option<CameraPair>, CameraError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Frames already delivered come before the end of the stream: the
            // end is posted after the sinks handed over their last frames, so
            // once it is seen, what is in the queue is all there is.
            let a = match self.rx.try_recv() {
                Ok(a) => Some(a),
                Err(_) if self.ended => {
                    self.pairer.flush();
                    return Err(CameraError::EndOfStream);
                }
                Err(_) => {
                    if let Some(m) = self
                        .bus
                        .pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])
                    {
                        match m.view() {
                            gst::MessageView::Error(e) => {
                                self.pairer.flush();
                                return Err(CameraError::Stopped(error_text(e)));
                            }
                            _ => {
                                self.ended = true;
                                continue;
                            }
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    match self.rx.recv_timeout(left.min(Duration::from_millis(10))) {
                        Ok(a) => Some(a),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            return Err(CameraError::Stopped(
                                "the pipeline's sinks are gone".into(),
                            ));
                        }
                    }
                }
            };
            let Some(a) = a else { continue };
            let mut newest = self.accept(a)?;
            // A live camera's consumer gets the newest pair: pairs that queued
            // up while it was busy are skipped and counted as dropped.
            if self.live {
                while let Ok(more) = self.rx.try_recv() {
                    if let Some(p) = self.accept(more)?
                        && newest.replace(p).is_some()
                    {
                        self.skipped += 2;
                    }
                }
            }
            if let Some(mut p) = newest {
                p.seq = self.seq;
                self.seq += 1;
                // Latency up to the hand-over, queueing included.
                self.health.record(p.stamp_ns, unix_now_ns(), p.skew_ns);
                return Ok(Some(p));
            }
        }
    }

    fn accept(&mut self, a: Arrival) -> Result<Option<CameraPair>, CameraError> {
        let (left, right, stamp_ns, recv_ns, skew_ns) = match a.eye {
            None => {
                let mut halves = a.frames.into_iter();
                let (Some(l), Some(r)) = (halves.next(), halves.next()) else {
                    return Err(CameraError::Stopped(
                        "a side-by-side frame without halves".into(),
                    ));
                };
                (l, r, a.stamp_ns, a.recv_ns, 0)
            }
            Some(eye) => {
                let Some(frame) = a.frames.into_iter().next() else {
                    return Ok(None);
                };
                match self.pairer.push(eye, a.stamp_ns, (frame, a.recv_ns)) {
                    None => return Ok(None),
                    Some(p) => {
                        let ((l, rl), (r, rr)) = (p.left, p.right);
                        if (l.width, l.height) != (r.width, r.height) {
                            return Err(CameraError::Stopped(format!(
                                "the left camera gives {}x{}, the right {}x{}",
                                l.width, l.height, r.width, r.height
                            )));
                        }
                        (l, r, p.stamp_ns, rl.max(rr), p.skew_ns)
                    }
                }
            }
        };
        Ok(Some(CameraPair {
            seq: 0,
            width: left.width,
            height: left.height,
            left: left.data,
            right: right.data,
            stamp_ns,
            recv_ns,
            skew_ns,
        }))
    }

    /// Stops the pipeline (also done when the source is dropped).
    pub fn stop(&mut self) {
        // A file's streaming thread may be waiting to hand over a frame: let
        // go of the receiving end first, so that it gives up and the pipeline
        // can stop instead of waiting for it forever.
        let (_, closed) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.rx, closed));
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        self.stop();
    }
}

fn error_text(e: &gst::message::Error) -> String {
    let src = e
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    match e.debug() {
        Some(d) => format!("{} ({src}: {d})", e.error()),
        None => format!("{} ({src})", e.error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::Preset;
    use crate::video::{Encoding, write_side_by_side};

    fn pattern(w: usize, h: usize, k: usize, shift: usize) -> Vec<u8> {
        (0..w * h)
            .map(|i| (((i % w + shift) * 7 + (i / w) * 3 + k * 11) % 200 + 20) as u8)
            .collect()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("camera-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_yuyv_file_plays_back_the_pairs_written() {
        // 30 px wide eyes: the writer pads its 60-byte gray rows to 4 bytes.
        let (w, h) = (30, 20);
        let pairs: Vec<_> = (0..5)
            .map(|k| (pattern(w, h, k, 0), pattern(w, h, k, 3)))
            .collect();
        let file = temp("yuyv").join("sbs.avi");
        let n = write_side_by_side(&file, w, h, 10, Encoding::Yuyv, pairs.clone()).unwrap();
        assert_eq!(n, 5);
        let cfg = SourceConfig {
            preset: Preset::File,
            location: file.display().to_string(),
            ..SourceConfig::default()
        };
        let mut src = CameraSource::start(&cfg).unwrap();
        assert_eq!(src.layout(), Layout::SideBySide);
        let mut got = Vec::new();
        loop {
            match src.next_pair(Duration::from_secs(20)) {
                Ok(Some(p)) => got.push(p),
                Ok(None) => panic!("no frame within 20 s"),
                Err(CameraError::EndOfStream) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 5);
        for (p, (l, r)) in got.iter().zip(&pairs) {
            assert_eq!((p.width, p.height), (w, h));
            let err = |a: &[u8], b: &[u8]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| x.abs_diff(*y))
                    .max()
                    .unwrap_or(0)
            };
            assert!(
                err(&p.left, l) <= 2 && err(&p.right, r) <= 2,
                "{} {}",
                err(&p.left, l),
                err(&p.right, r)
            );
        }
        // Stamps follow the file's frame times (100 ms apart).
        let dt = got[4].stamp_ns - got[0].stamp_ns;
        assert_eq!(dt, 400_000_000, "{dt}");
    }

    #[test]
    fn an_mjpeg_file_of_odd_eyes_is_read_with_its_stride() {
        // 31 px eyes: the decoder's 62 px luma rows lie 64 bytes apart.
        let (w, h) = (31, 24);
        let flat = |v: u8| vec![v; w * h];
        let pairs: Vec<_> = (0..3u8)
            .map(|k| (flat(60 + k * 20), flat(200 - k * 20)))
            .collect();
        let file = temp("odd").join("sbs.avi");
        write_side_by_side(
            &file,
            w,
            h,
            10,
            Encoding::Mjpeg { quality: 95 },
            pairs.clone(),
        )
        .unwrap();
        let cfg = SourceConfig {
            preset: Preset::File,
            location: file.display().to_string(),
            ..SourceConfig::default()
        };
        let mut src = CameraSource::start(&cfg).unwrap();
        let mut n = 0;
        while let Ok(Some(p)) = src.next_pair(Duration::from_secs(20)) {
            assert_eq!((p.width, p.height), (w, h));
            let (l, r) = &pairs[n];
            let mean = |a: &[u8], b: &[u8]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| f64::from(x.abs_diff(*y)))
                    .sum::<f64>()
                    / a.len() as f64
            };
            // Read at the wrong stride, rows would shear into the other eye.
            assert!(
                mean(&p.left, l) < 4.0 && mean(&p.right, r) < 4.0,
                "pair {n}"
            );
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn dropping_a_file_source_mid_stream_does_not_hang() {
        let (w, h) = (32, 24);
        let pairs: Vec<_> = (0..40)
            .map(|k| (pattern(w, h, k, 0), pattern(w, h, k, 1)))
            .collect();
        let file = temp("drop").join("sbs.avi");
        write_side_by_side(&file, w, h, 10, Encoding::Yuyv, pairs).unwrap();
        let cfg = SourceConfig {
            preset: Preset::File,
            location: file.display().to_string(),
            ..SourceConfig::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut src = CameraSource::start(&cfg).unwrap();
            assert!(src.next_pair(Duration::from_secs(20)).unwrap().is_some());
            // The pipeline is blocked handing over the next frames now.
            std::thread::sleep(Duration::from_millis(200));
            drop(src);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(60)).is_ok(),
            "dropping the source hung"
        );
    }

    #[test]
    fn a_pipeline_without_the_sinks_is_refused_by_name() {
        let e = CameraSource::start_description("videotestsrc ! fakesink", true, 5.0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`sbs`") && e.contains("none"), "{e}");
        let e = CameraSource::start_description(
            "videotestsrc ! nosuchelement ! appsink name=sbs",
            true,
            5.0,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("nosuchelement"), "{e}");
    }

    #[test]
    fn a_missing_device_does_not_start() {
        let cfg = SourceConfig {
            device: "/dev/no-such-camera".into(),
            ..SourceConfig::default()
        };
        let e = CameraSource::start(&cfg).err().unwrap().to_string();
        assert!(e.contains("no-such-camera"), "{e}");
    }
}
