//! `agent node actor`: the environment and the learner's latest acting
//! network; steps in batches to the learner, under its credit.

use super::msg::{ALL_ACTORS, Credit, Experience};
use super::{Keys, Task, actor_seed};
use anyhow::{Context as _, Result, bail};
use bus::Session;
use bus::msg::Weights;
use bus::wire::{Header, decode, encode};
use bus::zenoh::Wait as _;
use bus::zenoh::qos::CongestionControl;
use rl::env::ActionSpace;
use rl::learner::Learner;
use rl::replay::Transition;
use rl::train::{TrainConfig, make_learner};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::info;

/// What an actor runs.
#[derive(Debug, Clone)]
pub struct ActorOptions {
    /// The run's name (its keys, [`Keys`]).
    pub run: String,
    /// The task.
    pub task: Task,
    /// This actor's number, unique in the run (1, 2, ...).
    pub actor: u32,
    /// The run's seed (this actor's own follows from it and its number).
    pub seed: u64,
    /// Environment steps per batch.
    pub batch: usize,
    /// Batches that may wait for the learner's credit before the actor waits.
    pub max_in_flight: u64,
    /// The learner's settings (the acting network's shape).
    pub config: TrainConfig,
    /// Silence of the learner after which the actor gives up.
    pub learner_timeout: Duration,
}

/// What an actor did.
#[derive(Debug, Clone, Default)]
pub struct ActorReport {
    /// Environment steps taken.
    pub steps: u64,
    /// Batches sent.
    pub batches: u64,
    /// Episodes finished.
    pub episodes: u64,
    /// Weights versions taken.
    pub weights_taken: u64,
    /// The learner said training ended.
    pub learner_done: bool,
    /// Most environment steps this actor had sent that the learner had not
    /// yet taken (at most `max_in_flight × batch`).
    pub max_ahead: u64,
    /// The last weights version taken (a learner's restart count in its top
    /// bits, see [`super::learner`]).
    pub weights_version: u64,
}

/// What the learner last told this actor.
#[derive(Debug, Default)]
struct Heard {
    /// Highest batch it has taken.
    taken: u64,
    /// Its environment steps.
    learner_steps: u64,
    /// Training ended.
    done: bool,
    /// When credit last arrived.
    at: Option<Instant>,
}

/// How often an actor whose credit stopped asks again.
const ASK_EVERY: Duration = Duration::from_secs(2);

/// Run one actor until the learner ends the run, `stop` is set, or the
/// learner stays silent for `learner_timeout`.
pub fn run(session: &Session, o: &ActorOptions, stop: &AtomicBool) -> Result<ActorReport> {
    if o.actor == ALL_ACTORS || o.actor == 0 {
        bail!(
            "--actor {}: actor numbers are 1 ..= {}",
            o.actor,
            ALL_ACTORS - 1
        );
    }
    if o.batch == 0 || o.batch > super::msg::MAX_STEPS {
        bail!("--batch {}: 1 ..= {}", o.batch, super::msg::MAX_STEPS);
    }
    if o.max_in_flight == 0 {
        bail!("--max-in-flight must be at least 1");
    }
    // This process's own number: credit meant for an earlier process with the
    // same actor number (restarted) is not taken for this one's.
    let me_session = bus::now_ns() ^ (u64::from(std::process::id()) << 32);
    let keys = Keys::new(&o.run)?;
    let mut env = o.task.train_env()?;
    // A family's training instances in turn, one episode each.
    let instances = env.instances().max(1) as u64;
    let action_dim = match env.action_space() {
        ActionSpace::Discrete(_) => 1,
        ActionSpace::Continuous(k) => k,
    };
    let seed = actor_seed(o.seed, o.actor);
    // Acting is one observation at a time: the CPU backend.
    let device = crate::device::device(crate::device::Backend::Cpu)?;
    let mut policy = make_learner(env.as_ref(), &o.config, &device, seed)?;

    let publisher = session
        .declare_publisher(keys.experience.clone())
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| anyhow::anyhow!("cannot publish on {}: {e}", keys.experience))?;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let me = o.actor;
    let _credit = {
        let heard = heard.clone();
        session
            .declare_subscriber(keys.credit.clone())
            .callback(move |s| {
                let Ok((_, c)) = decode::<Credit>(&s.payload().to_bytes()) else {
                    return;
                };
                if c.actor != ALL_ACTORS && (c.actor != me || c.session != me_session) {
                    return;
                }
                let mut h = heard.lock().unwrap_or_else(PoisonError::into_inner);
                if c.actor == me {
                    h.taken = h.taken.max(c.batch);
                }
                // The newest word: a learner resumed from its checkpoint counts
                // from there.
                h.learner_steps = c.learner_steps;
                h.done |= c.done;
                h.at = Some(Instant::now());
            })
            .wait()
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {}: {e}", keys.credit))?
    };
    let latest: Arc<Mutex<Option<Weights>>> = Arc::new(Mutex::new(None));
    let _weights = {
        let latest = latest.clone();
        let want = o.task.network();
        session
            .declare_subscriber(keys.weights.clone())
            .callback(move |s| {
                let Ok((_, w)) = decode::<Weights>(&s.payload().to_bytes()) else {
                    return;
                };
                if w.network != want {
                    return;
                }
                let mut l = latest.lock().unwrap_or_else(PoisonError::into_inner);
                if l.as_ref().is_none_or(|old| w.version > old.version) {
                    *l = Some(w);
                }
            })
            .wait()
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {}: {e}", keys.weights))?
    };
    let obs_dim = env.obs_dim();
    let send = |batch: u64, steps: Vec<Transition>| -> Result<()> {
        let e = Experience {
            actor: o.actor,
            session: me_session,
            batch,
            obs_dim: obs_dim as u32,
            action_dim: action_dim as u32,
            steps,
        };
        publisher
            .put(encode(
                &Header {
                    seq: batch,
                    stamp_ns: bus::now_ns(),
                    frame_id: String::new(),
                },
                &e,
            ))
            .wait()
            .map_err(|e| anyhow::anyhow!("cannot send a batch: {e}"))
    };

    // Greet the learner until its weights arrive.
    let mut report = ActorReport::default();
    let started = Instant::now();
    let mut asked: Option<Instant> = None;
    info!(actor = o.actor, run = %o.run, "waiting for the learner's weights");
    while latest
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_none()
    {
        if stop.load(Ordering::Relaxed) {
            return Ok(report);
        }
        if heard.lock().unwrap_or_else(PoisonError::into_inner).done {
            report.learner_done = true;
            info!(actor = o.actor, "the learner had already ended the run");
            return Ok(report);
        }
        if started.elapsed() > o.learner_timeout {
            bail!(
                "no learner answered on {} within {:.0} s (is `agent node rl-learner --run {}` running, and are both connected to the same router?)",
                keys.experience,
                o.learner_timeout.as_secs_f64(),
                o.run
            );
        }
        if asked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            send_greeting(&publisher, o, me_session, (obs_dim, action_dim), 0)?;
            asked = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut version = 0u64;
    let mut episode = 0u64;
    let mut obs = env.reset(0, seed)?;
    let mut batch_no = 0u64;
    let scratch = crate::scratch::Scratch::new("rl-weights")?;
    let mut waiting_since: Option<Instant> = None;
    let mut asked: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (taken, learner_steps, done, last_heard) = {
            let h = heard.lock().unwrap_or_else(PoisonError::into_inner);
            (h.taken, h.learner_steps, h.done, h.at)
        };
        if done {
            report.learner_done = true;
            info!(actor = o.actor, "the learner ended the run");
            break;
        }
        let in_flight = batch_no - taken.min(batch_no);
        if in_flight >= o.max_in_flight {
            let since = *waiting_since.get_or_insert_with(Instant::now);
            // Silent since its last word, or since this wait began if later.
            let silent = last_heard
                .map_or(started.elapsed(), |t| t.elapsed())
                .min(since.elapsed());
            if silent > o.learner_timeout {
                bail!(
                    "the learner has been silent for {:.0} s ({} of this actor's batches unanswered)",
                    silent.as_secs_f64(),
                    in_flight
                );
            }
            // Ask again through the learner's queue: answered after the
            // batches before it by a busy learner, at once by a restarted one
            // (which never had the ones in flight: they are lost).
            if since.elapsed() >= ASK_EVERY && asked.is_none_or(|t| t.elapsed() >= ASK_EVERY) {
                send_greeting(&publisher, o, me_session, (obs_dim, action_dim), batch_no)?;
                asked = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if let Some(since) = waiting_since.take()
            && since.elapsed() >= ASK_EVERY
        {
            info!(
                actor = o.actor,
                waited_s = since.elapsed().as_secs_f64(),
                "the learner answered again"
            );
        }
        // Newer weights, between two batches.
        let offered = latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_if(|w| w.version > version);
        if let Some(w) = offered {
            // Weights that do not load are the learner's network of another
            // shape: every later version would be refused too.
            import(policy.as_mut(), &scratch, &w.bpk).with_context(|| {
                format!(
                    "the learner's weights v{} do not fit this actor's network (give the actor the learner's --config)",
                    w.version
                )
            })?;
            version = w.version;
            report.weights_taken += 1;
            report.weights_version = version;
        }
        policy.follow_steps(learner_steps);

        let mut steps = Vec::with_capacity(o.batch);
        for _ in 0..o.batch {
            let act = policy.act(&obs, true);
            let st = env.step(&act)?;
            let end = st.terminated || st.truncated;
            steps.push(Transition::from_step(std::mem::take(&mut obs), &act, &st));
            report.steps += 1;
            obs = if end {
                episode += 1;
                report.episodes += 1;
                env.reset((episode % instances) as usize, seed.wrapping_add(episode))?
            } else {
                st.obs
            };
        }
        batch_no += 1;
        send(batch_no, steps)?;
        report.batches = batch_no;
        report.max_ahead = report
            .max_ahead
            .max((batch_no - taken.min(batch_no)) * o.batch as u64);
    }
    Ok(report)
}

/// An empty batch: a greeting (`batch` 0) or a question whether `batch` was taken.
fn send_greeting(
    publisher: &bus::zenoh::pubsub::Publisher<'_>,
    o: &ActorOptions,
    session: u64,
    (obs_dim, action_dim): (usize, usize),
    batch: u64,
) -> Result<()> {
    let e = Experience {
        actor: o.actor,
        session,
        batch,
        obs_dim: obs_dim as u32,
        action_dim: action_dim as u32,
        steps: Vec::new(),
    };
    publisher
        .put(encode(&Header::default(), &e))
        .wait()
        .map_err(|e| anyhow::anyhow!("cannot greet the learner: {e}"))
}

/// Take weights' bytes into the acting network (through a private folder).
fn import(policy: &mut dyn Learner, dir: &crate::scratch::Scratch, bpk: &[u8]) -> Result<()> {
    let path = dir.path().join("policy.bpk");
    std::fs::write(&path, bpk).with_context(|| format!("cannot write {}", path.display()))?;
    policy.import_policy(&path)?;
    Ok(())
}
