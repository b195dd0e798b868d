//! A calibration target in the twin: checkerboard views rendered through the
//! twin's own stereo rig (its intrinsics and lens distortion; the right camera
//! `baseline` metres to the right), with the exact corner positions and the rig
//! as ground truth, so that calibration can be checked against what the twin
//! flies with.

use crate::camera::StereoRig;
use crate::rng::Rng;
use calib::mono::Pose;
use calib::{PinholeRadTan, Rig};

/// A checkerboard: inner corners per row and per column, square size (m).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Board {
    /// Inner corners along a row.
    pub cols: usize,
    /// Inner corners along a column.
    pub rows: usize,
    /// Square size (m).
    pub square: f64,
}

/// One stereo view of the board.
#[derive(Debug, Clone)]
pub struct BoardPair {
    /// Left image, 8-bit grayscale.
    pub left: Vec<u8>,
    /// Right image.
    pub right: Vec<u8>,
    /// Exact inner-corner projections in the left image, row by row.
    pub left_corners: Vec<[f64; 2]>,
    /// The same in the right image.
    pub right_corners: Vec<[f64; 2]>,
}

/// One camera of the rig as the calibration crate models it.
pub fn camera(rig: &StereoRig) -> PinholeRadTan {
    let k = rig.intrinsics;
    let d = rig.distortion;
    PinholeRadTan {
        fx: k.fx,
        fy: k.fy,
        cx: k.cx,
        cy: k.cy,
        dist: [d.k1, d.k2, d.p1, d.p2, d.k3],
    }
}

/// The rig as a calibration result would describe it: both cameras equal, no
/// rotation between them, x_right = x_left − (baseline, 0, 0).
pub fn rig_truth(rig: &StereoRig) -> Rig {
    Rig {
        width: rig.intrinsics.width,
        height: rig.intrinsics.height,
        left: camera(rig).into(),
        right: camera(rig).into(),
        r: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        t: [-rig.baseline, 0.0, 0.0],
        rect: None,
    }
}

/// `n` views of `board` held in front of the rig at seeded poses (tilted up to
/// about ±32° about both image axes and turned up to ±11°, filling about half the image, spread over
/// it so that its edges and corners are covered, both cameras seeing the board), with uniform pixel noise of
/// ±`noise` grey levels.
pub fn render_views(
    rig: &StereoRig,
    board: Board,
    n: usize,
    noise: f64,
    seed: u64,
) -> Vec<BoardPair> {
    let cam = camera(rig);
    let (w, h) = (rig.intrinsics.width, rig.intrinsics.height);
    let size = board.square * (board.cols.max(board.rows) + 1) as f64;
    // Distance at which the board spans about 55 % of the image width.
    let z = rig.intrinsics.fx * size / (0.55 * w as f64);
    let mut rng = Rng::new(seed);
    let mut r = || rng.range(-1.0, 1.0);
    (0..n)
        .map(|k| {
            let (bw, bh) = (
                board.square * (board.cols - 1) as f64,
                board.square * (board.rows - 1) as f64,
            );
            let left = Pose {
                rvec: [0.55 * r(), 0.55 * r(), 0.2 * r()],
                t: [
                    -bw / 2.0 + rig.baseline / 2.0 + 0.3 * size * r(),
                    -bh / 2.0 + 0.22 * size * r(),
                    z * (1.0 + 0.15 * r()),
                ],
            };
            let right = Pose {
                rvec: left.rvec,
                t: [left.t[0] - rig.baseline, left.t[1], left.t[2]],
            };
            let s = seed.wrapping_mul(1000).wrapping_add(2 * k as u64);
            let (li, lc) = calib::synthetic::render_board(
                &cam,
                &left,
                board.cols,
                board.rows,
                board.square,
                noise,
                w,
                h,
                s,
            );
            let (ri, rc) = calib::synthetic::render_board(
                &cam,
                &right,
                board.cols,
                board.rows,
                board.square,
                noise,
                w,
                h,
                s + 1,
            );
            BoardPair {
                left: li,
                right: ri,
                left_corners: lc,
                right_corners: rc,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::{Distortion, Intrinsics};

    #[test]
    fn views_show_the_whole_board_in_both_cameras() {
        let rig = StereoRig {
            intrinsics: Intrinsics::from_hfov(320, 240, 90.0),
            distortion: Distortion {
                k1: -0.2,
                k2: 0.05,
                ..Default::default()
            },
            baseline: 0.1,
        };
        let board = Board {
            cols: 9,
            rows: 6,
            square: 0.05,
        };
        let views = render_views(&rig, board, 6, 0.0, 3);
        for v in &views {
            for c in v.left_corners.iter().chain(&v.right_corners) {
                assert!(
                    c[0] > 5.0 && c[0] < 315.0 && c[1] > 5.0 && c[1] < 235.0,
                    "{c:?}"
                );
            }
            // Same board, right camera to the right: positive disparity everywhere.
            for (l, r) in v.left_corners.iter().zip(&v.right_corners) {
                assert!(l[0] > r[0], "{l:?} {r:?}");
            }
            assert_eq!(v.left.len(), 320 * 240);
        }
        let truth = rig_truth(&rig);
        assert!((truth.baseline() - 0.1).abs() < 1e-12);
    }
}
