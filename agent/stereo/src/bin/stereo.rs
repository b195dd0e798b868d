//! `stereo`: match a pair, or benchmark the matchers against OpenCV's StereoSGBM.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use sim::{CameraPose, Context, Renderer, StereoFrame, StereoRig, World};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use stereo::eval::Score;
use stereo::{Disparity, GrayImage, Paths, SgmParams, Simd};

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
    /// Match a rectified pair of 8-bit PNGs (colour ones are read as luma); writes
    /// a disparity PNG (disparity times 255 / (min + number of disparities), so the
    /// range fills the gray levels; 0 = no answer; the factor is printed).
    Match {
        /// Left image.
        left: PathBuf,
        /// Right image.
        right: PathBuf,
        /// Matcher settings (TOML, the fields of `SgmParams`; missing ones default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Smallest disparity searched (overrides the config).
        #[arg(long)]
        min_disp: Option<usize>,
        /// Disparities searched from the smallest, a multiple of 16 up to 256 (overrides the config).
        #[arg(long)]
        max_disp: Option<usize>,
        /// Four aggregation paths instead of eight.
        #[arg(long)]
        four_paths: bool,
        /// Output PNG.
        #[arg(long, default_value = "out/disparity.png")]
        out: PathBuf,
    },
    /// Frames per second and accuracy on twin pairs and real pairs with ground
    /// truth, side by side with OpenCV's StereoSGBM in its four modes.
    Bench {
        /// Seconds per timing.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Skip OpenCV (when `opencv-python-headless<5` is not installed).
        #[arg(long)]
        no_opencv: bool,
        /// The pairs.
        #[command(flatten)]
        set: PairArgs,
        /// Matcher settings for ours (TOML, the fields of `SgmParams`); the
        /// disparity range is each workload's.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where our semi-global matcher runs, comma-separated: `cpu` (the
        /// SIMD kernels on the host's cores), `gpu` (wgpu compute shaders on
        /// the first Vulkan adapter; fails when none opens).
        #[arg(long, value_delimiter = ',', default_values_t = [Backend::Cpu])]
        backend: Vec<Backend>,
    },
    /// Match the benchmark's pairs (twin and real) with this CPU's SIMD kernels
    /// (AVX2 on x86-64, NEON on aarch64) and with the generic code, with 8 and
    /// 4 paths, and compare disparity, validity and confidence bit for bit;
    /// exits non-zero when any pixel differs.
    SimdCheck {
        /// The pairs.
        #[command(flatten)]
        set: PairArgs,
        /// Matcher settings (TOML, the fields of `SgmParams`); the disparity
        /// range is each workload's.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Where our semi-global matcher runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// The host's cores.
    Cpu,
    /// The first Vulkan adapter (`stereo::gpu`).
    Gpu,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        })
    }
}

/// The benchmark's pairs: twin renders at some sizes and real pairs with
/// ground truth (`stereo bench`, `stereo simd-check`).
#[derive(clap::Args)]
struct PairArgs {
    /// Python interpreter with cv2 (the bench's OpenCV rows) and scikit-image
    /// (where the Motorcycle pair is found).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Twin image widths to run (160: 160x120/32 disparities, 320: 320x240/64,
    /// 640: 640x480/128, 1024: 1024x440/128); `--sizes none` for real pairs only.
    #[arg(long, value_delimiter = ',', default_values_t = ["160".to_string(), "320".to_string(), "640".to_string()])]
    sizes: Vec<String>,
    /// Folder with Middlebury's Aloe pair as OpenCV's samples ship it
    /// (aloeL.jpg, aloeR.jpg, aloeGT.png); skipped when missing.
    #[arg(long, default_value = stereo::eval::OPENCV_SAMPLES)]
    real: PathBuf,
    /// scikit-image's data folder (Middlebury's Motorcycle pair); default: asked
    /// of `--python`, skipped when scikit-image is not installed.
    #[arg(long)]
    skimage: Option<PathBuf>,
    /// More real pairs, each a folder in Middlebury's layout (im0.png, im1.png,
    /// disp0.pfm or disp0GT.pfm, calib.txt): Middlebury 2014/2021, ETH3D.
    #[arg(long = "pair")]
    pairs: Vec<PathBuf>,
}

impl PairArgs {
    /// The twin workloads, then the real ones found.
    fn workloads(&self) -> Result<Vec<Workload>> {
        let mut out = twin_workloads(&self.sizes)?;
        out.extend(real_workloads(
            &self.real,
            self.skimage.clone(),
            &self.python,
            &self.pairs,
        )?);
        Ok(out)
    }
}

/// The twin workloads of `--sizes` (`none` skipped).
fn twin_workloads(sizes: &[String]) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    for size in sizes {
        if size == "none" {
            continue;
        }
        let w: usize = size
            .parse()
            .with_context(|| format!("--sizes: {size} is not a width"))?;
        out.push(twin_workload(w)?);
    }
    Ok(out)
}

/// Where two disparity maps of one pair differ: pixels whose validity,
/// disparity or confidence bits differ, and the first of them.
fn differences(a: &Disparity, b: &Disparity) -> (usize, Option<usize>) {
    let differ = |i: usize| {
        a.valid[i] != b.valid[i]
            || a.disp[i].to_bits() != b.disp[i].to_bits()
            || a.confidence[i].to_bits() != b.confidence[i].to_bits()
    };
    let n = a.disp.len();
    let count = (0..n).filter(|&i| differ(i)).count();
    (count, (0..n).find(|&i| differ(i)))
}

/// `stereo simd-check`: the SIMD kernels against the generic code on every
/// workload, bit for bit.
fn simd_check(works: &[Workload], base: &SgmParams) -> Result<()> {
    let native = stereo::sgm::simd();
    if native == Simd::Generic {
        bail!(
            "this CPU runs no hand-written SIMD kernels (AVX2 on x86-64, NEON on aarch64): nothing to compare"
        );
    }
    println!(
        "stereo simd-check ({}): {native} kernels against the generic code, bit for bit",
        std::env::consts::ARCH
    );
    let mut failed = Vec::new();
    for work in works {
        for paths in [Paths::Eight, Paths::Four] {
            let prm = SgmParams {
                min_disp: work.min_disp,
                max_disp: work.dn,
                paths,
                ..*base
            };
            let (mut pixels, mut valid, mut differ) = (0, 0, 0);
            let mut first = None;
            for (k, (l, r, _)) in work.pairs.iter().enumerate() {
                stereo::sgm::set_generic_only(false);
                let fast = stereo::sgm::match_pair(l, r, &prm);
                stereo::sgm::set_generic_only(true);
                let generic = stereo::sgm::match_pair(l, r, &prm);
                stereo::sgm::set_generic_only(false);
                let (fast, generic) = (fast?, generic?);
                let (n, at) = differences(&fast, &generic);
                if let (Some(i), None) = (at, &first) {
                    let (x, y) = (i % fast.width, i / fast.width);
                    first = Some(format!(
                        "pair {k} at ({x}, {y}): {native} {} (valid {}, confidence {}), generic {} (valid {}, confidence {})",
                        fast.disp[i],
                        fast.valid[i],
                        fast.confidence[i],
                        generic.disp[i],
                        generic.valid[i],
                        generic.confidence[i]
                    ));
                }
                pixels += fast.disp.len();
                valid += fast.valid.iter().filter(|&&v| v).count();
                differ += n;
            }
            let n_paths = match paths {
                Paths::Eight => 8,
                Paths::Four => 4,
            };
            let what = format!("{}, {n_paths} paths", work.title);
            let verdict = if differ == 0 {
                "identical".to_string()
            } else {
                failed.push(what.clone());
                format!(
                    "{differ} pixels DIFFER; first: {}",
                    first.unwrap_or_default()
                )
            };
            println!(
                "  {what}: {pixels} pixels, {:.1} % valid: {verdict}",
                100.0 * valid as f64 / pixels.max(1) as f64
            );
        }
    }
    if works.is_empty() {
        bail!("no pairs to compare (--sizes none and no real pair found)");
    }
    if !failed.is_empty() {
        bail!(
            "the {native} kernels differ from the generic code on: {}",
            failed.join("; ")
        );
    }
    println!(
        "simd-check passed: {native} equals the generic code on {} workloads x 2 path counts",
        works.len()
    );
    Ok(())
}

/// Matcher settings from a TOML file of `SgmParams` fields (missing ones
/// default), or the defaults.
fn load_params(config: Option<&Path>) -> Result<SgmParams> {
    let Some(path) = config else {
        return Ok(SgmParams::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the matcher config {}", path.display()))?;
    let prm: SgmParams = toml::from_str(&text)
        .with_context(|| format!("{}: not matcher settings", path.display()))?;
    prm.validate()
        .with_context(|| format!("{}: invalid matcher settings", path.display()))?;
    Ok(prm)
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
    min_disp: usize,
    dn: usize,
    /// A real pair, where the accuracy goals apply.
    real: bool,
    pairs: Vec<(GrayImage, GrayImage, Vec<f32>)>,
}

fn twin_workload(w: usize) -> Result<Workload> {
    let (h, dn) = match w {
        160 => (120, 32),
        320 => (240, 64),
        640 => (480, 128),
        // libSGM's published embedded figures are at 1024x440/128.
        1024 => (440, 128),
        other => bail!("--sizes: {other} is not one of 160, 320, 640, 1024"),
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
        min_disp: 0,
        dn,
        real: false,
        pairs,
    })
}

fn real_workload(p: stereo::eval::RealPair) -> Workload {
    Workload {
        title: format!(
            "{} (real), disparities {}..{}",
            p.name,
            p.min_disp,
            p.min_disp + p.max_disp
        ),
        min_disp: p.min_disp,
        dn: p.max_disp,
        real: true,
        pairs: vec![(p.left, p.right, p.gt)],
    }
}

/// The real pairs found: Aloe (opencv-doc), Motorcycle (scikit-image), and the
/// user's folders (an unreadable one is an error).
fn real_workloads(
    real: &Path,
    skimage: Option<PathBuf>,
    python: &str,
    dirs: &[PathBuf],
) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    if real.join("aloeL.jpg").exists() {
        for scale in [4, 2] {
            out.push(real_workload(stereo::eval::aloe(real, scale)?));
        }
    } else {
        println!(
            "Middlebury Aloe: not found in {} (install Debian's opencv-doc); skipped",
            real.display()
        );
    }
    match skimage.or_else(|| stereo::eval::skimage_data(python)) {
        Some(dir) => {
            for scale in [2, 1] {
                out.push(real_workload(stereo::eval::motorcycle(&dir, scale)?));
            }
        }
        None => println!(
            "Middlebury Motorcycle: scikit-image not found by {python} (pip install scikit-image); skipped"
        ),
    }
    for dir in dirs {
        let pair =
            stereo::eval::middlebury(dir).with_context(|| format!("--pair {}", dir.display()))?;
        out.push(real_workload(pair));
    }
    Ok(out)
}

/// What `stereo bench` runs.
struct BenchArgs<'a> {
    seconds: f64,
    no_opencv: bool,
    set: &'a PairArgs,
    config: Option<&'a Path>,
    backends: &'a [Backend],
}

fn bench(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        seconds,
        no_opencv,
        set,
        config,
        backends,
    } = args;
    let prm = load_params(config)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/opencv_sgbm.py");
    println!(
        "stereo bench: census {0}x{0}, P1 {1}, P2 {2} (edge {3}), uniqueness {4}, left-right {5} px, speckles {6}/{7} px, texture {8}x noise; disparity ranges per workload; SIMD kernels: {9}",
        prm.census_window,
        prm.p1,
        prm.p2,
        prm.p2_edge,
        prm.uniqueness,
        prm.lr_max_diff,
        prm.speckle_size,
        prm.speckle_range,
        prm.texture_noise,
        stereo::sgm::simd()
    );
    println!(
        "OpenCV StereoSGBM: blockSize 5, P1 8*25, P2 32*25, uniqueness 8, speckle 40/2, disp12MaxDiff 1; modes SGBM (5 paths, 1 thread), HH (8 paths, 1 thread), SGBM_3WAY and HH4 (parallel), cv2.setNumThreads = ours"
    );
    println!(
        "Accuracy over the columns every matcher can answer (from min + number of disparities), 3 px border left out:\n  bad-2 = share of a matcher's answers more than 2 px off; common = the same over the pixels every SGM row answers;\n  all = missing answers counted as errors, over every counted pixel with ground truth"
    );
    if backends.contains(&Backend::Gpu) {
        println!("GPU matcher on {}", gpu_adapter()?);
    }
    let opencv = (!no_opencv).then_some((set.python.as_str(), script.as_path()));
    let mut goals = Goals::default();
    for work in set.workloads()? {
        run_workload(&work, &prm, seconds, opencv, backends, &mut goals)?;
    }
    goals.summary();
    Ok(())
}

/// The bench's goals, counted as they are checked.
#[derive(Default)]
struct Goals {
    met: usize,
    missed: Vec<String>,
}

impl Goals {
    fn check(&mut self, ok: bool, what: String) {
        println!("  goal: {what}: {}", if ok { "met" } else { "NOT MET" });
        if ok {
            self.met += 1;
        } else {
            self.missed.push(what);
        }
    }

    fn summary(&self) {
        println!("\ngoals: {} met, {} not met", self.met, self.missed.len());
        for m in &self.missed {
            println!("  not met: {m}");
        }
    }
}

/// One matcher's row: frames per second on 1 and 2 threads, and its map of each pair.
struct Row {
    name: String,
    fps: [f64; 2],
    maps: Vec<(Vec<f32>, Vec<bool>)>,
    /// Semi-global (counted in the common pixels).
    sgm: bool,
}

type Matcher<'a> = Box<dyn FnMut(&GrayImage, &GrayImage) -> Result<Disparity> + Send + 'a>;

/// Our matchers, then OpenCV's four modes, on one workload: accuracy, frames per
/// second on 1 and 2 threads, speed ratios and the goals.
fn run_workload(
    work: &Workload,
    base: &SgmParams,
    seconds: f64,
    opencv: Option<(&str, &Path)>,
    backends: &[Backend],
    goals: &mut Goals,
) -> Result<()> {
    let (dn, min_disp) = (work.dn, work.min_disp);
    let (w, h) = (work.pairs[0].0.width, work.pairs[0].0.height);
    println!("\n{}:", work.title);
    let prm = SgmParams {
        min_disp,
        max_disp: dn,
        ..*base
    };
    let mut sgm8 = stereo::Sgm::new(SgmParams {
        paths: Paths::Eight,
        ..prm
    })?;
    let mut sgm4 = stereo::Sgm::new(SgmParams {
        paths: Paths::Four,
        ..prm
    })?;
    let mut ours: Vec<(&str, bool, Matcher)> = vec![
        (
            "ours SGM 8 paths",
            true,
            Box::new(|l, r| Ok(sgm8.match_pair(l, r)?)),
        ),
        (
            "ours SGM 4 paths",
            true,
            Box::new(|l, r| Ok(sgm4.match_pair(l, r)?)),
        ),
        (
            "ours block 7x7",
            false,
            Box::new(move |l, r| Ok(stereo::bm::match_pair(l, r, &prm, 7)?)),
        ),
    ];
    if !backends.contains(&Backend::Cpu) {
        // The CPU rows go; the goals and ratios below need them.
        ours.clear();
    }
    if backends.contains(&Backend::Gpu) {
        ours.extend(gpu_matchers(&prm)?);
    }
    let mut rows = Vec::new();
    for (name, sgm, f) in ours.iter_mut() {
        let mut maps = Vec::new();
        for (l, r, _) in &work.pairs {
            let d = f(l, r)?;
            maps.push((d.disp, d.valid));
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
        rows.push(Row {
            name: name.to_string(),
            fps,
            maps,
            sgm: *sgm,
        });
    }
    if let Some((python, script)) = opencv {
        rows.extend(run_opencv(work, python, script, seconds)?);
    }
    let region = stereo::eval::Region::for_range(3, min_disp, dn);
    // The pixels every semi-global row answers, per pair.
    let common: Vec<Vec<bool>> = (0..work.pairs.len())
        .map(|i| {
            let mut c = vec![true; w * h];
            for row in rows.iter().filter(|r| r.sgm) {
                for (c, &v) in c.iter_mut().zip(&row.maps[i].1) {
                    *c &= v;
                }
            }
            c
        })
        .collect();
    println!(
        "  {:<26} {:>9} {:>9} {:>8}   {:>6} {:>7} {:>6}   {:>7}   {:>6} {:>6}",
        "matcher",
        "fps 1 th",
        "fps 2 th",
        "Gcell/s",
        "bad-2",
        "common",
        "all",
        "density",
        "EPE",
        "bad-1"
    );
    let mut scores = Vec::new();
    for row in &rows {
        let mut own = Vec::new();
        let mut com = Vec::new();
        for (i, (_, _, gt)) in work.pairs.iter().enumerate() {
            let (disp, valid) = &row.maps[i];
            own.push(stereo::eval::score(disp, valid, gt, w, region));
            if row.sgm {
                com.push(stereo::eval::score(disp, &common[i], gt, w, region));
            }
        }
        let (m, c) = (Score::mean(&own), Score::mean(&com));
        let common_bad2 = if row.sgm {
            format!("{:>6.2}%", c.bad2 * 100.0)
        } else {
            format!("{:>7}", "-")
        };
        // Cost-volume cells (the matched columns' pixels x disparities) per
        // second at the better of the two thread counts.
        let cells = ((w - min_disp) * h * dn) as f64 * row.fps[0].max(row.fps[1]) / 1e9;
        println!(
            "  {:<26} {:>9.1} {:>9.1} {:>8.3}   {:>5.2}% {common_bad2} {:>5.2}%   {:>6.1}%   {:>6.3} {:>5.2}%",
            row.name,
            row.fps[0],
            row.fps[1],
            cells,
            m.bad2 * 100.0,
            m.bad2_all * 100.0,
            m.density * 100.0,
            m.epe,
            m.bad1 * 100.0
        );
        scores.push(m);
    }
    let common_share = common
        .iter()
        .map(|c| c.iter().filter(|&&v| v).count() as f64 / c.len() as f64)
        .sum::<f64>()
        / common.len() as f64;
    println!(
        "  (common pixels: {:.1} % of the image)",
        common_share * 100.0
    );
    let find = |name: &str| rows.iter().position(|r| r.name == name);
    for paths in ["8 paths", "4 paths"] {
        let cpu = find(&format!("ours SGM {paths}"));
        let gpu = find(&format!("GPU SGM {paths}"));
        if let (Some(c), Some(g)) = (cpu, gpu) {
            println!(
                "  speed GPU SGM {paths}: {:.2}x ours on the CPU's 2 threads ({:.1} against {:.1} fps)",
                rows[g].fps[0] / rows[c].fps[1],
                rows[g].fps[0],
                rows[c].fps[1]
            );
        }
    }
    let (Some(cv), Some(_)) = (find("OpenCV SGBM"), find("ours SGM 8 paths")) else {
        return Ok(());
    };
    // The fastest OpenCV mode on two threads.
    let (fast, fast_fps) = rows
        .iter()
        .filter(|r| r.name.starts_with("OpenCV"))
        .map(|r| (r.name.as_str(), r.fps[1]))
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    for (name, k) in [("ours SGM 8 paths", 0), ("ours SGM 4 paths", 1)] {
        let r = &rows[k];
        println!(
            "  speed {name}: {:.2}x OpenCV SGBM on 1 thread; {:.2}x OpenCV's fastest on 2 threads ({fast}, {fast_fps:.1} fps)",
            r.fps[0] / rows[cv].fps[0],
            r.fps[1] / fast_fps
        );
    }
    // Where OpenCV SGBM answers and ours does not: how often its answer is right.
    for k in [0, 1] {
        let (mut extra, mut wrong, mut counted) = (0usize, 0usize, 0usize);
        for (i, (_, _, gt)) in work.pairs.iter().enumerate() {
            let (cd, cv_valid) = &rows[cv].maps[i];
            let ours_valid = &rows[k].maps[i].1;
            let only: Vec<bool> = cv_valid
                .iter()
                .zip(ours_valid)
                .map(|(&c, &o)| c && !o)
                .collect();
            let s = stereo::eval::score(cd, &only, gt, w, region);
            let n = (s.density * s.pixels as f64).round() as usize;
            extra += n;
            wrong += (s.bad2 * n as f64).round() as usize;
            counted += s.pixels;
        }
        println!(
            "  {} leaves {:.1} % of the pixels unanswered that OpenCV SGBM answers; {:.0} % of those OpenCV answers are more than 2 px off",
            rows[k].name,
            extra as f64 * 100.0 / counted.max(1) as f64,
            wrong as f64 * 100.0 / extra.max(1) as f64
        );
    }
    if w * h >= 320 * 240 {
        goals.check(
            rows[1].fps[0] >= 1.5 * rows[cv].fps[0],
            format!(
                "{}: 4 paths >= 1.5x OpenCV SGBM's frame rate on 1 thread",
                work.title
            ),
        );
        goals.check(
            rows[1].fps[1] >= 1.5 * fast_fps,
            format!(
                "{}: 4 paths >= 1.5x OpenCV's fastest ({fast}) on 2 threads",
                work.title
            ),
        );
    }
    if work.real {
        for k in [0, 1] {
            goals.check(
                scores[k].bad2_all <= scores[cv].bad2_all,
                format!(
                    "{}: {} bad-2 with missing as errors {:.2} % <= OpenCV SGBM's {:.2} %",
                    work.title,
                    rows[k].name,
                    scores[k].bad2_all * 100.0,
                    scores[cv].bad2_all * 100.0
                ),
            );
            goals.check(
                scores[k].density >= scores[cv].density,
                format!(
                    "{}: {} density {:.1} % >= OpenCV SGBM's {:.1} %",
                    work.title,
                    rows[k].name,
                    scores[k].density * 100.0,
                    scores[cv].density * 100.0
                ),
            );
        }
    }
    Ok(())
}

/// The GPU matcher's rows (8 and 4 paths).
#[cfg(feature = "gpu")]
fn gpu_matchers(prm: &SgmParams) -> Result<Vec<(&'static str, bool, Matcher<'static>)>> {
    let mut out: Vec<(&'static str, bool, Matcher<'static>)> = Vec::new();
    for (name, paths) in [
        ("GPU SGM 8 paths", Paths::Eight),
        ("GPU SGM 4 paths", Paths::Four),
    ] {
        let mut m = stereo::gpu::GpuSgm::new(SgmParams { paths, ..*prm })?;
        out.push((name, true, Box::new(move |l, r| Ok(m.match_pair(l, r)?))));
    }
    Ok(out)
}

#[cfg(not(feature = "gpu"))]
fn gpu_matchers(_: &SgmParams) -> Result<Vec<(&'static str, bool, Matcher<'static>)>> {
    bail!("this `stereo` was built without the GPU matcher; rebuild with `--features gpu`")
}

/// The adapter the GPU matcher opens.
#[cfg(feature = "gpu")]
fn gpu_adapter() -> Result<String> {
    Ok(stereo::gpu::GpuSgm::new(SgmParams::default())?
        .adapter()
        .to_string())
}

#[cfg(not(feature = "gpu"))]
fn gpu_adapter() -> Result<String> {
    bail!("this `stereo` was built without the GPU matcher; rebuild with `--features gpu`")
}

/// OpenCV's four StereoSGBM modes on the workload's pairs: one row each.
fn run_opencv(work: &Workload, python: &str, script: &Path, seconds: f64) -> Result<Vec<Row>> {
    let (w, h) = (work.pairs[0].0.width, work.pairs[0].0.height);
    let dir = std::env::temp_dir().join(format!("stereo-bench-{}-{w}x{h}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (i, (l, r, _)) in work.pairs.iter().enumerate() {
        std::fs::write(dir.join(format!("pair{i:03}_left.raw")), &l.data)?;
        std::fs::write(dir.join(format!("pair{i:03}_right.raw")), &r.data)?;
    }
    let modes = [
        ("sgbm", "OpenCV SGBM"),
        ("hh", "OpenCV HH"),
        ("3way", "OpenCV SGBM_3WAY"),
        ("hh4", "OpenCV HH4"),
    ];
    let out = Command::new(python)
        .arg(script)
        .arg(&dir)
        .args([
            w.to_string(),
            h.to_string(),
            work.min_disp.to_string(),
            work.dn.to_string(),
            "1,2".to_string(),
            modes.map(|m| m.0).join(","),
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
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = line.split(&format!("\"{key}\": ")).nth(1)?;
        Some(
            rest.split([',', '}'])
                .next()?
                .trim()
                .trim_matches('"')
                .to_string(),
        )
    };
    let mut rows = Vec::new();
    for (mode, name) in modes {
        let mut fps = [0.0; 2];
        for (k, threads) in ["1", "2"].into_iter().enumerate() {
            let ms: f64 = text
                .lines()
                .find(|l| {
                    field(l, "mode").as_deref() == Some(mode)
                        && field(l, "threads").as_deref() == Some(threads)
                })
                .and_then(|l| field(l, "ms_median"))
                .and_then(|v| v.parse().ok())
                .with_context(|| {
                    format!("no {mode} timing on {threads} threads in OpenCV's output: {text}")
                })?;
            fps[k] = 1000.0 / ms;
        }
        let mut maps = Vec::new();
        for i in 0..work.pairs.len() {
            let raw = std::fs::read(dir.join(format!("pair{i:03}_{mode}.f32")))?;
            let disp: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let valid: Vec<bool> = disp.iter().map(|&d| d >= 0.0).collect();
            maps.push((disp, valid));
        }
        rows.push(Row {
            name: name.to_string(),
            fps,
            maps,
            sgm: true,
        });
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(rows)
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Match {
            left,
            right,
            config,
            min_disp,
            max_disp,
            four_paths,
            out,
        } => {
            let l = read_gray(&left, "left")?;
            let r = read_gray(&right, "right")?;
            let mut prm = load_params(config.as_deref())?;
            prm.min_disp = min_disp.unwrap_or(prm.min_disp);
            prm.max_disp = max_disp.unwrap_or(prm.max_disp);
            if four_paths {
                prm.paths = Paths::Four;
            }
            let t0 = Instant::now();
            let d = stereo::sgm::match_pair(&l, &r, &prm)?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let scale = 255.0 / (prm.min_disp + prm.max_disp) as f32;
            let img: Vec<u8> = d
                .disp
                .iter()
                .zip(&d.valid)
                .map(|(&v, &ok)| {
                    if ok {
                        (v * scale).clamp(1.0, 255.0) as u8
                    } else {
                        0
                    }
                })
                .collect();
            sim::image_io::write_gray8(&out, d.width, d.height, &img)?;
            println!(
                "{}x{} matched in {ms:.1} ms, {:.1} % valid; wrote {} (gray = disparity x {scale:.3})",
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
            set,
            config,
            backend,
        } => bench(BenchArgs {
            seconds,
            no_opencv,
            set: &set,
            config: config.as_deref(),
            backends: &backend,
        }),
        Cmd::SimdCheck { set, config } => {
            let prm = load_params(config.as_deref())?;
            simd_check(&set.workloads()?, &prm)
        }
    }
}
