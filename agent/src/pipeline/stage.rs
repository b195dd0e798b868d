//! One lifecycle for every step of the loop, and the in-process executor.
//!
//! A [`Stage`] is started once, processes frames (typed input in, typed output
//! or nothing out), may do housekeeping between frames (`idle`: reload a
//! checkpoint that changed) and is stopped once. It never knows how its inputs
//! arrive or where its outputs go: two executors run the same stages.
//!
//! - [`Local`], here: in process, deterministic, one call per frame in the
//!   caller's order. The twin's experiments (`agent fly`, `persist`, `budget`)
//!   and the offline replay of a recording ([`super::replay`]) run on it.
//! - The zenoh executor (`crate::nodes::serve`): a stage as a node of the
//!   robot's graph, its input a [`crate::nodes::Source`] (one topic, or a join
//!   of several), its output published on a typed topic.
//!
//! What a stage has to say while it works (the cue switch's events, a
//! refused checkpoint) goes into [`Notes`]; the executor hands them to an
//! [`Observer`] (telemetry, the log) or publishes them on `events`. Both
//! executors keep the same [`StageStats`]: frames in, answers out, frames
//! refused, time spent.

use bus::wire::Header;
use std::time::{Duration, Instant};

/// What a stage says while it works, in order.
#[derive(Debug, Default)]
pub struct Notes(Vec<String>);

impl Notes {
    /// Say `text` (one line, no stage prefix: the executor adds the stage's name
    /// where the reader needs it).
    pub fn say(&mut self, text: impl Into<String>) {
        self.0.push(text.into());
    }

    /// Take what was said so far.
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.0)
    }
}

/// One step of the loop with one lifecycle.
pub trait Stage {
    /// What it takes per frame.
    type In;
    /// What it answers per frame.
    type Out;
    /// Why it could not process a frame (the frame is refused; the stage goes on).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Its name: the node's name on the bus, the source of its events.
    fn name(&self) -> &'static str;

    /// Called once before the first frame.
    fn start(&mut self, _notes: &mut Notes) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called between frames (and while none come): housekeeping such as
    /// swapping in new weights.
    fn idle(&mut self, _notes: &mut Notes) {}

    /// Process the frame of header `frame`. `Ok(None)`: no answer for this
    /// frame (no weights yet, the policy had none), which is not an error.
    fn process(
        &mut self,
        frame: &Header,
        input: &Self::In,
        notes: &mut Notes,
    ) -> Result<Option<Self::Out>, Self::Error>;

    /// Called once after the last frame: a closing line for the log.
    fn stop(&mut self) -> String {
        String::new()
    }
}

/// What an executor counted for one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageStats {
    /// Frames handed to the stage.
    pub frames: u64,
    /// Frames it answered.
    pub answered: u64,
    /// Frames it refused (an error).
    pub refused: u64,
    /// Time spent in `process`.
    pub busy: Duration,
}

impl StageStats {
    /// Account one call that took `took` and ended `answered` / refused.
    pub fn count(&mut self, took: Duration, outcome: Outcome) {
        self.frames += 1;
        self.busy += took;
        match outcome {
            Outcome::Answered => self.answered += 1,
            Outcome::Silent => {}
            Outcome::Refused => self.refused += 1,
        }
    }

    /// Mean time per frame (zero before the first).
    pub fn mean(&self) -> Duration {
        if self.frames == 0 {
            Duration::ZERO
        } else {
            self.busy / self.frames as u32
        }
    }
}

/// How one call of `process` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An output.
    Answered,
    /// No output, no error.
    Silent,
    /// An error.
    Refused,
}

impl Outcome {
    /// The outcome of `r`.
    pub fn of<T, E>(r: &Result<Option<T>, E>) -> Self {
        match r {
            Ok(Some(_)) => Outcome::Answered,
            Ok(None) => Outcome::Silent,
            Err(_) => Outcome::Refused,
        }
    }
}

/// Who hears what the stages of an in-process run say: telemetry, the log.
pub trait Observer {
    /// `stage` said `text` while processing `frame`.
    fn note(&mut self, stage: &'static str, frame: &Header, text: &str) -> anyhow::Result<()>;
}

/// An observer that only logs.
#[derive(Debug, Default)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn note(&mut self, stage: &'static str, frame: &Header, text: &str) -> anyhow::Result<()> {
        tracing::info!(stage, seq = frame.seq, "{text}");
        Ok(())
    }
}

/// The in-process executor of one stage: the caller hands it each frame's
/// input in order; it runs the stage's lifecycle and counts.
pub struct Local<S: Stage> {
    stage: S,
    stats: StageStats,
    notes: Notes,
    stopped: bool,
}

impl<S: Stage> Local<S> {
    /// Start `stage`; what it says at start goes to `obs` under a frame of
    /// stamp 0.
    pub fn start(mut stage: S, obs: &mut dyn Observer) -> anyhow::Result<Self> {
        let mut notes = Notes::default();
        let started = stage.start(&mut notes);
        let at_start = Header {
            seq: 0,
            stamp_ns: 0,
            frame_id: String::new(),
        };
        for text in notes.take() {
            obs.note(stage.name(), &at_start, &text)?;
        }
        started?;
        Ok(Self {
            stage,
            stats: StageStats::default(),
            notes,
            stopped: false,
        })
    }

    /// Process one frame: housekeeping first, then the frame. What the stage
    /// said goes to `obs` before the answer is returned; an error is the
    /// caller's (the twin's loop stops on it, a replay may skip the frame).
    pub fn step(
        &mut self,
        frame: &Header,
        input: &S::In,
        obs: &mut dyn Observer,
    ) -> anyhow::Result<Option<S::Out>> {
        self.stage.idle(&mut self.notes);
        let t0 = Instant::now();
        let r = self.stage.process(frame, input, &mut self.notes);
        self.stats.count(t0.elapsed(), Outcome::of(&r));
        for text in self.notes.take() {
            obs.note(self.stage.name(), frame, &text)?;
        }
        Ok(r?)
    }

    /// The stage (to read its state between frames).
    pub fn stage(&self) -> &S {
        &self.stage
    }

    /// The stage, to change it between frames (new weights, a new episode).
    pub fn stage_mut(&mut self) -> &mut S {
        &mut self.stage
    }

    /// What was counted so far.
    pub fn stats(&self) -> StageStats {
        self.stats
    }

    /// Stop the stage: its closing line and the counts.
    pub fn stop(mut self) -> (String, StageStats) {
        self.stopped = true;
        (self.stage.stop(), self.stats)
    }
}

impl<S: Stage> Drop for Local<S> {
    fn drop(&mut self) {
        // A run that ended on an error still stops its stages.
        if !self.stopped {
            let _ = self.stage.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage that doubles even numbers, says when it sees a multiple of 3,
    /// refuses negatives and counts its lifecycle calls.
    #[derive(Default)]
    struct Doubler {
        started: u32,
        idles: u32,
        stops: u32,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("negative input {0}")]
    struct Negative(i64);

    impl Stage for Doubler {
        type In = i64;
        type Out = i64;
        type Error = Negative;
        fn name(&self) -> &'static str {
            "doubler"
        }
        fn start(&mut self, notes: &mut Notes) -> Result<(), Negative> {
            self.started += 1;
            notes.say("up");
            Ok(())
        }
        fn idle(&mut self, _notes: &mut Notes) {
            self.idles += 1;
        }
        fn process(
            &mut self,
            _frame: &Header,
            x: &i64,
            notes: &mut Notes,
        ) -> Result<Option<i64>, Negative> {
            if *x < 0 {
                return Err(Negative(*x));
            }
            if x % 3 == 0 {
                notes.say(format!("{x} is a multiple of 3"));
            }
            Ok((x % 2 == 0).then_some(2 * x))
        }
        fn stop(&mut self) -> String {
            self.stops += 1;
            "down".into()
        }
    }

    #[derive(Default)]
    struct Heard(Vec<(u64, String)>);
    impl Observer for Heard {
        fn note(&mut self, stage: &'static str, f: &Header, text: &str) -> anyhow::Result<()> {
            assert_eq!(stage, "doubler");
            self.0.push((f.seq, text.to_string()));
            Ok(())
        }
    }

    fn frame(seq: u64) -> Header {
        Header {
            seq,
            stamp_ns: seq * 10,
            frame_id: "x".into(),
        }
    }

    #[test]
    fn local_executor_runs_the_lifecycle_and_counts_every_outcome() {
        let mut heard = Heard::default();
        let mut run = Local::start(Doubler::default(), &mut heard).unwrap();
        assert_eq!(run.stage().started, 1);
        let outs: Vec<_> = [2i64, 3, 6]
            .iter()
            .enumerate()
            .map(|(k, x)| run.step(&frame(k as u64), x, &mut heard).unwrap())
            .collect();
        assert_eq!(outs, vec![Some(4), None, Some(12)]);
        let err = run.step(&frame(3), &-1, &mut heard).unwrap_err();
        assert!(err.to_string().contains("negative input -1"), "{err}");
        assert_eq!(run.stage().idles, 4, "housekeeping before every frame");
        assert_eq!(
            heard.0,
            vec![
                (0, "up".to_string()),
                (1, "3 is a multiple of 3".to_string()),
                (2, "6 is a multiple of 3".to_string())
            ]
        );
        let (line, stats) = run.stop();
        assert_eq!(line, "down");
        assert_eq!(
            (stats.frames, stats.answered, stats.refused),
            (4, 2, 1),
            "{stats:?}"
        );
    }

    #[test]
    fn a_dropped_run_still_stops_its_stage() {
        struct Flag<'a>(&'a std::cell::Cell<u32>);
        impl Stage for Flag<'_> {
            type In = ();
            type Out = ();
            type Error = Negative;
            fn name(&self) -> &'static str {
                "doubler"
            }
            fn process(
                &mut self,
                _: &Header,
                _: &(),
                _: &mut Notes,
            ) -> Result<Option<()>, Negative> {
                Err(Negative(-1))
            }
            fn stop(&mut self) -> String {
                self.0.set(self.0.get() + 1);
                String::new()
            }
        }
        let stops = std::cell::Cell::new(0);
        {
            let mut heard = Heard::default();
            let mut run = Local::start(Flag(&stops), &mut heard).unwrap();
            assert!(run.step(&frame(0), &(), &mut heard).is_err());
        }
        assert_eq!(stops.get(), 1, "the stage was stopped once, on drop");
    }
}
