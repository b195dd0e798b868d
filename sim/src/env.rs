//! Gym-style environment over the twin: `reset(context, seed)` and `step(action)`.
//!
//! Two tasks share one vehicle, world and sensor stack:
//! - **forward flight**: fly down the room (+x) without hitting anything; reward is
//!   progress along x, −10 on a collision, +10 on reaching the far end.
//! - **goal reaching**: reach a goal point drawn in free space; reward is the
//!   decrease of distance to the goal, −10 on a collision, +10 within 0.5 m.
//!
//! Actions are flight-controller setpoints at the control rate (default 30 Hz);
//! physics runs at a fixed, higher rate (default 240 Hz) inside each step.
//!
//! **Action bounds** (see [`ActionLimits`]): values outside are clamped and
//! `info.action_clamped` is set; NaN or infinite values are rejected with
//! [`EnvError::InvalidAction`] and the state is left untouched.

use crate::camera::StereoRig;
use crate::context::{Context, ContextError};
use crate::ground::{GroundParams, GroundRobot};
use crate::quadrotor::{QuadParams, Quadrotor, Setpoint};
use crate::render::{CameraPose, Renderer, StereoFrame};
use crate::rng::Rng;
use crate::sensors::{Imu, ImuSample, Wind};
use crate::world::World;
use nalgebra::{UnitQuaternion, Vector3};
use std::sync::Arc;
use thiserror::Error;

/// What the episode asks of the vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Task {
    /// Fly down the room without collisions.
    #[default]
    ForwardFlight,
    /// Reach a goal point.
    GoalReaching,
}

/// Which vehicle flies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VehicleKind {
    /// The quadrotor.
    #[default]
    Quadrotor,
    /// The differential-drive ground robot (ignores vertical and lateral commands).
    Ground,
}

/// A control action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Velocity in the heading frame (m/s: forward, left, up) and yaw rate (rad/s).
    Velocity {
        forward: f64,
        left: f64,
        up: f64,
        yaw_rate: f64,
    },
    /// Roll, pitch (rad), yaw rate (rad/s), collective thrust (fraction of maximum).
    Attitude {
        roll: f64,
        pitch: f64,
        yaw_rate: f64,
        thrust: f64,
    },
}

impl Action {
    fn values(&self) -> [f64; 4] {
        match *self {
            Action::Velocity {
                forward,
                left,
                up,
                yaw_rate,
            } => [forward, left, up, yaw_rate],
            Action::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => [roll, pitch, yaw_rate, thrust],
        }
    }
}

/// Bounds of actions; out-of-range values are clamped to these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionLimits {
    /// |forward| and |left| speed (m/s).
    pub horizontal_speed: f64,
    /// |up| speed (m/s).
    pub vertical_speed: f64,
    /// |yaw rate| (rad/s).
    pub yaw_rate: f64,
    /// |roll| and |pitch| (rad).
    pub tilt: f64,
}

impl Default for ActionLimits {
    fn default() -> Self {
        Self {
            horizontal_speed: 3.0,
            vertical_speed: 1.5,
            yaw_rate: 2.0,
            tilt: 0.6,
        }
    }
}

/// Why a reset or step was refused.
#[derive(Debug, Error, PartialEq)]
pub enum EnvError {
    /// The context is invalid.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// An action component is NaN or infinite; the state was not changed.
    #[error(
        "action {action:?} has a non-finite component; it was rejected and the state left unchanged"
    )]
    InvalidAction { action: Action },
    /// `step` was called before `reset`.
    #[error("step called before reset")]
    NotReset,
    /// The configuration is inconsistent.
    #[error("invalid environment config: {0}")]
    Config(String),
}

/// Environment settings that are not part of the context.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    /// The task.
    pub task: Task,
    /// The vehicle.
    pub vehicle: VehicleKind,
    /// Physics rate (Hz), at least 200.
    pub physics_hz: f64,
    /// Control and camera rate (Hz).
    pub control_hz: f64,
    /// Steps before an episode is truncated.
    pub max_steps: u32,
    /// Render the stereo pair into every observation.
    pub render: bool,
    /// The stereo rig.
    pub rig: StereoRig,
    /// Beams of the ground-truth depth scan across the camera's horizontal field of view.
    pub scan_beams: usize,
    /// Largest range of the scan (m); farther surfaces read this.
    pub scan_range: f64,
    /// Radius of the vehicle for collisions (m).
    pub collision_radius: f64,
    /// Action bounds.
    pub limits: ActionLimits,
    /// People-sized poles walking across the room (the moving obstacles).
    pub walkers: Walkers,
    /// A blank (textureless) wall across the whole room at this distance
    /// along it (m), added at every reset ([`World::add_blank_wall`]): what
    /// stereo matching cannot see. `None` in every ordinary room.
    pub blank_wall: Option<f64>,
}

/// Moving obstacles added to every room at reset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Walkers {
    /// How many.
    pub count: usize,
    /// Walking speed (m/s); each walker draws 70–100 % of it.
    pub speed: f64,
    /// Radius (m).
    pub radius: f64,
    /// A walker that would come closer than this to the vehicle's surface
    /// (m) waits instead, as people stop for a robot in their way; 0: walkers
    /// walk on regardless.
    pub yield_distance: f64,
}

impl Default for Walkers {
    fn default() -> Self {
        Self {
            count: 0,
            speed: 0.8,
            radius: 0.25,
            yield_distance: 0.0,
        }
    }
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            task: Task::ForwardFlight,
            vehicle: VehicleKind::Quadrotor,
            physics_hz: 240.0,
            control_hz: 30.0,
            max_steps: 900,
            render: false,
            rig: StereoRig::default(),
            scan_beams: 32,
            scan_range: 10.0,
            collision_radius: 0.15,
            limits: ActionLimits::default(),
            walkers: Walkers::default(),
            blank_wall: None,
        }
    }
}

/// Ground-truth pose of the vehicle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Position in the world frame (m).
    pub position: [f64; 3],
    /// Body-to-world attitude as a quaternion (w, x, y, z).
    pub attitude: [f64; 4],
}

/// What the agent sees after a reset or step.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Depth scan (m) across the camera's field of view, left to right, in the horizontal plane.
    pub scan: Vec<f32>,
    /// Velocity in the heading frame (m/s).
    pub velocity: [f32; 3],
    /// Goal relative to the vehicle in the heading frame (m); for forward flight, the far end of the room.
    pub goal: [f32; 3],
    /// Roll, pitch, yaw (rad).
    pub attitude: [f32; 3],
    /// IMU reading.
    pub imu: ImuSample,
    /// The context, normalised to [0, 1] per field.
    pub context: Vec<f32>,
    /// Ground-truth pose.
    pub pose: Pose,
    /// Stereo pair with ground truth, when rendering is on.
    pub stereo: Option<StereoFrame>,
}

impl Observation {
    /// Flat feature vector for learners: scan / range, velocity / 3, goal / 10,
    /// roll, pitch, then the context.
    pub fn vector(&self, scan_range: f32) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.scan.len() + 8 + self.context.len());
        v.extend(self.scan.iter().map(|s| s / scan_range));
        v.extend(self.velocity.iter().map(|x| x / 3.0));
        v.extend(self.goal.iter().map(|x| (x / 10.0).clamp(-3.0, 3.0)));
        v.push(self.attitude[0]);
        v.push(self.attitude[1]);
        v.extend(&self.context);
        v
    }
}

/// Extra facts about a step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Info {
    /// The vehicle touched a surface this step.
    pub collision: bool,
    /// The task was completed this step.
    pub success: bool,
    /// The action was outside its bounds and was clamped.
    pub action_clamped: bool,
    /// Simulated time since reset (s).
    pub time: f64,
    /// Distance to the nearest surface (m).
    pub clearance: f64,
    /// Distance flown since reset (m).
    pub distance: f64,
    /// Steps since reset.
    pub steps: u32,
    /// Distance to the nearest walker's surface (m; infinite without walkers).
    pub walker_clearance: f64,
}

/// Result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// Observation after the step.
    pub obs: Observation,
    /// Reward of the step.
    pub reward: f64,
    /// The episode ended (collision or success).
    pub terminated: bool,
    /// The episode hit its step limit.
    pub truncated: bool,
    /// Extra facts.
    pub info: Info,
}

#[derive(Debug, Clone)]
enum Vehicle {
    Quad(Box<Quadrotor>),
    Ground(GroundRobot),
}

#[derive(Debug, Clone)]
struct Episode {
    world: World,
    vehicle: Vehicle,
    wind: Wind,
    imu: Imu,
    goal: [f64; 3],
    prev_progress: f64,
    steps: u32,
    time: f64,
    distance: f64,
    noise_seed: u64,
    context_vec: Vec<f32>,
    last_imu: ImuSample,
}

/// One environment instance.
#[derive(Debug, Clone)]
pub struct Env {
    config: EnvConfig,
    renderer: Option<Arc<Renderer>>,
    episode: Option<Episode>,
    substeps: usize,
}

/// Reward for a collision.
pub const COLLISION_REWARD: f64 = -10.0;
/// Reward for completing the task.
pub const SUCCESS_REWARD: f64 = 10.0;
/// Goal radius for the goal-reaching task (m).
pub const GOAL_RADIUS: f64 = 0.5;

fn finite(v: [f64; 4]) -> bool {
    v.iter().all(|x| x.is_finite())
}

impl Env {
    /// A new environment; rendering (if configured) uses its own renderer.
    pub fn new(config: EnvConfig) -> Result<Self, EnvError> {
        let renderer = config
            .render
            .then(|| Arc::new(Renderer::new(config.rig, 1)));
        Self::with_renderer(config, renderer)
    }

    /// A new environment that shares `renderer` with others (batches).
    pub fn with_renderer(
        config: EnvConfig,
        renderer: Option<Arc<Renderer>>,
    ) -> Result<Self, EnvError> {
        if !(config.physics_hz >= 200.0 && config.physics_hz.is_finite()) {
            return Err(EnvError::Config(format!(
                "physics_hz = {} must be at least 200",
                config.physics_hz
            )));
        }
        if !(config.control_hz > 0.0 && config.control_hz <= config.physics_hz) {
            return Err(EnvError::Config(format!(
                "control_hz = {} must be in (0, physics_hz = {}]",
                config.control_hz, config.physics_hz
            )));
        }
        if config.scan_beams == 0 {
            return Err(EnvError::Config("scan_beams must be at least 1".into()));
        }
        let substeps = (config.physics_hz / config.control_hz).round().max(1.0) as usize;
        let renderer = if config.render {
            renderer.or_else(|| Some(Arc::new(Renderer::new(config.rig, 1))))
        } else {
            None
        };
        Ok(Self {
            config,
            renderer,
            episode: None,
            substeps,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    /// Physics steps per control step.
    pub fn substeps(&self) -> usize {
        self.substeps
    }

    /// The current world, after a reset.
    pub fn world(&self) -> Option<&World> {
        self.episode.as_ref().map(|e| &e.world)
    }

    /// Start an episode in `context`; the same (context, seed) gives the same episode.
    pub fn reset(&mut self, context: &Context, seed: u64) -> Result<Observation, EnvError> {
        context.validate()?;
        let mut rng = Rng::new(seed);
        let mut world = World::generate(context, rng.next_u64());
        if let Some(x) = self.config.blank_wall {
            world.add_blank_wall(x);
        }
        let walkers = self.config.walkers;
        if walkers.count > 0 {
            world.add_walkers(
                walkers.count,
                walkers.speed,
                walkers.radius,
                rng.fork(7).next_u64(),
            );
        }
        let yaw = rng.range(-0.3, 0.3);
        let mut start = world.start;
        start[1] += rng.range(-0.3, 0.3) * (context.room_width / 4.0).min(1.0);
        let vehicle = match self.config.vehicle {
            VehicleKind::Quadrotor => Vehicle::Quad(Box::new(Quadrotor::new(
                QuadParams::for_mass(context.mass, context.drag),
                start,
                yaw,
            ))),
            VehicleKind::Ground => Vehicle::Ground(GroundRobot::new(
                GroundParams::default(),
                [start[0], start[1]],
                yaw,
            )),
        };
        let goal = match self.config.task {
            Task::ForwardFlight => [world.size[0], start[1], start[2]],
            Task::GoalReaching => {
                let mut g = [world.size[0] * 0.75, 0.0, start[2]];
                for _ in 0..1000 {
                    let cand = [
                        rng.range(world.size[0] * 0.4, world.size[0] - 0.6),
                        rng.range(-world.size[1] / 2.0 + 0.6, world.size[1] / 2.0 - 0.6),
                        start[2],
                    ];
                    if world.clearance(cand) > 0.6 {
                        g = cand;
                        break;
                    }
                }
                g
            }
        };
        let wind = Wind::new(context.wind_mean, context.wind_gust, rng.next_u64());
        let imu = Imu::new(context.imu_noise, rng.next_u64());
        let mut ep = Episode {
            world,
            vehicle,
            wind,
            imu,
            goal,
            prev_progress: 0.0,
            steps: 0,
            time: 0.0,
            distance: 0.0,
            noise_seed: rng.next_u64(),
            context_vec: context.to_vector(),
            last_imu: ImuSample::default(),
        };
        ep.prev_progress = self.progress(&ep);
        let dt = 1.0 / self.config.control_hz;
        ep.last_imu = Self::read_imu(&mut ep, dt);
        let obs = self.observe(&ep);
        self.episode = Some(ep);
        Ok(obs)
    }

    fn position(ep: &Episode, _cfg: &EnvConfig) -> [f64; 3] {
        match &ep.vehicle {
            Vehicle::Quad(q) => q.state.position.into(),
            Vehicle::Ground(g) => [g.position[0], g.position[1], g.params.camera_height],
        }
    }

    fn attitude(ep: &Episode) -> UnitQuaternion<f64> {
        match &ep.vehicle {
            Vehicle::Quad(q) => q.state.attitude,
            Vehicle::Ground(g) => UnitQuaternion::from_euler_angles(0.0, 0.0, g.yaw),
        }
    }

    fn progress(&self, ep: &Episode) -> f64 {
        let p = Self::position(ep, &self.config);
        match self.config.task {
            Task::ForwardFlight => p[0],
            Task::GoalReaching => -((p[0] - ep.goal[0]).powi(2)
                + (p[1] - ep.goal[1]).powi(2)
                + (p[2] - ep.goal[2]).powi(2))
            .sqrt(),
        }
    }

    fn read_imu(ep: &mut Episode, dt: f64) -> ImuSample {
        match &ep.vehicle {
            Vehicle::Quad(q) => {
                let s = q.state;
                ep.imu.read(s.acceleration, &s.attitude, s.rates, dt)
            }
            Vehicle::Ground(g) => {
                let (v, w) = g.twist();
                let att = UnitQuaternion::from_euler_angles(0.0, 0.0, g.yaw);
                let centripetal = Vector3::new(-(g.yaw.sin()) * v * w, g.yaw.cos() * v * w, 0.0);
                ep.imu
                    .read(centripetal, &att, Vector3::new(0.0, 0.0, w), dt)
            }
        }
    }

    fn clearance(&self, ep: &Episode) -> f64 {
        let p = Self::position(ep, &self.config);
        match ep.vehicle {
            Vehicle::Quad(_) => ep.world.clearance(p),
            Vehicle::Ground(_) => ep.world.clearance_above_floor(p),
        }
    }

    fn observe(&self, ep: &Episode) -> Observation {
        let cfg = &self.config;
        let p = Self::position(ep, cfg);
        let att = Self::attitude(ep);
        let (roll, pitch, yaw) = att.euler_angles();
        let (sy, cy) = yaw.sin_cos();
        let to_heading = |v: [f64; 3]| {
            [
                (cy * v[0] + sy * v[1]) as f32,
                (-sy * v[0] + cy * v[1]) as f32,
                v[2] as f32,
            ]
        };
        let vel = match &ep.vehicle {
            Vehicle::Quad(q) => q.state.velocity.into(),
            Vehicle::Ground(g) => {
                let (v, _) = g.twist();
                [v * cy, v * sy, 0.0]
            }
        };
        let goal = to_heading([ep.goal[0] - p[0], ep.goal[1] - p[1], ep.goal[2] - p[2]]);
        let k = &cfg.rig.intrinsics;
        let half_fov = (k.width as f64 / 2.0 / k.fx).atan();
        let n = cfg.scan_beams;
        let scan = (0..n)
            .map(|i| {
                // Left to right, like image columns.
                let a = if n == 1 {
                    0.0
                } else {
                    half_fov - 2.0 * half_fov * i as f64 / (n - 1) as f64
                };
                let (sa, ca) = (yaw + a).sin_cos();
                let hit = ep.world.raycast(p, [ca, sa, 0.0]);
                hit.t.min(cfg.scan_range) as f32
            })
            .collect();
        let stereo = self.renderer.as_ref().map(|r| {
            let mut frame = StereoFrame::default();
            let pose =
                CameraPose::from_body(p, (*att.to_rotation_matrix().matrix()).transpose().into());
            r.render(
                &ep.world,
                &pose,
                ep.noise_seed.wrapping_add(ep.steps as u64),
                &mut frame,
            );
            frame
        });
        Observation {
            scan,
            velocity: to_heading(vel),
            goal,
            attitude: [roll as f32, pitch as f32, yaw as f32],
            imu: ep.last_imu,
            context: ep.context_vec.clone(),
            pose: Pose {
                position: p,
                attitude: [att.w, att.i, att.j, att.k],
            },
            stereo,
        }
    }

    /// Clamp an action to the limits; returns it and whether anything changed.
    pub fn clamp_action(&self, action: &Action) -> (Action, bool) {
        let l = &self.config.limits;
        let h = l.horizontal_speed;
        let c = match *action {
            Action::Velocity {
                forward,
                left,
                up,
                yaw_rate,
            } => Action::Velocity {
                forward: forward.clamp(-h, h),
                left: left.clamp(-h, h),
                up: up.clamp(-l.vertical_speed, l.vertical_speed),
                yaw_rate: yaw_rate.clamp(-l.yaw_rate, l.yaw_rate),
            },
            Action::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => Action::Attitude {
                roll: roll.clamp(-l.tilt, l.tilt),
                pitch: pitch.clamp(-l.tilt, l.tilt),
                yaw_rate: yaw_rate.clamp(-l.yaw_rate, l.yaw_rate),
                thrust: thrust.clamp(0.0, 1.0),
            },
        };
        (c, c != *action)
    }

    /// Apply `action` for one control period.
    pub fn step(&mut self, action: &Action) -> Result<StepResult, EnvError> {
        if !finite(action.values()) {
            return Err(EnvError::InvalidAction { action: *action });
        }
        let (action, clamped) = self.clamp_action(action);
        let mut ep = self.episode.take().ok_or(EnvError::NotReset)?;
        let dt_ctrl = 1.0 / self.config.control_hz;
        let dt = dt_ctrl / self.substeps as f64;
        let p0 = Self::position(&ep, &self.config);
        ep.wind.advance(dt_ctrl);
        self.move_walkers(&mut ep, p0, dt_ctrl);
        let wind = ep.wind.velocity();
        let collision = advance(
            &mut ep,
            &action,
            self.substeps,
            dt,
            wind,
            self.config.collision_radius,
            true,
        );
        ep.steps += 1;
        ep.time += dt_ctrl;
        let p1 = Self::position(&ep, &self.config);
        ep.distance +=
            ((p1[0] - p0[0]).powi(2) + (p1[1] - p0[1]).powi(2) + (p1[2] - p0[2]).powi(2)).sqrt();
        ep.last_imu = Self::read_imu(&mut ep, dt_ctrl);
        let progress = self.progress(&ep);
        let mut reward = progress - ep.prev_progress;
        ep.prev_progress = progress;
        let success = !collision
            && match self.config.task {
                Task::ForwardFlight => p1[0] >= ep.world.size[0] - 1.0,
                Task::GoalReaching => -progress <= GOAL_RADIUS,
            };
        if collision {
            reward += COLLISION_REWARD;
        }
        if success {
            reward += SUCCESS_REWARD;
        }
        let terminated = collision || success;
        let truncated = !terminated && ep.steps >= self.config.max_steps;
        let info = Info {
            collision,
            success,
            action_clamped: clamped,
            time: ep.time,
            clearance: self.clearance(&ep),
            distance: ep.distance,
            steps: ep.steps,
            walker_clearance: ep.world.mover_clearance(p1),
        };
        let obs = self.observe(&ep);
        self.episode = Some(ep);
        Ok(StepResult {
            obs,
            reward,
            terminated,
            truncated,
            info,
        })
    }

    /// Walk the walkers on by `dt`, yielding to the vehicle at `p` when configured.
    fn move_walkers(&self, ep: &mut Episode, p: [f64; 3], dt: f64) {
        let w = &self.config.walkers;
        if w.yield_distance > 0.0 {
            let keep = w.radius + self.config.collision_radius + w.yield_distance;
            ep.world
                .advance_movers_yielding(dt, Some([p[0], p[1]]), keep);
        } else {
            ep.world.advance_movers(dt);
        }
    }

    /// Physics-only step with no observation (for benchmarks and fast rollouts):
    /// advances the vehicle for one control period; returns true on a collision.
    pub fn step_physics(&mut self, action: &Action) -> Result<bool, EnvError> {
        if !finite(action.values()) {
            return Err(EnvError::InvalidAction { action: *action });
        }
        let (action, _) = self.clamp_action(action);
        let substeps = self.substeps;
        let dt_ctrl = 1.0 / self.config.control_hz;
        let dt = dt_ctrl / substeps as f64;
        let radius = self.config.collision_radius;
        let mut ep = self.episode.take().ok_or(EnvError::NotReset)?;
        ep.wind.advance(dt_ctrl);
        let p0 = Self::position(&ep, &self.config);
        self.move_walkers(&mut ep, p0, dt_ctrl);
        let ep = self.episode.insert(ep);
        let wind = ep.wind.velocity();
        ep.steps += 1;
        ep.time += dt_ctrl;
        Ok(advance(ep, &action, substeps, dt, wind, radius, false))
    }
}

impl Action {
    /// The flight-controller setpoint this action asks for.
    fn setpoint(&self) -> Setpoint {
        match *self {
            Action::Velocity {
                forward,
                left,
                up,
                yaw_rate,
            } => Setpoint::Velocity {
                vel: [forward, left, up],
                yaw_rate,
            },
            Action::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            } => Setpoint::Attitude {
                roll,
                pitch,
                yaw_rate,
                thrust,
            },
        }
    }

    /// Forward speed and yaw rate for the ground robot (pitch stands for speed in attitude mode).
    fn drive(&self) -> (f64, f64) {
        match *self {
            Action::Velocity {
                forward, yaw_rate, ..
            } => (forward, yaw_rate),
            Action::Attitude {
                pitch, yaw_rate, ..
            } => (-pitch * 2.0, yaw_rate),
        }
    }
}

/// Run the vehicle's physics for one control period; collisions are checked at every
/// physics sub-step (so fast flight cannot tunnel through thin panels) when
/// `every_substep`, else once at the end. Returns whether it collided.
fn advance(
    ep: &mut Episode,
    action: &Action,
    substeps: usize,
    dt: f64,
    wind: Vector3<f64>,
    radius: f64,
    every_substep: bool,
) -> bool {
    match &mut ep.vehicle {
        Vehicle::Quad(q) => {
            let sp = action.setpoint();
            for i in 0..substeps {
                q.step(&sp, wind, dt);
                if (every_substep || i + 1 == substeps)
                    && ep.world.collides(q.state.position.into(), radius)
                {
                    return true;
                }
            }
            false
        }
        Vehicle::Ground(g) => {
            let (fwd, yr) = action.drive();
            for i in 0..substeps {
                g.step(fwd, yr, dt);
                let p = [g.position[0], g.position[1], g.params.camera_height];
                if (every_substep || i + 1 == substeps)
                    && ep.world.clearance_above_floor(p) < radius
                {
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            obstacle_count: 6,
            pixel_noise: 1.0,
            ..Context::default()
        }
    }

    fn fwd(v: f64) -> Action {
        Action::Velocity {
            forward: v,
            left: 0.0,
            up: 0.0,
            yaw_rate: 0.0,
        }
    }

    #[test]
    fn reset_is_deterministic_and_steps_return_all_fields() {
        let mut a = Env::new(EnvConfig {
            render: true,
            ..EnvConfig::default()
        })
        .unwrap();
        let mut b = Env::new(EnvConfig {
            render: true,
            ..EnvConfig::default()
        })
        .unwrap();
        let oa = a.reset(&ctx(), 42).unwrap();
        let ob = b.reset(&ctx(), 42).unwrap();
        assert_eq!(oa, ob);
        assert_eq!(oa.scan.len(), 32);
        let st = oa.stereo.as_ref().unwrap();
        assert_eq!((st.width, st.height, st.left.len()), (160, 120, 160 * 120));
        for _ in 0..10 {
            let ra = a.step(&fwd(1.0)).unwrap();
            let rb = b.step(&fwd(1.0)).unwrap();
            assert_eq!(ra, rb);
        }
        let r = a.step(&fwd(1.0)).unwrap();
        assert!(r.reward > 0.0, "forward progress is rewarded: {}", r.reward);
        assert!(r.obs.velocity[0] > 0.3);
        assert!((r.info.time - 11.0 / 30.0).abs() < 1e-9);
        assert_eq!(r.info.steps, 11);
        let oc = b.reset(&ctx(), 43).unwrap();
        assert_ne!(oc.pose, oa.pose);
        assert!(a.obs_dim_consistent());
    }

    impl Env {
        fn obs_dim_consistent(&mut self) -> bool {
            let o = self.reset(&ctx(), 1).unwrap();
            let n = o.vector(10.0).len();
            n == 32 + 8 + crate::context::FIELDS.len()
        }
    }

    #[test]
    fn nan_action_is_rejected_without_touching_state_and_big_action_is_clamped() {
        let mut e = Env::new(EnvConfig::default()).unwrap();
        assert_eq!(e.step(&fwd(1.0)).unwrap_err(), EnvError::NotReset);
        e.reset(&ctx(), 1).unwrap();
        let before = e.episode.clone().map(|ep| ep.steps);
        let err = e.step(&fwd(f64::NAN)).unwrap_err();
        assert!(matches!(err, EnvError::InvalidAction { .. }));
        assert!(
            e.step_physics(&Action::Attitude {
                roll: 0.0,
                pitch: f64::INFINITY,
                yaw_rate: 0.0,
                thrust: 0.5
            })
            .is_err()
        );
        assert_eq!(e.episode.clone().map(|ep| ep.steps), before);
        let r = e.step(&fwd(100.0)).unwrap();
        assert!(r.info.action_clamped);
        assert!(r.obs.pose.position.iter().all(|v| v.is_finite()));
        let r = e.step(&fwd(1.0)).unwrap();
        assert!(!r.info.action_clamped);
    }

    #[test]
    fn flying_into_the_wall_collides_and_terminates() {
        let mut c = ctx();
        c.obstacle_count = 0;
        c.room_length = 6.0;
        let mut e = Env::new(EnvConfig {
            task: Task::GoalReaching,
            ..EnvConfig::default()
        })
        .unwrap();
        e.reset(&c, 3).unwrap();
        // Fly sideways into the side wall.
        let mut last = None;
        for _ in 0..300 {
            let r = e
                .step(&Action::Velocity {
                    forward: 0.0,
                    left: 3.0,
                    up: 0.0,
                    yaw_rate: 0.0,
                })
                .unwrap();
            if r.terminated {
                last = Some(r);
                break;
            }
        }
        let r = last.expect("never hit the wall");
        assert!(r.info.collision && !r.info.success);
        assert!(r.reward < -5.0);
        assert!(r.obs.pose.position[1] > 3.5 || r.obs.pose.position[1] < -3.5);
    }

    #[test]
    fn reaching_the_far_end_is_success_and_truncation_happens_at_max_steps() {
        let mut c = ctx();
        c.obstacle_count = 0;
        c.room_length = 6.0;
        let mut e = Env::new(EnvConfig::default()).unwrap();
        let o = e.reset(&c, 3).unwrap();
        let yaw = o.attitude[2] as f64;
        let mut done = None;
        for _ in 0..300 {
            // Fly along world +x whatever the start heading.
            let a = Action::Velocity {
                forward: 1.5 * yaw.cos(),
                left: -1.5 * yaw.sin(),
                up: 0.0,
                yaw_rate: 0.0,
            };
            let r = e.step(&a).unwrap();
            if r.terminated || r.truncated {
                done = Some(r);
                break;
            }
        }
        let r = done.unwrap();
        assert!(r.info.success && !r.info.collision, "{:?}", r.info);
        let mut e = Env::new(EnvConfig {
            max_steps: 5,
            ..EnvConfig::default()
        })
        .unwrap();
        e.reset(&c, 3).unwrap();
        let rs: Vec<_> = (0..5).map(|_| e.step(&fwd(0.0)).unwrap()).collect();
        assert!(rs[..4].iter().all(|r| !r.truncated));
        assert!(rs[4].truncated && !rs[4].terminated);
    }

    #[test]
    fn invalid_context_and_config_are_refused() {
        let mut e = Env::new(EnvConfig::default()).unwrap();
        let bad = Context {
            light: f64::NAN,
            ..Context::default()
        };
        assert!(matches!(e.reset(&bad, 1), Err(EnvError::Context(_))));
        assert!(
            Env::new(EnvConfig {
                physics_hz: 100.0,
                ..EnvConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn ground_robot_drives_and_its_scan_sees_the_far_wall() {
        let mut c = ctx();
        c.obstacle_count = 0;
        let mut e = Env::new(EnvConfig {
            vehicle: VehicleKind::Ground,
            ..EnvConfig::default()
        })
        .unwrap();
        let o = e.reset(&c, 2).unwrap();
        let mid = o.scan[16];
        assert!(mid > 9.0, "{mid}");
        for _ in 0..30 {
            e.step(&fwd(1.0)).unwrap();
        }
        let r = e.step(&fwd(1.0)).unwrap();
        assert!(
            r.obs.pose.position[0] > 1.5 && r.obs.velocity[0] > 0.8,
            "{:?}",
            r.obs.pose
        );
    }
}
