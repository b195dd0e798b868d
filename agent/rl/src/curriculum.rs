//! Instance curricula behind one interface: SPaCE (self-paced context
//! evaluation) and its round-robin and uniform-random baselines.
//!
//! SPaCE, as published (Eimer et al., ICML 2021) and as its reference code
//! does it: train on the first N
//! instances of an ordering π for 100·N environment steps; then evaluate V(s0) of
//! every training instance (one value forward pass each, no rollouts), grow N by
//! κ when the mean value over the current set has stopped changing (change ≤
//! η·|mean|, with an absolute floor), re-rank all instances and take the first N.
//!
//! Pitfalls of implementing it, and what this module does about them:
//! - P1 ties: V(s0) that does not depend on the instance gives no ranking signal.
//!   The sort is stable with the instance id as tie-break, and every update
//!   reports the spread of the values and counts the updates that were ties.
//! - P2 train/test: the curriculum only ever sees indices into the training set;
//!   the held-out set lives in another environment and is never ranked.
//! - P3 direction: the three published orderings are all here ([`RankMode`]),
//!   the one used is named in every report; `rel-improvement` guards its
//!   denominator.
//! - P4 growth test: the change is |m_t − m_{t−1}| (a sign flip is a change),
//!   compared with max(η·|m_t|, η_abs).
//! - P5 step accounting: evaluation lives outside the curriculum, on a fixed
//!   step grid shared by all curricula, and its steps are not counted.

use serde::{Deserialize, Serialize};
use sim::rng::Rng;

/// How SPaCE orders instances at each context evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RankMode {
    /// Largest increase of V(s0) since the last evaluation first (the paper's description).
    Improvement,
    /// Largest relative increase first, (v − v_prev) / max(|v_prev|, 1e-3).
    RelImprovement,
    /// Lowest V(s0) first (the reference code's default).
    Absolute,
}

impl RankMode {
    /// Name used in reports and files.
    pub fn name(self) -> &'static str {
        match self {
            RankMode::Improvement => "improvement",
            RankMode::RelImprovement => "rel-improvement",
            RankMode::Absolute => "absolute",
        }
    }
}

/// SPaCE settings (TOML table `[space]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpaceConfig {
    /// Growth threshold relative to |mean V(s0)| of the current set.
    pub eta: f64,
    /// Absolute floor of the growth threshold (value units).
    pub eta_abs: f64,
    /// Instances added per growth.
    pub kappa: usize,
    /// Instances in the first curriculum.
    pub initial: usize,
    /// Environment steps per curriculum instance in one iteration (T = this · N).
    pub steps_per_instance: u64,
    /// Ordering criterion.
    pub rank: RankMode,
    /// Spread (standard deviation) of V(s0) under which a ranking counts as a tie.
    pub tie_epsilon: f64,
}

impl Default for SpaceConfig {
    fn default() -> Self {
        Self {
            eta: 0.1,
            eta_abs: 0.05,
            kappa: 1,
            initial: 1,
            steps_per_instance: 100,
            rank: RankMode::Improvement,
            tie_epsilon: 1e-4,
        }
    }
}

/// Which curriculum to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CurriculumKind {
    /// Self-paced context evaluation.
    Space,
    /// Every training instance in turn, one per episode.
    RoundRobin,
    /// A uniformly random training instance per episode.
    Random,
}

impl CurriculumKind {
    /// Name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            CurriculumKind::Space => "space",
            CurriculumKind::RoundRobin => "round-robin",
            CurriculumKind::Random => "random",
        }
    }

    /// Parse a command-line name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "space" => Some(Self::Space),
            "round-robin" | "rr" => Some(Self::RoundRobin),
            "random" => Some(Self::Random),
            _ => None,
        }
    }
}

/// What one curriculum update did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateReport {
    /// Instances in the curriculum after the update.
    pub size: usize,
    /// It grew in this update.
    pub grew: bool,
    /// Mean V(s0) over the curriculum before the update.
    pub mean_value: f64,
    /// Standard deviation of V(s0) over all training instances.
    pub value_std: f64,
    /// The values did not separate the instances (see P1).
    pub tie: bool,
}

/// The state SPaCE keeps between updates, saved with checkpoints so a resumed
/// run continues the same curriculum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurriculumState {
    /// Which curriculum.
    pub kind: CurriculumKind,
    /// Current ordering of the training instances.
    pub order: Vec<usize>,
    /// Instances in use (the first `size` of `order`).
    pub size: usize,
    /// Mean V(s0) over the curriculum at the last update.
    pub mean_prev: Option<f64>,
    /// V(s0) of every training instance at the last update.
    pub values_prev: Option<Vec<f64>>,
    /// Next position of the round-robin cursor.
    pub cursor: usize,
    /// Updates so far, and how many were ties.
    pub updates: u64,
    /// Updates whose ranking was a tie.
    pub ties: u64,
    /// Generator state for the random curriculum and SPaCE's first instance.
    pub rng_seed: u64,
}

/// An instance curriculum over `n` training instances.
#[derive(Debug, Clone)]
pub struct Curriculum {
    state: CurriculumState,
    space: SpaceConfig,
    n: usize,
    rng: Rng,
}

/// Stable ranking by `key`, largest first when `descending`, ties by instance id.
fn rank(key: &[f64], descending: bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..key.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (key[a], key[b]);
        let o = if descending {
            y.total_cmp(&x)
        } else {
            x.total_cmp(&y)
        };
        o.then(a.cmp(&b))
    });
    idx
}

impl Curriculum {
    /// A curriculum of `kind` over `n` (≥ 1) training instances.
    pub fn new(kind: CurriculumKind, n: usize, space: SpaceConfig, seed: u64) -> Self {
        let n = n.max(1);
        let mut rng = Rng::new(seed);
        let mut order: Vec<usize> = (0..n).collect();
        let size = match kind {
            CurriculumKind::Space => {
                // The first instances are drawn from the seed (no value signal yet).
                for i in (1..n).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    order.swap(i, j);
                }
                space.initial.clamp(1, n)
            }
            _ => n,
        };
        Self {
            state: CurriculumState {
                kind,
                order,
                size,
                mean_prev: None,
                values_prev: None,
                cursor: 0,
                updates: 0,
                ties: 0,
                rng_seed: seed,
            },
            space,
            n,
            rng,
        }
    }

    /// Resume from a saved state (checked against the instance count).
    pub fn from_state(state: CurriculumState, n: usize, space: SpaceConfig) -> Option<Self> {
        let mut seen = vec![false; n];
        let valid = state.order.len() == n
            && state.size >= 1
            && state.size <= n
            && state
                .order
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
        valid.then(|| {
            let rng = Rng::new(state.rng_seed ^ state.updates.wrapping_mul(0x9e37_79b9));
            Self {
                state,
                space,
                n,
                rng,
            }
        })
    }

    /// The state to save.
    pub fn state(&self) -> &CurriculumState {
        &self.state
    }

    /// Which curriculum this is.
    pub fn kind(&self) -> CurriculumKind {
        self.state.kind
    }

    /// The training instances in use now.
    pub fn active(&self) -> &[usize] {
        &self.state.order[..self.state.size]
    }

    /// Whether [`Curriculum::update`] wants V(s0) of every training instance.
    pub fn needs_values(&self) -> bool {
        self.state.kind == CurriculumKind::Space
    }

    /// Environment steps until the next update (SPaCE: 100·N; baselines: never).
    pub fn chunk_steps(&self) -> Option<u64> {
        (self.state.kind == CurriculumKind::Space)
            .then(|| self.space.steps_per_instance.max(1) * self.state.size as u64)
    }

    /// The training instance of the next episode.
    pub fn next_instance(&mut self) -> usize {
        match self.state.kind {
            CurriculumKind::Random => self.rng.below(self.n as u64) as usize,
            _ => {
                let active = self.state.size;
                let i = self.state.order[self.state.cursor % active];
                self.state.cursor = (self.state.cursor + 1) % active;
                i
            }
        }
    }

    /// A SPaCE update from V(s0) of every training instance (in instance order).
    pub fn update(&mut self, values: &[f64]) -> UpdateReport {
        let s = &mut self.state;
        let n = self.n;
        let cfg = &self.space;
        let mean_all = values.iter().sum::<f64>() / n as f64;
        let std = (values.iter().map(|v| (v - mean_all).powi(2)).sum::<f64>() / n as f64).sqrt();
        let tie = std < cfg.tie_epsilon;
        let mut report = UpdateReport {
            size: s.size,
            value_std: std,
            tie,
            ..Default::default()
        };
        if s.kind != CurriculumKind::Space || values.len() != n {
            return report;
        }
        s.updates += 1;
        let active = &s.order[..s.size];
        let mean = active.iter().map(|&i| values[i]).sum::<f64>() / active.len() as f64;
        report.mean_value = mean;
        if let Some(prev) = s.mean_prev {
            let change = (mean - prev).abs();
            if change <= (cfg.eta * mean.abs()).max(cfg.eta_abs) && s.size < n {
                s.size = (s.size + cfg.kappa.max(1)).min(n);
                report.grew = true;
            }
        }
        s.mean_prev = Some(mean);
        if tie {
            s.ties += 1;
            tracing::warn!(
                "SPaCE: V(s0) is the same for every instance (spread {std:.2e}); the ranking carries no signal — observe the context or vary the start states"
            );
        }
        let order = match (cfg.rank, &s.values_prev) {
            (RankMode::Absolute, _) => Some(rank(values, false)),
            (RankMode::Improvement, Some(prev)) => {
                let d: Vec<f64> = values.iter().zip(prev).map(|(v, p)| v - p).collect();
                Some(rank(&d, true))
            }
            (RankMode::RelImprovement, Some(prev)) => {
                let d: Vec<f64> = values
                    .iter()
                    .zip(prev)
                    .map(|(v, p)| (v - p) / p.abs().max(1e-3))
                    .collect();
                Some(rank(&d, true))
            }
            // No previous values yet: keep the current order.
            (_, None) => None,
        };
        if let Some(order) = order {
            s.order = order;
        }
        s.values_prev = Some(values.to_vec());
        s.cursor = 0;
        report.size = s.size;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_cycle_and_sample_every_instance() {
        let mut rr = Curriculum::new(CurriculumKind::RoundRobin, 4, SpaceConfig::default(), 0);
        let seq: Vec<usize> = (0..8).map(|_| rr.next_instance()).collect();
        assert_eq!(seq, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(rr.chunk_steps(), None);
        let mut random = Curriculum::new(CurriculumKind::Random, 4, SpaceConfig::default(), 1);
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[random.next_instance()] += 1;
        }
        assert!(seen.iter().all(|&c| c > 60), "{seen:?}");
    }

    #[test]
    fn space_grows_when_values_settle_and_ranks_by_improvement() {
        let mut c = Curriculum::new(CurriculumKind::Space, 4, SpaceConfig::default(), 3);
        assert_eq!(c.active().len(), 1);
        assert_eq!(c.chunk_steps(), Some(100));
        let first = c.active()[0];
        // First update: no previous mean, no growth, order kept.
        let r = c.update(&[1.0, 2.0, 3.0, 4.0]);
        assert!(!r.grew && r.size == 1);
        assert_eq!(c.active()[0], first);
        // Values moving a lot everywhere: no growth; ranking = largest increase first.
        let v2 = [6.0, 12.0, 8.0, 9.0];
        let r = c.update(&v2);
        assert!(!r.grew);
        assert_eq!(c.active(), &[1]);
        // The mean over the set settles (compared, as in the reference code, with
        // the previous set's mean): grows by κ = 1 and ranks by the last change.
        let r = c.update(&[6.5, v2[first], 8.2, 9.1]);
        assert!(r.grew);
        assert_eq!(c.active(), &[0, 2]);
        assert_eq!(c.chunk_steps(), Some(200));
    }

    #[test]
    fn ties_are_detected_and_broken_by_instance_id() {
        let cfg = SpaceConfig {
            rank: RankMode::Absolute,
            ..Default::default()
        };
        let mut c = Curriculum::new(CurriculumKind::Space, 5, cfg, 9);
        let r = c.update(&[2.0; 5]);
        assert!(r.tie);
        assert_eq!(c.state().order, vec![0, 1, 2, 3, 4]);
        assert_eq!(c.state().ties, 1);
        // Absolute mode: lowest value first.
        c.update(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(c.state().order, vec![1, 3, 4, 2, 0]);
    }

    #[test]
    fn rel_improvement_survives_zero_values_and_sign_flips_count_as_change() {
        let cfg = SpaceConfig {
            rank: RankMode::RelImprovement,
            eta_abs: 0.0,
            ..Default::default()
        };
        let mut c = Curriculum::new(CurriculumKind::Space, 3, cfg, 2);
        c.update(&[0.0, 0.0, 0.0]);
        c.update(&[1.0, 0.5, -0.5]);
        assert_eq!(c.state().order, vec![0, 1, 2]);
        assert!(
            c.state()
                .values_prev
                .as_ref()
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        );
        // Mean −1 → +1 (equal magnitude): a change, so no growth.
        let mut v = vec![0.0; 3];
        v[c.active()[0]] = -1.0;
        c.update(&v);
        assert_eq!(c.state().mean_prev, Some(-1.0));
        let mut v = vec![0.0; 3];
        v[c.active()[0]] = 1.0;
        assert!(!c.update(&v).grew);
    }

    #[test]
    fn saved_state_resumes_and_bad_state_is_refused() {
        let mut c = Curriculum::new(CurriculumKind::Space, 4, SpaceConfig::default(), 3);
        c.update(&[1.0, 2.0, 3.0, 4.0]);
        let s = c.state().clone();
        let back = Curriculum::from_state(s.clone(), 4, SpaceConfig::default()).unwrap();
        assert_eq!(back.state(), c.state());
        assert!(Curriculum::from_state(s.clone(), 5, SpaceConfig::default()).is_none());
        let mut dup = s;
        dup.order = vec![0, 0, 1, 2];
        assert!(Curriculum::from_state(dup, 4, SpaceConfig::default()).is_none());
    }
}
