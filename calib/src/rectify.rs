//! Bouguet rectification: rotate both cameras half-way towards each other and then
//! so that the baseline lies along x, pick one focal length and principal point
//! (zero disparity at infinity), scale by `alpha` between "only valid pixels"
//! (0) and "every source pixel" (1), and build undistort-rectify maps that are
//! applied to 8-bit images with bilinear interpolation.

use crate::model::{Camera, CameraModel};
use crate::rig::{Rectification, Rig};
use nalgebra::{Matrix3, Rotation3, Vector3};
use rayon::prelude::*;
use thiserror::Error;

/// Why rectification failed.
#[derive(Debug, Error, PartialEq)]
pub enum RectifyError {
    /// `alpha` outside [0, 1].
    #[error("alpha = {0} must be in [0, 1]")]
    Alpha(f64),
    /// The cameras do not overlap or the baseline is zero.
    #[error("cannot rectify: {0}")]
    Degenerate(String),
    /// Image and map sizes differ.
    #[error("image is {got_w}x{got_h} ({len} bytes) but the map is {w}x{h}")]
    Size {
        got_w: usize,
        got_h: usize,
        len: usize,
        w: usize,
        h: usize,
    },
}

fn m3(a: &[[f64; 3]; 3]) -> Matrix3<f64> {
    Matrix3::from_fn(|i, j| a[i][j])
}

fn arr(m: &Matrix3<f64>) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| m[(i, j)]))
}

/// Widest angle from the rectified axis (degrees) that rectification keeps of a
/// fisheye camera's view.
pub const FISHEYE_MAX_ANGLE_DEG: f64 = 65.0;

/// Grid steps along each side of the image for [`border_points`].
const BORDER_STEPS: usize = 16;

/// A grid of points over the image (index i·(n+1) + j for column step i, row step j),
/// for finding the rectified image's extent.
fn border_points(w: usize, h: usize) -> Vec<[f64; 2]> {
    let n = BORDER_STEPS;
    let mut pts = Vec::new();
    for i in 0..=n {
        for j in 0..=n {
            pts.push([
                (w as f64 - 1.0) * i as f64 / n as f64,
                (h as f64 - 1.0) * j as f64 / n as f64,
            ]);
        }
    }
    pts
}

/// Rectified normalised coordinates (x/z, y/z after the rectifying rotation) of source
/// pixels, in the order of `pts`; `None` where a pixel has no valid ray.
fn rectified_normalised(cam: &Camera, r: &Matrix3<f64>, pts: &[[f64; 2]]) -> Vec<Option<[f64; 2]>> {
    // A pinhole image cannot hold a fisheye's whole view: its rays are taken at most
    // this far from the rectified axis (the rectified image then shows that cone).
    let max_angle = match cam {
        Camera::Fisheye(_) => Some(FISHEYE_MAX_ANGLE_DEG.to_radians()),
        Camera::PlumbBob(_) => None,
    };
    pts.iter()
        .map(|&p| {
            let ray = match (cam.unproject(p), max_angle) {
                (Some(ray), _) => ray,
                // Far out in a fisheye's periphery the fitted model may not invert
                // (its polynomial folds beyond the angles the target covered): such
                // pixels lie outside the kept cone anyway, in their own direction.
                (None, Some(t)) => {
                    let [fx, fy, cx, cy] = cam.intrinsics();
                    let (dx, dy) = ((p[0] - cx) / fx, (p[1] - cy) / fy);
                    let n = dx.hypot(dy).max(1e-300);
                    let (st, ct) = t.sin_cos();
                    [st * dx / n, st * dy / n, ct]
                }
                (None, None) => return None,
            };
            let q = r * Vector3::from(ray);
            let side = q.x.hypot(q.y);
            if let Some(t) = max_angle
                && side.atan2(q.z) > t
            {
                let s = t.tan() / side.max(1e-300);
                return Some([q.x * s, q.y * s]);
            }
            (q.z > 1e-9).then(|| [q.x / q.z, q.y / q.z])
        })
        .collect()
}

/// Compute R1, R2, P1, P2, Q for `rig` (OpenCV's `stereoRectify` with
/// `CALIB_ZERO_DISPARITY`). `alpha` = 0 crops to valid pixels only, 1 keeps every
/// source pixel in view.
pub fn stereo_rectify(rig: &Rig, alpha: f64) -> Result<Rectification, RectifyError> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(RectifyError::Alpha(alpha));
    }
    let r = m3(&rig.r);
    let t = Vector3::from(rig.t);
    if t.norm() < 1e-12 {
        return Err(RectifyError::Degenerate("zero baseline".into()));
    }
    // Half of the relative rotation each, in opposite directions.
    let half = Rotation3::from_matrix_unchecked(r).scaled_axis() * -0.5;
    let r_r = *Rotation3::new(half).matrix();
    let tt = r_r * t;
    // Rotate so the baseline lies along ±x.
    let c = tt.x;
    let uu = Vector3::new(if c > 0.0 { 1.0 } else { -1.0 }, 0.0, 0.0);
    let ww = tt.cross(&uu);
    let nw = ww.norm();
    let w_r = if nw > 1e-15 {
        *Rotation3::new(ww * ((c.abs() / tt.norm()).clamp(-1.0, 1.0).acos() / nw)).matrix()
    } else {
        Matrix3::identity()
    };
    let r1 = w_r * r_r.transpose();
    let r2 = w_r * r_r;
    // Common focal length (shortened for barrel distortion, as OpenCV does) and principal point.
    let (w, h) = (rig.width as f64, rig.height as f64);
    let fc = |c: &Camera| match c {
        Camera::PlumbBob(c) if c.dist[0] < 0.0 => {
            c.fy * (1.0 + c.dist[0] * (w * w + h * h) / (4.0 * c.fy * c.fy))
        }
        c => c.fy(),
    };
    let f0 = fc(&rig.left).min(fc(&rig.right));
    let pts = border_points(rig.width, rig.height);
    let (l, rr) = (
        rectified_normalised(&rig.left, &r1, &pts),
        rectified_normalised(&rig.right, &r2, &pts),
    );
    if l.iter().chain(&rr).any(Option::is_none) {
        return Err(RectifyError::Degenerate(
            "part of an image has no valid ray in front of the rectified cameras".into(),
        ));
    }
    let (l, rr): (Vec<[f64; 2]>, Vec<[f64; 2]>) = (
        l.into_iter().flatten().collect(),
        rr.into_iter().flatten().collect(),
    );
    // Principal point: centre the mean of the four rectified image corners, shared by
    // both cameras so that disparity is zero at infinity.
    let n = BORDER_STEPS;
    let corners = [0, n, n * (n + 1), n * (n + 1) + n];
    let centroid = |v: &[[f64; 2]]| {
        corners
            .iter()
            .fold([0.0, 0.0], |a, &i| [a[0] + v[i][0], a[1] + v[i][1]])
            .map(|s| s / 4.0)
    };
    let (c1, c2) = (centroid(&l), centroid(&rr));
    let cn = [(c1[0] + c2[0]) / 2.0, (c1[1] + c2[1]) / 2.0];
    let (cx, cy) = ((w - 1.0) / 2.0 - f0 * cn[0], (h - 1.0) / 2.0 - f0 * cn[1]);
    // Scale of f0: s1 fits every source pixel in the image; s0 fills the image with
    // valid pixels only (the inner rectangle of the rectified border covers it).
    let mut s0 = 0.0f64;
    let mut s1 = f64::INFINITY;
    for v in [&l, &rr] {
        let ext = |sel: &dyn Fn(usize) -> bool, axis: usize, take_max: bool| {
            let it = v
                .iter()
                .enumerate()
                .filter(|(i, _)| sel(*i))
                .map(|(_, p)| p[axis]);
            if take_max {
                it.fold(f64::NEG_INFINITY, f64::max)
            } else {
                it.fold(f64::INFINITY, f64::min)
            }
        };
        let all = |_: usize| true;
        let (xmin, xmax, ymin, ymax) = (
            ext(&all, 0, false),
            ext(&all, 0, true),
            ext(&all, 1, false),
            ext(&all, 1, true),
        );
        let (left, right) = (|i: usize| i / (n + 1) == 0, |i: usize| i / (n + 1) == n);
        let (top, bottom) = (
            |i: usize| i.is_multiple_of(n + 1),
            |i: usize| i % (n + 1) == n,
        );
        let (ix0, ix1, iy0, iy1) = (
            ext(&left, 0, true),
            ext(&right, 0, false),
            ext(&top, 1, true),
            ext(&bottom, 1, false),
        );
        // Largest scale keeping c + f0·s·[lo, hi] inside [0, size - 1].
        let fit = |lo: f64, hi: f64, c: f64, size: f64| {
            let a = if lo < 0.0 {
                c / (-lo) / f0
            } else {
                f64::INFINITY
            };
            let b = if hi > 0.0 {
                (size - 1.0 - c) / hi / f0
            } else {
                f64::INFINITY
            };
            a.min(b)
        };
        // Smallest scale at which c + f0·s·[lo, hi] covers [0, size - 1].
        let cover = |lo: f64, hi: f64, c: f64, size: f64| {
            let a = if lo < 0.0 { c / (-lo) / f0 } else { 0.0 };
            let b = if hi > 0.0 {
                (size - 1.0 - c) / hi / f0
            } else {
                0.0
            };
            a.max(b)
        };
        s1 = s1.min(fit(xmin, xmax, cx, w)).min(fit(ymin, ymax, cy, h));
        s0 = s0.max(cover(ix0, ix1, cx, w)).max(cover(iy0, iy1, cy, h));
    }
    if !(s0.is_finite() && s1.is_finite() && s0 > 0.0 && s1 > 0.0) {
        return Err(RectifyError::Degenerate(
            "the rectified views do not overlap the image".into(),
        ));
    }
    let f = f0 * (s0 * (1.0 - alpha) + s1 * alpha);
    let t2 = r2 * t;
    let tx = t2.x;
    let p1 = [[f, 0.0, cx, 0.0], [0.0, f, cy, 0.0], [0.0, 0.0, 1.0, 0.0]];
    let mut p2 = p1;
    p2[0][3] = tx * f;
    let q = [
        [1.0, 0.0, 0.0, -cx],
        [0.0, 1.0, 0.0, -cy],
        [0.0, 0.0, 0.0, f],
        [0.0, 0.0, -1.0 / tx, 0.0],
    ];
    Ok(Rectification {
        r1: arr(&r1),
        r2: arr(&r2),
        p1,
        p2,
        q,
    })
}

/// A per-pixel lookup from the rectified image into the source image.
#[derive(Debug, Clone, PartialEq)]
pub struct RectifyMap {
    /// Width of the rectified image.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Source x of every rectified pixel (NaN where the model has no source).
    pub map_x: Vec<f32>,
    /// Source y.
    pub map_y: Vec<f32>,
}

/// The undistort-rectify map of one camera (OpenCV's `initUndistortRectifyMap`).
pub fn rectify_map(
    cam: &Camera,
    r: &[[f64; 3]; 3],
    p: &[[f64; 4]; 3],
    width: usize,
    height: usize,
) -> RectifyMap {
    let rt = m3(r).transpose();
    let (f, fy, cx, cy) = (p[0][0], p[1][1], p[0][2], p[1][2]);
    let mut map_x = vec![0f32; width * height];
    let mut map_y = vec![0f32; width * height];
    map_x
        .par_chunks_mut(width)
        .zip(map_y.par_chunks_mut(width))
        .enumerate()
        .for_each(|(v, (mx, my))| {
            for u in 0..width {
                let ray = rt * Vector3::new((u as f64 - cx) / f, (v as f64 - cy) / fy, 1.0);
                match cam.project(ray.into()) {
                    Some([x, y]) => {
                        mx[u] = x as f32;
                        my[u] = y as f32;
                    }
                    None => {
                        mx[u] = f32::NAN;
                        my[u] = f32::NAN;
                    }
                }
            }
        });
    RectifyMap {
        width,
        height,
        map_x,
        map_y,
    }
}

impl RectifyMap {
    /// Apply to an 8-bit image of the source size; pixels mapping outside are 0.
    pub fn remap(&self, src: &[u8], src_w: usize, src_h: usize) -> Result<Vec<u8>, RectifyError> {
        if src.len() != src_w * src_h || src_w < 2 || src_h < 2 {
            return Err(RectifyError::Size {
                got_w: src_w,
                got_h: src_h,
                len: src.len(),
                w: self.width,
                h: self.height,
            });
        }
        let mut out = vec![0u8; self.width * self.height];
        let (maxx, maxy) = ((src_w - 1) as f32, (src_h - 1) as f32);
        out.par_chunks_mut(self.width)
            .enumerate()
            .for_each(|(v, row)| {
                let (mx, my) = (
                    &self.map_x[v * self.width..(v + 1) * self.width],
                    &self.map_y[v * self.width..(v + 1) * self.width],
                );
                for ((o, &x), &y) in row.iter_mut().zip(mx).zip(my) {
                    // NaN fails both comparisons: such pixels stay 0.
                    if x >= 0.0 && y >= 0.0 && x <= maxx && y <= maxy {
                        let (x0, y0) = ((x as usize).min(src_w - 2), (y as usize).min(src_h - 2));
                        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
                        let i = y0 * src_w + x0;
                        let a = src[i] as f32 + (src[i + 1] as f32 - src[i] as f32) * fx;
                        let b = src[i + src_w] as f32
                            + (src[i + src_w + 1] as f32 - src[i + src_w] as f32) * fx;
                        *o = (a + (b - a) * fy + 0.5) as u8;
                    }
                }
            });
        Ok(out)
    }
}

/// A [`RectifyMap`] in fixed point for one source size, for the camera's
/// per-frame work: per rectified pixel the index of its top-left source
/// neighbour and the bilinear weights in 1/256 steps (as OpenCV's
/// `convertMaps` to 16-bit maps, here with 8 fractional bits instead of 5).
/// Integer arithmetic, one bounds check per pixel in the scalar loop and none in
/// the AVX2 kernels: several times faster than [`RectifyMap::remap`] (`calib
/// bench` and `agent bench` print the figures), and within one grey level of it.
#[derive(Debug, Clone)]
pub struct FixedRectifyMap {
    /// Width of the rectified image.
    pub width: usize,
    /// Height.
    pub height: usize,
    src_w: usize,
    src_h: usize,
    /// Per rectified pixel: the index of its top-left source neighbour
    /// (`u32::MAX` where the source is outside the image: the pixel stays 0).
    index: Vec<u32>,
    /// Per rectified pixel: the horizontal and vertical weights of the right
    /// and lower neighbours (0..=256), packed `fx | fy << 16`.
    weight: Vec<u32>,
    /// The pixels in runs, in order, each for one kernel (see [`Kernel`]).
    runs: Vec<Run>,
    /// The source windows of the [`Kernel::Window`] runs' groups of 8, in order.
    windows: Vec<Window>,
}

/// Which code remaps a run of pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Whole groups of 8 whose 2 x 2 neighbourhoods lie in one 16-byte window
    /// of two or three consecutive rows: the window is loaded once per row and
    /// the pixels picked from it by byte shuffles (see [`Window`]).
    Window,
    /// Whole groups of 8 inside the image (4-byte reads in bounds) that fit no
    /// window: each neighbourhood fetched with a gather.
    Gather,
    /// The rest (outside pixels, the image's last corner, the tail): the
    /// scalar loop.
    Scalar,
}

/// Pixels `start..end` of a [`FixedRectifyMap`], for one kernel; a window
/// run's groups have the windows from `window` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: usize,
    end: usize,
    kernel: Kernel,
    window: usize,
}

/// Where a group of 8 rectified pixels finds its sources: their top-left
/// neighbours lie in rows `y` and `y + 1` (so all four in rows `y..=y + 2`),
/// columns `x..x + 15`, and `base` is the index of (x, y). `pick[0]` picks the
/// pixels whose top row is `y` from a 16-byte row window: byte `k` (k < 8) is
/// pixel k's left column in the window, byte `8 + k` its right column, and
/// 0x80 (a zero) for pixels of the other row; `pick[1]` the same for those
/// whose top row is `y + 1`. The top pairs are then
/// `shuffle(row y, pick[0]) | shuffle(row y+1, pick[1])`, the bottom pairs the
/// same one row lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "neon")
    )),
    allow(dead_code)
)]
pub(crate) struct Window {
    pub(crate) base: u32,
    pub(crate) pick: [[u8; 16]; 2],
}

/// The window of a group of 8 top-left indices, if they fit one whose three
/// 16-byte row reads stay inside a source of `src_len` bytes.
fn window_of(group: &[u32], src_w: usize, src_len: usize) -> Option<Window> {
    if group.len() != 8 || group.contains(&u32::MAX) {
        return None;
    }
    let xy = |i: u32| ((i as usize) % src_w, (i as usize) / src_w);
    let x = group.iter().map(|&i| xy(i).0).min()?;
    let y = group.iter().map(|&i| xy(i).1).min()?;
    let base = y * src_w + x;
    if base + 2 * src_w + 16 > src_len {
        return None;
    }
    let mut pick = [[0x80u8; 16]; 2];
    for (k, &i) in group.iter().enumerate() {
        let (px, py) = xy(i);
        let (col, row) = (px - x, py - y);
        if col + 1 >= 16 || row > 1 {
            return None;
        }
        pick[row][k] = col as u8;
        pick[row][8 + k] = col as u8 + 1;
    }
    Some(Window {
        base: u32::try_from(base).ok()?,
        pick,
    })
}

/// Whether this CPU runs a window kernel (AVX2 on x86-64, NEON on aarch64).
fn window_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    let on = crate::remap_avx2::available();
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    let on = true;
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "neon")
    )))]
    let on = false;
    on
}

/// Whether the gather kernel may fetch the neighbourhood at `i`: two 4-byte
/// reads at `i` and `i + src_w` inside a source of `src_len` bytes, whose
/// offsets fit the gathers' 32-bit lanes.
fn gather_ok(i: u32, src_w: usize, src_len: usize) -> bool {
    i != u32::MAX && (i as usize) + src_w + 4 <= src_len && src_len <= i32::MAX as usize
}

/// Splits `index` into runs (see [`FixedRectifyMap::runs`]) and the window
/// runs' windows (none unless `windows`: a CPU without the window kernel
/// would only carry them).
fn runs_of(
    index: &[u32],
    src_w: usize,
    src_len: usize,
    windows_on: bool,
) -> (Vec<Run>, Vec<Window>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut windows = Vec::new();
    let mut start = 0;
    while start < index.len() {
        let end = (start + 8).min(index.len());
        let group = &index[start..end];
        let kernel = if let Some(w) = window_of(group, src_w, src_len).filter(|_| windows_on) {
            windows.push(w);
            Kernel::Window
        } else if group.len() == 8 && group.iter().all(|&i| gather_ok(i, src_w, src_len)) {
            Kernel::Gather
        } else {
            Kernel::Scalar
        };
        match runs.last_mut() {
            Some(r) if r.kernel == kernel => r.end = end,
            _ => runs.push(Run {
                start,
                end,
                kernel,
                window: windows.len() - usize::from(kernel == Kernel::Window),
            }),
        }
        start = end;
    }
    (runs, windows)
}

impl RectifyMap {
    /// This map in fixed point, for source images of `src_w` x `src_h`.
    pub fn fixed(&self, src_w: usize, src_h: usize) -> FixedRectifyMap {
        let n = self.width * self.height;
        let mut index = vec![u32::MAX; n];
        let mut weight = vec![0u32; n];
        if src_w >= 2 && src_h >= 2 && src_w * src_h < u32::MAX as usize {
            let (maxx, maxy) = ((src_w - 1) as f32, (src_h - 1) as f32);
            for (i, (&x, &y)) in self.map_x.iter().zip(&self.map_y).enumerate() {
                // NaN fails both comparisons: such pixels stay outside.
                if x >= 0.0 && y >= 0.0 && x <= maxx && y <= maxy {
                    let (x0, y0) = ((x as usize).min(src_w - 2), (y as usize).min(src_h - 2));
                    let fx = ((x - x0 as f32) * 256.0).round() as u32;
                    let fy = ((y - y0 as f32) * 256.0).round() as u32;
                    index[i] = (y0 * src_w + x0) as u32;
                    weight[i] = fx | fy << 16;
                }
            }
        }
        let (runs, windows) = runs_of(&index, src_w, src_w * src_h, window_kernel());
        FixedRectifyMap {
            width: self.width,
            height: self.height,
            src_w,
            src_h,
            runs,
            windows,
            index,
            weight,
        }
    }
}

impl FixedRectifyMap {
    /// Apply to an 8-bit image of the source size given to [`RectifyMap::fixed`].
    /// On x86-64 with AVX2 most pixels go through eight-wide kernels that
    /// give the same bytes as [`FixedRectifyMap::remap_scalar`].
    pub fn remap(&self, src: &[u8]) -> Result<Vec<u8>, RectifyError> {
        self.remap_kernels(src, true)
    }

    /// [`FixedRectifyMap::remap`] without the window kernel: the groups of 8
    /// whose reads stay in bounds by gathers, the rest by the scalar loop, as
    /// before the windows (`calib bench` compares the two).
    pub fn remap_gathers(&self, src: &[u8]) -> Result<Vec<u8>, RectifyError> {
        self.remap_kernels(src, false)
    }

    /// The share of pixels the window kernel remaps (0..=1; 0 on a CPU
    /// without it, where no windows are built).
    pub fn window_share(&self) -> f64 {
        (8 * self.windows.len()) as f64 / self.index.len().max(1) as f64
    }

    fn remap_kernels(&self, src: &[u8], windows: bool) -> Result<Vec<u8>, RectifyError> {
        self.check(src)?;
        let mut out = vec![0u8; self.index.len()];
        #[cfg(target_arch = "x86_64")]
        let simd = crate::remap_avx2::available();
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        let _ = windows;
        for r in &self.runs {
            let (index, weight) = (&self.index[r.start..r.end], &self.weight[r.start..r.end]);
            let out = &mut out[r.start..r.end];
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            if r.kernel == Kernel::Window && windows {
                let windows = &self.windows[r.window..r.window + out.len() / 8];
                // SAFETY: the run is whole groups of 8, one window each;
                // `window_of` let in only windows whose reads at base, base +
                // src_w and base + 2 src_w, 16 bytes each, end inside
                // src_w * src_h = `src.len()` (checked).
                #[allow(unsafe_code)]
                unsafe {
                    crate::remap_neon::run_windows(src, self.src_w, windows, weight, out)
                };
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            match r.kernel {
                Kernel::Window if simd && windows => {
                    let windows = &self.windows[r.window..r.window + out.len() / 8];
                    // SAFETY: AVX2 is present; the run is whole groups of 8,
                    // one window each; `window_of` let in only windows whose
                    // reads at base, base + src_w and base + 2 src_w, 16 bytes
                    // each, end inside src_w * src_h = `src.len()` (checked).
                    #[allow(unsafe_code)]
                    unsafe {
                        crate::remap_avx2::run_windows(src, self.src_w, windows, weight, out)
                    };
                    continue;
                }
                Kernel::Window if simd => {
                    // Without windows: a window's group gathers where its
                    // 4-byte reads stay in the image (not always: a window at
                    // the image's end may hold a group that reads 2 bytes past it).
                    let len = src.len();
                    for ((index, weight), out) in index
                        .chunks_exact(8)
                        .zip(weight.chunks_exact(8))
                        .zip(out.chunks_exact_mut(8))
                    {
                        if index.iter().all(|&i| gather_ok(i, self.src_w, len)) {
                            // SAFETY: AVX2 is present; 8 of each; every index
                            // was just checked: i + src_w + 4 <= len <= i32::MAX.
                            #[allow(unsafe_code)]
                            unsafe {
                                crate::remap_avx2::run(src, self.src_w, index, weight, out)
                            };
                        } else {
                            remap_scalar(src, self.src_w, index, weight, out);
                        }
                    }
                    continue;
                }
                Kernel::Gather if simd => {
                    // SAFETY: AVX2 is present; the run's three slices have the
                    // same length, a multiple of 8; `runs_of` let into a gather
                    // run only indices with i + src_w + 4 <= src_w * src_h <=
                    // i32::MAX, and `src.len()` was checked equal to src_w * src_h.
                    #[allow(unsafe_code)]
                    unsafe {
                        crate::remap_avx2::run(src, self.src_w, index, weight, out)
                    };
                    continue;
                }
                _ => {}
            }
            let _ = simd;
            remap_scalar(src, self.src_w, index, weight, out);
        }
        Ok(out)
    }
}

impl FixedRectifyMap {
    /// Which code [`FixedRectifyMap::remap`] runs on this machine.
    #[allow(unreachable_code)]
    pub fn kernel() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        if crate::remap_avx2::available() {
            return "AVX2 kernels";
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        return "NEON window kernel";
        "no SIMD kernel on this CPU: the scalar loop both times"
    }

    /// [`FixedRectifyMap::remap`] without the SIMD kernel: the reference it
    /// equals bit for bit (`calib bench` prints both).
    pub fn remap_scalar(&self, src: &[u8]) -> Result<Vec<u8>, RectifyError> {
        self.check(src)?;
        let mut out = vec![0u8; self.index.len()];
        remap_scalar(src, self.src_w, &self.index, &self.weight, &mut out);
        Ok(out)
    }

    fn check(&self, src: &[u8]) -> Result<(), RectifyError> {
        if src.len() != self.src_w * self.src_h {
            return Err(RectifyError::Size {
                got_w: self.src_w,
                got_h: src.len() / self.src_w.max(1),
                len: src.len(),
                w: self.src_w,
                h: self.src_h,
            });
        }
        Ok(())
    }
}

/// The bilinear blend of each pixel's 2 x 2 source neighbourhood in integers:
/// a + (b - a) f, which equals a (256 - f) + b f and takes three
/// multiplications instead of six; pixels whose neighbourhood is not inside
/// `src` (`u32::MAX`) are 0.
fn remap_scalar(src: &[u8], w: usize, index: &[u32], weight: &[u32], out: &mut [u8]) {
    for ((o, &i), &f) in out.iter_mut().zip(index).zip(weight) {
        let i = i as usize;
        *o = match i.checked_add(w + 2).and_then(|end| src.get(i..end)) {
            Some(q) => {
                let (fx, fy) = ((f & 0xffff) as i32, (f >> 16) as i32);
                let (a, b) = (i32::from(q[0]), i32::from(q[1]));
                let (c, d) = (i32::from(q[w]), i32::from(q[w + 1]));
                let top = (a << 8) + (b - a) * fx;
                let bot = (c << 8) + (d - c) * fx;
                (((top << 8) + (bot - top) * fy + 32768) >> 16) as u8
            }
            None => 0,
        };
    }
}

/// What [`kernel_check`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelCheck {
    /// The kernels this CPU runs ([`FixedRectifyMap::kernel`]).
    pub kernel: &'static str,
    /// Whether they gave the scalar loop's bytes.
    pub equal: bool,
    /// Share of the pixels done by a window kernel (0..=1).
    pub window_share: f64,
    /// FNV-1a digest of the rectified image: equal on every build whose
    /// kernels are right, whatever its instruction set.
    pub digest: u64,
}

/// Rectifies a textured `w` x `h` image through a distorted, rotated lens's
/// map with this CPU's kernels and with the scalar loop, and compares: a
/// build's self-test on its target (`agent selftest`, run on aarch64 under
/// qemu in CI) shows its SIMD remap right there.
pub fn kernel_check(w: usize, h: usize) -> Result<KernelCheck, RectifyError> {
    let (f, cx, cy) = (
        0.625 * w as f64,
        (w as f64 - 1.0) / 2.0,
        (h as f64 - 1.0) / 2.0,
    );
    let mut rig = Rig::ideal(w, h, f, cx, cy, 0.12);
    rig.rect = None;
    rig.left = Camera::from_coefficients(
        crate::LensKind::PlumbBob,
        [f, f, cx, cy],
        &[-0.2, 0.05, 0.001, -0.0005, 0.0],
    );
    rig.right = rig.left;
    let rot = Rotation3::from_euler_angles(0.01, -0.02, 0.015);
    rig.r = arr(rot.matrix());
    let t = rot * Vector3::new(-0.12, 0.003, -0.002);
    rig.t = [t.x, t.y, t.z];
    let rect = stereo_rectify(&rig, 0.0)?;
    let fixed = rectify_map(&rig.left, &rect.r1, &rect.p1, w, h).fixed(w, h);
    let img: Vec<u8> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            (128.0 + 60.0 * (x * 0.21).sin() * (y * 0.17).cos() + ((i * 37) % 23) as f64) as u8
        })
        .collect();
    let simd = fixed.remap(&img)?;
    let digest = simd.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    Ok(KernelCheck {
        kernel: FixedRectifyMap::kernel(),
        equal: simd == fixed.remap_scalar(&img)?,
        window_share: fixed.window_share(),
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CameraModel;

    #[test]
    fn fixed_point_map_is_within_one_grey_level_of_the_float_map() {
        let rig = rotated_rig();
        let rect = stereo_rectify(&rig, 0.0).unwrap();
        let (w, h) = (rig.width, rig.height);
        let map = rectify_map(&rig.left, &rect.r1, &rect.p1, w, h);
        let img: Vec<u8> = (0..w * h)
            .map(|i| (((i % w) * 13 + (i / w) * 7) % 251) as u8)
            .collect();
        let float = map.remap(&img, w, h).unwrap();
        let fixed = map.fixed(w, h).remap(&img).unwrap();
        let worst = float
            .iter()
            .zip(&fixed)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "fixed point differs by {worst} grey levels");
        assert!(map.fixed(w, h).remap(&img[1..]).is_err());
    }

    #[test]
    fn simd_remap_equals_the_scalar_loop_bit_for_bit() {
        // A distorted, rotated rig (pixels outside the source at the borders)
        // at a size that is no multiple of 8, and a zoomed map whose last
        // pixels sample the source's bottom-right corner, where a 4-byte read
        // would run past the image.
        let rig = rotated_rig();
        let rect = stereo_rectify(&rig, 1.0).unwrap();
        let (w, h) = (rig.width, rig.height);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let img: Vec<u8> = (0..w * h)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 24) as u8
            })
            .collect();
        for map in [
            rectify_map(&rig.left, &rect.r1, &rect.p1, w, h),
            rectify_map(&rig.right, &rect.r2, &rect.p2, w - 3, h - 1),
        ] {
            let fixed = map.fixed(w, h);
            assert!(has(&fixed, Kernel::Window), "no window run to test");
            assert!(fixed.index.contains(&u32::MAX), "no outside pixel");
            assert_all_kernels_equal_the_scalar_loop(&fixed, &img);
        }
        let corner = RectifyMap {
            width: 16,
            height: 1,
            map_x: (0..16).map(|k| (w - 1) as f32 - 0.05 * k as f32).collect(),
            map_y: vec![(h - 1) as f32; 16],
        };
        let fixed = corner.fixed(w, h);
        assert!(
            fixed.runs.iter().all(|r| r.kernel == Kernel::Scalar),
            "the corner's 4-byte reads would pass the end: {:?}",
            fixed.runs
        );
        let out = fixed.remap(&img).unwrap();
        assert_eq!(out, fixed.remap_scalar(&img).unwrap());
        assert_eq!(out[0], img[w * h - 1], "the corner pixel itself");

        // The kernel's reads end 4 bytes after i + w: a group whose largest
        // index reaches exactly the image's end goes to the kernel, one byte
        // further does not.
        let len = w * h;
        let last = (len - w - 4) as u32;
        let kernel = |group: &[u32]| runs_of(group, w, len, true).0[0].kernel;
        assert_eq!(kernel(&[last; 8]), Kernel::Gather);
        assert_eq!(kernel(&[last + 1; 8]), Kernel::Scalar);
        assert_eq!(kernel(&[last; 7]), Kernel::Scalar, "a short group");
        // A window's three 16-byte row reads end at base + 2w + 16: a group at
        // exactly the image's end gets one, a byte further the gathers.
        let end = (len - 2 * w - 16) as u32;
        assert_eq!(kernel(&[end; 8]), Kernel::Window);
        assert_eq!(kernel(&[end + 1; 8]), Kernel::Gather);
        // Sources over three rows, or 16 columns apart, fit no window.
        let spread = |dx: u32, dy: u32| -> Vec<u32> {
            (0..8u32)
                .map(|k| 1000 + (k % 2) * (dx + dy * w as u32))
                .collect()
        };
        assert_eq!(kernel(&spread(14, 1)), Kernel::Window);
        assert_eq!(kernel(&spread(15, 0)), Kernel::Gather);
        assert_eq!(kernel(&spread(0, 2)), Kernel::Gather);
        #[cfg(target_arch = "x86_64")]
        {
            assert!(
                crate::remap_avx2::available(),
                "this x86-64 CPU has no AVX2: the kernel is not tested here"
            );
            let index: Vec<u32> = (0..8).map(|k| last - 7 + k).collect();
            // Weights inside their 0..=256 range, both ends included.
            let weight: Vec<u32> = (0..8)
                .map(|k| (256 - 36 * k) | (32 * k + 32) << 16)
                .collect();
            let (mut simd, mut scalar) = ([0u8; 8], [0u8; 8]);
            // SAFETY: AVX2 is present (asserted); 8 of each; every index
            // satisfies i + w + 4 <= len <= i32::MAX.
            #[allow(unsafe_code)]
            unsafe {
                crate::remap_avx2::run(&img, w, &index, &weight, &mut simd)
            };
            remap_scalar(&img, w, &index, &weight, &mut scalar);
            assert_eq!(simd, scalar, "at the image's last bytes");
            // The window kernel at the image's last bytes, pixels in both rows.
            let index: Vec<u32> = (0..8u32)
                .map(|k| end + (k % 2) * w as u32 + 14 - 2 * k.min(7))
                .collect();
            let (runs, windows) = runs_of(&index, w, len, true);
            assert_eq!(runs[0].kernel, Kernel::Window);
            // SAFETY: AVX2 is present (asserted); one window for 8 pixels,
            // admitted by `window_of` (reads inside the image).
            #[allow(unsafe_code)]
            unsafe {
                crate::remap_avx2::run_windows(&img, w, &windows, &weight, &mut simd)
            };
            remap_scalar(&img, w, &index, &weight, &mut scalar);
            assert_eq!(simd, scalar, "window at the image's last bytes");
        }
    }

    #[test]
    fn the_kernel_check_finds_this_cpus_kernels_equal_to_the_scalar_loop() {
        let c = kernel_check(320, 240).unwrap();
        assert!(c.equal, "{c:?}");
        #[cfg(target_arch = "x86_64")]
        assert!(c.window_share > 0.9, "{c:?}");
    }

    fn has(f: &FixedRectifyMap, k: Kernel) -> bool {
        f.runs.iter().any(|r| r.kernel == k)
    }

    #[test]
    fn windows_of_an_image_narrower_than_a_window_equal_the_scalar_loop() {
        // 6 px rows: a 16-byte row read spans several rows, and the last
        // groups' reads reach the image's last byte or would pass it.
        let (w, h) = (6, 20);
        let img: Vec<u8> = (0..w * h).map(|i| ((i * 53 + 7) % 256) as u8).collect();
        let fixed = map_of(8, 19, |x, r| {
            (x as f32 * 0.6 + 0.2, r as f32 + 0.25 + 0.1 * (x % 3) as f32)
        })
        .fixed(w, h);
        assert!(has(&fixed, Kernel::Window), "{:?}", fixed.runs);
        assert!(
            fixed
                .runs
                .last()
                .is_some_and(|r| r.kernel != Kernel::Window)
        );
        assert_all_kernels_equal_the_scalar_loop(&fixed, &img);
    }

    /// A `mw` x `mh` map whose pixel (x, row) samples the source at `at(x, row)`.
    fn map_of(mw: usize, mh: usize, at: impl Fn(usize, usize) -> (f32, f32)) -> RectifyMap {
        let (map_x, map_y) = (0..mh)
            .flat_map(|r| (0..mw).map(move |x| (x, r)))
            .map(|(x, r)| at(x, r))
            .unzip();
        RectifyMap {
            width: mw,
            height: mh,
            map_x,
            map_y,
        }
    }

    fn assert_all_kernels_equal_the_scalar_loop(fixed: &FixedRectifyMap, img: &[u8]) {
        let scalar = fixed.remap_scalar(img).unwrap();
        assert_eq!(
            fixed.remap(img).unwrap(),
            scalar,
            "window and gather kernels"
        );
        assert_eq!(fixed.remap_gathers(img).unwrap(), scalar, "gathers alone");
    }

    #[test]
    fn window_and_gather_groups_side_by_side_equal_the_scalar_loop() {
        // Groups alternate between sources along one row (window) and sources
        // down a slope over several rows (gathers).
        let (w, h) = (80, 40);
        let img: Vec<u8> = (0..w * h)
            .map(|i| ((i * 37 + i / w * 11) % 256) as u8)
            .collect();
        let fixed = map_of(64, 8, |x, r| {
            let slope = if (x / 8) % 2 == 0 { 0.7 } else { 0.05 };
            (
                x as f32 * 1.1 + 0.3,
                r as f32 * 3.0 + (x % 8) as f32 * slope + 0.4,
            )
        })
        .fixed(w, h);
        assert!(has(&fixed, Kernel::Window) && has(&fixed, Kernel::Gather));
        assert_all_kernels_equal_the_scalar_loop(&fixed, &img);
    }

    /// A distorted rig with a small relative rotation (also used against OpenCV below).
    pub(super) fn rotated_rig() -> Rig {
        let mut rig = Rig::ideal(640, 480, 400.0, 319.5, 239.5, 0.12);
        rig.rect = None;
        rig.left = Camera::from_coefficients(
            crate::LensKind::PlumbBob,
            [400.0, 400.0, 319.5, 239.5],
            &[-0.2, 0.05, 0.001, -0.0005, 0.0],
        );
        rig.right = Camera::from_coefficients(
            crate::LensKind::PlumbBob,
            [405.0, 403.0, 322.0, 236.0],
            &[-0.21, 0.048, -0.0008, 0.0004, 0.0],
        );
        let rot = Rotation3::from_euler_angles(0.01, -0.02, 0.015);
        rig.r = arr(rot.matrix());
        let t = rot * Vector3::new(-0.12, 0.003, -0.002);
        rig.t = [t.x, t.y, t.z];
        rig
    }

    #[test]
    fn ideal_rig_rectifies_to_itself() {
        let mut rig = Rig::ideal(320, 240, 200.0, 159.5, 119.5, 0.1);
        rig.rect = None;
        let rect = stereo_rectify(&rig, 0.0).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!((rect.r1[i][j] - e).abs() < 1e-12 && (rect.r2[i][j] - e).abs() < 1e-12);
            }
        }
        assert!((rect.p1[0][0] - 200.0).abs() < 1e-6, "{:?}", rect.p1);
        assert!((rect.p2[0][3] - -20.0).abs() < 1e-6);
        let map = rectify_map(&rig.left, &rect.r1, &rect.p1, 320, 240);
        let img: Vec<u8> = (0..320 * 240).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(map.remap(&img, 320, 240).unwrap(), img);
    }

    #[test]
    fn rectified_correspondences_share_a_row_and_give_depth() {
        let rig = rotated_rig();
        for alpha in [0.0, 0.5, 1.0] {
            let rect = stereo_rectify(&rig, alpha).unwrap();
            let (r1, r2) = (m3(&rect.r1), m3(&rect.r2));
            let (f, cx, cy) = (rect.p1[0][0], rect.p1[0][2], rect.p1[1][2]);
            let rr = m3(&rig.r);
            let t = Vector3::from(rig.t);
            for &(x, y, z) in &[
                (0.3, -0.2, 2.0),
                (-0.5, 0.4, 4.0),
                (0.0, 0.0, 1.5),
                (1.0, 0.6, 6.0),
            ] {
                let pl = Vector3::new(x, y, z);
                let pr = rr * pl + t;
                // Observed distorted pixels in each camera, then rectified.
                let ul = rig.left.project(pl.into()).unwrap();
                let ur = rig.right.project(pr.into()).unwrap();
                let rect_px = |cam: &Camera, r: &Matrix3<f64>, px: [f64; 2]| {
                    let q = r * Vector3::from(cam.unproject(px).unwrap());
                    [f * q.x / q.z + cx, f * q.y / q.z + cy]
                };
                let (a, b) = (rect_px(&rig.left, &r1, ul), rect_px(&rig.right, &r2, ur));
                assert!(
                    (a[1] - b[1]).abs() < 1e-6,
                    "alpha {alpha}: rows {} vs {}",
                    a[1],
                    b[1]
                );
                // Depth from disparity through Q equals the point's depth in the rectified left frame.
                let d = a[0] - b[0];
                let h = [a[0] - cx, a[1] - cy, f, -d / rect.p2[0][3] * f];
                let zq = h[2] / h[3];
                let z_rect = (r1 * pl).z;
                assert!(
                    (zq - z_rect).abs() < 1e-6 * z_rect,
                    "alpha {alpha}: {zq} vs {z_rect}"
                );
            }
            // Alpha widens the view: focal length falls from 0 to 1.
            if alpha > 0.0 {
                assert!(rect.p1[0][0] <= stereo_rectify(&rig, 0.0).unwrap().p1[0][0] + 1e-9);
            }
        }
        assert!(matches!(
            stereo_rectify(&rig, 1.5),
            Err(RectifyError::Alpha(_))
        ));
    }

    #[test]
    fn maps_remap_a_distorted_image_onto_straight_rows() {
        let rig = rotated_rig();
        let rect = stereo_rectify(&rig, 0.0).unwrap();
        let map = rectify_map(&rig.left, &rect.r1, &rect.p1, 640, 480);
        // alpha = 0: every rectified pixel has a source inside the image.
        let inside = map
            .map_x
            .iter()
            .zip(&map.map_y)
            .filter(|(x, y)| **x >= 0.0 && **y >= 0.0 && **x <= 639.0 && **y <= 479.0)
            .count();
        assert!(inside as f64 > 0.99 * (640.0 * 480.0), "{inside}");
        assert!(map.remap(&[0u8; 10], 5, 3).is_err());
    }
}

#[cfg(test)]
mod opencv_compare {
    use super::*;

    /// cv2.stereoRectify (OpenCV 4.14, CALIB_ZERO_DISPARITY) on the same rig; printed by
    /// the script in the issue note.
    const CV_R1: [[f64; 3]; 3] = [
        [
            0.9995489165092578,
            -0.024988722912729206,
            0.016659148608492078,
        ],
        [
            0.02507603992352734,
            0.9996727749912772,
            -0.0050532329248563134,
        ],
        [
            -0.016527423481070648,
            0.005468698970507585,
            0.9998484573197318,
        ],
    ];
    const CV_R2: [[f64; 3]; 3] = [
        [
            0.9992857756588737,
            -0.01016648136132278,
            0.03639479664145854,
        ],
        [
            0.009974813002328276,
            0.999935430467074,
            0.0054440795545006165,
        ],
        [
            -0.036447793779758875,
            -0.0050771599696114245,
            0.9993226609935508,
        ],
    ];
    const CV_F_ALPHA0: f64 = 380.4604727565673;
    const CV_F_ALPHA1: f64 = 297.0080701335095;
    const CV_TX: f64 = -0.12005415444706609;

    #[test]
    fn matches_opencv_stereo_rectify() {
        let rig = super::tests::rotated_rig();
        for (alpha, cv_f) in [(0.0, CV_F_ALPHA0), (1.0, CV_F_ALPHA1)] {
            let r = stereo_rectify(&rig, alpha).unwrap();
            for i in 0..3 {
                for j in 0..3 {
                    assert!(
                        (r.r1[i][j] - CV_R1[i][j]).abs() < 1e-12
                            && (r.r2[i][j] - CV_R2[i][j]).abs() < 1e-12
                    );
                }
            }
            let f = r.p1[0][0];
            // OpenCV inverts distortion with a fixed 5 iterations; we invert exactly, so the
            // image extents (and with them f and the principal point) differ slightly.
            assert!(
                (f - cv_f).abs() < 0.005 * cv_f,
                "alpha {alpha}: f {f} vs OpenCV {cv_f}"
            );
            assert!((r.p2[0][3] / f - CV_TX).abs() < 1e-12);
        }
    }
}
