//! The main job: a simulated flight that learns, and the flight loop that
//! `agent persist` runs once per arm.
//!
//! The quadrotor flies forward through the twin's rooms and turns away when the
//! depth scan it flies on says an obstacle is near (the behaviour of the
//! persistent self-supervised learning paper). Every frame the stereo cue,
//! semi-global matching ([`stereo::Sgm`]) on the rendered pair, labels the frame;
//! the monocular network predicts the same scan from the left image alone and its
//! error against stereo is measured on that frame before the learner ever sees
//! it. The [`crate::persist::Switcher`] decides which cue flies. The twin's exact
//! depth is used only to log how good the stereo cue is.
//!
//! In the twin the learner runs in lockstep by default: it is granted a fixed
//! number of training steps per simulated second, overlapping the frames in
//! between, so a run repeats exactly and does not depend on the machine's speed.
//! On the robot (or with `learner_pacing = "free"`) it trains as fast as it can.

use crate::device::{Backend, device};
use crate::learner::{Learner, LearnerConfig, Pacing, Sample};
pub use crate::mono::save_checkpoint;
use crate::mono::{MonoNet, MonoShape, coarse_target, depth_scan};
use crate::persist::{DelayLine, FrameRecord, Mode, PersistConfig, Strategy, Switch};
pub use crate::pipeline::AvoidConfig;
pub use crate::pipeline::depth::scan_shape;
use crate::pipeline::switch::mono_error;
use crate::pipeline::{
    Decision, Local, LoopConfig, MonoOutput, MonoStage, Pilot, PilotInput, RigGeometry,
    StereoStage, Velocity,
};
use crate::telemetry::{Sink, Telemetry, TelemetryNotes};
use anyhow::{Context as _, Result, bail};
use burn::module::Module;
use bus::msg::StereoPair;
use bus::wire::Header;
use serde::{Deserialize, Serialize};
use sim::Context;
use sim::env::{Action, Env, EnvConfig, Task};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tracing::{info, warn};

/// How the learner thread is paced (the config's spelling of [`Pacing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnerPacing {
    /// Granted `train_rate` steps per simulated second.
    Lockstep,
    /// As fast as it can, in parallel.
    Free,
}

/// Settings of `agent fly` and `agent persist` (a TOML file; every key optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlyConfig {
    /// Simulated seconds to fly.
    pub seconds: f64,
    /// Seed of the first episode (later episodes derive from it).
    pub seed: u64,
    /// Log camera images and depth maps every this many frames.
    pub image_every: u64,
    /// Log scalars and the pose every this many frames (events always).
    pub scalar_every: u64,
    /// Simulated seconds per wall-clock second; 0 runs as fast as the CPU allows.
    /// The learner trains in parallel, so a slower flight gives it more steps per
    /// simulated second, as on the robot, where the camera sets the pace.
    pub speed: f64,
    /// Backend of the networks.
    pub backend: Backend,
    /// How the learner is paced: granted steps per simulated second (reproducible)
    /// or free-running (as on the robot).
    pub learner_pacing: LearnerPacing,
    /// Training steps per simulated second in lockstep pacing.
    pub train_rate: f64,
    /// How the robot picks its cue (`agent fly`; `agent persist` flies all three).
    pub strategy: Strategy,
    /// Switching rule and training wheels.
    pub persist: PersistConfig,
    /// The twin's context.
    pub context: Context,
    /// Behaviour.
    pub avoid: AvoidConfig,
    /// Limits on velocity commands from outside the agent (the graph's
    /// `policy --external`; the in-process loop flies its own policy).
    pub external: crate::pipeline::ExternalConfig,
    /// Network shape.
    pub mono: MonoShape,
    /// Learner.
    pub learner: LearnerConfig,
    /// Stereo matcher.
    pub stereo: stereo::SgmParams,
    /// Where the stereo matcher runs (`cpu`, `gpu`, `auto`).
    pub stereo_backend: Backend,
    /// A blank (textureless) wall across the twin's room at this distance
    /// along it (m): what stereo cannot see. Absent in ordinary flights.
    pub blank_wall: Option<f64>,
}

impl Default for FlyConfig {
    fn default() -> Self {
        let l = LoopConfig::default();
        Self {
            seconds: 60.0,
            seed: 1,
            image_every: 6,
            scalar_every: 1,
            speed: 4.0,
            backend: l.backend,
            learner_pacing: LearnerPacing::Lockstep,
            train_rate: 20.0,
            strategy: Strategy::Persistent,
            persist: l.persist,
            context: Context::default(),
            avoid: l.avoid,
            external: l.external,
            mono: l.mono,
            learner: l.learner,
            stereo: l.stereo,
            stereo_backend: l.stereo_backend,
            blank_wall: None,
        }
    }
}

impl FlyConfig {
    /// The settings of the loop's stages (what the robot's nodes take).
    pub fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            backend: self.backend,
            persist: self.persist,
            avoid: self.avoid,
            external: self.external,
            mono: self.mono,
            learner: self.learner.clone(),
            stereo: self.stereo,
            stereo_backend: self.stereo_backend,
        }
    }

    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let c: FlyConfig = toml::from_str(&text)
            .with_context(|| format!("malformed config {}", path.display()))?;
        c.validate()
            .with_context(|| format!("invalid config {}", path.display()))?;
        Ok(c)
    }

    /// Check ranges.
    pub fn validate(&self) -> Result<()> {
        self.context.validate()?;
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 86_400.0) {
            bail!("`seconds` = {} must be in (0, 86400]", self.seconds);
        }
        if let Some(x) = self.blank_wall
            && !(x.is_finite() && x > 0.0 && x < self.context.room_length)
        {
            bail!(
                "`blank_wall` = {x} must be inside the room, in (0, {})",
                self.context.room_length
            );
        }
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            bail!("`speed` = {} must be 0 (unpaced) or positive", self.speed);
        }
        if self.image_every == 0 || self.scalar_every == 0 {
            bail!("`image_every` and `scalar_every` must be at least 1");
        }
        if !(self.train_rate.is_finite() && self.train_rate > 0.0 && self.train_rate <= 1000.0) {
            bail!("`train_rate` = {} must be in (0, 1000]", self.train_rate);
        }
        self.loop_config().validate(self.context.room_height)?;
        Ok(())
    }
}

/// What a flight achieved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlySummary {
    /// Camera frames flown.
    pub frames: u64,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// Distance flown (m).
    pub distance: f64,
    /// Collisions.
    pub collisions: u64,
    /// Rooms crossed end to end.
    pub successes: u64,
    /// Frames flown on the mono cue.
    pub mono_frames: u64,
    /// Training-wheel interventions.
    pub interventions: u64,
    /// Switches from stereo to mono flight.
    pub switches_to_mono: u64,
    /// Learner steps.
    pub learner_steps: u64,
    /// Last learner loss.
    pub learner_loss: f32,
    /// Weight updates picked up by the flying loop.
    pub weight_updates: u64,
    /// Samples the learner could not take in time.
    pub dropped_samples: u64,
    /// Samples refused as malformed (NaN labels, wrong sizes).
    pub rejected_samples: u64,
    /// Training steps thrown away because the loss was not finite.
    pub diverged_steps: u64,
    /// Mean |log(mono) - log(stereo)| over valid columns, first quarter of the flight.
    pub mono_error_first: f64,
    /// The same over the last quarter.
    pub mono_error_last: f64,
    /// Whether the flight stopped early on Ctrl-C.
    pub interrupted: bool,
    /// Telemetry logging calls dropped because the sink fell behind (the
    /// flight never waits for it).
    pub telemetry_dropped: u64,
}

/// One arm's flight: its frames and summary, and the network it trained.
pub struct ArmResult {
    /// What happened in every frame.
    pub records: Vec<FrameRecord>,
    /// Totals.
    pub summary: FlySummary,
    /// The trained network (`None` for stereo only).
    pub net: Option<MonoNet>,
}

/// Fly one arm: `strategy` picks the cue; `init` are starting weights on the
/// training (autodiff) device (resume);
/// stops early when `stop` is set (Ctrl-C). Telemetry goes to `tel` (scoped by the caller).
pub fn fly_arm(
    cfg: &FlyConfig,
    strategy: Strategy,
    tel: &Telemetry,
    init: Option<MonoNet>,
    stop: &AtomicBool,
) -> Result<ArmResult> {
    cfg.validate()?;
    let plain = device(cfg.backend)?;
    let train_device = plain.clone().autodiff();
    let pacing = match cfg.learner_pacing {
        LearnerPacing::Lockstep => Pacing::Lockstep,
        LearnerPacing::Free => Pacing::FreeRunning,
    };
    let (infer_net, mut learner) = if strategy.learns() {
        let net = match init {
            Some(n) => n,
            None => MonoNet::seeded(&cfg.mono, &train_device, cfg.learner.seed)?,
        };
        info!(params = net.num_params(), backend = ?cfg.backend, ?pacing, arm = strategy.name(), "mono network ready");
        let infer = net.valid();
        let l = Learner::spawn(net, cfg.mono, cfg.learner.clone(), train_device, pacing);
        (Some(infer), Some(l))
    } else {
        (None, None)
    };

    let env_cfg = EnvConfig {
        render: true,
        task: Task::ForwardFlight,
        max_steps: u32::MAX,
        blank_wall: cfg.blank_wall,
        ..EnvConfig::default()
    };
    let rig = env_cfg.rig;
    let (cam_w, cam_h) = (rig.intrinsics.width, rig.intrinsics.height);
    if !cam_w.is_multiple_of(cfg.mono.width) || !cam_h.is_multiple_of(cfg.mono.height) {
        bail!(
            "mono input {}x{} must divide the camera's {}x{}",
            cfg.mono.width,
            cfg.mono.height,
            cam_w,
            cam_h
        );
    }
    // The loop's stages on the in-process executor; what they say goes to telemetry.
    let mut heard = TelemetryNotes(tel);
    let stereo = StereoStage::on(
        cfg.stereo_backend,
        twin_geometry(&rig)?,
        cfg.stereo,
        scan_shape(&cfg.mono),
    )?;
    tracing::info!("stereo matcher: {}", stereo.matcher());
    let mut stereo_stage = Local::start(stereo, &mut heard)?;
    let mut mono_stage = match infer_net {
        Some(net) => {
            let mut m = MonoStage::new(cfg.mono, plain.clone());
            m.set_net(net);
            Some(Local::start(m, &mut heard)?)
        }
        None => None,
    };
    let mut env = Env::new(env_cfg)?;
    let hz = env.config().control_hz;
    let mut episode = 0u64;
    let mut obs = env.reset(&cfg.context, cfg.seed)?;
    if let Some(w) = env.world() {
        tel.log_world(w)?;
    }
    tel.log_camera(&rig)?;
    tel.event(&format!(
        "{}: episode 0 in context '{}' seed {}",
        strategy.name(),
        cfg.context.name,
        cfg.seed
    ))?;

    let frames = (cfg.seconds * hz).round() as u64;
    // Lockstep: a grant of training steps every tenth of a simulated second,
    // collected (and its weights used) at the next grant.
    let grant_every = ((hz / 10.0).round() as u64).max(1);
    let per_grant = cfg.train_rate * grant_every as f64 / hz;
    let mut granted = 0.0f64;
    let mut outstanding = false;
    let mut pilot = Local::start(Pilot::new(cfg.persist, strategy, hz, cfg.avoid), &mut heard)?;
    let mut delay = DelayLine::new(
        (cfg.persist.weight_window * hz).round() as usize,
        cfg.persist.intervention_weight,
    );
    let mut summary = FlySummary::default();
    let mut records: Vec<FrameRecord> = Vec::with_capacity(frames as usize);
    let mut path: Vec<[f32; 3]> = Vec::new();
    let off = Telemetry::off();
    let start = Instant::now();
    let mut last_report = 0.0;
    let mut steps_done = 0u64;
    for frame in 0..frames {
        if stop.load(Ordering::Relaxed) {
            summary.interrupted = true;
            warn!(
                arm = strategy.name(),
                "interrupted: stopping the flight and saving what was recorded"
            );
            break;
        }
        let t = frame as f64 / hz;
        tel.set_time(frame as i64, t);
        // Scalars and pose at `scalar_every`; events every frame.
        let ptel = if frame % cfg.scalar_every == 0 {
            tel
        } else {
            &off
        };
        let stereo = obs
            .stereo
            .as_ref()
            .context("environment returned no stereo frame")?;
        // The stereo cue: semi-global matching on the pair, as on the robot.
        let (w, h) = (stereo.width, stereo.height);
        let pair = StereoPair {
            width: w as u32,
            height: h as u32,
            left: stereo.left.clone(),
            right: stereo.right.clone(),
        };
        let header = Header {
            seq: frame,
            stamp_ns: (t * 1e9) as u64,
            frame_id: "camera_left".into(),
        };
        let cue = stereo_stage
            .step(&header, &pair, &mut heard)?
            .context("the stereo stage gave no depth")?;
        let (scan, valid) = (&cue.scan, cue.known());
        let stereo_depth = &cue.depth;
        // How good the stereo cue is, against the twin's exact depth.
        let (truth, truth_valid) = depth_scan(&stereo.depth, w, h, &cfg.mono)?;
        // For mono's accuracy against the exact depth: only columns with a
        // true depth inside the network's range (a column beyond it, where
        // both sit at the clamp, would count as a perfect answer).
        let truth_in_range: Vec<f32> = truth
            .iter()
            .zip(&truth_valid)
            .map(|(t, v)| {
                if *v && *t < cfg.mono.max_depth {
                    *t
                } else {
                    f32::NAN
                }
            })
            .collect();
        if let Some(e) = mono_error(&truth, scan) {
            ptel.scalar("stereo/error_log", e)?;
        }
        ptel.scalar("stereo/density", cue.disparity.density())?;

        // The mono estimate of a frame the learner has not seen yet.
        let mut error = None;
        let mut truth_acc = None;
        let mut mono_scan = None;
        // The naive arm stops learning at its switch unless configured otherwise.
        let learning = !(strategy == Strategy::Naive
            && pilot.stage().switch().mode() == Mode::Mono
            && !cfg.persist.naive_learns_on_mono);
        if let (Some(mono), Some(learner)) = (&mut mono_stage, &mut learner) {
            let MonoOutput {
                input,
                estimate: est,
            } = mono
                .step(&header, &pair, &mut heard)?
                .context("the mono stage has no weights")?;
            error = mono_error(&est.scan, scan);
            truth_acc = crate::persist::truth_accuracy(&est.scan, &truth_in_range);
            if let Some(e) = error {
                ptel.scalar("mono/error_log", e)?;
            }
            ptel.scalar("mono/nearest", est.nearest() as f64)?;
            if frame % cfg.image_every == 0 {
                tel.log_depth("mono", &est.map, est.map_size.1, est.map_size.0)?;
            }
            if learning {
                let (map, map_valid) = coarse_target(stereo_depth, w, h, &cfg.mono)?;
                let near = scan.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                let sample = Sample {
                    image: input,
                    scan: scan.clone(),
                    valid: valid.clone(),
                    map,
                    map_valid,
                    weight: if near < 1.0 { 2.0 } else { 1.0 },
                };
                if let Some(s) = delay.push(sample)
                    && let Err(e) = learner.offer(s)
                {
                    warn!("learner refused a sample: {e}");
                }
            }
            mono_scan = Some(est.scan);
        }
        let state = twin_state(&obs);
        let input = PilotInput {
            t,
            stereo: scan.clone(),
            mono: mono_scan,
            state: Some(state),
            goal: None,
            tracks: None,
            external: None,
            train_steps: steps_done,
        };
        let Decision {
            switch: decided,
            cmd,
        } = pilot
            .step(&header, &input, &mut heard)?
            .context("the pilot gave no decision")?;
        let stereo_ahead = decided.stereo_ahead.nearest.min(cfg.mono.max_depth);
        tracing::debug!(
            target: "agent::fly::cues",
            "t={t:.2} mode={:?} stereo_near={:.3} stereo_unknown={:.2} mono_raw_near={:.3} mono_scale={:.3}",
            decided.mode,
            decided.stereo_ahead.nearest,
            decided.stereo_ahead.unknown,
            decided.mono_ahead.map_or(f32::NAN, |a| a.nearest),
            decided.mono_scale
        );

        let mut intervention = false;
        match decided.event {
            // (The pilot said what happened; telemetry heard it.)
            Some(Switch::ToMono { .. }) => {
                summary.switches_to_mono += 1;
                info!(arm = strategy.name(), "t={t:5.1}s switch to mono flight");
            }
            Some(Switch::Intervention { .. }) => {
                intervention = true;
                summary.interventions += 1;
                delay.boost();
            }
            Some(Switch::ErrorRose { .. }) | None => {}
        }
        // Why the robot went back to stereo, in the log as on `events`.
        if matches!(
            decided.event,
            Some(Switch::Intervention { .. } | Switch::ErrorRose { .. })
        ) && let Some(why) = decided.describe(t)
        {
            info!(arm = strategy.name(), "{why}");
        }
        let mode = decided.mode;
        if mode == Mode::Mono {
            summary.mono_frames += 1;
        }
        ptel.scalar("persist/mono", if mode == Mode::Mono { 1.0 } else { 0.0 })?;
        if let Some(e) = pilot.stage().switch().window_error() {
            ptel.scalar("persist/window_error", e)?;
        }
        // No answer from the policy: hover.
        let action = twin_action(cmd.unwrap_or_default());
        ptel.log_pose(obs.pose.position, obs.pose.attitude)?;
        if frame % cfg.image_every == 0 {
            tel.log_image(stereo)?;
            tel.log_depth("stereo", stereo_depth, w, h)?;
            tel.log_depth("truth", &stereo.depth, w, h)?;
        }

        // Learner: lockstep grants, or whatever the free-running thread published.
        if let Some(l) = &mut learner {
            match pacing {
                Pacing::Lockstep if frame % grant_every == 0 => {
                    if outstanding {
                        let (steps, net) = l.collect()?;
                        steps_done = steps;
                        if let Some(m) = &mut mono_stage {
                            m.stage_mut().set_net(net);
                        }
                        summary.weight_updates += 1;
                    }
                    if learning {
                        granted += per_grant;
                    }
                    let n = granted.floor();
                    granted -= n;
                    l.grant(n as u64)?;
                    outstanding = true;
                }
                Pacing::Lockstep => {}
                Pacing::FreeRunning => {
                    if let Some((steps, w)) = l.latest_weights() {
                        steps_done = steps;
                        if let Some(m) = &mut mono_stage {
                            m.stage_mut().set_net(w);
                        }
                        summary.weight_updates += 1;
                    }
                }
            }
            let st = l.stats();
            ptel.scalar("learner/loss", st.loss as f64)?;
            ptel.scalar("learner/steps", st.steps as f64)?;
        }

        let r = env.step(&action)?;
        summary.frames += 1;
        let moved = (0..3)
            .map(|a| (r.obs.pose.position[a] - obs.pose.position[a]).powi(2))
            .sum::<f64>()
            .sqrt();
        summary.distance += moved;
        if frame % 6 == 0 {
            // The last two minutes of path at 5 Hz: bounded, however long the episode.
            if path.len() == 600 {
                path.remove(0);
            }
            path.push(r.obs.pose.position.map(|v| v as f32));
        }
        ptel.scalar(
            "flight/speed",
            (r.obs.velocity.iter().map(|v| (v * v) as f64).sum::<f64>()).sqrt(),
        )?;
        ptel.scalar("flight/clearance", r.info.clearance)?;
        ptel.scalar("stereo/nearest", stereo_ahead as f64)?;
        if frame % 30 == 0 {
            tel.log_path(&path)?;
        }
        records.push(FrameRecord {
            t,
            mode,
            error,
            collision: r.info.collision,
            intervention,
            moved,
            truth: truth_acc,
        });
        if r.terminated || r.truncated {
            if r.info.collision {
                summary.collisions += 1;
                tel.event(&format!(
                    "t={t:.1}s: collision flying on {mode:?}, position {:?}",
                    r.obs.pose.position.map(|v| (v * 100.0).round() / 100.0)
                ))?;
            }
            if r.info.success {
                summary.successes += 1;
                tel.event(&format!("t={t:.1}s: reached the end of the room"))?;
            }
            episode += 1;
            obs = env.reset(&cfg.context, sim::batch::episode_seed(cfg.seed, 0, episode))?;
            if let Some(w) = env.world() {
                tel.log_world(w)?;
            }
            path.clear();
            pilot.stage_mut().new_episode();
        } else {
            obs = r.obs;
        }
        if cfg.speed > 0.0 {
            let due = std::time::Duration::from_secs_f64((frame + 1) as f64 / hz / cfg.speed);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if t - last_report >= 30.0 {
            last_report = t;
            let recent = &records[records.len().saturating_sub(30 * hz as usize)..];
            let f = crate::persist::Figures::of(recent, hz);
            info!(
                "{:>11} t={t:6.1}s  {:6.1} m  collisions {}  interventions {}  on mono {:3.0}% (last 30 s)  train steps {}  mono error {:.3}",
                strategy.name(),
                summary.distance,
                summary.collisions,
                summary.interventions,
                100.0 * f.mono_fraction,
                steps_done,
                f.mono_error
            );
        }
    }
    summary.sim_seconds = summary.frames as f64 / hz;
    let mut net = None;
    if let Some(mut l) = learner {
        for s in delay.drain() {
            let _ = l.offer(s);
        }
        if outstanding {
            l.collect()?;
        }
        summary.dropped_samples = l.dropped();
        summary.rejected_samples = l.rejected();
        let st = l.stats();
        summary.learner_steps = st.steps;
        summary.learner_loss = st.loss;
        summary.diverged_steps = st.diverged;
        net = Some(l.finish()?);
    }
    let errors: Vec<f64> = records.iter().filter_map(|r| r.error).collect();
    let q = (errors.len() / 4).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    summary.mono_error_first = mean(&errors[..q.min(errors.len())]);
    summary.mono_error_last = mean(&errors[errors.len().saturating_sub(q)..]);
    summary.wall_seconds = start.elapsed().as_secs_f64();
    Ok(ArmResult {
        records,
        summary,
        net,
    })
}

/// The twin's state as a flight controller reports it on `state` (the
/// agent's frame: the twin's world is ENU-like, its body FLU).
pub fn twin_state(obs: &sim::env::Observation) -> bus::msg::State {
    bus::msg::State {
        position: obs.pose.position,
        attitude: obs.pose.attitude,
        velocity: obs.velocity,
    }
}

/// The twin's action for a velocity command of the loop.
pub fn twin_action(v: Velocity) -> Action {
    Action::Velocity {
        forward: v.forward,
        left: v.left,
        up: v.up,
        yaw_rate: v.yaw_rate,
    }
}

/// The stereo stage's geometry of the twin's rig. The loop's pairs are
/// rectified (a camera stage rectifies a real camera's), and the twin renders
/// rectified pairs only through a distortion-free rig with square pixels: a
/// rig with lens distortion is refused here rather than matched unrectified
/// (render such a rig for calibration, `sim calib-views`).
pub fn twin_geometry(rig: &sim::StereoRig) -> Result<RigGeometry> {
    let k = rig.intrinsics;
    anyhow::ensure!(
        rig.distortion.is_zero() && k.fx == k.fy,
        "the twin's rig has lens distortion or non-square pixels (fx {}, fy {}): the flight loop takes rectified pairs, which such a rig does not render",
        k.fx,
        k.fy
    );
    let cal = calib::Rig::ideal(k.width, k.height, k.fx, k.cx, k.cy, rig.baseline);
    Ok(RigGeometry::from_rig(&cal, "twin")?)
}

/// Where `agent fly` reads and writes.
#[derive(Debug, Clone)]
pub struct FlyOutputs {
    /// Telemetry sink.
    pub sink: Sink,
    /// Where the trained mono network is saved (burnpack), if anywhere.
    pub checkpoint: Option<PathBuf>,
    /// Start from these weights instead of a fresh network.
    pub resume: Option<PathBuf>,
}

/// The main job: fly `cfg.strategy`, learn and record; stops early when `stop` is set.
pub fn run(cfg: &FlyConfig, out: &FlyOutputs, stop: Arc<AtomicBool>) -> Result<FlySummary> {
    cfg.validate()?;
    let tel = Telemetry::open(&out.sink, "onboard_agent_fly")?;
    // Loaded straight onto the training (autodiff) device, so the learner goes on from it.
    let init = match &out.resume {
        Some(p) => Some(crate::mono::load_checkpoint(
            p,
            &cfg.mono,
            &device(cfg.backend)?.autodiff(),
        )?),
        None => None,
    };
    let arm = fly_arm(cfg, cfg.strategy, &tel, init, &stop)?;
    if let (Some(path), Some(net)) = (&out.checkpoint, &arm.net) {
        save_checkpoint(net, path)?;
    }
    tel.scalar("summary/mono_error_last", arm.summary.mono_error_last)?;
    tel.flush()?;
    let mut summary = arm.summary;
    summary.telemetry_dropped = tel.dropped();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_bad_values_with_the_key() {
        let mut c = FlyConfig::default();
        c.validate().unwrap();
        c.avoid.turn_rate = f64::NAN;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("avoid.turn_rate")
        );
        let e = toml::from_str::<FlyConfig>("secnds = 3.0").unwrap_err();
        assert!(e.to_string().contains("secnds"));
    }
}
