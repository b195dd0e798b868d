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

/// A 640x480 rig with 90° lenses and clearly visible distortion (k1 −0.22, some
/// tangential terms), 10 cm baseline: the one the twin's calibration test and the
/// rotation study (`examples/rotation_under_noise.rs`) calibrate.
pub fn distorted_rig() -> StereoRig {
    StereoRig {
        intrinsics: crate::camera::Intrinsics::from_hfov(640, 480, 90.0),
        distortion: crate::camera::Distortion {
            k1: -0.22,
            k2: 0.06,
            p1: 0.0008,
            p2: -0.0005,
            k3: 0.0,
        },
        baseline: 0.1,
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
/// it so that its edges and corners are covered, both cameras seeing the whole board), with uniform pixel noise of
/// ±`noise` grey levels.
pub fn render_views(
    rig: &StereoRig,
    board: Board,
    n: usize,
    noise: f64,
    seed: u64,
) -> Vec<BoardPair> {
    render_views_spanning(rig, board, n, noise, seed, 0.55)
}

/// As [`render_views`], with the board held so that it spans about `span` of the
/// image width (0.55 in [`render_views`]). A pose that would put the board's
/// outer squares, or the half square of margin beyond them, within 4 pixels of
/// either image's border is drawn again (up to 100 times), as someone calibrating
/// keeps only views that show the whole board.
pub fn render_views_spanning(
    rig: &StereoRig,
    board: Board,
    n: usize,
    noise: f64,
    seed: u64,
    span: f64,
) -> Vec<BoardPair> {
    let cam = camera(rig);
    let (w, h) = (rig.intrinsics.width, rig.intrinsics.height);
    let size = board.square * (board.cols.max(board.rows) + 1) as f64;
    // Distance at which the board spans `span` of the image width.
    let z = rig.intrinsics.fx * size / (span * w as f64);
    let (bw, bh) = (
        board.square * (board.cols - 1) as f64,
        board.square * (board.rows - 1) as f64,
    );
    // The inner corners' grid grown by one and a half squares on every side: the
    // outer squares and some of the margin beyond them, which a detector looks at.
    let ring: Vec<[f64; 3]> = {
        let sq = board.square;
        let (nc, nr) = (board.cols + 2, board.rows + 2);
        let at = |i: usize, j: usize| [(i as f64 - 1.5) * sq, (j as f64 - 1.5) * sq, 0.0];
        (0..=nc)
            .flat_map(|i| [at(i, 0), at(i, nr)])
            .chain((0..=nr).flat_map(|j| [at(0, j), at(nc, j)]))
            .collect()
    };
    let inside = |pose: &Pose| {
        ring.iter().all(|&p| {
            let q = pose.apply(p);
            q[2] > 0.0
                && calib::CameraModel::project(&cam, q).is_some_and(|c| {
                    c[0] >= 4.0 && c[1] >= 4.0 && c[0] <= w as f64 - 5.0 && c[1] <= h as f64 - 5.0
                })
        })
    };
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|k| {
            let mut draw = || {
                let mut r = || rng.range(-1.0, 1.0);
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
                (left, right)
            };
            let mut pair = draw();
            for _ in 0..100 {
                if inside(&pair.0) && inside(&pair.1) {
                    break;
                }
                pair = draw();
            }
            let (left, right) = pair;
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
