//! The `calib` command line end to end: synthetic pairs through a distorted rig →
//! detection → stereo calibration → rectified rig files that read back.

use calib::Rig;
use std::process::Command;

fn calib() -> Command {
    Command::new(env!("CARGO_BIN_EXE_calib"))
}

/// Run `calib`, require success, return its standard output.
fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[test]
fn synth_then_stereo_recovers_the_rig_and_writes_opencv_and_ros_files() {
    let dir = std::env::temp_dir().join(format!("calib-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run_ok(
        calib()
            .args(["synth", "--pairs", "8", "--out"])
            .arg(dir.join("in")),
    );
    let stdout = run_ok(
        calib()
            .arg("stereo")
            .arg(dir.join("in"))
            .args(["--board", "9x6", "--square", "0.025", "--out"])
            .arg(dir.join("out/rig.yaml"))
            .arg("--ros")
            .arg(dir.join("out/ros")),
    );
    assert!(stdout.contains("8 of 8 pairs used"), "{stdout}");
    let truth = Rig::load_opencv(&dir.join("in/truth.yaml")).unwrap();
    let rig = Rig::load_opencv(&dir.join("out/rig.yaml")).unwrap();
    assert!(rig.rect.is_some());
    assert!(
        (rig.left.fx() - truth.left.fx()).abs() < 1.0
            && (rig.right.cy() - truth.right.cy()).abs() < 1.0,
        "{rig:?}"
    );
    assert!((rig.baseline() - truth.baseline()).abs() < 1e-3);
    let ros = Rig::load_ros(&dir.join("out/ros")).unwrap();
    assert!((ros.baseline() - rig.baseline()).abs() < 1e-9);
    assert!(dir.join("out/coverage_left.png").is_file());
    // Bad input: a folder without pairs, a board with equal sides.
    let o = calib().arg("stereo").arg(dir.join("out")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("left_*.png"));
    let o = calib()
        .arg("detect")
        .arg(dir.join("in"))
        .args(["--board", "6x6"])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unequal sides"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fisheye_pairs_calibrate_rectify_and_write_equidistant_files() {
    let dir = std::env::temp_dir().join(format!("calib-cli-fe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run_ok(
        calib()
            .args(["synth", "--fisheye", "--pairs", "16", "--out"])
            .arg(dir.join("in")),
    );
    run_ok(
        calib()
            .arg("stereo")
            .arg(dir.join("in"))
            .args(["--fisheye", "--out"])
            .arg(dir.join("out/rig.yaml"))
            .arg("--ros")
            .arg(dir.join("out/ros")),
    );
    let truth = Rig::load_opencv(&dir.join("in/truth.yaml")).unwrap();
    let rig = Rig::load_opencv(&dir.join("out/rig.yaml")).unwrap();
    assert_eq!(rig.left.kind(), calib::LensKind::Fisheye, "{rig:?}");
    assert!(
        (rig.left.fx() / truth.left.fx() - 1.0).abs() < 0.005
            && (rig.right.cy() - truth.right.cy()).abs() < 1.0,
        "{rig:?}"
    );
    assert!((rig.baseline() / truth.baseline() - 1.0).abs() < 0.005);
    // The rectification keeps the central cone of the fisheye view.
    assert!(rig.rect.is_some());
    let ros_left = std::fs::read_to_string(dir.join("out/ros/left.yaml")).unwrap();
    assert!(
        ros_left.contains("distortion_model: equidistant"),
        "{ros_left}"
    );
    let ros = Rig::load_ros(&dir.join("out/ros")).unwrap();
    assert_eq!(ros.left, rig.left);
    std::fs::remove_dir_all(&dir).ok();
}
