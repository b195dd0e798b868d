//! Reinforcement learning end to end: `agent train` compares curricula on a
//! small twin family (metrics CSV, summary, rerun file, checkpoints, exported
//! policy), resumes, stops cleanly on Ctrl-C, refuses bad files by name; the
//! exported policy flies in the onboard `policy` node over zenoh; and the
//! learners solve the classic tasks (DQN CartPole, SAC Pendulum).

use e2e_tests::{
    collect_names_lost_task, said, signal_after, succeed, temp_dir, verified_rrd, workspace_bin,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn port(k: u16) -> u16 {
    e2e_tests::test_port(e2e_tests::PortSlice::Train, 4, k)
}

const INSTANCES: &str = r#"
task = "twin"
control_hz = 10.0
max_steps = 150
[sample]
seed = 3
train = 4
test = 2
[sample.base]
room_length = 10.0
[sample.ranges]
obstacle_count = [0, 8]
room_width = [4.0, 8.0]
"#;

const CONFIG: &str = r#"
eval_every = 1000
[dqn]
hidden = [32, 32]
learning_starts = 200
train_freq = 4
gradient_steps = 1
epsilon_steps = 2000
[space]
steps_per_instance = 50
"#;

fn write_inputs(dir: &Path) {
    std::fs::write(dir.join("inst.toml"), INSTANCES).unwrap();
    std::fs::write(dir.join("cfg.toml"), CONFIG).unwrap();
}

fn train(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(workspace_bin("agent"));
    c.arg("train")
        .arg("--instances")
        .arg(dir.join("inst.toml"))
        .arg("--config")
        .arg(dir.join("cfg.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--rerun-save")
        .arg(dir.join("train.rrd"))
        .args(["--seeds", "1", "--jobs", "2"])
        .args(extra);
    c
}

fn steps_in(csv: &Path) -> Vec<u64> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn train_compares_curricula_resumes_and_exports_a_policy_the_node_flies() {
    let dir = temp_dir("train");
    write_inputs(&dir);
    let out = succeed(&mut train(
        &dir,
        &[
            "--curriculum",
            "space,round-robin,random",
            "--steps",
            "3000",
        ],
    ));
    for k in [
        "space",
        "round-robin",
        "random",
        "steps to target",
        "round-robin steps / SPaCE steps",
    ] {
        assert!(out.contains(k), "missing {k:?} in:\n{out}");
    }
    assert!(dir.join("out/summary.txt").is_file() && dir.join("out/summary.csv").is_file());
    for c in ["space", "round-robin", "random"] {
        let run = dir.join("out").join(c).join("seed0");
        assert_eq!(
            steps_in(&run.join("metrics.csv")),
            vec![0, 1000, 2000, 3000],
            "{c}"
        );
        assert!(
            run.join("checkpoint/q.bpk").is_file() && run.join("checkpoint/run.toml").is_file()
        );
        assert!(run.join("policy.bpk").is_file() && run.join("policy.toml").is_file());
    }
    // SPaCE's curriculum grew from one instance; round-robin used all four.
    let sizes = |c: &str| -> Vec<usize> {
        std::fs::read_to_string(dir.join("out").join(c).join("seed0/metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(sizes("space")[0], 1);
    assert!(sizes("round-robin").iter().all(|&n| n == 4));
    let printed = verified_rrd(&dir.join("train.rrd"));
    assert!(
        printed.contains("train/space/seed0/test_return"),
        "{printed}"
    );

    // Training again into the same folder without --resume is refused, and
    // leaves the run as it was.
    let before = std::fs::read_to_string(dir.join("out/space/seed0/metrics.csv")).unwrap();
    let o = train(&dir, &["--curriculum", "space", "--steps", "4000"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("out/space/seed0/metrics.csv")).unwrap(),
        before
    );

    // Resume: the history is kept and training goes on to the new budget.
    succeed(&mut train(
        &dir,
        &["--curriculum", "space", "--steps", "4000", "--resume"],
    ));
    assert_eq!(
        steps_in(&dir.join("out/space/seed0/metrics.csv")),
        vec![0, 1000, 2000, 3000, 4000]
    );

    // The card says how fast the network decides (the node holds its command in between).
    let card = std::fs::read_to_string(dir.join("out/space/seed0/policy.toml")).unwrap();
    assert!(card.contains("control_hz = 10.0"), "{card}");

    // The exported network flies in the onboard policy node.
    use bus::msg::{DepthScan, Setpoint, State};
    use bus::{Inbox, Outbox};
    let robot = format!("rl{}", std::process::id());
    let ep = format!("tcp/127.0.0.1:{}", port(0));
    let mut node = Command::new(workspace_bin("agent"))
        .args([
            "node",
            "policy",
            "--robot",
            &robot,
            "--listen",
            &ep,
            "--policy-net",
        ])
        .arg(dir.join("out/space/seed0/policy.bpk"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = bus::open(&bus::BusConfig::connect_to(ep)).unwrap();
    let mut setpoints =
        Inbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT, 16).unwrap();
    let mut scans = Outbox::<DepthScan>::new(&session, &robot, bus::topics::DEPTH_STEREO).unwrap();
    let mut states = Outbox::<State>::new(&session, &robot, bus::topics::STATE).unwrap();
    let t0 = Instant::now();
    let mut got = None;
    while got.is_none() && t0.elapsed() < Duration::from_secs(15) {
        states
            .send(
                0,
                "body",
                &State {
                    position: [1.0, 0.0, 1.0],
                    attitude: [1.0, 0.0, 0.0, 0.0],
                    velocity: [1.5, 0.0, 0.0],
                },
            )
            .unwrap();
        // A wall close on the left, open on the right; 64 columns (resampled to 32 beams).
        let depth: Vec<f32> = (0..64).map(|i| if i < 20 { 0.8 } else { 8.0 }).collect();
        scans
            .send(
                0,
                "camera",
                &DepthScan {
                    compute_ns: 0,
                    depth,
                },
            )
            .unwrap();
        got = setpoints.recv_timeout(Duration::from_millis(200)).unwrap();
    }
    let _ = node.kill();
    let status = node.wait_with_output().unwrap();
    let (_, sp) = got.unwrap_or_else(|| {
        panic!(
            "no setpoint from the trained policy: {}",
            String::from_utf8_lossy(&status.stderr)
        )
    });
    assert!((sp.forward - 1.5).abs() < 1e-6, "{sp:?}");
    assert!(
        rl::env::TWIN_YAW_RATES
            .iter()
            .any(|y| (*y as f32 - sp.yaw_rate).abs() < 1e-6),
        "{sp:?}"
    );
}

#[test]
fn train_stops_on_ctrl_c_keeping_metrics_and_checkpoint() {
    let dir = temp_dir("train-int");
    write_inputs(&dir);
    let child = train(
        &dir,
        &["--curriculum", "round-robin", "--steps", "10000000"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait for the first evaluations, then interrupt.
    let csv = dir.join("out/round-robin/seed0/metrics.csv");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) && (!csv.is_file() || steps_in(&csv).len() < 2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    signal_after(&child, "INT", Duration::from_millis(10));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = steps_in(&csv);
    assert!(
        steps.len() >= 2 && *steps.last().unwrap() < 10_000_000,
        "{steps:?}"
    );
    assert!(
        dir.join("out/round-robin/seed0/checkpoint/run.toml")
            .is_file()
    );
}

#[test]
fn train_refuses_bad_files_by_name() {
    let dir = temp_dir("train-bad");
    write_inputs(&dir);
    std::fs::write(dir.join("inst.toml"), format!("{INSTANCES}\nclutter = 3\n")).unwrap();
    let out = train(&dir, &["--steps", "100"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("inst.toml") && err.contains("clutter"),
        "{err}"
    );
    write_inputs(&dir);
    std::fs::write(dir.join("cfg.toml"), "[dqn]\nlearning_rat = 0.1\n").unwrap();
    let out = train(&dir, &["--steps", "100"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cfg.toml") && err.contains("learning_rat"),
        "{err}"
    );
    write_inputs(&dir);
    std::fs::write(
        dir.join("inst.toml"),
        INSTANCES.replace("[0, 8]", "[0, 800]"),
    )
    .unwrap();
    let out = train(&dir, &["--steps", "100"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("obstacle_count"),
        "{err}"
    );
}

#[test]
fn dqn_solves_cartpole_and_sac_solves_pendulum() {
    #[allow(deprecated)]
    let device = burn::tensor::Device::ndarray();
    let cfg = rl::train::TrainConfig::default();
    use rl::validate::{Classic, SolveSpec, solve};
    for (task, max_steps, eval_every) in [
        (Classic::CartPole, 100_000, 5000),
        (Classic::Pendulum, 20_000, 1000),
    ] {
        let spec = SolveSpec {
            task,
            seed: 0,
            max_steps,
            eval_every,
            stop_when_solved: true,
        };
        let r = solve(spec, &cfg, &device, &mut |_, _| {}).unwrap();
        assert!(
            r.solved_at.is_some(),
            "{} did not reach {} in {max_steps} steps: last mean {}",
            task.name(),
            task.threshold(),
            r.mean_return
        );
    }
}

/// `agent train` as a Slurm job array on a single-node cluster on this
/// machine (tests/slurm/cluster.sh): 2 curricula x 2 seeds are four tasks, each
/// the experiment's own command with its index; `agent sweep collect` builds
/// the local run's table byte for byte from their folders, with the rerun file.
/// A task whose folder is lost is named with the sbatch line that runs it
/// again, alone; after that, the table is the local one again.
#[test]
fn slurm_array_sweep_matches_local_run() {
    let cluster = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/cluster.sh"))
        .arg("start")
        .output()
        .unwrap();
    assert!(
        cluster.status.success(),
        "the Slurm cluster did not start: {}",
        String::from_utf8_lossy(&cluster.stderr)
    );
    let conf = String::from_utf8_lossy(&cluster.stdout).trim().to_string();
    let dir = temp_dir("sweep");
    write_inputs(&dir);
    let experiment = |out: &str| -> Vec<String> {
        [
            "train",
            "--instances",
            &dir.join("inst.toml").display().to_string(),
            "--config",
            &dir.join("cfg.toml").display().to_string(),
            "--curriculum",
            "space,round-robin",
            "--seeds",
            "2",
            "--steps",
            "2000",
            "--out",
            &dir.join(out).display().to_string(),
            "--rerun-save",
            &dir.join(format!("{out}.rrd")).display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let local = succeed(
        Command::new(workspace_bin("agent"))
            .args(experiment("local"))
            .args(["--jobs", "2"]),
    );
    let table = std::fs::read_to_string(dir.join("local/summary.txt")).unwrap();
    assert!(local.contains(&table), "{local}");
    assert!(
        table.contains("space") && table.contains("round-robin"),
        "{table}"
    );
    let sweep = |extra: &[&str]| {
        Command::new(workspace_bin("agent"))
            .env("SLURM_CONF", &conf)
            .args([
                "sweep", "slurm", "--wait", "--time", "00:20:00", "--mem", "1G",
            ])
            .args(extra)
            .arg("--")
            .args(experiment("swept"))
            .output()
            .unwrap()
    };
    let first = sweep(&[]);
    assert!(first.status.success(), "{}", said(&first));
    assert!(
        said(&first).contains("Submitted batch job"),
        "{}",
        said(&first)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("swept/summary.txt")).unwrap(),
        table,
        "the sweep's table differs from the local run's"
    );
    assert!(said(&first).contains(&table), "{}", said(&first));
    for t in 0..4 {
        let log = dir.join(format!("swept/sweep/logs/task-{t}.out"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains(&format!("task {t}: Finished")),
            "{}: {text}",
            log.display()
        );
    }
    let printed = verified_rrd(&dir.join("swept.rrd"));
    assert!(
        printed.contains("train/round-robin/seed1/test_return"),
        "{printed}"
    );

    // Task 3 (round-robin, second seed) lost: named, with the line that runs it
    // again alone.
    std::fs::remove_dir_all(dir.join("swept/round-robin/seed1")).unwrap();
    let lost = collect_names_lost_task(&dir.join("swept"), 3, "never ran");
    assert!(lost.contains("sbatch --array=3 "), "{lost}");
    let again = sweep(&["--tasks", "3"]);
    assert!(again.status.success(), "{}", said(&again));
    assert_eq!(
        std::fs::read_to_string(dir.join("swept/summary.txt")).unwrap(),
        table,
        "the table after running task 3 again differs from the local run's"
    );
    let logs: Vec<_> = std::fs::read_dir(dir.join("swept/sweep/logs"))
        .unwrap()
        .collect();
    assert_eq!(logs.len(), 4, "one log per task");
}
