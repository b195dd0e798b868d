//! Calibration on real camera images: OpenCV's sample stereo pairs (Debian's
//! `opencv-doc`, which `tests/prepare.sh` installs), 13 pairs of 640x480 JPEGs of a
//! hand-held 9x6 board with a white margin, in an office with other checkerboards
//! on a monitor.
//!
//! The reference figures are what OpenCV 4.14 printed for the same images
//! (findChessboardCorners + cornerSubPix 11x11 + calibrateCamera + stereoCalibrate
//! with k3 fixed, square 25 mm): stereo RMS 0.445 px, left fx 536.40 fy 536.24
//! cx 342.49 cy 235.49, right fx 540.08 fy 539.61 cx 328.04 cy 247.26, baseline
//! 83.5 mm. OpenCV's optimiser fed with our corners gave RMS 0.191 px, left fx
//! 533.88, baseline 83.2 mm.

use std::path::{Path, PathBuf};
use std::process::Command;

const DATA: &str = "/usr/share/doc/opencv-doc/examples/data";

fn sample_pairs() -> PathBuf {
    assert!(
        Path::new(DATA).join("left01.jpg").is_file(),
        "OpenCV's sample images are missing: install Debian's opencv-doc (tests/prepare.sh does)"
    );
    let dir = std::env::temp_dir().join(format!("calib-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(DATA).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        // Numbered pairs only (left01.jpg ... right14.jpg).
        let numbered = name.len() > 6 && name.as_bytes()[name.len() - 5].is_ascii_digit();
        if (name.starts_with("left") || name.starts_with("right"))
            && name.ends_with(".jpg")
            && numbered
        {
            std::fs::copy(&p, dir.join(&name)).unwrap();
        }
    }
    dir
}

fn calib() -> Command {
    Command::new(env!("CARGO_BIN_EXE_calib"))
}

#[test]
fn every_real_view_is_detected_and_the_rig_calibrates_like_opencv() {
    let dir = sample_pairs();
    let out = calib()
        .arg("detect")
        .arg(&dir)
        .args(["--board", "9x6", "--csv"])
        .arg(dir.join("corners.csv"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("26 of 26 images show the whole 9x6 board"),
        "{text}"
    );
    // Each view's corners are ordered as a grid: along every row of 9 the steps
    // between neighbours point the same way and change smoothly.
    let csv = std::fs::read_to_string(dir.join("corners.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 26 * 54);
    let pts: Vec<(String, f64, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    for view in pts.chunks(54) {
        for row in view.chunks(9) {
            let steps: Vec<(f64, f64)> = row
                .windows(2)
                .map(|w| (w[1].1 - w[0].1, w[1].2 - w[0].2))
                .collect();
            let len: Vec<f64> = steps.iter().map(|s| s.0.hypot(s.1)).collect();
            let first = steps[0];
            assert!(
                steps.iter().all(|s| s.0 * first.0 + s.1 * first.1 > 0.0),
                "{}: a row turns back",
                view[0].0
            );
            // Perspective changes the step smoothly: neighbouring steps within 30 %.
            assert!(
                len.windows(2)
                    .all(|w| w[1] / w[0] < 1.3 && w[0] / w[1] < 1.3),
                "{}: uneven row {len:?}",
                view[0].0
            );
        }
    }

    let rig = dir.join("rig.yaml");
    let out = calib()
        .arg("stereo")
        .arg(&dir)
        .args(["--board", "9x6", "--square", "0.025", "--out"])
        .arg(&rig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("13 of 13 pairs used"), "{text}");
    let num = |after: &str| -> f64 {
        text.split(after)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.trim_end_matches([';', ',']).parse().ok())
            .unwrap_or_else(|| panic!("no `{after}` in:\n{text}"))
    };
    let rms = num("RMS ");
    assert!(
        rms < 0.25,
        "stereo RMS {rms} px (OpenCV's own pipeline: 0.445 px)"
    );
    let baseline = num("baseline ");
    assert!(
        (baseline - 0.0835).abs() < 0.0008,
        "baseline {baseline} m (OpenCV: 0.0835 m)"
    );
    let fx = num("left: fx ");
    assert!(
        (fx - 536.40).abs() / 536.40 < 0.01,
        "left fx {fx} (OpenCV: 536.40)"
    );
    let cx = num("cx ");
    assert!((cx - 342.49).abs() < 3.0, "left cx {cx} (OpenCV: 342.49)");
    let _ = std::fs::remove_dir_all(&dir);
}
