//! `agent sweep`: an experiment's runs as independent tasks, one per
//! (configuration, seed), on a Slurm cluster (a job array) or as separate
//! processes here; then one comparison built from the tasks' folders.
//!
//! Every task runs the experiment's own command with its index
//! (`agent train ARGS --task N`) and writes where the command writes; `agent
//! sweep collect OUT` builds the same table, summary files and rerun file as
//! the local run (`agent train ARGS`) from those folders, and names the tasks
//! to run again — alone: a task run again resumes its run from its checkpoint.
//! The folder must be shared by the machines that run tasks (as a cluster's
//! home or scratch file system is).
//!
//! Files in `OUT/sweep/`: `sweep.toml` (the command, the task count, where it
//! runs from), `sweep.sbatch` (the job array script), `logs/task-N.out`.

use super::lab::PersistArgs;
use super::learn::TrainArgs;
use super::slurm::{array_spec, directive_value, parse_tasks, shell_word, throttle};
use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Subcommand)]
pub(crate) enum SweepCmd {
    /// Write the experiment as a Slurm job array (one task per run) and submit it
    /// with sbatch: `agent sweep slurm [OPTIONS] -- train ARGS`.
    Slurm(SlurmArgs),
    /// Run the experiment's tasks as separate processes on this machine, then
    /// collect: `agent sweep local [--jobs N] -- train ARGS`.
    Local(LocalArgs),
    /// Build the comparison from the tasks' folders (table, summary.{csv,txt},
    /// rerun file) and name the tasks to run again.
    Collect {
        /// The experiment's output folder (its `--out`).
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
pub(crate) struct SlurmArgs {
    /// Partition (default: the cluster's default).
    #[arg(long)]
    partition: Option<String>,
    /// Time limit of each task (sbatch --time). A task stopped by it keeps its
    /// checkpoint; submitting it again resumes it.
    #[arg(long, default_value = "04:00:00")]
    time: String,
    /// CPUs per task.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    cpus_per_task: u32,
    /// Memory per task (sbatch --mem, e.g. 2G).
    #[arg(long, default_value = "2G")]
    mem: String,
    /// Tasks running at once (the array's %K); default: as many as the cluster gives.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_parallel: Option<u32>,
    /// Submit only these tasks (e.g. `3,5` or `0-3`): the ones `collect` named.
    #[arg(long)]
    tasks: Option<String>,
    /// Write the script, do not submit it.
    #[arg(long)]
    no_submit: bool,
    /// Wait for the array to end (sbatch --wait), then collect.
    #[arg(long)]
    wait: bool,
    /// The agent binary the tasks run (default: this one); it must be reachable
    /// at this path on the compute nodes.
    #[arg(long)]
    agent: Option<PathBuf>,
    /// The sbatch command.
    #[arg(long, default_value = "sbatch")]
    sbatch: PathBuf,
    /// The experiment, after `--`: `train ARGS`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct LocalArgs {
    /// Tasks running at once (default: the CPU count).
    #[arg(long, value_parser = super::count(1, 256))]
    jobs: Option<usize>,
    /// Run only these tasks (e.g. `3,5` or `0-3`).
    #[arg(long)]
    tasks: Option<String>,
    /// The experiment, after `--`: `train ARGS`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// What `OUT/sweep/sweep.toml` keeps: enough to collect, and to run any task
/// again, without the original command line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Manifest {
    /// The experiment's command, without the program name.
    command: Vec<String>,
    /// How many tasks it has.
    tasks: usize,
    /// The folder the command's relative paths are relative to.
    workdir: PathBuf,
    /// `slurm` or `local`.
    runner: String,
    /// Slurm's job id of the last submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<String>,
    /// The array's limit of tasks at once (`%K`), kept on resubmissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_parallel: Option<u32>,
}

/// The experiment a sweep runs: the command parsed as the agent would.
enum Experiment {
    Train(Box<TrainArgs>),
    Persist(Box<PersistArgs>),
    Selfi(Box<crate::cli::selfi::SelfiOnlineArgs>),
}

impl Experiment {
    /// Its tasks: runs of `train`, flights of `persist`.
    fn tasks(&self) -> usize {
        match self {
            Experiment::Train(a) => a.runs(),
            Experiment::Persist(a) => a.flights(),
            Experiment::Selfi(a) => a.run.runs(),
        }
    }

    /// Its output folder, where the tasks write and the sweep's files go.
    fn out(&self) -> &Path {
        match self {
            Experiment::Train(a) => a.out(),
            Experiment::Persist(a) => a.out(),
            Experiment::Selfi(a) => a.run.out(),
        }
    }
}

fn experiment(command: &[String]) -> Result<Experiment> {
    let argv = std::iter::once("agent".to_string()).chain(command.iter().cloned());
    let cli = crate::Cli::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("the experiment's command `{}`: {e}", command.join(" ")))?;
    let (e, given) = match cli.cmd {
        crate::Cmd::Train(a) => {
            let given = a.task_or_collect();
            (Experiment::Train(Box::new(a)), given)
        }
        crate::Cmd::Persist(a) => {
            let given = a.task_or_collect();
            (Experiment::Persist(Box::new(a)), given)
        }
        crate::Cmd::Selfi(crate::cli::selfi::SelfiCmd::Online(a)) => {
            a.run.arm_list()?;
            let given = a.run.task_or_collect();
            (Experiment::Selfi(Box::new(a)), given)
        }
        _ => bail!(
            "`agent sweep` runs `agent train`, `agent persist` and `agent selfi online` experiments (`-- train ARGS`); got `{}`",
            command.first().map_or("", String::as_str)
        ),
    };
    if given {
        bail!("the experiment's command takes no --task or --collect: the sweep adds them");
    }
    Ok(e)
}

fn sweep_dir(out: &Path) -> PathBuf {
    out.join("sweep")
}

/// Write the manifest, refusing to mix two experiments in one folder.
fn write_manifest(out: &Path, m: &Manifest) -> Result<()> {
    let dir = sweep_dir(out);
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.join("logs").display()))?;
    let path = dir.join("sweep.toml");
    if let Ok(old) = read_manifest(out)
        && old.command != m.command
    {
        bail!(
            "{} holds another experiment's sweep (`{}`); choose another --out",
            path.display(),
            old.command.join(" ")
        );
    }
    let text = toml::to_string(m).context("cannot encode the sweep's manifest")?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn read_manifest(out: &Path) -> Result<Manifest> {
    let path = sweep_dir(out).join("sweep.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is this the --out of an `agent sweep`?)",
            path.display()
        )
    })?;
    toml::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// The job array script: each task runs the experiment's command with its index.
fn sbatch_script(a: &SlurmArgs, agent: &Path, m: &Manifest, out: &Path) -> String {
    let mut s = String::from("#!/bin/bash\n");
    s += "# Written by `agent sweep slurm`: one task per run of the experiment, each\n";
    s += "# running the experiment's command with its index. Compare with\n";
    s += &format!(
        "#   agent sweep collect {}\n",
        shell_word(&out.display().to_string())
    );
    s += "# and submit the tasks it names again with sbatch --array=LIST (this file).\n";
    s += &format!(
        "#SBATCH --job-name=agent-{}\n",
        m.command.first().map_or("sweep", String::as_str)
    );
    s += &format!(
        "#SBATCH --array=0-{}{}\n",
        m.tasks - 1,
        throttle(m.max_parallel)
    );
    s += &format!(
        "#SBATCH --output={}/logs/task-%a.out\n",
        sweep_dir(out).display()
    );
    s += &format!("#SBATCH --chdir={}\n", m.workdir.display());
    s += &format!("#SBATCH --cpus-per-task={}\n", a.cpus_per_task);
    s += &format!("#SBATCH --mem={}\n", a.mem);
    s += &format!("#SBATCH --time={}\n", a.time);
    if let Some(p) = &a.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    // A minute's warning before the time limit (Slurm's SIGKILL follows its
    // SIGTERM by KillWait, 30 s by default): the run evaluates, checkpoints
    // and says it was interrupted; the task run again resumes it.
    s += "#SBATCH --signal=B:TERM@120\n";
    s += "set -euo pipefail\n";
    let words: Vec<String> = m.command.iter().map(|w| shell_word(w)).collect();
    s += &format!(
        "exec {} {} --task \"$SLURM_ARRAY_TASK_ID\"\n",
        shell_word(&agent.display().to_string()),
        words.join(" ")
    );
    s
}

/// The sweep's folder as the manifest's working directory sees it.
fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(p))
    }
}

/// The experiment's output folder (absolute) and the manifest of a sweep of
/// it run by `runner` from the current folder.
fn plan(
    command: &[String],
    runner: &str,
    max_parallel: Option<u32>,
) -> Result<(PathBuf, Manifest)> {
    let exp = experiment(command)?;
    Ok((
        absolute(exp.out())?,
        Manifest {
            command: command.to_vec(),
            tasks: exp.tasks(),
            workdir: std::env::current_dir().context("cannot read the current directory")?,
            runner: runner.into(),
            job: None,
            max_parallel,
        },
    ))
}

fn slurm(a: SlurmArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let (out, m) = plan(&a.command, "slurm", a.max_parallel)?;
    directive_value("--time", &a.time)?;
    directive_value("--mem", &a.mem)?;
    if let Some(p) = &a.partition {
        directive_value("--partition", p)?;
    }
    directive_value("the output folder", &out.display().to_string())?;
    directive_value("the working folder", &m.workdir.display().to_string())?;
    let tasks = match &a.tasks {
        Some(t) => Some(parse_tasks(t, m.tasks)?),
        None => None,
    };
    let agent = match &a.agent {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().context("cannot find this program's path")?,
    };
    write_manifest(&out, &m)?;
    let script = sweep_dir(&out).join("sweep.sbatch");
    std::fs::write(&script, sbatch_script(&a, &agent, &m, &out))
        .with_context(|| format!("cannot write {}", script.display()))?;
    println!(
        "{} tasks of `agent {}`; job array script {}",
        m.tasks,
        a.command.join(" "),
        script.display()
    );
    if a.no_submit {
        println!(
            "not submitted (--no-submit): sbatch {}",
            shell_word(&script.display().to_string())
        );
        return Ok(());
    }
    let mut cmd = std::process::Command::new(&a.sbatch);
    if let Some(t) = &tasks {
        cmd.arg(format!(
            "--array={}{}",
            array_spec(t),
            throttle(m.max_parallel)
        ));
    }
    if a.wait {
        cmd.arg("--wait");
    }
    cmd.arg(&script);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (is Slurm installed here? --sbatch names the command)",
                a.sbatch.display()
            )
        })?;
    // sbatch --wait blocks until the array ends; Ctrl-C here leaves the
    // tasks running (cancel them with scancel).
    let said = wait_output(child, &stop)?;
    let text = String::from_utf8_lossy(&said.stdout).to_string();
    print!("{text}");
    let job = text
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .map(str::to_string);
    if job.is_none() {
        bail!(
            "sbatch did not submit the array ({}): {}",
            said.status,
            String::from_utf8_lossy(&said.stderr).trim()
        );
    }
    write_manifest(&out, &Manifest { job, ..m })?;
    if a.wait {
        if !said.status.success() {
            eprintln!(
                "some tasks of the array failed ({}); collecting what finished",
                said.status
            );
        }
        return collect(&out);
    }
    println!(
        "when the array has ended: agent sweep collect {}",
        shell_word(&out.display().to_string())
    );
    Ok(())
}

/// A child's output, or an error when `stop` came first (the child is left
/// alone: sbatch's array runs on without it).
fn wait_output(mut child: std::process::Child, stop: &AtomicBool) -> Result<std::process::Output> {
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted while waiting for sbatch; the array runs on (squeue, scancel)");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn local(a: LocalArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let (out, m) = plan(&a.command, "local", None)?;
    let tasks = match &a.tasks {
        Some(t) => parse_tasks(t, m.tasks)?,
        None => (0..m.tasks).collect(),
    };
    write_manifest(&out, &m)?;
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let agent = std::env::current_exe().context("cannot find this program's path")?;
    eprintln!(
        "{} of {} tasks, {jobs} at once; logs in {}",
        tasks.len(),
        m.tasks,
        sweep_dir(&out).join("logs").display()
    );
    let mut pending = tasks.into_iter();
    let mut running: Vec<(usize, std::process::Child)> = Vec::new();
    let mut failed = Vec::new();
    // A task that cannot start stops the sweep: the ones running are told to
    // stop (they save and say so) and waited for.
    let mut start_err: Option<anyhow::Error> = None;
    let mut told = false;
    loop {
        while running.len() < jobs && !stop.load(Ordering::Relaxed) && start_err.is_none() {
            let Some(t) = pending.next() else { break };
            let log_path = sweep_dir(&out).join("logs").join(format!("task-{t}.out"));
            let child = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot write {}", log_path.display()))
                .and_then(|log| {
                    let err = log.try_clone()?;
                    std::process::Command::new(&agent)
                        .args(&m.command)
                        .args(["--task", &t.to_string()])
                        .stdout(log)
                        .stderr(err)
                        .spawn()
                        .with_context(|| format!("cannot start task {t}"))
                });
            match child {
                Ok(c) => running.push((t, c)),
                Err(e) => start_err = Some(e),
            }
        }
        if (stop.load(Ordering::Relaxed) || start_err.is_some()) && !told {
            // Ctrl-C from a terminal reaches them anyway; a SIGTERM to this
            // process (or a failed start) does not.
            for (_, c) in &running {
                agent::launch::signal(c, libc::SIGTERM);
            }
            told = true;
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut still = Vec::new();
        for (t, mut c) in running {
            match c.try_wait()? {
                Some(st) => {
                    eprintln!("task {t}: {st}");
                    if !st.success() {
                        failed.push(t);
                    }
                }
                None => still.push((t, c)),
            }
        }
        running = still;
    }
    if let Some(e) = start_err {
        return Err(e);
    }
    if !failed.is_empty() {
        eprintln!("tasks that failed: {}", array_spec(&failed));
    }
    collect(&out)
}

/// `agent sweep collect OUT`.
fn collect(out: &Path) -> Result<()> {
    let m = read_manifest(out)?;
    std::env::set_current_dir(&m.workdir).with_context(|| {
        format!(
            "cannot enter the sweep's working directory {}",
            m.workdir.display()
        )
    })?;
    if let (Some(job), "slurm") = (&m.job, m.runner.as_str())
        && let Ok(q) = std::process::Command::new("squeue")
            .args(["-h", "-o", "%i", "-j", job])
            .output()
        && q.status.success()
        && !q.stdout.is_empty()
    {
        println!(
            "note: job {job} is still queued or running (squeue); tasks it has not finished are listed below, do not submit them again before it ends"
        );
    }
    let incomplete = match experiment(&m.command)? {
        Experiment::Train(a) => {
            let exp = super::learn::experiment(&a, false)?;
            let tel = agent::telemetry::Telemetry::open(&exp.sink, "agent-train")?;
            let summary = agent::train::collect(&exp, Some(&tel))?;
            print!("{}", summary.table());
            println!(
                "collected {} of {} tasks from {}; summary in {}",
                m.tasks - summary.incomplete.len(),
                m.tasks,
                out.display(),
                exp.out.join("summary.txt").display()
            );
            if exp.sink != agent::telemetry::Sink::Off {
                println!("telemetry: {}", exp.sink.describe());
            }
            summary.incomplete
        }
        Experiment::Persist(a) => {
            let run = super::lab::persist_run(&a)?;
            let report = agent::experiment::collect(&run)?;
            print!("{}", report.table());
            for (goal, met) in report.goals() {
                println!("goal {}: {goal}", if met { "met   " } else { "MISSED" });
            }
            println!(
                "collected {} of {} tasks from {}",
                m.tasks - report.missing.len(),
                m.tasks,
                out.display()
            );
            report.missing
        }
        Experiment::Selfi(a) => {
            let (cfg, spec) = super::selfi::online_experiment(&a)?;
            let (summary, missing) = agent::selfi::collect_online(&cfg, &spec)?;
            print!("{}", summary.table);
            println!(
                "collected {} of {} tasks from {}; summary in {}",
                m.tasks - missing.len(),
                m.tasks,
                out.display(),
                spec.out.join("summary.txt").display()
            );
            missing
        }
    };
    if incomplete.is_empty() {
        return Ok(());
    }
    println!("{} task(s) to run again:", incomplete.len());
    for r in &incomplete {
        println!("  task {}: {}: {}", r.task, r.dir.display(), r.why);
    }
    let again: Vec<usize> = incomplete.iter().map(|r| r.task).collect();
    let list = array_spec(&again);
    if m.runner == "slurm" {
        println!(
            "  sbatch --array={list}{} {}",
            throttle(m.max_parallel),
            shell_word(&sweep_dir(out).join("sweep.sbatch").display().to_string())
        );
    } else {
        let words: Vec<String> = m.command.iter().map(|w| shell_word(w)).collect();
        println!("  agent sweep local --tasks {list} -- {}", words.join(" "));
    }
    bail!("{} of {} tasks are not finished", incomplete.len(), m.tasks)
}

pub(crate) fn sweep(c: SweepCmd, stop: Arc<AtomicBool>) -> Result<()> {
    match c {
        SweepCmd::Slurm(a) => slurm(a, stop),
        SweepCmd::Local(a) => local(a, stop),
        SweepCmd::Collect { dir } => collect(&absolute(&dir)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_train_experiments_are_swept() {
        let e = experiment(&["fly".into()])
            .err()
            .expect("fly is refused")
            .to_string();
        assert!(e.contains("agent persist"), "{e}");
        let e = experiment(&["train".into(), "--task".into(), "1".into()])
            .err()
            .expect("--task is refused")
            .to_string();
        assert!(e.contains("--task"), "{e}");
        let a = experiment(&[
            "train".into(),
            "--curriculum".into(),
            "space,round-robin".into(),
            "--seeds".into(),
            "3".into(),
        ])
        .unwrap();
        assert_eq!(a.tasks(), 6);
        let p = experiment(&["persist".into(), "--seeds".into(), "3".into()]).unwrap();
        assert_eq!(p.tasks(), 12);
    }
}
