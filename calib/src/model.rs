//! Camera models: pinhole with radial-tangential distortion (OpenCV's
//! "plumb_bob": k1, k2, p1, p2, k3) and equidistant fisheye (Kannala-Brandt k1..k4).
//! Each projects camera-frame points to pixels, unprojects pixels to rays, and
//! undistorts pixels to the ideal pinhole image. [`Camera`] holds either, as
//! calibration estimates it and rig files store it.

/// What every camera model offers.
pub trait CameraModel {
    /// Pixel of a camera-frame point (x right, y down, z forward); `None` behind the
    /// camera or outside the model's valid field of view.
    fn project(&self, p: [f64; 3]) -> Option<[f64; 2]>;
    /// Unit-length viewing ray of a pixel; `None` where the model has no inverse.
    fn unproject(&self, px: [f64; 2]) -> Option<[f64; 3]>;
    /// Focal lengths and principal point (fx, fy, cx, cy).
    fn intrinsics(&self) -> [f64; 4];
    /// Where a pixel would be in the distortion-free pinhole image with the same intrinsics.
    fn undistort_pixel(&self, px: [f64; 2]) -> Option<[f64; 2]> {
        let r = self.unproject(px)?;
        if r[2] <= 1e-12 {
            return None;
        }
        let [fx, fy, cx, cy] = self.intrinsics();
        Some([fx * r[0] / r[2] + cx, fy * r[1] / r[2] + cy])
    }
}

fn normalise(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

/// Pinhole with radial-tangential distortion.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PinholeRadTan {
    /// Focal length along x (pixels).
    pub fx: f64,
    /// Focal length along y (pixels).
    pub fy: f64,
    /// Principal point x.
    pub cx: f64,
    /// Principal point y.
    pub cy: f64,
    /// Distortion k1, k2, p1, p2, k3 (OpenCV order).
    pub dist: [f64; 5],
}

impl PinholeRadTan {
    /// The nine parameters fx, fy, cx, cy, k1, k2, p1, p2, k3 (the order calibration
    /// estimates and reports them in).
    pub fn params(&self) -> [f64; 9] {
        let [k1, k2, p1, p2, k3] = self.dist;
        [self.fx, self.fy, self.cx, self.cy, k1, k2, p1, p2, k3]
    }

    /// The inverse of [`PinholeRadTan::params`]; `p` holds at least nine values.
    pub fn from_params(p: &[f64]) -> Self {
        PinholeRadTan {
            fx: p[0],
            fy: p[1],
            cx: p[2],
            cy: p[3],
            dist: [p[4], p[5], p[6], p[7], p[8]],
        }
    }

    /// Distort normalised coordinates.
    pub fn distort(&self, x: f64, y: f64) -> [f64; 2] {
        let [k1, k2, p1, p2, k3] = self.dist;
        let r2 = x * x + y * y;
        let radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3));
        [
            x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
            y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y,
        ]
    }

    /// Invert [`PinholeRadTan::distort`] (Newton's method on the monotonic part of the model).
    pub fn undistort_normalised(&self, xd: f64, yd: f64) -> Option<[f64; 2]> {
        let (mut x, mut y) = (xd, yd);
        for _ in 0..100 {
            let [dx, dy] = self.distort(x, y);
            let (ex, ey) = (dx - xd, dy - yd);
            let h = 1e-7;
            let [ax, ay] = self.distort(x + h, y);
            let [bx, by] = self.distort(x, y + h);
            let (j11, j21, j12, j22) = ((ax - dx) / h, (ay - dy) / h, (bx - dx) / h, (by - dy) / h);
            let det = j11 * j22 - j12 * j21;
            if !(det > 1e-9 && det.is_finite()) {
                return None;
            }
            if ex.abs() + ey.abs() < 1e-13 {
                return (x * xd + y * yd >= 0.0).then_some([x, y]);
            }
            x -= (j22 * ex - j12 * ey) / det;
            y -= (-j21 * ex + j11 * ey) / det;
            if !(x.is_finite() && y.is_finite()) {
                return None;
            }
        }
        None
    }
}

impl CameraModel for PinholeRadTan {
    fn project(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        if p[2] <= 0.0 {
            return None;
        }
        let [xd, yd] = self.distort(p[0] / p[2], p[1] / p[2]);
        Some([self.fx * xd + self.cx, self.fy * yd + self.cy])
    }

    fn unproject(&self, px: [f64; 2]) -> Option<[f64; 3]> {
        let [x, y] =
            self.undistort_normalised((px[0] - self.cx) / self.fx, (px[1] - self.cy) / self.fy)?;
        Some(normalise([x, y, 1.0]))
    }

    fn intrinsics(&self) -> [f64; 4] {
        [self.fx, self.fy, self.cx, self.cy]
    }
}

/// Equidistant fisheye (Kannala-Brandt): r = f·θ_d with θ_d = θ(1 + k1θ² + k2θ⁴ + k3θ⁶ + k4θ⁸),
/// OpenCV's `cv::fisheye` model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KannalaBrandt {
    /// Focal length along x (pixels).
    pub fx: f64,
    /// Focal length along y (pixels).
    pub fy: f64,
    /// Principal point x.
    pub cx: f64,
    /// Principal point y.
    pub cy: f64,
    /// k1..k4.
    pub k: [f64; 4],
}

impl KannalaBrandt {
    fn theta_d(&self, t: f64) -> f64 {
        let t2 = t * t;
        t * (1.0 + t2 * (self.k[0] + t2 * (self.k[1] + t2 * (self.k[2] + t2 * self.k[3]))))
    }
}

impl CameraModel for KannalaBrandt {
    fn project(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        let r = (p[0] * p[0] + p[1] * p[1]).sqrt();
        let theta = r.atan2(p[2]);
        if theta >= std::f64::consts::PI * 0.999 {
            return None;
        }
        let td = self.theta_d(theta);
        let (ux, uy) = if r > 1e-15 {
            (p[0] / r, p[1] / r)
        } else {
            (0.0, 0.0)
        };
        Some([self.fx * td * ux + self.cx, self.fy * td * uy + self.cy])
    }

    fn unproject(&self, px: [f64; 2]) -> Option<[f64; 3]> {
        let (mx, my) = ((px[0] - self.cx) / self.fx, (px[1] - self.cy) / self.fy);
        let td = (mx * mx + my * my).sqrt();
        if td < 1e-15 {
            return Some([0.0, 0.0, 1.0]);
        }
        // Newton on θ_d(θ) = td, starting at θ = td.
        let mut t = td;
        for _ in 0..50 {
            let f = self.theta_d(t) - td;
            let t2 = t * t;
            let k = &self.k;
            let df =
                1.0 + t2 * (3.0 * k[0] + t2 * (5.0 * k[1] + t2 * (7.0 * k[2] + t2 * 9.0 * k[3])));
            if df <= 1e-9 {
                return None;
            }
            let step = f / df;
            t -= step;
            if step.abs() < 1e-14 {
                break;
            }
        }
        if !(t.is_finite() && (0.0..std::f64::consts::PI).contains(&t))
            || (self.theta_d(t) - td).abs() > 1e-9
        {
            return None;
        }
        let (s, c) = t.sin_cos();
        Some([s * mx / td, s * my / td, c])
    }

    fn intrinsics(&self) -> [f64; 4] {
        [self.fx, self.fy, self.cx, self.cy]
    }
}

/// Which lens model a camera is calibrated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LensKind {
    /// Pinhole with radial-tangential distortion (OpenCV's default, ROS `plumb_bob`).
    #[default]
    PlumbBob,
    /// Equidistant fisheye, Kannala-Brandt k1..k4 (OpenCV's `cv::fisheye`, ROS `equidistant`).
    Fisheye,
}

impl LensKind {
    /// The name ROS `camera_info` files (and our OpenCV files) give the model.
    pub fn name(self) -> &'static str {
        match self {
            LensKind::PlumbBob => "plumb_bob",
            LensKind::Fisheye => "equidistant",
        }
    }

    /// The model a `distortion_model` name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "plumb_bob" | "rational_polynomial" => Some(LensKind::PlumbBob),
            "equidistant" | "fisheye" => Some(LensKind::Fisheye),
            _ => None,
        }
    }
}

/// A calibrated camera of either model: what a rig file holds per camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Camera {
    /// Pinhole with radial-tangential distortion.
    PlumbBob(PinholeRadTan),
    /// Equidistant fisheye.
    Fisheye(KannalaBrandt),
}

impl Default for Camera {
    fn default() -> Self {
        Camera::PlumbBob(PinholeRadTan::default())
    }
}

impl From<PinholeRadTan> for Camera {
    fn from(c: PinholeRadTan) -> Self {
        Camera::PlumbBob(c)
    }
}

impl From<KannalaBrandt> for Camera {
    fn from(c: KannalaBrandt) -> Self {
        Camera::Fisheye(c)
    }
}

impl Camera {
    /// A distortion-free pinhole camera.
    pub fn pinhole(fx: f64, fy: f64, cx: f64, cy: f64) -> Self {
        Camera::PlumbBob(PinholeRadTan {
            fx,
            fy,
            cx,
            cy,
            dist: [0.0; 5],
        })
    }

    /// The lens model.
    pub fn kind(&self) -> LensKind {
        match self {
            Camera::PlumbBob(_) => LensKind::PlumbBob,
            Camera::Fisheye(_) => LensKind::Fisheye,
        }
    }

    /// The nine parameters calibration estimates: fx, fy, cx, cy and five distortion
    /// slots (plumb-bob k1, k2, p1, p2, k3; fisheye k1..k4 and an unused zero).
    pub fn params(&self) -> [f64; 9] {
        match self {
            Camera::PlumbBob(c) => c.params(),
            Camera::Fisheye(c) => {
                let [k1, k2, k3, k4] = c.k;
                [c.fx, c.fy, c.cx, c.cy, k1, k2, k3, k4, 0.0]
            }
        }
    }

    /// The inverse of [`Camera::params`]; `p` holds at least nine values.
    pub fn from_params(kind: LensKind, p: &[f64]) -> Self {
        match kind {
            LensKind::PlumbBob => Camera::PlumbBob(PinholeRadTan::from_params(p)),
            LensKind::Fisheye => Camera::Fisheye(KannalaBrandt {
                fx: p[0],
                fy: p[1],
                cx: p[2],
                cy: p[3],
                k: [p[4], p[5], p[6], p[7]],
            }),
        }
    }

    /// The distortion coefficients as files list them: 5 for plumb-bob, 4 for fisheye.
    pub fn distortion(&self) -> Vec<f64> {
        match self {
            Camera::PlumbBob(c) => c.dist.to_vec(),
            Camera::Fisheye(c) => c.k.to_vec(),
        }
    }

    /// A camera of `kind` from intrinsics and the coefficients a file lists (plumb-bob:
    /// 4, 5 or 8, of which the first five are used; fisheye: 4).
    pub fn from_coefficients(kind: LensKind, k: [f64; 4], d: &[f64]) -> Self {
        let [fx, fy, cx, cy] = k;
        match kind {
            LensKind::PlumbBob => {
                let mut dist = [0.0; 5];
                for (o, v) in dist.iter_mut().zip(d) {
                    *o = *v;
                }
                Camera::PlumbBob(PinholeRadTan {
                    fx,
                    fy,
                    cx,
                    cy,
                    dist,
                })
            }
            LensKind::Fisheye => {
                let mut kk = [0.0; 4];
                for (o, v) in kk.iter_mut().zip(d) {
                    *o = *v;
                }
                Camera::Fisheye(KannalaBrandt {
                    fx,
                    fy,
                    cx,
                    cy,
                    k: kk,
                })
            }
        }
    }

    /// Focal length along x (pixels).
    pub fn fx(&self) -> f64 {
        self.intrinsics()[0]
    }
    /// Focal length along y (pixels).
    pub fn fy(&self) -> f64 {
        self.intrinsics()[1]
    }
    /// Principal point x.
    pub fn cx(&self) -> f64 {
        self.intrinsics()[2]
    }
    /// Principal point y.
    pub fn cy(&self) -> f64 {
        self.intrinsics()[3]
    }
}

impl CameraModel for Camera {
    fn project(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        match self {
            Camera::PlumbBob(c) => c.project(p),
            Camera::Fisheye(c) => c.project(p),
        }
    }

    fn unproject(&self, px: [f64; 2]) -> Option<[f64; 3]> {
        match self {
            Camera::PlumbBob(c) => c.unproject(px),
            Camera::Fisheye(c) => c.unproject(px),
        }
    }

    fn intrinsics(&self) -> [f64; 4] {
        match self {
            Camera::PlumbBob(c) => c.intrinsics(),
            Camera::Fisheye(c) => c.intrinsics(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_round_trip(m: &dyn CameraModel, points: &[[f64; 3]]) {
        for &p in points {
            let px = m.project(p).unwrap();
            let ray = m.unproject(px).unwrap();
            let n = normalise(p);
            for a in 0..3 {
                assert!((ray[a] - n[a]).abs() < 1e-9, "{p:?} -> {px:?} -> {ray:?}");
            }
            let back = m.project(ray).unwrap();
            assert!((back[0] - px[0]).abs() < 1e-7 && (back[1] - px[1]).abs() < 1e-7);
        }
    }

    #[test]
    fn plumb_bob_round_trips_and_undistorts() {
        let m = PinholeRadTan {
            fx: 400.0,
            fy: 410.0,
            cx: 320.5,
            cy: 240.2,
            dist: [-0.28, 0.07, 0.001, -0.0005, 0.0],
        };
        check_round_trip(
            &m,
            &[
                [0.0, 0.0, 1.0],
                [0.3, -0.2, 1.0],
                [-0.5, 0.4, 2.0],
                [1.0, 1.0, 3.0],
            ],
        );
        // Undistorting a distorted projection gives the ideal pinhole projection.
        let p = [0.4, -0.3, 1.0];
        let ideal = [400.0 * 0.4 + 320.5, 410.0 * -0.3 + 240.2];
        let u = m.undistort_pixel(m.project(p).unwrap()).unwrap();
        assert!((u[0] - ideal[0]).abs() < 1e-7 && (u[1] - ideal[1]).abs() < 1e-7);
        assert!(m.project([0.0, 0.0, -1.0]).is_none());
        // Past the fold of strong barrel distortion there is no inverse.
        let strong = PinholeRadTan {
            fx: 100.0,
            fy: 100.0,
            cx: 0.0,
            cy: 0.0,
            dist: [-0.25, 0.0, 0.0, 0.0, 0.0],
        };
        assert!(strong.unproject([100.0, 80.0]).is_none());
    }

    #[test]
    fn fisheye_round_trips_beyond_ninety_degrees() {
        let m = KannalaBrandt {
            fx: 280.0,
            fy: 281.0,
            cx: 640.0,
            cy: 400.0,
            k: [-0.01, 0.005, -0.002, 0.0003],
        };
        check_round_trip(
            &m,
            &[
                [0.0, 0.0, 1.0],
                [0.5, 0.2, 1.0],
                [3.0, -1.0, 1.0],
                [1.0, 0.5, -0.2],
            ],
        );
        // Equidistant: with k = 0, r = f θ.
        let e = KannalaBrandt {
            fx: 100.0,
            fy: 100.0,
            cx: 0.0,
            cy: 0.0,
            k: [0.0; 4],
        };
        let px = e.project([1.0, 0.0, 1.0]).unwrap();
        assert!((px[0] - 100.0 * std::f64::consts::FRAC_PI_4).abs() < 1e-9);
    }
}
