//! The agent's messaging over zenoh.
//!
//! - [`Topic`]: every topic, its key expression under a robot name and its message type
//!   (one table, also in `agent/bus/README.md`);
//! - [`wire`] and [`msg`]: the versioned little-endian encoding of every message;
//! - [`open`]: a zenoh session on explicit TCP endpoints (multicast scouting is
//!   off: it fails in containers and CI);
//! - [`announce`] and [`Presence`]: liveliness tokens, so that a node that
//!   disappears is noticed by the others;
//! - [`log`]: recording topics to MCAP files and playing them back;
//! - [`Outbox`] and [`Inbox`]: typed publishers and subscribers that stamp
//!   sequence numbers, count malformed messages and sequence gaps (dropped or
//!   late messages) instead of failing, and never block the publisher: an inbox
//!   keeps only the newest few messages.
#![forbid(unsafe_code)]

pub mod log;
pub mod msg;
pub mod rmw;
pub mod ros2;
pub mod security;
pub mod wire;

use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use wire::{DecodeError, Header, Message, decode, encode};
use zenoh::Wait;
use zenoh::handlers::{RingChannel, RingChannelHandler};
use zenoh::sample::Sample;

/// zenoh itself, for nodes that speak another protocol on it (the ROS 2 bridge).
pub use zenoh;
pub use zenoh::Session;

/// Every topic of the node graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `camera/stereo`: [`msg::StereoPair`] from the camera (twin, device or file).
    CameraStereo,
    /// `depth/stereo`: [`msg::DepthScan`] from stereo matching.
    DepthStereo,
    /// `depth/mono`: [`msg::DepthScan`] from the monocular network.
    DepthMono,
    /// `cmd/setpoint`: [`msg::Setpoint`] from the policy to the flight controller.
    CmdSetpoint,
    /// `state`: [`msg::State`] from the flight controller (or the twin).
    State,
    /// `events`: [`msg::Event`] from any node.
    Events,
    /// `fc/status`: [`msg::FcStatus`] from the flight-controller link node.
    FcStatus,
    /// `nav/goal`: [`msg::Goal`] where the robot is asked to go.
    Goal,
    /// `cmd/policy`: [`msg::Setpoint`] a policy proposes; the safety node passes it
    /// on to `cmd/setpoint` or takes over (graphs with a supervising safety node).
    CmdPolicy,
    /// `policy/weights`: [`msg::Weights`] from an online learner to the policy node.
    Weights,
    /// `perception/tracks`: [`msg::Tracks`], the walkers a people tracker follows
    /// (in the twin: the simulated walkers, with tracker noise).
    Tracks,
    /// `camera/health`: [`msg::CameraHealth`] from the camera node.
    CameraHealth,
    /// `cmd/arm`: [`msg::ArmRequest`] from an operator (`agent arm`) to the
    /// flight-controller node.
    CmdArm,
    /// `cmd/external`: [`msg::Setpoint`] a velocity command from outside the
    /// agent (a ROS 2 planner's `cmd_vel`, through the `ros2` node), which the
    /// policy node flies only within its safety limits (`--external`).
    CmdExternal,
}

impl Topic {
    /// All topics.
    pub const ALL: [Topic; 14] = [
        Topic::CameraStereo,
        Topic::DepthStereo,
        Topic::DepthMono,
        Topic::CmdSetpoint,
        Topic::State,
        Topic::Events,
        Topic::FcStatus,
        Topic::Goal,
        Topic::CmdPolicy,
        Topic::Weights,
        Topic::Tracks,
        Topic::CameraHealth,
        Topic::CmdArm,
        Topic::CmdExternal,
    ];

    /// Key expression below the robot name.
    pub fn suffix(self) -> &'static str {
        match self {
            Topic::CameraStereo => "camera/stereo",
            Topic::DepthStereo => "depth/stereo",
            Topic::DepthMono => "depth/mono",
            Topic::CmdSetpoint => "cmd/setpoint",
            Topic::State => "state",
            Topic::Events => "events",
            Topic::FcStatus => "fc/status",
            Topic::Goal => "nav/goal",
            Topic::CmdPolicy => "cmd/policy",
            Topic::Weights => "policy/weights",
            Topic::Tracks => "perception/tracks",
            Topic::CameraHealth => "camera/health",
            Topic::CmdArm => "cmd/arm",
            Topic::CmdExternal => "cmd/external",
        }
    }

    /// Full key expression, `<robot>/<suffix>`.
    pub fn key(self, robot: &str) -> String {
        format!("{robot}/{}", self.suffix())
    }

    /// Kind number (wire format) of the message type it carries.
    pub const fn kind(self) -> u16 {
        use wire::Message as M;
        match self {
            Topic::CameraStereo => <msg::StereoPair as M>::KIND,
            Topic::DepthStereo | Topic::DepthMono => <msg::DepthScan as M>::KIND,
            Topic::CmdSetpoint | Topic::CmdPolicy | Topic::CmdExternal => {
                <msg::Setpoint as M>::KIND
            }
            Topic::State => <msg::State as M>::KIND,
            Topic::Events => <msg::Event as M>::KIND,
            Topic::FcStatus => <msg::FcStatus as M>::KIND,
            Topic::Goal => <msg::Goal as M>::KIND,
            Topic::Weights => <msg::Weights as M>::KIND,
            Topic::Tracks => <msg::Tracks as M>::KIND,
            Topic::CameraHealth => <msg::CameraHealth as M>::KIND,
            Topic::CmdArm => <msg::ArmRequest as M>::KIND,
        }
    }

    /// The zenoh priority its messages travel at: commands, the vehicle's
    /// state and status, events and goals ahead of images, scans and weights.
    /// Each priority has its own queue on a link, so a slow subscriber that
    /// backs up the images does not delay or drop a setpoint.
    pub fn priority(self) -> zenoh::qos::Priority {
        use zenoh::qos::Priority;
        match self {
            Topic::CmdSetpoint
            | Topic::CmdPolicy
            | Topic::State
            | Topic::FcStatus
            | Topic::Events
            | Topic::Goal
            | Topic::CmdArm
            | Topic::CmdExternal => Priority::InteractiveHigh,
            Topic::DepthStereo | Topic::DepthMono | Topic::Tracks | Topic::CameraHealth => {
                Priority::DataHigh
            }
            Topic::CameraStereo | Topic::Weights => Priority::Data,
        }
    }

    /// Whether each publisher numbers its own messages on this topic, one
    /// publisher per frame id, so that a gap in the sequence numbers is a lost
    /// message. Not so for the scans and commands, which carry the camera
    /// pair's number (a frame a stage skipped is no loss), nor for `events`,
    /// where several publishers may share a frame id.
    pub fn numbered_by_publisher(self) -> bool {
        match self {
            Topic::CameraStereo
            | Topic::CameraHealth
            | Topic::State
            | Topic::FcStatus
            | Topic::Goal
            | Topic::Tracks
            | Topic::Weights
            | Topic::CmdArm
            | Topic::CmdExternal => true,
            Topic::DepthStereo
            | Topic::DepthMono
            | Topic::CmdSetpoint
            | Topic::CmdPolicy
            | Topic::Events => false,
        }
    }

    /// The topic whose suffix is `s` (`camera/stereo`, `state`, ...).
    pub fn from_suffix(s: &str) -> Option<Topic> {
        Topic::ALL.iter().copied().find(|t| t.suffix() == s)
    }

    /// Name of the message type it carries.
    pub fn message(self) -> &'static str {
        use wire::Message as M;
        match self {
            Topic::CameraStereo => <msg::StereoPair as M>::NAME,
            Topic::DepthStereo | Topic::DepthMono => <msg::DepthScan as M>::NAME,
            Topic::CmdSetpoint | Topic::CmdPolicy | Topic::CmdExternal => {
                <msg::Setpoint as M>::NAME
            }
            Topic::State => <msg::State as M>::NAME,
            Topic::Events => <msg::Event as M>::NAME,
            Topic::FcStatus => <msg::FcStatus as M>::NAME,
            Topic::Goal => <msg::Goal as M>::NAME,
            Topic::Weights => <msg::Weights as M>::NAME,
            Topic::Tracks => <msg::Tracks as M>::NAME,
            Topic::CameraHealth => <msg::CameraHealth as M>::NAME,
            Topic::CmdArm => <msg::ArmRequest as M>::NAME,
        }
    }
}

/// A topic together with the message type it carries, so that a publisher
/// or subscriber of the wrong type does not compile: `Inbox::<State>::new(..,
/// topics::DEPTH_STEREO, ..)` is a type error. The only values are the
/// constants in [`topics`], each checked against [`Topic::kind`] when it is
/// compiled.
pub struct TypedTopic<M> {
    topic: Topic,
    _m: PhantomData<fn() -> M>,
}

impl<M> Clone for TypedTopic<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for TypedTopic<M> {}

impl<M> std::fmt::Debug for TypedTopic<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TypedTopic({})", self.topic.suffix())
    }
}

impl<M: Message> TypedTopic<M> {
    const fn new(topic: Topic) -> Self {
        assert!(
            topic.kind() == M::KIND,
            "the topic does not carry this message type"
        );
        Self {
            topic,
            _m: PhantomData,
        }
    }

    /// The untyped topic (its key expression, its name in recordings).
    pub const fn topic(self) -> Topic {
        self.topic
    }
}

/// Every topic with its message type (see [`TypedTopic`]).
pub mod topics {
    use super::{Topic, TypedTopic};
    use crate::msg::{
        ArmRequest, CameraHealth, DepthScan, Event, FcStatus, Goal, Setpoint, State, StereoPair,
        Tracks, Weights,
    };

    /// `camera/stereo`
    pub const CAMERA_STEREO: TypedTopic<StereoPair> = TypedTopic::new(Topic::CameraStereo);
    /// `depth/stereo`
    pub const DEPTH_STEREO: TypedTopic<DepthScan> = TypedTopic::new(Topic::DepthStereo);
    /// `depth/mono`
    pub const DEPTH_MONO: TypedTopic<DepthScan> = TypedTopic::new(Topic::DepthMono);
    /// `cmd/setpoint`
    pub const CMD_SETPOINT: TypedTopic<Setpoint> = TypedTopic::new(Topic::CmdSetpoint);
    /// `state`
    pub const STATE: TypedTopic<State> = TypedTopic::new(Topic::State);
    /// `events`
    pub const EVENTS: TypedTopic<Event> = TypedTopic::new(Topic::Events);
    /// `fc/status`
    pub const FC_STATUS: TypedTopic<FcStatus> = TypedTopic::new(Topic::FcStatus);
    /// `nav/goal`
    pub const GOAL: TypedTopic<Goal> = TypedTopic::new(Topic::Goal);
    /// `cmd/policy`
    pub const CMD_POLICY: TypedTopic<Setpoint> = TypedTopic::new(Topic::CmdPolicy);
    /// `cmd/external`
    pub const CMD_EXTERNAL: TypedTopic<Setpoint> = TypedTopic::new(Topic::CmdExternal);
    /// `policy/weights`
    pub const WEIGHTS: TypedTopic<Weights> = TypedTopic::new(Topic::Weights);
    /// `perception/tracks`
    pub const TRACKS: TypedTopic<Tracks> = TypedTopic::new(Topic::Tracks);
    /// `camera/health`
    pub const CAMERA_HEALTH: TypedTopic<CameraHealth> = TypedTopic::new(Topic::CameraHealth);
    /// `cmd/arm`
    pub const CMD_ARM: TypedTopic<ArmRequest> = TypedTopic::new(Topic::CmdArm);
}

/// Where a session listens and whom it connects to.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// Endpoints to listen on, e.g. `tcp/127.0.0.1:7450`.
    pub listen: Vec<String>,
    /// Endpoints to connect to.
    pub connect: Vec<String>,
    /// How soon a `connect` endpoint that is not listening (yet, or any more) is tried again.
    pub retry: ConnectRetry,
    /// A credentials file (`user:password`, readable by its owner only) for a
    /// secured graph's router ([`security`]). The session is then a client of
    /// the router: it never listens, and talks to other nodes only through it.
    pub auth: Option<PathBuf>,
    /// Certificate files for TLS endpoints (`tls/host:port`), mutual: the
    /// session proves itself with `cert`; a router accepts only clients signed
    /// by `ca`. A connecting session trusts `ca` and also the public web CAs
    /// (zenoh's TLS link mixes them), which issue certificates for public
    /// addresses and names: connect by loopback, a private address or a name
    /// under a reserved domain only. Also makes the session a client of the
    /// router.
    pub tls: Option<TlsFiles>,
    /// Join as a client of the router that `connect` names, without
    /// credentials: the session never listens and reaches every other one
    /// through that router only (training nodes on several hosts,
    /// `agent router --open`). Credentials (`auth`, `tls`) imply it.
    pub client: bool,
    /// Stamp every sample with the session's hybrid logical clock (zenoh's
    /// `timestamping`), as rmw_zenoh's sessions do: zenoh's advanced
    /// publisher (a cache that late joiners query, ROS 2's transient local)
    /// needs it.
    pub timestamping: bool,
}

/// A session's certificate, its key and the CA it trusts (PEM files, from `agent certs`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA certificate every peer's certificate must be signed by.
    pub ca: PathBuf,
    /// This session's certificate.
    pub cert: PathBuf,
    /// This session's private key.
    pub key: PathBuf,
}

impl BusConfig {
    /// A client of one peer: connect to `endpoint`, listen on a free loopback port.
    pub fn connect_to(endpoint: impl Into<String>) -> Self {
        Self {
            connect: vec![endpoint.into()],
            ..Self::default()
        }
    }

    /// Whether the session joins a secured graph as a client of its router.
    pub fn is_client(&self) -> bool {
        self.client || self.auth.is_some() || self.tls.is_some()
    }
}

/// The robot's router of a secured graph: the one door into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Endpoints: loopback TCP for the robot's nodes, TLS for links that leave the robot.
    pub listen: Vec<String>,
    /// The dictionary of users and passwords (`user:password` per line) it
    /// checks every client against; none: no password check.
    pub users: Option<PathBuf>,
    /// Its certificate for TLS endpoints (mutual TLS: clients need one too).
    pub tls: Option<TlsFiles>,
    /// zenoh's `access_control` section ([`security::acl_json5`]).
    pub acl: String,
}

/// Back-off between attempts to reach a `connect` endpoint: `first_ms` after the
/// first failure, doubling up to `max_ms`. It applies both at start-up (a node
/// launched before its peer listens) and after a link drops (a peer that
/// crashed and was restarted). zenoh's own default (1 s doubling to 4 s) can
/// leave a restarted graph deaf for up to 4 s; on loopback or a robot's own
/// network an attempt costs next to nothing, so the default here is 250 ms to 1 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectRetry {
    /// Wait after the first failed attempt, in milliseconds.
    pub first_ms: u64,
    /// Longest wait between attempts, in milliseconds.
    pub max_ms: u64,
}

impl Default for ConnectRetry {
    fn default() -> Self {
        Self {
            first_ms: 250,
            max_ms: 1000,
        }
    }
}

impl ConnectRetry {
    /// These numbers, or why they are unusable.
    pub fn check(self) -> Result<Self, String> {
        if self.first_ms == 0 || self.max_ms < self.first_ms || self.max_ms > 3_600_000 {
            return Err(format!(
                "connect retry: first {} ms and max {} ms must satisfy 0 < first <= max <= 3600000",
                self.first_ms, self.max_ms
            ));
        }
        Ok(self)
    }

    /// zenoh's `connect/retry` value (JSON5).
    fn json(self) -> Result<String, String> {
        let c = self.check()?;
        Ok(format!(
            "{{period_init_ms:{},period_max_ms:{},period_increase_factor:2.0}}",
            c.first_ms, c.max_ms
        ))
    }
}

/// `FIRST,MAX` in milliseconds, as on the command line.
impl std::fmt::Display for ConnectRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.first_ms, self.max_ms)
    }
}

impl std::str::FromStr for ConnectRetry {
    type Err = String;

    /// Parses `FIRST,MAX` (milliseconds) and checks the numbers.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("connect retry: expected FIRST,MAX in ms (e.g. 250,1000), got `{s}`");
        let (first, max) = s.split_once(',').ok_or_else(bad)?;
        let ms = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
        ConnectRetry {
            first_ms: ms(first)?,
            max_ms: ms(max)?,
        }
        .check()
    }
}

/// A messaging failure.
#[derive(Debug, Error)]
pub enum BusError {
    /// The session could not be opened (bad endpoint, port in use, ...).
    #[error("cannot open zenoh session (listen {listen:?}, connect {connect:?}): {reason}")]
    Open {
        listen: Vec<String>,
        connect: Vec<String>,
        reason: String,
    },
    /// A publisher or subscriber could not be declared.
    #[error("cannot declare {what} on {key}: {reason}")]
    Declare {
        what: &'static str,
        key: String,
        reason: String,
    },
    /// Sending failed.
    #[error("cannot publish on {key}: {reason}")]
    Put { key: String, reason: String },
    /// The session closed under a subscriber.
    #[error("subscription {key} closed")]
    Closed { key: String },
}

/// A JSON string (zenoh's settings are JSON5).
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn json_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|e| json_str(e)).collect();
    format!("[{}]", items.join(","))
}

fn tls_settings(tls: &TlsFiles) -> Vec<(&'static str, String)> {
    let p = |f: &PathBuf| json_str(&f.display().to_string());
    vec![
        ("transport/link/tls/root_ca_certificate", p(&tls.ca)),
        ("transport/link/tls/listen_certificate", p(&tls.cert)),
        ("transport/link/tls/listen_private_key", p(&tls.key)),
        ("transport/link/tls/connect_certificate", p(&tls.cert)),
        ("transport/link/tls/connect_private_key", p(&tls.key)),
        ("transport/link/tls/enable_mtls", "true".to_string()),
        (
            "transport/link/tls/verify_name_on_connect",
            "true".to_string(),
        ),
    ]
}

/// A zenoh configuration from (key, JSON5 value) settings, or the key that failed.
fn zenoh_config(settings: Vec<(&str, String)>) -> Result<zenoh::Config, String> {
    let mut c = zenoh::Config::default();
    for (k, v) in settings {
        c.insert_json5(k, &v).map_err(|e| format!("{k}: {e}"))?;
    }
    Ok(c)
}

/// The three files exist, and the private key is readable by its owner only.
fn files_exist(tls: &TlsFiles) -> Result<(), String> {
    for (what, f) in [
        ("CA", &tls.ca),
        ("certificate", &tls.cert),
        ("key", &tls.key),
    ] {
        if !f.is_file() {
            return Err(format!("TLS {what} file {} not found", f.display()));
        }
    }
    security::read_secret(&tls.key).map_err(|e| e.to_string())?;
    Ok(())
}

/// Open a session on explicit endpoints, without multicast scouting.
///
/// A peer (the default) listens on a free loopback port unless told where (for
/// peers on this machine; name an interface address for a graph that spans
/// machines). With credentials or TLS files it is instead a client of a
/// secured graph's router (see [`security`]): it never listens and needs a
/// `connect` endpoint.
pub fn open(cfg: &BusConfig) -> Result<Session, BusError> {
    let err = |reason: String| BusError::Open {
        listen: cfg.listen.clone(),
        connect: cfg.connect.clone(),
        reason,
    };
    let mut settings = vec![
        ("scouting/multicast/enabled", "false".to_string()),
        ("connect/endpoints", json_list(&cfg.connect)),
    ];
    if cfg.is_client() {
        if !cfg.listen.is_empty() {
            return Err(err(
                "a client of a router (credentials, or a training node) never listens: \
                 drop --listen (the router listens)"
                    .into(),
            ));
        }
        if cfg.connect.is_empty() {
            return Err(err(
                "a client of a router (credentials, or a training node) needs --connect, the router".into(),
            ));
        }
        settings.push(("mode", "\"client\"".to_string()));
        // One handshake: refused credentials are an error at once, named
        // below; a router that is not up yet is waited for (below).
        settings.push(("connect/timeout_ms", "0".to_string()));
    } else {
        // Every peer listens somewhere so that peers that found each other through
        // a common peer (gossip) can connect directly: loopback on a free port unless told.
        let listen = if cfg.listen.is_empty() {
            vec!["tcp/127.0.0.1:0".to_string()]
        } else {
            cfg.listen.clone()
        };
        settings.push(("mode", "\"peer\"".to_string()));
        settings.push(("listen/endpoints", json_list(&listen)));
    }
    settings.push(("connect/retry", cfg.retry.json().map_err(err)?));
    if let Some(path) = &cfg.auth {
        let (user, password) = security::read_credentials(path).map_err(|e| err(e.to_string()))?;
        settings.push(("transport/auth/usrpwd/user", json_str(&user)));
        settings.push(("transport/auth/usrpwd/password", json_str(&password)));
    }
    if let Some(tls) = &cfg.tls {
        files_exist(tls).map_err(err)?;
        settings.extend(tls_settings(tls));
    }
    if cfg.timestamping {
        settings.push(("timestamping/enabled", "true".to_string()));
    }
    let c = zenoh_config(settings).map_err(err)?;
    let mut opened = zenoh::open(c.clone()).wait();
    // A client started before its router waits for it (up to ROUTER_WAIT) and
    // tries again; one that was refused while the router listened tries once
    // more (the router may have bound its port an instant before), then the
    // refusal stands.
    if opened.is_err() && cfg.is_client() {
        let t0 = std::time::Instant::now();
        let mut refused_listening = 0;
        while opened.is_err() && t0.elapsed() < ROUTER_WAIT && refused_listening < 2 {
            if wait_listening(&cfg.connect, ROUTER_WAIT.saturating_sub(t0.elapsed())) {
                refused_listening += 1;
            } else {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            opened = zenoh::open(c.clone()).wait();
        }
    }
    opened.map_err(|e| {
        err(if cfg.is_client() {
            format!(
                "{e} (the router refused this node's credentials or certificate, \
                 or it is not up: check --auth/--tls-* against its users file and CA)"
            )
        } else {
            e.to_string()
        })
    })
}

/// How long a client waits for its router to listen before trying it anyway.
const ROUTER_WAIT: Duration = Duration::from_secs(30);

/// Whether one of `endpoints` (`tcp/HOST:PORT`, `tls/HOST:PORT`) accepts a TCP
/// connection within `limit`: a node started before its router waits for it
/// instead of failing. A probe that reaches a TLS router is a handshake that
/// never starts (the router logs a warning and pauses accepting for 100 ms),
/// so it probes only after a failed open: at boot, never in normal running.
fn wait_listening(endpoints: &[String], limit: Duration) -> bool {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = endpoints
        .iter()
        .filter_map(|e| e.split_once('/').map(|(_, rest)| rest))
        .map(|rest| rest.split(['?', '#']).next().unwrap_or(rest))
        .filter_map(|hp| hp.to_socket_addrs().ok())
        .flatten()
        .collect();
    let listening = || {
        addrs
            .iter()
            .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
    };
    if addrs.is_empty() {
        return false;
    }
    let t0 = std::time::Instant::now();
    let mut said = false;
    loop {
        if listening() {
            return true;
        }
        if t0.elapsed() >= limit {
            return false;
        }
        if !said {
            tracing::info!(?endpoints, "waiting for the router to listen");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Open a secured graph's router: it listens on `cfg.listen`, checks every
/// client's password (when a dictionary is given) and certificate (on TLS
/// endpoints), and applies the access control. Runs for as long as the
/// returned session lives.
pub fn open_router(cfg: &RouterConfig) -> Result<Session, BusError> {
    let err = |reason: String| BusError::Open {
        listen: cfg.listen.clone(),
        connect: Vec::new(),
        reason,
    };
    if cfg.listen.is_empty() {
        return Err(err(
            "the router needs at least one endpoint to listen on".into()
        ));
    }
    if cfg.listen.iter().any(|e| e.starts_with("tls/")) && cfg.tls.is_none() {
        return Err(err("a tls/ endpoint needs the router's TLS files".into()));
    }
    let mut settings = vec![
        ("mode", "\"router\"".to_string()),
        ("scouting/multicast/enabled", "false".to_string()),
        ("listen/endpoints", json_list(&cfg.listen)),
        ("access_control", cfg.acl.clone()),
    ];
    if let Some(users) = &cfg.users {
        // Read here first: a missing or exposed dictionary is named, not a
        // zenoh start-up error.
        security::read_secret(users).map_err(|e| err(e.to_string()))?;
        settings.push((
            "transport/auth/usrpwd/dictionary_file",
            json_str(&users.display().to_string()),
        ));
    }
    if let Some(tls) = &cfg.tls {
        files_exist(tls).map_err(err)?;
        settings.extend(tls_settings(tls));
    }
    let c = zenoh_config(settings).map_err(err)?;
    zenoh::open(c).wait().map_err(|e| err(e.to_string()))
}

/// Nanoseconds since the UNIX epoch (the robot's stamp clock).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A typed publisher that numbers its messages.
pub struct Outbox<M: Message> {
    publisher: zenoh::pubsub::Publisher<'static>,
    key: String,
    seq: u64,
    _m: PhantomData<M>,
}

impl<M: Message> Outbox<M> {
    /// Declare a publisher of `topic` for `robot`, at the topic's priority
    /// ([`Topic::priority`]).
    pub fn new(session: &Session, robot: &str, topic: TypedTopic<M>) -> Result<Self, BusError> {
        let key = topic.topic().key(robot);
        let publisher = session
            .declare_publisher(key.clone())
            .priority(topic.topic().priority())
            .wait()
            .map_err(|e| BusError::Declare {
                what: "publisher",
                key: key.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            publisher,
            key,
            seq: 0,
            _m: PhantomData,
        })
    }

    /// Publish with the next sequence number; returns the header sent.
    pub fn send(&mut self, stamp_ns: u64, frame_id: &str, m: &M) -> Result<Header, BusError> {
        let h = Header {
            seq: self.seq,
            stamp_ns,
            frame_id: frame_id.to_string(),
        };
        self.seq += 1;
        self.send_with(&h, m)?;
        Ok(h)
    }

    /// Publish with a given header (a derived message keeps its source's seq and stamp).
    pub fn send_with(&self, h: &Header, m: &M) -> Result<(), BusError> {
        self.publisher
            .put(encode(h, m))
            .wait()
            .map_err(|e| BusError::Put {
                key: self.key.clone(),
                reason: e.to_string(),
            })
    }

    /// Publish raw bytes (tests of malformed input).
    pub fn send_raw(&self, bytes: Vec<u8>) -> Result<(), BusError> {
        self.publisher.put(bytes).wait().map_err(|e| BusError::Put {
            key: self.key.clone(),
            reason: e.to_string(),
        })
    }
}

/// What an inbox has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxStats {
    /// Messages decoded.
    pub received: u64,
    /// Messages that could not be decoded (wrong version, kind, size, ...).
    pub malformed: u64,
    /// Sequence numbers skipped: messages dropped on the way or overwritten
    /// because this node was slower than the publisher.
    pub missed: u64,
    /// Messages older than one already received (out of order).
    pub late: u64,
}

/// A typed subscriber that keeps only the newest `depth` messages.
pub struct Inbox<M: Message> {
    sub: zenoh::pubsub::Subscriber<RingChannelHandler<Sample>>,
    key: String,
    last_seq: Option<u64>,
    stats: InboxStats,
    last_error: Option<DecodeError>,
    _m: PhantomData<M>,
}

impl<M: Message> Inbox<M> {
    /// Subscribe to `topic` of `robot`, keeping at most `depth` undelivered messages.
    pub fn new(
        session: &Session,
        robot: &str,
        topic: TypedTopic<M>,
        depth: usize,
    ) -> Result<Self, BusError> {
        let key = topic.topic().key(robot);
        let sub = session
            .declare_subscriber(key.clone())
            .with(RingChannel::new(depth.max(1)))
            .wait()
            .map_err(|e| BusError::Declare {
                what: "subscriber",
                key: key.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            sub,
            key,
            last_seq: None,
            stats: InboxStats::default(),
            last_error: None,
            _m: PhantomData,
        })
    }

    /// The next well-formed message within `timeout`; malformed ones are counted,
    /// logged and skipped. `Ok(None)` on timeout.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<(Header, M)>, BusError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let sample = match self.sub.recv_timeout(left) {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(None),
                Err(_) => {
                    return Err(BusError::Closed {
                        key: self.key.clone(),
                    });
                }
            };
            let bytes = sample.payload().to_bytes();
            match decode::<M>(&bytes) {
                Ok((h, m)) => {
                    self.account(h.seq);
                    return Ok(Some((h, m)));
                }
                Err(e) => {
                    self.stats.malformed += 1;
                    tracing::warn!(key = %self.key, "malformed message skipped: {e}");
                    self.last_error = Some(e);
                }
            }
        }
    }

    fn account(&mut self, seq: u64) {
        self.stats.received += 1;
        match self.last_seq {
            Some(last) if seq <= last => self.stats.late += 1,
            Some(last) => {
                self.stats.missed += seq - last - 1;
                self.last_seq = Some(seq);
            }
            None => self.last_seq = Some(seq),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> InboxStats {
        self.stats
    }

    /// The last decoding error, if any.
    pub fn last_error(&self) -> Option<&DecodeError> {
        self.last_error.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msg::Setpoint;

    #[test]
    fn topics_live_under_the_robot_name() {
        assert_eq!(Topic::CameraStereo.key("drone1"), "drone1/camera/stereo");
        assert_eq!(Topic::CmdSetpoint.message(), "Setpoint");
        let keys: std::collections::HashSet<_> = Topic::ALL.iter().map(|t| t.suffix()).collect();
        assert_eq!(keys.len(), Topic::ALL.len());
    }

    #[test]
    fn an_unusable_connect_retry_is_refused_by_name() {
        for (first_ms, max_ms) in [(0, 1000), (500, 100)] {
            let cfg = BusConfig {
                retry: ConnectRetry { first_ms, max_ms },
                ..BusConfig::connect_to("tcp/127.0.0.1:9")
            };
            let Err(e) = open(&cfg) else {
                panic!("{first_ms},{max_ms}: an unusable back-off must be refused");
            };
            assert!(e.to_string().contains("connect retry"), "{e}");
        }
        for bad in ["5", "0,100", "500,100", "250,x", ""] {
            let e = bad.parse::<ConnectRetry>().expect_err(bad);
            assert!(e.starts_with("connect retry"), "{bad}: {e}");
        }
        let d = ConnectRetry::default();
        assert_eq!(d.to_string().parse::<ConnectRetry>(), Ok(d));
    }

    /// Seconds from a peer listening on `ep` until `inbox` hears it.
    fn join_time(ep: &str, inbox: &mut Inbox<Setpoint>) -> (Session, f64) {
        let peer = open(&BusConfig {
            listen: vec![ep.to_string()],
            ..BusConfig::default()
        })
        .unwrap();
        let listening = std::time::Instant::now();
        let mut out = Outbox::<Setpoint>::new(&peer, "late", crate::topics::CMD_SETPOINT).unwrap();
        loop {
            out.send(1, "body", &Setpoint::HOVER).unwrap();
            if inbox
                .recv_timeout(Duration::from_millis(50))
                .unwrap()
                .is_some()
            {
                return (peer, listening.elapsed().as_secs_f64());
            }
            assert!(
                listening.elapsed() < Duration::from_secs(3),
                "the client had not joined 3 s after its peer began listening"
            );
        }
    }

    #[test]
    fn a_node_joins_its_peer_within_a_second_or_so_of_it_listening_first_or_again() {
        // The client is up 3.1 s before its peer listens, and the peer is gone for
        // 3.1 s before it comes back (as a crashed node restarted by `agent launch`).
        // With zenoh's default back-off the client's attempts fall at 0, 1, 3 and 7 s
        // after each failure, so it would join ~3.9 s after the peer listens; ours
        // (250 ms doubling to 1 s) tries again within 1 s.
        let port = 19_000 + (std::process::id() % 2000) as u16;
        let ep = format!("tcp/127.0.0.1:{port}");
        let client = open(&BusConfig::connect_to(ep.clone())).unwrap();
        let mut inbox =
            Inbox::<Setpoint>::new(&client, "late", crate::topics::CMD_SETPOINT, 4).unwrap();
        std::thread::sleep(Duration::from_millis(3100));
        let (peer, first) = join_time(&ep, &mut inbox);
        peer.close().wait().unwrap();
        std::thread::sleep(Duration::from_millis(3100));
        while inbox.recv_timeout(Duration::ZERO).unwrap().is_some() {}
        let (_peer, again) = join_time(&ep, &mut inbox);
        println!(
            "joined {first:.2} s after the peer first listened, {again:.2} s after it came back"
        );
    }

    #[test]
    fn messages_cross_two_sessions_and_bad_ones_are_counted() {
        // Two sessions joined over TCP on loopback, as two processes would be.
        let port = 17_000 + (std::process::id() % 2000) as u16;
        let a = open(&BusConfig {
            listen: vec![format!("tcp/127.0.0.1:{port}")],
            ..BusConfig::default()
        })
        .unwrap();
        let b = open(&BusConfig::connect_to(format!("tcp/127.0.0.1:{port}"))).unwrap();
        let mut inbox = Inbox::<Setpoint>::new(&b, "r", crate::topics::CMD_SETPOINT, 16).unwrap();
        let mut out = Outbox::<Setpoint>::new(&a, "r", crate::topics::CMD_SETPOINT).unwrap();
        // Wait until the route exists.
        let t0 = std::time::Instant::now();
        let first = loop {
            out.send(1, "body", &Setpoint::HOVER).unwrap();
            if let Some(m) = inbox.recv_timeout(Duration::from_millis(100)).unwrap() {
                break m;
            }
            assert!(t0.elapsed().as_secs() < 20, "no route between the sessions");
        };
        assert_eq!(first.1, Setpoint::HOVER);
        out.send_raw(b"garbage".to_vec()).unwrap();
        let mut v2 = encode(&Header::default(), &Setpoint::HOVER);
        v2[4] = 9; // a future schema version
        out.send_raw(v2).unwrap();
        out.seq += 3; // three messages lost on the way
        let sp = Setpoint {
            forward: 1.0,
            ..Setpoint::HOVER
        };
        out.send(2, "body", &sp).unwrap();
        let (h, got) = inbox
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("message after the bad ones");
        assert_eq!(got, sp);
        assert_eq!(h.stamp_ns, 2);
        let st = inbox.stats();
        assert_eq!(st.malformed, 2);
        assert_eq!(st.missed, 3);
        assert!(matches!(
            inbox.last_error(),
            Some(DecodeError::Version { got: 9, .. })
        ));
    }
}

/// Key of a node's liveliness token: `<robot>/alive/<node>`.
pub fn alive_key(robot: &str, node: &str) -> String {
    format!("{robot}/alive/{node}")
}

/// Declares that `node` of `robot` is alive for as long as the returned token
/// (and the session) lives: when the process ends or its link drops, peers
/// watching with [`Presence`] see it go.
pub fn announce(
    session: &Session,
    robot: &str,
    node: &str,
) -> Result<zenoh::liveliness::LivelinessToken, BusError> {
    let key = alive_key(robot, node);
    session
        .liveliness()
        .declare_token(key.clone())
        .wait()
        .map_err(|e| BusError::Declare {
            what: "liveliness token",
            key,
            reason: e.to_string(),
        })
}

/// Every message under a robot's keys matching a pattern, as raw bytes: what
/// `agent topic` lists, echoes and times.
pub struct Tap {
    sub: zenoh::pubsub::Subscriber<zenoh::handlers::RingChannelHandler<Sample>>,
    prefix: String,
}

impl Tap {
    /// Subscribes to `<robot>/<pattern>` (a zenoh key expression: a topic suffix
    /// such as `cmd/setpoint`, or `**` for every topic).
    pub fn new(session: &Session, robot: &str, pattern: &str) -> Result<Tap, BusError> {
        let key = format!("{robot}/{pattern}");
        let sub = session
            .declare_subscriber(key.clone())
            // The newest 64 (dropping the oldest): a slow terminal never holds
            // gigabytes of images or backs up the session.
            .with(zenoh::handlers::RingChannel::new(64))
            .wait()
            .map_err(|e| BusError::Declare {
                what: "subscriber",
                key,
                reason: e.to_string(),
            })?;
        Ok(Tap {
            sub,
            prefix: format!("{robot}/"),
        })
    }

    /// The next message within `timeout`: its topic suffix and bytes
    /// (`Ok(None)` on timeout).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<(String, Vec<u8>)>, BusError> {
        match self.sub.recv_timeout(timeout) {
            Ok(Some(s)) => {
                let key = s.key_expr().as_str();
                let suffix = key.strip_prefix(&self.prefix).unwrap_or(key).to_string();
                Ok(Some((suffix, s.payload().to_bytes().into_owned())))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(BusError::Closed {
                key: format!("{}**", self.prefix),
            }),
        }
    }
}

/// A change in the set of live nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The node appeared (or was alive when watching began).
    Up(String),
    /// The node's token went away: it stopped, crashed or lost its link.
    Down(String),
}

/// Watches the liveliness tokens of a robot's nodes.
pub struct Presence {
    sub: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<Sample>>,
    prefix: String,
}

impl Presence {
    /// Starts watching `<robot>/alive/*`; nodes already alive are reported as `Up` first.
    pub fn watch(session: &Session, robot: &str) -> Result<Presence, BusError> {
        let key = alive_key(robot, "*");
        let sub = session
            .liveliness()
            .declare_subscriber(key.clone())
            .history(true)
            .wait()
            .map_err(|e| BusError::Declare {
                what: "liveliness subscriber",
                key,
                reason: e.to_string(),
            })?;
        Ok(Presence {
            sub,
            prefix: alive_key(robot, ""),
        })
    }

    /// The next change within `timeout` (`Ok(None)` on timeout).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Change>, BusError> {
        match self.sub.recv_timeout(timeout) {
            Ok(Some(s)) => {
                let key = s.key_expr().as_str();
                let node = key.strip_prefix(&self.prefix).unwrap_or(key).to_string();
                Ok(Some(match s.kind() {
                    zenoh::sample::SampleKind::Put => Change::Up(node),
                    zenoh::sample::SampleKind::Delete => Change::Down(node),
                }))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(BusError::Closed {
                key: format!("{}*", self.prefix),
            }),
        }
    }
}
