//! Flights as sequences of frames, and the rows the offline phase learns from.
//!
//! A frame is what the robot knew at one decision: its depth scan, velocity,
//! pose and goal, the command that was then executed (by the policy or by the
//! supervisor) and what happened on the way to the next frame. The same frames
//! come from the twin (in process) and from MCAP recordings of the node graph.

use super::{BEAMS, OBS_DIM, ObjectiveConfig, PlanConfig, SCAN_FEATURES, TRACK_FEATURES, TRACKS};
use crate::RlError;

/// One decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Depth scan (m), [`BEAMS`] beams left to right, at most the scan range.
    pub scan: Vec<f32>,
    /// Velocity in the heading frame (m/s): forward, left.
    pub velocity: [f32; 2],
    /// Pose in the world frame: x, y (m), yaw (rad).
    pub pose: [f64; 3],
    /// Goal in the world frame: x, y (m).
    pub goal: [f64; 2],
    /// Command executed from this frame: forward (m/s), yaw rate (rad/s).
    pub command: [f32; 2],
    /// What the policy proposed (differs from `command` when the supervisor took over).
    pub proposed: [f32; 2],
    /// The supervisor, not the policy, chose `command`.
    pub intervention: bool,
    /// The flight ended in a collision after this command.
    pub collision: bool,
    /// The goal was reached after this command.
    pub success: bool,
    /// The walkers the people tracker reported at this frame (world frame).
    pub walkers: Vec<Walker>,
}

/// A walker as the people tracker reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Walker {
    /// The tracker's id; the same walker keeps it from frame to frame.
    pub id: u32,
    /// Position (m, world frame).
    pub position: [f64; 2],
    /// Velocity (m/s, world frame).
    pub velocity: [f64; 2],
}

/// Track positions are divided by this in an observation (m).
pub const TRACK_POSITION_SCALE: f64 = 5.0;
/// Track velocities are divided by this in an observation (m/s).
pub const TRACK_VELOCITY_SCALE: f64 = 2.0;
/// Walker displacements are divided by this in the motion model's targets (m).
pub const WALKER_MOTION_SCALE: f64 = 2.0;

/// One walker in the heading frame of `pose`: position over
/// [`TRACK_POSITION_SCALE`], velocity over [`TRACK_VELOCITY_SCALE`].
pub fn walker_in_heading(pose: [f64; 3], w: &Walker) -> [f32; 4] {
    let (s, c) = pose[2].sin_cos();
    let (dx, dy) = (w.position[0] - pose[0], w.position[1] - pose[1]);
    let [vx, vy] = w.velocity;
    [
        ((c * dx + s * dy) / TRACK_POSITION_SCALE) as f32,
        ((-s * dx + c * dy) / TRACK_POSITION_SCALE) as f32,
        ((c * vx + s * vy) / TRACK_VELOCITY_SCALE) as f32,
        ((-s * vx + c * vy) / TRACK_VELOCITY_SCALE) as f32,
    ]
}

/// The observation's track block: the [`TRACKS`] nearest walkers, nearest
/// first, each as (1, position, velocity) in the heading frame of `pose`;
/// empty slots are all zero.
pub fn track_features(pose: [f64; 3], walkers: &[Walker]) -> Vec<f32> {
    let mut near: Vec<(f64, &Walker)> = walkers
        .iter()
        .filter(|w| w.position.iter().chain(&w.velocity).all(|v| v.is_finite()))
        .map(|w| ((w.position[0] - pose[0]).hypot(w.position[1] - pose[1]), w))
        .collect();
    near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    let mut out = vec![0.0; TRACKS * TRACK_FEATURES];
    for (slot, (_, w)) in near.iter().take(TRACKS).enumerate() {
        let o = &mut out[slot * TRACK_FEATURES..(slot + 1) * TRACK_FEATURES];
        o[0] = 1.0;
        o[1..].copy_from_slice(&walker_in_heading(pose, w));
    }
    out
}

/// Largest range of the scan (m); readings are clamped to it.
pub const SCAN_RANGE: f32 = 8.0;

/// The goal relative to a pose, in the heading frame (m).
pub fn goal_in_heading(pose: [f64; 3], goal: [f64; 2]) -> [f32; 2] {
    let (dx, dy) = (goal[0] - pose[0], goal[1] - pose[1]);
    let (s, c) = pose[2].sin_cos();
    [(c * dx + s * dy) as f32, (-s * dx + c * dy) as f32]
}

/// Scan features: the scan over its range, and its change since `prev` (zero
/// without a previous scan), which is how the models see walkers move.
pub fn scan_features(scan: &[f32], prev: Option<&[f32]>) -> Result<Vec<f32>, RlError> {
    if scan.len() != BEAMS {
        return Err(RlError::Config(format!(
            "a depth scan has {} beams, the SELFI models need {BEAMS}",
            scan.len()
        )));
    }
    if scan.iter().any(|d| d.is_nan()) {
        return Err(RlError::Config("a depth scan contains NaN".into()));
    }
    let norm = |d: f32| d.clamp(0.0, SCAN_RANGE) / SCAN_RANGE;
    let mut f: Vec<f32> = scan.iter().map(|&d| norm(d)).collect();
    match prev.filter(|p| p.len() == BEAMS) {
        Some(p) => f.extend(scan.iter().zip(p).map(|(&a, &b)| norm(a) - norm(b))),
        None => f.extend(std::iter::repeat_n(0.0, BEAMS)),
    }
    Ok(f)
}

/// The actor's and critic's observation: scan features, velocity / 3, goal
/// distance / 10 (at most 3), cos and sin of the goal's bearing, and the
/// track block of [`track_features`] (`tracks`; zeros when shorter).
pub fn observation(
    features: &[f32],
    velocity: [f32; 2],
    goal: [f32; 2],
    tracks: &[f32],
) -> Vec<f32> {
    let mut o = Vec::with_capacity(OBS_DIM);
    o.extend_from_slice(&features[..SCAN_FEATURES.min(features.len())]);
    o.push(velocity[0] / 3.0);
    o.push(velocity[1] / 3.0);
    let d = (goal[0] * goal[0] + goal[1] * goal[1]).sqrt();
    o.push((d / 10.0).min(3.0));
    if d > 1e-6 {
        o.push(goal[0] / d);
        o.push(goal[1] / d);
    } else {
        o.extend([1.0, 0.0]);
    }
    let t = tracks.len().min(TRACKS * TRACK_FEATURES);
    o.extend_from_slice(&tracks[..t]);
    o.resize(OBS_DIM, 0.0);
    o
}

/// Velocity (m/s) and goal (m, heading frame) back from an observation row;
/// the objective needs them in physical units.
pub fn velocity_goal(obs: &[f32]) -> ([f32; 2], [f32; 2]) {
    let b = SCAN_FEATURES;
    let v = [obs[b] * 3.0, obs[b + 1] * 3.0];
    let d = obs[b + 2] * 10.0;
    (v, [obs[b + 3] * d, obs[b + 4] * d])
}

/// One flight from reset to its end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flight {
    /// Its frames in order.
    pub frames: Vec<Frame>,
}

impl Flight {
    /// Observation of frame `i`.
    pub fn observation(&self, i: usize) -> Result<Vec<f32>, RlError> {
        let f = &self.frames[i];
        let prev = i.checked_sub(1).map(|j| self.frames[j].scan.as_slice());
        let feats = scan_features(&f.scan, prev)?;
        Ok(observation(
            &feats,
            f.velocity,
            goal_in_heading(f.pose, f.goal),
            &track_features(f.pose, &f.walkers),
        ))
    }
}

impl Flight {
    /// The online reward's discounted return from every frame (proximity to
    /// walkers is not in a recording and counts 0; the end of a flight cut off
    /// by time is not bootstrapped).
    pub fn returns(&self, w: &super::RewardConfig, gamma: f64) -> Vec<f64> {
        let n = self.frames.len();
        let dist =
            |f: &Frame| ((f.goal[0] - f.pose[0]).powi(2) + (f.goal[1] - f.pose[1]).powi(2)).sqrt();
        let mut r = vec![0.0; n];
        for (i, (f, ri)) in self.frames.iter().zip(r.iter_mut()).enumerate() {
            if let Some(next) = self.frames.get(i + 1) {
                *ri += w.progress * (dist(f) - dist(next));
            }
            if f.collision {
                *ri += w.collision;
            }
            if f.success {
                *ri += w.success;
            }
            if f.intervention && !(i > 0 && self.frames[i - 1].intervention) {
                *ri += w.intervention;
            }
        }
        let mut g = vec![0.0; n];
        let mut acc = 0.0;
        for i in (0..n).rev() {
            acc = r[i] + gamma * acc;
            g[i] = acc;
        }
        g
    }

    /// The plan the behaviour actually flew from frame `i`: the commands of the
    /// next `horizon` frames, normalised (the last one repeated past the end).
    pub fn flown_plan(&self, i: usize, p: &PlanConfig) -> Vec<f32> {
        let n = self.frames.len();
        (0..p.horizon)
            .flat_map(|k| {
                let f = &self.frames[(i + k).min(n - 1)];
                p.normalise(f64::from(f.command[0]), f64::from(f.command[1]))
            })
            .collect()
    }
}

/// Rows for the one-step dynamics model: inputs (velocity / 3, normalised
/// command) and targets (displacement and yaw change over one step in the
/// starting heading frame, over v_max·dt and ω_max·dt; next velocity / 3).
#[derive(Debug, Default, Clone)]
pub struct DynamicsRows {
    /// `[n, 4]` row-major.
    pub inputs: Vec<f32>,
    /// `[n, 5]` row-major.
    pub targets: Vec<f32>,
}

/// Rows for the traversability model: scan features of a frame with a pose
/// the robot reached from it (x / 2, y / 2, cos, sin, step / horizon), and
/// whether that pose was unsafe.
#[derive(Debug, Default, Clone)]
pub struct TraversabilityRows {
    /// `[n, SCAN_FEATURES + 5]` row-major.
    pub inputs: Vec<f32>,
    /// `[n]`, 1 = unsafe.
    pub labels: Vec<f32>,
}

/// Width of a traversability input row.
pub const TRAV_INPUT: usize = SCAN_FEATURES + 5;

/// A pose relative to another: (x, y, yaw) in the first one's heading frame.
pub fn relative_pose(from: [f64; 3], to: [f64; 3]) -> [f64; 3] {
    let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
    let (s, c) = from[2].sin_cos();
    let mut dyaw = to[2] - from[2];
    while dyaw > std::f64::consts::PI {
        dyaw -= std::f64::consts::TAU;
    }
    while dyaw < -std::f64::consts::PI {
        dyaw += std::f64::consts::TAU;
    }
    [c * dx + s * dy, -s * dx + c * dy, dyaw]
}

/// Everything the offline phase learns from, built from flights.
#[derive(Debug, Default, Clone)]
pub struct Dataset {
    /// Dynamics rows.
    pub dynamics: DynamicsRows,
    /// Traversability rows.
    pub traversability: TraversabilityRows,
    /// Observation of every frame (the actor trains on these states).
    pub states: Vec<Vec<f32>>,
    /// Frames seen.
    pub frames: usize,
    /// Unsafe labels among the traversability rows.
    pub unsafe_rows: usize,
    /// Walker-motion rows.
    pub walkers: WalkerRows,
}

/// Rows for the walker-motion model: a tracked walker in the heading frame of
/// a frame (as in the observation's track block, without the seen flag) and
/// where that walker was 1..H frames later, relative to where it was, in the
/// same frame, over [`WALKER_MOTION_SCALE`].
#[derive(Debug, Default, Clone)]
pub struct WalkerRows {
    /// `[n, 4]` row-major.
    pub inputs: Vec<f32>,
    /// `[n, 2H]` row-major.
    pub targets: Vec<f32>,
}

impl Dataset {
    /// Motion rows of frame `i`: every walker the tracker still follows (same id)
    /// over the next `h` frames of the flight.
    fn walker_rows(&mut self, fl: &Flight, i: usize, h: usize) {
        let f = &fl.frames[i];
        let Some(later) = fl.frames.get(i + 1..=i + h) else {
            return;
        };
        if f.collision {
            return;
        }
        let (s, c) = f.pose[2].sin_cos();
        'walker: for w in &f.walkers {
            let mut t = Vec::with_capacity(2 * h);
            for g in later {
                let Some(v) = g.walkers.iter().find(|v| v.id == w.id) else {
                    continue 'walker;
                };
                let (dx, dy) = (v.position[0] - w.position[0], v.position[1] - w.position[1]);
                t.push(((c * dx + s * dy) / WALKER_MOTION_SCALE) as f32);
                t.push(((-s * dx + c * dy) / WALKER_MOTION_SCALE) as f32);
            }
            if t.iter().all(|v| v.is_finite()) {
                self.walkers.inputs.extend(walker_in_heading(f.pose, w));
                self.walkers.targets.extend(t);
            }
        }
    }
}

impl Dataset {
    /// Rows of every flight. A pose is unsafe when a collision happened on the way
    /// to it, the supervisor took over on the way, or the scan there read less
    /// than `unsafe_distance` in its central third.
    pub fn build(
        flights: &[Flight],
        plan: &PlanConfig,
        objective: &ObjectiveConfig,
    ) -> Result<Dataset, RlError> {
        let mut ds = Dataset::default();
        let (vdt, wdt) = (
            (plan.max_speed * plan.dt()) as f32,
            (plan.max_yaw_rate * plan.dt()) as f32,
        );
        let h = plan.horizon;
        for fl in flights {
            let n = fl.frames.len();
            let mut feats = Vec::with_capacity(n);
            for i in 0..n {
                let prev = i.checked_sub(1).map(|j| fl.frames[j].scan.as_slice());
                feats.push(scan_features(&fl.frames[i].scan, prev)?);
            }
            for (i, (f, fi)) in fl.frames.iter().zip(&feats).enumerate() {
                ds.frames += 1;
                ds.states.push(observation(
                    fi,
                    f.velocity,
                    goal_in_heading(f.pose, f.goal),
                    &track_features(f.pose, &f.walkers),
                ));
                ds.walker_rows(fl, i, h);
                if let Some(next) = fl.frames.get(i + 1)
                    && !f.collision
                {
                    let rel = relative_pose(f.pose, next.pose);
                    let a = plan.normalise(f64::from(f.command[0]), f64::from(f.command[1]));
                    ds.dynamics.inputs.extend([
                        f.velocity[0] / 3.0,
                        f.velocity[1] / 3.0,
                        a[0],
                        a[1],
                    ]);
                    ds.dynamics.targets.extend([
                        rel[0] as f32 / vdt,
                        rel[1] as f32 / vdt,
                        rel[2] as f32 / wdt,
                        next.velocity[0] / 3.0,
                        next.velocity[1] / 3.0,
                    ]);
                }
                let mut unsafe_so_far = false;
                for k in 1..=h {
                    // Frame i + k is where the robot was k commands later; a
                    // collision on the way ends the flight at its last frame.
                    let j = i + k;
                    let step_event = fl.frames.get(j - 1).is_some_and(|g| g.collision);
                    if j >= n && !unsafe_so_far && !step_event {
                        break;
                    }
                    let target = fl.frames.get(j.min(n - 1)).map_or(f.pose, |g| g.pose);
                    let reached = fl.frames.get(j);
                    unsafe_so_far = unsafe_so_far
                        || step_event
                        || reached.is_some_and(|g| {
                            g.intervention || central_min(&g.scan) < objective.unsafe_distance
                        });
                    let rel = relative_pose(f.pose, target);
                    ds.traversability.inputs.extend_from_slice(fi);
                    ds.traversability.inputs.extend([
                        (rel[0] / 2.0) as f32,
                        (rel[1] / 2.0) as f32,
                        rel[2].cos() as f32,
                        rel[2].sin() as f32,
                        k as f32 / h as f32,
                    ]);
                    ds.traversability
                        .labels
                        .push(if unsafe_so_far { 1.0 } else { 0.0 });
                    ds.unsafe_rows += usize::from(unsafe_so_far);
                    if j >= n {
                        break;
                    }
                }
            }
        }
        if ds.dynamics.targets.is_empty() || ds.traversability.labels.is_empty() {
            return Err(RlError::Config(
                "the flights hold too few frames to learn from (need at least two per flight)"
                    .into(),
            ));
        }
        Ok(ds)
    }
}

/// Nearest reading in the central third of a scan (m).
pub fn central_min(scan: &[f32]) -> f64 {
    let n = scan.len();
    scan[n / 3..(2 * n).div_ceil(3).max(n / 3 + 1).min(n)]
        .iter()
        .fold(f64::INFINITY, |m, &d| m.min(f64::from(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(x: f64, scan: f32) -> Frame {
        Frame {
            scan: vec![scan; BEAMS],
            velocity: [1.0, 0.0],
            pose: [x, 0.0, 0.0],
            goal: [10.0, 0.0],
            command: [1.0, 0.0],
            proposed: [1.0, 0.0],
            intervention: false,
            collision: false,
            success: false,
            walkers: Vec::new(),
        }
    }

    #[test]
    fn labels_mark_poses_after_a_collision_or_a_close_reading() {
        let mut fl = Flight {
            frames: (0..6).map(|i| frame(i as f64 * 0.2, 5.0)).collect(),
        };
        fl.frames[3].scan = vec![0.3; BEAMS]; // close reading at frame 3
        fl.frames[5].collision = true; // collided after frame 5's command
        let plan = PlanConfig {
            horizon: 3,
            ..PlanConfig::default()
        };
        let ds = Dataset::build(&[fl], &plan, &ObjectiveConfig::default()).unwrap();
        // Dynamics: frames 0..=4 have a successor and no collision.
        assert_eq!(ds.dynamics.inputs.len(), 5 * 4);
        // Forward displacement 0.2 m over v_max·dt = 0.3 m.
        assert!((ds.dynamics.targets[0] - 0.2 / 0.3).abs() < 1e-5);
        // From frame 0: poses 1, 2, 3 → the third is unsafe.
        assert_eq!(&ds.traversability.labels[0..3], &[0.0, 0.0, 1.0]);
        // From frame 5: its collision makes every later pose unsafe.
        let last = ds.traversability.labels.len();
        assert_eq!(ds.traversability.labels[last - 1], 1.0);
        assert!(ds.unsafe_rows > 0 && ds.unsafe_rows < last);
        assert_eq!(ds.states.len(), 6);
        assert_eq!(ds.states[0].len(), OBS_DIM);
    }

    #[test]
    fn wrong_scans_are_refused_by_name() {
        let mut f = frame(0.0, 1.0);
        f.scan.pop();
        let e = Dataset::build(
            &[Flight {
                frames: vec![f.clone(), f],
            }],
            &PlanConfig::default(),
            &ObjectiveConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("31 beams"), "{e}");
        assert!(scan_features(&[f32::NAN; BEAMS], None).is_err());
    }

    #[test]
    fn goal_and_pose_frames() {
        let g = goal_in_heading([1.0, 1.0, std::f64::consts::FRAC_PI_2], [1.0, 3.0]);
        assert!((g[0] - 2.0).abs() < 1e-6 && g[1].abs() < 1e-6);
        let r = relative_pose([0.0, 0.0, 3.0], [0.0, 0.0, -3.0]);
        assert!((r[2] - (std::f64::consts::TAU - 6.0)).abs() < 1e-9);
        let o = observation(&[0.5; SCAN_FEATURES], [1.5, 0.0], [3.0, 4.0], &[]);
        let (v, goal) = velocity_goal(&o);
        assert!((v[0] - 1.5).abs() < 1e-6 && (goal[0] - 3.0).abs() < 1e-5);
        assert_eq!(o.len(), OBS_DIM);
    }

    #[test]
    fn tracks_are_the_nearest_walkers_in_the_heading_frame() {
        let w = |id, x: f64, y: f64| Walker {
            id,
            position: [x, y],
            velocity: [0.0, 1.0],
        };
        // Facing +y from (1, 1): a walker at (1, 3) is 2 m ahead and walks
        // away (forward 0.5 in units of 2 m/s).
        let pose = [1.0, 1.0, std::f64::consts::FRAC_PI_2];
        let walkers = [
            w(4, 1.0, 9.0),
            w(1, 1.0, 3.0),
            w(2, -3.0, 1.0),
            w(3, 1.0, 0.0),
        ];
        let t = track_features(pose, &walkers);
        assert_eq!(t.len(), TRACKS * TRACK_FEATURES);
        // Nearest first: id 3 (1 m behind), id 1 (2 m ahead), id 2 (4 m left).
        let near = |slot: usize| &t[slot * TRACK_FEATURES..(slot + 1) * TRACK_FEATURES];
        let close = |a: &[f32], b: [f32; 5]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(near(0), [1.0, -0.2, 0.0, 0.5, 0.0]), "{:?}", near(0));
        assert!(close(near(1), [1.0, 0.4, 0.0, 0.5, 0.0]), "{:?}", near(1));
        assert!(close(near(2), [1.0, 0.0, 0.8, 0.5, 0.0]), "{:?}", near(2));
        // Fewer walkers than slots: the rest is zero; a NaN track is left out.
        let mut nan = w(5, f64::NAN, 0.0);
        nan.velocity = [0.0, 0.0];
        let t = track_features(pose, &[w(1, 1.0, 3.0), nan]);
        assert!(t[TRACK_FEATURES..].iter().all(|v| *v == 0.0));
        let o = observation(&[0.5; SCAN_FEATURES], [1.0, 0.0], [1.0, 0.0], &t);
        assert_eq!(
            &o[super::super::TRACKS_AT..super::super::TRACKS_AT + 5],
            &t[..5]
        );
    }

    #[test]
    fn walker_rows_follow_one_id_over_the_horizon() {
        let plan = PlanConfig {
            horizon: 2,
            ..PlanConfig::default()
        };
        let mut fl = Flight {
            frames: (0..4).map(|i| frame(i as f64 * 0.2, 5.0)).collect(),
        };
        for (i, f) in fl.frames.iter_mut().enumerate() {
            // Walker 7 walks +y at 1 m/s (0.2 m per frame); walker 8 is lost after frame 1.
            f.walkers.push(Walker {
                id: 7,
                position: [3.0, 0.2 * i as f64],
                velocity: [0.0, 1.0],
            });
            if i <= 1 {
                f.walkers.push(Walker {
                    id: 8,
                    position: [4.0, 0.0],
                    velocity: [0.0, 0.0],
                });
            }
        }
        let ds = Dataset::build(&[fl], &plan, &ObjectiveConfig::default()).unwrap();
        // Walker 7 from frames 0 and 1 (frames 2, 3 lack two later frames);
        // walker 8 from none (it is gone by frame 2).
        assert_eq!(ds.walkers.inputs.len(), 2 * 4);
        let t = &ds.walkers.targets;
        assert_eq!(t.len(), 2 * 4);
        let m = WALKER_MOTION_SCALE as f32;
        for (a, b) in t[..4].iter().zip([0.0, 0.2 / m, 0.0, 0.4 / m]) {
            assert!((a - b).abs() < 1e-6, "{t:?}");
        }
        // Walker 7 from frame 0: 3 m ahead of a robot at x = 0.
        assert!((ds.walkers.inputs[0] - 3.0 / TRACK_POSITION_SCALE as f32).abs() < 1e-6);
    }
}
