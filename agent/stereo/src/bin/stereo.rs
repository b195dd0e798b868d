//! `stereo`: match a pair, or benchmark the matchers against OpenCV's StereoSGBM.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use sim::{CameraPose, Context, Renderer, StereoFrame, StereoRig, World};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use stereo::eval::Score;
use stereo::{Disparity, GrayImage, Paths, SgmParams};

#[derive(Parser)]
#[command(
    name = "stereo",
    version,
    about = "Semi-global and block stereo matching"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Match a rectified pair of 8-bit grayscale PNGs; writes a disparity PNG (disparity x 4, 0 = invalid).
    Match {
        /// Left image.
        left: PathBuf,
        /// Right image.
        right: PathBuf,
        /// Disparities searched (multiple of 16).
        #[arg(long, default_value_t = 64)]
        max_disp: usize,
        /// Four aggregation paths instead of eight.
        #[arg(long)]
        four_paths: bool,
        /// Output PNG.
        #[arg(long, default_value = "out/disparity.png")]
        out: PathBuf,
    },
    /// Frames per second and accuracy on twin pairs and a real Middlebury pair, side by side with OpenCV StereoSGBM.
    Bench {
        /// Seconds per timing.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Skip OpenCV (when `opencv-python-headless<5` is not installed).
        #[arg(long)]
        no_opencv: bool,
        /// Python interpreter with cv2.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Image widths to run (160: 160x120/32 disparities, 320: 320x240/64, 640: 640x480/128).
        #[arg(long, value_delimiter = ',', default_values_t = [160, 320, 640])]
        sizes: Vec<usize>,
        /// Folder with Middlebury's Aloe pair as OpenCV's samples ship it
        /// (aloeL.jpg, aloeR.jpg, aloeGT.png); skipped when missing.
        #[arg(long, default_value = stereo::eval::OPENCV_SAMPLES)]
        real: PathBuf,
    },
}

fn read_gray(path: &Path, which: &'static str) -> Result<GrayImage> {
    let (data, w, h) = calib::png_io::read_gray8(path)?;
    Ok(GrayImage::new(w, h, data, which)?)
}

/// Frames per second of `f` on `threads` threads: the median frame time in each of
/// three windows of `seconds / 3`, the best window kept (on a shared machine a
/// neighbour's burst slows a whole window; the OpenCV script does the same).
fn time_fps(seconds: f64, threads: usize, mut f: impl FnMut() -> Result<()> + Send) -> Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let mut times = Vec::new();
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < seconds / 3.0 || times.len() < 3 {
                let t0 = Instant::now();
                f()?;
                times.push(t0.elapsed().as_secs_f64());
            }
            times.sort_by(|a, b| a.total_cmp(b));
            best = best.min(times[times.len() / 2]);
        }
        Ok(1.0 / best)
    })
}

fn twin_pairs(w: usize, h: usize, n: usize) -> (Vec<StereoFrame>, StereoRig) {
    let rig = StereoRig::with_size(w, h);
    let r = Renderer::new(rig, 1);
    let contexts = [
        Context::default(),
        Context {
            obstacle_count: 30,
            obstacle_size: 0.5,
            ..Context::default()
        },
    ];
    let frames = (0..n)
        .map(|i| {
            let ctx = &contexts[i % contexts.len()];
            let world = World::generate(ctx, i as u64);
            let mut f = StereoFrame::default();
            let pose = CameraPose::looking_forward(
                [1.0 + 0.5 * i as f64, 0.3 * (i % 3) as f64 - 0.3, 1.3],
                0.15 * ((i % 5) as f64 - 2.0),
            );
            r.render(&world, &pose, i as u64, &mut f);
            f
        })
        .collect();
    (frames, rig)
}

/// Pairs with ground truth (NaN = unknown) at one size, matched side by side.
struct Workload {
    title: String,
    dn: usize,
    pairs: Vec<(GrayImage, GrayImage, Vec<f32>)>,
}

fn twin_workload(w: usize) -> Result<Workload> {
    let (h, dn) = match w {
        160 => (120, 32),
        320 => (240, 64),
        640 => (480, 128),
        other => bail!("--sizes: {other} is not one of 160, 320, 640"),
    };
    let (frames, rig) = twin_pairs(w, h, 6);
    let pairs = frames
        .iter()
        .map(|f| {
            let gt = f.disparity(&rig);
            Ok((
                GrayImage::new(w, h, f.left.clone(), "left")?,
                GrayImage::new(w, h, f.right.clone(), "right")?,
                gt,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Workload {
        title: format!("twin {w}x{h}, {dn} disparities (6 pairs)"),
        dn,
        pairs,
    })
}

fn bench(seconds: f64, no_opencv: bool, python: &str, sizes: &[usize], real: &Path) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/opencv_sgbm.py");
    println!(
        "stereo bench: twin pairs (default and cluttered rooms) and Middlebury's Aloe (real); census 5x5; AVX2 kernels: {}",
        if stereo::sgm::uses_avx2() {
            "yes"
        } else {
            "no (baseline)"
        }
    );
    println!(
        "OpenCV StereoSGBM: blockSize 5, P1 8*25, P2 32*25, uniqueness 8, speckle 40/2, disp12MaxDiff 1; MODE_SGBM (5 paths) and MODE_HH (8 paths)"
    );
    let opencv = (!no_opencv).then_some((python, script.as_path()));
    for &w in sizes {
        run_workload(&twin_workload(w)?, seconds, opencv)?;
    }
    if !real.join("aloeL.jpg").exists() {
        println!(
            "
Middlebury Aloe: not found in {} (install Debian's opencv-doc); skipped",
            real.display()
        );
        return Ok(());
    }
    for (scale, dn) in [(4, 64), (2, 128)] {
        let pair = stereo::eval::aloe(real, scale)?;
        let (w, h) = (pair.left.width, pair.left.height);
        let work = Workload {
            title: format!(
                "Middlebury Aloe (real, opencv-doc) at 1/{scale}: {w}x{h}, {dn} disparities"
            ),
            dn,
            pairs: vec![(pair.left, pair.right, pair.gt)],
        };
        run_workload(&work, seconds, opencv)?;
    }
    Ok(())
}

/// Our matchers, then OpenCV's two modes, on one workload: accuracy and frames per
/// second on 1 and 2 threads, with our 8-path matcher's speed ratio to each.
fn run_workload(work: &Workload, seconds: f64, opencv: Option<(&str, &Path)>) -> Result<()> {
    let dn = work.dn;
    let (w, h) = (work.pairs[0].0.width, work.pairs[0].0.height);
    println!(
        "
{}:",
        work.title
    );
    let mut sgm8 = stereo::Sgm::new(SgmParams {
        max_disp: dn,
        ..SgmParams::default()
    })?;
    let mut sgm4 = stereo::Sgm::new(SgmParams {
        max_disp: dn,
        paths: Paths::Four,
        ..SgmParams::default()
    })?;
    type Matcher<'a> = Box<dyn FnMut(&GrayImage, &GrayImage) -> Result<Disparity> + Send + 'a>;
    let mut ours: Vec<(&str, Matcher)> = vec![
        (
            "ours SGM 8 paths",
            Box::new(|l, r| Ok(sgm8.match_pair(l, r)?)),
        ),
        (
            "ours SGM 4 paths",
            Box::new(|l, r| Ok(sgm4.match_pair(l, r)?)),
        ),
        (
            "ours block 7x7",
            Box::new(move |l, r| {
                Ok(stereo::bm::match_pair(
                    l,
                    r,
                    &SgmParams {
                        max_disp: dn,
                        ..SgmParams::default()
                    },
                    7,
                )?)
            }),
        ),
    ];
    let mut fps_ours = [[0.0; 2]; 2];
    for (name, f) in ours.iter_mut() {
        let mut sc = Vec::new();
        for (l, r, gt) in &work.pairs {
            let d = f(l, r)?;
            sc.push(stereo::eval::score(&d.disp, &d.valid, gt, w, 3));
        }
        let mut fps = [0.0; 2];
        for (k, threads) in [1usize, 2].into_iter().enumerate() {
            let mut i = 0;
            fps[k] = time_fps(seconds, threads, || {
                let (l, r, _) = &work.pairs[i % work.pairs.len()];
                i += 1;
                f(l, r).map(|_| ())
            })?;
        }
        if name.contains("8 paths") {
            fps_ours[0] = fps;
        } else if name.contains("4 paths") {
            fps_ours[1] = fps;
        }
        print_row(name, fps, &sc, None);
    }
    let Some((python, script)) = opencv else {
        return Ok(());
    };
    let dir = std::env::temp_dir().join(format!("stereo-bench-{}-{w}x{h}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (i, (l, r, _)) in work.pairs.iter().enumerate() {
        std::fs::write(dir.join(format!("pair{i:03}_left.raw")), &l.data)?;
        std::fs::write(dir.join(format!("pair{i:03}_right.raw")), &r.data)?;
    }
    for mode in ["sgbm", "hh"] {
        let mut fps = [0.0; 2];
        for (k, threads) in [1usize, 2].into_iter().enumerate() {
            let out = Command::new(python)
                .arg(script)
                .arg(&dir)
                .args([
                    w.to_string(),
                    h.to_string(),
                    dn.to_string(),
                    threads.to_string(),
                    mode.to_string(),
                    seconds.to_string(),
                ])
                .output()
                .with_context(|| format!("cannot run {python}"))?;
            if !out.status.success() {
                bail!(
                    "OpenCV benchmark failed (install it with `pip install \"opencv-python-headless<5\"`, or pass --no-opencv): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let ms: f64 = text
                .split("\"ms_median\": ")
                .nth(1)
                .and_then(|s| s.split([',', '}']).next())
                .and_then(|s| s.trim().parse().ok())
                .with_context(|| format!("unexpected OpenCV output: {text}"))?;
            fps[k] = 1000.0 / ms;
        }
        let mut sc = Vec::new();
        for (i, (_, _, gt)) in work.pairs.iter().enumerate() {
            let raw = std::fs::read(dir.join(format!("pair{i:03}_opencv.f32")))?;
            let disp: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let valid: Vec<bool> = disp.iter().map(|&d| d >= 0.0).collect();
            sc.push(stereo::eval::score(&disp, &valid, gt, w, 3));
        }
        let name = if mode == "sgbm" {
            "OpenCV SGBM 5 paths"
        } else {
            "OpenCV SGBM HH 8 paths"
        };
        print_row(name, fps, &sc, Some(fps_ours));
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn print_row(name: &str, fps: [f64; 2], sc: &[Score], ours: Option<[[f64; 2]; 2]>) {
    let m = Score::mean(sc);
    let ratio = ours
        .map(|[o8, o4]| {
            format!(
                "   ours/this: 8 paths {:.2}x (1 thread), {:.2}x (2 threads); 4 paths {:.2}x, {:.2}x",
                o8[0] / fps[0],
                o8[1] / fps[1],
                o4[0] / fps[0],
                o4[1] / fps[1]
            )
        })
        .unwrap_or_default();
    println!(
        "  {name:<24} {:>8.1} fps (1 thread) {:>8.1} fps (2 threads)   bad-1.0 {:>5.2} %  bad-2.0 {:>5.2} %  EPE {:.3} px  density {:>5.1} %{ratio}",
        fps[0],
        fps[1],
        m.bad1 * 100.0,
        m.bad2 * 100.0,
        m.epe,
        m.density * 100.0
    );
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Match {
            left,
            right,
            max_disp,
            four_paths,
            out,
        } => {
            let l = read_gray(&left, "left")?;
            let r = read_gray(&right, "right")?;
            let prm = SgmParams {
                max_disp,
                paths: if four_paths {
                    Paths::Four
                } else {
                    Paths::Eight
                },
                ..SgmParams::default()
            };
            let t0 = Instant::now();
            let d = stereo::sgm::match_pair(&l, &r, &prm)?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let img: Vec<u8> = d
                .disp
                .iter()
                .zip(&d.valid)
                .map(|(&v, &ok)| {
                    if ok {
                        (v * 4.0).clamp(1.0, 255.0) as u8
                    } else {
                        0
                    }
                })
                .collect();
            sim::image_io::write_gray8(&out, d.width, d.height, &img)?;
            println!(
                "{}x{} matched in {ms:.1} ms, {:.1} % valid; wrote {}",
                d.width,
                d.height,
                d.density() * 100.0,
                out.display()
            );
            Ok(())
        }
        Cmd::Bench {
            seconds,
            no_opencv,
            python,
            sizes,
            real,
        } => bench(seconds, no_opencv, &python, &sizes, &real),
    }
}
