//! The node graph over zenoh across processes: `agent launch` starts the twin,
//! stereo and policy nodes, which fly the twin in a closed loop; crashed
//! processes restart with back-off; SIGTERM stops every child; and the latency
//! benchmark measures the loop across processes and in one process.

use e2e_tests::{numbers, signal_after, succeed, temp_dir, workspace_bin};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port for this test process (tests of one binary run in parallel).
/// Ports: 0, 1, 2-4 (the latency benchmark's runs), 5 and 8 (twin flights
/// recorded for other tests), 6 and 12 (the robot launch), 7, 9, 10, 11,
/// 13, 14 and 15 (the operator arming the robot launch), 16, 17 and 18 (the
/// ROS 2 recording and bridge), 20 and 21 (ROS 2 velocity commands).
fn port(k: u16) -> u16 {
    e2e_tests::test_port(e2e_tests::PortSlice::Graph, 22, k)
}

fn twin_graph(robot: &str, port: u16, seconds: &str) -> String {
    let ep = format!("tcp/127.0.0.1:{port}");
    format!(
        r#"name = "twin_test"
stop_timeout = 5.0
[[process]]
name = "camera"
args = ["node", "camera", "--robot", "{robot}", "--listen", "{ep}", "--seconds", "{seconds}"]
required = true
[[process]]
name = "stereo"
args = ["node", "stereo", "--robot", "{robot}", "--connect", "{ep}"]
restart = "on-failure"
[[process]]
name = "policy"
args = ["node", "policy", "--robot", "{robot}", "--connect", "{ep}"]
restart = "on-failure"
"#
    )
}

/// Fly the twin for `seconds` on a graph of its own (camera, stereo, policy)
/// and record `topics` of it to `dir/flight.mcap`.
fn record_twin_flight(
    dir: &std::path::Path,
    k: u16,
    seconds: &str,
    topics: &str,
) -> std::path::PathBuf {
    let robot = format!("rec{k}x{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(k));
    let out = dir.join("flight.mcap");
    let mut twin = twin_graph(&robot, port(k), seconds);
    twin.push_str(&format!(
        "[[process]]\nname = \"record\"\nargs = [\"record\", \"--robot\", \"{robot}\", \"--connect\", \"{ep}\", \"--topics\", \"{topics}\", \"--out\", \"{}\"]\n",
        out.display()
    ));
    std::fs::write(dir.join("twin.toml"), twin).unwrap();
    succeed(
        Command::new(workspace_bin("agent"))
            .arg("launch")
            .arg(dir.join("twin.toml")),
    );
    assert!(out.is_file(), "no recording at {}", out.display());
    out
}

#[test]
fn launched_graph_flies_the_twin_in_a_closed_loop_over_zenoh() {
    let dir = temp_dir("graph");
    let file = dir.join("twin.toml");
    std::fs::write(&file, twin_graph("graphtest", port(0), "4")).unwrap();
    let out = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The twin's summary line, prefixed with its process name.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("[camera] twin: "))
        .unwrap_or_else(|| panic!("no twin summary in {stdout}\n{stderr}"));
    let nums = numbers(line);
    let (frames, unanswered) = (nums[0], nums[2]);
    assert_eq!(frames, 120, "{line}");
    // Only the frames before the routes formed may go unanswered.
    assert!(unanswered < 30, "{line}");
    // Every child's log lines carry its name (tracing writes to stdout).
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("[stereo]") && all.contains("[policy]") && all.contains("stereo node up"),
        "{all}"
    );
    assert!(stdout.contains("graph `twin_test` stopped"), "{stdout}");
}

#[test]
fn crashed_processes_restart_with_back_off_and_sigterm_stops_every_child() {
    let dir = temp_dir("graph-restart");
    let file = dir.join("g.toml");
    let robot = format!("sigterm{}", std::process::id());
    let mut text = twin_graph(&robot, port(1), "3600");
    text.push_str(
        r#"[[process]]
name = "crasher"
program = "sh"
args = ["-c", "echo crashing; exit 3"]
restart = "on-failure"
"#,
    );
    std::fs::write(&file, text).unwrap();
    let child = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    signal_after(&child, "TERM", Duration::from_secs(5));
    let t0 = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "launcher took too long to stop"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped by Ctrl-C/SIGTERM"), "{stdout}");
    // Back-off 0.5, 1, 2 s...: a few restarts in 5 s, not hundreds.
    let restarts: u32 = stdout
        .split("\"crasher\": ")
        .last()
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no restart count in {stdout}"));
    assert!((2..=5).contains(&restarts), "{restarts} restarts: {stdout}");
    assert!(
        stdout.matches("[crasher] crashing").count() >= 3,
        "{stdout}"
    );
    // No child of the graph is left running.
    std::thread::sleep(Duration::from_millis(300));
    let left = Command::new("pgrep").args(["-f", &robot]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "orphans: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn latency_benchmark_measures_across_processes_and_in_one() {
    let stdout = succeed(
        Command::new(workspace_bin("agent"))
            .args(["latency", "--sizes", "160x120", "--frames", "200"])
            .args(["--security", "plain,password", "--port"])
            .arg(port(2).to_string()),
    );
    // Secured sessions only with the nodes as processes (threads share one session).
    for (placement, security) in [
        ("Processes", "Plain"),
        ("Processes", "Password"),
        ("Threads", "Plain"),
    ] {
        let head =
            format!("160x120, nodes as {placement}, {security} sessions: 200 frames (0 lost)");
        assert!(stdout.contains(&head), "{head} missing: {stdout}");
    }
    // Each run's three spreads (p50, p99, max): ordered, and the round trip
    // contains the stereo compute, frame by frame, so its order statistics
    // bound the compute's and the rest (messaging and the policy) from above.
    let spread = |line: &str| -> [f64; 3] {
        let n: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        [n[0], n[1], n[2]]
    };
    let lines: Vec<&str> = stdout.lines().collect();
    let mut runs = 0;
    for (k, l) in lines.iter().enumerate() {
        if !l.contains("round trip") {
            continue;
        }
        runs += 1;
        let round = spread(l.split("ms:").nth(1).unwrap());
        let compute = spread(lines[k + 1].split("ms:").nth(1).unwrap());
        let rest = spread(
            lines[k + 2]
                .split("ms:")
                .nth(1)
                .unwrap()
                .split('[')
                .next()
                .unwrap(),
        );
        for s in [round, compute, rest] {
            assert!(
                s[0] > 0.0 && s[0] <= s[1] && s[1] <= s[2] && s[2].is_finite(),
                "{s:?} in {stdout}"
            );
        }
        for i in 0..3 {
            assert!(
                compute[i] <= round[i] + 1e-3 && rest[i] <= round[i] + 1e-3,
                "round trip {round:?} below its parts {compute:?} / {rest:?}: {stdout}"
            );
        }
    }
    assert_eq!(runs, 3, "{stdout}");
}

/// Liveliness: the safety node notices that the policy process died (SIGKILL,
/// no goodbye) and commands hover on `cmd/setpoint` until it comes back.
#[test]
fn safety_commands_hover_when_the_policy_dies() {
    use bus::Inbox;
    use bus::msg::{Event, Setpoint};
    let robot = format!("safety{}", std::process::id());
    // (ports 2 to 4 are the latency benchmark's three runs)
    let ep = format!("tcp/127.0.0.1:{}", port(11));
    let dir = temp_dir("graph-safety");
    let safety_log = dir.join("safety.log");
    let spawn = |args: &[&str], log: &str| {
        Command::new(workspace_bin("agent"))
            .args(args)
            .args(["--robot", &robot])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let log = || std::fs::read_to_string(&safety_log).unwrap_or_default();
    let mut safety = spawn(
        &[
            "node",
            "safety",
            "--listen",
            &ep,
            "--require",
            "policy",
            "--hover-seconds",
            "600",
        ],
        "safety.log",
    );
    let session = bus::open(&bus::BusConfig::connect_to(ep.clone())).unwrap();
    let mut setpoints =
        Inbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT, 256).unwrap();
    let mut events = Inbox::<Event>::new(&session, &robot, bus::topics::EVENTS, 64).unwrap();
    let presence = bus::Presence::watch(&session, &robot).unwrap();
    // The session may open before safety listens: bus retries the connection
    // within a second. `node` is the process expected to announce `want`.
    let wait_for = |want: bus::Change, node: &mut std::process::Child| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if presence.recv_timeout(Duration::from_millis(100)).unwrap() == Some(want.clone()) {
                return;
            }
            if let Some(status) = node.try_wait().unwrap() {
                panic!("exited ({status}) before {want:?}; safety's log: {}", log());
            }
        }
        panic!("{want:?} not seen; safety's log: {}", log());
    };
    wait_for(bus::Change::Up("safety".into()), &mut safety);
    let mut policy = spawn(&["node", "policy", "--connect", &ep], "policy.log");
    wait_for(bus::Change::Up("policy".into()), &mut policy);
    // Policy alive (and idle: no depth scans): safety stays silent.
    std::thread::sleep(Duration::from_millis(500));
    while setpoints.recv_timeout(Duration::ZERO).unwrap().is_some() {}
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        setpoints.recv_timeout(Duration::ZERO).unwrap().is_none(),
        "safety spoke while the policy was alive"
    );

    policy.kill().unwrap();
    let killed = Instant::now();
    policy.wait().unwrap();
    // (Liveness only: the time it takes is printed, not asserted; the hover
    // limit before landing is set far beyond the test.)
    let mut hovers = 0;
    let mut first = None;
    while hovers < 15 {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "{hovers} hover setpoints after the policy died"
        );
        if let Some((h, s)) = setpoints.recv_timeout(Duration::from_millis(50)).unwrap() {
            assert_eq!(s, Setpoint::HOVER);
            assert_eq!(h.frame_id, "safety");
            first.get_or_insert(killed.elapsed());
            hovers += 1;
        }
    }
    eprintln!(
        "hover {first:?} after SIGKILL of the policy; 15 hover setpoints after {:?}",
        killed.elapsed()
    );

    // The policy comes back: hover is released.
    let mut policy = spawn(&["node", "policy", "--connect", &ep], "policy.log");
    wait_for(bus::Change::Up("policy".into()), &mut policy);
    std::thread::sleep(Duration::from_millis(300));
    while setpoints.recv_timeout(Duration::ZERO).unwrap().is_some() {}
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        setpoints.recv_timeout(Duration::ZERO).unwrap().is_none(),
        "still hovering with the policy back"
    );
    let mut texts = Vec::new();
    while let Some((_, e)) = events.recv_timeout(Duration::from_millis(10)).unwrap() {
        texts.push(e.text);
    }
    assert!(texts.iter().any(|t| t.contains("lost policy")), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("policy is back")),
        "{texts:?}"
    );
    for c in [&mut policy, &mut safety] {
        signal_after(c, "TERM", Duration::ZERO);
        assert!(c.wait().unwrap().success());
    }
}

/// Learning on the graph: the learner node trains the monocular network from
/// the stereo node's scans of the twin's pairs and saves it; the mono node
/// runs it on every pair and swaps in each save. The telemetry node splits
/// its recording every MB (graph.rrd, graph-part2.rrd, ...): every part
/// passes rerun's own check, and the parts hold the graph's topics.
#[test]
fn learner_and_mono_nodes_learn_and_swap_weights_on_the_graph() {
    let dir = temp_dir("graph-learn");
    let ckpt = dir.join("mono.bpk");
    let rrd = dir.join("graph.rrd");
    let robot = format!("learn{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(10));
    let mut text = twin_graph(&robot, port(10), "60");
    text.push_str(&format!(
        r#"[[process]]
name = "learner"
args = ["node", "learner", "--robot", "{robot}", "--connect", "{ep}", "--checkpoint", "{ck}", "--save-every", "1"]
[[process]]
name = "mono"
args = ["node", "mono", "--robot", "{robot}", "--connect", "{ep}", "--checkpoint", "{ck}"]
[[process]]
name = "telemetry"
args = ["node", "telemetry", "--robot", "{robot}", "--connect", "{ep}", "--rerun-save", "{rrd}", "--rerun-split-mb", "1"]
"#,
        ck = ckpt.display(),
        rrd = rrd.display()
    ));
    let file = dir.join("learn.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(&file)
        .output()
        .unwrap();
    let raw =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{raw}");
    // Without the terminal colours of the log lines.
    let mut log = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            log.push(c);
        }
    }
    let saves = log
        .lines()
        .filter(|l| l.starts_with("[learner]") && l.contains("saved"))
        .count();
    let reloads = log
        .lines()
        .filter(|l| l.starts_with("[mono]") && l.contains("new weights"))
        .count();
    assert!(
        saves >= 1 && reloads >= 1,
        "saves {saves}, reloads {reloads}:\n{log}"
    );
    let down = log
        .lines()
        .find(|l| l.starts_with("[learner]") && l.contains("learner node down"))
        .unwrap_or_else(|| panic!("no learner summary:\n{log}"));
    let offered: u64 = down
        .split("offered=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(offered > 500, "{down}");
    assert!(ckpt.is_file());
    // The telemetry node put the graph's topics into rerun, in parts of
    // about a MB: the first under the given name, then NAME-partN.
    let mut parts = vec![rrd.clone()];
    parts.extend(
        (2..)
            .map(|n| dir.join(format!("graph-part{n}.rrd")))
            .take_while(|p| p.is_file()),
    );
    assert!(parts.len() >= 2, "one telemetry file: {parts:?}\n{log}");
    let mut printed = String::new();
    for part in &parts {
        let text = e2e_tests::verified_rrd(part);
        // Each part stands alone: it has the rig's cameras.
        assert!(
            text.contains("/world/robot/camera/right"),
            "{} has no rig",
            part.display()
        );
        printed += &text;
    }
    for entity in [
        "/world/robot/camera/image",
        "/world/robot/camera/right",
        "/plots/scan/mono",
        "/plots/scan/stereo",
        "/plots/setpoint/forward",
        "/events",
    ] {
        assert!(
            printed.contains(entity),
            "{entity} missing from the graph's telemetry"
        );
    }
}

/// The shipped `launch/robot.toml` made to run here: the camera is a
/// side-by-side video of a twin flight (recorded on port `k`) played once in
/// real time by the `file` preset in place of the UVC module, with the twin's
/// rig as the calibration; the flight controller is `fc-host` on a pty (the
/// firmware's logic on the host); the secrets are made as at install; the
/// router listens on ports `router` (robot) and `ground`. Returns the launch
/// file's path and the running `fc-host`.
fn robot_launch_here(
    dir: &std::path::Path,
    robot: &str,
    k: u16,
    router: u16,
    ground: u16,
) -> (std::path::PathBuf, std::process::Child) {
    let flight = record_twin_flight(dir, k, "20", "camera/stereo");
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = bus::log::read(&flight)
        .unwrap()
        .into_iter()
        .filter(|(t, _, _)| t == "camera/stereo")
        .filter_map(|(_, _, b)| bus::wire::decode::<bus::msg::StereoPair>(&b).ok())
        .map(|(_, p)| (p.left, p.right))
        .collect();
    assert!(pairs.len() > 20, "{} pairs recorded", pairs.len());
    let video = dir.join("flight.avi");
    camera::video::write_side_by_side(&video, 160, 120, 20, camera::video::Encoding::Yuyv, pairs)
        .unwrap();
    let twin_rig = sim::camera::StereoRig::default();
    let k = twin_rig.intrinsics;
    calib::Rig::ideal(k.width, k.height, k.fx, k.cx, k.cy, twin_rig.baseline)
        .save_opencv(&dir.join("rig.yaml"))
        .unwrap();

    let tty = dir.join("ttyFC");
    let host = e2e_tests::fc_host(&tty);
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch/robot.toml"),
    )
    .unwrap();
    let out_dir = format!("{}/", dir.display());
    // The secured graph's secrets, made as at install.
    succeed(
        Command::new(workspace_bin("agent"))
            .args(["certs", "--out"])
            .arg(dir.join("secrets")),
    );
    let text = shipped
        .replace("/dev/ttyTHS1", &tty.display().to_string())
        .replace("tls/127.0.0.1:7450", &format!("tls/127.0.0.1:{router}"))
        .replace("tls/0.0.0.0:7451", &format!("tls/localhost:{ground}"))
        .replace("\"secrets/", &format!("\"{out_dir}secrets/"))
        .replace(
            "\"--robot\", \"robot\"",
            &format!("\"--robot\", \"{robot}\""),
        )
        .replace(
            "\"--preset\", \"sbs-uvc\", \"--camera-device\", \"/dev/video0\", \"--format\", \"mjpeg\", \"--width\", \"640\", \"--height\", \"480\", \"--fps\", \"30\"",
            &format!(
                "\"--preset\", \"file\", \"--location\", \"{}\", \"--realtime\", \"--once\", \"--width\", \"160\", \"--height\", \"120\", \"--fps\", \"20\"",
                video.display()
            ),
        )
        .replace("\"out/", &format!("\"{out_dir}"));
    assert!(
        !text.contains("ttyTHS1")
            && !text.contains("tls/0.0.0.0:7451")
            && text.contains("\"--once\""),
        "{text}"
    );
    let file = dir.join("robot.toml");
    std::fs::write(&file, text).unwrap();
    (file, host)
}

/// `launch/robot.toml` as shipped, with its device, addresses and files pointed
/// at this test: the camera is a recording of the twin, the flight controller
/// is the firmware on a pty (`fc-host`). The whole loop runs on the secured
/// graph — every node a client of the router with its role's certificate:
/// stereo, mono, learner, the policy with its cue switch, safety, fc, record —
/// and setpoints reach the firmware over the serial link, but nothing arms
/// it: arming is the operator's.
#[test]
fn robot_launch_does_not_arm() {
    let dir = temp_dir("robot-launch");
    let robot = format!("bot{}", std::process::id());
    let (file, mut host) = robot_launch_here(&dir, &robot, 5, port(6), port(12));
    let out = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(&file)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    signal_after(&host, "TERM", Duration::from_millis(300));
    let _ = host.wait();
    let mut fc_log = String::new();
    std::io::Read::read_to_string(host.stdout.as_mut().unwrap(), &mut fc_log).unwrap();
    // The link was up and the firmware reported, but it was never armed.
    assert!(log.contains("fc: up -> Disarmed"), "{log}");
    assert!(
        !fc_log.contains("-> Armed"),
        "armed by the launch file:\n{fc_log}"
    );
    assert!(!log.contains("fc: armed"), "{log}");
    for node in [
        "router for",
        "camera: streaming 160x120 pairs (file)",
        "stereo node up",
        "policy node up",
        "mono node up",
        "learner node up",
    ] {
        assert!(log.contains(node), "no {node:?} in:\n{log}");
    }
    // The recording is named by its start time (`flight-{time}.mcap`).
    let flights: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("flight-2") && name.ends_with("Z.mcap")
        })
        .collect();
    assert_eq!(flights.len(), 1, "one time-stamped recording: {flights:?}");
    // The fc node's pose reached the flight recording: the firmware reports
    // the vehicle on the ground (altitude 0) with a finite attitude.
    let rec = bus::log::read(&flights[0]).unwrap();
    let states: Vec<bus::msg::State> = rec
        .iter()
        .filter(|(t, _, _)| t == "state")
        .filter_map(|(_, _, b)| bus::wire::decode::<bus::msg::State>(b).ok())
        .map(|(_, s)| s)
        .collect();
    assert!(!states.is_empty(), "no state in the flight recording");
    assert!(
        states
            .iter()
            .all(|s| s.position[2] == 0.0 && s.attitude.iter().all(|q| q.is_finite())),
        "{:?}",
        states.first()
    );
}

/// The operator arms the shipped robot launch with `agent arm`: it waits
/// until every preflight check passes on the secured graph (it joins as the
/// `operator` role over TLS), asks the fc node on `cmd/arm`, and the firmware
/// arms. Before that, the fc node refuses an arm request while no setpoints
/// stream, and `agent arm` refuses a graph without its safety node.
#[test]
fn operator_arms_after_preflight() {
    let dir = temp_dir("robot-arm");
    let robot = format!("arm{}", std::process::id());
    let (file, mut host) = robot_launch_here(&dir, &robot, 13, port(14), port(15));
    let secrets = dir.join("secrets");
    let arm = |extra: &[&str]| {
        let mut c = Command::new(workspace_bin("agent"));
        c.args(["arm", "--robot", &robot, "--connect"])
            .arg(format!("tls/127.0.0.1:{}", port(14)))
            .arg("--tls-ca")
            .arg(secrets.join("ca.pem"))
            .arg("--tls-cert")
            .arg(secrets.join("operator.pem"))
            .arg("--tls-key")
            .arg(secrets.join("operator.key"))
            .args(extra);
        c.output().unwrap()
    };
    let launch = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A node the graph does not have: the checks never pass, nothing arms.
    let refused = arm(&[
        "--wait",
        "3",
        "--require",
        "camera,stereo,policy,safety,fc,tracker",
    ]);
    let said = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("not alive: tracker"), "{said}");
    assert!(said.contains("nothing was armed"), "{said}");
    // An arm request stamped a minute ago (a replayed one) is refused by the
    // fc node, naming its age.
    let operator = bus::open(&bus::BusConfig {
        connect: vec![format!("tls/127.0.0.1:{}", port(14))],
        tls: Some(bus::TlsFiles {
            ca: secrets.join("ca.pem"),
            cert: secrets.join("operator.pem"),
            key: secrets.join("operator.key"),
        }),
        ..bus::BusConfig::default()
    })
    .unwrap();
    let mut events =
        bus::Inbox::<bus::msg::Event>::new(&operator, &robot, bus::topics::EVENTS, 256).unwrap();
    let mut requests =
        bus::Outbox::<bus::msg::ArmRequest>::new(&operator, &robot, bus::topics::CMD_ARM).unwrap();
    let replayed = bus::msg::ArmRequest {
        nonce: 0x5eed,
        action: bus::msg::ArmAction::Arm,
    };
    let t0 = Instant::now();
    let refusal = loop {
        // Sent again until answered: the route may take a moment to form.
        requests
            .send(bus::now_ns() - 60_000_000_000, "operator", &replayed)
            .unwrap();
        let until = Instant::now() + Duration::from_secs(1);
        let mut answer = None;
        while Instant::now() < until {
            if let Some((_, e)) = events.recv_timeout(Duration::from_millis(100)).unwrap()
                && e.text.contains("arm request 0000000000005eed")
            {
                answer = Some(e.text);
                break;
            }
        }
        if let Some(a) = answer {
            break a;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no answer to the replayed request"
        );
    };
    assert!(
        refusal.contains("refused: stamped 60") && refusal.contains("before"),
        "{refusal}"
    );
    drop(operator);
    // The shipped graph: every check passes once the loop runs, then it arms.
    let armed = arm(&["--wait", "120"]);
    let said = String::from_utf8_lossy(&armed.stdout).to_string()
        + &String::from_utf8_lossy(&armed.stderr);
    assert!(armed.status.success(), "{said}");
    for check in [
        "nodes",
        "camera and stereo",
        "state",
        "flight controller",
        "setpoints",
    ] {
        assert!(
            said.lines()
                .any(|l| l.contains(check) && l.contains("PASS")),
            "{check} did not pass:\n{said}"
        );
    }
    assert!(said.contains(": armed"), "{said}");
    // The camera file ends, the graph stops; the firmware was armed by the request.
    let out = launch.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    signal_after(&host, "TERM", Duration::from_millis(300));
    let _ = host.wait();
    let mut fc_log = String::new();
    std::io::Read::read_to_string(host.stdout.as_mut().unwrap(), &mut fc_log).unwrap();
    assert!(
        fc_log.contains("-> Armed"),
        "the firmware never armed:\n{fc_log}\n{log}"
    );
    assert!(log.contains("arm request"), "{log}");
}

/// Several nodes in one process (`agent node stereo,policy`): threads sharing
/// one session fly the twin as the separate processes do.
#[test]
fn several_nodes_run_in_one_process() {
    let dir = temp_dir("graph-one-process");
    let robot = format!("onep{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(7));
    let text = format!(
        r#"name = "one_process"
stop_timeout = 5.0
[[process]]
name = "camera"
args = ["node", "camera", "--robot", "{robot}", "--listen", "{ep}", "--seconds", "4"]
required = true
[[process]]
name = "perception"
args = ["node", "stereo,policy", "--robot", "{robot}", "--connect", "{ep}"]
"#
    );
    std::fs::write(dir.join("g.toml"), text).unwrap();
    let stdout = succeed(
        Command::new(workspace_bin("agent"))
            .arg("launch")
            .arg(dir.join("g.toml")),
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("[camera] twin: "))
        .unwrap_or_else(|| panic!("no twin summary in {stdout}"));
    let nums = numbers(line);
    assert_eq!(nums[0], 120, "{line}");
    assert!(nums[2] < 30, "{line}");
    assert!(
        stdout.contains("stereo node up") && stdout.contains("policy node up"),
        "{stdout}"
    );
}

/// The telemetry node places both cameras from a calibration file (OpenCV
/// YAML from `calib`), and names a rig file it cannot read.
#[test]
fn telemetry_node_takes_the_cameras_from_a_rig_file() {
    let dir = temp_dir("graph-rig");
    let rrd = dir.join("rig.rrd");
    let rig = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../calib/tests/data/opencv_written.yaml");
    let node = Command::new(workspace_bin("agent"))
        .args(["node", "telemetry", "--robot", "rigtest", "--rig"])
        .arg(&rig)
        .arg("--rerun-save")
        .arg(&rrd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    signal_after(&node, "INT", Duration::from_secs(2));
    assert!(node.wait_with_output().unwrap().status.success());
    let printed = succeed(e2e_tests::rerun_cli().args(["rrd", "print"]).arg(&rrd));
    let right: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("/world/robot/camera/right "))
        .collect();
    assert!(
        right.iter().any(|l| l.contains("Pinhole:resolution")),
        "{printed}"
    );
    assert!(
        right.iter().any(|l| l.contains("Transform3D:translation")),
        "{printed}"
    );
    let bad = Command::new(workspace_bin("agent"))
        .args([
            "node",
            "telemetry",
            "--robot",
            "rigtest",
            "--rerun",
            "off",
            "--rig",
        ])
        .arg(dir.join("missing.yaml"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.yaml"));
}

/// One loop, two executors: a twin flight recorded to MCAP is replayed into
/// the robot's nodes (stereo, mono with a fixed checkpoint, the policy with its
/// switch), and the setpoints they publish are those of the same stages run in
/// process on the same recording (`agent::pipeline::replay`): the same frames,
/// values equal to 1e-6, and the graph switches to mono as the loop does.
#[test]
fn robot_graph_replays_a_twin_flight_like_the_loop() {
    use agent::fly::{FlyConfig, scan_shape, twin_geometry};
    use agent::persist::{Mode, Strategy};
    use agent::pipeline::replay::{ReplaySettings, run};
    use bus::msg::{Event, Setpoint};
    use bus::{Inbox, topics};

    let dir = temp_dir("graph-replay");
    // 1. A twin flight, recorded (8 s: a recorder that joins a second or two
    //    late on a loaded machine still has well over 100 frames).
    let flight = record_twin_flight(&dir, 8, "8", "camera/stereo,state");

    // 2. Settings that let the switch fly mono within the flight, and a fixed
    //    network (no learner: both executors see the same weights).
    let config = dir.join("loop.toml");
    std::fs::write(
        &config,
        "[persist]\nmin_train_steps = 0\nhold = 0.5\nerror_window = 0.5\nerror_threshold = 10.0\nexit_factor = 100.0\n",
    )
    .unwrap();
    let cfg = FlyConfig::load(&config).unwrap();
    let dev = agent::device::device(agent::device::Backend::Cpu).unwrap();
    let ckpt = dir.join("mono.bpk");
    let net = agent::mono::MonoNet::seeded(&cfg.mono, &dev, 7).unwrap();
    agent::fly::save_checkpoint(&net, &ckpt).unwrap();
    let net = agent::mono::load_checkpoint(&ckpt, &cfg.mono, &dev).unwrap();

    // 3. In process.
    let want = run(
        &flight,
        ReplaySettings {
            stereo: cfg.stereo,
            rig: twin_geometry(&sim::StereoRig::default()).unwrap(),
            mono: Some((&net, cfg.mono, &dev)),
            scan: scan_shape(&cfg.mono),
            persist: cfg.persist,
            strategy: Strategy::Persistent,
            avoid: cfg.avoid,
            camera_hz: 30.0,
        },
    )
    .unwrap();
    let on_mono = want.iter().filter(|a| a.mode == Mode::Mono).count();
    assert!(want.len() >= 100, "{} frames recorded", want.len());
    assert!(on_mono > 0, "the loop never flew mono");

    // 4. The graph: this test listens (its subscribers exist before any node),
    //    the nodes connect; the recording plays once they are all up.
    let robot = format!("rg{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(9));
    let session = bus::open(&bus::BusConfig {
        listen: vec![ep.clone()],
        ..bus::BusConfig::default()
    })
    .unwrap();
    let mut setpoints =
        Inbox::<Setpoint>::new(&session, &robot, topics::CMD_SETPOINT, 4096).unwrap();
    let mut events = Inbox::<Event>::new(&session, &robot, topics::EVENTS, 256).unwrap();
    let presence = bus::Presence::watch(&session, &robot).unwrap();
    let (c, k) = (config.display(), ckpt.display());
    let graph = format!(
        r#"name = "robot_loop"
stop_timeout = 5.0
[[process]]
name = "stereo"
args = ["node", "stereo", "--robot", "{robot}", "--connect", "{ep}", "--config", "{c}"]
required = true
[[process]]
name = "mono"
args = ["node", "mono", "--robot", "{robot}", "--connect", "{ep}", "--config", "{c}", "--checkpoint", "{k}"]
required = true
[[process]]
name = "policy"
args = ["node", "policy", "--robot", "{robot}", "--connect", "{ep}", "--config", "{c}", "--strategy", "persistent", "--mono-wait-ms", "5000"]
required = true
"#
    );
    std::fs::write(dir.join("graph.toml"), graph).unwrap();
    let launch = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(dir.join("graph.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    while up.len() < 3 {
        if let Some(bus::Change::Up(n)) = presence.recv_timeout(Duration::from_millis(100)).unwrap()
        {
            up.insert(n);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nodes up after 60 s: {up:?}"
        );
    }
    // Subscribers are declared right after the token: a moment for their
    // routes. The replay then waits 2 s more (`--wait`) for its own session to
    // learn of them: a publisher drops what it puts before it knows a
    // subscriber (seen: frame 0's state lost under load).
    std::thread::sleep(Duration::from_secs(1));
    succeed(
        Command::new(workspace_bin("agent"))
            .arg("replay")
            .arg(&flight)
            .args([
                "--robot",
                &robot,
                "--connect",
                &ep,
                "--topics",
                "camera/stereo,state",
            ])
            // Frame by frame as the graph answers: what it computes cannot
            // depend on how busy the host is (seen on CI at a fixed rate: the
            // mono node fell ten frames behind and the policy flew a frame on
            // stereo that the loop flew on mono).
            .args(["--fast", "--lockstep", "cmd/setpoint", "--wait", "2"]),
    );
    let mut got = Vec::new();
    let quiet = Duration::from_secs(10);
    while got.len() < want.len() {
        match setpoints.recv_timeout(quiet).unwrap() {
            Some(x) => got.push(x),
            None => break,
        }
    }
    let mut texts = Vec::new();
    while let Ok(Some((_, e))) = events.recv_timeout(Duration::ZERO) {
        texts.push(e.text);
    }
    signal_after(&launch, "TERM", Duration::ZERO);
    let out = launch.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);

    assert_eq!(
        got.len(),
        want.len(),
        "the graph answered {} of {} frames:\n{log}",
        got.len(),
        want.len()
    );
    for ((h, sp), a) in got.iter().zip(&want) {
        assert_eq!(
            (h.seq, h.stamp_ns),
            (a.header.seq, a.header.stamp_ns),
            "frame order"
        );
        let d = [
            sp.forward - a.setpoint.forward,
            sp.left - a.setpoint.left,
            sp.up - a.setpoint.up,
            sp.yaw_rate - a.setpoint.yaw_rate,
        ];
        assert!(
            d.iter().all(|x| x.abs() <= 1e-6),
            "frame {}: graph {sp:?}, loop {:?} ({:?})",
            h.seq,
            a.setpoint,
            a.mode
        );
    }
    assert!(
        texts.iter().any(|t| t.contains("switch to mono")),
        "the graph never switched to mono: {texts:?}\n{log}"
    );
    eprintln!(
        "{} frames, {on_mono} on mono in the loop; graph events: {texts:?}",
        want.len()
    );
}

/// Adler-32 (RFC 1950), as Python's `zlib.adler32`: a checksum of an image
/// that the ROS 2 readers print.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// A twin flight recorded by `agent record` (all topics, the default ROS 2
/// format) is read by ROS 2 tools alone (tests/scripts/ros2_read.py:
/// mcap-ros2-support with the file's schemas, rosbags with its own type
/// store): every channel decodes in both, the images are the pairs that
/// crossed the bus (size, `mono8`, checksum), CameraInfo K and P are the
/// twin's rig, and the odometry poses are the states the twin published.
#[test]
fn recording_decodes_with_ros2_tools() {
    use bus::msg::{State, StereoPair};
    use bus::{Inbox, topics};
    let dir = temp_dir("ros2-record");
    let robot = format!("ros{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(16));
    let out = dir.join("flight.mcap");
    // This test hears the bus too, to compare with what the file holds.
    let session = bus::open(&bus::BusConfig::connect_to(ep.clone())).unwrap();
    let mut states = Inbox::<State>::new(&session, &robot, topics::STATE, 4096).unwrap();
    let mut pairs =
        Inbox::<StereoPair>::new(&session, &robot, topics::CAMERA_STEREO, 4096).unwrap();
    let mut scans =
        Inbox::<bus::msg::DepthScan>::new(&session, &robot, topics::DEPTH_STEREO, 4096).unwrap();
    // 8 s: the recorder starts last; well over the 10 frames compared below.
    let mut graph = twin_graph(&robot, port(16), "8");
    graph.push_str(&format!(
        "[[process]]\nname = \"record\"\nargs = [\"record\", \"--robot\", \"{robot}\", \"--connect\", \"{ep}\", \"--out\", \"{}\"]\n",
        out.display()
    ));
    std::fs::write(dir.join("twin.toml"), graph).unwrap();
    let mut launch = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(dir.join("twin.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // An event of this test's own, said while the graph runs (the nodes'
    // events depend on timing): it must come out on /rosout.
    let mut say = bus::Outbox::<bus::msg::Event>::new(&session, &robot, topics::EVENTS).unwrap();
    let status = loop {
        if let Some(status) = launch.try_wait().unwrap() {
            break status;
        }
        let text = "ros2 test: hello".to_string();
        say.send(bus::now_ns(), "ros2test", &bus::msg::Event { text })
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the twin graph failed: {status}");
    let mut heard_states = std::collections::BTreeMap::new();
    while let Some((h, s)) = states.recv_timeout(Duration::ZERO).unwrap() {
        heard_states.insert(h.seq, (h.stamp_ns, s));
    }
    let mut heard_pairs = std::collections::BTreeMap::new();
    while let Some((h, p)) = pairs.recv_timeout(Duration::ZERO).unwrap() {
        heard_pairs.insert(h.seq, p);
    }
    let mut heard_scans = std::collections::BTreeMap::new();
    while let Some((h, d)) = scans.recv_timeout(Duration::ZERO).unwrap() {
        heard_scans.insert(h.seq, d.depth);
    }
    assert!(
        heard_states.len() >= 10 && heard_pairs.len() >= 10,
        "the test heard {} states and {} pairs",
        heard_states.len(),
        heard_pairs.len()
    );

    let printed = succeed(
        Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ros2_read.py"))
            .arg(&out),
    );
    let r: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let fs = |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(f).collect() };

    // Every channel: a ROS 2 type, read by both tools, the same count.
    let want_types = [
        ("/camera/left/image_raw", "sensor_msgs/msg/Image"),
        ("/camera/right/image_raw", "sensor_msgs/msg/Image"),
        ("/camera/left/camera_info", "sensor_msgs/msg/CameraInfo"),
        ("/camera/right/camera_info", "sensor_msgs/msg/CameraInfo"),
        ("/depth/stereo", "sensor_msgs/msg/Image"),
        ("/cmd/setpoint", "geometry_msgs/msg/TwistStamped"),
        ("/odom", "nav_msgs/msg/Odometry"),
        ("/tf", "tf2_msgs/msg/TFMessage"),
        ("/tf_static", "tf2_msgs/msg/TFMessage"),
        ("/rosout", "rcl_interfaces/msg/Log"),
    ];
    let channels = r["channels"].as_object().unwrap();
    for (topic, ty) in want_types {
        let c = &channels
            .get(topic)
            .unwrap_or_else(|| panic!("no {topic} in {channels:?}"));
        assert_eq!(c["type"], ty, "{topic}");
        assert_eq!(c["schema_encoding"], "ros2msg", "{topic}");
        assert_eq!(c["encoding"], "cdr", "{topic}");
    }
    for (topic, c) in channels {
        assert_eq!(
            r["rosbags_counts"][topic], c["count"],
            "{topic}: rosbags and mcap-ros2-support read different counts"
        );
    }
    // Every channel's offered QoS as rosbags parses it: `ros2 bag play`
    // offers `/tf_static` transient local again (late joiners get the rig),
    // images best effort as the sensor-data profile, the rest reliable.
    for (topic, _) in want_types {
        let (reliability, durability, depth) = match topic {
            "/tf_static" => ("RELIABLE", "TRANSIENT_LOCAL", 1),
            t if t.starts_with("/camera/") || t.starts_with("/depth/") => {
                ("BEST_EFFORT", "VOLATILE", 5)
            }
            _ => ("RELIABLE", "VOLATILE", 10),
        };
        let q = &r["qos"][topic];
        assert_eq!(
            q.as_array().map(Vec::len),
            Some(1),
            "{topic}: one offered QoS profile: {q}"
        );
        assert_eq!(q[0]["reliability"], reliability, "{topic}: {q}");
        assert_eq!(q[0]["durability"], durability, "{topic}: {q}");
        assert_eq!(q[0]["history"], "KEEP_LAST", "{topic}: {q}");
        assert_eq!(q[0]["depth"], depth, "{topic}: {q}");
    }

    // Images: the pairs that crossed the bus.
    let rig = sim::env::EnvConfig::default().rig;
    let k = rig.intrinsics;
    let mut compared = 0;
    for (side, images) in r["images"].as_object().unwrap() {
        for (seq, im) in images.as_object().unwrap() {
            assert_eq!(
                fs(&im["size"]),
                [k.width as f64, k.height as f64],
                "{side} {seq}"
            );
            assert_eq!(im["encoding"], "mono8");
            assert_eq!(im["step"], k.width);
            if let Some(p) = heard_pairs.get(&seq.parse::<u64>().unwrap()) {
                let data = if side == "left" { &p.left } else { &p.right };
                assert_eq!(im["crc"], adler32(data), "{side} image {seq}");
                compared += 1;
            }
        }
    }
    assert!(compared >= 20, "{compared} images compared with the bus");

    // CameraInfo: the twin's rig (rectified: no distortion; the right
    // camera's P has Tx = -fx * baseline).
    for (side, tx) in [("left", 0.0), ("right", -k.fx * rig.baseline)] {
        let ci = &r["camera_info"][side];
        let want_k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0];
        let want_p = [
            k.fx, 0.0, k.cx, tx, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0,
        ];
        for (got, want) in fs(&ci["k"])
            .iter()
            .zip(want_k)
            .chain(fs(&ci["p"]).iter().zip(want_p))
        {
            assert!((got - want).abs() < 1e-9, "{side} camera info {ci}");
        }
        assert!(fs(&ci["d"]).iter().all(|d| *d == 0.0));
    }
    // The cameras on the body: optical frames (z forward, x right, y down) of
    // a forward-looking pair, the right one `baseline` to the right.
    let tf = r["tf_static"].as_array().unwrap();
    assert_eq!(tf.len(), 2, "{tf:?}");
    for (t, child) in tf
        .iter()
        .zip(["camera_left_optical_frame", "camera_right_optical_frame"])
    {
        assert_eq!(
            (t["parent"].as_str(), t["child"].as_str()),
            (Some("base_link"), Some(child))
        );
        assert_eq!(fs(&t["q"]), [-0.5, 0.5, -0.5, 0.5], "{t}");
    }
    assert!(
        (f(&tf[0]["t"][1]) - f(&tf[1]["t"][1]) - rig.baseline).abs() < 1e-12,
        "{tf:?}"
    );

    // Depth scans: one-row 32FC1 images holding the bus's floats, bit for bit.
    let mut depths = 0;
    for (seq, d) in r["depth"].as_object().unwrap() {
        assert_eq!(d["encoding"], "32FC1");
        let Some(scan) = heard_scans.get(&seq.parse::<u64>().unwrap()) else {
            continue;
        };
        assert_eq!(fs(&d["size"]), [scan.len() as f64, 1.0]);
        let bytes: Vec<u8> = scan.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(d["crc"], adler32(&bytes), "depth scan {seq}");
        depths += 1;
    }
    assert!(depths >= 10, "{depths} depth scans compared with the bus");

    // Odometry: the states the twin published, exactly.
    let mut poses = 0;
    for (seq, o) in r["odom"].as_object().unwrap() {
        let Some((stamp, s)) = heard_states.get(&seq.parse::<u64>().unwrap()) else {
            continue;
        };
        let st = fs(&o["stamp"]);
        assert_eq!(
            st[0] as u64 * 1_000_000_000 + st[1] as u64,
            *stamp,
            "stamp of {seq}"
        );
        // Compared bit for bit (JSON's decimal floats are not).
        let got: Vec<f64> = o["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| f64::from_bits(b.as_u64().unwrap()))
            .collect();
        let [w, x, y, z] = s.attitude;
        let [vx, vy, vz] = s.velocity.map(f64::from);
        let want = [
            s.position[0],
            s.position[1],
            s.position[2],
            x,
            y,
            z,
            w,
            vx,
            vy,
            vz,
        ];
        assert_eq!(got, want, "pose (position, x y z w, velocity) of {seq}");
        assert_eq!(o["frame"], serde_json::json!(["odom", "base_link"]));
        poses += 1;
    }
    assert!(poses >= 10, "{poses} poses compared with the bus");
    assert!(
        !r["twist"].as_object().unwrap().is_empty(),
        "no setpoint decoded"
    );
    assert!(
        r["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l[0] == "ros2test" && l[1] == "ros2 test: hello"),
        "the test's event is not on /rosout: {}",
        r["log"]
    );
}

/// `agent launch FILE` to its end: how it exited, and its log (stdout, then stderr).
fn launch(file: &std::path::Path) -> (std::process::ExitStatus, String) {
    let out = Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(file)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status, log)
}

/// A ROS 2 peer of tests/scripts (eclipse-zenoh and rosbags, none of this
/// project's code) started with `args`; it runs until its stdin closes.
/// `ready`: a file the script writes once it listens (`ROS2_PEER_READY`);
/// this waits for it (liveness only: Python's start-up and imports take
/// seconds on a loaded machine, and a graph launched before the peer listens
/// has nobody to send to).
fn ros2_script(
    script: &str,
    args: &[&str],
    ready: Option<&std::path::Path>,
) -> std::process::Child {
    let mut c = Command::new("python3");
    c.arg(format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(r) = ready {
        c.env("ROS2_PEER_READY", r);
    }
    let mut child = c
        .spawn()
        .expect("python3 runs (tests/prepare.sh installs eclipse-zenoh and rosbags)");
    if let Some(r) = ready {
        let t0 = Instant::now();
        while !r.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{script} ended before it listened: {status}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{script} did not listen within 120 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    child
}

/// The launch-file entry of a `ros2` node on the twin graph of `bus_port`,
/// speaking rmw_zenoh to `ros_ep` in `domain` and taking `accept` from it.
fn ros2_process(robot: &str, bus_port: u16, ros_ep: &str, domain: u32, accept: &str) -> String {
    format!(
        "[[process]]\nname = \"ros2\"\nargs = [\"node\", \"ros2\", \"--robot\", \"{robot}\", \"--connect\", \"tcp/127.0.0.1:{bus_port}\", \"--ros-connect\", \"{ros_ep}\", \"--ros-domain\", \"{domain}\", \"--ros-accept\", \"{accept}\"]\n"
    )
}

/// A ROS 2 planner's `cmd_vel` is flown within the loop's safety limits: a
/// teleop node on rmw_zenoh's wire (tests/scripts/ros2_teleop.py, no code of
/// this project) holds 2.5 m/s forward while the twin flies its corridor;
/// the `ros2` node (`--ros-accept cmd-vel`) puts each command on
/// `cmd/external`, and the policy node (`--external`) flies it: bounded to the
/// cruise speed, at full speed while the way is clear, and with no forward
/// speed on any frame whose scan has something within the avoid distance or
/// too much unknown ahead. The corridor brings it to an obstacle within the
/// flight, so the cut is exercised; the twin counts no collision.
#[test]
fn ros2_cmd_vel_is_flown_within_the_safety_limits() {
    use agent::pipeline::{Ahead, AvoidConfig};
    use bus::msg::{DepthScan, Event, Setpoint};
    use bus::{Inbox, topics};
    let robot = format!("cv{}", std::process::id());
    let (bus_port, ros_port) = (port(20), port(21));
    let ros_ep = format!("tcp/127.0.0.1:{ros_port}");
    let domain = 9;
    let mut teleop = ros2_script(
        "ros2_teleop.py",
        &[&ros_ep, &domain.to_string(), "2.5", "0", "0", "0"],
        None,
    );
    let session = bus::open(&bus::BusConfig::connect_to(format!(
        "tcp/127.0.0.1:{bus_port}"
    )))
    .unwrap();
    let mut setpoints =
        Inbox::<Setpoint>::new(&session, &robot, topics::CMD_SETPOINT, 4096).unwrap();
    let mut external =
        Inbox::<Setpoint>::new(&session, &robot, topics::CMD_EXTERNAL, 4096).unwrap();
    let mut scans = Inbox::<DepthScan>::new(&session, &robot, topics::DEPTH_STEREO, 4096).unwrap();
    let mut events = Inbox::<Event>::new(&session, &robot, topics::EVENTS, 256).unwrap();
    let graph = twin_graph(&robot, bus_port, "20").replace(
        &format!("\"node\", \"policy\", \"--robot\", \"{robot}\","),
        &format!("\"node\", \"policy\", \"--external\", \"--robot\", \"{robot}\","),
    );
    assert!(graph.contains("--external"), "{graph}");
    let graph = graph + &ros2_process(&robot, bus_port, &ros_ep, domain, "cmd-vel");
    let dir = temp_dir("ros2-cmd-vel");
    std::fs::write(dir.join("twin.toml"), graph).unwrap();
    let (launched, log) = launch(&dir.join("twin.toml"));
    drop(teleop.stdin.take());
    let sent = teleop.wait_with_output().unwrap();
    assert!(launched.success(), "{log}");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );

    let drain = |inbox: &mut Inbox<Setpoint>| {
        let mut v = Vec::new();
        while let Some((h, sp)) = inbox.recv_timeout(Duration::ZERO).unwrap() {
            v.push((h, sp));
        }
        v
    };
    // The commands crossed from ROS 2, as sent.
    let commands = drain(&mut external);
    assert!(
        commands.len() >= 10,
        "{} commands on cmd/external\n{log}",
        commands.len()
    );
    for (_, c) in &commands {
        assert_eq!((c.forward, c.left, c.up, c.yaw_rate), (2.5, 0.0, 0.0, 0.0));
    }
    let mut depth = std::collections::HashMap::new();
    while let Some((h, d)) = scans.recv_timeout(Duration::ZERO).unwrap() {
        depth.insert((h.seq, h.stamp_ns), d.depth);
    }
    let avoid = AvoidConfig::default();
    let flown = drain(&mut setpoints);
    assert!(flown.len() >= 100, "{} setpoints\n{log}", flown.len());
    let (mut at_cruise, mut blocked) = (0, 0);
    for (h, sp) in &flown {
        // Never beyond the cruise speed, never sideways (none was asked).
        assert!(
            f64::from(sp.forward) <= avoid.cruise_speed + 1e-6 && sp.left == 0.0,
            "setpoint {}: {sp:?}",
            h.seq
        );
        at_cruise += usize::from((f64::from(sp.forward) - avoid.cruise_speed).abs() < 1e-6);
        let Some(scan) = depth.get(&(h.seq, h.stamp_ns)) else {
            continue;
        };
        let ahead = Ahead::of(scan);
        if f64::from(ahead.clearance(avoid.unknown_ahead)) <= avoid.avoid_distance {
            blocked += 1;
            assert!(
                sp.forward <= 0.0,
                "frame {}: forward {} with {ahead:?} ahead",
                h.seq,
                sp.forward
            );
        }
    }
    eprintln!(
        "{} setpoints, {at_cruise} at the cruise speed, {blocked} with something within the avoid distance ahead",
        flown.len()
    );
    assert!(
        at_cruise >= 10,
        "{at_cruise} frames flown at the cruise speed: the commands were not flown\n{log}"
    );
    assert!(
        blocked >= 1,
        "no frame had anything within the avoid distance ahead: the flight never tested the cut\n{log}"
    );
    let mut collisions = Vec::new();
    while let Some((_, e)) = events.recv_timeout(Duration::ZERO).unwrap() {
        if e.text.contains("collision") {
            collisions.push(e.text);
        }
    }
    assert!(collisions.is_empty(), "{collisions:?}\n{log}");
    // The policy said when it started flying the commands (on `events` and in
    // its log; the log, because the first frames' events may come before this
    // test's subscriber has joined the graph).
    assert!(
        log.contains("policy: external commands: flying them"),
        "{log}"
    );
    assert!(log.contains(", 0 collisions,"), "{log}");
}

/// The `ros2` node speaks rmw_zenoh: a ROS 2 peer on zenoh written without
/// this project's code (tests/scripts/ros2_peer.py: eclipse-zenoh, rosbags'
/// Jazzy type store) listens where rmw_zenoh's router would, while the twin
/// flies. Every sample the bridge sends is on `<domain>/<topic>/<dds type>/<RIHS01 hash>`
/// with the hash rosbags computes for the type, decodes as that type, and
/// carries a 33-byte attachment with increasing sequence numbers; the node and
/// each publisher and subscription are announced by `@ros2_lv` tokens in
/// rmw_zenoh's layout; a goal sent on `goal_pose` arrives on the bus.
#[test]
fn ros2_bridge_matches_rmw_zenoh_keys() {
    use bus::{Inbox, topics};
    let dir = temp_dir("ros2-bridge");
    let robot = format!("rb{}", std::process::id());
    let (bus_port, ros_port) = (port(17), port(18));
    let ros_ep = format!("tcp/127.0.0.1:{ros_port}");
    let domain = 7;
    // The ROS 2 side first (as rmw_zenohd would be): it listens until its
    // stdin closes (after the graph has stopped).
    let mut peer = ros2_script(
        "ros2_peer.py",
        &[&ros_ep, &domain.to_string(), "4.5", "-1.25", "2.0"],
        Some(&dir.join("peer.listening")),
    );
    let session = bus::open(&bus::BusConfig::connect_to(format!(
        "tcp/127.0.0.1:{bus_port}"
    )))
    .unwrap();
    let mut goals = Inbox::<bus::msg::Goal>::new(&session, &robot, topics::GOAL, 64).unwrap();
    let mut graph = twin_graph(&robot, bus_port, "8");
    graph.push_str(&ros2_process(&robot, bus_port, &ros_ep, domain, "goal"));
    std::fs::write(dir.join("twin.toml"), graph).unwrap();
    let (launched, log) = launch(&dir.join("twin.toml"));
    assert!(launched.success(), "{log}");
    let mut got_goals = Vec::new();
    while let Some((h, g)) = goals.recv_timeout(Duration::ZERO).unwrap() {
        got_goals.push((h.frame_id, g.position));
    }
    drop(peer.stdin.take());
    let out = peer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["errors"], serde_json::json!([]), "{r}\n{log}");
    let seen = r["topics"].as_object().unwrap();
    for (topic, ty) in [
        ("/camera/left/image_raw", "sensor_msgs/msg/Image"),
        ("/camera/right/image_raw", "sensor_msgs/msg/Image"),
        ("/camera/left/camera_info", "sensor_msgs/msg/CameraInfo"),
        ("/depth/stereo", "sensor_msgs/msg/Image"),
        ("/cmd/setpoint", "geometry_msgs/msg/TwistStamped"),
        ("/odom", "nav_msgs/msg/Odometry"),
        ("/tf", "tf2_msgs/msg/TFMessage"),
    ] {
        let t = seen
            .get(topic)
            .unwrap_or_else(|| panic!("no {topic} seen by the ROS 2 peer: {r}\n{log}"));
        assert_eq!(t["type"], ty, "{topic}");
        assert!(t["count"].as_u64().unwrap() >= 3, "{topic}: {t}");
    }
    // /tf_static is sent once, transient local: a subscription that joined
    // after odometry flowed (so after the one send) got it from the
    // publisher's cache, as tf2's static listener on rmw_zenoh would.
    let late = &r["tf_static_late"];
    assert!(
        late["count"].as_u64().is_some_and(|n| n >= 1),
        "the late /tf_static subscription got nothing: {r}\n{log}"
    );
    assert_eq!(
        late["children"],
        serde_json::json!(["camera_left_optical_frame", "camera_right_optical_frame"]),
        "{r}"
    );
    assert!(
        seen.get("/tf_static")
            .and_then(|t| t["count"].as_u64())
            .is_none_or(|n| n <= 1),
        "/tf_static is sent once: {r}"
    );
    let im = &r["images"][0];
    assert_eq!(
        im,
        &serde_json::json!([160, 120, "mono8", 160 * 120]),
        "{r}"
    );
    let odom = &r["odom"][0];
    assert_eq!(odom["frame"], serde_json::json!(["odom", "base_link"]));

    // Tokens: the node, a publisher per topic seen, the goal subscription.
    // Declared tokens (their removal at the end is seen too).
    let tokens: Vec<String> = r["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t[1].as_str().unwrap().contains("PUT"))
        .map(|t| t[0].as_str().unwrap().to_string())
        .collect();
    let parts: Vec<Vec<&str>> = tokens.iter().map(|t| t.split('/').collect()).collect();
    let node = parts
        .iter()
        .find(|p| p.len() == 9 && p[5] == "NN")
        .unwrap_or_else(|| panic!("no node token: {tokens:?}"));
    assert_eq!(
        (node[0], node[1], node[6], node[7], node[8]),
        ("@ros2_lv", "7", "%", "%", "onboard_agent"),
        "{tokens:?}"
    );
    let zid = node[2];
    for (kind, topic, dds) in [
        ("MP", "%odom", "nav_msgs::msg::dds_::Odometry_"),
        (
            "MP",
            "%camera%left%image_raw",
            "sensor_msgs::msg::dds_::Image_",
        ),
        ("MP", "%tf_static", "tf2_msgs::msg::dds_::TFMessage_"),
        ("MS", "%goal_pose", "geometry_msgs::msg::dds_::PoseStamped_"),
    ] {
        let p = parts
            .iter()
            .find(|p| p.len() == 13 && p[5] == kind && p[9] == topic)
            .unwrap_or_else(|| panic!("no {kind} token for {topic}: {tokens:?}"));
        assert_eq!(
            (p[2], p[3], p[8], p[10]),
            (zid, node[3], "onboard_agent", dds),
            "{p:?}"
        );
        assert!(
            p[11].starts_with("RIHS01_") && p[11].len() == 7 + 64,
            "{p:?}"
        );
        // Reliability:durability:history,depth:deadline:lifespan:liveliness.
        let qos: Vec<&str> = p[12].split(':').collect();
        assert_eq!(qos.len(), 6, "{p:?}");
        assert!(
            qos[2].split(',').count() == 2 && qos[5].split(',').count() == 3,
            "{p:?}"
        );
    }
    let ids: std::collections::BTreeSet<&str> = parts.iter().map(|p| p[4]).collect();
    assert_eq!(
        ids.len(),
        parts.len(),
        "entity ids are not unique: {tokens:?}"
    );

    // The ROS 2 goals in `odom`, on the bus; those in `base_link` (the peer
    // sends one of each in turn) never.
    assert!(
        got_goals.contains(&("ros2".to_string(), [4.5, -1.25, 2.0])),
        "no goal from ROS 2 on nav/goal: {got_goals:?}\n{log}"
    );
    assert!(
        got_goals.iter().all(|(_, p)| *p == [4.5, -1.25, 2.0]),
        "a goal in another frame than odom entered the graph: {got_goals:?}"
    );
}
