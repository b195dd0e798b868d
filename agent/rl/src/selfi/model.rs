//! The model-based part of SELFI: a learned one-step dynamics model, a learned
//! traversability model, and the objective J(s, τ) they make differentiable.
//!
//! J rolls the plan τ (H normalised commands) through the dynamics model from
//! the robot's current velocity, asks the traversability model how likely each
//! predicted pose is to be unsafe given the current scan features, and scores
//!
//! J = w_goal · progress − w_collision · mean_k p_unsafe(k) − w_walker · mean_k Σ_w close_w(k)
//!     − w_smooth · mean_k |τ_k − τ_{k−1}|²
//!
//! where close_w(k) is a soft "the planned pose k is within the clearance of
//! tracked walker w", with w where the learned walker-motion model (the analogue
//! of SELFI's pedestrian-motion network) says it will be k steps on. With `walker_ahead` > 0, J also
//! subtracts w_ahead · mean_k Σ_w ahead_w(k): a soft "walker w is where the
//! supervisor would take over at pose k" — inside the central third of the view
//! and nearer than `ahead_distance + ahead_per_speed · commanded speed` — which
//! unlike the clearance disc does not score passing beside a walker.
//!
//! where progress is how much closer to the goal the plan comes (its closest
//! approach, since a flight ends at the goal), divided by the most a plan can
//! travel (v_max · H · dt).

use super::data::{Dataset, TRACK_POSITION_SCALE, TRAV_INPUT, WALKER_MOTION_SCALE};
use super::{
    BEAMS, OBS_DIM, ObjectiveConfig, OfflineConfig, PlanConfig, SCAN_FEATURES, TRACK_FEATURES,
    TRACKS, TRACKS_AT,
};
use crate::RlError;
use crate::mlp::{Mlp, layer_sizes as layers, matrix, values};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;
use sim::rng::Rng;

/// The learned models J is made of.
#[derive(Module, Debug)]
pub struct Models {
    /// (velocity / 3, command) → (displacement, yaw change, next velocity), normalised.
    pub dynamics: Mlp,
    /// (scan features, relative pose, step / H) → logit of "unsafe".
    pub traversability: Mlp,
    /// A tracked walker in the heading frame (position / 5, velocity / 2) → its
    /// displacement after 1..H steps, over 2 m.
    pub walkers: Mlp,
}

impl Models {
    /// Fresh models drawn from `seed`.
    pub fn new(cfg: &OfflineConfig, horizon: usize, device: &Device, seed: u64) -> Models {
        Models {
            dynamics: Mlp::seeded(&layers(4, &cfg.dynamics_hidden, 5), device, seed),
            traversability: Mlp::seeded(
                &layers(TRAV_INPUT, &cfg.traversability_hidden, 1),
                device,
                seed.wrapping_add(1),
            ),
            walkers: Mlp::seeded(
                &layers(4, &cfg.walker_hidden, 2 * horizon),
                device,
                seed.wrapping_add(2),
            ),
        }
    }

    /// A copy on the autodiff device `ad` whose parameters take no gradient:
    /// gradients flow through it to the plan, never into it.
    pub fn frozen_on(&self, ad: &Device) -> Models {
        self.clone().fork(ad).train().no_grad()
    }

    /// Layer widths of both, for checkpoint checks.
    pub fn sizes(&self) -> Vec<Vec<usize>> {
        vec![
            self.dynamics.sizes(),
            self.traversability.sizes(),
            self.walkers.sizes(),
        ]
    }
}

/// J and its three terms, each `[n, 1]`.
pub struct JParts {
    /// The weighted sum.
    pub total: Tensor<2>,
    /// Goal progress in [−1, 1] (unweighted).
    pub progress: Tensor<2>,
    /// Mean predicted probability of an unsafe pose (unweighted).
    pub unsafe_prob: Tensor<2>,
    /// Mean squared command change (unweighted).
    pub smoothness: Tensor<2>,
    /// Mean over the plan of the summed soft closeness to tracked walkers (unweighted).
    pub walker_risk: Tensor<2>,
    /// Mean over the plan of the summed soft "a walker is where the supervisor
    /// would take over" (unweighted; computed only when its weight is > 0, else 0).
    pub walker_ahead: Tensor<2>,
}

/// J(s, τ) for a batch: `obs` `[n, OBS_DIM]` (scan features, velocity, goal
/// as [`super::data::observation`] builds them) and `plan` `[n, 2H]` in
/// [−1, 1]. Differentiable in `plan` (and `obs`); the models' own parameters
/// should be frozen by the caller when only the plan is to move.
pub fn objective(
    models: &Models,
    obs: Tensor<2>,
    plan: Tensor<2>,
    p: &PlanConfig,
    w: &ObjectiveConfig,
) -> JParts {
    let [n, _] = obs.dims();
    let h = p.horizon;
    let sf = SCAN_FEATURES;
    let obs_all = obs.clone();
    let feats = obs.clone().slice([0..n, 0..sf]);
    let mut vf = obs.clone().slice([0..n, sf..sf + 1]);
    let mut vl = obs.clone().slice([0..n, sf + 1..sf + 2]);
    let dist = obs.clone().slice([0..n, sf + 2..sf + 3]).mul_scalar(10.0);
    let gx = obs.clone().slice([0..n, sf + 3..sf + 4]) * dist.clone();
    let gy = obs.slice([0..n, sf + 4..sf + 5]) * dist.clone();
    let vdt = p.max_speed * p.dt();
    let wdt = p.max_yaw_rate * p.dt();
    let mut x = vf.zeros_like();
    let mut y = vf.zeros_like();
    let mut yaw = vf.zeros_like();
    let mut yaws = Vec::with_capacity(h);
    let mut poses = Vec::with_capacity(h);
    let mut dists = Vec::with_capacity(h);
    let (mut xs, mut ys) = (Vec::with_capacity(h), Vec::with_capacity(h));
    for k in 0..h {
        let cmd = plan.clone().slice([0..n, 2 * k..2 * k + 2]);
        let out = models
            .dynamics
            .forward(Tensor::cat(vec![vf.clone(), vl.clone(), cmd], 1));
        let dx = out.clone().slice([0..n, 0..1]).mul_scalar(vdt);
        let dy = out.clone().slice([0..n, 1..2]).mul_scalar(vdt);
        let dyaw = out.clone().slice([0..n, 2..3]).mul_scalar(wdt);
        vf = out.clone().slice([0..n, 3..4]);
        vl = out.slice([0..n, 4..5]);
        let (c, s) = (yaw.clone().cos(), yaw.clone().sin());
        x = x + c.clone() * dx.clone() - s.clone() * dy.clone();
        y = y + s * dx + c * dy;
        yaw = yaw + dyaw;
        yaws.push(yaw.clone());
        xs.push(x.clone());
        ys.push(y.clone());
        dists.push(
            ((gx.clone() - x.clone()).powi_scalar(2) + (gy.clone() - y.clone()).powi_scalar(2))
                .add_scalar(1e-6)
                .sqrt(),
        );
        poses.push(Tensor::cat(
            vec![
                x.clone().mul_scalar(0.5),
                y.clone().mul_scalar(0.5),
                yaw.clone().cos(),
                yaw.clone().sin(),
                x.zeros_like().add_scalar((k + 1) as f64 / h as f64),
            ],
            1,
        ));
    }
    // [n, h, 5] → [n·h, 5], row i·h + k is state i at step k.
    let poses = Tensor::stack::<3>(poses, 1).reshape([n * h, 5]);
    let feats = feats
        .unsqueeze_dim::<3>(1)
        .repeat_dim(1, h)
        .reshape([n * h, sf]);
    let logits = models
        .traversability
        .forward(Tensor::cat(vec![feats, poses], 1))
        .reshape([n, h]);
    let unsafe_prob = burn::tensor::activation::sigmoid(logits).mean_dim(1);
    // Closest approach to the goal along the plan: the flight ends at the goal,
    // so passing through it is as good as stopping on it.
    let dh = Tensor::cat(dists, 1).min_dim(1);
    let progress = (dist - dh).div_scalar(vdt * h as f64);
    let smoothness = if h > 1 {
        let a = plan.clone().slice([0..n, 2..2 * h]);
        let b = plan.clone().slice([0..n, 0..2 * h - 2]);
        (a - b).powi_scalar(2).mean_dim(1)
    } else {
        progress.zeros_like()
    };
    // Commanded forward speeds (m/s), what the supervisor's limit grows with.
    let speeds = Tensor::cat(
        (0..h)
            .map(|k| plan.clone().slice([0..n, 2 * k..2 * k + 1]))
            .collect(),
        1,
    )
    .add_scalar(1.0)
    .mul_scalar(0.5 * p.max_speed);
    let (walker_risk, walker_ahead) = walker_risk(
        models,
        obs_all,
        PlannedPoses {
            xs: Tensor::cat(xs, 1),
            ys: Tensor::cat(ys, 1),
            yaws: Tensor::cat(yaws, 1),
            speeds,
        },
        w,
    );
    let total = progress.clone().mul_scalar(w.goal)
        - unsafe_prob.clone().mul_scalar(w.collision)
        - walker_risk.clone().mul_scalar(w.walker)
        - walker_ahead.clone().mul_scalar(w.walker_ahead)
        - smoothness.clone().mul_scalar(w.smoothness);
    JParts {
        total,
        progress,
        unsafe_prob,
        smoothness,
        walker_risk,
        walker_ahead,
    }
}

/// How soft the walker-closeness step is (m): closeness is
/// sigmoid((clearance − distance) / this).
const WALKER_SOFTNESS: f64 = 0.15;

/// The radius J assumes for a tracked person (m; the twin's walkers are 0.25 m).
const WALKER_RADIUS: f64 = 0.25;

/// Half the central third of the camera's 90° view, where the supervisor looks.
const CENTRAL_HALF_ANGLE_DEG: f64 = 15.0;

/// The plan's poses in the heading frame, each `[n, H]`.
struct PlannedPoses {
    xs: Tensor<2>,
    ys: Tensor<2>,
    yaws: Tensor<2>,
    /// Commanded forward speed (m/s).
    speeds: Tensor<2>,
}

/// (Σ over tracked walkers of mean_k sigmoid((clearance − |pose_k − walker_k|) / softness),
/// Σ over tracked walkers of mean_k ahead_w(k)), each `[n, 1]`, where ahead_w(k)
/// is a soft "walker w's surface is inside pose k's central third and nearer than
/// `ahead_distance + ahead_per_speed · speed_k`".
fn walker_risk(
    models: &Models,
    obs: Tensor<2>,
    poses: PlannedPoses,
    w: &ObjectiveConfig,
) -> (Tensor<2>, Tensor<2>) {
    let PlannedPoses {
        xs,
        ys,
        yaws,
        speeds,
    } = poses;
    let [n, h] = xs.dims();
    let (cos, sin) = (yaws.clone().cos(), yaws.sin());
    let tan = CENTRAL_HALF_ANGLE_DEG.to_radians().tan();
    let edge = WALKER_RADIUS / CENTRAL_HALF_ANGLE_DEG.to_radians().cos();
    let limit = speeds
        .mul_scalar(w.ahead_per_speed)
        .add_scalar(w.ahead_distance + WALKER_RADIUS);
    let mut risk = xs.zeros_like().slice([0..n, 0..1]);
    let mut ahead = risk.clone();
    for slot in 0..TRACKS {
        let at = TRACKS_AT + slot * TRACK_FEATURES;
        let seen = obs.clone().slice([0..n, at..at + 1]);
        let track = obs.clone().slice([0..n, at + 1..at + 5]);
        let wx = track
            .clone()
            .slice([0..n, 0..1])
            .mul_scalar(TRACK_POSITION_SCALE);
        let wy = track
            .clone()
            .slice([0..n, 1..2])
            .mul_scalar(TRACK_POSITION_SCALE);
        let disp = models
            .walkers
            .forward(track)
            .mul_scalar(WALKER_MOTION_SCALE)
            .reshape([n, h, 2]);
        let px = disp.clone().slice([0..n, 0..h, 0..1]).reshape([n, h]) + wx;
        let py = disp.slice([0..n, 0..h, 1..2]).reshape([n, h]) + wy;
        let (dx, dy) = (px - xs.clone(), py - ys.clone());
        let d = (dx.clone().powi_scalar(2) + dy.clone().powi_scalar(2))
            .add_scalar(1e-6)
            .sqrt();
        let close = burn::tensor::activation::sigmoid(
            d.clone()
                .neg()
                .add_scalar(w.walker_clearance)
                .div_scalar(WALKER_SOFTNESS),
        )
        .mean_dim(1);
        risk = risk + close * seen.clone();
        if w.walker_ahead > 0.0 {
            use burn::tensor::activation::sigmoid;
            let fwd = cos.clone() * dx.clone() + sin.clone() * dy.clone();
            let lat = (cos.clone() * dy - sin.clone() * dx)
                .powi_scalar(2)
                .add_scalar(1e-4)
                .sqrt();
            let inside = sigmoid(
                (fwd.clone().mul_scalar(tan).add_scalar(edge) - lat).div_scalar(AHEAD_SOFTNESS),
            ) * sigmoid(fwd.div_scalar(AHEAD_SOFTNESS));
            let near = sigmoid((limit.clone() - d).div_scalar(AHEAD_SOFTNESS));
            ahead = ahead + (inside * near).mean_dim(1) * seen;
        }
    }
    (risk, ahead)
}

/// How soft the edges of the take-over region are (m).
const AHEAD_SOFTNESS: f64 = 0.1;

/// The value of a scalar loss, or the error that stops training when it is NaN
/// or infinite (`what` names the loss, `step` where it happened).
pub(crate) fn finite_loss(loss: &Tensor<1>, step: u64, what: &'static str) -> Result<f32, RlError> {
    let l = loss.clone().into_scalar::<f32>();
    if l.is_finite() {
        Ok(l)
    } else {
        Err(RlError::Diverged {
            step,
            what,
            value: l,
        })
    }
}

/// What fitting the models gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FitReport {
    /// Dynamics MSE (normalised units) on held-out rows, first and last check.
    pub dynamics_mse: (f32, f32),
    /// Traversability cross-entropy on held-out rows, first and last check.
    pub traversability_bce: (f32, f32),
    /// Accuracy of the traversability model (threshold 0.5) on held-out rows.
    pub traversability_accuracy: f32,
    /// Share of unsafe labels among the held-out rows.
    pub unsafe_share: f32,
    /// Walker-motion MSE (units of 2 m) on held-out rows, first and last check
    /// (zero without walker rows).
    pub walker_mse: (f32, f32),
    /// Mean error (m) of the motion model's prediction at the end of the plan on
    /// held-out rows, and of holding each walker's tracked velocity instead.
    pub walker_final_error: (f32, f32),
}

fn split(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        idx.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let test = (n / 10).max(1).min(n.saturating_sub(1));
    let train = idx.split_off(test);
    (train, idx)
}

fn gather(rows: &[f32], width: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * width);
    for &i in idx {
        out.extend_from_slice(&rows[i * width..(i + 1) * width]);
    }
    out
}

fn bce(logits: Tensor<2>, labels: Tensor<2>) -> Tensor<1> {
    let pos = log_sigmoid(logits.clone()) * labels.clone();
    let neg = log_sigmoid(logits.neg()) * labels.neg().add_scalar(1.0);
    (pos + neg).neg().mean()
}

/// Fit both models to a dataset (90 % train, 10 % held out); `progress` is
/// called with (model, step, held-out loss) at every check.
pub fn fit_models(
    ds: &Dataset,
    cfg: &OfflineConfig,
    p: &PlanConfig,
    device: &Device,
    seed: u64,
    mut progress: impl FnMut(&str, usize, f32),
) -> Result<(Models, FitReport), RlError> {
    let train_dev = device.clone().autodiff();
    let Models {
        mut dynamics,
        mut traversability,
        mut walkers,
    } = Models::new(cfg, p.horizon, &train_dev, seed);
    let mut rng = Rng::new(seed ^ 0xf17);
    let mut report = FitReport::default();
    let check = (cfg.model_steps / 10).max(1);

    // Dynamics: mean squared error.
    let nd = ds.dynamics.targets.len() / 5;
    let (tr, te) = split(nd, seed);
    let te_x = matrix(gather(&ds.dynamics.inputs, 4, &te), te.len(), 4, device);
    let te_y = matrix(gather(&ds.dynamics.targets, 5, &te), te.len(), 5, device);
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    for step in 0..=cfg.model_steps {
        if step % check == 0 || step == cfg.model_steps {
            let pred = dynamics.valid().forward(te_x.clone());
            let mse = values((pred - te_y.clone()).powi_scalar(2).mean())[0];
            if step == 0 {
                report.dynamics_mse.0 = mse;
            }
            report.dynamics_mse.1 = mse;
            progress("dynamics", step, mse);
        }
        if step == cfg.model_steps {
            break;
        }
        let b: Vec<usize> = (0..cfg.batch)
            .map(|_| tr[rng.below(tr.len() as u64) as usize])
            .collect();
        let x = matrix(gather(&ds.dynamics.inputs, 4, &b), b.len(), 4, &train_dev);
        let y = matrix(gather(&ds.dynamics.targets, 5, &b), b.len(), 5, &train_dev);
        let loss = (dynamics.forward(x) - y).powi_scalar(2).mean();
        finite_loss(&loss, step as u64, "SELFI dynamics-model loss")?;
        let grads = GradientsParams::from_grads(loss.backward(), &dynamics);
        dynamics = optim.step(cfg.learning_rate, dynamics, grads);
    }

    // Traversability: binary cross-entropy.
    let nt = ds.traversability.labels.len();
    let (tr, te) = split(nt, seed ^ 1);
    let w = TRAV_INPUT;
    let te_x = matrix(
        gather(&ds.traversability.inputs, w, &te),
        te.len(),
        w,
        device,
    );
    let te_labels = gather(&ds.traversability.labels, 1, &te);
    report.unsafe_share = te_labels.iter().sum::<f32>() / te_labels.len().max(1) as f32;
    let te_y = matrix(te_labels.clone(), te.len(), 1, device);
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    for step in 0..=cfg.model_steps {
        if step % check == 0 || step == cfg.model_steps {
            let logits = traversability.valid().forward(te_x.clone());
            let l = values(bce(logits.clone(), te_y.clone()))[0];
            if step == 0 {
                report.traversability_bce.0 = l;
            }
            report.traversability_bce.1 = l;
            let hits = values(logits)
                .iter()
                .zip(&te_labels)
                .filter(|(z, y)| (**z > 0.0) == (**y > 0.5))
                .count();
            report.traversability_accuracy = hits as f32 / te_labels.len().max(1) as f32;
            progress("traversability", step, l);
        }
        if step == cfg.model_steps {
            break;
        }
        let b: Vec<usize> = (0..cfg.batch)
            .map(|_| tr[rng.below(tr.len() as u64) as usize])
            .collect();
        let x = matrix(
            gather(&ds.traversability.inputs, w, &b),
            b.len(),
            w,
            &train_dev,
        );
        let y = matrix(
            gather(&ds.traversability.labels, 1, &b),
            b.len(),
            1,
            &train_dev,
        );
        let loss = bce(traversability.forward(x), y);
        finite_loss(&loss, step as u64, "SELFI traversability-model loss")?;
        let grads = GradientsParams::from_grads(loss.backward(), &traversability);
        traversability = optim.step(cfg.learning_rate, traversability, grads);
    }
    // Walker motion: mean squared error over the horizon's displacements.
    let h2 = 2 * p.horizon;
    let nw = ds.walkers.targets.len() / h2;
    if nw >= 2 && ds.walkers.inputs.len() == nw * 4 {
        let (tr, te) = split(nw, seed ^ 2);
        let te_in = gather(&ds.walkers.inputs, 4, &te);
        let te_out = gather(&ds.walkers.targets, h2, &te);
        let te_x = matrix(te_in.clone(), te.len(), 4, device);
        let te_y = matrix(te_out.clone(), te.len(), h2, device);
        let mut optim: ModuleOptimizer = AdamConfig::new().init();
        for step in 0..=cfg.model_steps {
            if step % check == 0 || step == cfg.model_steps {
                let pred = walkers.valid().forward(te_x.clone());
                let mse = values((pred.clone() - te_y.clone()).powi_scalar(2).mean())[0];
                if step == 0 {
                    report.walker_mse.0 = mse;
                }
                report.walker_mse.1 = mse;
                progress("walker motion", step, mse);
                if step == cfg.model_steps {
                    report.walker_final_error = final_errors(&values(pred), &te_in, &te_out, p);
                    break;
                }
            }
            let b: Vec<usize> = (0..cfg.batch)
                .map(|_| tr[rng.below(tr.len() as u64) as usize])
                .collect();
            let x = matrix(gather(&ds.walkers.inputs, 4, &b), b.len(), 4, &train_dev);
            let y = matrix(gather(&ds.walkers.targets, h2, &b), b.len(), h2, &train_dev);
            let loss = (walkers.forward(x) - y).powi_scalar(2).mean();
            finite_loss(&loss, step as u64, "SELFI walker-motion loss")?;
            let grads = GradientsParams::from_grads(loss.backward(), &walkers);
            walkers = optim.step(cfg.learning_rate, walkers, grads);
        }
    }
    Ok((
        Models {
            dynamics: dynamics.valid(),
            traversability: traversability.valid(),
            walkers: walkers.valid(),
        },
        report,
    ))
}

/// Mean end-of-plan position error (m) of the model's predictions `pred` and of
/// holding the tracked velocity, over rows of (`inputs`, `targets`).
fn final_errors(pred: &[f32], inputs: &[f32], targets: &[f32], p: &PlanConfig) -> (f32, f32) {
    let h2 = 2 * p.horizon;
    let n = targets.len() / h2;
    if n == 0 {
        return (0.0, 0.0);
    }
    let m = WALKER_MOTION_SCALE as f32;
    // Tracked velocity (input / its scale) times the plan's duration.
    let v_end =
        crate::selfi::data::TRACK_VELOCITY_SCALE as f32 * (p.horizon as f64 * p.dt()) as f32;
    let (mut model, mut hold) = (0.0, 0.0);
    for i in 0..n {
        let (tx, ty) = (targets[i * h2 + h2 - 2] * m, targets[i * h2 + h2 - 1] * m);
        let (px, py) = (pred[i * h2 + h2 - 2] * m, pred[i * h2 + h2 - 1] * m);
        let (cx, cy) = (inputs[i * 4 + 2] * v_end, inputs[i * 4 + 3] * v_end);
        model += (tx - px).hypot(ty - py);
        hold += (tx - cx).hypot(ty - cy);
    }
    (model / n as f32, hold / n as f32)
}

/// The actor: observation → H normalised commands (tanh).
#[derive(Module, Debug)]
pub struct Actor {
    /// The network (outputs before tanh).
    pub net: Mlp,
}

impl Actor {
    /// A fresh actor drawn from `seed`.
    pub fn new(hidden: &[usize], horizon: usize, device: &Device, seed: u64) -> Actor {
        Actor {
            net: Mlp::seeded(&layers(OBS_DIM, hidden, 2 * horizon), device, seed),
        }
    }

    /// `[n, OBS_DIM] → [n, 2H]` in (−1, 1).
    pub fn forward(&self, obs: Tensor<2>) -> Tensor<2> {
        self.net.forward(obs).tanh()
    }

    /// The plan and its pre-tanh values: a loss that keeps the latter small keeps
    /// the commands off tanh's flat ends, where no gradient could move them later.
    pub fn forward_pre(&self, obs: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let u = self.net.forward(obs);
        (u.clone().tanh(), u)
    }

    /// Save as a burnpack file (what the policy node loads).
    pub fn save(&self, path: &std::path::Path) -> Result<(), RlError> {
        crate::learner::save_module(self, path)
    }

    /// The plan for one observation.
    pub fn plan(&self, obs: &[f32], device: &Device) -> Vec<f32> {
        values(self.forward(matrix(obs.to_vec(), 1, obs.len(), device)))
    }
}

/// How many of J's parts [`objective_features`] gives.
pub const OBJECTIVE_FEATURES: usize = 4;

/// J's parts that say what a plan risks, `[n, OBJECTIVE_FEATURES]`: goal progress,
/// mean predicted unsafe share, walker closeness and walkers where the supervisor
/// would take over (unweighted; each of order 1; the last is 0 unless
/// `walker_ahead` > 0, which is when J computes it).
/// The SELFI critics may take them as inputs (`online.critic_features`).
pub fn objective_features(parts: &JParts) -> Tensor<2> {
    Tensor::cat(
        vec![
            parts.progress.clone(),
            parts.unsafe_prob.clone(),
            parts.walker_risk.clone(),
            parts.walker_ahead.clone(),
        ],
        1,
    )
}

/// J and its [`objective_features`] on a batch of plain rows (no gradient):
/// `obs` rows of OBS_DIM, plans of 2H → (J per row, features row-major).
pub fn objective_values_and_features(
    models: &Models,
    obs: &[f32],
    plans: &[f32],
    p: &PlanConfig,
    w: &ObjectiveConfig,
    device: &Device,
) -> (Vec<f32>, Vec<f32>) {
    let n = obs.len() / OBS_DIM;
    let j = objective(
        models,
        matrix(obs.to_vec(), n, OBS_DIM, device),
        matrix(plans.to_vec(), n, 2 * p.horizon, device),
        p,
        w,
    );
    (values(j.total.clone()), values(objective_features(&j)))
}

/// Train the actor offline to maximise J over the dataset's states through the
/// frozen models; `progress` gets (step, mean J on a fixed probe batch).
#[allow(clippy::too_many_arguments)]
pub fn train_actor(
    ds: &Dataset,
    models: &Models,
    cfg: &OfflineConfig,
    p: &PlanConfig,
    w: &ObjectiveConfig,
    device: &Device,
    seed: u64,
    mut progress: impl FnMut(usize, f32),
) -> Result<Actor, RlError> {
    let train_dev = device.clone().autodiff();
    let frozen = models.frozen_on(&train_dev);
    let mut actor = Actor::new(&cfg.actor_hidden, p.horizon, &train_dev, seed);
    let mut rng = Rng::new(seed ^ 0xac7);
    let n = ds.states.len();
    if n == 0 {
        return Err(RlError::Config("no states to train the actor on".into()));
    }
    let probe: Vec<f32> = (0..256.min(n))
        .flat_map(|i| ds.states[i * n / 256.min(n)].clone())
        .collect();
    let probe_n = probe.len() / OBS_DIM;
    let probe = matrix(probe, probe_n, OBS_DIM, device);
    let check = (cfg.actor_steps / 10).max(1);
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    for step in 0..=cfg.actor_steps {
        if step % check == 0 || step == cfg.actor_steps {
            let a = actor.valid();
            let j = objective(models, probe.clone(), a.forward(probe.clone()), p, w);
            progress(step, values(j.total.mean())[0]);
        }
        if step == cfg.actor_steps {
            break;
        }
        let rows: Vec<f32> = (0..cfg.batch)
            .flat_map(|_| ds.states[rng.below(n as u64) as usize].clone())
            .collect();
        let obs = matrix(rows, cfg.batch, OBS_DIM, &train_dev);
        let (plan, pre) = actor.forward_pre(obs.clone());
        let loss = objective(&frozen, obs, plan, p, w).total.mean().neg()
            + pre
                .powi_scalar(2)
                .mean()
                .mul_scalar(cfg.pre_activation_penalty);
        finite_loss(&loss, step as u64, "SELFI offline actor objective")?;
        let grads = GradientsParams::from_grads(loss.backward(), &actor);
        actor = optim.step(cfg.learning_rate, actor, grads);
    }
    Ok(actor.valid())
}

/// Scan features of open space (every beam at range, nothing moving).
pub fn open_scan_features() -> Vec<f32> {
    let mut f = vec![1.0; BEAMS];
    f.extend(std::iter::repeat_n(0.0, BEAMS));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfi::data::observation;

    use crate::cpu;

    #[test]
    fn objective_prefers_plans_towards_the_goal_and_is_differentiable() {
        let (d, p, w, mut ds) = fixture();
        ds.traversability.inputs = vec![0.0; TRAV_INPUT * 4];
        ds.traversability.labels = vec![0.0, 1.0, 0.0, 1.0];
        ds.states = vec![vec![0.0; OBS_DIM]];
        let cfg = OfflineConfig {
            model_steps: 600,
            ..OfflineConfig::default()
        };
        let (models, rep) = fit_models(&ds, &cfg, &p, &d, 3, |_, _, _| {}).unwrap();
        assert!(rep.dynamics_mse.1 < 0.2 * rep.dynamics_mse.0, "{rep:?}");
        let obs = observation(&open_scan_features(), [1.0, 0.0], [5.0, 0.0], &[]);
        let h = p.horizon;
        let straight: Vec<f32> = (0..h).flat_map(|_| [1.0, 0.0]).collect();
        let away: Vec<f32> = (0..h).flat_map(|_| [1.0, 1.0]).collect();
        let mut both = obs.clone();
        both.extend(&obs);
        let mut plans = straight.clone();
        plans.extend(&away);
        let (j, _) = objective_values_and_features(&models, &both, &plans, &p, &w, &d);
        assert!(
            j[0] > j[1] + 0.1,
            "straight at the goal {} vs turning away {}",
            j[0],
            j[1]
        );
        // Straight at full speed for 1.6 s covers about 2.4 m of the 5 → progress ≈ 1.
        assert!(j[0] > 0.7 && j[0] <= 1.05, "{}", j[0]);
        // Gradient reaches the plan.
        let ad = d.clone().autodiff();
        let m = models.frozen_on(&ad);
        let plan = matrix(away, 1, 2 * h, &ad).require_grad();
        let jt = objective(&m, matrix(obs, 1, OBS_DIM, &ad), plan.clone(), &p, &w).total;
        let g = jt.sum().backward();
        let grad = plan.grad(&g).map(values).unwrap_or_default();
        assert_eq!(grad.len(), 2 * h);
        // Turning less (yaw component) should raise J.
        assert!(grad[1] < 0.0, "{grad:?}");
    }

    /// The CPU device, the default plan, J without the collision term, and rows of
    /// exact unicycle motion: an untrained dynamics model predicts nothing useful,
    /// so the tests train a tiny one on these first.
    fn fixture() -> (Device, PlanConfig, ObjectiveConfig, Dataset) {
        let p = PlanConfig::default();
        let w = ObjectiveConfig {
            collision: 0.0,
            ..ObjectiveConfig::default()
        };
        let mut ds = Dataset::default();
        let mut rng = Rng::new(1);
        for _ in 0..2000 {
            let a = [rng.range(-1.0, 1.0) as f32, rng.range(-1.0, 1.0) as f32];
            let (v, om) = p.command(a);
            let dt = p.dt();
            let yaw = om * dt;
            let (dx, dy) = if om.abs() < 1e-9 {
                (v * dt, 0.0)
            } else {
                (v / om * yaw.sin(), v / om * (1.0 - yaw.cos()))
            };
            ds.dynamics.inputs.extend([v as f32 / 3.0, 0.0, a[0], a[1]]);
            ds.dynamics.targets.extend([
                (dx / (p.max_speed * dt)) as f32,
                (dy / (p.max_speed * dt)) as f32,
                (yaw / (p.max_yaw_rate * dt)) as f32,
                v as f32 / 3.0,
                0.0,
            ]);
        }
        (cpu(), p, w, ds)
    }

    #[test]
    fn walkers_where_the_motion_model_puts_them_lower_j() {
        let (d, p, w, mut ds) = fixture();
        ds.traversability.inputs = vec![0.0; TRAV_INPUT * 2];
        ds.traversability.labels = vec![0.0, 1.0];
        // Walkers that walk at their tracked velocity.
        let mut rng = Rng::new(5);
        let m = crate::selfi::data::WALKER_MOTION_SCALE as f32;
        for _ in 0..3000 {
            let t = [
                rng.range(-1.0, 1.0) as f32,
                rng.range(-1.0, 1.0) as f32,
                rng.range(-0.5, 0.5) as f32,
                rng.range(-0.5, 0.5) as f32,
            ];
            ds.walkers.inputs.extend(t);
            for k in 1..=p.horizon {
                let s = (k as f64 * p.dt()) as f32 * 2.0 / m; // velocity is over 2 m/s
                ds.walkers.targets.extend([t[2] * s, t[3] * s]);
            }
        }
        let cfg = OfflineConfig {
            model_steps: 1500,
            ..OfflineConfig::default()
        };
        let (models, rep) = fit_models(&ds, &cfg, &p, &d, 3, |_, _, _| {}).unwrap();
        assert!(rep.walker_mse.1 < 0.1 * rep.walker_mse.0, "{rep:?}");
        assert!(rep.walker_final_error.0 < 0.15, "{rep:?}");
        let open = observation(&open_scan_features(), [1.0, 0.0], [5.0, 0.0], &[]);
        let track = |x: f64, y: f64, vy: f64| {
            crate::selfi::data::track_features(
                [0.0, 0.0, 0.0],
                &[crate::selfi::data::Walker {
                    id: 1,
                    position: [x, y],
                    velocity: [0.0, vy],
                }],
            )
        };
        let obs = |t: &[f32]| observation(&open_scan_features(), [1.0, 0.0], [5.0, 0.0], t);
        let h = p.horizon;
        let straight: Vec<f32> = (0..h).flat_map(|_| [1.0, 0.0]).collect();
        let stop: Vec<f32> = (0..h).flat_map(|_| [-1.0, 0.0]).collect();
        // Rows: no walker; a walker standing 1.8 m ahead; one 2 m ahead and 1.6 m
        // to the left walking right into the path; one walking away to the left.
        let rows = [
            open.clone(),
            obs(&track(1.8, 0.0, 0.0)),
            obs(&track(2.0, 1.6, -1.0)),
            obs(&track(2.0, 1.6, 1.0)),
        ];
        let mut all = Vec::new();
        let mut plans = Vec::new();
        for r in &rows {
            all.extend(r);
            plans.extend(&straight);
        }
        all.extend(&rows[1]);
        plans.extend(&stop);
        // A walker standing 1.1 m beside the path: passed, not in the way.
        all.extend(obs(&track(1.2, 1.1, 0.0)));
        plans.extend(&straight);
        let n = rows.len() + 2;
        let parts_with = |w: &ObjectiveConfig| {
            objective(
                &models,
                matrix(all.clone(), n, OBS_DIM, &d),
                matrix(plans.clone(), n, 2 * h, &d),
                &p,
                w,
            )
        };
        let parts = parts_with(&w);
        let risk = values(parts.walker_risk);
        assert_eq!(risk[0], 0.0, "no walker, no risk");
        assert!(risk[1] > 0.3, "flying through a standing walker: {risk:?}");
        assert!(risk[2] > 2.0 * risk[3], "crossing vs leaving: {risk:?}");
        assert!(risk[4] < 0.5 * risk[1], "stopping short of it: {risk:?}");
        let j = values(parts.total);
        assert!(j[1] < j[0] - 0.5, "{j:?}");
        // The supervisor-shaped term (computed when weighted): a walker ahead
        // within the take-over distance counts; one beside the path (inside the
        // clearance disc) and one the plan stops short of do not.
        assert!(values(parts.walker_ahead).iter().all(|v| *v == 0.0));
        let mut weighted = w.clone();
        weighted.walker_ahead = 2.0;
        let with = parts_with(&weighted);
        let ahead = values(with.walker_ahead);
        assert_eq!(ahead[0], 0.0, "no walker: {ahead:?}");
        assert!(ahead[1] > 0.3, "flying at a standing walker: {ahead:?}");
        assert!(risk[5] > 0.3, "the disc scores the pass: {risk:?}");
        assert!(ahead[5] < 0.1 * ahead[1], "passing beside it: {ahead:?}");
        assert!(ahead[4] < 0.5 * ahead[1], "stopping short of it: {ahead:?}");
        for (i, jw) in values(with.total).iter().enumerate() {
            assert!(
                (j[i] - 2.0 * ahead[i] - jw).abs() < 1e-4,
                "J subtracts walker_ahead · the term (row {i}): {} vs {jw}",
                j[i] - 2.0 * ahead[i]
            );
        }
    }
}
