//! Quick validation run: `cargo run --release -p rl --example solve -- cartpole 0 100000`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let task = if args.get(1).map(String::as_str) == Some("pendulum") {
        rl::validate::Classic::Pendulum
    } else {
        rl::validate::Classic::CartPole
    };
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let steps: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    #[allow(deprecated)]
    let device = burn::tensor::Device::ndarray();
    let cfg = rl::train::TrainConfig::default();
    let every = if task == rl::validate::Classic::CartPole {
        5000
    } else {
        2000
    };
    let r = rl::validate::solve(
        rl::validate::SolveSpec {
            task,
            seed,
            max_steps: steps,
            eval_every: every,
            stop_when_solved: true,
        },
        &cfg,
        &device,
        &mut |s, m| eprintln!("step {s}: mean return {m:.1}"),
    );
    match r {
        Ok(r) => println!(
            "{} seed {}: solved at {:?}, mean {:.1}, {} steps, {} updates, {:.1} steps/s",
            r.task.name(),
            r.seed,
            r.solved_at,
            r.mean_return,
            r.steps,
            r.updates,
            r.steps_per_second()
        ),
        Err(e) => eprintln!("error: {e}"),
    }
}
