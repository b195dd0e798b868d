//! The stereo rig file: both cameras' intrinsics and distortion, the transform from
//! the left to the right camera (R, T as OpenCV's `stereoCalibrate` returns them:
//! x_right = R x_left + T), and optionally the rectification (R1, R2, P1, P2, Q).
//! Written and read as OpenCV FileStorage YAML (one file) and as ROS `camera_info`
//! YAML (one file per camera).

use crate::model::{Camera, LensKind};
use crate::yaml::{self, Value};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

/// Why a rig file could not be read or written.
#[derive(Debug, Error, PartialEq)]
pub enum RigError {
    /// File system error.
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    /// The YAML is malformed.
    #[error("{path}: {source}")]
    Yaml {
        path: String,
        source: yaml::YamlError,
    },
    /// A required key is missing.
    #[error("{path}: missing `{key}`")]
    Missing { path: String, key: String },
    /// A key has the wrong shape or type.
    #[error("{path}: `{key}` must be {want}")]
    Shape {
        path: String,
        key: String,
        want: String,
    },
    /// A value is NaN or infinite, or a size or focal length is not positive.
    #[error("{path}: `{key}` holds an invalid value ({why})")]
    Invalid {
        path: String,
        key: String,
        why: String,
    },
}

/// What one ROS camera_info file holds: size, camera, rectification and projection.
type CameraInfo = (usize, usize, Camera, [[f64; 3]; 3], [[f64; 4]; 3]);

/// Rectification of a rig (Bouguet): rotations, new projections and disparity-to-depth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rectification {
    /// Left rectifying rotation.
    pub r1: [[f64; 3]; 3],
    /// Right rectifying rotation.
    pub r2: [[f64; 3]; 3],
    /// Left projection in the rectified frame.
    pub p1: [[f64; 4]; 3],
    /// Right projection in the rectified frame.
    pub p2: [[f64; 4]; 3],
    /// Disparity-to-depth matrix.
    pub q: [[f64; 4]; 4],
}

/// A calibrated stereo rig.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rig {
    /// Image width (pixels).
    pub width: usize,
    /// Image height (pixels).
    pub height: usize,
    /// Left camera.
    pub left: Camera,
    /// Right camera.
    pub right: Camera,
    /// Rotation from the left to the right camera frame.
    pub r: [[f64; 3]; 3],
    /// Translation from the left to the right camera frame (m); about (-baseline, 0, 0).
    pub t: [f64; 3],
    /// Rectification, when computed.
    pub rect: Option<Rectification>,
}

fn k_matrix(c: &Camera) -> [f64; 9] {
    [c.fx(), 0.0, c.cx(), 0.0, c.fy(), c.cy(), 0.0, 0.0, 1.0]
}

fn flat<const R: usize, const C: usize>(m: &[[f64; C]; R]) -> Vec<f64> {
    m.iter().flatten().copied().collect()
}

struct Doc<'a> {
    path: &'a str,
    map: BTreeMap<String, Value>,
}

impl Doc<'_> {
    fn matrix<const R: usize, const C: usize>(&self, key: &str) -> Result<[[f64; C]; R], RigError> {
        let v = self.map.get(key).ok_or_else(|| RigError::Missing {
            path: self.path.into(),
            key: key.into(),
        })?;
        let Value::Matrix { rows, cols, data } = v else {
            return Err(RigError::Shape {
                path: self.path.into(),
                key: key.into(),
                want: format!("a {R}x{C} matrix"),
            });
        };
        // Vectors may be written as a row or a column.
        if !((*rows == R && *cols == C) || (R == 1 && *rows == C && *cols == 1)) {
            return Err(RigError::Shape {
                path: self.path.into(),
                key: key.into(),
                want: format!("a {R}x{C} matrix, not {rows}x{cols}"),
            });
        }
        if let Some(bad) = data.iter().find(|v| !v.is_finite()) {
            return Err(RigError::Invalid {
                path: self.path.into(),
                key: key.into(),
                why: format!("{bad}"),
            });
        }
        Ok(std::array::from_fn(|r| {
            std::array::from_fn(|c| data[r * C + c])
        }))
    }

    fn vector(&self, key: &str, n: usize) -> Result<Vec<f64>, RigError> {
        let v = self.map.get(key).ok_or_else(|| RigError::Missing {
            path: self.path.into(),
            key: key.into(),
        })?;
        match v {
            Value::Matrix { data, .. } if data.len() == n && data.iter().all(|v| v.is_finite()) => {
                Ok(data.clone())
            }
            Value::Matrix { data, .. } if data.len() == n => Err(RigError::Invalid {
                path: self.path.into(),
                key: key.into(),
                why: "not finite".into(),
            }),
            _ => Err(RigError::Shape {
                path: self.path.into(),
                key: key.into(),
                want: format!("a matrix of {n} values"),
            }),
        }
    }

    fn size(&self, key: &str) -> Result<usize, RigError> {
        match self.map.get(key) {
            Some(Value::Scalar(s)) => {
                s.parse::<usize>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| RigError::Invalid {
                        path: self.path.into(),
                        key: key.into(),
                        why: format!("`{s}` is not a positive whole number"),
                    })
            }
            Some(_) => Err(RigError::Shape {
                path: self.path.into(),
                key: key.into(),
                want: "a whole number".into(),
            }),
            None => Err(RigError::Missing {
                path: self.path.into(),
                key: key.into(),
            }),
        }
    }

    /// The lens model a file names in `distortion_model` (plumb-bob when absent).
    fn lens(&self) -> Result<LensKind, RigError> {
        match self.map.get("distortion_model") {
            None => Ok(LensKind::PlumbBob),
            Some(Value::Scalar(m)) => {
                LensKind::from_name(m.trim_matches('"')).ok_or_else(|| RigError::Invalid {
                    path: self.path.into(),
                    key: "distortion_model".into(),
                    why: format!("`{m}` is not supported (plumb_bob or equidistant)"),
                })
            }
            Some(_) => Err(RigError::Shape {
                path: self.path.into(),
                key: "distortion_model".into(),
                want: "a name (plumb_bob or equidistant)".into(),
            }),
        }
    }

    fn camera(&self, k_key: &str, d_key: &str, kind: LensKind) -> Result<Camera, RigError> {
        let k: [[f64; 3]; 3] = self.matrix(k_key)?;
        let d = self.map.get(d_key).ok_or_else(|| RigError::Missing {
            path: self.path.into(),
            key: d_key.into(),
        })?;
        let Value::Matrix { data, .. } = d else {
            return Err(RigError::Shape {
                path: self.path.into(),
                key: d_key.into(),
                want: "a matrix of 4, 5 or 8 values".into(),
            });
        };
        let (counts, want): (&[usize], _) = match kind {
            LensKind::PlumbBob => (&[4, 5, 8], "4, 5 or 8 finite plumb-bob coefficients"),
            LensKind::Fisheye => (&[4], "4 finite fisheye coefficients (k1..k4)"),
        };
        if !counts.contains(&data.len()) || data.iter().any(|v| !v.is_finite()) {
            return Err(RigError::Shape {
                path: self.path.into(),
                key: d_key.into(),
                want: want.into(),
            });
        }
        if !(k[0][0] > 0.0 && k[1][1] > 0.0) {
            return Err(RigError::Invalid {
                path: self.path.into(),
                key: k_key.into(),
                why: "focal lengths must be positive".into(),
            });
        }
        Ok(Camera::from_coefficients(
            kind,
            [k[0][0], k[1][1], k[0][2], k[1][2]],
            data,
        ))
    }
}

fn read(path: &Path) -> Result<(String, String), RigError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RigError::Io {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    Ok((p, text))
}

fn write(path: &Path, text: &str) -> Result<(), RigError> {
    std::fs::write(path, text).map_err(|e| RigError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Rig {
    /// An ideal rectified rig: identical distortion-free cameras, the right one
    /// `baseline` metres to the right (T = (-baseline, 0, 0)).
    pub fn ideal(width: usize, height: usize, f: f64, cx: f64, cy: f64, baseline: f64) -> Self {
        let cam = Camera::pinhole(f, f, cx, cy);
        let eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let p1 = [[f, 0.0, cx, 0.0], [0.0, f, cy, 0.0], [0.0, 0.0, 1.0, 0.0]];
        let mut p2 = p1;
        p2[0][3] = -f * baseline;
        let q = [
            [1.0, 0.0, 0.0, -cx],
            [0.0, 1.0, 0.0, -cy],
            [0.0, 0.0, 0.0, f],
            [0.0, 0.0, 1.0 / baseline, 0.0],
        ];
        Rig {
            width,
            height,
            left: cam,
            right: cam,
            r: eye,
            t: [-baseline, 0.0, 0.0],
            rect: Some(Rectification {
                r1: eye,
                r2: eye,
                p1,
                p2,
                q,
            }),
        }
    }

    /// Distance between the optical centres (m).
    pub fn baseline(&self) -> f64 {
        (self.t[0] * self.t[0] + self.t[1] * self.t[1] + self.t[2] * self.t[2]).sqrt()
    }

    /// The rig as OpenCV FileStorage YAML (keys as in OpenCV's stereo calibration
    /// sample: M1, D1, M2, D2, R, T and, when rectified, R1, R2, P1, P2, Q).
    pub fn to_opencv_yaml(&self) -> String {
        let mut s = format!(
            "%YAML:1.0\n---\nimage_width: {}\nimage_height: {}\n",
            self.width, self.height
        );
        if self.left.kind() == LensKind::Fisheye {
            // OpenCV's fisheye functions take the same matrices with a 4-term D; the
            // model is named so that a reader does not take them for plumb-bob.
            s += "distortion_model: equidistant\n";
        }
        let (d1, d2) = (self.left.distortion(), self.right.distortion());
        s += &yaml::matrix("M1", 3, 3, &k_matrix(&self.left), true);
        s += &yaml::matrix("D1", 1, d1.len(), &d1, true);
        s += &yaml::matrix("M2", 3, 3, &k_matrix(&self.right), true);
        s += &yaml::matrix("D2", 1, d2.len(), &d2, true);
        s += &yaml::matrix("R", 3, 3, &flat(&self.r), true);
        s += &yaml::matrix("T", 3, 1, &self.t, true);
        if let Some(r) = &self.rect {
            s += &yaml::matrix("R1", 3, 3, &flat(&r.r1), true);
            s += &yaml::matrix("R2", 3, 3, &flat(&r.r2), true);
            s += &yaml::matrix("P1", 3, 4, &flat(&r.p1), true);
            s += &yaml::matrix("P2", 3, 4, &flat(&r.p2), true);
            s += &yaml::matrix("Q", 4, 4, &flat(&r.q), true);
        }
        s
    }

    /// Parse OpenCV FileStorage YAML; `origin` names the source in errors.
    pub fn from_opencv_yaml(text: &str, origin: &str) -> Result<Self, RigError> {
        let map = yaml::parse(text).map_err(|source| RigError::Yaml {
            path: origin.into(),
            source,
        })?;
        let d = Doc { path: origin, map };
        let t = d.vector("T", 3)?;
        let rect = if d.map.contains_key("R1") {
            Some(Rectification {
                r1: d.matrix("R1")?,
                r2: d.matrix("R2")?,
                p1: d.matrix("P1")?,
                p2: d.matrix("P2")?,
                q: d.matrix("Q")?,
            })
        } else {
            None
        };
        Ok(Rig {
            width: d.size("image_width")?,
            height: d.size("image_height")?,
            left: d.camera("M1", "D1", d.lens()?)?,
            right: d.camera("M2", "D2", d.lens()?)?,
            r: d.matrix("R")?,
            t: [t[0], t[1], t[2]],
            rect,
        })
    }

    /// Write the OpenCV file.
    pub fn save_opencv(&self, path: &Path) -> Result<(), RigError> {
        write(path, &self.to_opencv_yaml())
    }

    /// Read an OpenCV file.
    pub fn load_opencv(path: &Path) -> Result<Self, RigError> {
        let (p, text) = read(path)?;
        Self::from_opencv_yaml(&text, &p)
    }

    /// ROS `camera_info` YAML of the left (`right = false`) or right camera.
    pub fn to_ros_yaml(&self, right: bool, camera_name: &str) -> String {
        let cam = if right { &self.right } else { &self.left };
        let eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let (rr, p) = match &self.rect {
            Some(r) if right => (r.r2, r.p2),
            Some(r) => (r.r1, r.p1),
            None => (
                eye,
                [
                    [cam.fx(), 0.0, cam.cx(), 0.0],
                    [0.0, cam.fy(), cam.cy(), 0.0],
                    [0.0, 0.0, 1.0, 0.0],
                ],
            ),
        };
        let mut s = format!(
            "image_width: {}\nimage_height: {}\ncamera_name: {camera_name}\n",
            self.width, self.height
        );
        s += &yaml::matrix("camera_matrix", 3, 3, &k_matrix(cam), false);
        s += &format!("distortion_model: {}\n", cam.kind().name());
        let d = cam.distortion();
        s += &yaml::matrix("distortion_coefficients", 1, d.len(), &d, false);
        s += &yaml::matrix("rectification_matrix", 3, 3, &flat(&rr), false);
        s += &yaml::matrix("projection_matrix", 3, 4, &flat(&p), false);
        s
    }

    /// Read a pair of ROS `camera_info` files back into a rig. R and T come from the
    /// rectification and projection matrices (T = R2 (P2 translation / f) relation of a
    /// rectified pair), as ROS stereo nodes do.
    pub fn from_ros_yaml(
        left_text: &str,
        right_text: &str,
        origin: &str,
    ) -> Result<Self, RigError> {
        let parse = |text: &str, side: &str| -> Result<CameraInfo, RigError> {
            let o = format!("{origin} ({side})");
            let map = yaml::parse(text).map_err(|source| RigError::Yaml {
                path: o.clone(),
                source,
            })?;
            let d = Doc { path: &o, map };
            if !d.map.contains_key("distortion_model") {
                return Err(RigError::Missing {
                    path: o.clone(),
                    key: "distortion_model".into(),
                });
            }
            let kind = d.lens()?;
            Ok((
                d.size("image_width")?,
                d.size("image_height")?,
                d.camera("camera_matrix", "distortion_coefficients", kind)?,
                d.matrix("rectification_matrix")?,
                d.matrix("projection_matrix")?,
            ))
        };
        let (w, h, left, r1, p1) = parse(left_text, "left")?;
        let (w2, h2, right, r2, p2) = parse(right_text, "right")?;
        if (w, h) != (w2, h2) {
            return Err(RigError::Invalid {
                path: origin.into(),
                key: "image_width".into(),
                why: format!("left is {w}x{h}, right {w2}x{h2}"),
            });
        }
        let f = p1[0][0];
        if f.is_nan() || f <= 0.0 {
            return Err(RigError::Invalid {
                path: origin.into(),
                key: "projection_matrix".into(),
                why: "focal length must be positive".into(),
            });
        }
        // In the rectified frame the right camera sits at (Tx, 0, 0) with Tx = P2[0][3] / f.
        let tx = p2[0][3] / f;
        let (m1, m2) = (
            nalgebra::Matrix3::from_fn(|i, j| r1[i][j]),
            nalgebra::Matrix3::from_fn(|i, j| r2[i][j]),
        );
        let r = m2.transpose() * m1;
        let t = m2.transpose() * nalgebra::Vector3::new(tx, 0.0, 0.0);
        let q = [
            [1.0, 0.0, 0.0, -p1[0][2]],
            [0.0, 1.0, 0.0, -p1[1][2]],
            [0.0, 0.0, 0.0, f],
            [0.0, 0.0, -1.0 / tx, (p1[0][2] - p2[0][2]) / tx],
        ];
        Ok(Rig {
            width: w,
            height: h,
            left,
            right,
            r: std::array::from_fn(|i| std::array::from_fn(|j| r[(i, j)])),
            t: [t[0], t[1], t[2]],
            rect: Some(Rectification { r1, r2, p1, p2, q }),
        })
    }

    /// Write `left.yaml` and `right.yaml` camera_info files into `dir`.
    pub fn save_ros(&self, dir: &Path, name: &str) -> Result<(), RigError> {
        std::fs::create_dir_all(dir).map_err(|e| RigError::Io {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        write(
            &dir.join("left.yaml"),
            &self.to_ros_yaml(false, &format!("{name}/left")),
        )?;
        write(
            &dir.join("right.yaml"),
            &self.to_ros_yaml(true, &format!("{name}/right")),
        )
    }

    /// Read `left.yaml` and `right.yaml` from `dir`.
    pub fn load_ros(dir: &Path) -> Result<Self, RigError> {
        let (_, l) = read(&dir.join("left.yaml"))?;
        let (_, r) = read(&dir.join("right.yaml"))?;
        Self::from_ros_yaml(&l, &r, &dir.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rig() -> Rig {
        let mut r = Rig::ideal(640, 480, 400.0, 319.5, 239.5, 0.12);
        r.left = Camera::from_coefficients(
            LensKind::PlumbBob,
            [400.0, 400.0, 319.5, 239.5],
            &[-0.28, 0.07, 0.001, -0.0005, 0.0],
        );
        r.right = Camera::from_coefficients(
            LensKind::PlumbBob,
            [402.5, 401.0, 321.0, 238.0],
            &[-0.27, 0.065, -0.0008, 0.0004, 0.01],
        );
        r
    }

    fn fisheye_rig() -> Rig {
        let mut r = Rig::ideal(1280, 800, 300.0, 640.0, 400.0, 0.08);
        r.left = Camera::from_coefficients(
            LensKind::Fisheye,
            [300.5, 300.0, 641.0, 399.0],
            &[-0.012, 0.004, -0.0011, 0.0002],
        );
        r.right = Camera::from_coefficients(
            LensKind::Fisheye,
            [299.0, 298.5, 638.5, 402.0],
            &[-0.010, 0.003, -0.0009, 0.0001],
        );
        r
    }

    #[test]
    fn fisheye_rigs_round_trip_through_both_file_kinds() {
        let r = fisheye_rig();
        let text = r.to_opencv_yaml();
        assert!(text.contains("distortion_model: equidistant") && text.contains("cols: 4"));
        assert_eq!(Rig::from_opencv_yaml(&text, "mem").unwrap(), r);
        let dir = std::env::temp_dir().join(format!("calib-ros-fe-{}", std::process::id()));
        r.save_ros(&dir, "fe").unwrap();
        let left = std::fs::read_to_string(dir.join("left.yaml")).unwrap();
        assert!(left.contains("distortion_model: equidistant"), "{left}");
        let back = Rig::load_ros(&dir).unwrap();
        assert_eq!((back.left, back.right), (r.left, r.right));
        std::fs::remove_dir_all(&dir).ok();
        // Five coefficients under the fisheye model are refused by name.
        let bad = text.replace(
            "D1: !!opencv-matrix\n   rows: 1\n   cols: 4\n   dt: d\n   data: [",
            "D1: !!opencv-matrix\n   rows: 1\n   cols: 5\n   dt: d\n   data: [ 0.0,",
        );
        assert_ne!(bad, text);
        let e = Rig::from_opencv_yaml(&bad, "fe.yaml").unwrap_err();
        assert!(
            e.to_string().contains("D1") && e.to_string().contains("fisheye"),
            "{e}"
        );
        let e = Rig::from_opencv_yaml(
            &text.replace("distortion_model: equidistant", "distortion_model: kb8"),
            "fe.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("distortion_model"), "{e}");
    }

    #[test]
    fn opencv_yaml_round_trips_exactly() {
        let r = rig();
        let text = r.to_opencv_yaml();
        assert!(text.starts_with("%YAML:1.0\n---\n") && text.contains("!!opencv-matrix"));
        assert_eq!(Rig::from_opencv_yaml(&text, "mem").unwrap(), r);
        let dir = std::env::temp_dir().join(format!("calib-rig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        r.save_opencv(&dir.join("rig.yaml")).unwrap();
        assert_eq!(Rig::load_opencv(&dir.join("rig.yaml")).unwrap(), r);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ros_camera_info_round_trips() {
        let r = rig();
        let dir = std::env::temp_dir().join(format!("calib-ros-{}", std::process::id()));
        r.save_ros(&dir, "stereo").unwrap();
        let text = std::fs::read_to_string(dir.join("left.yaml")).unwrap();
        assert!(
            text.contains("distortion_model: plumb_bob")
                && text.contains("camera_name: stereo/left")
        );
        let back = Rig::load_ros(&dir).unwrap();
        assert_eq!(
            (back.width, back.height, back.left, back.right),
            (r.width, r.height, r.left, r.right)
        );
        for i in 0..3 {
            assert!(
                (back.t[i] - r.t[i]).abs() < 1e-12,
                "{:?} vs {:?}",
                back.t,
                r.t
            );
            for j in 0..3 {
                assert!((back.r[i][j] - r.r[i][j]).abs() < 1e-12);
            }
        }
        assert!((back.baseline() - 0.12).abs() < 1e-12);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_files_name_the_key() {
        let good = rig().to_opencv_yaml();
        let e = Rig::from_opencv_yaml(
            &good.replace("image_width: 640", "image_width: -3"),
            "f.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("image_width"), "{e}");
        let e = Rig::from_opencv_yaml(
            &good.replace(
                "D1: !!opencv-matrix\n   rows: 1\n   cols: 5",
                "D1: !!opencv-matrix\n   rows: 1\n   cols: 3",
            ),
            "f.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("D1"), "{e}");
        let no_t: String = good.split("T: !!opencv-matrix").next().unwrap().to_string();
        assert_eq!(
            Rig::from_opencv_yaml(&no_t, "f.yaml").unwrap_err(),
            RigError::Missing {
                path: "f.yaml".into(),
                key: "T".into()
            }
        );
        let e = Rig::from_opencv_yaml(
            &good
                .replacen("4.0e2", "nan", 1)
                .replacen("400.0", ".nan", 1),
            "f.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("M1"), "{e}");
        assert!(matches!(
            Rig::load_opencv(Path::new("/nonexistent/rig.yaml")),
            Err(RigError::Io { .. })
        ));
    }
}
