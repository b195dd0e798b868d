//! `agent`: the onboard learning agent's command line.

use agent::device::Backend;
use agent::fly::{FlyConfig, FlyOutputs};
use agent::telemetry::Sink;
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
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
    /// Fly a short simulated flight in the twin while the monocular depth network
    /// learns online from stereo; telemetry to an .rrd file.
    Fly(FlyArgs),
}

#[derive(clap::Args)]
struct FlyArgs {
    /// Settings file (TOML; see launch/fly.toml). Flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Simulated seconds to fly.
    #[arg(long)]
    seconds: Option<f64>,
    /// Seed of the first episode.
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated seconds per wall second (0 = as fast as possible).
    #[arg(long)]
    speed: Option<f64>,
    /// Twin context file (TOML) to fly in.
    #[arg(long)]
    context: Option<PathBuf>,
    /// Network backend.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Write telemetry to this .rrd file.
    #[arg(long, default_value = "out/fly.rrd")]
    rerun_save: PathBuf,
    /// Record no telemetry.
    #[arg(long)]
    no_rerun: bool,
    /// Save the trained mono network here (burnpack).
    #[arg(long, default_value = "out/mono.bpk")]
    checkpoint: PathBuf,
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
        Cmd::Fly(a) => {
            let mut cfg = match &a.config {
                Some(p) => FlyConfig::load(p)?,
                None => FlyConfig::default(),
            };
            if let Some(s) = a.seconds {
                cfg.seconds = s;
            }
            if let Some(s) = a.seed {
                cfg.seed = s;
            }
            if let Some(v) = a.speed {
                cfg.speed = v;
            }
            if let Some(b) = a.backend {
                cfg.backend = b;
            }
            if let Some(p) = &a.context {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read context {}", p.display()))?;
                cfg.context = sim::Context::from_toml_str(&text)
                    .with_context(|| format!("in context {}", p.display()))?;
            }
            let out = FlyOutputs {
                sink: if a.no_rerun {
                    Sink::Off
                } else {
                    Sink::Save(a.rerun_save.clone())
                },
                checkpoint: Some(a.checkpoint.clone()),
            };
            let s = agent::fly::run(&cfg, &out, stop)?;
            println!(
                "flew {:.1} s simulated in {:.1} s wall: {:.1} m, {} collisions, {} rooms crossed",
                s.sim_seconds, s.wall_seconds, s.distance, s.collisions, s.successes
            );
            println!(
                "mono depth learned online: {} training steps (loss {:.3}), {} weight updates; error |log mono - log stereo| {:.3} (first quarter) -> {:.3} (last quarter)",
                s.learner_steps,
                s.learner_loss,
                s.weight_updates,
                s.mono_error_first,
                s.mono_error_last
            );
            if s.dropped_samples > 0 {
                println!(
                    "learner was behind: {} samples not trained on",
                    s.dropped_samples
                );
            }
            if !a.no_rerun {
                println!(
                    "telemetry: {} (view with `rerun {}`)",
                    a.rerun_save.display(),
                    a.rerun_save.display()
                );
            }
            println!("checkpoint: {}", a.checkpoint.display());
            if s.interrupted {
                println!("(stopped early by Ctrl-C)");
            }
            Ok(())
        }
    }
}
