//! SELFI end to end: `agent selfi all` records flights to MCAP, trains the
//! offline bundle from the recording and runs the three arms online, writing
//! the table, CSVs, actors and an .rrd; the graph version runs the twin,
//! stereo, the SELFI policy behind the supervising safety node and the learner
//! node as separate processes over zenoh, and the policy swaps in the weights
//! the learner publishes. Bad inputs are refused by name.

use e2e_tests::{launch, numbers, succeed, temp_dir, verified_rrd, workspace_bin};
use std::path::Path;
use std::process::Command;

/// Small enough for CI: short training, small networks, learning early.
const TINY: &str = r#"
[offline]
model_steps = 200
actor_steps = 150
dynamics_hidden = [32, 32]
traversability_hidden = [64, 64]
actor_hidden = [64, 64]
[online]
critic_hidden = [64, 64]
batch = 64
buffer = 5000
learning_starts = 64
actor_warmup = 96
rollback_window = 5
pretrain_critic_steps = 100
eval_minutes = 2.0
"#;

fn port(k: u16) -> u16 {
    e2e_tests::test_port(e2e_tests::PortSlice::Selfi, 4, k)
}

fn selfi(args: &[&str]) -> Command {
    let mut c = Command::new(workspace_bin("agent"));
    c.arg("selfi").args(args);
    c
}

#[test]
fn selfi_all_records_trains_offline_and_compares_the_arms() {
    let dir = temp_dir("selfi-all");
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let work = dir.join("work");
    let out = dir.join("online");
    let rrd = dir.join("selfi.rrd");
    let stdout = succeed(&mut selfi(&[
        "all",
        "--config",
        cfg.to_str().unwrap(),
        "--record-minutes",
        "1.5",
        "--work",
        work.to_str().unwrap(),
        "--minutes",
        "1",
        "--bin-minutes",
        "0.5",
        "--seeds",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--rerun-save",
        rrd.to_str().unwrap(),
    ]));
    // The recording holds the graph's topics.
    let mcap = work.join("logs/flights.mcap");
    let msgs = bus::log::read(&mcap).unwrap();
    for topic in [
        "state",
        "depth/stereo",
        "nav/goal",
        "perception/tracks",
        "cmd/setpoint",
        "events",
    ] {
        assert!(
            msgs.iter().any(|(t, _, _)| t == topic),
            "no {topic} in {}",
            mcap.display()
        );
    }
    // The table: every arm, both bins, and the goal check lines.
    for arm in ["offline", "selfi", "plain"] {
        let rows = stdout.lines().filter(|l| l.starts_with(arm)).count();
        assert!(rows >= 2, "{arm}: {rows} rows in\n{stdout}");
        let bins = std::fs::read_to_string(out.join(arm).join("seed0/bins.csv")).unwrap();
        assert_eq!(bins.lines().count(), 3, "{bins}");
        let steps = std::fs::read_to_string(out.join(arm).join("seed0/steps.csv")).unwrap();
        let header = steps.lines().next().unwrap();
        for col in [
            "r_collision",
            "r_intervention",
            "r_progress",
            "r_proximity",
            "j",
            "qbar",
            "q",
            "source",
        ] {
            assert!(header.split(',').any(|c| c == col), "{col} not in {header}");
        }
        assert!(out.join(arm).join("seed0/actor.bpk").is_file());
        // Evaluations before learning and at both bins' ends.
        let evals = std::fs::read_to_string(out.join(arm).join("seed0/evals.csv")).unwrap();
        assert_eq!(evals.lines().count(), 4, "{evals}");
    }
    for check in ["while learning (with exploration noise)", "evaluated"] {
        assert!(
            stdout.contains(&format!("{check}: offline arm"))
                && stdout.contains(&format!("{check}: SELFI success rate")),
            "no {check} goal check in\n{stdout}"
        );
    }
    // The offline arm's actor never changes: its evaluations are all the same.
    let evals = std::fs::read_to_string(out.join("offline/seed0/evals.csv")).unwrap();
    let rows: Vec<Vec<&str>> = evals
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let header: Vec<&str> = evals.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|c| *c == "interventions").unwrap();
    assert!(rows.iter().all(|r| r[at] == rows[0][at]), "{evals}");
    assert!(stdout.contains("µs per plan"), "{stdout}");
    assert!(out.join("summary.txt").is_file() && out.join("config.toml").is_file());
    // The offline arm never learns, so its steps log Q̄ = 0; SELFI's critics
    // do learn (from their offline pre-training on), so its Q̄ is not all zero,
    // and J is finite everywhere.
    let column = |arm: &str, name: &str| -> Vec<f64> {
        let steps = std::fs::read_to_string(out.join(arm).join("seed0/steps.csv")).unwrap();
        let mut lines = steps.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = header.iter().position(|c| *c == name).unwrap();
        lines
            .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
            .collect()
    };
    let offline_qbar = column("offline", "qbar");
    assert!(
        !offline_qbar.is_empty() && offline_qbar.iter().all(|v| *v == 0.0),
        "the offline arm's critic moved"
    );
    let selfi_qbar = column("selfi", "qbar");
    assert!(
        selfi_qbar.iter().any(|v| *v != 0.0),
        "SELFI's critic is zero at every step"
    );
    assert!(column("selfi", "j").iter().all(|v| v.is_finite()));
    verified_rrd(&rrd);

    // The online phase as a sweep's tasks (one process per arm and seed, here
    // with the local runner) gives the local run's table byte for byte.
    let swept = dir.join("swept");
    let said = succeed(Command::new(workspace_bin("agent")).args([
        "sweep",
        "local",
        "--jobs",
        "2",
        "--",
        "selfi",
        "online",
        "--offline",
        work.join("offline").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--minutes",
        "1",
        "--bin-minutes",
        "0.5",
        "--seeds",
        "1",
        "--out",
        swept.to_str().unwrap(),
    ]));
    assert!(said.contains("collected 3 of 3 tasks"), "{said}");
    assert_eq!(
        std::fs::read_to_string(swept.join("summary.txt")).unwrap(),
        std::fs::read_to_string(out.join("summary.txt")).unwrap()
    );
    for arm in ["offline", "selfi", "plain"] {
        assert!(swept.join(arm).join("seed0/run.toml").is_file());
        assert_eq!(
            std::fs::read_to_string(swept.join(arm).join("seed0/bins.csv")).unwrap(),
            std::fs::read_to_string(out.join(arm).join("seed0/bins.csv")).unwrap(),
            "{arm}"
        );
    }
}

#[test]
fn selfi_graph_learner_publishes_weights_the_policy_swaps_in() {
    let dir = temp_dir("selfi-graph");
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let logs = dir.join("flights.mcap");
    let offline = dir.join("offline");
    let c = cfg.to_str().unwrap();
    succeed(&mut selfi(&[
        "record",
        "--config",
        c,
        "--minutes",
        "1.5",
        "--out",
        logs.to_str().unwrap(),
    ]));
    succeed(&mut selfi(&[
        "offline",
        "--config",
        c,
        "--logs",
        logs.to_str().unwrap(),
        "--out",
        offline.to_str().unwrap(),
    ]));
    let ep = format!("tcp/127.0.0.1:{}", port(0));
    let robot = format!("selfi{}", std::process::id());
    let off = offline.to_str().unwrap();
    let ckpt = dir.join("online_actor.bpk");
    let rec = dir.join("graph.mcap");
    let common = format!(r#""--robot", "{robot}", "--selfi", "{off}", "--selfi-config", "{c}""#);
    let text = format!(
        r#"name = "selfi_test"
stop_timeout = 10.0
[[process]]
name = "camera"
args = ["node", "camera", {common}, "--listen", "{ep}", "--seconds", "80"]
required = true
[[process]]
name = "stereo"
args = ["node", "stereo", "--robot", "{robot}", "--connect", "{ep}"]
[[process]]
name = "policy"
args = ["node", "policy", {common}, "--connect", "{ep}", "--gated", "--explore"]
[[process]]
name = "safety"
args = ["node", "safety", {common}, "--connect", "{ep}", "--supervise"]
[[process]]
name = "learner"
args = ["node", "selfi-learner", {common}, "--connect", "{ep}", "--checkpoint", "{ck}", "--publish-every", "20"]
[[process]]
name = "recorder"
args = ["record", "--robot", "{robot}", "--connect", "{ep}", "--out", "{rec}", "--topics", "state,depth/stereo,nav/goal,perception/tracks,cmd/setpoint,events"]
"#,
        ck = ckpt.display(),
        rec = rec.display()
    );
    let out = launch(&dir, "selfi.toml", &text);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n{stderr}");
    assert!(out.status.success(), "{all}");
    let twin = stdout
        .lines()
        .find(|l| l.starts_with("[camera] twin (goal reaching): "))
        .unwrap_or_else(|| panic!("no twin summary in {all}"));
    let nums = numbers(twin);
    assert_eq!(nums[0], 400, "{twin}");
    assert!(nums[4] < 60, "too many frames unanswered: {twin}");
    let learner = stdout
        .lines()
        .find(|l| l.contains("selfi-learner: "))
        .unwrap_or_else(|| panic!("no learner summary in {all}"));
    let n = numbers(learner);
    let (transitions, actor_updates, versions) = (n[0], n[3], n[6]);
    assert!(transitions >= 200, "{learner}");
    assert!(actor_updates > 0 && versions >= 1, "{learner}");
    assert!(
        all.lines()
            .any(|l| l.contains("policy: weights v") && l.contains("swapped in")),
        "the policy never swapped weights:\n{all}"
    );
    // The graph's own recording (messages in arrival order, stereo scans of
    // the image's width) trains an offline bundle too.
    let off2 = dir.join("offline-from-graph");
    let text = succeed(&mut selfi(&[
        "offline",
        "--config",
        c,
        "--logs",
        rec.to_str().unwrap(),
        "--out",
        off2.to_str().unwrap(),
    ]));
    assert!(off2.join("actor.bpk").is_file(), "{text}");
    // The learner's checkpoint is an actor of the configured shape.
    #[allow(deprecated)]
    let d = burn::tensor::Device::ndarray();
    rl::selfi::online::load_actor(&ckpt, &[64, 64], 8, &d).unwrap();
}

#[test]
fn selfi_refuses_bad_inputs_by_name() {
    let dir = temp_dir("selfi-bad");
    let fail = |cmd: &mut Command| -> String {
        let o = cmd.output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[online]\nwarmup = 3\n").unwrap();
    let e = fail(&mut selfi(&["record", "--config", cfg.to_str().unwrap()]));
    assert!(e.contains("bad.toml") && e.contains("warmup"), "{e}");
    // An existing recording is never replaced without --force.
    let old = dir.join("old.mcap");
    std::fs::write(&old, b"earlier flights").unwrap();
    let e = fail(&mut selfi(&[
        "record",
        "--config",
        &repo("agent/rl/config/selfi.toml"),
        "--out",
        old.to_str().unwrap(),
    ]));
    assert!(e.contains("old.mcap") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(&old).unwrap(), b"earlier flights");
    let missing = dir.join("nothing.mcap");
    let e = fail(&mut selfi(&[
        "offline",
        "--config",
        &repo("agent/rl/config/selfi.toml"),
        "--logs",
        missing.to_str().unwrap(),
    ]));
    assert!(e.contains("nothing.mcap"), "{e}");
    let corrupt = dir.join("corrupt.mcap");
    std::fs::write(&corrupt, b"\x89MCAP0\r\n garbage").unwrap();
    let e = fail(&mut selfi(&[
        "offline",
        "--logs",
        corrupt.to_str().unwrap(),
        "--config",
        &repo("agent/rl/config/selfi.toml"),
    ]));
    assert!(e.contains("corrupt.mcap"), "{e}");
    let e = fail(&mut selfi(&[
        "online",
        "--offline",
        dir.join("no-offline").to_str().unwrap(),
        "--config",
        &repo("agent/rl/config/selfi.toml"),
    ]));
    assert!(e.contains("offline.toml"), "{e}");
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
        .display()
        .to_string()
}
