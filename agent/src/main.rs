//! `agent`: the onboard learning agent's command line.

use agent::device::Backend;
use agent::fly::{FlyConfig, FlyOutputs};
use agent::persist::Strategy;
use agent::telemetry::Sink;
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "agent",
    version,
    about = "Onboard learning agent for robots and drones"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fly a short simulated flight in the twin while the monocular depth network
    /// learns online from stereo (persistent strategy by default); telemetry to an .rrd file.
    Fly(FlyArgs),
    /// The persistent self-supervised learning experiment: stereo only, persistent
    /// SSL and a naive switch fly the same rooms side by side; prints their figures.
    Persist(PersistArgs),
    /// Time the mono network: inference latency on 1 thread, training samples/s.
    Bench(BenchArgs),
    /// Run one node of the onboard graph over zenoh until Ctrl-C.
    Node(NodeArgs),
    /// Start a graph of processes from a launch file (see launch/sim_twin.toml);
    /// Ctrl-C or SIGTERM stops them all.
    Launch {
        /// The launch file (TOML).
        file: PathBuf,
    },
    /// Checks this build on its target: a rig file, stereo on a bundled pair, one mono inference.
    Selftest {
        /// A rig file (OpenCV YAML) instead of the bundled one (must be 160x120).
        #[arg(long)]
        rig: Option<PathBuf>,
    },
    /// The on-target budget: the whole pipeline in one process at the loop rate;
    /// time per stage, whether the rate is met, peak memory.
    Budget(BudgetArgs),
    /// Record topics of the bus to an MCAP file (until Ctrl-C or --seconds).
    Record(RecordArgs),
    /// Play an MCAP recording back onto the bus, at the recorded rate or as fast as possible.
    Replay(ReplayArgs),
    /// Reinforcement learning over the twin's contexts with a curriculum (SPaCE,
    /// round-robin, random): several seeds each, held-out evaluation, CSV + rerun
    /// metrics, checkpoints; prints the steps each needs to reach round-robin's final return.
    Train(TrainArgs),
    /// Train our DQN (CartPole) and SAC (Pendulum) on one CPU for a fixed number of
    /// steps next to Stable-Baselines3 with the same settings; prints steps/s and the ratio.
    RlBench(RlBenchArgs),
    /// Train DQN on CartPole or SAC on Pendulum over several seeds until solved
    /// (CartPole: mean greedy return >= 475 over 100 episodes; Pendulum: >= -200).
    RlValidate(RlValidateArgs),
    /// SELFI: record flights, pre-train against the model-based objective J
    /// offline, fine-tune online with Q = J + Q̄; `all` runs the whole experiment.
    #[command(subcommand)]
    Selfi(SelfiCmd),
    /// Latency from a stereo pair published to the setpoint received back,
    /// through the stereo and policy nodes over zenoh.
    Latency(LatencyArgs),
}

#[derive(Subcommand)]
enum SelfiCmd {
    /// Fly the behaviour policy in the twin (goal reaching, walkers, supervisor)
    /// and write the flights as an MCAP recording of the graph's topics.
    Record(SelfiRecordArgs),
    /// Fit the dynamics and traversability models, pre-train the actor against J
    /// and the critics by TD, from MCAP recordings (the twin's or a robot's).
    Offline(SelfiOfflineArgs),
    /// Run the arms online on the same seeds (offline only, SELFI, plain RL);
    /// per-bin interventions and collisions per 100 m and success, with the goal check.
    Online(SelfiOnlineArgs),
    /// record (unless the work folder holds a recording), offline and online in a row.
    All(SelfiAllArgs),
}

#[derive(clap::Args)]
struct SelfiCommon {
    /// Settings (TOML: [plan], [objective], [offline], [online], [reward], [nav]).
    #[arg(long, default_value = "agent/rl/config/selfi.toml")]
    config: PathBuf,
    /// Compute backend of the networks.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

#[derive(clap::Args)]
struct SelfiRecordArgs {
    #[command(flatten)]
    common: SelfiCommon,
    /// Simulated minutes to fly.
    #[arg(long, default_value_t = 20.0)]
    minutes: f64,
    /// Seed of the recorded rooms (keep it apart from the online seeds).
    #[arg(long, default_value_t = 100)]
    seed: u64,
    /// The recording.
    #[arg(long, default_value = "out/selfi/logs/flights.mcap")]
    out: PathBuf,
    /// Replace an existing recording.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct SelfiOfflineArgs {
    #[command(flatten)]
    common: SelfiCommon,
    /// MCAP recordings, or folders of them.
    #[arg(long, default_value = "out/selfi/logs", value_delimiter = ',')]
    logs: Vec<PathBuf>,
    /// Seed of the networks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: models.bpk, actor.bpk, probe.toml, offline.toml.
    #[arg(long, default_value = "out/selfi/offline")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct SelfiOnlineArgs {
    /// The offline phase's folder (its offline.toml holds the config used; the
    /// online settings come from --config).
    #[arg(long, default_value = "out/selfi/offline")]
    offline: PathBuf,
    #[command(flatten)]
    run: SelfiRunArgs,
}

#[derive(clap::Args)]
struct SelfiRunArgs {
    #[command(flatten)]
    common: SelfiCommon,
    /// Arms, comma-separated: offline, selfi, plain.
    #[arg(long, value_delimiter = ',', default_value = "offline,selfi,plain")]
    arms: Vec<String>,
    /// Seeds per arm.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    seed_base: u64,
    /// Simulated minutes of online flight per run.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Bin width of the figures (simulated minutes).
    #[arg(long, default_value_t = 5.0)]
    bin_minutes: f64,
    /// Output folder: <arm>/seed<k>/{bins.csv, steps.csv, actor.bpk}, summary.txt, config.toml.
    #[arg(long, default_value = "out/selfi/online")]
    out: PathBuf,
    /// Runs at once (default: the CPU count).
    #[arg(long)]
    jobs: Option<usize>,
    /// Metrics to rerun: save to --rerun-save, connect, spawn, or off.
    #[arg(long, value_enum, default_value = "save")]
    rerun: RerunMode,
    /// Telemetry file (.rrd) when --rerun save.
    #[arg(long, default_value = "out/selfi.rrd")]
    rerun_save: PathBuf,
    /// Viewer address when --rerun connect.
    #[arg(long, default_value = "rerun+http://127.0.0.1:9876/proxy")]
    rerun_url: String,
}

#[derive(clap::Args)]
struct SelfiAllArgs {
    /// Simulated minutes of recorded flight for the offline phase.
    #[arg(long, default_value_t = 20.0)]
    record_minutes: f64,
    /// Folder for the recording and the offline bundle (logs/, offline/).
    #[arg(long, default_value = "out/selfi")]
    work: PathBuf,
    #[command(flatten)]
    run: SelfiRunArgs,
}

#[derive(clap::Args)]
struct NodeArgs {
    /// Which node; several, comma-separated (`stereo,policy`), run as threads of
    /// one process sharing one zenoh session (lowest latency).
    #[arg(value_enum, value_delimiter = ',', required = true)]
    kind: Vec<agent::nodes::NodeKind>,
    /// Robot name: every topic lives under it.
    #[arg(long, default_value = "robot")]
    robot: String,
    /// zenoh endpoints to listen on (e.g. tcp/127.0.0.1:7447).
    #[arg(long)]
    listen: Vec<String>,
    /// zenoh endpoints to connect to.
    #[arg(long)]
    connect: Vec<String>,
    /// Wait before retrying a `--connect` peer that is not listening (yet, or any
    /// more), in ms: first, then doubling up to max.
    #[arg(long, value_name = "FIRST,MAX", default_value_t = bus::ConnectRetry::default())]
    connect_retry_ms: bus::ConnectRetry,
    /// Settings file (stereo, avoidance, twin context; see launch/fly.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Simulated seconds the camera (twin) node runs.
    #[arg(long)]
    seconds: Option<f64>,
    /// fc node: the flight controller's serial device (e.g. /dev/ttyTHS1).
    #[arg(long)]
    device: Option<PathBuf>,
    /// fc node: baud rate of the serial device.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// fc / mavlink node: arm (and, with MAVLink, take control) when the first setpoint arrives.
    #[arg(long)]
    arm: bool,
    /// mono node: weights to load and reload when the file changes; learner node: where to save them.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// learner node: seconds between saves of the weights.
    #[arg(long, default_value_t = 10.0)]
    save_every: f64,
    /// policy node: fly a network trained by `agent train` (its policy.bpk, with
    /// policy.toml beside it) instead of the reactive avoider.
    #[arg(long)]
    policy_net: Option<PathBuf>,
    /// telemetry node: where rerun data goes (save, connect, spawn, off).
    #[arg(long, value_enum, default_value = "save")]
    rerun: RerunMode,
    /// telemetry node, --rerun save: the .rrd file.
    #[arg(long, default_value = "out/graph.rrd")]
    rerun_save: PathBuf,
    /// stereo, mono and telemetry nodes: the stereo rig's calibration file (OpenCV YAML,
    /// from `calib stereo`): the stereo node rectifies with it and takes depth from
    /// its rectified focal length and baseline; default: the twin's rig (160x120).
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
    #[arg(long)]
    selfi: Option<PathBuf>,
    /// SELFI graph: settings (TOML, see agent/rl/config/selfi.toml); default: the
    /// offline phase's, with the built-in online settings.
    #[arg(long)]
    selfi_config: Option<PathBuf>,
    /// safety node: gate `cmd/policy` with the supervisor rule; take-overs are interventions.
    #[arg(long)]
    supervise: bool,
    /// SELFI policy node: propose on `cmd/policy` for a supervising safety node.
    #[arg(long)]
    gated: bool,
    /// SELFI policy node: add exploration noise to the executed command.
    #[arg(long)]
    explore: bool,
    /// selfi-learner node: publish weights every this many transitions once the actor learns.
    #[arg(long, default_value_t = 100)]
    publish_every: u64,
}

/// Topic suffixes (`camera/stereo,state`) to topics; empty = every topic.
fn parse_topics(names: &[String]) -> Result<Vec<bus::Topic>> {
    if names.is_empty() {
        return Ok(bus::Topic::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            bus::Topic::from_suffix(n).with_context(|| {
                let known: Vec<_> = bus::Topic::ALL.iter().map(|t| t.suffix()).collect();
                format!("unknown topic `{n}` (known: {})", known.join(", "))
            })
        })
        .collect()
}

#[derive(clap::Args)]
struct BudgetArgs {
    /// Camera width (px).
    #[arg(long, default_value_t = 320)]
    width: usize,
    /// Camera height (px).
    #[arg(long, default_value_t = 240)]
    height: usize,
    /// Frames to run.
    #[arg(long, default_value_t = 300)]
    frames: usize,
    /// The loop rate to hold (Hz).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Telemetry file (.rrd).
    #[arg(long, default_value = "out/budget.rrd")]
    rerun_save: PathBuf,
    /// Settings file (see launch/fly.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Instance file: task, training and held-out test instances (see agent/rl/instances/).
    #[arg(long, default_value = "agent/rl/instances/twin_avoid.toml")]
    instances: PathBuf,
    /// Curricula to compare, comma-separated: space, round-robin, random.
    #[arg(long, value_delimiter = ',', default_value = "space,round-robin")]
    curriculum: Vec<String>,
    /// Environment steps per run (evaluation steps are not counted).
    #[arg(long, default_value_t = 150_000)]
    steps: u64,
    /// Seeds per curriculum (single evaluations swing by ±2 on the plateau;
    /// ten seeds make the mean curve steadier).
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    seed_base: u64,
    /// Training settings (TOML: learner, [dqn], [sac], [ppo], [space], eval_every, ...); default:
    /// the instance file's `config`, else built-in defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Evaluate the held-out instances every this many steps (overrides the config).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Output folder: <curriculum>/seed<k>/{metrics.csv, checkpoint/, policy.bpk}, summary.{csv,txt}.
    #[arg(long, default_value = "out/train")]
    out: PathBuf,
    /// Runs trained at once (default: the CPU count).
    #[arg(long)]
    jobs: Option<usize>,
    /// Continue each run from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Target test return for "steps to target" (default: round-robin's final return).
    #[arg(long)]
    target: Option<f64>,
    /// Metrics to rerun: save to --rerun-save, connect to a viewer, spawn one, or off.
    #[arg(long, value_enum, default_value = "save")]
    rerun: RerunMode,
    /// Telemetry file (.rrd) when --rerun save.
    #[arg(long, default_value = "out/train.rrd")]
    rerun_save: PathBuf,
    /// Viewer address when --rerun connect.
    #[arg(long, default_value = "rerun+http://127.0.0.1:9876/proxy")]
    rerun_url: String,
    /// Compute backend of the networks.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClassicTask {
    Cartpole,
    Pendulum,
    All,
}

impl ClassicTask {
    fn tasks(self) -> Vec<rl::validate::Classic> {
        use rl::validate::Classic;
        match self {
            ClassicTask::Cartpole => vec![Classic::CartPole],
            ClassicTask::Pendulum => vec![Classic::Pendulum],
            ClassicTask::All => vec![Classic::CartPole, Classic::Pendulum],
        }
    }
}

#[derive(clap::Args)]
struct RlBenchArgs {
    /// Which learner/task.
    #[arg(long, value_enum, default_value = "all")]
    task: ClassicTask,
    /// Steps of DQN on CartPole.
    #[arg(long, default_value_t = 50_000)]
    dqn_steps: u64,
    /// Steps of SAC on Pendulum.
    #[arg(long, default_value_t = 20_000)]
    sac_steps: u64,
    /// Skip the Stable-Baselines3 peer.
    #[arg(long)]
    no_peer: bool,
    /// Python with torch and stable-baselines3 for the peer.
    #[arg(long, default_value = "/usr/bin/python3")]
    python: PathBuf,
    /// The peer script.
    #[arg(long, default_value = "agent/rl/bench/sb3_peer.py")]
    peer_script: PathBuf,
}

#[derive(clap::Args)]
struct RlValidateArgs {
    /// Which learner/task.
    #[arg(long, value_enum, default_value = "cartpole")]
    task: ClassicTask,
    /// Seeds (0, 1, ...).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Step budget per seed (default: 100000 for CartPole, 20000 for Pendulum).
    #[arg(long)]
    steps: Option<u64>,
    /// Seeds trained at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

/// Where a command joins the bus.
#[derive(clap::Args)]
struct BusArgs {
    /// Robot name: the topics live under it.
    #[arg(long, default_value = "robot")]
    robot: String,
    /// zenoh endpoints to listen on.
    #[arg(long)]
    listen: Vec<String>,
    /// zenoh endpoints to connect to.
    #[arg(long)]
    connect: Vec<String>,
    /// Wait before retrying a `--connect` peer that is not listening (yet, or any
    /// more), in ms: first, then doubling up to max.
    #[arg(long, value_name = "FIRST,MAX", default_value_t = bus::ConnectRetry::default())]
    connect_retry_ms: bus::ConnectRetry,
}

impl BusArgs {
    fn open(&self) -> Result<bus::Session> {
        Ok(bus::open(&bus::BusConfig {
            listen: self.listen.clone(),
            connect: self.connect.clone(),
            retry: self.connect_retry_ms,
        })?)
    }
}

#[derive(clap::Args)]
struct RecordArgs {
    /// Output file (MCAP).
    #[arg(long, default_value = "out/record.mcap")]
    out: PathBuf,
    /// Topics to record (suffixes, comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    #[command(flatten)]
    bus: BusArgs,
    /// Stop after this many seconds (default: until Ctrl-C / SIGTERM).
    #[arg(long)]
    seconds: Option<f64>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The recording (MCAP, from `agent record`).
    file: PathBuf,
    /// Topics to play (suffixes, comma-separated); default: all in the file.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    #[command(flatten)]
    bus: BusArgs,
    /// Speed factor over the recorded rate.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// As fast as possible (ignores --rate).
    #[arg(long)]
    fast: bool,
    /// Seconds to wait for subscribers to connect before playing.
    #[arg(long, default_value_t = 1.0)]
    wait: f64,
}

#[derive(clap::Args)]
struct LatencyArgs {
    /// Image sizes, WIDTHxHEIGHT, comma-separated.
    #[arg(long, default_value = "160x120,320x240", value_delimiter = ',')]
    sizes: Vec<String>,
    /// Frames per size and placement.
    #[arg(long, default_value_t = 10_000)]
    frames: usize,
    /// Where the nodes run: processes, threads or both.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "processes,threads"
    )]
    placement: Vec<agent::latency::Placement>,
    /// TCP port on 127.0.0.1 the benchmark listens on.
    #[arg(long, default_value_t = 7461)]
    port: u16,
}

#[derive(clap::Args)]
struct Common {
    /// Settings file (TOML; see launch/fly.toml). Flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the first episode.
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated seconds per wall second (0 = as fast as possible).
    #[arg(long)]
    speed: Option<f64>,
    /// Twin context file (TOML) to fly in.
    #[arg(long, alias = "sim")]
    context: Option<PathBuf>,
    /// Network backend.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Where telemetry goes: save (an .rrd file, see --rerun-save), connect (a running
    /// viewer or server, see --rerun-url), spawn (start a viewer), off.
    #[arg(long, value_enum, default_value = "save")]
    rerun: RerunMode,
    /// With --rerun connect: the viewer's gRPC address.
    #[arg(long, default_value = "rerun+http://127.0.0.1:9876/proxy")]
    rerun_url: String,
    /// Record no telemetry (same as --rerun off).
    #[arg(long)]
    no_rerun: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RerunMode {
    Save,
    Connect,
    Spawn,
    Off,
}

impl Common {
    fn config(&self) -> Result<FlyConfig> {
        let mut cfg = match &self.config {
            Some(p) => FlyConfig::load(p)?,
            None => FlyConfig::default(),
        };
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        if let Some(v) = self.speed {
            cfg.speed = v;
        }
        if let Some(b) = self.backend {
            cfg.backend = b;
        }
        if let Some(p) = &self.context {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read context {}", p.display()))?;
            cfg.context = sim::Context::from_toml_str(&text)
                .with_context(|| format!("in context {}", p.display()))?;
        }
        Ok(cfg)
    }

    fn sink(&self, path: &std::path::Path) -> Sink {
        match (self.no_rerun, self.rerun) {
            (true, _) | (_, RerunMode::Off) => Sink::Off,
            (_, RerunMode::Save) => Sink::Save(path.to_path_buf()),
            (_, RerunMode::Connect) => Sink::Connect(self.rerun_url.clone()),
            (_, RerunMode::Spawn) => Sink::Spawn,
        }
    }
}

#[derive(clap::Args)]
struct FlyArgs {
    #[command(flatten)]
    common: Common,
    /// Simulated seconds to fly.
    #[arg(long)]
    seconds: Option<f64>,
    /// Which cue the robot flies on and when it switches.
    #[arg(long, value_enum)]
    strategy: Option<Strategy>,
    /// Write telemetry to this .rrd file.
    #[arg(long, default_value = "out/fly.rrd")]
    rerun_save: PathBuf,
    /// Save the trained mono network here (burnpack).
    #[arg(long, default_value = "out/mono.bpk")]
    checkpoint: PathBuf,
    /// Start from this checkpoint instead of a fresh network.
    #[arg(long)]
    resume: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PersistArgs {
    #[command(flatten)]
    common: Common,
    /// Simulated minutes each arm flies (in the cluttered room unless --config or
    /// --context says otherwise).
    #[arg(long, default_value_t = 15.0)]
    minutes: f64,
    /// Also report the figures after this many minutes of learning.
    #[arg(long, default_value_t = 10.0)]
    learn_minutes: f64,
    /// Write telemetry to this .rrd file.
    #[arg(long, default_value = "out/persist.rrd")]
    rerun_save: PathBuf,
    /// Save the persistent arm's network here (burnpack).
    #[arg(long, default_value = "out/persist_mono.bpk")]
    checkpoint: PathBuf,
    /// Exit with status 2 if a goal of the experiment is missed.
    #[arg(long)]
    check_goals: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Settings file (network shape and learner batch are read from it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds to measure each figure.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Threads for the training figure.
    #[arg(long, default_value_t = 2)]
    train_threads: usize,
    /// Backends to time, comma-separated (default: every backend compiled into
    /// this binary: cpu, and cuda with `--features cuda`).
    #[arg(long, value_enum, value_delimiter = ',')]
    backend: Vec<Backend>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("cannot install the Ctrl-C handler")?;
    }
    match Cli::parse().cmd {
        Cmd::Fly(a) => fly(a, stop),
        Cmd::Persist(a) => persist(a, stop),
        Cmd::Node(a) => {
            let mut cfg = match &a.config {
                Some(p) => FlyConfig::load(p)?,
                None => FlyConfig::default(),
            };
            if let Some(s) = a.seconds {
                cfg.seconds = s;
                cfg.validate()?;
            }
            let session = bus::open(&bus::BusConfig {
                listen: a.listen,
                connect: a.connect,
                retry: a.connect_retry_ms,
            })?;
            let fc = agent::nodes::NodeOptions {
                require: a.require,
                checkpoint: a.checkpoint.clone(),
                save_every: a.save_every,
                rig: a.rig,
                strategy: Some(a.strategy),
                camera_hz: Some(a.camera_hz),
                mono_wait: Some(Duration::from_millis(a.mono_wait_ms)),
                sink: Some(match a.rerun {
                    RerunMode::Save => Sink::Save(a.rerun_save),
                    RerunMode::Connect => Sink::Connect(a.rerun_url),
                    RerunMode::Spawn => Sink::Spawn,
                    RerunMode::Off => Sink::Off,
                }),
                device: a.device,
                mavlink: a.mavlink,
                baud: a.baud,
                arm: a.arm,
                policy_net: a.policy_net,
                selfi: match &a.selfi {
                    Some(dir) => {
                        let config = match &a.selfi_config {
                            Some(p) => agent::selfi::load_config(Some(p))?,
                            None => {
                                let card: rl::selfi::experiment::OfflineCard = toml::from_str(
                                    &std::fs::read_to_string(dir.join("offline.toml"))
                                        .with_context(|| {
                                            format!(
                                                "cannot read {}",
                                                dir.join("offline.toml").display()
                                            )
                                        })?,
                                )
                                .with_context(|| {
                                    format!("{}", dir.join("offline.toml").display())
                                })?;
                                card.config
                            }
                        };
                        Some(agent::selfi_graph::SelfiNodeOptions {
                            config,
                            offline: dir.clone(),
                            explore: a.explore,
                            gated: a.gated,
                            checkpoint: a.checkpoint.clone(),
                            publish_every: a.publish_every.max(1),
                            seed: cfg.seed,
                            seconds: cfg.seconds,
                        })
                    }
                    None => None,
                },
                supervise: a.supervise,
            };
            if let [one] = a.kind.as_slice() {
                return agent::nodes::run(*one, &session, &a.robot, &cfg, &fc, &stop);
            }
            // Several nodes in this process: one thread each; the first failure stops all.
            let results: Vec<(agent::nodes::NodeKind, Result<()>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = a
                    .kind
                    .iter()
                    .map(|&k| {
                        let (session, robot, cfg, fc, stop) =
                            (&session, &a.robot, &cfg, &fc, &stop);
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
        Cmd::Launch { file } => {
            let f = agent::launch::LaunchFile::load(&file)?;
            let s = agent::launch::run(&f, &stop)?;
            println!(
                "graph `{}` stopped{}: exits {:?}, restarts {:?}",
                f.name,
                if s.interrupted {
                    " by Ctrl-C/SIGTERM"
                } else {
                    ""
                },
                s.exits,
                s.restarts
            );
            Ok(())
        }
        Cmd::Selftest { rig } => {
            let r = agent::selftest::run(&FlyConfig::default(), rig.as_deref())?;
            println!("{r}");
            Ok(())
        }
        Cmd::Train(a) => train(a, stop),
        Cmd::Selfi(c) => selfi(c, &stop),
        Cmd::RlBench(a) => rl_bench(a),
        Cmd::RlValidate(a) => rl_validate(a),
        Cmd::Budget(a) => {
            let cfg = match &a.config {
                Some(p) => FlyConfig::load(p)?,
                None => FlyConfig::default(),
            };
            let r = agent::budget::run(
                &cfg,
                &agent::budget::BudgetConfig {
                    width: a.width,
                    height: a.height,
                    frames: a.frames,
                    rate: a.rate,
                    telemetry: Some(a.rerun_save),
                },
                &stop,
            )?;
            println!("{r}");
            Ok(())
        }
        Cmd::Record(a) => {
            let topics = parse_topics(&a.topics)?;
            if let Some(s) = a.seconds
                && !(s.is_finite() && s > 0.0)
            {
                anyhow::bail!("--seconds must be positive, got {s}");
            }
            // The bus first: a robot that cannot be reached leaves nothing behind.
            let session = a.bus.open()?;
            if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            println!(
                "recording {} topics of `{}` to {}",
                topics.len(),
                a.bus.robot,
                a.out.display()
            );
            let s = bus::log::record(
                &session,
                &a.bus.robot,
                &topics,
                &a.out,
                a.seconds.map(Duration::from_secs_f64),
                &stop,
            )?;
            println!(
                "recorded {} messages ({:.2} MB) to {}: {:?}; {} malformed skipped",
                s.messages(),
                s.bytes as f64 / 1e6,
                a.out.display(),
                s.per_topic,
                s.malformed
            );
            Ok(())
        }
        Cmd::Replay(a) => {
            let topics = if a.topics.is_empty() {
                Vec::new()
            } else {
                parse_topics(&a.topics)?
            };
            if !(a.rate.is_finite() && a.rate > 0.0) {
                anyhow::bail!("--rate must be positive, got {}", a.rate);
            }
            let session = a.bus.open()?;
            std::thread::sleep(Duration::from_secs_f64(a.wait.clamp(0.0, 60.0)));
            let pace = if a.fast {
                bus::log::Pace::AsFastAsPossible
            } else {
                bus::log::Pace::Rate(a.rate)
            };
            let t0 = std::time::Instant::now();
            let s = bus::log::replay(&session, &a.bus.robot, &a.file, &topics, pace, &stop)?;
            println!(
                "replayed {} messages from {} in {:.2} s: {:?}",
                s.messages(),
                a.file.display(),
                t0.elapsed().as_secs_f64(),
                s.per_topic
            );
            // Let the last messages leave before the session closes.
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        }
        Cmd::Latency(a) => {
            let cfg = FlyConfig::default();
            for size in &a.sizes {
                let (w, h) = size
                    .split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                    .with_context(|| format!("size `{size}` is not WIDTHxHEIGHT"))?;
                for (k, p) in a.placement.iter().enumerate() {
                    let port = a.port.wrapping_add(k as u16);
                    let r = agent::latency::run(&cfg, w, h, a.frames, *p, port)?;
                    println!("{r}");
                }
            }
            Ok(())
        }
        Cmd::Bench(a) => {
            let cfg = match &a.config {
                Some(p) => FlyConfig::load(p)?,
                None => FlyConfig::default(),
            };
            let backends = if a.backend.is_empty() {
                agent::device::compiled_backends()
            } else {
                a.backend.clone()
            };
            let mut failed = 0;
            for b in backends {
                let mut cfg = cfg.clone();
                cfg.backend = b;
                // A backend whose runtime is missing (no CUDA driver) panics inside
                // burn on first use; report it and go on with the others.
                let r = std::panic::catch_unwind(|| -> Result<String> {
                    let mono = agent::bench::run(&cfg, a.seconds, a.train_threads)?;
                    let nets = rl::validate::time_networks(
                        &agent::device::device(b)?,
                        (a.seconds / 4.0).max(0.5),
                    )?;
                    Ok(format!(
                        "{mono}\nRL networks ({b:?}, twin sizes): DQN act {:.3} ms, DQN training step (batch 64) {:.2} ms; SAC act {:.3} ms, SAC training step (batch 256) {:.2} ms",
                        nets.dqn_act_ms, nets.dqn_step_ms, nets.sac_act_ms, nets.sac_step_ms
                    ))
                });
                match r {
                    Ok(Ok(text)) => println!("{text}\n"),
                    Ok(Err(e)) => {
                        failed += 1;
                        println!("backend {b:?}: {e:#}\n");
                    }
                    Err(_) => {
                        failed += 1;
                        println!(
                            "backend {b:?}: failed at run time (is its driver/runtime installed?)\n"
                        );
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} backend(s) could not be timed");
            Ok(())
        }
    }
}

fn fly(a: FlyArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let mut cfg = a.common.config()?;
    if let Some(s) = a.seconds {
        cfg.seconds = s;
    }
    if let Some(s) = a.strategy {
        cfg.strategy = s;
    }
    let out = FlyOutputs {
        sink: a.common.sink(&a.rerun_save),
        checkpoint: Some(a.checkpoint.clone()),
        resume: a.resume.clone(),
    };
    let s = agent::fly::run(&cfg, &out, stop)?;
    println!(
        "flew {:.1} s simulated in {:.1} s wall: {:.1} m, {} collisions, {} rooms crossed",
        s.sim_seconds, s.wall_seconds, s.distance, s.collisions, s.successes
    );
    if cfg.strategy.learns() {
        println!(
            "mono depth learned online: {} training steps (loss {:.3}), {} weight updates; error |log mono - log stereo| {:.3} (first quarter) -> {:.3} (last quarter)",
            s.learner_steps,
            s.learner_loss,
            s.weight_updates,
            s.mono_error_first,
            s.mono_error_last
        );
        println!(
            "{:?} strategy: {:.0} % of frames flown on mono, {} switches to mono, {} training-wheel interventions",
            cfg.strategy,
            100.0 * s.mono_frames as f64 / s.frames.max(1) as f64,
            s.switches_to_mono,
            s.interventions
        );
        println!("checkpoint: {}", a.checkpoint.display());
    }
    if s.dropped_samples > 0 {
        println!(
            "learner was behind: {} samples not trained on",
            s.dropped_samples
        );
    }
    if s.rejected_samples > 0 || s.diverged_steps > 0 {
        println!(
            "learner refused {} malformed samples and threw away {} diverged steps",
            s.rejected_samples, s.diverged_steps
        );
    }
    let sink = a.common.sink(&a.rerun_save);
    if sink != Sink::Off {
        println!("telemetry: {}", sink.describe());
        if s.telemetry_dropped > 0 {
            println!(
                "telemetry: {} logging calls dropped (the sink fell behind; the flight did not wait)",
                s.telemetry_dropped
            );
        }
    }
    if s.interrupted {
        println!("(stopped early by Ctrl-C)");
    }
    Ok(())
}

fn persist(a: PersistArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let mut cfg = a.common.config()?;
    if a.common.config.is_none() {
        if a.common.context.is_none() {
            cfg.context = agent::experiment::cluttered_room();
        }
        // Three arms for many minutes: images every 5 s and scalars at 5 Hz keep
        // the recording to about 8 MB per simulated minute.
        cfg.image_every = 150;
        cfg.scalar_every = 6;
    }
    if !(a.minutes.is_finite() && a.minutes > 0.0) {
        anyhow::bail!("--minutes must be positive, got {}", a.minutes);
    }
    cfg.seconds = a.minutes * 60.0;
    if a.common.speed.is_none() {
        cfg.speed = 0.0; // an experiment runs as fast as the machine allows
    }
    let run = agent::experiment::PersistRun {
        config: cfg,
        learn_minutes: a.learn_minutes,
        sink: a.common.sink(&a.rerun_save),
        checkpoint: Some(a.checkpoint.clone()),
    };
    let report = agent::experiment::run(&run, &stop)?;
    print!("{}", report.table());
    let mut missed = 0;
    for (goal, met) in report.goals() {
        println!("goal {}: {goal}", if met { "met   " } else { "MISSED" });
        missed += usize::from(!met);
    }
    let sink = a.common.sink(&a.rerun_save);
    if sink != Sink::Off {
        println!("telemetry: {}", sink.describe());
    }
    println!("persistent arm's network: {}", a.checkpoint.display());
    if a.check_goals && missed > 0 {
        std::process::exit(2);
    }
    Ok(())
}

fn train(a: TrainArgs, stop: Arc<AtomicBool>) -> Result<()> {
    // Settings: --config, else the instance file's own `config`, else the defaults.
    let family = rl::instances::InstanceFile::load(&a.instances)?;
    let mut config = match a.config.as_ref().or(family.config.as_ref()) {
        Some(p) => rl::train::TrainConfig::load(p)?,
        None => rl::train::TrainConfig::default(),
    };
    if let Some(e) = a.eval_every {
        anyhow::ensure!(e > 0, "--eval-every must be at least 1");
        config.eval_every = e;
    }
    anyhow::ensure!(
        a.steps > 0 && a.seeds > 0,
        "--steps and --seeds must be at least 1"
    );
    let curricula = a
        .curriculum
        .iter()
        .map(|c| {
            rl::curriculum::CurriculumKind::parse(c).with_context(|| {
                format!("unknown curriculum `{c}`; use space, round-robin or random")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let sink = match a.rerun {
        RerunMode::Save => Sink::Save(a.rerun_save.clone()),
        RerunMode::Connect => Sink::Connect(a.rerun_url.clone()),
        RerunMode::Spawn => Sink::Spawn,
        RerunMode::Off => Sink::Off,
    };
    let exp = agent::train::Experiment {
        instances: family,
        curricula,
        steps: a.steps,
        seeds: a.seeds,
        seed_base: a.seed_base,
        config,
        out: a.out.clone(),
        jobs,
        resume: a.resume,
        target: a.target,
        sink: sink.clone(),
        device: agent::device::device(a.backend)?,
    };
    let summary = agent::train::run(&exp, &stop)?;
    print!("{}", summary.table());
    println!(
        "per-run metrics and checkpoints under {}; summary in {}",
        a.out.display(),
        a.out.join("summary.txt").display()
    );
    if sink != Sink::Off {
        println!("telemetry: {}", sink.describe());
    }
    if let Some((dir, why)) = summary.failed.first() {
        anyhow::bail!(
            "{} of the runs failed; first: {}: {why}",
            summary.failed.len(),
            dir.display()
        );
    }
    Ok(())
}

fn selfi(c: SelfiCmd, stop: &AtomicBool) -> Result<()> {
    use agent::selfi as s;
    match c {
        SelfiCmd::Record(a) => {
            let cfg = s::load_config(Some(&a.common.config))?;
            s::record(&cfg, &a.out, a.minutes, a.seed, a.force, stop)
        }
        SelfiCmd::Offline(a) => {
            let cfg = s::load_config(Some(&a.common.config))?;
            let device = agent::device::device(a.common.backend)?;
            s::offline(&cfg, &a.logs, &a.out, a.seed, &device).map(|_| ())
        }
        SelfiCmd::Online(a) => {
            let device = agent::device::device(a.run.common.backend)?;
            let bundle = rl::selfi::experiment::OfflineBundle::load(&a.offline, &device)
                .with_context(|| {
                    format!("cannot load the offline phase from {}", a.offline.display())
                })?;
            selfi_online(&a.run, &bundle, &device, stop)
        }
        SelfiCmd::All(a) => {
            let cfg = s::load_config(Some(&a.run.common.config))?;
            let device = agent::device::device(a.run.common.backend)?;
            let logs = a.work.join("logs").join("flights.mcap");
            if logs.exists() {
                eprintln!(
                    "using the existing recording {} (delete it to record anew)",
                    logs.display()
                );
            } else {
                s::record(&cfg, &logs, a.record_minutes, 100, false, stop)?;
            }
            let bundle = s::offline(&cfg, &[logs], &a.work.join("offline"), 0, &device)?;
            selfi_online(&a.run, &bundle, &device, stop)
        }
    }
}

fn selfi_online(
    a: &SelfiRunArgs,
    bundle: &rl::selfi::experiment::OfflineBundle,
    device: &burn::tensor::Device,
    stop: &AtomicBool,
) -> Result<()> {
    use rl::selfi::online::Arm;
    let cfg = agent::selfi::load_config(Some(&a.common.config))?;
    let trained = &bundle.card.config;
    anyhow::ensure!(
        cfg.plan == trained.plan
            && cfg.offline == trained.offline
            && cfg.objective == trained.objective,
        "{}: [plan], [objective] and [offline] differ from those the offline phase was trained with; run `agent selfi offline` again",
        a.common.config.display()
    );
    let arms = a
        .arms
        .iter()
        .map(|n| match n.as_str() {
            "offline" => Ok(Arm::Offline),
            "selfi" => Ok(Arm::Selfi),
            "plain" => Ok(Arm::Plain),
            other => anyhow::bail!("unknown arm `{other}`; use offline, selfi or plain"),
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(
        a.seeds > 0 && a.minutes > 0.0 && a.bin_minutes > 0.0,
        "--seeds, --minutes and --bin-minutes must be positive"
    );
    let sink = match a.rerun {
        RerunMode::Save => Sink::Save(a.rerun_save.clone()),
        RerunMode::Connect => Sink::Connect(a.rerun_url.clone()),
        RerunMode::Spawn => Sink::Spawn,
        RerunMode::Off => Sink::Off,
    };
    let spec = agent::selfi::OnlineSpec {
        arms,
        seeds: (a.seed_base, a.seeds),
        minutes: a.minutes,
        bin_minutes: a.bin_minutes,
        out: a.out.clone(),
        jobs: a.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        sink: sink.clone(),
    };
    let summary = agent::selfi::online(&cfg, bundle, &spec, device, stop)?;
    print!("{}", summary.table);
    println!(
        "per-run bins.csv, steps.csv and actor.bpk under {}",
        a.out.display()
    );
    if sink != Sink::Off {
        println!("telemetry: {}", sink.describe());
    }
    Ok(())
}

fn rl_bench(a: RlBenchArgs) -> Result<()> {
    let device = agent::device::device(Backend::Cpu)?;
    for task in a.task.tasks() {
        let steps = match task {
            rl::validate::Classic::CartPole => a.dqn_steps,
            rl::validate::Classic::Pendulum => a.sac_steps,
        };
        eprintln!(
            "training ours: {} for {steps} steps on one CPU ...",
            task.name()
        );
        let ours = agent::rlbench::time_ours(task, steps, &device)?;
        let (peer, peer_note, peer_blas) = if a.no_peer {
            (None, Some("--no-peer".to_string()), None)
        } else {
            eprintln!(
                "training Stable-Baselines3: {} for {steps} steps on one CPU ...",
                task.name()
            );
            match agent::rlbench::time_peer(&a.python, &a.peer_script, task, steps) {
                Ok(p) => (Some(p.steps_per_second), None, Some(p.blas)),
                Err(e) => (None, Some(e), None),
            }
        };
        let line = agent::rlbench::BenchLine {
            task,
            steps,
            ours: ours.steps_per_second(),
            peer,
            peer_note,
            peer_blas,
        };
        println!("{line}");
    }
    Ok(())
}

fn rl_validate(a: RlValidateArgs) -> Result<()> {
    let device = agent::device::device(Backend::Cpu)?;
    for task in a.task.tasks() {
        let steps = a.steps.unwrap_or(match task {
            rl::validate::Classic::CartPole => 100_000,
            rl::validate::Classic::Pendulum => 20_000,
        });
        let reports = agent::rlbench::validate(task, a.seeds, steps, a.jobs, &device)?;
        let mut solved = 0;
        for r in &reports {
            solved += usize::from(r.solved_at.is_some());
            println!(
                "{} seed {}: {} (mean greedy return {:.1}, {} updates, {:.0} steps/s)",
                task.name(),
                r.seed,
                r.solved_at
                    .map_or(format!("NOT solved in {steps} steps"), |s| format!(
                        "solved at step {s}"
                    )),
                r.mean_return,
                r.updates,
                r.steps_per_second()
            );
        }
        let need = match task {
            rl::validate::Classic::CartPole => reports.len().saturating_sub(1).max(1),
            rl::validate::Classic::Pendulum => reports.len(),
        };
        println!(
            "{}: {solved} of {} seeds solved within {steps} steps  [goal: {need}: {}]",
            task.name(),
            reports.len(),
            if solved >= need { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

/// A frame rate: finite, in (0, 1000] Hz.
fn positive_hz(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && v > 0.0 && v <= 1000.0 {
        Ok(v)
    } else {
        Err(format!("{v} must be a rate in (0, 1000] Hz"))
    }
}
