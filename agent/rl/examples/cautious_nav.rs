//! Study: interventions per 100 m of hand-made controllers on the SELFI task,
//! as yardsticks for the learned policies (same rooms, walkers and supervisor).
//!
//! `cargo run --release -p rl --example cautious_nav -- CONFIG SEEDS MINUTES ARG MODE`
//! - `reactive` (default): toward the goal; slows so that the central reading
//!   stays ARG metres beyond the supervisor's limit, turns to the more open side
//!   when something is within 2 m ahead;
//! - `straight`: toward the goal at ARG m/s;
//! - `hover`: stays put.

use rl::selfi::SelfiConfig;
use rl::selfi::data::central_min;
use rl::selfi::nav::NavEnv;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map_or("agent/rl/config/selfi.toml", |s| s.as_str());
    let seeds: u64 = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let minutes: f64 = args.get(3).map_or(Ok(30.0), |s| s.parse())?;
    let margin: f64 = args.get(4).map_or(Ok(0.4), |s| s.parse())?;
    // Mode: "reactive" (default), "hover" (no motion), "straight" (goal at a fixed speed).
    let mode = args.get(5).map_or("reactive", |s| s.as_str());
    let cfg = SelfiConfig::from_toml_str(&std::fs::read_to_string(path)?, path)?;
    let n = rl::selfi::BEAMS;
    let decisions = (minutes * 60.0 * cfg.plan.control_hz) as u64;
    let (mut metres, mut interventions, mut collisions, mut episodes, mut successes) =
        (0.0, 0u64, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let mut env = NavEnv::new(&cfg, seed)?;
        let mut obs = env.reset()?;
        for _ in 0..decisions {
            let scan: Vec<f32> = obs[..n]
                .iter()
                .map(|x| x * rl::selfi::data::SCAN_RANGE)
                .collect();
            let gx = obs[2 * n + 3];
            let gy = obs[2 * n + 4];
            let bearing = f64::from(gy.atan2(gx));
            let c = central_min(&scan);
            let wide = scan[n / 6..n - n / 6]
                .iter()
                .fold(f64::INFINITY, |m, &d| m.min(f64::from(d)));
            // Speed that keeps the central reading `margin` beyond the supervisor's limit.
            let v = ((c - cfg.nav.stop_distance - margin) / cfg.nav.stop_per_speed)
                .clamp(0.0, 1.2)
                .min(((wide - 0.3) / 0.6).clamp(0.2, 1.2));
            let half = n / 2;
            // The scan runs left to right; a positive yaw rate turns left.
            let left: f32 = scan[..half].iter().sum();
            let right: f32 = scan[half..].iter().sum();
            let yaw = if c < 2.0 {
                // Something ahead: turn to the more open side.
                if left > right { 1.2 } else { -1.2 }
            } else {
                (2.0 * bearing).clamp(-1.2, 1.2)
            };
            let (v, yaw) = match mode {
                "hover" => (0.0, 0.0),
                "straight" => (margin, (2.0 * bearing).clamp(-1.2, 1.2)),
                _ => (v, yaw),
            };
            let a = cfg.plan.normalise(v, yaw);
            let s = env.step(a)?;
            metres += s.distance;
            interventions += u64::from(s.intervention_started);
            collisions += u64::from(s.frame.collision);
            if s.terminated || s.truncated {
                episodes += 1;
                successes += u64::from(s.frame.success);
                obs = env.reset()?;
            } else {
                obs = s.next_obs;
            }
        }
    }
    println!(
        "{mode} {margin}: {metres:.0} m, {interventions} interventions ({:.2}/min, {:.2}/100 m), collisions/100 m {:.2}, success {:.1} % of {episodes}",
        interventions as f64 / (minutes * seeds as f64),
        interventions as f64 * 100.0 / metres,
        collisions as f64 * 100.0 / metres,
        successes as f64 * 100.0 / episodes.max(1) as f64
    );
    Ok(())
}
