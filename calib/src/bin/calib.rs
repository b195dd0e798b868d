//! `calib`: stereo calibration tools. Implemented so far: `bench` (rectification
//! throughput) and `rectify` (compute rectification of a rig file).

use anyhow::{Context as _, Result};
use calib::Rig;
use calib::rectify::{rectify_map, stereo_rectify};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
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

#[derive(Subcommand)]
enum Cmd {
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
    /// Megapixels per second of undistort-rectify remapping of 8-bit images.
    Bench {
        /// Seconds per figure.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
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
                rig.left.dist = [-0.25, 0.07, 0.0005, -0.0003, 0.0];
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
            }
            Ok(())
        }
    }
}
