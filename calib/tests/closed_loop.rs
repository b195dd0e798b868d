//! The loop closed: checkerboard images rendered through a distorted camera are
//! detected and calibrated, and the camera comes back.

use calib::PinholeRadTan;
use calib::detect::find_corners;
use calib::mono::{DistortionTerms, Pose, View, board_points, calibrate};
use calib::synthetic::render_board;

#[test]
fn detect_then_calibrate_recovers_the_camera() {
    let truth = PinholeRadTan {
        fx: 410.0,
        fy: 405.0,
        cx: 321.0,
        cy: 238.0,
        dist: [-0.25, 0.07, 0.001, -0.0005, 0.0],
    };
    let mut views = Vec::new();
    let mut rejected = 0;
    let mut rng = calib::synthetic::Lcg::new(11u64);
    let mut rnd = || rng.symmetric();
    let board = board_points(9, 6, 0.025);
    for k in 0..16 {
        let pose = Pose {
            rvec: [0.4 * rnd(), 0.4 * rnd(), 0.2 * rnd()],
            t: [
                -0.1 + 0.04 * rnd(),
                -0.065 + 0.03 * rnd(),
                0.42 + 0.08 * rnd(),
            ],
        };
        let (img, corners) = render_board(&truth, &pose, 9, 6, 0.025, 3.0, 640, 480, k);
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
    let c = calibrate(&views, DistortionTerms { k3: false }).unwrap();
    eprintln!(
        "rms {:.3} px, camera {:?}, σ {:?}",
        c.rms, c.camera, c.std_dev
    );
    assert!(c.rms < 0.2, "rms {}", c.rms);
    assert!(
        (c.camera.fx - truth.fx).abs() < 1.5 && (c.camera.fy - truth.fy).abs() < 1.5,
        "{:?}",
        c.camera
    );
    assert!(
        (c.camera.cx - truth.cx).abs() < 1.5 && (c.camera.cy - truth.cy).abs() < 1.5,
        "{:?}",
        c.camera
    );
    assert!(
        (c.camera.dist[0] - truth.dist[0]).abs() < 0.01,
        "{:?}",
        c.camera.dist
    );
}
