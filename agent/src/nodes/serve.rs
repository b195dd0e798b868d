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
