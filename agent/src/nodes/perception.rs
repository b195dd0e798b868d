//! The perception nodes: the stereo stage and the mono stage on the zenoh
//! executor ([`super::serve`]), camera pairs in, depth scans out.

use super::NodeOptions;
use super::serve::serve;
#[cfg(feature = "twin")]
use crate::fly::twin_geometry;
use crate::pipeline::{LoopConfig, MonoStage, RigGeometry, StereoStage, scan_shape};
use anyhow::Result;
use bus::msg::{DepthScan, StereoPair};
use bus::{Inbox, Outbox, Session};
#[cfg(feature = "twin")]
use sim::env::EnvConfig;
use std::sync::atomic::AtomicBool;
use tracing::info;

/// The stereo stage's rig: the file given with `--rig` (OpenCV YAML from
/// `calib stereo`), or the twin's own rig (bundled with the agent when it is
/// built without the twin).
pub fn stereo_rig(opts: &NodeOptions) -> Result<RigGeometry> {
    rig_or_default(opts.rig.as_deref())
}

/// The rig in `path`, or the default one of [`stereo_rig`].
pub fn rig_or_default(path: Option<&std::path::Path>) -> Result<RigGeometry> {
    match path {
        Some(p) => Ok(RigGeometry::load(p)?),
        #[cfg(feature = "twin")]
        None => twin_geometry(&EnvConfig::default().rig),
        #[cfg(not(feature = "twin"))]
        None => Ok(RigGeometry::from_rig(
            &crate::selftest::bundled_rig()?,
            "bundled rig (the twin's)",
        )?),
    }
}

/// Stereo pairs in, depth scans out (same sequence number and stamp as the
/// pair): the stereo stage with the rig of `--rig` (its rectified focal
/// length and baseline; the pairs on `camera/stereo` are rectified already).
/// A pair of another size than the rig's is refused by name, and the node
/// goes on; a column without a valid answer travels as NaN.
pub fn stereo_node(
    session: &Session,
    robot: &str,
    cfg: &LoopConfig,
    opts: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let pairs = Inbox::<StereoPair>::new(session, robot, bus::topics::CAMERA_STEREO, 2)?;
    let out = Outbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_STEREO)?;
    let rig = stereo_rig(opts)?;
    info!(
        robot,
        rig = %rig.origin,
        size = %format!("{}x{}", rig.width, rig.height),
        focal_px = rig.focal,
        baseline_m = rig.baseline,
        "stereo rig"
    );
    let stage = StereoStage::on(cfg.stereo_backend, rig, cfg.stereo, scan_shape(&cfg.mono))?;
    info!(robot, matcher = %stage.matcher(), "stereo matcher");
    serve(
        session,
        robot,
        stage,
        pairs,
        |h, depth, took| {
            let scan = DepthScan {
                compute_ns: took.as_nanos() as u64,
                depth: depth.scan,
            };
            Ok(out.send_with(h, &scan)?)
        },
        stop,
    )?;
    Ok(())
}

/// Camera pairs in, the monocular network's depth scan out on `depth/mono`
/// (same sequence number and stamp as the pair): the mono stage watching
/// `--checkpoint`, so that the learner node's saves are swapped in between
/// two frames. Until a checkpoint has loaded, nothing is published: an
/// untrained network is no cue. A checkpoint that cannot be used is reported
/// on `events` and the previous weights kept.
pub fn mono_node(
    session: &Session,
    robot: &str,
    cfg: &LoopConfig,
    opts: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let dev = crate::device::device(cfg.backend)?;
    let mut stage = MonoStage::new(cfg.mono, dev);
    match &opts.checkpoint {
        Some(p) => stage = stage.watching(p.clone()),
        None => tracing::warn!(
            "mono node without --checkpoint: it has no weights and publishes nothing"
        ),
    }
    // Pairs on `camera/stereo` are rectified (by the camera stage, or rendered
    // so by the twin): the network sees the left image the stereo stage matches.
    let pairs = Inbox::<StereoPair>::new(session, robot, bus::topics::CAMERA_STEREO, 2)?;
    let out = Outbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_MONO)?;
    serve(
        session,
        robot,
        stage,
        pairs,
        |h, mono, took| {
            let scan = DepthScan {
                compute_ns: took.as_nanos() as u64,
                depth: mono.estimate.scan,
            };
            Ok(out.send_with(h, &scan)?)
        },
        stop,
    )?;
    Ok(())
}
