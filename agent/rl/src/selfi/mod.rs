//! SELFI: online self-improvement of a navigation policy that was pre-trained
//! offline against a model-based objective (Sun et al., CoRL 2024).
//!
//! - [`data`]: flights as frames (scan, state, goal, executed command, events),
//!   the training rows the models and the actor learn from;
//! - [`model`]: the learned models (one-step dynamics, traversability) and the
//!   differentiable model-based objective J(s, τ) over an 8-command plan τ;
//! - [`nav`]: the twin's goal-reaching task with walkers, the safety
//!   supervisor whose take-overs count as interventions, and the online reward;
//! - [`online`]: TD3-style fine-tuning with Q(s, τ) = J(s, τ) + Q̄(s, a0), both
//!   critic variants, update-size guard and rollback;
//! - [`experiment`]: the three arms (offline only, SELFI, plain online RL) on the
//!   same seeds, binned per simulated minute.
//!
//! Choices the published method leaves open, fixed here and logged in every run's config dump:
//! Q̄ scores the executed first command a0 only (J scores the whole plan);
//! the critic does not share the actor's layers (the inputs are already a compact
//! depth scan, so there is no visual encoder to share); J's models are frozen
//! online; there is no batch normalisation anywhere.

pub mod data;
pub mod experiment;
pub mod model;
pub mod nav;
pub mod online;
pub mod tracking;

use crate::RlError;
use serde::{Deserialize, Serialize};

/// Beams of the depth scan the models read.
pub const BEAMS: usize = 32;
/// Width of the scan features: scan and its change since the last step.
pub const SCAN_FEATURES: usize = 2 * BEAMS;
/// Tracked walkers the observation holds (the nearest ones).
pub const TRACKS: usize = 3;
/// Values per tracked walker: seen (0/1), position (2), velocity (2), in the heading frame.
pub const TRACK_FEATURES: usize = 5;
/// Where the tracks start in an observation row.
pub const TRACKS_AT: usize = SCAN_FEATURES + 5;
/// Width of the actor's and critic's observation: scan features, velocity (2),
/// goal distance and bearing (3), the nearest tracked walkers.
pub const OBS_DIM: usize = TRACKS_AT + TRACKS * TRACK_FEATURES;

/// The plan the actor outputs and how it is executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Commands per plan (SELFI's 8).
    pub horizon: usize,
    /// Decisions per second; each command is held for 1 / rate s.
    pub control_hz: f64,
    /// Largest forward speed (m/s); commands are in [0, v_max].
    pub max_speed: f64,
    /// Largest yaw rate (rad/s); commands are in [−max, max].
    pub max_yaw_rate: f64,
    /// Flight altitude held by the altitude loop (m).
    pub altitude: f64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            horizon: 8,
            control_hz: 5.0,
            max_speed: 1.5,
            max_yaw_rate: 1.5,
            altitude: 1.5,
        }
    }
}

impl PlanConfig {
    /// Seconds per command.
    pub fn dt(&self) -> f64 {
        1.0 / self.control_hz
    }

    /// A normalised command (each in [−1, 1]) in physical units: (forward m/s, yaw rate rad/s).
    pub fn command(&self, a: [f32; 2]) -> (f64, f64) {
        let v = (f64::from(a[0].clamp(-1.0, 1.0)) + 1.0) * 0.5 * self.max_speed;
        (v, f64::from(a[1].clamp(-1.0, 1.0)) * self.max_yaw_rate)
    }

    /// A physical command in normalised units (inverse of [`PlanConfig::command`]).
    pub fn normalise(&self, forward: f64, yaw_rate: f64) -> [f32; 2] {
        [
            ((2.0 * forward / self.max_speed) - 1.0).clamp(-1.0, 1.0) as f32,
            (yaw_rate / self.max_yaw_rate).clamp(-1.0, 1.0) as f32,
        ]
    }
}

/// Weights of the model-based objective J.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// Weight of goal progress over the plan (progress / (v_max · horizon time), in [−1, 1]).
    pub goal: f64,
    /// Weight of the mean predicted probability that a planned pose is unsafe.
    pub collision: f64,
    /// Weight of the mean squared change between consecutive commands.
    pub smoothness: f64,
    /// A pose counts as unsafe in the labels when the scan there reads less than this (m).
    pub unsafe_distance: f64,
    /// Weight of the walkers' predicted closeness to the plan: per planned pose, the
    /// sum over tracked walkers of a soft "closer than `walker_clearance`", averaged
    /// over the plan, with the walkers where the motion model predicts them.
    pub walker: f64,
    /// Centre-to-centre distance to a tracked walker under which a planned pose
    /// counts as too close (m).
    pub walker_clearance: f64,
    /// Weight of the walkers' predicted presence where the supervisor would take
    /// over: per planned pose, the sum over tracked walkers of a soft "inside the
    /// central third of the view and nearer than `ahead_distance + ahead_per_speed
    /// · commanded speed`" (surface distance), averaged over the plan. 0: off.
    pub walker_ahead: f64,
    /// Surface distance under which a walker ahead counts (m): the supervisor's
    /// `nav.stop_distance` plus a margin for prediction error.
    pub ahead_distance: f64,
    /// Growth of that distance with the commanded forward speed (s): the
    /// supervisor's `nav.stop_per_speed`.
    pub ahead_per_speed: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            goal: 1.0,
            collision: 2.0,
            smoothness: 0.05,
            unsafe_distance: 0.5,
            walker: 2.0,
            walker_clearance: 1.5,
            walker_ahead: 0.0,
            ahead_distance: 0.75,
            ahead_per_speed: 0.35,
        }
    }
}

/// Offline training of the models and the actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Hidden widths of the dynamics model.
    pub dynamics_hidden: Vec<usize>,
    /// Hidden widths of the traversability model.
    pub traversability_hidden: Vec<usize>,
    /// Hidden widths of the walker-motion model.
    pub walker_hidden: Vec<usize>,
    /// Hidden widths of the actor.
    pub actor_hidden: Vec<usize>,
    /// Gradient steps of each model.
    pub model_steps: usize,
    /// Gradient steps of the actor against J.
    pub actor_steps: usize,
    /// Rows per gradient step.
    pub batch: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Weight of the mean squared pre-tanh output in the actor's loss (offline
    /// and online): keeps commands where gradients can still move them.
    pub pre_activation_penalty: f64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        Self {
            dynamics_hidden: vec![64, 64],
            traversability_hidden: vec![128, 128],
            walker_hidden: vec![64, 64],
            actor_hidden: vec![128, 128],
            model_steps: 3000,
            actor_steps: 3000,
            batch: 256,
            learning_rate: 1e-3,
            pre_activation_penalty: 0.01,
        }
    }
}

/// Where the critic's target puts J (the two readings of Q = J + Q̄).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// A: y = r + γ[J(s', τ') + min Q̄'(s', a0')], loss (J(s, τ) + Q̄(s, a0) − y)².
    JInTarget,
    /// B: y = r + γ min Q̄'(s', a0'); J enters only the actor's objective.
    #[default]
    JPrior,
}

/// Online fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// Critic variant of the SELFI arm.
    pub variant: Variant,
    /// Hidden widths of the critics Q̄.
    pub critic_hidden: Vec<usize>,
    /// Discount per decision.
    pub gamma: f32,
    /// Polyak factor of the target networks.
    pub tau: f64,
    /// Adam learning rate of the actor.
    pub actor_learning_rate: f64,
    /// Adam learning rate of the critics.
    pub critic_learning_rate: f64,
    /// Transitions per gradient step.
    pub batch: usize,
    /// Replay capacity.
    pub buffer: usize,
    /// Gradient steps per environment step.
    pub updates_per_step: usize,
    /// Actor (and target) updated every this many critic updates.
    pub policy_delay: u64,
    /// Decisions before the actor may change (the critics learn first).
    pub actor_warmup: u64,
    /// Decisions before any gradient step.
    pub learning_starts: u64,
    /// Standard deviation of exploration noise on the executed command (normalised units).
    pub explore_noise: f64,
    /// Target-policy smoothing noise and its clip (normalised units).
    pub target_noise: f64,
    /// Clip of the target-policy smoothing noise.
    pub target_clip: f64,
    /// J is put in the units of the online return by the offline phase's fit
    /// (return ≈ a + c·J on the recordings), then multiplied by this, so that J and
    /// Q̄ are on one scale (they are added).
    pub j_weight: f64,
    /// An actor update is rejected when the mean L2 change of the plan on the probe
    /// states exceeds this (normalised units).
    pub max_plan_change: f64,
    /// Episodes per window of the rollback rule.
    pub rollback_window: usize,
    /// Roll back to the last good actor when a window's mean return falls this far
    /// below the first window's.
    pub rollback_drop: f64,
    /// Policy decisions before a take-over over which its penalty is spread.
    pub intervention_window: usize,
    /// Rewards summed per critic target (n-step TD): the target bootstraps after up
    /// to this many flown decisions of one episode, stopping before a supervisor's
    /// command (not the policy's action) and at an episode's end, so a take-over's
    /// or a collision's cost reaches the decisions before it in fewer updates.
    /// 1: the one-step target.
    pub n_step: usize,
    /// Critic-only updates on the recorded flights in the offline phase, for the
    /// SELFI and the plain arm alike (each with its own target). 0: the critics
    /// start online from zero (Q̄ ≡ 0).
    pub pretrain_critic_steps: usize,
    /// Simulated minutes of each evaluation: before learning and at the end of every
    /// bin, the arm's current actor flies without exploration noise and without
    /// learning, in evaluation rooms of its own (the same at every checkpoint of a
    /// seed, never trained in). 0: no evaluations.
    pub eval_minutes: f64,
    /// The deployed policy (what flies, is published to the policy node, is
    /// evaluated and saved) is an exponential moving average of the learning
    /// actor's weights with this time constant in decisions, so that one noisy
    /// stretch of critic estimates does not swing the flying policy. 0: the
    /// learning actor itself flies.
    pub deploy_average: f64,
    /// The SELFI arm's critics also see J's parts for the plan they score
    /// (goal progress, predicted unsafe share, walker closeness; see
    /// [`model::objective_features`]), so Q̄ can learn from few take-overs how much
    /// each predicted risk costs beyond J's own weights, and the actor follows
    /// that through the models. The plain arm never sees them (no J anywhere).
    pub critic_features: bool,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            variant: Variant::JPrior,
            critic_hidden: vec![256, 256],
            gamma: 0.95,
            tau: 0.005,
            actor_learning_rate: 1e-4,
            critic_learning_rate: 3e-4,
            batch: 256,
            buffer: 100_000,
            updates_per_step: 3,
            policy_delay: 2,
            actor_warmup: 1000,
            learning_starts: 256,
            explore_noise: 0.2,
            target_noise: 0.2,
            target_clip: 0.5,
            j_weight: 1.0,
            max_plan_change: 0.1,
            rollback_window: 20,
            rollback_drop: 5.0,
            intervention_window: 5,
            n_step: 1,
            pretrain_critic_steps: 3000,
            eval_minutes: 20.0,
            deploy_average: 1500.0,
            critic_features: false,
        }
    }
}

/// The online reward's components (each logged separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Per metre of progress towards the goal.
    pub progress: f64,
    /// On reaching the goal.
    pub success: f64,
    /// On a collision (ends the episode).
    pub collision: f64,
    /// Per intervention (spread over the steps before it).
    pub intervention: f64,
    /// Per step, times how far inside `personal_space` the nearest walker is (0..1).
    pub proximity: f64,
    /// Distance from a walker under which the proximity penalty starts (m).
    pub personal_space: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            progress: 1.0,
            success: 5.0,
            collision: -10.0,
            intervention: -5.0,
            proximity: -0.5,
            personal_space: 1.0,
        }
    }
}

/// The twin's navigation task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NavConfig {
    /// Room length range (m).
    pub room_length: [f64; 2],
    /// Room width range (m).
    pub room_width: [f64; 2],
    /// Static obstacle count range.
    pub obstacles: [u32; 2],
    /// Walkers per room.
    pub walkers: usize,
    /// Walking speed (m/s).
    pub walker_speed: f64,
    /// Walkers wait rather than come closer than this to the robot's surface (m),
    /// as people stop for a robot in their way; 0: they walk into it.
    pub walker_yield: f64,
    /// Decisions before an episode is cut off.
    pub max_steps: u32,
    /// The supervisor takes over when the nearest depth in the central third of the
    /// scan is under `stop_distance + stop_per_speed · forward speed` (m).
    pub stop_distance: f64,
    /// See `stop_distance` (s).
    pub stop_per_speed: f64,
    /// Standard deviation of the scan's range noise (m).
    pub scan_noise: f64,
    /// The people tracker reports walkers within this distance (m).
    pub track_range: f64,
    /// Standard deviation of the tracker's position noise (m).
    pub track_position_noise: f64,
    /// Standard deviation of the tracker's velocity noise (m/s).
    pub track_velocity_noise: f64,
    /// Where the scan and the tracks come from: `stereo` (the loop's stereo
    /// stage on the rendered pair, walkers tracked from that depth, pose and
    /// velocity from the flight controller's `state`: what a robot has) or
    /// `truth` (a ray cast of the twin's geometry with `scan_noise`, and every
    /// walker within `track_range` with the `track_*_noise`; for comparison).
    pub sensing: Sensing,
    /// The depth tracker (`sensing = "stereo"`).
    pub tracker: tracking::DepthTrackerConfig,
}

/// Where SELFI's inputs come from (see [`NavConfig::sensing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sensing {
    /// The loop's stereo stage, a tracker on its depth, the flight controller's state.
    #[default]
    Stereo,
    /// The twin's geometry and walkers, with noise.
    Truth,
}

impl Sensing {
    /// Its name in a config file.
    pub fn name(self) -> &'static str {
        match self {
            Sensing::Stereo => "stereo",
            Sensing::Truth => "truth",
        }
    }
}

impl Default for NavConfig {
    fn default() -> Self {
        Self {
            room_length: [9.0, 13.0],
            room_width: [5.0, 7.0],
            obstacles: [3, 8],
            walkers: 3,
            walker_speed: 0.8,
            walker_yield: 0.3,
            max_steps: 150,
            stop_distance: 0.45,
            stop_per_speed: 0.35,
            scan_noise: 0.02,
            track_range: 6.0,
            track_position_noise: 0.05,
            track_velocity_noise: 0.1,
            sensing: Sensing::Stereo,
            tracker: tracking::DepthTrackerConfig::default(),
        }
    }
}

/// Everything `agent selfi` reads from its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SelfiConfig {
    /// The plan.
    pub plan: PlanConfig,
    /// J's weights.
    pub objective: ObjectiveConfig,
    /// Offline phase.
    pub offline: OfflineConfig,
    /// Online phase.
    pub online: OnlineConfig,
    /// Online reward.
    pub reward: RewardConfig,
    /// The task.
    pub nav: NavConfig,
}

impl SelfiConfig {
    /// Parse and check a config; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, RlError> {
        let c: SelfiConfig =
            toml::from_str(text).map_err(|e| RlError::Config(format!("{origin}: {e}")))?;
        c.validate()
            .map_err(|e| RlError::Config(format!("{origin}: {e}")))?;
        Ok(c)
    }

    /// Refuse settings nothing can run with; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let pos = |v: f64, k: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("`{k}` must be a positive number, not {v}"))
            }
        };
        let p = &self.plan;
        if !(1..=32).contains(&p.horizon) {
            return Err(format!("`plan.horizon` must be 1..=32, not {}", p.horizon));
        }
        pos(p.control_hz, "plan.control_hz")?;
        pos(p.max_speed, "plan.max_speed")?;
        pos(p.max_yaw_rate, "plan.max_yaw_rate")?;
        pos(p.altitude, "plan.altitude")?;
        let o = &self.objective;
        for (v, k) in [
            (o.goal, "objective.goal"),
            (o.collision, "objective.collision"),
            (o.smoothness, "objective.smoothness"),
            (o.walker, "objective.walker"),
            (o.walker_ahead, "objective.walker_ahead"),
            (o.ahead_distance, "objective.ahead_distance"),
            (o.ahead_per_speed, "objective.ahead_per_speed"),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("`{k}` must be ≥ 0, not {v}"));
            }
        }
        pos(o.unsafe_distance, "objective.unsafe_distance")?;
        pos(o.walker_clearance, "objective.walker_clearance")?;
        let off = &self.offline;
        for (h, k) in [
            (&off.dynamics_hidden, "offline.dynamics_hidden"),
            (&off.traversability_hidden, "offline.traversability_hidden"),
            (&off.walker_hidden, "offline.walker_hidden"),
            (&off.actor_hidden, "offline.actor_hidden"),
            (&self.online.critic_hidden, "online.critic_hidden"),
        ] {
            if h.is_empty() || h.contains(&0) {
                return Err(format!("`{k}` must list non-zero widths"));
            }
        }
        pos(off.learning_rate, "offline.learning_rate")?;
        if !off.pre_activation_penalty.is_finite() || off.pre_activation_penalty < 0.0 {
            return Err(format!(
                "`offline.pre_activation_penalty` must be ≥ 0, not {}",
                off.pre_activation_penalty
            ));
        }
        if off.batch == 0 {
            return Err("`offline.batch` must be at least 1".into());
        }
        let on = &self.online;
        if !(0.0..1.0).contains(&on.gamma) {
            return Err(format!(
                "`online.gamma` must be in [0, 1), not {}",
                on.gamma
            ));
        }
        if !(0.0..=1.0).contains(&on.tau) {
            return Err(format!("`online.tau` must be in [0, 1], not {}", on.tau));
        }
        pos(on.actor_learning_rate, "online.actor_learning_rate")?;
        pos(on.critic_learning_rate, "online.critic_learning_rate")?;
        pos(on.max_plan_change, "online.max_plan_change")?;
        if on.batch == 0 || on.buffer < on.batch || on.policy_delay == 0 {
            return Err(
                "`online.batch` and `online.policy_delay` must be ≥ 1 and `online.buffer` ≥ batch"
                    .into(),
            );
        }
        if on.rollback_window == 0 {
            return Err("`online.rollback_window` must be at least 1".into());
        }
        if !(1..=50).contains(&on.n_step) {
            return Err(format!("`online.n_step` must be 1..=50, not {}", on.n_step));
        }
        for (v, k) in [
            (on.explore_noise, "online.explore_noise"),
            (on.target_noise, "online.target_noise"),
            (on.target_clip, "online.target_clip"),
            (on.j_weight, "online.j_weight"),
            (on.rollback_drop, "online.rollback_drop"),
            (on.eval_minutes, "online.eval_minutes"),
            (on.deploy_average, "online.deploy_average"),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("`{k}` must be ≥ 0, not {v}"));
            }
        }
        let n = &self.nav;
        for (r, k) in [
            (n.room_length, "nav.room_length"),
            (n.room_width, "nav.room_width"),
        ] {
            if !(r[0].is_finite() && r[1].is_finite() && r[0] >= 4.0 && r[0] <= r[1]) {
                return Err(format!(
                    "`{k}` must be [lo, hi] with 4 ≤ lo ≤ hi, not {r:?}"
                ));
            }
        }
        if n.obstacles[0] > n.obstacles[1] || n.obstacles[1] > 40 {
            return Err(format!(
                "`nav.obstacles` must be [lo, hi] with lo ≤ hi ≤ 40, not {:?}",
                n.obstacles
            ));
        }
        if n.walkers > 12 {
            return Err(format!(
                "`nav.walkers` must be at most 12, not {}",
                n.walkers
            ));
        }
        if n.max_steps == 0 {
            return Err("`nav.max_steps` must be at least 1".into());
        }
        for (v, k) in [
            (n.walker_speed, "nav.walker_speed"),
            (n.walker_yield, "nav.walker_yield"),
            (n.stop_distance, "nav.stop_distance"),
            (n.stop_per_speed, "nav.stop_per_speed"),
            (n.scan_noise, "nav.scan_noise"),
            (n.track_range, "nav.track_range"),
            (n.track_position_noise, "nav.track_position_noise"),
            (n.track_velocity_noise, "nav.track_velocity_noise"),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("`{k}` must be ≥ 0, not {v}"));
            }
        }
        n.tracker.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_holds_the_defaults() {
        let text = include_str!("../../config/selfi.toml");
        let c = SelfiConfig::from_toml_str(text, "agent/rl/config/selfi.toml").unwrap();
        assert_eq!(c, SelfiConfig::default());
    }

    #[test]
    fn config_round_trips_and_bad_keys_are_named() {
        let c = SelfiConfig::default();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(SelfiConfig::from_toml_str(&text, "x.toml").unwrap(), c);
        let e = SelfiConfig::from_toml_str("[online]\nbogus = 1\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("x.toml") && e.to_string().contains("bogus"));
        let e = SelfiConfig::from_toml_str("[online]\ngamma = 1.5\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("online.gamma"), "{e}");
        let e =
            SelfiConfig::from_toml_str("[nav]\nroom_length = [12.0, 9.0]\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("nav.room_length"), "{e}");
        let e = SelfiConfig::from_toml_str("[online]\nvariant = \"c\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("variant"), "{e}");
        let e = SelfiConfig::from_toml_str("[nav]\nsensing = \"lidar\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("lidar"), "{e}");
        let e = SelfiConfig::from_toml_str("[nav.tracker]\nborder = 0.7\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("nav.tracker.border"), "{e}");
        let c = SelfiConfig::from_toml_str("[nav]\nsensing = \"truth\"\n", "x.toml").unwrap();
        assert_eq!(c.nav.sensing, Sensing::Truth);
    }

    #[test]
    fn commands_normalise_and_back() {
        let p = PlanConfig::default();
        let (v, w) = p.command([0.2, -0.4]);
        let a = p.normalise(v, w);
        assert!((a[0] - 0.2).abs() < 1e-6 && (a[1] + 0.4).abs() < 1e-6);
        assert_eq!(p.command([-1.0, 0.0]).0, 0.0);
        assert_eq!(p.command([1.0, 1.0]), (p.max_speed, p.max_yaw_rate));
    }
}
