//! SELFI: `agent selfi record|offline|online|all`.

use super::{RerunMode, above, count};
use agent::device::Backend;
use agent::telemetry::Sink;
use anyhow::{Context as _, Result};
use clap::Subcommand;
use std::path::PathBuf;
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
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    seed_base: u64,
    /// Simulated minutes of online flight per run.
    #[arg(long, default_value_t = 30.0, value_parser = above(0.0, 525_600.0, "min"))]
    minutes: f64,
    /// Bin width of the figures (simulated minutes); each arm's actor is also
    /// evaluated at every bin's end (`eval_minutes` each), which is most of a
    /// run's cost.
    #[arg(long, default_value_t = 10.0, value_parser = above(0.0, 525_600.0, "min"))]
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
            super::learn::report_incomplete(
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
    super::learn::report_incomplete(
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
