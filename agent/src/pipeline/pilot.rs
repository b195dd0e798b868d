//! The decision half of the loop, shared by the twin's in-process loop and
//! the robot's policy node: the cue switch picks the scan, the policy
//! ([`Policy`]) turns it into a velocity command.

use super::avoid::{AvoidConfig, Velocity};
use super::policy::{External, Policy, PolicyFrame, Reactive};
use super::stage::{Notes, Stage};
use super::switch::{CueSwitch, FrameCues, SwitchOutput};
use crate::persist::{PersistConfig, Strategy};
use bus::msg::{Goal, Setpoint, State, Tracks};
use bus::wire::Header;

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
        self.step_to(cues, stamp_ns, state, None, None, None)
    }

    /// The same, with the goal, the tracked people and the newest external
    /// command when there are.
    pub fn step_to(
        &mut self,
        cues: FrameCues<'_>,
        stamp_ns: u64,
        state: Option<&State>,
        goal: Option<&Goal>,
        tracks: Option<&Tracks>,
        external: Option<&External>,
    ) -> (SwitchOutput, Option<Velocity>) {
        let out = self.switch.update(cues);
        let scan = out.flown(cues.stereo, cues.mono);
        let cmd = self.policy.act(&PolicyFrame {
            stamp_ns,
            scan: &scan,
            stereo: cues.stereo,
            state,
            goal,
            tracks,
            external,
        });
        (out, cmd)
    }

    /// Forget the policy's state between frames (a new episode, a new room).
    pub fn new_episode(&mut self) {
        self.policy.new_episode();
    }
}

/// What the pilot takes per frame.
#[derive(Debug, Clone)]
pub struct PilotInput {
    /// Time (s) of the frame.
    pub t: f64,
    /// The stereo scan (m, NaN = unknown).
    pub stereo: Vec<f32>,
    /// The mono scan of the same frame, when the network answered it.
    pub mono: Option<Vec<f32>>,
    /// The vehicle's state at the frame, when known.
    pub state: Option<State>,
    /// The newest goal, when one was given.
    pub goal: Option<Goal>,
    /// The newest tracked people, when a tracker runs.
    pub tracks: Option<Tracks>,
    /// The newest velocity command from outside the agent, when the policy
    /// flies them.
    pub external: Option<External>,
    /// Training steps the mono network has had (`u64::MAX` when its weights
    /// come trained, as on the robot).
    pub train_steps: u64,
}

/// What the pilot decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The switch's decision.
    pub switch: SwitchOutput,
    /// The command; `None` when the policy had no answer for this frame.
    pub cmd: Option<Velocity>,
}

impl Decision {
    /// The command as the bus carries it.
    pub fn setpoint(&self) -> Option<Setpoint> {
        self.cmd.map(|c| Setpoint {
            forward: c.forward as f32,
            left: c.left as f32,
            up: c.up as f32,
            yaw_rate: c.yaw_rate as f32,
        })
    }
}

/// The pilot in the loop: a frame's scans and state in, its decision out;
/// the switch's events said in words.
impl Stage for Pilot {
    type In = PilotInput;
    type Out = Decision;
    type Error = std::convert::Infallible;

    fn name(&self) -> &'static str {
        "policy"
    }

    fn idle(&mut self, notes: &mut Notes) {
        self.policy.idle(notes);
    }

    fn process(
        &mut self,
        frame: &Header,
        i: &PilotInput,
        notes: &mut Notes,
    ) -> Result<Option<Decision>, Self::Error> {
        let (switch, cmd) = self.step_to(
            FrameCues {
                t: i.t,
                stereo: &i.stereo,
                mono: i.mono.as_deref(),
                train_steps: i.train_steps,
            },
            frame.stamp_ns,
            i.state.as_ref(),
            i.goal.as_ref(),
            i.tracks.as_ref(),
            i.external.as_ref(),
        );
        if let Some(text) = switch.describe(i.t) {
            notes.say(text);
        }
        if let Some(text) = self.policy.said() {
            notes.say(text);
        }
        Ok(Some(Decision { switch, cmd }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::Mode;

    /// The yaw rate the reactive pilot commands, in mono flight after frames
    /// where mono was 0.2 (log) off stereo, when stereo and mono both place an
    /// obstacle ahead at 1.8 m (beyond the 1.6 m it turns at).
    fn yaw_at_obstacle(margin: f64) -> f64 {
        let persist = crate::pipeline::switch::tests::mono_at_once(margin);
        let mut pilot = Pilot::new(persist, Strategy::Persistent, 30.0, AvoidConfig::default());
        let (mut stereo, mut mono) = (vec![5.0f32; 32], vec![5.0 * 0.2f32.exp(); 32]);
        for i in 0..10 {
            let cues = FrameCues {
                t: f64::from(i) / 30.0,
                stereo: &stereo,
                mono: Some(&mono),
                train_steps: 1000,
            };
            pilot.step(cues, 0, None);
        }
        assert_eq!(pilot.switch().mode(), Mode::Mono);
        stereo[16] = 1.8;
        mono[16] = 1.8;
        let cues = FrameCues {
            t: 1.0,
            stereo: &stereo,
            mono: Some(&mono),
            train_steps: 1000,
        };
        let (out, cmd) = pilot.step(cues, 0, None);
        assert_eq!(out.mode, Mode::Mono);
        cmd.expect("the reactive policy always answers").yaw_rate
    }

    #[test]
    fn mono_flight_turns_at_an_obstacle_its_margin_brings_inside_the_turning_distance() {
        // 1.8 m x exp(-0.2) = 1.47 m: inside 1.6 m, so it turns.
        assert_ne!(yaw_at_obstacle(1.0), 0.0, "the margin makes it turn");
        // Flown as the network says, 1.8 m is clear: straight on.
        assert_eq!(yaw_at_obstacle(0.0), 0.0, "no margin, no turn");
    }
}
