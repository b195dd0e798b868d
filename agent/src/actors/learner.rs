//! `agent node rl-learner`: learns from the actors' batches in arrival order,
//! evaluates, publishes its acting network and checkpoints.

use super::msg::{ALL_ACTORS, Credit, Experience};
use super::{Keys, Task};
use anyhow::{Context as _, Result, bail};
use burn::tensor::Device;
use bus::Session;
use bus::msg::Weights;
use bus::wire::{Header, decode, encode};
use bus::zenoh::Wait as _;
use bus::zenoh::handlers::FifoChannel;
use bus::zenoh::qos::CongestionControl;
use rl::env::ActionSpace;
use rl::learner::Learner;
use rl::train::{LearnerChoice, TrainConfig, make_learner};
use rl::validate::evaluate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What the learner runs.
#[derive(Debug, Clone)]
pub struct LearnerOptions {
    /// The run's name (its keys, [`Keys`]).
    pub run: String,
    /// The task.
    pub task: Task,
    /// Seed of the networks, replay sampling and evaluation episodes.
    pub seed: u64,
    /// The learner's settings (DQN for CartPole, SAC for Pendulum).
    pub config: TrainConfig,
    /// Environment steps to learn from in all (a resumed run counts its past ones).
    pub max_steps: u64,
    /// Evaluate every this many environment steps.
    pub eval_every: u64,
    /// End at the first evaluation that meets the task's threshold.
    pub stop_when_solved: bool,
    /// Publish the acting network every this many environment steps.
    pub publish_every: u64,
    /// The run's folder: checkpoint and progress (`learner.toml`).
    pub out: PathBuf,
    /// Seconds between checkpoints.
    pub save_every: Duration,
    /// An actor unheard for this long is reported gone.
    pub silent_after: Duration,
    /// Where the networks train.
    pub device: Device,
}

/// One evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Environment steps learned from.
    pub steps: u64,
    /// Mean greedy return.
    pub mean_return: f64,
}

/// A run's progress, saved with its checkpoint (`learner.toml`) and resumed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The task (`cartpole (DQN)`).
    pub task: String,
    /// The learner (`dqn`, `sac`).
    pub kind: String,
    /// The run's seed.
    pub seed: u64,
    /// Environment steps learned from.
    pub steps: u64,
    /// Gradient steps.
    pub updates: u64,
    /// The last weights version published: the learner's start count
    /// (`restarts`) in the top 24 bits, its publications since in the rest, so
    /// that a resumed learner's weights are newer than any of its past ones.
    pub version: u64,
    /// Times the run was started or resumed.
    #[serde(default)]
    pub restarts: u64,
    /// Steps at the first evaluation that met the threshold.
    pub solved_at: Option<u64>,
    /// Every evaluation.
    pub evaluations: Vec<Evaluation>,
    /// Steps learned from each actor (by number).
    pub actors: BTreeMap<String, u64>,
    /// The run ended (solved or its steps reached).
    pub finished: bool,
}

/// What the learner did in this process (`report.toml` in the run's folder).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LearnerReport {
    /// The run's progress at the end.
    pub progress: Progress,
    /// Steps it had when this process resumed it (0 for a new run).
    pub resumed_at: u64,
    /// Steps learned from in this process.
    pub steps: u64,
    /// Gradient steps in this process.
    pub updates: u64,
    /// Wall seconds spent learning (waiting and evaluations excluded) in this process.
    pub learn_seconds: f64,
    /// Wall seconds from the first batch to the end in this process.
    pub wall_seconds: f64,
    /// Of which evaluating.
    pub eval_seconds: f64,
    /// Malformed or foreign messages ignored.
    pub ignored: u64,
    /// Most batches of one actor waiting in the learner's queue, the one it
    /// takes included: how far the actor was ahead of it (the actors'
    /// `--max-in-flight` bounds it).
    pub max_lead: u64,
}

/// Actors as the learner sees them.
struct Seen {
    last: Instant,
    silent: bool,
    /// The process behind the number, and the last batch credited to it.
    session: u64,
    credited: u64,
}

/// Bits of a weights version below the learner's start count.
pub const VERSION_BITS: u32 = 40;

/// Run the learner until the run ends (solved or `max_steps`) or `stop`.
pub fn run(session: &Session, o: &LearnerOptions, stop: &AtomicBool) -> Result<LearnerReport> {
    if o.config.learner == LearnerChoice::Ppo {
        bail!(
            "PPO learns on-policy from its own rollouts; the actor-learner split serves DQN and SAC (learner = \"auto\"; for the twin's families: --config agent/rl/config/twin_dqn.toml)"
        );
    }

    if o.eval_every == 0 || o.publish_every == 0 {
        bail!("--eval-every and --publish-every must be at least 1");
    }
    let keys = Keys::new(&o.run)?;
    let env = o.task.train_env()?;
    let mut eval_env = o.task.eval_env()?;

    let (obs_dim, action_dim) = (
        env.obs_dim(),
        match env.action_space() {
            ActionSpace::Discrete(_) => 1,
            ActionSpace::Continuous(k) => k,
        },
    );
    let mut learner = make_learner(env.as_ref(), &o.config, &o.device, o.seed)?;
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("cannot make the run's folder {}", o.out.display()))?;
    let _lock = FolderLock::take(&o.out)?;
    let mut progress = match resume_from(&o.out) {
        Some(dir) => {
            let p = read_progress(&dir)?;
            if p.task != o.task.name() || p.kind != learner.kind() || p.seed != o.seed {
                bail!(
                    "{} holds a run of {} ({}) with seed {}: resume it with the same task and seed, or give another --out",
                    o.out.display(),
                    p.task,
                    p.kind,
                    p.seed
                );
            }
            learner
                .load(&dir)
                .with_context(|| format!("cannot resume from {}", dir.display()))?;
            println!(
                "rl-learner: resumed from {} at step {} (the replay starts empty and is refilled before learning goes on)",
                dir.display(),
                p.steps
            );
            p
        }
        None => Progress {
            task: o.task.name(),
            kind: learner.kind().into(),
            seed: o.seed,
            steps: 0,
            updates: 0,
            version: 0,
            restarts: 0,
            solved_at: None,
            evaluations: Vec::new(),
            actors: BTreeMap::new(),
            finished: false,
        },
    };
    let resumed_at = progress.steps;
    let updates_at_start = learner.updates();
    progress.restarts += 1;
    if progress.restarts >= 1 << (64 - VERSION_BITS) {
        bail!(
            "{}: the run was started {} times, more than its weights versions can count",
            o.out.display(),
            progress.restarts
        );
    }
    progress.version = progress.restarts << VERSION_BITS;
    // A resumed learner refills its replay (which a checkpoint does not keep)
    // before it learns again: its step count is past the warm-up already.
    let refill = if resumed_at > 0 {
        match env.action_space() {
            ActionSpace::Discrete(_) => o.config.dqn.learning_starts,
            ActionSpace::Continuous(_) => o.config.sac.learning_starts,
        }
    } else {
        0
    };
    let mut refilled = 0u64;

    let sub = session
        .declare_subscriber(keys.experience.clone())
        .with(FifoChannel::new(1024))
        .wait()
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {}: {e}", keys.experience))?;
    let credit = session
        .declare_publisher(keys.credit.clone())
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| anyhow::anyhow!("cannot publish on {}: {e}", keys.credit))?;
    let weights = session
        .declare_publisher(keys.weights.clone())
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| anyhow::anyhow!("cannot publish on {}: {e}", keys.weights))?;
    let scratch = crate::scratch::Scratch::new("rl-learner")?;
    let put = |p: &bus::zenoh::pubsub::Publisher<'_>, bytes: Vec<u8>| -> Result<()> {
        p.put(bytes)
            .wait()
            .map_err(|e| anyhow::anyhow!("cannot publish: {e}"))
    };
    let send_credit =
        |(actor, session): (u32, u64), batch: u64, steps: u64, done: bool| -> Result<()> {
            let c = Credit {
                actor,
                session,
                batch,
                learner_steps: steps,
                done,
            };
            put(&credit, encode(&Header::default(), &c))
        };
    // The latest weights' message, re-sent to an actor that greets.
    let mut published: Vec<u8> = Vec::new();
    let mut published_updates = u64::MAX;
    // Publish the acting network when it learned since the last time, or
    // again (`again`: an actor greeted).
    let mut publish = |learner: &dyn Learner, progress: &mut Progress, again: bool| -> Result<()> {
        let new = learner.updates() != published_updates || published.is_empty();
        if new {
            let path = scratch.path().join("policy.bpk");
            learner.export_policy(&path)?;
            let bpk =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            progress.version += 1;
            published = encode(
                &Header {
                    seq: progress.version,
                    stamp_ns: bus::now_ns(),
                    frame_id: String::new(),
                },
                &Weights {
                    version: progress.version,
                    network: o.task.network(),
                    bpk,
                },
            );
            published_updates = learner.updates();
        }
        if new || again {
            put(&weights, published.clone())?;
        }
        Ok(())
    };
    // Saved before the first weights leave: a learner killed before its first
    // timed save starts again with a higher start count all the same.
    checkpoint(learner.as_ref(), &progress, &o.out)?;
    publish(learner.as_ref(), &mut progress, false)?;
    info!(run = %o.run, task = %o.task.name(), key = %keys.experience, "learner waiting for actors");

    let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut ignored = 0u64;
    let mut learn_seconds = 0.0;
    let mut first_batch: Option<Instant> = None;
    let mut max_lead = 0u64;
    let mut eval_seconds = 0.0;
    let mut queue: VecDeque<Experience> = VecDeque::new();
    let shape = Shape {
        obs_dim,
        action_dim,
        task: o.task.name(),
        key: keys.experience.clone(),
    };
    let mut saved = Instant::now();
    // From this start's settings: a finished run resumed with more steps (or
    // --keep-going) goes on.
    let finished =
        |p: &Progress| p.steps >= o.max_steps || (o.stop_when_solved && p.solved_at.is_some());
    while !finished(&progress) && !stop.load(Ordering::Relaxed) {
        for (id, s) in seen.iter_mut() {
            if !s.silent && s.last.elapsed() > o.silent_after {
                s.silent = true;
                println!(
                    "rl-learner: actor {id} silent for {:.0} s ({} steps from it); going on with the others",
                    s.last.elapsed().as_secs_f64(),
                    progress.actors.get(&id.to_string()).copied().unwrap_or(0)
                );
            }
        }
        if saved.elapsed() >= o.save_every {
            checkpoint(learner.as_ref(), &progress, &o.out)?;
            saved = Instant::now();
        }
        // Everything that has arrived, into this loop's own queue: the batches
        // an actor has waiting here are how far it is ahead of the learner.
        loop {
            match sub.try_recv() {
                Ok(Some(sample)) => {
                    queue.extend(admit(&sample.payload().to_bytes(), &shape, &mut ignored))
                }
                Ok(None) => break,
                Err(e) => bail!("the subscription to {} ended: {e}", keys.experience),
            }
        }
        if queue.is_empty() {
            match sub.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(sample)) => {
                    queue.extend(admit(&sample.payload().to_bytes(), &shape, &mut ignored))
                }
                Ok(None) => {}
                Err(e) => bail!("the subscription to {} ended: {e}", keys.experience),
            }
        }
        let Some(e) = queue.pop_front() else {
            continue;
        };
        let to = (e.actor, e.session);
        let s = seen.entry(e.actor).or_insert_with(|| {
            println!("rl-learner: actor {} joined", e.actor);
            Seen {
                last: Instant::now(),
                silent: false,
                session: e.session,
                credited: e.batch.saturating_sub(1),
            }
        });
        if s.silent {
            println!("rl-learner: actor {} back", e.actor);
        }
        s.last = Instant::now();
        s.silent = false;
        if s.session != e.session {
            // The actor's process was restarted: its numbering starts again.
            s.session = e.session;
            s.credited = e.batch.saturating_sub(1);
        }
        if e.steps.is_empty() {
            // A greeting gets the weights; a greeting or a question, credit:
            // everything before it in the queue is taken.
            if e.batch == 0 {
                publish(learner.as_ref(), &mut progress, true)?;
            }
            s.credited = s.credited.max(e.batch);
            send_credit(to, e.batch, learner.steps(), false)?;
            continue;
        }
        s.credited = s.credited.max(e.batch);
        let waiting = queue
            .iter()
            .filter(|q| q.actor == e.actor && q.session == e.session && !q.steps.is_empty())
            .count() as u64;
        max_lead = max_lead.max(1 + waiting);
        first_batch.get_or_insert_with(Instant::now);
        let mut clock = Instant::now();
        let key = e.actor.to_string();
        let mut evaluating = Duration::ZERO;
        for t in e.steps {
            if finished(&progress) {
                break;
            }
            if refilled < refill {
                learner.remember(t);
                refilled += 1;
            } else {
                learner.observe(t)?;
            }
            progress.steps = learner.steps();
            *progress.actors.entry(key.clone()).or_insert(0) += 1;
            if progress.steps.is_multiple_of(o.publish_every) {
                publish(learner.as_ref(), &mut progress, false)?;
            }
            if progress.steps.is_multiple_of(o.eval_every) {
                learn_seconds += clock.elapsed().as_secs_f64();
                let began = Instant::now();
                let mean = match &o.task {
                    Task::Classic(c) => evaluate(*c, eval_env.as_mut(), learner.as_mut())?,
                    // The held-out instances, `eval_episodes` greedy episodes each.
                    Task::Family(_) => {
                        let scores = rl::train::evaluate_each(
                            eval_env.as_mut(),
                            learner.as_mut(),
                            o.config.eval_episodes,
                            10_000,
                        )?;
                        scores.iter().map(|s| s.ret).sum::<f64>() / scores.len().max(1) as f64
                    }
                };
                evaluating += began.elapsed();
                progress.evaluations.push(Evaluation {
                    steps: progress.steps,
                    mean_return: mean,
                });
                println!(
                    "rl-learner: step {}, mean greedy return {mean:.1}",
                    progress.steps
                );
                if o.task.threshold().is_some_and(|t| mean >= t) && progress.solved_at.is_none() {
                    progress.solved_at = Some(progress.steps);
                }
                clock = Instant::now();
            }
        }
        // Batches of several actors interleave: an n-step return never runs
        // from one actor's steps into another's.
        learner.cut();
        learn_seconds += clock.elapsed().as_secs_f64();
        progress.updates = learner.updates();
        send_credit(to, e.batch, learner.steps(), false)?;
        if !evaluating.is_zero() {
            // Nobody is heard while the learner evaluates: that time is not silence.
            eval_seconds += evaluating.as_secs_f64();
            let now = Instant::now();
            seen.values_mut()
                .for_each(|s| s.last = (s.last + evaluating).min(now));
        }
    }
    let wall_seconds = first_batch.map_or(0.0, |t| t.elapsed().as_secs_f64());
    progress.updates = learner.updates();
    let interrupted = !finished(&progress);
    if !interrupted {
        progress.finished = true;
        // Repeated: zenoh may still be sending the first when the process ends.
        for _ in 0..3 {
            send_credit((ALL_ACTORS, 0), 0, learner.steps(), true)?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    checkpoint(learner.as_ref(), &progress, &o.out)?;
    let report = LearnerReport {
        resumed_at,
        steps: progress.steps - resumed_at,
        updates: learner.updates() - updates_at_start,
        learn_seconds,
        wall_seconds,
        eval_seconds,
        ignored,
        max_lead,
        progress,
    };
    let path = o.out.join("report.toml");
    std::fs::write(
        &path,
        toml::to_string(&report).context("cannot write the report")?,
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(report)
}

/// What a batch must fit.
struct Shape {
    obs_dim: usize,
    action_dim: usize,
    task: String,
    key: String,
}

/// A batch from the wire, or `None` (counted in `ignored`, said in the log)
/// for a malformed one, one from no actor's number or of another task's shape.
fn admit(bytes: &[u8], shape: &Shape, ignored: &mut u64) -> Option<Experience> {
    let e = match decode::<Experience>(bytes) {
        Ok((_, e)) => e,
        Err(err) => {
            *ignored += 1;
            warn!("a malformed batch on {}: {err}", shape.key);
            return None;
        }
    };
    if e.actor == 0 || e.actor == ALL_ACTORS {
        *ignored += 1;
        warn!(
            "a batch from actor number {}, which no actor has: ignored",
            e.actor
        );
        return None;
    }
    if e.obs_dim as usize != shape.obs_dim || e.action_dim as usize != shape.action_dim {
        *ignored += 1;
        warn!(
            actor = e.actor,
            "a batch of {}-wide observations and {}-wide actions, where {} takes {} and {}: another task's actor? ignored",
            e.obs_dim,
            e.action_dim,
            shape.task,
            shape.obs_dim,
            shape.action_dim
        );
        return None;
    }
    Some(e)
}

/// The checkpoint to resume from: `checkpoint/`, or `checkpoint.old/` when a
/// save was cut between its two renames.
fn resume_from(out: &Path) -> Option<PathBuf> {
    ["checkpoint", "checkpoint.old"]
        .iter()
        .map(|d| out.join(d))
        .find(|d| d.join("learner.toml").is_file())
}

/// The progress saved in a checkpoint folder (`learner.toml`).
pub fn read_progress(dir: &Path) -> Result<Progress> {
    let path = dir.join("learner.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// Save the networks and the progress into `out/checkpoint` whole: written
/// beside it, then swapped in by renames.
fn checkpoint(learner: &dyn Learner, progress: &Progress, out: &Path) -> Result<()> {
    let (dir, partial, old) = (
        out.join("checkpoint"),
        out.join("checkpoint.partial"),
        out.join("checkpoint.old"),
    );
    // A save cut between its renames left the last whole checkpoint as `old`:
    // it goes back in place before anything else is touched.
    if !dir.is_dir() && old.join("learner.toml").is_file() {
        std::fs::rename(&old, &dir).with_context(|| format!("cannot move {}", old.display()))?;
    }
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot make {}", partial.display()))?;
    learner.save(&partial)?;
    let text = toml::to_string(progress).context("cannot write the progress")?;
    std::fs::write(partial.join("learner.toml"), text)
        .with_context(|| format!("cannot write {}", partial.join("learner.toml").display()))?;
    sync_folder(&partial)?;
    let _ = std::fs::remove_dir_all(&old);
    if dir.is_dir() {
        std::fs::rename(&dir, &old).with_context(|| format!("cannot move {}", dir.display()))?;
    }
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("cannot move {} into place", partial.display()))?;
    sync_folder(out)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Flush a folder's files and the folder itself to the disk: a checkpoint
/// renamed into place after a power cut holds whole files.
fn sync_folder(dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::File::open(e.path())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot flush {}", e.path().display()))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {}", dir.display()))
}

/// The run folder's lock: `learner.lock`, locked by the OS for the process's
/// life (released by the kernel however it ends) and holding its process id
/// for the message. Two learners on one folder would overwrite each other's
/// checkpoints.
struct FolderLock(#[allow(dead_code)] std::fs::File);

impl FolderLock {
    fn take(out: &Path) -> Result<FolderLock> {
        let path = out.join("learner.lock");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if let Err(e) = f.try_lock() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "{}: another learner (process {}) runs on this folder ({e})",
                out.display(),
                holder.trim()
            );
        }
        use std::io::{Seek as _, Write as _};
        f.set_len(0)
            .and_then(|()| f.rewind())
            .and_then(|()| writeln!(f, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(FolderLock(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_cut_between_its_renames_is_resumed_from_the_old_one() {
        let out = std::env::temp_dir().join(format!("rl-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(out.join("checkpoint.old")).unwrap();
        assert_eq!(
            resume_from(&out),
            None,
            "no progress file: nothing to resume"
        );
        std::fs::write(out.join("checkpoint.old/learner.toml"), "").unwrap();
        assert_eq!(resume_from(&out), Some(out.join("checkpoint.old")));
        std::fs::create_dir_all(out.join("checkpoint")).unwrap();
        std::fs::write(out.join("checkpoint/learner.toml"), "").unwrap();
        assert_eq!(resume_from(&out), Some(out.join("checkpoint")));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
