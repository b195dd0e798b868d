//! Stereo calibration: both cameras' intrinsics and distortion, the rig transform
//! (x_right = R x_left + T) and every view's board pose, refined jointly from views
//! of the target seen by both cameras; reports reprojection RMS and epipolar error.

use crate::model::CameraModel;
use crate::mono::{
    CalibError, DistortionTerms, NI, Pose, View, calibrate, camera_of, levenberg_marquardt,
};
use crate::rig::Rig;
use nalgebra::{Matrix3, Rotation3, Vector3};

/// The result of a stereo calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct StereoCalibration {
    /// The rig (without rectification).
    pub rig: Rig,
    /// Overall RMS reprojection error over both cameras (pixels).
    pub rms: f64,
    /// Mean distance of right points from the epipolar lines of their left matches (pixels).
    pub epipolar_error: f64,
    /// Input indices of the view pairs used.
    pub kept: Vec<usize>,
}

/// Calibrate a rig from pairs of views (the same target points in both images).
pub fn calibrate_stereo(
    left: &[View],
    right: &[View],
    width: usize,
    height: usize,
    terms: DistortionTerms,
) -> Result<StereoCalibration, CalibError> {
    if left.len() != right.len() {
        return Err(CalibError::BadView(
            left.len().min(right.len()),
            "left and right view counts differ".into(),
        ));
    }
    for (i, (l, r)) in left.iter().zip(right).enumerate() {
        if l.object != r.object {
            return Err(CalibError::BadView(
                i,
                "left and right views must list the same target points".into(),
            ));
        }
    }
    let ml = calibrate(left, terms)?;
    let mr = calibrate(right, terms)?;
    let kept: Vec<usize> = ml
        .kept
        .iter()
        .copied()
        .filter(|i| mr.kept.contains(i))
        .collect();
    if kept.len() < 3 {
        return Err(CalibError::TooFewViews(kept.len()));
    }
    // Initial R, T: the median-ish (first) of the per-view relative poses, averaged.
    let pose_of = |m: &crate::mono::MonoCalibration, i: usize| {
        m.poses[m.kept.iter().position(|&k| k == i).unwrap_or(0)]
    };
    let mut rv_sum = Vector3::zeros();
    let mut t_sum = Vector3::zeros();
    for &i in &kept {
        let (pl, pr) = (pose_of(&ml, i), pose_of(&mr, i));
        let (rl, rr) = (
            Rotation3::new(Vector3::from(pl.rvec)),
            Rotation3::new(Vector3::from(pr.rvec)),
        );
        let r = rr * rl.inverse();
        rv_sum += r.scaled_axis();
        t_sum += Vector3::from(pr.t) - r * Vector3::from(pl.t);
    }
    let n = kept.len() as f64;
    let (rv0, t0) = (rv_sum / n, t_sum / n);
    let mut p: Vec<f64> = Vec::new();
    p.extend(ml.camera.params());
    p.extend(mr.camera.params());
    p.extend([rv0.x, rv0.y, rv0.z, t0.x, t0.y, t0.z]);
    for &i in &kept {
        let pl = pose_of(&ml, i);
        p.extend(pl.rvec);
        p.extend(pl.t);
    }
    let base = 2 * NI + 6;
    let kind = terms.lens;
    let lv: Vec<&View> = kept.iter().map(|&i| &left[i]).collect();
    let rv: Vec<&View> = kept.iter().map(|&i| &right[i]).collect();
    let res = |x: &[f64], out: &mut Vec<f64>| {
        out.clear();
        let (cl, cr) = (camera_of(kind, &x[..NI]), camera_of(kind, &x[NI..2 * NI]));
        let rig_r = Rotation3::new(Vector3::new(x[2 * NI], x[2 * NI + 1], x[2 * NI + 2]));
        let rig_t = Vector3::new(x[2 * NI + 3], x[2 * NI + 4], x[2 * NI + 5]);
        for k in 0..lv.len() {
            let o = base + 6 * k;
            let pose = Pose {
                rvec: [x[o], x[o + 1], x[o + 2]],
                t: [x[o + 3], x[o + 4], x[o + 5]],
            };
            for ((obj, il), ir) in lv[k].object.iter().zip(&lv[k].image).zip(&rv[k].image) {
                let pl = Vector3::from(pose.apply(*obj));
                let pr = rig_r * pl + rig_t;
                for (cam, q, img) in [(&cl, pl, il), (&cr, pr, ir)] {
                    match cam.project([q.x, q.y, q.z]) {
                        Some(px) => out.extend([px[0] - img[0], px[1] - img[1]]),
                        None => out.extend([1e3, 1e3]),
                    }
                }
            }
        }
    };
    let mut fixed = vec![false; p.len()];
    fixed[..NI].copy_from_slice(&terms.fixed());
    fixed[NI..2 * NI].copy_from_slice(&terms.fixed());
    let (q, _, cost) = levenberg_marquardt(p, &fixed, res);
    let npts: usize = lv.iter().map(|v| v.object.len()).sum();
    let (cl, cr) = (camera_of(kind, &q[..NI]), camera_of(kind, &q[NI..2 * NI]));
    let rot = Rotation3::new(Vector3::new(q[2 * NI], q[2 * NI + 1], q[2 * NI + 2]));
    let t = Vector3::new(q[2 * NI + 3], q[2 * NI + 4], q[2 * NI + 5]);
    // Epipolar error: distance of the right ray's pixel from the epipolar line of the left ray.
    let tx = Matrix3::new(0.0, -t.z, t.y, t.z, 0.0, -t.x, -t.y, t.x, 0.0);
    let e = tx * rot.matrix();
    let (mut sum, mut cnt) = (0.0, 0usize);
    for k in 0..lv.len() {
        for (il, ir) in lv[k].image.iter().zip(&rv[k].image) {
            let (Some(a), Some(b)) = (cl.unproject(*il), cr.unproject(*ir)) else {
                continue;
            };
            let (a, b) = (
                Vector3::new(a[0] / a[2], a[1] / a[2], 1.0),
                Vector3::new(b[0] / b[2], b[1] / b[2], 1.0),
            );
            let line = e * a;
            let d = b.dot(&line).abs() / (line.x * line.x + line.y * line.y).sqrt();
            sum += d * cr.fx(); // normalised to pixels
            cnt += 1;
        }
    }
    let m = rot.matrix();
    Ok(StereoCalibration {
        rig: Rig {
            width,
            height,
            left: cl,
            right: cr,
            r: std::array::from_fn(|i| std::array::from_fn(|j| m[(i, j)])),
            t: [t.x, t.y, t.z],
            rect: None,
        },
        rms: (cost / (2 * npts) as f64).sqrt(),
        epipolar_error: sum / cnt.max(1) as f64,
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PinholeRadTan;
    use crate::mono::board_points;

    #[test]
    fn recovers_a_rotated_rig_from_noisy_views() {
        let left = PinholeRadTan {
            fx: 410.0,
            fy: 405.0,
            cx: 321.0,
            cy: 238.0,
            dist: [-0.28, 0.08, 0.001, -0.0005, 0.0],
        };
        let right = PinholeRadTan {
            fx: 402.0,
            fy: 401.0,
            cx: 318.0,
            cy: 242.0,
            dist: [-0.26, 0.07, -0.0008, 0.0004, 0.0],
        };
        let rot = Rotation3::from_euler_angles(0.01, -0.02, 0.015);
        let t = Vector3::new(-0.12, 0.002, -0.001);
        let board = board_points(9, 6, 0.025);
        let mut rng = crate::synthetic::Lcg::new(3u64);
        let mut rnd = || rng.symmetric();
        let inside = |p: [f64; 2]| (1.0..639.0).contains(&p[0]) && (1.0..479.0).contains(&p[1]);
        let (mut lv, mut rv) = (Vec::new(), Vec::new());
        while lv.len() < 14 {
            let pose = Pose {
                rvec: [0.5 * rnd(), 0.5 * rnd(), 0.3 * rnd()],
                t: [
                    -0.1 + 0.05 * rnd(),
                    -0.06 + 0.04 * rnd(),
                    0.4 + 0.12 * rnd(),
                ],
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let mut ok = true;
            for p in &board {
                let pl = Vector3::from(pose.apply(*p));
                let pr = rot * pl + t;
                match (left.project(pl.into()), right.project(pr.into())) {
                    (Some(x), Some(y)) if inside(x) && inside(y) => {
                        a.push([x[0] + 0.1 * rnd(), x[1] + 0.1 * rnd()]);
                        b.push([y[0] + 0.1 * rnd(), y[1] + 0.1 * rnd()]);
                    }
                    _ => ok = false,
                }
            }
            if ok {
                lv.push(View {
                    object: board.clone(),
                    image: a,
                });
                rv.push(View {
                    object: board.clone(),
                    image: b,
                });
            }
        }
        let c = calibrate_stereo(&lv, &rv, 640, 480, DistortionTerms::default()).unwrap();
        assert!(c.rms < 0.1, "rms {}", c.rms);
        assert!(c.epipolar_error < 0.1, "epipolar {}", c.epipolar_error);
        assert!(
            (c.rig.baseline() - t.norm()).abs() < 2e-3,
            "baseline {}",
            c.rig.baseline()
        );
        let dr = Rotation3::from_matrix_unchecked(Matrix3::from_fn(|i, j| c.rig.r[i][j]))
            * rot.inverse();
        assert!(dr.angle() < 2e-3, "rotation error {} rad", dr.angle());
        assert!((c.rig.left.fx() - 410.0).abs() < 2.0 && (c.rig.right.cx() - 318.0).abs() < 2.0);
    }
}
