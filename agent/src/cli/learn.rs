//! Reinforcement learning: `agent train`, `rl-bench`, `rl-validate`, `selfi`.

use super::{RerunMode, above, count, within};
use agent::device::Backend;
use agent::telemetry::Sink;
use anyhow::{Context as _, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Subcommand)]
pub(crate) enum SelfiCmd {
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
pub(crate) struct SelfiCommon {
    /// Settings (TOML: [plan], [objective], [offline], [online], [reward], [nav]).
    #[arg(long, default_value = "agent/rl/config/selfi.toml")]
    config: PathBuf,
    /// Compute backend of the networks.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

#[derive(clap::Args)]
pub(crate) struct SelfiRecordArgs {
    #[command(flatten)]
    common: SelfiCommon,
    /// Simulated minutes to fly.
    #[arg(long, default_value_t = 20.0, value_parser = above(0.0, 525_600.0, "min"))]
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
pub(crate) struct SelfiOfflineArgs {
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
pub(crate) struct SelfiOnlineArgs {
    /// The offline phase's folder (its offline.toml holds the config used; the
    /// online settings come from --config).
    #[arg(long, default_value = "out/selfi/offline")]
    pub(crate) offline: PathBuf,
    #[command(flatten)]
    pub(crate) run: SelfiRunArgs,
}

#[derive(clap::Args)]
pub(crate) struct SelfiRunArgs {
    #[command(flatten)]
    common: SelfiCommon,
    /// Arms, comma-separated: offline, selfi, plain.
    #[arg(long, value_delimiter = ',', default_value = "offline,selfi,plain")]
    arms: Vec<String>,
    /// Seeds per arm.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    seed_base: u64,
    /// Simulated minutes of online flight per run.
    #[arg(long, default_value_t = 30.0, value_parser = above(0.0, 525_600.0, "min"))]
    minutes: f64,
    /// Bin width of the figures (simulated minutes).
    #[arg(long, default_value_t = 5.0, value_parser = above(0.0, 525_600.0, "min"))]
    bin_minutes: f64,
    /// Output folder: <arm>/seed<k>/{bins.csv, steps.csv, actor.bpk}, summary.txt, config.toml.
    #[arg(long, default_value = "out/selfi/online")]
    out: PathBuf,
    /// Runs at once (default: the CPU count).
    #[arg(long, value_parser = count(1, 256))]
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
    /// `selfi online`: run only run N of the experiment (arms in order, seeds
    /// within), kept in its folder: one task of a sweep (`agent sweep`).
    #[arg(long, conflicts_with = "collect")]
    task: Option<usize>,
    /// `selfi online`: run nothing; compare the runs whose figures are in --out
    /// (after a sweep).
    #[arg(long)]
    collect: bool,
}

impl SelfiRunArgs {
    /// The arms, in order, each once.
    pub(crate) fn arm_list(&self) -> Result<Vec<rl::selfi::online::Arm>> {
        use rl::selfi::online::Arm;
        let mut arms = Vec::new();
        for n in &self.arms {
            let arm = match n.as_str() {
                "offline" => Arm::Offline,
                "selfi" => Arm::Selfi,
                "plain" => Arm::Plain,
                other => anyhow::bail!("unknown arm `{other}`; use offline, selfi or plain"),
            };
            anyhow::ensure!(!arms.contains(&arm), "--arms names `{n}` twice");
            arms.push(arm);
        }
        Ok(arms)
    }

    /// How many runs (sweep tasks) the experiment has.
    pub(crate) fn runs(&self) -> usize {
        self.arms.len() * self.seeds as usize
    }

    /// Where the runs' figures go.
    pub(crate) fn out(&self) -> &std::path::Path {
        &self.out
    }

    /// Whether `--task` or `--collect` was given.
    pub(crate) fn task_or_collect(&self) -> bool {
        self.task.is_some() || self.collect
    }
}

#[derive(clap::Args)]
pub(crate) struct SelfiAllArgs {
    /// Simulated minutes of recorded flight for the offline phase.
    #[arg(long, default_value_t = 20.0, value_parser = above(0.0, 525_600.0, "min"))]
    record_minutes: f64,
    /// Folder for the recording and the offline bundle (logs/, offline/).
    #[arg(long, default_value = "out/selfi")]
    work: PathBuf,
    #[command(flatten)]
    run: SelfiRunArgs,
}

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    /// Instance file: task, training and held-out test instances (see agent/rl/instances/).
    #[arg(long, default_value = "agent/rl/instances/twin_avoid.toml")]
    instances: PathBuf,
    /// Curricula to compare, comma-separated: space, round-robin, random.
    #[arg(long, value_delimiter = ',', default_value = "space,round-robin")]
    curriculum: Vec<String>,
    /// Environment steps per run (evaluation steps are not counted).
    #[arg(long, default_value_t = 150_000, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Seeds per curriculum (single evaluations swing by ±2 on the plateau;
    /// ten seeds make the mean curve steadier).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    seed_base: u64,
    /// Training settings (TOML: learner, [dqn], [sac], [ppo], [space], eval_every, ...); default:
    /// the instance file's `config`, else built-in defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Evaluate the held-out instances every this many steps (overrides the config).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    eval_every: Option<u64>,
    /// Output folder: <curriculum>/seed<k>/{metrics.csv, checkpoint/, policy.bpk}, summary.{csv,txt}.
    #[arg(long, default_value = "out/train")]
    out: PathBuf,
    /// Runs trained at once (default: the CPU count).
    #[arg(long, value_parser = count(1, 256))]
    jobs: Option<usize>,
    /// Continue each run from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Target test return for "steps to target" (default: round-robin's final return).
    #[arg(long, value_parser = within(-1e12, 1e12, ""))]
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
    /// Run only this run of the experiment (curriculum by curriculum, seed by seed:
    /// task = curriculum index x seeds + seed index), resuming it from its checkpoint
    /// when it has one: one task of a sweep (a Slurm array index, see `agent sweep`).
    /// Writes the run's folder only; no summary, no rerun file.
    #[arg(long, conflicts_with = "collect")]
    task: Option<usize>,
    /// Train nothing: build the comparison (table, summary.{csv,txt}, rerun file)
    /// from the runs' folders, e.g. after a sweep's tasks ran.
    #[arg(long)]
    collect: bool,
}

impl TrainArgs {
    /// How many runs (sweep tasks) the experiment has.
    pub(crate) fn runs(&self) -> usize {
        self.curriculum.len() * self.seeds as usize
    }

    /// The output folder.
    pub(crate) fn out(&self) -> &std::path::Path {
        &self.out
    }

    /// Whether `--task` or `--collect` was given.
    pub(crate) fn task_or_collect(&self) -> bool {
        self.task.is_some() || self.collect
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ClassicTask {
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
pub(crate) struct RlBenchArgs {
    /// Which learner/task.
    #[arg(long, value_enum, default_value = "all")]
    task: ClassicTask,
    /// Steps of DQN on CartPole.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    dqn_steps: u64,
    /// Steps of SAC on Pendulum.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
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
    /// Also train with this many actor processes feeding one learner process
    /// through a router on this machine (`agent node actor`, `agent node
    /// rl-learner`), for each count given (e.g. 1,2,4): environment steps/s
    /// and the learner's updates/s beside the single process's.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=64))]
    actors: Vec<u32>,
    /// Where the actor runs' processes keep their folders and logs.
    #[arg(long, default_value = "out/rl-bench")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct RlValidateArgs {
    /// Which learner/task.
    #[arg(long, value_enum, default_value = "cartpole")]
    task: ClassicTask,
    /// Seeds (0, 1, ...).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    seeds: u64,
    /// Step budget per seed (default: 100000 for CartPole, 20000 for Pendulum).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steps: Option<u64>,
    /// Seeds trained at once.
    #[arg(long, default_value_t = 2, value_parser = count(1, 256))]
    jobs: usize,
    /// Train each seed with this many actor processes feeding one learner
    /// process through a router on this machine (`agent node actor`, `agent
    /// node rl-learner`) instead of in one process; seeds run one after another.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    actors: Option<u32>,
    /// With --actors: where the runs' processes keep their folders and logs.
    #[arg(long, default_value = "out/rl-validate")]
    out: PathBuf,
}

/// The experiment `a` describes; its networks on `--backend` when it trains
/// (`trains`), else on the CPU (a comparison reads files only: a sweep
/// trained on GPUs is collected on a login node without one).
pub(crate) fn experiment(a: &TrainArgs, trains: bool) -> Result<agent::train::Experiment> {
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
    // A sweep's task writes its run's folder only; the comparison (and its
    // rerun file) comes from `--collect`.
    let sink = match a.rerun {
        _ if a.task.is_some() => Sink::Off,
        RerunMode::Save => Sink::Save(a.rerun_save.clone()),
        RerunMode::Connect => Sink::Connect(a.rerun_url.clone()),
        RerunMode::Spawn => Sink::Spawn,
        RerunMode::Off => Sink::Off,
    };
    Ok(agent::train::Experiment {
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
        sink,
        device: agent::device::device(if trains { a.backend } else { Backend::Cpu })?,
    })
}

pub(crate) fn train(a: TrainArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let exp = experiment(&a, !a.collect)?;
    if let Some(task) = a.task {
        std::fs::create_dir_all(&exp.out)
            .with_context(|| format!("cannot create {}", exp.out.display()))?;
        let state = agent::train::run_task(&exp, task, &stop)?;
        println!("task {task}: {state:?}");
        return Ok(());
    }
    let summary = if a.collect {
        let tel = agent::telemetry::Telemetry::open(&exp.sink, "agent-train")?;
        agent::train::collect(&exp, Some(&tel))?
    } else {
        agent::train::run(&exp, &stop)?
    };
    print!("{}", summary.table());
    println!(
        "per-run metrics and checkpoints under {}; summary in {}",
        a.out.display(),
        a.out.join("summary.txt").display()
    );
    if exp.sink != Sink::Off {
        println!("telemetry: {}", exp.sink.describe());
    }
    report_incomplete(
        &summary.incomplete,
        &a.out,
        "agent train ... --task N",
        stop.load(Ordering::Relaxed),
    )
}

/// Name the runs left out of the comparison and how to finish them; an error
/// when one failed, or (after a sweep, not a Ctrl-C) one is missing.
pub(crate) fn report_incomplete(
    incomplete: &[agent::train::Incomplete],
    out: &std::path::Path,
    task_command: &str,
    interrupted: bool,
) -> Result<()> {
    if incomplete.is_empty() {
        return Ok(());
    }
    println!(
        "{} run(s) left out of the comparison (run the task again to finish it: `{task_command}`, or `agent sweep collect {}` for a sweep's own commands):",
        incomplete.len(),
        out.display()
    );
    for r in incomplete {
        println!("  task {}: {}: {}", r.task, r.dir.display(), r.why);
    }
    let failed: Vec<_> = incomplete.iter().filter(|r| r.failed).collect();
    if let Some(first) = failed.first() {
        anyhow::bail!(
            "{} of the runs failed; first: task {}: {}",
            failed.len(),
            first.task,
            first.why
        );
    }
    if !interrupted {
        anyhow::bail!("{} of the runs did not finish", incomplete.len());
    }
    Ok(())
}

pub(crate) fn selfi(c: SelfiCmd, stop: &AtomicBool) -> Result<()> {
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
        SelfiCmd::Online(a) if a.run.collect => {
            let (cfg, spec) = online_experiment(&a)?;
            let (summary, missing) = s::collect_online(&cfg, &spec)?;
            print!("{}", summary.table);
            report_incomplete(
                &missing,
                &a.run.out,
                "agent selfi online ... --task N",
                false,
            )
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
            anyhow::ensure!(
                !a.run.task_or_collect(),
                "--task and --collect are `agent selfi online`'s (a sweep runs the online phase after `agent selfi offline`)"
            );
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

pub(crate) fn selfi_online(
    a: &SelfiRunArgs,
    bundle: &rl::selfi::experiment::OfflineBundle,
    device: &burn::tensor::Device,
    stop: &AtomicBool,
) -> Result<()> {
    let cfg = agent::selfi::load_config(Some(&a.common.config))?;
    let trained = &bundle.card.config;
    anyhow::ensure!(
        cfg.plan == trained.plan
            && cfg.offline == trained.offline
            && cfg.objective == trained.objective,
        "{}: [plan], [objective] and [offline] differ from those the offline phase was trained with; run `agent selfi offline` again",
        a.common.config.display()
    );
    let spec = online_spec(a, offline_card(&bundle.card)?)?;
    if let Some(task) = a.task {
        let state = agent::selfi::online_task(&cfg, bundle, &spec, task, device, stop)?;
        println!("task {task}: {state}; figures in {}", a.out.display());
        return Ok(());
    }
    let (summary, missing) = agent::selfi::online(&cfg, bundle, &spec, device, stop)?;
    print!("{}", summary.table);
    println!(
        "per-run bins.csv, steps.csv, actor.bpk and run.toml under {}",
        a.out.display()
    );
    if spec.sink != Sink::Off {
        println!("telemetry: {}", spec.sink.describe());
    }
    report_incomplete(
        &missing,
        &a.out,
        "agent selfi online ... --task N",
        stop.load(Ordering::Relaxed),
    )
}

/// The online experiment `a` describes, for a comparison of its runs'
/// folders: its settings and runs (the offline phase's card read from
/// `--offline`, its networks not loaded).
pub(crate) fn online_experiment(
    a: &SelfiOnlineArgs,
) -> Result<(rl::selfi::SelfiConfig, agent::selfi::OnlineSpec)> {
    let path = a.offline.join("offline.toml");
    let card: rl::selfi::experiment::OfflineCard = toml::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{}", path.display()))?;
    Ok((
        agent::selfi::load_config(Some(&a.run.common.config))?,
        online_spec(&a.run, offline_card(&card)?)?,
    ))
}

/// The offline phase's card as a fingerprint's text.
fn offline_card(card: &rl::selfi::experiment::OfflineCard) -> Result<String> {
    toml::to_string(card).context("the offline phase's card does not serialise")
}

/// The online runs `a` describes (telemetry off for a sweep's task or collection).
fn online_spec(a: &SelfiRunArgs, offline: String) -> Result<agent::selfi::OnlineSpec> {
    let arms = a.arm_list()?;
    anyhow::ensure!(
        a.seeds > 0 && a.minutes > 0.0 && a.bin_minutes > 0.0,
        "--seeds, --minutes and --bin-minutes must be positive"
    );
    let sink = match a.rerun {
        _ if a.task_or_collect() => Sink::Off,
        RerunMode::Save => Sink::Save(a.rerun_save.clone()),
        RerunMode::Connect => Sink::Connect(a.rerun_url.clone()),
        RerunMode::Spawn => Sink::Spawn,
        RerunMode::Off => Sink::Off,
    };
    Ok(agent::selfi::OnlineSpec {
        arms,
        seeds: (a.seed_base, a.seeds),
        minutes: a.minutes,
        bin_minutes: a.bin_minutes,
        out: a.out.clone(),
        jobs: a.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        sink,
        offline,
    })
}

pub(crate) fn rl_bench(a: RlBenchArgs, stop: &AtomicBool) -> Result<()> {
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
        for &n in &a.actors {
            eprintln!(
                "training with {n} actor process(es) and a learner process: {} for {steps} steps ...",
                task.name()
            );
            let r = agent::actors::local::run(
                &agent::actors::local::LocalRun {
                    task,
                    seed: 0,
                    actors: n,
                    max_steps: steps,
                    eval_every: None,
                    out: a.out.join(format!("{}-actors{n}", task_slug(task))),
                },
                stop,
            )?;
            let wall = r.wall_seconds.max(1e-9);
            println!(
                "{:<16} {:>7} steps  {n} actor process(es): {:>8.1} env steps/s, learner {:>7.1} updates/s, busy {:.0} % of the time  (one process: {:.1} steps/s, {:.1} updates/s; ratio {:.2}x)",
                task.name(),
                r.steps,
                r.steps as f64 / wall,
                r.updates as f64 / wall,
                100.0 * r.learn_seconds / wall,
                ours.steps_per_second(),
                ours.updates as f64 / ours.train_seconds.max(1e-9),
                (r.steps as f64 / wall) / ours.steps_per_second()
            );
        }
    }
    Ok(())
}

fn task_slug(task: rl::validate::Classic) -> &'static str {
    match task {
        rl::validate::Classic::CartPole => "cartpole",
        rl::validate::Classic::Pendulum => "pendulum",
    }
}

pub(crate) fn rl_validate(a: RlValidateArgs, stop: &AtomicBool) -> Result<()> {
    let device = agent::device::device(Backend::Cpu)?;
    for task in a.task.tasks() {
        let steps = a.steps.unwrap_or(match task {
            rl::validate::Classic::CartPole => 100_000,
            rl::validate::Classic::Pendulum => 20_000,
        });
        let reports = match a.actors {
            None => agent::rlbench::validate(task, a.seeds, steps, a.jobs, &device)?,
            Some(n) => {
                let mut v = Vec::new();
                for seed in 0..a.seeds {
                    let r = agent::actors::local::run(
                        &agent::actors::local::LocalRun {
                            task,
                            seed,
                            actors: n,
                            max_steps: steps,
                            eval_every: Some(task.eval_every()),
                            out: a.out.join(format!("{}-seed{seed}", task_slug(task))),
                        },
                        stop,
                    )?;
                    let p = &r.progress;
                    eprintln!(
                        "  {} seed {seed} with {n} actors: {}",
                        task.name(),
                        p.solved_at
                            .map_or("not solved".to_string(), |s| format!("solved at step {s}"))
                    );
                    v.push(rl::validate::SolveReport {
                        task,
                        seed,
                        solved_at: p.solved_at,
                        mean_return: p.evaluations.last().map_or(f64::NAN, |e| e.mean_return),
                        steps: p.steps,
                        updates: p.updates,
                        // Wall time from the first batch, evaluations left out
                        // as in the one-process figure (which includes acting).
                        train_seconds: r.wall_seconds - r.eval_seconds,
                    });
                }
                v
            }
        };
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
        let at: Vec<f64> = reports
            .iter()
            .filter_map(|r| r.solved_at.map(|s| s as f64))
            .collect();
        let e = agent::experiment::Estimate::of(&at);
        if e.n > 0 {
            println!(
                "{}: steps to solve, mean over the {} solved seeds: {:.0} [{:.0}, {:.0}] (95 % bootstrap interval){}",
                task.name(),
                e.n,
                e.mean,
                e.lo,
                e.hi,
                a.actors.map_or(" in one process".to_string(), |n| format!(
                    " with {n} actor processes"
                ))
            );
        }
    }
    Ok(())
}
