//! The learners on classic tasks: `agent rl-bench`, `agent rl-validate`.

use super::count;
use agent::device::Backend;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

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
