//! `agent learn-to-fly`: train a motor-level hover policy (TD3 with the
//! hand-fused networks of `rl::tiny`) until it flies every held-out vehicle,
//! over one or more seeds; write each seed's policy as a weight table for
//! the firmware; print wall time to fly and the cost split between the
//! environment and the learner.

use super::count;
use anyhow::{Context as _, Result};
use rl::l2f::{self, Evaluation};
use rl::quadrotor::{LearnToFlyConfig, QuadHoverEnv};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(clap::Args)]
pub(crate) struct LearnToFlyArgs {
    /// Task, learner and stop-criterion settings (TOML); default: the file
    /// shipped in agent/rl/config/learn_to_fly.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Independent training runs (seeds `--seed`, `--seed` + 1, ...).
    #[arg(long, default_value_t = 1, value_parser = count(1, 100))]
    seeds: usize,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up after this many environment steps (default: the file's
    /// `train.max_steps`).
    #[arg(long, value_parser = count(1, 100_000_000))]
    max_steps: Option<usize>,
    /// Threads of the learner (the twin critics update one per thread): 1
    /// gives the one-core figure.
    #[arg(long, default_value_t = 2, value_parser = count(1, 2))]
    threads: usize,
    /// Where each seed's policy goes: DIR/seed-N/policy.txt (the weight
    /// table the firmware compiles in), DIR/seed-N/policy.bpk (the same
    /// layers as a burnpack checkpoint) and DIR/summary.csv.
    #[arg(long, default_value = "out/learn-to-fly")]
    out: PathBuf,
}

/// Environment steps per second alone on one core (no network: each step
/// commands hover with a small alternating offset), for the cost split.
fn env_steps_per_second(cfg: &LearnToFlyConfig) -> Result<f64> {
    let vehicles = cfg.vehicles(&fclink::quad::QuadParams::CRAZYFLIE, 64, 99);
    let mut env = QuadHoverEnv::new(cfg.clone(), vehicles)?;
    let mut obs = [0.0f32; rl::quadrotor::OBS_DIM];
    env.start(0, 0, None)?;
    let began = Instant::now();
    let mut n = 0u64;
    let mut k = 0u64;
    while began.elapsed().as_secs_f64() < 0.5 {
        for _ in 0..1000 {
            let h = env.hover_action();
            let wiggle = if n.is_multiple_of(2) { 0.01 } else { -0.01 };
            let (_, term, trunc) =
                env.step_motors([h + wiggle, h - wiggle, h + wiggle, h - wiggle]);
            env.observe_into(&mut obs);
            if term || trunc {
                k += 1;
                env.start((k % 64) as usize, k, None)?;
            }
            n += 1;
        }
    }
    Ok(n as f64 / began.elapsed().as_secs_f64())
}

fn bar(ev: &Evaluation, max_steps: usize, tty: bool) {
    let frac = ev.step as f64 / max_steps.max(1) as f64;
    let cells: String = (0..30)
        .map(|i| if (i as f64) < frac * 30.0 { '#' } else { '.' })
        .collect();
    let worst = if ev.worst_hold_error.is_finite() {
        format!("{:.3} m", ev.worst_hold_error)
    } else {
        "crashed".into()
    };
    let line = format!(
        "[{cells}] {:>8}/{max_steps} steps  {:6.1} s  greedy return {:6.1}  held-out flying {}/{}  worst hold error {worst}",
        ev.step,
        ev.elapsed.as_secs_f64(),
        ev.mean_return,
        ev.passed,
        ev.vehicles,
    );
    if tty {
        eprint!("\r{line}   ");
        let _ = std::io::stderr().flush();
    } else {
        eprintln!("{line}");
    }
}

/// The firmware check of each written policy: from rest at the target, fly
/// this long unmeasured (s; the integral finds the thrust error)...
const FIRMWARE_WARM_S: f32 = 5.0;
/// ...hover this long (s)...
const FIRMWARE_HOLD_S: f32 = 30.0;
/// ...then move the target this far (m)...
const FIRMWARE_STEP_M: f32 = 0.5;
/// ...and fly this long (s).
const FIRMWARE_SETTLE_S: f32 = 5.0;

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

pub(crate) fn learn_to_fly(a: LearnToFlyArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let mut cfg = match &a.config {
        Some(p) => LearnToFlyConfig::load(p)?,
        None => LearnToFlyConfig::default_file(),
    };
    if let Some(m) = a.max_steps {
        cfg.train.max_steps = m;
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let env_rate = env_steps_per_second(&cfg)?;
    // The twin critics run one per thread of this pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("cannot start the training threads")?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut rows = Vec::new();
    let mut times = Vec::new();
    let mut rates = Vec::new();
    for s in 0..a.seeds {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let seed = a
            .seed
            .checked_add(s as u64)
            .context("--seed + --seeds passes the largest seed")?;
        eprintln!(
            "seed {seed}: training ({} held-out vehicles, criterion: within {} m over the last {} s from a {} rad tilt)",
            cfg.criterion.vehicles,
            cfg.criterion.position,
            cfg.criterion.hold_seconds,
            cfg.criterion.tilt
        );
        let out = pool.install(|| {
            l2f::train(
                &cfg,
                seed,
                |ev| bar(ev, cfg.train.max_steps, tty),
                || stop.load(Ordering::Relaxed),
            )
        })?;
        if tty {
            eprintln!();
        }
        let dir = a.out.join(format!("seed-{seed}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let table = dir.join("policy.txt");
        std::fs::write(&table, l2f::weight_table(&out.actor))
            .with_context(|| format!("cannot write {}", table.display()))?;
        l2f::save_checkpoint(&out.actor, &dir.join("policy.bpk"))?;
        let train_rate = out.steps as f64 / (out.elapsed - out.eval_time).as_secs_f64().max(1e-9);
        rates.push(train_rate);
        match out.time_to_fly {
            Some(t) => {
                times.push(t.as_secs_f64());
                println!(
                    "seed {seed}: flies after {:.1} s, {} steps ({train_rate:.0} training steps/s on {} threads); policy {}",
                    t.as_secs_f64(),
                    out.steps_to_fly.unwrap_or(out.steps),
                    a.threads,
                    table.display()
                );
            }
            None => println!(
                "seed {seed}: did not fly within {} steps ({:.1} s, {train_rate:.0} training steps/s on {} threads); last policy {}",
                out.steps,
                out.elapsed.as_secs_f64(),
                a.threads,
                table.display()
            ),
        }
        // The firmware's own controller flying the written policy on the
        // nominal vehicle, longer than the criterion's episodes.
        let fw = l2f::fly_on_firmware(
            &out.actor,
            fclink::quad::QuadParams::CRAZYFLIE,
            cfg.task.control_hz,
            FIRMWARE_WARM_S,
            FIRMWARE_HOLD_S,
            FIRMWARE_STEP_M,
            FIRMWARE_SETTLE_S,
        )?;
        println!(
            "seed {seed}: on the firmware's controller (nominal vehicle, after {FIRMWARE_WARM_S:.0} s): {FIRMWARE_HOLD_S:.0} s hover within {:.3} m; after a {FIRMWARE_STEP_M} m step {} and within {:.3} m over the last second of {FIRMWARE_SETTLE_S:.0} s",
            fw.hold_max,
            fw.step_settle
                .map_or("never within 0.1 m".into(), |t| format!(
                    "within 0.1 m after {t:.2} s"
                )),
            fw.step_final
        );
        let last = out.evaluations.last().copied();
        // The first of the best (max_by_key would give the last).
        let best = out
            .evaluations
            .iter()
            .fold(None::<Evaluation>, |b, e| match b {
                Some(b) if b.passed >= e.passed => Some(b),
                _ => Some(*e),
            });
        if let Some(b) = best {
            println!(
                "seed {seed}: best evaluation {}/{} held-out vehicles within {} m (at step {}); last {}/{}",
                b.passed,
                b.vehicles,
                cfg.criterion.position,
                b.step,
                last.map_or(0, |e| e.passed),
                b.vehicles
            );
        }
        rows.push(format!(
            "{seed},{},{},{},{:.1},{},{},{},{:.4},{},{:.4}",
            out.time_to_fly
                .map_or("".into(), |t| format!("{:.2}", t.as_secs_f64())),
            out.steps_to_fly.map_or("".into(), |v| v.to_string()),
            out.steps,
            train_rate,
            last.map_or(0, |e| e.passed),
            last.map_or("".into(), |e| format!("{:.4}", e.worst_hold_error)),
            best.map_or(0, |e| e.passed),
            fw.hold_max,
            fw.step_settle.map_or("".into(), |t| format!("{t:.2}")),
            fw.step_final,
        ));
    }
    let csv = a.out.join("summary.csv");
    std::fs::write(
        &csv,
        format!(
            "seed,seconds_to_fly,steps_to_fly,steps,training_steps_per_s,held_out_passed,worst_hold_error_m,best_held_out_passed,firmware_hold_max_m,firmware_step_settle_s,firmware_step_final_m\n{}",
            rows.iter().map(|r| format!("{r}\n")).collect::<String>()
        ),
    )
    .with_context(|| format!("cannot write {}", csv.display()))?;
    if !rates.is_empty() {
        let train = rates.iter().sum::<f64>() / rates.len() as f64;
        println!(
            "training: {train:.0} steps/s on {} thread(s); environment alone: {env_rate:.0} steps/s on one core (the environment is {:.2} % of a training step)",
            a.threads,
            100.0 * train / env_rate.max(1e-9)
        );
    }
    println!("summary {}", csv.display());
    if stop.load(Ordering::Relaxed) {
        if rows.is_empty() {
            println!("interrupted before the first seed");
        } else {
            println!(
                "interrupted: {} of {} seeds ran (the last one cut short); their policies are written",
                rows.len(),
                a.seeds
            );
        }
    }
    let flew = times.len();
    let ran = rows.len();
    // The median over every seed that ran, a seed that did not fly counted
    // as slower than any that did: finite when more than half flew.
    let mut all = times;
    all.resize(ran, f64::INFINITY);
    match median(all) {
        None => println!("no seed ran"),
        Some(m) if m.is_finite() && flew == ran => {
            println!("median wall time to fly: {m:.1} s over {flew} seeds (all flew)")
        }
        Some(m) if m.is_finite() => println!(
            "{flew} of {ran} seeds flew; median wall time to fly over all {ran}: {m:.1} s (a seed that did not fly counts as slower than any that did)"
        ),
        Some(_) => println!(
            "{flew} of {ran} seeds flew: no median wall time (half or more did not fly within {} steps)",
            cfg.train.max_steps
        ),
    }
    Ok(())
}
