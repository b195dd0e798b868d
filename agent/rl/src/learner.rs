//! What the training loop and the curricula need from any learner.

use crate::RlError;
use crate::env::Act;
use crate::replay::Transition;
use std::path::Path;

/// A learning agent: acts, learns from its transitions, and estimates state values.
pub trait Learner: Send {
    /// The action for an observation: exploratory while training, greedy (or the
    /// policy's mean) for evaluation.
    fn act(&mut self, obs: &[f32], explore: bool) -> Act;
    /// Store one environment step and train when the schedule says so.
    fn observe(&mut self, t: Transition) -> Result<(), RlError>;
    /// Store one environment step without learning from it; it counts as
    /// seen. A learner resumed from a checkpoint (which keeps no replay)
    /// refills its replay so before it trains again.
    fn remember(&mut self, t: Transition);
    /// The steps given since the last call were one contiguous run of one
    /// actor, and the next ones may be another's: n-step returns folded so far
    /// end here (shorter, bootstrapped where they end). A no-op for learners
    /// without n-step returns.
    fn cut(&mut self) {}
    /// A curriculum iteration of `steps` environment steps begins (SPaCE's
    /// 100·N): an on-policy learner may hold its update until the end of it.
    fn begin_iteration(&mut self, _steps: u64) {}
    /// The run will train for `total` environment steps in all (a schedule
    /// that depends on the budget, such as PPO's `anneal_lr`, reads it).
    fn set_budget(&mut self, _total: u64) {}
    /// A curriculum iteration ended (SPaCE's 100·N steps): an on-policy
    /// learner may learn on what it gathered, as the reference's one learning
    /// call per iteration did. Off-policy learners ignore it.
    fn end_iteration(&mut self) -> Result<(), RlError> {
        Ok(())
    }
    /// State-value estimates V(s) of a batch of observations (SPaCE's signal):
    /// max_a Q(s, a) for DQN, E_a~π[min Q − α log π] for SAC.
    fn values(&mut self, obs: &[Vec<f32>]) -> Vec<f32>;
    /// Environment steps seen.
    fn steps(&self) -> u64;
    /// Gradient steps taken.
    fn updates(&self) -> u64;
    /// Mean loss of the recent gradient steps (critic loss for SAC).
    fn recent_loss(&self) -> Option<f32>;
    /// Write the networks and the learner's state into `dir`.
    fn save(&self, dir: &Path) -> Result<(), RlError>;
    /// Load what [`Learner::save`] wrote; networks of another shape are refused.
    fn load(&mut self, dir: &Path) -> Result<(), RlError>;
    /// The acting network, saved alone for the onboard policy node.
    fn export_policy(&self, path: &Path) -> Result<(), RlError>;
    /// Act with the network [`Learner::export_policy`] wrote (an actor
    /// process takes its learner's latest weights); another shape is refused
    /// and the current network kept.
    fn import_policy(&mut self, path: &Path) -> Result<(), RlError>;
    /// Count `steps` environment steps as seen without learning from them: an
    /// actor process follows its learner's exploration schedule (DQN's ε,
    /// SAC's random warm-up), which runs on the learner's step count.
    fn follow_steps(&mut self, steps: u64);
    /// `dqn`, `sac` or `ppo`.
    fn kind(&self) -> &'static str;
    /// Layer widths of the acting network, input first.
    fn policy_sizes(&self) -> Vec<usize>;
}

/// Save a module as a burnpack file, naming the file in errors.
pub(crate) fn save_module<M: burn::module::Module>(m: &M, path: &Path) -> Result<(), RlError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| RlError::Io {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    m.clone().save_file(path).map_err(|e| RlError::Checkpoint {
        path: path.display().to_string(),
        reason: format!("{e:?}"),
    })
}

/// Load a burnpack file into a module of the expected shape.
pub(crate) fn load_module<M: burn::module::Module>(m: M, path: &Path) -> Result<M, RlError> {
    if !path.is_file() {
        return Err(RlError::Checkpoint {
            path: path.display().to_string(),
            reason: "no such file".into(),
        });
    }
    m.try_load_file(path).map_err(|e| RlError::Checkpoint {
        path: path.display().to_string(),
        reason: format!("{e:?}"),
    })
}

/// Write a small TOML state file next to the networks.
pub(crate) fn write_state<T: serde::Serialize>(state: &T, path: &Path) -> Result<(), RlError> {
    let text = toml::to_string(state).map_err(|e| RlError::Checkpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(|e| RlError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Read a TOML state file written by [`write_state`].
pub(crate) fn read_state<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RlError> {
    let text = std::fs::read_to_string(path).map_err(|e| RlError::Checkpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| RlError::Checkpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Refuse a checkpoint whose networks have other layer sizes than this learner's.
pub(crate) fn check_sizes(
    path: &Path,
    saved: &[Vec<usize>],
    want: &[Vec<usize>],
) -> Result<(), RlError> {
    if saved == want {
        return Ok(());
    }
    Err(RlError::Checkpoint {
        path: path.display().to_string(),
        reason: format!("networks of layers {saved:?}, this learner needs {want:?}"),
    })
}

/// Mean of the last 256 losses.
pub(crate) fn recent_mean(losses: &[f32]) -> Option<f32> {
    let tail = &losses[losses.len().saturating_sub(256)..];
    (!tail.is_empty()).then(|| tail.iter().sum::<f32>() / tail.len() as f32)
}

/// The settings DQN and SAC share, checked the same way; `who` names the table.
pub(crate) fn check_common(
    who: &str,
    hidden: &[usize],
    learning_rate: f64,
    (batch, buffer): (usize, usize),
    gamma: f32,
) -> Result<(), RlError> {
    let bad = |what: &str| Err(RlError::Config(format!("{who}: {what}")));
    if hidden.is_empty() || hidden.contains(&0) {
        return bad("`hidden` needs at least one layer, none of width 0");
    }
    if !(learning_rate > 0.0 && learning_rate.is_finite()) {
        return bad("`learning_rate` must be a positive number");
    }
    if batch == 0 || buffer < batch {
        return bad("`batch` must be at least 1 and at most `buffer`");
    }
    if !(0.0..=1.0).contains(&gamma) {
        return bad("`gamma` must be in [0, 1]");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dqn::{Dqn, DqnConfig};
    use crate::env::Act;
    use crate::sac::{Sac, SacConfig};

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rl-import-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// An actor process's copy acts as its learner does once it imported the
    /// learner's exported network and follows its step count.
    #[test]
    fn an_imported_policy_acts_as_the_exporting_learner() {
        let device = crate::cpu();
        let obs: Vec<Vec<f32>> = (0..16)
            .map(|k| (0..4).map(|j| ((k * 4 + j) as f32 * 0.37).sin()).collect())
            .collect();
        let d = dir("dqn");
        let path = d.join("q.bpk");
        let cfg = DqnConfig::default();
        let mut learner = Dqn::new(cfg.clone(), 4, 2, &device, 1).unwrap();
        let mut actor = Dqn::new(cfg.clone(), 4, 2, &device, 2).unwrap();
        assert_ne!(
            learner.values(&obs),
            actor.values(&obs),
            "seeds 1 and 2 differ"
        );
        learner.export_policy(&path).unwrap();
        actor.import_policy(&path).unwrap();
        assert_eq!(learner.values(&obs), actor.values(&obs));
        for o in &obs {
            assert_eq!(learner.act(o, false), actor.act(o, false));
        }
        // ε follows the learner's steps: fully random at 0, greedy-ish after.
        actor.follow_steps(cfg.epsilon_steps);
        assert!((actor.epsilon() - cfg.epsilon_end).abs() < 1e-12);
        // A network of another shape is refused and the current one kept.
        let mut wide = Dqn::new(
            DqnConfig {
                hidden: vec![8],
                ..cfg
            },
            4,
            2,
            &device,
            3,
        )
        .unwrap();
        let before = wide.values(&obs);
        assert!(wide.import_policy(&path).is_err());
        assert_eq!(wide.values(&obs), before);

        let path = d.join("actor.bpk");
        let mut learner = Sac::new(SacConfig::default(), 3, 1, &device, 1).unwrap();
        let mut actor = Sac::new(SacConfig::default(), 3, 1, &device, 2).unwrap();
        let o = [0.3f32, -0.2, 0.9];
        assert_ne!(learner.act(&o, false), actor.act(&o, false));
        learner.export_policy(&path).unwrap();
        actor.import_policy(&path).unwrap();
        assert_eq!(learner.act(&o, false), actor.act(&o, false));
        // Before `learning_starts` SAC explores with uniform actions; after, from its policy.
        actor.follow_steps(SacConfig::default().learning_starts);
        let Act::Continuous(a) = actor.act(&o, true) else {
            panic!("SAC acts continuously")
        };
        assert_eq!(a.len(), 1);
        std::fs::remove_dir_all(&d).ok();
    }
}
