//! Shared helpers for the end-to-end tests: finding the workspace's binaries and
//! the tools the tests check outputs with.

use std::path::PathBuf;
use std::process::Command;

/// Path of a workspace binary built by the same `cargo test` run (the `sim` and
/// `agent` packages have integration tests, so cargo builds their binaries into
/// the profile folder next to this test executable's `deps/`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} not built; run the tests with `cargo test --release --workspace` so cargo builds every binary",
        bin.display()
    );
    bin
}

/// The `rerun` command-line tool (from `pip install rerun-sdk==0.36.3`, which
/// the README's test command installs), for verifying .rrd files.
pub fn rerun_cli() -> Command {
    let ok = Command::new("rerun")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the `rerun` CLI is missing: install it with `pip install rerun-sdk==0.36.3` (the README's test command does)"
    );
    Command::new("rerun")
}

/// A fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Run a command to completion, fail the test with its output if it failed,
/// and return its standard output.
pub fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command starts");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Send `signal` (e.g. "INT", "TERM") to a running child after `after`.
pub fn signal_after(child: &std::process::Child, signal: &str, after: std::time::Duration) {
    std::thread::sleep(after);
    let st = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -{signal} failed");
}
