//! Reinforcement learning on the twin's family: `agent train` (SPaCE against
//! its baselines).

use super::{RerunMode, count, within};
use agent::device::Backend;
use agent::telemetry::Sink;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
