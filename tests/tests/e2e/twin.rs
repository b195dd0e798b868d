//! The twin across processes and crates: the same seed renders the same bytes in
//! separate processes, and the agent's depth scan of a rendered frame agrees with
//! the twin's geometry.

use e2e_tests::{temp_dir, workspace_bin};
use sim::env::{Action, Env, EnvConfig};
use std::process::Command;

#[test]
fn rendering_is_identical_across_processes() {
    let dir = temp_dir("det");
    for run in ["a", "b"] {
        let o = Command::new(workspace_bin("sim"))
            .args(["render", "--seed", "9", "--out"])
            .arg(dir.join(run))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for f in ["left.png", "right.png", "depth_mm.png"] {
        let a = std::fs::read(dir.join("a").join(f)).unwrap();
        let b = std::fs::read(dir.join("b").join(f)).unwrap();
        assert_eq!(a, b, "{f} differs between processes");
    }
}

#[test]
fn agent_depth_scan_of_a_rendered_frame_matches_the_twins_geometry() {
    // A wall 4 m ahead and nothing else: every column of the agent's scan reads 4 m
    // (to the depth of the wall, Z, not the slant range).
    let ctx = sim::Context {
        obstacle_count: 0,
        room_length: 6.0,
        room_width: 20.0,
        ..sim::Context::default()
    };
    let mut env = Env::new(EnvConfig {
        render: true,
        ..EnvConfig::default()
    })
    .unwrap();
    let mut obs = env.reset(&ctx, 4).unwrap();
    // Turn to face the far wall squarely, then check.
    for _ in 0..90 {
        let yaw = obs.attitude[2] as f64;
        obs = env
            .step(&Action::Velocity {
                forward: 0.0,
                left: 0.0,
                up: 0.0,
                yaw_rate: -2.0 * yaw,
            })
            .unwrap()
            .obs;
    }
    assert!(obs.attitude[2].abs() < 0.01);
    let frame = obs.stereo.as_ref().unwrap();
    let shape = agent::mono::MonoShape::default();
    let (scan, valid) =
        agent::mono::depth_scan(&frame.depth, frame.width, frame.height, &shape).unwrap();
    let expect = (6.0 - obs.pose.position[0]) as f32;
    assert!(valid.iter().all(|&v| v));
    for (c, z) in scan.iter().enumerate() {
        assert!((z - expect).abs() < 0.05, "column {c}: {z} vs {expect}");
    }
}
