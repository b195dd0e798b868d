//! Reinforcement learning across processes and machines: actors that step the
//! environment and a learner that trains, over zenoh (the actor–learner split
//! of Ape-X, Horgan et al. 2018, and IMPALA, Espeholt et al. 2018, for
//! off-policy learners: DQN and SAC).
//!
//! - `agent node actor` ([`actor::run`]): the task's environment and a copy of
//!   the learner's acting network; it steps, sends its steps in batches
//!   ([`msg::Experience`]) and takes newer weights between batches;
//! - `agent node rl-learner` ([`learner::run`]): every step goes through the
//!   learner's `observe` in arrival order, so its training schedule (gradient
//!   steps per environment step, target updates, ε) is the single-process
//!   one's; it evaluates on the single-process grid, publishes its acting
//!   network (a burnpack file in a `Weights` message, versioned) and
//!   checkpoints, and resumes from its checkpoint.
//!
//! Back-pressure is by credit: the learner answers every batch once it has
//! learned from it ([`msg::Credit`]); an actor sends its next batch only while
//! fewer than `max_in_flight` of its batches wait, so no actor runs more than
//! `max_in_flight × batch` steps ahead of what the learner has taken in. An
//! actor whose credit stops coming asks again through the same queue (an
//! empty batch, answered after the ones before it): a busy learner answers
//! late, a restarted one at once; a learner silent for `learner_timeout` ends
//! the actor with an error. Actors that join late greet the learner and get its
//! latest weights; actors that die are noted and the run goes on with the
//! others.
//!
//! On several hosts the processes are clients of one router (`agent router
//! --open`, or zenoh's `zenohd`) and reach each other through it only.

pub mod actor;
pub mod learner;
pub mod local;
pub mod msg;

use rl::validate::Classic;

/// The key expressions of one training run.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Actors' batches to the learner.
    pub experience: String,
    /// The learner's credit to the actors.
    pub credit: String,
    /// The learner's acting network.
    pub weights: String,
}

impl Keys {
    /// The keys under `run` (a zenoh key without wildcards).
    pub fn new(run: &str) -> anyhow::Result<Keys> {
        if run.is_empty()
            || run.starts_with('/')
            || run.ends_with('/')
            || run.contains(['*', '$', '?', '#', ' '])
        {
            anyhow::bail!(
                "run name `{run}`: use letters, digits, `-`, `_` and `/` between parts (no wildcards)"
            );
        }
        Ok(Keys {
            experience: format!("{run}/rl/experience"),
            credit: format!("{run}/rl/credit"),
            weights: format!("{run}/rl/weights"),
        })
    }
}

/// What the actors step and the learner learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// A classic task with its solved threshold (DQN on CartPole, SAC on Pendulum).
    Classic(Classic),
    /// A family of an instance file (`agent train --instances`, e.g. the twin's
    /// rooms): actors fly its training instances in turn, the learner evaluates
    /// on its held-out ones (mean greedy return; no solved threshold).
    Family(Box<rl::instances::InstanceFile>),
}

impl Task {
    /// Its name in reports and progress files.
    pub fn name(&self) -> String {
        match self {
            Task::Classic(c) => c.name().into(),
            Task::Family(f) => format!("{:?} family", f.task).to_lowercase(),
        }
    }

    /// The environment actors step (a family's training instances).
    pub fn train_env(&self) -> Result<Box<dyn rl::env::Environment>, rl::RlError> {
        match self {
            Task::Classic(c) => c.env(),
            Task::Family(f) => f.env(&f.train),
        }
    }

    /// The environment the learner evaluates on (a family's held-out instances).
    pub fn eval_env(&self) -> Result<Box<dyn rl::env::Environment>, rl::RlError> {
        match self {
            Task::Classic(c) => c.env(),
            Task::Family(f) => f.env(&f.test),
        }
    }

    /// The mean greedy return that counts as solved, where there is one.
    pub fn threshold(&self) -> Option<f64> {
        match self {
            Task::Classic(c) => Some(c.threshold()),
            Task::Family(_) => None,
        }
    }

    /// The network a run's weights are for (`Weights::network`): an actor never
    /// loads another task's.
    pub fn network(&self) -> String {
        format!("rl/{}", self.name().replace([' ', '(', ')'], ""))
    }
}

/// Seed of actor `k` of a run seeded `seed` (its episodes and exploration
/// differ from every other actor's and from the learner's evaluation).
pub fn actor_seed(seed: u64, k: u32) -> u64 {
    seed.wrapping_mul(1_000_003)
        .wrapping_add(u64::from(k).wrapping_mul(0x9e37_79b9))
}
