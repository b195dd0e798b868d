//! The decision half of the loop, shared by the twin's in-process loop and
//! the robot's policy node: the cue switch picks the scan, the policy
//! ([`Policy`]) turns it into a velocity command.

use super::avoid::{AvoidConfig, Velocity};
use super::policy::{Policy, PolicyFrame, Reactive};
use super::switch::{CueSwitch, FrameCues, SwitchOutput};
use crate::persist::{PersistConfig, Strategy};
use bus::msg::State;

/// Switch, then policy.
pub struct Pilot {
    switch: CueSwitch,
    policy: Box<dyn Policy>,
}

impl Pilot {
    /// A pilot for `strategy` at a camera rate of `hz`, flying the reactive
    /// avoider with `avoid` (which also sets what counts as a blind view).
    pub fn new(persist: PersistConfig, strategy: Strategy, hz: f64, avoid: AvoidConfig) -> Self {
        Self {
            switch: CueSwitch::new(persist, strategy, hz, &avoid),
            policy: Box::new(Reactive::new(avoid)),
        }
    }

    /// The same, flying `policy` instead of the avoider.
    pub fn with_policy(mut self, policy: Box<dyn Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// The switch (its mode and window error).
    pub fn switch(&self) -> &CueSwitch {
        &self.switch
    }

    /// The policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Decide one frame stamped `stamp_ns`, with the vehicle's state at it
    /// when known. `None`: the policy had no answer for this frame.
    pub fn step(
        &mut self,
        cues: FrameCues<'_>,
        stamp_ns: u64,
        state: Option<&State>,
    ) -> (SwitchOutput, Option<Velocity>) {
        let out = self.switch.update(cues);
        let scan = out.flown(cues.stereo, cues.mono);
        let cmd = self.policy.act(&PolicyFrame {
            stamp_ns,
            scan,
            state,
        });
        (out, cmd)
    }

    /// Forget the policy's state between frames (a new episode, a new room).
    pub fn new_episode(&mut self) {
        self.policy.new_episode();
    }
}
