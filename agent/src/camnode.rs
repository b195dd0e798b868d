//! The live camera node: a GStreamer stereo camera on the bus.
//!
//! It runs the camera stage ([`crate::pipeline::CameraStage`]: the source,
//! pairing, rectification with the rig of `--rig`) and publishes rectified
//! pairs on `camera/stereo`, stamped with their capture time. While pairs
//! flow it holds the liveliness token `camera-stream`; when the camera stops,
//! is unplugged or sends nothing for the stall limit, it drops the token (a
//! safety node started with `--require camera-stream` then commands hover),
//! says so on `events`, and starts the camera again every `retry` until it
//! delivers. Its health (frame rate, skew, drops, latency) goes out on
//! `camera/health` every second and at every loss.
//!
//! A camera whose frames are not the rig's size stops the node with an error
//! naming both sizes: its calibration does not apply.

use crate::pipeline::{CameraStage, CameraStageError, RigGeometry};
use anyhow::Result;
use bus::msg::{CameraHealth, Event, StereoPair};
use bus::{Outbox, Session};
use camera::SourceConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::info;

/// The liveliness token a live camera holds while pairs flow.
pub const STREAM_TOKEN: &str = "camera-stream";

/// Settings of the live camera node.
#[derive(Debug, Clone)]
pub struct CameraNodeOptions {
    /// The source (preset or pipeline, device, size, rate, skew).
    pub source: SourceConfig,
    /// No pair for this long means the camera is lost (at least 2.5 frame
    /// periods of the configured rate are allowed).
    pub stall: Duration,
    /// Wait between attempts to start a lost camera again.
    pub retry: Duration,
    /// Time allowed for the first pair after a start.
    pub first_frame: Duration,
    /// Stop the node when the stream ends (a file played once) instead of
    /// starting it again; an error then ends the node with it.
    pub once: bool,
}

impl Default for CameraNodeOptions {
    fn default() -> Self {
        Self {
            source: SourceConfig::default(),
            stall: Duration::from_millis(250),
            retry: Duration::from_millis(500),
            first_frame: Duration::from_secs(5),
            once: false,
        }
    }
}

impl CameraNodeOptions {
    /// The stall limit for the configured frame rate.
    pub fn stall_limit(&self) -> Duration {
        let period = Duration::from_secs_f64(2.5 / f64::from(self.source.fps.max(1)));
        self.stall.max(period)
    }
}

/// Sleeps `d` in small steps, returning early on `stop`.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Runs the live camera until `stop`.
pub fn camera_node(
    session: &Session,
    robot: &str,
    rig: RigGeometry,
    o: &CameraNodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let mut pairs = Outbox::<StereoPair>::new(session, robot, bus::topics::CAMERA_STEREO)?;
    let mut health_out = Outbox::<CameraHealth>::new(session, robot, bus::topics::CAMERA_HEALTH)?;
    let mut events = Outbox::<Event>::new(session, robot, bus::topics::EVENTS)?;
    let mut say = |text: String, warn: bool| -> Result<()> {
        if warn {
            tracing::warn!("{text}");
        } else {
            info!("{text}");
        }
        events.send(bus::now_ns(), "camera", &Event { text })?;
        Ok(())
    };
    let stall = o.stall_limit();
    info!(
        robot,
        preset = %o.source.preset,
        rig = %rig.origin,
        size = %format!("{}x{}", rig.width, rig.height),
        stall_ms = stall.as_millis() as u64,
        "camera node up"
    );
    let mut token = None;
    let mut restarts = 0u32;
    let mut published = 0u64;
    let mut dropped_before = 0u64;
    let mut last_failure: Option<String> = None;
    let health_msg =
        |h: &camera::Health, streaming: bool, published: u64, dropped: u64, restarts: u32| {
            CameraHealth {
                streaming: u8::from(streaming),
                fps: h.fps as f32,
                skew_ms: h.skew_ms as f32,
                max_skew_ms: h.max_skew_ms as f32,
                latency_ms: h.latency_ms as f32,
                pairs: published,
                dropped,
                restarts,
            }
        };
    while !stop.load(Ordering::Relaxed) {
        let mut stage = match CameraStage::start(&o.source, rig.clone()) {
            Ok(s) => s,
            Err(e) => {
                let text = e.to_string();
                if last_failure.as_deref() != Some(text.as_str()) {
                    say(
                        format!(
                            "camera: cannot start ({text}); trying again every {} ms",
                            o.retry.as_millis()
                        ),
                        true,
                    )?;
                    last_failure = Some(text);
                }
                nap(o.retry, stop);
                continue;
            }
        };
        info!(pipeline = stage.description(), "camera started");
        let started = Instant::now();
        let mut last_pair: Option<Instant> = None;
        let mut next_health = Instant::now() + Duration::from_secs(1);
        let why = loop {
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            match stage.next(Duration::from_millis(20)) {
                Ok(Some(rectified)) => {
                    let p = rectified.pair;
                    last_pair = Some(Instant::now());
                    if token.is_none() {
                        token = Some(bus::announce(session, robot, STREAM_TOKEN)?);
                        let h = stage.health();
                        say(
                            if restarts == 0 {
                                format!(
                                    "camera: streaming {}x{} pairs ({})",
                                    p.width, p.height, o.source.preset
                                )
                            } else {
                                format!(
                                    "camera: frames are back after {restarts} restart(s), {} dropped so far",
                                    dropped_before + h.dropped
                                )
                            },
                            false,
                        )?;
                        last_failure = None;
                    }
                    pairs.send(
                        p.stamp_ns,
                        "camera",
                        &StereoPair {
                            width: p.width as u32,
                            height: p.height as u32,
                            left: p.left,
                            right: p.right,
                        },
                    )?;
                    published += 1;
                }
                Ok(None) => {}
                Err(CameraStageError::Rig(e)) => {
                    say(format!("camera: {e}"), true)?;
                    return Err(e.into());
                }
                Err(CameraStageError::Camera(camera::CameraError::EndOfStream)) if o.once => {
                    say("camera: the stream ended (--once)".into(), false)?;
                    break None;
                }
                // A file played once that fails (damaged) is an error, not a loss to wait out.
                Err(CameraStageError::Camera(e)) if o.once => {
                    say(format!("camera: {e}"), true)?;
                    return Err(e.into());
                }
                Err(CameraStageError::Camera(e)) => break Some(e.to_string()),
            }
            match last_pair {
                Some(t) if t.elapsed() > stall => {
                    break Some(format!("no pair for {} ms", t.elapsed().as_millis()));
                }
                None if started.elapsed() > o.first_frame => {
                    break Some(format!(
                        "no pair within {} ms of starting",
                        o.first_frame.as_millis()
                    ));
                }
                _ => {}
            }
            if Instant::now() >= next_health {
                next_health += Duration::from_secs(1);
                let h = stage.health();
                let m = health_msg(
                    &h,
                    token.is_some(),
                    published,
                    dropped_before + h.dropped,
                    restarts,
                );
                health_out.send(bus::now_ns(), "camera", &m)?;
            }
        };
        // Tell the graph first: tearing a wedged device's pipeline down can
        // take long (or hang), and the safety node must not wait for it.
        let h = stage.health();
        dropped_before += h.dropped;
        let Some(mut why) = why else { break };
        let was_streaming = token.take().is_some();
        if let Some(p) = stage.last_problem() {
            why = format!("{why}; frames were unreadable: {p}");
        }
        let m = health_msg(&h, false, published, dropped_before, restarts);
        health_out.send(bus::now_ns(), "camera", &m)?;
        if was_streaming || last_failure.as_deref() != Some(why.as_str()) {
            say(
                format!(
                    "camera: lost ({why}); starting it again every {} ms",
                    o.retry.as_millis()
                ),
                true,
            )?;
            last_failure = Some(why);
        }
        drop(stage);
        restarts += 1;
        nap(o.retry, stop);
    }
    info!(
        published,
        restarts,
        dropped = dropped_before,
        "camera node down"
    );
    Ok(())
}
