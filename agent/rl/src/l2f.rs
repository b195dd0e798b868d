//! Learning to fly in seconds: TD3 (Fujimoto et al., ICML 2018) on the
//! motor-level hover task of [`crate::quadrotor`], with the hand-fused
//! networks of [`crate::tiny`] — the recipe of "Learning to Fly in Seconds"
//! (Eschmann et al., RA-L 2024): small actor and twin critics, one gradient
//! step per environment step, domain randomisation, and a stop as soon as the
//! policy flies every held-out vehicle.
//!
//! Everything is seeded: one seed gives one run, step for step.

use crate::RlError;
use crate::quadrotor::{
    LearnToFlyConfig, NEWEST, OBS_DIM, PRIVILEGED_DIM, QuadHoverEnv, RewardConfig, reward_of,
};

/// What the critics see of a state: the observation and the privileged part.
const CRIT_DIM: usize = OBS_DIM + PRIVILEGED_DIM;
use crate::tiny::{Adam, Net, Output, Workspace};
use fclink::quad::QuadParams;
use std::time::{Duration, Instant};
use types::rng::Rng;

/// Motor commands per action.
pub const ACT_DIM: usize = 4;

/// Seed offset of the held-out vehicles (no training run draws from it).
const HELD_OUT_SEED: u64 = 0x4845_4C44_4F55_5400;

/// One evaluation of the stop criterion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Environment steps trained so far.
    pub step: usize,
    /// Wall time since training began.
    pub elapsed: Duration,
    /// Held-out vehicles that met the criterion.
    pub passed: usize,
    /// Held-out vehicles evaluated.
    pub vehicles: usize,
    /// Mean return of the greedy policy over their episodes.
    pub mean_return: f32,
    /// Largest distance to the target over the hold window, worst vehicle (m;
    /// infinite when an episode terminated).
    pub worst_hold_error: f32,
}

impl Evaluation {
    /// Every held-out vehicle passed.
    pub fn flies(&self) -> bool {
        self.passed == self.vehicles
    }
}

/// What a training run ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The greedy actor (observation → motor commands in [−1, 1]).
    pub actor: Net,
    /// Every evaluation, in order.
    pub evaluations: Vec<Evaluation>,
    /// Wall time to the first evaluation that met the criterion, the
    /// evaluations before it included (None: never).
    pub time_to_fly: Option<Duration>,
    /// Environment steps to it.
    pub steps_to_fly: Option<usize>,
    /// Environment steps taken.
    pub steps: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Wall time spent evaluating (included in `elapsed`).
    pub eval_time: Duration,
}

/// The held-out vehicles of the criterion.
pub fn held_out_vehicles(cfg: &LearnToFlyConfig) -> Vec<QuadParams> {
    cfg.vehicles(
        &QuadParams::CRAZYFLIE,
        cfg.criterion.vehicles,
        HELD_OUT_SEED,
    )
}

/// One held-out flight of [`fly_held_out`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOutFlight {
    /// Control steps before the episode ended (the whole episode when it
    /// did not terminate).
    pub steps: usize,
    /// Whether it terminated (left the bounds).
    pub terminated: bool,
    /// Largest distance to the target over the hold window (m; infinite when
    /// terminated).
    pub hold_error: f32,
    /// Return of the episode.
    pub ret: f32,
}

/// Fly `actor` greedily on every held-out vehicle, each starting at the
/// target, at rest, tilted by `criterion.tilt` about a drawn horizontal axis.
pub fn fly_held_out(cfg: &LearnToFlyConfig, actor: &Net) -> Result<Vec<HeldOutFlight>, RlError> {
    let vehicles = held_out_vehicles(cfg);
    let n = vehicles.len();
    let mut start = cfg.clone();
    start.init.position = 0.0;
    start.init.velocity = 0.0;
    start.init.rates = 0.0;
    let mut env = QuadHoverEnv::new(start, vehicles)?;
    let steps = ((cfg.task.episode_seconds * cfg.task.control_hz).round() as usize).max(1);
    let hold_from =
        steps.saturating_sub((cfg.criterion.hold_seconds * cfg.task.control_hz).round() as usize);
    let mut ws = Workspace::default();
    let mut obs = [0.0f32; OBS_DIM];
    let mut out = Vec::with_capacity(n);
    for v in 0..n {
        env.start(v, HELD_OUT_SEED ^ v as u64, Some(cfg.criterion.tilt))?;
        let mut f = HeldOutFlight {
            steps: 0,
            terminated: false,
            hold_error: 0.0,
            ret: 0.0,
        };
        for k in 0..steps {
            env.observe_into(&mut obs);
            let a = actor.forward(&obs, 1, &mut ws);
            let (r, term, _) = env.step_motors([a[0], a[1], a[2], a[3]]);
            f.ret += r;
            f.steps = k + 1;
            if term {
                f.terminated = true;
                f.hold_error = f32::INFINITY;
                break;
            }
            // The states after the last `hold` steps.
            if k + 1 > hold_from {
                let p = env.state().position;
                f.hold_error = f
                    .hold_error
                    .max((p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt());
            }
        }
        out.push(f);
    }
    Ok(out)
}

/// Check the criterion: [`fly_held_out`], every flight within
/// `criterion.position` over the hold window.
pub fn evaluate(
    cfg: &LearnToFlyConfig,
    actor: &Net,
    step: usize,
    elapsed: Duration,
) -> Result<Evaluation, RlError> {
    let flights = fly_held_out(cfg, actor)?;
    let n = flights.len();
    Ok(Evaluation {
        step,
        elapsed,
        passed: flights
            .iter()
            .filter(|f| f.hold_error <= cfg.criterion.position)
            .count(),
        vehicles: n,
        mean_return: flights.iter().map(|f| f.ret).sum::<f32>() / n.max(1) as f32,
        worst_hold_error: flights.iter().map(|f| f.hold_error).fold(0.0, f32::max),
    })
}

/// The replay memory: flat rows (states as the critics see them: the
/// observation, then the privileged part), a ring once full.
struct Replay {
    obs: Vec<f32>,
    act: Vec<f32>,
    rew: Vec<f32>,
    next: Vec<f32>,
    done: Vec<f32>,
    /// The vehicle's hover command (for recomputing the reward).
    hover: Vec<f32>,
    len: usize,
    head: usize,
    cap: usize,
}

impl Replay {
    fn new(cap: usize) -> Self {
        Self {
            obs: vec![0.0; cap * CRIT_DIM],
            act: vec![0.0; cap * ACT_DIM],
            rew: vec![0.0; cap],
            next: vec![0.0; cap * CRIT_DIM],
            done: vec![0.0; cap],
            hover: vec![0.0; cap],
            len: 0,
            head: 0,
            cap,
        }
    }

    fn push(&mut self, o: &[f32], a: &[f32], r: f32, n: &[f32], terminated: bool, hover: f32) {
        let h = self.head;
        self.hover[h] = hover;
        self.obs[h * CRIT_DIM..(h + 1) * CRIT_DIM].copy_from_slice(o);
        self.act[h * ACT_DIM..(h + 1) * ACT_DIM].copy_from_slice(a);
        self.rew[h] = r;
        self.next[h * CRIT_DIM..(h + 1) * CRIT_DIM].copy_from_slice(n);
        self.done[h] = if terminated { 1.0 } else { 0.0 };
        self.head = (h + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
    }
}

/// Proof that the CPU has AVX2 and FMA: only [`Avx2Fma::detect`] makes one.
#[derive(Debug, Clone, Copy)]
struct Avx2Fma {
    _private: (),
}

impl Avx2Fma {
    #[cfg(target_arch = "x86_64")]
    fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(Self { _private: () })
    }
}

/// What one TD3 update works on.
#[derive(Clone, Copy)]
struct Update<'a> {
    cfg: &'a LearnToFlyConfig,
    replay: &'a Replay,
    /// Also update the actor and the targets.
    update_actor: bool,
    /// The cost weights to recompute rewards with (None: the stored rewards).
    weights: Option<&'a RewardConfig>,
}

/// A critic, its target network, optimiser and scratch space.
struct Critic {
    net: Net,
    target: Net,
    opt: Adam,
    grad: Vec<f32>,
    ws: Workspace,
    dq: Vec<f32>,
    /// The target network's last values.
    q: Vec<f32>,
}

impl Critic {
    fn new(net: Net, lr: f32) -> Self {
        let n = net.params.len();
        Self {
            target: net.clone(),
            opt: Adam::new(n, lr),
            grad: vec![0.0; n],
            ws: Workspace::default(),
            dq: Vec::new(),
            q: Vec::new(),
            net,
        }
    }

    // A closure run on another thread does not inherit the target features of
    // the function that made it: these enter the AVX2 build again when given
    // the proof that the CPU has it.
    #[allow(unsafe_code)]
    fn target_q_on(&mut self, sa: &[f32], b: usize, simd: Option<Avx2Fma>) {
        #[cfg(target_arch = "x86_64")]
        if simd.is_some() {
            // SAFETY: an `Avx2Fma` exists only on a CPU with AVX2 and FMA.
            return unsafe { self.target_q_avx2(sa, b) };
        }
        let _ = simd;
        self.target_q::<false>(sa, b)
    }

    #[allow(unsafe_code)]
    fn fit_on(&mut self, sa: &[f32], y: &[f32], b: usize, simd: Option<Avx2Fma>) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if simd.is_some() {
            // SAFETY: as in `target_q_on`.
            return unsafe { self.fit_avx2(sa, y, b) };
        }
        let _ = simd;
        self.fit::<false>(sa, y, b)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn target_q_avx2(&mut self, sa: &[f32], b: usize) {
        self.target_q::<true>(sa, b)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn fit_avx2(&mut self, sa: &[f32], y: &[f32], b: usize) -> f32 {
        self.fit::<true>(sa, y, b)
    }

    /// The target network's values of `b` state-action rows, into `q`.
    #[inline(always)]
    fn target_q<const FMA: bool>(&mut self, sa: &[f32], b: usize) {
        let q = self.target.forward_with::<FMA>(sa, b, &mut self.ws);
        self.q.clear();
        self.q.extend_from_slice(q);
    }

    /// One Adam step on the mean squared error to `y`; returns the summed
    /// squared error.
    #[inline(always)]
    fn fit<const FMA: bool>(&mut self, sa: &[f32], y: &[f32], b: usize) -> f32 {
        let q = self.net.forward_with::<FMA>(sa, b, &mut self.ws);
        self.dq.clear();
        let mut loss = 0.0;
        for (qv, yv) in q.iter().zip(y) {
            let e = qv - yv;
            loss += e * e;
            self.dq.push(2.0 * e / b as f32);
        }
        self.net
            .backward_with::<FMA>(&self.dq, b, &mut self.ws, Some(&mut self.grad), false);
        self.opt.step(&mut self.net.params, &mut self.grad);
        loss
    }
}

/// The networks and optimisers of TD3 and the batch buffers of an update.
struct Td3 {
    actor: Net,
    actor_t: Net,
    /// The policy evaluated and written: a Polyak average of the actor at
    /// `train.deploy_average`.
    deployed: Net,
    critics: [Critic; 2],
    actor_opt: Adam,
    actor_grad: Vec<f32>,
    ws: Workspace,
    ws2: Workspace,
    // Batch buffers.
    idx: Vec<usize>,
    obs: Vec<f32>,
    next: Vec<f32>,
    sa: Vec<f32>,
    y: Vec<f32>,
    dq: Vec<f32>,
    da: Vec<f32>,
}

impl Td3 {
    fn new(cfg: &LearnToFlyConfig, seed: u64) -> Self {
        let t = &cfg.train;
        let mut a_sizes = vec![OBS_DIM];
        a_sizes.extend(&t.hidden);
        a_sizes.push(ACT_DIM);
        let mut c_sizes = vec![CRIT_DIM + ACT_DIM];
        c_sizes.extend(&t.hidden);
        c_sizes.push(1);
        let actor = Net::new(&a_sizes, Output::Tanh, seed ^ 0xA, 0.01);
        let critics = [
            Critic::new(
                Net::new(&c_sizes, Output::Linear, seed ^ 0xC1, 1.0),
                t.critic_lr,
            ),
            Critic::new(
                Net::new(&c_sizes, Output::Linear, seed ^ 0xC2, 1.0),
                t.critic_lr,
            ),
        ];
        let na = actor.params.len();
        Self {
            actor_t: actor.clone(),
            deployed: actor.clone(),
            actor_opt: Adam::new(na, t.actor_lr),
            actor_grad: vec![0.0; na],
            actor,
            critics,
            ws: Workspace::default(),
            ws2: Workspace::default(),
            idx: Vec::new(),
            obs: Vec::new(),
            next: Vec::new(),
            sa: Vec::new(),
            y: Vec::new(),
            dq: Vec::new(),
            da: Vec::new(),
        }
    }

    /// Set the actor's and the critics' learning rates.
    fn set_learning_rates(&mut self, actor: f32, critic: f32) {
        self.actor_opt.lr = actor;
        for c in &mut self.critics {
            c.opt.lr = critic;
        }
    }

    /// One critic update, and an actor update and target averaging when
    /// `update_actor`: compiled for AVX2 and FMA where the CPU has them
    /// (checked at run time), for the baseline x86-64 or aarch64 elsewhere.
    fn update(&mut self, u: &Update, rng: &mut Rng) -> Result<(), RlError> {
        #[cfg(target_arch = "x86_64")]
        if let Some(proof) = Avx2Fma::detect() {
            #[allow(unsafe_code)]
            // SAFETY: `update_avx2` needs only AVX2 and FMA, which the CPU
            // has (`proof`).
            return unsafe { self.update_avx2(u, rng, proof) };
        }
        self.update_body::<false>(u, rng, None)
    }

    /// [`Td3::update`] for CPUs with AVX2 and FMA: 8-wide vectors and fused
    /// multiply-adds in every network kernel (they are all inlined here).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn update_avx2(&mut self, u: &Update, rng: &mut Rng, proof: Avx2Fma) -> Result<(), RlError> {
        self.update_body::<true>(u, rng, Some(proof))
    }

    /// The update, its sums fused when `FMA` (only under `update_avx2`: a
    /// portable build's `mul_add` would be a library call), the critics on
    /// the AVX2 build when given its proof.
    #[inline(always)]
    fn update_body<const FMA: bool>(
        &mut self,
        u: &Update,
        rng: &mut Rng,
        simd: Option<Avx2Fma>,
    ) -> Result<(), RlError> {
        let Update {
            cfg,
            replay,
            update_actor,
            weights,
        } = *u;
        let t = &cfg.train;
        let b = t.batch;
        let sa_w = CRIT_DIM + ACT_DIM;
        self.idx.clear();
        for _ in 0..b {
            self.idx.push(rng.below(replay.len as u64) as usize);
        }
        // Actor inputs (observations) and critic inputs (states) of the batch.
        self.obs.clear();
        self.next.clear();
        self.sa.resize(b * sa_w, 0.0);
        for (r, &i) in self.idx.iter().enumerate() {
            self.obs
                .extend_from_slice(&replay.obs[i * CRIT_DIM..i * CRIT_DIM + OBS_DIM]);
            self.next
                .extend_from_slice(&replay.next[i * CRIT_DIM..i * CRIT_DIM + OBS_DIM]);
            self.sa[r * sa_w..r * sa_w + CRIT_DIM]
                .copy_from_slice(&replay.next[i * CRIT_DIM..(i + 1) * CRIT_DIM]);
        }
        // Target: r + γ (1 − done) min Q'(s', π'(s') + clipped noise).
        let next_a = self
            .actor_t
            .forward_with::<FMA>(&self.next, b, &mut self.ws);
        for r in 0..b {
            let row = &mut self.sa[r * sa_w..(r + 1) * sa_w];
            for k in 0..ACT_DIM {
                let noise =
                    (rng.normal() as f32 * t.target_noise).clamp(-t.noise_clip, t.noise_clip);
                row[CRIT_DIM + k] = (next_a[r * ACT_DIM + k] + noise).clamp(-1.0, 1.0);
            }
        }
        // The two critics (and their targets) are independent: one core each.
        let [c1, c2] = &mut self.critics;
        let sa = &self.sa;
        rayon::join(
            || c1.target_q_on(sa, b, simd),
            || c2.target_q_on(sa, b, simd),
        );
        self.y.clear();
        for (r, (a, c)) in c1.q.iter().zip(&c2.q).enumerate() {
            let i = self.idx[r];
            // The reward under today's weights (a terminated step earns 0).
            let reward = match weights {
                Some(w) if replay.done[i] == 0.0 => reward_of(
                    w,
                    &replay.next[i * CRIT_DIM..i * CRIT_DIM + OBS_DIM],
                    // The action before: the last action the step started from.
                    &replay.obs[i * CRIT_DIM + NEWEST.start..i * CRIT_DIM + NEWEST.end],
                    replay.hover[i],
                ),
                _ => replay.rew[i],
            };
            self.y
                .push(reward + t.gamma * (1.0 - replay.done[i]) * a.min(*c));
        }
        // Critics: mean squared error to the target.
        for (r, &i) in self.idx.iter().enumerate() {
            let row = &mut self.sa[r * sa_w..(r + 1) * sa_w];
            row[..CRIT_DIM].copy_from_slice(&replay.obs[i * CRIT_DIM..(i + 1) * CRIT_DIM]);
            row[CRIT_DIM..].copy_from_slice(&replay.act[i * ACT_DIM..(i + 1) * ACT_DIM]);
        }
        let (sa, y) = (&self.sa, &self.y);
        let (l1, l2) = rayon::join(|| c1.fit_on(sa, y, b, simd), || c2.fit_on(sa, y, b, simd));
        let loss = l1 + l2;
        if !loss.is_finite() {
            return Err(RlError::Diverged {
                step: 0,
                what: "critic loss",
                value: loss,
            });
        }
        if !update_actor {
            return Ok(());
        }
        // Actor: ascend Q1(s, π(s)).
        let a = self.actor.forward_with::<FMA>(&self.obs, b, &mut self.ws2);
        for r in 0..b {
            self.sa[r * sa_w + CRIT_DIM..(r + 1) * sa_w]
                .copy_from_slice(&a[r * ACT_DIM..(r + 1) * ACT_DIM]);
        }
        self.critics[0]
            .net
            .forward_with::<FMA>(&self.sa, b, &mut self.ws);
        self.dq.clear();
        self.dq.resize(b, -1.0 / b as f32);
        self.critics[0]
            .net
            .backward_with::<FMA>(&self.dq, b, &mut self.ws, None, true);
        self.da.clear();
        for r in 0..b {
            self.da
                .extend_from_slice(&self.ws.dx[r * sa_w + CRIT_DIM..(r + 1) * sa_w]);
        }
        self.actor.backward_with::<FMA>(
            &self.da,
            b,
            &mut self.ws2,
            Some(&mut self.actor_grad),
            false,
        );
        self.actor_opt
            .step(&mut self.actor.params, &mut self.actor_grad);
        self.actor_t.soft_update(&self.actor, t.tau);
        self.deployed.soft_update(&self.actor, t.deploy_average);
        for c in &mut self.critics {
            c.target.soft_update(&c.net, t.tau);
        }
        Ok(())
    }
}

/// Train until the criterion holds (checked every `train.eval_every` steps),
/// `train.max_steps` pass, or `stop()` says so; `progress` sees every
/// evaluation.
pub fn train(
    cfg: &LearnToFlyConfig,
    seed: u64,
    mut progress: impl FnMut(&Evaluation),
    stop: impl Fn() -> bool,
) -> Result<Outcome, RlError> {
    let t = cfg.train.clone();
    if seed == HELD_OUT_SEED {
        return Err(RlError::Config(format!(
            "seed {seed} draws the held-out vehicles; choose another"
        )));
    }
    let vehicles = cfg.vehicles(&QuadParams::CRAZYFLIE, t.vehicles, seed);
    let mut rng = Rng::new(seed);
    let mut envs = Vec::with_capacity(t.envs);
    for _ in 0..t.envs {
        let mut e = QuadHoverEnv::new(cfg.clone(), vehicles.clone())?;
        e.start(
            rng.below(vehicles.len() as u64) as usize,
            rng.next_u64(),
            None,
        )?;
        envs.push(e);
    }
    let mut td3 = Td3::new(cfg, seed);
    let mut replay = Replay::new(t.replay.min(t.max_steps).max(t.batch));
    let mut obs = vec![0.0f32; t.envs * OBS_DIM];
    let mut state = vec![0.0f32; t.envs * CRIT_DIM];
    let mut next = [0.0f32; CRIT_DIM];
    let mut act_ws = Workspace::default();
    let began = Instant::now();
    let mut eval_time = Duration::ZERO;
    let mut evaluations = Vec::new();
    let (mut time_to_fly, mut steps_to_fly) = (None, None);
    let mut step = 0usize;
    let mut updates = 0usize;
    // Environment steps not yet paid for with a gradient step.
    let mut owed = 0usize;
    let mut next_eval = t.eval_every;
    while step < t.max_steps && !stop() {
        for (e, env) in envs.iter().enumerate() {
            let st = &mut state[e * CRIT_DIM..(e + 1) * CRIT_DIM];
            env.observe_into(st);
            env.privileged_into(&mut st[OBS_DIM..]);
            obs[e * OBS_DIM..(e + 1) * OBS_DIM].copy_from_slice(&st[..OBS_DIM]);
        }
        let acts = td3.actor.forward(&obs, t.envs, &mut act_ws).to_vec();
        for (e, env) in envs.iter_mut().enumerate() {
            let mut a = [0.0f32; ACT_DIM];
            for (k, v) in a.iter_mut().enumerate() {
                *v = (acts[e * ACT_DIM + k] + rng.normal() as f32 * t.explore_noise)
                    .clamp(-1.0, 1.0);
            }
            let (r, term, trunc) = env.step_motors(a);
            env.observe_into(&mut next);
            env.privileged_into(&mut next[OBS_DIM..]);
            replay.push(
                &state[e * CRIT_DIM..(e + 1) * CRIT_DIM],
                &a,
                r,
                &next,
                term,
                env.hover_action(),
            );
            if term || trunc {
                env.start(
                    rng.below(vehicles.len() as u64) as usize,
                    rng.next_u64(),
                    None,
                )?;
            }
            step += 1;
        }
        if step >= t.warmup && replay.len >= t.batch {
            owed += t.envs;
        }
        if t.lr_decay < 1.0 {
            let f = 1.0 - (1.0 - t.lr_decay) * (step as f32 / t.max_steps as f32).min(1.0);
            td3.set_learning_rates(t.actor_lr * f, t.critic_lr * f);
        }
        while owed >= t.update_every {
            owed -= t.update_every;
            updates += 1;
            let weights = cfg.curriculum.map(|_| cfg.reward_at(step));
            let u = Update {
                cfg,
                replay: &replay,
                update_actor: updates.is_multiple_of(t.policy_delay),
                weights: weights.as_ref(),
            };
            td3.update(&u, &mut rng).map_err(|e| match e {
                RlError::Diverged { what, value, .. } => RlError::Diverged {
                    step: step as u64,
                    what,
                    value,
                },
                other => other,
            })?;
        }
        if step >= next_eval {
            next_eval += t.eval_every;
            let at = Instant::now();
            let ev = evaluate(cfg, &td3.deployed, step, began.elapsed())?;
            eval_time += at.elapsed();
            progress(&ev);
            evaluations.push(ev);
            if ev.flies() {
                time_to_fly = Some(ev.elapsed);
                steps_to_fly = Some(step);
                break;
            }
        }
    }
    Ok(Outcome {
        actor: td3.deployed,
        evaluations,
        time_to_fly,
        steps_to_fly,
        steps: step,
        elapsed: began.elapsed(),
        eval_time,
    })
}

/// A policy flown by the firmware's own controller
/// ([`fclink::learned::LearnedVehicle`], the code the MCU runs) on one
/// vehicle: settle, hover for `hold_seconds`, then a step of the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirmwareFlight {
    /// Largest distance from the target while holding (m; infinite if the
    /// state left the finite numbers).
    pub hold_max: f32,
    /// Seconds after the step until the vehicle is first within 0.1 m of the
    /// new target (None: never within `settle_seconds`).
    pub step_settle: Option<f32>,
    /// Largest distance from the new target over the last second of
    /// `settle_seconds` after the step (m).
    pub step_final: f32,
}

/// Fly `actor` with the firmware's controller at `control_hz` on `vehicle`:
/// from rest at the target, `warm_seconds` unmeasured (the position-error
/// integral starts at zero and has to find the vehicle's thrust error: a
/// transient of up to 0.2 m over the first seconds, measured), then hover
/// `hold_seconds`, then move the target by `step` (m, along x) and fly
/// `settle_seconds` more.
pub fn fly_on_firmware(
    actor: &Net,
    vehicle: QuadParams,
    control_hz: f64,
    warm_seconds: f32,
    hold_seconds: f32,
    step: f32,
    settle_seconds: f32,
) -> Result<FirmwareFlight, RlError> {
    let policy = fclink::policy::Policy::new(actor.sizes(), &actor.params)
        .map_err(|e| RlError::Config(format!("the firmware refuses the policy: {e:?}")))?;
    let dt = (1.0 / control_hz) as f32;
    let start = [0.0, 0.0, 1.0];
    let mut v = fclink::learned::LearnedVehicle::hovering(vehicle, policy, start, dt)
        .map_err(|e| RlError::Config(format!("the firmware refuses the vehicle: {e:?}")))?;
    let err = |v: &fclink::learned::LearnedVehicle| {
        let e = v.error();
        if e.is_finite() { e } else { f32::INFINITY }
    };
    for _ in 0..(warm_seconds / dt).round() as usize {
        v.step();
    }
    let mut hold_max = 0.0f32;
    for _ in 0..(hold_seconds / dt).round() as usize {
        v.step();
        hold_max = hold_max.max(err(&v));
    }
    v.controller
        .set_target([start[0] + step, start[1], start[2]]);
    let n = (settle_seconds / dt).round() as usize;
    let last = (1.0 / dt).round() as usize;
    let (mut step_settle, mut step_final) = (None, 0.0f32);
    for k in 0..n {
        v.step();
        let e = err(&v);
        if step_settle.is_none() && e < 0.1 {
            step_settle = Some((k + 1) as f32 * dt);
        }
        if k + last >= n {
            step_final = step_final.max(e);
        }
    }
    Ok(FirmwareFlight {
        hold_max,
        step_settle,
        step_final,
    })
}

/// The device checkpoints pass through (the CPU: a few kilobytes).
fn checkpoint_device() -> burn::tensor::Device {
    // burn 0.22 marks ndarray deprecated in favour of `flex`; the project
    // keeps ndarray as its CPU backend (see `mlp::init_device`).
    #[allow(deprecated)]
    burn::tensor::Device::ndarray()
}

/// Write `actor` as a burnpack checkpoint (`rl::mlp::Mlp`, the layers of
/// the weight table; the output's `tanh` is the reader's, as in the table):
/// what burn-based tools load, on any device.
pub fn save_checkpoint(actor: &Net, path: &std::path::Path) -> Result<(), RlError> {
    let device = checkpoint_device();
    let mlp = crate::mlp::Mlp::from_weights(actor.sizes(), &actor.params, &device)
        .ok_or_else(|| RlError::Config("the actor's sizes do not match its parameters".into()))?;
    crate::learner::save_module(&mlp, path)
}

/// Read a checkpoint [`save_checkpoint`] wrote for a network of `sizes`.
pub fn load_checkpoint(path: &std::path::Path, sizes: &[usize]) -> Result<Net, RlError> {
    let device = checkpoint_device();
    let shape = crate::mlp::Mlp::seeded(sizes, &device, 0);
    let mlp = crate::learner::load_module(shape, path)?;
    Net::from_params(sizes, Output::Tanh, mlp.weights()).ok_or_else(|| RlError::Checkpoint {
        path: path.display().to_string(),
        reason: format!("not a network of sizes {sizes:?}"),
    })
}

/// First line of a weight table.
pub const TABLE_HEADER: &str = fclink::policy::TABLE_HEADER;

/// The actor as a plain weight table for the firmware (`firmware/mcu`'s
/// [`fclink::policy`] reads): a header, `sizes` and the layer widths, then one parameter
/// per line in [`fclink::policy`]'s order, each printed so that it reads back
/// to the same `f32`.
pub fn weight_table(actor: &Net) -> String {
    let mut s = String::with_capacity(actor.params.len() * 14 + 256);
    s.push_str(TABLE_HEADER);
    s.push_str(
        "\n# ReLU hidden layers, tanh output; per layer: weights w[input][output] (input-major), then bias\n",
    );
    s.push_str(
        &format!(
            "# inputs: position error (3, m), rotation matrix (9, row-major), velocity (3, m/s), body rates (3, rad/s), last {} motor commands, newest first ({}), position error integral (3, m s)\n",
            fclink::learned::HISTORY,
            4 * fclink::learned::HISTORY
        ),
    );
    s.push_str("# outputs: four motor commands in [-1, 1] (0 to full speed)\nsizes");
    for n in actor.sizes() {
        s.push_str(&format!(" {n}"));
    }
    s.push('\n');
    for p in &actor.params {
        s.push_str(&format!("{p:e}\n"));
    }
    s
}

/// Read a weight table back (`origin` names it in errors): the firmware's
/// reader ([`fclink::policy::parse_table`]), so what reads here flies there.
pub fn parse_weight_table(text: &str, origin: &str) -> Result<Net, RlError> {
    use fclink::policy::{MAX_LAYERS, MAX_WIDTH, PolicyError, TableError};
    let mut sizes = [0usize; MAX_LAYERS];
    // At most one parameter per line.
    let mut params = vec![0.0f32; text.lines().count()];
    let (layers, n) = fclink::policy::parse_table(text, &mut sizes, &mut params).map_err(|e| {
        let at = |line: usize, why: &str| RlError::Config(format!("{origin}:{line}: {why}"));
        match e {
            TableError::Header => RlError::Config(format!(
                "{origin}: not a learn-to-fly weight table (its first line must be `{TABLE_HEADER}`)"
            )),
            TableError::Sizes(0) => RlError::Config(format!("{origin}: no `sizes` line")),
            TableError::Sizes(l) => at(
                l,
                "expected one `sizes` line of layer widths before the parameters",
            ),
            TableError::Number(l) => at(l, "not a finite number"),
            TableError::TooMany(l) => at(l, &format!("more than {MAX_LAYERS} layer sizes")),
            TableError::Shape(p) => RlError::Config(format!(
                "{origin}: the sizes and parameters do not make a network the firmware flies ({})",
                match p {
                    PolicyError::Layers => format!("2 to {MAX_LAYERS} layer sizes expected"),
                    PolicyError::Width => format!("layers 1 to {MAX_WIDTH} wide expected"),
                    _ => "the parameter count does not match the sizes".to_string(),
                }
            )),
        }
    })?;
    let sizes = &sizes[..layers];
    params.truncate(n);
    if sizes.first() != Some(&OBS_DIM) || sizes.last() != Some(&ACT_DIM) {
        return Err(RlError::Config(format!(
            "{origin}: sizes {sizes:?} must start with {OBS_DIM} observations and end with {ACT_DIM} motors"
        )));
    }
    Net::from_params(sizes, Output::Tanh, params).ok_or_else(|| {
        RlError::Config(format!(
            "{origin}: sizes {sizes:?} do not match the parameters"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firmware_forward_pass_matches_the_trainer_to_1e_5() {
        let actor = Net::new(&[OBS_DIM, 64, 64, ACT_DIM], Output::Tanh, 4, 1.0);
        let table = weight_table(&actor);
        let back = parse_weight_table(&table, "t").unwrap();
        assert_eq!(
            back.params, actor.params,
            "the table reads back bit for bit"
        );
        let fw = fclink::policy::Policy::new(back.sizes(), &back.params).unwrap();
        let mut rng = Rng::new(5);
        let mut ws = Workspace::default();
        let mut worst = 0.0f32;
        for _ in 0..500 {
            let obs: Vec<f32> = (0..OBS_DIM).map(|_| rng.range(-2.0, 2.0) as f32).collect();
            let a = actor.forward(&obs, 1, &mut ws).to_vec();
            let mut b = [0.0f32; ACT_DIM];
            fw.forward(&obs, &mut b).unwrap();
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(worst <= 1e-5, "largest difference {worst}");
    }

    #[test]
    fn the_firmware_controller_sees_and_does_what_the_trainer_did() {
        let cfg = LearnToFlyConfig::default_file();
        let actor = Net::new(&[OBS_DIM, 64, 64, ACT_DIM], Output::Tanh, 11, 1.0);
        let vehicles = held_out_vehicles(&cfg);
        let mut env = QuadHoverEnv::new(cfg, vehicles).unwrap();
        env.start(2, 7, Some(0.8)).unwrap();
        let fw = fclink::policy::Policy::new(actor.sizes(), &actor.params).unwrap();
        let mut ctrl =
            fclink::learned::LearnedController::new(fw, [0.0; 3], env.hover_action(), 0.01)
                .unwrap();
        let mut ws = Workspace::default();
        let mut obs = [0.0f32; OBS_DIM];
        for k in 0..60 {
            env.observe_into(&mut obs);
            let want = actor.forward(&obs, 1, &mut ws).to_vec();
            let got = ctrl.step(env.state());
            assert_eq!(ctrl.last_observation(), obs, "step {k}");
            for (w, g) in want.iter().zip(got) {
                assert!((w - g).abs() <= 1e-5, "step {k}: {want:?} against {got:?}");
            }
            if env.step_motors(got).1 {
                break;
            }
        }
    }

    #[test]
    fn the_vectorised_update_computes_the_portable_update() {
        let mut cfg = LearnToFlyConfig::default_file();
        cfg.train.batch = 37; // no multiple of the kernels' blocks
        let mut replay = Replay::new(500);
        let mut rng = Rng::new(3);
        for _ in 0..500 {
            let o: Vec<f32> = (0..CRIT_DIM).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            let n: Vec<f32> = (0..CRIT_DIM).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            let a: Vec<f32> = (0..ACT_DIM).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            replay.push(&o, &a, rng.uniform_f32(), &n, rng.uniform() < 0.1, 0.1);
        }
        #[cfg(target_arch = "x86_64")]
        assert!(
            Avx2Fma::detect().is_some(),
            "this test compares the AVX2 + FMA build with the portable one: run it on a CPU with both"
        );
        let mut fast = Td3::new(&cfg, 8);
        let mut portable = Td3::new(&cfg, 8);
        let (mut r1, mut r2) = (Rng::new(4), Rng::new(4));
        for k in 0..20 {
            let u = Update {
                cfg: &cfg,
                replay: &replay,
                update_actor: k % 2 == 1,
                weights: None,
            };
            fast.update(&u, &mut r1).unwrap();
            portable.update_body::<false>(&u, &mut r2, None).unwrap();
        }
        let diff = |a: &Net, b: &Net| {
            a.params
                .iter()
                .zip(&b.params)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        let moved = diff(&portable.actor, &Td3::new(&cfg, 8).actor);
        assert!(moved > 1e-3, "the actor moved by {moved}");
        // Fused and unfused sums round differently; 20 Adam steps of size
        // 1e-3 keep that far below the steps themselves.
        assert!(diff(&fast.actor, &portable.actor) < 1e-4);
        for c in 0..2 {
            assert!(diff(&fast.critics[c].net, &portable.critics[c].net) < 1e-4);
        }
    }

    #[test]
    fn the_checkpoint_holds_the_table_and_burn_computes_the_same_actions() {
        let actor = Net::new(&[OBS_DIM, 16, 16, ACT_DIM], Output::Tanh, 9, 1.0);
        let dir = std::env::temp_dir().join(format!("l2f-ckpt-{}", std::process::id()));
        let path = dir.join("policy.bpk");
        save_checkpoint(&actor, &path).unwrap();
        let back = load_checkpoint(&path, actor.sizes()).unwrap();
        assert_eq!(back.params, actor.params);
        // burn's forward pass and tanh against the hand-fused one.
        let device = crate::cpu();
        let mlp = crate::mlp::Mlp::from_weights(actor.sizes(), &actor.params, &device).unwrap();
        let mut rng = Rng::new(3);
        let x: Vec<f32> = (0..OBS_DIM * 5)
            .map(|_| rng.range(-1.0, 1.0) as f32)
            .collect();
        let ours = actor.forward(&x, 5, &mut Workspace::default()).to_vec();
        let theirs = crate::mlp::values(
            mlp.forward(crate::mlp::matrix(x, 5, OBS_DIM, &device))
                .tanh(),
        );
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        // A checkpoint of other sizes is refused, naming the file.
        let e = load_checkpoint(&path, &[OBS_DIM, 8, ACT_DIM]).unwrap_err();
        assert!(e.to_string().contains("policy.bpk"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_weight_tables_name_the_line() {
        let actor = Net::new(&[OBS_DIM, 8, ACT_DIM], Output::Tanh, 4, 1.0);
        let table = weight_table(&actor);
        assert!(parse_weight_table(&table, "p.txt").is_ok());
        let cut: String = table.lines().take(20).map(|l| format!("{l}\n")).collect();
        let e = parse_weight_table(&cut, "p.txt").unwrap_err().to_string();
        assert!(e.contains("p.txt") && e.contains("parameter count"), "{e}");
        let sizes = format!("sizes {OBS_DIM} 8 4\n");
        let e = parse_weight_table(
            &table.replacen(&sizes, &format!("{sizes}oops\n"), 1),
            "p.txt",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("p.txt:6:") && e.contains("not a finite number"),
            "{e}"
        );
        let small = format!("{TABLE_HEADER}\nsizes 3 2\n{}", "0\n".repeat(8));
        let e = parse_weight_table(&small, "p.txt").unwrap_err().to_string();
        assert!(e.contains(&format!("must start with {OBS_DIM}")), "{e}");
        let e = parse_weight_table("sizes 25 4\n", "p.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a learn-to-fly weight table"), "{e}");
        // A width past the firmware's limit is named, not multiplied out.
        let huge = format!("{TABLE_HEADER}\nsizes {OBS_DIM} {} 4\n1\n", usize::MAX);
        let e = parse_weight_table(&huge, "p.txt").unwrap_err().to_string();
        assert!(e.contains("wide expected"), "{e}");
    }
}
