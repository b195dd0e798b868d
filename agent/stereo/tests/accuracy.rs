//! Accuracy on the twin, where ground truth is exact: bad-1.0 rate and end-point
//! error over pixels with valid ground truth, per context; and on a real
//! Middlebury pair, side by side with OpenCV's StereoSGBM.

use sim::{CameraPose, Context, Renderer, StereoFrame, StereoRig, World};
use stereo::{GrayImage, Paths, SgmParams};

/// (bad-1.0 rate among pixels the matcher marked valid, EPE, density) against ground truth.
pub fn score(
    d: &stereo::Disparity,
    f: &StereoFrame,
    rig: &StereoRig,
    margin: usize,
) -> (f64, f64, f64) {
    let gt = f.disparity(rig);
    let s = stereo::eval::score(&d.disp, &d.valid, &gt, f.width, margin);
    (s.bad1, s.epe, s.density)
}

fn pair(
    ctx: &Context,
    seed: u64,
    w: usize,
    h: usize,
    pose: [f64; 4],
) -> (GrayImage, GrayImage, StereoFrame, StereoRig) {
    let rig = StereoRig::with_size(w, h);
    let world = World::generate(ctx, seed);
    let r = Renderer::new(rig, 1);
    let mut f = StereoFrame::default();
    r.render(
        &world,
        &CameraPose::looking_forward([pose[0], pose[1], pose[2]], pose[3]),
        seed,
        &mut f,
    );
    let l = GrayImage::new(w, h, f.left.clone(), "left").unwrap();
    let rr = GrayImage::new(w, h, f.right.clone(), "right").unwrap();
    (l, rr, f, rig)
}

#[test]
fn sgm_is_accurate_and_dense_on_textured_twin_scenes() {
    for (name, ctx, max_bad) in [
        ("default", Context::default(), 0.03),
        (
            "cluttered",
            Context {
                obstacle_count: 30,
                obstacle_size: 0.5,
                ..Context::default()
            },
            0.03,
        ),
        (
            "noisy",
            Context {
                pixel_noise: 6.0,
                ..Context::default()
            },
            0.08,
        ),
    ] {
        for paths in [Paths::Eight, Paths::Four] {
            let (l, r, f, rig) = pair(&ctx, 3, 320, 240, [1.0, 0.2, 1.3, 0.1]);
            let prm = SgmParams {
                max_disp: 64,
                paths,
                ..SgmParams::default()
            };
            let d = stereo::sgm::match_pair(&l, &r, &prm).unwrap();
            let (bad, epe, density) = score(&d, &f, &rig, 3);
            eprintln!(
                "{name} {paths:?}: bad-1.0 {:.2} %, EPE {epe:.3} px, density {:.1} %",
                bad * 100.0,
                density * 100.0
            );
            assert!(bad < max_bad, "{name} {paths:?}: bad-1.0 {bad}");
            assert!(epe < 0.5, "{name} {paths:?}: EPE {epe}");
            assert!(density > 0.7, "{name} {paths:?}: density {density}");
        }
    }
}

#[test]
fn block_matching_is_accurate_on_texture() {
    let (l, r, f, rig) = pair(&Context::default(), 5, 320, 240, [1.0, 0.0, 1.3, 0.0]);
    let prm = SgmParams {
        max_disp: 64,
        ..SgmParams::default()
    };
    let bm = stereo::bm::match_pair(&l, &r, &prm, 7).unwrap();
    let sgm = stereo::sgm::match_pair(&l, &r, &prm).unwrap();
    let (bad_bm, _, dens_bm) = score(&bm, &f, &rig, 3);
    let (bad_sgm, _, dens_sgm) = score(&sgm, &f, &rig, 3);
    eprintln!(
        "bm: bad-1.0 {:.2} %, density {:.1} %; sgm: bad-1.0 {:.2} %, density {:.1} %",
        bad_bm * 100.0,
        dens_bm * 100.0,
        bad_sgm * 100.0,
        dens_sgm * 100.0
    );
    assert!(bad_bm < 0.05, "{bad_bm}");
    assert!(dens_bm > 0.6, "{dens_bm}");
}

#[test]
fn featureless_surfaces_are_invalid_not_garbage() {
    // No texture and no noise: walls are flat grey; only shading edges carry information.
    let ctx = Context {
        texture_contrast: 0.0,
        pixel_noise: 0.0,
        obstacle_count: 0,
        ..Context::default()
    };
    let (l, r, f, rig) = pair(&ctx, 2, 320, 240, [1.0, 0.0, 1.3, 0.0]);
    let d = stereo::sgm::match_pair(
        &l,
        &r,
        &SgmParams {
            max_disp: 64,
            ..SgmParams::default()
        },
    )
    .unwrap();
    let (bad, _, density) = score(&d, &f, &rig, 3);
    eprintln!(
        "featureless: density {:.1} %, bad-1.0 of the valid {:.1} %",
        density * 100.0,
        bad * 100.0
    );
    assert!(
        density < 0.1,
        "flat walls should not be matched: density {density}"
    );
    assert!(bad < 0.2, "what is marked valid must be right: {bad}");
}

#[test]
fn disparity_turns_into_exact_depth() {
    // A wall 4 m ahead: disparity f·B/Z = 160 * 0.1 / 4 = 4 px at 320x240.
    let ctx = Context {
        obstacle_count: 0,
        room_width: 20.0,
        ..Context::default()
    };
    let (l, r, _f, rig) = pair(&ctx, 1, 320, 240, [16.0, 0.0, 1.5, 0.0]);
    let d = stereo::sgm::match_pair(
        &l,
        &r,
        &SgmParams {
            max_disp: 32,
            ..SgmParams::default()
        },
    )
    .unwrap();
    let z = d.depth(rig.intrinsics.fx, rig.baseline);
    let centre: Vec<f32> = (100..140)
        .flat_map(|y| (140..180).map(move |x| (x, y)))
        .map(|(x, y)| z[y * 320 + x])
        .filter(|v| v.is_finite())
        .collect();
    assert!(centre.len() > 1000);
    let mean = centre.iter().sum::<f32>() / centre.len() as f32;
    assert!((mean - 4.0).abs() < 0.05, "{mean}");
}

#[test]
#[ignore = "profiling aid: cargo test --release -p stereo --test accuracy -- --ignored"]
fn profile_small_frames() {
    let (l, r, _f, _rig) = pair(&Context::default(), 3, 160, 120, [1.0, 0.2, 1.3, 0.1]);
    let mut m = stereo::Sgm::new(SgmParams {
        max_disp: 32,
        ..SgmParams::default()
    })
    .unwrap();
    let t0 = std::time::Instant::now();
    for _ in 0..300 {
        m.match_pair(&l, &r).unwrap();
    }
    eprintln!(
        "{:.2} ms per frame",
        t0.elapsed().as_secs_f64() * 1000.0 / 300.0
    );
}

/// OpenCV's StereoSGBM (the bench's settings and script) on one pair: its disparities.
fn opencv_sgbm(l: &GrayImage, r: &GrayImage, dn: usize, mode: &str) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!(
        "stereo-real-{}-{}-{mode}",
        std::process::id(),
        l.width
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pair000_left.raw"), &l.data).unwrap();
    std::fs::write(dir.join("pair000_right.raw"), &r.data).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/opencv_sgbm.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .args([l.width, l.height, dn, 1].map(|v| v.to_string()))
        .args([mode, "0"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "OpenCV failed (tests/prepare.sh installs opencv-python-headless<5): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read(dir.join("pair000_opencv.f32")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Middlebury's Aloe (real cameras, ground truth from structured light), at a
/// quarter and half size: our matcher, with 8 and with 4 paths, is not worse than
/// OpenCV's StereoSGBM in either mode on bad-1.0, bad-2.0 and end-point error, and
/// at least as dense.
#[test]
fn on_a_real_middlebury_pair_sgm_beats_opencv_sgbm() {
    let dir = std::path::Path::new(stereo::eval::OPENCV_SAMPLES);
    assert!(
        dir.join("aloeGT.png").exists(),
        "{} has no aloeGT.png: run tests/prepare.sh (installs opencv-doc)",
        dir.display()
    );
    for (scale, dn) in [(4, 64), (2, 128)] {
        let pair = stereo::eval::aloe(dir, scale).unwrap();
        let w = pair.left.width;
        let cv: Vec<_> = ["sgbm", "hh"]
            .into_iter()
            .map(|mode| {
                let cv = opencv_sgbm(&pair.left, &pair.right, dn, mode);
                let valid: Vec<bool> = cv.iter().map(|&v| v >= 0.0).collect();
                (mode, stereo::eval::score(&cv, &valid, &pair.gt, w, 3))
            })
            .collect();
        for paths in [Paths::Eight, Paths::Four] {
            let prm = SgmParams {
                max_disp: dn,
                paths,
                ..SgmParams::default()
            };
            let d = stereo::sgm::match_pair(&pair.left, &pair.right, &prm).unwrap();
            let ours = stereo::eval::score(&d.disp, &d.valid, &pair.gt, w, 3);
            for (mode, theirs) in &cv {
                println!("Aloe 1/{scale} {paths:?} vs {mode}: ours {ours:?}\n  OpenCV {theirs:?}");
                let at = format!("1/{scale} {paths:?} vs {mode}: {ours:?} vs {theirs:?}");
                assert!(ours.bad1 <= theirs.bad1, "bad-1.0, {at}");
                assert!(ours.bad2 <= theirs.bad2, "bad-2.0, {at}");
                assert!(ours.epe <= theirs.epe, "EPE, {at}");
                assert!(ours.density >= theirs.density, "density, {at}");
            }
            assert!(
                ours.bad2 < 0.04 && ours.density > 0.75,
                "1/{scale} {paths:?}: {ours:?}"
            );
        }
    }
}
