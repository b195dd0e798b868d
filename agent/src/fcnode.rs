//! The flight-controller stage: setpoints from the bus to the vehicle, its
//! status, pose and events back. Our firmware over the serial link
//! ([`SerialFc`]) and PX4/ArduPilot over MAVLink ([`MavlinkFc`]) sit behind
//! one trait, [`FlightController`], and run in one node loop
//! ([`flight_controller_node`]): `agent node fc` and `agent node mavlink`.
//!
//! Neither arms by itself: arming (and, with MAVLink, taking control) happens
//! when an operator asks for it on `cmd/arm` (`agent arm`, after its preflight
//! checks), or on the first setpoint when the node was started with `--arm`.
//! The node itself refuses an arm request while no setpoints are streaming (the
//! vehicle's watchdog would fail safe at once), and runs the preflight checks
//! ([`crate::preflight`]) on what it sees of the graph before every arm,
//! whoever asks: a ground station's request, which never went through
//! `agent arm`, and `--arm` alike ([`ArmGate`]).

use crate::nodes::NodeOptions;
use anyhow::{Context as _, Result};
use bus::msg::{ArmAction, ArmRequest, Event, FcStatus, Setpoint, State};
use bus::{Inbox, Outbox, Session};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::info;

/// Something a flight controller reported.
#[derive(Debug, Clone, PartialEq)]
pub enum FcReport {
    /// For `fc/status`.
    Status(FcStatus),
    /// The vehicle's pose, for `state` (the agent's frame, REP-103).
    State(State),
    /// A line for `events` (and the log).
    Event(String),
}

/// A flight controller the loop's setpoints go to.
pub trait FlightController {
    /// Its name: the frame id and log prefix of what it publishes.
    fn name(&self) -> &'static str;
    /// Whether it can take setpoints yet (MAVLink: an autopilot was heard);
    /// may wait up to `wait` for that.
    fn ready(&mut self, wait: Duration, out: &mut Vec<FcReport>) -> bool;
    /// Stream a velocity setpoint (body frame: forward, left, up, yaw rate).
    fn setpoint(&mut self, sp: &Setpoint);
    /// Arm (and take control); `true` when done, else it reports why not.
    fn arm(&mut self, out: &mut Vec<FcReport>) -> bool;
    /// Disarm on the ground (the vehicle refuses in the air), which also
    /// acknowledges latched faults; `true` when done, else it reports why not.
    fn disarm(&mut self, out: &mut Vec<FcReport>) -> bool;
    /// Motors off now, in the air too (the vehicle falls): our firmware's
    /// emergency stop, MAVLink's forced disarm; `true` when done.
    fn emergency_stop(&mut self, out: &mut Vec<FcReport>) -> bool;
    /// Whether the vehicle says it is armed and flying the agent's setpoints.
    fn in_control(&self) -> bool;
    /// What happened since the last call.
    fn poll(&mut self, out: &mut Vec<FcReport>) -> Result<()>;
    /// A summary for the log when the node stops.
    fn summary(&self) -> String;
}

/// What a flight controller said while refusing (its events since `from`),
/// for the answer to the request: the operator who asked sees why, not only
/// that it was refused.
fn why_not(said: &[FcReport]) -> String {
    let texts: Vec<&str> = said
        .iter()
        .filter_map(|r| match r {
            FcReport::Event(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    if texts.is_empty() {
        String::new()
    } else {
        format!(" ({})", texts.join("; "))
    }
}

/// How long the node waits on its inbox or the vehicle before checking for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

/// An arm request is refused unless a setpoint arrived this recently: no
/// longer than the firmware's own setpoint watchdog (200 ms by default), or a
/// vehicle armed on that stream would fail safe at once.
pub const SETPOINTS_FRESH: Duration = Duration::from_millis(200);

/// An arm request stamped further than this from the node's clock is refused:
/// an old request replayed (or one from a ground station whose clock is far
/// off, which the refusal names) never arms the vehicle.
pub const ARM_REQUEST_AGE: Duration = Duration::from_secs(5);

/// The window of depth scans the node's own preflight checks look at (as
/// `agent arm`'s default).
pub const PREFLIGHT_WINDOW: Duration = Duration::from_secs(2);

/// What the node checks before it arms, beyond setpoints streaming and the
/// request's age.
#[derive(Debug, Clone)]
pub enum ArmGate {
    /// The preflight checks on what the node sees of the graph (its own
    /// liveliness counts as `fc`; state and status are what it publishes).
    Preflight(crate::preflight::PreflightConfig),
    /// None (`--no-preflight`): a bench with a flight controller and no
    /// camera. Said on `events` at start.
    Off,
}

impl Default for ArmGate {
    fn default() -> Self {
        Self::Preflight(crate::preflight::PreflightConfig::default())
    }
}

/// The gate's verdict now: why it refuses to arm, or `None`.
fn gate_refusal(
    gate: &ArmGate,
    monitor: Option<&crate::preflight::Monitor>,
    name: &str,
) -> Option<String> {
    let ArmGate::Preflight(cfg) = gate else {
        return None;
    };
    // Fail closed: a gate without its view of the graph refuses.
    let Some(m) = monitor else {
        return Some("preflight failed: the node has no view of the graph".into());
    };
    let mut obs = m.observations().clone();
    obs.nodes.insert(name.to_string());
    crate::preflight::refusal(&crate::preflight::evaluate(&obs, cfg, Instant::now()))
}

/// The names of the failed checks in a refusal (`preflight failed: nodes
/// (...); state (...)` → `nodes;state`).
fn failed_names(why: &str) -> String {
    why.trim_start_matches("preflight failed: ")
        .split("; ")
        .map(|c| c.split(" (").next().unwrap_or(c))
        .collect::<Vec<_>>()
        .join(";")
}

/// The node's own state and status, as the gate's observations.
fn note_reports(m: &mut crate::preflight::Monitor, reports: &[FcReport]) {
    for r in reports {
        match r {
            FcReport::Status(s) => m.note_status(*s),
            FcReport::State(_) => m.note_state(),
            FcReport::Event(_) => {}
        }
    }
}

/// Why a request stamped `stamp_ns` is too old (or too far ahead) at `now_ns`.
fn stale_request(stamp_ns: u64, now_ns: u64) -> Option<String> {
    let skew = now_ns.abs_diff(stamp_ns);
    (skew > ARM_REQUEST_AGE.as_nanos() as u64).then(|| {
        format!(
            "stamped {:.1} s {} this node's clock (more than {} s: a replayed request, or clocks apart)",
            skew as f64 * 1e-9,
            if stamp_ns <= now_ns { "before" } else { "after" },
            ARM_REQUEST_AGE.as_secs()
        )
    })
}

/// The node: setpoints in, reports out, until `stop`. With `arm`, the first
/// setpoint arms (retried every second until it is done). Every arm passes
/// `gate` first.
pub fn flight_controller_node(
    session: &Session,
    robot: &str,
    fc: &mut dyn FlightController,
    arm: bool,
    gate: &ArmGate,
    stop: &AtomicBool,
) -> Result<()> {
    let mut setpoints = Inbox::<Setpoint>::new(session, robot, bus::topics::CMD_SETPOINT, 4)?;
    let mut arm_requests = Inbox::<ArmRequest>::new(session, robot, bus::topics::CMD_ARM, 4)?;
    let mut last_setpoint: Option<Instant> = None;
    let mut status = Outbox::<FcStatus>::new(session, robot, bus::topics::FC_STATUS)?;
    let mut states = Outbox::<State>::new(session, robot, bus::topics::STATE)?;
    let mut events = Outbox::<Event>::new(session, robot, bus::topics::EVENTS)?;
    let name = fc.name();
    let mut publish = |reports: &mut Vec<FcReport>| -> Result<()> {
        for r in reports.drain(..) {
            match r {
                FcReport::Status(s) => {
                    status.send(bus::now_ns(), name, &s)?;
                }
                FcReport::State(s) => {
                    states.send(bus::now_ns(), "world", &s)?;
                }
                FcReport::Event(text) => {
                    info!("{text}");
                    events.send(bus::now_ns(), name, &Event { text })?;
                }
            }
        }
        Ok(())
    };
    let mut reports = Vec::new();
    let mut monitor = match gate {
        ArmGate::Preflight(_) => Some(crate::preflight::Monitor::new(
            session,
            robot,
            PREFLIGHT_WINDOW,
            false,
        )?),
        ArmGate::Off => {
            reports.push(FcReport::Event(format!(
                "{name}: preflight checks OFF (--no-preflight): arming checks only that setpoints stream"
            )));
            None
        }
    };
    // The last reason `--arm` was held back, said once per change.
    let mut held_back = String::new();
    let mut arm_due = arm;
    let mut answered = std::collections::VecDeque::<u64>::new();
    let mut next_arm_try = Instant::now();
    info!(robot, arm, "{name} node up");
    let mut said_waiting = false;
    while !stop.load(Ordering::Relaxed) {
        let ready = fc.ready(POLL, &mut reports);
        if let Some(m) = &mut monitor {
            m.poll()?;
        }
        if !ready && !said_waiting {
            said_waiting = true;
            reports.push(FcReport::Event(format!(
                "{name}: waiting to hear the flight controller: arm and disarm requests are refused and setpoints dropped until then"
            )));
        }
        // Requests are answered in both states: an emergency stop goes out
        // even to a vehicle not heard yet (its receive side may work).
        while let Some((h, req)) = arm_requests.recv_timeout(Duration::ZERO)? {
            let n = req.nonce;
            // A request is acted on once: its copies (the operator resends
            // until answered) and replays of it are ignored.
            if answered.contains(&n) {
                continue;
            }
            if answered.len() == 64 {
                answered.pop_front();
            }
            answered.push_back(n);
            let what = req.action.name();
            let text = match req.action {
                // An emergency stop is never refused for its age: stopping
                // the motors late is better than not at all.
                ArmAction::EmergencyStop => {
                    arm_due = false;
                    if fc.emergency_stop(&mut reports) {
                        format!("{name}: {what} request {n:016x}: motors stopped")
                    } else {
                        format!(
                            "{name}: {what} request {n:016x} NOT done: the flight controller refused or did not acknowledge it"
                        )
                    }
                }
                _ if stale_request(h.stamp_ns, bus::now_ns()).is_some() => format!(
                    "{name}: {what} request {n:016x} refused: {}",
                    stale_request(h.stamp_ns, bus::now_ns()).unwrap_or_default()
                ),
                _ if !ready => format!(
                    "{name}: {what} request {n:016x} refused: the flight controller has not been heard yet"
                ),
                ArmAction::Disarm => {
                    // A disarm also withdraws a pending `--arm`: the vehicle
                    // arms only when someone asks, not later by itself.
                    arm_due = false;
                    let from = reports.len();
                    if fc.disarm(&mut reports) {
                        format!("{name}: disarm request {n:016x}: disarmed")
                    } else {
                        format!(
                            "{name}: disarm request {n:016x} refused by the flight controller{}",
                            why_not(&reports[from..])
                        )
                    }
                }
                ArmAction::Arm if fc.in_control() => {
                    format!("{name}: arm request {n:016x}: already armed")
                }
                ArmAction::Arm if last_setpoint.is_none_or(|t| t.elapsed() > SETPOINTS_FRESH) => {
                    format!(
                        "{name}: arm request {n:016x} refused: no setpoints streaming (the loop is not running)"
                    )
                }
                ArmAction::Arm => match gate_refusal(gate, monitor.as_ref(), name) {
                    Some(why) => format!("{name}: arm request {n:016x} refused: {why}"),
                    None => {
                        let from = reports.len();
                        if fc.arm(&mut reports) {
                            format!("{name}: arm request {n:016x}: armed")
                        } else {
                            format!(
                                "{name}: arm request {n:016x} refused by the flight controller{}",
                                why_not(&reports[from..])
                            )
                        }
                    }
                },
            };
            reports.push(FcReport::Event(text));
        }
        if !ready {
            // Nothing is queued for a vehicle not heard yet: a setpoint
            // delivered later would be flown (and armed on) long after it
            // was meant.
            while setpoints.recv_timeout(Duration::ZERO)?.is_some() {}
            if let Some(m) = &mut monitor {
                note_reports(m, &reports);
            }
            publish(&mut reports)?;
            continue;
        }
        if let Some((_, sp)) = setpoints.recv_timeout(Duration::from_millis(10))? {
            last_setpoint = Some(Instant::now());
            if let Some(m) = &mut monitor {
                m.note_setpoint();
            }
            if arm_due && Instant::now() >= next_arm_try {
                match gate_refusal(gate, monitor.as_ref(), name) {
                    Some(why) => {
                        next_arm_try = Instant::now() + Duration::from_secs(1);
                        // Said once per change of the failed checks (their
                        // details — ages, counts — change all the time).
                        let names = failed_names(&why);
                        if names != held_back {
                            reports.push(FcReport::Event(format!("{name}: --arm waits: {why}")));
                            held_back = names;
                        }
                    }
                    None if fc.arm(&mut reports) => arm_due = false,
                    None => next_arm_try = Instant::now() + Duration::from_secs(1),
                }
            }
            fc.setpoint(&sp);
        }
        fc.poll(&mut reports)?;
        // An arm whose acknowledgement was lost or late (a busy link) must not
        // be sent again: the vehicle says it is armed.
        if arm_due && fc.in_control() {
            arm_due = false;
            reports.push(FcReport::Event(format!(
                "{name}: armed (seen in telemetry; its acknowledgement was not)"
            )));
        }
        if let Some(m) = &mut monitor {
            note_reports(m, &reports);
        }
        publish(&mut reports)?;
    }
    info!("{name} node down: {}", fc.summary());
    Ok(())
}

/// Our firmware over the serial link ([`fc::Link`], the fclink protocol).
/// Its pose: attitude and altitude as reported, x and y dead-reckoned from the
/// body velocity and yaw on the firmware's own clock (it has no horizontal
/// position sensor; the estimate drifts, and starts at 0 where the node started).
pub struct SerialFc {
    link: fc::Link,
    odometry: Odometry,
    last: Option<FcStatus>,
    last_state: Option<fclink::FcState>,
    /// Telemetry has come from the firmware since the link opened.
    heard: bool,
}

impl SerialFc {
    /// Open the serial device of `opts` (`--device`, `--baud`).
    pub fn open(opts: &NodeOptions) -> Result<Self> {
        let device = opts
            .device
            .as_ref()
            .context("the fc node needs --device PATH (the flight controller's serial port)")?;
        let link = fc::Link::open(fc::LinkConfig {
            baud: opts.baud,
            ..fc::LinkConfig::new(device)
        })?;
        info!(device = %device.display(), "fc link open");
        Ok(Self {
            link,
            odometry: Odometry::default(),
            last: None,
            last_state: None,
            heard: false,
        })
    }
}

impl SerialFc {
    /// Send `msg` and wait (500 ms) for its acknowledgement; `true` when
    /// accepted, else the refusal or the link's error is reported.
    fn command(&mut self, msg: fclink::ToFc, what: &str, out: &mut Vec<FcReport>) -> bool {
        match self.link.command(msg, Duration::from_millis(500)) {
            Ok(fclink::AckStatus::Accepted) => true,
            Ok(other) => {
                out.push(FcReport::Event(format!("fc: {what} refused: {other:?}")));
                false
            }
            Err(e) => {
                out.push(FcReport::Event(format!("fc: {e}")));
                false
            }
        }
    }
}

fn state_code(s: fclink::FcState) -> u8 {
    use fclink::FcState as S;
    match s {
        S::Disarmed => 0,
        S::Armed => 1,
        S::FailsafeHover => 2,
        S::FailsafeLand => 3,
        S::FailsafeStop => 4,
    }
}

impl FlightController for SerialFc {
    fn name(&self) -> &'static str {
        "fc"
    }

    /// Ready once the firmware's telemetry has arrived: before it, nothing on
    /// the other end is known to listen, and the link does not yet know the
    /// firmware's last accepted setpoint number, which its numbering must
    /// continue after (a restarted node's setpoints would be refused as replays).
    fn ready(&mut self, wait: Duration, out: &mut Vec<FcReport>) -> bool {
        if self.heard {
            return true;
        }
        let deadline = Instant::now() + wait;
        loop {
            if let Some((t, _)) = self.link.latest_telemetry() {
                self.heard = true;
                out.push(FcReport::Event(format!(
                    "fc: flight controller heard on {} ({:?}, up {:.1} s, last setpoint #{})",
                    self.link.device(),
                    t.state,
                    f64::from(t.uptime_ms) * 1e-3,
                    t.last_setpoint_seq
                )));
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn setpoint(&mut self, sp: &Setpoint) {
        self.link
            .send(fclink::ToFc::Setpoint(fclink::Setpoint::Velocity {
                forward: sp.forward,
                left: sp.left,
                up: sp.up,
                yaw_rate: sp.yaw_rate,
            }));
    }

    fn arm(&mut self, out: &mut Vec<FcReport>) -> bool {
        let done = self.command(fclink::ToFc::Arm, "arming", out);
        if done {
            out.push(FcReport::Event("fc: armed".into()));
        }
        done
    }

    fn disarm(&mut self, out: &mut Vec<FcReport>) -> bool {
        self.command(fclink::ToFc::Disarm, "disarm", out)
    }

    fn emergency_stop(&mut self, out: &mut Vec<FcReport>) -> bool {
        // Sent again while unacknowledged (a lost frame on a busy link): it is
        // idempotent, and the firmware latches it.
        for _ in 0..5 {
            match self.link.emergency_stop(Duration::from_millis(300)) {
                Ok(fclink::AckStatus::Accepted) => return true,
                Ok(other) => {
                    out.push(FcReport::Event(format!(
                        "fc: emergency stop refused: {other:?}"
                    )));
                    return false;
                }
                Err(e) => out.push(FcReport::Event(format!(
                    "fc: emergency stop not acknowledged ({e}); sending it again"
                ))),
            }
        }
        false
    }

    fn in_control(&self) -> bool {
        self.last_state == Some(fclink::FcState::Armed)
    }

    fn poll(&mut self, out: &mut Vec<FcReport>) -> Result<()> {
        for e in self.link.events().try_iter() {
            let stats = self.link.stats();
            match e {
                fc::Event::Telemetry { telemetry: t, .. } => {
                    if self.last_state != Some(t.state) {
                        out.push(FcReport::Event(format!(
                            "fc: {} -> {:?} (faults {:#06x}, setpoint age {} ms)",
                            self.last_state
                                .map(|s| format!("{s:?}"))
                                .unwrap_or_else(|| "up".into()),
                            t.state,
                            t.faults,
                            t.setpoint_age_ms
                        )));
                        self.last_state = Some(t.state);
                    }
                    let s = FcStatus {
                        state: state_code(t.state),
                        faults: t.faults,
                        attitude: t.attitude,
                        velocity: t.velocity,
                        altitude: t.altitude,
                        battery_mv: t.battery_mv,
                        setpoint_age_ms: t.setpoint_age_ms,
                        link_errors: (stats.crc_errors + stats.other_errors) as u32,
                        reconnects: stats.reconnects as u32,
                    };
                    out.push(FcReport::Status(s));
                    self.last = Some(s);
                    out.push(FcReport::State(self.odometry.update(&t)));
                }
                fc::Event::Disconnected { reason } => {
                    out.push(FcReport::Event(format!(
                        "fc: link {} lost: {reason}",
                        self.link.device()
                    )));
                    let down = FcStatus {
                        state: FcStatus::LINK_DOWN,
                        faults: 0,
                        attitude: [0.0; 3],
                        velocity: [0.0; 3],
                        altitude: 0.0,
                        battery_mv: 0,
                        setpoint_age_ms: 0,
                        link_errors: 0,
                        reconnects: 0,
                    };
                    out.push(FcReport::Status(FcStatus {
                        state: FcStatus::LINK_DOWN,
                        ..self.last.unwrap_or(down)
                    }));
                    self.last_state = None;
                }
                fc::Event::Connected => out.push(FcReport::Event(format!(
                    "fc: link {} back",
                    self.link.device()
                ))),
                fc::Event::Ack { .. } => {}
            }
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!("{:?}", self.link.stats())
    }
}

/// The pose from our firmware's telemetry in the agent's frame (REP-103,
/// [`fc::frames`]), x and y dead-reckoned on the firmware's clock.
#[derive(Debug, Clone, Copy, Default)]
struct Odometry {
    xy: [f64; 2],
    last_ms: Option<u32>,
}

impl Odometry {
    fn update(&mut self, t: &fclink::Telemetry) -> State {
        let dt = self
            .last_ms
            .map_or(0.0, |m| f64::from(t.uptime_ms.wrapping_sub(m)) * 1e-3);
        self.last_ms = Some(t.uptime_ms);
        // A reboot of the firmware, or a gap of seconds, is no velocity to integrate.
        if dt > 0.0 && dt < 1.0 {
            let yaw = f64::from(t.attitude[2]);
            let [f, l] = [f64::from(t.velocity[0]), f64::from(t.velocity[1])];
            self.xy[0] += (f * yaw.cos() - l * yaw.sin()) * dt;
            self.xy[1] += (f * yaw.sin() + l * yaw.cos()) * dt;
        }
        State {
            position: [self.xy[0], self.xy[1], f64::from(t.altitude)],
            attitude: fc::frames::from_fclink_attitude(t.attitude),
            velocity: t.velocity,
        }
    }
}

/// PX4 or ArduPilot over MAVLink ([`fc::mav`]): once armed it takes control
/// (Offboard / Guided); the MAVLink stream carries the newest setpoint at
/// 30 Hz, zero velocity once the policy has been quiet for 250 ms and the
/// autopilot's Hold after 1 s. It does not take control back by itself after
/// a Hold. Status at 20 Hz (state 0 disarmed, 1 armed, 2 holding after the
/// policy went quiet), and the pose in the agent's frame ([`fc::frames`]: NED
/// converted to ENU, FRD to FLU) once the autopilot has sent ATTITUDE and
/// LOCAL_POSITION_NED.
pub struct MavlinkFc {
    link: fc::mav::MavLink,
    heard: bool,
    in_control: bool,
    holding: bool,
    /// The hold's outcome was reported (confirmed by the heartbeat, or failed).
    hold_reported: bool,
    next_status: Instant,
}

impl MavlinkFc {
    /// Connect to the autopilot of `opts` (`--mavlink ADDRESS`).
    pub fn connect(opts: &NodeOptions) -> Result<Self> {
        use fc::mav::{MavAddress, MavConfig, MavLink};
        let address: MavAddress = opts
            .mavlink
            .as_deref()
            .context("the mavlink node needs --mavlink ADDRESS (udpin:HOST:PORT, udpout:HOST:PORT or serial:DEVICE:BAUD)")?
            .parse()?;
        info!(address = ?opts.mavlink, "mavlink link open");
        Ok(Self {
            link: MavLink::connect(MavConfig::new(address))?,
            heard: false,
            in_control: false,
            holding: false,
            hold_reported: false,
            next_status: Instant::now(),
        })
    }
}

impl FlightController for MavlinkFc {
    fn name(&self) -> &'static str {
        "mavlink"
    }

    fn ready(&mut self, wait: Duration, out: &mut Vec<FcReport>) -> bool {
        if !self.heard
            && let Ok(st) = self.link.wait_heartbeat(wait)
        {
            self.heard = true;
            out.push(FcReport::Event(format!(
                "mavlink: autopilot {:?} (system {}, component {})",
                st.flavour, st.target.0, st.target.1
            )));
        }
        self.heard
    }

    fn setpoint(&mut self, sp: &Setpoint) {
        self.link
            .set_velocity(sp.forward, sp.left, sp.up, sp.yaw_rate);
    }

    fn disarm(&mut self, out: &mut Vec<FcReport>) -> bool {
        self.in_control = false;
        match self.link.disarm() {
            Ok(()) => true,
            Err(e) => {
                out.push(FcReport::Event(format!("mavlink: disarm refused: {e}")));
                false
            }
        }
    }

    fn emergency_stop(&mut self, out: &mut Vec<FcReport>) -> bool {
        match self.link.force_disarm() {
            Ok(()) => {
                self.in_control = false;
                true
            }
            Err(e) => {
                out.push(FcReport::Event(format!(
                    "mavlink: forced disarm refused: {e}"
                )));
                false
            }
        }
    }

    fn arm(&mut self, out: &mut Vec<FcReport>) -> bool {
        // Once only: after the policy went quiet and the autopilot was put in
        // Hold, control goes back to the agent only by an operator's restart.
        let r = if self.link.status().armed {
            Ok(())
        } else {
            self.link.arm()
        };
        match r.and_then(|()| self.link.take_control()) {
            Ok(()) => {
                self.in_control = true;
                self.holding = false;
                self.hold_reported = false;
                out.push(FcReport::Event("mavlink: armed, agent in control".into()));
                true
            }
            Err(e) => {
                out.push(FcReport::Event(format!("mavlink: {e}")));
                false
            }
        }
    }

    fn in_control(&self) -> bool {
        self.in_control
    }

    fn poll(&mut self, out: &mut Vec<FcReport>) -> Result<()> {
        if Instant::now() < self.next_status {
            return Ok(());
        }
        self.next_status = Instant::now() + Duration::from_millis(50);
        let st = self.link.status();
        if st.hold_commanded && !self.holding {
            self.holding = true;
            out.push(FcReport::Event(
                "mavlink: policy quiet, autopilot commanded to hold".into(),
            ));
        }
        if self.holding && !self.hold_reported {
            if st.hold_confirmed {
                self.hold_reported = true;
                out.push(FcReport::Event(format!(
                    "mavlink: the autopilot is in hold (its heartbeat shows it; sent {} time(s))",
                    st.hold_tries
                )));
            } else if st.hold_superseded {
                self.hold_reported = true;
                out.push(FcReport::Event(format!(
                    "mavlink: the autopilot switched to another mode (custom mode {:#x}: the pilot or its failsafe) before holding; hold not sent again",
                    st.custom_mode
                )));
            } else if st.hold_failed {
                self.hold_reported = true;
                out.push(FcReport::Event(format!(
                    "mavlink: the autopilot did NOT enter hold after {} tries (its heartbeat shows custom mode {:#x}); zero velocity still streams: take over",
                    st.hold_tries, st.custom_mode
                )));
            }
        }
        let att = st.attitude.unwrap_or([0.0; 6]);
        let pos = st.local_position.unwrap_or([0.0; 6]);
        // NED position and attitude into the agent's frame (REP-103).
        let enu = fc::frames::from_ned([att[0], att[1], att[2]], pos);
        // A pose older than half a second is not the vehicle's state any more.
        if st.pose_fresh(Duration::from_millis(500)) == (true, true) {
            out.push(FcReport::State(State {
                position: enu.position,
                attitude: enu.attitude,
                velocity: enu.velocity,
            }));
        }
        out.push(FcReport::Status(FcStatus {
            state: if self.holding { 2 } else { u8::from(st.armed) },
            faults: 0,
            attitude: [att[0], att[1], att[2]],
            velocity: enu.velocity,
            altitude: -pos[2],
            battery_mv: st.battery.map(|b| b.0).unwrap_or(0),
            setpoint_age_ms: 0,
            link_errors: st.parse_errors as u32,
            reconnects: 0,
        }));
        Ok(())
    }

    fn summary(&self) -> String {
        format!("{:?}", self.link.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_what_the_flight_controller_said() {
        let said = [
            FcReport::Event("fc: arming refused: ArmingChecks(4)".into()),
            FcReport::Event("fc: battery low".into()),
        ];
        assert_eq!(
            why_not(&said),
            " (fc: arming refused: ArmingChecks(4); fc: battery low)"
        );
        assert_eq!(why_not(&[]), "", "nothing said, nothing added");
    }

    /// A pty with nothing behind it is not a flight controller: the link is
    /// not ready and says nothing (what the node then writes on such a line
    /// is checked end to end in tests/tests/e2e/fc_link.rs). The host build of the
    /// firmware behind another pty is heard within its first telemetry period
    /// (20 Hz) and named in one event.
    #[test]
    fn the_serial_fc_is_ready_only_once_the_firmware_is_heard() {
        let opts = |device: &std::path::Path| NodeOptions {
            device: Some(device.to_path_buf()),
            baud: 115_200,
            ..NodeOptions::default()
        };
        let (_master, slave) = serialport::TTYPort::pair().unwrap();
        let silent = std::path::PathBuf::from(serialport::SerialPort::name(&slave).unwrap());
        let mut fc = SerialFc::open(&opts(&silent)).unwrap();
        let mut out = Vec::new();
        assert!(!fc.ready(Duration::from_millis(300), &mut out));
        assert!(!fc.ready(Duration::ZERO, &mut out));
        assert!(out.is_empty(), "{out:?}");

        let host = fc::hostfc::HostFc::start(fclink::Config::default(), None).unwrap();
        let mut fc = SerialFc::open(&opts(host.device())).unwrap();
        // A liveness bound only: telemetry comes every 50 ms of the firmware's clock.
        assert!(fc.ready(Duration::from_secs(30), &mut out));
        match out.as_slice() {
            [FcReport::Event(text)] => {
                assert!(text.starts_with("fc: flight controller heard on"), "{text}");
                assert!(text.contains("Disarmed"), "{text}");
            }
            other => panic!("one event expected: {other:?}"),
        }
        // Heard once: ready at once from then on, without a second event.
        assert!(fc.ready(Duration::ZERO, &mut out));
        assert_eq!(out.len(), 1);
        host.stop();
    }

    #[test]
    fn the_arm_wait_is_said_once_per_change_of_the_failed_checks() {
        let a = "preflight failed: nodes (not alive: camera); state (newest 612 ms ago)";
        let b = "preflight failed: nodes (not alive: camera); state (newest 1612 ms ago)";
        assert_eq!(failed_names(a), "nodes;state");
        assert_eq!(failed_names(a), failed_names(b));
        assert_ne!(
            failed_names(a),
            failed_names("preflight failed: nodes (not alive: camera)")
        );
    }

    #[test]
    fn arm_requests_far_from_now_are_refused() {
        let now = 1_000_000_000_000;
        assert!(stale_request(now - 4_000_000_000, now).is_none());
        assert!(stale_request(now + 4_000_000_000, now).is_none());
        let old = stale_request(now - 6_000_000_000, now).unwrap();
        assert!(old.contains("6.0 s before"), "{old}");
        assert!(
            stale_request(now + 60_000_000_000, now)
                .unwrap()
                .contains("after")
        );
    }
}
