//! The policy stage: one frame's depth scan (the cue the switch picked) and
//! the vehicle's state in, a velocity command out. Every policy the loop can
//! fly sits behind [`Policy`]: the reactive avoider ([`Reactive`]) and, in
//! the twin's build, a network trained by `agent train` and the SELFI actor
//! (`crate::selfi_graph::SelfiPolicy`), which also takes the goal and the
//! tracked people.

use super::avoid::{Ahead, AltitudeHold, AvoidConfig, Avoider, Velocity};
use super::stage::Notes;
use bus::msg::{Goal, State, Tracks};
use serde::{Deserialize, Serialize};

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
    /// The newest velocity command from outside the agent (`cmd/external`),
    /// for [`Commanded`].
    pub external: Option<&'a External>,
}

/// A velocity command from outside the agent (a ROS 2 planner's `cmd_vel`)
/// and how long ago the policy received it. Its age is measured on the
/// receiving clock, as ROS 2 drivers time out `cmd_vel`: a planner commands
/// in real time, whatever clock the frames are stamped with (the twin's is
/// simulated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct External {
    /// Seconds since it was received.
    pub age: f64,
    /// The command, body frame (x forward, y left, z up; yaw rate).
    pub velocity: Velocity,
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

/// Limits on velocity commands from outside the agent (`[external]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalConfig {
    /// A command older than this at a frame's stamp is none: the robot hovers
    /// (s). ROS 2 drivers stop on a stale `cmd_vel` the same way.
    pub timeout: f64,
    /// Largest speed sideways and backwards, where the camera does not look (m/s).
    pub max_blind_speed: f64,
    /// Hold the loop's altitude (`avoid.altitude`) and ignore the commands'
    /// vertical speed (a 2D planner such as Nav2 sends none); false: fly it,
    /// bounded by `max_climb`.
    pub hold_altitude: bool,
    /// Largest climb or sink rate taken from a command (m/s).
    pub max_climb: f64,
}

impl Default for ExternalConfig {
    fn default() -> Self {
        Self {
            timeout: 0.5,
            max_blind_speed: 0.3,
            hold_altitude: true,
            max_climb: 0.5,
        }
    }
}

impl ExternalConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v, lo, hi) in [
            ("external.timeout", self.timeout, 0.05, 5.0),
            ("external.max_blind_speed", self.max_blind_speed, 0.0, 2.0),
            ("external.max_climb", self.max_climb, 0.0, 2.0),
        ] {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(format!("`{k}` = {v} must be in [{lo}, {hi}]"));
            }
        }
        Ok(())
    }
}

/// Why [`Commanded`] did not fly a command as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// No command, or none within the timeout: hovering.
    NoCommand,
    /// Forward speed cut: something near (or unknown) ahead.
    Ahead,
    /// A speed beyond its limit was bounded.
    Bounded,
}

/// A velocity command from outside the agent flown within the loop's safety
/// limits: what a planner beside the agent (Nav2, a teleop node) sends on
/// ROS 2's `cmd_vel`, on the scan the cue switch picked, so the training
/// wheels hold for it too. Forward speed is cut linearly from full at twice
/// `avoid.avoid_distance` to none at `avoid.avoid_distance` before what the
/// scan sees ahead, and to none when the way ahead is blind (unknown is not
/// free); speeds where the camera does not look (sideways, backwards) are
/// bounded by `external.max_blind_speed`, the forward speed by
/// `avoid.cruise_speed`, the yaw rate by `avoid.turn_rate`. Without a fresh
/// command it hovers.
#[derive(Debug, Clone)]
pub struct Commanded {
    avoid: AvoidConfig,
    cfg: ExternalConfig,
    hold: AltitudeHold,
    /// What was held back at the last frame (said when it changes).
    last: Option<Held>,
}

impl Commanded {
    /// The gate with the loop's avoidance settings and the limits `cfg`.
    pub fn new(avoid: AvoidConfig, cfg: ExternalConfig) -> Self {
        Self {
            avoid,
            cfg,
            hold: AltitudeHold::new(avoid.altitude),
            last: None,
        }
    }

    /// The command to fly for `frame`, and what was held back of it.
    pub fn gate(&self, frame: &PolicyFrame<'_>) -> (Velocity, Option<Held>) {
        let hold_up = self.hold.up(frame.altitude());
        let fresh = frame
            .external
            .filter(|c| c.age.is_finite() && c.age <= self.cfg.timeout);
        let Some(c) = fresh else {
            let hover = Velocity {
                up: hold_up,
                ..Velocity::default()
            };
            return (hover, Some(Held::NoCommand));
        };
        let v = c.velocity;
        let blind = self.cfg.max_blind_speed;
        let a = &self.avoid;
        let clamp = |x: f64, lo: f64, hi: f64| if x.is_finite() { x.clamp(lo, hi) } else { 0.0 };
        let mut out = Velocity {
            forward: clamp(v.forward, -blind, a.cruise_speed),
            left: clamp(v.left, -blind, blind),
            up: if self.cfg.hold_altitude {
                hold_up
            } else {
                clamp(v.up, -self.cfg.max_climb, self.cfg.max_climb)
            },
            yaw_rate: clamp(v.yaw_rate, -a.turn_rate, a.turn_rate),
        };
        let bounded = out.forward != v.forward
            || out.left != v.left
            || out.yaw_rate != v.yaw_rate
            || (!self.cfg.hold_altitude && out.up != v.up);
        let mut held = bounded.then_some(Held::Bounded);
        if out.forward > 0.0 {
            let clearance = f64::from(Ahead::of(frame.scan).clearance(a.unknown_ahead));
            let scale = ((clearance - a.avoid_distance) / a.avoid_distance).clamp(0.0, 1.0);
            if scale < 1.0 {
                out.forward *= scale;
                held = Some(Held::Ahead);
            }
        }
        (out, held)
    }
}

impl Policy for Commanded {
    fn name(&self) -> &'static str {
        "external commands"
    }

    fn act(&mut self, frame: &PolicyFrame<'_>) -> Option<Velocity> {
        let (v, held) = self.gate(frame);
        if held != self.last {
            match held {
                Some(Held::NoCommand) => {
                    tracing::info!("external commands: none within the timeout; hovering")
                }
                Some(Held::Ahead) => tracing::warn!(
                    "external commands: forward speed cut, {:.1} m/s flown: obstacle or unknown ahead",
                    v.forward
                ),
                Some(Held::Bounded) => {
                    tracing::warn!("external commands: a speed beyond the limits was bounded")
                }
                None => tracing::info!("external commands: flown as given"),
            }
            self.last = held;
        }
        Some(v)
    }

    fn new_episode(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'a>(
        scan: &'a [f32],
        external: Option<&'a External>,
        stamp_ns: u64,
    ) -> PolicyFrame<'a> {
        PolicyFrame {
            stamp_ns,
            scan,
            state: None,
            goal: None,
            tracks: None,
            external,
        }
    }

    fn cmd(age: f64, forward: f64, left: f64, yaw_rate: f64) -> External {
        External {
            age,
            velocity: Velocity {
                forward,
                left,
                up: 0.0,
                yaw_rate,
            },
        }
    }

    #[test]
    fn external_commands_stop_before_what_is_ahead_and_never_fly_blind() {
        let avoid = AvoidConfig::default();
        let g = Commanded::new(avoid, ExternalConfig::default());
        let t = 10_000_000_000;
        let c = cmd(0.0, 0.8, 0.0, 0.2);
        // Clear way: flown as given.
        let far = vec![8.0f32; 32];
        assert_eq!(g.gate(&frame(&far, Some(&c), t)), (c.velocity, None));
        // A wall at 1.5x the avoid distance: half the speed; at the avoid
        // distance and nearer: none; turning is still allowed.
        let mid = vec![1.5 * avoid.avoid_distance as f32; 32];
        let (v, held) = g.gate(&frame(&mid, Some(&c), t));
        assert!((v.forward - 0.4).abs() < 1e-6, "{v:?}");
        assert_eq!(held, Some(Held::Ahead));
        let near = vec![0.99 * avoid.avoid_distance as f32; 32];
        let (v, _) = g.gate(&frame(&near, Some(&c), t));
        assert_eq!((v.forward, v.yaw_rate), (0.0, 0.2));
        // A blank wall (no stereo answer ahead) is no free space.
        let blank = vec![f32::NAN; 32];
        let (v, held) = g.gate(&frame(&blank, Some(&c), t));
        assert_eq!((v.forward, held), (0.0, Some(Held::Ahead)));
        // Backing away from it is allowed, slowly.
        let back = cmd(0.1, -2.0, 0.0, 0.0);
        let (v, held) = g.gate(&frame(&blank, Some(&back), t));
        assert_eq!((v.forward, held), (-0.3, Some(Held::Bounded)));
    }

    #[test]
    fn stale_or_missing_commands_hover_and_speeds_are_bounded() {
        let avoid = AvoidConfig::default();
        let g = Commanded::new(avoid, ExternalConfig::default());
        let far = vec![8.0f32; 32];
        let t = 10_000_000_000;
        let hover = Velocity::default();
        assert_eq!(
            g.gate(&frame(&far, None, t)),
            (hover, Some(Held::NoCommand))
        );
        // 0.6 s old at the frame (timeout 0.5 s): none.
        let old = cmd(0.6, 0.8, 0.0, 0.0);
        assert_eq!(
            g.gate(&frame(&far, Some(&old), t)),
            (hover, Some(Held::NoCommand))
        );
        // Beyond the limits: bounded; NaN flies nothing on that axis.
        let wild = cmd(0.0, 9.0, -9.0, f64::NAN);
        let (v, held) = g.gate(&frame(&far, Some(&wild), t));
        assert_eq!(
            (v.forward, v.left, v.yaw_rate),
            (avoid.cruise_speed, -0.3, 0.0)
        );
        assert_eq!(held, Some(Held::Bounded));
    }
}
