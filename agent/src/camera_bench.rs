//! `agent bench`'s camera figure: what one stereo pair costs the camera
//! stage — decoding the device's format and converting to gray (in the
//! GStreamer pipeline's threads), splitting the side-by-side frame, rectifying
//! both eyes with a distorted rig's maps — as CPU time of all the process's
//! threads per pair: the share of one core each frame takes.
//!
//! The frames come from a side-by-side file written first (textured, so that
//! JPEG decoding costs what it does on camera images), played by the `file`
//! preset as fast as the stage takes them.

use crate::pipeline::{CameraStage, CameraStageError, RigGeometry};
use anyhow::{Context as _, Result};
use camera::video::{Encoding, write_side_by_side};
use camera::{CameraError, Preset, SourceConfig};
use std::fmt;
use std::time::{Duration, Instant};

/// The per-frame budget the camera stage is held to (ms).
pub const BUDGET_MS: f64 = 2.0;

/// One encoding's figures.
#[derive(Debug, Clone)]
pub struct CameraCost {
    /// What the device sends.
    pub encoding: &'static str,
    /// Eye size.
    pub size: (usize, usize),
    /// Pairs timed.
    pub pairs: usize,
    /// CPU time per pair, all threads (ms): everything the stage costs.
    pub per_pair_ms: f64,
    /// Wall time per pair (ms), threads running side by side.
    pub wall_ms: f64,
    /// Of which rectifying both eyes (ms).
    pub rectify_ms: f64,
}

impl fmt::Display for CameraCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "camera stage, {}x{} per eye, {} side by side: {:.2} ms of CPU per pair (decode + gray + split + rectify; rectify {:.2} ms; wall {:.2} ms) over {} pairs = {:.2}x the {BUDGET_MS} ms budget of one core",
            self.size.0,
            self.size.1,
            self.encoding,
            self.per_pair_ms,
            self.rectify_ms,
            self.wall_ms,
            self.pairs,
            self.per_pair_ms / BUDGET_MS
        )
    }
}

/// A textured gray image: smooth shapes and edges with a little noise, like
/// a camera's view of a room.
fn texture(w: usize, h: usize, seed: u64, shift: usize) -> Vec<u8> {
    let mut rng = types::rng::Rng::new(seed);
    let blobs: Vec<[f64; 4]> = (0..40)
        .map(|_| {
            [
                rng.range(0.0, w as f64),
                rng.range(0.0, h as f64),
                rng.range(8.0, 60.0),
                rng.range(-80.0, 80.0),
            ]
        })
        .collect();
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let xs = (x + shift) as f64;
            let mut v = 120.0 + 30.0 * (xs * 0.05).sin() * (y as f64 * 0.07).cos();
            for b in &blobs {
                if (xs - b[0]).abs() < b[2] && (y as f64 - b[1]).abs() < b[2] {
                    v += b[3];
                }
            }
            v += rng.range(-4.0, 4.0);
            out[y * w + x] = v.clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A 90° lens with barrel distortion at `w` x `h`, 10 cm baseline.
fn distorted_rig(w: usize, h: usize) -> Result<RigGeometry> {
    let f = w as f64 / 2.0;
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let mut rig = calib::Rig::ideal(w, h, f, cx, cy, 0.10);
    let lens = calib::Camera::from_coefficients(
        calib::LensKind::PlumbBob,
        [f, f, cx, cy],
        &[-0.2, 0.04, 0.0, 0.0, 0.0],
    );
    rig.left = lens;
    rig.right = lens;
    rig.rect = None;
    Ok(RigGeometry::from_rig(&rig, "bench lens")?)
}

fn time_one(
    file: &std::path::Path,
    rig: &RigGeometry,
    encoding: &'static str,
    size: (usize, usize),
) -> Result<CameraCost> {
    let cfg = SourceConfig {
        preset: Preset::File,
        location: file.display().to_string(),
        ..SourceConfig::default()
    };
    (|| -> Result<CameraCost> {
        let mut stage = CameraStage::start(&cfg, rig.clone())?;
        let (mut n, mut rectify_ns, mut t0, mut cpu0) = (0usize, 0u64, None, None);
        loop {
            match stage.next(Duration::from_secs(30)) {
                Ok(Some(p)) => {
                    // The first pairs include the pipeline's start-up.
                    if n == 5 {
                        t0 = Some(Instant::now());
                        cpu0 = cpu_ns();
                        rectify_ns = 0;
                    }
                    n += 1;
                    rectify_ns += p.rectify_ns;
                }
                Ok(None) => anyhow::bail!("the camera bench's file gave no pair within 30 s"),
                Err(CameraStageError::Camera(CameraError::EndOfStream)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let t0 = t0.context("too few pairs to time")?;
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        let cpu = cpu0
            .zip(cpu_ns())
            .map(|(a, b)| (b - a) as f64 * 1e-6)
            .context("this system does not report process CPU time")?;
        let timed = n - 5;
        Ok(CameraCost {
            encoding,
            size,
            pairs: timed,
            per_pair_ms: cpu / timed as f64,
            wall_ms: wall / timed as f64,
            rectify_ms: rectify_ns as f64 * 1e-6 / timed as f64,
        })
    })()
}

fn cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    return crate::bench::process_cpu_ns();
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// Times the camera stage on `pairs` pairs of `width` x `height` eyes, for
/// MJPEG and YUYV side-by-side input.
pub fn run(width: usize, height: usize, pairs: usize) -> Result<Vec<CameraCost>> {
    let dir = std::env::temp_dir().join(format!("agent-camera-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rig = distorted_rig(width, height)?;
    // A few distinct textured views, repeated.
    let views: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
        .map(|s| (texture(width, height, s, 12), texture(width, height, s, 0)))
        .collect();
    let n = pairs.max(10) + 5;
    let mut out = Vec::new();
    for (encoding, name, enc) in [
        (
            "MJPEG (quality 90)",
            "mjpeg.avi",
            Encoding::Mjpeg { quality: 90 },
        ),
        ("YUYV", "yuyv.avi", Encoding::Yuyv),
    ] {
        let file = dir.join(name);
        write_side_by_side(
            &file,
            width,
            height,
            30,
            enc,
            (0..n).map(|k| views[k % views.len()].clone()),
        )?;
        out.push(time_one(&file, &rig, encoding, (width, height))?);
        let _ = std::fs::remove_file(&file);
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(out)
}
