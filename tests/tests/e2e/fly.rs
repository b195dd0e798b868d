//! The README's main job end to end: `agent fly` flies in the twin, learns, writes
//! an .rrd that rerun's own tool verifies, saves a checkpoint that loads back,
//! and on Ctrl-C stops cleanly keeping what it recorded.

use e2e_tests::{
    rerun_cli, signal_after, stop_server, succeed, temp_dir, verified_rrd, workspace_bin,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn verify_rrd(path: &std::path::Path, entities: &[&str]) {
    let text = verified_rrd(path);
    for e in entities {
        assert!(
            text.contains(e),
            "entity {e} missing from {}",
            path.display()
        );
    }
    // The default layout travels with the recording: a viewport and its views
    // (world, camera, stereo and mono depth, plots, events).
    assert!(
        text.contains("ViewportBlueprint:root_container"),
        "no default blueprint in {}",
        path.display()
    );
    assert!(text.matches("ViewBlueprint:class_identifier").count() >= 6);
}

#[test]
fn short_flight_learns_and_records_telemetry_and_a_checkpoint() {
    let dir = temp_dir("fly");
    let rrd = dir.join("fly.rrd");
    let ckpt = dir.join("mono.bpk");
    let stdout = succeed(
        Command::new(workspace_bin("agent"))
            .args(["fly", "--seconds", "12", "--speed", "0", "--rerun-save"])
            .arg(&rrd)
            .arg("--checkpoint")
            .arg(&ckpt),
    );
    assert!(stdout.contains("flew 12.0 s simulated"), "{stdout}");
    let steps: u64 = stdout
        .split("learned online: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no training-step count in: {stdout}"));
    assert!(steps > 0, "the learner never trained: {stdout}");
    verify_rrd(
        &rrd,
        &[
            "/world/robot",
            "/world/robot/camera/image",
            "/world/robot/camera/depth/stereo",
            "/world/robot/camera/depth/mono",
            "/world/robot/camera/depth/truth",
            "/world/obstacles",
            "/plots/learner/loss",
            "/plots/mono/error_log",
            "/plots/persist/mono",
        ],
    );
    let shape = agent::mono::MonoShape::default();
    let device = agent::device::device(agent::device::Backend::Cpu).unwrap();
    let net = agent::mono::load_checkpoint(&ckpt, &shape, &device).unwrap();
    let est = agent::mono::infer(
        &net,
        &vec![0.0; shape.width * shape.height],
        &shape,
        &device,
    )
    .unwrap();
    assert_eq!(est.scan.len(), shape.columns);
}

#[test]
fn ctrl_c_stops_the_flight_and_keeps_the_recording() {
    let dir = temp_dir("sigint");
    let rrd = dir.join("fly.rrd");
    let mut child = Command::new(workspace_bin("agent"))
        .args(["fly", "--seconds", "3600", "--speed", "1", "--rerun-save"])
        .arg(&rrd)
        .arg("--checkpoint")
        .arg(dir.join("mono.bpk"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    signal_after(&child, "INT", Duration::from_secs(4));
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "agent did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped early"), "{stdout}");
    verify_rrd(&rrd, &["/world/robot", "/plots/flight/speed"]);
    assert!(dir.join("mono.bpk").is_file());
}

/// `--rerun connect`: the flight streams its telemetry over gRPC to a running
/// rerun server (here the CLI's headless receiver saving what arrives).
#[test]
fn telemetry_streams_to_a_running_rerun_server() {
    use std::io::{BufRead, BufReader};
    let dir = temp_dir("rerun-connect");
    let received = dir.join("received.rrd");
    let port = e2e_tests::test_port(e2e_tests::PortSlice::Fly, 1, 0);
    let mut server = rerun_cli()
        .args(["--port", &port.to_string(), "--save"])
        .arg(&received)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Listening for gRPC") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the rerun server did not start");
    let out = succeed(
        Command::new(workspace_bin("agent"))
            .args(["fly", "--seconds", "3", "--rerun", "connect", "--rerun-url"])
            .arg(format!("rerun+http://127.0.0.1:{port}/proxy"))
            .arg("--checkpoint")
            .arg(dir.join("mono.bpk")),
    );
    assert!(
        out.contains("telemetry: streamed to rerun+http://127.0.0.1"),
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(1));
    stop_server(&mut server, Duration::from_secs(10));
    let printed = succeed(rerun_cli().args(["rrd", "print"]).arg(&received));
    for entity in [
        "world/robot",
        "world/robot/camera/depth/stereo",
        "world/obstacles",
    ] {
        assert!(
            printed.contains(entity),
            "{entity} did not reach the server"
        );
    }
}

/// Numeric options are checked when the command line is read: NaN, infinite,
/// absurdly large or zero values are refused by name (clap's usage error,
/// exit code 2) before anything runs — none of these starts a flight, a
/// replay, a node or a benchmark.
#[test]
fn numeric_options_are_refused_before_anything_runs() {
    let dir = temp_dir("bad-numbers");
    for (args, option, value) in [
        (
            vec!["fly", "--no-rerun", "--seconds", "1e300"],
            "--seconds",
            "1e300",
        ),
        (
            vec!["fly", "--no-rerun", "--speed", "NaN"],
            "--speed",
            "NaN",
        ),
        (
            vec!["replay", "missing.mcap", "--wait", "NaN"],
            "--wait",
            "NaN",
        ),
        (vec!["replay", "missing.mcap", "--rate", "0"], "--rate", "0"),
        (
            vec!["node", "learner", "--save-every", "inf"],
            "--save-every",
            "inf",
        ),
        (vec!["budget", "--width", "0"], "--width", "0"),
        (vec!["arm", "--wait=-1"], "--wait", "-1"),
        (vec!["record", "--seconds=-inf"], "--seconds", "-inf"),
    ] {
        let out = std::process::Command::new(workspace_bin("agent"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{option}")),
            "{args:?}: {err}"
        );
    }
    // Nothing ran: no recording, telemetry or checkpoint was written.
    assert!(
        !dir.join("out").exists(),
        "{:?}",
        std::fs::read_dir(dir.join("out")).map(|d| d.count())
    );
}
