//! Which cue flies: the persistent self-supervised switching rule
//! ([`crate::persist::Switcher`]) fed from the two depth scans of a frame.
//! Mono's error is measured against stereo on the columns stereo knows only;
//! the training wheels see an unknown way ahead as an obstacle risk — a blind
//! stereo view (more of the middle unknown than `avoid.unknown_ahead`) counts
//! as an obstacle at half the wheels' distance, so two such frames while mono
//! calls the way clear send the robot back to stereo flight, whose policy stops
//! and turns.

use super::avoid::{Ahead, AvoidConfig};
use crate::persist::{Mode, PersistConfig, Strategy, Switch, Switcher};

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
    /// The way ahead as mono sees it.
    pub mono_ahead: Option<Ahead>,
    /// Stereo's view ahead was blind (too much unknown).
    pub stereo_blind: bool,
}

impl SwitchOutput {
    /// The scan the policy flies on: mono's in mono flight when there is one,
    /// else stereo's.
    pub fn flown<'a>(&self, stereo: &'a [f32], mono: Option<&'a [f32]>) -> &'a [f32] {
        match (self.mode, mono) {
            (Mode::Mono, Some(m)) => m,
            _ => stereo,
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
                format!(
                    "t={t:.1}s: training wheels: stereo sees {seen}, mono {mono_near:.2} m; back to stereo"
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
        let mono_near = mono_ahead.map_or(f32::INFINITY, |a| a.clearance(self.unknown_limit));
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mono_now() -> CueSwitch {
        // Reach mono flight through the persistent rule at once.
        let p = PersistConfig {
            min_train_steps: 0,
            hold: 0.0,
            error_window: 0.1,
            ..PersistConfig::default()
        };
        let mut s = CueSwitch::new(p, Strategy::Persistent, 30.0, &AvoidConfig::default());
        let scan = vec![5.0f32; 32];
        for i in 0..10 {
            s.update(FrameCues {
                t: f64::from(i) / 30.0,
                stereo: &scan,
                mono: Some(&scan),
                train_steps: 1000,
            });
        }
        assert_eq!(s.mode(), Mode::Mono);
        s
    }

    #[test]
    fn blind_stereo_ahead_with_mono_calling_it_clear_is_an_intervention() {
        let mut s = mono_now();
        let blind = vec![f32::NAN; 32];
        let clear = vec![9.0f32; 32];
        let mut events = vec![];
        for i in 0..3 {
            let out = s.update(FrameCues {
                t: 1.0 + f64::from(i) / 30.0,
                stereo: &blind,
                mono: Some(&clear),
                train_steps: 1000,
            });
            assert!(out.stereo_blind);
            events.extend(out.event);
        }
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
