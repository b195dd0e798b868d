//! Recording the bus to MCAP and playing it back, across processes: `agent
//! record` keeps every message that crossed (exact bytes, stamps, order) and
//! skips malformed ones; `agent replay` republishes them at the recorded rate
//! or as fast as possible; a damaged or missing file is reported by name.

use bus::msg::{Event, Setpoint, State, StereoPair};
use bus::{Inbox, Outbox, Topic};
use e2e_tests::{signal_after, temp_dir, workspace_bin};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn port(k: u16) -> u16 {
    e2e_tests::test_port(e2e_tests::PortSlice::Record, 7, k)
}

/// A bus session listening on `ep` (the recorder and tools connect to it).
fn listening(ep: &str) -> bus::Session {
    bus::open(&bus::BusConfig {
        listen: vec![ep.to_string()],
        ..bus::BusConfig::default()
    })
    .unwrap()
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// `agent record` of `topics` of `robot` on `ep` into `file`, once it has said
/// its start line (returned with the rest of its stdout to read).
fn start_recorder(
    robot: &str,
    ep: &str,
    topics: &str,
    file: &std::path::Path,
) -> (std::process::Child, String, Lines) {
    let mut recorder = Command::new(workspace_bin("agent"))
        .args(["record", "--robot", robot, "--connect", ep])
        .args(["--topics", topics, "--out"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(recorder.stdout.take().unwrap()).lines();
    // (tracing also writes to stdout: skip its lines)
    let first = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("recording "))
        .expect("the recorder's start line");
    (recorder, first, lines)
}

fn setpoint(i: usize) -> Setpoint {
    Setpoint {
        forward: i as f32 * 0.01,
        left: -0.5,
        up: 0.0,
        yaw_rate: 0.25,
    }
}

#[test]
fn record_then_replay_keeps_every_message_and_its_pace() {
    let dir = temp_dir("record");
    let file = dir.join("flight.mcap");
    let robot = format!("rec{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(0));
    let session = listening(&ep);
    let (mut recorder, first, lines) =
        start_recorder(&robot, &ep, "cmd/setpoint,camera/stereo,events", &file);
    assert!(first.starts_with("recording 3 topics"), "{first}");
    // Routes form within a moment of the subscriber's declaration.
    std::thread::sleep(Duration::from_millis(1500));

    let mut sp = Outbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT).unwrap();
    let mut pairs =
        Outbox::<StereoPair>::new(&session, &robot, bus::topics::CAMERA_STEREO).unwrap();
    let mut events = Outbox::<Event>::new(&session, &robot, bus::topics::EVENTS).unwrap();
    let t0 = Instant::now();
    for i in 0..100 {
        sp.send(1_000 + i as u64, "body", &setpoint(i)).unwrap();
        if i % 10 == 0 {
            let img: Vec<u8> = (0..32 * 24).map(|k| ((k + i) % 251) as u8).collect();
            let pair = StereoPair {
                width: 32,
                height: 24,
                left: img.clone(),
                right: img,
            };
            pairs.send(2_000 + i as u64, "camera", &pair).unwrap();
        }
        if i % 20 == 0 {
            events
                .send(
                    3_000,
                    "test",
                    &Event {
                        text: format!("event {i}"),
                    },
                )
                .unwrap();
        }
        if i == 50 {
            // Garbage on a recorded topic: skipped and counted, not fatal.
            sp.send_raw(b"not a bus message".to_vec()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent_over = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    signal_after(&recorder, "INT", Duration::ZERO);
    let status = recorder.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    let summary = rest
        .iter()
        .find(|l| l.starts_with("recorded "))
        .expect("summary line");
    assert!(
        summary.contains("recorded 115 messages") && summary.contains("1 malformed"),
        "{summary}"
    );

    // The file, read back with the MCAP reader: every message, exact bytes, in order.
    let msgs = bus::log::read(&file).unwrap();
    assert_eq!(msgs.len(), 115);
    let setpoints: Vec<_> = msgs.iter().filter(|m| m.0 == "cmd/setpoint").collect();
    assert_eq!(setpoints.len(), 100);
    for (i, m) in setpoints.iter().enumerate() {
        let (h, s) = bus::wire::decode::<Setpoint>(&m.2).unwrap();
        assert_eq!(
            (h.seq, h.stamp_ns, s),
            (i as u64, 1_000 + i as u64, setpoint(i))
        );
    }
    let span = Duration::from_nanos(setpoints[99].1 - setpoints[0].1);
    assert!(
        span > sent_over / 2,
        "log times span {span:?}, sent over {sent_over:?}"
    );

    // Replay at the recorded rate to another robot name; a subscriber sees it all.
    let ep2 = format!("tcp/127.0.0.1:{}", port(1));
    let robot2 = format!("{robot}-replay");
    let session2 = listening(&ep2);
    let mut got_sp =
        Inbox::<Setpoint>::new(&session2, &robot2, bus::topics::CMD_SETPOINT, 1000).unwrap();
    let mut got_pairs =
        Inbox::<StereoPair>::new(&session2, &robot2, bus::topics::CAMERA_STEREO, 100).unwrap();
    let replay = |extra: &[&str]| {
        Command::new(workspace_bin("agent"))
            .arg("replay")
            .arg(&file)
            .args(["--robot", &robot2, "--connect", &ep2, "--wait", "1.5"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let finish = |child: std::process::Child| {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    // Receive while it plays, to see the pace.
    let child = replay(&[]);
    let mut first_last = (None, None);
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while n < 100 && Instant::now() < deadline {
        if let Some((h, s)) = got_sp.recv_timeout(Duration::from_millis(100)).unwrap() {
            assert_eq!(
                (h.seq, s),
                (n, setpoint(n as usize)),
                "out of order or altered"
            );
            let now = Instant::now();
            first_last.0.get_or_insert(now);
            first_last.1 = Some(now);
            n += 1;
        }
    }
    let out = finish(child);
    assert!(out.contains("replayed 115 messages"), "{out}");
    assert_eq!(n, 100);
    let played = first_last.1.unwrap() - first_last.0.unwrap();
    assert!(
        played > span.mul_f64(0.8),
        "played over {played:?}, recorded over {span:?}"
    );
    let mut pairs_n = 0;
    while let Some((_, p)) = got_pairs.recv_timeout(Duration::from_millis(100)).unwrap() {
        assert_eq!((p.width, p.height), (32, 24));
        pairs_n += 1;
    }
    assert_eq!(pairs_n, 10);

    // As fast as possible, only the setpoints.
    let out = finish(replay(&["--fast", "--topics", "cmd/setpoint"]));
    assert!(out.contains("replayed 100 messages"), "{out}");
    let mut n = 0;
    while got_sp
        .recv_timeout(Duration::from_millis(500))
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    assert_eq!(n, 100);
    assert_eq!(got_sp.stats().malformed, 0);
}

#[test]
fn damaged_and_missing_recordings_are_named() {
    let dir = temp_dir("record-bad");
    let file = dir.join("short.mcap");
    // A real recording, cut in half.
    let mut rec = bus::log::Recorder::create(&file, "r", &[Topic::CmdSetpoint]).unwrap();
    let mut w = bus::wire::Header {
        seq: 0,
        stamp_ns: 0,
        frame_id: "x".into(),
    };
    for i in 0..2000 {
        w.seq = i;
        rec.write(
            Topic::CmdSetpoint,
            &bus::wire::encode(&w, &setpoint(i as usize)),
            i * 1000,
        )
        .unwrap();
    }
    let stats = rec.finish().unwrap();
    assert_eq!(stats.messages(), 2000);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    for f in [file.clone(), dir.join("missing.mcap")] {
        let out = Command::new(workspace_bin("agent"))
            .arg("replay")
            .arg(&f)
            .args(["--fast", "--wait", "0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{} replayed without complaint",
            f.display()
        );
        assert!(stderr.contains(&f.display().to_string()), "{stderr}");
    }
    let bad_topic = Command::new(workspace_bin("agent"))
        .args(["record", "--topics", "camera/left", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(!bad_topic.status.success());
    assert!(String::from_utf8_lossy(&bad_topic.stderr).contains("unknown topic `camera/left`"));
}

/// The missing-message counts per topic from `agent record`'s summary line
/// `missing N messages in G gaps: {"topic": n, ...}; R sequence restarts`.
fn reported_missing(lines: &[String]) -> std::collections::BTreeMap<String, u64> {
    let Some(line) = lines.iter().find(|l| l.starts_with("missing ")) else {
        return Default::default();
    };
    let map = line
        .split_once('{')
        .and_then(|(_, r)| r.split_once('}'))
        .map(|(m, _)| m)
        .unwrap_or_default();
    map.split(", ")
        .filter_map(|kv| {
            let (k, v) = kv.split_once(": ")?;
            Some((k.trim_matches('"').to_string(), v.parse().ok()?))
        })
        .collect()
}

/// With a slow subscriber attached to the same publisher and sequence numbers
/// skipped on purpose, the recorder either has every sequence number of each
/// publisher or reports each missing one: its count per topic equals what the
/// file lacks between each publisher's first and last message, and the skipped
/// ones are among them (so a recorder that saw no gap fails here).
#[test]
fn recorder_counts_and_reports_gaps() {
    let dir = temp_dir("record-gaps");
    let file = dir.join("gaps.mcap");
    let robot = format!("gap{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(2));
    let session = listening(&ep);
    // A slow subscriber of the images in a session of its own: 20 ms per pair.
    let slow = bus::open(&bus::BusConfig::connect_to(ep.clone())).unwrap();
    let _slow_sub = {
        use zenoh::Wait;
        slow.declare_subscriber(Topic::CameraStereo.key(&robot))
            .callback(|_| std::thread::sleep(Duration::from_millis(20)))
            .wait()
            .unwrap()
    };
    let (mut recorder, _, lines) = start_recorder(
        &robot,
        &ep,
        "camera/stereo,state,cmd/setpoint,events",
        &file,
    );
    std::thread::sleep(Duration::from_millis(1500));

    let pairs = Outbox::<StereoPair>::new(&session, &robot, bus::topics::CAMERA_STEREO).unwrap();
    let states = Outbox::<State>::new(&session, &robot, bus::topics::STATE).unwrap();
    // Setpoints carry the camera's numbers: a skipped one is no loss.
    let sp = Outbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT).unwrap();
    let skipped_pairs: Vec<u64> = (100..110).chain([200]).collect();
    let skipped_states: Vec<u64> = (150..155).collect();
    let still = State {
        position: [0.0; 3],
        attitude: [1.0, 0.0, 0.0, 0.0],
        velocity: [0.0; 3],
    };
    let (w, h) = (320u32, 240u32);
    let img: Vec<u8> = (0..w * h).map(|k| (k % 251) as u8).collect();
    let pair = StereoPair {
        width: w,
        height: h,
        left: img.clone(),
        right: img,
    };
    let header = |seq: u64, frame: &str| bus::wire::Header {
        seq,
        stamp_ns: 1_000 + seq,
        frame_id: frame.to_string(),
    };
    for seq in 0..300u64 {
        // The last message of each publisher after a pause, so that a loss
        // just before it is between two messages that arrived.
        if seq == 299 {
            std::thread::sleep(Duration::from_millis(500));
        }
        if !skipped_pairs.contains(&seq) {
            pairs.send_with(&header(seq, "camera"), &pair).unwrap();
            sp.send_with(&header(seq, "policy"), &setpoint(seq as usize))
                .unwrap();
        }
        if !skipped_states.contains(&seq) {
            states.send_with(&header(seq, "world"), &still).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    signal_after(&recorder, "INT", Duration::ZERO);
    let status = recorder.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    eprintln!("{}", rest.join("\n"));

    // What the file lacks, per topic, between each publisher's first and last.
    let msgs = bus::log::read(&file).unwrap();
    let mut present: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    let mut record_events = 0;
    for (topic, _, bytes) in &msgs {
        let (_, h, _) = bus::wire::decode_header(bytes).unwrap();
        if topic == "events" {
            let (_, e) = bus::wire::decode::<Event>(bytes).unwrap();
            record_events += usize::from(e.text.starts_with("record: "));
            continue;
        }
        present.entry(topic.clone()).or_default().push(h.seq);
    }
    let reported = reported_missing(&rest);
    assert_eq!(
        reported.get("cmd/setpoint"),
        None,
        "setpoints carry the camera's numbers: no gap is theirs"
    );
    for (topic, skipped) in [
        ("camera/stereo", &skipped_pairs),
        ("state", &skipped_states),
    ] {
        let mut seqs = present.remove(topic).unwrap_or_default();
        seqs.sort_unstable();
        seqs.dedup();
        let (first, last) = (seqs[0], *seqs.last().unwrap());
        let lacking: Vec<u64> = (first..=last)
            .filter(|s| seqs.binary_search(s).is_err())
            .collect();
        eprintln!(
            "{topic}: {} of 300 recorded, {} lacking between {first} and {last}",
            seqs.len(),
            lacking.len()
        );
        assert!(
            skipped.iter().all(|s| lacking.contains(s)),
            "{topic}: a skipped sequence number is in the file"
        );
        assert_eq!(
            reported.get(topic).copied().unwrap_or(0),
            lacking.len() as u64,
            "{topic}: the recorder's count of missing messages; {rest:?}"
        );
    }
    // The skipped states are named in a gap (alone, or inside a longer one
    // when the messages around them were lost too).
    let named = rest.iter().any(|l| {
        l.strip_prefix("  gap: state (world): missing seq ")
            .and_then(|r| r.split_once(' '))
            .and_then(|(range, _)| range.split_once("..="))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .is_some_and(|(a, b)| a <= 150 && b >= 154)
    });
    assert!(named, "the states' gap is named: {rest:?}");
    assert!(record_events >= 1, "no gap was said on events");

    // `agent info` finds the same counts and gaps in the file.
    let out = Command::new(workspace_bin("agent"))
        .arg("info")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    eprintln!("{text}");
    for (topic, missing) in &reported {
        let recorded = msgs.iter().filter(|m| &m.0 == topic).count();
        // The channel the topic's messages are counted on (a pair's left image).
        let row = text
            .lines()
            .find(|l| l.split_whitespace().last() == Some(topic.as_str()))
            .unwrap_or_else(|| panic!("no {topic} row: {text}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[3], recorded.to_string(), "{topic} count: {row}");
        assert_eq!(cols[5], missing.to_string(), "{topic} missing: {row}");
    }
}

/// `agent topic list|echo|hz` on a live graph (this process publishes setpoints
/// and holds a node's liveliness token): the list names the topic, its type and
/// the node; echo decodes the messages; hz reports a rate and no missing ones.
#[test]
fn topic_tools_list_echo_and_time_the_live_graph() {
    let robot = format!("top{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(3));
    let session = listening(&ep);
    let _token = bus::announce(&session, &robot, "policy").unwrap();
    let run = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let publisher = {
        let (run, robot) = (run.clone(), robot.clone());
        std::thread::spawn(move || {
            let mut sp =
                Outbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT).unwrap();
            let mut i = 0;
            while run.load(std::sync::atomic::Ordering::Relaxed) {
                sp.send(5_000 + i as u64, "policy", &setpoint(i)).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let agent = |args: &[&str]| {
        let out = Command::new(workspace_bin("agent"))
            .args(args)
            .args(["--robot", &robot, "--connect", &ep])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let list = agent(&["topic", "list", "--seconds", "3"]);
    let row = list
        .lines()
        .find(|l| l.trim_start().starts_with("cmd/setpoint"))
        .unwrap_or_else(|| panic!("no cmd/setpoint in: {list}"));
    assert!(row.contains("Setpoint"), "{row}");
    assert!(list.contains("nodes up: policy"), "{list}");
    let echo = agent(&["topic", "echo", "cmd/setpoint", "--count", "3"]);
    let lines: Vec<&str> = echo.lines().filter(|l| l.starts_with("seq ")).collect();
    assert_eq!(lines.len(), 3, "{echo}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("frame \"policy\"") && l.contains("left: -0.5")),
        "{echo}"
    );
    let hz = agent(&["topic", "hz", "cmd/setpoint", "--seconds", "3"]);
    let rates: Vec<f64> = hz
        .lines()
        .filter_map(|l| l.strip_prefix("cmd/setpoint: "))
        .filter_map(|l| l.split(" Hz").next()?.parse().ok())
        .collect();
    assert!(rates.iter().any(|&r| r > 0.0), "no rate: {hz}");
    // A topic that does not exist is named.
    let out = Command::new(workspace_bin("agent"))
        .args([
            "topic",
            "echo",
            "cmd/nothing",
            "--robot",
            &robot,
            "--connect",
            &ep,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown topic `cmd/nothing`"),
        "{err}"
    );
    run.store(false, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
}

/// A recording with a ten-minute gap: `agent replay` plays the message before
/// it, and SIGINT during the gap stops it at once (not after the gap).
#[test]
fn replay_stops_on_a_signal_during_a_long_gap() {
    let dir = temp_dir("replay-gap");
    let file = dir.join("gap.mcap");
    let robot = format!("gap{}", std::process::id());
    let mut rec = bus::log::Recorder::create(&file, &robot, &[Topic::Events]).unwrap();
    let h = |seq: u64| bus::wire::Header {
        seq,
        stamp_ns: seq,
        frame_id: "test".into(),
    };
    for (seq, at_s) in [(0u64, 1u64), (1, 601)] {
        let bytes = bus::wire::encode(
            &h(seq),
            &Event {
                text: format!("m{seq}"),
            },
        );
        rec.write(Topic::Events, &bytes, at_s * 1_000_000_000)
            .unwrap();
    }
    rec.finish().unwrap();
    let ep = format!("tcp/127.0.0.1:{}", port(4));
    let session = listening(&ep);
    let mut events = Inbox::<Event>::new(&session, &robot, bus::topics::EVENTS, 8).unwrap();
    let mut replay = Command::new(workspace_bin("agent"))
        .arg("replay")
        .arg(&file)
        .args(["--robot", &robot, "--connect", &ep])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some((_, e)) = events.recv_timeout(Duration::from_millis(100)).unwrap() {
            assert_eq!(e.text, "m0");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the first message never came"
        );
    }
    signal_after(&replay, "INT", Duration::ZERO);
    let stopped = Instant::now();
    // Liveness: far less than the 600 s gap.
    while replay.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(60) {
            let _ = replay.kill();
            panic!("replay still waiting out the gap 60 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        events.recv_timeout(Duration::ZERO).unwrap().is_none(),
        "the message after the gap was played"
    );
}

/// `agent replay --lockstep cmd/setpoint`: each camera frame waits for the
/// graph's answer to the one before (same sequence number and stamp), so the
/// graph never sees frame k+1 before it has answered frame k; a frame left
/// unanswered holds the replay for the timeout only, and is counted.
#[test]
fn lockstep_replay_waits_for_each_answer() {
    let dir = temp_dir("replay-lockstep");
    let file = dir.join("frames.mcap");
    let robot = format!("lock{}", std::process::id());
    let mut rec = bus::log::Recorder::create(&file, &robot, &[Topic::CameraStereo]).unwrap();
    const FRAMES: u64 = 6;
    const SKIPPED: u64 = 3;
    for seq in 0..FRAMES {
        let h = bus::wire::Header {
            seq,
            stamp_ns: 1_000 + seq,
            frame_id: "camera".into(),
        };
        let pair = StereoPair {
            width: 2,
            height: 1,
            left: vec![seq as u8; 2],
            right: vec![0; 2],
        };
        // All at one instant: without lockstep, --fast plays them at once.
        rec.write(Topic::CameraStereo, &bus::wire::encode(&h, &pair), 5)
            .unwrap();
    }
    rec.finish().unwrap();
    let ep = format!("tcp/127.0.0.1:{}", port(5));
    let session = listening(&ep);
    let mut frames =
        Inbox::<StereoPair>::new(&session, &robot, bus::topics::CAMERA_STEREO, 64).unwrap();
    let answers = Outbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT).unwrap();
    let replay = Command::new(workspace_bin("agent"))
        .arg("replay")
        .arg(&file)
        .args(["--robot", &robot, "--connect", &ep, "--fast", "--wait", "2"])
        .args(["--lockstep", "cmd/setpoint", "--lockstep-timeout", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for want in 0..FRAMES {
        let (h, pair) = frames
            .recv_timeout(Duration::from_secs(60))
            .unwrap()
            .unwrap_or_else(|| panic!("frame {want} never came"));
        assert_eq!(
            (h.seq, h.stamp_ns, pair.left[0]),
            (want, 1_000 + want, want as u8)
        );
        // Nothing further is played until this frame is answered.
        if let Some((early, _)) = frames.recv_timeout(Duration::from_millis(300)).unwrap() {
            panic!(
                "frame {} played before frame {want} was answered",
                early.seq
            );
        }
        if want != SKIPPED {
            answers.send_with(&h, &setpoint(want as usize)).unwrap();
        }
    }
    let out = replay.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("replayed 6 messages"), "{stdout}");
    assert!(
        stdout.contains("lockstep: 6 camera/stereo frames played, 1 not answered in time"),
        "{stdout}"
    );
    // A frame topic that is not played is refused by name.
    let bad = Command::new(workspace_bin("agent"))
        .arg("replay")
        .arg(&file)
        .args([
            "--topics",
            "state",
            "--lockstep",
            "cmd/setpoint",
            "--wait",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--lockstep-frames camera/stereo"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `agent record --split-minutes`: a recording goes on in new files
/// (`NAME-part2.mcap`, ...), every message is in one of them, and the summary
/// names them all.
#[test]
fn recordings_split_into_parts_that_keep_every_message() {
    let dir = temp_dir("record-split");
    let file = dir.join("long.mcap");
    let robot = format!("split{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(6));
    let session = listening(&ep);
    let recorder = Command::new(workspace_bin("agent"))
        .args(["record", "--robot", &robot, "--connect", &ep])
        .args([
            "--topics",
            "cmd/setpoint",
            "--split-minutes",
            "0.01",
            "--out",
        ])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut sp = Outbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT).unwrap();
    // 2 s of setpoints over parts of 0.6 s each.
    for i in 0..200 {
        sp.send(i as u64, "policy", &setpoint(i)).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    signal_after(&recorder, "INT", Duration::ZERO);
    let out = recorder.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let mut parts = vec![file.clone()];
    for k in 2.. {
        let p = dir.join(format!("long-part{k}.mcap"));
        if !p.exists() {
            break;
        }
        parts.push(p);
    }
    assert!(parts.len() >= 3, "{} parts: {stdout}", parts.len());
    let summary = stdout.lines().find(|l| l.starts_with("recorded ")).unwrap();
    for p in &parts {
        assert!(summary.contains(&p.display().to_string()), "{summary}");
    }
    let mut seqs = Vec::new();
    for p in &parts {
        for (_, _, b) in bus::log::read(p).unwrap() {
            seqs.push(bus::wire::decode::<Setpoint>(&b).unwrap().0.seq);
        }
    }
    // Only what was sent before the recorder's routes formed may be missing.
    let first = seqs.first().copied().unwrap_or(0);
    assert_eq!(seqs, (first..200).collect::<Vec<_>>(), "parts: {parts:?}");
    assert!(first < 20, "the first {first} setpoints were not recorded");
}
