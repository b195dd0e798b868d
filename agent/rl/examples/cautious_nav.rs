//! Study: interventions per 100 m of hand-made controllers on the SELFI task,
//! as yardsticks for the learned policies (same rooms, walkers and supervisor).
//!
//! They fly on the truth inputs (`sensing = "truth"`), as they were measured.
//!
//! `cargo run --release -p rl --example cautious_nav -- CONFIG SEEDS MINUTES ARG MODE`
//! - `reactive` (default): toward the goal; slows so that the central reading
//!   stays ARG metres beyond the supervisor's limit, turns to the more open side
//!   when something is within 2 m ahead;
//! - `straight`: toward the goal at ARG m/s;
//! - `hover`: stays put;
//! - `oracle`: a privileged planner that sees the walkers' positions and
//!   velocities: every decision it tries 6 speeds × 7 yaw rates held for ARG
//!   seconds, moves the walkers on, and takes the command with the most goal
//!   progress among those that neither collide nor bring anything inside the
//!   supervisor's limit in the central third of the scan.

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
        let mut env = NavEnv::new(&cfg, seed, &rl::selfi::nav::TruthSensing)?;
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
                "oracle" => oracle(&env, &cfg, margin).unwrap_or((v, yaw)),
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

/// The privileged planner of mode `oracle` (see the module comment).
fn oracle(env: &NavEnv, cfg: &SelfiConfig, horizon: f64) -> Option<(f64, f64)> {
    let world = env.world()?;
    let (pose, goal) = env.pose_and_goal()?;
    let dt = 0.1;
    let steps = (horizon / dt).round().max(1.0) as usize;
    // The central third of a 32-beam scan over the camera's field of view.
    let half_fov = 0.5 * 90f64.to_radians();
    let n = rl::selfi::BEAMS;
    let central: Vec<f64> = (n / 3..(2 * n).div_ceil(3))
        .map(|i| half_fov - 2.0 * half_fov * i as f64 / (n - 1) as f64)
        .collect();
    let d0 = ((goal[0] - pose[0]).powi(2) + (goal[1] - pose[1]).powi(2)).sqrt();
    let mut best: Option<(f64, (f64, f64))> = None;
    for v in [0.0, 0.3, 0.6, 0.9, 1.2, 1.5] {
        for w in [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5] {
            let mut world = world.clone();
            let [mut x, mut y, mut yaw] = pose;
            let mut score = 0.0;
            for k in 0..steps {
                world.advance_movers(dt);
                x += v * yaw.cos() * dt;
                y += v * yaw.sin() * dt;
                yaw += w * dt;
                let p = [x, y, cfg.plan.altitude];
                if world.collides(p, 0.2) {
                    score -= 1000.0 / (k + 1) as f64;
                    break;
                }
                let near = central
                    .iter()
                    .map(|a| world.raycast(p, [(yaw + a).cos(), (yaw + a).sin(), 0.0]).t)
                    .fold(f64::INFINITY, f64::min);
                if near < cfg.nav.stop_distance + cfg.nav.stop_per_speed * v + 0.1 {
                    score -= 100.0 / (k + 1) as f64;
                    break;
                }
            }
            let d1 = ((goal[0] - x).powi(2) + (goal[1] - y).powi(2)).sqrt();
            score += d0 - d1;
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, (v, w)));
            }
        }
    }
    best.map(|(_, c)| c)
}
