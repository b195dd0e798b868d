//! The twin's flight experiments and benchmarks: `agent fly`, `persist`,
//! `bench`, `budget`.

use super::{RerunMode, above, count, within};
use agent::device::Backend;
use agent::fly::{FlyConfig, FlyOutputs};
use agent::persist::Strategy;
use agent::telemetry::Sink;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args)]
pub(crate) struct Common {
    /// Settings file (TOML; see launch/fly.toml). Flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the first episode.
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated seconds per wall second (0 = as fast as possible).
    #[arg(long, value_parser = within(0.0, 1e6, "x real time"))]
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
pub(crate) struct FlyArgs {
    #[command(flatten)]
    common: Common,
    /// Simulated seconds to fly.
    #[arg(long, value_parser = above(0.0, crate::cli::MAX_SECONDS, "s"))]
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
pub(crate) struct PersistArgs {
    #[command(flatten)]
    common: Common,
    /// Simulated minutes each arm flies (in the cluttered room unless --config or
    /// --context says otherwise).
    #[arg(long, default_value_t = 15.0, value_parser = above(0.0, 525_600.0, "min"))]
    minutes: f64,
    /// Also report the figures after this many minutes of learning.
    #[arg(long, default_value_t = 10.0, value_parser = within(0.0, 525_600.0, "min"))]
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
    /// Seeds each arm flies, the first from --seed (1 by default): every figure is a
    /// mean over them with a 95 % bootstrap interval.
    #[arg(long, default_value_t = 5, value_parser = count(1, 1000))]
    seeds: usize,
    /// Flights at once (default: one per core).
    #[arg(long, value_parser = count(1, 256))]
    jobs: Option<usize>,
    /// Each flight's figures: <arm>/seed<k>/flight.toml (what the comparison is built from).
    #[arg(long, default_value = "out/persist")]
    out: PathBuf,
    /// Fly only this flight (seed by seed, the four arms within: task = seed index x 4
    /// + arm index) and keep its figures: one task of a sweep (`agent sweep`). No telemetry.
    #[arg(long, conflicts_with = "collect")]
    task: Option<usize>,
    /// Fly nothing: compare the flights whose figures are in --out (after a sweep).
    #[arg(long)]
    collect: bool,
}

impl PersistArgs {
    /// How many flights (sweep tasks) the experiment has.
    pub(crate) fn flights(&self) -> usize {
        self.seeds * agent::experiment::ARMS.len()
    }

    /// Where the flights' figures go.
    pub(crate) fn out(&self) -> &std::path::Path {
        &self.out
    }

    /// Whether `--task` or `--collect` was given.
    pub(crate) fn task_or_collect(&self) -> bool {
        self.task.is_some() || self.collect
    }
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Settings file (network shape and learner batch are read from it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds to measure each figure.
    #[arg(long, default_value_t = 5.0, value_parser = above(0.0, crate::cli::MAX_SECONDS, "s"))]
    seconds: f64,
    /// Threads for the training figure.
    #[arg(long, default_value_t = 2, value_parser = count(1, 256))]
    train_threads: usize,
    /// The mono network to time (default: the settings file's); `unet` without
    /// `--mono-size` is timed at 160x120.
    #[arg(long, value_enum)]
    mono_arch: Option<MonoArchArg>,
    /// Input size of the mono network (WIDTHxHEIGHT; default: the settings file's).
    #[arg(long, value_parser = mono_size)]
    mono_size: Option<(usize, usize)>,
    /// Backends to time, comma-separated (default: every backend compiled into
    /// this binary: cpu, and gpu with the `gpu` feature); printed side by side.
    #[arg(long, value_enum, value_delimiter = ',')]
    backend: Vec<Backend>,
    /// Pairs to time the camera stage on (0: skip it).
    #[cfg(feature = "camera")]
    #[arg(long, default_value_t = 300, value_parser = count(0, 10_000_000))]
    camera_pairs: usize,
    /// Eye size the camera stage is timed at (WIDTHxHEIGHT).
    #[cfg(feature = "camera")]
    #[arg(long, default_value = "640x480", value_parser = eye_size)]
    camera_size: (usize, usize),
}

/// `--mono-arch`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum MonoArchArg {
    /// The patch encoder (the default network, for the CPU).
    Patch,
    /// The encoder-decoder (for a GPU).
    Unet,
}

/// `WIDTHxHEIGHT` to (width, height), each side within `lo..=hi` pixels.
fn wxh(s: &str, lo: usize, hi: usize) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?}: give the size as WIDTHxHEIGHT"))?;
    let p = |v: &str| {
        v.parse::<usize>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("{s:?}: each side must be {lo}..{hi} px"))
    };
    Ok((p(w)?, p(h)?))
}

/// `160x120` to (160, 120): the mono network's input.
fn mono_size(s: &str) -> Result<(usize, usize), String> {
    wxh(s, 8, 4096)
}

/// `640x480` to (640, 480): a camera eye.
#[cfg(feature = "camera")]
fn eye_size(s: &str) -> Result<(usize, usize), String> {
    wxh(s, 16, 8192)
}

#[derive(clap::Args)]
pub(crate) struct BudgetArgs {
    /// Camera width (px).
    #[arg(long, default_value_t = 320, value_parser = count(16, 4096))]
    width: usize,
    /// Camera height (px).
    #[arg(long, default_value_t = 240, value_parser = count(16, 4096))]
    height: usize,
    /// Frames to run.
    #[arg(long, default_value_t = 300, value_parser = count(1, 100_000_000))]
    frames: usize,
    /// The loop rate to hold (Hz).
    #[arg(long, default_value_t = 20.0, value_parser = super::positive_hz)]
    rate: f64,
    /// Telemetry file (.rrd).
    #[arg(long, default_value = "out/budget.rrd")]
    rerun_save: PathBuf,
    /// Settings file (see launch/fly.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub(crate) fn fly(a: FlyArgs, stop: Arc<AtomicBool>) -> Result<()> {
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

/// The experiment `a` describes.
pub(crate) fn persist_run(a: &PersistArgs) -> Result<agent::experiment::PersistRun> {
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
    let first = cfg.seed;
    let run = agent::experiment::PersistRun {
        config: cfg,
        seeds: (0..a.seeds as u64)
            .map(|k| first.saturating_add(k))
            .collect(),
        jobs: a.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        }),
        learn_minutes: a.learn_minutes,
        sink: if a.task_or_collect() {
            Sink::Off
        } else {
            a.common.sink(&a.rerun_save)
        },
        checkpoint: Some(a.checkpoint.clone()),
        out: a.out.clone(),
    };
    Ok(run)
}

pub(crate) fn persist(a: PersistArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let run = persist_run(&a)?;
    if let Some(task) = a.task {
        let state = agent::experiment::run_task(&run, task, &stop)?;
        println!("task {task}: {state}; figures in {}", a.out.display());
        return Ok(());
    }
    let report = if a.collect {
        agent::experiment::collect(&run)?
    } else {
        agent::experiment::run(&run, &stop)?
    };
    print!("{}", report.table());
    let mut missed = 0;
    for (goal, met) in report.goals() {
        println!("goal {}: {goal}", if met { "met   " } else { "MISSED" });
        missed += usize::from(!met);
    }
    let sink = a.common.sink(&a.rerun_save);
    if sink != Sink::Off && !a.collect {
        println!("telemetry: {}", sink.describe());
    }
    if !a.collect {
        println!("persistent arm's network: {}", a.checkpoint.display());
    }
    super::learn::report_incomplete(
        &report.missing,
        &a.out,
        "agent persist ... --task N",
        stop.load(Ordering::Relaxed),
    )?;
    if a.check_goals && missed > 0 {
        std::process::exit(2);
    }
    Ok(())
}

/// `agent budget`.
pub(crate) fn budget(a: BudgetArgs, stop: Arc<AtomicBool>) -> Result<()> {
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

/// One backend's figures in `agent bench`.
struct BackendColumn {
    mono: agent::bench::BenchReport,
    nets: rl::validate::NetTimes,
}

/// The figures of every backend timed, one column each, with the adapters' names.
fn side_by_side(columns: &[BackendColumn]) -> String {
    let ms = |v: f64| format!("{v:.3} ms");
    type Row = (&'static str, fn(&BackendColumn) -> f64, bool);
    let rows: [Row; 10] = [
        (
            "mono inference, batch 1 (median)",
            |c| c.mono.infer_median_ms,
            true,
        ),
        (
            "mono inference, batch 1 (p99)",
            |c| c.mono.infer_p99_ms,
            true,
        ),
        (
            "mono training (samples/s)",
            |c| c.mono.train_samples_per_s,
            false,
        ),
        (
            "mono training step (median)",
            |c| c.mono.train_step_ms,
            true,
        ),
        ("DQN act, batch 1", |c| c.nets.dqn_act_ms, true),
        ("DQN training step, batch 64", |c| c.nets.dqn_step_ms, true),
        ("SAC act, batch 1", |c| c.nets.sac_act_ms, true),
        ("SAC training step, batch 256", |c| c.nets.sac_step_ms, true),
        ("PPO act, batch 1", |c| c.nets.ppo_act_ms, true),
        ("PPO update (one rollout)", |c| c.nets.ppo_update_ms, true),
    ];
    let width = 34;
    let col = 14;
    let mut out = format!("{:width$}", "networks by backend");
    for c in columns {
        out += &format!(" | {:col$}", format!("{:?}", c.mono.backend).to_lowercase());
    }
    out = out.trim_end().to_string() + "\n";
    for (name, get, is_ms) in rows {
        let mut line = format!("{name:width$}");
        for c in columns {
            let v = get(c);
            let cell = if is_ms {
                ms(v)
            } else if v < 10.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.0}")
            };
            line += &format!(" | {cell:col$}");
        }
        out += line.trim_end();
        out += "\n";
    }
    for c in columns {
        out += &format!(
            "{:?}: {} (mono {:?} {}x{}, batch {}, {} training threads)\n",
            c.mono.backend,
            c.mono.adapter,
            c.mono.arch,
            c.mono.input.0,
            c.mono.input.1,
            c.mono.batch,
            c.mono.train_threads
        );
    }
    out
}

/// `agent bench`.
pub(crate) fn bench(a: BenchArgs) -> Result<()> {
    let mut cfg = match &a.config {
        Some(p) => FlyConfig::load(p)?,
        None => FlyConfig::default(),
    }
    .loop_config();
    match a.mono_arch {
        Some(MonoArchArg::Unet) => {
            cfg.mono.arch = agent::mono::MonoArch::Unet;
            (cfg.mono.width, cfg.mono.height) = a.mono_size.unwrap_or((160, 120));
        }
        Some(MonoArchArg::Patch) => cfg.mono.arch = agent::mono::MonoArch::Patch,
        None => {}
    }
    if let Some((w, h)) = a.mono_size {
        (cfg.mono.width, cfg.mono.height) = (w, h);
    }
    let backends = if a.backend.is_empty() {
        agent::device::compiled_backends()
    } else {
        a.backend.clone()
    };
    #[cfg(feature = "camera")]
    if a.camera_pairs > 0 {
        let (w, h) = a.camera_size;
        for c in agent::camera_bench::run(w, h, a.camera_pairs)? {
            println!("{c}");
        }
        println!();
    }
    let mut failed = 0;
    let mut columns = Vec::new();
    for b in backends {
        let mut cfg = cfg.clone();
        cfg.backend = b;
        // A GPU runtime can still panic inside burn on first use (a driver that
        // opens but cannot run a kernel); report it and go on with the others.
        let r = std::panic::catch_unwind(|| -> Result<BackendColumn> {
            let mono = agent::bench::run(&cfg, a.seconds, a.train_threads)?;
            let nets = rl::validate::time_networks(
                &agent::device::device(b)?,
                (a.seconds / 4.0).max(0.5),
            )?;
            Ok(BackendColumn { mono, nets })
        });
        match r {
            Ok(Ok(c)) => {
                println!(
                    "{}\nRL networks ({:?}, twin sizes): DQN act {:.3} ms, DQN training step (batch 64) {:.2} ms; SAC act {:.3} ms, SAC training step (batch 256) {:.2} ms; PPO act {:.3} ms, PPO update ({} steps) {:.1} ms\n",
                    c.mono,
                    c.mono.backend,
                    c.nets.dqn_act_ms,
                    c.nets.dqn_step_ms,
                    c.nets.sac_act_ms,
                    c.nets.sac_step_ms,
                    c.nets.ppo_act_ms,
                    c.nets.ppo_rollout,
                    c.nets.ppo_update_ms
                );
                columns.push(c);
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("backend {b:?}: {e:#}\n");
            }
            Err(_) => {
                failed += 1;
                println!("backend {b:?}: failed at run time (is its driver/runtime installed?)\n");
            }
        }
    }
    if !columns.is_empty() {
        print!("{}", side_by_side(&columns));
    }
    anyhow::ensure!(failed == 0, "{failed} backend(s) could not be timed");
    Ok(())
}
