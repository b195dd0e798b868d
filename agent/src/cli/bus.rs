//! `agent record`, `agent replay` and `agent latency`: the bus.

use super::{BusArgs, above, count, parse_topics, within};
use agent::pipeline::LoopConfig;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct RecordArgs {
    /// Output file (MCAP); `{time}` becomes the UTC start time, and such a file
    /// is never overwritten (the next free NAME-1.mcap, ... is taken).
    #[arg(long, default_value = "out/record-{time}.mcap")]
    out: PathBuf,
    /// Topics to record (suffixes, comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    #[command(flatten)]
    bus: BusArgs,
    /// Stop after this many seconds (default: until Ctrl-C / SIGTERM).
    #[arg(long, value_parser = above(0.0, crate::cli::MAX_SECONDS, "s"))]
    seconds: Option<f64>,
    /// How messages are stored: `ros2` (ROS 2 types in CDR, readable by
    /// Foxglove, ros2 bag, rosbags, rerun; topics without a ROS 2 type keep the
    /// bus encoding) or `bus` (every message as it crossed the bus).
    #[arg(long, value_enum, default_value = "ros2")]
    format: RecordFormat,
    /// The rig of the pairs (OpenCV YAML from `calib stereo`), for each
    /// image's CameraInfo and the cameras in /tf_static (default: the twin's
    /// rig, as the stereo node's).
    #[arg(long)]
    rig: Option<PathBuf>,
    /// Go on in a new file once this one holds this many MB.
    #[arg(long, value_parser = above(0.0, 1e7, "MB"))]
    split_mb: Option<f64>,
    /// Go on in a new file once this one spans this many minutes.
    #[arg(long, value_parser = above(0.0, 1e6, "min"))]
    split_minutes: Option<f64>,
}

/// `agent record --format`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum RecordFormat {
    Ros2,
    Bus,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// The recording (MCAP, from `agent record`).
    file: PathBuf,
    /// Topics to play (suffixes, comma-separated); default: all in the file.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    #[command(flatten)]
    bus: BusArgs,
    /// Speed factor over the recorded rate.
    #[arg(long, default_value_t = 1.0, value_parser = above(0.0, 1000.0, "x the recorded rate"))]
    rate: f64,
    /// As fast as possible (ignores --rate).
    #[arg(long)]
    fast: bool,
    /// Seconds to wait for subscribers to connect before playing.
    #[arg(long, default_value_t = 1.0, value_parser = within(0.0, 3600.0, "s"))]
    wait: f64,
    /// Play frame by frame: hold each `--lockstep-frames` message until the
    /// graph has answered the previous one on this topic (e.g. `cmd/setpoint`,
    /// matched by sequence number and stamp; the recording's own messages of it
    /// are not played). The pacing then does not depend on the host's speed
    /// (nodes' own time-outs still do: give the policy a long --mono-wait-ms).
    #[arg(long, value_name = "ANSWER_TOPIC")]
    lockstep: Option<String>,
    /// The topic whose messages are the frames of `--lockstep`.
    #[arg(long, default_value = "camera/stereo", requires = "lockstep")]
    lockstep_frames: String,
    /// Seconds to wait for one answer before playing on (counted as unanswered).
    #[arg(long, default_value_t = 30.0, requires = "lockstep", value_parser = above(0.0, 3600.0, "s"))]
    lockstep_timeout: f64,
}

#[derive(clap::Args)]
pub(crate) struct InfoArgs {
    /// The recording (MCAP).
    file: PathBuf,
    /// List every gap in the publishers' sequence numbers (default: the first 20).
    #[arg(long)]
    all_gaps: bool,
}

#[derive(clap::Args)]
pub(crate) struct LatencyArgs {
    /// Image sizes, WIDTHxHEIGHT, comma-separated.
    #[arg(long, default_value = "160x120,320x240", value_delimiter = ',')]
    sizes: Vec<String>,
    /// Frames per size and placement.
    #[arg(long, default_value_t = 10_000, value_parser = count(1, 100_000_000))]
    frames: usize,
    /// Where the nodes run: processes, threads or both.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "processes,threads"
    )]
    placement: Vec<agent::latency::Placement>,
    /// How the sessions are secured: plain peers, or clients of a router that
    /// checks passwords or certificates (nodes as processes only), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain")]
    security: Vec<agent::latency::Security>,
    /// TCP port on 127.0.0.1 the benchmark listens on.
    #[arg(long, default_value_t = 7461)]
    port: u16,
}

/// `agent record`.
pub(crate) fn record(a: RecordArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let mut topics = parse_topics(&a.topics)?;
    if a.rig.is_some() && matches!(a.format, RecordFormat::Bus) {
        anyhow::bail!(
            "--rig is for --format ros2 (CameraInfo and /tf_static); the bus encoding has no use for it"
        );
    }
    if matches!(a.format, RecordFormat::Ros2) {
        let (ros, other): (Vec<bus::Topic>, Vec<bus::Topic>) =
            topics.iter().partition(|t| bus::ros2::has_ros_type(**t));
        let names: Vec<&str> = other.iter().map(|t| t.suffix()).collect();
        if a.topics.is_empty() {
            // By default only what ROS 2 tools can read: a file with a
            // bus-encoded channel is refused by them.
            if !names.is_empty() {
                println!(
                    "not recorded (no ROS 2 type; name them in --topics, or record them with --format bus): {}",
                    names.join(", ")
                );
            }
            topics = ros;
        } else if !names.is_empty() {
            println!(
                "warning: {} have no ROS 2 type and stay in the bus encoding: ROS 2 tools (rosbags, ros2 bag, Foxglove's ROS 2 decoder) will refuse this file; record them apart with --format bus",
                names.join(", ")
            );
        }
    }
    if let Some(s) = a.seconds
        && !(s.is_finite() && s > 0.0)
    {
        anyhow::bail!("--seconds must be positive, got {s}");
    }
    let options = bus::log::RecordOptions {
        format: match a.format {
            RecordFormat::Ros2 => bus::log::Format::Ros2,
            RecordFormat::Bus => bus::log::Format::Bus,
        },
        rig: match a.format {
            RecordFormat::Ros2 => {
                Some(agent::nodes::perception::rig_or_default(a.rig.as_deref())?.ros_info())
            }
            RecordFormat::Bus => None,
        },
    };
    // The bus first: a robot that cannot be reached leaves nothing behind.
    let session = a.bus.open()?;
    let out = agent::outfile::fresh(&a.out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    println!(
        "recording {} topics of `{}` to {}",
        topics.len(),
        a.bus.robot,
        out.display()
    );
    let split = bus::log::Split {
        max_bytes: a.split_mb.map(|mb| (mb * 1e6) as u64),
        max_duration: a.split_minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
    };
    let first = out.clone();
    let mut file = |part: u32| agent::outfile::part(&a.out, &first, part);
    let rec = bus::log::record(
        &session,
        &a.bus.robot,
        &topics,
        &mut file,
        &options,
        split,
        a.seconds.map(Duration::from_secs_f64),
        &stop,
    )?;
    let s = rec.stats;
    let names: Vec<String> = rec.files.iter().map(|f| f.display().to_string()).collect();
    println!(
        "recorded {} messages ({:.2} MB) to {}: {:?}; {} malformed skipped",
        s.messages(),
        s.bytes as f64 / 1e6,
        names.join(", "),
        s.per_topic,
        s.malformed
    );
    if s.kept_raw > 0 {
        println!(
            "{} messages failed the bus's checks (non-finite values, ...) and were kept in the bus encoding: ROS 2 tools skip or refuse those channels",
            s.kept_raw
        );
    }
    if s.missing.is_empty() {
        println!(
            "no gaps: every publisher's sequence numbers are complete between its first and last message"
        );
    } else {
        println!(
            "missing {} messages in {} gaps: {:?}; {} sequence restarts",
            s.missing.values().fold(0u64, |a, &b| a.saturating_add(b)),
            s.gap_count,
            s.missing,
            s.restarts
        );
        for g in s.gaps.iter().take(50) {
            println!("  gap: {g}");
        }
        if s.gap_count > 50 {
            println!("  ... and {} more gaps", s.gap_count - 50);
        }
    }
    Ok(())
}

/// `agent replay`.
pub(crate) fn replay(a: ReplayArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let topics = if a.topics.is_empty() {
        Vec::new()
    } else {
        parse_topics(&a.topics)?
    };
    if !(a.rate.is_finite() && a.rate > 0.0) {
        anyhow::bail!("--rate must be positive, got {}", a.rate);
    }
    let session = a.bus.open()?;
    let lockstep = match &a.lockstep {
        Some(answer) => {
            let frames = parse_topics(std::slice::from_ref(&a.lockstep_frames))?;
            let answer_topic = parse_topics(std::slice::from_ref(answer))?;
            if !topics.is_empty() && !topics.contains(&frames[0]) {
                anyhow::bail!(
                    "--lockstep-frames {} is not among the played --topics",
                    a.lockstep_frames
                );
            }
            // Declared before the wait, so that the graph's publishers know of
            // it before the first answer.
            Some(bus::log::Lockstep {
                frames: frames[0],
                answer: answer_topic[0],
                answers: bus::Tap::new(&session, &a.bus.robot, answer_topic[0].suffix())?,
                timeout: Duration::from_secs_f64(a.lockstep_timeout),
            })
        }
        None => None,
    };
    std::thread::sleep(Duration::from_secs_f64(a.wait.clamp(0.0, 60.0)));
    let pace = if a.fast {
        bus::log::Pace::AsFastAsPossible
    } else {
        bus::log::Pace::Rate(a.rate)
    };
    let t0 = std::time::Instant::now();
    let s = bus::log::replay(
        &session,
        &a.bus.robot,
        &a.file,
        &topics,
        pace,
        lockstep.as_ref(),
        &stop,
    )?;
    println!(
        "replayed {} messages from {} in {:.2} s: {:?}",
        s.messages(),
        a.file.display(),
        t0.elapsed().as_secs_f64(),
        s.per_topic
    );
    if let Some(l) = &lockstep {
        let frames = s.per_topic.get(l.frames.suffix()).copied().unwrap_or(0);
        println!(
            "lockstep: {frames} {} frames played, {} not answered in time; recorded {} not played",
            l.frames.suffix(),
            s.unanswered,
            l.answer.suffix()
        );
    }
    // Let the last messages leave before the session closes.
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// `agent info`.
pub(crate) fn info(a: InfoArgs) -> Result<()> {
    let (channels, seqs) = bus::log::info(&a.file)?;
    let first = channels.iter().map(|c| c.first_ns).min().unwrap_or(0);
    let last = channels.iter().map(|c| c.last_ns).max().unwrap_or(0);
    let total: u64 = channels.iter().map(|c| c.messages).sum();
    println!(
        "{}: {total} messages in {} channels over {:.2} s",
        a.file.display(),
        channels.len(),
        last.saturating_sub(first) as f64 * 1e-9
    );
    println!(
        "  {:<26} {:<32} {:<16} {:>9} {:>9} {:>9}  from",
        "channel", "type", "encoding", "messages", "rate Hz", "missing"
    );
    for c in &channels {
        println!(
            "  {:<26} {:<32} {:<16} {:>9} {:>9.2} {:>9}  {}",
            c.topic,
            c.schema,
            c.encoding,
            c.messages,
            c.rate_hz(),
            c.missing,
            c.from
        );
    }
    let missing = seqs
        .missing
        .values()
        .fold(0u64, |a, &b| a.saturating_add(b));
    println!(
        "gaps: {} ({missing} messages missing; checked on the topics whose publishers number their own messages); {} sequence restarts",
        seqs.gap_count, seqs.restarts
    );
    let shown = if a.all_gaps { usize::MAX } else { 20 };
    for g in seqs.gaps.iter().take(shown) {
        println!("  gap: {g}");
    }
    if seqs.gap_count > shown as u64 {
        println!(
            "  ... {} more ({} listed with --all-gaps)",
            seqs.gap_count.saturating_sub(shown as u64),
            seqs.gaps.len()
        );
    }
    Ok(())
}

/// `agent latency`.
pub(crate) fn latency(a: LatencyArgs) -> Result<()> {
    let cfg = LoopConfig::default();
    for size in &a.sizes {
        let (w, h) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            .with_context(|| format!("size `{size}` is not WIDTHxHEIGHT"))?;
        let mut k = 0u16;
        for p in &a.placement {
            for s in &a.security {
                if *s != agent::latency::Security::Plain && *p == agent::latency::Placement::Threads
                {
                    continue;
                }
                let port = a.port.wrapping_add(k);
                k += 1;
                let r = agent::latency::run(&cfg, w, h, a.frames, *p, *s, port)?;
                println!("{r}");
            }
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct GoalArgs {
    /// Where the robot should go: X,Y,Z in metres (the world frame of the bus
    /// README: x forward from the start, y left, z up).
    #[arg(value_name = "X,Y,Z", allow_hyphen_values = true)]
    position: String,
    /// Robot name, endpoints; on a secured graph the ground station's TLS
    /// files and password.
    #[command(flatten)]
    bus: BusArgs,
    /// Seconds to repeat the goal (five times a second), so that a subscriber
    /// still being matched gets it.
    #[arg(long, default_value_t = 1.0, value_parser = above(0.0, 3600.0, "s"))]
    seconds: f64,
}

/// `agent goal`: publish a goal on `nav/goal` (the ground station's command).
pub(crate) fn goal(a: GoalArgs, stop: Arc<AtomicBool>) -> Result<()> {
    let parsed: Vec<f64> = a
        .position
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("goal `{}`: {e}", a.position))?;
    let position: [f64; 3] = parsed
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the goal needs X,Y,Z, got `{}`", a.position))?;
    if !position
        .iter()
        .all(|v| v.is_finite() && v.abs() <= bus::msg::MAX_GOAL_M)
    {
        anyhow::bail!(
            "the goal {position:?} is not finite or beyond {} m",
            bus::msg::MAX_GOAL_M
        );
    }
    if !(a.seconds.is_finite() && a.seconds > 0.0 && a.seconds <= 3600.0) {
        anyhow::bail!("--seconds must be in (0, 3600], got {}", a.seconds);
    }
    let session = a.bus.open()?;
    let mut out = bus::Outbox::<bus::msg::Goal>::new(&session, &a.bus.robot, bus::topics::GOAL)?;
    let t0 = std::time::Instant::now();
    let mut sent = 0;
    while t0.elapsed().as_secs_f64() < a.seconds && !stop.load(std::sync::atomic::Ordering::Relaxed)
    {
        out.send(bus::now_ns(), "ground", &bus::msg::Goal { position })?;
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "goal {position:?} sent {sent} times on `{}/nav/goal`",
        a.bus.robot
    );
    Ok(())
}
