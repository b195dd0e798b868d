//! Mono calibration from planar-target views: closed-form initialisation (Zhang:
//! homographies → intrinsics → poses) and Levenberg-Marquardt refinement of the
//! intrinsics, distortion (plumb-bob or equidistant fisheye) and every view's pose, with per-view RMS,
//! outlier-view rejection, and parameter standard deviations from the final Jacobian.

use crate::model::{Camera, CameraModel, LensKind};
use nalgebra::{DMatrix, DVector, Matrix3, Rotation3, Vector3};
use thiserror::Error;

/// Correspondences of one view of the target: board points (z = 0 plane, metres) and pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// Target points in the board frame.
    pub object: Vec<[f64; 3]>,
    /// Their detected pixels.
    pub image: Vec<[f64; 2]>,
}

/// Why calibration failed.
#[derive(Debug, Error, PartialEq)]
pub enum CalibError {
    /// Too few usable views.
    #[error("need at least 3 views with 6 or more points each, got {0}")]
    TooFewViews(usize),
    /// A view's point lists differ in length or hold non-finite values.
    #[error("view {0}: {1}")]
    BadView(usize, String),
    /// The closed-form initialisation was degenerate (e.g. all views parallel).
    #[error("initialisation failed: {0}")]
    Degenerate(String),
}

/// Board pose in the camera frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Rotation vector (axis x angle).
    pub rvec: [f64; 3],
    /// Translation (m).
    pub t: [f64; 3],
}

impl Pose {
    /// Board point into the camera frame.
    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        let q = Rotation3::new(Vector3::from(self.rvec)) * Vector3::from(p) + Vector3::from(self.t);
        [q.x, q.y, q.z]
    }
}

/// The result of a mono calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct MonoCalibration {
    /// The camera.
    pub camera: Camera,
    /// Pose of every kept view (indices into the input in `kept`).
    pub poses: Vec<Pose>,
    /// Input indices of the views kept.
    pub kept: Vec<usize>,
    /// Input indices of views dropped as outliers.
    pub dropped: Vec<usize>,
    /// RMS reprojection error of every kept view (pixels).
    pub view_rms: Vec<f64>,
    /// Overall RMS reprojection error (pixels).
    pub rms: f64,
    /// Standard deviations of fx, fy, cx, cy and the distortion terms in
    /// [`Camera::params`] order (0 for terms not estimated).
    pub std_dev: [f64; 9],
}

/// Which lens model and distortion terms to estimate (others stay zero).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DistortionTerms {
    /// Estimate the plumb-bob k3 (often unstable for narrow lenses).
    pub k3: bool,
    /// The lens model (fisheye estimates all of k1..k4).
    pub lens: LensKind,
}

impl DistortionTerms {
    /// Which of the nine camera parameters stay fixed.
    pub(crate) fn fixed(&self) -> [bool; NI] {
        let mut f = [false; NI];
        f[8] = self.lens == LensKind::Fisheye || !self.k3;
        f
    }
}

fn homography(v: &View) -> Option<Matrix3<f64>> {
    // Normalised DLT.
    let n = v.object.len();
    let norm = |pts: &mut dyn Iterator<Item = [f64; 2]>| {
        let p: Vec<[f64; 2]> = pts.collect();
        let m = p
            .iter()
            .fold([0.0, 0.0], |a, q| [a[0] + q[0], a[1] + q[1]])
            .map(|s| s / p.len() as f64);
        let d = p
            .iter()
            .map(|q| ((q[0] - m[0]).powi(2) + (q[1] - m[1]).powi(2)).sqrt())
            .sum::<f64>()
            / p.len() as f64;
        let s = if d > 0.0 {
            std::f64::consts::SQRT_2 / d
        } else {
            1.0
        };
        Matrix3::new(s, 0.0, -s * m[0], 0.0, s, -s * m[1], 0.0, 0.0, 1.0)
    };
    let to = norm(&mut v.object.iter().map(|p| [p[0], p[1]]));
    let ti = norm(&mut v.image.iter().copied());
    let mut a = DMatrix::<f64>::zeros(2 * n, 9);
    for k in 0..n {
        let o = to * Vector3::new(v.object[k][0], v.object[k][1], 1.0);
        let i = ti * Vector3::new(v.image[k][0], v.image[k][1], 1.0);
        let (x, y, u, w) = (o.x, o.y, i.x, i.y);
        a.row_mut(2 * k)
            .copy_from_slice(&[-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u]);
        a.row_mut(2 * k + 1)
            .copy_from_slice(&[0.0, 0.0, 0.0, -x, -y, -1.0, w * x, w * y, w]);
    }
    let svd = (a.transpose() * &a).symmetric_eigen();
    let (imin, _) = svd
        .eigenvalues
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))?;
    let h = svd.eigenvectors.column(imin);
    let hn = Matrix3::new(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]);
    let hm = ti.try_inverse()? * hn * to;
    Some(hm / hm[(2, 2)])
}

fn zhang_intrinsics(hs: &[Matrix3<f64>]) -> Option<Matrix3<f64>> {
    let vij = |h: &Matrix3<f64>, i: usize, j: usize| {
        let (a, b) = (h.column(i), h.column(j));
        [
            a[0] * b[0],
            a[0] * b[1] + a[1] * b[0],
            a[1] * b[1],
            a[2] * b[0] + a[0] * b[2],
            a[2] * b[1] + a[1] * b[2],
            a[2] * b[2],
        ]
    };
    let mut vm = DMatrix::<f64>::zeros(2 * hs.len() + 1, 6);
    for (k, h) in hs.iter().enumerate() {
        let v12 = vij(h, 0, 1);
        let (v11, v22) = (vij(h, 0, 0), vij(h, 1, 1));
        vm.row_mut(2 * k).copy_from_slice(&v12);
        let d: Vec<f64> = v11.iter().zip(v22).map(|(a, b)| a - b).collect();
        vm.row_mut(2 * k + 1).copy_from_slice(&d);
    }
    // Zero skew: B12 = 0.
    vm.row_mut(2 * hs.len())
        .copy_from_slice(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    let e = (vm.transpose() * &vm).symmetric_eigen();
    let (imin, _) = e
        .eigenvalues
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))?;
    let b = e.eigenvectors.column(imin);
    let (b11, b12, b22, b13, b23, b33) = (b[0], b[1], b[2], b[3], b[4], b[5]);
    let v0 = (b12 * b13 - b11 * b23) / (b11 * b22 - b12 * b12);
    let lambda = b33 - (b13 * b13 + v0 * (b12 * b13 - b11 * b23)) / b11;
    let alpha = (lambda / b11).sqrt();
    let beta = (lambda * b11 / (b11 * b22 - b12 * b12)).sqrt();
    let u0 = -b13 * alpha * alpha / lambda;
    (alpha.is_finite() && beta.is_finite() && u0.is_finite() && v0.is_finite())
        .then(|| Matrix3::new(alpha, 0.0, u0, 0.0, beta, v0, 0.0, 0.0, 1.0))
}

fn pose_from_h(k: &Matrix3<f64>, h: &Matrix3<f64>) -> Option<Pose> {
    let ki = k.try_inverse()?;
    let (h1, h2, h3) = (
        h.column(0).into_owned(),
        h.column(1).into_owned(),
        h.column(2).into_owned(),
    );
    let l = 1.0 / (ki * h1).norm();
    let (r1, r2) = (ki * h1 * l, ki * h2 * l);
    let mut t = ki * h3 * l;
    let mut r = Matrix3::from_columns(&[r1, r2, r1.cross(&r2)]);
    if t.z < 0.0 {
        // The board is in front of the camera: flip the sign ambiguity.
        t = -t;
        r.set_column(0, &-r.column(0));
        r.set_column(1, &-r.column(1));
    }
    let svd = r.svd(true, true);
    let rot = svd.u? * svd.v_t?;
    let rv = Rotation3::from_matrix_unchecked(rot).scaled_axis();
    Some(Pose {
        rvec: [rv.x, rv.y, rv.z],
        t: [t.x, t.y, t.z],
    })
}

/// Starting parameters (intrinsics, zero distortion, every usable view's pose) for
/// a plumb-bob lens: Zhang's closed form from the views' homographies.
fn pinhole_start(views: &[View], usable: &[usize]) -> Result<Vec<f64>, CalibError> {
    let hs: Vec<Matrix3<f64>> = usable
        .iter()
        .map(|&i| {
            homography(&views[i])
                .ok_or_else(|| CalibError::Degenerate(format!("no homography for view {i}")))
        })
        .collect::<Result<_, _>>()?;
    let k = zhang_intrinsics(&hs).ok_or_else(|| {
        CalibError::Degenerate("views do not constrain the intrinsics (too parallel?)".into())
    })?;
    let mut p = vec![k[(0, 0)], k[(1, 1)], k[(0, 2)], k[(1, 2)]];
    p.extend([0.0; NI - 4]);
    for h in &hs {
        let pose = pose_from_h(&k, h)
            .ok_or_else(|| CalibError::Degenerate("pose from homography".into()))?;
        p.extend(pose.rvec);
        p.extend(pose.t);
    }
    Ok(p)
}

/// Starting parameters for a fisheye lens. A fisheye's views are far from
/// homographies of the board, so Zhang's closed form is unreliable; instead the
/// principal point starts at the centre of the detections, and for each of a few
/// focal lengths (fractions of their extent) the pixels are turned into ideal
/// pinhole coordinates through an equidistant lens (r = f θ), the poses come from
/// those coordinates' homographies, and the focal length whose start reprojects
/// best is kept.
fn fisheye_start(views: &[View], usable: &[usize]) -> Result<Vec<f64>, CalibError> {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for &i in usable {
        for px in &views[i].image {
            for a in 0..2 {
                lo[a] = lo[a].min(px[a]);
                hi[a] = hi[a].max(px[a]);
            }
        }
    }
    let (cx, cy) = ((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0);
    let extent = (hi[0] - lo[0]).hypot(hi[1] - lo[1]);
    let mut best: Option<(f64, Vec<f64>)> = None;
    for frac in [0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8] {
        let f = frac * extent;
        let cam = Camera::from_params(LensKind::Fisheye, &[f, f, cx, cy, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let mut p = vec![f, f, cx, cy];
        p.extend([0.0; NI - 4]);
        let mut ok = true;
        for &i in usable {
            let v = &views[i];
            // Board points whose rays are well in front of the camera, as pinhole coordinates.
            let (mut object, mut image) = (Vec::new(), Vec::new());
            for (o, px) in v.object.iter().zip(&v.image) {
                if let Some(r) = cam.unproject(*px)
                    && r[2] > 0.2
                {
                    object.push(*o);
                    image.push([r[0] / r[2], r[1] / r[2]]);
                }
            }
            let pose = (object.len() >= 6)
                .then(|| homography(&View { object, image }))
                .flatten()
                .and_then(|h| pose_from_h(&Matrix3::identity(), &h));
            match pose {
                Some(pose) => {
                    p.extend(pose.rvec);
                    p.extend(pose.t);
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let vs: Vec<&View> = usable.iter().map(|&i| &views[i]).collect();
        let mut r = Vec::new();
        residuals(LensKind::Fisheye, &p, &vs, &mut r);
        let cost: f64 = r.iter().map(|v| v * v).sum();
        if cost.is_finite() && best.as_ref().is_none_or(|(c, _)| cost < *c) {
            best = Some((cost, p));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        CalibError::Degenerate("no fisheye starting point explains the views".into())
    })
}

/// Intrinsic parameters per camera: fx fy cx cy k1 k2 p1 p2 k3.
pub(crate) const NI: usize = 9;

pub(crate) fn camera_of(kind: LensKind, p: &[f64]) -> Camera {
    Camera::from_params(kind, p)
}

pub(crate) fn residuals(kind: LensKind, p: &[f64], views: &[&View], out: &mut Vec<f64>) {
    out.clear();
    let cam = camera_of(kind, p);
    for (k, v) in views.iter().enumerate() {
        let o = NI + 6 * k;
        let pose = Pose {
            rvec: [p[o], p[o + 1], p[o + 2]],
            t: [p[o + 3], p[o + 4], p[o + 5]],
        };
        let rot = Rotation3::new(Vector3::from(pose.rvec));
        for (obj, img) in v.object.iter().zip(&v.image) {
            let q = rot * Vector3::from(*obj) + Vector3::from(pose.t);
            match cam.project([q.x, q.y, q.z]) {
                Some(px) => {
                    out.push(px[0] - img[0]);
                    out.push(px[1] - img[1]);
                }
                None => {
                    out.push(1e3);
                    out.push(1e3);
                }
            }
        }
    }
}

/// Levenberg-Marquardt with a forward-difference Jacobian over the parameters not
/// `fixed`, minimising the squared residuals `res` computes. Returns the parameters,
/// JᵀJ at the solution and the final cost.
pub(crate) fn levenberg_marquardt(
    p0: Vec<f64>,
    fixed: &[bool],
    res: impl Fn(&[f64], &mut Vec<f64>),
) -> (Vec<f64>, DMatrix<f64>, f64) {
    let mut p = p0;
    let mut r = Vec::new();
    res(&p, &mut r);
    let mut cost: f64 = r.iter().map(|v| v * v).sum();
    let mut lambda = 1e-3;
    let n = p.len();
    let mut jtj = DMatrix::<f64>::zeros(n, n);
    for _ in 0..100 {
        // Forward-difference Jacobian.
        let m = r.len();
        let mut j = DMatrix::<f64>::zeros(m, n);
        let mut rp = Vec::with_capacity(m);
        for c in 0..n {
            if fixed[c] {
                continue;
            }
            let h = 1e-7 * p[c].abs().max(1e-2);
            let mut q = p.clone();
            q[c] += h;
            res(&q, &mut rp);
            for i in 0..m {
                j[(i, c)] = (rp[i] - r[i]) / h;
            }
        }
        jtj = j.transpose() * &j;
        let g = j.transpose() * DVector::from_column_slice(&r);
        let mut improved = false;
        for _ in 0..10 {
            let mut a = jtj.clone();
            for i in 0..n {
                a[(i, i)] += lambda * a[(i, i)].max(1e-9);
                if fixed[i] {
                    a[(i, i)] = 1.0;
                }
            }
            let Some(ch) = a.cholesky() else {
                lambda *= 10.0;
                continue;
            };
            let mut gg = g.clone();
            for i in 0..n {
                if fixed[i] {
                    gg[i] = 0.0;
                }
            }
            let d = ch.solve(&(-gg));
            let q: Vec<f64> = p.iter().zip(d.iter()).map(|(a, b)| a + b).collect();
            res(&q, &mut rp);
            let c2: f64 = rp.iter().map(|v| v * v).sum();
            if c2 < cost {
                let rel = (cost - c2) / cost.max(1e-300);
                p = q;
                std::mem::swap(&mut r, &mut rp);
                cost = c2;
                lambda = (lambda * 0.3).max(1e-12);
                improved = true;
                if rel < 1e-12 {
                    return (p, jtj, cost);
                }
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (p, jtj, cost)
}

/// Calibrate one camera from views of a planar target. Views whose RMS exceeds
/// three times the median (and 1 px) are dropped and the rest re-refined.
pub fn calibrate(views: &[View], terms: DistortionTerms) -> Result<MonoCalibration, CalibError> {
    for (i, v) in views.iter().enumerate() {
        if v.object.len() != v.image.len() {
            return Err(CalibError::BadView(
                i,
                format!(
                    "{} target points but {} pixels",
                    v.object.len(),
                    v.image.len()
                ),
            ));
        }
        if v.object
            .iter()
            .flatten()
            .chain(v.image.iter().flatten())
            .any(|x| !x.is_finite())
        {
            return Err(CalibError::BadView(i, "non-finite coordinate".into()));
        }
    }
    let usable: Vec<usize> = (0..views.len())
        .filter(|&i| views[i].object.len() >= 6)
        .collect();
    if usable.len() < 3 {
        return Err(CalibError::TooFewViews(usable.len()));
    }
    let mut p = match terms.lens {
        LensKind::PlumbBob => pinhole_start(views, &usable)?,
        LensKind::Fisheye => fisheye_start(views, &usable)?,
    };
    let mut kept = usable.clone();
    let mut dropped = Vec::new();
    loop {
        let vs: Vec<&View> = kept.iter().map(|&i| &views[i]).collect();
        let mut fixed = vec![false; p.len()];
        fixed[..NI].copy_from_slice(&terms.fixed());
        let kind = terms.lens;
        let (q, jtj, cost) =
            levenberg_marquardt(p.clone(), &fixed, |x, out| residuals(kind, x, &vs, out));
        let mut r = Vec::new();
        residuals(kind, &q, &vs, &mut r);
        let mut view_rms = Vec::new();
        let mut at = 0;
        for v in &vs {
            let n = 2 * v.object.len();
            view_rms.push(
                (r[at..at + n].iter().map(|x| x * x).sum::<f64>() / v.object.len() as f64).sqrt(),
            );
            at += n;
        }
        let npts: usize = vs.iter().map(|v| v.object.len()).sum();
        let mut sorted = view_rms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let median = sorted[sorted.len() / 2];
        let worst = view_rms
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, &v)| (i, v));
        if let Some((wi, wv)) = worst
            && wv > (3.0 * median).max(1.0)
            && kept.len() > 3
        {
            dropped.push(kept[wi]);
            kept.remove(wi);
            let o = NI + 6 * wi;
            p = q;
            p.drain(o..o + 6);
            continue;
        }
        let held = terms.fixed();
        let n_fixed = held.iter().filter(|&&f| f).count();
        let dof = (2 * npts).saturating_sub(q.len() - n_fixed).max(1);
        let sigma2 = cost / dof as f64;
        let mut std_dev = [0.0; 9];
        let mut a = jtj.clone();
        for (i, &f) in held.iter().enumerate() {
            if f {
                a[(i, i)] = 1.0;
            }
        }
        if let Some(inv) = a.try_inverse() {
            for (i, s) in std_dev.iter_mut().enumerate() {
                *s = if held[i] {
                    0.0
                } else {
                    (inv[(i, i)] * sigma2).max(0.0).sqrt()
                };
            }
        }
        let poses = (0..kept.len())
            .map(|k| {
                let o = NI + 6 * k;
                Pose {
                    rvec: [q[o], q[o + 1], q[o + 2]],
                    t: [q[o + 3], q[o + 4], q[o + 5]],
                }
            })
            .collect();
        return Ok(MonoCalibration {
            camera: camera_of(kind, &q),
            poses,
            kept,
            dropped,
            view_rms,
            rms: (cost / npts as f64).sqrt(),
            std_dev,
        });
    }
}

/// Inner corners of a `cols` x `rows` checkerboard with `square` metre squares, row by row.
pub fn board_points(cols: usize, rows: usize, square: f64) -> Vec<[f64; 3]> {
    (0..rows)
        .flat_map(|r| (0..cols).map(move |c| [c as f64 * square, r as f64 * square, 0.0]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synth(cam: &dyn CameraModel, n: usize, noise: f64, seed: u64) -> Vec<View> {
        let board = board_points(9, 6, 0.025);
        let mut rng = crate::synthetic::Lcg::new(seed);
        let mut rnd = || rng.symmetric();
        let mut views = Vec::new();
        while views.len() < n {
            let pose = Pose {
                rvec: [0.5 * rnd(), 0.5 * rnd(), 0.3 * rnd()],
                t: [
                    -0.1 + 0.06 * rnd(),
                    -0.06 + 0.04 * rnd(),
                    0.35 + 0.15 * rnd(),
                ],
            };
            let mut img = Vec::new();
            let mut ok = true;
            for p in &board {
                match cam.project(pose.apply(*p)) {
                    Some(px) if px[0] > 0.0 && px[1] > 0.0 && px[0] < 640.0 && px[1] < 480.0 => {
                        img.push([px[0] + noise * rnd(), px[1] + noise * rnd()])
                    }
                    _ => ok = false,
                }
            }
            if ok {
                views.push(View {
                    object: board.clone(),
                    image: img,
                });
            }
        }
        views
    }

    fn truth() -> Camera {
        Camera::from_coefficients(
            LensKind::PlumbBob,
            [410.0, 405.0, 321.0, 238.0],
            &[-0.28, 0.08, 0.001, -0.0005, 0.0],
        )
    }

    #[test]
    fn recovers_intrinsics_and_distortion_exactly_without_noise() {
        let views = synth(&truth(), 12, 0.0, 1);
        let c = calibrate(&views, DistortionTerms::default()).unwrap();
        let t = truth();
        assert!(c.rms < 1e-6, "rms {}", c.rms);
        let (est, tr) = (c.camera.params(), t.params());
        for i in 0..4 {
            assert!((est[i] - tr[i]).abs() < 1e-5, "{:?}", c.camera);
            assert!((est[4 + i] - tr[4 + i]).abs() < 1e-6, "{:?}", c.camera);
        }
    }

    #[test]
    fn recovers_a_fisheye_lens_exactly_without_noise_and_within_its_uncertainty_with_noise() {
        // About 150 degrees across 640 px.
        let t = Camera::from_coefficients(
            LensKind::Fisheye,
            [246.0, 245.0, 322.0, 239.0],
            &[-0.015, 0.004, -0.001, 0.0002],
        );
        let terms = DistortionTerms {
            k3: false,
            lens: LensKind::Fisheye,
        };
        let c = calibrate(&synth(&t, 12, 0.0, 2), terms).unwrap();
        assert_eq!(c.camera.kind(), LensKind::Fisheye);
        assert!(c.rms < 1e-6, "rms {}", c.rms);
        let (est, tr) = (c.camera.params(), t.params());
        for i in 0..8 {
            assert!((est[i] - tr[i]).abs() < 1e-5, "param {i}: {:?}", c.camera);
        }
        let c = calibrate(&synth(&t, 15, 0.2, 5), terms).unwrap();
        let est = c.camera.params();
        for i in 0..4 {
            assert!(c.std_dev[i] > 0.0);
            assert!(
                (est[i] - tr[i]).abs() < 5.0 * c.std_dev[i],
                "param {i}: {} vs {} (σ {})",
                est[i],
                tr[i],
                c.std_dev[i]
            );
        }
        assert_eq!(c.std_dev[8], 0.0, "the unused ninth slot is not estimated");
    }

    #[test]
    fn with_noise_errors_stay_within_the_reported_uncertainty_and_outliers_are_dropped() {
        let mut views = synth(&truth(), 15, 0.2, 7);
        // Corrupt one view: two rows of corners swapped (a mis-ordered detection). (A
        // full reversal would not do: it is the same board turned by 180 degrees.)
        for c in 0..9 {
            views[4].image.swap(9 + c, 36 + c);
        }
        let c = calibrate(&views, DistortionTerms::default()).unwrap();
        assert_eq!(c.dropped, vec![4]);
        let t = truth();
        // Uniform noise of ±0.2 px has σ ≈ 0.115 px.
        assert!((0.08..0.16).contains(&c.rms), "rms {}", c.rms);
        let (est, tr) = (c.camera.params(), t.params());
        for i in 0..6 {
            assert!(
                (est[i] - tr[i]).abs() < 5.0 * c.std_dev[i] + 1e-9,
                "param {i}: {} vs {} (σ {})",
                est[i],
                tr[i],
                c.std_dev[i]
            );
            assert!(c.std_dev[i] > 0.0);
        }
        assert!(calibrate(&views[..2], DistortionTerms::default()).is_err());
    }
}
