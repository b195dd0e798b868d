//! `agent`: the onboard learning agent's command line.

mod cli;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use cli::bus::{GoalArgs, InfoArgs, LatencyArgs, RecordArgs, ReplayArgs};
#[cfg(feature = "twin")]
use cli::lab::{BenchArgs, BudgetArgs, FlyArgs, PersistArgs};
#[cfg(feature = "twin")]
use cli::learn::TrainArgs;
use cli::node::NodeArgs;
#[cfg(feature = "twin")]
use cli::rl::{RlBenchArgs, RlValidateArgs};
use cli::secure::{CertsArgs, RouterArgs};
#[cfg(feature = "twin")]
use cli::selfi::SelfiCmd;
use cli::topic::TopicArgs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    #[cfg(feature = "twin")]
    /// Fly a short simulated flight in the twin while the monocular depth network
    /// learns online from stereo (persistent strategy by default); telemetry to an .rrd file.
    Fly(FlyArgs),
    #[cfg(feature = "twin")]
    /// The persistent self-supervised learning experiment: stereo only, persistent
    /// SSL and a naive switch fly the same rooms side by side; prints their figures.
    Persist(PersistArgs),
    #[cfg(feature = "twin")]
    /// Time the mono network: inference latency on 1 thread, training samples/s.
    Bench(BenchArgs),
    /// Run one node of the onboard graph over zenoh until Ctrl-C.
    Node(Box<NodeArgs>),
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
        /// Backend of the mono inference: `auto` checks the GPU where an
        /// adapter opens and says so when it falls back to the CPU.
        #[arg(long, value_enum, default_value = "auto")]
        backend: agent::device::Backend,
    },
    #[cfg(feature = "twin")]
    /// The on-target budget: the whole pipeline in one process at the loop rate;
    /// time per stage, whether the rate is met, peak memory.
    Budget(BudgetArgs),
    /// Record topics of the bus to an MCAP file (until Ctrl-C or --seconds).
    Record(RecordArgs),
    /// Play an MCAP recording back onto the bus, at the recorded rate or as fast as possible.
    Replay(ReplayArgs),
    /// What an MCAP recording holds: channels, types, counts, rates, gaps, duration.
    Info(InfoArgs),
    /// The live graph's topics: list (traffic and nodes up), echo, hz.
    Topic(TopicArgs),
    #[cfg(feature = "twin")]
    /// Reinforcement learning over the twin's contexts with a curriculum (SPaCE,
    /// round-robin, random): several seeds each, held-out evaluation, CSV + rerun
    /// metrics, checkpoints; prints the steps each needs to reach round-robin's final return.
    Train(TrainArgs),
    #[cfg(feature = "twin")]
    /// Run an experiment's runs as separate tasks — a Slurm job array, or
    /// processes here — and compare them from their folders (`agent train`, `agent persist`).
    #[command(subcommand)]
    Sweep(cli::sweep::SweepCmd),
    #[cfg(feature = "twin")]
    /// Train our DQN (CartPole) and SAC (Pendulum) on one CPU for a fixed number of
    /// steps next to Stable-Baselines3 with the same settings; prints steps/s and the ratio.
    RlBench(RlBenchArgs),
    #[cfg(feature = "twin")]
    /// Train DQN on CartPole or SAC on Pendulum over several seeds until solved
    /// (CartPole: mean greedy return >= 475 over 100 episodes; Pendulum: >= -200).
    RlValidate(RlValidateArgs),
    #[cfg(feature = "twin")]
    /// Learn to fly in seconds: train a motor-level hover policy (TD3, small
    /// hand-fused networks, randomised vehicles) until it holds hover and
    /// recovers from a 1 rad tilt on held-out vehicles; write it as the
    /// firmware's weight table; over several seeds, the median wall time.
    LearnToFly(cli::learn_to_fly::LearnToFlyArgs),
    #[cfg(feature = "twin")]
    /// SELFI: record flights, pre-train against the model-based objective J
    /// offline, fine-tune online with Q = J + Q̄; `all` runs the whole experiment.
    #[command(subcommand)]
    Selfi(SelfiCmd),
    /// Latency from a stereo pair published to the setpoint received back,
    /// through the stereo and policy nodes over zenoh.
    Latency(LatencyArgs),
    /// A secured graph's secrets: a CA, certificates for the router, every node
    /// role and the ground stations, and a password per role (mode 600).
    Certs(CertsArgs),
    /// Arm the vehicle: wait until the preflight checks pass (nodes alive,
    /// depth scans with enough known columns, state, the flight controller's
    /// link up and disarmed without faults, setpoints streaming), then ask the
    /// flight-controller node to arm and wait for its answer.
    Arm(cli::arm::ArmArgs),
    /// Disarm the vehicle on the ground (refused in the air); also acknowledges
    /// the flight controller's latched faults so that it may arm again.
    Disarm(cli::arm::DisarmArgs),
    /// Emergency stop: motors off now, in the air too (the vehicle falls).
    /// Our firmware latches it until a disarm on the ground; PX4/ArduPilot
    /// get a forced disarm (they may arm again).
    Estop(cli::arm::DisarmArgs),
    /// Send the robot a goal on `nav/goal` (X,Y,Z in metres): the ground
    /// station's command, over TLS on a secured graph.
    Goal(GoalArgs),
    /// A secured graph's router: the one door into the robot's graph. Nodes join
    /// it with --auth (or TLS certificates); it checks who they are and lets each
    /// publish only its own topics; ground stations come over mutual TLS.
    Router(RouterArgs),
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
        #[cfg(feature = "twin")]
        Cmd::Fly(a) => cli::lab::fly(a, stop),
        #[cfg(feature = "twin")]
        Cmd::Persist(a) => cli::lab::persist(a, stop),
        Cmd::Node(a) => cli::node::run(*a, stop),
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
            // A required process that failed fails the launch, so that a
            // supervisor (systemd's Restart=on-failure) starts it again.
            match s.required_failed {
                Some(name) if !s.interrupted => {
                    anyhow::bail!("required process `{name}` failed; the graph stopped")
                }
                _ => Ok(()),
            }
        }
        Cmd::Selftest { rig, backend } => {
            let cfg = agent::pipeline::LoopConfig {
                backend,
                ..Default::default()
            };
            let r = agent::selftest::run(&cfg, rig.as_deref())?;
            println!("{r}");
            Ok(())
        }
        #[cfg(feature = "twin")]
        Cmd::Train(a) => cli::learn::train(a, stop),
        #[cfg(feature = "twin")]
        Cmd::Sweep(c) => cli::sweep::sweep(c, stop),
        #[cfg(feature = "twin")]
        Cmd::Selfi(c) => cli::selfi::selfi(c, &stop),
        #[cfg(feature = "twin")]
        Cmd::RlBench(a) => cli::rl::rl_bench(a, &stop),
        #[cfg(feature = "twin")]
        Cmd::RlValidate(a) => cli::rl::rl_validate(a, &stop),
        #[cfg(feature = "twin")]
        Cmd::LearnToFly(a) => cli::learn_to_fly::learn_to_fly(a, stop),
        #[cfg(feature = "twin")]
        Cmd::Budget(a) => cli::lab::budget(a, stop),
        Cmd::Record(a) => cli::bus::record(a, stop),
        Cmd::Replay(a) => cli::bus::replay(a, stop),
        Cmd::Info(a) => cli::bus::info(a),
        Cmd::Topic(a) => cli::topic::topic(a, stop),
        Cmd::Latency(a) => cli::bus::latency(a),
        Cmd::Certs(a) => cli::secure::certs(a),
        Cmd::Goal(a) => cli::bus::goal(a, stop),
        Cmd::Arm(a) => cli::arm::arm(a, stop),
        Cmd::Disarm(a) => cli::arm::disarm(a, stop),
        Cmd::Estop(a) => cli::arm::estop(a, stop),
        Cmd::Router(a) => cli::secure::router(a, stop),
        #[cfg(feature = "twin")]
        Cmd::Bench(a) => cli::lab::bench(a),
    }
}
