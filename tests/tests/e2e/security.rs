//! A secured graph, across processes: `agent certs` makes the secrets, a real
//! `agent router` is the one door, and nodes join as clients with their
//! role's password (loopback TCP) or a ground station's certificate (mutual
//! TLS). Each test has an allowed sender beside the refused one, so it fails
//! if traffic does not flow at all as well as if the refused traffic passes.

use bus::msg::{Event, Goal, Setpoint, State, Weights};
use bus::{BusConfig, Change, Inbox, Outbox, Presence, Session, TlsFiles};
use e2e_tests::{stop_server, succeed, temp_dir, workspace_bin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn port(k: u16) -> u16 {
    e2e_tests::test_port(e2e_tests::PortSlice::Security, 16, k)
}

/// Liveness only: how long a message that should arrive may take on a loaded machine.
const ARRIVE: Duration = Duration::from_secs(60);

struct Router {
    child: Child,
    secrets: PathBuf,
    /// The robot nodes' endpoint (loopback).
    local: String,
    /// The ground station's TLS endpoint.
    tls: String,
    robot: String,
    /// Nodes prove their role with a certificate (else a password).
    certificates: bool,
}

impl Drop for Router {
    fn drop(&mut self) {
        stop_server(&mut self.child, Duration::from_secs(10));
    }
}

/// Secrets in `dir/secrets`, and a router for them on two fresh ports
/// (`k`, `k + 1`): the nodes' loopback endpoint (TCP with passwords, or TLS
/// with certificates when `certificates`), TLS for the ground station `ground`.
fn router_with(dir: &Path, k: u16, certificates: bool) -> Router {
    let secrets = dir.join("secrets");
    succeed(
        Command::new(workspace_bin("agent"))
            .args(["certs", "--out"])
            .arg(&secrets),
    );
    let local = if certificates {
        format!("tls/127.0.0.1:{}", port(k))
    } else {
        format!("tcp/127.0.0.1:{}", port(k))
    };
    let tls = format!("tls/localhost:{}", port(k + 1));
    let robot = format!("sec{}x{k}", std::process::id());
    let mut cmd = Command::new(workspace_bin("agent"));
    cmd.args(["router", "--robot", &robot, "--listen"])
        .arg(format!("{local},{tls}"))
        .arg("--tls-ca")
        .arg(secrets.join("ca.pem"))
        .arg("--tls-cert")
        .arg(secrets.join("router.pem"))
        .arg("--tls-key")
        .arg(secrets.join("router.key"))
        .args(["--ground", "ground"]);
    if certificates {
        cmd.args(["--identity", "certificate"]);
    } else {
        cmd.arg("--users").arg(secrets.join("users.txt"));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_listener(k, "the router never listened");
    Router {
        child,
        secrets,
        local,
        tls,
        robot,
        certificates,
    }
}

/// Waits (liveness only) until something listens on `port(k)`.
fn wait_for_listener(k: u16, what: &str) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port(k))).is_err() {
        assert!(t0.elapsed() < ARRIVE, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A router that checks the nodes' passwords on loopback TCP.
fn router(dir: &Path, k: u16) -> Router {
    router_with(dir, k, false)
}

impl Router {
    /// A node of `role` on the loopback endpoint, with its password or certificate.
    fn node(&self, role: &str) -> Session {
        let mut c = BusConfig::connect_to(self.local.clone());
        if self.certificates {
            c.tls = Some(TlsFiles {
                ca: self.secrets.join("ca.pem"),
                cert: self.secrets.join(format!("{role}.pem")),
                key: self.secrets.join(format!("{role}.key")),
            });
        } else {
            c.auth = Some(self.secrets.join(format!("{role}.auth")));
        }
        bus::open(&c).unwrap()
    }

    /// The ground station over mutual TLS, with `certs`' ground certificate
    /// (and its password when the router checks passwords).
    fn ground(&self, certs: &Path) -> Session {
        bus::open(&BusConfig {
            connect: vec![self.tls.clone()],
            auth: (!self.certificates).then(|| self.secrets.join("ground.auth")),
            tls: Some(TlsFiles {
                ca: certs.join("ca.pem"),
                cert: certs.join("ground.pem"),
                key: certs.join("ground.key"),
            }),
            ..BusConfig::default()
        })
        .unwrap()
    }
}

/// A ground station's command-line flags: its password and TLS files.
fn ground_flags(secrets: &Path) -> Vec<std::ffi::OsString> {
    let mut v = Vec::new();
    for (flag, file) in [
        ("--auth", "ground.auth"),
        ("--tls-ca", "ca.pem"),
        ("--tls-cert", "ground.pem"),
        ("--tls-key", "ground.key"),
    ] {
        v.push(flag.into());
        v.push(secrets.join(file).into());
    }
    v
}

/// Forged and genuine (forward 1.0) setpoints sent over and over: 20 genuine
/// ones reach `inbox`, no forged one does (`what` names that failure).
fn only_genuine_setpoints(
    inbox: &mut Inbox<Setpoint>,
    forged: &mut [(&mut Outbox<Setpoint>, Setpoint)],
    genuine: &mut Outbox<Setpoint>,
    what: &str,
) {
    let (ok, bad) = exchange(
        inbox,
        forged,
        genuine,
        &setpoint(1.0),
        |s| s.forward == 1.0,
        20,
    );
    assert!(ok >= 20);
    assert_eq!(bad, 0, "{what}");
}

fn setpoint(forward: f32) -> Setpoint {
    Setpoint {
        forward,
        left: 0.0,
        up: 0.0,
        yaw_rate: 0.0,
    }
}

/// Sends `refused` then `allowed` messages, again and again, until `inbox` has
/// `want` allowed ones; then one more second of both. Returns (allowed, refused)
/// received, told apart by `is_allowed`.
fn exchange<M: bus::wire::Message + Clone>(
    inbox: &mut Inbox<M>,
    refused: &mut [(&mut Outbox<M>, M)],
    allowed: &mut Outbox<M>,
    allowed_msg: &M,
    is_allowed: impl Fn(&M) -> bool,
    want: usize,
) -> (usize, usize) {
    let (mut ok, mut bad) = (0, 0);
    let t0 = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        for (o, m) in refused.iter_mut() {
            o.send(bus::now_ns(), "test", m).unwrap();
        }
        allowed.send(bus::now_ns(), "test", allowed_msg).unwrap();
        while let Some((_, m)) = inbox.recv_timeout(Duration::from_millis(20)).unwrap() {
            if is_allowed(&m) {
                ok += 1;
            } else {
                bad += 1;
            }
        }
        if ok >= want && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
            return (ok, bad);
        }
        assert!(
            t0.elapsed() < ARRIVE,
            "only {ok} of {want} allowed messages arrived"
        );
    }
}

#[test]
fn unauthenticated_peer_cannot_connect() {
    let dir = temp_dir("sec-unauth");
    let r = router(&dir, 0);
    // A wrong password for a real role.
    let wrong = dir.join("wrong.auth");
    std::fs::write(&wrong, "policy:0123456789abcdef\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // zenoh's own client (exit on failure, as zenoh defaults): the router refuses it.
    let mut c = zenoh::Config::default();
    c.insert_json5("mode", "\"client\"").unwrap();
    c.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    c.insert_json5("connect/endpoints", &format!("[\"{}\"]", r.local))
        .unwrap();
    use zenoh::Wait as _;
    assert!(
        zenoh::open(c).wait().is_err(),
        "a client without credentials opened a session with the router"
    );
    // The same with a real role's name and a wrong password: refused, by name.
    let e = bus::open(&BusConfig {
        connect: vec![r.local.clone()],
        auth: Some(wrong),
        ..BusConfig::default()
    })
    .expect_err("a wrong password opened a session with the router");
    assert!(
        e.to_string().contains("refused this node's credentials"),
        "{e}"
    );
    // A peer without credentials that keeps trying in the background.
    let peer = bus::open(&BusConfig::connect_to(r.local.clone())).unwrap();
    let mut peer_events = Inbox::<Event>::new(&peer, &r.robot, bus::topics::EVENTS, 64).unwrap();
    let mut peer_cmd = Outbox::<Setpoint>::new(&peer, &r.robot, bus::topics::CMD_SETPOINT).unwrap();
    let (camera, policy, fc) = (r.node("camera"), r.node("policy"), r.node("fc"));
    let mut events = Outbox::<Event>::new(&camera, &r.robot, bus::topics::EVENTS).unwrap();
    let mut cmd = Outbox::<Setpoint>::new(&policy, &r.robot, bus::topics::CMD_SETPOINT).unwrap();
    let mut fc_cmd = Inbox::<Setpoint>::new(&fc, &r.robot, bus::topics::CMD_SETPOINT, 64).unwrap();
    only_genuine_setpoints(
        &mut fc_cmd,
        &mut [(&mut peer_cmd, setpoint(9.0))],
        &mut cmd,
        "setpoints from unauthenticated sessions reached fc",
    );
    // The camera's events flowed all along (the fc node gets them) but never
    // to the intruders.
    let mut fc_events = Inbox::<Event>::new(&fc, &r.robot, bus::topics::EVENTS, 64).unwrap();
    let t0 = Instant::now();
    let mut got = 0;
    while got < 5 {
        events
            .send(bus::now_ns(), "camera", &Event { text: "hi".into() })
            .unwrap();
        while fc_events
            .recv_timeout(Duration::from_millis(20))
            .unwrap()
            .is_some()
        {
            got += 1;
        }
        assert!(
            t0.elapsed() < ARRIVE,
            "events never reached an authenticated node"
        );
    }
    assert!(peer_events.recv_timeout(Duration::ZERO).unwrap().is_none());
}

#[test]
fn telemetry_peer_cannot_publish_setpoints() {
    // Both ways a node can prove its role: a password, a certificate.
    for (k, certificates) in [(2, false), (10, true)] {
        let dir = temp_dir(if certificates {
            "sec-telemetry-certs"
        } else {
            "sec-telemetry"
        });
        let r = router_with(&dir, k, certificates);
        telemetry_cannot_publish(&r);
    }
}

fn telemetry_cannot_publish(r: &Router) {
    let (telemetry, policy, safety, fc) = (
        r.node("telemetry"),
        r.node("policy"),
        r.node("safety"),
        r.node("fc"),
    );
    let mut spoof =
        Outbox::<Setpoint>::new(&telemetry, &r.robot, bus::topics::CMD_SETPOINT).unwrap();
    let mut spoof_policy =
        Outbox::<Setpoint>::new(&telemetry, &r.robot, bus::topics::CMD_POLICY).unwrap();
    let mut cmd = Outbox::<Setpoint>::new(&policy, &r.robot, bus::topics::CMD_SETPOINT).unwrap();
    let mut proposals =
        Outbox::<Setpoint>::new(&policy, &r.robot, bus::topics::CMD_POLICY).unwrap();
    let mut fc_in = Inbox::<Setpoint>::new(&fc, &r.robot, bus::topics::CMD_SETPOINT, 64).unwrap();
    let mut safety_in =
        Inbox::<Setpoint>::new(&safety, &r.robot, bus::topics::CMD_POLICY, 64).unwrap();
    for (inbox, forged, genuine, what) in [
        (
            &mut fc_in,
            &mut spoof,
            &mut cmd,
            "setpoints reached the flight controller",
        ),
        (
            &mut safety_in,
            &mut spoof_policy,
            &mut proposals,
            "proposals reached the safety node",
        ),
    ] {
        only_genuine_setpoints(
            inbox,
            &mut [(forged, setpoint(2.9))],
            genuine,
            &format!("the telemetry node's {what}"),
        );
    }
}

#[test]
fn spoofed_liveliness_is_refused() {
    let dir = temp_dir("sec-alive");
    let r = router(&dir, 4);
    let safety = r.node("safety");
    let presence = Presence::watch(&safety, &r.robot).unwrap();
    let telemetry = r.node("telemetry");
    // Its own token (allowed) and the policy's (refused), declared together.
    let _own = bus::announce(&telemetry, &r.robot, "telemetry").unwrap();
    let _spoof = bus::announce(&telemetry, &r.robot, "policy").unwrap();
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<Change>, want: &Change| {
        let t0 = Instant::now();
        while !seen.contains(want) {
            assert!(t0.elapsed() < ARRIVE, "never saw {want:?}; saw {seen:?}");
            if let Some(c) = presence.recv_timeout(Duration::from_millis(100)).unwrap() {
                seen.push(c);
            }
        }
    };
    wait_for(&mut seen, &Change::Up("telemetry".into()));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        if let Some(c) = presence.recv_timeout(Duration::from_millis(100)).unwrap() {
            seen.push(c);
        }
    }
    assert!(
        !seen.contains(&Change::Up("policy".into())),
        "the telemetry session's `policy` token was accepted: {seen:?}"
    );
    // The real policy comes up, then dies: the safety node sees both, the
    // spoofer's token notwithstanding.
    let policy = r.node("policy");
    let token = bus::announce(&policy, &r.robot, "policy").unwrap();
    wait_for(&mut seen, &Change::Up("policy".into()));
    drop(token);
    drop(policy);
    wait_for(&mut seen, &Change::Down("policy".into()));
}

#[test]
fn foreign_weights_are_refused() {
    let dir = temp_dir("sec-weights");
    let r = router(&dir, 6);
    let (learner, telemetry, mono, policy) = (
        r.node("selfi-learner"),
        r.node("telemetry"),
        r.node("mono"),
        r.node("policy"),
    );
    let ground = r.ground(&r.secrets);
    // The ground station asks for everything, as `agent topic list` does.
    let ground_tap = bus::Tap::new(&ground, &r.robot, "**").unwrap();
    // (A second ground session publishes: a session hears its own puts.)
    let ground_pub = r.ground(&r.secrets);
    let mut from_ground =
        Outbox::<Weights>::new(&ground_pub, &r.robot, bus::topics::WEIGHTS).unwrap();
    let w = |version: u64| Weights {
        version,
        network: "selfi-actor".into(),
        bpk: vec![0; 16],
    };
    let mut from_learner =
        Outbox::<Weights>::new(&learner, &r.robot, bus::topics::WEIGHTS).unwrap();
    let mut from_telemetry =
        Outbox::<Weights>::new(&telemetry, &r.robot, bus::topics::WEIGHTS).unwrap();
    let mut from_mono = Outbox::<Weights>::new(&mono, &r.robot, bus::topics::WEIGHTS).unwrap();
    let mut inbox = Inbox::<Weights>::new(&policy, &r.robot, bus::topics::WEIGHTS, 64).unwrap();
    let (ok, bad) = exchange(
        &mut inbox,
        &mut [
            (&mut from_telemetry, w(99)),
            (&mut from_mono, w(98)),
            (&mut from_ground, w(97)),
        ],
        &mut from_learner,
        &w(1),
        |m| m.version == 1,
        10,
    );
    assert!(ok >= 10);
    assert_eq!(
        bad, 0,
        "weights from a node other than the learner reached the policy"
    );
    // The ground station's tap gets the telemetry (the policy's events) but
    // none of the learner's weights, which went out all along.
    let mut events =
        Outbox::<bus::msg::Event>::new(&policy, &r.robot, bus::topics::EVENTS).unwrap();
    let mut topics = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    while !topics.contains("events") {
        events
            .send(
                bus::now_ns(),
                "policy",
                &bus::msg::Event { text: "x".into() },
            )
            .unwrap();
        from_learner.send(bus::now_ns(), "test", &w(2)).unwrap();
        while let Some((t, _)) = ground_tap.recv_timeout(Duration::from_millis(20)).unwrap() {
            topics.insert(t);
        }
        assert!(
            t0.elapsed() < ARRIVE,
            "the ground station's tap got nothing"
        );
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        from_learner.send(bus::now_ns(), "test", &w(3)).unwrap();
        while let Some((t, _)) = ground_tap.recv_timeout(Duration::from_millis(20)).unwrap() {
            topics.insert(t);
        }
    }
    assert!(
        !topics.contains("policy/weights"),
        "the ground station read the policy's weights: {topics:?}"
    );
}

/// A process that takes the router's port with a certificate that is not the
/// robot's router's — a node's own (client-only) certificate, or a router
/// certificate of another CA — is not believed: the nodes refuse to join it.
#[test]
fn a_router_without_the_robots_certificate_is_not_believed() {
    let dir = temp_dir("sec-squat");
    let secrets = dir.join("secrets");
    let other = dir.join("other");
    for out in [&secrets, &other] {
        succeed(
            Command::new(workspace_bin("agent"))
                .args(["certs", "--out"])
                .arg(out),
        );
    }
    // (the last: the robot's own router certificate, which the node joins)
    for (k, cert, key) in [
        (
            12u16,
            secrets.join("policy.pem"),
            secrets.join("policy.key"),
        ),
        (13, other.join("router.pem"), other.join("router.key")),
        (14, secrets.join("router.pem"), secrets.join("router.key")),
    ] {
        let ep = format!("tls/127.0.0.1:{}", port(k));
        let mut squatter = Command::new(workspace_bin("agent"))
            .args([
                "router",
                "--identity",
                "certificate",
                "--listen",
                &ep,
                "--tls-ca",
            ])
            .arg(secrets.join("ca.pem"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_listener(k, "the squatter never listened");
        let joined = bus::open(&BusConfig {
            connect: vec![ep.clone()],
            tls: Some(TlsFiles {
                ca: secrets.join("ca.pem"),
                cert: secrets.join("fc.pem"),
                key: secrets.join("fc.key"),
            }),
            ..BusConfig::default()
        });
        let genuine = k == 14;
        let ok = joined.is_ok();
        drop(joined);
        stop_server(&mut squatter, Duration::from_secs(10));
        assert_eq!(
            ok,
            genuine,
            "the fc node joined: {ok}, serving {}",
            cert.display()
        );
    }
}

#[test]
fn ground_station_over_tls_sees_telemetry() {
    let dir = temp_dir("sec-ground");
    let r = router(&dir, 8);
    let (fc, policy) = (r.node("fc"), r.node("policy"));
    let ground = r.ground(&r.secrets);
    // Telemetry out: the vehicle's state reaches the ground station over TLS.
    let mut state = Outbox::<State>::new(&fc, &r.robot, bus::topics::STATE).unwrap();
    let mut seen = Inbox::<State>::new(&ground, &r.robot, bus::topics::STATE, 64).unwrap();
    let s = State {
        position: [1.0, 2.0, 3.0],
        attitude: [1.0, 0.0, 0.0, 0.0],
        velocity: [0.5, 0.0, 0.0],
    };
    let t0 = Instant::now();
    let got = loop {
        state.send(bus::now_ns(), "fc", &s).unwrap();
        if let Some((_, m)) = seen.recv_timeout(Duration::from_millis(50)).unwrap() {
            break m;
        }
        assert!(
            t0.elapsed() < ARRIVE,
            "the ground station never saw the state"
        );
    };
    assert_eq!(got, s);
    // Goals in, setpoints not.
    let mut goal_out = Outbox::<Goal>::new(&ground, &r.robot, bus::topics::GOAL).unwrap();
    let mut goal_in = Inbox::<Goal>::new(&policy, &r.robot, bus::topics::GOAL, 64).unwrap();
    let t0 = Instant::now();
    let goal = Goal {
        position: [10.0, 0.0, 1.5],
    };
    loop {
        goal_out.send(bus::now_ns(), "ground", &goal).unwrap();
        if let Some((_, g)) = goal_in.recv_timeout(Duration::from_millis(50)).unwrap() {
            assert_eq!(g, goal);
            break;
        }
        assert!(
            t0.elapsed() < ARRIVE,
            "the ground station's goal never arrived"
        );
    }
    // The same from the ground station's command line: `agent goal` over TLS.
    let mut goal_cmd = Command::new(workspace_bin("agent"))
        .args(["goal", "3,-4,1.5", "--seconds", "600"])
        .args(["--robot", &r.robot, "--connect", &r.tls])
        .args(ground_flags(&r.secrets))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some((_, g)) = goal_in.recv_timeout(Duration::from_millis(100)).unwrap()
            && g.position == [3.0, -4.0, 1.5]
        {
            break;
        }
        if let Some(st) = goal_cmd.try_wait().unwrap() {
            panic!("agent goal exited early ({st})");
        }
        if t0.elapsed() > ARRIVE {
            let _ = goal_cmd.kill();
            panic!("agent goal over TLS never reached the policy");
        }
    }
    e2e_tests::signal_after(&goal_cmd, "INT", Duration::ZERO);
    let out = goal_cmd.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("goal [3.0, -4.0, 1.5] sent"), "{text}");
    let mut ground_cmd =
        Outbox::<Setpoint>::new(&ground, &r.robot, bus::topics::CMD_SETPOINT).unwrap();
    let mut cmd = Outbox::<Setpoint>::new(&policy, &r.robot, bus::topics::CMD_SETPOINT).unwrap();
    let mut fc_in = Inbox::<Setpoint>::new(&fc, &r.robot, bus::topics::CMD_SETPOINT, 64).unwrap();
    // A second CA's ground certificate: refused at the TLS handshake.
    let other = dir.join("other-ca");
    succeed(
        Command::new(workspace_bin("agent"))
            .args(["certs", "--out"])
            .arg(&other),
    );
    let e = bus::open(&BusConfig {
        connect: vec![r.tls.clone()],
        auth: Some(r.secrets.join("ground.auth")),
        tls: Some(TlsFiles {
            ca: r.secrets.join("ca.pem"),
            cert: other.join("ground.pem"),
            key: other.join("ground.key"),
        }),
        ..BusConfig::default()
    })
    .expect_err("a certificate of another CA opened a session with the router");
    assert!(e.to_string().contains("refused"), "{e}");
    only_genuine_setpoints(
        &mut fc_in,
        &mut [(&mut ground_cmd, setpoint(2.9))],
        &mut cmd,
        "the ground station's setpoints reached the flight controller",
    );
    // A real process on the ground station, over TLS with its certificate and
    // password: `agent topic echo` of the state.
    let mut echo = Command::new(workspace_bin("agent"))
        .args(["topic", "echo", "state", "--count", "3"])
        .args(["--robot", &r.robot, "--connect", &r.tls])
        .args(ground_flags(&r.secrets))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while echo.try_wait().unwrap().is_none() {
        state.send(bus::now_ns(), "fc", &s).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if t0.elapsed() > ARRIVE {
            let _ = echo.kill();
            panic!("agent topic echo over TLS never got 3 states");
        }
    }
    let out = echo.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("position: [1.0, 2.0, 3.0]").count(),
        3,
        "{text}"
    );
}
