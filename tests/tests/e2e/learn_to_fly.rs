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
        .replace("batch = 64 ", "batch = 32 ")
        .replace("warmup = 5000", "warmup = 300")
        .replace("max_steps = 600000", &format!("max_steps = {max_steps}"))
        .replace("vehicles = 1000", "vehicles = 20")
        .replace("eval_every = 2500", "eval_every = 500")
        .replace("vehicles = 16", "vehicles = 3");
    assert!(
        text.contains("batch = 32 ")
            && text.contains("vehicles = 3")
            && text.contains("eval_every = 500")
            && !text.contains("max_steps = 600000"),
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
    // The burnpack checkpoint beside it holds the same network.
    let ckpt = path.with_file_name("policy.bpk");
    let back = rl::l2f::load_checkpoint(&ckpt, net.sizes()).expect("checkpoint beside the table");
    assert_eq!(back.params, net.params, "{}", ckpt.display());
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
        rl::quadrotor::DEFAULT_FILE.replace("batch = 64 ", "batch = 0 "),
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

/// Wall-clock bound for liveness only; what the flight test checks is read on
/// the firmware's clock (telemetry's uptime): a loaded host runs the emulated
/// MCU slower than real time.
const LIVENESS: Duration = Duration::from_secs(30);

fn velocity(forward: f32, up: f32) -> fclink::ToFc {
    fclink::ToFc::Setpoint(fclink::Setpoint::Velocity {
        forward,
        left: 0.0,
        up,
        yaw_rate: 0.0,
    })
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Stream `sp` every 20 ms (host time) until `until` says stop on a report;
/// returns the reports seen. Liveness: every report within [`LIVENESS`].
fn stream_until(
    link: &fc::Link,
    sp: fclink::ToFc,
    mut until: impl FnMut(&fclink::Telemetry) -> bool,
) -> Vec<fclink::Telemetry> {
    let mut seen = Vec::new();
    let mut last = Instant::now();
    let mut sent = Instant::now() - Duration::from_secs(1);
    loop {
        if sent.elapsed() >= Duration::from_millis(20) {
            link.send(sp);
            sent = Instant::now();
        }
        match link.events().recv_timeout(Duration::from_millis(5)) {
            Ok(fc::Event::Telemetry { telemetry: t, .. }) => {
                last = Instant::now();
                assert_eq!(t.state, fclink::FcState::Armed, "left armed flight: {t:?}");
                seen.push(t);
                if until(&t) {
                    return seen;
                }
            }
            Ok(_) => {}
            Err(_) => assert!(last.elapsed() < LIVENESS, "no telemetry for {LIVENESS:?}"),
        }
    }
}

/// The policy shipped in `firmware/policies/` (trained by `agent
/// learn-to-fly`) compiled into the Cortex-M4F firmware (`FC_POLICY`) and
/// run under QEMU, flying the firmware's rigid-body quadrotor model: armed
/// on the ground, it climbs to 1 m on velocity setpoints over the serial
/// link, then — after 5 s to settle, read on the firmware's clock — holds
/// within 0.1 m of its target for 30 s, and after a 0.5 m step of the target
/// (forward setpoints) is back within 0.1 m over the last second of 5 s.
/// QEMU runs one virtual nanosecond per instruction (`-icount shift=0`): the
/// guest's clock then runs at about half of real time on this host and
/// stops when QEMU does, so a loaded host that holds up the test's setpoint
/// stream for a moment does not trip the (rightful) failsafe.
#[test]
fn firmware_flies_the_learned_policy() {
    e2e_tests::require_qemu();
    let image = e2e_tests::firmware_image_learned();
    let qemu = fc::qemu::Qemu::spawn_counting(&image).expect("QEMU boots the firmware");
    let link = fc::Link::open(fc::LinkConfig::new(qemu.device())).expect("open the UART's pty");
    assert_eq!(
        link.command(fclink::ToFc::Arm, LIVENESS).unwrap(),
        fclink::AckStatus::Accepted
    );
    // Reports sent before the arming may still be queued: skip to the first
    // armed one (a report a few ms of the firmware's time away; setpoints must
    // follow the arming within its watchdog time).
    let began = Instant::now();
    loop {
        match link.events().recv_timeout(Duration::from_millis(100)) {
            Ok(fc::Event::Telemetry { telemetry: t, .. }) if t.state == fclink::FcState::Armed => {
                break;
            }
            _ => assert!(
                began.elapsed() < LIVENESS,
                "no armed report for {LIVENESS:?}"
            ),
        }
    }
    // Climb at 0.5 m/s until the target is 1 m up.
    let climb = stream_until(&link, velocity(0.0, 0.5), |t| t.target[2] >= 1.0);
    let start = climb.last().map_or(0, |t| t.uptime_ms);
    let since = |t: &fclink::Telemetry| t.uptime_ms.wrapping_sub(start);
    // Settle 5 s, then hold 30 s.
    stream_until(&link, velocity(0.0, 0.0), |t| since(t) >= 5_000);
    let hold = stream_until(&link, velocity(0.0, 0.0), |t| since(t) >= 35_000);
    assert!(hold.len() >= 300, "{} reports in 30 s", hold.len());
    let worst = hold
        .iter()
        .map(|t| distance(t.position, t.target))
        .fold(0.0f32, f32::max);
    let airborne = hold.iter().all(|t| t.position[2] > 0.5);
    assert!(
        worst <= 0.1 && airborne,
        "30 s hover: up to {worst:.3} m from the target (airborne throughout: {airborne})"
    );
    // A 0.5 m step of the target: forward at 1 m/s, stopped when the
    // autopilot's deceleration (its acceleration limit) will carry it the
    // rest of the 0.5 m.
    let (v, a) = (1.0f32, fclink::Config::MULTIROTOR.limits.max_accel);
    let before = hold.last().map_or([0.0; 3], |t| t.target);
    let step = stream_until(&link, velocity(v, 0.0), |t| {
        distance(t.target, before) >= 0.5 - v * v / (2.0 * a)
    });
    let stepped = step.last().map_or(0, |t| t.uptime_ms);
    let after = stream_until(&link, velocity(0.0, 0.0), |t| {
        t.uptime_ms.wrapping_sub(stepped) >= 5_000
    });
    let last_second: Vec<f32> = after
        .iter()
        .filter(|t| t.uptime_ms.wrapping_sub(stepped) >= 4_000)
        .map(|t| distance(t.position, t.target))
        .collect();
    assert!(last_second.len() >= 10, "{} reports", last_second.len());
    let moved = distance(after.last().unwrap().target, before);
    assert!((0.45..0.65).contains(&moved), "the target moved {moved} m");
    let off = last_second.iter().copied().fold(0.0f32, f32::max);
    println!(
        "firmware under QEMU: 30 s hover within {worst:.3} m of the target; after a {moved:.2} m step, within {off:.3} m over the last second of 5 s"
    );
    assert!(
        off <= 0.1,
        "{off:.3} m from the stepped target over the last second of 5 s"
    );
    drop(link);
    drop(qemu);
}

/// `fc-bench --policy-cost` reads the learned controller's cost per step
/// from the firmware under QEMU (one instruction per virtual nanosecond, so
/// the firmware's clock counts instructions): a count is printed, and it is
/// at least the forward pass's multiply-adds (one instruction each at best).
#[test]
fn fc_bench_counts_the_learned_controllers_instructions() {
    e2e_tests::require_qemu();
    let image = e2e_tests::firmware_image_learned();
    let o = Command::new(workspace_bin("fc-bench"))
        .arg("--qemu")
        .arg(&image)
        .args(["--policy-cost", "--count", "20"])
        .output()
        .expect("fc-bench runs");
    let s = said(&o);
    assert!(o.status.success(), "{s}");
    let p50: f64 = s
        .split("p50 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no p50 in {s}"));
    let text = std::fs::read_to_string(e2e_tests::shipped_policy()).expect("shipped policy");
    let net = rl::l2f::parse_weight_table(&text, "shipped").expect("table");
    let macs: usize = net.sizes().windows(2).map(|w| w[0] * w[1]).sum();
    assert!(
        p50 >= macs as f64 && p50 < 1e6,
        "{p50} instructions for {macs} multiply-adds: {s}"
    );
}
