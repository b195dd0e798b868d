//! `calib`: stereo calibration from checkerboard images to a rig file that OpenCV
//! and ROS read.

use anyhow::{Context as _, Result, bail};
use calib::detect::find_corners;
use calib::mono::{DistortionTerms, Pose, View, board_points, calibrate};
use calib::rectify::{rectify_map, stereo_rectify};
use calib::stereo::calibrate_stereo;
use calib::{Camera, LensKind, Rig};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "calib",
    version,
    about = "Stereo rig calibration and rectification"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Board geometry shared by the commands.
#[derive(clap::Args, Clone, Copy)]
struct Board {
    /// Inner corners per row x per column, e.g. 9x6.
    #[arg(long, default_value = "9x6", value_parser = parse_board)]
    board: (usize, usize),
    /// Square size (m).
    #[arg(long, default_value_t = 0.025, value_parser = parse_square)]
    square: f64,
}

fn parse_square(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("{} is not a square size in (0, 1] m", s.trim()))
    }
}

fn parse_board(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(['x', 'X'])
        .ok_or("expected COLSxROWS, e.g. 9x6")?;
    let (c, r) = (
        a.parse::<usize>().map_err(|e| e.to_string())?,
        b.parse::<usize>().map_err(|e| e.to_string())?,
    );
    if c < 3 || r < 3 || c == r {
        return Err("a board needs at least 3x3 inner corners and unequal sides (so its orientation is unique)".into());
    }
    // Printed boards have tens of corners a side; a typo such as 1000000x999
    // would size the detector's buffers by it.
    if c > 100 || r > 100 {
        return Err(format!("{c}x{r}: at most 100 inner corners a side"));
    }
    Ok((c, r))
}

#[cfg(feature = "capture")]
fn parse_grid(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(['x', 'X'])
        .ok_or("expected COLSxROWS, e.g. 6x4")?;
    let p = |v: &str| {
        v.parse::<usize>()
            .ok()
            .filter(|n| (1..=32).contains(n))
            .ok_or_else(|| format!("{s:?}: 1..32 cells each way"))
    };
    Ok((p(a)?, p(b)?))
}

#[cfg(feature = "capture")]
fn capture_cmd(
    camera: camera::cli::SourceArgs,
    board: Board,
    out: PathBuf,
    target: usize,
    grid: (usize, usize),
) -> Result<()> {
    use calib::capture::{CaptureSettings, Step, capture};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    if target == 0 {
        bail!("--target must be at least 1");
    }
    let cfg = camera.source()?;
    let mut source = camera::CameraSource::start(&cfg)?;
    eprintln!("capture: {}", source.description());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))
        .context("cannot install the Ctrl-C handler")?;
    let settings = CaptureSettings {
        board: board.board,
        target,
        grid,
        out: out.clone(),
    };
    let mut seen = 0u64;
    let result = capture(&mut source, &settings, &stop, |step, cov| {
        seen += 1;
        match step {
            Step::Saved { n, coverage, poses } => eprintln!(
                "saved pair {n}/{target}: {:.0} % of the image cells covered, {poses}/9 board sizes x tilts\n{}",
                coverage * 100.0,
                cov.left_map()
            ),
            Step::Known if seen.is_multiple_of(30) => {
                eprintln!(
                    "board seen, nothing new: move it to the empty cells (.), nearer or farther, or tilt it"
                )
            }
            Step::NoBoard { left, right } if seen.is_multiple_of(30) => eprintln!(
                "no whole board in {}",
                match (left, right) {
                    (false, false) => "either camera",
                    (true, false) => "the right camera",
                    _ => "the left camera",
                }
            ),
            _ => {}
        }
    });
    let kept = match result {
        Ok(k) => k,
        Err(calib::capture::CaptureError::Camera {
            kept,
            target,
            source: camera::CameraError::EndOfStream,
        }) => {
            eprintln!("capture: the source ended after {kept} of {target} pairs");
            kept
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "kept {kept} pairs in {}; next: calib stereo {} --board {}x{} --square {}",
        out.display(),
        out.display(),
        board.board.0,
        board.board.1,
        board.square
    );
    if kept == 0 {
        bail!("no pair showed the whole board in both cameras");
    }
    Ok(())
}

#[derive(Subcommand)]
enum Cmd {
    /// Detect checkerboard corners in every image (PNG, JPEG) of a folder and report per image.
    Detect {
        /// Folder of images (8-bit grayscale PNG, or JPEG).
        dir: PathBuf,
        #[command(flatten)]
        board: Board,
        /// Write every corner found to this CSV (file, index, x, y), in detection order.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Calibrate one camera from a folder of checkerboard images (PNG, JPEG); writes OpenCV YAML (M1, D1).
    Mono {
        /// Folder of images (8-bit grayscale PNG, or JPEG).
        dir: PathBuf,
        #[command(flatten)]
        board: Board,
        /// Output file.
        #[arg(long, default_value = "out/camera.yaml")]
        out: PathBuf,
        /// Also estimate k3.
        #[arg(long)]
        k3: bool,
        /// Equidistant fisheye lens (Kannala-Brandt k1..k4, OpenCV's cv::fisheye) instead of plumb-bob.
        #[arg(long)]
        fisheye: bool,
    },
    /// Calibrate the rig from left*/right* image pairs (PNG or JPEG, paired in name order); writes the rectified rig
    /// (OpenCV YAML) and, with --ros, camera_info files; prints a report and writes
    /// coverage PNGs next to the output.
    Stereo {
        /// Folder with left*.png/.jpg and right*.png/.jpg (e.g. left_001.png, right_001.png).
        dir: PathBuf,
        #[command(flatten)]
        board: Board,
        /// Output rig file.
        #[arg(long, default_value = "out/rig.yaml")]
        out: PathBuf,
        /// Folder for ROS left.yaml / right.yaml.
        #[arg(long)]
        ros: Option<PathBuf>,
        /// Rectification alpha (0 = valid pixels only, 1 = all source pixels).
        #[arg(long, default_value_t = 0.0)]
        alpha: f64,
        /// Equidistant fisheye lenses (Kannala-Brandt k1..k4) instead of plumb-bob.
        #[arg(long)]
        fisheye: bool,
    },
    /// Write synthetic stereo checkerboard pairs seen through a distorted rig (with the
    /// true rig as truth.yaml), to try the pipeline end to end.
    Synth {
        /// Output folder.
        #[arg(long, default_value = "out/synth")]
        out: PathBuf,
        /// Number of pairs.
        #[arg(long, default_value_t = 15)]
        pairs: usize,
        #[command(flatten)]
        board: Board,
        /// Random seed of the board poses.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Render through equidistant fisheye lenses (about 150° across) instead of plumb-bob.
        #[arg(long)]
        fisheye: bool,
    },
    /// Compute the rectification (R1, R2, P1, P2, Q) of a rig file and write the rig
    /// with it, as OpenCV YAML and as ROS camera_info files.
    Rectify {
        /// Rig in OpenCV FileStorage YAML (M1, D1, M2, D2, R, T, image_width, image_height).
        rig: PathBuf,
        /// 0 keeps only valid pixels, 1 keeps every source pixel.
        #[arg(long, default_value_t = 0.0)]
        alpha: f64,
        /// Output rig file.
        #[arg(long, default_value = "out/rig_rectified.yaml")]
        out: PathBuf,
        /// Folder for ROS left.yaml / right.yaml.
        #[arg(long)]
        ros: Option<PathBuf>,
    },
    /// Capture calibration pairs live from a stereo camera (the agent's camera
    /// presets and pipelines): keeps a pair when both cameras see the whole board
    /// and the view adds coverage (a new part of either image, or a new board size
    /// or tilt), prints the coverage so far, and stops at --target pairs; then run
    /// `calib stereo` on the folder.
    #[cfg(feature = "capture")]
    Capture {
        /// The camera.
        #[command(flatten)]
        camera: camera::cli::SourceArgs,
        #[command(flatten)]
        board: Board,
        /// Folder for left_NNN.png / right_NNN.png.
        #[arg(long, default_value = "out/capture")]
        out: PathBuf,
        /// Pairs to keep.
        #[arg(long, default_value_t = 20)]
        target: usize,
        /// Coverage cells across and down each image.
        #[arg(long, default_value = "6x4", value_parser = parse_grid)]
        grid: (usize, usize),
    },
    /// Megapixels per second of undistort-rectify remapping of 8-bit images.
    Bench {
        /// Seconds per figure.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

fn read_png(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    Ok(calib::png_io::read_gray8(path)?)
}

fn write_png(path: &Path, w: usize, h: usize, data: &[u8]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header()?;
    wr.write_image_data(data)?;
    Ok(())
}

fn pngs(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            calib::png_io::is_image(p)
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Corner coverage and residuals: the image dimmed, each kept corner a white dot whose
/// size grows with its reprojection residual.
fn coverage_png(
    path: &Path,
    w: usize,
    h: usize,
    corners: &[(Vec<[f64; 2]>, Vec<f64>)],
) -> Result<()> {
    let mut img = vec![40u8; w * h];
    for (pts, res) in corners {
        for (p, r) in pts.iter().zip(res) {
            let rad = (1.0 + 4.0 * r).min(6.0) as i64;
            for dy in -rad..=rad {
                for dx in -rad..=rad {
                    let (x, y) = (p[0].round() as i64 + dx, p[1].round() as i64 + dy);
                    if x >= 0
                        && y >= 0
                        && (x as usize) < w
                        && (y as usize) < h
                        && dx * dx + dy * dy <= rad * rad
                    {
                        img[y as usize * w + x as usize] = 255;
                    }
                }
            }
        }
    }
    write_png(path, w, h, &img)
}

fn residuals(cam: &Camera, pose: &Pose, v: &View) -> Vec<f64> {
    use calib::CameraModel;
    v.object
        .iter()
        .zip(&v.image)
        .map(|(o, i)| {
            cam.project(pose.apply(*o))
                .map_or(f64::NAN, |p| (p[0] - i[0]).hypot(p[1] - i[1]))
        })
        .collect()
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        #[cfg(feature = "capture")]
        Cmd::Capture {
            camera,
            board,
            out,
            target,
            grid,
        } => capture_cmd(camera, board, out, target, grid),
        Cmd::Detect { dir, board, csv } => {
            let (cols, rows) = board.board;
            let files = pngs(&dir, "")?;
            let mut ok = 0;
            let mut table = String::from("file,index,x,y\n");
            for f in &files {
                let (img, w, h) = read_png(f)?;
                match find_corners(&img, w, h, cols, rows) {
                    Ok(c) => {
                        ok += 1;
                        let name = f
                            .file_name()
                            .map_or(String::new(), |n| n.to_string_lossy().to_string());
                        for (k, p) in c.iter().enumerate() {
                            table.push_str(&format!("{name},{k},{:.4},{:.4}\n", p[0], p[1]));
                        }
                        println!(
                            "{}: {} corners, first at ({:.2}, {:.2})",
                            f.display(),
                            c.len(),
                            c[0][0],
                            c[0][1]
                        );
                    }
                    Err(e) => println!("{}: rejected: {e}", f.display()),
                }
            }
            println!(
                "{ok} of {} images show the whole {cols}x{rows} board",
                files.len()
            );
            if let Some(path) = csv {
                std::fs::write(&path, table)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("corners written to {}", path.display());
            }
            Ok(())
        }
        Cmd::Mono {
            dir,
            board,
            out,
            k3,
            fisheye,
        } => {
            let (cols, rows) = board.board;
            let obj = board_points(cols, rows, board.square);
            let mut views = Vec::new();
            let mut size = (0, 0);
            for f in pngs(&dir, "")? {
                let (img, w, h) = read_png(&f)?;
                size = (w, h);
                match find_corners(&img, w, h, cols, rows) {
                    Ok(c) => views.push(View {
                        object: obj.clone(),
                        image: c,
                    }),
                    Err(e) => eprintln!("{}: rejected: {e}", f.display()),
                }
            }
            let lens = if fisheye {
                LensKind::Fisheye
            } else {
                LensKind::PlumbBob
            };
            let c = calibrate(&views, DistortionTerms { k3, lens })?;
            println!(
                "{} views used, {} dropped as outliers; RMS {:.3} px",
                c.kept.len(),
                c.dropped.len(),
                c.rms
            );
            let names = match lens {
                LensKind::PlumbBob => ["fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3"],
                LensKind::Fisheye => ["fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4", ""],
            };
            let vals = c.camera.params();
            for i in (0..9).filter(|&i| !names[i].is_empty()) {
                println!(
                    "  {:>2} = {:>12.6} ± {:.6}",
                    names[i], vals[i], c.std_dev[i]
                );
            }
            let rig = Rig {
                width: size.0,
                height: size.1,
                left: c.camera,
                right: c.camera,
                r: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                t: [0.0; 3],
                rect: None,
            };
            if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d)?;
            }
            rig.save_opencv(&out)?;
            println!("wrote {} (M1/D1 hold the camera)", out.display());
            Ok(())
        }
        Cmd::Stereo {
            dir,
            board,
            out,
            ros,
            alpha,
            fisheye,
        } => {
            let (cols, rows) = board.board;
            let obj = board_points(cols, rows, board.square);
            let (lefts, rights) = (pngs(&dir, "left")?, pngs(&dir, "right")?);
            if lefts.is_empty() || lefts.len() != rights.len() {
                bail!(
                    "{}: need as many left_*.png as right_*.png (found {} and {})",
                    dir.display(),
                    lefts.len(),
                    rights.len()
                );
            }
            let (mut lv, mut rv) = (Vec::new(), Vec::new());
            let mut size = (0, 0);
            for (l, r) in lefts.iter().zip(&rights) {
                let ((li, w, h), (ri, w2, h2)) = (read_png(l)?, read_png(r)?);
                if (w, h) != (w2, h2) {
                    bail!(
                        "{} is {w}x{h} but {} is {w2}x{h2}",
                        l.display(),
                        r.display()
                    );
                }
                size = (w, h);
                match (
                    find_corners(&li, w, h, cols, rows),
                    find_corners(&ri, w, h, cols, rows),
                ) {
                    (Ok(a), Ok(b)) => {
                        lv.push(View {
                            object: obj.clone(),
                            image: a,
                        });
                        rv.push(View {
                            object: obj.clone(),
                            image: b,
                        });
                    }
                    (a, b) => eprintln!(
                        "{} / {}: pair rejected ({:?}, {:?})",
                        l.display(),
                        r.display(),
                        a.err(),
                        b.err()
                    ),
                }
            }
            let terms = DistortionTerms {
                k3: false,
                lens: if fisheye {
                    LensKind::Fisheye
                } else {
                    LensKind::PlumbBob
                },
            };
            let c = calibrate_stereo(&lv, &rv, size.0, size.1, terms)?;
            let mut rig = c.rig;
            rig.rect = Some(stereo_rectify(&rig, alpha)?);
            if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d)?;
            }
            rig.save_opencv(&out)?;
            println!(
                "{} of {} pairs used; RMS {:.3} px; epipolar error {:.3} px; baseline {:.4} m",
                c.kept.len(),
                lefts.len(),
                c.rms,
                c.epipolar_error,
                rig.baseline()
            );
            for (name, cam) in [("left", rig.left), ("right", rig.right)] {
                println!(
                    "  {name}: fx {:.2} fy {:.2} cx {:.2} cy {:.2} dist {:?} ({})",
                    cam.fx(),
                    cam.fy(),
                    cam.cx(),
                    cam.cy(),
                    cam.distortion(),
                    cam.kind().name()
                );
            }
            // Coverage and residual pictures per camera, from each camera's own calibration.
            let dir_out = out.parent().map(Path::to_path_buf).unwrap_or_default();
            for (name, views) in [("left", &lv), ("right", &rv)] {
                let m = calibrate(views, terms)?;
                let marks: Vec<(Vec<[f64; 2]>, Vec<f64>)> = m
                    .kept
                    .iter()
                    .zip(&m.poses)
                    .map(|(&i, p)| (views[i].image.clone(), residuals(&m.camera, p, &views[i])))
                    .collect();
                let png = dir_out.join(format!("coverage_{name}.png"));
                coverage_png(&png, size.0, size.1, &marks)?;
                println!(
                    "  {name}: per-view RMS {:?} px; coverage {}",
                    m.view_rms
                        .iter()
                        .map(|v| (v * 1000.0).round() / 1000.0)
                        .collect::<Vec<_>>(),
                    png.display()
                );
            }
            println!("wrote {}", out.display());
            if let Some(d) = ros {
                rig.save_ros(&d, "stereo")?;
                println!("wrote {}/left.yaml and right.yaml", d.display());
            }
            Ok(())
        }
        Cmd::Synth {
            out,
            pairs,
            board,
            seed,
            fisheye,
        } => {
            let (cols, rows) = board.board;
            let (w, h) = (640, 480);
            let (left, right) = if fisheye {
                // About 150° across the 640 px width.
                (
                    Camera::from_coefficients(
                        LensKind::Fisheye,
                        [245.0, 244.0, 321.0, 238.0],
                        &[-0.015, 0.004, -0.001, 0.0002],
                    ),
                    Camera::from_coefficients(
                        LensKind::Fisheye,
                        [242.0, 242.5, 318.0, 242.0],
                        &[-0.012, 0.003, -0.0008, 0.0001],
                    ),
                )
            } else {
                (
                    Camera::from_coefficients(
                        LensKind::PlumbBob,
                        [410.0, 405.0, 321.0, 238.0],
                        &[-0.25, 0.07, 0.001, -0.0005, 0.0],
                    ),
                    Camera::from_coefficients(
                        LensKind::PlumbBob,
                        [402.0, 401.0, 318.0, 242.0],
                        &[-0.24, 0.065, -0.0008, 0.0004, 0.0],
                    ),
                )
            };
            let rot = nalgebra::Rotation3::from_euler_angles(0.01, -0.02, 0.015);
            let t = nalgebra::Vector3::new(-0.12, 0.002, -0.001);
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let mut rng = calib::synthetic::Lcg::new(seed);
            let mut rnd = || rng.symmetric();
            let size = board.square * (cols.max(rows) + 1) as f64;
            // A fisheye's distortion grows with the angle off axis: its boards come
            // closer and spread wider, so that the views reach far into the periphery.
            let (spread, dist) = if fisheye { (0.9, 1.1) } else { (0.15, 1.8) };
            for k in 0..pairs {
                let pl = Pose {
                    rvec: [0.4 * rnd(), 0.4 * rnd(), 0.2 * rnd()],
                    t: [
                        -0.4 * size + spread * size * rnd(),
                        -0.3 * size + 0.66 * spread * size * rnd(),
                        dist * size + 0.3 * size * rnd(),
                    ],
                };
                let rl = nalgebra::Rotation3::new(nalgebra::Vector3::from(pl.rvec));
                let rr = rot * rl;
                let tr = rot * nalgebra::Vector3::from(pl.t) + t;
                let pr = Pose {
                    rvec: rr.scaled_axis().into(),
                    t: tr.into(),
                };
                let (a, _) = calib::synthetic::render_board(
                    &left,
                    &pl,
                    cols,
                    rows,
                    board.square,
                    3.0,
                    w,
                    h,
                    2 * k as u64,
                );
                let (b, _) = calib::synthetic::render_board(
                    &right,
                    &pr,
                    cols,
                    rows,
                    board.square,
                    3.0,
                    w,
                    h,
                    2 * k as u64 + 1,
                );
                write_png(&out.join(format!("left_{k:03}.png")), w, h, &a)?;
                write_png(&out.join(format!("right_{k:03}.png")), w, h, &b)?;
            }
            let m = rot.matrix();
            let truth = Rig {
                width: w,
                height: h,
                left,
                right,
                r: std::array::from_fn(|i| std::array::from_fn(|j| m[(i, j)])),
                t: t.into(),
                rect: None,
            };
            truth.save_opencv(&out.join("truth.yaml"))?;
            println!("wrote {pairs} pairs and truth.yaml to {}", out.display());
            Ok(())
        }
        Cmd::Rectify {
            rig,
            alpha,
            out,
            ros,
        } => {
            let mut r = Rig::load_opencv(&rig)?;
            let rect = stereo_rectify(&r, alpha)?;
            r.rect = Some(rect);
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            r.save_opencv(&out)?;
            println!(
                "rectified: f = {:.2} px, baseline {:.4} m; wrote {}",
                rect.p1[0][0],
                r.baseline(),
                out.display()
            );
            if let Some(dir) = ros {
                r.save_ros(&dir, "stereo")?;
                println!("wrote {}/left.yaml and right.yaml", dir.display());
            }
            Ok(())
        }
        Cmd::Bench { seconds } => {
            for (w, h) in [(640usize, 480usize), (1280, 720)] {
                let mut rig = Rig::ideal(
                    w,
                    h,
                    w as f64 * 0.6,
                    (w as f64 - 1.0) / 2.0,
                    (h as f64 - 1.0) / 2.0,
                    0.1,
                );
                rig.left = Camera::from_coefficients(
                    LensKind::PlumbBob,
                    [rig.left.fx(), rig.left.fy(), rig.left.cx(), rig.left.cy()],
                    &[-0.25, 0.07, 0.0005, -0.0003, 0.0],
                );
                let rect = stereo_rectify(&rig, 0.0)?;
                let map = rectify_map(&rig.left, &rect.r1, &rect.p1, w, h);
                let img: Vec<u8> = (0..w * h).map(|i| ((i * 31) % 251) as u8).collect();
                for threads in [1usize, 2] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()?;
                    let mut rates = Vec::new();
                    let start = Instant::now();
                    pool.install(|| -> Result<()> {
                        while start.elapsed().as_secs_f64() < seconds || rates.len() < 3 {
                            let t0 = Instant::now();
                            let out = map.remap(&img, w, h)?;
                            std::hint::black_box(&out);
                            rates.push((w * h) as f64 / 1e6 / t0.elapsed().as_secs_f64());
                        }
                        Ok(())
                    })?;
                    rates.sort_by(|a, b| a.total_cmp(b));
                    println!(
                        "remap {w}x{h} on {threads} thread(s): {:.0} megapixels/s (median)",
                        rates[rates.len() / 2]
                    );
                }
                // The camera stage's per-frame remap, fixed point on one thread:
                // the SIMD kernels beside gathers alone (the kernel before the
                // windows) and the scalar loop they all equal.
                let fixed = map.fixed(w, h);
                let mut median = [0.0; 3];
                for (m, kernel) in median.iter_mut().zip(0..) {
                    let mut rates = Vec::new();
                    let start = Instant::now();
                    while start.elapsed().as_secs_f64() < seconds || rates.len() < 3 {
                        let t0 = Instant::now();
                        let out = match kernel {
                            0 => fixed.remap(&img)?,
                            1 => fixed.remap_gathers(&img)?,
                            _ => fixed.remap_scalar(&img)?,
                        };
                        std::hint::black_box(&out);
                        rates.push((w * h) as f64 / 1e6 / t0.elapsed().as_secs_f64());
                    }
                    rates.sort_by(|a, b| a.total_cmp(b));
                    *m = rates[rates.len() / 2];
                }
                println!(
                    "remap {w}x{h} in fixed point (the camera stage's) on 1 thread: {:.0} megapixels/s (median; {}, {:.0} % of pixels by windows); gathers alone {:.0} ({:.2}x); scalar loop {:.0} ({:.2}x)",
                    median[0],
                    calib::rectify::FixedRectifyMap::kernel(),
                    100.0 * fixed.window_share(),
                    median[1],
                    median[0] / median[1],
                    median[2],
                    median[0] / median[2],
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_and_square_sizes_are_bounded() {
        assert_eq!(parse_board("9x6"), Ok((9, 6)));
        let e = parse_board("1000000x999").unwrap_err();
        assert!(e.contains("at most 100 inner corners"), "{e}");
        assert!(parse_board("6x6").is_err() && parse_board("2x9").is_err());
        assert_eq!(parse_square("0.025"), Ok(0.025));
        for bad in ["NaN", "inf", "0", "-0.02", "2"] {
            assert!(parse_square(bad).is_err(), "{bad}");
        }
    }
}
