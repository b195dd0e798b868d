//! The learners' validation on the classic tasks: DQN on CartPole (solved =
//! mean greedy return ≥ 475 over 100 episodes) and SAC on Pendulum (≥ −200 over
//! 10 episodes), with the training throughput that the benchmark compares
//! against Stable-Baselines3.

use crate::RlError;
use crate::env::{CartPoleEnv, Environment, PendulumEnv};
use crate::learner::Learner;
use crate::replay::Transition;
use crate::train::{TrainConfig, episode, make_learner};
use burn::tensor::Device;
use sim::classic::{CartPoleContext, PendulumContext};
use std::time::Instant;

/// A classic validation task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classic {
    /// DQN on CartPole-v1 dynamics.
    CartPole,
    /// SAC on Pendulum-v1 dynamics.
    Pendulum,
}

impl Classic {
    /// Task name.
    pub fn name(self) -> &'static str {
        match self {
            Classic::CartPole => "cartpole (DQN)",
            Classic::Pendulum => "pendulum (SAC)",
        }
    }

    /// Mean greedy return that counts as solved.
    pub fn threshold(self) -> f64 {
        match self {
            Classic::CartPole => 475.0,
            Classic::Pendulum => -200.0,
        }
    }

    /// Environment steps between evaluations in validation runs.
    pub fn eval_every(self) -> u64 {
        match self {
            Classic::CartPole => 5000,
            Classic::Pendulum => 1000,
        }
    }

    /// Episodes of the decisive evaluation.
    pub fn eval_episodes(self) -> usize {
        match self {
            Classic::CartPole => 100,
            Classic::Pendulum => 10,
        }
    }

    /// The standard task (default context, context not observed).
    pub fn env(self) -> Result<Box<dyn Environment>, RlError> {
        Ok(match self {
            Classic::CartPole => {
                Box::new(CartPoleEnv::new(vec![CartPoleContext::default()], false)?)
            }
            Classic::Pendulum => {
                Box::new(PendulumEnv::new(vec![PendulumContext::default()], false)?)
            }
        })
    }
}

/// Outcome of one validation run.
#[derive(Debug, Clone)]
pub struct SolveReport {
    /// The task.
    pub task: Classic,
    /// Seed.
    pub seed: u64,
    /// Environment steps at the first evaluation that met the threshold.
    pub solved_at: Option<u64>,
    /// Mean return of that (or the last) decisive evaluation.
    pub mean_return: f64,
    /// Environment steps trained.
    pub steps: u64,
    /// Gradient steps taken.
    pub updates: u64,
    /// Wall seconds spent training (acting + learning), evaluations excluded.
    pub train_seconds: f64,
}

impl SolveReport {
    /// Training throughput, environment steps per second.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.train_seconds.max(1e-9)
    }
}

/// Mean greedy return over `episodes` episodes with seeds from `base`.
pub fn greedy_mean(
    env: &mut dyn Environment,
    learner: &mut dyn Learner,
    episodes: usize,
    base: u64,
) -> Result<f64, RlError> {
    let mut total = 0.0;
    for k in 0..episodes {
        total += episode(env, learner, 0, base + k as u64)?.ret;
    }
    Ok(total / episodes.max(1) as f64)
}

/// The evaluation of a validation run: a 10-episode greedy screen, then, when
/// it meets the threshold, the decisive evaluation over the task's episodes.
/// Its mean greedy return.
pub fn evaluate(
    task: Classic,
    eval_env: &mut dyn Environment,
    learner: &mut dyn Learner,
) -> Result<f64, RlError> {
    let screen = greedy_mean(eval_env, learner, 10, 1_000_000)?;
    if screen >= task.threshold() && task.eval_episodes() > 10 {
        return greedy_mean(eval_env, learner, task.eval_episodes(), 2_000_000);
    }
    Ok(screen)
}

/// One validation run.
#[derive(Debug, Clone, Copy)]
pub struct SolveSpec {
    /// The task.
    pub task: Classic,
    /// Seed of networks, exploration and episodes.
    pub seed: u64,
    /// Step budget.
    pub max_steps: u64,
    /// Steps between evaluations.
    pub eval_every: u64,
    /// End at the first evaluation that meets the threshold.
    pub stop_when_solved: bool,
}

/// Train on a classic task for at most `max_steps`, evaluating every
/// `eval_every` steps (a 10-episode screen, then the decisive evaluation when
/// the screen passes); stop at the first success when `stop_when_solved`.
pub fn solve(
    spec: SolveSpec,
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(u64, f64),
) -> Result<SolveReport, RlError> {
    let SolveSpec {
        task,
        seed,
        max_steps,
        eval_every,
        stop_when_solved,
    } = spec;
    let mut env = task.env()?;
    let mut eval_env = task.env()?;
    let mut learner = make_learner(env.as_ref(), cfg, device, seed)?;
    let mut report = SolveReport {
        task,
        seed,
        solved_at: None,
        mean_return: f64::NAN,
        steps: 0,
        updates: 0,
        train_seconds: 0.0,
    };
    let mut episodes = 0u64;
    let mut obs = env.reset(0, seed.wrapping_mul(7919))?;
    let mut clock = Instant::now();
    while report.steps < max_steps {
        let act = learner.act(&obs, true);
        let st = env.step(&act)?;
        let done = st.terminated || st.truncated;
        learner.observe(Transition::from_step(std::mem::take(&mut obs), &act, &st))?;
        report.steps += 1;
        obs = if done {
            episodes += 1;
            env.reset(0, seed.wrapping_mul(7919).wrapping_add(episodes))?
        } else {
            st.obs
        };
        if report.steps.is_multiple_of(eval_every) {
            report.train_seconds += clock.elapsed().as_secs_f64();
            let mean = evaluate(task, eval_env.as_mut(), learner.as_mut())?;
            report.mean_return = mean;
            progress(report.steps, mean);
            if mean >= task.threshold() && report.solved_at.is_none() {
                report.solved_at = Some(report.steps);
                if stop_when_solved {
                    break;
                }
            }
            clock = Instant::now();
        }
    }
    if !report.steps.is_multiple_of(eval_every) {
        report.train_seconds += clock.elapsed().as_secs_f64();
    }
    report.updates = learner.updates();
    Ok(report)
}

/// Time of the RL networks on one device: batch-1 action selection and one
/// training step at the configured batch, for the twin task's sizes (54 inputs;
/// DQN: 5 actions; SAC: 2 action dimensions).
#[derive(Debug, Clone, Copy)]
pub struct NetTimes {
    /// DQN action selection (greedy, batch 1), median ms.
    pub dqn_act_ms: f64,
    /// One DQN gradient step (batch 64), median ms.
    pub dqn_step_ms: f64,
    /// SAC action selection (mean action, batch 1), median ms.
    pub sac_act_ms: f64,
    /// One SAC gradient step (critics, actor, α; batch 256), median ms.
    pub sac_step_ms: f64,
    /// PPO action selection (greedy, batch 1), median ms.
    pub ppo_act_ms: f64,
    /// One PPO update on a rollout of `ppo_rollout` steps (its epochs and
    /// minibatches), median ms.
    pub ppo_update_ms: f64,
    /// Steps in the timed PPO rollout.
    pub ppo_rollout: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn time_ms(
    seconds: f64,
    min: usize,
    mut f: impl FnMut() -> Result<(), RlError>,
) -> Result<f64, RlError> {
    let mut times = Vec::new();
    let t0 = Instant::now();
    while times.len() < min || t0.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

/// Measure [`NetTimes`] on `device`, each figure for about `seconds`.
pub fn time_networks(device: &Device, seconds: f64) -> Result<NetTimes, RlError> {
    use crate::dqn::{Dqn, DqnConfig};
    use crate::ppo::{Ppo, PpoConfig};
    use crate::sac::{Sac, SacConfig};
    let obs_dim = 54;
    let mut rng = sim::rng::Rng::new(5);
    let mut obs = || {
        (0..obs_dim)
            .map(|_| rng.uniform() as f32)
            .collect::<Vec<f32>>()
    };
    let mut dqn = Dqn::new(DqnConfig::default(), obs_dim, 5, device, 1)?;
    let mut sac = Sac::new(SacConfig::default(), obs_dim, 2, device, 1)?;
    for i in 0..512 {
        let (o, n) = (obs(), obs());
        let t = |action: Vec<f32>| Transition {
            obs: o.clone(),
            action,
            reward: 0.1,
            next_obs: n.clone(),
            terminated: i % 100 == 99,
            done: i % 100 == 99,
        };
        dqn.observe(t(vec![(i % 5) as f32]))?;
        sac.observe(t(vec![0.3, -0.2]))?;
    }
    let o = obs();
    let dqn_act_ms = time_ms(seconds, 20, || {
        dqn.act(&o, false);
        Ok(())
    })?;
    let dqn_step_ms = time_ms(seconds, 5, || dqn.train_step().map(|_| ()))?;
    let sac_act_ms = time_ms(seconds, 20, || {
        sac.act(&o, false);
        Ok(())
    })?;
    let sac_step_ms = time_ms(seconds, 5, || sac.train_step().map(|_| ()))?;
    let ppo_config = PpoConfig::default();
    let ppo_rollout = ppo_config.rollout;
    let mut ppo = Ppo::new(ppo_config, obs_dim, 5, device, 1)?;
    let rollout: Vec<Transition> = (0..ppo_rollout)
        .map(|i| Transition {
            obs: obs(),
            action: vec![(i % 5) as f32],
            reward: 0.1,
            next_obs: obs(),
            terminated: i % 100 == 99,
            done: i % 100 == 99,
        })
        .collect();
    let ppo_act_ms = time_ms(seconds, 20, || {
        ppo.act(&o, false);
        Ok(())
    })?;
    // Each pass observes a whole rollout, whose last step starts the update;
    // the pushes themselves cost microseconds.
    let ppo_update_ms = time_ms(seconds, 2, || {
        for t in &rollout {
            ppo.observe(t.clone())?;
        }
        Ok(())
    })?;
    Ok(NetTimes {
        dqn_act_ms,
        dqn_step_ms,
        sac_act_ms,
        sac_step_ms,
        ppo_act_ms,
        ppo_update_ms,
        ppo_rollout,
    })
}
