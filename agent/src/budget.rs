//! The on-target budget: the whole onboard pipeline in this process — camera
//! (the twin, rendering at the chosen size), stereo matching, the monocular
//! network, the policy, the learner training beside them, a zenoh session
//! publishing the pair and scans, and telemetry to a file — paced at the
//! configured loop rate. It reports the time per frame of each stage, whether
//! the loop rate is met, and the memory high-water mark, so a user sees on the
//! board itself whether the configuration fits.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use burn::module::Module;
use bus::Outbox;
use bus::msg::{DepthScan, StereoPair};
use sim::env::{Env, EnvConfig, Task};

use crate::fly::{FlyConfig, scan_shape, twin_action, twin_geometry, twin_state};
use crate::latency::Spread;
use crate::learner::{Learner, Pacing, Sample};
use crate::mono::{MonoNet, coarse_target};
use crate::persist::Strategy;
use crate::pipeline::{Local, LogObserver, MonoOutput, MonoStage, Pilot, PilotInput, StereoStage};
use crate::telemetry::{Sink, Telemetry};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// Camera width (px).
    pub width: usize,
    /// Camera height (px).
    pub height: usize,
    /// Frames to run.
    pub frames: usize,
    /// The loop rate the robot must hold (Hz).
    pub rate: f64,
    /// Telemetry file (an .rrd), or none.
    pub telemetry: Option<PathBuf>,
}

/// What the pipeline cost.
#[derive(Debug, Clone)]
pub struct BudgetReport {
    /// Camera size.
    pub size: (usize, usize),
    /// Frames run.
    pub frames: usize,
    /// Required loop rate (Hz).
    pub rate: f64,
    /// Rendering the pair (the camera), ms.
    pub camera: Spread,
    /// Stereo matching, ms.
    pub stereo: Spread,
    /// Monocular inference, ms.
    pub mono: Spread,
    /// Policy, ms.
    pub policy: Spread,
    /// Stereo + mono + policy + publishing and logging, ms.
    pub total: Spread,
    /// Frames per second achieved (paced at `rate` at most).
    pub achieved: f64,
    /// Learner steps done beside the loop.
    pub learner_steps: u64,
    /// Peak resident memory of the process (MiB).
    pub peak_rss_mib: f64,
}

impl BudgetReport {
    /// Whether the 99th percentile of the per-frame work fits one period.
    pub fn meets_rate(&self) -> bool {
        self.total.p99 <= 1000.0 / self.rate
    }
}

impl std::fmt::Display for BudgetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = |f: &mut std::fmt::Formatter<'_>, name: &str, s: &Spread| {
            writeln!(
                f,
                "  {name:<8} p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
                s.p50, s.p99, s.max
            )
        };
        writeln!(
            f,
            "budget at {}x{}, {} frames, loop rate {} Hz ({:.1} ms per frame):",
            self.size.0,
            self.size.1,
            self.frames,
            self.rate,
            1000.0 / self.rate
        )?;
        row(f, "camera", &self.camera)?;
        row(f, "stereo", &self.stereo)?;
        row(f, "mono", &self.mono)?;
        row(f, "policy", &self.policy)?;
        row(f, "per frame", &self.total)?;
        writeln!(
            f,
            "  achieved {:.1} frames/s; learner {} steps beside the loop",
            self.achieved, self.learner_steps
        )?;
        writeln!(f, "  peak resident memory {:.0} MiB", self.peak_rss_mib)?;
        write!(
            f,
            "  loop rate {}: per-frame p99 {:.2} ms {} the {:.1} ms period",
            if self.meets_rate() { "MET" } else { "NOT MET" },
            self.total.p99,
            if self.meets_rate() {
                "within"
            } else {
                "exceeds"
            },
            1000.0 / self.rate
        )
    }
}

/// Peak resident set size of this process (MiB), from /proc (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the pipeline for `b.frames` frames.
pub fn run(cfg: &FlyConfig, b: &BudgetConfig, stop: &AtomicBool) -> Result<BudgetReport> {
    cfg.validate()?;
    if b.frames == 0 || !(b.rate.is_finite() && b.rate > 0.0) {
        bail!("frames and rate must be positive");
    }
    if !b.width.is_multiple_of(cfg.mono.width) || !b.height.is_multiple_of(cfg.mono.height) {
        bail!(
            "camera {}x{} must be a multiple of the mono input {}x{}",
            b.width,
            b.height,
            cfg.mono.width,
            cfg.mono.height
        );
    }
    let env_cfg = EnvConfig {
        render: true,
        task: Task::ForwardFlight,
        max_steps: u32::MAX,
        rig: sim::StereoRig::with_size(b.width, b.height),
        ..EnvConfig::default()
    };
    let rig = env_cfg.rig;
    let mut env = Env::new(env_cfg)?;
    let mut obs = env.reset(&cfg.context, cfg.seed)?;
    // The disparity range grows with the image: the same nearest depth at any size.
    let mut params = cfg.stereo;
    params.max_disp = (cfg.stereo.max_disp * b.width / 160).next_multiple_of(16);
    // The loop's stages on the in-process executor, as `agent fly` runs them.
    let mut log = LogObserver;
    let mut stage = Local::start(
        StereoStage::on(
            cfg.stereo_backend,
            twin_geometry(&rig)?,
            params,
            scan_shape(&cfg.mono),
        )?,
        &mut log,
    )?;
    let plain = crate::device::device(cfg.backend)?;
    let train = plain.clone().autodiff();
    let net = MonoNet::seeded(&cfg.mono, &train, cfg.learner.seed)?;
    let mut mono = MonoStage::new(cfg.mono, plain.clone());
    mono.set_net(net.valid());
    let mut mono = Local::start(mono, &mut log)?;
    let mut pilot = Local::start(
        Pilot::new(cfg.persist, Strategy::Persistent, b.rate, cfg.avoid),
        &mut log,
    )?;
    let mut learner = Learner::spawn(
        net,
        cfg.mono,
        cfg.learner.clone(),
        train,
        Pacing::FreeRunning,
    );
    let session = bus::open(&bus::BusConfig::default())?;
    let mut pairs = Outbox::<StereoPair>::new(&session, "budget", bus::topics::CAMERA_STEREO)?;
    let scans = Outbox::<DepthScan>::new(&session, "budget", bus::topics::DEPTH_STEREO)?;
    let tel = match &b.telemetry {
        Some(p) => Telemetry::open(&Sink::Save(p.clone()), "onboard_agent_budget")?,
        None => Telemetry::off(),
    };
    let period = Duration::from_secs_f64(1.0 / b.rate);
    let (mut camera, mut st, mut mo, mut po, mut total) = (vec![], vec![], vec![], vec![], vec![]);
    let started = Instant::now();
    let mut done = 0usize;
    for frame in 0..b.frames {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let tick = Instant::now();
        let pair = obs
            .stereo
            .as_ref()
            .context("no stereo frame from the twin")?;
        let (w, h) = (pair.width, pair.height);
        let t0 = Instant::now();
        // Publishing is part of the frame's cost; the header numbers the frame.
        let msg = StereoPair {
            width: w as u32,
            height: h as u32,
            left: pair.left.clone(),
            right: pair.right.clone(),
        };
        let hdr = pairs.send(bus::now_ns(), "camera", &msg)?;
        let cue = stage
            .step(&hdr, &msg, &mut log)?
            .context("the stereo stage gave no depth")?;
        let valid = cue.known();
        st.push(t0.elapsed().as_secs_f64() * 1e3);
        let t1 = Instant::now();
        let MonoOutput {
            input,
            estimate: est,
        } = mono
            .step(&hdr, &msg, &mut log)?
            .context("the mono stage has no weights")?;
        mo.push(t1.elapsed().as_secs_f64() * 1e3);
        let t2 = Instant::now();
        let decision = pilot
            .step(
                &hdr,
                &PilotInput {
                    t: frame as f64 / b.rate,
                    stereo: cue.scan.clone(),
                    mono: Some(est.scan.clone()),
                    state: Some(twin_state(&obs)),
                    goal: None,
                    tracks: None,
                    external: None,
                    train_steps: learner.stats().steps,
                },
                &mut log,
            )?
            .context("the pilot gave no decision")?;
        // No answer from the policy: hover.
        let action = twin_action(decision.cmd.unwrap_or_default());
        po.push(t2.elapsed().as_secs_f64() * 1e3);
        scans.send_with(
            &hdr,
            &DepthScan {
                compute_ns: 0,
                depth: cue.scan.clone(),
            },
        )?;
        let (map, map_valid) = coarse_target(&cue.depth, w, h, &cfg.mono)?;
        let _ = learner.offer(Sample {
            image: input,
            scan: cue.scan,
            valid,
            map,
            map_valid,
            weight: 1.0,
        });
        if let Some((_, n)) = learner.latest_weights() {
            mono.stage_mut().set_net(n);
        }
        tel.set_time(frame as i64, frame as f64 / b.rate);
        tel.log_image(pair)?;
        tel.log_depth("mono", &est.map, est.map_size.1, est.map_size.0)?;
        tel.scalar("mono/nearest", est.nearest() as f64)?;
        total.push(t0.elapsed().as_secs_f64() * 1e3);
        // The camera: the next pair (the twin renders it; on the robot it arrives).
        let tc = Instant::now();
        let r = env.step(&action)?;
        obs = if r.terminated || r.truncated {
            env.reset(&cfg.context, cfg.seed.wrapping_add(frame as u64))?
        } else {
            r.obs
        };
        camera.push(tc.elapsed().as_secs_f64() * 1e3);
        done += 1;
        if let Some(rest) = period.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let achieved = done as f64 / started.elapsed().as_secs_f64();
    let learner_steps = learner.stats().steps;
    tel.flush()?;
    drop(learner);
    Ok(BudgetReport {
        size: (b.width, b.height),
        frames: done,
        rate: b.rate,
        camera: Spread::of(&mut camera),
        stereo: Spread::of(&mut st),
        mono: Spread::of(&mut mo),
        policy: Spread::of(&mut po),
        total: Spread::of(&mut total),
        achieved,
        learner_steps,
        peak_rss_mib: peak_rss_mib().unwrap_or(f64::NAN),
    })
}
