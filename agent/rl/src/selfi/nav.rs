//! The twin's goal-reaching flight among walkers, as SELFI sees it: a decision
//! every 1 / control_hz s, a safety supervisor that takes over before a
//! collision (each take-over is an intervention), and the online reward split
//! into its components.

use super::data::{
    Frame, SCAN_RANGE, Walker, central_min, goal_in_heading, observation, scan_features,
    track_features,
};
use super::{BEAMS, SelfiConfig};
use crate::RlError;
use sim::context::Context;
use sim::env::{Action, Env, EnvConfig, Observation, Task, Walkers};
use sim::rng::Rng;

/// The online reward, component by component (already weighted).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RewardParts {
    /// Progress towards the goal.
    pub progress: f64,
    /// Goal reached.
    pub success: f64,
    /// Collision.
    pub collision: f64,
    /// An intervention began at this step (the learner spreads it back in time).
    pub intervention: f64,
    /// A walker inside the personal space.
    pub proximity: f64,
}

impl RewardParts {
    /// Their sum.
    pub fn total(&self) -> f64 {
        self.progress + self.success + self.collision + self.intervention + self.proximity
    }
}

/// What one decision gave.
#[derive(Debug, Clone)]
pub struct NavStep {
    /// The frame decided on, with the command executed and what followed.
    pub frame: Frame,
    /// Observation after the step.
    pub next_obs: Vec<f32>,
    /// Reward components.
    pub reward: RewardParts,
    /// Collision or goal: the episode is over and does not bootstrap.
    pub terminated: bool,
    /// Cut off at the step limit.
    pub truncated: bool,
    /// The supervisor took over at this step and had not at the one before.
    pub intervention_started: bool,
    /// Metres flown during the step.
    pub distance: f64,
    /// Nearest walker's surface (m).
    pub walker_clearance: f64,
}

/// The supervisor's rule, the same in the twin and in the graph's safety node:
/// it takes over from `command` (forward m/s, yaw rate rad/s) when the nearest
/// reading in the central third of `scan` (m, left to right) is under
/// `stop_distance + stop_per_speed · max(commanded, measured forward speed)`,
/// and then stops and turns towards the more open half. `None`: no take-over.
pub fn supervise(
    cfg: &SelfiConfig,
    scan: &[f32],
    measured_forward: f64,
    command: (f64, f64),
) -> Option<(f64, f64)> {
    if scan.is_empty() {
        return None;
    }
    let speed = command.0.max(measured_forward).max(0.0);
    let limit = cfg.nav.stop_distance + cfg.nav.stop_per_speed * speed;
    if central_min(scan) >= limit {
        return None;
    }
    let half = scan.len() / 2;
    let left: f32 = scan[..half].iter().sum();
    let right: f32 = scan[half..].iter().sum();
    let turn = if left >= right { 1.0 } else { -1.0 };
    Some((0.0, turn * cfg.plan.max_yaw_rate * 0.8))
}

/// A depth scan of any width (NaN or non-positive = nothing seen) as [`BEAMS`]
/// beams: each beam keeps the nearest reading of its columns, clamped to the
/// scan range; beams that saw nothing read the range.
pub fn resample_scan(scan: &[f32]) -> Vec<f32> {
    let n = scan.len();
    (0..BEAMS)
        .map(|b| {
            if n == 0 {
                return SCAN_RANGE;
            }
            let lo = b * n / BEAMS;
            let hi = ((b + 1) * n / BEAMS).max(lo + 1).min(n);
            scan[lo.min(n - 1)..hi]
                .iter()
                .filter(|d| d.is_finite() && **d > 0.0)
                .fold(SCAN_RANGE, |m, &d| m.min(d))
        })
        .collect()
}

/// The twin's stand-in for a people tracker: the simulated walkers within
/// `track_range` of the robot, with Gaussian noise on position and velocity,
/// and the walker's index as its id. A real robot runs a detector and tracker
/// on the camera instead and publishes the same message.
pub struct Tracker {
    range: f64,
    position_noise: f64,
    velocity_noise: f64,
    rng: Rng,
}

impl Tracker {
    /// A tracker with the noise and range of `cfg`, drawing noise from `seed`.
    pub fn new(cfg: &SelfiConfig, seed: u64) -> Tracker {
        Tracker {
            range: cfg.nav.track_range,
            position_noise: cfg.nav.track_position_noise,
            velocity_noise: cfg.nav.track_velocity_noise,
            rng: Rng::new(seed ^ 0x7ac5),
        }
    }

    /// What the tracker reports with the robot at `position` (x, y).
    pub fn track(&mut self, world: &sim::world::World, position: [f64; 2]) -> Vec<Walker> {
        let mut out = Vec::new();
        for (id, m) in world.movers.iter().enumerate() {
            let Some(sim::world::Obstacle {
                shape: sim::world::Shape::Cylinder { cx, cy, .. },
                ..
            }) = world.obstacles.get(m.obstacle)
            else {
                continue;
            };
            if (cx - position[0]).hypot(cy - position[1]) > self.range {
                continue;
            }
            let mut n = |s: f64| self.rng.normal() * s;
            // What the walker does (a tracker sees a waiting walker stand), not
            // what it means to do.
            let v = m.current_velocity();
            out.push(Walker {
                id: id as u32,
                position: [cx + n(self.position_noise), cy + n(self.position_noise)],
                velocity: [v[0] + n(self.velocity_noise), v[1] + n(self.velocity_noise)],
            });
        }
        out
    }
}

/// What the robot's sensors and estimators give SELFI at one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensed {
    /// The depth scan, [`BEAMS`] beams left to right (m, in `(0, SCAN_RANGE]`).
    pub scan: Vec<f32>,
    /// Tracked walkers (world frame).
    pub walkers: Vec<Walker>,
    /// Pose (x, y, yaw) as the flight controller estimates it.
    pub pose: [f64; 3],
    /// Velocity (forward, left; m/s) in the heading frame, as the flight controller estimates it.
    pub velocity: [f32; 2],
}

/// Where SELFI's inputs come from in the twin: the twin's observation (and
/// its world, for the truth stand-ins) in, what the robot would know out.
pub trait Senses {
    /// A new flight begins (trackers forget their tracks).
    fn reset(&mut self);
    /// The inputs at observation `obs`, `dt` s after the last call.
    fn sense(
        &mut self,
        obs: &Observation,
        world: Option<&sim::world::World>,
        dt: f64,
    ) -> Result<Sensed, RlError>;
}

/// Builds the [`Senses`] of one run (each flight of an experiment gets its own).
pub trait MakeSenses: Sync {
    /// Whether the twin must render the stereo pair for them.
    fn renders(&self) -> bool;
    /// The senses of run `seed`.
    fn make(&self, cfg: &SelfiConfig, seed: u64) -> Result<Box<dyn Senses>, RlError>;
    /// What they are, for logs and run files.
    fn describe(&self) -> String;
}

/// The twin's truth with noise (`sensing = "truth"`): the ray-cast scan with
/// `scan_noise`, the [`Tracker`] stand-in, the pose and velocity the twin has.
/// For comparison and for the crate's own tests; a robot has no such inputs.
pub struct TruthSenses {
    noise: Rng,
    scan_noise: f64,
    tracker: Tracker,
}

impl TruthSenses {
    /// For run `seed`.
    pub fn new(cfg: &SelfiConfig, seed: u64) -> TruthSenses {
        TruthSenses {
            noise: Rng::new(seed ^ 0x5ca7),
            scan_noise: cfg.nav.scan_noise,
            tracker: Tracker::new(cfg, seed),
        }
    }
}

impl Senses for TruthSenses {
    fn reset(&mut self) {}

    fn sense(
        &mut self,
        o: &Observation,
        world: Option<&sim::world::World>,
        _dt: f64,
    ) -> Result<Sensed, RlError> {
        let s = self.scan_noise;
        let scan = o
            .scan
            .iter()
            .map(|&d| (d + (self.noise.normal() * s) as f32).clamp(0.05, SCAN_RANGE))
            .collect();
        let pose = [
            o.pose.position[0],
            o.pose.position[1],
            f64::from(o.attitude[2]),
        ];
        let walkers = match world {
            Some(w) => self.tracker.track(w, [pose[0], pose[1]]),
            None => Vec::new(),
        };
        Ok(Sensed {
            scan,
            walkers,
            pose,
            velocity: [o.velocity[0], o.velocity[1]],
        })
    }
}

/// Makes [`TruthSenses`].
pub struct TruthSensing;

impl MakeSenses for TruthSensing {
    fn renders(&self) -> bool {
        false
    }

    fn make(&self, cfg: &SelfiConfig, seed: u64) -> Result<Box<dyn Senses>, RlError> {
        Ok(Box::new(TruthSenses::new(cfg, seed)))
    }

    fn describe(&self) -> String {
        "truth: the twin's ray-cast scan and walkers with noise".into()
    }
}

/// The task: rooms drawn per episode, walkers, the supervisor.
pub struct NavEnv {
    cfg: SelfiConfig,
    env: Env,
    seed: u64,
    episode: u64,
    obs: Option<Observation>,
    /// What the robot knows at `obs`.
    sensed: Option<Sensed>,
    prev_scan: Option<Vec<f32>>,
    goal: [f64; 2],
    in_takeover: bool,
    last_distance: f64,
    senses: Box<dyn Senses>,
}

/// The room of episode `episode` of run `seed` (the same for every arm).
pub fn episode_context(cfg: &SelfiConfig, seed: u64, episode: u64) -> Context {
    let mut rng = Rng::new(sim::batch::episode_seed(seed, 7, episode));
    let n = &cfg.nav;
    Context {
        name: format!("selfi-{seed}-{episode}"),
        room_length: rng.range(n.room_length[0], n.room_length[1] + 1e-9),
        room_width: rng.range(n.room_width[0], n.room_width[1] + 1e-9),
        room_height: 3.0,
        obstacle_count: n.obstacles[0]
            + rng.below(u64::from(n.obstacles[1] - n.obstacles[0]) + 1) as u32,
        obstacle_size: 0.6,
        wind_mean: 0.0,
        wind_gust: 0.0,
        pixel_noise: 0.0,
        ..Context::default()
    }
}

impl NavEnv {
    /// The task for run `seed`, sensed by what `senses` makes.
    pub fn new(cfg: &SelfiConfig, seed: u64, senses: &dyn MakeSenses) -> Result<NavEnv, RlError> {
        let env = Env::new(EnvConfig {
            render: senses.renders(),
            task: Task::GoalReaching,
            control_hz: cfg.plan.control_hz,
            max_steps: cfg.nav.max_steps,
            scan_beams: BEAMS,
            scan_range: f64::from(SCAN_RANGE),
            walkers: Walkers {
                count: cfg.nav.walkers,
                speed: cfg.nav.walker_speed,
                radius: 0.25,
                yield_distance: cfg.nav.walker_yield,
            },
            ..EnvConfig::default()
        })
        .map_err(|e| RlError::Config(format!("SELFI task: {e}")))?;
        Ok(NavEnv {
            cfg: cfg.clone(),
            env,
            seed,
            episode: 0,
            obs: None,
            sensed: None,
            prev_scan: None,
            goal: [0.0; 2],
            in_takeover: false,
            last_distance: 0.0,
            senses: senses.make(cfg, seed)?,
        })
    }

    /// Episodes started so far.
    pub fn episodes(&self) -> u64 {
        self.episode
    }

    /// The world of the running episode (for telemetry).
    pub fn world(&self) -> Option<&sim::world::World> {
        self.env.world()
    }

    fn sense(&mut self, o: &Observation) -> Result<Sensed, RlError> {
        let s = self.senses.sense(o, self.env.world(), self.cfg.plan.dt())?;
        if s.scan.len() != BEAMS {
            return Err(RlError::Config(format!(
                "the senses gave a scan of {} beams, SELFI needs {BEAMS}",
                s.scan.len()
            )));
        }
        Ok(s)
    }

    /// Start the next episode; returns its first observation.
    pub fn reset(&mut self) -> Result<Vec<f32>, RlError> {
        let ctx = episode_context(&self.cfg, self.seed, self.episode);
        let obs = self
            .env
            .reset(&ctx, sim::batch::episode_seed(self.seed, 8, self.episode))
            .map_err(|e| RlError::Instance(format!("{}: {e}", ctx.name)))?;
        self.episode += 1;
        let p = obs.pose.position;
        let yaw = f64::from(obs.attitude[2]);
        let (s, c) = yaw.sin_cos();
        let g = obs.goal;
        self.goal = [
            p[0] + c * f64::from(g[0]) - s * f64::from(g[1]),
            p[1] + s * f64::from(g[0]) + c * f64::from(g[1]),
        ];
        self.senses.reset();
        self.sensed = Some(self.sense(&obs)?);
        self.prev_scan = None;
        self.in_takeover = false;
        self.last_distance = 0.0;
        self.obs = Some(obs);
        self.observation()
    }

    /// The current observation vector.
    pub fn observation(&self) -> Result<Vec<f32>, RlError> {
        let s = self
            .sensed
            .as_ref()
            .ok_or_else(|| RlError::Config("SELFI task stepped before reset".into()))?;
        let feats = scan_features(&s.scan, self.prev_scan.as_deref())?;
        Ok(observation(
            &feats,
            s.velocity,
            goal_in_heading(s.pose, self.goal),
            &track_features(s.pose, &s.walkers),
        ))
    }

    /// The twin's own observation now (truth: for evaluation and tests, never
    /// the policy's input); `None` before the first reset.
    pub fn twin_observation(&self) -> Option<&Observation> {
        self.obs.as_ref()
    }

    /// What the robot knows now (scan, tracks, estimated pose and velocity);
    /// `None` before the first reset.
    pub fn sensed(&self) -> Option<&Sensed> {
        self.sensed.as_ref()
    }

    /// The vehicle's true pose now (x, y in m, yaw in rad) and the goal (x,
    /// y), in the world frame, for evaluation; `None` before the first reset.
    pub fn pose_and_goal(&self) -> Option<([f64; 3], [f64; 2])> {
        self.obs.as_ref().map(|o| (self.pose(o), self.goal))
    }

    fn pose(&self, o: &Observation) -> [f64; 3] {
        [
            o.pose.position[0],
            o.pose.position[1],
            f64::from(o.attitude[2]),
        ]
    }

    /// The supervisor's rule on the current scan and estimated speed (see [`supervise`]).
    pub fn supervise(&self, command: (f64, f64)) -> Option<(f64, f64)> {
        let s = self.sensed.as_ref()?;
        supervise(&self.cfg, &s.scan, f64::from(s.velocity[0]), command)
    }

    /// Execute the normalised command `a` (or the supervisor's, when it takes over).
    pub fn step(&mut self, a: [f32; 2]) -> Result<NavStep, RlError> {
        let o = self
            .obs
            .clone()
            .ok_or_else(|| RlError::Config("SELFI task stepped before reset".into()))?;
        if !(a[0].is_finite() && a[1].is_finite()) {
            return Err(RlError::Action(format!(
                "SELFI command {a:?} is not finite"
            )));
        }
        let proposed = self.cfg.plan.command(a);
        let takeover = self.supervise(proposed);
        let (forward, yaw_rate) = takeover.unwrap_or(proposed);
        let started = takeover.is_some() && !self.in_takeover;
        self.in_takeover = takeover.is_some();
        let up = ((self.cfg.plan.altitude - o.pose.position[2]) * 1.5).clamp(-0.8, 0.8);
        let r = self
            .env
            .step(&Action::Velocity {
                forward,
                left: 0.0,
                up,
                yaw_rate,
            })
            .map_err(|e| RlError::Action(e.to_string()))?;
        let pose0 = self.pose(&o);
        let d0 = ((self.goal[0] - pose0[0]).powi(2) + (self.goal[1] - pose0[1]).powi(2)).sqrt();
        let pose1 = self.pose(&r.obs);
        let d1 = ((self.goal[0] - pose1[0]).powi(2) + (self.goal[1] - pose1[1]).powi(2)).sqrt();
        let w = &self.cfg.reward;
        let reward = RewardParts {
            progress: w.progress * (d0 - d1),
            success: if r.info.success { w.success } else { 0.0 },
            collision: if r.info.collision { w.collision } else { 0.0 },
            intervention: if started { w.intervention } else { 0.0 },
            proximity: w.proximity
                * (1.0 - r.info.walker_clearance / w.personal_space).clamp(0.0, 1.0),
        };
        // What the robot knows after the step, before anything is replaced: a
        // failed sensor leaves the last frame's inputs in place.
        let next = self.sense(&r.obs)?;
        let sensed = self
            .sensed
            .replace(next)
            .ok_or_else(|| RlError::Config("SELFI task stepped before reset".into()))?;
        let frame = Frame {
            scan: sensed.scan.clone(),
            velocity: sensed.velocity,
            pose: sensed.pose,
            goal: self.goal,
            command: [forward as f32, yaw_rate as f32],
            proposed: [proposed.0 as f32, proposed.1 as f32],
            intervention: takeover.is_some(),
            collision: r.info.collision,
            success: r.info.success,
            walkers: sensed.walkers,
        };
        let distance = r.info.distance - self.last_distance;
        self.last_distance = r.info.distance;
        self.prev_scan = Some(sensed.scan);
        self.obs = Some(r.obs);
        Ok(NavStep {
            frame,
            next_obs: self.observation()?,
            reward,
            terminated: r.terminated,
            truncated: r.truncated,
            intervention_started: started,
            distance,
            walker_clearance: r.info.walker_clearance,
        })
    }

    /// The last frame of an episode (after its final step), for recordings.
    pub fn final_frame(&self) -> Option<Frame> {
        let s = self.sensed.as_ref()?;
        Some(Frame {
            scan: s.scan.clone(),
            velocity: s.velocity,
            pose: s.pose,
            goal: self.goal,
            command: [0.0, 0.0],
            proposed: [0.0, 0.0],
            intervention: false,
            collision: false,
            success: false,
            walkers: s.walkers.clone(),
        })
    }
}

/// The behaviour policy that flies the offline recordings: heads for the goal
/// with random speed and Ornstein–Uhlenbeck noise on both commands, so that
/// the logs cover the command space (the supervisor keeps it out of walls).
pub struct Wanderer {
    rng: Rng,
    noise: [f64; 2],
}

impl Wanderer {
    /// Drawn from `seed`.
    pub fn new(seed: u64) -> Wanderer {
        Wanderer {
            rng: Rng::new(seed ^ 0x3a4d),
            noise: [0.0; 2],
        }
    }

    /// A normalised command for observation `obs`.
    pub fn act(&mut self, obs: &[f32]) -> [f32; 2] {
        let (_, goal) = super::data::velocity_goal(obs);
        let bearing = f64::from(goal[1]).atan2(f64::from(goal[0]));
        for n in &mut self.noise {
            *n += -0.3 * *n + 0.45 * self.rng.normal();
        }
        [
            (0.3 + self.noise[0]).clamp(-1.0, 1.0) as f32,
            (1.2 * bearing + self.noise[1]).clamp(-1.0, 1.0) as f32,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisor_takes_over_before_walls_and_counts_once() {
        let cfg = SelfiConfig {
            nav: super::super::NavConfig {
                obstacles: [0, 0],
                walkers: 0,
                ..Default::default()
            },
            ..SelfiConfig::default()
        };
        let mut env = NavEnv::new(&cfg, 1, &TruthSensing).unwrap();
        env.reset().unwrap();
        // Full speed straight ahead, turned towards the side wall: sooner or later
        // the supervisor must step in, once per approach, and nothing collides.
        let (mut started, mut steps, mut collided) = (0, 0, false);
        for _ in 0..150 {
            let s = env.step([1.0, 0.6]).unwrap();
            started += usize::from(s.intervention_started);
            steps += usize::from(s.frame.intervention);
            collided |= s.frame.collision;
            if s.terminated || s.truncated {
                break;
            }
        }
        assert!(started >= 1, "no intervention in 150 steps");
        assert!(steps >= started);
        assert!(!collided, "the supervisor let it hit a wall");
    }

    #[test]
    fn scans_resample_to_the_model_width() {
        let wide: Vec<f32> = (0..160)
            .map(|i| if i == 80 { 0.7 } else { f32::NAN })
            .collect();
        let s = resample_scan(&wide);
        assert_eq!(s.len(), BEAMS);
        assert_eq!(s[16], 0.7);
        assert_eq!(s[0], SCAN_RANGE);
        let cfg = SelfiConfig::default();
        assert!(supervise(&cfg, &s, 0.0, (1.5, 0.0)).is_some());
        assert!(supervise(&cfg, &[5.0; BEAMS], 0.0, (1.5, 0.0)).is_none());
    }

    #[test]
    fn same_seed_same_rooms_and_walkers_move() {
        let cfg = SelfiConfig::default();
        let mut a = NavEnv::new(&cfg, 4, &TruthSensing).unwrap();
        let mut b = NavEnv::new(&cfg, 4, &TruthSensing).unwrap();
        assert_eq!(a.reset().unwrap(), b.reset().unwrap());
        let w0 = a.world().unwrap().obstacles.clone();
        let s = a.step([0.0, 0.0]).unwrap();
        assert_eq!(b.step([0.0, 0.0]).unwrap().next_obs, s.next_obs);
        let w1 = &a.world().unwrap().obstacles;
        let moved = w0.iter().zip(w1).filter(|(x, y)| x != y).count();
        assert_eq!(moved, cfg.nav.walkers, "every walker moves, nothing else");
        assert!(s.walker_clearance.is_finite());
        assert!(a.step([f32::NAN, 0.0]).is_err());
        // The pose and goal in the world frame agree with the observation's goal
        // distance (observation: distance / 10).
        assert!(
            NavEnv::new(&cfg, 4, &TruthSensing)
                .unwrap()
                .pose_and_goal()
                .is_none()
        );
        let (pose, goal) = a.pose_and_goal().unwrap();
        let d = ((goal[0] - pose[0]).powi(2) + (goal[1] - pose[1]).powi(2)).sqrt();
        let obs = a.observation().unwrap();
        assert!((obs[2 * BEAMS + 2] as f64 * 10.0 - d).abs() < 1e-3, "{d}");
    }

    #[test]
    fn the_tracker_follows_walkers_in_range_by_id() {
        let cfg = SelfiConfig::default();
        let mut env = NavEnv::new(&cfg, 4, &TruthSensing).unwrap();
        env.reset().unwrap();
        let (mut tracked, mut followed) = (0, 0);
        let mut last: Vec<Walker> = Vec::new();
        for _ in 0..40 {
            // Hover (forward 0), so the walkers come and go around the robot.
            let s = env.step([-1.0, 0.0]).unwrap();
            let f = &s.frame;
            let mut ids: Vec<u32> = f.walkers.iter().map(|w| w.id).collect();
            ids.dedup();
            assert_eq!(ids.len(), f.walkers.len(), "one track per walker");
            for w in &f.walkers {
                assert!((w.id as usize) < cfg.nav.walkers);
                let d = (w.position[0] - f.pose[0]).hypot(w.position[1] - f.pose[1]);
                assert!(d <= cfg.nav.track_range + 0.3, "tracked at {d} m");
                tracked += 1;
                // The same id one frame on is the same walker, one step further.
                if let Some(p) = last.iter().find(|p| p.id == w.id) {
                    let step = (w.position[0] - p.position[0]).hypot(w.position[1] - p.position[1]);
                    assert!(step < cfg.nav.walker_speed * cfg.plan.dt() + 0.3, "{step}");
                    followed += 1;
                }
            }
            last = f.walkers.clone();
        }
        assert!(
            tracked > 20 && followed > 10,
            "{tracked} tracks, {followed} followed"
        );
        // A frame's observation holds its tracks: seen flag 1 with a walker in range.
        let f = env.final_frame().unwrap();
        let obs = env.observation().unwrap();
        let at = super::super::TRACKS_AT;
        assert_eq!(obs[at], if f.walkers.is_empty() { 0.0 } else { 1.0 });
    }

    #[test]
    fn the_tracker_sees_a_waiting_walker_stand() {
        let cfg = SelfiConfig::default();
        let ctx = episode_context(&cfg, 0, 0);
        let mut w = sim::world::World::generate(&ctx, 3);
        w.add_walkers(1, 0.8, 0.25, 5);
        w.movers[0].velocity = [0.0, 0.8];
        let sim::world::Shape::Cylinder { cx, cy, .. } = w.obstacles[w.movers[0].obstacle].shape
        else {
            panic!("a walker is a cylinder");
        };
        let mut t = Tracker::new(&cfg, 1);
        let speed = |t: &mut Tracker, w: &sim::world::World| {
            let seen = t.track(w, [cx - 1.0, cy]);
            assert_eq!(seen.len(), 1);
            seen[0].velocity[0].hypot(seen[0].velocity[1])
        };
        assert!((speed(&mut t, &w) - 0.8).abs() < 0.4);
        w.movers[0].waiting = true;
        assert!(speed(&mut t, &w) < 0.4, "a waiting walker stands");
    }
}
