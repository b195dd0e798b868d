//! The main job: a short simulated flight that learns.
//!
//! The quadrotor flies forward through the twin's rooms and turns away when the
//! stereo cue says an obstacle is near (the behaviour of the persistent
//! self-supervised learning paper). Every frame the monocular network predicts
//! the same depth scan from the left image alone; its error against stereo is
//! measured on that frame before the frame is handed to the learner thread, which
//! trains on a replay of the flight. Telemetry goes to rerun.
//!
//! The stereo cue is semi-global matching ([`stereo::Sgm`]) on the rendered pair;
//! the twin's exact depth is used only to log how good that cue is.

use crate::device::{Backend, device};
use crate::learner::{Learner, LearnerConfig, Sample};
use crate::mono::{MonoNet, MonoShape, depth_scan, infer, preprocess};
use crate::telemetry::{Sink, Telemetry};
use anyhow::{Context as _, Result, bail};
use burn::module::Module;
use serde::{Deserialize, Serialize};
use sim::Context;
use sim::env::{Action, Env, EnvConfig, Task};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tracing::{info, warn};

/// Reactive avoidance behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvoidConfig {
    /// Forward speed when the way is clear (m/s).
    pub cruise_speed: f64,
    /// Turn away when the nearest obstacle ahead is closer than this (m).
    pub avoid_distance: f64,
    /// Yaw rate while turning away (rad/s).
    pub turn_rate: f64,
    /// Altitude to hold (m).
    pub altitude: f64,
}

impl Default for AvoidConfig {
    fn default() -> Self {
        Self {
            cruise_speed: 1.0,
            avoid_distance: 1.6,
            turn_rate: 1.5,
            altitude: 1.2,
        }
    }
}

/// Settings of `agent fly` (a TOML file; every key optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlyConfig {
    /// Simulated seconds to fly.
    pub seconds: f64,
    /// Seed of the first episode (later episodes derive from it).
    pub seed: u64,
    /// Log camera images every this many frames (scalars and pose every frame).
    pub image_every: u64,
    /// Simulated seconds per wall-clock second; 0 runs as fast as the CPU allows.
    /// The learner trains in parallel, so a slower flight gives it more steps per
    /// simulated second, as on the robot, where the camera sets the pace.
    pub speed: f64,
    /// Backend of the networks.
    pub backend: Backend,
    /// The twin's context.
    pub context: Context,
    /// Behaviour.
    pub avoid: AvoidConfig,
    /// Network shape.
    pub mono: MonoShape,
    /// Learner.
    pub learner: LearnerConfig,
    /// Stereo matcher.
    pub stereo: stereo::SgmParams,
}

impl Default for FlyConfig {
    fn default() -> Self {
        Self {
            seconds: 60.0,
            seed: 1,
            image_every: 6,
            speed: 4.0,
            backend: Backend::Cpu,
            context: Context::default(),
            avoid: AvoidConfig::default(),
            mono: MonoShape::default(),
            learner: LearnerConfig::default(),
            stereo: stereo::SgmParams {
                max_disp: 32,
                ..stereo::SgmParams::default()
            },
        }
    }
}

impl FlyConfig {
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
        let a = &self.avoid;
        for (k, v, lo, hi) in [
            ("avoid.cruise_speed", a.cruise_speed, 0.0, 3.0),
            ("avoid.avoid_distance", a.avoid_distance, 0.2, 10.0),
            ("avoid.turn_rate", a.turn_rate, 0.1, 2.0),
            (
                "avoid.altitude",
                a.altitude,
                0.3,
                self.context.room_height - 0.3,
            ),
        ] {
            if !(v.is_finite() && v >= lo && v <= hi) {
                bail!("`{k}` = {v} must be in [{lo}, {hi}]");
            }
        }
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            bail!("`speed` = {} must be 0 (unpaced) or positive", self.speed);
        }
        if self.image_every == 0 {
            bail!("`image_every` must be at least 1");
        }
        let l = &self.learner;
        if l.batch == 0
            || l.recent == 0
            || l.publish_every == 0
            || !(l.learning_rate > 0.0 && l.learning_rate < 1.0)
        {
            bail!(
                "learner: batch, recent and publish_every must be positive and learning_rate in (0, 1)"
            );
        }
        Ok(())
    }
}

/// Where `agent fly` writes.
#[derive(Debug, Clone)]
pub struct FlyOutputs {
    /// Telemetry sink.
    pub sink: Sink,
    /// Where the trained mono network is saved (burnpack), if anywhere.
    pub checkpoint: Option<PathBuf>,
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
    /// Learner steps.
    pub learner_steps: u64,
    /// Last learner loss.
    pub learner_loss: f32,
    /// Weight updates picked up by the flying loop.
    pub weight_updates: u64,
    /// Samples the learner could not take in time.
    pub dropped_samples: u64,
    /// Mean |log(mono) - log(stereo)| over valid columns, first quarter of the flight.
    pub mono_error_first: f64,
    /// The same over the last quarter.
    pub mono_error_last: f64,
    /// Whether the flight stopped early on Ctrl-C.
    pub interrupted: bool,
}

/// Turning state of the avoidance behaviour (hysteresis: keep turning one way until clear).
#[derive(Debug, Clone, Copy, Default)]
pub struct Avoider {
    turning: Option<f64>,
}

impl Avoider {
    /// Action from a depth scan (m, left to right) and the current altitude.
    pub fn act(&mut self, cfg: &AvoidConfig, scan: &[f32], altitude: f64) -> Action {
        let n = scan.len().max(1);
        let ahead = scan[n / 4..(3 * n / 4).max(n / 4 + 1).min(scan.len())]
            .iter()
            .fold(f32::INFINITY, |m, &v| m.min(v)) as f64;
        let mean = |s: &[f32]| s.iter().map(|&v| v as f64).sum::<f64>() / s.len().max(1) as f64;
        let (left, right) = (mean(&scan[..n / 2]), mean(&scan[n / 2..]));
        let up = (0.8 * (cfg.altitude - altitude)).clamp(-1.0, 1.0);
        if ahead < cfg.avoid_distance {
            let dir = *self
                .turning
                .get_or_insert(if left >= right { 1.0 } else { -1.0 });
            let slow = (ahead / cfg.avoid_distance).clamp(0.0, 1.0) * 0.3 * cfg.cruise_speed;
            Action::Velocity {
                forward: slow,
                left: 0.0,
                up,
                yaw_rate: dir * cfg.turn_rate,
            }
        } else {
            self.turning = None;
            Action::Velocity {
                forward: cfg.cruise_speed,
                left: 0.0,
                up,
                yaw_rate: 0.0,
            }
        }
    }
}

fn mono_error(mono: &[f32], stereo: &[f32], valid: &[bool]) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0);
    for ((m, t), v) in mono.iter().zip(stereo).zip(valid) {
        if *v {
            s += (m.ln() - t.ln()).abs() as f64;
            n += 1;
        }
    }
    (n > 0).then(|| s / n as f64)
}

/// Fly, learn and record; stops early when `stop` is set (Ctrl-C).
pub fn run(cfg: &FlyConfig, out: &FlyOutputs, stop: Arc<AtomicBool>) -> Result<FlySummary> {
    cfg.validate()?;
    let tel = Telemetry::open(&out.sink, "onboard_agent_fly")?;
    let plain = device(cfg.backend)?;
    plain.seed(cfg.learner.seed);
    let train_device = plain.clone().autodiff();
    let net = MonoNet::new(&cfg.mono, &train_device);
    info!(params = net.num_params(), backend = ?cfg.backend, "mono network ready");
    let mut infer_net = net.valid();
    let mut learner = Learner::spawn(net, cfg.mono, cfg.learner.clone(), train_device);

    let env_cfg = EnvConfig {
        render: true,
        task: Task::ForwardFlight,
        max_steps: u32::MAX,
        ..EnvConfig::default()
    };
    let rig = env_cfg.rig;
    if !rig.intrinsics.width.is_multiple_of(cfg.mono.width)
        || !rig.intrinsics.height.is_multiple_of(cfg.mono.height)
    {
        bail!(
            "mono input {}x{} must divide the camera's {}x{}",
            cfg.mono.width,
            cfg.mono.height,
            rig.intrinsics.width,
            rig.intrinsics.height
        );
    }
    let mut matcher = stereo::Sgm::new(cfg.stereo)?;
    let mut env = Env::new(env_cfg)?;
    let mut episode = 0u64;
    let mut obs = env.reset(&cfg.context, cfg.seed)?;
    if let Some(w) = env.world() {
        tel.log_world(w)?;
    }
    tel.log_camera(&rig)?;
    tel.event(&format!(
        "episode 0 in context '{}' seed {}",
        cfg.context.name, cfg.seed
    ))?;

    let frames = (cfg.seconds * env.config().control_hz).round() as u64;
    let mut avoider = Avoider::default();
    let mut summary = FlySummary::default();
    let mut errors: Vec<f64> = Vec::with_capacity(frames as usize);
    let mut path: Vec<[f32; 3]> = Vec::new();
    let start = Instant::now();
    let mut last_report = 0.0;
    for frame in 0..frames {
        if stop.load(Ordering::Relaxed) {
            summary.interrupted = true;
            warn!("interrupted: stopping the flight and saving what was recorded");
            break;
        }
        let t = frame as f64 / env.config().control_hz;
        tel.set_time(frame as i64, t);
        let stereo = obs
            .stereo
            .as_ref()
            .context("environment returned no stereo frame")?;
        // The stereo cue: semi-global matching on the pair, as on the robot.
        let (w, h) = (stereo.width, stereo.height);
        let disp = matcher.match_pair(
            &stereo::GrayImage::new(w, h, stereo.left.clone(), "left")?,
            &stereo::GrayImage::new(w, h, stereo.right.clone(), "right")?,
        )?;
        let sgm_scan = stereo::features::depth_scan(
            &disp,
            rig.intrinsics.fx,
            rig.baseline,
            cfg.mono.columns,
            cfg.mono.band,
            cfg.mono.max_depth,
        );
        let scan: Vec<f32> = sgm_scan
            .depth
            .iter()
            .map(|z| z.clamp(cfg.mono.min_depth, cfg.mono.max_depth))
            .collect();
        let valid = sgm_scan.valid;
        // How good the stereo cue is, against the twin's exact depth.
        let (truth, _) = depth_scan(&stereo.depth, w, h, &cfg.mono)?;
        if let Some(e) = mono_error(&scan, &truth, &valid) {
            tel.scalar("stereo/error_log", e)?;
        }
        tel.scalar("stereo/density", disp.density())?;
        let input = preprocess(&stereo.left, stereo.width, stereo.height, &cfg.mono)?;
        // The mono estimate of a frame the learner has not seen yet.
        let mono = infer(&infer_net, &input, &cfg.mono, &plain)?;
        if let Some(e) = mono_error(&mono, &scan, &valid) {
            errors.push(e);
            tel.scalar("mono/error_log", e)?;
        }
        let near = scan.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        learner.offer(Sample {
            image: input,
            scan: scan.clone(),
            valid,
            weight: if near < 1.0 { 2.0 } else { 1.0 },
        });

        let action = avoider.act(&cfg.avoid, &scan, obs.pose.position[2]);
        tel.log_pose(obs.pose.position, obs.pose.attitude)?;
        if frame % cfg.image_every == 0 {
            tel.log_frame(stereo)?;
        }
        let r = env.step(&action)?;
        summary.frames += 1;
        summary.distance += (0..3)
            .map(|a| (r.obs.pose.position[a] - obs.pose.position[a]).powi(2))
            .sum::<f64>()
            .sqrt();
        path.push(r.obs.pose.position.map(|v| v as f32));
        tel.scalar(
            "flight/speed",
            (r.obs.velocity.iter().map(|v| (v * v) as f64).sum::<f64>()).sqrt(),
        )?;
        tel.scalar("flight/clearance", r.info.clearance)?;
        tel.scalar("stereo/nearest", near as f64)?;
        tel.scalar(
            "mono/nearest",
            mono.iter().fold(f32::INFINITY, |m, &v| m.min(v)) as f64,
        )?;
        if frame % 15 == 0 {
            tel.log_path(&path)?;
        }
        let st = learner.stats();
        tel.scalar("learner/loss", st.loss as f64)?;
        if let Some((step, w)) = learner.latest_weights() {
            infer_net = w;
            summary.weight_updates += 1;
            tel.scalar("learner/published_step", step as f64)?;
        }
        if r.terminated || r.truncated {
            if r.info.collision {
                summary.collisions += 1;
                tel.event(&format!(
                    "collision at t={t:.1}s, position {:?}",
                    r.obs.pose.position
                ))?;
            }
            if r.info.success {
                summary.successes += 1;
                tel.event(&format!("reached the end of the room at t={t:.1}s"))?;
            }
            episode += 1;
            obs = env.reset(&cfg.context, sim::batch::episode_seed(cfg.seed, 0, episode))?;
            if let Some(w) = env.world() {
                tel.log_world(w)?;
            }
            path.clear();
            avoider = Avoider::default();
        } else {
            obs = r.obs;
        }
        if cfg.speed > 0.0 {
            let due = std::time::Duration::from_secs_f64(
                (frame + 1) as f64 / env.config().control_hz / cfg.speed,
            );
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if t - last_report >= 10.0 {
            last_report = t;
            let recent = &errors[errors.len().saturating_sub(150)..];
            info!(
                "t={t:5.1}s  distance {:6.1} m  collisions {}  rooms {}  learner steps {} loss {:.3}  mono error {:.3}",
                summary.distance,
                summary.collisions,
                summary.successes,
                st.steps,
                st.loss,
                recent.iter().sum::<f64>() / recent.len().max(1) as f64
            );
        }
    }
    summary.sim_seconds = summary.frames as f64 / env.config().control_hz;
    summary.dropped_samples = learner.dropped();
    let st = learner.stats();
    summary.learner_steps = st.steps;
    summary.learner_loss = st.loss;
    let trained = learner.finish()?;
    if let Some(path) = &out.checkpoint {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        trained
            .valid()
            .save_file(path)
            .map_err(|e| anyhow::anyhow!("cannot save checkpoint {}: {e:?}", path.display()))?;
    }
    let q = (errors.len() / 4).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    summary.mono_error_first = mean(&errors[..q.min(errors.len())]);
    summary.mono_error_last = mean(&errors[errors.len().saturating_sub(q)..]);
    summary.wall_seconds = start.elapsed().as_secs_f64();
    tel.scalar("summary/mono_error_last", summary.mono_error_last)?;
    tel.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avoider_turns_towards_space_and_keeps_turning_until_clear() {
        let cfg = AvoidConfig::default();
        let mut a = Avoider::default();
        let mut scan = vec![5.0f32; 32];
        let Action::Velocity {
            forward, yaw_rate, ..
        } = a.act(&cfg, &scan, 1.2)
        else {
            panic!()
        };
        assert_eq!((forward, yaw_rate), (1.0, 0.0));
        scan[16] = 1.0;
        for v in &mut scan[16..] {
            *v = v.min(3.0); // less space on the right
        }
        let Action::Velocity {
            yaw_rate, forward, ..
        } = a.act(&cfg, &scan, 1.2)
        else {
            panic!()
        };
        assert!(yaw_rate > 0.0 && forward < 0.5, "turns left, slows down");
        // Space swaps sides, but it keeps turning the same way while blocked.
        let mut swapped = scan.clone();
        swapped.reverse();
        let Action::Velocity { yaw_rate, .. } = a.act(&cfg, &swapped, 1.2) else {
            panic!()
        };
        assert!(yaw_rate > 0.0);
        let Action::Velocity { up, .. } = a.act(&cfg, &[5.0; 32], 0.7) else {
            panic!()
        };
        assert!(up > 0.0, "climbs back to the hold altitude");
    }

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
