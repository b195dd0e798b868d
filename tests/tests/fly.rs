//! The README's main job end to end: `agent fly` flies in the twin, learns, writes
//! an .rrd that rerun's own tool verifies, saves a checkpoint that loads back,
//! and on Ctrl-C stops cleanly keeping what it recorded.

use e2e_tests::{rerun_cli, signal_after, succeed, temp_dir, workspace_bin};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn verify_rrd(path: &std::path::Path, entities: &[&str]) {
    let v = rerun_cli()
        .args(["rrd", "verify"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "rerun rrd verify failed: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    let p = rerun_cli()
        .args(["rrd", "print"])
        .arg(path)
        .output()
        .unwrap();
    assert!(p.status.success());
    let text = String::from_utf8_lossy(&p.stdout);
    for e in entities {
        assert!(
            text.contains(e),
            "entity {e} missing from {}",
            path.display()
        );
    }
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
    std::fs::remove_dir_all(&dir).ok();
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
    std::fs::remove_dir_all(&dir).ok();
}
