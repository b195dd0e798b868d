//! The link's command-line tools as built: `fc-bench` measures a real link
//! (the host firmware on a pty) and `fc-host` serves one and refuses a path it
//! cannot use. (Also makes `cargo test` build both binaries, which the
//! workspace's end-to-end tests start.)

use std::process::Command;

#[test]
fn fc_bench_measures_setpoint_to_ack_latency_on_a_pty() {
    let out = Command::new(env!("CARGO_BIN_EXE_fc-bench"))
        .args(["--count", "200", "--rate", "200"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("setpoint -> ack latency over 200 setpoints"))
        .unwrap_or_else(|| panic!("no latency line in {stdout}"));
    assert!(
        line.contains("p99") && line.ends_with("unacknowledged 0"),
        "{line}"
    );
    assert!(stdout.contains("0 CRC errors"), "{stdout}");
}

#[test]
fn fc_host_names_a_link_path_it_cannot_create() {
    let out = Command::new(env!("CARGO_BIN_EXE_fc-host"))
        .args(["--link", "/nonexistent-dir/fc.tty"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-dir/fc.tty"));
}

#[test]
fn fc_bench_refuses_nonsense_and_a_missing_image() {
    let bad = Command::new(env!("CARGO_BIN_EXE_fc-bench"))
        .args(["--rate", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let missing = Command::new(env!("CARGO_BIN_EXE_fc-bench"))
        .args(["--qemu", "/nonexistent/fc-mcu"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/fc-mcu"));
}
