//! A people tracker that sees what a stereo camera sees: moving objects found
//! in a per-column depth scan and followed from frame to frame.
//!
//! Detection is the classic one of 2D range-scan person detectors (segment the
//! scan at depth jumps, keep the segments that stand in front of their
//! neighbours and are no wider than a person; Arras et al., "Using Boosted
//! Features for the Detection of People in 2D Range Data", ICRA 2007, use the
//! same segmentation before classifying). Tracking is nearest-neighbour
//! association inside a gate with an alpha-beta filter per track (Kalata,
//! "The Tracking Index", IEEE Trans. AES 1984), tracks that coast through
//! short occlusions and die after `coast` seconds unseen. Depth alone cannot
//! tell a person from a pole, so a track is reported only once it has moved
//! (`moving` metres from where it was first seen): a standing person is not
//! reported until it walks, and a pole never is.
//!
//! Segments near the image's border are left out (their extent is unknown: a
//! box half in view looks like a person there, and its centre slides as the
//! view turns), and so are segments narrower than a person's side view
//! (single-column matching noise at range).
//!
//! What it cannot do, by construction (and what a policy trained on it has to
//! live with): it sees only the camera's field of view and only the nearest
//! surface (no sight through walls or other people); a person hidden longer
//! than `coast` comes back under a new id; two people side by side within
//! `split` of each other in depth are one segment, and so one track or none.

use super::data::Walker;
use serde::{Deserialize, Serialize};

/// The tracker's settings (`[nav.tracker]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DepthTrackerConfig {
    /// A depth jump larger than this between neighbouring columns ends a segment (m).
    pub split: f64,
    /// Segments wider than this (end to end, m) are walls or furniture, not people.
    pub max_width: f64,
    /// Segments narrower than this (m) are noise (a person is about 0.5 m wide).
    pub min_width: f64,
    /// Segments that reach this share of the columns at either side of the
    /// image are left out: cut by the border (or by the matcher's blind
    /// columns there), their extent and centre are unknown.
    pub border: f64,
    /// A detection's centre lies this far behind its visible surface, along
    /// the ray (m; a person's radius).
    pub radius: f64,
    /// A detection farther than this from a track's prediction starts a new track (m).
    pub gate: f64,
    /// A track unseen this long is dropped (s).
    pub coast: f64,
    /// A track unseen longer than this is kept (for its id) but not reported:
    /// its prediction is no measurement (s).
    pub report_unseen: f64,
    /// A track is reported once it is this far from where it was first seen (m).
    pub moving: f64,
    /// The alpha-beta filter's position gain (0..1].
    pub alpha: f64,
    /// The alpha-beta filter's velocity gain (0..alpha].
    pub beta: f64,
    /// Speeds above this are clamped (m/s): no person walks faster.
    pub max_speed: f64,
}

impl Default for DepthTrackerConfig {
    fn default() -> Self {
        Self {
            split: 0.3,
            max_width: 0.9,
            min_width: 0.2,
            border: 0.05,
            radius: 0.25,
            gate: 0.8,
            coast: 1.0,
            report_unseen: 0.4,
            moving: 0.6,
            alpha: 0.5,
            beta: 0.2,
            max_speed: 2.5,
        }
    }
}

impl DepthTrackerConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (v, k) in [
            (self.split, "nav.tracker.split"),
            (self.max_width, "nav.tracker.max_width"),
            (self.gate, "nav.tracker.gate"),
            (self.coast, "nav.tracker.coast"),
            (self.max_speed, "nav.tracker.max_speed"),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{k}` must be a positive number, not {v}"));
            }
        }
        for (v, k) in [
            (self.radius, "nav.tracker.radius"),
            (self.min_width, "nav.tracker.min_width"),
            (self.moving, "nav.tracker.moving"),
            (self.report_unseen, "nav.tracker.report_unseen"),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("`{k}` must be ≥ 0, not {v}"));
            }
        }
        if !(0.0..0.5).contains(&self.border) {
            return Err(format!(
                "`nav.tracker.border` must be in [0, 0.5), not {}",
                self.border
            ));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(format!(
                "`nav.tracker.alpha` must be in (0, 1], not {}",
                self.alpha
            ));
        }
        if !(self.beta >= 0.0 && self.beta <= self.alpha) {
            return Err(format!(
                "`nav.tracker.beta` must be in [0, alpha], not {}",
                self.beta
            ));
        }
        Ok(())
    }
}

/// The camera a scan came from: a column `c` of `columns` spans the image's
/// pixels `c·width/columns .. (c+1)·width/columns`, and a pixel `u` looks
/// along `(1, −(u − cx)/fx)` in the body frame (forward, left).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanCamera {
    /// Image width (pixels).
    pub width: usize,
    /// Focal length (pixels).
    pub fx: f64,
    /// Principal point's column (pixels).
    pub cx: f64,
}

impl ScanCamera {
    /// The body-frame direction (forward, left), unnormalised with forward 1,
    /// of column `c` of a scan of `columns`.
    fn ray(&self, c: usize, columns: usize) -> [f64; 2] {
        let u = (c as f64 + 0.5) * self.width as f64 / columns as f64 - 0.5;
        [1.0, -(u - self.cx) / self.fx]
    }
}

/// A person-sized object in front of its surroundings, in the world frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Its centre (m).
    pub position: [f64; 2],
    /// Columns it spans.
    pub columns: (usize, usize),
}

/// Person-sized foreground segments of a per-column depth scan (`depth[c]`:
/// the depth Z along the optical axis seen in column `c`, NaN or ≤ 0 where
/// nothing was measured) seen from `pose` (x, y, yaw), nearer than `range`.
pub fn detect(
    cfg: &DepthTrackerConfig,
    cam: &ScanCamera,
    depth: &[f32],
    pose: [f64; 3],
    range: f64,
) -> Vec<Detection> {
    let n = depth.len();
    let seen = |c: usize| {
        let z = f64::from(depth[c]);
        (z.is_finite() && z > 0.0).then_some(z)
    };
    let (sy, cy) = pose[2].sin_cos();
    let body = |c: usize, z: f64| {
        let r = cam.ray(c, n);
        [r[0] * z, r[1] * z]
    };
    let margin = (cfg.border * n as f64).ceil() as usize;
    let mut out = Vec::new();
    let mut c = 0;
    while c < n {
        let Some(z0) = seen(c) else {
            c += 1;
            continue;
        };
        // The segment: neighbours whose depth differs by less than `split`.
        let (a, mut b, mut last) = (c, c, z0);
        while b + 1 < n {
            match seen(b + 1) {
                Some(z) if (z - last).abs() < cfg.split => {
                    b += 1;
                    last = z;
                }
                _ => break,
            }
        }
        c = b + 1;
        let (za, zb) = (seen(a).unwrap_or(z0), last);
        // In front of both neighbours: a neighbour that is nearer means this is
        // background seen between or beside nearer things (unknown counts as
        // farther: the strip beside an object's edge is often unmatched).
        let behind =
            |nb: Option<usize>, edge: f64| nb.and_then(seen).is_some_and(|z| z < edge - cfg.split);
        if behind(a.checked_sub(1), za) || behind((b + 1 < n).then_some(b + 1), zb) {
            continue;
        }
        if b == a {
            continue; // one column: too little to call a person
        }
        if a < margin || b + margin >= n {
            continue; // cut by the image's border: its width and centre are unknown
        }
        let (pa, pb) = (body(a, za), body(b, zb));
        let width = (pa[0] - pb[0]).hypot(pa[1] - pb[1]);
        if width > cfg.max_width || width < cfg.min_width {
            continue;
        }
        let k = (b - a + 1) as f64;
        let mut m = [0.0; 2];
        for i in a..=b {
            let p = body(i, seen(i).unwrap_or(last));
            m[0] += p[0] / k;
            m[1] += p[1] / k;
        }
        let d = m[0].hypot(m[1]);
        if d > range || d < 1e-6 {
            continue;
        }
        let s = (d + cfg.radius) / d;
        let (fx, fy) = (m[0] * s, m[1] * s);
        out.push(Detection {
            position: [pose[0] + cy * fx - sy * fy, pose[1] + sy * fx + cy * fy],
            columns: (a, b),
        });
    }
    out
}

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    position: [f64; 2],
    velocity: [f64; 2],
    born: [f64; 2],
    hits: u32,
    unseen: f64,
    moving: bool,
}

/// Tracks of moving objects in depth scans; see the module's description.
#[derive(Debug, Clone)]
pub struct DepthTracker {
    cfg: DepthTrackerConfig,
    camera: ScanCamera,
    range: f64,
    tracks: Vec<Track>,
    next_id: u32,
}

impl DepthTracker {
    /// A tracker of objects within `range` (m) seen by `camera`.
    pub fn new(cfg: DepthTrackerConfig, camera: ScanCamera, range: f64) -> Self {
        Self {
            cfg,
            camera,
            range,
            tracks: Vec::new(),
            next_id: 0,
        }
    }

    /// Forget every track (a new flight); ids keep counting.
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Tracks alive now, reported or not.
    pub fn live(&self) -> usize {
        self.tracks.len()
    }

    /// One frame: `depth` seen from `pose`, `dt` s after the last frame.
    /// Returns the reported tracks (moving ones), ids stable while followed.
    pub fn update(&mut self, depth: &[f32], pose: [f64; 3], dt: f64) -> Vec<Walker> {
        let c = &self.cfg;
        let dets = detect(c, &self.camera, depth, pose, self.range);
        for t in &mut self.tracks {
            t.position[0] += t.velocity[0] * dt;
            t.position[1] += t.velocity[1] * dt;
            t.unseen += dt;
        }
        // Greedy nearest-neighbour association inside the gate.
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                let e = (d.position[0] - t.position[0]).hypot(d.position[1] - t.position[1]);
                if e < c.gate {
                    pairs.push((e, ti, di));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut det_used = vec![false; dets.len()];
        for (_, ti, di) in pairs {
            if track_used[ti] || det_used[di] {
                continue;
            }
            track_used[ti] = true;
            det_used[di] = true;
            let t = &mut self.tracks[ti];
            let z = dets[di].position;
            let r = [z[0] - t.position[0], z[1] - t.position[1]];
            for (k, rk) in r.into_iter().enumerate() {
                t.position[k] += c.alpha * rk;
                if dt > 0.0 {
                    t.velocity[k] += c.beta / dt * rk;
                }
            }
            let v = t.velocity[0].hypot(t.velocity[1]);
            if v > c.max_speed {
                t.velocity = [
                    t.velocity[0] * c.max_speed / v,
                    t.velocity[1] * c.max_speed / v,
                ];
            }
            t.hits += 1;
            t.unseen = 0.0;
            let moved = (t.position[0] - t.born[0]).hypot(t.position[1] - t.born[1]);
            t.moving |= t.hits >= 3 && moved > c.moving;
        }
        let coast = c.coast;
        self.tracks.retain(|t| t.unseen <= coast);
        for (d, used) in dets.iter().zip(&det_used) {
            if !used {
                self.tracks.push(Track {
                    id: self.next_id,
                    position: d.position,
                    velocity: [0.0; 2],
                    born: d.position,
                    hits: 1,
                    unseen: 0.0,
                    moving: false,
                });
                self.next_id = self.next_id.wrapping_add(1);
            }
        }
        let report = c.report_unseen + 1e-9;
        self.tracks
            .iter()
            .filter(|t| t.moving && t.unseen <= report)
            .map(|t| Walker {
                id: t.id,
                position: t.position,
                velocity: t.velocity,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 160-column, 90° camera (the twin's).
    const CAM: ScanCamera = ScanCamera {
        width: 160,
        fx: 80.0,
        cx: 79.5,
    };

    /// The depth scan (Z per column) of a wall at x = `wall` and cylinders
    /// (centre, radius), seen from the origin looking along +x.
    fn scan(wall: f64, cylinders: &[([f64; 2], f64)]) -> Vec<f32> {
        (0..160)
            .map(|c| {
                let r = CAM.ray(c, 160);
                let n = r[0].hypot(r[1]);
                let dir = [r[0] / n, r[1] / n];
                let mut t = wall / dir[0];
                for &(p, rad) in cylinders {
                    // |t·dir − p| = rad
                    let b = dir[0] * p[0] + dir[1] * p[1];
                    let q = b * b - (p[0] * p[0] + p[1] * p[1] - rad * rad);
                    if q >= 0.0 {
                        let hit = b - q.sqrt();
                        if hit > 0.0 {
                            t = t.min(hit);
                        }
                    }
                }
                (t * dir[0]) as f32
            })
            .collect()
    }

    #[test]
    fn a_person_in_front_of_a_wall_is_found_where_it_stands_and_the_wall_is_not() {
        let cfg = DepthTrackerConfig::default();
        let d = detect(&cfg, &CAM, &scan(7.0, &[([3.0, 0.5], 0.25)]), [0.0; 3], 6.0);
        assert_eq!(d.len(), 1, "{d:?}");
        let e = (d[0].position[0] - 3.0).hypot(d[0].position[1] - 0.5);
        assert!(e < 0.12, "centre off by {e} m: {d:?}");
        // Seen from a moved and turned pose, the same place in the world.
        let yaw = 0.4f64;
        let pose = [1.0, -2.0, yaw];
        let d = detect(&cfg, &CAM, &scan(7.0, &[([3.0, 0.5], 0.25)]), pose, 6.0);
        let (s, c) = yaw.sin_cos();
        let want = [1.0 + c * 3.0 - s * 0.5, -2.0 + s * 3.0 + c * 0.5];
        let e = (d[0].position[0] - want[0]).hypot(d[0].position[1] - want[1]);
        assert!(e < 0.12, "{d:?} against {want:?}");
        // A box 1.5 m wide is furniture; beyond the range, nothing.
        assert!(detect(&cfg, &CAM, &scan(7.0, &[([3.0, 0.0], 0.75)]), [0.0; 3], 6.0).is_empty());
        assert!(detect(&cfg, &CAM, &scan(7.0, &[([6.5, 0.0], 0.25)]), [0.0; 3], 6.0).is_empty());
    }

    #[test]
    fn the_wall_between_two_poles_is_not_a_person() {
        // Two poles 0.9 m apart at 2 m leave a strip of the wall between them,
        // narrower than a person, with nearer neighbours on both sides.
        let cfg = DepthTrackerConfig::default();
        let d = detect(
            &cfg,
            &CAM,
            &scan(3.0, &[([2.0, 0.45], 0.2), ([2.0, -0.45], 0.2)]),
            [0.0; 3],
            6.0,
        );
        assert_eq!(d.len(), 2, "the two poles and nothing else: {d:?}");
        assert!(d.iter().all(|x| x.position[0] < 2.5), "{d:?}");
    }

    #[test]
    fn a_walker_keeps_its_id_gets_its_velocity_and_a_pole_is_never_reported() {
        let cfg = DepthTrackerConfig::default();
        let mut t = DepthTracker::new(cfg, CAM, 6.0);
        let dt = 0.2;
        let pole = ([2.5, 1.8], 0.25);
        let mut id = None;
        let mut reported = 0;
        for k in 0..25 {
            // Crossing from left to right at 0.8 m/s, 4 m ahead.
            let p = [4.0, 1.5 - 0.8 * dt * k as f64];
            let seen = t.update(&scan(7.0, &[(p, 0.25), pole]), [0.0; 3], dt);
            assert!(seen.len() <= 1, "one mover at most: {seen:?}");
            for w in &seen {
                assert!(w.position[0] > 3.5, "the pole was reported: {w:?}");
                assert_eq!(*id.get_or_insert(w.id), w.id, "id switch at step {k}");
                reported += 1;
                if k > 10 {
                    let e = (w.velocity[0]).hypot(w.velocity[1] + 0.8);
                    assert!(e < 0.25, "velocity {:?} at step {k}", w.velocity);
                    let e = (w.position[0] - p[0]).hypot(w.position[1] - p[1]);
                    assert!(e < 0.25, "position {:?} against {p:?}", w.position);
                }
            }
        }
        assert!(reported >= 15, "reported in {reported} of 25 frames");
        assert_eq!(t.live(), 2, "the walker and the pole are tracked");
    }

    #[test]
    fn an_occluded_walker_coasts_and_one_hidden_too_long_returns_under_a_new_id() {
        let cfg = DepthTrackerConfig::default();
        let mut t = DepthTracker::new(cfg, CAM, 6.0);
        let dt = 0.2;
        // A wide box (furniture, never a detection) hides x ≥ 2.5 in y ∈ [-0.6, 0.6]...
        let screen = ([2.0, 0.0], 0.6);
        let walker = |k: usize| [4.0, 2.0 - 0.8 * dt * k as f64];
        let frame = |t: &mut DepthTracker, k: usize, hide: bool| {
            let mut objs = vec![(walker(k), 0.25)];
            if hide {
                objs.push(screen);
            }
            t.update(&scan(7.0, &objs), [0.0; 3], dt)
        };
        let mut first = None;
        for k in 0..8 {
            if let Some(w) = frame(&mut t, k, false).first() {
                first = Some(w.id);
            }
        }
        let first = first.expect("the walker was reported before the occlusion");
        // Hidden for 0.6 s (< coast): still reported, under the same id, where it should be.
        let mut during = Vec::new();
        for k in 8..11 {
            during.extend(frame(&mut t, k, true));
        }
        assert!(
            !during.is_empty() && during.iter().all(|w| w.id == first),
            "{during:?}"
        );
        // Hidden for 2 s (> coast): dropped, and seen again under a new id once it moves.
        for k in 11..21 {
            frame(&mut t, k, true);
        }
        let mut after = Vec::new();
        for k in 21..30 {
            after.extend(frame(&mut t, k, false));
        }
        assert!(!after.is_empty(), "not found again");
        assert!(after.iter().all(|w| w.id != first), "{after:?}");
        // Nothing is ever reported through the box: a walk of 1.2 m (well past
        // `moving`) behind it is never reported, and the same walk in the open is.
        let walk = |k: usize| ([4.0, 0.5 - 0.04 * k as f64], 0.25);
        let mut t2 = DepthTracker::new(DepthTrackerConfig::default(), CAM, 6.0);
        for k in 0..30 {
            assert!(
                t2.update(&scan(7.0, &[walk(k), screen]), [0.0; 3], dt)
                    .is_empty(),
                "seen through the box at step {k}"
            );
        }
        let mut t3 = DepthTracker::new(DepthTrackerConfig::default(), CAM, 6.0);
        let open: usize = (0..30)
            .map(|k| t3.update(&scan(7.0, &[walk(k)]), [0.0; 3], dt).len())
            .sum();
        assert!(
            open >= 10,
            "the same walk in the open was reported {open} times"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let c = DepthTrackerConfig {
            beta: 0.9,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("nav.tracker.beta"));
        let c = DepthTrackerConfig {
            gate: f64::NAN,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("nav.tracker.gate"));
        assert!(DepthTrackerConfig::default().validate().is_ok());
    }
}
