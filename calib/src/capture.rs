//! Live calibration capture: pairs from a stereo camera (the same sources the
//! agent's camera node runs), kept when both cameras see the whole board and
//! the view adds coverage — a part of either image no kept view has covered
//! yet, or a board size and tilt not seen yet — until a target count. This is
//! how ROS `camera_calibration` and Kalibr's capture tools collect views: a
//! calibration is only as good as the spread of its views over the image,
//! over distances and over tilts.

use crate::detect::find_corners;
use camera::{CameraError, CameraSource};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What capture needs to know.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// Inner corners per row and per column of the board.
    pub board: (usize, usize),
    /// Pairs to keep.
    pub target: usize,
    /// Cells across and down each image for coverage.
    pub grid: (usize, usize),
    /// Where left_NNN.png and right_NNN.png go.
    pub out: PathBuf,
}

/// Which parts of the images, board sizes and tilts the kept views cover.
#[derive(Debug, Clone)]
pub struct Coverage {
    grid: (usize, usize),
    /// Cells of the left and right images with a corner of a kept view.
    cells: [Vec<bool>; 2],
    /// (size class, tilt class) pairs seen: 3 sizes x 3 tilts.
    poses: [bool; 9],
}

/// How a view's board sits: the cells its corners fall in, its size class
/// (small, medium, large: under 15 %, under 35 %, else of the image's area)
/// and its tilt class (facing, tilted about one image axis, about the other).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewClass {
    cells: [Vec<usize>; 2],
    pose: usize,
}

fn cells_of(corners: &[[f64; 2]], w: usize, h: usize, grid: (usize, usize)) -> Vec<usize> {
    let mut c: Vec<usize> = corners
        .iter()
        .map(|p| {
            let cx = ((p[0] / w as f64 * grid.0 as f64) as usize).min(grid.0 - 1);
            let cy = ((p[1] / h as f64 * grid.1 as f64) as usize).min(grid.1 - 1);
            cy * grid.0 + cx
        })
        .collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Size and tilt class of a board seen as `corners` (cols x rows, row by row).
fn pose_class(corners: &[[f64; 2]], cols: usize, rows: usize, w: usize, h: usize) -> usize {
    let (tl, tr) = (corners[0], corners[cols - 1]);
    let (bl, br) = (corners[(rows - 1) * cols], corners[rows * cols - 1]);
    // Shoelace area of the outer corners' quadrilateral.
    let quad = [tl, tr, br, bl];
    let area = (0..4)
        .map(|i| {
            let (a, b) = (quad[i], quad[(i + 1) % 4]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f64>()
        .abs()
        / 2.0;
    let frac = area / (w * h) as f64;
    let size = if frac < 0.15 {
        0
    } else if frac < 0.35 {
        1
    } else {
        2
    };
    // Perspective: opposite edges of unequal length.
    let horizontal = (dist(tl, tr) / dist(bl, br).max(1e-9)).ln().abs();
    let vertical = (dist(tl, bl) / dist(tr, br).max(1e-9)).ln().abs();
    let tilt = if horizontal.max(vertical) < 0.08 {
        0
    } else if horizontal >= vertical {
        1
    } else {
        2
    };
    size * 3 + tilt
}

impl Coverage {
    /// Nothing covered yet, on a `grid` of cells.
    pub fn new(grid: (usize, usize)) -> Self {
        let n = grid.0.max(1) * grid.1.max(1);
        Self {
            grid: (grid.0.max(1), grid.1.max(1)),
            cells: [vec![false; n], vec![false; n]],
            poses: [false; 9],
        }
    }

    /// The class of a view whose boards were found at `left` and `right`.
    pub fn classify(
        &self,
        left: &[[f64; 2]],
        right: &[[f64; 2]],
        board: (usize, usize),
        w: usize,
        h: usize,
    ) -> ViewClass {
        ViewClass {
            cells: [
                cells_of(left, w, h, self.grid),
                cells_of(right, w, h, self.grid),
            ],
            pose: pose_class(left, board.0, board.1, w, h),
        }
    }

    /// Whether a view of this class covers something new.
    pub fn adds(&self, v: &ViewClass) -> bool {
        !self.poses[v.pose] || (0..2).any(|e| v.cells[e].iter().any(|&c| !self.cells[e][c]))
    }

    /// Counts a kept view.
    pub fn add(&mut self, v: &ViewClass) {
        self.poses[v.pose] = true;
        for e in 0..2 {
            for &c in &v.cells[e] {
                self.cells[e][c] = true;
            }
        }
    }

    /// Fraction of the cells of both images covered.
    pub fn fraction(&self) -> f64 {
        let n = self.cells[0].len() * 2;
        self.cells.iter().flatten().filter(|c| **c).count() as f64 / n as f64
    }

    /// Board size and tilt classes seen, of 9.
    pub fn poses(&self) -> usize {
        self.poses.iter().filter(|p| **p).count()
    }

    /// The left image's coverage as text, one line per row of cells (`#`
    /// covered, `.` not).
    pub fn left_map(&self) -> String {
        self.cells[0]
            .chunks(self.grid.0)
            .map(|row| {
                row.iter()
                    .map(|&c| if c { '#' } else { '.' })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What happened to one pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The board was not found in both images.
    NoBoard {
        /// Found in the left image.
        left: bool,
        /// Found in the right image.
        right: bool,
    },
    /// Found, but nothing new.
    Known,
    /// Kept as the `n`-th pair.
    Saved {
        /// Pairs kept so far.
        n: usize,
        /// Cells of both images covered (fraction).
        coverage: f64,
        /// Size and tilt classes seen (of 9).
        poses: usize,
    },
}

/// Why capture stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The camera failed or its stream ended before the target count.
    #[error("the camera stopped after {kept} of {target} pairs")]
    Camera {
        /// Pairs kept.
        kept: usize,
        /// Pairs wanted.
        target: usize,
        /// Why.
        #[source]
        source: CameraError,
    },
    /// A pair could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

fn write_png(path: &Path, w: usize, h: usize, data: &[u8]) -> Result<(), CaptureError> {
    let err = |e: String| CaptureError::Write {
        path: path.display().to_string(),
        reason: e,
    };
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(|e| err(e.to_string()))?;
    wr.write_image_data(data).map_err(|e| err(e.to_string()))
}

/// Captures from `source` until `s.target` pairs are kept (or `stop` says
/// so); `report` hears of every pair examined. Returns the pairs kept.
pub fn capture(
    source: &mut CameraSource,
    s: &CaptureSettings,
    stop: &std::sync::atomic::AtomicBool,
    mut report: impl FnMut(&Step, &Coverage),
) -> Result<usize, CaptureError> {
    std::fs::create_dir_all(&s.out).map_err(|e| CaptureError::Write {
        path: s.out.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut cov = Coverage::new(s.grid);
    let mut kept = 0;
    while kept < s.target && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let pair = match source.next_pair(Duration::from_millis(200)) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                return Err(CaptureError::Camera {
                    kept,
                    target: s.target,
                    source: e,
                });
            }
        };
        let (w, h) = (pair.width, pair.height);
        let (cols, rows) = s.board;
        let found = (
            find_corners(&pair.left, w, h, cols, rows).ok(),
            find_corners(&pair.right, w, h, cols, rows).ok(),
        );
        let step = match found {
            (Some(l), Some(r)) => {
                let class = cov.classify(&l, &r, s.board, w, h);
                if cov.adds(&class) {
                    kept += 1;
                    write_png(&s.out.join(format!("left_{kept:03}.png")), w, h, &pair.left)?;
                    write_png(
                        &s.out.join(format!("right_{kept:03}.png")),
                        w,
                        h,
                        &pair.right,
                    )?;
                    cov.add(&class);
                    Step::Saved {
                        n: kept,
                        coverage: cov.fraction(),
                        poses: cov.poses(),
                    }
                } else {
                    Step::Known
                }
            }
            (l, r) => Step::NoBoard {
                left: l.is_some(),
                right: r.is_some(),
            },
        };
        report(&step, &cov);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x3 board's corners around `(x, y)`, `s` px apart.
    fn board(x: f64, y: f64, s: f64) -> Vec<[f64; 2]> {
        (0..3)
            .flat_map(|r| (0..4).map(move |c| [x + c as f64 * s, y + r as f64 * s]))
            .collect()
    }

    #[test]
    fn a_view_adds_coverage_once() {
        let mut cov = Coverage::new((4, 3));
        let v = cov.classify(
            &board(10.0, 10.0, 10.0),
            &board(5.0, 10.0, 10.0),
            (4, 3),
            320,
            240,
        );
        assert!(cov.adds(&v));
        cov.add(&v);
        assert!(!cov.adds(&v), "the same view again adds nothing");
        let far = cov.classify(
            &board(250.0, 180.0, 10.0),
            &board(245.0, 180.0, 10.0),
            (4, 3),
            320,
            240,
        );
        assert!(cov.adds(&far), "another corner of the image is new");
        // A bigger board at the same place is a new size class.
        let big = cov.classify(
            &board(10.0, 10.0, 60.0),
            &board(5.0, 10.0, 60.0),
            (4, 3),
            320,
            240,
        );
        assert!(cov.adds(&big));
        assert!(cov.left_map().starts_with('#'));
    }
}
