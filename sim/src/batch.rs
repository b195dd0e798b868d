//! A vectorised batch of environments stepped in parallel.
//!
//! Each environment owns its random streams, so results are identical whatever
//! the number of threads; finished episodes restart automatically with a seed
//! derived from the batch seed, the environment index and the episode count.

use crate::context::Context;
use crate::env::{Action, Env, EnvConfig, EnvError, Observation, StepResult};
use crate::render::Renderer;
use rayon::prelude::*;
use std::sync::Arc;

/// N environments, each with its own context.
#[derive(Debug)]
pub struct VecEnv {
    envs: Vec<Env>,
    contexts: Vec<Context>,
    seed: u64,
    episodes: Vec<u64>,
}

/// The seed of episode `episode` of environment `index` in a batch seeded `seed`.
pub fn episode_seed(seed: u64, index: usize, episode: u64) -> u64 {
    let mut r = crate::rng::Rng::new(
        seed ^ (index as u64).wrapping_mul(0xd134_2543_de82_ef95)
            ^ episode.wrapping_mul(0x2545_f491_4f6c_dd1d),
    );
    r.next_u64()
}

impl VecEnv {
    /// One environment per context, sharing one renderer.
    pub fn new(config: EnvConfig, contexts: Vec<Context>, seed: u64) -> Result<Self, EnvError> {
        let renderer = config
            .render
            .then(|| Arc::new(Renderer::new(config.rig, 1)));
        let envs = contexts
            .iter()
            .map(|_| Env::with_renderer(config.clone(), renderer.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let n = envs.len();
        Ok(Self {
            envs,
            contexts,
            seed,
            episodes: vec![0; n],
        })
    }

    /// Number of environments.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Reset every environment to its first episode.
    pub fn reset(&mut self) -> Result<Vec<Observation>, EnvError> {
        let seed = self.seed;
        self.episodes.iter_mut().for_each(|e| *e = 0);
        self.envs
            .par_iter_mut()
            .zip(self.contexts.par_iter())
            .enumerate()
            .map(|(i, (env, ctx))| env.reset(ctx, episode_seed(seed, i, 0)))
            .collect()
    }

    /// Step every environment with its action; a finished one is reset and the
    /// returned observation is the first of its new episode (the step's reward,
    /// flags and info still describe the finished step).
    pub fn step(&mut self, actions: &[Action]) -> Result<Vec<StepResult>, EnvError> {
        if actions.len() != self.envs.len() {
            return Err(EnvError::Config(format!(
                "{} actions for {} environments",
                actions.len(),
                self.envs.len()
            )));
        }
        let seed = self.seed;
        self.envs
            .par_iter_mut()
            .zip(self.contexts.par_iter())
            .zip(self.episodes.par_iter_mut())
            .zip(actions.par_iter())
            .enumerate()
            .map(|(i, (((env, ctx), ep), a))| {
                let mut r = env.step(a)?;
                if r.terminated || r.truncated {
                    *ep += 1;
                    r.obs = env.reset(ctx, episode_seed(seed, i, *ep))?;
                }
                Ok(r)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(threads: usize) -> Vec<Vec<StepResult>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let contexts: Vec<Context> = (0..6)
                .map(|i| Context {
                    obstacle_count: 4 + i,
                    ..Context::default()
                })
                .collect();
            let mut v = VecEnv::new(
                EnvConfig {
                    max_steps: 20,
                    ..EnvConfig::default()
                },
                contexts,
                9,
            )
            .unwrap();
            v.reset().unwrap();
            (0..45)
                .map(|t| {
                    let acts: Vec<Action> = (0..6)
                        .map(|i| Action::Velocity {
                            forward: 1.0 + 0.2 * i as f64,
                            left: 0.0,
                            up: 0.0,
                            yaw_rate: 0.3 * ((t % 5) as f64 - 2.0),
                        })
                        .collect();
                    v.step(&acts).unwrap()
                })
                .collect()
        })
    }

    #[test]
    fn batch_is_deterministic_across_thread_counts_and_auto_resets() {
        let a = run(1);
        let b = run(2);
        assert_eq!(a, b);
        // Episodes of 20 steps: step 20 truncates and the next observation is a fresh start.
        assert!(a[19].iter().all(|r| r.truncated || r.terminated));
        assert!(a[20].iter().all(|r| r.info.steps <= 20));
        // Different environments see different worlds.
        assert_ne!(a[0][0].obs.scan, a[0][1].obs.scan);
        let mut v = VecEnv::new(EnvConfig::default(), vec![Context::default()], 1).unwrap();
        v.reset().unwrap();
        assert!(v.step(&[]).is_err());
    }
}
