//! `sim`: look at and measure the simulator twin.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use sim::env::{Action, Env, EnvConfig};
use sim::{
    CameraPose, Context, ContextSpace, InstanceSet, Renderer, StereoFrame, StereoRig, World,
};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "sim",
    version,
    about = "The simulator twin: render stereo pairs with ground truth, sample contexts, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write left.png, right.png, depth.png (visual) and depth_mm.png (16-bit mm) for one context.
    Render(RenderArgs),
    /// Print rendering and physics throughput.
    Bench(BenchArgs),
    /// Checkerboard views through the twin's (distorted) stereo rig with the rig as
    /// ground truth: `calib stereo` on them should give the rig back.
    CalibViews(CalibViewsArgs),
    /// Sample an instance set from a context space file and print it as TOML.
    Contexts {
        /// Context space: `[base]` (a context) and `[ranges]` (`key = [lo, hi]`).
        #[arg(long)]
        space: PathBuf,
        /// Number of instances.
        #[arg(long, default_value_t = 20)]
        n: usize,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// The stereo rig's optics (the image size is set per command).
#[derive(clap::Args)]
struct LensArgs {
    /// Horizontal field of view (degrees).
    #[arg(long, default_value_t = 90.0)]
    hfov: f64,
    /// Stereo baseline (m).
    #[arg(long, default_value_t = 0.10)]
    baseline: f64,
    /// Lens distortion k1,k2,p1,p2,k3 (plumb bob).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    distortion: Option<Vec<f64>>,
}

impl LensArgs {
    /// The rig for a `width` x `height` image, checked.
    fn rig(&self, width: usize, height: usize) -> Result<StereoRig> {
        if width < 8 || height < 8 || width > 4096 || height > 4096 {
            bail!("image size {width}x{height} must be between 8x8 and 4096x4096");
        }
        if !(self.hfov > 1.0 && self.hfov < 179.0) {
            bail!("--hfov {} must be in (1, 179) degrees", self.hfov);
        }
        if !(self.baseline > 0.0 && self.baseline.is_finite()) {
            bail!("--baseline {} must be positive", self.baseline);
        }
        let mut rig = StereoRig::with_size(width, height);
        rig.intrinsics = sim::Intrinsics::from_hfov(width, height, self.hfov);
        rig.baseline = self.baseline;
        if let Some(d) = &self.distortion {
            if d.len() != 5 || d.iter().any(|v| !v.is_finite()) {
                bail!("--distortion needs 5 finite values k1,k2,p1,p2,k3, got {d:?}");
            }
            rig.distortion = sim::Distortion {
                k1: d[0],
                k2: d[1],
                p1: d[2],
                p2: d[3],
                k3: d[4],
            };
        }
        Ok(rig)
    }
}

/// Checkerboard views through the twin's rig, for calibration.
#[derive(clap::Args)]
struct CalibViewsArgs {
    /// Output folder: left_NNN.png, right_NNN.png, truth.yaml (the rig, OpenCV YAML).
    #[arg(long, default_value = "out/calib_views")]
    out: PathBuf,
    /// Number of view pairs.
    #[arg(long, default_value_t = 20)]
    views: usize,
    /// Image width.
    #[arg(long, default_value_t = 640)]
    width: usize,
    /// Image height.
    #[arg(long, default_value_t = 480)]
    height: usize,
    #[command(flatten)]
    lens: LensArgs,
    /// Board inner corners, COLSxROWS.
    #[arg(long, default_value = "9x6")]
    board: String,
    /// Square size (m).
    #[arg(long, default_value_t = 0.05)]
    square: f64,
    /// Uniform pixel noise (± grey levels).
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// Seed of the board poses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of the image width the board spans (closer boards constrain the
    /// calibration more; views that would cut the board off are drawn again).
    #[arg(long, default_value_t = 0.55)]
    span: f64,
}

fn calib_views(a: CalibViewsArgs) -> Result<()> {
    let rig = a.lens.rig(a.width, a.height)?;
    let (cols, rows) = a
        .board
        .split_once('x')
        .and_then(|(c, r)| Some((c.parse::<usize>().ok()?, r.parse::<usize>().ok()?)))
        .filter(|&(c, r)| c >= 2 && r >= 2)
        .with_context(|| format!("--board {} must be COLSxROWS, e.g. 9x6", a.board))?;
    if !(a.square > 0.0 && a.square.is_finite() && a.noise >= 0.0 && a.noise.is_finite()) {
        bail!("--square must be positive and --noise non-negative");
    }
    if !(a.span > 0.05 && a.span <= 1.0) {
        bail!("--span {} must be in (0.05, 1]", a.span);
    }
    let board = sim::target::Board {
        cols,
        rows,
        square: a.square,
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    for (k, v) in sim::target::render_views_spanning(&rig, board, a.views, a.noise, a.seed, a.span)
        .iter()
        .enumerate()
    {
        sim::image_io::write_gray8(
            &a.out.join(format!("left_{k:03}.png")),
            a.width,
            a.height,
            &v.left,
        )?;
        sim::image_io::write_gray8(
            &a.out.join(format!("right_{k:03}.png")),
            a.width,
            a.height,
            &v.right,
        )?;
    }
    sim::target::rig_truth(&rig).save_opencv(&a.out.join("truth.yaml"))?;
    println!(
        "wrote {} view pairs of a {cols}x{rows} board and the rig (truth.yaml) to {}; calibrate with `calib stereo {} --board {cols}x{rows} --square {}`",
        a.views,
        a.out.display(),
        a.out.display(),
        a.square
    );
    Ok(())
}

#[derive(clap::Args)]
struct RenderArgs {
    /// Context TOML file (default: the built-in default context).
    #[arg(long)]
    context: Option<PathBuf>,
    /// Instance-set file; use with --index to pick one instance.
    #[arg(long, conflicts_with = "context")]
    instances: Option<PathBuf>,
    /// Instance index in --instances.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// World seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/render")]
    out: PathBuf,
    /// Image width.
    #[arg(long, default_value_t = 160)]
    width: usize,
    /// Image height.
    #[arg(long, default_value_t = 120)]
    height: usize,
    #[command(flatten)]
    lens: LensArgs,
    /// Camera pose x,y,z,yaw (m, m, m, rad); default: the vehicle's start.
    #[arg(long, value_delimiter = ',', num_args = 4, allow_hyphen_values = true)]
    pose: Option<Vec<f64>>,
    /// Depth that maps to black in depth.png (m).
    #[arg(long, default_value_t = 10.0)]
    max_depth: f32,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Context TOML file for the benchmark scene (default: built-in default).
    #[arg(long)]
    context: Option<PathBuf>,
}

fn load_context(path: &Option<PathBuf>) -> Result<Context> {
    match path {
        None => Ok(Context::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read context file {}", p.display()))?;
            Context::from_toml_str(&text)
                .with_context(|| format!("in context file {}", p.display()))
        }
    }
}

fn render(a: RenderArgs) -> Result<()> {
    let ctx = if let Some(p) = &a.instances {
        let set = InstanceSet::load(p)?;
        let n = set.instance.len();
        set.instance.into_iter().nth(a.index).with_context(|| {
            format!(
                "--index {} but {} holds {n} instances",
                a.index,
                p.display()
            )
        })?
    } else {
        load_context(&a.context)?
    };
    let rig = a.lens.rig(a.width, a.height)?;
    let world = World::generate(&ctx, a.seed);
    let pose = match &a.pose {
        Some(p) => {
            if p.iter().any(|v| !v.is_finite()) {
                bail!("--pose values must be finite");
            }
            if world.clearance([p[0], p[1], p[2]]) <= 0.0 {
                bail!(
                    "--pose {:?} is inside an obstacle or outside the room ({:?})",
                    p,
                    world.size
                );
            }
            CameraPose::looking_forward([p[0], p[1], p[2]], p[3])
        }
        None => CameraPose::looking_forward(world.start, 0.0),
    };
    let renderer = Renderer::new(rig, 1);
    let mut frame = StereoFrame::default();
    renderer.render(&world, &pose, a.seed, &mut frame);
    sim::image_io::write_frame(&a.out, &frame, a.max_depth)?;
    let valid: Vec<f32> = frame
        .depth
        .iter()
        .copied()
        .filter(|z| z.is_finite())
        .collect();
    let (zmin, zmax) = valid
        .iter()
        .fold((f32::MAX, 0.0f32), |(a, b), &z| (a.min(z), b.max(z)));
    println!(
        "context '{}' seed {}: {} obstacles, {}x{} px, fx {:.1}, baseline {} m, depth {:.2}..{:.2} m, disparity {:.2}..{:.2} px",
        ctx.name,
        a.seed,
        world.obstacles.len(),
        a.width,
        a.height,
        rig.intrinsics.fx,
        rig.baseline,
        zmin,
        zmax,
        rig.disparity(zmax as f64),
        rig.disparity(zmin as f64)
    );
    println!(
        "wrote {}/{{left,right,depth,depth_mm}}.png",
        a.out.display()
    );
    Ok(())
}

/// Poses along a forward sweep through the room, for rendering benchmarks.
fn bench_poses(world: &World, n: usize) -> Vec<CameraPose> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    let mut rng = sim::rng::Rng::new(5);
    while out.len() < n {
        i += 1;
        let p = [
            rng.range(0.5, world.size[0] - 0.5),
            rng.range(-world.size[1] / 2.0 + 0.5, world.size[1] / 2.0 - 0.5),
            rng.range(0.5, world.size[2] - 0.5),
        ];
        if world.clearance(p) > 0.3 || i > 100_000 {
            out.push(CameraPose::looking_forward(p, rng.range(-0.6, 0.6)));
        }
    }
    out
}

/// Throughput of one measurement: the median and the best of its windows. This
/// machine class is a shared VM whose speed wanders by ±30 % between seconds; the
/// median is the figure to quote, the best shows what the code does undisturbed.
struct Rate {
    median: f64,
    best: f64,
}

fn windows(seconds: f64, mut run_window: impl FnMut() -> f64) -> Rate {
    let start = Instant::now();
    let mut rates = Vec::new();
    while start.elapsed().as_secs_f64() < seconds || rates.len() < 3 {
        rates.push(run_window());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    Rate {
        median: rates[rates.len() / 2],
        best: rates[rates.len() - 1],
    }
}

fn bench_render(world: &World, w: usize, h: usize, threads: usize, seconds: f64) -> Result<Rate> {
    use rayon::prelude::*;
    let renderer = Renderer::new(StereoRig::with_size(w, h), 1);
    let poses = bench_poses(world, 256);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let chunk = (64 * threads * 160 * 120 / (w * h)).max(threads * 4);
    let mut round = 0usize;
    Ok(pool.install(|| {
        windows(seconds, || {
            let t0 = Instant::now();
            (0..chunk)
                .into_par_iter()
                .for_each_init(StereoFrame::default, |f, i| {
                    let pose = &poses[(round * chunk + i) % poses.len()];
                    renderer.render(world, pose, i as u64, f);
                });
            round += 1;
            chunk as f64 / t0.elapsed().as_secs_f64()
        })
    }))
}

fn bench(a: BenchArgs) -> Result<()> {
    let ctx = load_context(&a.context)?;
    let world = World::generate(&ctx, 1);
    println!(
        "sim bench: context '{}' ({} obstacles), {:.1} s per figure",
        ctx.name,
        world.obstacles.len(),
        a.seconds
    );
    println!("rendering (stereo pairs with ground-truth depth, both eyes):");
    for (w, h) in [(160, 120), (320, 240)] {
        for threads in [1, 2] {
            let r = bench_render(&world, w, h, threads, a.seconds)?;
            println!(
                "  {w}x{h} on {threads} thread(s): {:>8.0} pairs/s (median of windows; best {:.0})",
                r.median, r.best
            );
        }
    }
    // Physics without cameras, one core.
    let mut env = Env::new(EnvConfig::default())?;
    env.reset(&ctx, 1)?;
    let actions = [
        Action::Velocity {
            forward: 1.0,
            left: 0.0,
            up: 0.0,
            yaw_rate: 0.5,
        },
        Action::Velocity {
            forward: 0.5,
            left: 0.3,
            up: 0.1,
            yaw_rate: -0.5,
        },
    ];
    let mut steps = 0u64;
    let mut resets = 0u64;
    let mut err = None;
    let rate = windows(a.seconds, || {
        let t0 = Instant::now();
        for _ in 0..20_000 {
            match env.step_physics(&actions[(steps / 30 % 2) as usize]) {
                Ok(true) => {
                    resets += 1;
                    if let Err(e) = env.reset(&ctx, resets) {
                        err = Some(e);
                    }
                }
                Ok(false) => {}
                Err(e) => err = Some(e),
            }
            steps += 1;
        }
        20_000.0 / t0.elapsed().as_secs_f64()
    });
    if let Some(e) = err {
        return Err(e.into());
    }
    println!(
        "physics (quadrotor, 30 Hz control, {} physics sub-steps at {:.0} Hz, collision checks), 1 thread: {:>9.0} control steps/s (best {:.0}; {:.0} physics steps/s)",
        env.substeps(),
        env.config().physics_hz,
        rate.median,
        rate.best,
        rate.median * env.substeps() as f64
    );
    // Full env step with observation (scan, IMU), no images.
    env.reset(&ctx, 1)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < a.seconds {
        let r = env.step(&actions[(n / 30 % 2) as usize])?;
        n += 1;
        if r.terminated || r.truncated {
            env.reset(&ctx, n)?;
        }
    }
    println!(
        "env.step with observation (32-beam scan, IMU, no images), 1 thread: {:>9.0} steps/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Render(a) => render(a),
        Cmd::Bench(a) => bench(a),
        Cmd::CalibViews(a) => calib_views(a),
        Cmd::Contexts { space, n, seed } => {
            let text = std::fs::read_to_string(&space)
                .with_context(|| format!("cannot read {}", space.display()))?;
            let s = ContextSpace::from_toml_str(&text)
                .with_context(|| format!("in {}", space.display()))?;
            print!("{}", s.sample(n, seed)?.to_toml());
            Ok(())
        }
    }
}
