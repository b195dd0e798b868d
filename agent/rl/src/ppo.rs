//! Proximal policy optimisation (clipped surrogate, GAE) for discrete actions:
//! an on-policy learner whose updates happen when a rollout is full, or when a
//! curriculum iteration ends.
//!
//! Why it is here: the SPaCE reference trained an on-policy learner (TRPO on the
//! point-mass gate, PPO on AntGoal) with one learning call per curriculum
//! iteration of 100·N steps, while round robin learned in fixed 2048-step
//! iterations. With an off-policy learner (DQN) the number of updates per step
//! cannot depend on the curriculum; with this one it does, exactly as in the
//! reference (`rollout_per_iteration`).

use crate::RlError;
use crate::env::Act;
use crate::learner::{
    Learner, check_sizes, load_module, read_state, recent_mean, save_module, write_state,
};
use crate::mlp::{Mlp, argmax, layer_sizes, matrix, values};
use crate::replay::Transition;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use serde::{Deserialize, Serialize};
use sim::rng::Rng;
use std::path::Path;

/// PPO settings (TOML table `[ppo]` of a training config, used with `learner = "ppo"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Hidden layer widths of the policy and of the value network.
    pub hidden: Vec<usize>,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Environment steps per rollout: an update when this many are gathered.
    pub rollout: usize,
    /// Passes over each rollout.
    pub epochs: usize,
    /// Transitions per gradient step...
    pub minibatch: usize,
    /// ...or, when above 0, this many gradient steps per pass whatever the
    /// rollout's length (the reference's PPO2 `nminibatches`): short
    /// iterations then take as many steps as full rollouts.
    pub minibatches: usize,
    /// Discount.
    pub gamma: f32,
    /// GAE λ.
    pub gae_lambda: f32,
    /// Clip range of the probability ratio.
    pub clip: f32,
    /// Weight of the value loss.
    pub value_coef: f32,
    /// Weight of the entropy bonus.
    pub entropy_coef: f32,
    /// Gradient norm clip.
    pub max_grad_norm: f32,
    /// Also update at the end of each curriculum iteration (SPaCE's 100·N
    /// steps) on what was gathered, as the reference's one learning call per
    /// iteration does. Curricula without iterations (round robin, random)
    /// learn on full rollouts only.
    pub rollout_per_iteration: bool,
    /// When above 0, an update stops its passes at the first minibatch whose
    /// approximate KL divergence from the policy that gathered the data
    /// exceeds 1.5 times this: a bound on how far one update moves the policy
    /// (the role of TRPO's `max_kl` in the SPaCE reference), so that short
    /// iterations on one or two rooms cannot swing it. 0: no bound.
    pub target_kl: f32,
    /// With `rollout_per_iteration`, learn on a curriculum iteration longer
    /// than `rollout` in one call at its end too (the reference's one learning
    /// call per iteration, whatever its length), rather than on a full rollout
    /// plus a remainder that may be a few dozen steps.
    pub whole_iterations: bool,
    /// With `rollout_per_iteration`, learn a curriculum iteration of L steps
    /// longer than `rollout` in ceil(L/`rollout`) updates of equal length,
    /// rather than full rollouts plus a remainder that may be a few dozen
    /// steps: as many updates as the reference's TRPO made in such an
    /// iteration (it learned in whole `timesteps_per_batch` batches). Cannot
    /// be combined with `whole_iterations`.
    pub split_iterations: bool,
    /// With `target_kl` above 0: after each update, scale the learning rate
    /// by 1/1.5 when the update moved the policy by more than 2·`target_kl`
    /// (mean KL over the rollout) and by 1.5 when by less than `target_kl`/2,
    /// within [`learning_rate`/10, 10·`learning_rate`], so that every update
    /// moves the policy by about `target_kl`, as a TRPO step of that size does.
    pub adaptive_lr: bool,
    /// Lower the learning rate linearly from `learning_rate` at the first step
    /// to 0 at the run's last (Stable-Baselines3's linear schedule), so that
    /// late updates settle the policy rather than keep it swinging.
    pub anneal_lr: bool,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            learning_rate: 3e-4,
            rollout: 2048,
            epochs: 10,
            minibatch: 64,
            minibatches: 0,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip: 0.2,
            value_coef: 0.5,
            entropy_coef: 0.0,
            max_grad_norm: 0.5,
            rollout_per_iteration: true,
            target_kl: 0.0,
            whole_iterations: false,
            split_iterations: false,
            adaptive_lr: false,
            anneal_lr: false,
        }
    }
}

impl PpoConfig {
    /// Refuse settings no learner can run with.
    pub fn validate(&self) -> Result<(), RlError> {
        let bad = |what: &str| Err(RlError::Config(format!("ppo: {what}")));
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad("`hidden` needs at least one layer, none of width 0");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("`learning_rate` must be a positive number");
        }
        if self.rollout == 0 || self.epochs == 0 || self.minibatch == 0 {
            return bad("`rollout`, `epochs` and `minibatch` must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.gamma) || !(0.0..=1.0).contains(&self.gae_lambda) {
            return bad("`gamma` and `gae_lambda` must be in [0, 1]");
        }
        if !(self.clip > 0.0 && self.clip < 1.0) {
            return bad("`clip` must be in (0, 1)");
        }
        if self.whole_iterations && self.split_iterations {
            return bad("`whole_iterations` and `split_iterations` exclude each other: pick one");
        }
        if !(self.target_kl >= 0.0 && self.target_kl.is_finite()) {
            return bad("`target_kl` must be a number of at least 0 (0: no bound)");
        }
        if !(self.value_coef >= 0.0 && self.entropy_coef >= 0.0 && self.max_grad_norm > 0.0) {
            return bad(
                "`value_coef` and `entropy_coef` must be at least 0, `max_grad_norm` above 0",
            );
        }
        Ok(())
    }
}

/// The policy (action logits) and the value network, one module so one
/// optimiser steps both.
#[derive(Module, Debug)]
pub struct ActorCritic {
    /// Observation → action logits.
    pub actor: Mlp,
    /// Observation → V(s).
    pub critic: Mlp,
}

#[derive(Debug, Serialize, Deserialize)]
struct PpoState {
    sizes: Vec<Vec<usize>>,
    steps: u64,
    updates: u64,
    /// Learning-rate scale of `adaptive_lr` (1 when off, or in older files).
    #[serde(default = "one")]
    lr_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// Advantages (GAE) and value targets of a rollout in order. `done[t]`: the
/// episode ended at step t (so step t+1 starts another); `terminated[t]`: it
/// ended with no value beyond it (a step limit still bootstraps from `v_next`).
pub fn gae(
    reward: &[f32],
    v: &[f32],
    v_next: &[f32],
    terminated: &[bool],
    done: &[bool],
    gamma: f32,
    lambda: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = reward.len();
    let mut adv = vec![0.0f32; n];
    let mut running = 0.0f32;
    for t in (0..n).rev() {
        let boot = if terminated[t] {
            0.0
        } else {
            gamma * v_next[t]
        };
        let delta = reward[t] + boot - v[t];
        // The rollout's last step, or an episode's, starts the sum afresh.
        let carry = if t + 1 == n || done[t] { 0.0 } else { running };
        running = delta + gamma * lambda * carry;
        adv[t] = running;
    }
    let ret = adv.iter().zip(v).map(|(a, v)| a + v).collect();
    (adv, ret)
}

/// The PPO learner.
pub struct Ppo {
    config: PpoConfig,
    net: ActorCritic,
    acting: Option<ActorCritic>,
    optim: ModuleOptimizer,
    rollout: Vec<Transition>,
    plain: Device,
    train: Device,
    obs_dim: usize,
    actions: usize,
    steps: u64,
    updates: u64,
    losses: Vec<f32>,
    kl_stops: u64,
    /// Steps learned in one update while a curriculum iteration is under way
    /// (`whole_iterations`: the whole iteration; `split_iterations`: an equal
    /// share of it); 0 outside iterations or without either option.
    iteration: usize,
    /// Learning-rate scale set by `adaptive_lr`.
    lr_scale: f64,
    /// Mean KL divergence of the last update's policy from the one before it
    /// over that update's rollout (measured with `adaptive_lr` only).
    last_kl: Option<f32>,
    /// The run's step budget, for `anneal_lr` (0: not told, no annealing).
    budget: u64,
    rng: Rng,
}

impl Ppo {
    /// A fresh learner for `obs_dim` inputs and `actions` discrete actions on
    /// `device` (a plain device; training runs on its autodiff twin).
    pub fn new(
        config: PpoConfig,
        obs_dim: usize,
        actions: usize,
        device: &Device,
        seed: u64,
    ) -> Result<Self, RlError> {
        config.validate()?;
        let sizes = |out: usize| layer_sizes(obs_dim, &config.hidden, out);
        let train = device.clone().autodiff();
        let net = ActorCritic {
            actor: Mlp::seeded(&sizes(actions), &train, seed),
            critic: Mlp::seeded(&sizes(1), &train, seed.wrapping_add(1)),
        };
        let optim = AdamConfig::new()
            .with_grad_clipping(Some(GradientClippingConfig::Norm(config.max_grad_norm)))
            .init();
        Ok(Self {
            rollout: Vec::with_capacity(config.rollout),
            config,
            net,
            acting: None,
            optim,
            plain: device.clone(),
            train,
            obs_dim,
            actions,
            steps: 0,
            updates: 0,
            losses: Vec::new(),
            kl_stops: 0,
            iteration: 0,
            lr_scale: 1.0,
            last_kl: None,
            budget: 0,
            rng: Rng::new(seed ^ 0x990),
        })
    }

    /// Action probabilities of the current policy at `obs`.
    pub fn probabilities(&mut self, obs: &[f32]) -> Vec<f32> {
        let x = matrix(obs.to_vec(), 1, self.obs_dim, &self.plain);
        values(softmax(self.acting().actor.forward(x), 1))
    }

    /// Updates cut short by `target_kl` so far.
    pub fn kl_stops(&self) -> u64 {
        self.kl_stops
    }

    /// The learning rate the next update uses (`adaptive_lr` scales it,
    /// `anneal_lr` lowers it as the run's budget is spent).
    pub fn learning_rate(&self) -> f64 {
        let anneal = if self.config.anneal_lr && self.budget > 0 {
            (1.0 - self.steps as f64 / self.budget as f64).max(0.0)
        } else {
            1.0
        };
        self.config.learning_rate * self.lr_scale * anneal
    }

    /// Mean KL of the last update's policy from the previous one over its
    /// rollout, when `adaptive_lr` measured it.
    pub fn last_kl(&self) -> Option<f32> {
        self.last_kl
    }

    /// Transitions gathered since the last update.
    pub fn pending(&self) -> usize {
        self.rollout.len()
    }

    fn acting(&mut self) -> &ActorCritic {
        let net = &self.net;
        self.acting.get_or_insert_with(|| net.valid())
    }

    fn rows(&self, pick: impl Fn(&Transition) -> &[f32]) -> Tensor<2> {
        let n = self.rollout.len();
        let flat: Vec<f32> = self.rollout.iter().flat_map(|t| pick(t).to_vec()).collect();
        matrix(flat, n, self.obs_dim, &self.plain)
    }

    /// Learn on the gathered rollout now (no-op when it is empty).
    pub fn update(&mut self) -> Result<(), RlError> {
        let n = self.rollout.len();
        if n == 0 {
            return Ok(());
        }
        let c = self.config.clone();
        let na = self.actions;
        let obs = self.rows(|t| &t.obs);
        let next = self.rows(|t| &t.next_obs);
        let (v, v_next, old_logp) = {
            let net = self.acting();
            let v = values(net.critic.forward(obs.clone()));
            let v_next = values(net.critic.forward(next));
            let lp = values(log_softmax(net.actor.forward(obs.clone()), 1));
            (v, v_next, lp)
        };
        let action: Vec<usize> = self
            .rollout
            .iter()
            .map(|t| (t.action.first().copied().unwrap_or(0.0).max(0.0) as usize).min(na - 1))
            .collect();
        let old: Vec<f32> = (0..n).map(|i| old_logp[i * na + action[i]]).collect();
        let reward: Vec<f32> = self.rollout.iter().map(|t| t.reward).collect();
        let term: Vec<bool> = self.rollout.iter().map(|t| t.terminated).collect();
        let done: Vec<bool> = self.rollout.iter().map(|t| t.done).collect();
        let (mut adv, ret) = gae(&reward, &v, &v_next, &term, &done, c.gamma, c.gae_lambda);
        let mean = adv.iter().sum::<f32>() / n as f32;
        let std = (adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / n as f32).sqrt();
        for a in &mut adv {
            *a = (*a - mean) / (std + 1e-8);
        }
        let mut order: Vec<usize> = (0..n).collect();
        let size = if c.minibatches > 0 {
            n.div_ceil(c.minibatches)
        } else {
            c.minibatch
        };
        let before = self.net.clone();
        let lr = self.learning_rate();
        'passes: for _ in 0..c.epochs {
            for i in (1..n).rev() {
                order.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            for chunk in order.chunks(size) {
                let m = chunk.len();
                let mut x = Vec::with_capacity(m * self.obs_dim);
                let mut onehot = vec![0.0f32; m * na];
                let (mut a_m, mut old_m, mut ret_m) = (Vec::new(), Vec::new(), Vec::new());
                for (k, &i) in chunk.iter().enumerate() {
                    x.extend_from_slice(&self.rollout[i].obs);
                    onehot[k * na + action[i]] = 1.0;
                    a_m.push(adv[i]);
                    old_m.push(old[i]);
                    ret_m.push(ret[i]);
                }
                let x = matrix(x, m, self.obs_dim, &self.train);
                let logp_all = log_softmax(self.net.actor.forward(x.clone()), 1);
                let logp = (logp_all.clone() * matrix(onehot, m, na, &self.train)).sum_dim(1);
                let log_ratio = logp - matrix(old_m, m, 1, &self.train);
                if c.target_kl > 0.0 {
                    // KL(old || new) ≈ E[(r − 1) − log r], r the probability ratio.
                    let kl = (log_ratio.clone().exp() - 1.0 - log_ratio.clone())
                        .mean()
                        .into_scalar::<f32>();
                    if kl > 1.5 * c.target_kl {
                        self.kl_stops += 1;
                        break 'passes;
                    }
                }
                let ratio = log_ratio.exp();
                let a = matrix(a_m, m, 1, &self.train);
                let surr = (ratio.clone() * a.clone())
                    .min_pair(ratio.clamp(1.0 - c.clip, 1.0 + c.clip) * a);
                let policy_loss = surr.mean().neg();
                let value = self.net.critic.forward(x);
                let value_loss = (value - matrix(ret_m, m, 1, &self.train))
                    .powi_scalar(2)
                    .mean();
                let entropy = (softmax(logp_all.clone(), 1) * logp_all)
                    .sum_dim(1)
                    .mean()
                    .neg();
                let loss = policy_loss + value_loss.mul_scalar(c.value_coef)
                    - entropy.mul_scalar(c.entropy_coef);
                let l = loss.clone().into_scalar::<f32>();
                if !l.is_finite() {
                    self.net = before;
                    self.acting = None;
                    self.rollout.clear();
                    return Err(RlError::Diverged {
                        step: self.steps,
                        what: "PPO loss",
                        value: l,
                    });
                }
                let grads = GradientsParams::from_grads(loss.backward(), &self.net);
                self.net = self.optim.step(lr, self.net.clone(), grads);
                self.losses.push(l);
                self.updates += 1;
            }
        }
        self.acting = None;
        if c.adaptive_lr && c.target_kl > 0.0 {
            self.adapt_learning_rate(obs, &action, &old);
        }
        self.rollout.clear();
        Ok(())
    }

    /// `adaptive_lr`: measure how far the update just made moved the policy on
    /// its rollout (`obs`, the rollout's observations on the acting device) and scale the next update's learning rate towards `target_kl`.
    fn adapt_learning_rate(&mut self, obs: Tensor<2>, action: &[usize], old: &[f32]) {
        let na = self.actions;
        let target = self.config.target_kl;
        let lp = values(log_softmax(self.acting().actor.forward(obs), 1));
        let n = action.len().max(1);
        let kl = action
            .iter()
            .zip(old)
            .enumerate()
            .map(|(i, (&a, &o))| {
                let d = lp[i * na + a] - o;
                d.exp() - 1.0 - d
            })
            .sum::<f32>()
            / n as f32;
        if kl > 2.0 * target {
            self.lr_scale /= 1.5;
        } else if kl < 0.5 * target {
            self.lr_scale *= 1.5;
        }
        self.lr_scale = self.lr_scale.clamp(0.1, 10.0);
        self.last_kl = Some(kl);
    }
}

impl Learner for Ppo {
    fn act(&mut self, obs: &[f32], explore: bool) -> Act {
        let x = matrix(obs.to_vec(), 1, self.obs_dim, &self.plain);
        let logits = values(self.acting().actor.forward(x));
        if !explore {
            return Act::Discrete(argmax(&logits));
        }
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f64> = logits.iter().map(|l| f64::from(l - top).exp()).collect();
        let mut u = self.rng.uniform() * w.iter().sum::<f64>();
        for (i, wi) in w.iter().enumerate() {
            if u < *wi {
                return Act::Discrete(i);
            }
            u -= wi;
        }
        Act::Discrete(self.actions - 1)
    }

    fn observe(&mut self, t: Transition) -> Result<(), RlError> {
        self.rollout.push(t);
        self.steps += 1;
        let batch = match self.iteration {
            0 => self.config.rollout,
            b => b,
        };
        if self.rollout.len() >= batch {
            self.update()?;
        }
        Ok(())
    }

    fn begin_iteration(&mut self, steps: u64) {
        if !self.config.rollout_per_iteration {
            return;
        }
        let steps = usize::try_from(steps).unwrap_or(usize::MAX);
        if self.config.whole_iterations {
            // Shorter iterations are learned at their end all the same.
            self.iteration = steps.max(self.config.rollout);
        } else if self.config.split_iterations && steps > 0 {
            let parts = steps.div_ceil(self.config.rollout);
            self.iteration = steps.div_ceil(parts);
        }
    }

    fn end_iteration(&mut self) -> Result<(), RlError> {
        self.iteration = 0;
        if self.config.rollout_per_iteration {
            self.update()?;
        }
        Ok(())
    }

    fn values(&mut self, obs: &[Vec<f32>]) -> Vec<f32> {
        let n = obs.len();
        let flat: Vec<f32> = obs.iter().flatten().copied().collect();
        let x = matrix(flat, n, self.obs_dim, &self.plain);
        values(self.acting().critic.forward(x))
    }

    fn set_budget(&mut self, total: u64) {
        self.budget = total;
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
        let net = self.net.valid();
        save_module(&net.actor, &dir.join("policy_logits.bpk"))?;
        save_module(&net.critic, &dir.join("value.bpk"))?;
        write_state(
            &PpoState {
                sizes: vec![net.actor.sizes(), net.critic.sizes()],
                steps: self.steps,
                updates: self.updates,
                lr_scale: self.lr_scale,
            },
            &dir.join("ppo.toml"),
        )
    }

    fn load(&mut self, dir: &Path) -> Result<(), RlError> {
        let state: PpoState = read_state(&dir.join("ppo.toml"))?;
        check_sizes(
            &dir.join("ppo.toml"),
            &state.sizes,
            &[self.net.actor.sizes(), self.net.critic.sizes()],
        )?;
        let actor = load_module(self.net.actor.clone(), &dir.join("policy_logits.bpk"))?;
        let critic = load_module(self.net.critic.clone(), &dir.join("value.bpk"))?;
        self.net = ActorCritic { actor, critic };
        self.steps = state.steps;
        self.updates = state.updates;
        self.lr_scale = if state.lr_scale.is_finite() && state.lr_scale > 0.0 {
            state.lr_scale.clamp(0.1, 10.0)
        } else {
            1.0
        };
        self.rollout.clear();
        self.acting = None;
        Ok(())
    }

    fn export_policy(&self, path: &Path) -> Result<(), RlError> {
        save_module(&self.net.actor.valid(), path)
    }

    fn import_policy(&mut self, path: &Path) -> Result<(), RlError> {
        self.net.actor = load_module(self.net.actor.clone(), path)?;
        self.acting = None;
        Ok(())
    }

    fn follow_steps(&mut self, steps: u64) {
        self.steps = steps;
    }

    fn remember(&mut self, _t: Transition) {
        // On-policy: a step it did not take with its current policy is not
        // learned from later either.
        self.steps += 1;
    }

    fn kind(&self) -> &'static str {
        "ppo"
    }

    fn policy_sizes(&self) -> Vec<usize> {
        self.net.actor.sizes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;

    #[test]
    fn gae_cuts_at_episode_ends_and_bootstraps_truncations() {
        // Two episodes in one rollout: the first terminates at t = 1, the
        // second is cut by the rollout's end (not terminated: it bootstraps).
        let r = [1.0, 1.0, 0.0, 2.0];
        let v = [0.5, 0.5, 0.5, 0.5];
        let v_next = [0.5, 9.0, 0.5, 1.0];
        let term = [false, true, false, false];
        let done = [false, true, false, false];
        let (g, l) = (0.9, 0.8);
        let (adv, ret) = gae(&r, &v, &v_next, &term, &done, g, l);
        let d1 = 1.0 - 0.5; // terminated: V(next) = 9 ignored
        let d0 = 1.0 + g * 0.5 - 0.5;
        let d3 = 2.0 + g * 1.0 - 0.5;
        let d2 = 0.0 + g * 0.5 - 0.5;
        let want = [d0 + g * l * d1, d1, d2 + g * l * d3, d3];
        for (a, w) in adv.iter().zip(want) {
            assert!((a - w).abs() < 1e-6, "{adv:?} vs {want:?}");
        }
        assert!((ret[1] - (d1 + 0.5)).abs() < 1e-6);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = PpoConfig {
            clip: 1.5,
            ..PpoConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("clip"), "{e}");
        let e = PpoConfig {
            minibatch: 0,
            ..PpoConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("minibatch"), "{e}");
        for bad in [-0.01, f32::NAN] {
            let e = PpoConfig {
                target_kl: bad,
                ..PpoConfig::default()
            }
            .validate()
            .unwrap_err();
            assert!(e.to_string().contains("target_kl"), "{e}");
        }
    }

    /// A two-armed bandit whose second arm pays: a few small rollouts move
    /// the policy to it and V(s) towards its payoff; an iteration's end
    /// updates on a part-filled rollout only when asked to.
    #[test]
    fn learns_a_bandit_and_updates_at_iteration_ends() {
        let d = cpu();
        let cfg = PpoConfig {
            hidden: vec![16],
            learning_rate: 1e-2,
            rollout: 64,
            minibatch: 32,
            epochs: 4,
            ..PpoConfig::default()
        };
        let mut p = Ppo::new(cfg.clone(), 2, 2, &d, 3).unwrap();
        let obs = vec![1.0, 0.0];
        for _ in 0..640 {
            let a = match p.act(&obs, true) {
                Act::Discrete(a) => a,
                other => panic!("{other:?}"),
            };
            let reward = if a == 1 { 1.0 } else { 0.0 };
            p.observe(Transition {
                obs: obs.clone(),
                action: vec![a as f32],
                reward,
                next_obs: obs.clone(),
                terminated: true,
                done: true,
            })
            .unwrap();
        }
        assert_eq!(p.pending(), 0);
        assert!(p.updates() > 0);
        let mut ones = 0;
        for _ in 0..100 {
            if matches!(p.act(&obs, true), Act::Discrete(1)) {
                ones += 1;
            }
        }
        assert!(ones > 90, "arm 1 taken {ones} times in 100");
        assert!(matches!(p.act(&obs, false), Act::Discrete(1)));
        let v = p.values(std::slice::from_ref(&obs))[0];
        assert!(v > 0.5, "V = {v}");

        let t = Transition {
            obs: obs.clone(),
            action: vec![1.0],
            reward: 1.0,
            next_obs: obs.clone(),
            terminated: true,
            done: true,
        };
        let before = p.updates();
        p.observe(t.clone()).unwrap();
        p.end_iteration().unwrap();
        assert_eq!(p.pending(), 0);
        assert!(p.updates() > before);
        let mut q = Ppo::new(
            PpoConfig {
                rollout_per_iteration: false,
                ..cfg
            },
            2,
            2,
            &d,
            3,
        )
        .unwrap();
        q.observe(t).unwrap();
        q.end_iteration().unwrap();
        assert_eq!((q.pending(), q.updates()), (1, 0));
    }

    /// One rewarded step in the middle of an episode.
    fn mid_episode_step() -> Transition {
        Transition {
            obs: vec![1.0, 0.0],
            action: vec![0.0],
            reward: 1.0,
            next_obs: vec![1.0, 0.0],
            terminated: false,
            done: false,
        }
    }

    #[test]
    fn a_fixed_number_of_minibatches_takes_the_same_steps_for_any_rollout() {
        let d = cpu();
        let t = mid_episode_step();
        let steps_for = |n: usize, minibatches: usize| {
            let cfg = PpoConfig {
                hidden: vec![8],
                rollout: 10_000,
                epochs: 3,
                minibatch: 64,
                minibatches,
                ..PpoConfig::default()
            };
            let mut p = Ppo::new(cfg, 2, 2, &d, 1).unwrap();
            for _ in 0..n {
                p.observe(t.clone()).unwrap();
            }
            p.end_iteration().unwrap();
            p.updates()
        };
        // By size: 3 passes of ceil(n / 64) steps; by count: 3 passes of 4.
        assert_eq!((steps_for(100, 0), steps_for(1000, 0)), (6, 48));
        assert_eq!((steps_for(100, 4), steps_for(1000, 4)), (12, 12));
    }

    /// An iteration longer than the rollout: by default a full rollout is
    /// learned mid-way and the remainder at the end; with `whole_iterations`
    /// the whole iteration is learned in one call when its last step comes in.
    #[test]
    fn whole_iterations_learn_a_long_iteration_in_one_call() {
        let d = cpu();
        let t = mid_episode_step();
        let run = |whole_iterations: bool| {
            let cfg = PpoConfig {
                hidden: vec![8],
                rollout: 16,
                epochs: 1,
                minibatches: 2,
                whole_iterations,
                ..PpoConfig::default()
            };
            let mut p = Ppo::new(cfg, 2, 2, &d, 1).unwrap();
            p.begin_iteration(20);
            for _ in 0..20 {
                p.observe(t.clone()).unwrap();
            }
            let mid = (p.pending(), p.updates());
            p.end_iteration().unwrap();
            // After the iteration, full rollouts are learned as they fill again.
            for _ in 0..16 {
                p.observe(t.clone()).unwrap();
            }
            (mid, p.updates(), p.pending())
        };
        // Split: one update of 16 mid-way (2 steps), 4 left for the end (2 more).
        assert_eq!(run(false), ((4, 2), 6, 0));
        // Whole: one call on all 20 when the iteration's last step comes in
        // (2 steps), nothing left for the end.
        assert_eq!(run(true), ((0, 2), 4, 0));
    }

    /// With `split_iterations` a long iteration is learned in as many equal
    /// updates as it holds rollouts (rounded up), not in full rollouts plus a
    /// short remainder; a short one is learned whole at its end. Combining it
    /// with `whole_iterations` is refused.
    #[test]
    fn split_iterations_learn_a_long_iteration_in_equal_parts() {
        let d = cpu();
        let t = mid_episode_step();
        let cfg = PpoConfig {
            hidden: vec![8],
            rollout: 16,
            epochs: 1,
            minibatches: 2,
            split_iterations: true,
            ..PpoConfig::default()
        };
        let mut p = Ppo::new(cfg.clone(), 2, 2, &d, 1).unwrap();
        // 40 steps hold 2.5 rollouts of 16: three updates of 14, 14 and 12.
        p.begin_iteration(40);
        let mut learned_at = Vec::new();
        for i in 1..=40 {
            let before = p.updates();
            p.observe(t.clone()).unwrap();
            if p.updates() > before {
                learned_at.push(i);
            }
        }
        assert_eq!(learned_at, vec![14, 28]);
        assert_eq!(p.pending(), 12);
        p.end_iteration().unwrap();
        assert_eq!((p.pending(), p.updates()), (0, 6));
        // A 10-step iteration: one update on all 10, none left for its end.
        p.begin_iteration(10);
        for _ in 0..10 {
            p.observe(t.clone()).unwrap();
        }
        assert_eq!((p.pending(), p.updates()), (0, 8));
        p.end_iteration().unwrap();
        assert_eq!(p.updates(), 8);
        // Outside iterations, full rollouts again.
        for _ in 0..15 {
            p.observe(t.clone()).unwrap();
        }
        assert_eq!((p.pending(), p.updates()), (15, 8));
        let both = PpoConfig {
            whole_iterations: true,
            ..cfg
        };
        let err = Ppo::new(both, 2, 2, &d, 1).err().unwrap().to_string();
        assert!(err.contains("exclude each other"), "{err}");
    }

    /// With `whole_iterations`, a curriculum's learning does not depend on
    /// `rollout`: iterations shorter than it are learned at their end, longer
    /// ones in one call at their last step, so two rollouts give the same
    /// updates and the same network (what lets round-robin's rollout be tuned
    /// without touching SPaCE's runs).
    #[test]
    fn with_whole_iterations_the_rollout_does_not_change_iteration_learning() {
        let d = cpu();
        let obs = vec![1.0, 0.0];
        let run = |rollout: usize| {
            let cfg = PpoConfig {
                hidden: vec![8],
                rollout,
                epochs: 2,
                minibatches: 2,
                whole_iterations: true,
                ..PpoConfig::default()
            };
            let mut p = Ppo::new(cfg, 2, 2, &d, 7).unwrap();
            let mut updates = Vec::new();
            for n in [6, 20, 40] {
                p.begin_iteration(n as u64);
                feed_bandit(&mut p, &obs, n);
                p.end_iteration().unwrap();
                updates.push(p.updates());
            }
            (updates, p.values(std::slice::from_ref(&obs))[0])
        };
        let (short, long) = (run(8), run(32));
        // Two gradient steps per pass, two passes: 4 per iteration.
        assert_eq!(short.0, vec![4, 8, 12]);
        assert_eq!(short, long);
    }

    /// Gather `n` one-step bandit episodes at `obs`, the two arms in turn;
    /// arm 1 pays 1, arm 0 nothing.
    fn feed_bandit(p: &mut Ppo, obs: &[f32], n: usize) {
        for i in 0..n {
            let a = i % 2;
            p.observe(Transition {
                obs: obs.to_vec(),
                action: vec![a as f32],
                reward: a as f32,
                next_obs: obs.to_vec(),
                terminated: true,
                done: true,
            })
            .unwrap();
        }
    }

    /// `anneal_lr` lowers the rate in step with the budget spent, and a
    /// learner never told its budget (or without the option) keeps it.
    #[test]
    fn anneal_lr_falls_linearly_to_zero_over_the_budget() {
        let d = cpu();
        let cfg = PpoConfig {
            hidden: vec![8],
            rollout: 10_000,
            anneal_lr: true,
            ..PpoConfig::default()
        };
        let obs = vec![1.0, 0.0];
        let mut p = Ppo::new(cfg.clone(), 2, 2, &d, 1).unwrap();
        let mut untold = Ppo::new(cfg.clone(), 2, 2, &d, 1).unwrap();
        let mut off = Ppo::new(
            PpoConfig {
                anneal_lr: false,
                ..cfg
            },
            2,
            2,
            &d,
            1,
        )
        .unwrap();
        p.set_budget(400);
        off.set_budget(400);
        let mut rates = vec![p.learning_rate()];
        for _ in 0..5 {
            for q in [&mut p, &mut untold, &mut off] {
                feed_bandit(q, &obs, 100);
            }
            rates.push(p.learning_rate());
        }
        let want = [3e-4, 2.25e-4, 1.5e-4, 0.75e-4, 0.0, 0.0];
        for (r, w) in rates.iter().zip(want) {
            assert!((r - w).abs() < 1e-12, "{rates:?}");
        }
        assert_eq!(untold.learning_rate(), 3e-4);
        assert_eq!(off.learning_rate(), 3e-4);
    }

    /// `adaptive_lr` steers every update towards `target_kl`: a learning rate
    /// far too small is raised, one far too large is lowered, and the scale
    /// is kept within its bounds.
    #[test]
    fn adaptive_lr_moves_each_update_towards_the_kl_target() {
        let d = cpu();
        let obs = vec![1.0, 0.0];
        let run = |learning_rate: f64| {
            let cfg = PpoConfig {
                hidden: vec![16],
                learning_rate,
                rollout: 10_000,
                epochs: 2,
                minibatches: 4,
                target_kl: 0.01,
                adaptive_lr: true,
                ..PpoConfig::default()
            };
            let mut p = Ppo::new(cfg, 2, 2, &d, 5).unwrap();
            let mut kls = Vec::new();
            for _ in 0..8 {
                // Arm 1 pays, arm 0 does not: the policy keeps moving.
                feed_bandit(&mut p, &obs, 64);
                p.end_iteration().unwrap();
                kls.push(p.last_kl().unwrap());
            }
            (p.learning_rate() / learning_rate, kls)
        };
        let (up, small) = run(1e-5);
        assert!(up > 10.0 - 1e-9, "scale {up}, KL {small:?}");
        assert!(
            small[0] < 0.005,
            "a tiny rate moves the policy little: {small:?}"
        );
        let (down, large) = run(0.5);
        assert!(down < 1.0, "scale {down}, KL {large:?}");
        assert!(
            large[0] > 0.02,
            "a huge rate moves the policy far: {large:?}"
        );
        // Without the option the rate stays as configured and KL is not measured.
        let mut p = Ppo::new(
            PpoConfig {
                hidden: vec![16],
                target_kl: 0.01,
                ..PpoConfig::default()
            },
            2,
            2,
            &d,
            5,
        )
        .unwrap();
        p.observe(Transition {
            obs: obs.clone(),
            action: vec![1.0],
            reward: 1.0,
            next_obs: obs,
            terminated: true,
            done: true,
        })
        .unwrap();
        p.end_iteration().unwrap();
        assert_eq!((p.learning_rate(), p.last_kl()), (3e-4, None));
    }

    /// One big-step update on a bandit rollout: without a bound the policy
    /// moves far from the one that gathered the data; with `target_kl` the
    /// passes stop early and the measured KL stays near the bound.
    #[test]
    fn target_kl_bounds_how_far_one_update_moves_the_policy() {
        let d = cpu();
        let obs = vec![1.0, 0.0];
        let moved = |target_kl: f32| {
            let cfg = PpoConfig {
                hidden: vec![16],
                learning_rate: 3e-2,
                rollout: 10_000,
                epochs: 20,
                minibatch: 32,
                clip: 0.9,
                target_kl,
                ..PpoConfig::default()
            };
            let mut p = Ppo::new(cfg, 2, 2, &d, 5).unwrap();
            let before = p.probabilities(&obs);
            feed_bandit(&mut p, &obs, 128);
            p.end_iteration().unwrap();
            let after = p.probabilities(&obs);
            let kl: f32 = before
                .iter()
                .zip(&after)
                .map(|(b, a)| b * (b / a).ln())
                .sum();
            (kl, p.updates(), p.kl_stops())
        };
        let (free, free_steps, free_stops) = moved(0.0);
        let (bounded, bounded_steps, stops) = moved(0.01);
        assert_eq!(free_stops, 0);
        assert_eq!(stops, 1, "the bound stopped the update once");
        assert!(
            bounded_steps < free_steps,
            "{bounded_steps} vs {free_steps}"
        );
        assert!(free > 0.5, "unbounded update moved only {free}");
        assert!(bounded < 0.1, "bounded update moved {bounded}");
    }

    #[test]
    fn checkpoints_round_trip_and_refuse_another_shape() {
        let d = cpu();
        let dir = std::env::temp_dir().join(format!("ppo-ckpt-{}", std::process::id()));
        let mut p = Ppo::new(PpoConfig::default(), 3, 4, &d, 1).unwrap();
        p.lr_scale = 2.25; // as `adaptive_lr` may have left it
        p.save(&dir).unwrap();
        let mut same = Ppo::new(PpoConfig::default(), 3, 4, &d, 9).unwrap();
        same.load(&dir).unwrap();
        let o = vec![vec![0.2, -0.1, 0.4]];
        assert_eq!(p.values(&o), same.values(&o));
        assert_eq!(same.learning_rate(), p.learning_rate());
        let mut other = Ppo::new(PpoConfig::default(), 3, 5, &d, 1).unwrap();
        let e = other.load(&dir).unwrap_err();
        assert!(e.to_string().contains("layers"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
