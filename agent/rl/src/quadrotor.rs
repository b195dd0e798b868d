//! Motor-level quadrotor control: the task of "Learning to Fly in Seconds"
//! (Eschmann et al., RA-L 2024) on the vehicle of [`fclink::quad`], the model
//! the firmware flies a learned policy against.
//!
//! - **Actions**: the four motor commands, each in [−1, 1] (0 to `rpm_max`).
//! - **Observations** ([`OBS_DIM`]): the position error to the target (the
//!   origin), the attitude as a rotation matrix (row-major), the linear
//!   velocity (world), the angular velocity (body), the last
//!   [`fclink::learned::HISTORY`] actions (newest first) and the time integral
//!   of the position error (clamped) — what the firmware has
//!   ([`fclink::learned`] builds the same vector).
//! - **Episodes** start at a random offset, tilt about a random horizontal
//!   axis, velocity and rotation rate, motors at the vehicle's hover speed, and
//!   end when the vehicle strays too far, or spins or moves too fast
//!   (terminated), or after `episode_seconds` (truncated).
//! - **Reward** per step: 1 / (1 + cost), the cost weighing the squared
//!   position error, the tilt (1 − the body z axis' vertical component), the
//!   squared velocity and rates, and the squared deviation of the action from
//!   the hover command. Every step that survives earns something (a terminated
//!   episode earns nothing more), so ending an episode is never better than
//!   going on, however bad the state; and the reward still grows as the cost
//!   falls from any height (no clipping that would leave far states without a
//!   gradient).
//! - **Domain randomisation**: every instance is a vehicle drawn from ranges
//!   around the nominal one (mass, inertia, thrust curve, motor time
//!   constant, drag), the ranges in a TOML file
//!   (`agent/rl/config/learn_to_fly.toml`); held-out vehicles come from
//!   another seed.

use crate::RlError;
use crate::env::{Act, ActionSpace, Environment, Step};
use fclink::quad::{QuadParams, QuadState, step as quad_step};
use serde::Deserialize;
use std::path::Path;
use types::rng::Rng;

/// Observation length.
pub const OBS_DIM: usize = fclink::learned::OBS;
/// Where the newest motor command lies in an observation.
pub const NEWEST: std::ops::Range<usize> =
    fclink::learned::ACTIONS_AT..fclink::learned::ACTIONS_AT + 4;
/// Length of [`QuadHoverEnv::privileged_into`]'s output.
pub const PRIVILEGED_DIM: usize = 4;

/// The task's settings (the TOML file's tables).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnToFlyConfig {
    /// Control and episode timing.
    pub task: TaskConfig,
    /// Start-state ranges.
    pub init: InitConfig,
    /// Cost weights.
    pub reward: RewardConfig,
    /// When an episode terminates.
    pub limits: LimitConfig,
    /// Vehicle ranges.
    pub randomise: RandomiseConfig,
    /// The learner's settings.
    pub train: TrainConfig,
    /// When a policy counts as flying.
    pub criterion: CriterionConfig,
    /// Cost weights that grow during training (none: fixed weights).
    #[serde(default)]
    pub curriculum: Option<CurriculumConfig>,
}

/// Cost weights raised during training, as in "Learning to Fly in Seconds":
/// first learn to stay up, then to stay on the spot with calm motors. The
/// position and action weights go linearly from `[reward]`'s values at
/// `from_step` to these at `to_step`. The learner recomputes each replayed
/// transition's reward with the weights of the moment (the reward is a
/// function of the step's resulting observation, see [`reward_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurriculumConfig {
    /// Environment step at which the weights start to grow.
    pub from_step: usize,
    /// Environment step at which they reach their final values.
    pub to_step: usize,
    /// Final position weight.
    pub position: f32,
    /// Final action weight.
    pub action: f32,
}

impl LearnToFlyConfig {
    /// The cost weights at environment step `step`.
    pub fn reward_at(&self, step: usize) -> RewardConfig {
        let mut w = self.reward;
        if let Some(c) = self.curriculum {
            let f = if step <= c.from_step {
                0.0
            } else if step >= c.to_step {
                1.0
            } else {
                (step - c.from_step) as f32 / (c.to_step - c.from_step) as f32
            };
            w.position += f * (c.position - w.position);
            w.action += f * (c.action - w.action);
        }
        w
    }
}

/// The reward of a step that ended in observation `obs` (this module's
/// layout: the last action is the one the step took) after the action
/// `prev` (the step before's; the last action of the observation the step
/// started from), for a vehicle whose hover command is `hover`: 1 / (1 +
/// cost). Every term of the cost is in the two observations, so a learner can
/// recompute a replayed step's reward under other weights.
pub fn reward_of(w: &RewardConfig, obs: &[f32], prev: &[f32], hover: f32) -> f32 {
    let sq = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
    // obs[11] is the rotation matrix's (2, 2): the body z axis' vertical part.
    let tilt = 1.0 - obs[11];
    let act: f32 = obs[NEWEST].iter().map(|a| (a - hover).powi(2)).sum();
    let change: f32 = obs[NEWEST]
        .iter()
        .zip(prev)
        .map(|(a, p)| (a - p).powi(2))
        .sum();
    let cost = w.smooth * change
        + w.position * sq(&obs[0..3])
        + w.tilt * tilt
        + w.velocity * sq(&obs[12..15])
        + w.rates * sq(&obs[15..18])
        + w.action * act;
    1.0 / (1.0 + cost)
}

/// TD3's settings and the training loop's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Hidden layer widths of the actor and the critics.
    pub hidden: Vec<usize>,
    /// Transitions per gradient step.
    pub batch: usize,
    /// Discount.
    pub gamma: f32,
    /// Actor learning rate (Adam).
    pub actor_lr: f32,
    /// Critic learning rate (Adam).
    pub critic_lr: f32,
    /// Polyak rate of the target networks.
    pub tau: f32,
    /// Critic updates per actor update.
    pub policy_delay: usize,
    /// Exploration noise std.
    pub explore_noise: f32,
    /// Target policy smoothing noise std.
    pub target_noise: f32,
    /// Clip of the smoothing noise.
    pub noise_clip: f32,
    /// Environment steps before the first update.
    pub warmup: usize,
    /// Environments stepped in lock-step.
    pub envs: usize,
    /// Environment steps per gradient step (critic update).
    pub update_every: usize,
    /// Transitions the replay memory keeps (the oldest go first).
    pub replay: usize,
    /// Environment steps before giving up.
    pub max_steps: usize,
    /// Randomised training vehicles.
    pub vehicles: usize,
    /// Environment steps between evaluations.
    pub eval_every: usize,
    /// Learning rates at `max_steps` as a fraction of the starting ones
    /// (linear in between; 1 keeps them constant).
    pub lr_decay: f32,
    /// Polyak rate, per actor update, of the policy that is evaluated and
    /// written (1: the latest actor).
    pub deploy_average: f32,
}

/// The stop criterion, checked on held-out vehicles.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriterionConfig {
    /// Held-out vehicles.
    pub vehicles: usize,
    /// Start tilt of every evaluation episode (rad).
    pub tilt: f32,
    /// Final seconds over which the position must hold.
    pub hold_seconds: f64,
    /// Largest distance to the target over those seconds (m).
    pub position: f32,
}

/// Control and episode timing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Policy steps per second (Hz).
    pub control_hz: f64,
    /// Integration steps per policy step.
    pub substeps: usize,
    /// Episode length (s).
    pub episode_seconds: f64,
}

/// Start-state ranges: each axis uniform in ±value; the tilt's angle uniform in
/// [0, tilt] about a uniformly drawn horizontal axis.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// Position offset (m).
    pub position: f32,
    /// Tilt (rad).
    pub tilt: f32,
    /// Velocity (m/s).
    pub velocity: f32,
    /// Rotation rate (rad/s).
    pub rates: f32,
}

/// Cost weights.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardConfig {
    /// Per m² of position error.
    pub position: f32,
    /// Per unit of tilt (0 level, 2 upside down).
    pub tilt: f32,
    /// Per (m/s)².
    pub velocity: f32,
    /// Per (rad/s)².
    pub rates: f32,
    /// Per unit² of action away from the hover command.
    pub action: f32,
    /// Per unit² of change of the action from the step before (calm motors).
    #[serde(default)]
    pub smooth: f32,
}

/// Termination bounds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Largest position error on any axis (m).
    pub position: f32,
    /// Largest speed on any axis (m/s).
    pub velocity: f32,
    /// Largest rotation rate on any axis (rad/s).
    pub rates: f32,
}

/// Vehicle ranges: `[low, high]`, factors of the nominal vehicle's value for
/// mass, inertia (each axis drawn alone) and thrust (the whole curve scaled),
/// absolute values for the motor time constant (s) and drag (N per m/s).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomiseConfig {
    /// Mass factor.
    pub mass: [f32; 2],
    /// Inertia factor.
    pub inertia: [f32; 2],
    /// Thrust factor.
    pub thrust: [f32; 2],
    /// Motor time constant (s).
    pub motor_tau: [f32; 2],
    /// Linear drag (N per m/s).
    pub drag: [f32; 2],
}

impl LearnToFlyConfig {
    /// Parse and check the TOML text of `origin` (a file name, for errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self, RlError> {
        let c: Self =
            toml::from_str(text).map_err(|e| RlError::Config(format!("{origin}: {e}")))?;
        c.validate()
            .map_err(|e| RlError::Config(format!("{origin}: {e}")))?;
        Ok(c)
    }

    /// Read and check a settings file.
    pub fn load(path: &Path) -> Result<Self, RlError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RlError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The settings file shipped with the crate.
    pub fn default_file() -> Self {
        // The file is the crate's own and checked by a unit test.
        Self::parse(DEFAULT_FILE, "agent/rl/config/learn_to_fly.toml")
            .unwrap_or_else(|e| panic!("the crate's own learn_to_fly.toml: {e}"))
    }

    /// Ranges checked; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.task;
        if !(t.control_hz.is_finite() && (1.0..=10_000.0).contains(&t.control_hz)) {
            return Err(format!(
                "task.control_hz = {} must be in [1, 10000]",
                t.control_hz
            ));
        }
        if !(1..=100).contains(&t.substeps) {
            return Err(format!(
                "task.substeps = {} must be in [1, 100]",
                t.substeps
            ));
        }
        if !(t.episode_seconds.is_finite()
            && t.episode_seconds > 0.0
            && t.episode_seconds <= 3600.0)
        {
            return Err(format!(
                "task.episode_seconds = {} must be in (0, 3600]",
                t.episode_seconds
            ));
        }
        let i = &self.init;
        let l = &self.limits;
        let r = &self.reward;
        for (k, v, hi) in [
            ("init.position", i.position, 100.0),
            ("init.tilt", i.tilt, std::f32::consts::PI),
            ("init.velocity", i.velocity, 100.0),
            ("init.rates", i.rates, 100.0),
            ("reward.position", r.position, 1e6),
            ("reward.tilt", r.tilt, 1e6),
            ("reward.velocity", r.velocity, 1e6),
            ("reward.rates", r.rates, 1e6),
            ("reward.action", r.action, 1e6),
        ] {
            if !(v.is_finite() && (0.0..=hi).contains(&v)) {
                return Err(format!("{k} = {v} must be in [0, {hi}]"));
            }
        }
        for (k, limit, start) in [
            ("limits.position", l.position, i.position),
            ("limits.velocity", l.velocity, i.velocity),
            ("limits.rates", l.rates, i.rates),
        ] {
            if !(limit.is_finite() && limit > start) {
                return Err(format!(
                    "{k} = {limit} must be finite and above the start range ({start})"
                ));
            }
        }
        let tr = &self.train;
        // The firmware's forward pass holds at most this many layers of this width.
        let (layers, width) = (fclink::policy::MAX_LAYERS - 2, fclink::policy::MAX_WIDTH);
        if tr.hidden.is_empty()
            || tr.hidden.len() > layers
            || tr.hidden.iter().any(|&h| !(1..=width).contains(&h))
        {
            return Err(format!(
                "train.hidden = {:?} must be 1 to {layers} widths in [1, {width}] (what the firmware's forward pass holds)",
                tr.hidden
            ));
        }
        for (k, v, lo, hi) in [
            ("train.batch", tr.batch, 1, 1 << 16),
            ("train.policy_delay", tr.policy_delay, 1, 1000),
            ("train.envs", tr.envs, 1, 1024),
            ("train.update_every", tr.update_every, 1, 1000),
            ("train.replay", tr.replay, 1, 10_000_000),
            ("train.max_steps", tr.max_steps, 1, 1 << 31),
            ("train.vehicles", tr.vehicles, 1, 1 << 20),
            ("train.eval_every", tr.eval_every, 1, 1 << 31),
            ("train.warmup", tr.warmup, 0, 1 << 31),
            ("criterion.vehicles", self.criterion.vehicles, 1, 10_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{k} = {v} must be in [{lo}, {hi}]"));
            }
        }
        for (k, v, lo, hi) in [
            ("train.gamma", tr.gamma, 0.0, 0.9999),
            ("train.actor_lr", tr.actor_lr, 1e-8, 1.0),
            ("train.critic_lr", tr.critic_lr, 1e-8, 1.0),
            ("train.tau", tr.tau, 1e-6, 1.0),
            ("train.lr_decay", tr.lr_decay, 0.0, 1.0),
            ("train.deploy_average", tr.deploy_average, 1e-6, 1.0),
            ("train.explore_noise", tr.explore_noise, 0.0, 2.0),
            ("train.target_noise", tr.target_noise, 0.0, 2.0),
            ("train.noise_clip", tr.noise_clip, 0.0, 2.0),
            (
                "criterion.tilt",
                self.criterion.tilt,
                0.0,
                std::f32::consts::PI,
            ),
            ("criterion.position", self.criterion.position, 1e-4, 100.0),
        ] {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(format!("{k} = {v} must be in [{lo}, {hi}]"));
            }
        }
        if let Some(c) = &self.curriculum {
            if c.from_step >= c.to_step {
                return Err(format!(
                    "curriculum.from_step = {} must be below curriculum.to_step = {}",
                    c.from_step, c.to_step
                ));
            }
            for (k, v) in [
                ("curriculum.position", c.position),
                ("curriculum.action", c.action),
            ] {
                if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
                    return Err(format!("{k} = {v} must be in [0, 1e6]"));
                }
            }
        }
        let hold = self.criterion.hold_seconds;
        if !(hold.is_finite() && hold > 0.0 && hold <= self.task.episode_seconds) {
            return Err(format!(
                "criterion.hold_seconds = {hold} must be in (0, task.episode_seconds = {}]",
                self.task.episode_seconds
            ));
        }
        let d = &self.randomise;
        for (k, [lo, hi], min) in [
            ("randomise.mass", d.mass, 1e-3),
            ("randomise.inertia", d.inertia, 1e-3),
            ("randomise.thrust", d.thrust, 1e-3),
            ("randomise.motor_tau", d.motor_tau, 1e-4),
            ("randomise.drag", d.drag, 0.0),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo >= min && lo <= hi && hi <= 1e3) {
                return Err(format!(
                    "{k} = [{lo}, {hi}] must be a range [low, high] with {min} <= low <= high <= 1000"
                ));
            }
        }
        Ok(())
    }

    /// `n` vehicles drawn from the ranges around `nominal` with `seed`; each
    /// can hover (a draw that cannot is drawn again).
    pub fn vehicles(&self, nominal: &QuadParams, n: usize, seed: u64) -> Vec<QuadParams> {
        let mut rng = Rng::new(seed);
        let mut draw = |[lo, hi]: [f32; 2]| rng.range(f64::from(lo), f64::from(hi)) as f32;
        let d = self.randomise;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let thrust = draw(d.thrust);
            let p = QuadParams {
                mass: nominal.mass * draw(d.mass),
                inertia: [
                    nominal.inertia[0] * draw(d.inertia),
                    nominal.inertia[1] * draw(d.inertia),
                    nominal.inertia[2] * draw(d.inertia),
                ],
                thrust: nominal.thrust.map(|c| c * thrust),
                motor_tau: draw(d.motor_tau),
                drag: draw(d.drag),
                ..*nominal
            };
            // Up to a thrust-to-weight of 1.2: a vehicle that barely lifts
            // itself cannot be controlled, whatever the policy.
            if p.is_valid() && p.thrust_to_weight() >= 1.2 {
                out.push(p);
            }
        }
        out
    }
}

/// The shipped settings (nominal Crazyflie 2.x, the published ranges' spirit).
pub const DEFAULT_FILE: &str = include_str!("../config/learn_to_fly.toml");

/// Hovering at the origin over randomised vehicles.
#[derive(Debug, Clone)]
pub struct QuadHoverEnv {
    cfg: LearnToFlyConfig,
    vehicles: Vec<QuadParams>,
    vehicle: QuadParams,
    hover_action: f32,
    state: QuadState,
    history: fclink::learned::History,
    /// Time integral of the position error (m·s), clamped.
    integral: [f32; 3],
    steps: usize,
    max_steps: usize,
    dt: f32,
}

impl QuadHoverEnv {
    /// An environment over `vehicles` (one instance each).
    pub fn new(cfg: LearnToFlyConfig, vehicles: Vec<QuadParams>) -> Result<Self, RlError> {
        cfg.validate().map_err(RlError::Config)?;
        let first = *vehicles
            .first()
            .ok_or_else(|| RlError::Config("no vehicles to fly".into()))?;
        if let Some(bad) = vehicles
            .iter()
            .position(|v| !v.is_valid() || v.hover_rpm().is_none())
        {
            return Err(RlError::Config(format!(
                "vehicle {bad} is not physical or cannot hover"
            )));
        }
        let dt = (1.0 / cfg.task.control_hz) as f32;
        Ok(Self {
            max_steps: (cfg.task.episode_seconds * cfg.task.control_hz)
                .round()
                .max(1.0) as usize,
            hover_action: 0.0,
            vehicle: first,
            state: QuadState::at_rest([0.0; 3]),
            history: [[0.0; 4]; fclink::learned::HISTORY],
            integral: [0.0; 3],
            steps: 0,
            dt,
            cfg,
            vehicles,
        })
    }

    /// The vehicle flying now.
    pub fn vehicle(&self) -> &QuadParams {
        &self.vehicle
    }

    /// The vehicle's state.
    pub fn state(&self) -> &QuadState {
        &self.state
    }

    /// The action that commands the vehicle's hover speed on every motor.
    pub fn hover_action(&self) -> f32 {
        self.hover_action
    }

    /// The observation of the current state.
    pub fn observe(&self) -> Vec<f32> {
        let mut o = vec![0.0; OBS_DIM];
        self.observe_into(&mut o);
        o
    }

    /// Start an episode on vehicle `instance` from the start state `seed`
    /// draws; `tilt` (rad), when given, replaces the drawn tilt angle (the
    /// axis is still drawn): the held-out recovery test starts every vehicle
    /// at exactly 1 rad.
    pub fn start(&mut self, instance: usize, seed: u64, tilt: Option<f32>) -> Result<(), RlError> {
        self.vehicle = *self.vehicles.get(instance).ok_or_else(|| {
            RlError::Config(format!(
                "instance {instance} of {} vehicles",
                self.vehicles.len()
            ))
        })?;
        let hover = self
            .vehicle
            .hover_rpm()
            .ok_or_else(|| RlError::Config(format!("vehicle {instance} cannot hover")))?;
        self.hover_action = self.vehicle.action_for_rpm(hover);
        let mut rng = Rng::new(seed);
        let i = self.cfg.init;
        let mut sym = |a: f32| rng.range(-f64::from(a), f64::from(a)) as f32;
        let position = [sym(i.position), sym(i.position), sym(i.position)];
        let velocity = [sym(i.velocity), sym(i.velocity), sym(i.velocity)];
        let rates = [sym(i.rates), sym(i.rates), sym(i.rates)];
        let heading = sym(std::f32::consts::PI);
        let drawn = sym(i.tilt).abs();
        let angle = 0.5 * tilt.unwrap_or(drawn);
        let (s, c) = angle.sin_cos();
        self.state = QuadState {
            position,
            velocity,
            // A tilt of 2·angle about the horizontal axis (cos h, sin h, 0).
            attitude: [c, s * heading.cos(), s * heading.sin(), 0.0],
            rates,
            rpm: [hover; 4],
        };
        self.history = [[self.hover_action; 4]; fclink::learned::HISTORY];
        self.integral = [0.0; 3];
        self.steps = 0;
        Ok(())
    }

    /// The observation, written into `out` (at least [`OBS_DIM`] long).
    pub fn observe_into(&self, out: &mut [f32]) {
        out[..OBS_DIM].copy_from_slice(&fclink::learned::observation(
            &self.state,
            &[0.0; 3],
            &self.history,
            &self.integral,
        ));
    }

    /// What only the trainer's critic sees (an asymmetric actor-critic, as in
    /// "Learning to Fly in Seconds"): the motors' true speeds as the actions
    /// that would command them, which the firmware cannot measure.
    pub fn privileged_into(&self, out: &mut [f32]) {
        for (o, &rpm) in out.iter_mut().zip(&self.state.rpm) {
            *o = self.vehicle.action_for_rpm(rpm);
        }
    }

    /// One control step with motor commands `action` (clamped to [−1, 1], a
    /// non-finite command read as motor off): (reward, terminated, truncated).
    /// The allocation-free core of [`Environment::step`].
    pub fn step_motors(&mut self, action: [f32; 4]) -> (f32, bool, bool) {
        let action = action.map(|v| {
            if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                -1.0
            }
        });
        let h = self.dt / self.cfg.task.substeps as f32;
        for _ in 0..self.cfg.task.substeps {
            quad_step(&self.vehicle, &mut self.state, &action, h);
        }
        let prev = self.history[0];
        fclink::learned::remember(&mut self.history, action);
        fclink::learned::integrate(&mut self.integral, &self.state.position, self.dt);
        self.steps += 1;
        let terminated = !self.state.is_finite() || self.out_of_bounds();
        let reward = if terminated {
            0.0
        } else {
            let mut obs = [0.0f32; OBS_DIM];
            self.observe_into(&mut obs);
            reward_of(&self.cfg.reward, &obs, &prev, self.hover_action)
        };
        (
            reward,
            terminated,
            !terminated && self.steps >= self.max_steps,
        )
    }

    fn out_of_bounds(&self) -> bool {
        let s = &self.state;
        let l = &self.cfg.limits;
        let over = |v: &[f32], lim: f32| v.iter().any(|x| x.is_nan() || x.abs() > lim);
        over(&s.position, l.position) || over(&s.velocity, l.velocity) || over(&s.rates, l.rates)
    }
}

impl Environment for QuadHoverEnv {
    fn obs_dim(&self) -> usize {
        OBS_DIM
    }

    fn action_space(&self) -> ActionSpace {
        ActionSpace::Continuous(4)
    }

    fn instances(&self) -> usize {
        self.vehicles.len()
    }

    fn instance_name(&self, i: usize) -> String {
        match self.vehicles.get(i) {
            Some(v) => format!(
                "vehicle {i}: {:.1} g, thrust/weight {:.2}, motor tau {:.3} s",
                v.mass * 1e3,
                v.thrust_to_weight(),
                v.motor_tau
            ),
            None => format!("vehicle {i} (none)"),
        }
    }

    fn reset(&mut self, instance: usize, seed: u64) -> Result<Vec<f32>, RlError> {
        self.start(instance, seed, None)?;
        Ok(self.observe())
    }

    fn step(&mut self, act: &Act) -> Result<Step, RlError> {
        let Act::Continuous(a) = act else {
            return Err(RlError::Config(
                "the quadrotor takes four continuous motor commands".into(),
            ));
        };
        let action: [f32; 4] = a.as_slice().try_into().map_err(|_| {
            RlError::Config(format!(
                "the quadrotor takes 4 motor commands, got {}",
                a.len()
            ))
        })?;
        let (reward, terminated, truncated) = self.step_motors(action);
        Ok(Step {
            obs: self.observe(),
            reward,
            terminated,
            truncated,
            collision: false,
            success: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fclink::quad::rotation_matrix;

    fn env(n: usize) -> QuadHoverEnv {
        let cfg = LearnToFlyConfig::default_file();
        let v = cfg.vehicles(&QuadParams::CRAZYFLIE, n, 1);
        QuadHoverEnv::new(cfg, v).unwrap()
    }

    #[test]
    fn the_shipped_file_parses_and_its_vehicles_stay_in_range() {
        let cfg = LearnToFlyConfig::default_file();
        let nominal = QuadParams::CRAZYFLIE;
        let v = cfg.vehicles(&nominal, 200, 7);
        let d = cfg.randomise;
        for p in &v {
            let m = p.mass / nominal.mass;
            assert!(m >= d.mass[0] - 1e-6 && m <= d.mass[1] + 1e-6, "{m}");
            assert!(p.motor_tau >= d.motor_tau[0] && p.motor_tau <= d.motor_tau[1]);
            assert!(p.thrust_to_weight() >= 1.2);
        }
        // Another seed, other vehicles (held out).
        assert_ne!(v[0], cfg.vehicles(&nominal, 1, 8)[0]);
    }

    #[test]
    fn the_curriculum_raises_the_weights_linearly_between_its_steps() {
        let mut cfg = LearnToFlyConfig::default_file();
        cfg.curriculum = Some(CurriculumConfig {
            from_step: 100,
            to_step: 300,
            position: 25.0,
            action: 4.5,
        });
        let base = cfg.reward;
        assert_eq!(cfg.reward_at(0), base);
        assert_eq!(cfg.reward_at(100), base);
        let mid = cfg.reward_at(200);
        assert!(
            (mid.position - 0.5 * (base.position + 25.0)).abs() < 1e-5,
            "{mid:?}"
        );
        assert!(
            (mid.action - 0.5 * (base.action + 4.5)).abs() < 1e-5,
            "{mid:?}"
        );
        assert_eq!(mid.tilt, base.tilt);
        let end = cfg.reward_at(10_000);
        assert_eq!((end.position, end.action), (25.0, 4.5));
        cfg.curriculum = Some(CurriculumConfig {
            from_step: 300,
            to_step: 300,
            position: 1.0,
            action: 1.0,
        });
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("curriculum.from_step"), "{e}");
    }

    #[test]
    fn a_replayed_step_earns_what_the_environment_paid() {
        let mut e = env(4);
        e.start(1, 3, None).unwrap();
        let h = e.hover_action();
        e.cfg.reward.smooth = 0.7;
        let (mut before, mut after) = ([0.0f32; OBS_DIM], [0.0f32; OBS_DIM]);
        for k in 0..40 {
            e.observe_into(&mut before);
            let s = if k % 2 == 0 { 1.0 } else { -1.0 };
            let a = [h + 0.05 * s, h - 0.02, h + 0.01 * s, h - 0.04];
            let (r, term, _) = e.step_motors(a);
            if term {
                break;
            }
            e.observe_into(&mut after);
            assert_eq!(
                reward_of(&e.cfg.reward, &after, &before[NEWEST], h),
                r,
                "step {k}"
            );
            let mut calm = e.cfg.reward;
            calm.smooth = 0.0;
            assert!(
                k == 0 || reward_of(&calm, &after, &before[NEWEST], h) > r,
                "step {k}: the changing motors cost something"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused_by_key() {
        let bad = DEFAULT_FILE.replace("mass = [0.8, 1.2]", "mass = [1.2, 0.8]");
        assert_ne!(bad, DEFAULT_FILE, "the test edits the shipped file");
        let e = LearnToFlyConfig::parse(&bad, "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("randomise.mass") && e.contains("f.toml"), "{e}");
        let e = LearnToFlyConfig::parse(&DEFAULT_FILE.replace("[task]", "[task]\nspeed = 2"), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("speed"), "{e}");
    }

    #[test]
    fn resets_are_fixed_by_the_seed_and_tilt_within_the_range() {
        let mut e = env(3);
        let a = e.reset(2, 11).unwrap();
        assert_eq!(a.len(), OBS_DIM);
        assert_eq!(a, e.reset(2, 11).unwrap());
        assert_ne!(a, e.reset(2, 12).unwrap());
        let max_tilt = e.cfg.init.tilt;
        for seed in 0..200 {
            e.reset(0, seed).unwrap();
            let up = rotation_matrix(&e.state().attitude)[2][2];
            assert!(
                up.acos() <= max_tilt + 1e-4,
                "tilt {} > {max_tilt}",
                up.acos()
            );
        }
        assert!(e.reset(3, 0).is_err(), "only 3 vehicles");
    }

    #[test]
    fn hover_command_at_the_target_keeps_the_whole_reward() {
        // (and any state earns more than ending the episode: 0)
        let cfg = LearnToFlyConfig::default_file();
        let mut e = QuadHoverEnv::new(cfg, vec![QuadParams::CRAZYFLIE]).unwrap();
        e.reset(0, 0).unwrap();
        e.state = QuadState {
            rpm: e.state.rpm,
            ..QuadState::at_rest([0.0; 3])
        };
        let hover = Act::Continuous(vec![e.hover_action(); 4]);
        let mut total = 0.0;
        loop {
            let s = e.step(&hover).unwrap();
            assert!(!s.terminated);
            total += s.reward;
            if s.truncated {
                break;
            }
        }
        let n = e.max_steps as f32;
        assert!(total > 0.999 * n, "{total} of {n}");
    }

    #[test]
    fn a_bad_state_still_earns_more_than_ending_the_episode() {
        // Near every limit, upside down: a surviving step earns more than the
        // nothing a terminated episode earns from then on.
        let mut e = env(1);
        e.reset(0, 0).unwrap();
        e.state.position = [1.4, -1.4, 1.4];
        e.state.velocity = [3.9, 3.9, 3.8];
        e.state.attitude = [0.0, 1.0, 0.0, 0.0];
        e.state.rates = [0.0, 0.0, 19.0];
        let s = e
            .step(&Act::Continuous(vec![1.0, -1.0, 1.0, -1.0]))
            .unwrap();
        assert!(!s.terminated, "{:?}", e.state());
        assert!(s.reward > 0.0 && s.reward < 0.05, "{}", s.reward);
    }

    #[test]
    fn stopped_motors_end_the_episode_early() {
        let mut e = env(1);
        e.reset(0, 3).unwrap();
        let off = Act::Continuous(vec![-1.0; 4]);
        let mut steps = 0;
        loop {
            let s = e.step(&off).unwrap();
            steps += 1;
            assert!(!s.truncated, "fell for the whole episode without ending it");
            if s.terminated {
                break;
            }
        }
        assert!(steps < e.max_steps);
        assert!(e.step(&Act::Continuous(vec![0.0; 3])).is_err());
        assert!(e.step(&Act::Discrete(1)).is_err());
    }
}
