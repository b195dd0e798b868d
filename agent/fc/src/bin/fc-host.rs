//! `fc-host`: the flight-controller firmware built for this machine, serving
//! its link on a pseudo-terminal — for flying the agent's robot graph with no
//! board attached, and for tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use fclink::{Config, Vehicle};

#[derive(Clone, Copy, ValueEnum)]
enum VehicleArg {
    Multirotor,
    Ground,
}

/// Runs the flight-controller firmware's logic on a pseudo-terminal.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Make the device reachable at this path (a symlink to the pty).
    #[arg(long, default_value = "/tmp/fc-host.tty")]
    link: PathBuf,
    /// Vehicle type (decides the failsafe: hover-then-land or stop).
    #[arg(long, value_enum, default_value = "multirotor")]
    vehicle: VehicleArg,
    /// Setpoint watchdog (ms): no setpoint for this long while armed → failsafe.
    #[arg(long, default_value_t = Config::MULTIROTOR.watchdog_ms)]
    watchdog_ms: u32,
    /// Multirotor failsafe: hover this long before landing (ms).
    #[arg(long, default_value_t = Config::MULTIROTOR.hover_ms)]
    hover_ms: u32,
    /// Fly the learned position controller: this weight table (`agent
    /// learn-to-fly` writes them; firmware/policies/ ships one) on the
    /// rigid-body quadrotor model, instead of the kinematic stand-in.
    #[arg(long)]
    policy: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = Config {
        vehicle: match args.vehicle {
            VehicleArg::Multirotor => Vehicle::Multirotor,
            VehicleArg::Ground => Vehicle::Ground,
        },
        watchdog_ms: args.watchdog_ms,
        hover_ms: args.hover_ms,
        ..Config::MULTIROTOR
    };
    let (stop_tx, stop_rx) = crossbeam::channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    let fc = match &args.policy {
        None => fc::HostFc::start(cfg, Some(&args.link)),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the policy {}", path.display()))?;
            let mut sizes = [0usize; fclink::policy::MAX_LAYERS];
            let mut params = vec![0.0f32; text.lines().count()];
            let (layers, n) =
                fclink::policy::parse_table(&text, &mut sizes, &mut params).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: not a weight table the firmware flies ({e:?})",
                        path.display()
                    )
                })?;
            params.truncate(n);
            // The firmware holds the policy for the life of the process.
            let sizes: &'static [usize] = Vec::leak(sizes[..layers].to_vec());
            let params: &'static [f32] = Vec::leak(params);
            let policy = fclink::policy::Policy::new(sizes, params)
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
            fc::HostFc::start_learned(
                cfg,
                Some(&args.link),
                policy,
                fclink::quad::QuadParams::CRAZYFLIE,
            )
        }
    }
    .with_context(|| format!("cannot serve the link at {}", args.link.display()))?;
    println!("fc-host: serial device {}", fc.device().display());
    let mut last = fc.state();
    loop {
        if stop_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            break;
        }
        let s = fc.state();
        if s != last {
            println!("fc-host: {last:?} -> {s:?}");
            last = s;
        }
    }
    fc.stop();
    println!("fc-host: stopped");
    Ok(())
}
