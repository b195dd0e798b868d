//! `agent node`: one or several nodes of the robot's graph.

use super::{BusArgs, RerunMode, above, positive_hz, within};
#[cfg(feature = "twin")]
use agent::fly::FlyConfig;
#[cfg(not(feature = "twin"))]
use agent::pipeline::LoopConfig;
use agent::telemetry::Sink;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct NodeArgs {
    /// Which node; several, comma-separated (`stereo,policy`), run as threads of
    /// one process sharing one zenoh session (lowest latency).
    #[arg(value_enum, value_delimiter = ',', required = true)]
    kind: Vec<agent::nodes::NodeKind>,
    /// Robot name, endpoints, retry.
    #[command(flatten)]
    bus: BusArgs,
    /// The live camera (camera node).
    #[cfg(feature = "camera")]
    #[command(flatten)]
    camera: super::camera::CameraArgs,
    /// Settings file (stereo, avoidance, twin context; see launch/fly.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Simulated seconds the camera (twin) node runs.
    #[cfg(feature = "twin")]
    #[arg(long, value_parser = above(0.0, crate::cli::MAX_SECONDS, "s"))]
    seconds: Option<f64>,
    /// fc node: the flight controller's serial device (e.g. /dev/ttyTHS1).
    #[arg(long)]
    device: Option<PathBuf>,
    /// fc node: baud rate of the serial device.
    #[arg(long, default_value_t = 115_200, value_parser = clap::value_parser!(u32).range(300..=20_000_000))]
    baud: u32,
    /// fc / mavlink node: arm (and, with MAVLink, take control) when the first setpoint
    /// arrives and the preflight checks pass.
    #[arg(long)]
    arm: bool,
    /// fc / mavlink node: nodes that must be alive before any arm, whoever asks
    /// (`fc` is this node; its other preflight checks: depth scans, state, status, setpoints).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "camera,stereo,policy,safety,fc"
    )]
    preflight_require: Vec<String>,
    /// fc / mavlink node: share of the median depth scan's columns stereo must know to arm.
    #[arg(long, default_value_t = 0.5, value_parser = within(0.0, 1.0, ""))]
    preflight_min_known: f64,
    /// fc / mavlink node: arm with no preflight checks (a bench with a flight controller
    /// and no camera; never on a vehicle that flies).
    #[arg(long)]
    no_preflight: bool,
    /// mono node: weights to load and reload when the file changes; learner node: where to save them.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// learner node: seconds between saves of the weights.
    #[arg(long, default_value_t = 10.0, value_parser = above(0.0, 86_400.0, "s"))]
    save_every: f64,
    /// policy node: fly a network trained by `agent train` (its policy.bpk, with
    /// policy.toml beside it) instead of the reactive avoider.
    #[arg(long)]
    policy_net: Option<PathBuf>,
    /// policy node: fly velocity commands from outside the agent instead of the
    /// reactive avoider (`cmd/external`: a ROS 2 planner's `cmd_vel` through
    /// `agent node ros2 --ros-accept cmd-vel`), within the loop's safety limits
    /// (`[external]` and `[avoid]` of --config): it stops before what its scan
    /// sees ahead, never flies forward blind, and hovers when commands stop.
    #[arg(long, conflicts_with = "policy_net")]
    external: bool,
    /// ros2 node: endpoints of the ROS 2 side (rmw_zenoh's router, `ros2 run
    /// rmw_zenoh_cpp rmw_zenohd`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "tcp/127.0.0.1:7447")]
    ros_connect: Vec<String>,
    /// ros2 node: endpoints its ROS 2 session listens on (none by default).
    #[arg(long, value_delimiter = ',')]
    ros_listen: Vec<String>,
    /// ros2 node: the ROS 2 domain (default: $ROS_DOMAIN_ID, else 0).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=232))]
    ros_domain: Option<u32>,
    /// ros2 node: the ROS 2 namespace of the node and its topics (e.g. /drone1).
    #[arg(long, default_value = "")]
    ros_namespace: String,
    /// ros2 node: the ROS 2 node's name.
    #[arg(long, default_value = "onboard_agent")]
    ros_node_name: String,
    /// ros2 node: what ROS 2 may send into the graph (nothing by default: its
    /// side is unauthenticated): goal (goal_pose in the odom frame → nav/goal).
    #[arg(long, value_enum, value_delimiter = ',')]
    ros_accept: Vec<agent::nodes::ros2::Accept>,
    /// telemetry node: where rerun data goes (save, connect, spawn, off).
    #[arg(long, value_enum, default_value = "save")]
    rerun: RerunMode,
    /// telemetry node, --rerun save: the .rrd file (`{time}` becomes the UTC
    /// start time, and such a file is never overwritten: NAME-1.rrd, ... instead).
    #[arg(long, default_value = "out/graph-{time}.rrd")]
    rerun_save: PathBuf,
    /// telemetry node, --rerun save: start the next file (NAME-part2.rrd, ...;
    /// with `{time}`, a new time-stamped name) after this many minutes.
    #[arg(long, value_parser = within(0.1, 1e6, "minutes"))]
    rerun_split_minutes: Option<f64>,
    /// telemetry node, --rerun save: start the next file once this one holds this
    /// many MB.
    #[arg(long, value_parser = within(1.0, 1e9, "MB"))]
    rerun_split_mb: Option<f64>,
    /// camera, stereo and telemetry nodes: the stereo rig's calibration file (OpenCV
    /// YAML, from `calib stereo`): the camera node rectifies with it (and refuses a
    /// camera of another size), the stereo node takes depth from its rectified focal
    /// length and baseline; default: the twin's rig (160x120).
    #[arg(long)]
    rig: Option<PathBuf>,
    /// policy node: how it picks its cue (persistent: fly mono once it is good
    /// enough, stereo as training wheels; stereo-only: never mono).
    #[arg(long, value_enum, default_value = "persistent")]
    strategy: agent::persist::Strategy,
    /// policy node: the camera's frame rate (Hz); sets the switching rule's window.
    #[arg(long, default_value_t = 30.0, value_parser = positive_hz)]
    camera_hz: f64,
    /// policy node: how long to wait (ms) for a frame's mono scan once its stereo
    /// scan is in, while the mono node publishes; without it the frame flies on stereo.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    mono_wait_ms: u64,
    /// telemetry node, --rerun connect: the viewer's gRPC address.
    #[arg(long, default_value = "rerun+http://127.0.0.1:9876/proxy")]
    rerun_url: String,
    /// safety node: nodes whose loss makes it command hover (comma-separated; default: policy).
    #[arg(long, value_delimiter = ',')]
    require: Vec<String>,
    /// mavlink node: the autopilot's address: udpin:HOST:PORT, udpout:HOST:PORT or serial:DEVICE:BAUD
    /// (PX4 SITL: udpin:0.0.0.0:14540).
    #[arg(long)]
    mavlink: Option<String>,
    /// SELFI graph: the offline phase's folder (`agent selfi offline`). The camera
    /// then flies the goal-reaching task with walkers, the policy flies the SELFI
    /// actor (swapping in weights from `policy/weights`), and the selfi-learner
    /// node fine-tunes it (saving to --checkpoint).
    #[cfg(feature = "twin")]
    #[arg(long)]
    selfi: Option<PathBuf>,
    /// SELFI graph: settings (TOML, see agent/rl/config/selfi.toml); default: the
    /// offline phase's, with the built-in online settings.
    #[cfg(feature = "twin")]
    #[arg(long)]
    selfi_config: Option<PathBuf>,
    /// safety node: gate `cmd/policy` with the supervisor rule; take-overs are interventions.
    #[arg(long)]
    supervise: bool,
    /// safety node: seconds of hover while a required node is lost before it
    /// commands a landing (0.5 m/s down until the node is back).
    #[arg(long, default_value_t = 5.0, value_parser = hover_seconds)]
    hover_seconds: f64,
    /// SELFI policy node: propose on `cmd/policy` for a supervising safety node.
    #[cfg(feature = "twin")]
    #[arg(long)]
    gated: bool,
    /// SELFI policy node: add exploration noise to the executed command.
    #[cfg(feature = "twin")]
    #[arg(long)]
    explore: bool,
    /// selfi-learner node: publish weights every this many transitions once the
    /// actor learns (default 100); rl-learner node: every this many environment
    /// steps, when it learned since (default 256: right after each of DQN's
    /// training rounds).
    #[cfg(feature = "twin")]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    publish_every: Option<u64>,
    /// actor and rl-learner nodes.
    #[cfg(feature = "twin")]
    #[command(flatten)]
    rl: RlArgs,
}

/// The training nodes' settings (`agent node actor`, `agent node rl-learner`).
/// With --connect and no --listen they are clients of the router that
/// --connect names (`agent router --open`) and reach each other through it
/// only; --config is the learner's settings (as `agent train --config`; actors
/// need the learner's, for the network's shape).
#[cfg(feature = "twin")]
#[derive(clap::Args)]
struct RlArgs {
    /// actor, rl-learner: the training run's name (its keys: RUN/rl/...).
    #[arg(long, default_value = "rl")]
    run: String,
    /// actor, rl-learner: the task (CartPole with DQN, Pendulum with SAC, or
    /// the family of an instance file: --instances).
    #[arg(long, value_enum, default_value = "cartpole")]
    task: RlTask,
    /// actor, rl-learner with --task family: the instance file (as `agent train
    /// --instances`, e.g. agent/rl/instances/twin_avoid.toml); its own
    /// `config` is the learner's settings unless --config names others.
    #[arg(long)]
    instances: Option<PathBuf>,
    /// actor, rl-learner: the run's seed (each actor's own follows from it and --actor).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    seed: u64,
    /// actor: this actor's number, unique in the run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    actor: u32,
    /// actor: environment steps per batch sent to the learner.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    batch: u64,
    /// actor: batches that may wait for the learner's credit; beyond, the actor
    /// waits (it never runs more than this many batches ahead of the learner).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_in_flight: u64,
    /// actor: seconds without a word from the learner before the actor gives up.
    #[arg(long, default_value_t = 120.0, value_parser = above(0.0, 86_400.0, "s"))]
    learner_timeout: f64,
    /// rl-learner: environment steps in all (default: 100000 for CartPole, 20000
    /// for Pendulum, as `agent rl-validate`; 150000 for a family, as `agent train`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: Option<u64>,
    /// rl-learner: environment steps between evaluations (default: 5000 for
    /// CartPole, 1000 for Pendulum, as `agent rl-validate`; a family's settings'
    /// `eval_every`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    eval_every: Option<u64>,
    /// rl-learner: go on after the task is solved, to --max-steps.
    #[arg(long)]
    keep_going: bool,
    /// rl-learner: the run's folder (checkpoint/ and its learner.toml); a run
    /// found there is resumed.
    #[arg(long, default_value = "out/rl-learner")]
    out: PathBuf,
    /// rl-learner: seconds without a batch from an actor before it is reported gone.
    #[arg(long, default_value_t = 10.0, value_parser = above(0.0, 86_400.0, "s"))]
    silent_after: f64,
}

#[cfg(feature = "twin")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RlTask {
    Cartpole,
    Pendulum,
    Family,
}

/// `agent node actor` / `agent node rl-learner`.
#[cfg(feature = "twin")]
fn rl_node(a: NodeArgs, stop: Arc<AtomicBool>) -> Result<()> {
    use agent::nodes::NodeKind;
    let [kind] = a.kind.as_slice() else {
        anyhow::bail!("the actor and rl-learner nodes run alone, one per process");
    };
    use agent::actors::Task;
    use rl::validate::Classic;
    let r = &a.rl;
    let task = match r.task {
        RlTask::Cartpole => Task::Classic(Classic::CartPole),
        RlTask::Pendulum => Task::Classic(Classic::Pendulum),
        RlTask::Family => {
            let path = r
                .instances
                .as_ref()
                .context("--task family needs --instances FILE (an instance file)")?;
            Task::Family(Box::new(rl::instances::InstanceFile::load(path)?))
        }
    };
    let family_config = match &task {
        Task::Family(f) => f.config.clone(),
        Task::Classic(_) => None,
    };
    let config = match a.config.as_ref().or(family_config.as_ref()) {
        Some(p) => rl::train::TrainConfig::load(p)?,
        None => rl::train::TrainConfig::default(),
    };
    let mut bus = a.bus.config();
    anyhow::ensure!(
        !bus.connect.is_empty() || !bus.listen.is_empty(),
        "training nodes find each other through a router: give --connect tcp/ROUTER:PORT (`agent router --open`)"
    );
    bus.client = !bus.connect.is_empty() && bus.listen.is_empty();
    let session = ::bus::open(&bus)?;
    match kind {
        NodeKind::Actor => {
            let report = agent::actors::actor::run(
                &session,
                &agent::actors::actor::ActorOptions {
                    run: r.run.clone(),
                    task,
                    actor: r.actor,
                    seed: r.seed,
                    batch: r.batch as usize,
                    max_in_flight: r.max_in_flight,
                    config,
                    learner_timeout: Duration::from_secs_f64(r.learner_timeout),
                },
                &stop,
            )?;
            println!(
                "actor {}: {} steps in {} batches, {} episodes, {} weights versions taken (the last: start {} of the learner, publication {}), at most {} steps ahead of the learner{}",
                r.actor,
                report.steps,
                report.batches,
                report.episodes,
                report.weights_taken,
                report.weights_version >> agent::actors::learner::VERSION_BITS,
                report.weights_version & ((1 << agent::actors::learner::VERSION_BITS) - 1),
                report.max_ahead,
                if report.learner_done {
                    "; the learner ended the run"
                } else {
                    ""
                }
            );
        }
        NodeKind::RlLearner => {
            let max_steps = r.max_steps.unwrap_or(match &task {
                Task::Classic(Classic::CartPole) => 100_000,
                Task::Classic(Classic::Pendulum) => 20_000,
                Task::Family(_) => 150_000,
            });
            let eval_every = r.eval_every.unwrap_or(match &task {
                Task::Classic(c) => c.eval_every(),
                Task::Family(_) => config.eval_every,
            });
            let threshold = task.threshold();
            let report = agent::actors::learner::run(
                &session,
                &agent::actors::learner::LearnerOptions {
                    run: r.run.clone(),
                    task,
                    seed: r.seed,
                    max_steps,
                    eval_every,
                    stop_when_solved: !r.keep_going,
                    publish_every: a.publish_every.unwrap_or(256),
                    out: r.out.clone(),
                    save_every: Duration::from_secs_f64(a.save_every),
                    silent_after: Duration::from_secs_f64(r.silent_after),
                    device: agent::device::device(agent::device::Backend::Cpu)?,
                    config,
                },
                &stop,
            )?;
            let p = &report.progress;
            let actors: Vec<String> = p
                .actors
                .iter()
                .map(|(k, v)| format!("actor {k}: {v}"))
                .collect();
            println!(
                "rl-learner: {} {}; {} steps ({}); this process: {} steps in {:.1} s of learning ({:.0} steps/s), {} updates ({:.0} updates/s), actors at most {} batches beyond its credit{}",
                p.task,
                match (p.solved_at, p.finished, threshold) {
                    (Some(s), _, _) => format!("solved at step {s}"),
                    (None, true, Some(_)) => format!("NOT solved in {} steps", p.steps),
                    (None, true, None) => format!(
                        "trained {} steps (no solved threshold; last mean greedy test return {})",
                        p.steps,
                        p.evaluations
                            .last()
                            .map_or("-".to_string(), |e| format!("{:.2}", e.mean_return))
                    ),
                    (None, false, _) => format!("interrupted at step {}", p.steps),
                },
                p.steps,
                actors.join(", "),
                report.steps,
                report.learn_seconds,
                report.steps as f64 / report.learn_seconds.max(1e-9),
                report.updates,
                report.updates as f64 / report.learn_seconds.max(1e-9),
                report.max_lead,
                if report.resumed_at > 0 {
                    format!(", resumed at step {}", report.resumed_at)
                } else {
                    String::new()
                }
            );
        }
        other => anyhow::bail!("{} is not a training node", other.name()),
    }
    Ok(())
}

/// Hover seconds before landing: finite, in [0, 600].
fn hover_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && (0.0..=600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} must be in [0, 600] seconds"))
    }
}

/// Run the nodes of `a` until `stop` (or the first failure).
pub(crate) fn run(a: NodeArgs, stop: Arc<AtomicBool>) -> Result<()> {
    #[cfg(feature = "twin")]
    if a.kind.iter().any(|k| {
        matches!(
            k,
            agent::nodes::NodeKind::Actor | agent::nodes::NodeKind::RlLearner
        )
    }) {
        return rl_node(a, stop);
    }
    #[cfg(feature = "twin")]
    let mut cfg = match &a.config {
        Some(p) => FlyConfig::load(p)?,
        None => FlyConfig::default(),
    };
    #[cfg(feature = "twin")]
    if let Some(s) = a.seconds {
        cfg.seconds = s;
        cfg.validate()?;
    }
    #[cfg(not(feature = "twin"))]
    let cfg = match &a.config {
        Some(p) => LoopConfig::load(p)?,
        None => LoopConfig::default(),
    };
    #[cfg(feature = "twin")]
    if a.external && a.selfi.is_some() {
        anyhow::bail!("--external and --selfi each name the policy: give one");
    }
    if (a.rerun_split_minutes.is_some() || a.rerun_split_mb.is_some())
        && !matches!(a.rerun, RerunMode::Save)
    {
        anyhow::bail!(
            "--rerun-split-minutes and --rerun-split-mb split a saved file: they need --rerun save"
        );
    }
    let session = a.bus.open()?;
    let fc = agent::nodes::NodeOptions {
        require: a.require,
        checkpoint: a.checkpoint.clone(),
        save_every: a.save_every,
        rig: a.rig,
        strategy: Some(a.strategy),
        camera_hz: Some(a.camera_hz),
        mono_wait: Some(Duration::from_millis(a.mono_wait_ms)),
        sink: Some(match a.rerun {
            RerunMode::Save => Sink::Save(agent::outfile::fresh(&a.rerun_save)),
            RerunMode::Connect => Sink::Connect(a.rerun_url),
            RerunMode::Spawn => Sink::Spawn,
            RerunMode::Off => Sink::Off,
        }),
        rerun_split: (a.rerun_split_minutes.is_some() || a.rerun_split_mb.is_some()).then(|| {
            agent::nodes::RrdSplit {
                template: a.rerun_save.clone(),
                every: a
                    .rerun_split_minutes
                    .map(|m| Duration::from_secs_f64(m * 60.0)),
                max_bytes: a.rerun_split_mb.map(|mb| (mb * 1e6) as u64),
            }
        }),
        device: a.device,
        mavlink: a.mavlink,
        baud: a.baud,
        arm: a.arm,
        arm_gate: if a.no_preflight {
            agent::fcnode::ArmGate::Off
        } else {
            agent::fcnode::ArmGate::Preflight(agent::preflight::PreflightConfig {
                require: a
                    .preflight_require
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect(),
                min_known: a.preflight_min_known,
                ..agent::preflight::PreflightConfig::default()
            })
        },
        policy_net: a.policy_net,
        external: a.external,
        #[cfg(feature = "twin")]
        selfi: match &a.selfi {
            Some(dir) => {
                let config = match &a.selfi_config {
                    Some(p) => agent::selfi::load_config(Some(p))?,
                    None => {
                        let card: rl::selfi::experiment::OfflineCard = toml::from_str(
                            &std::fs::read_to_string(dir.join("offline.toml")).with_context(
                                || format!("cannot read {}", dir.join("offline.toml").display()),
                            )?,
                        )
                        .with_context(|| format!("{}", dir.join("offline.toml").display()))?;
                        card.config
                    }
                };
                Some(agent::selfi_graph::SelfiNodeOptions {
                    config,
                    offline: dir.clone(),
                    explore: a.explore,
                    gated: a.gated,
                    checkpoint: a.checkpoint.clone(),
                    publish_every: a.publish_every.unwrap_or(100),
                    seed: cfg.seed,
                    seconds: cfg.seconds,
                })
            }
            None => None,
        },
        supervise: a.supervise,
        hover_limit: Some(Duration::from_secs_f64(a.hover_seconds)),
        #[cfg(feature = "twin")]
        twin: Some(cfg.clone()),
        #[cfg(feature = "camera")]
        camera: a.camera.node_options()?,
        ros2: Some(agent::nodes::ros2::Ros2Options {
            connect: a.ros_connect,
            listen: a.ros_listen,
            domain: match a.ros_domain {
                Some(d) => d,
                None => ros_domain_from_env()?,
            },
            namespace: a.ros_namespace,
            node_name: a.ros_node_name,
            accept: a.ros_accept,
        }),
    };
    #[cfg(feature = "twin")]
    let cfg = cfg.loop_config();
    if let [one] = a.kind.as_slice() {
        return agent::nodes::run(*one, &session, &a.bus.robot, &cfg, &fc, &stop);
    }
    // Several nodes in this process: one thread each; the first failure stops all.
    let results: Vec<(agent::nodes::NodeKind, Result<()>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = a
            .kind
            .iter()
            .map(|&k| {
                let (session, robot, cfg, fc, stop) = (&session, &a.bus.robot, &cfg, &fc, &stop);
                scope.spawn(move || {
                    let r = agent::nodes::run(k, session, robot, cfg, fc, stop);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    (k, r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        agent::nodes::NodeKind::Camera,
                        Err(anyhow::anyhow!("a node thread panicked")),
                    )
                })
            })
            .collect()
    });
    for (k, r) in results {
        r.with_context(|| format!("node {}", k.name()))?;
    }
    Ok(())
}

/// `ROS_DOMAIN_ID`, as ROS 2 reads it (0 when unset or empty).
fn ros_domain_from_env() -> Result<u32> {
    match std::env::var("ROS_DOMAIN_ID") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| *d <= 232)
            .with_context(|| format!("ROS_DOMAIN_ID={v} is not a domain id (0 to 232)")),
        _ => Ok(0),
    }
}
