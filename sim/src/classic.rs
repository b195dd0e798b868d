//! Classic control tasks with the standard dynamics, made contextual: the cart-pole
//! and the torque-limited pendulum that RL learners are validated on, each with
//! physical parameters (pole length, gravity, masses) as a context so that
//! curricula can be checked on small, fast problems before the twin.
//!
//! Defaults reproduce the well-known benchmark versions exactly (CartPole-v1:
//! Euler integration at 50 Hz, ±12° / ±2.4 m, 500 steps; Pendulum-v1: 20 Hz,
//! |torque| ≤ 2, |ω| ≤ 8, 200 steps).

use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use thiserror::Error;

/// A context field outside its allowed range.
#[derive(Debug, Error, PartialEq)]
#[error("context '{name}': `{key}` = {value} is outside the allowed range [{min}, {max}]")]
pub struct ClassicRangeError {
    /// The instance's name.
    pub name: String,
    /// The offending key.
    pub key: &'static str,
    /// Its value.
    pub value: f64,
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
}

fn check(
    name: &str,
    key: &'static str,
    value: f64,
    min: f64,
    max: f64,
) -> Result<(), ClassicRangeError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(())
    } else {
        Err(ClassicRangeError {
            name: name.to_string(),
            key,
            value,
            min,
            max,
        })
    }
}

fn normalise(v: f64, min: f64, max: f64) -> f32 {
    ((v - min) / (max - min)) as f32
}

/// Physical parameters of the cart-pole. Missing keys take CartPole-v1's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartPoleContext {
    /// Label used in logs and curricula.
    pub name: String,
    /// Gravity (m/s²), allowed [1, 25].
    pub gravity: f64,
    /// Cart mass (kg), allowed [0.1, 5].
    pub masscart: f64,
    /// Pole mass (kg), allowed [0.01, 2].
    pub masspole: f64,
    /// Half the pole's length (m), allowed [0.05, 3].
    pub length: f64,
    /// Force of one push (N), allowed [1, 30].
    pub force_mag: f64,
}

impl Default for CartPoleContext {
    fn default() -> Self {
        Self {
            name: "default".into(),
            gravity: 9.8,
            masscart: 1.0,
            masspole: 0.1,
            length: 0.5,
            force_mag: 10.0,
        }
    }
}

const CARTPOLE_RANGES: [(&str, f64, f64); 5] = [
    ("gravity", 1.0, 25.0),
    ("masscart", 0.1, 5.0),
    ("masspole", 0.01, 2.0),
    ("length", 0.05, 3.0),
    ("force_mag", 1.0, 30.0),
];

impl CartPoleContext {
    fn values(&self) -> [f64; 5] {
        [
            self.gravity,
            self.masscart,
            self.masspole,
            self.length,
            self.force_mag,
        ]
    }

    /// Check every field against its allowed range.
    pub fn validate(&self) -> Result<(), ClassicRangeError> {
        for ((key, lo, hi), v) in CARTPOLE_RANGES.iter().zip(self.values()) {
            check(&self.name, key, v, *lo, *hi)?;
        }
        Ok(())
    }

    /// The context normalised to [0, 1] per field (what a learner may observe).
    pub fn to_vector(&self) -> Vec<f32> {
        CARTPOLE_RANGES
            .iter()
            .zip(self.values())
            .map(|((_, lo, hi), v)| normalise(v, *lo, *hi))
            .collect()
    }
}

/// The cart-pole: push the cart left or right to keep the pole upright.
/// Reward 1 per step, including the one that ends the episode.
#[derive(Debug, Clone)]
pub struct CartPole {
    ctx: CartPoleContext,
    state: [f64; 4],
    steps: u32,
    /// Steps before truncation.
    pub max_steps: u32,
    done: bool,
}

/// Outcome of one classic-control step.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicStep {
    /// Observation after the step.
    pub obs: Vec<f32>,
    /// Reward of the step.
    pub reward: f64,
    /// The episode ended by the task's rules.
    pub terminated: bool,
    /// The episode hit its step limit.
    pub truncated: bool,
}

/// Angle beyond which the pole has fallen (12°).
pub const CARTPOLE_THETA_LIMIT: f64 = 12.0 * 2.0 * PI / 360.0;
/// Cart position beyond which the episode ends (m).
pub const CARTPOLE_X_LIMIT: f64 = 2.4;

impl CartPole {
    /// A cart-pole with the given physics; call [`CartPole::reset`] before stepping.
    pub fn new(ctx: CartPoleContext) -> Result<Self, ClassicRangeError> {
        ctx.validate()?;
        Ok(Self {
            ctx,
            state: [0.0; 4],
            steps: 0,
            max_steps: 500,
            done: true,
        })
    }

    /// Change the physics (takes effect now).
    pub fn set_context(&mut self, ctx: CartPoleContext) -> Result<(), ClassicRangeError> {
        ctx.validate()?;
        self.ctx = ctx;
        Ok(())
    }

    /// Start an episode: each state component uniform in ±0.05.
    pub fn reset(&mut self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        for s in &mut self.state {
            *s = rng.range(-0.05, 0.05);
        }
        self.steps = 0;
        self.done = false;
        self.obs()
    }

    /// (x, ẋ, θ, θ̇).
    pub fn obs(&self) -> Vec<f32> {
        self.state.iter().map(|v| *v as f32).collect()
    }

    /// Push left (action 0) or right (any other action) for one 20 ms step.
    pub fn step(&mut self, action: usize) -> ClassicStep {
        let c = &self.ctx;
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if action == 0 {
            -c.force_mag
        } else {
            c.force_mag
        };
        let total_mass = c.masspole + c.masscart;
        let pml = c.masspole * c.length;
        let (sin, cos) = theta.sin_cos();
        let temp = (force + pml * theta_dot * theta_dot * sin) / total_mass;
        let theta_acc = (c.gravity * sin - cos * temp)
            / (c.length * (4.0 / 3.0 - c.masspole * cos * cos / total_mass));
        let x_acc = temp - pml * theta_acc * cos / total_mass;
        let tau = 0.02;
        self.state = [
            x + tau * x_dot,
            x_dot + tau * x_acc,
            theta + tau * theta_dot,
            theta_dot + tau * theta_acc,
        ];
        self.steps += 1;
        let terminated = self.state[0].abs() > CARTPOLE_X_LIMIT
            || self.state[2].abs() > CARTPOLE_THETA_LIMIT
            || !self.state.iter().all(|v| v.is_finite());
        let truncated = !terminated && self.steps >= self.max_steps;
        self.done = terminated || truncated;
        ClassicStep {
            obs: self.obs(),
            reward: 1.0,
            terminated,
            truncated,
        }
    }
}

/// Physical parameters of the pendulum. Missing keys take Pendulum-v1's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PendulumContext {
    /// Label used in logs and curricula.
    pub name: String,
    /// Gravity (m/s²), allowed [1, 20].
    pub gravity: f64,
    /// Mass at the tip (kg), allowed [0.2, 3].
    pub mass: f64,
    /// Length (m), allowed [0.3, 3].
    pub length: f64,
}

impl Default for PendulumContext {
    fn default() -> Self {
        Self {
            name: "default".into(),
            gravity: 10.0,
            mass: 1.0,
            length: 1.0,
        }
    }
}

const PENDULUM_RANGES: [(&str, f64, f64); 3] = [
    ("gravity", 1.0, 20.0),
    ("mass", 0.2, 3.0),
    ("length", 0.3, 3.0),
];

impl PendulumContext {
    fn values(&self) -> [f64; 3] {
        [self.gravity, self.mass, self.length]
    }

    /// Check every field against its allowed range.
    pub fn validate(&self) -> Result<(), ClassicRangeError> {
        for ((key, lo, hi), v) in PENDULUM_RANGES.iter().zip(self.values()) {
            check(&self.name, key, v, *lo, *hi)?;
        }
        Ok(())
    }

    /// The context normalised to [0, 1] per field.
    pub fn to_vector(&self) -> Vec<f32> {
        PENDULUM_RANGES
            .iter()
            .zip(self.values())
            .map(|((_, lo, hi), v)| normalise(v, *lo, *hi))
            .collect()
    }
}

/// Largest torque (N·m).
pub const PENDULUM_MAX_TORQUE: f64 = 2.0;
const PENDULUM_MAX_SPEED: f64 = 8.0;

/// The torque-limited pendulum: swing up and balance. Reward is minus
/// (angle² + 0.1·ω² + 0.001·torque²), angle wrapped to [−π, π).
#[derive(Debug, Clone)]
pub struct Pendulum {
    ctx: PendulumContext,
    theta: f64,
    omega: f64,
    steps: u32,
    /// Steps before truncation.
    pub max_steps: u32,
}

fn wrap(a: f64) -> f64 {
    (a + PI).rem_euclid(2.0 * PI) - PI
}

impl Pendulum {
    /// A pendulum with the given physics.
    pub fn new(ctx: PendulumContext) -> Result<Self, ClassicRangeError> {
        ctx.validate()?;
        Ok(Self {
            ctx,
            theta: 0.0,
            omega: 0.0,
            steps: 0,
            max_steps: 200,
        })
    }

    /// Change the physics (takes effect now).
    pub fn set_context(&mut self, ctx: PendulumContext) -> Result<(), ClassicRangeError> {
        ctx.validate()?;
        self.ctx = ctx;
        Ok(())
    }

    /// Start an episode: angle uniform in [−π, π], rate in [−1, 1].
    pub fn reset(&mut self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        self.theta = rng.range(-PI, PI);
        self.omega = rng.range(-1.0, 1.0);
        self.steps = 0;
        self.obs()
    }

    /// (cos θ, sin θ, ω).
    pub fn obs(&self) -> Vec<f32> {
        vec![
            self.theta.cos() as f32,
            self.theta.sin() as f32,
            self.omega as f32,
        ]
    }

    /// Apply a torque (clamped to ±2 N·m) for 50 ms.
    pub fn step(&mut self, torque: f64) -> ClassicStep {
        let u = if torque.is_finite() {
            torque.clamp(-PENDULUM_MAX_TORQUE, PENDULUM_MAX_TORQUE)
        } else {
            0.0
        };
        let c = &self.ctx;
        let dt = 0.05;
        let cost = wrap(self.theta).powi(2) + 0.1 * self.omega.powi(2) + 0.001 * u * u;
        let acc = 3.0 * c.gravity / (2.0 * c.length) * self.theta.sin()
            + 3.0 / (c.mass * c.length * c.length) * u;
        self.omega = (self.omega + acc * dt).clamp(-PENDULUM_MAX_SPEED, PENDULUM_MAX_SPEED);
        self.theta += self.omega * dt;
        self.steps += 1;
        ClassicStep {
            obs: self.obs(),
            reward: -cost,
            terminated: false,
            truncated: self.steps >= self.max_steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cartpole_falls_without_control_and_matches_the_reference_step() {
        let mut env = CartPole::new(CartPoleContext::default()).unwrap();
        env.reset(1);
        env.state = [0.0, 0.0, 0.0, 0.0];
        let s = env.step(1);
        // One push right from rest: ẋ = τ·F/(M+m) up to the pole's reaction.
        assert!((s.obs[1] - 0.195_122).abs() < 1e-4, "{:?}", s.obs);
        assert!((s.obs[3] + 0.292_683).abs() < 1e-4, "{:?}", s.obs);
        let mut n = 1;
        while !env.step(1).terminated {
            n += 1;
            assert!(n < 200, "always pushing right must end the episode");
        }
        assert!(n < 60);
    }

    #[test]
    fn cartpole_truncates_at_its_limit() {
        let mut env = CartPole::new(CartPoleContext::default()).unwrap();
        env.max_steps = 3;
        env.reset(0);
        // Alternating pushes keep it up for 3 steps.
        assert!(!env.step(0).truncated);
        assert!(!env.step(1).truncated);
        let s = env.step(0);
        assert!(s.truncated && !s.terminated);
    }

    #[test]
    fn pendulum_reward_and_limits() {
        let mut env = Pendulum::new(PendulumContext::default()).unwrap();
        env.reset(3);
        env.theta = 0.0;
        env.omega = 0.0;
        let s = env.step(100.0);
        // Clamped to 2 N·m: cost of this step is only the torque term.
        assert!((s.reward + 0.004).abs() < 1e-12);
        assert!((s.obs[2] - 0.3).abs() < 1e-6, "ω = 3/(m l²)·2·dt = 0.3");
        for _ in 0..198 {
            assert!(!env.step(0.0).truncated);
        }
        assert!(env.step(0.0).truncated);
        // Hanging straight down costs π² per step.
        env.reset(0);
        env.theta = PI;
        env.omega = 0.0;
        assert!((env.step(0.0).reward + PI * PI).abs() < 1e-9);
    }

    #[test]
    fn contexts_are_checked_and_normalised() {
        let bad = CartPoleContext {
            length: 9.0,
            ..Default::default()
        };
        let e = CartPole::new(bad).unwrap_err();
        assert_eq!(e.key, "length");
        let nan = PendulumContext {
            gravity: f64::NAN,
            ..Default::default()
        };
        assert_eq!(nan.validate().unwrap_err().key, "gravity");
        let v = CartPoleContext::default().to_vector();
        assert_eq!(v.len(), 5);
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        let toml_err = toml::from_str::<CartPoleContext>("lenght = 1.0").unwrap_err();
        assert!(toml_err.to_string().contains("lenght"));
    }
}
