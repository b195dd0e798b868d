//! `agent latency`: time from a stereo pair published to the setpoint received
//! back, through the `stereo` and `policy` nodes over zenoh on one machine,
//! with the nodes in other processes or as threads of this one.
//!
//! One frame is in flight at a time. The stereo node reports its compute time
//! in each depth scan, so the figures separate transport (round trip minus
//! stereo compute) from compute.

use crate::nodes::{NodeKind, NodeOptions, policy_node, stereo_node};
use crate::pipeline::LoopConfig;
use anyhow::{Context as _, Result, bail};
use bus::msg::{DepthScan, Setpoint, StereoPair};
use bus::{BusConfig, Inbox, Outbox};
use std::fmt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// Each node in its own process, sessions joined over TCP on loopback.
    Processes,
    /// Nodes as threads sharing this process's session.
    Threads,
}

/// How the nodes' sessions are secured (see `bus::security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    /// Peers on plain loopback TCP, joined directly: no authentication.
    Plain,
    /// Clients of a router (`agent router`) that checks each node's password
    /// and its access control: every message takes one more hop.
    Password,
    /// Clients of a router over mutual TLS on loopback (certificates, encryption).
    Certificate,
}

/// p50 / p99 / max of a series (ms).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    pub(crate) fn of(v: &mut [f64]) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyReport {
    /// Image size.
    pub size: (u32, u32),
    /// Where the nodes ran.
    pub placement: Placement,
    /// How their sessions were secured.
    pub security: Security,
    /// Frames answered.
    pub frames: usize,
    /// Frames with no answer within a second.
    pub lost: usize,
    /// Pair published to setpoint received (ms).
    pub round_trip: Spread,
    /// Stereo compute inside it (ms).
    pub compute: Spread,
    /// Round trip minus stereo compute (ms): messaging and the policy.
    pub transport: Spread,
}

impl fmt::Display for LatencyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |x: &Spread| format!("p50 {:7.3}  p99 {:7.3}  max {:7.3}", x.p50, x.p99, x.max);
        writeln!(
            f,
            "{}x{}, nodes as {:?}, {:?} sessions: {} frames ({} lost)",
            self.size.0, self.size.1, self.placement, self.security, self.frames, self.lost
        )?;
        writeln!(f, "  round trip        ms: {}", s(&self.round_trip))?;
        writeln!(f, "  stereo compute    ms: {}", s(&self.compute))?;
        write!(
            f,
            "  excluding compute ms: {}  [goal p99 < 3 ms across processes at 160x120]",
            s(&self.transport)
        )
    }
}

/// A scratch file removed when the measurement ends, however it ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SIGINT is the nodes' graceful stop; kill whatever is left after 5 s.
            crate::launch::signal(c, libc::SIGINT);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A synthetic textured pair with a fronto-parallel plane at 8 px disparity.
fn test_pair(w: u32, h: u32) -> StereoPair {
    let (w, h) = (w as usize, h as usize);
    let tex = |x: usize, y: usize| -> u8 {
        let v = (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)).wrapping_mul(2_654_435_761) >> 13;
        (v & 0xff) as u8
    };
    let left: Vec<u8> = (0..w * h).map(|i| tex(i % w + 8, i / w)).collect();
    let right: Vec<u8> = (0..w * h).map(|i| tex(i % w, i / w)).collect();
    StereoPair {
        width: w as u32,
        height: h as u32,
        left,
        right,
    }
}

/// A secured graph for the measurement: secrets in a scratch folder, the
/// router in this process, and each session's `--auth`/`--tls-*` arguments.
struct Secured {
    dir: std::path::PathBuf,
    endpoint: String,
    security: Security,
    _router: bus::Session,
    // Last: the secrets go after the router that reads them.
    _scratch: crate::scratch::Scratch,
}

impl Secured {
    fn new(security: Security, port: u16) -> Result<Secured> {
        let scratch = crate::scratch::Scratch::new("latency-secrets")?;
        let dir = scratch.path().join("secrets");
        crate::certs::make(&crate::certs::CertsSpec {
            out: dir.clone(),
            robot: "bench".into(),
            hosts: Vec::new(),
            grounds: Vec::new(),
            days: 1,
        })?;
        let (endpoint, local) = match security {
            Security::Certificate => (
                format!("tls/127.0.0.1:{port}"),
                bus::security::LocalIdentity::Certificate,
            ),
            _ => (
                format!("tcp/127.0.0.1:{port}"),
                bus::security::LocalIdentity::Password,
            ),
        };
        let robot_acl = |robot: &str| {
            bus::security::acl_json5(
                robot,
                &bus::security::AclOptions {
                    local,
                    passwords: security == Security::Password,
                    grounds: Vec::new(),
                },
            )
        };
        let router = bus::open_router(&bus::RouterConfig {
            listen: vec![endpoint.clone()],
            users: (security == Security::Password).then(|| dir.join("users.txt")),
            tls: (security == Security::Certificate).then(|| Self::files(&dir, "router")),
            acl: robot_acl(&format!("bench{}", std::process::id()))?,
        })?;
        Ok(Secured {
            dir,
            endpoint,
            security,
            _router: router,
            _scratch: scratch,
        })
    }

    fn files(dir: &std::path::Path, role: &str) -> bus::TlsFiles {
        bus::TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{role}.pem")),
            key: dir.join(format!("{role}.key")),
        }
    }

    fn config(&self, role: &str) -> BusConfig {
        let mut c = BusConfig::connect_to(self.endpoint.clone());
        match self.security {
            Security::Certificate => c.tls = Some(Self::files(&self.dir, role)),
            _ => c.auth = Some(self.dir.join(format!("{role}.auth"))),
        }
        c
    }

    fn args(&self, role: &str) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec!["--connect".into(), self.endpoint.clone().into()];
        match self.security {
            Security::Certificate => {
                let f = Self::files(&self.dir, role);
                for (flag, path) in [
                    ("--tls-ca", f.ca),
                    ("--tls-cert", f.cert),
                    ("--tls-key", f.key),
                ] {
                    v.push(flag.into());
                    v.push(path.into());
                }
            }
            _ => {
                v.push("--auth".into());
                v.push(self.dir.join(format!("{role}.auth")).into());
            }
        }
        v
    }
}

/// Measure `frames` round trips at `width`x`height`.
pub fn run(
    cfg: &LoopConfig,
    width: u32,
    height: u32,
    frames: usize,
    placement: Placement,
    security: Security,
    port: u16,
) -> Result<LatencyReport> {
    // The bus refuses pairs over 4096x4096 per eye: no larger size can be measured.
    if !(16..=4096).contains(&width) || !(16..=4096).contains(&height) || frames == 0 {
        bail!(
            "size {width}x{height} must be 16 to 4096 pixels a side, and the frame count positive"
        );
    }
    if security != Security::Plain && placement == Placement::Threads {
        bail!(
            "nodes as threads share one session, which no router sits inside: \
             measure {security:?} sessions with the nodes as processes"
        );
    }
    let robot = format!("bench{}", std::process::id());
    // The stereo node takes the rig of the measured size: an ideal rig, 90°
    // horizontal field of view, 10 cm baseline, written where `calib` would.
    let rig_file = std::env::temp_dir().join(format!(
        "agent-latency-{}-{width}x{height}.yaml",
        std::process::id()
    ));
    let (w, h) = (f64::from(width), f64::from(height));
    calib::Rig::ideal(
        width as usize,
        height as usize,
        w / 2.0,
        w / 2.0,
        h / 2.0,
        0.1,
    )
    .save_opencv(&rig_file)
    .with_context(|| format!("cannot write {}", rig_file.display()))?;
    let _remove = RemoveOnDrop(rig_file.clone());
    let opts = NodeOptions {
        rig: Some(rig_file.clone()),
        ..NodeOptions::default()
    };
    let secured = match security {
        Security::Plain => None,
        s => Some(Secured::new(s, port)?),
    };
    let endpoint = format!("tcp/127.0.0.1:{port}");
    // The measuring session plays the camera.
    let session = bus::open(&match &secured {
        Some(s) => s.config("camera"),
        None => BusConfig {
            listen: vec![endpoint.clone()],
            ..BusConfig::default()
        },
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let _children = match placement {
        Placement::Processes => {
            let exe = std::env::current_exe().context("cannot find the agent binary")?;
            let mut kids = Vec::new();
            for kind in [NodeKind::Stereo, NodeKind::Policy] {
                let name = kind.name();
                let join: Vec<std::ffi::OsString> = match &secured {
                    Some(s) => s.args(name),
                    None => vec!["--connect".into(), endpoint.clone().into()],
                };
                kids.push(
                    Command::new(&exe)
                        .args(["node", name, "--robot", &robot])
                        .args(&join)
                        .arg("--rig")
                        .arg(&rig_file)
                        .stdout(Stdio::null())
                        .stderr(Stdio::inherit())
                        .spawn()
                        .with_context(|| format!("cannot start the {name} node"))?,
                );
            }
            Children(kids)
        }
        Placement::Threads => {
            for kind in [NodeKind::Stereo, NodeKind::Policy] {
                let (s, r, c, st) = (session.clone(), robot.clone(), cfg.clone(), stop.clone());
                let o = opts.clone();
                threads.push(std::thread::spawn(move || match kind {
                    NodeKind::Stereo => stereo_node(&s, &r, &c, &o, &st),
                    _ => policy_node(&s, &r, &c, &o, &st),
                }));
            }
            Children(Vec::new())
        }
    };
    let mut pairs = Outbox::<StereoPair>::new(&session, &robot, bus::topics::CAMERA_STEREO)?;
    let mut answers = Inbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT, 8)?;
    let mut scans = Inbox::<DepthScan>::new(&session, &robot, bus::topics::DEPTH_STEREO, 8)?;
    let pair = test_pair(width, height);

    // Until the graph answers (nodes starting, routes forming).
    let t0 = Instant::now();
    loop {
        let h = pairs.send(bus::now_ns(), "camera_left", &pair)?;
        if let Some((ah, _)) = answers.recv_timeout(Duration::from_millis(500))?
            && ah.seq == h.seq
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the stereo and policy nodes did not answer within 60 s");
        }
    }
    while scans.recv_timeout(Duration::ZERO)?.is_some() {}

    let (mut rtt, mut compute, mut transport) = (Vec::new(), Vec::new(), Vec::new());
    let mut lost = 0;
    let mut last_report = Instant::now();
    for k in 0..frames {
        let start = Instant::now();
        let h = pairs.send(bus::now_ns(), "camera_left", &pair)?;
        let mut got = false;
        while let Some((ah, _)) =
            answers.recv_timeout(Duration::from_secs(1).saturating_sub(start.elapsed()))?
        {
            if ah.seq == h.seq {
                got = true;
                break;
            }
        }
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        if !got {
            lost += 1;
            continue;
        }
        let mut c = None;
        while let Some((sh, s)) = scans.recv_timeout(Duration::from_millis(50))? {
            if sh.seq == h.seq {
                c = Some(s.compute_ns as f64 / 1e6);
                break;
            }
        }
        let c = c.unwrap_or(f64::NAN);
        rtt.push(elapsed);
        if c.is_finite() {
            compute.push(c);
            transport.push(elapsed - c);
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!("  {k}/{frames} frames");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a node thread panicked"))??;
    }
    Ok(LatencyReport {
        size: (width, height),
        placement,
        security,
        frames: rtt.len(),
        lost,
        round_trip: Spread::of(&mut rtt),
        compute: Spread::of(&mut compute),
        transport: Spread::of(&mut transport),
    })
}
