//! Online fine-tuning (TD3 style): twin critics Q̄(s, a0) with target networks
//! and target-policy smoothing, delayed actor updates, and for the SELFI arm
//! the model-based objective J kept inside the Q-value,
//! Q(s, τ) = c·J(s, τ) + Q̄(s, a0), which the actor maximises.
//!
//! The plain arm is the same learner without J anywhere (actor maximises Q̄,
//! critic targets plain TD). The offline arm never updates.
//!
//! Guards: Q̄'s output layer starts at zero (the first actor gradients are J's
//! alone); the actor only moves after `actor_warmup` decisions of critic
//! learning; an actor update that moves the plan on the probe states by more
//! than `max_plan_change` is rejected; when a window of episode returns falls
//! `rollback_drop` below the first window's, the last good actor comes back.

use super::model::{
    Actor, Models, OBJECTIVE_FEATURES, finite_loss, objective, objective_features,
    objective_values_and_features,
};
use super::{OBS_DIM, SelfiConfig, Variant};
use crate::RlError;
use crate::learner::{load_module, save_module};
use crate::mlp::{Mlp, matrix, values};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sim::rng::Rng;
use std::path::Path;

/// Which learner flies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arm {
    /// The offline policy, never updated.
    Offline,
    /// SELFI: Q = c·J + Q̄.
    Selfi,
    /// Plain online RL from the offline policy, without J.
    Plain,
}

impl Arm {
    /// Its name in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Offline => "offline",
            Arm::Selfi => "selfi",
            Arm::Plain => "plain",
        }
    }
}

/// The twin critics, one module so one optimiser steps both.
#[derive(Module, Debug)]
pub struct Critics {
    q1: Mlp,
    q2: Mlp,
}

impl Critics {
    /// Fresh twin critics of `hidden` widths for the SELFI observation, a0 and
    /// `features` more inputs (J's parts, [`critic_features`]), output layers at zero.
    pub fn new(hidden: &[usize], features: usize, device: &Device, seed: u64) -> Critics {
        let mut s = vec![OBS_DIM + 2 + features];
        s.extend(hidden);
        s.push(1);
        Critics {
            q1: Mlp::seeded(&s, device, seed).zero_output(),
            q2: Mlp::seeded(&s, device, seed.wrapping_add(1)).zero_output(),
        }
    }

    fn forward(
        &self,
        obs: Tensor<2>,
        a0: Tensor<2>,
        features: Option<Tensor<2>>,
    ) -> (Tensor<2>, Tensor<2>) {
        let mut x = vec![obs, a0];
        x.extend(features);
        let x = Tensor::cat(x, 1);
        (self.q1.forward(x.clone()), self.q2.forward(x))
    }

    fn soft_update(self, online: &Critics, tau: f64) -> Critics {
        Critics {
            q1: self.q1.soft_update(&online.q1, tau),
            q2: self.q2.soft_update(&online.q2, tau),
        }
    }
}

/// How many of J's parts the critics of `arm` take as inputs under `cfg`
/// (`online.critic_features`; the SELFI arm only).
pub fn critic_features(arm: Arm, cfg: &SelfiConfig) -> usize {
    if arm == Arm::Selfi && cfg.online.critic_features {
        OBJECTIVE_FEATURES
    } else {
        0
    }
}

/// One stored decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Observation.
    pub obs: Vec<f32>,
    /// The plan, with the command actually executed as its first entry.
    pub plan: Vec<f32>,
    /// Reward (intervention penalties are added later, spread back in time).
    pub reward: f32,
    /// Observation after the step.
    pub next_obs: Vec<f32>,
    /// The episode ended (no bootstrap).
    pub done: bool,
    /// The supervisor chose the executed command.
    pub intervention: bool,
    /// The policy's proposal that the supervisor refused, stored beside the flown
    /// decisions with the intervention penalty: not a decision that was flown, so
    /// a penalty spread back in time passes over it.
    pub refused: bool,
}

impl Transition {
    /// The policy's `plan` at `obs` that the supervisor refused: a terminal row
    /// carrying the intervention `penalty`, so that Q̄ learns the value of a
    /// command the executed data never shows.
    pub fn refused_proposal(obs: Vec<f32>, plan: Vec<f32>, penalty: f32) -> Transition {
        Transition {
            next_obs: obs.clone(),
            obs,
            plan,
            reward: penalty,
            done: true,
            intervention: true,
            refused: true,
        }
    }
}

/// A ring of transitions whose most recent rewards can still be amended.
#[derive(Debug)]
struct Ring {
    rows: Vec<Transition>,
    cap: usize,
    next: usize,
}

impl Ring {
    fn push(&mut self, t: Transition) {
        if self.rows.len() < self.cap {
            self.rows.push(t);
        } else {
            self.rows[self.next] = t;
        }
        self.next = (self.next + 1) % self.cap;
    }

    /// Add `amount` spread evenly over the `k` flown transitions before the newest
    /// one in the same episode: the policy's decisions that led to a take-over,
    /// not the supervisor's command at it, nor a refused proposal stored in
    /// between (which carries its own penalty). With none before it (a take-over
    /// at an episode's first step), the newest takes it.
    fn spread_before_newest(&mut self, k: usize, amount: f32) {
        let n = self.rows.len();
        if n == 0 {
            return;
        }
        // While filling, `next` equals the length, so this is right in both phases.
        let at = |back: usize| (self.next + self.cap - back) % self.cap;
        let mut idx = Vec::new();
        for back in 2..=n {
            if idx.len() == k {
                break;
            }
            let i = at(back);
            if self.rows[i].refused {
                continue;
            }
            if self.rows[i].done {
                break;
            }
            idx.push(i);
        }
        if idx.is_empty() {
            idx.push(at(1));
        }
        let share = amount / idx.len() as f32;
        for i in idx {
            self.rows[i].reward += share;
        }
    }

    /// The `n`-step target of row `i`: its reward plus the discounted rewards of
    /// the flown decisions after it in the same episode (refused proposals passed
    /// over), stopping before a supervisor's command (its action is not the
    /// policy's), at an episode's end and at the newest row. Returns the summed
    /// reward, the discount of the bootstrap (0 at an episode's end) and the row
    /// whose `next_obs` it bootstraps from. A row whose `obs` is not the previous
    /// row's `next_obs` starts another episode (a cut-off one) and ends the chain.
    fn n_step(&self, i: usize, n: usize, gamma: f32) -> (f32, f32, usize) {
        let first = &self.rows[i];
        let mut reward = first.reward;
        if first.done {
            return (reward, 0.0, i);
        }
        let (mut discount, mut last) = (gamma, i);
        let mut j = i;
        let mut taken = 1;
        while taken < n {
            // `next` is one past the newest row, filling or wrapped.
            j = (j + 1) % self.cap;
            if j == self.next {
                break;
            }
            let row = &self.rows[j];
            if row.refused {
                continue;
            }
            if row.intervention || row.obs != self.rows[last].next_obs {
                break;
            }
            reward += discount * row.reward;
            last = j;
            taken += 1;
            if row.done {
                return (reward, 0.0, last);
            }
            discount *= gamma;
        }
        (reward, discount, last)
    }
}

/// A sampled batch, row-major.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// `[n, OBS_DIM]`.
    pub obs: Vec<f32>,
    /// `[n, 2H]`.
    pub plan: Vec<f32>,
    /// `[n]`.
    pub reward: Vec<f32>,
    /// `[n]`: γ, or 0 at the end of an episode.
    pub discount: Vec<f32>,
    /// `[n, OBS_DIM]`.
    pub next_obs: Vec<f32>,
    /// Rows.
    pub n: usize,
}

/// What one gradient step logged.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpdateLog {
    /// Critic loss.
    pub critic_loss: f32,
    /// Mean c·J(s, π(s)) at the last actor update.
    pub j: f32,
    /// Mean Q̄(s, π(s)) at the last actor update.
    pub qbar: f32,
    /// Norm of the actor gradient of c·J alone (measured every 50 actor updates).
    pub grad_j: f32,
    /// Norm of the actor gradient of Q̄ alone (same schedule).
    pub grad_qbar: f32,
    /// Mean L2 change of the plan on the probe states at the last actor update.
    pub plan_change: f32,
}

/// The online learner of one arm.
pub struct OnlineLearner {
    arm: Arm,
    cfg: SelfiConfig,
    plain: Device,
    ad: Device,
    models: Models,
    models_ad: Models,
    actor: Actor,
    actor_target: Actor,
    acting: Option<Actor>,
    deployed: Option<Actor>,
    critics: Critics,
    critic_target: Critics,
    actor_optim: ModuleOptimizer,
    critic_optim: ModuleOptimizer,
    j_scale: f32,
    probe: Vec<f32>,
    replay: Ring,
    rng: Rng,
    steps: u64,
    updates: u64,
    actor_updates: u64,
    rejected: u64,
    rollbacks: u64,
    good: Option<Actor>,
    baseline: Option<f64>,
    window: Vec<f64>,
    log: UpdateLog,
}

impl OnlineLearner {
    /// A learner for `arm` starting from the offline actor and models; `probe`
    /// holds observations (rows of OBS_DIM) from the offline data for the
    /// update-size guard; J is multiplied by `j_scale` (return units, from the
    /// offline phase) times `j_weight`. A non-positive `j_scale` means "unknown":
    /// J is then divided by its spread on the probe states.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        arm: Arm,
        cfg: &SelfiConfig,
        models: &Models,
        actor: &Actor,
        probe: &[f32],
        j_scale: f32,
        device: &Device,
        seed: u64,
    ) -> Result<OnlineLearner, RlError> {
        cfg.validate().map_err(RlError::Config)?;
        if probe.is_empty() || !probe.len().is_multiple_of(OBS_DIM) {
            return Err(RlError::Config(format!(
                "SELFI probe states must be rows of {OBS_DIM} values"
            )));
        }
        let ad = device.clone().autodiff();
        let models_ad = models.frozen_on(&ad);
        let n = probe.len() / OBS_DIM;
        let plans = actor.forward(matrix(probe.to_vec(), n, OBS_DIM, device));
        let j = values(
            objective(
                models,
                matrix(probe.to_vec(), n, OBS_DIM, device),
                plans,
                &cfg.plan,
                &cfg.objective,
            )
            .total,
        );
        let mean = j.iter().sum::<f32>() / n as f32;
        let std = (j.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n as f32).sqrt();
        let base = if j_scale.is_finite() && j_scale > 0.0 {
            j_scale
        } else {
            1.0 / std.max(1e-3)
        };
        let j_scale = cfg.online.j_weight as f32 * base;
        let critics = Critics::new(
            &cfg.online.critic_hidden,
            critic_features(arm, cfg),
            &ad,
            seed.wrapping_add(11),
        );
        Ok(OnlineLearner {
            arm,
            plain: device.clone(),
            models: models.clone(),
            models_ad,
            actor: Actor {
                net: actor.net.clone(),
            }
            .fork(&ad)
            .train(),
            actor_target: actor.clone(),
            acting: None,
            deployed: (cfg.online.deploy_average > 0.0).then(|| actor.clone()),
            critic_target: critics.valid(),
            critics,
            actor_optim: AdamConfig::new().init(),
            critic_optim: AdamConfig::new().init(),
            j_scale,
            probe: probe.to_vec(),
            replay: Ring {
                rows: Vec::new(),
                cap: cfg.online.buffer,
                next: 0,
            },
            rng: Rng::new(seed ^ 0x5e1f),
            steps: 0,
            updates: 0,
            actor_updates: 0,
            rejected: 0,
            rollbacks: 0,
            good: None,
            baseline: None,
            window: Vec::new(),
            log: UpdateLog::default(),
            ad,
            cfg: cfg.clone(),
        })
    }

    /// The arm.
    pub fn arm(&self) -> Arm {
        self.arm
    }

    /// The factor c in c·J (j_weight over J's spread on the probe states).
    pub fn j_scale(&self) -> f32 {
        self.j_scale
    }

    /// Decisions observed.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Critic updates, actor updates, rejected actor updates, rollbacks.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.updates,
            self.actor_updates,
            self.rejected,
            self.rollbacks,
        )
    }

    /// The latest logged figures.
    pub fn last_log(&self) -> UpdateLog {
        self.log
    }

    fn acting(&mut self) -> &Actor {
        if let Some(d) = &self.deployed {
            return d;
        }
        let a = &self.actor;
        self.acting.get_or_insert_with(|| a.valid())
    }

    /// The policy that flew (the deployed average when set), as a learning
    /// actor: what a rollback restores.
    fn snapshot(&self) -> Actor {
        match &self.deployed {
            Some(d) => Actor { net: d.net.clone() }.fork(&self.ad).train(),
            None => self.actor.clone(),
        }
    }

    /// Move the deployed average towards the learning actor by the share of
    /// `decisions` decisions (time constant `deploy_average`).
    fn blend_deployed(&mut self, decisions: f64) {
        let tc = self.cfg.online.deploy_average;
        if let Some(d) = self.deployed.take() {
            let k = 1.0 - (-decisions / tc).exp();
            self.deployed = Some(Actor {
                net: d.net.soft_update(&self.actor.valid().net, k),
            });
        }
    }

    /// The plan for `obs`; with `explore` (learning arms only), Gaussian noise on
    /// the first command, which is the one executed.
    pub fn act(&mut self, obs: &[f32], explore: bool) -> Vec<f32> {
        let dev = self.plain.clone();
        let mut plan = self.acting().plan(obs, &dev);
        if explore && self.arm != Arm::Offline {
            let s = self.cfg.online.explore_noise;
            for v in plan.iter_mut().take(2) {
                *v = (*v + (self.rng.normal() * s) as f32).clamp(-1.0, 1.0);
            }
        }
        plan
    }

    /// Q = c·J(s, τ) + Q̄(s, τ0) and its two parts for logging.
    pub fn q_parts(&mut self, obs: &[f32], plan: &[f32]) -> (f32, f32) {
        let d = self.plain.clone();
        let h2 = 2 * self.cfg.plan.horizon;
        let (j, f) = objective_values_and_features(
            &self.models,
            obs,
            plan,
            &self.cfg.plan,
            &self.cfg.objective,
            &d,
        );
        let j = j[0] * self.j_scale;
        let (q1, _) = self.critics.valid().forward(
            matrix(obs.to_vec(), 1, OBS_DIM, &d),
            matrix(plan[..2.min(h2)].to_vec(), 1, 2, &d),
            self.features()
                .then(|| matrix(f, 1, OBJECTIVE_FEATURES, &d)),
        );
        (j, values(q1)[0])
    }

    /// Store a decision and learn from the replay; `intervention_penalty` (≤ 0),
    /// given with the step at which a take-over began, is spread over the
    /// `intervention_window` policy decisions before it.
    pub fn observe(&mut self, t: Transition, intervention_penalty: f32) -> Result<(), RlError> {
        if t.obs.len() != OBS_DIM
            || t.next_obs.len() != OBS_DIM
            || t.plan.len() != 2 * self.cfg.plan.horizon
        {
            return Err(RlError::Config(format!(
                "SELFI transition of sizes obs {}, plan {}, next {}; expected {OBS_DIM}, {}, {OBS_DIM}",
                t.obs.len(),
                t.plan.len(),
                t.next_obs.len(),
                2 * self.cfg.plan.horizon
            )));
        }
        if !t.reward.is_finite() || t.obs.iter().chain(&t.next_obs).any(|v| !v.is_finite()) {
            return Err(RlError::Config(
                "SELFI transition with a non-finite value refused".into(),
            ));
        }
        self.replay.push(t);
        if intervention_penalty != 0.0 {
            self.replay
                .spread_before_newest(self.cfg.online.intervention_window, intervention_penalty);
        }
        self.steps += 1;
        if self.arm == Arm::Offline
            || self.steps < self.cfg.online.learning_starts
            || self.replay.rows.len() < self.cfg.online.batch
        {
            return Ok(());
        }
        for _ in 0..self.cfg.online.updates_per_step {
            let b = self.sample(self.cfg.online.batch);
            self.update(&b)?;
        }
        Ok(())
    }

    /// A take-over began at `obs`: the policy's rejected `proposal` (a plan whose
    /// first command was not executed) is stored as a terminal transition whose
    /// reward is the intervention `penalty`, so that Q̄ learns the value of the
    /// command the supervisor refused, which the executed data never shows
    /// (intervention feedback as a reward on the rejected action).
    pub fn observe_rejected(
        &mut self,
        obs: &[f32],
        proposal: &[f32],
        penalty: f32,
    ) -> Result<(), RlError> {
        if obs.len() != OBS_DIM || proposal.len() != 2 * self.cfg.plan.horizon {
            return Err(RlError::Config(format!(
                "rejected proposal of sizes obs {}, plan {}",
                obs.len(),
                proposal.len()
            )));
        }
        if !penalty.is_finite() || obs.iter().chain(proposal).any(|v| !v.is_finite()) {
            return Err(RlError::Config(
                "rejected proposal with a non-finite value refused".into(),
            ));
        }
        self.replay.push(Transition::refused_proposal(
            obs.to_vec(),
            proposal.to_vec(),
            penalty,
        ));
        Ok(())
    }

    fn sample(&mut self, n: usize) -> Batch {
        let len = self.replay.rows.len() as u64;
        let mut b = Batch {
            n,
            ..Batch::default()
        };
        let (steps, gamma) = (self.cfg.online.n_step, self.cfg.online.gamma);
        for _ in 0..n {
            let i = self.rng.below(len) as usize;
            let (reward, discount, last) = self.replay.n_step(i, steps, gamma);
            let t = &self.replay.rows[i];
            b.obs.extend_from_slice(&t.obs);
            b.plan.extend_from_slice(&t.plan);
            b.reward.push(reward);
            b.discount.push(discount);
            b.next_obs
                .extend_from_slice(&self.replay.rows[last].next_obs);
        }
        b
    }

    fn uses_j(&self) -> bool {
        self.arm == Arm::Selfi
    }

    /// The critics take J's parts as inputs.
    fn features(&self) -> bool {
        critic_features(self.arm, &self.cfg) > 0
    }

    /// One critic step, and an actor step when due.
    fn update(&mut self, b: &Batch) -> Result<(), RlError> {
        self.update_with(b, true)
    }

    fn update_with(&mut self, b: &Batch, allow_actor: bool) -> Result<(), RlError> {
        let (n, h2) = (b.n, 2 * self.cfg.plan.horizon);
        let d = self.plain.clone();
        let on = self.cfg.online.clone();
        // Target plan: the target actor's, with smoothing noise on its first
        // command (the one Q̄ scores; the rest stays the policy's, as τ(s, a0)).
        let next = matrix(b.next_obs.clone(), n, OBS_DIM, &d);
        let mut next_plan = values(self.actor_target.forward(next.clone()));
        for i in 0..n {
            for v in &mut next_plan[i * h2..i * h2 + 2] {
                let e =
                    (self.rng.normal() * on.target_noise).clamp(-on.target_clip, on.target_clip);
                *v = (*v + e as f32).clamp(-1.0, 1.0);
            }
        }
        let j_in_target = self.uses_j() && on.variant == Variant::JInTarget;
        let features = self.features();
        let (mut f_now, mut f_next) = (None, None);
        let (j_now, j_next) = if j_in_target || features {
            let p = &self.cfg.plan;
            let w = &self.cfg.objective;
            // Q(s, a0) = c·J(s, τ(s, a0)) + Q̄(s, a0) needs τ to be a function of
            // (s, a0): the executed first command, then the policy's own plan.
            // (The stored plan's later commands were never executed and, under a
            // take-over, are not what follows; J of them would leave Q̄ a residual
            // that depends on something it cannot see.)
            let mut tau = values(
                self.actor_target
                    .forward(matrix(b.obs.clone(), n, OBS_DIM, &d)),
            );
            for i in 0..n {
                tau[i * h2] = b.plan[i * h2];
                tau[i * h2 + 1] = b.plan[i * h2 + 1];
            }
            let (jn, fnow) = objective_values_and_features(&self.models, &b.obs, &tau, p, w, &d);
            let (jx, fnext) =
                objective_values_and_features(&self.models, &b.next_obs, &next_plan, p, w, &d);
            if features {
                (f_now, f_next) = (Some(fnow), Some(fnext));
            }
            if j_in_target {
                (
                    jn.iter().map(|v| v * self.j_scale).collect(),
                    jx.iter().map(|v| v * self.j_scale).collect(),
                )
            } else {
                (vec![0.0; n], vec![0.0; n])
            }
        } else {
            (vec![0.0; n], vec![0.0; n])
        };
        let next_a0: Vec<f32> = (0..n)
            .flat_map(|i| [next_plan[i * h2], next_plan[i * h2 + 1]])
            .collect();
        let a0: Vec<f32> = (0..n)
            .flat_map(|i| [b.plan[i * h2], b.plan[i * h2 + 1]])
            .collect();
        let loss = self.critic_step(b, &a0, &j_now, &j_next, &next_a0, f_now, f_next)?;
        self.log.critic_loss = loss;
        self.updates += 1;
        if allow_actor
            && self.updates.is_multiple_of(on.policy_delay)
            && self.steps >= on.actor_warmup
        {
            self.actor_step(b)?;
            let online = self.actor.valid();
            let old = std::mem::replace(&mut self.actor_target, online.clone());
            self.actor_target = Actor {
                net: old.net.soft_update(&online.net, on.tau),
            };
        }
        let online = self.critics.valid();
        let old = std::mem::replace(&mut self.critic_target, online.clone());
        self.critic_target = old.soft_update(&online, on.tau);
        Ok(())
    }

    /// One critic step towards y = r + γ[J(s', τ') + min Q̄'(s', a0')] − J(s, τ)
    /// (J values given; zeros for variant B and the plain arm), with J's parts
    /// of τ and τ' as further inputs when the critics take them. Returns the loss.
    #[allow(clippy::too_many_arguments)]
    pub fn critic_step(
        &mut self,
        b: &Batch,
        a0: &[f32],
        j_now: &[f32],
        j_next: &[f32],
        next_a0: &[f32],
        features_now: Option<Vec<f32>>,
        features_next: Option<Vec<f32>>,
    ) -> Result<f32, RlError> {
        let n = b.n;
        let d = self.plain.clone();
        let k = OBJECTIVE_FEATURES;
        let (t1, t2) = self.critic_target.forward(
            matrix(b.next_obs.clone(), n, OBS_DIM, &d),
            matrix(next_a0.to_vec(), n, 2, &d),
            features_next.map(|f| matrix(f, n, k, &d)),
        );
        let (t1, t2) = (values(t1), values(t2));
        let y: Vec<f32> = (0..n)
            .map(|i| b.reward[i] + b.discount[i] * (j_next[i] + t1[i].min(t2[i])) - j_now[i])
            .collect();
        let (q1, q2) = self.critics.forward(
            matrix(b.obs.clone(), n, OBS_DIM, &self.ad),
            matrix(a0.to_vec(), n, 2, &self.ad),
            features_now.map(|f| matrix(f, n, k, &self.ad)),
        );
        let y = matrix(y, n, 1, &self.ad);
        let e1 = q1 - y.clone();
        let e2 = q2 - y;
        let loss = ((e1.clone() * e1).mean() + (e2.clone() * e2).mean()).mul_scalar(0.5);
        let l = finite_loss(&loss, self.steps, "SELFI critic loss")?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.critics);
        self.critics = self.critic_optim.step(
            self.cfg.online.critic_learning_rate,
            self.critics.clone(),
            grads,
        );
        Ok(l)
    }

    /// The actor's loss: −mean(c·J(s, π(s)) [SELFI only] + Q̄1(s, π(s)0)), and
    /// the two means.
    pub fn actor_loss(&self, obs: Tensor<2>, with_j: bool, with_q: bool) -> (Tensor<1>, f32, f32) {
        let [n, _] = obs.dims();
        let (plan, pre) = self.actor.forward_pre(obs.clone());
        let mut total = plan.zeros_like().slice([0..n, 0..1]);
        let (mut jm, mut qm) = (0.0, 0.0);
        let features = self.features();
        let parts = (with_j || (with_q && features)).then(|| {
            objective(
                &self.models_ad,
                obs.clone(),
                plan.clone(),
                &self.cfg.plan,
                &self.cfg.objective,
            )
        });
        if let Some(parts) = parts.as_ref().filter(|_| with_j) {
            let j = parts.total.clone().mul_scalar(self.j_scale);
            jm = values(j.clone().mean())[0];
            total = total + j;
        }
        if with_q {
            // Q̄ sees J's parts of the plan: its gradient reaches the plan through
            // them (the models are frozen), as well as through a0. The critics
            // are frozen too: the actor's gradient is the same, and the backward
            // pass skips their weight gradients, which this step would discard.
            let f = parts.as_ref().filter(|_| features).map(objective_features);
            let (q1, _) = self
                .critics
                .clone()
                .no_grad()
                .forward(obs, plan.slice([0..n, 0..2]), f);
            qm = values(q1.clone().mean())[0];
            total = total + q1;
        }
        let keep = pre
            .powi_scalar(2)
            .mean()
            .mul_scalar(self.cfg.offline.pre_activation_penalty);
        (total.mean().neg() + keep, jm, qm)
    }

    /// Gradient of the actor's loss with respect to its first layer, flattened
    /// (tests compare J-only and J + Q̄ gradients).
    pub fn actor_gradient(&self, obs: &[f32], with_j: bool, with_q: bool) -> f32 {
        let n = obs.len() / OBS_DIM;
        let (loss, _, _) =
            self.actor_loss(matrix(obs.to_vec(), n, OBS_DIM, &self.ad), with_j, with_q);
        let g = loss.backward();
        self.actor.net.grad_norm_sq(&g).sqrt()
    }

    fn actor_step(&mut self, b: &Batch) -> Result<(), RlError> {
        let n = b.n;
        let obs = matrix(b.obs.clone(), n, OBS_DIM, &self.ad);
        let with_j = self.uses_j();
        if self.actor_updates.is_multiple_of(50) {
            let m = n.min(64);
            let rows = &b.obs[..m * OBS_DIM];
            if with_j {
                self.log.grad_j = self.actor_gradient(rows, true, false);
            }
            self.log.grad_qbar = self.actor_gradient(rows, false, true);
        }
        let (loss, jm, qm) = self.actor_loss(obs, with_j, true);
        finite_loss(&loss, self.steps, "SELFI actor loss")?;
        self.log.j = jm;
        self.log.qbar = qm;
        let before = self.actor.clone();
        let probe_n = self.probe.len() / OBS_DIM;
        let probe = matrix(self.probe.clone(), probe_n, OBS_DIM, &self.plain);
        let old_plan = before.valid().forward(probe.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &self.actor);
        self.actor = self.actor_optim.step(
            self.cfg.online.actor_learning_rate,
            self.actor.clone(),
            grads,
        );
        let new_plan = self.actor.valid().forward(probe);
        let change = values(
            (new_plan - old_plan)
                .powi_scalar(2)
                .sum_dim(1)
                .sqrt()
                .mean(),
        )[0];
        self.log.plan_change = change;
        if !change.is_finite() || f64::from(change) > self.cfg.online.max_plan_change {
            self.actor = before;
            self.rejected += 1;
            tracing::debug!(change, "SELFI actor update rejected: plan moved too far");
        } else {
            self.actor_updates += 1;
            // Only an accepted update moves the average: a rejected one changed nothing.
            let on = &self.cfg.online;
            self.blend_deployed(on.policy_delay as f64 / on.updates_per_step.max(1) as f64);
        }
        self.acting = None;
        Ok(())
    }

    /// Close an episode with its return; applies the rollback rule. Returns
    /// true when the actor was rolled back.
    pub fn end_episode(&mut self, ret: f64) -> bool {
        if self.arm == Arm::Offline {
            return false;
        }
        self.window.push(ret);
        if self.window.len() < self.cfg.online.rollback_window {
            return false;
        }
        let mean = self.window.iter().sum::<f64>() / self.window.len() as f64;
        self.window.clear();
        let drop = self.cfg.online.rollback_drop;
        match self.baseline {
            None => {
                self.baseline = Some(mean);
                self.good = Some(self.snapshot());
                false
            }
            Some(base) if mean >= base - drop / 2.0 => {
                self.good = Some(self.snapshot());
                false
            }
            Some(base) if mean < base - drop => {
                if let Some(g) = &self.good {
                    self.actor = g.clone();
                    self.acting = None;
                    if self.deployed.is_some() {
                        self.deployed = Some(g.valid());
                    }
                    self.rollbacks += 1;
                    tracing::warn!(
                        mean,
                        base,
                        "SELFI rollback: recent returns fell below the threshold; last good policy restored"
                    );
                    return true;
                }
                false
            }
            Some(_) => false,
        }
    }

    /// Pre-train the critics offline: `data` (transitions of recorded flights with
    /// their intervention penalties) goes into the replay and `steps` critic-only
    /// updates run on it, the offline actor giving the bootstrap actions. Returns
    /// the last critic loss.
    pub fn pretrain_critic(
        &mut self,
        data: Vec<(Transition, f32)>,
        steps: usize,
        mut progress: impl FnMut(usize, f32),
    ) -> Result<f32, RlError> {
        for (t, penalty) in data {
            self.replay.push(t);
            if penalty != 0.0 {
                self.replay
                    .spread_before_newest(self.cfg.online.intervention_window, penalty);
            }
        }
        if self.replay.rows.len() < self.cfg.online.batch {
            return Err(RlError::Config(format!(
                "{} recorded transitions are too few to pre-train the critics (batch {})",
                self.replay.rows.len(),
                self.cfg.online.batch
            )));
        }
        let check = (steps / 10).max(1);
        let mut loss = f32::NAN;
        for i in 0..steps {
            let b = self.sample(self.cfg.online.batch);
            self.update_with(&b, false)?;
            loss = self.log.critic_loss;
            if (i + 1) % check == 0 {
                progress(i + 1, loss);
            }
        }
        // Online counts start at zero.
        self.updates = 0;
        Ok(loss)
    }

    /// The critics (plain device), to save with the offline phase.
    pub fn critics(&self) -> Critics {
        self.critics.valid()
    }

    /// Start from pre-trained critics (and their target copies).
    pub fn set_critics(&mut self, c: &Critics) {
        self.critics = c.clone().fork(&self.ad).train();
        self.critic_target = c.clone();
    }

    /// Save the current actor (what the policy node loads).
    pub fn save_actor(&self, path: &Path) -> Result<(), RlError> {
        save_module(&self.actor(), path)
    }

    /// The deployed actor (plain device): the moving average when
    /// `deploy_average` is set, else the learning actor.
    pub fn actor(&self) -> Actor {
        match &self.deployed {
            Some(d) => d.clone(),
            None => self.actor.valid(),
        }
    }
}

/// Load an actor of the given hidden sizes and horizon from a `.bpk` file.
pub fn load_actor(
    path: &Path,
    hidden: &[usize],
    horizon: usize,
    device: &Device,
) -> Result<Actor, RlError> {
    load_module(Actor::new(hidden, horizon, device, 0), path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfi::OfflineConfig;

    use crate::cpu;

    fn learner(arm: Arm, cfg: &SelfiConfig) -> OnlineLearner {
        let d = cpu();
        let models = Models::new(&OfflineConfig::default(), cfg.plan.horizon, &d, 1);
        let actor = Actor::new(&[32, 32], cfg.plan.horizon, &d, 2);
        let mut rng = Rng::new(3);
        let probe: Vec<f32> = (0..32 * OBS_DIM)
            .map(|_| rng.range(0.0, 1.0) as f32)
            .collect();
        OnlineLearner::new(arm, cfg, &models, &actor, &probe, 0.0, &d, 4).unwrap()
    }

    /// L1: with Q̄'s output layer at zero, the actor gradient of J + Q̄ is J's alone.
    #[test]
    fn zero_qbar_leaves_the_actor_gradient_to_j() {
        let mut cfg = SelfiConfig::default();
        cfg.offline.pre_activation_penalty = 0.0;
        let l = learner(Arm::Selfi, &cfg);
        let mut rng = Rng::new(9);
        let obs: Vec<f32> = (0..16 * OBS_DIM)
            .map(|_| rng.range(0.0, 1.0) as f32)
            .collect();
        let both = l.actor_gradient(&obs, true, true);
        let j_only = l.actor_gradient(&obs, true, false);
        let q_only = l.actor_gradient(&obs, false, true);
        assert!(j_only > 0.0);
        assert!(
            ((both - j_only) / j_only).abs() < 1e-5,
            "{both} vs {j_only}"
        );
        assert_eq!(q_only, 0.0);
        let (_, qbar) = {
            let mut l = l;
            let plan = vec![0.0; 2 * cfg.plan.horizon];
            l.q_parts(&obs[..OBS_DIM], &plan)
        };
        assert_eq!(qbar, 0.0);
    }

    /// With `critic_features`, Q̄ of the SELFI arm sees J's parts of the plan it
    /// scores, so its gradient reaches the plan's later commands (through the
    /// frozen models); without them, and always for the plain arm, only the
    /// first command matters to Q̄.
    #[test]
    fn critic_features_let_qbar_score_the_whole_plan() {
        let h2 = 2 * SelfiConfig::default().plan.horizon;
        let mut rng = Rng::new(21);
        let n = 64;
        let obs: Vec<f32> = (0..n * OBS_DIM)
            .map(|_| rng.range(0.0, 1.0) as f32)
            .collect();
        let plan: Vec<f32> = (0..n * h2).map(|_| rng.range(-1.0, 1.0) as f32).collect();
        let b = Batch {
            obs: obs.clone(),
            plan: plan.clone(),
            reward: (0..n).map(|i| -((i % 5) as f32)).collect(),
            discount: vec![0.0; n],
            next_obs: obs.clone(),
            n,
        };
        // Gradient of mean Q̄1 over the rows with respect to the plans.
        let plan_gradient = |l: &OnlineLearner| -> Vec<f32> {
            let o = matrix(obs.clone(), n, OBS_DIM, &l.ad);
            let p = matrix(plan.clone(), n, h2, &l.ad).require_grad();
            let f = l.features().then(|| {
                objective_features(&objective(
                    &l.models_ad,
                    o.clone(),
                    p.clone(),
                    &l.cfg.plan,
                    &l.cfg.objective,
                ))
            });
            let (q1, _) = l.critics.forward(o, p.clone().slice([0..n, 0..2]), f);
            let g = q1.mean().backward();
            values(p.grad(&g).expect("the plan takes part in Q̄"))
        };
        let later = |g: &[f32]| -> f32 {
            g.chunks(h2)
                .map(|r| r[2..].iter().map(|v| v.abs()).sum::<f32>())
                .sum()
        };
        let first = |g: &[f32]| -> f32 {
            g.chunks(h2)
                .map(|r| r[..2].iter().map(|v| v.abs()).sum::<f32>())
                .sum()
        };
        let mut cfg = SelfiConfig::default();
        cfg.online.critic_features = true;
        for (arm, features) in [(Arm::Selfi, true), (Arm::Plain, false)] {
            let mut l = learner(arm, &cfg);
            assert_eq!(l.features(), features, "{arm:?}");
            assert_eq!(critic_features(arm, &cfg) > 0, features);
            for _ in 0..20 {
                l.update_with(&b, false).unwrap();
            }
            let g = plan_gradient(&l);
            assert!(first(&g) > 0.0, "{arm:?}: Q̄ scores the first command");
            if features {
                assert!(later(&g) > 1e-3 * first(&g), "{arm:?}: {}", later(&g));
            } else {
                assert_eq!(later(&g), 0.0, "{arm:?}");
            }
        }
        cfg.online.critic_features = false;
        let l = learner(Arm::Selfi, &cfg);
        assert!(!l.features());
        assert_eq!(later(&plan_gradient(&l)), 0.0);
    }

    /// L2: on a toy with known J and reward, Q̄ converges to the residual of the
    /// chosen variant: s' = −s, r = 1 − a², J(s, a) = s·a, γ = 0.5, next action 0.
    /// A: Q̄ = 2 − a² − s·a.  B: Q̄ = 2 − a².
    #[test]
    fn critic_variants_converge_to_their_residuals() {
        for variant in [Variant::JInTarget, Variant::JPrior] {
            let mut cfg = SelfiConfig::default();
            cfg.online.gamma = 0.5;
            cfg.online.tau = 0.05;
            cfg.online.critic_learning_rate = 1e-3;
            cfg.online.critic_hidden = vec![64, 64];
            cfg.online.variant = variant;
            let mut l = learner(Arm::Selfi, &cfg);
            let mut rng = Rng::new(5);
            let row = |s: f32| {
                let mut o = vec![0.0; OBS_DIM];
                o[0] = s;
                o
            };
            let j_in = variant == Variant::JInTarget;
            for _ in 0..2500 {
                let n = 128;
                let mut b = Batch {
                    n,
                    ..Batch::default()
                };
                let (mut a0, mut jn, mut jx) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..n {
                    let s = rng.range(-1.0, 1.0) as f32;
                    let a = rng.range(-1.0, 1.0) as f32;
                    b.obs.extend(row(s));
                    b.next_obs.extend(row(-s));
                    b.reward.push(1.0 - a * a);
                    b.discount.push(0.5);
                    a0.extend([a, 0.0]);
                    jn.push(if j_in { s * a } else { 0.0 });
                    jx.push(0.0); // J(s', 0) = 0
                }
                let next_a0 = vec![0.0; 2 * n];
                l.critic_step(&b, &a0, &jn, &jx, &next_a0, None, None)
                    .unwrap();
                let online = l.critics.valid();
                let old = std::mem::replace(&mut l.critic_target, online.clone());
                l.critic_target = old.soft_update(&online, cfg.online.tau);
            }
            let d = cpu();
            let (mut err, mut mag) = (0.0, 0.0);
            for i in 0..11 {
                for k in 0..11 {
                    let s = -1.0 + 0.2 * i as f32;
                    let a = -1.0 + 0.2 * k as f32;
                    let (q, _) = l.critics.valid().forward(
                        matrix(row(s), 1, OBS_DIM, &d),
                        matrix(vec![a, 0.0], 1, 2, &d),
                        None,
                    );
                    let want = 2.0 - a * a - if j_in { s * a } else { 0.0 };
                    err += (values(q)[0] - want).abs();
                    mag += want.abs();
                }
            }
            let rel = err / mag;
            assert!(rel < 0.05, "{variant:?}: relative error {rel}");
        }
    }

    #[test]
    fn n_step_targets_stay_in_one_episode_and_stop_before_the_supervisor() {
        // Row k moves the state from [k] to [k + 1] with reward k + 1.
        let row = |k: usize, done: bool, intervention: bool| Transition {
            obs: vec![k as f32],
            plan: vec![0.0; 2],
            reward: (k + 1) as f32,
            next_obs: vec![(k + 1) as f32],
            done,
            intervention,
            refused: false,
        };
        let mut ring = Ring {
            rows: Vec::new(),
            cap: 16,
            next: 0,
        };
        ring.push(row(0, false, false)); // 0
        ring.push(row(1, false, false)); // 1
        ring.push(Transition::refused_proposal(vec![2.0], vec![0.9; 2], -5.0)); // 2
        ring.push(row(2, false, false)); // 3: the refused proposal passed over
        ring.push(row(3, false, true)); // 4: the supervisor's command
        ring.push(row(4, false, false)); // 5
        ring.push(row(5, true, false)); // 6: the episode ends
        ring.push(row(0, false, false)); // 7: the next episode
        let g = 0.5;
        // One step: as stored.
        assert_eq!(ring.n_step(0, 1, g), (1.0, 0.5, 0));
        // Three steps: 1 + 0.5·2 + 0.25·3, bootstrapping after row 3.
        assert_eq!(ring.n_step(0, 3, g), (2.75, 0.125, 3));
        // Stops before the supervisor's command: row 3 alone.
        assert_eq!(ring.n_step(3, 5, g), (3.0, 0.5, 3));
        // The supervisor's own row may start a chain; it ends at the episode's end.
        assert_eq!(ring.n_step(4, 5, g), (4.0 + 0.5 * 5.0 + 0.25 * 6.0, 0.0, 6));
        // A refused proposal is terminal; the newest row has nothing after it.
        assert_eq!(ring.n_step(2, 5, g), (-5.0, 0.0, 2));
        assert_eq!(ring.n_step(7, 5, g), (1.0, 0.5, 7));
        // A cut-off episode (the next row does not start where this one ended).
        ring.push(row(4, false, false)); // 8: obs [4] after next_obs [1]
        assert_eq!(ring.n_step(7, 5, g), (1.0, 0.5, 7));
        // Wrapping around the ring: the oldest rows are not read as the newest's future.
        let mut small = Ring {
            rows: Vec::new(),
            cap: 3,
            next: 0,
        };
        for k in 0..4 {
            small.push(row(k, false, false));
        }
        // Rows now hold k = 3, 1, 2 with row 0 the newest.
        assert_eq!(
            small.n_step(1, 5, g),
            (2.0 + 0.5 * 3.0 + 0.25 * 4.0, 0.125, 0)
        );
        assert_eq!(small.n_step(0, 5, g), (4.0, 0.5, 0));
    }

    #[test]
    fn interventions_are_spread_back_and_big_updates_are_rejected() {
        let mut cfg = SelfiConfig::default();
        cfg.online.intervention_window = 2;
        let mut l = learner(Arm::Selfi, &cfg);
        let h2 = 2 * cfg.plan.horizon;
        let t = |done| Transition {
            obs: vec![0.1; OBS_DIM],
            plan: vec![0.0; h2],
            reward: 0.0,
            next_obs: vec![0.1; OBS_DIM],
            done,
            intervention: false,
            refused: false,
        };
        l.observe(t(true), 0.0).unwrap();
        for _ in 0..3 {
            l.observe(t(false), 0.0).unwrap();
        }
        l.observe(t(false), -3.0).unwrap();
        let r: Vec<f32> = l.replay.rows.iter().map(|t| t.reward).collect();
        // The penalty lands on the two decisions before the take-over, not on the
        // supervisor's step, nor on the previous episode's last step.
        assert_eq!(r, vec![0.0, 0.0, -1.5, -1.5, 0.0]);
        // A take-over at an episode's first step keeps its own penalty.
        l.observe(t(true), 0.0).unwrap();
        l.observe(t(false), -3.0).unwrap();
        assert_eq!(l.replay.rows.last().map(|t| t.reward), Some(-3.0));
        // The refused proposal is a terminal transition carrying the penalty.
        let proposal = vec![0.9; h2];
        l.observe_rejected(&[0.2; OBS_DIM], &proposal, -3.0)
            .unwrap();
        let last = l.replay.rows.last().unwrap();
        assert!(last.done && last.intervention && last.reward == -3.0 && last.plan == proposal);
        assert!(
            l.observe_rejected(&[0.2; OBS_DIM], &proposal[1..], -3.0)
                .is_err()
        );
        // As the experiment and the graph's learner store a take-over (the refused
        // proposal, then the supervisor's step with the penalty): the spread passes
        // over the refused proposal to the policy's decisions before it.
        l.observe(t(true), 0.0).unwrap();
        for _ in 0..3 {
            l.observe(t(false), 0.0).unwrap();
        }
        l.observe_rejected(&[0.1; OBS_DIM], &proposal, -3.0)
            .unwrap();
        l.observe(t(false), -3.0).unwrap();
        let r: Vec<f32> = l
            .replay
            .rows
            .iter()
            .rev()
            .take(6)
            .map(|t| t.reward)
            .collect();
        assert_eq!(r, vec![0.0, -3.0, -1.5, -1.5, 0.0, 0.0]);
        // Wrong sizes and NaN are refused.
        let mut bad = t(false);
        bad.plan.pop();
        assert!(l.observe(bad, 0.0).is_err());
        let mut bad = t(false);
        bad.obs[3] = f32::NAN;
        assert!(l.observe(bad, 0.0).is_err());

        // An actor step larger than the bound is rejected and leaves the actor as it was.
        cfg.online.max_plan_change = 1e-9;
        cfg.online.actor_learning_rate = 1e-2;
        let mut l = learner(Arm::Selfi, &cfg);
        let probe = l.probe[..OBS_DIM].to_vec();
        let before = l.act(&probe, false);
        let b = Batch {
            n: 8,
            obs: l.probe[..8 * OBS_DIM].to_vec(),
            ..Batch::default()
        };
        l.actor_step(&b).unwrap();
        assert_eq!(l.counts().2, 1);
        assert_eq!(l.act(&probe, false), before);
    }

    #[test]
    fn rollback_restores_the_last_good_actor() {
        let mut cfg = SelfiConfig::default();
        cfg.online.deploy_average = 0.0;
        cfg.online.rollback_window = 2;
        cfg.online.rollback_drop = 4.0;
        let mut l = learner(Arm::Selfi, &cfg);
        let probe = l.probe[..OBS_DIM].to_vec();
        let good = l.act(&probe, false);
        assert!(!l.end_episode(10.0));
        assert!(!l.end_episode(10.0)); // baseline 10, this actor is good
        // Change the actor by hand, then returns collapse.
        l.actor = Actor::new(&[32, 32], cfg.plan.horizon, &l.ad.clone(), 99);
        l.acting = None;
        assert_ne!(l.act(&probe, false), good);
        assert!(!l.end_episode(0.0));
        assert!(l.end_episode(0.0));
        assert_eq!(l.act(&probe, false), good);
        assert_eq!(l.counts().3, 1);
    }

    #[test]
    fn the_deployed_policy_follows_the_learning_actor_slowly() {
        let mut cfg = SelfiConfig::default();
        cfg.online.deploy_average = 100.0;
        cfg.online.policy_delay = 2;
        cfg.online.updates_per_step = 1;
        let mut l = learner(Arm::Selfi, &cfg);
        let probe = l.probe[..OBS_DIM].to_vec();
        let start = l.act(&probe, false);
        // The learning actor jumps; the deployed one moves 1 − e^(−2/100) of the way.
        l.actor = Actor::new(&[32, 32], cfg.plan.horizon, &l.ad.clone(), 99);
        let target = l.actor.valid().plan(&probe, &cpu());
        l.blend_deployed(2.0);
        let now = l.act(&probe, false);
        let dist = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        assert!(dist(&now, &start) > 0.0, "the deployed policy moved");
        assert!(
            dist(&now, &target) > 0.9 * dist(&start, &target),
            "moved only a little of the way"
        );
        // What is saved and evaluated is the deployed policy, not the learning actor.
        assert_eq!(l.actor().plan(&probe, &cpu()), now);
        // Many blends bring it onto the learning actor.
        for _ in 0..2000 {
            l.blend_deployed(2.0);
        }
        assert!(dist(&l.act(&probe, false), &target) < 1e-3);
        // Without averaging, the learning actor flies.
        cfg.online.deploy_average = 0.0;
        let mut l = learner(Arm::Selfi, &cfg);
        l.actor = Actor::new(&[32, 32], cfg.plan.horizon, &l.ad.clone(), 99);
        l.acting = None;
        assert_eq!(l.act(&probe, false), target);
    }
}
