//! The zenoh executor: one [`Stage`] as a node of the robot's graph. Its
//! input is a [`Source`] (one topic's inbox, or a join of several topics into
//! one frame's input); what it answers is handed to a publish function (the
//! node's typed outbox); what it says goes to `events` under its name. The
//! same stages run in process on [`crate::pipeline::Local`].

use crate::pipeline::{Notes, Outcome, Stage, StageStats};
use anyhow::Result;
use bus::msg::Event;
use bus::wire::Header;
use bus::wire::Message;
use bus::{Inbox, Outbox, Session};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a node waits on its input before checking for Ctrl-C and doing
/// its stage's housekeeping.
pub const POLL: Duration = Duration::from_millis(100);

/// Where a node's frames come from.
pub trait Source {
    /// One frame's input.
    type Item;

    /// The next frame within `timeout`, with the header it travels under (its
    /// sequence number and capture stamp, which the answer keeps); `None` when
    /// none came.
    fn next(&mut self, timeout: Duration) -> Result<Option<(Header, Self::Item)>>;

    /// What it received and missed, for the log when the node stops.
    fn report(&self) -> String;
}

/// One topic as a source.
impl<M: Message> Source for Inbox<M> {
    type Item = M;

    fn next(&mut self, timeout: Duration) -> Result<Option<(Header, M)>> {
        Ok(self.recv_timeout(timeout)?)
    }

    fn report(&self) -> String {
        format!("{:?}", self.stats())
    }
}

/// Publish what `stage` said at `stamp_ns` on `events` (and in the log).
fn say(events: &mut Outbox<Event>, stage: &str, stamp_ns: u64, texts: Vec<String>) -> Result<()> {
    for t in texts {
        let text = format!("{stage}: {t}");
        info!("{text}");
        events.send(stamp_ns, stage, &Event { text })?;
    }
    Ok(())
}

/// Run `stage` on `session` for `robot` until `stop` is set: start it, take
/// each frame from `input`, process it and hand the answer to `publish` (with
/// the frame's header and the time the stage took), do its housekeeping
/// between frames, stop it. A frame the stage refuses is counted and reported
/// (the first, then at powers of two), never fatal; a failure of the bus is.
pub fn serve<S, I>(
    session: &Session,
    robot: &str,
    mut stage: S,
    mut input: I,
    mut publish: impl FnMut(&Header, S::Out, Duration) -> Result<()>,
    stop: &AtomicBool,
) -> Result<StageStats>
where
    S: Stage,
    I: Source<Item = S::In>,
{
    let mut events = Outbox::<Event>::new(session, robot, bus::topics::EVENTS)?;
    let name = stage.name();
    let mut notes = Notes::default();
    let started = stage.start(&mut notes);
    say(&mut events, name, bus::now_ns(), notes.take())?;
    started?;
    info!(robot, "{name} node up");
    let mut stats = StageStats::default();
    let run = (|| -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            stage.idle(&mut notes);
            say(&mut events, name, bus::now_ns(), notes.take())?;
            let Some((h, item)) = input.next(POLL)? else {
                continue;
            };
            let t0 = Instant::now();
            let r = stage.process(&h, &item, &mut notes);
            let took = t0.elapsed();
            stats.count(took, Outcome::of(&r));
            say(&mut events, name, h.stamp_ns, notes.take())?;
            match r {
                Ok(Some(out)) => publish(&h, out, took)?,
                Ok(None) => {}
                Err(e) => {
                    if stats.refused == 1 || stats.refused.is_power_of_two() {
                        warn!(
                            "{name}: frame {} refused ({} so far): {e}",
                            h.seq, stats.refused
                        );
                    }
                }
            }
        }
        Ok(())
    })();
    let line = stage.stop();
    info!(
        frames = stats.frames,
        answered = stats.answered,
        refused = stats.refused,
        mean_ms = stats.mean().as_secs_f64() * 1e3,
        input = %input.report(),
        "{name} node down {line}"
    );
    run.map(|()| stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::msg::Setpoint;
    use std::sync::Arc;

    /// Doubles `forward`; refuses a negative one; says when it is zero.
    struct Double;

    #[derive(Debug, thiserror::Error)]
    #[error("negative forward {0}")]
    struct Negative(f32);

    impl Stage for Double {
        type In = Setpoint;
        type Out = Setpoint;
        type Error = Negative;
        fn name(&self) -> &'static str {
            "double"
        }
        fn process(
            &mut self,
            _: &Header,
            sp: &Setpoint,
            notes: &mut Notes,
        ) -> Result<Option<Setpoint>, Negative> {
            if sp.forward < 0.0 {
                return Err(Negative(sp.forward));
            }
            if sp.forward == 0.0 {
                notes.say("standing still");
            }
            Ok(Some(Setpoint {
                forward: 2.0 * sp.forward,
                ..*sp
            }))
        }
    }

    /// The zenoh executor on a real session: answers keep their frame's
    /// header, a refused frame is skipped and the node goes on, what the stage
    /// says is published on `events` under its name with the frame's stamp,
    /// and Ctrl-C stops it with the counts.
    #[test]
    fn serve_runs_a_stage_as_a_node() {
        let session = bus::open(&bus::BusConfig::default()).unwrap();
        let robot = format!("serve{}", std::process::id());
        let input = Inbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_POLICY, 16).unwrap();
        let out = Outbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT).unwrap();
        let mut answers =
            Inbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_SETPOINT, 16).unwrap();
        let mut events = Inbox::<Event>::new(&session, &robot, bus::topics::EVENTS, 16).unwrap();
        let mut feed = Outbox::<Setpoint>::new(&session, &robot, bus::topics::CMD_POLICY).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let node = {
            let (s, r, st) = (session.clone(), robot.clone(), stop.clone());
            std::thread::spawn(move || {
                serve(
                    &s,
                    &r,
                    Double,
                    input,
                    |h, sp, _| Ok(out.send_with(h, &sp)?),
                    &st,
                )
            })
        };
        let sp = |forward| Setpoint {
            forward,
            ..Setpoint::HOVER
        };
        let mut got = Vec::new();
        for (k, f) in [1.0f32, -1.0, 0.0, 3.0].into_iter().enumerate() {
            feed.send(1000 + k as u64, "test", &sp(f)).unwrap();
        }
        let t0 = Instant::now();
        while got.len() < 3 {
            if let Some((h, a)) = answers.recv_timeout(Duration::from_millis(50)).unwrap() {
                got.push((h.seq, h.stamp_ns, a.forward));
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{got:?}");
        }
        assert_eq!(got, vec![(0, 1000, 2.0), (2, 1002, 0.0), (3, 1003, 6.0)]);
        let (h, e) = loop {
            if let Some(x) = events.recv_timeout(Duration::from_secs(10)).unwrap() {
                break x;
            }
        };
        assert_eq!((h.stamp_ns, h.frame_id.as_str()), (1002, "double"));
        assert_eq!(e.text, "double: standing still");
        stop.store(true, Ordering::Relaxed);
        let stats = node.join().unwrap().unwrap();
        assert_eq!(
            (stats.frames, stats.answered, stats.refused),
            (4, 3, 1),
            "{stats:?}"
        );
    }
}
