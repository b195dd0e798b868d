//! Which cue flies: the persistent self-supervised switching rule
//! ([`crate::persist::Switcher`]) fed from the two depth scans of a frame.
//! Mono's error is measured against stereo on the columns stereo knows only;
//! the training wheels see an unknown way ahead as an obstacle risk — a blind
//! stereo view (more of the middle unknown than `avoid.unknown_ahead`) counts
//! as an obstacle at half the wheels' distance, so two such frames while mono
//! calls the way clear send the robot back to stereo flight, whose policy stops
//! and turns.
//!
//! Mono flight flies the network's depth shrunk by the error it is known to
//! make (`persist.mono_margin` times the window's mean log error): the network
//! places some near obstacles too far, and with a margin of its measured error
//! the policy turns, and the training wheels judge, on a depth nearer to what
//! the network can vouch for.

use super::avoid::{Ahead, AvoidConfig};
use crate::persist::{Mode, PersistConfig, Strategy, Switch, Switcher};
use std::borrow::Cow;

/// Mean |log mono − log stereo| over the columns stereo knows; `None` when it
/// knows none.
pub fn mono_error(mono: &[f32], stereo: &[f32]) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for (m, t) in mono.iter().zip(stereo) {
        if t.is_finite() && *t > 0.0 && m.is_finite() && *m > 0.0 {
            s += f64::from((m.ln() - t.ln()).abs());
            n += 1;
        }
    }
    (n > 0).then(|| s / n as f64)
}

/// One frame's cues.
#[derive(Debug, Clone, Copy)]
pub struct FrameCues<'a> {
    /// Time (s) of the frame.
    pub t: f64,
    /// The stereo scan (m, NaN = unknown).
    pub stereo: &'a [f32],
    /// The mono scan of the same frame, when the network ran on it.
    pub mono: Option<&'a [f32]>,
    /// Training steps the mono network has had.
    pub train_steps: u64,
}

/// What the switch decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwitchOutput {
    /// The cue that flies this frame.
    pub mode: Mode,
    /// A change of cue, or an intervention, in this frame.
    pub event: Option<Switch>,
    /// Mono's error on this frame (before any training on it).
    pub error: Option<f64>,
    /// The way ahead as stereo sees it.
    pub stereo_ahead: Ahead,
    /// The way ahead as the network sees it (its raw depth, before
    /// [`Self::mono_scale`]).
    pub mono_ahead: Option<Ahead>,
    /// Stereo's view ahead was blind (too much unknown).
    pub stereo_blind: bool,
    /// The factor mono's depth is flown at (`exp(-margin x recent error)`, 1
    /// without a margin).
    pub mono_scale: f32,
}

impl SwitchOutput {
    /// The scan the policy flies on: mono's, times [`Self::mono_scale`], in
    /// mono flight when there is one, else stereo's.
    pub fn flown<'a>(&self, stereo: &'a [f32], mono: Option<&'a [f32]>) -> Cow<'a, [f32]> {
        match (self.mode, mono) {
            (Mode::Mono, Some(m)) if self.mono_scale != 1.0 => {
                Cow::Owned(m.iter().map(|v| v * self.mono_scale).collect())
            }
            (Mode::Mono, Some(m)) => Cow::Borrowed(m),
            _ => Cow::Borrowed(stereo),
        }
    }

    /// The frame's event in words (one text for the twin's telemetry and the
    /// robot's `events` topic), `t` the frame's time (s).
    pub fn describe(&self, t: f64) -> Option<String> {
        Some(match self.event? {
            Switch::ToMono { error } => format!(
                "t={t:.1}s: switch to mono flight (recent error {})",
                error.map_or("n/a".into(), |e| format!("{e:.3}"))
            ),
            Switch::Intervention {
                stereo_near,
                mono_near,
            } => {
                let seen = if self.stereo_blind {
                    format!(
                        "no depth on {:.0} % of the way ahead",
                        100.0 * self.stereo_ahead.unknown
                    )
                } else {
                    format!("{stereo_near:.2} m ahead")
                };
                let margin = if self.mono_scale < 1.0 {
                    format!(" (its depth x{:.2} for its recent error)", self.mono_scale)
                } else {
                    String::new()
                };
                format!(
                    "t={t:.1}s: training wheels: stereo sees {seen}, mono flies it at {mono_near:.2} m{margin}; back to stereo"
                )
            }
            Switch::ErrorRose { error } => {
                format!("t={t:.1}s: mono error rose to {error:.3}; back to stereo")
            }
        })
    }
}

/// The switch stage.
#[derive(Debug, Clone)]
pub struct CueSwitch {
    switcher: Switcher,
    avoid_distance: f32,
    unknown_limit: f64,
    wheels_distance: f32,
}

impl CueSwitch {
    /// A switch for `strategy` at a camera rate of `hz`; starts on stereo.
    pub fn new(persist: PersistConfig, strategy: Strategy, hz: f64, avoid: &AvoidConfig) -> Self {
        Self {
            switcher: Switcher::new(persist, strategy, hz),
            avoid_distance: avoid.avoid_distance as f32,
            unknown_limit: avoid.unknown_ahead,
            wheels_distance: persist.wheels_distance,
        }
    }

    /// The factor mono's depth is flown at now: `exp(-margin x e)`, `e` the
    /// error window's mean of the frames before this one. Until the window is
    /// full the switching threshold stands in for `e`: only a naive arm can fly
    /// on mono then (one told to switch before a window's time).
    pub fn mono_scale(&self) -> f32 {
        let cfg = self.switcher.config();
        let e = self.window_error().unwrap_or(cfg.error_threshold);
        (-cfg.mono_margin * e).exp() as f32
    }

    /// The cue flying now.
    pub fn mode(&self) -> Mode {
        self.switcher.mode()
    }

    /// The rule's mean error over its window, once full.
    pub fn window_error(&self) -> Option<f64> {
        self.switcher.window_error()
    }

    /// Decide for one frame. A frame without a mono scan never flies on mono.
    pub fn update(&mut self, cues: FrameCues<'_>) -> SwitchOutput {
        let stereo_ahead = Ahead::of(cues.stereo);
        let stereo_blind = stereo_ahead.blind(self.unknown_limit);
        let stereo_near = if stereo_blind {
            stereo_ahead.nearest.min(self.wheels_distance * 0.5)
        } else {
            stereo_ahead.nearest
        };
        let mono_ahead = cues.mono.map(Ahead::of);
        let error = cues.mono.and_then(|m| mono_error(m, cues.stereo));
        // The margin of the frames before this one, as the policy flies it.
        let mono_scale = self.mono_scale();
        let mono_near = mono_ahead.map_or(f32::INFINITY, |a| {
            a.clearance(self.unknown_limit) * mono_scale
        });
        let mut event = self.switcher.update(
            cues.t,
            error,
            stereo_near,
            mono_near,
            self.avoid_distance,
            cues.train_steps,
        );
        let mut mode = self.switcher.mode();
        if mode == Mode::Mono && cues.mono.is_none() {
            // No mono answer for this frame: stereo flies it.
            mode = Mode::Stereo;
            event = event.filter(|e| !matches!(e, Switch::ToMono { .. }));
        }
        SwitchOutput {
            mode,
            event,
            error,
            stereo_ahead,
            mono_ahead,
            stereo_blind,
            mono_scale,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn mono_now() -> CueSwitch {
        mono_with_error(0.0, 1.0)
    }

    /// The persistent rule allowed to fly mono at once (a 0.1 s window, no
    /// hold), sent back to stereo only by the wheels, with `margin`.
    pub(in crate::pipeline) fn mono_at_once(margin: f64) -> PersistConfig {
        PersistConfig {
            min_train_steps: 0,
            hold: 0.0,
            error_window: 0.1,
            exit_factor: 100.0,
            mono_margin: margin,
            ..PersistConfig::default()
        }
    }

    /// Mono flight reached through the persistent rule at once, mono off
    /// stereo by `error` (log) on every frame so far.
    fn mono_with_error(error: f32, margin: f64) -> CueSwitch {
        let p = mono_at_once(margin);
        let mut s = CueSwitch::new(p, Strategy::Persistent, 30.0, &AvoidConfig::default());
        let scan = vec![5.0f32; 32];
        let mono = vec![5.0 * error.exp(); 32];
        for i in 0..10 {
            s.update(FrameCues {
                t: f64::from(i) / 30.0,
                stereo: &scan,
                mono: Some(&mono),
                train_steps: 1000,
            });
        }
        assert_eq!(s.mode(), Mode::Mono);
        s
    }

    /// `n` frames of the same scans at 30 Hz from t = 1 s; what the switch
    /// decided for each.
    fn frames(s: &mut CueSwitch, n: u32, stereo: &[f32], mono: &[f32]) -> Vec<SwitchOutput> {
        (0..n)
            .map(|i| {
                s.update(FrameCues {
                    t: 1.0 + f64::from(i) / 30.0,
                    stereo,
                    mono: Some(mono),
                    train_steps: 1000,
                })
            })
            .collect()
    }

    /// Frames where stereo sees an obstacle at `stereo_m` in the middle and
    /// mono places it at `mono_m` (elsewhere 0.2 off, as before); the events
    /// they gave.
    fn near_obstacle(s: &mut CueSwitch, stereo_m: f32, mono_m: f32) -> Vec<Switch> {
        let (mut stereo, mut mono) = (vec![5.0f32; 32], vec![5.0 * 0.2f32.exp(); 32]);
        stereo[16] = stereo_m;
        mono[16] = mono_m;
        frames(s, 8, &stereo, &mono)
            .iter()
            .filter_map(|o| o.event)
            .collect()
    }

    #[test]
    fn mono_is_flown_nearer_by_its_recent_error_and_the_wheels_judge_that_depth() {
        // Mono has been 0.2 (log) off stereo: it is flown at exp(-0.2) of its depth.
        let s = mono_with_error(0.2, 1.0);
        assert!(
            (s.mono_scale() - (-0.2f32).exp()).abs() < 1e-4,
            "{}",
            s.mono_scale()
        );
        let mut s2 = s.clone();
        let out = s2.update(FrameCues {
            t: 1.0,
            stereo: &[5.0; 32],
            mono: Some(&[2.0; 32]),
            train_steps: 1000,
        });
        let flown = out.flown(&[5.0; 32], Some(&[2.0; 32])).into_owned();
        assert!(
            flown
                .iter()
                .all(|v| (v - 2.0 * (-0.2f32).exp()).abs() < 1e-3),
            "{flown:?}"
        );
        // An obstacle stereo sees at 0.8 m and mono at 1.7 m: flown at 1.39 m,
        // under the 1.6 m the policy turns at, so mono does not call it clear.
        let mut with_margin = s.clone();
        assert_eq!(near_obstacle(&mut with_margin, 0.8, 1.7), vec![]);
        assert_eq!(with_margin.mode(), Mode::Mono);
        // Without the margin the same frames are an intervention.
        let mut without = mono_with_error(0.2, 0.0);
        assert_eq!(without.mono_scale(), 1.0);
        let events = near_obstacle(&mut without, 0.8, 1.7);
        assert!(
            matches!(events.as_slice(), [Switch::Intervention { .. }]),
            "{events:?}"
        );
        // A gross error is still caught: mono at 3 m is flown at 2.46 m.
        let mut s3 = s.clone();
        let events = near_obstacle(&mut s3, 0.8, 3.0);
        assert!(
            matches!(events.as_slice(), [Switch::Intervention { .. }]),
            "{events:?}"
        );
    }

    #[test]
    fn blind_stereo_ahead_with_mono_calling_it_clear_is_an_intervention() {
        let mut s = mono_now();
        let outs = frames(&mut s, 3, &[f32::NAN; 32], &[9.0; 32]);
        assert!(outs.iter().all(|o| o.stereo_blind));
        let events: Vec<Switch> = outs.iter().filter_map(|o| o.event).collect();
        assert!(
            matches!(events.as_slice(), [Switch::Intervention { .. }]),
            "{events:?}"
        );
        assert_eq!(s.mode(), Mode::Stereo);
    }

    #[test]
    fn error_counts_known_columns_only_and_missing_mono_flies_stereo() {
        let stereo = [2.0f32, f32::NAN, 4.0];
        let mono = [2.0f32, 0.5, 4.0 * std::f32::consts::E];
        assert!((mono_error(&mono, &stereo).unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(mono_error(&mono, &[f32::NAN; 3]), None);
        let mut s = mono_now();
        let scan = vec![5.0f32; 32];
        let out = s.update(FrameCues {
            t: 2.0,
            stereo: &scan,
            mono: None,
            train_steps: 1000,
        });
        assert_eq!(out.mode, Mode::Stereo);
        assert_eq!(out.flown(&scan, None).as_ptr(), scan.as_ptr());
    }
}
