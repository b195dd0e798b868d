//! `agent topic list|echo|hz`: what flows on the bus, as `ros2 topic` shows it.

use super::{BusArgs, above};
use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct TopicArgs {
    #[command(subcommand)]
    cmd: TopicCmd,
}

#[derive(clap::Subcommand)]
enum TopicCmd {
    /// The topics with traffic (messages, rate, type) and the nodes that are up,
    /// watched for a while.
    List {
        #[command(flatten)]
        bus: BusArgs,
        /// Seconds to watch.
        #[arg(long, default_value_t = 2.0, value_parser = above(0.0, 3600.0, "s"))]
        seconds: f64,
    },
    /// Print every message of a topic (header and body; images and weights as sizes).
    Echo {
        /// Topic suffix (`cmd/setpoint`, `state`, ...).
        topic: String,
        #[command(flatten)]
        bus: BusArgs,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// A topic's message rate, every second, with gaps in its sequence numbers.
    Hz {
        /// Topic suffix.
        topic: String,
        #[command(flatten)]
        bus: BusArgs,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long, value_parser = above(0.0, crate::cli::MAX_SECONDS, "s"))]
        seconds: Option<f64>,
    },
}

/// A bus message in one line: its header and body (images and weights as sizes).
fn describe(topic: bus::Topic, bytes: &[u8]) -> String {
    use bus::msg::*;
    use bus::wire::decode;
    fn show<M: bus::wire::Message + std::fmt::Debug>(b: &[u8]) -> String {
        match decode::<M>(b) {
            Ok((h, m)) => format!(
                "seq {} stamp {} frame {:?}: {m:?}",
                h.seq, h.stamp_ns, h.frame_id
            ),
            Err(e) => format!("not a {}: {e}", M::NAME),
        }
    }
    match topic {
        bus::Topic::CameraStereo => match decode::<StereoPair>(bytes) {
            Ok((h, m)) => format!(
                "seq {} stamp {} frame {:?}: StereoPair {}x{}",
                h.seq, h.stamp_ns, h.frame_id, m.width, m.height
            ),
            Err(e) => format!("not a StereoPair: {e}"),
        },
        bus::Topic::Weights => match decode::<Weights>(bytes) {
            Ok((h, m)) => format!(
                "seq {} stamp {} frame {:?}: Weights {} version {} ({} bytes)",
                h.seq,
                h.stamp_ns,
                h.frame_id,
                m.network,
                m.version,
                m.bpk.len()
            ),
            Err(e) => format!("not Weights: {e}"),
        },
        bus::Topic::DepthStereo | bus::Topic::DepthMono => show::<DepthScan>(bytes),
        bus::Topic::CmdSetpoint | bus::Topic::CmdPolicy | bus::Topic::CmdExternal => {
            show::<Setpoint>(bytes)
        }
        bus::Topic::State => show::<State>(bytes),
        bus::Topic::Events => show::<Event>(bytes),
        bus::Topic::FcStatus => show::<FcStatus>(bytes),
        bus::Topic::Goal => show::<Goal>(bytes),
        bus::Topic::Tracks => show::<Tracks>(bytes),
        bus::Topic::CameraHealth => show::<CameraHealth>(bytes),
        bus::Topic::CmdArm => show::<ArmRequest>(bytes),
    }
}

/// The topic named `suffix`, or an error that names it.
fn known_topic(suffix: &str) -> Result<bus::Topic> {
    bus::Topic::from_suffix(suffix)
        .with_context(|| format!("unknown topic `{suffix}` (see `agent topic list`)"))
}

/// `agent topic list|echo|hz`.
pub(crate) fn topic(a: TopicArgs, stop: Arc<AtomicBool>) -> Result<()> {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let poll = Duration::from_millis(100);
    match a.cmd {
        TopicCmd::List { bus: b, seconds } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                anyhow::bail!("--seconds must be positive, got {seconds}");
            }
            let session = b.open()?;
            let tap = bus::Tap::new(&session, &b.robot, "**")?;
            let presence = bus::Presence::watch(&session, &b.robot)?;
            let mut seen: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
            let mut nodes = std::collections::BTreeSet::new();
            let t0 = Instant::now();
            while t0.elapsed().as_secs_f64() < seconds && !stop.load(Ordering::Relaxed) {
                while let Some(change) = presence.recv_timeout(Duration::ZERO)? {
                    match change {
                        bus::Change::Up(n) => nodes.insert(n),
                        bus::Change::Down(n) => nodes.remove(&n),
                    };
                }
                if let Some((suffix, bytes)) = tap.recv_timeout(poll)? {
                    let e = seen.entry(suffix).or_default();
                    e.0 += 1;
                    e.1 += bytes.len() as u64;
                }
            }
            let span = t0.elapsed().as_secs_f64();
            println!("robot `{}`, watched {span:.1} s:", b.robot);
            println!(
                "  {:<20} {:<14} {:>9} {:>9} {:>12}",
                "topic", "type", "messages", "rate Hz", "bytes"
            );
            for (suffix, (n, bytes)) in &seen {
                let kind = bus::Topic::from_suffix(suffix).map_or("(unknown)", |t| t.message());
                println!(
                    "  {suffix:<20} {kind:<14} {n:>9} {:>9.1} {bytes:>12}",
                    *n as f64 / span
                );
            }
            if seen.is_empty() {
                println!("  no traffic (is the graph up, and --connect right?)");
            }
            println!(
                "nodes up: {}",
                if nodes.is_empty() {
                    "none".to_string()
                } else {
                    nodes.into_iter().collect::<Vec<_>>().join(", ")
                }
            );
        }
        TopicCmd::Echo {
            topic,
            bus: b,
            count,
        } => {
            let t = known_topic(&topic)?;
            let session = b.open()?;
            let tap = bus::Tap::new(&session, &b.robot, t.suffix())?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && count.is_none_or(|c| n < c) {
                if let Some((_, bytes)) = tap.recv_timeout(poll)? {
                    n += 1;
                    println!("{}", describe(t, &bytes));
                }
            }
        }
        TopicCmd::Hz {
            topic,
            bus: b,
            seconds,
        } => {
            let t = known_topic(&topic)?;
            let session = b.open()?;
            let tap = bus::Tap::new(&session, &b.robot, t.suffix())?;
            let mut seqs = bus::log::SeqTracker::default();
            let (t0, mut window, mut n) = (Instant::now(), Instant::now(), 0u64);
            while !stop.load(Ordering::Relaxed)
                && seconds.is_none_or(|s| t0.elapsed().as_secs_f64() < s)
            {
                if let Some((_, bytes)) = tap.recv_timeout(poll)? {
                    n += 1;
                    if let Ok((_, h, _)) = bus::wire::decode_header(&bytes) {
                        seqs.see(t.suffix(), &h.frame_id, h.seq);
                    }
                }
                let dt = window.elapsed().as_secs_f64();
                if dt >= 1.0 {
                    let missing = if t.numbered_by_publisher() {
                        format!(
                            "missing so far {}",
                            seqs.missing
                                .values()
                                .fold(0u64, |a, &b| a.saturating_add(b))
                        )
                    } else {
                        "(carries its source's sequence numbers: gaps not counted)".into()
                    };
                    println!(
                        "{}: {:.1} Hz ({n} messages in {dt:.2} s); {missing}",
                        t.suffix(),
                        n as f64 / dt
                    );
                    (window, n) = (Instant::now(), 0);
                }
            }
        }
    }
    Ok(())
}
