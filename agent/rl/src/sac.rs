//! Soft actor-critic: a tanh-squashed Gaussian actor, twin Q critics with Polyak
//! target copies, and a temperature α tuned so that the policy's entropy stays
//! near −(action dimensions).
//!
//! Defaults follow Stable-Baselines3's SAC with RL Baselines3 Zoo's Pendulum
//! learning rate (1e-3): two layers of 256, batch 256, τ = 0.005, one gradient
//! step per environment step after 100 random ones.

use crate::RlError;
use crate::env::Act;
use crate::learner::{
    Learner, check_common, check_sizes, load_module, read_state, recent_mean, save_module,
    write_state,
};
use crate::mlp::{Mlp, layer_sizes, matrix, values};
use crate::replay::{Replay, Transition};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sim::rng::Rng;
use std::path::Path;

/// SAC settings (TOML table `[sac]` of a training config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SacConfig {
    /// Hidden layer widths of actor and critics.
    pub hidden: Vec<usize>,
    /// Adam learning rate (actor, critics and temperature).
    pub learning_rate: f64,
    /// Transitions per gradient step.
    pub batch: usize,
    /// Replay capacity.
    pub buffer: usize,
    /// Environment steps with uniformly random actions before learning starts.
    pub learning_starts: u64,
    /// Discount.
    pub gamma: f32,
    /// Polyak factor of the target critics.
    pub tau: f64,
    /// Train every this many environment steps...
    pub train_freq: u64,
    /// ...with this many gradient steps.
    pub gradient_steps: usize,
    /// Initial temperature α.
    pub initial_alpha: f64,
    /// Target entropy; `None` means −(action dimensions).
    pub target_entropy: Option<f64>,
}

impl Default for SacConfig {
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            learning_rate: 1e-3,
            batch: 256,
            buffer: 200_000,
            learning_starts: 100,
            gamma: 0.99,
            tau: 0.005,
            train_freq: 1,
            gradient_steps: 1,
            initial_alpha: 1.0,
            target_entropy: None,
        }
    }
}

impl SacConfig {
    /// Refuse settings no learner can run with.
    pub fn validate(&self) -> Result<(), RlError> {
        check_common(
            "sac",
            &self.hidden,
            self.learning_rate,
            (self.batch, self.buffer),
            self.gamma,
        )?;
        let bad = |what: &str| Err(RlError::Config(format!("sac: {what}")));
        if !(0.0..=1.0).contains(&self.tau) {
            return bad("`tau` must be in [0, 1]");
        }
        if self.train_freq == 0 || self.initial_alpha.is_nan() || self.initial_alpha <= 0.0 {
            return bad("`train_freq` must be at least 1 and `initial_alpha` positive");
        }
        Ok(())
    }
}

/// The twin critics, one module so one optimiser steps both.
#[derive(Module, Debug)]
pub struct Critics {
    q1: Mlp,
    q2: Mlp,
}

impl Critics {
    fn forward(&self, obs: Tensor<2>, act: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let x = Tensor::cat(vec![obs, act], 1);
        (self.q1.forward(x.clone()), self.q2.forward(x))
    }

    fn soft_update(self, online: &Critics, tau: f64) -> Critics {
        Critics {
            q1: self.q1.soft_update(&online.q1, tau),
            q2: self.q2.soft_update(&online.q2, tau),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SacState {
    actor: Vec<usize>,
    critic: Vec<usize>,
    steps: u64,
    updates: u64,
    log_alpha: f64,
}

/// Adam on the one scalar log α.
#[derive(Debug, Clone, Copy, Default)]
struct ScalarAdam {
    m: f64,
    v: f64,
    t: i32,
}

impl ScalarAdam {
    fn step(&mut self, grad: f64, lr: f64) -> f64 {
        self.t += 1;
        self.m = 0.9 * self.m + 0.1 * grad;
        self.v = 0.999 * self.v + 0.001 * grad * grad;
        let mh = self.m / (1.0 - 0.9f64.powi(self.t));
        let vh = self.v / (1.0 - 0.999f64.powi(self.t));
        lr * mh / (vh.sqrt() + 1e-8)
    }
}

const LOG_STD_MIN: f64 = -20.0;
const LOG_STD_MAX: f64 = 2.0;
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// The SAC learner.
pub struct Sac {
    config: SacConfig,
    actor: Mlp,
    critics: Critics,
    target: Critics,
    acting: Option<Mlp>,
    actor_optim: ModuleOptimizer,
    critic_optim: ModuleOptimizer,
    log_alpha: f64,
    alpha_optim: ScalarAdam,
    target_entropy: f64,
    replay: Replay,
    plain: Device,
    train: Device,
    obs_dim: usize,
    dim: usize,
    steps: u64,
    updates: u64,
    losses: Vec<f32>,
    rng: Rng,
}

impl Sac {
    /// A fresh learner for `obs_dim` inputs and `dim` actions in [−1, 1] on
    /// `device` (a plain device; training runs on its autodiff twin).
    pub fn new(
        config: SacConfig,
        obs_dim: usize,
        dim: usize,
        device: &Device,
        seed: u64,
    ) -> Result<Self, RlError> {
        config.validate()?;
        let train = device.clone().autodiff();
        let layers = |input: usize, output: usize| layer_sizes(input, &config.hidden, output);
        let actor = Mlp::seeded(&layers(obs_dim, 2 * dim), &train, seed);
        let critics = Critics {
            q1: Mlp::seeded(&layers(obs_dim + dim, 1), &train, seed.wrapping_add(1)),
            q2: Mlp::seeded(&layers(obs_dim + dim, 1), &train, seed.wrapping_add(2)),
        };
        let target = critics.valid();
        Ok(Self {
            replay: Replay::new(config.buffer, obs_dim, dim, 1, config.gamma, seed ^ 0x5eed),
            log_alpha: config.initial_alpha.ln(),
            target_entropy: config.target_entropy.unwrap_or(-(dim as f64)),
            config,
            actor,
            critics,
            target,
            acting: None,
            actor_optim: AdamConfig::new().init(),
            critic_optim: AdamConfig::new().init(),
            alpha_optim: ScalarAdam::default(),
            plain: device.clone(),
            train,
            obs_dim,
            dim,
            steps: 0,
            updates: 0,
            losses: Vec::new(),
            rng: Rng::new(seed ^ 0x5ac),
        })
    }

    /// The temperature α now.
    pub fn alpha(&self) -> f64 {
        self.log_alpha.exp()
    }

    fn acting(&mut self) -> &Mlp {
        let actor = &self.actor;
        self.acting.get_or_insert_with(|| actor.valid())
    }

    fn noise(&mut self, n: usize) -> Vec<f32> {
        (0..n * self.dim)
            .map(|_| self.rng.normal() as f32)
            .collect()
    }

    /// Squashed sample and its log-probability `[n, 1]` from actor outputs `[n, 2·dim]`.
    fn sample(&self, out: Tensor<2>, noise: Vec<f32>, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let [n, _] = out.dims();
        let d = self.dim;
        let mean = out.clone().slice([0..n, 0..d]);
        let log_std = out.slice([0..n, d..2 * d]).clamp(LOG_STD_MIN, LOG_STD_MAX);
        let eps = matrix(noise, n, d, device);
        let u = mean + log_std.clone().exp() * eps.clone();
        let a = u.tanh();
        let gauss = (eps.clone() * eps).mul_scalar(-0.5) - log_std - HALF_LN_2PI;
        let squash = (a.clone() * a.clone()).neg().add_scalar(1.0 + 1e-6).log();
        let logp = (gauss - squash).sum_dim(1);
        (a, logp)
    }

    /// One gradient step now, whatever the schedule (benchmarks).
    pub fn train_step(&mut self) -> Result<f32, RlError> {
        if self.replay.is_empty() {
            return Err(RlError::Config(
                "replay is empty: observe transitions first".into(),
            ));
        }
        self.update()
    }

    /// One gradient step of critics, temperature and actor.
    fn update(&mut self) -> Result<f32, RlError> {
        let c = self.config.clone();
        let b = self.replay.sample(c.batch);
        let (n, od, d) = (b.size, self.obs_dim, self.dim);
        let alpha = self.alpha();

        // Bootstrap targets with the current actor and the target critics.
        let next = matrix(b.next_obs, n, od, &self.plain);
        let noise = self.noise(n);
        let out = self.acting().forward(next.clone());
        let (a_next, logp_next) = self.sample(out, noise, &self.plain);
        let (t1, t2) = self.target.forward(next, a_next);
        let (t1, t2, lp) = (values(t1), values(t2), values(logp_next));
        let y: Vec<f32> = (0..n)
            .map(|i| b.reward[i] + b.discount[i] * (t1[i].min(t2[i]) - alpha as f32 * lp[i]))
            .collect();

        // Critics.
        let obs = matrix(b.obs, n, od, &self.train);
        let act = matrix(b.action, n, d, &self.train);
        let (q1, q2) = self.critics.forward(obs.clone(), act);
        let y = matrix(y, n, 1, &self.train);
        let e1 = q1 - y.clone();
        let e2 = q2 - y;
        let critic_loss = ((e1.clone() * e1).mean() + (e2.clone() * e2).mean()).mul_scalar(0.5);
        let cl = critic_loss.clone().into_scalar::<f32>();
        if !cl.is_finite() {
            return Err(RlError::Diverged {
                step: self.steps,
                what: "SAC critic loss",
                value: cl,
            });
        }
        let grads = GradientsParams::from_grads(critic_loss.backward(), &self.critics);
        self.critics = self
            .critic_optim
            .step(c.learning_rate, self.critics.clone(), grads);

        // Actor and temperature, on fresh samples of the current policy.
        let noise = self.noise(n);
        let out = self.actor.forward(obs.clone());
        let (a_pi, logp) = self.sample(out, noise, &self.train);
        // The critics only pass the gradient on to the action here: with their
        // weights frozen the backward pass skips the weight gradients it would
        // throw away (a tenth of an update's arithmetic), and the actor's
        // gradient is the same.
        let (p1, p2) = self.critics.clone().no_grad().forward(obs, a_pi);
        let q_pi = p1.min_pair(p2);
        let actor_loss = (logp.clone().mul_scalar(alpha) - q_pi).mean();
        let al = actor_loss.clone().into_scalar::<f32>();
        let mean_logp = values(logp.mean()).first().copied().unwrap_or(f32::NAN);
        if !al.is_finite() || !mean_logp.is_finite() {
            return Err(RlError::Diverged {
                step: self.steps,
                what: "SAC actor loss",
                value: al,
            });
        }
        let grads = GradientsParams::from_grads(actor_loss.backward(), &self.actor);
        self.actor = self
            .actor_optim
            .step(c.learning_rate, self.actor.clone(), grads);
        // d/d(log α) of −log α·(log π + H̄) is −(mean log π + H̄).
        let grad = -(f64::from(mean_logp) + self.target_entropy);
        self.log_alpha -= self.alpha_optim.step(grad, c.learning_rate);

        let online = self.critics.valid();
        let old = std::mem::replace(&mut self.target, online.clone());
        self.target = old.soft_update(&online, c.tau);
        self.acting = None;
        self.updates += 1;
        Ok(cl)
    }
}

impl Learner for Sac {
    fn act(&mut self, obs: &[f32], explore: bool) -> Act {
        if explore && self.steps < self.config.learning_starts {
            return Act::Continuous(
                (0..self.dim)
                    .map(|_| self.rng.range(-1.0, 1.0) as f32)
                    .collect(),
            );
        }
        let x = matrix(obs.to_vec(), 1, self.obs_dim, &self.plain);
        let out = self.acting().forward(x);
        if explore {
            let noise = self.noise(1);
            let (a, _) = self.sample(out, noise, &self.plain);
            Act::Continuous(values(a))
        } else {
            let mean = values(out.slice([0..1, 0..self.dim]).tanh());
            Act::Continuous(mean)
        }
    }

    fn observe(&mut self, t: Transition) -> Result<(), RlError> {
        self.replay.push(t);
        self.steps += 1;
        let c = self.config.clone();
        if self.steps > c.learning_starts
            && self.steps.is_multiple_of(c.train_freq)
            && !self.replay.is_empty()
        {
            for _ in 0..c.gradient_steps {
                let saved = (
                    self.actor.clone(),
                    self.critics.clone(),
                    self.target.clone(),
                    self.log_alpha,
                );
                match self.update() {
                    Ok(l) => self.losses.push(l),
                    Err(e) => {
                        (self.actor, self.critics, self.target, self.log_alpha) = saved;
                        self.acting = None;
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// min(Q1, Q2) at the policy's mean action.
    fn values(&mut self, obs: &[Vec<f32>]) -> Vec<f32> {
        let n = obs.len();
        let flat: Vec<f32> = obs.iter().flatten().copied().collect();
        let x = matrix(flat, n, self.obs_dim, &self.plain);
        let d = self.dim;
        let a = self.acting().forward(x.clone()).slice([0..n, 0..d]).tanh();
        let (q1, q2) = self.critics.valid().forward(x, a);
        values(q1.min_pair(q2))
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
        save_module(&self.actor.valid(), &dir.join("actor.bpk"))?;
        save_module(&self.critics.valid(), &dir.join("critics.bpk"))?;
        save_module(&self.target, &dir.join("critics_target.bpk"))?;
        write_state(
            &SacState {
                actor: self.actor.sizes(),
                critic: self.critics.q1.sizes(),
                steps: self.steps,
                updates: self.updates,
                log_alpha: self.log_alpha,
            },
            &dir.join("sac.toml"),
        )
    }

    fn load(&mut self, dir: &Path) -> Result<(), RlError> {
        let state: SacState = read_state(&dir.join("sac.toml"))?;
        check_sizes(
            &dir.join("sac.toml"),
            &[state.actor.clone(), state.critic.clone()],
            &[self.actor.sizes(), self.critics.q1.sizes()],
        )?;
        self.actor = load_module(self.actor.clone(), &dir.join("actor.bpk"))?;
        self.critics = load_module(self.critics.clone(), &dir.join("critics.bpk"))?;
        self.target = load_module(self.target.clone(), &dir.join("critics_target.bpk"))?;
        self.steps = state.steps;
        self.updates = state.updates;
        self.log_alpha = state.log_alpha;
        self.acting = None;
        Ok(())
    }

    fn export_policy(&self, path: &Path) -> Result<(), RlError> {
        save_module(&self.actor.valid(), path)
    }

    fn import_policy(&mut self, path: &Path) -> Result<(), RlError> {
        self.actor = load_module(self.actor.clone(), path)?;
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

    fn kind(&self) -> &'static str {
        "sac"
    }

    fn policy_sizes(&self) -> Vec<usize> {
        self.actor.sizes()
    }
}
