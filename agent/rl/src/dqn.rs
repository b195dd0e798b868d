//! Double DQN: an online Q-network trained on replayed n-step targets whose
//! action is chosen by the online network and valued by a target network
//! (hard-copied every `target_update_interval` steps), ε-greedy exploration.
//!
//! Defaults are the tuned CartPole settings of RL Baselines3 Zoo (train every 256
//! steps with 128 gradient steps, batch 64, lr 2.3e-3, two layers of 256), the
//! published numbers this learner is validated against.

use crate::RlError;
use crate::env::Act;
use crate::learner::{
    Learner, check_common, check_sizes, load_module, read_state, recent_mean, save_module,
    write_state,
};
use crate::mlp::{Mlp, argmax, layer_sizes, matrix, values};
use crate::replay::{Replay, Transition};
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sim::rng::Rng;
use std::path::Path;

/// DQN settings (TOML table `[dqn]` of a training config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Transitions per gradient step.
    pub batch: usize,
    /// Replay capacity.
    pub buffer: usize,
    /// Environment steps before the first gradient step.
    pub learning_starts: u64,
    /// Discount.
    pub gamma: f32,
    /// Rewards folded into each target (1 = one-step TD).
    pub n_step: usize,
    /// Choose the bootstrap action with the online network (double DQN).
    pub double: bool,
    /// Train every this many environment steps...
    pub train_freq: u64,
    /// ...with this many gradient steps.
    pub gradient_steps: usize,
    /// Copy the online network into the target every this many environment steps.
    pub target_update_interval: u64,
    /// ε at the start.
    pub epsilon_start: f64,
    /// ε after `epsilon_steps`.
    pub epsilon_end: f64,
    /// Steps of the linear ε schedule.
    pub epsilon_steps: u64,
    /// Gradient norm clip.
    pub max_grad_norm: f32,
}

impl Default for DqnConfig {
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            learning_rate: 2.3e-3,
            batch: 64,
            buffer: 100_000,
            learning_starts: 1000,
            gamma: 0.99,
            n_step: 1,
            double: true,
            train_freq: 256,
            gradient_steps: 128,
            target_update_interval: 10,
            epsilon_start: 1.0,
            epsilon_end: 0.04,
            epsilon_steps: 16_000,
            max_grad_norm: 10.0,
        }
    }
}

impl DqnConfig {
    /// Refuse settings no learner can run with.
    pub fn validate(&self) -> Result<(), RlError> {
        check_common(
            "dqn",
            &self.hidden,
            self.learning_rate,
            (self.batch, self.buffer),
            self.gamma,
        )?;
        let bad = |what: &str| Err(RlError::Config(format!("dqn: {what}")));
        if self.n_step == 0 || self.train_freq == 0 || self.target_update_interval == 0 {
            return bad("`n_step`, `train_freq` and `target_update_interval` must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.epsilon_start) || !(0.0..=1.0).contains(&self.epsilon_end) {
            return bad("`epsilon_start` and `epsilon_end` must be in [0, 1]");
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DqnState {
    sizes: Vec<usize>,
    steps: u64,
    updates: u64,
}

/// The DQN learner.
pub struct Dqn {
    config: DqnConfig,
    online: Mlp,
    target: Mlp,
    acting: Option<Mlp>,
    optim: ModuleOptimizer,
    replay: Replay,
    plain: Device,
    train: Device,
    obs_dim: usize,
    actions: usize,
    steps: u64,
    updates: u64,
    copied_at: u64,
    losses: Vec<f32>,
    rng: Rng,
}

impl Dqn {
    /// A fresh learner for `obs_dim` inputs and `actions` discrete actions on
    /// `device` (a plain device; training runs on its autodiff twin).
    pub fn new(
        config: DqnConfig,
        obs_dim: usize,
        actions: usize,
        device: &Device,
        seed: u64,
    ) -> Result<Self, RlError> {
        config.validate()?;
        let sizes = layer_sizes(obs_dim, &config.hidden, actions);
        let train = device.clone().autodiff();
        let online = Mlp::seeded(&sizes, &train, seed);
        let target = online.valid();
        let optim = AdamConfig::new()
            .with_grad_clipping(Some(GradientClippingConfig::Norm(config.max_grad_norm)))
            .init();
        Ok(Self {
            replay: Replay::new(
                config.buffer,
                obs_dim,
                1,
                config.n_step,
                config.gamma,
                seed ^ 0x5eed,
            ),
            config,
            online,
            target,
            acting: None,
            optim,
            plain: device.clone(),
            train,
            obs_dim,
            actions,
            steps: 0,
            updates: 0,
            copied_at: 0,
            losses: Vec::new(),
            rng: Rng::new(seed ^ 0xe95),
        })
    }

    /// ε now.
    pub fn epsilon(&self) -> f64 {
        let c = &self.config;
        let f = (self.steps as f64 / c.epsilon_steps.max(1) as f64).min(1.0);
        c.epsilon_start + f * (c.epsilon_end - c.epsilon_start)
    }

    /// The online network on the plain device, cached until the next gradient step.
    fn acting(&mut self) -> &Mlp {
        let online = &self.online;
        self.acting.get_or_insert_with(|| online.valid())
    }

    fn q_values(&mut self, obs: &[Vec<f32>]) -> Vec<f32> {
        let n = obs.len();
        let flat: Vec<f32> = obs.iter().flatten().copied().collect();
        let x = matrix(flat, n, self.obs_dim, &self.plain);
        values(self.acting().forward(x))
    }

    /// One gradient step on a replay batch now, whatever the schedule (benchmarks).
    pub fn train_step(&mut self) -> Result<f32, RlError> {
        if self.replay.is_empty() {
            return Err(RlError::Config(
                "replay is empty: observe transitions first".into(),
            ));
        }
        self.update()
    }

    /// One gradient step on a replay batch.
    fn update(&mut self) -> Result<f32, RlError> {
        let c = &self.config;
        let b = self.replay.sample(c.batch);
        let (n, na) = (b.size, self.actions);
        let next = matrix(b.next_obs, n, self.obs_dim, &self.plain);
        let q_target = values(self.target.forward(next.clone()));
        let choose = if c.double {
            values(self.online.valid().forward(next))
        } else {
            q_target.clone()
        };
        let mut y = Vec::with_capacity(n);
        let mut onehot = vec![0.0f32; n * na];
        for i in 0..n {
            let a_next = argmax(&choose[i * na..(i + 1) * na]);
            y.push(b.reward[i] + b.discount[i] * q_target[i * na + a_next]);
            let a = (b.action[i] as usize).min(na - 1);
            onehot[i * na + a] = 1.0;
        }
        let x = matrix(b.obs, n, self.obs_dim, &self.train);
        let q = self.online.forward(x);
        let qa = (q * matrix(onehot, n, na, &self.train)).sum_dim(1);
        let d = qa - matrix(y, n, 1, &self.train);
        // Huber loss (δ = 1): quadratic inside, linear outside.
        let a = d.abs();
        let inside = a.clone().clamp_max(1.0);
        let loss = (inside.clone() * inside.clone() * 0.5 + (a - inside)).mean();
        let value = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(RlError::Diverged {
                step: self.steps,
                what: "DQN TD loss",
                value,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &self.online);
        self.online = self.optim.step(c.learning_rate, self.online.clone(), grads);
        self.acting = None;
        self.updates += 1;
        Ok(value)
    }
}

impl Learner for Dqn {
    fn act(&mut self, obs: &[f32], explore: bool) -> Act {
        if explore && self.rng.uniform() < self.epsilon() {
            return Act::Discrete(self.rng.below(self.actions as u64) as usize);
        }
        let q = self.q_values(&[obs.to_vec()]);
        Act::Discrete(argmax(&q))
    }

    fn observe(&mut self, t: Transition) -> Result<(), RlError> {
        self.replay.push(t);
        self.steps += 1;
        let c = self.config.clone();
        if self.steps > c.learning_starts
            && self.steps.is_multiple_of(c.train_freq)
            && self.replay.len() >= c.batch
        {
            for _ in 0..c.gradient_steps {
                let before = self.online.clone();
                match self.update() {
                    Ok(l) => self.losses.push(l),
                    Err(e) => {
                        self.online = before;
                        return Err(e);
                    }
                }
            }
        }
        if self.steps.is_multiple_of(c.target_update_interval) && self.updates > self.copied_at {
            self.target = self.online.valid();
            self.copied_at = self.updates;
        }
        Ok(())
    }

    fn values(&mut self, obs: &[Vec<f32>]) -> Vec<f32> {
        let na = self.actions;
        let q = self.q_values(obs);
        q.chunks(na)
            .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect()
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn updates(&self) -> u64 {
        self.updates
    }

    fn recent_loss(&self) -> Option<f32> {
        recent_mean(&self.losses)
    }

    fn save(&self, dir: &Path) -> Result<(), RlError> {
        save_module(&self.online.valid(), &dir.join("q.bpk"))?;
        save_module(&self.target, &dir.join("q_target.bpk"))?;
        write_state(
            &DqnState {
                sizes: self.online.sizes(),
                steps: self.steps,
                updates: self.updates,
            },
            &dir.join("dqn.toml"),
        )
    }

    fn load(&mut self, dir: &Path) -> Result<(), RlError> {
        let state: DqnState = read_state(&dir.join("dqn.toml"))?;
        check_sizes(
            &dir.join("dqn.toml"),
            std::slice::from_ref(&state.sizes),
            &[self.online.sizes()],
        )?;
        self.online = load_module(self.online.clone(), &dir.join("q.bpk"))?;
        self.target = load_module(self.target.clone(), &dir.join("q_target.bpk"))?;
        self.steps = state.steps;
        self.updates = state.updates;
        self.copied_at = state.updates;
        self.acting = None;
        Ok(())
    }

    fn export_policy(&self, path: &Path) -> Result<(), RlError> {
        save_module(&self.online.valid(), path)
    }

    fn import_policy(&mut self, path: &Path) -> Result<(), RlError> {
        self.online = load_module(self.online.clone(), path)?;
        self.acting = None;
        Ok(())
    }

    fn follow_steps(&mut self, steps: u64) {
        self.steps = steps;
    }

    fn remember(&mut self, t: Transition) {
        self.replay.push(t);
        self.steps += 1;
    }

    fn cut(&mut self) {
        self.replay.cut();
    }

    fn kind(&self) -> &'static str {
        "dqn"
    }

    fn policy_sizes(&self) -> Vec<usize> {
        self.online.sizes()
    }
}
