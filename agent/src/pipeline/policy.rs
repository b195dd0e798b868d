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
    /// The frame's stereo scan (the trusted cue; the same as `scan` unless
    /// the switch flies mono).
    pub stereo: &'a [f32],
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
/// and its age: from when it entered the graph (its stamp, the `ros2` node's
/// clock on the same robot) to when the frame is decided, in real time, as
/// ROS 2 drivers time out `cmd_vel`, whatever clock the frames are stamped
/// with (the twin's is simulated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct External {
    /// Seconds since it entered the graph (negative: stamped ahead of this
    /// clock, refused).
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
    /// What it has to say on `events` since it was last asked (a change of
    /// what it does), if anything.
    fn said(&mut self) -> Option<String> {
        None
    }
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
    /// A command received longer ago than this (s) is none: the robot hovers.
    /// ROS 2 drivers stop on a stale `cmd_vel` the same way.
    pub timeout: f64,
    /// After this long without a command (s, frame time), hovering turns into
    /// a landing ([`LAND_RATE`]), as the safety node lands after its hover
    /// limit: a planner that died must not keep the vehicle in the air.
    pub land_after: f64,
    /// Largest speed sideways and backwards, where the camera does not look (m/s).
    pub max_blind_speed: f64,
    /// Hold the loop's altitude (`avoid.altitude`) and ignore the commands'
    /// vertical speed (a 2D planner such as Nav2 sends none); false: fly it,
    /// bounded by `max_climb` and kept between `min_altitude` and
    /// `max_altitude` (none at all while the altitude is unknown).
    pub hold_altitude: bool,
    /// Largest climb or sink rate taken from a command (m/s).
    pub max_climb: f64,
    /// No sinking below this altitude on commands (m).
    pub min_altitude: f64,
    /// No climbing above this altitude on commands (m).
    pub max_altitude: f64,
}

impl Default for ExternalConfig {
    fn default() -> Self {
        Self {
            timeout: 0.5,
            land_after: 5.0,
            max_blind_speed: 0.3,
            hold_altitude: true,
            max_climb: 0.5,
            min_altitude: 0.5,
            max_altitude: 3.0,
        }
    }
}

/// The sink rate of the landing that follows `land_after` without commands
/// (m/s), the safety node's.
pub const LAND_RATE: f64 = 0.5;

impl ExternalConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v, lo, hi) in [
            ("external.timeout", self.timeout, 0.05, 5.0),
            ("external.land_after", self.land_after, 0.5, 120.0),
            ("external.max_blind_speed", self.max_blind_speed, 0.0, 0.5),
            ("external.max_climb", self.max_climb, 0.0, 1.0),
            ("external.min_altitude", self.min_altitude, 0.2, 100.0),
            ("external.max_altitude", self.max_altitude, 0.3, 120.0),
        ] {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(format!("`{k}` = {v} must be in [{lo}, {hi}]"));
            }
        }
        if self.min_altitude >= self.max_altitude {
            return Err(format!(
                "`external.min_altitude` = {} must be below `external.max_altitude` = {}",
                self.min_altitude, self.max_altitude
            ));
        }
        Ok(())
    }
}

/// Why [`Commanded`] did not fly a command as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// No command, or none within the timeout: hovering.
    NoCommand,
    /// No command for `land_after`: landing.
    Landing,
    /// Forward speed cut: something near (or unknown) ahead.
    Ahead,
    /// A speed beyond its limit was bounded.
    Bounded,
}

/// Yaw rate (rad/s) beyond which the forward cut looks at the whole scan, not
/// its middle half: a turning vehicle sweeps towards the sides.
const TURNING: f64 = 0.3;

/// A velocity command from outside the agent flown within the loop's safety
/// limits: what a planner beside the agent (Nav2, a teleop node) sends on
/// ROS 2's `cmd_vel`. Forward speed is cut linearly from full at twice
/// `avoid.avoid_distance` to none at `avoid.avoid_distance` before the
/// nearest of what the stereo scan and the scan the cue switch flies (mono,
/// once it flies) see ahead — the middle half of the view, or all of it while
/// turning faster than 0.3 rad/s — and to none when stereo is blind ahead
/// (unknown is not free) or nothing ahead is known at all. Speeds where the
/// camera does not look (sideways, backwards) are bounded by
/// `external.max_blind_speed`, the forward speed by `avoid.cruise_speed`, the
/// yaw rate by `avoid.turn_rate`. Without a fresh command it hovers, and after
/// `external.land_after` it lands.
#[derive(Debug, Clone)]
pub struct Commanded {
    avoid: AvoidConfig,
    cfg: ExternalConfig,
    hold: AltitudeHold,
    /// Frame stamp of the last frame with a fresh command (none yet: the first
    /// frame's).
    last_command_ns: Option<u64>,
    /// What was held back at the last frame.
    last: Option<Held>,
    /// Flying (0), hovering (1) or landing (2), as last said on `events`.
    mode_said: Option<u8>,
    /// What to say on `events` (a change between flying, hovering and landing).
    said: Option<String>,
}

impl Commanded {
    /// The gate with the loop's avoidance settings and the limits `cfg`.
    pub fn new(avoid: AvoidConfig, cfg: ExternalConfig) -> Self {
        Self {
            avoid,
            cfg,
            hold: AltitudeHold::new(avoid.altitude),
            last_command_ns: None,
            last: None,
            mode_said: None,
            said: None,
        }
    }

    /// The clearance (m) a forward command is judged by: the nearest known
    /// depth ahead on the stereo scan and on the flown one; 0 when stereo is
    /// blind ahead or neither knows anything there.
    fn clearance(&self, frame: &PolicyFrame<'_>, turning: bool) -> f64 {
        let a = &self.avoid;
        let ahead = |scan: &[f32]| {
            if turning {
                // The whole view: its nearest known depth, blind when too much is unknown.
                let known = scan.iter().filter(|v| v.is_finite());
                let nearest = known.clone().fold(f32::INFINITY, |m, &v| m.min(v));
                let unknown = 1.0 - known.count() as f32 / scan.len().max(1) as f32;
                Ahead { nearest, unknown }
            } else {
                Ahead::of(scan)
            }
        };
        let stereo = ahead(frame.stereo);
        let flown = ahead(frame.scan);
        if stereo.blind(a.unknown_ahead)
            || (stereo.nearest.is_infinite() && flown.nearest.is_infinite())
        {
            return 0.0;
        }
        f64::from(stereo.nearest.min(flown.nearest))
    }

    /// The command to fly for `frame`, and what was held back of it.
    pub fn gate(&self, frame: &PolicyFrame<'_>) -> (Velocity, Option<Held>) {
        let altitude = frame.altitude();
        let hold_up = self.hold.up(altitude);
        let fresh = frame
            .external
            .filter(|c| c.age.is_finite() && c.age >= 0.0 && c.age <= self.cfg.timeout);
        let Some(c) = fresh else {
            let since = self
                .last_command_ns
                .map_or(0.0, |t| frame.stamp_ns.saturating_sub(t) as f64 * 1e-9);
            if since >= self.cfg.land_after {
                let land = Velocity {
                    up: -LAND_RATE,
                    ..Velocity::default()
                };
                return (land, Some(Held::Landing));
            }
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
        let up = if self.cfg.hold_altitude {
            hold_up
        } else if !altitude.is_finite() {
            0.0
        } else {
            let up = clamp(v.up, -self.cfg.max_climb, self.cfg.max_climb);
            if (up < 0.0 && altitude <= self.cfg.min_altitude)
                || (up > 0.0 && altitude >= self.cfg.max_altitude)
            {
                0.0
            } else {
                up
            }
        };
        let mut out = Velocity {
            forward: clamp(v.forward, -blind, a.cruise_speed),
            left: clamp(v.left, -blind, blind),
            up,
            yaw_rate: clamp(v.yaw_rate, -a.turn_rate, a.turn_rate),
        };
        let bounded = out.forward != v.forward
            || out.left != v.left
            || out.yaw_rate != v.yaw_rate
            || (!self.cfg.hold_altitude && out.up != v.up);
        let mut held = bounded.then_some(Held::Bounded);
        if out.forward > 0.0 {
            let clearance = self.clearance(frame, out.yaw_rate.abs() > TURNING);
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
        let commanded = !matches!(held, Some(Held::NoCommand | Held::Landing));
        if commanded || self.last_command_ns.is_none() {
            self.last_command_ns = Some(frame.stamp_ns);
        }
        // Flying, hovering and landing are said on `events`; the cuts of a
        // flown command (which change from frame to frame) only in the log.
        let mode = match held {
            Some(Held::NoCommand) => 1,
            Some(Held::Landing) => 2,
            _ => 0,
        };
        if self.mode_said != Some(mode) {
            self.mode_said = Some(mode);
            self.said = Some(match held {
                Some(Held::NoCommand) => format!(
                    "external commands: none within {:.1} s; hovering",
                    self.cfg.timeout
                ),
                Some(Held::Landing) => format!(
                    "external commands: none for {:.1} s; landing",
                    self.cfg.land_after
                ),
                _ => "external commands: flying them".to_string(),
            });
        }
        if held != self.last && matches!(held, Some(Held::Ahead | Held::Bounded)) {
            tracing::debug!("external commands: {held:?}, flown {v:?}");
        }
        self.last = held;
        Some(v)
    }

    fn new_episode(&mut self) {
        self.last = None;
        self.last_command_ns = None;
        self.mode_said = None;
    }

    fn said(&mut self) -> Option<String> {
        self.said.take()
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
            stereo: scan,
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
        // A wall at 1.5x the avoid distance: half the speed; nearer than the
        // avoid distance: none; turning is still allowed.
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
        // Flying on mono, which calls the way clear, stereo still stops it:
        // near, or blind.
        for stereo in [&near, &blank] {
            let f = PolicyFrame {
                stereo,
                ..frame(&far, Some(&c), t)
            };
            assert_eq!(g.gate(&f).0.forward, 0.0, "{stereo:?}");
        }
        // Backing away from it is allowed, slowly.
        let back = cmd(0.1, -2.0, 0.0, 0.0);
        let (v, held) = g.gate(&frame(&blank, Some(&back), t));
        assert_eq!((v.forward, held), (-0.3, Some(Held::Bounded)));
        // Turning hard, what is near at the side of the view counts too.
        let mut side = far.clone();
        side[0] = 0.5;
        let straight = cmd(0.0, 0.8, 0.0, 0.0);
        assert_eq!(g.gate(&frame(&side, Some(&straight), t)).0.forward, 0.8);
        let turning = cmd(0.0, 0.8, 0.0, 1.0);
        assert_eq!(g.gate(&frame(&side, Some(&turning), t)).0.forward, 0.0);
        // A validation that allows a fully unknown view still never flies
        // forward on a scan with nothing known.
        let lax = Commanded::new(
            AvoidConfig {
                unknown_ahead: 1.0,
                ..avoid
            },
            ExternalConfig::default(),
        );
        assert_eq!(lax.gate(&frame(&blank, Some(&c), t)).0.forward, 0.0);
    }

    #[test]
    fn stale_or_missing_commands_hover_then_land_and_speeds_are_bounded() {
        let avoid = AvoidConfig::default();
        let mut g = Commanded::new(avoid, ExternalConfig::default());
        let far = vec![8.0f32; 32];
        let s = 1_000_000_000u64;
        let hover = Velocity::default();
        assert_eq!(
            g.gate(&frame(&far, None, 10 * s)),
            (hover, Some(Held::NoCommand))
        );
        // 0.6 s old (timeout 0.5 s): none.
        let old = cmd(0.6, 0.8, 0.0, 0.0);
        assert_eq!(
            g.gate(&frame(&far, Some(&old), 10 * s)),
            (hover, Some(Held::NoCommand))
        );
        // Beyond the limits: bounded; NaN flies nothing on that axis.
        let wild = cmd(0.0, 9.0, -9.0, f64::NAN);
        let (v, held) = g.gate(&frame(&far, Some(&wild), 10 * s));
        assert_eq!(
            (v.forward, v.left, v.yaw_rate),
            (avoid.cruise_speed, -0.3, 0.0)
        );
        assert_eq!(held, Some(Held::Bounded));
        // Commands, then none: hover said on events, then after 5 s a landing.
        let ok = cmd(0.0, 0.5, 0.0, 0.0);
        assert_eq!(
            g.act(&frame(&far, Some(&ok), 10 * s)).map(|v| v.forward),
            Some(0.5)
        );
        g.said();
        let v = g.act(&frame(&far, None, 11 * s)).unwrap();
        assert_eq!((v.forward, v.up), (0.0, 0.0));
        assert!(g.said().is_some_and(|t| t.contains("hovering")));
        assert_eq!(g.act(&frame(&far, None, 14 * s)).unwrap().up, 0.0);
        assert_eq!(g.said(), None);
        assert_eq!(g.act(&frame(&far, None, 15 * s)).unwrap().up, -LAND_RATE);
        assert!(g.said().is_some_and(|t| t.contains("landing")));
        // A command again: flown, and said.
        assert_eq!(
            g.act(&frame(&far, Some(&ok), 16 * s)).map(|v| v.forward),
            Some(0.5)
        );
        assert!(g.said().is_some_and(|t| t.contains("flying")));
    }

    #[test]
    fn commanded_climb_stays_between_the_altitude_limits() {
        let cfg = ExternalConfig {
            hold_altitude: false,
            ..ExternalConfig::default()
        };
        let g = Commanded::new(AvoidConfig::default(), cfg);
        let far = vec![8.0f32; 32];
        let climb = |up: f64| External {
            age: 0.0,
            velocity: Velocity {
                up,
                ..Velocity::default()
            },
        };
        let at = |alt: f64, up: f64| {
            let state = State {
                position: [0.0, 0.0, alt],
                attitude: [1.0, 0.0, 0.0, 0.0],
                velocity: [0.0; 3],
            };
            let c = climb(up);
            let f = PolicyFrame {
                state: Some(&state),
                ..frame(&far, Some(&c), 0)
            };
            g.gate(&f).0.up
        };
        assert_eq!(at(1.0, 2.0), cfg.max_climb);
        assert_eq!(at(1.0, -0.2), -0.2);
        assert_eq!(at(cfg.min_altitude, -0.2), 0.0);
        assert_eq!(at(cfg.max_altitude, 0.2), 0.0);
        // Unknown altitude: no vertical speed at all.
        let c = climb(0.3);
        assert_eq!(g.gate(&frame(&far, Some(&c), 0)).0.up, 0.0);
    }
}
