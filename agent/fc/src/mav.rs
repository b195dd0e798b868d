//! MAVLink v2 to a PX4 or ArduPilot autopilot, over a serial port or UDP.
//!
//! What the agent needs from an off-the-shelf autopilot: heartbeats both
//! ways, the vehicle's attitude, local position and battery, arm/disarm and
//! mode changes acknowledged (`COMMAND_LONG` → `COMMAND_ACK`, retried), and a
//! stream of body-frame velocity setpoints (`SET_POSITION_TARGET_LOCAL_NED`)
//! at a fixed rate. When the policy goes quiet the stream carries zero
//! velocity (hover / stop), and after a longer silence the autopilot is put
//! in its hold mode (PX4 Hold, ArduPilot Loiter / rover Hold), so the vehicle
//! never flies on a stale command.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mavlink::dialects::common::{
    COMMAND_LONG_DATA, HEARTBEAT_DATA, MavAutopilot, MavCmd, MavFrame, MavMessage, MavModeFlag,
    MavResult, MavState, MavType, PositionTargetTypemask, SET_POSITION_TARGET_LOCAL_NED_DATA,
};
use mavlink::{MavHeader, MavlinkReader};
use serialport::TTYPort;

/// Where the autopilot is.
#[derive(Debug, Clone, PartialEq)]
pub enum MavAddress {
    /// Listen on this UDP address; reply to whoever sends first (`udpin:HOST:PORT`).
    UdpIn(SocketAddr),
    /// Send to this UDP address from an ephemeral port (`udpout:HOST:PORT`).
    UdpOut(SocketAddr),
    /// A serial device at a baud rate (`serial:/dev/ttyACM0:57600`).
    Serial(PathBuf, u32),
}

impl std::str::FromStr for MavAddress {
    type Err = MavError;
    fn from_str(s: &str) -> Result<Self, MavError> {
        let bad = |why: &str| MavError::Address(format!("{s:?}: {why}"));
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            bad("expected udpin:HOST:PORT, udpout:HOST:PORT or serial:DEVICE:BAUD")
        })?;
        match kind {
            "udpin" | "udpout" => {
                let addr: SocketAddr = rest.parse().map_err(|_| bad("not HOST:PORT"))?;
                Ok(if kind == "udpin" {
                    MavAddress::UdpIn(addr)
                } else {
                    MavAddress::UdpOut(addr)
                })
            }
            "serial" => {
                let (dev, baud) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| bad("expected serial:DEVICE:BAUD"))?;
                let baud = baud.parse().map_err(|_| bad("baud rate is not a number"))?;
                Ok(MavAddress::Serial(PathBuf::from(dev), baud))
            }
            _ => Err(bad("unknown transport")),
        }
    }
}

/// Settings of the MAVLink connection.
#[derive(Debug, Clone)]
pub struct MavConfig {
    /// Where the autopilot is.
    pub address: MavAddress,
    /// Our system id (a companion computer uses its vehicle's, 1 by default).
    pub system_id: u8,
    /// Our component id (191: onboard computer).
    pub component_id: u8,
    /// Setpoints per second (PX4 leaves offboard below 2 Hz; ≥ 20 recommended).
    pub setpoint_hz: f32,
    /// No new setpoint from the policy for this long → stream zero velocity.
    pub quiet_after: Duration,
    /// No new setpoint for this long → command the autopilot's hold mode.
    pub hold_after: Duration,
    /// How long to wait for each `COMMAND_ACK`.
    pub ack_timeout: Duration,
    /// How many times to send a command before giving up.
    pub command_tries: u8,
    /// How long a mode change may take to show in the autopilot's heartbeat
    /// (heartbeats come at 1 Hz) before it is sent again; a mode is sent
    /// `command_tries` times before the change counts as failed.
    pub mode_timeout: Duration,
}

impl MavConfig {
    /// Defaults (30 Hz setpoints, zero velocity after 250 ms, hold after 1 s).
    pub fn new(address: MavAddress) -> Self {
        Self {
            address,
            system_id: 1,
            component_id: 191,
            setpoint_hz: 30.0,
            quiet_after: Duration::from_millis(250),
            hold_after: Duration::from_secs(1),
            ack_timeout: Duration::from_millis(500),
            command_tries: 3,
            mode_timeout: Duration::from_millis(2500),
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum MavError {
    /// The address string is not understood.
    #[error("bad MAVLink address {0}")]
    Address(String),
    /// The transport could not be opened.
    #[error("cannot open MAVLink link {address}: {reason}")]
    Open {
        /// Where.
        address: String,
        /// Why.
        reason: String,
    },
    /// No heartbeat from an autopilot.
    #[error("no autopilot heartbeat within {0:?}")]
    NoHeartbeat(Duration),
    /// The autopilot acknowledged a mode change its heartbeat never showed.
    #[error(
        "the autopilot did not enter {mode} (its heartbeat shows custom mode {custom_mode:#x}) after {tries} tries"
    )]
    ModeNotEntered {
        /// The mode asked for.
        mode: &'static str,
        /// The mode the heartbeat shows.
        custom_mode: u32,
        /// How often it was sent.
        tries: u8,
    },
    /// A command was never acknowledged.
    #[error("{command:?} not acknowledged after {tries} tries")]
    NoAck {
        /// The command.
        command: MavCmd,
        /// How often it was sent.
        tries: u8,
    },
    /// The autopilot refused a command.
    #[error("autopilot refused {command:?}: {result:?}")]
    Refused {
        /// The command.
        command: MavCmd,
        /// Its answer.
        result: MavResult,
    },
}

/// The autopilot software, from its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// PX4.
    Px4,
    /// ArduPilot (Copter unless `rover`).
    ArduPilot {
        /// A ground rover (other mode numbers).
        rover: bool,
    },
}

impl VehicleStatus {
    /// Whether attitude and position arrived within `age`.
    pub fn pose_fresh(&self, age: Duration) -> (bool, bool) {
        let fresh = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < age);
        (fresh(self.pose_at.0), fresh(self.pose_at.1))
    }
}

/// What we know of the vehicle.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VehicleStatus {
    /// Autopilot (from its heartbeat).
    pub flavour: Option<Flavour>,
    /// Its system and component id.
    pub target: (u8, u8),
    /// When its last heartbeat arrived.
    pub last_heartbeat: Option<Instant>,
    /// Armed (base mode flag).
    pub armed: bool,
    /// Its custom (flight) mode.
    pub custom_mode: u32,
    /// Roll, pitch, yaw (rad) and their rates (rad/s), from ATTITUDE.
    pub attitude: Option<[f32; 6]>,
    /// x, y, z (m, NED) and vx, vy, vz (m/s), from LOCAL_POSITION_NED.
    pub local_position: Option<[f32; 6]>,
    /// When the last ATTITUDE and LOCAL_POSITION_NED arrived.
    pub pose_at: (Option<Instant>, Option<Instant>),
    /// Battery voltage (mV) and remaining (%), from SYS_STATUS.
    pub battery: Option<(u16, i8)>,
    /// Setpoints sent.
    pub setpoints_sent: u64,
    /// Of those, zero-velocity ones sent because the policy was quiet.
    pub quiet_setpoints: u64,
    /// Rounds of telemetry requests sent (`MAV_CMD_SET_MESSAGE_INTERVAL`).
    pub stream_requests: u32,
    /// Whether the hold mode was commanded after the policy went quiet.
    pub hold_commanded: bool,
    /// How often the hold mode was sent (again while the heartbeat did not show it).
    pub hold_tries: u8,
    /// The autopilot's heartbeat shows the hold mode that was commanded.
    pub hold_confirmed: bool,
    /// The heartbeat never showed the hold mode after `command_tries` sends.
    pub hold_failed: bool,
    /// Before the hold showed, the heartbeat showed a mode that is neither the
    /// agent's nor hold (the pilot's or a failsafe's): the hold is not sent again.
    pub hold_superseded: bool,
    /// Messages received that failed to parse.
    pub parse_errors: u64,
}

enum Transport {
    Udp {
        socket: UdpSocket,
        peer: Mutex<Option<SocketAddr>>,
    },
    Serial(Mutex<TTYPort>),
}

/// A velocity setpoint in the body frame, z up (as the policy gives it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Velocity {
    forward: f32,
    left: f32,
    up: f32,
    yaw_rate: f32,
}

struct Shared {
    cfg: MavConfig,
    transport: Transport,
    sequence: AtomicU8,
    status: Mutex<VehicleStatus>,
    heartbeat: Condvar,
    acks: Mutex<Vec<(MavCmd, MavResult, Instant)>>,
    ack_arrived: Condvar,
    latest: Mutex<Option<(Velocity, Instant)>>,
    in_control: AtomicBool,
    stop: AtomicBool,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection to an autopilot.
pub struct MavLink {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl MavLink {
    /// Opens the transport and starts the receive and stream threads (which
    /// send our heartbeat at 1 Hz and setpoints at `setpoint_hz`).
    pub fn connect(cfg: MavConfig) -> Result<MavLink, MavError> {
        let address = format!("{:?}", cfg.address);
        let open_err = |reason: String| MavError::Open {
            address: address.clone(),
            reason,
        };
        let (transport, reader): (Transport, Box<dyn std::io::Read + Send>) = match &cfg.address {
            MavAddress::UdpIn(a) | MavAddress::UdpOut(a) => {
                let bind: SocketAddr = match cfg.address {
                    MavAddress::UdpIn(_) => *a,
                    _ if a.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], 0)),
                    _ => SocketAddr::from(([0u16; 8], 0)),
                };
                let socket = UdpSocket::bind(bind).map_err(|e| open_err(e.to_string()))?;
                socket
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .map_err(|e| open_err(e.to_string()))?;
                let peer = matches!(cfg.address, MavAddress::UdpOut(_)).then_some(*a);
                let reader = Box::new(std::io::empty());
                (
                    Transport::Udp {
                        socket,
                        peer: Mutex::new(peer),
                    },
                    reader,
                )
            }
            MavAddress::Serial(dev, baud) => {
                let port = serialport::new(dev.to_string_lossy(), *baud)
                    .timeout(Duration::from_millis(50))
                    .open_native()
                    .map_err(|e| open_err(e.to_string()))?;
                let reader = port
                    .try_clone_native()
                    .map_err(|e| open_err(e.to_string()))?;
                (Transport::Serial(Mutex::new(port)), Box::new(reader))
            }
        };
        let shared = Arc::new(Shared {
            cfg,
            transport,
            sequence: AtomicU8::new(0),
            status: Mutex::new(VehicleStatus::default()),
            heartbeat: Condvar::new(),
            acks: Mutex::new(Vec::new()),
            ack_arrived: Condvar::new(),
            latest: Mutex::new(None),
            in_control: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            started: Instant::now(),
        });
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mav-tx".into())
                .spawn(move || stream_loop(&s))
                .map_err(|e| open_err(e.to_string()))?,
        );
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mav-rx".into())
                .spawn(move || receive_loop(&s, reader))
                .map_err(|e| open_err(e.to_string()))?,
        );
        Ok(MavLink { shared, threads })
    }

    /// Waits for the autopilot's first heartbeat.
    pub fn wait_heartbeat(&self, timeout: Duration) -> Result<VehicleStatus, MavError> {
        self.wait_status(timeout, |st| st.last_heartbeat.is_some())
            .ok_or(MavError::NoHeartbeat(timeout))
    }

    /// The status once `done` holds for it, re-checked at every heartbeat; None
    /// after `timeout`.
    fn wait_status(
        &self,
        timeout: Duration,
        done: impl Fn(&VehicleStatus) -> bool,
    ) -> Option<VehicleStatus> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.status);
        while !done(&st) {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .shared
                .heartbeat
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Some(*st)
    }

    /// What we know of the vehicle now.
    pub fn status(&self) -> VehicleStatus {
        *lock(&self.shared.status)
    }

    /// Sends `COMMAND_LONG` and waits for its `COMMAND_ACK`, resending
    /// (confirmation + 1) on silence; `IN_PROGRESS` keeps waiting.
    pub fn command(&self, command: MavCmd, params: [f32; 7]) -> Result<(), MavError> {
        command_long(&self.shared, command, params, true)
    }

    /// Arms the vehicle.
    pub fn arm(&self) -> Result<(), MavError> {
        self.command(
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        )
    }

    /// Disarms the vehicle.
    pub fn disarm(&self) -> Result<(), MavError> {
        self.shared.in_control.store(false, Ordering::Relaxed);
        // A hold still being confirmed is not sent again to a disarmed vehicle.
        lock(&self.shared.status).hold_commanded = false;
        self.command(MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, [0.0; 7])
    }

    /// Disarms the vehicle now, in the air too: `MAV_CMD_COMPONENT_ARM_DISARM`
    /// with param2 = 21196, which PX4 and ArduPilot take as "force" (the
    /// vehicle falls).
    pub fn force_disarm(&self) -> Result<(), MavError> {
        self.command(
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [0.0, 21196.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        )?;
        // Only once it is done: an autopilot that refused stays in the
        // agent's control, and its hold failsafe stays armed.
        self.shared.in_control.store(false, Ordering::Relaxed);
        lock(&self.shared.status).hold_commanded = false;
        Ok(())
    }

    /// Hands control to the agent: PX4 Offboard, ArduPilot Guided. PX4 wants
    /// setpoints streaming before the switch; the stream runs from connect.
    /// The switch counts once the autopilot's heartbeat shows the mode (an
    /// acknowledgement alone does not: PX4 acknowledges and then falls back when
    /// offboard setpoints stop); it is sent again until then, `command_tries`
    /// times at most.
    pub fn take_control(&self) -> Result<(), MavError> {
        let flavour = flavour(&self.shared);
        let params = mode_params(flavour, Mode::Control);
        let want = custom_mode(flavour, Mode::Control);
        let tries = self.shared.cfg.command_tries.max(1);
        // A hold still being confirmed is cancelled first, so that it is not
        // sent again while control is being taken back.
        {
            let mut st = lock(&self.shared.status);
            (st.hold_commanded, st.hold_confirmed) = (false, false);
            (st.hold_failed, st.hold_superseded) = (false, false);
            st.hold_tries = 0;
        }
        for _ in 0..tries {
            self.command(MavCmd::MAV_CMD_DO_SET_MODE, params)?;
            let shown = self.wait_status(self.shared.cfg.mode_timeout, |st| st.custom_mode == want);
            if shown.is_some() {
                *lock(&self.shared.latest) = None;
                self.shared.in_control.store(true, Ordering::Relaxed);
                return Ok(());
            }
        }
        Err(MavError::ModeNotEntered {
            mode: "the agent's control mode (PX4 Offboard, ArduPilot Guided)",
            custom_mode: lock(&self.shared.status).custom_mode,
            tries,
        })
    }

    /// Sets the body-frame velocity (forward, left, up m/s; yaw rate rad/s,
    /// counter-clockwise) that the stream sends until the next call.
    pub fn set_velocity(&self, forward: f32, left: f32, up: f32, yaw_rate: f32) {
        let v = Velocity {
            forward,
            left,
            up,
            yaw_rate,
        };
        let finite = [forward, left, up, yaw_rate].iter().all(|x| x.is_finite());
        // A NaN from the policy is a quiet policy, not a command.
        if finite {
            *lock(&self.shared.latest) = Some((v, Instant::now()));
        }
    }
}

impl Drop for MavLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn flavour(shared: &Shared) -> Option<Flavour> {
    lock(&shared.status).flavour
}

#[derive(Clone, Copy)]
enum Mode {
    /// The agent flies: PX4 Offboard, ArduPilot Guided.
    Control,
    /// Hold position (stop for a rover).
    Hold,
}

/// The custom mode an autopilot's heartbeat shows in `mode`: PX4 packs its
/// main mode into bits 16-23 and its sub mode into bits 24-31, ArduPilot
/// reports its mode number.
fn custom_mode(flavour: Option<Flavour>, mode: Mode) -> u32 {
    let p = mode_params(flavour, mode);
    match flavour {
        Some(Flavour::ArduPilot { .. }) => p[1] as u32,
        Some(Flavour::Px4) | None => ((p[1] as u32) << 16) | ((p[2] as u32) << 24),
    }
}

/// `MAV_CMD_DO_SET_MODE` parameters for a mode on this autopilot.
fn mode_params(flavour: Option<Flavour>, mode: Mode) -> [f32; 7] {
    // param1: MAV_MODE_FLAG_CUSTOM_MODE_ENABLED; param2/3: the autopilot's own numbers.
    let (main, sub) = match (flavour, mode) {
        // PX4: main mode 6 = Offboard; 4 = Auto with sub mode 3 = Loiter (Hold).
        (Some(Flavour::Px4) | None, Mode::Control) => (6.0, 0.0),
        (Some(Flavour::Px4) | None, Mode::Hold) => (4.0, 3.0),
        // ArduCopter: 4 = Guided, 5 = Loiter. ArduRover: 15 = Guided, 4 = Hold.
        (Some(Flavour::ArduPilot { rover: false }), Mode::Control) => (4.0, 0.0),
        (Some(Flavour::ArduPilot { rover: false }), Mode::Hold) => (5.0, 0.0),
        (Some(Flavour::ArduPilot { rover: true }), Mode::Control) => (15.0, 0.0),
        (Some(Flavour::ArduPilot { rover: true }), Mode::Hold) => (4.0, 0.0),
    };
    [1.0, main, sub, 0.0, 0.0, 0.0, 0.0]
}

fn send(shared: &Shared, msg: &MavMessage) {
    let header = MavHeader {
        system_id: shared.cfg.system_id as u32,
        component_id: shared.cfg.component_id,
        sequence: shared.sequence.fetch_add(1, Ordering::Relaxed),
    };
    let mut bytes = Vec::with_capacity(64);
    if let Err(e) = mavlink::write_v2_msg(&mut bytes, header, msg) {
        tracing::error!("cannot encode MAVLink message: {e}");
        return;
    }
    let result = match &shared.transport {
        Transport::Udp { socket, peer } => match *lock(peer) {
            Some(p) => socket.send_to(&bytes, p).map(|_| ()),
            // udpin before anyone spoke: nobody to send to yet.
            None => Ok(()),
        },
        Transport::Serial(port) => {
            use std::io::Write;
            lock(port).write_all(&bytes)
        }
    };
    if let Err(e) = result {
        tracing::warn!("MAVLink send failed: {e}");
    }
}

fn command_long(shared: &Shared, command: MavCmd, p: [f32; 7], wait: bool) -> Result<(), MavError> {
    let (sys, comp) = lock(&shared.status).target;
    let tries = shared.cfg.command_tries.max(1);
    for confirmation in 0..tries {
        let since = Instant::now();
        send(
            shared,
            &MavMessage::COMMAND_LONG(COMMAND_LONG_DATA {
                param1: p[0],
                param2: p[1],
                param3: p[2],
                param4: p[3],
                param5: p[4],
                param6: p[5],
                param7: p[6],
                command,
                target_system: sys,
                target_component: comp,
                confirmation,
            }),
        );
        if !wait {
            return Ok(());
        }
        let mut deadline = since + shared.cfg.ack_timeout;
        let mut acks = lock(&shared.acks);
        loop {
            if let Some(&(_, result, _)) = acks
                .iter()
                .rev()
                .find(|(c, _, at)| *c == command && *at >= since)
            {
                match result {
                    MavResult::MAV_RESULT_ACCEPTED => return Ok(()),
                    MavResult::MAV_RESULT_IN_PROGRESS => {
                        // Still working on it: wait a further timeout for the final answer.
                        acks.retain(|(c, _, _)| *c != command);
                        deadline = Instant::now() + shared.cfg.ack_timeout;
                    }
                    result => return Err(MavError::Refused { command, result }),
                }
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            acks = shared
                .ack_arrived
                .wait_timeout(acks, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
    Err(MavError::NoAck { command, tries })
}

/// The messages the agent reads and the rates it asks for
/// (`MAV_CMD_SET_MESSAGE_INTERVAL`): ATTITUDE, LOCAL_POSITION_NED, SYS_STATUS.
const STREAMS: [(u32, f32); 3] = [(30, 50.0), (32, 30.0), (1, 2.0)];

/// Our heartbeat at 1 Hz and the setpoint stream.
fn stream_loop(shared: &Shared) {
    let period = Duration::from_secs_f32(1.0 / shared.cfg.setpoint_hz.clamp(1.0, 200.0));
    let mut next = Instant::now();
    let mut last_heartbeat: Option<Instant> = None;
    // When the hold mode was last sent, while its heartbeat confirmation is due.
    let mut hold_sent: Option<Instant> = None;
    // When the telemetry streams were last requested.
    let mut streams_asked: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if last_heartbeat.is_none_or(|t| now - t >= Duration::from_secs(1)) {
            last_heartbeat = Some(now);
            send(
                shared,
                &MavMessage::HEARTBEAT(HEARTBEAT_DATA {
                    custom_mode: 0,
                    mavtype: MavType::MAV_TYPE_ONBOARD_CONTROLLER,
                    autopilot: MavAutopilot::MAV_AUTOPILOT_INVALID,
                    base_mode: MavModeFlag::empty(),
                    system_status: MavState::MAV_STATE_ACTIVE,
                    mavlink_version: 3,
                }),
            );
        }
        let target = lock(&shared.status).target;
        // Ask for the telemetry the agent uses at its rates once the autopilot
        // is known (ArduPilot sends nothing without SRn_* parameters
        // otherwise), and again every 2 s while attitude or position is missing
        // or older than a second.
        // Fresh: arrived within the last second (an autopilot that rebooted
        // forgets the intervals asked for).
        let (att, pos) = lock(&shared.status).pose_fresh(Duration::from_secs(1));
        let ask = match streams_asked {
            None => true,
            Some(t) => !(att && pos) && now - t >= Duration::from_secs(2),
        };
        if target != (0, 0) && ask {
            streams_asked = Some(now);
            for (message, hz) in STREAMS {
                let interval_us = 1e6 / hz;
                let _ = command_long(
                    shared,
                    MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL,
                    [message as f32, interval_us, 0.0, 0.0, 0.0, 0.0, 0.0],
                    false,
                );
            }
            lock(&shared.status).stream_requests += 1;
        }
        if target != (0, 0) {
            let latest = *lock(&shared.latest);
            let age = latest.map(|(_, at)| now - at);
            let quiet = age.is_none_or(|a| a > shared.cfg.quiet_after);
            let v = match latest {
                Some((v, _)) if !quiet => v,
                _ => Velocity::default(),
            };
            send(shared, &velocity_setpoint(shared, target, v));
            let mut st = lock(&shared.status);
            st.setpoints_sent += 1;
            if quiet && latest.is_some() {
                st.quiet_setpoints += 1;
            }
            let hold_due = shared.in_control.load(Ordering::Relaxed)
                && !st.hold_commanded
                && age.is_some_and(|a| a > shared.cfg.hold_after);
            // A hold the heartbeat does not show yet: confirmed, sent again
            // after `mode_timeout`, or failed after `command_tries` sends.
            // Only while the heartbeat still shows our control mode: a mode the
            // pilot or the autopilot's own failsafe chose (Position, Land, RTL)
            // is never overridden.
            let mut resend_hold = false;
            if st.hold_commanded && !st.hold_confirmed && !st.hold_failed && !st.hold_superseded {
                if st.custom_mode == custom_mode(st.flavour, Mode::Hold) {
                    st.hold_confirmed = true;
                    hold_sent = None;
                } else if st.custom_mode != custom_mode(st.flavour, Mode::Control) {
                    st.hold_superseded = true;
                    hold_sent = None;
                    tracing::warn!(
                        custom_mode = st.custom_mode,
                        "the autopilot left the agent's mode for another one: hold not sent again"
                    );
                } else if hold_sent.is_some_and(|t| now - t >= shared.cfg.mode_timeout) {
                    if st.hold_tries >= shared.cfg.command_tries.max(1) {
                        st.hold_failed = true;
                        hold_sent = None;
                        tracing::error!(
                            tries = st.hold_tries,
                            custom_mode = st.custom_mode,
                            "the autopilot did not enter its hold mode"
                        );
                    } else {
                        resend_hold = true;
                    }
                }
            }
            if hold_due || resend_hold {
                st.hold_commanded = true;
                st.hold_tries += 1;
                hold_sent = Some(now);
                let flavour = st.flavour;
                drop(st);
                tracing::warn!(
                    "policy quiet for {:?}: commanding the autopilot's hold mode",
                    age
                );
                shared.in_control.store(false, Ordering::Relaxed);
                // Not waited for here: the stream must keep going. The ack is recorded.
                let _ = command_long(
                    shared,
                    MavCmd::MAV_CMD_DO_SET_MODE,
                    mode_params(flavour, Mode::Hold),
                    false,
                );
            }
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

#[allow(deprecated)] // MAV_FRAME_BODY_NED: superseded by BODY_FRD, but what PX4 and ArduPilot both take.
fn velocity_setpoint(shared: &Shared, (sys, comp): (u8, u8), v: Velocity) -> MavMessage {
    let ignore = PositionTargetTypemask::POSITION_TARGET_TYPEMASK_X_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_Y_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_Z_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_AX_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_AY_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_AZ_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_YAW_IGNORE;
    // Body z-up, counter-clockwise → NED body: right = -left, down = -up, clockwise yaw.
    MavMessage::SET_POSITION_TARGET_LOCAL_NED(SET_POSITION_TARGET_LOCAL_NED_DATA {
        time_boot_ms: shared.started.elapsed().as_millis() as u32,
        x: 0.0,
        y: 0.0,
        z: 0.0,
        vx: v.forward,
        vy: -v.left,
        vz: -v.up,
        afx: 0.0,
        afy: 0.0,
        afz: 0.0,
        yaw: 0.0,
        yaw_rate: -v.yaw_rate,
        type_mask: ignore,
        target_system: sys,
        target_component: comp,
        coordinate_frame: MavFrame::MAV_FRAME_BODY_NED,
    })
}

fn receive_loop(shared: &Shared, reader: Box<dyn std::io::Read + Send>) {
    match &shared.transport {
        Transport::Udp { socket, peer } => {
            let mut buf = [0u8; 2048];
            while !shared.stop.load(Ordering::Relaxed) {
                let (n, from) = match socket.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("MAVLink receive failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                {
                    let mut p = lock(peer);
                    if p.is_none() {
                        *p = Some(from);
                    }
                }
                let mut r = MavlinkReader::new(&buf[..n]);
                loop {
                    match r.read_any_message::<MavMessage>() {
                        Ok((h, m)) => handle(shared, h, m),
                        Err(mavlink::error::MessageReadError::Io(_)) => break,
                        Err(_) => lock(&shared.status).parse_errors += 1,
                    }
                }
            }
        }
        Transport::Serial(_) => {
            let mut r = MavlinkReader::new(reader);
            while !shared.stop.load(Ordering::Relaxed) {
                match r.read_any_message::<MavMessage>() {
                    Ok((h, m)) => handle(shared, h, m),
                    Err(mavlink::error::MessageReadError::Io(e))
                        if matches!(
                            e.kind(),
                            ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                        ) => {}
                    Err(mavlink::error::MessageReadError::Io(e)) => {
                        tracing::warn!("MAVLink serial read failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(_) => lock(&shared.status).parse_errors += 1,
                }
            }
        }
    }
}

fn handle(shared: &Shared, h: MavHeader, m: MavMessage) {
    if h.system_id == shared.cfg.system_id as u32 && h.component_id == shared.cfg.component_id {
        return; // our own echo
    }
    let mut st = lock(&shared.status);
    match m {
        MavMessage::HEARTBEAT(hb) => {
            let flavour = match hb.autopilot {
                MavAutopilot::MAV_AUTOPILOT_PX4 => Some(Flavour::Px4),
                MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA => Some(Flavour::ArduPilot {
                    rover: matches!(
                        hb.mavtype,
                        MavType::MAV_TYPE_GROUND_ROVER | MavType::MAV_TYPE_SURFACE_BOAT
                    ),
                }),
                // Ground stations, cameras, other companions: not the autopilot.
                _ => return,
            };
            st.flavour = flavour;
            st.target = (h.system_id.min(255) as u8, h.component_id);
            st.last_heartbeat = Some(Instant::now());
            st.armed = hb
                .base_mode
                .contains(MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED);
            st.custom_mode = hb.custom_mode;
            drop(st);
            shared.heartbeat.notify_all();
        }
        MavMessage::ATTITUDE(a) => {
            st.pose_at.0 = Some(Instant::now());
            st.attitude = Some([
                a.roll,
                a.pitch,
                a.yaw,
                a.rollspeed,
                a.pitchspeed,
                a.yawspeed,
            ]);
        }
        MavMessage::LOCAL_POSITION_NED(p) => {
            st.pose_at.1 = Some(Instant::now());
            st.local_position = Some([p.x, p.y, p.z, p.vx, p.vy, p.vz]);
        }
        MavMessage::SYS_STATUS(s) => {
            st.battery = Some((s.voltage_battery, s.battery_remaining));
        }
        MavMessage::COMMAND_ACK(a) => {
            drop(st);
            let mut acks = lock(&shared.acks);
            acks.push((a.command, a.result, Instant::now()));
            if acks.len() > 64 {
                acks.remove(0);
            }
            drop(acks);
            shared.ack_arrived.notify_all();
        }
        _ => {}
    }
}
