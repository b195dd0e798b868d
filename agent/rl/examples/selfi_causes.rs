//! Study: what the supervisor's take-overs are caused by when a saved SELFI
//! actor flies the evaluation rooms of a run (as `selfi online` evaluates it):
//! a walker (its surface within `ARG` m at the take-over) or a static obstacle.
//!
//! With the offline phase's folder as `OFFLINE`, it also says what J predicted
//! over the decisions before each take-over: the largest walker closeness (walker
//! take-overs) or unsafe share (static ones) of the plans flown in the
//! `intervention_window` decisions before it, in five bands, next to the share of
//! all decisions in each band — did J see it coming, and the actor fly on anyway?
//!
//! The actor flies on the truth inputs (`sensing = "truth"`: ray-cast scan, every walker in range).
//!
//! `cargo run --release -p rl --example selfi_causes -- CONFIG ACTOR.bpk SEED MINUTES [WALKER_M [OFFLINE]]`

use rl::selfi::SelfiConfig;
use rl::selfi::experiment::{OfflineBundle, fly_deployed};
use rl::selfi::model::objective_values_and_features;
use rl::selfi::nav::TruthSensing;
use rl::selfi::online::load_actor;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        return Err(
            "usage: selfi_causes CONFIG ACTOR.bpk SEED MINUTES [WALKER_M [OFFLINE]]".into(),
        );
    }
    let cfg = SelfiConfig::from_toml_str(&std::fs::read_to_string(&a[1])?, &a[1])?;
    let seed: u64 = a[3].parse()?;
    let minutes: f64 = a[4].parse()?;
    let near: f64 = a.get(5).map_or(Ok(1.0), |s| s.parse())?;
    #[allow(deprecated)]
    let dev = burn::tensor::Device::ndarray();
    let actor = load_actor(
        Path::new(&a[2]),
        &cfg.offline.actor_hidden,
        cfg.plan.horizon,
        &dev,
    )?;
    let bundle = match a.get(6) {
        Some(dir) => Some(OfflineBundle::load(Path::new(dir), &dev)?),
        None => None,
    };
    // Bands of J's prediction: [< 0.1, < 0.3, < 0.6, < 1, ≥ 1].
    let band = |v: f32| [0.1, 0.3, 0.6, 1.0].iter().filter(|&&b| v >= b).count();
    let window = cfg.online.intervention_window.max(1);
    let mut recent: Vec<(f32, f32)> = Vec::new(); // (unsafe share, walker closeness)
    let (mut all_w, mut all_u) = ([0u64; 5], [0u64; 5]);
    let (mut before_w, mut before_u) = ([0u64; 5], [0u64; 5]);
    let total = (minutes * 60.0 * cfg.plan.control_hz).round() as u64;
    let (mut metres, mut walker, mut stat, mut coll_w, mut coll_s) = (0.0, 0u64, 0u64, 0u64, 0u64);
    let mut speed = 0.0;
    // Walker take-overs: the walker standing (< 0.2 m/s), and one that follows
    // another within 2 s of the last take-over's end.
    let (mut standing, mut repeat) = (0u64, 0u64);
    let mut since_takeover = u64::MAX;
    let repeat_within = (2.0 * cfg.plan.control_hz) as u64;
    fly_deployed(
        &actor,
        &cfg,
        &TruthSensing,
        seed,
        minutes,
        &dev,
        |obs, plan, s| {
            if let Some(b) = &bundle {
                let (_, f) = objective_values_and_features(
                    &b.models,
                    obs,
                    plan,
                    &cfg.plan,
                    &cfg.objective,
                    &dev,
                );
                if !s.frame.intervention {
                    recent.push((f[1], f[2]));
                    if recent.len() > window {
                        recent.remove(0);
                    }
                    all_u[band(f[1])] += 1;
                    all_w[band(f[2])] += 1;
                }
                if s.intervention_started {
                    let most = |k: usize| {
                        recent
                            .iter()
                            .map(|r| if k == 0 { r.0 } else { r.1 })
                            .fold(0.0f32, f32::max)
                    };
                    if s.walker_clearance < near {
                        before_w[band(most(1))] += 1;
                    } else {
                        before_u[band(most(0))] += 1;
                    }
                }
                if s.terminated || s.truncated || s.frame.intervention {
                    recent.clear();
                }
            }
            metres += s.distance;
            speed += f64::from(s.frame.command[0]);
            let by_walker = s.walker_clearance < near;
            if s.intervention_started {
                if by_walker {
                    walker += 1;
                    let (x, y) = (s.frame.pose[0], s.frame.pose[1]);
                    if let Some(w) = s.frame.walkers.iter().min_by(|a, b| {
                        let da = (a.position[0] - x).hypot(a.position[1] - y);
                        let db = (b.position[0] - x).hypot(b.position[1] - y);
                        da.total_cmp(&db)
                    }) && w.velocity[0].hypot(w.velocity[1]) < 0.2
                    {
                        standing += 1;
                    }
                    if since_takeover <= repeat_within {
                        repeat += 1;
                    }
                } else {
                    stat += 1
                }
            }
            since_takeover = if s.frame.intervention {
                0
            } else {
                since_takeover.saturating_add(1)
            };
            if s.frame.collision {
                if by_walker { coll_w += 1 } else { coll_s += 1 }
            }
        },
    )?;
    let per = |n: u64| n as f64 * 100.0 / metres;
    println!(
        "{:.0} m, mean command {:.2} m/s; interventions/100 m: walker {:.2} (standing {:.2}, within 2 s of the last {:.2}), static {:.2}; collisions/100 m: walker {:.2}, static {:.2}",
        metres,
        speed / total as f64,
        per(walker),
        per(standing),
        per(repeat),
        per(stat),
        per(coll_w),
        per(coll_s)
    );
    if bundle.is_some() {
        let share = |c: &[u64; 5]| {
            let n = c.iter().sum::<u64>().max(1) as f64;
            c.iter()
                .map(|v| format!("{:4.1}", 100.0 * *v as f64 / n))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("J's prediction in bands <0.1 <0.3 <0.6 <1 >=1 (% of cases):");
        println!(
            "  walker closeness, before walker take-overs: {}",
            share(&before_w)
        );
        println!(
            "  walker closeness, all policy decisions:     {}",
            share(&all_w)
        );
        println!(
            "  unsafe share, before static take-overs:     {}",
            share(&before_u)
        );
        println!(
            "  unsafe share, all policy decisions:         {}",
            share(&all_u)
        );
    }
    Ok(())
}
