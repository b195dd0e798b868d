//! The agent cross-built for aarch64 (Jetson-class boards) runs its self-test
//! under qemu-aarch64: it loads a rig file, runs stereo on the bundled pair and
//! one mono inference, and prints the figures. `tests/prepare.sh` (the README's
//! test command) builds it in the `cross-check` profile (release at opt-level 0,
//! to spare CI's time; boards get `--release`).

use std::process::Command;

#[test]
fn the_aarch64_agent_passes_its_self_test_under_qemu() {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<test>");
    let bin = target.join("aarch64-unknown-linux-gnu/cross-check/agent");
    assert!(
        bin.is_file(),
        "{} not built: run tests/prepare.sh (it cross-builds the agent)",
        bin.display()
    );
    // An AArch64 ELF (e_machine 0xB7), not a host binary under another name.
    let head = std::fs::read(&bin).unwrap();
    assert_eq!(&head[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([head[18], head[19]]),
        0xB7,
        "not an AArch64 executable"
    );
    // No Vulkan driver for the guest, whatever the host has installed (qemu's
    // -L falls back to host paths): the self-test's `auto` must fall back.
    let out = Command::new("qemu-aarch64")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .args(["-L", "/usr/aarch64-linux-gnu"])
        .arg(&bin)
        .arg("selftest")
        .output()
        .expect("qemu-aarch64 runs (apt-get install qemu-user; tests/prepare.sh does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", stdout.trim());
    assert!(
        stdout.contains("selftest (aarch64) OK: rig bundled 160x120"),
        "{stdout}"
    );
    // Built with the GPU backend and given no Vulkan driver, `auto` (the
    // self-test's default) must say that it runs the network on the CPU.
    assert!(
        stdout.contains("on CPU (ndarray) (backend auto: no GPU adapter"),
        "{stdout}"
    );
    // The same self-test on this machine's build (x86-64: the AVX2 kernels
    // where the CPU has them) matches the bundled pair exactly as the aarch64
    // build (the generic kernels) does: same valid pixels, same disparities.
    let host = e2e_tests::succeed(Command::new(e2e_tests::workspace_bin("agent")).arg("selftest"));
    let figures = |s: &str| -> String {
        let at = s
            .find("% valid")
            .expect("a density in the self-test's line");
        let from = s[..at].rfind(", ").map_or(0, |k| k + 2);
        let to = s.find("; mono").expect("the mono part of the line");
        s[from..to].to_string()
    };
    assert_eq!(
        figures(&stdout),
        figures(&host),
        "aarch64:\n{stdout}\nhost:\n{host}"
    );
}
