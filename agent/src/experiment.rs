//! `agent persist`: the persistent-SSL experiment. Four arms fly the same
//! rooms from the same seeds: stereo only, persistent SSL and two naive
//! switches (one stops learning at its switch, one keeps learning). Each
//! flight is [`crate::fly::fly_arm`]; this module runs every (arm, seed) on a
//! pool of threads ([`run`]) or one of them as a sweep's task ([`run_task`]),
//! logs the first seed's comparison to rerun, keeps each flight's figures in
//! its folder, and compares from the folders alone ([`collect`]): means over
//! seeds with bootstrap intervals.

use crate::fly::{ArmResult, FlyConfig, fly_arm, save_checkpoint};
use crate::persist::{Figures, FrameRecord, Strategy};
use crate::telemetry::{Sink, Telemetry};
use crate::train::Incomplete;
use anyhow::{Context as _, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tracing::info;

/// The room `agent persist` flies in unless told otherwise: the default room
/// with 30 obstacles of 0.8 m instead of 12 of 0.6 m. In the default room no arm
/// collided in 12 simulated minutes, which tells the strategies apart only by
/// their time on mono.
pub fn cluttered_room() -> sim::Context {
    sim::Context {
        name: "cluttered".into(),
        obstacle_count: 30,
        obstacle_size: 0.8,
        ..sim::Context::default()
    }
}

/// One arm of the experiment: a cue strategy, and for the naive switch
/// whether it keeps learning once it flies on mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arm {
    /// Its name in the table and in telemetry.
    pub name: &'static str,
    /// How it picks its cue.
    pub strategy: Strategy,
    /// Naive only: go on learning on mono (else it stops at its switch:
    /// train, then deploy).
    pub naive_learns: bool,
}

/// The arms, in table order: stereo only, persistent SSL, and two naive
/// switches (after a fixed time, no training wheels): one that stops learning
/// there and a fair opponent that keeps learning on mono as persistent does.
pub const ARMS: [Arm; 4] = [
    Arm {
        name: "stereo_only",
        strategy: Strategy::StereoOnly,
        naive_learns: false,
    },
    Arm {
        name: "persistent",
        strategy: Strategy::Persistent,
        naive_learns: false,
    },
    Arm {
        name: "naive",
        strategy: Strategy::Naive,
        naive_learns: false,
    },
    Arm {
        name: "naive_learning",
        strategy: Strategy::Naive,
        naive_learns: true,
    },
];

/// What `agent persist` runs.
#[derive(Debug, Clone)]
pub struct PersistRun {
    /// Flight settings shared by the arms (`seconds` is the length of each
    /// arm; `seed` is replaced by each of `seeds`).
    pub config: FlyConfig,
    /// The seeds: each arm flies the rooms of each.
    pub seeds: Vec<u64>,
    /// Flights run at once (one per core is the fastest).
    pub jobs: usize,
    /// Figures are also reported over the flight after this many simulated
    /// minutes (the learning period).
    pub learn_minutes: f64,
    /// Telemetry sink (the first seed's arms).
    pub sink: Sink,
    /// Where the persistent arm's network of the first seed is saved.
    pub checkpoint: Option<PathBuf>,
    /// Where each flight's figures go (`<arm>/seed<k>/flight.toml`).
    pub out: PathBuf,
}

/// One arm's figures on one seed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArmReport {
    /// Over the whole flight.
    pub whole: Figures,
    /// After the learning period (`None` if the flight was not longer).
    pub after: Option<Figures>,
    /// Mean mono error over the first and the last simulated minute.
    pub error_first_min: f64,
    /// See `error_first_min`.
    pub error_last_min: f64,
    /// Wall-clock seconds of the flight.
    pub wall_seconds: f64,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
}

/// An arm over every seed.
#[derive(Debug, Clone)]
pub struct ArmRuns {
    /// Which arm.
    pub arm: Arm,
    /// (seed, figures), in seed order.
    pub runs: Vec<(u64, ArmReport)>,
}

/// The experiment's outcome.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per arm, in [`ARMS`] order.
    pub arms: Vec<ArmRuns>,
    /// Learning period (simulated minutes).
    pub learn_minutes: f64,
    /// Flights not flown or cut short by Ctrl-C (left out of the figures).
    pub incomplete: usize,
    /// Those flights, as sweep tasks (see [`flights`]).
    pub missing: Vec<Incomplete>,
}

fn report(arm: &ArmResult, hz: f64, learn_minutes: f64) -> ArmReport {
    let per_min = (60.0 * hz) as usize;
    let r = &arm.records;
    let mean_err = |s: &[FrameRecord]| Figures::of(s, hz).mono_error;
    let split = (learn_minutes * 60.0 * hz).round() as usize;
    ArmReport {
        whole: Figures::of(r, hz),
        after: (r.len() > split && split > 0).then(|| Figures::of(&r[split..], hz)),
        error_first_min: mean_err(&r[..per_min.min(r.len())]),
        error_last_min: mean_err(&r[r.len().saturating_sub(per_min)..]),
        wall_seconds: arm.summary.wall_seconds,
        interrupted: arm.summary.interrupted,
    }
}

/// Log each arm's figures minute by minute under `compare/<figure>/<arm>`.
fn log_comparison(tel: &Telemetry, name: &str, records: &[FrameRecord], hz: f64) -> Result<()> {
    // A handle of its own: flights finishing together do not share the time.
    let tel = &tel.scoped("");
    let per_min = (60.0 * hz) as usize;
    for (m, chunk) in records.chunks(per_min.max(1)).enumerate() {
        let end = m * per_min + chunk.len();
        tel.set_time(end as i64, end as f64 / hz);
        let f = Figures::of(chunk, hz);
        tel.scalar_at(&format!("compare/mono_fraction/{name}"), f.mono_fraction)?;
        tel.scalar_at(
            &format!("compare/interventions_per_min/{name}"),
            f.interventions_per_min,
        )?;
        tel.scalar_at(
            &format!("compare/collisions_per_min/{name}"),
            f.collisions_per_min,
        )?;
        tel.scalar_at(
            &format!("compare/collisions_per_100m/{name}"),
            f.collisions_per_100m,
        )?;
        tel.scalar_at(&format!("compare/mono_error/{name}"), f.mono_error)?;
        tel.scalar_at(&format!("compare/mono_abs_rel/{name}"), f.abs_rel)?;
    }
    Ok(())
}

/// Every flight of the experiment, in task order: seed by seed, the arms
/// within (seed index, arm, seed). A sweep's task `i` is flight `i`.
pub fn flights(run: &PersistRun) -> Vec<(usize, Arm, u64)> {
    run.seeds
        .iter()
        .enumerate()
        .flat_map(|(k, &seed)| ARMS.iter().map(move |&a| (k, a, seed)))
        .collect()
}

fn flight_dir(out: &Path, arm: Arm, seed: u64) -> PathBuf {
    out.join(arm.name).join(format!("seed{seed}"))
}

/// What a flight's folder keeps: how it ended and its figures.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FlightFile {
    /// `finished`, `interrupted` or `failed`.
    state: String,
    #[serde(default)]
    reason: String,
    /// Simulated seconds it was asked to fly, and the learning period (min).
    seconds: f64,
    learn_minutes: f64,
    /// What the flight is ([`flight_fingerprint`]: every flight setting, the
    /// arm, the seed, the learning period): a folder of another experiment's
    /// flight is never taken for this one's.
    #[serde(default)]
    experiment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report: Option<ArmReport>,
}

const FLIGHT: &str = "flight.toml";

fn flight_fingerprint(run: &PersistRun, arm: Arm, seed: u64) -> String {
    crate::train::fingerprint(&format!(
        "{:?}|{}|{}|{}",
        run.config, arm.name, seed, run.learn_minutes
    ))
}

fn write_flight(dir: &Path, file: &FlightFile) -> Result<()> {
    Incomplete::write_task_file(dir, FLIGHT, file)
}

/// Fly one flight and keep how it ended in its folder.
fn fly_and_record(
    run: &PersistRun,
    tel: &Telemetry,
    (k, arm, seed): (usize, Arm, u64),
    hz: f64,
    stop: &AtomicBool,
) -> Result<&'static str> {
    let dir = flight_dir(&run.out, arm, seed);
    let experiment = flight_fingerprint(run, arm, seed);
    // Marked as flying first: a task killed without a word leaves no earlier
    // figures behind to be counted.
    write_flight(
        &dir,
        &FlightFile {
            state: "running".into(),
            reason: "flying, or killed without a word".into(),
            seconds: run.config.seconds,
            learn_minutes: run.learn_minutes,
            experiment: experiment.clone(),
            report: None,
        },
    )?;
    let outcome = fly_one(run, tel, k, arm, seed, hz, stop);
    let (state, reason, report) = match &outcome {
        Ok(r) if r.interrupted => ("interrupted", "stopped before its end".to_string(), None),
        Ok(r) => ("finished", String::new(), Some(r.clone())),
        Err(e) => ("failed", format!("{e:#}"), None),
    };
    write_flight(
        &dir,
        &FlightFile {
            state: state.into(),
            reason,
            seconds: run.config.seconds,
            learn_minutes: run.learn_minutes,
            experiment,
            report,
        },
    )?;
    outcome
        .map(|_| state)
        .map_err(|e| e.context(format!("arm {} seed {seed}", arm.name)))
}

/// Run every arm on every seed, `jobs` flights at a time, then compare them
/// with [`collect`] (the local runner of a sweep).
pub fn run(run: &PersistRun, stop: &AtomicBool) -> Result<Report> {
    run.config.validate()?;
    anyhow::ensure!(!run.seeds.is_empty(), "no seeds to fly");
    let names: Vec<&str> = ARMS.iter().map(|a| a.name).collect();
    let tel = Telemetry::open_with_layout(&run.sink, "onboard_agent_persist", &names)?;
    let hz = sim::env::EnvConfig::default().control_hz;
    let tasks = flights(run);
    let manifest = run.out.join("sweep").join("sweep.toml");
    anyhow::ensure!(
        !manifest.exists(),
        "{} holds a sweep's flights ({}); compare them with --collect (or `agent sweep collect`), or fly into another --out",
        run.out.display(),
        manifest.display()
    );
    // Only what this run flies is compared: an earlier run's figures in the
    // same folders are forgotten first (a flight Ctrl-C leaves unflown then
    // counts as missing, not as the earlier run's).
    for &(_, arm, seed) in &tasks {
        let f = flight_dir(&run.out, arm, seed).join(FLIGHT);
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", f.display()));
            }
            _ => {}
        }
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..run.jobs.clamp(1, tasks.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(k, arm, seed)) = tasks.get(i) else {
                        break;
                    };
                    let outcome = fly_and_record(run, &tel, (k, arm, seed), hz, stop);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    info!(
                        "persist: {n}/{} flights done ({} seed {seed})",
                        tasks.len(),
                        arm.name
                    );
                    if let Err(e) = outcome.map(|_| ()) {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let report = collect(run)?;
    tel.event(&report.table())?;
    tel.flush()?;
    Ok(report)
}

/// One task of a sweep: flight `index` of [`flights`], its figures kept in
/// its folder (no telemetry: the tasks of a sweep run apart).
/// Returns how it ended: `finished` or `interrupted`.
pub fn run_task(run: &PersistRun, index: usize, stop: &AtomicBool) -> Result<&'static str> {
    run.config.validate()?;
    let all = flights(run);
    let Some(&flight) = all.get(index) else {
        anyhow::bail!(
            "task {index} does not exist: this experiment has {} flights (tasks 0..={})",
            all.len(),
            all.len().saturating_sub(1)
        );
    };
    eprintln!(
        "task {index}: arm {} seed {} ({:.1} simulated minutes)",
        flight.1.name,
        flight.2,
        run.config.seconds / 60.0
    );
    let hz = sim::env::EnvConfig::default().control_hz;
    fly_and_record(run, &Telemetry::off(), flight, hz, stop)
}

/// Compare the flights from their folders alone, however they were flown:
/// finished flights enter the figures; the others are listed in
/// [`Report::missing`].
pub fn collect(run: &PersistRun) -> Result<Report> {
    let mut arms: Vec<ArmRuns> = ARMS
        .iter()
        .map(|&arm| ArmRuns {
            arm,
            runs: Vec::new(),
        })
        .collect();
    let mut missing = Vec::new();
    for (task, (_, arm, seed)) in flights(run).into_iter().enumerate() {
        let dir = flight_dir(&run.out, arm, seed);
        let file: FlightFile = match Incomplete::read_task_file(task, &dir, FLIGHT, "never flown") {
            Ok(f) => f,
            Err(why) => {
                missing.push(why);
                continue;
            }
        };
        let mut skip = |failed: bool, why: String| {
            missing.push(Incomplete {
                task,
                dir: dir.clone(),
                failed,
                why,
            });
        };
        match (file.state.as_str(), file.report) {
            _ if file.experiment != flight_fingerprint(run, arm, seed) => skip(
                true,
                format!(
                    "holds a flight of another experiment (flown for {} s with {} learning minutes, or other settings)",
                    file.seconds, file.learn_minutes
                ),
            ),
            ("finished", Some(r)) => {
                if let Some(a) = arms.iter_mut().find(|a| a.arm == arm) {
                    a.runs.push((seed, r));
                }
            }
            ("failed", _) => skip(true, format!("failed: {}", file.reason)),
            (state, _) => skip(false, format!("{state}: {}", file.reason)),
        }
    }
    Ok(Report {
        arms,
        learn_minutes: run.learn_minutes,
        incomplete: missing.len(),
        missing,
    })
}

/// One arm on one seed (the `k`-th); the first seed's flights go to telemetry.
fn fly_one(
    run: &PersistRun,
    tel: &Telemetry,
    k: usize,
    arm: Arm,
    seed: u64,
    hz: f64,
    stop: &AtomicBool,
) -> Result<ArmReport> {
    let mut cfg = run.config.clone();
    cfg.seed = seed;
    // The network's initial weights and sampling vary with the seed too (the
    // arms of one seed share them).
    cfg.learner.seed = cfg
        .learner
        .seed
        .wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    cfg.persist.naive_learns_on_mono = arm.naive_learns;
    let scoped = if k == 0 {
        tel.scoped(arm.name)
    } else {
        Telemetry::off()
    };
    let r = fly_arm(&cfg, arm.strategy, &scoped, None, stop)?;
    if k == 0 {
        log_comparison(tel, arm.name, &r.records, hz)?;
        if arm.strategy == Strategy::Persistent
            && let (Some(path), Some(net)) = (&run.checkpoint, &r.net)
        {
            save_checkpoint(net, path)?;
        }
    }
    Ok(report(&r, hz, run.learn_minutes))
}

/// Resamples of the bootstrap.
const RESAMPLES: usize = 4000;

/// A mean over seeds with its 95 % percentile-bootstrap interval (seeds
/// resampled with replacement; a fixed generator, so a table repeats). `NaN`
/// values (a figure a seed did not have) are left out; with one value the
/// interval is that value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The mean.
    pub mean: f64,
    /// 2.5th percentile of the resampled means.
    pub lo: f64,
    /// 97.5th percentile.
    pub hi: f64,
    /// Values it is over.
    pub n: usize,
}

impl Estimate {
    /// Of `values`.
    pub fn of(values: &[f64]) -> Estimate {
        let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        let n = v.len();
        if n == 0 {
            return Estimate {
                mean: f64::NAN,
                lo: f64::NAN,
                hi: f64::NAN,
                n,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        // SplitMix64 (Steele et al., OOPSLA 2014): a fixed, dependency-free stream.
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ n as u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut means: Vec<f64> = (0..RESAMPLES)
            .map(|_| (0..n).map(|_| v[(next() % n as u64) as usize]).sum::<f64>() / n as f64)
            .collect();
        means.sort_by(f64::total_cmp);
        let at = |q: f64| means[((RESAMPLES - 1) as f64 * q).round() as usize];
        Estimate {
            mean,
            lo: at(0.025),
            hi: at(0.975),
            n,
        }
    }

    fn show(&self, scale: f64, digits: usize) -> String {
        if self.n == 0 || !self.mean.is_finite() {
            return "-".into();
        }
        format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            self.mean * scale,
            self.lo * scale,
            self.hi * scale,
            d = digits
        )
    }
}

impl ArmRuns {
    /// A figure of the window after learning over the seeds that have it
    /// (the whole flight when none has: a flight no longer than the
    /// learning period).
    pub fn after(&self, f: impl Fn(&Figures) -> f64) -> Estimate {
        let v: Vec<f64> = if self.runs.iter().any(|(_, r)| r.after.is_some()) {
            self.runs
                .iter()
                .filter_map(|(_, r)| r.after.as_ref().map(&f))
                .collect()
        } else {
            self.runs.iter().map(|(_, r)| f(&r.whole)).collect()
        };
        Estimate::of(&v)
    }

    /// A figure of the whole flight, over the seeds.
    pub fn whole(&self, f: impl Fn(&Figures) -> f64) -> Estimate {
        let v: Vec<f64> = self.runs.iter().map(|(_, r)| f(&r.whole)).collect();
        Estimate::of(&v)
    }

    fn count(&self, f: impl Fn(&ArmReport) -> u64) -> u64 {
        self.runs.iter().map(|(_, r)| f(r)).sum()
    }
}

impl Report {
    fn arm(&self, name: &str) -> Option<&ArmRuns> {
        self.arms.iter().find(|a| a.arm.name == name)
    }

    /// Seeds flown.
    pub fn seeds(&self) -> usize {
        self.arms.first().map_or(0, |a| a.runs.len())
    }

    /// The side-by-side table: means over seeds with 95 % bootstrap intervals.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let seeds = self.seeds();
        let minutes = self
            .arms
            .first()
            .and_then(|a| a.runs.first())
            .map_or(0.0, |(_, r)| r.whole.minutes);
        let has_after = self
            .arms
            .iter()
            .any(|a| a.runs.iter().any(|(_, r)| r.after.is_some()));
        let _ = writeln!(
            out,
            "{seeds} seeds x {minutes:.1} simulated minutes per arm; mean [95 % bootstrap interval over seeds]"
        );
        type Pick<'a> = &'a dyn Fn(&ArmRuns, &dyn Fn(&Figures) -> f64) -> Estimate;
        let whole: Pick = &|a, f| a.whole(f);
        let after: Pick = &|a, f| a.after(f);
        let mut windows: Vec<(String, Pick, bool)> =
            vec![("whole flight".to_string(), whole, false)];
        if has_after {
            windows.push((
                format!("after {:.1} minutes of learning", self.learn_minutes),
                after,
                true,
            ));
        }
        for (title, pick, is_after) in windows {
            let _ = writeln!(out, "{title}");
            let _ = writeln!(
                out,
                "  {:<15} {:>22} {:>22} {:>22} {:>22} {:>22} {:>10}",
                "arm",
                "on mono %",
                "interventions /100 m",
                "collisions /100 m",
                "collisions /min",
                "distance m",
                "collisions"
            );
            for a in &self.arms {
                let collisions = a.count(|r| {
                    if is_after {
                        r.after.unwrap_or(r.whole).collisions
                    } else {
                        r.whole.collisions
                    }
                });
                let _ = writeln!(
                    out,
                    "  {:<15} {:>22} {:>22} {:>22} {:>22} {:>22} {:>10}",
                    a.arm.name,
                    pick(a, &|f| f.mono_fraction).show(100.0, 1),
                    pick(a, &|f| f.interventions_per_100m).show(1.0, 2),
                    pick(a, &|f| f.collisions_per_100m).show(1.0, 2),
                    pick(a, &|f| f.collisions_per_min).show(1.0, 2),
                    pick(a, &|f| f.distance_m).show(1.0, 0),
                    collisions
                );
            }
        }
        let _ = writeln!(
            out,
            "mono depth {}: against the twin's exact depth (evaluation only) and against stereo",
            if has_after {
                "after learning"
            } else {
                "over the flight"
            }
        );
        let _ = writeln!(
            out,
            "  {:<15} {:>22} {:>22} {:>22} {:>22} {:>9}",
            "arm", "abs-rel", "delta<1.25 %", "|log mono - stereo|", "1st -> last min", "wall s"
        );
        for a in &self.arms {
            if a.arm.strategy == Strategy::StereoOnly {
                continue;
            }
            let first = Estimate::of(
                &a.runs
                    .iter()
                    .map(|(_, r)| r.error_first_min)
                    .collect::<Vec<_>>(),
            );
            let last = Estimate::of(
                &a.runs
                    .iter()
                    .map(|(_, r)| r.error_last_min)
                    .collect::<Vec<_>>(),
            );
            let wall = a.runs.iter().map(|(_, r)| r.wall_seconds).sum::<f64>()
                / a.runs.len().max(1) as f64;
            let interrupted = a.runs.iter().any(|(_, r)| r.interrupted);
            let _ = writeln!(
                out,
                "  {:<15} {:>22} {:>22} {:>22} {:>22} {:>9.0}{}",
                a.arm.name,
                a.after(|f| f.abs_rel).show(1.0, 3),
                a.after(|f| f.delta1).show(100.0, 1),
                a.after(|f| f.mono_error).show(1.0, 3),
                format!("{} -> {}", num(first.mean), num(last.mean)),
                wall,
                if interrupted { " (interrupted)" } else { "" }
            );
        }
        out
    }

    /// The goals, each with whether it was met, on the means over seeds of
    /// the window after the learning period (or the whole flight if it was
    /// not longer).
    pub fn goals(&self) -> Vec<(String, bool)> {
        if self.incomplete > 0 {
            return vec![(
                format!(
                    "not judged: {} flights were cut short or not flown (Ctrl-C); the figures are over the complete ones",
                    self.incomplete
                ),
                false,
            )];
        }
        let get = |name: &str, f: &dyn Fn(&Figures) -> f64| {
            self.arm(name).map_or(Estimate::of(&[]), |a| a.after(f))
        };
        let on_mono = get("persistent", &|f| f.mono_fraction);
        let interventions = get("persistent", &|f| f.interventions_per_100m);
        let p = get("persistent", &|f| f.collisions_per_100m);
        let st = get("stereo_only", &|f| f.collisions_per_100m);
        let naive = get("naive_learning", &|f| f.collisions_per_100m);
        let naive_stops = get("naive", &|f| f.collisions_per_100m);
        let show = |e: Estimate, s: f64, d: usize| e.show(s, d);
        vec![
            (
                format!(
                    "persistent flies on mono >= 80 % of the time: {} %",
                    show(on_mono, 100.0, 1)
                ),
                on_mono.mean >= 0.8,
            ),
            (
                format!(
                    "persistent has <= 1 intervention per 100 m: {}",
                    show(interventions, 1.0, 2)
                ),
                interventions.mean <= 1.0,
            ),
            (
                format!(
                    "persistent collisions/100 m <= 1.5x stereo only's upper bound: {} vs 1.5 x {}",
                    show(p, 1.0, 2),
                    num(st.hi)
                ),
                p.mean <= 1.5 * st.hi,
            ),
            (
                format!(
                    "persistent collisions/100 m below half of naive's (learning on mono): {} vs {} (naive that stops learning: {})",
                    show(p, 1.0, 2),
                    show(naive, 1.0, 2),
                    show(naive_stops, 1.0, 2)
                ),
                p.mean < 0.5 * naive.mean,
            ),
        ]
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_holds_the_mean_and_narrows_with_agreement() {
        let spread = Estimate::of(&[0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(spread.mean, 2.0);
        assert!(spread.lo < 2.0 && spread.hi > 2.0, "{spread:?}");
        assert!(spread.lo >= 0.0 && spread.hi <= 4.0);
        let tight = Estimate::of(&[2.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!((tight.lo, tight.hi), (2.0, 2.0));
        let one = Estimate::of(&[f64::NAN, 7.0]);
        assert_eq!((one.mean, one.lo, one.hi, one.n), (7.0, 7.0, 7.0, 1));
        assert!(Estimate::of(&[]).mean.is_nan());
        // The same values give the same interval.
        assert_eq!(spread, Estimate::of(&[0.0, 1.0, 2.0, 3.0, 4.0]));
    }
}
