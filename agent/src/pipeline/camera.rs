//! The camera stage: raw pairs from a live source ([`camera::CameraSource`]:
//! a GStreamer pipeline, side-by-side frames split or two devices paired by
//! capture time) rectified with the calibrated rig's undistort-rectify maps,
//! built once from the rig file. A camera whose frames are not the rig's size
//! is refused by name: its calibration does not apply.
//!
//! Pairs leave this stage rectified; the stereo and mono stages take them as
//! they are.

use super::rig::{RigError, RigGeometry};
use camera::{CameraError, CameraPair, CameraSource, Health, SourceConfig};
use std::time::{Duration, Instant};
use thiserror::Error;

/// What the camera stage could not do.
#[derive(Debug, Error)]
pub enum CameraStageError {
    /// The camera failed, stopped or ended (reconnect by starting again).
    #[error(transparent)]
    Camera(#[from] CameraError),
    /// The camera's frames do not fit the rig (a configuration error).
    #[error(transparent)]
    Rig(#[from] RigError),
}

/// A pair from the camera, its images rectified.
#[derive(Debug, Clone)]
pub struct RectifiedPair {
    /// The source's pair (sequence number, size, capture and receive
    /// times, skew) with the rectified left and right images.
    pub pair: CameraPair,
    /// Time spent rectifying (ns).
    pub rectify_ns: u64,
}

/// A running camera and the rig its pairs are rectified with.
pub struct CameraStage {
    source: CameraSource,
    rig: RigGeometry,
}

impl CameraStage {
    /// Starts the camera of `cfg`; its pairs will be rectified with `rig`.
    pub fn start(cfg: &SourceConfig, rig: RigGeometry) -> Result<Self, CameraStageError> {
        Ok(Self {
            source: CameraSource::start(cfg)?,
            rig,
        })
    }

    /// The pipeline that runs.
    pub fn description(&self) -> &str {
        self.source.description()
    }

    /// The rig.
    pub fn rig(&self) -> &RigGeometry {
        &self.rig
    }

    /// Why the last unreadable frame was refused, if one was.
    pub fn last_problem(&self) -> Option<String> {
        self.source.last_problem()
    }

    /// The camera's health.
    pub fn health(&self) -> Health {
        self.source.health()
    }

    /// The next rectified pair within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<RectifiedPair>, CameraStageError> {
        let Some(mut p) = self.source.next_pair(timeout)? else {
            return Ok(None);
        };
        self.rig.check("left", p.width, p.height, p.left.len())?;
        let t0 = Instant::now();
        (p.left, p.right) = self.rig.rectify(&p.left, &p.right)?;
        Ok(Some(RectifiedPair {
            pair: p,
            rectify_ns: t0.elapsed().as_nanos() as u64,
        }))
    }
}
