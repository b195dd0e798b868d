//! Reinforcement learning in burn for the onboard agent and its twin.
//!
//! - [`dqn`]: double DQN with a target network and n-step returns (discrete actions);
//! - [`sac`]: soft actor-critic with twin Q and automatic entropy (continuous actions);
//! - [`ppo`]: proximal policy optimisation (discrete actions), the on-policy
//!   learner whose updates follow SPaCE's iterations as in the reference;
//! - [`curriculum`]: SPaCE, the self-paced context evaluation curriculum, and its
//!   round-robin and uniform-random baselines behind one interface;
//! - [`train`]: the experiment loop (curriculum, periodic held-out evaluation,
//!   CSV metrics, checkpoints);
//! - [`env`]: the environments (contextual cart-pole and pendulum, the twin's
//!   obstacle-avoidance flight) and [`instances`]: the instance files.
//!
//! Every learner exposes the state-value estimate V(s) that SPaCE ranks
//! instances by. Networks run on any burn device: CPU `ndarray` by default.
// Unsafe code only to enter the learn-to-fly trainer's AVX2 build, on a CPU
// found to have it (three calls in `l2f`, each holding its `Avx2Fma` proof).
#![deny(unsafe_code)]

pub mod curriculum;
pub mod dqn;
pub mod env;
pub mod instances;
pub mod l2f;
pub mod learner;
pub mod mlp;
pub mod policy;
pub mod ppo;
pub mod quadrotor;
pub mod replay;
pub mod sac;
pub mod selfi;
pub mod tiny;
pub mod train;
pub mod validate;

use thiserror::Error;

/// The CPU device unit tests run on.
#[cfg(test)]
pub(crate) fn cpu() -> burn::tensor::Device {
    #[allow(deprecated)]
    burn::tensor::Device::ndarray()
}

/// Why learning could not go on.
#[derive(Debug, Error)]
pub enum RlError {
    /// An instance does not exist or its context is invalid.
    #[error("instance: {0}")]
    Instance(String),
    /// An action the environment cannot take.
    #[error("action: {0}")]
    Action(String),
    /// An instance or configuration file is unusable.
    #[error("{0}")]
    Config(String),
    /// A loss became NaN or infinite; the weights before the step are kept.
    #[error("training diverged at step {step}: {what} = {value}")]
    Diverged {
        /// Environment step at which it happened.
        step: u64,
        /// Which loss.
        what: &'static str,
        /// Its value.
        value: f32,
    },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}
