//! A training run as processes on this machine: an open router, the learner
//! and N actors, each a child process of this binary, talking only through
//! the router, exactly as on several hosts. `agent rl-validate --actors N`
//! and `agent rl-bench --actors N` run them.

use super::learner::LearnerReport;
use anyhow::{Context as _, Result, bail};
use rl::validate::Classic;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One local run.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The task.
    pub task: Classic,
    /// The run's seed.
    pub seed: u64,
    /// Actor processes.
    pub actors: u32,
    /// The learner's step budget (`--max-steps`).
    pub max_steps: u64,
    /// Steps between evaluations; `None`: never evaluate (throughput only).
    pub eval_every: Option<u64>,
    /// The run's folder (the learner's `--out`, and the processes' logs).
    pub out: PathBuf,
}

/// Children killed and reaped when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free loopback port (bound, then released for the router).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn log_file(out: &Path, name: &str) -> Result<std::fs::File> {
    let p = out.join(format!("{name}.log"));
    std::fs::File::create(&p).with_context(|| format!("cannot write {}", p.display()))
}

/// Run it to the learner's end (or `stop`); the learner's report.
pub fn run(r: &LocalRun, stop: &AtomicBool) -> Result<LearnerReport> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    std::fs::create_dir_all(&r.out).with_context(|| format!("cannot make {}", r.out.display()))?;
    let port = free_port()?;
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let task = match r.task {
        Classic::CartPole => "cartpole",
        Classic::Pendulum => "pendulum",
    };
    let seed = r.seed.to_string();
    let mut children = Children(Vec::new());
    let spawn = |args: Vec<String>, log: &str| -> Result<Child> {
        let out = log_file(&r.out, log)?;
        Command::new(&exe)
            .args(&args)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} {}", exe.display(), args.join(" ")))
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    children.0.push(spawn(
        s(&["router", "--open", "--listen", &endpoint]),
        "router",
    )?);
    let max_steps = r.max_steps.to_string();
    let eval_every = r.eval_every.unwrap_or(u64::MAX).to_string();
    let out = r.out.join("learner");
    let _ = std::fs::remove_dir_all(&out);
    let mut learner_args = s(&[
        "node",
        "rl-learner",
        "--connect",
        &endpoint,
        "--task",
        task,
        "--seed",
        &seed,
        "--max-steps",
        &max_steps,
        "--eval-every",
        &eval_every,
        "--save-every",
        "86400",
    ]);
    learner_args.extend(["--out".to_string(), out.display().to_string()]);
    if r.eval_every.is_none() {
        learner_args.push("--keep-going".into());
    }
    children.0.push(spawn(learner_args, "learner")?);
    for k in 1..=r.actors {
        children.0.push(spawn(
            s(&[
                "node",
                "actor",
                "--connect",
                &endpoint,
                "--task",
                task,
                "--seed",
                &seed,
                "--actor",
                &k.to_string(),
            ]),
            &format!("actor{k}"),
        )?);
    }
    let t0 = Instant::now();
    let status = loop {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if let Some(st) = children.0[1].try_wait()? {
            break st;
        }
        if let Some(st) = children.0[0].try_wait()? {
            bail!(
                "the router ended ({st}) before the learner; see {} (its port {port} taken?)",
                r.out.join("router.log").display()
            );
        }
        for (k, c) in children.0.iter_mut().enumerate().skip(2) {
            if let Some(st) = c.try_wait()?
                && !st.success()
            {
                bail!(
                    "actor {} failed ({st}) after {:.0} s; see {}",
                    k - 1,
                    t0.elapsed().as_secs_f64(),
                    r.out.join(format!("actor{}.log", k - 1)).display()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        bail!(
            "the learner failed ({status}); see {}",
            r.out.join("learner.log").display()
        );
    }
    let report = out.join("report.toml");
    let text = std::fs::read_to_string(&report)
        .with_context(|| format!("cannot read {}", report.display()))?;
    toml::from_str(&text).with_context(|| format!("{}", report.display()))
}
