//! Shared helpers for the end-to-end tests: finding the workspace's binaries and
//! the tools the tests check outputs with.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which slice of loopback ports a test module draws from (see [`test_port`]).
#[derive(Debug, Clone, Copy)]
pub enum PortSlice {
    Graph = 0,
    Record,
    Selfi,
    Train,
    Mavlink,
    Fly,
    FcLink,
    Camera,
    Security,
    Actors,
}

/// Loopback TCP port `k` of a block of `block` ports that this test process
/// owns in `slice`'s share of 10000–29999. That is below Linux's ephemeral
/// range (32768–60999), where zenoh's own `:0` listeners and every outgoing
/// connection get their ports, so a node under test never finds its port taken
/// by one of them; the process id keeps concurrent runs of the tests apart.
pub fn test_port(slice: PortSlice, block: u16, k: u16) -> u16 {
    assert!(k < block && block <= 100, "port {k} of a block of {block}");
    let slots = 2000 / block;
    let slot = (std::process::id() % u32::from(slots)) as u16;
    10_000 + slice as u16 * 2000 + slot * block + k
}

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
    require_tool(
        "rerun",
        "install it with `pip install rerun-sdk==0.36.3` (the README's test command does)",
    );
    Command::new("rerun")
}

/// Checks a recording with rerun's own tool (`rerun rrd verify`, failing the
/// test with its message) and returns what `rerun rrd print` says of it.
pub fn verified_rrd(path: &std::path::Path) -> String {
    let v = rerun_cli().args(["rrd", "verify"]).arg(path).output();
    let v = v.unwrap_or_else(|e| panic!("rerun rrd verify {}: {e}", path.display()));
    assert!(
        v.status.success(),
        "rerun rrd verify {}: {}",
        path.display(),
        String::from_utf8_lossy(&v.stderr)
    );
    succeed(rerun_cli().args(["rrd", "print"]).arg(path))
}

/// What a finished command printed: its stdout, then its stderr.
pub fn said(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// `agent sweep collect SWEPT` after task `task`'s folder was removed: it must
/// fail and name the task with `why` (e.g. "never flown"); returns what it said.
pub fn collect_names_lost_task(swept: &Path, task: usize, why: &str) -> String {
    let o = Command::new(workspace_bin("agent"))
        .args(["sweep", "collect"])
        .arg(swept)
        .output()
        .unwrap_or_else(|e| panic!("agent sweep collect: {e}"));
    let text = said(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains(&format!("task {task}: ")) && text.contains(why),
        "{text}"
    );
    text
}

/// Fails the test, saying how to install it, if `program --version` does not run.
fn require_tool(program: &str, install: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "`{program}` is missing: {install}");
}

/// A fresh temporary folder for one test, removed when the test passes and
/// kept (its path printed) when it fails, for a look at what was written.
pub fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    TempDir(d)
}

/// A test's temporary folder (see [`temp_dir`]); derefs to its path.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: its files are kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
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

/// The unsigned integers of a summary line, in order (`"3 frames, 0 lost"` → `[3, 0]`).
pub fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Write a launch file `name` into `dir` and run `agent launch` on it to the end.
pub fn launch(dir: &std::path::Path, name: &str, text: &str) -> std::process::Output {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write the launch file");
    Command::new(workspace_bin("agent"))
        .arg("launch")
        .arg(&file)
        .output()
        .expect("agent launch starts")
}

/// Child processes killed (SIGKILL) and reaped when dropped: a test that fails
/// half-way leaves none running.
pub struct KillOnDrop(pub Vec<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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

/// Stop a server started through a launcher script (the `rerun` command is a
/// Python wrapper around the real binary): SIGINT, then, if it has not exited
/// within `grace`, SIGTERM to its children and to it, then SIGKILL. Seen once:
/// the rerun server kept running after SIGINT with every client gone.
pub fn stop_server(child: &mut std::process::Child, grace: std::time::Duration) {
    let exited = |c: &mut std::process::Child, within: std::time::Duration| {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    if exited(child, grace) {
        return;
    }
    let _ = Command::new("pkill").args(["-TERM", "-P", &pid]).status();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    if exited(child, grace) {
        return;
    }
    let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// The setpoint watchdog of the firmware the QEMU tests boot (ms): 1 s, not
/// the flight default of 200 ms. QEMU's clocks count host time, and a test
/// whose setpoint stream or QEMU itself is held up for a fifth of a second by
/// a loaded host would see a failsafe the firmware rightly commands; a second
/// of such starvation does not happen. The failsafe's timing is checked on
/// the firmware's own clock against this value.
pub const QEMU_SETPOINT_WATCHDOG_MS: u32 = 1000;

/// The flight-controller firmware for the Cortex-M4F (`firmware/mcu`), built
/// once per test binary with its own target directory inside ours, with the
/// setpoint watchdog of [`QEMU_SETPOINT_WATCHDOG_MS`].
pub fn firmware_image() -> PathBuf {
    static IMAGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| build_firmware(&[], None)).clone()
}

/// The policy shipped with the firmware (`firmware/policies/`), trained by
/// `agent learn-to-fly`.
pub fn shipped_policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../firmware/policies/crazyflie-hover.txt")
}

/// The firmware with [`shipped_policy`] compiled in (`FC_POLICY`): the
/// learned controller flies the rigid-body quadrotor model.
pub fn firmware_image_learned() -> PathBuf {
    static IMAGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| build_firmware(&[], Some(&shipped_policy())))
        .clone()
}

/// The same firmware with its test hooks (`--features test-hooks`): bytes on
/// the UART that hang its main loop or make it panic. Never flown.
pub fn firmware_image_with_hooks() -> PathBuf {
    static IMAGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| build_firmware(&["test-hooks"], None))
        .clone()
}

fn build_firmware(features: &[&str], policy: Option<&Path>) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test executable lives in <target>/<profile>/deps")
        .join(match (features.is_empty(), policy) {
            (_, Some(_)) => "firmware-mcu-learned".to_string(),
            (true, None) => "firmware-mcu".to_string(),
            (false, None) => format!("firmware-mcu-{}", features.join("-")),
        });
    let mcu = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../firmware/mcu");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"])
        .env("FC_WATCHDOG_MS", QEMU_SETPOINT_WATCHDOG_MS.to_string());
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    match policy {
        Some(p) => cmd.env("FC_POLICY", p),
        None => cmd.env_remove("FC_POLICY"),
    };
    let out = cmd
        .current_dir(&mcu)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the firmware failed (is the target installed? `rustup target add thumbv7em-none-eabihf`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("thumbv7em-none-eabihf/release/fc-mcu")
}

/// Fails the test with the install command if `qemu-system-arm` is missing.
pub fn require_qemu() {
    require_tool(
        "qemu-system-arm",
        "`apt-get install -y qemu-system-arm` (tests/prepare.sh, run by the README's test command, does)",
    );
}

/// Starts `fc-host` (the flight-controller firmware on a pty) with its device
/// at `tty`, and waits until the device exists. Its stdout (state changes) is piped.
pub fn fc_host(tty: &std::path::Path) -> std::process::Child {
    fc_host_with(tty, &[])
}

/// [`fc_host`] with more of its options (e.g. `--watchdog-ms 2000`, for a test
/// whose setpoint stream a loaded host may stall).
pub fn fc_host_with(tty: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let child = Command::new(workspace_bin("fc-host"))
        .arg("--link")
        .arg(tty)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fc-host starts");
    let t0 = std::time::Instant::now();
    while !tty.exists() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "fc-host made no device at {}",
            tty.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

#[cfg(test)]
mod tests {
    use super::temp_dir;

    #[test]
    fn a_passing_test_leaves_no_folder_and_a_failing_one_keeps_its_files() {
        let d = temp_dir("helper-fails");
        std::fs::write(d.join("log.txt"), "evidence").unwrap();
        let kept = d.to_path_buf();
        // The guard is dropped while the panic unwinds, as in a failing test.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _owned = d;
            panic!("a failing test");
        }));
        assert_eq!(
            std::fs::read_to_string(kept.join("log.txt")).unwrap(),
            "evidence"
        );
        std::fs::remove_dir_all(&kept).unwrap();

        let d = temp_dir("helper-passes");
        std::fs::write(d.join("log.txt"), "x").unwrap();
        let path = d.to_path_buf();
        drop(d);
        assert!(!path.exists());
    }
}
