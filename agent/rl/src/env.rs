//! The environments learners train on, behind one interface: a set of instances
//! (contexts) that an episode can be reset into, and a step function.
//!
//! Three families: the contextual cart-pole (discrete) and pendulum (continuous)
//! used to validate the learners, and the twin's obstacle-avoidance flight
//! (forward flight through a cluttered room; discrete or continuous actions).

use crate::RlError;
use sim::classic::{CartPole, CartPoleContext, Pendulum, PendulumContext};
use sim::{Action, Context, Env, EnvConfig, Task};

/// What a learner may send to an environment.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionSpace {
    /// One of `n` actions.
    Discrete(usize),
    /// A vector of `dim` values, each in [−1, 1] (the environment scales them).
    Continuous(usize),
}

/// One action.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Index of a discrete action.
    Discrete(usize),
    /// Continuous action, each component in [−1, 1].
    Continuous(Vec<f32>),
}

impl Act {
    /// The action as replay stores it: the index as one value, or the vector.
    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            Act::Discrete(a) => vec![*a as f32],
            Act::Continuous(v) => v.clone(),
        }
    }
}

/// Result of one environment step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Observation after the step.
    pub obs: Vec<f32>,
    /// Reward of the step.
    pub reward: f32,
    /// The episode ended by the task's rules (no bootstrapping past it).
    pub terminated: bool,
    /// The episode hit its step limit (bootstrapping continues).
    pub truncated: bool,
    /// The vehicle collided (twin only).
    pub collision: bool,
    /// The task was completed (twin only).
    pub success: bool,
}

/// A family of instances with a gym-style interface.
pub trait Environment: Send {
    /// Length of an observation vector.
    fn obs_dim(&self) -> usize;
    /// The actions the environment takes.
    fn action_space(&self) -> ActionSpace;
    /// Number of instances this environment can be reset into.
    fn instances(&self) -> usize;
    /// Name of instance `i`.
    fn instance_name(&self, i: usize) -> String;
    /// Start an episode in instance `i`; the seed fixes the start state (and the
    /// twin's obstacle layout).
    fn reset(&mut self, instance: usize, seed: u64) -> Result<Vec<f32>, RlError>;
    /// Advance one step.
    fn step(&mut self, act: &Act) -> Result<Step, RlError>;
    /// For the twin task: whether the context is observed and the decision
    /// rate (the onboard policy node needs both); `None` for tasks that do not fly.
    fn twin_card_facts(&self) -> Option<TwinCardFacts> {
        None
    }
}

/// What a twin environment tells the exported policy's card.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwinCardFacts {
    /// The normalised context is part of the observation.
    pub observe_context: bool,
    /// Decisions per second.
    pub control_hz: f64,
}

fn with_context(mut obs: Vec<f32>, ctx: &[f32], observe: bool) -> Vec<f32> {
    if observe {
        obs.extend_from_slice(ctx);
    }
    obs
}

fn instance_index(i: usize, n: usize) -> Result<usize, RlError> {
    if i < n {
        Ok(i)
    } else {
        Err(RlError::Instance(format!(
            "instance {i} does not exist (the set holds {n})"
        )))
    }
}

/// A classic-control simulator that takes a context (the cart-pole, the pendulum).
pub trait ClassicSim: Send + Sized {
    /// Its context type.
    type Context: Clone + Send;
    /// Observation length without the context.
    const OBS: usize;
    /// Context vector length.
    const CONTEXT: usize;
    /// The action space.
    const SPACE: ActionSpace;
    /// A simulator with this context.
    fn with_context(c: Self::Context) -> Result<Self, String>;
    /// Switch context.
    fn set_context(&mut self, c: Self::Context) -> Result<(), String>;
    /// Check a context.
    fn check(c: &Self::Context) -> Result<(), String>;
    /// The context's name.
    fn name(c: &Self::Context) -> &str;
    /// The context normalised for the observation.
    fn vector(c: &Self::Context) -> Vec<f32>;
    /// Start an episode.
    fn start(&mut self, seed: u64) -> Vec<f32>;
    /// One step, or why the action is refused.
    fn advance(&mut self, act: &Act) -> Result<sim::classic::ClassicStep, RlError>;
}

impl ClassicSim for CartPole {
    type Context = CartPoleContext;
    const OBS: usize = 4;
    const CONTEXT: usize = 5;
    const SPACE: ActionSpace = ActionSpace::Discrete(2);
    fn with_context(c: CartPoleContext) -> Result<Self, String> {
        CartPole::new(c).map_err(|e| e.to_string())
    }
    fn set_context(&mut self, c: CartPoleContext) -> Result<(), String> {
        CartPole::set_context(self, c).map_err(|e| e.to_string())
    }
    fn check(c: &CartPoleContext) -> Result<(), String> {
        c.validate().map_err(|e| e.to_string())
    }
    fn name(c: &CartPoleContext) -> &str {
        &c.name
    }
    fn vector(c: &CartPoleContext) -> Vec<f32> {
        c.to_vector()
    }
    fn start(&mut self, seed: u64) -> Vec<f32> {
        self.reset(seed)
    }
    fn advance(&mut self, act: &Act) -> Result<sim::classic::ClassicStep, RlError> {
        match act {
            Act::Discrete(a) if *a < 2 => Ok(self.step(*a)),
            other => Err(RlError::Action(format!(
                "cart-pole takes 0 or 1, got {other:?}"
            ))),
        }
    }
}

impl ClassicSim for Pendulum {
    type Context = PendulumContext;
    const OBS: usize = 3;
    const CONTEXT: usize = 3;
    const SPACE: ActionSpace = ActionSpace::Continuous(1);
    fn with_context(c: PendulumContext) -> Result<Self, String> {
        Pendulum::new(c).map_err(|e| e.to_string())
    }
    fn set_context(&mut self, c: PendulumContext) -> Result<(), String> {
        Pendulum::set_context(self, c).map_err(|e| e.to_string())
    }
    fn check(c: &PendulumContext) -> Result<(), String> {
        c.validate().map_err(|e| e.to_string())
    }
    fn name(c: &PendulumContext) -> &str {
        &c.name
    }
    fn vector(c: &PendulumContext) -> Vec<f32> {
        c.to_vector()
    }
    fn start(&mut self, seed: u64) -> Vec<f32> {
        self.reset(seed)
    }
    /// Torque = action · 2 N·m.
    fn advance(&mut self, act: &Act) -> Result<sim::classic::ClassicStep, RlError> {
        match act {
            Act::Continuous(v) if v.len() == 1 && v[0].is_finite() => {
                Ok(self.step(f64::from(v[0].clamp(-1.0, 1.0)) * sim::classic::PENDULUM_MAX_TORQUE))
            }
            other => Err(RlError::Action(format!(
                "pendulum takes one finite value in [-1, 1], got {other:?}"
            ))),
        }
    }
}

/// A contextual classic-control task over a list of instances; the normalised
/// context is appended to the observation when `observe_context` is set.
pub struct ClassicEnv<S: ClassicSim> {
    contexts: Vec<S::Context>,
    observe_context: bool,
    env: S,
    current: usize,
}

/// The contextual cart-pole (discrete: push left or right).
pub type CartPoleEnv = ClassicEnv<CartPole>;
/// The contextual pendulum (one continuous action: torque / 2 N·m).
pub type PendulumEnv = ClassicEnv<Pendulum>;

impl<S: ClassicSim> ClassicEnv<S> {
    /// An environment over these instances (at least one).
    pub fn new(contexts: Vec<S::Context>, observe_context: bool) -> Result<Self, RlError> {
        let first = contexts
            .first()
            .cloned()
            .ok_or_else(|| RlError::Instance("no instance given".into()))?;
        for c in &contexts {
            S::check(c).map_err(RlError::Instance)?;
        }
        let env = S::with_context(first).map_err(RlError::Instance)?;
        Ok(Self {
            contexts,
            observe_context,
            env,
            current: 0,
        })
    }
}

impl<S: ClassicSim> Environment for ClassicEnv<S> {
    fn obs_dim(&self) -> usize {
        S::OBS + if self.observe_context { S::CONTEXT } else { 0 }
    }
    fn action_space(&self) -> ActionSpace {
        S::SPACE
    }
    fn instances(&self) -> usize {
        self.contexts.len()
    }
    fn instance_name(&self, i: usize) -> String {
        self.contexts
            .get(i)
            .map(|c| S::name(c).to_string())
            .unwrap_or_default()
    }
    fn reset(&mut self, instance: usize, seed: u64) -> Result<Vec<f32>, RlError> {
        let i = instance_index(instance, self.contexts.len())?;
        self.current = i;
        self.env
            .set_context(self.contexts[i].clone())
            .map_err(RlError::Instance)?;
        let obs = self.env.start(seed);
        Ok(with_context(
            obs,
            &S::vector(&self.contexts[i]),
            self.observe_context,
        ))
    }
    fn step(&mut self, act: &Act) -> Result<Step, RlError> {
        let s = self.env.advance(act)?;
        Ok(Step {
            obs: with_context(
                s.obs,
                &S::vector(&self.contexts[self.current]),
                self.observe_context,
            ),
            reward: s.reward as f32,
            terminated: s.terminated,
            truncated: s.truncated,
            collision: false,
            success: false,
        })
    }
}

/// Forward speed (m/s) of the twin task's discrete actions.
pub const TWIN_SPEED: f64 = 1.5;
/// Yaw rates (rad/s) of the twin task's discrete actions.
pub const TWIN_YAW_RATES: [f64; 5] = [-1.5, -0.6, 0.0, 0.6, 1.5];

/// The twin's obstacle-avoidance task: fly down a cluttered room (forward
/// flight; reward = progress in metres, −10 on a collision, +10 at the far end)
/// from a 32-beam depth scan, velocity, goal direction and attitude, plus the
/// context when observed. Discrete actions: constant forward speed and one of
/// five yaw rates; continuous: forward speed in [0, 2] m/s and yaw rate in ±1.5 rad/s.
pub struct TwinAvoidEnv {
    contexts: Vec<Context>,
    observe_context: bool,
    continuous: bool,
    env: Env,
    scan_range: f32,
    sparse: bool,
}

impl TwinAvoidEnv {
    /// Reward only the outcome: +10 at the far end, −10 on a collision, no
    /// per-step progress (the default rewards progress in metres as well).
    pub fn with_sparse_reward(mut self, sparse: bool) -> Self {
        self.sparse = sparse;
        self
    }

    /// An environment over these contexts (at least one): the agent decides at
    /// `control_hz` (the twin's physics keeps its own rate) and episodes last at
    /// most `max_steps` decisions.
    pub fn new(
        contexts: Vec<Context>,
        observe_context: bool,
        continuous: bool,
        max_steps: u32,
        control_hz: f64,
    ) -> Result<Self, RlError> {
        if contexts.is_empty() {
            return Err(RlError::Instance("no twin context".into()));
        }
        for c in &contexts {
            c.validate().map_err(|e| RlError::Instance(e.to_string()))?;
        }
        let config = EnvConfig {
            task: Task::ForwardFlight,
            max_steps,
            control_hz,
            ..EnvConfig::default()
        };
        let scan_range = config.scan_range as f32;
        let env = Env::new(config).map_err(|e| RlError::Instance(e.to_string()))?;
        Ok(Self {
            contexts,
            observe_context,
            continuous,
            env,
            scan_range,
            sparse: false,
        })
    }

    fn vector(&self, obs: &sim::Observation) -> Vec<f32> {
        let mut v = obs.vector(self.scan_range);
        if !self.observe_context {
            v.truncate(v.len() - obs.context.len());
        }
        v
    }
}

impl Environment for TwinAvoidEnv {
    fn twin_card_facts(&self) -> Option<TwinCardFacts> {
        Some(TwinCardFacts {
            observe_context: self.observe_context,
            control_hz: self.env.config().control_hz,
        })
    }
    fn obs_dim(&self) -> usize {
        let context = if self.observe_context {
            Context::default().to_vector().len()
        } else {
            0
        };
        self.env.config().scan_beams + 8 + context
    }
    fn action_space(&self) -> ActionSpace {
        if self.continuous {
            ActionSpace::Continuous(2)
        } else {
            ActionSpace::Discrete(TWIN_YAW_RATES.len())
        }
    }
    fn instances(&self) -> usize {
        self.contexts.len()
    }
    fn instance_name(&self, i: usize) -> String {
        self.contexts
            .get(i)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    }
    fn reset(&mut self, instance: usize, seed: u64) -> Result<Vec<f32>, RlError> {
        let i = instance_index(instance, self.contexts.len())?;
        let obs = self
            .env
            .reset(&self.contexts[i], seed)
            .map_err(|e| RlError::Instance(e.to_string()))?;
        Ok(self.vector(&obs))
    }
    fn step(&mut self, act: &Act) -> Result<Step, RlError> {
        let (forward, yaw_rate) = match act {
            Act::Discrete(a) if !self.continuous && *a < TWIN_YAW_RATES.len() => {
                (TWIN_SPEED, TWIN_YAW_RATES[*a])
            }
            Act::Continuous(v)
                if self.continuous && v.len() == 2 && v.iter().all(|x| x.is_finite()) =>
            {
                (
                    f64::from(v[0].clamp(-1.0, 1.0)) + 1.0,
                    1.5 * f64::from(v[1].clamp(-1.0, 1.0)),
                )
            }
            other => {
                return Err(RlError::Action(format!(
                    "the twin task ({}) cannot take {other:?}",
                    if self.continuous {
                        "two finite values in [-1, 1]"
                    } else {
                        "discrete, 5 actions"
                    }
                )));
            }
        };
        let s = self
            .env
            .step(&Action::Velocity {
                forward,
                left: 0.0,
                up: 0.0,
                yaw_rate,
            })
            .map_err(|e| RlError::Instance(e.to_string()))?;
        let reward = if self.sparse {
            let mut r = 0.0;
            if s.info.collision {
                r += sim::env::COLLISION_REWARD;
            }
            if s.info.success {
                r += sim::env::SUCCESS_REWARD;
            }
            r
        } else {
            s.reward
        };
        Ok(Step {
            obs: self.vector(&s.obs),
            reward: reward as f32,
            terminated: s.terminated,
            truncated: s.truncated,
            collision: s.info.collision,
            success: s.info.success,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_have_the_declared_size_and_bad_actions_are_refused() {
        let mut envs: Vec<Box<dyn Environment>> = vec![
            Box::new(CartPoleEnv::new(vec![CartPoleContext::default()], true).unwrap()),
            Box::new(PendulumEnv::new(vec![PendulumContext::default()], false).unwrap()),
            Box::new(TwinAvoidEnv::new(vec![Context::default()], true, false, 100, 30.0).unwrap()),
            Box::new(TwinAvoidEnv::new(vec![Context::default()], false, true, 100, 30.0).unwrap()),
        ];
        for env in &mut envs {
            let obs = env.reset(0, 1).unwrap();
            assert_eq!(obs.len(), env.obs_dim());
            let good = match env.action_space() {
                ActionSpace::Discrete(_) => Act::Discrete(0),
                ActionSpace::Continuous(d) => Act::Continuous(vec![0.0; d]),
            };
            assert_eq!(env.step(&good).unwrap().obs.len(), env.obs_dim());
            let bad = match env.action_space() {
                ActionSpace::Discrete(n) => Act::Discrete(n),
                ActionSpace::Continuous(d) => Act::Continuous(vec![f32::NAN; d]),
            };
            assert!(matches!(env.step(&bad), Err(RlError::Action(_))));
            assert!(matches!(env.reset(7, 0), Err(RlError::Instance(_))));
        }
    }

    #[test]
    fn the_twin_rewards_progress_and_punishes_collisions() {
        let ctx = Context {
            obstacle_count: 0,
            ..Context::default()
        };
        let mut env = TwinAvoidEnv::new(vec![ctx], true, false, 2000, 30.0).unwrap();
        env.reset(0, 3).unwrap();
        let mut total = 0.0;
        let mut last = None;
        for _ in 0..2000 {
            let s = env.step(&Act::Discrete(2)).unwrap();
            total += s.reward;
            if s.terminated || s.truncated {
                last = Some(s);
                break;
            }
        }
        let last = last.unwrap();
        // Straight down an empty room: either the far end (+10) or the wall after a drift.
        assert!(last.success || last.collision);
        let bonus = if last.success { 10.0 } else { -10.0 };
        assert!(total - bonus > 5.0, "progress is rewarded: {total}");
    }

    #[test]
    fn the_sparse_twin_rewards_only_the_outcome_at_the_chosen_decision_rate() {
        let ctx = Context {
            obstacle_count: 0,
            ..Context::default()
        };
        let run = |hz: f64| {
            let mut env = TwinAvoidEnv::new(vec![ctx.clone()], true, false, 2000, hz)
                .unwrap()
                .with_sparse_reward(true);
            env.reset(0, 3).unwrap();
            let mut rewards = Vec::new();
            loop {
                let s = env.step(&Act::Discrete(2)).unwrap();
                rewards.push(s.reward);
                if s.terminated || s.truncated {
                    return (rewards, s);
                }
            }
        };
        let (fast, end30) = run(30.0);
        let (slow, end10) = run(10.0);
        for (rewards, end) in [(&fast, &end30), (&slow, &end10)] {
            let (last, before) = rewards.split_last().unwrap();
            assert!(before.iter().all(|r| *r == 0.0), "no reward before the end");
            let want = if end.success { 10.0 } else { -10.0 };
            assert!(end.success || end.collision);
            assert_eq!(*last, want);
        }
        // The same flight takes a third of the decisions at 10 Hz.
        let ratio = fast.len() as f64 / slow.len() as f64;
        assert!(
            (ratio - 3.0).abs() < 0.1,
            "{} vs {} decisions",
            fast.len(),
            slow.len()
        );
    }
}
