//! The SELFI experiment: recordings flown by a behaviour policy, the offline
//! bundle (models + actor) trained from them, and the online arms run on the
//! same seeds with per-minute figures.

use super::data::{Dataset, Flight};
use super::model::{Actor, FitReport, Models, fit_models, train_actor};
use super::nav::{MakeSenses, NavEnv, NavStep, Wanderer};
use super::online::{Arm, Critics, OnlineLearner, Transition, critic_features, load_actor};
use super::{OBS_DIM, SelfiConfig};
use crate::RlError;
use crate::learner::{load_module, save_module};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Fly the behaviour policy for `decisions` decisions of run `seed`; each
/// episode becomes a flight (its last frame has no command).
pub fn fly_behaviour(
    cfg: &SelfiConfig,
    senses: &dyn MakeSenses,
    seed: u64,
    decisions: u64,
    stop: &AtomicBool,
) -> Result<Vec<Flight>, RlError> {
    let mut env = NavEnv::new(cfg, seed, senses)?;
    let mut pilot = Wanderer::new(seed);
    let mut flights = Vec::new();
    let mut obs = env.reset()?;
    let mut cur = Flight::default();
    for _ in 0..decisions {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let s = env.step(pilot.act(&obs))?;
        cur.frames.push(s.frame);
        if s.terminated || s.truncated {
            if !s.terminated
                && let Some(f) = env.final_frame()
            {
                cur.frames.push(f);
            }
            flights.push(std::mem::take(&mut cur));
            obs = env.reset()?;
        } else {
            obs = s.next_obs;
        }
    }
    if cur.frames.len() > 1 {
        if let Some(f) = env.final_frame() {
            cur.frames.push(f);
        }
        flights.push(cur);
    }
    Ok(flights)
}

/// What the offline phase produced and how well.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OfflineCard {
    /// The config it was trained with (the online phase must use the same plan and models).
    pub config: SelfiConfig,
    /// Frames it learned from.
    pub frames: usize,
    /// Flights they came from.
    pub flights: usize,
    /// Dynamics MSE on held-out rows: before, after.
    pub dynamics_mse: (f32, f32),
    /// Traversability cross-entropy on held-out rows: before, after.
    pub traversability_bce: (f32, f32),
    /// Traversability accuracy on held-out rows.
    pub traversability_accuracy: f32,
    /// Share of unsafe labels.
    pub unsafe_share: f32,
    /// Walker-motion rows learned from.
    pub walker_rows: usize,
    /// Walker-motion MSE on held-out rows: before, after.
    pub walker_mse: (f32, f32),
    /// End-of-plan error (m) on held-out rows: motion model, holding the tracked velocity.
    pub walker_final_error: (f32, f32),
    /// Mean J on the probe states: random actor, trained actor.
    pub actor_j: (f32, f32),
    /// Least-squares slope of the recorded discounted return on J of the flown
    /// plan: J · j_scale is in the units of the online return (Q = J + Q̄
    /// adds the two, so their scales must agree). Falls back to std(return) / std(J) when the slope is not positive.
    pub j_scale: f32,
    /// Correlation of J (flown plan) with the recorded return.
    pub j_return_correlation: f32,
}

/// The offline phase's output.
pub struct OfflineBundle {
    /// J's models.
    pub models: Models,
    /// The pre-trained actor.
    pub actor: Actor,
    /// What it is.
    pub card: OfflineCard,
    /// Observations from the offline data (rows of OBS_DIM): J's scale and the
    /// update-size guard are measured on them.
    pub probe: Vec<f32>,
    /// Critics pre-trained on the recordings, per learning arm (empty when
    /// `pretrain_critic_steps` is 0).
    pub critics: Vec<(Arm, Critics)>,
}

/// Transitions of recorded flights with their intervention penalties (the
/// online reward without proximity, which a recording does not hold).
pub fn flight_transitions(
    flights: &[Flight],
    cfg: &SelfiConfig,
) -> Result<Vec<(Transition, f32)>, RlError> {
    let w = &cfg.reward;
    let mut out = Vec::new();
    for fl in flights {
        let n = fl.frames.len();
        let dist = |i: usize| {
            let f = &fl.frames[i];
            ((f.goal[0] - f.pose[0]).powi(2) + (f.goal[1] - f.pose[1]).powi(2)).sqrt()
        };
        for i in 0..n {
            let f = &fl.frames[i];
            let terminal = f.collision || f.success;
            if i + 1 >= n && !terminal {
                break; // cut off by time: nothing to bootstrap from
            }
            let obs = fl.observation(i)?;
            let (next_obs, progress) = if terminal || i + 1 >= n {
                (obs.clone(), 0.0)
            } else {
                (fl.observation(i + 1)?, w.progress * (dist(i) - dist(i + 1)))
            };
            let mut r = progress;
            if f.collision {
                r += w.collision;
            }
            if f.success {
                r += w.success;
            }
            let started = f.intervention && !(i > 0 && fl.frames[i - 1].intervention);
            if started {
                // The refused proposal, as a terminal transition with the penalty.
                let mut plan = fl.flown_plan(i, &cfg.plan);
                let a = cfg
                    .plan
                    .normalise(f64::from(f.proposed[0]), f64::from(f.proposed[1]));
                plan[0] = a[0];
                plan[1] = a[1];
                out.push((
                    Transition::refused_proposal(obs.clone(), plan, w.intervention as f32),
                    0.0,
                ));
            }
            out.push((
                Transition {
                    obs,
                    plan: fl.flown_plan(i, &cfg.plan),
                    reward: r as f32,
                    next_obs,
                    done: terminal,
                    intervention: f.intervention,
                    refused: false,
                },
                if started { w.intervention as f32 } else { 0.0 },
            ));
            if terminal {
                break;
            }
        }
    }
    Ok(out)
}

/// Train models and actor from flights; `progress` gets one line per check.
pub fn train_offline(
    flights: &[Flight],
    cfg: &SelfiConfig,
    device: &Device,
    seed: u64,
    mut progress: impl FnMut(String),
) -> Result<OfflineBundle, RlError> {
    let ds = Dataset::build(flights, &cfg.plan, &cfg.objective)?;
    progress(format!(
        "dataset: {} flights, {} frames, {} dynamics rows, {} traversability rows ({} unsafe), {} walker-motion rows",
        flights.len(),
        ds.frames,
        ds.dynamics.targets.len() / 5,
        ds.traversability.labels.len(),
        ds.unsafe_rows,
        ds.walkers.targets.len() / (2 * cfg.plan.horizon)
    ));
    let (models, rep): (Models, FitReport) = fit_models(
        &ds,
        &cfg.offline,
        &cfg.plan,
        device,
        seed,
        |m, step, loss| progress(format!("  {m:<14} step {step:>5}  held-out loss {loss:.4}")),
    )?;
    if rep.walker_mse != (0.0, 0.0) {
        progress(format!(
            "walker motion after {:.1} s: {:.3} m mean error (holding the tracked velocity: {:.3} m)",
            cfg.plan.horizon as f64 * cfg.plan.dt(),
            rep.walker_final_error.0,
            rep.walker_final_error.1
        ));
    }
    let mut first = None;
    let mut last = 0.0;
    let actor = train_actor(
        &ds,
        &models,
        &cfg.offline,
        &cfg.plan,
        &cfg.objective,
        device,
        seed.wrapping_add(5),
        |step, j| {
            first.get_or_insert(j);
            last = j;
            progress(format!("  actor          step {step:>5}  mean J {j:.4}"))
        },
    )?;
    let n = ds.states.len();
    let k = 512.min(n);
    let probe: Vec<f32> = (0..k).flat_map(|i| ds.states[i * n / k].clone()).collect();
    let (j_scale, corr) = fit_j_scale(flights, &models, cfg, device)?;
    {
        use crate::mlp::{matrix, values};
        let m = probe.len() / OBS_DIM;
        let obs = matrix(probe.clone(), m, OBS_DIM, device);
        let plan = actor.forward(obs.clone());
        let pv = values(plan.clone());
        let h2 = 2 * cfg.plan.horizon;
        let speed: f64 = (0..m)
            .map(|i| cfg.plan.command([pv[i * h2], pv[i * h2 + 1]]).0)
            .sum::<f64>()
            / m as f64;
        let parts = super::model::objective(&models, obs, plan, &cfg.plan, &cfg.objective);
        let mean = |t: Tensor<2>| values(t.mean())[0];
        progress(format!(
            "offline actor on {m} recorded states: first command {speed:.2} m/s on average; J parts: progress {:.3}, p(unsafe) {:.3}, walker closeness {:.3}, smoothness {:.4}",
            mean(parts.progress),
            mean(parts.unsafe_prob),
            mean(parts.walker_risk),
            mean(parts.smoothness)
        ));
    }
    progress(format!(
        "J scale: return ≈ a + {j_scale:.3}·J (correlation {corr:.3}) over the recorded frames"
    ));
    let mut critics = Vec::new();
    if cfg.online.pretrain_critic_steps > 0 {
        let data = flight_transitions(flights, cfg)?;
        for arm in [Arm::Selfi, Arm::Plain] {
            let mut l = OnlineLearner::new(
                arm,
                cfg,
                &models,
                &actor,
                &probe,
                j_scale,
                device,
                seed.wrapping_add(7),
            )?;
            let loss = l.pretrain_critic(
                data.clone(),
                cfg.online.pretrain_critic_steps,
                |step, loss| {
                    progress(format!(
                        "  critic ({:<6}) step {step:>5}  TD loss {loss:.4}",
                        arm.name()
                    ))
                },
            )?;
            progress(format!(
                "critics of the {} arm pre-trained on {} recorded transitions (TD loss {loss:.4})",
                arm.name(),
                data.len()
            ));
            critics.push((arm, l.critics()));
        }
    }
    Ok(OfflineBundle {
        models,
        actor,
        probe,
        critics,
        card: OfflineCard {
            config: cfg.clone(),
            frames: ds.frames,
            flights: flights.len(),
            dynamics_mse: rep.dynamics_mse,
            traversability_bce: rep.traversability_bce,
            traversability_accuracy: rep.traversability_accuracy,
            unsafe_share: rep.unsafe_share,
            walker_rows: ds.walkers.targets.len() / (2 * cfg.plan.horizon),
            walker_mse: rep.walker_mse,
            walker_final_error: rep.walker_final_error,
            actor_j: (first.unwrap_or(0.0), last),
            j_scale,
            j_return_correlation: corr,
        },
    })
}

/// Fit return ≈ a + c·J(s, flown plan) over the recorded frames: (c, correlation).
fn fit_j_scale(
    flights: &[Flight],
    models: &Models,
    cfg: &SelfiConfig,
    device: &Device,
) -> Result<(f32, f32), RlError> {
    let (mut obs, mut plans, mut g) = (Vec::new(), Vec::new(), Vec::new());
    for fl in flights {
        let ret = fl.returns(&cfg.reward, f64::from(cfg.online.gamma));
        for (i, gi) in ret.iter().enumerate() {
            obs.extend(fl.observation(i)?);
            plans.extend(fl.flown_plan(i, &cfg.plan));
            g.push(*gi);
        }
    }
    let mut j = Vec::with_capacity(g.len());
    for (o, p) in obs
        .chunks(OBS_DIM * 1024)
        .zip(plans.chunks(2 * cfg.plan.horizon * 1024))
    {
        j.extend(
            super::model::objective_values_and_features(
                models,
                o,
                p,
                &cfg.plan,
                &cfg.objective,
                device,
            )
            .0
            .into_iter()
            .map(f64::from),
        );
    }
    let n = g.len().max(1) as f64;
    let (mj, mg) = (j.iter().sum::<f64>() / n, g.iter().sum::<f64>() / n);
    let (mut cov, mut vj, mut vg) = (0.0, 0.0, 0.0);
    for (a, b) in j.iter().zip(&g) {
        cov += (a - mj) * (b - mg);
        vj += (a - mj).powi(2);
        vg += (b - mg).powi(2);
    }
    let corr = cov / (vj.sqrt() * vg.sqrt()).max(1e-12);
    let c = if cov > 0.0 {
        cov / vj.max(1e-12)
    } else {
        tracing::warn!(
            corr,
            "J does not rise with the recorded return; scaling it by the ratio of spreads instead"
        );
        (vg / vj.max(1e-12)).sqrt()
    };
    Ok((c as f32, corr as f32))
}

#[derive(Serialize, Deserialize)]
struct ProbeFile {
    width: usize,
    rows: Vec<Vec<f32>>,
}

impl OfflineBundle {
    /// The critics pre-trained for `arm`, when they were trained with the same
    /// variant, shape, discount, n-step, J weight and reward as `cfg` asks for
    /// (else, with a warning, none: the critics then start from zero).
    pub fn critics_for(&self, arm: Arm, cfg: &SelfiConfig) -> Option<&Critics> {
        let c = self
            .critics
            .iter()
            .find(|(a, _)| *a == arm)
            .map(|(_, c)| c)?;
        let trained = &self.card.config.online;
        let same = trained.variant == cfg.online.variant
            && trained.critic_hidden == cfg.online.critic_hidden
            && critic_features(arm, &self.card.config) == critic_features(arm, cfg)
            && trained.gamma == cfg.online.gamma
            && trained.n_step == cfg.online.n_step
            && trained.j_weight == cfg.online.j_weight
            && self.card.config.reward == cfg.reward;
        if !same {
            tracing::warn!(
                arm = arm.name(),
                "the pre-trained critics were trained with another variant, shape, discount, n-step or reward; the critics start from zero"
            );
        }
        same.then_some(c)
    }

    /// Write `models.bpk`, `actor.bpk`, `probe.toml` and `offline.toml` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), RlError> {
        save_module(&self.models, &dir.join("models.bpk"))?;
        save_module(&self.actor, &dir.join("actor.bpk"))?;
        for (arm, c) in &self.critics {
            save_module(c, &dir.join(format!("critics_{}.bpk", arm.name())))?;
        }
        crate::learner::write_state(&self.card, &dir.join("offline.toml"))?;
        crate::learner::write_state(
            &ProbeFile {
                width: OBS_DIM,
                rows: self.probe.chunks(OBS_DIM).map(<[f32]>::to_vec).collect(),
            },
            &dir.join("probe.toml"),
        )
    }

    /// Read what [`OfflineBundle::save`] wrote; shapes are checked against the card.
    pub fn load(dir: &Path, device: &Device) -> Result<OfflineBundle, RlError> {
        let card: OfflineCard = crate::learner::read_state(&dir.join("offline.toml"))?;
        let cfg = &card.config;
        cfg.validate()
            .map_err(|e| RlError::Config(format!("{}: {e}", dir.join("offline.toml").display())))?;
        let models = load_module(
            Models::new(&cfg.offline, cfg.plan.horizon, device, 0),
            &dir.join("models.bpk"),
        )?;
        let actor = load_actor(
            &dir.join("actor.bpk"),
            &cfg.offline.actor_hidden,
            cfg.plan.horizon,
            device,
        )?;
        let probe: ProbeFile = crate::learner::read_state(&dir.join("probe.toml"))?;
        if probe.width != OBS_DIM || probe.rows.iter().any(|r| r.len() != OBS_DIM) {
            return Err(RlError::Checkpoint {
                path: dir.join("probe.toml").display().to_string(),
                reason: format!("probe rows must have {OBS_DIM} values"),
            });
        }
        let mut critics = Vec::new();
        if cfg.online.pretrain_critic_steps > 0 {
            for arm in [Arm::Selfi, Arm::Plain] {
                let c = load_module(
                    Critics::new(
                        &cfg.online.critic_hidden,
                        critic_features(arm, cfg),
                        device,
                        0,
                    ),
                    &dir.join(format!("critics_{}.bpk", arm.name())),
                )?;
                critics.push((arm, c));
            }
        }
        Ok(OfflineBundle {
            models,
            actor,
            probe: probe.rows.concat(),
            critics,
            card,
        })
    }
}

/// Figures of one bin of online time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// End of the bin (simulated minutes of online flight).
    pub minute: f64,
    /// Metres flown.
    pub distance: f64,
    /// Interventions (take-overs begun).
    pub interventions: u64,
    /// Collisions.
    pub collisions: u64,
    /// Episodes that ended in the bin.
    pub episodes: u64,
    /// Of which reached the goal.
    pub successes: u64,
    /// Sum of the online reward.
    pub reward: f64,
    /// Steps with a walker inside the personal space.
    pub proximity_steps: u64,
    /// Rollbacks.
    pub rollbacks: u64,
    /// Rejected actor updates.
    pub rejected: u64,
    /// Last logged c·J and Q̄ means and critic loss.
    pub j: f32,
    /// See `j`.
    pub qbar: f32,
    /// See `j`.
    pub critic_loss: f32,
}

impl Bin {
    /// Interventions per 100 m.
    pub fn interventions_per_100m(&self) -> f64 {
        100.0 * self.interventions as f64 / self.distance.max(1e-9)
    }
    /// Collisions per 100 m.
    pub fn collisions_per_100m(&self) -> f64 {
        100.0 * self.collisions as f64 / self.distance.max(1e-9)
    }
    /// Goal success rate (%), NaN without episodes.
    pub fn success_rate(&self) -> f64 {
        if self.episodes == 0 {
            f64::NAN
        } else {
            100.0 * self.successes as f64 / self.episodes as f64
        }
    }

    /// Merge another bin into this one (sums; last logs kept).
    pub fn add(&mut self, o: &Bin) {
        self.distance += o.distance;
        self.interventions += o.interventions;
        self.collisions += o.collisions;
        self.episodes += o.episodes;
        self.successes += o.successes;
        self.reward += o.reward;
        self.proximity_steps += o.proximity_steps;
        self.rollbacks += o.rollbacks;
        self.rejected += o.rejected;
        self.minute = self.minute.max(o.minute);
        self.j = o.j;
        self.qbar = o.qbar;
        self.critic_loss = o.critic_loss;
    }
}

/// One decision as logged (the per-step telemetry of every online run).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepLog {
    /// Decision index.
    pub step: u64,
    /// Simulated online time (s).
    pub time: f64,
    /// Executed command.
    pub forward: f32,
    /// Executed yaw rate.
    pub yaw_rate: f32,
    /// `policy` or `supervisor`.
    pub source: &'static str,
    /// Reward components.
    pub r_progress: f64,
    /// See above.
    pub r_success: f64,
    /// See above.
    pub r_collision: f64,
    /// See above.
    pub r_intervention: f64,
    /// See above.
    pub r_proximity: f64,
    /// c·J(s, τ) of the executed plan.
    pub j: f32,
    /// Q̄(s, a0).
    pub qbar: f32,
    /// Q = c·J + Q̄.
    pub q: f32,
    /// Nearest walker (m).
    pub walker_clearance: f64,
}

/// The result of one arm on one seed.
pub struct ArmRun {
    /// The arm.
    pub arm: Arm,
    /// The seed.
    pub seed: u64,
    /// Per-bin figures.
    pub bins: Vec<Bin>,
    /// Evaluations of the arm's actor (no exploration, no learning, evaluation
    /// rooms): before learning (minute 0) and at the end of every bin; empty when
    /// `eval_minutes` is 0.
    pub evals: Vec<Bin>,
    /// Per-decision log (every `log_every`-th decision).
    pub steps: Vec<StepLog>,
    /// c in c·J.
    pub j_scale: f32,
    /// The final actor.
    pub actor: Actor,
}

/// Seed of the evaluation rooms of run `seed`: apart from every training and
/// recording seed in use.
pub fn eval_seed(seed: u64) -> u64 {
    seed.wrapping_add(1_000_000)
}

/// Fly `actor` as deployed (its plan's first command, no exploration noise, the
/// supervisor on) for `minutes` simulated minutes in the evaluation rooms of run
/// `seed`; nothing learns. The bin's minute is left at 0 for the caller to set.
pub fn evaluate(
    actor: &Actor,
    cfg: &SelfiConfig,
    senses: &dyn MakeSenses,
    seed: u64,
    minutes: f64,
    device: &Device,
) -> Result<Bin, RlError> {
    let mut bin = Bin::default();
    fly_deployed(actor, cfg, senses, seed, minutes, device, |_, _, s| {
        bin.distance += s.distance;
        bin.interventions += u64::from(s.intervention_started);
        bin.collisions += u64::from(s.frame.collision);
        bin.reward += s.reward.total();
        bin.proximity_steps += u64::from(s.reward.proximity < 0.0);
        if s.terminated || s.truncated {
            bin.episodes += 1;
            bin.successes += u64::from(s.frame.success);
        }
    })?;
    Ok(bin)
}

/// The flight of [`evaluate`], every decision handed to `on_step` as (the
/// observation decided on, the plan, the step) (studies that count more than a
/// [`Bin`] holds use it directly).
pub fn fly_deployed(
    actor: &Actor,
    cfg: &SelfiConfig,
    senses: &dyn MakeSenses,
    seed: u64,
    minutes: f64,
    device: &Device,
    mut on_step: impl FnMut(&[f32], &[f32], &NavStep),
) -> Result<(), RlError> {
    let mut env = NavEnv::new(cfg, eval_seed(seed), senses)?;
    let total = (minutes * 60.0 * cfg.plan.control_hz).round() as u64;
    let mut obs = env.reset()?;
    for _ in 0..total {
        let plan = actor.plan(&obs, device);
        let s = env.step([plan[0], plan[1]])?;
        on_step(&obs, &plan, &s);
        obs = if s.terminated || s.truncated {
            env.reset()?
        } else {
            s.next_obs
        };
    }
    Ok(())
}

/// Fly `arm` online for `minutes` simulated minutes on run `seed`, learning as
/// the arm does; figures binned every `bin_minutes`. `progress` gets each finished
/// bin and the evaluation at its end (see [`evaluate`]; also one before learning).
#[allow(clippy::too_many_arguments)]
pub fn run_arm(
    arm: Arm,
    bundle: &OfflineBundle,
    cfg: &SelfiConfig,
    senses: &dyn MakeSenses,
    seed: u64,
    minutes: f64,
    bin_minutes: f64,
    device: &Device,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Bin, Option<&Bin>),
) -> Result<ArmRun, RlError> {
    let mut learner = OnlineLearner::new(
        arm,
        cfg,
        &bundle.models,
        &bundle.actor,
        &bundle.probe,
        bundle.card.j_scale,
        device,
        seed,
    )?;
    if let Some(c) = bundle.critics_for(arm, cfg) {
        learner.set_critics(c);
    }
    let mut env = NavEnv::new(cfg, seed, senses)?;
    let hz = cfg.plan.control_hz;
    let total = (minutes * 60.0 * hz).round() as u64;
    let per_bin = ((bin_minutes * 60.0 * hz).round() as u64).max(1);
    let mut obs = env.reset()?;
    let mut bins = Vec::new();
    let mut bin = Bin::default();
    let mut steps = Vec::new();
    let mut evals = Vec::new();
    let eval_minutes = cfg.online.eval_minutes;
    if eval_minutes > 0.0 {
        evals.push(evaluate(
            &learner.actor(),
            cfg,
            senses,
            seed,
            eval_minutes,
            device,
        )?);
    }
    let mut ret = 0.0;
    let (mut rej0, mut rb0) = (0, 0);
    for step in 0..total {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let plan = learner.act(&obs, true);
        let s = env.step([plan[0], plan[1]])?;
        let mut executed = plan.clone();
        let a0 = cfg
            .plan
            .normalise(f64::from(s.frame.command[0]), f64::from(s.frame.command[1]));
        executed[0] = a0[0];
        executed[1] = a0[1];
        let r = s.reward;
        if step % 10 == 0 {
            let (j, qbar) = learner.q_parts(&obs, &executed);
            steps.push(StepLog {
                step,
                time: step as f64 / hz,
                forward: s.frame.command[0],
                yaw_rate: s.frame.command[1],
                source: if s.frame.intervention {
                    "supervisor"
                } else {
                    "policy"
                },
                r_progress: r.progress,
                r_success: r.success,
                r_collision: r.collision,
                r_intervention: r.intervention,
                r_proximity: r.proximity,
                j,
                qbar,
                q: j + qbar,
                walker_clearance: s.walker_clearance,
            });
        }
        let done = s.terminated || s.truncated;
        if s.intervention_started {
            learner.observe_rejected(&obs, &plan, r.intervention as f32)?;
        }
        learner.observe(
            Transition {
                obs: obs.clone(),
                plan: executed,
                reward: (r.total() - r.intervention) as f32,
                next_obs: s.next_obs.clone(),
                done: s.terminated,
                intervention: s.frame.intervention,
                refused: false,
            },
            r.intervention as f32,
        )?;
        ret += r.total();
        bin.distance += s.distance;
        bin.interventions += u64::from(s.intervention_started);
        bin.collisions += u64::from(s.frame.collision);
        bin.reward += r.total();
        bin.proximity_steps += u64::from(r.proximity < 0.0);
        if done {
            bin.episodes += 1;
            bin.successes += u64::from(s.frame.success);
            learner.end_episode(ret);
            ret = 0.0;
            obs = env.reset()?;
        } else {
            obs = s.next_obs;
        }
        if (step + 1) % per_bin == 0 || step + 1 == total {
            let (_, _, rej, rb) = learner.counts();
            let log = learner.last_log();
            bin.minute = (step + 1) as f64 / hz / 60.0;
            bin.rejected = rej - rej0;
            bin.rollbacks = rb - rb0;
            (rej0, rb0) = (rej, rb);
            bin.j = log.j;
            bin.qbar = log.qbar;
            bin.critic_loss = log.critic_loss;
            if eval_minutes > 0.0 {
                // The offline arm's actor never changes: its first evaluation stands.
                let mut e = match (arm, evals.first()) {
                    (Arm::Offline, Some(first)) => first.clone(),
                    _ => evaluate(&learner.actor(), cfg, senses, seed, eval_minutes, device)?,
                };
                e.minute = bin.minute;
                e.rollbacks = bin.rollbacks;
                e.rejected = bin.rejected;
                evals.push(e);
            }
            progress(&bin, evals.last().filter(|_| eval_minutes > 0.0));
            bins.push(std::mem::take(&mut bin));
        }
    }
    Ok(ArmRun {
        arm,
        seed,
        bins,
        evals,
        steps,
        j_scale: learner.j_scale(),
        actor: learner.actor(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cpu;

    #[test]
    fn offline_bundle_trains_saves_and_loads() {
        let mut cfg = SelfiConfig::default();
        cfg.offline.model_steps = 200;
        cfg.offline.actor_steps = 100;
        cfg.online.pretrain_critic_steps = 50;
        let stop = AtomicBool::new(false);
        let flights = fly_behaviour(&cfg, &super::super::nav::TruthSensing, 3, 600, &stop).unwrap();
        assert!(flights.len() >= 2);
        let d = cpu();
        let b = train_offline(&flights, &cfg, &d, 1, |_| {}).unwrap();
        assert!(
            b.card.dynamics_mse.1 < b.card.dynamics_mse.0,
            "{:?}",
            b.card
        );
        assert!(b.card.actor_j.1 > b.card.actor_j.0, "{:?}", b.card);
        let dir = std::env::temp_dir().join(format!("selfi-bundle-{}", std::process::id()));
        b.save(&dir).unwrap();
        let c = OfflineBundle::load(&dir, &d).unwrap();
        assert_eq!(c.card, b.card);
        assert_eq!(c.probe, b.probe);
        let o = &b.probe[..OBS_DIM];
        assert_eq!(c.actor.plan(o, &d), b.actor.plan(o, &d));
        assert_eq!(
            c.critics.len(),
            2,
            "pre-trained critics of both learning arms"
        );
        // Recorded transitions: rewards add up to the recorded return's parts.
        let data = flight_transitions(&flights, &cfg).unwrap();
        assert!(
            data.len() >= flights.iter().map(|f| f.frames.len()).sum::<usize>() - 2 * flights.len()
        );
        assert!(data.iter().any(|(t, _)| t.done) && data.iter().any(|(_, p)| *p < 0.0));
        // A missing file is named.
        std::fs::remove_file(dir.join("actor.bpk")).unwrap();
        let e = OfflineBundle::load(&dir, &d).err().unwrap();
        assert!(e.to_string().contains("actor.bpk"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
