//! The agent cross-built for aarch64 (Jetson-class boards) runs its self-test
//! under qemu-aarch64: it loads a rig file, runs stereo on the bundled pair and
//! one mono inference, and prints the figures. `tests/prepare.sh` (the README's
//! test command) builds it in the release profile at opt-level 0
//! (tests/aarch64-check.toml, to spare CI's time; boards get plain `--release`).

use std::process::Command;

#[test]
fn the_aarch64_agent_passes_its_self_test_under_qemu() {
    let bin = cross_dir().join("agent");
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
    // build (the NEON kernels) does: same valid pixels, same disparities.
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
    // The camera stage's rectification: the NEON window kernel gave the
    // scalar loop's bytes there (the self-test fails otherwise) and did most
    // of the pixels, and its image is the host's (AVX2 kernels) byte for byte.
    assert!(
        stdout.contains("rectify 320x240 by NEON window kernel: equal to the scalar loop"),
        "{stdout}"
    );
    let rectify = |s: &str| -> (f64, String) {
        let at = s.find("; rectify ").expect("the rectify part of the line");
        let part = &s[at..];
        let share = part
            .split(", ")
            .find_map(|p| p.strip_suffix(" % of pixels by windows"))
            .and_then(|v| v.parse().ok())
            .expect("the share of pixels by windows");
        let digest = part
            .split("digest ")
            .nth(1)
            .map(|d| d.trim().to_string())
            .expect("the rectified image's digest");
        (share, digest)
    };
    let (share, neon) = rectify(&stdout);
    assert!(share >= 90.0, "windows did {share} % of the pixels");
    assert_eq!(neon, rectify(&host).1, "aarch64:\n{stdout}\nhost:\n{host}");
}

/// The aarch64 build of `stereo` (its NEON kernels: `agent/stereo/src/neon.rs`)
/// under qemu-aarch64, built by `tests/prepare.sh` (tests/aarch64-check.toml)
/// (the stereo and sim packages optimised there): the stereo crate's
/// unit tests (each NEON kernel against the generic one on random costs, ties
/// and odd ranges included), then `stereo simd-check` on the benchmark's pairs —
/// twin 160x120/32 and 640x480/128 and the real pairs (Aloe, Motorcycle) at
/// both sizes, 8 and 4 paths — where every disparity map must equal the generic
/// code's bit for bit.
#[test]
fn neon_kernels_equal_the_generic_code_under_qemu() {
    let dir = cross_dir();
    let qemu = |bin: &str, args: &[&str]| {
        let path = dir.join(bin);
        assert!(
            path.is_file(),
            "{} not built: run tests/prepare.sh (it cross-builds the stereo matcher)",
            path.display()
        );
        let out = Command::new("qemu-aarch64")
            .args(["-L", "/usr/aarch64-linux-gnu"])
            .arg(&path)
            .args(args)
            .output()
            .expect("qemu-aarch64 runs (apt-get install qemu-user; tests/prepare.sh does)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{bin} {args:?}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let unit = qemu("stereo-unit-tests", &["--test-threads", "2"]);
    for test in [
        "pass::tests::neon_pixel_ops_equal_the_generic_ones ... ok",
        "pass::tests::byte_and_word_kernels_and_instruction_sets_agree_exactly ... ok",
        "pass::tests::meeting_in_the_middle_equals_two_whole_passes ... ok",
    ] {
        assert!(unit.contains(test), "{test} missing:\n{unit}");
    }
    let skimage = stereo::eval::skimage_data("python3")
        .expect("scikit-image installed (tests/prepare.sh installs it)");
    let check = qemu(
        "stereo",
        &[
            "simd-check",
            "--sizes",
            "160,640",
            "--skimage",
            skimage.to_str().expect("a UTF-8 path"),
        ],
    );
    eprintln!("{}", check.trim());
    assert!(
        check.contains("stereo simd-check (aarch64): NEON kernels against the generic code"),
        "{check}"
    );
    // 2 twin sizes and 2 sizes of each of the 2 real pairs, 8 and 4 paths each.
    let identical = check.lines().filter(|l| l.ends_with(": identical")).count();
    assert_eq!(identical, 12, "{check}");
    assert!(check.contains("simd-check passed: NEON equals the generic code on 6 workloads"));
}

/// Where `tests/prepare.sh` puts the aarch64 builds (release, at opt-level 0 by
/// tests/aarch64-check.toml).
fn cross_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<test>");
    target.join("aarch64-unknown-linux-gnu/release")
}
