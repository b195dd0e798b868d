//! `agent launch FILE`: start a graph of processes from a launch file, prefix
//! their log lines with their names, restart crashed ones with back-off, and on
//! Ctrl-C / SIGTERM stop them all (SIGTERM, then SIGKILL after a timeout).
//! Children also get SIGKILL if the launcher itself dies, so none is orphaned.
//!
//! A launch file (TOML):
//!
//! ```toml
//! name = "sim_twin"
//! stop_timeout = 5.0                 # s between SIGTERM and SIGKILL
//! [env]                              # for every process
//! RUST_LOG = "info"
//! [[process]]
//! name = "camera"
//! args = ["node", "camera", "--listen", "tcp/127.0.0.1:7450"]
//! program = "agent"                  # default: this agent binary; or a path / command
//! restart = "never"                  # "never" | "on-failure" | "always"
//! required = true                    # the graph stops when this process ends
//! [process.env]
//! RUST_LOG = "debug"
//! ```

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// When a process that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never.
    #[default]
    Never,
    /// When it exited with an error or a signal.
    OnFailure,
    /// Whenever it ends.
    Always,
}

/// One process of the graph.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Name, used as the log prefix.
    pub name: String,
    /// Program: `agent` (default) is this binary; anything else is run as given.
    #[serde(default = "default_program")]
    pub program: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment added for this process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// The graph stops when this process ends for good.
    #[serde(default)]
    pub required: bool,
}

fn default_program() -> String {
    "agent".into()
}

/// A launch file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchFile {
    /// Name of the graph.
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL when stopping.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: f64,
    /// Environment for every process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The processes.
    pub process: Vec<ProcessSpec>,
}

fn default_stop_timeout() -> f64 {
    5.0
}

impl LaunchFile {
    /// Read and check a launch file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read launch file {}", path.display()))?;
        let f: LaunchFile = toml::from_str(&text)
            .with_context(|| format!("malformed launch file {}", path.display()))?;
        if f.process.is_empty() {
            bail!("launch file {} starts no process", path.display());
        }
        let mut names = std::collections::HashSet::new();
        for p in &f.process {
            if p.name.is_empty() || !names.insert(p.name.clone()) {
                bail!(
                    "launch file {}: process names must be unique and non-empty (`{}`)",
                    path.display(),
                    p.name
                );
            }
        }
        // An hour at most: a larger value is a typo, and 1e300 s would
        // overflow the deadline it is added to.
        if !(f.stop_timeout.is_finite() && (0.0..=3600.0).contains(&f.stop_timeout)) {
            bail!(
                "launch file {}: `stop_timeout` must be in [0, 3600] seconds, got {:e}",
                path.display(),
                f.stop_timeout
            );
        }
        Ok(f)
    }
}

/// How the graph ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LaunchSummary {
    /// Restarts per process name.
    pub restarts: BTreeMap<String, u32>,
    /// Exit codes of the last run of each process (`None` = killed by a signal).
    pub exits: BTreeMap<String, Option<i32>>,
    /// Whether Ctrl-C / SIGTERM stopped it.
    pub interrupted: bool,
    /// A required process that failed (non-zero exit or a signal) and was not
    /// restarted: the graph stopped because of it.
    pub required_failed: Option<String>,
}

struct Running {
    spec: ProcessSpec,
    child: Option<Child>,
    started: Instant,
    restarts: u32,
    backoff: Duration,
    next_start: Option<Instant>,
    done: bool,
}

fn pipe_lines(name: String, stream: impl Read + Send + 'static, to_err: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if to_err {
                eprintln!("[{name}] {line}");
            } else {
                println!("[{name}] {line}");
            }
        }
    });
}

fn spawn(spec: &ProcessSpec, common: &BTreeMap<String, String>, agent: &Path) -> Result<Child> {
    let program: PathBuf = if spec.program == "agent" {
        agent.to_path_buf()
    } else {
        PathBuf::from(&spec.program)
    };
    let mut cmd = Command::new(&program);
    cmd.args(&spec.args)
        .envs(common)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
        // memory of the parent; it runs in the child between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}` ({})", spec.name, program.display()))?;
    if let Some(o) = child.stdout.take() {
        pipe_lines(spec.name.clone(), o, false);
    }
    if let Some(e) = child.stderr.take() {
        pipe_lines(spec.name.clone(), e, true);
    }
    Ok(child)
}

/// Send `sig` to a child this process spawned and has not reaped.
#[allow(unsafe_code)]
pub fn signal(child: &Child, sig: i32) {
    #[cfg(unix)]
    // SAFETY: kill(2) on a child this process spawned and has not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Run the graph until a required process ends or `stop` is set.
pub fn run(file: &LaunchFile, stop: &AtomicBool) -> Result<LaunchSummary> {
    let agent = std::env::current_exe().context("cannot find the agent binary")?;
    let mut procs: Vec<Running> = Vec::new();
    for spec in &file.process {
        let child = spawn(spec, &file.env, &agent)?;
        info!(graph = %file.name, process = %spec.name, pid = child.id(), "started");
        procs.push(Running {
            spec: spec.clone(),
            child: Some(child),
            started: Instant::now(),
            restarts: 0,
            backoff: Duration::from_millis(500),
            next_start: None,
            done: false,
        });
    }
    let mut summary = LaunchSummary::default();
    'watch: while !stop.load(Ordering::Relaxed) {
        for p in &mut procs {
            if let Some(child) = &mut p.child
                && let Some(status) = child.try_wait()?
            {
                p.child = None;
                summary.exits.insert(p.spec.name.clone(), status.code());
                let failed = !status.success();
                let again = match p.spec.restart {
                    Restart::Never => false,
                    Restart::OnFailure => failed,
                    Restart::Always => true,
                };
                if again {
                    // A process that ran a while starts over with a short back-off.
                    if p.started.elapsed() > Duration::from_secs(30) {
                        p.backoff = Duration::from_millis(500);
                    }
                    warn!(process = %p.spec.name, ?status, backoff = ?p.backoff, "ended; restarting");
                    p.next_start = Some(Instant::now() + p.backoff);
                    p.backoff = (p.backoff * 2).min(Duration::from_secs(30));
                } else {
                    info!(process = %p.spec.name, ?status, "ended");
                    p.done = true;
                    if p.spec.required {
                        if failed {
                            summary.required_failed = Some(p.spec.name.clone());
                        }
                        break 'watch;
                    }
                }
            }
            if p.child.is_none()
                && let Some(at) = p.next_start
                && Instant::now() >= at
            {
                p.next_start = None;
                p.child = Some(spawn(&p.spec, &file.env, &agent)?);
                p.started = Instant::now();
                p.restarts += 1;
            }
        }
        if procs.iter().all(|p| p.done) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    summary.interrupted = stop.load(Ordering::Relaxed);
    // Stop everything still running: SIGTERM, then SIGKILL after the timeout.
    for p in &procs {
        if let Some(c) = &p.child {
            signal(c, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(file.stop_timeout);
    for p in &mut procs {
        if let Some(c) = &mut p.child {
            loop {
                if let Some(status) = c.try_wait()? {
                    summary.exits.insert(p.spec.name.clone(), status.code());
                    break;
                }
                if Instant::now() >= deadline {
                    warn!(process = %p.spec.name, "did not stop in time: SIGKILL");
                    let _ = c.kill();
                    let status = c.wait()?;
                    summary.exits.insert(p.spec.name.clone(), status.code());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        summary.restarts.insert(p.spec.name.clone(), p.restarts);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_launch_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch");
        for name in [
            "sim_twin.toml",
            "train.toml",
            "replay.toml",
            "robot.toml",
            "selfi_twin.toml",
        ] {
            let f = LaunchFile::load(&dir.join(name)).unwrap();
            assert!(f.process.iter().any(|p| p.required), "{name}");
        }
    }

    #[test]
    fn bad_launch_files_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("launch-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text, needle) in [
            (
                "none.toml",
                "name = \"g\"\nprocess = []\n",
                "starts no process",
            ),
            (
                "dup.toml",
                "name = \"g\"\n[[process]]\nname = \"a\"\n[[process]]\nname = \"a\"\n",
                "unique",
            ),
            (
                "typo.toml",
                "name = \"g\"\n[[process]]\nname = \"a\"\nrestart = \"sometimes\"\n",
                "malformed launch file",
            ),
            (
                "forever.toml",
                "name = \"g\"\nstop_timeout = 1e300\n[[process]]\nname = \"a\"\n",
                "`stop_timeout` must be in [0, 3600] seconds",
            ),
        ] {
            let p = dir.join(file);
            std::fs::write(&p, text).unwrap();
            let e = format!("{:#}", LaunchFile::load(&p).unwrap_err());
            assert!(e.contains(needle), "{file}: {e}");
        }
        let e = format!(
            "{:#}",
            LaunchFile::load(&dir.join("missing.toml")).unwrap_err()
        );
        assert!(e.contains("missing.toml"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
