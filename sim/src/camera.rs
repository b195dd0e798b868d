//! Camera models of the twin's stereo rig: pinhole intrinsics, optional
//! radial-tangential (plumb-bob) distortion, and the rig's baseline.
//!
//! Conventions follow OpenCV: camera x right, y down, z forward; pixel (u, v) has
//! its centre at integer coordinates, u = fx * x / z + cx.

use serde::{Deserialize, Serialize};

/// Pinhole intrinsics and image size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Focal length along u (pixels).
    pub fx: f64,
    /// Focal length along v (pixels).
    pub fy: f64,
    /// Principal point u.
    pub cx: f64,
    /// Principal point v.
    pub cy: f64,
}

impl Intrinsics {
    /// Square pixels, centred principal point, horizontal field of view in degrees.
    pub fn from_hfov(width: usize, height: usize, hfov_deg: f64) -> Self {
        let fx = (width as f64 / 2.0) / (hfov_deg.to_radians() / 2.0).tan();
        Self {
            width,
            height,
            fx,
            fy: fx,
            cx: (width as f64 - 1.0) / 2.0,
            cy: (height as f64 - 1.0) / 2.0,
        }
    }

    /// Pixel of a camera-frame point (no distortion); `None` behind the camera.
    pub fn project(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        (p[2] > 0.0).then(|| {
            [
                self.fx * p[0] / p[2] + self.cx,
                self.fy * p[1] / p[2] + self.cy,
            ]
        })
    }
}

/// Radial-tangential distortion coefficients (OpenCV order k1, k2, p1, p2, k3).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Distortion {
    /// Radial r².
    pub k1: f64,
    /// Radial r⁴.
    pub k2: f64,
    /// Tangential 1.
    pub p1: f64,
    /// Tangential 2.
    pub p2: f64,
    /// Radial r⁶.
    pub k3: f64,
}

impl Distortion {
    /// Whether all coefficients are zero.
    pub fn is_zero(&self) -> bool {
        *self == Distortion::default()
    }

    /// The same lens as the calibration crate's model (one implementation of the
    /// plumb-bob equations for the twin and for calibration).
    pub fn model(&self) -> calib::PinholeRadTan {
        calib::PinholeRadTan {
            fx: 1.0,
            fy: 1.0,
            cx: 0.0,
            cy: 0.0,
            dist: [self.k1, self.k2, self.p1, self.p2, self.k3],
        }
    }

    /// Distort normalised coordinates.
    pub fn distort(&self, x: f64, y: f64) -> [f64; 2] {
        self.model().distort(x, y)
    }

    /// Invert [`Distortion::distort`]. `None` where the lens model has no inverse
    /// (outside its valid image circle).
    pub fn undistort(&self, xd: f64, yd: f64) -> Option<[f64; 2]> {
        self.model().undistort_normalised(xd, yd)
    }
}

/// A horizontal stereo pair with identical cameras, the right one `baseline`
/// metres to the right of the left one, optical axes parallel (an ideal rectified
/// rig when distortion is zero).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StereoRig {
    /// Intrinsics of both cameras.
    pub intrinsics: Intrinsics,
    /// Lens distortion of both cameras (zero for a rectified rig).
    pub distortion: Distortion,
    /// Distance between the optical centres (m).
    pub baseline: f64,
}

impl Default for StereoRig {
    fn default() -> Self {
        Self::with_size(160, 120)
    }
}

impl StereoRig {
    /// A distortion-free rig of the given size, 90° horizontal field of view, 10 cm baseline.
    pub fn with_size(width: usize, height: usize) -> Self {
        Self {
            intrinsics: Intrinsics::from_hfov(width, height, 90.0),
            distortion: Distortion::default(),
            baseline: 0.10,
        }
    }

    /// Disparity in pixels of a point at depth `z` metres: f·B/Z.
    pub fn disparity(&self, z: f64) -> f64 {
        self.intrinsics.fx * self.baseline / z
    }

    /// Camera-frame ray (x, y, 1) through every pixel, row-major, so that the ray
    /// parameter of a hit is its depth Z. Accounts for distortion exactly; pixels
    /// outside the lens model's valid image circle get NaN rays (rendered black,
    /// depth NaN).
    pub fn ray_table(&self) -> Vec<[f32; 3]> {
        let k = &self.intrinsics;
        let mut rays = Vec::with_capacity(k.width * k.height);
        for v in 0..k.height {
            for u in 0..k.width {
                let xd = (u as f64 - k.cx) / k.fx;
                let yd = (v as f64 - k.cy) / k.fy;
                let [x, y] = if self.distortion.is_zero() {
                    [xd, yd]
                } else {
                    self.distortion.undistort(xd, yd).unwrap_or([f64::NAN; 2])
                };
                rays.push([x as f32, y as f32, 1.0]);
            }
        }
        rays
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hfov_and_projection() {
        let k = Intrinsics::from_hfov(160, 120, 90.0);
        assert!((k.fx - 80.0).abs() < 1e-9);
        let [u, v] = k.project([1.0, 0.0, 1.0]).unwrap();
        assert!((u - (80.0 + 79.5)).abs() < 1e-9 && (v - 59.5).abs() < 1e-9);
        assert!(k.project([0.0, 0.0, -1.0]).is_none());
    }

    #[test]
    fn distortion_round_trips() {
        let d = Distortion {
            k1: -0.28,
            k2: 0.07,
            p1: 0.001,
            p2: -0.0005,
            k3: 0.0,
        };
        for &(x, y) in &[(0.0, 0.0), (0.3, -0.2), (-0.6, 0.45), (0.9, 0.7)] {
            let [xd, yd] = d.distort(x, y);
            let [xu, yu] = d.undistort(xd, yd).unwrap();
            assert!(
                (xu - x).abs() < 1e-9 && (yu - y).abs() < 1e-9,
                "{x} {y} -> {xu} {yu}"
            );
        }
        // Strong barrel distortion folds over beyond r = 1/sqrt(3|k1|): no inverse there.
        let strong = Distortion {
            k1: -0.25,
            ..Distortion::default()
        };
        assert!(strong.undistort(1.0, 0.8).is_none());
    }
}
