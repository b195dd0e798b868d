//! Learning to fly end to end: `agent learn-to-fly` trains over seeds, writes
//! each seed's policy as a weight table the firmware's forward pass reads and
//! a summary, refuses a bad settings file by key, and stops cleanly on Ctrl-C
//! with the policy it has.

use e2e_tests::{said, signal_after, succeed, temp_dir, workspace_bin};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped settings, shortened: a few thousand steps, small batches.
fn short_config(dir: &Path, max_steps: usize) -> std::path::PathBuf {
    let text = rl::quadrotor::DEFAULT_FILE
        .replace("batch = 256", "batch = 32")
        .replace("warmup = 5000", "warmup = 300")
        .replace("max_steps = 300000", &format!("max_steps = {max_steps}"))
        .replace("vehicles = 1000", "vehicles = 20")
        .replace("eval_every = 5000", "eval_every = 500")
        .replace("vehicles = 16", "vehicles = 3");
    assert!(
        text.contains("batch = 32") && text.contains("vehicles = 3"),
        "the test edits the shipped file"
    );
    let p = dir.join("fly.toml");
    std::fs::write(&p, text).expect("write settings");
    p
}

/// The weight table reads back and the firmware's forward pass flies it:
/// four motor commands in [−1, 1] from an observation.
fn check_table(path: &Path) {
    let text = std::fs::read_to_string(path).expect("policy table written");
    let net =
        rl::l2f::parse_weight_table(&text, &path.display().to_string()).expect("table parses");
    let fw = fclink::policy::Policy::new(net.sizes(), &net.params).expect("firmware accepts it");
    let mut obs = [0.0f32; rl::quadrotor::OBS_DIM];
    obs[3] = 1.0;
    obs[7] = 1.0;
    obs[11] = 1.0;
    let mut out = [0.0f32; 4];
    fw.forward(&obs, &mut out).expect("forward pass");
    assert!(
        out.iter().all(|v| v.is_finite() && v.abs() <= 1.0),
        "{out:?}"
    );
}

#[test]
fn learn_to_fly_writes_a_firmware_table_per_seed_and_refuses_bad_settings() {
    let dir = temp_dir("learn-to-fly");
    let cfg = short_config(&dir, 2000);
    let out = dir.join("out");
    let printed = succeed(
        Command::new(workspace_bin("agent"))
            .args(["learn-to-fly", "--seeds", "2", "--seed", "5", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out),
    );
    assert!(
        printed.contains("environment alone:") && printed.contains("steps/s"),
        "{printed}"
    );
    for seed in [5, 6] {
        assert!(printed.contains(&format!("seed {seed}:")), "{printed}");
        check_table(&out.join(format!("seed-{seed}/policy.txt")));
    }
    let summary = std::fs::read_to_string(out.join("summary.csv")).expect("summary written");
    let rows: Vec<&str> = summary.lines().collect();
    assert_eq!(rows.len(), 3, "{summary}");
    assert!(
        rows[0].starts_with("seed,seconds_to_fly,steps_to_fly"),
        "{summary}"
    );
    assert!(
        rows[1].starts_with("5,") && rows[2].starts_with("6,"),
        "{summary}"
    );

    // A bad value is refused by its key and file, before any training.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        rl::quadrotor::DEFAULT_FILE.replace("batch = 256", "batch = 0"),
    )
    .unwrap();
    let o = Command::new(workspace_bin("agent"))
        .args(["learn-to-fly", "--config"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.join("bad-out"))
        .output()
        .expect("agent runs");
    let s = said(&o);
    assert!(!o.status.success(), "{s}");
    assert!(s.contains("train.batch") && s.contains("bad.toml"), "{s}");
}

#[test]
fn learn_to_fly_stops_on_ctrl_c_with_the_policy_it_has() {
    let dir = temp_dir("learn-to-fly-stop");
    let cfg = short_config(&dir, 10_000_000);
    let out = dir.join("out");
    let child = Command::new(workspace_bin("agent"))
        .args(["learn-to-fly", "--seeds", "3", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    // Past the start (the environment's speed is measured for half a second
    // first) and into training.
    signal_after(&child, "INT", Duration::from_secs(4));
    let began = Instant::now();
    let o = child.wait_with_output().expect("agent ends");
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "Ctrl-C took {:?}",
        began.elapsed()
    );
    let s = said(&o);
    assert!(o.status.success(), "{s}");
    check_table(&out.join("seed-1/policy.txt"));
    assert!(
        !out.join("seed-2").exists(),
        "no seed starts after Ctrl-C: {s}"
    );
    let summary = std::fs::read_to_string(out.join("summary.csv")).expect("summary written");
    assert_eq!(summary.lines().count(), 2, "{summary}");
}
