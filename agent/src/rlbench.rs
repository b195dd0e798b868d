//! `agent rl-bench` and `agent rl-validate`: the RL learners on the classic tasks.
//!
//! The benchmark trains our DQN on CartPole and our SAC on Pendulum for a fixed
//! number of environment steps on one CPU, then runs Stable-Baselines3 with the
//! same settings on the same CPU (`agent/rl/bench/sb3_peer.py`) and prints both
//! rates and their ratio. The validation trains several seeds until solved.

use anyhow::{Context as _, Result, bail};
use burn::tensor::Device;
use rl::train::TrainConfig;
use rl::validate::{Classic, SolveReport, SolveSpec, solve};
use std::path::Path;
use std::process::Command;

/// One side-by-side figure.
#[derive(Debug, Clone)]
pub struct BenchLine {
    /// The task.
    pub task: Classic,
    /// Steps trained.
    pub steps: u64,
    /// Ours: environment steps per second of training.
    pub ours: f64,
    /// Stable-Baselines3's, when it ran.
    pub peer: Option<f64>,
    /// Why the peer did not run.
    pub peer_note: Option<String>,
}

impl std::fmt::Display for BenchLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<16} {:>7} steps  ours {:>8.1} steps/s",
            self.task.name(),
            self.steps,
            self.ours
        )?;
        match (self.peer, &self.peer_note) {
            (Some(p), _) => write!(
                f,
                "  SB3 {:>8.1} steps/s  ratio {:.2}x  [goal >= 1x: {}]",
                p,
                self.ours / p,
                if self.ours >= p { "met" } else { "MISSED" }
            ),
            (None, Some(n)) => write!(f, "  SB3 not run: {n}"),
            (None, None) => Ok(()),
        }
    }
}

/// Time our learner on one CPU for `steps` (no evaluations).
pub fn time_ours(task: Classic, steps: u64, device: &Device) -> Result<SolveReport> {
    #[cfg(target_os = "linux")]
    let old = crate::bench::pin_to_one_cpu();
    let r = solve(
        SolveSpec {
            task,
            seed: 0,
            max_steps: steps,
            eval_every: u64::MAX,
            stop_when_solved: false,
        },
        &TrainConfig::default(),
        device,
        &mut |_, _| {},
    );
    #[cfg(target_os = "linux")]
    if let Some(old) = old {
        crate::bench::restore_cpus(old);
    }
    Ok(r?)
}

/// Run the SB3 peer script; steps per second, or why not.
pub fn time_peer(python: &Path, script: &Path, task: Classic, steps: u64) -> Result<f64, String> {
    if !script.is_file() {
        return Err(format!("peer script {} not found", script.display()));
    }
    let name = match task {
        Classic::CartPole => "cartpole",
        Classic::Pendulum => "pendulum",
    };
    let out = Command::new(python)
        .arg(script)
        .arg(name)
        .arg(steps.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!(
            "{} exited with {} ({last}); install with `apt-get install python3-torch` and `python3 -m pip install --no-deps stable-baselines3 gymnasium farama-notifications`",
            script.display(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let field = |key: &str| -> Option<f64> {
        let i = line.find(&format!("\"{key}\": "))? + key.len() + 4;
        line[i..].split([',', '}']).next()?.trim().parse().ok()
    };
    match (field("steps"), field("seconds")) {
        (Some(s), Some(t)) if t > 0.0 => Ok(s / t),
        _ => Err(format!("unreadable peer output: {line}")),
    }
}

/// Validate a learner over seeds: how many solve the task within `max_steps`.
pub fn validate(
    task: Classic,
    seeds: u64,
    max_steps: u64,
    jobs: usize,
    device: &Device,
) -> Result<Vec<SolveReport>> {
    let every = match task {
        Classic::CartPole => 5000,
        Classic::Pendulum => 1000,
    };
    let next = std::sync::atomic::AtomicU64::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(seeds as usize) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= seeds {
                        break;
                    }
                    let r = solve(
                        SolveSpec {
                            task,
                            seed,
                            max_steps,
                            eval_every: every,
                            stop_when_solved: true,
                        },
                        &TrainConfig::default(),
                        device,
                        &mut |s, m| {
                            eprintln!(
                                "  {} seed {seed}: step {s}, mean greedy return {m:.1}",
                                task.name()
                            )
                        },
                    );
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((seed, r));
                }
            });
        }
    });
    let mut out = Vec::new();
    let mut all = results.into_inner().unwrap_or_else(|p| p.into_inner());
    all.sort_by_key(|(s, _)| *s);
    for (seed, r) in all {
        out.push(r.with_context(|| format!("{} seed {seed}", task.name()))?);
    }
    if out.is_empty() {
        bail!("no seed was run");
    }
    Ok(out)
}
