//! The `agent` command line refuses bad input with errors naming the problem.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent"))
}

/// Runs `cmd` and checks that it failed with an error naming `needle`, not a panic.
fn assert_refused(cmd: &mut Command, what: &str, needle: &str) {
    let o = cmd.output().unwrap();
    assert!(!o.status.success(), "{what} accepted");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn help_lists_the_main_job() {
    let o = agent().arg("--help").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("fly"));
}

#[test]
fn bad_config_and_context_files_are_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("--config", "unknown.toml", "secnds = 2.0\n", "secnds"),
        (
            "--config",
            "range.toml",
            "[avoid]\nturn_rate = 9.0\n",
            "avoid.turn_rate",
        ),
        ("--config", "ctx.toml", "[context]\nmass = nan\n", "mass"),
        (
            "--context",
            "ctx2.toml",
            "obstacle_size = 99.0\n",
            "obstacle_size",
        ),
    ];
    for (flag, name, text, needle) in cases {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        assert_refused(
            agent().args(["fly", "--no-rerun", flag]).arg(&p),
            name,
            needle,
        );
    }
    let o = agent()
        .args(["fly", "--config"])
        .arg(dir.join("nope.toml"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.toml"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_connect_back_off_is_refused_with_the_reason() {
    let out = std::env::temp_dir().join(format!("agent-cli-retry-{}.mcap", std::process::id()));
    let out = out.to_string_lossy();
    let cases: [(&[&str], &str); 3] = [
        (
            &["node", "stereo", "--connect-retry-ms", "5"],
            "expected FIRST,MAX",
        ),
        (
            &["node", "stereo", "--connect-retry-ms", "0,100"],
            "connect retry",
        ),
        (
            &["record", "--out", &out, "--connect-retry-ms", "500,100"],
            "connect retry",
        ),
    ];
    for (args, needle) in cases {
        assert_refused(
            agent().args(args).args(["--connect", "tcp/127.0.0.1:9"]),
            &format!("{args:?}"),
            needle,
        );
    }
    assert!(!std::path::Path::new(&*out).exists(), "{out} written");
}

#[test]
fn a_record_whose_bus_cannot_open_leaves_nothing_behind() {
    let dir = std::env::temp_dir().join(format!("agent-cli-rec-{}", std::process::id()));
    let out = dir.join("day1/rec.mcap");
    assert_refused(
        agent().args(["record", "--out"]).arg(&out).args([
            "--listen",
            "not-an-endpoint",
            "--seconds",
            "1",
        ]),
        "record with a malformed --listen",
        "cannot open zenoh session",
    );
    assert!(!dir.exists(), "{} created", dir.display());
}

#[test]
fn shipped_fly_config_parses_and_documents_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch/fly.toml");
    let cfg = agent::fly::FlyConfig::load(&path).unwrap();
    assert_eq!(cfg, agent::fly::FlyConfig::default());
}

#[test]
fn persist_refuses_a_bad_length_and_bench_prints_both_figures() {
    let o = agent()
        .args(["persist", "--no-rerun", "--minutes", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--minutes"));
    let o = agent()
        .args(["bench", "--seconds", "0.3", "--backend", "cpu"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    for needle in [
        "inference (batch 1, 1 core): median",
        "samples/s",
        "parameters",
        "RL networks (Cpu, twin sizes): DQN act",
        "PPO update (2048 steps)",
        "SAC training step (batch 256)",
    ] {
        assert!(out.contains(needle), "{needle} missing: {out}");
    }
    // The figures are numbers, not placeholders.
    let ms: f64 = out
        .split("median ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(ms > 0.0 && ms.is_finite());
    // The side-by-side table names the backend's adapter.
    assert!(out.contains("networks by backend"), "{out}");
    assert!(out.contains("Cpu: CPU (ndarray)"), "{out}");
    // A backend that is not a backend is refused by name.
    let o = agent()
        .args(["bench", "--seconds", "0.3", "--backend", "cuda"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cuda"));
}

#[test]
fn budget_reports_every_stage_the_loop_rate_and_memory_at_320x240() {
    let dir = std::env::temp_dir().join(format!("agent-budget-{}", std::process::id()));
    let o = agent()
        .args(["budget", "--frames", "40", "--rate", "100", "--rerun-save"])
        .arg(dir.join("b.rrd"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("budget at 320x240, 40 frames"), "{out}");
    for stage in ["camera", "stereo", "mono", "policy", "per frame"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(stage) && l.contains("p99")),
            "{stage}: {out}"
        );
    }
    assert!(
        out.contains("loop rate MET") || out.contains("loop rate NOT MET"),
        "{out}"
    );
    // The whole pipeline (stereo, mono, policy, learner, zenoh, telemetry) in under 1 GiB.
    let mib: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("peak resident memory "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no memory figure in {out}"));
    assert!(mib > 10.0 && mib < 1024.0, "{mib} MiB");
    let bad = agent().args(["budget", "--width", "100"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("multiple of the mono input"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn selftest_checks_stereo_and_mono_on_the_bundled_pair_and_names_a_bad_rig() {
    let o = agent().arg("selftest").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("selftest (") && out.contains("OK: rig bundled 160x120"),
        "{out}"
    );
    let bad = agent()
        .args(["selftest", "--rig", "/nonexistent/rig.yaml"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/rig.yaml"));
    // A rig of another size than the bundled pair is refused, not matched against it.
    let other = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../calib/tests/data/opencv_written.yaml");
    let o = agent()
        .arg("selftest")
        .arg("--rig")
        .arg(&other)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("640x480"));
}
