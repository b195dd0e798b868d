//! The reactive policy: fly forward, turn away from what is near ahead, hold
//! altitude — on a depth scan where unknown columns are NaN. Unknown is not
//! free: when too much of the way ahead has no depth, the way counts as
//! blocked at an unknown distance, so the robot stops and turns towards where
//! it does see free space (a blank wall, which stereo matching cannot see,
//! stops it instead of reading as open space).

use serde::{Deserialize, Serialize};

/// A velocity command in the body frame (x forward, y left, z up; yaw rate
/// counter-clockwise seen from above).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Velocity {
    /// Forward (m/s).
    pub forward: f64,
    /// Left (m/s).
    pub left: f64,
    /// Up (m/s).
    pub up: f64,
    /// Yaw rate (rad/s).
    pub yaw_rate: f64,
}

/// Reactive avoidance behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvoidConfig {
    /// Forward speed when the way is clear (m/s).
    pub cruise_speed: f64,
    /// Turn away when the nearest obstacle ahead is closer than this (m).
    pub avoid_distance: f64,
    /// Yaw rate while turning away (rad/s).
    pub turn_rate: f64,
    /// Altitude to hold (m).
    pub altitude: f64,
    /// Share of the middle half of the scan that may be unknown (no depth)
    /// before the way ahead counts as blocked.
    pub unknown_ahead: f64,
    /// Gaps of unknown scan columns at most this wide (0 to 8), between two known
    /// ones, read as the nearer of the two before the policy decides
    /// (`stereo::features::fill_scan_gaps`); 0 = off. Only the policy's copy is
    /// filled: the scan on the bus, and what the mono network learns from, stay
    /// as measured. A near textureless object narrower than the gap, between far
    /// surfaces, then reads as far: the default keeps unknown as not free.
    pub fill_gap: usize,
}

impl Default for AvoidConfig {
    fn default() -> Self {
        Self {
            cruise_speed: 1.0,
            avoid_distance: 1.6,
            turn_rate: 1.5,
            altitude: 1.2,
            unknown_ahead: 0.25,
            fill_gap: 0,
        }
    }
}

impl AvoidConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self, room_height: f64) -> Result<(), String> {
        for (k, v, lo, hi) in [
            ("avoid.cruise_speed", self.cruise_speed, 0.0, 3.0),
            ("avoid.avoid_distance", self.avoid_distance, 0.2, 10.0),
            ("avoid.turn_rate", self.turn_rate, 0.1, 2.0),
            ("avoid.altitude", self.altitude, 0.3, room_height - 0.3),
            ("avoid.unknown_ahead", self.unknown_ahead, 0.0, 1.0),
        ] {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(format!("`{k}` = {v} must be in [{lo}, {hi}]"));
            }
        }
        if self.fill_gap > 8 {
            return Err(format!(
                "`avoid.fill_gap` = {} must be in [0, 8] columns",
                self.fill_gap
            ));
        }
        Ok(())
    }
}

/// What the middle half of a scan says about the way ahead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ahead {
    /// Nearest known depth (m); infinite when no column is known.
    pub nearest: f32,
    /// Share of the middle columns without a depth (NaN), 0 to 1.
    pub unknown: f32,
}

impl Ahead {
    /// The middle half of `scan` (m, left to right, NaN = unknown). An empty
    /// scan is all unknown.
    pub fn of(scan: &[f32]) -> Self {
        let n = scan.len();
        if n == 0 {
            return Self {
                nearest: f32::INFINITY,
                unknown: 1.0,
            };
        }
        let mid = &scan[n / 4..(3 * n / 4).max(n / 4 + 1).min(n)];
        let known = mid.iter().filter(|v| v.is_finite());
        let nearest = known.clone().fold(f32::INFINITY, |m, &v| m.min(v));
        let unknown = 1.0 - known.count() as f32 / mid.len() as f32;
        Self { nearest, unknown }
    }

    /// Whether more of the way ahead is unknown than `limit` allows.
    pub fn blind(&self, limit: f64) -> bool {
        f64::from(self.unknown) > limit
    }

    /// The distance to react to: the nearest known depth, or 0 when the way
    /// ahead is blind (an obstacle at an unknown distance may be right there).
    pub fn clearance(&self, limit: f64) -> f32 {
        if self.blind(limit) { 0.0 } else { self.nearest }
    }
}

/// The one altitude-hold law of every policy: a proportional climb rate
/// towards the hold altitude, bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AltitudeHold {
    /// Altitude to hold (m).
    pub altitude: f64,
    /// Climb rate per metre of error (1/s).
    pub gain: f64,
    /// Largest climb or sink rate (m/s).
    pub limit: f64,
}

impl AltitudeHold {
    /// Hold `altitude` with the default gain (0.8 /s) and limit (1 m/s).
    pub fn new(altitude: f64) -> Self {
        Self {
            altitude,
            gain: 0.8,
            limit: 1.0,
        }
    }

    /// Climb rate (m/s, up positive) at `altitude`; 0 when the altitude is
    /// not finite (an unknown altitude gets no correction).
    pub fn up(&self, altitude: f64) -> f64 {
        if !altitude.is_finite() {
            return 0.0;
        }
        (self.gain * (self.altitude - altitude)).clamp(-self.limit, self.limit)
    }
}

/// Turning state of the avoidance behaviour (hysteresis: keep turning one way until clear).
#[derive(Debug, Clone, Copy, Default)]
pub struct Avoider {
    turning: Option<f64>,
    /// Scan columns filled (`AvoidConfig::fill_gap`) for the last command.
    pub filled: usize,
}

impl Avoider {
    /// Command from a depth scan (m, left to right, NaN = unknown) and the
    /// current altitude. Unknown columns count as no space when it picks the
    /// side to turn to.
    pub fn act(&mut self, cfg: &AvoidConfig, scan: &[f32], altitude: f64) -> Velocity {
        let mut filled_scan;
        let scan = if cfg.fill_gap > 0 {
            filled_scan = scan.to_vec();
            let filled = stereo::features::fill_scan_gaps(&mut filled_scan, cfg.fill_gap);
            self.filled = filled.iter().filter(|&&f| f).count();
            &filled_scan[..]
        } else {
            self.filled = 0;
            scan
        };
        let n = scan.len();
        let clearance = f64::from(Ahead::of(scan).clearance(cfg.unknown_ahead));
        let space = |s: &[f32]| {
            s.iter()
                .map(|&v| if v.is_finite() { f64::from(v) } else { 0.0 })
                .sum::<f64>()
                / s.len().max(1) as f64
        };
        let (left, right) = (space(&scan[..n / 2]), space(&scan[n / 2..]));
        let up = AltitudeHold::new(cfg.altitude).up(altitude);
        if clearance < cfg.avoid_distance {
            let dir = *self
                .turning
                .get_or_insert(if left >= right { 1.0 } else { -1.0 });
            let slow = (clearance / cfg.avoid_distance).clamp(0.0, 1.0) * 0.3 * cfg.cruise_speed;
            Velocity {
                forward: slow,
                left: 0.0,
                up,
                yaw_rate: dir * cfg.turn_rate,
            }
        } else {
            self.turning = None;
            Velocity {
                forward: cfg.cruise_speed,
                left: 0.0,
                up,
                yaw_rate: 0.0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avoider_turns_towards_space_and_keeps_turning_until_clear() {
        let cfg = AvoidConfig::default();
        let mut a = Avoider::default();
        let mut scan = vec![5.0f32; 32];
        let v = a.act(&cfg, &scan, 1.2);
        assert_eq!((v.forward, v.yaw_rate), (1.0, 0.0));
        scan[16] = 1.0;
        for v in &mut scan[16..] {
            *v = v.min(3.0); // less space on the right
        }
        let v = a.act(&cfg, &scan, 1.2);
        assert!(
            v.yaw_rate > 0.0 && v.forward < 0.5,
            "turns left, slows down"
        );
        // Space swaps sides, but it keeps turning the same way while blocked.
        let mut swapped = scan.clone();
        swapped.reverse();
        assert!(a.act(&cfg, &swapped, 1.2).yaw_rate > 0.0);
        assert!(a.act(&cfg, &[5.0; 32], 0.7).up > 0.0, "climbs back");
    }

    #[test]
    fn unknown_ahead_stops_and_turns_towards_known_space() {
        let cfg = AvoidConfig::default();
        let mut a = Avoider::default();
        // The middle half unknown (a blank wall), the right side open.
        let mut scan = vec![f32::NAN; 32];
        for v in &mut scan[24..] {
            *v = 6.0;
        }
        let v = a.act(&cfg, &scan, 1.2);
        assert_eq!(v.forward, 0.0, "stops: the way ahead is blind");
        assert!(v.yaw_rate < 0.0, "turns right, where it sees space");
        // All unknown, an empty scan: no forward motion either.
        assert_eq!(
            Avoider::default().act(&cfg, &[f32::NAN; 32], 1.2).forward,
            0.0
        );
        assert_eq!(Avoider::default().act(&cfg, &[], 1.2).forward, 0.0);
        // One unknown column among clear ones is not a wall.
        let mut one = vec![8.0f32; 32];
        one[16] = f32::NAN;
        assert_eq!(Avoider::default().act(&cfg, &one, 1.2).forward, 1.0);
    }

    #[test]
    fn filled_gaps_count_for_the_policy_only_when_asked() {
        // A near wall ahead with a stereo gap of 6 columns in its middle: the
        // middle half (16 columns) is then 6/16 unknown, above `unknown_ahead`.
        let mut scan = vec![1.0f32; 32];
        for v in &mut scan[13..19] {
            *v = f32::NAN;
        }
        let off = AvoidConfig::default();
        let mut a = Avoider::default();
        a.act(&off, &scan, 1.2);
        assert_eq!(a.filled, 0);
        // Filled, the gap reads as the wall on its sides: 1 m, nearer than the
        // avoid distance, so it turns; the caller's scan is left as measured.
        let on = AvoidConfig {
            fill_gap: 8,
            ..AvoidConfig::default()
        };
        let v = a.act(&on, &scan, 1.2);
        assert_eq!(a.filled, 6);
        assert!(v.yaw_rate != 0.0 && v.forward < on.cruise_speed, "{v:?}");
        assert!(scan[15].is_nan());
        // A gap wider than `fill_gap` stays unknown.
        let narrow = AvoidConfig {
            fill_gap: 4,
            ..AvoidConfig::default()
        };
        a.act(&narrow, &scan, 1.2);
        assert_eq!(a.filled, 0);
    }

    #[test]
    fn altitude_hold_is_bounded_and_ignores_an_unknown_altitude() {
        let h = AltitudeHold::new(1.2);
        assert!((h.up(1.0) - 0.16).abs() < 1e-12);
        assert_eq!(h.up(-10.0), 1.0);
        assert_eq!(h.up(f64::NAN), 0.0);
    }
}
