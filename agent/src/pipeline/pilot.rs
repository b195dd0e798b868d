//! The decision half of the loop, shared by the twin's in-process loop and
//! the robot's policy node: the cue switch picks the scan, the reactive policy
//! turns it into a velocity command.

use super::avoid::{AvoidConfig, Avoider, Velocity};
use super::switch::{CueSwitch, FrameCues, SwitchOutput};
use crate::persist::{PersistConfig, Strategy};

/// Switch, then policy.
#[derive(Debug, Clone)]
pub struct Pilot {
    switch: CueSwitch,
    avoider: Avoider,
    avoid: AvoidConfig,
}

impl Pilot {
    /// A pilot for `strategy` at a camera rate of `hz`.
    pub fn new(persist: PersistConfig, strategy: Strategy, hz: f64, avoid: AvoidConfig) -> Self {
        Self {
            switch: CueSwitch::new(persist, strategy, hz, &avoid),
            avoider: Avoider::default(),
            avoid,
        }
    }

    /// The switch (its mode and window error).
    pub fn switch(&self) -> &CueSwitch {
        &self.switch
    }

    /// Decide one frame at `altitude` (m; NaN when unknown).
    pub fn step(&mut self, cues: FrameCues<'_>, altitude: f64) -> (SwitchOutput, Velocity) {
        let out = self.switch.update(cues);
        let scan = out.flown(cues.stereo, cues.mono);
        let cmd = self.avoider.act(&self.avoid, scan, altitude);
        (out, cmd)
    }

    /// Forget the turning state (a new episode, a new room).
    pub fn new_episode(&mut self) {
        self.avoider = Avoider::default();
    }
}
