//! The policy node: the pilot stage (cue switch, then the policy) on the
//! zenoh executor, its frame's input joined from the stereo scan, the mono
//! scan of the same frame and the vehicle's state at it.

use super::NodeOptions;
use super::serve::{Source, serve};
use crate::persist::{Mode, Strategy, Switch};
use crate::pipeline::{LoopConfig, Pilot, PilotInput};
#[cfg(feature = "twin")]
use anyhow::Context as _;
use anyhow::Result;
use bus::msg::{DepthScan, Goal, Setpoint, State, Tracks};
use bus::{Inbox, Outbox, Session};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tracing::info;

/// A network trained by `agent train` as the loop's policy (`--policy-net`).
/// Unknown is not free here either: an unknown column reads as an obstacle at
/// the nearest range, and a blind way ahead allows no forward speed.
#[cfg(feature = "twin")]
struct LearnedPolicy {
    policy: rl::policy::OnboardPolicy,
    context: Vec<f32>,
    clock: rl::policy::DecisionClock,
    held: Option<(f64, f64)>,
    min_depth: f32,
    unknown_ahead: f64,
    hold: crate::pipeline::AltitudeHold,
}

#[cfg(feature = "twin")]
impl LearnedPolicy {
    fn load(opts: &NodeOptions, cfg: &LoopConfig) -> Result<Option<Self>> {
        let Some(p) = &opts.policy_net else {
            return Ok(None);
        };
        let device = crate::device::device(crate::device::Backend::Cpu)?;
        let policy = rl::policy::OnboardPolicy::load(p, &device)
            .with_context(|| format!("cannot load the policy network {}", p.display()))?;
        info!(net = %p.display(), learner = %policy.card().learner, "policy node flies a trained network");
        let context = opts.twin.as_ref().map_or_else(
            || sim::Context::default().to_vector(),
            |t| t.context.to_vector(),
        );
        // It decides at the rate it was trained at and holds its command in
        // between (every scan is still answered).
        let clock = rl::policy::DecisionClock::new(policy.card().control_hz);
        Ok(Some(Self {
            policy,
            context,
            clock,
            held: None,
            min_depth: cfg.mono.min_depth,
            unknown_ahead: cfg.avoid.unknown_ahead,
            hold: crate::pipeline::AltitudeHold::new(cfg.avoid.altitude),
        }))
    }
}

#[cfg(feature = "twin")]
impl crate::pipeline::Policy for LearnedPolicy {
    fn name(&self) -> &'static str {
        "trained network"
    }

    fn act(
        &mut self,
        frame: &crate::pipeline::PolicyFrame<'_>,
    ) -> Option<crate::pipeline::Velocity> {
        let (velocity, roll_pitch) = frame.state.map_or(([0.0; 3], [0.0; 2]), |s| {
            let [w, x, y, z] = s.attitude;
            let roll = (2.0 * (w * x + y * z)).atan2(1.0 - 2.0 * (x * x + y * y));
            let pitch = (2.0 * (w * y - z * x)).clamp(-1.0, 1.0).asin();
            (s.velocity, [roll as f32, pitch as f32])
        });
        let near: Vec<f32> = frame
            .scan
            .iter()
            .map(|d| if d.is_finite() { *d } else { self.min_depth })
            .collect();
        let blind = crate::pipeline::Ahead::of(frame.scan).blind(self.unknown_ahead);
        let input = rl::policy::PolicyInput {
            scan: &near,
            velocity,
            // Forward flight: the goal is always ahead, as far as the scan reaches.
            goal: [10.0, 0.0, 0.0],
            roll_pitch,
            context: &self.context,
        };
        let due = self.clock.due(frame.stamp_ns);
        let decision = match self.held {
            Some(cmd) if !due => Ok(cmd),
            _ => self.policy.act(&input),
        };
        match decision {
            Ok((forward, yaw_rate)) => {
                self.held = Some((forward, yaw_rate));
                let forward = if blind { forward.min(0.0) } else { forward };
                Some(crate::pipeline::Velocity {
                    forward,
                    left: 0.0,
                    up: self.hold.up(frame.altitude()),
                    yaw_rate,
                })
            }
            Err(e) => {
                tracing::warn!("policy network skipped a scan: {e}");
                None
            }
        }
    }
}

/// The last second or so of `state` messages, so that a frame is decided
/// with the vehicle's state at its own capture time: the newest state stamped
/// at or before the frame (the newest one there is when all are later).
#[derive(Debug, Default)]
pub struct StateHistory {
    states: std::collections::VecDeque<(u64, State)>,
}

impl StateHistory {
    /// Add a state stamped `stamp_ns`; stamps that go backwards start afresh
    /// (a restarted publisher).
    pub fn push(&mut self, stamp_ns: u64, s: State) {
        if self.states.back().is_some_and(|(t, _)| *t > stamp_ns) {
            self.states.clear();
        }
        if self.states.len() == 64 {
            self.states.pop_front();
        }
        self.states.push_back((stamp_ns, s));
    }

    /// Whether states are coming for a frame stamped `stamp_ns`: the newest is
    /// stamped less than a second before it. Judged on stamps, not on the
    /// receiving clock, so a loaded machine waits as an idle one does; a vehicle
    /// that stopped publishing costs no wait a second of frames later.
    pub fn is_flowing(&self, stamp_ns: u64) -> bool {
        self.states
            .back()
            .is_some_and(|(t, _)| stamp_ns.saturating_sub(*t) < 1_000_000_000)
    }

    /// Whether the newest state is stamped at or after `stamp_ns`.
    pub fn covers(&self, stamp_ns: u64) -> bool {
        self.states.back().is_some_and(|(t, _)| *t >= stamp_ns)
    }

    /// The state for a frame stamped `stamp_ns`.
    pub fn at(&self, stamp_ns: u64) -> Option<&State> {
        self.states
            .iter()
            .rev()
            .find(|(t, _)| *t <= stamp_ns)
            .or(self.states.back())
            .map(|(_, s)| s)
    }
}

/// How long the policy waits for the vehicle state of a frame's instant when
/// the newest one it has is older (a flight controller streams state at 50 Hz
/// or more, so a newer one is normally there well within this).
const STATE_WAIT: Duration = Duration::from_millis(50);

/// How long the policy waits for the mono scan of a frame whose stereo scan
/// has arrived, while the mono node is publishing.
const MONO_WAIT: Duration = Duration::from_millis(100);

/// The mono scans that arrived, by frame, for the policy to pair with stereo.
struct MonoScans {
    inbox: Inbox<DepthScan>,
    recent: std::collections::VecDeque<(bus::wire::Header, Vec<f32>)>,
    /// Sequence number of the newest mono scan.
    last_seq: Option<u64>,
    /// What is left of the wait for mono over the node's first frames, before
    /// any mono scan came (2x the per-frame wait in all, once per node).
    startup_left: Duration,
}

/// Frames without a mono scan after which the policy stops waiting for one
/// (the mono node stopped publishing). Counted in frames, not seconds, so that
/// a loaded machine waits as an idle one does.
const MONO_LIVE_FRAMES: u64 = 10;

impl MonoScans {
    fn take(&mut self, h: &bus::wire::Header, wait: Duration) -> Result<Option<Vec<f32>>> {
        if self.last_seq.is_some_and(|s| h.seq < s) {
            // The camera's numbers started again: nothing is known of mono yet.
            self.last_seq = None;
        }
        // Mono is waited for while it is publishing, and at the node's start
        // before its first scan, up to a budget of twice the per-frame wait in
        // all (its first inference is the slowest, and a frame flown without
        // its mono scan is one the switch judges otherwise than the loop in
        // process); a mono node that is silent (no weights yet) costs that
        // budget once, never again (not after a camera restart in flight).
        let live = self
            .last_seq
            .is_some_and(|s| h.seq.saturating_sub(s) <= MONO_LIVE_FRAMES);
        let wait = if live {
            wait
        } else {
            wait.min(self.startup_left)
        };
        let mut counted = Instant::now();
        let deadline = counted + wait;
        loop {
            if let Some(k) = self
                .recent
                .iter()
                .position(|(m, _)| m.seq == h.seq && m.stamp_ns == h.stamp_ns)
            {
                return Ok(self.recent.remove(k).map(|(_, s)| s));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let got = self.inbox.recv_timeout(left)?;
            if !live {
                self.startup_left = self.startup_left.saturating_sub(counted.elapsed());
                counted = Instant::now();
            }
            match got {
                Some((mh, m)) => {
                    self.last_seq = Some(mh.seq);
                    if self.recent.len() == 16 {
                        self.recent.pop_front();
                    }
                    self.recent.push_back((mh, m.depth));
                }
                None => return Ok(None),
            }
        }
    }
}

/// A frame's inputs for the pilot, joined from the loop's topics: each
/// stereo scan (which paces the loop), the mono scan of the same frame
/// (sequence number and stamp), the newest vehicle state stamped at or before
/// it, and, for policies that reach goals among people, the newest goal and
/// tracks.
pub struct PilotInputs {
    scans: Inbox<DepthScan>,
    mono: Option<MonoScans>,
    mono_wait: Duration,
    states: Inbox<State>,
    recent_states: StateHistory,
    nav: Option<Nav>,
    external: Option<Externals>,
}

/// The newest velocity command from outside the agent (`cmd/external`).
struct Externals {
    inbox: Inbox<Setpoint>,
    /// The newest command and its stamp (when it entered the graph: the
    /// `ros2` node's clock, the robot's, as this node's).
    newest: Option<(u64, crate::pipeline::Velocity)>,
}

/// The newest goal and tracks.
struct Nav {
    goals: Inbox<Goal>,
    tracks: Inbox<Tracks>,
    goal: Option<Goal>,
    seen: Option<Tracks>,
}

impl PilotInputs {
    /// Subscribe to the loop's scans and states for `robot`; the mono scans
    /// only when `with_mono` (a strategy that learns).
    pub fn new(
        session: &Session,
        robot: &str,
        with_mono: bool,
        mono_wait: Duration,
    ) -> Result<Self> {
        let mono = if with_mono {
            Some(MonoScans {
                inbox: Inbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_MONO, 16)?,
                recent: Default::default(),
                last_seq: None,
                startup_left: 2 * mono_wait,
            })
        } else {
            None
        };
        Ok(Self {
            // Scans queue while a frame waits for its mono scan (100 ms by
            // default: three frames at 30 Hz), so the queue holds more than that.
            scans: Inbox::<DepthScan>::new(session, robot, bus::topics::DEPTH_STEREO, 8)?,
            mono,
            mono_wait,
            states: Inbox::<State>::new(session, robot, bus::topics::STATE, 16)?,
            recent_states: StateHistory::default(),
            nav: None,
            external: None,
        })
    }

    /// Also join the newest velocity command from outside the agent
    /// (`cmd/external`), for [`crate::pipeline::Commanded`].
    pub fn with_external(mut self, session: &Session, robot: &str) -> Result<Self> {
        self.external = Some(Externals {
            inbox: Inbox::<Setpoint>::new(session, robot, bus::topics::CMD_EXTERNAL, 8)?,
            newest: None,
        });
        Ok(self)
    }

    /// Also join the newest goal (`nav/goal`) and tracks (`perception/tracks`).
    pub fn with_navigation(mut self, session: &Session, robot: &str) -> Result<Self> {
        self.nav = Some(Nav {
            goals: Inbox::<Goal>::new(session, robot, bus::topics::GOAL, 4)?,
            tracks: Inbox::<Tracks>::new(session, robot, bus::topics::TRACKS, 4)?,
            goal: None,
            seen: None,
        });
        Ok(self)
    }
}

impl Source for PilotInputs {
    type Item = PilotInput;

    fn next(&mut self, timeout: Duration) -> Result<Option<(bus::wire::Header, PilotInput)>> {
        let Some((h, scan)) = self.scans.recv_timeout(timeout)? else {
            return Ok(None);
        };
        while let Some((sh, s)) = self.states.recv_timeout(Duration::ZERO)? {
            self.recent_states.push(sh.stamp_ns, s);
        }
        // The state of the frame's own instant may still be on its way (it takes
        // another route than the scan): while states are flowing, wait a little
        // for one stamped at or after the frame.
        let waiting_since = Instant::now();
        while self.recent_states.is_flowing(h.stamp_ns) && !self.recent_states.covers(h.stamp_ns) {
            let left = STATE_WAIT.saturating_sub(waiting_since.elapsed());
            if left.is_zero() {
                break;
            }
            if let Some((sh, s)) = self
                .states
                .recv_timeout(left.min(Duration::from_millis(5)))?
            {
                self.recent_states.push(sh.stamp_ns, s);
            }
        }
        let state = self.recent_states.at(h.stamp_ns).cloned();
        let (goal, tracks) = match self.nav.as_mut() {
            Some(n) => {
                while let Some((_, g)) = n.goals.recv_timeout(Duration::ZERO)? {
                    n.goal = Some(g);
                }
                while let Some((_, t)) = n.tracks.recv_timeout(Duration::ZERO)? {
                    n.seen = Some(t);
                }
                (n.goal, n.seen.clone())
            }
            None => (None, None),
        };
        let mono = match self.mono.as_mut() {
            Some(m) => m
                .take(&h, self.mono_wait)?
                .filter(|m| m.len() == scan.depth.len()),
            None => None,
        };
        // The newest external command, aged last (after any wait for mono):
        // its age is from its stamp, when it entered the graph, to now, so a
        // command that waited here while no frame came is as old as it is.
        let external = match self.external.as_mut() {
            Some(x) => {
                while let Some((eh, v)) = x.inbox.recv_timeout(Duration::ZERO)? {
                    let velocity = crate::pipeline::Velocity {
                        forward: f64::from(v.forward),
                        left: f64::from(v.left),
                        up: f64::from(v.up),
                        yaw_rate: f64::from(v.yaw_rate),
                    };
                    x.newest = Some((eh.stamp_ns, velocity));
                }
                x.newest.map(|(stamp, velocity)| crate::pipeline::External {
                    // A stamp ahead of this clock (another clock) is no age:
                    // refused as stale (negative).
                    age: (bus::now_ns() as f64 - stamp as f64) * 1e-9,
                    velocity,
                })
            }
            None => None,
        };
        let input = PilotInput {
            t: h.stamp_ns as f64 * 1e-9,
            stereo: scan.depth,
            mono,
            state,
            goal,
            tracks,
            external,
            // The mono node publishes only trained weights (the learner's
            // saves), so the rule's minimum of training steps is the learner's.
            train_steps: u64::MAX,
        };
        Ok(Some((h, input)))
    }

    fn report(&self) -> String {
        format!("stereo scans {:?}", self.scans.stats())
    }
}

/// Depth scans in, setpoints out (same sequence number and stamp as the
/// scan): the pilot stage ([`Pilot`]) on the zenoh executor, its input joined
/// by [`PilotInputs`]. The cue switch flies mono once the persistent rule
/// allows it and steps back to stereo as training wheels; the reactive policy
/// holds altitude and treats an unknown way ahead as blocked. With
/// `--policy-net` a network trained by `agent train` is the policy in the
/// avoider's place (the same switch picks its scan).
pub fn policy_node(
    session: &Session,
    robot: &str,
    cfg: &LoopConfig,
    opts: &NodeOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let strategy = opts.strategy.unwrap_or(Strategy::Persistent);
    let mut inputs = PilotInputs::new(
        session,
        robot,
        strategy.learns(),
        opts.mono_wait.unwrap_or(MONO_WAIT),
    )?;
    if opts.external {
        inputs = inputs.with_external(session, robot)?;
    }
    let out = Outbox::<Setpoint>::new(session, robot, bus::topics::CMD_SETPOINT)?;
    let mut pilot = Pilot::new(cfg.persist, strategy, opts.camera_hz(), cfg.avoid);
    if opts.external {
        anyhow::ensure!(
            opts.policy_net.is_none(),
            "--external and --policy-net each name the policy: give one"
        );
        pilot = pilot.with_policy(Box::new(crate::pipeline::Commanded::new(
            cfg.avoid,
            cfg.external,
        )));
    }
    #[cfg(feature = "twin")]
    if let Some(l) = LearnedPolicy::load(opts, cfg)? {
        pilot = pilot.with_policy(Box::new(l));
    }
    #[cfg(not(feature = "twin"))]
    if opts.policy_net.is_some() {
        anyhow::bail!(
            "--policy-net needs the agent built with the `twin` feature (the networks of `agent train`)"
        );
    }
    info!(
        robot,
        strategy = strategy.name(),
        policy = pilot.policy_name(),
        "policy"
    );
    let (mut on_mono, mut interventions) = (0u64, 0u64);
    serve(
        session,
        robot,
        pilot,
        inputs,
        |h, d, _| {
            on_mono += u64::from(d.switch.mode == Mode::Mono);
            interventions += u64::from(matches!(d.switch.event, Some(Switch::Intervention { .. })));
            // A policy with no answer for this frame sends nothing (it said why).
            match d.setpoint() {
                Some(sp) => Ok(out.send_with(h, &sp)?),
                None => Ok(()),
            }
        },
        stop,
    )?;
    info!(
        on_mono,
        interventions, "policy: frames flown on mono, interventions"
    );
    Ok(())
}
