//! Synthetic views of a checkerboard through any camera model, with exact corner
//! positions: the ground truth that detection and calibration are tested against.

use crate::model::CameraModel;
use crate::mono::{Pose, board_points};
use nalgebra::{Rotation3, Vector3};

/// A small seeded generator for synthetic scenes (poses, noise), so tests and the
/// `calib synth` command draw the same sequences for the same seed.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// Render a checkerboard with `cols` x `rows` inner corners and `square`-metre
/// squares (plus a white margin of one square) seen by `cam` from board pose `pose`,
/// 4x4 supersampled, with uniform noise of ±`noise` grey levels (seeded). Returns the
/// `width` x `height` image and the exact projections of the inner corners, row by row.
#[allow(clippy::too_many_arguments)]
pub fn render_board(
    cam: &dyn CameraModel,
    pose: &Pose,
    cols: usize,
    rows: usize,
    square: f64,
    noise: f64,
    width: usize,
    height: usize,
    seed: u64,
) -> (Vec<u8>, Vec<[f64; 2]>) {
    let rot = Rotation3::new(Vector3::from(pose.rvec));
    let t = Vector3::from(pose.t);
    let n = rot * Vector3::z();
    let mut img = vec![0u8; width * height];
    let mut rng = Lcg::new(seed);
    for y in 0..height {
        for x in 0..width {
            let mut acc = 0.0;
            for sy in 0..4 {
                for sx in 0..4 {
                    let px = [
                        x as f64 + (sx as f64 + 0.5) / 4.0 - 0.5,
                        y as f64 + (sy as f64 + 0.5) / 4.0 - 0.5,
                    ];
                    let Some(ray) = cam.unproject(px) else {
                        continue;
                    };
                    let r = Vector3::from(ray);
                    let denom = n.dot(&r);
                    let s = n.dot(&t) / denom;
                    if denom.abs() < 1e-12 || s <= 0.0 {
                        acc += 120.0;
                        continue;
                    }
                    let b = rot.inverse() * (r * s - t);
                    let (bx, by) = (b.x / square + 1.0, b.y / square + 1.0);
                    let inside = bx >= -1.0
                        && by >= -1.0
                        && bx < cols as f64 + 2.0
                        && by < rows as f64 + 2.0;
                    let in_squares =
                        bx >= 0.0 && by >= 0.0 && bx < cols as f64 + 1.0 && by < rows as f64 + 1.0;
                    let white = !in_squares || (bx.floor() as i64 + by.floor() as i64) % 2 == 0;
                    acc += if !inside {
                        120.0
                    } else if white {
                        220.0
                    } else {
                        30.0
                    };
                }
            }
            let nz = rng.symmetric() * noise;
            img[y * width + x] = (acc / 16.0 + nz).clamp(0.0, 255.0) as u8;
        }
    }
    let corners = board_points(cols, rows, square)
        .iter()
        .map(|p| cam.project(pose.apply(*p)).unwrap_or([f64::NAN; 2]))
        .collect();
    (img, corners)
}
