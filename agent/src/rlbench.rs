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
    /// The BLAS libraries the peer loaded, as it reported them.
    pub peer_blas: Option<String>,
}

/// The install hint for the peer.
const PEER_INSTALL: &str = "install with `apt-get install python3-torch libopenblas0-pthread` and `/usr/bin/python3 -m pip install --break-system-packages --no-deps stable-baselines3 gymnasium farama-notifications cloudpickle`";

/// Whether the peer ran its matrix products on a reference (untuned) BLAS:
/// a libblas loaded with no OpenBLAS, MKL, BLIS or ATLAS beside it. Debian's
/// torch takes whatever libblas.so.3 the system points at, and the reference
/// one made SB3 about ten times slower here, which no comparison should rest on.
pub fn reference_blas(loaded: &str) -> bool {
    let paths: Vec<String> = loaded
        .split(';')
        .filter(|p| !p.is_empty())
        .map(str::to_lowercase)
        .collect();
    let tuned = ["openblas", "mkl", "blis", "atlas"];
    paths.iter().any(|p| p.contains("libblas"))
        && !paths.iter().any(|p| tuned.iter().any(|t| p.contains(t)))
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
        }?;
        match &self.peer_blas {
            Some(b) if self.peer.is_some() && reference_blas(b) => write!(
                f,
                "\n  warning: SB3 ran on the reference BLAS ({b}), many times slower than a tuned one; the ratio is not a fair figure ({PEER_INSTALL})"
            ),
            _ => Ok(()),
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

/// What the peer reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRun {
    /// Environment steps per second of training.
    pub steps_per_second: f64,
    /// The BLAS libraries it loaded (';'-separated; empty when unknown).
    pub blas: String,
}

/// Run the SB3 peer script; its rate and BLAS, or why not.
pub fn time_peer(
    python: &Path,
    script: &Path,
    task: Classic,
    steps: u64,
) -> Result<PeerRun, String> {
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
            "{} exited with {} ({last}); {PEER_INSTALL}",
            script.display(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_peer(text.lines().last().unwrap_or(""))
}

/// The peer's one JSON line: steps and seconds, and the BLAS it loaded.
fn parse_peer(line: &str) -> Result<PeerRun, String> {
    let raw = |key: &str| -> Option<&str> {
        let i = line.find(&format!("\"{key}\": "))? + key.len() + 4;
        line[i..].split([',', '}']).next().map(str::trim)
    };
    let num = |key: &str| raw(key)?.parse::<f64>().ok();
    let blas = raw("blas")
        .map(|b| b.trim_matches('"').to_string())
        .unwrap_or_default();
    match (num("steps"), num("seconds")) {
        (Some(s), Some(t)) if t > 0.0 => Ok(PeerRun {
            steps_per_second: s / t,
            blas,
        }),
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
    let every = task.eval_every();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_line_gives_its_rate_and_blas() {
        let r = parse_peer(
            r#"{"task": "cartpole", "steps": 50000, "seconds": 25.0, "torch": "1.13.0a0", "cpu": 0, "blas": "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"}"#,
        )
        .unwrap();
        assert_eq!(r.steps_per_second, 2000.0);
        assert!(reference_blas(&r.blas));
        // An older peer without the field still reads.
        let r = parse_peer(r#"{"task": "pendulum", "steps": 100, "seconds": 2.0}"#).unwrap();
        assert_eq!((r.steps_per_second, r.blas.as_str()), (50.0, ""));
        assert!(parse_peer(r#"{"steps": 100, "seconds": 0}"#).is_err());
        assert!(parse_peer("Traceback (most recent call last):").is_err());
    }

    #[test]
    fn only_an_untuned_blas_is_flagged() {
        assert!(!reference_blas(""));
        assert!(!reference_blas(
            "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3;/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"
        ));
        assert!(!reference_blas("/opt/intel/lib/libmkl_rt.so"));
        assert!(reference_blas(
            "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"
        ));
        let line = BenchLine {
            task: Classic::CartPole,
            steps: 100,
            ours: 2.0,
            peer: Some(1.0),
            peer_note: None,
            peer_blas: Some("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3".into()),
        };
        let text = line.to_string();
        assert!(
            text.contains("ratio 2.00x") && text.contains("warning: SB3 ran on the reference BLAS"),
            "{text}"
        );
        let tuned = BenchLine {
            peer_blas: Some("/usr/lib/libopenblas.so.0".into()),
            ..line
        };
        assert!(!tuned.to_string().contains("warning"), "{tuned}");
    }
}
