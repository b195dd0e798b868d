//! The messages between actors and their learner, in the bus's wire encoding
//! (its header, then a body of little-endian fields; kinds 101 and up, beside
//! the robot graph's). Weights travel as the graph's own `Weights` message.

use bus::wire::{DecodeError, Message, Reader, Writer};
use rl::replay::Transition;

/// Most environment steps in one [`Experience`] message.
pub const MAX_STEPS: usize = 65_536;
/// Largest observation or action width accepted.
pub const MAX_DIM: usize = 4096;
/// The `actor` of a [`Credit`] meant for every actor (the learner's end).
pub const ALL_ACTORS: u32 = u32::MAX;

/// A batch of one actor's environment steps, in the order it took them. An
/// empty one is a greeting (`batch` 0: the learner answers with its latest
/// weights and credit) or a question whether batch `batch` was taken (answered
/// with credit once everything before it in the learner's queue is).
#[derive(Debug, Clone, PartialEq)]
pub struct Experience {
    /// The actor's number (unique in the run; 1 ..= `ALL_ACTORS` − 1).
    pub actor: u32,
    /// The actor process's own number (random): credit for another process
    /// with the same actor number (one that was restarted) is not its own.
    pub session: u64,
    /// Its batch number: 1, 2, ... (0: the greeting).
    pub batch: u64,
    /// Observation width.
    pub obs_dim: u32,
    /// Action width (1 for a discrete action's index).
    pub action_dim: u32,
    /// The steps.
    pub steps: Vec<Transition>,
}

impl Message for Experience {
    const KIND: u16 = 101;
    const NAME: &'static str = "Experience";
    fn write_body(&self, w: &mut Writer) {
        w.u32(self.actor);
        w.u64(self.session);
        w.u64(self.batch);
        w.u32(self.obs_dim);
        w.u32(self.action_dim);
        w.u32(self.steps.len() as u32);
        for t in &self.steps {
            t.obs.iter().for_each(|&v| w.f32(v));
            t.action.iter().for_each(|&v| w.f32(v));
            w.f32(t.reward);
            t.next_obs.iter().for_each(|&v| w.f32(v));
            w.u8(u8::from(t.terminated) | (u8::from(t.done) << 1));
        }
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bad = |reason: String| DecodeError::Malformed {
            name: Self::NAME,
            reason,
        };
        let actor = r.u32()?;
        let session = r.u64()?;
        let batch = r.u64()?;
        let obs_dim = r.u32()?;
        let action_dim = r.u32()?;
        let n = r.u32()? as usize;
        let (o, a) = (obs_dim as usize, action_dim as usize);
        if o == 0 || o > MAX_DIM || a == 0 || a > MAX_DIM {
            return Err(bad(format!(
                "observation width {o} and action width {a} must be in 1..={MAX_DIM}"
            )));
        }
        if n > MAX_STEPS {
            return Err(bad(format!("{n} steps exceed {MAX_STEPS}")));
        }
        // Checked before anything is allocated: a count the bytes cannot hold is refused.
        let per = 4 * (2 * o + a + 1) + 1;
        if n * per > r.remaining() {
            return Err(DecodeError::Truncated {
                need: n * per,
                got: r.remaining(),
            });
        }
        let floats = |r: &mut Reader<'_>, k: usize| -> Result<Vec<f32>, DecodeError> {
            (0..k).map(|_| r.f32()).collect()
        };
        let mut steps = Vec::with_capacity(n);
        for _ in 0..n {
            let obs = floats(r, o)?;
            let action = floats(r, a)?;
            let reward = r.f32()?;
            let next_obs = floats(r, o)?;
            let flags = r.u8()?;
            if flags > 3 {
                return Err(bad(format!("step flags {flags:#x}")));
            }
            // A NaN or infinity in what a learner trains on ends its training.
            if !(obs
                .iter()
                .chain(&action)
                .chain(&next_obs)
                .all(|v| v.is_finite())
                && reward.is_finite())
            {
                return Err(bad("a step holds a NaN or an infinity".into()));
            }
            steps.push(Transition {
                obs,
                action,
                reward,
                next_obs,
                terminated: flags & 1 != 0,
                done: flags & 2 != 0,
            });
        }
        Ok(Self {
            actor,
            session,
            batch,
            obs_dim,
            action_dim,
            steps,
        })
    }
}

/// The learner's answer to an actor's batch: taken, and where the learner's
/// schedule stands; or, to [`ALL_ACTORS`], that training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    /// The actor it answers, or [`ALL_ACTORS`].
    pub actor: u32,
    /// The actor process it answers ([`Experience::session`]).
    pub session: u64,
    /// The batch taken (its number).
    pub batch: u64,
    /// Environment steps the learner has learned from (the actors' exploration schedule).
    pub learner_steps: u64,
    /// Training ended: actors stop.
    pub done: bool,
}

impl Message for Credit {
    const KIND: u16 = 102;
    const NAME: &'static str = "Credit";
    fn write_body(&self, w: &mut Writer) {
        w.u32(self.actor);
        w.u64(self.session);
        w.u64(self.batch);
        w.u64(self.learner_steps);
        w.u8(u8::from(self.done));
    }
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            actor: r.u32()?,
            session: r.u64()?,
            batch: r.u64()?,
            learner_steps: r.u64()?,
            done: match r.u8()? {
                0 => false,
                1 => true,
                v => {
                    return Err(DecodeError::Malformed {
                        name: Self::NAME,
                        reason: format!("done flag {v}"),
                    });
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::wire::{Header, decode, encode};

    fn step(k: f32) -> Transition {
        Transition {
            obs: vec![k, k + 0.5],
            action: vec![1.0],
            reward: -k,
            next_obs: vec![k + 1.0, k + 1.5],
            terminated: k > 1.0,
            done: k > 0.0,
        }
    }

    #[test]
    fn experience_and_credit_round_trip() {
        let e = Experience {
            actor: 3,
            session: 99,
            batch: 7,
            obs_dim: 2,
            action_dim: 1,
            steps: vec![step(-1.0), step(0.5), step(2.0)],
        };
        let bytes = encode(&Header::default(), &e);
        assert_eq!(decode::<Experience>(&bytes).unwrap().1, e);
        let c = Credit {
            actor: ALL_ACTORS,
            session: 0,
            batch: 9,
            learner_steps: 12_345,
            done: true,
        };
        assert_eq!(
            decode::<Credit>(&encode(&Header::default(), &c)).unwrap().1,
            c
        );
    }

    #[test]
    fn a_batch_its_bytes_cannot_hold_is_refused_before_allocating() {
        let e = Experience {
            actor: 1,
            session: 5,
            batch: 1,
            obs_dim: 2,
            action_dim: 1,
            steps: vec![step(0.0)],
        };
        let mut bytes = encode(&Header::default(), &e);
        // The step count sits after actor, batch and the two widths.
        let at = bytes.len() - (4 * 6 + 1) - 4;
        bytes[at..at + 4].copy_from_slice(&60_000u32.to_le_bytes());
        assert!(matches!(
            decode::<Experience>(&bytes),
            Err(DecodeError::Truncated { .. })
        ));
        bytes[at..at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(
            decode::<Experience>(&bytes),
            Err(DecodeError::Malformed { .. })
        ));
        let mut wide = e.clone();
        wide.obs_dim = 0;
        assert!(decode::<Experience>(&encode(&Header::default(), &wide)).is_err());
        let mut nan = e.clone();
        nan.steps[0].reward = f32::NAN;
        assert!(matches!(
            decode::<Experience>(&encode(&Header::default(), &nan)),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
