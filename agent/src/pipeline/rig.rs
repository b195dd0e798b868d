//! The stereo rig as the camera and stereo stages use it: the size it was calibrated at,
//! the rectified focal length and baseline that turn disparity into metric
//! depth (from the rectified projections P1/P2), and the undistort-rectify
//! maps of both cameras, computed once when the rig needs them.

use calib::rectify::{FixedRectifyMap, rectify_map, stereo_rectify};
use std::path::Path;
use thiserror::Error;

/// A rig that cannot be used, or a frame that does not fit it.
#[derive(Debug, Error)]
pub enum RigError {
    /// The rig file could not be read or parsed.
    #[error("cannot load the rig file {path}")]
    Load {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: calib::RigError,
    },
    /// Rectification of the rig failed.
    #[error("cannot rectify the rig {origin}: {reason}")]
    Rectify {
        /// Where the rig came from.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The rectified projection gives no usable focal length or baseline.
    #[error(
        "rig {origin}: rectified focal length {focal} px and baseline {baseline} m must be finite and positive"
    )]
    Geometry {
        /// Where the rig came from.
        origin: String,
        /// Focal length (px).
        focal: f64,
        /// Baseline (m).
        baseline: f64,
    },
    /// A camera frame of another size than the rig's.
    #[error(
        "a {got_w}x{got_h} {eye} frame does not fit the rig {origin}, calibrated at {want_w}x{want_h}"
    )]
    Size {
        /// Which image.
        eye: &'static str,
        /// Its width.
        got_w: usize,
        /// Its height.
        got_h: usize,
        /// The rig's width.
        want_w: usize,
        /// The rig's height.
        want_h: usize,
        /// Where the rig came from.
        origin: String,
    },
}

/// What the camera stage (maps, size) and the stereo stage (focal length,
/// baseline) need of a calibrated rig.
#[derive(Debug, Clone)]
pub struct RigGeometry {
    /// Image width the rig was calibrated at (pixels).
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Rectified focal length (px): depth = focal · baseline / disparity.
    pub focal: f64,
    /// Rectified baseline (m).
    pub baseline: f64,
    /// Rectified principal point (px).
    pub principal: [f64; 2],
    /// Where the rig came from (a path, "twin"), for messages.
    pub origin: String,
    /// Undistort-rectify maps (left, right); `None` for a rig whose raw images
    /// are already rectified (the twin's ideal rig).
    maps: Option<Box<[FixedRectifyMap; 2]>>,
}

fn is_identity(r: &[[f64; 3]; 3]) -> bool {
    (0..3).all(|i| (0..3).all(|j| (r[i][j] - f64::from(u8::from(i == j))).abs() < 1e-9))
}

impl RigGeometry {
    /// The rectified pair as ROS 2's `CameraInfo` describes it (for recordings).
    pub fn ros_info(&self) -> bus::ros2::RigInfo {
        bus::ros2::RigInfo {
            width: self.width as u32,
            height: self.height as u32,
            fx: self.focal,
            fy: self.focal,
            cx: self.principal[0],
            cy: self.principal[1],
            baseline_m: self.baseline,
        }
    }

    /// The geometry of a calibrated rig. Its rectification is the file's
    /// (R1/R2/P1/P2) when present, else computed here (Bouguet, alpha 0);
    /// maps are built only when the raw images are not already rectified.
    pub fn from_rig(rig: &calib::Rig, origin: &str) -> Result<Self, RigError> {
        let rect = match rig.rect {
            Some(r) => r,
            None => stereo_rectify(rig, 0.0).map_err(|e| RigError::Rectify {
                origin: origin.to_string(),
                reason: e.to_string(),
            })?,
        };
        let principal = [rect.p1[0][2], rect.p1[1][2]];
        let focal = rect.p1[0][0];
        let baseline = if rect.p2[0][0] != 0.0 {
            -rect.p2[0][3] / rect.p2[0][0]
        } else {
            f64::NAN
        };
        if !(focal.is_finite() && focal > 0.0 && baseline.is_finite() && baseline > 0.0) {
            return Err(RigError::Geometry {
                origin: origin.to_string(),
                focal,
                baseline,
            });
        }
        let (w, h) = (rig.width, rig.height);
        let same_k = |cam: &calib::Camera, p: &[[f64; 4]; 3]| {
            cam.distortion().iter().all(|d| *d == 0.0)
                && (cam.fx() - p[0][0]).abs() < 1e-9
                && (cam.fy() - p[1][1]).abs() < 1e-9
                && (cam.cx() - p[0][2]).abs() < 1e-9
                && (cam.cy() - p[1][2]).abs() < 1e-9
        };
        let rectified = is_identity(&rect.r1)
            && is_identity(&rect.r2)
            && same_k(&rig.left, &rect.p1)
            && same_k(&rig.right, &rect.p2);
        let maps = (!rectified).then(|| {
            Box::new([
                rectify_map(&rig.left, &rect.r1, &rect.p1, w, h).fixed(w, h),
                rectify_map(&rig.right, &rect.r2, &rect.p2, w, h).fixed(w, h),
            ])
        });
        Ok(Self {
            width: w,
            height: h,
            focal,
            baseline,
            principal,
            origin: origin.to_string(),
            maps,
        })
    }

    /// Load a rig file (OpenCV FileStorage YAML, as `calib stereo` writes it).
    pub fn load(path: &Path) -> Result<Self, RigError> {
        let rig = calib::Rig::load_opencv(path).map_err(|source| RigError::Load {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_rig(&rig, &path.display().to_string())
    }

    /// The rig as its rectified images see it: both cameras with the
    /// rectified projection (no distortion, this focal length and principal
    /// point), parallel, `baseline` apart. This is how the pairs on the bus
    /// (which the camera stage rectified) are placed in telemetry.
    pub fn rectified_rig(&self) -> calib::Rig {
        let [cx, cy] = self.principal;
        calib::Rig::ideal(self.width, self.height, self.focal, cx, cy, self.baseline)
    }

    /// Whether raw frames go through the undistort-rectify maps.
    pub fn rectifies(&self) -> bool {
        self.maps.is_some()
    }

    /// Check that a frame is of the rig's size; the error names both sizes.
    pub fn check(&self, eye: &'static str, w: usize, h: usize, len: usize) -> Result<(), RigError> {
        if (w, h) != (self.width, self.height) || len != w * h {
            return Err(RigError::Size {
                eye,
                got_w: w,
                got_h: h,
                want_w: self.width,
                want_h: self.height,
                origin: self.origin.clone(),
            });
        }
        Ok(())
    }

    /// Rectify one raw image of the rig's size (a copy of it when the rig
    /// needs no maps): `right` picks the right camera's map.
    pub fn rectify_image(&self, img: &[u8], right: bool) -> Result<Vec<u8>, RigError> {
        let eye = if right { "right" } else { "left" };
        self.check(eye, self.width, self.height, img.len())?;
        match &self.maps {
            None => Ok(img.to_vec()),
            Some(m) => m[usize::from(right)]
                .remap(img)
                .map_err(|_| RigError::Size {
                    eye,
                    got_w: self.width,
                    got_h: img.len() / self.width.max(1),
                    want_w: self.width,
                    want_h: self.height,
                    origin: self.origin.clone(),
                }),
        }
    }

    /// Rectify a raw pair (a copy of it when the rig needs no maps).
    pub fn rectify(&self, left: &[u8], right: &[u8]) -> Result<(Vec<u8>, Vec<u8>), RigError> {
        Ok((
            self.rectify_image(left, false)?,
            self.rectify_image(right, true)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focal_and_baseline_come_from_the_rectified_projection() {
        let rig = calib::Rig::ideal(160, 120, 114.0, 80.0, 60.0, 0.15);
        let g = RigGeometry::from_rig(&rig, "test").unwrap();
        assert!((g.focal - 114.0).abs() < 1e-9 && (g.baseline - 0.15).abs() < 1e-9);
        assert!(!g.rectifies(), "an ideal rig needs no maps");
        let e = g
            .check("left", 320, 240, 320 * 240)
            .unwrap_err()
            .to_string();
        assert!(e.contains("320x240") && e.contains("160x120"), "{e}");
    }

    #[test]
    fn a_distorted_rig_gets_maps() {
        let mut rig = calib::Rig::ideal(64, 48, 50.0, 32.0, 24.0, 0.1);
        rig.left = calib::Camera::from_coefficients(
            calib::LensKind::PlumbBob,
            [50.0, 50.0, 32.0, 24.0],
            &[-0.2, 0.05, 0.0, 0.0, 0.0],
        );
        rig.rect = None;
        let g = RigGeometry::from_rig(&rig, "test").unwrap();
        assert!(g.rectifies());
        let img = vec![128u8; 64 * 48];
        let (l, r) = g.rectify(&img, &img).unwrap();
        assert_eq!((l.len(), r.len()), (64 * 48, 64 * 48));
        // Telemetry places the rectified images with the rectified cameras.
        let flat = g.rectified_rig();
        assert!(flat.left.distortion().iter().all(|d| *d == 0.0));
        assert!(
            (flat.left.fx() - g.focal).abs() < 1e-9 && (flat.baseline() - g.baseline).abs() < 1e-9
        );
    }
}
