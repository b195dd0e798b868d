//! `agent persist`: the persistent-SSL experiment. Three arms fly the same
//! rooms from the same seeds, side by side: stereo only, persistent SSL and the
//! naive switch. Each arm's flight is [`crate::fly::fly_arm`]; this module runs
//! them in parallel, logs the comparison to rerun and prints the table.

use crate::fly::{ArmResult, FlyConfig, fly_arm, save_checkpoint};
use crate::persist::{Figures, FrameRecord, Strategy};
use crate::telemetry::{Sink, Telemetry};
use anyhow::{Result, anyhow};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

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

/// The arms, in table order.
pub const ARMS: [Strategy; 3] = [Strategy::StereoOnly, Strategy::Persistent, Strategy::Naive];

/// What `agent persist` runs.
#[derive(Debug, Clone)]
pub struct PersistRun {
    /// Flight settings shared by the arms (`seconds` is the length of each arm).
    pub config: FlyConfig,
    /// Figures are also reported over the flight after this many simulated
    /// minutes (the learning period).
    pub learn_minutes: f64,
    /// Telemetry sink.
    pub sink: Sink,
    /// Where the persistent arm's network is saved.
    pub checkpoint: Option<PathBuf>,
}

/// One arm's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmReport {
    /// Which arm.
    pub strategy: Strategy,
    /// Over the whole flight.
    pub whole: Figures,
    /// After the learning period (`None` if the flight was not longer).
    pub after: Option<Figures>,
    /// Mean mono error over the first and the last simulated minute.
    pub error_first_min: f64,
    /// See `error_first_min`.
    pub error_last_min: f64,
    /// Distance flown (m).
    pub distance: f64,
    /// Collisions (count).
    pub collisions: u64,
    /// Interventions (count).
    pub interventions: u64,
    /// Wall-clock seconds of the arm.
    pub wall_seconds: f64,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
}

/// The experiment's outcome.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per arm, in [`ARMS`] order.
    pub arms: Vec<ArmReport>,
    /// Learning period (simulated minutes).
    pub learn_minutes: f64,
}

fn report(strategy: Strategy, arm: &ArmResult, hz: f64, learn_minutes: f64) -> ArmReport {
    let per_min = (60.0 * hz) as usize;
    let r = &arm.records;
    let mean_err = |s: &[FrameRecord]| Figures::of(s, hz).mono_error;
    let split = (learn_minutes * 60.0 * hz).round() as usize;
    ArmReport {
        strategy,
        whole: Figures::of(r, hz),
        after: (r.len() > split && split > 0).then(|| Figures::of(&r[split..], hz)),
        error_first_min: mean_err(&r[..per_min.min(r.len())]),
        error_last_min: mean_err(&r[r.len().saturating_sub(per_min)..]),
        distance: arm.summary.distance,
        collisions: arm.summary.collisions,
        interventions: arm.summary.interventions,
        wall_seconds: arm.summary.wall_seconds,
        interrupted: arm.summary.interrupted,
    }
}

/// Log each arm's figures minute by minute under `compare/<figure>/<arm>`.
fn log_comparison(
    tel: &Telemetry,
    strategy: Strategy,
    records: &[FrameRecord],
    hz: f64,
) -> Result<()> {
    let per_min = (60.0 * hz) as usize;
    let name = strategy.name();
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
        tel.scalar_at(&format!("compare/mono_error/{name}"), f.mono_error)?;
    }
    Ok(())
}

/// Run the three arms in parallel; returns their figures.
pub fn run(run: &PersistRun, stop: &AtomicBool) -> Result<Report> {
    run.config.validate()?;
    let names: Vec<&str> = ARMS.iter().map(|a| a.name()).collect();
    let tel = Telemetry::open_with_layout(&run.sink, "onboard_agent_persist", &names)?;
    let hz = sim::env::EnvConfig::default().control_hz;
    let results: Vec<Result<ArmResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ARMS
            .iter()
            .map(|&s| {
                let tel = tel.scoped(s.name());
                let cfg = run.config.clone();
                scope.spawn(move || fly_arm(&cfg, s, &tel, None, stop))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("an arm's thread panicked")))
            })
            .collect()
    });
    let mut arms = Vec::new();
    for (s, r) in ARMS.iter().zip(results) {
        let r = r.map_err(|e| e.context(format!("arm {}", s.name())))?;
        log_comparison(&tel, *s, &r.records, hz)?;
        if *s == Strategy::Persistent
            && let (Some(path), Some(net)) = (&run.checkpoint, &r.net)
        {
            save_checkpoint(net, path)?;
        }
        arms.push(report(*s, &r, hz, run.learn_minutes));
    }
    let report = Report {
        arms,
        learn_minutes: run.learn_minutes,
    };
    tel.event(&report.table())?;
    tel.flush()?;
    Ok(report)
}

fn pct(v: f64) -> String {
    format!("{:5.1} %", 100.0 * v)
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

impl Report {
    fn arm(&self, s: Strategy) -> Option<&ArmReport> {
        self.arms.iter().find(|a| a.strategy == s)
    }

    /// The side-by-side table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut block = |title: String, pick: &dyn Fn(&ArmReport) -> Option<Figures>| {
            let _ = writeln!(out, "{title}");
            let _ = writeln!(
                out,
                "  {:<12} {:>9} {:>18} {:>15} {:>11}",
                "arm", "on mono", "interventions/min", "collisions/min", "mono error"
            );
            for a in &self.arms {
                if let Some(f) = pick(a) {
                    let _ = writeln!(
                        out,
                        "  {:<12} {:>9} {:>18} {:>15} {:>11}",
                        a.strategy.name(),
                        pct(f.mono_fraction),
                        num(f.interventions_per_min),
                        num(f.collisions_per_min),
                        num(f.mono_error)
                    );
                }
            }
        };
        let minutes = self.arms.first().map_or(0.0, |a| a.whole.minutes);
        block(
            format!("whole flight ({minutes:.1} simulated minutes per arm)"),
            &|a| Some(a.whole),
        );
        if self.arms.iter().any(|a| a.after.is_some()) {
            block(
                format!("after {:.1} minutes of learning", self.learn_minutes),
                &|a| a.after,
            );
        }
        let _ = writeln!(
            out,
            "  {:<12} {:>10} {:>11} {:>14} {:>22} {:>9}",
            "arm", "distance", "collisions", "interventions", "error 1st -> last min", "wall"
        );
        for a in &self.arms {
            let _ = writeln!(
                out,
                "  {:<12} {:>8.0} m {:>11} {:>14} {:>22} {:>7.0} s{}",
                a.strategy.name(),
                a.distance,
                a.collisions,
                a.interventions,
                format!("{} -> {}", num(a.error_first_min), num(a.error_last_min)),
                a.wall_seconds,
                if a.interrupted { " (interrupted)" } else { "" }
            );
        }
        out
    }

    /// The goals, each with whether it was met, over the flight after
    /// the learning period (or the whole flight if it was not longer).
    pub fn goals(&self) -> Vec<(String, bool)> {
        let figs = |s| {
            self.arm(s)
                .map(|a| a.after.unwrap_or(a.whole))
                .unwrap_or_default()
        };
        let (st, p, n) = (
            figs(Strategy::StereoOnly),
            figs(Strategy::Persistent),
            figs(Strategy::Naive),
        );
        vec![
            (
                format!(
                    "persistent flies on mono >= 80 % of the time: {}",
                    pct(p.mono_fraction).trim()
                ),
                p.mono_fraction >= 0.8,
            ),
            (
                format!(
                    "persistent has <= 1 intervention per minute: {}",
                    num(p.interventions_per_min)
                ),
                p.interventions_per_min <= 1.0,
            ),
            (
                format!(
                    "persistent collisions/min <= 1.5x stereo only: {} vs {}",
                    num(p.collisions_per_min),
                    num(st.collisions_per_min)
                ),
                p.collisions_per_min <= 1.5 * st.collisions_per_min,
            ),
            (
                format!(
                    "persistent collisions/min well below naive (< half): {} vs {}",
                    num(p.collisions_per_min),
                    num(n.collisions_per_min)
                ),
                p.collisions_per_min < 0.5 * n.collisions_per_min,
            ),
        ]
    }
}
