//! Experience replay: a fixed-capacity ring of transitions in flat arrays, with
//! n-step returns folded in as transitions arrive.

use sim::rng::Rng;
use std::collections::VecDeque;

/// One environment step as the learner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Observation before the action.
    pub obs: Vec<f32>,
    /// The action: a discrete index as one value, or the continuous vector.
    pub action: Vec<f32>,
    /// Reward received.
    pub reward: f32,
    /// Observation after the action.
    pub next_obs: Vec<f32>,
    /// The episode ended by the task's rules (no value beyond it).
    pub terminated: bool,
    /// The episode ended for any reason (step limit included).
    pub done: bool,
}

impl Transition {
    /// The transition of one environment step: `obs`, the action taken, and what
    /// the step returned.
    pub fn from_step(obs: Vec<f32>, act: &crate::env::Act, st: &crate::env::Step) -> Self {
        Self {
            obs,
            action: act.to_vec(),
            reward: st.reward,
            next_obs: st.obs.clone(),
            terminated: st.terminated,
            done: st.terminated || st.truncated,
        }
    }
}

/// A sampled batch, row-major.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Rows.
    pub size: usize,
    /// `[size, obs_dim]`.
    pub obs: Vec<f32>,
    /// `[size, action_dim]`.
    pub action: Vec<f32>,
    /// n-step discounted reward sums.
    pub reward: Vec<f32>,
    /// `[size, obs_dim]`: the observation n steps later (or at the episode's end).
    pub next_obs: Vec<f32>,
    /// γ^k for the k steps folded in, 0 when the episode terminated within them.
    pub discount: Vec<f32>,
}

/// The replay ring.
#[derive(Debug, Clone)]
pub struct Replay {
    capacity: usize,
    obs_dim: usize,
    action_dim: usize,
    obs: Vec<f32>,
    action: Vec<f32>,
    reward: Vec<f32>,
    next_obs: Vec<f32>,
    discount: Vec<f32>,
    len: usize,
    head: usize,
    n_step: usize,
    gamma: f32,
    pending: VecDeque<Transition>,
    rng: Rng,
}

impl Replay {
    /// A ring of `capacity` transitions; `n_step` ≥ 1 folds that many rewards into each.
    pub fn new(
        capacity: usize,
        obs_dim: usize,
        action_dim: usize,
        n_step: usize,
        gamma: f32,
        seed: u64,
    ) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            obs_dim,
            action_dim,
            obs: vec![0.0; capacity * obs_dim],
            action: vec![0.0; capacity * action_dim],
            reward: vec![0.0; capacity],
            next_obs: vec![0.0; capacity * obs_dim],
            discount: vec![0.0; capacity],
            len: 0,
            head: 0,
            n_step: n_step.max(1),
            gamma,
            pending: VecDeque::new(),
            rng: Rng::new(seed),
        }
    }

    /// Stored transitions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing stored yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Add one environment step (in episode order).
    pub fn push(&mut self, t: Transition) {
        debug_assert_eq!(t.obs.len(), self.obs_dim);
        debug_assert_eq!(t.action.len(), self.action_dim);
        let done = t.done;
        self.pending.push_back(t);
        if self.pending.len() >= self.n_step {
            self.flush_one();
        }
        if done {
            while !self.pending.is_empty() {
                self.flush_one();
            }
        }
    }

    /// Store every pending step now, each with the rewards of the steps after
    /// it that are here (a shorter return, bootstrapped where it ends): the
    /// steps that follow will not continue this sequence (another actor's).
    pub fn cut(&mut self) {
        while !self.pending.is_empty() {
            self.flush_one();
        }
    }

    /// Store the oldest pending step with the rewards of the ones after it.
    fn flush_one(&mut self) {
        let mut reward = 0.0;
        let mut discount = 1.0;
        let mut last = 0;
        for (k, t) in self.pending.iter().enumerate() {
            reward += discount * t.reward;
            discount *= self.gamma;
            last = k;
            if t.terminated {
                discount = 0.0;
                break;
            }
            if t.done {
                break;
            }
        }
        let Some(first) = self.pending.pop_front() else {
            return;
        };
        let next = if last == 0 {
            &first.next_obs
        } else {
            &self.pending[last - 1].next_obs
        };
        let i = self.head;
        let (o, a) = (self.obs_dim, self.action_dim);
        self.next_obs[i * o..(i + 1) * o].copy_from_slice(next);
        self.obs[i * o..(i + 1) * o].copy_from_slice(&first.obs);
        self.action[i * a..(i + 1) * a].copy_from_slice(&first.action);
        self.reward[i] = reward;
        self.discount[i] = discount;
        self.head = (self.head + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// `size` transitions drawn uniformly with replacement.
    pub fn sample(&mut self, size: usize) -> Batch {
        let (o, a) = (self.obs_dim, self.action_dim);
        let mut b = Batch {
            size,
            obs: Vec::with_capacity(size * o),
            action: Vec::with_capacity(size * a),
            reward: Vec::with_capacity(size),
            next_obs: Vec::with_capacity(size * o),
            discount: Vec::with_capacity(size),
        };
        if self.len == 0 {
            b.size = 0;
            return b;
        }
        for _ in 0..size {
            let i = self.rng.below(self.len as u64) as usize;
            b.obs.extend_from_slice(&self.obs[i * o..(i + 1) * o]);
            b.action.extend_from_slice(&self.action[i * a..(i + 1) * a]);
            b.reward.push(self.reward[i]);
            b.next_obs
                .extend_from_slice(&self.next_obs[i * o..(i + 1) * o]);
            b.discount.push(self.discount[i]);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(x: f32, r: f32, terminated: bool, done: bool) -> Transition {
        Transition {
            obs: vec![x],
            action: vec![0.0],
            reward: r,
            next_obs: vec![x + 1.0],
            terminated,
            done,
        }
    }

    #[test]
    fn n_step_returns_stop_at_the_episode_end() {
        let mut r = Replay::new(10, 1, 1, 3, 0.5, 0);
        r.push(t(0.0, 1.0, false, false));
        r.push(t(1.0, 2.0, false, false));
        assert_eq!(r.len(), 0, "waits for n steps");
        r.push(t(2.0, 4.0, false, false));
        assert_eq!(r.len(), 1);
        // 1 + 0.5·2 + 0.25·4 = 3, bootstrap from obs 3 with 0.125.
        assert_eq!(
            (r.reward[0], r.discount[0], r.next_obs[0]),
            (3.0, 0.125, 3.0)
        );
        r.push(t(3.0, 8.0, true, true));
        assert_eq!(r.len(), 4, "a terminal step flushes the rest");
        // From obs 1: 2 + 0.5·4 + 0.25·8 = 6, no bootstrap (terminated).
        assert_eq!((r.reward[1], r.discount[1]), (6.0, 0.0));
        assert_eq!((r.reward[3], r.discount[3]), (8.0, 0.0));
        // Truncation: bootstraps with the steps folded in.
        r.push(t(10.0, 1.0, false, false));
        r.push(t(11.0, 1.0, false, true));
        assert_eq!(
            (r.reward[4], r.discount[4], r.next_obs[4]),
            (1.5, 0.25, 12.0)
        );
        assert_eq!((r.reward[5], r.discount[5]), (1.0, 0.5));
    }

    #[test]
    fn a_cut_ends_the_pending_returns_where_the_run_ends() {
        let mut r = Replay::new(10, 1, 1, 3, 0.5, 0);
        r.push(t(0.0, 1.0, false, false));
        r.push(t(1.0, 2.0, false, false));
        r.cut();
        assert_eq!(r.len(), 2, "both pending steps stored");
        // From obs 0: 1 + 0.5·2, bootstrapped from obs 2 with 0.25; from obs 1: 2, from 2 with 0.5.
        assert_eq!(
            (r.reward[0], r.discount[0], r.next_obs[0]),
            (2.0, 0.25, 2.0)
        );
        assert_eq!((r.reward[1], r.discount[1], r.next_obs[1]), (2.0, 0.5, 2.0));
        // Another actor's run starts afresh: nothing of the first folds into it.
        r.push(t(50.0, 4.0, false, false));
        assert_eq!(r.len(), 2);
        r.cut();
        assert_eq!(
            (r.reward[2], r.discount[2], r.next_obs[2]),
            (4.0, 0.5, 51.0)
        );
    }

    #[test]
    fn the_ring_overwrites_the_oldest_and_samples_what_it_holds() {
        let mut r = Replay::new(3, 1, 1, 1, 0.9, 1);
        for i in 0..5 {
            r.push(t(i as f32, i as f32, false, false));
        }
        assert_eq!(r.len(), 3);
        let b = r.sample(50);
        assert_eq!(b.size, 50);
        assert!(
            b.obs.iter().all(|x| *x >= 2.0),
            "only the newest three remain"
        );
        assert!(b.obs.iter().zip(&b.reward).all(|(o, r)| o == r));
    }
}
