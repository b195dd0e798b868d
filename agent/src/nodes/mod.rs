//! Nodes of the onboard graph that talk over zenoh ([`bus`]). Each runs as its
//! own process (`agent node <name>`) or as a thread sharing one session.
//!
//! - `camera` (the twin): renders the stereo pair, publishes it with the state,
//!   and steps the simulation with the setpoint that comes back;
//! - `camera` (a live camera, [`crate::camnode`]): a GStreamer source,
//!   rectified with the rig, with its health and the `camera-stream` token;
//! - `stereo`: the stereo stage (semi-global matching of the rectified pair,
//!   depth with the rig's projection) into a depth scan;
//! - `mono`, `learner`: the monocular network on every pair, and its training;
//! - `policy`: the pilot stage ([`crate::pipeline::Pilot`]): the cue switch
//!   between stereo and mono, then the policy (reactive, a trained network, or
//!   the SELFI actor), to a setpoint;
//! - `safety`: hover when a required node disappears;
//! - `fc`, `mavlink`: the flight controller ([`crate::fcnode`]) — setpoints
//!   in, status and the vehicle's pose (`state`, ENU/FLU) out;
//! - `telemetry`: the topics into rerun.
//!
//! `stereo`, `mono` and `policy` (and the SELFI policy) are stages of
//! [`crate::pipeline`] run by the zenoh executor ([`serve()`]): the same code the
//! twin's in-process loop runs on [`crate::pipeline::Local`]
//! (`crate::fly::fly_arm`); only the executor differs.

pub mod perception;
mod policy;
pub mod ros2;
pub mod serve;

pub use perception::{mono_node, stereo_node, stereo_rig};
pub use policy::{PilotInputs, StateHistory, policy_node};
pub use serve::{POLL, Source, serve};

#[cfg(feature = "twin")]
use crate::fly::FlyConfig;
use crate::persist::Strategy;
use crate::pipeline::{LoopConfig, RigGeometry};
use anyhow::{Context as _, Result};
use bus::msg::{DepthScan, Event, Setpoint, State, StereoPair};
use bus::{Inbox, Outbox, Session};
#[cfg(feature = "twin")]
use sim::env::{Action, Env, EnvConfig, Task};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::info;

/// Which node to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeKind {
    /// The twin as camera and vehicle.
    Camera,
    /// Stereo matching.
    Stereo,
    /// Avoidance policy.
    Policy,
    /// Flight-controller link (serial, fclink protocol).
    Fc,
    /// PX4 / ArduPilot over MAVLink (serial or UDP).
    Mavlink,
    /// Watches the other nodes; commands hover when a required one disappears.
    Safety,
    /// Monocular depth: the network on the left image, reloading new weights.
    Mono,
    /// Online learning: trains the monocular network from stereo, saves weights.
    Learner,
    /// Telemetry: the graph's topics into rerun (file, viewer or off).
    Telemetry,
    /// SELFI online learner: fine-tunes the navigation policy from the bus and
    /// publishes its weights to the policy node.
    SelfiLearner,
    /// The graph's topics as ROS 2 topics on rmw_zenoh (and goals back).
    Ros2,
    /// Training: steps a task's environment with the learner's latest network
    /// and sends the steps to the learner (`crate::actors`; runs alone).
    Actor,
    /// Training: learns from the actors' steps, publishes its network,
    /// checkpoints (`crate::actors`; runs alone).
    RlLearner,
}

impl NodeKind {
    /// The node's name (its liveliness token, its log prefix).
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Camera => "camera",
            NodeKind::Stereo => "stereo",
            NodeKind::Policy => "policy",
            NodeKind::Fc => "fc",
            NodeKind::Mavlink => "mavlink",
            NodeKind::Safety => "safety",
            NodeKind::Mono => "mono",
            NodeKind::Learner => "learner",
            NodeKind::Telemetry => "telemetry",
            NodeKind::SelfiLearner => "selfi-learner",
            NodeKind::Ros2 => "ros2",
            NodeKind::Actor => "actor",
            NodeKind::RlLearner => "rl-learner",
        }
    }
}

/// Settings of the nodes that need more than the flight settings.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// `safety`: the nodes whose loss makes it command the failsafe setpoint.
    pub require: Vec<String>,
    /// `mono`: weights to load (and reload when the file changes);
    /// `learner`: where to save them.
    pub checkpoint: Option<std::path::PathBuf>,
    /// `learner`: seconds between saves.
    pub save_every: f64,
    /// `telemetry`: where rerun data goes.
    pub sink: Option<crate::telemetry::Sink>,
    /// `telemetry`, saving to a file: when to start the next part.
    pub rerun_split: Option<RrdSplit>,
    /// `camera` (rectification maps, size check), `stereo` (focal length,
    /// baseline) and `telemetry`: the stereo rig's calibration (OpenCV YAML
    /// from `calib`); the twin's rig when absent.
    pub rig: Option<std::path::PathBuf>,
    /// The twin's settings: the room, seed and duration the `camera` (twin)
    /// node flies, the context a trained policy network is shown; the
    /// defaults when absent.
    #[cfg(feature = "twin")]
    pub twin: Option<FlyConfig>,
    /// `policy`: how it picks its cue (persistent SSL when absent).
    pub strategy: Option<Strategy>,
    /// `policy`: the camera's frame rate (Hz), which sets the switching rule's
    /// window in frames; 30 when absent or not positive.
    pub camera_hz: Option<f64>,
    /// `policy`: how long to wait for a frame's mono scan once its stereo scan
    /// is in, while the mono node publishes (default 100 ms).
    pub mono_wait: Option<Duration>,
    /// `fc`: serial device of the flight controller.
    pub device: Option<std::path::PathBuf>,
    /// `mavlink`: where the autopilot is (`udpin:HOST:PORT`, `udpout:HOST:PORT`,
    /// `serial:DEVICE:BAUD`).
    pub mavlink: Option<String>,
    /// Baud rate.
    pub baud: u32,
    /// Arm when the first setpoint arrives.
    pub arm: bool,
    /// `fc`, `mavlink`: what every arm must pass (the preflight checks by default).
    pub arm_gate: crate::fcnode::ArmGate,
    /// `policy`: a network trained by `agent train` to fly instead of the reactive avoider.
    pub policy_net: Option<std::path::PathBuf>,
    /// `policy`: fly velocity commands from outside the agent (`cmd/external`)
    /// within the safety limits, instead of the reactive avoider.
    pub external: bool,
    /// SELFI: `camera` flies the goal-reaching task, `policy` the SELFI actor,
    /// `selfi-learner` fine-tunes it (see [`crate::selfi_graph`]).
    #[cfg(feature = "twin")]
    pub selfi: Option<crate::selfi_graph::SelfiNodeOptions>,
    /// `safety`: also gate `cmd/policy` with the supervisor rule (interventions).
    pub supervise: bool,
    /// `safety`: how long it holds hover while a required node is lost before
    /// it commands a landing (default [`SAFETY_HOVER_LIMIT`]).
    pub hover_limit: Option<Duration>,
    /// `camera`: a live camera (GStreamer preset or pipeline). Without it the
    /// camera node is the twin (with the `twin` feature), else the default
    /// preset (`sbs-uvc` on /dev/video0).
    #[cfg(feature = "camera")]
    pub camera: Option<crate::camnode::CameraNodeOptions>,
    /// `ros2`: the ROS 2 side (rmw_zenoh's router, domain, namespace).
    pub ros2: Option<ros2::Ros2Options>,
}

impl NodeOptions {
    /// The camera rate the policy assumes (Hz).
    pub fn camera_hz(&self) -> f64 {
        self.camera_hz
            .filter(|h| h.is_finite() && *h > 0.0)
            .unwrap_or(30.0)
    }
}

/// Run `kind` on `session` for `robot` until `stop` is set.
pub fn run(
    kind: NodeKind,
    session: &Session,
    robot: &str,
    cfg: &LoopConfig,
    fc: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    // Alive for as long as this node runs: the safety node watches these.
    let _alive = bus::announce(session, robot, kind.name())?;
    match kind {
        NodeKind::Safety => safety_node(session, robot, fc, stop),
        NodeKind::Mono => mono_node(session, robot, cfg, fc, stop),
        NodeKind::Learner => learner_node(session, robot, cfg, fc, stop),
        NodeKind::Telemetry => telemetry_node(session, robot, fc, stop),
        NodeKind::Fc => {
            let mut link = crate::fcnode::SerialFc::open(fc)?;
            crate::fcnode::flight_controller_node(
                session,
                robot,
                &mut link,
                fc.arm,
                &fc.arm_gate,
                stop,
            )
        }
        NodeKind::Mavlink => {
            let mut link = crate::fcnode::MavlinkFc::connect(fc)?;
            crate::fcnode::flight_controller_node(
                session,
                robot,
                &mut link,
                fc.arm,
                &fc.arm_gate,
                stop,
            )
        }
        NodeKind::Stereo => stereo_node(session, robot, cfg, fc, stop),
        NodeKind::Ros2 => ros2::ros2_node(session, robot, fc, stop),
        NodeKind::Actor | NodeKind::RlLearner => anyhow::bail!(
            "the {} node trains in the twin, apart from the robot's graph: run it alone (`agent node {}`) with an agent built with the `twin` feature",
            kind.name(),
            kind.name()
        ),
        #[cfg(feature = "twin")]
        NodeKind::Policy => match &fc.selfi {
            Some(o) => crate::selfi_graph::selfi_policy_node(session, robot, cfg, o, stop),
            None => policy_node(session, robot, cfg, fc, stop),
        },
        #[cfg(not(feature = "twin"))]
        NodeKind::Policy => policy_node(session, robot, cfg, fc, stop),
        // With the twin, the camera node is the live camera only when one is asked for.
        #[cfg(all(feature = "camera", feature = "twin"))]
        NodeKind::Camera if fc.camera.is_some() => {
            let o = fc.camera.clone().unwrap_or_default();
            crate::camnode::camera_node(session, robot, stereo_rig(fc)?, &o, stop)
        }
        // The robot's build: always the live camera (the default preset when none is given).
        #[cfg(all(feature = "camera", not(feature = "twin")))]
        NodeKind::Camera => {
            let o = fc.camera.clone().unwrap_or_default();
            crate::camnode::camera_node(session, robot, stereo_rig(fc)?, &o, stop)
        }
        #[cfg(all(not(feature = "twin"), not(feature = "camera")))]
        NodeKind::Camera => anyhow::bail!(
            "the camera node needs the `camera` feature (GStreamer) or the `twin` feature"
        ),
        #[cfg(not(feature = "twin"))]
        NodeKind::SelfiLearner => anyhow::bail!(
            "the {} node is the twin's: this agent was built without the `twin` feature",
            kind.name()
        ),
        #[cfg(feature = "twin")]
        NodeKind::Camera => match &fc.selfi {
            Some(o) => crate::selfi_graph::goal_camera_node(session, robot, o, stop),
            None => camera_node(session, robot, &fc.twin.clone().unwrap_or_default(), stop),
        },
        #[cfg(feature = "twin")]
        NodeKind::SelfiLearner => match &fc.selfi {
            Some(o) => crate::selfi_graph::selfi_learner_node(session, robot, o, stop),
            None => {
                anyhow::bail!("the selfi-learner node needs --selfi (the offline phase's folder)")
            }
        },
    }
}

/// Publish a twin frame's state and stereo pair with `stamp`; returns the
/// pair's header, which the answering setpoint carries back. The state goes
/// first, as a flight controller's state precedes the camera's frame: a node
/// deciding on the pair then has the state of its instant (the policy takes
/// the newest state stamped at or before the frame).
#[cfg(feature = "twin")]
pub(crate) fn publish_twin_frame(
    pairs: &mut Outbox<StereoPair>,
    states: &mut Outbox<State>,
    stamp: u64,
    obs: &sim::env::Observation,
) -> Result<bus::wire::Header> {
    let st = obs
        .stereo
        .as_ref()
        .context("twin returned no stereo frame")?;
    states.send(stamp, "world", &crate::fly::twin_state(obs))?;
    Ok(pairs.send(
        stamp,
        "camera_left",
        &StereoPair {
            width: st.width as u32,
            height: st.height as u32,
            left: st.left.clone(),
            right: st.right.clone(),
        },
    )?)
}

/// Wait (up to 0.5 s of wall time) for the setpoint answering the frame of
/// header `h`; answers to older frames are skipped. `None`: no answer in time.
#[cfg(feature = "twin")]
pub(crate) fn await_setpoint(
    setpoints: &mut Inbox<Setpoint>,
    h: &bus::wire::Header,
) -> Result<Option<Action>> {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match setpoints.recv_timeout(left)? {
            Some((sh, sp)) if sh.seq == h.seq && sh.stamp_ns == h.stamp_ns => {
                return Ok(Some(Action::Velocity {
                    forward: f64::from(sp.forward),
                    left: f64::from(sp.left),
                    up: f64::from(sp.up),
                    yaw_rate: f64::from(sp.yaw_rate),
                }));
            }
            Some(_) => {} // an answer to an older frame
            None => return Ok(None),
        }
    }
}

/// The twin: publishes each frame's pair and state, waits (up to 0.5 s of wall
/// time) for the setpoint answering that frame and steps with it; without an
/// answer it hovers (failsafe) and says so on `events`.
#[cfg(feature = "twin")]
pub fn camera_node(
    session: &Session,
    robot: &str,
    cfg: &FlyConfig,
    stop: &AtomicBool,
) -> Result<()> {
    let mut pairs = Outbox::<StereoPair>::new(session, robot, bus::topics::CAMERA_STEREO)?;
    let mut states = Outbox::<State>::new(session, robot, bus::topics::STATE)?;
    let mut events = Outbox::<Event>::new(session, robot, bus::topics::EVENTS)?;
    let mut setpoints = Inbox::<Setpoint>::new(session, robot, bus::topics::CMD_SETPOINT, 4)?;
    let mut env = Env::new(EnvConfig {
        render: true,
        task: Task::ForwardFlight,
        max_steps: u32::MAX,
        ..EnvConfig::default()
    })?;
    let hz = env.config().control_hz;
    let mut obs = env.reset(&cfg.context, cfg.seed)?;
    let frames = (cfg.seconds * hz).round() as u64;
    let (mut collisions, mut failsafe, mut episode) = (0u64, 0u64, 0u64);
    let mut prev_answered = true;
    info!(robot, frames, "camera (twin) node up");
    for frame in 0..frames {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let stamp = (frame as f64 / hz * 1e9) as u64;
        let h = publish_twin_frame(&mut pairs, &mut states, stamp, &obs)?;
        let action = await_setpoint(&mut setpoints, &h)?;
        let answered = action.is_some();
        let action = action.unwrap_or(Action::Velocity {
            forward: 0.0,
            left: 0.0,
            up: 0.0,
            yaw_rate: 0.0,
        });
        if !answered {
            failsafe += 1;
            if prev_answered {
                let text = format!("no setpoint for frame {frame}: hovering");
                tracing::warn!("{text}");
                events.send(stamp, "", &Event { text })?;
            }
        }
        prev_answered = answered;
        let r = env.step(&action)?;
        if r.terminated || r.truncated {
            if r.info.collision {
                collisions += 1;
                events.send(
                    stamp,
                    "",
                    &Event {
                        text: format!("collision at t={:.1}s", frame as f64 / hz),
                    },
                )?;
            }
            episode += 1;
            obs = env.reset(&cfg.context, sim::batch::episode_seed(cfg.seed, 0, episode))?;
        } else {
            obs = r.obs;
        }
    }
    info!(collisions, failsafe, stats = ?setpoints.stats(), "camera (twin) node down");
    println!(
        "twin: {frames} frames, {collisions} collisions, {failsafe} frames without a setpoint"
    );
    Ok(())
}

/// How long the safety node holds hover for a lost node before landing.
pub const SAFETY_HOVER_LIMIT: Duration = Duration::from_secs(5);

/// The safety node's landing command: straight down at 0.5 m/s (the flight
/// controller's landing detector disarms on touchdown).
pub const LAND: Setpoint = Setpoint {
    forward: 0.0,
    left: 0.0,
    up: -0.5,
    yaw_rate: 0.0,
};

/// Watches the liveliness of the graph's nodes. While a required node (the
/// policy, by default) is gone after having been seen, it commands the
/// failsafe setpoint on `cmd/setpoint` at 20 Hz, so the flight controller
/// holds position instead of flying the last command or, with the serial
/// link, falling back to its own watchdog: hover for a bounded time
/// (`hover_limit`, 5 s by default), then [`LAND`] until the node is back. A
/// hover that never ends would keep the flight controller's link watchdog fed
/// forever, so its own land-and-disarm would never come. Every loss, landing
/// and return is an event on `events`.
pub fn safety_node(
    session: &Session,
    robot: &str,
    opts: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let require: Vec<String> = if opts.require.is_empty() {
        vec!["policy".to_string()]
    } else {
        opts.require.clone()
    };
    let presence = bus::Presence::watch(session, robot)?;
    let mut out = Outbox::<Setpoint>::new(session, robot, bus::topics::CMD_SETPOINT)?;
    let mut events = Outbox::<Event>::new(session, robot, bus::topics::EVENTS)?;
    let mut say = |text: String| -> Result<()> {
        tracing::warn!("{text}");
        events.send(bus::now_ns(), "safety", &Event { text })?;
        Ok(())
    };
    let mut alive: std::collections::BTreeSet<String> = Default::default();
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    let mut next_hover = Instant::now();
    let mut hovers = 0u64;
    let mut lands = 0u64;
    let hover_limit = opts.hover_limit.unwrap_or(SAFETY_HOVER_LIMIT);
    // Since when a required node has been lost (none lost: None), and
    // whether the landing has been announced.
    let mut lost_since: Option<Instant> = None;
    let mut landing = false;
    #[cfg(not(feature = "twin"))]
    if opts.supervise {
        anyhow::bail!("--supervise (the SELFI supervisor) needs the `twin` feature");
    }
    #[cfg(feature = "twin")]
    let mut gate = if opts.supervise {
        let cfg = opts
            .selfi
            .as_ref()
            .map(|o| o.config.clone())
            .unwrap_or_default();
        Some(crate::selfi_graph::Gate::new(session, robot, &cfg)?)
    } else {
        None
    };
    info!(
        robot,
        ?require,
        supervise = opts.supervise,
        "safety node up"
    );
    while !stop.load(Ordering::Relaxed) {
        #[cfg(feature = "twin")]
        if let Some(g) = gate.as_mut() {
            g.poll()?;
        }
        if let Some(change) = presence.recv_timeout(Duration::from_millis(10))? {
            match change {
                bus::Change::Up(n) => {
                    if require.contains(&n) && seen.contains(&n) && !alive.contains(&n) {
                        say(format!("safety: {n} is back; hover released"))?;
                    }
                    info!(node = %n, "up");
                    seen.insert(n.clone());
                    alive.insert(n);
                }
                bus::Change::Down(n) => {
                    alive.remove(&n);
                    if require.contains(&n) {
                        say(format!("safety: lost {n}; commanding hover"))?;
                    } else {
                        info!(node = %n, "down");
                    }
                }
            }
        }
        let lost: Vec<&String> = require
            .iter()
            .filter(|n| seen.contains(*n) && !alive.contains(*n))
            .collect();
        if lost.is_empty() {
            lost_since = None;
            landing = false;
        } else {
            let since = *lost_since.get_or_insert_with(Instant::now);
            if !landing && since.elapsed() >= hover_limit {
                landing = true;
                let names: Vec<&str> = lost.iter().map(|n| n.as_str()).collect();
                say(format!(
                    "safety: {} still lost after {:.1} s of hover; landing",
                    names.join(", "),
                    hover_limit.as_secs_f64()
                ))?;
            }
        }
        if !lost.is_empty() && Instant::now() >= next_hover {
            next_hover = Instant::now() + Duration::from_millis(50);
            if landing {
                out.send(bus::now_ns(), "safety", &LAND)?;
                lands += 1;
            } else {
                out.send(bus::now_ns(), "safety", &Setpoint::HOVER)?;
                hovers += 1;
            }
        }
    }
    #[cfg(feature = "twin")]
    info!(
        hovers,
        lands,
        interventions = gate.as_ref().map_or(0, |g| g.interventions),
        unchecked = gate.as_ref().map_or(0, |g| g.unchecked),
        "safety node down"
    );
    #[cfg(not(feature = "twin"))]
    info!(hovers, lands, "safety node down");
    Ok(())
}

/// Saves `net` to `path` so that a reader never sees half a file: written
/// next to it, then renamed over it.
fn save_atomically(net: &crate::mono::MonoNet, path: &std::path::Path) -> Result<()> {
    let tmp = path.with_extension("bpk.tmp");
    crate::mono::save_checkpoint(net, &tmp)?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// Online learning as a node: pairs from `camera/stereo` and stereo's depth
/// scans from `depth/stereo`, matched by sequence number, become training
/// samples (scan head; the coarse map needs dense stereo depth, which does not
/// travel on the bus); the network trains as fast as the machine allows and
/// is saved to `--checkpoint` every `save_every` seconds and at the end — the
/// mono node picks each save up.
pub fn learner_node(
    session: &Session,
    robot: &str,
    cfg: &LoopConfig,
    opts: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    use crate::learner::{Learner, Pacing, Sample};
    use crate::mono::{MonoNet, load_checkpoint, preprocess};
    let path = opts
        .checkpoint
        .clone()
        .context("the learner node needs --checkpoint PATH (where to save the weights)")?;
    let dev = crate::device::device(cfg.backend)?.autodiff();
    let net = match path.is_file() {
        true => load_checkpoint(&path, &cfg.mono, &dev)?,
        false => MonoNet::seeded(&cfg.mono, &dev, cfg.learner.seed)?,
    };
    let cells = {
        let plan = cfg.mono.plan()?;
        plan.map.0 * plan.map.1
    };
    let mut learner = Learner::spawn(net, cfg.mono, cfg.learner.clone(), dev, Pacing::FreeRunning);
    let mut pairs = Inbox::<StereoPair>::new(session, robot, bus::topics::CAMERA_STEREO, 32)?;
    let mut scans = Inbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_STEREO, 32)?;
    let mut events = Outbox::<Event>::new(session, robot, bus::topics::EVENTS)?;
    let mut images: std::collections::VecDeque<(u64, Vec<f32>)> = Default::default();
    let mut offered = 0u64;
    let save_every = Duration::from_secs_f64(opts.save_every.max(0.5));
    let mut next_save = Instant::now() + save_every;
    let mut latest: Option<(u64, MonoNet)> = None;
    info!(robot, checkpoint = %path.display(), "learner node up");
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        while let Some((h, pair)) = pairs.recv_timeout(Duration::ZERO)? {
            idle = false;
            match preprocess(
                &pair.left,
                pair.width as usize,
                pair.height as usize,
                &cfg.mono,
            ) {
                Ok(img) => {
                    images.push_back((h.seq, img));
                    if images.len() > 64 {
                        images.pop_front();
                    }
                }
                Err(e) => tracing::warn!("learner: pair {} refused: {e}", h.seq),
            }
        }
        // Each stereo scan answers the pair with its sequence number.
        while let Some((h, scan)) = scans.recv_timeout(Duration::ZERO)? {
            idle = false;
            let Some(k) = images.iter().position(|(s, _)| *s == h.seq) else {
                continue;
            };
            let (_, image) = images.remove(k).unwrap_or_default();
            let valid: Vec<bool> = scan
                .depth
                .iter()
                .map(|d| d.is_finite() && *d > 0.0)
                .collect();
            let depth: Vec<f32> = scan
                .depth
                .iter()
                .map(|d| {
                    if d.is_finite() {
                        d.clamp(cfg.mono.min_depth, cfg.mono.max_depth)
                    } else {
                        0.0
                    }
                })
                .collect();
            let sample = Sample {
                image,
                scan: depth,
                valid,
                map: vec![0.0; cells],
                map_valid: vec![false; cells],
                weight: 1.0,
            };
            match learner.offer(sample) {
                Ok(()) => offered += 1,
                Err(e) => tracing::warn!("learner: sample refused: {e}"),
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(w) = learner.latest_weights() {
            latest = Some(w);
        }
        if Instant::now() >= next_save {
            next_save = Instant::now() + save_every;
            if let Some((steps, net)) = &latest {
                save_atomically(net, &path)?;
                let st = learner.stats();
                let text = format!(
                    "learner: {steps} steps, loss {:.3}, {offered} samples; saved {}",
                    st.loss,
                    path.display()
                );
                info!("{text}");
                events.send(bus::now_ns(), "learner", &Event { text })?;
            }
        }
    }
    let net = learner.finish()?;
    save_atomically(&net, &path)?;
    info!(offered, checkpoint = %path.display(), "learner node down (weights saved)");
    Ok(())
}

/// The graph's topics into rerun, under the documented entity tree: the pose
/// and trajectory from `state`, both cameras (pinhole, from the twin's rig),
/// the left image from `camera/stereo` (one in `image_every`), the stereo and
/// mono depth scans (bar charts, nearest obstacle, compute time), the
/// setpoints, the flight controller's status and every event. Logging goes
/// through the bounded queue; this node never slows the graph.
pub fn telemetry_node(
    session: &Session,
    robot: &str,
    opts: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    use crate::telemetry::{Sink, Telemetry};
    use bus::msg::FcStatus;
    let sink = opts.sink.clone().unwrap_or(Sink::Off);
    // The images on the bus are rectified: place them with the rectified cameras.
    let rig = match &opts.rig {
        Some(path) => RigGeometry::load(path)?.rectified_rig(),
        // The rig bundled with the agent: the twin's.
        None => crate::selftest::bundled_rig()?,
    };
    // Each part of a split recording stands alone: it has the rig too.
    let open = |sink: &Sink| -> Result<Telemetry> {
        let tel = Telemetry::open(sink, "onboard_agent_graph")?;
        tel.log_rig(&rig)?;
        Ok(tel)
    };
    let mut tel = open(&sink)?;
    let mut dropped_before = 0u64;
    let mut parts = match (&sink, &opts.rerun_split) {
        (Sink::Save(first), Some(split)) => Some(RrdParts::new(first.clone(), split.clone())),
        _ => None,
    };
    let mut pairs = Inbox::<StereoPair>::new(session, robot, bus::topics::CAMERA_STEREO, 2)?;
    let mut states = Inbox::<State>::new(session, robot, bus::topics::STATE, 16)?;
    let mut stereo = Inbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_STEREO, 16)?;
    let mut mono = Inbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_MONO, 16)?;
    let mut setpoints = Inbox::<Setpoint>::new(session, robot, bus::topics::CMD_SETPOINT, 16)?;
    let mut fc = Inbox::<FcStatus>::new(session, robot, bus::topics::FC_STATUS, 16)?;
    let mut events = Inbox::<Event>::new(session, robot, bus::topics::EVENTS, 64)?;
    let mut camera_health =
        Inbox::<bus::msg::CameraHealth>::new(session, robot, bus::topics::CAMERA_HEALTH, 16)?;
    let mut path = crate::telemetry::Trajectory::default();
    let mut logged = 0u64;
    let image_every = 5;
    let at = |h: &bus::wire::Header| (h.seq as i64, h.stamp_ns as f64 * 1e-9);
    info!(robot, sink = %sink.describe(), "telemetry node up");
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        while let Some((h, s)) = states.recv_timeout(Duration::ZERO)? {
            idle = false;
            let (f, t) = at(&h);
            tel.set_time(f, t);
            tel.log_pose(s.position, s.attitude)?;
            if let Some(piece) = path.push(s.position.map(|v| v as f32)) {
                tel.log_trajectory(&piece)?;
            }
            logged += 1;
        }
        while let Some((h, p)) = pairs.recv_timeout(Duration::ZERO)? {
            idle = false;
            if h.seq % image_every == 0 {
                let (f, t) = at(&h);
                tel.set_time(f, t);
                tel.log_left(&p.left, p.width as usize, p.height as usize)?;
                logged += 1;
            }
        }
        for (which, inbox) in [("stereo", &mut stereo), ("mono", &mut mono)] {
            while let Some((h, scan)) = inbox.recv_timeout(Duration::ZERO)? {
                idle = false;
                let (f, t) = at(&h);
                tel.set_time(f, t);
                tel.log_scan(which, &scan.depth)?;
                let near = scan
                    .depth
                    .iter()
                    .copied()
                    .filter(|d| d.is_finite())
                    .fold(f32::INFINITY, f32::min);
                tel.scalar(&format!("{which}/nearest"), near as f64)?;
                tel.scalar(
                    &format!("latency/{which}_compute_ms"),
                    scan.compute_ns as f64 * 1e-6,
                )?;
                logged += 1;
            }
        }
        while let Some((h, sp)) = setpoints.recv_timeout(Duration::ZERO)? {
            idle = false;
            let (f, t) = at(&h);
            tel.set_time(f, t);
            tel.scalar("setpoint/forward", sp.forward as f64)?;
            tel.scalar("setpoint/yaw_rate", sp.yaw_rate as f64)?;
            logged += 1;
        }
        while let Some((h, s)) = fc.recv_timeout(Duration::ZERO)? {
            idle = false;
            let (f, t) = at(&h);
            tel.set_time(f, t);
            tel.scalar("fc/state", s.state as f64)?;
            tel.scalar("fc/battery_v", s.battery_mv as f64 * 1e-3)?;
            tel.scalar("fc/altitude", s.altitude as f64)?;
            logged += 1;
        }
        while let Some((h, e)) = events.recv_timeout(Duration::ZERO)? {
            idle = false;
            let (f, t) = at(&h);
            tel.set_time(f, t);
            tel.event(&format!("[{}] {}", h.frame_id, e.text))?;
            logged += 1;
        }
        while let Some((h, c)) = camera_health.recv_timeout(Duration::ZERO)? {
            idle = false;
            let (f, t) = at(&h);
            tel.set_time(f, t);
            tel.scalar("camera/streaming", f64::from(c.streaming))?;
            tel.scalar("camera/fps", f64::from(c.fps))?;
            tel.scalar("camera/skew_ms", f64::from(c.skew_ms))?;
            tel.scalar("camera/latency_ms", f64::from(c.latency_ms))?;
            tel.scalar("camera/dropped", c.dropped as f64)?;
            logged += 1;
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(next) = parts.as_mut().and_then(RrdParts::due) {
            // The stretch flown so far ends this part; the next file starts.
            tel.log_trajectory(&path.open_piece())?;
            tel.flush()?;
            dropped_before += tel.dropped();
            tel = open(&Sink::Save(next.clone()))?;
            info!(file = %next.display(), "telemetry: next part");
        }
    }
    // The stretch being flown when the node stops.
    tel.log_trajectory(&path.open_piece())?;
    tel.flush()?;
    info!(
        logged,
        dropped = dropped_before + tel.dropped(),
        parts = parts.as_ref().map_or(1, |p| p.part + 1),
        "telemetry node down"
    );
    Ok(())
}

/// When the telemetry node starts the next .rrd file of a flight (either
/// limit; both `None` never splits). The next part's name comes from
/// [`crate::outfile::part`], so no earlier file is ever overwritten.
#[derive(Debug, Clone, PartialEq)]
pub struct RrdSplit {
    /// The file name as given (`out/graph-{time}.rrd`).
    pub template: std::path::PathBuf,
    /// Start the next part after this long.
    pub every: Option<Duration>,
    /// Start the next part once the file has reached this size (bytes).
    pub max_bytes: Option<u64>,
}

/// The parts of a split telemetry recording.
struct RrdParts {
    first: std::path::PathBuf,
    current: std::path::PathBuf,
    split: RrdSplit,
    part: u32,
    started: Instant,
    checked: Instant,
}

impl RrdParts {
    fn new(first: std::path::PathBuf, split: RrdSplit) -> Self {
        Self {
            current: first.clone(),
            first,
            split,
            part: 0,
            started: Instant::now(),
            checked: Instant::now(),
        }
    }

    /// The next part's file when the current one is full or old enough
    /// (its size is looked at five times a second).
    fn due(&mut self) -> Option<std::path::PathBuf> {
        let old = self
            .split
            .every
            .is_some_and(|e| self.started.elapsed() >= e);
        let full = match self.split.max_bytes {
            Some(max) if self.checked.elapsed() >= Duration::from_millis(200) => {
                self.checked = Instant::now();
                std::fs::metadata(&self.current).is_ok_and(|m| m.len() >= max)
            }
            _ => false,
        };
        if !(old || full) {
            return None;
        }
        self.part += 1;
        self.current = crate::outfile::part(&self.split.template, &self.first, self.part);
        self.started = Instant::now();
        Some(self.current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The safety node on a real session: the policy's token goes, hover comes
    /// first, then after the hover limit the landing command, announced on
    /// `events`; when the policy is back the node stops commanding.
    #[test]
    fn safety_hover_times_out_into_land() {
        let session = bus::open(&bus::BusConfig::default()).unwrap();
        let robot = format!("safe{}", std::process::id());
        let mut out =
            Inbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT, 256).unwrap();
        let mut events = Inbox::<Event>::new(&session, &robot, bus::topics::EVENTS, 64).unwrap();
        let token = bus::announce(&session, &robot, "policy").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let node = {
            let (s, r, st) = (session.clone(), robot.clone(), stop.clone());
            std::thread::spawn(move || {
                let opts = NodeOptions {
                    hover_limit: Some(Duration::from_millis(300)),
                    ..NodeOptions::default()
                };
                safety_node(&s, &r, &opts, &st)
            })
        };
        // Give the node time to see the policy up (its watcher reports live
        // tokens first), then take the policy away.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(token);
        let mut got = Vec::new();
        let t0 = Instant::now();
        while !got.contains(&LAND) {
            if let Some((h, sp)) = out.recv_timeout(Duration::from_millis(50)).unwrap() {
                assert_eq!(h.frame_id, "safety");
                got.push(sp);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no landing: {got:?}"
            );
        }
        let first_land = got.iter().position(|s| *s == LAND).unwrap();
        assert!(first_land > 0, "landed without hovering first");
        assert!(
            got[..first_land].iter().all(|s| *s == Setpoint::HOVER),
            "{got:?}"
        );
        let mut texts = Vec::new();
        while let Some((_, e)) = events.recv_timeout(Duration::from_millis(100)).unwrap() {
            texts.push(e.text);
        }
        assert!(
            texts
                .iter()
                .any(|t| t.contains("still lost after 0.3 s of hover; landing")),
            "{texts:?}"
        );
        // The policy is back: the node stops commanding.
        let _back = bus::announce(&session, &robot, "policy").unwrap();
        let t0 = Instant::now();
        while !texts.iter().any(|t| t.contains("policy is back")) {
            if let Some((_, e)) = events.recv_timeout(Duration::from_millis(50)).unwrap() {
                texts.push(e.text);
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{texts:?}");
        }
        // (what was in flight when it came back)
        for _ in 0..40 {
            if out
                .recv_timeout(Duration::from_millis(200))
                .unwrap()
                .is_none()
            {
                break;
            }
        }
        assert!(
            out.recv_timeout(Duration::from_millis(500))
                .unwrap()
                .is_none(),
            "still commanding after the policy came back"
        );
        stop.store(true, Ordering::Relaxed);
        node.join().unwrap().unwrap();
    }
}
