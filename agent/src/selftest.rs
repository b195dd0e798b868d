//! `agent selftest`: proves a build works on its target — loads a rig file,
//! runs stereo matching on a stereo pair and one monocular inference, checks
//! that the camera stage's SIMD rectification gives the scalar loop's bytes,
//! checks the results make sense and prints the figures. The rig and the pair are
//! compiled in (`agent/selftest/`), so the binary needs no files: the aarch64
//! build runs it as is under `qemu-aarch64`.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::mono::{MonoNet, infer, preprocess};
use crate::pipeline::LoopConfig;

const RIG: &str = include_str!("../selftest/rig.yaml");

/// The rig bundled with the agent: the twin's (160x120, 90° field of view,
/// 10 cm baseline), the default of the stereo and telemetry nodes.
pub fn bundled_rig() -> Result<calib::Rig, calib::RigError> {
    calib::Rig::from_opencv_yaml(RIG, "bundled rig")
}
const LEFT: &[u8] = include_bytes!("../selftest/left.gray");
const RIGHT: &[u8] = include_bytes!("../selftest/right.gray");

/// What the self-test measured.
#[derive(Debug, Clone)]
pub struct SelfTest {
    /// Where the rig came from.
    pub rig: String,
    /// Image size.
    pub size: (usize, usize),
    /// Fraction of pixels with a valid disparity.
    pub density: f64,
    /// Median valid depth (m).
    pub median_depth: f64,
    /// FNV-1a digest of the disparity map (each pixel's validity and, where
    /// valid, its disparity's bits): equal on every build that matches alike,
    /// whatever its instruction set.
    pub disparity_digest: u64,
    /// Stereo matching time (ms).
    pub stereo_ms: f64,
    /// Mono inference time (ms).
    pub mono_ms: f64,
    /// Columns of the mono scan.
    pub mono_columns: usize,
    /// What the mono network ran on (the adapter), and why `auto` fell back to
    /// the CPU when it did.
    pub mono_on: String,
    /// Target triple of this build.
    pub target: &'static str,
    /// The camera stage's rectification on this CPU (its SIMD kernels against
    /// the scalar loop, at [`RECTIFY_SIZE`]).
    pub rectify: calib::rectify::KernelCheck,
}

/// The image size of the rectification check.
pub const RECTIFY_SIZE: (usize, usize) = (320, 240);

impl std::fmt::Display for SelfTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "selftest ({}) OK: rig {} {}x{}; stereo {:.1} ms, {:.0} % valid, median depth {:.2} m, disparity digest {:016x}; mono inference {:.2} ms, {} columns, on {}; rectify {}x{} by {}: equal to the scalar loop, {:.0} % of pixels by windows, digest {:016x}",
            self.target,
            self.rig,
            self.size.0,
            self.size.1,
            self.stereo_ms,
            self.density * 100.0,
            self.median_depth,
            self.disparity_digest,
            self.mono_ms,
            self.mono_columns,
            self.mono_on,
            RECTIFY_SIZE.0,
            RECTIFY_SIZE.1,
            self.rectify.kernel,
            100.0 * self.rectify.window_share,
            self.rectify.digest
        )
    }
}

/// Runs the self-test with the bundled rig, or the rig file `rig`.
pub fn run(cfg: &LoopConfig, rig_file: Option<&std::path::Path>) -> Result<SelfTest> {
    let (rig, origin) = match rig_file {
        Some(p) => (
            calib::Rig::load_opencv(p)
                .with_context(|| format!("cannot load the rig file {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (bundled_rig()?, "bundled".to_string()),
    };
    let (w, h) = (160usize, 120usize);
    if (rig.width, rig.height) != (w, h) {
        bail!(
            "rig {origin} is {}x{}, the bundled pair {w}x{h}",
            rig.width,
            rig.height
        );
    }
    let baseline = rig.t.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut matcher = stereo::Sgm::new(cfg.stereo)?;
    let t0 = Instant::now();
    let disp = matcher.match_pair(
        &stereo::GrayImage::new(w, h, LEFT.to_vec(), "left")?,
        &stereo::GrayImage::new(w, h, RIGHT.to_vec(), "right")?,
    )?;
    let stereo_ms = t0.elapsed().as_secs_f64() * 1e3;
    let depth = disp.depth(rig.left.fx(), baseline);
    let mut valid: Vec<f32> = depth
        .iter()
        .copied()
        .filter(|z| z.is_finite() && *z > 0.0)
        .collect();
    valid.sort_by(f32::total_cmp);
    let density = valid.len() as f64 / (w * h) as f64;
    let disparity_digest = digest(&disp);
    let median_depth = valid.get(valid.len() / 2).copied().unwrap_or(f32::NAN) as f64;
    let resolved = crate::device::resolve(cfg.backend)?;
    let dev = &resolved.device;
    let net = MonoNet::seeded(&cfg.mono, dev, cfg.learner.seed)?;
    let input = preprocess(LEFT, w, h, &cfg.mono)?;
    // A first inference compiles a GPU's kernels; time the second.
    infer(&net, &input, &cfg.mono, dev)?;
    let t1 = Instant::now();
    let est = infer(&net, &input, &cfg.mono, dev)?;
    let mono_ms = t1.elapsed().as_secs_f64() * 1e3;
    // The twin's default room spans 1.9-19 m: a working matcher sees most of it.
    if !(density > 0.3 && (1.0..20.0).contains(&median_depth)) {
        bail!(
            "stereo on the bundled pair looks wrong: {:.0} % valid, median depth {median_depth:.2} m",
            density * 100.0
        );
    }
    if est.scan.len() != cfg.mono.columns || est.scan.iter().any(|v| !v.is_finite()) {
        bail!("mono inference returned a bad scan: {:?}", est.scan);
    }
    let rectify = calib::rectify::kernel_check(RECTIFY_SIZE.0, RECTIFY_SIZE.1)
        .context("the rectification check could not build its map")?;
    if !rectify.equal {
        bail!(
            "rectification by {} differs from the scalar loop",
            rectify.kernel
        );
    }
    Ok(SelfTest {
        rig: origin,
        size: (w, h),
        density,
        median_depth,
        disparity_digest,
        stereo_ms,
        mono_ms,
        mono_columns: est.scan.len(),
        mono_on: match &resolved.fallback {
            Some(why) => format!("{} ({why})", resolved.adapter),
            None => resolved.adapter,
        },
        target: if cfg!(target_arch = "aarch64") {
            "aarch64"
        } else if cfg!(target_arch = "x86_64") {
            "x86_64"
        } else {
            "other"
        },
        rectify,
    })
}

/// FNV-1a over each pixel's validity and, where valid, its disparity's bits.
fn digest(d: &stereo::Disparity) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for (v, ok) in d.disp.iter().zip(&d.valid) {
        eat(u8::from(*ok));
        if *ok {
            v.to_bits().to_le_bytes().into_iter().for_each(&mut eat);
        }
    }
    h
}
