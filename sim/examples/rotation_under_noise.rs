//! How well a stereo calibration pins the rotation between the cameras under
//! corner noise, for a board size and a way of holding it: many draws of 20
//! views (whole board in both images) of the twin's 640x480 rig, 0.3 px of
//! Gaussian noise on every exact corner, calibrated; prints the rotation error's
//! mean, median and largest value and its RMS about each axis.
//!
//! ```sh
//! cargo run --release -p sim --example rotation_under_noise -- COLS ROWS SQUARE SPAN TILT DRAWS
//! cargo run --release -p sim --example rotation_under_noise -- 9 6 0.05 0.55 0.55 20
//! ```
//! SPAN: share of the image width the board spans; TILT: largest tilt (rad).

use anyhow::{Context, Result, bail};
use calib::CameraModel;
use calib::mono::{DistortionTerms, Pose, View, board_points};
use calib::stereo::calibrate_stereo;
use sim::rng::Rng;
use sim::target::{camera, distorted_rig};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        bail!("usage: rotation_under_noise COLS ROWS SQUARE SPAN TILT DRAWS");
    }
    let num = |i: usize| -> Result<f64> {
        args[i]
            .parse()
            .with_context(|| format!("argument {}: not a number: {}", i + 1, args[i]))
    };
    let (cols, rows, square) = (num(0)? as usize, num(1)? as usize, num(2)?);
    let (span, tilt, draws) = (num(3)?, num(4)?, num(5)? as usize);
    if cols < 3 || rows < 3 || square <= 0.0 || span <= 0.0 || draws == 0 {
        bail!("need COLS, ROWS >= 3 and positive SQUARE, SPAN, DRAWS");
    }
    let rig = distorted_rig();
    let cam = camera(&rig);
    let (w, h) = (640.0, 480.0);
    let obj = board_points(cols, rows, square);
    let size = square * (cols.max(rows) + 1) as f64;
    let z = rig.intrinsics.fx * size / (span * w);
    let (bw, bh) = (square * (cols - 1) as f64, square * (rows - 1) as f64);
    let (mut angles, mut axes) = (Vec::new(), Vec::new());
    for draw in 0..draws {
        let mut rng = Rng::new(100 + draw as u64);
        let (mut lv, mut rv) = (Vec::new(), Vec::new());
        let mut tries = 0;
        while lv.len() < 20 {
            tries += 1;
            if tries > 5000 {
                bail!("no 20 views show the whole board: hold it further away (smaller SPAN)");
            }
            let mut r = || rng.range(-1.0, 1.0);
            let rvec = [tilt * r(), tilt * r(), 0.2 * r()];
            let t = [
                -bw / 2.0 + rig.baseline / 2.0 + 0.3 * size * r(),
                -bh / 2.0 + 0.22 * size * r(),
                z * (1.0 + 0.15 * r()),
            ];
            let left = Pose { rvec, t };
            let right = Pose {
                rvec,
                t: [t[0] - rig.baseline, t[1], t[2]],
            };
            let project = |p: &Pose| -> Option<Vec<[f64; 2]>> {
                obj.iter()
                    .map(|&o| {
                        let x = p.apply(o);
                        let px = cam.project(x).filter(|_| x[2] > 0.0)?;
                        let inside =
                            px[0] > 2.0 && px[1] > 2.0 && px[0] < w - 3.0 && px[1] < h - 3.0;
                        inside.then_some(px)
                    })
                    .collect()
            };
            if let (Some(a), Some(b)) = (project(&left), project(&right)) {
                let mut noisy = |v: Vec<[f64; 2]>| -> Vec<[f64; 2]> {
                    v.into_iter()
                        .map(|p| [p[0] + 0.3 * rng.normal(), p[1] + 0.3 * rng.normal()])
                        .collect()
                };
                lv.push(View {
                    object: obj.clone(),
                    image: noisy(a),
                });
                rv.push(View {
                    object: obj.clone(),
                    image: noisy(b),
                });
            }
        }
        let c = calibrate_stereo(&lv, &rv, 640, 480, DistortionTerms::default())?;
        let r = c.rig.r;
        let tr = r[0][0] + r[1][1] + r[2][2];
        angles.push(((tr - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees());
        axes.push([
            (r[2][1] - r[1][2]).to_degrees() / 2.0,
            (r[0][2] - r[2][0]).to_degrees() / 2.0,
            (r[1][0] - r[0][1]).to_degrees() / 2.0,
        ]);
    }
    let mut sorted = angles.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let rms = |k: usize| {
        (axes.iter().map(|a: &[f64; 3]| a[k] * a[k]).sum::<f64>() / axes.len() as f64).sqrt()
    };
    println!(
        "{cols}x{rows} board, square {square} m, span {span}, tilt {tilt} rad, {draws} draws: \
         rotation off by {mean:.4}° on average, median {:.4}°, at most {:.4}°, \
         within 0.05° in {} of {draws}; RMS about x {:.4}°, y {:.4}°, z {:.4}°",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        sorted.iter().filter(|&&a| a < 0.05).count(),
        rms(0),
        rms(1),
        rms(2)
    );
    Ok(())
}
