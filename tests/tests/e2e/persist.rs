//! `agent persist` end to end: three arms fly side by side and print their
//! figures; the persistent arm's network resumes in `agent fly` and starts out
//! better than a fresh one; checkpoints of another architecture are refused.

use e2e_tests::{collect_names_lost_task, said, succeed, temp_dir, verified_rrd, workspace_bin};
use std::process::Command;

fn first_quarter_error(stdout: &str) -> f64 {
    stdout
        .split("error |log mono - log stereo| ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no mono error in: {stdout}"))
}

fn fly(args: &[&str]) -> String {
    succeed(
        Command::new(workspace_bin("agent"))
            .args(["fly", "--speed", "0", "--no-rerun"])
            .args(args),
    )
}

#[test]
fn arms_fly_on_several_seeds_and_the_learned_network_resumes() {
    let dir = temp_dir("persist");
    let rrd = dir.join("persist.rrd");
    let ckpt = dir.join("persist.bpk");
    let stdout = succeed(
        Command::new(workspace_bin("agent"))
            .args([
                "persist",
                "--minutes",
                "1",
                "--learn-minutes",
                "0.5",
                "--seeds",
                "2",
            ])
            .arg("--rerun-save")
            .arg(&rrd)
            .arg("--checkpoint")
            .arg(&ckpt)
            .arg("--out")
            .arg(dir.join("flights")),
    );
    for needle in [
        "2 seeds x 1.0 simulated minutes per arm; mean [95 % bootstrap interval over seeds]",
        "whole flight",
        "after 0.5 minutes of learning",
        "naive_learning",
        "goal ",
    ] {
        assert!(stdout.contains(needle), "{needle} missing: {stdout}");
    }
    // The stereo-only arm never flies on mono, on either seed.
    let stereo_row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("stereo_only"))
        .unwrap();
    assert!(stereo_row.contains(" 0.0 [0.0, 0.0]"), "{stereo_row}");
    // The table is the one the README shows: the same header lines.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let headers: Vec<&str> = readme
        .lines()
        .filter(|l| {
            l.starts_with("  arm ") && l.contains("/100 m")
                || l.starts_with("  arm ") && l.contains("abs-rel")
        })
        .collect();
    assert_eq!(
        headers.len(),
        3,
        "the README's persist table headers: {headers:?}"
    );
    for h in headers {
        assert!(
            stdout.lines().any(|l| l == h),
            "README header `{h}` not printed:\n{stdout}"
        );
    }

    let text = verified_rrd(&rrd);
    for e in [
        "/compare/mono_fraction/persistent",
        "/compare/collisions_per_min/naive",
        "/compare/interventions_per_min/stereo_only",
        "/persistent/world/robot",
        "/naive/plots/mono/error_log",
        "/stereo_only/plots/stereo/nearest",
    ] {
        assert!(text.contains(e), "entity {e} missing");
    }

    // Resuming from the persistent arm's network: a much better start than a fresh one.
    let fresh = first_quarter_error(&fly(&["--seconds", "8", "--checkpoint"]
        .iter()
        .copied()
        .chain([dir.join("fresh.bpk").to_str().unwrap()])
        .collect::<Vec<_>>()));
    let resumed = first_quarter_error(&fly(&[
        "--seconds",
        "8",
        "--checkpoint",
        dir.join("resumed.bpk").to_str().unwrap(),
        "--resume",
        ckpt.to_str().unwrap(),
    ]));
    assert!(
        resumed < 0.75 * fresh,
        "resumed error {resumed} vs fresh {fresh}"
    );
}

#[test]
fn a_checkpoint_of_another_architecture_or_a_corrupt_one_is_refused() {
    let dir = temp_dir("resume-bad");
    // A network with 16 scan columns, saved by a run configured that way.
    let cfg = dir.join("cols16.toml");
    std::fs::write(&cfg, "[mono]\ncolumns = 16\n").unwrap();
    let other = dir.join("other.bpk");
    fly(&[
        "--config",
        cfg.to_str().unwrap(),
        "--seconds",
        "0.5",
        "--checkpoint",
        other.to_str().unwrap(),
    ]);
    let junk = dir.join("junk.bpk");
    std::fs::write(&junk, b"\x00\x01 not a burnpack").unwrap();
    for bad in [&other, &junk] {
        let out = Command::new(workspace_bin("agent"))
            .args(["fly", "--speed", "0", "--no-rerun", "--seconds", "0.5"])
            .arg("--checkpoint")
            .arg(dir.join("x.bpk"))
            .arg("--resume")
            .arg(bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} accepted", bad.display());
        assert!(err.contains("cannot load mono checkpoint"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `agent persist` as a sweep: its eight flights (2 seeds x 4 arms) as
/// separate processes (`agent sweep local`, the runner that needs no
/// cluster) give the local run's figures: every line of the table equal but
/// the wall-clock column. A flight lost is named and flown again alone.
#[test]
fn persist_sweep_tasks_give_the_local_figures() {
    let dir = temp_dir("persist-sweep");
    let experiment = |out: &str| -> Vec<String> {
        [
            "persist",
            "--minutes",
            "0.3",
            "--learn-minutes",
            "0.1",
            "--seeds",
            "2",
            "--rerun",
            "off",
            "--checkpoint",
            &dir.join(format!("{out}.bpk")).display().to_string(),
            "--out",
            &dir.join(out).display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    // The table without its wall-clock column (the last one of its section).
    let figures = |stdout: &str| -> Vec<String> {
        let mut walls = false;
        stdout
            .lines()
            .skip_while(|l| !l.contains(" seeds x "))
            .take_while(|l| !l.starts_with("goal "))
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                if l.contains("wall s") {
                    walls = true;
                }
                match l.trim_end().rsplit_once(' ') {
                    Some((head, _)) if walls => head.trim_end().to_string(),
                    _ => l.to_string(),
                }
            })
            .collect()
    };
    let local = succeed(
        Command::new(workspace_bin("agent"))
            .args(experiment("local"))
            .args(["--jobs", "2"]),
    );
    let run_sweep = |extra: &[&str]| {
        Command::new(workspace_bin("agent"))
            .args(["sweep", "local", "--jobs", "2"])
            .args(extra)
            .arg("--")
            .args(experiment("swept"))
            .output()
            .unwrap()
    };
    let swept = run_sweep(&[]);
    assert!(swept.status.success(), "{}", said(&swept));
    let swept_out = String::from_utf8_lossy(&swept.stdout).to_string();
    assert!(figures(&local).len() > 10, "{local}");
    assert_eq!(
        figures(&swept_out),
        figures(&local),
        "{swept_out}\n---\n{local}"
    );
    // Flight 5 (seed 1, the persistent arm) lost: named, then flown alone.
    std::fs::remove_dir_all(dir.join("swept/persistent/seed2")).unwrap();
    collect_names_lost_task(&dir.join("swept"), 5, "never flown");
    let again = run_sweep(&["--tasks", "5"]);
    assert!(again.status.success(), "{}", said(&again));
    assert_eq!(
        figures(&String::from_utf8_lossy(&again.stdout)),
        figures(&local)
    );
}
