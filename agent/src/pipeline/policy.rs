//! The policy stage: one frame's depth scan (the cue the switch picked) and
//! the vehicle's state in, a velocity command out. Every policy the loop can
//! fly sits behind [`Policy`]: the reactive avoider ([`Reactive`]) and, in
//! the twin's build, a network trained by `agent train` and the SELFI actor
//! (`crate::selfi_graph::SelfiPolicy`), which also takes the goal and the
//! tracked people.

use super::avoid::{AvoidConfig, Avoider, Velocity};
use super::stage::Notes;
use bus::msg::{Goal, State, Tracks};

/// What a policy sees of one frame.
#[derive(Debug, Clone, Copy)]
pub struct PolicyFrame<'a> {
    /// The frame's stamp (ns).
    pub stamp_ns: u64,
    /// The depth scan to fly on (m, left to right; NaN = unknown).
    pub scan: &'a [f32],
    /// The vehicle's state at the frame, when known.
    pub state: Option<&'a State>,
    /// Where to fly (`nav/goal`), for policies that reach goals.
    pub goal: Option<&'a Goal>,
    /// The tracked people around (`perception/tracks`), for policies that
    /// fly among them.
    pub tracks: Option<&'a Tracks>,
}

impl PolicyFrame<'_> {
    /// The altitude (m); NaN when the state is unknown.
    pub fn altitude(&self) -> f64 {
        self.state.map_or(f64::NAN, |s| s.position[2])
    }
}

/// A policy of the loop.
pub trait Policy: Send {
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// The command for `frame`; `None` when it has no answer for this frame
    /// (it says why in the log), and the frame gets no setpoint.
    fn act(&mut self, frame: &PolicyFrame<'_>) -> Option<Velocity>;
    /// Forget what it keeps between frames (a new episode, a new room).
    fn new_episode(&mut self) {}
    /// Housekeeping between frames (swap in new weights), saying what it did.
    fn idle(&mut self, _notes: &mut Notes) {}
}

/// The reactive avoider as a policy.
#[derive(Debug, Clone)]
pub struct Reactive {
    cfg: AvoidConfig,
    avoider: Avoider,
}

impl Reactive {
    /// The avoider with settings `cfg`.
    pub fn new(cfg: AvoidConfig) -> Self {
        Self {
            cfg,
            avoider: Avoider::default(),
        }
    }
}

impl Policy for Reactive {
    fn name(&self) -> &'static str {
        "reactive"
    }

    fn act(&mut self, frame: &PolicyFrame<'_>) -> Option<Velocity> {
        Some(self.avoider.act(&self.cfg, frame.scan, frame.altitude()))
    }

    fn new_episode(&mut self) {
        self.avoider = Avoider::default();
    }
}
