//! SELFI on the running graph: the twin's goal-reaching camera, the SELFI
//! policy node (with weight swaps between control steps), the supervising
//! safety gate, and the online learner node that fine-tunes from what crosses
//! the bus and publishes new weights.
//!
//! Frame matching: every message of one camera frame carries that frame's
//! stamp (the scan and the setpoint keep the pair's header), so the learner
//! assembles transitions by stamp, whatever order they arrive in.

use crate::pipeline::{Notes, Policy, PolicyFrame, Velocity};
use crate::selfi::{COLLISION, EPISODE_START, GOAL_REACHED};
use anyhow::{Context as _, Result};
use bus::msg::{DepthScan, Event, Goal, Setpoint, State, StereoPair, Track, Tracks, Weights};
use bus::wire::Header;
use bus::{Inbox, Outbox, Session};
use rl::selfi::SelfiConfig;
use rl::selfi::data::{Walker, goal_in_heading, observation, scan_features, track_features};
use rl::selfi::model::Actor;
use rl::selfi::nav::{episode_context, resample_scan, supervise};
use rl::selfi::online::{Arm, OnlineLearner, Transition};
use sim::env::{Action, Env, EnvConfig, Task, Walkers};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::info;

/// Name of the network SELFI weights messages carry.
pub const NETWORK: &str = "selfi-actor";

/// Settings of the SELFI nodes.
#[derive(Debug, Clone)]
pub struct SelfiNodeOptions {
    /// The settings (plan, nav, online, reward).
    pub config: SelfiConfig,
    /// The offline phase's folder (models, actor, probe).
    pub offline: PathBuf,
    /// policy: add exploration noise to the executed command.
    pub explore: bool,
    /// policy: propose on `cmd/policy` for a supervising safety node.
    pub gated: bool,
    /// learner: where to save the actor (and when it stops).
    pub checkpoint: Option<PathBuf>,
    /// learner: publish weights every this many transitions once the actor learns.
    pub publish_every: u64,
    /// camera: seed of the rooms.
    pub seed: u64,
    /// camera: simulated seconds to run.
    pub seconds: f64,
}

/// The twin flying the goal-reaching task among walkers: publishes each frame's
/// pair, state, goal and tracked walkers (the people tracker of `nav.sensing`:
/// by default [`rl::selfi::tracking::DepthTracker`] on this pair's stereo depth), waits (up to 0.5 s wall time) for the setpoint that
/// answers the frame, steps, and says `episode start`, `collision` and
/// `goal reached` on `events` with the frame's stamp.
pub fn goal_camera_node(
    session: &Session,
    robot: &str,
    o: &SelfiNodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let cfg = &o.config;
    let mut pairs = Outbox::<StereoPair>::new(session, robot, bus::topics::CAMERA_STEREO)?;
    let mut states = Outbox::<State>::new(session, robot, bus::topics::STATE)?;
    let mut goals = Outbox::<Goal>::new(session, robot, bus::topics::GOAL)?;
    let mut events = Outbox::<Event>::new(session, robot, bus::topics::EVENTS)?;
    let mut tracks = Outbox::<Tracks>::new(session, robot, bus::topics::TRACKS)?;
    let mut setpoints = Inbox::<Setpoint>::new(session, robot, bus::topics::CMD_SETPOINT, 8)?;
    // The people tracker of `nav.sensing` (default: on the stereo depth of the
    // pair this node renders, as a tracker beside a robot's camera would run; never
    // the twin's walkers themselves).
    let mut senses = crate::selfi_senses::senses_for(cfg).make(cfg, o.seed)?;
    let mut env = Env::new(EnvConfig {
        render: true,
        task: Task::GoalReaching,
        control_hz: cfg.plan.control_hz,
        max_steps: cfg.nav.max_steps,
        walkers: Walkers {
            count: cfg.nav.walkers,
            speed: cfg.nav.walker_speed,
            radius: 0.25,
            yield_distance: cfg.nav.walker_yield,
        },
        ..EnvConfig::default()
    })?;
    let hz = cfg.plan.control_hz;
    let frames = (o.seconds * hz).round() as u64;
    let mut episode = 0u64;
    let reset = |env: &mut Env, episode: u64| {
        env.reset(
            &episode_context(cfg, o.seed, episode),
            sim::batch::episode_seed(o.seed, 8, episode),
        )
    };
    let mut obs = reset(&mut env, episode)?;
    let mut goal = world_goal(&obs);
    let mut new_episode = true;
    let (mut collisions, mut successes, mut unanswered) = (0u64, 0u64, 0u64);
    info!(robot, frames, "camera (twin, goal reaching) node up");
    for frame in 0..frames {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let stamp = (frame as f64 / hz * 1e9) as u64;
        if new_episode {
            events.send(
                stamp,
                "twin",
                &Event {
                    text: EPISODE_START.into(),
                },
            )?;
            senses.reset();
            new_episode = false;
        }
        let h = crate::nodes::publish_twin_frame(&mut pairs, &mut states, stamp, &obs)?;
        goals.send(stamp, "world", &Goal { position: goal })?;
        let seen = senses.sense(&obs, env.world(), 1.0 / hz)?.walkers;
        tracks.send(stamp, "world", &to_tracks(&seen))?;
        let action = crate::nodes::await_setpoint(&mut setpoints, &h)?;
        if action.is_none() {
            unanswered += 1;
        }
        let r = env.step(&action.unwrap_or(Action::Velocity {
            forward: 0.0,
            left: 0.0,
            up: 0.0,
            yaw_rate: 0.0,
        }))?;
        for (flag, text) in [
            (r.info.collision, COLLISION),
            (r.info.success, GOAL_REACHED),
        ] {
            if flag {
                events.send(stamp, "twin", &Event { text: text.into() })?;
            }
        }
        collisions += u64::from(r.info.collision);
        successes += u64::from(r.info.success);
        if r.terminated || r.truncated {
            episode += 1;
            obs = reset(&mut env, episode)?;
            goal = world_goal(&obs);
            new_episode = true;
        } else {
            obs = r.obs;
        }
    }
    println!(
        "twin (goal reaching): {frames} frames, {episode} episodes ended, {successes} goals, {collisions} collisions, {unanswered} frames without a setpoint"
    );
    Ok(())
}

fn world_goal(obs: &sim::env::Observation) -> [f64; 3] {
    let p = obs.pose.position;
    let yaw = f64::from(obs.attitude[2]);
    let (s, c) = yaw.sin_cos();
    let g = obs.goal;
    [
        p[0] + c * f64::from(g[0]) - s * f64::from(g[1]),
        p[1] + s * f64::from(g[0]) + c * f64::from(g[1]),
        p[2] + f64::from(g[2]),
    ]
}

/// Walkers as a tracks message.
pub fn to_tracks(walkers: &[Walker]) -> Tracks {
    Tracks {
        tracks: walkers
            .iter()
            .map(|w| Track {
                id: w.id,
                position: w.position,
                velocity: w.velocity,
            })
            .collect(),
    }
}

/// A tracks message as walkers.
pub fn from_tracks(t: &Tracks) -> Vec<Walker> {
    t.tracks
        .iter()
        .map(|t| Walker {
            id: t.id,
            position: t.position,
            velocity: t.velocity,
        })
        .collect()
}

/// The observation the SELFI networks take, from what the bus carries.
pub fn bus_observation(
    scan: &[f32],
    prev: Option<&[f32]>,
    state: &State,
    goal: &Goal,
    tracks: &Tracks,
) -> Result<Vec<f32>> {
    let feats = scan_features(scan, prev)?;
    let pose = [
        state.position[0],
        state.position[1],
        crate::selfi::yaw_from_quat(state.attitude),
    ];
    Ok(observation(
        &feats,
        [state.velocity[0], state.velocity[1]],
        goal_in_heading(pose, [goal.position[0], goal.position[1]]),
        &track_features(pose, &from_tracks(tracks)),
    ))
}

/// Load weights from a message's bytes into an actor of the configured shape.
pub fn actor_from_bytes(
    bpk: &[u8],
    cfg: &SelfiConfig,
    device: &burn::tensor::Device,
) -> Result<Actor> {
    // Through a private folder: no other user reads or plants the weights.
    let dir = crate::scratch::Scratch::new("selfi-weights")?;
    let tmp = dir.path().join("weights.bpk");
    std::fs::write(&tmp, bpk).with_context(|| format!("cannot write {}", tmp.display()))?;
    Ok(rl::selfi::online::load_actor(
        &tmp,
        &cfg.offline.actor_hidden,
        cfg.plan.horizon,
        device,
    )?)
}

/// Whether the policy takes `w` while it flies version `current`: weights
/// for its own network, newer than what it flies.
pub fn weights_verdict(current: u64, w: &Weights) -> Result<(), String> {
    if w.network != NETWORK {
        return Err(format!("they are for `{}`, not `{NETWORK}`", w.network));
    }
    if w.version <= current {
        return Err(format!("not newer than v{current}"));
    }
    Ok(())
}

/// The actor's bytes as a burnpack file.
pub fn actor_bytes(actor: &Actor) -> Result<Vec<u8>> {
    let dir = crate::scratch::Scratch::new("selfi-publish")?;
    let tmp = dir.path().join("actor.bpk");
    actor.save(&tmp)?;
    std::fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))
}

/// The SELFI actor as a policy of the loop ([`Policy`]): the depth scan,
/// state, goal and tracked people of a frame in; the plan's first command out
/// (exploration noise added when asked), with the loop's altitude hold at
/// SELFI's altitude. Without a state, a goal or tracks it has no answer: the
/// actor was trained with a people tracker, and would fly blind to walkers
/// without one. Weights arriving on `policy/weights` are taken between two
/// frames ([`Policy::idle`]): for its network, newer than the flying ones,
/// and giving a finite plan, else refused and said so.
pub struct SelfiPolicy {
    cfg: SelfiConfig,
    device: burn::tensor::Device,
    actor: Actor,
    version: u64,
    weights: Option<Inbox<Weights>>,
    explore: bool,
    rng: sim::rng::Rng,
    hold: crate::pipeline::AltitudeHold,
    prev: Option<Vec<f32>>,
    last_obs: Option<Vec<f32>>,
}

impl SelfiPolicy {
    /// The offline phase's actor of `o.offline`; weights from `weights` when given.
    pub fn load(o: &SelfiNodeOptions, weights: Option<Inbox<Weights>>) -> Result<Self> {
        let cfg = o.config.clone();
        let device = crate::device::device(crate::device::Backend::Cpu)?;
        let actor_path = o.offline.join("actor.bpk");
        let actor = rl::selfi::online::load_actor(
            &actor_path,
            &cfg.offline.actor_hidden,
            cfg.plan.horizon,
            &device,
        )
        .with_context(|| format!("cannot load the SELFI actor {}", actor_path.display()))?;
        // SELFI's altitude law: 1.5 /s of climb per metre, at most 0.8 m/s.
        let hold = crate::pipeline::AltitudeHold {
            altitude: cfg.plan.altitude,
            gain: 1.5,
            limit: 0.8,
        };
        Ok(Self {
            device,
            actor,
            version: 0,
            weights,
            explore: o.explore,
            rng: sim::rng::Rng::new(o.seed ^ 0x9011),
            hold,
            prev: None,
            last_obs: None,
            cfg,
        })
    }

    /// The weights' version flying now (0: the offline actor).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Take `w` if it passes, saying what happened.
    fn offer(&mut self, w: &Weights, notes: &mut Notes) {
        // Only the authorised learner can publish here on a secured graph
        // (the router's access control); versions only move forward, so a
        // replayed or stale message never rolls the policy back.
        if let Err(why) = weights_verdict(self.version, w) {
            notes.say(format!("weights v{} refused: {why}", w.version));
            return;
        }
        let candidate = actor_from_bytes(&w.bpk, &self.cfg, &self.device).and_then(|a| {
            // Weights that give a non-finite plan (NaN from a diverged
            // learner) never fly.
            if let Some(o) = &self.last_obs
                && a.plan(o, &self.device).iter().any(|v| !v.is_finite())
            {
                anyhow::bail!("they give a non-finite plan");
            }
            Ok(a)
        });
        match candidate {
            Ok(a) => {
                self.actor = a;
                self.version = w.version;
                notes.say(format!("weights v{} swapped in", self.version));
            }
            Err(e) => notes.say(format!(
                "weights v{} refused, flying v{}: {e:#}",
                w.version, self.version
            )),
        }
    }
}

impl Policy for SelfiPolicy {
    fn name(&self) -> &'static str {
        "SELFI actor"
    }

    fn idle(&mut self, notes: &mut Notes) {
        let mut offered = Vec::new();
        if let Some(inbox) = self.weights.as_mut() {
            loop {
                match inbox.recv_timeout(Duration::ZERO) {
                    Ok(Some((_, w))) => offered.push(w),
                    Ok(None) => break,
                    Err(e) => {
                        notes.say(format!("weights inbox closed: {e}"));
                        self.weights = None;
                        break;
                    }
                }
            }
        }
        for w in &offered {
            self.offer(w, notes);
        }
    }

    fn act(&mut self, frame: &PolicyFrame<'_>) -> Option<Velocity> {
        let (Some(s), Some(g), Some(t)) = (frame.state, frame.goal, frame.tracks) else {
            return None;
        };
        let beams = resample_scan(frame.scan);
        let obs = match bus_observation(&beams, self.prev.as_deref(), s, g, t) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("SELFI: scan skipped: {e:#}");
                return None;
            }
        };
        self.prev = Some(beams);
        let plan = self.actor.plan(&obs, &self.device);
        self.last_obs = Some(obs);
        let mut a0 = [plan[0], plan[1]];
        if self.explore {
            for v in &mut a0 {
                *v = (*v + (self.rng.normal() * self.cfg.online.explore_noise) as f32)
                    .clamp(-1.0, 1.0);
            }
        }
        let (forward, yaw_rate) = self.cfg.plan.command(a0);
        Some(Velocity {
            forward,
            left: 0.0,
            up: self.hold.up(s.position[2]),
            yaw_rate,
        })
    }

    fn new_episode(&mut self) {
        self.prev = None;
    }
}

/// The SELFI policy node: the pilot stage flying [`SelfiPolicy`] on stereo
/// (the switch never hands SELFI the mono cue: its actor was trained on
/// stereo scans) on the zenoh executor, its input joined with the goal and
/// the tracks; proposals on `cmd/policy` for a supervising safety node when
/// `gated`, else setpoints.
pub fn selfi_policy_node(
    session: &Session,
    robot: &str,
    loop_cfg: &crate::pipeline::LoopConfig,
    o: &SelfiNodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let weights = Inbox::<Weights>::new(session, robot, bus::topics::WEIGHTS, 2)?;
    let policy = SelfiPolicy::load(o, Some(weights))?;
    let out = Outbox::<Setpoint>::new(
        session,
        robot,
        if o.gated {
            bus::topics::CMD_POLICY
        } else {
            bus::topics::CMD_SETPOINT
        },
    )?;
    let pilot = crate::pipeline::Pilot::new(
        loop_cfg.persist,
        crate::persist::Strategy::StereoOnly,
        o.config.plan.control_hz,
        loop_cfg.avoid,
    )
    .with_policy(Box::new(policy));
    let inputs = crate::nodes::PilotInputs::new(session, robot, false, Duration::ZERO)?
        .with_navigation(session, robot)?;
    info!(robot, actor = %o.offline.join("actor.bpk").display(), gated = o.gated, "SELFI policy");
    crate::nodes::serve(
        session,
        robot,
        pilot,
        inputs,
        |h, d, _| match d.setpoint() {
            Some(sp) => Ok(out.send_with(h, &sp)?),
            None => Ok(()),
        },
        stop,
    )?;
    Ok(())
}

/// The supervising gate (part of the safety node): each proposal on
/// `cmd/policy` is passed on to `cmd/setpoint` (frame id `policy`) unless the
/// supervisor rule fires on the scan of the same frame, in which case its own
/// command goes out (frame id `supervisor`) and a take-over's first frame is
/// announced as `intervention` on `events`. It fails closed: a proposal whose
/// scan has not arrived within [`SCAN_WAIT`] (or is empty) cannot be checked,
/// so the gate commands hover instead (frame id `supervisor`, counted in
/// `unchecked`, said on `events`).
pub struct Gate {
    cfg: SelfiConfig,
    scans: Inbox<DepthScan>,
    states: Inbox<State>,
    proposals: Inbox<Setpoint>,
    out: Outbox<Setpoint>,
    events: Outbox<Event>,
    recent: BTreeMap<u64, Vec<f32>>,
    pending: std::collections::VecDeque<(Instant, Header, Setpoint)>,
    forward: f64,
    in_takeover: bool,
    /// Take-overs begun.
    pub interventions: u64,
    /// Proposals that could not be checked (no scan of their frame): hover sent instead.
    pub unchecked: u64,
}

/// How long a proposal waits for the scan of its frame before the gate gives up
/// on checking it and commands hover.
pub const SCAN_WAIT: Duration = Duration::from_millis(100);

impl Gate {
    /// Subscribe and declare.
    pub fn new(session: &Session, robot: &str, cfg: &SelfiConfig) -> Result<Gate> {
        Ok(Gate {
            cfg: cfg.clone(),
            scans: Inbox::new(session, robot, bus::topics::DEPTH_STEREO, 8)?,
            states: Inbox::new(session, robot, bus::topics::STATE, 4)?,
            proposals: Inbox::new(session, robot, bus::topics::CMD_POLICY, 8)?,
            out: Outbox::new(session, robot, bus::topics::CMD_SETPOINT)?,
            events: Outbox::new(session, robot, bus::topics::EVENTS)?,
            recent: BTreeMap::new(),
            pending: Default::default(),
            forward: 0.0,
            in_takeover: false,
            interventions: 0,
            unchecked: 0,
        })
    }

    /// Handle whatever arrived; never blocks.
    pub fn poll(&mut self) -> Result<()> {
        while let Some((h, s)) = self.scans.recv_timeout(Duration::ZERO)? {
            // A scan with no reading at all (empty, or every column unknown)
            // checks nothing: kept empty, so its proposal gets hover.
            let known = s.depth.iter().any(|d| d.is_finite() && *d > 0.0);
            let beams = if known {
                resample_scan(&s.depth)
            } else {
                Vec::new()
            };
            self.recent.insert(h.stamp_ns, beams);
            while self.recent.len() > 16 {
                self.recent.pop_first();
            }
        }
        while let Some((_, s)) = self.states.recv_timeout(Duration::ZERO)? {
            self.forward = f64::from(s.velocity[0]);
        }
        while let Some((h, p)) = self.proposals.recv_timeout(Duration::ZERO)? {
            self.pending.push_back((Instant::now(), h, p));
        }
        let waiting = std::mem::take(&mut self.pending);
        let crowded = waiting.len().saturating_sub(16);
        for (k, (t, h, p)) in waiting.into_iter().enumerate() {
            let scan = self
                .recent
                .get(&h.stamp_ns)
                .filter(|s| !s.is_empty())
                .cloned();
            if scan.is_some() || k < crowded || t.elapsed() >= SCAN_WAIT {
                self.decide(h, p, scan.as_deref())?;
            } else {
                self.pending.push_back((t, h, p));
            }
        }
        Ok(())
    }

    /// Sends what goes out for proposal `p` (header `h`) given its frame's scan.
    fn decide(&mut self, h: Header, p: Setpoint, scan: Option<&[f32]>) -> Result<()> {
        let mut out_h = h.clone();
        let Some(scan) = scan else {
            self.unchecked += 1;
            out_h.frame_id = "supervisor".into();
            if self.unchecked.is_power_of_two() {
                self.events.send(
                    h.stamp_ns,
                    "safety",
                    &Event {
                        text: format!(
                            "safety: proposal {} has no scan to check it against: hover ({} so far)",
                            h.seq, self.unchecked
                        ),
                    },
                )?;
            }
            self.in_takeover = false;
            return Ok(self.out.send_with(&out_h, &Setpoint::HOVER)?);
        };
        let proposed = (f64::from(p.forward), f64::from(p.yaw_rate));
        let take = supervise(&self.cfg, scan, self.forward, proposed);
        let sp = match take {
            Some((forward, yaw_rate)) => {
                out_h.frame_id = "supervisor".into();
                if !self.in_takeover {
                    self.interventions += 1;
                    self.events.send(
                        h.stamp_ns,
                        "safety",
                        &Event {
                            text: "intervention".into(),
                        },
                    )?;
                }
                Setpoint {
                    forward: forward as f32,
                    left: 0.0,
                    up: p.up,
                    yaw_rate: yaw_rate as f32,
                }
            }
            None => {
                out_h.frame_id = "policy".into();
                p
            }
        };
        self.in_takeover = take.is_some();
        Ok(self.out.send_with(&out_h, &sp)?)
    }
}

#[derive(Default, Debug, Clone)]
struct Slot {
    scan: Option<Vec<f32>>,
    state: Option<State>,
    goal: Option<Goal>,
    tracks: Option<Tracks>,
    command: Option<(Setpoint, bool)>,
    proposal: Option<Setpoint>,
    start: bool,
    collision: bool,
    success: bool,
}

impl Slot {
    fn ready(&self) -> bool {
        self.scan.is_some() && self.state.is_some() && self.goal.is_some() && self.tracks.is_some()
    }
}

/// One transition assembled from the bus. An empty `obs` marks only the end
/// of a flight cut off by time (its `episode_return` counts for the rollback
/// rule; there is nothing to learn from it).
#[derive(Debug, Clone, PartialEq)]
pub struct BusTransition {
    /// Observation of the frame.
    pub obs: Vec<f32>,
    /// Executed command, normalised.
    pub a0: [f32; 2],
    /// Observation of the next frame (a copy of `obs` at a terminal frame).
    pub next_obs: Vec<f32>,
    /// Reward without the intervention part.
    pub reward: f32,
    /// The intervention penalty (when a take-over began at this frame).
    pub intervention_penalty: f32,
    /// The episode ended here (collision or goal).
    pub done: bool,
    /// The supervisor chose the command.
    pub supervised: bool,
    /// The episode's return so far, when it ended here or was cut off before the next frame.
    pub episode_return: Option<f64>,
    /// At a take-over's first frame: the policy's refused command, normalised.
    pub rejected: Option<[f32; 2]>,
}

/// Builds transitions from a frame's messages, matched by stamp.
pub struct Assembler {
    cfg: SelfiConfig,
    slots: BTreeMap<u64, Slot>,
    prev_scan: Option<Vec<f32>>,
    prev_supervised: bool,
    ret: f64,
    /// Frames dropped because a message never came.
    pub incomplete: u64,
}

impl Assembler {
    /// Empty.
    pub fn new(cfg: &SelfiConfig) -> Assembler {
        Assembler {
            cfg: cfg.clone(),
            slots: BTreeMap::new(),
            prev_scan: None,
            prev_supervised: false,
            ret: 0.0,
            incomplete: 0,
        }
    }

    fn slot(&mut self, stamp: u64) -> &mut Slot {
        self.slots.entry(stamp).or_default()
    }

    /// A depth scan of frame `stamp` (any width).
    pub fn scan(&mut self, stamp: u64, depth: &[f32]) {
        self.slot(stamp).scan = Some(resample_scan(depth));
    }
    /// The state of frame `stamp`.
    pub fn state(&mut self, stamp: u64, s: State) {
        self.slot(stamp).state = Some(s);
    }
    /// The goal of frame `stamp`.
    pub fn goal(&mut self, stamp: u64, g: Goal) {
        self.slot(stamp).goal = Some(g);
    }
    /// The tracked walkers of frame `stamp`.
    pub fn tracks(&mut self, stamp: u64, t: Tracks) {
        self.slot(stamp).tracks = Some(t);
    }
    /// The executed setpoint of frame `stamp`.
    pub fn setpoint(&mut self, stamp: u64, s: Setpoint, supervised: bool) {
        self.slot(stamp).command = Some((s, supervised));
    }
    /// The policy's proposal of frame `stamp` (`cmd/policy`).
    pub fn proposal(&mut self, stamp: u64, s: Setpoint) {
        self.slot(stamp).proposal = Some(s);
    }
    /// An event with the stamp of its frame.
    pub fn event(&mut self, stamp: u64, text: &str) {
        match text {
            EPISODE_START => self.slot(stamp).start = true,
            COLLISION => self.slot(stamp).collision = true,
            GOAL_REACHED => self.slot(stamp).success = true,
            _ => {}
        }
    }

    /// Transitions whose frames are complete, oldest first. A frame waits for
    /// its successor; frames more than `keep` behind the newest are given up.
    pub fn drain(&mut self, keep: usize) -> Vec<BusTransition> {
        let mut out = Vec::new();
        loop {
            let mut it = self.slots.iter();
            let (Some((&t0, s0)), next) = (it.next(), it.next()) else {
                break;
            };
            let complete0 = s0.ready() && s0.command.is_some();
            let terminal = s0.collision || s0.success;
            let next_ready = next.is_some_and(|(_, s)| s.ready());
            let next_start = next.is_some_and(|(_, s)| s.start);
            if !(complete0 && (terminal || next_ready || next_start)) {
                if self.slots.len() > keep {
                    self.slots.remove(&t0);
                    self.incomplete += 1;
                    self.prev_scan = None;
                    continue;
                }
                break;
            }
            let s0 = self.slots.remove(&t0).unwrap_or_default();
            if s0.start {
                self.prev_scan = None;
                self.prev_supervised = false;
                self.ret = 0.0;
            }
            let (Some(scan), Some(state), Some(goal), Some(tracks), Some((sp, supervised))) =
                (s0.scan, s0.state, s0.goal, s0.tracks, s0.command)
            else {
                continue;
            };
            let Ok(obs) = bus_observation(&scan, self.prev_scan.as_deref(), &state, &goal, &tracks)
            else {
                self.incomplete += 1;
                continue;
            };
            let w = &self.cfg.reward;
            let dist = |s: &State, g: &Goal| {
                ((g.position[0] - s.position[0]).powi(2) + (g.position[1] - s.position[1]).powi(2))
                    .sqrt()
            };
            let a0 = self
                .cfg
                .plan
                .normalise(f64::from(sp.forward), f64::from(sp.yaw_rate));
            let started = supervised && !self.prev_supervised;
            let penalty = if started { w.intervention } else { 0.0 };
            let rejected = s0.proposal.filter(|_| started).map(|p| {
                self.cfg
                    .plan
                    .normalise(f64::from(p.forward), f64::from(p.yaw_rate))
            });
            self.prev_supervised = supervised;
            let mut reward = 0.0;
            if s0.collision {
                reward += w.collision;
            }
            if s0.success {
                reward += w.success;
            }
            let (next_obs, episode_over) = if terminal || next_start {
                (obs.clone(), true)
            } else {
                let next = self.slots.values().next().cloned().unwrap_or_default();
                let (Some(ns), Some(nst), Some(nt)) = (
                    next.scan.as_ref(),
                    next.state.as_ref(),
                    next.tracks.as_ref(),
                ) else {
                    continue;
                };
                reward += w.progress * (dist(&state, &goal) - dist(nst, &goal));
                match bus_observation(ns, Some(&scan), nst, &goal, nt) {
                    Ok(o) => (o, false),
                    Err(_) => {
                        self.incomplete += 1;
                        continue;
                    }
                }
            };
            self.prev_scan = Some(scan);
            self.ret += reward + penalty;
            let episode_return = episode_over.then_some(self.ret);
            if terminal || next_start {
                self.ret = 0.0;
            }
            // A flight cut off by time (next frame starts an episode without a
            // terminal event here) gives no transition: its value is unknown.
            if next_start && !terminal {
                out.push(BusTransition {
                    obs,
                    a0,
                    next_obs,
                    reward: 0.0,
                    intervention_penalty: 0.0,
                    done: false,
                    supervised,
                    episode_return,
                    rejected: None,
                });
                if let Some(last) = out.last_mut() {
                    last.obs.clear();
                }
                continue;
            }
            out.push(BusTransition {
                obs,
                a0,
                next_obs,
                reward: reward as f32,
                intervention_penalty: penalty as f32,
                done: terminal,
                supervised,
                episode_return,
                rejected,
            });
        }
        out
    }
}

/// The online learner node: assembles transitions from the bus, fine-tunes
/// with SELFI (Q = c·J + Q̄), and publishes the actor on `policy/weights`
/// every `publish_every` transitions once the actor is learning; the actor is
/// saved to the checkpoint when it publishes and when it stops.
pub fn selfi_learner_node(
    session: &Session,
    robot: &str,
    o: &SelfiNodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let cfg = &o.config;
    let device = crate::device::device(crate::device::Backend::Cpu)?;
    let bundle = rl::selfi::experiment::OfflineBundle::load(&o.offline, &device)
        .with_context(|| format!("cannot load the offline phase from {}", o.offline.display()))?;
    let mut learner = OnlineLearner::new(
        Arm::Selfi,
        cfg,
        &bundle.models,
        &bundle.actor,
        &bundle.probe,
        bundle.card.j_scale,
        &device,
        o.seed,
    )?;
    if let Some(c) = bundle.critics_for(Arm::Selfi, cfg) {
        learner.set_critics(c);
    }
    let mut scans = Inbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_STEREO, 64)?;
    let mut states = Inbox::<State>::new(session, robot, bus::topics::STATE, 64)?;
    let mut goals = Inbox::<Goal>::new(session, robot, bus::topics::GOAL, 64)?;
    let mut tracks_in = Inbox::<Tracks>::new(session, robot, bus::topics::TRACKS, 64)?;
    let mut setpoints = Inbox::<Setpoint>::new(session, robot, bus::topics::CMD_SETPOINT, 64)?;
    let mut proposals = Inbox::<Setpoint>::new(session, robot, bus::topics::CMD_POLICY, 64)?;
    let mut events_in = Inbox::<Event>::new(session, robot, bus::topics::EVENTS, 256)?;
    let mut weights = Outbox::<Weights>::new(session, robot, bus::topics::WEIGHTS)?;
    let mut asm = Assembler::new(cfg);
    let (mut transitions, mut version, mut episodes) = (0u64, 0u64, 0u64);
    let mut last_publish = 0u64;
    // The policy only takes newer versions: numbered from the start time (ms
    // since the epoch, times 1000), a restarted learner's weights are newer
    // than those of the run before it.
    let base = bus::now_ns() / 1_000_000 * 1000;
    info!(robot, offline = %o.offline.display(), "SELFI learner node up");
    let publish =
        |learner: &OnlineLearner, weights: &mut Outbox<Weights>, count: u64| -> Result<()> {
            let actor = learner.actor();
            weights.send(
                bus::now_ns(),
                "selfi-learner",
                &Weights {
                    version: base + count,
                    network: NETWORK.into(),
                    bpk: actor_bytes(&actor)?,
                },
            )?;
            if let Some(p) = &o.checkpoint {
                save_atomically(&actor, p)?;
            }
            Ok(())
        };
    while !stop.load(Ordering::Relaxed) {
        let mut got = false;
        while let Some((h, s)) = scans.recv_timeout(Duration::ZERO)? {
            asm.scan(h.stamp_ns, &s.depth);
            got = true;
        }
        while let Some((h, s)) = states.recv_timeout(Duration::ZERO)? {
            asm.state(h.stamp_ns, s);
        }
        while let Some((h, g)) = goals.recv_timeout(Duration::ZERO)? {
            asm.goal(h.stamp_ns, g);
        }
        while let Some((h, t)) = tracks_in.recv_timeout(Duration::ZERO)? {
            asm.tracks(h.stamp_ns, t);
        }
        while let Some((h, s)) = setpoints.recv_timeout(Duration::ZERO)? {
            asm.setpoint(h.stamp_ns, s, h.frame_id == "supervisor");
        }
        while let Some((h, s)) = proposals.recv_timeout(Duration::ZERO)? {
            asm.proposal(h.stamp_ns, s);
        }
        while let Some((h, e)) = events_in.recv_timeout(Duration::ZERO)? {
            asm.event(h.stamp_ns, &e.text);
        }
        for t in asm.drain(32) {
            if let Some(ret) = t.episode_return {
                episodes += 1;
                if learner.end_episode(ret) {
                    version += 1;
                    publish(&learner, &mut weights, version)?;
                }
            }
            if t.obs.is_empty() {
                continue;
            }
            let mut plan = learner.act(&t.obs, false);
            if let Some(r) = t.rejected {
                let mut refused = plan.clone();
                refused[0] = r[0];
                refused[1] = r[1];
                learner.observe_rejected(&t.obs, &refused, t.intervention_penalty)?;
            }
            plan[0] = t.a0[0];
            plan[1] = t.a0[1];
            learner.observe(
                Transition {
                    obs: t.obs,
                    plan,
                    reward: t.reward,
                    next_obs: t.next_obs,
                    done: t.done,
                    intervention: t.supervised,
                    refused: false,
                },
                t.intervention_penalty,
            )?;
            transitions += 1;
            let (_, actor_updates, _, _) = learner.counts();
            if actor_updates > 0 && transitions >= last_publish + o.publish_every {
                last_publish = transitions;
                version += 1;
                publish(&learner, &mut weights, version)?;
                info!(
                    version,
                    transitions, actor_updates, "published SELFI weights"
                );
            }
        }
        if !got {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(p) = &o.checkpoint {
        save_atomically(&learner.actor(), p)?;
    }
    let (updates, actor_updates, rejected, rollbacks) = learner.counts();
    println!(
        "selfi-learner: {transitions} transitions, {episodes} episodes, {updates} critic and {actor_updates} actor updates ({rejected} rejected, {rollbacks} rollbacks), {version} weight versions published, {} frames incomplete",
        asm.incomplete
    );
    Ok(())
}

fn save_atomically(actor: &Actor, path: &Path) -> Result<()> {
    let tmp = path.with_extension("bpk.partial");
    actor.save(&tmp)?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gate on a real session: a proposal with its frame's scan (open
    /// space) passes as the policy's; one whose scan never comes is not
    /// passed on but turned into hover by the supervisor.
    #[test]
    fn missing_scan_means_safe_action() {
        let s = bus::open(&bus::BusConfig::default()).unwrap();
        let robot = format!("gate{}", std::process::id());
        let mut gate = Gate::new(&s, &robot, &SelfiConfig::default()).unwrap();
        let mut proposals = Outbox::<Setpoint>::new(&s, &robot, bus::topics::CMD_POLICY).unwrap();
        let mut scans = Outbox::<DepthScan>::new(&s, &robot, bus::topics::DEPTH_STEREO).unwrap();
        let mut out = Inbox::<Setpoint>::new(&s, &robot, bus::topics::CMD_SETPOINT, 16).unwrap();
        let fast = Setpoint {
            forward: 1.5,
            left: 0.0,
            up: 0.0,
            yaw_rate: 0.0,
        };
        let mut next = |gate: &mut Gate| {
            let t0 = Instant::now();
            loop {
                gate.poll().unwrap();
                if let Some(m) = out.recv_timeout(Duration::from_millis(10)).unwrap() {
                    return m;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "the gate sent nothing"
                );
            }
        };
        let open = DepthScan {
            compute_ns: 0,
            depth: vec![20.0; 64],
        };
        scans.send(1, "stereo", &open).unwrap();
        proposals.send(1, "policy", &fast).unwrap();
        let (h, sp) = next(&mut gate);
        assert_eq!((h.stamp_ns, h.frame_id.as_str(), sp), (1, "policy", fast));
        proposals.send(2, "policy", &fast).unwrap();
        let (h, sp) = next(&mut gate);
        assert_eq!(
            (h.stamp_ns, h.frame_id.as_str(), sp),
            (2, "supervisor", Setpoint::HOVER)
        );
        // A scan that saw nothing (empty, or every column unknown) cannot
        // clear the way either.
        for (stamp, depth) in [(3, Vec::new()), (4, vec![f32::NAN; 64])] {
            scans
                .send(
                    stamp,
                    "stereo",
                    &DepthScan {
                        compute_ns: 0,
                        depth,
                    },
                )
                .unwrap();
            proposals.send(stamp, "policy", &fast).unwrap();
            let (h, sp) = next(&mut gate);
            assert_eq!((h.stamp_ns, sp), (stamp, Setpoint::HOVER));
        }
        assert_eq!((gate.unchecked, gate.interventions), (3, 0));
    }

    #[test]
    fn only_newer_weights_for_this_network_are_taken() {
        let w = |version: u64, network: &str| Weights {
            version,
            network: network.into(),
            bpk: Vec::new(),
        };
        assert!(weights_verdict(0, &w(1, NETWORK)).is_ok());
        assert!(weights_verdict(5, &w(6, NETWORK)).is_ok());
        assert!(weights_verdict(5, &w(5, NETWORK)).is_err(), "a replay");
        assert!(
            weights_verdict(5, &w(4, NETWORK)).is_err(),
            "an older version"
        );
        assert!(
            weights_verdict(0, &w(1, "mono")).is_err(),
            "another network"
        );
    }

    fn state(x: f64) -> State {
        State {
            position: [x, 0.0, 1.5],
            attitude: [1.0, 0.0, 0.0, 0.0],
            velocity: [1.0, 0.0, 0.0],
        }
    }

    fn frame(a: &mut Assembler, t: u64, x: f64, supervised: bool) {
        a.state(t, state(x));
        a.goal(
            t,
            Goal {
                position: [10.0, 0.0, 1.5],
            },
        );
        a.scan(t, &[5.0; 64]);
        a.tracks(
            t,
            Tracks {
                tracks: vec![Track {
                    id: 1,
                    position: [x + 2.0, 1.0],
                    velocity: [0.0, -0.8],
                }],
            },
        );
        a.setpoint(
            t,
            Setpoint {
                forward: 1.0,
                left: 0.0,
                up: 0.0,
                yaw_rate: 0.0,
            },
            supervised,
        );
    }

    #[test]
    fn transitions_assemble_by_stamp_in_any_order() {
        let cfg = SelfiConfig::default();
        let mut a = Assembler::new(&cfg);
        a.event(0, EPISODE_START);
        // Frame 1's messages arrive before frame 0's.
        frame(&mut a, 1, 0.2, false);
        assert!(a.drain(32).is_empty(), "frame 1 alone makes no transition");
        frame(&mut a, 0, 0.0, false);
        let t = a.drain(32);
        assert_eq!(t.len(), 1);
        assert!(
            (t[0].reward - 0.2).abs() < 1e-5,
            "progress 0.2 m: {}",
            t[0].reward
        );
        assert!(!t[0].done);
        // Frame 2: supervised, collides → terminal with the intervention penalty
        // and the policy's refused proposal.
        frame(&mut a, 2, 0.4, true);
        a.proposal(
            2,
            Setpoint {
                forward: 1.5,
                left: 0.0,
                up: 0.0,
                yaw_rate: 0.0,
            },
        );
        a.event(2, COLLISION);
        let t = a.drain(32);
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].intervention_penalty as f64, cfg.reward.intervention);
        assert!(t[1].done && t[1].supervised);
        assert_eq!(t[1].reward as f64, cfg.reward.collision);
        assert!(t[1].episode_return.is_some());
        assert_eq!(t[0].a0, cfg.plan.normalise(1.0, 0.0));
        assert_eq!(t[1].rejected, Some(cfg.plan.normalise(1.5, 0.0)));
        assert_eq!(t[0].rejected, None);
        // The walker 2 m ahead and 1 m left, walking right, is in the observation.
        let at = rl::selfi::TRACKS_AT;
        assert_eq!(&t[0].obs[at..at + 5], &[1.0, 0.4, 0.2, 0.0, -0.4]);
    }

    #[test]
    fn frames_with_a_missing_message_are_given_up() {
        let cfg = SelfiConfig::default();
        let mut a = Assembler::new(&cfg);
        a.scan(0, &[5.0; 32]); // no state, goal or command ever
        for t in 1..6 {
            frame(&mut a, t, t as f64 * 0.2, false);
        }
        // Frame 6 never gets its tracks: it is given up too.
        frame(&mut a, 6, 1.2, false);
        if let Some(s) = a.slots.get_mut(&6) {
            s.tracks = None;
        }
        for t in 7..9 {
            frame(&mut a, t, t as f64 * 0.2, false);
        }
        let out = a.drain(3);
        assert!(a.incomplete >= 2, "{}", a.incomplete);
        assert!(out.iter().all(|t| t.obs.len() == rl::selfi::OBS_DIM));
    }
}
