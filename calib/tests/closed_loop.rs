//! The loop closed: checkerboard images rendered through a distorted camera (a
//! plumb-bob lens, and a 150° equidistant fisheye) are detected and calibrated, and
//! the camera comes back.

use calib::detect::find_corners;
use calib::mono::{DistortionTerms, MonoCalibration, Pose, View, board_points, calibrate};
use calib::synthetic::render_board;
use calib::{Camera, CameraModel, LensKind};

/// Render 16 views of a 9x6 board (2.5 cm squares) through `truth` at seeded poses
/// (`(x, y, z)` centre of the board position and the spread around it), detect
/// them and calibrate with `terms`.
fn detect_and_calibrate(
    truth: &Camera,
    centre: [f64; 3],
    spread: [f64; 3],
    terms: DistortionTerms,
) -> (MonoCalibration, Vec<View>) {
    let mut views = Vec::new();
    let mut rejected = 0;
    let mut rng = calib::synthetic::Lcg::new(11u64);
    let mut rnd = || rng.symmetric();
    let board = board_points(9, 6, 0.025);
    for k in 0..16 {
        let pose = Pose {
            rvec: [0.4 * rnd(), 0.4 * rnd(), 0.2 * rnd()],
            t: [
                centre[0] + spread[0] * rnd(),
                centre[1] + spread[1] * rnd(),
                centre[2] + spread[2] * rnd(),
            ],
        };
        let (img, corners) = render_board(truth, &pose, 9, 6, 0.025, 3.0, 640, 480, k);
        match find_corners(&img, 640, 480, 9, 6) {
            Ok(found) => {
                // Detections start at the top-left corner; the truth may be listed from the other end.
                let flip = (found[0][0] - corners[0][0]).hypot(found[0][1] - corners[0][1])
                    > (found[0][0] - corners[53][0]).hypot(found[0][1] - corners[53][1]);
                let mut obj = board.clone();
                if flip {
                    obj.reverse();
                }
                views.push(View {
                    object: obj,
                    image: found,
                });
            }
            Err(_) => rejected += 1,
        }
    }
    assert!(
        views.len() >= 10,
        "only {} views detected ({rejected} rejected)",
        views.len()
    );
    let c = calibrate(&views, terms).unwrap();
    eprintln!(
        "{:?}: {} views, rms {:.3} px, camera {:?}, σ {:?}",
        terms.lens,
        views.len(),
        c.rms,
        c.camera,
        c.std_dev
    );
    (c, views)
}

#[test]
fn detect_then_calibrate_recovers_the_camera() {
    let truth = Camera::from_coefficients(
        LensKind::PlumbBob,
        [410.0, 405.0, 321.0, 238.0],
        &[-0.25, 0.07, 0.001, -0.0005, 0.0],
    );
    let (c, _) = detect_and_calibrate(
        &truth,
        [-0.1, -0.065, 0.42],
        [0.04, 0.03, 0.08],
        DistortionTerms::default(),
    );
    let (e, t) = (c.camera, truth);
    assert!(c.rms < 0.2, "rms {}", c.rms);
    assert!(
        (e.fx() - t.fx()).abs() < 1.5 && (e.fy() - t.fy()).abs() < 1.5,
        "{e:?}"
    );
    assert!(
        (e.cx() - t.cx()).abs() < 1.5 && (e.cy() - t.cy()).abs() < 1.5,
        "{e:?}"
    );
    assert!(
        (e.distortion()[0] - t.distortion()[0]).abs() < 0.01,
        "{e:?}"
    );
}

#[test]
fn a_fisheye_lens_is_detected_calibrated_and_projects_like_the_truth() {
    // About 150° across 640 px; boards near and spread wide, into the periphery.
    let truth = Camera::from_coefficients(
        LensKind::Fisheye,
        [245.0, 244.0, 321.0, 238.0],
        &[-0.015, 0.004, -0.001, 0.0002],
    );
    let terms = DistortionTerms {
        k3: false,
        lens: LensKind::Fisheye,
    };
    let (c, views) = detect_and_calibrate(&truth, [-0.1, -0.065, 0.24], [0.2, 0.13, 0.05], terms);
    let (e, t) = (c.camera, truth);
    assert_eq!(e.kind(), LensKind::Fisheye);
    assert!(c.rms < 0.2, "rms {}", c.rms);
    for (a, b, name) in [(e.fx(), t.fx(), "fx"), (e.fy(), t.fy(), "fy")] {
        assert!((a / b - 1.0).abs() < 0.005, "{name} {a} vs {b}");
    }
    assert!(
        (e.cx() - t.cx()).abs() < 1.0 && (e.cy() - t.cy()).abs() < 1.0,
        "{e:?}"
    );
    // Wherever the views reached, the estimate projects rays where the true lens does.
    let reach = views
        .iter()
        .flat_map(|v| &v.image)
        .filter_map(|px| t.unproject(*px))
        .map(|r| r[0].hypot(r[1]).atan2(r[2]).to_degrees())
        .fold(0.0f64, f64::max);
    assert!(reach > 55.0, "the views reach only {reach:.1}° off axis");
    let mut worst = 0.0f64;
    for deg in (0..=reach.floor() as usize).step_by(5) {
        for az in (0..360).step_by(30) {
            let (th, ph) = ((deg as f64).to_radians(), (az as f64).to_radians());
            let ray = [th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()];
            let (a, b) = (e.project(ray).unwrap(), t.project(ray).unwrap());
            worst = worst.max((a[0] - b[0]).hypot(a[1] - b[1]));
        }
    }
    eprintln!(
        "fisheye: views reach {reach:.1}° off axis; worst projection difference within: {worst:.3} px"
    );
    assert!(worst < 0.5, "projections differ by up to {worst} px");
}
